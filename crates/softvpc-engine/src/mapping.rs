//! The mapping table: the immutable, lookup-optimised view of the mapping the data path uses.
//!
//! The shell (the agent) builds a [`MappingTable`] with a [`TableBuilder`] from what the
//! mapping service sent, after each batch of changes, and swaps it in whole (an `Arc`), so a
//! packet always sees one consistent view. The table holds only what forwarding needs:
//! `(vni, ip) -> ENI`, `port -> ENI`, `vni -> VPC`, `(vni, ip) -> subnet` for router addresses,
//! and the set of registered underlay IPs; where an ENI is (local port or remote host) is
//! resolved by the shell.
//!
//! The table also carries the policy inputs of the VPCs the host holds (security groups and the
//! member addresses of referenced groups, network ACLs, route tables, peering connections),
//! compiled by `softvpc-policy` when the table is built, and a [`Generation`] unique to this
//! build: whatever the engine cached under another table is recomputed before use. An input
//! that was not given keeps the behaviour of a table without policy: an ENI without groups
//! passes everything, a subnet without an ACL too, a VPC without route tables has its local
//! routes only.
//!
//! Every lookup is keyed by VNI first: VPCs may reuse each other's addresses and never mix.
//! Lookups are one hash-map probe with a fixed-seed `foldhash` hasher on integer keys (no
//! allocation, no string hashing on the data path).

use std::collections::{BTreeMap, HashMap, HashSet};

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ipnet::Ipv4Net;
use softvpc_policy::conntrack::{ConnectionTrackingSpec, Timeouts};
use softvpc_policy::nacl::{AclEntry, NetworkAcl};
use softvpc_policy::route::{Route, RouteState, RouteTable, Target, VpcRoutes};
use softvpc_policy::secgroup::{CompiledGroups, Members, Peer, SgRule};
use softvpc_policy::Generation;

use crate::PortId;

/// An Ethernet MAC address.
pub type Mac = [u8; 6];

/// A VXLAN network identifier (24 bits): one per VPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vni(pub u32);

impl Vni {
    /// The largest VNI (24 bits).
    pub const MAX: u32 = 0x00ff_ffff;
}

/// The MAC of a VPC's virtual router: `0a:56:50:` + the 24-bit VNI, big-endian (a locally
/// administered unicast address, so it never collides with ENI MACs `02:..`).
pub const fn router_mac(vni: Vni) -> Mac {
    let v = vni.0;
    [0x0a, 0x56, 0x50, (v >> 16) as u8, (v >> 8) as u8, v as u8]
}

/// Where an ENI's frames go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// On this host, behind this port (TAP).
    Local(PortId),
    /// On another host, reached by VXLAN to its underlay address.
    Remote(Ipv4Addr),
}

/// Index of a subnet in the table (stable for the lifetime of one [`MappingTable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubnetIdx(u32);

/// A placed ENI, as the data path needs it.
#[derive(Debug, Clone)]
pub struct EniEntry {
    /// The ENI id.
    pub eni_id: Box<str>,
    /// Its VPC's VNI.
    pub vni: Vni,
    /// Its MAC.
    pub mac: Mac,
    /// Primary private address.
    pub ip: Ipv4Addr,
    /// Secondary private addresses.
    pub secondary_ips: Box<[Ipv4Addr]>,
    /// The ENI's subnet, when the table knows it (routing through the subnet's router needs it).
    pub subnet: Option<SubnetIdx>,
    /// Where its frames go.
    pub location: Location,
    /// Its security groups' ids.
    pub security_group_ids: Box<[Box<str>]>,
    /// The rules of its groups, compiled; `None` when it has no group (everything passes).
    pub groups: Option<Arc<CompiledGroups>>,
    /// Source/destination check (on: it sends only from its own addresses and receives only
    /// for them).
    pub source_dest_check: bool,
    /// Its connection-tracking idle timeouts.
    pub timeouts: Timeouts,
}

impl EniEntry {
    /// Whether `ip` is the ENI's primary or one of its secondary addresses.
    #[inline]
    pub fn owns_ip(&self, ip: Ipv4Addr) -> bool {
        self.ip == ip || self.secondary_ips.contains(&ip)
    }
}

/// A subnet as the data path needs it.
#[derive(Debug, Clone)]
pub struct SubnetEntry {
    /// The subnet id.
    pub subnet_id: Box<str>,
    /// Its VPC's VNI.
    pub vni: Vni,
    /// Its CIDR block.
    pub cidr: Ipv4Net,
    /// Network address + 1: the VPC router's address in this subnet.
    pub router_ip: Ipv4Addr,
    /// Its network ACL, compiled; `None` when none was given (everything passes).
    pub acl: Option<Arc<NetworkAcl>>,
}

