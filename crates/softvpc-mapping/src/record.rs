//! The records the mapping protocol carries, typed, and their protobuf form.
//!
//! Converting untrusted protobuf into records is checked field by field ([`RecordError`]);
//! converting records into protobuf cannot fail. `from_pb(to_pb(r)) == r` for every valid
//! record (a property test says so).

use std::net::Ipv4Addr;
use std::sync::Arc;

use imbl::OrdMap;
use ipnet::Ipv4Net;
use softvpc_policy::conntrack::ConnectionTrackingSpec;
use softvpc_proto::pb;

use crate::flowlog::FlowLogSpec;
use crate::policy::{
    NetworkAclRecord, PeeringRecord, PrefixListRecord, RouteTableRecord, SecurityGroupRecord,
};

/// An Ethernet MAC address.
pub type Mac = [u8; 6];

/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;

/// A registered host (where an agent runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    /// `h-...`.
    pub host_id: String,
    /// The name it registered with.
    pub name: String,
    /// Where it receives VXLAN.
    pub underlay_ip: Ipv4Addr,
}

/// A VPC: its VNI and CIDR blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcRecord {
    /// `vpc-...`.
    pub vpc_id: String,
    /// Its VXLAN network identifier (24 bits).
    pub vni: u32,
    /// Its CIDR blocks (network addresses).
    pub cidrs: Vec<Ipv4Net>,
    /// Its instance services (DNS attributes, DHCP option set).
    pub services: crate::services::VpcServices,
}

/// A subnet of a VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetRecord {
    /// `subnet-...`.
    pub subnet_id: String,
    /// The VPC it belongs to.
    pub vpc_id: String,
    /// Its CIDR block (network address).
    pub cidr: Ipv4Net,
}

/// A public address mapped to a private address of an ENI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicAddress {
    /// The public (Elastic or automatic) address.
    pub public_ip: Ipv4Addr,
    /// The ENI's private address it maps to.
    pub private_ip: Ipv4Addr,
}

/// An ENI and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniRecord {
    /// `eni-...`.
    pub eni_id: String,
    /// The VPC it belongs to.
    pub vpc_id: String,
    /// Its VPC's VNI.
    pub vni: u32,
    /// The subnet it belongs to.
    pub subnet_id: String,
    /// Primary private address.
    pub ip: Ipv4Addr,
    /// Secondary private addresses, in assignment order.
    pub secondary_ips: Vec<Ipv4Addr>,
    /// Its MAC address.
    pub mac: Mac,
    /// The host it is placed on (empty: none, e.g. detached or its instance stopped).
    pub host_id: String,
    /// That host's underlay address (None: not placed).
    pub host_underlay_ip: Option<Ipv4Addr>,
    /// The instance it is attached to (empty: detached).
    pub instance_id: String,
    /// The instance's Name tag (may be empty).
    pub instance_name: String,
    /// The attachment's device index (0: the instance's `eth0`).
    pub device_index: u32,
    /// The security groups it is a member of.
    pub security_group_ids: Vec<String>,
    /// The public addresses mapped to its private ones: primary address first.
    pub public_addresses: Vec<PublicAddress>,
    /// AWS's `SourceDestCheck` (on unless turned off for a NAT instance or a firewall).
    pub source_dest_check: bool,
    /// Its connection tracking idle timeouts (`None`: AWS's default).
    pub connection_tracking: ConnectionTrackingSpec,
    /// The flow logs recording its traffic (its own, its subnet's, its VPC's); empty unless it
    /// is placed on a host.
    pub flow_logs: Vec<FlowLogSpec>,
    /// The NAT gateway whose ENI this is (empty for any other ENI): its host translates.
    pub nat_gateway_id: String,
    /// What its host's metadata service serves about its instance (`None` unless it is
    /// attached to an instance placed on a host).
    pub instance_metadata: Option<Box<crate::metadata::InstanceMetadata>>,
}

