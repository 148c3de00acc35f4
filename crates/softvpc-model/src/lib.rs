//! The resource model: VPCs, subnets, hosts, instances and their ENIs, with AWS semantics.
//!
//! Independent of HTTP and of the store: an operation runs against a [`Txn`] (a private copy of
//! the [`State`] plus the list of writes it made). The caller commits the writes to the store in
//! one write transaction and only then publishes the new state, so a refused or failed request
//! changes nothing.

#![warn(missing_docs)]

pub mod address;
pub mod attributes;
pub mod dhcp_options;
pub mod eni;
pub mod error;
pub mod filter;
pub mod flow_log;
pub mod host;
pub mod idempotency;
pub mod ids;
pub mod instance;
pub mod instance_metadata;
pub mod internet_gateway;
pub mod key_pair;
pub mod launch_template;
pub mod nat_gateway;
pub mod network_acl;
pub mod peering;
pub mod prefix_list;
pub mod quota;
pub mod route_table;
pub mod security_group;
pub mod subnet;
pub mod tags;
pub mod volume;
pub mod vpc;
pub mod zone;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use error::ApiError;

/// The fixed 12-digit account id every resource is owned by.
pub const OWNER_ID: &str = "123456789012";
/// The availability zone used when none is given.
pub const DEFAULT_AZ: &str = "us-east-1a";
/// The first VNI handed out; each new VPC gets the next one.
pub const FIRST_VNI: u32 = 0x000101;
/// The largest 24-bit VNI.
pub const MAX_VNI: u32 = 0xff_ffff;

/// Tags of a resource, by key.
pub type Tags = BTreeMap<String, String>;

/// A VPC: an isolated virtual network with one IPv4 CIDR and its own VXLAN VNI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    /// `vpc-...`.
    pub id: String,
    /// Its IPv4 CIDR block.
    pub cidr: Ipv4Net,
    /// The id of the CIDR block's association (`vpc-cidr-assoc-...`).
    pub cidr_association_id: String,
    /// The VXLAN network identifier its traffic carries on the underlay.
    pub vni: u32,
    /// `default` or `dedicated` (shown only).
    pub instance_tenancy: String,
    /// Its tags.
    pub tags: Tags,
    /// The account's default VPC (172.31.0.0/16), created at first start.
    #[serde(default)]
    pub is_default: bool,
    /// `enableDnsSupport` (AWS default: true).
    #[serde(default = "default_true")]
    pub enable_dns_support: bool,
    /// `enableDnsHostnames` (AWS default: false, true for the default VPC).
    #[serde(default)]
    pub enable_dns_hostnames: bool,
    /// The associated DHCP option set (`None`: `default`).
    #[serde(default)]
    pub dhcp_options_id: Option<String>,
    /// Secondary IPv4 CIDR blocks (`AssociateVpcCidrBlock`), in association order; a
    /// disassociated block stays listed for a while, as AWS shows it (see [`vpc::CidrBlock`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secondary_cidrs: Vec<vpc::CidrBlock>,
}

impl Vpc {
    /// Every IPv4 CIDR block associated with it: the primary first, then the secondary ones.
    pub fn cidrs(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        std::iter::once(self.cidr).chain(
            self.secondary_cidrs
                .iter()
                .filter(|b| b.disassociated_at.is_none())
                .map(|b| b.cidr),
        )
    }

    /// True when one of its associated blocks holds `net`.
    pub fn holds(&self, net: &Ipv4Net) -> bool {
        self.cidrs().any(|c| c.contains(net))
    }
}

fn default_true() -> bool {
    true
}

/// A subnet of a VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    /// `subnet-...`.
    pub id: String,
    /// The VPC it is part of.
    pub vpc_id: String,
    /// Its IPv4 CIDR block, inside the VPC's.
    pub cidr: Ipv4Net,
    /// Its availability zone.
    pub availability_zone: String,
    /// Its tags.
    pub tags: Tags,
    /// `MapPublicIpOnLaunch` (true for the default subnet).
    #[serde(default)]
    pub map_public_ip_on_launch: bool,
    /// The default subnet of its availability zone (in the default VPC).
    #[serde(default)]
    pub default_for_az: bool,
    /// `PrivateDnsHostnameTypeOnLaunch`: `ip-name` (None, AWS's default) or `resource-name`.
    #[serde(default)]
    pub hostname_type: Option<String>,
    /// `EnableResourceNameDnsARecordOnLaunch`.
    #[serde(default)]
    pub resource_name_dns_a_record: bool,
}

