//! Property tests: whatever bytes arrive, the engine never panics, and every input is accounted
//! for exactly once (`inputs == outputs + drops + absorbed`). Mutated valid frames reach deeper
//! than random bytes; for them, outputs must also respect the isolation and overlay rules.

mod common;

use std::net::Ipv4Addr;

use common::*;
use proptest::prelude::*;
use softvpc_engine::{Engine, LayerDecision, Output, Path, PortId, TraceVerdict};
use softvpc_wire::{EthernetFrame, EthernetProtocol, VXLAN_FLAG_I};

const PORTS: [PortId; 4] = [VM1.port, VM4.port, OTHER1.port, PortId(99)];
const SOURCES: [Ipv4Addr; 3] = [HOST1, HOST2, Ipv4Addr::new(198, 18, 0, 99)];

/// inputs == outputs + drops + absorbed, and the input counter saw them all.
fn assert_balanced(e: &Engine, input_path: Path, inputs: usize, out: &Output) {
    let out = Sent::from(out);
    let c = e.counters();
    assert_eq!(c.frames(input_path), inputs as u64);
    let outputs = (out.to_ports.len() + out.to_underlay.len()) as u64;
    assert_eq!(
        inputs as u64,
        outputs + c.total_drops() + c.frames(Path::ArpAbsorbed) + c.frames(Path::DhcpAbsorbed),
        "unbalanced: {c:?}"
    );
}

