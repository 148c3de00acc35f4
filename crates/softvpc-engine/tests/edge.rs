//! The edge in virtual time: the internet gateway's 1:1 NAT for public addresses, ARP on the
//! edge, inbound policy (security groups, the subnet's ACL both ways), the edge's MTU (frag-needed, fragmentation), and what never passes.

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;

use common::*;
use softvpc_engine::policy::Direction as Dir;
use softvpc_engine::{DropReason, EdgeConfig, Engine, Mac, Output, Path, PortId};
use softvpc_wire::{
    ArpOperation, EthernetProtocol, IpProtocol, Ipv4Packet, TcpControl, TcpPacket, UdpPacket,
};

const EDGE_MAC: Mac = [0x0a, 0x56, 0x45, 0, 0, 0x0b];
const GW_MAC: Mac = [0x02, 0x49, 0x4e, 0x45, 0x54, 0x01];
const GW_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const WEB: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const EIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
const IGW: &str = "igw-1";

/// The seed topology, zigi-vm1 with an Elastic IP, vpc-1's main table to an internet gateway.
fn records() -> SeedRecords {
    let mut r = seed_records();
    r.public.push((VM1.eni.into(), EIP, VM1.ip));
    r.route_tables.insert(
        "rtb-main".into(),
        (
            "vpc-1".into(),
            true,
            vec![Route {
                destination: "0.0.0.0/0".parse().unwrap(),
                target: Target::InternetGateway(IGW.into()),
                state: RouteState::Active,
            }],
            vec![],
        ),
    );
    r
}

/// Host 1's engine with its edge, the next hop's MAC learned.
fn edge_engine(r: &SeedRecords) -> Engine {
    let mut e = engine_with(HOST1, r);
    e.set_edge(EdgeConfig {
        mac: EDGE_MAC,
        gateway_ip: GW_IP,
    });
    let mut out = Output::default();
    let reply = arp(
        GW_MAC,
        EDGE_MAC,
        ArpOperation::Reply,
        GW_MAC,
        GW_IP,
        EDGE_MAC,
        EIP,
    );
    e.handle_edge_frames(at_ms(0), [&reply[..]], &mut out);
    assert_eq!(e.edge_gateway_mac(), Some(GW_MAC));
    e
}

fn arp(
    src: Mac,
    dst: Mac,
    op: ArpOperation,
    smac: Mac,
    sip: Ipv4Addr,
    tmac: Mac,
    tip: Ipv4Addr,
) -> Vec<u8> {
    common::arp(src, dst, op, smac, sip, tmac, tip)
}

/// Frames written to the edge, and to ports.
type Seen = (Vec<Vec<u8>>, Vec<(PortId, Vec<u8>)>);

/// What went to the edge and to ports.
fn run(out: &Output) -> Seen {
    let mut edge = Vec::new();
    let mut ports = Vec::new();
    for (p, f) in out.to_ports() {
        if p == PortId::EDGE {
            edge.push(f.to_vec());
        } else {
            ports.push((p, f.to_vec()));
        }
    }
    (edge, ports)
}

fn from_vm(e: &mut Engine, ms: u64, frame: &[u8]) -> Seen {
    let mut out = Output::default();
    e.handle_port_frames(at_ms(ms), VM1.port, [frame], &mut out);
    run(&out)
}

fn from_internet(e: &mut Engine, ms: u64, frame: &[u8]) -> Seen {
    let mut out = Output::default();
    e.handle_edge_frames(at_ms(ms), [frame], &mut out);
    run(&out)
}

/// Checks a frame's IPv4 header and UDP/TCP checksum with smoltcp.
fn checked(frame: &[u8]) -> Ipv4Packet<&[u8]> {
    let ip = Ipv4Packet::new_checked(&frame[14..]).expect("ipv4");
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
    if ip.more_frags() || ip.frag_offset() != 0 {
        return ip;
    }
    match ip.next_header() {
        IpProtocol::Udp => {
            let u = UdpPacket::new_checked(ip.payload()).expect("udp");
            assert!(u.verify_checksum(&src, &dst), "UDP checksum");
        }
        IpProtocol::Tcp => {
            let t = TcpPacket::new_checked(ip.payload()).expect("tcp");
            assert!(t.verify_checksum(&src, &dst), "TCP checksum");
        }
        _ => {}
    }
    ip
}

