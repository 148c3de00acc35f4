//! NAT gateways in virtual time: a private instance on one host reaches the internet through a
//! NAT gateway whose ENI is on the other host (or the same one); distinct translations, the
//! way back, ICMP echo and errors, frag-needed, nothing unsolicited, the per-destination limit,
//! the idle timeout and the RST after it, ended connections freeing their ports, fragmented UDP (and TCP fragments dropped), the
//! gateway subnet's ACL and internet gateway route, and the metrics.

mod common;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use softvpc_engine::natgw::{
    Inside, CLOSED_TIMEOUT, DESTINATION_LIMIT, FRAGMENT_LIMIT, FRAGMENT_TIMEOUT, IDLE_TIMEOUT,
    PORT_FIRST, PORT_LAST, RESET_TIMEOUT,
};
use softvpc_engine::{
    DropReason, EdgeConfig, Engine, EngineConfig, Mac, NatConfig, NatTable, Output, Path, PortId,
};
use softvpc_wire::{
    ArpOperation, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, UdpPacket,
};

const EDGE_MAC: Mac = [0x0a, 0x56, 0x45, 0, 0, 0x0b];
const GW_MAC: Mac = [0x02, 0x49, 0x4e, 0x45, 0x54, 0x01];
const GW_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const WEB: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const NAT_EIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 30);
const NAT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);
const NAT_MAC: Mac = [0x02, 0, 0, 0, 0x05, 0x01];
const NAT_ENI: &str = "eni-0000000000000nat1";
const NAT_ID: &str = "nat-1";
const NAT_PORT: PortId = PortId(0x4000_0001);

/// vpc-1: subnet a public (main table: 0.0.0.0/0 -> igw-1) with the NAT gateway's ENI on
/// `nat_host`, subnet b private (0.0.0.0/0 -> nat-1) with zigi-vm3 on host 2.
fn records(nat_host: Ipv4Addr) -> SeedRecords {
    let mut r = seed_records();
    r.enis.insert(
        NAT_ENI.into(),
        SeedEni {
            eni_id: NAT_ENI.into(),
            vpc_id: "vpc-1".into(),
            vni: VNI1,
            subnet_id: VM1.subnet.into(),
            ip: NAT_IP,
            secondary_ips: vec![],
            mac: NAT_MAC,
            host_underlay_ip: Some(nat_host),
            security_group_ids: vec![],
            source_dest_check: false,
            conntrack: Default::default(),
        },
    );
    r.public.push((NAT_ENI.into(), NAT_EIP, NAT_IP));
    r.nat_gateways.push((NAT_ID.into(), NAT_ENI.into()));
    let default = |target| Route {
        destination: "0.0.0.0/0".parse().unwrap(),
        target,
        state: RouteState::Active,
    };
    r.route_tables.insert(
        "rtb-main".into(),
        (
            "vpc-1".into(),
            true,
            vec![default(Target::InternetGateway("igw-1".into()))],
            vec![],
        ),
    );
    r.route_tables.insert(
        "rtb-private".into(),
        (
            "vpc-1".into(),
            false,
            vec![default(Target::NatGateway(NAT_ID.into()))],
            vec![VM3.subnet.into()],
        ),
    );
    r
}

fn ports(host: Ipv4Addr, nat_host: Ipv4Addr) -> HashMap<String, PortId> {
    let mut p = ports_of(host);
    if host == nat_host {
        p.insert(NAT_ENI.into(), NAT_PORT);
    }
    p
}

/// The two hosts; the NAT gateway's host has an edge whose next hop is known.
struct Lab {
    nat_host: Ipv4Addr,
    hosts: Vec<(Ipv4Addr, Engine)>,
}

impl Lab {
    fn new(nat_host: Ipv4Addr, config: NatConfig) -> Lab {
        Lab::with(records(nat_host), nat_host, config)
    }

    fn with(r: SeedRecords, nat_host: Ipv4Addr, config: NatConfig) -> Lab {
        let hosts = [HOST1, HOST2]
            .into_iter()
            .map(|h| {
                let mut e = Engine::new(EngineConfig::new(h));
                e.set_nat_config(config);
                e.set_table(Arc::new(table(&r, h, &ports(h, nat_host))));
                if h == nat_host {
                    e.set_edge(EdgeConfig {
                        mac: EDGE_MAC,
                        gateway_ip: GW_IP,
                    });
                    let reply = arp(
                        GW_MAC,
                        EDGE_MAC,
                        ArpOperation::Reply,
                        GW_MAC,
                        GW_IP,
                        EDGE_MAC,
                        NAT_EIP,
                    );
                    e.handle_edge_frames(at_ms(0), [&reply[..]], &mut Output::default());
                }
                (h, e)
            })
            .collect();
        Lab { nat_host, hosts }
    }

    fn engine(&mut self, h: Ipv4Addr) -> &mut Engine {
        &mut self.hosts.iter_mut().find(|(x, _)| *x == h).unwrap().1
    }

    fn nat(&mut self) -> &mut Engine {
        let h = self.nat_host;
        self.engine(h)
    }

    /// Delivers `out` of `from` on: datagrams to their host, edge frames collected, port
    /// frames returned (with the host they are on), until nothing moves.
    fn carry(&mut self, now: Instant, from: Ipv4Addr, out: &Output) -> Delivered {
        let mut d = Delivered::default();
        let mut pending: Vec<(Ipv4Addr, Ipv4Addr, Vec<u8>)> = Vec::new();
        collect(from, out, &mut d, &mut pending);
        while let Some((src, dst, payload)) = pending.pop() {
            let mut out = Output::default();
            self.engine(dst)
                .handle_underlay_datagrams(now, [(src, &payload[..])], &mut out);
            collect(dst, &out, &mut d, &mut pending);
        }
        d
    }

    /// A frame zigi-vm3 (host 2) sends.
    fn sent_by_vm3(&mut self, ms: u64, frame: &[u8]) -> Delivered {
        let mut out = Output::default();
        self.engine(HOST2)
            .handle_port_frames(at_ms(ms), VM3.port, [frame], &mut out);
        self.carry(at_ms(ms), HOST2, &out)
    }

