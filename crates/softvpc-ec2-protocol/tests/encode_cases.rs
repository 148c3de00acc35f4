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
