//! The fast path's flow table in the kernel (`docs/fast-path.md`, "One program per hook"): a
//! BPF hash map holding every installed [`KernelFlow`], and the two direct-action `cls_bpf`
//! programs that look frames up in it, generated as instruction values (nothing compiled at
//! run time). Each hook has one filter whatever the number of flows, so a frame's cost is one
//! parse and one hash lookup, not a walk of every installed flow.
//!
//! - [`egress_program`], on a port's TAP egress: a frame whose fields equal an entry of that
//!   port (both MACs, IPv4 without options and not a fragment, the protocol, both addresses,
//!   the ports, TCP without SYN, FIN or RST, or the ICMP type, code and identifier) is counted
//!   in the entry, rewritten if the entry is a routed flow's (MACs, TTL - 1 and the header
//!   checksum; a TTL of 1 or less is no match) and redirected (`bpf_redirect`) to the entry's
//!   egress VXLAN device.
//! - [`ingress_program`], on the underlay device's ingress: a VXLAN datagram (outer IPv4
//!   without options and not a fragment, to us, UDP 4789, the I flag, reserved bits clear)
//!   whose outer source, VNI and inner frame equal an entry is counted, then decapsulated in
//!   place (a GSO super-frame too, its segment size kept) and put on the ingress of the
//!   other end of the port's delivery veth, in the instance's namespace (`bpf_redirect_peer`:
//!   no backlog queue); with decapsulation off, or a GSO packet the helper refuses, it is
//!   redirected whole to the veth into the port's own namespace, whose VXLAN device
//!   decapsulates it.
//!
//! Anything else gets `TC_ACT_UNSPEC`: the stack, i.e. the TAP and the engine, or the agent's
//! socket, gets it unchanged. The match is exactly the u32 keys' ([`KernelFlow::u32_keys`],
//! [`super::ingress_keys`]), root tests check both programs against them with
//! `BPF_PROG_TEST_RUN` byte by byte.
//!
//! The entry's value holds the flow's counters (packets, bytes, the last use in
//! `CLOCK_MONOTONIC` nanoseconds), which the agent reads to fold them into the engine.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use softvpc_engine::offload::{KernelFlow, KernelHook};
use softvpc_netlink::bpf::{ld_map_fd, op, BpfHash, Insn};
use softvpc_wire::L4Key;

/// The key: see [`key`].
pub const KEY_LEN: usize = 40;
/// The value: see [`value`].
pub const VALUE_LEN: usize = 48;
/// At most this many flows are installed at once on a host (both hooks); an install past it
/// fails (counted) and the flow stays in the engine.
pub const MAX_FLOWS: u32 = 65_536;

/// Where the key's fields sit (bytes; the program builds it on its stack at r10 - 40).
mod k {
    pub const SPACE: i16 = 0;
    pub const HOST: i16 = 4;
    pub const VNI: i16 = 8;
    pub const MACS: i16 = 12;
    pub const ADDRS: i16 = 24;
    pub const PROTO: i16 = 32;
    pub const L4: i16 = 36;
}

/// Where the value's fields sit.
mod v {
    pub const PACKETS: i16 = 0;
    pub const BYTES: i16 = 8;
    pub const LAST_NS: i16 = 16;
    pub const IFINDEX: i16 = 24;
    pub const WHOLE_IFINDEX: i16 = 28;
    pub const FLAGS: i16 = 32;
    pub const MACS: i16 = 36;
}

/// The value's flag: a routed flow (rewrite the MACs and the TTL first).
const ROUTED: i32 = 1;

/// The stack offset of the key.
const KEY: i16 = -40;
/// The frame offset of a datagram's inner frame at the underlay's ingress: outer Ethernet (14),
/// IPv4 without options (20), UDP (8), VXLAN (8).
pub const INNER: i16 = 50;

/// The map key of `k`, as the programs build it from a frame: the space (`port + 1` for a
/// port's egress, 0 for the underlay's ingress), the outer IPv4 source and the VXLAN VNI word
/// (ingress only), both MACs, both IPv4 addresses, the protocol, and the ports or the ICMP
/// type, code and identifier, every field in its wire bytes.
pub fn key(k: &KernelFlow) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    let at = |f: i16| f as usize;
    match k.hook {
        KernelHook::PortEgress(p) => {
            out[..4].copy_from_slice(&(p.0 + 1).to_ne_bytes());
        }
        KernelHook::UnderlayIngress { vni, host, .. } => {
            out[at(k::HOST)..at(k::HOST) + 4].copy_from_slice(&host.octets());
            out[at(k::VNI)..at(k::VNI) + 4].copy_from_slice(&(vni.0 << 8).to_be_bytes());
        }
    }
    out[at(k::MACS)..at(k::MACS) + 6].copy_from_slice(&k.dst_mac);
    out[at(k::MACS) + 6..at(k::MACS) + 12].copy_from_slice(&k.src_mac);
    out[at(k::ADDRS)..at(k::ADDRS) + 4].copy_from_slice(&k.src.octets());
    out[at(k::ADDRS) + 4..at(k::ADDRS) + 8].copy_from_slice(&k.dst.octets());
    out[at(k::PROTO)] = k.proto;
    let l4 = at(k::L4);
    match k.l4 {
        L4Key::Ports { src, dst } => {
            out[l4..l4 + 2].copy_from_slice(&src.to_be_bytes());
            out[l4 + 2..l4 + 4].copy_from_slice(&dst.to_be_bytes());
        }
        L4Key::Icmp { ty, code, ident } => {
            out[l4] = ty;
            out[l4 + 1] = code;
            out[l4 + 2..l4 + 4].copy_from_slice(&ident.to_be_bytes());
        }
        L4Key::None => {}
    }
    out
}

