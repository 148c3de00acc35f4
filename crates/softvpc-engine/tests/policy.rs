//! The policy layers on the seed topology, simulated in memory in virtual time: both hosts'
//! engines joined by an in-memory underlay, frames sent as the instances would (to the target's
//! MAC inside a subnet, to the router's MAC across), and every decision checked at the
//! receiving instance and in the counters: security groups (both directions, tracked replies,
//! rule removal, untracked flows, group references, related ICMP errors, the conntrack limit and
//! expiry), the VPC's services never filtered (DHCP, DNS, the router), the flow table's bound,
//! network ACLs (order, subnet boundary, stateless replies), routes (blackhole,
//! gateways, longest prefix, middleboxes and the source/destination check), peering (both
//! routes, activity, deletion, non-transitive) and forged sources.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::*;
use softvpc_engine::policy::Direction as Dir;
use softvpc_engine::{
    DropReason, Engine, EngineConfig, Output, PortId, SgHow, TraceVerdict, Vni, Why,
};
use softvpc_wire::IpProtocol;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYNACK: u8 = 0x12;

/// A TCP segment (a bare 20-byte header; the engine does not check TCP checksums).
fn tcp(from: &Vm, dst_mac: Mac, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    tcp_from(from, from.ip, dst_mac, dst, sport, dport, flags)
}

fn tcp_from(
    from: &Vm,
    src: Ipv4Addr,
    dst_mac: Mac,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
) -> Vec<u8> {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = 0x50;
    h[13] = flags;
    ipv4(from.mac, dst_mac, src, dst, 64, IpProtocol::Tcp, &h)
}

use softvpc_engine::Mac;

/// Both hosts of the seed, with the records they were built from, in virtual time.
struct Net {
    records: SeedRecords,
    hosts: Vec<(Ipv4Addr, Engine)>,
    now: Instant,
    out: Output,
}

impl Net {
    fn new(records: SeedRecords) -> Net {
        Net::with_config(records, |c| c)
    }

    fn with_config(records: SeedRecords, f: impl Fn(EngineConfig) -> EngineConfig) -> Net {
        let hosts = seed_hosts(&records, f);
        Net {
            records,
            hosts,
            now: t0(),
            out: Output::default(),
        }
    }

    /// A policy or mapping change: every host gets a new table.
    fn update(&mut self, f: impl FnOnce(&mut SeedRecords)) {
        f(&mut self.records);
        retable(&mut self.hosts, &self.records);
    }

    fn engine(&mut self, host: Ipv4Addr) -> &mut Engine {
        &mut self.hosts.iter_mut().find(|(h, _)| *h == host).unwrap().1
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        for (_, e) in &mut self.hosts {
            if e.poll_timeout().is_some_and(|t| t <= now) {
                e.handle_timeout(now);
            }
        }
    }

    /// `vm` sends `frame`; returns the frames instances received (port, frame) with their
    /// host, after the underlay carried what had to cross.
    fn send(&mut self, vm: &Vm, frame: &[u8]) -> Vec<(Ipv4Addr, PortId, Vec<u8>)> {
        self.now += Duration::from_micros(10);
        let now = self.now;
        let mut delivered = Vec::new();
        self.out.clear();
        let host = vm.host;
        let e = &mut self.hosts.iter_mut().find(|(h, _)| *h == host).unwrap().1;
        e.handle_port_frames(now, vm.port, [frame], &mut self.out);
        let sent = Sent::from(&self.out);
        for (p, f) in sent.to_ports {
            delivered.push((host, p, f));
        }
        for t in sent.to_underlay {
            self.out.clear();
            let e = &mut self
                .hosts
                .iter_mut()
                .find(|(h, _)| *h == t.dst_ip)
                .unwrap()
                .1;
            e.handle_underlay_datagrams(now, [(host, &t.payload[..])], &mut self.out);
            for (p, f) in Sent::from(&self.out).to_ports {
                delivered.push((t.dst_ip, p, f));
            }
        }
        delivered
    }

    /// Whether `frame` from `from` reaches `to`.
    fn reaches(&mut self, from: &Vm, to: &Vm, frame: &[u8]) -> bool {
        let got = self.send(from, frame);
        got.iter().any(|(h, p, _)| *h == to.host && *p == to.port)
    }

    fn drops_at(&mut self, vm: &Vm, reason: DropReason) -> u64 {
        self.engine(vm.host)
            .counters()
            .eni(vm.eni)
            .map_or(0, |c| c.drops(reason))
    }
}

fn sg_rule(
    id: &str,
    group: &str,
    dir: Dir,
    proto: &str,
    ports: Option<(i32, i32)>,
    peer: Peer,
) -> SgRule {
    SgRule::from_aws(
        id,
        group,
        dir,
        proto,
        ports.map(|p| p.0),
        ports.map(|p| p.1),
        peer,
    )
    .unwrap()
}

fn cidr(s: &str) -> Peer {
    Peer::Cidr(s.parse().unwrap())
}

/// zigi-vm2 in group `sg-web`: inbound TCP 22 from the VPC, no outbound rule.
fn web_on_vm2(r: &mut SeedRecords) {
    r.groups.insert(
        "sg-web".into(),
        (
            "vpc-1".into(),
            vec![sg_rule(
                "sgr-ssh",
                "sg-web",
                Dir::Ingress,
                "tcp",
                Some((22, 22)),
                cidr("10.0.0.0/16"),
            )],
        ),
    );
    r.enis.get_mut(VM2.eni).unwrap().security_group_ids = vec!["sg-web".into()];
}

