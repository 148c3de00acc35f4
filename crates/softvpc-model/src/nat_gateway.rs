//! NAT gateways: a gateway in a subnet with its own network interface there (no instance, no
//! host) and, when public, an Elastic IP associated with that interface. States go
//! pending -> available and deleting -> deleted; the later state is reported once
//! [`SETTLE_SECS`] have passed, so clients and waiters see AWS's sequence without a background
//! task. Deleted gateways stay describable for an hour, as on AWS.

use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::address::{allocation_not_found, AddressAssociation};
use super::filter::Filterable;
use super::idempotency::replay;
use super::ids::{new_id, new_mac};
use super::subnet::{free_addresses, used_addresses};
use super::{is_reserved, ApiError, Eni, State, Tags, Txn};

/// Seconds after which a pending gateway is available and a deleting one deleted.
pub const SETTLE_SECS: u64 = 1;
/// Seconds a deleted gateway stays describable.
pub const DELETED_VISIBLE_SECS: u64 = 3600;

/// A NAT gateway's stored lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatState {
    /// Being created.
    Pending,
    /// Ready.
    Available,
    /// Being deleted.
    Deleting,
    /// Deleted (describable for a while).
    Deleted,
}

impl NatState {
    /// AWS's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            NatState::Pending => "pending",
            NatState::Available => "available",
            NatState::Deleting => "deleting",
            NatState::Deleted => "deleted",
        }
    }
}

/// A NAT gateway (`nat-`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatGateway {
    /// `nat-...`.
    pub id: String,
    /// Its subnet's VPC.
    pub vpc_id: String,
    /// The subnet it lives in.
    pub subnet_id: String,
    /// `public` or `private`.
    pub connectivity_type: String,
    /// Its own network interface (requester-managed) in the subnet.
    pub eni_id: String,
    /// Its private address (the ENI's).
    pub private_ip: Ipv4Addr,
    /// The Elastic IP of a public gateway, with its address and association ids (kept after
    /// deletion for describing).
    pub allocation_id: Option<String>,
    /// The Elastic IP's address.
    pub public_ip: Option<Ipv4Addr>,
    /// The Elastic IP's association id.
    pub association_id: Option<String>,
    /// Its stored state (see [`NatGateway::observed_state`]).
    pub state: NatState,
    /// Seconds since the Unix epoch.
    pub create_time: u64,
    /// When deletion started (seconds since the Unix epoch).
    pub delete_time: Option<u64>,
    /// Its tags.
    pub tags: Tags,
    /// The `ClientToken` of the `CreateNatGateway` that made it (idempotent retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// The host its interface is placed on ([`nat_placement`] when it was created; `None`: no
    /// host in its zone, the gateway carries nothing). That host translates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
}

impl NatGateway {
    /// The state a client sees at `now`: the stored one, moved on once it has settled.
    pub fn observed_state(&self, now: u64) -> NatState {
        match self.state {
            NatState::Pending if now >= self.create_time.saturating_add(SETTLE_SECS) => {
                NatState::Available
            }
            NatState::Deleting
                if now >= self.delete_time.unwrap_or(0).saturating_add(SETTLE_SECS) =>
            {
                NatState::Deleted
            }
            s => s,
        }
    }

    /// The gateway as a client sees it at `now` (its state moved on, see
    /// [`Self::observed_state`]): what describe calls filter and show.
    pub fn observed(&self, now: u64) -> NatGateway {
        NatGateway {
            state: self.observed_state(now),
            ..self.clone()
        }
    }

    /// True when a describe at `now` still shows it.
    pub fn visible(&self, now: u64) -> bool {
        self.delete_time
            .is_none_or(|t| now < t.saturating_add(DELETED_VISIBLE_SECS))
    }
}

/// `NatGatewayNotFound` (the code the `nat_gateway_available` waiter retries on).
pub fn nat_not_found(id: &str) -> ApiError {
    ApiError::new(
        "NatGatewayNotFound",
        format!("The Nat Gateway {id} was not found"),
    )
}

