//! `softvpc-bench-mapping`: mapping propagation to many simulated agents, end to end.
//!
//! For each `--agents` count it starts a real `softvpc server` (the release binary) and, in this
//! one process, that many simulated agents. Each is a host as the trust code requires: a join
//! token from the server's admin socket, `Join` (its own key and certificate), then over its own
//! mutual-TLS gRPC connection `RegisterHost` and a `Watch` stream whose messages it applies to a
//! `softvpc_mapping::Replica`, the agent's own applier (no data plane). Then, through the signed
//! EC2 API:
//!
//! 1. one VPC, a subnet and one instance placed on every host (`Placement.HostId`), so every
//!    agent needs the VPC; waits until every agent holds every instance's ENI;
//! 2. `--changes` changes, one at a time: CreateNetworkInterface, DeleteNetworkInterface of it,
//!    and so on; each change is timed from the API request until **every** agent has applied
//!    it (the ENI appears in, or leaves, its replica);
//! 3. prints, per agent count: the time until every agent applied a change (p50/p99/max over
//!    changes); the server's share of it, from the change's commit to the socket write of its
//!    last watch message (p50/p99/max, from the server's admin socket, `POST /mapping/fanout`);
//!    each agent's delay (p50/p99 over every agent and change), the API call's
//!    latency, the server's CPU per change, its resident memory (now and peak), the watch
//!    bytes per change (the protobuf messages the agents received, without TLS/HTTP/2 framing)
//!    and the load average;
//! 4. and the simulated agents' own CPU per change over the same window (this process's CPU,
//!    `getrusage`, less its main thread's, which drives the API calls and waits: printed beside
//!    it), each side's CPU per watch message, and the **work-conservation floor**: (server CPU +
//!    agents' CPU per change) / the CPUs of the machine, the least wall time in which a change
//!    can reach every agent here, however the two sides are scheduled.
//!
//! With `--big-vpc N` it then starts another server, creates N ENIs in one VPC (8 API clients),
//! and reports the server's resident memory per ENI, and for one agent with an instance in that
//! VPC: the time of a full resync (a fresh Watch until its Snapshot is applied, five times), the
//! Snapshot's size, and this process's resident memory per ENI held in the `Replica`.
//!
//! `--agents-nice N` runs the simulated agents' threads at nice N (the server and this process's
//! main thread stay at 0): real agents run on other machines, so this shows the server's share
//! with the CPUs its own first; the agents still apply every message. `--no-apply` makes the
//! agents' receive the cheapest this harness has: during the measured phase each message is read
//! (TLS, HTTP/2) and decoded (protobuf) but not applied to the `Replica`.
//!
//! Every loop is bounded (`--time-limit`, a per-change timeout); the server and its directory go
//! away at the end (the server also dies with this process).

mod server;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Parser;
use prost::Message;
use softvpc_ec2_client::read::str_at;
use softvpc_ec2_client::{BlockingClient, Value};
use softvpc_mapping::Replica;
use softvpc_proto::pb;
use softvpc_server::trust::admin::{self, TokenRequest, TokenResponse};
use softvpc_trust::token::JoinToken;

use server::{start_server, Server};

