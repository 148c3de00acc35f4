//! Route tables: each VPC's main table with its `local` route (made with the VPC), custom tables,
//! routes to gateways, NAT gateways, network interfaces and peering connections, subnet and
//! main associations, and the `blackhole` state of routes whose target is gone. Stored and
//! served here; the data plane follows them in a later issue.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::filter::Filterable;
use super::idempotency::replay;
use super::ids::new_id;
use super::nat_gateway::NatState;
use super::vpc::parse_cidr;
use super::{ApiError, State, Tags, Txn};

/// Where a route sends traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum Target {
    /// The VPC itself (the `local` route).
    Local,
    /// An internet gateway (`igw-`).
    Gateway(String),
    /// A NAT gateway (`nat-`).
    NatGateway(String),
    /// A network interface (`eni-`), e.g. a middlebox.
    NetworkInterface(String),
    /// A VPC peering connection (`pcx-`).
    VpcPeeringConnection(String),
}

impl Target {
    /// The id of the resource it names (None for `local`).
    pub fn id(&self) -> Option<&str> {
        match self {
            Target::Local => None,
            Target::Gateway(id)
            | Target::NatGateway(id)
            | Target::NetworkInterface(id)
            | Target::VpcPeeringConnection(id) => Some(id),
        }
    }
}

/// How a route came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// Made with the table (the `local` route).
    CreateRouteTable,
    /// Added by CreateRoute or ReplaceRoute.
    CreateRoute,
}

impl Origin {
    /// AWS's name for the origin.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::CreateRouteTable => "CreateRouteTable",
            Origin::CreateRoute => "CreateRoute",
        }
    }
}

/// Where a route applies: an IPv4 CIDR or a managed prefix list (whatever its entries are).
/// Stored as one string (the CIDR or the `pl-` id), so tables written before prefix lists
/// existed read unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// `DestinationCidrBlock`.
    Cidr(Ipv4Net),
    /// `DestinationPrefixListId`.
    PrefixList(String),
}

impl Destination {
    /// The CIDR, for a CIDR destination.
    pub fn cidr(&self) -> Option<Ipv4Net> {
        match self {
            Destination::Cidr(c) => Some(*c),
            Destination::PrefixList(_) => None,
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Cidr(c) => c.fmt(f),
            Destination::PrefixList(id) => f.write_str(id),
        }
    }
}

impl std::str::FromStr for Destination {
    type Err = ipnet::AddrParseError;

    /// A `pl-` id, or else a CIDR.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("pl-") {
            return Ok(Destination::PrefixList(s.to_string()));
        }
        s.parse().map(Destination::Cidr)
    }
}

impl Serialize for Destination {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Destination {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One route: an IPv4 destination and its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The destination: a CIDR or a prefix list.
    pub destination: Destination,
    /// Where matching traffic goes.
    pub target: Target,
    /// How the route came to be.
    pub origin: Origin,
}

/// An association of a table with a subnet, or the VPC's main association (no subnet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Association {
    /// `rtbassoc-...`.
    pub id: String,
    /// The VPC's main route table (no subnet).
    pub main: bool,
    /// The subnet, for an explicit association.
    pub subnet_id: Option<String>,
}

/// A route table of a VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    /// `rtb-...`.
    pub id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Its routes.
    pub routes: Vec<Route>,
    /// Its associations.
    pub associations: Vec<Association>,
    /// Its tags.
    pub tags: Tags,
    /// The `ClientToken` of the `CreateRouteTable` that made it (idempotent retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

impl RouteTable {
    /// True when this is its VPC's main table.
    pub fn is_main(&self) -> bool {
        self.associations.iter().any(|a| a.main)
    }
}

/// The state AWS reports for a route: `active`, or `blackhole` when its target is gone (a
/// deleted or detached internet gateway, a deleted NAT gateway, interface or peering).
pub fn route_state(state: &State, vpc_id: &str, route: &Route) -> &'static str {
    let alive = match &route.target {
        Target::Local => true,
        Target::Gateway(id) => state
            .internet_gateways
            .get(id)
            .is_some_and(|g| g.vpc_id.as_deref() == Some(vpc_id)),
        Target::NatGateway(id) => state
            .nat_gateways
            .get(id)
            .is_some_and(|n| matches!(n.state, NatState::Pending | NatState::Available)),
        Target::NetworkInterface(id) => state.enis.contains_key(id),
        Target::VpcPeeringConnection(id) => peering_exists(state, id, vpc_id),
    };
    if alive {
        "active"
    } else {
        "blackhole"
    }
}

/// True when `id` is an active VPC peering connection with `vpc_id` on one side (a pending,
/// rejected, failed or deleted one, or one between other VPCs, carries no traffic).
pub fn peering_exists(state: &State, id: &str, vpc_id: &str) -> bool {
    super::peering::is_active_for(state, id, vpc_id)
}

