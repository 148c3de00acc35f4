//! The agent's HTTP endpoint (inside its network namespace): `/metrics`, `/mappings`, `/healthz`,
//! and `softvpc trace`'s `POST /trace` and `POST /trace/underlay` (see [`crate::trace`]).
//!
//! `/metrics` is Prometheus text: the engine's counters (`softvpc_drops_total{reason}`,
//! `softvpc_frames_total{path}`, `softvpc_bytes_total{path}`), the I/O shell's error counters and
//! the agent's gauges. The data path is asked for fresh counters (answering within
//! [`STATS_TIMEOUT`]), falling back to the copy it publishes after batches.
//! The drops outside the engine come from the kernel at each scrape: every port's interface
//! counters over netlink in its instance's namespace (`softvpc_port_tx_dropped_total`: the
//! TAP's queue was full) and the VXLAN socket's drop counter
//! (`softvpc_underlay_socket_drops_total`: its receive buffer was full).
//! `/mappings` is the agent's current view as JSON, for debugging and tests.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::datapath::{Command, Stats};
use crate::reconcile::{Skip, SKIP_REASONS};
use crate::status::{AgentState, AgentStatus};
use softvpc_mapping::record::format_mac;
use softvpc_netlink::{LinkStats, Netlink};
use std::collections::BTreeMap;
use tracing::debug;

/// How long `/metrics` waits for the data path's fresh counters.
pub const STATS_TIMEOUT: Duration = Duration::from_millis(200);

/// The endpoint's routes.
pub fn router(state: Arc<AgentState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/mappings", get(mappings))
        .route("/healthz", get(healthz))
        .route("/trace", axum::routing::post(crate::trace::trace))
        .route(
            "/trace/underlay",
            axum::routing::post(crate::trace::trace_underlay),
        )
        .with_state(state)
}

async fn fresh_stats(state: &AgentState) -> Stats {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if state.commander.send(Command::Stats(tx)).is_ok() {
        if let Ok(Ok(stats)) = tokio::time::timeout(STATS_TIMEOUT, rx).await {
            return stats;
        }
    }
    state
        .datapath
        .stats
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default()
}

/// The kernel's counters of one local port's interface (the instance's `eth<N>`, the TAP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortLinkStats {
    /// The ENI the TAP serves.
    pub eni_id: String,
    /// The instance holding the ENI.
    pub instance_id: String,
    /// The TAP's name inside the instance's namespace.
    pub dev: String,
    /// The kernel's counters of the TAP.
    pub link: LinkStats,
}

/// Reads every local port's interface counters over netlink in its instance's namespace. A
/// port whose namespace or interface is gone (being removed) is left out.
async fn port_link_stats(view: &AgentStatus) -> Vec<PortLinkStats> {
    let mut out = Vec::with_capacity(view.ports.len());
    let mut sockets: BTreeMap<&str, Netlink> = BTreeMap::new();
    for p in view.ports.values() {
        let nl = match sockets.get(p.netns.as_str()) {
            Some(nl) => nl.clone(),
            None => match Netlink::connect_in(&p.netns) {
                Ok(nl) => {
                    sockets.insert(&p.netns, nl.clone());
                    nl
                }
                Err(e) => {
                    debug!(netns = %p.netns, error = %e, "no port counters");
                    continue;
                }
            },
        };
        let dev = p.spec.ifname();
        match nl.link_stats(&dev).await {
            Ok(Some(link)) => out.push(PortLinkStats {
                eni_id: p.spec.eni_id.clone(),
                instance_id: p.spec.instance_id.clone(),
                dev,
                link,
            }),
            Ok(None) => {}
            Err(e) => debug!(netns = %p.netns, dev, error = %e, "no port counters"),
        }
    }
    out
}

