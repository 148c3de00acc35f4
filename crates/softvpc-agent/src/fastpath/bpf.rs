//! A routed flow's `cls_bpf` program (`docs/fast-path.md`): the engine's decision for one flow
//! as eBPF instructions, generated from the [`KernelFlow`] value alone (nothing compiled at run
//! time). The program matches exactly what the flow's u32 keys match ([`KernelFlow::u32_keys`],
//! the same bytes and the same minimum length) plus a TTL above 1, then does the engine's
//! rewrite ([`KernelFlow::apply`]: destination MAC to the target's, source MAC to the router's,
//! TTL - 1 with the header checksum updated per RFC 1624) and returns -1, so the filter's
//! `mirred` redirect runs; any other frame returns 0 and the next filter (or the TAP, i.e. the
//! engine) gets it unchanged.

use std::collections::BTreeMap;

use softvpc_engine::offload::KernelFlow;
use softvpc_netlink::bpf::{op, Insn};

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R10: u8 = 10;

/// The flow's u32 keys as 32-bit words at 4-aligned offsets from the start of the frame (mask,
/// value), and the length a frame needs for every key to be read (as u32 needs it).
pub fn frame_words(k: &KernelFlow) -> (BTreeMap<i32, (u32, u32)>, u32) {
    let (keys, n) = k.u32_keys();
    let mut words: BTreeMap<i32, (u32, u32)> = BTreeMap::new();
    let mut min_len = 0;
    for key in &keys[..n] {
        min_len = min_len.max(14 + key.offset + 4);
        for i in 0..4 {
            let shift = 24 - 8 * i;
            let m = (key.mask >> shift) & 0xff;
            if m == 0 {
                continue;
            }
            let at = 14 + key.offset + i;
            let base = at.div_euclid(4) * 4;
            let to = 24 - 8 * (at - base) as u32;
            let w = words.entry(base).or_insert((0, 0));
            w.0 |= m << to;
            w.1 |= ((key.value >> shift) & m) << to;
        }
    }
    (words, min_len.max(0) as u32)
}

/// The program of routed flow `k` (see the [module docs](self)).
pub fn program(k: &KernelFlow) -> Vec<Insn> {
    let i = Insn::new;
    let mut p = vec![
        i(op::MOV64_X, R6, R1, 0, 0),
        // skb->len
        i(op::LDX_W, R0, R6, 0, 0),
    ];
    // Jumps to the miss label, patched at the end.
    let mut to_miss = Vec::new();
    let (words, min_len) = frame_words(k);
    to_miss.push(p.len());
    p.push(i(op::JLT32_K, R0, 0, 0, min_len as i32));
    for (offset, (mask, value)) in words {
        p.push(i(op::LD_ABS_W, 0, 0, 0, offset));
        if mask != u32::MAX {
            p.push(i(op::AND32_K, R0, 0, 0, mask as i32));
        }
        to_miss.push(p.len());
        p.push(i(op::JNE32_K, R0, 0, 0, value as i32));
    }
    if let Some(r) = k.rewrite {
        let d = r.target_mac;
        let s = r.router_mac;
        p.extend([
            // TTL above 1: the engine answers the others.
            i(op::LD_ABS_B, 0, 0, 0, 22),
        ]);
        to_miss.push(p.len());
        p.push(i(op::JLE32_K, R0, 0, 0, 1));
        p.extend([
            // The 12 MAC bytes on the stack at r10 - 16, then into the frame.
            i(
                op::ST_W,
                R10,
                0,
                -16,
                i32::from_le_bytes([d[0], d[1], d[2], d[3]]),
            ),
            i(
                op::ST_H,
                R10,
                0,
                -12,
                i32::from(u16::from_le_bytes([d[4], d[5]])),
            ),
            i(
                op::ST_H,
                R10,
                0,
                -10,
                i32::from(u16::from_le_bytes([s[0], s[1]])),
            ),
            i(
                op::ST_W,
                R10,
                0,
                -8,
                i32::from_le_bytes([s[2], s[3], s[4], s[5]]),
            ),
        ]);
        p.extend(store_bytes(0, -16, 12));
        to_miss.push(p.len());
        p.push(i(op::JNE64_K, R0, 0, 0, 0));
        p.extend([
            // The 16-bit word of TTL and protocol: old in r7, new (TTL - 1) in r8, both in
            // network order for the checksum helper.
            i(op::LD_ABS_H, 0, 0, 0, 22),
            i(op::MOV64_X, R7, R0, 0, 0),
            i(op::MOV64_X, R8, R0, 0, 0),
            i(op::ADD64_K, R8, 0, 0, -0x100),
            i(op::TO_BE, R7, 0, 0, 16),
            i(op::TO_BE, R8, 0, 0, 16),
            i(op::STX_H, R10, R8, -20, 0),
        ]);
        p.extend(store_bytes(22, -20, 2));
        to_miss.push(p.len());
        p.push(i(op::JNE64_K, R0, 0, 0, 0));
        p.extend([
            i(op::MOV64_X, R1, R6, 0, 0),
            i(op::MOV64_K, R2, 0, 0, 24),
            i(op::MOV64_X, R3, R7, 0, 0),
            i(op::MOV64_X, R4, R8, 0, 0),
            i(op::MOV64_K, R5, 0, 0, 2),
            i(op::CALL, 0, 0, 0, op::L3_CSUM_REPLACE),
        ]);
        to_miss.push(p.len());
        p.push(i(op::JNE64_K, R0, 0, 0, 0));
    }
    // A match: the filter's actions run.
    p.push(i(op::MOV64_K, R0, 0, 0, -1));
    p.push(i(op::EXIT, 0, 0, 0, 0));
    let miss = p.len();
    p.push(i(op::MOV64_K, R0, 0, 0, 0));
    p.push(i(op::EXIT, 0, 0, 0, 0));
    for j in to_miss {
        p[j].off = (miss - j - 1) as i16;
    }
    p
}

