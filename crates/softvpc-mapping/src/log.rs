//! The server end's store: the [`Catalog`] of every record and the revisioned ring of recent
//! changes. Revisions are the server's (one per committed mutation, persisted by it); the
//! entries live in memory only, so a new **epoch** (chosen by the server at each start) tells
//! agents whether their revision refers to this log at all.
//!
//! The catalog keeps, beside the records, what the per-host feeds ask on every wake-up: the
//! subnets and ENIs of each VPC, and for each host the VPCs with an ENI placed on it. So
//! a feed's work is proportional to what its host needs, never to every ENI.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use imbl::{OrdMap, OrdSet};
use softvpc_proto::pb;

use crate::record::{Change, EniRecord, HostRecord, Records, SubnetRecord, VpcRecord};

/// How many revisions the ring keeps by default.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// Every record, with the indexes the feeds use. Persistent maps: a copy is O(1), so a feed
/// reads a consistent catalog without holding any lock while it builds its message.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    hosts: OrdMap<String, Arc<HostRecord>>,
    vpcs: OrdMap<String, Arc<VpcRecord>>,
    subnets: OrdMap<String, Arc<SubnetRecord>>,
    enis: OrdMap<String, Arc<EniRecord>>,
    subnets_by_vpc: OrdMap<String, OrdSet<String>>,
    enis_by_vpc: OrdMap<String, OrdSet<String>>,
    /// Host id -> VPC id -> how many of the VPC's ENIs are placed on the host.
    placed: OrdMap<String, OrdMap<String, u32>>,
}

fn unindex(index: &mut OrdMap<String, OrdSet<String>>, key: &str, id: &str) {
    if let Some(set) = index.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            index.remove(key);
        }
    }
}

impl Catalog {
    /// Applies one change (deleting a VPC also deletes its subnets and ENIs).
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::UpsertHost(h) => {
                self.hosts.insert(h.host_id.clone(), Arc::new(h.clone()));
            }
            Change::DeleteHost(id) => {
                self.hosts.remove(id);
            }
            Change::UpsertVpc(v) => {
                self.vpcs.insert(v.vpc_id.clone(), Arc::new(v.clone()));
            }
            Change::DeleteVpc(id) => {
                self.vpcs.remove(id);
                for s in self.subnets_by_vpc.remove(id).unwrap_or_default() {
                    self.subnets.remove(&s);
                }
                for e in self.enis_by_vpc.get(id).cloned().unwrap_or_default() {
                    self.remove_eni(&e);
                }
            }
            Change::UpsertSubnet(s) => {
                if let Some(old) = self
                    .subnets
                    .insert(s.subnet_id.clone(), Arc::new(s.clone()))
                {
                    unindex(&mut self.subnets_by_vpc, &old.vpc_id, &old.subnet_id);
                }
                self.subnets_by_vpc
                    .entry(s.vpc_id.clone())
                    .or_default()
                    .insert(s.subnet_id.clone());
            }
            Change::DeleteSubnet { subnet_id, .. } => {
                if let Some(old) = self.subnets.remove(subnet_id) {
                    unindex(&mut self.subnets_by_vpc, &old.vpc_id, subnet_id);
                }
            }
            Change::UpsertEni(e) => {
                self.remove_eni(&e.eni_id);
                self.enis_by_vpc
                    .entry(e.vpc_id.clone())
                    .or_default()
                    .insert(e.eni_id.clone());
                if !e.host_id.is_empty() {
                    *self
                        .placed
                        .entry(e.host_id.clone())
                        .or_default()
                        .entry(e.vpc_id.clone())
                        .or_default() += 1;
                }
                self.enis.insert(e.eni_id.clone(), Arc::new(e.clone()));
            }
            Change::DeleteEni { eni_id, .. } => self.remove_eni(eni_id),
        }
    }

    fn remove_eni(&mut self, id: &str) {
        let Some(old) = self.enis.remove(id) else {
            return;
        };
        unindex(&mut self.enis_by_vpc, &old.vpc_id, id);
        if old.host_id.is_empty() {
            return;
        }
        if let Some(vpcs) = self.placed.get_mut(&old.host_id) {
            if let Some(n) = vpcs.get_mut(&old.vpc_id) {
                *n -= 1;
                if *n == 0 {
                    vpcs.remove(&old.vpc_id);
                }
            }
            if vpcs.is_empty() {
                self.placed.remove(&old.host_id);
            }
        }
    }

    /// The VPCs host `host_id` needs: those with at least one ENI placed on it.
    pub fn needed_vpcs(&self, host_id: &str) -> BTreeSet<String> {
        self.placed
            .get(host_id)
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Everything host `host_id` needs, and the set of VPCs in it.
    pub fn snapshot(&self, host_id: &str) -> (pb::Snapshot, BTreeSet<String>) {
        let needed = self.needed_vpcs(host_id);
        let mut snap = pb::Snapshot {
            hosts: self.hosts.values().map(|h| h.to_pb()).collect(),
            ..Default::default()
        };
        for id in &needed {
            if let Some(v) = self.vpcs.get(id) {
                snap.vpcs.push(v.to_pb());
            }
            snap.subnets.extend(self.subnets_of(id).map(|s| s.to_pb()));
            snap.enis.extend(self.enis_of(id).map(|e| e.to_pb()));
        }
        (snap, needed)
    }

    /// The whole of VPC `vpc_id` as upserts: the VPC, its subnets, its ENIs.
    pub fn whole_vpc(&self, vpc_id: &str) -> Vec<pb::Change> {
        let Some(v) = self.vpcs.get(vpc_id) else {
            return Vec::new();
        };
        std::iter::once(Change::UpsertVpc((**v).clone()))
            .chain(
                self.subnets_of(vpc_id)
                    .map(|s| Change::UpsertSubnet(s.clone())),
            )
            .chain(self.enis_of(vpc_id).map(|e| Change::UpsertEni(e.clone())))
            .map(|c| c.to_pb())
            .collect()
    }

    fn subnets_of<'a>(&'a self, vpc_id: &str) -> impl Iterator<Item = &'a SubnetRecord> + 'a {
        self.subnets_by_vpc
            .get(vpc_id)
            .into_iter()
            .flat_map(|ids| ids.iter())
            .filter_map(|id| self.subnets.get(id).map(|s| &**s))
    }

    fn enis_of<'a>(&'a self, vpc_id: &str) -> impl Iterator<Item = &'a EniRecord> + 'a {
        self.enis_by_vpc
            .get(vpc_id)
            .into_iter()
            .flat_map(|ids| ids.iter())
            .filter_map(|id| self.enis.get(id).map(|e| &**e))
    }

    /// Every record, as a plain set (for tests and diagnostics).
    pub fn records(&self) -> Records {
        Records {
            hosts: self
                .hosts
                .iter()
                .map(|(k, v)| (k.clone(), (**v).clone()))
                .collect(),
            vpcs: self
                .vpcs
                .iter()
                .map(|(k, v)| (k.clone(), (**v).clone()))
                .collect(),
            subnets: self
                .subnets
                .iter()
                .map(|(k, v)| (k.clone(), (**v).clone()))
                .collect(),
            enis: self
                .enis
                .iter()
                .map(|(k, v)| (k.clone(), (**v).clone()))
                .collect(),
        }
    }

    /// Whether host `host_id` is known.
    pub fn has_host(&self, host_id: &str) -> bool {
        self.hosts.contains_key(host_id)
    }
}

