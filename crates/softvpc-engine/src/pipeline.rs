//! The pipeline runner: one parse per frame, then the layers in [`EGRESS`] or [`INGRESS`]
//! order, ending in an `Outcome` the engine writes out (or a drop).
//!
//! The runner is generic over a `Recorder`, so the same code serves the data path (recording
//! nothing, compiled away) and [`Engine::trace_port_frame`](crate::Engine::trace_port_frame) /
//! [`Engine::trace_underlay_datagram`](crate::Engine::trace_underlay_datagram), which report
//! each layer's decision: a trace can never disagree with what the engine does.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use softvpc_policy::nacl::{AclRule, Action};
use softvpc_policy::route::Target;
use softvpc_policy::Direction as PolicyDirection;
use softvpc_wire::FrameMeta;

use crate::counters::Path;
pub use crate::flow::Destination;
use crate::flow::{FlowEntry, FlowId, FlowSide, FlowTable};
use crate::layers::{
    self, nacl, overlay, security_group, Ctx, Direction, LayerId, LayerResult, NaclWhy, Packet,
    Ports, Reply, Rewrite, RouteWhy, SgWhy, St, Step, EGRESS, INGRESS,
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
/// needs, and small (the packet's parse stays behind). The flow table caches it.
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
    /// To the internet (`to` is the edge's port): the public source address.
    pub snat: Option<Ipv4Addr>,
    /// Bound for an internet gateway (directly or through a NAT gateway): a packet larger
    /// than its 1500 bytes walks the layers (frag-needed or fragments).
    pub edge_mtu: bool,
}

impl<'a> Forward<'a> {
    /// The composed result of a packet that passed every layer.
    #[inline]
    fn of(pkt: &Packet<'a, '_>) -> Result<Forward<'a>, DropReason> {
        if let Some(public) = pkt.snat {
            return Ok(Forward {
                frame: pkt.meta.frame(),
                vni: pkt.vni,
                rewrite: None,
                to: Destination::LocalPort(PortId::EDGE),
                snat: Some(public),
                edge_mtu: true,
            });
        }
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
            snat: None,
            edge_mtu: pkt.natgw,
        })
    }
}

/// What the flow table did for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Not a packet the table serves (ARP, a bad header, a VLAN tag), or a trace.
    None,
    /// A current entry decided it.
    Hit,
    /// The layers decided it.
    Miss,
}

/// One packet's run: how it ended, the local ENI a drop is counted at, the flow table's part.
#[derive(Debug)]
pub(crate) struct Run<'a> {
    pub outcome: Result<Outcome<'a>, DropReason>,
    pub attrib: Option<PortId>,
    pub lookup: Lookup,
}

/// Sees each layer's decision.
pub(crate) trait Recorder {
    /// Layer `id` decided `result` for `pkt`, on the sender's side (`side` 0) or the
    /// receiver's (1).
    fn layer(&mut self, id: LayerId, result: &LayerResult, pkt: &Packet<'_, '_>, side: usize);
    /// Layer `id` dropped the input before there was a packet (decapsulation).
    fn refused(&mut self, id: LayerId, reason: DropReason);
}

/// The data path's recorder: nothing.
impl Recorder for () {
    #[inline(always)]
    fn layer(&mut self, _: LayerId, _: &LayerResult, _: &Packet<'_, '_>, _: usize) {}
    #[inline(always)]
    fn refused(&mut self, _: LayerId, _: DropReason) {}
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

/// How a security group decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SgHow {
    /// The ENI has no group: nothing filtered.
    NoGroups,
    /// DNS with the VPC's +2 address: never filtered.
    AlwaysAllowed,
    /// A rule allows a new flow; `tracked` false for AWS's untracked case.
    NewFlow {
        /// Whether a conntrack entry holds it.
        tracked: bool,
    },
    /// A packet of a tracked connection (`reply`: against its opener).
    Tracked {
        /// Against the connection's opening direction.
        reply: bool,
    },
    /// An ICMP error about a tracked connection.
    Related,
    /// No rule allows it.
    Denied,
    /// Allowed, but the tracking table is full.
    ConntrackFull,
}

