//! `softvpc lab up --ha`: the lab's control plane replicated on etcd (issue 12), the way the
//! README's "Run it on several machines" builds it, with namespaces for machines.
//!
//! - Three etcd members (the Debian `etcd-server` package's `etcd`), member N in netns
//!   `${P}etcd-N` on the fabric at 198.18.2.N (clients on 2379, peers on 2380), its data in
//!   `<state-dir>/etcd/etcd-N`. The lab starts them and `lab down` stops them.
//! - Three `softvpc server --store etcd` replicas, replica N living in netns `${P}replica-N` on
//!   the fabric (`softvpc server --netns`): its mapping service on 198.18.1.N:8788, its EC2 API
//!   on 127.0.0.N:PORT in the root netns (every replica on the lab's API port). Replica 1 is
//!   the lab's `server` (data dir `<state-dir>/server`: its admin socket makes the join tokens);
//!   replicas 2 and 3 get copies of its CA and API key pair (`<state-dir>/replica-N`), as the
//!   README says to copy them to every machine.
//! - Every agent is given every replica (`--server URL1,URL2,URL3`) and fails over by itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::names::{self, HA_MEMBERS};
use crate::state::{EtcdRecord, LabState, ProcessRecord, ReplicaRecord};
use crate::sys;
use crate::up::{add_netns, log_tail, Started};

/// Time for every etcd member to report itself healthy (the cluster has elected a leader).
const ETCD_READY: Duration = Duration::from_secs(45);
/// What `softvpc server --store etcd` needs of etcd (README, "Run it on several machines"):
/// transactions as large as one commit, and a bounded history.
const ETCD_FLAGS: [&str; 8] = [
    "--max-txn-ops",
    "10000",
    "--max-request-bytes",
    "16777216",
    "--auto-compaction-mode",
    "revision",
    "--auto-compaction-retention",
    "10000",
];

/// The etcd program on PATH, or an error that says how to install it.
pub fn find_etcd() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .context(
            "`lab up --ha` runs a 3-member etcd cluster, but `etcd` is not on PATH \
             (Debian: apt-get install etcd-server)",
        )
}

/// The etcd cluster's client URLs, as the replicas are given them.
pub fn etcd_endpoints() -> String {
    (1..=HA_MEMBERS)
        .map(|i| format!("http://{}:{}", names::etcd_ip(i), names::ETCD_CLIENT_PORT))
        .collect::<Vec<_>>()
        .join(",")
}

/// Data directory of replica `i` (1-based): the lab's server dir for the first.
pub fn replica_data_dir(state_dir: &Path, i: usize) -> PathBuf {
    if i == 1 {
        crate::up::server_data_dir(state_dir)
    } else {
        state_dir.join(format!("replica-{i}"))
    }
}

/// Step 2 with `--ha`: a netns on the fabric for each etcd member and each replica, recorded
/// in the state before anything is started in them.
pub async fn plumb(
    prefix: &str,
    api_port: u16,
    state: &mut LabState,
    state_dir: &Path,
) -> anyhow::Result<()> {
    let fabric = softvpc_netlink::Netlink::connect_in(&names::fabric_netns(prefix))?;
    for i in 1..=HA_MEMBERS {
        for (ns, port, ip) in [
            (
                names::etcd_netns(prefix, i),
                names::etcd_port(i),
                names::etcd_ip(i),
            ),
            (
                names::replica_netns(prefix, i),
                names::replica_port(i),
                names::replica_ip(i),
            ),
        ] {
            let nl = add_netns(&ns, state, state_dir).await?;
            fabric
                .add_veth(&port, names::HOST_UNDERLAY_IF, Some(&ns))
                .await?;
            fabric.set_master(&port, names::FABRIC_BRIDGE).await?;
            fabric.set_up(&port).await?;
            nl.add_address(
                names::HOST_UNDERLAY_IF,
                ip,
                names::UNDERLAY_PREFIX_LEN,
                false,
            )
            .await?;
            nl.set_up(names::HOST_UNDERLAY_IF).await?;
        }
        state.etcd.push(EtcdRecord {
            name: format!("etcd-{i}"),
            netns: names::etcd_netns(prefix, i),
            client_url: format!("http://{}:{}", names::etcd_ip(i), names::ETCD_CLIENT_PORT),
            data_dir: state_dir.join("etcd").join(format!("etcd-{i}")),
            process: None,
        });
        state.replicas.push(ReplicaRecord {
            name: format!("replica-{i}"),
            netns: names::replica_netns(prefix, i),
            api_url: format!("http://{}:{api_port}", names::replica_api_ip(i)),
            mapping_url: format!("https://{}:{}", names::replica_ip(i), names::MAPPING_PORT),
            data_dir: replica_data_dir(state_dir, i),
            process: None,
        });
        state.save(state_dir)?;
    }
    Ok(())
}

