//! The policy records: security groups, network ACLs, route tables and peering connections, in
//! the plain input types of `softvpc-policy` (so the agent hands them to its engine as they are),
//! and their checked protobuf form.
//!
//! Each record is canonical: the constructors the server uses ([`sg_rule`], [`acl_entry`]) and
//! the protobuf parsers produce the same value for the same meaning (ICMP "any type" is
//! [`Ports::Any`], as for every protocol without ports), so `from_pb(to_pb(r)) == r` and the
//! server's records equal what its agents parse.

use ipnet::Ipv4Net;
use softvpc_policy::nacl::{AclEntry, Action};
use softvpc_policy::route::{Route, RouteState, Target};
use softvpc_policy::secgroup::{Peer, Ports, Protocol, RuleError, SgRule};
use softvpc_policy::Direction;
use softvpc_proto::pb;

use crate::record::{require_id, RecordError};

/// A security group of an ENI placed on the host, with all its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroupRecord {
    /// `sg-...`.
    pub group_id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Every rule, one per peer, in the order the API keeps them.
    pub rules: Vec<SgRule>,
}

/// A network ACL, its entries (without the implicit final `*` deny) and its subnets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkAclRecord {
    /// `acl-...`.
    pub acl_id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Entries of both directions, in the order the API keeps them.
    pub entries: Vec<AclEntry>,
    /// The subnets associated with it.
    pub subnet_ids: Vec<String>,
}

/// A route to a managed prefix list: one route per entry of the list as the host holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixListRoute {
    /// `pl-...`.
    pub prefix_list_id: String,
    /// Target.
    pub target: Target,
    /// Active or blackhole.
    pub state: RouteState,
}

/// A customer-managed prefix list: its current entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixListRecord {
    /// `pl-...`.
    pub prefix_list_id: String,
    /// Its CIDR blocks (network addresses), in the list's order.
    pub cidrs: Vec<Ipv4Net>,
    /// Its version.
    pub version: u64,
}

impl PrefixListRecord {
    /// The protobuf form.
    pub fn to_pb(&self) -> pb::PrefixList {
        pb::PrefixList {
            prefix_list_id: self.prefix_list_id.clone(),
            cidrs: self.cidrs.iter().map(ToString::to_string).collect(),
            version: self.version,
        }
    }

    /// Checks and converts a protobuf prefix list.
    pub fn from_pb(p: &pb::PrefixList) -> Result<Self, RecordError> {
        const K: &str = "prefix list";
        require_id(K, &p.prefix_list_id)?;
        Ok(PrefixListRecord {
            prefix_list_id: p.prefix_list_id.clone(),
            cidrs: p
                .cidrs
                .iter()
                .map(|c| parse_net(K, &p.prefix_list_id, "cidr", c))
                .collect::<Result<_, _>>()?,
            version: p.version,
        })
    }
}

/// A route table: main or not, its routes (with their state) and its explicit subnets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTableRecord {
    /// `rtb-...`.
    pub table_id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// The VPC's main table (used by subnets without an explicit association).
    pub main: bool,
    /// Its routes, the `local` one included.
    pub routes: Vec<Route>,
    /// Its routes to managed prefix lists.
    pub prefix_list_routes: Vec<PrefixListRoute>,
    /// The subnets explicitly associated with it.
    pub subnet_ids: Vec<String>,
}

/// A VPC peering connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeeringRecord {
    /// `pcx-...`.
    pub pcx_id: String,
    /// The requesting VPC.
    pub requester_vpc_id: String,
    /// Its CIDR blocks.
    pub requester_cidrs: Vec<Ipv4Net>,
    /// The accepting VPC.
    pub accepter_vpc_id: String,
    /// Its CIDR blocks.
    pub accepter_cidrs: Vec<Ipv4Net>,
    /// AWS's status code (`active`, `pending-acceptance`, ...).
    pub status: String,
}

impl PeeringRecord {
    /// Whether it carries traffic.
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }

    /// Whether `vpc_id` is one of its sides.
    pub fn involves(&self, vpc_id: &str) -> bool {
        self.requester_vpc_id == vpc_id || self.accepter_vpc_id == vpc_id
    }

    /// The other side of `vpc_id`, if it is one.
    pub fn peer_of(&self, vpc_id: &str) -> Option<&str> {
        if self.requester_vpc_id == vpc_id {
            Some(&self.accepter_vpc_id)
        } else if self.accepter_vpc_id == vpc_id {
            Some(&self.requester_vpc_id)
        } else {
            None
        }
    }
}