#[test]
fn out_with_the_public_address_and_back_to_the_private_one() {
    let r = records();
    let mut e = edge_engine(&r);
    let out = udp(VM1.mac, ROUTER1, VM1.ip, WEB, 40000, 7, b"hello");
    let (edge, ports) = from_vm(&mut e, 1, &out);
    assert!(ports.is_empty());
    assert_eq!(edge.len(), 1, "one frame to the internet");
    let f = &edge[0];
    assert_eq!((&f[0..6], &f[6..12]), (&GW_MAC[..], &EDGE_MAC[..]));
    let ip = checked(f);
    assert_eq!(ip.src_addr(), EIP);
    assert_eq!(ip.dst_addr(), WEB);
    assert_eq!(ip.hop_limit(), 63);
    assert_eq!(e.counters().frames(Path::ToEdge), 1);
    // Twice: the flow table serves the second, the same frame.
    let (edge2, _) = from_vm(&mut e, 2, &out);
    assert_eq!(edge2, edge);
    assert!(e.counters().flow_hits() >= 1);

    // The answer, to the public address at the edge's MAC: the instance gets it at its own.
    let back = udp(GW_MAC, EDGE_MAC, WEB, EIP, 7, 40000, b"hello");
    let (edge, ports) = from_internet(&mut e, 3, &back);
    assert!(edge.is_empty());
    assert_eq!(ports.len(), 1);
    let (port, f) = &ports[0];
    assert_eq!(*port, VM1.port);
    assert_eq!((&f[0..6], &f[6..12]), (&VM1.mac[..], &ROUTER1[..]));
    let ip = checked(f);
    assert_eq!(ip.dst_addr(), VM1.ip);
    assert_eq!(ip.src_addr(), WEB);
    assert_eq!(ip.hop_limit(), 63);
    assert_eq!(e.counters().frames(Path::FromEdge), 1);
}

#[test]
fn arp_on_the_edge_answers_held_addresses_only_and_announces_them() {
    let r = records();
    let mut e = engine_with(HOST1, &r);
    e.set_edge(EdgeConfig {
        mac: EDGE_MAC,
        gateway_ip: GW_IP,
    });
    // Announced once: a gratuitous ARP for the public address, and a request for the next hop.
    let mut out = Output::default();
    e.announce(at_ms(0), &mut out);
    let (edge, _) = run(&out);
    let arps: Vec<_> = edge.iter().map(|f| parse_arp(f)).collect();
    assert!(arps.contains(&(ArpOperation::Request, EDGE_MAC, EIP, [0; 6], EIP)));
    assert!(arps
        .iter()
        .any(|a| a.0 == ArpOperation::Request && a.4 == GW_IP));
    let mut out = Output::default();
    e.announce(at_ms(10), &mut out);
    assert!(out.is_empty(), "nothing new, asked within the second");

    // Who has the Elastic IP? This host's edge.
    let ask = arp(
        GW_MAC,
        BROADCAST,
        ArpOperation::Request,
        GW_MAC,
        GW_IP,
        [0; 6],
        EIP,
    );
    let (edge, _) = from_internet(&mut e, 20, &ask);
    assert_eq!(edge.len(), 1);
    assert_eq!(
        parse_arp(&edge[0]),
        (ArpOperation::Reply, EDGE_MAC, EIP, GW_MAC, GW_IP)
    );
    assert_eq!(
        e.edge_gateway_mac(),
        Some(GW_MAC),
        "learned from its request"
    );
    // A public address held elsewhere, or nowhere: no answer.
    let other = arp(
        GW_MAC,
        BROADCAST,
        ArpOperation::Request,
        GW_MAC,
        GW_IP,
        [0; 6],
        Ipv4Addr::new(203, 0, 113, 21),
    );
    assert!(from_internet(&mut e, 21, &other).0.is_empty());

    // The address moves to zigi-vm2 (host 2): host 1 stops answering.
    let mut r2 = r.clone();
    r2.public = vec![(VM2.eni.into(), EIP, VM2.ip)];
    e.set_table(Arc::new(table(&r2, HOST1, &ports_of(HOST1))));
    assert!(from_internet(&mut e, 22, &ask).0.is_empty());
    let mut h2 = engine_with(HOST2, &r2);
    h2.set_edge(EdgeConfig {
        mac: [0x0a, 0x56, 0x45, 0, 0, 0x0c],
        gateway_ip: GW_IP,
    });
    let mut out = Output::default();
    h2.announce(at_ms(23), &mut out);
    assert!(run(&out)
        .0
        .iter()
        .any(|f| parse_arp(f).2 == EIP && parse_arp(f).4 == EIP));
}