async fn metrics(State(state): State<Arc<AgentState>>) -> impl IntoResponse {
    let stats = fresh_stats(&state).await;
    let view = state.status.load();
    let ports = port_link_stats(&view).await;
    let underlay_drops = state.underlay_drops.read().ok();
    let body = render(&state, &view, &stats, &ports, underlay_drops);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// Renders the Prometheus text for `stats` and `view`, with the kernel's drop counters outside
/// the engine: each port's interface and the VXLAN socket (`None` if it could not be read).
pub fn render(
    state: &AgentState,
    view: &AgentStatus,
    stats: &Stats,
    ports: &[PortLinkStats],
    underlay_drops: Option<u64>,
) -> String {
    let mut out = String::with_capacity(4096);
    stats.engine.write_prometheus(&mut out);
    write_kernel_drops(&mut out, ports, underlay_drops);
    write_flow_logs(&mut out, state, stats);
    write_imds(&mut out, &stats.imds);

    // Writing to a String cannot fail.
    write_header(
        &mut out,
        ("softvpc_io_errors_total", "counter"),
        "I/O shell errors (not engine drops), by operation.",
    );
    for (op, n) in stats.io.errors() {
        let _ = writeln!(out, "softvpc_io_errors_total{{op=\"{op}\"}} {n}");
    }
    if let Some(f) = state.datapath.fast_path.get() {
        write_fast_path(&mut out, f);
    }
    let (v, records) = (view, &view.records);
    write_header(
        &mut out,
        ("softvpc_enis_skipped", "gauge"),
        "ENIs placed on this host that get no interface, by reason.",
    );
    for reason in SKIP_REASONS {
        let n = v.skipped.iter().filter(|s| s.reason() == reason).count();
        let _ = writeln!(out, "softvpc_enis_skipped{{reason=\"{reason}\"}} {n}");
    }
    let gauges: [Row<'_>; 14] = [
        (
            "softvpc_io_batches_total",
            "counter",
            "Data-path wake-ups that handled frames.",
            stats.io.batches,
        ),
        (
            "softvpc_mapping_revision",
            "gauge",
            "Last mapping revision applied.",
            v.revision,
        ),
        (
            "softvpc_table_revision",
            "gauge",
            "Mapping revision of the table the data path decides with (the kernel fast path holds no flow of an older one).",
            table_in_use(state).map_or(0, |t| t.revision),
        ),
        (
            "softvpc_mapping_enis",
            "gauge",
            "ENIs in the agent's mapping view.",
            records.enis.len() as u64,
        ),
        (
            "softvpc_mapping_hosts",
            "gauge",
            "Registered hosts in the agent's mapping view.",
            records.hosts.len() as u64,
        ),
        (
            "softvpc_ports",
            "gauge",
            "Local ports (TAPs) served by the data path.",
            stats.ports as u64,
        ),
        (
            "softvpc_instances",
            "gauge",
            "Local instance namespaces held by this agent.",
            v.instances.len() as u64,
        ),
        (
            "softvpc_vpcs_held",
            "gauge",
            "VPCs in the agent's mapping view.",
            records.vpcs.len() as u64,
        ),
        (
            "softvpc_mapping_resyncs_total",
            "counter",
            "Full snapshots received after the first.",
            state.resyncs.load(Ordering::Relaxed),
        ),
        (
            "softvpc_mapping_resumes_total",
            "counter",
            "Watches reopened from the agent's revision and answered with what it missed (no full snapshot).",
            state.resumes.load(Ordering::Relaxed),
        ),
        (
            "softvpc_interfaces_adopted_total",
            "counter",
            "Instance interfaces taken over from an earlier run of the agent (persistent TAPs attached again).",
            state.adopted.load(Ordering::Relaxed),
        ),
        (
            "softvpc_instance_errors_total",
            "counter",
            "Instance setups or teardowns that failed.",
            state.instance_errors.load(Ordering::Relaxed),
        ),
        (
            "softvpc_mapping_watching",
            "gauge",
            "1 while a watch stream is open.",
            u64::from(state.watching.load(Ordering::Relaxed)),
        ),
        (
            "softvpc_mapping_stale",
            "gauge",
            "1 while the view is the one an earlier run saved on disk, not yet confirmed by a server.",
            u64::from(state.stale.load(Ordering::Relaxed)),
        ),
    ];
    write_rows(&mut out, &gauges);
    let timings = [
        (
            "softvpc_table_publish_seconds",
            "From a watch message that changed the mappings to the new table being live.",
            &state.table_lag,
        ),
        (
            "softvpc_instance_plumbing_seconds",
            "Carrying out one reconcile's steps (namespaces, interfaces, addresses, routes).",
            &state.plumbing,
        ),
    ];
    for (name, help, timing) in timings {
        let (count, sum, max) = timing.read();
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} summary\n{name}_sum {}\n{name}_count {count}\n\
             # HELP {name}_max The longest.\n# TYPE {name}_max gauge\n{name}_max {}",
            sum.as_secs_f64(),
            max.as_secs_f64()
        );
    }
    out
}

