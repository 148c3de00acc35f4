//! CreateVpc, DescribeVpcs, DeleteVpc.

use super::query::Params;
use super::xml::Xml;
use super::{paginate, select, Ctx};
use crate::model::tags::{check_specs, tags_for};
use crate::model::{self, ApiError, Vpc, OWNER_ID};

/// The elements of one VPC.
pub fn write_vpc(x: &mut Xml, v: &Vpc) {
    x.elem("vpcId", &v.id);
    x.elem("ownerId", OWNER_ID);
    x.elem("state", "available");
    x.elem("cidrBlock", v.cidr);
    x.set("cidrBlockAssociationSet", [v], |x, v| {
        x.elem("cidrBlock", v.cidr);
        x.elem("associationId", &v.cidr_association_id);
        x.nest("cidrBlockState", |x| x.elem("state", "associated"));
    });
    x.elem("dhcpOptionsId", "default");
    x.elem("instanceTenancy", &v.instance_tenancy);
    x.elem("isDefault", "false");
    x.tags(&v.tags);
}

pub fn create_vpc(ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<(), ApiError> {
    let cidr = p.required("CidrBlock")?;
    let specs = p.tag_specifications()?;
    check_specs(&specs, &["vpc"])?;
    let tags = tags_for(&specs, "vpc")?;
    let vpc = ctx.mutate(|t| model::vpc::create_vpc(t, cidr, p.get("InstanceTenancy"), tags))?;
    tracing::info!(vpc = %vpc.id, cidr = %vpc.cidr, vni = vpc.vni, "VPC created");
    x.nest("vpc", |x| write_vpc(x, &vpc));
    Ok(())
}

pub fn describe_vpcs(ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<(), ApiError> {
    let state = ctx.cp.state();
    let items = select(
        &state,
        &state.vpcs,
        &p.list("VpcId"),
        ("InvalidVpcID.NotFound", "vpc"),
        &p.filters()?,
    )?;
    let (items, next) = paginate(items, p)?;
    x.set("vpcSet", &items, |x, v| write_vpc(x, v));
    if let Some(t) = next {
        x.elem("nextToken", t);
    }
    Ok(())
}

pub fn delete_vpc(ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<(), ApiError> {
    let id = p.required("VpcId")?;
    ctx.mutate(|t| model::vpc::delete_vpc(t, id))?;
    tracing::info!(vpc = %id, "VPC deleted");
    x.elem("return", "true");
    Ok(())
}
