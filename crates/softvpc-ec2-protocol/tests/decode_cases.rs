//! Decoding by example: the irregular wire names of the VPC API land on the model's member
//! names, and each protocol refusal carries AWS's code and message.

use softvpc_ec2_protocol::{decode, decode_request, parse_form, ProtocolError, Timestamp, Value};

fn pairs(s: &str) -> Vec<(String, String)> {
    parse_form(s.as_bytes()).expect("form")
}

fn dec(op: &str, s: &str) -> Result<Value, ProtocolError> {
    decode(op, &pairs(s))
}

#[test]
fn irregular_wire_names_reach_member_names() {
    let v = dec(
        "CreateSecurityGroup",
        "GroupName=web&GroupDescription=web+servers&VpcId=vpc-1",
    )
    .unwrap();
    assert_eq!(v.get_str("Description"), Some("web servers"));
    assert_eq!(v.get_str("GroupName"), Some("web"));

    let v = dec(
        "AuthorizeSecurityGroupIngress",
        "GroupId=sg-1&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=22\
         &IpPermissions.1.Groups.1.GroupId=sg-2&IpPermissions.1.IpRanges.2.CidrIp=10.0.0.0/8\
         &IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0/0",
    )
    .unwrap();
    let perm = &v.get_list("IpPermissions")[0];
    assert_eq!(perm.get_i64("FromPort"), Some(22));
    assert_eq!(
        perm.get_list("UserIdGroupPairs")[0].get_str("GroupId"),
        Some("sg-2")
    );
    // Ordered by index, not by arrival.
    let cidrs: Vec<_> = perm
        .get_list("IpRanges")
        .iter()
        .map(|r| r.get_str("CidrIp").unwrap())
        .collect();
    assert_eq!(cidrs, ["0.0.0.0/0", "10.0.0.0/8"]);

    let v = dec(
        "CreateNetworkAclEntry",
        "NetworkAclId=acl-1&RuleNumber=100&Protocol=1&RuleAction=deny&Egress=true\
         &Icmp.Type=8&Icmp.Code=-1&PortRange.From=1&PortRange.To=2",
    )
    .unwrap();
    assert_eq!(v.get("IcmpTypeCode").unwrap().get_i64("Code"), Some(-1));
    assert_eq!(v.get("PortRange").unwrap().get_i64("To"), Some(2));
    assert_eq!(v.get_bool("Egress"), Some(true));

    let v = dec(
        "CreateDhcpOptions",
        "DhcpConfiguration.1.Key=domain-name-servers&DhcpConfiguration.1.Value.1=10.0.0.2\
         &DhcpConfiguration.1.Value.2=AmazonProvidedDNS",
    )
    .unwrap();
    let conf = &v.get_list("DhcpConfigurations")[0];
    assert_eq!(
        conf.get_strings("Values"),
        ["10.0.0.2", "AmazonProvidedDNS"]
    );

    let v = dec(
        "ModifyNetworkInterfaceAttribute",
        "NetworkInterfaceId=eni-1&SourceDestCheck.Value=false&SecurityGroupId.1=sg-1",
    )
    .unwrap();
    assert_eq!(
        v.get("SourceDestCheck").unwrap().get_bool("Value"),
        Some(false)
    );
    assert_eq!(v.get_strings("Groups"), ["sg-1"]);

    let v = dec(
        "RunInstances",
        "MinCount=1&MaxCount=1&Placement.HostId=h-1&TagSpecification.1.ResourceType=instance\
         &TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=a\
         &InstanceMarketOptions.SpotOptions.ValidUntil=2026-11-22T01:02:03Z",
    )
    .unwrap();
    assert_eq!(v.get("Placement").unwrap().get_str("HostId"), Some("h-1"));
    let spec = &v.get_list("TagSpecifications")[0];
    assert_eq!(spec.get_str("ResourceType"), Some("instance"));
    assert_eq!(spec.get_list("Tags")[0].get_str("Value"), Some("a"));
    let until = v
        .get("InstanceMarketOptions")
        .and_then(|o| o.get("SpotOptions"))
        .and_then(|o| o.get("ValidUntil"))
        .and_then(Value::as_timestamp);
    assert_eq!(until, Timestamp::parse_iso8601("2026-11-22T01:02:03Z"));

    let v = dec(
        "DescribeVpcs",
        "Filter.1.Name=tag:Name&Filter.1.Value.1=a*&MaxResults=5",
    )
    .unwrap();
    assert_eq!(v.get_list("Filters")[0].get_str("Name"), Some("tag:Name"));
    assert_eq!(v.get_i64("MaxResults"), Some(5));
    // DescribeNatGateways names its filters `Filter` in the model, wire name `Filter` too.
    let v = dec(
        "DescribeNatGateways",
        "Filter.1.Name=state&Filter.1.Value.1=available",
    )
    .unwrap();
    assert_eq!(v.get_list("Filter")[0].get_strings("Values"), ["available"]);
}

