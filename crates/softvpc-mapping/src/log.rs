//! The server end's store: the [`Catalog`] of every record and the revisioned ring of recent
//! changes. Revisions are the server's (one per committed mutation, persisted by it); the
//! **epoch** (kept by the server's store, so the same across restarts and replicas) tells
//! agents whether their revision refers to this log at all. The entries live in memory only: a
//! restarted server's ring starts empty at its store's revision, so an agent at exactly that
//! revision resumes and one behind it gets a snapshot.
//!
//! The catalog keeps, beside the records, what the per-host feeds ask on every wake-up: the
//! records of each VPC, for each host the VPCs and the security groups of the ENIs placed on
//! it, and for each VPC its actively peered VPCs. So a feed's work is proportional to what its
//! host needs, never to every ENI.
//!
//! It also keeps the reverse: for each VPC and each security group, the hosts with ENIs placed
//! in it. [`MappingLog::commit`] uses them to say which hosts a revision concerns
//! ([`Concerned`]), so the server wakes only their watches: the fan-out of a change costs what
//! the change and the hosts it concerns cost, not the fleet.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use imbl::{OrdMap, OrdSet};
use softvpc_proto::pb;

use crate::policy::{
    NetworkAclRecord, PeeringRecord, PrefixListRecord, RouteTableRecord, SecurityGroupRecord,
};
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
    groups: OrdMap<String, Arc<SecurityGroupRecord>>,
    acls: OrdMap<String, Arc<NetworkAclRecord>>,
    tables: OrdMap<String, Arc<RouteTableRecord>>,
    peerings: OrdMap<String, Arc<PeeringRecord>>,
    prefix_lists: OrdMap<String, Arc<PrefixListRecord>>,
    subnets_by_vpc: OrdMap<String, OrdSet<String>>,
    enis_by_vpc: OrdMap<String, OrdSet<String>>,
    groups_by_vpc: OrdMap<String, OrdSet<String>>,
    acls_by_vpc: OrdMap<String, OrdSet<String>>,
    tables_by_vpc: OrdMap<String, OrdSet<String>>,
    /// VPC id -> the peering connections with it on one side.
    peerings_by_vpc: OrdMap<String, OrdSet<String>>,
    /// VPC id -> VPC id -> how many active peering connections join them.
    peers: OrdMap<String, OrdMap<String, u32>>,
    /// Host id -> VPC id -> how many of the VPC's ENIs are placed on the host.
    placed: OrdMap<String, OrdMap<String, u32>>,
    /// Host id -> group id -> how many ENIs placed on the host are in the group.
    placed_groups: OrdMap<String, OrdMap<String, u32>>,
    /// The reverse of `placed`: VPC id -> host id -> count.
    hosts_by_vpc: OrdMap<String, OrdMap<String, u32>>,
    /// The reverse of `placed_groups`: group id -> host id -> count.
    hosts_by_group: OrdMap<String, OrdMap<String, u32>>,
}

/// The hosts whose view a committed revision may have changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Concerned {
    /// Every host (a host record or a prefix list changed: every host holds them).
    All,
    /// These hosts only (possibly none).
    Hosts(BTreeSet<String>),
}

impl Concerned {
    /// Whether host `host_id` is concerned.
    pub fn contains(&self, host_id: &str) -> bool {
        match self {
            Concerned::All => true,
            Concerned::Hosts(h) => h.contains(host_id),
        }
    }

    /// Adds what `other` concerns.
    pub fn extend(&mut self, other: Concerned) {
        match (&mut *self, other) {
            (Concerned::All, _) => {}
            (_, Concerned::All) => *self = Concerned::All,
            (Concerned::Hosts(a), Concerned::Hosts(b)) => a.extend(b),
        }
    }
}

/// What one host needs besides every host record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Needed {
    /// The VPCs with an ENI placed on the host, and those an active peering joins to them.
    pub vpcs: BTreeSet<String>,
    /// The security groups of the ENIs placed on the host.
    pub groups: BTreeSet<String>,
}

