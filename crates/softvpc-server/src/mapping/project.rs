//! The mapping records of the resource model, derived mechanically: [`derive`] diffs the
//! persistent maps of the state before and after a mutation and turns every difference of a
//! wire record (host, VPC, subnet, ENI) into a change. No write path records changes by hand,
//! so none can forget one.
//!
//! An ENI's record reads more than the ENI (its VPC's VNI, its instance's state and Name tag,
//! its host's underlay address, the Elastic IPs associated with it), so a changed instance,
//! host, VNI or Elastic IP makes the records of the ENIs that depend on it candidates too; a candidate becomes a change only if its record
//! differs. Diffing skips the subtrees both states share, so it costs O(changes · log n).

use std::collections::{BTreeMap, BTreeSet};

use imbl::ordmap::DiffItem;
use softvpc_proto::pb;

use super::log::Change;
use super::view::{pb_eni, pb_host, pb_subnet, pb_vpc};
use crate::model::State;

/// The mapping changes that take the wire records of `before` to those of `after`, in the
/// order an agent applies them: upserts of hosts, VPCs, subnets, ENIs, then deletes of ENIs,
/// subnets, VPCs and hosts.
pub fn derive(before: &State, after: &State) -> Vec<Change> {
    use pb::change::Kind;
    let mut upserts: Vec<(Option<String>, Kind)> = Vec::new();
    let mut deletes: Vec<(Option<String>, Kind)> = Vec::new();
    let mut host_deletes = Vec::new();
    let mut vpc_deletes = Vec::new();
    let mut subnet_deletes = Vec::new();

    // ENIs whose record may have changed.
    let mut enis: BTreeSet<String> = BTreeSet::new();
    // Hosts and VPCs whose change reaches every ENI on / in them.
    let mut hosts_moved: BTreeSet<&str> = BTreeSet::new();
    let mut vnis_changed: BTreeSet<&str> = BTreeSet::new();

    for d in before.hosts.diff(&after.hosts) {
        match d {
            DiffItem::Add(_, h) => upserts.push((None, Kind::UpsertHost(pb_host(h)))),
            DiffItem::Update { old, new } => {
                let rec = pb_host(new.1);
                if pb_host(old.1) != rec {
                    upserts.push((None, Kind::UpsertHost(rec)));
                }
                if old.1.underlay_ip != new.1.underlay_ip {
                    hosts_moved.insert(new.0);
                }
            }
            DiffItem::Remove(id, _) => {
                host_deletes.push((None, Kind::DeleteHostId(id.clone())));
                hosts_moved.insert(id);
            }
        }
    }
    for d in before.vpcs.diff(&after.vpcs) {
        match d {
            DiffItem::Add(id, v) => upserts.push((Some(id.clone()), Kind::UpsertVpc(pb_vpc(v)))),
            DiffItem::Update { old, new } => {
                let rec = pb_vpc(new.1);
                if pb_vpc(old.1) != rec {
                    upserts.push((Some(new.0.clone()), Kind::UpsertVpc(rec)));
                }
                if old.1.vni != new.1.vni {
                    vnis_changed.insert(new.0);
                }
            }
            DiffItem::Remove(id, _) => {
                vpc_deletes.push((Some(id.clone()), Kind::DeleteVpcId(id.clone())));
            }
        }
    }
    for d in before.subnets.diff(&after.subnets) {
        match d {
            DiffItem::Add(_, s) => {
                upserts.push((Some(s.vpc_id.clone()), Kind::UpsertSubnet(pb_subnet(s))))
            }
            DiffItem::Update { old, new } => {
                let rec = pb_subnet(new.1);
                if pb_subnet(old.1) != rec {
                    upserts.push((Some(new.1.vpc_id.clone()), Kind::UpsertSubnet(rec)));
                }
            }
            DiffItem::Remove(id, s) => {
                subnet_deletes.push((Some(s.vpc_id.clone()), Kind::DeleteSubnetId(id.clone())));
            }
        }
    }

    for d in before.enis.diff(&after.enis) {
        let id = match d {
            DiffItem::Add(id, _) | DiffItem::Remove(id, _) => id,
            DiffItem::Update { new, .. } => new.0,
        };
        enis.insert(id.clone());
    }
    for d in before.instances.diff(&after.instances) {
        let id = match d {
            DiffItem::Add(id, _) | DiffItem::Remove(id, _) => id,
            DiffItem::Update { new, .. } => new.0,
        };
        for state in [before, after] {
            if let Some(ids) = state.index.enis_by_instance.get(id) {
                enis.extend(ids.iter().cloned());
            }
        }
    }
    for d in before.addresses.diff(&after.addresses) {
        let (old, new) = match d {
            DiffItem::Add(_, a) => (None, Some(a)),
            DiffItem::Remove(_, a) => (Some(a), None),
            DiffItem::Update { old, new } => (Some(old.1), Some(new.1)),
        };
        for a in old.into_iter().chain(new) {
            if let Some(assoc) = &a.association {
                enis.insert(assoc.network_interface_id.clone());
            }
        }
    }
    if !hosts_moved.is_empty() || !vnis_changed.is_empty() {
        // Rare (a host re-registers with a new address): a scan is fine.
        for state in [before, after] {
            for e in state.enis.values() {
                let on_moved_host = e
                    .attachment
                    .as_ref()
                    .is_some_and(|a| hosts_moved.contains(a.host_id.as_str()));
                if on_moved_host || vnis_changed.contains(e.vpc_id.as_str()) {
                    enis.insert(e.id.clone());
                }
            }
        }
    }
    for id in &enis {
        let old = before.enis.get(id).map(|e| pb_eni(before, e));
        match after.enis.get(id) {
            Some(e) => {
                let rec = pb_eni(after, e);
                if old.as_ref() != Some(&rec) {
                    upserts.push((Some(e.vpc_id.clone()), Kind::UpsertEni(rec)));
                }
            }
            None => {
                if let Some(old) = old {
                    deletes.push((Some(old.vpc_id), Kind::DeleteEniId(id.clone())));
                }
            }
        }
    }

    deletes.extend(subnet_deletes);
    deletes.extend(vpc_deletes);
    deletes.extend(host_deletes);
    upserts
        .into_iter()
        .chain(deletes)
        .map(|(vpc, kind)| (vpc, pb::Change { kind: Some(kind) }))
        .collect()
}

