//! The agent end: the agent's copy of its host's view ([`Records`]) and the watch's resume
//! point (epoch, revision). It applies each `WatchResponse`: a Snapshot replaces everything, a
//! Delta applies its changes in order, a Heartbeat only advances the revision. A bad record is
//! skipped and reported in [`Applied`], never a panic; a message that cannot be applied on top
//! of what the replica holds is a [`ProtocolError`], after which the agent asks for a Snapshot.

use std::sync::Arc;

use softvpc_proto::pb;

use crate::record::{Change, RecordError, Records};

/// What applying one watch message did (for logs and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Everything was replaced. `resync` is true when the replica already held a view (so
    /// this is a resynchronisation, not the first sync).
    Snapshot {
        /// Not the first Snapshot.
        resync: bool,
        /// Records that could not be used.
        skipped: Vec<RecordError>,
    },
    /// `changes` changes were applied in order (bad ones skipped).
    Delta {
        /// How many changes the Delta had.
        changes: usize,
        /// Changes that could not be used.
        skipped: Vec<RecordError>,
    },
    /// Only the revision advanced.
    Heartbeat,
    /// A replay of a revision already applied (ignored).
    Stale,
}

impl Applied {
    /// Whether the records may have changed (so instances and the table need a refresh).
    pub fn changed(&self) -> bool {
        matches!(self, Applied::Snapshot { .. } | Applied::Delta { .. })
    }
}

/// The watch stream broke the protocol; the agent must drop its resume point and resync.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A Delta or Heartbeat for an epoch the replica does not hold: it cannot be applied on top.
    #[error("{kind} for epoch {got:?} while holding epoch {held:?}")]
    EpochMismatch {
        /// delta or heartbeat.
        kind: &'static str,
        /// The message's epoch.
        got: String,
        /// The replica's.
        held: String,
    },
    /// A message with no kind the agent understands.
    #[error("watch message with no known kind (revision {0})")]
    UnknownKind(u64),
}

/// The agent's copy of its host's mapping view and the watch resume point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replica {
    /// What the server sent. Shared (`Arc`) so the agent can publish it (for `/mappings` and its
    /// checkpoint) without a copy. Applying a Delta while a published view still holds it
    /// clones it (`Arc::make_mut`), which is O(1) since [`Records`]' maps are persistent: the
    /// change then copies only the tree nodes on its path.
    pub records: Arc<Records>,
    /// The server log's epoch the records came from (empty: none yet).
    pub epoch: String,
    /// The last revision applied (0: none yet).
    pub revision: u64,
    /// Snapshots applied so far (the first is the initial sync, later ones are resyncs).
    pub snapshots: u64,
}

impl Replica {
    /// The request that resumes the watch from where this replica is.
    pub fn watch_request(&self, host_id: &str) -> pb::WatchRequest {
        pb::WatchRequest {
            host_id: host_id.to_string(),
            epoch: self.epoch.clone(),
            revision: self.revision,
            held_vpc_ids: self.records.vpcs.keys().cloned().collect(),
            held_security_group_ids: self.records.security_groups.keys().cloned().collect(),
        }
    }

    /// Forgets the resume point (keeping the records until the next Snapshot replaces them), so
    /// the next watch asks for a full Snapshot.
    pub fn reset_resume_point(&mut self) {
        self.epoch.clear();
        self.revision = 0;
    }

    /// Applies one watch message. On `Err` the replica is unchanged and the caller should
    /// [`reset_resume_point`](Self::reset_resume_point) and reconnect.
    pub fn apply(&mut self, msg: &pb::WatchResponse) -> Result<Applied, ProtocolError> {
        use pb::watch_response::Kind;
        match &msg.kind {
            Some(Kind::Snapshot(s)) => {
                let resync = self.snapshots > 0;
                self.snapshots += 1;
                let (records, skipped) = Records::from_snapshot(s);
                self.records = Arc::new(records);
                self.epoch = msg.epoch.clone();
                self.revision = msg.revision;
                Ok(Applied::Snapshot { resync, skipped })
            }
            Some(Kind::Delta(d)) => {
                self.check_epoch("delta", &msg.epoch)?;
                if msg.revision <= self.revision {
                    return Ok(Applied::Stale);
                }
                let mut skipped = Vec::new();
                for change in &d.changes {
                    match Change::from_pb(change) {
                        Ok(Some(c)) => Arc::make_mut(&mut self.records).apply(&c),
                        // An empty change (or a kind from a newer protocol): nothing to do.
                        Ok(None) => {}
                        Err(e) => skipped.push(e),
                    }
                }
                self.revision = msg.revision;
                Ok(Applied::Delta {
                    changes: d.changes.len(),
                    skipped,
                })
            }
            Some(Kind::Heartbeat(_)) => {
                self.check_epoch("heartbeat", &msg.epoch)?;
                if msg.revision <= self.revision {
                    return Ok(Applied::Stale);
                }
                self.revision = msg.revision;
                Ok(Applied::Heartbeat)
            }
            None => Err(ProtocolError::UnknownKind(msg.revision)),
        }
    }

    fn check_epoch(&self, kind: &'static str, epoch: &str) -> Result<(), ProtocolError> {
        if self.epoch.is_empty() || self.epoch != epoch {
            return Err(ProtocolError::EpochMismatch {
                kind,
                got: epoch.to_string(),
                held: self.epoch.clone(),
            });
        }
        Ok(())
    }
}
