//! Reconciliation decisions: which local instances should exist with which interfaces, and the
//! ordered steps that get there from what exists now.
//!
//! Pure functions over the mapping records, so the decisions are unit-tested without root. The
//! side effects (TAPs, namespaces, addresses, policy routes) are in `instance.rs`; the control
//! loop calls [`desired`] and [`plan`] after each watch message and carries out the [`Step`]s.
//!
//! Every ENI placed on this host and attached to an instance becomes that instance's
//! `eth<device index>`. An instance is a namespace with one interface per local ENI: the namespace
//! is created by whichever of its ENIs arrives first (an ENI at device index 1 may well arrive
//! before index 0, or without it when the primary ENI's instance is stopped elsewhere) and
//! deleted when none of its ENIs is left on this host. Attaching and detaching an ENI adds or
//! removes only its interface: the namespace, and every other interface in it, stay as they are.
//! Two ENIs claiming one device index of one instance: the lowest ENI id wins, the other is
//! skipped (and reported).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use softvpc_engine::Mac;
use softvpc_mapping::Records;

/// Device indexes above this are refused (the server allows 0..=15; the bound keeps interface
/// names and policy-routing table numbers sane whatever a record says).
pub const MAX_DEVICE_INDEX: u32 = 255;

/// Policy-routing tables of secondary interfaces: `eth<N>` uses table `ROUTE_TABLE_BASE + N`, as
/// Amazon Linux's ec2-net-utils does.
pub const ROUTE_TABLE_BASE: u32 = 10000;

/// One interface of a local instance: everything `instance.rs` needs to plumb it. Two specs that
/// differ in anything but their secondary addresses mean "remove the interface and add it again".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EniSpec {
    /// The ENI's id.
    pub eni_id: String,
    /// The instance it is attached to.
    pub instance_id: String,
    /// The attachment's device index: the interface is `eth<device_index>`.
    pub device_index: u32,
    /// The ENI's MAC, given to the interface.
    pub mac: Mac,
    /// The ENI's primary private address.
    pub ip: Ipv4Addr,
    /// The ENI's subnet (its prefix length goes on the interface).
    pub subnet: Ipv4Net,
    /// The subnet router: network address + 1 (the interface's default route).
    pub gateway: Ipv4Addr,
    /// Secondary private addresses, added next to the primary one. A change of only these is
    /// applied in place.
    pub secondary_ips: Vec<Ipv4Addr>,
}

impl EniSpec {
    /// The interface name inside the instance.
    pub fn ifname(&self) -> String {
        format!("eth{}", self.device_index)
    }

    /// The policy-routing table of a secondary interface (`None` for `eth0`, which uses the main
    /// table).
    pub fn route_table(&self) -> Option<u32> {
        (self.device_index > 0).then(|| ROUTE_TABLE_BASE + self.device_index)
    }

    /// The primary address followed by the secondary ones.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        std::iter::once(self.ip).chain(self.secondary_ips.iter().copied())
    }

    /// True when `self` and `other` differ at most in their secondary addresses.
    pub fn same_but_secondary(&self, other: &EniSpec) -> bool {
        let strip = |s: &EniSpec| EniSpec {
            secondary_ips: Vec::new(),
            ..s.clone()
        };
        strip(self) == strip(other)
    }
}

/// Local instances: instance id -> device index -> interface. An instance whose namespace
/// exists but has no interface (yet) maps to an empty map.
pub type Instances = BTreeMap<String, BTreeMap<u32, EniSpec>>;

