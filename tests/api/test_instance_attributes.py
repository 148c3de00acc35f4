"""Root volumes, instance attributes and the RunInstances members that used to be ignored,
through boto3 and the AWS CLI: what Ansible's amazon.aws ec2_instance sends (volume tag
specifications, DescribeInstanceAttribute), termination and stop protection
(OperationNotPermitted), user data kept, and launch parameters refused by name."""

import base64

from helpers import expect_error, instances, tags


def launch(ec2, subnet, **kw):
    r = ec2.run_instances(ImageId="ami-12345678", SubnetId=subnet["SubnetId"], MinCount=1,
                          MaxCount=1, **kw)
    return instances({"Reservations": [r]})[0]


def describe(ec2, iid):
    return instances(ec2.describe_instances(InstanceIds=[iid]))[0]


def test_root_volume_tagged_shown_and_deleted_with_the_instance(ec2, subnet):
    inst = launch(ec2, subnet, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web"}]},
        {"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": "web-root"}]},
    ])
    iid = inst["InstanceId"]
    (bdm,) = describe(ec2, iid)["BlockDeviceMappings"]
    assert bdm["DeviceName"] == "/dev/xvda"
    assert bdm["Ebs"]["Status"] == "attached" and bdm["Ebs"]["DeleteOnTermination"] is True
    vol_id = bdm["Ebs"]["VolumeId"]
    assert vol_id.startswith("vol-")
    (vol,) = ec2.describe_volumes(VolumeIds=[vol_id])["Volumes"]
    assert vol["State"] == "in-use" and vol["Size"] == 8 and vol["VolumeType"] == "gp3"
    assert vol["AvailabilityZone"] == subnet["AvailabilityZone"]
    assert vol["Attachments"][0]["InstanceId"] == iid
    assert vol["Attachments"][0]["Device"] == "/dev/xvda"
    assert tags(vol) == {"Name": "web-root"}
    # Filters and DescribeTags see it; CreateTags takes vol- ids.
    f = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])
    assert [v["VolumeId"] for v in f["Volumes"]] == [vol_id]
    ec2.create_tags(Resources=[vol_id], Tags=[{"Key": "env", "Value": "prod"}])
    t = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [vol_id]}])["Tags"]
    assert {x["Key"] for x in t} == {"Name", "env"} and t[0]["ResourceType"] == "volume"
    assert ec2.describe_volumes(Filters=[{"Name": "tag:env", "Values": ["prod"]}])["Volumes"][0]["VolumeId"] == vol_id

    ec2.terminate_instances(InstanceIds=[iid])
    expect_error("InvalidVolume.NotFound", 400, ec2.describe_volumes, VolumeIds=[vol_id])
    expect_error("InvalidVolume.NotFound", 400, ec2.create_tags, Resources=[vol_id],
                 Tags=[{"Key": "a", "Value": "b"}])


def test_kept_root_volume_outlives_the_instance(ec2, subnet):
    inst = launch(ec2, subnet, BlockDeviceMappings=[
        {"DeviceName": "/dev/xvda", "Ebs": {"DeleteOnTermination": False, "VolumeSize": 20,
                                             "VolumeType": "gp2"}}])
    vol_id = describe(ec2, inst["InstanceId"])["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    (vol,) = ec2.describe_volumes(VolumeIds=[vol_id])["Volumes"]
    assert (vol["Size"], vol["VolumeType"], vol["Iops"]) == (20, "gp2", 100)
    ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])
    (vol,) = ec2.describe_volumes(VolumeIds=[vol_id])["Volumes"]
    assert vol["State"] == "available" and vol["Attachments"] == []


