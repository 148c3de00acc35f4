//! One watch on the server end: what its host needs, as a first message and then one message
//! per revision advance.
//!
//! A host needs every registered host (to check VXLAN sources); the whole of every VPC (VPC,
//! subnets, ENIs, network ACLs, route tables, peering connections) with at least one ENI placed
//! on it or actively peered with such a VPC; and the security groups of the ENIs placed on it
//! (the members of groups their rules reference are ENIs of those VPCs, already held). A group
//! that becomes needed is sent whole, one no longer needed is deleted, like a VPC. The first
//! message is a Snapshot,
//! or, when the agent resumes with this log's epoch and a revision the ring still holds, the
//! Delta since then. Later messages are Deltas: changes of VPCs the agent holds and still needs
//! are replayed in order; a VPC that became needed is sent whole (as of now); a VPC no longer
//! needed is deleted. A Heartbeat says only that the revision advanced. Whenever the ring no
//! longer holds the feed's revision, the feed sends a fresh Snapshot: never silent staleness.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use softvpc_proto::pb;

use crate::log::{LogRead, Needed, NeededInputs};
use crate::record::Scope;

/// One watch's position: the revision it has sent and the VPCs and groups its agent then holds.
#[derive(Debug, Clone)]
pub struct Feed {
    host_id: String,
    revision: u64,
    /// Shared with the keys of the messages it sent (see [`Key`]): a reference count each.
    held: Arc<Needed>,
    /// The catalog's maps that `held` was computed from (None until the first message): while
    /// they are unchanged, so is what the host needs, and the feed does not compute it again.
    held_from: Option<NeededInputs>,
}

impl Feed {
    /// Opens a watch for `req`. `read` must be the log read at `req.revision`. Returns the
    /// feed and its first message.
    pub fn open(req: &pb::WatchRequest, read: &LogRead) -> (Feed, pb::WatchResponse) {
        let mut feed = Feed::new(req);
        let resume = *req.epoch == *read.epoch && req.revision > 0;
        let first = feed.message(read, !resume);
        (feed, first)
    }

    /// The host this feed serves.
    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    /// The revision the feed has sent (read the log since it for [`Feed::next`]).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The VPCs the agent holds after the messages sent so far.
    pub fn held(&self) -> &BTreeSet<String> {
        &self.held.vpcs
    }

    /// The security groups the agent holds after the messages sent so far.
    pub fn held_groups(&self) -> &BTreeSet<String> {
        &self.held.groups
    }

    /// The next message, given the log read at [`Feed::revision`]; None when the revision has
    /// not advanced.
    pub fn next(&mut self, read: &LogRead) -> Option<pb::WatchResponse> {
        if read.revision == self.revision && read.entries.is_some() {
            return None;
        }
        Some(self.message(read, false))
    }

    /// Like [`Feed::open`], sharing the first message through `shared` with every other feed
    /// whose first message is the same (see [`SharedMessages`]); `make` turns a message into
    /// what is shared (the server: its encoded bytes).
    pub fn open_shared<T: Clone>(
        req: &pb::WatchRequest,
        read: &LogRead,
        shared: &SharedMessages<T>,
        make: impl FnOnce(pb::WatchResponse) -> T,
    ) -> (Feed, T) {
        let mut feed = Feed::new(req);
        let resume = *req.epoch == *read.epoch && req.revision > 0;
        let first = feed.shared_message(read, !resume, shared, make);
        (feed, first)
    }

    /// Like [`Feed::next`], sharing the message through `shared` with every other feed whose
    /// next message is the same.
    pub fn next_shared<T: Clone>(
        &mut self,
        read: &LogRead,
        shared: &SharedMessages<T>,
        make: impl FnOnce(pb::WatchResponse) -> T,
    ) -> Option<T> {
        if read.revision == self.revision && read.entries.is_some() {
            return None;
        }
        Some(self.shared_message(read, false, shared, make))
    }

    fn new(req: &pb::WatchRequest) -> Feed {
        Feed {
            host_id: req.host_id.clone(),
            revision: req.revision,
            held: Arc::new(Needed {
                vpcs: req.held_vpc_ids.iter().cloned().collect(),
                groups: req.held_security_group_ids.iter().cloned().collect(),
            }),
            held_from: None,
        }
    }

    /// What the host needs as of `read`: `held` again when the maps it was computed from are
    /// unchanged (one pointer comparison per map instead of lookups and two new sets).
    fn needed(&self, read: &LogRead) -> Arc<Needed> {
        match &self.held_from {
            Some(from) if from.unchanged(&read.catalog) => self.held.clone(),
            _ => Arc::new(read.catalog.needed(&self.host_id)),
        }
    }

    fn message(&mut self, read: &LogRead, snapshot: bool) -> pb::WatchResponse {
        let needed = self.needed(read);
        let snapshot = snapshot || read.entries.is_none();
        let m = self.build(read, snapshot, &needed);
        self.advance(read, needed);
        m
    }

