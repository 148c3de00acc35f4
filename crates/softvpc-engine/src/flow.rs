//! The unified flow table: the composed result of the layers, cached per flow.
//!
//! As OPTE's unified flow table (UFT) or an OVS megaflow, the first packet of a flow walks the
//! layers; when it is forwarded, what the layers decided together (the VPC, the MAC rewrite,
//! where it goes, and which connection-tracking tables hold its connection) is kept as one
//! [`FlowEntry`], a plain value: later packets of the flow cost one hash lookup (plus one
//! lookup per tracked side, to keep the connection's idle timer and TCP state, as OPTE keeps
//! its TCP flow state alongside the UFT entry).
//!
//! **Generations.** Each entry records the [`Generation`] of the mapping table it was decided
//! under; every table the shell swaps in has a new one (mappings, groups, members, ACLs,
//! routes and peerings all arrive that way), and an entry of another generation is recomputed
//! before use. So any change applies to the very next packet, also of established flows, like
//! OPTE's port epoch. A tracked connection survives the change in its conntrack table (AWS:
//! removing a rule does not cut it); the walk then finds it there.
//!
//! **What is cached.** Forwarded flows only: drops, replies of the gateway and ICMP errors let
//! through for the connection they quote walk the layers every time. The key
//! ([`FlowId`]) holds everything the layers decide on besides the per-packet checks the hit path
//! repeats (a valid IPv4 header, a TTL left for a routed packet, the conntrack entry): where
//! the frame came from (port, or VNI and sending host), both MACs, and the flow key.
//!
//! **Bounded.** At most `limit` entries; a full table sweeps entries idle for [`IDLE`] (at most
//! once a second) and otherwise stops caching (the layers still decide every packet). The
//! engine's timer sweeps idle and stale entries. The key hashes with a random seed (keys come
//! from packets).
//!
//! **Later.** One lookup per flow is what a 64 KB super-frame needs (all its segments share the
//! key), and an entry is a value a kernel fast path could hold: the key, the rewrite, the
//! encapsulation or the port.
//!
//! **Parked entries.** The kernel fast path's offer ([`crate::Engine::kernel_flows`]) runs every
//! few milliseconds over the table, which also holds ended connections until they idle out. An
//! entry it found it cannot offer until a packet uses or replaces it (another generation's, an
//! ended TCP connection) is parked: the offer skips it without looking its connection up, and
//! any lookup or insert of the entry unparks it.
//!
//! **Changes.** Once the kernel offer's incremental form ([`crate::Engine::poll_offers`]) has
//! asked for them ([`FlowTable::track_changes`]), the table queues the id of every entry a packet
//! or a fold looked up, inserted or replaced, and of every entry removed, once until the next
//! drain ([`FlowTable::drain_changes`]): what the offer must look at again, without walking the
//! table. A lookup costs a flag test; the queue keeps its buffer between drains.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use softvpc_policy::{Direction as PolicyDirection, Generation};
use softvpc_wire::{FlowKey, FrameMeta, L3Meta};

use crate::layers::{Encap, Rewrite};
use crate::mapping::{Mac, Vni};
use crate::PortId;

/// An entry idle this long may be swept.
pub const IDLE: Duration = Duration::from_secs(60);

/// The default bound on entries (about 10 MB).
pub const DEFAULT_LIMIT: usize = 131_072;

/// Where a flow's packets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowSide {
    /// Sent by the instance on a local port.
    Port(PortId),
    /// Decapsulated: the VPC and the sending host.
    Underlay {
        /// The VXLAN VNI.
        vni: Vni,
        /// The outer source address.
        host: Ipv4Addr,
    },
}

/// The key of a flow-table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowId {
    /// Where it came from.
    pub side: FlowSide,
    /// The (inner) frame's source MAC.
    pub src_mac: Mac,
    /// The (inner) frame's destination MAC.
    pub dst_mac: Mac,
    /// Addresses, protocol and ports or ICMP fields.
    pub key: FlowKey,
}

impl FlowId {
    /// The key of a frame the table may serve (a valid IPv4 header, no VLAN tag), from its one
    /// parse; `None` for anything else.
    #[inline]
    pub fn of(meta: &FrameMeta<'_>, side: FlowSide) -> Option<FlowId> {
        match meta.l3 {
            L3Meta::Ipv4(ip) if ip.valid && meta.vlan.is_none() => Some(FlowId {
                side,
                src_mac: meta.src_mac.0,
                dst_mac: meta.dst_mac.0,
                key: FlowKey {
                    src: ip.src,
                    dst: ip.dst,
                    proto: u8::from(ip.proto),
                    l4: ip.l4,
                },
            }),
            _ => None,
        }
    }
}

