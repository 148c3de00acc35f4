//! The seed experiment, simulated in memory: two hosts (two engines) joined by an underlay
//! that carries their `Transmit`s, and six instances with a minimal IPv4 stack (a neighbour
//! cache that resolves by ARP, echo request/reply). Deterministic: no sockets, no clock.
//!
//! What the real seed experiment showed, checked here frame by frame: zigi-vm1's ARP for
//! zigi-vm2 is answered on host-1; the ICMP echo request crosses as VXLAN and is the first
//! frame zigi-vm2 ever sees; zigi-vm2's ARP for 10.0.0.148 is answered on host-2; the reply
//! returns; no ARP ever crosses the underlay; VPC 2, with the same addresses on the same
//! hosts, never sees a frame of VPC 1 (and the other way round).
//!
//! Time is virtual, as in quinn-proto's test `Pair`: the simulation keeps its own `now`, every
//! frame takes [`TAP_LATENCY`] to or from a port and [`UNDERLAY_LATENCY`] across the underlay,
//! events run in time order, and the engines' timers fire when the simulation moves its clock
//! past their `poll_timeout`. No test here reads or waits for the wall clock.

mod common;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::*;
use smoltcp::phy::ChecksumCapabilities;
use softvpc_engine::{DropReason, Engine, Event, Mac, Output, Path};
use softvpc_wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv4Repr,
    IpProtocol, Ipv4Packet, Ipv4Repr,
};

/// A minimal instance: one interface, a /24 (or the subnet's prefix), a default route via .1.
struct Instance {
    vm: Vm,
    prefix: u8,
    neighbours: HashMap<Ipv4Addr, Mac>,
    /// IPv4 packets waiting for their next hop to resolve.
    pending: Vec<(Ipv4Addr, Vec<u8>)>,
    /// Every frame the instance received, in order.
    rx: Vec<Vec<u8>>,
    /// (source, ident, seq) of every echo reply received.
    echo_replies: Vec<(Ipv4Addr, u16, u16)>,
}

impl Instance {
    fn new(vm: Vm) -> Self {
        Instance {
            vm,
            prefix: 24,
            neighbours: HashMap::new(),
            pending: Vec::new(),
            rx: Vec::new(),
            echo_replies: Vec::new(),
        }
    }

    fn gateway(&self) -> Ipv4Addr {
        let mask = u32::MAX << (32 - self.prefix);
        Ipv4Addr::from((u32::from(self.vm.ip) & mask) + 1)
    }

    fn next_hop(&self, dst: Ipv4Addr) -> Ipv4Addr {
        let mask = u32::MAX << (32 - self.prefix);
        if u32::from(dst) & mask == u32::from(self.vm.ip) & mask {
            dst
        } else {
            self.gateway()
        }
    }

    /// Sends an IPv4 packet: straight away if the next hop is known, else after ARP.
    fn send_ipv4(&mut self, dst: Ipv4Addr, proto: IpProtocol, payload: &[u8]) -> Vec<Vec<u8>> {
        let repr = Ipv4Repr {
            src_addr: self.vm.ip,
            dst_addr: dst,
            next_header: proto,
            payload_len: payload.len(),
            hop_limit: 64,
        };
        let mut packet = vec![0u8; repr.buffer_len() + payload.len()];
        let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
        repr.emit(&mut ip, &ChecksumCapabilities::default());
        ip.payload_mut().copy_from_slice(payload);
        let hop = self.next_hop(dst);
        match self.neighbours.get(&hop) {
            Some(&mac) => vec![ethernet(self.vm.mac, mac, EthernetProtocol::Ipv4, &packet)],
            None => {
                self.pending.push((hop, packet));
                vec![arp_request(&self.vm, hop)]
            }
        }
    }

