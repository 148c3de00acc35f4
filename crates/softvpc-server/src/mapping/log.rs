//! The revisioned change log. Revisions are persisted (in the same store transaction as the
//! change); the entries themselves are kept in memory, in a ring of the most recent ones. The
//! epoch, chosen at random when the server starts, tells agents whether their revision refers to
//! this log at all.

use std::collections::VecDeque;
use std::sync::Arc;

use softvpc_proto::pb;

/// How many revisions the ring keeps by default.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// One mapping change, with the VPC it belongs to (None for hosts), so a host's stream can
/// filter it.
pub type Change = (Option<String>, pb::Change);

/// The mapping changes of one committed mutation (see [`super::project::derive`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub revision: u64,
    pub changes: Vec<Change>,
}

/// The ring of recent log entries.
#[derive(Debug)]
pub struct MappingLog {
    entries: VecDeque<Arc<LogEntry>>,
    capacity: usize,
    /// The revision of the newest entry (or the persisted revision at start).
    last: u64,
}

impl MappingLog {
    /// An empty log that starts after `revision`.
    pub fn new(revision: u64, capacity: usize) -> Self {
        MappingLog {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
            last: revision,
        }
    }

    /// The newest revision.
    pub fn last_revision(&self) -> u64 {
        self.last
    }

    /// Appends the entry for `revision` (which must be the next one).
    pub fn push(&mut self, entry: LogEntry) {
        debug_assert_eq!(entry.revision, self.last + 1);
        self.last = entry.revision;
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(Arc::new(entry));
    }

    /// The entries after `revision`, or None when some of them are no longer in the ring (or
    /// `revision` is in the future): the reader then needs a Snapshot.
    pub fn since(&self, revision: u64) -> Option<Vec<Arc<LogEntry>>> {
        if revision > self.last {
            return None;
        }
        if revision == self.last {
            return Some(Vec::new());
        }
        let first = self.entries.front()?.revision;
        if revision + 1 < first {
            return None;
        }
        let skip = (revision + 1 - first) as usize;
        Some(self.entries.iter().skip(skip).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(revision: u64) -> LogEntry {
        LogEntry {
            revision,
            changes: Vec::new(),
        }
    }

    #[test]
    fn ring_serves_what_it_holds() {
        let mut log = MappingLog::new(10, 3);
        assert_eq!(log.since(10).unwrap().len(), 0);
        assert!(log.since(11).is_none(), "future revision");
        assert!(log.since(9).is_none(), "before the ring");
        for r in 11..=15 {
            log.push(entry(r));
        }
        // Holds 13, 14, 15.
        assert_eq!(log.last_revision(), 15);
        let revs = |v: Vec<Arc<LogEntry>>| v.iter().map(|e| e.revision).collect::<Vec<_>>();
        assert_eq!(revs(log.since(12).unwrap()), vec![13, 14, 15]);
        assert_eq!(revs(log.since(14).unwrap()), vec![15]);
        assert!(
            log.since(11).is_none(),
            "13 - 1 = 12 is the oldest resumable"
        );
        assert_eq!(log.since(15).unwrap().len(), 0);
    }
}
