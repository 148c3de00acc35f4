//! Elastic network interfaces on their own: Create/Delete, Attach/Detach to instances,
//! secondary private addresses (Assign/Unassign), attributes (SourceDestCheck, Groups,
//! Description, ConnectionTrackingSpecification). Every address an ENI holds is counted against its subnet, so
//! `AvailableIpAddressCount` stays exact; every change to where an ENI lives or what addresses it
//! has is an `UpsertEni` for the mapping service.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use super::idempotency::{replay, ClientToken, Digest};
use super::ids::new_id;
use super::instance::unique_mac;
use super::security_group::default_group_id;
use super::subnet::{free_addresses, used_addresses};
use super::tags::{check_specs, tags_for, TagSpec};
use super::{is_reserved, ApiError, Attachment, Eni, InstanceState, State, Subnet, Txn};

/// Most security groups one ENI may have by default (AWS's quota; see [`crate::quota`]).
pub const MAX_GROUPS: usize = 5;
/// Most private addresses (primary + secondary) one ENI may hold.
pub const MAX_ADDRESSES: usize = 50;
/// Highest device index an attachment may use.
pub const MAX_DEVICE_INDEX: u32 = 15;

/// AWS's `ConnectionTrackingSpecification` of an ENI: its connection tracking idle timeouts in
/// seconds, each `None` until set (AWS's default applies: TCP established 432000, UDP stream
/// 180, UDP 30). The data plane's per-ENI connection tracking uses them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionTracking {
    /// `TcpEstablishedTimeout`.
    pub tcp_established_timeout: Option<u32>,
    /// `UdpStreamTimeout`.
    pub udp_stream_timeout: Option<u32>,
    /// `UdpTimeout`.
    pub udp_timeout: Option<u32>,
}

impl ConnectionTracking {
    /// AWS's bounds of `TcpEstablishedTimeout`.
    pub const TCP_ESTABLISHED: RangeInclusive<u32> = 60..=432_000;
    /// AWS's bounds of `UdpStreamTimeout`.
    pub const UDP_STREAM: RangeInclusive<u32> = 60..=180;
    /// AWS's bounds of `UdpTimeout`.
    pub const UDP: RangeInclusive<u32> = 30..=60;
    /// AWS's defaults (TCP established, UDP stream, UDP), shown for a timeout never set.
    pub const DEFAULTS: (u32, u32, u32) = (432_000, 180, 30);

    /// A specification from the request's integers, each checked against AWS's bounds
    /// (`InvalidParameterValue` naming the parameter and its range).
    pub fn from_request(
        tcp_established: Option<i64>,
        udp_stream: Option<i64>,
        udp: Option<i64>,
    ) -> Result<Self, ApiError> {
        fn check(
            v: Option<i64>,
            name: &str,
            range: RangeInclusive<u32>,
        ) -> Result<Option<u32>, ApiError> {
            match v {
                None => Ok(None),
                Some(n) => u32::try_from(n)
                    .ok()
                    .filter(|n| range.contains(n))
                    .map(Some)
                    .ok_or_else(|| {
                        ApiError::invalid_value(format!(
                            "The value {n} for parameter ConnectionTrackingSpecification.{name} \
                             is invalid. It must be between {} and {} seconds.",
                            range.start(),
                            range.end()
                        ))
                    }),
            }
        }
        Ok(ConnectionTracking {
            tcp_established_timeout: check(
                tcp_established,
                "TcpEstablishedTimeout",
                Self::TCP_ESTABLISHED,
            )?,
            udp_stream_timeout: check(udp_stream, "UdpStreamTimeout", Self::UDP_STREAM)?,
            udp_timeout: check(udp, "UdpTimeout", Self::UDP)?,
        })
    }

    /// True when no timeout was ever set.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// `self` with the timeouts `update` sets replaced; the others kept (a modification names
    /// only what it changes).
    pub fn updated(self, update: ConnectionTracking) -> Self {
        ConnectionTracking {
            tcp_established_timeout: update
                .tcp_established_timeout
                .or(self.tcp_established_timeout),
            udp_stream_timeout: update.udp_stream_timeout.or(self.udp_stream_timeout),
            udp_timeout: update.udp_timeout.or(self.udp_timeout),
        }
    }

    /// The timeouts in force: (TCP established, UDP stream, UDP), defaults filled in.
    pub fn effective(&self) -> (u32, u32, u32) {
        let (t, s, u) = Self::DEFAULTS;
        (
            self.tcp_established_timeout.unwrap_or(t),
            self.udp_stream_timeout.unwrap_or(s),
            self.udp_timeout.unwrap_or(u),
        )
    }
}

/// The parameters of `CreateNetworkInterface`.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// `SubnetId`.
    pub subnet_id: String,
    /// `PrivateIpAddress`.
    pub private_ip: Option<String>,
    /// `PrivateIpAddresses.N`: (address, primary).
    pub private_ips: Vec<(String, bool)>,
    /// `SecondaryPrivateIpAddressCount`.
    pub secondary_count: Option<u32>,
    /// `SecurityGroupId.N`.
    pub groups: Vec<String>,
    /// `Description`.
    pub description: Option<String>,
    /// `TagSpecifications`.
    pub tag_specs: Vec<TagSpec>,
    /// `ClientToken` (botocore sends a fresh one with every call that has none).
    pub client_token: Option<String>,
    /// `ConnectionTrackingSpecification` (checked by [`ConnectionTracking::from_request`]).
    pub connection_tracking: ConnectionTracking,
}

impl CreateRequest {
    /// The digest of every parameter but the token, to tell a retry from a reuse.
    pub fn digest(&self) -> String {
        let mut d = Digest::new("CreateNetworkInterface")
            .str(&self.subnet_id)
            .opt(self.private_ip.as_deref())
            .num(self.private_ips.len() as u64);
        for (a, primary) in &self.private_ips {
            d = d.str(a).num(u64::from(*primary));
        }
        d = d
            .num(self.secondary_count.map_or(u64::MAX, u64::from))
            .list(self.groups.iter().map(String::as_str))
            .opt(self.description.as_deref())
            .num(self.tag_specs.len() as u64);
        let c = &self.connection_tracking;
        for t in [
            c.tcp_established_timeout,
            c.udp_stream_timeout,
            c.udp_timeout,
        ] {
            d = d.num(t.map_or(u64::MAX, u64::from));
        }
        for s in &self.tag_specs {
            d = d
                .str(&s.resource_type)
                .list(s.tags.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]));
        }
        d.finish()
    }
}

