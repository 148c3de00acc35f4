//! The mapping records of the resource model, derived mechanically: [`derive`] diffs the
//! persistent maps of the state before and after a mutation and turns every difference of a
//! wire record (host, VPC, subnet, ENI, security group, network ACL, route table, active
//! peering connection) into a [`Change`]. No write path records changes by hand, so none can
//! forget one.
//!
//! An ENI's record reads more than the ENI (its VPC's VNI, its instance's state and Name tag,
//! its host's underlay address, the Elastic IPs associated with it), so a changed instance,
//! host, VNI or Elastic IP makes the records of the ENIs that depend on it candidates too; a
//! route table's record reads the state of each route's target (gateway, NAT gateway, ENI,
//! peering connection: `blackhole` when it is gone), so a changed target makes the tables that
//! route to it candidates (`Index::route_tables_by_target`). A candidate becomes a change only if
//! its record differs. Diffing skips the subtrees both states share, so it costs
//! O(changes · log n).
//!
//! This is the one place that knows both the model and the mapping records; the protocol itself
//! (log, per-host feeds, protobuf) is `softvpc-mapping`'s.

use std::collections::BTreeSet;

use imbl::ordmap::DiffItem;
use softvpc_mapping::flowlog::parse_format;
use softvpc_mapping::policy::{acl_entry, sg_rule};
use softvpc_mapping::{
    Change, EniRecord, HostRecord, NetworkAclRecord, PeeringRecord, PrefixListRecord,
    PrefixListRoute, PublicAddress, Records, RouteTableRecord, SecurityGroupRecord, SubnetRecord,
    VpcRecord,
};
use softvpc_mapping::{DhcpOptionSet, NameServer, VpcServices};
use softvpc_mapping::{FlowLogSpec, TrafficType};
use softvpc_policy::route as policy_route;
use softvpc_policy::secgroup::Peer as PolicyPeer;

use softvpc_mapping::metadata::InstanceMetadata;
use softvpc_model::instance::{placed_host, public_address_of};
use softvpc_model::network_acl::{NetworkAcl, DENY_ALL_RULE};
use softvpc_model::peering::{PeeringConnection, PeeringStatus};
use softvpc_model::prefix_list::PrefixList;
use softvpc_model::route_table::{route_state, Destination, RouteTable, Target};
use softvpc_model::security_group::{Peer, SecurityGroup};
use softvpc_model::{Eni, Host, State, Subnet, Vpc};

/// The wire record of a host.
pub fn host_record(h: &Host) -> HostRecord {
    HostRecord {
        host_id: h.id.clone(),
        name: h.name.clone(),
        underlay_ip: h.underlay_ip,
    }
}

/// The wire record of a VPC, with its instance services: its DNS attributes and its DHCP
/// option set resolved from `state` (sets are immutable and cannot be deleted while a VPC
/// uses them, so the record changes only when the VPC does).
pub fn vpc_record(state: &State, v: &Vpc) -> VpcRecord {
    let region = softvpc_model::peering::REGION;
    let dhcp_options = v
        .dhcp_options_id
        .as_deref()
        .and_then(|id| state.dhcp_options.get(id))
        .map(|d| dhcp_option_set(d));
    VpcRecord {
        vpc_id: v.id.clone(),
        vni: v.vni,
        // Every associated block, the primary first (the engine's DNS address is the first's +2).
        cidrs: v.cidrs().map(|c| c.trunc()).collect(),
        services: VpcServices {
            dns_support: v.enable_dns_support,
            dns_hostnames: v.enable_dns_hostnames,
            private_domain: softvpc_mapping::services::private_domain(region),
            region: region.to_string(),
            dhcp_options,
        },
    }
}

/// The wire form of a DHCP option set (the model checked every value when the set was made;
/// one that does not parse is left out).
fn dhcp_option_set(d: &softvpc_model::dhcp_options::DhcpOptions) -> DhcpOptionSet {
    let mut set = DhcpOptionSet {
        dhcp_options_id: d.id.clone(),
        ..Default::default()
    };
    let ips = |values: &[String]| values.iter().filter_map(|v| v.parse().ok()).collect();
    for (key, values) in &d.options {
        match key.as_str() {
            "domain-name" => set.domain_name = values.join(" "),
            "domain-name-servers" => {
                set.name_servers = values
                    .iter()
                    .filter_map(|v| {
                        if v == "AmazonProvidedDNS" {
                            Some(NameServer::AmazonProvided)
                        } else {
                            v.parse().ok().map(NameServer::Ip)
                        }
                    })
                    .collect()
            }
            "ntp-servers" => set.ntp_servers = ips(values),
            "netbios-name-servers" => set.netbios_name_servers = ips(values),
            "netbios-node-type" => {
                set.netbios_node_type = values.first().and_then(|v| v.parse().ok()).unwrap_or(0)
            }
            _ => {}
        }
    }
    set
}

/// The wire record of a subnet.
pub fn subnet_record(s: &Subnet) -> SubnetRecord {
    SubnetRecord {
        subnet_id: s.id.clone(),
        vpc_id: s.vpc_id.clone(),
        cidr: s.cidr.trunc(),
    }
}

/// The wire record of an ENI: with its VPC's VNI, its host's underlay address, its instance's
/// Name tag and its public addresses resolved from `state`. An ENI of a stopped instance keeps
/// its instance but has no host: it is on no host's data plane until the instance starts.
pub fn eni_record(state: &State, e: &Eni) -> EniRecord {
    let host = placed_host(state, e);
    let (instance_id, instance_name, device_index) = match &e.attachment {
        Some(a) => (
            a.instance_id.clone(),
            state
                .instances
                .get(&a.instance_id)
                .map(|i| i.name().to_string())
                .unwrap_or_default(),
            a.device_index,
        ),
        None => Default::default(),
    };
    EniRecord {
        eni_id: e.id.clone(),
        vpc_id: e.vpc_id.clone(),
        vni: state.vpcs.get(&e.vpc_id).map(|v| v.vni).unwrap_or(0),
        subnet_id: e.subnet_id.clone(),
        ip: e.private_ip,
        secondary_ips: e.secondary_ips.clone(),
        // The model makes every MAC (`ids::new_mac`), always well formed.
        mac: softvpc_mapping::record::parse_mac(&e.mac).unwrap_or_default(),
        host_id: host.map(str::to_string).unwrap_or_default(),
        host_underlay_ip: host.and_then(|h| state.hosts.get(h)).map(|h| h.underlay_ip),
        instance_id,
        instance_name,
        device_index,
        security_group_ids: e.security_groups.clone(),
        source_dest_check: e.source_dest_check,
        connection_tracking: softvpc_policy::conntrack::ConnectionTrackingSpec {
            tcp_established_timeout: e.connection_tracking.tcp_established_timeout,
            udp_stream_timeout: e.connection_tracking.udp_stream_timeout,
            udp_timeout: e.connection_tracking.udp_timeout,
        },
        flow_logs: match host {
            Some(_) => flow_log_specs(state, e),
            None => Vec::new(),
        },
        nat_gateway_id: match &e.attachment {
            Some(_) => String::new(),
            None => softvpc_model::nat_gateway::nat_of_eni(state, &e.id)
                .map(|n| n.id.clone())
                .unwrap_or_default(),
        },
        instance_metadata: host.and_then(|_| instance_metadata(state, e).map(Box::new)),
        public_addresses: e
            .addresses()
            .filter_map(|ip| {
                public_address_of(state, e, ip).map(|p| PublicAddress {
                    public_ip: p.ip(),
                    private_ip: ip,
                })
            })
            .collect(),
    }
}

/// What the metadata service of ENI `e`'s host serves about its instance (`e` is placed).
fn instance_metadata(state: &State, e: &Eni) -> Option<InstanceMetadata> {
    let i = state.instances.get(&e.attachment.as_ref()?.instance_id)?;
    let o = i.metadata_options;
    let region = softvpc_model::peering::REGION;
    Some(InstanceMetadata {
        instance_type: i.instance_type.clone(),
        image_id: i.image_id.clone(),
        availability_zone: i.availability_zone.clone(),
        region: region.to_string(),
        account_id: softvpc_model::OWNER_ID.to_string(),
        reservation_id: i.reservation_id.clone(),
        ami_launch_index: i.ami_launch_index,
        launch_time: i.launch_time,
        tokens_required: o.tokens_required,
        hop_limit: o.hop_limit,
        endpoint_enabled: o.endpoint_enabled,
        tags_enabled: o.tags_enabled,
        // Only when enabled, so tag changes do not reach the hosts otherwise.
        tags: if o.tags_enabled {
            i.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        } else {
            Default::default()
        },
        security_group_names: e
            .security_groups
            .iter()
            .map(|g| {
                state
                    .security_groups
                    .get(g)
                    .map(|g| g.name.clone())
                    .unwrap_or_default()
            })
            .collect(),
        private_domain: if region == "us-east-1" {
            "ec2.internal".to_string()
        } else {
            format!("{region}.compute.internal")
        },
        user_data: i
            .user_data
            .as_deref()
            .map(decode_user_data)
            .unwrap_or_default(),
        public_key: match (&i.key_name, &i.key_public) {
            (Some(name), Some(key)) => Some((name.clone(), key.clone())),
            _ => None,
        },
    })
}

