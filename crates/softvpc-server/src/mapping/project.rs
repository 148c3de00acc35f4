//! The mapping records of the resource model, derived mechanically: [`derive`] diffs the
//! persistent maps of the state before and after a mutation and turns every difference of a
//! wire record (host, VPC, subnet, ENI) into a [`Change`]. No write path records changes by
//! hand, so none can forget one.
//!
//! An ENI's record reads more than the ENI (its VPC's VNI, its instance's state and Name tag,
//! its host's underlay address, the Elastic IPs associated with it), so a changed instance,
//! host, VNI or Elastic IP makes the records of the ENIs that depend on it candidates too; a
//! candidate becomes a change only if its record differs. Diffing skips the subtrees both
//! states share, so it costs O(changes · log n).
//!
//! This is the one place that knows both the model and the mapping records; the protocol itself
//! (log, per-host feeds, protobuf) is `softvpc-mapping`'s.

use std::collections::BTreeSet;

use imbl::ordmap::DiffItem;
use softvpc_mapping::{
    Change, EniRecord, HostRecord, PublicAddress, Records, SubnetRecord, VpcRecord,
};

use crate::model::instance::{placed_host, public_address_of};
use crate::model::{Eni, Host, State, Subnet, Vpc};

/// The wire record of a host.
pub fn host_record(h: &Host) -> HostRecord {
    HostRecord {
        host_id: h.id.clone(),
        name: h.name.clone(),
        underlay_ip: h.underlay_ip,
    }
}

/// The wire record of a VPC.
pub fn vpc_record(v: &Vpc) -> VpcRecord {
    VpcRecord {
        vpc_id: v.id.clone(),
        vni: v.vni,
        cidrs: vec![v.cidr.trunc()],
    }
}

/// The wire record of a subnet.
pub fn subnet_record(s: &Subnet) -> SubnetRecord {
    SubnetRecord {
        subnet_id: s.id.clone(),
        vpc_id: s.vpc_id.clone(),
        cidr: s.cidr.trunc(),
    }
}

/// The wire record of an ENI: with its VPC's VNI, its host's underlay address, its instance's
/// Name tag and its public addresses resolved from `state`. An ENI of a stopped instance keeps
/// its instance but has no host: it is on no host's data plane until the instance starts.
pub fn eni_record(state: &State, e: &Eni) -> EniRecord {
    let host = placed_host(state, e);
    let (instance_id, instance_name, device_index) = match &e.attachment {
        Some(a) => (
            a.instance_id.clone(),
            state
                .instances
                .get(&a.instance_id)
                .map(|i| i.name().to_string())
                .unwrap_or_default(),
            a.device_index,
        ),
        None => Default::default(),
    };
    EniRecord {
        eni_id: e.id.clone(),
        vpc_id: e.vpc_id.clone(),
        vni: state.vpcs.get(&e.vpc_id).map(|v| v.vni).unwrap_or(0),
        subnet_id: e.subnet_id.clone(),
        ip: e.private_ip,
        secondary_ips: e.secondary_ips.clone(),
        // The model makes every MAC (`ids::new_mac`), always well formed.
        mac: softvpc_mapping::record::parse_mac(&e.mac).unwrap_or_default(),
        host_id: host.map(str::to_string).unwrap_or_default(),
        host_underlay_ip: host.and_then(|h| state.hosts.get(h)).map(|h| h.underlay_ip),
        instance_id,
        instance_name,
        device_index,
        security_group_ids: e.security_groups.clone(),
        public_addresses: e
            .addresses()
            .filter_map(|ip| {
                public_address_of(state, e, ip).map(|p| PublicAddress {
                    public_ip: p.ip(),
                    private_ip: ip,
                })
            })
            .collect(),
    }
}

