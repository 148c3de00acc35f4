//! Network interface actions: Create/Delete/Describe, Attach/Detach,
//! Assign/UnassignPrivateIpAddresses, Modify/DescribeNetworkInterfaceAttribute.

use softvpc_ec2_protocol::{Timestamp, Value};

use super::input::{self, ValueExt};
use super::{Ctx, Listing};
use softvpc_model::eni::{self as m, ConnectionTracking, CreateRequest, Modify};
use softvpc_model::instance::{private_dns_name, public_address_of, public_dns_name};
use softvpc_model::{ApiError, Eni, State, OWNER_ID};

/// `[{GroupId, GroupName}]` of an ENI's groups.
fn groups_value(state: &State, e: &Eni) -> Value {
    Value::List(
        e.security_groups
            .iter()
            .map(|g| {
                let name = state
                    .security_groups
                    .get(g)
                    .map(|g| g.name.clone())
                    .unwrap_or_default();
                Value::new_struct()
                    .with("GroupId", g.as_str())
                    .with("GroupName", name)
            })
            .collect(),
    )
}

/// The `NetworkInterfaceAttachment` structure, if attached.
fn attachment_value(e: &Eni) -> Option<Value> {
    e.attachment.as_ref().map(|a| {
        Value::new_struct()
            .with("AttachTime", Timestamp::from_unix(a.attach_time as i64))
            .with("AttachmentId", a.attachment_id.as_str())
            .with("DeleteOnTermination", a.delete_on_termination)
            .with("DeviceIndex", a.device_index)
            .with("NetworkCardIndex", 0u32)
            .with("InstanceId", a.instance_id.as_str())
            .with("InstanceOwnerId", OWNER_ID)
            .with("Status", "attached")
    })
}

/// The `NetworkInterfaceAssociation` of private address `ip` of `e`: its Elastic IP, or its
/// automatic public IP (owner `amazon`, no allocation or association id).
fn association(state: &State, e: &Eni, ip: std::net::Ipv4Addr) -> Option<Value> {
    public_address_of(state, e, ip).map(|p| {
        let eip = p.elastic();
        Value::new_struct()
            .with_opt("AllocationId", eip.map(|a| a.allocation_id.as_str()))
            .with_opt(
                "AssociationId",
                eip.and_then(|a| a.association.as_ref())
                    .map(|s| s.id.as_str()),
            )
            .with("IpOwnerId", p.owner())
            .with("PublicDnsName", public_dns_name(state, &e.vpc_id, p.ip()))
            .with("PublicIp", p.ip().to_string())
    })
}

/// The `ConnectionTrackingSpecification` member of a request (`ConnectionTrackingSpecificationRequest`),
/// each timeout checked against AWS's bounds; absent: nothing set.
pub(crate) fn connection_tracking(input: &Value) -> Result<ConnectionTracking, ApiError> {
    match input.get("ConnectionTrackingSpecification") {
        None => Ok(ConnectionTracking::default()),
        Some(c) => ConnectionTracking::from_request(
            c.get_i64("TcpEstablishedTimeout"),
            c.get_i64("UdpStreamTimeout"),
            c.get_i64("UdpTimeout"),
        ),
    }
}

/// The `ConnectionTrackingConfiguration` of an ENI whose timeouts were set: all three in force
/// (AWS's default for one never set).
pub(crate) fn connection_tracking_value(e: &Eni) -> Option<Value> {
    (!e.connection_tracking.is_default()).then(|| {
        let (tcp, stream, udp) = e.connection_tracking.effective();
        Value::new_struct()
            .with("TcpEstablishedTimeout", tcp)
            .with("UdpStreamTimeout", stream)
            .with("UdpTimeout", udp)
    })
}

