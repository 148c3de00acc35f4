use super::*;
use crate::packet::{L4, TCP_SYN};
use proptest::prelude::*;

const VM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);

fn rule(
    id: &str,
    dir: Direction,
    proto: &str,
    from: Option<i32>,
    to: Option<i32>,
    peer: &str,
) -> SgRule {
    let peer = if peer.starts_with("sg-") {
        Peer::Group(peer.to_string())
    } else {
        Peer::Cidr(peer.parse().unwrap())
    };
    SgRule::from_aws(id, "sg-1", dir, proto, from, to, peer).unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn no_members() -> GroupMembers {
    GroupMembers::default()
}

fn allowed_by(
    g: &CompiledGroups,
    pkt: &Packet,
    dir: Direction,
    m: &impl Members,
) -> Option<(String, bool)> {
    match g.evaluate(pkt, dir, m) {
        SgVerdict::Allow { rule, tracked } => Some((g.rule(rule).unwrap().id.clone(), tracked)),
        SgVerdict::Deny => None,
    }
}

use Direction::{Egress, Ingress};

#[test]
fn ports_cidrs_and_protocols() {
    let g = CompiledGroups::compile(
        [
            rule("sgr-ssh", Ingress, "tcp", Some(22), Some(22), "10.0.1.0/24"),
            rule("sgr-web", Ingress, "6", Some(8000), Some(8080), "0.0.0.0/0"),
            rule("sgr-dns", Ingress, "udp", Some(53), Some(53), "10.0.0.0/16"),
            rule("sgr-gre", Ingress, "47", None, None, "192.168.0.1/32"),
            rule("sgr-out", Egress, "tcp", Some(443), Some(443), "0.0.0.0/0"),
        ],
        Generation(1),
    );
    let m = no_members();
    let syn = |src: &str, port| Packet::tcp(ip(src), 40000, VM, port, TCP_SYN);
    assert_eq!(
        allowed_by(&g, &syn("10.0.1.7", 22), Ingress, &m).unwrap().0,
        "sgr-ssh"
    );
    assert_eq!(allowed_by(&g, &syn("10.0.2.7", 22), Ingress, &m), None);
    assert_eq!(allowed_by(&g, &syn("10.0.1.7", 23), Ingress, &m), None);
    assert_eq!(
        allowed_by(&g, &syn("1.2.3.4", 8000), Ingress, &m)
            .unwrap()
            .0,
        "sgr-web"
    );
    assert_eq!(
        allowed_by(&g, &syn("1.2.3.4", 8080), Ingress, &m)
            .unwrap()
            .0,
        "sgr-web"
    );
    assert_eq!(allowed_by(&g, &syn("1.2.3.4", 8081), Ingress, &m), None);
    // A TCP rule does not allow UDP; ingress rules do not allow egress.
    assert_eq!(
        allowed_by(&g, &Packet::udp(ip("1.2.3.4"), 1, VM, 8000), Ingress, &m),
        None
    );
    assert_eq!(
        allowed_by(&g, &Packet::udp(ip("10.0.9.9"), 1, VM, 53), Ingress, &m)
            .unwrap()
            .0,
        "sgr-dns"
    );
    assert_eq!(
        allowed_by(
            &g,
            &Packet::tcp(VM, 1, ip("10.0.1.7"), 22, TCP_SYN),
            Egress,
            &m
        ),
        None
    );
    assert_eq!(
        allowed_by(
            &g,
            &Packet::tcp(VM, 1, ip("9.9.9.9"), 443, TCP_SYN),
            Egress,
            &m
        )
        .unwrap()
        .0,
        "sgr-out"
    );
    // Another protocol number: addresses only.
    assert_eq!(
        allowed_by(&g, &Packet::other(ip("192.168.0.1"), VM, 47), Ingress, &m)
            .unwrap()
            .0,
        "sgr-gre"
    );
    assert_eq!(
        allowed_by(&g, &Packet::other(ip("192.168.0.2"), VM, 47), Ingress, &m),
        None
    );
    assert_eq!(
        allowed_by(&g, &Packet::other(ip("192.168.0.1"), VM, 50), Ingress, &m),
        None
    );
    // No rule: nothing passes (allow-only).
    let empty = CompiledGroups::compile([], Generation(0));
    assert_eq!(
        empty.evaluate(&syn("10.0.1.7", 22), Ingress, &m),
        SgVerdict::Deny
    );
}

#[test]
fn icmp_type_and_code() {
    let g = CompiledGroups::compile(
        [
            rule("sgr-echo", Ingress, "icmp", Some(8), Some(-1), "0.0.0.0/0"),
            rule("sgr-frag", Ingress, "icmp", Some(3), Some(4), "10.0.0.0/8"),
            rule("sgr-any", Egress, "icmp", Some(-1), Some(-1), "10.0.0.0/8"),
        ],
        Generation(1),
    );
    let m = no_members();
    let icmp = |ty, code| Packet::icmp(ip("10.1.1.1"), VM, ty, code, 9);
    assert_eq!(
        allowed_by(&g, &icmp(8, 0), Ingress, &m).unwrap().0,
        "sgr-echo"
    );
    assert_eq!(
        allowed_by(&g, &icmp(8, 5), Ingress, &m).unwrap().0,
        "sgr-echo"
    );
    assert_eq!(
        allowed_by(&g, &icmp(3, 4), Ingress, &m).unwrap().0,
        "sgr-frag"
    );
    assert_eq!(allowed_by(&g, &icmp(3, 3), Ingress, &m), None);
    assert_eq!(allowed_by(&g, &icmp(0, 0), Ingress, &m), None);
    for ty in [0, 3, 8, 11, 255] {
        let out = Packet::icmp(VM, ip("10.9.9.9"), ty, 1, 0);
        assert_eq!(allowed_by(&g, &out, Egress, &m).unwrap().0, "sgr-any");
    }
    // ICMP is always tracked, even with all traffic open both ways.
    let open = CompiledGroups::compile(
        [
            rule("a", Ingress, "-1", None, None, "0.0.0.0/0"),
            rule("b", Egress, "-1", None, None, "0.0.0.0/0"),
        ],
        Generation(1),
    );
    assert_eq!(
        allowed_by(&open, &icmp(8, 0), Ingress, &m),
        Some(("a".into(), true))
    );
}

#[test]
fn referenced_groups_match_their_members() {
    let g = CompiledGroups::compile(
        [rule(
            "sgr-ref",
            Ingress,
            "tcp",
            Some(5432),
            Some(5432),
            "sg-app",
        )],
        Generation(1),
    );
    let mut m = GroupMembers::default();
    m.0.entry("sg-app".into())
        .or_default()
        .insert(ip("10.0.3.3"));
    m.0.entry("sg-other".into())
        .or_default()
        .insert(ip("10.0.4.4"));
    let from = |src: &str| Packet::tcp(ip(src), 1000, VM, 5432, TCP_SYN);
    assert_eq!(
        allowed_by(&g, &from("10.0.3.3"), Ingress, &m).unwrap().0,
        "sgr-ref"
    );
    assert_eq!(allowed_by(&g, &from("10.0.4.4"), Ingress, &m), None);
    assert_eq!(allowed_by(&g, &from("10.0.3.4"), Ingress, &m), None);
}

#[test]
fn untracked_only_with_world_open_both_ways() {
    let m = no_members();
    // AWS's example: in TCP 80 from 0.0.0.0/0, out all traffic to 0.0.0.0/0: untracked.
    let g = CompiledGroups::compile(
        [
            rule("sgr-80", Ingress, "tcp", Some(80), Some(80), "0.0.0.0/0"),
            rule(
                "sgr-22",
                Ingress,
                "tcp",
                Some(22),
                Some(22),
                "203.0.113.0/24",
            ),
            rule("sgr-out", Egress, "-1", None, None, "0.0.0.0/0"),
        ],
        Generation(1),
    );
    let web = Packet::tcp(ip("198.51.100.1"), 5000, VM, 80, TCP_SYN);
    assert_eq!(
        allowed_by(&g, &web, Ingress, &m),
        Some(("sgr-80".into(), false))
    );
    // Its reply is untracked too (allowed by the open egress rule).
    let reply = Packet::tcp(VM, 80, ip("198.51.100.1"), 5000, 0x12);
    assert_eq!(
        allowed_by(&g, &reply, Egress, &m),
        Some(("sgr-out".into(), false))
    );
    // SSH from a /24: tracked.
    let ssh = Packet::tcp(ip("203.0.113.9"), 5000, VM, 22, TCP_SYN);
    assert_eq!(
        allowed_by(&g, &ssh, Ingress, &m),
        Some(("sgr-22".into(), true))
    );
    // Outbound to the world: tracked (ingress is not open on every port).
    let out = Packet::tcp(VM, 5000, ip("198.51.100.1"), 443, TCP_SYN);
    assert_eq!(
        allowed_by(&g, &out, Egress, &m),
        Some(("sgr-out".into(), true))
    );
    // Outbound narrowed: everything is tracked.
    let narrow = CompiledGroups::compile(
        [
            rule("sgr-80", Ingress, "tcp", Some(80), Some(80), "0.0.0.0/0"),
            rule("sgr-out", Egress, "tcp", Some(0), Some(65534), "0.0.0.0/0"),
        ],
        Generation(1),
    );
    assert_eq!(
        allowed_by(&narrow, &web, Ingress, &m),
        Some(("sgr-80".into(), true))
    );
    // UDP open both ways by protocol rules: untracked; TCP with the same rules is not open.
    let udp = CompiledGroups::compile(
        [
            rule("i", Ingress, "udp", Some(0), Some(65535), "0.0.0.0/0"),
            rule("e", Egress, "udp", Some(0), Some(65535), "0.0.0.0/0"),
        ],
        Generation(1),
    );
    assert_eq!(
        allowed_by(&udp, &Packet::udp(ip("1.1.1.1"), 1, VM, 2), Ingress, &m),
        Some(("i".into(), false))
    );
    assert_eq!(
        allowed_by(
            &udp,
            &Packet::tcp(ip("1.1.1.1"), 1, VM, 2, TCP_SYN),
            Ingress,
            &m
        ),
        None
    );
}

#[test]
fn aws_fields_are_checked() {
    let g = Peer::Cidr("0.0.0.0/0".parse().unwrap());
    assert!(SgRule::from_aws("r", "g", Ingress, "tcp", Some(10), Some(5), g.clone()).is_err());
    assert!(SgRule::from_aws("r", "g", Ingress, "tcp", Some(0), Some(65536), g.clone()).is_err());
    assert!(SgRule::from_aws("r", "g", Ingress, "icmp", Some(256), Some(0), g.clone()).is_err());
    assert!(SgRule::from_aws("r", "g", Ingress, "gre", None, None, g.clone()).is_err());
    assert!(SgRule::from_aws("r", "g", Ingress, "256", None, None, g.clone()).is_err());
    let r = SgRule::from_aws("r", "g", Ingress, "ICMP", Some(-1), Some(7), g).unwrap();
    assert_eq!(
        r.ports,
        Ports::Icmp {
            ty: None,
            code: None
        }
    );
}

fn arb_rule(i: usize) -> impl Strategy<Value = SgRule> {
    let proto = prop_oneof![
        Just(Protocol::All),
        Just(Protocol::Number(TCP)),
        Just(Protocol::Number(UDP)),
        Just(Protocol::Number(ICMP)),
        Just(Protocol::Number(47))
    ];
    let ports = prop_oneof![
        Just(Ports::Any),
        (0u16..40, 0u16..40).prop_map(|(a, b)| Ports::Range {
            from: a.min(b),
            to: a.max(b)
        }),
        (proptest::option::of(0u8..4), proptest::option::of(0u8..3)).prop_map(|(ty, code)| {
            Ports::Icmp {
                ty,
                code: ty.and(code),
            }
        }),
    ];
    let peer = prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Peer::Cidr(
            Ipv4Net::new(Ipv4Addr::from(a & 0x0a0a_ffff), l)
                .unwrap()
                .trunc()
        )),
        Just(Peer::Cidr(Ipv4Net::default())),
        (0u8..3).prop_map(|g| Peer::Group(format!("sg-{g}"))),
    ];
    (proto, ports, peer, any::<bool>()).prop_map(move |(protocol, ports, peer, ingress)| {
        let ports = match protocol {
            Protocol::Number(TCP | UDP) => match ports {
                Ports::Icmp { .. } => Ports::Any,
                p => p,
            },
            Protocol::Number(ICMP) => match ports {
                Ports::Range { .. } => Ports::Any,
                p => p,
            },
            _ => Ports::Any,
        };
        SgRule {
            id: format!("sgr-{i}"),
            group_id: "sg-x".into(),
            direction: if ingress { Ingress } else { Egress },
            protocol,
            ports,
            peer,
        }
    })
}

