//! Fuzzes the engine's ingress path: a batch of arbitrary UDP payloads arriving on host-1's
//! VXLAN port (fixed topology in `softvpc_fuzz`), then checks the output invariants and that a
//! frame is only delivered to an ENI of the VPC its VNI names.
//!
//! Input: byte 0 picks the outer source (host-2, host-1 itself, or an unregistered address);
//! byte 1 holds fix-ups that help the fuzzer past the checks it cannot guess (bit 0: prepend a
//! valid VXLAN header with the VNI byte 2 picks: VPC 1, VPC 2 or unknown; bit 1: inner
//! destination MAC := a local ENI's (byte 2 picks which); bit 2: inner IPv4 destination := that
//! ENI's; bit 3: recompute the inner IPv4 header checksum); the rest is datagrams, each behind
//! a big-endian u16 length.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use softvpc_engine::Output;
use softvpc_fuzz::{
    check_isolation, check_output, fix_ipv4_checksum, split_frames, HOST1, HOST2, STRANGER, VNI1,
    VNI2, VNI_UNKNOWN,
};
use softvpc_wire::{VxlanPacket, VxlanRepr, VXLAN_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let [src_sel, fixups, target_sel, rest @ ..] = data else {
        return;
    };
    let src = [HOST2, HOST1, STRANGER][usize::from(*src_sel) % 3];
    let prepend_vni = [VNI1, VNI2, VNI_UNKNOWN][usize::from(*target_sel) % 3];
    let locals: Vec<_> = softvpc_fuzz::local_enis().collect();
    let target = locals[usize::from(*target_sel) % locals.len()];

    let datagrams: Vec<Vec<u8>> = split_frames(rest, 64)
        .into_iter()
        .map(|d| {
            let mut v = Vec::with_capacity(VXLAN_HEADER_LEN + d.len());
            if fixups & 1 != 0 {
                v.resize(VXLAN_HEADER_LEN, 0);
                VxlanRepr { vni: prepend_vni.0 }.emit(&mut VxlanPacket::new_unchecked(&mut v[..]));
            }
            v.extend_from_slice(d);
            // Offsets of the inner frame, whether or not a header was prepended.
            let at = VXLAN_HEADER_LEN.min(v.len());
            let inner = &mut v[at..];
            if fixups & 2 != 0 && inner.len() >= 6 {
                inner[0..6].copy_from_slice(&target.mac);
            }
            if fixups & 4 != 0 && inner.len() >= 34 {
                inner[30..34].copy_from_slice(&target.ip.octets());
            }
            if fixups & 8 != 0 {
                fix_ipv4_checksum(inner);
            }
            v
        })
        .collect();

    let mut engine = softvpc_fuzz::engine();
    let mut out = Output::default();
    engine.handle_underlay_datagrams(
        Instant::now(),
        datagrams.iter().map(|d| (src, &d[..])),
        &mut out,
    );
    check_output(datagrams.len(), &out);
    assert!(
        out.to_underlay.is_empty(),
        "decapsulated traffic was sent back out"
    );
    if src == STRANGER {
        assert!(out.is_empty(), "accepted VXLAN from an unregistered host");
    }
    // One at a time on a fresh engine: the same outputs as the batch (a batch is only a
    // sequence), and each output can be traced to its datagram to check isolation: a frame is
    // delivered only to an ENI of the VPC its VNI names.
    let mut engine = softvpc_fuzz::engine();
    let mut to_ports = Vec::new();
    for d in &datagrams {
        let mut single = Output::default();
        engine.handle_underlay_datagrams(Instant::now(), [(src, &d[..])], &mut single);
        if !single.is_empty() {
            let vx = VxlanPacket::new_checked(&d[..]).expect("only VXLAN is delivered");
            check_isolation(softvpc_engine::Vni(vx.vni()), &single);
        }
        to_ports.append(&mut single.to_ports);
    }
    assert_eq!(to_ports, out.to_ports, "batch and one-by-one differ");
});
