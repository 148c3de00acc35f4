//! Fuzzes what a TAP with `IFF_VNET_HDR` hands over: a `virtio_net_hdr` and its frame (the
//! view and Repr round trip, GSO types and sizes, hdr_len and the partial checksum checked
//! against the frame, the checksum finished in place). The body is
//! `softvpc_wire::fuzzing::virtio_net`, shared with the wire crate's proptests and its
//! regression test that replays `crates/softvpc-wire/tests/regressions/wire_virtio_net/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| softvpc_wire::fuzzing::virtio_net(data));
