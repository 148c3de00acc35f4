"""CreateVpc/DescribeVpcs/DeleteVpc and CreateSubnet/DescribeSubnets/DeleteSubnet through boto3."""

import re

from helpers import expect_error, tags

ID = re.compile(r"^(vpc|subnet)-[0-9a-f]{17}$")


def test_create_vpc_fields_and_canonical_cidr(ec2):
    v = ec2.create_vpc(
        CidrBlock="100.68.0.18/18",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "canon"}]}],
    )["Vpc"]
    assert ID.match(v["VpcId"])
    assert v["CidrBlock"] == "100.68.0.0/18"
    assert v["State"] == "available"
    assert v["IsDefault"] is False
    assert v["DhcpOptionsId"].startswith("dopt-"), "the region's default DHCP option set"
    assert v["InstanceTenancy"] == "default"
    assert v["OwnerId"] == "123456789012"
    assoc = v["CidrBlockAssociationSet"]
    assert len(assoc) == 1 and assoc[0]["CidrBlock"] == "100.68.0.0/18"
    assert assoc[0]["CidrBlockState"]["State"] == "associated"
    assert tags(v) == {"Name": "canon"}
    got = ec2.describe_vpcs(VpcIds=[v["VpcId"]])["Vpcs"]
    assert got == [v]


def test_vpc_cidr_refusals(ec2):
    before = ec2.describe_vpcs()["Vpcs"]
    for cidr in ["10.0.0.0/8", "10.0.0.0/15", "10.0.0.0/29", "10.0.0.0/32"]:
        expect_error("InvalidVpc.Range", 400, ec2.create_vpc, CidrBlock=cidr)
    for cidr in ["10.0.0.0", "10.0.0.0/33", "10.0.0/16", "banana/16", "10.0.0.256/16"]:
        expect_error("InvalidParameterValue", 400, ec2.create_vpc, CidrBlock=cidr)
    assert ec2.describe_vpcs()["Vpcs"] == before, "refused requests create nothing"


def test_overlapping_vpcs_are_allowed_and_get_distinct_ids(ec2):
    a = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]
    b = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]
    assert a["VpcId"] != b["VpcId"]


def test_describe_vpcs_filters(ec2):
    name = "flt-vpc-7f3a"
    v = ec2.create_vpc(
        CidrBlock="172.31.0.0/16",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": name}, {"Key": "env", "Value": "qa"}]}],
    )["Vpc"]
    vid = v["VpcId"]

    def ids(filters):
        return {x["VpcId"] for x in ec2.describe_vpcs(Filters=filters)["Vpcs"]}

    assert vid in ids([{"Name": "cidr", "Values": ["172.31.0.0/16"]}])
    assert vid in ids([{"Name": "cidr-block", "Values": ["172.31.0.0/16"]}])
    assert vid in ids([{"Name": "tag:Name", "Values": ["flt-vpc-*"]}])
    assert vid in ids([{"Name": "tag:Name", "Values": ["flt-vpc-7f3?"]}])
    assert vid not in ids([{"Name": "tag:Name", "Values": ["flt-vpc-7f3"]}])
    assert ids([{"Name": "tag:Name", "Values": [name]}]) == {vid}
    assert vid in ids([{"Name": "tag-key", "Values": ["env"]}])
    assert vid in ids([{"Name": "tag-value", "Values": ["qa"]}])
    # OR within one filter, AND across filters.
    assert vid in ids([{"Name": "vpc-id", "Values": ["vpc-00000000000000000", vid]}])
    assert ids([{"Name": "vpc-id", "Values": [vid]}, {"Name": "state", "Values": ["available"]}]) == {vid}
    assert ids([{"Name": "vpc-id", "Values": [vid]}, {"Name": "state", "Values": ["pending"]}]) == set()
    expect_error("InvalidParameterValue", 400, ec2.describe_vpcs, Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    expect_error("InvalidVpcID.NotFound", 400, ec2.describe_vpcs, VpcIds=[vid, "vpc-0123456789abcdef0"])


def test_delete_vpc(ec2):
    v = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]
    s = ec2.create_subnet(VpcId=v["VpcId"], CidrBlock="10.9.1.0/24")["Subnet"]
    expect_error("DependencyViolation", 400, ec2.delete_vpc, VpcId=v["VpcId"])
    assert ec2.describe_vpcs(VpcIds=[v["VpcId"]])["Vpcs"], "still there"
    ec2.delete_subnet(SubnetId=s["SubnetId"])
    ec2.delete_vpc(VpcId=v["VpcId"])
    expect_error("InvalidVpcID.NotFound", 400, ec2.describe_vpcs, VpcIds=[v["VpcId"]])
    expect_error("InvalidVpcID.NotFound", 400, ec2.delete_vpc, VpcId=v["VpcId"])
    expect_error("MissingParameter", 400, ec2.delete_vpc, VpcId="")


