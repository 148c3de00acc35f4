//! Fuzzes the flow-key extraction the flow table, connection tracking and the policy layers key
//! on (`softvpc_engine::flow::check_flow_key`): one parse of any bytes, the flow-table key, the
//! policy packet and the conntrack key of both directions agree, fragments carry no ports, ICMP
//! error quotes parse or are refused, nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| softvpc_engine::flow::check_flow_key(data));
