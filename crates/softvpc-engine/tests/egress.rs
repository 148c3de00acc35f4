//! Egress: frames an instance sends on its port. Anti-spoofing, proxy ARP, ICMP from the
//! router address, bridging, routing, local delivery and VXLAN encapsulation, and every drop.

mod common;

use std::net::Ipv4Addr;

use common::*;
use softvpc_engine::{DropReason, Output, Path, PortId};
use softvpc_wire::{ArpOperation, EthernetProtocol, IpProtocol, VXLAN_FLAG_I};

/// Asserts the output is empty and exactly `reason` was counted (once).
fn assert_dropped(engine: &softvpc_engine::Engine, out: &Sent, reason: DropReason) {
    assert!(out.is_empty(), "expected a drop ({reason}), got {out:?}");
    assert_eq!(engine.counters().drops(reason), 1, "{reason} not counted");
    assert_eq!(engine.counters().total_drops(), 1, "other drops counted");
}

/// Sends each frame from zigi-vm1 to a fresh host-1 engine; asserts each is dropped for `reason`.
fn assert_each_dropped(frames: impl IntoIterator<Item = Vec<u8>>, reason: DropReason) {
    for frame in frames {
        let mut e = seed_engine(HOST1);
        let out = egress(&mut e, VM1.port, &frame);
        assert_dropped(&e, &out, reason);
    }
}

/// Asserts exactly one frame went to `port`, and returns it.
fn only_to_port(out: &Sent, port: PortId) -> Vec<u8> {
    assert!(out.to_underlay.is_empty(), "unexpected transmit {out:?}");
    assert_eq!(out.to_ports.len(), 1, "expected one frame, got {out:?}");
    assert_eq!(out.to_ports[0].0, port);
    out.to_ports[0].1.clone()
}

// ---- proxy ARP ---------------------------------------------------------------------------

#[test]
fn arp_for_remote_eni_is_answered_locally_with_its_mac() {
    let mut e = seed_engine(HOST1);
    let out = egress(&mut e, VM1.port, &arp_request(&VM1, VM2.ip));
    let reply = only_to_port(&out, VM1.port);
    let eth = parse_eth(&reply);
    assert_eq!(eth.src_addr.0, VM2.mac);
    assert_eq!(eth.dst_addr.0, VM1.mac);
    assert_eq!(
        parse_arp(&reply),
        (ArpOperation::Reply, VM2.mac, VM2.ip, VM1.mac, VM1.ip)
    );
    assert_eq!(e.counters().frames(Path::ArpReplies), 1);
    assert_eq!(e.counters().total_drops(), 0);
}

#[test]
fn arp_for_local_eni_and_secondary_address() {
    let mut e = seed_engine(HOST1);
    let reply = only_to_port(
        &egress(&mut e, VM1.port, &arp_request(&VM1, VM4.ip)),
        VM1.port,
    );
    assert_eq!(parse_arp(&reply).1, VM4.mac);
    let reply = only_to_port(
        &egress(&mut e, VM1.port, &arp_request(&VM1, VM2_SECONDARY)),
        VM1.port,
    );
    assert_eq!(
        parse_arp(&reply),
        (ArpOperation::Reply, VM2.mac, VM2_SECONDARY, VM1.mac, VM1.ip)
    );
}

#[test]
fn unicast_arp_request_is_answered_too() {
    // Linux re-validates a neighbour with a unicast request to the cached MAC.
    let mut e = seed_engine(HOST1);
    let frame = arp(
        VM1.mac,
        VM2.mac,
        ArpOperation::Request,
        VM1.mac,
        VM1.ip,
        VM2.mac,
        VM2.ip,
    );
    let reply = only_to_port(&egress(&mut e, VM1.port, &frame), VM1.port);
    assert_eq!(parse_arp(&reply).1, VM2.mac);
}

#[test]
fn arp_for_subnet_router_is_answered_with_router_mac() {
    let mut e = seed_engine(HOST1);
    let router = Ipv4Addr::new(10, 0, 0, 1);
    let reply = only_to_port(
        &egress(&mut e, VM1.port, &arp_request(&VM1, router)),
        VM1.port,
    );
    assert_eq!(parse_eth(&reply).src_addr.0, ROUTER1);
    assert_eq!(
        parse_arp(&reply),
        (ArpOperation::Reply, ROUTER1, router, VM1.mac, VM1.ip)
    );
    // VPC 2's router has its own MAC (its VNI).
    let reply = only_to_port(
        &egress(&mut e, OTHER1.port, &arp_request(&OTHER1, router)),
        OTHER1.port,
    );
    assert_eq!(parse_arp(&reply).1, ROUTER2);
}

