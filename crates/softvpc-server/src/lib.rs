//! The softvpc control plane: wires the resource model, the store, the EC2 Query API and the
//! mapping service into one server process.
//!
//! The jobs live in their own crates, used here directly: `softvpc-model` (resources,
//! validation and operations with AWS semantics; no HTTP, no store), `softvpc-store` (group
//! commit over a backend; redb), `softvpc-ec2-api` (axum: decoding, the action table, XML
//! responses and errors). This crate adds:
//! - [`mapping`]: the model's mapping projection, its revisioned log and the gRPC service agents
//!   watch.
//! - [`trust`]: the CA, join tokens, host certificates, the admin socket, HTTPS for the API.
//! - [`fuzzing`]: entry points for the fuzz targets.

#![warn(missing_docs)]

pub mod fuzzing;
pub mod mapping;
pub mod trust;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use mapping::service::MappingService;
use mapping::MappingProjection;
use softvpc_store::Store;
use trust::Trust;

/// `softvpc server [COMMAND]`: runs the server, or (with a command) asks the running one.
#[derive(clap::Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ServerCli {
    /// An admin command for the running server.
    #[command(subcommand)]
    pub command: Option<AdminCommand>,
    /// Or: run the server.
    #[command(flatten)]
    pub run: Option<ServerArgs>,
}

/// Commands for a running server, through its admin socket (`<data-dir>/admin/admin.sock`).
#[derive(clap::Subcommand, Debug, Clone)]
pub enum AdminCommand {
    /// Print a single-use join token for host NAME; its agent joins with
    /// `softvpc agent --join-token TOKEN --host-name NAME ...`.
    JoinToken {
        /// The data directory of the running server.
        #[arg(long, env = "SOFTVPC_DATA_DIR")]
        data_dir: PathBuf,
        /// The host the token is for (only an agent with this --host-name can use it).
        #[arg(long)]
        host: String,
        /// How long the token stays usable (e.g. 90s, 15m, 2h; at most 7d).
        #[arg(long, default_value = "15m", value_parser = trust::parse_duration)]
        ttl: Duration,
    },
    /// Remove host NAME: revoke its certificates at once (its watch ends, it cannot reconnect,
    /// other hosts stop accepting its VXLAN) and forget it. Refused while instances live there.
    RemoveHost {
        /// The data directory of the running server.
        #[arg(long, env = "SOFTVPC_DATA_DIR")]
        data_dir: PathBuf,
        /// The host's name.
        name: String,
        /// Terminate the host's instances instead of refusing.
        #[arg(long)]
        force: bool,
    },
}

