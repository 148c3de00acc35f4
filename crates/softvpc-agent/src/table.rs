//! From the replica's records to the engine's table: where each ENI is (behind a local port,
//! on a remote host, or nowhere yet) is decided here, and only what forwarding and policy need
//! goes in: the security groups of the local ENIs (the members of referenced groups are the
//! table's ENIs that name them, the engine's own index), the network ACLs and route tables of
//! the held VPCs, and the peering connections.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use softvpc_engine::layers::gateway::dhcp::OptionSet;
use softvpc_engine::{Location, MappingTable, PlacedEni, PortId, Vni, VpcServices};
use softvpc_mapping::{NameServer, Records};

/// The table of the host whose underlay address is `local`, with `ports` naming the port of
/// each local ENI. An ENI placed on no host is absent, and so is a local one without a port yet
/// (until the shell has plumbed it). An ENI without its host's address takes it from the host
/// record.
pub fn build(records: &Records, local: Ipv4Addr, ports: &HashMap<String, PortId>) -> MappingTable {
    let mut b = MappingTable::builder(local);
    for h in records.hosts.values() {
        b.host(h.underlay_ip);
    }
    for v in records.vpcs.values() {
        b.vpc(&v.vpc_id, Vni(v.vni), &v.cidrs);
        b.vpc_services(&v.vpc_id, vpc_services(v));
    }
    for s in records.subnets.values() {
        b.subnet(&s.subnet_id, &s.vpc_id, s.cidr);
    }
    for e in records.enis.values() {
        let underlay = e
            .host_underlay_ip
            .or_else(|| records.hosts.get(&e.host_id).map(|h| h.underlay_ip));
        let location = match underlay {
            None => continue,
            Some(ip) if ip == local => match ports.get(&e.eni_id) {
                Some(&port) => Location::Local(port),
                None => continue,
            },
            Some(ip) => Location::Remote(ip),
        };
        b.eni(
            &e.eni_id,
            PlacedEni {
                vpc_id: e.vpc_id.clone(),
                vni: Vni(e.vni),
                subnet_id: e.subnet_id.clone(),
                ip: e.ip,
                secondary_ips: e.secondary_ips.clone(),
                mac: e.mac,
                location,
                security_group_ids: e.security_group_ids.clone(),
                source_dest_check: e.source_dest_check,
                conntrack: e.connection_tracking,
            },
        );
    }
    for e in records.enis.values() {
        if !e.nat_gateway_id.is_empty() {
            b.nat_gateway(&e.nat_gateway_id, &e.eni_id);
        }
        for p in &e.public_addresses {
            b.public_address(&e.eni_id, p.public_ip, p.private_ip);
        }
    }
    for g in records.security_groups.values() {
        b.security_group(&g.group_id, &g.vpc_id, g.rules.clone());
    }
    for a in records.network_acls.values() {
        let subnets: Vec<&str> = a.subnet_ids.iter().map(String::as_str).collect();
        b.network_acl(&a.acl_id, &a.vpc_id, a.entries.clone(), &subnets);
    }
    for t in records.route_tables.values() {
        let subnets: Vec<&str> = t.subnet_ids.iter().map(String::as_str).collect();
        b.route_table(&t.table_id, &t.vpc_id, t.main, t.routes.clone(), &subnets);
        for r in &t.prefix_list_routes {
            b.prefix_list_route(&t.table_id, &r.prefix_list_id, r.target.clone(), r.state);
        }
    }
    // The engine expands prefix list references with the entries held now.
    for p in records.prefix_lists.values() {
        b.prefix_list(&p.prefix_list_id, &p.cidrs);
    }
    for p in records.peerings.values() {
        b.peering(
            &p.pcx_id,
            &p.requester_vpc_id,
            &p.accepter_vpc_id,
            p.is_active(),
        );
    }
    b.build()
}

