//! `softvpc lab up`: build a lab from a topology, step by step, each step bounded in time.
//!
//! 1. remove leftovers of a lab with the same prefix;
//! 2. the fabric and host namespaces, and the internet (its namespace and servers) if the
//!    topology has one;
//! 3. the server (root netns; its mapping listener inside the fabric);
//! 4. one agent per host, until DescribeHosts lists every host;
//! 5. VPCs and subnets, and
//! 6. instances, through the EC2 API;
//! 7. until every instance (on a host with an agent) gets an ICMP echo reply from its subnet
//!    router (an in-process probe: the lab needs no `ping`).
//!
//! The state file is saved after every change, so `down` can always clean up.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};

use crate::down;
use crate::ec2::Ec2Client;
use crate::names;
use crate::probe;
use crate::state::{
    HostRecord, InstanceRecord, InternetRecord, LabState, ProcessRecord, SubnetRecord, VpcRecord,
};
use crate::sys;
use crate::topology::{self, Addressing, Topology};
use crate::LabArgs;

const STEPS: usize = 7;
/// Time for the server to answer `GET /healthz`.
const SERVER_START: Duration = Duration::from_secs(20);
/// Time for every agent to register.
const AGENTS_REGISTER: Duration = Duration::from_secs(20);
/// Time for the underlay to carry a ping from each host to the fabric.
const FABRIC_READY: Duration = Duration::from_secs(5);
/// Time for the internet's servers to answer.
const INTERNET_READY: Duration = Duration::from_secs(10);

/// Options of `lab up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Topology file (default: the built-in seed topology).
    pub file: Option<PathBuf>,
    /// Port of the EC2 API on 127.0.0.1.
    pub api_port: u16,
    /// The softvpc binary to run the server and agents from.
    pub bin: Option<PathBuf>,
    /// Time for the instances to reach their routers.
    pub wait: Duration,
    /// The agents' `--fast-path` (`on` or `off`).
    pub fast_path: String,
    /// A replicated control plane: 3 etcd members and 3 server replicas ([`crate::ha`]).
    pub ha: bool,
}

/// Prints `[n/N] what... ` and then the outcome with its duration.
struct Step {
    started: Instant,
}

impl Step {
    fn begin(n: usize, what: &str) -> Step {
        out!("[{n}/{STEPS}] {what}... ");
        Step {
            started: Instant::now(),
        }
    }

    fn progress(&self, text: &str) {
        out!("{text} ");
    }

    fn ok(self, detail: &str) {
        let secs = self.started.elapsed().as_secs_f64();
        if detail.is_empty() {
            outln!("ok ({secs:.1} s)");
        } else {
            outln!("ok ({detail}; {secs:.1} s)");
        }
    }
}

/// Runs a step's body; on failure prints FAILED, so the error that follows reads as its cause.
fn step<T>(
    n: usize,
    what: &str,
    body: impl FnOnce(&Step) -> anyhow::Result<(T, String)>,
) -> anyhow::Result<T> {
    let s = Step::begin(n, what);
    match body(&s) {
        Ok((value, detail)) => {
            s.ok(&detail);
            Ok(value)
        }
        Err(e) => {
            outln!("FAILED");
            Err(e)
        }
    }
}

/// A process the lab started in this run, kept to notice an early exit.
pub(crate) struct Started {
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
    pub(crate) what: String,
}

impl Started {
    /// An error if the process has exited.
    pub(crate) fn check(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited early ({status}); read its log: {}{}",
                self.what,
                self.log.display(),
                log_tail(&self.log)
            );
        }
        Ok(())
    }
}

/// The last lines of a log, indented, to quote in an error.
pub(crate) fn log_tail(log: &Path) -> String {
    const LINES: usize = 8;
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(LINES)..];
    format!("\n  last lines:\n    {}", tail.join("\n    "))
}

/// `lab up`.
pub fn up(args: &LabArgs, opts: &UpOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let topo = match &opts.file {
        None => Topology::seed(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Topology::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?
        }
    };
    if !sys::is_root() {
        bail!("`softvpc lab up` needs root (network namespaces, TAP devices)");
    }
    // A lab that is up and running is the user's: replacing it silently would lose their
    // instances. Leftovers of a failed or crashed lab are removed by step 1 instead.
    if let Some(old) = LabState::load(&args.state_dir)? {
        if old.complete && old.server.as_ref().is_some_and(ProcessRecord::is_running) {
            bail!(
                "a lab with prefix {:?} is already up (state in {}); take it down first with `{}{} lab down`",
                old.prefix,
                args.state_dir.display(),
                crate::env_hint(args),
                crate::invoked_as()
            );
        }
    }
    check_tun()?;
    if topo.addressing == Addressing::Dhcp {
        check_dhcp_client()?;
    }
    let bin = match &opts.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("finding the softvpc binary")?,
    };
    let api = Ec2Client::new(
        SocketAddr::from((Ipv4Addr::LOCALHOST, opts.api_port)),
        server_data_dir(&args.state_dir).join("credentials"),
    )?;
    let source = match &opts.file {
        None => "the built-in seed topology".to_string(),
        Some(p) => p.display().to_string(),
    };
    outln!(
        "softvpc lab {:?}: {}, {}, {} from {source}",
        args.prefix,
        plural(topo.hosts.len(), "host"),
        plural(topo.vpcs.len(), "VPC"),
        plural(topo.instances.len(), "instance")
    );
    build(args, opts, &topo, &bin, &api, started).map_err(|e| {
        if LabState::path(&args.state_dir).exists() {
            anyhow!(
                "{e:#}\n\nThe half-built lab is left as it is for inspection; remove it with: {}{} lab down",
                crate::env_hint(args),
                crate::invoked_as()
            )
        } else {
            e
        }
    })
}

