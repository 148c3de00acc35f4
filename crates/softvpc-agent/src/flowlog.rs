//! Flow log records: from the engine's closed windows to lines in each flow log's destination.
//!
//! The control loop derives a [`FlowLogView`] from the mapping records (the flow logs of each
//! ENI placed on this host, which the mapping service sends with the ENI) and publishes it in
//! [`Shared`](crate::datapath::Shared); the data-path thread tells the engine which ENIs to
//! count with which intervals, and hands each closed [`FlowWindow`] to the shipper task over a
//! bounded channel (a full channel loses the window's records, counted). The shipper formats
//! every window for each flow log of that interval ([`format_window`]: AWS's fields, `-` where
//! AWS writes `-`, the `TrafficType` filter, NODATA for an empty window, SKIPDATA when records
//! were lost) and sends them to the server (`PutFlowLogRecords`), which appends them to the
//! flow log's file. What cannot be delivered after a few tries is counted as lost.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipnet::Ipv4Net;
use softvpc_engine::{FlowAction, FlowDirection, FlowRecord, FlowWindow};
use softvpc_mapping::{Field, FlowLogSpec, Records, TrafficType};
use softvpc_proto::pb;
use tracing::{debug, warn};

/// Windows waiting for the shipper at most.
pub const QUEUE: usize = 1024;
/// Lines per `PutFlowLogRecords` call at most.
const MAX_LINES_PER_CALL: usize = 10_000;
/// Tries per call before its records count as lost.
const TRIES: u32 = 3;

/// What a local ENI's records need besides the counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniLog {
    /// `interface-id`.
    pub eni_id: String,
    /// `vpc-id`.
    pub vpc_id: String,
    /// `subnet-id`.
    pub subnet_id: String,
    /// Empty: `-`.
    pub instance_id: String,
    /// The primary private address (AWS's srcaddr/dstaddr on the ENI's side).
    pub ip: Ipv4Addr,
    /// Its VPC's CIDR blocks (for `traffic-path`).
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// The flow logs covering it.
    pub specs: Vec<FlowLogSpec>,
}

/// The flow-logged ENIs of this host, by ENI id.
pub type FlowLogView = HashMap<String, Arc<EniLog>>;

/// The flow-logged ENIs placed on host `host_id` in `records`.
pub fn view_of(records: &Records, host_id: &str) -> FlowLogView {
    records
        .enis
        .values()
        .filter(|e| !host_id.is_empty() && e.host_id == host_id && !e.flow_logs.is_empty())
        .map(|e| {
            let log = EniLog {
                eni_id: e.eni_id.clone(),
                vpc_id: e.vpc_id.clone(),
                subnet_id: e.subnet_id.clone(),
                instance_id: e.instance_id.clone(),
                ip: e.ip,
                vpc_cidrs: records
                    .vpcs
                    .get(&e.vpc_id)
                    .map(|v| v.cidrs.clone())
                    .unwrap_or_default(),
                specs: e.flow_logs.clone(),
            };
            (e.eni_id.clone(), Arc::new(log))
        })
        .collect()
}

/// What the engine should count: each logged ENI with its flow logs' distinct intervals.
pub fn intervals(view: &FlowLogView) -> HashMap<Box<str>, Vec<Duration>> {
    view.iter()
        .map(|(id, log)| {
            let mut v: Vec<Duration> = log
                .specs
                .iter()
                .map(|s| Duration::from_secs(u64::from(s.interval)))
                .collect();
            v.sort();
            v.dedup();
            (id.as_str().into(), v)
        })
        .collect()
}

/// Turns the engine's `Instant`s into Unix seconds (one reading of both clocks).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    instant: Instant,
    unix: Duration,
}

