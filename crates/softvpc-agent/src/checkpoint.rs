//! The agent's last applied mapping view, kept on local disk, so that an agent (re)started while
//! no server answers still forwards for its instances: it loads the view at start, adopts its
//! instances and publishes the table from it, marked stale (`/mappings` `"stale": true`,
//! `softvpc_mapping_stale 1`) until a server answers; its watch then resumes from the saved
//! revision (Deltas since, not a full Snapshot, when the server's log still holds it).
//!
//! The file (`mappings.pb` in the state directory) is a header line `softvpc-mappings 1`, the
//! host id and the message's length on the next two, then one protobuf `WatchResponse` holding
//! a Snapshot of the records at the saved epoch and revision: loading it is applying that
//! message. A file cut short or of another format is refused, never half applied. It is replaced whole
//! (written aside, synced, renamed), by a task that writes at most once per
//! [`SAVE_INTERVAL`] and always ends with the latest view.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use prost::Message as _;
use softvpc_mapping::Records;
use softvpc_proto::pb;
use tracing::{debug, warn};

/// The file's name in the agent's state directory.
pub const FILE: &str = "mappings.pb";

/// The first line of the file (its format's version).
const HEADER: &str = "softvpc-mappings 1";

/// Writes are at least this far apart (the last view is always written, just later).
pub const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// A view as saved: the host it is for, and the records at an epoch and revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The host id the server gave this host.
    pub host_id: String,
    /// The mapping log's epoch.
    pub epoch: String,
    /// The revision the records are at.
    pub revision: u64,
    /// The records.
    pub records: Arc<Records>,
}

impl Saved {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let msg = pb::WatchResponse {
            epoch: self.epoch.clone(),
            revision: self.revision,
            kind: Some(pb::watch_response::Kind::Snapshot(
                self.records.to_snapshot(),
            )),
        };
        let body = msg.encode_to_vec();
        let mut out = format!("{HEADER}\n{}\n{}\n", self.host_id, body.len()).into_bytes();
        out.extend_from_slice(&body);
        out
    }

    /// The host id and the watch message to apply, from the file's bytes.
    pub fn decode(bytes: &[u8]) -> anyhow::Result<(String, pb::WatchResponse)> {
        let mut lines = bytes.splitn(4, |b| *b == b'\n');
        let header = lines.next().unwrap_or_default();
        anyhow::ensure!(
            header == HEADER.as_bytes(),
            "not a softvpc mapping view (header {:?})",
            String::from_utf8_lossy(&header[..header.len().min(40)])
        );
        let host_id = std::str::from_utf8(lines.next().context("no host id line")?)
            .context("host id")?
            .to_string();
        anyhow::ensure!(!host_id.is_empty(), "empty host id");
        let len: usize = std::str::from_utf8(lines.next().context("no length line")?)
            .ok()
            .and_then(|l| l.parse().ok())
            .context("bad length line")?;
        let body = lines.next().context("no view")?;
        anyhow::ensure!(
            body.len() == len,
            "the view has {} bytes, its header says {len}",
            body.len()
        );
        let msg = pb::WatchResponse::decode(body).context("decoding the view")?;
        anyhow::ensure!(
            matches!(msg.kind, Some(pb::watch_response::Kind::Snapshot(_))),
            "the view is not a snapshot"
        );
        anyhow::ensure!(!msg.epoch.is_empty(), "the view has no epoch");
        Ok((host_id, msg))
    }
}

/// Reads the saved view at `path`: `None` when there is none; an unreadable or damaged file is
/// logged and ignored (the agent then waits for a server, as without one).
pub fn load(path: &Path) -> Option<(String, pb::WatchResponse)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the saved mapping view");
            return None;
        }
    };
    match Saved::decode(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            warn!(path = %path.display(), error = %format!("{e:#}"), "saved mapping view ignored");
            None
        }
    }
}

