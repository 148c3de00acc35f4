"""Secondary IPv4 CIDR blocks of a VPC (AssociateVpcCidrBlock / DisassociateVpcCidrBlock) through
boto3 and the AWS CLI: AWS's range restrictions, the quota of five blocks, overlaps with the VPC's
blocks, routes and peered VPCs, the primary and blocks with subnets refused on disassociation,
the states and filters of CidrBlockAssociationSet, local routes in every route table, subnets and
instances in a secondary block, IPv6 members refused by name."""

import pytest

from helpers import expect_error


def blocks(ec2, vpc_id):
    vpc = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
    return {b["CidrBlock"]: (b["AssociationId"], b["CidrBlockState"]["State"])
            for b in vpc["CidrBlockAssociationSet"]}


def local_routes(ec2, vpc_id):
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["RouteTables"]
    return [sorted(r["DestinationCidrBlock"] for r in t["Routes"] if r.get("GatewayId") == "local")
            for t in tables]


def test_associate_and_disassociate_a_block(ec2):
    vpc = ec2.create_vpc(CidrBlock="10.60.0.0/16")["Vpc"]["VpcId"]
    rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    assert list(blocks(ec2, vpc)) == ["10.60.0.0/16"]
    out = ec2.associate_vpc_cidr_block(VpcId=vpc, CidrBlock="10.61.0.7/16")
    assoc = out["CidrBlockAssociation"]
    assert out["VpcId"] == vpc
    assert assoc["CidrBlock"] == "10.61.0.0/16", "canonicalised"
    assert assoc["AssociationId"].startswith("vpc-cidr-assoc-")
    assert assoc["CidrBlockState"]["State"] == "associating"
    got = blocks(ec2, vpc)
    assert got["10.61.0.0/16"] == (assoc["AssociationId"], "associated")
    assert ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["CidrBlock"] == "10.60.0.0/16", "primary"
    # Every route table of the VPC, old and new, routes the block locally.
    ec2.create_route_table(VpcId=vpc)
    assert local_routes(ec2, vpc) == [["10.60.0.0/16", "10.61.0.0/16"]] * 3
    # Filters on the association set.
    for name, value in [("cidr-block-association.cidr-block", "10.61.0.0/16"),
                        ("cidr-block-association.association-id", assoc["AssociationId"]),
                        ("cidr-block-association.state", "associated")]:
        found = ec2.describe_vpcs(Filters=[{"Name": name, "Values": [value]}])["Vpcs"]
        assert vpc in [v["VpcId"] for v in found], name
    # `cidr-block` is the primary block only.
    found = ec2.describe_vpcs(Filters=[{"Name": "cidr-block", "Values": ["10.61.0.0/16"]}])["Vpcs"]
    assert vpc not in [v["VpcId"] for v in found]

    # A subnet in the secondary block; an instance in it gets an address there.
    sub = ec2.create_subnet(VpcId=vpc, CidrBlock="10.61.1.0/24")["Subnet"]
    ec2.associate_route_table(RouteTableId=rtb, SubnetId=sub["SubnetId"])
    inst = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1,
                             SubnetId=sub["SubnetId"])["Instances"][0]
    assert inst["PrivateIpAddress"].startswith("10.61.1.")
    expect_error("InvalidSubnet.Range", 400, ec2.create_subnet, VpcId=vpc, CidrBlock="10.62.0.0/24")
    # Not while a subnet is in it; never the primary.
    err = expect_error("InvalidCidrBlock.InUse", 400, ec2.disassociate_vpc_cidr_block,
                       AssociationId=assoc["AssociationId"])
    assert "10.61.0.0/16" in err["Error"]["Message"]
    primary = blocks(ec2, vpc)["10.60.0.0/16"][0]
    err = expect_error("OperationNotPermitted", 400, ec2.disassociate_vpc_cidr_block, AssociationId=primary)
    assert err["Error"]["Message"] == (f"The vpc CIDR block with association ID {primary} may not be "
                                       "disassociated. It is the primary IPv4 CIDR block of the VPC")
    expect_error("InvalidVpcCidrBlockAssociationID.NotFound", 400, ec2.disassociate_vpc_cidr_block,
                 AssociationId="vpc-cidr-assoc-0123456789abcdef0")
    ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[inst["InstanceId"]],
                                               WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    ec2.delete_subnet(SubnetId=sub["SubnetId"])
    out = ec2.disassociate_vpc_cidr_block(AssociationId=assoc["AssociationId"])
    assert out["VpcId"] == vpc
    assert out["CidrBlockAssociation"]["CidrBlockState"]["State"] == "disassociating"
    assert out["CidrBlockAssociation"]["CidrBlock"] == "10.61.0.0/16"
    # Listed as disassociated (as AWS does for a while); its local routes are gone.
    assert blocks(ec2, vpc)["10.61.0.0/16"] == (assoc["AssociationId"], "disassociated")
    assert local_routes(ec2, vpc) == [["10.60.0.0/16"]] * 3
    expect_error("InvalidVpcCidrBlockAssociationID.NotFound", 400, ec2.disassociate_vpc_cidr_block,
                 AssociationId=assoc["AssociationId"])
    expect_error("InvalidSubnet.Range", 400, ec2.create_subnet, VpcId=vpc, CidrBlock="10.61.1.0/24")
    # The block may come back, with a new association.
    again = ec2.associate_vpc_cidr_block(VpcId=vpc, CidrBlock="10.61.0.0/16")["CidrBlockAssociation"]
    assert again["AssociationId"] != assoc["AssociationId"]
    assert blocks(ec2, vpc)["10.61.0.0/16"] == (again["AssociationId"], "associated")