/// The edge's ARP requests for its next hop in `out`.
fn asks_for_gateway(out: &Output) -> usize {
    run(out)
        .0
        .iter()
        .filter(|f| {
            let a = parse_arp(f);
            a.0 == ArpOperation::Request && a.1 == EDGE_MAC && a.4 == GW_IP
        })
        .count()
}

fn announce(e: &mut Engine, ms: u64) -> usize {
    let mut out = Output::default();
    e.announce(at_ms(ms), &mut out);
    asks_for_gateway(&out)
}

/// The next hop's MAC changes without a word (a router replaced; a Linux bridge whose
/// address follows its lowest port when one leaves): the edge asks again once the old MAC
/// went unproven while in use, and follows the answer. Traffic from the next hop keeps it
/// proven; an idle edge asks nothing.
#[test]
fn the_edge_follows_its_next_hop_to_a_new_mac() {
    const NEW_GW: Mac = [0x02, 0x49, 0x4e, 0x45, 0x54, 0x02];
    let r = records();
    let mut e = edge_engine(&r); // GW_MAC learned at 0 ms
    let out = udp(VM1.mac, ROUTER1, VM1.ip, WEB, 40000, 7, b"x");
    let back = udp(GW_MAC, EDGE_MAC, WEB, EIP, 7, 40000, b"x");
    assert_eq!(announce(&mut e, 0), 0);

    // Both ways for 9 s: answers from the next hop's MAC prove it, nothing is asked.
    for ms in (1_000..=9_000).step_by(1_000) {
        let (edge, _) = from_vm(&mut e, ms, &out);
        assert_eq!(&edge[0][0..6], &GW_MAC[..]);
        assert_eq!(from_internet(&mut e, ms + 1, &back).1.len(), 1);
        assert_eq!(announce(&mut e, ms + 2), 0, "proven at {ms} ms");
    }
    // Idle for a minute: nothing sent, nothing asked, however unproven the MAC is.
    assert_eq!(announce(&mut e, 60_000), 0);

    // The next hop is now at NEW_GW (its answers come from there). The first packet after
    // the idle minute still goes to the old MAC, then the edge asks, once a second at most.
    let (edge, _) = from_vm(&mut e, 61_000, &out);
    assert_eq!(
        &edge[0][0..6],
        &GW_MAC[..],
        "kept until an answer replaces it"
    );
    assert_eq!(announce(&mut e, 61_001), 1, "unproven and in use: asked");
    from_vm(&mut e, 61_500, &out);
    assert_eq!(announce(&mut e, 61_501), 0, "not twice within a second");
    from_vm(&mut e, 62_100, &out);
    assert_eq!(announce(&mut e, 62_101), 1, "asked again: no answer yet");
    // Frames from the new MAC do not prove the old one.
    let back_new = udp(NEW_GW, EDGE_MAC, WEB, EIP, 7, 40000, b"x");
    from_internet(&mut e, 62_200, &back_new);
    from_vm(&mut e, 63_200, &out);
    assert_eq!(announce(&mut e, 63_201), 1);
    // The answer: followed at once.
    let reply = arp(
        NEW_GW,
        EDGE_MAC,
        ArpOperation::Reply,
        NEW_GW,
        GW_IP,
        EDGE_MAC,
        EIP,
    );
    from_internet(&mut e, 63_210, &reply);
    assert_eq!(e.edge_gateway_mac(), Some(NEW_GW));
    let (edge, _) = from_vm(&mut e, 63_300, &out);
    assert_eq!(&edge[0][0..6], &NEW_GW[..]);
    assert_eq!(announce(&mut e, 64_400), 0, "proven by its answer");
}

