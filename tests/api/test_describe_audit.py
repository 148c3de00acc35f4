"""The Describe actions against AWS's documentation: every filter name AWS documents is accepted
(the list is read from botocore's EC2 model, not copied here), an unknown one is refused as AWS
refuses it, filters on the data softvpc holds match, `MaxResults` is bounded as on AWS, and every
paginator of botocore's model pages through the whole result in a stable order.

Runs its own server (module scope) so resource counts are exact."""

import gzip
import html
import json
import os
import re
import subprocess
import urllib.parse

import botocore
import pytest

from conftest import Server, aws_env
from helpers import expect_error, instances

HOSTS = {f"host-{n}": f"198.18.0.{10 + n}" for n in range(1, 8)}

# Describe action -> (boto3 method, name of its filter member).
DESCRIBES = {
    "DescribeVpcs": ("describe_vpcs", "Filters"),
    "DescribeSubnets": ("describe_subnets", "Filters"),
    "DescribeInstances": ("describe_instances", "Filters"),
    "DescribeInstanceStatus": ("describe_instance_status", "Filters"),
    "DescribeNetworkInterfaces": ("describe_network_interfaces", "Filters"),
    "DescribeSecurityGroups": ("describe_security_groups", "Filters"),
    "DescribeSecurityGroupRules": ("describe_security_group_rules", "Filters"),
    "DescribeNetworkAcls": ("describe_network_acls", "Filters"),
    "DescribeRouteTables": ("describe_route_tables", "Filters"),
    "DescribeInternetGateways": ("describe_internet_gateways", "Filters"),
    "DescribeAddresses": ("describe_addresses", "Filters"),
    "DescribeNatGateways": ("describe_nat_gateways", "Filter"),
    "DescribeVpcPeeringConnections": ("describe_vpc_peering_connections", "Filters"),
    "DescribeDhcpOptions": ("describe_dhcp_options", "Filters"),
    "DescribeTags": ("describe_tags", "Filters"),
    "DescribeHosts": ("describe_hosts", "Filter"),
    "DescribeAvailabilityZones": ("describe_availability_zones", "Filters"),
    "DescribeRegions": ("describe_regions", "Filters"),
    "DescribeFlowLogs": ("describe_flow_logs", "Filter"),
    "DescribeManagedPrefixLists": ("describe_managed_prefix_lists", "Filters"),
    "DescribeKeyPairs": ("describe_key_pairs", "Filters"),
}


def service_model():
    d = os.path.join(os.path.dirname(botocore.__file__), "data", "ec2", "2016-11-15")
    p = os.path.join(d, "service-2.json")
    return json.load(open(p)) if os.path.exists(p) else json.load(gzip.open(p + ".gz"))


MODEL = service_model()


def documented_filters(action):
    """The filter names AWS's documentation of `action` lists (`<code>name</code> - ...`)."""
    members = MODEL["shapes"][MODEL["operations"][action]["input"]["shape"]]["members"]
    doc = members[DESCRIBES[action][1]].get("documentation", "")
    names = [html.unescape(n) for n in re.findall(r"<p>\s*<code>([^<]+)</code>\s*-", doc)]
    # `tag:<key>` is documented with a placeholder; `tag` is how some pages abbreviate it.
    return sorted({"tag:Name" if n.startswith("tag") and n not in ("tag-key", "tag-value") else n
                   for n in names})


@pytest.fixture(scope="module")
def srv(workdir):
    s = Server(workdir / "describe-audit", hosts=HOSTS).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def c(srv):
    return srv.client()


