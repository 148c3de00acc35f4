//! From the replica's records to the engine's table: where each ENI is (behind a local port,
//! on a remote host, or nowhere yet) is decided here, and only what forwarding needs goes in.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use softvpc_engine::{Location, MappingTable, PlacedEni, PortId, Vni};
use softvpc_mapping::Records;

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
                // Groups, the check and the timeouts arrive with the policy records (issue 10);
                // until then no filtering, as before.
                security_group_ids: Vec::new(),
                source_dest_check: true,
                conntrack: Default::default(),
            },
        );
    }
    b.build()
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
        r.enis.get_mut("eni-2").expect("eni-2").host_underlay_ip = None;
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
}
