//! Instances and their ENIs: `RunInstances` (address allocation, placement on hosts, tags,
//! `ClientToken` idempotency; `NetworkInterfaces` creates ENIs or attaches available ones at
//! any device index, see [`InterfaceSpec`]), `TerminateInstances` (delete-on-termination ENIs
//! are deleted and their addresses freed, the others detached; the instance stays stored,
//! terminated, for [`TERMINATED_RETENTION_SECS`], then is purged), Stop/Start, filters.
//!
//! Public IPv4 addresses, as AWS assigns them: an instance launched into a subnet with
//! `MapPublicIpOnLaunch` (or with `AssociatePublicIpAddress` on its primary interface, which
//! overrides the subnet either way) gets an address from the Elastic IP pool
//! ([`super::address::take_public_ip`]) on its primary ENI's primary address. It is released
//! when the instance stops (a new one comes at start), terminates, or an Elastic IP takes its
//! place; when that Elastic IP leaves, a new one comes only if the instance has a single ENI and
//! no other Elastic IP ([`refill_public_ip`]). The addresses are shown (DescribeInstances,
//! DescribeNetworkInterfaces, filters) but the data plane does not use them yet: no internet
//! gateway translation happens (a later issue).

use std::net::Ipv4Addr;

use super::address::Address;
use super::filter::Filterable;
use super::idempotency::{replay, ClientToken, Digest};
use super::ids::{new_id, new_mac};
use super::subnet::{free_addresses, used_addresses};
use super::tags::{check_specs, tags_for, TagSpec};
use super::{
    host, is_reserved, ApiError, Attachment, Eni, Instance, InstanceState, State, Subnet, Tags, Txn,
};

/// The instance type reported when none is given.
pub const DEFAULT_INSTANCE_TYPE: &str = "t3.micro";
/// The image id of a [`RunRequest`] without one (the API refuses a launch without `ImageId`,
/// see [`check_image_id`]; in-process callers may leave it out).
pub const DEFAULT_IMAGE_ID: &str = "ami-00000000000000000";
/// Most instances one `RunInstances` call may launch.
pub const MAX_LAUNCH: u32 = 1000;
/// How long a terminated instance stays visible (AWS: "about an hour"), in seconds.
pub const TERMINATED_RETENTION_SECS: u64 = 3600;

/// Refuses an image id that is not `ami-` + hex (`InvalidAMIID.Malformed`, AWS's message).
/// There is no image catalog here: any well-formed id is an image, kept and shown as given.
pub fn check_image_id(id: &str) -> Result<(), ApiError> {
    let hex = id
        .strip_prefix("ami-")
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if hex {
        Ok(())
    } else {
        Err(ApiError::new(
            "InvalidAMIID.Malformed",
            format!("Invalid id: \"{id}\" (expecting \"ami-...\")"),
        ))
    }
}

/// The parameters of `RunInstances` that matter here.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// `ImageId`.
    pub image_id: Option<String>,
    /// `InstanceType`.
    pub instance_type: Option<String>,
    /// `MinCount`.
    pub min_count: u32,
    /// `MaxCount`.
    pub max_count: u32,
    /// Empty: the default subnet.
    pub subnet_id: String,
    /// `PrivateIpAddress`.
    pub private_ip: Option<String>,
    /// `Placement.HostId`: a host id or a host name.
    pub host: Option<String>,
    /// `TagSpecifications`.
    pub tag_specs: Vec<TagSpec>,
    /// `SecurityGroupId.N` for the primary ENIs; empty: the VPC's default group.
    pub security_group_ids: Vec<String>,
    /// `ClientToken` (botocore sends a fresh one with every call that has none).
    pub client_token: Option<String>,
    /// `NetworkInterfaces.1.AssociatePublicIpAddress`: overrides the subnet's
    /// `MapPublicIpOnLaunch` either way.
    pub associate_public_ip: Option<bool>,
    /// `NetworkInterfaces.N`. When given, `subnet_id`, `private_ip` and `security_group_ids`
    /// are empty (AWS refuses them together) and the entry at device index 0 says what they
    /// would.
    pub interfaces: Vec<InterfaceSpec>,
    /// `UserData` (base64, as given).
    pub user_data: Option<String>,
    /// `DisableApiTermination`: TerminateInstances refuses while set.
    pub disable_api_termination: bool,
    /// `DisableApiStop`: StopInstances refuses while set.
    pub disable_api_stop: bool,
    /// `InstanceInitiatedShutdownBehavior`; None: `stop`.
    pub shutdown_behavior: Option<String>,
    /// The root volume's `BlockDeviceMappings` entry (`/dev/xvda`), if given.
    pub root_volume: RootVolumeSpec,
    /// `Placement.AvailabilityZone` (a zone of the region, checked by the caller): the subnet
    /// must be in it; without a subnet, the default VPC's default subnet for it.
    pub availability_zone: Option<String>,
    /// `KeyName`: a key pair that must exist; the instance keeps its name and public key.
    pub key_name: Option<String>,
    /// `LaunchTemplate`: the id and version number of the template version launched from;
    /// its instances carry AWS's `aws:ec2launchtemplate:id` and `:version` tags.
    pub launch_template: Option<(String, u64)>,
    /// `MetadataOptions`.
    pub metadata_options: Option<crate::instance_metadata::MetadataOptionsRequest>,
}

/// What `BlockDeviceMappings` may say about the root volume (the only block device).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootVolumeSpec {
    /// None: true (an AMI's root volume goes with the instance).
    pub delete_on_termination: Option<bool>,
    /// GiB; None: [`super::volume::ROOT_SIZE_GIB`].
    pub size_gib: Option<u32>,
    /// None: [`super::volume::ROOT_TYPE`].
    pub volume_type: Option<String>,
}

/// One `NetworkInterfaces.N` entry of `RunInstances` (`InstanceNetworkInterfaceSpecification`):
/// an existing available ENI to attach, or a new ENI to create for each instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// `DeviceIndex`.
    pub device_index: u32,
    /// `NetworkInterfaceId`: attach this available ENI instead of creating one.
    pub network_interface_id: Option<String>,
    /// None: the default subnet (device index 0 only).
    pub subnet_id: Option<String>,
    /// `Groups`; empty: the VPC's default group.
    pub groups: Vec<String>,
    /// `Description`.
    pub description: Option<String>,
    /// `PrivateIpAddress`.
    pub private_ip: Option<String>,
    /// `PrivateIpAddresses.N`: (address, primary).
    pub private_ips: Vec<(String, bool)>,
    /// `SecondaryPrivateIpAddressCount`.
    pub secondary_count: Option<u32>,
    /// None: true for a created ENI, false for an attached one.
    pub delete_on_termination: Option<bool>,
    /// `ConnectionTrackingSpecification` of an ENI created at launch.
    pub connection_tracking: super::eni::ConnectionTracking,
}

impl InterfaceSpec {
    /// True when it asks for specific addresses (only one instance can have them).
    fn fixed_addresses(&self) -> bool {
        self.private_ip.is_some() || !self.private_ips.is_empty()
    }

    /// True when it sets something that only applies to an ENI created at launch.
    fn creation_settings(&self) -> bool {
        self.subnet_id.is_some()
            || !self.groups.is_empty()
            || self.description.is_some()
            || self.fixed_addresses()
            || self.secondary_count.is_some()
            || !self.connection_tracking.is_default()
    }
}

/// Most network interfaces an instance of `instance_type` takes. AWS's limit depends on the
/// type; this follows its published table by size (nano/micro 2; small to large 3;
/// xlarge/2xlarge 4; larger 8), which matches the t2/t3/t3a/t4g/m5/c5 families.
pub fn max_interfaces(instance_type: &str) -> usize {
    let size = instance_type.rsplit('.').next().unwrap_or_default();
    match size {
        "nano" | "micro" => 2,
        "small" | "medium" | "large" => 3,
        "xlarge" | "2xlarge" => 4,
        _ => 8,
    }
}

impl RunRequest {
    /// The digest of every parameter but the token, to tell a retry from a reuse.
    pub fn digest(&self) -> String {
        let mut d = Digest::new("RunInstances")
            .opt(self.image_id.as_deref())
            .opt(self.instance_type.as_deref())
            .num(self.min_count.into())
            .num(self.max_count.into())
            .str(&self.subnet_id)
            .opt(self.private_ip.as_deref())
            .opt(self.host.as_deref())
            .list(self.security_group_ids.iter().map(String::as_str))
            .opt(
                self.associate_public_ip
                    .map(|b| if b { "true" } else { "false" }),
            )
            .num(self.tag_specs.len() as u64);
        if let Some(m) = &self.metadata_options {
            d = d.list(m.digest_parts().iter().map(String::as_str));
        }
        for s in &self.tag_specs {
            d = d
                .str(&s.resource_type)
                .list(s.tags.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]));
        }
        d = d.num(self.interfaces.len() as u64);
        for n in &self.interfaces {
            d = d
                .num(n.device_index.into())
                .opt(n.network_interface_id.as_deref())
                .opt(n.subnet_id.as_deref())
                .list(n.groups.iter().map(String::as_str))
                .opt(n.description.as_deref())
                .opt(n.private_ip.as_deref())
                .num(n.private_ips.len() as u64);
            for (a, primary) in &n.private_ips {
                d = d.str(a).num(u64::from(*primary));
            }
            d = d.num(n.secondary_count.map_or(u64::MAX, u64::from)).opt(
                n.delete_on_termination
                    .map(|b| if b { "true" } else { "false" }),
            );
            let c = &n.connection_tracking;
            for t in [
                c.tcp_established_timeout,
                c.udp_stream_timeout,
                c.udp_timeout,
            ] {
                d = d.num(t.map_or(u64::MAX, u64::from));
            }
        }
        let b = |v: bool| if v { "true" } else { "false" };
        d.opt(self.user_data.as_deref())
            .str(b(self.disable_api_termination))
            .str(b(self.disable_api_stop))
            .opt(self.shutdown_behavior.as_deref())
            .opt(self.root_volume.delete_on_termination.map(b))
            .num(self.root_volume.size_gib.map_or(u64::MAX, u64::from))
            .opt(self.root_volume.volume_type.as_deref())
            .opt(self.availability_zone.as_deref())
            .opt(self.key_name.as_deref())
            .opt(
                self.launch_template
                    .as_ref()
                    .map(|(id, v)| format!("{id}:{v}"))
                    .as_deref(),
            )
            .finish()
    }
}

/// The result of a launch: one reservation holding the instances.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// `r-...`.
    pub reservation_id: String,
    /// The instances launched.
    pub instances: Vec<Instance>,
    /// A retry with a known `ClientToken`: these are the instances the first call launched, in
    /// their current state; nothing new was launched.
    pub replayed: bool,
}

