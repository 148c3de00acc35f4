//! The agent end on its own: records checked field by field, Snapshots, Deltas, Heartbeats,
//! resume points and protocol errors.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use pb::change::Kind as C;
use pb::watch_response::Kind as W;
use softvpc_mapping::record::{format_mac, parse_mac};
use softvpc_mapping::{
    Applied, EniRecord, HostRecord, ProtocolError, RecordError, Records, Replica, SubnetRecord,
    VpcRecord,
};
use softvpc_proto::pb;

fn pb_host(id: &str, ip: &str) -> pb::Host {
    pb::Host {
        host_id: id.into(),
        name: format!("name-{id}"),
        underlay_ip: ip.into(),
    }
}

fn pb_vpc(id: &str, vni: u32, cidr: &str) -> pb::Vpc {
    pb::Vpc {
        vpc_id: id.into(),
        vni,
        cidrs: vec![cidr.into()],
        services: None,
    }
}

fn pb_subnet(id: &str, vpc: &str, cidr: &str) -> pb::Subnet {
    pb::Subnet {
        subnet_id: id.into(),
        vpc_id: vpc.into(),
        cidr: cidr.into(),
    }
}

fn pb_eni(id: &str, vpc: &str, vni: u32, subnet: &str, ip: &str, host: &str) -> pb::Eni {
    pb::Eni {
        eni_id: id.into(),
        vpc_id: vpc.into(),
        vni,
        subnet_id: subnet.into(),
        ip: ip.into(),
        secondary_ips: vec![],
        mac: "02:00:00:00:00:01".into(),
        host_id: host.into(),
        host_underlay_ip: if host.is_empty() {
            String::new()
        } else {
            "198.18.0.11".into()
        },
        instance_id: format!("i-{id}"),
        instance_name: String::new(),
        device_index: 0,
        ..Default::default()
    }
}

fn snapshot(epoch: &str, revision: u64, s: pb::Snapshot) -> pb::WatchResponse {
    pb::WatchResponse {
        epoch: epoch.into(),
        revision,
        kind: Some(W::Snapshot(s)),
    }
}

fn delta(epoch: &str, revision: u64, changes: Vec<C>) -> pb::WatchResponse {
    pb::WatchResponse {
        epoch: epoch.into(),
        revision,
        kind: Some(W::Delta(pb::Delta {
            changes: changes
                .into_iter()
                .map(|k| pb::Change { kind: Some(k) })
                .collect(),
        })),
    }
}

fn base_snapshot() -> pb::Snapshot {
    pb::Snapshot {
        hosts: vec![pb_host("h-1", "198.18.0.11"), pb_host("h-2", "198.18.0.12")],
        vpcs: vec![pb_vpc("vpc-a", 0x101, "10.0.0.0/16")],
        subnets: vec![pb_subnet("subnet-a", "vpc-a", "10.0.0.0/24")],
        enis: vec![pb_eni(
            "eni-1",
            "vpc-a",
            0x101,
            "subnet-a",
            "10.0.0.148",
            "h-1",
        )],
        ..Default::default()
    }
}

#[test]
fn macs_parse_and_format() {
    let mac = parse_mac("02:Ab:cd:00:ff:10").expect("valid");
    assert_eq!(mac, [0x02, 0xab, 0xcd, 0x00, 0xff, 0x10]);
    assert_eq!(format_mac(&mac), "02:ab:cd:00:ff:10");
    for bad in [
        "",
        "02:ab:cd:00:ff",
        "02:ab:cd:00:ff:10:11",
        "02:ab:cd:00:ff:1",
        "zz:ab:cd:00:ff:10",
        "02-ab-cd-00-ff-10",
        "+2:ab:cd:00:ff:10",
    ] {
        assert_eq!(parse_mac(bad), None, "{bad:?}");
    }
}