/// Why a policy layer decided as it did: the rule behind a traced decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The security groups of an ENI.
    SecurityGroup {
        /// The ENI.
        eni: Box<str>,
        /// The way the packet crossed it.
        direction: PolicyDirection,
        /// How they decided.
        how: SgHow,
        /// The `sgr-` rule that allows the flow (or opened the connection), if any.
        rule: Option<Box<str>>,
    },
    /// A subnet's network ACL.
    NetworkAcl {
        /// The subnet.
        subnet: Box<str>,
        /// Out of or into the subnet.
        direction: PolicyDirection,
        /// The ACL (`None`: the subnet has none, or the packet stays inside the subnet).
        acl: Option<Box<str>>,
        /// The deciding entry's rule number, or `*`.
        rule: Option<AclRule>,
        /// Allowed or not.
        allow: bool,
    },
    /// The route (egress).
    Route {
        /// The table (`None`: switched inside the subnet, or the VPC's local routes only).
        table: Option<Box<str>>,
        /// The matching route's destination.
        destination: Option<Ipv4Net>,
        /// Its target (`local`, `eni-...`, `pcx-...`, `igw-...`, `nat-...`), `blackhole` when it
        /// is one.
        target: Option<Box<str>>,
        /// The peering connection crossed.
        pcx: Option<Box<str>>,
    },
    /// The receive side's source check (ingress).
    Source {
        /// How the source was found legitimate.
        how: &'static str,
        /// The peering connection it came over.
        pcx: Option<Box<str>>,
    },
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = |d: &PolicyDirection| match d {
            PolicyDirection::Egress => "outbound",
            PolicyDirection::Ingress => "inbound",
        };
        match self {
            Why::SecurityGroup {
                eni,
                direction,
                how,
                rule,
            } => {
                write!(f, "{eni} {}: ", dir(direction))?;
                match how {
                    SgHow::NoGroups => write!(f, "no security group")?,
                    SgHow::AlwaysAllowed => write!(f, "VPC DNS, always allowed")?,
                    SgHow::NewFlow { tracked: true } => write!(f, "new flow, tracked")?,
                    SgHow::NewFlow { tracked: false } => write!(f, "new flow, untracked")?,
                    SgHow::Tracked { reply: false } => write!(f, "tracked connection")?,
                    SgHow::Tracked { reply: true } => write!(f, "reply of a tracked connection")?,
                    SgHow::Related => write!(f, "ICMP error of a tracked connection")?,
                    SgHow::Denied => write!(f, "no rule allows it")?,
                    SgHow::ConntrackFull => write!(f, "connection tracking table full")?,
                }
                match rule {
                    Some(r) => write!(f, " ({r})"),
                    None => Ok(()),
                }
            }
            Why::NetworkAcl {
                subnet,
                direction,
                acl,
                rule,
                allow,
            } => match (acl, rule) {
                (Some(acl), Some(rule)) => {
                    let n = match rule {
                        AclRule::Number(n) => n.to_string(),
                        AclRule::Default => "*".into(),
                    };
                    let action = if *allow { "allow" } else { "deny" };
                    write!(f, "{subnet} {}: {acl} rule {n} {action}", dir(direction))
                }
                _ if *allow => write!(f, "{subnet}: inside the subnet or no ACL"),
                _ => write!(f, "{subnet}: denied"),
            },
            Why::Route {
                table,
                destination,
                target,
                pcx,
            } => {
                match (table, destination, target) {
                    (Some(t), Some(d), Some(x)) => write!(f, "{t}: {d} -> {x}")?,
                    (Some(t), None, _) => write!(f, "{t}: no route")?,
                    (None, _, Some(x)) => write!(f, "{x}")?,
                    _ => write!(f, "local")?,
                }
                match pcx {
                    Some(p) => write!(f, " via {p}"),
                    None => Ok(()),
                }
            }
            Why::Source { how, pcx } => match pcx {
                Some(p) => write!(f, "source {how} ({p})"),
                None => write!(f, "source {how}"),
            },
        }
    }
}

/// A packet's way through the pipeline: each layer visited, in order, with its decision, and
/// the end. Produced by the engine's `trace_*` methods (the same code as the data path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// Egress or ingress.
    pub direction: Direction,
    /// The layers the packet reached, in order, and what each did. For a frame delivered to
    /// another local ENI, the receiver's network ACL and security group follow the egress
    /// layers.
    pub layers: Vec<(LayerId, LayerDecision)>,
    /// The rules behind the policy layers' decisions, in the same order.
    pub why: Vec<(LayerId, Why)>,
    /// How it ended.
    pub verdict: TraceVerdict,
}

/// The trace recorder.
#[derive(Debug, Default)]
pub(crate) struct TraceRecorder {
    pub layers: Vec<(LayerId, LayerDecision)>,
    pub why: Vec<(LayerId, Why)>,
}