/// A host that runs (or stands in for) an agent: instances are placed on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// `h-...`.
    pub id: String,
    /// Its unique name (what its certificate and `RegisterHost` name).
    pub name: String,
    /// Its address on the underlay, where its VXLAN traffic goes.
    pub underlay_ip: Ipv4Addr,
    /// Its availability zone.
    pub availability_zone: String,
    /// Registration time, seconds since the Unix epoch.
    pub allocation_time: u64,
}

/// The lifecycle state of an instance, with AWS's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Launched, not yet running (code 0).
    Pending,
    /// Running (code 16).
    Running,
    /// Being terminated (code 32).
    ShuttingDown,
    /// Terminated (code 48): describable for an hour, then purged.
    Terminated,
    /// Being stopped (code 64).
    Stopping,
    /// Stopped (code 80): its ENIs stay, on no host.
    Stopped,
}

impl InstanceState {
    /// AWS's numeric state code.
    pub fn code(self) -> u32 {
        match self {
            InstanceState::Pending => 0,
            InstanceState::Running => 16,
            InstanceState::ShuttingDown => 32,
            InstanceState::Terminated => 48,
            InstanceState::Stopping => 64,
            InstanceState::Stopped => 80,
        }
    }

    /// AWS's state name.
    pub fn name(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
        }
    }
}

/// An instance: a network namespace (in the lab) behind one ENI on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// `i-...`.
    pub id: String,
    /// The reservation (`r-...`) of the `RunInstances` call that launched it.
    pub reservation_id: String,
    /// The AMI id given at launch (shown only).
    pub image_id: String,
    /// The instance type given at launch (shown only).
    pub instance_type: String,
    /// The subnet of its primary ENI.
    pub subnet_id: String,
    /// The VPC of its primary ENI.
    pub vpc_id: String,
    /// The host it is placed on.
    pub host_id: String,
    /// Its availability zone (its subnet's).
    pub availability_zone: String,
    /// The primary private address of its primary ENI.
    pub private_ip: Ipv4Addr,
    /// The primary ENI (device index 0); kept after termination for describing.
    pub eni_id: String,
    /// The primary ENI's MAC address.
    pub eni_mac: String,
    /// Its index among the instances its `RunInstances` call launched.
    pub ami_launch_index: u32,
    /// Seconds since the Unix epoch.
    pub launch_time: u64,
    /// Its lifecycle state.
    pub state: InstanceState,
    /// Its tags.
    pub tags: Tags,
    /// The `ClientToken` of the `RunInstances` that launched it (shared by its reservation).
    #[serde(default)]
    pub client_token: Option<idempotency::ClientToken>,
    /// When the user last stopped or terminated it (seconds since the Unix epoch): the time in
    /// `StateTransitionReason`, and for a terminated instance the start of its retention.
    #[serde(default)]
    pub state_transition_time: Option<u64>,
    /// Whether it gets an automatically assigned public IPv4 address (at launch, at every
    /// start, and when an Elastic IP leaves it): the subnet's `MapPublicIpOnLaunch` or the
    /// launch's `AssociatePublicIpAddress`. Cleared when AWS's rules take the address away for
    /// good (see [`instance::refill_public_ip`]).
    #[serde(default)]
    pub auto_public_ip: bool,
    /// `DisableApiTermination`: TerminateInstances refuses it (`OperationNotPermitted`).
    #[serde(default)]
    pub disable_api_termination: bool,
    /// `DisableApiStop`: StopInstances refuses it (`OperationNotPermitted`).
    #[serde(default)]
    pub disable_api_stop: bool,
    /// `InstanceInitiatedShutdownBehavior` (`stop` or `terminate`); None: `stop`.
    #[serde(default)]
    pub shutdown_behavior: Option<String>,
    /// `UserData` as given (base64), kept for the instance metadata service.
    #[serde(default)]
    pub user_data: Option<String>,
    /// `KeyName` at launch (shown by DescribeInstances).
    #[serde(default)]
    pub key_name: Option<String>,
    /// That key pair's public key (OpenSSH line), kept for the instance metadata service's
    /// `public-keys/0/openssh-key` even if the key pair is deleted later, as on AWS.
    #[serde(default)]
    pub key_public: Option<String>,
    /// Its instance metadata options (`MetadataOptions`).
    #[serde(default)]
    pub metadata_options: instance_metadata::MetadataOptions,
}