#[test]
fn protocol_params_are_not_input() {
    let (op, v) = decode_request(&pairs(
        "Action=DeleteVpc&Version=2016-11-15&VpcId=vpc-1&X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=a&X-Amz-Date=20261122T000000Z&X-Amz-SignedHeaders=host\
         &X-Amz-Signature=00&AWSAccessKeyId=AK&Signature=s&SignatureMethod=HmacSHA256\
         &SignatureVersion=2&Timestamp=2026-11-22T00:00:00Z&Expires=2026-11-23T00:00:00Z\
         &DryRun=true",
    ))
    .unwrap();
    assert_eq!(op, "DeleteVpc");
    assert_eq!(
        v,
        Value::structure([
            ("VpcId", Value::from("vpc-1")),
            ("DryRun", Value::from(true))
        ])
    );
}

#[test]
fn repeated_parameter_keeps_the_last_value_and_booleans_ignore_case() {
    let v = dec("DeleteVpc", "VpcId=vpc-1&VpcId=vpc-2&DryRun=TRUE").unwrap();
    assert_eq!(v.get_str("VpcId"), Some("vpc-2"));
    assert_eq!(v.get_bool("DryRun"), Some(true));
}

fn err(op: &str, s: &str) -> (String, String) {
    let e = dec(op, s).expect_err("must be refused");
    assert_eq!(e.http_status(), 400);
    (e.code().to_string(), e.message())
}

#[test]
fn invalid_action() {
    assert_eq!(
        err("CreateBucket", ""),
        (
            "InvalidAction".into(),
            "The action CreateBucket is not valid for this web service.".into()
        )
    );
    let e = decode_request(&pairs("VpcId=vpc-1")).unwrap_err();
    assert_eq!(
        (e.code(), e.message().as_str()),
        (
            "MissingParameter",
            "The request must contain the parameter Action"
        )
    );
}

#[test]
fn unknown_parameter() {
    for (op, body, name) in [
        ("DeleteVpc", "VpcId=v&Bogus=1", "Bogus"),
        // The member name is not the wire name: CreateSecurityGroup's Description is
        // GroupDescription on the wire.
        (
            "CreateSecurityGroup",
            "GroupName=a&Description=d",
            "Description",
        ),
        // Case matters.
        ("DeleteVpc", "vpcId=v", "vpcId"),
        // A structure needs a child, a scalar has none, a list needs an index.
        (
            "RunInstances",
            "MinCount=1&MaxCount=1&Placement=x",
            "Placement",
        ),
        ("DeleteVpc", "VpcId.1=v", "VpcId.1"),
        ("DescribeVpcs", "VpcId=vpc-1", "VpcId"),
        ("DescribeVpcs", "VpcId.first=vpc-1", "VpcId.first"),
        // EC2 lists have no `.member.` segment.
        ("DescribeVpcs", "VpcId.member.1=vpc-1", "VpcId.member.1"),
        ("DescribeVpcs", "Filter.1.Nope=x", "Filter.1.Nope"),
        ("DescribeVpcs", "Filter.1.Value.1.x=y", "Filter.1.Value.1.x"),
        ("DescribeVpcs", "Filter..Name=x", "Filter..Name"),
    ] {
        assert_eq!(
            err(op, body),
            (
                "UnknownParameter".into(),
                format!("The parameter {name} is not recognized")
            ),
            "{op} {body}"
        );
    }
}

