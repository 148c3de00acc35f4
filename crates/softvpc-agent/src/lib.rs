//! The softvpc host agent: TAP and UDP I/O around the sans-IO engine, and the mapping watch.
//!
//! Start-up: enter the host's network namespace (`--netns`, before any thread exists), open the
//! underlay sockets, start the data-path thread (`datapath`: the [`Engine`] plus all packet
//! I/O), then run on a small tokio runtime: the control loop (`control`: register, watch,
//! reconcile instances, publish mapping tables) and the HTTP endpoint (`metrics`). SIGTERM or
//! SIGINT close the TAPs and exit 0; the instances (namespaces, persistent TAPs) stay, and the
//! next agent takes them over (`instance.rs`), as after a SIGKILL.
//!
//! The watch protocol's state machine (the agent's `Replica`) is `softvpc-mapping`'s.
//!
//! Module map: `checkpoint` (the last applied view on disk, loaded at start so a restart
//! without a server keeps forwarding), `table` (the replica's records -> the engine's table), `reconcile` (which
//! instances and interfaces should exist, and the steps to get there: pure), `instance`
//! (namespaces, one TAP per ENI as `eth<device index>`, policy routing; over netlink with
//! `softvpc-netlink`), `tap` (TAP devices), `underlay` (VXLAN sockets), `batch` (receive
//! buffers), `datapath`, `control`, `status`, `metrics`; `netns` is `softvpc_netlink::netns`.

#![warn(missing_docs)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use softvpc_engine::{EdgeConfig, Engine, EngineConfig, PortId};
use tracing::{error, info};

pub mod batch;
pub mod checkpoint;
pub mod control;
pub mod datapath;
pub mod fastpath;
pub mod flowlog;
pub mod guest;
pub mod imds;
pub mod instance;
pub mod metrics;
pub mod reconcile;
pub mod status;
pub mod table;
pub mod tap;
pub mod trace;
pub mod trust;
pub mod underlay;

pub use softvpc_netlink::netns;

use crate::control::Control;
use crate::datapath::{Command, DataPath, Shared};
use crate::instance::Plumber;
use crate::status::{AgentState, AgentStatus};
use crate::underlay::{UnderlayRx, UnderlayTx, VXLAN_PORT};