impl Recorder for TraceRecorder {
    fn layer(&mut self, id: LayerId, result: &LayerResult, pkt: &Packet<'_, '_>, side: usize) {
        let decision = match result {
            Ok(Step::Next) => LayerDecision::Pass,
            Ok(Step::Reply) => LayerDecision::Reply,
            Ok(Step::Absorb(path)) => LayerDecision::Absorb(*path),
            Err(reason) => LayerDecision::Drop(*reason),
        };
        self.layers.push((id, decision));
        if let Some(why) = why(id, pkt, side) {
            self.why.push((id, why));
        }
    }

    fn refused(&mut self, id: LayerId, reason: DropReason) {
        self.layers.push((id, LayerDecision::Drop(reason)));
    }
}

fn direction_of(side: usize) -> PolicyDirection {
    if side == 0 {
        PolicyDirection::Egress
    } else {
        PolicyDirection::Ingress
    }
}

/// The rule behind layer `id`'s decision, from the packet's notes.
fn why(id: LayerId, pkt: &Packet<'_, '_>, side: usize) -> Option<Why> {
    let n = &pkt.notes;
    match id {
        LayerId::SecurityGroup => {
            let (eni, w) = n.sg[side]?;
            let name = |idx| {
                eni.groups
                    .as_ref()
                    .and_then(|g| g.rule(idx))
                    .map(|r| r.id.as_str().into())
            };
            let (how, rule) = match w {
                SgWhy::NoGroups => (SgHow::NoGroups, None),
                SgWhy::AlwaysAllowed => (SgHow::AlwaysAllowed, None),
                SgWhy::Rule { rule, tracked } => (SgHow::NewFlow { tracked }, name(rule)),
                SgWhy::Tracked { reply, rule } => (SgHow::Tracked { reply }, rule.and_then(name)),
                SgWhy::Related => (SgHow::Related, None),
                SgWhy::Denied => (SgHow::Denied, None),
                SgWhy::Full => (SgHow::ConntrackFull, None),
            };
            Some(Why::SecurityGroup {
                eni: eni.eni_id.clone(),
                direction: direction_of(side),
                how,
                rule,
            })
        }
        LayerId::Nacl => {
            let (subnet, w) = n.nacl[side]?;
            let (acl, rule, allow) = match w {
                NaclWhy::InsideSubnet | NaclWhy::NoAcl => (None, None, true),
                NaclWhy::Entry { acl, rule, action } => {
                    (Some(acl.into()), Some(rule), action == Action::Allow)
                }
            };
            Some(Why::NetworkAcl {
                subnet: subnet.into(),
                direction: direction_of(side),
                acl,
                rule,
                allow,
            })
        }
        LayerId::Route if pkt.direction == Direction::Egress => {
            let pcx = n.pcx.map(Into::into);
            Some(match n.route? {
                RouteWhy::Bridged => Why::Route {
                    table: None,
                    destination: None,
                    target: Some("switched in the subnet".into()),
                    pcx,
                },
                RouteWhy::Route { table, route } => Why::Route {
                    table: Some(table.into()),
                    destination: route.map(|r| r.destination),
                    target: route.map(|r| match (&r.state, &r.target) {
                        (softvpc_policy::route::RouteState::Blackhole, _) => "blackhole".into(),
                        (_, Target::Local) => "local".into(),
                        (_, Target::NetworkInterface(x))
                        | (_, Target::VpcPeeringConnection(x))
                        | (_, Target::InternetGateway(x))
                        | (_, Target::NatGateway(x)) => x.as_str().into(),
                    }),
                    pcx,
                },
                _ => Why::Route {
                    table: None,
                    destination: None,
                    target: Some("local (no route table)".into()),
                    pcx,
                },
            })
        }
        LayerId::Route => {
            let how = match n.source? {
                RouteWhy::SourcePlaced => "on the sending host",
                RouteWhy::SourcePeered { .. } => "over a peering connection",
                RouteWhy::SourceForwarded => "forwarded by a middlebox host",
                _ => return None,
            };
            Some(Why::Source {
                how,
                pcx: n.pcx.map(Into::into),
            })
        }
        _ => None,
    }
}

