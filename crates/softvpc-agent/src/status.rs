//! What the agent publishes about itself: the current mapping view and local ports (for
//! `/mappings` and the gauges of `/metrics`), swapped in whole after each watch message.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use softvpc_engine::PortId;
use softvpc_mapping::Records;

use crate::datapath::{Commander, Shared};
use crate::reconcile::{EniSpec, Skip};
use crate::underlay::SocketDrops;

/// A local ENI's port (one interface of a local instance), as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPort {
    /// The engine's port for the TAP.
    pub port: PortId,
    /// The TAP's name in the agent's namespace before it became `eth<device index>`.
    pub tap: String,
    /// The instance's namespace holding the TAP.
    pub netns: String,
    /// The ENI the TAP serves.
    pub spec: EniSpec,
}

/// What the agent shows about itself (`/mappings`, `/metrics`): one consistent picture of its
/// replica's records and its local plumbing, swapped in whole.
#[derive(Debug, Clone, Default)]
pub struct AgentStatus {
    /// Empty until registered.
    pub host_id: String,
    /// The server's epoch of the mapping log this agent follows.
    pub epoch: String,
    /// The last revision applied.
    pub revision: u64,
    /// The records as of the last change (shared, not copied, between statuses that differ
    /// only in revision).
    pub records: Arc<Records>,
    /// Local ports by ENI id.
    pub ports: BTreeMap<String, LocalPort>,
    /// Instance namespaces this agent holds (instance id -> namespace), with or without ports.
    pub instances: BTreeMap<String, String>,
    /// ENIs placed on this host that get no interface, and why (as of the last reconcile).
    pub skipped: Vec<Skip>,
}

/// How many [`LocalChange`]s `/mappings` shows (the latest).
pub const LOCAL_CHANGES_KEPT: usize = 64;

/// A table that took local ENIs out of (or into) this host's data path: from `at_unix_ns` on,
/// when the data path began using it (after the kernel fast path let go of every flow of the
/// table before), no packet is delivered to a removed ENI's interface here. Shown in
/// `/mappings` (`local_changes`) so a test can tell when the old host of a moved ENI let go of
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalChange {
    /// The mapping revision of the records the table was built from.
    pub revision: u64,
    /// The table's generation (what the data path reports using).
    pub generation: u64,
    /// When the data path began using it, or a later table (Unix time, nanoseconds); 0 while
    /// it has not yet.
    pub at_unix_ns: u64,
    /// ENIs the table delivers to locally and the one before did not.
    pub added: Vec<String>,
    /// ENIs the table before delivered to locally and this one does not.
    pub removed: Vec<String>,
}

/// How many published tables not yet in use [`TableLog`] remembers (the data path takes the
/// latest in at its next wake-up, so a handful at most are ever pending).
pub const TABLES_PENDING_KEPT: usize = 64;

/// The mapping revision behind each table the control plane handed to the data path, and the
/// table the data path uses now. Shown in `/mappings` (`table`) and `/metrics`
/// (`softvpc_table_revision`) so a test can tell when this host applied a policy change: from
/// `in_use` on, every packet is decided with it, and the kernel fast path holds no flow of an
/// older table (the data path flushes them before it takes a new table in).
#[derive(Debug, Default)]
pub struct TableLog {
    /// (generation, revision) of tables handed over and not yet in use, oldest first.
    pending: std::collections::VecDeque<(u64, u64)>,
    /// The table the data path uses.
    pub in_use: Option<TableInUse>,
}

/// The table the data path uses: built from the records at `revision`, in use since
/// `at_unix_ns` (Unix time, nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableInUse {
    /// The mapping revision of the records the table was built from.
    pub revision: u64,
    /// The table's generation.
    pub generation: u64,
    /// When the data path began using it.
    pub at_unix_ns: u64,
}

impl TableLog {
    /// The control plane hands over the table of `generation`, built at `revision`.
    pub fn published(&mut self, generation: u64, revision: u64) {
        if self.pending.len() >= TABLES_PENDING_KEPT {
            self.pending.pop_front();
        }
        self.pending.push_back((generation, revision));
    }

