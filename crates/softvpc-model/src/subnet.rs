//! Subnets: inside their VPC's CIDR, never overlapping, /16../28, AWS's five reserved addresses,
//! the exact available-address count, deletion rules, filters.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::filter::Filterable;
use super::ids::new_id;
use super::vpc::parse_cidr;
use super::{
    assignable_count, is_reserved, AddrSet, ApiError, State, Subnet, Tags, Txn, DEFAULT_AZ,
};

/// The zone id of a zone of the region (`us-east-1a` -> `use1-az1`, ... `us-east-1f` -> `use1-az6`,
/// the ids DescribeAvailabilityZones shows).
pub fn zone_id(zone: &str) -> Option<String> {
    let n = match zone.strip_prefix("us-east-1")? {
        "a" => 1,
        "b" => 2,
        "c" => 3,
        "d" => 4,
        "e" => 5,
        "f" => 6,
        _ => return None,
    };
    Some(format!("use1-az{n}"))
}

/// The subnet `id`, or AWS's `InvalidSubnetID.NotFound`.
pub fn get_subnet<'a>(state: &'a State, id: &str) -> Result<&'a std::sync::Arc<Subnet>, ApiError> {
    state
        .subnets
        .get(id)
        .ok_or_else(|| ApiError::not_found("InvalidSubnetID.NotFound", "subnet", &[id]))
}

/// `CreateSubnet`.
pub fn create_subnet(
    txn: &mut Txn,
    vpc_id: &str,
    cidr: &str,
    availability_zone: Option<&str>,
    tags: Tags,
) -> Result<Subnet, ApiError> {
    let vpc = super::vpc::get_vpc(&txn.state, vpc_id).cloned()?;
    let net = parse_cidr(cidr, "cidrBlock")?;
    let range_error = || {
        ApiError::new(
            "InvalidSubnet.Range",
            format!("The CIDR '{cidr}' is invalid."),
        )
    };
    if !(16..=28).contains(&net.prefix_len()) || !vpc.holds(&net) {
        return Err(range_error());
    }
    let conflict = txn
        .state
        .subnets
        .values()
        .any(|s| s.vpc_id == vpc_id && (s.cidr.contains(&net) || net.contains(&s.cidr)));
    if conflict {
        return Err(ApiError::new(
            "InvalidSubnet.Conflict",
            format!("The CIDR '{cidr}' conflicts with another subnet"),
        ));
    }
    let az = match availability_zone {
        Some(az) if valid_az(az) => az.to_string(),
        Some(az) => {
            return Err(ApiError::invalid_value(format!(
                "Value ({az}) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: us-east-1a, us-east-1b, us-east-1c, us-east-1d, us-east-1e, us-east-1f."
            )))
        }
        None => DEFAULT_AZ.to_string(),
    };
    let subnet = Subnet {
        id: new_id("subnet"),
        vpc_id: vpc_id.to_string(),
        cidr: net,
        availability_zone: az,
        tags,
        map_public_ip_on_launch: false,
        hostname_type: None,
        resource_name_dns_a_record: false,
        default_for_az: false,
    };
    txn.put(subnet.clone());
    super::network_acl::associate_new_subnet(txn, vpc_id, &subnet.id);
    Ok(subnet)
}

fn valid_az(az: &str) -> bool {
    az.strip_prefix("us-east-1")
        .is_some_and(|s| s.len() == 1 && ("a"..="f").contains(&s))
}

/// `DeleteSubnet`: refused while ENIs remain in it.
pub fn delete_subnet(txn: &mut Txn, id: &str) -> Result<(), ApiError> {
    get_subnet(&txn.state, id)?;
    // Every ENI holds at least its primary address in its subnet (index, not a scan).
    if txn.state.index.used_ips.contains_key(id) {
        return Err(ApiError::has_dependencies("subnet", id));
    }
    super::route_table::on_subnet_deleted(txn, id);
    super::network_acl::disassociate_subnet(txn, id);
    txn.delete_subnet(id);
    Ok(())
}