/// Why an ENI placed on this host gets no interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Its subnet is not in the view, so prefix and gateway are unknown.
    UnknownSubnet {
        /// The skipped ENI.
        eni_id: String,
        /// Its subnet, missing from the view.
        subnet_id: String,
    },
    /// Its instance already has another ENI at this device index, with a lower id (`kept`).
    SameDeviceIndex {
        /// The skipped ENI.
        eni_id: String,
        /// Its instance.
        instance_id: String,
        /// The device index both ENIs claim.
        device_index: u32,
        /// The ENI that keeps the device index.
        kept: String,
    },
    /// The device index is above [`MAX_DEVICE_INDEX`].
    DeviceIndexOutOfRange {
        /// The skipped ENI.
        eni_id: String,
        /// Its instance.
        instance_id: String,
        /// The device index asked for.
        device_index: u32,
    },
}

/// Every [`Skip::reason`], so each metrics series exists (at 0) before its first skip.
pub const SKIP_REASONS: [&str; 3] = [
    "unknown_subnet",
    "same_device_index",
    "device_index_out_of_range",
];

impl Skip {
    /// The reason label for metrics (one of [`SKIP_REASONS`]).
    pub fn reason(&self) -> &'static str {
        match self {
            Skip::UnknownSubnet { .. } => "unknown_subnet",
            Skip::SameDeviceIndex { .. } => "same_device_index",
            Skip::DeviceIndexOutOfRange { .. } => "device_index_out_of_range",
        }
    }

    /// The skipped ENI.
    pub fn eni_id(&self) -> &str {
        match self {
            Skip::UnknownSubnet { eni_id, .. }
            | Skip::SameDeviceIndex { eni_id, .. }
            | Skip::DeviceIndexOutOfRange { eni_id, .. } => eni_id,
        }
    }
}

/// The subnet router address: network + 1.
pub fn gateway_of(subnet: Ipv4Net) -> Ipv4Addr {
    let net = u32::from(subnet.network());
    Ipv4Addr::from(net.wrapping_add(1))
}