/// `softvpc server`: the EC2-compatible API and the mapping service agents watch.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Directory of the persistent store (created if missing), the CA, the trust state and
    /// the API credentials. With --store etcd the resource model lives in etcd instead.
    #[arg(long, env = "SOFTVPC_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Where the resource model lives: `redb` (one file in --data-dir, one server) or `etcd`
    /// (an etcd cluster, --etcd-endpoints, shared by several server replicas).
    #[arg(long, value_enum, default_value = "redb", env = "SOFTVPC_STORE")]
    pub store: StoreKind,
    /// The etcd cluster's client URLs, comma-separated or repeated (--store etcd).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "URL,...",
        env = "SOFTVPC_ETCD_ENDPOINTS"
    )]
    pub etcd_endpoints: Vec<String>,
    /// The key prefix of this control plane in etcd (--store etcd; replicas of one control
    /// plane use the same).
    #[arg(long, default_value = "/softvpc/", env = "SOFTVPC_ETCD_PREFIX")]
    pub etcd_prefix: String,
    /// Address of the EC2 Query API (HTTP, or HTTPS with --https; requests must be
    /// SigV4-signed with the key pair in `<data-dir>/credentials`, generated on first start).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Serve the EC2 API over HTTPS with a certificate of the server's CA (clients trust
    /// `<data-dir>/ca/ca.crt`, e.g. `aws --ca-bundle`), unless --tls-cert/--tls-key give one.
    #[arg(long)]
    pub https: bool,
    /// The EC2 API's certificate chain (PEM), e.g. from your own CA; implies --https.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// More names (DNS names or IP addresses) for the server's certificate, besides
    /// `softvpc-server` (what agents check), localhost, 127.0.0.1 and the listen addresses.
    #[arg(long = "tls-san", value_name = "NAME")]
    pub tls_san: Vec<String>,
    /// Address of the mapping service (gRPC over mutual TLS) that agents connect to: on a real
    /// deployment, the server's underlay address.
    #[arg(long, default_value = "127.0.0.1:8788")]
    pub mapping_listen: SocketAddr,
    /// Lifetime of the host certificates this server issues (agents renew at two thirds).
    #[arg(long, default_value = "24h", value_parser = trust::parse_duration)]
    pub host_cert_ttl: Duration,
    /// Open the mapping-service listener inside this named network namespace (`ip netns`),
    /// while the API stays in the current one. Used by the lab.
    #[arg(long)]
    pub mapping_netns: Option<String>,
    /// Run inside this named network namespace (`ip netns`): the mapping service, the etcd
    /// connections and everything else, except the EC2 API listener (--listen), which is bound
    /// first, in the namespace the server starts in. Used by `softvpc lab up --ha`, whose
    /// replicas each live in a namespace on the lab's underlay.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Register a host that runs no agent (e.g. a kernel VXLAN VTEP), as NAME=UNDERLAY_IP, or
    /// NAME=UNDERLAY_IP@ZONE to put it in an availability zone (name or zone id; default
    /// us-east-1a). Repeatable. Idempotent: an existing host of that name keeps its id.
    #[arg(long = "register-host", value_name = "NAME=IP[@ZONE]")]
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
    /// The account's quota of inbound (and, separately, outbound) rules per security group.
    /// AWS's default is 60; as on AWS it may be raised up to 1,000, as long as it times
    /// `--sgs-per-interface` stays at most 1,000 (e.g. 1000 x 1, 200 x 5).
    #[arg(long, value_name = "N", default_value_t = softvpc_model::quota::DEFAULT_RULES_PER_GROUP)]
    pub sg_rules_per_group: usize,
    /// The account's quota of security groups per network interface (AWS's default 5, at
    /// most 16; see `--sg-rules-per-group`).
    #[arg(long, value_name = "N", default_value_t = softvpc_model::quota::DEFAULT_GROUPS_PER_INTERFACE)]
    pub sgs_per_interface: usize,
}

/// Where `softvpc server` keeps the resource model.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// redb in --data-dir: one server.
    Redb,
    /// An etcd cluster: several server replicas.
    Etcd,
}