/// The parameters of `CreateNatGateway`.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// `SubnetId`.
    pub subnet_id: String,
    /// `AllocationId`: the Elastic IP of a public gateway.
    pub allocation_id: Option<String>,
    /// `ConnectivityType` (`public` when absent).
    pub connectivity_type: Option<String>,
    /// `PrivateIpAddress`.
    pub private_ip: Option<String>,
    /// From `TagSpecifications`.
    pub tags: Tags,
    /// `ClientToken`.
    pub client_token: Option<String>,
}

/// `CreateNatGateway`: the gateway (pending), its interface in the subnet and, for a public
/// gateway, the Elastic IP associated with that interface; the VPC needs an internet gateway.
pub fn create_nat_gateway(txn: &mut Txn, req: &CreateRequest) -> Result<NatGateway, ApiError> {
    // A retry with the same ClientToken returns what the first call made.
    if let Some(n) = replay(
        req.client_token.as_deref(),
        txn.state.nat_gateways.values(),
        |n| n.client_token.as_deref(),
        |n| n.subnet_id == req.subnet_id,
    )? {
        return Ok((**n).clone());
    }
    let subnet = super::subnet::get_subnet(&txn.state, &req.subnet_id).cloned()?;
    let connectivity = req.connectivity_type.as_deref().unwrap_or("public");
    if connectivity != "public" && connectivity != "private" {
        return Err(ApiError::invalid_value(format!(
            "Value ({connectivity}) for parameter connectivityType is invalid."
        )));
    }
    let public = connectivity == "public";
    let address = match (&req.allocation_id, public) {
        (Some(id), true) => {
            let a = txn
                .state
                .addresses
                .get(id)
                .cloned()
                .ok_or_else(|| allocation_not_found(id))?;
            if let Some(s) = &a.association {
                return Err(ApiError::new(
                    "Resource.AlreadyAssociated",
                    format!("Elastic IP address [{id}] is already associated ({})", s.id),
                ));
            }
            Some(a)
        }
        (None, true) => return Err(ApiError::missing("AllocationId")),
        (Some(_), false) => {
            return Err(ApiError::new(
                "InvalidParameterCombination",
                "An Elastic IP address can only be given for a public NAT gateway.",
            ))
        }
        (None, false) => None,
    };
    if public && super::internet_gateway::igw_of_vpc(&txn.state, &subnet.vpc_id).is_none() {
        return Err(ApiError::new(
            "Gateway.NotAttached",
            format!("Network {} has no Internet gateway attached", subnet.vpc_id),
        ));
    }
    let used = used_addresses(&txn.state, &subnet.id);
    let private_ip = match &req.private_ip {
        Some(p) => {
            let ip: Ipv4Addr = p.parse().map_err(|_| {
                ApiError::invalid_value(format!(
                    "Value ({p}) for parameter privateIpAddress is invalid."
                ))
            })?;
            if !subnet.cidr.contains(&ip) || is_reserved(&subnet.cidr, ip) {
                return Err(ApiError::invalid_value(format!(
                    "Address {ip} is not a usable address of subnet {}",
                    subnet.id
                )));
            }
            if used.contains(&ip) {
                return Err(ApiError::new(
                    "InvalidIPAddress.InUse",
                    format!("Address {ip} is in use."),
                ));
            }
            ip
        }
        None => free_addresses(&subnet.cidr, &used, 1)
            .into_iter()
            .next()
            .ok_or_else(|| {
                ApiError::new(
                    "InsufficientFreeAddressesInSubnet",
                    format!(
                        "There are not enough free addresses in subnet '{}' to satisfy the requested number of instances.",
                        subnet.id
                    ),
                )
            })?,
    };
    let id = new_id("nat");
    let eni = Eni {
        id: new_id("eni"),
        subnet_id: subnet.id.clone(),
        vpc_id: subnet.vpc_id.clone(),
        availability_zone: subnet.availability_zone.clone(),
        private_ip,
        mac: new_mac(),
        description: format!("Interface for NAT Gateway {id}"),
        // A NAT forwards for others: no source/destination check.
        source_dest_check: false,
        connection_tracking: Default::default(),
        attachment: None,
        tags: Tags::new(),
        secondary_ips: Vec::new(),
        security_groups: Vec::new(),
        client_token: None,
        public_ip: None,
    };
    let mut association_id = None;
    if let Some(mut a) = address.as_deref().cloned() {
        let assoc = new_id("eipassoc");
        a.association = Some(AddressAssociation {
            id: assoc.clone(),
            network_interface_id: eni.id.clone(),
            private_ip,
        });
        association_id = Some(assoc);
        txn.put(a);
    }
    let nat = NatGateway {
        id,
        vpc_id: subnet.vpc_id.clone(),
        subnet_id: subnet.id.clone(),
        connectivity_type: connectivity.to_string(),
        eni_id: eni.id.clone(),
        private_ip,
        allocation_id: address.as_ref().map(|a| a.allocation_id.clone()),
        public_ip: address.as_ref().map(|a| a.public_ip),
        association_id,
        state: NatState::Pending,
        create_time: txn.now,
        delete_time: None,
        tags: req.tags.clone(),
        client_token: req.client_token.clone(),
        host_id: nat_placement(&txn.state, &subnet.availability_zone),
    };
    txn.put(eni);
    txn.put(nat.clone());
    Ok(nat)
}