/// Where a forwarded frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A local instance sent it to another local port.
    LocalPort(PortId),
    /// Decapsulated for a local port.
    DecapPort(PortId),
    /// Encapsulated to another host.
    Underlay(Encap),
}

/// What to do with every packet of a flow: a plain value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowEntry {
    /// The table generation it was decided under.
    pub generation: Generation,
    /// The VPC the frame goes on in (the peer's over a peering connection).
    pub vni: Vni,
    /// A routed frame's MAC rewrite (and TTL decrement).
    pub rewrite: Option<Rewrite>,
    /// Where it goes.
    pub to: Destination,
    /// To the internet: the public source address it leaves with.
    pub snat: Option<std::net::Ipv4Addr>,
    /// Bound for an internet gateway (directly or through a NAT gateway): a packet larger than
    /// its MTU is decided by the layers.
    pub edge_mtu: bool,
    /// The conntrack tables holding the flow's connection (the sender's and the receiver's
    /// local ENI, by port, and the direction it crosses them): each packet must find it there.
    pub tracked: [Option<(PortId, PolicyDirection)>; 2],
    /// When a packet last used it.
    pub last_used: Instant,
}

/// One entry, whether the kernel offer skips it (see the [module docs](self); atomic so the
/// offer can park through `&self`) and whether its id waits in the change queue.
#[derive(Debug)]
struct Slot {
    entry: FlowEntry,
    parked: AtomicBool,
    queued: bool,
}

/// The flow table. See the [module docs](self).
#[derive(Debug)]
pub struct FlowTable {
    map: HashMap<FlowId, Slot, foldhash::fast::RandomState>,
    limit: usize,
    last_full_sweep: Option<Instant>,
    /// Ids changed since the last drain, once each (`None`: nobody asked).
    changes: Option<Vec<FlowId>>,
}

impl FlowTable {
    /// An empty table of at most `limit` entries.
    pub fn new(limit: usize) -> FlowTable {
        FlowTable {
            map: HashMap::default(),
            limit,
            last_full_sweep: None,
            changes: None,
        }
    }

    /// The entry of `id`, whatever its generation (queued as changed: the caller may advance
    /// its connection).
    #[inline]
    pub fn get_mut(&mut self, id: &FlowId) -> Option<&mut FlowEntry> {
        let changes = &mut self.changes;
        self.map.get_mut(id).map(|s| {
            *s.parked.get_mut() = false;
            if !s.queued {
                if let Some(c) = changes {
                    s.queued = true;
                    c.push(*id);
                }
            }
            &mut s.entry
        })
    }

    /// The entry of `id`, untouched (not unparked, not queued).
    #[inline]
    pub fn get(&self, id: &FlowId) -> Option<&FlowEntry> {
        self.map.get(id).map(|s| &s.entry)
    }

    /// Forgets one entry.
    #[inline]
    pub fn remove(&mut self, id: &FlowId) {
        if let Some(s) = self.map.remove(id) {
            Self::removed(&mut self.changes, id, &s);
        }
    }

    /// Queues a removed entry's id (unless it waits already).
    #[inline]
    fn removed(changes: &mut Option<Vec<FlowId>>, id: &FlowId, s: &Slot) {
        if let (Some(c), false) = (changes, s.queued) {
            c.push(*id);
        }
    }

    /// From now on, queues every changed id for [`drain_changes`](Self::drain_changes); the
    /// first call queues every entry there is.
    pub fn track_changes(&mut self) {
        if self.changes.is_some() {
            return;
        }
        let mut c = Vec::with_capacity(self.map.len());
        for (id, s) in self.map.iter_mut() {
            s.queued = true;
            c.push(*id);
        }
        self.changes = Some(c);
    }

    /// Whether changes are queued ([`track_changes`](Self::track_changes) was called).
    pub fn tracks_changes(&self) -> bool {
        self.changes.is_some()
    }

    /// Whether ids are queued as changed (cheap: the data path asks on every wake-up).
    pub fn has_changes(&self) -> bool {
        self.changes.as_ref().is_some_and(|c| !c.is_empty())
    }

    /// Moves the ids changed since the last drain into `into` (cleared first; the two buffers
    /// swap, so neither is reallocated once large enough), each once.
    pub fn drain_changes(&mut self, into: &mut Vec<FlowId>) {
        into.clear();
        let Some(c) = &mut self.changes else {
            return;
        };
        std::mem::swap(c, into);
        for id in into.iter() {
            if let Some(s) = self.map.get_mut(id) {
                s.queued = false;
            }
        }
    }

