//! The mapping model as the engine sees it.
//!
//! [`MappingRecords`] is the agent's mutable copy of what the mapping service sent (hosts, VPCs,
//! subnets, ENIs, keyed by id). [`MappingTable`] is the immutable, lookup-optimised snapshot built
//! from it for the data path: `(vni, ip) -> ENI`, `port -> ENI`, `vni -> VPC`, `(vni, ip) ->
//! subnet` for router addresses, and the set of registered underlay IPs. The shell rebuilds the
//! table after each batch of changes and swaps it in whole (an `Arc`), so a packet always sees
//! one consistent view.
//!
//! Every lookup is keyed by VNI first: VPCs may reuse each other's addresses and never mix.
//! Lookups are one hash-map probe with a fixed-seed `foldhash` hasher on integer keys (no
//! allocation, no string hashing on the data path).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

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

/// A registered host (where agents run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// The host id (`h-...`).
    pub host_id: String,
    /// The host name the agent registered with.
    pub name: String,
    /// Its underlay address (VXLAN endpoint).
    pub underlay_ip: Ipv4Addr,
}

/// A VPC: its VNI and CIDR blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcInfo {
    /// The VPC id.
    pub vpc_id: String,
    /// Its VNI.
    pub vni: Vni,
    /// Its IPv4 CIDR blocks.
    pub cidrs: Vec<Ipv4Net>,
}

/// A subnet of a VPC. Its router address is the network address + 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetInfo {
    /// The subnet id.
    pub subnet_id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Its CIDR block.
    pub cidr: Ipv4Net,
}

/// An ENI and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniInfo {
    /// The ENI id.
    pub eni_id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Its VPC's VNI.
    pub vni: Vni,
    /// Its subnet.
    pub subnet_id: String,
    /// Primary private address.
    pub ip: Ipv4Addr,
    /// Secondary private addresses.
    pub secondary_ips: Vec<Ipv4Addr>,
    /// Its MAC.
    pub mac: Mac,
    /// Empty when the ENI is not placed on any host.
    pub host_id: String,
    /// The underlay address of the host it is placed on.
    pub host_underlay_ip: Option<Ipv4Addr>,
    /// The instance it is attached to (empty: none).
    pub instance_id: String,
    /// That instance's Name tag (empty: none).
    pub instance_name: String,
    /// The attachment's device index (0: the instance's `eth0`).
    pub device_index: u32,
}

/// The agent's mutable copy of the mapping view (what the mapping service sent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingRecords {
    /// Registered hosts by id.
    pub hosts: BTreeMap<String, HostInfo>,
    /// VPCs by id.
    pub vpcs: BTreeMap<String, VpcInfo>,
    /// Subnets by id.
    pub subnets: BTreeMap<String, SubnetInfo>,
    /// ENIs by id.
    pub enis: BTreeMap<String, EniInfo>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl EniEntry {
    /// Whether `ip` is the ENI's primary or one of its secondary addresses.
    #[inline]
    pub fn owns_ip(&self, ip: Ipv4Addr) -> bool {
        self.ip == ip || self.secondary_ips.contains(&ip)
    }
}

/// A subnet as the data path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetEntry {
    /// The subnet id.
    pub subnet_id: Box<str>,
    /// Its VPC's VNI.
    pub vni: Vni,
    /// Its CIDR block.
    pub cidr: Ipv4Net,
    /// Network address + 1: the VPC router's address in this subnet.
    pub router_ip: Ipv4Addr,
}

/// A VPC as the data path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcEntry {
    /// The VPC id.
    pub vpc_id: Box<str>,
    /// Its VNI.
    pub vni: Vni,
    /// Its IPv4 CIDR blocks.
    pub cidrs: Box<[Ipv4Net]>,
    /// Its router's MAC ([`router_mac`]).
    pub router_mac: Mac,
}

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
/// Built by [`MappingTable::build`]; `ports` names the local port (TAP) of each local ENI, by
/// ENI id. ENIs placed on this host but without a port yet are treated as absent, as are ENIs
/// placed on no host.
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
}

