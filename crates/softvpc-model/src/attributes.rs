//! VPC and subnet attributes (`enableDnsSupport`, `enableDnsHostnames`, `MapPublicIpOnLaunch`)
//! and the account's default VPC: 172.31.0.0/16 with DNS hostnames on and one default subnet
//! 172.31.0.0/20 (default for its AZ, public IPs on launch), as in a new AWS account.

use super::subnet::create_subnet;
use super::vpc::create_vpc;
use super::{ApiError, Subnet, Tags, Txn, Vpc};

/// The default VPC's CIDR.
pub const DEFAULT_VPC_CIDR: &str = "172.31.0.0/16";
/// The CIDR of the default subnet of the region's first zone (the others follow, a /20 each).
pub const DEFAULT_SUBNET_CIDR: &str = "172.31.0.0/20";

/// A VPC attribute of `DescribeVpcAttribute` / `ModifyVpcAttribute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VpcAttribute {
    /// `enableDnsSupport`.
    EnableDnsSupport,
    /// `enableDnsHostnames`.
    EnableDnsHostnames,
}

impl VpcAttribute {
    /// Parses the `Attribute` parameter of `DescribeVpcAttribute`.
    pub fn parse(name: &str) -> Result<Self, ApiError> {
        match name {
            "enableDnsSupport" => Ok(VpcAttribute::EnableDnsSupport),
            "enableDnsHostnames" => Ok(VpcAttribute::EnableDnsHostnames),
            _ => Err(ApiError::invalid_value(format!(
                "Value ({name}) for parameter attribute is invalid. Unknown attribute."
            ))),
        }
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            VpcAttribute::EnableDnsSupport => "enableDnsSupport",
            VpcAttribute::EnableDnsHostnames => "enableDnsHostnames",
        }
    }

    /// The attribute's value on `vpc`.
    pub fn get(self, vpc: &Vpc) -> bool {
        match self {
            VpcAttribute::EnableDnsSupport => vpc.enable_dns_support,
            VpcAttribute::EnableDnsHostnames => vpc.enable_dns_hostnames,
        }
    }
}

/// The VPC `id`, or `InvalidVpcID.NotFound`.
pub fn vpc(txn: &Txn, id: &str) -> Result<Vpc, ApiError> {
    super::vpc::get_vpc(&txn.state, id).map(|v| (**v).clone())
}

/// `ModifyVpcAttribute`: exactly one attribute per call; DNS hostnames need DNS support.
pub fn modify_vpc_attribute(
    txn: &mut Txn,
    id: &str,
    dns_support: Option<bool>,
    dns_hostnames: Option<bool>,
) -> Result<(), ApiError> {
    let mut v = vpc(txn, id)?;
    match (dns_support, dns_hostnames) {
        (Some(_), Some(_)) => return Err(ApiError::new(
            "InvalidParameterCombination",
            "Fields for multiple attribute types specified: enableDnsSupport, enableDnsHostnames",
        )),
        (None, None) => {
            return Err(ApiError::new(
                "MissingParameter",
                "The request must contain exactly one attribute to modify.",
            ))
        }
        (Some(s), None) => {
            if !s && v.enable_dns_hostnames {
                return Err(ApiError::new(
                    "InvalidParameterValue",
                    "enableDnsSupport cannot be disabled while enableDnsHostnames is enabled.",
                ));
            }
            v.enable_dns_support = s;
        }
        (None, Some(h)) => {
            if h && !v.enable_dns_support {
                return Err(ApiError::new(
                    "InvalidParameterValue",
                    "enableDnsHostnames cannot be enabled while enableDnsSupport is disabled.",
                ));
            }
            v.enable_dns_hostnames = h;
        }
    }
    txn.put(v);
    Ok(())
}

/// One `ModifySubnetAttribute` change (one per call, as on AWS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubnetChange {
    /// Public IPv4 addresses for instances launched here.
    MapPublicIpOnLaunch(bool),
    /// `ip-name` or `resource-name`.
    HostnameType(String),
    /// `EnableResourceNameDnsARecordOnLaunch`.
    ResourceNameDnsARecord(bool),
    /// An attribute set to the only value it can have here (`EnableDns64=false`, ...).
    Unchanged,
}

