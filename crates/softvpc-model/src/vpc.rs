//! VPCs: CIDR rules (/16../28, canonicalised), VNI allocation, deletion rules, filters.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::filter::Filterable;
use super::ids::new_id;
use super::{ApiError, State, Tags, Txn, Vpc, FIRST_VNI, MAX_VNI};

/// Parses an IPv4 CIDR strictly (dotted quad, `/`, prefix length 0..=32) and canonicalises it
/// (host bits cleared: 100.68.0.18/18 -> 100.68.0.0/18). `param` names the parameter in the
/// error message.
pub fn parse_cidr(value: &str, param: &str) -> Result<Ipv4Net, ApiError> {
    let invalid = || {
        ApiError::invalid_value(format!(
            "Value ({value}) for parameter {param} is invalid. This is not a valid CIDR block."
        ))
    };
    let (addr, len) = value.split_once('/').ok_or_else(invalid)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
    if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let len: u8 = len.parse().map_err(|_| invalid())?;
    Ipv4Net::new(addr, len)
        .map(|n| n.trunc())
        .map_err(|_| invalid())
}

/// The VPC `id`, or AWS's `InvalidVpcID.NotFound`.
pub fn get_vpc<'a>(state: &'a State, id: &str) -> Result<&'a std::sync::Arc<Vpc>, ApiError> {
    state
        .vpcs
        .get(id)
        .ok_or_else(|| ApiError::not_found("InvalidVpcID.NotFound", "vpc", &[id]))
}

/// `CreateVpc`.
pub fn create_vpc(
    txn: &mut Txn,
    cidr: &str,
    instance_tenancy: Option<&str>,
    tags: Tags,
) -> Result<Vpc, ApiError> {
    let net = parse_cidr(cidr, "cidrBlock")?;
    if !(16..=28).contains(&net.prefix_len()) {
        return Err(ApiError::new(
            "InvalidVpc.Range",
            format!("The CIDR '{cidr}' is invalid."),
        ));
    }
    let tenancy = instance_tenancy.unwrap_or("default");
    if !["default", "dedicated", "host"].contains(&tenancy) {
        return Err(ApiError::invalid_value(format!(
            "Value ({tenancy}) for parameter instanceTenancy is invalid."
        )));
    }
    let vni = allocate_vni(&txn.state)?;
    txn.state.next_vni = if vni >= MAX_VNI { FIRST_VNI } else { vni + 1 };
    // As on AWS, a new VPC uses the region's default DHCP option set.
    let dhcp_options_id = Some(super::dhcp_options::region_default(txn));
    let vpc = Vpc {
        id: new_id("vpc"),
        cidr: net,
        cidr_association_id: new_id("vpc-cidr-assoc"),
        vni,
        instance_tenancy: tenancy.to_string(),
        tags,
        is_default: false,
        enable_dns_support: true,
        enable_dns_hostnames: false,
        dhcp_options_id,
    };
    txn.put(vpc.clone());
    super::route_table::create_main_route_table(txn, &vpc.id, vpc.cidr);
    // Every VPC comes with its default security group and network ACL, in the same transaction.
    super::security_group::create_default_group(txn, &vpc.id);
    super::network_acl::create_default_acl(txn, &vpc.id);
    Ok(vpc)
}

/// The next free VNI from `next_vni` upward (wrapping to [`FIRST_VNI`]), unique among VPCs.
fn allocate_vni(state: &State) -> Result<u32, ApiError> {
    let used: std::collections::HashSet<u32> = state.vpcs.values().map(|v| v.vni).collect();
    let start = state.next_vni.clamp(FIRST_VNI, MAX_VNI);
    let span = MAX_VNI - FIRST_VNI + 1;
    (0..span)
        .map(|k| FIRST_VNI + (start - FIRST_VNI + k) % span)
        .find(|v| !used.contains(v))
        // AWS's wording; the limit here is the VNI space (every VPC has its own VNI).
        .ok_or_else(|| {
            ApiError::new(
                "VpcLimitExceeded",
                "The maximum number of VPCs has been reached.",
            )
        })
}