/// A VPC as the data path needs it.
#[derive(Debug, Clone)]
pub struct VpcEntry {
    /// The VPC id.
    pub vpc_id: Box<str>,
    /// Its VNI.
    pub vni: Vni,
    /// Its IPv4 CIDR blocks.
    pub cidrs: Box<[Ipv4Net]>,
    /// Its router's MAC ([`router_mac`]).
    pub router_mac: Mac,
    /// Its route tables and their subnet associations; `None` when none was given (the local
    /// routes only).
    pub routes: Option<Arc<VpcRoutes>>,
    /// Its instance services (DNS attributes, DHCP option set); `None` when none were given
    /// (AWS's defaults: DNS on, hostnames off, the engine's domain, the default option set).
    pub services: Option<Arc<VpcServices>>,
}

/// A VPC's instance services (issue 11): what its router's DHCP and DNS answer besides the
/// ENIs' own addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcServices {
    /// `enableDnsSupport`: the router answers DNS at base + 2 and 169.254.169.253.
    pub dns_support: bool,
    /// `enableDnsHostnames`: public DNS names of the VPC's instances.
    pub dns_hostnames: bool,
    /// The region's private DNS domain (`ec2.internal`, `<region>.compute.internal`).
    pub private_domain: Box<str>,
    /// The region.
    pub region: Box<str>,
    /// The DHCP option set, resolved (AmazonProvidedDNS is base + 2).
    pub dhcp: crate::layers::gateway::dhcp::OptionSet,
}

/// A VPC peering connection as the data path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeeringEntry {
    /// The `pcx-` id.
    pub pcx_id: Box<str>,
    /// The requester VPC's VNI (`None`: that VPC is not in the table).
    pub requester: Option<Vni>,
    /// The accepter VPC's VNI.
    pub accepter: Option<Vni>,
    /// Only an active connection carries traffic.
    pub active: bool,
}

impl PeeringEntry {
    /// The VPC on the other side of the connection from `vni`, if the connection joins `vni`
    /// to a VPC in the table and is active.
    pub fn peer_of(&self, vni: Vni) -> Option<Vni> {
        if !self.active {
            return None;
        }
        match (self.requester, self.accepter) {
            (Some(r), Some(a)) if r == vni => Some(a),
            (Some(r), Some(a)) if a == vni => Some(r),
            _ => None,
        }
    }
}

/// The member addresses of security groups: every address of every ENI in the table that has
/// the group, and the addresses given with [`TableBuilder::group_member`] (ENIs of groups the
/// rules reference that the host does not otherwise hold, as in peered VPCs).
#[derive(Debug, Default)]
pub struct GroupMembers {
    by_group: HashMap<Box<str>, FastSet<u32>, FastState>,
}

impl Members for GroupMembers {
    #[inline]
    fn contains(&self, group_id: &str, addr: Ipv4Addr) -> bool {
        self.by_group
            .get(group_id)
            .is_some_and(|s| s.contains(&u32::from(addr)))
    }
}

impl GroupMembers {
    fn add(&mut self, group_id: &str, addr: Ipv4Addr) {
        if let Some(set) = self.by_group.get_mut(group_id) {
            set.insert(u32::from(addr));
        } else {
            let mut set = FastSet::default();
            set.insert(u32::from(addr));
            self.by_group.insert(group_id.into(), set);
        }
    }
}

/// Every table built gets the next generation, so the engine can tell tables apart.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// The fixed-seed hasher of the table's maps: fast on small integer keys, and deterministic
/// (the engine must behave the same on every run). Keys come from the control plane, never
/// from packets, so hash flooding is not a concern.
pub(crate) type FastState = foldhash::fast::FixedState;
type FastMap<K, V> = HashMap<K, V, FastState>;
type FastSet<K> = HashSet<K, FastState>;

/// `(vni, ipv4)` packed into one integer key.
#[inline]
fn vni_ip_key(vni: Vni, ip: Ipv4Addr) -> u64 {
    (u64::from(vni.0) << 32) | u64::from(u32::from(ip))
}

