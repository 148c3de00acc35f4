//! `softvpc-bench-api`: the EC2 API under load, end to end.
//!
//! Starts a real `softvpc server` (the release binary) on a temporary data directory and free
//! loopback ports, then, through the signed EC2 Query API exactly as a client sees it:
//!
//! 1. creates `--enis` network interfaces (CreateNetworkInterface, each with its own
//!    `ClientToken` as SDKs send) spread over `--subnets` /18 subnets of one VPC, with each of
//!    the `--clients` concurrency levels in turn;
//! 2. describes them (DescribeNetworkInterfaces): one ENI by id, a `subnet-id` filter paged with
//!    `MaxResults=1000`, and the full unpaginated list;
//! 3. reports requests per second and p50/p99/max latency of each, the store's size per ENI
//!    and the server's resident memory before and after, its peak during the full listings
//!    alone (the kernel's high-water mark is reset before them), and what one fsync costs on
//!    the data directory's disk (every committed request waits for one).
//!
//! More than 64,000 ENIs (four /18s of a /16) go into as many VPCs as they need.
//!
//! Every answer is checked (ids, counts, paging totals), so a fast wrong answer fails the run.
//! Clients keep their connection open (like boto3's pool) and sign every request; latency is
//! measured from writing the request to reading the whole answer. Bounded by `--time-limit`;
//! the server and the temporary directory are removed on exit (the server also dies with this
//! process: parent-death signal).

mod server;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Parser;
use softvpc_ec2_client::read::str_at;
use softvpc_ec2_client::{BlockingClient, Config, Credentials, Value};
use softvpc_model::Table;
use softvpc_store::RedbBackend;

use server::{start_server, Server};

#[derive(Parser, Debug)]
#[command(about = "EC2 API benchmark: CreateNetworkInterface and DescribeNetworkInterfaces")]
struct Args {
    /// The softvpc binary (default: $SOFTVPC_BIN, else `softvpc` next to this program).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// How many ENIs to create in total.
    #[arg(long, default_value_t = 10_000)]
    enis: usize,
    /// Concurrency levels; the creations are split evenly between them, in this order.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    clients: Vec<usize>,
    /// Number of /18 subnets the ENIs are spread over (1-4).
    #[arg(long, default_value_t = 4)]
    subnets: usize,
    /// DescribeNetworkInterfaces by id: requests per concurrency level.
    #[arg(long, default_value_t = 2000)]
    by_id: usize,
    /// Paged walks through one subnet (filter subnet-id, MaxResults 1000), per client.
    #[arg(long, default_value_t = 2)]
    walks: usize,
    /// Full unpaginated listings, per client.
    #[arg(long, default_value_t = 4)]
    full: usize,
    /// Concurrency levels of the full unpaginated listings (default: --clients).
    #[arg(long, value_delimiter = ',')]
    full_clients: Vec<usize>,
    /// Stop every phase when this many seconds have passed since the start.
    #[arg(long, default_value_t = 900)]
    time_limit: u64,
    /// Make the server answer every listing as one whole document, as before streaming
    /// (it sets SOFTVPC_API_STREAM_MIN_ITEMS for the server): the "before" of the memory figures.
    #[arg(long)]
    whole: bool,
    /// Directory for the store (default: a new temporary one, removed at the end).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("softvpc-bench-api: {e:#}");
        std::process::exit(1);
    }
}

/// One client: `softvpc-ec2-client` with its kept-alive connection, signing every request.
struct Client {
    api: BlockingClient,
}

/// One answer: its size, the time from sending to the last byte, and the output tree.
struct Answer {
    bytes: usize,
    took: Duration,
    out: Value,
}

impl Client {
    fn new(server: &Server) -> anyhow::Result<Client> {
        let profiles = softvpc_sigv4::read_credentials_file(&server.credentials_file())?;
        let creds = profiles
            .into_iter()
            .next()
            .context("no credentials in the server's file")?
            .credentials;
        let mut config = Config::http(server.addr, Credentials::Static(creds));
        // A full listing of 100,000 ENIs under 8 concurrent readers takes a while.
        config.timeout = Duration::from_secs(600);
        Ok(Client {
            api: BlockingClient::new(config)?,
        })
    }

