//! Fuzzes the engine's egress path: a batch of arbitrary frames from one local port of host-1
//! (fixed topology in `softvpc_fuzz`), then checks the output invariants and VPC isolation.
//!
//! Input: byte 0 picks the port (vm1, other1, or an unknown port); byte 1 holds fix-ups that
//! help the fuzzer past the checks it cannot guess (bit 0: source MAC := the ENI's, bit 1:
//! IPv4 source := the ENI's, bit 2: destination MAC := the VPC router's, bit 3: recompute the
//! IPv4 header checksum); the rest is frames, each behind a big-endian u16 length.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use softvpc_engine::{router_mac, Output};
use softvpc_fuzz::{check_isolation, check_output, fix_ipv4_checksum, split_frames};

fuzz_target!(|data: &[u8]| {
    let [selector, fixups, rest @ ..] = data else {
        return;
    };
    let locals: Vec<_> = softvpc_fuzz::local_enis().collect();
    let eni = locals
        .get(usize::from(*selector) % (locals.len() + 1))
        .copied();
    let port = eni
        .and_then(|e| e.port)
        .unwrap_or(softvpc_fuzz::PORT_UNKNOWN);

    let frames: Vec<Vec<u8>> = split_frames(rest, 64)
        .into_iter()
        .map(|f| {
            let mut f = f.to_vec();
            if let Some(e) = eni {
                if fixups & 1 != 0 && f.len() >= 12 {
                    f[6..12].copy_from_slice(&e.mac);
                }
                if fixups & 2 != 0 && f.len() >= 30 {
                    f[26..30].copy_from_slice(&e.ip.octets());
                }
                if fixups & 4 != 0 && f.len() >= 6 {
                    f[0..6].copy_from_slice(&router_mac(e.vni));
                }
            }
            if fixups & 8 != 0 {
                fix_ipv4_checksum(&mut f);
            }
            f
        })
        .collect();

    let mut engine = softvpc_fuzz::engine();
    let mut out = Output::default();
    engine.handle_port_frames(
        Instant::now(),
        port,
        frames.iter().map(|f| &f[..]),
        &mut out,
    );
    check_output(frames.len(), &out);
    match eni {
        Some(e) => check_isolation(e.vni, &out),
        None => assert!(out.is_empty(), "frames from an unknown port were forwarded"),
    }
    // A batch is only a sequence: one frame at a time gives the same outputs.
    let mut engine = softvpc_fuzz::engine();
    let mut single = Output::default();
    for f in &frames {
        engine.handle_port_frames(Instant::now(), port, [&f[..]], &mut single);
    }
    assert_eq!(single.to_ports, out.to_ports, "batch and one-by-one differ");
    assert_eq!(
        single.to_underlay, out.to_underlay,
        "batch and one-by-one differ"
    );
});
