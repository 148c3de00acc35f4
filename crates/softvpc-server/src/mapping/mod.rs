//! The server's side of the mapping service: how agents learn where every ENI lives.
//!
//! [`project`] turns the resource model into mapping records and derives each mutation's
//! changes (the difference of the records before and after it); [`MappingProjection`] follows
//! the store ([`softvpc_store::CommitFollower`]): it derives the changes when a mutation is
//! staged and commits them to its `softvpc_mapping::MappingLog` once the mutation is durable.
//! [`service`] serves each host's `softvpc_mapping::Feed` over gRPC (`RegisterHost`, `Watch`).
//! The protocol's state machine (log, per-host projection, resume, resync) is the
//! `softvpc-mapping` crate's. This is the one place that knows both the model and the mapping
//! protocol: the model and the store know nothing of protobuf or of who reads their changes.

pub mod flow_records;
pub mod project;
pub mod service;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use softvpc_mapping::{Change, LogRead, MappingLog};
use softvpc_model::State;
use softvpc_store::{CommitFollower, Store};

pub use softvpc_mapping::log::DEFAULT_CAPACITY;

/// The mapping log of this server, kept in step with the store.
pub struct MappingProjection {
    epoch: String,
    log: Mutex<MappingLog>,
    /// Changes of staged mutations, by revision, until they are durable.
    pending: Mutex<VecDeque<(u64, Vec<Change>)>>,
    /// Check every derived change against records computed from scratch (tests, fuzzing).
    check: bool,
}

impl MappingProjection {
    /// A log of `capacity` revisions, in a new random epoch, starting from the records of
    /// `state` (the store's state when it is attached).
    pub fn new(state: &State, capacity: usize) -> Self {
        let epoch = softvpc_model::ids::new_id("epoch");
        let log = MappingLog::new(
            epoch.as_str(),
            state.revision,
            capacity,
            project::all_records(state),
        );
        MappingProjection {
            epoch,
            log: Mutex::new(log),
            pending: Mutex::new(VecDeque::new()),
            check: false,
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
        let projection = Arc::new(MappingProjection::new(&store.state(), capacity));
        (store.with_follower(projection.clone()), projection)
    }

    /// Like [`Self::attach`], checking every mutation (see [`Self::checked`]).
    pub fn attach_checked(store: Store, capacity: usize) -> (Store, Arc<MappingProjection>) {
        let projection = Arc::new(MappingProjection::new(&store.state(), capacity).checked());
        (store.with_follower(projection.clone()), projection)
    }

    /// The epoch of this log (a random id per server start).
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The log's records and its entries after `revision` (a cheap copy: the catalog's maps
    /// are persistent).
    pub fn read(&self, revision: u64) -> LogRead {
        self.log().read(revision)
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
        while pending.front().is_some_and(|(r, _)| *r <= revision) {
            if let Some((r, changes)) = pending.pop_front() {
                log.commit(r, changes);
            }
        }
    }

    fn abandoned(&self) {
        self.pending().clear();
    }
}
