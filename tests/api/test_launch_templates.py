"""Launch templates through boto3 and the AWS CLI: Create/Describe/Modify/DeleteLaunchTemplate,
Create/Describe/DeleteLaunchTemplateVersions ($Default, $Latest, SourceVersion, ranges,
filters, paging), RunInstances with `LaunchTemplate` by id or name and version (the request's
parameters override the template's, tags merge), each refusal with AWS's code, and template data
RunInstances would not honour refused by name."""

import uuid

from helpers import expect_error, instances, tags

MISSING_ID = "lt-0123456789abcdef0"


def name(prefix="lt"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make(ec2, data, **kw):
    return ec2.create_launch_template(LaunchTemplateName=kw.pop("n", name()), LaunchTemplateData=data,
                                      **kw)["LaunchTemplate"]


def test_template_life_cycle(ec2):
    n = name()
    expect_error("DryRunOperation", 412, ec2.create_launch_template, LaunchTemplateName=n,
                 LaunchTemplateData={"ImageId": "ami-1"}, DryRun=True)
    t = make(ec2, {"ImageId": "ami-11111111", "InstanceType": "t3.micro"}, n=n, VersionDescription="first",
             TagSpecifications=[{"ResourceType": "launch-template", "Tags": [{"Key": "team", "Value": "web"}]}])
    tid = t["LaunchTemplateId"]
    assert tid.startswith("lt-") and t["LaunchTemplateName"] == n
    assert (t["DefaultVersionNumber"], t["LatestVersionNumber"]) == (1, 1)
    assert t["CreatedBy"] == "arn:aws:iam::123456789012:root" and tags(t) == {"team": "web"}
    expect_error("InvalidLaunchTemplateName.AlreadyExistsException", 400, make, ec2, {"ImageId": "ami-1"}, n=n)
    # Version 2 from scratch, version 3 from version 1 with one member changed.
    v2 = ec2.create_launch_template_version(LaunchTemplateId=tid, LaunchTemplateData={"ImageId": "ami-22222222"},
                                            VersionDescription="second")["LaunchTemplateVersion"]
    assert v2["VersionNumber"] == 2 and v2["DefaultVersion"] is False
    assert v2["LaunchTemplateData"] == {"ImageId": "ami-22222222"}
    v3 = ec2.create_launch_template_version(LaunchTemplateName=n, SourceVersion="1",
                                            LaunchTemplateData={"InstanceType": "t3.large"})["LaunchTemplateVersion"]
    assert v3["LaunchTemplateData"] == {"ImageId": "ami-11111111", "InstanceType": "t3.large"}

    def versions(**kw):
        return [v["VersionNumber"] for v in
                ec2.describe_launch_template_versions(**kw)["LaunchTemplateVersions"]]

    assert versions(LaunchTemplateId=tid) == [1, 2, 3]
    assert versions(LaunchTemplateName=n, Versions=["$Latest"]) == [3]
    assert versions(LaunchTemplateName=n, Versions=["$Default", "2"]) == [1, 2]
    assert versions(LaunchTemplateId=tid, MinVersion="2") == [2, 3]
    assert versions(LaunchTemplateId=tid, MaxVersion="2") == [1, 2]
    assert versions(LaunchTemplateId=tid, Filters=[{"Name": "image-id", "Values": ["ami-22222222"]}]) == [2]
    assert versions(LaunchTemplateId=tid, Filters=[{"Name": "is-default-version", "Values": ["true"]}]) == [1]
    assert versions(LaunchTemplateId=tid, Filters=[{"Name": "instance-type", "Values": ["t3.*"]}]) == [1, 3]
    pages = list(ec2.get_paginator("describe_launch_template_versions").paginate(
        LaunchTemplateId=tid, PaginationConfig={"PageSize": 2}))
    assert [[v["VersionNumber"] for v in p["LaunchTemplateVersions"]] for p in pages] == [[1, 2], [3]]
    expect_error("InvalidLaunchTemplateId.VersionNotFound", 400, ec2.describe_launch_template_versions,
                 LaunchTemplateId=tid, Versions=["9"])
    # $Default moves with ModifyLaunchTemplate.
    m = ec2.modify_launch_template(LaunchTemplateId=tid, DefaultVersion="3")["LaunchTemplate"]
    assert (m["DefaultVersionNumber"], m["LatestVersionNumber"]) == (3, 3)
    assert versions(LaunchTemplateId=tid, Versions=["$Default"]) == [3]
    expect_error("InvalidLaunchTemplateId.VersionNotFound", 400, ec2.modify_launch_template,
                 LaunchTemplateId=tid, DefaultVersion="7")
    expect_error("DryRunOperation", 412, ec2.modify_launch_template, LaunchTemplateId=tid, DefaultVersion="1",
                 DryRun=True)
    # Describe by name, id, filters.
    got = ec2.describe_launch_templates(LaunchTemplateNames=[n])["LaunchTemplates"]
    assert [t["LaunchTemplateId"] for t in got] == [tid] and got[0]["DefaultVersionNumber"] == 3
    got = ec2.describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": [n]}])
    assert [t["LaunchTemplateId"] for t in got["LaunchTemplates"]] == [tid]
    got = ec2.describe_launch_templates(LaunchTemplateIds=[tid], Filters=[{"Name": "tag:team", "Values": ["web"]}])
    assert len(got["LaunchTemplates"]) == 1
    expect_error("InvalidLaunchTemplateName.NotFoundException", 400, ec2.describe_launch_templates,
                 LaunchTemplateNames=["no-such-template"])
    expect_error("InvalidLaunchTemplateId.NotFound", 400, ec2.describe_launch_templates,
                 LaunchTemplateIds=[MISSING_ID])
    expect_error("InvalidParameterValue", 400, ec2.describe_launch_templates,
                 Filters=[{"Name": "bogus", "Values": ["x"]}])
    # Deleting versions: the default is kept, an unknown one is reported, others go.
    r = ec2.delete_launch_template_versions(LaunchTemplateId=tid, Versions=["1", "3", "8"])
    assert [v["VersionNumber"] for v in r["SuccessfullyDeletedLaunchTemplateVersions"]] == [1]
    bad = {v["VersionNumber"]: v["ResponseError"]["Code"] for v in r["UnsuccessfullyDeletedLaunchTemplateVersions"]}
    assert bad == {3: "unexpectedError", 8: "launchTemplateVersionDoesNotExist"}
    assert versions(LaunchTemplateId=tid) == [2, 3]
    # Tags through CreateTags/DescribeTags.
    ec2.create_tags(Resources=[tid], Tags=[{"Key": "env", "Value": "dev"}])
    rows = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [tid]}])["Tags"]
    assert {(r["ResourceType"], r["Key"]) for r in rows} == {("launch-template", "team"), ("launch-template", "env")}
    d = ec2.delete_launch_template(LaunchTemplateName=n)["LaunchTemplate"]
    assert d["LaunchTemplateId"] == tid
    expect_error("InvalidLaunchTemplateId.NotFound", 400, ec2.delete_launch_template, LaunchTemplateId=tid)
    expect_error("InvalidLaunchTemplateName.NotFoundException", 400, ec2.delete_launch_template,
                 LaunchTemplateName=n)
    expect_error("InvalidLaunchTemplateId.NotFound", 400, ec2.create_launch_template_version,
                 LaunchTemplateId=tid, LaunchTemplateData={"ImageId": "ami-1"})