#[test]
fn arp_for_another_subnets_router_or_an_unassigned_address_is_unanswered() {
    assert_each_dropped(
        [Ipv4Addr::new(10, 0, 1, 1), Ipv4Addr::new(10, 0, 0, 99)].map(|ip| arp_request(&VM1, ip)),
        DropReason::ArpUnanswered,
    );
}

#[test]
fn arp_is_isolated_per_vpc() {
    let mut e = seed_engine(HOST1);
    // Same address 10.0.0.185 in both VPCs: each asker gets its own VPC's owner.
    let r1 = only_to_port(
        &egress(&mut e, VM1.port, &arp_request(&VM1, VM2.ip)),
        VM1.port,
    );
    let r2 = only_to_port(
        &egress(&mut e, OTHER1.port, &arp_request(&OTHER1, OTHER2.ip)),
        OTHER1.port,
    );
    assert_eq!(parse_arp(&r1).1, VM2.mac);
    assert_eq!(parse_arp(&r2).1, OTHER2.mac);
    // 10.0.0.30 exists only in VPC 1.
    let out = egress(&mut e, OTHER1.port, &arp_request(&OTHER1, VM4.ip));
    assert!(out.is_empty());
    assert_eq!(e.counters().drops(DropReason::ArpUnanswered), 1);
}

#[test]
fn arp_probe_for_own_address_gets_no_answer() {
    let mut e = seed_engine(HOST1);
    let probe = arp(
        VM1.mac,
        BROADCAST,
        ArpOperation::Request,
        VM1.mac,
        Ipv4Addr::UNSPECIFIED,
        [0; 6],
        VM1.ip,
    );
    let out = egress(&mut e, VM1.port, &probe);
    assert!(
        out.is_empty(),
        "a probe for one's own address must stay unanswered"
    );
    assert_eq!(e.counters().frames(Path::ArpAbsorbed), 1);
    assert_eq!(e.counters().total_drops(), 0);
}

#[test]
fn arp_probe_for_address_owned_by_another_eni_is_answered() {
    let mut e = seed_engine(HOST1);
    let probe = arp(
        VM1.mac,
        BROADCAST,
        ArpOperation::Request,
        VM1.mac,
        Ipv4Addr::UNSPECIFIED,
        [0; 6],
        VM2.ip,
    );
    let reply = only_to_port(&egress(&mut e, VM1.port, &probe), VM1.port);
    assert_eq!(
        parse_arp(&reply),
        (
            ArpOperation::Reply,
            VM2.mac,
            VM2.ip,
            VM1.mac,
            Ipv4Addr::UNSPECIFIED
        )
    );
}

#[test]
fn gratuitous_arp_and_unsolicited_replies_are_absorbed() {
    let mut e = seed_engine(HOST1);
    let garp_request = arp(
        VM1.mac,
        BROADCAST,
        ArpOperation::Request,
        VM1.mac,
        VM1.ip,
        [0; 6],
        VM1.ip,
    );
    let garp_reply = arp(
        VM1.mac,
        BROADCAST,
        ArpOperation::Reply,
        VM1.mac,
        VM1.ip,
        BROADCAST,
        VM1.ip,
    );
    let unsolicited = arp(
        VM1.mac,
        VM2.mac,
        ArpOperation::Reply,
        VM1.mac,
        VM1.ip,
        VM2.mac,
        VM2.ip,
    );
    for frame in [&garp_request, &garp_reply, &unsolicited] {
        assert!(egress(&mut e, VM1.port, frame).is_empty());
    }
    assert_eq!(e.counters().frames(Path::ArpAbsorbed), 3);
    assert_eq!(e.counters().total_drops(), 0);
}

#[test]
fn arp_with_spoofed_sender_is_dropped() {
    let cases = [
        // Ethernet source not the ENI's.
        arp(
            VM4.mac,
            BROADCAST,
            ArpOperation::Request,
            VM4.mac,
            VM4.ip,
            [0; 6],
            VM2.ip,
        ),
        // ARP sender MAC not the ENI's.
        arp(
            VM1.mac,
            BROADCAST,
            ArpOperation::Request,
            VM4.mac,
            VM1.ip,
            [0; 6],
            VM2.ip,
        ),
        // ARP sender IP not the ENI's (would poison the asker's view otherwise).
        arp(
            VM1.mac,
            BROADCAST,
            ArpOperation::Request,
            VM1.mac,
            VM4.ip,
            [0; 6],
            VM2.ip,
        ),
        // A spoofed gratuitous announcement is refused, not absorbed.
        arp(
            VM1.mac,
            BROADCAST,
            ArpOperation::Reply,
            VM1.mac,
            VM2.ip,
            BROADCAST,
            VM2.ip,
        ),
    ];
    assert_each_dropped(cases, DropReason::SpoofedSource);
}