impl Clock {
    /// Reads both clocks now.
    pub fn now() -> Clock {
        Clock {
            instant: Instant::now(),
            unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    /// A clock where `instant` is `unix` seconds (tests).
    pub fn at(instant: Instant, unix: u64) -> Clock {
        Clock {
            instant,
            unix: Duration::from_secs(unix),
        }
    }

    /// `t` in Unix seconds.
    pub fn unix(&self, t: Instant) -> u64 {
        let d = if t >= self.instant {
            self.unix + (t - self.instant)
        } else {
            self.unix.saturating_sub(self.instant - t)
        };
        d.as_secs()
    }
}

/// `traffic-path` of an egress record: 4 over a peering connection, 1 inside the VPC, else 8
/// (through the internet gateway).
fn traffic_path(log: &EniLog, r: &FlowRecord) -> &'static str {
    if r.counts.peered {
        "4"
    } else if log.vpc_cidrs.iter().any(|c| c.contains(&r.key.dst)) {
        "1"
    } else {
        "8"
    }
}

/// The version a record of `fields` says: the highest among them.
fn version(fields: &[Field]) -> u8 {
    fields.iter().map(|f| f.version()).max().unwrap_or(2)
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// One line: a record (`Some`), or a window without one (`None`: NODATA or SKIPDATA).
fn line(
    log: &EniLog,
    spec: &FlowLogSpec,
    clock: &Clock,
    w: &FlowWindow,
    r: Option<&FlowRecord>,
    status: &str,
) -> String {
    let mut out = String::with_capacity(160);
    for (i, f) in spec.fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let ports = r.is_some_and(|r| matches!(r.key.proto, 6 | 17));
        // Writing to a String cannot fail.
        let _ = match (f, r) {
            (Field::Version, _) => write!(out, "{}", version(&spec.fields)),
            (Field::AccountId, _) => write!(out, "{}", dash(&spec.account_id)),
            (Field::InterfaceId, _) => write!(out, "{}", log.eni_id),
            (Field::VpcId, _) => write!(out, "{}", dash(&log.vpc_id)),
            (Field::SubnetId, _) => write!(out, "{}", dash(&log.subnet_id)),
            (Field::InstanceId, _) => write!(out, "{}", dash(&log.instance_id)),
            (Field::Region, _) => write!(out, "{}", dash(&spec.region)),
            (Field::AzId, _) => write!(out, "{}", dash(&spec.az_id)),
            (Field::LogStatus, _) => write!(out, "{status}"),
            (Field::Start, Some(r)) => write!(out, "{}", clock.unix(r.counts.first)),
            (Field::End, Some(r)) => write!(out, "{}", clock.unix(r.counts.last)),
            (Field::Start, None) => write!(out, "{}", clock.unix(w.start)),
            (Field::End, None) => write!(out, "{}", clock.unix(w.end)),
            (Field::Srcaddr, Some(r)) => match r.key.direction {
                FlowDirection::Egress => write!(out, "{}", log.ip),
                FlowDirection::Ingress => write!(out, "{}", r.key.src),
            },
            (Field::Dstaddr, Some(r)) => match r.key.direction {
                FlowDirection::Egress => write!(out, "{}", r.key.dst),
                FlowDirection::Ingress => write!(out, "{}", log.ip),
            },
            (Field::PktSrcaddr, Some(r)) => write!(out, "{}", r.key.src),
            (Field::PktDstaddr, Some(r)) => write!(out, "{}", r.key.dst),
            (Field::Srcport, Some(r)) if ports => write!(out, "{}", r.key.src_port),
            (Field::Dstport, Some(r)) if ports => write!(out, "{}", r.key.dst_port),
            (Field::Srcport | Field::Dstport, Some(_)) => write!(out, "0"),
            (Field::Protocol, Some(r)) => write!(out, "{}", r.key.proto),
            (Field::Packets, Some(r)) => write!(out, "{}", r.counts.packets),
            (Field::Bytes, Some(r)) => write!(out, "{}", r.counts.bytes),
            (Field::Action, Some(r)) => write!(out, "{}", r.key.action.as_str()),
            (Field::TcpFlags, Some(r)) => write!(out, "{}", r.counts.tcp_flags),
            (Field::Type, Some(_)) => write!(out, "IPv4"),
            (Field::FlowDirection, Some(r)) => write!(out, "{}", r.key.direction.as_str()),
            (Field::TrafficPath, Some(r)) if r.key.direction == FlowDirection::Egress => {
                write!(out, "{}", traffic_path(log, r))
            }
            // Not applicable here (no Wavelength/Outposts, AWS services, ECS, BPA, Nitro
            // encryption), or a field of a record when there is none: AWS writes `-`.
            _ => write!(out, "-"),
        };
    }
    out
}

/// The lines of window `w` of ENI `log` for flow log `spec` (whose interval it must have):
/// one per record its `TrafficType` keeps, NODATA when the window saw nothing, and a SKIPDATA
/// line when records were lost.
pub fn format_window(
    log: &EniLog,
    spec: &FlowLogSpec,
    clock: &Clock,
    w: &FlowWindow,
) -> Vec<String> {
    let keep = |a: FlowAction| match spec.traffic_type {
        TrafficType::All => true,
        TrafficType::Accept => a == FlowAction::Accept,
        TrafficType::Reject => a == FlowAction::Reject,
    };
    let mut lines: Vec<String> = w
        .records
        .iter()
        .filter(|r| keep(r.key.action))
        .map(|r| line(log, spec, clock, w, Some(r), "OK"))
        .collect();
    if w.skipped > 0 {
        lines.push(line(log, spec, clock, w, None, "SKIPDATA"));
    } else if w.records.is_empty() {
        lines.push(line(log, spec, clock, w, None, "NODATA"));
    }
    lines
}

/// Windows lost between the engine and the server (the shipping queue was full, or the server
/// could not be reached after [`TRIES`]), kept as their span only, so that a later batch writes
/// a SKIPDATA line over that span: lost records show in the file, as AWS's SKIPDATA says. One
/// entry per ENI and interval (the spans of its lost windows merged), at most [`MAX_LOST`]
/// entries; past that a loss is only counted.
#[derive(Debug, Default)]
pub struct LostWindows {
    windows: Vec<FlowWindow>,
}

/// At most this many ENI and interval pairs with lost windows are remembered.
pub const MAX_LOST: usize = 4096;

impl LostWindows {
    /// Remembers that window `w` was lost (its records are not kept).
    pub fn add(&mut self, w: &FlowWindow) {
        let lost = (w.records.len() as u64 + w.skipped).max(1);
        if let Some(l) = self
            .windows
            .iter_mut()
            .find(|l| l.eni_id == w.eni_id && l.interval == w.interval)
        {
            l.start = l.start.min(w.start);
            l.end = l.end.max(w.end);
            l.skipped += lost;
        } else if self.windows.len() < MAX_LOST {
            self.windows.push(FlowWindow {
                eni_id: w.eni_id.clone(),
                interval: w.interval,
                start: w.start,
                end: w.end,
                records: Vec::new(),
                skipped: lost,
            });
        }
    }

