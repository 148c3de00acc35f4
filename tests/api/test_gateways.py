"""Internet gateways, Elastic IPs and NAT gateways through boto3 (success, refusals with AWS's
codes and HTTP status, DryRun, filters, paginators, the nat_gateway_available waiter), and an AWS
CLI smoke test of a VPC with a public and a private subnet."""

import ipaddress
import time

from conftest import Server
from helpers import expect_error, tags

MISSING_IGW = "igw-0123456789abcdef0"
MISSING_ALLOC = "eipalloc-0123456789abcdef0"


def igw_with_vpc(ec2, vpc_id):
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
    return igw


def test_internet_gateway_lifecycle(ec2, vpc):
    vid = vpc["VpcId"]
    expect_error("DryRunOperation", 412, ec2.create_internet_gateway, DryRun=True)
    g = ec2.create_internet_gateway(TagSpecifications=[
        {"ResourceType": "internet-gateway", "Tags": [{"Key": "Name", "Value": "gw-a"}]}])["InternetGateway"]
    gid = g["InternetGatewayId"]
    assert gid.startswith("igw-") and g["Attachments"] == [] and tags(g) == {"Name": "gw-a"}
    expect_error("Gateway.NotAttached", 400, ec2.detach_internet_gateway, InternetGatewayId=gid, VpcId=vid)
    expect_error("DryRunOperation", 412, ec2.attach_internet_gateway, InternetGatewayId=gid, VpcId=vid, DryRun=True)
    ec2.attach_internet_gateway(InternetGatewayId=gid, VpcId=vid)
    got = ec2.describe_internet_gateways(InternetGatewayIds=[gid])["InternetGateways"]
    assert got[0]["Attachments"] == [{"State": "available", "VpcId": vid}]
    got = ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vid]}])
    assert [x["InternetGatewayId"] for x in got["InternetGateways"]] == [gid]
    # One VPC per gateway, one gateway per VPC.
    other_vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    expect_error("Resource.AlreadyAssociated", 400, ec2.attach_internet_gateway, InternetGatewayId=gid,
                 VpcId=other_vpc)
    g2 = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    expect_error("Resource.AlreadyAssociated", 400, ec2.attach_internet_gateway, InternetGatewayId=g2, VpcId=vid)
    expect_error("Gateway.NotAttached", 400, ec2.detach_internet_gateway, InternetGatewayId=gid, VpcId=other_vpc)
    expect_error("DependencyViolation", 400, ec2.delete_internet_gateway, InternetGatewayId=gid)
    expect_error("DependencyViolation", 400, ec2.delete_vpc, VpcId=vid)
    expect_error("InvalidInternetGatewayID.NotFound", 400, ec2.attach_internet_gateway,
                 InternetGatewayId=MISSING_IGW, VpcId=vid)
    expect_error("InvalidInternetGatewayID.NotFound", 400, ec2.describe_internet_gateways,
                 InternetGatewayIds=[MISSING_IGW])
    expect_error("InvalidVpcID.NotFound", 400, ec2.attach_internet_gateway, InternetGatewayId=g2,
                 VpcId="vpc-0123456789abcdef0")
    ec2.detach_internet_gateway(InternetGatewayId=gid, VpcId=vid)
    assert ec2.describe_internet_gateways(InternetGatewayIds=[gid])["InternetGateways"][0]["Attachments"] == []
    ec2.delete_internet_gateway(InternetGatewayId=gid)
    ec2.delete_internet_gateway(InternetGatewayId=g2)
    expect_error("InvalidInternetGatewayID.NotFound", 400, ec2.delete_internet_gateway, InternetGatewayId=gid)
    ec2.delete_vpc(VpcId=other_vpc)


def test_internet_gateway_paginator(ec2):
    made = [ec2.create_internet_gateway(TagSpecifications=[
        {"ResourceType": "internet-gateway", "Tags": [{"Key": "page", "Value": "yes"}]}])
        ["InternetGateway"]["InternetGatewayId"] for _ in range(6)]
    pages = list(ec2.get_paginator("describe_internet_gateways").paginate(
        Filters=[{"Name": "tag:page", "Values": ["yes"]}], PaginationConfig={"PageSize": 5}))
    assert [len(p["InternetGateways"]) for p in pages] == [5, 1]
    assert sorted(x["InternetGatewayId"] for p in pages for x in p["InternetGateways"]) == sorted(made)
    for g in made:
        ec2.delete_internet_gateway(InternetGatewayId=g)