/// `RunInstances`. A retry with the `ClientToken` of an earlier launch answers with that
/// launch's reservation (before any other check: the retry must not fail where the first call
/// succeeded, e.g. on its own private address); with other parameters it is
/// `IdempotentParameterMismatch`.
pub fn run_instances(txn: &mut Txn, req: &RunRequest) -> Result<Reservation, ApiError> {
    let digest = req.digest();
    let token = req.client_token.as_deref();
    // The instances launched with this token, from the index (not a scan of every instance).
    let by_token = token
        .and_then(|t| txn.state.index.instance_tokens.get(t))
        .into_iter()
        .flatten()
        .filter_map(|id| txn.state.instances.get(id));
    if let Some(first) = replay(
        token,
        by_token,
        |i| ClientToken::of(&i.client_token),
        |i| i.client_token.as_ref().is_some_and(|t| t.digest == digest),
    )? {
        let reservation_id = first.reservation_id.clone();
        let mut instances: Vec<Instance> = txn
            .state
            .instances
            .values()
            .filter(|i| i.reservation_id == reservation_id)
            .map(|i| (**i).clone())
            .collect();
        instances.sort_by_key(|i| i.ami_launch_index);
        return Ok(Reservation {
            reservation_id,
            instances,
            replayed: true,
        });
    }
    let client_token = token.map(|t| ClientToken {
        token: t.to_string(),
        digest,
    });
    if req.min_count < 1 || req.max_count < req.min_count {
        return Err(ApiError::invalid_value(format!(
            "Invalid counts: MinCount ({}) must be at least 1 and at most MaxCount ({})",
            req.min_count, req.max_count
        )));
    }
    if req.min_count > MAX_LAUNCH {
        return Err(ApiError::new(
            "InstanceLimitExceeded",
            format!("You may launch at most {MAX_LAUNCH} instances in one request."),
        ));
    }
    check_specs(&req.tag_specs, &["instance", "network-interface", "volume"])?;
    let metadata_options = match &req.metadata_options {
        Some(m) => crate::instance_metadata::MetadataOptions::default().apply(m)?,
        None => crate::instance_metadata::MetadataOptions::default(),
    };
    let mut instance_tags = tags_for(&req.tag_specs, "instance")?;
    if let Some((id, version)) = &req.launch_template {
        // As AWS tags an instance launched from a template (users cannot set `aws:` tags).
        instance_tags.insert("aws:ec2launchtemplate:id".into(), id.clone());
        instance_tags.insert("aws:ec2launchtemplate:version".into(), version.to_string());
    }
    let eni_tags = tags_for(&req.tag_specs, "network-interface")?;
    let volume_tags = tags_for(&req.tag_specs, "volume")?;
    let key = match &req.key_name {
        Some(name) => Some(
            super::key_pair::by_name(&txn.state, name)
                .ok_or_else(|| super::key_pair::name_not_found(name))?
                .clone(),
        ),
        None => None,
    };
    if let Some(size) = req.root_volume.size_gib {
        if size < super::volume::ROOT_SIZE_GIB {
            return Err(ApiError::new(
                "InvalidBlockDeviceMapping",
                format!(
                    "Volume of size {size}GB is smaller than snapshot 'snap-00000000000000000', expect size >= {}GB",
                    super::volume::ROOT_SIZE_GIB
                ),
            ));
        }
    }
    let instance_type = req
        .instance_type
        .clone()
        .unwrap_or_else(|| DEFAULT_INSTANCE_TYPE.to_string());
    if let Some(id) = &req.image_id {
        check_image_id(id)?;
    }
    let image_id = req
        .image_id
        .clone()
        .unwrap_or_else(|| DEFAULT_IMAGE_ID.to_string());

    // The interfaces: `NetworkInterfaces`, or the instance-level parameters as device index 0.
    let mut specs = if req.interfaces.is_empty() {
        vec![InterfaceSpec {
            device_index: 0,
            subnet_id: (!req.subnet_id.is_empty()).then(|| req.subnet_id.clone()),
            groups: req.security_group_ids.clone(),
            private_ip: req.private_ip.clone(),
            ..Default::default()
        }]
    } else {
        req.interfaces.clone()
    };
    specs.sort_by_key(|n| n.device_index);
    check_interfaces(&specs, &instance_type, req)?;
    let plan = plan_interfaces(txn, &specs, req.availability_zone.as_deref())?;
    if let Some(zone) = &req.availability_zone {
        let s = &plan[0].subnet;
        if &s.availability_zone != zone {
            return Err(ApiError::invalid_value(format!(
                "Value ({zone}) for parameter availabilityZone is invalid. Subnet '{}' is in the availability zone {}",
                s.id, s.availability_zone
            )));
        }
    }
    let primary = &specs[0];
    let primary_subnet = plan[0].subnet.clone();
    let vpc_id = primary_subnet.vpc_id.clone();

    // The primary address of each instance, taken up front (the count launched is how many
    // the subnet can give, between MinCount and MaxCount).
    let addresses: Vec<Ipv4Addr> = if let Some(e) = &plan[0].existing {
        vec![e.private_ip]
    } else {
        let mut used = used_addresses(&txn.state, &primary_subnet.id);
        // Listed secondary addresses are not for the primary.
        for (a, _) in primary.private_ips.iter().filter(|(_, p)| !p) {
            if let Ok(a) = a.parse() {
                used.insert(a);
            }
        }
        match super::eni::primary_address(primary.private_ip.as_deref(), &primary.private_ips)? {
            Some(ip) => {
                if req.min_count > 1 {
                    return Err(ApiError::new(
                        "InvalidParameterCombination",
                        "A private IP address can only be specified when launching one instance.",
                    ));
                }
                let addr: Ipv4Addr = ip.parse().map_err(|_| {
                    ApiError::invalid_value(format!(
                        "Value ({ip}) for parameter privateIpAddress is invalid."
                    ))
                })?;
                if !primary_subnet.cidr.contains(&addr) {
                    return Err(ApiError::invalid_value(format!(
                        "Address {addr} does not fall within the subnet's address range"
                    )));
                }
                if is_reserved(&primary_subnet.cidr, addr) {
                    return Err(ApiError::invalid_value(format!(
                        "Address {addr} is in subnet's reserved address range"
                    )));
                }
                if used.contains(&addr) {
                    return Err(ApiError::new(
                        "InvalidIPAddress.InUse",
                        format!("Address {addr} is in use."),
                    ));
                }
                vec![addr]
            }
            None => {
                let want = req.max_count.min(MAX_LAUNCH) as usize;
                free_addresses(&primary_subnet.cidr, &used, want)
            }
        }
    };
    if addresses.len() < req.min_count as usize {
        return Err(ApiError::new(
            "InsufficientFreeAddressesInSubnet",
            format!(
                "There are not enough free addresses in subnet '{}' to satisfy the requested number of instances.",
                primary_subnet.id
            ),
        ));
    }
    let fixed_host = match &req.host {
        Some(h) => {
            let id = host::resolve(&txn.state, h)?;
            let zone = &txn.state.hosts[&id].availability_zone;
            if zone != &primary_subnet.availability_zone {
                return Err(ApiError::invalid_value(format!(
                    "Host '{h}' is in {zone}, but subnet '{}' is in {}: an instance runs on a \
                     host of its subnet's availability zone.",
                    primary_subnet.id, primary_subnet.availability_zone
                )));
            }
            Some(id)
        }
        None => None,
    };

    // AWS assigns an automatic public IP only to a new primary ENI of a single-ENI instance.
    let auto_public_ip = plan[0].existing.is_none()
        && specs.len() == 1
        && req
            .associate_public_ip
            .unwrap_or(primary_subnet.map_public_ip_on_launch);
    let reservation_id = new_id("r");
    let mut instances = Vec::with_capacity(addresses.len());
    for (index, &addr) in addresses.iter().enumerate() {
        // Addresses promised to the instances still to come.
        let pending = &addresses[index + 1..];
        let host_id = match &fixed_host {
            Some(h) => h.clone(),
            // Only hosts of the subnet's zone: a zone is a failure domain.
            None => host::least_loaded_in(&txn.state, &primary_subnet.availability_zone)?,
        };
        let instance_id = new_id("i");
        let (eni_id, mac) = match &plan[0].existing {
            Some(e) => (e.id.clone(), e.mac.clone()),
            None => (new_id("eni"), unique_mac(&txn.state)),
        };
        let instance = Instance {
            id: instance_id.clone(),
            reservation_id: reservation_id.clone(),
            image_id: image_id.clone(),
            instance_type: instance_type.clone(),
            subnet_id: primary_subnet.id.clone(),
            vpc_id: vpc_id.clone(),
            host_id: host_id.clone(),
            availability_zone: primary_subnet.availability_zone.clone(),
            private_ip: addr,
            eni_id: eni_id.clone(),
            eni_mac: mac.clone(),
            ami_launch_index: index as u32,
            launch_time: txn.now,
            state: InstanceState::Running,
            tags: instance_tags.clone(),
            client_token: client_token.clone(),
            state_transition_time: None,
            auto_public_ip,
            disable_api_termination: req.disable_api_termination,
            disable_api_stop: req.disable_api_stop,
            shutdown_behavior: req.shutdown_behavior.clone(),
            user_data: req.user_data.clone(),
            key_name: key.as_ref().map(|k| k.name.clone()),
            key_public: key.as_ref().map(|k| k.openssh_line()),
            metadata_options,
        };
        txn.put(instance.clone());
        let root = super::volume::create_root(
            txn,
            &instance_id,
            &primary_subnet.availability_zone,
            req.root_volume.delete_on_termination.unwrap_or(true),
            volume_tags.clone(),
        );
        if req.root_volume.size_gib.is_some() || req.root_volume.volume_type.is_some() {
            txn.update::<super::volume::Volume>(
                &root,
                || super::volume::not_found(&[&root]),
                |v| {
                    if let Some(size) = req.root_volume.size_gib {
                        v.size_gib = size;
                    }
                    if let Some(t) = &req.root_volume.volume_type {
                        v.volume_type = t.clone();
                    }
                    Ok(())
                },
            )?;
        }
        for (n, p) in specs.iter().zip(&plan) {
            let attachment = Attachment {
                attachment_id: new_id("eni-attach"),
                instance_id: instance_id.clone(),
                host_id: host_id.clone(),
                device_index: n.device_index,
                attach_time: txn.now,
                // Created ENIs go with the instance by default; attached ones stay.
                delete_on_termination: n.delete_on_termination.unwrap_or(p.existing.is_none()),
            };
            let eni = match &p.existing {
                Some(e) => Eni {
                    attachment: Some(attachment),
                    ..e.clone()
                },
                None => {
                    let is_primary = n.device_index == 0;
                    let addrs = if is_primary
                        && n.private_ips.is_empty()
                        && n.secondary_count.unwrap_or(0) == 0
                    {
                        vec![addr]
                    } else {
                        let primary_ip = is_primary.then(|| addr.to_string());
                        super::eni::choose_addresses(
                            &txn.state,
                            &p.subnet,
                            primary_ip.as_deref().or(n.private_ip.as_deref()),
                            &n.private_ips,
                            n.secondary_count,
                            pending,
                        )?
                    };
                    let Some((&private_ip, secondary)) = addrs.split_first() else {
                        return Err(ApiError::new(
                            "InsufficientFreeAddressesInSubnet",
                            format!("There are not enough free addresses in subnet '{}' to satisfy the requested number of addresses.", p.subnet.id),
                        ));
                    };
                    // Taken after the previous instance's ENI is stored, so each gets its own.
                    let public_ip = if is_primary && auto_public_ip {
                        Some(super::address::take_public_ip(&txn.state)?)
                    } else {
                        None
                    };
                    let (id, mac) = if is_primary {
                        (eni_id.clone(), mac.clone())
                    } else {
                        (new_id("eni"), unique_mac(&txn.state))
                    };
                    Eni {
                        id,
                        subnet_id: p.subnet.id.clone(),
                        vpc_id: vpc_id.clone(),
                        availability_zone: p.subnet.availability_zone.clone(),
                        private_ip,
                        mac,
                        description: n.description.clone().unwrap_or_default(),
                        source_dest_check: true,
                        connection_tracking: n.connection_tracking,
                        attachment: Some(attachment),
                        tags: eni_tags.clone(),
                        secondary_ips: secondary.to_vec(),
                        security_groups: p.groups.clone(),
                        client_token: None,
                        public_ip,
                    }
                }
            };
            txn.put(eni);
        }
        instances.push(instance);
    }
    Ok(Reservation {
        reservation_id,
        instances,
        replayed: false,
    })
}

/// What one interface of a launch resolves to, checked against the state.
struct PlannedInterface {
    subnet: Subnet,
    /// `NetworkInterfaceId`: the available ENI to attach.
    existing: Option<Eni>,
    /// The security groups of a created ENI.
    groups: Vec<String>,
}

/// The checks of `NetworkInterfaces` that need no state: device indexes (unique, one at 0,
/// within range), the instance type's interface limit, and which settings go with an existing
/// ENI or with several instances. `specs` are sorted by device index.
fn check_interfaces(
    specs: &[InterfaceSpec],
    instance_type: &str,
    req: &RunRequest,
) -> Result<(), ApiError> {
    if specs
        .windows(2)
        .any(|w| w[0].device_index == w[1].device_index)
    {
        return Err(ApiError::invalid_value(
            "Each network interface requires a unique device index.",
        ));
    }
    if specs.first().is_none_or(|n| n.device_index != 0) {
        return Err(ApiError::invalid_value(
            "When specifying network interfaces, you must include a device at index 0.",
        ));
    }
    if let Some(n) = specs
        .iter()
        .find(|n| n.device_index > super::eni::MAX_DEVICE_INDEX)
    {
        return Err(ApiError::invalid_value(format!(
            "Value ({}) for parameter deviceIndex is invalid. The device index must be between 0 and {}.",
            n.device_index,
            super::eni::MAX_DEVICE_INDEX
        )));
    }
    let limit = max_interfaces(instance_type);
    if specs.len() > limit {
        return Err(ApiError::new(
            "AttachmentLimitExceeded",
            format!(
                "Interface count {} exceeds the limit for {instance_type}",
                specs.len()
            ),
        ));
    }
    let combination = |m: String| Err(ApiError::new("InvalidParameterCombination", m));
    let mut ids = std::collections::HashSet::new();
    for n in specs {
        if let Some(id) = &n.network_interface_id {
            if !ids.insert(id.as_str()) {
                return Err(ApiError::invalid_value(format!(
                    "Network interface '{id}' is specified more than once."
                )));
            }
            if req.max_count > 1 {
                return combination(format!(
                    "Network interface '{id}' can only be attached when launching one instance (MaxCount 1)."
                ));
            }
            if n.creation_settings() {
                return combination(format!(
                    "SubnetId, Groups, Description, private IP addresses and ConnectionTrackingSpecification apply only to a network interface created at launch, not to '{id}'."
                ));
            }
            if n.delete_on_termination == Some(true) {
                return combination(format!(
                    "DeleteOnTermination can be true only for a network interface created at launch, not for '{id}'."
                ));
            }
            if n.device_index == 0 && req.associate_public_ip.is_some() {
                return combination(
                    "The associatePublicIPAddress parameter can only be specified for a new network interface.".to_string(),
                );
            }
        } else if n.device_index != 0
            && req.max_count > 1
            && (n.private_ip.is_some() || !n.private_ips.is_empty())
        {
            return combination(
                "A private IP address can only be specified when launching one instance."
                    .to_string(),
            );
        }
    }
    // Listed secondary addresses of the primary ENI, likewise, only for one instance.
    if specs[0].private_ips.iter().any(|(_, p)| !p) && req.max_count > 1 {
        return combination(
            "A private IP address can only be specified when launching one instance.".to_string(),
        );
    }
    Ok(())
}

