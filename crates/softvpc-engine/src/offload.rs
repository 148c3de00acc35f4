//! The kernel fast path's hook (issue 14, `docs/fast-path.md`): which of the engine's cached
//! flow decisions the kernel may execute, and as what plain value.
//!
//! The engine stays the only place where policy is decided. For a flow it forwarded and cached
//! ([`crate::flow`]), [`offer`] says whether the kernel may repeat that decision for the flow's
//! later packets, as a [`KernelFlow`]: where it is matched (the sending port's egress, or the
//! decapsulated frames for a local port), the exact frame fields matched (both MACs, both IPv4
//! addresses, the protocol and the ports or ICMP echo fields), and the action (encapsulate to
//! a host and VNI, or deliver to the port), with the table [`Generation`] it holds for. The
//! value is also given as the u32 keys that match it ([`KernelFlow::u32_keys`]);
//! [`KernelFlow::matches`] evaluates those keys on a frame exactly as the u32 classifier does,
//! for the simulations, and [`KernelFlow::apply`] does to a matched frame what the kernel does.
//!
//! **Routed flows** (across subnets, through a middlebox ENI, over a peering connection) are
//! offered with their [`Rewrite`]: the kernel sets both MACs and decrements the TTL (the agent
//! does that with a `cls_bpf` program, as `mirred` cannot rewrite), then encapsulates with the
//! flow's VNI, which is the peer VPC's over a peering connection. A routed frame whose TTL is 1
//! or less does not match: the engine answers it.
//!
//! **What stays slow** ([`Slow`]): a decision of an older generation; a flow translated at the
//! edge (NAT); delivery between two local ports (their TAPs live in different namespaces, out
//! of `mirred`'s reach); protocols other than TCP, UDP and ICMP echo; a TCP connection not yet
//! established. The u32 keys themselves leave IPv4 headers with options, fragments and TCP
//! segments carrying SYN, FIN or RST to the engine, so connection tracking sees every TCP state
//! change.
//!
//! **Generations.** A table swap (any mapping or policy change) makes every offered value
//! stale; the shell removes its installed flows before the next packet would use them (the agent
//! flushes on a new generation) and installs what [`crate::Engine::kernel_flows`] offers again.
//! A tracked connection survives a removed security-group rule in the engine's conntrack, so
//! its flow is offered again on its next slow packet; a revoked route or ACL is not.
//!
//! **Counters and idle time.** The kernel's filters count packets and bytes and keep the last
//! use; the shell folds them back with [`crate::Engine::fold_kernel_use`], which counts them
//! as the engine's own forwarded frames and refreshes the flow's entry and its conntrack idle
//! timers. Flow logs (issue 10) read per-flow packet counts in the engine: the same fold is
//! where a kernel flow's packets reach them.
//!
//! **What changed, not everything** ([`crate::Engine::poll_offers`]). The offer is also given
//! as a stream of [`OfferChange`]s: the engine remembers what it offered ([`OfferLog`]) and
//! looks again only at the flows that changed since the last poll: the flow table's entries a
//! packet or a fold touched, inserted, replaced or removed ([`crate::flow`]'s change queue),
//! and the other flows of a touched TCP flow's connection (a packet of one direction can end
//! or establish the other's), plus a bounded number of the remembered flows in turn per poll,
//! which catches what no packet announces (a connection idling out by time alone). A new
//! generation withdraws everything offered. So a poll costs what changed plus the bound, not
//! the table: with 10,000 offered flows the full walk of [`crate::Engine::kernel_flows`] and
//! its difference, every 10 ms on the agent's data-path thread, held up the packets the engine
//! forwards (BENCHMARKS.md). After a poll whose bound covers every remembered flow, the flows
//! offered so far (offers minus withdrawals) are exactly what [`crate::Engine::kernel_flows`]
//! returns (`tests/fast_path.rs` checks this after random traffic and changes).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use softvpc_policy::conntrack::ConnKey;
use softvpc_policy::Generation;
use softvpc_wire::L4Key;