/// `softvpc agent`: the virtual router for the ENIs placed on this host.
#[derive(clap::Args, Debug, Clone)]
pub struct AgentArgs {
    /// Mapping service URL, e.g. https://198.18.0.1:8788 (mutual TLS only). Server replicas:
    /// every one's URL (comma-separated or repeated); the agent moves to the next when its
    /// replica fails and resumes its watch there.
    #[arg(long, required = true, value_delimiter = ',', value_name = "URL")]
    pub server: Vec<String>,
    /// A join token from `softvpc server join-token --host NAME`: trades it for this host's
    /// certificate at start (not needed once the state dir holds a valid one; the same token
    /// again reuses the certificate it gave).
    #[arg(long, env = "SOFTVPC_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<softvpc_trust::token::JoinToken>,
    /// Where the host's key (mode 0600), certificate and the server's CA are kept.
    #[arg(long, default_value = "/var/lib/softvpc-agent")]
    pub state_dir: std::path::PathBuf,
    /// This host's name (registered with the server; instances are placed by it).
    #[arg(long)]
    pub host_name: String,
    /// This host's underlay IPv4 address (VXLAN is received on it, UDP 4789).
    #[arg(long)]
    pub underlay_ip: Ipv4Addr,
    /// The availability zone this host is in (a zone name or zone id of the region): instances
    /// of a subnet are placed only on hosts of the subnet's zone.
    #[arg(long, default_value = "us-east-1a")]
    pub availability_zone: String,
    /// Enter this named network namespace (`ip netns`) before doing anything else.
    #[arg(long)]
    pub netns: Option<String>,
    /// Each local instance gets a network namespace named PREFIX + instance id, with the TAP
    /// device of each of its ENIs inside as `eth<device index>`.
    #[arg(long, default_value = "svpc-")]
    pub instance_netns_prefix: String,
    /// Prometheus metrics and `/mappings` endpoint, in the agent's network namespace; loopback
    /// by default (the mapping view is not for the underlay).
    #[arg(long, default_value = "127.0.0.1:9469")]
    pub metrics_listen: SocketAddr,
    /// The host's link to the internet (the edge, where the internet gateway's 1:1 NAT for
    /// this host's public addresses runs): a TAP moved into this network namespace and added
    /// to `--edge-bridge` there. Without it, traffic routed to an internet gateway is dropped
    /// as `gateway_not_on_wire`.
    #[arg(long)]
    pub edge_netns: Option<String>,
    /// The bridge of `--edge-netns` the edge joins.
    #[arg(long, default_value = "inet0", requires = "edge_netns")]
    pub edge_bridge: String,
    /// The next hop on the internet side: everything for the internet goes to its MAC
    /// (learned by ARP).
    #[arg(long, default_value = "203.0.113.1", requires = "edge_netns")]
    pub edge_gateway: Ipv4Addr,
    /// The kernel fast path (`docs/fast-path.md`): the engine's cacheable flow decisions run as
    /// entries of a BPF map that one cls_bpf program per hook executes, every decision still
    /// the engine's. `off` sends every packet through the engine (about 0.1x the kernel's
    /// VXLAN on one TCP stream).
    #[arg(long, value_enum, env = "SOFTVPC_FAST_PATH", default_value_t = fastpath::FastPathMode::On)]
    pub fast_path: fastpath::FastPathMode,
    /// For tests: close flow log aggregation windows after at most this many seconds instead of
    /// each flow log's MaxAggregationInterval (AWS's interval is a maximum, so records stay
    /// valid; there are just more of them).
    #[arg(long, value_name = "SECONDS", env = "SOFTVPC_FLOW_LOG_MAX_WINDOW")]
    pub flow_log_max_window: Option<u64>,
    /// Connections each local ENI may track (security groups' connection tracking). Past it a
    /// new flow is refused and counted (`softvpc_drops_total{reason="conntrack_full"}` and per
    /// ENI `softvpc_eni_conntrack_allowance_exceeded_total`, like ENA's
    /// conntrack_allowance_exceeded) while tracked ones go on. The default, 65,536, is about
    /// 22 MB per ENI at its limit (346 B per tracked flow, BENCHMARKS.md), more new flows than a
    /// 2-core host sets up within UDP's 30 s idle timeout.
    #[arg(long, value_name = "N", env = "SOFTVPC_CONNTRACK_LIMIT",
          default_value_t = softvpc_policy::conntrack::DEFAULT_LIMIT,
          value_parser = clap::value_parser!(usize))]
    pub conntrack_limit: usize,
    /// The upstream resolver (`IP:PORT`, reached from the agent's namespace) to which the VPC
    /// router forwards the DNS queries it cannot answer itself; without one they get SERVFAIL.
    #[arg(long)]
    pub dns_upstream: Option<SocketAddr>,
    /// The network namespace the forwarding socket for `--dns-upstream` is opened in (default:
    /// the agent's own), for an upstream the host reaches over another network (the lab's
    /// resolver is in its internet's namespace).
    #[arg(long, requires = "dns_upstream")]
    pub dns_upstream_netns: Option<String>,
    /// How instances' `eth0` gets its address: `static` (the agent sets address, MTU 9001 and
    /// default route) or `dhcp` (a DHCP client in the instance asks this host's virtual router,
    /// as on EC2, and also writes the instance's `/etc/netns/<ns>/resolv.conf`).
    #[arg(long, value_enum, default_value_t = guest::Addressing::Static)]
    pub instance_addressing: guest::Addressing,
    /// The DHCP client for `--instance-addressing dhcp`: busybox's `udhcpc` (or `busybox`
    /// itself). Default: `udhcpc`, else `busybox`, found on PATH or in /usr/sbin, /sbin, /usr/bin,
    /// /bin.
    #[arg(long, value_name = "PATH")]
    pub dhcp_client: Option<std::path::PathBuf>,
    /// The DHCP lease time the virtual router gives instances (option 51), in seconds; clients
    /// renew at half of it (T1) and rebind at 7/8 (T2). AWS's lease is an hour, the default;
    /// shorter leases are for tests that watch a client renew by itself.
    #[arg(long, value_name = "SECONDS", env = "SOFTVPC_DHCP_LEASE_SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u32).range(30..))]
    pub dhcp_lease_seconds: u32,
}

