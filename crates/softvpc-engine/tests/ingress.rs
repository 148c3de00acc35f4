//! Ingress: VXLAN datagrams from the underlay, decapsulated and delivered to a local ENI only
//! when every check passes.

mod common;

use std::net::Ipv4Addr;

use common::*;
use softvpc_engine::{DropReason, Path};
use softvpc_wire::{ArpOperation, EthernetProtocol};

fn assert_dropped(engine: &softvpc_engine::Engine, out: &Sent, reason: DropReason) {
    assert!(out.is_empty(), "expected a drop ({reason}), got {out:?}");
    assert_eq!(engine.counters().drops(reason), 1, "{reason} not counted");
    assert_eq!(engine.counters().total_drops(), 1, "other drops counted");
}

/// vm1 -> vm2 echo request, as host-1 sends it.
fn vm1_to_vm2() -> Vec<u8> {
    echo_request(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 64, 5, 1, b"ping")
}

#[test]
fn valid_datagram_is_delivered_to_the_enis_port() {
    let mut e = seed_engine(HOST2);
    let inner = vm1_to_vm2();
    let dgram = vxlan(VNI1.0, &inner);
    let out = ingress(&mut e, HOST1, &dgram);
    assert!(out.to_underlay.is_empty());
    assert_eq!(out.to_ports, vec![(VM2.port, inner.clone())]);
    let c = e.counters();
    assert_eq!(c.frames(Path::UnderlayRx), 1);
    assert_eq!(c.bytes(Path::UnderlayRx), dgram.len() as u64);
    assert_eq!(c.frames(Path::ToPortDecap), 1);
    assert_eq!(c.bytes(Path::ToPortDecap), inner.len() as u64);
    assert_eq!(c.total_drops(), 0);
}

#[test]
fn secondary_address_and_routed_frames_are_delivered() {
    let mut e = seed_engine(HOST2);
    let inner = udp(VM1.mac, VM2.mac, VM1.ip, VM2_SECONDARY, 1, 2, b"x");
    let out = ingress(&mut e, HOST1, &vxlan(VNI1.0, &inner));
    assert_eq!(out.to_ports, vec![(VM2.port, inner)]);
    // Routed by host-1: source MAC is the router's.
    let inner = udp(ROUTER1, VM3.mac, VM1.ip, VM3.ip, 1, 2, b"x");
    let out = ingress(&mut e, HOST1, &vxlan(VNI1.0, &inner));
    assert_eq!(out.to_ports, vec![(VM3.port, inner)]);
}

#[test]
fn bad_vxlan_headers_are_dropped() {
    let inner = vm1_to_vm2();
    let mut no_i_flag = vxlan(VNI1.0, &inner);
    no_i_flag[0] = 0x00;
    let cases = [
        (vec![0x08, 0, 0, 0, 0, 1, 1], DropReason::Malformed),
        (vec![], DropReason::Malformed),
        (no_i_flag, DropReason::VxlanBadFlags),
        (vxlan(0x00abcd, &inner), DropReason::VxlanUnknownVni),
        // The header alone, no inner frame.
        (vxlan(VNI1.0, &[]), DropReason::Malformed),
        (vxlan(VNI1.0, &inner[..20]), DropReason::Malformed),
    ];
    for (dgram, reason) in cases {
        let mut e = seed_engine(HOST2);
        let out = ingress(&mut e, HOST1, &dgram);
        assert_dropped(&e, &out, reason);
    }
}

#[test]
fn unregistered_sources_are_dropped() {
    let mut e = seed_engine(HOST2);
    let out = ingress(
        &mut e,
        Ipv4Addr::new(198, 18, 0, 99),
        &vxlan(VNI1.0, &vm1_to_vm2()),
    );
    assert_dropped(&e, &out, DropReason::VxlanUnknownSource);
}

#[test]
fn frames_not_for_a_local_eni_are_refused() {
    // (A frame for zigi-vm2's address with zigi-vm3's MAC is zigi-vm3's source/destination
    // check: `frames_for_other_addresses_need_the_check_off`.)
    let cases = [
        // An ENI that lives on host-1, not here.
        udp(VM2.mac, VM4.mac, VM2.ip, VM4.ip, 1, 2, b""),
        // Broadcast and multicast.
        udp(VM1.mac, BROADCAST, VM1.ip, Ipv4Addr::BROADCAST, 1, 2, b""),
        udp(
            VM1.mac,
            [0x01, 0x00, 0x5e, 0, 0, 1],
            VM1.ip,
            Ipv4Addr::new(224, 0, 0, 1),
            1,
            2,
            b"",
        ),
        // ARP never crosses the underlay, not even unicast.
        arp(
            VM1.mac,
            VM2.mac,
            ArpOperation::Request,
            VM1.mac,
            VM1.ip,
            VM2.mac,
            VM2.ip,
        ),
        arp_request(&VM1, VM2.ip),
    ];
    for inner in cases {
        let mut e = seed_engine(HOST2);
        let out = ingress(&mut e, HOST1, &vxlan(VNI1.0, &inner));
        assert_dropped(&e, &out, DropReason::VxlanNotLocal);
    }
}

