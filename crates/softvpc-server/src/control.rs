//! The control plane's shared core: the store, the current model state, the mapping log and the
//! revision signal streams wait on. Mutations are serialised: each runs on a private copy of the
//! newest state (O(1): the maps are persistent), its writes are committed to the store durably,
//! and only then are the new state and log entries published and the request answered.
//!
//! Group commit: mutations that arrive while a commit is in flight are run one after another on
//! the newest (not yet durable) state and staged; the next commit writes all of them in one
//! store transaction, so concurrent writers share one fsync instead of queueing for one each.
//! Nobody sees a staged change before it is durable (readers get the published state; a
//! mutation's answer waits for its commit). If a commit fails, every mutation staged at that
//! point fails with it and the newest state falls back to the published one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use softvpc_mapping::{log::DEFAULT_CAPACITY, Change, LogRead, MappingLog};

use crate::model::{ApiError, State, Txn};
use crate::store::Store;

struct Inner {
    state: Arc<State>,
    log: MappingLog,
}

/// A mutation that has run but is not yet durable.
struct Staged {
    seq: u64,
    writes: Vec<crate::model::Write>,
    /// Its mapping changes, derived before it was staged (nothing of the mapping is computed
    /// in the commit path).
    changes: Vec<Change>,
    /// The state right after it (the last one of a batch is published).
    state: State,
}

/// The newest state, including staged mutations (guarded by [`ControlPlane::writer`]).
struct Tip {
    /// None: the published state is the newest.
    state: Option<State>,
    /// The sequence number the next staged mutation gets.
    next_seq: u64,
}

/// What is waiting for a commit, and how far commits got.
#[derive(Default)]
struct Commits {
    staged: Vec<Staged>,
    /// A thread is committing a batch now.
    committing: bool,
    /// Every mutation with a sequence number up to this one is finished (durable or failed).
    done: u64,
    /// Finished mutations whose commit failed, until their caller has seen it.
    failed: HashSet<u64>,
}

