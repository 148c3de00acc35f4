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
//!
//! Replicated backends (etcd): several stores (server replicas) commit to one backend, each
//! commit conditional on the revision it was built on (optimistic concurrency). A commit
//! refused because another replica committed first is a *conflict*: the store catches up
//! ([`Backend::read_since`]: the other replicas' mutations, applied in revision order and told
//! to the followers as if made here) and each mutation of the refused batch runs again, on the
//! new state, as its caller's own retry. [`Store::sync`] catches up the same way when the
//! backend says others committed (a watch) or before a read that must see them.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use softvpc_model::{ApiError, State, Txn, Write};

use crate::redb_backend::RedbBackend;

/// One mutation as a backend commits it: the revision it produced, the next VNI after it, its
/// writes in order.
#[derive(Debug, Clone, Copy)]
pub struct Mutation<'a> {
    /// The revision the mutation produced (one more than the one before it).
    pub revision: u64,
    /// The model's next VNI after it.
    pub next_vni: u32,
    /// Its store writes, in order.
    pub writes: &'a [Write],
}

/// A mutation committed by another store over the same (replicated) backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The revision it produced.
    pub revision: u64,
    /// The model's next VNI after it.
    pub next_vni: u32,
    /// Its writes, in order.
    pub writes: Vec<Write>,
}

/// What changed in the backend since a revision.
#[derive(Debug)]
pub enum Since {
    /// The mutations after it, in order (empty: nothing new).
    Entries(Vec<Entry>),
    /// The backend no longer holds them all: the whole state as it is now.
    Reload(Box<State>),
}

/// Why a commit did not happen.
#[derive(Debug)]
pub enum CommitError {
    /// Another store committed on the same revision first (replicated backends only): nothing
    /// of this commit was kept; catch up and run the mutations again.
    Conflict,
    /// The backend failed (for a replicated one the outcome may be unknown: catching up tells).
    Failed(anyhow::Error),
}

