"""Route tables through boto3: the main table every VPC gets, custom tables, routes and their
targets, associations, refusals with AWS's codes, DryRun, filters and the paginator."""

from helpers import expect_error, tags

MISSING_RTB = "rtb-0123456789abcdef0"


def main_table(ec2, vpc_id):
    tables = ec2.describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]},
        {"Name": "association.main", "Values": ["true"]},
    ])["RouteTables"]
    assert len(tables) == 1, tables
    return tables[0]


def test_vpc_has_main_table_with_local_route(ec2, vpc):
    main = main_table(ec2, vpc["VpcId"])
    assert main["RouteTableId"].startswith("rtb-")
    assert main["Routes"] == [{
        "DestinationCidrBlock": "10.0.0.0/16", "GatewayId": "local",
        "Origin": "CreateRouteTable", "State": "active",
    }]
    (assoc,) = main["Associations"]
    assert assoc["Main"] is True and "SubnetId" not in assoc
    assert assoc["RouteTableAssociationId"].startswith("rtbassoc-")
    assert assoc["AssociationState"]["State"] == "associated"
    expect_error("DependencyViolation", 400, ec2.delete_route_table, RouteTableId=main["RouteTableId"])


def test_create_describe_delete_route_table(ec2, vpc):
    vid = vpc["VpcId"]
    rtb = ec2.create_route_table(VpcId=vid, TagSpecifications=[
        {"ResourceType": "route-table", "Tags": [{"Key": "Name", "Value": "rt-public"}]}])["RouteTable"]
    assert rtb["VpcId"] == vid and rtb["Associations"] == []
    assert tags(rtb) == {"Name": "rt-public"}
    assert [r["GatewayId"] for r in rtb["Routes"]] == ["local"]
    got = ec2.describe_route_tables(RouteTableIds=[rtb["RouteTableId"]])["RouteTables"]
    assert [t["RouteTableId"] for t in got] == [rtb["RouteTableId"]]
    got = ec2.describe_route_tables(Filters=[{"Name": "tag:Name", "Values": ["rt-pub*"]},
                                             {"Name": "vpc-id", "Values": [vid]}])["RouteTables"]
    assert [t["RouteTableId"] for t in got] == [rtb["RouteTableId"]]
    got = ec2.describe_route_tables(Filters=[{"Name": "association.main", "Values": ["false"]},
                                             {"Name": "vpc-id", "Values": [vid]}])["RouteTables"]
    assert [t["RouteTableId"] for t in got] == [rtb["RouteTableId"]]
    expect_error("InvalidVpcID.NotFound", 400, ec2.create_route_table, VpcId="vpc-0123456789abcdef0")
    expect_error("InvalidRouteTableID.NotFound", 400, ec2.describe_route_tables, RouteTableIds=[MISSING_RTB])
    expect_error("InvalidParameterValue", 400, ec2.describe_route_tables,
                 Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    expect_error("DryRunOperation", 412, ec2.create_route_table, VpcId=vid, DryRun=True)
    expect_error("DryRunOperation", 412, ec2.describe_route_tables, DryRun=True)
    # A non-main table keeps the VPC alive.
    expect_error("DependencyViolation", 400, ec2.delete_vpc, VpcId=vid)
    expect_error("DryRunOperation", 412, ec2.delete_route_table, RouteTableId=rtb["RouteTableId"], DryRun=True)
    ec2.delete_route_table(RouteTableId=rtb["RouteTableId"])
    expect_error("InvalidRouteTableID.NotFound", 400, ec2.delete_route_table, RouteTableId=rtb["RouteTableId"])
    ec2.delete_vpc(VpcId=vid)
    assert ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vid]}])["RouteTables"] == []