/// Resolves each interface against the state: the ENI to attach (it must exist and be
/// available) or the subnet to create it in (device index 0 without one: the default subnet)
/// and its security groups. Every interface must be in the primary's VPC and availability zone.
fn plan_interfaces(
    txn: &Txn,
    specs: &[InterfaceSpec],
    zone: Option<&str>,
) -> Result<Vec<PlannedInterface>, ApiError> {
    let mut out: Vec<PlannedInterface> = Vec::with_capacity(specs.len());
    for n in specs {
        let existing = match &n.network_interface_id {
            Some(id) => {
                let eni = super::eni::get(&txn.state, id)?;
                if eni.attachment.is_some() || super::eni::is_managed(&txn.state, id) {
                    return Err(ApiError::new(
                        "InvalidNetworkInterface.InUse",
                        format!("Interface: [{id}] in use."),
                    ));
                }
                Some(eni)
            }
            None => None,
        };
        let subnet_id = match (&existing, &n.subnet_id) {
            (Some(e), _) => e.subnet_id.clone(),
            (None, Some(s)) => s.clone(),
            (None, None) if n.device_index == 0 => super::attributes::default_subnet(txn, zone)?,
            (None, None) => {
                return Err(ApiError::new(
                    "MissingParameter",
                    format!(
                        "The network interface at device index {} requires a SubnetId or a NetworkInterfaceId.",
                        n.device_index
                    ),
                ))
            }
        };
        let subnet = super::subnet::get_subnet(&txn.state, &subnet_id).cloned()?;
        if let Some(first) = out.first() {
            if subnet.vpc_id != first.subnet.vpc_id {
                return Err(ApiError::invalid_value(format!(
                    "The network interface at device index {} and the primary network interface belong to different networks.",
                    n.device_index
                )));
            }
            if subnet.availability_zone != first.subnet.availability_zone {
                return Err(ApiError::new(
                    "InvalidParameterCombination",
                    "You may not attach a network interface to an instance if they are not in the same availability zone",
                ));
            }
        }
        let groups = match &existing {
            Some(_) => Vec::new(),
            None => super::eni::check_groups(&txn.state, &subnet.vpc_id, &n.groups)?,
        };
        out.push(PlannedInterface {
            subnet: (*subnet).clone(),
            existing,
            groups,
        });
    }
    Ok(out)
}

/// A MAC no ENI has yet (40 random bits: a clash is rare, but cheap to rule out).
pub fn unique_mac(state: &State) -> String {
    loop {
        let mac = new_mac();
        if !state.index.macs.contains(&mac) {
            return mac;
        }
    }
}

/// Refuses an empty id list, or one naming an instance that does not exist (all missing ids in
/// one error, as AWS does).
fn check_instance_ids(txn: &Txn, ids: &[String]) -> Result<(), ApiError> {
    if ids.is_empty() {
        return Err(ApiError::missing("InstanceId"));
    }
    let missing: Vec<&str> = ids
        .iter()
        .filter(|id| !txn.state.instances.contains_key(*id))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::not_found(
            "InvalidInstanceID.NotFound",
            "instance",
            &missing,
        ));
    }
    Ok(())
}

/// `ModifyInstanceAttribute` for the attributes that live on the instance's network interface
/// (`Groups`, `SourceDestCheck`): AWS applies them to its primary ENI and refuses an instance
/// with several interfaces (they must be changed per ENI).
pub fn modify_attribute(
    txn: &mut Txn,
    instance_id: &str,
    change: super::eni::Modify,
) -> Result<(), ApiError> {
    check_instance_ids(txn, &[instance_id.to_string()])?;
    let enis: Vec<String> = txn
        .state
        .enis_of_instance(instance_id)
        .map(|e| e.id.clone())
        .collect();
    match enis.as_slice() {
        [one] => super::eni::modify_attribute(txn, one, change),
        [] => Err(ApiError::new(
            "IncorrectInstanceState",
            format!("The instance '{instance_id}' has no network interface to modify."),
        )),
        _ => Err(ApiError::new(
            "InvalidInstanceID",
            format!(
                "There are multiple interfaces attached to instance '{instance_id}'. \
                 Please specify an interface ID for the operation instead."
            ),
        )),
    }
}

/// One `ModifyInstanceAttribute` change that lives on the instance itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceChange {
    /// Only while stopped, as on AWS; the new type must take the instance's interfaces.
    InstanceType(String),
    /// Base64, as given; only while stopped, as on AWS.
    UserData(String),
    /// Termination protection.
    DisableApiTermination(bool),
    /// Stop protection.
    DisableApiStop(bool),
    /// `stop` or `terminate`.
    ShutdownBehavior(String),
    /// `BlockDeviceMappings`: (device name, volume id if given, DeleteOnTermination).
    DeleteOnTermination(String, Option<String>, bool),
}

/// `ModifyInstanceAttribute` for the attributes of the instance itself (see [`InstanceChange`]).
pub fn modify_instance(
    txn: &mut Txn,
    instance_id: &str,
    change: InstanceChange,
) -> Result<(), ApiError> {
    check_instance_ids(txn, &[instance_id.to_string()])?;
    let mut inst = (*txn.state.instances[instance_id]).clone();
    if inst.state == InstanceState::Terminated {
        return Err(ApiError::new(
            "IncorrectInstanceState",
            format!(
                "The instance '{instance_id}' is not in a state from which it can be modified."
            ),
        ));
    }
    let must_be_stopped = |inst: &Instance| {
        if inst.state == InstanceState::Stopped {
            Ok(())
        } else {
            Err(ApiError::new(
                "IncorrectInstanceState",
                format!("The instance '{instance_id}' is not in the 'stopped' state."),
            ))
        }
    };
    match change {
        InstanceChange::InstanceType(t) => {
            must_be_stopped(&inst)?;
            let enis = txn.state.enis_of_instance(instance_id).count();
            if enis > max_interfaces(&t) {
                return Err(ApiError::invalid_value(format!(
                    "The instance type {t} supports at most {} network interfaces; instance '{instance_id}' has {enis}.",
                    max_interfaces(&t)
                )));
            }
            inst.instance_type = t;
        }
        InstanceChange::UserData(d) => {
            must_be_stopped(&inst)?;
            inst.user_data = (!d.is_empty()).then_some(d);
        }
        InstanceChange::DisableApiTermination(b) => inst.disable_api_termination = b,
        InstanceChange::DisableApiStop(b) => inst.disable_api_stop = b,
        InstanceChange::ShutdownBehavior(b) => inst.shutdown_behavior = Some(b),
        InstanceChange::DeleteOnTermination(device, volume, value) => {
            return super::volume::set_delete_on_termination(
                txn,
                instance_id,
                &device,
                volume.as_deref(),
                value,
            );
        }
    }
    txn.put(inst);
    Ok(())
}

/// AWS's refusal of a protected instance: "The instance 'i-1' may not be terminated. Modify its
/// 'disableApiTermination' instance attribute and try again."
fn not_permitted(id: &str, verb: &str, attribute: &str) -> ApiError {
    ApiError::new(
        "OperationNotPermitted",
        format!(
            "The instance '{id}' may not be {verb}. Modify its '{attribute}' instance attribute and try again."
        ),
    )
}

/// One line of `TerminateInstances`' answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// The instance.
    pub instance_id: String,
    /// Its state before.
    pub previous: InstanceState,
    /// Its state after.
    pub current: InstanceState,
}

/// `TerminateInstances`: every id must exist, else nothing changes. The delete-on-termination
/// ENIs are deleted and their addresses freed, the others detached and kept; the instances stay
/// describable as terminated.
/// Termination protection (`DisableApiTermination`) refuses the whole call with
/// `OperationNotPermitted`.
pub fn terminate_instances(txn: &mut Txn, ids: &[String]) -> Result<Vec<StateChange>, ApiError> {
    check_instance_ids(txn, ids)?;
    if let Some(i) = ids
        .iter()
        .filter_map(|id| txn.state.instances.get(id))
        .find(|i| i.disable_api_termination && i.state != InstanceState::Terminated)
    {
        return Err(not_permitted(&i.id, "terminated", "disableApiTermination"));
    }
    force_terminate_instances(txn, ids)
}

/// [`terminate_instances`] past termination protection: the operator's `remove-host --force`.
pub fn force_terminate_instances(
    txn: &mut Txn,
    ids: &[String],
) -> Result<Vec<StateChange>, ApiError> {
    check_instance_ids(txn, ids)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(current) = txn.state.instances.get(id).cloned() else {
            continue;
        };
        let previous = current.state;
        if previous == InstanceState::Terminated {
            out.push(StateChange {
                instance_id: id.clone(),
                previous,
                current: previous,
            });
            continue;
        }
        let enis: Vec<Eni> = txn
            .state
            .enis_of_instance(id)
            .map(|e| (**e).clone())
            .collect();
        for mut eni in enis {
            if eni
                .attachment
                .as_ref()
                .is_some_and(|a| a.delete_on_termination)
            {
                txn.delete_eni(&eni.id);
            } else {
                // Attached by hand or at launch from an existing ENI: detached and kept, as on
                // AWS (an automatic public IP goes with the instance).
                eni.attachment = None;
                eni.public_ip = None;
                txn.put(eni);
            }
        }
        super::volume::release_for_termination(txn, id);
        let mut inst = (*current).clone();
        inst.state = InstanceState::Terminated;
        inst.state_transition_time = Some(txn.now);
        txn.put(inst);
        out.push(StateChange {
            instance_id: id.clone(),
            previous,
            current: InstanceState::ShuttingDown,
        });
    }
    Ok(out)
}

/// `StopInstances`: every id must exist and be running or stopped (else `IncorrectInstanceState`),
/// else nothing changes. A stopped instance keeps its ENIs and addresses, but its ENIs leave the
/// data plane (their mapping records lose their host) until it starts again. Answers `stopping`
/// (the model goes straight to `stopped`).
pub fn stop_instances(txn: &mut Txn, ids: &[String]) -> Result<Vec<StateChange>, ApiError> {
    check_instance_ids(txn, ids)?;
    if let Some(i) = ids
        .iter()
        .filter_map(|id| txn.state.instances.get(id))
        .find(|i| i.disable_api_stop && i.state == InstanceState::Running)
    {
        return Err(not_permitted(&i.id, "stopped", "disableApiStop"));
    }
    change_states(
        txn,
        ids,
        InstanceState::Stopped,
        InstanceState::Stopping,
        "stopped",
    )
}

/// `StartInstances`: the reverse of [`stop_instances`]; answers `pending` (the model goes
/// straight to `running`), on the same host.
pub fn start_instances(txn: &mut Txn, ids: &[String]) -> Result<Vec<StateChange>, ApiError> {
    change_states(
        txn,
        ids,
        InstanceState::Running,
        InstanceState::Pending,
        "started",
    )
}

fn change_states(
    txn: &mut Txn,
    ids: &[String],
    target: InstanceState,
    shown: InstanceState,
    verb: &str,
) -> Result<Vec<StateChange>, ApiError> {
    check_instance_ids(txn, ids)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(current) = txn.state.instances.get(id).cloned() else {
            continue;
        };
        let previous = current.state;
        if previous == target {
            // Already there: AWS answers with the state unchanged.
            out.push(StateChange {
                instance_id: id.clone(),
                previous,
                current: previous,
            });
            continue;
        }
        if !matches!(previous, InstanceState::Running | InstanceState::Stopped) {
            return Err(ApiError::new(
                "IncorrectInstanceState",
                format!("The instance '{id}' is not in a state from which it can be {verb}."),
            ));
        }
        let mut inst = (*current).clone();
        inst.state = target;
        // Stopping is user initiated (shown in StateTransitionReason); starting clears it.
        inst.state_transition_time = (target == InstanceState::Stopped).then_some(txn.now);
        txn.put(inst);
        // The automatic public IP is released at stop; a new one comes at start.
        if target == InstanceState::Stopped {
            release_public_ip(txn, &current.eni_id, None);
        } else {
            refill_instance(txn, id)?;
        }
        out.push(StateChange {
            instance_id: id.clone(),
            previous,
            current: shown,
        });
    }
    Ok(out)
}