    /// Calls `action`; a refusal is an error. The answer is read through the EC2 model after
    /// the clock stops.
    fn call(&mut self, action: &str, input: Value) -> anyhow::Result<Answer> {
        let reply = self.raw(action, input)?;
        Ok(Answer {
            bytes: reply.body.len(),
            took: reply.took,
            out: reply.decode(action)?,
        })
    }

    /// Calls `action` and keeps the answer as text (a refusal is an error).
    fn raw(&mut self, action: &str, input: Value) -> anyhow::Result<softvpc_ec2_client::Reply> {
        let reply = self.api.send(action, &input)?;
        ensure!(
            reply.status == 200,
            "{action}: HTTP {}: {}",
            reply.status,
            reply.body.chars().take(300).collect::<String>()
        );
        Ok(reply)
    }
}

/// The distinct ENI ids of a DescribeNetworkInterfaces document, read from its text (a full
/// listing of 100,000 ENIs is about 90 MB: its tree would cost the benchmark several GB with 8
/// readers, and its CPU, shared with the server's, would blur the figures).
fn eni_ids_in_text(xml: &str) -> std::collections::HashSet<&str> {
    const OPEN: &str = "<networkInterfaceId>";
    let mut ids = std::collections::HashSet::new();
    let mut rest = xml;
    while let Some(at) = rest.find(OPEN) {
        rest = &rest[at + OPEN.len()..];
        if let Some(end) = rest.find('<') {
            ids.insert(&rest[..end]);
            rest = &rest[end..];
        }
    }
    ids
}

/// The ids of a DescribeNetworkInterfaces answer.
fn eni_ids(out: &Value) -> Vec<&str> {
    out.get_list("NetworkInterfaces")
        .iter()
        .filter_map(|e| e.get_str("NetworkInterfaceId"))
        .collect()
}

/// Latencies of one phase and its wall-clock time.
struct Phase {
    name: String,
    clients: usize,
    lat: Vec<Duration>,
    wall: Duration,
    bytes: usize,
    cut_short: bool,
}

impl Phase {
    fn print(&self) {
        let mut l = self.lat.clone();
        l.sort();
        let pct = |p: f64| -> f64 {
            if l.is_empty() {
                return 0.0;
            }
            let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
            l[i].as_secs_f64() * 1e3
        };
        let rps = l.len() as f64 / self.wall.as_secs_f64().max(1e-9);
        let avg_kb = if l.is_empty() {
            0.0
        } else {
            self.bytes as f64 / l.len() as f64 / 1024.0
        };
        println!(
            "| {:<52} | {:>2} | {:>6} | {:>8.1} | {:>8.2} | {:>8.2} | {:>8.2} | {:>9.1} |{}",
            self.name,
            self.clients,
            l.len(),
            rps,
            pct(0.50),
            pct(0.99),
            l.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            avg_kb,
            if self.cut_short { " (time limit)" } else { "" }
        );
    }
}

/// One item of a phase: the latency and answer size of each call it made.
type Work<'a> = dyn Fn(&mut Client, usize) -> anyhow::Result<Vec<(Duration, usize)>> + Sync + 'a;

/// Runs `work(client, item)` for items `0..n` on `clients` threads; each returns the answer's
/// latency and size. Stops early at `deadline`.
fn run_phase(
    name: &str,
    server: &Server,
    clients: usize,
    n: usize,
    deadline: Instant,
    work: &Work<'_>,
) -> anyhow::Result<Phase> {
    let next = AtomicUsize::new(0);
    let out = Mutex::new((Vec::new(), 0usize));
    let err: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let cut = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                let mut client = match Client::new(server) {
                    Ok(c) => c,
                    Err(e) => {
                        *err.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return;
                    }
                };
                let mut lat = Vec::new();
                let mut bytes = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    if Instant::now() > deadline {
                        cut.store(1, Ordering::Relaxed);
                        break;
                    }
                    match work(&mut client, i) {
                        Ok(v) => {
                            for (d, b) in v {
                                lat.push(d);
                                bytes += b;
                            }
                        }
                        Err(e) => {
                            *err.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            next.store(n, Ordering::Relaxed);
                            break;
                        }
                    }
                }
                let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
                o.0.extend(lat);
                o.1 += bytes;
            });
        }
    });
    let wall = start.elapsed();
    if let Some(e) = err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e.context(name.to_string()));
    }
    let (lat, bytes) = out.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(Phase {
        name: name.to_string(),
        clients,
        lat,
        wall,
        bytes,
        cut_short: cut.load(Ordering::Relaxed) != 0,
    })
}