    fn ping(&mut self, dst: Ipv4Addr, ident: u16, seq_no: u16) -> Vec<Vec<u8>> {
        let icmp = icmp_bytes(&Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data: b"seed experiment",
        });
        self.send_ipv4(dst, IpProtocol::Icmp, &icmp)
    }

    /// Takes a frame from the wire; returns what the instance sends in response.
    fn receive(&mut self, frame: Vec<u8>) -> Vec<Vec<u8>> {
        self.rx.push(frame.clone());
        let eth = EthernetFrame::new_checked(&frame[..]).expect("engine emitted a bad frame");
        assert!(
            eth.dst_addr().0 == self.vm.mac,
            "{} got a frame for {:?}",
            self.vm.name,
            eth.dst_addr()
        );
        match eth.ethertype() {
            EthernetProtocol::Arp => {
                let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
                let ArpRepr::EthernetIpv4 {
                    operation,
                    source_hardware_addr,
                    source_protocol_addr,
                    target_protocol_addr,
                    ..
                } = arp
                else {
                    unreachable!()
                };
                assert_eq!(
                    operation,
                    ArpOperation::Reply,
                    "only the proxy talks ARP here"
                );
                assert_eq!(target_protocol_addr, self.vm.ip);
                self.neighbours
                    .insert(source_protocol_addr, source_hardware_addr.0);
                let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
                    .into_iter()
                    .partition(|(hop, _)| *hop == source_protocol_addr);
                self.pending = waiting;
                ready
                    .into_iter()
                    .map(|(_, packet)| {
                        ethernet(
                            self.vm.mac,
                            source_hardware_addr.0,
                            EthernetProtocol::Ipv4,
                            &packet,
                        )
                    })
                    .collect()
            }
            EthernetProtocol::Ipv4 => {
                let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
                let repr = Ipv4Repr::parse(&ip, &ChecksumCapabilities::default())
                    .expect("valid IPv4 header");
                assert_eq!(repr.dst_addr, self.vm.ip);
                if repr.next_header != IpProtocol::Icmp {
                    return vec![];
                }
                let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
                match Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).unwrap() {
                    Icmpv4Repr::EchoRequest {
                        ident,
                        seq_no,
                        data,
                    } => {
                        let reply = icmp_bytes(&Icmpv4Repr::EchoReply {
                            ident,
                            seq_no,
                            data,
                        });
                        self.send_ipv4(repr.src_addr, IpProtocol::Icmp, &reply)
                    }
                    Icmpv4Repr::EchoReply { ident, seq_no, .. } => {
                        self.echo_replies.push((repr.src_addr, ident, seq_no));
                        vec![]
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            other => panic!("unexpected ethertype {other}"),
        }
    }
}

/// A frame's trip between an instance and its host's engine.
const TAP_LATENCY: Duration = Duration::from_micros(10);
/// A datagram's trip across the underlay.
const UNDERLAY_LATENCY: Duration = Duration::from_micros(50);

#[derive(Debug)]
enum Input {
    /// An instance sent a frame on its port.
    FromInstance(usize, Vec<u8>),
    /// A datagram on the underlay, from a host's address.
    Underlay(Ipv4Addr, SentTransmit),
}

/// Two hosts, their instances, and the underlay between them.
struct Sim {
    hosts: [(Ipv4Addr, Engine); 2],
    instances: Vec<Instance>,
    /// The virtual clock.
    now: Instant,
    /// Pending inputs by (arrival time, sequence number).
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    inputs: HashMap<usize, Input>,
    seq: u64,
    /// Every datagram that crossed the underlay, with its source host.
    underlay_log: Vec<(Ipv4Addr, SentTransmit)>,
    /// Events the engines reported, with their host and virtual time.
    events: Vec<(Ipv4Addr, Instant, Event)>,
    /// One output per engine, reused for every call (as the agent does).
    out: Output,
}

impl Sim {
    fn new() -> Self {
        let mut instances: Vec<_> = ALL_VMS.iter().map(|vm| Instance::new(*vm)).collect();
        // VPC 1 and 2 subnets are /24 in the seed.
        for i in &mut instances {
            i.prefix = 24;
        }
        Sim {
            hosts: [(HOST1, seed_engine(HOST1)), (HOST2, seed_engine(HOST2))],
            instances,
            now: t0(),
            queue: BinaryHeap::new(),
            inputs: HashMap::new(),
            seq: 0,
            underlay_log: Vec::new(),
            events: Vec::new(),
            out: Output::default(),
        }
    }

    fn idx(&self, vm: &Vm) -> usize {
        self.instances
            .iter()
            .position(|i| i.vm.eni == vm.eni)
            .unwrap()
    }

    fn instance(&self, vm: &Vm) -> &Instance {
        &self.instances[self.idx(vm)]
    }

    fn engine(&self, host: Ipv4Addr) -> &Engine {
        &self.hosts.iter().find(|(ip, _)| *ip == host).unwrap().1
    }

    /// Queues `input` to arrive `after` from now.
    fn schedule(&mut self, after: Duration, input: Input) {
        let id = self.seq as usize;
        self.inputs.insert(id, input);
        self.queue.push(Reverse((self.now + after, self.seq, id)));
        self.seq += 1;
    }

    /// An instance sends a frame: its host's engine sees it one TAP latency later.
    fn send(&mut self, i: usize, frame: Vec<u8>) {
        self.schedule(TAP_LATENCY, Input::FromInstance(i, frame));
    }

    fn ping(&mut self, from: &Vm, to: Ipv4Addr, seq: u16) {
        let i = self.idx(from);
        for frame in self.instances[i].ping(to, 0x5eed, seq) {
            self.send(i, frame);
        }
        self.run();
    }

    /// Delivers what an engine put out: frames to the instances on its ports (which answer at
    /// once), datagrams onto the underlay.
    fn deliver(&mut self, host: Ipv4Addr, sent: Sent) {
        for (port, frame) in sent.to_ports {
            let i = self
                .instances
                .iter()
                .position(|i| i.vm.host == host && i.vm.port == port)
                .expect("frame to a port no instance is on");
            for reply in self.instances[i].receive(frame) {
                // The frame reached the instance one TAP latency after the engine sent it.
                self.schedule(TAP_LATENCY * 2, Input::FromInstance(i, reply));
            }
        }
        for t in sent.to_underlay {
            assert_eq!(t.dst_port, 4789);
            self.underlay_log.push((host, t.clone()));
            self.schedule(UNDERLAY_LATENCY, Input::Underlay(host, t));
        }
    }

    /// Runs every pending input in time order, and the engines' timers as the clock passes
    /// them, until nothing is pending.
    fn run(&mut self) {
        let mut steps = 0;
        while let Some(Reverse((at, _, id))) = self.queue.pop() {
            steps += 1;
            assert!(steps < 1000, "simulation does not settle");
            self.advance_to(at);
            let input = self.inputs.remove(&id).expect("queued input");
            self.out.clear();
            let now = self.now;
            let host = match input {
                Input::FromInstance(i, frame) => {
                    let vm = self.instances[i].vm;
                    let engine = &mut self.hosts.iter_mut().find(|h| h.0 == vm.host).unwrap().1;
                    engine.handle_port_frames(now, vm.port, [&frame[..]], &mut self.out);
                    vm.host
                }
                Input::Underlay(src, t) => {
                    let (host, engine) = self
                        .hosts
                        .iter_mut()
                        .find(|h| h.0 == t.dst_ip)
                        .expect("transmit to an unknown host");
                    engine.handle_underlay_datagrams(now, [(src, &t.payload[..])], &mut self.out);
                    *host
                }
            };
            let sent = Sent::from(&self.out);
            self.deliver(host, sent);
        }
    }

    /// Moves the clock to `t`, firing every engine timer due on the way, at its deadline.
    fn advance_to(&mut self, t: Instant) {
        loop {
            let due = self
                .hosts
                .iter()
                .filter_map(|(ip, e)| e.poll_timeout().map(|d| (d, *ip)))
                .filter(|(d, _)| *d <= t)
                .min();
            let Some((deadline, host)) = due else { break };
            self.now = self.now.max(deadline);
            let engine = &mut self.hosts.iter_mut().find(|h| h.0 == host).unwrap().1;
            engine.handle_timeout(self.now);
            while let Some(event) = engine.poll_event() {
                self.events.push((host, self.now, event));
            }
        }
        self.now = self.now.max(t);
    }
}

fn is_arp(frame: &[u8]) -> bool {
    EthernetFrame::new_checked(frame).map(|f| f.ethertype()) == Ok(EthernetProtocol::Arp)
}

fn is_echo_request(frame: &[u8]) -> bool {
    !is_arp(frame) && parse_icmp_echo(frame).0 == "request"
}

#[test]
fn seed_experiment_vm1_pings_vm2() {
    let mut sim = Sim::new();
    sim.ping(&VM1, VM2.ip, 1);

    // The ping came back.
    assert_eq!(sim.instance(&VM1).echo_replies, vec![(VM2.ip, 0x5eed, 1)]);

    // zigi-vm1 learnt zigi-vm2's MAC from host-1's proxy, and zigi-vm2 learnt zigi-vm1's from
    // host-2's: each host answered exactly one ARP request, for its own instance.
    assert_eq!(sim.instance(&VM1).neighbours.get(&VM2.ip), Some(&VM2.mac));
    assert_eq!(sim.instance(&VM2).neighbours.get(&VM1.ip), Some(&VM1.mac));
    assert_eq!(sim.engine(HOST1).counters().frames(Path::ArpReplies), 1);
    assert_eq!(sim.engine(HOST2).counters().frames(Path::ArpReplies), 1);

    // What zigi-vm2 saw, in order: the echo request first (before any ARP), then the answer
    // to its own ARP request. zigi-vm1's ARP request never reached it.
    let rx = &sim.instance(&VM2).rx;
    assert_eq!(rx.len(), 2, "zigi-vm2 saw {rx:?}");
    assert!(
        is_echo_request(&rx[0]),
        "first frame at zigi-vm2 must be the echo request"
    );
    assert_eq!(parse_ipv4(&rx[0]).src_addr, VM1.ip);
    assert_eq!(
        parse_arp(&rx[1]),
        (ArpOperation::Reply, VM1.mac, VM1.ip, VM2.mac, VM2.ip)
    );

    // The underlay carried exactly the request and the reply, as VXLAN in VPC 1's VNI.
    let log = &sim.underlay_log;
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].0, log[0].1.dst_ip), (HOST1, HOST2));
    assert_eq!((log[1].0, log[1].1.dst_ip), (HOST2, HOST1));
    for (_, t) in log {
        assert_eq!(vxlan_header(&t.payload).1, VNI1.0);
        assert!(!is_arp(&t.payload[8..]), "ARP crossed the underlay");
    }
    for (_, e) in &sim.hosts {
        assert_eq!(e.counters().total_drops(), 0);
    }
}