#[test]
fn security_groups_admit_by_rule_and_pass_replies_both_ways() {
    let mut r = seed_records();
    web_on_vm2(&mut r);
    let mut net = Net::new(r);
    // Allowed port: delivered; its reply passes zigi-vm2's (empty) outbound rules as tracked.
    assert!(net.reaches(&VM1, &VM2, &tcp(&VM1, VM2.mac, VM2.ip, 40000, 22, SYN)));
    assert!(net.reaches(&VM2, &VM1, &tcp(&VM2, VM1.mac, VM1.ip, 22, 40000, SYNACK)));
    assert!(net.reaches(&VM1, &VM2, &tcp(&VM1, VM2.mac, VM2.ip, 40000, 22, ACK)));
    // Another port: refused at zigi-vm2, counted there.
    assert!(!net.reaches(&VM1, &VM2, &tcp(&VM1, VM2.mac, VM2.ip, 40001, 23, SYN)));
    assert_eq!(net.drops_at(&VM2, DropReason::SgDenied), 1);
    // zigi-vm2 cannot open anything itself (no outbound rule).
    assert!(!net.reaches(&VM2, &VM1, &tcp(&VM2, VM1.mac, VM1.ip, 5000, 80, SYN)));
    assert_eq!(net.drops_at(&VM2, DropReason::SgDenied), 2);
    // zigi-vm1 has no group: nothing filters it; zigi-vm2 tracks one connection.
    assert_eq!(
        net.engine(HOST2).counters().eni(VM2.eni).unwrap().tracked,
        1
    );
    // DNS with the VPC resolver (10.0.0.2) is never filtered, even without an outbound rule:
    // the router's gateway answers it before any security group sees it.
    let query = [
        0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, // header: one question
        13, b'i', b'p', b'-', b'1', b'0', b'-', b'0', b'-', b'0', b'-', b'3', b'0', 3, b'e', b'c',
        b'2', 8, b'i', b'n', b't', b'e', b'r', b'n', b'a', b'l', 0, 0, 1, 0, 1,
    ];
    let dns = udp(
        VM2.mac,
        ROUTER1,
        VM2.ip,
        Ipv4Addr::new(10, 0, 0, 2),
        5353,
        53,
        &query,
    );
    let trace = net
        .engine(HOST2)
        .trace_port_frame(VM2.port, &dns, &mut Output::default());
    assert_eq!(trace.verdict, TraceVerdict::Reply(VM2.port), "{trace:?}");
    assert!(!trace
        .why
        .iter()
        .any(|(_, w)| matches!(w, Why::SecurityGroup { .. })));
}

#[test]
fn removing_a_rule_keeps_open_connections_and_refuses_new_ones_at_once() {
    let mut r = seed_records();
    web_on_vm2(&mut r);
    let mut net = Net::new(r);
    let syn = tcp(&VM1, VM2.mac, VM2.ip, 40000, 22, SYN);
    assert!(net.reaches(&VM1, &VM2, &syn));
    let ack = tcp(&VM1, VM2.mac, VM2.ip, 40000, 22, ACK);
    assert!(net.reaches(&VM1, &VM2, &ack));
    // The flow is now served by host-2's flow table.
    let hits = net.engine(HOST2).counters().flow_hits();
    assert!(net.reaches(&VM1, &VM2, &ack));
    assert_eq!(net.engine(HOST2).counters().flow_hits(), hits + 1);

    net.update(|r| r.groups.get_mut("sg-web").unwrap().1.clear());
    // The very next packet is decided again (a miss), and the tracked connection lives on.
    let misses = net.engine(HOST2).counters().flow_misses();
    assert!(net.reaches(&VM1, &VM2, &ack));
    assert_eq!(net.engine(HOST2).counters().flow_misses(), misses + 1);
    assert!(net.reaches(&VM2, &VM1, &tcp(&VM2, VM1.mac, VM1.ip, 22, 40000, ACK)));
    // A new connection is refused.
    assert!(!net.reaches(&VM1, &VM2, &tcp(&VM1, VM2.mac, VM2.ip, 40002, 22, SYN)));
    assert_eq!(net.drops_at(&VM2, DropReason::SgDenied), 1);
    // The trace names no rule for the surviving connection.
    let trace = net.engine(HOST2).trace_underlay_datagram(
        HOST1,
        &vxlan(VNI1.0, &ack),
        &mut Output::default(),
    );
    assert!(trace.why.contains(&(
        softvpc_engine::LayerId::SecurityGroup,
        Why::SecurityGroup {
            eni: VM2.eni.into(),
            direction: Dir::Ingress,
            how: SgHow::Tracked { reply: false },
            rule: None,
        }
    )));
}

#[test]
fn untracked_flows_are_cut_with_their_rule() {
    let mut r = seed_records();
    r.groups.insert(
        "sg-open".into(),
        (
            "vpc-1".into(),
            vec![
                sg_rule(
                    "sgr-in",
                    "sg-open",
                    Dir::Ingress,
                    "tcp",
                    Some((80, 80)),
                    cidr("0.0.0.0/0"),
                ),
                sg_rule(
                    "sgr-out",
                    "sg-open",
                    Dir::Egress,
                    "-1",
                    None,
                    cidr("0.0.0.0/0"),
                ),
            ],
        ),
    );
    r.enis.get_mut(VM2.eni).unwrap().security_group_ids = vec!["sg-open".into()];
    let mut net = Net::new(r);
    assert!(net.reaches(&VM1, &VM2, &tcp(&VM1, VM2.mac, VM2.ip, 40000, 80, SYN)));
    assert_eq!(
        net.engine(HOST2).counters().eni(VM2.eni).unwrap().tracked,
        0,
        "untracked"
    );
    net.update(|r| {
        r.groups.get_mut("sg-open").unwrap().1.remove(0);
    });
    assert!(!net.reaches(&VM1, &VM2, &tcp(&VM1, VM2.mac, VM2.ip, 40000, 80, ACK)));
}