/// The addresses of `subnet_id` held by ENIs (primary and secondary).
pub fn used_addresses(state: &State, subnet_id: &str) -> AddrSet {
    // From the index (O(log n), a shared copy), not a scan of every ENI.
    state
        .index
        .used_ips
        .get(subnet_id)
        .cloned()
        .unwrap_or_default()
}

/// `AvailableIpAddressCount`: 2^(32-prefix) - 5 - addresses in use.
pub fn available_count(state: &State, subnet: &Subnet) -> u64 {
    let used = state.index.used_ips.get(&subnet.id).map_or(0, |u| u.len());
    assignable_count(&subnet.cidr).saturating_sub(used as u64)
}

/// Up to `count` free, unreserved addresses of `cidr`, lowest first. Walks the addresses and
/// the (ordered) used set together, so the cost is the number of used addresses below the
/// last one returned, with no lookups.
pub fn free_addresses(cidr: &Ipv4Net, used: &AddrSet, count: usize) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut taken = used
        .range(cidr.network()..=cidr.broadcast())
        .copied()
        .peekable();
    for a in cidr.hosts() {
        if out.len() == count {
            break;
        }
        while taken.next_if(|t| *t < a).is_some() {}
        if taken.next_if_eq(&a).is_some() || is_reserved(cidr, a) {
            continue;
        }
        out.push(a);
    }
    out
}