    /// A frame from the internet at the NAT gateway's host's edge.
    fn sent_by_internet(&mut self, ms: u64, frame: &[u8]) -> Delivered {
        let mut out = Output::default();
        let h = self.nat_host;
        self.engine(h)
            .handle_edge_frames(at_ms(ms), [frame], &mut out);
        self.carry(at_ms(ms), h, &out)
    }
}

#[derive(Debug, Default)]
struct Delivered {
    edge: Vec<Vec<u8>>,
    ports: Vec<(Ipv4Addr, PortId, Vec<u8>)>,
}

fn collect(
    host: Ipv4Addr,
    out: &Output,
    d: &mut Delivered,
    pending: &mut Vec<(Ipv4Addr, Ipv4Addr, Vec<u8>)>,
) {
    for (p, f) in out.to_ports() {
        if p == PortId::EDGE {
            d.edge.push(f.to_vec());
        } else {
            d.ports.push((host, p, f.to_vec()));
        }
    }
    for t in out.transmits() {
        pending.push((host, t.dst_ip, t.payload.to_vec()));
    }
}

/// The IPv4 packet of a frame, its header and transport checksums verified with smoltcp.
fn checked(frame: &[u8]) -> Ipv4Packet<&[u8]> {
    let ip = Ipv4Packet::new_checked(&frame[14..]).expect("ipv4");
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
    match ip.next_header() {
        IpProtocol::Udp => {
            let u = UdpPacket::new_checked(ip.payload()).expect("udp");
            assert!(u.verify_checksum(&src, &dst), "UDP checksum");
        }
        IpProtocol::Tcp => {
            let t = TcpPacket::new_checked(ip.payload()).expect("tcp");
            assert!(t.verify_checksum(&src, &dst), "TCP checksum");
        }
        IpProtocol::Icmp => assert_eq!(checksum(ip.payload()), 0, "ICMP checksum"),
        _ => {}
    }
    ip
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ports_of_l4(ip: &Ipv4Packet<&[u8]>) -> (u16, u16) {
    let p = ip.payload();
    (
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    )
}

fn vm3_syn(sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    tcp(
        VM3.mac,
        ROUTER1,
        VM3.ip,
        dst,
        (sport, dport),
        TcpControl::Syn,
        false,
    )
}

/// zigi-vm3 opens a TCP connection to `dst`:`dport` from `sport`; returns the gateway's port.
fn open(lab: &mut Lab, ms: u64, sport: u16, dst: Ipv4Addr, dport: u16) -> u16 {
    let d = lab.sent_by_vm3(ms, &vm3_syn(sport, dst, dport));
    assert!(d.ports.is_empty(), "{d:?}");
    assert_eq!(d.edge.len(), 1, "one frame to the internet");
    let f = &d.edge[0];
    assert_eq!((&f[0..6], &f[6..12]), (&GW_MAC[..], &EDGE_MAC[..]));
    let ip = checked(f);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (NAT_EIP, dst));
    let (s, dp) = ports_of_l4(&ip);
    assert_eq!(dp, dport);
    assert!((PORT_FIRST..=PORT_LAST).contains(&s));
    s
}

#[test]
fn out_through_the_gateway_on_another_host_and_back() {
    let mut lab = Lab::new(HOST1, NatConfig::default());
    let port = open(&mut lab, 1, 40000, WEB, 80);
    // The SYN-ACK to the gateway's Elastic IP and port reaches zigi-vm3 on host 2, at its own
    // address and port, with every checksum right.
    let synack = tcp(
        GW_MAC,
        EDGE_MAC,
        WEB,
        NAT_EIP,
        (80, port),
        TcpControl::Syn,
        true,
    );
    let d = lab.sent_by_internet(2, &synack);
    assert!(d.edge.is_empty());
    assert_eq!(d.ports.len(), 1, "{d:?}");
    let (host, p, f) = &d.ports[0];
    assert_eq!((*host, *p), (HOST2, VM3.port));
    assert_eq!(&f[0..6], &VM3.mac[..]);
    let ip = checked(f);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (WEB, VM3.ip));
    assert_eq!(ports_of_l4(&ip), (80, 40000));
    // The same flow keeps its port (and the flow table serves it).
    let ack = tcp(
        VM3.mac,
        ROUTER1,
        VM3.ip,
        WEB,
        (40000, 80),
        TcpControl::None,
        true,
    );
    let d = lab.sent_by_vm3(3, &ack);
    assert_eq!(ports_of_l4(&checked(&d.edge[0])).0, port);
    let s = lab.nat().nat_gateway_stats(NAT_ID).unwrap();
    assert_eq!(s.active_connections, 1);
    assert_eq!(s.connection_attempts, 1);
    assert_eq!(s.packets_out_to_destination, 2);
    assert_eq!(s.packets_in_from_destination, 1);
    assert_eq!(lab.nat().counters().frames(Path::ToEdge), 2);
}

#[test]
fn on_the_same_host_too() {
    let mut lab = Lab::new(HOST2, NatConfig::default());
    let port = open(&mut lab, 1, 40000, WEB, 80);
    let back = tcp(
        GW_MAC,
        EDGE_MAC,
        WEB,
        NAT_EIP,
        (80, port),
        TcpControl::Syn,
        true,
    );
    let d = lab.sent_by_internet(2, &back);
    assert_eq!(d.ports.len(), 1);
    assert_eq!((d.ports[0].0, d.ports[0].1), (HOST2, VM3.port));
    assert_eq!(ports_of_l4(&checked(&d.ports[0].2)), (80, 40000));
}

