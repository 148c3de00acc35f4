//! Flow log capture: per local ENI and per flow, what the data path did in each aggregation
//! window (packets, bytes, first and last packet, TCP flags, ACCEPT or REJECT), as AWS's VPC
//! flow logs record it.
//!
//! The shell says which local ENIs are logged and with which aggregation intervals
//! ([`Engine::set_flow_logs`](crate::Engine::set_flow_logs): 60 s and/or 600 s, the
//! `MaxAggregationInterval` of the flow logs that cover the ENI). Every packet the engine
//! forwards, and every packet a security group or network ACL refuses, is counted once per
//! logged ENI it concerns: on the sender's ENI as `egress`, on the receiver's as `ingress` (a
//! frame between two ENIs of this host counts on both). The counting reads the frame's IPv4
//! header again, and only for logged ENIs, so an engine without flow logs pays one branch per
//! packet. Gateway services (ARP, DHCP, the router's ICMP echo, DNS at the VPC's +2, the
//! link-local 169.254.0.0/16 services) are never counted: AWS does not log them.
//!
//! Windows are the engine's own, in the caller's time: one per logged ENI and interval,
//! starting when logging starts; each ends after its interval (or the shorter
//! [`FlowLogConfig::max_window`], which the shell may set for tests: AWS's interval is a
//! maximum), and then its records are queued as one [`FlowWindow`] for
//! [`Engine::poll_flow_window`](crate::Engine::poll_flow_window), even when it saw nothing (the
//! shell writes NODATA).
//!
//! Flows the kernel fast path carries (`crate::offload`) never reach the pipeline: the shell
//! folds the kernel's counts back ([`Engine::fold_kernel_use`](crate::Engine::fold_kernel_use)),
//! and the fold counts them here too, as ACCEPT records of the same keys.
//!
//! **Bounded.** At most [`FlowLogConfig::record_limit`] records are held, in open windows and
//! queued ones together; a packet of a flow with no record while the bound is reached is not
//! recorded: counted in [`FlowLogStats::lost_packets`] and in its window's
//! [`FlowWindow::skipped`], which the shell writes as AWS's SKIPDATA. Never silent.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use softvpc_wire::{FrameMeta, L4Key};

use crate::layers::Direction;
use crate::mapping::{MappingTable, Vni};
use crate::pipeline::{Destination, Outcome, Run};
use crate::{DropReason, PortId};

/// The default bound on records held.
pub const DEFAULT_RECORD_LIMIT: usize = 65_536;

/// How the engine captures flow log records (the shell's settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowLogConfig {
    /// Records held at most (open and queued windows together).
    pub record_limit: usize,
    /// When set, no window is longer than this (tests; AWS's interval is a maximum).
    pub max_window: Option<Duration>,
}

impl Default for FlowLogConfig {
    fn default() -> Self {
        FlowLogConfig {
            record_limit: DEFAULT_RECORD_LIMIT,
            max_window: None,
        }
    }
}

/// ACCEPT or REJECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlowAction {
    /// Forwarded.
    Accept,
    /// Refused by a security group or a network ACL.
    Reject,
}

impl FlowAction {
    /// AWS's word.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowAction::Accept => "ACCEPT",
            FlowAction::Reject => "REJECT",
        }
    }
}

/// The direction of a packet as the ENI sees it (`flow-direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlowDirection {
    /// Into the ENI.
    Ingress,
    /// Out of the ENI.
    Egress,
}

impl FlowDirection {
    /// AWS's word.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowDirection::Ingress => "ingress",
            FlowDirection::Egress => "egress",
        }
    }
}

/// What one record aggregates: the packet's addresses, protocol and ports (0 for protocols
/// without ports, ICMP included, as AWS shows them), the direction and the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    /// The packet's source address (`pkt-srcaddr`).
    pub src: Ipv4Addr,
    /// The packet's destination address (`pkt-dstaddr`).
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub proto: u8,
    /// TCP/UDP source port, else 0.
    pub src_port: u16,
    /// TCP/UDP destination port, else 0.
    pub dst_port: u16,
    /// Seen going into or out of the ENI.
    pub direction: FlowDirection,
    /// ACCEPT or REJECT.
    pub action: FlowAction,
}

