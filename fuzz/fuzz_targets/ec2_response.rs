//! Fuzzes the model-driven EC2 answer reader that softvpc's own client uses
//! (`softvpc_ec2_protocol::parse_response` and `parse_error`). Input: one byte choosing the
//! operation, then the answer document (lossy UTF-8). Whatever reads as an answer fits the
//! operation's output shape: it encodes strictly and reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use softvpc_ec2_protocol::{model, parse_error, parse_response, try_encode};

fuzz_target!(|data: &[u8]| {
    let Some((first, doc)) = data.split_first() else {
        return;
    };
    let names = model().operation_names();
    let op = names[usize::from(*first) % names.len()];
    let doc = String::from_utf8_lossy(doc);
    if let Ok(r) = parse_response(op, &doc) {
        let xml = try_encode(op, &r.output, "fuzz").expect("a parsed answer fits its shape");
        assert!(parse_response(op, &xml).is_ok(), "{xml}");
    }
    let _ = parse_error(&doc);
});