#[test]
fn without_a_public_address_or_a_route_nothing_passes() {
    let mut r = records();
    let mut e = edge_engine(&r);
    // zigi-vm2 (host 1? no: the seed puts it on host 1 too) has no public address.
    let vm = ALL_VMS
        .iter()
        .find(|v| v.host == HOST1 && v.vni == VNI1 && v.eni != VM1.eni)
        .copied()
        .expect("a second ENI of vpc-1 on host 1");
    let mut out = Output::default();
    let f = udp(vm.mac, ROUTER1, vm.ip, WEB, 1, 7, b"x");
    e.handle_port_frames(at_ms(1), vm.port, [&f[..]], &mut out);
    assert!(out.is_empty());
    assert_eq!(e.counters().drops(DropReason::NoPublicIp), 1);

    // No route to the internet gateway: neither way.
    r.route_tables.clear();
    e.set_table(Arc::new(table(&r, HOST1, &ports_of(HOST1))));
    let (edge, _) = from_vm(&mut e, 2, &udp(VM1.mac, ROUTER1, VM1.ip, WEB, 1, 7, b"x"));
    assert!(edge.is_empty());
    assert_eq!(e.counters().drops(DropReason::NoRoute), 1);
    let (_, ports) = from_internet(&mut e, 3, &udp(GW_MAC, EDGE_MAC, WEB, EIP, 7, 1, b"x"));
    assert!(ports.is_empty());
    assert_eq!(e.counters().drops(DropReason::NoIgwRoute), 1);
    assert_eq!(
        e.counters()
            .eni(VM1.eni)
            .unwrap()
            .drops(DropReason::NoIgwRoute),
        1
    );
}

#[test]
fn the_internet_reaches_nothing_it_was_not_addressed_to() {
    let r = records();
    let mut e = edge_engine(&r);
    // A public address nobody holds, a private address, another MAC, IPv6 and garbage.
    for (i, f) in [
        udp(
            GW_MAC,
            EDGE_MAC,
            WEB,
            Ipv4Addr::new(203, 0, 113, 99),
            7,
            1,
            b"x",
        ),
        udp(GW_MAC, EDGE_MAC, WEB, VM1.ip, 7, 1, b"x"),
        udp(GW_MAC, [2, 0, 0, 0, 0, 9], WEB, EIP, 7, 1, b"x"),
        ethernet(GW_MAC, EDGE_MAC, EthernetProtocol::Ipv6, &[0x60; 40]),
    ]
    .iter()
    .enumerate()
    {
        let (edge, ports) = from_internet(&mut e, i as u64 + 1, f);
        assert!(edge.is_empty() && ports.is_empty(), "frame {i}");
    }
    assert_eq!(e.counters().drops(DropReason::EdgeNotHeld), 4);
    let (edge, ports) = from_internet(&mut e, 9, &[1, 2, 3]);
    assert!(edge.is_empty() && ports.is_empty());
    assert_eq!(e.counters().drops(DropReason::Malformed), 1);
}