/// The counts of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowCounts {
    /// Packets.
    pub packets: u64,
    /// Bytes (IPv4 total lengths).
    pub bytes: u64,
    /// The first packet's time.
    pub first: Instant,
    /// The last packet's time.
    pub last: Instant,
    /// AWS's `tcp-flags`: FIN 1, SYN 2, RST 4, SYN-ACK 18 (a SYN with ACK), OR-ed.
    pub tcp_flags: u8,
    /// Some packet went into another VPC (over a peering connection).
    pub peered: bool,
}

/// One record: a flow of one ENI in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRecord {
    /// What it aggregates.
    pub key: RecordKey,
    /// Its counts.
    pub counts: FlowCounts,
}

/// A closed window of one logged ENI: every record, and what could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowWindow {
    /// The ENI.
    pub eni_id: Box<str>,
    /// The aggregation interval of the flow logs it is for (60 s or 600 s).
    pub interval: Duration,
    /// When the window began.
    pub start: Instant,
    /// When it ended.
    pub end: Instant,
    /// The records, sorted by key.
    pub records: Vec<FlowRecord>,
    /// Packets not recorded because the record bound was reached (SKIPDATA when non-zero).
    pub skipped: u64,
}

/// What the capture did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowLogStats {
    /// Records handed out in windows.
    pub records: u64,
    /// Windows handed out.
    pub windows: u64,
    /// Packets not recorded (the bound was reached).
    pub lost_packets: u64,
    /// Records held now.
    pub held: u64,
}

#[derive(Debug)]
struct Window {
    interval: Duration,
    /// `None` until the engine has a time.
    start: Option<Instant>,
    flows: HashMap<RecordKey, FlowCounts, foldhash::fast::RandomState>,
    skipped: u64,
}

#[derive(Debug)]
struct PortLog {
    eni_id: Box<str>,
    windows: Vec<Window>,
}

/// The flow log capture of one engine. See the [module docs](self).
#[derive(Debug, Default)]
pub struct FlowLogger {
    config: FlowLogConfig,
    /// The logged ENIs (by id) and their intervals, as the shell last said.
    wanted: HashMap<Box<str>, Vec<Duration>>,
    ports: HashMap<PortId, PortLog>,
    done: VecDeque<FlowWindow>,
    held: usize,
    stats: FlowLogStats,
}

/// AWS's `tcp-flags` bits of one segment's flags: FIN, SYN, RST kept; SYN with ACK is 18.
pub fn aws_tcp_flags(flags: u8) -> u8 {
    const FIN: u8 = 0x01;
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;
    let mut f = flags & (FIN | SYN | RST);
    if flags & SYN != 0 && flags & ACK != 0 {
        f |= ACK;
    }
    f
}

/// How long a window of `interval` lasts under the shell's cap.
fn window_len(max: Option<Duration>, interval: Duration) -> Duration {
    match max {
        Some(m) if m < interval => m.max(Duration::from_millis(1)),
        _ => interval,
    }
}

/// Whether an address is one AWS does not log traffic to or from: the link-local services
/// (metadata, DNS, time), the subnet's router, the VPC's DNS resolver (base + 2).
fn not_logged(table: &MappingTable, vni: Vni, ip: Ipv4Addr, other: Ipv4Addr) -> bool {
    let link_local = |a: Ipv4Addr| a.octets()[0] == 169 && a.octets()[1] == 254;
    if link_local(ip) || link_local(other) {
        return true;
    }
    if table.router_subnet(vni, other).is_some() {
        return true;
    }
    table.vpc(vni).is_some_and(|v| {
        v.cidrs.iter().any(|c| {
            let dns = Ipv4Addr::from(u32::from(c.network()).wrapping_add(2));
            dns == ip || dns == other
        })
    })
}

impl FlowLogger {
    /// A capture with `config` and nothing logged.
    pub fn new(config: FlowLogConfig) -> FlowLogger {
        FlowLogger {
            config,
            ..FlowLogger::default()
        }
    }

