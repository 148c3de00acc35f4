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

pub fn modify_subnet_attribute(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = input::required(input, "SubnetId")?;
    let map_public = boolean(input, "MapPublicIpOnLaunch")?;
    ctx.mutate(|t| m::modify_subnet_attribute(t, id, map_public))?;
    Ok(Value::new_struct())
}
