//! Elastic IPs: addresses allocated from the documentation range 203.0.113.0/24 (the lab's
//! "internet"), associated with a private address of a network interface (an instance means its
//! primary interface) in a VPC that has an internet gateway, released only when not associated.
//!
//! The same pool also feeds the public IPv4 addresses AWS assigns automatically to instances
//! (`MapPublicIpOnLaunch`, `AssociatePublicIpAddress`; stored on the primary ENI, see
//! [`super::instance::assign_public_ip`]): [`in_use`] counts both kinds, so an Elastic IP and an
//! automatic address never share an address. The data plane translates them at the edge of
//! the host holding their ENI (`softvpc-engine::edge`, ARCHITECTURE.md "The edge").

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::filter::Filterable;
use super::ids::new_id;
use super::{ApiError, InstanceState, State, Tags, Txn};

/// The first address handed out (the low addresses of 203.0.113.0/24 are left to the lab's
/// internet stand-ins).
pub const POOL_FIRST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 16);
/// The last address handed out.
pub const POOL_LAST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);

/// An Elastic IP (`eipalloc-`), domain `vpc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// `eipalloc-...`.
    pub allocation_id: String,
    /// The public address, from the pool.
    pub public_ip: Ipv4Addr,
    /// Where it points, if associated.
    pub association: Option<AddressAssociation>,
    /// Its tags.
    pub tags: Tags,
}

/// Where an Elastic IP points: a private address of a network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressAssociation {
    /// `eipassoc-`.
    pub id: String,
    /// The ENI it is associated with.
    pub network_interface_id: String,
    /// The private address of that ENI it maps to.
    pub private_ip: Ipv4Addr,
}

impl Address {
    /// The instance the associated interface is attached to, if any.
    pub fn instance_id(&self, state: &State) -> Option<String> {
        let a = self.association.as_ref()?;
        let eni = state.enis.get(&a.network_interface_id)?;
        eni.attachment.as_ref().map(|t| t.instance_id.clone())
    }
}

impl Txn {
    /// Disassociates the Elastic IPs on private addresses an interface gives up.
    pub fn release_addresses_of_ips(
        &mut self,
        eni_id: &str,
        ips: &std::collections::HashSet<Ipv4Addr>,
    ) {
        let held: Vec<Address> = self
            .state
            .addresses
            .values()
            .filter(|a| {
                a.association.as_ref().is_some_and(|s| {
                    s.network_interface_id == eni_id && ips.contains(&s.private_ip)
                })
            })
            .map(|a| (**a).clone())
            .collect();
        for mut a in held {
            a.association = None;
            self.put(a);
        }
    }

    /// Disassociates every Elastic IP of a network interface that is going away (AWS does the
    /// same when an interface or its instance is deleted).
    pub fn release_addresses_of_eni(&mut self, eni_id: &str) {
        let held: Vec<Address> = self
            .state
            .addresses
            .values()
            .filter(|a| {
                a.association
                    .as_ref()
                    .is_some_and(|s| s.network_interface_id == eni_id)
            })
            .map(|a| (**a).clone())
            .collect();
        for mut a in held {
            a.association = None;
            self.put(a);
        }
    }
}

/// `InvalidAllocationID.NotFound` for `id`.
pub fn allocation_not_found(id: &str) -> ApiError {
    ApiError::not_found("InvalidAllocationID.NotFound", "allocation", &[id])
}

/// True when an Elastic IP is associated with an interface in `vpc_id`.
pub fn vpc_has_mapped_addresses(state: &State, vpc_id: &str) -> bool {
    state.addresses.values().any(|a| {
        a.association.as_ref().is_some_and(|s| {
            state
                .enis
                .get(&s.network_interface_id)
                .is_some_and(|e| e.vpc_id == vpc_id)
        })
    })
}

/// Every address of the pool taken: Elastic IPs and automatically assigned public IPs.
pub fn in_use(state: &State) -> std::collections::HashSet<Ipv4Addr> {
    state
        .addresses
        .values()
        .map(|a| a.public_ip)
        .chain(state.enis.values().filter_map(|e| e.public_ip))
        .collect()
}

/// The lowest free address of the pool, if any.
fn lowest_free(state: &State) -> Option<Ipv4Addr> {
    let used = in_use(state);
    (u32::from(POOL_FIRST)..=u32::from(POOL_LAST))
        .map(Ipv4Addr::from)
        .find(|ip| !used.contains(ip))
}