/// `DeleteVpc`: refused while subnets (or anything in them) remain.
pub fn delete_vpc(txn: &mut Txn, id: &str) -> Result<(), ApiError> {
    get_vpc(&txn.state, id)?;
    let busy = txn.state.subnets.values().any(|s| s.vpc_id == id)
        || txn.state.enis.values().any(|e| e.vpc_id == id);
    if busy {
        return Err(ApiError::has_dependencies("vpc", id));
    }
    super::security_group::check_vpc_deletable(&txn.state, id)?;
    super::network_acl::check_vpc_deletable(&txn.state, id)?;
    if super::internet_gateway::igw_of_vpc(&txn.state, id).is_some() {
        return Err(ApiError::has_dependencies("vpc", id));
    }
    super::route_table::on_vpc_delete(txn, id)?;
    super::peering::on_vpc_delete(txn, id);
    super::security_group::delete_groups_of_vpc(txn, id);
    super::network_acl::delete_acls_of_vpc(txn, id);
    txn.delete_vpc(id);
    Ok(())
}

impl Filterable for Vpc {
    const FILTERS: &'static [&'static str] = &[
        "vpc-id",
        "cidr",
        "cidr-block",
        "cidr-block-association.cidr-block",
        "cidr-block-association.association-id",
        "cidr-block-association.state",
        "state",
        "is-default",
        "dhcp-options-id",
        "owner-id",
        "instance-tenancy",
    ];
    const UNHELD: &'static [&'static str] = &[
        "ipv6-cidr-block-association.ipv6-cidr-block",
        "ipv6-cidr-block-association.ipv6-pool",
        "ipv6-cidr-block-association.association-id",
        "ipv6-cidr-block-association.state",
    ];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        let v = match name {
            "vpc-id" => self.id.clone(),
            "cidr" | "cidr-block" | "cidr-block-association.cidr-block" => self.cidr.to_string(),
            "cidr-block-association.association-id" => self.cidr_association_id.clone(),
            "state" => "available".into(),
            "cidr-block-association.state" => "associated".into(),
            "is-default" => self.is_default.to_string(),
            "dhcp-options-id" => self
                .dhcp_options_id
                .clone()
                .unwrap_or_else(|| "default".into()),
            "owner-id" => super::OWNER_ID.into(),
            "instance-tenancy" => self.instance_tenancy.clone(),
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
    use super::*;

    #[test]
    fn cidrs_are_parsed_strictly_and_canonicalised() {
        assert_eq!(
            parse_cidr("100.68.0.18/18", "c").unwrap().to_string(),
            "100.68.0.0/18"
        );
        for bad in [
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0/16",
            "x/16",
            "10.0.0.0/+8",
            "10.0.0.0/016",
            " 10.0.0.0/16",
            "",
        ] {
            let e = parse_cidr(bad, "cidrBlock").unwrap_err();
            assert_eq!(e.code, "InvalidParameterValue", "{bad}");
        }
    }

    #[test]
    fn vpc_prefix_range_and_vnis() {
        let mut txn = Txn::new(State::new(), 0);
        for bad in ["10.0.0.0/15", "10.0.0.0/29", "10.0.0.0/8"] {
            assert_eq!(
                create_vpc(&mut txn, bad, None, Tags::new())
                    .unwrap_err()
                    .code,
                "InvalidVpc.Range"
            );
        }
        assert!(txn.is_empty(), "refusals write nothing");
        let a = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let b = create_vpc(&mut txn, "10.0.0.0/28", None, Tags::new()).unwrap();
        assert_eq!(a.vni, FIRST_VNI);
        assert_eq!(b.vni, FIRST_VNI + 1);
        assert_ne!(a.id, b.id);
        assert_eq!(a.cidr.to_string(), "10.0.0.0/16");
    }

    #[test]
    fn vni_allocation_skips_used_and_wraps() {
        let mut txn = Txn::new(State::new(), 0);
        txn.state.next_vni = MAX_VNI;
        let a = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        assert_eq!(a.vni, MAX_VNI);
        let b = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        assert_eq!(b.vni, FIRST_VNI);
        txn.state.next_vni = MAX_VNI;
        let c = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        assert_eq!(c.vni, FIRST_VNI + 1, "skips the VNIs in use");
    }
}