fn arb_packet() -> impl Strategy<Value = (Packet, Direction)> {
    let addr = any::<u32>().prop_map(|a| Ipv4Addr::from(a & 0x0a0a_ffff));
    (
        addr,
        prop_oneof![Just(TCP), Just(UDP), Just(ICMP), Just(47), Just(50)],
        0u16..42,
        0u16..42,
        0u8..5,
        0u8..4,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(a, proto, sp, dp, ty, code, ingress, cut)| {
            let dir = if ingress { Ingress } else { Egress };
            let (src, dst) = if ingress { (a, VM) } else { (VM, a) };
            let mut p = match proto {
                TCP => Packet::tcp(src, sp, dst, dp, TCP_SYN),
                UDP => Packet::udp(src, sp, dst, dp),
                ICMP => Packet::icmp(src, dst, ty, code, sp),
                n => Packet::other(src, dst, n),
            };
            if cut {
                p.l4 = L4::None;
            }
            (p, dir)
        })
}

fn arb_members() -> impl Strategy<Value = GroupMembers> {
    proptest::collection::vec((0u8..3, any::<u32>()), 0..6).prop_map(|v| {
        let mut m = GroupMembers::default();
        for (g, a) in v {
            m.0.entry(format!("sg-{g}"))
                .or_default()
                .insert(Ipv4Addr::from(a & 0x0a0a_ffff));
        }
        m
    })
}

