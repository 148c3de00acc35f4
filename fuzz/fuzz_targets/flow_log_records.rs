//! Fuzzes the server's check of the flow log record lines agents send (`PutFlowLogRecords`):
//! `softvpc_server::fuzzing::flow_log_records` (only the calling host's ENIs, only flow logs
//! covering them, exactly the printable one-line records reach the file).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| softvpc_server::fuzzing::flow_log_records(data));