#[test]
fn security_groups_decide_inbound_and_replies_of_outbound_flows_pass() {
    let mut r = records();
    // zigi-vm1: outbound anything, inbound TCP 80 only.
    r.groups.insert(
        "sg-web".into(),
        (
            "vpc-1".into(),
            vec![
                SgRule::from_aws(
                    "sgr-out",
                    "sg-web",
                    Dir::Egress,
                    "-1",
                    None,
                    None,
                    Peer::Cidr("0.0.0.0/0".parse().unwrap()),
                )
                .unwrap(),
                SgRule::from_aws(
                    "sgr-80",
                    "sg-web",
                    Dir::Ingress,
                    "tcp",
                    Some(80),
                    Some(80),
                    Peer::Cidr("0.0.0.0/0".parse().unwrap()),
                )
                .unwrap(),
            ],
        ),
    );
    r.enis.get_mut(VM1.eni).unwrap().security_group_ids = vec!["sg-web".into()];
    let mut e = edge_engine(&r);
    // To port 80: admitted. To 22: not.
    let syn80 = tcp(
        GW_MAC,
        EDGE_MAC,
        WEB,
        EIP,
        (50000, 80),
        TcpControl::Syn,
        false,
    );
    assert_eq!(from_internet(&mut e, 1, &syn80).1.len(), 1);
    let syn22 = tcp(
        GW_MAC,
        EDGE_MAC,
        WEB,
        EIP,
        (50001, 22),
        TcpControl::Syn,
        false,
    );
    assert!(from_internet(&mut e, 2, &syn22).1.is_empty());
    assert_eq!(
        e.counters()
            .eni(VM1.eni)
            .unwrap()
            .drops(DropReason::SgDenied),
        1
    );
    // An outbound connection's replies come back whatever the inbound rules say.
    let syn = tcp(
        VM1.mac,
        ROUTER1,
        VM1.ip,
        WEB,
        (40000, 443),
        TcpControl::Syn,
        false,
    );
    assert_eq!(from_vm(&mut e, 3, &syn).0.len(), 1);
    let synack = tcp(
        GW_MAC,
        EDGE_MAC,
        WEB,
        EIP,
        (443, 40000),
        TcpControl::Syn,
        true,
    );
    let (_, ports) = from_internet(&mut e, 4, &synack);
    assert_eq!(ports.len(), 1, "tracked reply");
    checked(&ports[0].1);
}

/// The subnet's network ACL decides on internet traffic too, both ways, on the private address
/// the instance sees (the edge translates before the ACL on the way in).
#[test]
fn the_subnets_acl_applies_both_ways() {
    let mut r = records();
    let entry = |n, egress, action, cidr: &str| {
        AclEntry::from_aws(n, egress, "-1", action, cidr.parse().unwrap(), None, None).unwrap()
    };
    let other = Ipv4Addr::new(203, 0, 113, 11);
    r.acls.insert(
        "acl-1".into(),
        (
            "vpc-1".into(),
            vec![
                // In: not from 203.0.113.10; out: not to 203.0.113.11.
                entry(100, false, "deny", "203.0.113.10/32"),
                entry(200, false, "allow", "0.0.0.0/0"),
                entry(100, true, "deny", "203.0.113.11/32"),
                entry(200, true, "allow", "0.0.0.0/0"),
            ],
            vec![VM1.subnet.into()],
        ),
    );
    let mut e = edge_engine(&r);
    // In: from WEB denied, from the other internet host delivered to the private address.
    let (_, ports) = from_internet(&mut e, 1, &udp(GW_MAC, EDGE_MAC, WEB, EIP, 7, 1, b"x"));
    assert!(ports.is_empty());
    assert_eq!(
        e.counters()
            .eni(VM1.eni)
            .unwrap()
            .drops(DropReason::NaclDenied),
        1
    );
    let (_, ports) = from_internet(&mut e, 2, &udp(GW_MAC, EDGE_MAC, other, EIP, 7, 1, b"x"));
    assert_eq!(ports.len(), 1);
    assert_eq!(checked(&ports[0].1).dst_addr(), VM1.ip);
    // Out: to 203.0.113.11 denied, to WEB leaves with the public address.
    let (edge, _) = from_vm(&mut e, 3, &udp(VM1.mac, ROUTER1, VM1.ip, other, 2, 7, b"x"));
    assert!(edge.is_empty());
    assert_eq!(e.counters().drops(DropReason::NaclDenied), 2);
    let (edge, _) = from_vm(&mut e, 4, &udp(VM1.mac, ROUTER1, VM1.ip, WEB, 3, 7, b"x"));
    assert_eq!(edge.len(), 1);
    assert_eq!(checked(&edge[0]).src_addr(), EIP);
}