/// Runs the layers of `order` (a const array of six) on `pkt`, returning from the enclosing
/// function when one ends the walk. Unrolled, so each layer's dispatch is resolved at compile
/// time; the order is still the array's.
macro_rules! walk {
    ($run:path, $order:ident, $cx:ident, $st:ident, $pkt:ident, $rec:ident, $side:expr) => {
        walk!(@one $run, $order[0], $cx, $st, $pkt, $rec, $side);
        walk!(@one $run, $order[1], $cx, $st, $pkt, $rec, $side);
        walk!(@one $run, $order[2], $cx, $st, $pkt, $rec, $side);
        walk!(@one $run, $order[3], $cx, $st, $pkt, $rec, $side);
        walk!(@one $run, $order[4], $cx, $st, $pkt, $rec, $side);
        walk!(@one $run, $order[5], $cx, $st, $pkt, $rec, $side);
    };
    (@one $run:path, $id:expr, $cx:ident, $st:ident, $pkt:ident, $rec:ident, $side:expr) => {{
        let id: LayerId = $id;
        let result = $run(id, $cx, $st, $pkt);
        $rec.layer(id, &result, $pkt, $side);
        if let Some(end) = end_of(result?, $pkt) {
            return end;
        }
    }};
}

// `walk!` covers exactly six layers.
const _: () = assert!(EGRESS.len() == 6 && INGRESS.len() == 6);

#[inline]
fn flow_id(meta: &FrameMeta<'_>, side: FlowSide) -> Option<FlowId> {
    FlowId::of(meta, side)
}

/// A current entry's decision for this packet, after the per-packet checks: a TTL left for a
/// routed frame, and the flow's connection still in every conntrack table that held it (which
/// also advances its state and idle timer). `None`: walk the layers.
#[inline]
fn hit<'a>(
    cx: Ctx<'_>,
    st: &mut St<'_>,
    flows: &mut FlowTable,
    id: &FlowId,
    meta: &FrameMeta<'a>,
) -> Option<Forward<'a>> {
    let entry = flows.get_mut(id)?;
    if entry.generation != cx.table.generation() {
        return None;
    }
    let ip = meta.ipv4()?;
    if (entry.rewrite.is_some() || entry.snat.is_some()) && ip.ttl <= 1 {
        return None;
    }
    if entry.edge_mtu
        && crate::layers::nat::total_len(meta.l3_bytes()) > crate::layers::nat::EDGE_MTU
    {
        // Too big for the edge: the NAT layer decides (frag-needed or fragments).
        return None;
    }
    if entry.tracked.iter().any(Option::is_some) {
        let Ports::Live(ports) = &mut st.ports else {
            return None;
        };
        let pkt = softvpc_policy::Packet::from_ipv4(ip);
        let now = st.now?;
        for (port, dir) in entry.tracked.iter().flatten() {
            let fw = ports.get_mut(port).and_then(|s| s.fw.as_mut())?;
            fw.conntrack().lookup(&pkt, *dir, now)?;
        }
    }
    entry.last_used = st.now?;
    Some(Forward {
        frame: meta.frame(),
        vni: entry.vni,
        rewrite: entry.rewrite,
        to: entry.to,
        snat: entry.snat,
        edge_mtu: entry.edge_mtu,
    })
}

/// Caches a forwarded packet's composed decision.
#[inline]
fn remember(
    cx: Ctx<'_>,
    st: &St<'_>,
    flows: &mut FlowTable,
    id: FlowId,
    pkt: &Packet<'_, '_>,
    fwd: &Forward<'_>,
) {
    let (true, Some(now)) = (pkt.cacheable, st.now) else {
        return;
    };
    flows.insert(
        id,
        FlowEntry {
            generation: cx.table.generation(),
            vni: fwd.vni,
            rewrite: fwd.rewrite,
            to: fwd.to,
            snat: fwd.snat,
            edge_mtu: fwd.edge_mtu,
            tracked: pkt.tracked,
            last_used: now,
        },
    );
}

/// The run of a frame that walked the layers (a flow-table miss, or no flow id): a forwarded
/// outcome is remembered in the flow table when the frame has a flow id and the walk allows it.
fn walked<'a>(
    cx: Ctx<'_>,
    st: &St<'_>,
    flows: Option<&mut FlowTable>,
    id: Option<FlowId>,
    pkt: &Packet<'a, '_>,
    outcome: Result<Outcome<'a>, DropReason>,
) -> Run<'a> {
    if let (Ok(Outcome::Forward(fwd)), Some(id), Some(table)) = (&outcome, id, flows) {
        remember(cx, st, table, id, pkt, fwd);
    }
    Run {
        outcome,
        attrib: pkt.attrib,
        lookup: if id.is_some() {
            Lookup::Miss
        } else {
            Lookup::None
        },
    }
}