def test_routes_targets_and_refusals(ec2, vpc):
    vid = vpc["VpcId"]
    rtb = ec2.create_route_table(VpcId=vid)["RouteTable"]["RouteTableId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    # The gateway must be attached to this VPC first.
    expect_error("InvalidParameterValue", 400, ec2.create_route, RouteTableId=rtb,
                 DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vid)
    expect_error("DryRunOperation", 412, ec2.create_route, RouteTableId=rtb,
                 DestinationCidrBlock="0.0.0.0/0", GatewayId=igw, DryRun=True)
    assert ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)["Return"] is True
    expect_error("RouteAlreadyExists", 400, ec2.create_route, RouteTableId=rtb,
                 DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    expect_error("RouteAlreadyExists", 400, ec2.create_route, RouteTableId=rtb,
                 DestinationCidrBlock="10.0.0.0/16", GatewayId=igw)
    expect_error("InvalidRouteTableID.NotFound", 400, ec2.create_route, RouteTableId=MISSING_RTB,
                 DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    expect_error("InvalidInternetGatewayID.NotFound", 400, ec2.create_route, RouteTableId=rtb,
                 DestinationCidrBlock="10.9.0.0/16", GatewayId="igw-0123456789abcdef0")
    expect_error("InvalidNatGatewayID.NotFound", 400, ec2.create_route, RouteTableId=rtb,
                 DestinationCidrBlock="10.9.0.0/16", NatGatewayId="nat-0123456789abcdef0")
    expect_error("InvalidNetworkInterfaceID.NotFound", 400, ec2.create_route, RouteTableId=rtb,
                 DestinationCidrBlock="10.9.0.0/16", NetworkInterfaceId="eni-0123456789abcdef0")
    expect_error("InvalidVpcPeeringConnectionID.NotFound", 400, ec2.create_route, RouteTableId=rtb,
                 DestinationCidrBlock="10.9.0.0/16", VpcPeeringConnectionId="pcx-0123456789abcdef0")
    expect_error("InvalidParameterValue", 400, ec2.create_route, RouteTableId=rtb,
                 DestinationCidrBlock="10.9.0.0/33", GatewayId=igw)
    expect_error("InvalidParameterCombination", 400, ec2.create_route, RouteTableId=rtb,
                 DestinationCidrBlock="10.9.0.0/16", GatewayId=igw, NatGatewayId="nat-0123456789abcdef0")

    err = expect_error("InvalidParameterValue", 400, ec2.replace_route, RouteTableId=rtb,
                       DestinationCidrBlock="10.8.0.0/16", GatewayId=igw)
    assert err["Error"]["Message"] == (
        "There is no route defined for '10.8.0.0/16' in the route table. Use CreateRoute instead.")
    ec2.replace_route(RouteTableId=rtb, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    expect_error("InvalidParameterValue", 400, ec2.delete_route, RouteTableId=rtb,
                 DestinationCidrBlock="10.0.0.0/16")

    got = ec2.describe_route_tables(Filters=[{"Name": "route.gateway-id", "Values": [igw]}])["RouteTables"]
    assert [t["RouteTableId"] for t in got] == [rtb]
    (default,) = [r for r in got[0]["Routes"] if r["DestinationCidrBlock"] == "0.0.0.0/0"]
    assert default == {"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": igw,
                       "Origin": "CreateRoute", "State": "active"}

    # Detaching the gateway leaves a blackhole route.
    ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vid)
    got = ec2.describe_route_tables(Filters=[{"Name": "route.state", "Values": ["blackhole"]},
                                             {"Name": "vpc-id", "Values": [vid]}])["RouteTables"]
    assert [t["RouteTableId"] for t in got] == [rtb]
    ec2.delete_route(RouteTableId=rtb, DestinationCidrBlock="0.0.0.0/0")
    expect_error("InvalidRoute.NotFound", 400, ec2.delete_route, RouteTableId=rtb,
                 DestinationCidrBlock="0.0.0.0/0")
    ec2.delete_internet_gateway(InternetGatewayId=igw)


def test_route_to_instance_interface(ec2, vpc, subnet):
    rtb = ec2.create_route_table(VpcId=vpc["VpcId"])["RouteTable"]["RouteTableId"]
    inst = ec2.run_instances(ImageId="ami-1", MinCount=1, MaxCount=1,
                             SubnetId=subnet["SubnetId"])["Instances"][0]
    eni = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="192.168.0.0/16", InstanceId=inst["InstanceId"])
    ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="172.16.0.0/12", NetworkInterfaceId=eni)
    routes = ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]["Routes"]
    by_dest = {r["DestinationCidrBlock"]: r for r in routes}
    for d in ("192.168.0.0/16", "172.16.0.0/12"):
        assert by_dest[d]["NetworkInterfaceId"] == eni
        assert by_dest[d]["InstanceId"] == inst["InstanceId"]
        assert by_dest[d]["State"] == "active"
    # The interface goes with the instance: blackhole.
    ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])
    routes = ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]["Routes"]
    assert {r["DestinationCidrBlock"]: r["State"] for r in routes} == {
        "10.0.0.0/16": "active", "192.168.0.0/16": "blackhole", "172.16.0.0/12": "blackhole"}


