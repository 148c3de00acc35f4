//! `softvpc trace`'s promise, as a property: for random policies (security groups, network
//! ACLs, route tables, source/destination checks) and random packets between the seed's
//! instances, on both hosts in virtual time, the trace of every packet, taken just before the
//! engine handles it for real, ends exactly as the real packet does: delivered to the same
//! port, encapsulated to the same host, or dropped for the same reason. The sequence runs
//! through the flow table and connection tracking (later packets of a flow hit cached entries;
//! replies find their connections), and policy changes happen between packets (generations).

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use softvpc_engine::policy::Direction as Dir;
use softvpc_engine::{Engine, EngineConfig, Output, TraceVerdict};
use softvpc_wire::IpProtocol;

const LOCALS: [Vm; 6] = ALL_VMS;

#[derive(Debug, Clone)]
enum Op {
    /// Instance `from` sends a packet to the address of instance `to` (or another address).
    Send {
        from: usize,
        to: usize,
        other_dst: Option<u8>,
        via_router: bool,
        proto: u8,
        sport: u16,
        dport: u16,
        flags: u8,
    },
    /// The last packet again (a flow's later packets).
    Again,
    /// A new policy (a table swap).
    Policy(Policy),
    /// Time passes.
    Wait(u16),
}

/// A security-group rule: (egress, protocol, port from, port to, CIDR prefix length).
type RuleSpec = (bool, u8, u16, u16, u8);
/// An ACL entry: (rule number, egress, protocol, allow, port lo, port hi).
type EntrySpec = (u16, bool, u8, bool, u16, u16);

#[derive(Debug, Clone)]
struct Policy {
    /// (vm index, rules: (egress, proto, from, to, cidr prefix len))
    groups: Vec<(usize, Vec<RuleSpec>)>,
    /// Subnet a/b ACL: (rule number, egress, proto, allow, port lo, port hi)
    acls: Vec<(bool, Vec<EntrySpec>)>,
    /// Main table routes of VPC 1: (prefix of 10.0.1.20, target kind)
    routes: Vec<(u8, u8)>,
    /// zigi-vm4's check.
    vm4_check: bool,
}

fn proto_name(p: u8) -> &'static str {
    match p % 4 {
        0 => "tcp",
        1 => "udp",
        2 => "icmp",
        _ => "-1",
    }
}

fn apply(p: &Policy) -> SeedRecords {
    let mut r = seed_records();
    for (vm, rules) in &p.groups {
        let vm = &LOCALS[*vm % LOCALS.len()];
        let vpc = if vm.vni == VNI1 { "vpc-1" } else { "vpc-2" };
        let gid = format!("sg-{}", vm.name);
        let rules = rules
            .iter()
            .enumerate()
            .filter_map(|(i, &(egress, proto, a, b, len))| {
                let proto = proto_name(proto);
                let ports = match proto {
                    "tcp" | "udp" => Some((i32::from(a.min(b)), i32::from(a.max(b)))),
                    "icmp" => Some((i32::from(a % 9) - 1, -1)),
                    _ => None,
                };
                let cidr = ipnet::Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 148), len % 33)
                    .ok()?
                    .trunc();
                SgRule::from_aws(
                    &format!("sgr-{i}"),
                    &gid,
                    if egress { Dir::Egress } else { Dir::Ingress },
                    proto,
                    ports.map(|p| p.0),
                    ports.map(|p| p.1),
                    Peer::Cidr(cidr),
                )
                .ok()
            })
            .collect();
        r.groups.insert(gid.clone(), (vpc.into(), rules));
        r.enis.get_mut(vm.eni).unwrap().security_group_ids = vec![gid];
    }
    for (i, (on_b, entries)) in p.acls.iter().enumerate() {
        let subnet = if *on_b {
            "subnet-0000000000000000b"
        } else {
            "subnet-0000000000000000a"
        };
        let entries = entries
            .iter()
            .filter_map(|&(n, egress, proto, allow, lo, hi)| {
                let proto = proto_name(proto);
                let ports = matches!(proto, "tcp" | "udp").then_some((lo.min(hi), lo.max(hi)));
                let icmp = (proto == "icmp").then_some((-1, -1));
                AclEntry::from_aws(
                    n,
                    egress,
                    proto,
                    if allow { "allow" } else { "deny" },
                    "0.0.0.0/0".parse().unwrap(),
                    ports,
                    icmp,
                )
                .ok()
            })
            .collect();
        r.acls.insert(
            format!("acl-{i}"),
            ("vpc-1".into(), entries, vec![subnet.into()]),
        );
    }
    if !p.routes.is_empty() {
        let routes = p
            .routes
            .iter()
            .map(|&(len, kind)| Route {
                destination: ipnet::Ipv4Net::new(Ipv4Addr::new(10, 0, 1, 20), 16 + len % 17)
                    .unwrap()
                    .trunc(),
                target: match kind % 4 {
                    0 => Target::NetworkInterface(VM4.eni.into()),
                    1 => Target::InternetGateway("igw-1".into()),
                    2 => Target::NetworkInterface("eni-gone".into()),
                    _ => Target::Local,
                },
                state: if kind % 5 == 4 {
                    RouteState::Blackhole
                } else {
                    RouteState::Active
                },
            })
            .collect();
        r.route_tables
            .insert("rtb-main".into(), ("vpc-1".into(), true, routes, vec![]));
    }
    r.enis.get_mut(VM4.eni).unwrap().source_dest_check = p.vm4_check;
    r
}