/// One change of the records. Deleting a VPC also deletes its subnets, ENIs, network ACLs, route
/// tables and security groups, and the peering connections that no longer involve a held VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Adds or replaces a host.
    UpsertHost(HostRecord),
    /// Removes a host.
    DeleteHost(String),
    /// Adds or replaces a VPC.
    UpsertVpc(VpcRecord),
    /// Removes a VPC with its subnets and ENIs.
    DeleteVpc(String),
    /// Adds or replaces a subnet.
    UpsertSubnet(SubnetRecord),
    /// Removes a subnet.
    DeleteSubnet {
        /// The subnet.
        subnet_id: String,
        /// Its VPC (so a host's feed can filter it; not sent).
        vpc_id: String,
    },
    /// Adds or replaces an ENI.
    UpsertEni(EniRecord),
    /// Removes an ENI.
    DeleteEni {
        /// The ENI.
        eni_id: String,
        /// Its VPC (so a host's feed can filter it; not sent).
        vpc_id: String,
    },
    /// Adds or replaces a security group (with all its rules).
    UpsertSecurityGroup(SecurityGroupRecord),
    /// Removes a security group.
    DeleteSecurityGroup(String),
    /// Adds or replaces a network ACL.
    UpsertNetworkAcl(NetworkAclRecord),
    /// Removes a network ACL.
    DeleteNetworkAcl {
        /// The ACL.
        acl_id: String,
        /// Its VPC (so a host's feed can filter it; not sent).
        vpc_id: String,
    },
    /// Adds or replaces a route table.
    UpsertRouteTable(RouteTableRecord),
    /// Removes a route table.
    DeleteRouteTable {
        /// The table.
        table_id: String,
        /// Its VPC (so a host's feed can filter it; not sent).
        vpc_id: String,
    },
    /// Adds or replaces a peering connection.
    UpsertPeering(PeeringRecord),
    /// Removes a peering connection.
    DeletePeering {
        /// The connection.
        pcx_id: String,
        /// Its two VPCs (so a host's feed can filter it; not sent).
        vpc_ids: [String; 2],
    },
    /// Adds or replaces a managed prefix list (every host holds every list).
    UpsertPrefixList(PrefixListRecord),
    /// Removes a managed prefix list.
    DeletePrefixList(String),
}