#[test]
fn a_group_reference_admits_exactly_its_members() {
    let mut r = seed_records();
    r.groups.insert(
        "sg-db".into(),
        (
            "vpc-1".into(),
            vec![sg_rule(
                "sgr-pg",
                "sg-db",
                Dir::Ingress,
                "tcp",
                Some((5432, 5432)),
                Peer::Group("sg-app".into()),
            )],
        ),
    );
    r.groups.insert("sg-app".into(), ("vpc-1".into(), vec![]));
    r.enis.get_mut(VM2.eni).unwrap().security_group_ids = vec!["sg-db".into()];
    r.enis.get_mut(VM1.eni).unwrap().security_group_ids = vec!["sg-app".into()];
    // zigi-vm1 may send anything out (its own group's outbound rule).
    r.groups.get_mut("sg-app").unwrap().1.push(sg_rule(
        "sgr-app-out",
        "sg-app",
        Dir::Egress,
        "-1",
        None,
        cidr("0.0.0.0/0"),
    ));
    let mut net = Net::new(r);
    assert!(net.reaches(&VM1, &VM2, &tcp(&VM1, VM2.mac, VM2.ip, 1000, 5432, SYN)));
    // zigi-vm4 (no group, same subnet) is not a member.
    assert!(!net.reaches(&VM4, &VM2, &tcp(&VM4, VM2.mac, VM2.ip, 1000, 5432, SYN)));
    // Made a member (an address given for the group, as for a peer VPC's ENI): admitted.
    net.update(|r| r.members.push(("sg-app".into(), VM4.ip)));
    assert!(net.reaches(&VM4, &VM2, &tcp(&VM4, VM2.mac, VM2.ip, 1001, 5432, SYN)));
}

#[test]
fn icmp_errors_of_tracked_flows_pass() {
    let mut r = seed_records();
    r.groups.insert(
        "sg-dns".into(),
        (
            "vpc-1".into(),
            vec![sg_rule(
                "sgr-q",
                "sg-dns",
                Dir::Egress,
                "udp",
                Some((53, 53)),
                cidr("0.0.0.0/0"),
            )],
        ),
    );
    r.enis.get_mut(VM2.eni).unwrap().security_group_ids = vec!["sg-dns".into()];
    let mut net = Net::new(r);
    let query = udp(VM2.mac, VM1.mac, VM2.ip, VM1.ip, 4000, 53, b"query");
    assert!(net.reaches(&VM2, &VM1, &query));
    // zigi-vm1's port unreachable, quoting the query: passes without an inbound ICMP rule.
    let quote = &query[14..14 + 28];
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quote);
    let unreachable = ipv4(
        VM1.mac,
        VM2.mac,
        VM1.ip,
        VM2.ip,
        64,
        IpProtocol::Icmp,
        &icmp,
    );
    assert!(net.reaches(&VM1, &VM2, &unreachable));
    // One quoting something never sent is refused.
    let mut stray = icmp.clone();
    stray[8 + 20 + 1] ^= 0x55; // another source port
    let stray = ipv4(
        VM1.mac,
        VM2.mac,
        VM1.ip,
        VM2.ip,
        64,
        IpProtocol::Icmp,
        &stray,
    );
    assert!(!net.reaches(&VM1, &VM2, &stray));
}

#[test]
fn the_conntrack_limit_refuses_and_counts_and_expiry_frees() {
    let mut r = seed_records();
    r.groups.insert(
        "sg-out".into(),
        (
            "vpc-1".into(),
            vec![sg_rule(
                "sgr-udp",
                "sg-out",
                Dir::Egress,
                "udp",
                None,
                cidr("10.0.0.0/16"),
            )],
        ),
    );
    r.enis.get_mut(VM2.eni).unwrap().security_group_ids = vec!["sg-out".into()];
    let mut net = Net::with_config(r, |c| EngineConfig {
        conntrack_limit: 2,
        ..c
    });
    let flow = |port| udp(VM2.mac, VM1.mac, VM2.ip, VM1.ip, port, 9, b"x");
    assert!(net.reaches(&VM2, &VM1, &flow(1)));
    assert!(net.reaches(&VM2, &VM1, &flow(2)));
    assert!(!net.reaches(&VM2, &VM1, &flow(3)));
    assert_eq!(net.drops_at(&VM2, DropReason::ConntrackFull), 1);
    let c = net.engine(HOST2).counters().eni(VM2.eni).unwrap().clone();
    assert_eq!((c.tracked, c.conntrack_allowance_exceeded), (2, 1));
    // Established flows still pass.
    assert!(net.reaches(&VM2, &VM1, &flow(1)));
    // UDP idles out after 30 s: the engine's timer frees the table.
    net.advance(Duration::from_secs(41));
    assert_eq!(
        net.engine(HOST2).counters().eni(VM2.eni).unwrap().tracked,
        0
    );
    assert!(net.reaches(&VM2, &VM1, &flow(3)));
}

/// A DHCP DISCOVER frame from `vm` (broadcast bit set, so the answer is broadcast too).
fn dhcp_discover(vm: &Vm) -> Vec<u8> {
    use dhcproto::v4::{DhcpOption, Flags, Message, MessageType};
    use dhcproto::Encodable;
    let mut m = Message::default();
    m.set_chaddr(&vm.mac)
        .set_flags(Flags::default().set_broadcast());
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    udp(
        vm.mac,
        BROADCAST,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        68,
        67,
        &m.to_vec().unwrap(),
    )
}