@pytest.mark.parametrize("primary,cidr,ok", [
    ("10.63.0.0/16", "172.16.0.0/16", False),   # another RFC 1918 range
    ("10.63.0.0/16", "192.168.0.0/20", False),
    ("10.63.0.0/16", "198.19.0.0/16", False),
    ("10.63.0.0/16", "169.254.0.0/16", False),  # link local
    ("10.63.0.0/16", "100.64.0.0/16", True),
    ("10.63.0.0/16", "203.0.113.0/24", True),   # publicly routable
    ("10.1.0.0/16", "10.0.5.0/24", False),      # 10.0.0.0/15 holds a block
    ("172.20.0.0/16", "172.31.0.0/16", False),
    ("172.20.0.0/16", "172.21.0.0/16", True),
    ("100.64.0.0/16", "10.64.0.0/16", False),   # non-RFC 1918 primary: no RFC 1918 block
])
def test_range_restrictions(ec2, primary, cidr, ok):
    vpc = ec2.create_vpc(CidrBlock=primary)["Vpc"]["VpcId"]
    if ok:
        ec2.associate_vpc_cidr_block(VpcId=vpc, CidrBlock=cidr)
        assert blocks(ec2, vpc)[cidr][1] == "associated"
    else:
        err = expect_error("InvalidVpc.Range", 400, ec2.associate_vpc_cidr_block, VpcId=vpc, CidrBlock=cidr)
        assert err["Error"]["Message"].startswith(f"The CIDR '{cidr}' is restricted.")
        assert list(blocks(ec2, vpc)) == [primary]


def test_refusals(ec2):
    vpc = ec2.create_vpc(CidrBlock="10.64.0.0/16")["Vpc"]["VpcId"]
    for bad in ["10.65.0.0/15", "10.65.0.0/29"]:
        err = expect_error("InvalidVpc.Range", 400, ec2.associate_vpc_cidr_block, VpcId=vpc, CidrBlock=bad)
        assert err["Error"]["Message"] == f"The CIDR '{bad}' is invalid."
    expect_error("InvalidParameterValue", 400, ec2.associate_vpc_cidr_block, VpcId=vpc, CidrBlock="10.65.0/16")
    expect_error("InvalidVpcID.NotFound", 400, ec2.associate_vpc_cidr_block,
                 VpcId="vpc-0123456789abcdef0", CidrBlock="10.65.0.0/16")
    expect_error("MissingParameter", 400, ec2.associate_vpc_cidr_block, VpcId=vpc)
    # Overlap with one of the VPC's blocks.
    expect_error("InvalidVpc.Range", 400, ec2.associate_vpc_cidr_block, VpcId=vpc, CidrBlock="10.64.7.0/24")
    # Five blocks with the primary, AWS's default quota.
    for i in range(4):
        ec2.associate_vpc_cidr_block(VpcId=vpc, CidrBlock=f"10.{66 + i}.0.0/16")
    err = expect_error("CidrLimitExceeded", 400, ec2.associate_vpc_cidr_block, VpcId=vpc, CidrBlock="10.70.0.0/16")
    assert err["Error"]["Message"] == f"This network '{vpc}' has met its maximum number of allowed CIDRs: 5"
    # IPv6 and IPAM are refused by name.
    for member, value in [("AmazonProvidedIpv6CidrBlock", True), ("Ipv6CidrBlock", "2001:db8::/56"),
                          ("Ipv4IpamPoolId", "ipam-pool-0123456789abcdef0")]:
        err = expect_error("InvalidParameterValue", 400, ec2.associate_vpc_cidr_block,
                           VpcId=vpc, **{member: value})
        assert member in err["Error"]["Message"]


