//! Fuzzes the virtio_net_hdr view and Repr (round trip, checksum bounds). The body is `softvpc_wire::fuzzing::virtio_net`, shared with the wire crate's
//! regression test that replays `crates/softvpc-wire/tests/regressions/wire_virtio_net/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| softvpc_wire::fuzzing::virtio_net(data));