/// Which hosts a change concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Every host (hosts themselves).
    All,
    /// Hosts holding this VPC.
    Vpc(&'a str),
    /// Hosts holding either VPC (a peering connection).
    Vpcs(&'a str, &'a str),
    /// Hosts with an ENI in this security group.
    Group(&'a str),
}

impl Change {
    /// Which hosts the change concerns.
    pub fn scope(&self) -> Scope<'_> {
        match self {
            Change::UpsertHost(_)
            | Change::DeleteHost(_)
            | Change::UpsertPrefixList(_)
            | Change::DeletePrefixList(_) => Scope::All,
            Change::UpsertVpc(v) => Scope::Vpc(&v.vpc_id),
            Change::DeleteVpc(id) => Scope::Vpc(id),
            Change::UpsertSubnet(s) => Scope::Vpc(&s.vpc_id),
            Change::DeleteSubnet { vpc_id, .. }
            | Change::DeleteEni { vpc_id, .. }
            | Change::DeleteNetworkAcl { vpc_id, .. }
            | Change::DeleteRouteTable { vpc_id, .. } => Scope::Vpc(vpc_id),
            Change::UpsertEni(e) => Scope::Vpc(&e.vpc_id),
            Change::UpsertNetworkAcl(a) => Scope::Vpc(&a.vpc_id),
            Change::UpsertRouteTable(t) => Scope::Vpc(&t.vpc_id),
            Change::UpsertSecurityGroup(g) => Scope::Group(&g.group_id),
            Change::DeleteSecurityGroup(id) => Scope::Group(id),
            Change::UpsertPeering(p) => Scope::Vpcs(&p.requester_vpc_id, &p.accepter_vpc_id),
            Change::DeletePeering { vpc_ids, .. } => Scope::Vpcs(&vpc_ids[0], &vpc_ids[1]),
        }
    }

    /// The protobuf form.
    pub fn to_pb(&self) -> pb::Change {
        use pb::change::Kind;
        let kind = match self {
            Change::UpsertHost(h) => Kind::UpsertHost(h.to_pb()),
            Change::DeleteHost(id) => Kind::DeleteHostId(id.clone()),
            Change::UpsertVpc(v) => Kind::UpsertVpc(v.to_pb()),
            Change::DeleteVpc(id) => Kind::DeleteVpcId(id.clone()),
            Change::UpsertSubnet(s) => Kind::UpsertSubnet(s.to_pb()),
            Change::DeleteSubnet { subnet_id, .. } => Kind::DeleteSubnetId(subnet_id.clone()),
            Change::UpsertEni(e) => Kind::UpsertEni(e.to_pb()),
            Change::DeleteEni { eni_id, .. } => Kind::DeleteEniId(eni_id.clone()),
            Change::UpsertSecurityGroup(g) => Kind::UpsertSecurityGroup(g.to_pb()),
            Change::DeleteSecurityGroup(id) => Kind::DeleteSecurityGroupId(id.clone()),
            Change::UpsertNetworkAcl(a) => Kind::UpsertNetworkAcl(a.to_pb()),
            Change::DeleteNetworkAcl { acl_id, .. } => Kind::DeleteNetworkAclId(acl_id.clone()),
            Change::UpsertRouteTable(t) => Kind::UpsertRouteTable(t.to_pb()),
            Change::DeleteRouteTable { table_id, .. } => Kind::DeleteRouteTableId(table_id.clone()),
            Change::UpsertPeering(p) => Kind::UpsertPeeringConnection(p.to_pb()),
            Change::DeletePeering { pcx_id, .. } => Kind::DeletePeeringConnectionId(pcx_id.clone()),
            Change::UpsertPrefixList(p) => Kind::UpsertPrefixList(p.to_pb()),
            Change::DeletePrefixList(id) => Kind::DeletePrefixListId(id.clone()),
        };
        pb::Change { kind: Some(kind) }
    }

    /// The change a protobuf change says (None: an empty change, or a kind from a newer
    /// protocol). Deletes come without their VPC (the agent does not need it).
    pub fn from_pb(c: &pb::Change) -> Result<Option<Change>, RecordError> {
        use pb::change::Kind;
        let Some(kind) = &c.kind else {
            return Ok(None);
        };
        Ok(Some(match kind {
            Kind::UpsertHost(h) => Change::UpsertHost(HostRecord::from_pb(h)?),
            Kind::DeleteHostId(id) => Change::DeleteHost(id.clone()),
            Kind::UpsertVpc(v) => Change::UpsertVpc(VpcRecord::from_pb(v)?),
            Kind::DeleteVpcId(id) => Change::DeleteVpc(id.clone()),
            Kind::UpsertSubnet(s) => Change::UpsertSubnet(SubnetRecord::from_pb(s)?),
            Kind::DeleteSubnetId(id) => Change::DeleteSubnet {
                subnet_id: id.clone(),
                vpc_id: String::new(),
            },
            Kind::UpsertEni(e) => Change::UpsertEni(EniRecord::from_pb(e)?),
            Kind::DeleteEniId(id) => Change::DeleteEni {
                eni_id: id.clone(),
                vpc_id: String::new(),
            },
            Kind::UpsertSecurityGroup(g) => {
                Change::UpsertSecurityGroup(SecurityGroupRecord::from_pb(g)?)
            }
            Kind::DeleteSecurityGroupId(id) => Change::DeleteSecurityGroup(id.clone()),
            Kind::UpsertNetworkAcl(a) => Change::UpsertNetworkAcl(NetworkAclRecord::from_pb(a)?),
            Kind::DeleteNetworkAclId(id) => Change::DeleteNetworkAcl {
                acl_id: id.clone(),
                vpc_id: String::new(),
            },
            Kind::UpsertRouteTable(t) => Change::UpsertRouteTable(RouteTableRecord::from_pb(t)?),
            Kind::DeleteRouteTableId(id) => Change::DeleteRouteTable {
                table_id: id.clone(),
                vpc_id: String::new(),
            },
            Kind::UpsertPeeringConnection(p) => Change::UpsertPeering(PeeringRecord::from_pb(p)?),
            Kind::DeletePeeringConnectionId(id) => Change::DeletePeering {
                pcx_id: id.clone(),
                vpc_ids: Default::default(),
            },
            Kind::UpsertPrefixList(p) => Change::UpsertPrefixList(PrefixListRecord::from_pb(p)?),
            Kind::DeletePrefixListId(id) => Change::DeletePrefixList(id.clone()),
        }))
    }
}