/// A small deterministic generator (xorshift), so runs pick the same ids.
fn pick(i: usize, len: usize) -> usize {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x % len as u64) as usize
}

/// fdatasync latency of a 4 KiB overwrite in an allocated file on `dir`'s file system: what
/// each durable commit waits for at least (redb calls fdatasync once per commit).
fn fsync_probe(dir: &Path, n: usize) -> anyhow::Result<(f64, f64)> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = vec![0xa5u8; 4096];
    // Allocated up front, like redb's file, so each sync flushes data, not a new extent.
    for _ in 0..16 {
        f.write_all(&block)?;
    }
    f.sync_all()?;
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(((i % 16) * 4096) as u64))?;
        f.write_all(&block)?;
        let t = Instant::now();
        f.sync_data()?;
        lat.push(t.elapsed());
    }
    drop(f);
    std::fs::remove_file(&path)?;
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok((
        ms(lat[lat.len() / 2]),
        ms(lat[(lat.len() * 99 / 100).min(lat.len() - 1)]),
    ))
}

/// The `enis` table's row count and (stored bytes, stored + metadata + fragmented bytes),
/// through the store's own API.
fn enis_table(data_dir: &Path) -> anyhow::Result<(u64, (u64, u64))> {
    let (store, _) = RedbBackend::open(data_dir)
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    let stats = store.table_stats(Table::Enis)?;
    Ok((stats.rows, (stats.stored_bytes, stats.total_bytes)))
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn run(args: &Args) -> anyhow::Result<()> {
    ensure!(
        (1..=4).contains(&args.subnets),
        "--subnets must be 1-4 (/18s of one /16)"
    );
    ensure!(
        !args.clients.is_empty() && args.clients.iter().all(|c| (1..=64).contains(c)),
        "--clients: 1-64 each"
    );
    ensure!(
        args.enis >= args.clients.len() && args.enis <= 200_000,
        "--enis: at least one per concurrency level, at most 200000"
    );
    let full_clients = if args.full_clients.is_empty() {
        args.clients.clone()
    } else {
        args.full_clients.clone()
    };
    // /18 subnets hold 16,379 ENIs each: 16,000 per subnet at most, as many /16 VPCs as needed.
    let vpcs = args.enis.div_ceil(args.subnets * 16_000);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.time_limit);
    let bin = server::softvpc_bin(args.bin.as_ref())?;
    let (dir, remove) = match &args.work_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("softvpc-bench-api-{}", std::process::id())),
            true,
        ),
    };
    if args.whole {
        // Read by the server once; nothing else runs yet in this process.
        std::env::set_var("SOFTVPC_API_STREAM_MIN_ITEMS", usize::MAX.to_string());
    }
    let server = start_server(&bin, dir, remove, &[])?;
    let rss_start = server.proc_status("VmRSS:");
    let store_start = std::fs::metadata(server.store_file())?.len();

    // VPCs of /18 subnets.
    let mut admin = Client::new(&server)?;
    let mut subnets = Vec::new();
    for v in 0..vpcs {
        let a = admin.call(
            "CreateVpc",
            Value::new_struct().with("CidrBlock", format!("10.{v}.0.0/16")),
        )?;
        let vpc = str_at(&a.out, &["Vpc", "VpcId"])
            .context("CreateVpc: no vpcId")?
            .to_string();
        for i in 0..args.subnets {
            let a = admin.call(
                "CreateSubnet",
                Value::new_struct()
                    .with("VpcId", vpc.as_str())
                    .with("CidrBlock", format!("10.{v}.{}.0/18", i * 64)),
            )?;
            subnets.push(
                str_at(&a.out, &["Subnet", "SubnetId"])
                    .context("CreateSubnet: no subnetId")?
                    .to_string(),
            );
        }
    }
    let store_empty = std::fs::metadata(server.store_file())?.len();
    let rss_empty = server.proc_status("VmRSS:");

    println!(
        "softvpc API benchmark: {} ENIs in {} /18 subnets of {vpcs} VPC(s), clients {:?}, full listings with {full_clients:?}",
        args.enis,
        subnets.len(),
        args.clients
    );
    println!(
        "server: {} (pid {}), large listings {}",
        bin.display(),
        server.child.id(),
        if args.whole {
            "answered whole (--whole: as before streaming)"
        } else {
            "streamed"
        }
    );
    println!();
    println!(
        "| {:<52} | {:>2} | {:>6} | {:>8} | {:>8} | {:>8} | {:>8} | {:>9} |",
        "phase", "c", "calls", "req/s", "p50 ms", "p99 ms", "max ms", "answer KB"
    );
    println!(
        "|{:-<54}|{:-<4}:|{:-<7}:|{:-<9}:|{:-<9}:|{:-<9}:|{:-<9}:|{:-<10}:|",
        "", "", "", "", "", "", "", ""
    );

    // 1. CreateNetworkInterface.
    let ids: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    let created = AtomicUsize::new(0);
    let per_level = args.enis / args.clients.len();
    for (k, &c) in args.clients.iter().enumerate() {
        let n = if k + 1 == args.clients.len() {
            args.enis - per_level * k
        } else {
            per_level
        };
        let base = created.load(Ordering::Relaxed);
        let phase = run_phase(
            &format!("CreateNetworkInterface (ENIs {base}..{})", base + n),
            &server,
            c,
            n,
            deadline,
            &|client, i| {
                let s = (base + i) % subnets.len();
                // A unique ClientToken on every call, as boto3 and the AWS CLI send.
                let a = client.call(
                    "CreateNetworkInterface",
                    Value::new_struct()
                        .with("SubnetId", subnets[s].as_str())
                        .with("ClientToken", format!("bench-{}", base + i)),
                )?;
                let id = str_at(&a.out, &["NetworkInterface", "NetworkInterfaceId"])
                    .context("CreateNetworkInterface: no networkInterfaceId")?;
                ids.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((s, id.to_string()));
                Ok(vec![(a.took, a.bytes)])
            },
        )?;
        created.fetch_add(phase.lat.len(), Ordering::Relaxed);
        phase.print();
    }
    let ids = ids.into_inner().unwrap_or_else(|p| p.into_inner());
    let total = ids.len();
    ensure!(total > 0, "no ENI was created");
    let rss_created = server.proc_status("VmRSS:");
    let store_created = std::fs::metadata(server.store_file())?.len();

    // 2a. One ENI by id.
    for &c in args.clients.iter().filter(|_| args.by_id > 0) {
        run_phase(
            "DescribeNetworkInterfaces, 1 by id",
            &server,
            c,
            args.by_id,
            deadline,
            &|client, i| {
                let id = &ids[pick(i, total)].1;
                let a = client.call(
                    "DescribeNetworkInterfaces",
                    Value::new_struct().with("NetworkInterfaceIds", vec![Value::from(id.as_str())]),
                )?;
                ensure!(
                    eni_ids(&a.out) == [id.as_str()],
                    "DescribeNetworkInterfaces {id}: not exactly that ENI"
                );
                Ok(vec![(a.took, a.bytes)])
            },
        )?
        .print();
    }

    // 2b. Filter subnet-id, MaxResults 1000, every page (latency per page).
    let per_subnet: Vec<usize> = (0..subnets.len())
        .map(|s| ids.iter().filter(|(x, _)| *x == s).count())
        .collect();
    for &c in args.clients.iter().filter(|_| args.walks > 0) {
        run_phase(
            "DescribeNetworkInterfaces, subnet-id, pages of 1000",
            &server,
            c,
            c * args.walks,
            deadline,
            &|client, i| {
                let s = i % subnets.len();
                let mut token: Option<String> = None;
                let mut seen = 0;
                let mut pages = Vec::new();
                loop {
                    let mut input = Value::new_struct()
                        .with(
                            "Filters",
                            vec![Value::new_struct()
                                .with("Name", "subnet-id")
                                .with("Values", vec![Value::from(subnets[s].as_str())])],
                        )
                        .with("MaxResults", 1000i64);
                    if let Some(t) = &token {
                        input = input.with("NextToken", t.as_str());
                    }
                    let a = client.call("DescribeNetworkInterfaces", input)?;
                    let n = eni_ids(&a.out).len();
                    ensure!(n <= 1000, "a page of {n} > MaxResults");
                    seen += n;
                    pages.push((a.took, a.bytes));
                    token = a.out.get_str("NextToken").map(str::to_string);
                    if token.is_none() {
                        break;
                    }
                    ensure!(pages.len() <= 100, "paging does not end");
                }
                ensure!(
                    seen == per_subnet[s],
                    "paging through subnet {s} gave {seen} ENIs, created {}",
                    per_subnet[s]
                );
                Ok(pages)
            },
        )?
        .print();
    }

    // 2c. The full list, unpaginated (AWS answers with everything when MaxResults is absent).
    // The peak of these alone: the kernel's high-water mark starts again from the current RSS.
    let hwm_before_full = server.proc_status("VmHWM:");
    let hwm_reset = server.reset_peak_rss();
    let mut full_peaks = Vec::new();
    for &c in full_clients.iter().filter(|_| args.full > 0) {
        if hwm_reset {
            server.reset_peak_rss();
        }
        let rss_at = server.proc_status("VmRSS:");
        run_phase(
            "DescribeNetworkInterfaces, all, unpaginated",
            &server,
            c,
            c * args.full,
            deadline,
            &|client, _| {
                let a = client.raw("DescribeNetworkInterfaces", Value::new_struct())?;
                let n = eni_ids_in_text(&a.body).len();
                ensure!(n == total, "the full list has {n} ENIs, created {total}");
                ensure!(
                    !a.body.contains("<nextToken>"),
                    "unpaginated answer has a nextToken"
                );
                Ok(vec![(a.took, a.body.len())])
            },
        )?
        .print();
        full_peaks.push((c, rss_at, server.proc_status("VmHWM:")));
    }

    let rss_end = server.proc_status("VmRSS:");
    let hwm = server.proc_status("VmHWM:").max(hwm_before_full);
    let store_end = std::fs::metadata(server.store_file())?.len();
    let (fs50, fs99) = fsync_probe(&server.dir, 200)?;
    // The store's own account of the ENI table, read once the server has let go of it.
    let mut server = server;
    server.stop();
    let (rows, table_bytes) = enis_table(&server.dir.join("data"))?;
    ensure!(
        rows == total as u64,
        "the store holds {rows} ENIs, created {total}"
    );
    println!();
    println!("ENIs created: {total}");
    println!(
        "store (redb file): {:.2} MiB empty, {:.2} MiB with the VPC and subnets, {:.2} MiB after the creates, {:.2} MiB at the end",
        mib(store_start),
        mib(store_empty),
        mib(store_created),
        mib(store_end)
    );
    println!(
        "store per ENI: {:.0} bytes of file growth; the enis table: {} rows, {:.0} bytes/ENI stored (JSON value + key), {:.0} bytes/ENI with B-tree pages and fragmentation",
        store_created.saturating_sub(store_empty) as f64 / total as f64,
        rows,
        table_bytes.0 as f64 / total as f64,
        table_bytes.1 as f64 / total as f64
    );
    println!(
        "server RSS: {:.1} MiB at start, {:.1} MiB with the VPC, {:.1} MiB after the creates ({:.0} bytes/ENI), {:.1} MiB at the end, peak {:.1} MiB",
        mib(rss_start),
        mib(rss_empty),
        mib(rss_created),
        rss_created.saturating_sub(rss_empty) as f64 / total as f64,
        mib(rss_end),
        mib(hwm)
    );
    for (c, at, peak) in &full_peaks {
        println!(
            "server RSS during the full listings with {c} client(s): {:.1} MiB before, peak {:.1} MiB{}",
            mib(*at),
            mib(*peak),
            if hwm_reset {
                ""
            } else {
                " (peak since the start: /proc/PID/clear_refs not writable)"
            }
        );
    }
    println!(
        "durability: every mutation is one redb write transaction committed with Durability::Immediate (one fdatasync before the answer); fdatasync of a 4 KiB overwrite on the data directory: p50 {fs50:.2} ms, p99 {fs99:.2} ms"
    );
    println!("total time: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