/// The immutable, lookup-optimised snapshot the data path uses.
///
/// Built with [`MappingTable::builder`]; an ENI the shell left out (placed on no host, or local
/// without a port yet) is absent.
#[derive(Debug, Default)]
pub struct MappingTable {
    local_underlay_ip: Option<Ipv4Addr>,
    enis: Vec<EniEntry>,
    subnets: Vec<SubnetEntry>,
    /// `(vni, ip)` -> index into `enis`, for primary and secondary addresses.
    by_ip: FastMap<u64, u32>,
    /// Local port -> index into `enis`.
    by_port: FastMap<PortId, u32>,
    vpcs: FastMap<u32, VpcEntry>,
    /// `(vni, router ip)` -> index into `subnets`.
    routers: FastMap<u64, u32>,
    /// Underlay addresses of registered hosts (accepted VXLAN sources).
    hosts: FastSet<u32>,
    /// ENI id -> index into `enis`.
    by_id: HashMap<Box<str>, u32, FastState>,
    /// `(vni, mac)` -> index into `enis` (a frame routed to a middlebox ENI names it by MAC).
    by_mac: FastMap<(u32, Mac), u32>,
    /// `(vni, host underlay ip)` of every remote ENI with its source/destination check off:
    /// hosts that may send frames of that VPC from addresses they do not hold.
    forwarders: FastSet<u64>,
    /// Peering connections by id.
    peerings: HashMap<Box<str>, PeeringEntry, FastState>,
    /// Member addresses of security groups.
    members: GroupMembers,
    /// Public address -> (index into `enis`, the private address it maps to): what the edge
    /// translates inbound (1:1, Elastic and automatic public IPs).
    public_in: FastMap<u32, (u32, Ipv4Addr)>,
    /// `(vni, private address)` -> its public address: what the edge translates outbound.
    public_out: FastMap<u64, Ipv4Addr>,
    /// NAT gateway id -> index into `enis` of its ENI.
    nat_enis: HashMap<Box<str>, u32, FastState>,
    /// Index into `enis` of a NAT gateway's ENI -> the gateway's id.
    nat_ids: FastMap<u32, Box<str>>,
    /// This build's generation (0 for the empty default table).
    generation: Generation,
}

/// An ENI to put in the table, with its location resolved by the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedEni {
    /// The VPC it belongs to.
    pub vpc_id: String,
    /// Its own copy of the VPC's VNI (used when the VPC itself is not in the table).
    pub vni: Vni,
    /// Its subnet.
    pub subnet_id: String,
    /// Primary private address.
    pub ip: Ipv4Addr,
    /// Secondary private addresses.
    pub secondary_ips: Vec<Ipv4Addr>,
    /// Its MAC address.
    pub mac: Mac,
    /// Behind which local port, or on which remote host.
    pub location: Location,
    /// Its security groups (`sg-` ids; their rules come with [`TableBuilder::security_group`]).
    /// None: no security-group filtering for this ENI.
    pub security_group_ids: Vec<String>,
    /// Source/destination check (AWS's default: on).
    pub source_dest_check: bool,
    /// Its connection-tracking timeouts (AWS's `ConnectionTrackingSpecification`); out of
    /// bounds values are ignored (the defaults apply) and logged.
    pub conntrack: ConnectionTrackingSpec,
}

/// A security group as given to the builder.
#[derive(Debug)]
struct GroupInput {
    #[allow(dead_code)] // Kept for traces and diagnostics; rules carry the group id.
    vpc_id: String,
    rules: Vec<SgRule>,
}

/// A network ACL as given to the builder.
#[derive(Debug)]
struct AclInput {
    vpc_id: String,
    entries: Vec<AclEntry>,
    subnet_ids: Vec<String>,
}

/// A route table as given to the builder.
#[derive(Debug)]
struct RouteTableInput {
    vpc_id: String,
    main: bool,
    routes: Vec<Route>,
    subnet_ids: Vec<String>,
    /// Routes to managed prefix lists: (list id, target, state).
    list_routes: Vec<(String, Target, RouteState)>,
}

/// A group's rules with each prefix list reference replaced by one CIDR rule per entry of
/// the list (same rule id, so decisions still name it). An unknown list gives no rule: it can
/// only allow less.
fn expand_rules(lists: &BTreeMap<String, Vec<Ipv4Net>>, rules: &[SgRule]) -> Vec<SgRule> {
    let mut out = Vec::with_capacity(rules.len());
    for r in rules {
        match &r.peer {
            Peer::PrefixList(id) => {
                for cidr in lists.get(id).into_iter().flatten() {
                    out.push(SgRule {
                        peer: Peer::Cidr(*cidr),
                        ..r.clone()
                    });
                }
            }
            _ => out.push(r.clone()),
        }
    }
    out
}

/// A table's routes with its prefix list routes expanded, one route per entry (a CIDR route
/// or an earlier list with the same destination wins).
fn expand_routes(lists: &BTreeMap<String, Vec<Ipv4Net>>, t: &RouteTableInput) -> Vec<Route> {
    let mut out = t.routes.clone();
    for (id, target, state) in &t.list_routes {
        for cidr in lists.get(id).into_iter().flatten() {
            if out.iter().all(|x| x.destination != *cidr) {
                out.push(Route {
                    destination: *cidr,
                    target: target.clone(),
                    state: *state,
                });
            }
        }
    }
    out
}

/// Collects hosts, VPCs, subnets and placed ENIs, then builds the [`MappingTable`].
#[derive(Debug)]
pub struct TableBuilder {
    local_underlay_ip: Ipv4Addr,
    hosts: FastSet<u32>,
    vpcs: BTreeMap<String, (Vni, Vec<Ipv4Net>)>,
    subnets: BTreeMap<String, (String, Ipv4Net)>,
    enis: BTreeMap<String, PlacedEni>,
    groups: BTreeMap<String, GroupInput>,
    members: Vec<(String, Ipv4Addr)>,
    acls: BTreeMap<String, AclInput>,
    route_tables: BTreeMap<String, RouteTableInput>,
    peerings: BTreeMap<String, (String, String, bool)>,
    prefix_lists: BTreeMap<String, Vec<Ipv4Net>>,
    public: Vec<(String, Ipv4Addr, Ipv4Addr)>,
    nat_gateways: Vec<(String, String)>,
    services: BTreeMap<String, VpcServices>,
}