#[test]
fn every_path_of_the_seed_topology() {
    let mut sim = Sim::new();
    // Same host, same subnet.
    sim.ping(&VM1, VM4.ip, 1);
    // Across subnets through the router, cross-host.
    sim.ping(&VM1, VM3.ip, 2);
    // Across subnets, same host (host-2).
    sim.ping(&VM3, VM2.ip, 3);
    // The router addresses.
    sim.ping(&VM1, Ipv4Addr::new(10, 0, 0, 1), 4);
    sim.ping(&VM3, Ipv4Addr::new(10, 0, 1, 1), 5);

    assert_eq!(
        sim.instance(&VM1).echo_replies,
        vec![
            (VM4.ip, 0x5eed, 1),
            (VM3.ip, 0x5eed, 2),
            (Ipv4Addr::new(10, 0, 0, 1), 0x5eed, 4)
        ]
    );
    assert_eq!(
        sim.instance(&VM3).echo_replies,
        vec![(VM2.ip, 0x5eed, 3), (Ipv4Addr::new(10, 0, 1, 1), 0x5eed, 5)]
    );
    // Cross-subnet frames arrive from the router's MAC, with the TTL decremented once.
    let at_vm3: Vec<_> = sim
        .instance(&VM3)
        .rx
        .iter()
        .filter(|f| is_echo_request(f))
        .collect();
    assert_eq!(parse_eth(at_vm3[0]).src_addr.0, ROUTER1);
    assert_eq!(parse_ipv4(at_vm3[0]).hop_limit, 63);
    // Only the vm1 <-> vm3 exchange crossed the underlay; everything else stayed on its host.
    assert_eq!(sim.underlay_log.len(), 2);
    for (_, e) in &sim.hosts {
        assert_eq!(e.counters().total_drops(), 0);
    }
}