/// The maps [`Catalog::needed`] reads, kept by a feed (a reference count each) so that it can
/// tell its host's needs are unchanged without computing them again: most revisions (an ENI
/// created or deleted without a placement, a rule changed) touch none of these maps. While a
/// copy holds a map's root, any change to the catalog's map copies that root, so the same root
/// means the same map.
#[derive(Debug, Clone)]
pub struct NeededInputs {
    placed: OrdMap<String, OrdMap<String, u32>>,
    peers: OrdMap<String, OrdMap<String, u32>>,
    vpcs: OrdMap<String, Arc<VpcRecord>>,
    placed_groups: OrdMap<String, OrdMap<String, u32>>,
    groups: OrdMap<String, Arc<SecurityGroupRecord>>,
}

impl NeededInputs {
    /// Whether `catalog` has these very maps: then [`Catalog::needed`] answers as it did for
    /// every host.
    pub fn unchanged(&self, catalog: &Catalog) -> bool {
        self.placed.ptr_eq(&catalog.placed)
            && self.peers.ptr_eq(&catalog.peers)
            && self.vpcs.ptr_eq(&catalog.vpcs)
            && self.placed_groups.ptr_eq(&catalog.placed_groups)
            && self.groups.ptr_eq(&catalog.groups)
    }
}

fn index(index: &mut OrdMap<String, OrdSet<String>>, key: &str, id: &str) {
    index
        .entry(key.to_string())
        .or_default()
        .insert(id.to_string());
}