/// An address for an automatically assigned public IP: the lowest free one of the pool, or
/// AWS's `InsufficientAddressCapacity` when the pool is exhausted.
pub fn take_public_ip(state: &State) -> Result<Ipv4Addr, ApiError> {
    lowest_free(state).ok_or_else(|| {
        ApiError::new(
            "InsufficientAddressCapacity",
            "Not enough available addresses to satisfy your minimum request. Reduce the number of addresses you are requesting or wait for additional capacity to become available.",
        )
    })
}

/// `AllocateAddress` (domain `vpc`): the lowest free address of the pool.
pub fn allocate_address(
    txn: &mut Txn,
    domain: Option<&str>,
    tags: Tags,
) -> Result<Address, ApiError> {
    if let Some(d) = domain {
        if d != "vpc" && d != "standard" {
            return Err(ApiError::invalid_value(format!(
                "Value ({d}) for parameter domain is invalid."
            )));
        }
    }
    let ip = lowest_free(&txn.state).ok_or_else(|| {
        ApiError::new(
            "AddressLimitExceeded",
            "The maximum number of addresses has been reached.",
        )
    })?;
    let address = Address {
        allocation_id: new_id("eipalloc"),
        public_ip: ip,
        association: None,
        tags,
    };
    txn.put(address.clone());
    Ok(address)
}

/// Finds an address by allocation id, or else by public IP.
pub fn find_address(
    state: &State,
    allocation_id: Option<&str>,
    public_ip: Option<&str>,
) -> Result<Address, ApiError> {
    if let Some(id) = allocation_id {
        return state
            .addresses
            .get(id)
            .map(|a| (**a).clone())
            .ok_or_else(|| allocation_not_found(id));
    }
    let Some(ip) = public_ip else {
        return Err(ApiError::missing("AllocationId"));
    };
    state
        .addresses
        .values()
        .find(|a| a.public_ip.to_string() == ip)
        .map(|a| (**a).clone())
        .ok_or_else(|| {
            ApiError::new(
                "InvalidAddress.NotFound",
                format!("Address '{ip}' not found."),
            )
        })
}

/// `ReleaseAddress`: refused while associated.
pub fn release_address(
    txn: &mut Txn,
    allocation_id: Option<&str>,
    public_ip: Option<&str>,
) -> Result<(), ApiError> {
    let a = find_address(&txn.state, allocation_id, public_ip)?;
    if a.association.is_some() {
        return Err(ApiError::new(
            "InvalidIPAddress.InUse",
            format!("Address {} is in use.", a.public_ip),
        ));
    }
    txn.delete::<Address>(&a.allocation_id);
    Ok(())
}

/// The parameters of `AssociateAddress`.
#[derive(Debug, Clone, Default)]
pub struct AssociateRequest {
    /// `AllocationId`.
    pub allocation_id: Option<String>,
    /// `PublicIp`.
    pub public_ip: Option<String>,
    /// `InstanceId`.
    pub instance_id: Option<String>,
    /// `NetworkInterfaceId`.
    pub network_interface_id: Option<String>,
    /// `PrivateIpAddress`.
    pub private_ip: Option<String>,
    /// `AllowReassociation`.
    pub allow_reassociation: bool,
}