/// The edge's MAC: `0a:56:45:` + the low 24 bits of the underlay address (locally
/// administered, unique per host, never an ENI's `02:` or a router's `0a:56:50:`).
pub fn edge_mac(underlay_ip: Ipv4Addr) -> [u8; 6] {
    let o = underlay_ip.octets();
    [0x0a, 0x56, 0x45, o[1], o[2], o[3]]
}

/// The edge TAP's name (unique per host, as several hosts' edges share one namespace).
pub fn edge_tap_name(underlay_ip: Ipv4Addr) -> String {
    format!("sve{:08x}", u32::from(underlay_ip))
}

/// Opens the edge TAP and plugs it into `--edge-bridge` of `--edge-netns`.
async fn open_edge(args: &AgentArgs, ns: &str) -> anyhow::Result<tap::Tap> {
    let name = edge_tap_name(args.underlay_ip);
    let host = softvpc_netlink::Netlink::connect()?;
    if !netns::exists(ns) {
        anyhow::bail!("the edge's namespace {ns} does not exist");
    }
    let there = softvpc_netlink::Netlink::connect_in(ns)?;
    if there.link_exists(&name).await? {
        // Left by an agent of this host that did not exit cleanly.
        there.del_link(&name).await?;
    }
    let tap = tap::Tap::open(&name)?;
    host.move_to_netns(&name, ns).await?;
    there.set_master(&name, &args.edge_bridge).await?;
    there.set_up(&name).await?;
    Ok(tap)
}

/// Runs the agent until interrupted.
pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    // setns affects only the calling thread: do it before the runtime starts any thread, so they
    // all live in the host's namespace.
    if let Some(ns) = &args.netns {
        netns::enter(ns)?;
        info!(netns = %ns, "entered network namespace");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("softvpc-agent")
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = sigterm.recv() => info!("SIGTERM: shutting down"),
                _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down"),
            }
        };
        serve(args, shutdown).await
    })
}

