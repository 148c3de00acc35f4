//! `softvpc-bench-agent-memory`: an agent's resident memory per ENI of a VPC it holds
//! (issue 12: "the memory per ENI ... on an agent that holds a VPC of 10,000 ENIs").
//!
//! For each `--enis` count it builds the Snapshot a server sends an agent with an instance in
//! one VPC of that many ENIs, spread over `--hosts` hosts (every ENI attached to an instance,
//! in the VPC's default security group, as `RunInstances` makes them), encodes it, and then
//! does what the agent does with it: decodes it, applies it to a `softvpc_mapping::Replica`,
//! builds the engine's `MappingTable` (`softvpc_agent::table::build`, with a port per local
//! ENI), and publishes the records as `Control::publish_table` does for `/mappings` and the
//! checkpoint (shared with the replica, not copied). It prints this process's resident memory
//! before and after (glibc's free memory handed back first, `malloc_trim`), per ENI, split into
//! the replica, the table and the published view, and the time of each step (a full resync
//! less the network); then applies one Delta while the view is published (the time, and the
//! memory while both are held and after), and `--deltas` more, each while the previous view is
//! published, for the time of one such apply (median and maximum).
//! No server is started: the records are what `softvpc-server`'s mapping projection sends
//! (`crates/softvpc-server/tests/large_snapshot.rs` sends 100,000 ENIs the real way).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::ensure;
use clap::Parser;
use prost::Message;
use softvpc_engine::PortId;
use softvpc_mapping::Replica;
use softvpc_proto::pb;

#[derive(Parser, Debug)]
#[command(about = "An agent's resident memory per ENI of a VPC it holds")]
struct Args {
    /// ENI counts of the VPC, one measurement each (in a fresh process each, see below).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    enis: Vec<u32>,
    /// Hosts the ENIs are spread over (this agent is the first).
    #[arg(long, default_value_t = 1000)]
    hosts: u32,
    /// Deltas applied one by one while the previous view is published, for the apply time's
    /// median and maximum (each moves another ENI to another host).
    #[arg(long, default_value_t = 21)]
    deltas: u32,
}

fn main() {
    let args = Args::parse();
    ensure_ok(run(&args));
}

fn ensure_ok(r: anyhow::Result<()>) {
    if let Err(e) = r {
        eprintln!("softvpc-bench-agent-memory: {e:#}");
        std::process::exit(1);
    }
}

fn rss() -> u64 {
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

const VPC: &str = "vpc-0000000000000001a";
const SUBNET: &str = "subnet-0000000000000001a";
const SG: &str = "sg-0000000000000001a";
const VNI: u32 = 0x1001;

fn host_ip(h: u32) -> String {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 10)) + h).to_string()
}

/// ENI `i` of the VPC, attached to an instance on host `h`.
fn eni(i: u32, h: u32) -> pb::Eni {
    pb::Eni {
        eni_id: format!("eni-{i:017x}"),
        vpc_id: VPC.into(),
        vni: VNI,
        subnet_id: SUBNET.into(),
        ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 4)) + i).to_string(),
        mac: format!(
            "02:01:{:02x}:{:02x}:{:02x}:00",
            i >> 16,
            (i >> 8) & 0xff,
            i & 0xff
        ),
        host_id: format!("h-{h:017x}"),
        host_underlay_ip: host_ip(h),
        instance_id: format!("i-{i:017x}"),
        instance_name: format!("vm-{i}"),
        device_index: 0,
        security_group_ids: vec![SG.into()],
        ..Default::default()
    }
}