    /// The data path took the table of `generation` in at `at_unix_ns`. Tables handed over
    /// before it and skipped (a newer one was stored before the data path woke) are forgotten;
    /// a generation never published (the empty table) changes nothing.
    pub fn in_use(&mut self, generation: u64, at_unix_ns: u64) {
        let Some(&(_, revision)) = self.pending.iter().find(|(g, _)| *g == generation) else {
            return;
        };
        self.pending.retain(|(g, _)| *g > generation);
        self.in_use = Some(TableInUse {
            revision,
            generation,
            at_unix_ns,
        });
    }
}

/// Shared by the control loop (writer), the metrics endpoint (reader) and the data path.
#[derive(Debug)]
pub struct AgentState {
    /// This host's name (its certificate's).
    pub host_name: String,
    /// This host's underlay address.
    pub underlay_ip: Ipv4Addr,
    /// The availability zone the host registers in.
    pub availability_zone: String,
    /// The picture shown by `/mappings` and `/metrics`, swapped in whole.
    pub status: ArcSwap<AgentStatus>,
    /// Snapshots received after the first (the server could not resume the agent's watch).
    pub resyncs: AtomicU64,
    /// Watches reopened from a resume point that the server answered with what was missed
    /// (Deltas or a Heartbeat), not a full Snapshot.
    pub resumes: AtomicU64,
    /// Interfaces taken over from an earlier run of the agent (persistent TAPs attached again).
    pub adopted: AtomicU64,
    /// Instances that could not be created or deleted.
    pub instance_errors: AtomicU64,
    /// Whether a watch stream is open right now.
    pub watching: AtomicBool,
    /// Whether the view is the one saved on disk by an earlier run, not yet confirmed by a
    /// server (see `checkpoint`).
    pub stale: AtomicBool,
    /// The data path's shared counters and table.
    pub datapath: Arc<Shared>,
    /// The channel to the data path's thread.
    pub commander: Commander,
    /// From a watch message that changed the records to the table built from them being live.
    pub table_lag: Timing,
    /// How long carrying out a reconcile's steps (local plumbing) took, when there were any.
    pub plumbing: Timing,
    /// The VXLAN socket's kernel drop counter (receive buffer full).
    pub underlay_drops: SocketDrops,
    /// Flow log records shipped, refused and lost.
    pub flow_logs: Arc<crate::flowlog::FlowLogCounters>,
}

/// Durations of one kind of event: how many, their sum and the longest (for `/metrics`).
#[derive(Debug, Default)]
pub struct Timing {
    count: AtomicU64,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Timing {
    /// Counts one event that took `d`.
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// (count, sum, max).
    pub fn read(&self) -> (u64, Duration, Duration) {
        (
            self.count.load(Ordering::Relaxed),
            Duration::from_nanos(self.sum_ns.load(Ordering::Relaxed)),
            Duration::from_nanos(self.max_ns.load(Ordering::Relaxed)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_in_use_reports_the_revision_it_was_built_at() {
        let mut log = TableLog::default();
        log.in_use(0, 5); // the empty default table: never published
        assert_eq!(log.in_use, None);
        log.published(7, 100);
        assert_eq!(log.in_use, None, "handed over, not yet in use");
        log.in_use(7, 1_000);
        let first = TableInUse {
            revision: 100,
            generation: 7,
            at_unix_ns: 1_000,
        };
        assert_eq!(log.in_use, Some(first));
        // Two tables stored before the data path woke: it takes the latest, the other is
        // skipped and forgotten.
        log.published(8, 101);
        log.published(9, 103);
        log.in_use(9, 2_000);
        assert_eq!(
            log.in_use.map(|t| (t.revision, t.generation)),
            Some((103, 9))
        );
        assert!(log.pending.is_empty());
        // A generation it never saw (older than what it forgot) changes nothing.
        log.in_use(8, 3_000);
        assert_eq!(log.in_use.map(|t| t.at_unix_ns), Some(2_000));
        // Bounded while the data path does not run.
        for g in 10..10 + 2 * TABLES_PENDING_KEPT as u64 {
            log.published(g, g);
        }
        assert_eq!(log.pending.len(), TABLES_PENDING_KEPT);
    }
}