/// Why an instance is stopped or terminated, as AWS shows a user-initiated stop or termination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// `StateTransitionReason`: `User initiated (2026-11-22 02:45:18 GMT)`.
    pub reason: String,
    /// `StateReason.Code`.
    pub code: &'static str,
    /// `StateReason.Message`.
    pub message: &'static str,
}

impl Instance {
    /// The reason of its last stop or termination, while it is stopped or terminated.
    pub fn transition(&self) -> Option<Transition> {
        if !matches!(
            self.state,
            InstanceState::Stopped | InstanceState::Terminated
        ) {
            return None;
        }
        let t = self.state_transition_time?;
        // "2026-11-22T02:45:18.000Z" -> "2026-11-22 02:45:18".
        let iso = super::filter::iso_time(t);
        let when = iso.get(..19).unwrap_or_default().replacen('T', " ", 1);
        Some(Transition {
            reason: format!("User initiated ({when} GMT)"),
            code: "Client.UserInitiatedShutdown",
            message: "Client.UserInitiatedShutdown: User initiated shutdown",
        })
    }
}

/// True when `i` was terminated more than [`TERMINATED_RETENTION_SECS`] before `now`: it is no
/// longer shown, and the next mutation purges it.
pub fn expired(i: &Instance, now: u64) -> bool {
    i.state == InstanceState::Terminated
        && i.state_transition_time
            .is_none_or(|t| now.saturating_sub(t) >= TERMINATED_RETENTION_SECS)
}

/// The instances Describe calls show at `now`: all but the [`expired`] ones (which the next
/// mutation purges).
pub fn visible(state: &State, now: u64) -> super::Map<Instance> {
    state
        .instances
        .iter()
        .filter(|(_, i)| !expired(i, now))
        .map(|(k, i)| (k.clone(), i.clone()))
        .collect()
}

/// Forgets the terminated instances whose retention is over (run at the start of every
/// mutation, with the transaction's `now`, so the purge is part of a committed change).
pub fn purge_terminated(txn: &mut Txn) {
    let now = txn.now;
    // The index holds terminated instances oldest first: stop at the first one still kept,
    // so a mutation costs nothing per instance.
    let gone: Vec<String> = txn
        .state
        .index
        .terminated
        .iter()
        .take_while(|(t, _)| now.saturating_sub(*t) >= TERMINATED_RETENTION_SECS)
        .map(|(_, id)| id.clone())
        .filter(|id| txn.state.instances.get(id).is_some_and(|i| expired(i, now)))
        .collect();
    for id in gone {
        tracing::debug!(instance = %id, "terminated instance purged");
        txn.delete::<Instance>(&id);
    }
}

/// The host an ENI's traffic is delivered to: its instance's host while the instance runs (or is
/// starting); a NAT gateway's interface: the gateway's host; None when detached or the instance is
/// stopped or gone.
pub fn placed_host<'a>(state: &'a State, eni: &'a Eni) -> Option<&'a str> {
    let Some(a) = eni.attachment.as_ref() else {
        // A NAT gateway's interface lives on the gateway's host.
        return super::nat_gateway::nat_host(state, &eni.id);
    };
    let running = state
        .instances
        .get(&a.instance_id)
        .is_none_or(|i| matches!(i.state, InstanceState::Running | InstanceState::Pending));
    running.then_some(a.host_id.as_str())
}

/// The EC2 private DNS name of an address: `ip-10-0-0-148.ec2.internal`.
pub fn private_dns_name(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("ip-{}-{}-{}-{}.ec2.internal", o[0], o[1], o[2], o[3])
}

/// The public DNS name of a public address in `vpc_id` (us-east-1's form,
/// `ec2-203-0-113-16.compute-1.amazonaws.com`), or "" when the VPC does not have DNS hostnames
/// enabled (AWS then shows none).
pub fn public_dns_name(state: &State, vpc_id: &str, ip: Ipv4Addr) -> String {
    if !state
        .vpcs
        .get(vpc_id)
        .is_some_and(|v| v.enable_dns_hostnames)
    {
        return String::new();
    }
    let o = ip.octets();
    format!(
        "ec2-{}-{}-{}-{}.compute-1.amazonaws.com",
        o[0], o[1], o[2], o[3]
    )
}

/// The Elastic IP associated with private address `ip` of ENI `eni_id`, if any.
pub fn elastic_ip_of<'a>(state: &'a State, eni_id: &str, ip: Ipv4Addr) -> Option<&'a Address> {
    state
        .addresses
        .values()
        .find(|a| {
            a.association
                .as_ref()
                .is_some_and(|s| s.network_interface_id == eni_id && s.private_ip == ip)
        })
        .map(|a| &**a)
}

/// The public address on a private address of an ENI.
#[derive(Debug, Clone, Copy)]
pub enum PublicAddress<'a> {
    /// An Elastic IP associated with it.
    Elastic(&'a Address),
    /// The automatically assigned public IP (primary address only), owned by `amazon`.
    Auto(Ipv4Addr),
}

impl PublicAddress<'_> {
    /// The public address.
    pub fn ip(&self) -> Ipv4Addr {
        match self {
            PublicAddress::Elastic(a) => a.public_ip,
            PublicAddress::Auto(ip) => *ip,
        }
    }

    /// `IpOwnerId`: the account for an Elastic IP, `amazon` for an automatic address.
    pub fn owner(&self) -> &'static str {
        match self {
            PublicAddress::Elastic(_) => super::OWNER_ID,
            PublicAddress::Auto(_) => "amazon",
        }
    }

    /// The Elastic IP, if it is one (only they have allocation and association ids).
    pub fn elastic(&self) -> Option<&Address> {
        match self {
            PublicAddress::Elastic(a) => Some(a),
            PublicAddress::Auto(_) => None,
        }
    }
}

/// The public address on private address `ip` of `eni`: an Elastic IP, else (on the primary
/// address) the automatically assigned one.
pub fn public_address_of<'a>(
    state: &'a State,
    eni: &Eni,
    ip: Ipv4Addr,
) -> Option<PublicAddress<'a>> {
    if let Some(a) = elastic_ip_of(state, &eni.id, ip) {
        return Some(PublicAddress::Elastic(a));
    }
    eni.public_ip
        .filter(|_| ip == eni.private_ip)
        .map(PublicAddress::Auto)
}

/// The public address of a live instance: the Elastic IP or automatic public IP on its primary
/// ENI's primary address.
pub fn public_ip(state: &State, i: &Instance) -> Option<Ipv4Addr> {
    if i.state == InstanceState::Terminated {
        return None;
    }
    let eni = state.enis.get(&i.eni_id)?;
    public_address_of(state, eni, i.private_ip).map(|p| p.ip())
}

/// Releases the automatic public IP of ENI `eni_id` (with `ip`: only when `ip` is the address
/// it is on, i.e. the primary one). It goes back to the pool.
pub fn release_public_ip(txn: &mut Txn, eni_id: &str, ip: Option<Ipv4Addr>) {
    let Some(eni) = txn.state.enis.get(eni_id) else {
        return;
    };
    if eni.public_ip.is_none() || ip.is_some_and(|ip| ip != eni.private_ip) {
        return;
    }
    let mut eni = (**eni).clone();
    tracing::debug!(eni = %eni.id, public_ip = ?eni.public_ip, "automatic public IP released");
    eni.public_ip = None;
    txn.put(eni);
}

/// After an Elastic IP left ENI `eni_id`: when it is an instance's primary ENI, see
/// [`refill_instance`].
pub fn refill_public_ip(txn: &mut Txn, eni_id: &str) -> Result<(), ApiError> {
    let instance = txn.state.enis.get(eni_id).and_then(|e| {
        e.attachment
            .as_ref()
            .filter(|a| a.device_index == 0)
            .map(|a| a.instance_id.clone())
    });
    match instance {
        Some(id) => refill_instance(txn, &id),
        None => Ok(()),
    }
}

/// Gives a running instance that should have an automatic public IP (`auto_public_ip`) and has
/// no public address on its primary ENI's primary address a new one, as AWS does at start and
/// when an Elastic IP leaves it: only if the instance has a single ENI and no Elastic IP on
/// any of its addresses. Otherwise it loses the automatic address for good.
pub fn refill_instance(txn: &mut Txn, instance_id: &str) -> Result<(), ApiError> {
    let Some(inst) = txn.state.instances.get(instance_id).cloned() else {
        return Ok(());
    };
    if !inst.auto_public_ip || inst.state != InstanceState::Running {
        return Ok(());
    }
    let Some(primary) = txn.state.enis.get(&inst.eni_id).cloned() else {
        return Ok(());
    };
    if public_address_of(&txn.state, &primary, primary.private_ip).is_some() {
        return Ok(());
    }
    let attached: Vec<String> = txn
        .state
        .enis_of_instance(&inst.id)
        .map(|e| e.id.clone())
        .collect();
    let has_eip = txn.state.addresses.values().any(|a| {
        a.association
            .as_ref()
            .is_some_and(|s| attached.contains(&s.network_interface_id))
    });
    if attached.len() != 1 || has_eip {
        tracing::debug!(instance = %inst.id, "automatic public IP not reassigned (several ENIs or an Elastic IP)");
        let mut inst = (*inst).clone();
        inst.auto_public_ip = false;
        txn.put(inst);
        return Ok(());
    }
    let ip = super::address::take_public_ip(&txn.state)?;
    tracing::debug!(instance = %inst.id, public_ip = %ip, "automatic public IP assigned");
    let mut eni = (*primary).clone();
    eni.public_ip = Some(ip);
    txn.put(eni);
    Ok(())
}

impl Filterable for Instance {
    const FILTERS: &'static [&'static str] = &[
        "instance-id",
        "instance-state-name",
        "instance-state-code",
        "instance-type",
        "image-id",
        "private-ip-address",
        "network-interface.addresses.private-ip-address",
        "private-dns-name",
        "subnet-id",
        "vpc-id",
        "availability-zone",
        "placement-host-id",
        "host-id",
        "key-name",
        "reservation-id",
        "owner-id",
        "network-interface.network-interface-id",
        "network-interface.mac-address",
        "network-interface.subnet-id",
        "network-interface.vpc-id",
        "network-interface.addresses.primary",
        "network-interface.addresses.association.allocation-id",
        "network-interface.addresses.association.association-id",
        "network-interface.addresses.association.ip-owner-id",
        "network-interface.addresses.association.public-ip",
        "network-interface.association.allocation-id",
        "network-interface.association.association-id",
        "network-interface.association.ip-owner-id",
        "network-interface.association.public-ip",
        "network-interface.attachment.attach-time",
        "network-interface.attachment.attachment-id",
        "network-interface.attachment.delete-on-termination",
        "network-interface.attachment.device-index",
        "network-interface.attachment.instance-id",
        "network-interface.attachment.instance-owner-id",
        "network-interface.attachment.network-card-index",
        "network-interface.attachment.status",
        "network-interface.availability-zone",
        "network-interface.description",
        "network-interface.group-id",
        "network-interface.group-name",
        "network-interface.owner-id",
        "network-interface.private-dns-name",
        "network-interface.private-ip-address",
        "network-interface.requester-managed",
        "network-interface.source-dest-check",
        "network-interface.status",
        "network-interface.tag-key",
        "network-interface.tag-value",
        "instance.group-id",
        "instance.group-name",
        "launch-index",
        "launch-time",
        "client-token",
        "architecture",
        "hypervisor",
        "root-device-name",
        "root-device-type",
        "virtualization-type",
        "tenancy",
        "monitoring-state",
        "source-dest-check",
        "ip-address",
        "dns-name",
        "reason",
        "state-reason-code",
        "state-reason-message",
    ];
    const UNHELD: &'static [&'static str] = &INSTANCE_UNHELD;

    fn field(&self, state: &State, name: &str) -> Vec<String> {
        let live = self.state != InstanceState::Terminated;
        if let Some(rest) = name.strip_prefix("network-interface.") {
            if name != "network-interface.addresses.private-ip-address" {
                return instance_eni_field(self, state, rest);
            }
        }
        let v = match name {
            "instance-id" => self.id.clone(),
            "instance-state-name" => self.state.name().into(),
            "instance-state-code" => self.state.code().to_string(),
            "instance-type" => self.instance_type.clone(),
            "image-id" => self.image_id.clone(),
            "private-ip-address" | "network-interface.addresses.private-ip-address" if live => {
                self.private_ip.to_string()
            }
            "private-dns-name" if live => private_dns_name(self.private_ip),
            // Terminated instances keep their subnet and VPC (filters by VPC still find them).
            "subnet-id" => self.subnet_id.clone(),
            "vpc-id" => self.vpc_id.clone(),
            "availability-zone" => self.availability_zone.clone(),
            "placement-host-id" | "host-id" => self.host_id.clone(),
            "reservation-id" => self.reservation_id.clone(),
            "owner-id" => super::OWNER_ID.into(),
            "instance.group-id" | "instance.group-name" if live => {
                let groups = state.enis.get(&self.eni_id).map(|e| &e.security_groups);
                return groups
                    .into_iter()
                    .flatten()
                    .filter_map(|g| match name {
                        "instance.group-id" => Some(g.clone()),
                        _ => state.security_groups.get(g).map(|g| g.name.clone()),
                    })
                    .collect();
            }
            // The public address (an Elastic IP on the primary address) and its DNS name.
            "ip-address" => {
                return public_ip(state, self)
                    .map(|a| a.to_string())
                    .into_iter()
                    .collect()
            }
            "dns-name" => {
                return public_ip(state, self)
                    .map(|a| public_dns_name(state, &self.vpc_id, a))
                    .filter(|n| !n.is_empty())
                    .into_iter()
                    .collect()
            }
            "reason" | "state-reason-code" | "state-reason-message" => {
                return self
                    .transition()
                    .map(|t| match name {
                        "reason" => t.reason,
                        "state-reason-code" => t.code.to_string(),
                        _ => t.message.to_string(),
                    })
                    .into_iter()
                    .collect()
            }
            "launch-index" => self.ami_launch_index.to_string(),
            "key-name" => return self.key_name.iter().cloned().collect(),
            "client-token" => return self.client_token.iter().map(|t| t.token.clone()).collect(),
            "launch-time" => super::filter::iso_time(self.launch_time),
            // Constant fields, as DescribeInstances shows them.
            "architecture" => "x86_64".into(),
            "hypervisor" => "xen".into(),
            "root-device-name" => "/dev/xvda".into(),
            "root-device-type" => "ebs".into(),
            "virtualization-type" => "hvm".into(),
            "tenancy" => "default".into(),
            "monitoring-state" => "disabled".into(),
            "source-dest-check" => "true".into(),
            _ => return Vec::new(),
        };
        vec![v]
    }

    fn tag_map(&self) -> Tags {
        self.tags.clone()
    }
}