impl MappingTable {
    /// Builds the lookup snapshot for the host whose underlay address is `local_underlay_ip`,
    /// in time linear in the number of records.
    ///
    /// Inconsistent records are tolerated (the table must always be buildable): an ENI whose
    /// VNI does not fit 24 bits or whose host is unknown is left out; when two ENIs of one VPC
    /// claim the same address the first (by ENI id) keeps it. Each case is logged.
    pub fn build(
        records: &MappingRecords,
        local_underlay_ip: Ipv4Addr,
        ports: &HashMap<String, PortId>,
    ) -> MappingTable {
        let mut t = MappingTable {
            local_underlay_ip: Some(local_underlay_ip),
            enis: Vec::with_capacity(records.enis.len()),
            subnets: Vec::with_capacity(records.subnets.len()),
            by_ip: FastMap::with_capacity_and_hasher(records.enis.len(), FastState::default()),
            by_port: FastMap::with_capacity_and_hasher(ports.len(), FastState::default()),
            vpcs: FastMap::with_capacity_and_hasher(records.vpcs.len(), FastState::default()),
            routers: FastMap::with_capacity_and_hasher(records.subnets.len(), FastState::default()),
            hosts: records
                .hosts
                .values()
                .map(|h| u32::from(h.underlay_ip))
                .collect(),
        };

        for vpc in records.vpcs.values() {
            if vpc.vni.0 > Vni::MAX {
                tracing::warn!(vpc = %vpc.vpc_id, vni = vpc.vni.0, "VNI wider than 24 bits; VPC ignored");
                continue;
            }
            t.vpcs.insert(
                vpc.vni.0,
                VpcEntry {
                    vpc_id: vpc.vpc_id.as_str().into(),
                    vni: vpc.vni,
                    cidrs: vpc.cidrs.clone().into_boxed_slice(),
                    router_mac: router_mac(vpc.vni),
                },
            );
        }
        // Id -> VNI and id -> subnet index, hashed once (the records are keyed by strings).
        let vnis: FastMap<&str, Vni> = records
            .vpcs
            .iter()
            .map(|(id, v)| (id.as_str(), v.vni))
            .collect();
        let vni_of_vpc = |vpc_id: &str| vnis.get(vpc_id).copied();

        let mut subnet_idx: FastMap<&str, SubnetIdx> =
            FastMap::with_capacity_and_hasher(records.subnets.len(), FastState::default());
        for s in records.subnets.values() {
            let Some(vni) = vni_of_vpc(&s.vpc_id).filter(|v| t.vpcs.contains_key(&v.0)) else {
                tracing::warn!(subnet = %s.subnet_id, vpc = %s.vpc_id, "subnet of an unknown VPC; ignored");
                continue;
            };
            let cidr = s.cidr.trunc();
            let router_ip = Ipv4Addr::from(u32::from(cidr.network()).wrapping_add(1));
            let idx = SubnetIdx(t.subnets.len() as u32);
            t.subnets.push(SubnetEntry {
                subnet_id: s.subnet_id.as_str().into(),
                vni,
                cidr,
                router_ip,
            });
            t.routers.insert(vni_ip_key(vni, router_ip), idx.0);
            subnet_idx.insert(s.subnet_id.as_str(), idx);
        }

        for eni in records.enis.values() {
            // The VPC's VNI is authoritative; the ENI's own copy covers a VPC not (yet) sent.
            let vni = vni_of_vpc(&eni.vpc_id).unwrap_or(eni.vni);
            if vni.0 > Vni::MAX {
                tracing::warn!(eni = %eni.eni_id, vni = vni.0, "VNI wider than 24 bits; ENI ignored");
                continue;
            }
            let underlay = eni
                .host_underlay_ip
                .or_else(|| records.hosts.get(&eni.host_id).map(|h| h.underlay_ip));
            let location = match underlay {
                None => continue, // not placed anywhere: absent
                Some(ip) if ip == local_underlay_ip => match ports.get(&eni.eni_id) {
                    Some(&port) => Location::Local(port),
                    None => continue, // local but no TAP yet: absent until the shell has one
                },
                Some(ip) => Location::Remote(ip),
            };
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
                            eni = %eni.eni_id,
                            holder = %t.enis[*o.get() as usize].eni_id,
                            %ip,
                            vni = vni.0,
                            "address claimed by two ENIs of one VPC; the first keeps it"
                        );
                    }
                }
            }
            if let Location::Local(port) = location {
                if let Some(prev) = t.by_port.insert(port, idx) {
                    tracing::warn!(
                        eni = %eni.eni_id,
                        other = %t.enis[prev as usize].eni_id,
                        port = port.0,
                        "two ENIs on one port; the last one wins"
                    );
                }
            }
            t.enis.push(EniEntry {
                eni_id: eni.eni_id.as_str().into(),
                vni,
                mac: eni.mac,
                ip: eni.ip,
                secondary_ips: eni.secondary_ips.clone().into_boxed_slice(),
                subnet,
                location,
            });
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