/// ICMP with any type matches what "every port" matches: one spelling for both.
fn canonical_ports(protocol: Protocol, ports: Ports) -> Ports {
    match (protocol, ports) {
        (_, Ports::Icmp { ty: None, .. }) => Ports::Any,
        (Protocol::All, _) => Ports::Any,
        _ => ports,
    }
}

/// A security group rule from AWS's fields (protocol as the API reports it, `FromPort`/`ToPort`
/// or ICMP type/code with `-1` for any), in canonical form.
pub fn sg_rule(
    rule_id: &str,
    group_id: &str,
    egress: bool,
    protocol: &str,
    from_port: Option<i32>,
    to_port: Option<i32>,
    peer: Peer,
) -> Result<SgRule, RuleError> {
    let dir = if egress {
        Direction::Egress
    } else {
        Direction::Ingress
    };
    let mut r = SgRule::from_aws(rule_id, group_id, dir, protocol, from_port, to_port, peer)?;
    r.ports = canonical_ports(r.protocol, r.ports);
    Ok(r)
}

/// A network ACL entry from AWS's fields, in canonical form.
pub fn acl_entry(
    rule_number: u16,
    egress: bool,
    protocol: &str,
    allow: bool,
    cidr: Ipv4Net,
    port_range: Option<(u16, u16)>,
    icmp: Option<(i32, i32)>,
) -> Result<AclEntry, RuleError> {
    let action = if allow { "allow" } else { "deny" };
    let mut e = AclEntry::from_aws(
        rule_number,
        egress,
        protocol,
        action,
        cidr,
        port_range,
        icmp,
    )?;
    e.ports = canonical_ports(e.protocol, e.ports);
    Ok(e)
}

fn protocol_number(p: Protocol) -> i32 {
    match p {
        Protocol::All => -1,
        Protocol::Number(n) => i32::from(n),
    }
}

fn port_match(protocol: Protocol, ports: Ports) -> pb::PortMatch {
    let (from_port, to_port) = match ports {
        Ports::Any => (-1, -1),
        Ports::Range { from, to } => (i32::from(from), i32::from(to)),
        Ports::Icmp { ty, code } => (ty.map_or(-1, i32::from), code.map_or(-1, i32::from)),
    };
    pb::PortMatch {
        protocol: protocol_number(protocol),
        from_port,
        to_port,
    }
}

fn bad_rule(kind: &'static str, id: &str, e: RuleError) -> RecordError {
    RecordError::BadField {
        kind,
        id: id.to_string(),
        field: "rule",
        value: e.0,
    }
}

fn parse_net(
    kind: &'static str,
    id: &str,
    field: &'static str,
    s: &str,
) -> Result<Ipv4Net, RecordError> {
    s.parse::<Ipv4Net>()
        .map(|n| n.trunc())
        .map_err(|_| RecordError::BadField {
            kind,
            id: id.to_string(),
            field,
            value: s.to_string(),
        })
}

impl SecurityGroupRecord {
    /// The protobuf form.
    pub fn to_pb(&self) -> pb::SecurityGroup {
        pb::SecurityGroup {
            group_id: self.group_id.clone(),
            vpc_id: self.vpc_id.clone(),
            rules: self
                .rules
                .iter()
                .map(|r| pb::SecurityGroupRule {
                    rule_id: r.id.clone(),
                    egress: r.direction == Direction::Egress,
                    r#match: Some(port_match(r.protocol, r.ports)),
                    peer: Some(match &r.peer {
                        Peer::Cidr(c) => pb::security_group_rule::Peer::Cidr(c.to_string()),
                        Peer::Group(g) => pb::security_group_rule::Peer::GroupId(g.clone()),
                        Peer::PrefixList(p) => {
                            pb::security_group_rule::Peer::PrefixListId(p.clone())
                        }
                    }),
                })
                .collect(),
        }
    }

