"""VPC peering connections through boto3 (lifecycle, overlap failure, refusals with AWS's codes
and HTTP status, DryRun, filters, pagination, the vpc_peering_connection_exists waiter, routes to
a peering) and an AWS CLI smoke test of peering two VPCs."""

from conftest import Server
from helpers import expect_error, tags

MISSING_PCX = "pcx-0123456789abcdef0"
MISSING_VPC = "vpc-0123456789abcdef0"


def two_vpcs(ec2, a="10.40.0.0/16", b="10.41.0.0/16"):
    return (ec2.create_vpc(CidrBlock=a)["Vpc"]["VpcId"], ec2.create_vpc(CidrBlock=b)["Vpc"]["VpcId"])


def status(ec2, pcx):
    got = ec2.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pcx])["VpcPeeringConnections"]
    return got[0]["Status"]["Code"]


def main_table(ec2, vpc_id):
    return ec2.describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]},
        {"Name": "association.main", "Values": ["true"]}])["RouteTables"][0]


def test_peering_lifecycle(ec2):
    a, b = two_vpcs(ec2)
    expect_error("DryRunOperation", 412, ec2.create_vpc_peering_connection, VpcId=a, PeerVpcId=b, DryRun=True)
    p = ec2.create_vpc_peering_connection(VpcId=a, PeerVpcId=b, PeerOwnerId="123456789012", PeerRegion="us-east-1",
                                          TagSpecifications=[{"ResourceType": "vpc-peering-connection",
                                                              "Tags": [{"Key": "Name", "Value": "a-b"}]}],
                                          )["VpcPeeringConnection"]
    pcx = p["VpcPeeringConnectionId"]
    assert pcx.startswith("pcx-") and tags(p) == {"Name": "a-b"}
    assert p["Status"]["Code"] == "initiating-request"
    assert p["RequesterVpcInfo"]["VpcId"] == a and p["RequesterVpcInfo"]["CidrBlock"] == "10.40.0.0/16"
    assert p["AccepterVpcInfo"]["VpcId"] == b and p["AccepterVpcInfo"]["CidrBlock"] == "10.41.0.0/16"
    assert p["AccepterVpcInfo"]["OwnerId"] == "123456789012" and p["AccepterVpcInfo"]["Region"] == "us-east-1"
    ec2.get_waiter("vpc_peering_connection_exists").wait(VpcPeeringConnectionIds=[pcx],
                                                         WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    assert status(ec2, pcx) == "pending-acceptance"
    # A route through a peering that is not active yet is accepted, as on AWS (a blackhole
    # until the peering is active; test_aws_differences.py checks its state).
    rtb = main_table(ec2, a)["RouteTableId"]
    ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="10.41.0.0/16", VpcPeeringConnectionId=pcx)
    expect_error("DryRunOperation", 412, ec2.accept_vpc_peering_connection, VpcPeeringConnectionId=pcx, DryRun=True)
    assert status(ec2, pcx) == "pending-acceptance"
    got = ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)["VpcPeeringConnection"]
    assert got["Status"]["Code"] == "active"
    expect_error("InvalidStateTransition", 400, ec2.accept_vpc_peering_connection, VpcPeeringConnectionId=pcx)
    expect_error("InvalidStateTransition", 400, ec2.reject_vpc_peering_connection, VpcPeeringConnectionId=pcx)
    # The route to the peering is active now; after the peering is deleted it is a blackhole.

    def route_state():
        routes = ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]["Routes"]
        r = [r for r in routes if r.get("VpcPeeringConnectionId") == pcx]
        return r[0]["State"]
    assert route_state() == "active"
    # Not transitive: a third VPC's table cannot route through it.
    c = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    expect_error("InvalidVpcPeeringConnectionID.NotFound", 400, ec2.create_route,
                 RouteTableId=main_table(ec2, c)["RouteTableId"], DestinationCidrBlock="10.41.0.0/16",
                 VpcPeeringConnectionId=pcx)
    assert ec2.delete_vpc_peering_connection(VpcPeeringConnectionId=pcx)["Return"] is True
    assert status(ec2, pcx) == "deleted"
    assert route_state() == "blackhole"
    expect_error("InvalidStateTransition", 400, ec2.delete_vpc_peering_connection, VpcPeeringConnectionId=pcx)
    ec2.delete_route(RouteTableId=rtb, DestinationCidrBlock="10.41.0.0/16")
    for v in (a, b, c):
        ec2.delete_vpc(VpcId=v)


