//! Requests serialized by botocore's own `EC2Serializer` (fixtures written by
//! `tests/gen_fixtures.py`) decode into exactly the parameters botocore was given.

use softvpc_ec2_protocol::{decode_request, model, parse_form};

const FIXTURES: &str = include_str!("fixtures/requests.json");

#[test]
fn every_botocore_request_decodes_to_its_input() {
    let doc: serde_json::Value = serde_json::from_str(FIXTURES).expect("fixtures parse");
    let fixtures = doc["fixtures"].as_array().expect("fixtures array");
    let mut ops = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for (i, f) in fixtures.iter().enumerate() {
        let op = f["operation"].as_str().expect("operation");
        let body = f["body"].as_str().expect("body");
        let pairs = parse_form(body.as_bytes()).expect("botocore bodies are well-formed");
        match decode_request(&pairs) {
            Ok((action, tree)) => {
                assert_eq!(action, op);
                if tree.to_json() != f["input"] {
                    failures.push(format!(
                        "#{i} {op}: body {body}\n  decoded {}\n  expected {}",
                        tree.to_json(),
                        f["input"]
                    ));
                }
            }
            Err(e) => failures.push(format!("#{i} {op}: body {body}\n  refused: {e}")),
        }
        ops.insert(op.to_string());
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures differ:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n")
    );
    // The fixtures cover every operation of the committed model (and at least the 40 of the
    // hand-written set).
    assert!(ops.len() >= 40, "only {} operations covered", ops.len());
    for name in model().operation_names() {
        assert!(ops.contains(name), "no fixture for {name}");
    }
}

#[test]
fn fixtures_were_made_by_the_botocore_the_model_came_from() {
    let doc: serde_json::Value = serde_json::from_str(FIXTURES).expect("fixtures parse");
    assert_eq!(
        doc["botocoreVersion"].as_str(),
        Some(model().botocore_version.as_str()),
        "regenerate the fixtures (tests/gen_fixtures.py) after regenerating the model"
    );
}