impl TableBuilder {
    /// A managed prefix list and its current entries: security group rules with the peer
    /// [`Peer::PrefixList`] and prefix list routes use them (one rule or route per entry, built
    /// into this table, so a change of the list applies from the next table on).
    pub fn prefix_list(&mut self, prefix_list_id: &str, cidrs: &[Ipv4Net]) -> &mut Self {
        self.prefix_lists
            .insert(prefix_list_id.to_string(), cidrs.to_vec());
        self
    }

    /// A route of table `table_id` (added before with [`Self::route_table`]) to every entry of
    /// a managed prefix list. A CIDR route for the same destination wins, as on AWS.
    pub fn prefix_list_route(
        &mut self,
        table_id: &str,
        prefix_list_id: &str,
        target: Target,
        state: RouteState,
    ) -> &mut Self {
        match self.route_tables.get_mut(table_id) {
            Some(t) => t
                .list_routes
                .push((prefix_list_id.to_string(), target, state)),
            None => {
                tracing::warn!(table = %table_id, list = %prefix_list_id, "prefix list route of an unknown route table ignored")
            }
        }
        self
    }

    /// A registered host's underlay address (an accepted VXLAN source).
    pub fn host(&mut self, underlay_ip: Ipv4Addr) -> &mut Self {
        self.hosts.insert(u32::from(underlay_ip));
        self
    }

    /// A VPC.
    pub fn vpc(&mut self, vpc_id: &str, vni: Vni, cidrs: &[Ipv4Net]) -> &mut Self {
        self.vpcs.insert(vpc_id.to_string(), (vni, cidrs.to_vec()));
        self
    }

    /// The instance services of VPC `vpc_id` (without: AWS's defaults).
    pub fn vpc_services(&mut self, vpc_id: &str, services: VpcServices) -> &mut Self {
        self.services.insert(vpc_id.to_string(), services);
        self
    }

    /// A subnet of a VPC (its router address is the network address + 1).
    pub fn subnet(&mut self, subnet_id: &str, vpc_id: &str, cidr: Ipv4Net) -> &mut Self {
        self.subnets
            .insert(subnet_id.to_string(), (vpc_id.to_string(), cidr));
        self
    }

    /// A public address (Elastic or automatic) mapped 1:1 to `private_ip`, an address of ENI
    /// `eni_id` (the internet gateway's translation). Ignored unless the ENI is in the table
    /// and holds `private_ip`; a public address given twice keeps its first mapping.
    pub fn public_address(
        &mut self,
        eni_id: &str,
        public_ip: Ipv4Addr,
        private_ip: Ipv4Addr,
    ) -> &mut Self {
        self.public
            .push((eni_id.to_string(), public_ip, private_ip));
        self
    }

    /// NAT gateway `nat_id`'s ENI is `eni_id` (added with [`Self::eni`]): routes to the
    /// gateway go to that ENI, and the host holding it translates (`crate::natgw`). Ignored
    /// unless the ENI is in the table.
    pub fn nat_gateway(&mut self, nat_id: &str, eni_id: &str) -> &mut Self {
        self.nat_gateways
            .push((nat_id.to_string(), eni_id.to_string()));
        self
    }

    /// A placed ENI (an ENI placed nowhere, or local without a port yet, is left out).
    pub fn eni(&mut self, eni_id: &str, eni: PlacedEni) -> &mut Self {
        self.enis.insert(eni_id.to_string(), eni);
        self
    }

    /// A security group of VPC `vpc_id` with all its rules (both directions).
    pub fn security_group(
        &mut self,
        group_id: &str,
        vpc_id: &str,
        rules: Vec<SgRule>,
    ) -> &mut Self {
        self.groups.insert(
            group_id.to_string(),
            GroupInput {
                vpc_id: vpc_id.to_string(),
                rules,
            },
        );
        self
    }

    /// An address of an ENI that has group `group_id`, for rules that reference the group
    /// (ENIs in the table count without this; use it for the others, e.g. in peered VPCs).
    pub fn group_member(&mut self, group_id: &str, ip: Ipv4Addr) -> &mut Self {
        self.members.push((group_id.to_string(), ip));
        self
    }

    /// A network ACL of VPC `vpc_id`, its entries (both directions) and the subnets associated
    /// with it.
    pub fn network_acl(
        &mut self,
        acl_id: &str,
        vpc_id: &str,
        entries: Vec<AclEntry>,
        subnet_ids: &[&str],
    ) -> &mut Self {
        self.acls.insert(
            acl_id.to_string(),
            AclInput {
                vpc_id: vpc_id.to_string(),
                entries,
                subnet_ids: subnet_ids.iter().map(|s| s.to_string()).collect(),
            },
        );
        self
    }

