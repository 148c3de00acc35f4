//! CreateSubnet, DescribeSubnets, DeleteSubnet.

use softvpc_ec2_protocol::Value;

use super::input::{self, ValueExt};
use super::Ctx;
use softvpc_model::subnet::available_count;
use softvpc_model::{self as model, ApiError, State, Subnet, OWNER_ID};

/// The `Subnet` structure of one subnet.
pub fn subnet_value(state: &State, s: &Subnet) -> Value {
    Value::new_struct()
        .with("SubnetId", s.id.as_str())
        .with(
            "SubnetArn",
            format!("arn:aws:ec2:us-east-1:{OWNER_ID}:subnet/{}", s.id),
        )
        .with("State", "available")
        .with("OwnerId", OWNER_ID)
        .with("VpcId", s.vpc_id.as_str())
        .with("CidrBlock", s.cidr.to_string())
        .with(
            "AvailableIpAddressCount",
            i64::try_from(available_count(state, s)).unwrap_or(i64::MAX),
        )
        .with("AvailabilityZone", s.availability_zone.as_str())
        .with_opt(
            "AvailabilityZoneId",
            super::discovery::ZONES
                .iter()
                .find(|(n, _)| *n == s.availability_zone)
                .map(|(_, id)| *id),
        )
        .with("DefaultForAz", s.default_for_az)
        .with("MapPublicIpOnLaunch", s.map_public_ip_on_launch)
        .with("AssignIpv6AddressOnCreation", false)
        .with("MapCustomerOwnedIpOnLaunch", false)
        .with("EnableDns64", false)
        .with("Ipv6Native", false)
        .with(
            "PrivateDnsNameOptionsOnLaunch",
            Value::new_struct()
                .with(
                    "HostnameType",
                    s.hostname_type.as_deref().unwrap_or("ip-name"),
                )
                .with("EnableResourceNameDnsARecord", s.resource_name_dns_a_record)
                .with("EnableResourceNameDnsAAAARecord", false),
        )
        .with_opt("Tags", input::tags_opt(&s.tags))
}

/// CreateSubnet members softvpc does not model (IPv6, IPAM, Outposts): refused by name.
const UNSUPPORTED_CREATE_SUBNET: &[(&str, &str)] = &[
    ("Ipv6CidrBlock", "there is no IPv6"),
    ("Ipv6Native", "there is no IPv6"),
    ("Ipv6IpamPoolId", "there is no IPv6"),
    ("Ipv6NetmaskLength", "there is no IPv6"),
    ("Ipv4IpamPoolId", "there is no IPAM: give CidrBlock"),
    ("Ipv4NetmaskLength", "there is no IPAM: give CidrBlock"),
    ("OutpostArn", "there are no Outposts"),
];

/// The zone a subnet is created in: `AvailabilityZone` or `AvailabilityZoneId` (a zone of the
/// region either way; both must name the same zone).
fn subnet_zone(input: &Value) -> Result<Option<String>, ApiError> {
    let name = input::optional(input, "AvailabilityZone");
    let Some(id) = input::optional(input, "AvailabilityZoneId") else {
        return Ok(name.map(str::to_string));
    };
    let Some((by_id, _)) = super::discovery::ZONES.iter().find(|(_, z)| *z == id) else {
        return Err(ApiError::invalid_value(format!(
            "Invalid availability zone ID: [{id}]"
        )));
    };
    if name.is_some_and(|n| n != *by_id) {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            format!(
                "The availability zone {} and the availability zone ID {id} name different zones.",
                name.unwrap_or_default()
            ),
        ));
    }
    Ok(Some(by_id.to_string()))
}

pub fn create_subnet(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    input::refuse_unsupported(input, UNSUPPORTED_CREATE_SUBNET)?;
    let vpc_id = input::required(input, "VpcId")?;
    let cidr = input::required(input, "CidrBlock")?;
    let tags = input::creation_tags(input, "subnet")?;
    let zone = subnet_zone(input)?;
    let az = zone.as_deref();
    let subnet = ctx.mutate(|t| model::subnet::create_subnet(t, vpc_id, cidr, az, tags.clone()))?;
    tracing::info!(subnet = %subnet.id, vpc = %vpc_id, cidr = %subnet.cidr, "subnet created");
    let state = ctx.cp.state();
    Ok(Value::new_struct().with("Subnet", subnet_value(&state, &subnet)))
}

pub fn describe_subnets(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    let (items, next) = input::describe(
        &state,
        &state.subnets,
        input,
        "SubnetIds",
        ("InvalidSubnetID.NotFound", "subnet"),
    )?;
    Ok(Value::new_struct()
        .with(
            "Subnets",
            input::list_of(&items, |s| subnet_value(&state, s)),
        )
        .with_opt("NextToken", next))
}

pub fn delete_subnet(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = input::required(input, "SubnetId")?;
    ctx.mutate(|t| model::subnet::delete_subnet(t, id))?;
    tracing::info!(subnet = %id, "subnet deleted");
    Ok(Value::new_struct())
}