#[test]
fn malformed_arp_is_dropped() {
    let mut e = seed_engine(HOST1);
    let mut frame = arp_request(&VM1, VM2.ip);
    frame.truncate(30);
    let out = egress(&mut e, VM1.port, &frame);
    assert_dropped(&e, &out, DropReason::Malformed);

    // Hardware length 8 is not Ethernet/IPv4 ARP.
    let mut e = seed_engine(HOST1);
    let mut frame = arp_request(&VM1, VM2.ip);
    frame[14 + 4] = 8;
    let out = egress(&mut e, VM1.port, &frame);
    assert_dropped(&e, &out, DropReason::Malformed);
}

// ---- ICMP to the router ------------------------------------------------------------------

#[test]
fn router_address_answers_echo() {
    let mut e = seed_engine(HOST1);
    let router = Ipv4Addr::new(10, 0, 0, 1);
    let data = b"softvpc ping payload";
    let req = echo_request(VM1.mac, ROUTER1, VM1.ip, router, 64, 0x1234, 7, data);
    let reply = only_to_port(&egress(&mut e, VM1.port, &req), VM1.port);
    let eth = parse_eth(&reply);
    assert_eq!((eth.src_addr.0, eth.dst_addr.0), (ROUTER1, VM1.mac));
    let ip = parse_ipv4(&reply);
    assert_eq!((ip.src_addr, ip.dst_addr), (router, VM1.ip));
    assert_eq!(ip.next_header, IpProtocol::Icmp);
    assert!(ip.hop_limit > 1);
    assert_eq!(parse_icmp_echo(&reply), ("reply", 0x1234, 7, data.to_vec()));
    assert_eq!(e.counters().frames(Path::IcmpReplies), 1);

    // zigi-vm3 (host-2, other subnet) pings its own router 10.0.1.1.
    let mut e2 = seed_engine(HOST2);
    let r3 = Ipv4Addr::new(10, 0, 1, 1);
    let req = echo_request(VM3.mac, ROUTER1, VM3.ip, r3, 64, 1, 1, b"x");
    let reply = only_to_port(&egress(&mut e2, VM3.port, &req), VM3.port);
    assert_eq!(parse_ipv4(&reply).src_addr, r3);
}

#[test]
fn other_traffic_to_router_has_no_route() {
    let router = Ipv4Addr::new(10, 0, 0, 1);
    let cases = [
        // UDP to the router address.
        udp(VM1.mac, ROUTER1, VM1.ip, router, 5000, 53, b"q"),
        // Echo to another subnet's router address.
        echo_request(
            VM1.mac,
            ROUTER1,
            VM1.ip,
            Ipv4Addr::new(10, 0, 1, 1),
            64,
            1,
            1,
            b"",
        ),
        // Echo to the router address, but to some other MAC.
        echo_request(VM1.mac, VM4.mac, VM1.ip, router, 64, 1, 1, b""),
    ];
    assert_each_dropped(cases, DropReason::NoRoute);
}

#[test]
fn echo_to_router_with_bad_icmp_checksum_is_malformed() {
    let mut e = seed_engine(HOST1);
    let mut req = echo_request(
        VM1.mac,
        ROUTER1,
        VM1.ip,
        Ipv4Addr::new(10, 0, 0, 1),
        64,
        1,
        1,
        b"abc",
    );
    let last = req.len() - 1;
    req[last] ^= 0xff; // data changed, ICMP checksum now wrong (IPv4 header still fine)
    let out = egress(&mut e, VM1.port, &req);
    assert_dropped(&e, &out, DropReason::Malformed);
}

// ---- forwarding --------------------------------------------------------------------------

#[test]
fn bridged_same_host_is_delivered_unchanged() {
    let mut e = seed_engine(HOST1);
    let frame = udp(VM1.mac, VM4.mac, VM1.ip, VM4.ip, 1000, 2000, b"hello");
    let delivered = only_to_port(&egress(&mut e, VM1.port, &frame), VM4.port);
    assert_eq!(delivered, frame);
    assert_eq!(e.counters().frames(Path::ToPortLocal), 1);
    assert_eq!(e.counters().bytes(Path::ToPortLocal), frame.len() as u64);
}