fn rtb_not_found(id: &str) -> ApiError {
    ApiError::not_found("InvalidRouteTableID.NotFound", "routeTable", &[id])
}

fn get_rtb(txn: &Txn, id: &str) -> Result<RouteTable, ApiError> {
    txn.state
        .route_tables
        .get(id)
        .map(|r| (**r).clone())
        .ok_or_else(|| rtb_not_found(id))
}

/// The main route table of a VPC, made with it: the `local` route for the VPC CIDR and the main
/// association. Called by `CreateVpc` in the same transaction.
pub fn create_main_route_table(txn: &mut Txn, vpc_id: &str, cidr: Ipv4Net) -> RouteTable {
    let rtb = RouteTable {
        id: new_id("rtb"),
        vpc_id: vpc_id.to_string(),
        routes: vec![Route {
            destination: Destination::Cidr(cidr),
            target: Target::Local,
            origin: Origin::CreateRouteTable,
        }],
        associations: vec![Association {
            id: new_id("rtbassoc"),
            main: true,
            subnet_id: None,
        }],
        tags: Tags::new(),
        client_token: None,
    };
    txn.put(rtb.clone());
    rtb
}

/// After `AssociateVpcCidrBlock` (`added`) or `DisassociateVpcCidrBlock`: every route table of
/// the VPC gains, or loses, the block's `local` route.
pub fn on_cidr_block(txn: &mut Txn, vpc_id: &str, cidr: Ipv4Net, added: bool) {
    let tables: Vec<RouteTable> = txn
        .state
        .route_tables
        .values()
        .filter(|t| t.vpc_id == vpc_id)
        .map(|t| (**t).clone())
        .collect();
    let local = Route {
        destination: Destination::Cidr(cidr),
        target: Target::Local,
        origin: Origin::CreateRouteTable,
    };
    for mut t in tables {
        if added {
            t.routes.push(local.clone());
        } else {
            t.routes.retain(|r| *r != local);
        }
        txn.put(t);
    }
}

/// Gives every VPC without a main route table one (stores written before route tables
/// existed). Returns how many were added.
pub fn ensure_main_tables(txn: &mut Txn) -> Result<usize, ApiError> {
    let missing: Vec<(String, Ipv4Net)> = txn
        .state
        .vpcs
        .values()
        .filter(|v| {
            !txn.state
                .route_tables
                .values()
                .any(|r| r.vpc_id == v.id && r.is_main())
        })
        .map(|v| (v.id.clone(), v.cidr))
        .collect();
    for (id, cidr) in &missing {
        create_main_route_table(txn, id, *cidr);
    }
    Ok(missing.len())
}

/// `CreateRouteTable`: a table with only the `local` route, not associated.
pub fn create_route_table(txn: &mut Txn, vpc_id: &str, tags: Tags) -> Result<RouteTable, ApiError> {
    create_route_table_with_token(txn, vpc_id, tags, None)
}

/// `CreateRouteTable` with a `ClientToken`: a retry with the same token and VPC returns the
/// table the first call made; the same token with another VPC is `IdempotentParameterMismatch`.
pub fn create_route_table_with_token(
    txn: &mut Txn,
    vpc_id: &str,
    tags: Tags,
    client_token: Option<&str>,
) -> Result<RouteTable, ApiError> {
    if let Some(r) = replay(
        client_token,
        txn.state.route_tables.values(),
        |r| r.client_token.as_deref(),
        |r| r.vpc_id == vpc_id,
    )? {
        return Ok((**r).clone());
    }
    let vpc = super::vpc::get_vpc(&txn.state, vpc_id).cloned()?;
    let rtb = RouteTable {
        id: new_id("rtb"),
        vpc_id: vpc_id.to_string(),
        // A `local` route for every CIDR block of the VPC.
        routes: vpc
            .cidrs()
            .map(|c| Route {
                destination: Destination::Cidr(c),
                target: Target::Local,
                origin: Origin::CreateRouteTable,
            })
            .collect(),
        associations: Vec::new(),
        tags,
        client_token: client_token.map(str::to_string),
    };
    txn.put(rtb.clone());
    Ok(rtb)
}

/// `DeleteRouteTable`: refused for the main table and while subnets are associated.
pub fn delete_route_table(txn: &mut Txn, id: &str) -> Result<(), ApiError> {
    let rtb = get_rtb(txn, id)?;
    if !rtb.associations.is_empty() {
        return Err(ApiError::has_dependencies("routeTable", id));
    }
    txn.delete::<RouteTable>(id);
    Ok(())
}