/// Opens the store `args` ask for, with the mapping projection attached (and, for etcd, the
/// thread that follows the other replicas' commits).
#[allow(clippy::type_complexity)]
fn open_store(
    args: &ServerArgs,
    quotas: softvpc_model::quota::Quotas,
) -> anyhow::Result<(
    Arc<Store>,
    Arc<MappingProjection>,
    Option<Box<dyn softvpc_store::SharedDoc>>,
)> {
    match args.store {
        StoreKind::Redb => {
            anyhow::ensure!(
                args.etcd_endpoints.is_empty(),
                "--etcd-endpoints needs --store etcd"
            );
            let (backend, mut state) = softvpc_store::RedbBackend::open(&args.data_dir)?;
            // The quotas are settings, not stored: every mutation's copy of the state carries them.
            state.quotas = quotas;
            let store = Store::with_backend(Some(Box::new(backend)), state);
            let (cp, projection) = MappingProjection::attach(store, mapping::DEFAULT_CAPACITY);
            Ok((Arc::new(cp), projection, None))
        }
        StoreKind::Etcd => {
            let (store, changes, mut docs) =
                Store::open_etcd(&args.etcd_endpoints, &args.etcd_prefix, &["trust"], |s| {
                    s.quotas = quotas
                })?;
            let trust = docs
                .pop()
                .map(|d| Box::new(d) as Box<dyn softvpc_store::SharedDoc>);
            let (cp, projection) = MappingProjection::attach(store, mapping::DEFAULT_CAPACITY);
            let cp = Arc::new(cp);
            Store::follow(&cp, changes)?;
            Ok((cp, projection, trust))
        }
    }
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

/// `softvpc server`: runs the server, or carries out an admin command.
pub fn main(cli: ServerCli) -> anyhow::Result<()> {
    match (cli.command, cli.run) {
        (Some(cmd), _) => admin_command(cmd),
        (None, Some(args)) => run(args),
        (None, None) => anyhow::bail!("softvpc server needs --data-dir (see --help)"),
    }
}

fn admin_command(cmd: AdminCommand) -> anyhow::Result<()> {
    use trust::admin::{self, RemoveRequest, RemoveResponse, TokenRequest, TokenResponse};
    match cmd {
        AdminCommand::JoinToken {
            data_dir,
            host,
            ttl,
        } => {
            let r: TokenResponse = admin::call(
                &data_dir,
                "/join-tokens",
                &TokenRequest {
                    host,
                    ttl_secs: ttl.as_secs(),
                },
            )?;
            println!("{}", r.token);
        }
        AdminCommand::RemoveHost {
            data_dir,
            name,
            force,
        } => {
            let r: RemoveResponse = admin::call(
                &data_dir,
                "/hosts/remove",
                &RemoveRequest {
                    host: name.clone(),
                    force,
                },
            )?;
            println!(
                "host {name} removed{}; its certificates are revoked",
                if r.terminated.is_empty() {
                    String::new()
                } else {
                    format!(" (terminated: {})", r.terminated.join(", "))
                }
            );
        }
    }
    Ok(())
}

/// The names for the server's certificate: the given ones and the specific listen addresses.
fn server_names(args: &ServerArgs) -> Vec<String> {
    let mut names = args.tls_san.clone();
    for a in [args.listen, args.mapping_listen] {
        if !a.ip().is_unspecified() {
            names.push(a.ip().to_string());
        }
    }
    names
}

/// The EC2 API's TLS config, if it serves HTTPS.
fn api_tls(args: &ServerArgs, trust: &Trust) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let (chain, key) = softvpc_trust::tls::load_pem_files(cert, key)?;
        return Ok(Some(softvpc_trust::tls::https_server_config(chain, key)?));
    }
    if args.https {
        return Ok(Some(trust.https_tls(&server_names(args))?));
    }
    Ok(None)
}