/// `DeleteNatGateway`: the gateway goes to `deleting`, its interface is deleted and its
/// Elastic IP disassociated at once.
pub fn delete_nat_gateway(txn: &mut Txn, id: &str) -> Result<NatGateway, ApiError> {
    let mut nat = txn
        .state
        .nat_gateways
        .get(id)
        .map(|n| (**n).clone())
        .filter(|n| n.observed_state(txn.now) != NatState::Deleted)
        .ok_or_else(|| nat_not_found(id))?;
    if nat.state == NatState::Deleting {
        return Ok(nat);
    }
    txn.release_addresses_of_eni(&nat.eni_id.clone());
    txn.delete_eni(&nat.eni_id.clone());
    nat.state = NatState::Deleting;
    nat.delete_time = Some(txn.now);
    txn.put(nat.clone());
    Ok(nat)
}

/// Where a new NAT gateway of zone `zone` goes: the host of the zone holding the fewest live
/// NAT gateways (a gateway carries the internet traffic of many instances, so gateways are
/// spread, not instances), ties by host name.
pub fn nat_placement(state: &State, zone: &str) -> Option<String> {
    let held = |host: &str| {
        state
            .nat_gateways
            .values()
            .filter(|n| n.host_id.as_deref() == Some(host))
            .filter(|n| n.state != NatState::Deleting && n.state != NatState::Deleted)
            .count()
    };
    state
        .hosts
        .values()
        .filter(|h| h.availability_zone == zone)
        .min_by(|a, b| (held(&a.id), &a.name).cmp(&(held(&b.id), &b.name)))
        .map(|h| h.id.clone())
}

/// The host NAT gateway interface `eni_id` is placed on, if it is one and not being deleted.
pub fn nat_host<'a>(state: &'a State, eni_id: &str) -> Option<&'a str> {
    nat_of_eni(state, eni_id)
        .filter(|n| n.state != NatState::Deleting && n.state != NatState::Deleted)
        .and_then(|n| n.host_id.as_deref())
}

/// The NAT gateway owning interface `eni_id`, if any.
pub fn nat_of_eni<'a>(state: &'a State, eni_id: &str) -> Option<&'a Arc<NatGateway>> {
    state.nat_gateways.values().find(|n| n.eni_id == eni_id)
}