/// AWS never filters the VPC's services: zigi-vm1 in a group without any rule (nothing in,
/// nothing out) and its subnet under an ACL without entries (`*` denies both ways) still gets
/// its DHCP offer, its DNS answer from the VPC's resolver (base + 2) and the router's echo
/// reply, uncounted; anything else it sends is refused (the controls).
#[test]
fn dhcp_dns_and_the_router_are_never_filtered_by_groups_or_acls() {
    let mut r = seed_records();
    r.groups
        .insert("sg-closed".into(), ("vpc-1".into(), Vec::new()));
    r.enis.get_mut(VM1.eni).unwrap().security_group_ids = vec!["sg-closed".into()];
    r.acls.insert(
        "acl-closed".into(),
        (
            "vpc-1".into(),
            Vec::new(),
            vec!["subnet-0000000000000000a".into()],
        ),
    );
    let mut net = Net::new(r);
    let answered = |got: &[(Ipv4Addr, PortId, Vec<u8>)]| {
        got.len() == 1 && (got[0].0, got[0].1) == (HOST1, VM1.port)
    };

    // DHCP: an OFFER of zigi-vm1's own address comes back on its port.
    let offer = net.send(&VM1, &dhcp_discover(&VM1));
    assert!(answered(&offer), "no DHCP offer: {offer:?}");
    let ip = parse_ipv4(&offer[0].2);
    assert_eq!(
        (ip.src_addr, ip.next_header),
        (Ipv4Addr::new(10, 0, 0, 1), IpProtocol::Udp)
    );
    let msg = &offer[0].2[14 + 20 + 8..];
    assert_eq!(
        Ipv4Addr::new(msg[16], msg[17], msg[18], msg[19]),
        VM1.ip,
        "yiaddr"
    );

    // DNS with the VPC's resolver: answered by the router's gateway.
    let query = [
        0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, // header: one question
        13, b'i', b'p', b'-', b'1', b'0', b'-', b'0', b'-', b'0', b'-', b'3', b'0', 3, b'e', b'c',
        b'2', 8, b'i', b'n', b't', b'e', b'r', b'n', b'a', b'l', 0, 0, 1, 0, 1,
    ];
    let dns = udp(
        VM1.mac,
        ROUTER1,
        VM1.ip,
        Ipv4Addr::new(10, 0, 0, 2),
        5353,
        53,
        &query,
    );
    let answer = net.send(&VM1, &dns);
    assert!(answered(&answer), "no DNS answer: {answer:?}");
    let a = &answer[0].2;
    assert_eq!(parse_ipv4(a).src_addr, Ipv4Addr::new(10, 0, 0, 2));
    let dns_answer = &a[14 + 20 + 8..];
    assert_eq!(&dns_answer[..2], &[0x00, 0x01], "the query's id");
    assert!(dns_answer[2] & 0x80 != 0, "a response");

    // The subnet router's echo.
    let ping = echo_request(
        VM1.mac,
        ROUTER1,
        VM1.ip,
        Ipv4Addr::new(10, 0, 0, 1),
        64,
        7,
        1,
        b"x",
    );
    let pong = net.send(&VM1, &ping);
    assert!(answered(&pong), "no echo reply from the router: {pong:?}");
    assert_eq!(parse_icmp_echo(&pong[0].2).0, "reply");

    let c = net.engine(HOST1).counters();
    assert_eq!(c.drops(DropReason::SgDenied), 0);
    assert_eq!(c.drops(DropReason::NaclDenied), 0);
    // The controls: zigi-vm1's group lets nothing else out, to zigi-vm4 (same subnet: its ACL
    // does not apply) or to zigi-vm3 (another subnet).
    assert!(!net.reaches(
        &VM1,
        &VM4,
        &udp(VM1.mac, VM4.mac, VM1.ip, VM4.ip, 1, 2, b"x")
    ));
    assert!(!net.reaches(
        &VM1,
        &VM3,
        &udp(VM1.mac, ROUTER1, VM1.ip, VM3.ip, 1, 2, b"x")
    ));
    assert_eq!(net.drops_at(&VM1, DropReason::SgDenied), 2);
    // With the group gone, the ACL refuses what leaves the subnet.
    net.update(|r| r.enis.get_mut(VM1.eni).unwrap().security_group_ids.clear());
    assert!(!net.reaches(
        &VM1,
        &VM3,
        &udp(VM1.mac, ROUTER1, VM1.ip, VM3.ip, 1, 2, b"x")
    ));
    assert_eq!(net.drops_at(&VM1, DropReason::NaclDenied), 1);
    assert!(answered(&net.send(&VM1, &dhcp_discover(&VM1))));
    assert!(answered(&net.send(&VM1, &dns)));
}

/// The flow table holds at most `flow_table_limit` entries: past it flows are still forwarded
/// (decided packet by packet, uncached), and once entries are idle for a minute a full table
/// sweeps them and caches again.
#[test]
fn the_flow_table_is_bounded_and_keeps_forwarding_when_full() {
    let mut net = Net::with_config(seed_records(), |c| EngineConfig {
        flow_table_limit: 4,
        ..c
    });
    let flow = |port| udp(VM1.mac, VM2.mac, VM1.ip, VM2.ip, port, 9, b"x");
    for port in 1..=10 {
        assert!(net.reaches(&VM1, &VM2, &flow(port)), "flow {port}");
    }
    for host in [HOST1, HOST2] {
        let n = net.engine(host).flow_table().len();
        assert!((1..=4).contains(&n), "{host}: {n} entries");
    }
    // Flow 10 found no room: its next packet walks the layers again, and is delivered.
    let (hits, misses) = {
        let c = net.engine(HOST1).counters();
        (c.flow_hits(), c.flow_misses())
    };
    assert!(net.reaches(&VM1, &VM2, &flow(10)));
    let c = net.engine(HOST1).counters();
    assert_eq!((c.flow_hits(), c.flow_misses()), (hits, misses + 1));
    // A minute idle: the old entries go, a new flow is cached, its second packet is a hit.
    net.advance(Duration::from_secs(61));
    assert!(net.reaches(&VM1, &VM2, &flow(11)));
    let hits = net.engine(HOST1).counters().flow_hits();
    assert!(net.reaches(&VM1, &VM2, &flow(11)));
    assert_eq!(net.engine(HOST1).counters().flow_hits(), hits + 1);
    assert!(net.engine(HOST1).flow_table().len() <= 4);
}