/// The map value of `k` with its counters at 0: `ifindex` is where a matched frame goes (an
/// egress flow's VXLAN device; an ingress flow's delivery veth for decapsulated frames, 0 for
/// none), `whole` where an ingress flow's frames go undecapsulated (the veth into the port's
/// own namespace); a routed flow's new MACs.
pub fn value(k: &KernelFlow, ifindex: u32, whole: u32) -> [u8; VALUE_LEN] {
    let mut out = [0u8; VALUE_LEN];
    let at = |f: i16| f as usize;
    out[at(v::IFINDEX)..at(v::IFINDEX) + 4].copy_from_slice(&ifindex.to_ne_bytes());
    out[at(v::WHOLE_IFINDEX)..at(v::WHOLE_IFINDEX) + 4].copy_from_slice(&whole.to_ne_bytes());
    if let Some(r) = k.rewrite {
        out[at(v::FLAGS)..at(v::FLAGS) + 4].copy_from_slice(&(ROUTED as u32).to_ne_bytes());
        out[at(v::MACS)..at(v::MACS) + 6].copy_from_slice(&r.target_mac);
        out[at(v::MACS) + 6..at(v::MACS) + 12].copy_from_slice(&r.router_mac);
    }
    out
}

/// An entry's counters: packets, bytes (an egress flow's frames; an ingress flow's inner
/// frames, Ethernet header included: what the engine counts) and the last use
/// (`CLOCK_MONOTONIC` ns, 0 if never).
pub fn counters(value: &[u8]) -> (u64, u64, u64) {
    let word = |f: i16| {
        let f = f as usize;
        u64::from_ne_bytes(value[f..f + 8].try_into().expect("8 bytes"))
    };
    (word(v::PACKETS), word(v::BYTES), word(v::LAST_NS))
}

/// The flow map of a host: one for both hooks (the key's space tells them apart).
pub fn create_map() -> std::io::Result<BpfHash> {
    BpfHash::create("svfp_flows", KEY_LEN, VALUE_LEN, MAX_FLOWS)
}

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const R10: u8 = 10;

/// Jump targets of the generated programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum L {
    Miss,
    Tcp,
    Udp,
    Icmp,
    Lookup,
    Whole,
}

/// A program being written: instructions, and jumps to labels patched at the end.
struct Asm {
    p: Vec<Insn>,
    jumps: Vec<(usize, L)>,
    labels: HashMap<L, usize>,
}

impl Asm {
    fn new() -> Asm {
        Asm {
            p: Vec::new(),
            jumps: Vec::new(),
            labels: HashMap::new(),
        }
    }

    fn i(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.p.push(Insn::new(code, dst, src, off, imm));
    }

    /// A conditional (or `JA`) jump to `to`.
    fn jump(&mut self, code: u8, dst: u8, imm: i32, to: L) {
        self.jumps.push((self.p.len(), to));
        self.i(code, dst, 0, 0, imm);
    }

    fn label(&mut self, l: L) {
        self.labels.insert(l, self.p.len());
    }

    /// `r0 = big-endian u16/u32 at frame offset off` (direct packet access through r2).
    fn load_be(&mut self, size: u8, off: i16) {
        match size {
            1 => self.i(op::LDX_B, R0, R2, off, 0),
            2 => {
                self.i(op::LDX_H, R0, R2, off, 0);
                self.i(op::TO_BE, R0, 0, 0, 16);
            }
            _ => {
                self.i(op::LDX_W, R0, R2, off, 0);
                self.i(op::TO_BE, R0, 0, 0, 32);
            }
        }
    }

    /// Misses unless the big-endian field at `off`, masked, is `value`.
    fn expect(&mut self, size: u8, off: i16, mask: u32, value: u32) {
        self.load_be(size, off);
        let full = match size {
            1 => 0xff,
            2 => 0xffff,
            _ => u32::MAX,
        };
        if mask != full {
            self.i(op::AND32_K, R0, 0, 0, mask as i32);
        }
        self.jump(op::JNE32_K, R0, value as i32, L::Miss);
    }

    /// Misses unless the frame has at least `len` bytes (r2 data, r3 data_end).
    fn need(&mut self, len: i16) {
        self.i(op::MOV64_X, R4, R2, 0, 0);
        self.i(op::ADD64_K, R4, 0, 0, i32::from(len));
        self.jumps.push((self.p.len(), L::Miss));
        self.i(op::JGT64_X, R4, R3, 0, 0);
    }

    /// Copies `n` (1, 2, 4) frame bytes at `from` to the key at `to`, as they are.
    fn copy(&mut self, n: u8, from: i16, to: i16) {
        let (ld, st) = match n {
            1 => (op::LDX_B, op::STX_B),
            2 => (op::LDX_H, op::STX_H),
            _ => (op::LDX_W, op::STX_W),
        };
        self.i(ld, R0, R2, from, 0);
        self.i(st, R10, R0, KEY + to, 0);
    }