/// Runs the agent in the current namespace on the current tokio runtime (multi-threaded) until
/// `shutdown` resolves, then closes the TAPs and deletes the namespaces it created.
pub async fn serve(
    args: AgentArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let shutdown = shutdown;
    tokio::pin!(shutdown);
    // Checked first: a missing DHCP client is a start-up error, not an instance without address.
    let dhcp = match args.instance_addressing {
        guest::Addressing::Static => None,
        guest::Addressing::Dhcp => {
            let program = args.dhcp_client.clone().or_else(guest::find_client).context(
                "--instance-addressing dhcp needs a DHCP client and none was found: install udhcpc \
                 (Debian package udhcpc, or busybox), name it with --dhcp-client, or use \
                 --instance-addressing static",
            )?;
            Some(guest::DhcpClients::new(
                program,
                args.state_dir.join("dhcp"),
            )?)
        }
    };
    let rx = UnderlayRx::bind(args.underlay_ip, VXLAN_PORT)?;
    let tx = UnderlayTx::open(args.underlay_ip)?;
    let underlay_drops = rx
        .drop_counter()
        .context("duplicating the VXLAN socket for its drop counter")?;
    let mut config = EngineConfig {
        vxlan_port: VXLAN_PORT,
        conntrack_limit: args.conntrack_limit,
        dns_upstream: args.dns_upstream.is_some(),
        ..EngineConfig::new(args.underlay_ip)
    };
    config.dhcp.lease_secs = args.dhcp_lease_seconds;
    let mut engine = Engine::new(config);
    let edge = match &args.edge_netns {
        Some(ns) => {
            let tap = open_edge(&args, ns)
                .await
                .with_context(|| format!("opening the edge in {ns}"))?;
            engine.set_edge(EdgeConfig {
                mac: edge_mac(args.underlay_ip),
                gateway_ip: args.edge_gateway,
            });
            info!(netns = %ns, tap = tap.name(), gateway = %args.edge_gateway, "edge to the internet");
            Some(tap)
        }
        None => None,
    };
    engine.set_flow_log_config(softvpc_engine::FlowLogConfig {
        max_window: args.flow_log_max_window.map(Duration::from_secs),
        ..Default::default()
    });
    let shared = Arc::new(Shared::default());
    let (flow_tx, flow_rx) = tokio::sync::mpsc::channel(flowlog::QUEUE);
    let _ = shared.flow_windows.set(flow_tx);
    let flow_counters = Arc::new(flowlog::FlowLogCounters::default());
    let fast = match args.fast_path {
        fastpath::FastPathMode::On => Some(fastpath::FastPath::start(
            args.underlay_ip,
            &args.instance_netns_prefix,
        )?),
        fastpath::FastPathMode::Off => {
            // An earlier run with the fast path on may have left its filters and namespaces.
            if let Ok(host) = softvpc_netlink::Netlink::connect() {
                fastpath::remove_leftovers(
                    &host,
                    args.underlay_ip,
                    &args.instance_netns_prefix,
                    false,
                )
                .await;
            }
            None
        }
    };
    let dns = match (args.dns_upstream, &args.dns_upstream_netns) {
        (Some(addr), None) => Some(
            crate::datapath::DnsUpstream::connect(addr)
                .with_context(|| format!("DNS upstream {addr}"))?,
        ),
        // A socket keeps the namespace it was made in.
        (Some(addr), Some(ns)) => Some(
            softvpc_netlink::netns::run_in(ns, move || crate::datapath::DnsUpstream::connect(addr))
                .with_context(|| format!("DNS upstream {addr} in network namespace {ns}"))?,
        ),
        (None, _) => None,
    };
    let datapath = DataPath::spawn_full(engine, rx, tx, Arc::clone(&shared), fast, dns)?;
    if let Some(tap) = edge {
        datapath.send(Command::AddPort {
            port: PortId::EDGE,
            tap,
        })?;
    }

    let state = Arc::new(AgentState {
        host_name: args.host_name.clone(),
        underlay_ip: args.underlay_ip,
        availability_zone: args.availability_zone.clone(),
        status: ArcSwap::from_pointee(AgentStatus::default()),
        resyncs: AtomicU64::new(0),
        resumes: AtomicU64::new(0),
        adopted: AtomicU64::new(0),
        instance_errors: AtomicU64::new(0),
        watching: AtomicBool::new(false),
        stale: AtomicBool::new(false),
        datapath: Arc::clone(&shared),
        commander: datapath.commander().clone(),
        table_lag: Default::default(),
        plumbing: Default::default(),
        underlay_drops,
        flow_logs: Arc::clone(&flow_counters),
    });

    let listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("binding the metrics endpoint {}", args.metrics_listen))?;
    let app = metrics::router(Arc::clone(&state));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!(error = %e, "metrics endpoint stopped");
        }
    });
    info!(
        host_name = %args.host_name,
        underlay_ip = %args.underlay_ip,
        availability_zone = %args.availability_zone,
        server = %args.server.join(","),
        metrics = %args.metrics_listen,
        prefix = %args.instance_netns_prefix,
        fast_path = ?args.fast_path,
        "agent started"
    );

    let connector = tokio::select! {
        c = trust::Connector::start(
            &args.server,
            args.state_dir.clone(),
            &args.host_name,
            args.join_token.as_ref(),
        ) => c?,
        _ = &mut shutdown => {
            datapath.shutdown()?;
            return Ok(());
        }
    };
    tokio::spawn(Arc::clone(&connector).renew_forever());
    tokio::spawn(flowlog::ship(
        flow_rx,
        Arc::clone(&shared.flow_logs),
        Arc::clone(&connector),
        flow_counters,
    ));
    let mut plumber = Plumber::new(&args.instance_netns_prefix)?
        .with_clsact(args.fast_path == fastpath::FastPathMode::On)
        .with_record(args.state_dir.join(instance::OWNED_FILE));
    if let Some(clients) = dhcp {
        plumber = plumber.with_dhcp(clients);
    }
    let mut control = Control::new(connector, state, datapath, plumber)?
        .with_checkpoint(args.state_dir.join(checkpoint::FILE));

    let outcome = tokio::select! {
        _ = control.run() => Ok(()),
        _ = &mut shutdown => Ok(()),
        _ = watch_datapath(&shared) => Err(anyhow::anyhow!("the data-path thread stopped")),
    };
    let closed = control.shutdown();
    outcome.and(closed)
}

/// Resolves when the data-path thread has exited (it never should on its own).
async fn watch_datapath(shared: &Shared) {
    loop {
        if !shared.running.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