fn acl(
    n: u16,
    egress: bool,
    proto: &str,
    action: &str,
    c: &str,
    ports: Option<(u16, u16)>,
) -> AclEntry {
    AclEntry::from_aws(n, egress, proto, action, c.parse().unwrap(), ports, None).unwrap()
}

#[test]
fn network_acls_first_match_at_the_subnet_boundary_stateless() {
    let mut r = seed_records();
    // subnet b (zigi-vm3): inbound deny SSH from subnet a before allowing all; outbound only
    // to ports 80 and up... of nothing but subnet a's ephemeral ports 40000-40099.
    r.acls.insert(
        "acl-b".into(),
        (
            "vpc-1".into(),
            vec![
                acl(100, false, "tcp", "deny", "10.0.0.0/24", Some((22, 22))),
                acl(200, false, "-1", "allow", "0.0.0.0/0", None),
                acl(
                    100,
                    true,
                    "tcp",
                    "allow",
                    "10.0.0.0/24",
                    Some((40000, 40099)),
                ),
            ],
            vec!["subnet-0000000000000000b".into()],
        ),
    );
    // subnet a (zigi-vm1, zigi-vm4): an ACL denying everything, which must not apply inside it.
    r.acls.insert(
        "acl-a".into(),
        (
            "vpc-1".into(),
            vec![
                acl(100, true, "-1", "allow", "10.0.1.0/24", None),
                acl(100, false, "-1", "allow", "10.0.1.0/24", None),
            ],
            vec!["subnet-0000000000000000a".into()],
        ),
    );
    let mut net = Net::new(r);
    // Inside subnet a: no ACL.
    assert!(net.reaches(&VM1, &VM4, &tcp(&VM1, VM4.mac, VM4.ip, 1, 2, SYN)));
    // Into subnet b: deny 100 before allow 200.
    assert!(!net.reaches(&VM1, &VM3, &tcp(&VM1, ROUTER1, VM3.ip, 40000, 22, SYN)));
    assert_eq!(net.drops_at(&VM3, DropReason::NaclDenied), 1);
    assert!(net.reaches(&VM1, &VM3, &tcp(&VM1, ROUTER1, VM3.ip, 40000, 80, SYN)));
    // The reply leaves subnet b only to the ephemeral range its outbound entry allows.
    assert!(net.reaches(&VM3, &VM1, &tcp(&VM3, ROUTER1, VM1.ip, 80, 40000, SYNACK)));
    assert!(!net.reaches(&VM3, &VM1, &tcp(&VM3, ROUTER1, VM1.ip, 80, 50000, SYNACK)));
    assert_eq!(net.drops_at(&VM3, DropReason::NaclDenied), 2);
    // The trace names the ACL and rule.
    let f = tcp(&VM1, ROUTER1, VM3.ip, 40000, 22, SYN);
    let trace = net
        .engine(HOST1)
        .trace_port_frame(VM1.port, &f, &mut Output::default());
    let tx = net
        .engine(HOST1)
        .trace_port_frame(VM1.port, &f, &mut Output::default());
    assert_eq!(trace, tx, "a trace changes nothing");
    let out = net.send(&VM1, &f);
    assert!(out.is_empty());
    let t2 = net.engine(HOST2).trace_underlay_datagram(
        HOST1,
        &vxlan(VNI1.0, &route_rewritten(&f, VM3.mac)),
        &mut Output::default(),
    );
    assert!(
        t2.why
            .iter()
            .any(|(_, w)| w.to_string() == "subnet-0000000000000000b inbound: acl-b rule 100 deny"),
        "{:?}",
        t2.why
    );
}

/// The frame as host-1's router sends it on: router MAC as source, the target's as
/// destination, TTL - 1.
fn route_rewritten(frame: &[u8], target: Mac) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[0..6].copy_from_slice(&target);
    f[6..12].copy_from_slice(&ROUTER1);
    f[14 + 8] -= 1;
    let mut p = softvpc_wire::Ipv4Packet::new_unchecked(&mut f[14..]);
    p.fill_checksum();
    f
}

fn route(dst: &str, target: Target) -> Route {
    Route {
        destination: dst.parse().unwrap(),
        target,
        state: RouteState::Active,
    }
}

