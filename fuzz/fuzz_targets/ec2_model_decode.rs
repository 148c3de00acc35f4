//! Fuzzes the model-driven EC2 Query decoder (`softvpc-ec2-protocol`): form parsing, decoding
//! against an operation's input shape, and encoding whatever decoded (a tree that does not fit
//! the output shape must be skipped by the lenient encoder and refused by the strict one, never
//! a panic). Input: one byte choosing the operation (high bit set: take it from the body's
//! `Action`), then a form-encoded body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use softvpc_ec2_protocol::{decode, decode_request, encode, model, parse_form, try_encode};

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else {
        return;
    };
    let Ok(pairs) = parse_form(body) else {
        return;
    };
    let names = model().operation_names();
    let result = if first & 0x80 != 0 {
        decode_request(&pairs)
    } else {
        let op = names[usize::from(*first) % names.len()];
        decode(op, &pairs).map(|tree| (op.to_string(), tree))
    };
    match result {
        Ok((op, tree)) => {
            assert!(
                tree.as_struct().is_some(),
                "a request decodes to a structure"
            );
            let xml = encode(&op, &tree, "fuzz");
            assert!(xml.starts_with("<?xml"));
            let _ = try_encode(&op, &tree, "fuzz");
        }
        Err(e) => {
            assert!(e.to_xml("fuzz").contains(e.code()));
        }
    }
});
