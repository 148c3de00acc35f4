//! Encoding by example: element names from the output shape's `locationName`s, list wrappers of
//! `item`s, escaping, the strict and lenient forms, and the error document.

use serde_json::json;
use softvpc_ec2_protocol::{encode, encode_error, try_encode, EncodeError, Timestamp, Value};

#[test]
fn describe_vpcs_uses_location_names_and_items() {
    // Members come out in the model's order (botocore's service-2.json), not the tree's.
    let out = Value::from(&json!({
        "Vpcs": [{"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16", "IsDefault": false,
                  "Tags": [{"Key": "Name", "Value": "a<b>&c"}]}],
        "NextToken": "2"
    }));
    let xml = try_encode("DescribeVpcs", &out, "rid-1").unwrap();
    assert_eq!(
        xml,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <DescribeVpcsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
         <requestId>rid-1</requestId><nextToken>2</nextToken>\
         <vpcSet><item><isDefault>false</isDefault><tagSet><item><key>Name</key>\
         <value>a&lt;b&gt;&amp;c</value></item></tagSet><vpcId>vpc-1</vpcId>\
         <cidrBlock>10.0.0.0/16</cidrBlock></item></vpcSet></DescribeVpcsResponse>"
    );
}

#[test]
fn empty_output_and_empty_lists() {
    let xml = try_encode("DeleteVpc", &Value::new_struct(), "r").unwrap();
    assert!(xml.ends_with("<DeleteVpcResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><return>true</return></DeleteVpcResponse>"));
    let xml = try_encode("DescribeVpcs", &Value::from(&json!({"Vpcs": []})), "r").unwrap();
    assert!(xml.contains("<vpcSet></vpcSet>"), "{xml}");
}

#[test]
fn attribute_wrappers_and_timestamps() {
    let out = Value::new_struct()
        .with("VpcId", "vpc-1")
        .with("EnableDnsSupport", Value::new_struct().with("Value", true));
    let xml = try_encode("DescribeVpcAttribute", &out, "r").unwrap();
    assert!(
        xml.contains(
            "<enableDnsSupport><value>true</value></enableDnsSupport><vpcId>vpc-1</vpcId>"
        ),
        "{xml}"
    );
    let host = Value::new_struct().with("HostId", "h-1").with(
        "AllocationTime",
        Timestamp {
            secs: 0,
            nanos: 5_000_000,
        },
    );
    let xml = try_encode(
        "DescribeHosts",
        &Value::new_struct().with("Hosts", vec![host]),
        "r",
    )
    .unwrap();
    assert!(
        xml.contains("<allocationTime>1970-01-01T00:00:00.005Z</allocationTime>"),
        "{xml}"
    );
}

#[test]
fn escaping_keeps_text_exact() {
    let out = Value::new_struct().with("Return", true);
    let xml = encode_error("C&<>", "cr\r \u{1} tab\t", "r]]>");
    assert!(xml.contains("<Code>C&amp;&lt;&gt;</Code>"), "{xml}");
    assert!(
        xml.contains("<Message>cr&#13; \u{FFFD} tab\t</Message>"),
        "{xml}"
    );
    assert!(xml.contains("<RequestID>r]]&gt;</RequestID>"), "{xml}");
    assert!(
        try_encode("AttachInternetGateway", &out, "r").is_err(),
        "no output shape"
    );
}

#[test]
fn error_document_format() {
    assert_eq!(
        encode_error(
            "InvalidVpcID.NotFound",
            "The vpc ID 'vpc-1' does not exist",
            "rid"
        ),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
         <Code>InvalidVpcID.NotFound</Code><Message>The vpc ID 'vpc-1' does not exist</Message>\
         </Error></Errors><RequestID>rid</RequestID></Response>"
    );
}

#[test]
fn strict_refuses_and_lenient_skips_what_does_not_fit() {
    let out = Value::new_struct().with(
        "Vpc",
        Value::new_struct()
            .with("VpcId", "vpc-1")
            .with("Bogus", "x"),
    );
    assert!(matches!(
        try_encode("CreateVpc", &out, "r"),
        Err(EncodeError::UnknownMember { ref member, ref path, .. })
            if member == "Bogus" && path == "CreateVpc.Vpc"
    ));
    let xml = encode("CreateVpc", &out, "r");
    assert!(xml.contains("<vpc><vpcId>vpc-1</vpcId></vpc>"), "{xml}");
    assert!(!xml.contains("Bogus"));

    // A number for a string member: strict refuses, lenient writes its text.
    let out = Value::new_struct().with("Vpc", Value::new_struct().with("OwnerId", 42));
    assert!(matches!(
        try_encode("CreateVpc", &out, "r"),
        Err(EncodeError::TypeMismatch { ref path, .. }) if path == "CreateVpc.Vpc.OwnerId"
    ));
    // Paths name list positions too.
    let list = Value::from(&json!({"Vpcs": [{"VpcId": "a"}, {"VpcId": "b", "IsDefault": "x"}]}));
    assert!(matches!(
        try_encode("DescribeVpcs", &list, "r"),
        Err(EncodeError::TypeMismatch { ref path, .. }) if path == "DescribeVpcs.Vpcs[1].IsDefault"
    ));
    assert!(encode("CreateVpc", &out, "r").contains("<ownerId>42</ownerId>"));
    // A string for a boolean: skipped.
    let out = Value::new_struct().with("Vpc", Value::new_struct().with("IsDefault", "yes"));
    assert!(encode("CreateVpc", &out, "r").contains("<vpc></vpc>"));
    // A list where a structure belongs, a bad timestamp string.
    let out = Value::new_struct().with("Vpc", Value::List(vec![]));
    assert!(try_encode("CreateVpc", &out, "r").is_err());
    let bad_ts = Value::from(&json!({"Hosts": [{"AllocationTime": "yesterday"}]}));
    assert!(try_encode("DescribeHosts", &bad_ts, "r").is_err());
    assert!(try_encode("NoSuchOperation", &Value::new_struct(), "r").is_err());
}