    /// Caches `entry` for `id`; false when the table is full (after sweeping idle entries, at
    /// most once a second).
    pub fn insert(&mut self, id: FlowId, entry: FlowEntry) -> bool {
        if self.map.len() >= self.limit && !self.map.contains_key(&id) {
            let now = entry.last_used;
            let may_sweep = self
                .last_full_sweep
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
            if !may_sweep {
                return false;
            }
            self.last_full_sweep = Some(now);
            let changes = &mut self.changes;
            self.map.retain(|id, s| {
                let keep = now.saturating_duration_since(s.entry.last_used) < IDLE;
                if !keep {
                    Self::removed(changes, id, s);
                }
                keep
            });
            if self.map.len() >= self.limit {
                return false;
            }
        }
        match self.map.entry(id) {
            std::collections::hash_map::Entry::Occupied(o) => {
                let s = o.into_mut();
                s.entry = entry;
                *s.parked.get_mut() = false;
                if !s.queued {
                    if let Some(c) = &mut self.changes {
                        s.queued = true;
                        c.push(id);
                    }
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                let queued = match &mut self.changes {
                    Some(c) => {
                        c.push(id);
                        true
                    }
                    None => false,
                };
                v.insert(Slot {
                    entry,
                    parked: AtomicBool::new(false),
                    queued,
                });
            }
        }
        true
    }

    /// Removes entries idle for [`IDLE`] and entries of another generation than `current`;
    /// returns how many.
    pub fn expire(&mut self, now: Instant, current: Generation) -> usize {
        let before = self.map.len();
        let changes = &mut self.changes;
        self.map.retain(|id, s| {
            let e = &s.entry;
            let keep = e.generation == current && now.saturating_duration_since(e.last_used) < IDLE;
            if !keep {
                Self::removed(changes, id, s);
            }
            keep
        });
        before - self.map.len()
    }

    /// Entries now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every entry (for `softvpc trace` and diagnostics).
    pub fn iter(&self) -> impl Iterator<Item = (&FlowId, &FlowEntry)> {
        self.map.iter().map(|(id, s)| (id, &s.entry))
    }

    /// Every entry not parked (the kernel offer's candidates).
    pub fn unparked(&self) -> impl Iterator<Item = (&FlowId, &FlowEntry)> {
        self.map
            .iter()
            .filter(|(_, s)| !s.parked.load(Ordering::Relaxed))
            .map(|(id, s)| (id, &s.entry))
    }

    /// Parks `id`'s entry until a lookup or insert of it (the kernel offer cannot take it
    /// before).
    pub fn park(&self, id: &FlowId) {
        if let Some(s) = self.map.get(id) {
            s.parked.store(true, Ordering::Relaxed);
        }
    }
}

/// Bytes one flow-table entry costs, key and value (the hash table adds a control byte per slot
/// and keeps up to 1/8 free).
pub const fn bytes_per_entry() -> usize {
    std::mem::size_of::<(FlowId, FlowEntry)>()
}

/// The flow-key extraction's invariants on any bytes, for the fuzz target `engine_flow_key` and
/// the property tests: parsing never panics; the flow-table key, the policy packet and the
/// frame's flow key agree; a reply's key reversed is the flow's; both directions of a flow meet
/// the same conntrack key; an ICMP error's quote parses or is refused without panicking.
#[doc(hidden)]
pub fn check_flow_key(data: &[u8]) {
    use softvpc_policy::conntrack::ConnKey;
    use softvpc_policy::packet::parse_icmp_quote;
    let Ok(meta) = FrameMeta::parse(data) else {
        return;
    };
    let id = FlowId::of(&meta, FlowSide::Port(PortId(0)));
    let Some(ip) = meta.ipv4() else {
        assert!(id.is_none());
        return;
    };
    let key = meta.flow_key().expect("an IPv4 frame has a flow key");
    if let Some(id) = id {
        assert!(ip.valid);
        assert_eq!(id.key, key);
    }
    assert_eq!(key.reversed().reversed(), key);
    let pkt = softvpc_policy::Packet::from_ipv4(ip);
    assert_eq!(pkt.flow_key(), key);
    if ip.fragment && matches!(pkt.proto, 6 | 17) {
        assert_eq!(pkt.l4, softvpc_wire::L4Key::None, "a fragment has no ports");
    }
    let r = key.reversed();
    let reply = softvpc_policy::Packet {
        src: r.src,
        dst: r.dst,
        proto: r.proto,
        l4: r.l4,
        tcp_flags: 0,
    };
    assert_eq!(
        ConnKey::new(&pkt, PolicyDirection::Egress),
        ConnKey::new(&reply, PolicyDirection::Ingress)
    );
    if pkt.is_icmp_error() {
        let at = usize::from(ip.header_len) + 8;
        if let Some(q) = meta.l3_bytes().get(at..) {
            let _ = parse_icmp_quote(q);
        }
    }
}
