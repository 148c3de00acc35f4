//! The server's side of the mapping service: how agents learn where every ENI lives.
//!
//! [`project`] turns the resource model into mapping records and derives each mutation's
//! changes (the difference of the records before and after it); [`MappingProjection`] follows
//! the store ([`softvpc_store::CommitFollower`]): it derives the changes when a mutation is
//! staged and commits them to its `softvpc_mapping::MappingLog` once the mutation is durable.
//! The log says which hosts each revision concerns; a fan-out thread then wakes only those
//! hosts' watches ([`MappingProjection::subscribe`]), off the committing request's path: an API
//! call waits for its durable commit and the log append, never for the fan-out to agents.
//! [`service`] serves each host's `softvpc_mapping::Feed` over gRPC (`RegisterHost`, `Watch`);
//! [`watch`] is its `Watch` route, which encodes each shared message once for every stream.
//! The protocol's state machine (log, per-host projection, resume, resync) is the
//! `softvpc-mapping` crate's. This is the one place that knows both the model and the mapping
//! protocol: the model and the store know nothing of protobuf or of who reads their changes.

pub mod fanout;
pub mod flow_records;
pub mod project;
pub mod service;
pub mod watch;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, Weak};
use std::task::Waker;

use futures_util::task::AtomicWaker;

use softvpc_mapping::{Change, Concerned, LogRead, MappingLog, SharedMessages};
use softvpc_model::State;
use softvpc_store::{CommitFollower, Store};

pub use softvpc_mapping::log::DEFAULT_CAPACITY;

/// The mapping log of this server, kept in step with the store.
pub struct MappingProjection {
    epoch: String,
    capacity: usize,
    log: Mutex<MappingLog>,
    /// Changes of staged mutations, by revision, until they are durable.
    pending: Mutex<VecDeque<(u64, Vec<Change>)>>,
    /// Check every derived change against records computed from scratch (tests, fuzzing).
    check: bool,
    /// Each host's wake-up signal (the newest revision that concerned it).
    wakers: Arc<Wakers>,
    /// To the fan-out thread: the hosts each committed revision concerns.
    fanout: Mutex<mpsc::Sender<Concerned>>,
    /// The watch messages of the newest revision, built and encoded once per distinct view.
    shared: SharedMessages<watch::Encoded>,
    /// When each recent revision was committed and its watch messages written.
    fanout_times: Arc<fanout::FanoutTimes>,
}

/// A raised flag and the task it wakes: a watch's wake-up signal. Raising it is a store and a
/// wake; the watch takes it when polled. Cheaper than a channel: nothing is allocated or
/// registered again per message (the task's waker is stored once and kept while it is the
/// same).
#[derive(Default)]
pub struct Flag {
    raised: AtomicBool,
    task: AtomicWaker,
}

impl Flag {
    /// A flag raised from the start (its first poll reports it).
    pub fn raised() -> Self {
        let f = Flag::default();
        f.raised.store(true, Ordering::Relaxed);
        f
    }

    /// Raises the flag and wakes the task that polled it last.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.task.wake();
    }

    /// Whether the flag was raised since the last take (lowering it); `waker` is woken by the
    /// next raise. Registered before the flag is read, so no raise is missed in between.
    pub fn take(&self, waker: &Waker) -> bool {
        self.task.register(waker);
        self.raised.swap(false, Ordering::AcqRel)
    }
}

impl std::task::Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.raise();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.raise();
    }
}

/// The per-host wake-up signals (one [`Flag`] per open watch), raised by the fan-out thread.
#[derive(Default)]
struct Wakers {
    hosts: Mutex<HashMap<String, Vec<Weak<Flag>>>>,
}

impl Wakers {
    fn hosts(&self) -> MutexGuard<'_, HashMap<String, Vec<Weak<Flag>>>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the watches of the hosts concerned (of every host for `Concerned::All`),
    /// forgetting those that ended.
    fn wake(&self, concerned: &Concerned) {
        let raise = |watches: &mut Vec<Weak<Flag>>| {
            watches.retain(|w| w.upgrade().map(|f| f.raise()).is_some());
        };
        let mut hosts = self.hosts();
        match concerned {
            Concerned::All => hosts.values_mut().for_each(raise),
            Concerned::Hosts(set) => {
                for h in set {
                    if let Some(watches) = hosts.get_mut(h) {
                        raise(watches);
                    }
                }
            }
        }
    }
}

/// The fan-out thread: wakes the concerned hosts' watches, several revisions at once when
/// commits come faster than it runs. Ends when the projection is dropped.
fn fan_out(wakers: Arc<Wakers>, rx: mpsc::Receiver<Concerned>) {
    while let Ok(mut concerned) = rx.recv() {
        while let Ok(c) = rx.try_recv() {
            concerned.extend(c);
        }
        wakers.wake(&concerned);
    }
}

impl MappingProjection {
    /// A log of `capacity` revisions, in a new random epoch, starting from the records of
    /// `state` (the store's state when it is attached).
    pub fn new(state: &State, capacity: usize) -> Self {
        Self::in_epoch(softvpc_model::ids::new_id("epoch"), state, capacity)
    }