@pytest.fixture(scope="module")
def world(c):
    """Seven of everything paginated (so MaxResults=5 needs two pages)."""
    vpcs = [c.create_vpc(CidrBlock=f"10.{n}.0.0/16")["Vpc"]["VpcId"] for n in range(7)]
    v0 = vpcs[0]
    subnets = [c.create_subnet(VpcId=v0, CidrBlock=f"10.0.{n}.0/24")["Subnet"]["SubnetId"] for n in range(7)]
    igws = [c.create_internet_gateway()["InternetGateway"]["InternetGatewayId"] for _ in range(7)]
    c.attach_internet_gateway(InternetGatewayId=igws[0], VpcId=v0)
    run = c.run_instances(ImageId="ami-12345678", SubnetId=subnets[0], MinCount=7, MaxCount=7,
                          TagSpecifications=[{"ResourceType": "instance",
                                              "Tags": [{"Key": "Name", "Value": "audit"}]}])
    inst = [i["InstanceId"] for i in run["Instances"]]
    sg = c.create_security_group(GroupName="audit-web", Description="web", VpcId=v0)["GroupId"]
    c.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": p, "ToPort": p, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        for p in (22, 80, 443, 8080, 8443, 9000)])
    dhcp = [c.create_dhcp_options(DhcpConfigurations=[{"Key": "domain-name", "Values": [f"d{n}.example"]}])
            ["DhcpOptions"]["DhcpOptionsId"] for n in range(7)]
    peerings = [c.create_vpc_peering_connection(VpcId=a, PeerVpcId=b)["VpcPeeringConnection"]
                ["VpcPeeringConnectionId"] for a, b in [(v0, v) for v in vpcs[1:]] + [(vpcs[1], vpcs[2])]]
    nats = []
    for n in range(7):
        alloc = c.allocate_address(Domain="vpc")["AllocationId"]
        nats.append(c.create_nat_gateway(SubnetId=subnets[n], AllocationId=alloc)["NatGateway"]["NatGatewayId"])
    eip = c.allocate_address(Domain="vpc")
    c.associate_address(AllocationId=eip["AllocationId"], InstanceId=inst[0])
    rt = c.create_route_table(VpcId=v0)["RouteTable"]["RouteTableId"]
    primary = c.describe_instances(InstanceIds=[inst[0]])["Reservations"][0]["Instances"][0]
    eni0 = primary["NetworkInterfaces"][0]["NetworkInterfaceId"]
    c.create_route(RouteTableId=rt, DestinationCidrBlock="192.168.0.0/16", NetworkInterfaceId=eni0)
    c.create_tags(Resources=vpcs, Tags=[{"Key": "audit", "Value": "yes"}])
    flow = c.create_flow_logs(ResourceType="VPC", ResourceIds=vpcs, TrafficType="ALL", LogGroupName="audit",
                              DeliverLogsPermissionArn="arn:aws:iam::123456789012:role/flow-logs")
    assert len(flow["FlowLogIds"]) == 7, flow
    for n in range(7):
        c.create_managed_prefix_list(PrefixListName=f"audit-{n}", MaxEntries=2, AddressFamily="IPv4",
                                     Entries=[{"Cidr": f"10.{n}.0.0/16"}])
    return dict(vpcs=vpcs, subnets=subnets, igws=igws, inst=inst, sg=sg, dhcp=dhcp, peerings=peerings,
                nats=nats, eip=eip, rt=rt, eni0=eni0, primary=primary)


@pytest.mark.parametrize("action", sorted(DESCRIBES))
def test_every_documented_filter_is_accepted(c, world, action):
    method, member = DESCRIBES[action]
    names = documented_filters(action)
    assert len(names) >= 2, (action, names)
    for name in names:
        # A value nothing has: accepted (no error), whatever the resource holds.
        getattr(c, method)(**{member: [{"Name": name, "Values": ["no-such-value-*"]}]})


@pytest.mark.parametrize("action", sorted(DESCRIBES))
def test_an_unknown_filter_is_refused_as_aws_does(c, action):
    method, member = DESCRIBES[action]
    err = expect_error("InvalidParameterValue", 400, getattr(c, method),
                       **{member: [{"Name": "no-such-filter", "Values": ["x"]}]})
    assert err["Error"]["Message"] == "The filter 'no-such-filter' is invalid"


def ids(items, key):
    return sorted(i[key] for i in items)


