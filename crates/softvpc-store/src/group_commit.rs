//! The resource store: the current model state, and one all-or-nothing mutation at a time,
//! committed to a [`Backend`] before it is published. Each mutation runs on a private copy of the
//! newest state (O(1): the maps are persistent), its writes are committed durably, and only then
//! is the new state published (and each [`CommitFollower`] told) and the request answered.
//!
//! Group commit: mutations that arrive while a commit is in flight are run one after another on
//! the newest (not yet durable) state and staged; the next commit writes all of them in one
//! backend transaction, so concurrent writers share one fsync instead of queueing for one each.
//! Nobody sees a staged change before it is durable (readers get the published state; a
//! mutation's answer waits for its commit). If a commit fails, every mutation staged at that
//! point fails with it and the newest state falls back to the published one.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use softvpc_model::{ApiError, State, Txn, Write};

use crate::redb_backend::RedbBackend;

/// Where committed mutations are kept durably. [`RedbBackend`] is the one softvpc has; a second
/// one (e.g. a replicated log) implements this and [`Store::with_backend`] takes it.
pub trait Backend: Send + Sync {
    /// Commits `writes` (in order) with the new `revision` and `next_vni` in one transaction,
    /// durable when it returns; on error nothing of it is kept.
    fn commit(&self, writes: &[&Write], revision: u64, next_vni: u32) -> anyhow::Result<()>;
}

/// Follows the store's mutations, e.g. to derive and publish what they change for someone
/// else (the server's mapping log). Called with the store's locks held: keep it short.
pub trait CommitFollower: Send + Sync {
    /// A mutation from `before` to `after` (whose `revision` is its own) was staged. Called in
    /// revision order, before the commit that makes it durable, so work done here stays out of
    /// the commit path.
    fn staged(&self, before: &State, after: &State);
    /// Every staged mutation up to `revision` is durable. Called in order, before the new state
    /// is published and the revision signalled.
    fn committed(&self, revision: u64);
    /// The staged mutations not yet committed are abandoned (a commit failed); the next one is
    /// staged on the published state again.
    fn abandoned(&self);
}

struct Inner {
    state: Arc<State>,
}

/// A mutation that has run but is not yet durable.
struct Staged {
    seq: u64,
    writes: Vec<Write>,
    /// The state right after it (the last one of a batch is published).
    state: State,
}

/// The newest state, including staged mutations (guarded by [`Store::writer`]).
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