/// The parameters naming a route's target: exactly one must be given.
#[derive(Debug, Clone, Default)]
pub struct TargetSpec {
    /// `GatewayId`.
    pub gateway_id: Option<String>,
    /// `NatGatewayId`.
    pub nat_gateway_id: Option<String>,
    /// `NetworkInterfaceId`.
    pub network_interface_id: Option<String>,
    /// `InstanceId`.
    pub instance_id: Option<String>,
    /// `VpcPeeringConnectionId`.
    pub vpc_peering_connection_id: Option<String>,
}

/// Resolves and checks the target of a route in `rtb`: it must exist and belong to the table's
/// VPC. An instance stands for its primary network interface.
fn resolve_target(
    state: &State,
    now: u64,
    rtb: &RouteTable,
    spec: &TargetSpec,
    allow_local: bool,
) -> Result<Target, ApiError> {
    let given = [
        spec.gateway_id.is_some(),
        spec.nat_gateway_id.is_some(),
        spec.network_interface_id.is_some(),
        spec.instance_id.is_some(),
        spec.vpc_peering_connection_id.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given == 0 {
        return Err(ApiError::missing(
            "gatewayId, natGatewayId, networkInterfaceId, instanceId or vpcPeeringConnectionId",
        ));
    }
    if given > 1 {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "The parameter gatewayId, natGatewayId, networkInterfaceId, instanceId and vpcPeeringConnectionId are mutually exclusive",
        ));
    }
    let other_network = |what: &str, id: &str| {
        ApiError::invalid_value(format!(
            "route table {} and {what} {id} belong to different networks",
            rtb.id
        ))
    };
    if let Some(id) = &spec.gateway_id {
        if id == "local" {
            if !allow_local {
                return Err(ApiError::invalid_value(
                    "The gateway ID 'local' is only valid for the local route",
                ));
            }
            return Ok(Target::Local);
        }
        let igw = state.internet_gateways.get(id).ok_or_else(|| {
            ApiError::not_found(
                "InvalidInternetGatewayID.NotFound",
                "internetGateway",
                &[id],
            )
        })?;
        if igw.vpc_id.as_deref() != Some(rtb.vpc_id.as_str()) {
            return Err(other_network("network gateway", id));
        }
        return Ok(Target::Gateway(id.clone()));
    }
    if let Some(id) = &spec.nat_gateway_id {
        let nat = state
            .nat_gateways
            .get(id)
            .filter(|n| n.state != NatState::Deleted)
            .ok_or_else(|| {
                ApiError::new(
                    "InvalidNatGatewayID.NotFound",
                    format!("The natGateway ID '{id}' does not exist"),
                )
            })?;
        if nat.vpc_id != rtb.vpc_id {
            return Err(other_network("NAT gateway", id));
        }
        return Ok(Target::NatGateway(id.clone()));
    }
    if let Some(id) = &spec.instance_id {
        let inst = state
            .instances
            .get(id)
            .filter(|i| i.state != super::InstanceState::Terminated)
            .ok_or_else(|| ApiError::not_found("InvalidInstanceID.NotFound", "instance", &[id]))?;
        if inst.vpc_id != rtb.vpc_id {
            return Err(other_network("instance", id));
        }
        return Ok(Target::NetworkInterface(inst.eni_id.clone()));
    }
    if let Some(id) = &spec.network_interface_id {
        let eni = state.enis.get(id).ok_or_else(|| {
            ApiError::not_found(
                "InvalidNetworkInterfaceID.NotFound",
                "networkInterface",
                &[id],
            )
        })?;
        if eni.vpc_id != rtb.vpc_id {
            return Err(other_network("interface", id));
        }
        return Ok(Target::NetworkInterface(id.clone()));
    }
    let id = spec.vpc_peering_connection_id.as_deref().unwrap_or("");
    // AWS takes a route to a peering still pending acceptance: a blackhole until it is active.
    let usable = state.peering_connections.get(id).is_some_and(|p| {
        p.involves(&rtb.vpc_id)
            && matches!(
                p.status_at(now),
                super::peering::PeeringStatus::Active
                    | super::peering::PeeringStatus::PendingAcceptance
            )
    });
    if !usable {
        return Err(ApiError::not_found(
            "InvalidVpcPeeringConnectionID.NotFound",
            "vpcPeeringConnection",
            &[id],
        ));
    }
    Ok(Target::VpcPeeringConnection(id.to_string()))
}

/// A route destination as the API gives it: a CIDR (`DestinationCidrBlock`) or a `pl-` id
/// (`DestinationPrefixListId`, which must name an existing list).
pub fn parse_destination(state: &State, value: &str) -> Result<Destination, ApiError> {
    if value.starts_with("pl-") {
        super::prefix_list::get(state, value)?;
        return Ok(Destination::PrefixList(value.to_string()));
    }
    parse_cidr(value, "destinationCidrBlock").map(Destination::Cidr)
}