impl Instance {
    /// The instance's Name tag, or "".
    pub fn name(&self) -> &str {
        self.tags.get("Name").map(String::as_str).unwrap_or("")
    }
}

/// An elastic network interface: one primary private IPv4 address (plus secondary ones) and a
/// MAC in one subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eni {
    /// `eni-...`.
    pub id: String,
    /// Its subnet.
    pub subnet_id: String,
    /// Its subnet's VPC.
    pub vpc_id: String,
    /// Its subnet's availability zone.
    pub availability_zone: String,
    /// Its primary private IPv4 address, in the subnet.
    pub private_ip: Ipv4Addr,
    /// Its MAC address (`02:..`), unique across the model.
    pub mac: String,
    /// Its description.
    pub description: String,
    /// Whether traffic not addressed from or to it is dropped (AWS's default: true).
    pub source_dest_check: bool,
    /// Its connection tracking idle timeouts (`ConnectionTrackingSpecification`).
    #[serde(default)]
    pub connection_tracking: eni::ConnectionTracking,
    /// The instance it is attached to, if any.
    pub attachment: Option<Attachment>,
    /// Its tags.
    pub tags: Tags,
    /// Secondary private IPv4 addresses, in assignment order.
    #[serde(default)]
    pub secondary_ips: Vec<Ipv4Addr>,
    /// Security group ids (at most 5).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// The `ClientToken` of the `CreateNetworkInterface` that made it.
    #[serde(default)]
    pub client_token: Option<idempotency::ClientToken>,
    /// The automatically assigned public IPv4 address of the primary private address (only an
    /// instance's primary ENI has one, while the instance runs and no Elastic IP is there).
    /// Shown only: the data plane does not translate public addresses yet.
    #[serde(default)]
    pub public_ip: Option<Ipv4Addr>,
}

impl Eni {
    /// Every private address of the ENI: the primary first, then the secondary ones.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        std::iter::once(self.private_ip).chain(self.secondary_ips.iter().copied())
    }
}

/// An ENI's attachment to an instance on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// `eni-attach-...`.
    pub attachment_id: String,
    /// The instance.
    pub instance_id: String,
    /// The instance's host at attach time.
    pub host_id: String,
    /// The instance's interface number (`eth<device index>`); 0 is the primary ENI.
    pub device_index: u32,
    /// Seconds since the Unix epoch.
    pub attach_time: u64,
    /// Whether terminating the instance deletes the ENI.
    pub delete_on_termination: bool,
}

/// Resources by id: a persistent (structurally shared) B-tree, so copying the state for a
/// transaction is O(1) and each insert or remove O(log n), however many resources there are.
pub type Map<T> = imbl::OrdMap<String, Arc<T>>;

/// The whole resource model at one revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// VPCs by id.
    pub vpcs: Map<Vpc>,
    /// Subnets by id.
    pub subnets: Map<Subnet>,
    /// Hosts by id.
    pub hosts: Map<Host>,
    /// Instances by id (terminated ones until purged).
    pub instances: Map<Instance>,
    /// ENIs by id.
    pub enis: Map<Eni>,
    /// Route tables by id.
    pub route_tables: Map<route_table::RouteTable>,
    /// Internet gateways by id.
    pub internet_gateways: Map<internet_gateway::InternetGateway>,
    /// Elastic IPs by allocation id.
    pub addresses: Map<address::Address>,
    /// NAT gateways by id.
    pub nat_gateways: Map<nat_gateway::NatGateway>,
    /// Security groups by id.
    pub security_groups: Map<security_group::SecurityGroup>,
    /// Network ACLs by id.
    pub network_acls: Map<network_acl::NetworkAcl>,
    /// VPC peering connections by id.
    pub peering_connections: Map<peering::PeeringConnection>,
    /// DHCP option sets by id.
    pub dhcp_options: Map<dhcp_options::DhcpOptions>,
    /// Flow logs by id.
    pub flow_logs: Map<flow_log::FlowLog>,
    /// Customer-managed prefix lists by id.
    pub prefix_lists: Map<prefix_list::PrefixList>,
    /// Key pairs by id.
    pub key_pairs: Map<key_pair::KeyPair>,
    /// Launch templates by id.
    pub launch_templates: Map<launch_template::LaunchTemplate>,
    /// EBS volumes (instances' root volumes) by id.
    pub volumes: Map<volume::Volume>,
    /// Derived lookups (see [`Index`]).
    pub index: Index,
    /// The VNI the next VPC gets.
    pub next_vni: u32,
    /// The mapping revision of the last committed change.
    pub revision: u64,
    /// The quotas the model enforces (server settings, never stored).
    pub quotas: quota::Quotas,
}