def test_peering_reject_overlap_and_refusals(ec2):
    a, b = two_vpcs(ec2, "10.50.0.0/16", "10.51.0.0/16")
    overlap = ec2.create_vpc(CidrBlock="10.50.128.0/17")["Vpc"]["VpcId"]
    f = ec2.create_vpc_peering_connection(VpcId=a, PeerVpcId=overlap)["VpcPeeringConnection"]
    assert f["Status"]["Code"] == "failed" and f["Status"]["Message"]
    expect_error("InvalidStateTransition", 400, ec2.accept_vpc_peering_connection,
                 VpcPeeringConnectionId=f["VpcPeeringConnectionId"])
    expect_error("InvalidStateTransition", 400, ec2.delete_vpc_peering_connection,
                 VpcPeeringConnectionId=f["VpcPeeringConnectionId"])
    pcx = ec2.create_vpc_peering_connection(VpcId=a, PeerVpcId=b)["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    assert ec2.reject_vpc_peering_connection(VpcPeeringConnectionId=pcx)["Return"] is True
    assert status(ec2, pcx) == "rejected"
    expect_error("InvalidStateTransition", 400, ec2.accept_vpc_peering_connection, VpcPeeringConnectionId=pcx)
    expect_error("InvalidVpcID.NotFound", 400, ec2.create_vpc_peering_connection, VpcId=a, PeerVpcId=MISSING_VPC)
    expect_error("InvalidVpcID.NotFound", 400, ec2.create_vpc_peering_connection, VpcId=MISSING_VPC, PeerVpcId=a)
    expect_error("InvalidParameterValue", 400, ec2.create_vpc_peering_connection, VpcId=a, PeerVpcId=b,
                 PeerRegion="eu-west-1")
    expect_error("InvalidParameterValue", 400, ec2.create_vpc_peering_connection, VpcId=a, PeerVpcId=b,
                 PeerOwnerId="999999999999")
    for fn in (ec2.accept_vpc_peering_connection, ec2.reject_vpc_peering_connection,
               ec2.delete_vpc_peering_connection):
        expect_error("InvalidVpcPeeringConnectionID.NotFound", 400, fn, VpcPeeringConnectionId=MISSING_PCX)
    expect_error("InvalidVpcPeeringConnectionID.NotFound", 400, ec2.describe_vpc_peering_connections,
                 VpcPeeringConnectionIds=[MISSING_PCX])
    expect_error("DryRunOperation", 412, ec2.describe_vpc_peering_connections, DryRun=True)
    # Deleting a VPC deletes its active peering.
    live = ec2.create_vpc_peering_connection(VpcId=a, PeerVpcId=b)["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=live)
    ec2.delete_vpc(VpcId=b)
    assert status(ec2, live) == "deleted"
    for v in (a, overlap):
        ec2.delete_vpc(VpcId=v)


def default_group(ec2, vpc):
    (g,) = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                 {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
    return g["GroupId"]


def test_rules_may_reference_groups_of_an_actively_peered_vpc(ec2):
    """AWS: a rule may name a group of a VPC peered with the group's own (same account and
    region), shown with that VPC, the connection and its status; a group of any other VPC, or
    of one whose peering is not (yet) active, is refused."""
    a, b = two_vpcs(ec2, "10.44.0.0/16", "10.45.0.0/16")
    c = ec2.create_vpc(CidrBlock="10.46.0.0/16")["Vpc"]["VpcId"]
    web = ec2.create_security_group(GroupName="peer-ref", Description="d", VpcId=b)["GroupId"]
    ga, gc = default_group(ec2, a), default_group(ec2, c)

    def allow_from(group):
        return ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[{
            "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
            "UserIdGroupPairs": [{"GroupId": group}]}])["SecurityGroupRules"][0]

    err = expect_error("InvalidGroup.NotFound", 400, allow_from, ga)
    assert "different networks" in err["Error"]["Message"], err
    pending = ec2.create_vpc_peering_connection(VpcId=b, PeerVpcId=c)["VpcPeeringConnection"]
    expect_error("InvalidGroup.NotFound", 400, allow_from, gc)
    pcx = ec2.create_vpc_peering_connection(VpcId=a, PeerVpcId=b)["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    rule = allow_from(ga)
    want = {"GroupId": ga, "UserId": "123456789012", "VpcId": a, "VpcPeeringConnectionId": pcx,
            "PeeringStatus": "active"}
    assert rule["ReferencedGroupInfo"] == want, rule
    (described,) = ec2.describe_security_group_rules(
        SecurityGroupRuleIds=[rule["SecurityGroupRuleId"]])["SecurityGroupRules"]
    assert described["ReferencedGroupInfo"] == want, described
    (group,) = ec2.describe_security_groups(GroupIds=[web])["SecurityGroups"]
    (perm,) = group["IpPermissions"]
    assert perm["UserIdGroupPairs"] == [want], perm
    # A pair's UserId, VpcId, VpcPeeringConnectionId and PeeringStatus describe the group: what
    # DescribeSecurityGroups answered is accepted back (revoked here), anything else refused.
    ec2.revoke_security_group_ingress(GroupId=web, IpPermissions=[perm])
    assert not ec2.describe_security_groups(GroupIds=[web])["SecurityGroups"][0]["IpPermissions"]
    for member, value in (("UserId", "999999999999"), ("VpcId", b), ("VpcPeeringConnectionId", "pcx-0123456789abcdef0"),
                          ("PeeringStatus", "deleted")):
        err = expect_error("InvalidParameterValue", 400, ec2.authorize_security_group_ingress, GroupId=web,
                           IpPermissions=[{"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
                                           "UserIdGroupPairs": [dict(want, **{member: value})]}])
        assert f"UserIdGroupPairs.{member}" in err["Error"]["Message"], err
    rule = ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "UserIdGroupPairs": [want]}])["SecurityGroupRules"][0]
    assert rule["ReferencedGroupInfo"] == want, rule
    # A group of the same VPC shows neither VPC nor connection.
    own = allow_from(default_group(ec2, b))
    assert own["ReferencedGroupInfo"] == {"GroupId": default_group(ec2, b), "UserId": "123456789012"}, own
    ec2.revoke_security_group_ingress(GroupId=web, SecurityGroupRuleIds=[rule["SecurityGroupRuleId"]])
    ec2.delete_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    ec2.delete_vpc_peering_connection(VpcPeeringConnectionId=pending["VpcPeeringConnectionId"])
    # Without the connection: refused again.
    expect_error("InvalidGroup.NotFound", 400, allow_from, ga)
    ec2.delete_security_group(GroupId=web)
    for v in (a, b, c):
        ec2.delete_vpc(VpcId=v)


