//! Fuzzes the VXLAN header view and Repr (round trip, truncated vs bad flags). The body is `softvpc_wire::fuzzing::vxlan`, shared with the wire crate's
//! regression test that replays `crates/softvpc-wire/tests/regressions/wire_vxlan/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| softvpc_wire::fuzzing::vxlan(data));