def test_filters_on_held_data(c, world):
    w = world
    v0, s0, inst0, eni0 = w["vpcs"][0], w["subnets"][0], w["inst"][0], w["eni0"]
    # Subnets: ARN, the IPv4-only flags (as DescribeSubnets shows them), an IPv6 filter matches nothing.
    arn = c.describe_subnets(SubnetIds=[s0])["Subnets"][0]
    assert arn["EnableDns64"] is False and arn["PrivateDnsNameOptionsOnLaunch"]["HostnameType"] == "ip-name"
    got = c.describe_subnets(Filters=[{"Name": "subnet-arn", "Values": [arn["SubnetArn"]]}])["Subnets"]
    assert ids(got, "SubnetId") == [s0]
    got = c.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [v0]},
                                      {"Name": "enable-dns64", "Values": ["false"]},
                                      {"Name": "ipv6-native", "Values": ["false"]}])["Subnets"]
    assert ids(got, "SubnetId") == sorted(w["subnets"])
    assert c.describe_subnets(Filters=[{"Name": "enable-dns64", "Values": ["true"]}])["Subnets"] == []
    assert c.describe_vpcs(Filters=[{"Name": "ipv6-cidr-block-association.state",
                                     "Values": ["associated"]}])["Vpcs"] == []
    # Instances: through their interfaces, launch index and time, group name, constants.
    f = lambda name, *vals: [{"Name": name, "Values": list(vals)}]  # noqa: E731
    di = lambda flt: sorted(i["InstanceId"] for i in instances(c.describe_instances(Filters=flt)))  # noqa: E731
    assert di(f("network-interface.network-interface-id", eni0)) == [inst0]
    assert di(f("network-interface.attachment.device-index", "0")) == sorted(w["inst"])
    assert di(f("network-interface.association.public-ip", w["eip"]["PublicIp"])) == [inst0]
    assert di(f("network-interface.addresses.primary", "true") + f("instance-id", inst0)) == [inst0]
    assert di(f("network-interface.status", "in-use") + f("tag:Name", "audit")) == sorted(w["inst"])
    launch = w["primary"]["LaunchTime"].strftime("%Y-%m-%dT%H:%M")
    assert di(f("launch-time", launch + "*") + f("tag:Name", "audit")) == sorted(w["inst"])
    assert di(f("launch-time", "1999-*")) == []
    by_index = c.describe_instances(Filters=f("launch-index", "3") + f("tag:Name", "audit"))
    (one,) = instances(by_index)
    assert one["AmiLaunchIndex"] == 3
    assert di(f("instance.group-name", "default") + f("vpc-id", v0)) == sorted(w["inst"])
    assert di(f("instance.group-name", "audit-web")) == []
    assert di(f("architecture", "x86_64") + f("root-device-type", "ebs") + f("tag:Name", "audit")) == sorted(w["inst"])
    assert di(f("architecture", "arm64")) == []
    # Interfaces: the Elastic IP association and attachment time.
    ge = lambda flt: ids(c.describe_network_interfaces(Filters=flt)["NetworkInterfaces"], "NetworkInterfaceId")  # noqa: E731
    assert ge(f("association.public-ip", w["eip"]["PublicIp"])) == [eni0]
    assert ge(f("association.allocation-id", w["eip"]["AllocationId"])) == [eni0]
    assert ge(f("attachment.attach-time", launch[:10] + "T*") + f("attachment.instance-id", inst0)) == [eni0]
    assert ge(f("attachment.instance-owner-id", "*") + f("attachment.instance-id", inst0)) == [eni0]
    # Route tables: a route to an instance's interface names the instance.
    got = c.describe_route_tables(Filters=f("route.instance-id", inst0))["RouteTables"]
    assert ids(got, "RouteTableId") == [w["rt"]]
    # Instance status.
    st = c.describe_instance_status(Filters=f("instance-status.status", "ok"))["InstanceStatuses"]
    assert ids(st, "InstanceId") == sorted(w["inst"])
    # The ClientToken an instance was launched with (boto3 fills in one when none is given).
    tok = c.run_instances(ImageId="ami-12345678", SubnetId=w["subnets"][1], MinCount=1, MaxCount=1,
                          ClientToken="audit-token-1")["Instances"][0]["InstanceId"]
    assert di(f("client-token", "audit-token-*")) == [tok]