#[test]
fn invalid_parameter_value() {
    for (op, body, needle) in [
        (
            "DeleteVpc",
            "VpcId=v&DryRun=yes",
            "Value (yes) for parameter DryRun is invalid",
        ),
        (
            "DescribeVpcs",
            "MaxResults=ten",
            "Value (ten) for parameter MaxResults",
        ),
        ("DescribeVpcs", "MaxResults=4", "at least 5"),
        ("DescribeVpcs", "MaxResults=1001", "at most 1000"),
        (
            "DescribeVpcs",
            "MaxResults=99999999999",
            "Expected an integer",
        ),
        ("DescribeVpcs", "MaxResults=1.5", "Expected an integer"),
        (
            "DescribeVpcAttribute",
            "VpcId=v&Attribute=enableDns",
            "Valid values: enableDnsSupport",
        ),
        ("DescribeVpcs", "VpcId.0=vpc-1", "list index 0"),
        ("DescribeVpcs", "VpcId.01=vpc-1", "list index 01"),
        ("DescribeVpcs", "VpcId.10001=vpc-1", "list index 10001"),
        (
            "DescribeVpcs",
            "VpcId.99999999999999999999=vpc-1",
            "list index",
        ),
        (
            "DescribeVpcs",
            "Filter.0.Name=x",
            "list index 0 in parameter Filter.0.Name",
        ),
        (
            "RunInstances",
            "MinCount=1&MaxCount=1&InstanceMarketOptions.SpotOptions.ValidUntil=tomorrow",
            "ISO 8601",
        ),
        (
            "RunInstances",
            "MinCount=1&MaxCount=1&InstanceType=t9.nothing",
            "Valid values:",
        ),
    ] {
        let (code, message) = err(op, body);
        assert_eq!(code, "InvalidParameterValue", "{op} {body}: {message}");
        assert!(message.contains(needle), "{op} {body}: {message}");
    }
}

#[test]
fn missing_parameter() {
    for (op, body, name) in [
        ("DeleteVpc", "", "VpcId"),
        ("CreateSecurityGroup", "GroupName=web", "GroupDescription"),
        ("CreateSecurityGroup", "GroupDescription=d", "GroupName"),
        (
            "AttachNetworkInterface",
            "NetworkInterfaceId=e&InstanceId=i",
            "DeviceIndex",
        ),
        // Required inside a list element, named by its wire path.
        (
            "ModifySecurityGroupRules",
            "GroupId=sg-1&SecurityGroupRule.1.SecurityGroupRule.IpProtocol=tcp",
            "SecurityGroupRule.1.SecurityGroupRuleId",
        ),
        (
            "RunInstances",
            "MinCount=1&MaxCount=1&Monitoring.Enabled=",
            "Monitoring.Enabled",
        ),
    ] {
        let e = dec(op, body).expect_err(body);
        if name == "Monitoring.Enabled" {
            // An empty boolean is not a boolean.
            assert_eq!(e.code(), "InvalidParameterValue");
            continue;
        }
        assert_eq!(
            (e.code(), e.message()),
            (
                "MissingParameter",
                format!("The request must contain the parameter {name}")
            ),
            "{op} {body}"
        );
    }
    // An empty value is a value.
    assert_eq!(
        dec("DeleteVpc", "VpcId=").unwrap().get_str("VpcId"),
        Some("")
    );
    // Unknown names are reported before missing ones.
    let e = dec("RunInstances", "Monitoring.Bogus=1").unwrap_err();
    assert_eq!(e.code(), "UnknownParameter");
    // A structure present without its required member (Monitoring.Enabled).
    let e = dec(
        "RunInstances",
        "MinCount=1&MaxCount=1&Monitoring.Enabled=true",
    )
    .unwrap();
    assert_eq!(e.get("Monitoring").unwrap().get_bool("Enabled"), Some(true));
}

#[test]
fn operation_without_input_members_refuses_any_parameter() {
    // Every operation of the model has an input shape; an empty request decodes to an empty
    // structure when nothing is required.
    assert_eq!(dec("DescribeVpcs", "").unwrap(), Value::new_struct());
    assert_eq!(
        dec("DescribeRegions", "Action=DescribeRegions").unwrap(),
        Value::new_struct()
    );
}