/// A set of records by id: what one agent holds, or (in tests) everything.
///
/// The maps are persistent (`imbl::OrdMap`, ordered by id like a `BTreeMap`) and hold each
/// record behind an `Arc`: a clone shares everything (O(1)), and a change applied to a clone
/// copies only the few tree nodes on its path, never the whole view (the agent applies Deltas
/// while `/mappings` and its checkpoint still hold the previous view). Edit a record in place
/// with `Arc::make_mut(map.get_mut(id)?)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    /// Hosts by id.
    pub hosts: OrdMap<String, Arc<HostRecord>>,
    /// VPCs by id.
    pub vpcs: OrdMap<String, Arc<VpcRecord>>,
    /// Subnets by id.
    pub subnets: OrdMap<String, Arc<SubnetRecord>>,
    /// ENIs by id.
    pub enis: OrdMap<String, Arc<EniRecord>>,
    /// Security groups by id.
    pub security_groups: OrdMap<String, Arc<SecurityGroupRecord>>,
    /// Network ACLs by id.
    pub network_acls: OrdMap<String, Arc<NetworkAclRecord>>,
    /// Route tables by id.
    pub route_tables: OrdMap<String, Arc<RouteTableRecord>>,
    /// Peering connections by id.
    pub peerings: OrdMap<String, Arc<PeeringRecord>>,
    /// Managed prefix lists by id.
    pub prefix_lists: OrdMap<String, Arc<PrefixListRecord>>,
}

