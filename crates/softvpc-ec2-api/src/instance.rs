//! RunInstances, DescribeInstances, TerminateInstances.

use std::sync::Arc;

use softvpc_ec2_protocol::Value;

use super::input::{self, tag_set, timestamp, ValueExt};
use super::Ctx;
use softvpc_model::instance::{
    private_dns_name, public_address_of, public_dns_name, public_ip, visible, InterfaceSpec,
    RunRequest,
};
use softvpc_model::{self as model, ApiError, Eni, Instance, InstanceState, State, OWNER_ID};
use softvpc_store::now_secs;

fn state_value(s: InstanceState) -> Value {
    Value::new_struct()
        .with("Code", s.code())
        .with("Name", s.name())
}

/// `GroupIdentifier`s (id and name) of security groups.
fn group_identifiers(state: &State, ids: &[String]) -> Value {
    Value::List(
        ids.iter()
            .map(|id| {
                let name = state
                    .security_groups
                    .get(id)
                    .map(|g| g.name.as_str())
                    .unwrap_or("");
                Value::new_struct()
                    .with("GroupId", id.as_str())
                    .with("GroupName", name)
            })
            .collect(),
    )
}

fn empty() -> Value {
    Value::List(Vec::new())
}

/// `StateTransitionReason` and `StateReason` of a stopped or terminated instance, as AWS words
/// them for a user-initiated stop or termination: `User initiated (2026-11-22 02:45:18 GMT)`.
fn transition_reason(i: &Instance) -> (String, Option<Value>) {
    match i.transition() {
        Some(t) => {
            let reason = Value::new_struct()
                .with("Code", t.code)
                .with("Message", t.message);
            (t.reason, Some(reason))
        }
        None => (String::new(), None),
    }
}

/// The `InstanceNetworkInterfaceAssociation` of private address `ip` of `e`: its Elastic IP
/// (owned by the account) or automatic public IP (owned by `amazon`).
fn association(state: &State, e: &Eni, ip: std::net::Ipv4Addr) -> Option<Value> {
    public_address_of(state, e, ip).map(|p| {
        Value::new_struct()
            .with("IpOwnerId", p.owner())
            .with("PublicDnsName", public_dns_name(state, &e.vpc_id, p.ip()))
            .with("PublicIp", p.ip().to_string())
    })
}

/// The launch's interface settings: `NetworkInterfaces.N` in place of the instance-level
/// `SubnetId`, `SecurityGroupIds` and `PrivateIpAddress`, which AWS refuses alongside them,
/// and the primary interface's `AssociatePublicIpAddress` (refused with several interfaces).
struct LaunchInterfaces {
    specs: Vec<InterfaceSpec>,
    associate_public_ip: Option<bool>,
}

/// Members of `InstanceNetworkInterfaceSpecification` softvpc does not model (IPv6, prefixes,
/// EFA, ENA Express, carrier addresses): refused, never ignored.
/// `InterfaceType`, `NetworkCardIndex`, `Ipv6AddressCount` and `PrimaryIpv6` pass with their
/// default values (`interface`, 0, 0, false).
const UNSUPPORTED_INTERFACE_MEMBERS: &[&str] = &[
    "Ipv6Addresses",
    "Ipv4Prefixes",
    "Ipv4PrefixCount",
    "Ipv6Prefixes",
    "Ipv6PrefixCount",
    "AssociateCarrierIpAddress",
    "EnaSrdSpecification",
    "EnaQueueCount",
];

fn unsupported(n: usize, member: &str, why: &str) -> ApiError {
    ApiError::invalid_value(format!(
        "The parameter NetworkInterfaces.{n}.{member} is not supported: {why}."
    ))
}