/// The resource store: the published state, the mutation in progress, the commits.
pub struct Store {
    /// None: memory only (see [`Store::ephemeral`]).
    backend: Option<Box<dyn Backend>>,
    followers: Vec<Arc<dyn CommitFollower>>,
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
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    /// Opens the redb store in `data_dir` (see [`RedbBackend`]).
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let (backend, state) = RedbBackend::open(data_dir)?;
        Ok(Self::with_backend(Some(Box::new(backend)), state))
    }

    /// A store whose redb database lives in memory (nothing survives the process).
    pub fn open_in_memory() -> anyhow::Result<Self> {
        let (backend, state) = RedbBackend::open_in_memory()?;
        Ok(Self::with_backend(Some(Box::new(backend)), state))
    }

    /// A store with no backend at all: mutations are only applied in memory. Cheap to create
    /// (no redb), for fuzzing and property tests of the API logic.
    pub fn ephemeral() -> Self {
        Self::with_backend(None, State::new())
    }

    /// A store over `backend` (None: memory only) whose state is `state`, as the backend
    /// loaded it.
    pub fn with_backend(backend: Option<Box<dyn Backend>>, state: State) -> Self {
        let revision = state.revision;
        let (revision_tx, _) = watch::channel(revision);
        Store {
            backend,
            followers: Vec::new(),
            inner: Mutex::new(Inner {
                state: Arc::new(state),
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
        }
    }

    /// The same store with `follower` told of every mutation from now on (before the store is
    /// shared: it starts from [`Store::state`]).
    pub fn with_follower(mut self, follower: Arc<dyn CommitFollower>) -> Self {
        self.followers.push(follower);
        self
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

    /// A receiver that is woken whenever the revision advances.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision_tx.subscribe()
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
            softvpc_model::instance::purge_terminated(&mut txn);
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
                for f in &self.followers {
                    f.staged(&base, &txn.state);
                }
                tip.state = Some(txn.state.clone());
                self.lock_commits().staged.push(Staged {
                    seq,
                    writes: txn.writes,
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

    /// Commits `batch` in one backend transaction, then publishes its last state (followers
    /// first). False when the backend refused it (the batch is then marked failed).
    fn commit_batch(&self, batch: Vec<Staged>) -> bool {
        let Some(last) = batch.last() else {
            return true;
        };
        let (last_seq, revision, next_vni) = (last.seq, last.state.revision, last.state.next_vni);
        #[cfg(test)]
        let injected = self.fail_commits.load(std::sync::atomic::Ordering::SeqCst);
        #[cfg(not(test))]
        let injected = false;
        let committed = match &self.backend {
            _ if injected => Err(anyhow::anyhow!("injected store failure")),
            Some(backend) => {
                let writes: Vec<&Write> = batch.iter().flat_map(|s| s.writes.iter()).collect();
                backend.commit(&writes, revision, next_vni)
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
            for f in &self.followers {
                f.committed(revision);
            }
            if let Some(s) = batch.into_iter().next_back() {
                inner.state = Arc::new(s.state);
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
        for f in &self.followers {
            f.abandoned();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use softvpc_model::{instance, subnet, tags::TagSpec, vpc, Tags};
    use std::path::PathBuf;

    /// A fresh temporary directory, removed on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "softvpc-store-test-{tag}-{}",
                softvpc_model::ids::new_id("t")
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

    /// What a follower was told, in order.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl CommitFollower for Recorder {
        fn staged(&self, before: &State, after: &State) {
            assert_eq!(
                after.revision,
                before.revision + 1,
                "one revision per mutation"
            );
            self.0
                .lock()
                .unwrap()
                .push(format!("staged {}", after.revision));
        }
        fn committed(&self, revision: u64) {
            self.0.lock().unwrap().push(format!("committed {revision}"));
        }
        fn abandoned(&self) {
            self.0.lock().unwrap().push("abandoned".into());
        }
    }

    /// A VPC 10.0.0.0/16 with one subnet `subnet_cidr` in it, committed.
    fn vpc_and_subnet(
        cp: &Store,
        subnet_cidr: &str,
    ) -> (softvpc_model::Vpc, softvpc_model::Subnet) {
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
        let cp = Store::open(&dir.0).unwrap();
        let (_, s) = vpc_and_subnet(&cp, "10.0.0.0/24");
        cp.mutate(false, |t| {
            softvpc_model::host::register_host(t, "host-1", "198.18.0.11")
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
        let reopened = Store::open(&dir.0).unwrap();
        assert_eq!(
            *reopened.state(),
            *before,
            "the store holds exactly the same"
        );
    }

    #[test]
    fn concurrent_mutations_share_commits_and_all_land() {
        let dir = TempDir::new("group");
        let recorder = Arc::new(Recorder::default());
        let cp = Arc::new(Store::open(&dir.0).unwrap().with_follower(recorder.clone()));
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
                            let req = softvpc_model::eni::CreateRequest {
                                subnet_id: subnet.clone(),
                                ..Default::default()
                            };
                            let eni = cp
                                .mutate(false, |t| {
                                    softvpc_model::eni::create_network_interface(t, &req)
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
        // The follower saw every mutation staged once, in revision order, and every one
        // committed (several per commit when they shared one).
        let told = recorder.0.lock().unwrap().clone();
        let staged: Vec<&String> = told.iter().filter(|t| t.starts_with("staged")).collect();
        let want: Vec<String> = (1..=start + 200).map(|r| format!("staged {r}")).collect();
        assert_eq!(staged, want.iter().collect::<Vec<_>>());
        let committed: Vec<u64> = told
            .iter()
            .filter_map(|t| t.strip_prefix("committed ")?.parse().ok())
            .collect();
        assert!(committed.windows(2).all(|w| w[0] < w[1]), "{committed:?}");
        assert_eq!(committed.last(), Some(&(start + 200)));
        drop(cp);
        let reopened = Store::open(&dir.0).unwrap();
        assert_eq!(*reopened.state(), *state, "the store holds every one");
    }

    #[test]
    fn a_failed_commit_refuses_the_request_and_changes_nothing() {
        let dir = TempDir::new("fail");
        let recorder = Arc::new(Recorder::default());
        let cp = Store::open(&dir.0).unwrap().with_follower(recorder.clone());
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
        // The follower dropped the failed mutation and saw its revision staged again.
        assert_eq!(
            *recorder.0.lock().unwrap(),
            [
                "staged 1",
                "committed 1",
                "staged 2",
                "abandoned",
                "staged 2",
                "committed 2"
            ]
        );
        drop(cp);
        assert_eq!(*Store::open(&dir.0).unwrap().state(), *state);
    }

    #[test]
    fn state_persists_across_reopen_with_revision_and_vnis() {
        let dir = TempDir::new("persist");
        let (vpc_id, rev, inst_id) = {
            let cp = Store::open(&dir.0).unwrap();
            let (vpc, s) = vpc_and_subnet(&cp, "10.0.0.0/24");
            cp.mutate(false, |t| {
                softvpc_model::host::register_host(t, "host-1", "198.18.0.11")
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
            let again = Store::open(&dir.0);
            assert!(again.is_err(), "the store is locked while open");
            (vpc.id, state.revision, r.instances[0].id.clone())
        };
        let cp = Store::open(&dir.0).unwrap();
        let state = cp.state();
        assert_eq!(state.revision, rev);
        assert_eq!(state.vpcs[&vpc_id].vni, softvpc_model::FIRST_VNI);
        assert_eq!(state.instances[&inst_id].private_ip.to_string(), "10.0.0.4");
        assert_eq!(state.enis.len(), 1);
        // VNIs keep counting after a restart.
        let v2 = cp
            .mutate(false, |t| {
                vpc::create_vpc(t, "10.0.0.0/16", None, Tags::new())
            })
            .unwrap();
        assert_eq!(v2.vni, softvpc_model::FIRST_VNI + 1);
        assert_eq!(cp.state().revision, rev + 1);
        // Terminated instances stay stored (terminated, with the time) across a restart.
        cp.mutate(false, |t| {
            instance::terminate_instances(t, std::slice::from_ref(&inst_id))
        })
        .unwrap();
        let terminated = cp.state().instances[&inst_id].clone();
        assert_eq!(terminated.state, softvpc_model::InstanceState::Terminated);
        assert!(terminated.state_transition_time.is_some());
        drop(cp);
        let cp = Store::open(&dir.0).unwrap();
        assert_eq!(cp.state().instances[&inst_id], terminated);
        assert!(cp.state().enis.is_empty());
    }
}