proptest! {
    /// The compiled structure allows exactly what some rule allows (the reference: every rule
    /// checked one by one), and the rule it names does allow the packet.
    #[test]
    fn compiled_agrees_with_rule_by_rule(
        rules in (0usize..25).prop_flat_map(|n| (0..n).map(arb_rule).collect::<Vec<_>>()),
        members in arb_members(),
        pkts in proptest::collection::vec(arb_packet(), 1..30),
    ) {
        let g = CompiledGroups::compile(rules.clone(), Generation(0));
        for (pkt, dir) in pkts {
            let reference = rules.iter().any(|r| r.matches(&pkt, dir, &members));
            match g.evaluate(&pkt, dir, &members) {
                SgVerdict::Allow { rule, tracked } => {
                    prop_assert!(reference, "allowed without a matching rule: {:?}", pkt);
                    let r = g.rule(rule).unwrap();
                    if tracked {
                        prop_assert!(r.matches(&pkt, dir, &members), "{:?} does not match {:?}", r, pkt);
                    } else {
                        prop_assert!(pkt.proto == TCP || pkt.proto == UDP);
                        prop_assert_eq!(&r.peer, &Peer::Cidr(Ipv4Net::default()));
                    }
                }
                SgVerdict::Deny => prop_assert!(!reference, "denied although a rule matches: {:?}", pkt),
            }
        }
    }
}
