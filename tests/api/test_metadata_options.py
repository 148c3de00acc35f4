"""Instance metadata options (issue 11) through boto3 and the AWS CLI: RunInstances'
`MetadataOptions`, `ModifyInstanceMetadataOptions` (absent members keep their value, the answer's
State is `pending`), DescribeInstances' `MetadataOptions` as AWS shows it, and AWS's refusals: a hop
limit outside 1-64, values outside the enums, the IPv6 endpoint (softvpc instances have no IPv6; refused as the other unsupported members),
an unknown or terminated instance; DryRun changes nothing."""

from helpers import expect_error, instances

DEFAULTS = {"State": "applied", "HttpTokens": "optional", "HttpPutResponseHopLimit": 1,
            "HttpEndpoint": "enabled", "HttpProtocolIpv6": "disabled",
            "InstanceMetadataTags": "disabled"}


def run_one(ec2, subnet, **kw):
    r = ec2.run_instances(ImageId="ami-12345678", SubnetId=subnet["SubnetId"], MinCount=1,
                          MaxCount=1, **kw)
    return instances({"Reservations": [r]})[0]


def described(ec2, iid):
    return instances(ec2.describe_instances(InstanceIds=[iid]))[0]["MetadataOptions"]


def test_defaults_and_run_instances_metadata_options(ec2, subnet):
    plain = run_one(ec2, subnet)
    assert plain["MetadataOptions"] == dict(DEFAULTS, State="pending")
    assert described(ec2, plain["InstanceId"]) == DEFAULTS
    inst = run_one(ec2, subnet, MetadataOptions={
        "HttpTokens": "required", "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled",
        "HttpProtocolIpv6": "disabled", "InstanceMetadataTags": "enabled"})
    assert described(ec2, inst["InstanceId"]) == dict(
        DEFAULTS, HttpTokens="required", HttpPutResponseHopLimit=2, InstanceMetadataTags="enabled")


def test_run_instances_refuses_what_aws_refuses(ec2, subnet):
    before = len(instances(ec2.describe_instances()))
    for opts, code in (
        ({"HttpPutResponseHopLimit": 0}, "InvalidParameterValue"),
        ({"HttpPutResponseHopLimit": 65}, "InvalidParameterValue"),
        ({"HttpProtocolIpv6": "enabled"}, "InvalidParameterValue"),
    ):
        expect_error(code, 400, ec2.run_instances, ImageId="ami-12345678",
                     SubnetId=subnet["SubnetId"], MinCount=1, MaxCount=1, MetadataOptions=opts)
    assert len(instances(ec2.describe_instances())) == before


def test_modify_keeps_absent_members_and_answers_pending(ec2, subnet):
    iid = run_one(ec2, subnet)["InstanceId"]
    r = ec2.modify_instance_metadata_options(InstanceId=iid, HttpTokens="required")
    assert r["InstanceId"] == iid
    assert r["InstanceMetadataOptions"] == dict(DEFAULTS, State="pending", HttpTokens="required")
    r = ec2.modify_instance_metadata_options(InstanceId=iid, HttpPutResponseHopLimit=5,
                                             HttpEndpoint="disabled")
    want = dict(DEFAULTS, HttpTokens="required", HttpPutResponseHopLimit=5,
                HttpEndpoint="disabled")
    assert r["InstanceMetadataOptions"] == dict(want, State="pending")
    assert described(ec2, iid) == want
    ec2.modify_instance_metadata_options(InstanceId=iid, InstanceMetadataTags="enabled",
                                         HttpTokens="optional", HttpEndpoint="enabled")
    assert described(ec2, iid) == dict(DEFAULTS, HttpPutResponseHopLimit=5,
                                       InstanceMetadataTags="enabled")


def test_modify_refusals_change_nothing(ec2, subnet):
    iid = run_one(ec2, subnet)["InstanceId"]
    expect_error("InvalidParameterValue", 400, ec2.modify_instance_metadata_options,
                 InstanceId=iid, HttpPutResponseHopLimit=65)
    expect_error("InvalidParameterValue", 400, ec2.modify_instance_metadata_options,
                 InstanceId=iid, HttpPutResponseHopLimit=-1)
    expect_error("InvalidParameterValue", 400, ec2.modify_instance_metadata_options,
                 InstanceId=iid, HttpProtocolIpv6="enabled", HttpTokens="required")
    expect_error("DryRunOperation", 412, ec2.modify_instance_metadata_options,
                 InstanceId=iid, HttpTokens="required", DryRun=True)
    expect_error("InvalidInstanceID.NotFound", 400, ec2.modify_instance_metadata_options,
                 InstanceId="i-0123456789abcdef0", HttpTokens="required")
    assert described(ec2, iid) == DEFAULTS
    ec2.terminate_instances(InstanceIds=[iid])
    expect_error("IncorrectInstanceState", 400, ec2.modify_instance_metadata_options,
                 InstanceId=iid, HttpTokens="required")


def test_the_aws_cli(aws, ec2, subnet):
    rc, out, err = aws("run-instances", "--image-id", "ami-12345678", "--subnet-id",
                       subnet["SubnetId"], "--count", "1", "--metadata-options",
                       "HttpTokens=required,HttpPutResponseHopLimit=2")
    assert rc == 0, err
    iid = out["Instances"][0]["InstanceId"]
    assert out["Instances"][0]["MetadataOptions"]["HttpTokens"] == "required"
    rc, out, err = aws("modify-instance-metadata-options", "--instance-id", iid,
                       "--http-endpoint", "disabled")
    assert rc == 0, err
    assert out["InstanceMetadataOptions"]["HttpEndpoint"] == "disabled"
    assert out["InstanceMetadataOptions"]["HttpPutResponseHopLimit"] == 2
    rc, out, err = aws("describe-instances", "--instance-ids", iid,
                       "--query", "Reservations[0].Instances[0].MetadataOptions")
    assert rc == 0, err
    assert out == dict(DEFAULTS, HttpTokens="required", HttpPutResponseHopLimit=2,
                       HttpEndpoint="disabled")
    rc, out, err = aws("modify-instance-metadata-options", "--instance-id", iid,
                       "--http-put-response-hop-limit", "100")
    assert rc != 0 and "InvalidParameterValue" in err, err