/// The store, the model, and the mapping log.
pub struct ControlPlane {
    /// None: memory only (see [`ControlPlane::ephemeral`]).
    store: Option<Store>,
    inner: Mutex<Inner>,
    /// Serialises mutations; holds the newest (possibly not yet durable) state.
    writer: Mutex<Tip>,
    commits: Mutex<Commits>,
    /// Signalled whenever a commit finishes.
    committed: Condvar,
    /// Tests: make store commits fail.
    #[cfg(test)]
    fail_commits: std::sync::atomic::AtomicBool,
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
        Self::open_with_capacity(data_dir, DEFAULT_CAPACITY)
    }

    /// Like [`ControlPlane::open`], with a ring of `capacity` revisions.
    pub fn open_with_capacity(data_dir: &Path, capacity: usize) -> anyhow::Result<Self> {
        let (store, state) = Store::open(data_dir)?;
        Ok(Self::with_store(Some(store), state, capacity))
    }

    /// A control plane whose redb store lives in memory (nothing survives the process).
    pub fn open_in_memory() -> anyhow::Result<Self> {
        let (store, state) = Store::open_in_memory()?;
        Ok(Self::with_store(Some(store), state, DEFAULT_CAPACITY))
    }

    /// A control plane with no store at all: mutations are only applied in memory. Cheap to
    /// create (no redb), for fuzzing and property tests of the API logic.
    pub fn ephemeral() -> Self {
        Self::with_store(None, State::new(), DEFAULT_CAPACITY)
    }

    fn with_store(store: Option<Store>, state: State, capacity: usize) -> Self {
        let revision = state.revision;
        let epoch = crate::model::ids::new_id("epoch");
        let log = MappingLog::new(
            epoch.as_str(),
            revision,
            capacity,
            crate::mapping::project::all_records(&state),
        );
        let (revision_tx, _) = watch::channel(revision);
        ControlPlane {
            store,
            inner: Mutex::new(Inner {
                state: Arc::new(state),
                log,
            }),
            writer: Mutex::new(Tip {
                state: None,
                next_seq: 1,
            }),
            commits: Mutex::new(Commits::default()),
            committed: Condvar::new(),
            #[cfg(test)]
            fail_commits: Default::default(),
            revision_tx,
            epoch,
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

    /// The mapping log's records and its entries after `revision` (a cheap copy: the
    /// catalog's maps are persistent).
    pub fn mapping_since(&self, revision: u64) -> LogRead {
        self.lock().log.read(revision)
    }

    /// Runs `op` as one all-or-nothing mutation. On error nothing changes; with `dry_run` a
    /// successful `op` is discarded and `DryRunOperation` returned. Returns once the change is
    /// durable and published.
    pub fn mutate<R>(
        &self,
        dry_run: bool,
        op: impl FnOnce(&mut Txn) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        // One mutation runs at a time, on the newest state; readers (Describe calls, watch
        // streams) only take the published-state lock briefly, never across a store commit.
        let (seq, result) = {
            let mut tip = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            let base = match &tip.state {
                Some(s) => s.clone(),
                None => (*self.lock().state).clone(),
            };
            let mut txn = Txn::new(base.clone(), now_secs());
            // Lazy housekeeping, committed with this change: terminated instances past retention.
            crate::model::instance::purge_terminated(&mut txn);
            let result = op(&mut txn)?;
            if dry_run {
                return Err(ApiError::dry_run());
            }
            if txn.is_empty() {
                // Nothing to store, but the answer may rest on staged changes: it waits for
                // the last of them.
                let last = tip.next_seq - 1;
                drop(tip);
                self.wait_durable(last, false)?;
                return Ok(result);
            } else {
                let seq = tip.next_seq;
                tip.next_seq += 1;
                txn.state.revision += 1;
                let changes = crate::mapping::project::derive(&base, &txn.state);
                #[cfg(test)]
                crate::mapping::project::check(&base, &txn.state, &changes);
                tip.state = Some(txn.state.clone());
                self.lock_commits().staged.push(Staged {
                    seq,
                    writes: txn.writes,
                    changes,
                    state: txn.state,
                });
                (seq, result)
            }
        };
        self.wait_durable(seq, true)?;
        Ok(result)
    }

    fn lock_commits(&self) -> MutexGuard<'_, Commits> {
        self.commits.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns once mutation `seq` is durable and published (committing batches while nobody
    /// else does), or an error if its commit failed. `owner`: the caller staged `seq` (and
    /// clears its failure mark), rather than only depending on it.
    fn wait_durable(&self, seq: u64, owner: bool) -> Result<(), ApiError> {
        let mut commits = self.lock_commits();
        loop {
            if commits.done >= seq {
                let failed = if owner {
                    commits.failed.remove(&seq)
                } else {
                    commits.failed.contains(&seq)
                };
                if failed {
                    return Err(ApiError::internal(
                        "An internal error has occurred: the change could not be stored.",
                    ));
                }
                return Ok(());
            }
            if !commits.committing && !commits.staged.is_empty() {
                commits.committing = true;
                let batch = std::mem::take(&mut commits.staged);
                drop(commits);
                if !self.commit_batch(batch) {
                    // Still the committer, so nobody commits what was built on the failure.
                    self.fail_staged();
                }
                commits = self.lock_commits();
                commits.committing = false;
                self.committed.notify_all();
                continue;
            }
            commits = self
                .committed
                .wait(commits)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Commits `batch` in one store transaction, then publishes its states and log entries.
    /// False when the store refused it (the batch is then marked failed).
    fn commit_batch(&self, batch: Vec<Staged>) -> bool {
        let Some(last) = batch.last() else {
            return true;
        };
        let (last_seq, revision, next_vni) = (last.seq, last.state.revision, last.state.next_vni);
        #[cfg(test)]
        let injected = self.fail_commits.load(std::sync::atomic::Ordering::SeqCst);
        #[cfg(not(test))]
        let injected = false;
        let committed = match &self.store {
            _ if injected => Err(anyhow::anyhow!("injected store failure")),
            Some(store) => {
                let writes: Vec<&crate::model::Write> =
                    batch.iter().flat_map(|s| s.writes.iter()).collect();
                store.commit(writes, revision, next_vni)
            }
            None => Ok(()),
        };
        if let Err(e) = committed {
            tracing::error!(error = %e, mutations = batch.len(), "store commit failed; requests refused");
            let mut commits = self.lock_commits();
            commits.failed.extend(batch.iter().map(|s| s.seq));
            commits.done = commits.done.max(last_seq);
            return false;
        }
        {
            let mut inner = self.lock();
            let mut published = None;
            for s in batch {
                inner.log.commit(s.state.revision, s.changes);
                published = Some(s.state);
            }
            if let Some(state) = published {
                inner.state = Arc::new(state);
            }
        }
        self.revision_tx.send_replace(revision);
        let mut commits = self.lock_commits();
        commits.done = commits.done.max(last_seq);
        true
    }

    /// After a failed commit: every mutation staged since was built on it, so it fails too, and
    /// the newest state falls back to the published one.
    fn fail_staged(&self) {
        let mut tip = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut commits = self.lock_commits();
        let staged = std::mem::take(&mut commits.staged);
        for s in &staged {
            commits.failed.insert(s.seq);
        }
        commits.done = commits.done.max(tip.next_seq - 1);
        tip.state = None;
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

    /// A VPC 10.0.0.0/16 with one subnet `subnet_cidr` in it, committed.
    fn vpc_and_subnet(
        cp: &ControlPlane,
        subnet_cidr: &str,
    ) -> (crate::model::Vpc, crate::model::Subnet) {
        let v = cp
            .mutate(false, |t| {
                vpc::create_vpc(t, "10.0.0.0/16", None, Tags::new())
            })
            .unwrap();
        let s = cp
            .mutate(false, |t| {
                subnet::create_subnet(t, &v.id, subnet_cidr, None, Tags::new())
            })
            .unwrap();
        (v, s)
    }

    #[test]
    fn refused_requests_leave_the_store_unchanged() {
        let dir = TempDir::new("atomic");
        let cp = ControlPlane::open(&dir.0).unwrap();
        let (_, s) = vpc_and_subnet(&cp, "10.0.0.0/24");
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
    fn concurrent_mutations_share_commits_and_all_land() {
        let dir = TempDir::new("group");
        let cp = Arc::new(ControlPlane::open(&dir.0).unwrap());
        let (_, s) = vpc_and_subnet(&cp, "10.0.0.0/20");
        let start = cp.state().revision;
        let mut rx = cp.subscribe();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let cp = cp.clone();
                let subnet = s.id.clone();
                std::thread::spawn(move || {
                    (0..25)
                        .map(|_| {
                            let req = crate::model::eni::CreateRequest {
                                subnet_id: subnet.clone(),
                                ..Default::default()
                            };
                            let eni = cp
                                .mutate(false, |t| {
                                    crate::model::eni::create_network_interface(t, &req)
                                })
                                .unwrap();
                            // Answered only once durable and published.
                            assert!(cp.state().enis.contains_key(&eni.id));
                            eni.private_ip
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut ips: Vec<_> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 200, "every ENI got its own address");
        let state = cp.state();
        assert_eq!(state.revision, start + 200, "one revision per mutation");
        assert_eq!(*rx.borrow_and_update(), start + 200);
        let read = cp.mapping_since(start);
        let revs: Vec<u64> = read.entries.unwrap().iter().map(|e| e.revision).collect();
        assert_eq!(revs, (start + 1..=start + 200).collect::<Vec<_>>());
        drop(cp);
        let reopened = ControlPlane::open(&dir.0).unwrap();
        assert_eq!(*reopened.state(), *state, "the store holds every one");
    }

    #[test]
    fn a_failed_commit_refuses_the_request_and_changes_nothing() {
        let dir = TempDir::new("fail");
        let cp = ControlPlane::open(&dir.0).unwrap();
        let v1 = cp
            .mutate(false, |t| {
                vpc::create_vpc(t, "10.0.0.0/16", None, Tags::new())
            })
            .unwrap();
        let before = cp.state();
        cp.fail_commits
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let err = cp
            .mutate(false, |t| {
                vpc::create_vpc(t, "10.1.0.0/16", None, Tags::new())
            })
            .unwrap_err();
        assert_eq!(err.code, "InternalError");
        assert_eq!(*cp.state(), *before);
        cp.fail_commits
            .store(false, std::sync::atomic::Ordering::SeqCst);
        // The next mutation builds on the published state, not on the failed one.
        let v3 = cp
            .mutate(false, |t| {
                vpc::create_vpc(t, "10.2.0.0/16", None, Tags::new())
            })
            .unwrap();
        let state = cp.state();
        assert_eq!(state.vpcs.len(), 2);
        assert!(state.vpcs.contains_key(&v1.id) && state.vpcs.contains_key(&v3.id));
        assert_eq!(state.revision, before.revision + 1);
        drop(cp);
        assert_eq!(*ControlPlane::open(&dir.0).unwrap().state(), *state);
    }

    #[test]
    fn state_persists_across_reopen_with_revision_and_vnis() {
        let dir = TempDir::new("persist");
        let (vpc_id, rev, inst_id) = {
            let cp = ControlPlane::open(&dir.0).unwrap();
            let epoch = cp.epoch().to_string();
            let (vpc, s) = vpc_and_subnet(&cp, "10.0.0.0/24");
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