/// Namespaces of the HA control plane, for the fabric readiness check.
pub fn namespaces(state: &LabState) -> Vec<String> {
    state
        .etcd
        .iter()
        .map(|e| e.netns.clone())
        .chain(state.replicas.iter().map(|r| r.netns.clone()))
        .collect()
}

/// Step 3 with `--ha`, first half: the etcd members, until each says it is healthy.
pub(crate) fn start_etcd(
    prefix: &str,
    state: &mut LabState,
    state_dir: &Path,
) -> anyhow::Result<Vec<Started>> {
    let etcd = find_etcd()?;
    let peers: Vec<String> = (1..=HA_MEMBERS)
        .map(|i| {
            format!(
                "etcd-{i}=http://{}:{}",
                names::etcd_ip(i),
                names::ETCD_PEER_PORT
            )
        })
        .collect();
    let mut started = Vec::new();
    for i in 1..=HA_MEMBERS {
        let rec = state.etcd[i - 1].clone();
        std::fs::create_dir_all(&rec.data_dir)
            .with_context(|| format!("creating {}", rec.data_dir.display()))?;
        let peer = format!("http://{}:{}", names::etcd_ip(i), names::ETCD_PEER_PORT);
        let mut args = vec![
            "--name".to_string(),
            rec.name.clone(),
            "--data-dir".to_string(),
            rec.data_dir.display().to_string(),
            "--listen-client-urls".to_string(),
            rec.client_url.clone(),
            "--advertise-client-urls".to_string(),
            rec.client_url.clone(),
            "--listen-peer-urls".to_string(),
            peer.clone(),
            "--initial-advertise-peer-urls".to_string(),
            peer,
            "--initial-cluster".to_string(),
            peers.join(","),
            "--initial-cluster-token".to_string(),
            format!("{prefix}softvpc-lab"),
        ];
        args.extend(ETCD_FLAGS.iter().map(ToString::to_string));
        let log = state_dir.join("logs").join(format!("{}.log", rec.name));
        let child = sys::spawn_detached_in(&rec.netns, &etcd, &args, &log)?;
        state.etcd[i - 1].process = Some(ProcessRecord::new(child.id() as i32, log.clone()));
        state.save(state_dir)?;
        started.push(Started {
            child,
            log,
            what: format!("etcd member {}", rec.name),
        });
    }
    let fabric = names::fabric_netns(prefix);
    let deadline = Instant::now() + ETCD_READY;
    for (i, member) in started.iter_mut().enumerate() {
        let addr = SocketAddr::from((names::etcd_ip(i + 1), names::ETCD_CLIENT_PORT));
        loop {
            member.check()?;
            let ns = fabric.clone();
            if softvpc_netlink::netns::run_in(&ns, move || anyhow::Ok(etcd_healthy(addr)))? {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not report itself healthy (GET http://{addr}/health) within {ETCD_READY:?}; read {}{}",
                    member.what,
                    member.log.display(),
                    log_tail(&member.log)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(started)
}

/// Whether etcd at `addr` answers `GET /health` with `"health":"true"` (a member that sees a
/// leader).
fn etcd_healthy(addr: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /health HTTP/1.0\r\nHost: etcd\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body.contains("\"health\":\"true\""))
    };
    attempt().unwrap_or(false)
}

/// Replicas 2.. need the first replica's CA (their certificates and every host's come from it)
/// and API key pair (clients sign for any replica with it): copies, made once it has them.
pub fn copy_identity(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to.join("ca"))
        .with_context(|| format!("creating {}", to.join("ca").display()))?;
    let mut files = vec![PathBuf::from("credentials")];
    for entry in std::fs::read_dir(from.join("ca"))
        .with_context(|| format!("reading {}", from.join("ca").display()))?
    {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push(Path::new("ca").join(entry.file_name()));
        }
    }
    for f in files {
        // fs::copy keeps the mode: ca.key and credentials stay 0600.
        std::fs::copy(from.join(&f), to.join(&f))
            .with_context(|| format!("copying {} to {}", from.join(&f).display(), to.display()))?;
    }
    Ok(())
}
