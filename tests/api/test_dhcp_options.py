"""DHCP option sets through boto3: create (with tags), describe by id/filters/paginator,
associate with a VPC (DescribeVpcs' DhcpOptionsId follows, `default` removes it), delete, and
each refusal with AWS's code and HTTP status; DryRun. New VPCs use the region's default set
(`ec2.internal`, `AmazonProvidedDNS`), as on AWS."""

from helpers import expect_error, tags

MISSING = "dopt-0123456789abcdef0"


def conf(d):
    return {c["Key"]: [v["Value"] for v in c["Values"]] for c in d["DhcpConfigurations"]}


def make(ec2, **extra):
    return ec2.create_dhcp_options(DhcpConfigurations=[
        {"Key": "domain-name", "Values": ["corp.example"]},
        {"Key": "domain-name-servers", "Values": ["10.0.0.2", "10.0.0.3"]},
        {"Key": "ntp-servers", "Values": ["10.0.0.9"]},
    ], **extra)["DhcpOptions"]


def test_new_vpcs_use_the_regions_default_set(ec2, aws):
    a = ec2.create_vpc(CidrBlock="10.90.0.0/16")["Vpc"]
    code, out, err = aws("create-vpc", "--cidr-block", "10.91.0.0/16")
    assert code == 0, err
    b = out["Vpc"]
    default = a["DhcpOptionsId"]
    assert default.startswith("dopt-") and b["DhcpOptionsId"] == default
    got = ec2.describe_dhcp_options(DhcpOptionsIds=[default])["DhcpOptions"][0]
    assert conf(got) == {"domain-name": ["ec2.internal"], "domain-name-servers": ["AmazonProvidedDNS"]}
    assert got["OwnerId"] == "123456789012"
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "dhcp-options-id", "Values": [default]}])["Vpcs"]
    assert {a["VpcId"], b["VpcId"]} <= {v["VpcId"] for v in vpcs}
    # In use: not deletable; `default` (no option set) can still be chosen.
    expect_error("DependencyViolation", 400, ec2.delete_dhcp_options, DhcpOptionsId=default)
    ec2.associate_dhcp_options(DhcpOptionsId="default", VpcId=b["VpcId"])
    assert ec2.describe_vpcs(VpcIds=[b["VpcId"]])["Vpcs"][0]["DhcpOptionsId"] == "default"
    ec2.associate_dhcp_options(DhcpOptionsId=default, VpcId=b["VpcId"])
    assert ec2.describe_vpcs(VpcIds=[b["VpcId"]])["Vpcs"][0]["DhcpOptionsId"] == default
    for v in (a, b):
        ec2.delete_vpc(VpcId=v["VpcId"])


