//! Property tests next to the two flow log fuzz targets: `flow_log_format` (the API's
//! `LogFormat` check and the agent's parse agree) and `flow_log_records` (the server's check of
//! the record lines agents send, through the same body the fuzzer runs).

use proptest::prelude::*;
use softvpc_mapping::flowlog::{format_string, parse_format};
use softvpc_model::flow_log::{check_format, FIELDS};

/// One token of a format: a known field, an unknown one, or broken `${...}` syntax.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(FIELDS).prop_map(|f| format!("${{{f}}}")),
        1 => "[a-z-]{0,12}".prop_map(|f| format!("${{{f}}}")),
        1 => proptest::sample::select(FIELDS).prop_map(|f| format!("${f}")),
        1 => proptest::sample::select(FIELDS).prop_map(|f| format!("{{{f}}}")),
        1 => proptest::sample::select(vec!["${", "}", "$", "${}", "${${version}}", "\u{e9}"])
            .prop_map(str::to_string),
    ]
}

/// Mostly single spaces between tokens, sometimes none, two, a tab or a newline.
fn separator() -> impl Strategy<Value = &'static str> {
    prop_oneof![8 => Just(" "), 1 => Just(""), 1 => Just("  "), 1 => Just("\t"), 1 => Just("\n")]
}

proptest! {
    /// The API accepts exactly the formats the agent can write records with, and a parsed
    /// format prints back to itself.
    #[test]
    fn api_and_agent_agree_on_log_formats(
        parts in proptest::collection::vec((token(), separator()), 1..20),
        lead in separator(),
    ) {
        let mut text = lead.to_string();
        for (i, (t, sep)) in parts.iter().enumerate() {
            text.push_str(t);
            if i + 1 < parts.len() {
                text.push_str(sep);
            }
        }
        let parsed = parse_format(&text);
        prop_assert_eq!(check_format(&text).is_ok(), parsed.is_some(), "{:?}", text);
        if let Some(fields) = parsed {
            prop_assert_eq!(format_string(&fields), text);
        }
    }

    /// Batches of record lines (well-formed ones, and lines with CR, LF, DEL, non-ASCII or too
    /// long) for the right host or a wrong host, flow log or ENI: exactly the valid lines of an
    /// allowed batch reach the file (the body asserts it).
    #[test]
    fn flow_log_record_batches(
        pick in any::<u8>(),
        lines in proptest::collection::vec(prop_oneof![
            3 => Just("2 123456789012 eni-1 10.0.0.1 10.0.0.2 0 0 1 5 420 1 2 ACCEPT OK".to_string()),
            2 => "[ -~]{0,80}",
            1 => "[ -~\r\n\u{7f}\u{e9}]{0,80}",
            1 => "[a-z]{4090,4100}",
        ], 0..8),
    ) {
        let mut data = vec![pick];
        data.extend_from_slice(lines.join("\0").as_bytes());
        softvpc_server::fuzzing::flow_log_records(&data);
    }
}
