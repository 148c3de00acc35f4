//! Reconciliation decisions: which local instances should exist, and what to create or delete
//! to get there.
//!
//! Pure functions over the mapping records, so the decisions are unit-tested without root. The
//! side effects (TAPs, namespaces) are in `instance.rs`; the control loop calls [`desired`] and
//! [`plan`] after each watch message and carries out the [`Plan`].
//!
//! One ENI per instance for now: the one at device index 0 becomes its `eth0`. ENIs attached at
//! other device indexes are reported as skipped (not plumbed yet), as is a second ENI claiming
//! device index 0 (the lowest ENI id wins).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use softvpc_engine::{Mac, MappingRecords};

/// What a local instance's network namespace looks like: everything `instance.rs` needs to
/// plumb it. Two specs that differ in any field mean "re-create".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InstanceSpec {
    pub eni_id: String,
    pub instance_id: String,
    pub mac: Mac,
    pub ip: Ipv4Addr,
    /// The ENI's subnet (its prefix length goes on `eth0`).
    pub subnet: Ipv4Net,
    /// The subnet router: network address + 1 (the default route).
    pub gateway: Ipv4Addr,
    /// Secondary private addresses, added to `eth0` next to the primary one. A change of only
    /// these is applied in place (no re-creation).
    pub secondary_ips: Vec<Ipv4Addr>,
}

impl InstanceSpec {
    /// True when `self` and `other` differ at most in their secondary addresses.
    pub fn same_but_secondary(&self, other: &InstanceSpec) -> bool {
        let strip = |s: &InstanceSpec| InstanceSpec {
            secondary_ips: Vec::new(),
            ..s.clone()
        };
        strip(self) == strip(other)
    }
}

/// Why an ENI placed on this host gets no instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Its subnet is not in the view, so prefix and gateway are unknown.
    UnknownSubnet { eni_id: String, subnet_id: String },
    /// Not its instance's `eth0`: attached at another device index, or its instance already has
    /// another (lower-id) ENI at device index 0.
    SecondEni { eni_id: String, instance_id: String },
}

/// The subnet router address: network + 1.
pub fn gateway_of(subnet: Ipv4Net) -> Ipv4Addr {
    let net = u32::from(subnet.network());
    Ipv4Addr::from(net.wrapping_add(1))
}

/// The instances that should run on the host `host_id`, by ENI id: every ENI placed on this host
/// and attached to an instance, whose subnet is known.
pub fn desired(
    records: &MappingRecords,
    host_id: &str,
) -> (BTreeMap<String, InstanceSpec>, Vec<Skip>) {
    let mut out = BTreeMap::new();
    let mut skips = Vec::new();
    let mut instances: BTreeMap<&str, &str> = BTreeMap::new();
    // BTreeMap iteration is by ENI id, so "lowest ENI id wins" is deterministic.
    for eni in records.enis.values() {
        if host_id.is_empty() || eni.host_id != host_id || eni.instance_id.is_empty() {
            continue;
        }
        let Some(subnet) = records.subnets.get(&eni.subnet_id) else {
            skips.push(Skip::UnknownSubnet {
                eni_id: eni.eni_id.clone(),
                subnet_id: eni.subnet_id.clone(),
            });
            continue;
        };
        if eni.device_index != 0 || instances.insert(&eni.instance_id, &eni.eni_id).is_some() {
            skips.push(Skip::SecondEni {
                eni_id: eni.eni_id.clone(),
                instance_id: eni.instance_id.clone(),
            });
            continue;
        }
        out.insert(
            eni.eni_id.clone(),
            InstanceSpec {
                eni_id: eni.eni_id.clone(),
                instance_id: eni.instance_id.clone(),
                mac: eni.mac,
                ip: eni.ip,
                subnet: subnet.cidr,
                gateway: gateway_of(subnet.cidr),
                secondary_ips: eni.secondary_ips.clone(),
            },
        );
    }
    (out, skips)
}

/// What to do to go from `current` to `desired`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// ENI ids whose instance must be torn down (gone, or changed: then also in `create`).
    /// Deletions run first, so a re-created instance never meets its old self.
    pub delete: Vec<String>,
    /// Instances to create.
    pub create: Vec<InstanceSpec>,
    /// Instances whose secondary addresses changed (and nothing else): the new spec.
    pub update: Vec<InstanceSpec>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.create.is_empty() && self.update.is_empty()
    }
}