def test_block_device_mappings_refused_by_name(ec2, subnet):
    err = expect_error("InvalidBlockDeviceMapping", 400, launch, ec2, subnet,
                       BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 10}}])
    assert "/dev/sdf" in err["Error"]["Message"]
    err = expect_error("InvalidParameterValue", 400, launch, ec2, subnet,
                       BlockDeviceMappings=[{"DeviceName": "/dev/xvda",
                                             "Ebs": {"SnapshotId": "snap-12345678"}}])
    assert "Ebs.SnapshotId" in err["Error"]["Message"]
    expect_error("InvalidBlockDeviceMapping", 400, launch, ec2, subnet,
                 BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 4}}])


def test_termination_and_stop_protection(ec2, subnet, aws):
    inst = launch(ec2, subnet, DisableApiTermination=True)
    iid = inst["InstanceId"]
    a = ec2.describe_instance_attribute(InstanceId=iid, Attribute="disableApiTermination")
    assert a["DisableApiTermination"]["Value"] is True and a["InstanceId"] == iid
    err = expect_error("OperationNotPermitted", 400, ec2.terminate_instances, InstanceIds=[iid])
    assert err["Error"]["Message"] == (
        f"The instance '{iid}' may not be terminated. Modify its 'disableApiTermination' "
        "instance attribute and try again.")
    assert describe(ec2, iid)["State"]["Name"] == "running"

    ec2.modify_instance_attribute(InstanceId=iid, DisableApiStop={"Value": True})
    err = expect_error("OperationNotPermitted", 400, ec2.stop_instances, InstanceIds=[iid])
    assert "disableApiStop" in err["Error"]["Message"]
    # The CLI's --attribute/--value form.
    rc, _, stderr = aws("modify-instance-attribute", "--instance-id", iid,
                        "--attribute", "disableApiStop", "--value", "false")
    assert rc == 0, stderr
    rc, out, stderr = aws("describe-instance-attribute", "--instance-id", iid,
                          "--attribute", "disableApiStop")
    assert rc == 0 and out["DisableApiStop"]["Value"] is False, stderr
    ec2.stop_instances(InstanceIds=[iid])
    rc, _, stderr = aws("modify-instance-attribute", "--instance-id", iid, "--no-disable-api-termination")
    assert rc == 0, stderr
    ec2.terminate_instances(InstanceIds=[iid])
    assert describe(ec2, iid)["State"]["Name"] == "terminated"


def test_user_data_instance_type_and_shutdown_behavior(ec2, subnet):
    script = "#!/bin/sh\necho hello\n"
    inst = launch(ec2, subnet, UserData=script, InstanceInitiatedShutdownBehavior="terminate")
    iid = inst["InstanceId"]
    a = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
    assert base64.b64decode(a["UserData"]["Value"]).decode() == script
    a = ec2.describe_instance_attribute(InstanceId=iid, Attribute="instanceInitiatedShutdownBehavior")
    assert a["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    assert ec2.describe_instance_attribute(InstanceId=iid, Attribute="rootDeviceName")["RootDeviceName"]["Value"] == "/dev/xvda"
    bdm = ec2.describe_instance_attribute(InstanceId=iid, Attribute="blockDeviceMapping")["BlockDeviceMappings"]
    assert bdm[0]["DeviceName"] == "/dev/xvda" and bdm[0]["Ebs"]["VolumeId"].startswith("vol-")
    groups = ec2.describe_instance_attribute(InstanceId=iid, Attribute="groupSet")["Groups"]
    assert [g["GroupName"] for g in groups] == ["default"]
    assert ec2.describe_instance_attribute(InstanceId=iid, Attribute="sourceDestCheck")["SourceDestCheck"]["Value"] is True

    # Type and user data change only while stopped, as on AWS.
    expect_error("IncorrectInstanceState", 400, ec2.modify_instance_attribute, InstanceId=iid,
                 InstanceType={"Value": "t3.large"})
    ec2.stop_instances(InstanceIds=[iid])
    ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "t3.large"})
    ec2.modify_instance_attribute(InstanceId=iid, UserData={"Value": b"second"})
    assert describe(ec2, iid)["InstanceType"] == "t3.large"
    a = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
    assert base64.b64decode(a["UserData"]["Value"]) == b"second"
    expect_error("InvalidParameterValue", 400, ec2.modify_instance_attribute, InstanceId=iid,
                 InstanceType={"Value": "t3.bogus"})
    # Root volume's DeleteOnTermination through BlockDeviceMappings.
    ec2.modify_instance_attribute(InstanceId=iid, BlockDeviceMappings=[
        {"DeviceName": "/dev/xvda", "Ebs": {"DeleteOnTermination": False}}])
    assert describe(ec2, iid)["BlockDeviceMappings"][0]["Ebs"]["DeleteOnTermination"] is False
    expect_error("InvalidInstanceID.NotFound", 400, ec2.describe_instance_attribute,
                 InstanceId="i-0123456789abcdef0", Attribute="userData")