/// Egress outputs from `sender` respect the rules: frames only to local ports of the sender's
/// VPC, datagrams only to host-2 in the sender's VNI, never ARP or broadcast on the underlay.
fn assert_egress_rules(sender: &Vm, out: &Output) {
    let out = Sent::from(out);
    for (port, frame) in &out.to_ports {
        let vm = ALL_VMS
            .iter()
            .find(|vm| vm.host == HOST1 && vm.port == *port)
            .expect("frame to a port that is not a local ENI");
        assert_eq!(vm.vni, sender.vni, "frame crossed VPCs");
        let eth = EthernetFrame::new_checked(&frame[..]).expect("valid Ethernet out");
        // A broadcast frame only as the router's DHCP answer to the sender itself.
        assert!(
            eth.dst_addr().0 == vm.mac || (eth.dst_addr().is_broadcast() && vm.port == sender.port),
            "delivered to a MAC not the port's"
        );
    }
    for t in &out.to_underlay {
        assert_eq!((t.dst_ip, t.dst_port), (HOST2, 4789));
        assert!(t.src_port >= 49152);
        assert_eq!(vxlan_header(&t.payload), (VXLAN_FLAG_I, sender.vni.0));
        let eth = EthernetFrame::new_checked(&t.payload[8..]).expect("valid inner Ethernet");
        assert_eq!(eth.ethertype(), EthernetProtocol::Ipv4);
        assert!(eth.dst_addr().is_unicast());
        let src = eth.src_addr().0;
        assert!(src == sender.mac || src == softvpc_engine::router_mac(sender.vni));
    }
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

/// Valid frames from the local ENIs of host-1, to be mutated.
fn valid_egress() -> Vec<(Vm, Vec<u8>)> {
    let r1 = Ipv4Addr::new(10, 0, 0, 1);
    vec![
        (VM1, arp_request(&VM1, VM2.ip)),
        (VM1, arp_request(&VM1, r1)),
        (
            VM1,
            echo_request(VM1.mac, ROUTER1, VM1.ip, r1, 64, 1, 1, b"ping"),
        ),
        (
            VM1,
            echo_request(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 64, 1, 1, b"ping"),
        ),
        (VM1, udp(VM1.mac, ROUTER1, VM1.ip, VM3.ip, 1, 2, b"routed")),
        (VM1, dhcp_discover(&VM1)),
        (VM4, udp(VM4.mac, VM1.mac, VM4.ip, VM1.ip, 1, 2, b"local")),
        (
            OTHER1,
            udp(OTHER1.mac, OTHER2.mac, OTHER1.ip, OTHER2.ip, 1, 2, b"vpc2"),
        ),
        (
            OTHER1,
            udp(
                OTHER1.mac,
                ROUTER2,
                OTHER1.ip,
                OTHER2.ip,
                1,
                2,
                b"vpc2 routed",
            ),
        ),
    ]
}

/// Valid datagrams arriving at host-2, to be mutated.
fn valid_ingress() -> Vec<Vec<u8>> {
    vec![
        vxlan(VNI1.0, &udp(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 1, 2, b"a")),
        vxlan(VNI1.0, &udp(ROUTER1, VM3.mac, VM1.ip, VM3.ip, 1, 2, b"b")),
        vxlan(
            VNI2.0,
            &udp(OTHER1.mac, OTHER2.mac, OTHER1.ip, OTHER2.ip, 1, 2, b"c"),
        ),
    ]
}

/// A mutation: byte flips at positions (taken modulo the length), then an optional truncation.
fn mutation() -> impl Strategy<Value = (Vec<(usize, u8)>, Option<usize>)> {
    (
        prop::collection::vec((any::<usize>(), 1u8..=255), 0..4),
        prop::option::of(any::<usize>()),
    )
}

fn mutate(mut frame: Vec<u8>, (flips, cut): &(Vec<(usize, u8)>, Option<usize>)) -> Vec<u8> {
    for &(pos, x) in flips {
        let len = frame.len();
        frame[pos % len] ^= x;
    }
    if let Some(cut) = cut {
        frame.truncate(cut % (frame.len() + 1));
    }
    frame
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The flow-key extraction's invariants (the fuzz target `engine_flow_key`'s body) on
    /// random bytes and on mutated valid frames (fragments, ICMP errors and cut headers among
    /// them).
    #[test]
    fn flow_keys_are_consistent(
        bytes in prop::collection::vec(any::<u8>(), 0..96),
        pick in 0usize..8,
        m in mutation(),
        frag in any::<u16>(),
    ) {
        softvpc_engine::flow::check_flow_key(&bytes);
        let (_, frame) = valid_egress()[pick].clone();
        softvpc_engine::flow::check_flow_key(&mutate(frame.clone(), &m));
        // The same frame as a fragment: flags/offset set, header checksum made right again.
        let mut f = frame;
        if f.len() >= 34 && f[12..14] == [8, 0] {
            f[20..22].copy_from_slice(&frag.to_be_bytes());
            softvpc_wire::Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
            softvpc_engine::flow::check_flow_key(&f);
        }
    }

    #[test]
    fn arbitrary_port_frames_are_accounted(
        port in prop::sample::select(&PORTS[..]),
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..128), 0..16),
    ) {
        let mut e = seed_engine(HOST1);
        let mut out = Output::default();
        e.handle_port_frames(t0(), port, frames.iter().map(|f| &f[..]), &mut out);
        assert_balanced(&e, Path::PortRx, frames.len(), &out);
    }

    #[test]
    fn arbitrary_datagrams_are_accounted(
        datagrams in prop::collection::vec(
            (prop::sample::select(&SOURCES[..]), prop::collection::vec(any::<u8>(), 0..128)),
            0..16,
        ),
    ) {
        let mut e = seed_engine(HOST2);
        let mut out = Output::default();
        e.handle_underlay_datagrams(
            t0(),
            datagrams.iter().map(|(src, d)| (*src, &d[..])),
            &mut out,
        );
        assert_balanced(&e, Path::UnderlayRx, datagrams.len(), &out);
    }

    #[test]
    fn mutated_egress_frames_follow_the_rules(
        picks in prop::collection::vec((0usize..8, mutation()), 1..8),
    ) {
        let valid = valid_egress();
        for (pick, m) in &picks {
            let (vm, frame) = &valid[pick % valid.len()];
            let frame = mutate(frame.clone(), m);
            let mut e = seed_engine(HOST1);
            let mut out = Output::default();
            e.handle_port_frames(t0(), vm.port, [&frame[..]], &mut out);
            assert_balanced(&e, Path::PortRx, 1, &out);
            assert_egress_rules(vm, &out);
        }
    }

    #[test]
    fn mutated_datagrams_only_reach_their_enis(
        picks in prop::collection::vec((0usize..3, mutation()), 1..8),
    ) {
        let valid = valid_ingress();
        for (pick, m) in &picks {
            let dgram = mutate(valid[pick % valid.len()].clone(), m);
            let mut e = seed_engine(HOST2);
            let mut out = Output::default();
            e.handle_underlay_datagrams(t0(), [(HOST1, &dgram[..])], &mut out);
            assert_balanced(&e, Path::UnderlayRx, 1, &out);
            let out = Sent::from(&out);
            assert!(out.to_underlay.is_empty());
            for (port, frame) in &out.to_ports {
                let vm = ALL_VMS
                    .iter()
                    .find(|vm| vm.host == HOST2 && vm.port == *port)
                    .expect("delivered to a port that is not a local ENI");
                // The VNI that carried it is the VPC of the ENI that got it.
                assert_eq!(vxlan_header(&dgram).1, vm.vni.0);
                prop_assert_eq!(&frame[..6], &vm.mac[..]);
                prop_assert_eq!(&frame[..], &dgram[8..]);
            }
        }
    }

    /// A trace runs the same code as the data path: for mutated valid frames and datagrams, the
    /// trace's verdict and output are what handling the input does, and its last layer decided
    /// the drop the counters show.
    #[test]
    fn traces_agree_with_the_data_path(
        picks in prop::collection::vec((0usize..11, mutation()), 1..8),
    ) {
        let egress_inputs = valid_egress();
        let ingress_inputs = valid_ingress();
        for (pick, m) in &picks {
            let mut e;
            let mut handled = Output::default();
            let mut traced = Output::default();
            let trace = if *pick < egress_inputs.len() {
                let (vm, frame) = &egress_inputs[*pick];
                let frame = mutate(frame.clone(), m);
                e = seed_engine(HOST1);
                let trace = e.trace_port_frame(vm.port, &frame, &mut traced);
                prop_assert_eq!(e.counters().frames(Path::PortRx), 0, "a trace counted");
                e.handle_port_frames(t0(), vm.port, [&frame[..]], &mut handled);
                trace
            } else {
                let dgram = mutate(ingress_inputs[pick % ingress_inputs.len()].clone(), m);
                e = seed_engine(HOST2);
                let trace = e.trace_underlay_datagram(HOST1, &dgram, &mut traced);
                e.handle_underlay_datagrams(t0(), [(HOST1, &dgram[..])], &mut handled);
                trace
            };
            prop_assert_eq!(&traced, &handled);
            let c = e.counters();
            match trace.verdict {
                TraceVerdict::Drop(reason) => {
                    prop_assert_eq!(c.drops(reason), 1);
                    prop_assert!(handled.is_empty());
                    if let Some((_, decision)) = trace.layers.last() {
                        // A drop before any layer (unparsable frame, unknown port) has none.
                        prop_assert_eq!(*decision, LayerDecision::Drop(reason));
                    }
                }
                TraceVerdict::Absorb(path) => {
                    prop_assert_eq!(c.frames(path), 1);
                    prop_assert!(handled.is_empty());
                }
                TraceVerdict::ToUnderlay(host) => {
                    prop_assert_eq!(handled.transmits().next().map(|t| t.dst_ip), Some(host));
                }
                TraceVerdict::ToPort(port) | TraceVerdict::Reply(port) => {
                    prop_assert_eq!(handled.to_ports().next().map(|(p, _)| p), Some(port));
                }
            }
            prop_assert_eq!(c.total_drops() > 0, matches!(trace.verdict, TraceVerdict::Drop(_)));
        }
    }
}
