"""RunInstances `ImageId` as AWS checks it, through boto3 and the AWS CLI: a malformed id is
`InvalidAMIID.Malformed` "Invalid id: "x" (expecting "ami-...")", a launch without one (and no
launch template supplying one) `MissingParameter` "The request must contain the parameter
ImageId", a launch template's id is used when the request has none and the request's wins over
it, and DescribeInstances (and its `image-id` filter) shows the id given. There is no image
catalog here: any well-formed `ami-` id is accepted (docs/ec2-api-coverage.md)."""

import uuid

from helpers import expect_error, instances

MALFORMED = ["ami-xyz", "ami-", "img-12345678", "AMI-12345678", "ami-1234567g", ""]


def malformed_message(image_id):
    return f'Invalid id: "{image_id}" (expecting "ami-...")'


def describe(ec2, iid):
    return instances(ec2.describe_instances(InstanceIds=[iid]))[0]


def in_subnet(ec2, subnet_id):
    return [i["InstanceId"] for i in instances(ec2.describe_instances(
        Filters=[{"Name": "subnet-id", "Values": [subnet_id]}]))]


def test_malformed_and_missing_image_ids_launch_nothing(ec2, subnet):
    sid = subnet["SubnetId"]
    for bad in MALFORMED:
        err = expect_error("InvalidAMIID.Malformed", 400, ec2.run_instances, ImageId=bad,
                           MinCount=1, MaxCount=1, SubnetId=sid)
        assert err["Error"]["Message"] == malformed_message(bad), err
    err = expect_error("MissingParameter", 400, ec2.run_instances, MinCount=1, MaxCount=1, SubnetId=sid)
    assert err["Error"]["Message"] == "The request must contain the parameter ImageId", err
    # Checked before DryRun answers, so a dry run does not pass a request the launch refuses.
    expect_error("InvalidAMIID.Malformed", 400, ec2.run_instances, ImageId="ami-zz", MinCount=1,
                 MaxCount=1, SubnetId=sid, DryRun=True)
    expect_error("DryRunOperation", 412, ec2.run_instances, ImageId="ami-0abc", MinCount=1,
                 MaxCount=1, SubnetId=sid, DryRun=True)
    assert in_subnet(ec2, sid) == [], "a refused launch created an instance"


def test_any_well_formed_image_id_is_launched_and_shown(ec2, subnet):
    sid = subnet["SubnetId"]
    ids = ["ami-12345678", "ami-0123456789abcdef0", "ami-ABCDEF01"]
    launched = {}
    for image_id in ids:
        (i,) = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, SubnetId=sid)["Instances"]
        assert i["ImageId"] == image_id
        launched[i["InstanceId"]] = image_id
    for iid, image_id in launched.items():
        assert describe(ec2, iid)["ImageId"] == image_id
    found = instances(ec2.describe_instances(Filters=[
        {"Name": "image-id", "Values": ["ami-0123456789abcdef0"]},
        {"Name": "subnet-id", "Values": [sid]}]))
    assert [i["InstanceId"] for i in found] == [k for k, v in launched.items() if v == "ami-0123456789abcdef0"]
    ec2.terminate_instances(InstanceIds=list(launched))


def test_a_launch_template_supplies_the_image_id(ec2, subnet):
    sid = subnet["SubnetId"]
    n = f"img-{uuid.uuid4().hex[:10]}"
    t = ec2.create_launch_template(LaunchTemplateName=n, LaunchTemplateData={"ImageId": "ami-0aaaaaaaaaaaaaaa1"})
    assert "Warning" not in t
    tid = t["LaunchTemplate"]["LaunchTemplateId"]
    (i,) = ec2.run_instances(MinCount=1, MaxCount=1, SubnetId=sid,
                             LaunchTemplate={"LaunchTemplateId": tid})["Instances"]
    assert i["ImageId"] == "ami-0aaaaaaaaaaaaaaa1"
    assert describe(ec2, i["InstanceId"])["ImageId"] == "ami-0aaaaaaaaaaaaaaa1"
    # The request's ImageId replaces the template's, and is checked as any other.
    (j,) = ec2.run_instances(MinCount=1, MaxCount=1, SubnetId=sid, ImageId="ami-0bbbbbbbbbbbbbbb2",
                             LaunchTemplate={"LaunchTemplateName": n})["Instances"]
    assert describe(ec2, j["InstanceId"])["ImageId"] == "ami-0bbbbbbbbbbbbbbb2"
    expect_error("InvalidAMIID.Malformed", 400, ec2.run_instances, MinCount=1, MaxCount=1, SubnetId=sid,
                 ImageId="ami-nothex", LaunchTemplate={"LaunchTemplateId": tid})
    # A template without an image leaves the request needing one, as on AWS.
    v2 = ec2.create_launch_template_version(LaunchTemplateId=tid, LaunchTemplateData={"InstanceType": "t3.small"})
    err = expect_error("MissingParameter", 400, ec2.run_instances, MinCount=1, MaxCount=1, SubnetId=sid,
                       LaunchTemplate={"LaunchTemplateId": tid, "Version": "2"})
    assert err["Error"]["Message"] == "The request must contain the parameter ImageId"
    assert v2["LaunchTemplateVersion"]["VersionNumber"] == 2
    # AWS stores template data with a malformed image but answers a Warning naming it; a launch
    # from that version is refused.
    v3 = ec2.create_launch_template_version(LaunchTemplateId=tid, LaunchTemplateData={"ImageId": "ami-bad!"})
    assert v3["Warning"]["Errors"] == [{"Code": "InvalidAMIID.Malformed",
                                        "Message": malformed_message("ami-bad!")}]
    err = expect_error("InvalidAMIID.Malformed", 400, ec2.run_instances, MinCount=1, MaxCount=1, SubnetId=sid,
                       LaunchTemplate={"LaunchTemplateId": tid, "Version": "3"})
    assert err["Error"]["Message"] == malformed_message("ami-bad!")
    t2 = ec2.create_launch_template(LaunchTemplateName=n + "-w", LaunchTemplateData={"ImageId": "x"})
    assert t2["Warning"]["Errors"][0]["Code"] == "InvalidAMIID.Malformed"
    assert sorted(in_subnet(ec2, sid)) == sorted([i["InstanceId"], j["InstanceId"]])
    ec2.terminate_instances(InstanceIds=[i["InstanceId"], j["InstanceId"]])
    ec2.delete_launch_template(LaunchTemplateId=tid)
    ec2.delete_launch_template(LaunchTemplateId=t2["LaunchTemplate"]["LaunchTemplateId"])


def test_image_id_with_the_aws_cli(aws, subnet):
    sid = subnet["SubnetId"]
    rc, _, err = aws("run-instances", "--image-id", "ami-notanid", "--subnet-id", sid, "--count", "1")
    assert rc != 0 and "(InvalidAMIID.Malformed)" in err and malformed_message("ami-notanid") in err, err
    rc, _, err = aws("run-instances", "--subnet-id", sid, "--count", "1")
    assert rc != 0 and "(MissingParameter)" in err, err
    assert "The request must contain the parameter ImageId" in err, err
    rc, out, err = aws("run-instances", "--image-id", "ami-0fedcba9876543210", "--subnet-id", sid, "--count", "1")
    assert rc == 0, err
    iid = out["Instances"][0]["InstanceId"]
    rc, out, err = aws("describe-instances", "--instance-ids", iid, "--query", "Reservations[0].Instances[0].ImageId")
    assert rc == 0 and out == "ami-0fedcba9876543210", err
    rc, _, err = aws("terminate-instances", "--instance-ids", iid)
    assert rc == 0, err