/// The outer headers a VXLAN datagram carries before its inner frame: IPv4 (20, no options:
/// the keys require it), UDP (8), VXLAN (8), then the inner Ethernet header (14) that the decap
/// takes too (the outer one stays in place and gets the inner MACs).
pub const DECAP_LEN: i32 = 20 + 8 + 8 + 14;

/// The underlay-ingress program of a bridged delivery `k` (hook `UnderlayIngress`), for host
/// `us`: the same condition as the flow's u32 ingress filter ([`ingress_keys`](super::ingress_keys):
/// outer IPv4 from the flow's host to us, UDP 4789, VXLAN I flag and VNI, the inner keys), read
/// at frame offsets (a tc ingress program sees the Ethernet header), on an IPv4 frame that is
/// not a GSO super-frame (those keep the u32 filter's path through a VXLAN device, which
/// segments them if it must); then it decapsulates in place (`bpf_skb_adjust_room`: the 50
/// bytes after the outer Ethernet header go), writes the inner frame's MACs (the flow's, which
/// the keys matched) over the outer ones and returns -1, so the filter's redirect hands the
/// inner frame on. Every other frame returns 0 unchanged: the next filter (or the host's
/// stack, i.e. the agent's socket and the engine) gets it.
pub fn decap_program(k: &KernelFlow, us: std::net::Ipv4Addr) -> Vec<Insn> {
    let i = Insn::new;
    let mut p = vec![
        i(op::MOV64_X, R6, R1, 0, 0),
        i(op::LDX_W, R0, R6, op::SKB_GSO_SIZE, 0),
    ];
    let mut to_miss = vec![p.len()];
    p.push(i(op::JNE64_K, R0, 0, 0, 0));
    let keys = super::ingress_keys(k, us);
    let min_len = keys
        .iter()
        .map(|k| 14 + k.offset + 4)
        .max()
        .unwrap_or(0)
        .max(14 + DECAP_LEN);
    // Direct packet access, not LD_ABS: every LD_ABS is a helper call, and every datagram the
    // host receives runs the program of every ingress flow installed before the one it belongs
    // to (measured: 500 flows with LD_ABS programs added about 0.5 ms to a ping's round trip).
    p.extend([
        i(op::LDX_W, R2, R6, op::SKB_DATA, 0),
        i(op::LDX_W, R3, R6, op::SKB_DATA_END, 0),
        i(op::MOV64_X, R4, R2, 0, 0),
        i(op::ADD64_K, R4, 0, 0, min_len),
    ]);
    to_miss.push(p.len());
    p.push(i(op::JGT64_X, R4, R3, 0, 0));
    // The most selective words first (the inner frame's ports, addresses, MACs; then the outer
    // headers, which most datagrams from the flow's host share), so a miss ends early.
    for key in keys.iter().rev() {
        p.push(i(op::LDX_W, R0, R2, (14 + key.offset) as i16, 0));
        p.push(i(op::TO_BE, R0, 0, 0, 32));
        if key.mask != u32::MAX {
            p.push(i(op::AND32_K, R0, 0, 0, key.mask as i32));
        }
        to_miss.push(p.len());
        p.push(i(op::JNE32_K, R0, 0, 0, (key.value & key.mask) as i32));
    }
    // The outer EtherType: IPv4.
    p.push(i(op::LDX_H, R0, R2, 12, 0));
    p.push(i(op::TO_BE, R0, 0, 0, 16));
    to_miss.push(p.len());
    p.push(i(op::JNE32_K, R0, 0, 0, 0x0800));
    p.extend([
        i(op::MOV64_X, R1, R6, 0, 0),
        i(op::MOV64_K, R2, 0, 0, -DECAP_LEN),
        i(op::MOV64_K, R3, 0, 0, op::ADJ_ROOM_MAC),
        i(op::MOV64_K, R4, 0, 0, 0),
        i(op::CALL, 0, 0, 0, op::SKB_ADJUST_ROOM),
    ]);
    // A failed decap leaves the frame as it was: not ours.
    to_miss.push(p.len());
    p.push(i(op::JNE64_K, R0, 0, 0, 0));
    let (d, s) = (k.dst_mac, k.src_mac);
    p.extend([
        i(
            op::ST_W,
            R10,
            0,
            -16,
            i32::from_le_bytes([d[0], d[1], d[2], d[3]]),
        ),
        i(
            op::ST_H,
            R10,
            0,
            -12,
            i32::from(u16::from_le_bytes([d[4], d[5]])),
        ),
        i(
            op::ST_H,
            R10,
            0,
            -10,
            i32::from(u16::from_le_bytes([s[0], s[1]])),
        ),
        i(
            op::ST_W,
            R10,
            0,
            -8,
            i32::from_le_bytes([s[2], s[3], s[4], s[5]]),
        ),
    ]);
    p.extend(store_bytes(0, -16, 12));
    // The frame is the inner one now whatever the store did: the redirect hands it on (the
    // store into a linear header after a successful pull does not fail).
    p.push(i(op::MOV64_K, R0, 0, 0, -1));
    p.push(i(op::EXIT, 0, 0, 0, 0));
    let miss = p.len();
    p.push(i(op::MOV64_K, R0, 0, 0, 0));
    p.push(i(op::EXIT, 0, 0, 0, 0));
    for j in to_miss {
        p[j].off = (miss - j - 1) as i16;
    }
    p
}