/// The Snapshot for host 0 of a VPC of `n` ENIs on `hosts` hosts: one instance per ENI.
fn snapshot(n: u32, hosts: u32) -> pb::WatchResponse {
    let hosts_rec = (0..hosts)
        .map(|h| pb::Host {
            host_id: format!("h-{h:017x}"),
            name: format!("host-{h}"),
            underlay_ip: host_ip(h),
        })
        .collect();
    let enis = (0..n).map(|i| eni(i, i % hosts)).collect();
    // The default group: all traffic from its members, all traffic out.
    let rules = vec![
        pb::SecurityGroupRule {
            rule_id: "sgr-00000000000000001".into(),
            egress: false,
            r#match: Some(pb::PortMatch {
                protocol: -1,
                from_port: -1,
                to_port: -1,
            }),
            peer: Some(pb::security_group_rule::Peer::GroupId(SG.into())),
        },
        pb::SecurityGroupRule {
            rule_id: "sgr-00000000000000002".into(),
            egress: true,
            r#match: Some(pb::PortMatch {
                protocol: -1,
                from_port: -1,
                to_port: -1,
            }),
            peer: Some(pb::security_group_rule::Peer::Cidr("0.0.0.0/0".into())),
        },
    ];
    pb::WatchResponse {
        epoch: "bench".into(),
        revision: 1,
        kind: Some(pb::watch_response::Kind::Snapshot(pb::Snapshot {
            hosts: hosts_rec,
            vpcs: vec![pb::Vpc {
                vpc_id: VPC.into(),
                vni: VNI,
                cidrs: vec!["10.0.0.0/14".into()],
                ..Default::default()
            }],
            subnets: vec![pb::Subnet {
                subnet_id: SUBNET.into(),
                vpc_id: VPC.into(),
                cidr: "10.0.0.0/14".into(),
            }],
            enis,
            security_groups: vec![pb::SecurityGroup {
                group_id: SG.into(),
                vpc_id: VPC.into(),
                rules,
            }],
            ..Default::default()
        })),
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    ensure!(args.hosts >= 1, "--hosts: at least 1");
    if args.enis.len() > 1 {
        println!("| ENIs in the VPC | hosts | local ENIs | replica B/ENI | engine table B/ENI | published view B/ENI | agent total B/ENI | total | decode / apply / build | a Delta while published: time, extra B/ENI while both held, total after | one Delta while published, median / max of N | load |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        // One process per count: what one run freed and glibc kept would blur the next.
        let me = std::env::current_exe()?;
        for n in &args.enis {
            let status = std::process::Command::new(&me)
                .args(["--enis", &n.to_string(), "--hosts", &args.hosts.to_string()])
                .args(["--deltas", &args.deltas.to_string()])
                .status()?;
            ensure!(status.success(), "--enis {n}: {status}");
        }
        return Ok(());
    }
    let n = args.enis[0];
    ensure!(n <= 200_000, "--enis: at most 200,000 (one /14)");
    let bytes = snapshot(n, args.hosts).encode_to_vec();
    let me = host_ip(0).parse::<Ipv4Addr>()?;
    let base = rss();

    let t = Instant::now();
    let msg = pb::WatchResponse::decode(bytes.as_slice())?;
    let decoded = t.elapsed();
    let t = Instant::now();
    let mut replica = Replica::default();
    replica
        .apply(&msg)
        .map_err(|e| anyhow::anyhow!("applying the snapshot: {e}"))?;
    let applied = t.elapsed();
    drop(msg);
    drop(bytes);
    ensure!(replica.records.enis.len() == n as usize);
    let with_replica = rss();

    // A port per local ENI, as the agent gives each ENI of its instances.
    let local_host = format!("h-{:017x}", 0);
    let ports: HashMap<String, PortId> = replica
        .records
        .enis
        .values()
        .filter(|e| e.host_id == local_host)
        .enumerate()
        .map(|(i, e)| (e.eni_id.clone(), PortId(i as u32 + 1)))
        .collect();
    let t = Instant::now();
    let table = Arc::new(softvpc_agent::table::build(&replica.records, me, &ports));
    let built = t.elapsed();
    ensure!(
        table.len() == n as usize,
        "the table holds {} ENIs",
        table.len()
    );
    let with_table = rss();

    // What `Control::publish_table` keeps for `/mappings` and the checkpoint: the replica's
    // records, shared.
    let mut published = Arc::clone(&replica.records);
    let with_published = rss();

    // The next Delta (an ENI moved to another host) while that view is still published: the
    // replica clones the records (`Arc::make_mut`; their maps are persistent, so only the
    // change's path is copied), and the agent's next publish lets the old view go. Timed, with
    // the memory while both are held.
    let moved = pb::WatchResponse {
        epoch: "bench".into(),
        revision: 2,
        kind: Some(pb::watch_response::Kind::Delta(pb::Delta {
            changes: vec![pb::Change {
                kind: Some(pb::change::Kind::UpsertEni(eni(1, 2 % args.hosts))),
            }],
        })),
    };
    let t = Instant::now();
    replica
        .apply(&moved)
        .map_err(|e| anyhow::anyhow!("applying the delta: {e}"))?;
    let copied = t.elapsed();
    ensure!(!Arc::ptr_eq(&published, &replica.records));
    let with_both = rss();
    drop(std::mem::replace(
        &mut published,
        Arc::clone(&replica.records),
    ));
    let after_delta = rss();

    // More Deltas, each applied while the view before it is published (as the agent's next
    // publish holds it), each moving another ENI to another host.
    let mut times = Vec::with_capacity(args.deltas as usize);
    for d in 0..args.deltas {
        let i = (d + 2) % n.max(1);
        let delta = pb::WatchResponse {
            epoch: "bench".into(),
            revision: u64::from(d) + 3,
            kind: Some(pb::watch_response::Kind::Delta(pb::Delta {
                changes: vec![pb::Change {
                    kind: Some(pb::change::Kind::UpsertEni(eni(i, (i + 1) % args.hosts))),
                }],
            })),
        };
        let t = Instant::now();
        replica
            .apply(&delta)
            .map_err(|e| anyhow::anyhow!("applying delta {d}: {e}"))?;
        times.push(t.elapsed());
        ensure!(!Arc::ptr_eq(&published, &replica.records));
        published = Arc::clone(&replica.records);
    }
    times.sort();
    let (median, max) = match (times.get(times.len() / 2), times.last()) {
        (Some(m), Some(x)) => (
            format!("{:.1} us", m.as_secs_f64() * 1e6),
            format!("{:.1} us", x.as_secs_f64() * 1e6),
        ),
        _ => ("-".into(), "-".into()),
    };

    let per = |b: u64| b as f64 / f64::from(n);
    println!(
        "| {n} | {} | {} | {:.0} | {:.0} | {:.0} | **{:.0}** | {:.1} MiB | {:.0} / {:.0} / {:.0} ms | {:.3} ms, {:.0}, {:.0} B/ENI | {median} / {max} of {} | {} |",
        args.hosts,
        ports.len(),
        per(with_replica.saturating_sub(base)),
        per(with_table.saturating_sub(with_replica)),
        per(with_published.saturating_sub(with_table)),
        per(with_published.saturating_sub(base)),
        with_published.saturating_sub(base) as f64 / 1048576.0,
        decoded.as_secs_f64() * 1e3,
        applied.as_secs_f64() * 1e3,
        built.as_secs_f64() * 1e3,
        copied.as_secs_f64() * 1e3,
        per(with_both.saturating_sub(with_published)),
        per(after_delta.saturating_sub(base)),
        times.len(),
        loadavg(),
    );
    drop((table, published, replica));
    Ok(())
}