/// "1 host", "2 hosts".
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The steps of `lab up`.
fn build(
    args: &LabArgs,
    opts: &UpOptions,
    topo: &Topology,
    bin: &Path,
    api: &Ec2Client,
    started: Instant,
) -> anyhow::Result<()> {
    let state_dir = &args.state_dir;
    let prefix = args.prefix.as_str();
    step(1, "removing leftovers of a previous lab", |_| {
        let removed = down::teardown(prefix, state_dir)?;
        if !removed.failures.is_empty() {
            bail!(
                "could not remove everything:\n  {}",
                removed.failures.join("\n  ")
            );
        }
        let detail = if removed.is_empty() {
            "none".to_string()
        } else {
            removed.summary().join("; ")
        };
        Ok(((), detail))
    })?;

    let logs = state_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut state = LabState {
        prefix: prefix.to_string(),
        api_url: api.url(),
        api_port: opts.api_port,
        credentials_file: api.credentials_file.clone(),
        bin: bin.to_path_buf(),
        created_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        ..LabState::default()
    };
    state.save(state_dir)?;

    let mut internet = None;
    step(2, "creating the fabric and host namespaces", |s| {
        build_fabric(prefix, topo, opts, &mut state, state_dir, s)?;
        let fabric = names::fabric_netns(prefix);
        let hosts = plural(topo.hosts.len(), "host");
        let mut detail = format!("{fabric} on 198.18.0.0/16, {hosts}");
        if opts.ha {
            detail.push_str(&format!(
                ", {n} etcd and {n} replica namespaces",
                n = names::HA_MEMBERS
            ));
        }
        if let Some(net) = &topo.internet {
            internet = build_internet(bin, prefix, net, &mut state, state_dir)?;
            detail.push_str(&format!(
                ", internet {} with {}",
                names::internet_netns(prefix),
                plural(net.hosts.len(), "host")
            ));
        }
        Ok(((), detail))
    })?;

    // With --ha, the etcd members and replicas 2.. are watched for an early exit with the agents.
    let mut agents = Vec::new();
    let mut server = if opts.ha {
        step(3, "starting etcd and the server replicas", |s| {
            start_ha(bin, topo, api, &mut state, state_dir, opts, &mut agents, s)
        })?
    } else {
        step(3, "starting the server", |_| {
            let data_dir = server_data_dir(state_dir);
            let placement = vec![
                "--mapping-netns".to_string(),
                names::fabric_netns(&state.prefix),
                "--mapping-listen".to_string(),
                format!("{}:{}", names::FABRIC_IP, names::MAPPING_PORT),
            ];
            start_server(
                bin, topo, api, &data_dir, &placement, "server", &mut state, state_dir, None,
            )
            .map(|p| (p, api.url()))
        })?
    };

    let host_ids = step(4, "starting agents", |s| {
        let ids = start_agents(
            bin,
            &opts.fast_path,
            opts.ha,
            prefix,
            topo,
            api,
            &mut state,
            state_dir,
            &mut server,
            &mut agents,
            s,
        )?;
        let agents = plural(topo.hosts.iter().filter(|h| h.agent).count(), "agent");
        let n = topo.hosts.len();
        Ok((ids, format!("{agents}, {n}/{n} hosts registered")))
    })?;

    let (subnet_ids, group_ids) = step(5, "creating VPCs and subnets", |_| {
        let ids = create_vpcs(topo, api, &mut state, state_dir)?;
        let subnets: usize = topo.vpcs.iter().map(|v| v.subnets.len()).sum();
        let vpcs = plural(topo.vpcs.len(), "VPC");
        let (groups, gateways) = create_gateways(topo, api, &state, &ids)?;
        Ok((
            (ids, groups),
            format!("{vpcs}, {}{gateways}", plural(subnets, "subnet")),
        ))
    })?;

    step(6, "launching instances", |_| {
        let eips = launch_instances(
            prefix,
            topo,
            api,
            &host_ids,
            &subnet_ids,
            &group_ids,
            &mut state,
            state_dir,
        )?;
        Ok((
            (),
            format!("{}{eips}", plural(topo.instances.len(), "instance")),
        ))
    })?;

    step(7, "waiting for instances to reach their routers", |s| {
        let detail = wait_for_instances(topo, &state, opts.wait, &mut server, &mut agents, s)?;
        if let Some(internet) = internet.as_mut() {
            internet.check()?;
        }
        Ok(((), detail))
    })?;

    state.complete = true;
    state.save(state_dir)?;
    print_usage(args, topo, &state, started.elapsed());
    Ok(())
}

/// The lab runs no external program (netlink, its own probe) but the instances' DHCP client
/// ([`check_dhcp_client`]), so its other prerequisite beyond root is the kernel's TUN/TAP
/// device, which every instance's ENI is made from.
fn check_tun() -> anyhow::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    const TUN: &str = "/dev/net/tun";
    let meta = std::fs::metadata(TUN).map_err(|e| {
        anyhow!("{TUN} is missing ({e}): the lab needs the kernel's TUN/TAP driver (modprobe tun)")
    })?;
    let dev = meta.rdev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    if !meta.file_type().is_char_device() || (major, minor) != (10, 200) {
        bail!(
            "{TUN} is not the TUN/TAP device (it is {major}:{minor}, not the character device 10:200): the lab needs the kernel's TUN/TAP driver (modprobe tun)"
        );
    }
    Ok(())
}