fn policy() -> impl Strategy<Value = Policy> {
    let rule = (any::<bool>(), 0u8..4, 0u16..40, 0u16..40, 0u8..33);
    let entry = (
        1u16..20,
        any::<bool>(),
        0u8..4,
        any::<bool>(),
        0u16..40,
        0u16..40,
    );
    (
        proptest::collection::vec((0usize..6, proptest::collection::vec(rule, 0..5)), 0..4),
        proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(entry, 0..5)),
            0..3,
        ),
        proptest::collection::vec((0u8..17, 0u8..5), 0..3),
        any::<bool>(),
    )
        .prop_map(|(groups, acls, routes, vm4_check)| Policy {
            groups,
            acls,
            routes,
            vm4_check,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0usize..6, 0usize..6, proptest::option::weighted(0.2, any::<u8>()), any::<bool>(), 0u8..3, 30u16..32, 30u16..32, prop_oneof![Just(0x02u8), Just(0x12), Just(0x10), Just(0x11), Just(0x04)])
            .prop_map(|(from, to, other_dst, via_router, proto, sport, dport, flags)| Op::Send { from, to, other_dst, via_router, proto, sport, dport, flags }),
        4 => Just(Op::Again),
        1 => policy().prop_map(Op::Policy),
        1 => (1u16..200).prop_map(Op::Wait),
    ]
}

fn frame(
    from: &Vm,
    dst: Ipv4Addr,
    dst_mac: Mac,
    proto: u8,
    sport: u16,
    dport: u16,
    flags: u8,
) -> Vec<u8> {
    match proto {
        0 => {
            let mut h = [0u8; 20];
            h[0..2].copy_from_slice(&sport.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            h[12] = 0x50;
            h[13] = flags;
            ipv4(from.mac, dst_mac, from.ip, dst, 64, IpProtocol::Tcp, &h)
        }
        1 => udp(from.mac, dst_mac, from.ip, dst, sport, dport, b"p"),
        _ => echo_request(from.mac, dst_mac, from.ip, dst, 64, sport, dport, b"p"),
    }
}

use softvpc_engine::Mac;

/// The verdict the real engine reached, read from its output and counters.
fn real_verdict(e: &Engine, before: &softvpc_engine::Counters, out: &Output) -> TraceVerdict {
    let sent = Sent::from(out);
    if let Some((p, _)) = sent.to_ports.first() {
        return TraceVerdict::ToPort(*p);
    }
    if let Some(t) = sent.to_underlay.first() {
        return TraceVerdict::ToUnderlay(t.dst_ip);
    }
    for r in softvpc_engine::DropReason::ALL {
        if e.counters().drops(r) > before.drops(r) {
            return TraceVerdict::Drop(r);
        }
    }
    panic!("neither output nor drop")
}

/// A trace's verdict, with a reply to the sender folded into "to its port".
fn norm(v: TraceVerdict) -> TraceVerdict {
    match v {
        TraceVerdict::Reply(p) => TraceVerdict::ToPort(p),
        other => other,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn trace_verdicts_equal_what_the_engine_does(first in policy(), ops in proptest::collection::vec(op(), 1..60)) {
        let mut records = apply(&first);
        let mut engines: Vec<(Ipv4Addr, Engine)> = [HOST1, HOST2]
            .into_iter()
            .map(|h| {
                let mut e = Engine::new(EngineConfig::new(h));
                e.set_table(Arc::new(table(&records, h, &ports_of(h))));
                (h, e)
            })
            .collect();
        let mut now = t0();
        let mut out = Output::default();
        let mut last: Option<Op> = None;
        for op in ops {
            let op = match op {
                Op::Again => match last.clone() {
                    Some(op) => op,
                    None => continue,
                },
                op => op,
            };
            if matches!(op, Op::Send { .. }) {
                last = Some(op.clone());
            }
            match op {
                Op::Policy(p) => {
                    records = apply(&p);
                    for (h, e) in &mut engines {
                        e.set_table(Arc::new(table(&records, *h, &ports_of(*h))));
                    }
                }
                Op::Again => unreachable!(),
                Op::Wait(s) => {
                    now += Duration::from_secs(u64::from(s));
                    for (_, e) in &mut engines {
                        e.handle_timeout(now);
                    }
                }
                Op::Send { from, to, other_dst, via_router, proto, sport, dport, flags } => {
                    now += Duration::from_millis(1);
                    let (from, to) = (&LOCALS[from], &LOCALS[to]);
                    let dst = match other_dst {
                        Some(x) => Ipv4Addr::new(10, 0, x % 2, x),
                        None => to.ip,
                    };
                    let router = if from.vni == VNI1 { ROUTER1 } else { ROUTER2 };
                    let dst_mac = if via_router { router } else { to.mac };
                    let f = frame(from, dst, dst_mac, proto, sport, dport, flags);
                    let e = &mut engines.iter_mut().find(|(h, _)| *h == from.host).unwrap().1;
                    let traced = e.trace_port_frame(from.port, &f, &mut Output::default());
                    let before = e.counters().clone();
                    out.clear();
                    e.handle_port_frames(now, from.port, [&f[..]], &mut out);
                    let real = real_verdict(e, &before, &out);
                    prop_assert_eq!(norm(traced.verdict), real, "egress {:?}", traced);
                    let sent = Sent::from(&out);
                    for t in sent.to_underlay {
                        let e = &mut engines.iter_mut().find(|(h, _)| *h == t.dst_ip).unwrap().1;
                        let traced = e.trace_underlay_datagram(from.host, &t.payload, &mut Output::default());
                        let before = e.counters().clone();
                        out.clear();
                        e.handle_underlay_datagrams(now, [(from.host, &t.payload[..])], &mut out);
                        let real = real_verdict(e, &before, &out);
                        prop_assert_eq!(norm(traced.verdict), real, "ingress {:?}", traced);
                    }
                }
            }
        }
        // (Over the default 256 cases, a few hundred of the packets are flow-table hits: the
        // trace walks the layers and must agree with the cached decision too.)
    }
}