def test_peering_filters_and_pagination(ec2):
    a, b = two_vpcs(ec2, "10.60.0.0/16", "10.61.0.0/16")
    c = ec2.create_vpc(CidrBlock="10.62.0.0/16")["Vpc"]["VpcId"]
    ab = ec2.create_vpc_peering_connection(VpcId=a, PeerVpcId=b, TagSpecifications=[
        {"ResourceType": "vpc-peering-connection", "Tags": [{"Key": "pair", "Value": "ab"}]}]
    )["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    ac = ec2.create_vpc_peering_connection(VpcId=a, PeerVpcId=c)["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=ac)

    def ids(*filters):
        got = ec2.describe_vpc_peering_connections(Filters=[{"Name": n, "Values": [v]} for n, v in filters])
        return sorted(p["VpcPeeringConnectionId"] for p in got["VpcPeeringConnections"])
    assert ids(("requester-vpc-info.vpc-id", a)) == sorted([ab, ac])
    assert ids(("accepter-vpc-info.vpc-id", c)) == [ac]
    assert ids(("requester-vpc-info.vpc-id", a), ("status-code", "active")) == [ac]
    assert ids(("requester-vpc-info.vpc-id", a), ("status-code", "pending-acceptance")) == [ab]
    assert ids(("requester-vpc-info.cidr-block", "10.60.0.0/16"), ("accepter-vpc-info.cidr-block", "10.61.0.0/16")) \
        == [ab]
    assert ids(("vpc-peering-connection-id", ab)) == [ab]
    assert ids(("tag:pair", "ab")) == [ab]
    expect_error("InvalidParameterValue", 400, ec2.describe_vpc_peering_connections,
                 Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    pages = ec2.get_paginator("describe_vpc_peering_connections").paginate(
        Filters=[{"Name": "requester-vpc-info.vpc-id", "Values": [a]}], PaginationConfig={"PageSize": 5})
    seen = [p["VpcPeeringConnectionId"] for page in pages for p in page["VpcPeeringConnections"]]
    assert sorted(seen) == sorted([ab, ac])
    ec2.create_tags(Resources=[ac], Tags=[{"Key": "pair", "Value": "ac"}])
    assert ids(("tag:pair", "ac")) == [ac]
    got = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [ab, ac]}])["Tags"]
    assert sorted((t["ResourceId"], t["ResourceType"], t["Value"]) for t in got) == sorted(
        [(ab, "vpc-peering-connection", "ab"), (ac, "vpc-peering-connection", "ac")])
    ec2.delete_tags(Resources=[ac], Tags=[{"Key": "pair"}])
    assert ids(("tag:pair", "ac")) == []
    for pcx in (ab, ac):
        ec2.delete_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    for v in (a, b, c):
        ec2.delete_vpc(VpcId=v)


