//! The engine: the entry points (batches of frames and datagrams, the timer), and the last step
//! of the pipeline, which writes each outcome into the shell's [`Output`] and counts it.
//!
//! Every input ends in exactly one way: one output, one drop (counted by reason) or one
//! absorption (counted by path). Time is the caller's: every entry point takes `now`, the engine
//! keeps the latest (never going back) and asks to be woken at [`Engine::poll_timeout`].

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use softvpc_wire::{VxlanPacket, VxlanRepr, VXLAN_HEADER_LEN};

use crate::counters::Path;
use crate::layers::gateway::{arp, icmp};
use crate::layers::{route, Ctx, Direction, Reply};
use crate::pipeline::{self, Destination, Outcome, Trace, TraceVerdict};
use crate::report::{DropReporter, Event};
use crate::{Counters, DropReason, LayerDecision, LayerId, MappingTable, Output};

/// A local port: one TAP device, carrying one ENI. Assigned by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u32);

/// Static configuration of the engine on one host.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This host's underlay address (the outer source of what it sends).
    pub underlay_ip: Ipv4Addr,
    /// UDP destination port for VXLAN (4789, RFC 7348).
    pub vxlan_port: u16,
    /// How long drops are aggregated before one [`Event::Drops`] report; `None`: no reports.
    pub drop_report_interval: Option<Duration>,
}

impl EngineConfig {
    /// The default drop-report interval.
    pub const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

    /// The configuration for a host with underlay address `underlay_ip`, VXLAN on 4789, drops
    /// reported every 10 s.
    pub fn new(underlay_ip: Ipv4Addr) -> Self {
        EngineConfig {
            underlay_ip,
            vxlan_port: softvpc_wire::VXLAN_UDP_PORT,
            drop_report_interval: Some(Self::DROP_REPORT_INTERVAL),
        }
    }
}

/// The virtual router of one host. See the [crate docs](crate) for the contract.
pub struct Engine {
    config: EngineConfig,
    table: Arc<MappingTable>,
    counters: Counters,
    /// The latest `now` any entry point was given.
    now: Option<Instant>,
    drops: DropReporter,
    events: VecDeque<Event>,
}

impl Engine {
    /// An engine with an empty mapping table (every frame is `unknown_port` until
    /// [`set_table`](Self::set_table)).
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            drops: DropReporter::new(config.drop_report_interval),
            config,
            table: Arc::new(MappingTable::default()),
            counters: Counters::default(),
            now: None,
            events: VecDeque::new(),
        }
    }

    /// Swaps in a new mapping snapshot (the shell calls this when the mapping view changed).
    /// The very next packet sees it.
    pub fn set_table(&mut self, table: Arc<MappingTable>) {
        self.table = table;
    }

    /// The current mapping snapshot.
    pub fn table(&self) -> &Arc<MappingTable> {
        &self.table
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// What the engine did so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The latest time any entry point was given (`None` before the first call).
    pub fn now(&self) -> Option<Instant> {
        self.now
    }

    /// Frames read from a local port (an instance sent them), in order. Outputs are appended to
    /// `out`.
    pub fn handle_port_frames<'a>(
        &mut self,
        now: Instant,
        port: PortId,
        frames: impl IntoIterator<Item = &'a [u8]>,
        out: &mut Output,
    ) {
        let now = self.advance(now);
        let cx = Ctx {
            table: &self.table,
            config: &self.config,
        };
        for frame in frames {
            self.counters.count(Path::PortRx, frame.len());
            let outcome = pipeline::egress(cx, port, frame, &mut ());
            match outcome.and_then(|o| write(cx, out, o)) {
                Ok((path, len)) => self.counters.count(path, len.unwrap_or(frame.len())),
                Err(reason) => {
                    self.counters.drop(reason);
                    self.drops.on_drop(
                        now,
                        &self.counters,
                        reason,
                        Direction::Egress,
                        Some(port),
                        frame,
                    );
                    tracing::trace!(reason = reason.as_str(), len = frame.len(), "dropped");
                }
            }
        }
    }

    /// UDP payloads received on the VXLAN port, each with its outer IPv4 source address.
    /// Outputs are appended to `out`.
    pub fn handle_underlay_datagrams<'a>(
        &mut self,
        now: Instant,
        datagrams: impl IntoIterator<Item = (Ipv4Addr, &'a [u8])>,
        out: &mut Output,
    ) {
        let now = self.advance(now);
        let cx = Ctx {
            table: &self.table,
            config: &self.config,
        };
        for (src, datagram) in datagrams {
            self.counters.count(Path::UnderlayRx, datagram.len());
            let outcome = pipeline::ingress(cx, src, datagram, &mut ());
            match outcome.and_then(|o| write(cx, out, o)) {
                Ok((path, len)) => self.counters.count(path, len.unwrap_or(datagram.len())),
                Err(reason) => {
                    self.counters.drop(reason);
                    self.drops.on_drop(
                        now,
                        &self.counters,
                        reason,
                        Direction::Ingress,
                        None,
                        datagram,
                    );
                    tracing::trace!(reason = reason.as_str(), len = datagram.len(), "dropped");
                }
            }
        }
    }

    /// When the engine next wants [`handle_timeout`](Self::handle_timeout) called, if ever.
    /// May change after any entry point (as quinn-proto's `Connection::poll_timeout`).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.drops.deadline()
    }

    /// Runs the timers due at `now` (the shell calls it at or after
    /// [`poll_timeout`](Self::poll_timeout); calling it early or often is harmless). Then
    /// [`poll_event`](Self::poll_event) hands out what they produced.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        if let Some(report) = self.drops.on_timeout(now, &self.counters) {
            self.events.push_back(Event::Drops(report));
        }
    }

    /// The next event for the shell (drop reports), oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Runs one frame from `port` through the egress pipeline as the data path would, and says
    /// what each layer decided. Counters, timers and events are left alone; the frame the data
    /// path would have sent is appended to `out`.
    pub fn trace_port_frame(&self, port: PortId, frame: &[u8], out: &mut Output) -> Trace {
        self.trace(Direction::Egress, out, |cx, layers| {
            pipeline::egress(cx, port, frame, layers)
        })
    }

    /// [`trace_port_frame`](Self::trace_port_frame) for a VXLAN datagram from `src`.
    pub fn trace_underlay_datagram(
        &self,
        src: Ipv4Addr,
        datagram: &[u8],
        out: &mut Output,
    ) -> Trace {
        self.trace(Direction::Ingress, out, |cx, layers| {
            pipeline::ingress(cx, src, datagram, layers)
        })
    }

    /// Runs one direction's pipeline with a recorder of each layer's decision.
    fn trace<'f>(
        &self,
        direction: Direction,
        out: &mut Output,
        run: impl FnOnce(Ctx<'_>, &mut Vec<(LayerId, LayerDecision)>) -> Result<Outcome<'f>, DropReason>,
    ) -> Trace {
        let cx = Ctx {
            table: &self.table,
            config: &self.config,
        };
        let mut layers = Vec::new();
        let outcome = run(cx, &mut layers);
        let verdict = trace_verdict(cx, out, outcome);
        Trace {
            direction,
            layers,
            verdict,
        }
    }

    /// Keeps the latest `now`; time never goes back, whatever the caller passes.
    #[inline]
    fn advance(&mut self, now: Instant) -> Instant {
        let now = match self.now {
            Some(prev) if prev > now => prev,
            _ => now,
        };
        self.now = Some(now);
        now
    }
}