/// Compares desired and current instances (both by ENI id). An instance whose spec changed (new
/// IP, MAC, subnet or instance) is deleted and created again; one whose secondary addresses
/// alone changed is updated in place.
pub fn plan(
    desired: &BTreeMap<String, InstanceSpec>,
    current: &BTreeMap<String, InstanceSpec>,
) -> Plan {
    let mut plan = Plan::default();
    for (eni, spec) in current {
        match desired.get(eni) {
            Some(want) if want == spec => {}
            Some(want) if want.same_but_secondary(spec) => plan.update.push(want.clone()),
            _ => plan.delete.push(eni.clone()),
        }
    }
    for (eni, want) in desired {
        match current.get(eni) {
            Some(have) if have.same_but_secondary(want) => {}
            _ => plan.create.push(want.clone()),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{records_from_snapshot, tests as r};
    use softvpc_proto::pb;

    fn records() -> MappingRecords {
        let mut vm4 = r::pb_eni("eni-4", "vpc-a", 0x101, "subnet-a", "10.0.0.30", "h-1");
        vm4.mac = "02:00:00:00:00:04".into();
        let snapshot = pb::Snapshot {
            hosts: vec![
                r::pb_host("h-1", "198.18.0.11"),
                r::pb_host("h-2", "198.18.0.12"),
            ],
            vpcs: vec![r::pb_vpc("vpc-a", 0x101, "10.0.0.0/16")],
            subnets: vec![
                r::pb_subnet("subnet-a", "vpc-a", "10.0.0.0/24"),
                r::pb_subnet("subnet-b", "vpc-a", "10.0.1.0/24"),
            ],
            enis: vec![
                r::pb_eni("eni-1", "vpc-a", 0x101, "subnet-a", "10.0.0.148", "h-1"),
                r::pb_eni("eni-2", "vpc-a", 0x101, "subnet-a", "10.0.0.185", "h-2"),
                r::pb_eni("eni-3", "vpc-a", 0x101, "subnet-b", "10.0.1.20", "h-2"),
                vm4,
            ],
        };
        let (records, errors) = records_from_snapshot(&snapshot);
        assert!(errors.is_empty());
        records
    }

    #[test]
    fn desired_takes_only_this_hosts_attached_enis() {
        let mut recs = records();
        // Placed here but detached from any instance: no namespace.
        let mut detached = recs.enis["eni-1"].clone();
        detached.eni_id = "eni-5".into();
        detached.instance_id.clear();
        recs.enis.insert("eni-5".into(), detached);

        let (want, skips) = desired(&recs, "h-1");
        assert!(skips.is_empty());
        assert_eq!(want.keys().collect::<Vec<_>>(), vec!["eni-1", "eni-4"]);
        let vm1 = &want["eni-1"];
        assert_eq!(vm1.instance_id, "i-eni-1");
        assert_eq!(vm1.ip, Ipv4Addr::new(10, 0, 0, 148));
        assert_eq!(vm1.subnet.prefix_len(), 24);
        assert_eq!(vm1.gateway, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(vm1.mac, [2, 0, 0, 0, 0, 1]);

        let (want2, _) = desired(&recs, "h-2");
        assert_eq!(want2["eni-3"].gateway, Ipv4Addr::new(10, 0, 1, 1));
        // A host that is not registered yet has nothing.
        assert!(desired(&recs, "").0.is_empty());
    }

    #[test]
    fn desired_reports_unknown_subnets_and_second_enis() {
        let mut recs = records();
        recs.subnets.remove("subnet-b");
        let (want, skips) = desired(&recs, "h-2");
        assert_eq!(want.keys().collect::<Vec<_>>(), vec!["eni-2"]);
        assert_eq!(
            skips,
            vec![Skip::UnknownSubnet {
                eni_id: "eni-3".into(),
                subnet_id: "subnet-b".into()
            }]
        );

        let mut recs = records();
        let mut second = recs.enis["eni-4"].clone();
        second.eni_id = "eni-9".into();
        recs.enis.insert("eni-9".into(), second);
        let (want, skips) = desired(&recs, "h-1");
        assert_eq!(want.keys().collect::<Vec<_>>(), vec!["eni-1", "eni-4"]);
        assert_eq!(
            skips,
            vec![Skip::SecondEni {
                eni_id: "eni-9".into(),
                instance_id: "i-eni-4".into()
            }]
        );
    }

    #[test]
    fn plan_creates_deletes_and_recreates_changed() {
        let recs = records();
        let (want, _) = desired(&recs, "h-1");
        let empty = BTreeMap::new();

        let first = plan(&want, &empty);
        assert!(first.delete.is_empty());
        assert_eq!(
            first
                .create
                .iter()
                .map(|s| s.eni_id.as_str())
                .collect::<Vec<_>>(),
            vec!["eni-1", "eni-4"]
        );
        // Converged: nothing to do.
        assert!(plan(&want, &want).is_empty());

        // eni-4 moved to another host, eni-1 got a new address.
        let mut recs2 = recs.clone();
        recs2.enis.get_mut("eni-4").expect("eni-4").host_id = "h-2".into();
        recs2.enis.get_mut("eni-1").expect("eni-1").ip = Ipv4Addr::new(10, 0, 0, 149);
        let (want2, _) = desired(&recs2, "h-1");
        let next = plan(&want2, &want);
        assert_eq!(next.delete, vec!["eni-1".to_string(), "eni-4".to_string()]);
        assert_eq!(next.create.len(), 1);
        assert_eq!(next.create[0].ip, Ipv4Addr::new(10, 0, 0, 149));

        // Everything gone.
        let gone = plan(&empty, &want);
        assert_eq!(gone.delete.len(), 2);
        assert!(gone.create.is_empty());
    }

    #[test]
    fn gateway_is_network_plus_one() {
        let net: Ipv4Net = "10.0.1.0/24".parse().expect("net");
        assert_eq!(gateway_of(net), Ipv4Addr::new(10, 0, 1, 1));
        let net: Ipv4Net = "172.31.255.240/28".parse().expect("net");
        assert_eq!(gateway_of(net), Ipv4Addr::new(172, 31, 255, 241));
    }

    #[test]
    fn secondary_address_changes_update_in_place() {
        let recs = records();
        let (want, _) = desired(&recs, "h-1");
        assert!(want["eni-1"].secondary_ips.is_empty());
        let mut recs2 = recs.clone();
        let extra = Ipv4Addr::new(10, 0, 0, 77);
        recs2.enis.get_mut("eni-1").expect("eni-1").secondary_ips = vec![extra];
        let (want2, _) = desired(&recs2, "h-1");
        assert_eq!(want2["eni-1"].secondary_ips, vec![extra]);
        let p = plan(&want2, &want);
        assert!(p.delete.is_empty() && p.create.is_empty());
        assert_eq!(p.update, vec![want2["eni-1"].clone()]);
        // And back.
        let back = plan(&want, &want2);
        assert_eq!(back.update, vec![want["eni-1"].clone()]);
        // A new primary address still re-creates, whatever the secondary ones do.
        recs2.enis.get_mut("eni-1").expect("eni-1").ip = Ipv4Addr::new(10, 0, 0, 149);
        let (want3, _) = desired(&recs2, "h-1");
        let p = plan(&want3, &want);
        assert_eq!(p.delete, vec!["eni-1".to_string()]);
        assert_eq!(p.create.len(), 1);
        assert!(p.update.is_empty());
    }

    #[test]
    fn only_device_index_zero_becomes_eth0() {
        let mut recs = records();
        // An extra ENI with a lower id than the instance's primary, at device index 1.
        let mut extra = recs.enis["eni-4"].clone();
        extra.eni_id = "eni-0".into();
        extra.device_index = 1;
        recs.enis.insert("eni-0".into(), extra);
        let (want, skips) = desired(&recs, "h-1");
        assert_eq!(want.keys().collect::<Vec<_>>(), vec!["eni-1", "eni-4"]);
        assert_eq!(
            skips,
            vec![Skip::SecondEni {
                eni_id: "eni-0".into(),
                instance_id: "i-eni-4".into()
            }]
        );
    }
}