#[test]
fn routes_blackhole_gateways_longest_prefix_and_middleboxes() {
    let mut r = seed_records();
    r.route_tables.insert(
        "rtb-main".into(),
        (
            "vpc-1".into(),
            true,
            vec![
                route("0.0.0.0/0", Target::InternetGateway("igw-1".into())),
                route("192.168.0.0/16", Target::NatGateway("nat-1".into())),
                Route {
                    destination: "172.16.0.0/12".parse().unwrap(),
                    target: Target::NetworkInterface("eni-gone".into()),
                    state: RouteState::Blackhole,
                },
                // zigi-vm3 only, through zigi-vm4 (more specific than the local route).
                route("10.0.1.20/32", Target::NetworkInterface(VM4.eni.into())),
            ],
            vec![],
        ),
    );
    let mut net = Net::new(r);
    let to = |dst: [u8; 4]| udp(VM1.mac, ROUTER1, VM1.ip, Ipv4Addr::from(dst), 1, 2, b"x");
    // To the internet gateway without a public address: nothing passes.
    assert!(net.send(&VM1, &to([8, 8, 8, 8])).is_empty());
    assert_eq!(net.drops_at(&VM1, DropReason::NoPublicIp), 1);
    assert!(net.send(&VM1, &to([192, 168, 1, 1])).is_empty());
    assert_eq!(net.drops_at(&VM1, DropReason::GatewayNotOnWire), 1);
    assert!(net.send(&VM1, &to([172, 16, 0, 1])).is_empty());
    assert_eq!(net.drops_at(&VM1, DropReason::Blackhole), 1);
    // Longest prefix: zigi-vm3's address goes to zigi-vm4, whose check is on: refused there.
    assert!(net.send(&VM1, &to([10, 0, 1, 20])).is_empty());
    assert_eq!(net.drops_at(&VM1, DropReason::SrcDstCheck), 0);
    assert_eq!(
        net.engine(HOST1).counters().drops(DropReason::SrcDstCheck),
        1
    );
    // The rest of subnet b is local.
    let ok = udp(VM1.mac, ROUTER1, VM1.ip, VM3.ip, 1, 2, b"x");
    net.update(|r| {
        r.route_tables.get_mut("rtb-main").unwrap().2.pop();
    });
    assert!(net.reaches(&VM1, &VM3, &ok));
    // With the middlebox route back and zigi-vm4's check off, zigi-vm4 receives the frame for
    // zigi-vm3 and may forward it (a source not its own): zigi-vm3 gets it, from host-1.
    net.update(|r| {
        r.route_tables.get_mut("rtb-main").unwrap().2.push(route(
            "10.0.1.20/32",
            Target::NetworkInterface(VM4.eni.into()),
        ));
        r.enis.get_mut(VM4.eni).unwrap().source_dest_check = false;
    });
    let got = net.send(&VM1, &to([10, 0, 1, 20]));
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0, got[0].1), (HOST1, VM4.port));
    assert_eq!(
        net.drops_at(&VM4, DropReason::SrcDstCheck),
        1,
        "only the first time"
    );
    // zigi-vm4 may send with zigi-vm1's source (its check is off), but its subnet's table sends
    // 10.0.1.20 back to itself: a loop, refused.
    let forwarded = udp(VM4.mac, ROUTER1, VM1.ip, VM3.ip, 1, 2, b"x");
    assert!(net.send(&VM4, &forwarded).is_empty());
    assert_eq!(net.engine(HOST1).counters().drops(DropReason::NoRoute), 1);
    assert_eq!(
        net.engine(HOST1)
            .counters()
            .drops(DropReason::SpoofedSource),
        0
    );
    // On a host where the middlebox is remote, a forwarded frame from its host is accepted:
    // zigi-vm4's host forwards for VPC 1 (forged-source check), as zigi-vm3 on host-2 sees.
    let inner = udp(
        ROUTER1,
        VM3.mac,
        Ipv4Addr::new(203, 0, 113, 9),
        VM3.ip,
        1,
        2,
        b"x",
    );
    let mut out = Output::default();
    net.engine(HOST2).handle_underlay_datagrams(
        t0(),
        [(HOST1, &vxlan(VNI1.0, &inner)[..])],
        &mut out,
    );
    assert_eq!(Sent::from(&out).to_ports.len(), 1);
}

/// VPC 2 readdressed to 10.1.0.0/16 (peering needs CIDRs that do not overlap), with a third
/// VPC 3 (10.2.0.0/16, no ENI) peered with VPC 2 only.
fn peered_records(active: bool) -> SeedRecords {
    let mut r = seed_records();
    r.vpcs.get_mut("vpc-2").unwrap().1 = "10.1.0.0/16".parse().unwrap();
    r.subnets.get_mut("subnet-0000000000000000c").unwrap().1 = "10.1.0.0/24".parse().unwrap();
    for vm in [&OTHER1, &OTHER2] {
        let e = r.enis.get_mut(vm.eni).unwrap();
        e.ip = peer_ip(vm);
    }
    r.peerings
        .insert("pcx-12".into(), ("vpc-1".into(), "vpc-2".into(), active));
    r.route_tables.insert(
        "rtb-1".into(),
        (
            "vpc-1".into(),
            true,
            vec![route(
                "10.1.0.0/16",
                Target::VpcPeeringConnection("pcx-12".into()),
            )],
            vec![],
        ),
    );
    r.route_tables.insert(
        "rtb-2".into(),
        (
            "vpc-2".into(),
            true,
            vec![route(
                "10.0.0.0/16",
                Target::VpcPeeringConnection("pcx-12".into()),
            )],
            vec![],
        ),
    );
    r
}

fn peer_ip(vm: &Vm) -> Ipv4Addr {
    let [_, _, c, d] = vm.ip.octets();
    Ipv4Addr::new(10, 1, c, d)
}

#[test]
fn peering_carries_traffic_only_while_active_and_routed_both_ways() {
    let mut net = Net::new(peered_records(true));
    // zigi-vm1 (host-1, VPC 1) -> other-vm2 (host-2, VPC 2) and back.
    let there = udp(VM1.mac, ROUTER1, VM1.ip, peer_ip(&OTHER2), 1, 2, b"x");
    let got = net.send(&VM1, &there);
    assert_eq!(got.len(), 1, "delivered over pcx-12");
    assert_eq!((got[0].0, got[0].1), (HOST2, OTHER2.port));
    // It arrives from VPC 2's router MAC.
    assert_eq!(parse_eth(&got[0].2).src_addr.0, ROUTER2);
    let back = udp(OTHER2.mac, ROUTER2, peer_ip(&OTHER2), VM1.ip, 2, 1, b"y");
    assert!(net.reaches(&OTHER2, &VM1, &back));
    // The trace names the peering connection.
    let trace = net
        .engine(HOST1)
        .trace_port_frame(VM1.port, &there, &mut Output::default());
    assert!(
        trace
            .why
            .iter()
            .any(|(_, w)| w.to_string().ends_with("via pcx-12")),
        "{:?}",
        trace.why
    );

    // Without VPC 2's route back, its side refuses what comes in (the source is not where its
    // routes say), and cannot answer.
    net.update(|r| r.route_tables.get_mut("rtb-2").unwrap().2.clear());
    assert!(net.send(&VM1, &there).is_empty());
    assert_eq!(
        net.engine(HOST2).counters().drops(DropReason::ForgedSource),
        1
    );
    assert!(net.send(&OTHER2, &back).is_empty());

    // Inactive, or deleted: cut at once (blackhole).
    let mut net = Net::new(peered_records(false));
    assert!(net.send(&VM1, &there).is_empty());
    assert_eq!(net.drops_at(&VM1, DropReason::Blackhole), 1);
    let mut net = Net::new(peered_records(true));
    assert!(!net.send(&VM1, &there).is_empty());
    net.update(|r| {
        r.peerings.clear();
    });
    assert!(net.send(&VM1, &there).is_empty());
    assert_eq!(net.drops_at(&VM1, DropReason::Blackhole), 1);
}

