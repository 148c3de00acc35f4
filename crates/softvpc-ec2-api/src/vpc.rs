//! CreateVpc, DescribeVpcs, DeleteVpc, Associate/DisassociateVpcCidrBlock (IPv4).

use softvpc_ec2_protocol::Value;

use super::input::{self, ValueExt};
use super::Ctx;
use softvpc_model::{self as model, ApiError, Vpc, OWNER_ID};

/// A `VpcCidrBlockAssociation` in state `state`.
fn block_value(cidr: &str, association_id: &str, state: &str) -> Value {
    Value::new_struct()
        .with("AssociationId", association_id)
        .with("CidrBlock", cidr)
        .with("CidrBlockState", Value::new_struct().with("State", state))
}

/// The `Vpc` structure of one VPC at `now`: its primary block, then the secondary ones still
/// listed (a disassociated one for a while).
pub fn vpc_value(v: &Vpc, now: u64) -> Value {
    let primary = block_value(&v.cidr.to_string(), &v.cidr_association_id, "associated");
    let blocks: Vec<Value> = std::iter::once(primary)
        .chain(
            v.secondary_cidrs
                .iter()
                .filter(|b| b.visible(now))
                .map(|b| block_value(&b.cidr.to_string(), &b.association_id, b.state())),
        )
        .collect();
    Value::new_struct()
        .with("VpcId", v.id.as_str())
        .with("OwnerId", OWNER_ID)
        .with("State", "available")
        .with("CidrBlock", v.cidr.to_string())
        .with("CidrBlockAssociationSet", blocks)
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
    Ok(Value::new_struct().with("Vpc", vpc_value(&vpc, softvpc_store::now_secs())))
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
        .with("Vpcs", {
            let now = softvpc_store::now_secs();
            input::list_of(&items, |v| vpc_value(v, now))
        })
        .with_opt("NextToken", next))
}

pub fn delete_vpc(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = input::required(input, "VpcId")?;
    ctx.mutate(|t| model::vpc::delete_vpc(t, id))?;
    tracing::info!(vpc = %id, "VPC deleted");
    Ok(Value::new_struct())
}

/// AssociateVpcCidrBlock members for IPv6 and IPAM: refused by name.
const UNSUPPORTED_ASSOCIATE: &[(&str, &str)] = &[
    ("AmazonProvidedIpv6CidrBlock", "there is no IPv6"),
    ("Ipv6CidrBlock", "there is no IPv6"),
    ("Ipv6Pool", "there is no IPv6"),
    ("Ipv6IpamPoolId", "there is no IPv6"),
    ("Ipv6NetmaskLength", "there is no IPv6"),
    ("Ipv6CidrBlockNetworkBorderGroup", "there is no IPv6"),
    ("Ipv4IpamPoolId", "there is no IPAM: give CidrBlock"),
    ("Ipv4NetmaskLength", "there is no IPAM: give CidrBlock"),
];

/// The `CidrBlockAssociation` output structure (what Associate/Disassociate answer).
fn association_out(vpc_id: &str, cidr: &str, association_id: &str, state: &str) -> Value {
    Value::new_struct()
        .with(
            "CidrBlockAssociation",
            block_value(cidr, association_id, state),
        )
        .with("VpcId", vpc_id)
}

pub fn associate_vpc_cidr_block(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    input::refuse_unsupported(input, UNSUPPORTED_ASSOCIATE)?;
    let vpc_id = input::required(input, "VpcId")?;
    let cidr = input::required(input, "CidrBlock")?;
    let (_, block) = ctx.mutate(|t| model::vpc::associate_cidr_block(t, vpc_id, cidr))?;
    tracing::info!(vpc = %vpc_id, cidr = %block.cidr, association = %block.association_id,
        "VPC CIDR block associated");
    // AWS answers `associating`; the block is `associated` as soon as it is stored here.
    Ok(association_out(
        vpc_id,
        &block.cidr.to_string(),
        &block.association_id,
        "associating",
    ))
}

pub fn disassociate_vpc_cidr_block(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = input::required(input, "AssociationId")?;
    let (vpc_id, block) = ctx.mutate(|t| model::vpc::disassociate_cidr_block(t, id))?;
    tracing::info!(vpc = %vpc_id, cidr = %block.cidr, association = %id,
        "VPC CIDR block disassociated");
    Ok(association_out(
        &vpc_id,
        &block.cidr.to_string(),
        id,
        "disassociating",
    ))
}