impl Records {
    /// Applies one change. Deleting a VPC also drops its subnets, ENIs, ACLs, route tables and
    /// groups, and the peering connections left without a held VPC (the protocol says so);
    /// deleting something not held is a no-op.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::UpsertHost(h) => {
                self.hosts.insert(h.host_id.clone(), Arc::new(h.clone()));
            }
            Change::DeleteHost(id) => {
                self.hosts.remove(id);
            }
            Change::UpsertVpc(v) => {
                self.vpcs.insert(v.vpc_id.clone(), Arc::new(v.clone()));
            }
            Change::DeleteVpc(id) => {
                self.vpcs.remove(id);
                retain(&mut self.subnets, |s| &s.vpc_id != id);
                retain(&mut self.enis, |e| &e.vpc_id != id);
                retain(&mut self.network_acls, |a| &a.vpc_id != id);
                retain(&mut self.route_tables, |t| &t.vpc_id != id);
                retain(&mut self.security_groups, |g| &g.vpc_id != id);
                let vpcs = &self.vpcs;
                retain(&mut self.peerings, |p| {
                    vpcs.contains_key(&p.requester_vpc_id) || vpcs.contains_key(&p.accepter_vpc_id)
                });
            }
            Change::UpsertSubnet(s) => {
                self.subnets
                    .insert(s.subnet_id.clone(), Arc::new(s.clone()));
            }
            Change::DeleteSubnet { subnet_id, .. } => {
                self.subnets.remove(subnet_id);
            }
            Change::UpsertEni(e) => {
                self.enis.insert(e.eni_id.clone(), Arc::new(e.clone()));
            }
            Change::DeleteEni { eni_id, .. } => {
                self.enis.remove(eni_id);
            }
            Change::UpsertSecurityGroup(g) => {
                self.security_groups
                    .insert(g.group_id.clone(), Arc::new(g.clone()));
            }
            Change::DeleteSecurityGroup(id) => {
                self.security_groups.remove(id);
            }
            Change::UpsertNetworkAcl(a) => {
                self.network_acls
                    .insert(a.acl_id.clone(), Arc::new(a.clone()));
            }
            Change::DeleteNetworkAcl { acl_id, .. } => {
                self.network_acls.remove(acl_id);
            }
            Change::UpsertRouteTable(t) => {
                self.route_tables
                    .insert(t.table_id.clone(), Arc::new(t.clone()));
            }
            Change::DeleteRouteTable { table_id, .. } => {
                self.route_tables.remove(table_id);
            }
            Change::UpsertPeering(p) => {
                self.peerings.insert(p.pcx_id.clone(), Arc::new(p.clone()));
            }
            Change::DeletePeering { pcx_id, .. } => {
                self.peerings.remove(pcx_id);
            }
            Change::UpsertPrefixList(p) => {
                self.prefix_lists
                    .insert(p.prefix_list_id.clone(), Arc::new(p.clone()));
            }
            Change::DeletePrefixList(id) => {
                self.prefix_lists.remove(id);
            }
        }
    }

    /// The records of a snapshot, skipping (and returning) the bad ones.
    pub fn from_snapshot(s: &pb::Snapshot) -> (Records, Vec<RecordError>) {
        let mut r = Records::default();
        let mut errors = Vec::new();
        let mut keep = |c: Result<Change, RecordError>| match c {
            Ok(c) => r.apply(&c),
            Err(e) => errors.push(e),
        };
        for h in &s.hosts {
            keep(HostRecord::from_pb(h).map(Change::UpsertHost));
        }
        for v in &s.vpcs {
            keep(VpcRecord::from_pb(v).map(Change::UpsertVpc));
        }
        for sn in &s.subnets {
            keep(SubnetRecord::from_pb(sn).map(Change::UpsertSubnet));
        }
        for e in &s.enis {
            keep(EniRecord::from_pb(e).map(Change::UpsertEni));
        }
        for g in &s.security_groups {
            keep(SecurityGroupRecord::from_pb(g).map(Change::UpsertSecurityGroup));
        }
        for a in &s.network_acls {
            keep(NetworkAclRecord::from_pb(a).map(Change::UpsertNetworkAcl));
        }
        for t in &s.route_tables {
            keep(RouteTableRecord::from_pb(t).map(Change::UpsertRouteTable));
        }
        for p in &s.peering_connections {
            keep(PeeringRecord::from_pb(p).map(Change::UpsertPeering));
        }
        for p in &s.prefix_lists {
            keep(PrefixListRecord::from_pb(p).map(Change::UpsertPrefixList));
        }
        (r, errors)
    }

    /// These records as one Snapshot: [`Records::from_snapshot`] gives them back (the agent
    /// keeps its last view on disk in this form).
    pub fn to_snapshot(&self) -> pb::Snapshot {
        pb::Snapshot {
            hosts: self.hosts.values().map(|r| r.to_pb()).collect(),
            vpcs: self.vpcs.values().map(|r| r.to_pb()).collect(),
            subnets: self.subnets.values().map(|r| r.to_pb()).collect(),
            enis: self.enis.values().map(|r| r.to_pb()).collect(),
            security_groups: self.security_groups.values().map(|r| r.to_pb()).collect(),
            network_acls: self.network_acls.values().map(|r| r.to_pb()).collect(),
            route_tables: self.route_tables.values().map(|r| r.to_pb()).collect(),
            peering_connections: self.peerings.values().map(|r| r.to_pb()).collect(),
            prefix_lists: self.prefix_lists.values().map(|r| r.to_pb()).collect(),
        }
    }

    /// What a host needing VPCs `vpcs` and security groups `groups` holds: every host; the
    /// VPCs of `vpcs` (that exist) with their subnets, ENIs, ACLs and route tables; the peering
    /// connections involving one of those VPCs; and the groups of `groups`.
    pub fn restricted_to(
        &self,
        vpcs: &std::collections::BTreeSet<String>,
        groups: &std::collections::BTreeSet<String>,
    ) -> Records {
        fn pick<T>(
            m: &OrdMap<String, Arc<T>>,
            keep: impl Fn(&T) -> bool,
        ) -> OrdMap<String, Arc<T>> {
            m.iter()
                .filter(|(_, v)| keep(v))
                .map(|(k, v)| (k.clone(), Arc::clone(v)))
                .collect()
        }
        let held = pick(&self.vpcs, |v| vpcs.contains(&v.vpc_id));
        let in_held = |id: &str| held.contains_key(id);
        Records {
            hosts: self.hosts.clone(),
            prefix_lists: self.prefix_lists.clone(),
            subnets: pick(&self.subnets, |s| in_held(&s.vpc_id)),
            enis: pick(&self.enis, |e| in_held(&e.vpc_id)),
            network_acls: pick(&self.network_acls, |a| in_held(&a.vpc_id)),
            route_tables: pick(&self.route_tables, |t| in_held(&t.vpc_id)),
            peerings: pick(&self.peerings, |p| {
                in_held(&p.requester_vpc_id) || in_held(&p.accepter_vpc_id)
            }),
            security_groups: pick(&self.security_groups, |g| groups.contains(&g.group_id)),
            vpcs: held,
        }
    }
}

/// Keeps the records `keep` accepts (`OrdMap` has no `retain`): removes the others one by one,
/// so a clone of the map shares all but the paths to them.
fn retain<T>(m: &mut OrdMap<String, Arc<T>>, keep: impl Fn(&T) -> bool) {
    let gone: Vec<String> = m
        .iter()
        .filter(|(_, v)| !keep(v))
        .map(|(k, _)| k.clone())
        .collect();
    for k in gone {
        m.remove(&k);
    }
}