#[test]
fn peering_is_not_transitive() {
    // VPC 3 is peered with VPC 2 only; VPC 1 routes 10.2.0.0/16 over its peering with VPC 2:
    // nothing there holds the address, so it goes nowhere.
    let mut r = peered_records(true);
    r.vpcs
        .insert("vpc-3".into(), (Vni(0x103), "10.2.0.0/16".parse().unwrap()));
    r.peerings
        .insert("pcx-23".into(), ("vpc-2".into(), "vpc-3".into(), true));
    r.enis.get_mut(VM3.eni).unwrap().ip = Ipv4Addr::new(10, 2, 1, 20);
    r.enis.get_mut(VM3.eni).unwrap().vpc_id = "vpc-3".into();
    r.enis.get_mut(VM3.eni).unwrap().vni = Vni(0x103);
    r.route_tables.get_mut("rtb-1").unwrap().2.push(route(
        "10.2.0.0/16",
        Target::VpcPeeringConnection("pcx-12".into()),
    ));
    let mut net = Net::new(r);
    let far = udp(
        VM1.mac,
        ROUTER1,
        VM1.ip,
        Ipv4Addr::new(10, 2, 1, 20),
        1,
        2,
        b"x",
    );
    assert!(net.send(&VM1, &far).is_empty());
    assert_eq!(net.drops_at(&VM1, DropReason::NoRoute), 1);
}

#[test]
fn forged_sources_from_a_registered_host_are_dropped_and_counted() {
    let mut net = Net::new(seed_records());
    // host-1 sends, in VPC 1's VNI, a frame from zigi-vm2's address (which lives on host-2)
    // to zigi-vm3 on host-2.
    let forged = udp(ROUTER1, VM3.mac, VM2.ip, VM3.ip, 1, 2, b"x");
    let mut out = Output::default();
    let e = net.engine(HOST2);
    e.handle_underlay_datagrams(t0(), [(HOST1, &vxlan(VNI1.0, &forged)[..])], &mut out);
    assert!(out.is_empty());
    assert_eq!(e.counters().drops(DropReason::ForgedSource), 1);
    assert_eq!(
        e.counters()
            .eni(VM3.eni)
            .unwrap()
            .drops(DropReason::ForgedSource),
        1
    );
    // From its real host it is delivered (zigi-vm2 -> zigi-vm1 on host-1, from host-2).
    let real = udp(VM2.mac, VM1.mac, VM2.ip, VM1.ip, 1, 2, b"x");
    let mut out1 = Output::default();
    net.engine(HOST1).handle_underlay_datagrams(
        t0(),
        [(HOST2, &vxlan(VNI1.0, &real)[..])],
        &mut out1,
    );
    assert_eq!(Sent::from(&out1).to_ports.len(), 1);
    // An address nobody holds, and one of a local ENI of host-2: forged too.
    let e = net.engine(HOST2);
    let nobody = udp(
        ROUTER1,
        VM3.mac,
        Ipv4Addr::new(10, 0, 0, 99),
        VM3.ip,
        1,
        2,
        b"x",
    );
    let local = udp(ROUTER1, VM2.mac, VM3.ip, VM2.ip, 1, 2, b"x");
    let mut out = Output::default();
    e.handle_underlay_datagrams(
        t0(),
        [
            (HOST1, &vxlan(VNI1.0, &nobody)[..]),
            (HOST1, &vxlan(VNI1.0, &local)[..]),
        ],
        &mut out,
    );
    assert!(out.is_empty());
    assert_eq!(e.counters().drops(DropReason::ForgedSource), 3);
}

// `softvpc trace`'s promise, in the simulation: for random policies (groups on zigi-vm2 and
// zigi-vm3, an ACL on subnet b) and random packets between the VPC's instances, the trace
// (the sender's host, then the receiving host's trace of the datagram it would send) ends where
// the real packet ends, packet after packet, while the real ones change connection tracking.
mod trace_agrees {
    use super::*;
    use proptest::prelude::*;
    use softvpc_engine::TraceVerdict;

    const VMS: [Vm; 4] = [VM1, VM2, VM3, VM4];

    fn rule(i: usize, (ingress, proto, port): (bool, u8, u16), cidr_pick: u8) -> SgRule {
        let dir = if ingress { Dir::Ingress } else { Dir::Egress };
        let proto = ["tcp", "udp", "icmp", "-1"][usize::from(proto % 4)];
        let ports = match proto {
            "tcp" | "udp" => Some((i32::from(port), i32::from(port) + 5)),
            _ => None,
        };
        let peer = ["10.0.0.0/16", "10.0.0.0/24", "10.0.1.0/24", "10.0.0.148/32"]
            [usize::from(cidr_pick % 4)];
        sg_rule(
            &format!("sgr-{i}"),
            "sg-rand",
            dir,
            proto,
            ports,
            cidr(peer),
        )
    }