    fn shared_message<T: Clone>(
        &mut self,
        read: &LogRead,
        snapshot: bool,
        shared: &SharedMessages<T>,
        make: impl FnOnce(pb::WatchResponse) -> T,
    ) -> T {
        let needed = self.needed(read);
        let snapshot = snapshot || read.entries.is_none();
        // A Snapshot depends only on what is needed; a Delta also on where the feed is and
        // what its agent holds.
        let key = Key {
            from: if snapshot { 0 } else { self.revision },
            held: if snapshot {
                Arc::default()
            } else {
                self.held.clone()
            },
            needed: needed.clone(),
            snapshot,
        };
        let m = shared.get_or_make(read, key, || make(self.build(read, snapshot, &needed)));
        self.advance(read, needed);
        m
    }

    fn advance(&mut self, read: &LogRead, needed: Arc<Needed>) {
        if !Arc::ptr_eq(&self.held, &needed) || self.held_from.is_none() {
            self.held_from = Some(read.catalog.needed_inputs());
        }
        self.held = needed;
        self.revision = read.revision;
    }

    /// The message taking an agent that holds `self.held` at `self.revision` to `needed` at
    /// `read.revision`. A function of those, the log's entries between the two revisions and
    /// its catalog only (not of the host): so feeds for which they are equal share it.
    fn build(&self, read: &LogRead, snapshot: bool, needed: &Needed) -> pb::WatchResponse {
        use pb::watch_response::Kind;
        let kind = match &read.entries {
            Some(entries) if !snapshot => {
                let kept = |v: &str| self.held.vpcs.contains(v) && needed.vpcs.contains(v);
                let mut changes = Vec::new();
                for entry in entries {
                    for c in &entry.changes {
                        let forward = match c.scope() {
                            Scope::All => true,
                            Scope::Vpc(v) => kept(v),
                            // A peering also goes to an agent that held either side before
                            // this message: when the side it held is dropped and the other side
                            // arrives whole, only this delete removes a peering gone meanwhile.
                            Scope::Vpcs(a, b) => {
                                self.held.vpcs.contains(a) || self.held.vpcs.contains(b)
                            }
                            Scope::Group(g) => {
                                self.held.groups.contains(g) && needed.groups.contains(g)
                            }
                        };
                        if forward {
                            changes.push(c.to_pb());
                        }
                    }
                }
                for v in needed.vpcs.difference(&self.held.vpcs) {
                    changes.extend(read.catalog.whole_vpc(v));
                }
                for g in needed.groups.difference(&self.held.groups) {
                    changes.extend(read.catalog.whole_group(g));
                }
                for g in self.held.groups.difference(&needed.groups) {
                    changes.push(pb::Change {
                        kind: Some(pb::change::Kind::DeleteSecurityGroupId(g.clone())),
                    });
                }
                for v in self.held.vpcs.difference(&needed.vpcs) {
                    changes.push(pb::Change {
                        kind: Some(pb::change::Kind::DeleteVpcId(v.clone())),
                    });
                }
                if changes.is_empty() {
                    Kind::Heartbeat(pb::Heartbeat {})
                } else {
                    Kind::Delta(pb::Delta { changes })
                }
            }
            _ => Kind::Snapshot(read.catalog.snapshot_of(needed)),
        };
        pb::WatchResponse {
            epoch: read.epoch.to_string(),
            revision: read.revision,
            kind: Some(kind),
        }
    }
}

/// What a feed's message is a function of, besides the log read (its epoch, its revision):
/// see [`Feed::build`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    /// The revision the feed had sent (0 for a Snapshot).
    from: u64,
    /// What its agent held (nothing for a Snapshot).
    held: Arc<Needed>,
    /// What its host needs now.
    needed: Arc<Needed>,
    snapshot: bool,
}

/// The messages of one log revision, shared by the feeds that send the same one: hosts with
/// the same view (the same VPCs and groups) at the same revision get the same Delta, so the
/// server builds (and encodes) it once instead of once per host. A message is made by the
/// first feed that asks for it; the others wait for it and take a clone of what `make`
/// returned (for the server, the encoded message: a reference count, not a copy).
///
/// It holds the messages of the newest revision asked for only (a read of a newer revision, or
/// of another epoch, drops them all), so its size is bounded by the distinct views of one
/// revision.
pub struct SharedMessages<T> {
    inner: Mutex<Generation<T>>,
}

struct Generation<T> {
    epoch: Arc<str>,
    revision: u64,
    messages: HashMap<Key, Arc<OnceLock<T>>>,
}

impl<T> Default for SharedMessages<T> {
    fn default() -> Self {
        SharedMessages {
            inner: Mutex::new(Generation {
                epoch: Arc::from(""),
                revision: 0,
                messages: HashMap::new(),
            }),
        }
    }
}

impl<T: Clone> SharedMessages<T> {
    /// Forgets every message (when the log is rebuilt).
    pub fn clear(&self) {
        self.lock().messages.clear();
    }

    /// How many distinct messages the current revision has so far (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generation<T>> {
        // Only whole inserts and clears happen under the lock: a poisoned one is consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get_or_make(&self, read: &LogRead, key: Key, make: impl FnOnce() -> T) -> T {
        let cell = {
            let mut g = self.lock();
            if *g.epoch != *read.epoch || read.revision > g.revision {
                g.epoch = read.epoch.clone();
                g.revision = read.revision;
                g.messages.clear();
            } else if read.revision < g.revision {
                // A read older than the newest one: rare, and not worth keeping.
                drop(g);
                return make();
            }
            g.messages.entry(key).or_default().clone()
        };
        cell.get_or_init(make).clone()
    }
}
