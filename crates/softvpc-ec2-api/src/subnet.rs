//! CreateSubnet, DescribeSubnets, DeleteSubnet.

use softvpc_ec2_protocol::Value;

use super::input::{self, tag_set, ValueExt};
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
        .with("DefaultForAz", s.default_for_az)
        .with("MapPublicIpOnLaunch", s.map_public_ip_on_launch)
        .with("AssignIpv6AddressOnCreation", false)
        .with("MapCustomerOwnedIpOnLaunch", false)
        .with("EnableDns64", false)
        .with("Ipv6Native", false)
        .with(
            "PrivateDnsNameOptionsOnLaunch",
            Value::new_struct()
                .with("HostnameType", "ip-name")
                .with("EnableResourceNameDnsARecord", false)
                .with("EnableResourceNameDnsAAAARecord", false),
        )
        .with("Tags", tag_set(&s.tags))
}

pub fn create_subnet(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let vpc_id = input::required(input, "VpcId")?;
    let cidr = input::required(input, "CidrBlock")?;
    let tags = input::creation_tags(input, "subnet")?;
    let az = input::optional(input, "AvailabilityZone");
    let subnet = ctx.mutate(|t| model::subnet::create_subnet(t, vpc_id, cidr, az, tags))?;
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