impl State {
    /// An empty model.
    pub fn new() -> Self {
        State {
            next_vni: FIRST_VNI,
            ..Default::default()
        }
    }

    /// Rebuilds [`Index`] from the maps.
    pub fn rebuild_index(&mut self) {
        self.index = Index::default();
        let enis: Vec<Arc<Eni>> = self.enis.values().cloned().collect();
        for e in &enis {
            Index::eni_changed(self, None, Some(e));
        }
        let instances: Vec<Arc<Instance>> = self.instances.values().cloned().collect();
        for i in &instances {
            Index::instance_changed(self, None, Some(i));
        }
        let tables: Vec<Arc<route_table::RouteTable>> =
            self.route_tables.values().cloned().collect();
        for t in &tables {
            Index::route_table_changed(self, None, Some(t));
        }
    }

    /// The ENIs attached to `instance_id`, in id order (from the index, not a scan).
    pub fn enis_of_instance<'a>(&'a self, instance_id: &str) -> impl Iterator<Item = &'a Arc<Eni>> {
        self.index
            .enis_by_instance
            .get(instance_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.enis.get(id))
    }

    /// The host named `name`, if any.
    pub fn host_by_name(&self, name: &str) -> Option<&Arc<Host>> {
        self.hosts.values().find(|h| h.name == name)
    }

    /// The instances not yet terminated on `host_id`.
    pub fn live_instances_on(&self, host_id: &str) -> usize {
        self.instances
            .values()
            .filter(|i| i.host_id == host_id && i.state != InstanceState::Terminated)
            .count()
    }
}

/// A kind of stored resource: its table, its key, and its map in the [`State`]. Implemented by
/// the one line per kind in the `resources!` list below; [`Txn::put`] and [`Txn::delete`] do
/// the rest.
pub trait Resource: Serialize + DeserializeOwned + Sized {
    /// The store table that holds this kind.
    const TABLE: Table;
    /// The key (id) of this resource in its table and map.
    fn key(&self) -> &str;
    /// This kind's map in `state`.
    fn map(state: &State) -> &Map<Self>;
    /// This kind's map in `state`, to change.
    fn map_mut(state: &mut State) -> &mut Map<Self>;
    /// Keeps the derived indexes of `state` in step when `old` is replaced by `new` (either may
    /// be absent: an insert or a removal).
    fn reindex(state: &mut State, old: Option<&Self>, new: Option<&Self>);
}

/// Reads one table of the store into a map (the store implements it; see [`State::load_maps`]).
pub trait LoadTable {
    /// The map of kind `T`, read from its table.
    fn load<T: Resource>(&mut self) -> anyhow::Result<Map<T>>;
}