    /// A route table of VPC `vpc_id` (`main`: the VPC's main table), its routes (the local
    /// routes of the VPC's CIDRs are added unless a route replaces them) and the subnets
    /// explicitly associated with it.
    pub fn route_table(
        &mut self,
        table_id: &str,
        vpc_id: &str,
        main: bool,
        routes: Vec<Route>,
        subnet_ids: &[&str],
    ) -> &mut Self {
        self.route_tables.insert(
            table_id.to_string(),
            RouteTableInput {
                vpc_id: vpc_id.to_string(),
                main,
                routes,
                subnet_ids: subnet_ids.iter().map(|s| s.to_string()).collect(),
                list_routes: Vec::new(),
            },
        );
        self
    }

    /// A VPC peering connection; only an `active` one carries traffic.
    pub fn peering(
        &mut self,
        pcx_id: &str,
        requester_vpc_id: &str,
        accepter_vpc_id: &str,
        active: bool,
    ) -> &mut Self {
        self.peerings.insert(
            pcx_id.to_string(),
            (
                requester_vpc_id.to_string(),
                accepter_vpc_id.to_string(),
                active,
            ),
        );
        self
    }

    /// Builds the table, in time linear in what was added.
    ///
    /// Inconsistent input is tolerated (the table must always be buildable): a VPC or ENI
    /// whose VNI does not fit 24 bits and a subnet of an unknown VPC are left out; when two
    /// ENIs of one VPC claim the same address the first (by ENI id) keeps it. Each case is
    /// logged.
    pub fn build(self) -> MappingTable {
        let mut t = MappingTable {
            local_underlay_ip: Some(self.local_underlay_ip),
            enis: Vec::with_capacity(self.enis.len()),
            subnets: Vec::with_capacity(self.subnets.len()),
            by_ip: FastMap::with_capacity_and_hasher(self.enis.len(), FastState::default()),
            by_port: FastMap::with_capacity_and_hasher(self.enis.len(), FastState::default()),
            vpcs: FastMap::with_capacity_and_hasher(self.vpcs.len(), FastState::default()),
            routers: FastMap::with_capacity_and_hasher(self.subnets.len(), FastState::default()),
            hosts: self.hosts,
            by_id: HashMap::default(),
            by_mac: FastMap::default(),
            forwarders: FastSet::default(),
            peerings: HashMap::default(),
            members: GroupMembers::default(),
            public_in: FastMap::default(),
            public_out: FastMap::default(),
            nat_enis: HashMap::default(),
            nat_ids: FastMap::default(),
            generation: Generation(GENERATIONS.fetch_add(1, Ordering::Relaxed)),
        };
        let generation = t.generation;

        for (vpc_id, (vni, cidrs)) in &self.vpcs {
            if vni.0 > Vni::MAX {
                tracing::warn!(vpc = %vpc_id, vni = vni.0, "VNI wider than 24 bits; VPC ignored");
                continue;
            }
            t.vpcs.insert(
                vni.0,
                VpcEntry {
                    vpc_id: vpc_id.as_str().into(),
                    vni: *vni,
                    cidrs: cidrs.clone().into_boxed_slice(),
                    router_mac: router_mac(*vni),
                    routes: None,
                    services: self.services.get(vpc_id).cloned().map(Arc::new),
                },
            );
        }
        // Route tables, per VPC.
        let mut tables_of: BTreeMap<&str, Vec<(&str, &RouteTableInput)>> = BTreeMap::new();
        for (id, rt) in &self.route_tables {
            tables_of
                .entry(rt.vpc_id.as_str())
                .or_default()
                .push((id.as_str(), rt));
        }
        for (vpc_id, tables) in tables_of {
            let Some(vpc) = self
                .vpcs
                .get(vpc_id)
                .and_then(|(vni, _)| t.vpcs.get_mut(&vni.0))
            else {
                tracing::warn!(vpc = %vpc_id, "route tables of an unknown VPC; ignored");
                continue;
            };
            let main = tables.iter().find(|(_, rt)| rt.main).map(|(id, _)| *id);
            let compiled = tables
                .iter()
                .map(|(id, rt)| {
                    RouteTable::compile(
                        id,
                        &vpc.cidrs,
                        expand_routes(&self.prefix_lists, rt),
                        generation,
                    )
                })
                .collect();
            let associations = tables
                .iter()
                .flat_map(|(id, rt)| rt.subnet_ids.iter().map(move |s| (s.as_str(), *id)));
            vpc.routes = Some(Arc::new(VpcRoutes::new(
                compiled,
                main.unwrap_or(""),
                associations,
            )));
        }
        for (pcx_id, (requester, accepter, active)) in &self.peerings {
            let known = |id: &str| {
                self.vpcs
                    .get(id)
                    .map(|(vni, _)| *vni)
                    .filter(|v| t.vpcs.contains_key(&v.0))
            };
            t.peerings.insert(
                pcx_id.as_str().into(),
                PeeringEntry {
                    pcx_id: pcx_id.as_str().into(),
                    requester: known(requester),
                    accepter: known(accepter),
                    active: *active,
                },
            );
        }
        // Id -> VNI and id -> subnet index, hashed once (the input is keyed by strings).
        let vnis: FastMap<&str, Vni> = self
            .vpcs
            .iter()
            .map(|(id, (vni, _))| (id.as_str(), *vni))
            .collect();
        let vni_of_vpc = |vpc_id: &str| vnis.get(vpc_id).copied();

        // Network ACLs, compiled once each, by associated subnet.
        let mut acl_of: FastMap<&str, (&str, Arc<NetworkAcl>)> = FastMap::default();
        for (acl_id, acl) in &self.acls {
            let compiled = Arc::new(NetworkAcl::compile(
                acl_id,
                acl.entries.iter().cloned(),
                generation,
            ));
            for subnet in &acl.subnet_ids {
                acl_of.insert(subnet.as_str(), (acl.vpc_id.as_str(), compiled.clone()));
            }
        }
        let mut subnet_idx: FastMap<&str, SubnetIdx> =
            FastMap::with_capacity_and_hasher(self.subnets.len(), FastState::default());
        for (subnet_id, (vpc_id, cidr)) in &self.subnets {
            let Some(vni) = vni_of_vpc(vpc_id).filter(|v| t.vpcs.contains_key(&v.0)) else {
                tracing::warn!(subnet = %subnet_id, vpc = %vpc_id, "subnet of an unknown VPC; ignored");
                continue;
            };
            let cidr = cidr.trunc();
            let router_ip = Ipv4Addr::from(u32::from(cidr.network()).wrapping_add(1));
            let idx = SubnetIdx(t.subnets.len() as u32);
            t.subnets.push(SubnetEntry {
                subnet_id: subnet_id.as_str().into(),
                vni,
                cidr,
                router_ip,
                acl: match acl_of.get(subnet_id.as_str()) {
                    Some((acl_vpc, acl)) if *acl_vpc == vpc_id.as_str() => Some(acl.clone()),
                    Some(_) => {
                        tracing::warn!(subnet = %subnet_id, "network ACL of another VPC; ignored");
                        None
                    }
                    None => None,
                },
            });
            t.routers.insert(vni_ip_key(vni, router_ip), idx.0);
            subnet_idx.insert(subnet_id.as_str(), idx);
        }

        let mut compiled_groups: BTreeMap<Vec<String>, Arc<CompiledGroups>> = BTreeMap::new();
        for (eni_id, eni) in &self.enis {
            // The VPC's VNI is authoritative; the ENI's own copy covers a VPC not (yet) sent.
            let vni = vni_of_vpc(&eni.vpc_id).unwrap_or(eni.vni);
            if vni.0 > Vni::MAX {
                tracing::warn!(eni = %eni_id, vni = vni.0, "VNI wider than 24 bits; ENI ignored");
                continue;
            }
            let subnet = subnet_idx.get(eni.subnet_id.as_str()).copied().or_else(|| {
                // Fall back to the subnet of the VPC that contains the address.
                t.subnets
                    .iter()
                    .position(|s| s.vni == vni && s.cidr.contains(&eni.ip))
                    .map(|i| SubnetIdx(i as u32))
            });
            let idx = t.enis.len() as u32;
            for ip in std::iter::once(eni.ip).chain(eni.secondary_ips.iter().copied()) {
                match t.by_ip.entry(vni_ip_key(vni, ip)) {
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(idx);
                    }
                    std::collections::hash_map::Entry::Occupied(o) => {
                        tracing::warn!(
                            eni = %eni_id,
                            holder = %t.enis[*o.get() as usize].eni_id,
                            %ip,
                            vni = vni.0,
                            "address claimed by two ENIs of one VPC; the first keeps it"
                        );
                    }
                }
            }
            if let Location::Local(port) = eni.location {
                if let Some(prev) = t.by_port.insert(port, idx) {
                    tracing::warn!(
                        eni = %eni_id,
                        other = %t.enis[prev as usize].eni_id,
                        port = port.0,
                        "two ENIs on one port; the last one wins"
                    );
                }
            }
            let groups = if eni.security_group_ids.is_empty() {
                None
            } else {
                let mut ids = eni.security_group_ids.clone();
                ids.sort();
                ids.dedup();
                for g in &ids {
                    for ip in std::iter::once(eni.ip).chain(eni.secondary_ips.iter().copied()) {
                        t.members.add(g, ip);
                    }
                }
                // ENIs with the same set of groups share one compiled structure.
                let compiled = compiled_groups.entry(ids).or_insert_with_key(|ids| {
                    let rules = ids
                        .iter()
                        .filter_map(|g| self.groups.get(g))
                        .flat_map(|g| expand_rules(&self.prefix_lists, &g.rules));
                    Arc::new(CompiledGroups::compile(rules, generation))
                });
                Some(compiled.clone())
            };
            let timeouts = Timeouts::from_spec(&eni.conntrack).unwrap_or_else(|e| {
                tracing::warn!(eni = %eni_id, error = %e, "connection tracking timeouts ignored");
                Timeouts::default()
            });
            t.by_id.insert(eni_id.as_str().into(), idx);
            t.by_mac.entry((vni.0, eni.mac)).or_insert(idx);
            if let (false, Location::Remote(host)) = (eni.source_dest_check, eni.location) {
                t.forwarders.insert(vni_ip_key(vni, host));
            }
            t.enis.push(EniEntry {
                eni_id: eni_id.as_str().into(),
                vni,
                mac: eni.mac,
                ip: eni.ip,
                secondary_ips: eni.secondary_ips.clone().into_boxed_slice(),
                subnet,
                location: eni.location,
                security_group_ids: eni
                    .security_group_ids
                    .iter()
                    .map(|g| g.as_str().into())
                    .collect(),
                groups,
                source_dest_check: eni.source_dest_check,
                timeouts,
            });
        }
        for (group, ip) in &self.members {
            t.members.add(group, *ip);
        }
        for (eni_id, public, private) in &self.public {
            let Some(&idx) = t.by_id.get(eni_id.as_str()) else {
                continue;
            };
            let eni = &t.enis[idx as usize];
            if !eni.owns_ip(*private) {
                tracing::warn!(eni = %eni_id, %public, %private, "public address of an address the ENI does not hold; ignored");
                continue;
            }
            let vni = eni.vni;
            if t.public_in.contains_key(&u32::from(*public)) {
                tracing::warn!(eni = %eni_id, %public, "public address mapped twice; the first keeps it");
                continue;
            }
            t.public_in.insert(u32::from(*public), (idx, *private));
            t.public_out.insert(vni_ip_key(vni, *private), *public);
        }
        for (nat_id, eni_id) in &self.nat_gateways {
            let Some(&idx) = t.by_id.get(eni_id.as_str()) else {
                continue;
            };
            t.nat_enis.insert(nat_id.as_str().into(), idx);
            t.nat_ids.insert(idx, nat_id.as_str().into());
        }
        tracing::debug!(
            enis = t.enis.len(),
            local = t.by_port.len(),
            vpcs = t.vpcs.len(),
            subnets = t.subnets.len(),
            hosts = t.hosts.len(),
            "mapping table built"
        );
        t
    }
}

