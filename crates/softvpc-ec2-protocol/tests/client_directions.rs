//! The client's directions against botocore: every request body botocore's own `EC2Serializer`
//! wrote (`tests/fixtures/requests.json`) has the same parameters as what `serialize_request`
//! writes for the same input. (botocore orders members as the caller's dict; ours are in model
//! order. Timestamps: botocore writes microseconds, we write milliseconds; same instant.)

use softvpc_ec2_protocol::{decode_request, parse_form, serialize_request, Timestamp};

const FIXTURES: &str = include_str!("fixtures/requests.json");

fn same_value(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (Timestamp::parse_iso8601(a), Timestamp::parse_iso8601(b)),
            (Some(x), Some(y)) if x == y
        )
}

#[test]
fn serialize_request_writes_what_botocore_writes() {
    let doc: serde_json::Value = serde_json::from_str(FIXTURES).expect("fixtures parse");
    let fixtures = doc["fixtures"].as_array().expect("fixtures array");
    let mut failures = Vec::new();
    for (i, f) in fixtures.iter().enumerate() {
        let op = f["operation"].as_str().expect("operation");
        let body = f["body"].as_str().expect("body");
        let mut botocore = parse_form(body.as_bytes()).expect("botocore bodies are well-formed");
        let (_, tree) = decode_request(&botocore).expect("botocore bodies decode");
        let mut ours = serialize_request(op, &tree).expect("a decoded tree fits its shape");
        assert_eq!(ours[..2], botocore[..2], "#{i}: Action and Version first");
        botocore.sort();
        ours.sort();
        let same = ours.len() == botocore.len()
            && ours
                .iter()
                .zip(&botocore)
                .all(|((k1, v1), (k2, v2))| k1 == k2 && same_value(v1, v2));
        if !same {
            failures.push(format!(
                "#{i} {op}:\n  botocore {botocore:?}\n  ours     {ours:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bodies differ:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n")
    );
    assert!(fixtures.len() > 80);
}
