//! The pipeline runner: one parse per frame, then the layers in [`EGRESS`] or [`INGRESS`]
//! order, ending in an `Outcome` the engine writes out (or a drop).
//!
//! The runner is generic over a `Recorder`, so the same code serves the data path (recording
//! nothing, compiled away) and [`Engine::trace_port_frame`](crate::Engine::trace_port_frame) /
//! [`Engine::trace_underlay_datagram`](crate::Engine::trace_underlay_datagram), which report
//! each layer's decision: a trace can never disagree with what the engine does.

use std::net::Ipv4Addr;

use softvpc_wire::FrameMeta;

use crate::counters::Path;
use crate::layers::{
    self, overlay, Ctx, Direction, Encap, LayerId, LayerResult, Packet, Reply, Rewrite, Step,
    EGRESS, INGRESS,
};
use crate::mapping::{Location, Vni};
use crate::{DropReason, PortId};

/// How a packet left the pipeline (a drop is the `Err` beside it).
#[derive(Debug)]
pub(crate) enum Outcome<'a> {
    /// Through every layer: deliver or encapsulate as the layers decided.
    Forward(Forward<'a>),
    /// A layer answered.
    Reply(PortId, Reply<'a>),
    /// A layer consumed it on purpose.
    Absorb(Path),
}

/// Where a forwarded frame goes, composed from what the layers decided: all the last step
/// needs, and small (the packet's parse stays behind). A flow table (issue 10) caches this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forward<'a> {
    /// The frame to send (on ingress, the inner frame).
    pub frame: &'a [u8],
    /// The VPC.
    pub vni: Vni,
    /// A routed frame's rewrite.
    pub rewrite: Option<Rewrite>,
    /// Where it goes.
    pub to: Destination,
}

/// The destination of a forwarded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// A local instance sent it to another local port.
    LocalPort(PortId),
    /// Decapsulated for a local port.
    DecapPort(PortId),
    /// Encapsulated to another host.
    Underlay(Encap),
}

impl<'a> Forward<'a> {
    /// The composed result of a packet that passed every layer.
    #[inline]
    fn of(pkt: &Packet<'a, '_>) -> Result<Forward<'a>, DropReason> {
        let target = pkt.target.ok_or(DropReason::NoRoute)?;
        let to = match (pkt.direction, pkt.encap, target.location) {
            (Direction::Egress, Some(encap), _) => Destination::Underlay(encap),
            (Direction::Egress, None, Location::Local(port)) => Destination::LocalPort(port),
            (Direction::Ingress, _, Location::Local(port)) => Destination::DecapPort(port),
            // A remote target without an encapsulation: the layers never decide this.
            (_, _, Location::Remote(_)) => return Err(DropReason::NoRoute),
        };
        Ok(Forward {
            frame: pkt.meta.frame(),
            vni: pkt.vni,
            rewrite: pkt.rewrite,
            to,
        })
    }
}

/// Sees each layer's decision.
pub(crate) trait Recorder {
    /// Layer `id` decided `result`.
    fn layer(&mut self, id: LayerId, result: &LayerResult);
}

/// The data path's recorder: nothing.
impl Recorder for () {
    #[inline(always)]
    fn layer(&mut self, _id: LayerId, _result: &LayerResult) {}
}

/// What one layer did with a traced packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerDecision {
    /// Passed it on.
    Pass,
    /// Answered it (ARP, ICMP echo).
    Reply,
    /// Consumed it on purpose, counted under the path.
    Absorb(Path),
    /// Dropped it.
    Drop(DropReason),
}

/// How a traced packet ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceVerdict {
    /// Written to a local port.
    ToPort(PortId),
    /// Encapsulated to another host's underlay address.
    ToUnderlay(Ipv4Addr),
    /// Answered to the sender's port.
    Reply(PortId),
    /// Consumed on purpose.
    Absorb(Path),
    /// Dropped.
    Drop(DropReason),
}

/// A packet's way through the pipeline: each layer visited, in order, with its decision, and
/// the end. Produced by the engine's `trace_*` methods (the same code as the data path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// Egress or ingress.
    pub direction: Direction,
    /// The layers the packet reached, in order, and what each did.
    pub layers: Vec<(LayerId, LayerDecision)>,
    /// How it ended.
    pub verdict: TraceVerdict,
}