    /// Checks and converts a protobuf group; one bad rule makes the whole group bad (a group
    /// missing a rule would allow less than the API says, silently).
    pub fn from_pb(g: &pb::SecurityGroup) -> Result<Self, RecordError> {
        const K: &str = "security group";
        require_id(K, &g.group_id)?;
        let id = &g.group_id;
        let rules = g
            .rules
            .iter()
            .map(|r| {
                let m = r.r#match.unwrap_or_default();
                let peer = match &r.peer {
                    Some(pb::security_group_rule::Peer::Cidr(c)) => {
                        Peer::Cidr(parse_net(K, id, "cidr", c)?)
                    }
                    Some(pb::security_group_rule::Peer::GroupId(g)) if !g.is_empty() => {
                        Peer::Group(g.clone())
                    }
                    Some(pb::security_group_rule::Peer::PrefixListId(p)) if !p.is_empty() => {
                        Peer::PrefixList(p.clone())
                    }
                    _ => {
                        return Err(bad_rule(
                            K,
                            id,
                            RuleError(format!("rule {} has no peer", r.rule_id)),
                        ))
                    }
                };
                sg_rule(
                    &r.rule_id,
                    id,
                    r.egress,
                    &m.protocol.to_string(),
                    Some(m.from_port),
                    Some(m.to_port),
                    peer,
                )
                .map_err(|e| bad_rule(K, id, e))
            })
            .collect::<Result<_, _>>()?;
        Ok(SecurityGroupRecord {
            group_id: g.group_id.clone(),
            vpc_id: g.vpc_id.clone(),
            rules,
        })
    }
}

impl NetworkAclRecord {
    /// The protobuf form.
    pub fn to_pb(&self) -> pb::NetworkAcl {
        pb::NetworkAcl {
            acl_id: self.acl_id.clone(),
            vpc_id: self.vpc_id.clone(),
            entries: self
                .entries
                .iter()
                .map(|e| pb::NetworkAclEntry {
                    rule_number: u32::from(e.rule_number),
                    egress: e.direction == Direction::Egress,
                    allow: e.action == Action::Allow,
                    cidr: e.cidr.to_string(),
                    r#match: Some(port_match(e.protocol, e.ports)),
                })
                .collect(),
            subnet_ids: self.subnet_ids.clone(),
        }
    }

    /// Checks and converts a protobuf ACL (one bad entry makes the whole ACL bad).
    pub fn from_pb(a: &pb::NetworkAcl) -> Result<Self, RecordError> {
        const K: &str = "network acl";
        require_id(K, &a.acl_id)?;
        let id = &a.acl_id;
        let entries = a
            .entries
            .iter()
            .map(|e| {
                let m = e.r#match.unwrap_or_default();
                let number = u16::try_from(e.rule_number)
                    .ok()
                    .filter(|n| (1..=32766).contains(n))
                    .ok_or_else(|| {
                        bad_rule(K, id, RuleError(format!("rule number {}", e.rule_number)))
                    })?;
                let protocol = Protocol::parse(&m.protocol.to_string());
                let port = |v: i32| {
                    u16::try_from(v)
                        .map_err(|_| bad_rule(K, id, RuleError(format!("invalid port {v}"))))
                };
                let (port_range, icmp) = match protocol {
                    Some(Protocol::Number(6 | 17)) if (m.from_port, m.to_port) == (-1, -1) => {
                        (None, None)
                    }
                    Some(Protocol::Number(6 | 17)) => {
                        (Some((port(m.from_port)?, port(m.to_port)?)), None)
                    }
                    Some(Protocol::Number(1)) => (None, Some((m.from_port, m.to_port))),
                    _ => (None, None),
                };
                acl_entry(
                    number,
                    e.egress,
                    &m.protocol.to_string(),
                    e.allow,
                    parse_net(K, id, "cidr", &e.cidr)?,
                    port_range,
                    icmp,
                )
                .map_err(|err| bad_rule(K, id, err))
            })
            .collect::<Result<_, _>>()?;
        Ok(NetworkAclRecord {
            acl_id: a.acl_id.clone(),
            vpc_id: a.vpc_id.clone(),
            entries,
            subnet_ids: a.subnet_ids.clone(),
        })
    }
}