fn eni_not_found(id: &str) -> ApiError {
    ApiError::not_found(
        "InvalidNetworkInterfaceID.NotFound",
        "networkInterface",
        &[id],
    )
}

/// The ENI `id`, or `InvalidNetworkInterfaceID.NotFound`.
pub fn get(state: &State, id: &str) -> Result<Eni, ApiError> {
    state
        .enis
        .get(id)
        .map(|e| (**e).clone())
        .ok_or_else(|| eni_not_found(id))
}

/// Parses `ip` as an address the ENI may take in `subnet`: inside it, not reserved.
fn parse_address(subnet: &Subnet, ip: &str) -> Result<Ipv4Addr, ApiError> {
    let addr: Ipv4Addr = ip.parse().map_err(|_| {
        ApiError::invalid_value(format!(
            "Value ({ip}) for parameter privateIpAddress is invalid."
        ))
    })?;
    if !subnet.cidr.contains(&addr) {
        return Err(ApiError::invalid_value(format!(
            "Address {addr} does not fall within the subnet's address range"
        )));
    }
    if is_reserved(&subnet.cidr, addr) {
        return Err(ApiError::invalid_value(format!(
            "Address {addr} is in subnet's reserved address range"
        )));
    }
    Ok(addr)
}

fn in_use(addr: Ipv4Addr) -> ApiError {
    ApiError::new(
        "InvalidIPAddress.InUse",
        format!("Address {addr} is in use."),
    )
}

fn insufficient(subnet_id: &str) -> ApiError {
    ApiError::new(
        "InsufficientFreeAddressesInSubnet",
        format!("There are not enough free addresses in subnet '{subnet_id}' to satisfy the requested number of addresses."),
    )
}

/// Checks `addresses` are distinct, valid in `subnet` and free; then takes `count` more free
/// ones. Returns them in order (given first).
fn pick_addresses(
    state: &State,
    subnet: &Subnet,
    given: &[String],
    count: u32,
    pending: &[Ipv4Addr],
) -> Result<Vec<Ipv4Addr>, ApiError> {
    let mut used = used_addresses(state, &subnet.id);
    for a in pending {
        used.insert(*a);
    }
    let mut out = Vec::new();
    for ip in given {
        let addr = parse_address(subnet, ip)?;
        if used.insert(addr).is_some() {
            return Err(in_use(addr));
        }
        out.push(addr);
    }
    let count = count as usize;
    if count > 0 {
        let more = free_addresses(&subnet.cidr, &used, count);
        if more.len() < count {
            return Err(insufficient(&subnet.id));
        }
        out.extend(more);
    }
    if out.len() > MAX_ADDRESSES {
        return Err(ApiError::new(
            "PrivateIpAddressLimitExceeded",
            format!("Number of private addresses will exceed limit ({MAX_ADDRESSES}) for this interface."),
        ));
    }
    Ok(out)
}

/// The primary address an ENI asks for: `PrivateIpAddress`, or the entry of
/// `PrivateIpAddresses` marked primary (they must agree; at most one is marked).
pub fn primary_address<'a>(
    private_ip: Option<&'a str>,
    private_ips: &'a [(String, bool)],
) -> Result<Option<&'a str>, ApiError> {
    let primaries: Vec<&str> = private_ips
        .iter()
        .filter(|(_, p)| *p)
        .map(|(a, _)| a.as_str())
        .collect();
    if primaries.len() > 1 {
        return Err(ApiError::new(
            "InvalidParameterValue",
            "Only one primary private IP address can be specified.",
        ));
    }
    match (private_ip, primaries.first()) {
        (Some(a), Some(b)) if a != *b => Err(ApiError::new(
            "InvalidParameterCombination",
            "The primary IP address specified in PrivateIpAddress and PrivateIpAddresses differ.",
        )),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b.copied()),
    }
}

/// The private addresses of a new ENI in `subnet`, primary first: the given primary
/// ([`primary_address`]) or a free one, the listed secondary addresses, then
/// `secondary_count` more free ones. `pending` are addresses promised to ENIs not stored yet
/// (the rest of a RunInstances launch): never picked, and refused when asked for.
pub fn choose_addresses(
    state: &State,
    subnet: &Subnet,
    private_ip: Option<&str>,
    private_ips: &[(String, bool)],
    secondary_count: Option<u32>,
    pending: &[Ipv4Addr],
) -> Result<Vec<Ipv4Addr>, ApiError> {
    let mut given: Vec<String> = Vec::new();
    if let Some(p) = primary_address(private_ip, private_ips)? {
        given.push(p.to_string());
    }
    let explicit_primary = !given.is_empty();
    for (a, primary) in private_ips {
        if !primary {
            given.push(a.clone());
        }
    }
    if !explicit_primary && !given.is_empty() {
        // Secondary addresses listed but no primary: AWS picks the primary from the subnet.
        let mut taken = used_addresses(state, &subnet.id);
        for a in given
            .iter()
            .filter_map(|a| a.parse().ok())
            .chain(pending.iter().copied())
        {
            taken.insert(a);
        }
        let first = free_addresses(&subnet.cidr, &taken, 1);
        let Some(p) = first.first() else {
            return Err(insufficient(&subnet.id));
        };
        given.insert(0, p.to_string());
    }
    let extra = secondary_count.unwrap_or(0);
    let primary_auto = u32::from(given.is_empty());
    pick_addresses(state, subnet, &given, extra + primary_auto, pending)
}