/// Where committed mutations are kept durably: [`RedbBackend`] (one machine) or
/// [`crate::EtcdBackend`] (replicated, shared by several stores).
pub trait Backend: Send + Sync {
    /// Commits `batch` (consecutive mutations after revision `batch[0].revision - 1`, which the
    /// backend must still be at for a replicated one) in one transaction, durable when it
    /// returns; on error nothing of it is kept (or, [`CommitError::Failed`] on a replicated
    /// backend, maybe all of it: [`Backend::read_since`] tells).
    fn commit(&self, batch: &[Mutation<'_>]) -> Result<(), CommitError>;
    /// What other stores committed after `revision`. A backend only this store writes has
    /// nothing (the default).
    fn read_since(&self, _revision: u64) -> anyhow::Result<Since> {
        Ok(Since::Entries(Vec::new()))
    }
    /// The newest committed revision, read from the backend (None: only this store writes, so
    /// the published state is always the newest).
    fn latest_revision(&self) -> anyhow::Result<Option<u64>> {
        Ok(None)
    }
    /// At most how many mutations one commit may hold.
    fn max_batch(&self) -> usize {
        usize::MAX
    }
    /// The mapping epoch kept by this backend: shared by every store over it and across server
    /// restarts (None: each server start makes its own).
    fn epoch(&self) -> Option<String> {
        None
    }
}

/// Follows the store's mutations, e.g. to derive and publish what they change for someone
/// else (the server's mapping log). Called with the store's locks held: keep it short.
pub trait CommitFollower: Send + Sync {
    /// A mutation from `before` to `after` (whose `revision` is its own) was staged. Called in
    /// revision order, before the commit that makes it durable, so work done here stays out of
    /// the commit path. Another replica's mutation is staged and committed the same way.
    fn staged(&self, before: &State, after: &State);
    /// Every staged mutation up to `revision` is durable. Called in order, before the new state
    /// is published and the revision signalled.
    fn committed(&self, revision: u64);
    /// The staged mutations not yet committed are abandoned (a commit failed or conflicted);
    /// the next one is staged on the published state again.
    fn abandoned(&self);
    /// The store jumped to `state` (a replica too far behind its replicated backend reloaded
    /// everything): start over from it.
    fn reset(&self, _state: &State) {}
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
    /// A thread is committing a batch (or catching up) now.
    committing: bool,
    /// Every mutation with a sequence number up to this one is finished (durable or failed).
    done: u64,
    /// Finished mutations whose commit failed, until their caller has seen it.
    failed: HashSet<u64>,
    /// Finished mutations another replica's commit overtook, until their caller has seen it
    /// (it runs them again).
    conflicted: HashSet<u64>,
}

/// How a staged mutation ended.
enum Outcome {
    Durable,
    Failed,
    Conflicted,
}

/// How long a mutation keeps running again after conflicts before it gives up.
const CONFLICT_RETRY_LIMIT: Duration = Duration::from_secs(10);

/// How long a read barrier keeps retrying a backend that does not answer (an etcd member down,
/// an election) before the request is refused.
const BARRIER_DEADLINE: Duration = Duration::from_secs(8);

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

    /// Opens the store in the etcd cluster at `endpoints`, under `prefix` (see
    /// [`crate::EtcdBackend`]). The receiver says the newest revision any replica committed:
    /// give it to [`Store::follow`].
    /// `docs`: the names of shared documents wanted (see [`crate::EtcdBackend::doc`]).
    #[allow(clippy::type_complexity)]
    pub fn open_etcd(
        endpoints: &[String],
        prefix: &str,
        docs: &[&str],
        prepare: impl FnOnce(&mut State),
    ) -> anyhow::Result<(Self, watch::Receiver<u64>, Vec<crate::EtcdDoc>)> {
        let (backend, mut state) = crate::EtcdBackend::connect(endpoints, prefix)?;
        prepare(&mut state);
        let changes = backend.changes();
        let docs = docs
            .iter()
            .map(|d| backend.doc(d))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok((
            Self::with_backend(Some(Box::new(backend)), state),
            changes,
            docs,
        ))
    }

    /// Keeps `store` caught up with the other replicas: a thread that [`Store::sync`]s whenever
    /// `changes` shows a revision newer than the published one (ends with the store).
    pub fn follow(store: &Arc<Store>, mut changes: watch::Receiver<u64>) -> anyhow::Result<()> {
        let weak = Arc::downgrade(store);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        std::thread::Builder::new()
            .name("softvpc-store-follow".into())
            .spawn(move || loop {
                let latest = *changes.borrow_and_update();
                let Some(store) = weak.upgrade() else { return };
                if latest > store.state().revision {
                    store.sync();
                }
                drop(store);
                let woke = rt.block_on(async {
                    tokio::time::timeout(Duration::from_secs(1), changes.changed()).await
                });
                if matches!(woke, Ok(Err(_))) {
                    return;
                }
            })?;
        Ok(())
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

    /// The mapping epoch the backend keeps (across restarts, and between replicas), if it does.
    pub fn shared_epoch(&self) -> Option<String> {
        self.backend.as_ref().and_then(|b| b.epoch())
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
    /// durable and published. Over a replicated backend `op` runs again when another replica
    /// committed first (on the state that includes that commit).
    pub fn mutate<R>(
        &self,
        dry_run: bool,
        mut op: impl FnMut(&mut Txn) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let started = Instant::now();
        // Decide on what every replica has committed, not on what reached this one yet.
        self.barrier()?;
        loop {
            match self.mutate_once(dry_run, &mut op)? {
                (Outcome::Durable, r) => return Ok(r),
                (Outcome::Conflicted, _) if started.elapsed() < CONFLICT_RETRY_LIMIT => continue,
                (Outcome::Conflicted, _) => {
                    return Err(ApiError::new(
                        "RequestLimitExceeded",
                        "Request limit exceeded: other changes kept overtaking this one.",
                    )
                    .with_status(503))
                }
                _ => {
                    return Err(ApiError::internal(
                        "An internal error has occurred: the change could not be stored.",
                    ))
                }
            }
        }
    }

    fn mutate_once<R>(
        &self,
        dry_run: bool,
        op: &mut impl FnMut(&mut Txn) -> Result<R, ApiError>,
    ) -> Result<(Outcome, R), ApiError> {
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
                // the last of them (and is decided again if they were overtaken).
                let last = tip.next_seq - 1;
                drop(tip);
                let outcome = self.wait_durable(last, false);
                return Ok((outcome, result));
            }
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
        };
        let outcome = self.wait_durable(seq, true);
        Ok((outcome, result))
    }

    fn lock_commits(&self) -> MutexGuard<'_, Commits> {
        self.commits.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns once mutation `seq` is durable and published (committing batches while nobody
    /// else does), or how it ended otherwise. `owner`: the caller staged `seq` (and clears its
    /// failure mark), rather than only depending on it.
    fn wait_durable(&self, seq: u64, owner: bool) -> Outcome {
        let mut commits = self.lock_commits();
        loop {
            if commits.done >= seq {
                let (failed, conflicted) = if owner {
                    (commits.failed.remove(&seq), commits.conflicted.remove(&seq))
                } else {
                    (
                        commits.failed.contains(&seq),
                        commits.conflicted.contains(&seq),
                    )
                };
                return match (failed, conflicted) {
                    (true, _) => Outcome::Failed,
                    (_, true) => Outcome::Conflicted,
                    _ => Outcome::Durable,
                };
            }
            if !commits.committing && !commits.staged.is_empty() {
                commits.committing = true;
                let max = self.backend.as_ref().map_or(usize::MAX, |b| b.max_batch());
                let n = commits.staged.len().min(max.max(1));
                let batch: Vec<Staged> = commits.staged.drain(..n).collect();
                drop(commits);
                match self.commit_batch(batch) {
                    Ok(()) => {}
                    Err(conflict) => {
                        // Still the committer, so nobody commits what was built on it.
                        self.drop_staged(conflict);
                        // A failure is logged; the retried mutation catches up again.
                        let _ = self.catch_up();
                    }
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
    /// first). An error (the batch is then marked failed or conflicted) says whether it was a
    /// conflict.
    fn commit_batch(&self, batch: Vec<Staged>) -> Result<(), bool> {
        let Some(last) = batch.last() else {
            return Ok(());
        };
        let (last_seq, revision) = (last.seq, last.state.revision);
        #[cfg(test)]
        let injected = self.fail_commits.load(std::sync::atomic::Ordering::SeqCst);
        #[cfg(not(test))]
        let injected = false;
        let committed = match &self.backend {
            _ if injected => Err(CommitError::Failed(anyhow::anyhow!(
                "injected store failure"
            ))),
            Some(backend) => {
                let muts: Vec<Mutation<'_>> = batch
                    .iter()
                    .map(|s| Mutation {
                        revision: s.state.revision,
                        next_vni: s.state.next_vni,
                        writes: &s.writes,
                    })
                    .collect();
                backend.commit(&muts)
            }
            None => Ok(()),
        };
        if let Err(e) = committed {
            let conflict = matches!(e, CommitError::Conflict);
            let mut commits = self.lock_commits();
            if let CommitError::Failed(e) = e {
                tracing::error!(error = %e, mutations = batch.len(), "store commit failed; requests refused");
                commits.failed.extend(batch.iter().map(|s| s.seq));
            } else {
                tracing::debug!(
                    mutations = batch.len(),
                    "another replica committed first; catching up"
                );
                commits.conflicted.extend(batch.iter().map(|s| s.seq));
            }
            commits.done = commits.done.max(last_seq);
            return Err(conflict);
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
        Ok(())
    }

    /// After a failed or overtaken commit: every mutation staged since was built on it, so it
    /// ends the same way, and the newest state falls back to the published one.
    fn drop_staged(&self, conflict: bool) {
        let mut tip = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut commits = self.lock_commits();
        let staged = std::mem::take(&mut commits.staged);
        for s in &staged {
            if conflict {
                commits.conflicted.insert(s.seq);
            } else {
                commits.failed.insert(s.seq);
            }
        }
        commits.done = commits.done.max(tip.next_seq - 1);
        tip.state = None;
        for f in &self.followers {
            f.abandoned();
        }
    }

    /// Applies what other stores committed to the backend since the published revision (the
    /// caller is the committer, and nothing is staged). Ok(true) when something was applied;
    /// an error when the backend could not be read or its entries could not be applied (what
    /// was applied before the error stays published: each entry is whole).
    fn catch_up(&self) -> anyhow::Result<bool> {
        let Some(backend) = &self.backend else {
            return Ok(false);
        };
        let published = self.state();
        let since = backend.read_since(published.revision).map_err(|e| {
            tracing::warn!(error = %e, revision = published.revision, "catching up with the store failed");
            e
        })?;
        let mut state = (*published).clone();
        match since {
            Since::Entries(entries) if entries.is_empty() => Ok(false),
            Since::Entries(entries) => {
                for e in entries {
                    if e.revision != state.revision + 1 {
                        tracing::warn!(
                            have = state.revision,
                            got = e.revision,
                            "the store's entries skip a revision; catching up later"
                        );
                        anyhow::bail!(
                            "the store's log skips from revision {} to {}",
                            state.revision,
                            e.revision
                        );
                    }
                    let before = state.clone();
                    for w in &e.writes {
                        if let Err(err) = state.apply_write(w) {
                            // A write this server cannot read (a newer replica's?): keep the
                            // state it has and say so; nothing half-applied is published.
                            tracing::error!(error = %err, revision = e.revision, "cannot apply a replica's commit");
                            return Err(err.context(format!("applying revision {}", e.revision)));
                        }
                    }
                    state.revision = e.revision;
                    state.next_vni = e.next_vni;
                    let mut inner = self.lock();
                    for f in &self.followers {
                        f.staged(&before, &state);
                        f.committed(state.revision);
                    }
                    inner.state = Arc::new(state.clone());
                    drop(inner);
                    self.revision_tx.send_replace(state.revision);
                }
                Ok(true)
            }
            Since::Reload(state) => {
                tracing::warn!(
                    from = published.revision,
                    to = state.revision,
                    "too far behind the store's log: reloaded the whole state"
                );
                let mut state = *state;
                // Settings that are not stored (quotas) stay this server's.
                state.quotas = published.quotas;
                let mut inner = self.lock();
                for f in &self.followers {
                    f.reset(&state);
                }
                let revision = state.revision;
                inner.state = Arc::new(state);
                drop(inner);
                self.revision_tx.send_replace(revision);
                Ok(true)
            }
        }
    }

    /// Makes the published state at least as new as the newest commit of any replica when
    /// this is called (nothing for a backend only this store writes): a read or mutation after
    /// it sees every write acknowledged before it. An etcd member that does not answer is
    /// retried for [`BARRIER_DEADLINE`]; after that the caller gets `ServiceUnavailable` (503,
    /// which SDKs retry) rather than a possibly stale answer.
    pub fn barrier(&self) -> Result<(), ApiError> {
        let Some(backend) = &self.backend else {
            return Ok(());
        };
        let started = Instant::now();
        let mut last_error;
        loop {
            match backend.latest_revision() {
                Ok(latest) => {
                    let latest = latest.unwrap_or(0);
                    if latest <= self.state().revision {
                        return Ok(());
                    }
                    match self.try_sync() {
                        Ok(now) if now >= latest => return Ok(()),
                        Ok(now) => {
                            last_error = format!("caught up to revision {now} of {latest}");
                        }
                        Err(e) => last_error = format!("{e:#}"),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "store: reading the newest revision failed");
                    last_error = format!("{e:#}");
                }
            }
            if started.elapsed() >= BARRIER_DEADLINE {
                tracing::error!(error = %last_error, "store: cannot see the replicas' newest commits; refusing");
                return Err(ApiError::new(
                    "ServiceUnavailable",
                    "The request has failed due to a temporary failure of the server.",
                )
                .with_status(503));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Catches up with what other replicas committed to a replicated backend (as the
    /// committer: mutations staged here on the older state run again). Returns the published
    /// revision after it. A no-op for a backend only this store writes. Failures are logged;
    /// [`Store::barrier`] is the caller that must not go on without them.
    pub fn sync(&self) -> u64 {
        match self.try_sync() {
            Ok(r) => r,
            Err(_) => self.state().revision,
        }
    }

    /// [`Store::sync`], with the error when the backend could not be read or applied.
    fn try_sync(&self) -> anyhow::Result<u64> {
        if self.backend.is_none() {
            return Ok(self.state().revision);
        }
        let mut commits = self.lock_commits();
        while commits.committing {
            commits = self
                .committed
                .wait(commits)
                .unwrap_or_else(|e| e.into_inner());
        }
        commits.committing = true;
        drop(commits);
        let result = match self.backend.as_ref().map(|b| b.latest_revision()) {
            Some(Ok(Some(latest))) if latest > self.state().revision => {
                // Anything staged here was built on the older state: it cannot commit.
                self.drop_staged(true);
                self.catch_up().map(|_| ())
            }
            Some(Ok(_)) | None => Ok(()),
            Some(Err(e)) => Err(e),
        };
        let mut commits = self.lock_commits();
        commits.committing = false;
        self.committed.notify_all();
        drop(commits);
        result.map(|()| self.state().revision)
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

    /// A replicated backend in memory: one log of mutations shared by several stores, each
    /// commit conditional on the revision it was built on (what etcd's compare-and-swap does).
    #[derive(Clone, Default)]
    struct SharedLog(Arc<Mutex<Vec<Entry>>>);

    impl Backend for SharedLog {
        fn commit(&self, batch: &[Mutation<'_>]) -> Result<(), CommitError> {
            let mut log = self.0.lock().unwrap();
            if batch[0].revision != log.len() as u64 + 1 {
                return Err(CommitError::Conflict);
            }
            for m in batch {
                log.push(Entry {
                    revision: m.revision,
                    next_vni: m.next_vni,
                    writes: m.writes.to_vec(),
                });
            }
            Ok(())
        }
        fn read_since(&self, revision: u64) -> anyhow::Result<Since> {
            let log = self.0.lock().unwrap();
            Ok(Since::Entries(log[revision as usize..].to_vec()))
        }
        fn latest_revision(&self) -> anyhow::Result<Option<u64>> {
            Ok(Some(self.0.lock().unwrap().len() as u64))
        }
        fn max_batch(&self) -> usize {
            4
        }
    }

    /// A [`SharedLog`] whose reads fail while `failures` is above zero (each failed read
    /// counts it down; `u32::MAX` fails for good): an etcd member that was just killed.
    struct FlakyLog {
        log: SharedLog,
        failures: Arc<std::sync::atomic::AtomicU32>,
    }

    impl FlakyLog {
        fn fail(&self) -> anyhow::Result<()> {
            use std::sync::atomic::Ordering;
            let n = self.failures.load(Ordering::SeqCst);
            if n == 0 {
                return Ok(());
            }
            if n != u32::MAX {
                self.failures.store(n - 1, Ordering::SeqCst);
            }
            anyhow::bail!("etcd member unreachable")
        }
    }

    impl Backend for FlakyLog {
        fn commit(&self, batch: &[Mutation<'_>]) -> Result<(), CommitError> {
            self.log.commit(batch)
        }
        fn read_since(&self, revision: u64) -> anyhow::Result<Since> {
            self.fail()?;
            self.log.read_since(revision)
        }
        fn latest_revision(&self) -> anyhow::Result<Option<u64>> {
            self.fail()?;
            self.log.latest_revision()
        }
        fn max_batch(&self) -> usize {
            4
        }
    }

    #[test]
    fn a_read_barrier_never_answers_stale_when_the_backend_stumbles() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let log = SharedLog::default();
        let writer = Store::with_backend(Some(Box::new(log.clone())), State::new());
        let failures = Arc::new(AtomicU32::new(0));
        let reader = Store::with_backend(
            Some(Box::new(FlakyLog {
                log: log.clone(),
                failures: failures.clone(),
            })),
            State::new(),
        );
        let (vpc, _) = vpc_and_subnet(&writer, "10.0.0.0/24");
        // A few failed reads (a killed member, before the client moves on): retried, and the
        // write acknowledged on the other replica is seen.
        failures.store(3, Ordering::SeqCst);
        reader.barrier().unwrap();
        assert!(reader.state().vpcs.contains_key(&vpc.id));
        assert_eq!(failures.load(Ordering::SeqCst), 0);
        // The backend stays unreachable: refused with 503, never a stale answer.
        writer
            .mutate(false, |t| {
                vpc::create_vpc(t, "10.1.0.0/16", None, Tags::new())
            })
            .unwrap();
        failures.store(u32::MAX, Ordering::SeqCst);
        let before = reader.state().revision;
        let err = reader.barrier().unwrap_err();
        assert_eq!(err.code, "ServiceUnavailable");
        assert_eq!(err.status, 503);
        assert_eq!(reader.state().revision, before);
        failures.store(0, Ordering::SeqCst);
        reader.barrier().unwrap();
        assert_eq!(reader.state().revision, writer.state().revision);
    }

    #[test]
    fn replicas_over_one_log_linearize_writes_and_converge() {
        let log = SharedLog::default();
        let recorders: Vec<Arc<Recorder>> = (0..3).map(|_| Arc::default()).collect();
        let replicas: Vec<Arc<Store>> = recorders
            .iter()
            .map(|r| {
                Arc::new(
                    Store::with_backend(Some(Box::new(log.clone())), State::new())
                        .with_follower(r.clone()),
                )
            })
            .collect();
        let (_, s) = vpc_and_subnet(&replicas[0], "10.0.0.0/20");
        // Writers on every replica at once: each ENI takes the next free address, so a
        // mutation run on a stale state would collide with another replica's.
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let cp = replicas[i % 3].clone();
                let subnet = s.id.clone();
                std::thread::spawn(move || {
                    (0..20)
                        .map(|_| {
                            let req = softvpc_model::eni::CreateRequest {
                                subnet_id: subnet.clone(),
                                ..Default::default()
                            };
                            cp.mutate(false, |t| {
                                softvpc_model::eni::create_network_interface(t, &req)
                            })
                            .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let acked: Vec<_> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let mut ips: Vec<_> = acked.iter().map(|e| e.private_ip).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 120, "no address given twice across replicas");
        for r in &replicas {
            r.sync();
        }
        let want = replicas[0].state();
        assert_eq!(want.revision, log.0.lock().unwrap().len() as u64);
        for (r, rec) in replicas.iter().zip(&recorders) {
            assert_eq!(*r.state(), *want, "every replica holds the same state");
            for e in &acked {
                assert_eq!(
                    r.state().enis.get(&e.id).map(|x| x.private_ip),
                    Some(e.private_ip)
                );
            }
            // Every replica's followers saw every revision committed, in order.
            let committed: Vec<u64> = rec
                .0
                .lock()
                .unwrap()
                .iter()
                .filter_map(|t| t.strip_prefix("committed ")?.parse().ok())
                .collect();
            assert!(committed.windows(2).all(|w| w[0] < w[1]), "{committed:?}");
            assert_eq!(committed.last(), Some(&want.revision));
        }
    }
}