/// The engine's form of a VPC's services: `AmazonProvidedDNS` resolved to the VPC's (primary
/// CIDR's) base + 2; without an option set, AWS's default set.
fn vpc_services(v: &softvpc_mapping::VpcRecord) -> VpcServices {
    let s = &v.services;
    let amazon_dns = v
        .cidrs
        .first()
        .map(|c| Ipv4Addr::from(u32::from(c.network()).wrapping_add(2)));
    let dhcp = match &s.dhcp_options {
        None => OptionSet {
            domain_name: Some(s.private_domain.clone()),
            name_servers: amazon_dns.into_iter().collect(),
            ..OptionSet::default()
        },
        Some(d) => OptionSet {
            domain_name: (!d.domain_name.is_empty()).then(|| d.domain_name.clone()),
            name_servers: d
                .name_servers
                .iter()
                .filter_map(|n| match n {
                    NameServer::AmazonProvided => amazon_dns,
                    NameServer::Ip(ip) => Some(*ip),
                })
                .collect(),
            ntp_servers: d.ntp_servers.clone(),
            netbios_name_servers: d.netbios_name_servers.clone(),
            netbios_node_type: (d.netbios_node_type != 0).then_some(d.netbios_node_type),
        },
    };
    VpcServices {
        dns_support: s.dns_support,
        dns_hostnames: s.dns_hostnames,
        private_domain: s.private_domain.as_str().into(),
        region: s.region.as_str().into(),
        dhcp,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use softvpc_proto::pb;

    pub fn pb_host(id: &str, ip: &str) -> pb::Host {
        pb::Host {
            host_id: id.into(),
            name: format!("name-{id}"),
            underlay_ip: ip.into(),
        }
    }

    pub fn pb_vpc(id: &str, vni: u32, cidr: &str) -> pb::Vpc {
        pb::Vpc {
            vpc_id: id.into(),
            vni,
            cidrs: vec![cidr.into()],
            services: None,
        }
    }

    pub fn pb_subnet(id: &str, vpc: &str, cidr: &str) -> pb::Subnet {
        pb::Subnet {
            subnet_id: id.into(),
            vpc_id: vpc.into(),
            cidr: cidr.into(),
        }
    }

    pub fn pb_eni(id: &str, vpc: &str, vni: u32, subnet: &str, ip: &str, host: &str) -> pb::Eni {
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

    fn records() -> Records {
        let snapshot = pb::Snapshot {
            hosts: vec![pb_host("h-1", "198.18.0.11"), pb_host("h-2", "198.18.0.12")],
            vpcs: vec![pb_vpc("vpc-a", 0x101, "10.0.0.0/16")],
            subnets: vec![pb_subnet("subnet-a", "vpc-a", "10.0.0.0/24")],
            enis: vec![
                pb_eni("eni-1", "vpc-a", 0x101, "subnet-a", "10.0.0.148", "h-1"),
                pb_eni("eni-2", "vpc-a", 0x101, "subnet-a", "10.0.0.185", "h-2"),
                pb_eni("eni-3", "vpc-a", 0x101, "subnet-a", "10.0.0.20", ""),
            ],
            ..Default::default()
        };
        let (records, errors) = Records::from_snapshot(&snapshot);
        assert!(errors.is_empty());
        records
    }

    #[test]
    fn enis_are_local_remote_or_absent() {
        let local = Ipv4Addr::new(198, 18, 0, 11);
        let mut r = records();
        // eni-2 lacks its host's address: it comes from the host record.
        std::sync::Arc::make_mut(r.enis.get_mut("eni-2").expect("eni-2")).host_underlay_ip = None;
        let ports: HashMap<String, PortId> = [("eni-1".to_string(), PortId(7))].into();
        let t = build(&r, local, &ports);
        let at = |ip: [u8; 4]| {
            t.eni_by_ip(Vni(0x101), Ipv4Addr::from(ip))
                .map(|e| e.location)
        };
        assert_eq!(at([10, 0, 0, 148]), Some(Location::Local(PortId(7))));
        assert_eq!(
            at([10, 0, 0, 185]),
            Some(Location::Remote(Ipv4Addr::new(198, 18, 0, 12)))
        );
        assert_eq!(at([10, 0, 0, 20]), None, "placed nowhere");
        // Local without a port yet: absent.
        let t = build(&r, local, &HashMap::new());
        assert!(t
            .eni_by_ip(Vni(0x101), Ipv4Addr::new(10, 0, 0, 148))
            .is_none());
        assert!(t.is_registered_host(Ipv4Addr::new(198, 18, 0, 12)));
    }

    /// What the feed carries for policy reaches the engine's table: the local ENI's groups
    /// compiled, its attributes, the subnet's ACL, the VPC's route tables, the peering, and the
    /// members of a referenced group of the peered VPC (its ENIs that have the group).
    #[test]
    fn policy_records_reach_the_table() {
        use softvpc_policy::packet::{Direction, Packet, TCP_SYN};
        use softvpc_policy::secgroup::Members;
        let mut s = pb::Snapshot {
            hosts: vec![pb_host("h-1", "198.18.0.11"), pb_host("h-2", "198.18.0.12")],
            vpcs: vec![
                pb_vpc("vpc-a", 0x101, "10.0.0.0/16"),
                pb_vpc("vpc-b", 0x102, "10.1.0.0/16"),
            ],
            subnets: vec![
                pb_subnet("subnet-a", "vpc-a", "10.0.0.0/24"),
                pb_subnet("subnet-b", "vpc-b", "10.1.0.0/24"),
            ],
            enis: vec![
                pb_eni("eni-1", "vpc-a", 0x101, "subnet-a", "10.0.0.148", "h-1"),
                pb_eni("eni-2", "vpc-a", 0x101, "subnet-a", "10.0.0.185", "h-2"),
                pb_eni("eni-3", "vpc-b", 0x102, "subnet-b", "10.1.0.7", "h-2"),
            ],
            ..Default::default()
        };
        s.enis[0].security_group_ids = vec!["sg-web".into()];
        s.enis[0].source_dest_check_disabled = true;
        s.enis[0].connection_tracking = Some(pb::ConnectionTracking {
            udp_timeout: 45,
            ..Default::default()
        });
        s.enis[1].security_group_ids = vec!["sg-admin".into()];
        s.enis[1].host_underlay_ip = "198.18.0.12".into();
        s.enis[2].security_group_ids = vec!["sg-b-app".into()];
        s.enis[2].host_underlay_ip = "198.18.0.12".into();
        let port = |from, to| {
            Some(pb::PortMatch {
                protocol: 6,
                from_port: from,
                to_port: to,
            })
        };
        s.security_groups = vec![pb::SecurityGroup {
            group_id: "sg-web".into(),
            vpc_id: "vpc-a".into(),
            rules: vec![
                pb::SecurityGroupRule {
                    rule_id: "sgr-ssh".into(),
                    egress: false,
                    r#match: port(22, 22),
                    peer: Some(pb::security_group_rule::Peer::GroupId("sg-admin".into())),
                },
                pb::SecurityGroupRule {
                    rule_id: "sgr-pg".into(),
                    egress: false,
                    r#match: port(5432, 5432),
                    peer: Some(pb::security_group_rule::Peer::GroupId("sg-b-app".into())),
                },
            ],
        }];
        s.network_acls = vec![pb::NetworkAcl {
            acl_id: "acl-a".into(),
            vpc_id: "vpc-a".into(),
            entries: vec![pb::NetworkAclEntry {
                rule_number: 100,
                egress: false,
                allow: true,
                cidr: "0.0.0.0/0".into(),
                r#match: port(-1, -1),
            }],
            subnet_ids: vec!["subnet-a".into()],
        }];
        s.route_tables = vec![pb::RouteTable {
            table_id: "rtb-a".into(),
            vpc_id: "vpc-a".into(),
            main: true,
            routes: vec![pb::Route {
                destination: "10.1.0.0/16".into(),
                target: Some(pb::route::Target::VpcPeeringConnectionId("pcx-1".into())),
                blackhole: false,
                ..Default::default()
            }],
            subnet_ids: vec![],
        }];
        s.peering_connections = vec![pb::PeeringConnection {
            pcx_id: "pcx-1".into(),
            requester_vpc_id: "vpc-a".into(),
            requester_cidrs: vec!["10.0.0.0/16".into()],
            accepter_vpc_id: "vpc-b".into(),
            accepter_cidrs: vec!["10.1.0.0/16".into()],
            status: "active".into(),
        }];
        let (r, errors) = Records::from_snapshot(&s);
        assert!(errors.is_empty(), "{errors:?}");
        let ports: HashMap<String, PortId> = [("eni-1".to_string(), PortId(1))].into();
        let t = build(&r, Ipv4Addr::new(198, 18, 0, 11), &ports);

        let e1 = t.eni_by_id("eni-1").expect("eni-1");
        assert!(!e1.source_dest_check);
        assert_eq!(e1.timeouts.udp, 45);
        let groups = e1.groups.as_ref().expect("compiled groups");
        // The rule admits members of sg-admin (eni-2, on the other host) on port 22 only.
        let ssh =
            |src: [u8; 4], port| Packet::tcp(Ipv4Addr::from(src), 40000, e1.ip, port, TCP_SYN);
        assert!(t
            .members()
            .contains("sg-admin", Ipv4Addr::new(10, 0, 0, 185)));
        let allowed = |p: &Packet| {
            matches!(
                groups.evaluate(p, Direction::Ingress, t.members()),
                softvpc_policy::secgroup::SgVerdict::Allow { .. }
            )
        };
        assert!(allowed(&ssh([10, 0, 0, 185], 22)));
        assert!(!allowed(&ssh([10, 0, 0, 185], 80)));
        assert!(!allowed(&ssh([10, 0, 0, 99], 22)), "not a member");
        // A group of the peered VPC: its ENI there (eni-3) is a member, on 5432 only.
        assert!(t.members().contains("sg-b-app", Ipv4Addr::new(10, 1, 0, 7)));
        assert!(allowed(&ssh([10, 1, 0, 7], 5432)));
        assert!(!allowed(&ssh([10, 1, 0, 7], 22)));
        assert!(
            !allowed(&ssh([10, 0, 0, 185], 5432)),
            "sg-admin is not sg-b-app"
        );

        let subnet = t.subnet(e1.subnet.expect("subnet")).expect("subnet entry");
        assert_eq!(subnet.acl.as_ref().map(|a| a.id()), Some("acl-a"));
        let routes = t
            .vpc(Vni(0x101))
            .and_then(|v| v.routes.clone())
            .expect("routes");
        let d = routes
            .lookup("subnet-a", Ipv4Addr::new(10, 1, 2, 3))
            .expect("main table");
        assert_eq!(d.table, "rtb-a");
        assert_eq!(
            d.verdict,
            softvpc_policy::route::RouteVerdict::Peering("pcx-1")
        );
        let pcx = t.peering("pcx-1").expect("peering");
        assert!(pcx.active);
        assert_eq!(pcx.peer_of(Vni(0x101)), Some(Vni(0x102)));
    }
}