#[test]
fn too_big_for_the_edge_gets_frag_needed_or_is_fragmented() {
    let r = records();
    let mut e = edge_engine(&r);
    let payload = vec![0x5a; 3000];
    // DF (smoltcp sets it): ICMP 3/4 from the subnet router, next-hop MTU 1500.
    let big = udp(VM1.mac, ROUTER1, VM1.ip, WEB, 40000, 7, &payload);
    let (edge, ports) = from_vm(&mut e, 1, &big);
    assert!(edge.is_empty());
    assert_eq!(ports.len(), 1);
    let (port, f) = &ports[0];
    assert_eq!(*port, VM1.port);
    assert_eq!(&f[0..6], &VM1.mac[..]);
    let ip = checked(f);
    assert_eq!(ip.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(ip.dst_addr(), VM1.ip);
    let icmp = ip.payload();
    assert_eq!((icmp[0], icmp[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1500);
    assert_eq!(&icmp[8..28], &big[14..34], "quotes the header");
    assert_eq!(e.counters().frames(Path::IcmpFragNeeded), 1);
    // The same size after the flow was cached still gets it.
    let small = udp(VM1.mac, ROUTER1, VM1.ip, WEB, 40000, 7, b"x");
    assert_eq!(from_vm(&mut e, 2, &small).0.len(), 1);
    assert_eq!(from_vm(&mut e, 3, &big).1.len(), 1);

    // Without DF: fragments of at most 1500 bytes, translated.
    let mut nodf = big.clone();
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut nodf[14..]);
        ip.set_dont_frag(false);
        ip.fill_checksum();
    }
    let (edge, ports) = from_vm(&mut e, 4, &nodf);
    assert!(ports.is_empty());
    assert_eq!(edge.len(), 3);
    let mut data = Vec::new();
    for f in &edge {
        let ip = checked(f);
        assert!(ip.total_len() <= 1500);
        assert_eq!(ip.src_addr(), EIP);
        assert_eq!(usize::from(ip.frag_offset()), data.len());
        data.extend_from_slice(ip.payload());
    }
    // Reassembled: the UDP datagram with the public source, checksum right.
    let u = UdpPacket::new_checked(&data[..]).unwrap();
    assert!(u.verify_checksum(&EIP.into(), &WEB.into()));
    assert_eq!(u.payload(), &payload[..]);
}

#[test]
fn without_a_known_next_hop_the_edge_asks_and_counts() {
    let r = records();
    let mut e = engine_with(HOST1, &r);
    e.set_edge(EdgeConfig {
        mac: EDGE_MAC,
        gateway_ip: GW_IP,
    });
    let (edge, _) = from_vm(&mut e, 1, &udp(VM1.mac, ROUTER1, VM1.ip, WEB, 1, 7, b"x"));
    assert_eq!(e.counters().drops(DropReason::EdgeNoNeighbor), 1);
    assert!(edge
        .iter()
        .any(|f| parse_arp(f).0 == ArpOperation::Request && parse_arp(f).4 == GW_IP));
    // No edge at all: the gateway is not on the wire from this host.
    let mut e = engine_with(HOST1, &r);
    let (edge, _) = from_vm(&mut e, 1, &udp(VM1.mac, ROUTER1, VM1.ip, WEB, 1, 7, b"x"));
    assert!(edge.is_empty());
    assert_eq!(e.counters().drops(DropReason::GatewayNotOnWire), 1);
}