/// One `NetworkInterfaces.N` entry (`n` counts from 1, as on the wire).
fn interface_spec(n: usize, v: &Value) -> Result<InterfaceSpec, ApiError> {
    for m in UNSUPPORTED_INTERFACE_MEMBERS {
        let present = match v.get(m) {
            None => false,
            Some(Value::List(l)) => !l.is_empty(),
            Some(_) => true,
        };
        if present {
            return Err(unsupported(
                n,
                m,
                "softvpc has IPv4 addresses without prefixes, on standard interfaces",
            ));
        }
    }
    if let Some(t) = v.get_str("InterfaceType").filter(|t| *t != "interface") {
        return Err(unsupported(
            n,
            "InterfaceType",
            &format!("only standard interfaces exist, not '{t}'"),
        ));
    }
    if v.get_i64("NetworkCardIndex").is_some_and(|c| c != 0) {
        return Err(unsupported(
            n,
            "NetworkCardIndex",
            "every instance has one network card (index 0)",
        ));
    }
    if v.get_i64("Ipv6AddressCount").is_some_and(|c| c != 0) {
        return Err(unsupported(n, "Ipv6AddressCount", "there is no IPv6"));
    }
    if v.get_bool("PrimaryIpv6") == Some(true) {
        return Err(unsupported(n, "PrimaryIpv6", "there is no IPv6"));
    }
    let device_index = v.get_i64("DeviceIndex").ok_or_else(|| {
        ApiError::invalid_value("Each network interface requires a device index.")
    })?;
    let device_index = u32::try_from(device_index).map_err(|_| {
        ApiError::invalid_value(format!(
            "Value ({device_index}) for parameter deviceIndex is invalid."
        ))
    })?;
    let secondary_count = match v.get_i64("SecondaryPrivateIpAddressCount") {
        None => None,
        Some(c) => Some(u32::try_from(c).map_err(|_| {
            ApiError::invalid_value(format!(
                "Value ({c}) for parameter secondaryPrivateIpAddressCount is invalid."
            ))
        })?),
    };
    let opt = |name: &str| input::optional(v, name).map(str::to_string);
    Ok(InterfaceSpec {
        device_index,
        network_interface_id: opt("NetworkInterfaceId"),
        subnet_id: opt("SubnetId"),
        groups: input::id_list(v, "Groups"),
        description: opt("Description"),
        private_ip: opt("PrivateIpAddress"),
        private_ips: v
            .get_list("PrivateIpAddresses")
            .iter()
            .filter_map(|a| {
                input::optional(a, "PrivateIpAddress")
                    .map(|ip| (ip.to_string(), a.get_bool("Primary") == Some(true)))
            })
            .collect(),
        secondary_count,
        delete_on_termination: v.get_bool("DeleteOnTermination"),
        connection_tracking: super::eni::connection_tracking(v)?,
    })
}