def test_routes_and_peering_limit_blocks(ec2):
    a = ec2.create_vpc(CidrBlock="10.72.0.0/16")["Vpc"]["VpcId"]
    b = ec2.create_vpc(CidrBlock="10.73.0.0/16")["Vpc"]["VpcId"]
    pcx = ec2.create_vpc_peering_connection(VpcId=a, PeerVpcId=b)["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    # The requester of a pending request cannot add a block.
    expect_error("OperationNotPermitted", 400, ec2.associate_vpc_cidr_block, VpcId=a, CidrBlock="10.74.0.0/16")
    ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    # Not overlapping the active peer's blocks.
    expect_error("InvalidVpc.Range", 400, ec2.associate_vpc_cidr_block, VpcId=a, CidrBlock="10.73.4.0/24")
    # Not the same as or larger than a route's destination.
    rtb = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [a]}])["RouteTables"][0]["RouteTableId"]
    ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="10.75.0.0/24", VpcPeeringConnectionId=pcx)
    expect_error("InvalidVpc.Range", 400, ec2.associate_vpc_cidr_block, VpcId=a, CidrBlock="10.75.0.0/16")
    ec2.associate_vpc_cidr_block(VpcId=a, CidrBlock="10.75.0.0/25")
    # The peering connection shows every block of each side.
    p = ec2.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pcx])["VpcPeeringConnections"][0]
    assert [c["CidrBlock"] for c in p["RequesterVpcInfo"]["CidrBlockSet"]] == ["10.72.0.0/16", "10.75.0.0/25"]
    assert p["RequesterVpcInfo"]["CidrBlock"] == "10.72.0.0/16"


def test_cli_secondary_block(aws):
    rc, out, err = aws("create-vpc", "--cidr-block", "10.76.0.0/16")
    assert rc == 0, err
    vpc = out["Vpc"]["VpcId"]
    rc, out, err = aws("associate-vpc-cidr-block", "--vpc-id", vpc, "--cidr-block", "10.77.0.0/16")
    assert rc == 0, err
    assoc = out["CidrBlockAssociation"]["AssociationId"]
    assert out["CidrBlockAssociation"]["CidrBlockState"]["State"] == "associating"
    rc, out, err = aws("describe-vpcs", "--filters", "Name=cidr-block-association.cidr-block,Values=10.77.0.0/16")
    assert rc == 0, err
    assert [v["VpcId"] for v in out["Vpcs"]] == [vpc]
    rc, out, err = aws("create-subnet", "--vpc-id", vpc, "--cidr-block", "10.77.3.0/24")
    assert rc == 0, err
    subnet = out["Subnet"]["SubnetId"]
    rc, _, err = aws("disassociate-vpc-cidr-block", "--association-id", assoc)
    assert rc != 0 and "InvalidCidrBlock.InUse" in err
    rc, _, err = aws("delete-subnet", "--subnet-id", subnet)
    assert rc == 0, err
    rc, out, err = aws("disassociate-vpc-cidr-block", "--association-id", assoc)
    assert rc == 0, err
    assert out["CidrBlockAssociation"]["CidrBlockState"]["State"] == "disassociating"
    rc, _, err = aws("associate-vpc-cidr-block", "--vpc-id", vpc, "--amazon-provided-ipv6-cidr-block")
    assert rc != 0 and "AmazonProvidedIpv6CidrBlock" in err