/// `encode_streamed` into a list of chunks.
fn streamed(op: &str, head: &Value, member: &str, items: &[Value], chunk: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    softvpc_ec2_protocol::encode_streamed(
        op,
        head,
        member,
        &mut items.iter().cloned(),
        "rid-9",
        true,
        chunk,
        &mut |c| {
            chunks.push(c);
            true
        },
    )
    .unwrap();
    chunks
}

#[test]
fn streamed_listing_is_the_same_document_in_chunks() {
    let items: Vec<Value> = (0..50)
        .map(|i| {
            Value::from(&json!({
                "NetworkInterfaceId": format!("eni-{i:04}"), "PrivateIpAddress": format!("10.0.0.{i}"),
                "SourceDestCheck": true, "Description": "a<b>&c\r",
                "TagSet": [{"Key": "k", "Value": "v"}],
                "PrivateIpAddresses": [{"PrivateIpAddress": format!("10.0.0.{i}"), "Primary": true}]
            }))
        })
        .collect();
    for (head, n) in [
        (Value::new_struct(), 50),
        (Value::new_struct().with("NextToken", "tok"), 50),
        (Value::new_struct(), 0),
    ] {
        let whole = try_encode(
            "DescribeNetworkInterfaces",
            &head
                .clone()
                .with("NetworkInterfaces", Value::List(items[..n].to_vec())),
            "rid-9",
        )
        .unwrap();
        for chunk in [1, 300, 1 << 20] {
            let chunks = streamed(
                "DescribeNetworkInterfaces",
                &head,
                "NetworkInterfaces",
                &items[..n],
                chunk,
            );
            assert_eq!(chunks.concat(), whole, "chunk size {chunk}");
            if chunk == 1 {
                // One chunk per item, plus the rest.
                assert_eq!(chunks.len(), n + 1);
            }
        }
    }
}

#[test]
fn streamed_listing_stops_when_nobody_reads_and_refuses_misfits() {
    let items = vec![Value::new_struct().with("NetworkInterfaceId", "eni-1"); 10];
    let mut calls = 0;
    softvpc_ec2_protocol::encode_streamed(
        "DescribeNetworkInterfaces",
        &Value::new_struct(),
        "NetworkInterfaces",
        &mut items.iter().cloned(),
        "r",
        true,
        1,
        &mut |_| {
            calls += 1;
            false
        },
    )
    .unwrap();
    assert_eq!(calls, 1);
    let mut sink = |_: String| true;
    // Not a list member; an unknown head member; an item that does not fit, when strict.
    for (member, head, item) in [
        ("NextToken", Value::new_struct(), Value::new_struct()),
        (
            "NetworkInterfaces",
            Value::new_struct().with("Bogus", 1i64),
            Value::new_struct(),
        ),
        (
            "NetworkInterfaces",
            Value::new_struct(),
            Value::new_struct().with("Bogus", 1i64),
        ),
    ] {
        let r = softvpc_ec2_protocol::encode_streamed(
            "DescribeNetworkInterfaces",
            &head,
            member,
            &mut std::iter::once(item),
            "r",
            true,
            1 << 16,
            &mut sink,
        );
        assert!(
            matches!(r, Err(EncodeError::UnknownMember { .. })),
            "{member}: {r:?}"
        );
    }
}

#[test]
fn streamed_reservations_are_the_same_document() {
    // DescribeInstances streams reservations, each a struct holding a list of instances.
    let items: Vec<Value> = (0..5)
        .map(|r| {
            Value::from(&json!({
                "ReservationId": format!("r-{r:04}"), "OwnerId": "000000000000", "Groups": [],
                "Instances": (0..3).map(|i| json!({
                    "InstanceId": format!("i-{r}{i}"), "AmiLaunchIndex": i,
                    "PrivateIpAddress": format!("10.0.{r}.{i}"),
                    "Tags": [{"Key": "Name", "Value": "x<&>"}]
                })).collect::<Vec<_>>()
            }))
        })
        .collect();
    let head = Value::new_struct().with("NextToken", "t");
    let whole = try_encode(
        "DescribeInstances",
        &head
            .clone()
            .with("Reservations", Value::List(items.clone())),
        "rid-9",
    )
    .unwrap();
    assert!(whole.contains("<instanceId>i-42</instanceId>"), "{whole}");
    for chunk in [1, 200, 1 << 20] {
        let chunks = streamed("DescribeInstances", &head, "Reservations", &items, chunk);
        assert_eq!(chunks.concat(), whole, "chunk size {chunk}");
    }
}
