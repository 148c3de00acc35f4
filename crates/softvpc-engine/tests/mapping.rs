//! The mapping table: how records become the data path's view, table swaps, and counters as
//! metrics.

mod common;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use common::*;
use softvpc_engine::{router_mac, DropReason, Location, Output, Path, PortId, Vni};

#[test]
fn router_mac_is_prefix_plus_vni() {
    assert_eq!(
        router_mac(Vni(0x000101)),
        [0x0a, 0x56, 0x50, 0x00, 0x01, 0x01]
    );
    assert_eq!(
        router_mac(Vni(0xabcdef)),
        [0x0a, 0x56, 0x50, 0xab, 0xcd, 0xef]
    );
}

#[test]
fn build_places_enis_local_or_remote_per_vni() {
    let t = table(&seed_records(), HOST1, &ports_of(HOST1));
    assert_eq!(t.local_underlay_ip(), Some(HOST1));
    assert_eq!(t.len(), 6);
    let vm1 = t.eni_by_ip(VNI1, VM1.ip).unwrap();
    assert_eq!(vm1.mac, VM1.mac);
    assert_eq!(vm1.location, Location::Local(VM1.port));
    let other1 = t.eni_by_ip(VNI2, OTHER1.ip).unwrap();
    assert_eq!(other1.mac, OTHER1.mac, "same IP, other VPC, other ENI");
    assert_eq!(
        t.eni_by_ip(VNI1, VM2.ip).unwrap().location,
        Location::Remote(HOST2)
    );
    assert_eq!(t.eni_by_ip(VNI1, VM2_SECONDARY).unwrap().mac, VM2.mac);
    assert!(t.eni_by_ip(VNI2, VM4.ip).is_none());
    assert!(t.eni_by_ip(Vni(0x999), VM1.ip).is_none());
    assert_eq!(t.eni_on_port(VM4.port).unwrap().ip, VM4.ip);
    assert!(t.eni_on_port(VM2.port).is_none());
    let mut local: Vec<_> = t.local_enis().map(|(p, e)| (p, e.ip)).collect();
    local.sort();
    assert_eq!(
        local,
        vec![
            (VM1.port, VM1.ip),
            (VM4.port, VM4.ip),
            (OTHER1.port, OTHER1.ip)
        ]
    );
    assert!(t.is_registered_host(HOST2));
    assert!(!t.is_registered_host(Ipv4Addr::new(198, 18, 0, 13)));
    let r = t.router_subnet(VNI1, Ipv4Addr::new(10, 0, 1, 1)).unwrap();
    assert_eq!(r.cidr.to_string(), "10.0.1.0/24");
    assert!(t.router_subnet(VNI2, Ipv4Addr::new(10, 0, 1, 1)).is_none());
    assert_eq!(t.vpc(VNI2).unwrap().router_mac, ROUTER2);
    let sub = t.subnet(vm1.subnet.unwrap()).unwrap();
    assert_eq!(sub.router_ip, Ipv4Addr::new(10, 0, 0, 1));
}

#[test]
fn enis_without_port_or_host_are_absent() {
    let mut records = seed_records();
    let mut unplaced = eni_info(&VM4);
    unplaced.eni_id = "eni-0000000000000000f".into();
    unplaced.ip = Ipv4Addr::new(10, 0, 0, 40);
    unplaced.mac = [2, 0, 0, 0, 0xff, 0xff];
    unplaced.host_underlay_ip = None;
    records.enis.insert(unplaced.eni_id.clone(), unplaced);
    // zigi-vm4 has no TAP yet on host-1.
    let mut ports = ports_of(HOST1);
    ports.remove(VM4.eni);
    let t = table(&records, HOST1, &ports);
    assert!(t.eni_by_ip(VNI1, VM4.ip).is_none());
    assert!(t.eni_by_ip(VNI1, Ipv4Addr::new(10, 0, 0, 40)).is_none());
    assert!(t.eni_on_port(VM4.port).is_none());
    assert_eq!(t.len(), 5);
}