    fn acl_entry((n, egress, allow, proto, port): (u16, bool, bool, u8, u16)) -> AclEntry {
        let proto = ["tcp", "udp", "1", "-1"][usize::from(proto % 4)];
        let ports = matches!(proto, "tcp" | "udp").then_some((port, port.saturating_add(10)));
        acl(
            n,
            egress,
            proto,
            if allow { "allow" } else { "deny" },
            "10.0.0.0/24",
            ports,
        )
    }

    /// Where a trace says the packet ends: (host, port) of the receiving ENI, or nowhere.
    fn traced(net: &Net, from: &Vm, frame: &[u8]) -> Option<(Ipv4Addr, PortId)> {
        let e = &net.hosts.iter().find(|(h, _)| *h == from.host).unwrap().1;
        let mut out = Output::default();
        match e.trace_port_frame(from.port, frame, &mut out).verdict {
            TraceVerdict::ToPort(p) => Some((from.host, p)),
            TraceVerdict::ToUnderlay(host) => {
                let dgram = out.transmits().next().unwrap().payload.to_vec();
                let e2 = &net.hosts.iter().find(|(h, _)| *h == host).unwrap().1;
                match e2
                    .trace_underlay_datagram(from.host, &dgram, &mut Output::default())
                    .verdict
                {
                    TraceVerdict::ToPort(p) => Some((host, p)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn trace_verdicts_equal_the_real_packets_fate(
            rules in prop::collection::vec(((any::<bool>(), 0u8..4, 20u16..30), 0u8..4), 0..4),
            on_vm3 in any::<bool>(),
            acl_entries in prop::collection::vec(
                (1u16..300, any::<bool>(), any::<bool>(), 0u8..4, 20u16..40), 0..4),
            packets in prop::collection::vec(
                (0usize..4, 0usize..4, 0u8..3, 20u16..30, 20u16..30), 1..12),
        ) {
            let mut r = seed_records();
            let sg_rules: Vec<SgRule> =
                rules.iter().enumerate().map(|(i, (k, c))| rule(i, *k, *c)).collect();
            r.groups.insert("sg-rand".into(), ("vpc-1".into(), sg_rules));
            r.enis.get_mut(VM2.eni).unwrap().security_group_ids = vec!["sg-rand".into()];
            if on_vm3 {
                r.enis.get_mut(VM3.eni).unwrap().security_group_ids = vec!["sg-rand".into()];
            }
            if !acl_entries.is_empty() {
                let entries = acl_entries.iter().copied().map(acl_entry).collect();
                r.acls.insert(
                    "acl-b".into(),
                    ("vpc-1".into(), entries, vec!["subnet-0000000000000000b".into()]),
                );
            }
            let mut net = Net::new(r);
            for (a, b, kind, sport, dport) in packets {
                let (from, to) = (VMS[a], VMS[b]);
                if a == b {
                    continue;
                }
                let dst_mac = if from.subnet == to.subnet { to.mac } else { ROUTER1 };
                let frame = match kind {
                    0 => tcp(&from, dst_mac, to.ip, sport, dport, SYN),
                    1 => udp(from.mac, dst_mac, from.ip, to.ip, sport, dport, b"x"),
                    _ => echo_request(from.mac, dst_mac, from.ip, to.ip, 64, sport, 1, b"x"),
                };
                let want = traced(&net, &from, &frame);
                let got: Vec<(Ipv4Addr, PortId)> =
                    net.send(&from, &frame).into_iter().map(|(h, p, _)| (h, p)).collect();
                prop_assert_eq!(got.first().copied(), want, "{} -> {} kind {}", from.name, to.name, kind);
                prop_assert!(got.len() <= 1);
            }
        }
    }
}

/// An ENI's `UdpTimeout` (ConnectionTrackingSpecification through the mapping) decides when an
/// idle UDP flow expires: zigi-vm2 may only send (no inbound rule), so an answer passes only
/// while zigi-vm2's request is still tracked. At the default 30 s an answer after 35 s is
/// refused; with the ENI's timeout changed to 60 s (on the live table, the connection tracking
/// of the ENI kept) it passes after 35 s and is refused after 65 s.
#[test]
fn an_enis_udp_timeout_decides_when_its_flows_expire() {
    let mut r = seed_records();
    r.groups.insert(
        "sg-out".into(),
        (
            "vpc-1".into(),
            vec![sg_rule(
                "sgr-udp",
                "sg-out",
                Dir::Egress,
                "udp",
                None,
                cidr("10.0.0.0/16"),
            )],
        ),
    );
    r.enis.get_mut(VM2.eni).unwrap().security_group_ids = vec!["sg-out".into()];
    let mut net = Net::new(r);
    let request = |port| udp(VM2.mac, VM1.mac, VM2.ip, VM1.ip, port, 9, b"q");
    let answer = |port| udp(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 9, port, b"a");

    // Default UdpTimeout, 30 s.
    assert!(net.reaches(&VM2, &VM1, &request(1000)));
    net.advance(Duration::from_secs(35));
    assert!(
        !net.reaches(&VM1, &VM2, &answer(1000)),
        "expired after 30 s"
    );
    assert_eq!(net.drops_at(&VM2, DropReason::SgDenied), 1);

    net.update(|r| {
        r.enis.get_mut(VM2.eni).unwrap().conntrack.udp_timeout = Some(60);
    });
    assert!(net.reaches(&VM2, &VM1, &request(1001)));
    assert!(net.reaches(&VM2, &VM1, &request(1002)));
    net.advance(Duration::from_secs(35));
    assert!(
        net.reaches(&VM1, &VM2, &answer(1001)),
        "tracked for 60 s now"
    );
    net.advance(Duration::from_secs(30));
    assert!(
        !net.reaches(&VM1, &VM2, &answer(1002)),
        "idle 65 s: expired"
    );
    assert_eq!(net.drops_at(&VM2, DropReason::SgDenied), 2);
}