/// `ModifySubnetAttribute` (`MapPublicIpOnLaunch`); None: nothing to modify.
pub fn modify_subnet_attribute(
    txn: &mut Txn,
    id: &str,
    map_public_ip_on_launch: Option<bool>,
) -> Result<(), ApiError> {
    let Some(v) = map_public_ip_on_launch else {
        return Err(ApiError::new(
            "MissingParameter",
            "The request must contain exactly one attribute to modify.",
        ));
    };
    modify_subnet(txn, id, SubnetChange::MapPublicIpOnLaunch(v))
}

/// `ModifySubnetAttribute`: one change.
pub fn modify_subnet(txn: &mut Txn, id: &str, change: SubnetChange) -> Result<(), ApiError> {
    let mut s: Subnet = super::subnet::get_subnet(&txn.state, id).map(|v| (**v).clone())?;
    match change {
        SubnetChange::Unchanged => return Ok(()),
        SubnetChange::MapPublicIpOnLaunch(v) => s.map_public_ip_on_launch = v,
        SubnetChange::HostnameType(t) => s.hostname_type = Some(t),
        SubnetChange::ResourceNameDnsARecord(v) => s.resource_name_dns_a_record = v,
    }
    txn.put(s);
    Ok(())
}

/// The default subnet for launches without a subnet: the default VPC's subnet that is default for
/// its AZ (in `zone` when given; else in the first zone that has hosts, so the launch can be
/// placed), or `MissingInput`/`VPCIdNotSpecified` when there is no default VPC.
pub fn default_subnet(txn: &Txn, zone: Option<&str>) -> Result<String, ApiError> {
    let preferred = zone.unwrap_or_else(|| super::host::zone_with_hosts(&txn.state));
    let default_vpc = txn.state.vpcs.values().find(|v| v.is_default);
    let Some(v) = default_vpc else {
        return Err(ApiError::new(
            "VPCIdNotSpecified",
            "No default VPC for this user. GroupName is only supported for EC2-Classic and default VPC.",
        ));
    };
    txn.state
        .subnets
        .values()
        .filter(|s| s.vpc_id == v.id && s.default_for_az)
        .filter(|s| zone.is_none_or(|z| s.availability_zone == z))
        // The preferred zone's first, then the others by zone.
        .min_by_key(|s| {
            (
                s.availability_zone != preferred,
                s.availability_zone.as_str(),
                s.id.as_str(),
            )
        })
        .map(|s| s.id.clone())
        .ok_or_else(|| match zone {
            Some(z) => {
                ApiError::invalid_value(format!("No default subnet for availability zone: '{z}'."))
            }
            None => ApiError::new(
                "MissingInput",
                "No subnets found for the default VPC. Please specify a subnet.",
            ),
        })
}