#[test]
fn translations_are_distinct_and_per_destination() {
    let mut lab = Lab::new(HOST1, NatConfig::default());
    let mut seen = Vec::new();
    for i in 0..50 {
        seen.push(open(&mut lab, 1 + i, 40000 + i as u16, WEB, 80));
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 50, "50 connections, 50 ports: {seen:?}");
    // Another destination may reuse a port: translations are per destination.
    let other = open(&mut lab, 100, 40000, WEB, 443);
    assert!(seen.contains(&other));
    // Each answer finds its own connection.
    for (i, port) in seen.iter().enumerate() {
        let back = tcp(
            GW_MAC,
            EDGE_MAC,
            WEB,
            NAT_EIP,
            (80, *port),
            TcpControl::Syn,
            true,
        );
        let d = lab.sent_by_internet(200 + i as u64, &back);
        assert_eq!(ports_of_l4(&checked(&d.ports[0].2)).1, 40000 + i as u16);
    }
    assert_eq!(
        lab.nat()
            .nat_gateway_stats(NAT_ID)
            .unwrap()
            .active_connections,
        51
    );
}

#[test]
fn nothing_unsolicited_gets_in() {
    let mut lab = Lab::new(HOST1, NatConfig::default());
    open(&mut lab, 1, 40000, WEB, 80);
    // Wrong port, wrong remote port, another remote, another protocol: dropped, counted.
    for (i, f) in [
        tcp(
            GW_MAC,
            EDGE_MAC,
            WEB,
            NAT_EIP,
            (80, 2000),
            TcpControl::Syn,
            false,
        ),
        tcp(
            GW_MAC,
            EDGE_MAC,
            WEB,
            NAT_EIP,
            (81, PORT_FIRST),
            TcpControl::Syn,
            true,
        ),
        tcp(
            GW_MAC,
            EDGE_MAC,
            Ipv4Addr::new(203, 0, 113, 11),
            NAT_EIP,
            (80, PORT_FIRST),
            TcpControl::Syn,
            true,
        ),
        udp(GW_MAC, EDGE_MAC, WEB, NAT_EIP, 80, PORT_FIRST, b"x"),
        echo_request(GW_MAC, EDGE_MAC, WEB, NAT_EIP, 64, 7, 1, b"ping"),
    ]
    .iter()
    .enumerate()
    {
        let d = lab.sent_by_internet(10 + i as u64, f);
        assert!(d.ports.is_empty() && d.edge.is_empty(), "frame {i}: {d:?}");
    }
    let e = lab.nat();
    assert_eq!(e.counters().drops(DropReason::NatNoTranslation), 5);
    assert_eq!(
        e.counters()
            .eni(NAT_ENI)
            .unwrap()
            .drops(DropReason::NatNoTranslation),
        5
    );
    assert_eq!(e.nat_gateway_stats(NAT_ID).unwrap().packets_drop, 5);
    // The private instance has no public address: the internet cannot even name it.
    let to_private = tcp(
        GW_MAC,
        EDGE_MAC,
        WEB,
        VM3.ip,
        (80, 40000),
        TcpControl::Syn,
        false,
    );
    assert!(lab.sent_by_internet(20, &to_private).ports.is_empty());
    assert_eq!(lab.nat().counters().drops(DropReason::EdgeNotHeld), 1);
}

#[test]
fn udp_and_icmp_echo_are_translated_both_ways() {
    let mut lab = Lab::new(HOST1, NatConfig::default());
    let d = lab.sent_by_vm3(1, &udp(VM3.mac, ROUTER1, VM3.ip, WEB, 5353, 7, b"echo"));
    let ip = checked(&d.edge[0]);
    let (uport, _) = ports_of_l4(&ip);
    assert_eq!(ip.src_addr(), NAT_EIP);
    let d = lab.sent_by_internet(2, &udp(GW_MAC, EDGE_MAC, WEB, NAT_EIP, 7, uport, b"echo"));
    let ip = checked(&d.ports[0].2);
    assert_eq!((ip.dst_addr(), ports_of_l4(&ip)), (VM3.ip, (7, 5353)));

    // ping: the echo identifier is translated like a port.
    let req = echo_request(VM3.mac, ROUTER1, VM3.ip, WEB, 64, 77, 1, b"abcdefgh");
    let d = lab.sent_by_vm3(3, &req);
    let ip = checked(&d.edge[0]);
    assert_eq!(ip.src_addr(), NAT_EIP);
    let icmp = ip.payload();
    assert_eq!(icmp[0], 8);
    let id = u16::from_be_bytes([icmp[4], icmp[5]]);
    let reply = ipv4(
        GW_MAC,
        EDGE_MAC,
        WEB,
        NAT_EIP,
        64,
        IpProtocol::Icmp,
        &icmp_bytes(&Icmpv4Repr::EchoReply {
            ident: id,
            seq_no: 1,
            data: b"abcdefgh",
        }),
    );
    let d = lab.sent_by_internet(4, &reply);
    assert_eq!(d.ports.len(), 1);
    let ip = checked(&d.ports[0].2);
    assert_eq!(ip.dst_addr(), VM3.ip);
    let icmp = ip.payload();
    assert_eq!((icmp[0], u16::from_be_bytes([icmp[4], icmp[5]])), (0, 77));
}

/// Nothing the NAT gateway translates is offered to the kernel fast path: not the flows to
/// its port, and not the ones leaving from it (the replies it translated back, sent on from
/// its ENI), on either host. The agent found the latter offered (and refused: the port has
/// no device) in the e2e suite with the fast path on.
#[test]
fn the_gateways_flows_are_never_offered_to_the_kernel() {
    for nat_host in [HOST1, HOST2] {
        let mut lab = Lab::new(nat_host, NatConfig::default());
        for ms in 1..=3 {
            let d = lab.sent_by_vm3(ms * 10, &udp(VM3.mac, ROUTER1, VM3.ip, WEB, 5353, 7, b"x"));
            let (uport, _) = ports_of_l4(&checked(&d.edge[0]));
            let back = udp(GW_MAC, EDGE_MAC, WEB, NAT_EIP, 7, uport, b"x");
            let d = lab.sent_by_internet(ms * 10 + 1, &back);
            assert_eq!(d.ports.len(), 1, "the reply reaches zigi-vm3");
        }
        for (h, e) in &lab.hosts {
            let at_gateway: Vec<_> = e.kernel_flows().filter(|k| k.port() == NAT_PORT).collect();
            assert!(at_gateway.is_empty(), "host {h} offers {at_gateway:?}");
        }
        // zigi-vm3's own flow (to the gateway's ENI) stays in the engine too.
        let vm3_host = lab.engine(HOST2);
        assert!(vm3_host
            .kernel_flows()
            .all(|k| !(k.src == VM3.ip && k.dst == WEB)));
    }
}