impl RouteTableRecord {
    /// The protobuf form.
    pub fn to_pb(&self) -> pb::RouteTable {
        use pb::route::Target as T;
        let target = |t: &Target| match t {
            Target::Local => T::Local(true),
            Target::NetworkInterface(id) => T::NetworkInterfaceId(id.clone()),
            Target::VpcPeeringConnection(id) => T::VpcPeeringConnectionId(id.clone()),
            Target::InternetGateway(id) => T::GatewayId(id.clone()),
            Target::NatGateway(id) => T::NatGatewayId(id.clone()),
        };
        let cidr_routes = self.routes.iter().map(|r| pb::Route {
            destination: r.destination.to_string(),
            target: Some(target(&r.target)),
            blackhole: r.state == RouteState::Blackhole,
            destination_prefix_list_id: String::new(),
        });
        let list_routes = self.prefix_list_routes.iter().map(|r| pb::Route {
            destination: String::new(),
            target: Some(target(&r.target)),
            blackhole: r.state == RouteState::Blackhole,
            destination_prefix_list_id: r.prefix_list_id.clone(),
        });
        pb::RouteTable {
            table_id: self.table_id.clone(),
            vpc_id: self.vpc_id.clone(),
            main: self.main,
            routes: cidr_routes.chain(list_routes).collect(),
            subnet_ids: self.subnet_ids.clone(),
        }
    }

    /// Checks and converts a protobuf route table (a route without a known target makes the
    /// whole table bad: dropping the route would silently send its traffic elsewhere).
    pub fn from_pb(t: &pb::RouteTable) -> Result<Self, RecordError> {
        use pb::route::Target as T;
        const K: &str = "route table";
        require_id(K, &t.table_id)?;
        let id = &t.table_id;
        let mut prefix_list_routes = Vec::new();
        let routes = t
            .routes
            .iter()
            .filter_map(|r| {
                let state = if r.blackhole {
                    RouteState::Blackhole
                } else {
                    RouteState::Active
                };
                let target = match &r.target {
                    Some(T::Local(_)) => Target::Local,
                    Some(T::NetworkInterfaceId(x)) => Target::NetworkInterface(x.clone()),
                    Some(T::VpcPeeringConnectionId(x)) => Target::VpcPeeringConnection(x.clone()),
                    Some(T::GatewayId(x)) => Target::InternetGateway(x.clone()),
                    Some(T::NatGatewayId(x)) => Target::NatGateway(x.clone()),
                    None => {
                        return Some(Err(RecordError::BadField {
                            kind: K,
                            id: id.clone(),
                            field: "target",
                            value: r.destination.clone(),
                        }))
                    }
                };
                if !r.destination_prefix_list_id.is_empty() {
                    if !r.destination.is_empty() {
                        return Some(Err(RecordError::BadField {
                            kind: K,
                            id: id.clone(),
                            field: "destination",
                            value: r.destination.clone(),
                        }));
                    }
                    prefix_list_routes.push(PrefixListRoute {
                        prefix_list_id: r.destination_prefix_list_id.clone(),
                        target,
                        state,
                    });
                    return None;
                }
                Some(Ok((r, target, state)))
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|(r, target, state)| {
                Ok(Route {
                    destination: parse_net(K, id, "destination", &r.destination)?,
                    target,
                    state,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(RouteTableRecord {
            table_id: t.table_id.clone(),
            vpc_id: t.vpc_id.clone(),
            main: t.main,
            routes,
            prefix_list_routes,
            subnet_ids: t.subnet_ids.clone(),
        })
    }
}

impl PeeringRecord {
    /// The protobuf form.
    pub fn to_pb(&self) -> pb::PeeringConnection {
        let cidrs = |c: &[Ipv4Net]| c.iter().map(ToString::to_string).collect();
        pb::PeeringConnection {
            pcx_id: self.pcx_id.clone(),
            requester_vpc_id: self.requester_vpc_id.clone(),
            requester_cidrs: cidrs(&self.requester_cidrs),
            accepter_vpc_id: self.accepter_vpc_id.clone(),
            accepter_cidrs: cidrs(&self.accepter_cidrs),
            status: self.status.clone(),
        }
    }

    /// Checks and converts a protobuf peering connection.
    pub fn from_pb(p: &pb::PeeringConnection) -> Result<Self, RecordError> {
        const K: &str = "peering connection";
        require_id(K, &p.pcx_id)?;
        let cidrs = |c: &[String]| {
            c.iter()
                .map(|s| parse_net(K, &p.pcx_id, "cidr", s))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(PeeringRecord {
            pcx_id: p.pcx_id.clone(),
            requester_vpc_id: p.requester_vpc_id.clone(),
            requester_cidrs: cidrs(&p.requester_cidrs)?,
            accepter_vpc_id: p.accepter_vpc_id.clone(),
            accepter_cidrs: cidrs(&p.accepter_cidrs)?,
            status: p.status.clone(),
        })
    }
}