/// Every wire record of a state, by id: what an agent that needed everything would hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    pub hosts: BTreeMap<String, pb::Host>,
    pub vpcs: BTreeMap<String, pb::Vpc>,
    pub subnets: BTreeMap<String, pb::Subnet>,
    pub enis: BTreeMap<String, pb::Eni>,
}

impl Records {
    /// The records of `state`, computed from scratch.
    pub fn of(state: &State) -> Self {
        Records {
            hosts: state
                .hosts
                .iter()
                .map(|(id, h)| (id.clone(), pb_host(h)))
                .collect(),
            vpcs: state
                .vpcs
                .iter()
                .map(|(id, v)| (id.clone(), pb_vpc(v)))
                .collect(),
            subnets: state
                .subnets
                .iter()
                .map(|(id, s)| (id.clone(), pb_subnet(s)))
                .collect(),
            enis: state
                .enis
                .iter()
                .map(|(id, e)| (id.clone(), pb_eni(state, e)))
                .collect(),
        }
    }

    /// Applies changes as the protocol defines them (deleting a VPC drops its subnets and ENIs).
    pub fn apply(&mut self, changes: &[Change]) {
        use pb::change::Kind;
        for (_, c) in changes {
            match c.kind.clone() {
                Some(Kind::UpsertHost(h)) => {
                    self.hosts.insert(h.host_id.clone(), h);
                }
                Some(Kind::DeleteHostId(id)) => {
                    self.hosts.remove(&id);
                }
                Some(Kind::UpsertVpc(v)) => {
                    self.vpcs.insert(v.vpc_id.clone(), v);
                }
                Some(Kind::DeleteVpcId(id)) => {
                    self.vpcs.remove(&id);
                    self.subnets.retain(|_, s| s.vpc_id != id);
                    self.enis.retain(|_, e| e.vpc_id != id);
                }
                Some(Kind::UpsertSubnet(s)) => {
                    self.subnets.insert(s.subnet_id.clone(), s);
                }
                Some(Kind::DeleteSubnetId(id)) => {
                    self.subnets.remove(&id);
                }
                Some(Kind::UpsertEni(e)) => {
                    self.enis.insert(e.eni_id.clone(), e);
                }
                Some(Kind::DeleteEniId(id)) => {
                    self.enis.remove(&id);
                }
                None => {}
            }
        }
    }
}