#[test]
fn eni_converts_every_field() {
    let mut e = pb_eni("eni-1", "vpc-a", 0x101, "subnet-a", "10.0.0.148", "h-1");
    e.secondary_ips = vec!["10.0.0.149".into()];
    e.instance_name = "zigi-vm1".into();
    let info = EniRecord::from_pb(&e).expect("valid");
    assert_eq!(info.vni, 0x101);
    assert_eq!(info.ip, Ipv4Addr::new(10, 0, 0, 148));
    assert_eq!(info.secondary_ips, vec![Ipv4Addr::new(10, 0, 0, 149)]);
    assert_eq!(info.mac, [2, 0, 0, 0, 0, 1]);
    assert_eq!(info.host_underlay_ip, Some(Ipv4Addr::new(198, 18, 0, 11)));
    assert_eq!(info.instance_id, "i-eni-1");
    assert_eq!(info.instance_name, "zigi-vm1");
    // Unplaced ENI: no underlay address.
    let unplaced = EniRecord::from_pb(&pb_eni("eni-2", "vpc-a", 0x101, "subnet-a", "10.0.0.5", ""))
        .expect("valid");
    assert_eq!(unplaced.host_underlay_ip, None);
}

#[test]
fn bad_records_are_refused_with_the_field() {
    let mut e = pb_eni("eni-1", "vpc-a", 0x101, "subnet-a", "10.0.0.300", "h-1");
    assert!(matches!(
        EniRecord::from_pb(&e),
        Err(RecordError::BadField { field: "ip", .. })
    ));
    e.ip = "10.0.0.1".into();
    e.mac = "02:00".into();
    assert!(matches!(
        EniRecord::from_pb(&e),
        Err(RecordError::BadField { field: "mac", .. })
    ));
    e.mac = "02:00:00:00:00:01".into();
    e.vni = 0x0100_0000;
    assert!(matches!(
        EniRecord::from_pb(&e),
        Err(RecordError::BadField { field: "vni", .. })
    ));
    e.vni = 1;
    e.host_underlay_ip = "host-1".into();
    assert!(matches!(
        EniRecord::from_pb(&e),
        Err(RecordError::BadField {
            field: "host_underlay_ip",
            ..
        })
    ));
    e.eni_id.clear();
    assert_eq!(
        EniRecord::from_pb(&e),
        Err(RecordError::MissingId { kind: "eni" })
    );
    assert!(matches!(
        VpcRecord::from_pb(&pb_vpc("vpc-a", 1, "10.0.0.0/33")),
        Err(RecordError::BadField { field: "cidr", .. })
    ));
    assert!(matches!(
        SubnetRecord::from_pb(&pb_subnet("subnet-a", "vpc-a", "nonsense")),
        Err(RecordError::BadField { field: "cidr", .. })
    ));
    assert!(HostRecord::from_pb(&pb_host("h-1", "::1")).is_err());
    // CIDRs with host bits are normalised, not refused.
    let v = VpcRecord::from_pb(&pb_vpc("vpc-a", 1, "10.0.3.7/16")).expect("valid");
    assert_eq!(
        v.cidrs,
        vec!["10.0.0.0/16".parse::<Ipv4Net>().expect("net")]
    );
}

#[test]
fn snapshot_skips_bad_records_and_keeps_the_rest() {
    let mut s = base_snapshot();
    s.enis.push(pb_eni(
        "eni-bad",
        "vpc-a",
        0x101,
        "subnet-a",
        "not-an-ip",
        "h-1",
    ));
    s.hosts.push(pb_host("", "198.18.0.13"));
    let (records, errors) = Records::from_snapshot(&s);
    assert_eq!(errors.len(), 2);
    assert_eq!(records.hosts.len(), 2);
    assert_eq!(records.enis.keys().collect::<Vec<_>>(), vec!["eni-1"]);
    assert_eq!(records.vpcs["vpc-a"].vni, 0x101);
}

#[test]
fn snapshot_replaces_everything() {
    let mut view = Replica::default();
    let first = view
        .apply(&snapshot("e1", 5, base_snapshot()))
        .expect("apply");
    assert_eq!(
        first,
        Applied::Snapshot {
            resync: false,
            skipped: vec![]
        }
    );
    assert_eq!(view.records.enis.len(), 1);

    let other = pb::Snapshot {
        hosts: vec![pb_host("h-9", "198.18.0.19")],
        vpcs: vec![pb_vpc("vpc-b", 0x102, "10.0.0.0/16")],
        ..Default::default()
    };
    let second = view.apply(&snapshot("e2", 3, other)).expect("apply");
    assert_eq!(
        second,
        Applied::Snapshot {
            resync: true,
            skipped: vec![]
        }
    );
    assert_eq!(view.epoch, "e2");
    // A new epoch may restart revisions lower: the snapshot's revision is taken as is.
    assert_eq!(view.revision, 3);
    assert!(view.records.enis.is_empty());
    assert!(view.records.subnets.is_empty());
    assert_eq!(view.records.hosts.keys().collect::<Vec<_>>(), vec!["h-9"]);
    assert_eq!(view.records.vpcs.keys().collect::<Vec<_>>(), vec!["vpc-b"]);
}