fn trace_verdict(
    cx: Ctx<'_>,
    out: &mut Output,
    outcome: Result<Outcome<'_>, DropReason>,
) -> TraceVerdict {
    let outcome = match outcome {
        Ok(o) => o,
        Err(reason) => return TraceVerdict::Drop(reason),
    };
    let verdict = match &outcome {
        Outcome::Absorb(path) => TraceVerdict::Absorb(*path),
        Outcome::Reply(port, _) => TraceVerdict::Reply(*port),
        Outcome::Forward(fwd) => match fwd.to {
            Destination::Underlay(encap) => TraceVerdict::ToUnderlay(encap.dst_ip),
            Destination::LocalPort(port) | Destination::DecapPort(port) => {
                TraceVerdict::ToPort(port)
            }
        },
    };
    match write(cx, out, outcome) {
        Ok(_) => verdict,
        Err(reason) => TraceVerdict::Drop(reason),
    }
}

/// The last step: writes an outcome into `out`. Returns the path to count and the bytes to
/// count (`None`: the input's length, for absorptions).
#[inline]
fn write(
    cx: Ctx<'_>,
    out: &mut Output,
    outcome: Outcome<'_>,
) -> Result<(Path, Option<usize>), DropReason> {
    match outcome {
        Outcome::Absorb(path) => Ok((path, None)),
        Outcome::Reply(port, reply) => Ok(write_reply(out, port, reply)),
        Outcome::Forward(fwd) => {
            let rewrite = fwd.rewrite;
            let edit = |f: &mut [u8]| {
                if let Some(r) = rewrite {
                    route::rewrite_routed(f, r.router_mac, r.target_mac);
                }
            };
            Ok(match fwd.to {
                Destination::Underlay(encap) => {
                    let mut header = [0u8; VXLAN_HEADER_LEN];
                    VxlanRepr { vni: fwd.vni.0 }.emit(&mut VxlanPacket::new_unchecked(&mut header));
                    let len = out.push_datagram(
                        encap.dst_ip,
                        cx.config.vxlan_port,
                        encap.src_port,
                        &header,
                        fwd.frame,
                        edit,
                    );
                    (Path::ToUnderlay, Some(len))
                }
                Destination::LocalPort(port) => (
                    Path::ToPortLocal,
                    Some(out.push_port_copy(port, fwd.frame, edit)),
                ),
                Destination::DecapPort(port) => (
                    Path::ToPortDecap,
                    Some(out.push_port_copy(port, fwd.frame, edit)),
                ),
            })
        }
    }
}

fn write_reply(out: &mut Output, port: PortId, reply: Reply<'_>) -> (Path, Option<usize>) {
    match reply {
        Reply::Arp {
            owner_mac,
            owner_ip,
            asker_mac,
            asker_ip,
        } => {
            let len = out.push_port_frame(port, arp::REPLY_LEN, |buf| {
                arp::emit_reply(buf, owner_mac, owner_ip, asker_mac, asker_ip)
            });
            (Path::ArpReplies, Some(len))
        }
        Reply::IcmpEcho {
            router_mac,
            router_ip,
            dst_mac,
            dst_ip,
            ident,
            seq_no,
            data,
        } => {
            let len = out.push_port_frame(port, icmp::echo_reply_len(data), |buf| {
                icmp::emit_echo_reply(
                    buf, router_mac, dst_mac, router_ip, dst_ip, ident, seq_no, data,
                )
            });
            (Path::IcmpReplies, Some(len))
        }
    }
}