#[test]
fn bridged_remote_is_vxlan_encapsulated() {
    let mut e = seed_engine(HOST1);
    let frame = echo_request(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 64, 9, 1, b"ping");
    let out = egress(&mut e, VM1.port, &frame);
    assert!(out.to_ports.is_empty());
    assert_eq!(out.to_underlay.len(), 1);
    let t = &out.to_underlay[0];
    assert_eq!((t.dst_ip, t.dst_port), (HOST2, 4789));
    assert!((49152..=65535).contains(&t.src_port));
    assert_eq!(vxlan_header(&t.payload), (VXLAN_FLAG_I, VNI1.0));
    assert_eq!(
        &t.payload[8..],
        &frame[..],
        "bridged inner frame must be untouched"
    );
    assert_eq!(e.counters().frames(Path::ToUnderlay), 1);
    assert_eq!(e.counters().bytes(Path::ToUnderlay), t.payload.len() as u64);
}

#[test]
fn a_flow_keeps_its_source_port_and_flows_spread() {
    let mut e = seed_engine(HOST1);
    let port_of = |e: &mut softvpc_engine::Engine, sport: u16, payload: &[u8]| {
        let frame = udp(VM1.mac, VM2.mac, VM1.ip, VM2.ip, sport, 9000, payload);
        egress(e, VM1.port, &frame).to_underlay[0].src_port
    };
    let a = port_of(&mut e, 40000, b"one");
    assert_eq!(a, port_of(&mut e, 40000, b"another payload"));
    let distinct: std::collections::HashSet<u16> =
        (0..64).map(|i| port_of(&mut e, 30000 + i, b"x")).collect();
    assert!(
        distinct.len() > 16,
        "flows should spread over source ports: {distinct:?}"
    );
}

#[test]
fn secondary_addresses_are_reachable_and_may_be_used_as_source() {
    let mut e = seed_engine(HOST1);
    let frame = udp(VM1.mac, VM2.mac, VM1.ip, VM2_SECONDARY, 1, 2, b"x");
    assert_eq!(egress(&mut e, VM1.port, &frame).to_underlay.len(), 1);

    let mut e2 = seed_engine(HOST2);
    let frame = udp(VM2.mac, ROUTER1, VM2_SECONDARY, VM3.ip, 1, 2, b"x");
    assert_eq!(
        only_to_port(&egress(&mut e2, VM2.port, &frame), VM3.port).len(),
        frame.len()
    );
}

#[test]
fn routed_remote_rewrites_macs_and_ttl() {
    let mut e = seed_engine(HOST1);
    let frame = udp(
        VM1.mac,
        ROUTER1,
        VM1.ip,
        VM3.ip,
        1111,
        2222,
        b"across subnets",
    );
    let out = egress(&mut e, VM1.port, &frame);
    assert_eq!(out.to_underlay.len(), 1);
    let t = &out.to_underlay[0];
    assert_eq!(t.dst_ip, VM3.host);
    let inner = &t.payload[8..];
    let eth = parse_eth(inner);
    assert_eq!((eth.src_addr.0, eth.dst_addr.0), (ROUTER1, VM3.mac));
    let ip = parse_ipv4(inner); // verifies the updated checksum
    assert_eq!(ip.hop_limit, 63);
    assert_eq!((ip.src_addr, ip.dst_addr), (VM1.ip, VM3.ip));
    // Nothing but MACs, TTL and header checksum changed.
    assert_eq!(inner[14 + 20..], frame[14 + 20..]);
    assert_eq!(inner[14..22], frame[14..22]);
    assert_eq!(inner[23..24], frame[23..24]);
    assert_eq!(inner[26..34], frame[26..34]);
}

#[test]
fn routed_same_host_is_delivered_directly() {
    let mut e = seed_engine(HOST2);
    let frame = echo_request(VM3.mac, ROUTER1, VM3.ip, VM2.ip, 2, 1, 1, b"x");
    let delivered = only_to_port(&egress(&mut e, VM3.port, &frame), VM2.port);
    let eth = parse_eth(&delivered);
    assert_eq!((eth.src_addr.0, eth.dst_addr.0), (ROUTER1, VM2.mac));
    assert_eq!(parse_ipv4(&delivered).hop_limit, 1);
}

