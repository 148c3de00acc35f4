//! CreateVpc, DescribeVpcs, DeleteVpc.

use softvpc_ec2_protocol::Value;

use super::input::{self, ValueExt};
use super::Ctx;
use softvpc_model::{self as model, ApiError, Vpc, OWNER_ID};

/// The `Vpc` structure of one VPC.
pub fn vpc_value(v: &Vpc) -> Value {
    Value::new_struct()
        .with("VpcId", v.id.as_str())
        .with("OwnerId", OWNER_ID)
        .with("State", "available")
        .with("CidrBlock", v.cidr.to_string())
        .with(
            "CidrBlockAssociationSet",
            vec![Value::new_struct()
                .with("CidrBlock", v.cidr.to_string())
                .with("AssociationId", v.cidr_association_id.as_str())
                .with(
                    "CidrBlockState",
                    Value::new_struct().with("State", "associated"),
                )],
        )
        .with(
            "DhcpOptionsId",
            v.dhcp_options_id.as_deref().unwrap_or("default"),
        )
        .with("InstanceTenancy", v.instance_tenancy.as_str())
        .with("IsDefault", v.is_default)
        .with_opt("Tags", input::tags_opt(&v.tags))
}

/// CreateVpc members softvpc does not model (IPv6, IPAM, encryption control): refused by name.
const UNSUPPORTED_CREATE_VPC: &[(&str, &str)] = &[
    ("AmazonProvidedIpv6CidrBlock", "there is no IPv6"),
    ("Ipv6CidrBlock", "there is no IPv6"),
    ("Ipv6Pool", "there is no IPv6"),
    ("Ipv6IpamPoolId", "there is no IPv6"),
    ("Ipv6NetmaskLength", "there is no IPv6"),
    ("Ipv6CidrBlockNetworkBorderGroup", "there is no IPv6"),
    ("Ipv4IpamPoolId", "there is no IPAM: give CidrBlock"),
    ("Ipv4NetmaskLength", "there is no IPAM: give CidrBlock"),
    ("VpcEncryptionControl", "traffic is not encrypted"),
];

pub fn create_vpc(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    input::refuse_unsupported(input, UNSUPPORTED_CREATE_VPC)?;
    let cidr = input::required(input, "CidrBlock")?;
    let tags = input::creation_tags(input, "vpc")?;
    let tenancy = input.get_str("InstanceTenancy");
    let vpc = ctx.mutate(|t| model::vpc::create_vpc(t, cidr, tenancy, tags.clone()))?;
    tracing::info!(vpc = %vpc.id, cidr = %vpc.cidr, vni = vpc.vni, "VPC created");
    Ok(Value::new_struct().with("Vpc", vpc_value(&vpc)))
}

pub fn describe_vpcs(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    let (items, next) = input::describe(
        &state,
        &state.vpcs,
        input,
        "VpcIds",
        ("InvalidVpcID.NotFound", "vpc"),
    )?;
    Ok(Value::new_struct()
        .with("Vpcs", input::list_of(&items, |v| vpc_value(v)))
        .with_opt("NextToken", next))
}

pub fn delete_vpc(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = input::required(input, "VpcId")?;
    ctx.mutate(|t| model::vpc::delete_vpc(t, id))?;
    tracing::info!(vpc = %id, "VPC deleted");
    Ok(Value::new_struct())
}