impl MappingTable {
    /// A builder for the table of the host whose underlay address is `local_underlay_ip`.
    pub fn builder(local_underlay_ip: Ipv4Addr) -> TableBuilder {
        TableBuilder {
            local_underlay_ip,
            hosts: FastSet::default(),
            vpcs: BTreeMap::new(),
            subnets: BTreeMap::new(),
            enis: BTreeMap::new(),
            groups: BTreeMap::new(),
            members: Vec::new(),
            acls: BTreeMap::new(),
            route_tables: BTreeMap::new(),
            peerings: BTreeMap::new(),
            prefix_lists: BTreeMap::new(),
            public: Vec::new(),
            nat_gateways: Vec::new(),
            services: BTreeMap::new(),
        }
    }

    /// The ENI of NAT gateway `nat_id`, if it is placed.
    #[inline]
    pub fn nat_gateway_eni(&self, nat_id: &str) -> Option<&EniEntry> {
        let &idx = self.nat_enis.get(nat_id)?;
        self.enis.get(idx as usize)
    }

    /// The NAT gateways whose ENI is on this host: their port, id and ENI.
    pub fn local_nat_gateways(&self) -> impl Iterator<Item = (PortId, &str, &EniEntry)> {
        self.nat_ids.iter().filter_map(|(&idx, id)| {
            let e = self.enis.get(idx as usize)?;
            match e.location {
                Location::Local(p) => Some((p, &**id, e)),
                Location::Remote(_) => None,
            }
        })
    }