/// Every record of `state` as upserts (what the mapping log starts from).
pub fn all_records(state: &State) -> Vec<Change> {
    let hosts = state
        .hosts
        .values()
        .map(|h| Change::UpsertHost(host_record(h)));
    let vpcs = state
        .vpcs
        .values()
        .map(|v| Change::UpsertVpc(vpc_record(v)));
    let subnets = state
        .subnets
        .values()
        .map(|s| Change::UpsertSubnet(subnet_record(s)));
    let enis = state
        .enis
        .values()
        .map(|e| Change::UpsertEni(eni_record(state, e)));
    hosts.chain(vpcs).chain(subnets).chain(enis).collect()
}

/// The records of `state`, computed from scratch.
pub fn records_of(state: &State) -> Records {
    let mut r = Records::default();
    for c in all_records(state) {
        r.apply(&c);
    }
    r
}

/// The mapping changes that take the wire records of `before` to those of `after`, in the
/// order an agent applies them: upserts of hosts, VPCs, subnets, ENIs, then deletes of ENIs,
/// subnets, VPCs and hosts.
pub fn derive(before: &State, after: &State) -> Vec<Change> {
    let mut upserts: Vec<Change> = Vec::new();
    let mut eni_deletes = Vec::new();
    let mut subnet_deletes = Vec::new();
    let mut vpc_deletes = Vec::new();
    let mut host_deletes = Vec::new();

    // ENIs whose record may have changed.
    let mut enis: BTreeSet<String> = BTreeSet::new();
    // Hosts and VPCs whose change reaches every ENI on / in them.
    let mut hosts_moved: BTreeSet<&str> = BTreeSet::new();
    let mut vnis_changed: BTreeSet<&str> = BTreeSet::new();

    for d in before.hosts.diff(&after.hosts) {
        match d {
            DiffItem::Add(_, h) => upserts.push(Change::UpsertHost(host_record(h))),
            DiffItem::Update { old, new } => {
                let rec = host_record(new.1);
                if host_record(old.1) != rec {
                    upserts.push(Change::UpsertHost(rec));
                }
                if old.1.underlay_ip != new.1.underlay_ip {
                    hosts_moved.insert(new.0);
                }
            }
            DiffItem::Remove(id, _) => {
                host_deletes.push(Change::DeleteHost(id.clone()));
                hosts_moved.insert(id);
            }
        }
    }
    for d in before.vpcs.diff(&after.vpcs) {
        match d {
            DiffItem::Add(_, v) => upserts.push(Change::UpsertVpc(vpc_record(v))),
            DiffItem::Update { old, new } => {
                let rec = vpc_record(new.1);
                if vpc_record(old.1) != rec {
                    upserts.push(Change::UpsertVpc(rec));
                }
                if old.1.vni != new.1.vni {
                    vnis_changed.insert(new.0);
                }
            }
            DiffItem::Remove(id, _) => vpc_deletes.push(Change::DeleteVpc(id.clone())),
        }
    }
    for d in before.subnets.diff(&after.subnets) {
        match d {
            DiffItem::Add(_, s) => upserts.push(Change::UpsertSubnet(subnet_record(s))),
            DiffItem::Update { old, new } => {
                let rec = subnet_record(new.1);
                if subnet_record(old.1) != rec {
                    upserts.push(Change::UpsertSubnet(rec));
                }
            }
            DiffItem::Remove(id, s) => subnet_deletes.push(Change::DeleteSubnet {
                subnet_id: id.clone(),
                vpc_id: s.vpc_id.clone(),
            }),
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
        let old = before.enis.get(id).map(|e| eni_record(before, e));
        match after.enis.get(id) {
            Some(e) => {
                let rec = eni_record(after, e);
                if old.as_ref() != Some(&rec) {
                    upserts.push(Change::UpsertEni(rec));
                }
            }
            None => {
                if let Some(old) = old {
                    eni_deletes.push(Change::DeleteEni {
                        eni_id: id.clone(),
                        vpc_id: old.vpc_id,
                    });
                }
            }
        }
    }

    upserts.extend(eni_deletes);
    upserts.extend(subnet_deletes);
    upserts.extend(vpc_deletes);
    upserts.extend(host_deletes);
    upserts
}

/// Checks that `changes` take the records of `before` exactly to those of `after`, and panics
/// if not (tests and fuzzing run it after every mutation, see `MappingProjection::checked`).
pub fn check(before: &State, after: &State, changes: &[Change]) {
    let mut held = records_of(before);
    for c in changes {
        held.apply(c);
    }
    assert_eq!(
        held,
        records_of(after),
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

    fn ip(s: &str) -> std::net::Ipv4Addr {
        s.parse().expect("address")
    }

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
        changes
            .iter()
            .map(|c| match c {
                Change::UpsertHost(h) => format!("+host {}", h.host_id),
                Change::DeleteHost(id) => format!("-host {id}"),
                Change::UpsertVpc(v) => format!("+vpc {}", v.vpc_id),
                Change::DeleteVpc(id) => format!("-vpc {id}"),
                Change::UpsertSubnet(s) => format!("+subnet {}", s.subnet_id),
                Change::DeleteSubnet { subnet_id, .. } => format!("-subnet {subnet_id}"),
                Change::UpsertEni(e) => format!("+eni {}", e.eni_id),
                Change::DeleteEni { eni_id, .. } => format!("-eni {eni_id}"),
            })
            .collect()
    }

    fn upserted<'a>(changes: &'a [Change], id: &str) -> &'a EniRecord {
        changes
            .iter()
            .find_map(|c| match c {
                Change::UpsertEni(e) if e.eni_id == id => Some(e),
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
        let rec = upserted(&c, &primary);
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
        assert_eq!(upserted(&c, &primary).instance_name, "vm1");
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
        assert_eq!(upserted(&c, &primary).secondary_ips, [ip("10.0.0.77")]);
        let (_, c) = step(&mut s, |t| {
            eni::unassign_private_ips(t, &primary, &["10.0.0.77".into()])
        });
        assert!(upserted(&c, &primary).secondary_ips.is_empty());

        // Security group membership.
        let (sg, c) = step(&mut s, |t| {
            security_group::create_security_group(t, "web", "web", Some(&v.id), Tags::new())
        });
        assert!(c.is_empty(), "a group alone is not on the wire");
        let (_, c) = step(&mut s, |t| {
            eni::modify_attribute(t, &primary, eni::Modify::Groups(vec![sg.id.clone()]))
        });
        assert_eq!(
            upserted(&c, &primary).security_group_ids,
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
        let rec = upserted(&c, &primary);
        assert_eq!(rec.public_addresses.len(), 1);
        assert_eq!(rec.public_addresses[0].public_ip, eip.public_ip);
        let (_, c) = step(&mut s, |t| disassociate_address(t, Some(&assoc), None));
        let rec = upserted(&c, &primary);
        assert_eq!(rec.public_addresses.len(), 1, "refilled");
        assert_ne!(rec.public_addresses[0].public_ip, eip.public_ip);

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
        assert!(upserted(&c, &extra.id).host_id.is_empty());
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
        let rec = upserted(&c, &extra.id);
        assert_eq!(rec.public_addresses[0].public_ip, eip2.public_ip);
        let (_, c) = step(&mut s, |t| disassociate_address(t, Some(&assoc2), None));
        assert!(upserted(&c, &extra.id).public_addresses.is_empty());
        let (att, c) = step(&mut s, |t| {
            eni::attach_network_interface(t, &extra.id, &inst, 1)
        });
        let rec = upserted(&c, &extra.id);
        assert_eq!((rec.host_id.as_str(), rec.device_index), (h1.as_str(), 1));
        let (_, c) = step(&mut s, |t| eni::detach_network_interface(t, &att));
        assert!(upserted(&c, &extra.id).host_id.is_empty());

        // Stop: no host, public IP released. Start: both back.
        let (_, c) = step(&mut s, |t| stop_instances(t, std::slice::from_ref(&inst)));
        let rec = upserted(&c, &primary);
        assert!(rec.host_id.is_empty() && rec.public_addresses.is_empty());
        let (_, c) = step(&mut s, |t| start_instances(t, std::slice::from_ref(&inst)));
        let rec = upserted(&c, &primary);
        assert_eq!(rec.host_id, h1);
        assert_eq!(rec.public_addresses.len(), 1);

        // The host re-registers with a new underlay address: every ENI on it follows.
        let (_, c) = step(&mut s, |t| host::register_host(t, "host-1", "198.18.0.21"));
        assert!(kinds(&c).contains(&format!("+host {h1}")));
        assert_eq!(
            upserted(&c, &primary).host_underlay_ip,
            Some(ip("198.18.0.21"))
        );
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
            upserted(&c, &e.id).public_addresses[0].public_ip,
            ip("203.0.113.9")
        );
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;
    use crate::model::instance::{run_instances, start_instances, stop_instances, RunRequest};
    use crate::model::{eni, host, subnet, vpc, Tags, Txn};

    /// The VPCs with an ENI placed on `host_id`.
    fn needed_vpcs(state: &State, host_id: &str) -> std::collections::BTreeSet<String> {
        state
            .enis
            .values()
            .filter(|e| placed_host(state, e) == Some(host_id))
            .map(|e| e.vpc_id.clone())
            .collect()
    }

    #[test]
    fn eni_records_follow_secondary_ips_attachments_and_instance_state() {
        let mut txn = Txn::new(State::new(), 0);
        let v = vpc::create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let s = subnet::create_subnet(&mut txn, &v.id, "10.0.0.0/24", None, Tags::new()).unwrap();
        let h1 = host::register_host(&mut txn, "host-1", "198.18.0.11").unwrap();
        let h2 = host::register_host(&mut txn, "host-2", "198.18.0.12").unwrap();
        let launch = |txn: &mut Txn, h: &str| {
            run_instances(
                txn,
                &RunRequest {
                    min_count: 1,
                    max_count: 1,
                    subnet_id: s.id.clone(),
                    host: Some(h.into()),
                    ..Default::default()
                },
            )
            .unwrap()
            .instances[0]
                .clone()
        };
        let i1 = launch(&mut txn, "host-1");
        let i2 = launch(&mut txn, "host-2");
        eni::assign_private_ips(&mut txn, &i1.eni_id, &["10.0.0.77".into()], None, false).unwrap();
        let rec = eni_record(&txn.state, &txn.state.enis[&i1.eni_id]);
        assert_eq!(
            rec.secondary_ips,
            vec![std::net::Ipv4Addr::new(10, 0, 0, 77)]
        );
        assert_eq!(rec.host_id, h1);
        assert_eq!(
            rec.host_underlay_ip,
            Some(std::net::Ipv4Addr::new(198, 18, 0, 11))
        );
        assert_eq!(rec.device_index, 0);

        // An extra ENI attached to the instance on host-2 lives on host-2.
        let extra = eni::create_network_interface(
            &mut txn,
            &eni::CreateRequest {
                subnet_id: s.id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
        let rec = eni_record(&txn.state, &txn.state.enis[&extra.id]);
        assert!(rec.host_id.is_empty() && rec.instance_id.is_empty());
        eni::attach_network_interface(&mut txn, &extra.id, &i2.id, 1).unwrap();
        let rec = eni_record(&txn.state, &txn.state.enis[&extra.id]);
        assert_eq!((rec.host_id.as_str(), rec.device_index), (h2.as_str(), 1));

        // Stopped: the instance's ENIs have no host, and host-1 no longer needs the VPC.
        assert!(needed_vpcs(&txn.state, &h1).contains(&v.id));
        stop_instances(&mut txn, std::slice::from_ref(&i1.id)).unwrap();
        let rec = eni_record(&txn.state, &txn.state.enis[&i1.eni_id]);
        assert!(rec.host_id.is_empty() && rec.host_underlay_ip.is_none());
        assert_eq!(rec.instance_id, i1.id);
        assert!(needed_vpcs(&txn.state, &h1).is_empty());
        start_instances(&mut txn, std::slice::from_ref(&i1.id)).unwrap();
        assert_eq!(
            eni_record(&txn.state, &txn.state.enis[&i1.eni_id]).host_id,
            h1
        );
        assert!(needed_vpcs(&txn.state, &h1).contains(&v.id));
    }
}