#[test]
fn vpc2_with_the_same_addresses_stays_isolated() {
    let mut sim = Sim::new();
    sim.ping(&VM1, VM2.ip, 1);
    sim.ping(&OTHER1, OTHER2.ip, 2);
    sim.ping(&OTHER2, OTHER1.ip, 3);
    sim.ping(&VM2, VM1.ip, 4);

    assert_eq!(sim.instance(&VM1).echo_replies, vec![(VM2.ip, 0x5eed, 1)]);
    assert_eq!(
        sim.instance(&OTHER1).echo_replies,
        vec![(OTHER2.ip, 0x5eed, 2)]
    );
    assert_eq!(
        sim.instance(&OTHER2).echo_replies,
        vec![(OTHER1.ip, 0x5eed, 3)]
    );
    assert_eq!(sim.instance(&VM2).echo_replies, vec![(VM1.ip, 0x5eed, 4)]);

    // Every frame an instance received came from its own VPC (an ENI of it or its router).
    for inst in &sim.instances {
        let vpc_macs: Vec<Mac> = ALL_VMS
            .iter()
            .filter(|vm| vm.vni == inst.vm.vni)
            .map(|vm| vm.mac)
            .chain([if inst.vm.vni == VNI1 {
                ROUTER1
            } else {
                ROUTER2
            }])
            .collect();
        for frame in &inst.rx {
            let src = parse_eth(frame).src_addr.0;
            assert!(
                vpc_macs.contains(&src),
                "{} got a frame from {src:02x?}",
                inst.vm.name
            );
        }
    }
    // Every datagram carried the VNI of the VPC its inner frame belongs to.
    for (_, t) in &sim.underlay_log {
        let (_, vni) = vxlan_header(&t.payload);
        let src = parse_eth(&t.payload[8..]).src_addr.0;
        let owner = ALL_VMS.iter().find(|vm| vm.mac == src).unwrap();
        assert_eq!(vni, owner.vni.0);
    }
    assert_eq!(sim.underlay_log.len(), 8);
}

