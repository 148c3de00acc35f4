//! The pure half of the client: a request body from an action and its input tree, and the
//! output tree (or [`ApiError`]) from an answer's status and body. No I/O, no signing; callers
//! that run the server's dispatcher in process (the server's tests) use these directly.

use softvpc_ec2_protocol::{form_encode, parse_error, parse_response, serialize_request, Value};

use crate::error::{ApiError, Error};

/// The form body (`Action=..&Version=2016-11-15&..`) of `action` with `input`, serialized by the
/// model; refused when the tree does not fit the action's input shape.
pub fn request_body(action: &str, input: &Value) -> Result<String, Error> {
    let pairs = serialize_request(action, input).map_err(|source| Error::Request {
        action: action.to_string(),
        source,
    })?;
    Ok(form_encode(&pairs))
}

/// The form body of `action` with parameters given by wire name, as they are, after `Action`
/// and `Version`: for requests the model would refuse to build (tests of the server's
/// refusals).
pub fn raw_body(action: &str, params: &[(String, String)]) -> String {
    let mut pairs = vec![
        ("Action".to_string(), action.to_string()),
        (
            "Version".to_string(),
            softvpc_ec2_protocol::API_VERSION.to_string(),
        ),
    ];
    pairs.extend_from_slice(params);
    form_encode(&pairs)
}

/// The output tree of a 200 answer to `action`; any other status is the [`ApiError`] its error
/// document describes (code `Unknown` and the body's start when it is none).
pub fn decode_reply(action: &str, status: u16, body: &str) -> Result<Value, Error> {
    if status != 200 {
        return Err(api_error(action, status, body).into());
    }
    parse_response(action, body)
        .map(|r| r.output)
        .map_err(|source| Error::Answer {
            action: action.to_string(),
            source,
        })
}

/// The refusal an error answer describes.
pub fn api_error(action: &str, status: u16, body: &str) -> ApiError {
    match parse_error(body) {
        Ok(e) => ApiError {
            action: action.to_string(),
            status,
            code: e.code,
            message: e.message,
            request_id: e.request_id,
        },
        Err(_) => ApiError {
            action: action.to_string(),
            status,
            code: "Unknown".to_string(),
            message: body.chars().take(300).collect(),
            request_id: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_action_version_and_encoded_members() {
        let body = request_body(
            "CreateVpc",
            &Value::new_struct().with("CidrBlock", "10.0.0.0/16"),
        )
        .unwrap();
        assert_eq!(
            body,
            "Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0%2F16"
        );
        let tags = Value::new_struct().with(
            "TagSpecifications",
            vec![Value::new_struct().with("ResourceType", "instance").with(
                "Tags",
                vec![Value::new_struct()
                    .with("Key", "Name")
                    .with("Value", "zigi-vm1")],
            )],
        );
        assert_eq!(
            request_body("RunInstances", &tags.with("MinCount", 1i64)).unwrap(),
            "Action=RunInstances&Version=2016-11-15&MinCount=1&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=zigi-vm1"
        );
        let e = request_body("CreateVpc", &Value::new_struct().with("Cidr", "x")).unwrap_err();
        assert!(matches!(e, Error::Request { .. }), "{e}");
        assert_eq!(
            raw_body("CreateVpc", &[("Bogus".into(), "a b".into())]),
            "Action=CreateVpc&Version=2016-11-15&Bogus=a%20b"
        );
    }

    #[test]
    fn errors_are_read_from_the_aws_error_document() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>InvalidSubnet.Range</Code><Message>The CIDR '10.1.0.0/24' is invalid.</Message></Error></Errors><RequestID>x</RequestID></Response>"#;
        let e = api_error("CreateSubnet", 400, doc);
        assert_eq!(e.code, "InvalidSubnet.Range");
        assert_eq!(e.message, "The CIDR '10.1.0.0/24' is invalid.");
        assert_eq!(e.request_id.as_deref(), Some("x"));
        assert_eq!(e.to_string(), "CreateSubnet failed (HTTP 400): InvalidSubnet.Range: The CIDR '10.1.0.0/24' is invalid.");
        let e = api_error("X", 502, "bad gateway");
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("Unknown", "bad gateway")
        );
        match decode_reply("CreateSubnet", 400, doc) {
            Err(Error::Api(e)) => assert_eq!(e.status, 400),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answers_are_read_by_the_model() {
        let doc = r#"<RunInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><reservationId>r-1</reservationId><instancesSet><item>
            <instanceId>i-0123456789abcdef0</instanceId>
            <instanceState><code>0</code><name>pending</name></instanceState>
            <placement><hostId>h-00000000000000001</hostId></placement>
            <networkInterfaceSet><item><macAddress>02:00:00:00:00:01</macAddress></item></networkInterfaceSet>
            </item></instancesSet></RunInstancesResponse>"#;
        let out = decode_reply("RunInstances", 200, doc).unwrap();
        let i = &out.get_list("Instances")[0];
        assert_eq!(i.get_str("InstanceId"), Some("i-0123456789abcdef0"));
        assert_eq!(i.get("State").and_then(|s| s.get_i64("Code")), Some(0));
        assert_eq!(
            i.get_list("NetworkInterfaces")[0].get_str("MacAddress"),
            Some("02:00:00:00:00:01")
        );
        let e = decode_reply("RunInstances", 200, "<nope/>").unwrap_err();
        assert!(matches!(e, Error::Answer { .. }), "{e}");
    }
}
