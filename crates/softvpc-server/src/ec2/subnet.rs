//! CreateSubnet, DescribeSubnets, DeleteSubnet.

use super::query::Params;
use super::xml::Xml;
use super::{paginate, select, Ctx};
use crate::model::subnet::available_count;
use crate::model::tags::{check_specs, tags_for};
use crate::model::{self, ApiError, State, Subnet, OWNER_ID};

/// The elements of one subnet.
pub fn write_subnet(x: &mut Xml, state: &State, s: &Subnet) {
    x.elem("subnetId", &s.id);
    x.elem(
        "subnetArn",
        format!("arn:aws:ec2:us-east-1:{OWNER_ID}:subnet/{}", s.id),
    );
    x.elem("state", "available");
    x.elem("ownerId", OWNER_ID);
    x.elem("vpcId", &s.vpc_id);
    x.elem("cidrBlock", s.cidr);
    x.elem("availableIpAddressCount", available_count(state, s));
    x.elem("availabilityZone", &s.availability_zone);
    x.elem("defaultForAz", "false");
    x.elem("mapPublicIpOnLaunch", "false");
    x.elem("assignIpv6AddressOnCreation", "false");
    x.tags(&s.tags);
}

pub fn create_subnet(ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<(), ApiError> {
    let vpc_id = p.required("VpcId")?;
    let cidr = p.required("CidrBlock")?;
    let specs = p.tag_specifications()?;
    check_specs(&specs, &["subnet"])?;
    let tags = tags_for(&specs, "subnet")?;
    let az = p.get("AvailabilityZone").filter(|a| !a.is_empty());
    let subnet = ctx.mutate(|t| model::subnet::create_subnet(t, vpc_id, cidr, az, tags))?;
    tracing::info!(subnet = %subnet.id, vpc = %vpc_id, cidr = %subnet.cidr, "subnet created");
    let state = ctx.cp.state();
    x.nest("subnet", |x| write_subnet(x, &state, &subnet));
    Ok(())
}

pub fn describe_subnets(ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<(), ApiError> {
    let state = ctx.cp.state();
    let items = select(
        &state,
        &state.subnets,
        &p.list("SubnetId"),
        ("InvalidSubnetID.NotFound", "subnet"),
        &p.filters()?,
    )?;
    let (items, next) = paginate(items, p)?;
    x.set("subnetSet", &items, |x, s| write_subnet(x, &state, s));
    if let Some(t) = next {
        x.elem("nextToken", t);
    }
    Ok(())
}

pub fn delete_subnet(ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<(), ApiError> {
    let id = p.required("SubnetId")?;
    ctx.mutate(|t| model::subnet::delete_subnet(t, id))?;
    tracing::info!(subnet = %id, "subnet deleted");
    x.elem("return", "true");
    Ok(())
}