#[test]
fn a_spoofing_instance_reaches_nobody() {
    let mut sim = Sim::new();
    // zigi-vm4 pretends to be zigi-vm1 (its IP) and then other-vm1 (its MAC).
    let i4 = sim.idx(&VM4);
    let forged_ip = echo_request(VM4.mac, VM2.mac, VM1.ip, VM2.ip, 64, 1, 1, b"x");
    let forged_mac = echo_request(OTHER1.mac, VM2.mac, VM4.ip, VM2.ip, 64, 1, 1, b"x");
    sim.send(i4, forged_ip);
    sim.send(i4, forged_mac);
    sim.run();
    assert!(sim.underlay_log.is_empty());
    assert!(sim.instances.iter().all(|i| i.rx.is_empty()));
    assert_eq!(
        sim.engine(HOST1)
            .counters()
            .drops(DropReason::SpoofedSource),
        2
    );
}

/// zigi-vm4 forges zigi-vm1's address.
fn forged() -> Vec<u8> {
    echo_request(VM4.mac, VM2.mac, VM1.ip, VM2.ip, 64, 1, 1, b"x")
}

/// A simulation in which zigi-vm4 sent two forged frames at the start, then the clock moved
/// to `until`.
fn sim_after_drops(until: Instant) -> Sim {
    let mut sim = Sim::new();
    let i4 = sim.idx(&VM4);
    sim.send(i4, forged());
    sim.send(i4, forged());
    sim.run();
    sim.advance_to(until);
    sim
}