/// Writes `saved` to `path` atomically: a file beside it, synced, renamed over it.
pub fn write(path: &Path, saved: &Saved) -> anyhow::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("pb.tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&saved.encode())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Hands views to the task that writes them (the latest wins).
#[derive(Debug, Clone)]
pub struct Saver {
    tx: tokio::sync::watch::Sender<Option<Saved>>,
}

impl Saver {
    /// Starts the writer task for `path` on the current runtime.
    pub fn start(path: PathBuf) -> Saver {
        let (tx, mut rx) = tokio::sync::watch::channel::<Option<Saved>>(None);
        tokio::spawn(async move {
            let mut last: Option<(String, u64)> = None;
            while rx.changed().await.is_ok() {
                let Some(saved) = rx.borrow_and_update().clone() else {
                    continue;
                };
                let key = (saved.epoch.clone(), saved.revision);
                if last.as_ref() == Some(&key) {
                    continue;
                }
                let p = path.clone();
                let revision = saved.revision;
                match tokio::task::spawn_blocking(move || write(&p, &saved)).await {
                    Ok(Ok(())) => {
                        debug!(revision, "mapping view saved");
                        last = Some(key);
                    }
                    Ok(Err(e)) => {
                        warn!(path = %path.display(), error = %format!("{e:#}"), "cannot save the mapping view")
                    }
                    Err(e) => warn!(error = %e, "saving the mapping view panicked"),
                }
                tokio::time::sleep(SAVE_INTERVAL).await;
            }
        });
        Saver { tx }
    }

    /// Queues `saved` (replacing one not yet written).
    pub fn save(&self, saved: Saved) {
        let _ = self.tx.send(Some(saved));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use softvpc_mapping::{Applied, Replica};

    fn view() -> Saved {
        let snap = pb::Snapshot {
            hosts: vec![pb::Host {
                host_id: "h-1".into(),
                name: "host-1".into(),
                underlay_ip: "198.18.0.11".into(),
            }],
            vpcs: vec![pb::Vpc {
                vpc_id: "vpc-1".into(),
                vni: 7,
                cidrs: vec!["10.0.0.0/16".into()],
                services: None,
            }],
            subnets: vec![pb::Subnet {
                subnet_id: "subnet-1".into(),
                vpc_id: "vpc-1".into(),
                cidr: "10.0.0.0/24".into(),
            }],
            enis: vec![pb::Eni {
                eni_id: "eni-1".into(),
                vpc_id: "vpc-1".into(),
                vni: 7,
                subnet_id: "subnet-1".into(),
                ip: "10.0.0.5".into(),
                mac: "02:00:00:00:00:01".into(),
                host_id: "h-1".into(),
                host_underlay_ip: "198.18.0.11".into(),
                instance_id: "i-1".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let (records, bad) = Records::from_snapshot(&snap);
        assert!(bad.is_empty(), "{bad:?}");
        Saved {
            host_id: "h-1".into(),
            epoch: "e-1".into(),
            revision: 42,
            records: Arc::new(records),
        }
    }

    #[test]
    fn a_saved_view_loads_into_the_same_replica() {
        let dir = std::env::temp_dir().join(format!("softvpc-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE);
        assert!(load(&path).is_none());
        let saved = view();
        write(&path, &saved).unwrap();
        let (host_id, msg) = load(&path).expect("saved view");
        assert_eq!(host_id, "h-1");
        let mut replica = Replica::default();
        let applied = replica.apply(&msg).unwrap();
        assert!(matches!(applied, Applied::Snapshot { resync: false, .. }));
        assert_eq!(replica.records, saved.records);
        assert_eq!((replica.epoch.as_str(), replica.revision), ("e-1", 42));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_files_are_refused_not_trusted() {
        let good = view().encode();
        assert!(Saved::decode(&good).is_ok());
        assert!(Saved::decode(b"").is_err());
        assert!(Saved::decode(b"softvpc-mappings 2\nh-1\n").is_err());
        assert!(Saved::decode(b"softvpc-mappings 1\n\n").is_err());
        // Cut anywhere: refused.
        for cut in 0..good.len() {
            assert!(Saved::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let body = pb::WatchResponse {
            epoch: "e".into(),
            revision: 1,
            kind: Some(pb::watch_response::Kind::Heartbeat(pb::Heartbeat {})),
        }
        .encode_to_vec();
        let mut heartbeat = format!("{HEADER}\nh-1\n{}\n", body.len()).into_bytes();
        heartbeat.extend_from_slice(&body);
        assert!(Saved::decode(&heartbeat).is_err());
    }
}