/// Declares every stored kind: `Table variant => type, State field, table name, key field`, and
/// optionally the function that keeps [`Index`] in step. A new kind is one line here plus its
/// field in [`State`].
macro_rules! resources {
    ($($variant:ident => $ty:ty, $field:ident, $name:literal, $key:ident $(, index $hook:path)?;)*) => {
        /// The store tables; each holds one kind of resource as JSON keyed by id.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Table {
            $(
                #[doc = concat!("The `", $name, "` table (`", stringify!($ty), "`).")]
                $variant,
            )*
        }

        impl Table {
            /// Every table.
            pub const ALL: &'static [Table] = &[$(Table::$variant,)*];

            /// The table's name in the store.
            pub fn name(self) -> &'static str {
                match self {
                    $(Table::$variant => $name,)*
                }
            }

            /// The table called `name` in the store.
            pub fn from_name(name: &str) -> Option<Table> {
                match name {
                    $($name => Some(Table::$variant),)*
                    _ => None,
                }
            }
        }

        $(
            impl Resource for $ty {
                const TABLE: Table = Table::$variant;
                fn key(&self) -> &str {
                    &self.$key
                }
                fn map(state: &State) -> &Map<Self> {
                    &state.$field
                }
                fn map_mut(state: &mut State) -> &mut Map<Self> {
                    &mut state.$field
                }
                #[allow(unused_variables)]
                fn reindex(state: &mut State, old: Option<&Self>, new: Option<&Self>) {
                    $($hook(state, old, new);)?
                }
            }
        )*

        impl State {
            /// Fills every map from `loader` and rebuilds the indexes.
            pub fn load_maps(&mut self, loader: &mut impl LoadTable) -> anyhow::Result<()> {
                $(self.$field = loader.load::<$ty>()?;)*
                self.rebuild_index();
                Ok(())
            }

            /// Applies one store write made elsewhere (another server replica's commit, read
            /// back from a replicated store) as [`Txn::put`] / [`Txn::delete`] made it: the map
            /// and its indexes. A value that does not decode is an error and changes nothing.
            pub fn apply_write(&mut self, write: &Write) -> anyhow::Result<()> {
                match write {
                    $(
                        Write::Put { table: Table::$variant, key, value } => {
                            let v: $ty = serde_json::from_slice(value).map_err(|e| {
                                anyhow::anyhow!("decoding {} {key}: {e}", $name)
                            })?;
                            let v = Arc::new(v);
                            let old = self.$field.insert(key.clone(), v.clone());
                            <$ty as Resource>::reindex(self, old.as_deref(), Some(&v));
                        }
                        Write::Delete { table: Table::$variant, key } => {
                            let old = self.$field.remove(key.as_str());
                            <$ty as Resource>::reindex(self, old.as_deref(), None);
                        }
                    )*
                }
                Ok(())
            }
        }
    };
}

resources! {
    Vpcs => Vpc, vpcs, "vpcs", id;
    Subnets => Subnet, subnets, "subnets", id;
    Hosts => Host, hosts, "hosts", id;
    Instances => Instance, instances, "instances", id, index Index::instance_changed;
    Enis => Eni, enis, "enis", id, index Index::eni_changed;
    RouteTables => route_table::RouteTable, route_tables, "route_tables", id, index Index::route_table_changed;
    InternetGateways => internet_gateway::InternetGateway, internet_gateways, "internet_gateways", id;
    Addresses => address::Address, addresses, "addresses", allocation_id;
    NatGateways => nat_gateway::NatGateway, nat_gateways, "nat_gateways", id;
    SecurityGroups => security_group::SecurityGroup, security_groups, "security_groups", id;
    NetworkAcls => network_acl::NetworkAcl, network_acls, "network_acls", id;
    PeeringConnections => peering::PeeringConnection, peering_connections, "peering_connections", id;
    DhcpOptions => dhcp_options::DhcpOptions, dhcp_options, "dhcp_options", id;
    FlowLogs => flow_log::FlowLog, flow_logs, "flow_logs", id;
    PrefixLists => prefix_list::PrefixList, prefix_lists, "prefix_lists", id;
    KeyPairs => key_pair::KeyPair, key_pairs, "key_pairs", id;
    LaunchTemplates => launch_template::LaunchTemplate, launch_templates, "launch_templates", id;
    Volumes => volume::Volume, volumes, "volumes", id;
}

/// A set of addresses, ordered, with O(1) copies.
pub type AddrSet = imbl::OrdSet<Ipv4Addr>;

/// Lookups derived from the maps, kept in step by [`Txn::put`] and [`Txn::delete`] (never
/// stored; rebuilt at load) so the write path needs no scan of all resources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Index {
    /// The private addresses in use, per subnet id.
    pub used_ips: imbl::OrdMap<String, AddrSet>,
    /// Every ENI MAC address in use.
    pub macs: imbl::OrdSet<String>,
    /// Terminated instances by (termination time, id), oldest first, for the purge.
    pub terminated: imbl::OrdSet<(u64, String)>,
    /// ENIs by the `ClientToken` they were created with (SDKs send one with every
    /// CreateNetworkInterface), for the retry check.
    pub eni_tokens: imbl::OrdMap<String, String>,
    /// Instances by the `ClientToken` of their RunInstances (one launch may make several).
    pub instance_tokens: imbl::OrdMap<String, imbl::OrdSet<String>>,
    /// The ENIs attached to each instance (by instance id; ENI ids in order).
    pub enis_by_instance: imbl::OrdMap<String, imbl::OrdSet<String>>,
    /// The route tables with a route to each target (gateway, NAT gateway, ENI or peering
    /// connection id): whose route state a change of that target may change.
    pub route_tables_by_target: imbl::OrdMap<String, imbl::OrdSet<String>>,
}