/// Creates the default VPC and its default subnet (through the ordinary create operations, so it
/// gets everything any VPC gets). Returns the VPC and subnet ids.
pub fn create_default_vpc(txn: &mut Txn) -> Result<(String, String), ApiError> {
    let mut v = create_vpc(txn, DEFAULT_VPC_CIDR, None, Tags::new())?;
    v.is_default = true;
    v.enable_dns_hostnames = true;
    let vpc_id = v.id.clone();
    txn.put(v);
    // One default subnet per zone, AWS's layout: 172.31.0.0/20, 172.31.16.0/20, ... in zone order.
    let mut first = None;
    for (n, (zone, _)) in super::zone::ZONES.iter().enumerate() {
        let cidr = format!("172.31.{}.0/20", 16 * n);
        let mut s = create_subnet(txn, &vpc_id, &cidr, Some(zone), Tags::new())?;
        s.default_for_az = true;
        s.map_public_ip_on_launch = true;
        first.get_or_insert_with(|| s.id.clone());
        txn.put(s);
    }
    let subnet_id = first.ok_or_else(|| ApiError::internal("the region has no zones"))?;
    // As in a new AWS account: an internet gateway, and the main table's default route to it.
    let igw = super::internet_gateway::create_internet_gateway(txn, Tags::new())?;
    super::internet_gateway::attach_internet_gateway(txn, &igw.id, &vpc_id)?;
    let main = txn
        .state
        .route_tables
        .values()
        .find(|r| r.vpc_id == vpc_id && r.is_main())
        .map(|r| r.id.clone())
        .ok_or_else(|| ApiError::internal("the default VPC has no main route table"))?;
    super::route_table::create_route(
        txn,
        &main,
        "0.0.0.0/0",
        &super::route_table::TargetSpec {
            gateway_id: Some(igw.id),
            ..Default::default()
        },
    )?;
    Ok((vpc_id, subnet_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::State;

    #[test]
    fn vpc_attributes_default_and_change() {
        let mut txn = Txn::new(State::new(), 0);
        let v = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        assert!(VpcAttribute::EnableDnsSupport.get(&v));
        assert!(!VpcAttribute::EnableDnsHostnames.get(&v));
        modify_vpc_attribute(&mut txn, &v.id, None, Some(true)).unwrap();
        assert!(txn.state.vpcs[&v.id].enable_dns_hostnames);
        let code = |txn: &mut Txn, s, h| modify_vpc_attribute(txn, &v.id, s, h).unwrap_err().code;
        assert_eq!(code(&mut txn, Some(false), None), "InvalidParameterValue");
        assert_eq!(
            code(&mut txn, Some(true), Some(true)),
            "InvalidParameterCombination"
        );
        assert_eq!(code(&mut txn, None, None), "MissingParameter");
        modify_vpc_attribute(&mut txn, &v.id, None, Some(false)).unwrap();
        modify_vpc_attribute(&mut txn, &v.id, Some(false), None).unwrap();
        assert!(!txn.state.vpcs[&v.id].enable_dns_support);
        assert_eq!(code(&mut txn, None, Some(true)), "InvalidParameterValue");
        assert_eq!(
            modify_vpc_attribute(&mut txn, "vpc-0123456789abcdef0", Some(true), None)
                .unwrap_err()
                .code,
            "InvalidVpcID.NotFound"
        );
        assert_eq!(
            VpcAttribute::parse("bogus").unwrap_err().code,
            "InvalidParameterValue"
        );
    }

    #[test]
    fn subnet_attribute() {
        let mut txn = Txn::new(State::new(), 0);
        let v = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let s = create_subnet(&mut txn, &v.id, "10.0.0.0/24", None, Tags::new()).unwrap();
        assert!(!s.map_public_ip_on_launch);
        modify_subnet_attribute(&mut txn, &s.id, Some(true)).unwrap();
        assert!(txn.state.subnets[&s.id].map_public_ip_on_launch);
        assert_eq!(
            modify_subnet_attribute(&mut txn, &s.id, None)
                .unwrap_err()
                .code,
            "MissingParameter"
        );
        assert_eq!(
            modify_subnet_attribute(&mut txn, "subnet-0123456789abcdef0", Some(true))
                .unwrap_err()
                .code,
            "InvalidSubnetID.NotFound"
        );
    }

    #[test]
    fn default_vpc_shape() {
        let mut txn = Txn::new(State::new(), 0);
        assert_eq!(
            default_subnet(&txn, None).unwrap_err().code,
            "VPCIdNotSpecified"
        );
        let (vpc_id, subnet_id) = create_default_vpc(&mut txn).unwrap();
        let v = &txn.state.vpcs[&vpc_id];
        assert!(v.is_default && v.enable_dns_hostnames && v.enable_dns_support);
        assert_eq!(v.cidr.to_string(), DEFAULT_VPC_CIDR);
        let s = &txn.state.subnets[&subnet_id];
        assert!(s.default_for_az && s.map_public_ip_on_launch);
        assert_eq!(s.cidr.to_string(), DEFAULT_SUBNET_CIDR);
        assert_eq!(default_subnet(&txn, None).unwrap(), subnet_id);
        // One default subnet per zone, AWS's /20s in zone order.
        let mut layout: Vec<(String, String)> = txn
            .state
            .subnets
            .values()
            .filter(|s| s.vpc_id == vpc_id && s.default_for_az)
            .map(|s| (s.availability_zone.clone(), s.cidr.to_string()))
            .collect();
        layout.sort();
        assert_eq!(layout.len(), 6);
        assert_eq!(
            layout[1],
            ("us-east-1b".to_string(), "172.31.16.0/20".to_string())
        );
        assert_eq!(
            layout[5],
            ("us-east-1f".to_string(), "172.31.80.0/20".to_string())
        );
        // Without a zone: the first zone with hosts.
        super::super::host::register_host_in(&mut txn, "h", "198.18.0.9", Some("us-east-1c"))
            .unwrap();
        let c = default_subnet(&txn, None).unwrap();
        assert_eq!(txn.state.subnets[&c].availability_zone, "us-east-1c");
        // An ordinary VPC is not default.
        let other = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        assert!(!other.is_default);
    }
}