def test_max_results_bounds_and_combinations(srv, c, world):
    def raw(action, **params):
        body = urllib.parse.urlencode({"Action": action, "Version": "2016-11-15", **params})
        status, text = srv.post(body)
        code = re.search(r"<Code>([^<]*)</Code>", text)
        msg = re.search(r"<Message>([^<]*)</Message>", text)
        return status, code and code.group(1), msg and html.unescape(msg.group(1))

    for action, hi in [("DescribeVpcs", 1000), ("DescribeInstances", 1000), ("DescribeRouteTables", 100),
                       ("DescribeTags", 1000), ("DescribeHosts", 500), ("DescribeSecurityGroups", 1000)]:
        assert raw(action, MaxResults="4") == (
            400, "InvalidParameterValue",
            "Value ( 4 ) for parameter maxResults is invalid. Expecting a value greater than 5."), action
        assert raw(action, MaxResults=str(hi + 1)) == (
            400, "InvalidParameterValue",
            f"Value ( {hi + 1} ) for parameter maxResults is invalid. "
            f"Expecting a value smaller than or equal to {hi}."), action
        assert raw(action, MaxResults="5")[0] == 200, action
        assert raw(action, MaxResults=str(hi))[0] == 200, action
    # botocore does not check DescribeInstances' MaxResults itself: the server does.
    expect_error("InvalidParameterValue", 400, c.describe_instances, MaxResults=2)
    err = expect_error("InvalidParameterCombination", 400, c.describe_instances,
                       InstanceIds=[world["inst"][0]], MaxResults=5)
    assert err["Error"]["Message"] == "The parameter instancesSet cannot be used with the parameter maxResults"
    expect_error("InvalidParameterCombination", 400, c.describe_instance_status,
                 InstanceIds=[world["inst"][0]], MaxResults=5)
    expect_error("InvalidParameterCombination", 400, c.describe_network_interfaces,
                 NetworkInterfaceIds=[world["eni0"]], MaxResults=5)
    # A token the server did not hand out.
    for token in ("garbage", "-1", "100000"):
        expect_error("InvalidNextToken", 400, c.describe_vpcs, MaxResults=5, NextToken=token)


# Paginator name -> (kwargs narrowing to this module's resources, key of each item's id).
PAGED = {
    "describe_vpcs": ({}, "VpcId"),
    "describe_subnets": ({}, "SubnetId"),
    "describe_instances": ({}, "InstanceId"),
    "describe_instance_status": ({}, "InstanceId"),
    "describe_network_interfaces": ({}, "NetworkInterfaceId"),
    "describe_security_groups": ({}, "GroupId"),
    "describe_security_group_rules": ({}, "SecurityGroupRuleId"),
    "describe_network_acls": ({}, "NetworkAclId"),
    "describe_route_tables": ({}, "RouteTableId"),
    "describe_internet_gateways": ({}, "InternetGatewayId"),
    "describe_nat_gateways": ({}, "NatGatewayId"),
    "describe_vpc_peering_connections": ({}, "VpcPeeringConnectionId"),
    "describe_dhcp_options": ({}, "DhcpOptionsId"),
    "describe_tags": ({}, None),
    "describe_hosts": ({}, "HostId"),
    "describe_flow_logs": ({}, "FlowLogId"),
    "describe_managed_prefix_lists": ({}, "PrefixListId"),
}


def test_every_paginator_in_the_model_is_covered():
    d = os.path.join(os.path.dirname(botocore.__file__), "data", "ec2", "2016-11-15", "paginators-1.json")
    served = {a for a in DESCRIBES}
    snake = lambda a: re.sub(r"(?<!^)(?=[A-Z])", "_", a).lower()  # noqa: E731
    paged = {snake(op) for op in json.load(open(d))["pagination"] if op in served}
    assert paged == set(PAGED)


def keys(page, result_key, key):
    """The ids of a page's items (instances flattened out of their reservations)."""
    items = page[result_key]
    if result_key == "Reservations":
        items = [i for r in items for i in r["Instances"]]
    if key is None:
        return [(i["ResourceId"], i["Key"]) for i in items]
    return [i[key] for i in items]