def test_cli_peering_smoke(aws):
    vpcs = []
    for cidr in ("10.70.0.0/16", "10.71.0.0/16"):
        rc, out, err = aws("create-vpc", "--cidr-block", cidr)
        assert rc == 0, err
        vpcs.append(out["Vpc"]["VpcId"])
    rc, out, err = aws("create-vpc-peering-connection", "--vpc-id", vpcs[0], "--peer-vpc-id", vpcs[1])
    assert rc == 0, err
    pcx = out["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    rc, _, err = aws("wait", "vpc-peering-connection-exists", "--vpc-peering-connection-ids", pcx)
    assert rc == 0, err
    rc, out, err = aws("accept-vpc-peering-connection", "--vpc-peering-connection-id", pcx)
    assert rc == 0 and out["VpcPeeringConnection"]["Status"]["Code"] == "active", err
    rc, out, err = aws("describe-vpc-peering-connections", "--filters", "Name=status-code,Values=active",
                       f"Name=accepter-vpc-info.vpc-id,Values={vpcs[1]}")
    assert rc == 0, err
    assert [p["VpcPeeringConnectionId"] for p in out["VpcPeeringConnections"]] == [pcx]
    rc, _, err = aws("accept-vpc-peering-connection", "--vpc-peering-connection-id", pcx)
    assert rc != 0 and "InvalidStateTransition" in err
    rc, _, err = aws("delete-vpc-peering-connection", "--vpc-peering-connection-id", pcx)
    assert rc == 0, err
    for v in vpcs:
        rc, _, err = aws("delete-vpc", "--vpc-id", v)
        assert rc == 0, err


def test_peerings_survive_restart(workdir):
    srv = Server(workdir / "peering-restart").start()
    try:
        ec2 = srv.client()
        a, b = two_vpcs(ec2, "10.80.0.0/16", "10.81.0.0/16")
        live = ec2.create_vpc_peering_connection(VpcId=a, PeerVpcId=b)["VpcPeeringConnection"]["VpcPeeringConnectionId"]
        ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=live)
        pending = ec2.create_vpc_peering_connection(VpcId=b, PeerVpcId=a)["VpcPeeringConnection"]["VpcPeeringConnectionId"]
        rtb = main_table(ec2, a)["RouteTableId"]
        ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="10.81.0.0/16", VpcPeeringConnectionId=live)
        before = ec2.describe_vpc_peering_connections()["VpcPeeringConnections"]
        srv.stop()
        srv.start()
        ec2 = srv.client()
        after = ec2.describe_vpc_peering_connections()["VpcPeeringConnections"]
        key = lambda p: p["VpcPeeringConnectionId"]  # noqa: E731
        assert sorted(before, key=key) == sorted(after, key=key) and len(after) == 2
        assert status(ec2, live) == "active" and status(ec2, pending) == "pending-acceptance"
        routes = ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]["Routes"]
        assert [r["State"] for r in routes if r.get("VpcPeeringConnectionId") == live] == ["active"]
    finally:
        srv.stop()


def test_pending_request_expires_in_seven_days(ec2):
    """A request pending acceptance shows ExpirationTime, 7 days after it was made (as AWS);
    an accepted, failed or rejected connection shows none."""
    import datetime
    a, b = two_vpcs(ec2, "10.44.0.0/16", "10.45.0.0/16")
    made = datetime.datetime.now(datetime.timezone.utc)
    p = ec2.create_vpc_peering_connection(VpcId=a, PeerVpcId=b)["VpcPeeringConnection"]
    pcx = p["VpcPeeringConnectionId"]
    week = datetime.timedelta(days=7)
    assert abs(p["ExpirationTime"] - (made + week)) < datetime.timedelta(seconds=60), p
    got = ec2.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pcx])["VpcPeeringConnections"][0]
    assert got["Status"]["Code"] == "pending-acceptance"
    assert got["ExpirationTime"] == p["ExpirationTime"]
    stamp = got["ExpirationTime"].strftime("%Y-%m-%dT%H:%M:%S.000Z")
    found = ec2.describe_vpc_peering_connections(Filters=[
        {"Name": "expiration-time", "Values": [stamp]}])["VpcPeeringConnections"]
    assert [x["VpcPeeringConnectionId"] for x in found] == [pcx]
    accepted = ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)["VpcPeeringConnection"]
    assert "ExpirationTime" not in accepted
    got = ec2.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pcx])["VpcPeeringConnections"][0]
    assert "ExpirationTime" not in got
    assert ec2.describe_vpc_peering_connections(Filters=[
        {"Name": "expiration-time", "Values": [stamp]}])["VpcPeeringConnections"] == []
    # A request that fails (overlapping CIDRs) never waits, so it has no expiration time.
    c = ec2.create_vpc(CidrBlock="10.44.0.0/16")["Vpc"]["VpcId"]
    failed = ec2.create_vpc_peering_connection(VpcId=a, PeerVpcId=c)["VpcPeeringConnection"]
    assert failed["Status"]["Code"] == "failed" and "ExpirationTime" not in failed
    ec2.delete_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    for v in (a, b, c):
        ec2.delete_vpc(VpcId=v)