def test_launch_members_refused_by_name(ec2, subnet):
    expect_error("InvalidKeyPair.NotFound", 400, launch, ec2, subnet, KeyName="nokey")
    err = expect_error("InvalidLaunchTemplateName.NotFoundException", 400, ec2.run_instances,
                       MinCount=1, MaxCount=1, SubnetId=subnet["SubnetId"],
                       LaunchTemplate={"LaunchTemplateName": "nope"})
    assert "nope" in err["Error"]["Message"]
    expect_error("InvalidLaunchTemplateId.NotFound", 400, ec2.run_instances,
                 MinCount=1, MaxCount=1, SubnetId=subnet["SubnetId"],
                 LaunchTemplate={"LaunchTemplateId": "lt-0123456789abcdef0"})
    for kw, member in [
        ({"Monitoring": {"Enabled": True}}, "Monitoring.Enabled"),
        ({"HibernationOptions": {"Configured": True}}, "HibernationOptions.Configured"),
        ({"Ipv6AddressCount": 1}, "Ipv6AddressCount"),
        ({"KernelId": "aki-12345678"}, "KernelId"),
        # The IPv6 metadata endpoint (the rest of MetadataOptions is honoured:
        # test_metadata_options.py).
        ({"MetadataOptions": {"HttpProtocolIpv6": "enabled"}}, "HttpProtocolIpv6"),
        ({"Placement": {"Tenancy": "dedicated"}}, "Placement.Tenancy"),
        ({"Placement": {"AvailabilityZoneId": "use1-az1"}}, "Placement.AvailabilityZoneId"),
    ]:
        err = expect_error("InvalidParameterValue", 400, launch, ec2, subnet, **kw)
        assert member in err["Error"]["Message"], (member, err)
    err = expect_error("InvalidParameterValue", 400, launch, ec2, subnet,
                       IamInstanceProfile={"Name": "role"})
    assert "iamInstanceProfile" in err["Error"]["Message"]
    expect_error("InvalidPlacementGroup.Unknown", 400, launch, ec2, subnet, Placement={"GroupName": "pg"})
    # What asks for nothing passes.
    launch(ec2, subnet, Monitoring={"Enabled": False}, Placement={"Tenancy": "default"})


def test_placement_zone_checked(ec2, subnet):
    zone = subnet["AvailabilityZone"]
    launch(ec2, subnet, Placement={"AvailabilityZone": zone})
    other = "us-east-1b" if zone != "us-east-1b" else "us-east-1c"
    err = expect_error("InvalidParameterValue", 400, launch, ec2, subnet, Placement={"AvailabilityZone": other})
    assert subnet["SubnetId"] in err["Error"]["Message"]
    err = expect_error("InvalidParameterValue", 400, launch, ec2, subnet,
                       Placement={"AvailabilityZone": "us-west-1b"})
    assert "Invalid availability zone: [us-west-1b]" == err["Error"]["Message"]


def test_security_group_names_only_in_the_default_vpc(ec2, subnet):
    err = expect_error("InvalidParameterCombination", 400, launch, ec2, subnet, SecurityGroups=["default"])
    assert "groupName" in err["Error"]["Message"]