#[test]
fn icmp_errors_about_a_translated_flow_come_back_translated() {
    let mut lab = Lab::new(HOST1, NatConfig::default());
    let d = lab.sent_by_vm3(1, &udp(VM3.mac, ROUTER1, VM3.ip, WEB, 5353, 53, b"query"));
    let sent = d.edge[0].clone();
    let port = ports_of_l4(&checked(&sent)).0;
    // Port unreachable from the web host, quoting what it got (the Elastic IP and port).
    let quote = &sent[14..];
    let unreachable = ipv4(
        GW_MAC,
        EDGE_MAC,
        WEB,
        NAT_EIP,
        64,
        IpProtocol::Icmp,
        &icmp_bytes(&Icmpv4Repr::DstUnreachable {
            reason: softvpc_wire::Icmpv4DstUnreachable::PortUnreachable,
            header: Ipv4Repr {
                src_addr: NAT_EIP,
                dst_addr: WEB,
                next_header: IpProtocol::Udp,
                payload_len: quote.len() - 20,
                hop_limit: 63,
            },
            data: &quote[20..28],
        }),
    );
    let d = lab.sent_by_internet(2, &unreachable);
    assert_eq!(d.ports.len(), 1, "{d:?}");
    let (host, p, f) = &d.ports[0];
    assert_eq!((*host, *p), (HOST2, VM3.port));
    let ip = checked(f);
    assert_eq!(ip.dst_addr(), VM3.ip);
    let icmp = ip.payload();
    assert_eq!((icmp[0], icmp[1]), (3, 3));
    let inner = Ipv4Packet::new_unchecked(&icmp[8..]);
    assert!(inner.verify_checksum(), "quoted header checksum");
    assert_eq!((inner.src_addr(), inner.dst_addr()), (VM3.ip, WEB));
    assert_eq!(
        u16::from_be_bytes([icmp[28], icmp[29]]),
        5353,
        "quoted source port"
    );
    // About a port never given out: dropped.
    let mut forged = unreachable.clone();
    let at = 14 + 20 + 8 + 20;
    forged[at..at + 2].copy_from_slice(&(port + 1).to_be_bytes());
    assert!(lab.sent_by_internet(3, &forged).ports.is_empty());
}