    fn finish(mut self) -> Vec<Insn> {
        for (at, l) in self.jumps {
            let to = self.labels[&l];
            self.p[at].off = (to as isize - at as isize - 1) as i16;
        }
        self.p
    }
}

/// The IPv4 checks and key fields of the (inner) frame at `b`, shared by both programs: IPv4
/// EtherType, version 4 without options, not a fragment; then per protocol its length (as the
/// u32 keys need it), TCP without SYN, FIN, RST; both MACs, addresses, protocol and L4 fields
/// into the key; then the lookup (the value's address in r9, a miss if none).
fn inner_frame(a: &mut Asm, b: i16, map: &BpfHash) {
    a.expect(2, b + 12, 0xffff, 0x0800);
    a.expect(1, b + 14, 0xff, 0x45);
    a.expect(2, b + 20, 0x3fff, 0);
    a.i(op::LDX_B, R7, R2, b + 23, 0);
    a.jump(op::JEQ32_K, R7, 6, L::Tcp);
    a.jump(op::JEQ32_K, R7, 17, L::Udp);
    a.jump(op::JEQ32_K, R7, 1, L::Icmp);
    a.jump(op::JA, 0, 0, L::Miss);
    let common = |a: &mut Asm| {
        for w in 0..3 {
            a.copy(4, b + 4 * w, k::MACS + 4 * w);
        }
        a.copy(4, b + 26, k::ADDRS);
        a.copy(4, b + 30, k::ADDRS + 4);
        a.copy(1, b + 23, k::PROTO);
    };
    a.label(L::Tcp);
    a.need(b + 14 + 36);
    a.expect(1, b + 14 + 33, 0x07, 0);
    a.label(L::Udp);
    a.need(b + 14 + 24);
    common(a);
    a.copy(4, b + 34, k::L4);
    a.jump(op::JA, 0, 0, L::Lookup);
    a.label(L::Icmp);
    a.need(b + 14 + 28);
    common(a);
    a.copy(2, b + 34, k::L4);
    a.copy(2, b + 38, k::L4 + 2);
    a.label(L::Lookup);
    a.p.extend(ld_map_fd(R1, map));
    a.i(op::MOV64_X, R2, R10, 0, 0);
    a.i(op::ADD64_K, R2, 0, 0, i32::from(KEY));
    a.i(op::CALL, 0, 0, 0, op::MAP_LOOKUP_ELEM);
    a.jump(op::JEQ64_K, R0, 0, L::Miss);
    a.i(op::MOV64_X, R9, R0, 0, 0);
}

/// Zeroes the key on the stack and loads the frame pointers (r2 data, r3 data_end; the context
/// in r6).
fn prologue(a: &mut Asm) {
    a.i(op::MOV64_X, R6, R1, 0, 0);
    for w in 0..(KEY_LEN as i16 / 8) {
        a.i(op::ST_DW, R10, 0, KEY + 8 * w, 0);
    }
    a.i(op::LDX_W, R2, R6, op::SKB_DATA, 0);
    a.i(op::LDX_W, R3, R6, op::SKB_DATA_END, 0);
}

/// Counts the frame in the entry (r9): one packet, `skb->len - less` bytes, the time.
fn count(a: &mut Asm, less: i32) {
    a.i(op::MOV64_K, R1, 0, 0, 1);
    a.i(op::ATOMIC_ADD_DW, R9, R1, v::PACKETS, 0);
    a.i(op::LDX_W, R1, R6, 0, 0);
    if less != 0 {
        a.i(op::ADD64_K, R1, 0, 0, -less);
    }
    a.i(op::ATOMIC_ADD_DW, R9, R1, v::BYTES, 0);
    a.i(op::CALL, 0, 0, 0, op::KTIME_GET_NS);
    a.i(op::STX_DW, R9, R0, v::LAST_NS, 0);
}

/// `return bpf_redirect(value.<field>, 0)`.
fn redirect(a: &mut Asm, field: i16) {
    a.i(op::LDX_W, R1, R9, field, 0);
    a.i(op::MOV64_K, R2, 0, 0, 0);
    a.i(op::CALL, 0, 0, 0, op::REDIRECT);
    a.i(op::EXIT, 0, 0, 0, 0);
}

fn miss(a: &mut Asm) {
    a.label(L::Miss);
    a.i(op::MOV64_K, R0, 0, 0, op::TC_ACT_UNSPEC);
    a.i(op::EXIT, 0, 0, 0, 0);
}

/// `bpf_skb_store_bytes(skb, offset, from + at, len, 0)`; r0 is the helper's result.
fn store(a: &mut Asm, offset: i32, from: u8, at: i16, len: i32) {
    a.i(op::MOV64_X, R1, R6, 0, 0);
    a.i(op::MOV64_K, R2, 0, 0, offset);
    a.i(op::MOV64_X, R3, from, 0, 0);
    a.i(op::ADD64_K, R3, 0, 0, i32::from(at));
    a.i(op::MOV64_K, R4, 0, 0, len);
    a.i(op::MOV64_K, R5, 0, 0, 0);
    a.i(op::CALL, 0, 0, 0, op::SKB_STORE_BYTES);
}

