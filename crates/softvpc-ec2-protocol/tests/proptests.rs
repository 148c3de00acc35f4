//! Property tests: arbitrary parameter lists never panic the decoder (and every refusal is one
//! of the protocol codes), `decode(serialize_request(tree)) == tree` for generated trees of
//! every operation's input shape, through the form encoding too, and
//! `parse_response(encode(tree)) == tree` for every output shape; arbitrary answers never panic
//! the response parser.

mod common;

use common::{gen_tree, Rng};
use proptest::prelude::*;
use softvpc_ec2_protocol::{
    decode, decode_request, form_encode, model, parse_error, parse_form, parse_response,
    serialize_request, try_encode,
};

/// Names built from real wire-name pieces, indices (good and bad) and junk, so the walk gets
/// deep before failing.
fn key_strategy() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just("Filter".to_string()),
        Just("Value".to_string()),
        Just("Name".to_string()),
        Just("IpPermissions".to_string()),
        Just("Groups".to_string()),
        Just("GroupId".to_string()),
        Just("TagSpecification".to_string()),
        Just("Tag".to_string()),
        Just("Key".to_string()),
        Just("Placement".to_string()),
        Just("NetworkInterface".to_string()),
        Just("PrivateIpAddresses".to_string()),
        Just("DryRun".to_string()),
        Just("MaxResults".to_string()),
        Just("X-Amz-Date".to_string()),
        (0u32..5).prop_map(|n| n.to_string()),
        "[0-9]{1,12}",
        "[A-Za-z.]{0,6}",
        ".{0,4}",
    ];
    proptest::collection::vec(seg, 1..7).prop_map(|s| s.join("."))
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("true".to_string()),
        Just("false".to_string()),
        Just("5".to_string()),
        Just("-1".to_string()),
        Just("2026-11-22T00:00:00Z".to_string()),
        Just("t3.micro".to_string()),
        ".{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_params_never_panic(
        op_index in 0usize..200,
        params in proptest::collection::vec((key_strategy(), value_strategy()), 0..24),
    ) {
        let names = model().operation_names();
        let op = names.get(op_index).copied().unwrap_or("NotAnOperation");
        match decode(op, &params) {
            Ok(tree) => prop_assert!(tree.as_struct().is_some()),
            Err(e) => prop_assert!(matches!(
                e.code(),
                "InvalidAction" | "UnknownParameter" | "InvalidParameterValue" | "MissingParameter"
            )),
        }
    }

    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(pairs) = parse_form(&body) {
            let _ = decode_request(&pairs);
        }
    }

    #[test]
    fn decode_inverts_serialize(op_index in 0usize..1000, seed in any::<u64>()) {
        let m = model();
        let names = m.operation_names();
        let op = names[op_index % names.len()];
        let input = m.operation(op).and_then(|o| o.input).expect("every operation has input");
        let mut rng = Rng::new(seed);
        let tree = gen_tree(m, input, &mut rng, 0).expect("top level always generated");
        let wire = serialize_request(op, &tree).expect("a generated tree fits its shape");
        prop_assert_eq!(&wire[..2], &[
            ("Action".to_string(), op.to_string()),
            ("Version".to_string(), "2016-11-15".to_string()),
        ]);
        prop_assert_eq!(&decode(op, &wire[2..]).expect("decodes"), &tree);
        // The same through the form encoding.
        let body = form_encode(&wire);
        let (action, decoded) = decode_request(&parse_form(body.as_bytes()).expect("form")).expect("decodes");
        prop_assert_eq!(action.as_str(), op);
        prop_assert_eq!(decoded, tree);
    }

    #[test]
    fn every_generated_output_encodes_strictly(op_index in 0usize..1000, seed in any::<u64>()) {
        let m = model();
        let names = m.operation_names();
        let op = names[op_index % names.len()];
        if let Some(out) = m.operation(op).and_then(|o| o.output) {
            let tree = gen_tree(m, out, &mut Rng::new(seed), 0).expect("top level");
            let xml = try_encode(op, &tree, "r").expect("fits its own shape");
            let root = format!("<{op}Response xmlns=\"{}\">", m.xml_namespace);
            prop_assert!(xml.contains(&root));
        }
    }

    #[test]
    fn parse_inverts_encode(op_index in 0usize..1000, seed in any::<u64>()) {
        let m = model();
        let names = m.operation_names();
        let op = names[op_index % names.len()];
        let tree = match m.operation(op).and_then(|o| o.output) {
            Some(out) => gen_tree(m, out, &mut Rng::new(seed), 0).expect("top level"),
            None => softvpc_ec2_protocol::Value::new_struct(),
        };
        let xml = try_encode(op, &tree, "req-7").expect("fits its own shape");
        let back = parse_response(op, &xml).expect("parses");
        prop_assert_eq!(back.request_id.as_deref(), Some("req-7"));
        prop_assert_eq!(back.output, tree);
    }

    #[test]
    fn arbitrary_answers_never_panic(
        op_index in 0usize..200,
        doc in prop_oneof![
            ".{0,64}",
            proptest::collection::vec(
                prop_oneof![
                    Just("<DescribeVpcsResponse>".to_string()),
                    Just("</DescribeVpcsResponse>".to_string()),
                    Just("<vpcSet>".to_string()),
                    Just("</vpcSet>".to_string()),
                    Just("<item>".to_string()),
                    Just("</item>".to_string()),
                    Just("<isDefault>".to_string()),
                    Just("</isDefault>".to_string()),
                    Just("<tagSet/>".to_string()),
                    Just("<Response><Errors><Error><Code>".to_string()),
                    Just("</Code></Error></Errors></Response>".to_string()),
                    "[a-z&;<>/ ]{0,6}",
                ],
                0..16,
            ).prop_map(|v| v.concat()),
        ],
    ) {
        let names = model().operation_names();
        let op = names.get(op_index).copied().unwrap_or("DescribeVpcs");
        for op in [op, "DescribeVpcs"] {
            if let Ok(r) = parse_response(op, &doc) {
                // Whatever parses fits the output shape.
                prop_assert!(try_encode(op, &r.output, "r").is_ok());
            }
        }
        let _ = parse_error(&doc);
    }
}
