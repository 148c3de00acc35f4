//! RunInstances, DescribeInstances, TerminateInstances.

use std::sync::Arc;

use softvpc_ec2_protocol::Value;

use super::input::{self, timestamp, ValueExt};
use super::{Ctx, Listing};
use softvpc_model::instance::InstanceChange;
use softvpc_model::instance::{
    private_dns_name, public_address_of, public_dns_name, public_ip, visible, InterfaceSpec,
    RootVolumeSpec, RunRequest,
};
use softvpc_model::volume::{self, ROOT_DEVICE};
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

/// Members of `RunInstances` softvpc does not model: refused with an error naming them, never
/// ignored (a value that asks for nothing, such as `Monitoring.Enabled=false`, passes).
fn refuse_unsupported_launch_members(input: &Value) -> Result<(), ApiError> {
    let refuse = |member: &str, why: &str| {
        Err(ApiError::invalid_value(format!(
            "The parameter {member} is not supported: {why}."
        )))
    };
    let present = |m: &str| match input.get(m) {
        None => false,
        Some(Value::List(l)) => !l.is_empty(),
        Some(_) => true,
    };
    if let Some(p) = input.get("IamInstanceProfile") {
        let what = input::optional(p, "Name")
            .map(|n| ("name", n))
            .or_else(|| input::optional(p, "Arn").map(|a| ("arn", a)));
        if let Some((kind, v)) = what {
            return Err(ApiError::invalid_value(format!(
                "Value ({v}) for parameter iamInstanceProfile.{kind} is invalid. Invalid IAM Instance Profile {kind}"
            )));
        }
    }
    if input.get("Monitoring").and_then(|m| m.get_bool("Enabled")) == Some(true) {
        return refuse(
            "Monitoring.Enabled",
            "there is no detailed monitoring (CloudWatch)",
        );
    }
    if input
        .get("HibernationOptions")
        .and_then(|h| h.get_bool("Configured"))
        == Some(true)
    {
        return refuse(
            "HibernationOptions.Configured",
            "instances cannot hibernate",
        );
    }
    if input
        .get("EnclaveOptions")
        .and_then(|h| h.get_bool("Enabled"))
        == Some(true)
    {
        return refuse("EnclaveOptions.Enabled", "there are no Nitro Enclaves");
    }
    if input.get_i64("Ipv6AddressCount").is_some_and(|c| c != 0) {
        return refuse("Ipv6AddressCount", "there is no IPv6");
    }
    if input.get_bool("EnablePrimaryIpv6") == Some(true) {
        return refuse("EnablePrimaryIpv6", "there is no IPv6");
    }
    for (m, why) in [
        ("Ipv6Addresses", "there is no IPv6"),
        ("KernelId", "instances boot no kernel image"),
        ("RamdiskId", "instances boot no RAM disk image"),
        ("ElasticGpuSpecification", "there are no GPUs"),
        ("ElasticInferenceAccelerators", "there are no accelerators"),
        ("InstanceMarketOptions", "there are no Spot instances"),
        ("CpuOptions", "instances have no CPU settings"),
        (
            "CapacityReservationSpecification",
            "there are no capacity reservations",
        ),
        ("LicenseSpecifications", "there is no license manager"),
        (
            "PrivateDnsNameOptions",
            "instance host names follow the IP name only",
        ),
        ("MaintenanceOptions", "there is no automatic recovery"),
        (
            "NetworkPerformanceOptions",
            "there is no bandwidth weighting",
        ),
        ("Operator", "there are no managed instances"),
        (
            "SecondaryInterfaces",
            "there are no secondary network cards",
        ),
    ] {
        if present(m) {
            return refuse(m, why);
        }
    }
    let placement = input.get("Placement");
    for (m, why) in [
        ("AvailabilityZoneId", "name the zone with AvailabilityZone"),
        ("Affinity", "hosts are not Dedicated Hosts"),
        ("PartitionNumber", "there are no placement groups"),
        ("GroupId", "there are no placement groups"),
        ("SpreadDomain", "there are no placement groups"),
        ("HostResourceGroupArn", "there are no host resource groups"),
    ] {
        if placement.and_then(|p| input::optional(p, m)).is_some()
            || placement.and_then(|p| p.get_i64(m)).is_some()
        {
            return refuse(&format!("Placement.{m}"), why);
        }
    }
    if let Some(g) = placement.and_then(|p| input::optional(p, "GroupName")) {
        return Err(ApiError::new(
            "InvalidPlacementGroup.Unknown",
            format!("The Placement Group '{g}' is unknown."),
        ));
    }
    if let Some(t) = placement
        .and_then(|p| input::optional(p, "Tenancy"))
        .filter(|t| *t != "default")
    {
        return refuse(
            "Placement.Tenancy",
            &format!("instances share hosts ('default' tenancy), not '{t}'"),
        );
    }
    Ok(())
}