def test_create_subnet_fields(ec2, vpc):
    s = ec2.create_subnet(
        VpcId=vpc["VpcId"], CidrBlock="10.0.1.0/24",
        TagSpecifications=[{"ResourceType": "subnet", "Tags": [{"Key": "Name", "Value": "s1"}]}],
    )["Subnet"]
    assert ID.match(s["SubnetId"])
    assert s["VpcId"] == vpc["VpcId"]
    assert s["CidrBlock"] == "10.0.1.0/24"
    assert s["AvailableIpAddressCount"] == 251
    assert s["AvailabilityZone"] == "us-east-1a"
    assert s["State"] == "available"
    assert s["DefaultForAz"] is False
    assert tags(s) == {"Name": "s1"}
    s28 = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.2.0/28", AvailabilityZone="us-east-1b")["Subnet"]
    assert s28["AvailableIpAddressCount"] == 11
    assert s28["AvailabilityZone"] == "us-east-1b"
    # Host bits are cleared.
    s3 = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.3.77/24")["Subnet"]
    assert s3["CidrBlock"] == "10.0.3.0/24"
    got = ec2.describe_subnets(SubnetIds=[s["SubnetId"]])["Subnets"]
    assert got == [s]


def test_subnet_refusals(ec2, vpc):
    vid = vpc["VpcId"]
    ec2.create_subnet(VpcId=vid, CidrBlock="10.0.0.0/24")
    before = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]}])["Subnets"]
    expect_error("InvalidSubnet.Range", 400, ec2.create_subnet, VpcId=vid, CidrBlock="10.1.0.0/24")
    expect_error("InvalidSubnet.Range", 400, ec2.create_subnet, VpcId=vid, CidrBlock="10.0.0.0/29")
    expect_error("InvalidSubnet.Range", 400, ec2.create_subnet, VpcId=vid, CidrBlock="10.0.0.0/8")
    expect_error("InvalidSubnet.Conflict", 400, ec2.create_subnet, VpcId=vid, CidrBlock="10.0.0.128/25")
    expect_error("InvalidSubnet.Conflict", 400, ec2.create_subnet, VpcId=vid, CidrBlock="10.0.0.0/16")
    expect_error("InvalidParameterValue", 400, ec2.create_subnet, VpcId=vid, CidrBlock="10.0.7.0/2x")
    expect_error("InvalidVpcID.NotFound", 400, ec2.create_subnet, VpcId="vpc-0123456789abcdef0", CidrBlock="10.0.1.0/24")
    expect_error("MissingParameter", 400, ec2.create_subnet, VpcId=vid, CidrBlock="")
    after = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]}])["Subnets"]
    assert after == before


def test_describe_subnets_filters_and_delete(ec2, vpc):
    vid = vpc["VpcId"]
    a = ec2.create_subnet(VpcId=vid, CidrBlock="10.0.10.0/24")["Subnet"]
    b = ec2.create_subnet(VpcId=vid, CidrBlock="10.0.11.0/24", AvailabilityZone="us-east-1c")["Subnet"]

    def ids(filters):
        return {x["SubnetId"] for x in ec2.describe_subnets(Filters=filters)["Subnets"]}

    assert ids([{"Name": "vpc-id", "Values": [vid]}]) == {a["SubnetId"], b["SubnetId"]}
    assert ids([{"Name": "vpc-id", "Values": [vid]}, {"Name": "cidr-block", "Values": ["10.0.11.0/24"]}]) == {b["SubnetId"]}
    assert ids([{"Name": "vpc-id", "Values": [vid]}, {"Name": "availability-zone", "Values": ["us-east-1c"]}]) == {b["SubnetId"]}
    assert ids([{"Name": "subnet-id", "Values": [a["SubnetId"]]}]) == {a["SubnetId"]}
    ec2.delete_subnet(SubnetId=a["SubnetId"])
    assert ids([{"Name": "vpc-id", "Values": [vid]}]) == {b["SubnetId"]}
    expect_error("InvalidSubnetID.NotFound", 400, ec2.delete_subnet, SubnetId=a["SubnetId"])
    expect_error("InvalidSubnetID.NotFound", 400, ec2.describe_subnets, SubnetIds=[a["SubnetId"]])


def test_pagination(ec2):
    vpcs = [ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"] for _ in range(7)]
    flt = [{"Name": "cidr", "Values": ["10.77.0.0/16"]}]
    first = ec2.describe_vpcs(Filters=flt, MaxResults=5)
    assert len(first["Vpcs"]) == 5 and first.get("NextToken")
    seen = [v["VpcId"] for v in first["Vpcs"]]
    rest = ec2.describe_vpcs(Filters=flt, MaxResults=5, NextToken=first["NextToken"])
    assert "NextToken" not in rest
    seen += [v["VpcId"] for v in rest["Vpcs"]]
    assert sorted(seen) == sorted(vpcs)
    pages = ec2.get_paginator("describe_vpcs").paginate(Filters=flt, PaginationConfig={"PageSize": 5})
    assert sorted(v["VpcId"] for p in pages for v in p["Vpcs"]) == sorted(vpcs)
    expect_error("InvalidNextToken", 400, ec2.describe_vpcs, MaxResults=5, NextToken="garbage")