use crate::flow::{Destination, FlowEntry, FlowId, FlowSide};
pub use crate::layers::Rewrite;
use crate::mapping::{Mac, Vni};
use crate::PortId;

/// The UDP port VXLAN goes to (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;

/// Where the kernel matches a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelHook {
    /// Frames the instance sends on `port` (its TAP's egress).
    PortEgress(PortId),
    /// Decapsulated frames for `port` that came from `host` on `vni`.
    UnderlayIngress {
        /// The receiving local port.
        port: PortId,
        /// The VXLAN VNI.
        vni: Vni,
        /// The sending host's underlay address (only its datagrams may match).
        host: Ipv4Addr,
    },
}

/// What the kernel does with a matched frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelAction {
    /// Encapsulate it unchanged in VXLAN with `vni` to `host:port`.
    Encap {
        /// The target host's underlay address.
        host: Ipv4Addr,
        /// The VNI.
        vni: Vni,
        /// The destination UDP port.
        port: u16,
    },
    /// Deliver it unchanged to a local port.
    Deliver(PortId),
}

/// A flow decision the kernel may execute: a plain value. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelFlow {
    /// The table generation the decision holds for.
    pub generation: Generation,
    /// Where it is matched.
    pub hook: KernelHook,
    /// The frame's source MAC.
    pub src_mac: Mac,
    /// The frame's destination MAC.
    pub dst_mac: Mac,
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
    /// IP protocol (6, 17 or 1).
    pub proto: u8,
    /// Ports, or ICMP echo type, code and identifier.
    pub l4: L4Key,
    /// What the kernel does.
    pub action: KernelAction,
    /// A routed flow's rewrite, done before the action: destination MAC `target_mac`, source
    /// MAC `router_mac`, TTL - 1 (only with [`KernelAction::Encap`]).
    pub rewrite: Option<Rewrite>,
}

/// Why a cached decision stays in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slow {
    /// Decided under another table generation.
    Stale,
    /// Translated at the edge (NAT), or routed to a port on this host.
    Routed,
    /// From one local port to another.
    LocalPorts,
    /// Not TCP, UDP or ICMP echo (or a fragment: no ports).
    Protocol,
    /// A tracked TCP connection not established yet (the handshake stays in the engine).
    Handshake,
}

/// One u32 key: the 32-bit word at `offset` bytes from the IPv4 header, masked, equals `value`
/// (negative offsets reach into the Ethernet header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct U32Key {
    /// Byte offset from the network header.
    pub offset: i32,
    /// The bits compared.
    pub mask: u32,
    /// Their value.
    pub value: u32,
}

/// At most this many keys per flow.
pub const MAX_KEYS: usize = 12;

/// The value the kernel may hold for a cached flow (`id`, `entry`) under the table of
/// generation `current`, or why it stays slow. Pure.
pub fn offer(id: &FlowId, entry: &FlowEntry, current: Generation) -> Result<KernelFlow, Slow> {
    if entry.generation != current {
        return Err(Slow::Stale);
    }
    if entry.snat.is_some() || entry.edge_mtu {
        // Translated at the edge: the NAT layer's, per packet.
        return Err(Slow::Routed);
    }
    match (id.key.proto, id.key.l4) {
        (6 | 17, L4Key::Ports { .. })
        | (
            1,
            L4Key::Icmp {
                ty: 0 | 8, code: 0, ..
            },
        ) => {}
        _ => return Err(Slow::Protocol),
    }
    let (hook, action) = match (id.side, entry.to) {
        (FlowSide::Port(port), Destination::Underlay(encap)) => (
            KernelHook::PortEgress(port),
            KernelAction::Encap {
                host: encap.dst_ip,
                vni: entry.vni,
                port: VXLAN_PORT,
            },
        ),
        (FlowSide::Underlay { vni, host }, Destination::DecapPort(port))
            if entry.rewrite.is_none() =>
        {
            (
                KernelHook::UnderlayIngress { port, vni, host },
                KernelAction::Deliver(port),
            )
        }
        _ if entry.rewrite.is_some() => return Err(Slow::Routed),
        _ => return Err(Slow::LocalPorts),
    };
    Ok(KernelFlow {
        generation: entry.generation,
        hook,
        src_mac: id.src_mac,
        dst_mac: id.dst_mac,
        src: id.key.src,
        dst: id.key.dst,
        proto: id.key.proto,
        l4: id.key.l4,
        action,
        rewrite: entry.rewrite,
    })
}

