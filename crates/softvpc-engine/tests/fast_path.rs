//! The kernel fast path's decision model against the engine alone (issue 14), in virtual time.
//!
//! Two simulations of the seed's two hosts run the same traffic: one forwards everything
//! through the engines; the other is what the agent builds with `--fast-path on`: after every
//! frame each host "installs" and "removes" what [`Engine::poll_offers`] says changed (with a
//! small sweep; flushing everything first when the table's generation changed, folding the
//! installed flows' counters back with [`Engine::fold_kernel_use`]), and a frame matching an installed flow's u32 keys
//! ([`KernelFlow::executes`], the classifier's semantics) is carried by the "kernel" without the
//! engine: encapsulated to its host and VNI (after a routed flow's rewrite,
//! [`KernelFlow::apply`]), or delivered unchanged to its port. The
//! delivered frames and the drops by reason must be the same. One difference is by design and
//! accounted for exactly: the kernel does not check an IPv4 header checksum or total length, so
//! an invalid frame of an installed flow reaches the receiving instance (whose own stack drops
//! it) where the engine drops it as malformed.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use softvpc_engine::offload::{KernelAction, KernelFlow, KernelHook, OfferChange};
use softvpc_engine::policy::Direction as Dir;
use softvpc_engine::policy::Generation;
use softvpc_engine::{DropReason, Engine, EngineConfig, Mac, Output, PortId, TraceVerdict};
use softvpc_wire::IpProtocol;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYNACK: u8 = 0x12;
const FIN: u8 = 0x11;
const RST: u8 = 0x04;
const PSHACK: u8 = 0x18;