#[derive(Parser, Debug)]
#[command(about = "Mapping propagation to many simulated agents (real gRPC watches over mTLS)")]
struct Args {
    /// The softvpc binary (default: $SOFTVPC_BIN, else `softvpc` next to this program).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Agent counts, one run (and one server) each.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    agents: Vec<usize>,
    /// API changes measured per run (alternately a new ENI and its deletion).
    #[arg(long, default_value_t = 100)]
    changes: usize,
    /// Longest wait for every agent to apply one change.
    #[arg(long, default_value_t = 30)]
    change_timeout: u64,
    /// Worker threads of the simulated agents' runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Run the simulated agents' threads at this nice value (0-19; default 0, the server's).
    /// Real agents run on other machines: with the agents niced, the server's share of a change
    /// is what it would be with its CPUs its own, while the agents still apply every message
    /// (on whatever CPU the server leaves them, so their figures then include waiting for it).
    #[arg(long, default_value_t = 0)]
    agents_nice: i32,
    /// During the measured phase, the agents only read and decode each watch message (TLS,
    /// HTTP/2, protobuf) and note which ENI it adds or removes, without applying it to their
    /// `Replica`: the cheapest receive, for the agents' part of the floor.
    #[arg(long)]
    no_apply: bool,
    /// Then, on a server of its own, a VPC of this many ENIs (0: skip): the server's memory per
    /// ENI, and one agent's full resync of the VPC (time, Snapshot size, memory per ENI).
    #[arg(long, default_value_t = 0)]
    big_vpc: usize,
    /// Stop when this many seconds have passed since the start.
    #[arg(long, default_value_t = 1800)]
    time_limit: u64,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("softvpc-bench-mapping: {e:#}");
        std::process::exit(1);
    }
}

/// The instants at which agents applied one ENI's appearance or removal, and the revision of
/// the message that carried it.
type Applied = (Vec<Instant>, u64);