/// `AssociateAddress`: returns the association id. An address already associated elsewhere
/// needs `AllowReassociation`; an address already on the same private IP is replaced.
pub fn associate_address(txn: &mut Txn, req: &AssociateRequest) -> Result<String, ApiError> {
    let mut address = find_address(
        &txn.state,
        req.allocation_id.as_deref(),
        req.public_ip.as_deref(),
    )?;
    let eni_id = match (&req.instance_id, &req.network_interface_id) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                "InvalidParameterCombination",
                "You may specify either an instance or a network interface, not both.",
            ))
        }
        (None, None) => {
            return Err(ApiError::missing("InstanceId or NetworkInterfaceId"));
        }
        (Some(i), None) => {
            let inst = txn.state.instances.get(i).ok_or_else(|| {
                ApiError::not_found("InvalidInstanceID.NotFound", "instance", &[i])
            })?;
            if inst.state == InstanceState::Terminated {
                return Err(ApiError::new(
                    "IncorrectInstanceState",
                    format!("The instance '{i}' is not in a valid state for this operation."),
                ));
            }
            inst.eni_id.clone()
        }
        (None, Some(e)) => e.clone(),
    };
    let eni = txn.state.enis.get(&eni_id).cloned().ok_or_else(|| {
        ApiError::not_found(
            "InvalidNetworkInterfaceID.NotFound",
            "networkInterface",
            &[eni_id.as_str()],
        )
    })?;
    let private_ip = match &req.private_ip {
        None => eni.private_ip,
        Some(p) => {
            let ip: Ipv4Addr = p.parse().map_err(|_| {
                ApiError::invalid_value(format!(
                    "Value ({p}) for parameter privateIpAddress is invalid."
                ))
            })?;
            if !eni.addresses().any(|a| a == ip) {
                return Err(ApiError::invalid_value(format!(
                    "The private IP address {ip} is not assigned to network interface {eni_id}"
                )));
            }
            ip
        }
    };
    if super::internet_gateway::igw_of_vpc(&txn.state, &eni.vpc_id).is_none() {
        return Err(ApiError::new(
            "Gateway.NotAttached",
            format!(
                "Network {} is not attached to any internet gateway.",
                eni.vpc_id
            ),
        ));
    }
    if let Some(cur) = &address.association {
        let same = cur.network_interface_id == eni_id && cur.private_ip == private_ip;
        if !same && !req.allow_reassociation {
            return Err(ApiError::new(
                "Resource.AlreadyAssociated",
                format!(
                    "resource {} is already associated with associate-id {}",
                    address.allocation_id, cur.id
                ),
            ));
        }
    }
    // Another address on the same private IP is disassociated (one public IP per private IP).
    let displaced: Vec<Address> = txn
        .state
        .addresses
        .values()
        .filter(|a| a.allocation_id != address.allocation_id)
        .filter(|a| {
            a.association
                .as_ref()
                .is_some_and(|s| s.network_interface_id == eni_id && s.private_ip == private_ip)
        })
        .map(|a| (**a).clone())
        .collect();
    for mut d in displaced {
        d.association = None;
        txn.put(d);
    }
    let moved_from = address
        .association
        .as_ref()
        .map(|c| c.network_interface_id.clone())
        .filter(|e| *e != eni_id);
    let id = new_id("eipassoc");
    address.association = Some(AddressAssociation {
        id: id.clone(),
        network_interface_id: eni_id.clone(),
        private_ip,
    });
    txn.put(address);
    // The Elastic IP replaces an automatic public IP on the same private address.
    super::instance::release_public_ip(txn, &eni_id, Some(private_ip));
    // An address taken from another interface may leave that instance a new public IP.
    if let Some(old) = moved_from {
        super::instance::refill_public_ip(txn, &old)?;
    }
    Ok(id)
}

/// `DisassociateAddress` by association id (or public IP).
pub fn disassociate_address(
    txn: &mut Txn,
    association_id: Option<&str>,
    public_ip: Option<&str>,
) -> Result<(), ApiError> {
    let mut address = match association_id {
        Some(id) => txn
            .state
            .addresses
            .values()
            .find(|a| a.association.as_ref().is_some_and(|s| s.id == id))
            .map(|a| (**a).clone())
            .ok_or_else(|| {
                ApiError::not_found("InvalidAssociationID.NotFound", "association", &[id])
            })?,
        None => {
            let Some(ip) = public_ip else {
                return Err(ApiError::missing("AssociationId"));
            };
            let a = find_address(&txn.state, None, Some(ip))?;
            if a.association.is_none() {
                return Err(ApiError::new(
                    "InvalidAssociationID.NotFound",
                    format!("The address '{ip}' is not associated"),
                ));
            }
            a
        }
    };
    if let Some(s) = &address.association {
        let nat = txn
            .state
            .nat_gateways
            .values()
            .find(|n| n.eni_id == s.network_interface_id);
        if let Some(n) = nat {
            return Err(ApiError::new(
                "OperationNotPermitted",
                format!(
                    "The association {} belongs to NAT gateway {} and cannot be removed; delete the NAT gateway instead.",
                    s.id, n.id
                ),
            ));
        }
    }
    let left = address
        .association
        .take()
        .map(|s| s.network_interface_id.clone());
    txn.put(address);
    if let Some(eni_id) = left {
        super::instance::refill_public_ip(txn, &eni_id)?;
    }
    Ok(())
}