    /// The lost spans as windows without records (each formats as one SKIPDATA line), and
    /// forgets them.
    pub fn take(&mut self) -> Vec<FlowWindow> {
        std::mem::take(&mut self.windows)
    }

    /// True when nothing was lost since the last [`take`](Self::take).
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

/// The shipper's counters (for `/metrics`).
#[derive(Debug, Default)]
pub struct FlowLogCounters {
    /// Records the server appended.
    pub written: AtomicU64,
    /// Records the server refused.
    pub refused: AtomicU64,
    /// Records lost between the engine and the server (queue full, server unreachable).
    pub lost: AtomicU64,
}

/// The batches of some windows, one per flow log and ENI, with their record counts.
pub fn batches(
    view: &FlowLogView,
    clock: &Clock,
    windows: &[FlowWindow],
) -> (Vec<pb::FlowLogBatch>, u64) {
    let mut out: Vec<pb::FlowLogBatch> = Vec::new();
    let mut n = 0u64;
    for w in windows {
        let Some(log) = view.get(&*w.eni_id) else {
            // The flow log went away meanwhile: nothing to write to.
            continue;
        };
        for spec in log
            .specs
            .iter()
            .filter(|s| Duration::from_secs(u64::from(s.interval)) == w.interval)
        {
            let lines = format_window(log, spec, clock, w);
            n += lines.len() as u64;
            match out
                .iter_mut()
                .find(|b| b.flow_log_id == spec.flow_log_id && b.eni_id == log.eni_id)
            {
                Some(b) => b.lines.extend(lines),
                None => out.push(pb::FlowLogBatch {
                    flow_log_id: spec.flow_log_id.clone(),
                    eni_id: log.eni_id.clone(),
                    lines,
                }),
            }
        }
    }
    out.retain(|b| !b.lines.is_empty());
    (out, n)
}

/// Receives closed windows and ships their records, forever.
pub async fn ship(
    mut rx: tokio::sync::mpsc::Receiver<FlowWindow>,
    view: Arc<arc_swap::ArcSwap<FlowLogView>>,
    connector: Arc<crate::trust::Connector>,
    counters: Arc<FlowLogCounters>,
) {
    let clock = Clock::now();
    let mut client = None;
    let mut lost = LostWindows::default();
    while let Some(first) = rx.recv().await {
        // What an earlier call could not deliver goes first, as SKIPDATA lines.
        let mut windows = lost.take();
        let carried = windows.len();
        windows.push(first);
        let mut lines = windows[carried].records.len();
        while lines < MAX_LINES_PER_CALL {
            match rx.try_recv() {
                Ok(w) => {
                    lines += w.records.len();
                    windows.push(w);
                }
                Err(_) => break,
            }
        }
        let (batches, n) = batches(&view.load(), &clock, &windows);
        if n == 0 {
            continue;
        }
        let req = pb::PutFlowLogRecordsRequest { batches };
        let mut delivered = false;
        for attempt in 0..TRIES {
            if client.is_none() {
                client = connector.client().ok();
            }
            let Some(c) = client.as_mut() else {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                continue;
            };
            match c.put_flow_log_records(req.clone()).await {
                Ok(r) => {
                    let r = r.into_inner();
                    counters.written.fetch_add(r.written, Ordering::Relaxed);
                    counters.refused.fetch_add(r.refused, Ordering::Relaxed);
                    if r.refused > 0 {
                        warn!(refused = r.refused, "the server refused flow log records");
                    }
                    debug!(written = r.written, "flow log records shipped");
                    delivered = true;
                    break;
                }
                Err(e) => {
                    warn!(error = %e, attempt, "shipping flow log records failed");
                    client = None;
                    tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                }
            }
        }
        if !delivered {
            for w in &windows {
                lost.add(w);
            }
            // Count the new windows' lines only: the carried spans were counted when lost.
            let n = self::batches(&view.load(), &clock, &windows[carried..]).1;
            counters.lost.fetch_add(n, Ordering::Relaxed);
            warn!(
                records = n,
                "flow log records lost: the server could not be reached"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use softvpc_engine::{FlowCounts, RecordKey};
    use softvpc_mapping::flowlog::{parse_format, DEFAULT_FIELDS};

    fn log(specs: Vec<FlowLogSpec>) -> EniLog {
        EniLog {
            eni_id: "eni-1".into(),
            vpc_id: "vpc-1".into(),
            subnet_id: "subnet-1".into(),
            instance_id: "i-1".into(),
            ip: Ipv4Addr::new(10, 0, 0, 5),
            vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
            specs,
        }
    }

    fn spec(traffic: TrafficType, fields: Vec<Field>) -> FlowLogSpec {
        FlowLogSpec {
            flow_log_id: "fl-1".into(),
            traffic_type: traffic,
            interval: 60,
            fields,
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            az_id: "use1-az1".into(),
        }
    }

    fn window(t0: Instant, records: Vec<FlowRecord>, skipped: u64) -> FlowWindow {
        FlowWindow {
            eni_id: "eni-1".into(),
            interval: Duration::from_secs(60),
            start: t0,
            end: t0 + Duration::from_secs(60),
            records,
            skipped,
        }
    }

    fn record(t0: Instant, dir: FlowDirection, action: FlowAction, proto: u8) -> FlowRecord {
        let (src, dst) = match dir {
            FlowDirection::Egress => (Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 1, 9)),
            FlowDirection::Ingress => (Ipv4Addr::new(10, 0, 1, 9), Ipv4Addr::new(10, 0, 0, 5)),
        };
        FlowRecord {
            key: RecordKey {
                src,
                dst,
                proto,
                src_port: if proto == 6 { 40000 } else { 0 },
                dst_port: if proto == 6 { 22 } else { 0 },
                direction: dir,
                action,
            },
            counts: FlowCounts {
                packets: 3,
                bytes: 180,
                first: t0 + Duration::from_secs(2),
                last: t0 + Duration::from_secs(9),
                tcp_flags: if proto == 6 { 3 } else { 0 },
                peered: false,
            },
        }
    }

    #[test]
    fn the_default_format_is_aws_version_2() {
        let t0 = Instant::now();
        let clock = Clock::at(t0, 1_700_000_000);
        let s = spec(TrafficType::All, DEFAULT_FIELDS.to_vec());
        let w = window(
            t0,
            vec![
                record(t0, FlowDirection::Egress, FlowAction::Accept, 6),
                record(t0, FlowDirection::Ingress, FlowAction::Reject, 1),
            ],
            0,
        );
        let lines = format_window(&log(vec![]), &s, &clock, &w);
        assert_eq!(
            lines,
            [
                "2 123456789012 eni-1 10.0.0.5 10.0.1.9 40000 22 6 3 180 1700000002 1700000009 ACCEPT OK",
                "2 123456789012 eni-1 10.0.1.9 10.0.0.5 0 0 1 3 180 1700000002 1700000009 REJECT OK",
            ]
        );
        // TrafficType filters; an empty window is NODATA over the window; lost records SKIPDATA.
        let accept = spec(TrafficType::Accept, DEFAULT_FIELDS.to_vec());
        assert_eq!(format_window(&log(vec![]), &accept, &clock, &w).len(), 1);
        let reject = spec(TrafficType::Reject, DEFAULT_FIELDS.to_vec());
        assert!(format_window(&log(vec![]), &reject, &clock, &w)[0].contains("REJECT OK"));
        let empty = window(t0, vec![], 0);
        assert_eq!(
            format_window(&log(vec![]), &s, &clock, &empty),
            ["2 123456789012 eni-1 - - - - - - - 1700000000 1700000060 - NODATA"]
        );
        let skipped = window(t0, vec![], 7);
        assert_eq!(
            format_window(&log(vec![]), &s, &clock, &skipped),
            ["2 123456789012 eni-1 - - - - - - - 1700000000 1700000060 - SKIPDATA"]
        );
    }

    #[test]
    fn custom_fields_and_the_version_they_imply() {
        let t0 = Instant::now();
        let clock = Clock::at(t0, 1_700_000_000);
        let fields = parse_format(
            "${version} ${vpc-id} ${subnet-id} ${instance-id} ${tcp-flags} ${type} \
${pkt-srcaddr} ${pkt-dstaddr} ${region} ${az-id} ${sublocation-type} ${flow-direction} \
${traffic-path} ${pkt-dst-aws-service} ${ecs-task-id} ${action}",
        )
        .unwrap();
        let s = spec(TrafficType::All, fields);
        let mut out = record(t0, FlowDirection::Egress, FlowAction::Accept, 6);
        let inbound = record(t0, FlowDirection::Ingress, FlowAction::Accept, 6);
        let w = window(t0, vec![out, inbound], 0);
        let lines = format_window(&log(vec![]), &s, &clock, &w);
        assert_eq!(
            lines[0],
            "7 vpc-1 subnet-1 i-1 3 IPv4 10.0.0.5 10.0.1.9 us-east-1 use1-az1 - egress 1 - - ACCEPT"
        );
        assert_eq!(
            lines[1],
            "7 vpc-1 subnet-1 i-1 3 IPv4 10.0.1.9 10.0.0.5 us-east-1 use1-az1 - ingress - - - ACCEPT"
        );
        // Outside the VPC: the internet gateway's path; over peering: 4.
        out.key.dst = Ipv4Addr::new(203, 0, 113, 9);
        let l = format_window(&log(vec![]), &s, &clock, &window(t0, vec![out], 0));
        assert!(l[0].contains(" egress 8 "), "{}", l[0]);
        out.counts.peered = true;
        let l = format_window(&log(vec![]), &s, &clock, &window(t0, vec![out], 0));
        assert!(l[0].contains(" egress 4 "), "{}", l[0]);
        // A detached ENI has no instance: `-`.
        let mut detached = log(vec![]);
        detached.instance_id.clear();
        let l = format_window(&detached, &s, &clock, &window(t0, vec![out], 0));
        assert!(l[0].starts_with("7 vpc-1 subnet-1 - "), "{}", l[0]);
    }

    /// Windows lost on the way to the server come back as one SKIPDATA line per ENI and
    /// interval over their whole span, whatever their records were; other ENIs and intervals
    /// stay apart; the bound holds.
    #[test]
    fn lost_windows_are_written_as_skipdata_over_their_span() {
        let t0 = Instant::now();
        let clock = Clock::at(t0, 1_700_000_000);
        let s = spec(TrafficType::All, DEFAULT_FIELDS.to_vec());
        let mut lost = LostWindows::default();
        assert!(lost.is_empty());
        let first = window(
            t0,
            vec![record(t0, FlowDirection::Egress, FlowAction::Accept, 6)],
            0,
        );
        let mut second = window(t0 + Duration::from_secs(60), vec![], 0);
        second.end = t0 + Duration::from_secs(120);
        lost.add(&first);
        lost.add(&second);
        let mut other_eni = window(t0, vec![], 3);
        other_eni.eni_id = "eni-2".into();
        lost.add(&other_eni);
        let mut other_interval = window(t0, vec![], 0);
        other_interval.interval = Duration::from_secs(600);
        lost.add(&other_interval);
        let spans = lost.take();
        assert!(lost.is_empty());
        assert_eq!(spans.len(), 3);
        assert!(spans.iter().all(|w| w.records.is_empty() && w.skipped > 0));
        assert_eq!(
            format_window(&log(vec![]), &s, &clock, &spans[0]),
            ["2 123456789012 eni-1 - - - - - - - 1700000000 1700000120 - SKIPDATA"]
        );
        assert_eq!(spans[1].eni_id.as_ref(), "eni-2");
        assert_eq!(spans[1].skipped, 3);
        // A span lost again merges with what was lost since.
        lost.add(&spans[0]);
        let mut third = window(t0 + Duration::from_secs(120), vec![], 0);
        third.end = t0 + Duration::from_secs(180);
        lost.add(&third);
        let again = lost.take();
        assert_eq!(again.len(), 1);
        assert_eq!(
            (again[0].start, again[0].end),
            (t0, t0 + Duration::from_secs(180))
        );
        // Bounded: past MAX_LOST pairs a loss is only counted.
        for i in 0..MAX_LOST + 10 {
            let mut w = window(t0, vec![], 0);
            w.eni_id = format!("eni-{i}").into();
            lost.add(&w);
        }
        assert_eq!(lost.take().len(), MAX_LOST);
    }

    #[test]
    fn a_window_goes_to_every_flow_log_of_its_interval() {
        let t0 = Instant::now();
        let clock = Clock::at(t0, 1_700_000_000);
        let mut a = spec(TrafficType::All, DEFAULT_FIELDS.to_vec());
        let mut b = a.clone();
        b.flow_log_id = "fl-2".into();
        b.traffic_type = TrafficType::Reject;
        let mut c = a.clone();
        c.flow_log_id = "fl-3".into();
        c.interval = 600;
        a.flow_log_id = "fl-1".into();
        let mut view = FlowLogView::new();
        view.insert("eni-1".into(), Arc::new(log(vec![a, b, c])));
        let w = window(
            t0,
            vec![record(t0, FlowDirection::Egress, FlowAction::Accept, 6)],
            0,
        );
        let (batches, n) = batches(&view, &clock, &[w]);
        let ids: Vec<&str> = batches.iter().map(|b| b.flow_log_id.as_str()).collect();
        // The REJECT-only flow log gets no record (and no NODATA: the window saw traffic); the
        // 600 s one gets none of a 60 s window.
        assert_eq!(ids, ["fl-1"]);
        assert_eq!(batches[0].lines.len(), 1);
        assert_eq!(n, 1);
        let i = intervals(&view);
        assert_eq!(
            i[&Box::<str>::from("eni-1")],
            [Duration::from_secs(60), Duration::from_secs(600)]
        );
    }
}