/// DescribeInstances filters AWS documents about data softvpc does not hold (block devices,
/// IAM profiles, key pairs, IPv6, public DNS, metadata options, ...).
const INSTANCE_UNHELD: [&str; 68] = [
    "affinity",
    "availability-zone-id",
    "block-device-mapping.attach-time",
    "block-device-mapping.delete-on-termination",
    "block-device-mapping.device-name",
    "block-device-mapping.status",
    "block-device-mapping.volume-id",
    "boot-mode",
    "capacity-reservation-id",
    "capacity-reservation-specification.capacity-reservation-preference",
    "capacity-reservation-specification.capacity-reservation-target.capacity-reservation-id",
    "capacity-reservation-specification.capacity-reservation-target.capacity-reservation-resource-group-arn",
    "current-instance-boot-mode",
    "ebs-optimized",
    "ena-support",
    "enclave-options.enabled",
    "hibernation-options.configured",
    "iam-instance-profile.arn",
    "iam-instance-profile.id",
    "instance-lifecycle",
    "ipv6-address",
    "kernel-id",
    "maintenance-options.auto-recovery",
    "metadata-options.http-endpoint",
    "metadata-options.http-protocol-ipv4",
    "metadata-options.http-protocol-ipv6",
    "metadata-options.http-put-response-hop-limit",
    "metadata-options.http-tokens",
    "metadata-options.instance-metadata-tags",
    "metadata-options.state",
    "network-interface.addresses.association.carrier-ip",
    "network-interface.addresses.association.customer-owned-ip",
    "network-interface.addresses.association.public-dns-name",
    "network-interface.addresses.private-dns-name",
    "network-interface.association.carrier-ip",
    "network-interface.association.customer-owned-ip",
    "network-interface.association.public-dns-name",
    "network-interface.deny-all-igw-traffic",
    "network-interface.ipv4-prefixes.ipv4-prefix",
    "network-interface.ipv6-address",
    "network-interface.ipv6-addresses.ipv6-address",
    "network-interface.ipv6-addresses.is-primary-ipv6",
    "network-interface.ipv6-native",
    "network-interface.ipv6-prefixes.ipv6-prefix",
    "network-interface.operator.managed",
    "network-interface.operator.principal",
    "network-interface.outpost-arn",
    "network-interface.public-dns-name",
    "network-interface.requester-id",
    "network-performance-options.bandwidth-weighting",
    "operator.managed",
    "operator.principal",
    "outpost-arn",
    "placement-group-name",
    "placement-partition-number",
    "platform",
    "platform-details",
    "private-dns-name-options.enable-resource-name-dns-a-record",
    "private-dns-name-options.enable-resource-name-dns-aaaa-record",
    "private-dns-name-options.hostname-type",
    "product-code",
    "product-code.type",
    "ramdisk-id",
    "requester-id",
    "spot-instance-request-id",
    "tpm-support",
    "usage-operation",
    "usage-operation-update-time",
];

/// An instance's `network-interface.<rest>` filter: the values of the ENI filter `<rest>` over
/// every ENI attached to the instance (none once it is terminated).
fn instance_eni_field(i: &Instance, state: &State, rest: &str) -> Vec<String> {
    let attached = state.enis_of_instance(&i.id);
    attached
        .flat_map(|e| match rest {
            "group-name" => e
                .security_groups
                .iter()
                .filter_map(|g| state.security_groups.get(g).map(|g| g.name.clone()))
                .collect(),
            "attachment.network-card-index" => vec!["0".to_string()],
            "tag-key" => e.tags.keys().cloned().collect(),
            "tag-value" => e.tags.values().cloned().collect(),
            _ => e.field(state, rest),
        })
        .collect()
}

