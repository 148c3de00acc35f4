//! The mapping model as the engine sees it.
//!
//! [`MappingRecords`] is the agent's mutable copy of what the mapping service sent (hosts, VPCs,
//! subnets, ENIs, keyed by id). [`MappingTable`] is the immutable, lookup-optimised snapshot built
//! from it for the data path: `(vni, ip) -> ENI`, `vni -> VPC`, router addresses, the set of
//! registered underlay IPs, and which ENIs are local (and on which port). The shell rebuilds the
//! table after each batch of changes and swaps it in atomically; lookups are hash-map lookups.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// An Ethernet MAC address.
pub type Mac = [u8; 6];

/// A VXLAN network identifier (24 bits): one per VPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vni(pub u32);

/// A registered host (where agents run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    pub host_id: String,
    pub name: String,
    pub underlay_ip: Ipv4Addr,
}

/// A VPC: its VNI and CIDR blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcInfo {
    pub vpc_id: String,
    pub vni: Vni,
    pub cidrs: Vec<Ipv4Net>,
}

/// A subnet of a VPC. Its router address is the network address + 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetInfo {
    pub subnet_id: String,
    pub vpc_id: String,
    pub cidr: Ipv4Net,
}

/// An ENI and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniInfo {
    pub eni_id: String,
    pub vpc_id: String,
    pub vni: Vni,
    pub subnet_id: String,
    pub ip: Ipv4Addr,
    pub secondary_ips: Vec<Ipv4Addr>,
    pub mac: Mac,
    /// Empty when the ENI is not placed on any host.
    pub host_id: String,
    pub host_underlay_ip: Option<Ipv4Addr>,
    pub instance_id: String,
    pub instance_name: String,
}

/// The agent's mutable copy of the mapping view (what the mapping service sent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingRecords {
    pub hosts: BTreeMap<String, HostInfo>,
    pub vpcs: BTreeMap<String, VpcInfo>,
    pub subnets: BTreeMap<String, SubnetInfo>,
    pub enis: BTreeMap<String, EniInfo>,
}

/// The immutable, lookup-optimised snapshot the data path uses.
///
/// Built by [`MappingTable::build`]; `ports` names the local port (TAP) of each local ENI, by
/// ENI id. ENIs placed on this host but without a port yet are treated as absent.
#[derive(Debug, Default)]
pub struct MappingTable {
    // Implementation-defined fields (see the engine implementation).
    #[doc(hidden)]
    pub inner: crate::mapping::TableInner,
}

#[doc(hidden)]
#[derive(Debug, Default)]
pub struct TableInner {
    pub local_underlay_ip: Option<Ipv4Addr>,
    pub _ports: HashMap<String, u32>,
}

impl MappingTable {
    /// Builds the lookup snapshot for the host whose underlay address is `local_underlay_ip`.
    pub fn build(
        records: &MappingRecords,
        local_underlay_ip: Ipv4Addr,
        ports: &HashMap<String, crate::PortId>,
    ) -> MappingTable {
        let _ = (records, ports);
        MappingTable {
            inner: TableInner {
                local_underlay_ip: Some(local_underlay_ip),
                _ports: HashMap::new(),
            },
        }
    }
}