/// `bpf_skb_store_bytes(skb, offset, r10 + stack, len, 0)`: `len` bytes from the stack into the
/// frame at `offset` (the context is kept in r6); r0 is the helper's result.
fn store_bytes(offset: i32, stack: i32, len: i32) -> [Insn; 7] {
    let i = Insn::new;
    [
        i(op::MOV64_X, R1, R6, 0, 0),
        i(op::MOV64_K, R2, 0, 0, offset),
        i(op::MOV64_X, R3, R10, 0, 0),
        i(op::ADD64_K, R3, 0, 0, stack),
        i(op::MOV64_K, R4, 0, 0, len),
        i(op::MOV64_K, R5, 0, 0, 0),
        i(op::CALL, 0, 0, 0, op::SKB_STORE_BYTES),
    ]
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use softvpc_engine::offload::{KernelAction, KernelHook, Rewrite};
    use softvpc_engine::policy::Generation;
    use softvpc_engine::{PortId, Vni};
    use softvpc_wire::L4Key;

    use super::*;

    const INSTANCE: [u8; 6] = [2, 0, 0, 0, 1, 1];
    const ROUTER: [u8; 6] = [0x0a, 0x56, 0x50, 0, 1, 1];

    fn flow(proto: u8, l4: L4Key) -> KernelFlow {
        KernelFlow {
            generation: Generation(1),
            hook: KernelHook::PortEgress(PortId(1)),
            src_mac: INSTANCE,
            dst_mac: ROUTER,
            src: Ipv4Addr::new(10, 0, 0, 30),
            dst: Ipv4Addr::new(10, 0, 1, 20),
            proto,
            l4,
            action: KernelAction::Encap {
                host: Ipv4Addr::new(198, 18, 0, 12),
                vni: Vni(0x103),
                port: 4789,
            },
            rewrite: Some(Rewrite {
                router_mac: [0x0a, 0x56, 0x50, 0, 1, 3],
                target_mac: [2, 0, 0, 0, 3, 1],
            }),
        }
    }

    fn checksum_ok(h: &[u8]) -> bool {
        let mut s = 0u32;
        for c in h.chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s == 0xffff
    }

    /// A frame of `k` with TTL `ttl`, TCP flags `flags`, a valid header checksum.
    fn frame(k: &KernelFlow, ttl: u8, flags: u8) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&k.dst_mac);
        f.extend_from_slice(&k.src_mac);
        f.extend_from_slice(&[8, 0]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&60u16.to_be_bytes());
        ip[6] = 0x40;
        ip[8] = ttl;
        ip[9] = k.proto;
        ip[12..16].copy_from_slice(&k.src.octets());
        ip[16..20].copy_from_slice(&k.dst.octets());
        let mut s = 0u32;
        for c in ip.chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        ip[10..12].copy_from_slice(&(!(s as u16)).to_be_bytes());
        f.extend_from_slice(&ip);
        let mut l4 = [0u8; 20];
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

    #[test]
    fn the_words_are_the_u32_keys_at_frame_offsets() {
        let k = flow(
            6,
            L4Key::Ports {
                src: 40000,
                dst: 80,
            },
        );
        let (words, min_len) = frame_words(&k);
        assert_eq!(min_len, 14 + 32 + 4);
        assert!(words.keys().all(|o| o % 4 == 0 && *o >= 0));
        // Every frame the u32 keys match, the words match, and the other way round.
        let f = frame(&k, 64, 0x10);
        let word = |f: &[u8], o: i32| {
            u32::from_be_bytes(f[o as usize..o as usize + 4].try_into().unwrap())
        };
        let all = |f: &[u8]| words.iter().all(|(o, (m, v))| word(f, *o) & m == *v);
        assert!(k.matches(&f) && all(&f));
        for at in 0..f.len() {
            let mut g = f.clone();
            g[at] ^= 0x04;
            assert_eq!(k.matches(&g), all(&g), "byte {at}");
        }
    }

    fn root() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        println!("SKIPPED (needs root): loading a cls_bpf program");
        eprintln!("!! SKIPPED (needs root): loading a cls_bpf program");
        false
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

    /// The decapsulating program, through the kernel's verifier and `BPF_PROG_TEST_RUN`: a
    /// datagram of the flow (from its host, to us, its VNI, an inner frame the engine's model
    /// says the kernel executes) comes out as exactly the inner frame with a match; anything
    /// else (another host, VNI or port, an outer fragment, an inner frame of another flow, a
    /// TCP SYN, a short frame) is no match and untouched.
    #[test]
    fn the_kernel_decapsulates_what_the_engine_model_delivers() {
        if !root() {
            return;
        }
        let host = Ipv4Addr::new(198, 18, 0, 12);
        let us = Ipv4Addr::new(198, 18, 0, 11);
        for l in [
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
                    ty: 0,
                    code: 0,
                    ident: 0x1234,
                },
            ),
        ] {
            let mut k = flow(l.0, l.1);
            k.hook = KernelHook::UnderlayIngress {
                port: PortId(1),
                vni: Vni(0x101),
                host,
            };
            k.action = KernelAction::Deliver(PortId(1));
            k.rewrite = None;
            let fd = softvpc_netlink::bpf::load_sched_cls(&decap_program(&k, us), "svfd_test")
                .expect("the verifier accepts the program");
            let inner = frame(&k, 64, 0x10);
            assert!(k.executes(&inner));
            let d = datagram(host, us, 4789, 0x101, &inner);
            let (ret, out) = softvpc_netlink::bpf::test_run(&fd, &d).unwrap();
            assert_eq!(ret, u32::MAX, "a match");
            assert_eq!(out, inner, "the inner frame, whole");
            let mut others = vec![
                datagram(Ipv4Addr::new(198, 18, 0, 13), us, 4789, 0x101, &inner),
                datagram(host, Ipv4Addr::new(198, 18, 0, 14), 4789, 0x101, &inner),
                datagram(host, us, 4790, 0x101, &inner),
                datagram(host, us, 4789, 0x102, &inner),
                d[..60].to_vec(),
            ];
            let mut g = d.clone();
            g[20] = 0x20; // outer: more fragments
            others.push(g);
            let mut wrong = inner.clone();
            wrong[29] ^= 1; // inner source address
            assert!(!k.executes(&wrong));
            others.push(datagram(host, us, 4789, 0x101, &wrong));
            let mut wrong = inner.clone();
            wrong[0] ^= 2; // inner destination MAC
            assert!(!k.executes(&wrong));
            others.push(datagram(host, us, 4789, 0x101, &wrong));
            if k.proto == 6 {
                let syn = frame(&k, 64, 0x02);
                assert!(!k.executes(&syn));
                others.push(datagram(host, us, 4789, 0x101, &syn));
            }
            for g in others {
                let (ret, out) = softvpc_netlink::bpf::test_run(&fd, &g).unwrap();
                assert_eq!(ret, 0, "{:?}", &g[..g.len().min(64)]);
                assert_eq!(out, g);
            }
        }
    }

    /// The kernel's verifier takes the program, and it does to frames what the engine's model
    /// does ([`KernelFlow::executes`], [`KernelFlow::apply`]), run with `BPF_PROG_TEST_RUN`.
    #[test]
    fn the_kernel_runs_the_program_as_the_engine_model_says() {
        if !root() {
            return;
        }
        for k in [
            flow(
                6,
                L4Key::Ports {
                    src: 40000,
                    dst: 80,
                },
            ),
            flow(17, L4Key::Ports { src: 53, dst: 5353 }),
            flow(
                1,
                L4Key::Icmp {
                    ty: 8,
                    code: 0,
                    ident: 0x1234,
                },
            ),
        ] {
            let fd = softvpc_netlink::bpf::load_sched_cls(&program(&k), "svfp_test")
                .expect("the verifier accepts the program");
            let f = frame(&k, 64, 0x10);
            let (ret, out) = softvpc_netlink::bpf::test_run(&fd, &f).unwrap();
            assert_eq!(ret, u32::MAX, "a match");
            let mut want = f.clone();
            k.apply(&mut want);
            assert_eq!(out, want);
            assert_eq!(out[22], 63);
            assert!(checksum_ok(&out[14..34]));
            // TTL 1, another flow, a SYN (TCP), a fragment, a short frame: no match, unchanged.
            let mut others = vec![frame(&k, 1, 0x10), f[..36].to_vec()];
            let mut g = f.clone();
            g[29] ^= 1; // source address
            others.push(g);
            let mut g = f.clone();
            g[20] = 0x20; // more fragments
            others.push(g);
            if k.proto == 6 {
                others.push(frame(&k, 64, 0x02));
            }
            for g in others {
                assert!(!k.executes(&g));
                let (ret, out) = softvpc_netlink::bpf::test_run(&fd, &g).unwrap();
                assert_eq!(ret, 0, "{:?}", &g[..g.len().min(48)]);
                assert_eq!(out, g);
            }
        }
    }
}