/// The drops the engine cannot see: in the TAP queues and the VXLAN socket's receive buffer.
fn write_kernel_drops(out: &mut String, ports: &[PortLinkStats], underlay_drops: Option<u64>) {
    type Family = (&'static str, &'static str, fn(&LinkStats) -> u64);
    let families: [Family; 2] = [
        (
            "softvpc_port_tx_dropped_total",
            "Frames an instance sent that its TAP dropped because the agent had not read the \
             queue in time (the interface's tx_dropped, as `ip -s link` shows inside the instance).",
            |l| l.tx_dropped,
        ),
        (
            "softvpc_port_rx_dropped_total",
            "Frames the agent wrote to a TAP that the instance's stack dropped (the interface's \
             rx_dropped).",
            |l| l.rx_dropped,
        ),
    ];
    for (name, help, get) in families {
        write_header(out, (name, "counter"), help);
        for p in ports {
            let _ = writeln!(
                out,
                "{name}{{eni=\"{}\",instance=\"{}\",dev=\"{}\"}} {}",
                p.eni_id,
                p.instance_id,
                p.dev,
                get(&p.link)
            );
        }
    }
    if let Some(n) = underlay_drops {
        let _ = writeln!(
            out,
            "# HELP softvpc_underlay_socket_drops_total Datagrams the kernel dropped at the VXLAN \
             socket, mostly because its receive buffer was full (the socket's drops in \
             /proc/net/udp).\n# TYPE softvpc_underlay_socket_drops_total counter\n\
             softvpc_underlay_socket_drops_total {n}"
        );
    }
}

/// The instance metadata service: answers by status, dropped packets, stacks.
fn write_imds(out: &mut String, c: &crate::imds::ImdsCounters) {
    let _ = writeln!(
        out,
        "# HELP softvpc_imds_responses_total Answers of the instance metadata service, by HTTP \
         status.\n# TYPE softvpc_imds_responses_total counter"
    );
    for status in [200u16, 400, 401, 403, 404, 405] {
        let n = c.responses.get(&status).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "softvpc_imds_responses_total{{status=\"{status}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP softvpc_imds_packets_dropped_total Packets to the metadata service dropped (too \
         many ports with connections, or a port's queue full).\n\
         # TYPE softvpc_imds_packets_dropped_total counter\n\
         softvpc_imds_packets_dropped_total {}\n\
         # HELP softvpc_imds_stacks Ports with a metadata TCP stack now.\n\
         # TYPE softvpc_imds_stacks gauge\nsoftvpc_imds_stacks {}",
        c.packets_dropped, c.stacks
    );
}

/// The flow log counters: records made, written, refused, lost (by where), and held.
fn write_flow_logs(out: &mut String, state: &AgentState, stats: &Stats) {
    let c = &state.flow_logs;
    let f = &stats.flow_logs;
    write_rows(
        out,
        &[
            (
                "softvpc_flow_log_records_total",
                "counter",
                "Flow log records the engine made (closed windows' records).",
                f.records,
            ),
            (
                "softvpc_flow_log_records_written_total",
                "counter",
                "Flow log lines the server appended to their destinations (records, NODATA and \
                 SKIPDATA lines).",
                c.written.load(Ordering::Relaxed),
            ),
            (
                "softvpc_flow_log_records_refused_total",
                "counter",
                "Flow log lines the server refused.",
                c.refused.load(Ordering::Relaxed),
            ),
        ],
    );
    let lost = "softvpc_flow_log_records_lost_total";
    write_header(
        out,
        (lost, "counter"),
        "Flow log records lost: the shipper's queue was full, or the server could not be \
         reached (a later SKIPDATA line covers their windows).",
    );
    let _ = writeln!(
        out,
        "{lost}{{reason=\"queue_full\"}} {}\n{lost}{{reason=\"undeliverable\"}} {}",
        state.datapath.flow_records_lost.load(Ordering::Relaxed),
        c.lost.load(Ordering::Relaxed),
    );
    write_rows(
        out,
        &[
            (
                "softvpc_flow_log_packets_lost_total",
                "counter",
                "Packets not recorded because the engine held as many flow log records as it may \
                 (their windows show SKIPDATA).",
                f.lost_packets,
            ),
            (
                "softvpc_flow_log_records_held",
                "gauge",
                "Flow log records the engine holds now.",
                f.held,
            ),
        ],
    );
}

async fn mappings(State(state): State<Arc<AgentState>>) -> Json<Value> {
    Json(mappings_json(&state, &state.status.load()))
}