def test_elastic_ips(ec2, vpc, subnet):
    vid = vpc["VpcId"]
    expect_error("DryRunOperation", 412, ec2.allocate_address, Domain="vpc", DryRun=True)
    a = ec2.allocate_address(Domain="vpc", TagSpecifications=[
        {"ResourceType": "elastic-ip", "Tags": [{"Key": "Name", "Value": "eip-a"}]}])
    alloc, ip = a["AllocationId"], a["PublicIp"]
    assert alloc.startswith("eipalloc-") and a["Domain"] == "vpc"
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("203.0.113.0/24")
    inst = ec2.run_instances(ImageId="ami-1", MinCount=1, MaxCount=1,
                             SubnetId=subnet["SubnetId"])["Instances"][0]
    iid = inst["InstanceId"]
    eni = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    # An internet gateway must be attached to the VPC first.
    expect_error("Gateway.NotAttached", 400, ec2.associate_address, AllocationId=alloc, InstanceId=iid)
    igw = igw_with_vpc(ec2, vid)
    expect_error("DryRunOperation", 412, ec2.associate_address, AllocationId=alloc, InstanceId=iid, DryRun=True)
    assoc = ec2.associate_address(AllocationId=alloc, InstanceId=iid)["AssociationId"]
    assert assoc.startswith("eipassoc-")
    (d,) = ec2.describe_addresses(AllocationIds=[alloc])["Addresses"]
    assert d["AssociationId"] == assoc and d["InstanceId"] == iid
    assert d["NetworkInterfaceId"] == eni and d["PrivateIpAddress"] == inst["PrivateIpAddress"]
    assert d["PublicIp"] == ip and d["Domain"] == "vpc" and tags(d) == {"Name": "eip-a"}
    for name, value in [("instance-id", iid), ("association-id", assoc), ("public-ip", ip),
                        ("network-interface-id", eni), ("tag:Name", "eip-*")]:
        got = ec2.describe_addresses(Filters=[{"Name": name, "Values": [value]}])["Addresses"]
        assert [x["AllocationId"] for x in got] == [alloc], name
    assert [x["AllocationId"] for x in ec2.describe_addresses(PublicIps=[ip])["Addresses"]] == [alloc]
    # In use: refusals.
    expect_error("InvalidIPAddress.InUse", 400, ec2.release_address, AllocationId=alloc)
    expect_error("DependencyViolation", 400, ec2.detach_internet_gateway, InternetGatewayId=igw, VpcId=vid)
    b = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.associate_address(AllocationId=b, NetworkInterfaceId=eni)
    # b took the private address over: a is free again.
    assert "AssociationId" not in ec2.describe_addresses(AllocationIds=[alloc])["Addresses"][0]
    expect_error("InvalidAllocationID.NotFound", 400, ec2.describe_addresses, AllocationIds=[MISSING_ALLOC])
    expect_error("InvalidAllocationID.NotFound", 400, ec2.release_address, AllocationId=MISSING_ALLOC)
    expect_error("InvalidAllocationID.NotFound", 400, ec2.associate_address, AllocationId=MISSING_ALLOC,
                 InstanceId=iid)
    expect_error("InvalidAssociationID.NotFound", 400, ec2.disassociate_address, AssociationId=assoc)
    expect_error("InvalidInstanceID.NotFound", 400, ec2.associate_address, AllocationId=alloc,
                 InstanceId="i-0123456789abcdef0")
    expect_error("InvalidParameterValue", 400, ec2.describe_addresses,
                 Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    b_assoc = ec2.describe_addresses(AllocationIds=[b])["Addresses"][0]["AssociationId"]
    expect_error("DryRunOperation", 412, ec2.disassociate_address, AssociationId=b_assoc, DryRun=True)
    ec2.disassociate_address(AssociationId=b_assoc)
    expect_error("DryRunOperation", 412, ec2.release_address, AllocationId=b, DryRun=True)
    ec2.release_address(AllocationId=b)
    ec2.release_address(AllocationId=alloc)
    expect_error("InvalidAllocationID.NotFound", 400, ec2.release_address, AllocationId=alloc)
    ec2.terminate_instances(InstanceIds=[iid])
    ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vid)
    ec2.delete_internet_gateway(InternetGatewayId=igw)


