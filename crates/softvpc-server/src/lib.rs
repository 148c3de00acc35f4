//! The softvpc control plane: the resource model in redb, the EC2 Query API, the mapping service.
//!
//! - [`model`]: resources, validation and operations with AWS semantics (no HTTP, no store).
//! - [`store`]: redb persistence, one write transaction per mutation.
//! - [`control`]: the shared core (store + current state + mapping log), all-or-nothing mutations.
//! - [`ec2`]: the EC2 Query API (axum): decoding, the action table, XML responses and errors.
//! - [`mapping`]: the revisioned mapping log and the gRPC service agents watch.

pub mod control;
pub mod ec2;
pub mod fuzzing;
pub mod mapping;
pub mod model;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio_stream::wrappers::TcpListenerStream;

use control::ControlPlane;
use mapping::service::MappingService;

/// `softvpc server`: the EC2-compatible API and the mapping service agents watch.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Directory of the persistent store (created if missing).
    #[arg(long, env = "SOFTVPC_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address of the EC2 Query API (HTTP; requests must be SigV4-signed with the key pair in
    /// `<data-dir>/credentials`, generated on first start).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Address of the mapping service (gRPC) that agents connect to.
    #[arg(long, default_value = "127.0.0.1:8788")]
    pub mapping_listen: SocketAddr,
    /// Open the mapping-service listener inside this named network namespace (`ip netns`),
    /// while the API stays in the current one. Used by the lab.
    #[arg(long)]
    pub mapping_netns: Option<String>,
    /// Register a host that runs no agent (e.g. a kernel VXLAN VTEP), as NAME=UNDERLAY_IP.
    /// Repeatable. Idempotent: an existing host of that name keeps its id.
    #[arg(long = "register-host", value_name = "NAME=IP")]
    pub register_host: Vec<String>,
    /// Do not create the default VPC (172.31.0.0/16 with a default subnet) that a new store
    /// otherwise gets on first start, like a new AWS account.
    #[arg(long)]
    pub no_default_vpc: bool,
    /// Directory of the flow log destinations (default `<data-dir>/flow-logs`): a flow log to
    /// log group G writes under DIR/G, to `arn:aws:s3:::B/P` under DIR/B/P, to a Firehose
    /// delivery stream S under DIR/S. (Records are written by the data plane, a later issue.)
    #[arg(long, value_name = "DIR")]
    pub flow_log_dir: Option<PathBuf>,
}

/// Splits `NAME=IP`.
fn parse_host_arg(arg: &str) -> anyhow::Result<(&str, &str)> {
    arg.split_once('=')
        .filter(|(n, ip)| !n.is_empty() && !ip.is_empty())
        .with_context(|| format!("--register-host expects NAME=IP, got '{arg}'"))
}

/// Binds a TCP listener inside the named network namespace (on a short-lived thread there; the
/// socket stays in that namespace, and no thread of ours changes namespace).
fn bind_in_netns(name: &str, addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let ns = name.to_string();
    softvpc_netlink::netns::run_in(name, move || {
        std::net::TcpListener::bind(addr)
            .with_context(|| format!("binding mapping service {addr} in netns '{ns}'"))
    })
}

/// Runs the server until interrupted (SIGINT or SIGTERM).
pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let flow_log_dir = args
        .flow_log_dir
        .clone()
        .unwrap_or_else(|| args.data_dir.join("flow-logs"));
    let cp = Arc::new(ControlPlane::open(&args.data_dir)?.with_flow_log_dir(flow_log_dir));
    let keys = Arc::new(ec2::auth::load_or_create(&args.data_dir)?);
    // First start: nothing was ever committed to this store.
    if cp.state().revision == 0 && !args.no_default_vpc {
        let (vpc, subnet) = cp
            .mutate(false, model::attributes::create_default_vpc)
            .map_err(|e| anyhow::anyhow!("creating the default VPC: {e}"))?;
        tracing::info!(vpc_id = %vpc, subnet_id = %subnet, "default VPC created");
    }
    // Stores written before security groups and network ACLs existed: complete their VPCs.
    if !cp.state().vpcs.is_empty() {
        let n = cp
            .mutate(false, model::security_group::ensure_vpc_defaults)
            .map_err(|e| anyhow::anyhow!("completing VPC defaults: {e}"))?;
        if n > 0 {
            tracing::info!(
                vpcs = n,
                "default security groups and network ACLs added to older VPCs"
            );
        }
    }
    // Stores written before route tables existed: give their VPCs a main route table.
    if !cp.state().vpcs.is_empty() {
        let n = cp
            .mutate(false, model::route_table::ensure_main_tables)
            .map_err(|e| anyhow::anyhow!("adding main route tables: {e}"))?;
        if n > 0 {
            tracing::info!(vpcs = n, "main route tables added to older VPCs");
        }
    }
    // Flow log destinations removed or unwritable while the server was down: make them again
    // (or report them FAILED).
    ec2::flow_log::prepare_destinations(&cp, None);
    for arg in &args.register_host {
        let (name, ip) = parse_host_arg(arg)?;
        let id = cp
            .mutate(false, |t| model::host::register_host(t, name, ip))
            .map_err(|e| anyhow::anyhow!("--register-host {arg}: {e}"))?;
        tracing::info!(host = name, host_id = %id, underlay_ip = ip, "host registered from the command line");
    }
    // Bind both listeners on this thread before the runtime starts any other thread.
    let api = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("binding EC2 API {}", args.listen))?;
    let mapping = match &args.mapping_netns {
        Some(ns) => bind_in_netns(ns, args.mapping_listen)?,
        None => std::net::TcpListener::bind(args.mapping_listen)
            .with_context(|| format!("binding mapping service {}", args.mapping_listen))?,
    };
    api.set_nonblocking(true)?;
    mapping.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("softvpc-server")
        .build()?;
    runtime.block_on(async move {
        let api = tokio::net::TcpListener::from_std(api)?;
        let mapping = tokio::net::TcpListener::from_std(mapping)?;
        println!("softvpc server: EC2 API listening on http://{}", api.local_addr()?);
        println!(
            "softvpc server: mapping service listening on {}{}",
            mapping.local_addr()?,
            args.mapping_netns
                .as_deref()
                .map(|n| format!(" (netns {n})"))
                .unwrap_or_default()
        );
        tracing::info!(epoch = cp.epoch(), revision = cp.state().revision, data_dir = %args.data_dir.display(), "server ready");
        serve(cp, keys, api, mapping, shutdown_signal()).await
    })
}

/// Serves the EC2 API on `api` and the mapping service on `mapping` until `shutdown` resolves.
pub async fn serve(
    cp: Arc<ControlPlane>,
    keys: Arc<ec2::auth::Keys>,
    api: tokio::net::TcpListener,
    mapping: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let http = axum::serve(api, ec2::router(cp.clone(), keys))
        .with_graceful_shutdown(wait(stop_rx.clone()));
    // HTTP/2 pings find agents that vanished without closing their connection (e.g. their
    // namespace was deleted), so their watch streams end instead of lingering.
    let grpc = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .add_service(MappingService::with_shutdown(cp, stop_rx.clone()).into_server())
        .serve_with_incoming_shutdown(TcpListenerStream::new(mapping), wait(stop_rx));
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let (h, g) = tokio::join!(http, grpc);
    h.context("EC2 API server")?;
    g.context("mapping service")?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