impl Filterable for Eni {
    const FILTERS: &'static [&'static str] = &[
        "network-interface-id",
        "subnet-id",
        "vpc-id",
        "availability-zone",
        "private-ip-address",
        "addresses.private-ip-address",
        "addresses.primary",
        "group-id",
        "private-dns-name",
        "mac-address",
        "status",
        "source-dest-check",
        "attachment.instance-id",
        "attachment.attachment-id",
        "attachment.status",
        "attachment.device-index",
        "attachment.delete-on-termination",
        "description",
        "owner-id",
        "interface-type",
        "requester-managed",
        "association.allocation-id",
        "association.association-id",
        "association.ip-owner-id",
        "association.public-ip",
        "addresses.association.owner-id",
        "addresses.association.public-ip",
        "attachment.attach-time",
        "attachment.instance-owner-id",
    ];
    const UNHELD: &'static [&'static str] = &[
        "association.public-dns-name",
        "availability-zone-id",
        "ipv6-addresses.ipv6-address",
        "operator.managed",
        "operator.principal",
        "requester-id",
    ];

    fn field(&self, state: &State, name: &str) -> Vec<String> {
        let att = self.attachment.as_ref();
        // A NAT gateway's interface shows as AWS shows it: in use, nat_gateway, requester-managed.
        let managed = super::eni::is_managed(state, &self.id);
        let association = match name {
            // (`addresses.association.{allocation-id,association-id,ip-owner-id}` are the
            // names DescribeInstances' `network-interface.` filters pass down.)
            "association.allocation-id" | "addresses.association.allocation-id" => {
                Some("allocation-id")
            }
            "association.association-id" | "addresses.association.association-id" => {
                Some("association-id")
            }
            "association.public-ip" | "addresses.association.public-ip" => Some("public-ip"),
            "association.ip-owner-id"
            | "addresses.association.owner-id"
            | "addresses.association.ip-owner-id" => Some("owner-id"),
            _ => None,
        };
        if let Some(what) = association {
            // Elastic IPs associated with any address of this interface.
            let elastic = state
                .addresses
                .values()
                .filter_map(|a| {
                    let s = a.association.as_ref()?;
                    (s.network_interface_id == self.id).then_some((a, s))
                })
                .map(|(a, s)| match what {
                    "allocation-id" => Some(a.allocation_id.clone()),
                    "association-id" => Some(s.id.clone()),
                    "public-ip" => Some(a.public_ip.to_string()),
                    _ => Some(super::OWNER_ID.to_string()),
                });
            // The automatic public IP has neither allocation nor association id.
            let auto = self.public_ip.map(|ip| match what {
                "public-ip" => Some(ip.to_string()),
                "owner-id" => Some("amazon".to_string()),
                _ => None,
            });
            return elastic.chain(auto).flatten().collect();
        }
        let v = match name {
            "network-interface-id" => self.id.clone(),
            "subnet-id" => self.subnet_id.clone(),
            "vpc-id" => self.vpc_id.clone(),
            "availability-zone" => self.availability_zone.clone(),
            "private-ip-address" | "addresses.private-ip-address" => {
                return self.addresses().map(|a| a.to_string()).collect()
            }
            "addresses.primary" => {
                return std::iter::once("true".to_string())
                    .chain(self.secondary_ips.iter().map(|_| "false".to_string()))
                    .collect()
            }
            "group-id" => return self.security_groups.clone(),
            "private-dns-name" => private_dns_name(self.private_ip),
            "mac-address" => self.mac.clone(),
            "status" => if att.is_some() || managed {
                "in-use"
            } else {
                "available"
            }
            .into(),
            "source-dest-check" => self.source_dest_check.to_string(),
            "description" => self.description.clone(),
            "owner-id" => super::OWNER_ID.into(),
            "interface-type" => if managed { "nat_gateway" } else { "interface" }.into(),
            "requester-managed" => managed.to_string(),
            "attachment.instance-id" => {
                return att.map(|a| a.instance_id.clone()).into_iter().collect()
            }
            "attachment.attachment-id" => {
                return att.map(|a| a.attachment_id.clone()).into_iter().collect()
            }
            "attachment.status" => {
                return att.map(|_| "attached".to_string()).into_iter().collect()
            }
            "attachment.device-index" => {
                return att
                    .map(|a| a.device_index.to_string())
                    .into_iter()
                    .collect()
            }
            "attachment.delete-on-termination" => {
                return att
                    .map(|a| a.delete_on_termination.to_string())
                    .into_iter()
                    .collect()
            }
            "attachment.attach-time" => {
                return att
                    .map(|a| super::filter::iso_time(a.attach_time))
                    .into_iter()
                    .collect()
            }
            "attachment.instance-owner-id" => {
                return att
                    .map(|_| super::OWNER_ID.to_string())
                    .into_iter()
                    .collect()
            }
            _ => return Vec::new(),
        };
        vec![v]
    }

    fn tag_map(&self) -> Tags {
        self.tags.clone()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn image_ids_are_ami_and_hex() {
        for ok in [
            "ami-1",
            "ami-12345678",
            "ami-0123456789abcdef0",
            "ami-ABCDEF01",
        ] {
            assert!(super::check_image_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ami-",
            "ami-xyz",
            "ami-1234567g",
            "AMI-12345678",
            "img-12345678",
            " ami-1",
        ] {
            let e = super::check_image_id(bad).unwrap_err();
            assert_eq!(e.code, "InvalidAMIID.Malformed", "{bad}");
            assert_eq!(
                e.message,
                format!("Invalid id: \"{bad}\" (expecting \"ami-...\")")
            );
        }
    }

    use super::super::subnet::{available_count, create_subnet};
    use super::super::vpc::create_vpc;
    use super::*;

    fn setup(cidr: &str) -> (Txn, String, String) {
        let mut txn = Txn::new(State::new(), 1_700_000_000);
        let vpc = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let s = create_subnet(&mut txn, &vpc.id, cidr, None, Tags::new()).unwrap();
        host::register_host(&mut txn, "host-1", "198.18.0.11").unwrap();
        host::register_host(&mut txn, "host-2", "198.18.0.12").unwrap();
        (txn, vpc.id, s.id)
    }

    fn req(subnet: &str, min: u32, max: u32) -> RunRequest {
        RunRequest {
            min_count: min,
            max_count: max,
            subnet_id: subnet.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn a_launch_template_tags_its_instances_as_aws_does() {
        let (mut txn, _, subnet) = setup("10.0.0.0/24");
        let mut r = req(&subnet, 2, 2);
        r.launch_template = Some(("lt-0123456789abcdef0".into(), 3));
        r.tag_specs = vec![TagSpec {
            resource_type: "instance".into(),
            tags: vec![("Name".into(), "web".into())],
        }];
        let got = run_instances(&mut txn, &r).unwrap();
        for i in &got.instances {
            let t = &txn.state.instances[&i.id].tags;
            assert_eq!(t["aws:ec2launchtemplate:id"], "lt-0123456789abcdef0");
            assert_eq!(t["aws:ec2launchtemplate:version"], "3");
            assert_eq!(t["Name"], "web");
        }
        let id = got.instances[0].id.clone();
        // Users can neither delete AWS's tags nor make their own; deleting all keeps them; they
        // do not count against the 50-tag limit.
        let e = super::super::tags::delete_tags(
            &mut txn,
            std::slice::from_ref(&id),
            &[("aws:ec2launchtemplate:id".into(), None)],
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue");
        super::super::tags::delete_tags(&mut txn, std::slice::from_ref(&id), &[]).unwrap();
        let t = &txn.state.instances[&id].tags;
        assert_eq!(t.len(), 2, "{t:?}");
        let fifty: Vec<(String, String)> = (0..50).map(|n| (format!("k{n}"), "v".into())).collect();
        super::super::tags::create_tags(&mut txn, std::slice::from_ref(&id), &fifty).unwrap();
        // A retry of the same launch from another version is another request.
        r.client_token = Some("tok".into());
        run_instances(&mut txn, &r).unwrap();
        r.launch_template = Some(("lt-0123456789abcdef0".into(), 4));
        assert_eq!(
            run_instances(&mut txn, &r).unwrap_err().code,
            "IdempotentParameterMismatch"
        );
    }

    #[test]
    fn instances_go_to_hosts_of_their_subnets_zone() {
        let (mut txn, vpc, subnet_a) = setup("10.0.0.0/24");
        let b =
            host::register_host_in(&mut txn, "host-b", "198.18.0.13", Some("us-east-1b")).unwrap();
        let subnet_b = create_subnet(
            &mut txn,
            &vpc,
            "10.0.1.0/24",
            Some("us-east-1b"),
            Tags::new(),
        )
        .unwrap()
        .id;
        let subnet_c = create_subnet(
            &mut txn,
            &vpc,
            "10.0.2.0/24",
            Some("us-east-1c"),
            Tags::new(),
        )
        .unwrap()
        .id;
        let r = run_instances(&mut txn, &req(&subnet_b, 3, 3)).unwrap();
        assert!(r.instances.iter().all(|i| i.host_id == b));
        // Zone a's two hosts share its instances; b's host gets none of them.
        let r = run_instances(&mut txn, &req(&subnet_a, 4, 4)).unwrap();
        assert!(r.instances.iter().all(|i| i.host_id != b));
        let e = run_instances(&mut txn, &req(&subnet_c, 1, 1)).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.status),
            ("InsufficientInstanceCapacity", 500)
        );
        // A host of another zone, named.
        let r = RunRequest {
            host: Some("host-b".into()),
            ..req(&subnet_a, 1, 1)
        };
        assert_eq!(
            run_instances(&mut txn, &r).unwrap_err().code,
            "InvalidParameterValue"
        );
    }

    #[test]
    fn key_name_must_exist_and_is_kept() {
        let (mut txn, _, subnet) = setup("10.0.0.0/24");
        let r = RunRequest {
            key_name: Some("nope".into()),
            ..req(&subnet, 1, 1)
        };
        assert_eq!(
            run_instances(&mut txn, &r).unwrap_err().code,
            "InvalidKeyPair.NotFound"
        );
        super::super::key_pair::create_key_pair(
            &mut txn,
            "k",
            "ed25519",
            "fp".into(),
            "ssh-ed25519 AAAA".into(),
            Tags::new(),
        )
        .unwrap();
        let r = RunRequest {
            key_name: Some("k".into()),
            ..req(&subnet, 1, 1)
        };
        let i = run_instances(&mut txn, &r).unwrap().instances[0].clone();
        assert_eq!(i.key_name.as_deref(), Some("k"));
        assert_eq!(i.key_public.as_deref(), Some("ssh-ed25519 AAAA k"));
        // The instance keeps both after the key pair is deleted, as on AWS.
        super::super::key_pair::delete_key_pair(&mut txn, Some("k"), None).unwrap();
        assert_eq!(txn.state.instances[&i.id].key_name.as_deref(), Some("k"));
    }

    #[test]
    fn root_volumes_protection_and_attributes() {
        let (mut txn, _, subnet) = setup("10.0.0.0/24");
        let r = RunRequest {
            tag_specs: vec![TagSpec {
                resource_type: "volume".into(),
                tags: vec![("Name".into(), "root".into())],
            }],
            disable_api_termination: true,
            user_data: Some("aGk=".into()),
            ..req(&subnet, 2, 2)
        };
        let res = run_instances(&mut txn, &r).unwrap();
        let (a, b) = (res.instances[0].id.clone(), res.instances[1].id.clone());
        // One root volume each, tagged, attached at /dev/xvda, deleted with the instance.
        let va = super::super::volume::of_instance(&txn.state, &a);
        assert_eq!(va.len(), 1);
        assert_eq!(va[0].tags["Name"], "root");
        let att = va[0].attachment.clone().unwrap();
        assert_eq!(
            (att.device.as_str(), att.delete_on_termination),
            ("/dev/xvda", true)
        );
        assert_eq!(txn.state.instances[&a].user_data.as_deref(), Some("aGk="));

        // Protected: the whole call is refused, nothing changes.
        let e = terminate_instances(&mut txn, &[a.clone(), b.clone()]).unwrap_err();
        assert_eq!(e.code, "OperationNotPermitted");
        assert!(e.message.contains("may not be terminated"), "{}", e.message);
        assert_eq!(txn.state.instances[&b].state, InstanceState::Running);
        modify_instance(&mut txn, &a, InstanceChange::DisableApiTermination(false)).unwrap();
        modify_instance(&mut txn, &b, InstanceChange::DisableApiTermination(false)).unwrap();
        // b keeps its volume at termination.
        modify_instance(
            &mut txn,
            &b,
            InstanceChange::DeleteOnTermination("/dev/xvda".into(), None, false),
        )
        .unwrap();
        let vb = super::super::volume::of_instance(&txn.state, &b)[0]
            .id
            .clone();

        // Stop protection; instance type and user data only while stopped.
        modify_instance(&mut txn, &a, InstanceChange::DisableApiStop(true)).unwrap();
        assert_eq!(
            stop_instances(&mut txn, std::slice::from_ref(&a))
                .unwrap_err()
                .code,
            "OperationNotPermitted"
        );
        assert_eq!(
            modify_instance(
                &mut txn,
                &b,
                InstanceChange::InstanceType("t3.large".into())
            )
            .unwrap_err()
            .code,
            "IncorrectInstanceState"
        );
        stop_instances(&mut txn, std::slice::from_ref(&b)).unwrap();
        modify_instance(
            &mut txn,
            &b,
            InstanceChange::InstanceType("t3.large".into()),
        )
        .unwrap();
        modify_instance(&mut txn, &b, InstanceChange::UserData("eW8=".into())).unwrap();
        assert_eq!(txn.state.instances[&b].instance_type, "t3.large");
        assert_eq!(txn.state.instances[&b].user_data.as_deref(), Some("eW8="));

        terminate_instances(&mut txn, &[a.clone(), b.clone()]).unwrap();
        assert!(super::super::volume::of_instance(&txn.state, &a).is_empty());
        assert_eq!(txn.state.volumes.len(), 1, "only b's kept volume is left");
        let kept = &txn.state.volumes[&vb];
        assert!(kept.attachment.is_none());
        assert_eq!(kept.state(), "available");
    }

    #[test]
    fn allocation_order_placement_and_counts() {
        let (mut txn, _vpc, subnet) = setup("10.0.0.0/24");
        let r = run_instances(&mut txn, &req(&subnet, 1, 3)).unwrap();
        let ips: Vec<String> = r
            .instances
            .iter()
            .map(|i| i.private_ip.to_string())
            .collect();
        assert_eq!(ips, ["10.0.0.4", "10.0.0.5", "10.0.0.6"]);
        // Spread over the two hosts by load.
        let h1 = txn.state.host_by_name("host-1").unwrap().id.clone();
        let h2 = txn.state.host_by_name("host-2").unwrap().id.clone();
        let on = |h: &str| txn.state.live_instances_on(h);
        assert_eq!(on(&h1) + on(&h2), 3);
        assert!(on(&h1).abs_diff(on(&h2)) <= 1);
        let s = txn.state.subnets[&subnet].clone();
        assert_eq!(available_count(&txn.state, &s), 248);
        // Each instance has an attached ENI with its address and a 02: MAC.
        for i in &r.instances {
            let eni = &txn.state.enis[&i.eni_id];
            assert_eq!(eni.private_ip, i.private_ip);
            assert!(eni.mac.starts_with("02:"));
            assert_eq!(eni.attachment.as_ref().unwrap().instance_id, i.id);
        }
    }

    #[test]
    fn explicit_address_and_host() {
        let (mut txn, _vpc, subnet) = setup("10.0.0.0/24");
        let mut r = req(&subnet, 1, 1);
        r.private_ip = Some("10.0.0.148".into());
        r.host = Some("host-2".into());
        let res = run_instances(&mut txn, &r).unwrap();
        let i = &res.instances[0];
        assert_eq!(i.private_ip.to_string(), "10.0.0.148");
        assert_eq!(txn.state.hosts[&i.host_id].name, "host-2");
        let code = |txn: &mut Txn, r: &RunRequest| run_instances(txn, r).unwrap_err().code;
        assert_eq!(code(&mut txn, &r), "InvalidIPAddress.InUse");
        r.private_ip = Some("10.0.0.1".into());
        assert_eq!(code(&mut txn, &r), "InvalidParameterValue");
        r.private_ip = Some("10.0.0.255".into());
        assert_eq!(code(&mut txn, &r), "InvalidParameterValue");
        r.private_ip = Some("10.0.1.5".into());
        assert_eq!(code(&mut txn, &r), "InvalidParameterValue");
        r.private_ip = Some("10.0.0.149".into());
        r.host = Some("h-0123456789abcdef0".into());
        assert_eq!(code(&mut txn, &r), "InvalidHostID.NotFound");
        r.host = Some("nowhere".into());
        assert_eq!(code(&mut txn, &r), "InvalidParameterValue");
        r.host = None;
        r.subnet_id = "subnet-0123456789abcdef0".into();
        assert_eq!(code(&mut txn, &r), "InvalidSubnetID.NotFound");
    }

    #[test]
    fn counts_against_capacity() {
        let (mut txn, _vpc, subnet) = setup("10.0.0.0/28");
        // A /28 has 11 assignable addresses.
        assert_eq!(
            run_instances(&mut txn, &req(&subnet, 12, 20))
                .unwrap_err()
                .code,
            "InsufficientFreeAddressesInSubnet"
        );
        let r = run_instances(&mut txn, &req(&subnet, 2, 20)).unwrap();
        assert_eq!(r.instances.len(), 11);
        assert_eq!(
            run_instances(&mut txn, &req(&subnet, 1, 1))
                .unwrap_err()
                .code,
            "InsufficientFreeAddressesInSubnet"
        );
        assert_eq!(
            run_instances(&mut txn, &req(&subnet, 2, 1))
                .unwrap_err()
                .code,
            "InvalidParameterValue"
        );
    }

    #[test]
    fn no_host_no_capacity() {
        let mut txn = Txn::new(State::new(), 0);
        let vpc = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let s = create_subnet(&mut txn, &vpc.id, "10.0.0.0/24", None, Tags::new()).unwrap();
        assert_eq!(
            run_instances(&mut txn, &req(&s.id, 1, 1)).unwrap_err().code,
            "InsufficientInstanceCapacity"
        );
    }

    #[test]
    fn terminate_frees_the_address_and_keeps_the_record() {
        let (mut txn, vpc, subnet) = setup("10.0.0.0/24");
        let r = run_instances(&mut txn, &req(&subnet, 1, 1)).unwrap();
        let id = r.instances[0].id.clone();
        assert_eq!(
            super::super::subnet::delete_subnet(&mut txn, &subnet)
                .unwrap_err()
                .code,
            "DependencyViolation"
        );
        assert_eq!(
            terminate_instances(&mut txn, &[id.clone(), "i-0123456789abcdef0".into()])
                .unwrap_err()
                .code,
            "InvalidInstanceID.NotFound"
        );
        assert_eq!(txn.state.instances[&id].state, InstanceState::Running);
        let ch = terminate_instances(&mut txn, std::slice::from_ref(&id)).unwrap();
        assert_eq!(ch[0].previous, InstanceState::Running);
        assert_eq!(ch[0].current, InstanceState::ShuttingDown);
        assert_eq!(txn.state.instances[&id].state, InstanceState::Terminated);
        assert!(txn.state.enis.is_empty());
        // The address is free again, and the subnet and VPC can go.
        let again = run_instances(&mut txn, &req(&subnet, 1, 1)).unwrap();
        assert_eq!(again.instances[0].private_ip.to_string(), "10.0.0.4");
        terminate_instances(&mut txn, &[again.instances[0].id.clone()]).unwrap();
        super::super::subnet::delete_subnet(&mut txn, &subnet).unwrap();
        super::super::vpc::delete_vpc(&mut txn, &vpc).unwrap();
    }

    #[test]
    fn tag_specifications() {
        let (mut txn, _vpc, subnet) = setup("10.0.0.0/24");
        let mut r = req(&subnet, 1, 1);
        r.tag_specs = vec![
            TagSpec {
                resource_type: "instance".into(),
                tags: vec![("Name".into(), "zigi-vm1".into())],
            },
            TagSpec {
                resource_type: "network-interface".into(),
                tags: vec![("role".into(), "eth0".into())],
            },
        ];
        let res = run_instances(&mut txn, &r).unwrap();
        let i = &res.instances[0];
        assert_eq!(i.name(), "zigi-vm1");
        assert_eq!(txn.state.enis[&i.eni_id].tags["role"], "eth0");
        r.tag_specs[0].resource_type = "volcano".into();
        assert_eq!(
            run_instances(&mut txn, &r).unwrap_err().code,
            "InvalidParameterValue"
        );
    }

    #[test]
    fn stop_and_start_keep_addresses_and_leave_the_data_plane() {
        let (mut txn, _vpc, subnet) = setup("10.0.0.0/24");
        let r = run_instances(&mut txn, &req(&subnet, 2, 2)).unwrap();
        let (a, b) = (r.instances[0].id.clone(), r.instances[1].id.clone());
        let eni = r.instances[0].eni_id.clone();
        let host = txn.state.instances[&a].host_id.clone();
        let ch = stop_instances(&mut txn, std::slice::from_ref(&a)).unwrap();
        assert_eq!(ch[0].previous, InstanceState::Running);
        assert_eq!(ch[0].current, InstanceState::Stopping);
        assert_eq!(txn.state.instances[&a].state, InstanceState::Stopped);
        // Keeps its ENI and address; the ENI is nowhere on the data plane.
        let e = txn.state.enis[&eni].clone();
        assert_eq!(e.private_ip, r.instances[0].private_ip);
        assert_eq!(placed_host(&txn.state, &e), None);
        let s = txn.state.subnets[&subnet].clone();
        assert_eq!(available_count(&txn.state, &s), 249);
        // Stopping again is a no-op; starting an already running one too.
        let again = stop_instances(&mut txn, std::slice::from_ref(&a)).unwrap();
        assert_eq!(again[0].current, InstanceState::Stopped);
        let run = start_instances(&mut txn, std::slice::from_ref(&b)).unwrap();
        assert_eq!(run[0].current, InstanceState::Running);
        // Unknown ids: nothing changes.
        assert_eq!(
            start_instances(&mut txn, &[a.clone(), "i-0123456789abcdef0".into()])
                .unwrap_err()
                .code,
            "InvalidInstanceID.NotFound"
        );
        assert_eq!(txn.state.instances[&a].state, InstanceState::Stopped);
        let ch = start_instances(&mut txn, std::slice::from_ref(&a)).unwrap();
        assert_eq!(ch[0].previous, InstanceState::Stopped);
        assert_eq!(ch[0].current, InstanceState::Pending);
        assert_eq!(txn.state.instances[&a].state, InstanceState::Running);
        assert_eq!(
            placed_host(&txn.state, &txn.state.enis[&eni]),
            Some(host.as_str())
        );
        // A stopped instance can be terminated; a terminated one neither started nor stopped.
        stop_instances(&mut txn, std::slice::from_ref(&a)).unwrap();
        let t = terminate_instances(&mut txn, std::slice::from_ref(&a)).unwrap();
        assert_eq!(t[0].previous, InstanceState::Stopped);
        assert!(!txn.state.enis.contains_key(&eni));
        for f in [start_instances, stop_instances] {
            assert_eq!(
                f(&mut txn, std::slice::from_ref(&a)).unwrap_err().code,
                "IncorrectInstanceState"
            );
        }
        assert_eq!(
            start_instances(&mut txn, &[]).unwrap_err().code,
            "MissingParameter"
        );
    }

    #[test]
    fn client_token_makes_run_instances_idempotent() {
        let (mut txn, _vpc, subnet) = setup("10.0.0.0/24");
        let mut r = req(&subnet, 2, 2);
        r.private_ip = None;
        r.client_token = Some("launch-1".into());
        r.tag_specs = vec![TagSpec {
            resource_type: "instance".into(),
            tags: vec![("Name".into(), "web".into())],
        }];
        let first = run_instances(&mut txn, &r).unwrap();
        assert!(!first.replayed);
        assert_eq!(first.instances.len(), 2);
        assert_eq!(
            first.instances[0].client_token.as_ref().unwrap().token,
            "launch-1"
        );
        // A retry launches nothing and answers with the same reservation and instances.
        txn.writes.clear();
        let again = run_instances(&mut txn, &r).unwrap();
        assert!(again.replayed);
        assert!(txn.writes.is_empty(), "a retry writes nothing");
        assert_eq!(again.reservation_id, first.reservation_id);
        let ids = |res: &Reservation| {
            res.instances
                .iter()
                .map(|i| i.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&again), ids(&first));
        assert_eq!(txn.state.instances.len(), 2);
        // Even once terminated, the token still finds them (the state is all that differs).
        terminate_instances(&mut txn, &ids(&first)).unwrap();
        let later = run_instances(&mut txn, &r).unwrap();
        assert_eq!(ids(&later), ids(&first));
        assert!(later
            .instances
            .iter()
            .all(|i| i.state == InstanceState::Terminated));
        // The same token with any other parameter is refused, and launches nothing.
        for change in [
            |r: &mut RunRequest| r.max_count = 3,
            |r: &mut RunRequest| r.instance_type = Some("t3.large".into()),
            |r: &mut RunRequest| r.tag_specs[0].tags[0].1 = "db".into(),
            |r: &mut RunRequest| r.host = Some("host-2".into()),
        ] {
            let mut other = r.clone();
            change(&mut other);
            let err = run_instances(&mut txn, &other).unwrap_err();
            assert_eq!(err.code, "IdempotentParameterMismatch");
            assert_eq!(
                err.message,
                "Arguments on this idempotent request are inconsistent with arguments used in previous request(s)."
            );
        }
        assert_eq!(txn.state.instances.len(), 2);
        // Another token launches anew; no token always does.
        r.client_token = Some("launch-2".into());
        assert!(!run_instances(&mut txn, &r).unwrap().replayed);
        r.client_token = None;
        let a = run_instances(&mut txn, &r).unwrap();
        let b = run_instances(&mut txn, &r).unwrap();
        assert_ne!(a.reservation_id, b.reservation_id);
        assert_eq!(txn.state.instances.len(), 8);
    }

    #[test]
    fn terminated_instances_are_kept_for_the_retention_then_purged() {
        let (mut txn, _vpc, subnet) = setup("10.0.0.0/24");
        let r = run_instances(&mut txn, &req(&subnet, 2, 2)).unwrap();
        let (a, b) = (r.instances[0].id.clone(), r.instances[1].id.clone());
        let t0 = txn.now;
        terminate_instances(&mut txn, std::slice::from_ref(&a)).unwrap();
        let stored = txn.state.instances[&a].clone();
        assert_eq!(stored.state, InstanceState::Terminated);
        assert_eq!(stored.state_transition_time, Some(t0));
        // Stored (not deleted) so that it survives a restart.
        assert!(txn.writes.iter().any(|w| matches!(w,
            super::super::Write::Put { table: super::super::Table::Instances, key, .. } if *key == a)));
        // Its ENI is gone: the mapping service places nothing for it on any host.
        assert!(!txn.state.enis.contains_key(&stored.eni_id));
        assert!(!txn
            .state
            .enis
            .values()
            .any(|e| e.attachment.as_ref().is_some_and(|x| x.instance_id == a)));
        // (`b` went to the other host, so `a`'s host now needs no VPC at all.)
        assert_ne!(txn.state.instances[&b].host_id, stored.host_id);
        assert!(!txn
            .state
            .enis
            .values()
            .any(|e| placed_host(&txn.state, e) == Some(stored.host_id.as_str())));
        // Within the hour: kept.
        let state = txn.state.clone();
        let mut later = Txn::new(state.clone(), t0 + TERMINATED_RETENTION_SECS - 1);
        assert!(!expired(&stored, later.now));
        purge_terminated(&mut later);
        assert!(later.is_empty());
        assert!(later.state.instances.contains_key(&a));
        // An hour on: purged (a delete in the store), the running one untouched.
        let mut after = Txn::new(state, t0 + TERMINATED_RETENTION_SECS);
        assert!(expired(&stored, after.now));
        purge_terminated(&mut after);
        assert!(!after.state.instances.contains_key(&a));
        assert!(after.state.instances.contains_key(&b));
        assert_eq!(
            after.writes,
            vec![super::super::Write::Delete {
                table: super::super::Table::Instances,
                key: a.clone()
            }]
        );
        assert_eq!(
            terminate_instances(&mut after, std::slice::from_ref(&a))
                .unwrap_err()
                .code,
            "InvalidInstanceID.NotFound"
        );
    }

    #[test]
    fn stop_records_the_transition_time_and_start_clears_it() {
        let (mut txn, _vpc, subnet) = setup("10.0.0.0/24");
        let id = run_instances(&mut txn, &req(&subnet, 1, 1))
            .unwrap()
            .instances[0]
            .id
            .clone();
        assert_eq!(txn.state.instances[&id].state_transition_time, None);
        txn.now += 10;
        stop_instances(&mut txn, std::slice::from_ref(&id)).unwrap();
        assert_eq!(
            txn.state.instances[&id].state_transition_time,
            Some(txn.now)
        );
        let t = txn.state.instances[&id].transition().unwrap();
        // 1_700_000_010 s after the epoch is 2023-11-14 22:13:30 UTC.
        assert_eq!(t.reason, "User initiated (2023-11-14 22:13:30 GMT)");
        assert_eq!(t.code, "Client.UserInitiatedShutdown");
        assert_eq!(
            txn.state.instances[&id].field(&txn.state, "state-reason-code"),
            ["Client.UserInitiatedShutdown"]
        );
        // A stopped instance is never purged.
        assert!(!expired(
            &txn.state.instances[&id],
            txn.now + 10 * TERMINATED_RETENTION_SECS
        ));
        start_instances(&mut txn, std::slice::from_ref(&id)).unwrap();
        assert_eq!(txn.state.instances[&id].state_transition_time, None);
        assert_eq!(txn.state.instances[&id].transition(), None);
        assert!(txn.state.instances[&id]
            .field(&txn.state, "reason")
            .is_empty());
    }

    #[test]
    fn no_subnet_means_the_default_subnet() {
        let mut txn = Txn::new(State::new(), 0);
        host::register_host(&mut txn, "host-1", "198.18.0.11").unwrap();
        assert_eq!(
            run_instances(&mut txn, &req("", 1, 1)).unwrap_err().code,
            "VPCIdNotSpecified"
        );
        let (vpc, subnet) = super::super::attributes::create_default_vpc(&mut txn).unwrap();
        let r = run_instances(&mut txn, &req("", 1, 1)).unwrap();
        assert_eq!(r.instances[0].subnet_id, subnet);
        assert_eq!(r.instances[0].vpc_id, vpc);
        assert_eq!(r.instances[0].private_ip.to_string(), "172.31.0.4");
    }

    /// A subnet with `MapPublicIpOnLaunch`, a VPC with an internet gateway (for Elastic IPs).
    fn public_setup() -> (Txn, String, String) {
        let (mut txn, vpc, subnet) = setup("10.0.0.0/24");
        super::super::attributes::modify_subnet_attribute(&mut txn, &subnet, Some(true)).unwrap();
        let igw =
            super::super::internet_gateway::create_internet_gateway(&mut txn, Tags::new()).unwrap();
        super::super::internet_gateway::attach_internet_gateway(&mut txn, &igw.id, &vpc).unwrap();
        (txn, vpc, subnet)
    }

    fn pub_of(txn: &Txn, id: &str) -> Option<Ipv4Addr> {
        public_ip(&txn.state, &txn.state.instances[id])
    }

    fn pool(n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(super::super::address::POOL_FIRST) + n)
    }

    #[test]
    fn public_ips_follow_the_subnet_or_the_launch_override() {
        let (mut txn, _vpc, subnet) = public_setup();
        let r = run_instances(&mut txn, &req(&subnet, 2, 2)).unwrap();
        let (a, b) = (&r.instances[0], &r.instances[1]);
        assert!(a.auto_public_ip);
        // Distinct addresses from the pool, on the primary ENIs.
        assert_eq!(txn.state.enis[&a.eni_id].public_ip, Some(pool(0)));
        assert_eq!(txn.state.enis[&b.eni_id].public_ip, Some(pool(1)));
        assert_eq!(pub_of(&txn, &a.id), Some(pool(0)));
        // An Elastic IP never takes an address an instance holds.
        let eip = super::super::address::allocate_address(&mut txn, None, Tags::new()).unwrap();
        assert_eq!(eip.public_ip, pool(2));
        // The override wins either way.
        let mut no = req(&subnet, 1, 1);
        no.associate_public_ip = Some(false);
        let off = run_instances(&mut txn, &no).unwrap().instances[0].clone();
        assert!(!off.auto_public_ip);
        assert_eq!(pub_of(&txn, &off.id), None);
        super::super::attributes::modify_subnet_attribute(&mut txn, &subnet, Some(false)).unwrap();
        let plain = run_instances(&mut txn, &req(&subnet, 1, 1))
            .unwrap()
            .instances[0]
            .clone();
        assert_eq!(pub_of(&txn, &plain.id), None);
        let mut yes = req(&subnet, 1, 1);
        yes.associate_public_ip = Some(true);
        let on = run_instances(&mut txn, &yes).unwrap().instances[0].clone();
        assert_eq!(pub_of(&txn, &on.id), Some(pool(3)));
        // The automatic address shows in the filters, owned by amazon, with no ids.
        let e = txn.state.enis[&on.eni_id].clone();
        assert_eq!(
            e.field(&txn.state, "association.public-ip"),
            [pool(3).to_string()]
        );
        assert_eq!(e.field(&txn.state, "association.ip-owner-id"), ["amazon"]);
        assert!(e.field(&txn.state, "association.allocation-id").is_empty());
        let i = txn.state.instances[&on.id].clone();
        assert_eq!(i.field(&txn.state, "ip-address"), [pool(3).to_string()]);
        assert_eq!(
            i.field(&txn.state, "network-interface.association.ip-owner-id"),
            ["amazon"]
        );
        // Terminating releases it: the next address handed out is that one.
        terminate_instances(&mut txn, std::slice::from_ref(&on.id)).unwrap();
        assert_eq!(pub_of(&txn, &on.id), None);
        let again = super::super::address::allocate_address(&mut txn, None, Tags::new()).unwrap();
        assert_eq!(again.public_ip, pool(3));
    }

    #[test]
    fn exhausted_pool_refuses_the_launch() {
        let (mut txn, _vpc, subnet) = public_setup();
        let n = u32::from(super::super::address::POOL_LAST)
            - u32::from(super::super::address::POOL_FIRST);
        for _ in 0..n {
            super::super::address::allocate_address(&mut txn, None, Tags::new()).unwrap();
        }
        // One address left: two instances at once cannot both have one (on a copy: the
        // control plane drops a failed mutation's transaction).
        let mut trial = Txn::new(txn.state.clone(), txn.now);
        let err = run_instances(&mut trial, &req(&subnet, 2, 2)).unwrap_err();
        assert_eq!(err.code, "InsufficientAddressCapacity");
        let one = run_instances(&mut txn, &req(&subnet, 1, 1))
            .unwrap()
            .instances[0]
            .clone();
        assert_eq!(
            pub_of(&txn, &one.id),
            Some(super::super::address::POOL_LAST)
        );
        assert_eq!(
            super::super::address::allocate_address(&mut txn, None, Tags::new())
                .unwrap_err()
                .code,
            "AddressLimitExceeded"
        );
        // Stopped, its address goes back; another launch takes it, so the start fails.
        stop_instances(&mut txn, std::slice::from_ref(&one.id)).unwrap();
        let other = run_instances(&mut txn, &req(&subnet, 1, 1))
            .unwrap()
            .instances[0]
            .clone();
        assert_eq!(
            pub_of(&txn, &other.id),
            Some(super::super::address::POOL_LAST)
        );
        assert_eq!(
            start_instances(&mut txn, std::slice::from_ref(&one.id))
                .unwrap_err()
                .code,
            "InsufficientAddressCapacity"
        );
    }

    #[test]
    fn stop_releases_and_start_assigns_a_new_public_ip() {
        let (mut txn, _vpc, subnet) = public_setup();
        let r = run_instances(&mut txn, &req(&subnet, 1, 1)).unwrap();
        let id = r.instances[0].id.clone();
        let first = pub_of(&txn, &id).unwrap();
        stop_instances(&mut txn, std::slice::from_ref(&id)).unwrap();
        assert_eq!(pub_of(&txn, &id), None);
        assert_eq!(txn.state.enis[&r.instances[0].eni_id].public_ip, None);
        // Someone else takes the freed address meanwhile: the restart gets another one.
        let eip = super::super::address::allocate_address(&mut txn, None, Tags::new()).unwrap();
        assert_eq!(eip.public_ip, first);
        start_instances(&mut txn, std::slice::from_ref(&id)).unwrap();
        let second = pub_of(&txn, &id).unwrap();
        assert_ne!(second, first);
        assert!(txn.state.instances[&id].auto_public_ip);
    }

    #[test]
    fn an_elastic_ip_replaces_the_public_ip_and_gives_it_back() {
        use super::super::address::{
            allocate_address, associate_address, disassociate_address, AssociateRequest,
        };
        let (mut txn, _vpc, subnet) = public_setup();
        let inst = run_instances(&mut txn, &req(&subnet, 1, 1))
            .unwrap()
            .instances[0]
            .clone();
        let auto = pub_of(&txn, &inst.id).unwrap();
        let eip = allocate_address(&mut txn, None, Tags::new()).unwrap();
        let assoc = associate_address(
            &mut txn,
            &AssociateRequest {
                allocation_id: Some(eip.allocation_id.clone()),
                instance_id: Some(inst.id.clone()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(pub_of(&txn, &inst.id), Some(eip.public_ip));
        assert_eq!(txn.state.enis[&inst.eni_id].public_ip, None);
        let e = txn.state.enis[&inst.eni_id].clone();
        assert_eq!(
            e.field(&txn.state, "association.ip-owner-id"),
            [super::super::OWNER_ID]
        );
        // Stop/start keeps the Elastic IP and assigns nothing else.
        stop_instances(&mut txn, std::slice::from_ref(&inst.id)).unwrap();
        start_instances(&mut txn, std::slice::from_ref(&inst.id)).unwrap();
        assert_eq!(pub_of(&txn, &inst.id), Some(eip.public_ip));
        assert_eq!(txn.state.enis[&inst.eni_id].public_ip, None);
        // Disassociated: a single ENI and no other Elastic IP, so a new public IP comes.
        disassociate_address(&mut txn, Some(&assoc), None).unwrap();
        let back = pub_of(&txn, &inst.id).unwrap();
        assert!(
            back != eip.public_ip,
            "the Elastic IP stays allocated, not reused"
        );
        assert_eq!(back, auto, "the lowest free address: the one it gave up");

        // With a second ENI attached, losing the Elastic IP leaves no public IP, for good.
        let assoc = associate_address(
            &mut txn,
            &AssociateRequest {
                allocation_id: Some(eip.allocation_id.clone()),
                instance_id: Some(inst.id.clone()),
                ..Default::default()
            },
        )
        .unwrap();
        let extra = super::super::eni::create_network_interface(
            &mut txn,
            &super::super::eni::CreateRequest {
                subnet_id: subnet.clone(),
                ..Default::default()
            },
        )
        .unwrap();
        super::super::eni::attach_network_interface(&mut txn, &extra.id, &inst.id, 1).unwrap();
        disassociate_address(&mut txn, Some(&assoc), None).unwrap();
        assert_eq!(pub_of(&txn, &inst.id), None);
        assert!(!txn.state.instances[&inst.id].auto_public_ip);
        stop_instances(&mut txn, std::slice::from_ref(&inst.id)).unwrap();
        start_instances(&mut txn, std::slice::from_ref(&inst.id)).unwrap();
        assert_eq!(pub_of(&txn, &inst.id), None);
    }

    #[test]
    fn a_moved_elastic_ip_leaves_its_old_instance_a_new_public_ip() {
        use super::super::address::{allocate_address, associate_address, AssociateRequest};
        let (mut txn, _vpc, subnet) = public_setup();
        let r = run_instances(&mut txn, &req(&subnet, 2, 2)).unwrap();
        let (a, b) = (r.instances[0].id.clone(), r.instances[1].id.clone());
        let eip = allocate_address(&mut txn, None, Tags::new()).unwrap();
        let to = |i: &str| AssociateRequest {
            allocation_id: Some(eip.allocation_id.clone()),
            instance_id: Some(i.to_string()),
            allow_reassociation: true,
            ..Default::default()
        };
        associate_address(&mut txn, &to(&a)).unwrap();
        associate_address(&mut txn, &to(&b)).unwrap();
        assert_eq!(pub_of(&txn, &b), Some(eip.public_ip));
        let a_ip = pub_of(&txn, &a).unwrap();
        assert_ne!(a_ip, eip.public_ip);
        assert_ne!(Some(a_ip), txn.state.enis[&r.instances[1].eni_id].public_ip);
    }

    fn nic(device_index: u32, subnet: Option<&str>, eni: Option<&str>) -> InterfaceSpec {
        InterfaceSpec {
            device_index,
            subnet_id: subnet.map(str::to_string),
            network_interface_id: eni.map(str::to_string),
            ..Default::default()
        }
    }

    fn with_nics(nics: Vec<InterfaceSpec>, max: u32) -> RunRequest {
        RunRequest {
            min_count: 1,
            max_count: max,
            interfaces: nics,
            ..Default::default()
        }
    }

    #[test]
    fn interfaces_new_and_existing_then_terminate() {
        let (mut txn, _vpc, subnet) = setup("10.0.0.0/24");
        let kept = super::super::eni::create_network_interface(
            &mut txn,
            &super::super::eni::CreateRequest {
                subnet_id: subnet.clone(),
                ..Default::default()
            },
        )
        .unwrap();
        let mut second = nic(0, Some(&subnet), None);
        second.secondary_count = Some(2);
        let r = run_instances(
            &mut txn,
            &with_nics(vec![nic(1, None, Some(&kept.id)), second], 1),
        )
        .unwrap();
        let i = &r.instances[0];
        let mut enis: Vec<Eni> = txn
            .state
            .enis_of_instance(&i.id)
            .map(|e| (**e).clone())
            .collect();
        enis.sort_by_key(|e| e.attachment.as_ref().map(|a| a.device_index));
        assert_eq!(enis.len(), 2);
        assert_eq!(enis[0].id, i.eni_id);
        assert_eq!(enis[0].secondary_ips.len(), 2);
        assert!(enis[0].attachment.as_ref().unwrap().delete_on_termination);
        assert_eq!(enis[1].id, kept.id);
        assert!(!enis[1].attachment.as_ref().unwrap().delete_on_termination);
        // Every address distinct (the kept ENI's too).
        let mut all: Vec<Ipv4Addr> = enis.iter().flat_map(|e| e.addresses()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 4);
        terminate_instances(&mut txn, std::slice::from_ref(&i.id)).unwrap();
        assert!(!txn.state.enis.contains_key(&i.eni_id));
        assert!(txn.state.enis[&kept.id].attachment.is_none());
    }

    #[test]
    fn interface_refusals() {
        let (mut txn, _vpc, subnet) = setup("10.0.0.0/24");
        let s = Some(subnet.as_str());
        let code = |txn: &mut Txn, r: RunRequest| run_instances(txn, &r).unwrap_err().code;
        assert_eq!(
            code(
                &mut txn,
                with_nics(vec![nic(0, s, None), nic(0, s, None)], 1)
            ),
            "InvalidParameterValue"
        );
        assert_eq!(
            code(&mut txn, with_nics(vec![nic(1, s, None)], 1)),
            "InvalidParameterValue"
        );
        assert_eq!(
            code(
                &mut txn,
                with_nics(vec![nic(0, s, None), nic(1, s, None), nic(2, s, None)], 1)
            ),
            "AttachmentLimitExceeded"
        );
        assert_eq!(
            code(
                &mut txn,
                with_nics(vec![nic(0, s, None), nic(1, None, Some("eni-404"))], 1)
            ),
            "InvalidNetworkInterfaceID.NotFound"
        );
        assert_eq!(max_interfaces("t3.micro"), 2);
        assert_eq!(max_interfaces("m5.large"), 3);
        assert_eq!(max_interfaces("c5.4xlarge"), 8);
    }

    #[test]
    fn interfaces_change_the_digest() {
        let a = with_nics(vec![nic(0, Some("subnet-1"), None)], 1);
        let mut b = a.clone();
        b.interfaces[0].delete_on_termination = Some(false);
        let mut c = a.clone();
        c.interfaces.push(nic(1, None, Some("eni-1")));
        assert_ne!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
        assert_ne!(b.digest(), c.digest());
    }
}