#[test]
fn too_big_for_the_internet_gateway_gets_frag_needed() {
    let mut lab = Lab::new(HOST1, NatConfig::default());
    // DF (smoltcp sets it), 3000 bytes: ICMP 3/4 with next-hop MTU 1500 back to zigi-vm3.
    let big = udp(VM3.mac, ROUTER1, VM3.ip, WEB, 40000, 7, &[0x5a; 3000]);
    let d = lab.sent_by_vm3(1, &big);
    assert!(d.edge.is_empty());
    assert_eq!(d.ports.len(), 1, "{d:?}");
    let (host, p, f) = &d.ports[0];
    assert_eq!((*host, *p), (HOST2, VM3.port));
    let ip = checked(f);
    // From zigi-vm3's subnet router, on its own host: the packet never crossed the underlay.
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (Ipv4Addr::new(10, 0, 1, 1), VM3.ip)
    );
    let icmp = ip.payload();
    assert_eq!((icmp[0], icmp[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1500);
    assert_eq!(
        &icmp[8 + 12..8 + 16],
        &VM3.ip.octets()[..],
        "quotes the instance's packet"
    );
    assert_eq!(lab.engine(HOST2).counters().frames(Path::IcmpFragNeeded), 1);
    // 1500 bytes pass; once the flow is cached, a big one still gets frag-needed.
    let fits = udp(VM3.mac, ROUTER1, VM3.ip, WEB, 40000, 7, &[0x5a; 1472]);
    assert_eq!(lab.sent_by_vm3(2, &fits).edge.len(), 1);
    assert_eq!(lab.sent_by_vm3(3, &fits).edge.len(), 1);
    assert_eq!(lab.sent_by_vm3(4, &big).ports.len(), 1);
    assert_eq!(lab.engine(HOST2).counters().frames(Path::IcmpFragNeeded), 2);
}

#[test]
fn the_limit_per_destination_refuses_and_counts() {
    let limit = 3;
    let mut lab = Lab::new(
        HOST1,
        NatConfig {
            destination_limit: limit,
            ..NatConfig::default()
        },
    );
    for i in 0..limit {
        open(&mut lab, 1, 40000 + i as u16, WEB, 80);
    }
    let d = lab.sent_by_vm3(2, &vm3_syn(41000, WEB, 80));
    assert!(d.edge.is_empty());
    let e = lab.nat();
    assert_eq!(e.counters().drops(DropReason::NatPortAllocation), 1);
    let s = e.nat_gateway_stats(NAT_ID).unwrap();
    assert_eq!((s.error_port_allocation, s.packets_drop), (1, 1));
    // Another destination is not affected.
    open(&mut lab, 3, 41000, WEB, 443);
    let mut text = String::new();
    lab.nat().counters().write_prometheus(&mut text);
    assert!(text
        .contains("softvpc_nat_gateway_error_port_allocation_total{nat_gateway_id=\"nat-1\"} 1"));
    assert!(
        text.contains("softvpc_nat_gateway_active_connection_count{nat_gateway_id=\"nat-1\"} 4")
    );
}

#[test]
fn translations_expire_after_350_seconds_idle() {
    let mut lab = Lab::new(HOST1, NatConfig::default());
    let port = open(&mut lab, 1, 40000, WEB, 80);
    let back = |p| {
        tcp(
            GW_MAC,
            EDGE_MAC,
            WEB,
            NAT_EIP,
            (80, p),
            TcpControl::None,
            true,
        )
    };
    let idle = IDLE_TIMEOUT.as_millis() as u64;
    // Used at 349 s, then again at 690 s (341 s later): alive.
    assert_eq!(
        lab.sent_by_internet(1 + idle - 1000, &back(port))
            .ports
            .len(),
        1
    );
    assert_eq!(lab.sent_by_internet(690_000, &back(port)).ports.len(), 1);
    // The timer sweeps it once idle for 350 s.
    let when = at_ms(idle * 3);
    lab.nat().handle_timeout(when);
    let s = lab.nat().nat_gateway_stats(NAT_ID).unwrap();
    assert_eq!((s.active_connections, s.idle_timeouts), (0, 1));
    assert!(lab
        .sent_by_internet(idle * 3 + 1, &back(port))
        .ports
        .is_empty());
    assert_eq!(lab.nat().counters().drops(DropReason::NatNoTranslation), 1);
}

/// zigi-vm3's segment with `control` on its connection from `sport` to WEB:80.
fn vm3_segment(sport: u16, control: TcpControl) -> Vec<u8> {
    tcp(VM3.mac, ROUTER1, VM3.ip, WEB, (sport, 80), control, true)
}

/// WEB's segment with `control` to the gateway's `port`.
fn web_segment(port: u16, control: TcpControl) -> Vec<u8> {
    tcp(GW_MAC, EDGE_MAC, WEB, NAT_EIP, (80, port), control, true)
}

/// Whether a new connection to WEB:80 gets a port at `ms` (the limit is 2 in these tests).
fn room_at(lab: &mut Lab, ms: u64, sport: u16) -> bool {
    let d = lab.sent_by_vm3(ms, &vm3_syn(sport, WEB, 80));
    !d.edge.is_empty()
}

#[test]
fn a_reset_connection_frees_its_port_after_10_seconds() {
    let limit = NatConfig {
        destination_limit: 2,
        ..NatConfig::default()
    };
    let mut lab = Lab::new(HOST1, limit);
    open(&mut lab, 1, 40000, WEB, 80);
    let p2 = open(&mut lab, 1, 40001, WEB, 80);
    // One reset by the instance, one by the server: both go through, translated.
    let d = lab.sent_by_vm3(2, &vm3_segment(40000, TcpControl::Rst));
    assert_eq!(d.edge.len(), 1, "{d:?}");
    assert!(TcpPacket::new_checked(checked(&d.edge[0]).payload())
        .unwrap()
        .rst());
    assert_eq!(
        lab.sent_by_internet(2, &web_segment(p2, TcpControl::Rst))
            .ports
            .len(),
        1
    );
    // Held for stray segments a while (still at the limit), then free.
    let reset = RESET_TIMEOUT.as_millis() as u64;
    assert!(!room_at(&mut lab, reset - 10, 41000));
    assert!(room_at(&mut lab, reset + 10, 41001));
    assert!(room_at(&mut lab, reset + 10, 41002));
    assert!(!room_at(&mut lab, reset + 10, 41003));
    // The timer frees them too; neither counts as an idle timeout.
    lab.nat().handle_timeout(at_ms(3 * reset));
    let s = lab.nat().nat_gateway_stats(NAT_ID).unwrap();
    assert_eq!((s.active_connections, s.idle_timeouts), (2, 0));
}

#[test]
fn a_connection_closed_each_way_frees_its_port_after_120_seconds() {
    let limit = NatConfig {
        destination_limit: 2,
        ..NatConfig::default()
    };
    let mut lab = Lab::new(HOST1, limit);
    let p1 = open(&mut lab, 1, 40000, WEB, 80);
    let p2 = open(&mut lab, 1, 40001, WEB, 80);
    // The first closed by both sides, the second only by the instance (half-closed: alive).
    assert_eq!(
        lab.sent_by_vm3(2, &vm3_segment(40000, TcpControl::Fin))
            .edge
            .len(),
        1
    );
    assert_eq!(
        lab.sent_by_internet(3, &web_segment(p1, TcpControl::Fin))
            .ports
            .len(),
        1
    );
    assert_eq!(
        lab.sent_by_vm3(2, &vm3_segment(40001, TcpControl::Fin))
            .edge
            .len(),
        1
    );
    // The last ACK still finds its translation.
    assert_eq!(
        lab.sent_by_vm3(4, &vm3_segment(40000, TcpControl::None))
            .edge
            .len(),
        1
    );
    let closed = CLOSED_TIMEOUT.as_millis() as u64;
    assert!(!room_at(&mut lab, closed - 10, 41000));
    assert!(room_at(&mut lab, closed + 10, 41001));
    assert!(!room_at(&mut lab, closed + 10, 41002));
    // The half-closed one is still there and translates.
    assert_eq!(
        lab.sent_by_internet(closed + 20, &web_segment(p2, TcpControl::None))
            .ports
            .len(),
        1
    );
    assert_eq!(
        lab.nat().nat_gateway_stats(NAT_ID).unwrap().idle_timeouts,
        0
    );
}

#[test]
fn a_syn_reusing_a_reset_translation_makes_it_live_again() {
    let mut lab = Lab::new(HOST1, NatConfig::default());
    let port = open(&mut lab, 1, 40000, WEB, 80);
    assert_eq!(
        lab.sent_by_vm3(2, &vm3_segment(40000, TcpControl::Rst))
            .edge
            .len(),
        1
    );
    // The same ports again within 10 s: the same translation, a connection again.
    assert_eq!(open(&mut lab, 3_000, 40000, WEB, 80), port);
    let later = 3_000 + 2 * RESET_TIMEOUT.as_millis() as u64;
    lab.nat().handle_timeout(at_ms(later));
    assert_eq!(
        lab.sent_by_internet(later + 1, &web_segment(port, TcpControl::None))
            .ports
            .len(),
        1
    );
}

#[test]
fn the_gateway_subnets_acl_applies() {
    let mut r = records(HOST1);
    // The public subnet's ACL: everything out, in only from the VPC.
    let entry = |n, egress, cidr: &str| {
        AclEntry::from_aws(n, egress, "-1", "allow", cidr.parse().unwrap(), None, None).unwrap()
    };
    r.acls.insert(
        "acl-public".into(),
        (
            "vpc-1".into(),
            vec![
                entry(100, true, "0.0.0.0/0"),
                entry(100, false, "10.0.0.0/16"),
            ],
            vec![VM1.subnet.into()],
        ),
    );
    let mut lab = Lab::with(r, HOST1, NatConfig::default());
    let port = open(&mut lab, 1, 40000, WEB, 80);
    let back = tcp(
        GW_MAC,
        EDGE_MAC,
        WEB,
        NAT_EIP,
        (80, port),
        TcpControl::Syn,
        true,
    );
    assert!(lab.sent_by_internet(2, &back).ports.is_empty());
    assert_eq!(lab.nat().counters().drops(DropReason::NaclDenied), 1);
}

/// The gateway forwards out through its own subnet's route to the internet gateway: without it
/// nothing leaves (`no_route` on the gateway's host), though the private subnet routes to it.
#[test]
fn out_only_through_the_gateway_subnets_internet_gateway_route() {
    let mut r = records(HOST1);
    r.route_tables.get_mut("rtb-main").unwrap().2.clear();
    let mut lab = Lab::with(r, HOST1, NatConfig::default());
    let d = lab.sent_by_vm3(1, &vm3_syn(40000, WEB, 80));
    assert!(d.edge.is_empty() && d.ports.is_empty(), "{d:?}");
    assert_eq!(lab.nat().counters().drops(DropReason::NoRoute), 1);
    assert_eq!(lab.nat().counters().frames(Path::ToEdge), 0);
}

#[test]
fn the_table_holds_55000_per_destination_in_virtual_time() {
    let t0 = Instant::now();
    let mut t = NatTable::new(NatConfig::default());
    let flow = |i: u32| Inside {
        proto: 6,
        src: Ipv4Addr::from(0x0a00_0100 + (i >> 16)),
        src_port: i as u16,
        dst: WEB,
        dst_port: 80,
    };
    let mut ports = std::collections::HashSet::new();
    for i in 0..DESTINATION_LIMIT {
        let p = t.outbound(t0, flow(i)).expect("a port");
        assert!(ports.insert(p), "port {p} given twice");
    }
    assert_eq!(t.outbound(t0, flow(DESTINATION_LIMIT)), None);
    assert_eq!(t.stats().error_port_allocation, 1);
    // An existing flow keeps its port at the limit.
    assert!(t.outbound(t0, flow(7)).is_some());
    // Another destination port is another destination.
    let mut other = flow(DESTINATION_LIMIT);
    other.dst_port = 443;
    assert!(t.outbound(t0, other).is_some());
    // Once the others are idle for 350 s, room again.
    let later = t0 + IDLE_TIMEOUT + Duration::from_secs(1);
    assert!(t.outbound(later, flow(DESTINATION_LIMIT + 1)).is_some());
    assert!(t.stats().idle_timeouts >= u64::from(DESTINATION_LIMIT) - 1);
}

proptest::proptest! {
    /// A TCP segment or UDP datagram translated out, answered from where it went, comes back to the
    /// instance's address and port with every checksum right; bytes of any kind never panic.
    #[test]
    fn a_reply_finds_its_way_back(
        tcp_proto in proptest::bool::ANY,
        src in proptest::array::uniform4(proptest::num::u8::ANY),
        dst in proptest::array::uniform4(proptest::num::u8::ANY),
        sport in 1u16..,
        dport in 1u16..,
        payload in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        junk in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
    ) {
        let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
        let t0 = Instant::now();
        let mut t = NatTable::new(NatConfig::default());
        let mut j = junk.clone();
        let _ = t.translate_out(t0, &mut j, NAT_IP);
        let mut j = junk;
        let _ = t.translate_in(t0, &mut j);
        let frame = if tcp_proto {
            // Only a SYN opens a TCP translation.
            tcp(VM3.mac, ROUTER1, src, dst, (sport, dport), TcpControl::Syn, false)
        } else {
            udp(VM3.mac, ROUTER1, src, dst, sport, dport, &payload)
        };
        let mut out = frame[14..].to_vec();
        proptest::prop_assume!(t.translate_out(t0, &mut out, NAT_IP).is_ok());
        let sent = Ipv4Packet::new_checked(&out[..]).unwrap();
        proptest::prop_assert!(sent.verify_checksum());
        proptest::prop_assert_eq!(sent.src_addr(), NAT_IP);
        let port = u16::from_be_bytes([sent.payload()[0], sent.payload()[1]]);
        proptest::prop_assert!(port >= PORT_FIRST);
        // The reply: addresses and ports swapped, checksums computed afresh.
        let reply = if tcp_proto {
            let mut f = tcp(GW_MAC, EDGE_MAC, dst, NAT_IP, (dport, port), TcpControl::Psh, true);
            f.drain(..14);
            f
        } else {
            let mut f = udp(GW_MAC, EDGE_MAC, dst, NAT_IP, dport, port, &payload);
            f.drain(..14);
            f
        };
        let mut back = reply;
        let inside = t.translate_in(t0, &mut back).unwrap();
        proptest::prop_assert_eq!((inside.src, inside.src_port), (src, sport));
        let got = Ipv4Packet::new_checked(&back[..]).unwrap();
        proptest::prop_assert!(got.verify_checksum());
        proptest::prop_assert_eq!(got.dst_addr(), src);
        let (a, b) = (got.src_addr().into(), got.dst_addr().into());
        if tcp_proto {
            let tp = TcpPacket::new_checked(got.payload()).unwrap();
            proptest::prop_assert!(tp.verify_checksum(&a, &b));
            proptest::prop_assert_eq!(tp.dst_port(), sport);
        } else {
            let u = UdpPacket::new_checked(got.payload()).unwrap();
            proptest::prop_assert!(u.verify_checksum(&a, &b));
            proptest::prop_assert_eq!(u.dst_port(), sport);
        }
    }
}

/// The frame `frame` (Ethernet + IPv4) cut into IPv4 fragments of at most `mtu` bytes, each
/// with its own header checksum, in order.
fn fragments(frame: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    let (eth, l3) = frame.split_at(14);
    let payload = &l3[20..];
    let step = (mtu - 20) / 8 * 8;
    let chunks: Vec<&[u8]> = payload.chunks(step).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut h = l3[..20].to_vec();
            h[2..4].copy_from_slice(&((20 + c.len()) as u16).to_be_bytes());
            let more = if i + 1 < chunks.len() { 0x2000 } else { 0 };
            h[6..8].copy_from_slice(&(more | (i * step / 8) as u16).to_be_bytes());
            h[10..12].fill(0);
            let sum = checksum(&h);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            [eth, &h, c].concat()
        })
        .collect()
}

