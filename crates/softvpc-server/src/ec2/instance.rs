//! RunInstances, DescribeInstances, TerminateInstances, DescribeNetworkInterfaces.

use std::sync::Arc;

use super::query::Params;
use super::xml::{iso8601, Xml};
use super::{paginate, select, Ctx};
use crate::model::instance::{private_dns_name, RunRequest};
use crate::model::{self, ApiError, Eni, Instance, InstanceState, State, OWNER_ID};

fn write_state(x: &mut Xml, name: &str, s: InstanceState) {
    x.nest(name, |x| {
        x.elem("code", s.code());
        x.elem("name", s.name());
    });
}

/// The elements of one instance; `shown_state` overrides the stored state (RunInstances answers
/// `pending`, as AWS does).
fn write_instance(x: &mut Xml, state: &State, i: &Instance, shown_state: InstanceState) {
    let live = i.state != InstanceState::Terminated;
    x.elem("instanceId", &i.id);
    x.elem("imageId", &i.image_id);
    write_state(x, "instanceState", shown_state);
    x.elem(
        "privateDnsName",
        if live {
            private_dns_name(i.private_ip)
        } else {
            String::new()
        },
    );
    x.elem("dnsName", "");
    x.elem("reason", "");
    x.elem("amiLaunchIndex", i.ami_launch_index);
    x.open("productCodes");
    x.close("productCodes");
    x.elem("instanceType", &i.instance_type);
    x.elem("launchTime", iso8601(i.launch_time));
    x.nest("placement", |x| {
        x.elem("availabilityZone", &i.availability_zone);
        x.elem("groupName", "");
        x.elem("tenancy", "default");
        x.elem("hostId", &i.host_id);
    });
    x.nest("monitoring", |x| x.elem("state", "disabled"));
    x.elem("subnetId", &i.subnet_id);
    x.elem("vpcId", &i.vpc_id);
    if live {
        x.elem("privateIpAddress", i.private_ip);
    }
    x.elem("sourceDestCheck", "true");
    x.open("groupSet");
    x.close("groupSet");
    x.elem("architecture", "x86_64");
    x.elem("rootDeviceType", "ebs");
    x.elem("rootDeviceName", "/dev/xvda");
    x.open("blockDeviceMapping");
    x.close("blockDeviceMapping");
    x.elem("virtualizationType", "hvm");
    x.elem("hypervisor", "xen");
    let enis: Vec<&Arc<Eni>> = if live {
        state.enis.get(&i.eni_id).into_iter().collect()
    } else {
        Vec::new()
    };
    x.set("networkInterfaceSet", enis, |x, e| {
        x.elem("networkInterfaceId", &e.id);
        x.elem("subnetId", &e.subnet_id);
        x.elem("vpcId", &e.vpc_id);
        x.elem("description", &e.description);
        x.elem("ownerId", OWNER_ID);
        x.elem("status", "in-use");
        x.elem("macAddress", &e.mac);
        x.elem("privateIpAddress", e.private_ip);
        x.elem("privateDnsName", private_dns_name(e.private_ip));
        x.elem("sourceDestCheck", e.source_dest_check);
        x.open("groupSet");
        x.close("groupSet");
        if let Some(a) = &e.attachment {
            x.nest("attachment", |x| {
                x.elem("attachmentId", &a.attachment_id);
                x.elem("deviceIndex", a.device_index);
                x.elem("status", "attached");
                x.elem("attachTime", iso8601(a.attach_time));
                x.elem("deleteOnTermination", a.delete_on_termination);
                x.elem("networkCardIndex", 0);
            });
        }
        x.set("privateIpAddressesSet", [e], |x, e| {
            x.elem("privateIpAddress", e.private_ip);
            x.elem("privateDnsName", private_dns_name(e.private_ip));
            x.elem("primary", "true");
        });
        x.elem("interfaceType", "interface");
    });
    x.tags(&i.tags);
}