    /// The settings.
    pub fn config(&self) -> &FlowLogConfig {
        &self.config
    }

    /// Changes the settings (open windows keep their end).
    pub fn set_config(&mut self, config: FlowLogConfig) {
        self.config = config;
    }

    /// True when no local ENI is logged (the data path's one branch).
    #[inline]
    pub fn is_idle(&self) -> bool {
        self.ports.is_empty()
    }

    /// What the capture did so far.
    pub fn stats(&self) -> FlowLogStats {
        FlowLogStats {
            held: self.held as u64,
            ..self.stats
        }
    }

    /// Which ENIs are logged and with which intervals (replacing what was said before); then
    /// [`resolve`](Self::resolve) with the current table.
    pub fn set_wanted(&mut self, wanted: HashMap<Box<str>, Vec<Duration>>) {
        self.wanted = wanted;
    }

    /// Matches the logged ENIs to the table's local ports: a window that stays keeps counting,
    /// a new one starts at `now`, one no longer wanted (or whose ENI left the host) is closed
    /// at `now` and queued.
    pub fn resolve(&mut self, table: &MappingTable, now: Option<Instant>) {
        let mut old = std::mem::take(&mut self.ports);
        for (port, eni) in table.local_enis() {
            let Some(intervals) = self.wanted.get(&eni.eni_id).cloned() else {
                continue;
            };
            let mut log = match old.remove(&port) {
                Some(l) if l.eni_id == eni.eni_id => l,
                Some(l) => {
                    self.close_all(l, now);
                    PortLog {
                        eni_id: eni.eni_id.clone(),
                        windows: Vec::new(),
                    }
                }
                None => PortLog {
                    eni_id: eni.eni_id.clone(),
                    windows: Vec::new(),
                },
            };
            let mut keep = Vec::new();
            for w in std::mem::take(&mut log.windows) {
                if intervals.contains(&w.interval) {
                    keep.push(w);
                } else {
                    self.close(&log.eni_id, w, now);
                }
            }
            for &interval in &intervals {
                if !keep.iter().any(|w| w.interval == interval) {
                    keep.push(Window {
                        interval,
                        start: now,
                        flows: HashMap::default(),
                        skipped: 0,
                    });
                }
            }
            log.windows = keep;
            self.ports.insert(port, log);
        }
        for (_, l) in old {
            self.close_all(l, now);
        }
    }

    fn close_all(&mut self, log: PortLog, now: Option<Instant>) {
        for w in log.windows {
            self.close(&log.eni_id, w, now);
        }
    }

    /// Queues a window ending at `end` (one that never had a time is dropped: it saw nothing).
    fn close(&mut self, eni_id: &str, w: Window, end: Option<Instant>) {
        let (Some(start), Some(end)) = (w.start, end) else {
            self.held -= w.flows.len();
            return;
        };
        let mut records: Vec<FlowRecord> = w
            .flows
            .into_iter()
            .map(|(key, counts)| FlowRecord { key, counts })
            .collect();
        records.sort_by_key(|r| r.key);
        self.stats.records += records.len() as u64;
        self.stats.windows += 1;
        self.done.push_back(FlowWindow {
            eni_id: eni_id.into(),
            interval: w.interval,
            start,
            end: end.max(start),
            records,
            skipped: w.skipped,
        });
    }

    /// When the next window ends.
    pub fn deadline(&self) -> Option<Instant> {
        self.ports
            .values()
            .flat_map(|l| l.windows.iter())
            .filter_map(|w| {
                w.start
                    .map(|s| s + window_len(self.config.max_window, w.interval))
            })
            .min()
    }

