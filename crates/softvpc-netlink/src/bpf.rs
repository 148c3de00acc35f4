//! `cls_bpf` programs and maps for the fast path (`docs/fast-path.md`): eBPF instructions as
//! plain values, loaded with `bpf(2)` as `BPF_PROG_TYPE_SCHED_CLS` (no compiler, no object
//! file, nothing built at run time), and run on a test frame with `BPF_PROG_TEST_RUN` (root
//! only) so a program can be checked without attaching it; hash maps ([`BpfHash`]) a program
//! looks flows up in and the agent writes and reads. Attaching is
//! [`Netlink::add_bpf_direct`](crate::Netlink::add_bpf_direct) (direct action).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::libc;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register (low nibble) and source register (high nibble).
    pub regs: u8,
    /// Signed offset (jumps: in instructions; memory: in bytes).
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

impl Insn {
    /// An instruction from its fields.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (dst & 0x0f) | ((src & 0x0f) << 4),
            off,
            imm,
        }
    }
}

/// The opcodes and helper ids the fast path uses (`linux/bpf.h`, `linux/bpf_common.h`).
pub mod op {
    /// `r0 = ntohl(*(u32 *)(skb->data + imm))` (`BPF_LD | BPF_ABS | BPF_W`); a read past the
    /// end ends the program with 0.
    pub const LD_ABS_W: u8 = 0x20;
    /// The same, 16 bits.
    pub const LD_ABS_H: u8 = 0x28;
    /// The same, 8 bits.
    pub const LD_ABS_B: u8 = 0x30;
    /// `dst = *(u32 *)(src + off)` (`BPF_LDX | BPF_MEM | BPF_W`).
    pub const LDX_W: u8 = 0x61;
    /// `dst = *(u16 *)(src + off)`.
    pub const LDX_H: u8 = 0x69;
    /// `if dst > src goto +off` (64 bits, unsigned).
    pub const JGT64_X: u8 = 0x2d;
    /// `offsetof(struct __sk_buff, data)`.
    pub const SKB_DATA: i16 = 76;
    /// `offsetof(struct __sk_buff, data_end)`.
    pub const SKB_DATA_END: i16 = 80;
    /// `*(u32 *)(dst + off) = imm`.
    pub const ST_W: u8 = 0x62;
    /// `*(u16 *)(dst + off) = imm`.
    pub const ST_H: u8 = 0x6a;
    /// `*(u16 *)(dst + off) = src`.
    pub const STX_H: u8 = 0x6b;
    /// `dst = src` (64 bits).
    pub const MOV64_X: u8 = 0xbf;
    /// `dst = imm` (64 bits, sign-extended).
    pub const MOV64_K: u8 = 0xb7;
    /// `dst += imm` (64 bits).
    pub const ADD64_K: u8 = 0x07;
    /// `dst &= imm` (32 bits).
    pub const AND32_K: u8 = 0x54;
    /// `dst = htobe<imm>(dst)` (`BPF_ALU | BPF_END | BPF_TO_BE`).
    pub const TO_BE: u8 = 0xdc;
    /// `if (u32)dst != imm goto +off`.
    pub const JNE32_K: u8 = 0x56;
    /// `if (u32)dst < imm goto +off`.
    pub const JLT32_K: u8 = 0xa6;
    /// `if (u32)dst <= imm goto +off`.
    pub const JLE32_K: u8 = 0xb6;
    /// `if dst != 0 goto +off` with imm 0 (64 bits).
    pub const JNE64_K: u8 = 0x55;
    /// Call helper `imm`.
    pub const CALL: u8 = 0x85;
    /// Return r0.
    pub const EXIT: u8 = 0x95;
    /// `bpf_skb_store_bytes(skb, offset, from, len, flags)`.
    pub const SKB_STORE_BYTES: i32 = 9;
    /// `bpf_l3_csum_replace(skb, offset, from, to, size)`.
    pub const L3_CSUM_REPLACE: i32 = 10;
    /// `bpf_skb_adjust_room(skb, len_diff, mode, flags)`.
    pub const SKB_ADJUST_ROOM: i32 = 50;
    /// `BPF_ADJ_ROOM_MAC`: room added or taken right after the Ethernet header.
    pub const ADJ_ROOM_MAC: i32 = 1;
    /// `BPF_F_ADJ_ROOM_FIXED_GSO`: a GSO packet keeps its `gso_size` (without it, shrinking
    /// raises the segment size by the bytes removed).
    pub const ADJ_ROOM_FIXED_GSO: i32 = 1;
    /// `BPF_F_ADJ_ROOM_DECAP_L3_IPV4`: what remains after the removed bytes is IPv4.
    pub const ADJ_ROOM_DECAP_L3_IPV4: i32 = 1 << 7;
    /// `offsetof(struct __sk_buff, gso_size)`: nonzero for a GSO super-frame.
    pub const SKB_GSO_SIZE: i16 = 176;
    /// `dst = imm64` (two instructions); with src [`PSEUDO_MAP_FD`] the immediate is a map's fd.
    pub const LD_IMM64: u8 = 0x18;
    /// `src` of [`LD_IMM64`]: the immediate is a map file descriptor.
    pub const PSEUDO_MAP_FD: u8 = 1;
    /// `dst = *(u8 *)(src + off)`.
    pub const LDX_B: u8 = 0x71;
    /// `*(u64 *)(dst + off) = src`.
    pub const STX_DW: u8 = 0x7b;
    /// `*(u32 *)(dst + off) = src`.
    pub const STX_W: u8 = 0x63;
    /// `*(u8 *)(dst + off) = src`.
    pub const STX_B: u8 = 0x73;
    /// `*(u64 *)(dst + off) = imm`.
    pub const ST_DW: u8 = 0x7a;
    /// `lock *(u64 *)(dst + off) += src` (`BPF_STX | BPF_ATOMIC | BPF_DW`, imm `BPF_ADD`).
    pub const ATOMIC_ADD_DW: u8 = 0xdb;
    /// `if dst == imm goto +off` (64 bits).
    pub const JEQ64_K: u8 = 0x15;
    /// `if (u32)dst == imm goto +off`.
    pub const JEQ32_K: u8 = 0x16;
    /// `goto +off`.
    pub const JA: u8 = 0x05;
    /// `bpf_map_lookup_elem(map, key)`: the value's address or 0.
    pub const MAP_LOOKUP_ELEM: i32 = 1;
    /// `bpf_ktime_get_ns()`: `CLOCK_MONOTONIC` in nanoseconds.
    pub const KTIME_GET_NS: i32 = 5;
    /// `bpf_redirect(ifindex, flags)`: `TC_ACT_REDIRECT` (the device's egress; `BPF_F_INGRESS`
    /// in flags: its ingress).
    pub const REDIRECT: i32 = 23;
    /// `bpf_redirect_peer(ifindex, 0)`, tc ingress only: into the ingress of the peer of
    /// veth `ifindex` (in another namespace) in the same softirq pass, no backlog queue;
    /// `TC_ACT_REDIRECT`.
    pub const REDIRECT_PEER: i32 = 155;
    /// `TC_ACT_REDIRECT`, what a direct-action program returns after `bpf_redirect`.
    pub const TC_ACT_REDIRECT: u32 = 7;
    /// `TC_ACT_UNSPEC` (-1): no verdict, the next filter (or the stack) gets the frame.
    pub const TC_ACT_UNSPEC: i32 = -1;
}

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_F_NO_PREALLOC: u32 = 1;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;