impl KernelFlow {
    /// The u32 keys matching exactly this flow's frames that the engine would forward with its
    /// cached decision: Ethernet with both MACs and type IPv4; IPv4 without options, not a
    /// fragment; the protocol and both addresses; the ports (TCP segments without SYN, FIN and
    /// RST) or the ICMP echo type, code and identifier. Returns the keys and their count.
    pub fn u32_keys(&self) -> ([U32Key; MAX_KEYS], usize) {
        let d = self.dst_mac;
        let s = self.src_mac;
        let mut keys = [U32Key {
            offset: 0,
            mask: 0,
            value: 0,
        }; MAX_KEYS];
        let mut n = 0;
        let mut push = |offset: i32, mask: u32, value: u32| {
            keys[n] = U32Key {
                offset,
                mask,
                value: value & mask,
            };
            n += 1;
        };
        push(
            -16,
            0x0000_ffff,
            u32::from(u16::from_be_bytes([d[0], d[1]])),
        );
        push(-12, u32::MAX, u32::from_be_bytes([d[2], d[3], d[4], d[5]]));
        push(-8, u32::MAX, u32::from_be_bytes([s[0], s[1], s[2], s[3]]));
        push(-4, u32::MAX, u32::from_be_bytes([s[4], s[5], 0x08, 0x00]));
        // Version 4, header length 5 (no options).
        push(0, 0xff00_0000, 0x4500_0000);
        // More-fragments flag and fragment offset both zero.
        push(4, 0x0000_3fff, 0);
        push(8, 0x00ff_0000, u32::from(self.proto) << 16);
        push(12, u32::MAX, u32::from(self.src));
        push(16, u32::MAX, u32::from(self.dst));
        match self.l4 {
            L4Key::Ports { src, dst } => {
                push(20, u32::MAX, (u32::from(src) << 16) | u32::from(dst));
                if self.proto == 6 {
                    // FIN, SYN, RST clear: state changes go through the engine's conntrack.
                    push(32, 0x0007_0000, 0);
                }
            }
            L4Key::Icmp { ty, code, ident } => {
                push(
                    20,
                    0xffff_0000,
                    (u32::from(ty) << 24) | (u32::from(code) << 16),
                );
                push(24, 0xffff_0000, u32::from(ident) << 16);
            }
            L4Key::None => {}
        }
        (keys, n)
    }

    /// Whether the u32 classifier with [`u32_keys`](Self::u32_keys) matches `frame` (an
    /// Ethernet frame whose IPv4 header starts at byte 14): each word read at its offset, a
    /// word past the end not matching (the kernel's `skb_header_pointer` fails there).
    pub fn matches(&self, frame: &[u8]) -> bool {
        let (keys, n) = self.u32_keys();
        keys[..n].iter().all(|k| {
            let mut word = 0u32;
            for i in 0..4 {
                let byte_mask = (k.mask >> (24 - 8 * i)) & 0xff;
                let at = 14 + k.offset as isize + i as isize;
                let byte = match usize::try_from(at).ok().and_then(|a| frame.get(a)) {
                    Some(b) => *b,
                    // Before the frame (the headroom) only unmasked bytes may be read; past
                    // its end nothing matches.
                    None if at < 0 && byte_mask == 0 => 0,
                    None => return false,
                };
                word = (word << 8) | u32::from(byte);
            }
            word & k.mask == k.value
        })
    }

    /// Whether the kernel executes this flow for `frame`: [`matches`](Self::matches), and for a
    /// routed flow a TTL above 1 (the engine answers the others).
    pub fn executes(&self, frame: &[u8]) -> bool {
        self.matches(frame) && (self.rewrite.is_none() || frame.get(22).is_some_and(|t| *t > 1))
    }