#[test]
fn deltas_apply_in_order() {
    let mut view = Replica::default();
    view.apply(&snapshot("e1", 5, base_snapshot()))
        .expect("apply");
    let moved = pb_eni("eni-1", "vpc-a", 0x101, "subnet-a", "10.0.0.148", "h-2");
    let changes = vec![
        C::UpsertEni(pb_eni(
            "eni-2",
            "vpc-a",
            0x101,
            "subnet-a",
            "10.0.0.185",
            "h-2",
        )),
        C::UpsertEni(moved),
        C::DeleteEniId("eni-2".into()),
        C::UpsertHost(pb_host("h-3", "198.18.0.13")),
        C::DeleteHostId("h-2".into()),
        C::UpsertSubnet(pb_subnet("subnet-b", "vpc-a", "10.0.1.0/24")),
        C::DeleteEniId("eni-never-held".into()),
    ];
    let applied = view.apply(&delta("e1", 6, changes)).expect("apply");
    assert_eq!(
        applied,
        Applied::Delta {
            changes: 7,
            skipped: vec![]
        }
    );
    assert_eq!(view.revision, 6);
    // Upsert then delete of eni-2 leaves nothing; eni-1's second upsert wins.
    assert_eq!(view.records.enis.keys().collect::<Vec<_>>(), vec!["eni-1"]);
    assert_eq!(view.records.enis["eni-1"].host_id, "h-2");
    assert_eq!(
        view.records.hosts.keys().collect::<Vec<_>>(),
        vec!["h-1", "h-3"]
    );
    assert_eq!(view.records.subnets.len(), 2);
}

#[test]
fn deleting_a_vpc_drops_its_subnets_and_enis() {
    let mut s = base_snapshot();
    s.vpcs.push(pb_vpc("vpc-b", 0x102, "10.0.0.0/16"));
    s.subnets
        .push(pb_subnet("subnet-b", "vpc-b", "10.0.0.0/24"));
    s.enis.push(pb_eni(
        "eni-b",
        "vpc-b",
        0x102,
        "subnet-b",
        "10.0.0.148",
        "h-1",
    ));
    let mut view = Replica::default();
    view.apply(&snapshot("e1", 1, s)).expect("apply");
    view.apply(&delta("e1", 2, vec![C::DeleteVpcId("vpc-a".into())]))
        .expect("apply");
    assert_eq!(view.records.vpcs.keys().collect::<Vec<_>>(), vec!["vpc-b"]);
    assert_eq!(
        view.records.subnets.keys().collect::<Vec<_>>(),
        vec!["subnet-b"]
    );
    assert_eq!(view.records.enis.keys().collect::<Vec<_>>(), vec!["eni-b"]);
}

#[test]
fn a_bad_change_is_skipped_and_the_rest_applied() {
    let mut view = Replica::default();
    view.apply(&snapshot("e1", 1, base_snapshot()))
        .expect("apply");
    let changes = vec![
        C::UpsertEni(pb_eni("eni-x", "vpc-a", 0x101, "subnet-a", "bogus", "h-1")),
        C::UpsertEni(pb_eni(
            "eni-2",
            "vpc-a",
            0x101,
            "subnet-a",
            "10.0.0.185",
            "h-2",
        )),
    ];
    let Applied::Delta { changes, skipped } = view.apply(&delta("e1", 2, changes)).expect("ok")
    else {
        panic!("not a delta");
    };
    assert_eq!(changes, 2);
    assert_eq!(skipped.len(), 1);
    assert!(view.records.enis.contains_key("eni-2"));
    assert!(!view.records.enis.contains_key("eni-x"));
}