/// Where the agents look for the DHCP client besides their PATH (as `softvpc agent` does).
const CLIENT_DIRS: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// With DHCP addressing (the default), each instance runs busybox's `udhcpc`: without it the
/// lab says so before building anything, rather than building instances without addresses.
/// There is no silent fallback to static addressing: the topology chooses
/// (`instance_addressing = "static"`).
fn check_dhcp_client() -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(std::env::split_paths(CLIENT_DIRS))
        .filter(|d| d.is_absolute())
        .any(|d| d.join("udhcpc").is_file() || d.join("busybox").is_file());
    if !found {
        bail!(
            "the lab's instances get their address by DHCP and no DHCP client is installed (udhcpc or busybox): install it (apt-get install udhcpc), or set instance_addressing = \"static\" at the top of the topology file"
        );
    }
    Ok(())
}

/// Step 2: the fabric netns with its bridge, and per host a netns joined to it by a veth.
fn build_fabric(
    prefix: &str,
    topo: &Topology,
    opts: &UpOptions,
    state: &mut LabState,
    state_dir: &Path,
    s: &Step,
) -> anyhow::Result<()> {
    softvpc_netlink::block_on(async {
        plumb_fabric(prefix, topo, state, state_dir).await?;
        if opts.ha {
            crate::ha::plumb(prefix, opts.api_port, state, state_dir).await?;
        }
        anyhow::Ok(())
    })?;
    for ns in crate::ha::namespaces(state) {
        let deadline = Instant::now() + FABRIC_READY;
        while !probe::ping_in_netns(&ns, names::FABRIC_IP, Duration::from_secs(1))? {
            if Instant::now() >= deadline {
                bail!(
                    "{ns} cannot ping the fabric bridge {} within {FABRIC_READY:?}",
                    names::FABRIC_IP
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // Every host must reach the fabric before anything runs on it.
    let fabric_ip = names::FABRIC_IP.to_string();
    for host in &state.hosts {
        let deadline = Instant::now() + FABRIC_READY;
        while !probe::ping_in_netns(&host.netns, names::FABRIC_IP, Duration::from_secs(1))? {
            if Instant::now() >= deadline {
                bail!("host {} ({}) cannot ping the fabric bridge {fabric_ip} within {FABRIC_READY:?}", host.name, host.netns);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        s.progress(&format!("{} up", host.name));
    }
    Ok(())
}

/// Step 2's plumbing (netlink): the fabric netns with its bridge, and per host a netns joined
/// to it by a veth.
async fn plumb_fabric(
    prefix: &str,
    topo: &Topology,
    state: &mut LabState,
    state_dir: &Path,
) -> anyhow::Result<()> {
    let fabric = names::fabric_netns(prefix);
    let nf = add_netns(&fabric, state, state_dir).await?;
    state.fabric_netns = Some(fabric.clone());
    state.save(state_dir)?;
    nf.add_bridge(names::FABRIC_BRIDGE).await?;
    // Set explicitly, so a port added later with a smaller MTU does not lower the bridge's.
    nf.set_link(
        names::FABRIC_BRIDGE,
        &softvpc_netlink::LinkChange {
            mtu: Some(names::UNDERLAY_MTU),
            ..Default::default()
        },
    )
    .await?;
    nf.add_address(
        names::FABRIC_BRIDGE,
        names::FABRIC_IP,
        names::UNDERLAY_PREFIX_LEN,
        false,
    )
    .await?;
    nf.set_up(names::FABRIC_BRIDGE).await?;

    for (i, host) in topo.hosts.iter().enumerate() {
        let ns = names::host_netns(prefix, &host.name);
        let port = names::fabric_port(i + 1);
        let nh = add_netns(&ns, state, state_dir).await?;
        state.hosts.push(HostRecord {
            name: host.name.clone(),
            netns: ns.clone(),
            underlay_ip: host.underlay_ip.to_string(),
            agent: host.agent,
            process: None,
            host_id: None,
        });
        state.save(state_dir)?;
        // Created inside the fabric netns with one end straight in the host's, so no link ever
        // appears in the root netns.
        nf.add_veth(&port, names::HOST_UNDERLAY_IF, Some(&ns))
            .await?;
        // Jumbo underlay: instances' 9001-byte frames plus VXLAN cross it whole.
        let jumbo = softvpc_netlink::LinkChange {
            mtu: Some(names::UNDERLAY_MTU),
            ..Default::default()
        };
        nf.set_link(&port, &jumbo).await?;
        nh.set_link(names::HOST_UNDERLAY_IF, &jumbo).await?;
        nf.set_master(&port, names::FABRIC_BRIDGE).await?;
        nf.set_up(&port).await?;
        nh.add_address(
            names::HOST_UNDERLAY_IF,
            host.underlay_ip,
            names::UNDERLAY_PREFIX_LEN,
            false,
        )
        .await?;
        nh.set_up(names::HOST_UNDERLAY_IF).await?;
    }
    Ok(())
}

/// Step 2, with `[internet]`: the internet's netns, its hosts' addresses on its bridge, and its
/// servers (until they answer).
fn build_internet(
    bin: &Path,
    prefix: &str,
    net: &topology::Internet,
    state: &mut LabState,
    state_dir: &Path,
) -> anyhow::Result<Option<Started>> {
    let ns = names::internet_netns(prefix);
    softvpc_netlink::block_on(async {
        let nl = add_netns(&ns, state, state_dir).await?;
        state.internet = Some(InternetRecord {
            netns: ns.clone(),
            hosts: net.hosts.iter().map(ToString::to_string).collect(),
            http: net.http.map(|a| a.to_string()),
            udp_echo: net.udp_echo.map(|a| a.to_string()),
            process: None,
        });
        state.save(state_dir)?;
        nl.add_bridge(names::INTERNET_BRIDGE).await?;
        nl.set_link(
            names::INTERNET_BRIDGE,
            &softvpc_netlink::LinkChange {
                mac: Some(names::INTERNET_MAC),
                ..Default::default()
            },
        )
        .await?;
        for ip in &net.hosts {
            nl.add_address(
                names::INTERNET_BRIDGE,
                *ip,
                topology::INTERNET_NET.prefix_len(),
                false,
            )
            .await?;
        }
        nl.set_up(names::INTERNET_BRIDGE).await?;
        anyhow::Ok(())
    })?;
    if net.http.is_none() && net.udp_echo.is_none() && net.dns.is_none() {
        return Ok(None);
    }
    let log = state_dir.join("logs").join("internet.log");
    let args = crate::internet::serve_command(&ns, net);
    let child = sys::spawn_detached(bin, &args, &log)?;
    if let Some(rec) = state.internet.as_mut() {
        rec.process = Some(ProcessRecord::new(child.id() as i32, log.clone()));
    }
    state.save(state_dir)?;
    let mut started = Started {
        child,
        log,
        what: "the internet's servers".to_string(),
    };
    let deadline = Instant::now() + INTERNET_READY;
    loop {
        started.check()?;
        let (http, udp_echo, dns) = (net.http, net.udp_echo, net.dns);
        let ready = softvpc_netlink::netns::run_in(&ns, move || {
            anyhow::Ok(
                http.is_none_or(|a| {
                    TcpStream::connect_timeout(&a.into(), Duration::from_millis(300)).is_ok()
                }) && udp_echo.is_none_or(|a| udp_echoes(a).unwrap_or(false))
                    && dns.is_none_or(|a| dns_answers(a).unwrap_or(false)),
            )
        })?;
        if ready {
            return Ok(Some(started));
        }
        if Instant::now() >= deadline {
            bail!(
                "the internet's servers did not answer within {INTERNET_READY:?}; read {}{}",
                started.log.display(),
                log_tail(&started.log)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the resolver at `to` answers a query (for the root, type A: NXDOMAIN is an answer)
/// with its id (run inside the internet's netns).
fn dns_answers(to: std::net::SocketAddrV4) -> std::io::Result<bool> {
    let sock = std::net::UdpSocket::bind((*to.ip(), 0))?;
    sock.set_read_timeout(Some(Duration::from_millis(300)))?;
    let query = [0x5e, 0xed, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1];
    sock.send_to(&query, to)?;
    let mut buf = [0u8; 512];
    Ok(matches!(sock.recv_from(&mut buf), Ok((n, from))
        if n >= 12 && buf[..2] == query[..2] && buf[2] & 0x80 != 0 && from == to.into()))
}

/// Whether a datagram sent to `to` comes back (run inside the internet's netns).
fn udp_echoes(to: std::net::SocketAddrV4) -> std::io::Result<bool> {
    let sock = std::net::UdpSocket::bind((*to.ip(), 0))?;
    sock.set_read_timeout(Some(Duration::from_millis(300)))?;
    sock.send_to(b"softvpc lab probe", to)?;
    let mut buf = [0u8; 64];
    Ok(
        matches!(sock.recv_from(&mut buf), Ok((n, from)) if &buf[..n] == b"softvpc lab probe" && from == to.into()),
    )
}

/// Creates a netns with lo up and IPv6 off (no router solicitations or MLD in captures); returns
/// a netlink socket in it.
pub(crate) async fn add_netns(
    ns: &str,
    state: &mut LabState,
    state_dir: &Path,
) -> anyhow::Result<softvpc_netlink::Netlink> {
    softvpc_netlink::netns::create(ns)?;
    state.netns.push(ns.to_string());
    state.save(state_dir)?;
    softvpc_netlink::netns::set_sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")?;
    softvpc_netlink::netns::set_sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")?;
    let nl = softvpc_netlink::Netlink::connect_in(ns)?;
    nl.set_up("lo").await?;
    Ok(nl)
}

/// The server's data directory (store and `credentials`).
pub fn server_data_dir(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("server")
}

/// Step 3: a server process (the lab's one server in the root netns, or a replica of
/// `--ha`), until `GET /healthz` answers on `api`. `placement`: where its mapping service and
/// store are. `replica`: which replica it is (0-based), recorded in the state; `None` for the
/// one server.
#[allow(clippy::too_many_arguments)]
fn start_server(
    bin: &Path,
    topo: &Topology,
    api: &Ec2Client,
    data_dir: &Path,
    placement: &[String],
    name: &str,
    state: &mut LabState,
    state_dir: &Path,
    replica: Option<usize>,
) -> anyhow::Result<Started> {
    if TcpStream::connect_timeout(&api.addr, Duration::from_millis(300)).is_ok() {
        bail!("something already listens on {} (another lab or server?); pick another port with --api-port", api.addr);
    }
    let mut server_args = vec![
        "server".to_string(),
        "--data-dir".to_string(),
        data_dir.display().to_string(),
        "--listen".to_string(),
        api.addr.to_string(),
    ];
    server_args.extend(placement.iter().cloned());
    // The lab's VPCs come from its topology; no default VPC.
    server_args.push("--no-default-vpc".to_string());
    for h in topo.hosts.iter().filter(|h| !h.agent) {
        server_args.push("--register-host".to_string());
        server_args.push(format!(
            "{}={}@{}",
            h.name, h.underlay_ip, h.availability_zone
        ));
    }
    // The account's quotas (`softvpc server --sg-rules-per-group`, `--sgs-per-interface`),
    // when the environment of `lab up` sets them (the e2e tests raise the rules per group).
    for (var, flag) in [
        ("SOFTVPC_SG_RULES_PER_GROUP", "--sg-rules-per-group"),
        ("SOFTVPC_SGS_PER_INTERFACE", "--sgs-per-interface"),
    ] {
        if let Ok(v) = std::env::var(var) {
            server_args.extend([flag.to_string(), v]);
        }
    }
    let log = state_dir.join("logs").join(format!("{name}.log"));
    let child = sys::spawn_detached(bin, &server_args, &log)?;
    let record = ProcessRecord::new(child.id() as i32, log.clone()).with_argv(bin, &server_args);
    match replica {
        None => state.server = Some(record),
        Some(i) => {
            if i == 0 {
                state.server = Some(record.clone());
            }
            state.replicas[i].process = Some(record);
        }
    }
    state.save(state_dir)?;
    let mut server = Started {
        child,
        log,
        what: format!("the {name}"),
    };
    let deadline = Instant::now() + SERVER_START;
    while !api.healthy() {
        server.check()?;
        if Instant::now() >= deadline {
            bail!(
                "the {name} did not answer GET {}/healthz within {SERVER_START:?}; read its log: {}{}",
                api.url(),
                server.log.display(),
                log_tail(&server.log)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(server)
}

/// Step 3 with `--ha`: the etcd members, then the replicas one by one (the first makes the CA
/// and API key pair the others get copies of). Returns the first replica (the lab's `server`);
/// the other processes go to `others`.
#[allow(clippy::too_many_arguments)]
fn start_ha(
    bin: &Path,
    topo: &Topology,
    api: &Ec2Client,
    state: &mut LabState,
    state_dir: &Path,
    opts: &UpOptions,
    others: &mut Vec<Started>,
    s: &Step,
) -> anyhow::Result<(Started, String)> {
    let prefix = state.prefix.clone();
    let members = crate::ha::start_etcd(&prefix, state, state_dir)?;
    s.progress(&format!("{} etcd members healthy", members.len()));
    others.extend(members);
    let mut first = None;
    for i in 1..=names::HA_MEMBERS {
        let data_dir = crate::ha::replica_data_dir(state_dir, i);
        let client = if i == 1 {
            api.clone()
        } else {
            crate::ha::copy_identity(&crate::ha::replica_data_dir(state_dir, 1), &data_dir)?;
            Ec2Client::new(
                SocketAddr::from((names::replica_api_ip(i), opts.api_port)),
                data_dir.join("credentials"),
            )?
        };
        let placement = vec![
            "--netns".to_string(),
            names::replica_netns(&state.prefix, i),
            "--mapping-listen".to_string(),
            format!("{}:{}", names::replica_ip(i), names::MAPPING_PORT),
            "--store".to_string(),
            "etcd".to_string(),
            "--etcd-endpoints".to_string(),
            crate::ha::etcd_endpoints(),
        ];
        let name = format!("replica-{i}");
        let started = start_server(
            bin,
            topo,
            &client,
            &data_dir,
            &placement,
            &name,
            state,
            state_dir,
            Some(i - 1),
        )?;
        s.progress(&format!("{name} up"));
        match first {
            None => first = Some(started),
            Some(_) => others.push(started),
        }
    }
    let first = first.context("no replica started")?;
    let apis: Vec<&str> = state.replicas.iter().map(|r| r.api_url.as_str()).collect();
    Ok((
        first,
        format!(
            "{} etcd members, {} replicas at {}",
            names::HA_MEMBERS,
            names::HA_MEMBERS,
            apis.join(", ")
        ),
    ))
}

/// A join token for `host` from the lab's running server (`softvpc server join-token`).
fn join_token(bin: &Path, state_dir: &Path, host: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new(bin)
        .args([
            "server",
            "join-token",
            "--host",
            host,
            "--ttl",
            "10m",
            "--data-dir",
        ])
        .arg(server_data_dir(state_dir))
        .stdin(std::process::Stdio::null())
        .output()
        .context("running `softvpc server join-token`")?;
    if !out.status.success() {
        bail!(
            "`softvpc server join-token --host {host}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Step 4: one agent per host that has one; returns host name -> host id once DescribeHosts
/// lists every host of the topology.
#[allow(clippy::too_many_arguments)]
fn start_agents(
    bin: &Path,
    fast_path: &str,
    ha: bool,
    prefix: &str,
    topo: &Topology,
    api: &Ec2Client,
    state: &mut LabState,
    state_dir: &Path,
    server: &mut Started,
    agents: &mut Vec<Started>,
    s: &Step,
) -> anyhow::Result<HashMap<String, String>> {
    for (i, host) in topo.hosts.iter().enumerate() {
        if !host.agent {
            continue;
        }
        let ns = names::host_netns(prefix, &host.name);
        // Every lab agent joins as a real host would: a single-use token from the running
        // server, traded for a certificate over the mapping service, mutual TLS from then on.
        let token = join_token(bin, state_dir, &host.name)?;
        let mut agent_args = vec![
            "agent".to_string(),
            "--join-token".to_string(),
            token,
            "--state-dir".to_string(),
            state_dir
                .join("agents")
                .join(&host.name)
                .display()
                .to_string(),
            "--netns".to_string(),
            ns,
            "--server".to_string(),
            names::mapping_urls(ha),
            "--host-name".to_string(),
            host.name.clone(),
            "--underlay-ip".to_string(),
            host.underlay_ip.to_string(),
            "--availability-zone".to_string(),
            host.availability_zone.clone(),
            "--instance-netns-prefix".to_string(),
            prefix.to_string(),
            "--fast-path".to_string(),
            fast_path.to_string(),
            "--instance-addressing".to_string(),
            topo.addressing.as_arg().to_string(),
        ];
        if let (Some(net), Some(dns)) =
            (&state.internet, topo.internet.as_ref().and_then(|i| i.dns))
        {
            // The lab's upstream resolver, in its internet: the agent's forwarding socket is
            // opened there (as a host reaches its resolver over its own network, not through
            // a VPC). Without one, the names the routers do not answer get SERVFAIL.
            agent_args.extend([
                "--dns-upstream".to_string(),
                dns.to_string(),
                "--dns-upstream-netns".to_string(),
                net.netns.clone(),
            ]);
        }
        if let (Some(net), Some(gateway)) = (
            &state.internet,
            topo.internet.as_ref().and_then(|i| i.hosts.first()),
        ) {
            // Each host's edge joins the internet's bridge: the internet gateway's translation
            // for its instances runs there (ARCHITECTURE.md, "The edge").
            agent_args.extend([
                "--edge-netns".to_string(),
                net.netns.clone(),
                "--edge-bridge".to_string(),
                names::INTERNET_BRIDGE.to_string(),
                "--edge-gateway".to_string(),
                gateway.to_string(),
            ]);
        }
        let log = state_dir
            .join("logs")
            .join(format!("agent-{}.log", host.name));
        let child = sys::spawn_detached(bin, &agent_args, &log)?;
        state.hosts[i].process =
            Some(ProcessRecord::new(child.id() as i32, log.clone()).with_argv(bin, &agent_args));
        state.save(state_dir)?;
        agents.push(Started {
            child,
            log,
            what: format!("the agent of {}", host.name),
        });
    }

    let deadline = Instant::now() + AGENTS_REGISTER;
    let mut shown = usize::MAX;
    loop {
        server.check()?;
        for a in agents.iter_mut() {
            a.check()?;
        }
        let (found, last_error) = match api.describe_hosts() {
            Ok(list) => {
                let ids: HashMap<String, String> = list
                    .into_iter()
                    .filter_map(|h| Some((h.name?, h.host_id)))
                    .collect();
                (ids, None)
            }
            Err(e) => (HashMap::new(), Some(e)),
        };
        let registered = topo
            .hosts
            .iter()
            .filter(|h| found.contains_key(&h.name))
            .count();
        if registered != shown {
            s.progress(&format!("{registered}/{}", topo.hosts.len()));
            shown = registered;
        }
        if registered == topo.hosts.len() {
            for h in state.hosts.iter_mut() {
                h.host_id = found.get(&h.name).cloned();
            }
            state.save(state_dir)?;
            return Ok(found);
        }
        if Instant::now() >= deadline {
            let missing: Vec<String> = topo
                .hosts
                .iter()
                .filter(|h| !found.contains_key(&h.name))
                .map(|h| {
                    if h.agent {
                        format!(
                            "{} (read {})",
                            h.name,
                            state_dir
                                .join("logs")
                                .join(format!("agent-{}.log", h.name))
                                .display()
                        )
                    } else {
                        format!(
                            "{} (agent-less, registered by the server: read {})",
                            h.name,
                            server.log.display()
                        )
                    }
                })
                .collect();
            let why = last_error
                .map(|e| format!("; last DescribeHosts error: {e:#}"))
                .unwrap_or_default();
            bail!(
                "not every host registered within {AGENTS_REGISTER:?}; missing: {}{why}",
                missing.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Step 5: the VPCs and subnets; returns (vpc index, subnet index) -> subnet id.
fn create_vpcs(
    topo: &Topology,
    api: &Ec2Client,
    state: &mut LabState,
    state_dir: &Path,
) -> anyhow::Result<HashMap<(usize, usize), String>> {
    let mut ids = HashMap::new();
    for (vi, vpc) in topo.vpcs.iter().enumerate() {
        let vpc_id = api
            .create_vpc(&vpc.cidr.to_string())
            .with_context(|| format!("creating vpc {}", vpc.name))?;
        state.vpcs.push(VpcRecord {
            name: vpc.name.clone(),
            cidr: vpc.cidr.to_string(),
            vpc_id: vpc_id.clone(),
            subnets: Vec::new(),
        });
        state.save(state_dir)?;
        api.name_resource(&vpc_id, &vpc.name)
            .with_context(|| format!("naming vpc {}", vpc.name))?;
        for (si, subnet) in vpc.subnets.iter().enumerate() {
            let subnet_id = api
                .create_subnet(&vpc_id, &subnet.cidr.to_string(), &subnet.availability_zone)
                .with_context(|| format!("creating subnet {} of vpc {}", subnet.cidr, vpc.name))?;
            if let Some(name) = &subnet.name {
                api.name_resource(&subnet_id, name)
                    .with_context(|| format!("naming subnet {}", subnet.cidr))?;
            }
            if let Some(v) = state.vpcs.last_mut() {
                v.subnets.push(SubnetRecord {
                    name: subnet.name.clone(),
                    cidr: subnet.cidr.to_string(),
                    subnet_id: subnet_id.clone(),
                });
            }
            state.save(state_dir)?;
            ids.insert((vi, si), subnet_id);
        }
    }
    Ok(ids)
}

/// Security group ids by (vpc index, group index).
type GroupIds = HashMap<(usize, usize), String>;

/// Step 5, continued: each VPC's internet gateway, security groups (with their inbound rules),
/// NAT gateways (each with an Elastic IP) and the subnets' own route tables. Returns the group
/// ids by (vpc, group index) and a summary for the step's line.
fn create_gateways(
    topo: &Topology,
    api: &Ec2Client,
    state: &LabState,
    subnet_ids: &HashMap<(usize, usize), String>,
) -> anyhow::Result<(GroupIds, String)> {
    use crate::topology::{RouteTarget, RulePeer};
    let mut groups = HashMap::new();
    let mut summary = String::new();
    for (vi, vpc) in topo.vpcs.iter().enumerate() {
        let vpc_id = &state.vpcs[vi].vpc_id;
        let igw = match vpc.internet_gateway {
            true => {
                let id = api
                    .internet_gateway(vpc_id)
                    .with_context(|| format!("internet gateway of vpc {}", vpc.name))?;
                summary.push_str(&format!(", {id}"));
                Some(id)
            }
            false => None,
        };
        for (gi, g) in vpc.security_groups.iter().enumerate() {
            let id = api
                .security_group(vpc_id, &g.name)
                .with_context(|| format!("security group {} of vpc {}", g.name, vpc.name))?;
            groups.insert((vi, gi), id);
        }
        for (gi, g) in vpc.security_groups.iter().enumerate() {
            for r in &g.ingress {
                let (cidr, peer) = match &r.peer {
                    RulePeer::Cidr(c) => (Some(c.to_string()), None),
                    RulePeer::Group(i) => (None, groups.get(&(vi, *i)).cloned()),
                };
                api.authorize_ingress(
                    &groups[&(vi, gi)],
                    &r.protocol,
                    r.ports,
                    cidr.as_deref(),
                    peer.as_deref(),
                )
                .with_context(|| format!("a rule of security group {}", g.name))?;
            }
        }
        let mut nats = Vec::new();
        for n in &vpc.nat_gateways {
            let subnet = subnet_ids
                .get(&(vi, n.subnet))
                .context("subnet was not created")?;
            let (alloc, ip) = api.allocate_address()?;
            let id = api
                .nat_gateway(subnet, &alloc)
                .with_context(|| format!("NAT gateway {} of vpc {}", n.name, vpc.name))?;
            api.name_resource(&id, &n.name)?;
            summary.push_str(&format!(", {id} ({}) at {ip}", n.name));
            nats.push(id);
        }
        for (si, subnet) in vpc.subnets.iter().enumerate() {
            if subnet.routes.is_empty() {
                continue;
            }
            let routes: Vec<(String, &str, String)> = subnet
                .routes
                .iter()
                .map(|r| match r.target {
                    RouteTarget::InternetGateway => (
                        r.destination.to_string(),
                        "GatewayId",
                        igw.clone().unwrap_or_default(),
                    ),
                    RouteTarget::NatGateway(i) => (
                        r.destination.to_string(),
                        "NatGatewayId",
                        nats.get(i).cloned().unwrap_or_default(),
                    ),
                })
                .collect();
            api.route_table(vpc_id, &subnet_ids[&(vi, si)], &routes)
                .with_context(|| format!("route table of subnet {}", subnet.cidr))?;
        }
    }
    Ok((groups, summary))
}

/// Step 6: the instances, each placed on its host, in its groups, with its Elastic IP.
/// Returns a summary of the Elastic IPs for the step's line.
#[allow(clippy::too_many_arguments)]
fn launch_instances(
    prefix: &str,
    topo: &Topology,
    api: &Ec2Client,
    host_ids: &HashMap<String, String>,
    subnet_ids: &HashMap<(usize, usize), String>,
    group_ids: &HashMap<(usize, usize), String>,
    state: &mut LabState,
    state_dir: &Path,
) -> anyhow::Result<String> {
    let mut eips = String::new();
    for inst in &topo.instances {
        let host = &topo.hosts[inst.host].name;
        let host_id = host_ids
            .get(host)
            .with_context(|| format!("no host id for {host}"))?;
        let subnet_id = subnet_ids
            .get(&(inst.vpc, inst.subnet))
            .context("subnet was not created")?;
        let ip = inst.ip.map(|ip| ip.to_string());
        let groups: Vec<String> = inst
            .security_groups
            .iter()
            .filter_map(|g| group_ids.get(&(inst.vpc, *g)).cloned())
            .collect();
        let info = api
            .run_instance_in(&inst.name, subnet_id, ip.as_deref(), host_id, &groups)
            .with_context(|| format!("launching instance {}", inst.name))?;
        if inst.elastic_ip {
            let (alloc, public) = api.allocate_address()?;
            api.associate_address(&alloc, &info.instance_id)
                .with_context(|| format!("the Elastic IP of {}", inst.name))?;
            eips.push_str(&format!(", {} at {public}", inst.name));
        }
        state.instances.push(InstanceRecord {
            name: inst.name.clone(),
            netns: names::instance_netns(prefix, &info.instance_id),
            instance_id: info.instance_id,
            ip: info.ip.or(ip),
            host: host.clone(),
            vpc: topo.vpcs[inst.vpc].name.clone(),
            vpc_id: state
                .vpcs
                .get(inst.vpc)
                .map(|v| v.vpc_id.clone())
                .unwrap_or_default(),
            subnet_id: subnet_id.clone(),
        });
        state.save(state_dir)?;
    }
    Ok(eips)
}

/// Step 7: until every instance on a host with an agent has its netns and pings its router.
fn wait_for_instances(
    topo: &Topology,
    state: &LabState,
    wait: Duration,
    server: &mut Started,
    agents: &mut [Started],
    s: &Step,
) -> anyhow::Result<String> {
    // (instance record, router address, host's agent log)
    let mut pending: Vec<(&InstanceRecord, Ipv4Addr, PathBuf)> = Vec::new();
    let mut skipped = 0;
    for (inst, rec) in topo.instances.iter().zip(&state.instances) {
        let host = &topo.hosts[inst.host];
        if !host.agent {
            skipped += 1;
            continue;
        }
        let log = state.hosts[inst.host]
            .process
            .as_ref()
            .map(|p| p.log.clone())
            .unwrap_or_default();
        pending.push((rec, topology::router_ip(topo.subnet_of(inst).cidr), log));
    }
    let total = pending.len();
    let deadline = Instant::now() + wait;
    let mut shown = usize::MAX;
    loop {
        server.check()?;
        for a in agents.iter_mut() {
            a.check()?;
        }
        // Probe every candidate in parallel: each probe waits up to a second for its answer.
        let reached: Vec<usize> = std::thread::scope(|scope| {
            let probes: Vec<_> = pending
                .iter()
                .enumerate()
                .filter(|(_, (rec, _, _))| sys::netns_exists(&rec.netns))
                .map(|(i, (rec, router, _))| {
                    let ns = rec.netns.as_str();
                    let router = *router;
                    (
                        i,
                        scope.spawn(move || {
                            probe::ping_in_netns(ns, router, Duration::from_secs(1))
                        }),
                    )
                })
                .collect();
            probes
                .into_iter()
                // A probe error (the netns vanished mid-probe) counts as not reached yet.
                .filter_map(|(i, p)| matches!(p.join(), Ok(Ok(true))).then_some(i))
                .collect()
        });
        for i in reached.into_iter().rev() {
            pending.remove(i);
        }
        let done = total - pending.len();
        if done != shown {
            s.progress(&format!("{done}/{total}"));
            shown = done;
        }
        if pending.is_empty() {
            let mut detail = format!("{total}/{total} instances reach their router");
            if skipped > 0 {
                detail.push_str(&format!(", {skipped} on agent-less hosts not checked"));
            }
            return Ok(detail);
        }
        if Instant::now() >= deadline {
            let lines: Vec<String> = pending
                .iter()
                .map(|(rec, router, log)| {
                    let what = if sys::netns_exists(&rec.netns) {
                        format!("no ICMP echo reply from {router} inside {}", rec.netns)
                    } else {
                        format!("netns {} was never created", rec.netns)
                    };
                    format!(
                        "{} ({}) on {}: {what}; read {}",
                        rec.name,
                        rec.instance_id,
                        rec.host,
                        log.display()
                    )
                })
                .collect();
            bail!(
                "{} of {total} instances not ready within {wait:?}:\n  {}",
                pending.len(),
                lines.join("\n  ")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What to do with the lab now.
fn print_usage(args: &LabArgs, topo: &Topology, state: &LabState, took: Duration) {
    let me = crate::invoked_as();
    let env = crate::env_hint(args);
    let url = &state.api_url;
    outln!();
    outln!(
        "The lab is up ({:.1} s). EC2 API: {url}  (SigV4: key pair in {})",
        took.as_secs_f64(),
        state.credentials_file.display()
    );
    outln!();
    outln!("Instances:");
    for rec in &state.instances {
        outln!(
            "  {:<12} {:<21} {:<15} {:<8} {:<12} netns {}",
            rec.name,
            rec.instance_id,
            rec.ip.as_deref().unwrap_or("-"),
            rec.host,
            rec.vpc,
            rec.netns
        );
    }
    if !state.replicas.is_empty() {
        outln!();
        outln!("Control plane: {} server replicas on a {}-member etcd cluster (any replica takes any call):", state.replicas.len(), state.etcd.len());
        for r in &state.replicas {
            outln!(
                "  {:<10} EC2 API {:<22} mapping {:<24} netns {}",
                r.name,
                r.api_url,
                r.mapping_url,
                r.netns
            );
        }
        for e in &state.etcd {
            outln!("  {:<10} {:<30} netns {}", e.name, e.client_url, e.netns);
        }
    }
    outln!();
    outln!("Use it (the AWS CLI and SDKs, signed with the lab server's key pair):");
    for line in export_lines(state) {
        outln!("  {line}");
    }
    outln!("  aws ec2 describe-instances");
    outln!("  aws ec2 --endpoint-url {url} describe-vpcs   # for old AWS CLI releases that ignore AWS_ENDPOINT_URL");
    if let Some((a, b)) = example_pair(topo, state) {
        let target = b.ip.clone().unwrap_or_default();
        outln!("  {env}{me} lab exec {} -- ping -c1 {target}", a.name);
        outln!(
            "  {env}{me} lab exec {} -- tcpdump -eni eth0        # what {} sees",
            b.name,
            b.name
        );
    }
    if let Some(net) = &state.internet {
        if let Some(http) = &net.http {
            outln!("  {env}{me} lab exec internet -- curl -s http://{http}/   # the lab's internet ({})", net.hosts.join(", "));
        }
    }
    outln!(
        "  ip netns exec {} tcpdump -eni {} udp port 4789   # VXLAN on the underlay",
        names::fabric_netns(&args.prefix),
        names::FABRIC_BRIDGE
    );
    outln!("  {env}{me} lab status");
    outln!("  {env}{me} lab down");
}

/// The shell `export` lines that point the AWS CLI and SDKs at the lab's server.
pub fn export_lines(state: &LabState) -> Vec<String> {
    vec![
        format!(
            "export AWS_SHARED_CREDENTIALS_FILE={}",
            state.credentials_file.display()
        ),
        "export AWS_DEFAULT_REGION=us-east-1".to_string(),
        format!("export AWS_ENDPOINT_URL={}", state.api_url),
    ]
}

/// Two instances of one VPC for the printed examples, preferring different hosts (the seed's
/// zigi-vm1 -> zigi-vm2).
fn example_pair<'a>(
    topo: &Topology,
    state: &'a LabState,
) -> Option<(&'a InstanceRecord, &'a InstanceRecord)> {
    let recs = &state.instances;
    let checked = |i: usize| topo.hosts[topo.instances[i].host].agent && recs[i].ip.is_some();
    let mut fallback = None;
    for i in (0..recs.len()).filter(|&i| checked(i)) {
        for j in (0..recs.len()).filter(|&j| j != i && checked(j)) {
            if topo.instances[i].vpc != topo.instances[j].vpc {
                continue;
            }
            if topo.instances[i].host != topo.instances[j].host {
                return Some((&recs[i], &recs[j]));
            }
            fallback.get_or_insert((&recs[i], &recs[j]));
        }
    }
    fallback
}