#[test]
fn frames_for_other_addresses_need_the_check_off() {
    // zigi-vm2's MAC, but an address of another ENI (also zigi-vm3's, on this host) or of
    // nobody: source/destination check.
    let cases = [
        udp(VM1.mac, VM2.mac, VM1.ip, VM3.ip, 1, 2, b""),
        udp(
            VM1.mac,
            VM2.mac,
            VM1.ip,
            Ipv4Addr::new(10, 0, 0, 77),
            1,
            2,
            b"",
        ),
    ];
    for inner in &cases {
        let mut e = seed_engine(HOST2);
        let out = ingress(&mut e, HOST1, &vxlan(VNI1.0, inner));
        assert_dropped(&e, &out, DropReason::SrcDstCheck);
        assert_eq!(
            e.counters()
                .eni(VM2.eni)
                .unwrap()
                .drops(DropReason::SrcDstCheck),
            1,
            "counted at zigi-vm2"
        );
    }
    // With the check off (a NAT instance, a firewall) they are delivered.
    let mut records = seed_records();
    records.enis.get_mut(VM2.eni).unwrap().source_dest_check = false;
    let mut e = engine_with(HOST2, &records);
    for inner in cases {
        let out = ingress(&mut e, HOST1, &vxlan(VNI1.0, &inner));
        assert_eq!(out.to_ports, vec![(VM2.port, inner)]);
    }
}

#[test]
fn inner_ipv6_and_bad_ipv4_are_dropped() {
    let mut e = seed_engine(HOST2);
    let ipv6 = ethernet(VM1.mac, VM2.mac, EthernetProtocol::Ipv6, &[0x60; 40]);
    let out = ingress(&mut e, HOST1, &vxlan(VNI1.0, &ipv6));
    assert_dropped(&e, &out, DropReason::UnsupportedEthertype);

    let mut e = seed_engine(HOST2);
    let mut bad = vm1_to_vm2();
    bad[14 + 10] ^= 1; // IPv4 header checksum
    let out = ingress(&mut e, HOST1, &vxlan(VNI1.0, &bad));
    assert_dropped(&e, &out, DropReason::Malformed);
}

#[test]
fn vni_keeps_vpcs_apart() {
    // 10.0.0.185 is zigi-vm2 in VNI 0x101 and other-vm2 in VNI 0x102, both on host-2.
    let mut e = seed_engine(HOST2);
    let to_other2 = udp(OTHER1.mac, OTHER2.mac, OTHER1.ip, OTHER2.ip, 1, 2, b"x");
    let out = ingress(&mut e, HOST1, &vxlan(VNI2.0, &to_other2));
    assert_eq!(out.to_ports, vec![(OTHER2.port, to_other2.clone())]);

    // The same frame in VPC 1's VNI is not for zigi-vm2 (MAC of VPC 2's ENI).
    let out = ingress(&mut e, HOST1, &vxlan(VNI1.0, &to_other2));
    assert!(out.is_empty());
    // And zigi-vm2's MAC inside VPC 2's VNI is refused as well.
    let to_vm2 = udp(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 1, 2, b"x");
    let out = ingress(&mut e, HOST1, &vxlan(VNI2.0, &to_vm2));
    assert!(out.is_empty());
    assert_eq!(e.counters().drops(DropReason::VxlanNotLocal), 2);
}

#[test]
fn a_batch_of_datagrams_is_handled_in_order() {
    let mut e = seed_engine(HOST2);
    let a = udp(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 1, 2, b"a");
    let b = udp(ROUTER1, VM3.mac, VM1.ip, VM3.ip, 1, 2, b"b");
    let (da, db) = (vxlan(VNI1.0, &a), vxlan(VNI1.0, &b));
    let bad = [0u8; 3];
    let mut out = softvpc_engine::Output::default();
    e.handle_underlay_datagrams(
        t0(),
        [(HOST1, &da[..]), (HOST1, &bad[..]), (HOST1, &db[..])],
        &mut out,
    );
    assert_eq!(
        Sent::from(&out).to_ports,
        vec![(VM2.port, a), (VM3.port, b)]
    );
    assert_eq!(e.counters().drops(DropReason::Malformed), 1);
    out.clear();
    assert!(out.is_empty());
}