/// Checks that `changes` take the records of `before` exactly to those of `after` (tests run
/// it after every mutation, see `ControlPlane::mutate`).
#[cfg(test)]
pub fn check(before: &State, after: &State, changes: &[Change]) {
    let mut held = Records::of(before);
    held.apply(changes);
    assert_eq!(
        held,
        Records::of(after),
        "derived mapping changes do not reproduce the new records: {changes:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::address::{
        allocate_address, associate_address, disassociate_address, AssociateRequest,
    };
    use crate::model::instance::{
        run_instances, start_instances, stop_instances, terminate_instances, RunRequest,
    };
    use crate::model::{
        attributes, eni, host, internet_gateway, security_group, subnet, tags, vpc,
    };
    use crate::model::{ApiError, Tags, Txn};

    /// Runs `op` on the current state as one mutation and returns the mapping changes derived
    /// from it, after checking that they reproduce the new records exactly.
    fn step<R>(
        state: &mut State,
        op: impl FnOnce(&mut Txn) -> Result<R, ApiError>,
    ) -> (R, Vec<Change>) {
        let mut txn = Txn::new(state.clone(), 1_000);
        let r = op(&mut txn).expect("operation");
        let changes = derive(state, &txn.state);
        check(state, &txn.state, &changes);
        *state = txn.state;
        (r, changes)
    }

    fn kinds(changes: &[Change]) -> Vec<String> {
        use pb::change::Kind;
        changes
            .iter()
            .map(|(_, c)| match c.kind.as_ref().expect("kind") {
                Kind::UpsertHost(h) => format!("+host {}", h.host_id),
                Kind::DeleteHostId(id) => format!("-host {id}"),
                Kind::UpsertVpc(v) => format!("+vpc {}", v.vpc_id),
                Kind::DeleteVpcId(id) => format!("-vpc {id}"),
                Kind::UpsertSubnet(s) => format!("+subnet {}", s.subnet_id),
                Kind::DeleteSubnetId(id) => format!("-subnet {id}"),
                Kind::UpsertEni(e) => format!("+eni {}", e.eni_id),
                Kind::DeleteEniId(id) => format!("-eni {id}"),
            })
            .collect()
    }

    fn eni_record<'a>(changes: &'a [Change], id: &str) -> &'a pb::Eni {
        changes
            .iter()
            .find_map(|(_, c)| match &c.kind {
                Some(pb::change::Kind::UpsertEni(e)) if e.eni_id == id => Some(e),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no upsert of {id} in {:?}", kinds(changes)))
    }

    /// Every kind of write that changes what an agent sees produces exactly the mapping changes
    /// that reproduce the new records (checked by `step`), and at least one. Writes that do not
    /// reach the wire produce none.
    #[test]
    fn every_wire_change_is_derived() {
        let mut s = State::new();
        let (h1, c) = step(&mut s, |t| host::register_host(t, "host-1", "198.18.0.11"));
        assert_eq!(kinds(&c), [format!("+host {h1}")]);
        let (h2, _) = step(&mut s, |t| host::register_host(t, "host-2", "198.18.0.12"));
        let (v, c) = step(&mut s, |t| {
            vpc::create_vpc(t, "10.0.0.0/16", None, Tags::new())
        });
        assert!(kinds(&c).contains(&format!("+vpc {}", v.id)));
        let (sn, c) = step(&mut s, |t| {
            subnet::create_subnet(t, &v.id, "10.0.0.0/24", None, Tags::new())
        });
        assert_eq!(kinds(&c), [format!("+subnet {}", sn.id)]);
        let (_, c) = step(&mut s, |t| {
            attributes::modify_subnet_attribute(t, &sn.id, Some(true))
        });
        assert!(c.is_empty(), "MapPublicIpOnLaunch is not on the wire");
        let (igw, _) = step(&mut s, |t| {
            internet_gateway::create_internet_gateway(t, Tags::new())
        });
        step(&mut s, |t| {
            internet_gateway::attach_internet_gateway(t, &igw.id, &v.id)
        });

        // Launch: the ENI with its host, instance and automatic public IP.
        let (r, c) = step(&mut s, |t| {
            run_instances(
                t,
                &RunRequest {
                    min_count: 1,
                    max_count: 1,
                    subnet_id: sn.id.clone(),
                    host: Some("host-1".into()),
                    ..Default::default()
                },
            )
        });
        let (inst, primary) = (r.instances[0].id.clone(), r.instances[0].eni_id.clone());
        let rec = eni_record(&c, &primary);
        assert_eq!(rec.host_id, h1);
        assert_eq!(rec.instance_id, inst);
        assert_eq!(rec.public_addresses.len(), 1);
        assert_eq!(rec.security_group_ids.len(), 1, "the VPC's default group");

        // The instance's Name tag is on its ENIs' records.
        let (_, c) = step(&mut s, |t| {
            tags::create_tags(
                t,
                std::slice::from_ref(&inst),
                &[("Name".into(), "vm1".into())],
            )
        });
        assert_eq!(eni_record(&c, &primary).instance_name, "vm1");
        let (_, c) = step(&mut s, |t| {
            tags::create_tags(
                t,
                std::slice::from_ref(&v.id),
                &[("team".into(), "a".into())],
            )
        });
        assert!(c.is_empty(), "a VPC's tags are not on the wire");

        // Secondary addresses, both ways.
        let (_, c) = step(&mut s, |t| {
            eni::assign_private_ips(t, &primary, &["10.0.0.77".into()], None, false)
        });
        assert_eq!(eni_record(&c, &primary).secondary_ips, ["10.0.0.77"]);
        let (_, c) = step(&mut s, |t| {
            eni::unassign_private_ips(t, &primary, &["10.0.0.77".into()])
        });
        assert!(eni_record(&c, &primary).secondary_ips.is_empty());

        // Security group membership.
        let (sg, c) = step(&mut s, |t| {
            security_group::create_security_group(t, "web", "web", Some(&v.id), Tags::new())
        });
        assert!(c.is_empty(), "a group alone is not on the wire");
        let (_, c) = step(&mut s, |t| {
            eni::modify_attribute(t, &primary, eni::Modify::Groups(vec![sg.id.clone()]))
        });
        assert_eq!(
            eni_record(&c, &primary).security_group_ids,
            std::slice::from_ref(&sg.id)
        );
        let (_, c) = step(&mut s, |t| {
            eni::modify_attribute(t, &primary, eni::Modify::Description("x".into()))
        });
        assert!(c.is_empty(), "a description is not on the wire");

        // Elastic IP: replaces the automatic address (released), then the refill brings a new one.
        let (eip, c) = step(&mut s, |t| allocate_address(t, None, Tags::new()));
        assert!(c.is_empty());
        let (assoc, c) = step(&mut s, |t| {
            associate_address(
                t,
                &AssociateRequest {
                    allocation_id: Some(eip.allocation_id.clone()),
                    instance_id: Some(inst.clone()),
                    ..Default::default()
                },
            )
        });
        let rec = eni_record(&c, &primary);
        assert_eq!(rec.public_addresses.len(), 1);
        assert_eq!(rec.public_addresses[0].public_ip, eip.public_ip.to_string());
        let (_, c) = step(&mut s, |t| disassociate_address(t, Some(&assoc), None));
        let rec = eni_record(&c, &primary);
        assert_eq!(rec.public_addresses.len(), 1, "refilled");
        assert_ne!(rec.public_addresses[0].public_ip, eip.public_ip.to_string());

        // A second ENI, attached and detached.
        let (extra, c) = step(&mut s, |t| {
            eni::create_network_interface(
                t,
                &eni::CreateRequest {
                    subnet_id: sn.id.clone(),
                    ..Default::default()
                },
            )
        });
        assert!(eni_record(&c, &extra.id).host_id.is_empty());
        // An Elastic IP on an ENI that had no public address: only the address changes.
        let (eip2, _) = step(&mut s, |t| allocate_address(t, None, Tags::new()));
        let (assoc2, c) = step(&mut s, |t| {
            associate_address(
                t,
                &AssociateRequest {
                    allocation_id: Some(eip2.allocation_id.clone()),
                    network_interface_id: Some(extra.id.clone()),
                    ..Default::default()
                },
            )
        });
        let rec = eni_record(&c, &extra.id);
        assert_eq!(
            rec.public_addresses[0].public_ip,
            eip2.public_ip.to_string()
        );
        let (_, c) = step(&mut s, |t| disassociate_address(t, Some(&assoc2), None));
        assert!(eni_record(&c, &extra.id).public_addresses.is_empty());
        let (att, c) = step(&mut s, |t| {
            eni::attach_network_interface(t, &extra.id, &inst, 1)
        });
        let rec = eni_record(&c, &extra.id);
        assert_eq!((rec.host_id.as_str(), rec.device_index), (h1.as_str(), 1));
        let (_, c) = step(&mut s, |t| eni::detach_network_interface(t, &att));
        assert!(eni_record(&c, &extra.id).host_id.is_empty());

        // Stop: no host, public IP released. Start: both back.
        let (_, c) = step(&mut s, |t| stop_instances(t, std::slice::from_ref(&inst)));
        let rec = eni_record(&c, &primary);
        assert!(rec.host_id.is_empty() && rec.public_addresses.is_empty());
        let (_, c) = step(&mut s, |t| start_instances(t, std::slice::from_ref(&inst)));
        let rec = eni_record(&c, &primary);
        assert_eq!(rec.host_id, h1);
        assert_eq!(rec.public_addresses.len(), 1);

        // The host re-registers with a new underlay address: every ENI on it follows.
        let (_, c) = step(&mut s, |t| host::register_host(t, "host-1", "198.18.0.21"));
        assert!(kinds(&c).contains(&format!("+host {h1}")));
        assert_eq!(eni_record(&c, &primary).host_underlay_ip, "198.18.0.21");
        let (_, c) = step(&mut s, |t| host::register_host(t, "host-2", "198.18.0.12"));
        assert!(c.is_empty(), "a registration that changes nothing");
        let _ = h2;

        // Terminate, then delete what is left, down to the VPC.
        let (_, c) = step(&mut s, |t| {
            terminate_instances(t, std::slice::from_ref(&inst))
        });
        assert!(kinds(&c).contains(&format!("-eni {primary}")));
        let (_, c) = step(&mut s, |t| eni::delete_network_interface(t, &extra.id));
        assert_eq!(kinds(&c), [format!("-eni {}", extra.id)]);
        let (_, c) = step(&mut s, |t| subnet::delete_subnet(t, &sn.id));
        assert_eq!(kinds(&c), [format!("-subnet {}", sn.id)]);
        step(&mut s, |t| {
            internet_gateway::detach_internet_gateway(t, &igw.id, &v.id)
        });
        step(&mut s, |t| security_group::delete_security_group(t, &sg.id));
        step(&mut s, |t| {
            crate::model::address::release_address(t, Some(&eip.allocation_id), None)
        });
        let (_, c) = step(&mut s, |t| vpc::delete_vpc(t, &v.id));
        assert_eq!(kinds(&c), [format!("-vpc {}", v.id)]);
    }

    /// A write that bypasses every helper (a bare `Txn::put`) is still seen.
    #[test]
    fn a_bare_put_is_derived() {
        let mut s = State::new();
        step(&mut s, |t| host::register_host(t, "host-1", "198.18.0.11"));
        let (v, _) = step(&mut s, |t| {
            vpc::create_vpc(t, "10.0.0.0/16", None, Tags::new())
        });
        let (sn, _) = step(&mut s, |t| {
            subnet::create_subnet(t, &v.id, "10.0.0.0/24", None, Tags::new())
        });
        let (e, _) = step(&mut s, |t| {
            eni::create_network_interface(
                t,
                &eni::CreateRequest {
                    subnet_id: sn.id.clone(),
                    ..Default::default()
                },
            )
        });
        let (_, c) = step(&mut s, |t| {
            let mut e = (*t.state.enis[&e.id]).clone();
            e.public_ip = Some("203.0.113.9".parse().expect("ip"));
            t.put(e);
            Ok(())
        });
        assert_eq!(
            eni_record(&c, &e.id).public_addresses[0].public_ip,
            "203.0.113.9"
        );
    }
}
