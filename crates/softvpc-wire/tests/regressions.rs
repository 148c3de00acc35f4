//! Replays saved fuzz inputs (OPTE-style): every file under `tests/regressions/<target>/` is fed
//! to the body of the fuzz target of that name (`softvpc_wire::fuzzing`), which panics if a
//! parser panics or an invariant breaks. When `cargo fuzz` finds a crash in a wire target, copy
//! the file from `fuzz/artifacts/<target>/` here, fix the bug, and this test keeps it fixed.

use std::fs;
use std::path::Path;

use softvpc_wire::fuzzing;

/// Runs `check` on every file in `tests/regressions/<target>/`; returns how many there were.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/regressions")
        .join(target);
    let mut n = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path
            .file_name()
            .is_some_and(|n| n == ".gitkeep" || n == "README.md")
        {
            continue;
        }
        let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Name the input in the failure message, since the panic itself comes from `check`.
        eprintln!("replaying {}", path.display());
        check(&data);
        n += 1;
    }
    n
}

#[test]
fn wire_vxlan() {
    let n = replay("wire_vxlan", fuzzing::vxlan);
    assert!(
        n > 0,
        "no inputs found: the directory should hold at least the seeds"
    );
}

#[test]
fn wire_virtio_net() {
    let n = replay("wire_virtio_net", fuzzing::virtio_net);
    assert!(
        n > 0,
        "no inputs found: the directory should hold at least the seeds"
    );
}

#[test]
fn wire_frame() {
    let n = replay("wire_frame", fuzzing::frame);
    assert!(
        n > 0,
        "no inputs found: the directory should hold at least the seeds"
    );
}

/// The `seed-*` frames were built by hand (outside this crate) as valid packets: each must
/// dissect without error, checksums verified, so they really do lead the fuzzer to every layer.
#[test]
fn frame_seeds_are_valid_packets() {
    use softvpc_wire::{dissect, ChecksumCapabilities};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions/wire_frame");
    let mut layers_seen = 0;
    for entry in fs::read_dir(&dir).expect("regressions dir") {
        let path = entry.expect("directory entry").path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("seed-")
        {
            continue;
        }
        let data = fs::read(&path).expect("readable seed");
        let d = dissect(&data, &ChecksumCapabilities::default());
        assert_eq!(d.error, None, "{}: {d}", path.display());
        layers_seen |= u8::from(d.arp.is_some())
            | u8::from(d.icmpv4.is_some()) << 1
            | u8::from(d.tcp.is_some()) << 2
            | u8::from(d.udp.is_some()) << 3
            | u8::from(d.vxlan.is_some()) << 4;
        if let Some(inner) = d.vxlan_inner {
            let inner = dissect(inner, &ChecksumCapabilities::default());
            assert_eq!(inner.error, None, "{} inner: {inner}", path.display());
        }
    }
    assert_eq!(
        layers_seen, 0b1_1111,
        "seeds should cover ARP, ICMP, TCP, UDP and VXLAN"
    );
}
