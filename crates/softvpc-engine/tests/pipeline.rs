//! The pipeline's shape: which layers a packet visits, in which order, on each side, and that
//! a layer's drop ends the walk there. Checked through `Engine::trace_*`, which runs the data
//! path's code (the proptests check that traces and the data path agree).

mod common;

use std::net::Ipv4Addr;

use common::*;
use softvpc_engine::layers::{EGRESS, INGRESS};
use softvpc_engine::{Direction, DropReason, LayerDecision, LayerId, Output, Path, TraceVerdict};

use LayerDecision::{Drop, Pass};
use LayerId::*;

#[test]
fn ingress_is_egress_reversed_and_both_hold_every_layer_once() {
    // The security group sits at the ENI, the ACL at the subnet's edge.
    assert_eq!(EGRESS, [Gateway, SecurityGroup, Nacl, Route, Nat, Overlay]);
    let mut reversed = EGRESS;
    reversed.reverse();
    assert_eq!(INGRESS, reversed);
}

#[test]
fn a_forwarded_frame_visits_every_egress_layer_in_order() {
    let e = seed_engine(HOST1);
    let frame = udp(VM1.mac, ROUTER1, VM1.ip, VM3.ip, 1000, 53, b"routed");
    let mut out = Output::default();
    let trace = e.trace_port_frame(VM1.port, &frame, &mut out);
    assert_eq!(trace.direction, Direction::Egress);
    assert_eq!(trace.layers, EGRESS.map(|l| (l, Pass)).to_vec());
    assert_eq!(trace.verdict, TraceVerdict::ToUnderlay(HOST2));
    // The trace wrote what the data path would send (routed: MACs rewritten), and counted
    // nothing.
    let sent = Sent::from(&out);
    assert_eq!(sent.to_underlay.len(), 1);
    assert_eq!(
        parse_eth(&sent.to_underlay[0].payload[8..]).src_addr.0,
        ROUTER1
    );
    assert_eq!(e.counters().frames(Path::PortRx), 0);
}

#[test]
fn a_local_frame_ends_at_the_overlay_without_encapsulation() {
    let e = seed_engine(HOST1);
    let frame = udp(VM1.mac, VM4.mac, VM1.ip, VM4.ip, 1, 2, b"local");
    let trace = e.trace_port_frame(VM1.port, &frame, &mut Output::default());
    // The egress layers, then the receiver's side in the same pass: its ACL and its groups.
    let mut expected = EGRESS.map(|l| (l, Pass)).to_vec();
    expected.extend([(Nacl, Pass), (SecurityGroup, Pass)]);
    assert_eq!(trace.layers, expected);
    assert_eq!(trace.verdict, TraceVerdict::ToPort(VM4.port));
}

#[test]
fn the_gateway_answers_and_ends_the_walk() {
    let e = seed_engine(HOST1);
    let trace = e.trace_port_frame(VM1.port, &arp_request(&VM1, VM2.ip), &mut Output::default());
    assert_eq!(trace.layers, vec![(Gateway, LayerDecision::Reply)]);
    assert_eq!(trace.verdict, TraceVerdict::Reply(VM1.port));

    let gratuitous = arp_request(&VM1, VM1.ip);
    let trace = e.trace_port_frame(VM1.port, &gratuitous, &mut Output::default());
    assert_eq!(
        trace.layers,
        vec![(Gateway, LayerDecision::Absorb(Path::ArpAbsorbed))]
    );
}

#[test]
fn a_drop_ends_the_walk_at_the_layer_that_dropped() {
    let e = seed_engine(HOST1);
    // Spoofed source: the gateway, first.
    let spoofed = udp(VM1.mac, VM2.mac, VM4.ip, VM2.ip, 1, 2, b"x");
    let trace = e.trace_port_frame(VM1.port, &spoofed, &mut Output::default());
    assert_eq!(
        trace.layers,
        vec![(Gateway, Drop(DropReason::SpoofedSource))]
    );
    // Unknown destination: the ACL and security group layers passed it, the route dropped it,
    // NAT and overlay never saw it.
    let nowhere = udp(
        VM1.mac,
        ROUTER1,
        VM1.ip,
        Ipv4Addr::new(10, 0, 9, 9),
        1,
        2,
        b"x",
    );
    let trace = e.trace_port_frame(VM1.port, &nowhere, &mut Output::default());
    assert_eq!(
        trace.layers,
        vec![
            (Gateway, Pass),
            (SecurityGroup, Pass),
            (Nacl, Pass),
            (Route, Drop(DropReason::NoRoute)),
        ]
    );
    assert_eq!(trace.verdict, TraceVerdict::Drop(DropReason::NoRoute));
    // Before any layer: a frame too short to parse, or from a port with no ENI.
    let trace = e.trace_port_frame(VM1.port, &[0u8; 5], &mut Output::default());
    assert_eq!(
        (trace.layers.len(), trace.verdict),
        (0, TraceVerdict::Drop(DropReason::Malformed))
    );
    assert_eq!(e.counters().total_drops(), 0, "traces count nothing");
}

#[test]
fn a_datagram_visits_every_ingress_layer_in_order() {
    let e = seed_engine(HOST2);
    let inner = udp(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 1, 2, b"in");
    let trace = e.trace_underlay_datagram(HOST1, &vxlan(VNI1.0, &inner), &mut Output::default());
    assert_eq!(trace.direction, Direction::Ingress);
    assert_eq!(trace.layers, INGRESS.map(|l| (l, Pass)).to_vec());
    assert_eq!(trace.verdict, TraceVerdict::ToPort(VM2.port));

    // The overlay refuses an unknown VNI before anything else sees it.
    let trace = e.trace_underlay_datagram(HOST1, &vxlan(0xbeef, &inner), &mut Output::default());
    assert_eq!(
        trace.layers,
        vec![(Overlay, Drop(DropReason::VxlanUnknownVni))]
    );
    // A frame for an ENI on another host: overlay and NAT pass, the route refuses.
    let elsewhere = udp(VM2.mac, VM1.mac, VM2.ip, VM1.ip, 1, 2, b"x");
    let trace =
        e.trace_underlay_datagram(HOST1, &vxlan(VNI1.0, &elsewhere), &mut Output::default());
    assert_eq!(
        trace.layers,
        vec![
            (Overlay, Pass),
            (Nat, Pass),
            (Route, Drop(DropReason::VxlanNotLocal)),
        ]
    );
}