/// Runs the server until interrupted (SIGINT or SIGTERM).
pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let flow_log_dir = args
        .flow_log_dir
        .clone()
        .unwrap_or_else(|| args.data_dir.join("flow-logs"));
    let quotas = softvpc_model::quota::Quotas::new(args.sg_rules_per_group, args.sgs_per_interface)
        .map_err(|e| anyhow::anyhow!("--sg-rules-per-group / --sgs-per-interface: {e}"))?;
    // The API listener first, in the namespace the server was started in; then, with --netns,
    // the whole process moves (this thread before any other exists: new threads inherit it).
    let api = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("binding EC2 API {}", args.listen))?;
    if let Some(ns) = &args.netns {
        softvpc_netlink::netns::enter(ns).with_context(|| format!("--netns {ns}"))?;
        tracing::info!(netns = %ns, "entered network namespace");
    }
    let (cp, projection, shared_trust) = open_store(&args, quotas)?;
    let keys = Arc::new(softvpc_ec2_api::auth::load_or_create(&args.data_dir)?);
    let trust = Trust::open(&args.data_dir, args.host_cert_ttl)?;
    let trust = Arc::new(match shared_trust {
        Some(doc) => trust.shared(doc)?,
        None => trust,
    });
    let mapping_tls = trust.mapping_tls(&server_names(&args))?;
    let api_tls = api_tls(&args, &trust)?;
    // First start: nothing was ever committed to this store.
    if cp.state().revision == 0 && !args.no_default_vpc {
        let (vpc, subnet) = cp
            .mutate(false, softvpc_model::attributes::create_default_vpc)
            .map_err(|e| anyhow::anyhow!("creating the default VPC: {e}"))?;
        tracing::info!(vpc_id = %vpc, subnet_id = %subnet, "default VPC created");
    }
    // Stores written before security groups and network ACLs existed: complete their VPCs.
    if !cp.state().vpcs.is_empty() {
        let n = cp
            .mutate(false, softvpc_model::security_group::ensure_vpc_defaults)
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
            .mutate(false, softvpc_model::route_table::ensure_main_tables)
            .map_err(|e| anyhow::anyhow!("adding main route tables: {e}"))?;
        if n > 0 {
            tracing::info!(vpcs = n, "main route tables added to older VPCs");
        }
    }
    // Flow log destinations removed or unwritable while the server was down: make them again
    // (or report them FAILED).
    softvpc_ec2_api::prepare_destinations(&cp, &flow_log_dir, None);
    for arg in &args.register_host {
        let (name, ip) = parse_host_arg(arg)?;
        let (ip, zone) = match ip.split_once('@') {
            Some((ip, zone)) => (ip, Some(zone)),
            None => (ip, None),
        };
        let id = cp
            .mutate(false, |t| {
                softvpc_model::host::register_host_in(t, name, ip, zone)
            })
            .map_err(|e| anyhow::anyhow!("--register-host {arg}: {e}"))?;
        tracing::info!(host = name, host_id = %id, underlay_ip = ip, "host registered from the command line");
    }
    let mapping = match &args.mapping_netns {
        Some(ns) => bind_in_netns(ns, args.mapping_listen)?,
        None => std::net::TcpListener::bind(args.mapping_listen)
            .with_context(|| format!("binding mapping service {}", args.mapping_listen))?,
    };
    api.set_nonblocking(true)?;
    mapping.set_nonblocking(true)?;
    let data_dir: PathBuf = args.data_dir.clone();
    let data_dir: &Path = &data_dir;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("softvpc-server")
        .build()?;
    runtime.block_on(async move {
        let api = tokio::net::TcpListener::from_std(api)?;
        let mapping = tokio::net::TcpListener::from_std(mapping)?;
        let admin = trust::admin::bind(data_dir)?;
        if args.store == StoreKind::Etcd {
            // Revocations made on another replica end this replica's watches too.
            let trust = trust.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let t = trust.clone();
                    let _ = tokio::task::spawn_blocking(move || t.refresh()).await;
                }
            });
        }
        println!(
            "softvpc server: EC2 API listening on {}://{}",
            if api_tls.is_some() { "https" } else { "http" },
            api.local_addr()?
        );
        println!(
            "softvpc server: mapping service (mutual TLS) listening on {}{}",
            mapping.local_addr()?,
            args.mapping_netns
                .as_deref()
                .map(|n| format!(" (netns {n})"))
                .unwrap_or_default()
        );
        println!("softvpc server: admin socket {}", trust::admin::socket_path(data_dir).display());
        println!(
            "softvpc server: CA {} (sha256 {})",
            data_dir.join("ca").join("ca.crt").display(),
            hex::encode(trust.ca().hash())
        );
        tracing::info!(epoch = projection.epoch(), revision = cp.state().revision, data_dir = %args.data_dir.display(), store = ?args.store, "server ready");
        let r = serve(
            Listeners {
                cp,
                projection,
                keys,
                trust,
                api,
                api_tls,
                flow_log_dir: Some(flow_log_dir),
                mapping,
                mapping_tls,
                admin: Some(admin),
            },
            shutdown_signal(),
        )
        .await;
        let _ = std::fs::remove_file(trust::admin::socket_path(data_dir));
        r
    })
}