impl Filterable for Address {
    const FILTERS: &'static [&'static str] = &[
        "allocation-id",
        "association-id",
        "domain",
        "instance-id",
        "network-interface-id",
        "network-interface-owner-id",
        "private-ip-address",
        "public-ip",
        "network-border-group",
    ];

    fn field(&self, state: &State, name: &str) -> Vec<String> {
        let assoc = self.association.as_ref();
        match name {
            "allocation-id" => vec![self.allocation_id.clone()],
            "association-id" => assoc.map(|a| a.id.clone()).into_iter().collect(),
            "domain" => vec!["vpc".into()],
            "instance-id" => self.instance_id(state).into_iter().collect(),
            "network-interface-id" => assoc
                .map(|a| a.network_interface_id.clone())
                .into_iter()
                .collect(),
            "network-interface-owner-id" => assoc
                .map(|_| super::OWNER_ID.to_string())
                .into_iter()
                .collect(),
            "private-ip-address" => assoc
                .map(|a| a.private_ip.to_string())
                .into_iter()
                .collect(),
            "public-ip" => vec![self.public_ip.to_string()],
            "network-border-group" => vec!["us-east-1".into()],
            _ => Vec::new(),
        }
    }

    fn tag_map(&self) -> Tags {
        self.tags.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::super::filter::{matches, Filter};
    use super::super::host::register_host;
    use super::super::instance::{run_instances, terminate_instances, RunRequest};
    use super::super::internet_gateway::{
        attach_internet_gateway, create_internet_gateway, detach_internet_gateway,
    };
    use super::super::subnet::create_subnet;
    use super::super::vpc::create_vpc;
    use super::*;

    #[test]
    fn allocate_associate_release() {
        let mut txn = Txn::new(State::new(), 0);
        let vpc = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let s = create_subnet(&mut txn, &vpc.id, "10.0.1.0/24", None, Tags::new()).unwrap();
        register_host(&mut txn, "host-1", "198.18.0.11").unwrap();
        let r = run_instances(
            &mut txn,
            &RunRequest {
                min_count: 1,
                max_count: 1,
                subnet_id: s.id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
        let inst = r.instances[0].clone();
        let a = allocate_address(&mut txn, Some("vpc"), Tags::new()).unwrap();
        let b = allocate_address(&mut txn, None, Tags::new()).unwrap();
        assert_eq!(a.public_ip, POOL_FIRST);
        assert_eq!(u32::from(b.public_ip), u32::from(POOL_FIRST) + 1);
        assert!(a.allocation_id.starts_with("eipalloc-"));
        let by_instance = AssociateRequest {
            allocation_id: Some(a.allocation_id.clone()),
            instance_id: Some(inst.id.clone()),
            ..Default::default()
        };
        // No internet gateway yet.
        assert_eq!(
            associate_address(&mut txn, &by_instance).unwrap_err().code,
            "Gateway.NotAttached"
        );
        let igw = create_internet_gateway(&mut txn, Tags::new()).unwrap();
        attach_internet_gateway(&mut txn, &igw.id, &vpc.id).unwrap();
        let assoc = associate_address(&mut txn, &by_instance).unwrap();
        assert!(assoc.starts_with("eipassoc-"));
        let stored = txn.state.addresses[&a.allocation_id].clone();
        assert_eq!(
            stored.instance_id(&txn.state).as_deref(),
            Some(inst.id.as_str())
        );
        assert_eq!(
            stored.association.as_ref().unwrap().network_interface_id,
            inst.eni_id
        );
        let f = |n: &str, v: &str| Filter {
            name: n.into(),
            values: vec![v.into()],
        };
        assert!(matches(&*stored, &txn.state, &[f("instance-id", &inst.id)]));
        assert!(matches(
            &*stored,
            &txn.state,
            &[f("association-id", &assoc)]
        ));
        // In use: cannot release, cannot detach the gateway, cannot move without permission.
        assert_eq!(
            release_address(&mut txn, Some(&a.allocation_id), None)
                .unwrap_err()
                .code,
            "InvalidIPAddress.InUse"
        );
        assert_eq!(
            detach_internet_gateway(&mut txn, &igw.id, &vpc.id)
                .unwrap_err()
                .code,
            "DependencyViolation"
        );
        let bad_ip = AssociateRequest {
            allocation_id: Some(b.allocation_id.clone()),
            network_interface_id: Some(inst.eni_id.clone()),
            private_ip: Some("10.0.1.99".into()),
            ..Default::default()
        };
        assert_eq!(
            associate_address(&mut txn, &bad_ip).unwrap_err().code,
            "InvalidParameterValue"
        );
        // b on the same private IP displaces a.
        let by_eni = AssociateRequest {
            private_ip: None,
            ..bad_ip
        };
        associate_address(&mut txn, &by_eni).unwrap();
        assert!(txn.state.addresses[&a.allocation_id].association.is_none());
        assert_eq!(
            disassociate_address(&mut txn, Some(&assoc), None)
                .unwrap_err()
                .code,
            "InvalidAssociationID.NotFound"
        );
        assert_eq!(
            release_address(&mut txn, Some("eipalloc-0123456789abcdef0"), None)
                .unwrap_err()
                .code,
            "InvalidAllocationID.NotFound"
        );
        release_address(&mut txn, Some(&a.allocation_id), None).unwrap();
        // Terminating the instance frees its address.
        terminate_instances(&mut txn, std::slice::from_ref(&inst.id)).unwrap();
        assert!(txn.state.addresses[&b.allocation_id].association.is_none());
        detach_internet_gateway(&mut txn, &igw.id, &vpc.id).unwrap();
        // The released address is handed out again first.
        let c = allocate_address(&mut txn, None, Tags::new()).unwrap();
        assert_eq!(c.public_ip, POOL_FIRST);
    }

    #[test]
    fn secondary_addresses_and_nat_interfaces() {
        use super::super::eni::{
            assign_private_ips, create_network_interface, delete_network_interface,
            unassign_private_ips, CreateRequest,
        };
        let mut txn = Txn::new(State::new(), 0);
        let vpc = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let s = create_subnet(&mut txn, &vpc.id, "10.0.1.0/24", None, Tags::new()).unwrap();
        let igw = create_internet_gateway(&mut txn, Tags::new()).unwrap();
        attach_internet_gateway(&mut txn, &igw.id, &vpc.id).unwrap();
        let eni = create_network_interface(
            &mut txn,
            &CreateRequest {
                subnet_id: s.id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
        let ips = assign_private_ips(&mut txn, &eni.id, &[], Some(1), false).unwrap();
        let a = allocate_address(&mut txn, None, Tags::new()).unwrap();
        let req = AssociateRequest {
            allocation_id: Some(a.allocation_id.clone()),
            network_interface_id: Some(eni.id.clone()),
            private_ip: Some(ips[0].to_string()),
            ..Default::default()
        };
        associate_address(&mut txn, &req).unwrap();
        assert_eq!(
            txn.state.addresses[&a.allocation_id]
                .association
                .as_ref()
                .unwrap()
                .private_ip,
            ips[0]
        );
        // Giving the secondary address up frees its Elastic IP.
        unassign_private_ips(&mut txn, &eni.id, &[ips[0].to_string()]).unwrap();
        assert!(txn.state.addresses[&a.allocation_id].association.is_none());
        // A NAT gateway's interface cannot be deleted on its own, nor its address taken away.
        let nat = super::super::nat_gateway::create_nat_gateway(
            &mut txn,
            &super::super::nat_gateway::CreateRequest {
                subnet_id: s.id.clone(),
                allocation_id: Some(a.allocation_id.clone()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            delete_network_interface(&mut txn, &nat.eni_id)
                .unwrap_err()
                .code,
            "InvalidNetworkInterface.InUse"
        );
        assert_eq!(
            disassociate_address(&mut txn, nat.association_id.as_deref(), None)
                .unwrap_err()
                .code,
            "OperationNotPermitted"
        );
        delete_network_interface(&mut txn, &eni.id).unwrap();
    }

    #[test]
    fn pool_exhaustion() {
        let mut txn = Txn::new(State::new(), 0);
        let n = u32::from(POOL_LAST) - u32::from(POOL_FIRST) + 1;
        for _ in 0..n {
            allocate_address(&mut txn, None, Tags::new()).unwrap();
        }
        assert_eq!(
            allocate_address(&mut txn, None, Tags::new())
                .unwrap_err()
                .code,
            "AddressLimitExceeded"
        );
        assert_eq!(
            allocate_address(&mut txn, Some("moon"), Tags::new())
                .unwrap_err()
                .code,
            "InvalidParameterValue"
        );
    }
}