impl Recorder for Vec<(LayerId, LayerDecision)> {
    fn layer(&mut self, id: LayerId, result: &LayerResult) {
        let decision = match result {
            Ok(Step::Next) => LayerDecision::Pass,
            Ok(Step::Reply) => LayerDecision::Reply,
            Ok(Step::Absorb(path)) => LayerDecision::Absorb(*path),
            Err(reason) => LayerDecision::Drop(*reason),
        };
        self.push((id, decision));
    }
}

/// Runs the layers of `order` (a const array of six) on `pkt`, returning from the enclosing
/// function when one ends the walk. Unrolled, so each layer's dispatch is resolved at compile
/// time; the order is still the array's.
macro_rules! walk {
    ($run:path, $order:ident, $cx:ident, $pkt:ident, $rec:ident) => {
        walk!(@one $run, $order[0], $cx, $pkt, $rec);
        walk!(@one $run, $order[1], $cx, $pkt, $rec);
        walk!(@one $run, $order[2], $cx, $pkt, $rec);
        walk!(@one $run, $order[3], $cx, $pkt, $rec);
        walk!(@one $run, $order[4], $cx, $pkt, $rec);
        walk!(@one $run, $order[5], $cx, $pkt, $rec);
    };
    (@one $run:path, $id:expr, $cx:ident, $pkt:ident, $rec:ident) => {{
        let id: LayerId = $id;
        let result = $run(id, $cx, &mut $pkt);
        $rec.layer(id, &result);
        if let Some(end) = end_of(result?, &mut $pkt) {
            return end;
        }
    }};
}

// `walk!` covers exactly six layers.
const _: () = assert!(EGRESS.len() == 6 && INGRESS.len() == 6);

/// The egress pipeline for one frame an instance sent on `port`.
#[inline]
pub(crate) fn egress<'a, 't, R: Recorder>(
    cx: Ctx<'t>,
    port: PortId,
    frame: &'a [u8],
    rec: &mut R,
) -> Result<Outcome<'a>, DropReason> {
    let meta = FrameMeta::parse(frame).map_err(|_| DropReason::Malformed)?;
    let eni = cx.table.eni_on_port(port).ok_or(DropReason::UnknownPort)?;
    let mut pkt = Packet {
        direction: Direction::Egress,
        meta,
        vni: eni.vni,
        sender: Some((port, eni)),
        underlay_src: None,
        target: None,
        rewrite: None,
        encap: None,
        reply: None,
    };
    walk!(layers::egress, EGRESS, cx, pkt, rec);
    Forward::of(&pkt).map(Outcome::Forward)
}

/// The ingress pipeline for one VXLAN datagram from underlay address `src`.
#[inline]
pub(crate) fn ingress<'a, 't, R: Recorder>(
    cx: Ctx<'t>,
    src: Ipv4Addr,
    datagram: &'a [u8],
    rec: &mut R,
) -> Result<Outcome<'a>, DropReason> {
    // The overlay, first on the way in, makes the packet (its decapsulation half).
    let mut pkt = match overlay::decapsulate(cx.table, src, datagram) {
        Ok(pkt) => pkt,
        Err(reason) => {
            rec.layer(LayerId::Overlay, &Err(reason));
            return Err(reason);
        }
    };
    walk!(layers::ingress, INGRESS, cx, pkt, rec);
    Forward::of(&pkt).map(Outcome::Forward)
}

#[inline(always)]
fn end_of<'a>(step: Step, pkt: &mut Packet<'a, '_>) -> Option<Result<Outcome<'a>, DropReason>> {
    match step {
        Step::Next => None,
        // A layer that answers leaves its reply in the packet; none there is a bug of that
        // layer, dropped rather than trusted.
        Step::Reply => Some(
            pkt.reply
                .take()
                .map(|(port, reply)| Outcome::Reply(port, reply))
                .ok_or(DropReason::NoRoute),
        ),
        Step::Absorb(path) => Some(Ok(Outcome::Absorb(path))),
    }
}