/// What [`serve`] serves.
pub struct Listeners {
    /// The resource store.
    pub cp: Arc<Store>,
    /// The mapping log the mapping service serves, attached to `cp`.
    pub projection: Arc<MappingProjection>,
    /// The key pairs EC2 API requests are signed with.
    pub keys: Arc<softvpc_ec2_api::auth::Keys>,
    /// The CA, tokens and host certificates.
    pub trust: Arc<Trust>,
    /// The EC2 API, over HTTPS when `api_tls` is given.
    pub api: tokio::net::TcpListener,
    /// HTTPS for the EC2 API (None: plain HTTP).
    pub api_tls: Option<Arc<rustls::ServerConfig>>,
    /// Where flow log destinations live (None: flow logs get no directories).
    pub flow_log_dir: Option<PathBuf>,
    /// The mapping service (always TLS; see [`Trust::mapping_tls`]).
    pub mapping: tokio::net::TcpListener,
    /// The mapping service's TLS config (mutual TLS).
    pub mapping_tls: Arc<rustls::ServerConfig>,
    /// The admin socket, if any.
    pub admin: Option<tokio::net::UnixListener>,
}

/// Serves the EC2 API, the mapping service and the admin socket until `shutdown` resolves.
pub async fn serve(
    l: Listeners,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let flow_log_dir = l.flow_log_dir.clone();
    let router = softvpc_ec2_api::router(l.cp.clone(), l.keys, l.flow_log_dir);
    let (api, api_tls, api_stop) = (l.api, l.api_tls, stop_rx.clone());
    let http = async move {
        match api_tls {
            Some(tls) => {
                let listener = trust::listener::TlsListener::new(api, tls, "EC2 API (HTTPS)")?;
                axum::serve(listener, router)
                    .with_graceful_shutdown(wait(api_stop))
                    .await
            }
            None => {
                axum::serve(api, router)
                    .with_graceful_shutdown(wait(api_stop))
                    .await
            }
        }
    };
    if let Some(admin) = l.admin {
        let app = trust::admin::router(l.cp.clone(), l.trust.clone(), l.projection.clone());
        let stop = wait(stop_rx.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(admin, app).with_graceful_shutdown(stop).await {
                tracing::error!(error = %e, "admin socket stopped");
            }
        });
    }
    // The mapping service runs on a runtime of its own: the fan-out of a change to many agents
    // (encoding, TLS, writes) then never queues ahead of an EC2 API answer on the same worker
    // threads, so an API call waits for its durable commit and not for the agents.
    let mapping_rt = MappingRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("softvpc-mapping")
            .enable_all()
            .build()
            .context("starting the mapping service's runtime")?,
    ));
    let mapping = l.mapping.into_std()?;
    let (mapping_tls, stop) = (l.mapping_tls, wait(stop_rx.clone()));
    // Each connection's socket writes time the watch messages on it (the fan-out times).
    let clocks = Arc::new(mapping::fanout::ConnClocks::new(
        l.projection.fanout_times().clone(),
    ));
    let service = MappingService::with_shutdown(l.cp, l.projection, l.trust, stop_rx)
        .with_flow_log_dir(flow_log_dir)
        .with_clocks(clocks.clone());
    let grpc = mapping_rt.handle().spawn(async move {
        let mapping = tokio::net::TcpListener::from_std(mapping)?;
        // Every connection is TLS; handshakes that fail (plain text, a bad certificate) are
        // logged by the accept loop and never reach the service.
        let incoming =
            tokio_stream::wrappers::ReceiverStream::new(softvpc_trust::tls::accept_wrapped(
                mapping,
                mapping_tls,
                "mapping service",
                move |tcp| clocks.clock(tcp),
            ));
        let incoming = tokio_stream::StreamExt::map(incoming, Ok::<_, std::io::Error>);
        // HTTP/2 pings find agents that vanished without closing their connection (e.g. their
        // namespace was deleted), so their watch streams end instead of lingering.
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
            .add_service(service.into_server())
            .serve_with_incoming_shutdown(incoming, stop)
            .await
            .map_err(anyhow::Error::from)
    });
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let (h, g) = tokio::join!(http, grpc);
    h.context("EC2 API server")?;
    g.context("mapping service task")?
        .context("mapping service")?;
    Ok(())
}

/// The mapping service's runtime, shut down without blocking when dropped (it is dropped inside
/// the API's runtime, where a blocking shutdown is not allowed).
struct MappingRuntime(Option<tokio::runtime::Runtime>);

impl MappingRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("present until dropped").handle()
    }
}

impl Drop for MappingRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
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