/// `CreateRoute`: a new route; the destination must not have one yet (`RouteAlreadyExists`).
pub fn create_route(
    txn: &mut Txn,
    rtb_id: &str,
    destination: &str,
    target: &TargetSpec,
) -> Result<(), ApiError> {
    let mut rtb = get_rtb(txn, rtb_id)?;
    let dest = parse_destination(&txn.state, destination)?;
    let target = resolve_target(&txn.state, txn.now, &rtb, target, false)?;
    if rtb.routes.iter().any(|r| r.destination == dest) {
        return Err(ApiError::new(
            "RouteAlreadyExists",
            format!("The route identified by {dest} already exists."),
        ));
    }
    rtb.routes.push(Route {
        destination: dest,
        target,
        origin: Origin::CreateRoute,
    });
    // A prefix list route costs its list's MaxEntries against the table's limit (AWS's rule).
    if super::prefix_list::route_cost(&txn.state, &rtb.routes)
        > super::prefix_list::MAX_ROUTES_PER_TABLE
    {
        return Err(ApiError::new(
            "RouteLimitExceeded",
            format!(
                "The maximum number of routes ({}) has been reached for route table {rtb_id}.",
                super::prefix_list::MAX_ROUTES_PER_TABLE
            ),
        ));
    }
    txn.put(rtb);
    Ok(())
}

/// `ReplaceRoute`: a new target for an existing route. The `local` route may only be pointed
/// back at `local`.
pub fn replace_route(
    txn: &mut Txn,
    rtb_id: &str,
    destination: &str,
    target: &TargetSpec,
) -> Result<(), ApiError> {
    let mut rtb = get_rtb(txn, rtb_id)?;
    let dest = parse_destination(&txn.state, destination)?;
    let target = resolve_target(&txn.state, txn.now, &rtb, target, true)?;
    let Some(pos) = rtb.routes.iter().position(|r| r.destination == dest) else {
        return Err(ApiError::invalid_value(format!(
            "There is no route defined for '{dest}' in the route table. Use CreateRoute instead."
        )));
    };
    let is_local = rtb.routes[pos].origin == Origin::CreateRouteTable;
    if is_local != (target == Target::Local) {
        return Err(ApiError::invalid_value(format!(
            "The route identified by {dest} is the local route of the VPC; only 'local' can be its target."
        )));
    }
    rtb.routes[pos].target = target;
    if !is_local {
        rtb.routes[pos].origin = Origin::CreateRoute;
    }
    txn.put(rtb);
    Ok(())
}

/// `DeleteRoute`: the `local` route cannot be deleted.
pub fn delete_route(txn: &mut Txn, rtb_id: &str, destination: &str) -> Result<(), ApiError> {
    let mut rtb = get_rtb(txn, rtb_id)?;
    let dest = parse_destination(&txn.state, destination)?;
    let Some(pos) = rtb.routes.iter().position(|r| r.destination == dest) else {
        let field = match dest {
            Destination::Cidr(_) => "destination-cidr-block",
            Destination::PrefixList(_) => "destination-prefix-list-id",
        };
        return Err(ApiError::new(
            "InvalidRoute.NotFound",
            format!("no route with {field} {dest} in route table {rtb_id}"),
        ));
    };
    if rtb.routes[pos].target == Target::Local {
        return Err(ApiError::invalid_value(format!(
            "cannot remove local route {dest} in route table {rtb_id}"
        )));
    }
    rtb.routes.remove(pos);
    txn.put(rtb);
    Ok(())
}

/// The table (and association) a subnet is explicitly associated with, if any.
pub fn subnet_association(state: &State, subnet_id: &str) -> Option<(String, String)> {
    state.route_tables.values().find_map(|r| {
        r.associations
            .iter()
            .find(|a| a.subnet_id.as_deref() == Some(subnet_id))
            .map(|a| (r.id.clone(), a.id.clone()))
    })
}

/// `AssociateRouteTable`: associates a subnet of the table's VPC; returns the association id.
pub fn associate_route_table(
    txn: &mut Txn,
    rtb_id: &str,
    subnet_id: &str,
) -> Result<String, ApiError> {
    let mut rtb = get_rtb(txn, rtb_id)?;
    let subnet = super::subnet::get_subnet(&txn.state, subnet_id).cloned()?;
    if subnet.vpc_id != rtb.vpc_id {
        return Err(ApiError::invalid_value(format!(
            "route table {rtb_id} and subnet {subnet_id} belong to different networks"
        )));
    }
    if subnet_association(&txn.state, subnet_id).is_some() {
        return Err(ApiError::new(
            "Resource.AlreadyAssociated",
            format!(
                "the specified association for route table {rtb_id} conflicts with an existing association"
            ),
        ));
    }
    let id = new_id("rtbassoc");
    rtb.associations.push(Association {
        id: id.clone(),
        main: false,
        subnet_id: Some(subnet_id.to_string()),
    });
    txn.put(rtb);
    Ok(id)
}