#[test]
fn duplicate_address_in_a_vpc_keeps_the_first_owner() {
    let mut records = seed_records();
    let mut dup = eni_info(&VM2);
    dup.eni_id = "eni-00000000000000099".into(); // sorts after zigi-vm2's id
    dup.mac = [2, 0, 0, 0, 9, 9];
    records.enis.insert(dup.eni_id.clone(), dup);
    let t = table(&records, HOST1, &ports_of(HOST1));
    assert_eq!(t.eni_by_ip(VNI1, VM2.ip).unwrap().mac, VM2.mac);
}

#[test]
fn swapping_the_table_changes_behaviour_at_once() {
    // Lifecycle: zigi-vm2 is terminated; host-1 stops answering ARP for it and routing to it.
    let mut e = seed_engine(HOST1);
    let frame = udp(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 1, 2, b"x");
    assert_eq!(egress(&mut e, VM1.port, &frame).to_underlay.len(), 1);
    let mut records = seed_records();
    records.enis.remove(VM2.eni);
    e.set_table(Arc::new(table(&records, HOST1, &ports_of(HOST1))));
    assert!(egress(&mut e, VM1.port, &frame).is_empty());
    assert!(egress(&mut e, VM1.port, &arp_request(&VM1, VM2.ip)).is_empty());
    assert_eq!(e.counters().drops(DropReason::NoRoute), 1);
    assert_eq!(e.counters().drops(DropReason::ArpUnanswered), 1);

    // Its port is reused by a new ENI on host-2: the new ENI's MAC is what counts there.
    let mut e2 = seed_engine(HOST2);
    let mut records = seed_records();
    let mut new = eni_info(&VM2);
    records.enis.remove(VM2.eni);
    new.eni_id = "eni-000000000000000aa".into();
    new.mac = [2, 0, 0, 0, 0xaa, 0xaa];
    records.enis.insert(new.eni_id.clone(), new.clone());
    let ports: HashMap<String, PortId> = [(new.eni_id.clone(), VM2.port)].into();
    e2.set_table(Arc::new(table(&records, HOST2, &ports)));
    let old_mac_frame = udp(VM2.mac, VM3.mac, VM2.ip, VM3.ip, 1, 2, b"x");
    assert!(egress(&mut e2, VM2.port, &old_mac_frame).is_empty());
    assert_eq!(e2.counters().drops(DropReason::SpoofedSource), 1);
}

#[test]
fn build_is_linear_and_handles_many_enis() {
    // 10k ENIs over 100 VPCs reusing the same addresses: every one found in its own VPC.
    let records = softvpc_engine_bench_like_records(10_000, 100);
    let t = table(&records, HOST1, &HashMap::new());
    assert_eq!(t.len(), 10_000);
    for vpc in 0..100u32 {
        for i in 0..100u32 {
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 10)) + i);
            let e = t.eni_by_ip(Vni(0x101 + vpc), ip).expect("ENI present");
            assert_eq!(e.mac[2..4], (vpc as u16).to_be_bytes());
        }
    }
}

fn softvpc_engine_bench_like_records(n: u32, vpcs: u32) -> SeedRecords {
    let mut r = seed_records();
    r.enis.clear();
    r.vpcs.clear();
    r.subnets.clear();
    for v in 0..vpcs {
        let vpc_id = format!("vpc-{v:017x}");
        r.vpcs.insert(
            vpc_id.clone(),
            (Vni(0x101 + v), "10.0.0.0/16".parse().unwrap()),
        );
        let subnet_id = format!("subnet-{v:017x}");
        r.subnets
            .insert(subnet_id, (vpc_id, "10.0.0.0/16".parse().unwrap()));
    }
    for k in 0..n {
        let (v, i) = (k % vpcs, k / vpcs);
        let mut info = eni_info(&VM2);
        info.eni_id = format!("eni-{k:017x}");
        info.vpc_id = format!("vpc-{v:017x}");
        info.vni = Vni(0x101 + v);
        info.subnet_id = format!("subnet-{v:017x}");
        info.ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 10)) + i);
        let [a, b] = (v as u16).to_be_bytes();
        let [c, d] = (i as u16).to_be_bytes();
        info.mac = [2, 0, a, b, c, d];
        r.enis.insert(info.eni_id.clone(), info);
    }
    r
}