    /// Does to a frame it [`executes`](Self::executes) what the kernel does before the action:
    /// a routed flow's MAC rewrite and TTL decrement (header checksum updated), as the engine.
    pub fn apply(&self, frame: &mut [u8]) {
        if let Some(r) = self.rewrite {
            if frame.len() >= 34 {
                crate::layers::route::rewrite_routed(frame, r.router_mac, r.target_mac);
            }
        }
    }

    /// The local port the flow belongs to (its sender's or its receiver's).
    pub fn port(&self) -> PortId {
        match self.hook {
            KernelHook::PortEgress(p) | KernelHook::UnderlayIngress { port: p, .. } => p,
        }
    }
}

/// A change to what the kernel may hold ([`crate::Engine::poll_offers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OfferChange {
    /// The kernel may now execute this flow.
    Offer(KernelFlow),
    /// It may no longer (an earlier [`OfferChange::Offer`] of exactly this value).
    Withdraw(KernelFlow),
}

/// What the engine decides about one flow-table entry for the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The kernel may execute it.
    Offer(KernelFlow),
    /// Not now; it may be without a packet of its own (a TCP connection not established
    /// yet, whose other direction can establish it; a NAT gateway's port).
    Wait,
    /// Not until a packet uses or replaces the entry (see [`crate::flow`]'s parking).
    Park,
}

/// A TCP flow's connection in one tracking table: (the ENI's port, the connection's key).
pub(crate) type ConnRef = (crate::PortId, ConnKey);

/// One remembered flow: where it sits in the sweep order, what was offered, and the
/// connections (TCP) it is indexed under.
#[derive(Debug, Clone, Copy)]
struct Remembered {
    at: usize,
    offered: Option<KernelFlow>,
    conns: [Option<ConnRef>; 2],
}

/// The engine's memory of its offer (see the [module docs](self)): every flow it last judged
/// offered or waiting, what it offered, the TCP flows by connection, and where the bounded
/// sweep goes on. Plain data, driven by [`crate::Engine::poll_offers`].
#[derive(Debug, Default)]
pub struct OfferLog {
    /// The generation the remembered verdicts hold for.
    pub(crate) generation: Option<Generation>,
    flows: HashMap<FlowId, Remembered, foldhash::fast::RandomState>,
    /// The remembered flows in sweep order.
    order: Vec<FlowId>,
    /// The next index of `order` the sweep looks at.
    cursor: usize,
    /// TCP flows by connection.
    conns: HashMap<ConnRef, Vec<FlowId>, foldhash::fast::RandomState>,
    offered: usize,
    /// Buffers kept between polls.
    pub(crate) changed: Vec<FlowId>,
    pub(crate) siblings: Vec<FlowId>,
}

impl OfferLog {
    /// Flows offered now (offers minus withdrawals so far).
    pub fn offered(&self) -> usize {
        self.offered
    }

    /// Flows remembered (offered or waiting): what a full sweep looks at.
    pub fn remembered(&self) -> usize {
        self.order.len()
    }

    /// Every flow offered now.
    pub fn offered_flows(&self) -> impl Iterator<Item = &KernelFlow> {
        self.flows.values().filter_map(|r| r.offered.as_ref())
    }

    /// A new generation: everything offered is withdrawn and forgotten.
    pub(crate) fn reset(&mut self, generation: Generation, out: &mut Vec<OfferChange>) {
        for r in self.flows.values() {
            if let Some(k) = r.offered {
                out.push(OfferChange::Withdraw(k));
            }
        }
        self.flows.clear();
        self.order.clear();
        self.conns.clear();
        self.cursor = 0;
        self.offered = 0;
        self.generation = Some(generation);
    }

    /// The flows sharing a connection with `conns`, appended to `into` (`except` left out).
    pub(crate) fn siblings(
        &self,
        conns: &[Option<ConnRef>; 2],
        except: &FlowId,
        into: &mut Vec<FlowId>,
    ) {
        for c in conns.iter().flatten() {
            if let Some(ids) = self.conns.get(c) {
                into.extend(ids.iter().filter(|i| *i != except));
            }
        }
    }