/// The `NetworkInterface` structure of one ENI.
pub fn eni_value(state: &State, e: &Eni) -> Value {
    // A NAT gateway's interface: AWS shows it in use, of type nat_gateway, requester-managed,
    // attached at device index 1 by `amazon-aws` (an `ela-attach-` attachment).
    let managed = softvpc_model::eni::is_managed(state, &e.id);
    let status = if e.attachment.is_some() || managed {
        "in-use"
    } else {
        "available"
    };
    let attachment = attachment_value(e).or_else(|| {
        managed.then(|| {
            Value::new_struct()
                .with(
                    "AttachmentId",
                    format!("ela-attach-{}", e.id.trim_start_matches("eni-")),
                )
                .with("DeleteOnTermination", false)
                .with("DeviceIndex", 1u32)
                .with("NetworkCardIndex", 0u32)
                .with("InstanceOwnerId", "amazon-aws")
                .with("Status", "attached")
        })
    });
    let addresses: Vec<Value> = e
        .addresses()
        .enumerate()
        .map(|(i, a)| {
            Value::new_struct()
                .with_opt("Association", association(state, e, a))
                .with("Primary", i == 0)
                .with("PrivateDnsName", private_dns_name(a))
                .with("PrivateIpAddress", a.to_string())
        })
        .collect();
    Value::new_struct()
        .with_opt("Association", association(state, e, e.private_ip))
        .with_opt("Attachment", attachment)
        .with("AvailabilityZone", e.availability_zone.as_str())
        .with_opt(
            "ConnectionTrackingConfiguration",
            connection_tracking_value(e),
        )
        .with("Description", e.description.as_str())
        .with("Groups", groups_value(state, e))
        .with(
            "InterfaceType",
            if managed { "nat_gateway" } else { "interface" },
        )
        .with("Ipv6Addresses", Value::List(Vec::new()))
        .with("MacAddress", e.mac.as_str())
        .with("NetworkInterfaceId", e.id.as_str())
        .with("OwnerId", OWNER_ID)
        .with("PrivateDnsName", private_dns_name(e.private_ip))
        .with("PrivateIpAddress", e.private_ip.to_string())
        .with("PrivateIpAddresses", Value::List(addresses))
        .with("RequesterManaged", managed)
        .with("SourceDestCheck", e.source_dest_check)
        .with("Status", status)
        .with("SubnetId", e.subnet_id.as_str())
        .with_opt("TagSet", input::tags_opt(&e.tags))
        .with("VpcId", e.vpc_id.as_str())
}

fn count(input: &Value, name: &str) -> Result<Option<u32>, ApiError> {
    match input.get_i64(name) {
        None => Ok(None),
        Some(n) => u32::try_from(n).map(Some).map_err(|_| {
            ApiError::invalid_value(format!("Value ({n}) for parameter {name} is invalid."))
        }),
    }
}

/// CreateNetworkInterface members softvpc does not model: refused by name.
const UNSUPPORTED_CREATE_ENI: &[(&str, &str)] = &[
    ("Ipv6Addresses", "there is no IPv6"),
    ("Ipv6AddressCount", "there is no IPv6"),
    ("EnablePrimaryIpv6", "there is no IPv6"),
    ("Ipv6Prefixes", "there is no IPv6"),
    ("Ipv6PrefixCount", "there is no IPv6"),
    ("Ipv4Prefixes", "interfaces have addresses, not prefixes"),
    ("Ipv4PrefixCount", "interfaces have addresses, not prefixes"),
    ("Operator", "there are no managed interfaces"),
];