pub fn run_instances(ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<(), ApiError> {
    let subnet_id = p.required("SubnetId")?.to_string();
    let min_count = p.u32("MinCount")?;
    let max_count = p.u32("MaxCount")?;
    // AWS requires both counts; the CLI always sends them. Accept one alone as both.
    let (min_count, max_count) = match (min_count, max_count) {
        (Some(a), Some(b)) => (a, b),
        (Some(a), None) | (None, Some(a)) => (a, a),
        (None, None) => (1, 1),
    };
    let placement = p.member("Placement");
    let req = RunRequest {
        image_id: p
            .get("ImageId")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        instance_type: p
            .get("InstanceType")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        min_count,
        max_count,
        subnet_id,
        private_ip: p
            .get("PrivateIpAddress")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        host: placement
            .get("HostId")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        tag_specs: p.tag_specifications()?,
    };
    let res = ctx.mutate(|t| model::instance::run_instances(t, &req))?;
    for i in &res.instances {
        tracing::info!(instance = %i.id, ip = %i.private_ip, host = %i.host_id, name = i.name(), "instance launched");
    }
    let state = ctx.cp.state();
    x.elem("reservationId", &res.reservation_id);
    x.elem("ownerId", OWNER_ID);
    x.open("groupSet");
    x.close("groupSet");
    x.set("instancesSet", &res.instances, |x, i| {
        write_instance(x, &state, i, InstanceState::Pending)
    });
    Ok(())
}

pub fn describe_instances(ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<(), ApiError> {
    let state = ctx.cp.state();
    let mut items = select(
        &state,
        &state.instances,
        &p.list("InstanceId"),
        ("InvalidInstanceID.NotFound", "instance"),
        &p.filters()?,
    )?;
    // Oldest launches first, then by launch index: reservations group naturally.
    items.sort_by(|a, b| {
        (a.launch_time, &a.reservation_id, a.ami_launch_index).cmp(&(
            b.launch_time,
            &b.reservation_id,
            b.ami_launch_index,
        ))
    });
    let (items, next) = paginate(items, p)?;
    let mut reservations: Vec<(String, Vec<Arc<Instance>>)> = Vec::new();
    for i in items {
        match reservations.last_mut() {
            Some((r, list)) if *r == i.reservation_id => list.push(i),
            _ => reservations.push((i.reservation_id.clone(), vec![i])),
        }
    }
    x.set("reservationSet", &reservations, |x, (rid, list)| {
        x.elem("reservationId", rid);
        x.elem("ownerId", OWNER_ID);
        x.open("groupSet");
        x.close("groupSet");
        x.set("instancesSet", list, |x, i| {
            write_instance(x, &state, i, i.state)
        });
    });
    if let Some(t) = next {
        x.elem("nextToken", t);
    }
    Ok(())
}

pub fn terminate_instances(ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<(), ApiError> {
    let ids = p.list("InstanceId");
    let changes = ctx.mutate(|t| model::instance::terminate_instances(t, &ids))?;
    for c in &changes {
        tracing::info!(instance = %c.instance_id, "instance terminated");
    }
    x.set("instancesSet", &changes, |x, c| {
        x.elem("instanceId", &c.instance_id);
        write_state(x, "currentState", c.current);
        write_state(x, "previousState", c.previous);
    });
    Ok(())
}

fn write_eni(x: &mut Xml, e: &Eni) {
    x.elem("networkInterfaceId", &e.id);
    x.elem("subnetId", &e.subnet_id);
    x.elem("vpcId", &e.vpc_id);
    x.elem("availabilityZone", &e.availability_zone);
    x.elem("description", &e.description);
    x.elem("ownerId", OWNER_ID);
    x.elem("requesterManaged", "false");
    x.elem(
        "status",
        if e.attachment.is_some() {
            "in-use"
        } else {
            "available"
        },
    );
    x.elem("macAddress", &e.mac);
    x.elem("privateIpAddress", e.private_ip);
    x.elem("privateDnsName", private_dns_name(e.private_ip));
    x.elem("sourceDestCheck", e.source_dest_check);
    x.open("groupSet");
    x.close("groupSet");
    if let Some(a) = &e.attachment {
        x.nest("attachment", |x| {
            x.elem("attachmentId", &a.attachment_id);
            x.elem("instanceId", &a.instance_id);
            x.elem("instanceOwnerId", OWNER_ID);
            x.elem("deviceIndex", a.device_index);
            x.elem("status", "attached");
            x.elem("attachTime", iso8601(a.attach_time));
            x.elem("deleteOnTermination", a.delete_on_termination);
            x.elem("networkCardIndex", 0);
        });
    }
    x.tags(&e.tags);
    x.set("privateIpAddressesSet", [e], |x, e| {
        x.elem("privateIpAddress", e.private_ip);
        x.elem("privateDnsName", private_dns_name(e.private_ip));
        x.elem("primary", "true");
    });
    x.open("ipv6AddressesSet");
    x.close("ipv6AddressesSet");
    x.elem("interfaceType", "interface");
}

pub fn describe_network_interfaces(ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<(), ApiError> {
    let state = ctx.cp.state();
    let items = select(
        &state,
        &state.enis,
        &p.list("NetworkInterfaceId"),
        ("InvalidNetworkInterfaceID.NotFound", "networkInterface"),
        &p.filters()?,
    )?;
    let (items, next) = paginate(items, p)?;
    x.set("networkInterfaceSet", &items, |x, e| write_eni(x, e));
    if let Some(t) = next {
        x.elem("nextToken", t);
    }
    Ok(())
}