    /// The id the sweep looks at next, if any.
    pub(crate) fn next_to_sweep(&mut self) -> Option<FlowId> {
        if self.order.is_empty() {
            return None;
        }
        if self.cursor >= self.order.len() {
            self.cursor = 0;
        }
        let id = self.order[self.cursor];
        self.cursor += 1;
        Some(id)
    }

    /// Records `verdict` for `id` (`None`: the entry is gone), with its connections, and
    /// appends what the kernel must be told to `out`.
    pub(crate) fn record(
        &mut self,
        id: &FlowId,
        verdict: Option<Verdict>,
        conns: [Option<ConnRef>; 2],
        out: &mut Vec<OfferChange>,
    ) {
        let offer = match verdict {
            Some(Verdict::Offer(k)) => Some(k),
            _ => None,
        };
        let keep = matches!(verdict, Some(Verdict::Offer(_) | Verdict::Wait));
        let old = self.flows.get(id).copied();
        let was = old.and_then(|r| r.offered);
        if was != offer {
            if let Some(k) = was {
                out.push(OfferChange::Withdraw(k));
                self.offered -= 1;
            }
            if let Some(k) = offer {
                out.push(OfferChange::Offer(k));
                self.offered += 1;
            }
        }
        let old_conns = old.map_or([None, None], |r| r.conns);
        let new_conns = if keep { conns } else { [None, None] };
        if old_conns != new_conns {
            for c in old_conns.iter().flatten() {
                if let Some(ids) = self.conns.get_mut(c) {
                    ids.retain(|i| i != id);
                    if ids.is_empty() {
                        self.conns.remove(c);
                    }
                }
            }
            for c in new_conns.iter().flatten() {
                let ids = self.conns.entry(*c).or_default();
                if !ids.contains(id) {
                    ids.push(*id);
                }
            }
        }
        match (old, keep) {
            (Some(r), true) => {
                let e = self.flows.get_mut(id).expect("remembered");
                *e = Remembered {
                    offered: offer,
                    conns: new_conns,
                    ..r
                };
            }
            (None, true) => {
                self.flows.insert(
                    *id,
                    Remembered {
                        at: self.order.len(),
                        offered: offer,
                        conns: new_conns,
                    },
                );
                self.order.push(*id);
            }
            (Some(r), false) => {
                self.flows.remove(id);
                self.order.swap_remove(r.at);
                if let Some(moved) = self.order.get(r.at) {
                    if let Some(m) = self.flows.get_mut(moved) {
                        m.at = r.at;
                    }
                }
            }
            (None, false) => {}
        }
    }

    /// Forgets every flow of `port` without a withdrawal (the shell removed them from the
    /// kernel itself): offered again on their next change.
    pub(crate) fn forget_port(&mut self, port: crate::PortId) {
        let gone: Vec<FlowId> = self
            .flows
            .iter()
            .filter(|(_, r)| r.offered.is_some_and(|k| k.port() == port))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            let mut sink = Vec::new();
            // Forgotten rather than withdrawn: the shell already forgot them.
            self.record(&id, None, [None, None], &mut sink);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use softvpc_wire::FlowKey;

    use super::*;
    use crate::layers::{Encap, Rewrite};

    const A: Mac = [2, 0, 0, 0, 0, 1];
    const B: Mac = [2, 0, 0, 0, 0, 2];

    fn id(side: FlowSide, proto: u8, l4: L4Key) -> FlowId {
        FlowId {
            side,
            src_mac: A,
            dst_mac: B,
            key: FlowKey {
                src: Ipv4Addr::new(10, 0, 0, 1),
                dst: Ipv4Addr::new(10, 0, 0, 2),
                proto,
                l4,
            },
        }
    }

    fn entry(to: Destination) -> FlowEntry {
        FlowEntry {
            edge_mtu: false,
            generation: Generation(7),
            vni: Vni(300),
            rewrite: None,
            to,
            snat: None,
            tracked: [None, None],
            last_used: Instant::now(),
        }
    }

    fn encap() -> Destination {
        Destination::Underlay(Encap {
            dst_ip: Ipv4Addr::new(198, 18, 0, 2),
            src_port: 40000,
        })
    }

    const PORTS: L4Key = L4Key::Ports {
        src: 40001,
        dst: 80,
    };

    /// An Ethernet + IPv4 + TCP frame of the flow, with `flags` and IPv4 byte 0 `vihl`.
    fn tcp_frame(flags: u8, vihl: u8, frag: u16) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&B);
        f.extend_from_slice(&A);
        f.extend_from_slice(&[0x08, 0x00]);
        let ihl = usize::from(vihl & 0x0f) * 4;
        let mut ip = vec![0u8; ihl.max(20)];
        ip[0] = vihl;
        ip[6..8].copy_from_slice(&frag.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        f.extend_from_slice(&ip);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&40001u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = flags;
        f.extend_from_slice(&tcp);
        f
    }

