//! The mapping table: the immutable, lookup-optimised view of the mapping the data path uses.
//!
//! The shell (the agent) builds a [`MappingTable`] with a [`TableBuilder`] from what the
//! mapping service sent, after each batch of changes, and swaps it in whole (an `Arc`), so a
//! packet always sees one consistent view. The table holds only what forwarding needs:
//! `(vni, ip) -> ENI`, `port -> ENI`, `vni -> VPC`, `(vni, ip) -> subnet` for router addresses,
//! and the set of registered underlay IPs; where an ENI is (local port or remote host) is
//! resolved by the shell.
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
}

/// Collects hosts, VPCs, subnets and placed ENIs, then builds the [`MappingTable`].
#[derive(Debug)]
pub struct TableBuilder {
    local_underlay_ip: Ipv4Addr,
    hosts: FastSet<u32>,
    vpcs: BTreeMap<String, (Vni, Vec<Ipv4Net>)>,
    subnets: BTreeMap<String, (String, Ipv4Net)>,
    enis: BTreeMap<String, PlacedEni>,
}

impl TableBuilder {
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

    /// A subnet of a VPC (its router address is the network address + 1).
    pub fn subnet(&mut self, subnet_id: &str, vpc_id: &str, cidr: Ipv4Net) -> &mut Self {
        self.subnets
            .insert(subnet_id.to_string(), (vpc_id.to_string(), cidr));
        self
    }

    /// A placed ENI (an ENI placed nowhere, or local without a port yet, is left out).
    pub fn eni(&mut self, eni_id: &str, eni: PlacedEni) -> &mut Self {
        self.enis.insert(eni_id.to_string(), eni);
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
        };

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
            });
            t.routers.insert(vni_ip_key(vni, router_ip), idx.0);
            subnet_idx.insert(subnet_id.as_str(), idx);
        }

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
            t.enis.push(EniEntry {
                eni_id: eni_id.as_str().into(),
                vni,
                mac: eni.mac,
                ip: eni.ip,
                secondary_ips: eni.secondary_ips.clone().into_boxed_slice(),
                subnet,
                location: eni.location,
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
        }
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