def test_dhcp_options_lifecycle(ec2, vpc):
    vid = vpc["VpcId"]
    region_default = vpc["DhcpOptionsId"]
    assert region_default.startswith("dopt-")
    expect_error("DryRunOperation", 412, make, ec2, DryRun=True)
    d = make(ec2, TagSpecifications=[{"ResourceType": "dhcp-options", "Tags": [{"Key": "Name", "Value": "corp"}]}])
    did = d["DhcpOptionsId"]
    assert did.startswith("dopt-") and tags(d) == {"Name": "corp"}
    assert conf(d) == {"domain-name": ["corp.example"], "domain-name-servers": ["10.0.0.2", "10.0.0.3"],
                       "ntp-servers": ["10.0.0.9"]}
    got = ec2.describe_dhcp_options(DhcpOptionsIds=[did])["DhcpOptions"]
    assert len(got) == 1 and conf(got[0]) == conf(d)
    expect_error("InvalidDhcpOptionID.NotFound", 400, ec2.describe_dhcp_options, DhcpOptionsIds=[MISSING])
    expect_error("DryRunOperation", 412, ec2.associate_dhcp_options, DhcpOptionsId=did, VpcId=vid, DryRun=True)
    assert ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0]["DhcpOptionsId"] == region_default
    ec2.associate_dhcp_options(DhcpOptionsId=did, VpcId=vid)
    assert ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0]["DhcpOptionsId"] == did
    got = ec2.describe_vpcs(Filters=[{"Name": "dhcp-options-id", "Values": [did]}])["Vpcs"]
    assert [v["VpcId"] for v in got] == [vid]
    expect_error("DependencyViolation", 400, ec2.delete_dhcp_options, DhcpOptionsId=did)
    expect_error("InvalidDhcpOptionID.NotFound", 400, ec2.associate_dhcp_options, DhcpOptionsId=MISSING, VpcId=vid)
    expect_error("InvalidVpcID.NotFound", 400, ec2.associate_dhcp_options, DhcpOptionsId=did,
                 VpcId="vpc-0123456789abcdef0")
    ec2.associate_dhcp_options(DhcpOptionsId="default", VpcId=vid)
    assert ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0]["DhcpOptionsId"] == "default"
    # Tags through CreateTags/DeleteTags, visible in DescribeTags.
    ec2.create_tags(Resources=[did], Tags=[{"Key": "env", "Value": "dev"}])
    rows = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [did]}])["Tags"]
    assert {(t["ResourceType"], t["Key"]) for t in rows} == {("dhcp-options", "Name"), ("dhcp-options", "env")}
    ec2.delete_tags(Resources=[did], Tags=[{"Key": "Name"}])
    assert tags(ec2.describe_dhcp_options(DhcpOptionsIds=[did])["DhcpOptions"][0]) == {"env": "dev"}
    expect_error("DryRunOperation", 412, ec2.delete_dhcp_options, DhcpOptionsId=did, DryRun=True)
    ec2.delete_dhcp_options(DhcpOptionsId=did)
    expect_error("InvalidDhcpOptionID.NotFound", 400, ec2.delete_dhcp_options, DhcpOptionsId=did)
    expect_error("InvalidDhcpOptionID.NotFound", 400, ec2.create_tags, Resources=[did],
                 Tags=[{"Key": "a", "Value": "b"}])


def test_dhcp_options_refusals(ec2):
    for bad in ([{"Key": "bogus", "Values": ["x"]}],
                [{"Key": "domain-name-servers", "Values": ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4", "1.1.1.5"]}],
                [{"Key": "ntp-servers", "Values": ["not-an-ip"]}],
                [{"Key": "netbios-node-type", "Values": ["3"]}],
                [{"Key": "domain-name", "Values": ["bad_name!"]}]):
        expect_error("InvalidParameterValue", 400, ec2.create_dhcp_options, DhcpConfigurations=bad)
    ok = ec2.create_dhcp_options(DhcpConfigurations=[
        {"Key": "domain-name-servers", "Values": ["AmazonProvidedDNS"]},
        {"Key": "netbios-node-type", "Values": ["2"]}])["DhcpOptions"]
    assert conf(ok) == {"domain-name-servers": ["AmazonProvidedDNS"], "netbios-node-type": ["2"]}
    ec2.delete_dhcp_options(DhcpOptionsId=ok["DhcpOptionsId"])


def test_dhcp_options_filters_and_paginator(ec2):
    made = [make(ec2, TagSpecifications=[{"ResourceType": "dhcp-options", "Tags": [{"Key": "dpage", "Value": "yes"}]}])
            ["DhcpOptionsId"] for _ in range(7)]
    mine = [{"Name": "tag:dpage", "Values": ["yes"]}]
    pages = list(ec2.get_paginator("describe_dhcp_options").paginate(Filters=mine, PaginationConfig={"PageSize": 5}))
    assert [len(p["DhcpOptions"]) for p in pages] == [5, 2]
    assert sorted(d["DhcpOptionsId"] for p in pages for d in p["DhcpOptions"]) == sorted(made)
    got = ec2.describe_dhcp_options(Filters=mine + [{"Name": "key", "Values": ["ntp-*"]},
                                                    {"Name": "value", "Values": ["10.0.0.9"]}])["DhcpOptions"]
    assert len(got) == 7
    got = ec2.describe_dhcp_options(Filters=mine + [{"Name": "value", "Values": ["9.9.9.9"]}])["DhcpOptions"]
    assert got == []
    got = ec2.describe_dhcp_options(Filters=[{"Name": "dhcp-options-id", "Values": [made[0]]}])["DhcpOptions"]
    assert [d["DhcpOptionsId"] for d in got] == [made[0]]
    expect_error("InvalidParameterValue", 400, ec2.describe_dhcp_options, Filters=[{"Name": "nope", "Values": ["x"]}])
    for d in made:
        ec2.delete_dhcp_options(DhcpOptionsId=d)