    /// Closes the windows due at `now` and starts their successors.
    pub fn on_timeout(&mut self, now: Instant) {
        let mut closing = Vec::new();
        for log in self.ports.values_mut() {
            for w in &mut log.windows {
                let Some(start) = w.start else {
                    w.start = Some(now);
                    continue;
                };
                let len = window_len(self.config.max_window, w.interval);
                let end = start + len;
                if now < end {
                    continue;
                }
                // The next window starts where this one ended, unless the timer was late by
                // more than a window: then at `now`.
                let next = if now >= end + len { now } else { end };
                let old = std::mem::replace(
                    w,
                    Window {
                        interval: w.interval,
                        start: Some(next),
                        flows: HashMap::default(),
                        skipped: 0,
                    },
                );
                closing.push((log.eni_id.clone(), old, end));
            }
        }
        for (eni, w, end) in closing {
            self.close(&eni, w, Some(end));
        }
    }

    /// The next closed window, oldest first; its records no longer count against the bound.
    pub fn poll_window(&mut self) -> Option<FlowWindow> {
        let w = self.done.pop_front()?;
        self.held -= w.records.len();
        Some(w)
    }

    /// Counts what the kernel fast path carried for one installed flow since the last fold
    /// (`packets` frames, `ip_bytes` IPv4 bytes, the last at `last`) on the logged ENI of
    /// `port`, in `direction`, as ACCEPT (the kernel carries only flows the engine forwarded;
    /// never a SYN, FIN or RST, so the TCP flags add nothing; never routed, so never peered).
    /// The kernel's counts are totals per fold, so a record's first and last packet times are
    /// those of the folds (the agent reads the counts every 500 ms).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn observe_kernel(
        &mut self,
        table: &MappingTable,
        port: PortId,
        direction: FlowDirection,
        packet: (Ipv4Addr, Ipv4Addr, u8, u16, u16),
        packets: u64,
        ip_bytes: u64,
        last: Instant,
    ) {
        let (src, dst, proto, src_port, dst_port) = packet;
        let Some(log) = self.ports.get_mut(&port) else {
            return;
        };
        let Some(eni) = table.eni_on_port(port) else {
            return;
        };
        let (own, other) = match direction {
            FlowDirection::Egress => (src, dst),
            FlowDirection::Ingress => (dst, src),
        };
        if not_logged(table, eni.vni, own, other) {
            return;
        }
        let key = RecordKey {
            src,
            dst,
            proto,
            src_port,
            dst_port,
            direction,
            action: FlowAction::Accept,
        };
        for w in &mut log.windows {
            if w.start.is_none() {
                w.start = Some(last);
            }
            match w.flows.get_mut(&key) {
                Some(c) => {
                    c.packets += packets;
                    c.bytes += ip_bytes;
                    c.last = c.last.max(last);
                }
                None if self.held < self.config.record_limit => {
                    self.held += 1;
                    w.flows.insert(
                        key,
                        FlowCounts {
                            packets,
                            bytes: ip_bytes,
                            first: last,
                            last,
                            tcp_flags: 0,
                            peered: false,
                        },
                    );
                }
                None => {
                    w.skipped += packets;
                    self.stats.lost_packets += packets;
                }
            }
        }
    }

    /// Counts one packet the pipeline finished (`run`) on the logged ENIs it concerns.
    /// `input` is what the entry point was given (a frame, or a VXLAN payload on ingress).
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        table: &MappingTable,
        direction: Direction,
        from: Option<PortId>,
        run: &Run<'_>,
        input: &[u8],
    ) {
        // (port, direction at that ENI, action), at most two.
        let mut hits: [Option<(PortId, FlowDirection, FlowAction)>; 2] = [None, None];
        let mut frame = input;
        let mut peered = false;
        match (&run.outcome, direction) {
            (Ok(Outcome::Forward(fwd)), _) => {
                frame = fwd.frame;
                if let Some(p) = from {
                    hits[0] = Some((p, FlowDirection::Egress, FlowAction::Accept));
                    peered = table.eni_on_port(p).is_some_and(|e| e.vni != fwd.vni);
                }
                match fwd.to {
                    Destination::LocalPort(q) | Destination::DecapPort(q) => {
                        hits[1] = Some((q, FlowDirection::Ingress, FlowAction::Accept));
                    }
                    Destination::Underlay(_) => {}
                }
            }
            (Err(DropReason::SgDenied | DropReason::NaclDenied), _) => {
                let Some(at) = run.attrib else {
                    return;
                };
                match from {
                    Some(p) if p == at => {
                        hits[0] = Some((p, FlowDirection::Egress, FlowAction::Reject));
                    }
                    Some(p) => {
                        // Refused by the receiver on this host: the sender let it out.
                        hits[0] = Some((p, FlowDirection::Egress, FlowAction::Accept));
                        hits[1] = Some((at, FlowDirection::Ingress, FlowAction::Reject));
                    }
                    None => {
                        hits[1] = Some((at, FlowDirection::Ingress, FlowAction::Reject));
                        frame = input
                            .get(softvpc_wire::VXLAN_HEADER_LEN..)
                            .unwrap_or_default();
                    }
                }
            }
            _ => return,
        }
        if !hits
            .iter()
            .flatten()
            .any(|(p, _, _)| self.ports.contains_key(p))
        {
            return;
        }
        let Ok(meta) = FrameMeta::parse(frame) else {
            return;
        };
        let Some(ip) = meta.ipv4() else {
            return;
        };
        let (src_port, dst_port) = match (u8::from(ip.proto), ip.l4) {
            (6 | 17, L4Key::Ports { src, dst }) => (src, dst),
            _ => (0, 0),
        };
        if u8::from(ip.proto) == 17 && matches!((src_port, dst_port), (67 | 68, 67 | 68)) {
            return;
        }
        let l3 = meta.l3_bytes();
        let bytes = match l3.get(2..4) {
            Some(b) => u64::from(u16::from_be_bytes([b[0], b[1]])),
            None => l3.len() as u64,
        };
        let flags = if u8::from(ip.proto) == 6 {
            aws_tcp_flags(ip.tcp_flags)
        } else {
            0
        };
        for (port, dir, action) in hits.into_iter().flatten() {
            let Some(log) = self.ports.get_mut(&port) else {
                continue;
            };
            let Some(eni) = table.eni_on_port(port) else {
                continue;
            };
            let (own, other) = match dir {
                FlowDirection::Egress => (ip.src, ip.dst),
                FlowDirection::Ingress => (ip.dst, ip.src),
            };
            if not_logged(table, eni.vni, own, other) {
                continue;
            }
            let key = RecordKey {
                src: ip.src,
                dst: ip.dst,
                proto: u8::from(ip.proto),
                src_port,
                dst_port,
                direction: dir,
                action,
            };
            for w in &mut log.windows {
                if w.start.is_none() {
                    w.start = Some(now);
                }
                match w.flows.get_mut(&key) {
                    Some(c) => {
                        c.packets += 1;
                        c.bytes += bytes;
                        c.last = c.last.max(now);
                        c.tcp_flags |= flags;
                        c.peered |= peered && dir == FlowDirection::Egress;
                    }
                    None if self.held < self.config.record_limit => {
                        self.held += 1;
                        w.flows.insert(
                            key,
                            FlowCounts {
                                packets: 1,
                                bytes,
                                first: now,
                                last: now,
                                tcp_flags: flags,
                                peered: peered && dir == FlowDirection::Egress,
                            },
                        );
                    }
                    None => {
                        w.skipped += 1;
                        self.stats.lost_packets += 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_tcp_flags_keep_fin_syn_rst_and_syn_ack() {
        assert_eq!(aws_tcp_flags(0x02), 2); // SYN
        assert_eq!(aws_tcp_flags(0x12), 18); // SYN-ACK
        assert_eq!(aws_tcp_flags(0x10), 0); // ACK alone
        assert_eq!(aws_tcp_flags(0x18), 0); // PSH-ACK
        assert_eq!(aws_tcp_flags(0x11), 1); // FIN-ACK
        assert_eq!(aws_tcp_flags(0x14), 4); // RST-ACK
        assert_eq!(aws_tcp_flags(0x02) | aws_tcp_flags(0x11), 3);
        assert_eq!(aws_tcp_flags(0x12) | aws_tcp_flags(0x11), 19);
    }
}