/// A record the agent could not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record's id is empty: it cannot be stored or deleted by id.
    #[error("{kind} record with an empty id")]
    MissingId {
        /// host, vpc, subnet or eni.
        kind: &'static str,
    },
    /// A field does not parse (bad address, CIDR, MAC or a VNI wider than 24 bits).
    #[error("{kind} {id}: bad {field} {value:?}")]
    BadField {
        /// host, vpc, subnet or eni.
        kind: &'static str,
        /// The record's id.
        id: String,
        /// The field.
        field: &'static str,
        /// What it held.
        value: String,
    },
}

fn bad(kind: &'static str, id: &str, field: &'static str, value: impl ToString) -> RecordError {
    RecordError::BadField {
        kind,
        id: id.to_string(),
        field,
        value: value.to_string(),
    }
}

pub(crate) fn require_id(kind: &'static str, id: &str) -> Result<(), RecordError> {
    if id.is_empty() {
        Err(RecordError::MissingId { kind })
    } else {
        Ok(())
    }
}

fn parse_vni(kind: &'static str, id: &str, vni: u32) -> Result<u32, RecordError> {
    if vni > MAX_VNI {
        return Err(bad(kind, id, "vni", vni));
    }
    Ok(vni)
}

fn parse_ip(
    kind: &'static str,
    id: &str,
    field: &'static str,
    s: &str,
) -> Result<Ipv4Addr, RecordError> {
    s.parse::<Ipv4Addr>().map_err(|_| bad(kind, id, field, s))
}

fn parse_net(kind: &'static str, id: &str, s: &str) -> Result<Ipv4Net, RecordError> {
    s.parse::<Ipv4Net>()
        .map(|n| n.trunc())
        .map_err(|_| bad(kind, id, "cidr", s))
}

/// Parses `aa:bb:cc:dd:ee:ff` (case-insensitive).
pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in mac.iter_mut() {
        let part = parts.next()?;
        // from_str_radix alone would accept a sign ("+f").
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &Mac) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

impl HostRecord {
    /// The protobuf form.
    pub fn to_pb(&self) -> pb::Host {
        pb::Host {
            host_id: self.host_id.clone(),
            name: self.name.clone(),
            underlay_ip: self.underlay_ip.to_string(),
        }
    }

    /// Checks and converts a protobuf host.
    pub fn from_pb(h: &pb::Host) -> Result<Self, RecordError> {
        require_id("host", &h.host_id)?;
        Ok(HostRecord {
            host_id: h.host_id.clone(),
            name: h.name.clone(),
            underlay_ip: parse_ip("host", &h.host_id, "underlay_ip", &h.underlay_ip)?,
        })
    }
}

impl VpcRecord {
    /// The protobuf form.
    pub fn to_pb(&self) -> pb::Vpc {
        pb::Vpc {
            vpc_id: self.vpc_id.clone(),
            vni: self.vni,
            cidrs: self.cidrs.iter().map(ToString::to_string).collect(),
            services: Some(self.services.to_pb()),
        }
    }

    /// Checks and converts a protobuf VPC (CIDRs are normalised to their network address).
    pub fn from_pb(v: &pb::Vpc) -> Result<Self, RecordError> {
        require_id("vpc", &v.vpc_id)?;
        Ok(VpcRecord {
            vpc_id: v.vpc_id.clone(),
            vni: parse_vni("vpc", &v.vpc_id, v.vni)?,
            cidrs: v
                .cidrs
                .iter()
                .map(|c| parse_net("vpc", &v.vpc_id, c))
                .collect::<Result<_, _>>()?,
            services: crate::services::VpcServices::from_pb(&v.vpc_id, v.services.as_ref())?,
        })
    }
}

impl SubnetRecord {
    /// The protobuf form.
    pub fn to_pb(&self) -> pb::Subnet {
        pb::Subnet {
            subnet_id: self.subnet_id.clone(),
            vpc_id: self.vpc_id.clone(),
            cidr: self.cidr.to_string(),
        }
    }

    /// Checks and converts a protobuf subnet.
    pub fn from_pb(s: &pb::Subnet) -> Result<Self, RecordError> {
        require_id("subnet", &s.subnet_id)?;
        Ok(SubnetRecord {
            subnet_id: s.subnet_id.clone(),
            vpc_id: s.vpc_id.clone(),
            cidr: parse_net("subnet", &s.subnet_id, &s.cidr)?,
        })
    }
}

