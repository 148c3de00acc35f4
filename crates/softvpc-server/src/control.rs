//! The control plane's shared core: the store, the current model state, the mapping log and the
//! revision signal streams wait on. Mutations are serialised: run the operation on a private copy
//! of the state, commit its writes and the next revision in one store transaction, then publish
//! the new state and log entry together.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::mapping::log::{self, LogEntry, MappingLog};
use crate::model::{ApiError, State, Txn};
use crate::store::Store;

struct Inner {
    state: Arc<State>,
    log: MappingLog,
}

/// The store, the model, and the mapping log.
pub struct ControlPlane {
    /// None: memory only (see [`ControlPlane::ephemeral`]).
    store: Option<Store>,
    inner: Mutex<Inner>,
    /// Serialises mutations.
    writer: Mutex<()>,
    revision_tx: watch::Sender<u64>,
    epoch: String,
    /// Where flow log destinations live (None: flow logs get no directories, e.g. in tests).
    flow_log_dir: Option<PathBuf>,
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ControlPlane {
    /// Opens the store in `data_dir`; the mapping log starts empty with a new random epoch.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        Self::open_with_capacity(data_dir, log::DEFAULT_CAPACITY)
    }

    /// Like [`ControlPlane::open`], with a ring of `capacity` revisions.
    pub fn open_with_capacity(data_dir: &Path, capacity: usize) -> anyhow::Result<Self> {
        let (store, state) = Store::open(data_dir)?;
        Ok(Self::with_store(Some(store), state, capacity))
    }

    /// A control plane whose redb store lives in memory (nothing survives the process).
    pub fn open_in_memory() -> anyhow::Result<Self> {
        let (store, state) = Store::open_in_memory()?;
        Ok(Self::with_store(Some(store), state, log::DEFAULT_CAPACITY))
    }

    /// A control plane with no store at all: mutations are only applied in memory. Cheap to
    /// create (no redb), for fuzzing and property tests of the API logic.
    pub fn ephemeral() -> Self {
        Self::with_store(None, State::new(), log::DEFAULT_CAPACITY)
    }

    fn with_store(store: Option<Store>, state: State, capacity: usize) -> Self {
        let revision = state.revision;
        let (revision_tx, _) = watch::channel(revision);
        ControlPlane {
            store,
            inner: Mutex::new(Inner {
                state: Arc::new(state),
                log: MappingLog::new(revision, capacity),
            }),
            writer: Mutex::new(()),
            revision_tx,
            epoch: crate::model::ids::new_id("epoch"),
            flow_log_dir: None,
        }
    }

    /// The same control plane with flow log destinations under `dir`.
    pub fn with_flow_log_dir(mut self, dir: PathBuf) -> Self {
        self.flow_log_dir = Some(dir);
        self
    }

