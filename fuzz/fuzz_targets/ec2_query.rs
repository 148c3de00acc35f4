//! Fuzzes the EC2 Query decoder and the full action dispatch against a memory-only control
//! plane (one request per input line; a refused request must change nothing). The body is
//! `softvpc_server::fuzzing::ec2_query`, shared with the server crate's regression test that
//! replays `crates/softvpc-server/tests/regressions/ec2_query/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| softvpc_server::fuzzing::ec2_query(data));