#[test]
fn resume_state_and_protocol_checks() {
    let mut view = Replica::default();
    // Nothing held: ask for a snapshot.
    let req = view.watch_request("h-1");
    assert_eq!((req.epoch.as_str(), req.revision), ("", 0));
    assert!(req.held_vpc_ids.is_empty());
    // A delta before any snapshot cannot be applied.
    assert!(matches!(
        view.apply(&delta("e1", 1, vec![])),
        Err(ProtocolError::EpochMismatch { .. })
    ));

    view.apply(&snapshot("e1", 10, base_snapshot()))
        .expect("apply");
    view.apply(&pb::WatchResponse {
        epoch: "e1".into(),
        revision: 12,
        kind: Some(W::Heartbeat(pb::Heartbeat {})),
    })
    .expect("heartbeat");
    let req = view.watch_request("h-1");
    assert_eq!(req.host_id, "h-1");
    assert_eq!((req.epoch.as_str(), req.revision), ("e1", 12));
    assert_eq!(req.held_vpc_ids, vec!["vpc-a".to_string()]);

    // Replays of applied revisions are ignored.
    let before = view.clone();
    let replay = delta("e1", 12, vec![C::DeleteVpcId("vpc-a".into())]);
    assert_eq!(view.apply(&replay), Ok(Applied::Stale));
    assert_eq!(view, before);
    // A delta from another epoch is refused and changes nothing.
    assert!(view.apply(&delta("e0", 13, vec![])).is_err());
    assert!(view
        .apply(&pb::WatchResponse {
            epoch: "e1".into(),
            revision: 13,
            kind: None
        })
        .is_err());
    assert_eq!(view, before);

    view.reset_resume_point();
    let req = view.watch_request("h-1");
    assert_eq!((req.epoch.as_str(), req.revision), ("", 0));
    // The snapshot that follows a reset is a resync, not a first sync.
    let again = view
        .apply(&snapshot("e2", 1, base_snapshot()))
        .expect("apply");
    assert_eq!(
        again,
        Applied::Snapshot {
            resync: true,
            skipped: vec![]
        }
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use softvpc_mapping::{
        policy, Change, NetworkAclRecord, PeeringRecord, PublicAddress, RouteTableRecord,
        SecurityGroupRecord,
    };
    use softvpc_policy::conntrack::ConnectionTrackingSpec;
    use softvpc_policy::nacl::AclEntry;
    use softvpc_policy::route::{Route, RouteState, Target};
    use softvpc_policy::secgroup::{Peer, SgRule};

    fn addr() -> impl Strategy<Value = Ipv4Addr> {
        any::<u32>().prop_map(Ipv4Addr::from)
    }

    fn eni() -> impl Strategy<Value = EniRecord> {
        (
            "eni-[0-9a-f]{1,17}",
            0u32..=0xff_ffff,
            addr(),
            proptest::collection::vec(addr(), 0..3),
            any::<[u8; 6]>(),
            proptest::option::of(addr()),
            proptest::collection::vec("sg-[0-9a-f]{1,8}", 0..3),
            proptest::collection::vec((addr(), addr()), 0..2),
            any::<u32>(),
            (
                any::<bool>(),
                proptest::option::of(60u32..=432_000),
                proptest::option::of(60u32..=180),
                proptest::option::of(30u32..=60),
            ),
        )
            .prop_map(
                |(
                    id,
                    vni,
                    ip,
                    secondary_ips,
                    mac,
                    underlay,
                    sgs,
                    pubs,
                    index,
                    (check, tcp, stream, udp),
                )| EniRecord {
                    eni_id: id,
                    vpc_id: "vpc-1".into(),
                    vni,
                    subnet_id: "subnet-1".into(),
                    ip,
                    secondary_ips,
                    mac,
                    host_id: if underlay.is_some() {
                        "h-1".into()
                    } else {
                        String::new()
                    },
                    host_underlay_ip: underlay,
                    instance_id: "i-1".into(),
                    instance_name: "vm".into(),
                    device_index: index,
                    security_group_ids: sgs,
                    public_addresses: pubs
                        .into_iter()
                        .map(|(public_ip, private_ip)| PublicAddress {
                            public_ip,
                            private_ip,
                        })
                        .collect(),
                    source_dest_check: check,
                    connection_tracking: ConnectionTrackingSpec {
                        tcp_established_timeout: tcp,
                        udp_stream_timeout: stream,
                        udp_timeout: udp,
                    },
                    flow_logs: vec![],
                    nat_gateway_id: String::new(),
                    instance_metadata: None,
                },
            )
    }

    fn net() -> impl Strategy<Value = Ipv4Net> {
        (addr(), 0u8..=32).prop_map(|(a, p)| Ipv4Net::new(a, p).expect("prefix").trunc())
    }

    /// AWS's fields of a valid rule: protocol as the API reports it, and its ports.
    fn aws_match() -> impl Strategy<Value = (String, Option<i32>, Option<i32>)> {
        prop_oneof![
            (
                prop_oneof![Just("tcp"), Just("udp")],
                0i32..=65535,
                0i32..=65535
            )
                .prop_map(|(p, a, b)| (p.to_string(), Some(a.min(b)), Some(a.max(b)))),
            (-1i32..=255, -1i32..=255).prop_map(|(t, c)| {
                (
                    "icmp".to_string(),
                    Some(t),
                    Some(if t == -1 { -1 } else { c }),
                )
            }),
            Just(("-1".to_string(), None, None)),
            (0u8..=255).prop_map(|n| (n.to_string(), None, None)),
        ]
    }

    fn sg_rule() -> impl Strategy<Value = SgRule> {
        (
            "sgr-[0-9a-f]{1,17}",
            any::<bool>(),
            aws_match(),
            prop_oneof![
                net().prop_map(Peer::Cidr),
                "sg-[0-9a-f]{1,8}".prop_map(Peer::Group)
            ],
        )
            .prop_map(|(id, egress, (p, from, to), peer)| {
                policy::sg_rule(&id, "sg-1", egress, &p, from, to, peer).expect("valid")
            })
    }

    fn acl_entry() -> impl Strategy<Value = AclEntry> {
        (
            1u16..=32766,
            any::<bool>(),
            aws_match(),
            any::<bool>(),
            net(),
        )
            .prop_map(|(n, egress, (p, from, to), allow, cidr)| {
                let proto = match p.as_str() {
                    "tcp" => "6".to_string(),
                    "udp" => "17".to_string(),
                    "icmp" => "1".to_string(),
                    _ => p,
                };
                let ports = match proto.as_str() {
                    "6" | "17" => Some((from.unwrap_or(0) as u16, to.unwrap_or(0) as u16)),
                    _ => None,
                };
                let icmp = (proto == "1").then(|| (from.unwrap_or(-1), to.unwrap_or(-1)));
                policy::acl_entry(n, egress, &proto, allow, cidr, ports, icmp).expect("valid")
            })
    }

    fn route() -> impl Strategy<Value = Route> {
        (
            net(),
            prop_oneof![
                Just(Target::Local),
                "eni-[0-9a-f]{1,8}".prop_map(Target::NetworkInterface),
                "pcx-[0-9a-f]{1,8}".prop_map(Target::VpcPeeringConnection),
                "igw-[0-9a-f]{1,8}".prop_map(Target::InternetGateway),
                "nat-[0-9a-f]{1,8}".prop_map(Target::NatGateway),
            ],
            any::<bool>(),
        )
            .prop_map(|(destination, target, blackhole)| Route {
                destination,
                target,
                state: if blackhole {
                    RouteState::Blackhole
                } else {
                    RouteState::Active
                },
            })
    }

    fn policy_changes() -> impl Strategy<Value = Vec<Change>> {
        (
            proptest::collection::vec(sg_rule(), 0..6),
            proptest::collection::vec(acl_entry(), 0..6),
            proptest::collection::vec(route(), 0..6),
            any::<bool>(),
            (net(), net(), "[a-z-]{0,20}"),
        )
            .prop_map(|(rules, entries, routes, main, (a, b, status))| {
                vec![
                    Change::UpsertSecurityGroup(SecurityGroupRecord {
                        group_id: "sg-1".into(),
                        vpc_id: "vpc-1".into(),
                        rules,
                    }),
                    Change::UpsertNetworkAcl(NetworkAclRecord {
                        acl_id: "acl-1".into(),
                        vpc_id: "vpc-1".into(),
                        entries,
                        subnet_ids: vec!["subnet-1".into()],
                    }),
                    Change::UpsertRouteTable(RouteTableRecord {
                        table_id: "rtb-1".into(),
                        vpc_id: "vpc-1".into(),
                        main,
                        routes,
                        prefix_list_routes: vec![],
                        subnet_ids: vec!["subnet-2".into()],
                    }),
                    Change::UpsertPeering(PeeringRecord {
                        pcx_id: "pcx-1".into(),
                        requester_vpc_id: "vpc-1".into(),
                        requester_cidrs: vec![a],
                        accepter_vpc_id: "vpc-2".into(),
                        accepter_cidrs: vec![b],
                        status,
                    }),
                ]
            })
    }

    proptest! {
        /// What the server sends, the agent reads back unchanged.
        #[test]
        fn records_survive_the_wire(e in eni(), prefix in 0u8..=32, net in addr()) {
            let change = Change::UpsertEni(e.clone());
            prop_assert_eq!(Change::from_pb(&change.to_pb()), Ok(Some(change)));
            let cidr = Ipv4Net::new(net, prefix).expect("prefix").trunc();
            let v = VpcRecord { vpc_id: "vpc-1".into(), vni: e.vni, cidrs: vec![cidr], services: Default::default() };
            prop_assert_eq!(VpcRecord::from_pb(&v.to_pb()), Ok(v));
        }

        /// Security groups, ACLs, route tables and peering connections, likewise.
        #[test]
        fn policy_records_survive_the_wire(changes in policy_changes()) {
            for c in changes {
                prop_assert_eq!(Change::from_pb(&c.to_pb()), Ok(Some(c)));
            }
        }

        /// Whatever numbers and strings a policy message holds, conversion answers, never panics.
        #[test]
        fn any_policy_message_is_checked(
            protocol in any::<i32>(), from in any::<i32>(), to in any::<i32>(),
            number in any::<u32>(), cidr in ".{0,20}", egress in any::<bool>(),
            timeouts in any::<(u32, u32, u32)>(),
        ) {
            let m = Some(pb::PortMatch { protocol, from_port: from, to_port: to });
            let g = pb::SecurityGroup {
                group_id: "sg-1".into(),
                rules: vec![pb::SecurityGroupRule {
                    rule_id: "sgr-1".into(),
                    egress,
                    r#match: m,
                    peer: Some(pb::security_group_rule::Peer::Cidr(cidr.clone())),
                }],
                ..Default::default()
            };
            let _ = SecurityGroupRecord::from_pb(&g);
            let a = pb::NetworkAcl {
                acl_id: "acl-1".into(),
                entries: vec![pb::NetworkAclEntry {
                    rule_number: number, egress, allow: true, cidr: cidr.clone(), r#match: m,
                }],
                ..Default::default()
            };
            let _ = NetworkAclRecord::from_pb(&a);
            let t = pb::RouteTable {
                table_id: "rtb-1".into(),
                routes: vec![pb::Route {
                    destination: cidr,
                    target: None,
                    blackhole: egress,
                    ..Default::default()
                }],
                ..Default::default()
            };
            prop_assert!(RouteTableRecord::from_pb(&t).is_err(), "a route without a target");
            let e = pb::Eni {
                eni_id: "eni-1".into(),
                ip: "10.0.0.4".into(),
                mac: "02:00:00:00:00:01".into(),
                connection_tracking: Some(pb::ConnectionTracking {
                    tcp_established_timeout: timeouts.0,
                    udp_stream_timeout: timeouts.1,
                    udp_timeout: timeouts.2,
                }),
                ..Default::default()
            };
            if let Ok(e) = EniRecord::from_pb(&e) {
                prop_assert!(softvpc_policy::conntrack::Timeouts::from_spec(&e.connection_tracking).is_ok());
            }
        }

        /// Whatever strings arrive, conversion answers (a record or an error), never panics.
        #[test]
        fn any_eni_message_is_checked(
            ip in ".{0,20}", mac in ".{0,20}", underlay in ".{0,20}", vni in any::<u32>(),
            public in ".{0,20}",
        ) {
            let m = pb::Eni {
                eni_id: "eni-1".into(),
                ip,
                mac,
                host_underlay_ip: underlay,
                vni,
                public_addresses: vec![pb::PublicAddress { public_ip: public, private_ip: "10.0.0.1".into() }],
                ..Default::default()
            };
            if let Ok(e) = EniRecord::from_pb(&m) {
                prop_assert!(e.vni <= 0xff_ffff);
            }
        }
    }
}

/// The agent publishes its records by sharing them (`Arc`), not copying: what it published
/// stays exactly as it was while later Deltas change the replica, and a message that changes
/// nothing (Heartbeat, replay) keeps the records shared.
#[test]
fn published_records_are_shared_and_never_change_under_a_delta() {
    use std::sync::Arc;
    let mut view = Replica::default();
    view.apply(&snapshot("e1", 10, base_snapshot()))
        .expect("apply");
    let published = Arc::clone(&view.records);
    let as_published = (*published).clone();

    view.apply(&pb::WatchResponse {
        epoch: "e1".into(),
        revision: 11,
        kind: Some(W::Heartbeat(pb::Heartbeat {})),
    })
    .expect("heartbeat");
    assert!(
        Arc::ptr_eq(&published, &view.records),
        "a heartbeat copied the records"
    );
    assert_eq!(
        view.apply(&delta("e1", 11, vec![C::DeleteVpcId("vpc-a".into())])),
        Ok(Applied::Stale)
    );
    assert!(
        Arc::ptr_eq(&published, &view.records),
        "a replay copied the records"
    );

    let moved = pb_eni("eni-1", "vpc-a", 0x101, "subnet-a", "10.0.0.148", "h-2");
    view.apply(&delta("e1", 12, vec![C::UpsertEni(moved)]))
        .expect("delta");
    assert_eq!(view.records.enis["eni-1"].host_id, "h-2");
    assert_eq!(*published, as_published, "the published view changed");
    assert_eq!(published.enis["eni-1"].host_id, "h-1");

    // Once nothing else holds them, a Delta changes the records in place.
    drop(published);
    let before = Arc::as_ptr(&view.records);
    view.apply(&delta("e1", 13, vec![C::DeleteEniId("eni-1".into())]))
        .expect("delta");
    assert!(view.records.enis.is_empty());
    assert_eq!(
        Arc::as_ptr(&view.records),
        before,
        "unshared records were copied"
    );
}

/// `Records`' maps are persistent: a Delta applied while a view of 1,000 ENIs is published
/// copies the path to the records it changes, not the view. Every other ENI is the very record
/// the published view holds, and the maps the Delta did not touch are the same maps.
#[test]
fn a_delta_under_a_published_view_shares_what_it_does_not_change() {
    use std::sync::Arc;
    let mut s = base_snapshot();
    s.enis = (0..1000u32)
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 0, 4, 0)) + i);
            pb_eni(
                &format!("eni-{i:04}"),
                "vpc-a",
                0x101,
                "subnet-a",
                &ip.to_string(),
                "h-1",
            )
        })
        .collect();
    let mut view = Replica::default();
    view.apply(&snapshot("e1", 10, s)).expect("apply");
    let published = Arc::clone(&view.records);

    let moved = pb_eni("eni-0500", "vpc-a", 0x101, "subnet-a", "10.0.5.244", "h-2");
    view.apply(&delta(
        "e1",
        11,
        vec![C::UpsertEni(moved), C::DeleteEniId("eni-0007".into())],
    ))
    .expect("delta");
    assert!(!Arc::ptr_eq(&published, &view.records));
    assert_eq!(published.enis.len(), 1000);
    assert_eq!(published.enis["eni-0500"].host_id, "h-1");
    assert_eq!(view.records.enis.len(), 999);
    assert_eq!(view.records.enis["eni-0500"].host_id, "h-2");
    assert!(!view.records.enis.contains_key("eni-0007"));
    let copied: Vec<&String> = published
        .enis
        .iter()
        .filter(|(id, e)| {
            view.records
                .enis
                .get(*id)
                .is_none_or(|now| !Arc::ptr_eq(e, now))
        })
        .map(|(id, _)| id)
        .collect();
    assert_eq!(copied, ["eni-0007", "eni-0500"], "records copied or lost");
    assert!(published.hosts.ptr_eq(&view.records.hosts));
    assert!(published.vpcs.ptr_eq(&view.records.vpcs));
    assert!(published.subnets.ptr_eq(&view.records.subnets));
    assert!(!published.enis.ptr_eq(&view.records.enis));
}