    /// The directory flow log destinations live in, if any.
    pub fn flow_log_dir(&self) -> Option<&Path> {
        self.flow_log_dir.as_deref()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave it half-updated (the state is swapped
        // whole), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current state (a cheap shared snapshot).
    pub fn state(&self) -> Arc<State> {
        self.lock().state.clone()
    }

    /// The epoch of this server's mapping log.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// A receiver that is woken whenever the revision advances.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision_tx.subscribe()
    }

    /// The current state and the log entries after `revision` (None: not in the ring), read
    /// together so they agree.
    pub fn since(&self, revision: u64) -> (Arc<State>, Option<Vec<Arc<LogEntry>>>) {
        let inner = self.lock();
        (inner.state.clone(), inner.log.since(revision))
    }

    /// Runs `op` as one all-or-nothing mutation. On error nothing changes; with `dry_run` a
    /// successful `op` is discarded and `DryRunOperation` returned.
    pub fn mutate<R>(
        &self,
        dry_run: bool,
        op: impl FnOnce(&mut Txn) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        // One writer at a time; readers (Describe calls, watch streams) only take the state
        // lock briefly, never across the store commit.
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let (base, last_revision) = {
            let inner = self.lock();
            (inner.state.clone(), inner.log.last_revision())
        };
        let mut txn = Txn::new((*base).clone(), now_secs());
        // Lazy housekeeping, committed with this change: terminated instances past retention.
        crate::model::instance::purge_terminated(&mut txn);
        let result = op(&mut txn)?;
        if dry_run {
            return Err(ApiError::dry_run());
        }
        if txn.is_empty() {
            return Ok(result);
        }
        let revision = last_revision + 1;
        txn.state.revision = revision;
        let committed = match &self.store {
            Some(store) => store.commit(&txn.writes, revision, txn.state.next_vni),
            None => Ok(()),
        };
        if let Err(e) = committed {
            tracing::error!(error = %e, "store commit failed; request refused");
            return Err(ApiError::internal(
                "An internal error has occurred: the change could not be stored.",
            ));
        }
        let changes = log::resolve(&txn.state, &txn.changes);
        {
            let mut inner = self.lock();
            inner.state = Arc::new(txn.state);
            inner.log.push(LogEntry { revision, changes });
        }
        self.revision_tx.send_replace(revision);
        Ok(result)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{instance, subnet, tags::TagSpec, vpc, Tags};
    use std::path::PathBuf;

    /// A fresh temporary directory, removed on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "softvpc-server-test-{tag}-{}",
                crate::model::ids::new_id("t")
            ));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn refused_requests_leave_the_store_unchanged() {
        let dir = TempDir::new("atomic");
        let cp = ControlPlane::open(&dir.0).unwrap();
        let vpc = cp
            .mutate(false, |t| {
                vpc::create_vpc(t, "10.0.0.0/16", None, Tags::new())
            })
            .unwrap();
        let s = cp
            .mutate(false, |t| {
                subnet::create_subnet(t, &vpc.id, "10.0.0.0/24", None, Tags::new())
            })
            .unwrap();
        cp.mutate(false, |t| {
            crate::model::host::register_host(t, "host-1", "198.18.0.11")
        })
        .unwrap();
        let before = cp.state();
        // A launch that fails after allocating: the second tag spec is invalid, so nothing of
        // the first part may remain.
        let req = instance::RunRequest {
            min_count: 2,
            max_count: 2,
            subnet_id: s.id.clone(),
            tag_specs: vec![TagSpec {
                resource_type: "instance".into(),
                tags: vec![("aws:reserved".into(), "x".into())],
            }],
            ..Default::default()
        };
        assert!(cp
            .mutate(false, |t| instance::run_instances(t, &req))
            .is_err());
        // A multi-step operation that fails midway (create, then a refused second step).
        let err = cp
            .mutate(false, |t| {
                vpc::create_vpc(t, "10.1.0.0/16", None, Tags::new())?;
                subnet::create_subnet(t, "vpc-missing", "10.1.0.0/24", None, Tags::new())
            })
            .unwrap_err();
        assert_eq!(err.code, "InvalidVpcID.NotFound");
        // Dry runs change nothing either.
        let err = cp
            .mutate(true, |t| {
                vpc::create_vpc(t, "10.2.0.0/16", None, Tags::new())
            })
            .unwrap_err();
        assert_eq!(err.code, "DryRunOperation");
        assert_eq!(err.status, 412);
        assert_eq!(*cp.state(), *before);
        drop(cp);
        let reopened = ControlPlane::open(&dir.0).unwrap();
        assert_eq!(
            *reopened.state(),
            *before,
            "the store holds exactly the same"
        );
    }

    #[test]
    fn state_persists_across_reopen_with_revision_and_vnis() {
        let dir = TempDir::new("persist");
        let (vpc_id, rev, inst_id) = {
            let cp = ControlPlane::open(&dir.0).unwrap();
            let epoch = cp.epoch().to_string();
            let vpc = cp
                .mutate(false, |t| {
                    vpc::create_vpc(t, "10.0.0.0/16", None, Tags::new())
                })
                .unwrap();
            let s = cp
                .mutate(false, |t| {
                    subnet::create_subnet(t, &vpc.id, "10.0.0.0/24", None, Tags::new())
                })
                .unwrap();
            cp.mutate(false, |t| {
                crate::model::host::register_host(t, "host-1", "198.18.0.11")
            })
            .unwrap();
            let req = instance::RunRequest {
                min_count: 1,
                max_count: 1,
                subnet_id: s.id.clone(),
                ..Default::default()
            };
            let r = cp
                .mutate(false, |t| instance::run_instances(t, &req))
                .unwrap();
            let state = cp.state();
            assert_eq!(state.revision, 4);
            let again = ControlPlane::open(&dir.0);
            assert!(again.is_err(), "the store is locked while open");
            assert!(!epoch.is_empty());
            (vpc.id, state.revision, r.instances[0].id.clone())
        };
        let cp = ControlPlane::open(&dir.0).unwrap();
        let state = cp.state();
        assert_eq!(state.revision, rev);
        assert_eq!(state.vpcs[&vpc_id].vni, crate::model::FIRST_VNI);
        assert_eq!(state.instances[&inst_id].private_ip.to_string(), "10.0.0.4");
        assert_eq!(state.enis.len(), 1);
        // VNIs keep counting after a restart.
        let v2 = cp
            .mutate(false, |t| {
                vpc::create_vpc(t, "10.0.0.0/16", None, Tags::new())
            })
            .unwrap();
        assert_eq!(v2.vni, crate::model::FIRST_VNI + 1);
        assert_eq!(cp.state().revision, rev + 1);
        // Terminated instances stay stored (terminated, with the time) across a restart.
        cp.mutate(false, |t| {
            instance::terminate_instances(t, std::slice::from_ref(&inst_id))
        })
        .unwrap();
        let terminated = cp.state().instances[&inst_id].clone();
        assert_eq!(terminated.state, crate::model::InstanceState::Terminated);
        assert!(terminated.state_transition_time.is_some());
        drop(cp);
        let cp = ControlPlane::open(&dir.0).unwrap();
        assert_eq!(cp.state().instances[&inst_id], terminated);
        assert!(cp.state().enis.is_empty());
    }
}