/// Checks launch template data as RunInstances checks the same members (the template module
/// has already limited it to members RunInstances honours).
pub(crate) fn check_launch_members(data: &Value) -> Result<(), ApiError> {
    refuse_unsupported_launch_members(data)?;
    launch_interfaces(data)?;
    root_volume_spec(data)?;
    if let Some(d) = input::optional(data, "UserData") {
        check_user_data(d)?;
    }
    if let Some(p) = data.get("Placement") {
        launch_zone(p)?;
    }
    Ok(())
}

/// `Placement.AvailabilityZone`, checked against the region's zones as AWS does.
fn launch_zone(placement: &Value) -> Result<Option<String>, ApiError> {
    let Some(z) = input::optional(placement, "AvailabilityZone") else {
        return Ok(None);
    };
    if !super::discovery::ZONES.iter().any(|(name, _)| *name == z) {
        return Err(ApiError::invalid_value(format!(
            "Invalid availability zone: [{z}]"
        )));
    }
    Ok(Some(z.to_string()))
}

/// Most bytes of user data (decoded), as on AWS.
const MAX_USER_DATA: usize = 16 * 1024;

/// `UserData` must be base64 (SDKs encode it) of at most 16 KiB; kept as given.
fn check_user_data(d: &str) -> Result<String, ApiError> {
    let clean: String = d.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let body = clean.trim_end_matches('=');
    let valid = clean.len().is_multiple_of(4)
        && clean.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if !valid {
        return Err(ApiError::invalid_value(
            "Invalid BASE64 encoding of user data.",
        ));
    }
    if clean.len() / 4 * 3 - (clean.len() - body.len()) > MAX_USER_DATA {
        return Err(ApiError::invalid_value(format!(
            "User data is limited to {MAX_USER_DATA} bytes"
        )));
    }
    Ok(clean)
}