#[test]
fn counters_export_as_prometheus_text() {
    let mut e = seed_engine(HOST2);
    let mut bad = vxlan(VNI1.0, &[0u8; 60]);
    bad[6] = 0x77; // unknown VNI
    let mut out = Output::default();
    e.handle_underlay_datagrams(t0(), [(HOST1, &bad[..])], &mut out);
    let mut text = String::new();
    e.counters().write_prometheus(&mut text);
    assert!(
        text.contains("softvpc_drops_total{reason=\"vxlan_unknown_vni\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("softvpc_drops_total{reason=\"malformed\"} 0\n"));
    assert!(text.contains("softvpc_frames_total{path=\"underlay_rx\"} 1\n"));
    assert!(text.contains(&format!(
        "softvpc_bytes_total{{path=\"underlay_rx\"}} {}\n",
        bad.len()
    )));
    assert!(text.contains("# TYPE softvpc_drops_total counter\n"));
    // Every drop reason and path appears exactly once per metric.
    let samples: Vec<_> = e.counters().samples().collect();
    assert_eq!(samples.len(), DropReason::ALL.len() + 2 * Path::ALL.len());
    let names: std::collections::HashSet<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(names.len(), DropReason::ALL.len());
    for name in names {
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{name}"
        );
    }
}

#[test]
fn drop_reason_names_match_the_contract() {
    let names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "malformed",
            "unsupported_ethertype",
            "spoofed_source",
            "broadcast_not_forwarded",
            "arp_unanswered",
            "no_route",
            "unknown_port",
            "vxlan_bad_flags",
            "vxlan_unknown_vni",
            "vxlan_unknown_source",
            "vxlan_not_local",
            "ttl_exceeded",
            "sg_denied",
            "nacl_denied",
            "blackhole",
            "gateway_not_on_wire",
            "src_dst_check",
            "conntrack_full",
            "forged_source",
            "dhcp_invalid",
            "no_public_ip",
            "edge_no_neighbor",
            "edge_not_held",
            "no_igw_route",
            "nat_port_allocation",
            "nat_no_translation",
            "nat_fragment",
            "nat_connection_reset",
            "dns_invalid",
            "dns_disabled",
            "imds_invalid",
        ]
    );
}