@pytest.mark.parametrize("name", sorted(PAGED))
def test_paginators_walk_everything_in_a_stable_order(c, world, name):
    kwargs, key = PAGED[name]
    method = getattr(c, name)
    result_key = c.get_paginator(name)._pagination_cfg["result_key"]
    whole = keys(method(**kwargs), result_key, key)
    assert len(whole) >= 7, (name, whole)
    pages = list(c.get_paginator(name).paginate(PaginationConfig={"PageSize": 5}, **kwargs))
    assert len(pages) >= 2, name
    assert all(len(keys(p, result_key, key)) <= 5 for p in pages), name
    walked = [k for p in pages for k in keys(p, result_key, key)]
    # Same items, same order, none twice; a second walk gives the same sequence.
    assert walked == whole, name
    assert len(set(walked)) == len(walked), name
    again = [k for p in c.get_paginator(name).paginate(PaginationConfig={"PageSize": 5}, **kwargs)
             for k in keys(p, result_key, key)]
    assert again == walked, name


def test_paging_with_filters(c, world):
    flt = [{"Name": "tag:audit", "Values": ["yes"]}]
    pages = list(c.get_paginator("describe_vpcs").paginate(Filters=flt, PaginationConfig={"PageSize": 5}))
    assert [len(p["Vpcs"]) for p in pages] == [5, 2]
    assert sorted(v["VpcId"] for p in pages for v in p["Vpcs"]) == sorted(world["vpcs"])
    pages = list(c.get_paginator("describe_subnets").paginate(
        Filters=[{"Name": "vpc-id", "Values": [world["vpcs"][0]]}], PaginationConfig={"PageSize": 5}))
    assert sorted(s["SubnetId"] for p in pages for s in p["Subnets"]) == sorted(world["subnets"])
    # The AWS CLI pages on its own (--page-size) and merges the pages.
    pages = list(c.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag:Name", "Values": ["audit"]}], PaginationConfig={"PageSize": 5}))
    assert len(pages) == 2
    assert sorted(i["InstanceId"] for p in pages for i in instances(p)) == sorted(world["inst"])


def test_not_found_messages_are_aws_wording(c):
    """A missing id named in a Describe call: AWS's code and its exact sentence."""
    cases = [
        (c.describe_vpcs, "VpcIds", "vpc-0123456789abcdef0", "InvalidVpcID.NotFound", "The vpc ID '{}' does not exist"),
        (c.describe_subnets, "SubnetIds", "subnet-0123456789abcdef0", "InvalidSubnetID.NotFound",
         "The subnet ID '{}' does not exist"),
        (c.describe_instances, "InstanceIds", "i-0123456789abcdef0", "InvalidInstanceID.NotFound",
         "The instance ID '{}' does not exist"),
        (c.describe_network_interfaces, "NetworkInterfaceIds", "eni-0123456789abcdef0",
         "InvalidNetworkInterfaceID.NotFound", "The networkInterface ID '{}' does not exist"),
        (c.describe_security_groups, "GroupIds", "sg-0123456789abcdef0", "InvalidGroup.NotFound",
         "The security group '{}' does not exist"),
        (c.describe_network_acls, "NetworkAclIds", "acl-0123456789abcdef0", "InvalidNetworkAclID.NotFound",
         "The networkAcl ID '{}' does not exist"),
        (c.describe_route_tables, "RouteTableIds", "rtb-0123456789abcdef0", "InvalidRouteTableID.NotFound",
         "The routeTable ID '{}' does not exist"),
        (c.describe_internet_gateways, "InternetGatewayIds", "igw-0123456789abcdef0",
         "InvalidInternetGatewayID.NotFound", "The internetGateway ID '{}' does not exist"),
        (c.describe_vpc_peering_connections, "VpcPeeringConnectionIds", "pcx-0123456789abcdef0",
         "InvalidVpcPeeringConnectionID.NotFound", "The vpcPeeringConnection ID '{}' does not exist"),
        (c.describe_dhcp_options, "DhcpOptionsIds", "dopt-0123456789abcdef0", "InvalidDhcpOptionID.NotFound",
         "The dhcpOption ID '{}' does not exist"),
        (c.describe_addresses, "AllocationIds", "eipalloc-0123456789abcdef0", "InvalidAllocationID.NotFound",
         "The allocation ID '{}' does not exist"),
    ]
    for fn, member, missing, code, message in cases:
        err = expect_error(code, 400, fn, **{member: [missing]})
        assert err["Error"]["Message"] == message.format(missing), err["Error"]
    # Several missing: AWS lists them all.
    a, b = "vpc-0123456789abcdef0", "vpc-0123456789abcdef1"
    err = expect_error("InvalidVpcID.NotFound", 400, c.describe_vpcs, VpcIds=[a, b])
    assert err["Error"]["Message"] == f"The vpc IDs '{a}, {b}' do not exist"


def test_discovery_calls(c, srv):
    zones = c.describe_availability_zones()["AvailabilityZones"]
    assert [z["ZoneName"] for z in zones] == [f"us-east-1{x}" for x in "abcdef"]
    assert all(z["State"] == "available" and z["RegionName"] == "us-east-1" for z in zones)
    assert len({z["ZoneId"] for z in zones}) == 6
    # Every zone listed is one CreateSubnet accepts.
    vid = c.create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    for n, z in enumerate(zones):
        s = c.create_subnet(VpcId=vid, CidrBlock=f"10.50.{n}.0/24", AvailabilityZone=z["ZoneName"])["Subnet"]
        assert s["AvailabilityZone"] == z["ZoneName"]
    by_id = c.describe_availability_zones(ZoneIds=[zones[2]["ZoneId"]])["AvailabilityZones"]
    assert [z["ZoneName"] for z in by_id] == ["us-east-1c"]
    got = c.describe_availability_zones(Filters=[{"Name": "zone-name", "Values": ["us-east-1[ab]", "*f"]}])
    assert [z["ZoneName"] for z in got["AvailabilityZones"]] == ["us-east-1f"]
    err = expect_error("InvalidParameterValue", 400, c.describe_availability_zones, ZoneNames=["us-east-1z"])
    assert err["Error"]["Message"] == "Invalid availability zone: [us-east-1z]"

    (r,) = c.describe_regions()["Regions"]
    assert r["RegionName"] == "us-east-1" and r["Endpoint"] == "ec2.us-east-1.amazonaws.com"
    assert c.describe_regions(Filters=[{"Name": "region-name", "Values": ["eu-*"]}])["Regions"] == []
    expect_error("InvalidParameterValue", 400, c.describe_regions, RegionNames=["mars-1"])

    attrs = {a["AttributeName"]: [v["AttributeValue"] for v in a["AttributeValues"]]
             for a in c.describe_account_attributes()["AccountAttributes"]}
    assert attrs["supported-platforms"] == ["VPC"]
    # This module's server runs without a default VPC.
    assert attrs["default-vpc"] == ["none"]
    one = c.describe_account_attributes(AttributeNames=["default-vpc"])["AccountAttributes"]
    assert [a["AttributeName"] for a in one] == ["default-vpc"]


def test_account_attributes_name_the_default_vpc(workdir):
    """A server with its default VPC names it in default-vpc."""
    s = Server(workdir / "describe-audit-default-vpc", default_vpc=True).start()
    try:
        c = s.client()
        (default,) = c.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        (attr,) = c.describe_account_attributes(AttributeNames=["default-vpc"])["AccountAttributes"]
        assert [v["AttributeValue"] for v in attr["AttributeValues"]] == [default["VpcId"]]
    finally:
        s.stop()


def test_aws_cli_pages_and_waits(srv, world):
    """The AWS CLI's own paging (--page-size, --max-items) and `aws ec2 wait` against the server."""
    env = aws_env(srv.credentials_file)

    def cli(*args):
        p = subprocess.run(["aws", "ec2", "--endpoint-url", srv.endpoint, "--output", "json", *args],
                           capture_output=True, text=True, env=env, timeout=60)
        return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None), p.stderr

    rc, out, err = cli("describe-vpcs", "--page-size", "5", "--filters", "Name=tag:audit,Values=yes")
    assert rc == 0, err
    assert sorted(v["VpcId"] for v in out["Vpcs"]) == sorted(world["vpcs"])
    rc, out, err = cli("describe-vpcs", "--max-items", "3", "--page-size", "5",
                       "--filters", "Name=tag:audit,Values=yes")
    assert rc == 0, err
    assert len(out["Vpcs"]) == 3 and out.get("NextToken")
    rc, out, err = cli("describe-vpcs", "--max-items", "5", "--starting-token", out["NextToken"],
                       "--filters", "Name=tag:audit,Values=yes")
    assert rc == 0, err
    assert len(out["Vpcs"]) == 4
    rc, _, err = cli("describe-vpcs", "--filters", "Name=no-such-filter,Values=x")
    assert rc != 0 and "The filter 'no-such-filter' is invalid" in err
    rc, _, err = cli("wait", "instance-running", "--instance-ids", *world["inst"])
    assert rc == 0, err
    rc, _, err = cli("wait", "vpc-exists", "--vpc-ids", "vpc-0123456789abcdef0")
    assert rc != 0 and "Max attempts exceeded" in err, err


