//! Fuzzes the engine's ingress path (VXLAN from the underlay): see `softvpc_fuzz::underlay`
//! for the input format and the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    softvpc_fuzz::underlay(data);
});