/// The program on `port`'s TAP egress (see the [module docs](self)), looking up `map`.
pub fn egress_program(map: &BpfHash, port: u32) -> Vec<Insn> {
    let mut a = Asm::new();
    prologue(&mut a);
    a.i(op::ST_W, R10, 0, KEY + k::SPACE, (port + 1) as i32);
    // The shortest frame of a flow (UDP) first.
    a.need(14 + 24);
    inner_frame(&mut a, 0, map);
    // A routed flow: TTL above 1 (the engine answers the others), then the rewrite.
    a.i(op::LDX_W, R0, R9, v::FLAGS, 0);
    a.jump(op::JNE32_K, R0, ROUTED, L::Whole);
    a.i(op::LD_ABS_B, 0, 0, 0, 22);
    a.jump(op::JLE32_K, R0, 1, L::Miss);
    store(&mut a, 0, R9, v::MACS, 12);
    a.jump(op::JNE64_K, R0, 0, L::Miss);
    // The 16-bit word of TTL and protocol: old in r7, new (TTL - 1) in r8, both in network
    // order for the checksum helper (RFC 1624).
    a.i(op::LD_ABS_H, 0, 0, 0, 22);
    a.i(op::MOV64_X, R7, R0, 0, 0);
    a.i(op::MOV64_X, R8, R0, 0, 0);
    a.i(op::ADD64_K, R8, 0, 0, -0x100);
    a.i(op::TO_BE, R7, 0, 0, 16);
    a.i(op::TO_BE, R8, 0, 0, 16);
    a.i(op::STX_H, R10, R8, -48, 0);
    store(&mut a, 22, R10, -48, 2);
    a.jump(op::JNE64_K, R0, 0, L::Miss);
    a.i(op::MOV64_X, R1, R6, 0, 0);
    a.i(op::MOV64_K, R2, 0, 0, 24);
    a.i(op::MOV64_X, R3, R7, 0, 0);
    a.i(op::MOV64_X, R4, R8, 0, 0);
    a.i(op::MOV64_K, R5, 0, 0, 2);
    a.i(op::CALL, 0, 0, 0, op::L3_CSUM_REPLACE);
    a.jump(op::JNE64_K, R0, 0, L::Miss);
    a.label(L::Whole);
    count(&mut a, 0);
    redirect(&mut a, v::IFINDEX);
    miss(&mut a);
    a.finish()
}