def test_paging_survives_changes_between_pages(c):
    """A page resumes after the last item handed out: deleting or adding resources between
    the calls neither repeats nor skips one of the others (offsets would)."""
    flt = [{"Name": "tag:churn", "Values": ["yes"]}]
    spec = [{"ResourceType": "vpc", "Tags": [{"Key": "churn", "Value": "yes"}]}]
    made = [c.create_vpc(CidrBlock="10.60.0.0/16", TagSpecifications=spec)["Vpc"]["VpcId"] for _ in range(8)]
    first = c.describe_vpcs(Filters=flt, MaxResults=5)
    page1 = [v["VpcId"] for v in first["Vpcs"]]
    assert page1 == sorted(made)[:5]
    c.delete_vpc(VpcId=page1[0])
    c.delete_vpc(VpcId=page1[1])
    added = c.create_vpc(CidrBlock="10.61.0.0/16", TagSpecifications=spec)["Vpc"]["VpcId"]
    rest = []
    token = first["NextToken"]
    while token:
        r = c.describe_vpcs(Filters=flt, MaxResults=5, NextToken=token)
        rest += [v["VpcId"] for v in r["Vpcs"]]
        token = r.get("NextToken")
    expected = sorted(made)[5:] + ([added] if added > page1[-1] else [])
    assert rest == sorted(expected)