/// `BlockDeviceMappings`: only the root device (`/dev/xvda`) exists; its EBS size, type and
/// `DeleteOnTermination` are honoured, anything else refused with its name.
fn root_volume_spec(input: &Value) -> Result<RootVolumeSpec, ApiError> {
    let mut spec = RootVolumeSpec::default();
    for (n, m) in input.get_list("BlockDeviceMappings").iter().enumerate() {
        let n = n + 1;
        let refuse = |member: &str, why: &str| {
            Err(ApiError::invalid_value(format!(
                "The parameter BlockDeviceMapping.{n}.{member} is not supported: {why}."
            )))
        };
        let device = input::optional(m, "DeviceName")
            .ok_or_else(|| ApiError::missing(&format!("BlockDeviceMapping.{n}.DeviceName")))?;
        if device != ROOT_DEVICE {
            return Err(ApiError::new(
                "InvalidBlockDeviceMapping",
                format!("The device '{device}' is not supported: instances have only their root volume ({ROOT_DEVICE})."),
            ));
        }
        if input::optional(m, "NoDevice").is_some() {
            return refuse("NoDevice", "the root device cannot be suppressed");
        }
        if input::optional(m, "VirtualName").is_some() {
            return refuse("VirtualName", "there are no instance store volumes");
        }
        let Some(ebs) = m.get("Ebs") else { continue };
        for (member, why) in [
            ("SnapshotId", "volumes are not made from snapshots"),
            ("KmsKeyId", "there is no KMS"),
            ("OutpostArn", "there are no Outposts"),
            (
                "AvailabilityZone",
                "the root volume is in the instance's zone",
            ),
            (
                "AvailabilityZoneId",
                "the root volume is in the instance's zone",
            ),
        ] {
            if input::optional(ebs, member).is_some() {
                return refuse(&format!("Ebs.{member}"), why);
            }
        }
        for (member, why) in [
            ("Iops", "volumes have gp3's baseline performance"),
            ("Throughput", "volumes have gp3's baseline performance"),
            (
                "VolumeInitializationRate",
                "volumes are not made from snapshots",
            ),
            ("EbsCardIndex", "there is one EBS card"),
        ] {
            if ebs.get_i64(member).is_some() {
                return refuse(&format!("Ebs.{member}"), why);
            }
        }
        if ebs.get_bool("Encrypted") == Some(true) {
            return refuse("Ebs.Encrypted", "volumes are not encrypted");
        }
        spec.delete_on_termination = ebs.get_bool("DeleteOnTermination");
        if let Some(size) = ebs.get_i64("VolumeSize") {
            spec.size_gib = Some(
                u32::try_from(size)
                    .ok()
                    .filter(|s| (1..=16384).contains(s))
                    .ok_or_else(|| {
                        ApiError::invalid_value(format!(
                            "Volume size {size} is out of range: gp3 volumes are 1-16384 GiB."
                        ))
                    })?,
            );
        }
        if let Some(t) = input::optional(ebs, "VolumeType") {
            if !matches!(t, "gp2" | "gp3" | "standard") {
                return refuse(
                    "Ebs.VolumeType",
                    &format!("'{t}' needs provisioned performance; gp2, gp3 and standard exist"),
                );
            }
            spec.volume_type = Some(t.to_string());
        }
    }
    Ok(spec)
}

/// `SecurityGroups` (group names) of a launch into the default VPC, as ids. AWS resolves names
/// only there; with a subnet of another VPC it refuses the combination.
fn groups_by_name(
    txn: &model::Txn,
    req: &RunRequest,
    names: &[String],
) -> Result<Vec<String>, ApiError> {
    let state = &txn.state;
    let vpc_id = if req.subnet_id.is_empty() {
        let s = model::attributes::default_subnet(txn, req.availability_zone.as_deref())?;
        state
            .subnets
            .get(&s)
            .map(|s| s.vpc_id.clone())
            .unwrap_or_default()
    } else {
        model::subnet::get_subnet(state, &req.subnet_id)?
            .vpc_id
            .clone()
    };
    if !state.vpcs.get(&vpc_id).is_some_and(|v| v.is_default) {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "The parameter groupName cannot be used with the parameter subnet",
        ));
    }
    names
        .iter()
        .map(|name| {
            state
                .security_groups
                .values()
                .find(|g| g.vpc_id == vpc_id && &g.name == name)
                .map(|g| g.id.clone())
                .ok_or_else(|| {
                    ApiError::new(
                        "InvalidGroup.NotFound",
                        format!(
                            "The security group '{name}' does not exist in default VPC '{vpc_id}'"
                        ),
                    )
                })
        })
        .collect()
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
        .with_opt("KeyName", i.key_name.as_deref())
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
        .with("BlockDeviceMappings", block_device_mappings(state, &i.id))
        .with("VirtualizationType", "hvm")
        .with("Hypervisor", "xen")
        .with("NetworkInterfaces", enis)
        .with(
            "MetadataOptions",
            metadata_options_value(
                &i.metadata_options,
                if shown_state == InstanceState::Pending {
                    "pending"
                } else {
                    "applied"
                },
            ),
        )
        .with_opt(
            "ClientToken",
            i.client_token.as_ref().map(|t| t.token.as_str()),
        )
        .with_opt("Tags", input::tags_opt(&i.tags))
}