fn find_association(state: &State, association_id: &str) -> Result<RouteTable, ApiError> {
    state
        .route_tables
        .values()
        .find(|r| r.associations.iter().any(|a| a.id == association_id))
        .map(|r| (**r).clone())
        .ok_or_else(|| {
            ApiError::not_found(
                "InvalidAssociationID.NotFound",
                "association",
                &[association_id],
            )
        })
}

/// `DisassociateRouteTable`: the subnet falls back to the main table. The main association
/// cannot be removed (only replaced).
pub fn disassociate_route_table(txn: &mut Txn, association_id: &str) -> Result<(), ApiError> {
    let mut rtb = find_association(&txn.state, association_id)?;
    if rtb
        .associations
        .iter()
        .any(|a| a.id == association_id && a.main)
    {
        return Err(ApiError::invalid_value(format!(
            "cannot disassociate the main route table association {association_id}"
        )));
    }
    rtb.associations.retain(|a| a.id != association_id);
    txn.put(rtb);
    Ok(())
}

/// `ReplaceRouteTableAssociation`: moves an association (a subnet's, or the VPC's main one) to
/// another table of the same VPC; returns the new association id.
pub fn replace_route_table_association(
    txn: &mut Txn,
    association_id: &str,
    rtb_id: &str,
) -> Result<String, ApiError> {
    let mut old = find_association(&txn.state, association_id)?;
    let mut new = get_rtb(txn, rtb_id)?;
    if old.vpc_id != new.vpc_id {
        return Err(ApiError::invalid_value(format!(
            "route table {rtb_id} and association {association_id} belong to different networks"
        )));
    }
    let Some(pos) = old.associations.iter().position(|a| a.id == association_id) else {
        return Err(ApiError::not_found(
            "InvalidAssociationID.NotFound",
            "association",
            &[association_id],
        ));
    };
    let assoc = old.associations.remove(pos);
    let moved = Association {
        id: new_id("rtbassoc"),
        main: assoc.main,
        subnet_id: assoc.subnet_id,
    };
    let new_id_ = moved.id.clone();
    if old.id == new.id {
        old.associations.push(moved);
        txn.put(old);
    } else {
        new.associations.push(moved);
        txn.put(old);
        txn.put(new);
    }
    Ok(new_id_)
}

/// Drops a deleted subnet's association (AWS removes it with the subnet).
pub fn on_subnet_deleted(txn: &mut Txn, subnet_id: &str) {
    if let Some((rtb_id, assoc)) = subnet_association(&txn.state, subnet_id) {
        if let Some(r) = txn.state.route_tables.get(&rtb_id) {
            let mut r = (**r).clone();
            r.associations.retain(|a| a.id != assoc);
            txn.put(r);
        }
    }
}

/// What `DeleteVpc` needs from route tables: refused while tables other than the main one
/// remain; otherwise the main table goes with the VPC.
pub fn on_vpc_delete(txn: &mut Txn, vpc_id: &str) -> Result<(), ApiError> {
    let tables: Vec<(String, bool)> = txn
        .state
        .route_tables
        .values()
        .filter(|r| r.vpc_id == vpc_id)
        .map(|r| (r.id.clone(), r.is_main()))
        .collect();
    if tables.iter().any(|(_, main)| !main) {
        return Err(ApiError::has_dependencies("vpc", vpc_id));
    }
    for (id, _) in tables {
        txn.delete::<RouteTable>(&id);
    }
    Ok(())
}

/// Applies `edit` to the tags of a route table, internet gateway, Elastic IP or NAT gateway
/// (CreateTags/DeleteTags). None: `id` is not of these kinds.
pub fn edit_tags(
    txn: &mut Txn,
    id: &str,
    edit: &mut dyn FnMut(&mut Tags) -> Result<(), ApiError>,
) -> Option<Result<(), ApiError>> {
    let prefix = id.split('-').next().unwrap_or("");
    let r = match prefix {
        "rtb" => get_rtb(txn, id).and_then(|mut r| {
            edit(&mut r.tags)?;
            txn.put(r);
            Ok(())
        }),
        "igw" => txn.update::<super::internet_gateway::InternetGateway>(
            id,
            || super::internet_gateway::igw_not_found(id),
            |x| edit(&mut x.tags),
        ),
        "pcx" => super::peering::get_peering(txn, id).and_then(|mut p| {
            edit(&mut p.tags)?;
            txn.put(p);
            Ok(())
        }),
        "eipalloc" => txn.update::<super::address::Address>(
            id,
            || super::address::allocation_not_found(id),
            |x| edit(&mut x.tags),
        ),
        "nat" => txn.update::<super::nat_gateway::NatGateway>(
            id,
            || super::nat_gateway::nat_not_found(id),
            |x| edit(&mut x.tags),
        ),
        _ => return None,
    };
    Some(r)
}