/// Checks a list of security group ids for an ENI in `vpc_id`: at most the quota (AWS's
/// default [`MAX_GROUPS`]), each an
/// existing group of that VPC. Duplicates collapse. An empty list means the VPC's `default`
/// group.
pub fn check_groups(state: &State, vpc_id: &str, ids: &[String]) -> Result<Vec<String>, ApiError> {
    if ids.is_empty() {
        return Ok(default_group_id(state, vpc_id).into_iter().collect());
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for id in ids {
        if !id.starts_with("sg-") {
            return Err(ApiError::new(
                "InvalidGroupId.Malformed",
                format!("Invalid id: \"{id}\""),
            ));
        }
        match state.security_groups.get(id) {
            None => {
                return Err(ApiError::new(
                    "InvalidGroup.NotFound",
                    format!("The security group '{id}' does not exist"),
                ))
            }
            Some(g) if g.vpc_id != vpc_id => {
                return Err(ApiError::new(
                    "InvalidParameter",
                    format!(
                    "Security group {id} and the network interface belong to different networks."
                ),
                ))
            }
            Some(_) => {}
        }
        if seen.insert(id.as_str()) {
            out.push(id.clone());
        }
    }
    if out.len() > state.quotas.groups_per_interface {
        return Err(ApiError::new(
            "SecurityGroupsPerInterfaceLimitExceeded",
            "The maximum number of security groups per interface has been reached.",
        ));
    }
    Ok(out)
}

/// `CreateNetworkInterface`: an available (unattached) ENI in a subnet. A retry with the
/// `ClientToken` of an earlier call answers with the ENI that call made (as it is now); with
/// other parameters it is `IdempotentParameterMismatch`.
pub fn create_network_interface(txn: &mut Txn, req: &CreateRequest) -> Result<Eni, ApiError> {
    let digest = req.digest();
    // The one ENI made with this token, from the index (not a scan of every ENI).
    let by_token = req
        .client_token
        .as_deref()
        .and_then(|t| txn.state.index.eni_tokens.get(t))
        .and_then(|id| txn.state.enis.get(id));
    if let Some(earlier) = replay(
        req.client_token.as_deref(),
        by_token,
        |e| ClientToken::of(&e.client_token),
        |e| e.client_token.as_ref().is_some_and(|t| t.digest == digest),
    )? {
        return Ok((**earlier).clone());
    }
    let subnet = super::subnet::get_subnet(&txn.state, &req.subnet_id).cloned()?;
    check_specs(&req.tag_specs, &["network-interface"])?;
    let tags = tags_for(&req.tag_specs, "network-interface")?;
    let addrs = choose_addresses(
        &txn.state,
        &subnet,
        req.private_ip.as_deref(),
        &req.private_ips,
        req.secondary_count,
        &[],
    )?;
    let Some((&primary, secondary)) = addrs.split_first() else {
        return Err(insufficient(&subnet.id));
    };
    let groups = check_groups(&txn.state, &subnet.vpc_id, &req.groups)?;
    let eni = Eni {
        id: new_id("eni"),
        subnet_id: subnet.id.clone(),
        vpc_id: subnet.vpc_id.clone(),
        availability_zone: subnet.availability_zone.clone(),
        private_ip: primary,
        mac: unique_mac(&txn.state),
        description: req.description.clone().unwrap_or_default(),
        source_dest_check: true,
        connection_tracking: req.connection_tracking,
        attachment: None,
        tags,
        secondary_ips: secondary.to_vec(),
        security_groups: groups,
        client_token: req.client_token.as_ref().map(|t| ClientToken {
            token: t.clone(),
            digest,
        }),
        public_ip: None,
    };
    txn.put(eni.clone());
    Ok(eni)
}

/// True when a service resource (a NAT gateway) owns the ENI: users cannot delete or attach it.
pub fn is_managed(state: &State, id: &str) -> bool {
    state.nat_gateways.values().any(|n| n.eni_id == id)
}

/// `DeleteNetworkInterface`: only an unattached ENI that no service resource owns.
pub fn delete_network_interface(txn: &mut Txn, id: &str) -> Result<(), ApiError> {
    let eni = get(&txn.state, id)?;
    if eni.attachment.is_some() || is_managed(&txn.state, id) {
        return Err(ApiError::new(
            "InvalidNetworkInterface.InUse",
            format!("Network interface '{id}' is currently in use."),
        ));
    }
    txn.delete_eni(id);
    Ok(())
}

/// `AttachNetworkInterface`: returns the new attachment id.
pub fn attach_network_interface(
    txn: &mut Txn,
    eni_id: &str,
    instance_id: &str,
    device_index: u32,
) -> Result<String, ApiError> {
    let mut eni = get(&txn.state, eni_id)?;
    let instance = txn
        .state
        .instances
        .get(instance_id)
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found("InvalidInstanceID.NotFound", "instance", &[instance_id])
        })?;
    if !matches!(
        instance.state,
        InstanceState::Running | InstanceState::Stopped | InstanceState::Pending
    ) {
        return Err(ApiError::new(
            "IncorrectInstanceState",
            format!(
                "The instance '{instance_id}' is not in a state from which a network interface can be attached."
            ),
        ));
    }
    if eni.attachment.is_some() || is_managed(&txn.state, eni_id) {
        return Err(ApiError::new(
            "InvalidNetworkInterface.InUse",
            format!("Interface: [{eni_id}] in use."),
        ));
    }
    if eni.vpc_id != instance.vpc_id {
        return Err(ApiError::invalid_value(format!(
            "The network interface '{eni_id}' and the instance '{instance_id}' belong to different networks."
        )));
    }
    if eni.availability_zone != instance.availability_zone {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "You may not attach a network interface to an instance if they are not in the same availability zone",
        ));
    }
    if device_index > MAX_DEVICE_INDEX {
        return Err(ApiError::invalid_value(format!(
            "Value ({device_index}) for parameter deviceIndex is invalid. The device index must be between 0 and {MAX_DEVICE_INDEX}."
        )));
    }
    let taken = txn.state.enis_of_instance(instance_id).any(|e| {
        e.attachment
            .as_ref()
            .is_some_and(|a| a.instance_id == instance_id && a.device_index == device_index)
    });
    if taken {
        return Err(ApiError::invalid_value(format!(
            "Instance '{instance_id}' already has an interface attached at device index '{device_index}'."
        )));
    }
    let attachment_id = new_id("eni-attach");
    eni.attachment = Some(Attachment {
        attachment_id: attachment_id.clone(),
        instance_id: instance_id.to_string(),
        host_id: instance.host_id.clone(),
        device_index,
        attach_time: txn.now,
        delete_on_termination: false,
    });
    txn.put(eni);
    Ok(attachment_id)
}

/// The ENI holding attachment `attachment_id`, or `InvalidAttachmentID.NotFound`.
pub fn by_attachment(state: &State, attachment_id: &str) -> Result<Eni, ApiError> {
    state
        .enis
        .values()
        .find(|e| {
            e.attachment
                .as_ref()
                .is_some_and(|a| a.attachment_id == attachment_id)
        })
        .map(|e| (**e).clone())
        .ok_or_else(|| {
            ApiError::not_found(
                "InvalidAttachmentID.NotFound",
                "attachment",
                &[attachment_id],
            )
        })
}

/// `DetachNetworkInterface`: the primary ENI (device index 0) cannot be detached.
pub fn detach_network_interface(txn: &mut Txn, attachment_id: &str) -> Result<(), ApiError> {
    let mut eni = by_attachment(&txn.state, attachment_id)?;
    if eni.attachment.as_ref().is_some_and(|a| a.device_index == 0) {
        return Err(ApiError::new(
            "OperationNotPermitted",
            "The network interface at device index 0 cannot be detached.",
        ));
    }
    eni.attachment = None;
    txn.put(eni);
    Ok(())
}