/// When each agent applied what: the first time an ENI appeared in, or left, its replica.
#[derive(Default)]
struct Seen {
    /// Only while measuring (the setup's ENIs would fill it).
    recording: AtomicBool,
    /// `--no-apply`: while recording, messages are read and decoded but not applied.
    no_apply: bool,
    /// (ENI id, appeared) -> the instants at which agents applied it, and the revision of the
    /// message that carried it.
    at: Mutex<HashMap<(String, bool), Applied>>,
    /// Watch message bytes (protobuf) and messages received by all agents.
    bytes: AtomicU64,
    messages: AtomicU64,
    /// Agents that hold at least this many ENIs (set by the main thread for the setup).
    want_enis: AtomicUsize,
    ready: AtomicUsize,
    /// Watch streams that broke and were resumed.
    reconnects: AtomicU64,
    snapshots: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One simulated agent: join, register, then watch forever (resuming after a broken stream).
async fn agent(
    url: String,
    token: JoinToken,
    name: String,
    underlay: String,
    seen: Arc<Seen>,
    registered: tokio::sync::mpsc::Sender<anyhow::Result<String>>,
    joining: Arc<tokio::sync::Semaphore>,
) {
    // A few joins at a time: each is a key generation and a signature on both sides.
    let Ok(permit) = joining.acquire_owned().await else {
        return;
    };
    let host_id = async {
        let creds = softvpc_trust::client::join(&url, &token, &name).await?;
        let mut client = softvpc_proto::client(softvpc_trust::client::channel(&url, &creds)?);
        let id = client
            .register_host(pb::RegisterHostRequest {
                name: name.clone(),
                underlay_ip: underlay,
                availability_zone: String::new(),
            })
            .await?
            .into_inner()
            .host_id;
        anyhow::Ok((client, id))
    }
    .await;
    let (mut client, host_id) = match host_id {
        Ok(v) => v,
        Err(e) => {
            let _ = registered.send(Err(e.context(name))).await;
            return;
        }
    };
    let _ = registered.send(Ok(host_id.clone())).await;
    drop((registered, permit));
    let mut replica = Replica::default();
    let mut ready = false;
    loop {
        let stream = client.watch(replica.watch_request(&host_id)).await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(_) => {
                seen.reconnects.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        while let Ok(Some(msg)) = stream.message().await {
            seen.bytes
                .fetch_add(msg.encoded_len() as u64, Ordering::Relaxed);
            seen.messages.fetch_add(1, Ordering::Relaxed);
            // What this message makes appear or go (only deltas are measured: the changes are
            // made after every agent is in sync).
            let mut moved = Vec::new();
            let recording = seen.recording.load(Ordering::Relaxed);
            let skip_apply = seen.no_apply && recording;
            if let Some(pb::watch_response::Kind::Delta(d)) = &msg.kind {
                if skip_apply {
                    // Not applied: an ENI counts as moved by the change that names it (each
                    // measured change names one new ENI or one deletion, once per agent).
                    for c in &d.changes {
                        match &c.kind {
                            Some(pb::change::Kind::UpsertEni(e)) => {
                                moved.push((e.eni_id.clone(), true))
                            }
                            Some(pb::change::Kind::DeleteEniId(id)) => {
                                moved.push((id.clone(), false))
                            }
                            _ => {}
                        }
                    }
                } else if recording {
                    for c in &d.changes {
                        match &c.kind {
                            Some(pb::change::Kind::UpsertEni(e))
                                if !replica.records.enis.contains_key(&e.eni_id) =>
                            {
                                moved.push((e.eni_id.clone(), true))
                            }
                            Some(pb::change::Kind::DeleteEniId(id))
                                if replica.records.enis.contains_key(id) =>
                            {
                                moved.push((id.clone(), false))
                            }
                            _ => {}
                        }
                    }
                }
            }
            if !skip_apply && replica.apply(&msg).is_err() {
                replica.reset_resume_point();
                break;
            }
            let now = Instant::now();
            if !moved.is_empty() {
                let mut at = lock(&seen.at);
                for k in moved {
                    let e = at.entry(k).or_default();
                    e.0.push(now);
                    e.1 = msg.revision;
                }
            }
            if !ready && replica.records.enis.len() >= seen.want_enis.load(Ordering::Relaxed) {
                ready = true;
                seen.ready.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(pb::watch_response::Kind::Snapshot(_)) = &msg.kind {
                seen.snapshots.fetch_add(1, Ordering::Relaxed);
            }
        }
        seen.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn own_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// CPU time (user + system) from `getrusage`: `RUSAGE_SELF` is every thread of this process,
/// ended ones included; `RUSAGE_THREAD` the calling thread alone.
fn rusage_cpu(who: libc::c_int) -> Duration {
    // SAFETY: an all-zero rusage is a valid value; getrusage writes one into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` lives across the call.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The CPUs this process may run on (the floor divides by them).
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn call(api: &BlockingClient, action: &str, input: Value) -> anyhow::Result<(Value, Duration)> {
    let reply = api.send(action, &input)?;
    ensure!(
        reply.status == 200,
        "{action}: HTTP {}: {}",
        reply.status,
        reply.body.chars().take(300).collect::<String>()
    );
    Ok((reply.decode(action)?, reply.took))
}

/// A new VPC 10.0.0.0/16 with one subnet of `cidr`: the subnet's id.
fn subnet_in_new_vpc(api: &BlockingClient, cidr: &str) -> anyhow::Result<String> {
    let (out, _) = call(
        api,
        "CreateVpc",
        Value::new_struct().with("CidrBlock", "10.0.0.0/16"),
    )?;
    let vpc = str_at(&out, &["Vpc", "VpcId"])
        .context("no VpcId")?
        .to_string();
    let (out, _) = call(
        api,
        "CreateSubnet",
        Value::new_struct()
            .with("VpcId", vpc.as_str())
            .with("CidrBlock", cidr),
    )?;
    let subnet = str_at(&out, &["Subnet", "SubnetId"])
        .context("no SubnetId")?
        .to_string();
    Ok(subnet)
}

/// Waits until `done()` or `deadline`; false on timeout.
fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

fn run(args: &Args) -> anyhow::Result<()> {
    ensure!(
        !args.agents.is_empty() && args.agents.iter().all(|n| (1..=5000).contains(n)),
        "--agents: 1-5000 each"
    );
    ensure!(args.changes >= 2, "--changes: at least 2");
    ensure!((0..=19).contains(&args.agents_nice), "--agents-nice: 0-19");
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `lim`, which lives across the call.
    let nofile = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        1024
    };
    let most = *args.agents.iter().max().unwrap_or(&0) as u64;
    ensure!(
        nofile >= 2 * most + 256,
        "the open-file limit ({nofile}) is too low for {most} agents and their server: raise it (ulimit -n {})",
        2 * most + 256
    );
    let deadline = Instant::now() + Duration::from_secs(args.time_limit);
    let bin = server::softvpc_bin(args.bin.as_ref())?;
    println!(
        "simulated agents: one process, {} worker threads at nice {} (the server and this process's main thread at nice 0)",
        args.threads.max(1),
        args.agents_nice
    );
    println!(
        "agents' CPU: this process's, less its main thread's (the API client and the waits, in brackets): TLS, HTTP/2, protobuf decode, {} and the harness's bookkeeping per message; floor: (server + agents' CPU per change) / {} CPUs",
        if args.no_apply { "no Replica apply (--no-apply)" } else { "the Replica apply" },
        cpus()
    );
    println!(
        "| agents | changes | all applied p50 / p99 / max ms | server: commit -> last watch write p50 / p99 / max ms | per agent p50 / p99 ms | API p50 / p99 ms | server CPU ms/change | agents CPU ms/change (main thread) | CPU us/msg server / agents | floor ms | server RSS / peak MiB | KiB/change (msgs) | bench RSS MiB | load |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &args.agents {
        let dir =
            std::env::temp_dir().join(format!("softvpc-bench-mapping-{}-{n}", std::process::id()));
        let server = start_server(&bin, dir, true, &[])?;
        run_one(args, &server, n, deadline)
            .with_context(|| format!("{n} agents (server log: {})", server.dir.display()))?;
    }
    if args.big_vpc > 0 {
        let dir =
            std::env::temp_dir().join(format!("softvpc-bench-mapping-{}-big", std::process::id()));
        let server = start_server(&bin, dir, true, &[])?;
        big_vpc(&server, args.big_vpc, deadline).context("--big-vpc")?;
    }
    Ok(())
}

/// A VPC of `n` ENIs: the server's memory per ENI, one agent's full resync.
fn big_vpc(server: &Server, n: usize, deadline: Instant) -> anyhow::Result<()> {
    ensure!(n <= 65_000, "--big-vpc: at most 65,000 (one /16 subnet)");
    let api = server.api_client()?;
    let subnet = subnet_in_new_vpc(&api, "10.0.0.0/16")?;
    let rss0 = server.proc_status("VmRSS:");
    let t = Instant::now();
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let api = match server.api_client() {
                    Ok(a) => a,
                    Err(e) => {
                        *lock(&failed) = Some(e);
                        return;
                    }
                };
                while next.fetch_add(1, Ordering::Relaxed) < n && Instant::now() < deadline {
                    let r = call(
                        &api,
                        "CreateNetworkInterface",
                        Value::new_struct().with("SubnetId", subnet.as_str()),
                    );
                    if let Err(e) = r {
                        *lock(&failed) = Some(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = lock(&failed).take() {
        return Err(e);
    }
    let created = t.elapsed();
    let rss1 = server.proc_status("VmRSS:");

    // One agent with an instance in the VPC.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let data = server.dir.join("data");
    let t: TokenResponse = admin::call(
        &data,
        "/join-tokens",
        &TokenRequest {
            host: "big-1".into(),
            ttl_secs: 3600,
        },
    )?;
    let token: JoinToken = t.token.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let url = format!("https://{}", server.mapping);
    let (mut client, host_id) = rt.block_on(async {
        let creds = softvpc_trust::client::join(&url, &token, "big-1").await?;
        let mut client = softvpc_proto::client(softvpc_trust::client::channel(&url, &creds)?);
        let id = client
            .register_host(pb::RegisterHostRequest {
                name: "big-1".into(),
                underlay_ip: "198.18.0.1".into(),
                availability_zone: String::new(),
            })
            .await?
            .into_inner()
            .host_id;
        anyhow::Ok((client, id))
    })?;
    call(
        &api,
        "RunInstances",
        Value::new_struct()
            .with("ImageId", "ami-1")
            .with("MinCount", 1i64)
            .with("MaxCount", 1i64)
            .with("SubnetId", subnet.as_str())
            .with(
                "Placement",
                Value::new_struct().with("HostId", host_id.as_str()),
            ),
    )?;
    let mut resync = Vec::new();
    let mut size = 0;
    // This process's resident memory before any replica and with the first one held (it
    // includes what the allocator keeps of the decoded message: an upper bound).
    let before = own_rss();
    let mut first = None;
    for _ in 0..5 {
        let t = Instant::now();
        let replica = rt.block_on(async {
            let mut stream = client
                .watch(Replica::default().watch_request(&host_id))
                .await?
                .into_inner();
            let msg = tokio::time::timeout(Duration::from_secs(120), stream.message())
                .await
                .context("no Snapshot within 120 s")??
                .context("the stream ended")?;
            size = msg.encoded_len();
            let mut replica = Replica::default();
            replica.apply(&msg).map_err(|e| anyhow::anyhow!("{e}"))?;
            anyhow::Ok(replica)
        })?;
        resync.push(t.elapsed());
        ensure!(
            replica.records.enis.len() == n + 1,
            "the agent holds {} ENIs, not {}",
            replica.records.enis.len(),
            n + 1
        );
        if first.is_none() {
            first = Some((replica, own_rss().saturating_sub(before)));
        }
    }
    resync.sort();
    let agent_bytes = first.as_ref().map_or(0, |(_, b)| *b);
    println!();
    println!(
        "| VPC of {n} ENIs | created in {:.1} s ({:.0}/s, 8 clients) | server RSS {:.0} -> {:.0} MiB: {:.0} bytes per ENI | full resync of one agent p50 {:.0} ms, max {:.0} ms (Snapshot {:.1} MB) | agent replica at most {:.0} bytes per ENI | load {} |",
        created.as_secs_f64(),
        n as f64 / created.as_secs_f64().max(1e-9),
        rss0 as f64 / 1048576.0,
        rss1 as f64 / 1048576.0,
        rss1.saturating_sub(rss0) as f64 / n as f64,
        pct(&resync, 0.5),
        resync.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        size as f64 / 1e6,
        agent_bytes as f64 / (n + 1) as f64,
        loadavg(),
    );
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// From the server's admin socket (`POST /mapping/fanout`): for each of `revisions`, the time
/// from its commit to the socket write of its last watch message, sorted; and how many had
/// fewer than `n` messages written (a watch that coalesced it with a later revision, or none).
fn server_fanout(
    data: &std::path::Path,
    revisions: &[u64],
    n: usize,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    use softvpc_server::mapping::fanout::{FanoutRequest, FanoutResponse};
    let (Some(&from), Some(&to)) = (revisions.iter().min(), revisions.iter().max()) else {
        return Ok((Vec::new(), 0));
    };
    let r: FanoutResponse = admin::call(data, "/mapping/fanout", &FanoutRequest { from, to })?;
    let by_rev: HashMap<u64, _> = r.revisions.iter().map(|f| (f.revision, f)).collect();
    let mut last = Vec::new();
    let mut short = 0;
    for rev in revisions {
        match by_rev.get(rev) {
            Some(f) if f.writes >= n as u64 => {
                last.push(Duration::from_micros(f.last_write_us.unwrap_or(0)))
            }
            _ => short += 1,
        }
    }
    last.sort();
    Ok((last, short))
}

/// Sets the calling thread's nice value (Linux: `setpriority` on a thread id is per thread).
fn nice_this_thread(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: gettid and setpriority take and return plain integers.
    let r = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice)
    };
    if r != 0 {
        eprintln!(
            "softvpc-bench-mapping: setpriority({nice}): {}",
            std::io::Error::last_os_error()
        );
    }
}

fn run_one(args: &Args, server: &Server, n: usize, deadline: Instant) -> anyhow::Result<()> {
    let nice = args.agents_nice;
    // The agents' runtime: every thread it starts (workers, blocking pool) at `--agents-nice`.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .on_thread_start(move || nice_this_thread(nice))
        .enable_all()
        .build()?;
    let seen = Arc::new(Seen {
        no_apply: args.no_apply,
        ..Seen::default()
    });
    let url = format!("https://{}", server.mapping);
    let data = server.dir.join("data");

    // Every agent will hold one ENI per host. Set before any agent runs: an agent counts as
    // in sync only once it holds them all (with 0 here, an agent whose first Snapshot came
    // before the placement counted as in sync, and the measured changes began while the server
    // was still sending whole VPCs).
    seen.want_enis.store(n, Ordering::Relaxed);
    // The hosts: a token each, then Join, RegisterHost and Watch.
    let (reg_tx, mut reg_rx) = tokio::sync::mpsc::channel(n.max(1));
    let joining = Arc::new(tokio::sync::Semaphore::new(16));
    for i in 0..n {
        let name = format!("sim-{i}");
        let t: TokenResponse = admin::call(
            &data,
            "/join-tokens",
            &TokenRequest {
                host: name.clone(),
                ttl_secs: 3600,
            },
        )?;
        let token: JoinToken = t.token.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        let underlay = format!("198.18.{}.{}", i / 250, i % 250 + 1);
        let (url, seen, tx, joining) = (url.clone(), seen.clone(), reg_tx.clone(), joining.clone());
        rt.spawn(agent(url, token, name, underlay, seen, tx, joining));
    }
    drop(reg_tx);
    let t_join = Instant::now();
    let mut hosts = Vec::with_capacity(n);
    while let Some(r) = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(120), reg_rx.recv()).await })
        .context("an agent did not register within 120 s")?
    {
        hosts.push(r?);
        if hosts.len() == n {
            break;
        }
    }
    ensure!(
        hosts.len() == n,
        "only {} of {n} agents registered",
        hosts.len()
    );
    let join_time = t_join.elapsed();

    // One VPC with an instance on every host.
    let api = server.api_client()?;
    let subnet = subnet_in_new_vpc(&api, "10.0.0.0/17")?;
    let t_place = Instant::now();
    for h in &hosts {
        call(
            &api,
            "RunInstances",
            Value::new_struct()
                .with("ImageId", "ami-1")
                .with("MinCount", 1i64)
                .with("MaxCount", 1i64)
                .with("SubnetId", subnet.as_str())
                .with("Placement", Value::new_struct().with("HostId", h.as_str())),
        )?;
        ensure!(
            Instant::now() < deadline,
            "time limit reached while placing"
        );
    }
    let placed = t_place.elapsed();
    let synced = wait_until(Instant::now() + Duration::from_secs(120), || {
        seen.ready.load(Ordering::Relaxed) >= n
    });
    ensure!(
        synced,
        "only {} of {n} agents hold every instance's ENI after 120 s",
        seen.ready.load(Ordering::Relaxed)
    );
    eprintln!(
        "{n} agents: joined, registered and watching in {:.1} s; {n} instances placed in {:.1} s",
        join_time.as_secs_f64(),
        placed.as_secs_f64()
    );

    // The measured changes.
    let load_before = loadavg();
    let cpu0 = server.cpu_time();
    let (self0, main0) = (
        rusage_cpu(libc::RUSAGE_SELF),
        rusage_cpu(libc::RUSAGE_THREAD),
    );
    let bytes0 = seen.bytes.load(Ordering::Relaxed);
    let msgs0 = seen.messages.load(Ordering::Relaxed);
    seen.recording.store(true, Ordering::Relaxed);
    let mut all_applied = Vec::new();
    let mut per_agent = Vec::new();
    let mut api_lat = Vec::new();
    let mut revisions = Vec::new();
    let mut missed = 0;
    let mut eni = String::new();
    let mut done = 0;
    for c in 0..args.changes {
        if Instant::now() > deadline {
            break;
        }
        let appear = c % 2 == 0;
        let t0 = Instant::now();
        if appear {
            let (out, took) = call(
                &api,
                "CreateNetworkInterface",
                Value::new_struct().with("SubnetId", subnet.as_str()),
            )?;
            api_lat.push(took);
            eni = str_at(&out, &["NetworkInterface", "NetworkInterfaceId"])
                .context("no NetworkInterfaceId")?
                .to_string();
        } else {
            let (_, took) = call(
                &api,
                "DeleteNetworkInterface",
                Value::new_struct().with("NetworkInterfaceId", eni.as_str()),
            )?;
            api_lat.push(took);
        }
        let key = (eni.clone(), appear);
        let all = wait_until(t0 + Duration::from_secs(args.change_timeout), || {
            lock(&seen.at).get(&key).map_or(0, |v| v.0.len()) >= n
        });
        let (times, revision) = lock(&seen.at).remove(&key).unwrap_or_default();
        if !all {
            missed += 1;
        }
        for t in &times {
            per_agent.push(t.saturating_duration_since(t0));
        }
        if let Some(last) = times.iter().max() {
            if all {
                all_applied.push(last.saturating_duration_since(t0));
                revisions.push(revision);
            }
        }
        done += 1;
    }
    seen.recording.store(false, Ordering::Relaxed);
    let cpu = server.cpu_time().saturating_sub(cpu0);
    let own = rusage_cpu(libc::RUSAGE_SELF).saturating_sub(self0);
    let main_cpu = rusage_cpu(libc::RUSAGE_THREAD).saturating_sub(main0);
    let agents_cpu = own.saturating_sub(main_cpu);
    // Let late messages of the last change arrive before counting bytes.
    std::thread::sleep(Duration::from_millis(200));
    let bytes = seen.bytes.load(Ordering::Relaxed) - bytes0;
    let msgs = seen.messages.load(Ordering::Relaxed) - msgs0;
    let load_after = loadavg();
    // The server's share: from each change's commit to its last watch message's socket write.
    let (server_last, short) = server_fanout(&data, &revisions, n)?;
    all_applied.sort();
    per_agent.sort();
    api_lat.sort();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let per = done.max(1) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / per;
    let us_per_msg = |d: Duration| d.as_secs_f64() * 1e6 / (msgs.max(1) as f64);
    println!(
        "| {n} | {done}{} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1}{} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} | {:.1} ({:.1}) | {:.1} / {:.1} | {:.1} | {:.0} / {:.0} | {:.1} ({:.0}) | {:.0} | {load_before} -> {load_after} |",
        if missed > 0 { format!(" ({missed} timed out)") } else { String::new() },
        pct(&all_applied, 0.5),
        pct(&all_applied, 0.99),
        all_applied.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        pct(&server_last, 0.5),
        pct(&server_last, 0.99),
        server_last.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        if short > 0 { format!(" ({short} with fewer than {n} writes)") } else { String::new() },
        pct(&per_agent, 0.5),
        pct(&per_agent, 0.99),
        pct(&api_lat, 0.5),
        pct(&api_lat, 0.99),
        ms(cpu),
        ms(agents_cpu),
        ms(main_cpu),
        us_per_msg(cpu),
        us_per_msg(agents_cpu),
        (ms(cpu) + ms(agents_cpu)) / cpus() as f64,
        mib(server.proc_status("VmRSS:")),
        mib(server.proc_status("VmHWM:")),
        bytes as f64 / 1024.0 / per,
        msgs as f64 / per,
        mib(own_rss()),
    );
    let reconnects = seen.reconnects.load(Ordering::Relaxed);
    let snapshots = seen.snapshots.load(Ordering::Relaxed);
    if reconnects > 0 || snapshots > n as u64 {
        eprintln!("{n} agents: {reconnects} watch reconnects, {snapshots} snapshots (first syncs included)");
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    if missed > 0 {
        bail!(
            "{missed} of {done} changes did not reach every agent within {} s",
            args.change_timeout
        );
    }
    Ok(())
}