impl Index {
    fn terminated_key(i: &Instance) -> Option<(u64, String)> {
        (i.state == InstanceState::Terminated)
            .then(|| (i.state_transition_time.unwrap_or(0), i.id.clone()))
    }

    fn instance_changed(state: &mut State, old: Option<&Instance>, new: Option<&Instance>) {
        let index = &mut state.index;
        if let Some(old) = old {
            if let Some(k) = Self::terminated_key(old) {
                index.terminated.remove(&k);
            }
            if let Some(t) = &old.client_token {
                if let Some(ids) = index.instance_tokens.get_mut(&t.token) {
                    ids.remove(&old.id);
                    if ids.is_empty() {
                        index.instance_tokens.remove(&t.token);
                    }
                }
            }
        }
        if let Some(new) = new {
            if let Some(k) = Self::terminated_key(new) {
                index.terminated.insert(k);
            }
            if let Some(t) = &new.client_token {
                index
                    .instance_tokens
                    .entry(t.token.clone())
                    .or_default()
                    .insert(new.id.clone());
            }
        }
    }

    fn route_table_changed(
        state: &mut State,
        old: Option<&route_table::RouteTable>,
        new: Option<&route_table::RouteTable>,
    ) {
        let index = &mut state.index.route_tables_by_target;
        if let Some(old) = old {
            for id in old.routes.iter().filter_map(|r| r.target.id()) {
                if let Some(ids) = index.get_mut(id) {
                    ids.remove(&old.id);
                    if ids.is_empty() {
                        index.remove(id);
                    }
                }
            }
        }
        if let Some(new) = new {
            for id in new.routes.iter().filter_map(|r| r.target.id()) {
                index
                    .entry(id.to_string())
                    .or_default()
                    .insert(new.id.clone());
            }
        }
    }

    fn eni_changed(state: &mut State, old: Option<&Eni>, new: Option<&Eni>) {
        let index = &mut state.index;
        if let Some(old) = old {
            if let Some(used) = index.used_ips.get_mut(&old.subnet_id) {
                for a in old.addresses() {
                    used.remove(&a);
                }
                if used.is_empty() {
                    index.used_ips.remove(&old.subnet_id);
                }
            }
            index.macs.remove(&old.mac);
            if let Some(t) = &old.client_token {
                if index.eni_tokens.get(&t.token) == Some(&old.id) {
                    index.eni_tokens.remove(&t.token);
                }
            }
            if let Some(a) = &old.attachment {
                if let Some(ids) = index.enis_by_instance.get_mut(&a.instance_id) {
                    ids.remove(&old.id);
                    if ids.is_empty() {
                        index.enis_by_instance.remove(&a.instance_id);
                    }
                }
            }
        }
        if let Some(new) = new {
            let used = index.used_ips.entry(new.subnet_id.clone()).or_default();
            for a in new.addresses() {
                used.insert(a);
            }
            index.macs.insert(new.mac.clone());
            if let Some(t) = &new.client_token {
                index.eni_tokens.insert(t.token.clone(), new.id.clone());
            }
            if let Some(a) = &new.attachment {
                index
                    .enis_by_instance
                    .entry(a.instance_id.clone())
                    .or_default()
                    .insert(new.id.clone());
            }
        }
    }
}

/// One write to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Store `value` (the resource as JSON) under `key` in `table`.
    Put {
        /// The resource's table.
        table: Table,
        /// The resource's id.
        key: String,
        /// The resource as JSON.
        value: Vec<u8>,
    },
    /// Remove `key` from `table`.
    Delete {
        /// The resource's table.
        table: Table,
        /// The resource's id.
        key: String,
    },
}

/// A transaction in progress: a private copy of the state and the store writes made so far.
/// Dropping it discards everything. (The mapping changes are not recorded here: the server's
/// mapping projection derives them from the state before and after.)
#[derive(Debug)]
pub struct Txn {
    /// The state as this transaction has changed it so far.
    pub state: State,
    /// The store writes it made, in order.
    pub writes: Vec<Write>,
    /// "Now", seconds since the Unix epoch (given, so tests are deterministic).
    pub now: u64,
}