/// The egress pipeline for one frame an instance sent on `port`: the flow table first (when
/// given: the data path), else the layers.
#[inline]
pub(crate) fn egress<'a, 't, R: Recorder>(
    cx: Ctx<'t>,
    st: &mut St<'_>,
    flows: Option<&mut FlowTable>,
    port: PortId,
    frame: &'a [u8],
    rec: &mut R,
) -> Run<'a> {
    let Ok(meta) = FrameMeta::parse(frame) else {
        return Run {
            outcome: Err(DropReason::Malformed),
            attrib: None,
            lookup: Lookup::None,
        };
    };
    let Some(eni) = cx.table.eni_on_port(port) else {
        return Run {
            outcome: Err(DropReason::UnknownPort),
            attrib: None,
            lookup: Lookup::None,
        };
    };
    let id = flows
        .is_some()
        .then(|| flow_id(&meta, FlowSide::Port(port)))
        .flatten();
    let mut flows = flows;
    if let (Some(id), Some(table)) = (&id, flows.as_deref_mut()) {
        if let Some(fwd) = hit(cx, st, table, id, &meta) {
            return Run {
                outcome: Ok(Outcome::Forward(fwd)),
                attrib: Some(port),
                lookup: Lookup::Hit,
            };
        }
    }
    let mut pkt = Packet::new(Direction::Egress, meta, eni.vni, Some((port, eni)), None);
    let outcome = egress_walk(cx, st, &mut pkt, rec);
    walked(cx, st, flows, id, &pkt, outcome)
}

#[inline]
fn egress_walk<'a, 't, R: Recorder>(
    cx: Ctx<'t>,
    st: &mut St<'_>,
    pkt: &mut Packet<'a, 't>,
    rec: &mut R,
) -> Result<Outcome<'a>, DropReason> {
    walk!(layers::egress, EGRESS, cx, st, pkt, rec, 0);
    // Delivered on this host: the receiver's side of the policy in the same pass (its subnet's
    // ACL when the frame enters that subnet, then its groups).
    if let Some(target) = pkt.target {
        if let (Location::Local(to), Some(p)) = (target.location, pkt.pol) {
            let result = nacl::check(cx, pkt, target, p.src, PolicyDirection::Ingress, 1);
            rec.layer(LayerId::Nacl, &result, pkt, 1);
            if result.is_err() {
                pkt.attrib = Some(to);
            }
            result?;
            let result =
                security_group::check(cx, st, pkt, to, target, PolicyDirection::Ingress, 1);
            rec.layer(LayerId::SecurityGroup, &result, pkt, 1);
            if result.is_err() {
                pkt.attrib = Some(to);
            }
            result?;
        }
    }
    Forward::of(pkt).map(Outcome::Forward)
}

/// The ingress pipeline for one VXLAN datagram from underlay address `src`.
#[inline]
pub(crate) fn ingress<'a, 't, R: Recorder>(
    cx: Ctx<'t>,
    st: &mut St<'_>,
    flows: Option<&mut FlowTable>,
    src: Ipv4Addr,
    datagram: &'a [u8],
    rec: &mut R,
) -> Run<'a> {
    // The overlay, first on the way in, makes the packet (its decapsulation half).
    let mut pkt = match overlay::decapsulate(cx.table, src, datagram) {
        Ok(pkt) => pkt,
        Err(reason) => {
            rec.refused(LayerId::Overlay, reason);
            return Run {
                outcome: Err(reason),
                attrib: None,
                lookup: Lookup::None,
            };
        }
    };
    let id = flows
        .is_some()
        .then(|| {
            flow_id(
                &pkt.meta,
                FlowSide::Underlay {
                    vni: pkt.vni,
                    host: src,
                },
            )
        })
        .flatten();
    let mut flows = flows;
    if let (Some(id), Some(table)) = (&id, flows.as_deref_mut()) {
        if let Some(fwd) = hit(cx, st, table, id, &pkt.meta) {
            let attrib = match fwd.to {
                Destination::DecapPort(p) | Destination::LocalPort(p) => Some(p),
                Destination::Underlay(_) => None,
            };
            return Run {
                outcome: Ok(Outcome::Forward(fwd)),
                attrib,
                lookup: Lookup::Hit,
            };
        }
    }
    let outcome = ingress_walk(cx, st, &mut pkt, rec);
    walked(cx, st, flows, id, &pkt, outcome)
}

#[inline]
fn ingress_walk<'a, 't, R: Recorder>(
    cx: Ctx<'t>,
    st: &mut St<'_>,
    pkt: &mut Packet<'a, 't>,
    rec: &mut R,
) -> Result<Outcome<'a>, DropReason> {
    walk!(layers::ingress, INGRESS, cx, st, pkt, rec, 1);
    Forward::of(pkt).map(Outcome::Forward)
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