#[test]
fn drops_are_reported_once_per_interval_in_virtual_time() {
    let mut sim = sim_after_drops(t0());
    let i4 = sim.idx(&VM4);
    let forged = forged();
    let first_drop = t0() + TAP_LATENCY;
    let deadline = first_drop + Duration::from_secs(10);
    assert_eq!(sim.engine(HOST1).poll_timeout(), Some(deadline));
    assert_eq!(
        sim.engine(HOST2).poll_timeout(),
        None,
        "host-2 dropped nothing"
    );

    // Nothing before the deadline, however close.
    sim.advance_to(deadline - Duration::from_nanos(1));
    assert!(sim.events.is_empty());
    assert_eq!(sim.now, deadline - Duration::from_nanos(1));
    // Traffic in between is not affected, and a third drop joins the open interval (the ping
    // takes virtual time: start it well before the deadline).
    let mut sim = sim_after_drops(deadline - Duration::from_secs(1));
    sim.ping(&VM1, VM2.ip, 1);
    assert_eq!(sim.instance(&VM1).echo_replies.len(), 1);
    sim.send(i4, forged);
    sim.run();
    assert!(sim.events.is_empty());
    assert!(sim.now < deadline);

    // At the deadline: one report, made at exactly that virtual time.
    sim.advance_to(deadline + Duration::from_secs(5));
    assert_eq!(sim.events.len(), 1, "{:?}", sim.events);
    let (host, when, Event::Drops(report)) = &sim.events[0];
    assert_eq!((*host, *when), (HOST1, deadline));
    assert_eq!((report.since, report.until), (first_drop, deadline));
    assert_eq!(report.drops, vec![(DropReason::SpoofedSource, 3)]);
    assert_eq!(report.sample.reason, DropReason::SpoofedSource);
    assert_eq!(report.sample.port, Some(VM4.port));
    assert!(
        report.sample.packet.contains("src=10.0.0.148"),
        "{}",
        report.sample.packet
    );
    // The interval is closed: no drop-report timer until the next drop (what remains is the
    // expiry of the flows the ping made, later).
    assert!(sim
        .engine(HOST1)
        .poll_timeout()
        .is_none_or(|t| t > deadline + Duration::from_secs(5)));
    // The engine knows only the times it was given: the last was the timer's.
    assert_eq!(sim.engine(HOST1).now(), Some(deadline));
}

#[test]
fn the_engine_keeps_the_latest_now_and_time_never_goes_back() {
    let mut e = seed_engine(HOST1);
    assert_eq!(e.now(), None);
    let mut out = Output::default();
    e.handle_port_frames(at_ms(500), VM1.port, [&[0u8; 3][..]], &mut out);
    assert_eq!(e.now(), Some(at_ms(500)));
    // An older `now` (a shell that read its clock before another thread's batch) is not a
    // step back: the drop interval it opened stays where it was.
    e.handle_port_frames(at_ms(100), VM1.port, [&[0u8; 3][..]], &mut out);
    assert_eq!(e.now(), Some(at_ms(500)));
    assert_eq!(e.poll_timeout(), Some(at_ms(10_500)));
    e.handle_timeout(at_ms(10_499));
    assert!(e.poll_event().is_none());
    e.handle_timeout(at_ms(10_500));
    match e.poll_event() {
        Some(Event::Drops(r)) => assert_eq!(r.drops, vec![(DropReason::Malformed, 2)]),
        other => panic!("{other:?}"),
    }
    assert!(e.poll_event().is_none());
}