impl Filterable for NatGateway {
    const FILTERS: &'static [&'static str] = &["nat-gateway-id", "state", "subnet-id", "vpc-id"];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        match name {
            "nat-gateway-id" => vec![self.id.clone()],
            // The describe handler filters the gateways as observed at its `now` (see
            // `observed`), so this is the state moved on by the clock.
            "state" => vec![self.state.as_str().to_string()],
            "subnet-id" => vec![self.subnet_id.clone()],
            "vpc-id" => vec![self.vpc_id.clone()],
            _ => Vec::new(),
        }
    }

    fn tag_map(&self) -> Tags {
        self.tags.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::super::address::allocate_address;
    use super::super::internet_gateway::{attach_internet_gateway, create_internet_gateway};
    use super::super::route_table::{create_route, create_route_table, route_state, TargetSpec};
    use super::super::subnet::{create_subnet, delete_subnet};
    use super::super::vpc::create_vpc;
    use super::*;

    #[test]
    fn lifecycle_eni_address_and_routes() {
        let mut txn = Txn::new(State::new(), 1_000);
        let vpc = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let s = create_subnet(&mut txn, &vpc.id, "10.0.1.0/24", None, Tags::new()).unwrap();
        let eip = allocate_address(&mut txn, None, Tags::new()).unwrap();
        let mut req = CreateRequest {
            subnet_id: s.id.clone(),
            allocation_id: Some(eip.allocation_id.clone()),
            ..Default::default()
        };
        assert_eq!(
            create_nat_gateway(&mut txn, &req).unwrap_err().code,
            "Gateway.NotAttached"
        );
        let igw = create_internet_gateway(&mut txn, Tags::new()).unwrap();
        attach_internet_gateway(&mut txn, &igw.id, &vpc.id).unwrap();
        let nat = create_nat_gateway(&mut txn, &req).unwrap();
        assert_eq!(nat.state, NatState::Pending);
        assert_eq!(nat.observed_state(1_000), NatState::Pending);
        assert_eq!(nat.observed_state(1_000 + SETTLE_SECS), NatState::Available);
        assert_eq!(nat.private_ip.to_string(), "10.0.1.4");
        assert_eq!(nat.public_ip, Some(eip.public_ip));
        // No host registered: placed nowhere.
        assert_eq!(nat.host_id, None);
        // Its own interface, holding an address of the subnet, with the Elastic IP on it.
        let eni = txn.state.enis[&nat.eni_id].clone();
        assert!(eni.attachment.is_none());
        assert_eq!(eni.private_ip, nat.private_ip);
        assert_eq!(
            txn.state.addresses[&eip.allocation_id]
                .association
                .as_ref()
                .unwrap()
                .network_interface_id,
            nat.eni_id
        );
        // The address is taken now.
        assert_eq!(
            create_nat_gateway(&mut txn, &req).unwrap_err().code,
            "Resource.AlreadyAssociated"
        );
        req.allocation_id = None;
        assert_eq!(
            create_nat_gateway(&mut txn, &req).unwrap_err().code,
            "MissingParameter"
        );
        req.connectivity_type = Some("private".into());
        let private = create_nat_gateway(&mut txn, &req).unwrap();
        assert_eq!(private.private_ip.to_string(), "10.0.1.5");
        assert!(private.public_ip.is_none());
        req.subnet_id = "subnet-0123456789abcdef0".into();
        assert_eq!(
            create_nat_gateway(&mut txn, &req).unwrap_err().code,
            "InvalidSubnetID.NotFound"
        );
        // ClientToken: a retry gets the same gateway, another subnet is a mismatch.
        let token_req = CreateRequest {
            subnet_id: s.id.clone(),
            connectivity_type: Some("private".into()),
            client_token: Some("tok-1".into()),
            ..Default::default()
        };
        let first = create_nat_gateway(&mut txn, &token_req).unwrap();
        let again = create_nat_gateway(&mut txn, &token_req).unwrap();
        assert_eq!(first.id, again.id);
        let other = create_subnet(&mut txn, &vpc.id, "10.0.2.0/24", None, Tags::new()).unwrap();
        assert_eq!(
            create_nat_gateway(
                &mut txn,
                &CreateRequest {
                    subnet_id: other.id.clone(),
                    ..token_req.clone()
                }
            )
            .unwrap_err()
            .code,
            "IdempotentParameterMismatch"
        );
        delete_nat_gateway(&mut txn, &first.id).unwrap();
        // A route to it is active until it is deleted.
        let rtb = create_route_table(&mut txn, &vpc.id, Tags::new()).unwrap();
        let to_nat = TargetSpec {
            nat_gateway_id: Some(nat.id.clone()),
            ..Default::default()
        };
        create_route(&mut txn, &rtb.id, "0.0.0.0/0", &to_nat).unwrap();
        let rs = |txn: &Txn| {
            let r = &txn.state.route_tables[&rtb.id];
            route_state(&txn.state, &vpc.id, &r.routes[1])
        };
        assert_eq!(rs(&txn), "active");
        txn.now = 1_010;
        let d = delete_nat_gateway(&mut txn, &nat.id).unwrap();
        assert_eq!(d.state, NatState::Deleting);
        assert_eq!(rs(&txn), "blackhole");
        assert!(!txn.state.enis.contains_key(&nat.eni_id));
        assert!(txn.state.addresses[&eip.allocation_id]
            .association
            .is_none());
        let stored = txn.state.nat_gateways[&nat.id].clone();
        assert_eq!(
            stored.observed_state(1_010 + SETTLE_SECS),
            NatState::Deleted
        );
        assert!(stored.visible(1_010 + 10));
        assert!(!stored.visible(1_010 + DELETED_VISIBLE_SECS));
        txn.now = 1_020;
        assert_eq!(
            delete_nat_gateway(&mut txn, &nat.id).unwrap_err().code,
            "NatGatewayNotFound"
        );
        assert_eq!(
            create_route(
                &mut txn,
                &rtb.id,
                "10.9.0.0/16",
                &TargetSpec {
                    nat_gateway_id: Some("nat-0123456789abcdef0".into()),
                    ..Default::default()
                }
            )
            .unwrap_err()
            .code,
            "InvalidNatGatewayID.NotFound"
        );
        // The private gateway's interface keeps the subnet busy until it is deleted.
        assert_eq!(
            delete_subnet(&mut txn, &s.id).unwrap_err().code,
            "DependencyViolation"
        );
        delete_nat_gateway(&mut txn, &private.id).unwrap();
        delete_subnet(&mut txn, &s.id).unwrap();
    }

    #[test]
    fn gateways_are_spread_over_the_zones_hosts() {
        use super::super::host::register_host;
        let mut txn = Txn::new(State::new(), 1_000);
        let b = register_host(&mut txn, "host-b", "198.18.0.12").unwrap();
        let a = register_host(&mut txn, "host-a", "198.18.0.11").unwrap();
        let vpc = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let s = create_subnet(&mut txn, &vpc.id, "10.0.1.0/24", None, Tags::new()).unwrap();
        let req = CreateRequest {
            subnet_id: s.id.clone(),
            connectivity_type: Some("private".into()),
            ..Default::default()
        };
        let first = create_nat_gateway(&mut txn, &req).unwrap();
        let second = create_nat_gateway(&mut txn, &req).unwrap();
        assert_eq!(first.host_id.as_deref(), Some(a.as_str()), "ties by name");
        assert_eq!(second.host_id.as_deref(), Some(b.as_str()));
        let eni = txn.state.enis[&second.eni_id].clone();
        assert_eq!(
            super::super::instance::placed_host(&txn.state, &eni),
            Some(b.as_str())
        );
        delete_nat_gateway(&mut txn, &first.id).unwrap();
        let third = create_nat_gateway(&mut txn, &req).unwrap();
        assert_eq!(third.host_id.as_deref(), Some(a.as_str()));
        assert_eq!(nat_placement(&txn.state, "us-east-1b"), None);
    }
}