/// User data as the API kept it (base64, checked there) decoded for the metadata service;
/// lenient about padding and trailing bits, as the API's check is.
fn decode_user_data(b64: &str) -> Vec<u8> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(b64).unwrap_or_default()
}

/// The flow logs covering ENI `e` (its own, its subnet's, its VPC's), as its host's agent needs
/// them. Flow logs are few: a scan.
fn flow_log_specs(state: &State, e: &Eni) -> Vec<FlowLogSpec> {
    let az_id = state
        .subnets
        .get(&e.subnet_id)
        .and_then(|s| {
            let letter = s
                .availability_zone
                .strip_prefix(softvpc_model::peering::REGION)?;
            let n = letter.bytes().next()?.checked_sub(b'a')?;
            Some(format!("use1-az{}", n + 1))
        })
        .unwrap_or_default();
    state
        .flow_logs
        .values()
        .filter(|f| [&e.id, &e.subnet_id, &e.vpc_id].contains(&&f.resource_id))
        .filter_map(|f| {
            Some(FlowLogSpec {
                flow_log_id: f.id.clone(),
                traffic_type: TrafficType::parse(&f.traffic_type)?,
                interval: f.max_aggregation_interval,
                // The model checked the format; one that does not parse is left out.
                fields: parse_format(&f.log_format)?,
                account_id: softvpc_model::OWNER_ID.to_string(),
                region: softvpc_model::peering::REGION.to_string(),
                az_id: az_id.clone(),
            })
        })
        .collect()
}

/// The wire record of a security group: every rule in the policy crate's form. The model
/// validated each rule when it was made; one that still does not convert (a bug) is left out
/// and logged, which can only allow less.
pub fn security_group_record(g: &SecurityGroup) -> SecurityGroupRecord {
    let rules = g
        .rules
        .iter()
        .filter_map(|r| {
            let peer = match &r.spec.peer {
                Peer::Cidr(c) => PolicyPeer::Cidr(*c),
                Peer::Group(id) => PolicyPeer::Group(id.clone()),
                Peer::PrefixList(id) => PolicyPeer::PrefixList(id.clone()),
            };
            let s = &r.spec;
            sg_rule(&r.id, &g.id, r.egress, &s.protocol, s.from_port, s.to_port, peer)
                .map_err(|e| tracing::warn!(rule = %r.id, group = %g.id, error = %e, "rule not sent to agents"))
                .ok()
        })
        .collect();
    SecurityGroupRecord {
        group_id: g.id.clone(),
        vpc_id: g.vpc_id.clone(),
        rules,
    }
}

/// The wire record of a network ACL: its entries without the final `*` denies (implicit on the
/// wire) and its subnets.
pub fn network_acl_record(a: &NetworkAcl) -> NetworkAclRecord {
    let entries = a
        .entries
        .iter()
        .filter(|e| e.rule_number != DENY_ALL_RULE)
        .filter_map(|e| {
            acl_entry(
                e.rule_number,
                e.egress,
                &e.protocol,
                e.action == "allow",
                e.cidr,
                e.port_range,
                e.icmp,
            )
            .map_err(|err| tracing::warn!(acl = %a.id, rule = e.rule_number, error = %err, "ACL entry not sent to agents"))
            .ok()
        })
        .collect();
    NetworkAclRecord {
        acl_id: a.id.clone(),
        vpc_id: a.vpc_id.clone(),
        entries,
        subnet_ids: a.associations.iter().map(|s| s.subnet_id.clone()).collect(),
    }
}

fn route_target(t: &Target) -> policy_route::Target {
    match t {
        Target::Local => policy_route::Target::Local,
        Target::Gateway(id) => policy_route::Target::InternetGateway(id.clone()),
        Target::NatGateway(id) => policy_route::Target::NatGateway(id.clone()),
        Target::NetworkInterface(id) => policy_route::Target::NetworkInterface(id.clone()),
        Target::VpcPeeringConnection(id) => policy_route::Target::VpcPeeringConnection(id.clone()),
    }
}

fn route_state_of(
    state: &State,
    vpc_id: &str,
    r: &softvpc_model::route_table::Route,
) -> policy_route::RouteState {
    if route_state(state, vpc_id, r) == "blackhole" {
        policy_route::RouteState::Blackhole
    } else {
        policy_route::RouteState::Active
    }
}

/// The wire record of a managed prefix list: its current entries.
pub fn prefix_list_record(p: &PrefixList) -> PrefixListRecord {
    PrefixListRecord {
        prefix_list_id: p.id.clone(),
        cidrs: p.cidrs().map(|c| c.trunc()).collect(),
        version: p.version,
    }
}

/// The wire record of a route table, with each route's state (`blackhole` when its target is
/// gone) resolved from `state`.
pub fn route_table_record(state: &State, t: &RouteTable) -> RouteTableRecord {
    let routes = t
        .routes
        .iter()
        .filter_map(|r| Some((r, r.destination.cidr()?)))
        .map(|(r, destination)| policy_route::Route {
            destination: destination.trunc(),
            target: route_target(&r.target),
            state: route_state_of(state, &t.vpc_id, r),
        })
        .collect();
    // Routes to prefix lists go as such: the agents hold the lists and expand them, so a change
    // of a list's entries needs no change of the table.
    let prefix_list_routes = t
        .routes
        .iter()
        .filter_map(|r| match &r.destination {
            Destination::PrefixList(id) => Some(PrefixListRoute {
                prefix_list_id: id.clone(),
                target: route_target(&r.target),
                state: route_state_of(state, &t.vpc_id, r),
            }),
            Destination::Cidr(_) => None,
        })
        .collect();
    RouteTableRecord {
        table_id: t.id.clone(),
        vpc_id: t.vpc_id.clone(),
        main: t.is_main(),
        routes,
        prefix_list_routes,
        subnet_ids: t
            .associations
            .iter()
            .filter_map(|a| a.subnet_id.clone())
            .collect(),
    }
}

/// The wire record of a peering connection: only an active one is on the wire (no other
/// status carries traffic), so a connection that stops being active is deleted from the agents.
pub fn peering_record(p: &PeeringConnection) -> Option<PeeringRecord> {
    (p.status == PeeringStatus::Active).then(|| PeeringRecord {
        pcx_id: p.id.clone(),
        requester_vpc_id: p.requester.vpc_id.clone(),
        requester_cidrs: p.requester.cidrs().map(|c| c.trunc()).collect(),
        accepter_vpc_id: p.accepter.vpc_id.clone(),
        accepter_cidrs: p.accepter.cidrs().map(|c| c.trunc()).collect(),
        status: p.status.as_str().to_string(),
    })
}

/// Every record of `state` as upserts (what the mapping log starts from).
pub fn all_records(state: &State) -> Vec<Change> {
    let hosts = state
        .hosts
        .values()
        .map(|h| Change::UpsertHost(host_record(h)));
    let vpcs = state
        .vpcs
        .values()
        .map(|v| Change::UpsertVpc(vpc_record(state, v)));
    let subnets = state
        .subnets
        .values()
        .map(|s| Change::UpsertSubnet(subnet_record(s)));
    let enis = state
        .enis
        .values()
        .map(|e| Change::UpsertEni(eni_record(state, e)));
    let groups = state
        .security_groups
        .values()
        .map(|g| Change::UpsertSecurityGroup(security_group_record(g)));
    let acls = state
        .network_acls
        .values()
        .map(|a| Change::UpsertNetworkAcl(network_acl_record(a)));
    let tables = state
        .route_tables
        .values()
        .map(|t| Change::UpsertRouteTable(route_table_record(state, t)));
    let peerings = state
        .peering_connections
        .values()
        .filter_map(|p| peering_record(p).map(Change::UpsertPeering));
    let lists = state
        .prefix_lists
        .values()
        .map(|p| Change::UpsertPrefixList(prefix_list_record(p)));
    hosts
        .chain(lists)
        .chain(vpcs)
        .chain(subnets)
        .chain(enis)
        .chain(groups)
        .chain(acls)
        .chain(tables)
        .chain(peerings)
        .collect()
}

/// The records of `state`, computed from scratch.
pub fn records_of(state: &State) -> Records {
    let mut r = Records::default();
    for c in all_records(state) {
        r.apply(&c);
    }
    r
}

