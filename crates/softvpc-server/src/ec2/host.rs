//! DescribeHosts: the registered hosts, shaped as EC2 Dedicated Hosts (tag Name = host name).

use super::query::Params;
use super::xml::{iso8601, Xml};
use super::{paginate, select, Ctx};
use crate::model::filter::Filterable;
use crate::model::instance::DEFAULT_INSTANCE_TYPE;
use crate::model::{ApiError, Host, InstanceState, State, OWNER_ID};

fn write_host(x: &mut Xml, state: &State, h: &Host) {
    x.elem("hostId", &h.id);
    x.elem("autoPlacement", "on");
    x.elem("hostRecovery", "off");
    x.elem("availabilityZone", &h.availability_zone);
    x.nest("hostProperties", |x| {
        x.elem("instanceType", DEFAULT_INSTANCE_TYPE);
        x.elem("instanceFamily", "t3");
        x.elem("sockets", 1);
        x.elem("cores", 2);
        x.elem("totalVCpus", 2);
    });
    let instances: Vec<_> = state
        .instances
        .values()
        .filter(|i| i.host_id == h.id && i.state != InstanceState::Terminated)
        .collect();
    x.set("instances", &instances, |x, i| {
        x.elem("instanceId", &i.id);
        x.elem("instanceType", &i.instance_type);
        x.elem("ownerId", OWNER_ID);
    });
    x.elem("state", "available");
    x.elem("allocationTime", iso8601(h.allocation_time));
    x.elem("ownerId", OWNER_ID);
    x.elem("memberOfServiceLinkedResourceGroup", "false");
    x.tags(&h.tag_map());
}

pub fn describe_hosts(ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<(), ApiError> {
    let state = ctx.cp.state();
    let items = select(
        &state,
        &state.hosts,
        &p.list("HostId"),
        ("InvalidHostID.NotFound", "host"),
        &p.filters()?,
    )?;
    let (items, next) = paginate(items, p)?;
    x.set("hostSet", &items, |x, h| write_host(x, &state, h));
    if let Some(t) = next {
        x.elem("nextToken", t);
    }
    Ok(())
}