/// The IPv4 fragments (frames) of one datagram put back together: (header of the whole,
/// payload). Asserts they share addresses and identification, each header is valid, and they
/// cover the payload exactly.
fn reassembled(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut parts: Vec<(usize, bool, Vec<u8>)> = frames
        .iter()
        .map(|f| {
            let ip = checked_header(f);
            let frag = u16::from_be_bytes([f[20], f[21]]);
            (
                usize::from(frag & 0x1fff) * 8,
                frag & 0x2000 != 0,
                ip.payload().to_vec(),
            )
        })
        .collect();
    let first = &frames[0][14..34];
    for f in frames {
        assert_eq!(&f[14 + 4..14 + 6], &first[4..6], "one identification");
        assert_eq!(
            &f[14 + 12..14 + 20],
            &first[12..20],
            "one pair of addresses"
        );
    }
    parts.sort_by_key(|p| p.0);
    let mut payload = Vec::new();
    for (i, (off, more, data)) in parts.iter().enumerate() {
        assert_eq!(*off, payload.len(), "fragments cover the datagram");
        assert_eq!(*more, i + 1 < parts.len());
        payload.extend_from_slice(data);
    }
    let mut h = first.to_vec();
    h[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h[6..8].fill(0);
    h[10..12].fill(0);
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    [h, payload].concat()
}

/// A fragment's IPv4 header, its checksum verified (its transport part is incomplete).
fn checked_header(frame: &[u8]) -> Ipv4Packet<&[u8]> {
    let ip = Ipv4Packet::new_checked(&frame[14..]).expect("ipv4");
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    ip
}

#[test]
fn fragmented_udp_goes_out_and_comes_back() {
    let mut lab = Lab::new(HOST1, NatConfig::default());
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let whole = udp(VM3.mac, ROUTER1, VM3.ip, WEB, 5353, 9000, &data);
    let frags = fragments(&whole, 1500);
    assert_eq!(frags.len(), 3);
    let mut edge = Vec::new();
    for (i, f) in frags.iter().enumerate() {
        let d = lab.sent_by_vm3(1 + i as u64, f);
        assert!(d.ports.is_empty(), "{d:?}");
        edge.extend(d.edge);
    }
    assert_eq!(edge.len(), 3, "every fragment goes out");
    // Put back together at the far end: the gateway's address and port, every checksum right.
    let l3 = reassembled(&edge);
    let ip = Ipv4Packet::new_checked(&l3[..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (NAT_EIP, WEB));
    let u = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(
        u.verify_checksum(&NAT_EIP.into(), &WEB.into()),
        "UDP checksum"
    );
    assert_eq!(u.dst_port(), 9000);
    assert_eq!(u.payload(), &data[..]);
    let port = u.src_port();
    assert!(port >= PORT_FIRST);

    // The answer, fragmented too and its last fragment first: back to zigi-vm3's port.
    let reply = udp(GW_MAC, EDGE_MAC, WEB, NAT_EIP, 9000, port, &data);
    let mut rfrags = fragments(&reply, 1400);
    assert_eq!(rfrags.len(), 3);
    rfrags.swap(1, 2);
    let mut got = Vec::new();
    for (i, f) in rfrags.iter().enumerate() {
        let d = lab.sent_by_internet(10 + i as u64, f);
        got.extend(d.ports.into_iter().map(|(h, p, f)| {
            assert_eq!((h, p), (HOST2, VM3.port));
            f
        }));
    }
    assert_eq!(got.len(), 3, "every fragment comes back");
    let l3 = reassembled(&got);
    let ip = Ipv4Packet::new_checked(&l3[..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (WEB, VM3.ip));
    let u = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(
        u.verify_checksum(&WEB.into(), &VM3.ip.into()),
        "UDP checksum"
    );
    assert_eq!((u.src_port(), u.dst_port()), (9000, 5353));
    assert_eq!(u.payload(), &data[..]);
    let s = lab.nat().nat_gateway_stats(NAT_ID).unwrap();
    assert_eq!(
        (s.packets_out_to_destination, s.packets_in_from_destination),
        (3, 3)
    );
    assert_eq!(lab.nat().counters().drops(DropReason::NatFragment), 0);
}

#[test]
fn fragments_the_gateway_cannot_place_are_dropped_and_counted() {
    let mut lab = Lab::new(HOST1, NatConfig::default());
    let data = vec![0x5a; 3000];
    // A later fragment whose first never came.
    let frags = fragments(&udp(VM3.mac, ROUTER1, VM3.ip, WEB, 5353, 9000, &data), 1500);
    assert!(lab.sent_by_vm3(1, &frags[1]).edge.is_empty());
    assert_eq!(lab.nat().counters().drops(DropReason::NatFragment), 1);
    // TCP fragments, even a first one (AWS forwards fragmented UDP only).
    let seg = ipv4(VM3.mac, ROUTER1, VM3.ip, WEB, 64, IpProtocol::Tcp, &data);
    let tf = fragments(&seg, 1500);
    assert!(lab.sent_by_vm3(2, &tf[0]).edge.is_empty());
    assert_eq!(lab.nat().counters().drops(DropReason::NatFragment), 2);
    // From the internet: a later fragment of nothing the gateway translated.
    let reply = fragments(
        &udp(GW_MAC, EDGE_MAC, WEB, NAT_EIP, 9000, 1024, &data),
        1500,
    );
    assert!(lab.sent_by_internet(3, &reply[2]).ports.is_empty());
    assert_eq!(lab.nat().counters().drops(DropReason::NatFragment), 3);
    let s = lab.nat().nat_gateway_stats(NAT_ID).unwrap();
    assert_eq!(s.packets_drop, 3);
    let mut text = String::new();
    lab.nat().counters().write_prometheus(&mut text);
    assert!(text.contains("reason=\"nat_fragment\"} 3"), "{text}");
}

/// The fragment table in virtual time: two instances using one identification towards one
/// destination leave with distinct ones; at most FRAGMENT_LIMIT datagrams in flight, room again
/// once they are complete or FRAGMENT_TIMEOUT old.
#[test]
fn fragment_state_is_bounded_and_identifications_distinct() {
    let t0 = Instant::now();
    let mut t = NatTable::new(NatConfig::default());
    let first = |src: Ipv4Addr, sport: u16, id: u16| {
        let mut f = fragments(&udp(VM3.mac, ROUTER1, src, WEB, sport, 53, &[1; 100]), 68);
        let mut l3 = f.swap_remove(0).split_off(14);
        l3[4..6].copy_from_slice(&id.to_be_bytes());
        l3[10..12].fill(0);
        let sum = checksum(&l3[..20]);
        l3[10..12].copy_from_slice(&sum.to_be_bytes());
        l3
    };
    let mut a = first(Ipv4Addr::new(10, 0, 1, 20), 5000, 7);
    let mut b = first(Ipv4Addr::new(10, 0, 1, 21), 5000, 7);
    t.translate_out(t0, &mut a, NAT_IP).unwrap();
    t.translate_out(t0, &mut b, NAT_IP).unwrap();
    assert_ne!(&a[4..6], &b[4..6], "distinct identifications out");
    assert!(Ipv4Packet::new_checked(&a[..]).unwrap().verify_checksum());
    for i in 2..FRAGMENT_LIMIT as u16 {
        let mut f = first(Ipv4Addr::new(10, 0, 1, 22), 6000 + i, i);
        t.translate_out(t0, &mut f, NAT_IP).unwrap();
    }
    let mut over = first(Ipv4Addr::new(10, 0, 1, 23), 7000, 1);
    assert_eq!(
        t.translate_out(t0, &mut over, NAT_IP),
        Err(DropReason::NatFragment)
    );
    let later = t0 + FRAGMENT_TIMEOUT;
    let mut over = first(Ipv4Addr::new(10, 0, 1, 23), 7000, 1);
    assert_eq!(t.translate_out(later, &mut over, NAT_IP), Ok(()));
}

#[test]
fn after_the_idle_timeout_the_instance_gets_an_rst() {
    let mut lab = Lab::new(HOST2, NatConfig::default());
    let port = open(&mut lab, 1, 40000, WEB, 80);
    let ack = tcp(
        VM3.mac,
        ROUTER1,
        VM3.ip,
        WEB,
        (40000, 80),
        TcpControl::Psh,
        true,
    );
    // Within 350 s the connection goes on, through the same port.
    let idle = IDLE_TIMEOUT.as_millis() as u64;
    let d = lab.sent_by_vm3(idle, &ack);
    assert_eq!(d.edge.len(), 1);
    assert_eq!(ports_of_l4(&checked(&d.edge[0])).0, port);
    // Idle for 350 s: the translation expires; the next segment gets an RST, nothing leaves.
    let later = 2 * idle + 1;
    lab.nat().handle_timeout(at_ms(later));
    let d = lab.sent_by_vm3(later + 1, &ack);
    assert!(d.edge.is_empty(), "{d:?}");
    assert_eq!(d.ports.len(), 1, "{d:?}");
    let (host, p, f) = &d.ports[0];
    assert_eq!((*host, *p), (HOST2, VM3.port));
    let ip = checked(f);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (WEB, VM3.ip));
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((t.src_port(), t.dst_port()), (80, 40000));
    assert!(t.rst() && !t.fin() && !t.syn() && !t.ack());
    // RFC 793: the segment's acknowledgment number becomes the reset's sequence number.
    assert_eq!(t.seq_number().0, 2000);
    let s = lab.nat().nat_gateway_stats(NAT_ID).unwrap();
    assert_eq!((s.idle_timeouts, s.idle_resets), (1, 1));
    assert_eq!(
        lab.nat().counters().drops(DropReason::NatConnectionReset),
        1
    );
    // An RST from the instance is not answered; a SYN opens a new translation.
    let rst = tcp(
        VM3.mac,
        ROUTER1,
        VM3.ip,
        WEB,
        (40000, 80),
        TcpControl::Rst,
        false,
    );
    let d = lab.sent_by_vm3(later + 2, &rst);
    assert!(d.edge.is_empty() && d.ports.is_empty(), "{d:?}");
    open(&mut lab, later + 3, 40000, WEB, 80);
}

/// A segment without ACK gets an RST that acknowledges what it carried.
#[test]
fn a_reset_without_ack_acknowledges_the_segment() {
    let seg = tcp(
        VM3.mac,
        ROUTER1,
        VM3.ip,
        WEB,
        (40000, 80),
        TcpControl::Fin,
        false,
    );
    let rst = softvpc_engine::natgw::reset_for(&seg[14..]).unwrap();
    let ip = Ipv4Packet::new_checked(&rst[..]).unwrap();
    assert!(ip.verify_checksum());
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(t.verify_checksum(&WEB.into(), &VM3.ip.into()));
    assert!(t.rst() && t.ack());
    assert_eq!((t.seq_number().0, t.ack_number().0), (0, 1001));
}
