//! What one host sees: every registered host, and the whole of every VPC (VPC, subnets, ENIs)
//! with at least one ENI placed on that host. Computes Snapshots, and Deltas from log entries:
//! changes of VPCs the agent holds and still needs are replayed in order; a VPC that became
//! needed is sent whole (as of the current state); a VPC no longer needed is deleted.

use std::collections::BTreeSet;
use std::sync::Arc;

use softvpc_proto::pb;

use super::log::LogEntry;
use crate::model::instance::{placed_host, public_address_of};
use crate::model::{Eni, Host, State, Subnet, Vpc};

pub fn pb_host(h: &Host) -> pb::Host {
    pb::Host {
        host_id: h.id.clone(),
        name: h.name.clone(),
        underlay_ip: h.underlay_ip.to_string(),
    }
}

pub fn pb_vpc(v: &Vpc) -> pb::Vpc {
    pb::Vpc {
        vpc_id: v.id.clone(),
        vni: v.vni,
        cidrs: vec![v.cidr.to_string()],
    }
}

pub fn pb_subnet(s: &Subnet) -> pb::Subnet {
    pb::Subnet {
        subnet_id: s.id.clone(),
        vpc_id: s.vpc_id.clone(),
        cidr: s.cidr.to_string(),
    }
}

/// The mapping record of an ENI: with its VPC's VNI, its host's underlay address and its
/// instance's Name tag resolved from `state`. An ENI of a stopped instance keeps its instance
/// but has no host: it is not on any host's data plane until the instance starts again.
pub fn pb_eni(state: &State, e: &Eni) -> pb::Eni {
    let vni = state.vpcs.get(&e.vpc_id).map(|v| v.vni).unwrap_or(0);
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
    pb::Eni {
        eni_id: e.id.clone(),
        vpc_id: e.vpc_id.clone(),
        vni,
        subnet_id: e.subnet_id.clone(),
        ip: e.private_ip.to_string(),
        secondary_ips: e.secondary_ips.iter().map(ToString::to_string).collect(),
        mac: e.mac.clone(),
        host_id: host.map(str::to_string).unwrap_or_default(),
        host_underlay_ip: host
            .and_then(|h| state.hosts.get(h))
            .map(|h| h.underlay_ip.to_string())
            .unwrap_or_default(),
        instance_id,
        instance_name,
        device_index,
        security_group_ids: e.security_groups.clone(),
        public_addresses: e
            .addresses()
            .filter_map(|ip| {
                public_address_of(state, e, ip).map(|p| pb::PublicAddress {
                    public_ip: p.ip().to_string(),
                    private_ip: ip.to_string(),
                })
            })
            .collect(),
    }
}

/// The VPCs host `host_id` needs: those with at least one ENI placed on it.
pub fn needed_vpcs(state: &State, host_id: &str) -> BTreeSet<String> {
    state
        .enis
        .values()
        .filter(|e| placed_host(state, e) == Some(host_id))
        .map(|e| e.vpc_id.clone())
        .collect()
}

/// Everything host `host_id` needs, and the set of VPCs in it.
pub fn snapshot(state: &State, host_id: &str) -> (pb::Snapshot, BTreeSet<String>) {
    let needed = needed_vpcs(state, host_id);
    let snap = pb::Snapshot {
        hosts: state.hosts.values().map(|h| pb_host(h)).collect(),
        vpcs: needed
            .iter()
            .filter_map(|id| state.vpcs.get(id))
            .map(|v| pb_vpc(v))
            .collect(),
        subnets: state
            .subnets
            .values()
            .filter(|s| needed.contains(&s.vpc_id))
            .map(|s| pb_subnet(s))
            .collect(),
        enis: state
            .enis
            .values()
            .filter(|e| needed.contains(&e.vpc_id))
            .map(|e| pb_eni(state, e))
            .collect(),
    };
    (snap, needed)
}

/// The whole of VPC `vpc_id` as upserts: the VPC, then its subnets, then its ENIs.
pub fn whole_vpc(state: &State, vpc_id: &str) -> Vec<pb::Change> {
    use pb::change::Kind;
    let mut out: Vec<Kind> = Vec::new();
    let Some(v) = state.vpcs.get(vpc_id) else {
        return Vec::new();
    };
    out.push(Kind::UpsertVpc(pb_vpc(v)));
    out.extend(
        state
            .subnets
            .values()
            .filter(|s| s.vpc_id == vpc_id)
            .map(|s| Kind::UpsertSubnet(pb_subnet(s))),
    );
    out.extend(
        state
            .enis
            .values()
            .filter(|e| e.vpc_id == vpc_id)
            .map(|e| Kind::UpsertEni(pb_eni(state, e))),
    );
    out.into_iter()
        .map(|k| pb::Change { kind: Some(k) })
        .collect()
}

/// The changes that bring an agent holding `held` (at the revision before `entries`) to
/// `state` (the revision of the last entry), and the set of VPCs it holds afterwards.
pub fn delta(
    state: &State,
    host_id: &str,
    entries: &[Arc<LogEntry>],
    held: &BTreeSet<String>,
) -> (Vec<pb::Change>, BTreeSet<String>) {
    let needed = needed_vpcs(state, host_id);
    let mut out = Vec::new();
    for entry in entries {
        for (vpc, change) in &entry.changes {
            let forward = match vpc {
                None => true,
                Some(v) => held.contains(v) && needed.contains(v),
            };
            if forward {
                out.push(change.clone());
            }
        }
    }
    for v in needed.difference(held) {
        out.extend(whole_vpc(state, v));
    }
    for v in held.difference(&needed) {
        out.push(pb::Change {
            kind: Some(pb::change::Kind::DeleteVpcId(v.clone())),
        });
    }
    (out, needed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::instance::{run_instances, start_instances, stop_instances, RunRequest};
    use crate::model::{eni, host, subnet, vpc, Tags, Txn};

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
        let rec = pb_eni(&txn.state, &txn.state.enis[&i1.eni_id]);
        assert_eq!(rec.secondary_ips, vec!["10.0.0.77".to_string()]);
        assert_eq!(rec.host_id, h1);
        assert_eq!(rec.host_underlay_ip, "198.18.0.11");
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
        let rec = pb_eni(&txn.state, &txn.state.enis[&extra.id]);
        assert!(rec.host_id.is_empty() && rec.instance_id.is_empty());
        eni::attach_network_interface(&mut txn, &extra.id, &i2.id, 1).unwrap();
        let rec = pb_eni(&txn.state, &txn.state.enis[&extra.id]);
        assert_eq!((rec.host_id.as_str(), rec.device_index), (h2.as_str(), 1));

        // Stopped: the instance's ENIs have no host, and host-1 no longer needs the VPC.
        assert!(needed_vpcs(&txn.state, &h1).contains(&v.id));
        stop_instances(&mut txn, std::slice::from_ref(&i1.id)).unwrap();
        let rec = pb_eni(&txn.state, &txn.state.enis[&i1.eni_id]);
        assert!(rec.host_id.is_empty() && rec.host_underlay_ip.is_empty());
        assert_eq!(rec.instance_id, i1.id);
        assert!(needed_vpcs(&txn.state, &h1).is_empty());
        start_instances(&mut txn, std::slice::from_ref(&i1.id)).unwrap();
        assert_eq!(pb_eni(&txn.state, &txn.state.enis[&i1.eni_id]).host_id, h1);
        assert!(needed_vpcs(&txn.state, &h1).contains(&v.id));
    }
}