/// The instances that should run on the host `host_id`: every ENI placed on this host and
/// attached to an instance, whose subnet is known, as that instance's `eth<device index>`.
pub fn desired(records: &Records, host_id: &str) -> (Instances, Vec<Skip>) {
    let mut out = Instances::new();
    let mut skips = Vec::new();
    if host_id.is_empty() {
        return (out, skips);
    }
    // BTreeMap iteration is by ENI id, so "lowest ENI id wins" is deterministic.
    for eni in records.enis.values() {
        if eni.host_id != host_id || eni.instance_id.is_empty() {
            continue;
        }
        let Some(subnet) = records.subnets.get(&eni.subnet_id) else {
            skips.push(Skip::UnknownSubnet {
                eni_id: eni.eni_id.clone(),
                subnet_id: eni.subnet_id.clone(),
            });
            continue;
        };
        if eni.device_index > MAX_DEVICE_INDEX {
            skips.push(Skip::DeviceIndexOutOfRange {
                eni_id: eni.eni_id.clone(),
                instance_id: eni.instance_id.clone(),
                device_index: eni.device_index,
            });
            continue;
        }
        let ifaces = out.entry(eni.instance_id.clone()).or_default();
        if let Some(kept) = ifaces.get(&eni.device_index) {
            skips.push(Skip::SameDeviceIndex {
                eni_id: eni.eni_id.clone(),
                instance_id: eni.instance_id.clone(),
                device_index: eni.device_index,
                kept: kept.eni_id.clone(),
            });
            continue;
        }
        ifaces.insert(
            eni.device_index,
            EniSpec {
                eni_id: eni.eni_id.clone(),
                instance_id: eni.instance_id.clone(),
                device_index: eni.device_index,
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

/// One thing to do to a local instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The instance has no ENI on this host any more: remove all its interfaces and delete its
    /// namespace.
    DeleteNamespace {
        /// The instance whose namespace goes.
        instance_id: String,
    },
    /// Remove one interface (its ENI left the instance or this host, or changed).
    RemoveInterface(EniSpec),
    /// Create the instance's namespace (no interface yet).
    CreateNamespace {
        /// The instance whose namespace is made.
        instance_id: String,
    },
    /// Add an interface to an existing namespace.
    AddInterface(EniSpec),
    /// Only the secondary addresses of an interface changed.
    UpdateSecondary {
        /// The interface as it is.
        old: EniSpec,
        /// The interface as it should be.
        new: EniSpec,
    },
}

/// The steps from `current` to `desired`, in the order to carry them out: first everything
/// that goes away (so a device index, a TAP name or an ENI is free before it is reused), then
/// new namespaces, new interfaces (by instance, then device index: `eth0` first), and last the
/// in-place address updates. An instance that keeps at least one ENI keeps its namespace; an
/// interface whose ENI changed in more than its secondary addresses is removed and added again.
pub fn plan(desired: &Instances, current: &Instances) -> Vec<Step> {
    let mut gone = Vec::new();
    let mut created = Vec::new();
    let mut added = Vec::new();
    let mut updated = Vec::new();
    for (instance_id, have) in current {
        let Some(want) = desired.get(instance_id) else {
            gone.push(Step::DeleteNamespace {
                instance_id: instance_id.clone(),
            });
            continue;
        };
        for (index, h) in have {
            match want.get(index) {
                Some(w) if w == h => {}
                Some(w) if w.same_but_secondary(h) => updated.push(Step::UpdateSecondary {
                    old: h.clone(),
                    new: w.clone(),
                }),
                _ => gone.push(Step::RemoveInterface(h.clone())),
            }
        }
    }
    for (instance_id, want) in desired {
        let have = current.get(instance_id);
        if have.is_none() {
            created.push(Step::CreateNamespace {
                instance_id: instance_id.clone(),
            });
        }
        for (index, w) in want {
            match have.and_then(|h| h.get(index)) {
                Some(h) if h.same_but_secondary(w) => {}
                _ => added.push(Step::AddInterface(w.clone())),
            }
        }
    }
    gone.into_iter()
        .chain(created)
        .chain(added)
        .chain(updated)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests as r;
    use softvpc_proto::pb;

    fn records() -> Records {
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
            ..Default::default()
        };
        let (records, errors) = Records::from_snapshot(&snapshot);
        assert!(errors.is_empty());
        records
    }

    /// Adds ENI `id` (subnet-b, `ip`) to `recs`, attached to `instance` at `index` on `host`.
    fn attach(recs: &mut Records, id: &str, ip: [u8; 4], instance: &str, index: u32) {
        let host = recs
            .enis
            .values()
            .find(|e| e.instance_id == instance)
            .map(|e| e.host_id.clone())
            .unwrap_or_else(|| "h-1".into());
        let mut e = (*recs.enis["eni-3"]).clone();
        e.eni_id = id.into();
        e.ip = Ipv4Addr::from(ip);
        e.mac = [2, 0, 0, 0, 0x10, ip[3]];
        e.host_id = host;
        e.instance_id = instance.into();
        e.device_index = index;
        recs.enis.insert(id.into(), std::sync::Arc::new(e));
    }

    fn names(i: &Instances) -> Vec<(String, u32, String)> {
        i.iter()
            .flat_map(|(iid, ifs)| {
                ifs.iter()
                    .map(|(n, s)| (iid.clone(), *n, s.eni_id.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn t(iid: &str, n: u32, eni: &str) -> (String, u32, String) {
        (iid.to_string(), n, eni.to_string())
    }

    #[test]
    fn desired_takes_only_this_hosts_attached_enis() {
        let mut recs = records();
        // Placed here but detached from any instance: no interface.
        let mut detached = (*recs.enis["eni-1"]).clone();
        detached.eni_id = "eni-5".into();
        detached.instance_id.clear();
        recs.enis
            .insert("eni-5".into(), std::sync::Arc::new(detached));

        let (want, skips) = desired(&recs, "h-1");
        assert!(skips.is_empty());
        assert_eq!(
            names(&want),
            vec![t("i-eni-1", 0, "eni-1"), t("i-eni-4", 0, "eni-4")]
        );
        let vm1 = &want["i-eni-1"][&0];
        assert_eq!(vm1.instance_id, "i-eni-1");
        assert_eq!(vm1.ip, Ipv4Addr::new(10, 0, 0, 148));
        assert_eq!(vm1.subnet.prefix_len(), 24);
        assert_eq!(vm1.gateway, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(vm1.mac, [2, 0, 0, 0, 0, 1]);
        assert_eq!(vm1.ifname(), "eth0");
        assert_eq!(vm1.route_table(), None);

        let (want2, _) = desired(&recs, "h-2");
        assert_eq!(want2["i-eni-3"][&0].gateway, Ipv4Addr::new(10, 0, 1, 1));
        // A host that is not registered yet has nothing.
        assert!(desired(&recs, "").0.is_empty());
    }

    #[test]
    fn every_device_index_becomes_its_eth() {
        let mut recs = records();
        attach(&mut recs, "eni-7", [10, 0, 1, 60], "i-eni-1", 1);
        attach(&mut recs, "eni-8", [10, 0, 1, 61], "i-eni-1", 3);
        std::sync::Arc::make_mut(recs.enis.get_mut("eni-7").expect("eni-7")).secondary_ips =
            vec![Ipv4Addr::new(10, 0, 1, 62)];
        let (want, skips) = desired(&recs, "h-1");
        assert!(skips.is_empty(), "{skips:?}");
        assert_eq!(
            names(&want),
            vec![
                t("i-eni-1", 0, "eni-1"),
                t("i-eni-1", 1, "eni-7"),
                t("i-eni-1", 3, "eni-8"),
                t("i-eni-4", 0, "eni-4"),
            ]
        );
        let eth1 = &want["i-eni-1"][&1];
        assert_eq!(eth1.ifname(), "eth1");
        assert_eq!(eth1.route_table(), Some(10001));
        assert_eq!(eth1.gateway, Ipv4Addr::new(10, 0, 1, 1));
        assert_eq!(eth1.subnet.to_string(), "10.0.1.0/24");
        assert_eq!(
            eth1.addresses().collect::<Vec<_>>(),
            vec![Ipv4Addr::new(10, 0, 1, 60), Ipv4Addr::new(10, 0, 1, 62)]
        );
        assert_eq!(want["i-eni-1"][&3].route_table(), Some(10003));
        // Another host sees none of it.
        assert!(!desired(&recs, "h-2").0.contains_key("i-eni-1"));
    }

    #[test]
    fn desired_reports_unknown_subnets_same_indexes_and_wild_indexes() {
        let mut recs = records();
        recs.subnets.remove("subnet-b");
        let (want, skips) = desired(&recs, "h-2");
        assert_eq!(names(&want), vec![t("i-eni-2", 0, "eni-2")]);
        assert_eq!(
            skips,
            vec![Skip::UnknownSubnet {
                eni_id: "eni-3".into(),
                subnet_id: "subnet-b".into()
            }]
        );
        assert_eq!(skips[0].reason(), "unknown_subnet");

        // Two ENIs at device index 0 of one instance: the lower id keeps it, whatever order.
        let mut recs = records();
        let mut second = (*recs.enis["eni-4"]).clone();
        second.eni_id = "eni-0".into();
        recs.enis
            .insert("eni-0".into(), std::sync::Arc::new(second));
        let (want, skips) = desired(&recs, "h-1");
        assert_eq!(
            names(&want),
            vec![t("i-eni-1", 0, "eni-1"), t("i-eni-4", 0, "eni-0")]
        );
        assert_eq!(
            skips,
            vec![Skip::SameDeviceIndex {
                eni_id: "eni-4".into(),
                instance_id: "i-eni-4".into(),
                device_index: 0,
                kept: "eni-0".into(),
            }]
        );
        assert_eq!(skips[0].eni_id(), "eni-4");

        // And at index 2; plus one far beyond any real index.
        let mut recs = records();
        attach(&mut recs, "eni-a", [10, 0, 1, 70], "i-eni-1", 2);
        attach(&mut recs, "eni-b", [10, 0, 1, 71], "i-eni-1", 2);
        attach(&mut recs, "eni-c", [10, 0, 1, 72], "i-eni-1", u32::MAX);
        let (want, skips) = desired(&recs, "h-1");
        assert_eq!(want["i-eni-1"][&2].eni_id, "eni-a");
        assert_eq!(want["i-eni-1"].len(), 2);
        assert_eq!(
            skips.iter().map(Skip::reason).collect::<Vec<_>>(),
            vec!["same_device_index", "device_index_out_of_range"]
        );
        assert!(skips.iter().all(|s| SKIP_REASONS.contains(&s.reason())));
    }

    #[test]
    fn plan_creates_namespaces_then_interfaces_and_deletes_empty_instances() {
        let recs = records();
        let (want, _) = desired(&recs, "h-1");
        let empty = Instances::new();

        let first = plan(&want, &empty);
        assert_eq!(
            first,
            vec![
                Step::CreateNamespace {
                    instance_id: "i-eni-1".into()
                },
                Step::CreateNamespace {
                    instance_id: "i-eni-4".into()
                },
                Step::AddInterface(want["i-eni-1"][&0].clone()),
                Step::AddInterface(want["i-eni-4"][&0].clone()),
            ]
        );
        // Converged: nothing to do.
        assert!(plan(&want, &want).is_empty());

        // eni-4 moved to another host (its instance has nothing left here), eni-1 got a new
        // address (its interface is re-added, the namespace stays).
        let mut recs2 = recs.clone();
        std::sync::Arc::make_mut(recs2.enis.get_mut("eni-4").expect("eni-4")).host_id =
            "h-2".into();
        std::sync::Arc::make_mut(recs2.enis.get_mut("eni-1").expect("eni-1")).ip =
            Ipv4Addr::new(10, 0, 0, 149);
        let (want2, _) = desired(&recs2, "h-1");
        assert_eq!(
            plan(&want2, &want),
            vec![
                Step::RemoveInterface(want["i-eni-1"][&0].clone()),
                Step::DeleteNamespace {
                    instance_id: "i-eni-4".into()
                },
                Step::AddInterface(want2["i-eni-1"][&0].clone()),
            ]
        );

        // Everything gone.
        let gone = plan(&empty, &want);
        assert_eq!(gone.len(), 2);
        assert!(gone
            .iter()
            .all(|s| matches!(s, Step::DeleteNamespace { .. })));

        // A namespace whose interface failed to come up gets just the interface next time.
        let mut half = want.clone();
        half.get_mut("i-eni-4").expect("vm4").clear();
        assert_eq!(
            plan(&want, &half),
            vec![Step::AddInterface(want["i-eni-4"][&0].clone())]
        );
    }

    #[test]
    fn attach_and_detach_touch_only_that_interface() {
        let recs = records();
        let (before, _) = desired(&recs, "h-1");
        let mut recs2 = recs.clone();
        attach(&mut recs2, "eni-7", [10, 0, 1, 60], "i-eni-1", 1);
        let (after, _) = desired(&recs2, "h-1");
        let eth1 = after["i-eni-1"][&1].clone();
        assert_eq!(
            plan(&after, &before),
            vec![Step::AddInterface(eth1.clone())]
        );
        assert_eq!(
            plan(&before, &after),
            vec![Step::RemoveInterface(eth1.clone())]
        );

        // Re-attached at another index of the same instance, in one go.
        let mut recs3 = recs2.clone();
        std::sync::Arc::make_mut(recs3.enis.get_mut("eni-7").expect("eni-7")).device_index = 2;
        let (moved, _) = desired(&recs3, "h-1");
        assert_eq!(
            plan(&moved, &after),
            vec![
                Step::RemoveInterface(eth1.clone()),
                Step::AddInterface(moved["i-eni-1"][&2].clone()),
            ]
        );

        // Moved to another local instance: removed from one, added to the other.
        let mut recs4 = recs2.clone();
        std::sync::Arc::make_mut(recs4.enis.get_mut("eni-7").expect("eni-7")).instance_id =
            "i-eni-4".into();
        let (other, _) = desired(&recs4, "h-1");
        assert_eq!(
            plan(&other, &after),
            vec![
                Step::RemoveInterface(eth1),
                Step::AddInterface(other["i-eni-4"][&1].clone()),
            ]
        );
    }

    #[test]
    fn a_secondary_eni_first_creates_the_namespace_which_lives_until_the_last_goes() {
        // The instance's primary ENI is not here (yet): its eth1 alone makes the namespace.
        let mut recs = records();
        attach(&mut recs, "eni-7", [10, 0, 1, 60], "i-x", 1);
        let (only1, _) = desired(&recs, "h-1");
        assert_eq!(only1["i-x"].keys().collect::<Vec<_>>(), vec![&1]);
        let (base, _) = desired(&records(), "h-1");
        let p = plan(&only1, &base);
        assert_eq!(
            p,
            vec![
                Step::CreateNamespace {
                    instance_id: "i-x".into()
                },
                Step::AddInterface(only1["i-x"][&1].clone()),
            ]
        );

        // eth0 arrives later: added next to eth1, no new namespace.
        attach(&mut recs, "eni-6", [10, 0, 1, 59], "i-x", 0);
        let (both, _) = desired(&recs, "h-1");
        assert_eq!(
            plan(&both, &only1),
            vec![Step::AddInterface(both["i-x"][&0].clone())]
        );

        // eth0 leaves (instance stopped elsewhere, say): eth1 keeps the namespace.
        assert_eq!(
            plan(&only1, &both),
            vec![Step::RemoveInterface(both["i-x"][&0].clone())]
        );
        // The last one leaves: the namespace goes.
        assert_eq!(
            plan(&base, &only1),
            vec![Step::DeleteNamespace {
                instance_id: "i-x".into()
            }]
        );
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
        let mut recs = records();
        attach(&mut recs, "eni-7", [10, 0, 1, 60], "i-eni-1", 1);
        let (want, _) = desired(&recs, "h-1");
        assert!(want["i-eni-1"][&1].secondary_ips.is_empty());
        let mut recs2 = recs.clone();
        let extra = Ipv4Addr::new(10, 0, 1, 77);
        std::sync::Arc::make_mut(recs2.enis.get_mut("eni-7").expect("eni-7")).secondary_ips =
            vec![extra];
        let (want2, _) = desired(&recs2, "h-1");
        assert_eq!(want2["i-eni-1"][&1].secondary_ips, vec![extra]);
        let update = Step::UpdateSecondary {
            old: want["i-eni-1"][&1].clone(),
            new: want2["i-eni-1"][&1].clone(),
        };
        assert_eq!(plan(&want2, &want), vec![update]);
        // And back.
        assert_eq!(
            plan(&want, &want2),
            vec![Step::UpdateSecondary {
                old: want2["i-eni-1"][&1].clone(),
                new: want["i-eni-1"][&1].clone(),
            }]
        );
        // A new primary address still re-adds the interface, whatever the secondary ones do.
        std::sync::Arc::make_mut(recs2.enis.get_mut("eni-7").expect("eni-7")).ip =
            Ipv4Addr::new(10, 0, 1, 149);
        let (want3, _) = desired(&recs2, "h-1");
        assert_eq!(
            plan(&want3, &want),
            vec![
                Step::RemoveInterface(want["i-eni-1"][&1].clone()),
                Step::AddInterface(want3["i-eni-1"][&1].clone()),
            ]
        );
    }
}