    #[test]
    fn a_bridged_flow_to_another_host_is_offered_as_an_encapsulation() {
        let id = id(FlowSide::Port(PortId(3)), 6, PORTS);
        let k = offer(&id, &entry(encap()), Generation(7)).expect("offered");
        assert_eq!(k.hook, KernelHook::PortEgress(PortId(3)));
        assert_eq!(
            k.action,
            KernelAction::Encap {
                host: Ipv4Addr::new(198, 18, 0, 2),
                vni: Vni(300),
                port: VXLAN_PORT
            }
        );
        assert_eq!((k.src_mac, k.dst_mac, k.proto, k.l4), (A, B, 6, PORTS));
        assert_eq!(k.generation, Generation(7));
        assert_eq!(k.port(), PortId(3));
    }

    #[test]
    fn a_decapsulated_flow_is_offered_for_its_sending_host_only() {
        let host = Ipv4Addr::new(198, 18, 0, 9);
        let id = id(
            FlowSide::Underlay {
                vni: Vni(300),
                host,
            },
            17,
            PORTS,
        );
        let k = offer(
            &id,
            &entry(Destination::DecapPort(PortId(1))),
            Generation(7),
        )
        .unwrap();
        assert_eq!(
            k.hook,
            KernelHook::UnderlayIngress {
                port: PortId(1),
                vni: Vni(300),
                host
            }
        );
        assert_eq!(k.action, KernelAction::Deliver(PortId(1)));
    }

    #[test]
    fn what_the_kernel_cannot_repeat_stays_slow() {
        let port = FlowSide::Port(PortId(3));
        let e = entry(encap());
        assert_eq!(
            offer(&id(port, 6, PORTS), &e, Generation(8)),
            Err(Slow::Stale)
        );
        let mut routed_here = entry(Destination::LocalPort(PortId(4)));
        routed_here.rewrite = Some(Rewrite {
            router_mac: [2, 0, 0, 0, 0, 0xfe],
            target_mac: B,
        });
        assert_eq!(
            offer(&id(port, 6, PORTS), &routed_here, Generation(7)),
            Err(Slow::Routed)
        );
        let mut translated = e;
        translated.snat = Some(Ipv4Addr::new(203, 0, 113, 9));
        assert_eq!(
            offer(&id(port, 6, PORTS), &translated, Generation(7)),
            Err(Slow::Routed)
        );
        assert_eq!(
            offer(
                &id(port, 6, PORTS),
                &entry(Destination::LocalPort(PortId(4))),
                Generation(7)
            ),
            Err(Slow::LocalPorts)
        );
        for (proto, l4) in [
            (47, L4Key::None),
            (6, L4Key::None),
            (
                1,
                L4Key::Icmp {
                    ty: 13,
                    code: 0,
                    ident: 0,
                },
            ),
        ] {
            assert_eq!(
                offer(&id(port, proto, l4), &e, Generation(7)),
                Err(Slow::Protocol),
                "{proto} {l4:?}"
            );
        }
    }