impl Filterable for Subnet {
    const FILTERS: &'static [&'static str] = &[
        "subnet-id",
        "vpc-id",
        "cidr",
        "cidr-block",
        "cidrBlock",
        "state",
        "availability-zone",
        "availabilityZone",
        "available-ip-address-count",
        "default-for-az",
        "defaultForAz",
        "map-public-ip-on-launch",
        "owner-id",
        "subnet-arn",
        "enable-dns64",
        "ipv6-native",
        "map-customer-owned-ip-on-launch",
        "private-dns-name-options-on-launch.hostname-type",
        "private-dns-name-options-on-launch.enable-resource-name-dns-a-record",
        "private-dns-name-options-on-launch.enable-resource-name-dns-aaaa-record",
        "availability-zone-id",
    ];
    const UNHELD: &'static [&'static str] = &[
        "customer-owned-ipv4-pool",
        "ipv6-cidr-block-association.ipv6-cidr-block",
        "ipv6-cidr-block-association.association-id",
        "ipv6-cidr-block-association.state",
        "enable-lni-at-device-index",
        "outpost-arn",
    ];

    fn field(&self, state: &State, name: &str) -> Vec<String> {
        let v = match name {
            "subnet-id" => self.id.clone(),
            "vpc-id" => self.vpc_id.clone(),
            "cidr" | "cidr-block" | "cidrBlock" => self.cidr.to_string(),
            "state" => "available".into(),
            "availability-zone" | "availabilityZone" => self.availability_zone.clone(),
            "available-ip-address-count" => available_count(state, self).to_string(),
            "default-for-az" | "defaultForAz" => self.default_for_az.to_string(),
            "map-public-ip-on-launch" => self.map_public_ip_on_launch.to_string(),
            "owner-id" => super::OWNER_ID.into(),
            "subnet-arn" => format!(
                "arn:aws:ec2:us-east-1:{}:subnet/{}",
                super::OWNER_ID,
                self.id
            ),
            // IPv4-only subnets without customer-owned pools: these flags are all false.
            // (as DescribeSubnets shows them).
            "enable-dns64"
            | "ipv6-native"
            | "map-customer-owned-ip-on-launch"
            | "private-dns-name-options-on-launch.enable-resource-name-dns-aaaa-record" => {
                "false".into()
            }
            "private-dns-name-options-on-launch.enable-resource-name-dns-a-record" => {
                self.resource_name_dns_a_record.to_string()
            }
            "private-dns-name-options-on-launch.hostname-type" => {
                self.hostname_type.as_deref().unwrap_or("ip-name").into()
            }
            "availability-zone-id" => {
                return zone_id(&self.availability_zone).into_iter().collect()
            }
            _ => return Vec::new(),
        };
        vec![v]
    }

    fn tag_map(&self) -> Tags {
        self.tags.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::super::vpc::create_vpc;
    use super::*;

    fn setup() -> (Txn, String) {
        let mut txn = Txn::new(State::new(), 0);
        let vpc = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        (txn, vpc.id)
    }

    #[test]
    fn subnet_rules() {
        let (mut txn, vpc) = setup();
        let s = create_subnet(&mut txn, &vpc, "10.0.0.0/24", None, Tags::new()).unwrap();
        assert_eq!(s.availability_zone, "us-east-1a");
        assert_eq!(available_count(&txn.state, &s), 251);
        let e = |r: Result<Subnet, ApiError>| r.unwrap_err().code;
        let mut t = |c: &str| e(create_subnet(&mut txn, &vpc, c, None, Tags::new()));
        assert_eq!(t("10.1.0.0/24"), "InvalidSubnet.Range");
        assert_eq!(t("10.0.0.0/29"), "InvalidSubnet.Range");
        assert_eq!(t("10.0.0.0/15"), "InvalidSubnet.Range");
        assert_eq!(t("10.0.0.128/25"), "InvalidSubnet.Conflict");
        assert_eq!(t("10.0.0.0/16"), "InvalidSubnet.Conflict");
        assert_eq!(t("10.0.0/24"), "InvalidParameterValue");
        assert_eq!(
            e(create_subnet(
                &mut txn,
                "vpc-nope",
                "10.0.1.0/24",
                None,
                Tags::new()
            )),
            "InvalidVpcID.NotFound"
        );
        assert_eq!(
            e(create_subnet(
                &mut txn,
                &vpc,
                "10.0.1.0/24",
                Some("mars-1a"),
                Tags::new()
            )),
            "InvalidParameterValue"
        );
        let s2 = create_subnet(
            &mut txn,
            &vpc,
            "10.0.1.0/28",
            Some("us-east-1b"),
            Tags::new(),
        )
        .unwrap();
        assert_eq!(s2.availability_zone, "us-east-1b");
        assert_eq!(available_count(&txn.state, &s2), 11);
    }

    #[test]
    fn free_addresses_skip_reserved_and_used() {
        let net: Ipv4Net = "10.0.0.0/28".parse().unwrap();
        let mut used = AddrSet::new();
        used.insert("10.0.0.5".parse().unwrap());
        let free = free_addresses(&net, &used, 100);
        assert_eq!(free.len(), 10);
        assert_eq!(free[0], "10.0.0.4".parse::<Ipv4Addr>().unwrap());
        assert_eq!(free[1], "10.0.0.6".parse::<Ipv4Addr>().unwrap());
        assert_eq!(
            *free.last().unwrap(),
            "10.0.0.14".parse::<Ipv4Addr>().unwrap()
        );
        // Used addresses outside the subnet, in a run at the bottom, and at the top.
        for a in ["10.0.0.4", "10.0.0.6", "10.0.0.14", "10.0.1.7", "9.9.9.9"] {
            used.insert(a.parse().unwrap());
        }
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            free_addresses(&net, &used, 2),
            vec![ip("10.0.0.7"), ip("10.0.0.8")]
        );
        assert_eq!(free_addresses(&net, &used, 100).len(), 7);
        assert_eq!(
            free_addresses(&net, &used, 100).last(),
            Some(&ip("10.0.0.13"))
        );
    }

    #[test]
    fn delete_vpc_and_subnet_refusals() {
        let (mut txn, vpc) = setup();
        let s = create_subnet(&mut txn, &vpc, "10.0.0.0/24", None, Tags::new()).unwrap();
        let e = super::super::vpc::delete_vpc(&mut txn, &vpc).unwrap_err();
        assert_eq!(e.code, "DependencyViolation");
        assert_eq!(
            delete_subnet(&mut txn, "subnet-x").unwrap_err().code,
            "InvalidSubnetID.NotFound"
        );
        delete_subnet(&mut txn, &s.id).unwrap();
        super::super::vpc::delete_vpc(&mut txn, &vpc).unwrap();
        assert!(txn.state.vpcs.is_empty());
        assert_eq!(
            super::super::vpc::delete_vpc(&mut txn, &vpc)
                .unwrap_err()
                .code,
            "InvalidVpcID.NotFound"
        );
    }
}