#[test]
fn routing_within_a_subnet_through_the_router_mac_works() {
    let mut e = seed_engine(HOST1);
    let frame = udp(VM1.mac, ROUTER1, VM1.ip, VM4.ip, 1, 2, b"x");
    let delivered = only_to_port(&egress(&mut e, VM1.port, &frame), VM4.port);
    assert_eq!(parse_eth(&delivered).src_addr.0, ROUTER1);
    assert_eq!(parse_ipv4(&delivered).hop_limit, 63);
}

#[test]
fn ttl_exhausted_when_routed_but_not_when_bridged() {
    let mut e = seed_engine(HOST1);
    let routed = echo_request(VM1.mac, ROUTER1, VM1.ip, VM3.ip, 1, 1, 1, b"x");
    let out = egress(&mut e, VM1.port, &routed);
    assert_dropped(&e, &out, DropReason::TtlExceeded);

    let mut e = seed_engine(HOST1);
    let bridged = echo_request(VM1.mac, VM4.mac, VM1.ip, VM4.ip, 1, 1, 1, b"x");
    assert_eq!(
        only_to_port(&egress(&mut e, VM1.port, &bridged), VM4.port),
        bridged
    );
}

#[test]
fn no_route_cases() {
    let outside = Ipv4Addr::new(203, 0, 113, 5);
    let cases = [
        // Unknown address in the VPC.
        udp(
            VM1.mac,
            ROUTER1,
            VM1.ip,
            Ipv4Addr::new(10, 0, 0, 99),
            1,
            2,
            b"",
        ),
        // Outside the VPC.
        udp(VM1.mac, ROUTER1, VM1.ip, outside, 1, 2, b""),
        // Other subnet, but sent to the target's own MAC instead of the router's.
        udp(VM1.mac, VM3.mac, VM1.ip, VM3.ip, 1, 2, b""),
        // MAC of one ENI, IP of another.
        udp(VM1.mac, VM4.mac, VM1.ip, VM2.ip, 1, 2, b""),
        // To oneself.
        udp(VM1.mac, VM1.mac, VM1.ip, VM1.ip, 1, 2, b""),
    ];
    assert_each_dropped(cases, DropReason::NoRoute);
}

#[test]
fn vpcs_with_the_same_addresses_stay_isolated() {
    let mut e = seed_engine(HOST1);
    // other-vm1 (VPC 2) to 10.0.0.185 goes to other-vm2, in VPC 2's VNI.
    let frame = udp(OTHER1.mac, OTHER2.mac, OTHER1.ip, OTHER2.ip, 1, 2, b"x");
    let out = egress(&mut e, OTHER1.port, &frame);
    assert_eq!(out.to_underlay.len(), 1);
    assert_eq!(vxlan_header(&out.to_underlay[0].payload).1, VNI2.0);
    // other-vm1 using zigi-vm2's MAC (VPC 1) for the same address: no route.
    let frame = udp(OTHER1.mac, VM2.mac, OTHER1.ip, VM2.ip, 1, 2, b"x");
    assert!(egress(&mut e, OTHER1.port, &frame).is_empty());
    // other-vm1 to 10.0.0.30, which only VPC 1 has (zigi-vm4, on this very host): no route.
    let frame = udp(OTHER1.mac, VM4.mac, OTHER1.ip, VM4.ip, 1, 2, b"x");
    assert!(egress(&mut e, OTHER1.port, &frame).is_empty());
    let frame = udp(OTHER1.mac, ROUTER2, OTHER1.ip, VM4.ip, 1, 2, b"x");
    assert!(egress(&mut e, OTHER1.port, &frame).is_empty());
    assert_eq!(e.counters().drops(DropReason::NoRoute), 3);
}

// ---- anti-spoofing, broadcast, bad input -------------------------------------------------

#[test]
fn spoofed_ipv4_sources_are_dropped() {
    let cases = [
        // Foreign source IP (another ENI's).
        udp(VM1.mac, VM4.mac, VM2.ip, VM4.ip, 1, 2, b""),
        // Foreign source IP outside the VPC.
        udp(
            VM1.mac,
            VM4.mac,
            Ipv4Addr::new(203, 0, 113, 9),
            VM4.ip,
            1,
            2,
            b"",
        ),
        // Foreign source MAC.
        udp(VM2.mac, VM4.mac, VM1.ip, VM4.ip, 1, 2, b""),
        // Unspecified source to a unicast address.
        udp(VM1.mac, VM4.mac, Ipv4Addr::UNSPECIFIED, VM4.ip, 1, 2, b""),
    ];
    assert_each_dropped(cases, DropReason::SpoofedSource);
}