fn table_in_use(state: &AgentState) -> Option<crate::status::TableInUse> {
    state.datapath.tables.lock().ok().and_then(|t| t.in_use)
}

/// The `/mappings` document.
pub fn mappings_json(state: &AgentState, snap: &AgentStatus) -> Value {
    let r = &snap.records;
    json!({
        "host_id": snap.host_id,
        "host_name": state.host_name,
        "underlay_ip": state.underlay_ip.to_string(),
        "epoch": snap.epoch,
        "revision": snap.revision,
        "stale": state.stale.load(Ordering::Relaxed),
        // The table the data path decides with (null before its first): built at `revision`.
        "table": table_in_use(state).map(|t| json!({
            "revision": t.revision,
            "generation": t.generation,
            "at_unix_ns": t.at_unix_ns,
        })),
        "local_changes": state
            .datapath
            .local_changes
            .lock()
            .map(|c| c.iter().map(|c| json!({
                "revision": c.revision,
                "generation": c.generation,
                // null until the data path uses the table
                "at_unix_ns": (c.at_unix_ns != 0).then_some(c.at_unix_ns),
                "added": c.added,
                "removed": c.removed,
            })).collect::<Vec<_>>())
            .unwrap_or_default(),
        "hosts": r.hosts.values().map(|h| json!({
            "host_id": h.host_id,
            "name": h.name,
            "underlay_ip": h.underlay_ip.to_string(),
        })).collect::<Vec<_>>(),
        "vpcs": r.vpcs.values().map(|v| json!({
            "vpc_id": v.vpc_id,
            "vni": v.vni,
            "cidrs": v.cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "subnets": r.subnets.values().map(|s| json!({
            "subnet_id": s.subnet_id,
            "vpc_id": s.vpc_id,
            "cidr": s.cidr.to_string(),
        })).collect::<Vec<_>>(),
        "enis": r.enis.values().map(|e| json!({
            "eni_id": e.eni_id,
            "vpc_id": e.vpc_id,
            "vni": e.vni,
            "subnet_id": e.subnet_id,
            "ip": e.ip.to_string(),
            "secondary_ips": e.secondary_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "mac": format_mac(&e.mac),
            "host_id": e.host_id,
            "host_underlay_ip": e.host_underlay_ip.map(|ip| ip.to_string()),
            "instance_id": e.instance_id,
            "instance_name": e.instance_name,
        })).collect::<Vec<_>>(),
        "ports": snap.ports.values().map(|p| json!({
            "eni_id": p.spec.eni_id,
            "instance_id": p.spec.instance_id,
            "device_index": p.spec.device_index,
            "dev": p.spec.ifname(),
            "port": p.port.0,
            "tap": p.tap,
            "netns": p.netns,
            "ip": p.spec.ip.to_string(),
            "secondary_ips": p.spec.secondary_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "mac": format_mac(&p.spec.mac),
            "subnet": p.spec.subnet.to_string(),
            "gateway": p.spec.gateway.to_string(),
            "route_table": p.spec.route_table(),
        })).collect::<Vec<_>>(),
        "instances": snap.instances.iter().map(|(iid, ns)| json!({
            "instance_id": iid,
            "netns": ns,
        })).collect::<Vec<_>>(),
        "skipped": snap.skipped.iter().map(skip_json).collect::<Vec<_>>(),
    })
}

fn skip_json(skip: &Skip) -> Value {
    let mut v = json!({ "eni_id": skip.eni_id(), "reason": skip.reason() });
    match skip {
        Skip::UnknownSubnet { subnet_id, .. } => v["subnet_id"] = json!(subnet_id),
        Skip::SameDeviceIndex {
            instance_id,
            device_index,
            kept,
            ..
        } => {
            v["instance_id"] = json!(instance_id);
            v["device_index"] = json!(device_index);
            v["kept"] = json!(kept);
        }
        Skip::DeviceIndexOutOfRange {
            instance_id,
            device_index,
            ..
        } => {
            v["instance_id"] = json!(instance_id);
            v["device_index"] = json!(device_index);
        }
    }
    v
}

async fn healthz(State(state): State<Arc<AgentState>>) -> impl IntoResponse {
    // The data path answers commands only while its thread runs.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let alive = state.commander.send(Command::Stats(tx)).is_ok()
        && matches!(tokio::time::timeout(STATS_TIMEOUT, rx).await, Ok(Ok(_)));
    if alive {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "data path not running\n")
    }
}

/// The kernel fast path's counters (`--fast-path on`).
fn write_fast_path(out: &mut String, f: &crate::fastpath::FastPathCounters) {
    use std::sync::atomic::Ordering::Relaxed;
    let rows: [Row<'_>; 18] = [
        (
            "softvpc_fast_path_flows",
            "gauge",
            "Flows installed in the kernel now.",
            f.installed.load(Relaxed),
        ),
        (
            "softvpc_fast_path_installs_total",
            "counter",
            "Flows installed in the kernel.",
            f.installs.load(Relaxed),
        ),
        (
            "softvpc_fast_path_removals_total",
            "counter",
            "Flows removed from the kernel.",
            f.removals.load(Relaxed),
        ),
        (
            "softvpc_fast_path_flushes_total",
            "counter",
            "Flushes of every kernel flow on a new table generation.",
            f.flushes.load(Relaxed),
        ),
        (
            "softvpc_fast_path_flush_timeouts_total",
            "counter",
            "Flushes the data path stopped waiting for (the old table's kernel flows may have run until the installer got to them).",
            f.flush_timeouts.load(Relaxed),
        ),
        (
            "softvpc_fast_path_errors_total",
            "counter",
            "Netlink operations of the fast path that failed.",
            f.errors.load(Relaxed),
        ),
        (
            "softvpc_fast_path_forged_total",
            "counter",
            "Datagrams to a fast-path device's own port, dropped.",
            f.forged.load(Relaxed),
        ),
        (
            "softvpc_fast_path_packets_total",
            "counter",
            "Packets the kernel carried (folded into the engine's counters).",
            f.packets.load(Relaxed),
        ),
        (
            "softvpc_fast_path_routed_installs_total",
            "counter",
            "Routed flows (MAC rewrite and TTL decrement: across subnets, middlebox, peering) installed in the kernel.",
            f.routed_installs.load(Relaxed),
        ),
        (
            "softvpc_fast_path_routed_packets_total",
            "counter",
            "Packets of routed flows the kernel carried (also in softvpc_fast_path_packets_total).",
            f.routed_packets.load(Relaxed),
        ),
        (
            "softvpc_fast_path_leftovers_removed_total",
            "counter",
            "Kernel objects an earlier run of the agent left (flow filters on the underlay device, per-port namespaces) removed at start.",
            f.leftovers.load(Relaxed),
        ),
        (
            "softvpc_fast_path_install_retries_total",
            "counter",
            "Installs of a flow tried again after a failure (bounded per flow, with a backoff).",
            f.install_retries.load(Relaxed),
        ),
        (
            "softvpc_fast_path_install_failures_total",
            "counter",
            "Flows whose install failed at every try: they stay on the engine's path.",
            f.install_failures.load(Relaxed),
        ),
        (
            "softvpc_fast_path_install_port_gone_total",
            "counter",
            "Installs given up because the port's interface had gone meanwhile (its ENI moved away or its instance went): not errors.",
            f.install_port_gone.load(Relaxed),
        ),
        (
            "softvpc_fast_path_syncs_total",
            "counter",
            "Syncs of the data path with the engine's offer (every 10 ms while there is work).",
            f.syncs.load(Relaxed),
        ),
        (
            "softvpc_fast_path_sync_microseconds_total",
            "counter",
            "Time the data-path thread spent in those syncs (fold, offer changes, hand-off).",
            f.sync_micros.load(Relaxed),
        ),
        (
            "softvpc_fast_path_sync_max_microseconds",
            "gauge",
            "The longest sync so far.",
            f.sync_max_micros.load(Relaxed),
        ),
        (
            "softvpc_fast_path_slow_syncs_total",
            "counter",
            "Syncs that took 1 ms or more (the data path forwarded nothing meanwhile).",
            f.slow_syncs.load(Relaxed),
        ),
    ];
    write_rows(out, &rows);
}

/// One metric without labels: name, type, help, value.
type Row<'a> = (&'a str, &'a str, &'a str, u64);

/// Metrics without labels, each with its HELP and TYPE lines.
fn write_rows(out: &mut String, rows: &[Row<'_>]) {
    for &(name, kind, help, value) in rows {
        write_header(out, (name, kind), help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// The HELP and TYPE lines of metric `name` of type `kind`.
fn write_header(out: &mut String, (name, kind): (&str, &str), help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