fn tcp(from: &Vm, to: &Vm, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = 0x50;
    h[13] = flags;
    ipv4(from.mac, to.mac, from.ip, to.ip, 64, IpProtocol::Tcp, &h)
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in h.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn fix_checksum(f: &mut [u8]) {
    let ihl = usize::from(f[14] & 0x0f) * 4;
    f[24..26].copy_from_slice(&[0, 0]);
    let c = ip_checksum(&f[14..14 + ihl]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// What to do to a well-formed frame.
#[derive(Debug, Clone, Copy)]
enum Mangle {
    None,
    /// More fragments follow.
    FirstFragment,
    /// IPv4 options (four NOPs).
    Options,
    /// A broken header checksum.
    BadChecksum,
    /// Cut inside the payload (total length says more).
    Truncated,
}

fn mangle(mut f: Vec<u8>, m: Mangle) -> Vec<u8> {
    match m {
        Mangle::None => {}
        Mangle::FirstFragment => {
            f[20] |= 0x20;
            fix_checksum(&mut f);
        }
        Mangle::Options => {
            let mut g = f[..34].to_vec();
            g.extend_from_slice(&[1, 1, 1, 1]);
            g.extend_from_slice(&f[34..]);
            g[14] = 0x46;
            let len = u16::from_be_bytes([g[16], g[17]]) + 4;
            g[16..18].copy_from_slice(&len.to_be_bytes());
            fix_checksum(&mut g);
            f = g;
        }
        Mangle::BadChecksum => f[25] ^= 0x5a,
        Mangle::Truncated => f.truncate(f.len() - 4),
    }
    f
}

/// The installed flows of one host's "kernel", with what they carried since the last fold.
#[derive(Default)]
struct Kernel {
    generation: Option<Generation>,
    flows: BTreeMap<KernelFlow, (u64, u64, Option<Instant>)>,
    /// Frames carried in all.
    carried: u64,
}

struct Host {
    ip: Ipv4Addr,
    engine: Engine,
    kernel: Kernel,
}

/// A frame delivered to an instance: (host, port, frame).
type Delivered = (Ipv4Addr, PortId, Vec<u8>);

struct Sim {
    records: SeedRecords,
    hosts: Vec<Host>,
    fast: bool,
    /// The sweep each sync asks [`Engine::poll_offers`] for.
    sweep: usize,
    now: Instant,
    out: Output,
    /// Invalid frames the kernel carried, by the drop reason the engine would have given.
    invalid_carried: BTreeMap<&'static str, u64>,
}

fn is_valid_ipv4(frame: &[u8]) -> bool {
    softvpc_wire::FrameMeta::parse(frame)
        .ok()
        .and_then(|m| m.ipv4().map(|ip| ip.valid))
        .unwrap_or(true)
}

impl Sim {
    fn new(records: SeedRecords, fast: bool) -> Sim {
        let hosts = [HOST1, HOST2]
            .into_iter()
            .map(|h| {
                let mut engine = Engine::new(EngineConfig::new(h));
                engine.set_table(Arc::new(table(&records, h, &fp_ports(h))));
                Host {
                    ip: h,
                    engine,
                    kernel: Kernel::default(),
                }
            })
            .collect();
        Sim {
            records,
            hosts,
            fast,
            sweep: 1,
            now: t0(),
            out: Output::default(),
            invalid_carried: BTreeMap::new(),
        }
    }

    /// A mapping or policy change. The agent removes its kernel flows before the engine gets
    /// the new table, so no packet uses a stale one.
    fn update(&mut self, f: impl FnOnce(&mut SeedRecords)) {
        f(&mut self.records);
        for h in &mut self.hosts {
            flush(h);
            h.engine
                .set_table(Arc::new(table(&self.records, h.ip, &fp_ports(h.ip))));
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        for h in &mut self.hosts {
            if h.engine.poll_timeout().is_some_and(|t| t <= now) {
                h.engine.handle_timeout(now);
            }
        }
        self.sync();
    }

    /// The agent's loop after a batch: fold, flush a stale generation, install what is
    /// newly offered, remove what was withdrawn.
    fn sync(&mut self) {
        if !self.fast {
            return;
        }
        let sweep = self.sweep;
        for h in &mut self.hosts {
            sync_host(h, sweep);
        }
    }

    /// `vm` sends `frame`; the frames instances got.
    fn send(&mut self, vm: &Vm, frame: &[u8]) -> Vec<Delivered> {
        self.now += Duration::from_micros(10);
        let now = self.now;
        let mut delivered = Vec::new();
        // (destination host, VXLAN payload)
        let mut datagrams: Vec<(Ipv4Addr, Vec<u8>)> = Vec::new();
        let fast = self.fast;
        // The drop reason of an invalid frame the sender's kernel carried.
        let mut invalid = None;
        let h = self.hosts.iter_mut().find(|h| h.ip == vm.host).unwrap();
        let carried = fast
            .then(|| {
                h.kernel
                    .flows
                    .iter_mut()
                    .find(|(k, _)| k.hook == KernelHook::PortEgress(vm.port) && k.executes(frame))
            })
            .flatten();
        if let Some((k, use_)) = carried {
            let KernelAction::Encap { host, vni, port } = k.action else {
                panic!("an egress flow encapsulates");
            };
            assert_eq!(port, 4789);
            use_.0 += 1;
            use_.1 += frame.len() as u64;
            use_.2 = Some(now);
            h.kernel.carried += 1;
            // A routed flow's rewrite (MACs, TTL), as the agent's cls_bpf program does.
            let mut f = frame.to_vec();
            k.apply(&mut f);
            if !is_valid_ipv4(frame) {
                invalid = Some((r_of_invalid(h, vm, frame), f.clone()));
            }
            datagrams.push((host, vxlan(vni.0, &f)));
        } else {
            self.out.clear();
            h.engine
                .handle_port_frames(now, vm.port, [frame], &mut self.out);
            let sent = Sent::from(&self.out);
            for (p, f) in sent.to_ports {
                delivered.push((vm.host, p, f));
            }
            for t in sent.to_underlay {
                assert_eq!(t.dst_port, 4789);
                datagrams.push((t.dst_ip, t.payload));
            }
        }
        for (dst, payload) in datagrams {
            let src = vm.host;
            let vni = u32::from_be_bytes([0, payload[4], payload[5], payload[6]]);
            let inner = &payload[8..];
            let h = self.hosts.iter_mut().find(|h| h.ip == dst).unwrap();
            let carried = fast
                .then(|| {
                    h.kernel.flows.iter_mut().find(|(k, _)| {
                        matches!(k.hook, KernelHook::UnderlayIngress { vni: v, host, .. }
                            if v.0 == vni && host == src)
                            && k.matches(inner)
                    })
                })
                .flatten();
            if let Some((k, use_)) = carried {
                let KernelAction::Deliver(port) = k.action else {
                    panic!("an ingress flow delivers");
                };
                use_.0 += 1;
                use_.1 += inner.len() as u64;
                use_.2 = Some(now);
                h.kernel.carried += 1;
                delivered.push((dst, port, inner.to_vec()));
            } else {
                self.out.clear();
                h.engine
                    .handle_underlay_datagrams(now, [(src, &payload[..])], &mut self.out);
                for (p, f) in Sent::from(&self.out).to_ports {
                    delivered.push((dst, p, f));
                }
            }
        }
        // Carried on by the receiver's kernel too, it reaches the instance instead of being
        // dropped (by the sender's engine alone, or by the receiver's engine here).
        if let Some((r, sent)) = invalid {
            if delivered.iter().any(|d| d.2 == sent) {
                *self.invalid_carried.entry(r).or_default() += 1;
            }
        }
        self.sync();
        delivered
    }

    fn drops(&self, reason: DropReason) -> u64 {
        self.hosts
            .iter()
            .map(|h| h.engine.counters().drops(reason))
            .sum()
    }

    fn carried(&self) -> u64 {
        self.hosts.iter().map(|h| h.kernel.carried).sum()
    }

    fn installed(&self, host: Ipv4Addr) -> usize {
        self.hosts
            .iter()
            .find(|h| h.ip == host)
            .unwrap()
            .kernel
            .flows
            .len()
    }
}

/// The drop reason the engine gives an invalid frame the kernel carried.
fn r_of_invalid(h: &mut Host, vm: &Vm, frame: &[u8]) -> &'static str {
    let mut out = Output::default();
    let t = h.engine.trace_port_frame(vm.port, frame, &mut out);
    let TraceVerdict::Drop(r) = t.verdict else {
        panic!("an invalid frame the engine forwards: {:?}", t.verdict);
    };
    r.as_str()
}

fn fold(h: &mut Host) {
    for (k, (packets, bytes, last)) in h.kernel.flows.iter_mut() {
        if let Some(t) = last.take() {
            h.engine.fold_kernel_use(k, *packets, *bytes, t);
            *packets = 0;
            *bytes = 0;
        }
    }
}

/// One host's sync (see [`Sim::sync`]): every change must make sense against what the kernel
/// holds: an offer of the current generation not held yet, a withdrawal of a held flow or of
/// one an earlier flush removed.
fn sync_host(h: &mut Host, sweep: usize) {
    let current = h.engine.table().generation();
    if h.kernel.generation != Some(current) {
        flush(h);
        h.kernel.generation = Some(current);
    }
    fold(h);
    let mut changes = Vec::new();
    h.engine.poll_offers(sweep, &mut changes);
    for c in changes {
        match c {
            OfferChange::Withdraw(k) => {
                assert!(
                    h.kernel.flows.remove(&k).is_some() || k.generation != current,
                    "withdrawn but not held: {k:?}"
                );
            }
            OfferChange::Offer(k) => {
                assert_eq!(k.generation, current);
                assert!(
                    h.kernel.flows.insert(k, (0, 0, None)).is_none(),
                    "offered twice: {k:?}"
                );
            }
        }
    }
    assert_eq!(h.engine.offer_log().offered(), h.kernel.flows.len());
}

fn flush(h: &mut Host) {
    fold(h);
    h.kernel.flows.clear();
    h.kernel.generation = None;
}

fn sg_rule(id: &str, dir: Dir, proto: &str, ports: Option<(i32, i32)>, cidr: &str) -> SgRule {
    SgRule::from_aws(
        id,
        "sg-web",
        dir,
        proto,
        ports.map(|p| p.0),
        ports.map(|p| p.1),
        Peer::Cidr(cidr.parse().unwrap()),
    )
    .unwrap()
}

/// zigi-vm2 in `sg-web`: inbound TCP 22 and UDP 53 and ICMP from the VPC; no outbound rule.
/// VPC 3 peered with VPC 1 ([`with_peering`]).
fn records() -> SeedRecords {
    let mut r = with_peering(seed_records());
    r.groups.insert(
        "sg-web".into(),
        (
            "vpc-1".into(),
            vec![
                sg_rule(
                    "sgr-ssh",
                    Dir::Ingress,
                    "tcp",
                    Some((22, 22)),
                    "10.0.0.0/16",
                ),
                sg_rule(
                    "sgr-dns",
                    Dir::Ingress,
                    "udp",
                    Some((53, 53)),
                    "10.0.0.0/16",
                ),
                sg_rule("sgr-icmp", Dir::Ingress, "icmp", None, "10.0.0.0/16"),
            ],
        ),
    );
    r.enis.get_mut(VM2.eni).unwrap().security_group_ids = vec!["sg-web".into()];
    r
}

/// VPC 3 (10.3.0.0/16), peered with VPC 1 over `pcx-13` and routed both ways: its one
/// instance, on host-2.
const VNI3: softvpc_engine::Vni = softvpc_engine::Vni(0x000103);
const ROUTER3: Mac = [0x0a, 0x56, 0x50, 0x00, 0x01, 0x03];
const PEER3: Vm = Vm {
    name: "peer-vm3",
    eni: "eni-00000000000000013",
    vni: VNI3,
    subnet: "subnet-0000000000000000d",
    ip: Ipv4Addr::new(10, 3, 0, 40),
    mac: [0x02, 0, 0, 0, 0x03, 0x01],
    host: HOST2,
    port: PortId(13),
};

/// The seed's ports, and PEER3's on host-2.
fn fp_ports(h: Ipv4Addr) -> std::collections::HashMap<String, PortId> {
    let mut p = ports_of(h);
    if h == PEER3.host {
        p.insert(PEER3.eni.into(), PEER3.port);
    }
    p
}

fn with_peering(mut r: SeedRecords) -> SeedRecords {
    r.vpcs
        .insert("vpc-3".into(), (VNI3, "10.3.0.0/16".parse().unwrap()));
    r.subnets.insert(
        PEER3.subnet.into(),
        ("vpc-3".into(), "10.3.0.0/24".parse().unwrap()),
    );
    let mut e = eni_info(&PEER3);
    e.vpc_id = "vpc-3".into();
    r.enis.insert(PEER3.eni.into(), e);
    r.peerings
        .insert("pcx-13".into(), ("vpc-1".into(), "vpc-3".into(), true));
    for (rtb, vpc, cidr) in [
        ("rtb-main", "vpc-1", "10.3.0.0/16"),
        ("rtb-3", "vpc-3", "10.0.0.0/16"),
    ] {
        r.route_tables.insert(
            rtb.into(),
            (
                vpc.into(),
                true,
                vec![Route {
                    destination: cidr.parse().unwrap(),
                    target: Target::VpcPeeringConnection("pcx-13".into()),
                    state: RouteState::Active,
                }],
                vec![],
            ),
        );
    }
    r
}

/// One step of random traffic or change.
#[derive(Debug, Clone)]
enum Step {
    Tcp(usize, u16, u16, u8, Mangle),
    Udp(usize, u16, u16, Mangle),
    Echo(usize, u16, Mangle),
    Arp(usize),
    Advance(u64),
    RemoveSsh,
    RestoreSsh,
}

/// (from, to) pairs: across hosts bridged (both ways), routed (both ways), local, another
/// VPC, over a peering connection (both ways).
const PAIRS: [(Vm, Vm); 8] = [
    (VM1, VM2),
    (VM2, VM1),
    (VM4, VM3),
    (VM3, VM4),
    (VM1, VM4),
    (OTHER1, OTHER2),
    (VM1, PEER3),
    (PEER3, VM1),
];

fn dst_mac(from: &Vm, to: &Vm) -> Mac {
    if from.subnet == to.subnet {
        to.mac
    } else if from.vni == VNI1 {
        ROUTER1
    } else if from.vni == VNI3 {
        ROUTER3
    } else {
        ROUTER2
    }
}

fn frame_of(step: &Step) -> Option<(Vm, Vec<u8>)> {
    Some(match *step {
        Step::Tcp(p, s, d, flags, m) => {
            let (a, b) = PAIRS[p];
            let mut f = tcp(&a, &b, s, d, flags);
            f[0..6].copy_from_slice(&dst_mac(&a, &b));
            (a, mangle(f, m))
        }
        Step::Udp(p, s, d, m) => {
            let (a, b) = PAIRS[p];
            (
                a,
                mangle(udp(a.mac, dst_mac(&a, &b), a.ip, b.ip, s, d, b"x"), m),
            )
        }
        Step::Echo(p, id, m) => {
            let (a, b) = PAIRS[p];
            let f = echo_request(a.mac, dst_mac(&a, &b), a.ip, b.ip, 64, id, 1, b"ping");
            (a, mangle(f, m))
        }
        Step::Arp(p) => {
            let (a, b) = PAIRS[p];
            (a, arp_request(&a, b.ip))
        }
        _ => return None,
    })
}

fn mangle_strategy() -> impl Strategy<Value = Mangle> {
    prop_oneof![
        6 => Just(Mangle::None),
        1 => Just(Mangle::FirstFragment),
        1 => Just(Mangle::Options),
        1 => Just(Mangle::BadChecksum),
        1 => Just(Mangle::Truncated),
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let pair = 0..PAIRS.len();
    let sport = prop_oneof![Just(40000u16), Just(40001), Just(22), Just(53)];
    let dport = prop_oneof![Just(22u16), Just(80), Just(53), Just(40000)];
    let flags = prop_oneof![
        1 => Just(SYN),
        1 => Just(SYNACK),
        4 => Just(ACK),
        4 => Just(PSHACK),
        1 => Just(FIN),
        1 => Just(RST)
    ];
    prop_oneof![
        12 => (pair.clone(), sport.clone(), dport.clone(), flags, mangle_strategy())
            .prop_map(|(p, s, d, f, m)| Step::Tcp(p, s, d, f, m)),
        4 => (pair.clone(), sport, dport, mangle_strategy()).prop_map(|(p, s, d, m)| Step::Udp(p, s, d, m)),
        3 => (pair.clone(), 1u16..3, mangle_strategy()).prop_map(|(p, i, m)| Step::Echo(p, i, m)),
        1 => pair.prop_map(Step::Arp),
        2 => prop_oneof![Just(1u64), Just(1_000), Just(31_000), Just(70_000), Just(200_000)]
            .prop_map(Step::Advance),
        1 => Just(Step::RemoveSsh),
        1 => Just(Step::RestoreSsh),
    ]
}

fn apply(sim: &mut Sim, step: &Step) -> Vec<Delivered> {
    if let Some((vm, f)) = frame_of(step) {
        return sim.send(&vm, &f);
    }
    match step {
        Step::Advance(ms) => sim.advance(Duration::from_millis(*ms)),
        Step::RemoveSsh => sim.update(|r| {
            r.groups
                .get_mut("sg-web")
                .unwrap()
                .1
                .retain(|x| x.id != "sgr-ssh")
        }),
        Step::RestoreSsh => sim.update(|r| {
            let rules = &mut r.groups.get_mut("sg-web").unwrap().1;
            if !rules.iter().any(|x| x.id == "sgr-ssh") {
                rules.push(sg_rule(
                    "sgr-ssh",
                    Dir::Ingress,
                    "tcp",
                    Some((22, 22)),
                    "10.0.0.0/16",
                ));
            }
        }),
        _ => unreachable!(),
    }
    Vec::new()
}

/// Runs `steps` through both simulations, comparing at every step; returns the frames the
/// kernel carried.
fn differential(steps: &[Step]) -> u64 {
    let mut alone = Sim::new(records(), false);
    let mut fast = Sim::new(records(), true);
    for (i, step) in steps.iter().enumerate() {
        let a = apply(&mut alone, step);
        let b = apply(&mut fast, step);
        // What the receiving instances accept (their stack drops an invalid IPv4 header).
        let a: Vec<_> = a.into_iter().filter(|d| is_valid_ipv4(&d.2)).collect();
        let b: Vec<_> = b.into_iter().filter(|d| is_valid_ipv4(&d.2)).collect();
        assert_eq!(a, b, "step {i}: {step:?}");
    }
    for reason in DropReason::ALL {
        let extra = fast
            .invalid_carried
            .get(reason.as_str())
            .copied()
            .unwrap_or(0);
        assert_eq!(
            alone.drops(reason),
            fast.drops(reason) + extra,
            "drops {}",
            reason.as_str()
        );
    }
    fast.carried()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn the_kernel_model_delivers_and_drops_as_the_engine_alone(
        steps in proptest::collection::vec(step_strategy(), 1..120)
    ) {
        differential(&steps);
    }
}

/// A TCP connection zigi-vm1 -> zigi-vm2:22, established; the steps of its handshake.
fn handshake() -> Vec<Step> {
    vec![
        Step::Tcp(0, 40000, 22, SYN, Mangle::None),
        Step::Tcp(1, 22, 40000, SYNACK, Mangle::None),
        Step::Tcp(0, 40000, 22, ACK, Mangle::None),
    ]
}

#[test]
fn an_established_flow_runs_in_the_kernel_both_ways_and_agrees_with_the_engine() {
    let mut steps = handshake();
    for _ in 0..20 {
        steps.push(Step::Tcp(0, 40000, 22, PSHACK, Mangle::None));
        steps.push(Step::Tcp(1, 22, 40000, ACK, Mangle::None));
    }
    // Its control segments, options, fragments and broken frames, and a routed flow.
    for m in [
        Mangle::FirstFragment,
        Mangle::Options,
        Mangle::BadChecksum,
        Mangle::Truncated,
    ] {
        steps.push(Step::Tcp(0, 40000, 22, PSHACK, m));
    }
    steps.push(Step::Tcp(2, 40000, 80, SYN, Mangle::None));
    steps.push(Step::Tcp(0, 40000, 22, FIN, Mangle::None));
    steps.push(Step::Tcp(1, 22, 40000, FIN, Mangle::None));
    let carried = differential(&steps);
    // 40 data segments, each through two kernel hooks (the sender's egress and the receiver's
    // ingress), less the first of each direction (installed after the handshake's ACK), plus
    // the two invalid frames the kernel cannot tell apart.
    assert!(carried >= 70, "carried {carried}");
}

/// The agent's early sync (between its periodic ones): the engine tells when changed flows
/// wait to be looked at, and a poll of the changed flows alone (no sweep) offers a new flow.
#[test]
fn a_changed_flow_is_told_and_offered_without_a_sweep() {
    // Engines alone: the syncs below are made by hand.
    let mut sim = Sim::new(records(), false);
    let mut changes = Vec::new();
    assert!(sim.hosts[0].engine.offers_changed(), "never polled yet");
    sim.hosts[0].engine.poll_offers(0, &mut changes);
    assert!(changes.is_empty());
    assert!(!sim.hosts[0].engine.offers_changed());
    // A UDP flow across hosts: offered from its first datagram.
    let (_, f) = frame_of(&Step::Udp(0, 5000, 53, Mangle::None)).unwrap();
    assert_eq!(sim.send(&VM1, &f).len(), 1);
    assert!(sim.hosts[0].engine.offers_changed());
    sim.hosts[0].engine.poll_offers(0, &mut changes);
    assert!(
        matches!(changes[..], [OfferChange::Offer(k)] if k.hook == KernelHook::PortEgress(VM1.port)),
        "{changes:?}"
    );
    assert!(!sim.hosts[0].engine.offers_changed());
    // A TCP connection: told at every step of its handshake; by its end both hooks of
    // host-1 are offered (the egress of zigi-vm1's segments, the ingress of the replies).
    let mut offered = Vec::new();
    for (i, step) in handshake().iter().enumerate() {
        let (vm, f) = frame_of(step).unwrap();
        sim.send(&vm, &f);
        assert!(sim.hosts[0].engine.offers_changed(), "step {i}");
        changes.clear();
        sim.hosts[0].engine.poll_offers(0, &mut changes);
        offered.extend(changes.iter().filter_map(|c| match c {
            OfferChange::Offer(k) if k.proto == 6 => Some(k.hook),
            _ => None,
        }));
    }
    assert!(
        offered.contains(&KernelHook::PortEgress(VM1.port)),
        "{offered:?}"
    );
    assert!(
        offered
            .iter()
            .any(|h| matches!(h, KernelHook::UnderlayIngress { port, .. } if *port == VM1.port)),
        "{offered:?}"
    );
}

#[test]
fn what_the_kernel_holds_and_for_how_long() {
    let mut sim = Sim::new(records(), true);
    for s in handshake() {
        apply(&mut sim, &s);
    }
    // Both hosts hold the flow's direction they see: host-1 the egress of zigi-vm1's segments
    // and the ingress of zigi-vm2's replies, host-2 the mirror.
    let k1: Vec<KernelFlow> = sim.hosts[0].kernel.flows.keys().copied().collect();
    assert!(k1
        .iter()
        .any(|k| k.hook == KernelHook::PortEgress(VM1.port)));
    assert!(k1.iter().any(|k| matches!(k.hook,
        KernelHook::UnderlayIngress { port, host, .. } if port == VM1.port && host == HOST2)));
    // A local flow stays in the engine; a routed one across hosts (zigi-vm4 -> zigi-vm3,
    // untracked: no groups) goes to the kernel with its rewrite.
    apply(&mut sim, &Step::Tcp(4, 40000, 80, SYN, Mangle::None));
    assert!(sim.hosts[0]
        .kernel
        .flows
        .keys()
        .all(|k| k.port() == VM1.port));
    apply(&mut sim, &Step::Tcp(2, 40000, 80, SYN, Mangle::None));
    assert!(sim.hosts[0]
        .kernel
        .flows
        .keys()
        .any(|k| k.port() == VM4.port
            && k.rewrite
                .is_some_and(|r| r.target_mac == VM3.mac && r.router_mac == ROUTER1)));
    // Kernel use keeps the flow alive in the engine past its idle time: 100 minutes of
    // segments every 50 s, all carried by the kernel.
    let before = sim.carried();
    for _ in 0..120 {
        sim.advance(Duration::from_secs(50));
        let got = sim.send(&VM1, &tcp(&VM1, &VM2, 40000, 22, PSHACK));
        assert_eq!(got.len(), 1);
    }
    assert_eq!(sim.carried() - before, 240);
    // The engine counted them as forwarded (folded), and still tracks the connection.
    let c = sim.hosts[1].engine.counters().eni(VM2.eni).unwrap().tracked;
    assert_eq!(c, 1);
    // Idle, the kernel flow is removed with the engine's entry.
    sim.advance(Duration::from_secs(61));
    sim.advance(Duration::from_secs(10));
    assert_eq!(sim.installed(HOST1), 0);
}

#[test]
fn a_removed_rule_keeps_a_tracked_kernel_flow_and_refuses_new_ones() {
    let mut sim = Sim::new(records(), true);
    for s in handshake() {
        apply(&mut sim, &s);
    }
    assert!(sim.installed(HOST2) > 0);
    let seg = tcp(&VM1, &VM2, 40000, 22, PSHACK);
    sim.send(&VM1, &seg);
    let carried = sim.carried();
    sim.update(|r| r.groups.get_mut("sg-web").unwrap().1.clear());
    // The change flushed every kernel flow before the next packet.
    assert_eq!((sim.installed(HOST1), sim.installed(HOST2)), (0, 0));
    // The next segment goes through the engines, which find the tracked connection: delivered,
    // and the flow is offered again.
    assert_eq!(sim.send(&VM1, &seg).len(), 1);
    assert_eq!(sim.carried(), carried);
    assert!(sim.installed(HOST2) > 0);
    assert_eq!(sim.send(&VM1, &seg).len(), 1);
    assert_eq!(sim.carried(), carried + 2);
    // A new connection is refused.
    assert!(sim.send(&VM1, &tcp(&VM1, &VM2, 40009, 22, SYN)).is_empty());
    assert_eq!(sim.drops(DropReason::SgDenied), 1);
}

#[test]
fn a_revoked_untracked_rule_stops_a_kernel_flow_at_once() {
    // AWS's untracked case on zigi-vm2: TCP from anywhere in, everything out: no conntrack.
    let mut r = records();
    r.groups.get_mut("sg-web").unwrap().1 = vec![
        sg_rule("sgr-in", Dir::Ingress, "tcp", Some((0, 65535)), "0.0.0.0/0"),
        sg_rule("sgr-out", Dir::Egress, "-1", None, "0.0.0.0/0"),
    ];
    let mut sim = Sim::new(r, true);
    let seg = tcp(&VM1, &VM2, 40000, 22, PSHACK);
    assert_eq!(sim.send(&VM1, &seg).len(), 1);
    assert_eq!(sim.send(&VM1, &seg).len(), 1);
    assert!(
        sim.carried() >= 2,
        "untracked flows go to the kernel at once"
    );
    sim.update(|r| {
        r.groups
            .get_mut("sg-web")
            .unwrap()
            .1
            .retain(|x| x.id != "sgr-in")
    });
    assert!(sim.send(&VM1, &seg).is_empty());
    assert_eq!(sim.drops(DropReason::SgDenied), 1);
}

#[test]
fn a_revoked_route_or_acl_stops_the_flows_at_once() {
    // No groups: the bridged flow and the routed flow (zigi-vm4 -> zigi-vm3, subnet a -> b,
    // with its MAC rewrite) go to the kernel with their first packet.
    let mut r = records();
    r.enis.get_mut(VM2.eni).unwrap().security_group_ids.clear();
    let mut sim = Sim::new(r, true);
    let routed = tcp_via_router(&VM4, &VM3, 40000, 80);
    assert_eq!(sim.send(&VM4, &routed).len(), 1);
    let before = sim.carried();
    let got = sim.send(&VM4, &routed);
    assert_eq!(got.len(), 1);
    assert_eq!(sim.carried(), before + 2, "both hooks of the routed flow");
    assert_eq!(
        (&got[0].2[0..6], &got[0].2[6..12]),
        (&VM3.mac[..], &ROUTER1[..])
    );
    assert_eq!(got[0].2[22], 63, "TTL");
    let seg = tcp(&VM1, &VM2, 40000, 22, PSHACK);
    sim.send(&VM1, &seg);
    sim.send(&VM1, &seg);
    let carried = sim.carried();
    assert!(carried >= 4);
    // Subnet b's ACL denies subnet a: the routed flow stops with its next packet, and the
    // change flushed the kernel's flows (the bridged one is decided again, and allowed).
    sim.update(|r| {
        r.acls.insert(
            "acl-b".into(),
            (
                "vpc-1".into(),
                vec![AclEntry::from_aws(
                    100,
                    false,
                    "-1",
                    "deny",
                    "10.0.0.0/24".parse().unwrap(),
                    None,
                    None,
                )
                .unwrap()],
                vec!["subnet-0000000000000000b".into()],
            ),
        );
    });
    assert_eq!((sim.installed(HOST1), sim.installed(HOST2)), (0, 0));
    assert!(sim.send(&VM4, &routed).is_empty(), "ACL");
    assert_eq!(sim.drops(DropReason::NaclDenied), 1);
    assert_eq!(sim.send(&VM1, &seg).len(), 1);
    assert_eq!(sim.carried(), carried, "decided again by the engine first");
    // A blackhole route for subnet b: the routed flow stops at once.
    sim.update(|r| {
        r.acls.clear();
        r.route_tables.insert(
            "rtb-main".into(),
            (
                "vpc-1".into(),
                true,
                vec![Route {
                    destination: "10.0.1.0/24".parse().unwrap(),
                    target: Target::NetworkInterface("eni-gone".into()),
                    state: RouteState::Blackhole,
                }],
                vec![],
            ),
        );
    });
    assert!(sim.send(&VM4, &routed).is_empty(), "blackhole");
    assert_eq!(sim.drops(DropReason::Blackhole), 1);
}

fn tcp_via_router(from: &Vm, to: &Vm, sport: u16, dport: u16) -> Vec<u8> {
    let mut f = tcp(from, to, sport, dport, PSHACK);
    f[0..6].copy_from_slice(&ROUTER1);
    f
}

#[test]
fn a_moved_eni_gets_no_more_packets_at_its_old_host() {
    let mut r = records();
    r.enis.get_mut(VM2.eni).unwrap().security_group_ids.clear();
    let mut sim = Sim::new(r, true);
    let seg = tcp(&VM1, &VM2, 40000, 22, PSHACK);
    sim.send(&VM1, &seg);
    let got = sim.send(&VM1, &seg);
    assert_eq!(got, vec![(HOST2, VM2.port, seg.clone())]);
    assert!(sim.carried() >= 2);
    // zigi-vm2 moves to host-1 (its port there: 2 as well).
    sim.update(|r| r.enis.get_mut(VM2.eni).unwrap().host_underlay_ip = Some(HOST1));
    for _ in 0..5 {
        let got = sim.send(&VM1, &seg);
        assert!(
            got.iter().all(|(h, _, _)| *h != HOST2),
            "a packet at the old host: {got:?}"
        );
    }
}

/// Flow log records (issue 10) of the flows the kernel carried: the fold counts them as the
/// engine counts what it forwards itself, so the same traffic gives the same records (packets,
/// IPv4 bytes, TCP flags, direction and action) with and without the fast path.
#[test]
fn flow_logs_count_what_the_kernel_carried_as_the_engine_would() {
    use softvpc_engine::flowlog::RecordKey;
    use std::collections::HashMap;
    type Records = BTreeMap<(Box<str>, RecordKey), (u64, u64, u8)>;
    let run = |fast: bool| -> (Records, u64) {
        let mut sim = Sim::new(records(), fast);
        for h in &mut sim.hosts {
            let logged: HashMap<Box<str>, Vec<Duration>> = [VM1.eni, VM2.eni]
                .into_iter()
                .map(|e| (e.into(), vec![Duration::from_secs(60)]))
                .collect();
            h.engine.set_flow_logs(logged);
        }
        let mut steps = handshake();
        for _ in 0..20 {
            steps.push(Step::Tcp(0, 40000, 22, PSHACK, Mangle::None));
            steps.push(Step::Tcp(1, 22, 40000, ACK, Mangle::None));
        }
        for _ in 0..5 {
            steps.push(Step::Echo(0, 7, Mangle::None));
        }
        steps.push(Step::Tcp(0, 40000, 22, FIN, Mangle::None));
        steps.push(Step::Tcp(1, 22, 40000, FIN, Mangle::None));
        for s in &steps {
            apply(&mut sim, s);
        }
        sim.advance(Duration::from_secs(61));
        let mut got = Records::new();
        for h in &mut sim.hosts {
            while let Some(w) = h.engine.poll_flow_window() {
                assert_eq!(w.skipped, 0);
                for r in w.records {
                    let e = got.entry((w.eni_id.clone(), r.key)).or_default();
                    e.0 += r.counts.packets;
                    e.1 += r.counts.bytes;
                    e.2 |= r.counts.tcp_flags;
                }
            }
        }
        (got, sim.carried())
    };
    let (slow, none) = run(false);
    let (fast, carried) = run(true);
    assert_eq!(none, 0);
    assert!(carried >= 70, "the kernel carried {carried} frames");
    assert!(!slow.is_empty());
    assert_eq!(fast, slow);
}

/// A flow over a peering connection (zigi-vm1 on host-1 -> peer-vm3 on host-2, VPC 1 -> 3) and
/// its answers run in the kernel: encapsulated with the peer VPC's VNI, MACs rewritten to the
/// peer's router and target, TTL decremented, as the engine does; deleting the peering's route
/// stops it at once.
#[test]
fn a_peered_flow_runs_in_the_kernel_with_the_peer_vpcs_vni_and_its_rewrite() {
    let mut sim = Sim::new(records(), true);
    let there = echo_request(VM1.mac, ROUTER1, VM1.ip, PEER3.ip, 64, 9, 1, b"ping");
    let first = sim.send(&VM1, &there);
    assert_eq!(first.len(), 1, "the engine forwards the first echo");
    let k = *sim.hosts[0]
        .kernel
        .flows
        .keys()
        .find(|k| k.hook == KernelHook::PortEgress(VM1.port))
        .expect("the peered flow is offered");
    assert_eq!(
        k.action,
        KernelAction::Encap {
            host: HOST2,
            vni: VNI3,
            port: 4789
        }
    );
    let r = k.rewrite.expect("a rewrite");
    assert_eq!((r.router_mac, r.target_mac), (ROUTER3, PEER3.mac));
    let before = sim.carried();
    let got = sim.send(&VM1, &there);
    assert_eq!(
        sim.carried(),
        before + 2,
        "the sender's egress and the receiver's ingress"
    );
    assert_eq!(got, first, "the kernel delivers what the engine delivered");
    assert_eq!(got[0].1, PEER3.port);
    assert_eq!(got[0].2[22], 63);
    // The answer, peer-vm3 -> zigi-vm1 over the same connection.
    let back = echo_request(PEER3.mac, ROUTER3, PEER3.ip, VM1.ip, 64, 9, 1, b"pong");
    assert_eq!(sim.send(&PEER3, &back).len(), 1);
    let before = sim.carried();
    let got = sim.send(&PEER3, &back);
    assert_eq!(sim.carried(), before + 2);
    assert_eq!((got[0].0, got[0].1), (HOST1, VM1.port));
    assert_eq!(
        (&got[0].2[0..6], &got[0].2[6..12]),
        (&VM1.mac[..], &ROUTER1[..])
    );
    // The route to the peering removed: no more packets, from the next one on.
    sim.update(|r| {
        r.route_tables.get_mut("rtb-main").unwrap().2.clear();
    });
    assert!(sim.send(&VM1, &there).is_empty());
    assert!(sim.drops(DropReason::NoRoute) + sim.drops(DropReason::Blackhole) >= 1);
}

/// A routed flow whose TTL runs out is the engine's (it answers or drops it), never carried.
#[test]
fn a_routed_frame_with_ttl_one_is_left_to_the_engine() {
    let mut r = records();
    r.enis.get_mut(VM2.eni).unwrap().security_group_ids.clear();
    let mut sim = Sim::new(r, true);
    let routed = tcp_via_router(&VM4, &VM3, 40000, 80);
    sim.send(&VM4, &routed);
    assert!(sim.installed(HOST1) > 0);
    let mut last = routed.clone();
    last[22] = 1;
    fix_checksum(&mut last);
    let before = sim.carried();
    assert!(sim.send(&VM4, &last).is_empty());
    assert_eq!(sim.carried(), before);
}

/// Ended tracked connections wait in the flow table until they idle out; the offer skips them cheaply
/// (they are parked) yet offers one again when a new connection reuses its 5-tuple. The cost
/// of one offer over the table is printed (`KFLOWS_ENDED` sets how many ended connections).
#[test]
fn ended_connections_cost_the_offer_little_and_come_back_when_reused() {
    let ended: u16 = std::env::var("KFLOWS_ENDED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let mut sim = Sim::new(records(), false);
    let close = |sim: &mut Sim, sport: u16| {
        for s in [
            Step::Tcp(0, sport, 22, SYN, Mangle::None),
            Step::Tcp(1, 22, sport, SYNACK, Mangle::None),
            Step::Tcp(0, sport, 22, ACK, Mangle::None),
            Step::Tcp(0, sport, 22, FIN, Mangle::None),
            Step::Tcp(1, 22, sport, FIN, Mangle::None),
        ] {
            apply(sim, &s);
        }
    };
    for i in 0..ended {
        close(&mut sim, 10_000 + i);
    }
    for s in handshake() {
        apply(&mut sim, &s);
    }
    sim.fast = true;
    sim.sync();
    // zigi-vm2's host tracks the connections (zigi-vm1 has no groups: untracked, its host
    // offers every entry): there only the live connection, its egress and its ingress.
    assert_eq!(sim.installed(HOST2), 2);
    let calls = 200;
    let started = Instant::now();
    let mut offered = 0;
    for _ in 0..calls {
        offered += sim.hosts[1].engine.kernel_flows().count();
    }
    let per_call = started.elapsed() / calls;
    assert_eq!(offered, 2 * calls as usize);
    eprintln!("kernel_flows with {ended} ended connections: {per_call:?} a call");
    // A new connection on an ended one's 5-tuple goes to the kernel again.
    for s in [
        Step::Tcp(0, 10_000, 22, SYN, Mangle::None),
        Step::Tcp(1, 22, 10_000, SYNACK, Mangle::None),
        Step::Tcp(0, 10_000, 22, ACK, Mangle::None),
    ] {
        apply(&mut sim, &s);
    }
    assert_eq!(sim.installed(HOST2), 4);
    let got = sim.send(&VM1, &tcp(&VM1, &VM2, 10_000, 22, PSHACK));
    assert_eq!(got.len(), 1);
    let carried = sim.carried();
    let got = sim.send(&VM2, &tcp(&VM2, &VM1, 22, 10_000, ACK));
    assert_eq!(got.len(), 1);
    assert_eq!(sim.carried(), carried + 2);
    // Closed again, it leaves zigi-vm2's kernel; the other live connection stays.
    apply(&mut sim, &Step::Tcp(0, 10_000, 22, FIN, Mangle::None));
    assert_eq!(sim.installed(HOST2), 2);
}

/// What the incremental offer holds, as a set, against the full walk.
fn held_and_offered(h: &Host) -> (Vec<KernelFlow>, Vec<KernelFlow>) {
    let held: Vec<KernelFlow> = h.kernel.flows.keys().copied().collect();
    let mut full: Vec<KernelFlow> = h.engine.kernel_flows().collect();
    full.sort();
    (held, full)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// The incremental offer ([`Engine::poll_offers`]) applied change by change equals the
    /// full walk ([`Engine::kernel_flows`]) after any sequence of traffic, timeouts and policy
    /// changes, once a poll's sweep has looked at every remembered flow; with sweeps of 0-2
    /// per poll before that (changed flows alone, or nearly).
    #[test]
    fn the_incremental_offer_equals_the_full_walk_after_a_sweep(
        steps in proptest::collection::vec(step_strategy(), 1..120),
        sweep in 0usize..3,
        checks in proptest::collection::vec(0usize..120, 0..6),
    ) {
        let mut sim = Sim::new(records(), true);
        sim.sweep = sweep;
        let check = |sim: &mut Sim, at: usize| {
            for h in &mut sim.hosts {
                let all = h.engine.offer_log().remembered();
                sync_host(h, all);
                let (held, full) = held_and_offered(h);
                assert_eq!(held, full, "after step {at}, host {}", h.ip);
            }
        };
        for (i, step) in steps.iter().enumerate() {
            apply(&mut sim, step);
            if checks.contains(&i) {
                check(&mut sim, i);
            }
        }
        check(&mut sim, steps.len());
    }
}

/// A TCP connection established by the other direction's segment alone: the direction whose
/// last segment came before is offered with the segment that established the connection (its
/// connection's other flow), not only after a packet of its own.
#[test]
fn a_connection_established_by_one_direction_offers_both() {
    let mut sim = Sim::new(records(), true);
    sim.sweep = 0;
    for s in handshake() {
        apply(&mut sim, &s);
    }
    // zigi-vm2's host tracks the connection: its egress (the SYN+ACK's flow, last touched
    // before the ACK) and its ingress (the ACK's) are both held.
    let held: Vec<KernelHook> = sim.hosts[1].kernel.flows.keys().map(|k| k.hook).collect();
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(held.contains(&KernelHook::PortEgress(VM2.port)));
    // A RST from zigi-vm1 ends it: both directions leave that host's kernel at once.
    apply(&mut sim, &Step::Tcp(0, 40000, 22, RST, Mangle::None));
    assert_eq!(sim.installed(HOST2), 0);
}

/// 10,000 UDP flows offered by one host, nothing changing: the full walk and its difference
/// (the agent's sync until session 10) against an incremental poll with the agent's sweep.
/// Both costs are printed (`KFLOWS_HELD` sets the number of flows); what is asserted is that
/// the poll says nothing changed and the walk offers every flow.
#[test]
fn an_idle_poll_costs_the_sweep_not_the_flows() {
    use std::collections::BTreeSet;
    let n: u16 = std::env::var("KFLOWS_HELD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut sim = Sim::new(records(), false);
    for i in 0..n {
        apply(&mut sim, &Step::Udp(0, 10_000 + i, 53, Mangle::None));
    }
    sim.fast = true;
    sim.sync();
    assert_eq!(sim.installed(HOST1), usize::from(n));
    assert_eq!(sim.installed(HOST2), usize::from(n));
    let h = &mut sim.hosts[1];
    let calls = 20;
    let installed: BTreeSet<KernelFlow> = h.kernel.flows.keys().copied().collect();
    let started = Instant::now();
    for _ in 0..calls {
        let offered: BTreeSet<KernelFlow> = h.engine.kernel_flows().collect();
        assert_eq!(offered.difference(&installed).count(), 0);
        assert_eq!(installed.difference(&offered).count(), 0);
    }
    let walk = started.elapsed() / calls;
    let mut changes = Vec::new();
    let started = Instant::now();
    for _ in 0..calls {
        h.engine.poll_offers(256, &mut changes);
        assert!(changes.is_empty(), "{changes:?}");
    }
    let poll = started.elapsed() / calls;
    eprintln!("{n} offered flows: full walk and difference {walk:?}, incremental poll (sweep 256) {poll:?}");
}