    /// Like [`Self::new`] in a given epoch (the one every replica of a replicated store
    /// serves: a revision then means the same on each, and an agent resumes on any).
    pub fn in_epoch(epoch: String, state: &State, capacity: usize) -> Self {
        let log = MappingLog::new(
            epoch.as_str(),
            state.revision,
            capacity,
            project::all_records(state),
        );
        let wakers = Arc::new(Wakers::default());
        let (tx, rx) = mpsc::channel();
        let w = wakers.clone();
        std::thread::Builder::new()
            .name("mapping-fanout".into())
            .spawn(move || fan_out(w, rx))
            .expect("spawning the mapping fan-out thread");
        MappingProjection {
            epoch,
            capacity,
            log: Mutex::new(log),
            pending: Mutex::new(VecDeque::new()),
            check: false,
            wakers,
            fanout: Mutex::new(tx),
            shared: SharedMessages::default(),
            fanout_times: Arc::default(),
        }
    }

    /// The same projection checking, at every mutation, that the derived changes take the
    /// records before it exactly to the records after it ([`project::check`]; it panics
    /// otherwise). O(records) per mutation: for tests and fuzzing.
    pub fn checked(mut self) -> Self {
        self.check = true;
        self
    }

    /// Attaches a projection of `capacity` revisions to `store`.
    pub fn attach(store: Store, capacity: usize) -> (Store, Arc<MappingProjection>) {
        let projection = Arc::new(match store.shared_epoch() {
            Some(epoch) => MappingProjection::in_epoch(epoch, &store.state(), capacity),
            None => MappingProjection::new(&store.state(), capacity),
        });
        (store.with_follower(projection.clone()), projection)
    }

    /// Like [`Self::attach`], checking every mutation (see [`Self::checked`]).
    pub fn attach_checked(store: Store, capacity: usize) -> (Store, Arc<MappingProjection>) {
        let projection = Arc::new(MappingProjection::new(&store.state(), capacity).checked());
        (store.with_follower(projection.clone()), projection)
    }

    /// The epoch of this log (kept by the store: redb's data directory or etcd; random for an
    /// in-memory store).
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The log's records and its entries after `revision` (a cheap copy: the catalog's maps
    /// are persistent).
    pub fn read(&self, revision: u64) -> LogRead {
        self.log().read(revision)
    }

    /// The watch messages of the newest revision, shared by the feeds that send the same one
    /// ([`softvpc_mapping::Feed::next_shared`]).
    pub fn shared(&self) -> &SharedMessages<watch::Encoded> {
        &self.shared
    }

    /// When each recent revision was committed and its watch messages written (the server's
    /// share of a change's propagation).
    pub fn fanout_times(&self) -> &Arc<fanout::FanoutTimes> {
        &self.fanout_times
    }

    /// The newest revision of the log.
    pub fn revision(&self) -> u64 {
        self.log().revision()
    }

    /// A flag raised whenever a committed revision concerns host `host_id`, for one watch
    /// (forgotten once the watch drops it). Revisions that do not concern the host do not
    /// raise it: a watch catches up on them at its next wake-up or heartbeat.
    pub fn subscribe(&self, host_id: &str) -> Arc<Flag> {
        let flag = Arc::new(Flag::default());
        let mut hosts = self.wakers.hosts();
        let watches = hosts.entry(host_id.to_string()).or_default();
        watches.retain(|w| w.strong_count() > 0);
        watches.push(Arc::downgrade(&flag));
        flag
    }

    fn log(&self) -> MutexGuard<'_, MappingLog> {
        // The log is changed by whole commits only, so a poisoned lock is still consistent.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, VecDeque<(u64, Vec<Change>)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CommitFollower for MappingProjection {
    fn staged(&self, before: &State, after: &State) {
        let changes = project::derive(before, after);
        if self.check {
            project::check(before, after, &changes);
        }
        self.pending().push_back((after.revision, changes));
    }

    fn committed(&self, revision: u64) {
        let mut pending = self.pending();
        let mut log = self.log();
        let mut concerned = Concerned::Hosts(Default::default());
        let now = std::time::Instant::now();
        while pending.front().is_some_and(|(r, _)| *r <= revision) {
            if let Some((r, changes)) = pending.pop_front() {
                concerned.extend(log.commit(r, changes));
                self.fanout_times.committed(r, now);
            }
        }
        drop(log);
        // The thread lives as long as the projection; a send fails only if it panicked.
        let _ = self
            .fanout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(concerned);
    }

    fn abandoned(&self) {
        self.pending().clear();
    }

    fn reset(&self, state: &State) {
        // Resume points before `state` cannot be replayed: agents there get a Snapshot.
        self.pending().clear();
        self.shared.clear();
        *self.log() = MappingLog::new(
            self.epoch.as_str(),
            state.revision,
            self.capacity,
            project::all_records(state),
        );
    }
}