/// The instance's volumes as `InstanceBlockDeviceMapping`s (also DescribeInstanceAttribute's
/// `blockDeviceMapping`).
fn block_device_mappings(state: &State, instance_id: &str) -> Value {
    Value::List(
        volume::of_instance(state, instance_id)
            .iter()
            .filter_map(|v| {
                let a = v.attachment.as_ref()?;
                Some(
                    Value::new_struct()
                        .with("DeviceName", a.device.as_str())
                        .with(
                            "Ebs",
                            Value::new_struct()
                                .with("AttachTime", timestamp(a.attach_time))
                                .with("DeleteOnTermination", a.delete_on_termination)
                                .with("Status", "attached")
                                .with("VolumeId", v.id.as_str()),
                        ),
                )
            })
            .collect(),
    )
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

/// `MetadataOptions` of `RunInstances` or the members of `ModifyInstanceMetadataOptions`.
fn metadata_options_request(v: &Value) -> model::instance_metadata::MetadataOptionsRequest {
    let s = |name: &str| v.get_str(name).map(str::to_string);
    model::instance_metadata::MetadataOptionsRequest {
        http_tokens: s("HttpTokens"),
        hop_limit: v.get_i64("HttpPutResponseHopLimit"),
        http_endpoint: s("HttpEndpoint"),
        http_protocol_ipv6: s("HttpProtocolIpv6"),
        instance_metadata_tags: s("InstanceMetadataTags"),
    }
}

/// `InstanceMetadataOptionsResponse`, with AWS's `State` (`pending` until the hosts apply it).
fn metadata_options_value(o: &model::instance_metadata::MetadataOptions, state: &str) -> Value {
    Value::new_struct()
        .with("State", state)
        .with("HttpTokens", o.http_tokens())
        .with("HttpPutResponseHopLimit", i64::from(o.hop_limit))
        .with("HttpEndpoint", o.http_endpoint())
        .with("HttpProtocolIpv6", "disabled")
        .with("InstanceMetadataTags", o.instance_metadata_tags())
}

/// `ModifyInstanceMetadataOptions`: absent members keep their value; the answer's `State` is
/// `pending` (the instance's host applies it within the propagation time).
pub fn modify_instance_metadata_options(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = input::required(input, "InstanceId")?;
    let req = metadata_options_request(input);
    let options = ctx.mutate(|t| model::instance_metadata::modify(t, id, &req))?;
    tracing::info!(
        instance = id,
        ?options,
        "instance metadata options modified"
    );
    Ok(Value::new_struct().with("InstanceId", id).with(
        "InstanceMetadataOptions",
        metadata_options_value(&options, "pending"),
    ))
}

pub fn run_instances(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    // `LaunchTemplate`: the version's data under the request's own members.
    let (merged, launch_template) = super::launch_template::launch_input(ctx, input)?;
    let input = &merged;
    refuse_unsupported_launch_members(input)?;
    // `ImageId`: required unless the launch template gave one; any well-formed id is an
    // image here (there is no image catalog).
    let image_id = input
        .get_str("ImageId")
        .ok_or_else(|| ApiError::missing("ImageId"))?;
    model::instance::check_image_id(image_id)?;
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
    let availability_zone = launch_zone(&placement)?;
    let opt = |v: &Value, name: &str| input::optional(v, name).map(str::to_string);
    let group_names = input::id_list(input, "SecurityGroups");
    if !group_names.is_empty() && nics.is_some() {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "Network interfaces and an instance-level security groups may not be specified on the same request",
        ));
    }
    let user_data = match input::optional(input, "UserData") {
        Some(d) => Some(check_user_data(d)?),
        None => None,
    };
    let req = RunRequest {
        image_id: Some(image_id.to_string()),
        instance_type: opt(input, "InstanceType"),
        min_count: count("MinCount")?,
        max_count: count("MaxCount")?,
        subnet_id,
        host: opt(&placement, "HostId"),
        tag_specs: input::parse_tag_specs(input)?,
        client_token: opt(input, "ClientToken"),
        user_data,
        disable_api_termination: input.get_bool("DisableApiTermination").unwrap_or(false),
        disable_api_stop: input.get_bool("DisableApiStop").unwrap_or(false),
        shutdown_behavior: opt(input, "InstanceInitiatedShutdownBehavior"),
        root_volume: root_volume_spec(input)?,
        availability_zone,
        key_name: opt(input, "KeyName"),
        launch_template,
        metadata_options: input.get("MetadataOptions").map(metadata_options_request),
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
    let res = ctx.mutate(|t| {
        let mut req = req.clone();
        if !group_names.is_empty() {
            let ids = groups_by_name(t, &req, &group_names)?;
            req.security_group_ids.extend(ids);
        }
        model::instance::run_instances(t, &req)
    })?;
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
    instance_listing(ctx, input).map(Listing::into_value)
}