pub fn create_network_interface(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    input::refuse_unsupported(input, UNSUPPORTED_CREATE_ENI)?;
    if let Some(t) = input::optional(input, "InterfaceType").filter(|t| *t != "interface") {
        return Err(ApiError::invalid_value(format!(
            "The parameter InterfaceType is not supported: only standard interfaces exist, not '{t}'."
        )));
    }
    let private_ips = input
        .get_list("PrivateIpAddresses")
        .iter()
        .map(|s| {
            let a = input::required(s, "PrivateIpAddress")?;
            Ok((a.to_string(), s.get_bool("Primary").unwrap_or(false)))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let req = CreateRequest {
        subnet_id: input::required(input, "SubnetId")?.to_string(),
        private_ip: input::optional(input, "PrivateIpAddress").map(str::to_string),
        private_ips,
        secondary_count: count(input, "SecondaryPrivateIpAddressCount")?,
        groups: input::id_list(input, "Groups"),
        description: input.get_str("Description").map(str::to_string),
        tag_specs: input::tag_specs(input, &["network-interface"])?,
        client_token: input::optional(input, "ClientToken").map(str::to_string),
        connection_tracking: connection_tracking(input)?,
    };
    let eni = ctx.mutate(|t| m::create_network_interface(t, &req))?;
    tracing::info!(eni = %eni.id, ip = %eni.private_ip, subnet = %eni.subnet_id, "network interface created");
    let state = ctx.cp.state();
    // A retry shows the ENI as it is now (it may have been attached or tagged since).
    let current = state.enis.get(&eni.id).map_or(&eni, |e| &**e);
    Ok(Value::new_struct()
        .with("NetworkInterface", eni_value(&state, current))
        .with_opt("ClientToken", req.client_token.as_deref()))
}

pub fn delete_network_interface(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = input::required(input, "NetworkInterfaceId")?;
    ctx.mutate(|t| m::delete_network_interface(t, id))?;
    tracing::info!(eni = %id, "network interface deleted");
    Ok(Value::new_struct())
}

pub fn describe_network_interfaces(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    network_interface_listing(ctx, input).map(Listing::into_value)
}

/// DescribeNetworkInterfaces as a [`Listing`]: selected from one snapshot, rendered per item.
pub fn network_interface_listing(ctx: &Ctx<'_>, input: &Value) -> Result<Listing, ApiError> {
    let state = ctx.cp.state();
    let (items, next) = input::describe(
        &state,
        &state.enis,
        input,
        "NetworkInterfaceIds",
        ("InvalidNetworkInterfaceID.NotFound", "networkInterface"),
    )?;
    let head = Value::new_struct().with_opt("NextToken", next);
    Ok(Listing::new(head, "NetworkInterfaces", items, move |e| {
        eni_value(&state, e)
    }))
}

pub fn attach_network_interface(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let eni = input::required(input, "NetworkInterfaceId")?;
    let instance = input::required(input, "InstanceId")?;
    let index = count(input, "DeviceIndex")?.ok_or_else(|| ApiError::missing("DeviceIndex"))?;
    let id = ctx.mutate(|t| m::attach_network_interface(t, eni, instance, index))?;
    tracing::info!(eni, instance, device_index = index, attachment = %id, "network interface attached");
    Ok(Value::new_struct()
        .with("AttachmentId", id)
        .with("NetworkCardIndex", 0u32))
}

pub fn detach_network_interface(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = input::required(input, "AttachmentId")?;
    ctx.mutate(|t| m::detach_network_interface(t, id))?;
    tracing::info!(attachment = %id, "network interface detached");
    Ok(Value::new_struct())
}

pub fn assign_private_ip_addresses(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let eni = input::required(input, "NetworkInterfaceId")?;
    let ips = input::id_list(input, "PrivateIpAddresses");
    let n = count(input, "SecondaryPrivateIpAddressCount")?;
    let reassign = input.get_bool("AllowReassignment").unwrap_or(false);
    let got = ctx.mutate(|t| m::assign_private_ips(t, eni, &ips, n, reassign))?;
    tracing::info!(eni, addresses = ?got, "secondary addresses assigned");
    Ok(Value::new_struct().with("NetworkInterfaceId", eni).with(
        "AssignedPrivateIpAddresses",
        input::list_of(&got, |a| {
            Value::new_struct().with("PrivateIpAddress", a.to_string())
        }),
    ))
}

pub fn unassign_private_ip_addresses(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let eni = input::required(input, "NetworkInterfaceId")?;
    let ips = input::id_list(input, "PrivateIpAddresses");
    ctx.mutate(|t| m::unassign_private_ips(t, eni, &ips))?;
    tracing::info!(eni, addresses = ?ips, "secondary addresses unassigned");
    Ok(Value::new_struct())
}

pub fn modify_network_interface_attribute(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let eni = input::required(input, "NetworkInterfaceId")?;
    let mut changes = Vec::new();
    if let Some(v) = input.get("SourceDestCheck") {
        let b = v
            .get_bool("Value")
            .ok_or_else(|| ApiError::missing("SourceDestCheck.Value"))?;
        changes.push(Modify::SourceDestCheck(b));
    }
    if let Some(v) = input.get("Description") {
        changes.push(Modify::Description(
            v.get_str("Value").unwrap_or_default().to_string(),
        ));
    }
    if input.get("Groups").is_some() {
        changes.push(Modify::Groups(input::id_list(input, "Groups")));
    }
    if input.get("ConnectionTrackingSpecification").is_some() {
        changes.push(Modify::ConnectionTracking(connection_tracking(input)?));
    }
    if let Some(a) = input.get("Attachment") {
        input::refuse_unsupported(
            a,
            &[
                (
                    "EnaQueueCount",
                    "interfaces are virtual, with no ENA features",
                ),
                (
                    "DefaultEnaQueueCount",
                    "interfaces are virtual, with no ENA features",
                ),
            ],
        )?;
        let attachment_id = a
            .get_str("AttachmentId")
            .ok_or_else(|| ApiError::missing("Attachment.AttachmentId"))?;
        let delete_on_termination = a
            .get_bool("DeleteOnTermination")
            .ok_or_else(|| ApiError::missing("Attachment.DeleteOnTermination"))?;
        changes.push(Modify::Attachment {
            attachment_id: attachment_id.to_string(),
            delete_on_termination,
        });
    }
    let change = input::one_change(changes)?;
    ctx.mutate(|t| m::modify_attribute(t, eni, change.clone()))?;
    Ok(Value::new_struct())
}

pub fn describe_network_interface_attribute(
    ctx: &Ctx<'_>,
    input: &Value,
) -> Result<Value, ApiError> {
    let id = input::required(input, "NetworkInterfaceId")?;
    let attr = input::required(input, "Attribute")?;
    m::check_attribute(attr)?;
    let state = ctx.cp.state();
    let e = m::get(&state, id)?;
    let out = Value::new_struct().with("NetworkInterfaceId", e.id.as_str());
    Ok(match attr {
        "description" => out.with(
            "Description",
            Value::new_struct().with("Value", e.description.as_str()),
        ),
        "groupSet" => out.with("Groups", groups_value(&state, &e)),
        "sourceDestCheck" => out.with(
            "SourceDestCheck",
            Value::new_struct().with("Value", e.source_dest_check),
        ),
        _ => out.with_opt("Attachment", attachment_value(&e)),
    })
}