#[test]
fn broadcast_and_multicast_are_not_forwarded() {
    let cases = [
        // Limited broadcast.
        udp(VM1.mac, BROADCAST, VM1.ip, Ipv4Addr::BROADCAST, 1, 2, b""),
        // Broadcast from 0.0.0.0 that is not DHCP (DHCP is answered: tests/dhcp.rs).
        udp(
            VM1.mac,
            BROADCAST,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            68,
            69,
            b"",
        ),
        // Subnet-directed broadcast.
        udp(
            VM1.mac,
            BROADCAST,
            VM1.ip,
            Ipv4Addr::new(10, 0, 0, 255),
            1,
            2,
            b"",
        ),
        // Multicast (mDNS).
        udp(
            VM1.mac,
            [0x01, 0x00, 0x5e, 0, 0, 0xfb],
            VM1.ip,
            Ipv4Addr::new(224, 0, 0, 251),
            5353,
            5353,
            b"",
        ),
        // A unicast IP in a broadcast Ethernet frame.
        udp(VM1.mac, BROADCAST, VM1.ip, VM4.ip, 1, 2, b""),
    ];
    assert_each_dropped(cases, DropReason::BroadcastNotForwarded);
}

#[test]
fn other_ethertypes_are_unsupported() {
    let mut e = seed_engine(HOST1);
    let ipv6 = ethernet(VM1.mac, VM4.mac, EthernetProtocol::Ipv6, &[0x60; 40]);
    let out = egress(&mut e, VM1.port, &ipv6);
    assert_dropped(&e, &out, DropReason::UnsupportedEthertype);
}

#[test]
fn malformed_frames_are_dropped() {
    let good = udp(VM1.mac, VM4.mac, VM1.ip, VM4.ip, 1, 2, b"payload");
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        good[..10].to_vec(),             // shorter than an Ethernet header
        good[..14 + 12].to_vec(),        // truncated IPv4 header
        good[..good.len() - 3].to_vec(), // shorter than the IPv4 total length
    ];
    let mut bad_checksum = good.clone();
    bad_checksum[14 + 10] ^= 0x55;
    cases.push(bad_checksum);
    let mut bad_version = good.clone();
    bad_version[14] = 0x65;
    cases.push(bad_version);
    let mut short_ihl = good.clone();
    short_ihl[14] = 0x44; // header length 16 bytes
    cases.push(short_ihl);
    assert_each_dropped(cases, DropReason::Malformed);
}

#[test]
fn frames_from_unknown_ports_are_dropped() {
    let frame = udp(VM1.mac, VM4.mac, VM1.ip, VM4.ip, 1, 2, b"x");
    let mut e = seed_engine(HOST1);
    // zigi-vm2's port number exists only on host-2.
    let out = egress(&mut e, VM2.port, &frame);
    assert_dropped(&e, &out, DropReason::UnknownPort);

    // A fresh engine has an empty table.
    let mut e = softvpc_engine::Engine::new(softvpc_engine::EngineConfig::new(HOST1));
    let out = egress(&mut e, VM1.port, &frame);
    assert_dropped(&e, &out, DropReason::UnknownPort);
}

#[test]
fn a_batch_is_processed_in_order_and_counted() {
    let mut e = seed_engine(HOST1);
    let f1 = udp(VM1.mac, VM4.mac, VM1.ip, VM4.ip, 1, 2, b"first");
    let f2 = arp_request(&VM1, VM2.ip);
    let f3 = udp(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 1, 2, b"third");
    let f4 = vec![0u8; 5];
    let mut out = Output::default();
    e.handle_port_frames(
        t0(),
        VM1.port,
        [&f1[..], &f2[..], &f3[..], &f4[..]],
        &mut out,
    );
    let out = Sent::from(&out);
    assert_eq!(out.to_ports.len(), 2);
    assert_eq!(out.to_ports[0], (VM4.port, f1.clone()));
    assert_eq!(out.to_ports[1].0, VM1.port);
    assert_eq!(out.to_underlay.len(), 1);
    let c = e.counters();
    assert_eq!(c.frames(Path::PortRx), 4);
    let bytes: usize = [&f1, &f2, &f3, &f4].iter().map(|f| f.len()).sum();
    assert_eq!(c.bytes(Path::PortRx), bytes as u64);
    assert_eq!(c.drops(DropReason::Malformed), 1);
}
