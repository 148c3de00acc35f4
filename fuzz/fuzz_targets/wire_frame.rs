//! Fuzzes a whole frame through Ethernet, ARP, IPv4, UDP, VXLAN (nested), TCP, ICMPv4, and the
//! flow hash. The body is `softvpc_wire::fuzzing::frame`, shared with the wire crate's regression
//! test that replays `crates/softvpc-wire/tests/regressions/wire_frame/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| softvpc_wire::fuzzing::frame(data));