impl EniRecord {
    /// The protobuf form.
    pub fn to_pb(&self) -> pb::Eni {
        pb::Eni {
            eni_id: self.eni_id.clone(),
            vpc_id: self.vpc_id.clone(),
            vni: self.vni,
            subnet_id: self.subnet_id.clone(),
            ip: self.ip.to_string(),
            secondary_ips: self.secondary_ips.iter().map(ToString::to_string).collect(),
            mac: format_mac(&self.mac),
            host_id: self.host_id.clone(),
            host_underlay_ip: self
                .host_underlay_ip
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
            instance_id: self.instance_id.clone(),
            instance_name: self.instance_name.clone(),
            device_index: self.device_index,
            security_group_ids: self.security_group_ids.clone(),
            source_dest_check_disabled: !self.source_dest_check,
            connection_tracking: Some(pb::ConnectionTracking {
                tcp_established_timeout: self
                    .connection_tracking
                    .tcp_established_timeout
                    .unwrap_or(0),
                udp_stream_timeout: self.connection_tracking.udp_stream_timeout.unwrap_or(0),
                udp_timeout: self.connection_tracking.udp_timeout.unwrap_or(0),
            }),
            public_addresses: self
                .public_addresses
                .iter()
                .map(|p| pb::PublicAddress {
                    public_ip: p.public_ip.to_string(),
                    private_ip: p.private_ip.to_string(),
                })
                .collect(),
            flow_logs: self.flow_logs.iter().map(FlowLogSpec::to_pb).collect(),
            nat_gateway_id: self.nat_gateway_id.clone(),
            instance_metadata: self.instance_metadata.as_ref().map(|m| m.to_pb()),
        }
    }

    /// Checks and converts a protobuf ENI. An empty `host_underlay_ip` means "not placed".
    pub fn from_pb(e: &pb::Eni) -> Result<Self, RecordError> {
        const K: &str = "eni";
        require_id(K, &e.eni_id)?;
        let id = &e.eni_id;
        let host_underlay_ip = if e.host_underlay_ip.is_empty() {
            None
        } else {
            Some(parse_ip(K, id, "host_underlay_ip", &e.host_underlay_ip)?)
        };
        Ok(EniRecord {
            eni_id: e.eni_id.clone(),
            vpc_id: e.vpc_id.clone(),
            vni: parse_vni(K, id, e.vni)?,
            subnet_id: e.subnet_id.clone(),
            ip: parse_ip(K, id, "ip", &e.ip)?,
            secondary_ips: e
                .secondary_ips
                .iter()
                .map(|s| parse_ip(K, id, "secondary_ip", s))
                .collect::<Result<_, _>>()?,
            mac: parse_mac(&e.mac).ok_or_else(|| bad(K, id, "mac", &e.mac))?,
            host_id: e.host_id.clone(),
            host_underlay_ip,
            instance_id: e.instance_id.clone(),
            instance_name: e.instance_name.clone(),
            device_index: e.device_index,
            security_group_ids: e.security_group_ids.clone(),
            source_dest_check: !e.source_dest_check_disabled,
            connection_tracking: {
                let c = e.connection_tracking.unwrap_or_default();
                let some = |v: u32| (v != 0).then_some(v);
                let spec = ConnectionTrackingSpec {
                    tcp_established_timeout: some(c.tcp_established_timeout),
                    udp_stream_timeout: some(c.udp_stream_timeout),
                    udp_timeout: some(c.udp_timeout),
                };
                softvpc_policy::conntrack::Timeouts::from_spec(&spec)
                    .map_err(|err| bad(K, id, "connection_tracking", err))?;
                spec
            },
            public_addresses: e
                .public_addresses
                .iter()
                .map(|p| {
                    Ok(PublicAddress {
                        public_ip: parse_ip(K, id, "public_ip", &p.public_ip)?,
                        private_ip: parse_ip(K, id, "private_ip", &p.private_ip)?,
                    })
                })
                .collect::<Result<_, _>>()?,
            flow_logs: e
                .flow_logs
                .iter()
                .map(|s| FlowLogSpec::from_pb(id, s))
                .collect::<Result<_, _>>()?,
            nat_gateway_id: e.nat_gateway_id.clone(),
            instance_metadata: e
                .instance_metadata
                .as_ref()
                .map(|m| crate::metadata::InstanceMetadata::from_pb(id, m).map(Box::new))
                .transpose()?,
        })
    }
}