/// The program on the underlay device's ingress of the host whose underlay address is `us`
/// (see the [module docs](self)), looking up `map`.
pub fn ingress_program(map: &BpfHash, us: Ipv4Addr) -> Vec<Insn> {
    let mut a = Asm::new();
    prologue(&mut a);
    // The outer headers: the shortest datagram of a flow (UDP inside) first.
    a.need(INNER + 14 + 24);
    a.expect(2, 12, 0xffff, 0x0800);
    a.expect(1, 14, 0xff, 0x45);
    a.expect(2, 20, 0x3fff, 0);
    a.expect(1, 23, 0xff, 17);
    a.expect(4, 30, u32::MAX, u32::from(us));
    a.expect(2, 36, 0xffff, u32::from(super::VXLAN_PORT));
    a.expect(4, 42, u32::MAX, 0x0800_0000);
    a.expect(1, 49, 0xff, 0);
    a.copy(4, 26, k::HOST);
    a.copy(4, 46, k::VNI);
    inner_frame(&mut a, INNER, map);
    count(&mut a, i32::from(INNER));
    // No delivery veth (decapsulation off): whole, to the port's own namespace.
    a.i(op::LDX_W, R0, R9, v::IFINDEX, 0);
    a.jump(op::JEQ64_K, R0, 0, L::Whole);
    // Small frames and GSO super-frames alike (a TCP stream's, as GRO or the sender's VXLAN
    // device built them): their gso_size is the inner segment size, so it stays fixed.
    a.i(op::MOV64_X, R1, R6, 0, 0);
    a.i(op::MOV64_K, R2, 0, 0, -i32::from(INNER));
    a.i(op::MOV64_K, R3, 0, 0, op::ADJ_ROOM_MAC);
    a.i(
        op::MOV64_K,
        R4,
        0,
        0,
        op::ADJ_ROOM_FIXED_GSO | op::ADJ_ROOM_DECAP_L3_IPV4,
    );
    a.i(op::CALL, 0, 0, 0, op::SKB_ADJUST_ROOM);
    // A refused decap (a GSO type the helper cannot shrink) leaves the datagram as it was:
    // whole.
    a.jump(op::JNE64_K, R0, 0, L::Whole);
    // The inner MACs (the key's, on the stack) over the outer Ethernet header, kept in place.
    store(&mut a, 0, R10, KEY + k::MACS, 12);
    // Into the delivery veth's other end, in the instance's namespace, in this same pass.
    a.i(op::LDX_W, R1, R9, v::IFINDEX, 0);
    a.i(op::MOV64_K, R2, 0, 0, 0);
    a.i(op::CALL, 0, 0, 0, op::REDIRECT_PEER);
    a.i(op::EXIT, 0, 0, 0, 0);
    a.label(L::Whole);
    redirect(&mut a, v::WHOLE_IFINDEX);
    miss(&mut a);
    a.finish()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use softvpc_engine::offload::{KernelAction, KernelHook, Rewrite};
    use softvpc_engine::policy::Generation;
    use softvpc_engine::{PortId, Vni};
    use softvpc_netlink::bpf::{load_sched_cls, test_run, test_run_gso};
    use softvpc_wire::L4Key;

    use super::*;

    const INSTANCE: [u8; 6] = [2, 0, 0, 0, 1, 1];
    const ROUTER: [u8; 6] = [0x0a, 0x56, 0x50, 0, 1, 1];
    const REDIRECTED: u32 = op::TC_ACT_REDIRECT;
    const PASSED: u32 = op::TC_ACT_UNSPEC as u32;

    fn l4s() -> [(u8, L4Key); 3] {
        [
            (
                6,
                L4Key::Ports {
                    src: 40000,
                    dst: 80,
                },
            ),
            (17, L4Key::Ports { src: 53, dst: 5353 }),
            (
                1,
                L4Key::Icmp {
                    ty: 8,
                    code: 0,
                    ident: 0x1234,
                },
            ),
        ]
    }

    /// An egress flow of port 3; `routed`: with a rewrite (to another subnet or VPC).
    fn egress(proto: u8, l4: L4Key, routed: bool) -> KernelFlow {
        KernelFlow {
            generation: Generation(1),
            hook: KernelHook::PortEgress(PortId(3)),
            src_mac: INSTANCE,
            dst_mac: if routed { ROUTER } else { [2, 0, 0, 0, 1, 2] },
            src: Ipv4Addr::new(10, 0, 0, 30),
            dst: Ipv4Addr::new(10, 0, 1, 20),
            proto,
            l4,
            action: KernelAction::Encap {
                host: Ipv4Addr::new(198, 18, 0, 12),
                vni: Vni(0x103),
                port: 4789,
            },
            rewrite: routed.then_some(Rewrite {
                router_mac: [0x0a, 0x56, 0x50, 0, 1, 3],
                target_mac: [2, 0, 0, 0, 3, 1],
            }),
        }
    }

    fn ingress(proto: u8, l4: L4Key, host: Ipv4Addr) -> KernelFlow {
        let mut k = egress(proto, l4, false);
        k.hook = KernelHook::UnderlayIngress {
            port: PortId(1),
            vni: Vni(0x101),
            host,
        };
        k.action = KernelAction::Deliver(PortId(1));
        k
    }

    fn checksum(h: &[u8]) -> u16 {
        let mut s = 0u32;
        for c in h.chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// A frame of `k` with TTL `ttl`, TCP flags `flags`, a valid header checksum, 8 bytes of
    /// payload.
    fn frame(k: &KernelFlow, ttl: u8, flags: u8) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&k.dst_mac);
        f.extend_from_slice(&k.src_mac);
        f.extend_from_slice(&[8, 0]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&48u16.to_be_bytes());
        ip[6] = 0x40;
        ip[8] = ttl;
        ip[9] = k.proto;
        ip[12..16].copy_from_slice(&k.src.octets());
        ip[16..20].copy_from_slice(&k.dst.octets());
        let c = !checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut l4 = [0u8; 28];
        match k.l4 {
            L4Key::Ports { src, dst } => {
                l4[0..2].copy_from_slice(&src.to_be_bytes());
                l4[2..4].copy_from_slice(&dst.to_be_bytes());
                l4[12] = 0x50;
                l4[13] = flags;
            }
            L4Key::Icmp { ty, code, ident } => {
                l4[0] = ty;
                l4[1] = code;
                l4[4..6].copy_from_slice(&ident.to_be_bytes());
            }
            L4Key::None => {}
        }
        f.extend_from_slice(&l4);
        f
    }

    /// A VXLAN datagram as the underlay device receives it at tc ingress (outer Ethernet, IPv4
    /// from `from` to `to`, UDP to `dport`, VXLAN with `vni`), carrying `inner`.
    fn datagram(from: Ipv4Addr, to: Ipv4Addr, dport: u16, vni: u32, inner: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0xee, 2, 2, 0, 0, 0, 0xee, 1, 8, 0];
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + 8 + 8 + inner.len()) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&from.octets());
        ip[16..20].copy_from_slice(&to.octets());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&49152u16.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&((8 + 8 + inner.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 8, 0, 0, 0]);
        f.extend_from_slice(&(vni << 8).to_be_bytes());
        f.extend_from_slice(inner);
        f
    }

    /// What the kernel may carry for ingress flow `k` by the engine's model: the outer headers
    /// as the flow's u32 keys on the underlay matched them ([`super::super::ingress_keys`],
    /// words from the outer IPv4 header, 14 bytes into the frame), and an inner frame the flow
    /// executes ([`KernelFlow::executes`]).
    fn ingress_model(k: &KernelFlow, us: Ipv4Addr, d: &[u8]) -> bool {
        let outer = super::super::ingress_keys(k, us)
            .iter()
            .filter(|key| key.offset < 36)
            .all(|key| {
                let at = (14 + key.offset) as usize;
                d.get(at..at + 4).is_some_and(|w| {
                    u32::from_be_bytes(w.try_into().expect("4 bytes")) & key.mask == key.value
                })
            });
        outer && d.len() >= INNER as usize && k.executes(&d[INNER as usize..])
    }

    /// Variants of `f`: every byte with one of three bits flipped, and every length from 34 up.
    fn variants(f: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for at in 0..f.len() {
            for bit in [0x01, 0x04, 0x80] {
                let mut g = f.to_vec();
                g[at] ^= bit;
                out.push((format!("byte {at} ^ {bit:#x}"), g));
            }
        }
        // (BPF_PROG_TEST_RUN refuses an IPv4 frame shorter than its IPv4 header.)
        for len in 34..f.len() {
            out.push((format!("cut to {len}"), f[..len].to_vec()));
        }
        out
    }

    fn root() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        println!("SKIPPED (needs root): loading a cls_bpf program");
        eprintln!("!! SKIPPED (needs root): loading a cls_bpf program");
        false
    }

    #[test]
    fn keys_differ_by_hook_port_host_and_every_flow_field() {
        let k = egress(17, L4Key::Ports { src: 1, dst: 2 }, false);
        let mut other_port = k;
        other_port.hook = KernelHook::PortEgress(PortId(4));
        assert_ne!(key(&k), key(&other_port));
        let i = ingress(
            17,
            L4Key::Ports { src: 1, dst: 2 },
            Ipv4Addr::new(198, 18, 0, 12),
        );
        let j = ingress(
            17,
            L4Key::Ports { src: 1, dst: 2 },
            Ipv4Addr::new(198, 18, 0, 13),
        );
        assert_ne!(key(&i), key(&j));
        assert_ne!(key(&i), key(&k));
        let mut routed = k;
        routed.rewrite = Some(Rewrite {
            router_mac: ROUTER,
            target_mac: INSTANCE,
        });
        // The same match: one entry (the installer refuses the second).
        assert_eq!(key(&k), key(&routed));
        assert_eq!(counters(&value(&routed, 7, 0)), (0, 0, 0));
    }

    /// The egress program, through the kernel's verifier and `BPF_PROG_TEST_RUN`, with the flow
    /// in a map: a frame the engine's model ([`KernelFlow::executes`], i.e. the flow's u32
    /// keys, plus a TTL above 1 for a routed flow) carries is redirected, rewritten as
    /// [`KernelFlow::apply`] does and counted; every variant of it (each byte with a bit
    /// flipped, each shorter length) is redirected exactly when the model carries it, and left
    /// untouched otherwise; another port's program leaves it alone.
    #[test]
    fn the_egress_program_carries_exactly_what_the_engine_model_does() {
        if !root() {
            return;
        }
        for (proto, l4) in l4s() {
            for routed in [false, true] {
                let k = egress(proto, l4, routed);
                let map = create_map().expect("a flow map");
                map.insert(&key(&k), &value(&k, 7, 0)).unwrap();
                let fd = load_sched_cls(&egress_program(&map, 3), "svfp_test")
                    .expect("the verifier accepts the program");
                let f = frame(&k, 64, 0x10);
                assert!(k.executes(&f));
                let (ret, out) = test_run(&fd, &f).unwrap();
                assert_eq!(ret, REDIRECTED, "{proto} routed {routed}");
                let mut want = f.clone();
                k.apply(&mut want);
                assert_eq!(out, want);
                if routed {
                    assert_eq!(out[22], 63);
                    assert_eq!(checksum(&out[14..34]), 0xffff, "header checksum");
                }
                let (packets, bytes, last) = counters(&map.get(&key(&k)).unwrap().unwrap());
                assert_eq!((packets, bytes), (1, f.len() as u64));
                assert!(last > 0);
                let mut carried = 1;
                let mut cases = variants(&f);
                cases.push(("TTL 1".into(), frame(&k, 1, 0x10)));
                cases.push(("TTL 2".into(), frame(&k, 2, 0x10)));
                for flags in [0x02, 0x12, 0x11, 0x04, 0x18] {
                    cases.push((format!("flags {flags:#x}"), frame(&k, 64, flags)));
                }
                for (what, g) in cases {
                    let (ret, out) = test_run(&fd, &g).unwrap_or_else(|e| panic!("{what}: {e}"));
                    if k.executes(&g) {
                        carried += 1;
                        let mut want = g.clone();
                        k.apply(&mut want);
                        assert_eq!((ret, &out), (REDIRECTED, &want), "{proto} {routed} {what}");
                    } else {
                        assert_eq!((ret, &out), (PASSED, &g), "{proto} {routed} {what}");
                    }
                }
                let (packets, _, _) = counters(&map.get(&key(&k)).unwrap().unwrap());
                assert_eq!(packets, carried);
                let other = load_sched_cls(&egress_program(&map, 4), "svfp_test").unwrap();
                assert_eq!(test_run(&other, &f).unwrap(), (PASSED, f.clone()));
            }
        }
    }

    /// The underlay's program, the same way: a datagram of the flow (from its host, to us, its
    /// VNI, an inner frame the engine's model carries) comes out as exactly the inner frame,
    /// redirected and counted (the inner frame's length); every variant of the datagram is
    /// carried exactly when the engine's model says so (the outer headers as the flow's u32
    /// keys matched them, the outer EtherType aside, which u32 does not see: the program wants
    /// IPv4; the inner frame as [`KernelFlow::executes`]), and untouched otherwise; with decapsulation
    /// off (no delivery veth) the datagram is redirected whole.
    #[test]
    fn the_ingress_program_carries_exactly_what_the_engine_model_does() {
        if !root() {
            return;
        }
        let host = Ipv4Addr::new(198, 18, 0, 12);
        let us = Ipv4Addr::new(198, 18, 0, 11);
        for (proto, l4) in l4s() {
            let k = ingress(proto, l4, host);
            let map = create_map().expect("a flow map");
            map.insert(&key(&k), &value(&k, 5, 6)).unwrap();
            let fd = load_sched_cls(&ingress_program(&map, us), "svfp_test")
                .expect("the verifier accepts the program");
            let inner = frame(&k, 64, 0x10);
            assert!(k.executes(&inner));
            let d = datagram(host, us, 4789, 0x101, &inner);
            assert!(ingress_model(&k, us, &d));
            let (ret, out) = test_run(&fd, &d).unwrap();
            assert_eq!((ret, &out), (REDIRECTED, &inner), "{proto}");
            let (packets, bytes, _) = counters(&map.get(&key(&k)).unwrap().unwrap());
            assert_eq!((packets, bytes), (1, inner.len() as u64));
            let mut cases = variants(&d);
            cases
                .retain(|(what, _)| !what.starts_with("byte 12 ") && !what.starts_with("byte 13 "));
            cases.push((
                "another host".into(),
                datagram(Ipv4Addr::new(198, 18, 0, 13), us, 4789, 0x101, &inner),
            ));
            cases.push((
                "another VNI".into(),
                datagram(host, us, 4789, 0x102, &inner),
            ));
            if proto == 6 {
                cases.push((
                    "a SYN".into(),
                    datagram(host, us, 4789, 0x101, &frame(&k, 64, 0x02)),
                ));
            }
            for (what, g) in cases {
                let (ret, out) = test_run(&fd, &g).unwrap_or_else(|e| panic!("{what}: {e}"));
                if ingress_model(&k, us, &g) {
                    assert_eq!((ret, &out[..]), (REDIRECTED, &g[50..]), "{proto} {what}");
                } else {
                    assert_eq!((ret, &out), (PASSED, &g), "{proto} {what}");
                }
            }
            // A GSO packet whose type the helper cannot shrink (a test run's skb has gso_size
            // and gso_segs but no gso_type: not TCP, not UDP_L4, so it refuses) goes whole,
            // unchanged, and counted; a real TCP stream's super-frames are decapsulated
            // (`the_ingress_program_decapsulates_a_tcp_streams_super_frames`).
            let (ret, out) = test_run_gso(&fd, &d, 1398, 3).unwrap();
            assert_eq!(
                (ret, &out),
                (REDIRECTED, &d),
                "{proto}: a refused GSO packet"
            );
            let (packets, _, _) = counters(&map.get(&key(&k)).unwrap().unwrap());
            assert!(packets >= 2);
            // Decapsulation off: the datagram goes whole (to the port's own namespace).
            map.insert(&key(&k), &value(&k, 0, 6)).unwrap();
            assert_eq!(test_run(&fd, &d).unwrap(), (REDIRECTED, d.clone()));
            assert!(map.remove(&key(&k)).unwrap());
            assert_eq!(test_run(&fd, &d).unwrap(), (PASSED, d.clone()));
        }
    }

    /// Throwaway namespaces (deleted on drop, also when the test fails).
    struct Namespaces(Vec<String>);

    impl Drop for Namespaces {
        fn drop(&mut self) {
            for ns in &self.0 {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", ns])
                    .status();
            }
        }
    }

    /// Runs `ip` with the words of `args`, and panics with its stderr unless it succeeds;
    /// its stdout.
    fn ip(args: &str) -> String {
        let out = std::process::Command::new("ip")
            .args(args.split_whitespace())
            .output()
            .expect("running ip");
        assert!(
            out.status.success(),
            "ip {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn mac(s: &str) -> [u8; 6] {
        let b: Vec<u8> = s
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).expect("hex"))
            .collect();
        b.try_into().expect("6 bytes")
    }

    /// A real TCP stream's GSO super-frames through the underlay's program, in throwaway
    /// namespaces laid out as a fast path host's: host A sends from a kernel VXLAN device
    /// (which hands its veth underlay whole UDP-tunnel super-frames, as a peer host does);
    /// host B's underlay has the program and the stream's flow in its map, with the delivery
    /// veth into the instance's namespace C as the entry's target, and nothing else that
    /// could deliver the stream's data segments (the connection's SYN and FIN, which are no
    /// flow's, reach C through a kernel VXLAN device of C on B's port 4789, as they reach
    /// the engine). Every byte arrives; the entry counted them, in packets far larger than
    /// one segment: super-frames were decapsulated and redirected into C, not only single
    /// segments (before, a super-frame went whole to the entry's other target, here none:
    /// the stream stalled).
    #[test]
    fn the_ingress_program_decapsulates_a_tcp_streams_super_frames() {
        if !root() {
            return;
        }
        let p = format!("svfpg{}-", std::process::id());
        let (a, b, c) = (format!("{p}a"), format!("{p}b"), format!("{p}c"));
        let _ns = Namespaces(vec![a.clone(), b.clone(), c.clone()]);
        for ns in [&a, &b, &c] {
            ip(&format!("netns add {ns}"));
            ip(&format!("-n {ns} link set lo up"));
        }
        let (mac_a, mac_c) = ("02:00:00:00:09:01", "02:00:00:00:09:02");
        for cmd in [
            format!("-n {a} link add ua type veth peer name ub netns {b}"),
            format!("-n {a} addr add 198.18.9.1/24 dev ua"),
            format!("-n {b} addr add 198.18.9.2/24 dev ub"),
            format!("-n {a} link set ua up"),
            format!("-n {b} link set ub up"),
            // A: the sending instance on a kernel VXLAN device, VNI 0x101.
            format!(
                "-n {a} link add vx address {mac_a} mtu 1450 type vxlan id 257 dstport 4789 \
                 local 198.18.9.1 dev ua nolearning"
            ),
            format!("-n {a} addr add 10.9.0.1/24 dev vx"),
            format!("-n {a} link set vx up"),
            format!("-n {a} neigh add 10.9.0.2 lladdr {mac_c} dev vx nud permanent"),
            format!(
                "netns exec {a} bridge fdb append {mac_c} dev vx dst 198.18.9.2 self permanent"
            ),
            // C: its VXLAN device (socket in B on 4789: the way of what is no flow's, and of
            // C's replies) and the delivery veth from B.
            format!(
                "-n {b} link add vxc type vxlan id 257 dstport 4789 local 198.18.9.2 dev ub \
                 nolearning"
            ),
            format!("-n {b} link set vxc netns {c}"),
            format!("-n {c} link set vxc address {mac_c} mtu 1450 up"),
            format!("-n {c} addr add 10.9.0.2/24 dev vxc"),
            format!("-n {c} neigh add 10.9.0.1 lladdr {mac_a} dev vxc nud permanent"),
            format!(
                "netns exec {c} bridge fdb append {mac_a} dev vxc dst 198.18.9.1 self permanent"
            ),
            format!("-n {b} link add fpd type veth peer name fpdi netns {c}"),
            format!("-n {c} link set fpdi address {mac_c} up"),
            format!("-n {b} link set fpd up"),
            format!("netns exec {c} sysctl -qw net.ipv4.conf.all.rp_filter=0"),
            format!("netns exec {c} sysctl -qw net.ipv4.conf.default.rp_filter=0"),
            format!("netns exec {c} sysctl -qw net.ipv4.conf.fpdi.rp_filter=0"),
        ] {
            ip(&cmd);
        }
        let fpd: u32 = ip(&format!("netns exec {b} cat /sys/class/net/fpd/ifindex"))
            .trim()
            .parse()
            .expect("an ifindex");
        // B's underlay program with the stream's flow (inner frames A -> C, TCP 40009 -> 5201).
        let mut k = ingress(
            6,
            L4Key::Ports {
                src: 40009,
                dst: 5201,
            },
            Ipv4Addr::new(198, 18, 9, 1),
        );
        k.src_mac = mac(mac_a);
        k.dst_mac = mac(mac_c);
        k.src = Ipv4Addr::new(10, 9, 0, 1);
        k.dst = Ipv4Addr::new(10, 9, 0, 2);
        let map = create_map().expect("a flow map");
        map.insert(&key(&k), &value(&k, fpd, 0)).unwrap();
        let fd = load_sched_cls(
            &ingress_program(&map, Ipv4Addr::new(198, 18, 9, 2)),
            "svfp_test",
        )
        .expect("the verifier accepts the program");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let nl = softvpc_netlink::Netlink::connect_in(&b).unwrap();
            nl.add_clsact("ub").await.unwrap();
            nl.add_bpf_direct(
                "ub",
                softvpc_netlink::Hook::Ingress,
                super::super::FLOW_PRIO,
                &fd,
                "svfp_test",
            )
            .await
            .unwrap();
        });
        const BYTES: u64 = 64 << 20;
        let server_code = "import socket\n\
             s = socket.socket(); s.bind(('10.9.0.2', 5201)); s.listen(1)\n\
             print('ready', flush=True)\n\
             c, _ = s.accept(); n = 0\n\
             while True:\n\
             \x20   b = c.recv(1 << 20)\n\
             \x20   if not b: break\n\
             \x20   n += len(b)\n\
             print(n, flush=True)\n";
        let mut server = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &c,
                "timeout",
                "60",
                "python3",
                "-c",
                server_code,
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the server");
        let out = server.stdout.take().expect("its stdout");
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(out));
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        let client_code = format!(
            "import socket\n\
             s = socket.socket(); s.bind(('10.9.0.1', 40009))\n\
             s.connect(('10.9.0.2', 5201)); s.sendall(bytes({BYTES})); s.close()\n"
        );
        let sent = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &a,
                "timeout",
                "60",
                "python3",
                "-c",
                &client_code,
            ])
            .status()
            .expect("the client");
        let received = lines.next().and_then(|l| l.ok()).unwrap_or_default();
        let _ = server.wait();
        assert!(sent.success(), "the client: {sent}");
        assert_eq!(received.trim(), BYTES.to_string(), "bytes received");
        let (packets, bytes, _) = counters(&map.get(&key(&k)).unwrap().unwrap());
        println!("the flow's entry: {packets} packets, {bytes} bytes");
        // Nearly every data segment is the flow's (not the handshake, nor a segment with the
        // FIN), in packets of many segments each.
        assert!(bytes >= BYTES * 9 / 10, "{bytes} bytes");
        assert!(
            bytes / packets > 4 * 1500,
            "{packets} packets, {bytes} bytes"
        );
    }
}