def test_address_follows_instance_termination(ec2, vpc, subnet):
    igw = igw_with_vpc(ec2, vpc["VpcId"])
    alloc = ec2.allocate_address(Domain="vpc")["AllocationId"]
    iid = ec2.run_instances(ImageId="ami-1", MinCount=1, MaxCount=1,
                            SubnetId=subnet["SubnetId"])["Instances"][0]["InstanceId"]
    ec2.associate_address(AllocationId=alloc, InstanceId=iid)
    ec2.terminate_instances(InstanceIds=[iid])
    d = ec2.describe_addresses(AllocationIds=[alloc])["Addresses"][0]
    assert "AssociationId" not in d and "InstanceId" not in d
    ec2.release_address(AllocationId=alloc)
    ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vpc["VpcId"])
    ec2.delete_internet_gateway(InternetGatewayId=igw)


def test_nat_gateway_lifecycle(ec2, vpc, subnet):
    vid, sid = vpc["VpcId"], subnet["SubnetId"]
    alloc = ec2.allocate_address(Domain="vpc")
    expect_error("Gateway.NotAttached", 400, ec2.create_nat_gateway, SubnetId=sid,
                 AllocationId=alloc["AllocationId"])
    igw = igw_with_vpc(ec2, vid)
    expect_error("DryRunOperation", 412, ec2.create_nat_gateway, SubnetId=sid,
                 AllocationId=alloc["AllocationId"], DryRun=True)
    expect_error("InvalidSubnetID.NotFound", 400, ec2.create_nat_gateway, SubnetId="subnet-0123456789abcdef0",
                 AllocationId=alloc["AllocationId"])
    expect_error("InvalidAllocationID.NotFound", 400, ec2.create_nat_gateway, SubnetId=sid,
                 AllocationId=MISSING_ALLOC)
    nat = ec2.create_nat_gateway(SubnetId=sid, AllocationId=alloc["AllocationId"], TagSpecifications=[
        {"ResourceType": "natgateway", "Tags": [{"Key": "Name", "Value": "nat-a"}]}])["NatGateway"]
    nid = nat["NatGatewayId"]
    assert nid.startswith("nat-") and nat["State"] == "pending"
    assert nat["VpcId"] == vid and nat["SubnetId"] == sid and nat["ConnectivityType"] == "public"
    assert tags(nat) == {"Name": "nat-a"}
    (addr,) = nat["NatGatewayAddresses"]
    assert addr["AllocationId"] == alloc["AllocationId"] and addr["PublicIp"] == alloc["PublicIp"]
    assert ipaddress.ip_address(addr["PrivateIp"]) in ipaddress.ip_network("10.0.0.0/24")
    # Its own interface in the subnet, with the Elastic IP on it.
    (eni,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[addr["NetworkInterfaceId"]])["NetworkInterfaces"]
    assert eni["SubnetId"] == sid and eni["PrivateIpAddress"] == addr["PrivateIp"]
    d = ec2.describe_addresses(AllocationIds=[alloc["AllocationId"]])["Addresses"][0]
    assert d["NetworkInterfaceId"] == addr["NetworkInterfaceId"]
    expect_error("InvalidIPAddress.InUse", 400, ec2.release_address, AllocationId=alloc["AllocationId"])
    expect_error("Resource.AlreadyAssociated", 400, ec2.create_nat_gateway, SubnetId=sid,
                 AllocationId=alloc["AllocationId"])

    ec2.get_waiter("nat_gateway_available").wait(NatGatewayIds=[nid], WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    got = ec2.describe_nat_gateways(NatGatewayIds=[nid])["NatGateways"]
    assert got[0]["State"] == "available"
    for name, value in [("state", "available"), ("subnet-id", sid), ("vpc-id", vid), ("tag:Name", "nat-*"),
                        ("nat-gateway-id", nid)]:
        got = ec2.describe_nat_gateways(Filter=[{"Name": name, "Values": [value]}])["NatGateways"]
        assert nid in [n["NatGatewayId"] for n in got], name
    expect_error("NatGatewayNotFound", 400, ec2.describe_nat_gateways, NatGatewayIds=["nat-0123456789abcdef0"])
    expect_error("DryRunOperation", 412, ec2.describe_nat_gateways, DryRun=True)

    # Private NAT gateway: no address.
    priv = ec2.create_nat_gateway(SubnetId=sid, ConnectivityType="private")["NatGateway"]
    assert priv["ConnectivityType"] == "private" and "PublicIp" not in priv["NatGatewayAddresses"][0]

    # Deleting: deleting -> deleted; the interface and the address are freed.
    expect_error("DryRunOperation", 412, ec2.delete_nat_gateway, NatGatewayId=nid, DryRun=True)
    assert ec2.delete_nat_gateway(NatGatewayId=nid)["NatGatewayId"] == nid
    state = ec2.describe_nat_gateways(NatGatewayIds=[nid])["NatGateways"][0]["State"]
    assert state in ("deleting", "deleted")
    ec2.get_waiter("nat_gateway_deleted").wait(NatGatewayIds=[nid], WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    expect_error("InvalidNetworkInterfaceID.NotFound", 400, ec2.describe_network_interfaces,
                 NetworkInterfaceIds=[addr["NetworkInterfaceId"]])
    expect_error("NatGatewayNotFound", 400, ec2.delete_nat_gateway, NatGatewayId=nid)
    ec2.delete_nat_gateway(NatGatewayId=priv["NatGatewayId"])
    ec2.release_address(AllocationId=alloc["AllocationId"])
    ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vid)
    ec2.delete_internet_gateway(InternetGatewayId=igw)
    ec2.delete_subnet(SubnetId=sid)


def test_nat_gateway_paginator(ec2, vpc, subnet):
    sid = subnet["SubnetId"]
    made = [ec2.create_nat_gateway(SubnetId=sid, ConnectivityType="private")["NatGateway"]["NatGatewayId"]
            for _ in range(6)]
    pages = list(ec2.get_paginator("describe_nat_gateways").paginate(
        Filter=[{"Name": "subnet-id", "Values": [sid]}], PaginationConfig={"PageSize": 5}))
    assert [len(p["NatGateways"]) for p in pages] == [5, 1]
    assert sorted(n["NatGatewayId"] for p in pages for n in p["NatGateways"]) == sorted(made)
    for n in made:
        ec2.delete_nat_gateway(NatGatewayId=n)


def test_nat_gateway_client_token(ec2, vpc, subnet):
    first = ec2.create_nat_gateway(SubnetId=subnet["SubnetId"], ConnectivityType="private",
                                   ClientToken="routes-token-1")
    again = ec2.create_nat_gateway(SubnetId=subnet["SubnetId"], ConnectivityType="private",
                                   ClientToken="routes-token-1")
    assert first["NatGateway"]["NatGatewayId"] == again["NatGateway"]["NatGatewayId"]
    assert first["ClientToken"] == "routes-token-1"
    other = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    expect_error("IdempotentParameterMismatch", 400, ec2.create_nat_gateway, SubnetId=other,
                 ConnectivityType="private", ClientToken="routes-token-1")
    ec2.delete_nat_gateway(NatGatewayId=first["NatGateway"]["NatGatewayId"])


def test_cli_public_and_private_subnets(aws):
    """A VPC with a public subnet (0.0.0.0/0 -> internet gateway) and a private one
    (0.0.0.0/0 -> NAT gateway in the public subnet), built with the AWS CLI."""

    def ok(*args):
        rc, out, err = aws(*args)
        assert rc == 0, (args, err)
        return out

    vpc = ok("create-vpc", "--cidr-block", "10.20.0.0/16")["Vpc"]["VpcId"]
    public = ok("create-subnet", "--vpc-id", vpc, "--cidr-block", "10.20.0.0/24")["Subnet"]["SubnetId"]
    private = ok("create-subnet", "--vpc-id", vpc, "--cidr-block", "10.20.1.0/24")["Subnet"]["SubnetId"]
    igw = ok("create-internet-gateway")["InternetGateway"]["InternetGatewayId"]
    ok("attach-internet-gateway", "--internet-gateway-id", igw, "--vpc-id", vpc)
    public_rt = ok("create-route-table", "--vpc-id", vpc)["RouteTable"]["RouteTableId"]
    ok("create-route", "--route-table-id", public_rt, "--destination-cidr-block", "0.0.0.0/0",
       "--gateway-id", igw)
    ok("associate-route-table", "--route-table-id", public_rt, "--subnet-id", public)
    alloc = ok("allocate-address", "--domain", "vpc")["AllocationId"]
    nat = ok("create-nat-gateway", "--subnet-id", public, "--allocation-id", alloc)["NatGateway"]["NatGatewayId"]
    time.sleep(1.1)  # the server settles a NAT gateway after a second; the CLI waiter polls every 15 s
    rc, _, err = aws("wait", "nat-gateway-available", "--nat-gateway-ids", nat)
    assert rc == 0, err
    private_rt = ok("create-route-table", "--vpc-id", vpc)["RouteTable"]["RouteTableId"]
    ok("create-route", "--route-table-id", private_rt, "--destination-cidr-block", "0.0.0.0/0",
       "--nat-gateway-id", nat)
    ok("associate-route-table", "--route-table-id", private_rt, "--subnet-id", private)

    tables = ok("describe-route-tables", "--filters", f"Name=vpc-id,Values={vpc}")["RouteTables"]
    by_subnet = {a["SubnetId"]: t for t in tables for a in t["Associations"] if "SubnetId" in a}
    default = lambda t: [r for r in t["Routes"] if r["DestinationCidrBlock"] == "0.0.0.0/0"][0]
    assert default(by_subnet[public])["GatewayId"] == igw
    assert default(by_subnet[private])["NatGatewayId"] == nat
    assert all(default(by_subnet[s])["State"] == "active" for s in (public, private))
    rc, _, err = aws("delete-internet-gateway", "--internet-gateway-id", igw)
    assert rc != 0 and "DependencyViolation" in err
    rc, _, err = aws("create-route", "--route-table-id", private_rt, "--destination-cidr-block", "0.0.0.0/0",
                     "--nat-gateway-id", nat)
    assert rc != 0 and "RouteAlreadyExists" in err

    # Tear down in dependency order.
    ok("delete-nat-gateway", "--nat-gateway-id", nat)
    time.sleep(1.1)
    rc, _, err = aws("wait", "nat-gateway-deleted", "--nat-gateway-ids", nat)
    assert rc == 0, err
    tables = ok("describe-route-tables", "--route-table-ids", private_rt)["RouteTables"]
    assert default(tables[0])["State"] == "blackhole"
    ok("release-address", "--allocation-id", alloc)
    for rt in (public_rt, private_rt):
        for a in ok("describe-route-tables", "--route-table-ids", rt)["RouteTables"][0]["Associations"]:
            ok("disassociate-route-table", "--association-id", a["RouteTableAssociationId"])
        ok("delete-route-table", "--route-table-id", rt)
    ok("detach-internet-gateway", "--internet-gateway-id", igw, "--vpc-id", vpc)
    ok("delete-internet-gateway", "--internet-gateway-id", igw)
    ok("delete-subnet", "--subnet-id", public)
    ok("delete-subnet", "--subnet-id", private)
    ok("delete-vpc", "--vpc-id", vpc)


def test_gateways_and_routes_survive_restart(workdir):
    srv = Server(workdir / "routes-restart").start()
    try:
        ec2 = srv.client()
        vid = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        sid = ec2.create_subnet(VpcId=vid, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
        igw = igw_with_vpc(ec2, vid)
        rtb = ec2.create_route_table(VpcId=vid)["RouteTable"]["RouteTableId"]
        ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        assoc = ec2.associate_route_table(RouteTableId=rtb, SubnetId=sid)["AssociationId"]
        alloc = ec2.allocate_address(Domain="vpc")
        nat = ec2.create_nat_gateway(SubnetId=sid, AllocationId=alloc["AllocationId"])["NatGateway"]["NatGatewayId"]
        before = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vid]}])["RouteTables"]
        srv.stop()
        srv.start()
        ec2 = srv.client()
        after = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vid]}])["RouteTables"]
        assert sorted(before, key=lambda t: t["RouteTableId"]) == sorted(after, key=lambda t: t["RouteTableId"])
        (t,) = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [sid]}])["RouteTables"]
        assert t["RouteTableId"] == rtb and t["Associations"][0]["RouteTableAssociationId"] == assoc
        assert ec2.describe_internet_gateways(InternetGatewayIds=[igw])["InternetGateways"][0]["Attachments"] == [
            {"State": "available", "VpcId": vid}]
        d = ec2.describe_addresses(AllocationIds=[alloc["AllocationId"]])["Addresses"][0]
        assert d["PublicIp"] == alloc["PublicIp"] and "AssociationId" in d
        n = ec2.describe_nat_gateways(NatGatewayIds=[nat])["NatGateways"][0]
        assert n["State"] in ("pending", "available")
        # The pool continues after the restart: a new address is a different one.
        assert ec2.allocate_address(Domain="vpc")["PublicIp"] != alloc["PublicIp"]
    finally:
        srv.stop()
