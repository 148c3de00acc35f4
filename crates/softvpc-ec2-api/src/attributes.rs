//! DescribeVpcAttribute, ModifyVpcAttribute, ModifySubnetAttribute.

use softvpc_ec2_protocol::Value;

use super::input;
use super::Ctx;
use softvpc_model::attributes::{self as m, VpcAttribute};
use softvpc_model::ApiError;

/// `X.Value` of an `AttributeBooleanValue` member, if the member is present.
fn boolean(input: &Value, name: &str) -> Result<Option<bool>, ApiError> {
    match input.get(name) {
        None => Ok(None),
        Some(v) => v
            .get_bool("Value")
            .map(Some)
            .ok_or_else(|| ApiError::missing(&format!("{name}.Value"))),
    }
}

pub fn describe_vpc_attribute(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = input::required(input, "VpcId")?;
    let attr = VpcAttribute::parse(input::required(input, "Attribute")?)?;
    let state = ctx.cp.state();
    let vpc = state
        .vpcs
        .get(id)
        .ok_or_else(|| ApiError::not_found("InvalidVpcID.NotFound", "vpc", &[id]))?;
    let member = match attr {
        VpcAttribute::EnableDnsSupport => "EnableDnsSupport",
        VpcAttribute::EnableDnsHostnames => "EnableDnsHostnames",
    };
    Ok(Value::new_struct()
        .with("VpcId", id)
        .with(member, Value::new_struct().with("Value", attr.get(vpc))))
}

pub fn modify_vpc_attribute(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = input::required(input, "VpcId")?;
    let support = boolean(input, "EnableDnsSupport")?;
    let hostnames = boolean(input, "EnableDnsHostnames")?;
    ctx.mutate(|t| m::modify_vpc_attribute(t, id, support, hostnames))?;
    Ok(Value::new_struct())
}

/// `ModifySubnetAttribute`: `MapPublicIpOnLaunch`, `PrivateDnsHostnameTypeOnLaunch` and
/// `EnableResourceNameDnsARecordOnLaunch` (shown by DescribeSubnets); the IPv6, customer-owned
/// and LNI attributes are refused by name when they ask for something (there is no IPv6, no
/// Outpost, no LNI), accepted when they only set the default.
pub fn modify_subnet_attribute(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    use softvpc_model::attributes::SubnetChange;
    let id = input::required(input, "SubnetId")?;
    let mut changes = Vec::new();
    if let Some(v) = boolean(input, "MapPublicIpOnLaunch")? {
        changes.push(SubnetChange::MapPublicIpOnLaunch(v));
    }
    if let Some(t) = input::optional(input, "PrivateDnsHostnameTypeOnLaunch") {
        changes.push(SubnetChange::HostnameType(t.to_string()));
    }
    if let Some(v) = boolean(input, "EnableResourceNameDnsARecordOnLaunch")? {
        changes.push(SubnetChange::ResourceNameDnsARecord(v));
    }
    let refuse = |member: &str, why: &str| {
        Err(ApiError::invalid_value(format!(
            "The parameter {member} is not supported: {why}."
        )))
    };
    for (member, why) in [
        ("AssignIpv6AddressOnCreation", "there is no IPv6"),
        ("EnableDns64", "there is no IPv6"),
        (
            "EnableResourceNameDnsAAAARecordOnLaunch",
            "there is no IPv6",
        ),
        ("MapCustomerOwnedIpOnLaunch", "there are no Outposts"),
    ] {
        match boolean(input, member)? {
            Some(true) => return refuse(member, why),
            Some(false) => changes.push(SubnetChange::Unchanged),
            None => {}
        }
    }
    if input::optional(input, "CustomerOwnedIpv4Pool").is_some() {
        return refuse("CustomerOwnedIpv4Pool", "there are no Outposts");
    }
    for member in ["EnableLniAtDeviceIndex", "DisableLniAtDeviceIndex"] {
        if input.get(member).is_some() {
            return refuse(member, "there are no local network interfaces");
        }
    }
    if changes.len() > 1 {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "Fields for multiple attribute types specified",
        ));
    }
    let Some(change) = changes.pop() else {
        return Err(ApiError::new(
            "MissingParameter",
            "The request must contain exactly one attribute to modify.",
        ));
    };
    ctx.mutate(|t| m::modify_subnet(t, id, change.clone()))?;
    Ok(Value::new_struct())
}