fn sys_bpf(cmd: libc::c_long, attr: &mut [u8]) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a zero-initialised `union bpf_attr` prefix of `attr.len()` bytes that
    // outlives the call; every pointer in it points into live buffers of the caller.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            attr.len() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn put_u32(a: &mut [u8], at: usize, v: u32) {
    a[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(a: &mut [u8], at: usize, v: u64) {
    a[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

/// Loads `insns` as a `BPF_PROG_TYPE_SCHED_CLS` program named `name` (at most 15 bytes are
/// kept). A verifier refusal comes back with the verifier's log in the error.
pub fn load_sched_cls(insns: &[Insn], name: &str) -> io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    let attempt = |log: &mut Vec<u8>| -> io::Result<OwnedFd> {
        // `union bpf_attr` for BPF_PROG_LOAD up to `expected_attach_type` (72 bytes).
        let mut attr = [0u8; 72];
        put_u32(&mut attr, 0, BPF_PROG_TYPE_SCHED_CLS);
        put_u32(&mut attr, 4, insns.len() as u32);
        put_u64(&mut attr, 8, insns.as_ptr() as u64);
        put_u64(&mut attr, 16, license.as_ptr() as u64);
        if !log.is_empty() {
            put_u32(&mut attr, 24, 1);
            put_u32(&mut attr, 28, log.len() as u32);
            put_u64(&mut attr, 32, log.as_mut_ptr() as u64);
        }
        let n = name.as_bytes();
        let n = &n[..n.len().min(15)];
        attr[48..48 + n.len()].copy_from_slice(n);
        let fd = sys_bpf(BPF_PROG_LOAD, &mut attr)?;
        // SAFETY: the kernel returned a new file descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    };
    match attempt(&mut Vec::new()) {
        Ok(fd) => Ok(fd),
        Err(e)
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            // Once more with the verifier's log, for the error.
            let mut log = vec![0u8; 64 * 1024];
            match attempt(&mut log) {
                Ok(fd) => Ok(fd),
                Err(e2) => {
                    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                    let text = String::from_utf8_lossy(&log[..end]);
                    let tail: String = text
                        .lines()
                        .rev()
                        .take(12)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join(" | ");
                    Err(io::Error::new(e2.kind(), format!("{e2}: verifier: {tail}")))
                }
            }
        }
        Err(e) => Err(e),
    }
}

/// A `BPF_MAP_TYPE_HASH` map with fixed key and value sizes, allocated as it fills
/// (`BPF_F_NO_PREALLOC`): programs look keys up in it, the agent writes, reads and deletes.
#[derive(Debug)]
pub struct BpfHash {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

impl BpfHash {
    /// `bpf(BPF_MAP_CREATE)`: a hash map named `name` (at most 15 bytes kept) of at most
    /// `max_entries` entries.
    pub fn create(
        name: &str,
        key_size: usize,
        value_size: usize,
        max_entries: u32,
    ) -> io::Result<BpfHash> {
        let mut attr = [0u8; 72];
        put_u32(&mut attr, 0, BPF_MAP_TYPE_HASH);
        put_u32(&mut attr, 4, key_size as u32);
        put_u32(&mut attr, 8, value_size as u32);
        put_u32(&mut attr, 12, max_entries);
        put_u32(&mut attr, 16, BPF_F_NO_PREALLOC);
        let n = name.as_bytes();
        let n = &n[..n.len().min(15)];
        attr[28..28 + n.len()].copy_from_slice(n);
        let fd = sys_bpf(BPF_MAP_CREATE, &mut attr)?;
        Ok(BpfHash {
            // SAFETY: the kernel returned a new file descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
            key_size,
            value_size,
        })
    }

    /// The map's file descriptor, for a program's `LD_IMM64` with [`op::PSEUDO_MAP_FD`].
    pub fn raw_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    fn elem(
        &self,
        cmd: libc::c_long,
        key: &[u8],
        value: Option<&mut [u8]>,
        flags: u64,
    ) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        if key.len() != self.key_size || value.as_ref().is_some_and(|v| v.len() != self.value_size)
        {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut attr = [0u8; 32];
        put_u32(&mut attr, 0, self.fd.as_raw_fd() as u32);
        put_u64(&mut attr, 8, key.as_ptr() as u64);
        if let Some(v) = value {
            put_u64(&mut attr, 16, v.as_mut_ptr() as u64);
        }
        put_u64(&mut attr, 24, flags);
        sys_bpf(cmd, &mut attr).map(|_| ())
    }

    /// `BPF_MAP_UPDATE_ELEM` with `BPF_ANY`: the entry for `key` is `value` now.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let mut v = value.to_vec();
        self.elem(BPF_MAP_UPDATE_ELEM, key, Some(&mut v), 0)
    }

    /// `BPF_MAP_LOOKUP_ELEM`: the value of `key`, or none.
    pub fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let mut v = vec![0u8; self.value_size];
        match self.elem(BPF_MAP_LOOKUP_ELEM, key, Some(&mut v), 0) {
            Ok(()) => Ok(Some(v)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every entry, as `f(key, value)`, read with `BPF_MAP_LOOKUP_BATCH` (a call per
    /// [`BATCH`] entries instead of one per key). Entries added or removed meanwhile may be
    /// seen or not.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[u8])) -> io::Result<()> {
        let mut at = None;
        loop {
            match self.read_batch(at, &mut f)? {
                Some(next) => at = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// One `BPF_MAP_LOOKUP_BATCH` call: up to [`BATCH`] entries from position `at` (`None`:
    /// the map's start), each as `f(key, value)`; returns where the next call goes on, `None`
    /// once the map's end was reached. Lets a caller read a big map a slice at a time, with
    /// other work between the slices.
    pub fn read_batch(
        &self,
        at: Option<BatchPosition>,
        mut f: impl FnMut(&[u8], &[u8]),
    ) -> io::Result<Option<BatchPosition>> {
        use std::os::fd::AsRawFd;
        let (ks, vs) = (self.key_size, self.value_size);
        let mut keys = vec![0u8; BATCH * ks];
        let mut values = vec![0u8; BATCH * vs];
        let mut next = BatchPosition([0u8; 8]);
        let mut attr = [0u8; 56];
        if let Some(at) = &at {
            put_u64(&mut attr, 0, at.0.as_ptr() as u64);
        }
        put_u64(&mut attr, 8, next.0.as_mut_ptr() as u64);
        put_u64(&mut attr, 16, keys.as_mut_ptr() as u64);
        put_u64(&mut attr, 24, values.as_mut_ptr() as u64);
        put_u32(&mut attr, 32, BATCH as u32);
        put_u32(&mut attr, 36, self.fd.as_raw_fd() as u32);
        let r = sys_bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let n = u32::from_ne_bytes([attr[32], attr[33], attr[34], attr[35]]) as usize;
        let end = match r {
            Ok(_) => false,
            // The end of the map (the entries read on the way are still good).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Err(e) => return Err(e),
        };
        for i in 0..n.min(BATCH) {
            f(&keys[i * ks..(i + 1) * ks], &values[i * vs..(i + 1) * vs]);
        }
        Ok((!end).then_some(next))
    }

    /// `BPF_MAP_DELETE_ELEM`: whether `key` was there. Once it returns, no program run that
    /// starts later finds the entry.
    pub fn remove(&self, key: &[u8]) -> io::Result<bool> {
        match self.elem(BPF_MAP_DELETE_ELEM, key, None, 0) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// How many entries one [`BpfHash::read_batch`] call reads at most.
pub const BATCH: usize = 512;

/// Where a [`BpfHash::read_batch`] walk goes on: the hash map's batch position (a bucket
/// number, u32, with room for more), opaque to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPosition([u8; 8]);

/// The two instructions of `dst = map` (`LD_IMM64` with [`op::PSEUDO_MAP_FD`]).
pub fn ld_map_fd(dst: u8, map: &BpfHash) -> [Insn; 2] {
    [
        Insn::new(op::LD_IMM64, dst, op::PSEUDO_MAP_FD, 0, map.raw_fd()),
        Insn::new(0, 0, 0, 0, 0),
    ]
}

/// Runs program `fd` once on `frame` (an Ethernet frame, as at a tc hook) with
/// `BPF_PROG_TEST_RUN`: its return value and the frame as it left it.
pub fn test_run(fd: &OwnedFd, frame: &[u8]) -> io::Result<(u32, Vec<u8>)> {
    test_run_gso(fd, frame, 0, 0)
}

/// [`test_run`] with the packet's `gso_size` and `gso_segs` set (through the test run's
/// `__sk_buff`; its `gso_type` stays 0), as a GSO packet's at a tc hook.
pub fn test_run_gso(
    fd: &OwnedFd,
    frame: &[u8],
    gso_size: u32,
    gso_segs: u32,
) -> io::Result<(u32, Vec<u8>)> {
    use std::os::fd::AsRawFd;
    let mut out = vec![0u8; frame.len() + 256];
    // `struct __sk_buff` (192 bytes): gso_segs at 164, gso_size at 176.
    let mut ctx = [0u8; 192];
    put_u32(&mut ctx, 164, gso_segs);
    put_u32(&mut ctx, 176, gso_size);
    // `union bpf_attr` for BPF_PROG_TEST_RUN up to `ctx_out` (64 bytes).
    let mut attr = [0u8; 64];
    if gso_size != 0 || gso_segs != 0 {
        put_u32(&mut attr, 40, ctx.len() as u32);
        put_u64(&mut attr, 48, ctx.as_ptr() as u64);
    }
    put_u32(&mut attr, 0, fd.as_raw_fd() as u32);
    put_u32(&mut attr, 8, frame.len() as u32);
    put_u32(&mut attr, 12, out.len() as u32);
    put_u64(&mut attr, 16, frame.as_ptr() as u64);
    put_u64(&mut attr, 24, out.as_mut_ptr() as u64);
    put_u32(&mut attr, 32, 1);
    sys_bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    let retval = u32::from_ne_bytes(attr[4..8].try_into().expect("4 bytes"));
    let size = u32::from_ne_bytes(attr[12..16].try_into().expect("4 bytes")) as usize;
    out.truncate(size.min(out.len()));
    Ok((retval, out))
}
