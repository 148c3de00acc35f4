"""DescribeTags and CreateTags limits through boto3: every tag of every resource, filters
(resource-id, resource-type, key, value, wildcards), the paginator, the 50-tag limit, the reserved
`aws:` prefix and DryRun."""

from helpers import expect_error


def rows(resp):
    return sorted((t["ResourceId"], t["ResourceType"], t["Key"], t["Value"]) for t in resp["Tags"])


def test_describe_tags_filters(ec2, vpc):
    vid = vpc["VpcId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.create_tags(Resources=[vid, igw], Tags=[{"Key": "dt-team", "Value": "red"}])
    ec2.create_tags(Resources=[vid], Tags=[{"Key": "dt-env", "Value": "prod"}])
    mine = [{"Name": "resource-id", "Values": [vid, igw]}]
    got = rows(ec2.describe_tags(Filters=mine))
    assert got == sorted([(vid, "vpc", "dt-env", "prod"), (vid, "vpc", "dt-team", "red"),
                          (igw, "internet-gateway", "dt-team", "red")])
    got = rows(ec2.describe_tags(Filters=mine + [{"Name": "resource-type", "Values": ["internet-gateway"]}]))
    assert got == [(igw, "internet-gateway", "dt-team", "red")]
    got = rows(ec2.describe_tags(Filters=[{"Name": "key", "Values": ["dt-*"]},
                                          {"Name": "value", "Values": ["pr?d"]}]))
    assert got == [(vid, "vpc", "dt-env", "prod")]
    # Unfiltered: includes ours (and anything other tests tagged).
    assert (igw, "internet-gateway", "dt-team", "red") in rows(ec2.describe_tags())
    expect_error("InvalidParameterValue", 400, ec2.describe_tags, Filters=[{"Name": "bogus", "Values": ["x"]}])
    expect_error("DryRunOperation", 412, ec2.describe_tags, DryRun=True)
    ec2.delete_tags(Resources=[vid, igw])
    assert ec2.describe_tags(Filters=mine)["Tags"] == []
    ec2.delete_internet_gateway(InternetGatewayId=igw)


def test_describe_tags_paginator(ec2, vpc):
    vid = vpc["VpcId"]
    ec2.create_tags(Resources=[vid], Tags=[{"Key": f"pg{i}", "Value": str(i)} for i in range(12)])
    # MaxResults is 5..1000 for DescribeTags, as on AWS.
    pages = list(ec2.get_paginator("describe_tags").paginate(
        Filters=[{"Name": "resource-id", "Values": [vid]}], PaginationConfig={"PageSize": 5}))
    assert [len(p["Tags"]) for p in pages] == [5, 5, 2]
    assert sorted(t["Key"] for p in pages for t in p["Tags"]) == sorted(f"pg{i}" for i in range(12))
    expect_error("InvalidNextToken", 400, ec2.describe_tags, MaxResults=5, NextToken="garbage")


def test_create_tags_limits(ec2, vpc):
    vid = vpc["VpcId"]
    expect_error("InvalidParameterValue", 400, ec2.create_tags, Resources=[vid],
                 Tags=[{"Key": "aws:owner", "Value": "x"}])
    ec2.create_tags(Resources=[vid], Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
    expect_error("TagLimitExceeded", 400, ec2.create_tags, Resources=[vid], Tags=[{"Key": "one-more", "Value": "v"}])
    # Replacing an existing key is not a new tag.
    ec2.create_tags(Resources=[vid], Tags=[{"Key": "k0", "Value": "changed"}])
    expect_error("DryRunOperation", 412, ec2.create_tags, Resources=[vid], Tags=[{"Key": "k1", "Value": "x"}],
                 DryRun=True)
    got = {t["Key"]: t["Value"] for t in ec2.describe_tags(
        Filters=[{"Name": "resource-id", "Values": [vid]}])["Tags"]}
    assert len(got) == 50 and got["k0"] == "changed" and got["k1"] == "v"