/// DescribeInstances as a [`Listing`] of reservations (streamed past 256 instances).
pub fn instance_listing(ctx: &Ctx<'_>, input: &Value) -> Result<Listing, ApiError> {
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
    let instances = reservations.iter().map(|(_, list)| list.len()).sum();
    let reservations: Vec<Arc<(String, Vec<Arc<Instance>>)>> =
        reservations.into_iter().map(Arc::new).collect();
    let head = Value::new_struct().with_opt("NextToken", next);
    let mut listing = Listing::new(head, "Reservations", reservations, move |(rid, list)| {
        Value::new_struct()
            .with("ReservationId", rid.as_str())
            .with("OwnerId", OWNER_ID)
            .with("Groups", empty())
            .with(
                "Instances",
                input::list_of(list, |i| instance_value(&state, i, i.state)),
            )
    });
    // Streamed by the number of instances (a reservation holds up to 1,000).
    listing.len = instances;
    Ok(listing)
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

/// `ModifyInstanceAttribute` members softvpc has nothing behind: refused with their name.
const UNSUPPORTED_INSTANCE_ATTRIBUTES: &[(&str, &str)] = &[
    ("Kernel", "instances boot no kernel image"),
    ("Ramdisk", "instances boot no RAM disk image"),
    ("SriovNetSupport", "interfaces are TAP devices, not SR-IOV"),
    ("EnaSupport", "interfaces are TAP devices, not ENA"),
    ("EbsOptimized", "there is no EBS bandwidth to dedicate"),
];

/// The attribute an `Attribute`/`Value` pair (the older form the AWS CLI's `--attribute`
/// sends) or a typed member names, as one change.
enum Change {
    Instance(InstanceChange),
    Eni(softvpc_model::eni::Modify),
}

fn parse_bool(attribute: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ApiError::invalid_value(format!(
            "Value ({v}) for parameter {attribute} is invalid. Expected: 'true' or 'false'."
        ))),
    }
}

fn shutdown_behavior(v: &str) -> Result<String, ApiError> {
    match v {
        "stop" | "terminate" => Ok(v.to_string()),
        _ => Err(ApiError::invalid_value(format!(
            "Value ({v}) for parameter instanceInitiatedShutdownBehavior is invalid. Expected: 'stop' or 'terminate'."
        ))),
    }
}