/// `AssignPrivateIpAddresses`: the given addresses and/or `count` free ones become secondary
/// addresses of the ENI. Returns the addresses assigned. With `allow_reassignment`, a given
/// address held as a secondary address by another ENI of the subnet moves here.
pub fn assign_private_ips(
    txn: &mut Txn,
    eni_id: &str,
    ips: &[String],
    count: Option<u32>,
    allow_reassignment: bool,
) -> Result<Vec<Ipv4Addr>, ApiError> {
    let mut eni = get(&txn.state, eni_id)?;
    if ips.is_empty() && count.is_none() {
        return Err(ApiError::new(
            "MissingParameter",
            "Either 'secondaryPrivateIpAddressCount' or 'privateIpAddress' must be specified.",
        ));
    }
    if !ips.is_empty() && count.is_some() {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "Only one of 'secondaryPrivateIpAddressCount' or 'privateIpAddress' may be specified.",
        ));
    }
    if count == Some(0) {
        return Err(ApiError::invalid_value(
            "Value (0) for parameter secondaryPrivateIpAddressCount is invalid. Expected a positive number.",
        ));
    }
    let subnet = txn
        .state
        .subnets
        .get(&eni.subnet_id)
        .cloned()
        .ok_or_else(|| ApiError::internal("ENI without subnet"))?;
    if allow_reassignment {
        // Free the given addresses where another ENI holds them as secondary addresses.
        for ip in ips {
            let Ok(addr) = ip.parse::<Ipv4Addr>() else {
                continue;
            };
            let holder = txn
                .state
                .enis
                .values()
                .find(|e| {
                    e.id != eni.id
                        && e.subnet_id == eni.subnet_id
                        && e.secondary_ips.contains(&addr)
                })
                .map(|e| (**e).clone());
            if let Some(mut other) = holder {
                other.secondary_ips.retain(|a| *a != addr);
                txn.put(other);
            }
        }
    }
    let given: Vec<String> = ips
        .iter()
        .filter(|ip| {
            // Re-assigning an address the ENI already has is a no-op, as on AWS.
            ip.parse::<Ipv4Addr>()
                .map(|a| !eni.addresses().any(|b| b == a))
                .unwrap_or(true)
        })
        .cloned()
        .collect();
    let new = pick_addresses(&txn.state, &subnet, &given, count.unwrap_or(0), &[])?;
    if eni.secondary_ips.len() + 1 + new.len() > MAX_ADDRESSES {
        return Err(ApiError::new(
            "PrivateIpAddressLimitExceeded",
            format!("Number of private addresses will exceed limit ({MAX_ADDRESSES}) for this interface."),
        ));
    }
    if new.is_empty() {
        return Ok(new);
    }
    eni.secondary_ips.extend(new.iter().copied());
    txn.put(eni);
    Ok(new)
}

/// `UnassignPrivateIpAddresses`: every address must be a secondary address of the ENI.
pub fn unassign_private_ips(txn: &mut Txn, eni_id: &str, ips: &[String]) -> Result<(), ApiError> {
    let mut eni = get(&txn.state, eni_id)?;
    if ips.is_empty() {
        return Err(ApiError::missing("PrivateIpAddress"));
    }
    let mut remove = HashSet::new();
    for ip in ips {
        let addr = ip.parse::<Ipv4Addr>().map_err(|_| {
            ApiError::invalid_value(format!(
                "Value ({ip}) for parameter privateIpAddress is invalid."
            ))
        })?;
        if addr == eni.private_ip {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!("The primary private IP address {addr} of interface {eni_id} cannot be unassigned."),
            ));
        }
        if !eni.secondary_ips.contains(&addr) {
            return Err(ApiError::invalid_value(format!(
                "Some of the specified addresses are not assigned to interface {eni_id}"
            )));
        }
        remove.insert(addr);
    }
    eni.secondary_ips.retain(|a| !remove.contains(a));
    txn.release_addresses_of_ips(eni_id, &remove);
    txn.put(eni);
    Ok(())
}

/// One change of `ModifyNetworkInterfaceAttribute` (AWS takes exactly one per call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modify {
    /// `SourceDestCheck`.
    SourceDestCheck(bool),
    /// `Description`.
    Description(String),
    /// `Groups`: replaces the security groups.
    Groups(Vec<String>),
    /// `ConnectionTrackingSpecification`: the timeouts it sets replace the ENI's.
    ConnectionTracking(ConnectionTracking),
    /// `Attachment`: the `DeleteOnTermination` of the ENI's attachment `attachment_id`.
    Attachment {
        /// `AttachmentId`: must be the ENI's current attachment.
        attachment_id: String,
        /// `DeleteOnTermination`.
        delete_on_termination: bool,
    },
}

/// `ModifyNetworkInterfaceAttribute`.
pub fn modify_attribute(txn: &mut Txn, eni_id: &str, change: Modify) -> Result<(), ApiError> {
    let mut eni = get(&txn.state, eni_id)?;
    match change {
        Modify::SourceDestCheck(v) => eni.source_dest_check = v,
        Modify::Description(d) => eni.description = d,
        Modify::ConnectionTracking(c) => {
            eni.connection_tracking = eni.connection_tracking.updated(c)
        }
        Modify::Groups(g) => {
            if g.is_empty() {
                return Err(ApiError::missing("SecurityGroupId"));
            }
            eni.security_groups = check_groups(&txn.state, &eni.vpc_id, &g)?;
        }
        Modify::Attachment {
            attachment_id,
            delete_on_termination,
        } => match eni.attachment.as_mut() {
            Some(a) if a.attachment_id == attachment_id => {
                a.delete_on_termination = delete_on_termination
            }
            _ => {
                return Err(ApiError::not_found(
                    "InvalidAttachmentID.NotFound",
                    "attachment",
                    &[&attachment_id],
                ))
            }
        },
    }
    txn.put(eni);
    Ok(())
}

/// The attributes `DescribeNetworkInterfaceAttribute` accepts.
pub const ATTRIBUTES: &[&str] = &["description", "groupSet", "sourceDestCheck", "attachment"];