    /// The ENI a public address maps to and the private address it stands for.
    #[inline]
    pub fn by_public_ip(&self, public_ip: Ipv4Addr) -> Option<(&EniEntry, Ipv4Addr)> {
        let &(idx, private) = self.public_in.get(&u32::from(public_ip))?;
        Some((self.enis.get(idx as usize)?, private))
    }

    /// The public address of private address `ip` of VPC `vni`, if it has one.
    #[inline]
    pub fn public_ip_of(&self, vni: Vni, ip: Ipv4Addr) -> Option<Ipv4Addr> {
        self.public_out.get(&vni_ip_key(vni, ip)).copied()
    }

    /// Every public address of a local ENI, with that ENI (what the edge answers ARP for).
    pub fn local_public_ips(&self) -> impl Iterator<Item = (Ipv4Addr, &EniEntry)> {
        self.public_in.iter().filter_map(|(&p, &(idx, _))| {
            let e = self.enis.get(idx as usize)?;
            matches!(e.location, Location::Local(_)).then_some((Ipv4Addr::from(p), e))
        })
    }

    /// This build's generation: unique per [`TableBuilder::build`] (0 for the empty default
    /// table). What the engine caches under one table is recomputed under another.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The member addresses of security groups (for rules that reference groups).
    pub fn members(&self) -> &GroupMembers {
        &self.members
    }

