"""DescribeVpcAttribute/ModifyVpcAttribute, ModifySubnetAttribute, and the default VPC (a
server started without --no-default-vpc has it, and RunInstances without a subnet uses it)."""

import pytest

from conftest import Server
from helpers import expect_error


def vpc_attr(ec2, vpc_id, name):
    key = name[0].upper() + name[1:]
    return ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=name)[key]["Value"]


def test_vpc_attributes(ec2, vpc):
    vid = vpc["VpcId"]
    assert vpc_attr(ec2, vid, "enableDnsSupport") is True
    assert vpc_attr(ec2, vid, "enableDnsHostnames") is False
    ec2.modify_vpc_attribute(VpcId=vid, EnableDnsHostnames={"Value": True})
    assert vpc_attr(ec2, vid, "enableDnsHostnames") is True
    # DNS support cannot go while hostnames are on.
    expect_error("InvalidParameterValue", 400, ec2.modify_vpc_attribute, VpcId=vid, EnableDnsSupport={"Value": False})
    expect_error("InvalidParameterCombination", 400, ec2.modify_vpc_attribute, VpcId=vid,
                 EnableDnsSupport={"Value": True}, EnableDnsHostnames={"Value": True})
    expect_error("InvalidVpcID.NotFound", 400, ec2.describe_vpc_attribute,
                 VpcId="vpc-0123456789abcdef0", Attribute="enableDnsSupport")
    expect_error("DryRunOperation", 412, ec2.describe_vpc_attribute, VpcId=vid, Attribute="enableDnsSupport", DryRun=True)


def test_subnet_attribute(ec2, subnet):
    sid = subnet["SubnetId"]
    assert subnet["MapPublicIpOnLaunch"] is False
    ec2.modify_subnet_attribute(SubnetId=sid, MapPublicIpOnLaunch={"Value": True})
    got = ec2.describe_subnets(SubnetIds=[sid])["Subnets"][0]
    assert got["MapPublicIpOnLaunch"] is True
    assert got["DefaultForAz"] is False
    expect_error("InvalidSubnetID.NotFound", 400, ec2.modify_subnet_attribute,
                 SubnetId="subnet-0123456789abcdef0", MapPublicIpOnLaunch={"Value": True})


def test_no_default_vpc_with_the_flag(ec2):
    assert ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"] == []
    expect_error("VPCIdNotSpecified", 400, ec2.run_instances, ImageId="ami-12345678", MinCount=1, MaxCount=1)


@pytest.fixture(scope="module")
def default_server(workdir):
    srv = Server(workdir / "default-vpc", default_vpc=True).start()
    yield srv
    srv.stop()


def test_default_vpc_exists_without_the_flag(default_server):
    ec2 = default_server.client()
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    assert len(vpcs) == 1
    v = vpcs[0]
    assert v["CidrBlock"] == "172.31.0.0/16" and v["IsDefault"] is True
    assert vpc_attr(ec2, v["VpcId"], "enableDnsHostnames") is True
    assert vpc_attr(ec2, v["VpcId"], "enableDnsSupport") is True
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [v["VpcId"]]}])["Subnets"]
    subnets.sort(key=lambda s: s["AvailabilityZone"])
    # One default subnet per zone, as in a new AWS account.
    assert [(s["AvailabilityZone"], s["CidrBlock"], s["DefaultForAz"], s["MapPublicIpOnLaunch"])
            for s in subnets] == [(f"us-east-1{z}", f"172.31.{16 * n}.0/20", True, True)
                                  for n, z in enumerate("abcdef")]
    default_for_az = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    assert sorted(s["SubnetId"] for s in default_for_az) == sorted(s["SubnetId"] for s in subnets)
    # No subnet: the default subnet of the zone the hosts are in (us-east-1a).
    inst = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]
    assert inst["SubnetId"] == subnets[0]["SubnetId"]
    assert inst["PrivateIpAddress"].startswith("172.31.")
    ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])
    # Restarting does not create a second one.
    default_server.stop()
    default_server.start()
    ec2 = default_server.client()
    assert len(ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]) == 1