/// The mapping changes that take the wire records of `before` to those of `after`, in the
/// order an agent applies them: upserts of hosts, VPCs, subnets, ENIs, groups, ACLs, route
/// tables and peering connections, then deletes of peering connections, route tables, ACLs,
/// groups, ENIs, subnets, VPCs and hosts.
pub fn derive(before: &State, after: &State) -> Vec<Change> {
    let mut upserts: Vec<Change> = Vec::new();
    let mut policy_deletes = Vec::new();
    let mut eni_deletes = Vec::new();
    let mut subnet_deletes = Vec::new();
    let mut vpc_deletes = Vec::new();
    let mut host_deletes = Vec::new();
    let mut list_deletes = Vec::new();

    // ENIs whose record may have changed.
    let mut enis: BTreeSet<String> = BTreeSet::new();
    // Hosts and VPCs whose change reaches every ENI on / in them.
    let mut hosts_moved: BTreeSet<&str> = BTreeSet::new();
    let mut vnis_changed: BTreeSet<&str> = BTreeSet::new();

    for d in before.hosts.diff(&after.hosts) {
        match d {
            DiffItem::Add(_, h) => upserts.push(Change::UpsertHost(host_record(h))),
            DiffItem::Update { old, new } => {
                let rec = host_record(new.1);
                if host_record(old.1) != rec {
                    upserts.push(Change::UpsertHost(rec));
                }
                if old.1.underlay_ip != new.1.underlay_ip {
                    hosts_moved.insert(new.0);
                }
            }
            DiffItem::Remove(id, _) => {
                host_deletes.push(Change::DeleteHost(id.clone()));
                hosts_moved.insert(id);
            }
        }
    }
    for d in before.vpcs.diff(&after.vpcs) {
        match d {
            DiffItem::Add(_, v) => upserts.push(Change::UpsertVpc(vpc_record(after, v))),
            DiffItem::Update { old, new } => {
                let rec = vpc_record(after, new.1);
                if vpc_record(before, old.1) != rec {
                    upserts.push(Change::UpsertVpc(rec));
                }
                if old.1.vni != new.1.vni {
                    vnis_changed.insert(new.0);
                }
            }
            DiffItem::Remove(id, _) => vpc_deletes.push(Change::DeleteVpc(id.clone())),
        }
    }
    // Prefix lists read only themselves (the agents expand the references).
    diff_records(
        &before.prefix_lists,
        &after.prefix_lists,
        prefix_list_record,
        Change::UpsertPrefixList,
        |id, _| Change::DeletePrefixList(id.clone()),
        &mut upserts,
        &mut list_deletes,
    );
    diff_records(
        &before.subnets,
        &after.subnets,
        subnet_record,
        Change::UpsertSubnet,
        |id, s| Change::DeleteSubnet {
            subnet_id: id.clone(),
            vpc_id: s.vpc_id.clone(),
        },
        &mut upserts,
        &mut subnet_deletes,
    );

    for d in before.enis.diff(&after.enis) {
        let id = match d {
            DiffItem::Add(id, _) | DiffItem::Remove(id, _) => id,
            DiffItem::Update { new, .. } => new.0,
        };
        enis.insert(id.clone());
    }
    for d in before.instances.diff(&after.instances) {
        let id = match d {
            DiffItem::Add(id, _) | DiffItem::Remove(id, _) => id,
            DiffItem::Update { new, .. } => new.0,
        };
        for state in [before, after] {
            if let Some(ids) = state.index.enis_by_instance.get(id) {
                enis.extend(ids.iter().cloned());
            }
        }
    }
    for d in before.addresses.diff(&after.addresses) {
        let (old, new) = match d {
            DiffItem::Add(_, a) => (None, Some(a)),
            DiffItem::Remove(_, a) => (Some(a), None),
            DiffItem::Update { old, new } => (Some(old.1), Some(new.1)),
        };
        for a in old.into_iter().chain(new) {
            if let Some(assoc) = &a.association {
                enis.insert(assoc.network_interface_id.clone());
            }
        }
    }
    // A flow log watching a VPC, subnet or ENI reaches the records of the ENIs it covers.
    let mut watched: BTreeSet<String> = BTreeSet::new();
    for d in before.flow_logs.diff(&after.flow_logs) {
        match d {
            DiffItem::Add(_, f) | DiffItem::Remove(_, f) => {
                watched.insert(f.resource_id.clone());
            }
            DiffItem::Update { old, new } => {
                watched.insert(old.1.resource_id.clone());
                watched.insert(new.1.resource_id.clone());
            }
        }
    }
    if !watched.is_empty() {
        // Rare (a flow log made or deleted): a scan is fine.
        for state in [before, after] {
            for e in state.enis.values() {
                if [&e.id, &e.subnet_id, &e.vpc_id]
                    .iter()
                    .any(|r| watched.contains(*r))
                {
                    enis.insert(e.id.clone());
                }
            }
        }
    }
    if !hosts_moved.is_empty() || !vnis_changed.is_empty() {
        // Rare (a host re-registers with a new address): a scan is fine.
        for state in [before, after] {
            for e in state.enis.values() {
                let on_moved_host = e
                    .attachment
                    .as_ref()
                    .is_some_and(|a| hosts_moved.contains(a.host_id.as_str()));
                if on_moved_host || vnis_changed.contains(e.vpc_id.as_str()) {
                    enis.insert(e.id.clone());
                }
            }
        }
    }
    for id in &enis {
        let old = before.enis.get(id).map(|e| eni_record(before, e));
        match after.enis.get(id) {
            Some(e) => {
                let rec = eni_record(after, e);
                if old.as_ref() != Some(&rec) {
                    upserts.push(Change::UpsertEni(rec));
                }
            }
            None => {
                if let Some(old) = old {
                    eni_deletes.push(Change::DeleteEni {
                        eni_id: id.clone(),
                        vpc_id: old.vpc_id,
                    });
                }
            }
        }
    }

    derive_policy(before, after, &mut upserts, &mut policy_deletes);
    upserts.extend(policy_deletes);
    upserts.extend(eni_deletes);
    upserts.extend(subnet_deletes);
    upserts.extend(vpc_deletes);
    upserts.extend(host_deletes);
    upserts.extend(list_deletes);
    upserts
}

/// Upserts the records of added entries and of updated entries whose record changed, and
/// deletes removed entries: the diff of a kind whose record reads only the entry itself.
fn diff_records<T: Clone + PartialEq, R: PartialEq>(
    before: &softvpc_model::Map<T>,
    after: &softvpc_model::Map<T>,
    record: impl Fn(&T) -> R,
    upsert: impl Fn(R) -> Change,
    delete: impl Fn(&String, &T) -> Change,
    upserts: &mut Vec<Change>,
    deletes: &mut Vec<Change>,
) {
    for d in before.diff(after) {
        match d {
            DiffItem::Add(_, v) => upserts.push(upsert(record(v))),
            DiffItem::Update { old, new } => {
                let rec = record(new.1);
                if record(old.1) != rec {
                    upserts.push(upsert(rec));
                }
            }
            DiffItem::Remove(id, v) => deletes.push(delete(id, v)),
        }
    }
}

/// The policy part of [`derive`]: groups, ACLs and peering connections are records of
/// themselves; a route table's record also reads its targets.
fn derive_policy(
    before: &State,
    after: &State,
    upserts: &mut Vec<Change>,
    deletes: &mut Vec<Change>,
) {
    diff_records(
        &before.security_groups,
        &after.security_groups,
        security_group_record,
        Change::UpsertSecurityGroup,
        |id, _| Change::DeleteSecurityGroup(id.clone()),
        upserts,
        deletes,
    );
    diff_records(
        &before.network_acls,
        &after.network_acls,
        network_acl_record,
        Change::UpsertNetworkAcl,
        |id, a| Change::DeleteNetworkAcl {
            acl_id: id.clone(),
            vpc_id: a.vpc_id.clone(),
        },
        upserts,
        deletes,
    );

    // Route tables: the changed ones, and those routing to a changed target.
    let mut tables: BTreeSet<&str> = BTreeSet::new();
    for d in before.route_tables.diff(&after.route_tables) {
        tables.insert(match d {
            DiffItem::Add(id, _) | DiffItem::Remove(id, _) => id,
            DiffItem::Update { new, .. } => new.0,
        });
    }
    let mut targets: BTreeSet<&str> = BTreeSet::new();
    fn changed<'a, T: Clone + PartialEq>(
        out: &mut BTreeSet<&'a str>,
        before: &'a softvpc_model::Map<T>,
        after: &'a softvpc_model::Map<T>,
    ) {
        for d in before.diff(after) {
            out.insert(match d {
                DiffItem::Add(id, _) | DiffItem::Remove(id, _) => id,
                DiffItem::Update { new, .. } => new.0,
            });
        }
    }
    changed(
        &mut targets,
        &before.internet_gateways,
        &after.internet_gateways,
    );
    changed(&mut targets, &before.nat_gateways, &after.nat_gateways);
    changed(
        &mut targets,
        &before.peering_connections,
        &after.peering_connections,
    );
    for d in before.enis.diff(&after.enis) {
        // Only an ENI's existence reaches a route's state.
        if let DiffItem::Add(id, _) | DiffItem::Remove(id, _) = d {
            targets.insert(id);
        }
    }
    for t in &targets {
        for state in [before, after] {
            if let Some(ids) = state.index.route_tables_by_target.get(*t) {
                tables.extend(ids.iter().map(String::as_str));
            }
        }
    }
    for id in tables {
        let old = before
            .route_tables
            .get(id)
            .map(|t| route_table_record(before, t));
        match after.route_tables.get(id) {
            Some(t) => {
                let rec = route_table_record(after, t);
                if old.as_ref() != Some(&rec) {
                    upserts.push(Change::UpsertRouteTable(rec));
                }
            }
            None => {
                if let Some(old) = old {
                    deletes.push(Change::DeleteRouteTable {
                        table_id: id.to_string(),
                        vpc_id: old.vpc_id,
                    });
                }
            }
        }
    }

    for d in before.peering_connections.diff(&after.peering_connections) {
        let (old, new) = match d {
            DiffItem::Add(_, p) => (None, peering_record(p)),
            DiffItem::Update { old, new } => (peering_record(old.1), peering_record(new.1)),
            DiffItem::Remove(_, p) => (peering_record(p), None),
        };
        match (old, new) {
            (old, Some(new)) if old.as_ref() != Some(&new) => {
                upserts.push(Change::UpsertPeering(new))
            }
            (Some(old), None) => deletes.push(Change::DeletePeering {
                pcx_id: old.pcx_id,
                vpc_ids: [old.requester_vpc_id, old.accepter_vpc_id],
            }),
            _ => {}
        }
    }
}