/// AWS's name for a route target field, and its id (for describing and filtering).
pub fn target_fields(target: &Target) -> (&'static str, &str) {
    match target {
        Target::Local => ("GatewayId", "local"),
        Target::Gateway(id) => ("GatewayId", id),
        Target::NatGateway(id) => ("NatGatewayId", id),
        Target::NetworkInterface(id) => ("NetworkInterfaceId", id),
        Target::VpcPeeringConnection(id) => ("VpcPeeringConnectionId", id),
    }
}

impl Filterable for RouteTable {
    const FILTERS: &'static [&'static str] = &[
        "route-table-id",
        "vpc-id",
        "owner-id",
        "association.main",
        "association.subnet-id",
        "association.route-table-association-id",
        "association.route-table-id",
        "route.destination-cidr-block",
        "route.destination-prefix-list-id",
        "route.gateway-id",
        "route.nat-gateway-id",
        "route.network-interface-id",
        "route.vpc-peering-connection-id",
        "route.origin",
        "route.state",
        "route.instance-id",
    ];
    const UNHELD: &'static [&'static str] = &[
        "association.gateway-id",
        "route.destination-ipv6-cidr-block",
        "route.egress-only-internet-gateway-id",
        "route.transit-gateway-id",
    ];

    fn field(&self, state: &State, name: &str) -> Vec<String> {
        let routes = self.routes.iter();
        let assocs = self.associations.iter();
        let by_target = |field: &str| -> Vec<String> {
            self.routes
                .iter()
                .map(|r| target_fields(&r.target))
                .filter(|(f, _)| *f == field)
                .map(|(_, id)| id.to_string())
                .collect()
        };
        match name {
            "route-table-id" => vec![self.id.clone()],
            "vpc-id" => vec![self.vpc_id.clone()],
            "owner-id" => vec![super::OWNER_ID.into()],
            // AWS matches `association.main=false` on tables that are not main.
            "association.main" => vec![self.is_main().to_string()],
            "association.subnet-id" => assocs.filter_map(|a| a.subnet_id.clone()).collect(),
            "association.route-table-association-id" => assocs.map(|a| a.id.clone()).collect(),
            "association.route-table-id" if !self.associations.is_empty() => {
                vec![self.id.clone()]
            }
            "route.destination-cidr-block" => routes
                .filter_map(|r| r.destination.cidr())
                .map(|c| c.to_string())
                .collect(),
            "route.destination-prefix-list-id" => routes
                .filter_map(|r| match &r.destination {
                    Destination::PrefixList(id) => Some(id.clone()),
                    Destination::Cidr(_) => None,
                })
                .collect(),
            "route.gateway-id" => by_target("GatewayId"),
            "route.nat-gateway-id" => by_target("NatGatewayId"),
            "route.network-interface-id" => by_target("NetworkInterfaceId"),
            "route.vpc-peering-connection-id" => by_target("VpcPeeringConnectionId"),
            // A route to an interface attached to an instance names that instance too.
            "route.instance-id" => by_target("NetworkInterfaceId")
                .iter()
                .filter_map(|eni| state.enis.get(eni)?.attachment.as_ref())
                .map(|a| a.instance_id.clone())
                .collect(),
            "route.origin" => routes.map(|r| r.origin.as_str().to_string()).collect(),
            "route.state" => routes
                .map(|r| route_state(state, &self.vpc_id, r).to_string())
                .collect(),
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
    use super::super::internet_gateway::{
        attach_internet_gateway, create_internet_gateway, delete_internet_gateway,
        detach_internet_gateway,
    };
    use super::super::subnet::{create_subnet, delete_subnet};
    use super::super::vpc::{create_vpc, delete_vpc};
    use super::*;

    fn setup() -> (Txn, String, String) {
        let mut txn = Txn::new(State::new(), 1_700_000_000);
        let vpc = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let s = create_subnet(&mut txn, &vpc.id, "10.0.1.0/24", None, Tags::new()).unwrap();
        (txn, vpc.id, s.id)
    }

    fn main_of(txn: &Txn, vpc: &str) -> RouteTable {
        txn.state
            .route_tables
            .values()
            .find(|r| r.vpc_id == vpc && r.is_main())
            .map(|r| (**r).clone())
            .unwrap()
    }

    fn gw(id: &str) -> TargetSpec {
        TargetSpec {
            gateway_id: Some(id.into()),
            ..Default::default()
        }
    }

    #[test]
    fn vpc_gets_main_table_with_local_route_and_takes_it_along() {
        let (mut txn, vpc, subnet) = setup();
        let main = main_of(&txn, &vpc);
        assert_eq!(main.routes.len(), 1);
        assert_eq!(main.routes[0].destination.to_string(), "10.0.0.0/16");
        assert_eq!(main.routes[0].target, Target::Local);
        assert_eq!(route_state(&txn.state, &vpc, &main.routes[0]), "active");
        assert_eq!(
            delete_route_table(&mut txn, &main.id).unwrap_err().code,
            "DependencyViolation"
        );
        let custom = create_route_table(&mut txn, &vpc, Tags::new()).unwrap();
        delete_subnet(&mut txn, &subnet).unwrap();
        assert_eq!(
            delete_vpc(&mut txn, &vpc).unwrap_err().code,
            "DependencyViolation"
        );
        delete_route_table(&mut txn, &custom.id).unwrap();
        delete_vpc(&mut txn, &vpc).unwrap();
        assert!(txn.state.route_tables.is_empty());
        assert!(txn.writes.iter().any(
            |w| matches!(w, super::super::Write::Delete { table: super::super::Table::RouteTables, key } if *key == main.id)
        ));
    }

    #[test]
    fn client_token_makes_create_idempotent() {
        let (mut txn, vpc, _subnet) = setup();
        let a = create_route_table_with_token(&mut txn, &vpc, Tags::new(), Some("t")).unwrap();
        let b = create_route_table_with_token(&mut txn, &vpc, Tags::new(), Some("t")).unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(
            txn.state.route_tables.len(),
            2,
            "the main table and one more"
        );
        let other = create_vpc(&mut txn, "10.1.0.0/16", None, Tags::new()).unwrap();
        assert_eq!(
            create_route_table_with_token(&mut txn, &other.id, Tags::new(), Some("t"))
                .unwrap_err()
                .code,
            "IdempotentParameterMismatch"
        );
    }

    #[test]
    fn older_vpcs_get_a_main_table_once() {
        let (mut txn, vpc, _subnet) = setup();
        let main = main_of(&txn, &vpc);
        txn.delete::<RouteTable>(&main.id);
        assert_eq!(ensure_main_tables(&mut txn).unwrap(), 1);
        let again = main_of(&txn, &vpc);
        assert_eq!(again.routes[0].destination.to_string(), "10.0.0.0/16");
        assert_eq!(ensure_main_tables(&mut txn).unwrap(), 0);
    }

    #[test]
    fn routes_create_replace_delete_and_blackhole() {
        let (mut txn, vpc, _subnet) = setup();
        let rtb = create_route_table(&mut txn, &vpc, Tags::new()).unwrap();
        let igw = create_internet_gateway(&mut txn, Tags::new()).unwrap();
        let code = |r: Result<(), ApiError>| r.unwrap_err().code;
        // Not attached to this VPC yet.
        assert_eq!(
            code(create_route(&mut txn, &rtb.id, "0.0.0.0/0", &gw(&igw.id))),
            "InvalidParameterValue"
        );
        attach_internet_gateway(&mut txn, &igw.id, &vpc).unwrap();
        create_route(&mut txn, &rtb.id, "0.0.0.0/0", &gw(&igw.id)).unwrap();
        assert_eq!(
            code(create_route(&mut txn, &rtb.id, "0.0.0.0/0", &gw(&igw.id))),
            "RouteAlreadyExists"
        );
        assert_eq!(
            code(create_route(&mut txn, &rtb.id, "10.0.0.0/16", &gw(&igw.id))),
            "RouteAlreadyExists"
        );
        assert_eq!(
            code(create_route(
                &mut txn,
                &rtb.id,
                "10.9.0.0/16",
                &TargetSpec::default()
            )),
            "MissingParameter"
        );
        assert_eq!(
            code(create_route(
                &mut txn,
                &rtb.id,
                "10.9.0.0/16",
                &TargetSpec {
                    vpc_peering_connection_id: Some("pcx-0123456789abcdef0".into()),
                    ..Default::default()
                }
            )),
            "InvalidVpcPeeringConnectionID.NotFound"
        );
        assert_eq!(
            code(create_route(
                &mut txn,
                &rtb.id,
                "10.9.0.0/16",
                &gw("igw-0123456789abcdef0")
            )),
            "InvalidInternetGatewayID.NotFound"
        );
        assert_eq!(
            code(create_route(
                &mut txn,
                "rtb-0123456789abcdef0",
                "10.9.0.0/16",
                &gw(&igw.id)
            )),
            "InvalidRouteTableID.NotFound"
        );
        let e = replace_route(&mut txn, &rtb.id, "10.8.0.0/16", &gw(&igw.id)).unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue");
        assert_eq!(
            e.message,
            "There is no route defined for '10.8.0.0/16' in the route table. Use CreateRoute instead."
        );
        // Replace the default route with itself; the local route only takes `local`.
        replace_route(&mut txn, &rtb.id, "0.0.0.0/0", &gw(&igw.id)).unwrap();
        assert_eq!(
            code(replace_route(
                &mut txn,
                &rtb.id,
                "10.0.0.0/16",
                &gw(&igw.id)
            )),
            "InvalidParameterValue"
        );
        replace_route(&mut txn, &rtb.id, "10.0.0.0/16", &gw("local")).unwrap();
        assert_eq!(
            code(delete_route(&mut txn, &rtb.id, "10.0.0.0/16")),
            "InvalidParameterValue"
        );
        // Detached gateway: blackhole.
        let state = |txn: &Txn| {
            let r = &txn.state.route_tables[&rtb.id];
            route_state(&txn.state, &vpc, &r.routes[1])
        };
        assert_eq!(state(&txn), "active");
        detach_internet_gateway(&mut txn, &igw.id, &vpc).unwrap();
        assert_eq!(state(&txn), "blackhole");
        delete_internet_gateway(&mut txn, &igw.id).unwrap();
        assert_eq!(state(&txn), "blackhole");
        let r = txn.state.route_tables[&rtb.id].clone();
        let f = |name: &str, v: &str| Filter {
            name: name.into(),
            values: vec![v.into()],
        };
        assert!(matches(&*r, &txn.state, &[f("route.state", "blackhole")]));
        assert!(matches(&*r, &txn.state, &[f("route.gateway-id", "igw-*")]));
        assert!(matches(
            &*r,
            &txn.state,
            &[f("route.destination-cidr-block", "0.0.0.0/0")]
        ));
        assert!(!matches(&*r, &txn.state, &[f("association.main", "true")]));
        delete_route(&mut txn, &rtb.id, "0.0.0.0/0").unwrap();
        assert_eq!(
            code(delete_route(&mut txn, &rtb.id, "0.0.0.0/0")),
            "InvalidRoute.NotFound"
        );
        assert_eq!(txn.state.route_tables[&rtb.id].routes.len(), 1);
    }

    #[test]
    fn associations() {
        let (mut txn, vpc, subnet) = setup();
        let rtb = create_route_table(&mut txn, &vpc, Tags::new()).unwrap();
        let a = associate_route_table(&mut txn, &rtb.id, &subnet).unwrap();
        assert!(a.starts_with("rtbassoc-"));
        let other = create_route_table(&mut txn, &vpc, Tags::new()).unwrap();
        assert_eq!(
            associate_route_table(&mut txn, &other.id, &subnet)
                .unwrap_err()
                .code,
            "Resource.AlreadyAssociated"
        );
        let vpc2 = create_vpc(&mut txn, "10.1.0.0/16", None, Tags::new()).unwrap();
        let rtb2 = create_route_table(&mut txn, &vpc2.id, Tags::new()).unwrap();
        assert_eq!(
            associate_route_table(&mut txn, &rtb2.id, &subnet)
                .unwrap_err()
                .code,
            "InvalidParameterValue"
        );
        assert_eq!(
            delete_route_table(&mut txn, &rtb.id).unwrap_err().code,
            "DependencyViolation"
        );
        // Move the subnet to the other table.
        let b = replace_route_table_association(&mut txn, &a, &other.id).unwrap();
        assert_ne!(a, b);
        assert!(txn.state.route_tables[&rtb.id].associations.is_empty());
        assert_eq!(
            subnet_association(&txn.state, &subnet),
            Some((other.id.clone(), b.clone()))
        );
        assert_eq!(
            disassociate_route_table(&mut txn, &a).unwrap_err().code,
            "InvalidAssociationID.NotFound"
        );
        disassociate_route_table(&mut txn, &b).unwrap();
        assert_eq!(subnet_association(&txn.state, &subnet), None);
        // The main association can be moved but not removed.
        let main = main_of(&txn, &vpc);
        let main_assoc = main.associations[0].id.clone();
        assert_eq!(
            disassociate_route_table(&mut txn, &main_assoc)
                .unwrap_err()
                .code,
            "InvalidParameterValue"
        );
        let m2 = replace_route_table_association(&mut txn, &main_assoc, &rtb.id).unwrap();
        assert_eq!(main_of(&txn, &vpc).id, rtb.id);
        assert!(main_of(&txn, &vpc)
            .associations
            .iter()
            .any(|a| a.id == m2 && a.main));
        // The old main table is now an ordinary one and can go.
        delete_route_table(&mut txn, &main.id).unwrap();
        // Deleting a subnet drops its association.
        associate_route_table(&mut txn, &other.id, &subnet).unwrap();
        delete_subnet(&mut txn, &subnet).unwrap();
        assert!(txn.state.route_tables[&other.id].associations.is_empty());
    }
}
