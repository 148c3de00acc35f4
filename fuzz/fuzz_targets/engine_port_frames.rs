//! Fuzzes the engine's egress path: see `softvpc_fuzz::port_frames` for the input format and
//! the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    softvpc_fuzz::port_frames(data);
});