fn count(counts: &mut OrdMap<String, OrdMap<String, u32>>, a: &str, b: &str, up: bool) {
    if up {
        *counts
            .entry(a.to_string())
            .or_default()
            .entry(b.to_string())
            .or_default() += 1;
        return;
    }
    if let Some(inner) = counts.get_mut(a) {
        if let Some(n) = inner.get_mut(b) {
            *n -= 1;
            if *n == 0 {
                inner.remove(b);
            }
        }
        if inner.is_empty() {
            counts.remove(a);
        }
    }
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
                for a in self.acls_by_vpc.remove(id).unwrap_or_default() {
                    self.acls.remove(&a);
                }
                for t in self.tables_by_vpc.remove(id).unwrap_or_default() {
                    self.tables.remove(&t);
                }
                for g in self.groups_by_vpc.remove(id).unwrap_or_default() {
                    self.groups.remove(&g);
                }
                // The catalog holds every VPC's peerings; a VPC's deletion leaves them to their
                // own changes (the server sends them).
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
                    count(&mut self.placed, &e.host_id, &e.vpc_id, true);
                    count(&mut self.hosts_by_vpc, &e.vpc_id, &e.host_id, true);
                    for g in &e.security_group_ids {
                        count(&mut self.placed_groups, &e.host_id, g, true);
                        count(&mut self.hosts_by_group, g, &e.host_id, true);
                    }
                }
                self.enis.insert(e.eni_id.clone(), Arc::new(e.clone()));
            }
            Change::DeleteEni { eni_id, .. } => self.remove_eni(eni_id),
            Change::UpsertSecurityGroup(g) => {
                self.remove_group(&g.group_id);
                index(&mut self.groups_by_vpc, &g.vpc_id, &g.group_id);
                self.groups.insert(g.group_id.clone(), Arc::new(g.clone()));
            }
            Change::DeleteSecurityGroup(id) => self.remove_group(id),
            Change::UpsertNetworkAcl(a) => {
                if let Some(old) = self.acls.insert(a.acl_id.clone(), Arc::new(a.clone())) {
                    unindex(&mut self.acls_by_vpc, &old.vpc_id, &old.acl_id);
                }
                index(&mut self.acls_by_vpc, &a.vpc_id, &a.acl_id);
            }
            Change::DeleteNetworkAcl { acl_id, .. } => {
                if let Some(old) = self.acls.remove(acl_id) {
                    unindex(&mut self.acls_by_vpc, &old.vpc_id, acl_id);
                }
            }
            Change::UpsertRouteTable(t) => {
                if let Some(old) = self.tables.insert(t.table_id.clone(), Arc::new(t.clone())) {
                    unindex(&mut self.tables_by_vpc, &old.vpc_id, &old.table_id);
                }
                index(&mut self.tables_by_vpc, &t.vpc_id, &t.table_id);
            }
            Change::DeleteRouteTable { table_id, .. } => {
                if let Some(old) = self.tables.remove(table_id) {
                    unindex(&mut self.tables_by_vpc, &old.vpc_id, table_id);
                }
            }
            Change::UpsertPeering(p) => {
                self.remove_peering(&p.pcx_id);
                index(&mut self.peerings_by_vpc, &p.requester_vpc_id, &p.pcx_id);
                index(&mut self.peerings_by_vpc, &p.accepter_vpc_id, &p.pcx_id);
                if p.is_active() {
                    count(
                        &mut self.peers,
                        &p.requester_vpc_id,
                        &p.accepter_vpc_id,
                        true,
                    );
                    count(
                        &mut self.peers,
                        &p.accepter_vpc_id,
                        &p.requester_vpc_id,
                        true,
                    );
                }
                self.peerings.insert(p.pcx_id.clone(), Arc::new(p.clone()));
            }
            Change::DeletePeering { pcx_id, .. } => self.remove_peering(pcx_id),
            Change::UpsertPrefixList(p) => {
                self.prefix_lists
                    .insert(p.prefix_list_id.clone(), Arc::new(p.clone()));
            }
            Change::DeletePrefixList(id) => {
                self.prefix_lists.remove(id);
            }
        }
    }

    fn remove_group(&mut self, id: &str) {
        if let Some(old) = self.groups.remove(id) {
            unindex(&mut self.groups_by_vpc, &old.vpc_id, id);
        }
    }

    fn remove_peering(&mut self, id: &str) {
        let Some(old) = self.peerings.remove(id) else {
            return;
        };
        unindex(&mut self.peerings_by_vpc, &old.requester_vpc_id, id);
        unindex(&mut self.peerings_by_vpc, &old.accepter_vpc_id, id);
        if old.is_active() {
            count(
                &mut self.peers,
                &old.requester_vpc_id,
                &old.accepter_vpc_id,
                false,
            );
            count(
                &mut self.peers,
                &old.accepter_vpc_id,
                &old.requester_vpc_id,
                false,
            );
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
        count(&mut self.placed, &old.host_id, &old.vpc_id, false);
        count(&mut self.hosts_by_vpc, &old.vpc_id, &old.host_id, false);
        for g in &old.security_group_ids {
            count(&mut self.placed_groups, &old.host_id, g, false);
            count(&mut self.hosts_by_group, g, &old.host_id, false);
        }
    }

    /// Adds to `hosts` every host that needs VPC `vpc_id`: those with an ENI placed in it and
    /// those with an ENI placed in a VPC actively peered with it.
    fn hosts_needing_vpc(&self, vpc_id: &str, hosts: &mut BTreeSet<String>) {
        let peers = self.peers.get(vpc_id).into_iter().flat_map(|p| p.keys());
        for v in std::iter::once(vpc_id).chain(peers.map(|p| p.as_str())) {
            hosts.extend(
                self.hosts_by_vpc
                    .get(v)
                    .into_iter()
                    .flat_map(|h| h.keys())
                    .cloned(),
            );
        }
    }

    /// The hosts `change` concerns as the catalog stands (call it before and after applying
    /// the change: a host that stops or starts needing something is concerned too).
    pub fn concerned_by(&self, change: &Change) -> Concerned {
        use crate::record::Scope;
        let mut hosts = BTreeSet::new();
        match change.scope() {
            Scope::All => return Concerned::All,
            Scope::Vpc(v) => self.hosts_needing_vpc(v, &mut hosts),
            Scope::Vpcs(a, b) => {
                self.hosts_needing_vpc(a, &mut hosts);
                self.hosts_needing_vpc(b, &mut hosts);
            }
            Scope::Group(g) => hosts.extend(
                self.hosts_by_group
                    .get(g)
                    .into_iter()
                    .flat_map(|h| h.keys())
                    .cloned(),
            ),
        }
        Concerned::Hosts(hosts)
    }

    /// The VPCs host `host_id` needs: those with at least one ENI placed on it, and those an
    /// active peering connection joins to one of them (not transitively). Only VPCs that exist.
    pub fn needed_vpcs(&self, host_id: &str) -> BTreeSet<String> {
        let mut needed = BTreeSet::new();
        for v in self.placed.get(host_id).into_iter().flat_map(|m| m.keys()) {
            needed.insert(v.clone());
            needed.extend(
                self.peers
                    .get(v)
                    .into_iter()
                    .flat_map(|p| p.keys())
                    .cloned(),
            );
        }
        needed.retain(|v| self.vpcs.contains_key(v));
        needed
    }

    /// The security groups host `host_id` needs: those of the ENIs placed on it (that exist).
    pub fn needed_groups(&self, host_id: &str) -> BTreeSet<String> {
        self.placed_groups
            .get(host_id)
            .into_iter()
            .flat_map(|m| m.keys())
            .filter(|g| self.groups.contains_key(*g))
            .cloned()
            .collect()
    }

    /// Everything host `host_id` needs besides the hosts.
    pub fn needed(&self, host_id: &str) -> Needed {
        Needed {
            vpcs: self.needed_vpcs(host_id),
            groups: self.needed_groups(host_id),
        }
    }

    /// The maps [`Catalog::needed`] reads, as of now (see [`NeededInputs`]).
    pub fn needed_inputs(&self) -> NeededInputs {
        NeededInputs {
            placed: self.placed.clone(),
            peers: self.peers.clone(),
            vpcs: self.vpcs.clone(),
            placed_groups: self.placed_groups.clone(),
            groups: self.groups.clone(),
        }
    }

    /// Everything host `host_id` needs, and what that is.
    pub fn snapshot(&self, host_id: &str) -> (pb::Snapshot, Needed) {
        let needed = self.needed(host_id);
        (self.snapshot_of(&needed), needed)
    }

    /// Every host record and prefix list, and the whole of what `needed` names.
    pub fn snapshot_of(&self, needed: &Needed) -> pb::Snapshot {
        let mut snap = pb::Snapshot {
            hosts: self.hosts.values().map(|h| h.to_pb()).collect(),
            prefix_lists: self.prefix_lists.values().map(|p| p.to_pb()).collect(),
            ..Default::default()
        };
        let mut peerings = BTreeSet::new();
        for id in &needed.vpcs {
            if let Some(v) = self.vpcs.get(id) {
                snap.vpcs.push(v.to_pb());
            }
            snap.subnets.extend(self.subnets_of(id).map(|s| s.to_pb()));
            snap.enis.extend(self.enis_of(id).map(|e| e.to_pb()));
            snap.network_acls
                .extend(self.acls_of(id).map(|a| a.to_pb()));
            snap.route_tables
                .extend(self.tables_of(id).map(|t| t.to_pb()));
            for p in self.peerings_of(id) {
                if peerings.insert(p.pcx_id.as_str()) {
                    snap.peering_connections.push(p.to_pb());
                }
            }
        }
        for g in &needed.groups {
            if let Some(g) = self.groups.get(g) {
                snap.security_groups.push(g.to_pb());
            }
        }
        snap
    }

    /// The whole of VPC `vpc_id` as upserts: the VPC, its subnets, ENIs, network ACLs, route
    /// tables and peering connections.
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
            .chain(
                self.acls_of(vpc_id)
                    .map(|a| Change::UpsertNetworkAcl(a.clone())),
            )
            .chain(
                self.tables_of(vpc_id)
                    .map(|t| Change::UpsertRouteTable(t.clone())),
            )
            .chain(
                self.peerings_of(vpc_id)
                    .map(|p| Change::UpsertPeering(p.clone())),
            )
            .map(|c| c.to_pb())
            .collect()
    }

    /// Security group `group_id` as an upsert (None if there is no such group).
    pub fn whole_group(&self, group_id: &str) -> Option<pb::Change> {
        self.groups
            .get(group_id)
            .map(|g| Change::UpsertSecurityGroup((**g).clone()).to_pb())
    }

    fn of<'a, T>(
        index: &'a OrdMap<String, OrdSet<String>>,
        records: &'a OrdMap<String, Arc<T>>,
        vpc_id: &str,
    ) -> impl Iterator<Item = &'a T> + 'a {
        index
            .get(vpc_id)
            .into_iter()
            .flat_map(|ids| ids.iter())
            .filter_map(|id| records.get(id).map(|r| &**r))
    }

    fn subnets_of<'a>(&'a self, vpc_id: &str) -> impl Iterator<Item = &'a SubnetRecord> + 'a {
        Self::of(&self.subnets_by_vpc, &self.subnets, vpc_id)
    }

    fn enis_of<'a>(&'a self, vpc_id: &str) -> impl Iterator<Item = &'a EniRecord> + 'a {
        Self::of(&self.enis_by_vpc, &self.enis, vpc_id)
    }

    fn acls_of<'a>(&'a self, vpc_id: &str) -> impl Iterator<Item = &'a NetworkAclRecord> + 'a {
        Self::of(&self.acls_by_vpc, &self.acls, vpc_id)
    }

    fn tables_of<'a>(&'a self, vpc_id: &str) -> impl Iterator<Item = &'a RouteTableRecord> + 'a {
        Self::of(&self.tables_by_vpc, &self.tables, vpc_id)
    }

    fn peerings_of<'a>(&'a self, vpc_id: &str) -> impl Iterator<Item = &'a PeeringRecord> + 'a {
        Self::of(&self.peerings_by_vpc, &self.peerings, vpc_id)
    }

    /// Every record, as a plain set (for tests and diagnostics). O(1): the maps are shared.
    pub fn records(&self) -> Records {
        Records {
            hosts: self.hosts.clone(),
            vpcs: self.vpcs.clone(),
            subnets: self.subnets.clone(),
            enis: self.enis.clone(),
            security_groups: self.groups.clone(),
            network_acls: self.acls.clone(),
            route_tables: self.tables.clone(),
            peerings: self.peerings.clone(),
            prefix_lists: self.prefix_lists.clone(),
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
    /// Shared with the reads taken since the last commit (a read is one reference count; a
    /// commit after reads copies the catalog's map roots first, which is O(1) too).
    catalog: Arc<Catalog>,
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
    pub catalog: Arc<Catalog>,
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
            catalog: Arc::new(catalog),
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
    /// advances the revision) and applies them to the catalog. Returns the hosts whose view
    /// the revision may have changed: every other host's view is the same before and after.
    pub fn commit(&mut self, revision: u64, changes: Vec<Change>) -> Concerned {
        debug_assert!(revision > self.last, "revisions only grow");
        let mut concerned = Concerned::Hosts(BTreeSet::new());
        let catalog = Arc::make_mut(&mut self.catalog);
        for c in &changes {
            concerned.extend(catalog.concerned_by(c));
            catalog.apply(c);
            concerned.extend(catalog.concerned_by(c));
        }
        self.last = revision;
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries
            .push_back(Arc::new(LogEntry { revision, changes }));
        concerned
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
        // The ring's revisions only grow: find the first entry after `revision` by bisection
        // (every woken watch reads the log, under its lock; a scan cost up to the whole ring,
        // 10,000 entries, per read).
        let start = self.entries.partition_point(|e| e.revision <= revision);
        Some(self.entries.range(start..).cloned().collect())
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