/// `ModifyInstanceAttribute`: exactly one attribute per call, as a typed member or as
/// `Attribute` + `Value`. `Groups` and `SourceDestCheck` change the instance's network
/// interface; `InstanceType` and `UserData` need a stopped instance (as on AWS);
/// `DisableApiTermination`, `DisableApiStop` and `InstanceInitiatedShutdownBehavior` are
/// honoured by Terminate/StopInstances; `BlockDeviceMappings` sets the root volume's
/// `DeleteOnTermination`.
pub fn modify_instance_attribute(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    use softvpc_model::eni::Modify;
    let id = input::required(input, "InstanceId")?;
    if let Some((name, why)) = UNSUPPORTED_INSTANCE_ATTRIBUTES
        .iter()
        .find(|(n, _)| input.get(n).is_some())
    {
        return Err(ApiError::new(
            "UnsupportedOperation",
            format!("Modifying the instance attribute {name} is not supported: {why}."),
        ));
    }
    let value_of = |name: &str| -> Result<Option<String>, ApiError> {
        match input.get(name) {
            None => Ok(None),
            Some(v) => match v.get("Value") {
                Some(Value::Boolean(b)) => Ok(Some(b.to_string())),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                _ => Err(ApiError::missing(&format!("{name}.Value"))),
            },
        }
    };
    let mut changes: Vec<Change> = Vec::new();
    if input.get("Groups").is_some() {
        changes.push(Change::Eni(Modify::Groups(input::id_list(input, "Groups"))));
    }
    if let Some(v) = value_of("SourceDestCheck")? {
        changes.push(Change::Eni(Modify::SourceDestCheck(parse_bool(
            "sourceDestCheck",
            &v,
        )?)));
    }
    if let Some(v) = value_of("DisableApiTermination")? {
        changes.push(Change::Instance(InstanceChange::DisableApiTermination(
            parse_bool("disableApiTermination", &v)?,
        )));
    }
    if let Some(v) = value_of("DisableApiStop")? {
        changes.push(Change::Instance(InstanceChange::DisableApiStop(
            parse_bool("disableApiStop", &v)?,
        )));
    }
    if let Some(v) = value_of("InstanceType")? {
        changes.push(Change::Instance(InstanceChange::InstanceType(
            instance_type(&v)?,
        )));
    }
    if let Some(v) = value_of("UserData")? {
        changes.push(Change::Instance(InstanceChange::UserData(check_user_data(
            &v,
        )?)));
    }
    if let Some(v) = value_of("InstanceInitiatedShutdownBehavior")? {
        changes.push(Change::Instance(InstanceChange::ShutdownBehavior(
            shutdown_behavior(&v)?,
        )));
    }
    for (n, m) in input.get_list("BlockDeviceMappings").iter().enumerate() {
        let n = n + 1;
        let device = input::optional(m, "DeviceName")
            .ok_or_else(|| ApiError::missing(&format!("BlockDeviceMapping.{n}.DeviceName")))?;
        for member in ["NoDevice", "VirtualName"] {
            if input::optional(m, member).is_some() {
                return Err(ApiError::invalid_value(format!(
                    "The parameter BlockDeviceMapping.{n}.{member} is not supported: only the root volume exists."
                )));
            }
        }
        let ebs = m.get("Ebs");
        let dot = ebs
            .and_then(|e| e.get_bool("DeleteOnTermination"))
            .ok_or_else(|| {
                ApiError::missing(&format!("BlockDeviceMapping.{n}.Ebs.DeleteOnTermination"))
            })?;
        let volume = ebs
            .and_then(|e| input::optional(e, "VolumeId"))
            .map(str::to_string);
        changes.push(Change::Instance(InstanceChange::DeleteOnTermination(
            device.to_string(),
            volume,
            dot,
        )));
    }
    if let Some(attribute) = input::optional(input, "Attribute") {
        let value = input::optional(input, "Value");
        let need = || {
            value
                .ok_or_else(|| ApiError::missing("Value"))
                .map(str::to_string)
        };
        changes.push(match attribute {
            "instanceType" => Change::Instance(InstanceChange::InstanceType(instance_type(&need()?)?)),
            "userData" => Change::Instance(InstanceChange::UserData(check_user_data(&need()?)?)),
            "disableApiTermination" => Change::Instance(InstanceChange::DisableApiTermination(
                parse_bool(attribute, &need()?)?,
            )),
            "disableApiStop" => Change::Instance(InstanceChange::DisableApiStop(parse_bool(
                attribute,
                &need()?,
            )?)),
            "instanceInitiatedShutdownBehavior" => {
                Change::Instance(InstanceChange::ShutdownBehavior(shutdown_behavior(&need()?)?))
            }
            "sourceDestCheck" => {
                Change::Eni(Modify::SourceDestCheck(parse_bool(attribute, &need()?)?))
            }
            "groupSet" | "blockDeviceMapping" => {
                return Err(ApiError::new(
                    "InvalidParameterCombination",
                    format!("The attribute {attribute} must be given with its own parameter (GroupId.N, BlockDeviceMapping.N), not Value."),
                ))
            }
            other => {
                return Err(ApiError::new(
                    "UnsupportedOperation",
                    format!("Modifying the instance attribute {other} is not supported."),
                ))
            }
        });
    } else if input.get("Value").is_some() {
        return Err(ApiError::missing("Attribute"));
    }
    match input::one_change(changes)? {
        Change::Eni(m) => {
            let what = format!("{m:?}");
            ctx.mutate(|t| model::instance::modify_attribute(t, id, m.clone()))?;
            tracing::info!(instance = id, change = %what, "instance attribute modified");
        }
        Change::Instance(c) => {
            let what = format!("{c:?}");
            ctx.mutate(|t| model::instance::modify_instance(t, id, c.clone()))?;
            tracing::info!(instance = id, change = %what, "instance attribute modified");
        }
    }
    Ok(Value::new_struct())
}