    #[test]
    fn a_routed_or_peered_flow_to_another_host_is_offered_with_its_rewrite() {
        // Over a peering connection the entry's VNI is the peer VPC's (the route layer's).
        let mut e = entry(encap());
        e.vni = Vni(301);
        let r = Rewrite {
            router_mac: [0x0a, 0x56, 0x50, 0, 1, 0x2d],
            target_mac: [2, 0, 0, 0, 9, 9],
        };
        e.rewrite = Some(r);
        let k = offer(&id(FlowSide::Port(PortId(3)), 6, PORTS), &e, Generation(7)).unwrap();
        assert_eq!(k.rewrite, Some(r));
        assert_eq!(
            k.action,
            KernelAction::Encap {
                host: Ipv4Addr::new(198, 18, 0, 2),
                vni: Vni(301),
                port: VXLAN_PORT
            }
        );
        // It matches the frame as the instance sends it (to its router's MAC) ...
        let mut f = tcp_frame(0x10, 0x45, 0);
        assert!(k.executes(&f));
        // ... and rewrites it as the engine does: both MACs, TTL 64 -> 63, checksum kept right.
        let sum = |h: &[u8]| {
            let mut s = 0u32;
            for c in h.chunks(2) {
                s += u32::from(u16::from_be_bytes([c[0], c[1]]));
            }
            while s > 0xffff {
                s = (s & 0xffff) + (s >> 16);
            }
            s as u16
        };
        let c = !sum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        k.apply(&mut f);
        assert_eq!(&f[0..6], &r.target_mac);
        assert_eq!(&f[6..12], &r.router_mac);
        assert_eq!(f[22], 63);
        assert_eq!(sum(&f[14..34]), 0xffff, "header checksum");
        // TTL 1: the engine answers it (time exceeded), the kernel does not carry it.
        let mut last = tcp_frame(0x10, 0x45, 0);
        last[22] = 1;
        assert!(k.matches(&last) && !k.executes(&last));
        // A bridged flow carries any TTL.
        let b = offer(
            &id(FlowSide::Port(PortId(3)), 6, PORTS),
            &entry(encap()),
            Generation(7),
        )
        .unwrap();
        assert!(b.rewrite.is_none() && b.executes(&last));
    }

    #[test]
    fn the_keys_match_the_flows_plain_segments_and_nothing_else() {
        let k = offer(
            &id(FlowSide::Port(PortId(3)), 6, PORTS),
            &entry(encap()),
            Generation(7),
        )
        .unwrap();
        assert!(k.matches(&tcp_frame(0x10, 0x45, 0)), "ACK");
        assert!(k.matches(&tcp_frame(0x18, 0x45, 0x4000)), "PSH ACK, DF");
        for flags in [0x02, 0x12, 0x11, 0x04, 0x14] {
            assert!(!k.matches(&tcp_frame(flags, 0x45, 0)), "flags {flags:#x}");
        }
        assert!(!k.matches(&tcp_frame(0x10, 0x46, 0)), "IPv4 options");
        assert!(!k.matches(&tcp_frame(0x10, 0x45, 0x2000)), "more fragments");
        assert!(
            !k.matches(&tcp_frame(0x10, 0x45, 0x0001)),
            "a later fragment"
        );
        let mut other = tcp_frame(0x10, 0x45, 0);
        other[14 + 20 + 2] = 0x01; // another destination port
        assert!(!k.matches(&other));
        let mut mac = tcp_frame(0x10, 0x45, 0);
        mac[11] ^= 1; // another source MAC
        assert!(!k.matches(&mac));
        let f = tcp_frame(0x10, 0x45, 0);
        assert!(!k.matches(&f[..14 + 30]), "cut short");
    }

    #[test]
    fn icmp_echo_matches_type_code_and_identifier() {
        let l4 = L4Key::Icmp {
            ty: 8,
            code: 0,
            ident: 0x1234,
        };
        let k = offer(
            &id(FlowSide::Port(PortId(3)), 1, l4),
            &entry(encap()),
            Generation(7),
        )
        .unwrap();
        let (keys, n) = k.u32_keys();
        assert!(keys[..n].contains(&U32Key {
            offset: 20,
            mask: 0xffff_0000,
            value: 0x0800_0000
        }));
        assert!(keys[..n].contains(&U32Key {
            offset: 24,
            mask: 0xffff_0000,
            value: 0x1234_0000
        }));
    }
}