    /// A peering connection by id.
    pub fn peering(&self, pcx_id: &str) -> Option<&PeeringEntry> {
        self.peerings.get(pcx_id)
    }

    /// The private address of VPC `vni`'s ENI that public address `public_ip` maps to, if the
    /// table knows one (the DNS split horizon).
    pub fn private_of_public(&self, vni: Vni, public_ip: Ipv4Addr) -> Option<Ipv4Addr> {
        self.by_public_ip(public_ip)
            .filter(|(eni, _)| eni.vni == vni)
            .map(|(_, private)| private)
    }

    /// The ENI of VPC `vni` whose MAC is `mac`.
    #[inline]
    pub fn eni_by_mac(&self, vni: Vni, mac: Mac) -> Option<&EniEntry> {
        let &idx = self.by_mac.get(&(vni.0, mac))?;
        self.enis.get(idx as usize)
    }

    /// Whether the host at `underlay_ip` holds an ENI of VPC `vni` with its source/destination
    /// check off (a NAT instance, a firewall): it may forward that VPC's traffic for others.
    #[inline]
    pub fn forwards_for(&self, vni: Vni, underlay_ip: Ipv4Addr) -> bool {
        self.forwarders.contains(&vni_ip_key(vni, underlay_ip))
    }

    /// The active peering connections of VPC `vni` whose other side is in the table, with that
    /// side's VNI.
    pub fn peerings_of(&self, vni: Vni) -> impl Iterator<Item = (&PeeringEntry, Vni)> {
        self.peerings
            .values()
            .filter_map(move |p| p.peer_of(vni).map(|peer| (p, peer)))
    }

    /// The ENI with id `eni_id`.
    pub fn eni_by_id(&self, eni_id: &str) -> Option<&EniEntry> {
        let &idx = self.by_id.get(eni_id)?;
        self.enis.get(idx as usize)
    }

    /// This host's underlay address (None only for the empty default table).
    pub fn local_underlay_ip(&self) -> Option<Ipv4Addr> {
        self.local_underlay_ip
    }

    /// The ENI of VPC `vni` holding `ip` (primary or secondary), wherever it is placed.
    #[inline]
    pub fn eni_by_ip(&self, vni: Vni, ip: Ipv4Addr) -> Option<&EniEntry> {
        let &idx = self.by_ip.get(&vni_ip_key(vni, ip))?;
        self.enis.get(idx as usize)
    }

    /// The ENI attached to local `port`.
    #[inline]
    pub fn eni_on_port(&self, port: PortId) -> Option<&EniEntry> {
        let &idx = self.by_port.get(&port)?;
        self.enis.get(idx as usize)
    }

    /// The VPC whose VNI is `vni`.
    #[inline]
    pub fn vpc(&self, vni: Vni) -> Option<&VpcEntry> {
        self.vpcs.get(&vni.0)
    }

    /// A subnet by index (from [`EniEntry::subnet`]).
    #[inline]
    pub fn subnet(&self, idx: SubnetIdx) -> Option<&SubnetEntry> {
        self.subnets.get(idx.0 as usize)
    }

    /// The subnet whose router address (network + 1) in VPC `vni` is `ip`.
    #[inline]
    pub fn router_subnet(&self, vni: Vni, ip: Ipv4Addr) -> Option<&SubnetEntry> {
        let &idx = self.routers.get(&vni_ip_key(vni, ip))?;
        self.subnets.get(idx as usize)
    }

    /// Whether `ip` is the underlay address of a registered host (a valid VXLAN source).
    #[inline]
    pub fn is_registered_host(&self, ip: Ipv4Addr) -> bool {
        self.hosts.contains(&u32::from(ip))
    }

    /// Every placed ENI (local and remote) in the table.
    pub fn enis(&self) -> impl Iterator<Item = &EniEntry> {
        self.enis.iter()
    }

    /// The local ENIs and their ports.
    pub fn local_enis(&self) -> impl Iterator<Item = (PortId, &EniEntry)> {
        self.enis.iter().filter_map(|e| match e.location {
            Location::Local(p) => Some((p, e)),
            Location::Remote(_) => None,
        })
    }

    /// Number of placed ENIs in the table.
    pub fn len(&self) -> usize {
        self.enis.len()
    }

    /// Whether the table holds no placed ENI.
    pub fn is_empty(&self) -> bool {
        self.enis.is_empty()
    }
}