/// An instance type as the model's `InstanceType` enum names them.
fn instance_type(t: &str) -> Result<String, ApiError> {
    let model = softvpc_ec2_protocol::model();
    let known = match model
        .shape_id("InstanceType")
        .map(|id| &model.shape(id).kind)
    {
        Some(softvpc_ec2_protocol::model::ShapeKind::String { enum_values }) => {
            enum_values.is_empty() || enum_values.iter().any(|v| v == t)
        }
        _ => true,
    };
    if !known {
        return Err(ApiError::invalid_value(format!(
            "Value ({t}) for parameter instanceType is invalid."
        )));
    }
    Ok(t.to_string())
}

/// `DescribeInstanceAttribute`: one attribute of an instance, in AWS's shape.
pub fn describe_instance_attribute(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = input::required(input, "InstanceId")?;
    let attribute = input::required(input, "Attribute")?;
    let state = ctx.cp.state();
    let i = state
        .instances
        .get(id)
        .ok_or_else(|| ApiError::not_found("InvalidInstanceID.NotFound", "instance", &[id]))?;
    let text = |v: &str| Value::new_struct().with("Value", v);
    let flag = |b: bool| Value::new_struct().with("Value", b);
    let primary = state
        .enis
        .get(&i.eni_id)
        .filter(|e| e.attachment.as_ref().is_some_and(|a| a.instance_id == i.id));
    let out = Value::new_struct().with("InstanceId", i.id.as_str());
    let out = match attribute {
        "instanceType" => out.with("InstanceType", text(&i.instance_type)),
        "userData" => out.with(
            "UserData",
            match &i.user_data {
                Some(d) => text(d),
                None => Value::new_struct(),
            },
        ),
        "disableApiTermination" => {
            out.with("DisableApiTermination", flag(i.disable_api_termination))
        }
        "disableApiStop" => out.with("DisableApiStop", flag(i.disable_api_stop)),
        "instanceInitiatedShutdownBehavior" => out.with(
            "InstanceInitiatedShutdownBehavior",
            text(i.shutdown_behavior.as_deref().unwrap_or("stop")),
        ),
        "rootDeviceName" => out.with("RootDeviceName", text(ROOT_DEVICE)),
        "blockDeviceMapping" => {
            out.with("BlockDeviceMappings", block_device_mappings(&state, &i.id))
        }
        "sourceDestCheck" => out.with(
            "SourceDestCheck",
            flag(primary.is_none_or(|e| e.source_dest_check)),
        ),
        "groupSet" => out.with(
            "Groups",
            group_identifiers(
                &state,
                primary
                    .map(|e| e.security_groups.as_slice())
                    .unwrap_or_default(),
            ),
        ),
        "productCodes" => out.with("ProductCodes", empty()),
        "ebsOptimized" => out.with("EbsOptimized", flag(false)),
        "enaSupport" => out.with("EnaSupport", flag(false)),
        "sriovNetSupport" => out.with("SriovNetSupport", Value::new_struct()),
        "kernel" => out.with("KernelId", Value::new_struct()),
        "ramdisk" => out.with("RamdiskId", Value::new_struct()),
        "enclaveOptions" => out.with("EnclaveOptions", Value::new_struct().with("Enabled", false)),
        // The decoder already refused names outside the model's enum.
        other => {
            return Err(ApiError::invalid_value(format!(
                "Value ({other}) for parameter attribute is invalid."
            )))
        }
    };
    Ok(out)
}