/// The changes of one committed mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The revision the mutation produced.
    pub revision: u64,
    /// Its changes, in the order an agent applies them.
    pub changes: Vec<Change>,
}

/// The catalog and the ring of recent entries, under one epoch.
#[derive(Debug)]
pub struct MappingLog {
    epoch: Arc<str>,
    catalog: Catalog,
    entries: VecDeque<Arc<LogEntry>>,
    capacity: usize,
    /// The revision of the newest entry (or the revision the log started at).
    last: u64,
}

/// What a feed reads from the log at one moment: the catalog and the entries after some
/// revision, consistent with each other.
#[derive(Debug, Clone)]
pub struct LogRead {
    /// The log's epoch.
    pub epoch: Arc<str>,
    /// The newest revision (that of the catalog).
    pub revision: u64,
    /// Every record as of `revision`.
    pub catalog: Catalog,
    /// The entries after the revision asked for, or None when the ring no longer holds them
    /// all (or the revision is in the future): the reader then needs a Snapshot.
    pub entries: Option<Vec<Arc<LogEntry>>>,
}

impl MappingLog {
    /// A log at `revision` whose catalog holds `records` (upserts), keeping `capacity`
    /// entries. Nothing before `revision` can be replayed.
    pub fn new(
        epoch: impl Into<Arc<str>>,
        revision: u64,
        capacity: usize,
        records: impl IntoIterator<Item = Change>,
    ) -> Self {
        let mut catalog = Catalog::default();
        for c in records {
            catalog.apply(&c);
        }
        MappingLog {
            epoch: epoch.into(),
            catalog,
            entries: VecDeque::new(),
            capacity: capacity.max(1),
            last: revision,
        }
    }

    /// The log's epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The newest revision.
    pub fn revision(&self) -> u64 {
        self.last
    }

    /// Every record as of the newest revision.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Appends the changes of `revision` (the next one; an entry without changes still
    /// advances the revision) and applies them to the catalog.
    pub fn commit(&mut self, revision: u64, changes: Vec<Change>) {
        debug_assert!(revision > self.last, "revisions only grow");
        for c in &changes {
            self.catalog.apply(c);
        }
        self.last = revision;
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries
            .push_back(Arc::new(LogEntry { revision, changes }));
    }

    /// The catalog and the entries after `revision`.
    pub fn read(&self, revision: u64) -> LogRead {
        LogRead {
            epoch: self.epoch.clone(),
            revision: self.last,
            catalog: self.catalog.clone(),
            entries: self.since(revision),
        }
    }

    fn since(&self, revision: u64) -> Option<Vec<Arc<LogEntry>>> {
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
        Some(
            self.entries
                .iter()
                .skip_while(|e| e.revision <= revision)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_serves_what_it_holds() {
        let mut log = MappingLog::new("e", 10, 3, []);
        assert_eq!(log.read(10).entries.expect("held").len(), 0);
        assert!(log.read(11).entries.is_none(), "future revision");
        assert!(log.read(9).entries.is_none(), "before the ring");
        for r in 11..=15 {
            log.commit(r, Vec::new());
        }
        // Holds 13, 14, 15.
        assert_eq!(log.revision(), 15);
        let revs = |r: LogRead| {
            r.entries
                .expect("held")
                .iter()
                .map(|e| e.revision)
                .collect::<Vec<_>>()
        };
        assert_eq!(revs(log.read(12)), vec![13, 14, 15]);
        assert_eq!(revs(log.read(14)), vec![15]);
        assert!(log.read(11).entries.is_none(), "12 is the oldest resumable");
        assert_eq!(revs(log.read(15)), Vec::<u64>::new());
    }
}