/// Checks that `changes` take the records of `before` exactly to those of `after`, and panics
/// if not (tests and fuzzing run it after every mutation, see `MappingProjection::checked`).
pub fn check(before: &State, after: &State, changes: &[Change]) {
    let mut held = records_of(before);
    for c in changes {
        held.apply(c);
    }
    assert_eq!(
        held,
        records_of(after),
        "derived mapping changes do not reproduce the new records: {changes:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use softvpc_model::address::{
        allocate_address, associate_address, disassociate_address, AssociateRequest,
    };
    use softvpc_model::instance::{
        run_instances, start_instances, stop_instances, terminate_instances, RunRequest,
    };
    use softvpc_model::{
        attributes, eni, host, internet_gateway, security_group, subnet, tags, vpc,
    };
    use softvpc_model::{ApiError, Tags, Txn};

    fn ip(s: &str) -> std::net::Ipv4Addr {
        s.parse().expect("address")
    }

    /// Runs `op` on the current state as one mutation and returns the mapping changes derived
    /// from it, after checking that they reproduce the new records exactly.
    fn step<R>(
        state: &mut State,
        op: impl FnOnce(&mut Txn) -> Result<R, ApiError>,
    ) -> (R, Vec<Change>) {
        let mut txn = Txn::new(state.clone(), 1_000);
        let r = op(&mut txn).expect("operation");
        let changes = derive(state, &txn.state);
        check(state, &txn.state, &changes);
        *state = txn.state;
        (r, changes)
    }

    /// host-1, a VPC 10.0.0.0/16 and its subnet 10.0.0.0/24: the start of most tests here.
    fn host1_vpc_subnet(s: &mut State) -> (String, softvpc_model::Vpc, softvpc_model::Subnet) {
        let (h1, _) = step(s, |t| host::register_host(t, "host-1", "198.18.0.11"));
        let (v, _) = step(s, |t| vpc::create_vpc(t, "10.0.0.0/16", None, Tags::new()));
        let (sn, _) = step(s, |t| {
            subnet::create_subnet(t, &v.id, "10.0.0.0/24", None, Tags::new())
        });
        (h1, v, sn)
    }

    /// RunInstances of one instance in `subnet_id`, placed on host-1.
    fn one_on_host1(subnet_id: &str) -> RunRequest {
        RunRequest {
            min_count: 1,
            max_count: 1,
            subnet_id: subnet_id.into(),
            host: Some("host-1".into()),
            ..Default::default()
        }
    }

    fn kinds(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::UpsertHost(h) => format!("+host {}", h.host_id),
                Change::DeleteHost(id) => format!("-host {id}"),
                Change::UpsertVpc(v) => format!("+vpc {}", v.vpc_id),
                Change::DeleteVpc(id) => format!("-vpc {id}"),
                Change::UpsertSubnet(s) => format!("+subnet {}", s.subnet_id),
                Change::DeleteSubnet { subnet_id, .. } => format!("-subnet {subnet_id}"),
                Change::UpsertEni(e) => format!("+eni {}", e.eni_id),
                Change::DeleteEni { eni_id, .. } => format!("-eni {eni_id}"),
                Change::UpsertSecurityGroup(g) => format!("+sg {}", g.group_id),
                Change::DeleteSecurityGroup(id) => format!("-sg {id}"),
                Change::UpsertNetworkAcl(a) => format!("+acl {}", a.acl_id),
                Change::DeleteNetworkAcl { acl_id, .. } => format!("-acl {acl_id}"),
                Change::UpsertRouteTable(t) => format!("+rtb {}", t.table_id),
                Change::DeleteRouteTable { table_id, .. } => format!("-rtb {table_id}"),
                Change::UpsertPeering(p) => format!("+pcx {}", p.pcx_id),
                Change::DeletePeering { pcx_id, .. } => format!("-pcx {pcx_id}"),
                Change::UpsertPrefixList(p) => format!("+pl {}", p.prefix_list_id),
                Change::DeletePrefixList(id) => format!("-pl {id}"),
            })
            .collect()
    }

    fn upserted<'a>(changes: &'a [Change], id: &str) -> &'a EniRecord {
        changes
            .iter()
            .find_map(|c| match c {
                Change::UpsertEni(e) if e.eni_id == id => Some(e),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no upsert of {id} in {:?}", kinds(changes)))
    }

    /// A NAT gateway's ENI is placed on a host of its subnet's zone (the least loaded) and its
    /// record names the gateway and carries the Elastic IP; deleting the gateway deletes it.
    #[test]
    fn nat_gateway_enis_are_placed_and_named() {
        use softvpc_model::nat_gateway::{create_nat_gateway, delete_nat_gateway, CreateRequest};
        let mut s = State::new();
        let (h1, v, sn) = host1_vpc_subnet(&mut s);
        let (igw, _) = step(&mut s, |t| {
            internet_gateway::create_internet_gateway(t, Tags::new())
        });
        step(&mut s, |t| {
            internet_gateway::attach_internet_gateway(t, &igw.id, &v.id)
        });
        let (eip, _) = step(&mut s, |t| allocate_address(t, None, Tags::new()));
        let (nat, c) = step(&mut s, |t| {
            create_nat_gateway(
                t,
                &CreateRequest {
                    subnet_id: sn.id.clone(),
                    allocation_id: Some(eip.allocation_id.clone()),
                    ..Default::default()
                },
            )
        });
        assert_eq!(nat.host_id.as_deref(), Some(h1.as_str()));
        let rec = upserted(&c, &nat.eni_id);
        assert_eq!(rec.nat_gateway_id, nat.id);
        assert_eq!(rec.host_id, h1);
        assert_eq!(rec.host_underlay_ip, Some(ip("198.18.0.11")));
        assert!(rec.instance_id.is_empty() && !rec.source_dest_check);
        assert_eq!(
            rec.public_addresses,
            vec![PublicAddress {
                public_ip: eip.public_ip,
                private_ip: nat.private_ip,
            }]
        );
        let (_, c) = step(&mut s, |t| delete_nat_gateway(t, &nat.id));
        assert!(
            kinds(&c).contains(&format!("-eni {}", nat.eni_id)),
            "{:?}",
            kinds(&c)
        );
    }

    /// The instance's metadata rides on its placed ENIs' records: options changed by
    /// ModifyInstanceMetadataOptions reach them; its tags only while tags are enabled.
    #[test]
    fn instance_metadata_follows_the_instance_and_its_options() {
        use softvpc_model::instance_metadata::{modify, MetadataOptionsRequest};
        let mut s = State::new();
        let (_, _, sn) = host1_vpc_subnet(&mut s);
        let (r, c) = step(&mut s, |t| run_instances(t, &one_on_host1(&sn.id)));
        let (inst, primary) = (r.instances[0].id.clone(), r.instances[0].eni_id.clone());
        let m = upserted(&c, &primary)
            .instance_metadata
            .clone()
            .expect("metadata");
        assert_eq!(m.reservation_id, r.reservation_id);
        assert_eq!(
            (m.hop_limit, m.tokens_required, m.endpoint_enabled),
            (1, false, true)
        );
        assert_eq!(m.security_group_names, ["default"]);
        assert_eq!(m.region, "us-east-1");
        // A tag while tags are off: nothing for the agents beyond the Name.
        let (_, c) = step(&mut s, |t| {
            tags::create_tags(
                t,
                std::slice::from_ref(&inst),
                &[("Team".into(), "a".into())],
            )
        });
        assert!(c.is_empty(), "{:?}", kinds(&c));
        let req = MetadataOptionsRequest {
            http_tokens: Some("required".into()),
            hop_limit: Some(3),
            instance_metadata_tags: Some("enabled".into()),
            ..Default::default()
        };
        let (_, c) = step(&mut s, |t| modify(t, &inst, &req));
        let m = upserted(&c, &primary)
            .instance_metadata
            .clone()
            .expect("metadata");
        assert_eq!(
            (m.hop_limit, m.tokens_required, m.tags_enabled),
            (3, true, true)
        );
        assert_eq!(m.tags.get("Team").map(String::as_str), Some("a"));
        // The same options again change nothing.
        let (_, c) = step(&mut s, |t| modify(t, &inst, &req));
        assert!(c.is_empty(), "{:?}", kinds(&c));
        // Stopped: not placed, no metadata.
        let (_, c) = step(&mut s, |t| stop_instances(t, std::slice::from_ref(&inst)));
        assert!(upserted(&c, &primary).instance_metadata.is_none());
    }

    /// User data (decoded) and the launch key pair ride on the metadata; user data changed while
    /// stopped (ModifyInstanceAttribute) is what the instance gets after its start.
    #[test]
    fn user_data_and_the_launch_key_reach_the_metadata() {
        use softvpc_model::instance::{modify_instance, InstanceChange};
        use softvpc_model::key_pair::create_key_pair;
        let mut s = State::new();
        step(&mut s, |t| host::register_host(t, "host-1", "198.18.0.11"));
        let (v, _) = step(&mut s, |t| {
            vpc::create_vpc(t, "10.0.0.0/16", None, Tags::new())
        });
        let (sn, _) = step(&mut s, |t| {
            subnet::create_subnet(t, &v.id, "10.0.0.0/24", None, Tags::new())
        });
        step(&mut s, |t| {
            create_key_pair(
                t,
                "ops",
                "ed25519",
                "fp".into(),
                "ssh-ed25519 AAAAC3Nz".into(),
                Tags::new(),
            )
        });
        let req = RunRequest {
            user_data: Some("IyEvYmluL3NoCv8A".into()),
            key_name: Some("ops".into()),
            ..one_on_host1(&sn.id)
        };
        let (r, c) = step(&mut s, |t| run_instances(t, &req));
        let (inst, primary) = (r.instances[0].id.clone(), r.instances[0].eni_id.clone());
        let m = upserted(&c, &primary)
            .instance_metadata
            .clone()
            .expect("metadata");
        assert_eq!(m.user_data, b"#!/bin/sh\n\xff\x00");
        assert_eq!(
            m.public_key,
            Some(("ops".to_string(), "ssh-ed25519 AAAAC3Nz ops".to_string()))
        );
        step(&mut s, |t| stop_instances(t, std::slice::from_ref(&inst)));
        // Unpadded and with trailing bits, as the API's check lets through.
        step(&mut s, |t| {
            modify_instance(t, &inst, InstanceChange::UserData("eW9".into()))
        });
        let (_, c) = step(&mut s, |t| start_instances(t, std::slice::from_ref(&inst)));
        let m = upserted(&c, &primary)
            .instance_metadata
            .clone()
            .expect("metadata");
        assert_eq!(m.user_data, b"yo");
        // Without user data or a key: nothing.
        let (r, c) = step(&mut s, |t| run_instances(t, &one_on_host1(&sn.id)));
        let m = upserted(&c, &r.instances[0].eni_id)
            .instance_metadata
            .clone()
            .expect("metadata");
        assert!(m.user_data.is_empty() && m.public_key.is_none());
    }

    /// Every kind of write that changes what an agent sees produces exactly the mapping changes
    /// that reproduce the new records (checked by `step`), and at least one. Writes that do not
    /// reach the wire produce none.
    #[test]
    fn every_wire_change_is_derived() {
        let mut s = State::new();
        let (h1, c) = step(&mut s, |t| host::register_host(t, "host-1", "198.18.0.11"));
        assert_eq!(kinds(&c), [format!("+host {h1}")]);
        let (h2, _) = step(&mut s, |t| host::register_host(t, "host-2", "198.18.0.12"));
        let (v, c) = step(&mut s, |t| {
            vpc::create_vpc(t, "10.0.0.0/16", None, Tags::new())
        });
        assert!(kinds(&c).contains(&format!("+vpc {}", v.id)));
        let (sn, c) = step(&mut s, |t| {
            subnet::create_subnet(t, &v.id, "10.0.0.0/24", None, Tags::new())
        });
        // The subnet joins the default ACL.
        assert_eq!(kinds(&c)[0], format!("+subnet {}", sn.id));
        assert!(kinds(&c)[1].starts_with("+acl"), "{:?}", kinds(&c));
        let (_, c) = step(&mut s, |t| {
            attributes::modify_subnet_attribute(t, &sn.id, Some(true))
        });
        assert!(c.is_empty(), "MapPublicIpOnLaunch is not on the wire");
        let (igw, _) = step(&mut s, |t| {
            internet_gateway::create_internet_gateway(t, Tags::new())
        });
        step(&mut s, |t| {
            internet_gateway::attach_internet_gateway(t, &igw.id, &v.id)
        });

        // Launch: the ENI with its host, instance and automatic public IP.
        let (r, c) = step(&mut s, |t| run_instances(t, &one_on_host1(&sn.id)));
        let (inst, primary) = (r.instances[0].id.clone(), r.instances[0].eni_id.clone());
        let rec = upserted(&c, &primary);
        assert_eq!(rec.host_id, h1);
        assert_eq!(rec.instance_id, inst);
        assert_eq!(rec.public_addresses.len(), 1);
        assert_eq!(rec.security_group_ids.len(), 1, "the VPC's default group");

        // The instance's Name tag is on its ENIs' records.
        let (_, c) = step(&mut s, |t| {
            tags::create_tags(
                t,
                std::slice::from_ref(&inst),
                &[("Name".into(), "vm1".into())],
            )
        });
        assert_eq!(upserted(&c, &primary).instance_name, "vm1");
        let (_, c) = step(&mut s, |t| {
            tags::create_tags(
                t,
                std::slice::from_ref(&v.id),
                &[("team".into(), "a".into())],
            )
        });
        assert!(c.is_empty(), "a VPC's tags are not on the wire");

        // Secondary addresses, both ways.
        let (_, c) = step(&mut s, |t| {
            eni::assign_private_ips(t, &primary, &["10.0.0.77".into()], None, false)
        });
        assert_eq!(upserted(&c, &primary).secondary_ips, [ip("10.0.0.77")]);
        let (_, c) = step(&mut s, |t| {
            eni::unassign_private_ips(t, &primary, &["10.0.0.77".into()])
        });
        assert!(upserted(&c, &primary).secondary_ips.is_empty());

        // Security group membership.
        let (sg, c) = step(&mut s, |t| {
            security_group::create_security_group(t, "web", "web", Some(&v.id), Tags::new())
        });
        assert_eq!(kinds(&c), [format!("+sg {}", sg.id)]);
        let (_, c) = step(&mut s, |t| {
            eni::modify_attribute(t, &primary, eni::Modify::Groups(vec![sg.id.clone()]))
        });
        assert_eq!(
            upserted(&c, &primary).security_group_ids,
            std::slice::from_ref(&sg.id)
        );
        let (_, c) = step(&mut s, |t| {
            eni::modify_attribute(t, &primary, eni::Modify::Description("x".into()))
        });
        assert!(c.is_empty(), "a description is not on the wire");

        // DHCP option sets and DNS attributes reach the VPC's record (issue 11).
        let vrec = |c: &[Change]| {
            c.iter()
                .find_map(|c| match c {
                    Change::UpsertVpc(r) if r.vpc_id == v.id => Some(r.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no upsert of {} in {:?}", v.id, kinds(c)))
        };
        let (dopt, c) = step(&mut s, |t| {
            softvpc_model::dhcp_options::create_dhcp_options(
                t,
                vec![
                    ("domain-name".into(), vec!["corp.example".into()]),
                    (
                        "domain-name-servers".into(),
                        vec!["AmazonProvidedDNS".into(), "10.0.0.53".into()],
                    ),
                    ("ntp-servers".into(), vec!["169.254.169.123".into()]),
                ],
                Tags::new(),
            )
        });
        assert!(c.is_empty(), "an unused option set is not on the wire");
        let (_, c) = step(&mut s, |t| {
            softvpc_model::dhcp_options::associate_dhcp_options(t, &dopt.id, &v.id)
        });
        let set = vrec(&c).services.dhcp_options.expect("the set");
        assert_eq!(set.dhcp_options_id, dopt.id);
        assert_eq!(set.domain_name, "corp.example");
        assert_eq!(
            set.name_servers,
            [NameServer::AmazonProvided, NameServer::Ip(ip("10.0.0.53"))]
        );
        assert_eq!(set.ntp_servers, [ip("169.254.169.123")]);
        let (_, c) = step(&mut s, |t| {
            softvpc_model::dhcp_options::associate_dhcp_options(t, "default", &v.id)
        });
        assert_eq!(vrec(&c).services.dhcp_options, None);
        let (_, c) = step(&mut s, |t| {
            attributes::modify_vpc_attribute(t, &v.id, None, Some(true))
        });
        assert!(vrec(&c).services.dns_hostnames);

        // Elastic IP: replaces the automatic address (released), then the refill brings a new one.
        let (eip, c) = step(&mut s, |t| allocate_address(t, None, Tags::new()));
        assert!(c.is_empty());
        let (assoc, c) = step(&mut s, |t| {
            associate_address(
                t,
                &AssociateRequest {
                    allocation_id: Some(eip.allocation_id.clone()),
                    instance_id: Some(inst.clone()),
                    ..Default::default()
                },
            )
        });
        let rec = upserted(&c, &primary);
        assert_eq!(rec.public_addresses.len(), 1);
        assert_eq!(rec.public_addresses[0].public_ip, eip.public_ip);
        let (_, c) = step(&mut s, |t| disassociate_address(t, Some(&assoc), None));
        let rec = upserted(&c, &primary);
        assert_eq!(rec.public_addresses.len(), 1, "refilled");
        assert_ne!(rec.public_addresses[0].public_ip, eip.public_ip);

        // A second ENI, attached and detached.
        let (extra, c) = step(&mut s, |t| {
            eni::create_network_interface(
                t,
                &eni::CreateRequest {
                    subnet_id: sn.id.clone(),
                    ..Default::default()
                },
            )
        });
        assert!(upserted(&c, &extra.id).host_id.is_empty());
        // An Elastic IP on an ENI that had no public address: only the address changes.
        let (eip2, _) = step(&mut s, |t| allocate_address(t, None, Tags::new()));
        let (assoc2, c) = step(&mut s, |t| {
            associate_address(
                t,
                &AssociateRequest {
                    allocation_id: Some(eip2.allocation_id.clone()),
                    network_interface_id: Some(extra.id.clone()),
                    ..Default::default()
                },
            )
        });
        let rec = upserted(&c, &extra.id);
        assert_eq!(rec.public_addresses[0].public_ip, eip2.public_ip);
        let (_, c) = step(&mut s, |t| disassociate_address(t, Some(&assoc2), None));
        assert!(upserted(&c, &extra.id).public_addresses.is_empty());
        let (att, c) = step(&mut s, |t| {
            eni::attach_network_interface(t, &extra.id, &inst, 1)
        });
        let rec = upserted(&c, &extra.id);
        assert_eq!((rec.host_id.as_str(), rec.device_index), (h1.as_str(), 1));
        let (_, c) = step(&mut s, |t| eni::detach_network_interface(t, &att));
        assert!(upserted(&c, &extra.id).host_id.is_empty());

        // Stop: no host, public IP released. Start: both back.
        let (_, c) = step(&mut s, |t| stop_instances(t, std::slice::from_ref(&inst)));
        let rec = upserted(&c, &primary);
        assert!(rec.host_id.is_empty() && rec.public_addresses.is_empty());
        let (_, c) = step(&mut s, |t| start_instances(t, std::slice::from_ref(&inst)));
        let rec = upserted(&c, &primary);
        assert_eq!(rec.host_id, h1);
        assert_eq!(rec.public_addresses.len(), 1);

        // The host re-registers with a new underlay address: every ENI on it follows.
        let (_, c) = step(&mut s, |t| host::register_host(t, "host-1", "198.18.0.21"));
        assert!(kinds(&c).contains(&format!("+host {h1}")));
        assert_eq!(
            upserted(&c, &primary).host_underlay_ip,
            Some(ip("198.18.0.21"))
        );
        let (_, c) = step(&mut s, |t| host::register_host(t, "host-2", "198.18.0.12"));
        assert!(c.is_empty(), "a registration that changes nothing");
        let _ = h2;

        // Terminate, then delete what is left, down to the VPC.
        let (_, c) = step(&mut s, |t| {
            terminate_instances(t, std::slice::from_ref(&inst))
        });
        assert!(kinds(&c).contains(&format!("-eni {primary}")));
        let (_, c) = step(&mut s, |t| eni::delete_network_interface(t, &extra.id));
        assert_eq!(kinds(&c), [format!("-eni {}", extra.id)]);
        let (_, c) = step(&mut s, |t| subnet::delete_subnet(t, &sn.id));
        assert!(kinds(&c).contains(&format!("-subnet {}", sn.id)));
        step(&mut s, |t| {
            internet_gateway::detach_internet_gateway(t, &igw.id, &v.id)
        });
        step(&mut s, |t| security_group::delete_security_group(t, &sg.id));
        step(&mut s, |t| {
            softvpc_model::address::release_address(t, Some(&eip.allocation_id), None)
        });
        let (_, c) = step(&mut s, |t| vpc::delete_vpc(t, &v.id));
        let k = kinds(&c);
        assert_eq!(k.last(), Some(&format!("-vpc {}", v.id)));
        for prefix in ["-sg", "-acl", "-rtb"] {
            assert!(k.iter().any(|x| x.starts_with(prefix)), "{prefix} in {k:?}");
        }
    }

    /// Every write that changes a policy input of the data plane (groups and their rules, an
    /// ENI's groups and source/destination check, ACL entries and associations, routes, route
    /// table associations, route states, peering status) produces the change that carries it,
    /// and `step` checks that the changes reproduce the new records exactly.
    /// A prefix list is its own record: rules and routes name it, and a change of its entries
    /// is one upsert of the list (the groups and tables stay as they are).
    #[test]
    fn prefix_lists_are_records_of_their_own() {
        use softvpc_model::prefix_list::{self as pl, CreateSpec, ModifySpec};
        use softvpc_model::route_table;
        let mut s = State::new();
        let (v, _) = step(&mut s, |t| {
            vpc::create_vpc(t, "10.0.0.0/16", None, Tags::new())
        });
        let (list, c) = step(&mut s, |t| {
            pl::create(
                t,
                CreateSpec {
                    name: "corp".into(),
                    max_entries: 5,
                    address_family: "IPv4".into(),
                    entries: vec![("10.9.0.0/16".into(), None)],
                    ..Default::default()
                },
            )
        });
        assert_eq!(kinds(&c), [format!("+pl {}", list.id)]);
        let (g, _) = step(&mut s, |t| {
            security_group::create_security_group(t, "web", "w", Some(&v.id), Tags::new())
        });
        let (_, c) = step(&mut s, |t| {
            security_group::authorize(
                t,
                &g.id,
                false,
                &[security_group::Permission {
                    protocol: "tcp".into(),
                    from_port: Some(22),
                    to_port: Some(22),
                    prefix_lists: vec![(list.id.clone(), None)],
                    ..Default::default()
                }],
                Tags::new(),
            )
        });
        let rec = c
            .iter()
            .find_map(|c| match c {
                Change::UpsertSecurityGroup(g) => Some(g.clone()),
                _ => None,
            })
            .expect("group upsert");
        assert!(rec
            .rules
            .iter()
            .any(|r| r.peer == PolicyPeer::PrefixList(list.id.clone())));
        let main = s
            .route_tables
            .values()
            .find(|t| t.vpc_id == v.id && t.is_main())
            .map(|t| t.id.clone())
            .expect("main table");
        let igw = step(&mut s, |t| {
            internet_gateway::create_internet_gateway(t, Tags::new())
        })
        .0;
        step(&mut s, |t| {
            internet_gateway::attach_internet_gateway(t, &igw.id, &v.id)
        });
        let (_, c) = step(&mut s, |t| {
            route_table::create_route(
                t,
                &main,
                &list.id,
                &route_table::TargetSpec {
                    gateway_id: Some(igw.id.clone()),
                    ..Default::default()
                },
            )
        });
        let table = c
            .iter()
            .find_map(|c| match c {
                Change::UpsertRouteTable(t) => Some(t.clone()),
                _ => None,
            })
            .expect("table upsert");
        assert_eq!(table.prefix_list_routes.len(), 1);
        assert_eq!(table.prefix_list_routes[0].prefix_list_id, list.id);
        let (_, c) = step(&mut s, |t| {
            pl::modify(
                t,
                &list.id,
                ModifySpec {
                    current_version: Some(1),
                    add: vec![("10.8.0.0/16".into(), None)],
                    ..Default::default()
                },
            )
        });
        assert_eq!(kinds(&c), [format!("+pl {}", list.id)]);
        match &c[0] {
            Change::UpsertPrefixList(p) => assert_eq!(p.cidrs.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_policy_change_is_derived() {
        use softvpc_model::network_acl::{self as nacl, EntryRequest};
        use softvpc_model::peering::{self, CreateRequest};
        use softvpc_model::route_table::{self as rt, TargetSpec};
        use softvpc_model::security_group::Permission;
        use softvpc_policy::route::RouteState;

        let mut s = State::new();
        step(&mut s, |t| host::register_host(t, "host-1", "198.18.0.11"));
        let (v, c) = step(&mut s, |t| {
            vpc::create_vpc(t, "10.0.0.0/16", None, Tags::new())
        });
        // A new VPC brings its default group, default ACL and main table.
        let k = kinds(&c);
        for prefix in ["+vpc", "+sg", "+acl", "+rtb"] {
            assert!(k.iter().any(|x| x.starts_with(prefix)), "{prefix} in {k:?}");
        }
        let (sn, _) = step(&mut s, |t| {
            subnet::create_subnet(t, &v.id, "10.0.0.0/24", None, Tags::new())
        });
        let (r, _) = step(&mut s, |t| run_instances(t, &one_on_host1(&sn.id)));
        let primary = r.instances[0].eni_id.clone();

        // Rules: authorize, modify, revoke, each one upsert of the group.
        let (web, _) = step(&mut s, |t| {
            security_group::create_security_group(t, "web", "web", Some(&v.id), Tags::new())
        });
        let group_of = |c: &[Change]| -> SecurityGroupRecord {
            c.iter()
                .find_map(|c| match c {
                    Change::UpsertSecurityGroup(g) => Some(g.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no group upsert in {:?}", kinds(c)))
        };
        let perm = |proto: &str, port: i64, cidr: &str| Permission {
            protocol: proto.into(),
            from_port: Some(port),
            to_port: Some(port),
            cidrs: vec![(cidr.into(), None)],
            groups: vec![],
            prefix_lists: vec![],
        };
        let (rules, c) = step(&mut s, |t| {
            security_group::authorize(
                t,
                &web.id,
                false,
                &[perm("tcp", 22, "10.0.1.0/24")],
                Tags::new(),
            )
        });
        let g = group_of(&c);
        let rule = g
            .rules
            .iter()
            .find(|r| r.id == rules[0].id)
            .expect("rule on the wire");
        assert_eq!(
            rule.ports,
            softvpc_policy::secgroup::Ports::Range { from: 22, to: 22 }
        );
        // A rule referencing a group.
        let (_, c) = step(&mut s, |t| {
            security_group::authorize(
                t,
                &web.id,
                false,
                &[Permission {
                    protocol: "icmp".into(),
                    from_port: Some(-1),
                    to_port: Some(-1),
                    cidrs: vec![],
                    groups: vec![(web.id.clone(), None)],
                    prefix_lists: vec![],
                }],
                Tags::new(),
            )
        });
        assert!(group_of(&c)
            .rules
            .iter()
            .any(|r| r.peer == softvpc_policy::secgroup::Peer::Group(web.id.clone())));
        let (_, c) = step(&mut s, |t| {
            security_group::modify_rules(
                t,
                &web.id,
                &[security_group::RuleUpdate {
                    rule_id: rules[0].id.clone(),
                    protocol: Some("tcp".into()),
                    from_port: Some(80),
                    to_port: Some(80),
                    cidr: Some("10.0.1.0/24".into()),
                    referenced_group: None,
                    prefix_list: None,
                    description: None,
                    cidr_ipv6: false,
                }],
            )
        });
        let g = group_of(&c);
        assert!(g.rules.iter().any(|r| r.id == rules[0].id
            && r.ports == softvpc_policy::secgroup::Ports::Range { from: 80, to: 80 }));
        let (_, c) = step(&mut s, |t| {
            security_group::revoke(t, &web.id, false, &[], std::slice::from_ref(&rules[0].id))
        });
        assert!(group_of(&c).rules.iter().all(|r| r.id != rules[0].id));
        // Egress rules too.
        let (_, c) = step(&mut s, |t| {
            security_group::authorize(
                t,
                &web.id,
                true,
                &[perm("udp", 53, "10.0.0.0/16")],
                Tags::new(),
            )
        });
        assert!(group_of(&c)
            .rules
            .iter()
            .any(|r| r.direction == softvpc_policy::Direction::Egress));

        // The ENI's groups and its source/destination check.
        let (_, c) = step(&mut s, |t| {
            eni::modify_attribute(t, &primary, eni::Modify::Groups(vec![web.id.clone()]))
        });
        assert_eq!(
            upserted(&c, &primary).security_group_ids,
            std::slice::from_ref(&web.id)
        );
        let (_, c) = step(&mut s, |t| {
            eni::modify_attribute(t, &primary, eni::Modify::SourceDestCheck(false))
        });
        assert!(!upserted(&c, &primary).source_dest_check);
        // Its connection tracking timeouts: the one set changes, the others stay unset.
        let (_, c) = step(&mut s, |t| {
            eni::modify_attribute(
                t,
                &primary,
                eni::Modify::ConnectionTracking(eni::ConnectionTracking {
                    udp_timeout: Some(45),
                    ..Default::default()
                }),
            )
        });
        let spec = upserted(&c, &primary).connection_tracking;
        assert_eq!(spec.udp_timeout, Some(45));
        assert_eq!(spec.tcp_established_timeout, None);

        // Network ACLs: a new one, its entries, the subnet's association moving to it.
        let acl_of = |c: &[Change]| -> NetworkAclRecord {
            c.iter()
                .find_map(|c| match c {
                    Change::UpsertNetworkAcl(a) => Some(a.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no ACL upsert in {:?}", kinds(c)))
        };
        let (acl, c) = step(&mut s, |t| {
            nacl::create_network_acl(t, &v.id, Tags::new(), None)
        });
        assert!(acl_of(&c).entries.is_empty(), "only the implicit * rules");
        let entry = |n: i64, action: &str| EntryRequest {
            rule_number: n,
            egress: false,
            protocol: "6".into(),
            action: action.into(),
            cidr: Some("10.0.1.0/24".into()),
            port_from: Some(22),
            port_to: Some(22),
            ..Default::default()
        };
        let (_, c) = step(&mut s, |t| {
            nacl::create_entry(t, &acl.id, &entry(100, "allow"))
        });
        assert_eq!(acl_of(&c).entries[0].rule_number, 100);
        let (_, c) = step(&mut s, |t| {
            nacl::replace_entry(t, &acl.id, &entry(100, "deny"))
        });
        assert_eq!(
            acl_of(&c).entries[0].action,
            softvpc_policy::nacl::Action::Deny
        );
        let assoc = s
            .network_acls
            .values()
            .flat_map(|a| a.associations.iter())
            .find(|a| a.subnet_id == sn.id)
            .expect("the subnet's association")
            .id
            .clone();
        let (_, c) = step(&mut s, |t| nacl::replace_association(t, &assoc, &acl.id));
        assert_eq!(kinds(&c).len(), 2, "both ACLs: {:?}", kinds(&c));
        assert!(c.iter().any(|c| matches!(c,
            Change::UpsertNetworkAcl(a) if a.acl_id == acl.id && a.subnet_ids == [sn.id.clone()])));
        let (_, c) = step(&mut s, |t| nacl::delete_entry(t, &acl.id, 100, false));
        assert!(acl_of(&c).entries.is_empty());

        // Route tables: a custom table, a route to an ENI, the subnet's association, the main
        // association moving, and the route turning blackhole when its ENI goes.
        let table_of = |c: &[Change], id: &str| -> RouteTableRecord {
            c.iter()
                .find_map(|c| match c {
                    Change::UpsertRouteTable(t) if t.table_id == id => Some(t.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no upsert of {id} in {:?}", kinds(c)))
        };
        let (rtb, _) = step(&mut s, |t| rt::create_route_table(t, &v.id, Tags::new()));
        let (middlebox, _) = step(&mut s, |t| {
            eni::create_network_interface(
                t,
                &eni::CreateRequest {
                    subnet_id: sn.id.clone(),
                    ..Default::default()
                },
            )
        });
        let (_, c) = step(&mut s, |t| {
            rt::create_route(
                t,
                &rtb.id,
                "10.0.128.0/17",
                &TargetSpec {
                    network_interface_id: Some(middlebox.id.clone()),
                    ..Default::default()
                },
            )
        });
        assert!(table_of(&c, &rtb.id)
            .routes
            .iter()
            .any(|r| r.target
                == softvpc_policy::route::Target::NetworkInterface(middlebox.id.clone())));
        let (sub_assoc, c) = step(&mut s, |t| rt::associate_route_table(t, &rtb.id, &sn.id));
        assert_eq!(
            table_of(&c, &rtb.id).subnet_ids,
            std::slice::from_ref(&sn.id)
        );
        let main_assoc = s
            .route_tables
            .values()
            .flat_map(|t| t.associations.iter())
            .find(|a| a.main)
            .expect("main association")
            .id
            .clone();
        let (_, c) = step(&mut s, |t| {
            rt::replace_route_table_association(t, &main_assoc, &rtb.id)
        });
        assert!(table_of(&c, &rtb.id).main);
        let (_, c) = step(&mut s, |t| eni::delete_network_interface(t, &middlebox.id));
        let routes = table_of(&c, &rtb.id).routes;
        assert!(
            routes.iter().any(|r| r.state == RouteState::Blackhole),
            "{routes:?}"
        );
        let (_, c) = step(&mut s, |t| rt::delete_route(t, &rtb.id, "10.0.128.0/17"));
        assert_eq!(table_of(&c, &rtb.id).routes.len(), 1, "local only");
        let (_, c) = step(&mut s, |t| rt::disassociate_route_table(t, &sub_assoc));
        assert!(table_of(&c, &rtb.id).subnet_ids.is_empty());

        // Peering: pending is not on the wire; active is, and a route to it is active; deleted
        // removes it and blackholes the route.
        let (v2, _) = step(&mut s, |t| {
            vpc::create_vpc(t, "10.1.0.0/16", None, Tags::new())
        });
        let (pcx, c) = step(&mut s, |t| {
            peering::create_peering(
                t,
                &CreateRequest {
                    vpc_id: v.id.clone(),
                    peer_vpc_id: v2.id.clone(),
                    ..Default::default()
                },
            )
        });
        assert!(c.is_empty(), "pending: {:?}", kinds(&c));
        let (_, c) = step(&mut s, |t| peering::accept_peering(t, &pcx.id));
        assert_eq!(kinds(&c), [format!("+pcx {}", pcx.id)]);
        let (_, c) = step(&mut s, |t| {
            rt::create_route(
                t,
                &rtb.id,
                "10.1.0.0/16",
                &TargetSpec {
                    vpc_peering_connection_id: Some(pcx.id.clone()),
                    ..Default::default()
                },
            )
        });
        assert!(table_of(&c, &rtb.id)
            .routes
            .iter()
            .all(|r| r.state == RouteState::Active));
        let (_, c) = step(&mut s, |t| peering::delete_peering(t, &pcx.id));
        assert!(kinds(&c).contains(&format!("-pcx {}", pcx.id)));
        assert!(table_of(&c, &rtb.id)
            .routes
            .iter()
            .any(|r| r.state == RouteState::Blackhole));

        // Internet gateway detached: its route turns blackhole.
        let (igw, _) = step(&mut s, |t| {
            internet_gateway::create_internet_gateway(t, Tags::new())
        });
        step(&mut s, |t| {
            internet_gateway::attach_internet_gateway(t, &igw.id, &v.id)
        });
        let (_, c) = step(&mut s, |t| {
            rt::create_route(
                t,
                &rtb.id,
                "0.0.0.0/0",
                &TargetSpec {
                    gateway_id: Some(igw.id.clone()),
                    ..Default::default()
                },
            )
        });
        assert!(table_of(&c, &rtb.id).routes.iter().all(|r| r.target
            != softvpc_policy::route::Target::InternetGateway(igw.id.clone())
            || r.state == RouteState::Active));
        let (_, c) = step(&mut s, |t| {
            internet_gateway::detach_internet_gateway(t, &igw.id, &v.id)
        });
        assert!(table_of(&c, &rtb.id)
            .routes
            .iter()
            .any(|r| r.state == RouteState::Blackhole));

        // Deleting a group and an ACL.
        step(&mut s, |t| {
            eni::modify_attribute(
                t,
                &primary,
                eni::Modify::Groups(vec![
                    security_group::default_group_id(&t.state, &v.id).expect("default")
                ]),
            )
        });
        let (_, c) = step(&mut s, |t| {
            security_group::delete_security_group(t, &web.id)
        });
        assert_eq!(kinds(&c), [format!("-sg {}", web.id)]);
        step(&mut s, |t| {
            let back = s_assoc(&t.state, &sn.id);
            let default = nacl::default_acl(&t.state, &v.id)
                .expect("default")
                .id
                .clone();
            nacl::replace_association(t, &back, &default)
        });
        let (_, c) = step(&mut s, |t| nacl::delete_network_acl(t, &acl.id));
        assert_eq!(kinds(&c), [format!("-acl {}", acl.id)]);
    }

    fn s_assoc(state: &State, subnet_id: &str) -> String {
        state
            .network_acls
            .values()
            .flat_map(|a| a.associations.iter())
            .find(|a| a.subnet_id == subnet_id)
            .expect("association")
            .id
            .clone()
    }

    /// A write that bypasses every helper (a bare `Txn::put`) is still seen.
    #[test]
    fn a_bare_put_is_derived() {
        let mut s = State::new();
        let (_, _, sn) = host1_vpc_subnet(&mut s);
        let (e, _) = step(&mut s, |t| {
            eni::create_network_interface(
                t,
                &eni::CreateRequest {
                    subnet_id: sn.id.clone(),
                    ..Default::default()
                },
            )
        });
        let (_, c) = step(&mut s, |t| {
            let mut e = (*t.state.enis[&e.id]).clone();
            e.public_ip = Some("203.0.113.9".parse().expect("ip"));
            t.put(e);
            Ok(())
        });
        assert_eq!(
            upserted(&c, &e.id).public_addresses[0].public_ip,
            ip("203.0.113.9")
        );
    }

    /// A flow log reaches the records of the ENIs it covers (VPC, subnet or ENI), placed ones
    /// only, and leaves them when deleted; a flow log on another VPC changes nothing.
    #[test]
    fn flow_logs_ride_on_the_records_of_the_enis_they_cover() {
        use softvpc_model::flow_log::{self, CreateRequest};
        let mut s = State::new();
        // In the subnet's zone: instances run only on hosts of their subnet's zone.
        step(&mut s, |t| {
            host::register_host_in(t, "host-1", "198.18.0.11", Some("us-east-1b"))
        });
        let (v, _) = step(&mut s, |t| {
            vpc::create_vpc(t, "10.0.0.0/16", None, Tags::new())
        });
        let (v2, _) = step(&mut s, |t| {
            vpc::create_vpc(t, "10.1.0.0/16", None, Tags::new())
        });
        let (sn, _) = step(&mut s, |t| {
            subnet::create_subnet(t, &v.id, "10.0.0.0/24", Some("us-east-1b"), Tags::new())
        });
        let (r, _) = step(&mut s, |t| run_instances(t, &one_on_host1(&sn.id)));
        let primary = r.instances[0].eni_id.clone();
        let req = |kind: &str, id: &str, traffic: &str| CreateRequest {
            resource_type: kind.into(),
            resource_ids: vec![id.into()],
            traffic_type: Some(traffic.into()),
            log_destination_type: Some("s3".into()),
            log_destination: Some(format!("arn:aws:s3:::bucket-{}", traffic.to_lowercase())),
            max_aggregation_interval: Some(60),
            log_format: Some("${version} ${interface-id} ${az-id}".into()),
            ..Default::default()
        };
        let (made, c) = step(&mut s, |t| {
            flow_log::create_flow_logs(t, &req("VPC", &v.id, "ALL"))
        });
        let rec = upserted(&c, &primary);
        assert_eq!(rec.flow_logs.len(), 1);
        let spec = &rec.flow_logs[0];
        assert_eq!(spec.flow_log_id, made.flow_log_ids[0]);
        assert_eq!(spec.traffic_type, TrafficType::All);
        assert_eq!(spec.interval, 60);
        assert_eq!(spec.fields.len(), 3);
        assert_eq!(
            (
                spec.account_id.as_str(),
                spec.region.as_str(),
                spec.az_id.as_str()
            ),
            ("123456789012", "us-east-1", "use1-az2")
        );
        let (_, c) = step(&mut s, |t| {
            flow_log::create_flow_logs(t, &req("Subnet", &sn.id, "REJECT"))
        });
        assert_eq!(upserted(&c, &primary).flow_logs.len(), 2);
        let (eni_fl, c) = step(&mut s, |t| {
            flow_log::create_flow_logs(t, &req("NetworkInterface", &primary, "ACCEPT"))
        });
        assert_eq!(upserted(&c, &primary).flow_logs.len(), 3);
        let (_, c) = step(&mut s, |t| {
            flow_log::create_flow_logs(t, &req("VPC", &v2.id, "ALL"))
        });
        assert!(c.is_empty(), "another VPC's flow log: {:?}", kinds(&c));
        let (_, c) = step(&mut s, |t| {
            flow_log::delete_flow_logs(t, &eni_fl.flow_log_ids)
        });
        assert_eq!(upserted(&c, &primary).flow_logs.len(), 2);
        // A stopped instance's ENI is on no host: no flow logs on its record.
        let (_, c) = step(&mut s, |t| stop_instances(t, &[r.instances[0].id.clone()]));
        assert!(upserted(&c, &primary).flow_logs.is_empty());
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;
    use softvpc_model::instance::{run_instances, start_instances, stop_instances, RunRequest};
    use softvpc_model::{eni, host, subnet, vpc, Tags, Txn};

    /// The VPCs with an ENI placed on `host_id`.
    fn needed_vpcs(state: &State, host_id: &str) -> std::collections::BTreeSet<String> {
        state
            .enis
            .values()
            .filter(|e| placed_host(state, e) == Some(host_id))
            .map(|e| e.vpc_id.clone())
            .collect()
    }

    #[test]
    fn eni_records_follow_secondary_ips_attachments_and_instance_state() {
        let mut txn = Txn::new(State::new(), 0);
        let v = vpc::create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let s = subnet::create_subnet(&mut txn, &v.id, "10.0.0.0/24", None, Tags::new()).unwrap();
        let h1 = host::register_host(&mut txn, "host-1", "198.18.0.11").unwrap();
        let h2 = host::register_host(&mut txn, "host-2", "198.18.0.12").unwrap();
        let launch = |txn: &mut Txn, h: &str| {
            run_instances(
                txn,
                &RunRequest {
                    min_count: 1,
                    max_count: 1,
                    subnet_id: s.id.clone(),
                    host: Some(h.into()),
                    ..Default::default()
                },
            )
            .unwrap()
            .instances[0]
                .clone()
        };
        let i1 = launch(&mut txn, "host-1");
        let i2 = launch(&mut txn, "host-2");
        eni::assign_private_ips(&mut txn, &i1.eni_id, &["10.0.0.77".into()], None, false).unwrap();
        let rec = eni_record(&txn.state, &txn.state.enis[&i1.eni_id]);
        assert_eq!(
            rec.secondary_ips,
            vec![std::net::Ipv4Addr::new(10, 0, 0, 77)]
        );
        assert_eq!(rec.host_id, h1);
        assert_eq!(
            rec.host_underlay_ip,
            Some(std::net::Ipv4Addr::new(198, 18, 0, 11))
        );
        assert_eq!(rec.device_index, 0);

        // An extra ENI attached to the instance on host-2 lives on host-2.
        let extra = eni::create_network_interface(
            &mut txn,
            &eni::CreateRequest {
                subnet_id: s.id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
        let rec = eni_record(&txn.state, &txn.state.enis[&extra.id]);
        assert!(rec.host_id.is_empty() && rec.instance_id.is_empty());
        eni::attach_network_interface(&mut txn, &extra.id, &i2.id, 1).unwrap();
        let rec = eni_record(&txn.state, &txn.state.enis[&extra.id]);
        assert_eq!((rec.host_id.as_str(), rec.device_index), (h2.as_str(), 1));

        // Stopped: the instance's ENIs have no host, and host-1 no longer needs the VPC.
        assert!(needed_vpcs(&txn.state, &h1).contains(&v.id));
        stop_instances(&mut txn, std::slice::from_ref(&i1.id)).unwrap();
        let rec = eni_record(&txn.state, &txn.state.enis[&i1.eni_id]);
        assert!(rec.host_id.is_empty() && rec.host_underlay_ip.is_none());
        assert_eq!(rec.instance_id, i1.id);
        assert!(needed_vpcs(&txn.state, &h1).is_empty());
        start_instances(&mut txn, std::slice::from_ref(&i1.id)).unwrap();
        assert_eq!(
            eni_record(&txn.state, &txn.state.enis[&i1.eni_id]).host_id,
            h1
        );
        assert!(needed_vpcs(&txn.state, &h1).contains(&v.id));
    }
}