def test_data_runinstances_would_not_honour_is_refused(ec2):
    for data, member in [
        ({"ImageId": "ami-1", "IamInstanceProfile": {"Name": "x"}}, "IamInstanceProfile"),
        ({"KernelId": "aki-1"}, "KernelId"),
        ({"ElasticGpuSpecifications": [{"Type": "eg1.medium"}]}, "ElasticGpuSpecifications"),
        ({"CpuOptions": {"CoreCount": 2}}, "CpuOptions"),
        ({"MetadataOptions": {"HttpTokens": "required"}}, "MetadataOptions"),
        ({"EbsOptimized": True}, "EbsOptimized"),
        ({"Monitoring": {"Enabled": True}}, "Monitoring"),
        ({"Placement": {"Tenancy": "dedicated"}}, "Tenancy"),
        ({"NetworkInterfaces": [{"DeviceIndex": 0, "Ipv6AddressCount": 1}]}, "Ipv6AddressCount"),
        ({"BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"Encrypted": True}}]}, "Encrypted"),
    ]:
        err = expect_error("InvalidParameterValue", 400, make, ec2, data)
        assert member in err["Error"]["Message"], (member, err["Error"]["Message"])
    err = expect_error("InvalidParameterValue", 400, make, ec2, {"UserData": "not base64!"})
    expect_error("InvalidParameterValue", 400, make, ec2, {"ImageId": "ami-1"}, TagSpecifications=[
        {"ResourceType": "vpc", "Tags": [{"Key": "a", "Value": "b"}]}])
    expect_error("InvalidParameterValue", 400, make, ec2, {"TagSpecifications": [
        {"ResourceType": "vpc", "Tags": [{"Key": "a", "Value": "b"}]}]})
    expect_error("InvalidLaunchTemplateName.MalformedException", 400, make, ec2, {"ImageId": "ami-1"},
                 n="bad name")


def test_run_instances_from_a_template(ec2, subnet):
    sid = subnet["SubnetId"]
    sg = ec2.create_security_group(GroupName=name("web"), Description="d", VpcId=subnet["VpcId"])["GroupId"]
    key = ec2.create_key_pair(KeyName=name("key"), KeyType="ed25519")["KeyName"]
    t = make(ec2, {
        "ImageId": "ami-11111111", "InstanceType": "t3.small", "KeyName": key,
        "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": sid, "Groups": [sg]}],
        "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "role", "Value": "web"},
                                                                     {"Key": "env", "Value": "prod"}]}],
        "DisableApiTermination": True,
    })
    tid = t["LaunchTemplateId"]
    ec2.create_launch_template_version(LaunchTemplateId=tid, SourceVersion="1",
                                       LaunchTemplateData={"InstanceType": "t3.medium"})
    # By id, default version: everything from the template.
    r = ec2.run_instances(MinCount=1, MaxCount=1, LaunchTemplate={"LaunchTemplateId": tid})
    (i,) = r["Instances"]
    assert (i["ImageId"], i["InstanceType"], i["SubnetId"]) == ("ami-11111111", "t3.small", sid)
    assert i["KeyName"] == key and [g["GroupId"] for g in i["SecurityGroups"]] == [sg]
    assert tags(i)["role"] == "web"
    # AWS's own tags name the template and the version launched (users cannot set aws: tags).
    assert tags(i)["aws:ec2launchtemplate:id"] == tid and tags(i)["aws:ec2launchtemplate:version"] == "1"
    found = ec2.describe_instances(Filters=[{"Name": "tag:aws:ec2launchtemplate:id", "Values": [tid]}])
    assert [x["InstanceId"] for res in found["Reservations"] for x in res["Instances"]] == [i["InstanceId"]]
    expect_error("InvalidParameterValue", 400, ec2.create_tags, Resources=[i["InstanceId"]],
                 Tags=[{"Key": "aws:ec2launchtemplate:version", "Value": "9"}])
    expect_error("InvalidParameterValue", 400, ec2.delete_tags, Resources=[i["InstanceId"]],
                 Tags=[{"Key": "aws:ec2launchtemplate:id"}])
    attr = ec2.describe_instance_attribute(InstanceId=i["InstanceId"], Attribute="disableApiTermination")
    assert attr["DisableApiTermination"]["Value"] is True
    expect_error("OperationNotPermitted", 400, ec2.terminate_instances, InstanceIds=[i["InstanceId"]])
    ec2.modify_instance_attribute(InstanceId=i["InstanceId"], DisableApiTermination={"Value": False})
    # By name and $Latest, with the request overriding one member and adding a tag.
    r = ec2.run_instances(MinCount=1, MaxCount=1, ImageId="ami-99999999", DisableApiTermination=False,
                          LaunchTemplate={"LaunchTemplateName": t["LaunchTemplateName"], "Version": "$Latest"},
                          TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "env", "Value": "test"}]}])
    (j,) = r["Instances"]
    assert (j["ImageId"], j["InstanceType"]) == ("ami-99999999", "t3.medium")
    assert {k: v for k, v in tags(j).items() if not k.startswith("aws:")} == {"role": "web", "env": "test"}
    assert tags(j)["aws:ec2launchtemplate:version"] == "2", "$Latest"
    # Version 1 by number.
    r = ec2.run_instances(MinCount=1, MaxCount=1, DisableApiTermination=False,
                          LaunchTemplate={"LaunchTemplateId": tid, "Version": "1"})
    assert r["Instances"][0]["InstanceType"] == "t3.small"
    assert tags(r["Instances"][0])["aws:ec2launchtemplate:version"] == "1"
    ec2.terminate_instances(InstanceIds=[i["InstanceId"], j["InstanceId"], r["Instances"][0]["InstanceId"]])
    # What AWS answers for templates and versions that do not exist.
    expect_error("InvalidLaunchTemplateId.NotFound", 400, ec2.run_instances, MinCount=1, MaxCount=1,
                 LaunchTemplate={"LaunchTemplateId": MISSING_ID})
    expect_error("InvalidLaunchTemplateName.NotFoundException", 400, ec2.run_instances, MinCount=1,
                 MaxCount=1, LaunchTemplate={"LaunchTemplateName": "no-such-template"})
    expect_error("InvalidLaunchTemplateId.VersionNotFound", 400, ec2.run_instances, MinCount=1, MaxCount=1,
                 LaunchTemplate={"LaunchTemplateId": tid, "Version": "5"})
    # A request subnet with the template's interfaces: AWS's combination refusal.
    expect_error("InvalidParameterCombination", 400, ec2.run_instances, MinCount=1, MaxCount=1, SubnetId=sid,
                 LaunchTemplate={"LaunchTemplateId": tid})
    ec2.delete_launch_template(LaunchTemplateId=tid)