def test_tag_and_instance_paging_survive_changes(c, world):
    vid = world["vpcs"][6]
    c.create_tags(Resources=[vid], Tags=[{"Key": f"k{n:02}", "Value": "v"} for n in range(12)])
    flt = [{"Name": "resource-id", "Values": [vid]}, {"Name": "key", "Values": ["k*"]}]
    first = c.describe_tags(Filters=flt, MaxResults=5)
    assert [t["Key"] for t in first["Tags"]] == [f"k{n:02}" for n in range(5)]
    c.delete_tags(Resources=[vid], Tags=[{"Key": "k00"}, {"Key": "k01"}])
    second = c.describe_tags(Filters=flt, MaxResults=5, NextToken=first["NextToken"])
    assert [t["Key"] for t in second["Tags"]] == [f"k{n:02}" for n in range(5, 10)]
    # Instances page in launch order; terminating one already listed shifts nothing.
    flt = [{"Name": "tag:Name", "Values": ["audit"]}]
    first = c.describe_instances(Filters=flt, MaxResults=5)
    listed = [i["InstanceId"] for i in instances(first)]
    c.create_tags(Resources=[listed[0]], Tags=[{"Key": "Name", "Value": "audit-renamed"}])
    try:
        rest = instances(c.describe_instances(Filters=flt, MaxResults=5, NextToken=first["NextToken"]))
        assert sorted(listed + [i["InstanceId"] for i in rest]) == sorted(world["inst"])
    finally:
        c.create_tags(Resources=[listed[0]], Tags=[{"Key": "Name", "Value": "audit"}])