impl Txn {
    /// Starts a transaction on a copy of `state`.
    pub fn new(state: State, now: u64) -> Self {
        Txn {
            state,
            writes: Vec::new(),
            now,
        }
    }

    /// True when the transaction changed nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Stores `value` (replacing the resource with its key): records the store write and
    /// updates the state and its indexes.
    pub fn put<T: Resource>(&mut self, value: T) {
        let key = value.key().to_string();
        // Serialising plain structs of strings and numbers to JSON cannot fail.
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        self.writes.push(Write::Put {
            table: T::TABLE,
            key: key.clone(),
            value: bytes,
        });
        let value = Arc::new(value);
        let old = T::map_mut(&mut self.state).insert(key, value.clone());
        T::reindex(&mut self.state, old.as_deref(), Some(&value));
    }

    /// Deletes the resource `key` of kind `T` (a no-op in the state if there is none) and
    /// returns it.
    pub fn delete<T: Resource>(&mut self, key: &str) -> Option<Arc<T>> {
        self.writes.push(Write::Delete {
            table: T::TABLE,
            key: key.to_string(),
        });
        let old = T::map_mut(&mut self.state).remove(key);
        T::reindex(&mut self.state, old.as_deref(), None);
        old
    }

    /// Deletes every `T` for which `pred` holds.
    pub fn delete_where<T: Resource>(&mut self, pred: impl Fn(&T) -> bool) {
        let ids: Vec<String> = T::map(&self.state)
            .values()
            .filter(|v| pred(v))
            .map(|v| v.key().to_string())
            .collect();
        for id in ids {
            self.delete::<T>(&id);
        }
    }

    /// Changes the `T` with id `key` through `change` and stores it; `not_found` when there is
    /// none. Nothing is stored when `change` refuses.
    pub fn update<T: Resource + Clone>(
        &mut self,
        key: &str,
        not_found: impl FnOnce() -> ApiError,
        change: impl FnOnce(&mut T) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let mut value = T::map(&self.state)
            .get(key)
            .map(|v| (**v).clone())
            .ok_or_else(not_found)?;
        change(&mut value)?;
        self.put(value);
        Ok(())
    }

    /// Deletes VPC `id` and its flow logs.
    pub fn delete_vpc(&mut self, id: &str) {
        self.delete_flow_logs_of(id);
        self.delete::<Vpc>(id);
    }

    /// Deletes subnet `id` and its flow logs.
    pub fn delete_subnet(&mut self, id: &str) {
        self.delete_flow_logs_of(id);
        self.delete::<Subnet>(id);
    }

    /// Deletes ENI `id` and its flow logs.
    pub fn delete_eni(&mut self, id: &str) {
        self.delete_flow_logs_of(id);
        self.release_addresses_of_eni(id);
        self.delete::<Eni>(id);
    }
}

/// The reserved-address rule: network, +1 (router), +2 (DNS), +3 (future) and the broadcast
/// address of a subnet cannot be assigned.
pub fn is_reserved(subnet: &Ipv4Net, ip: Ipv4Addr) -> bool {
    let net = u32::from(subnet.network());
    let bcast = u32::from(subnet.broadcast());
    let a = u32::from(ip);
    a <= net.saturating_add(3) || a == bcast
}

/// The number of addresses a subnet can hand out: 2^(32-prefix) - 5.
pub fn assignable_count(subnet: &Ipv4Net) -> u64 {
    (1u64 << (32 - u32::from(subnet.prefix_len()))).saturating_sub(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_addresses_follow_aws() {
        let net: Ipv4Net = "10.0.1.0/24".parse().unwrap();
        for a in ["10.0.1.0", "10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.255"] {
            assert!(is_reserved(&net, a.parse().unwrap()), "{a}");
        }
        for a in ["10.0.1.4", "10.0.1.100", "10.0.1.254"] {
            assert!(!is_reserved(&net, a.parse().unwrap()), "{a}");
        }
        assert_eq!(assignable_count(&net), 251);
        assert_eq!(assignable_count(&"10.0.0.0/28".parse().unwrap()), 11);
        assert_eq!(assignable_count(&"10.0.0.0/16".parse().unwrap()), 65531);
    }
}