#[test]
fn policy_inputs_are_compiled_into_the_table() {
    use softvpc_engine::policy::nacl::AclEntry;
    use softvpc_engine::policy::route::{Route, RouteState, Target};
    use softvpc_engine::policy::secgroup::{Members, Peer, SgRule};
    use softvpc_engine::policy::Direction as Dir;
    use softvpc_engine::{Location, MappingTable, PlacedEni};

    let cidr: ipnet::Ipv4Net = "10.0.0.0/16".parse().unwrap();
    let peer_cidr: ipnet::Ipv4Net = "10.1.0.0/16".parse().unwrap();
    let mut b = MappingTable::builder(HOST1);
    b.host(HOST1).host(HOST2);
    b.vpc("vpc-1", VNI1, &[cidr])
        .vpc("vpc-p", VNI2, &[peer_cidr]);
    b.subnet("subnet-a", "vpc-1", "10.0.0.0/24".parse().unwrap());
    b.subnet("subnet-b", "vpc-1", "10.0.1.0/24".parse().unwrap());
    let eni = |ip: [u8; 4], groups: &[&str], location| PlacedEni {
        vpc_id: "vpc-1".into(),
        vni: VNI1,
        subnet_id: "subnet-a".into(),
        ip: Ipv4Addr::from(ip),
        secondary_ips: vec![],
        mac: [2, 0, ip[1], ip[2], ip[3], 1],
        location,
        security_group_ids: groups.iter().map(|g| g.to_string()).collect(),
        source_dest_check: !groups.is_empty(),
        conntrack: Default::default(),
    };
    b.eni(
        "eni-a",
        eni([10, 0, 0, 5], &["sg-web"], Location::Local(PortId(1))),
    );
    b.eni("eni-b", eni([10, 0, 0, 6], &[], Location::Remote(HOST2)));
    let ssh = SgRule::from_aws(
        "sgr-ssh",
        "sg-web",
        Dir::Ingress,
        "tcp",
        Some(22),
        Some(22),
        Peer::Group("sg-admin".into()),
    )
    .unwrap();
    b.security_group("sg-web", "vpc-1", vec![ssh]);
    b.group_member("sg-admin", Ipv4Addr::new(10, 1, 0, 9));
    let deny = AclEntry::from_aws(100, false, "-1", "deny", cidr, None, None).unwrap();
    b.network_acl("acl-1", "vpc-1", vec![deny], &["subnet-b"]);
    let to_peer = Route {
        destination: peer_cidr,
        target: Target::VpcPeeringConnection("pcx-1".into()),
        state: RouteState::Active,
    };
    b.route_table("rtb-main", "vpc-1", true, vec![], &[]);
    b.route_table("rtb-b", "vpc-1", false, vec![to_peer], &["subnet-b"]);
    b.peering("pcx-1", "vpc-1", "vpc-p", true);
    b.peering("pcx-2", "vpc-1", "vpc-gone", true);
    let t = b.build();

    let a = t.eni_by_ip(VNI1, Ipv4Addr::new(10, 0, 0, 5)).unwrap();
    let groups = a.groups.as_ref().expect("groups compiled");
    assert_eq!(groups.rules().len(), 1);
    assert_eq!(groups.generation(), t.generation());
    assert!(a.source_dest_check);
    assert!(t
        .eni_by_ip(VNI1, Ipv4Addr::new(10, 0, 0, 6))
        .unwrap()
        .groups
        .is_none());
    // Members: the ENIs in the table that have the group, and the ones given.
    assert!(t.members().contains("sg-web", Ipv4Addr::new(10, 0, 0, 5)));
    assert!(t.members().contains("sg-admin", Ipv4Addr::new(10, 1, 0, 9)));
    assert!(!t.members().contains("sg-web", Ipv4Addr::new(10, 0, 0, 6)));
    assert!(t.forwards_for(VNI1, HOST2), "eni-b has its check off");
    // The ACL sits on its subnet only.
    let subnet_of = |ip: [u8; 4]| {
        let e = t.eni_by_ip(VNI1, Ipv4Addr::from(ip)).unwrap();
        t.subnet(e.subnet.unwrap()).unwrap()
    };
    assert!(subnet_of([10, 0, 0, 5]).acl.is_none());
    let routes = t
        .vpc(VNI1)
        .unwrap()
        .routes
        .as_ref()
        .expect("routes compiled");
    assert_eq!(routes.table_for("subnet-a").unwrap().id(), "rtb-main");
    assert_eq!(routes.table_for("subnet-b").unwrap().id(), "rtb-b");
    assert!(
        t.vpc(VNI2).unwrap().routes.is_none(),
        "no table: local routes only"
    );
    assert_eq!(t.peering("pcx-1").unwrap().peer_of(VNI1), Some(VNI2));
    assert_eq!(
        t.peering("pcx-2").unwrap().peer_of(VNI1),
        None,
        "other side unknown"
    );
    // Every build is a new generation.
    assert_ne!(t.generation(), seed_engine(HOST1).table().generation());
}