/// Checks an attribute name for `DescribeNetworkInterfaceAttribute`.
pub fn check_attribute(name: &str) -> Result<(), ApiError> {
    if ATTRIBUTES.contains(&name) {
        Ok(())
    } else {
        Err(ApiError::invalid_value(format!(
            "Value ({name}) for parameter attribute is invalid. Unknown attribute."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::super::instance::{
        purge_terminated, run_instances, terminate_instances, RunRequest, TERMINATED_RETENTION_SECS,
    };
    use super::super::security_group::create_security_group;
    use super::super::subnet::{available_count, create_subnet};
    use super::super::vpc::create_vpc;
    use super::super::{host, Tags};
    use super::*;

    fn groups(e: &mut Env, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                create_security_group(&mut e.txn, &format!("g{i}"), "d", Some(&e.vpc), Tags::new())
                    .unwrap()
                    .id
            })
            .collect()
    }

    struct Env {
        txn: Txn,
        vpc: String,
        subnet: String,
    }

    fn env(cidr: &str) -> Env {
        let mut txn = Txn::new(State::new(), 1_700_000_000);
        let vpc = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let s = create_subnet(&mut txn, &vpc.id, cidr, None, Tags::new()).unwrap();
        host::register_host(&mut txn, "host-1", "198.18.0.11").unwrap();
        host::register_host(&mut txn, "host-2", "198.18.0.12").unwrap();
        Env {
            txn,
            vpc: vpc.id,
            subnet: s.id,
        }
    }

    fn create(e: &mut Env) -> Eni {
        create_network_interface(
            &mut e.txn,
            &CreateRequest {
                subnet_id: e.subnet.clone(),
                ..Default::default()
            },
        )
        .unwrap()
    }

    /// The incrementally kept index equals one rebuilt from scratch.
    fn assert_index_exact(state: &State) {
        let mut rebuilt = state.clone();
        rebuilt.rebuild_index();
        assert_eq!(state.index, rebuilt.index);
    }

    #[test]
    fn index_follows_every_address_change() {
        let mut e = env("10.0.0.0/24");
        let a = create(&mut e);
        let b = create(&mut e);
        assert_eq!(a.private_ip.to_string(), "10.0.0.4");
        assert_eq!(b.private_ip.to_string(), "10.0.0.5");
        let extra = assign_private_ips(&mut e.txn, &a.id, &[], Some(3), false).unwrap();
        assert_eq!(extra.len(), 3);
        assert_index_exact(&e.txn.state);
        unassign_private_ips(&mut e.txn, &a.id, &[extra[1].to_string()]).unwrap();
        assert_index_exact(&e.txn.state);
        delete_network_interface(&mut e.txn, &b.id).unwrap();
        assert_index_exact(&e.txn.state);
        // A token'd create: found again through the index; gone from it when deleted.
        let req = CreateRequest {
            subnet_id: e.subnet.clone(),
            client_token: Some("tok-1".into()),
            ..Default::default()
        };
        let t = create_network_interface(&mut e.txn, &req).unwrap();
        assert_eq!(create_network_interface(&mut e.txn, &req).unwrap().id, t.id);
        assert_eq!(e.txn.state.index.eni_tokens.get("tok-1"), Some(&t.id));
        assert_index_exact(&e.txn.state);
        delete_network_interface(&mut e.txn, &t.id).unwrap();
        assert!(e.txn.state.index.eni_tokens.is_empty());
        assert_index_exact(&e.txn.state);
        // Freed addresses are handed out again, lowest first.
        let c = create(&mut e);
        assert_eq!(c.private_ip.to_string(), "10.0.0.5");
        let run = RunRequest {
            min_count: 2,
            max_count: 2,
            subnet_id: e.subnet.clone(),
            client_token: Some("tok-2".into()),
            ..Default::default()
        };
        let r = run_instances(&mut e.txn, &run).unwrap();
        let again = run_instances(&mut e.txn, &run).unwrap();
        assert_eq!(again.reservation_id, r.reservation_id);
        assert_eq!(e.txn.state.index.instance_tokens["tok-2"].len(), 2);
        let ids: Vec<String> = r.instances.iter().map(|i| i.id.clone()).collect();
        terminate_instances(&mut e.txn, &ids).unwrap();
        assert_index_exact(&e.txn.state);
        let inst = launch(&mut e, "host-1");
        assert_index_exact(&e.txn.state);
        assert_eq!(e.txn.state.enis_of_instance(&inst).count(), 1);
        let att = attach_network_interface(&mut e.txn, &c.id, &inst, 1).unwrap();
        assert_eq!(e.txn.state.enis_of_instance(&inst).count(), 2);
        assert_index_exact(&e.txn.state);
        detach_network_interface(&mut e.txn, &att).unwrap();
        assert_eq!(e.txn.state.enis_of_instance(&inst).count(), 1);
        assert_index_exact(&e.txn.state);
        terminate_instances(&mut e.txn, std::slice::from_ref(&inst)).unwrap();
        assert_index_exact(&e.txn.state);
        assert_eq!(e.txn.state.index.terminated.len(), 3);
        // The purge finds it through the index once its retention is over, not before.
        let t = e.txn.now;
        let mut later = Txn::new(e.txn.state.clone(), t + TERMINATED_RETENTION_SECS - 1);
        purge_terminated(&mut later);
        assert!(later.state.instances.contains_key(&inst));
        let mut later = Txn::new(e.txn.state.clone(), t + TERMINATED_RETENTION_SECS);
        purge_terminated(&mut later);
        assert!(!later.state.instances.contains_key(&inst));
        assert!(later.state.index.terminated.is_empty());
        assert!(later.state.index.instance_tokens.is_empty());
        assert_index_exact(&later.state);
        let used = &e.txn.state.index.used_ips[&e.subnet];
        assert_eq!(used.len(), 1 + 2 + 1, "a (primary + 2 secondary) and c");
        assert!(e.txn.state.index.macs.contains(&a.mac));
        assert!(!e.txn.state.index.macs.contains(&b.mac));
    }

    fn launch(e: &mut Env, host: &str) -> String {
        let r = run_instances(
            &mut e.txn,
            &RunRequest {
                min_count: 1,
                max_count: 1,
                subnet_id: e.subnet.clone(),
                host: Some(host.into()),
                ..Default::default()
            },
        )
        .unwrap();
        r.instances[0].id.clone()
    }

    #[test]
    fn attachment_delete_on_termination_is_modified_and_honoured() {
        let mut e = env("10.0.0.0/24");
        let host1 = e.txn.state.hosts.values().next().unwrap().id.clone();
        let inst = launch(&mut e, &host1);
        let kept = create(&mut e);
        let gone = create(&mut e);
        attach_network_interface(&mut e.txn, &kept.id, &inst, 1).unwrap();
        let att_gone = attach_network_interface(&mut e.txn, &gone.id, &inst, 2).unwrap();
        let set = |txn: &mut Txn, eni: &str, att: &str, v: bool| {
            modify_attribute(
                txn,
                eni,
                Modify::Attachment {
                    attachment_id: att.to_string(),
                    delete_on_termination: v,
                },
            )
        };
        // Another interface's attachment, or one that does not exist: not found.
        for (eni, att) in [(&kept.id, att_gone.as_str()), (&gone.id, "eni-attach-0123")] {
            let err = set(&mut e.txn, eni, att, true).unwrap_err();
            assert_eq!(err.code, "InvalidAttachmentID.NotFound");
        }
        set(&mut e.txn, &gone.id, &att_gone, true).unwrap();
        let a = e.txn.state.enis[&gone.id].attachment.clone().unwrap();
        assert!(a.delete_on_termination);
        // The primary interface may be kept too.
        let primary = e
            .txn
            .state
            .enis_of_instance(&inst)
            .find(|x| x.attachment.as_ref().unwrap().device_index == 0)
            .unwrap()
            .clone();
        let att0 = primary.attachment.as_ref().unwrap().attachment_id.clone();
        set(&mut e.txn, &primary.id, &att0, false).unwrap();
        terminate_instances(&mut e.txn, std::slice::from_ref(&inst)).unwrap();
        assert!(
            !e.txn.state.enis.contains_key(&gone.id),
            "deleted with the instance"
        );
        assert!(
            e.txn.state.enis[&kept.id].attachment.is_none(),
            "detached and kept"
        );
        assert!(
            e.txn.state.enis[&primary.id].attachment.is_none(),
            "kept: DeleteOnTermination off"
        );
    }

    fn avail(e: &Env) -> u64 {
        available_count(&e.txn.state, &e.txn.state.subnets[&e.subnet])
    }

    #[test]
    fn create_picks_addresses_and_counts_them() {
        let mut e = env("10.0.0.0/24");
        let a = create(&mut e);
        assert_eq!(a.private_ip, Ipv4Addr::new(10, 0, 0, 4));
        assert!(a.attachment.is_none());
        assert!(a.mac.starts_with("02:"));
        let default = default_group_id(&e.txn.state, &e.vpc).unwrap();
        assert_eq!(a.security_groups, vec![default], "the VPC's default group");
        assert_eq!(avail(&e), 250);
        let g = groups(&mut e, 1);
        let b = create_network_interface(
            &mut e.txn,
            &CreateRequest {
                subnet_id: e.subnet.clone(),
                private_ip: Some("10.0.0.50".into()),
                secondary_count: Some(2),
                description: Some("db".into()),
                groups: vec![g[0].clone(), g[0].clone()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(b.private_ip, Ipv4Addr::new(10, 0, 0, 50));
        assert_eq!(
            b.secondary_ips,
            vec![Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 6)]
        );
        assert_eq!(b.description, "db");
        assert_eq!(b.security_groups, g);
        assert_eq!(avail(&e), 247);
        // Listed addresses with an explicit primary.
        let c = create_network_interface(
            &mut e.txn,
            &CreateRequest {
                subnet_id: e.subnet.clone(),
                private_ips: vec![("10.0.0.61".into(), false), ("10.0.0.60".into(), true)],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.private_ip, Ipv4Addr::new(10, 0, 0, 60));
        assert_eq!(c.secondary_ips, vec![Ipv4Addr::new(10, 0, 0, 61)]);
        assert_eq!(avail(&e), 245);
    }

    #[test]
    fn client_token_makes_create_idempotent() {
        let mut e = env("10.0.0.0/24");
        let req = CreateRequest {
            subnet_id: e.subnet.clone(),
            secondary_count: Some(1),
            description: Some("db".into()),
            client_token: Some("eni-tok-1".into()),
            ..Default::default()
        };
        let first = create_network_interface(&mut e.txn, &req).unwrap();
        assert_eq!(first.client_token.as_ref().unwrap().token, "eni-tok-1");
        e.txn.writes.clear();
        let again = create_network_interface(&mut e.txn, &req).unwrap();
        assert_eq!(again, first);
        assert!(e.txn.writes.is_empty(), "a retry writes nothing");
        assert_eq!(avail(&e), 249, "and takes no address");
        // A retry after a change of attributes still answers with the ENI.
        modify_attribute(&mut e.txn, &first.id, Modify::Description("x".into())).unwrap();
        assert_eq!(
            create_network_interface(&mut e.txn, &req).unwrap().id,
            first.id
        );
        for other in [
            CreateRequest {
                description: Some("web".into()),
                ..req.clone()
            },
            CreateRequest {
                secondary_count: None,
                ..req.clone()
            },
            CreateRequest {
                private_ip: Some("10.0.0.99".into()),
                ..req.clone()
            },
        ] {
            assert_eq!(
                create_network_interface(&mut e.txn, &other)
                    .unwrap_err()
                    .code,
                "IdempotentParameterMismatch"
            );
        }
        assert_eq!(e.txn.state.enis.len(), 1);
        // Once the ENI is deleted its token is free again.
        delete_network_interface(&mut e.txn, &first.id).unwrap();
        let fresh = create_network_interface(&mut e.txn, &req).unwrap();
        assert_ne!(fresh.id, first.id);
    }

    #[test]
    fn raised_group_quota() {
        let mut e = env("10.0.0.0/24");
        let code = |e: &mut Env, r: CreateRequest| {
            create_network_interface(&mut e.txn, &r).unwrap_err().code
        };
        let base = CreateRequest {
            subnet_id: e.subnet.clone(),
            ..Default::default()
        };
        // A raised quota (the server's --sgs-per-interface) admits more.
        e.txn.state.quotas = crate::quota::Quotas::new(60, 8).unwrap();
        let nine: Vec<String> = (0..9)
            .map(|i| {
                let name = format!("quota{i}");
                create_security_group(&mut e.txn, &name, "d", Some(&e.vpc), Tags::new())
                    .unwrap()
                    .id
            })
            .collect();
        let mut eight = base.clone();
        eight.groups = nine[..8].to_vec();
        let made = create_network_interface(&mut e.txn, &eight).unwrap();
        assert_eq!(made.security_groups.len(), 8);
        eight.groups = nine;
        assert_eq!(
            code(&mut e, eight),
            "SecurityGroupsPerInterfaceLimitExceeded"
        );
    }

    #[test]
    fn create_refusals() {
        let mut e = env("10.0.0.0/28");
        let code = |e: &mut Env, r: CreateRequest| {
            create_network_interface(&mut e.txn, &r).unwrap_err().code
        };
        let base = CreateRequest {
            subnet_id: e.subnet.clone(),
            ..Default::default()
        };
        let with_ip = |ip: &str| CreateRequest {
            private_ip: Some(ip.into()),
            ..base.clone()
        };
        assert_eq!(code(&mut e, with_ip("10.0.0.1")), "InvalidParameterValue");
        assert_eq!(code(&mut e, with_ip("10.0.1.5")), "InvalidParameterValue");
        assert_eq!(code(&mut e, with_ip("bogus")), "InvalidParameterValue");
        create_network_interface(&mut e.txn, &with_ip("10.0.0.5")).unwrap();
        assert_eq!(code(&mut e, with_ip("10.0.0.5")), "InvalidIPAddress.InUse");
        let mut too_many = base.clone();
        too_many.groups = groups(&mut e, 6);
        assert_eq!(
            code(&mut e, too_many),
            "SecurityGroupsPerInterfaceLimitExceeded"
        );
        let mut unknown = base.clone();
        unknown.groups = vec!["sg-0123456789abcdef0".into()];
        assert_eq!(code(&mut e, unknown), "InvalidGroup.NotFound");
        let mut malformed = base.clone();
        malformed.groups = vec!["web".into()];
        assert_eq!(code(&mut e, malformed), "InvalidGroupId.Malformed");
        // A /28 has 11 addresses; one is used.
        let mut big = base.clone();
        big.secondary_count = Some(10);
        assert_eq!(code(&mut e, big), "InsufficientFreeAddressesInSubnet");
        let mut missing = base.clone();
        missing.subnet_id = "subnet-0123456789abcdef0".into();
        assert_eq!(code(&mut e, missing), "InvalidSubnetID.NotFound");
        assert_eq!(avail(&e), 10, "refusals took nothing");
    }

    #[test]
    fn attach_detach_and_delete() {
        let mut e = env("10.0.0.0/24");
        let i1 = launch(&mut e, "host-1");
        let eni = create(&mut e);
        let att = attach_network_interface(&mut e.txn, &eni.id, &i1, 1).unwrap();
        assert!(att.starts_with("eni-attach-"));
        let stored = &e.txn.state.enis[&eni.id];
        let a = stored.attachment.as_ref().unwrap();
        assert_eq!(a.instance_id, i1);
        assert_eq!(a.device_index, 1);
        assert_eq!(
            e.txn.state.hosts[&a.host_id].name, "host-1",
            "the ENI lives where its instance is"
        );
        assert_eq!(
            delete_network_interface(&mut e.txn, &eni.id)
                .unwrap_err()
                .code,
            "InvalidNetworkInterface.InUse"
        );
        let other = create(&mut e);
        let code = |e: &mut Env, eni: &str, i: &str, d: u32| {
            attach_network_interface(&mut e.txn, eni, i, d)
                .unwrap_err()
                .code
        };
        assert_eq!(code(&mut e, &other.id, &i1, 1), "InvalidParameterValue");
        assert_eq!(
            code(&mut e, &eni.id, &i1, 2),
            "InvalidNetworkInterface.InUse"
        );
        assert_eq!(
            code(&mut e, &other.id, "i-0123456789abcdef0", 2),
            "InvalidInstanceID.NotFound"
        );
        assert_eq!(
            code(&mut e, "eni-0123456789abcdef0", &i1, 2),
            "InvalidNetworkInterfaceID.NotFound"
        );
        // Another VPC, another AZ.
        let vpc2 = create_vpc(&mut e.txn, "10.1.0.0/16", None, Tags::new()).unwrap();
        let s2 = create_subnet(&mut e.txn, &vpc2.id, "10.1.0.0/24", None, Tags::new()).unwrap();
        let foreign = create_network_interface(
            &mut e.txn,
            &CreateRequest {
                subnet_id: s2.id,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(code(&mut e, &foreign.id, &i1, 2), "InvalidParameterValue");
        let s3 = create_subnet(
            &mut e.txn,
            &e.vpc,
            "10.0.9.0/24",
            Some("us-east-1b"),
            Tags::new(),
        )
        .unwrap();
        let far = create_network_interface(
            &mut e.txn,
            &CreateRequest {
                subnet_id: s3.id,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(code(&mut e, &far.id, &i1, 2), "InvalidParameterCombination");

        // The primary ENI cannot be detached; the extra one can, then deleted.
        let primary = e.txn.state.instances[&i1].eni_id.clone();
        let primary_att = e.txn.state.enis[&primary]
            .attachment
            .as_ref()
            .unwrap()
            .attachment_id
            .clone();
        assert_eq!(
            detach_network_interface(&mut e.txn, &primary_att)
                .unwrap_err()
                .code,
            "OperationNotPermitted"
        );
        assert_eq!(
            detach_network_interface(&mut e.txn, "eni-attach-0123456789abcdef0")
                .unwrap_err()
                .code,
            "InvalidAttachmentID.NotFound"
        );
        detach_network_interface(&mut e.txn, &att).unwrap();
        assert!(e.txn.state.enis[&eni.id].attachment.is_none());
        delete_network_interface(&mut e.txn, &eni.id).unwrap();
        assert!(!e.txn.state.enis.contains_key(&eni.id));
    }

    #[test]
    fn terminate_detaches_extra_enis_and_deletes_the_primary() {
        let mut e = env("10.0.0.0/24");
        let i1 = launch(&mut e, "host-1");
        let eni = create(&mut e);
        attach_network_interface(&mut e.txn, &eni.id, &i1, 1).unwrap();
        let primary = e.txn.state.instances[&i1].eni_id.clone();
        terminate_instances(&mut e.txn, std::slice::from_ref(&i1)).unwrap();
        assert!(!e.txn.state.enis.contains_key(&primary));
        assert!(e.txn.state.enis[&eni.id].attachment.is_none());
    }

    #[test]
    fn secondary_addresses() {
        let mut e = env("10.0.0.0/24");
        let i1 = launch(&mut e, "host-1");
        let eni_id = e.txn.state.instances[&i1].eni_id.clone();
        assert_eq!(avail(&e), 250);
        let got =
            assign_private_ips(&mut e.txn, &eni_id, &["10.0.0.77".into()], None, false).unwrap();
        assert_eq!(got, vec![Ipv4Addr::new(10, 0, 0, 77)]);
        let got = assign_private_ips(&mut e.txn, &eni_id, &[], Some(2), false).unwrap();
        assert_eq!(
            got,
            vec![Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 6)]
        );
        assert_eq!(avail(&e), 247);
        // Assigning an address the ENI already has changes nothing.
        assert!(
            assign_private_ips(&mut e.txn, &eni_id, &["10.0.0.77".into()], None, false)
                .unwrap()
                .is_empty()
        );

        let other = create(&mut e);
        let code = |e: &mut Env, ips: &[&str], n: Option<u32>| {
            let ips: Vec<String> = ips.iter().map(|s| s.to_string()).collect();
            assign_private_ips(&mut e.txn, &other.id, &ips, n, false)
                .unwrap_err()
                .code
        };
        assert_eq!(code(&mut e, &["10.0.0.77"], None), "InvalidIPAddress.InUse");
        assert_eq!(code(&mut e, &["10.0.0.4"], None), "InvalidIPAddress.InUse");
        assert_eq!(code(&mut e, &["10.0.0.255"], None), "InvalidParameterValue");
        assert_eq!(code(&mut e, &[], None), "MissingParameter");
        assert_eq!(
            code(&mut e, &["10.0.0.90"], Some(1)),
            "InvalidParameterCombination"
        );
        assert_eq!(
            code(&mut e, &[], Some(300)),
            "InsufficientFreeAddressesInSubnet"
        );
        // With reassignment the address moves.
        assign_private_ips(&mut e.txn, &other.id, &["10.0.0.77".into()], None, true).unwrap();
        assert!(!e.txn.state.enis[&eni_id]
            .secondary_ips
            .contains(&Ipv4Addr::new(10, 0, 0, 77)));
        assert_eq!(
            e.txn.state.enis[&other.id].secondary_ips,
            vec![Ipv4Addr::new(10, 0, 0, 77)]
        );

        // Unassign.
        let un = |e: &mut Env, ips: &[&str]| {
            let ips: Vec<String> = ips.iter().map(|s| s.to_string()).collect();
            unassign_private_ips(&mut e.txn, &eni_id, &ips)
        };
        let primary = e.txn.state.enis[&eni_id].private_ip.to_string();
        assert_eq!(
            un(&mut e, &[&primary]).unwrap_err().code,
            "InvalidParameterValue"
        );
        assert_eq!(
            un(&mut e, &["10.0.0.77"]).unwrap_err().code,
            "InvalidParameterValue"
        );
        assert_eq!(un(&mut e, &[]).unwrap_err().code, "MissingParameter");
        un(&mut e, &["10.0.0.5", "10.0.0.6"]).unwrap();
        assert!(e.txn.state.enis[&eni_id].secondary_ips.is_empty());
        assert_eq!(avail(&e), 248);
    }

    #[test]
    fn connection_tracking_bounds_and_modification() {
        let ok = ConnectionTracking::from_request(Some(60), Some(180), Some(30)).unwrap();
        assert_eq!(ok.effective(), (60, 180, 30));
        assert_eq!(
            ConnectionTracking::from_request(Some(432_000), None, Some(60))
                .unwrap()
                .effective(),
            (432_000, 180, 60)
        );
        for (t, s, u, name) in [
            (Some(59), None, None, "TcpEstablishedTimeout"),
            (Some(432_001), None, None, "TcpEstablishedTimeout"),
            (Some(-1), None, None, "TcpEstablishedTimeout"),
            (None, Some(59), None, "UdpStreamTimeout"),
            (None, Some(181), None, "UdpStreamTimeout"),
            (None, None, Some(29), "UdpTimeout"),
            (None, None, Some(61), "UdpTimeout"),
            (None, None, Some(i64::MAX), "UdpTimeout"),
        ] {
            let err = ConnectionTracking::from_request(t, s, u).unwrap_err();
            assert_eq!(err.code, "InvalidParameterValue");
            assert!(err.message.contains(name), "{name}: {}", err.message);
        }

        let mut e = env("10.0.0.0/24");
        let eni = create(&mut e);
        assert!(e.txn.state.enis[&eni.id].connection_tracking.is_default());
        let set = |t, s, u| {
            Modify::ConnectionTracking(ConnectionTracking {
                tcp_established_timeout: t,
                udp_stream_timeout: s,
                udp_timeout: u,
            })
        };
        modify_attribute(&mut e.txn, &eni.id, set(Some(3600), None, Some(45))).unwrap();
        // A later modification changes only what it names.
        modify_attribute(&mut e.txn, &eni.id, set(None, Some(90), Some(40))).unwrap();
        let c = e.txn.state.enis[&eni.id].connection_tracking;
        assert_eq!(c.effective(), (3600, 90, 40));
        assert_eq!(c.tcp_established_timeout, Some(3600));
    }

    #[test]
    fn attributes() {
        let mut e = env("10.0.0.0/24");
        let eni = create(&mut e);
        modify_attribute(&mut e.txn, &eni.id, Modify::SourceDestCheck(false)).unwrap();
        modify_attribute(&mut e.txn, &eni.id, Modify::Description("x".into())).unwrap();
        let g = groups(&mut e, 6);
        modify_attribute(&mut e.txn, &eni.id, Modify::Groups(g[..2].to_vec())).unwrap();
        let s = &e.txn.state.enis[&eni.id];
        assert!(!s.source_dest_check);
        assert_eq!(s.description, "x");
        assert_eq!(s.security_groups, g[..2].to_vec());
        let six = Modify::Groups(g.clone());
        assert_eq!(
            modify_attribute(&mut e.txn, &eni.id, six).unwrap_err().code,
            "SecurityGroupsPerInterfaceLimitExceeded"
        );
        assert_eq!(
            modify_attribute(
                &mut e.txn,
                "eni-0123456789abcdef0",
                Modify::SourceDestCheck(true)
            )
            .unwrap_err()
            .code,
            "InvalidNetworkInterfaceID.NotFound"
        );
        assert!(check_attribute("sourceDestCheck").is_ok());
        assert_eq!(
            check_attribute("bogus").unwrap_err().code,
            "InvalidParameterValue"
        );
    }

    #[test]
    fn a_nat_gateways_interface_is_not_the_users() {
        let mut e = env("10.0.0.0/24");
        let i1 = launch(&mut e, "host-1");
        let nat = super::super::nat_gateway::create_nat_gateway(
            &mut e.txn,
            &super::super::nat_gateway::CreateRequest {
                subnet_id: e.subnet.clone(),
                connectivity_type: Some("private".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(is_managed(&e.txn.state, &nat.eni_id));
        assert_eq!(
            delete_network_interface(&mut e.txn, &nat.eni_id)
                .unwrap_err()
                .code,
            "InvalidNetworkInterface.InUse"
        );
        assert_eq!(
            attach_network_interface(&mut e.txn, &nat.eni_id, &i1, 1)
                .unwrap_err()
                .code,
            "InvalidNetworkInterface.InUse"
        );
    }
}
