//! Fuzzes the two `LogFormat` parsers: the API's check (`softvpc_model::flow_log::check_format`,
//! what CreateFlowLogs accepts) and the mapping's parse (`softvpc_mapping::flowlog::parse_format`,
//! what the agent formats records with). No panic on any text; what one accepts the other
//! accepts (the API never takes a format the agent cannot write); a parsed format prints back to
//! itself, and its version is the highest of its fields'.
#![no_main]

use libfuzzer_sys::fuzz_target;
use softvpc_mapping::flowlog::{format_string, parse_format};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let api = softvpc_model::flow_log::check_format(text).is_ok();
    let parsed = parse_format(text);
    assert_eq!(api, parsed.is_some(), "the API and the agent disagree on {text:?}");
    if let Some(fields) = parsed {
        assert_eq!(format_string(&fields), text);
        assert!(!fields.is_empty());
    }
});
