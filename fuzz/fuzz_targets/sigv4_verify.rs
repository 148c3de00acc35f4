//! Fuzzes SigV4 verification: arbitrary bytes cut into method, path, query, header lines and
//! body, optionally self-signed so the deep paths are reached. The body is
//! `softvpc_sigv4::fuzzing::verify_input`, shared with the crate's regression test that replays
//! `crates/softvpc-sigv4/tests/regressions/sigv4_verify/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| softvpc_sigv4::fuzzing::verify_input(data));