fn launch_interfaces(input: &Value) -> Result<Option<LaunchInterfaces>, ApiError> {
    let list = input.get_list("NetworkInterfaces");
    if list.is_empty() {
        return Ok(None);
    }
    let combination = |m: &str| Err(ApiError::new("InvalidParameterCombination", m));
    let associating: Vec<&Value> = list
        .iter()
        .filter(|n| n.get_bool("AssociatePublicIpAddress").is_some())
        .collect();
    if list.len() > 1 && !associating.is_empty() {
        return combination("The associatePublicIPAddress parameter cannot be specified when launching with multiple network interfaces");
    }
    if associating
        .iter()
        .any(|n| n.get_i64("DeviceIndex").unwrap_or(0) != 0)
    {
        return combination("The associatePublicIPAddress parameter can only be specified for the network interface with DeviceIndex 0.");
    }
    if input::optional(input, "SubnetId").is_some() {
        return combination(
            "Network interfaces and an instance-level subnet ID may not be specified on the same request",
        );
    }
    if !input.get_strings("SecurityGroupIds").is_empty() {
        return combination("Network interfaces and an instance-level security groups may not be specified on the same request");
    }
    if input::optional(input, "PrivateIpAddress").is_some() {
        return combination("Network interfaces and an instance-level private IP address may not be specified on the same request");
    }
    let specs = list
        .iter()
        .enumerate()
        .map(|(i, v)| interface_spec(i + 1, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(LaunchInterfaces {
        specs,
        associate_public_ip: associating
            .first()
            .and_then(|n| n.get_bool("AssociatePublicIpAddress")),
    }))
}

/// The private addresses of an ENI (`PrivateIpAddresses` items), with their Elastic IPs.
fn primary_ip(state: &State, e: &Eni) -> Value {
    Value::List(
        e.addresses()
            .enumerate()
            .map(|(n, a)| {
                Value::new_struct()
                    .with_opt("Association", association(state, e, a))
                    .with("PrivateIpAddress", a.to_string())
                    .with("PrivateDnsName", private_dns_name(a))
                    .with("Primary", n == 0)
            })
            .collect(),
    )
}

/// The `Instance` structure; `shown_state` overrides the stored state (RunInstances answers
/// `pending`, as AWS does).
fn instance_value(state: &State, i: &Instance, shown_state: InstanceState) -> Value {
    let live = i.state != InstanceState::Terminated;
    let enis: Vec<Value> = if live {
        // Every ENI attached to the instance, by device index.
        let mut attached: Vec<&Eni> = state.enis_of_instance(&i.id).map(|e| &**e).collect();
        attached.sort_by_key(|e| e.attachment.as_ref().map(|a| a.device_index));
        attached
            .into_iter()
            .map(|e| instance_eni_value(state, e))
            .collect()
    } else {
        Vec::new()
    };
    let (reason, state_reason) = transition_reason(i);
    let public = public_ip(state, i);
    Value::new_struct()
        .with("InstanceId", i.id.as_str())
        .with("ImageId", i.image_id.as_str())
        .with("State", state_value(shown_state))
        .with(
            "PrivateDnsName",
            if live {
                private_dns_name(i.private_ip)
            } else {
                String::new()
            },
        )
        .with(
            "PublicDnsName",
            public
                .map(|a| public_dns_name(state, &i.vpc_id, a))
                .unwrap_or_default(),
        )
        .with("StateTransitionReason", reason)
        .with_opt("StateReason", state_reason)
        .with("AmiLaunchIndex", i.ami_launch_index)
        .with("ProductCodes", empty())
        .with("InstanceType", i.instance_type.as_str())
        .with("LaunchTime", timestamp(i.launch_time))
        .with(
            "Placement",
            Value::new_struct()
                .with("AvailabilityZone", i.availability_zone.as_str())
                .with("GroupName", "")
                .with("Tenancy", "default")
                .with("HostId", i.host_id.as_str()),
        )
        .with("Monitoring", Value::new_struct().with("State", "disabled"))
        .with("SubnetId", i.subnet_id.as_str())
        .with("VpcId", i.vpc_id.as_str())
        .with_opt("PrivateIpAddress", live.then(|| i.private_ip.to_string()))
        .with_opt("PublicIpAddress", public.map(|a| a.to_string()))
        .with("SourceDestCheck", true)
        .with(
            "SecurityGroups",
            group_identifiers(
                state,
                // A terminated instance's primary ENI is gone, or (attached at launch from an
                // existing ENI) kept and no longer its own.
                state
                    .enis
                    .get(&i.eni_id)
                    .filter(|_| live)
                    .map(|e| e.security_groups.as_slice())
                    .unwrap_or_default(),
            ),
        )
        .with("Architecture", "x86_64")
        .with("RootDeviceType", "ebs")
        .with("RootDeviceName", "/dev/xvda")
        .with("BlockDeviceMappings", empty())
        .with("VirtualizationType", "hvm")
        .with("Hypervisor", "xen")
        .with("NetworkInterfaces", enis)
        .with_opt(
            "ClientToken",
            i.client_token.as_ref().map(|t| t.token.as_str()),
        )
        .with("Tags", tag_set(&i.tags))
}

/// An ENI as listed inside its instance (`InstanceNetworkInterface`).
fn instance_eni_value(state: &State, e: &Eni) -> Value {
    Value::new_struct()
        .with_opt("Association", association(state, e, e.private_ip))
        .with("NetworkInterfaceId", e.id.as_str())
        .with("SubnetId", e.subnet_id.as_str())
        .with("VpcId", e.vpc_id.as_str())
        .with("Description", e.description.as_str())
        .with("OwnerId", OWNER_ID)
        .with("Status", "in-use")
        .with("MacAddress", e.mac.as_str())
        .with("PrivateIpAddress", e.private_ip.to_string())
        .with("PrivateDnsName", private_dns_name(e.private_ip))
        .with("SourceDestCheck", e.source_dest_check)
        .with_opt(
            "ConnectionTrackingConfiguration",
            super::eni::connection_tracking_value(e),
        )
        .with("Groups", group_identifiers(state, &e.security_groups))
        .with_opt(
            "Attachment",
            e.attachment.as_ref().map(|a| {
                Value::new_struct()
                    .with("AttachmentId", a.attachment_id.as_str())
                    .with("DeviceIndex", a.device_index)
                    .with("Status", "attached")
                    .with("AttachTime", timestamp(a.attach_time))
                    .with("DeleteOnTermination", a.delete_on_termination)
                    .with("NetworkCardIndex", 0i64)
            }),
        )
        .with("PrivateIpAddresses", primary_ip(state, e))
        .with("InterfaceType", "interface")
}

pub fn run_instances(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let nics = launch_interfaces(input)?;
    // Absent: the default subnet (the model refuses when there is no default VPC).
    let subnet_id = match &nics {
        Some(_) => String::new(),
        None => input::optional(input, "SubnetId")
            .unwrap_or_default()
            .to_string(),
    };
    let count = |name: &str| -> Result<u32, ApiError> {
        let n = input.get_i64(name).ok_or_else(|| ApiError::missing(name))?;
        u32::try_from(n)
            .map_err(|_| ApiError::invalid_value(format!("Invalid value '{n}' for {name}")))
    };
    let placement = input
        .get("Placement")
        .cloned()
        .unwrap_or(Value::new_struct());
    let opt = |v: &Value, name: &str| input::optional(v, name).map(str::to_string);
    let req = RunRequest {
        image_id: opt(input, "ImageId"),
        instance_type: opt(input, "InstanceType"),
        min_count: count("MinCount")?,
        max_count: count("MaxCount")?,
        subnet_id,
        host: opt(&placement, "HostId"),
        tag_specs: input::parse_tag_specs(input)?,
        client_token: opt(input, "ClientToken"),
        ..match nics {
            Some(n) => RunRequest {
                interfaces: n.specs,
                associate_public_ip: n.associate_public_ip,
                ..Default::default()
            },
            None => RunRequest {
                private_ip: opt(input, "PrivateIpAddress"),
                security_group_ids: input::id_list(input, "SecurityGroupIds"),
                ..Default::default()
            },
        }
    };
    let res = ctx.mutate(|t| model::instance::run_instances(t, &req))?;
    if res.replayed {
        tracing::info!(reservation = %res.reservation_id, token = ?req.client_token, "RunInstances retried: earlier launch returned");
    }
    for i in res.instances.iter().filter(|_| !res.replayed) {
        tracing::info!(instance = %i.id, ip = %i.private_ip, host = %i.host_id, name = i.name(), "instance launched");
    }
    let state = ctx.cp.state();
    Ok(Value::new_struct()
        .with("ReservationId", res.reservation_id.as_str())
        .with("OwnerId", OWNER_ID)
        .with("Groups", empty())
        .with(
            "Instances",
            // A fresh launch answers `pending`, as AWS does; a retry shows the current state.
            input::list_of(&res.instances, |i| {
                let current = state.instances.get(&i.id).map_or(i, |c| &**c);
                let shown = if res.replayed {
                    current.state
                } else {
                    InstanceState::Pending
                };
                instance_value(&state, current, shown)
            }),
        ))
}

pub fn describe_instances(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    // Terminated instances past their retention are gone even before a mutation purges them.
    let visible = visible(&state, now_secs());
    let mut items = input::select(
        &state,
        &visible,
        &input::id_list(input, "InstanceIds"),
        ("InvalidInstanceID.NotFound", "instance"),
        &input::filters(input)?,
    )?;
    // Oldest launches first, then by launch index: reservations group naturally.
    items.sort_by(|a, b| {
        (a.launch_time, &a.reservation_id, a.ami_launch_index).cmp(&(
            b.launch_time,
            &b.reservation_id,
            b.ami_launch_index,
        ))
    });
    // Zero-padded, so the text order is the sort order above.
    let (items, next) = input::paginate_sorted(items, input, false, |i| {
        format!(
            "{:020}.{}.{:010}",
            i.launch_time, i.reservation_id, i.ami_launch_index
        )
    })?;
    let mut reservations: Vec<(String, Vec<Arc<Instance>>)> = Vec::new();
    for i in items {
        match reservations.last_mut() {
            Some((r, list)) if *r == i.reservation_id => list.push(i),
            _ => reservations.push((i.reservation_id.clone(), vec![i])),
        }
    }
    let reservations = input::list_of(&reservations, |(rid, list)| {
        Value::new_struct()
            .with("ReservationId", rid.as_str())
            .with("OwnerId", OWNER_ID)
            .with("Groups", empty())
            .with(
                "Instances",
                input::list_of(list, |i| instance_value(&state, i, i.state)),
            )
    });
    Ok(Value::new_struct()
        .with("Reservations", reservations)
        .with_opt("NextToken", next))
}

pub fn terminate_instances(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let ids = input::id_list(input, "InstanceIds");
    let changes = ctx.mutate(|t| model::instance::terminate_instances(t, &ids))?;
    for c in &changes {
        tracing::info!(instance = %c.instance_id, "instance terminated");
    }
    Ok(Value::new_struct().with(
        "TerminatingInstances",
        input::list_of(&changes, |c| {
            Value::new_struct()
                .with("InstanceId", c.instance_id.as_str())
                .with("CurrentState", state_value(c.current))
                .with("PreviousState", state_value(c.previous))
        }),
    ))
}

/// The members of `ModifyInstanceAttribute` other than `Groups` and `SourceDestCheck`: softvpc
/// has no block devices, kernels, user data or instance types to change, so they are refused.
const UNSUPPORTED_INSTANCE_ATTRIBUTES: &[&str] = &[
    "Attribute",
    "Value",
    "BlockDeviceMappings",
    "DisableApiStop",
    "DisableApiTermination",
    "EbsOptimized",
    "EnaSupport",
    "InstanceInitiatedShutdownBehavior",
    "InstanceType",
    "Kernel",
    "Ramdisk",
    "SriovNetSupport",
    "UserData",
];

/// `ModifyInstanceAttribute`: `Groups` (replaces the groups of the instance's network
/// interface) or `SourceDestCheck`, exactly one per call.
pub fn modify_instance_attribute(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    use softvpc_model::eni::Modify;
    let id = input::required(input, "InstanceId")?;
    if let Some(name) = UNSUPPORTED_INSTANCE_ATTRIBUTES
        .iter()
        .find(|n| input.get(n).is_some())
    {
        return Err(ApiError::new(
            "UnsupportedOperation",
            format!("Modifying the instance attribute {name} is not supported."),
        ));
    }
    let mut changes = Vec::new();
    if input.get("Groups").is_some() {
        changes.push(Modify::Groups(input::id_list(input, "Groups")));
    }
    if let Some(v) = input.get("SourceDestCheck") {
        let b = v
            .get_bool("Value")
            .ok_or_else(|| ApiError::missing("SourceDestCheck.Value"))?;
        changes.push(Modify::SourceDestCheck(b));
    }
    let change = input::one_change(changes)?;
    let what = format!("{change:?}");
    ctx.mutate(|t| model::instance::modify_attribute(t, id, change))?;
    tracing::info!(instance = id, change = %what, "instance attribute modified");
    Ok(Value::new_struct())
}