def test_launch_templates_with_the_aws_cli(aws, subnet):
    n = name("cli")
    rc, out, err = aws("create-launch-template", "--launch-template-name", n, "--launch-template-data",
                       f'{{"ImageId":"ami-12345678","InstanceType":"t3.nano",'
                       f'"NetworkInterfaces":[{{"DeviceIndex":0,"SubnetId":"{subnet["SubnetId"]}"}}]}}')
    assert rc == 0, err
    tid = out["LaunchTemplate"]["LaunchTemplateId"]
    rc, out, err = aws("run-instances", "--launch-template", f"LaunchTemplateName={n},Version=$Default",
                       "--count", "1")
    assert rc == 0, err
    inst = out["Instances"][0]
    assert inst["InstanceType"] == "t3.nano" and inst["SubnetId"] == subnet["SubnetId"]
    assert {t["Key"]: t["Value"] for t in inst["Tags"]} == {"aws:ec2launchtemplate:id": tid,
                                                            "aws:ec2launchtemplate:version": "1"}
    rc, out, err = aws("describe-launch-template-versions", "--launch-template-id", tid, "--versions", "$Latest")
    assert rc == 0 and out["LaunchTemplateVersions"][0]["LaunchTemplateData"]["ImageId"] == "ami-12345678", err
    rc, out, err = aws("terminate-instances", "--instance-ids", inst["InstanceId"])
    assert rc == 0, err
    rc, out, err = aws("delete-launch-template", "--launch-template-id", tid)
    assert rc == 0, err
    rc, out, err = aws("describe-launch-templates", "--launch-template-ids", tid)
    assert rc != 0 and "InvalidLaunchTemplateId.NotFound" in err