def test_associations(ec2, vpc, subnet):
    vid, sid = vpc["VpcId"], subnet["SubnetId"]
    rtb = ec2.create_route_table(VpcId=vid)["RouteTable"]["RouteTableId"]
    other = ec2.create_route_table(VpcId=vid)["RouteTable"]["RouteTableId"]
    expect_error("DryRunOperation", 412, ec2.associate_route_table, RouteTableId=rtb, SubnetId=sid, DryRun=True)
    r = ec2.associate_route_table(RouteTableId=rtb, SubnetId=sid)
    assoc = r["AssociationId"]
    assert assoc.startswith("rtbassoc-") and r["AssociationState"]["State"] == "associated"
    expect_error("Resource.AlreadyAssociated", 400, ec2.associate_route_table, RouteTableId=other, SubnetId=sid)
    expect_error("InvalidSubnetID.NotFound", 400, ec2.associate_route_table, RouteTableId=rtb,
                 SubnetId="subnet-0123456789abcdef0")
    expect_error("DependencyViolation", 400, ec2.delete_route_table, RouteTableId=rtb)
    got = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [sid]}])["RouteTables"]
    assert [t["RouteTableId"] for t in got] == [rtb]
    got = ec2.describe_route_tables(Filters=[
        {"Name": "association.route-table-association-id", "Values": [assoc]}])["RouteTables"]
    assert [t["RouteTableId"] for t in got] == [rtb]
    a = got[0]["Associations"][0]
    assert a == {"Main": False, "RouteTableAssociationId": assoc, "RouteTableId": rtb,
                 "SubnetId": sid, "AssociationState": {"State": "associated"}}

    new = ec2.replace_route_table_association(AssociationId=assoc, RouteTableId=other)
    assert new["NewAssociationId"] != assoc
    got = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [sid]}])["RouteTables"]
    assert [t["RouteTableId"] for t in got] == [other]
    expect_error("InvalidAssociationID.NotFound", 400, ec2.disassociate_route_table, AssociationId=assoc)
    ec2.disassociate_route_table(AssociationId=new["NewAssociationId"])
    assert ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [sid]}])["RouteTables"] == []

    # The main association moves, but is never simply removed.
    main = main_table(ec2, vid)
    main_assoc = main["Associations"][0]["RouteTableAssociationId"]
    expect_error("InvalidParameterValue", 400, ec2.disassociate_route_table, AssociationId=main_assoc)
    moved = ec2.replace_route_table_association(AssociationId=main_assoc, RouteTableId=rtb)
    assert main_table(ec2, vid)["RouteTableId"] == rtb
    assert main_table(ec2, vid)["Associations"][0]["RouteTableAssociationId"] == moved["NewAssociationId"]
    ec2.delete_route_table(RouteTableId=main["RouteTableId"])


def test_paginator(ec2):
    vid = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    made = {ec2.create_route_table(VpcId=vid)["RouteTable"]["RouteTableId"] for _ in range(7)}
    pages = list(ec2.get_paginator("describe_route_tables").paginate(
        Filters=[{"Name": "vpc-id", "Values": [vid]}], PaginationConfig={"PageSize": 5}))
    assert [len(p["RouteTables"]) for p in pages] == [5, 3]
    seen = [t["RouteTableId"] for p in pages for t in p["RouteTables"]]
    assert len(seen) == len(set(seen)) == 8
    assert made < set(seen)
    for rtb in made:
        ec2.delete_route_table(RouteTableId=rtb)
    ec2.delete_vpc(VpcId=vid)


def test_create_route_table_client_token(ec2, vpc):
    a = ec2.create_route_table(VpcId=vpc["VpcId"], ClientToken="routes-rtb-token")
    b = ec2.create_route_table(VpcId=vpc["VpcId"], ClientToken="routes-rtb-token")
    assert a["RouteTable"]["RouteTableId"] == b["RouteTable"]["RouteTableId"]
    assert a["ClientToken"] == "routes-rtb-token"
    other = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    expect_error("IdempotentParameterMismatch", 400, ec2.create_route_table, VpcId=other,
                 ClientToken="routes-rtb-token")
    ec2.delete_route_table(RouteTableId=a["RouteTable"]["RouteTableId"])
    ec2.delete_vpc(VpcId=other)
