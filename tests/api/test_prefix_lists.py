"""Managed prefix lists through boto3 and the AWS CLI: create, describe (filters, paginator),
modify (entries with the current version, name, size), entries of a version, associations,
delete; AWS's refusals; references from security group rules (counted by MaxEntries against
the rule limit) and from routes."""

import uuid

from helpers import expect_error, tags

MISSING = "pl-0123456789abcdef0"


def new_list(ec2, max_entries=5, entries=("10.1.0.0/16",), **kw):
    return ec2.create_managed_prefix_list(
        PrefixListName=kw.pop("name", f"pl-test-{uuid.uuid4().hex[:8]}"),
        MaxEntries=max_entries, AddressFamily="IPv4",
        Entries=[{"Cidr": c, "Description": f"entry {c}"} for c in entries], **kw,
    )["PrefixList"]


def entries(ec2, pl_id, **kw):
    got = ec2.get_managed_prefix_list_entries(PrefixListId=pl_id, **kw)["Entries"]
    return [e["Cidr"] for e in got]


def test_create_describe_modify_delete(ec2):
    pl = new_list(ec2, entries=("10.1.0.0/16", "192.168.7.0/24"), TagSpecifications=[
        {"ResourceType": "prefix-list", "Tags": [{"Key": "team", "Value": "net"}]}])
    pid = pl["PrefixListId"]
    assert pid.startswith("pl-")
    assert pl["AddressFamily"] == "IPv4" and pl["State"] == "create-complete"
    assert pl["Version"] == 1 and pl["MaxEntries"] == 5 and pl["OwnerId"] == "123456789012"
    assert pl["PrefixListArn"] == f"arn:aws:ec2:us-east-1:123456789012:prefix-list/{pid}"
    assert tags(pl) == {"team": "net"}
    assert entries(ec2, pid) == ["10.1.0.0/16", "192.168.7.0/24"]
    got = ec2.describe_managed_prefix_lists(PrefixListIds=[pid])["PrefixLists"]
    assert [p["PrefixListName"] for p in got] == [pl["PrefixListName"]]
    by_name = ec2.describe_managed_prefix_lists(Filters=[
        {"Name": "prefix-list-name", "Values": [pl["PrefixListName"]]}])["PrefixLists"]
    assert [p["PrefixListId"] for p in by_name] == [pid]
    by_tag = ec2.describe_managed_prefix_lists(Filters=[
        {"Name": "tag:team", "Values": ["n*"]}])["PrefixLists"]
    assert pid in [p["PrefixListId"] for p in by_tag]

    # Entries change with the current version only, and make a new version.
    expect_error("MissingParameter", 400, ec2.modify_managed_prefix_list,
                 PrefixListId=pid, AddEntries=[{"Cidr": "10.9.0.0/16"}])
    expect_error("PrefixListVersionMismatch", 400, ec2.modify_managed_prefix_list,
                 PrefixListId=pid, CurrentVersion=7, AddEntries=[{"Cidr": "10.9.0.0/16"}])
    m = ec2.modify_managed_prefix_list(
        PrefixListId=pid, CurrentVersion=1, AddEntries=[{"Cidr": "10.9.0.0/16"}],
        RemoveEntries=[{"Cidr": "192.168.7.0/24"}])["PrefixList"]
    assert m["Version"] == 2 and m["State"] == "modify-complete"
    assert entries(ec2, pid) == ["10.1.0.0/16", "10.9.0.0/16"]
    assert entries(ec2, pid, TargetVersion=1) == ["10.1.0.0/16", "192.168.7.0/24"]
    expect_error("InvalidParameterValue", 400, ec2.get_managed_prefix_list_entries,
                 PrefixListId=pid, TargetVersion=9)
    expect_error("InvalidPrefixListModification", 400, ec2.modify_managed_prefix_list,
                 PrefixListId=pid, CurrentVersion=2, RemoveEntries=[{"Cidr": "172.16.0.0/12"}])
    expect_error("InvalidPrefixListModification", 400, ec2.modify_managed_prefix_list,
                 PrefixListId=pid, CurrentVersion=2, AddEntries=[{"Cidr": "10.9.0.0/16"}])
    expect_error("PrefixListMaxEntriesExceeded", 400, ec2.modify_managed_prefix_list,
                 PrefixListId=pid, CurrentVersion=2,
                 AddEntries=[{"Cidr": f"10.{i}.0.0/24"} for i in range(20, 24)])
    # The entries and the size never change together; the size never drops below the entries.
    expect_error("InvalidParameterCombination", 400, ec2.modify_managed_prefix_list,
                 PrefixListId=pid, CurrentVersion=2, MaxEntries=10,
                 AddEntries=[{"Cidr": "10.50.0.0/16"}])
    expect_error("InvalidParameterValue", 400, ec2.modify_managed_prefix_list,
                 PrefixListId=pid, MaxEntries=1)
    r = ec2.modify_managed_prefix_list(PrefixListId=pid, PrefixListName="renamed",
                                       MaxEntries=8)["PrefixList"]
    assert (r["PrefixListName"], r["MaxEntries"], r["Version"]) == ("renamed", 8, 2)

    d = ec2.delete_managed_prefix_list(PrefixListId=pid)["PrefixList"]
    assert d["PrefixListId"] == pid and d["State"] == "delete-complete"
    expect_error("InvalidPrefixListID.NotFound", 400, ec2.describe_managed_prefix_lists,
                 PrefixListIds=[pid])
    expect_error("InvalidPrefixListID.NotFound", 400, ec2.delete_managed_prefix_list,
                 PrefixListId=pid)


def test_create_refusals(ec2):
    def create(**kw):
        args = dict(PrefixListName="x", MaxEntries=2, AddressFamily="IPv4")
        args.update(kw)
        return ec2.create_managed_prefix_list(**args)

    expect_error("InvalidParameterValue", 400, create, MaxEntries=0)
    expect_error("InvalidParameterValue", 400, create, MaxEntries=1001)
    expect_error("InvalidParameterValue", 400, create, AddressFamily="IPv6")
    expect_error("InvalidParameterValue", 400, create, PrefixListName="com.amazonaws.mine")
    expect_error("InvalidParameterValue", 400, create, Entries=[{"Cidr": "10.0.0.0/33"}])
    expect_error("InvalidParameterValue", 400, create,
                 Entries=[{"Cidr": "10.0.0.0/8"}, {"Cidr": "10.0.0.0/8"}])
    expect_error("PrefixListMaxEntriesExceeded", 400, create,
                 Entries=[{"Cidr": f"10.{i}.0.0/16"} for i in range(3)])
    expect_error("InvalidPrefixListID.Malformed", 400, ec2.describe_managed_prefix_lists,
                 PrefixListIds=["bogus"])
    expect_error("InvalidPrefixListID.NotFound", 400, ec2.get_managed_prefix_list_entries,
                 PrefixListId=MISSING)
    expect_error("DryRunOperation", 412, create, DryRun=True)
    # ClientToken: a retry answers with the first list.
    token = uuid.uuid4().hex
    a = create(PrefixListName="idem", ClientToken=token)["PrefixList"]
    b = create(PrefixListName="idem", ClientToken=token)["PrefixList"]
    assert a["PrefixListId"] == b["PrefixListId"]
    ec2.delete_managed_prefix_list(PrefixListId=a["PrefixListId"])


def test_paginators(ec2):
    made = [new_list(ec2, max_entries=10, entries=[f"10.{i}.0.0/16" for i in range(7)])
            for _ in range(3)]
    pages = ec2.get_paginator("describe_managed_prefix_lists").paginate(
        PaginationConfig={"PageSize": 1})
    seen = [p["PrefixListId"] for page in pages for p in page["PrefixLists"]]
    assert all(m["PrefixListId"] in seen for m in made)
    assert len(seen) == len(set(seen))
    pages = list(ec2.get_paginator("get_managed_prefix_list_entries").paginate(
        PrefixListId=made[0]["PrefixListId"], PaginationConfig={"PageSize": 3}))
    assert [len(p["Entries"]) for p in pages] == [3, 3, 1]
    expect_error("InvalidParameterValue", 400, ec2.describe_managed_prefix_lists, MaxResults=101)
    for m in made:
        ec2.delete_managed_prefix_list(PrefixListId=m["PrefixListId"])


def test_security_group_rules_reference_lists(ec2, vpc):
    pl = new_list(ec2, max_entries=30)
    pid = pl["PrefixListId"]
    sg = ec2.create_security_group(GroupName=f"pl-{uuid.uuid4().hex[:6]}", Description="d",
                                   VpcId=vpc["VpcId"])["GroupId"]
    perm = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
            "PrefixListIds": [{"PrefixListId": pid, "Description": "corp"}]}
    rules = ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[perm])[
        "SecurityGroupRules"]
    assert [(r["PrefixListId"], r["Description"]) for r in rules] == [(pid, "corp")]
    (g,) = ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"]
    (p,) = g["IpPermissions"]
    assert p["PrefixListIds"] == [{"PrefixListId": pid, "Description": "corp"}]
    assert p["IpRanges"] == [] and p["UserIdGroupPairs"] == []
    found = ec2.describe_security_groups(Filters=[
        {"Name": "ip-permission.prefix-list-id", "Values": [pid]}])["SecurityGroups"]
    assert [x["GroupId"] for x in found] == [sg]
    expect_error("InvalidPermission.Duplicate", 400, ec2.authorize_security_group_ingress,
                 GroupId=sg, IpPermissions=[perm])
    expect_error("InvalidPrefixListID.NotFound", 400, ec2.authorize_security_group_ingress,
                 GroupId=sg, IpPermissions=[{**perm, "PrefixListIds": [{"PrefixListId": MISSING}]}])

    # The reference costs MaxEntries (30) of the 60 ingress rules.
    more = [{"IpProtocol": "tcp", "FromPort": 1000 + i, "ToPort": 1000 + i,
             "IpRanges": [{"CidrIp": "10.0.0.0/8"}]} for i in range(31)]
    expect_error("RulesPerSecurityGroupLimitExceeded", 400, ec2.authorize_security_group_ingress,
                 GroupId=sg, IpPermissions=more)
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=more[:30])
    # Growing the list would take the group over its limit.
    expect_error("InvalidParameterValue", 400, ec2.modify_managed_prefix_list,
                 PrefixListId=pid, MaxEntries=31)

    assoc = ec2.get_managed_prefix_list_associations(PrefixListId=pid)["PrefixListAssociations"]
    assert assoc == [{"ResourceId": sg, "ResourceOwner": "123456789012"}]
    expect_error("DependencyViolation", 400, ec2.delete_managed_prefix_list, PrefixListId=pid)

    # ModifySecurityGroupRules can point a rule at a list.
    rid = rules[0]["SecurityGroupRuleId"]
    pl2 = new_list(ec2, max_entries=2)["PrefixListId"]
    ec2.modify_security_group_rules(GroupId=sg, SecurityGroupRules=[{
        "SecurityGroupRuleId": rid,
        "SecurityGroupRule": {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                              "PrefixListId": pl2}}])
    (r,) = ec2.describe_security_group_rules(SecurityGroupRuleIds=[rid])["SecurityGroupRules"]
    assert r["PrefixListId"] == pl2
    ec2.delete_managed_prefix_list(PrefixListId=pid)
    ec2.revoke_security_group_ingress(GroupId=sg, SecurityGroupRuleIds=[rid])
    ec2.delete_managed_prefix_list(PrefixListId=pl2)


def test_routes_reference_lists(ec2, vpc):
    pl = new_list(ec2, max_entries=10, entries=("172.20.0.0/16", "172.21.0.0/16"))
    pid = pl["PrefixListId"]
    rtb = ec2.create_route_table(VpcId=vpc["VpcId"])["RouteTable"]["RouteTableId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc["VpcId"])
    ec2.create_route(RouteTableId=rtb, DestinationPrefixListId=pid, GatewayId=igw)
    (t,) = ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"]
    route = [r for r in t["Routes"] if "DestinationPrefixListId" in r]
    assert route == [{"DestinationPrefixListId": pid, "GatewayId": igw,
                      "Origin": "CreateRoute", "State": "active"}]
    found = ec2.describe_route_tables(Filters=[
        {"Name": "route.destination-prefix-list-id", "Values": [pid]}])["RouteTables"]
    assert [x["RouteTableId"] for x in found] == [rtb]
    expect_error("RouteAlreadyExists", 400, ec2.create_route, RouteTableId=rtb,
                 DestinationPrefixListId=pid, GatewayId=igw)
    expect_error("InvalidPrefixListID.NotFound", 400, ec2.create_route, RouteTableId=rtb,
                 DestinationPrefixListId=MISSING, GatewayId=igw)
    expect_error("InvalidParameterCombination", 400, ec2.create_route, RouteTableId=rtb,
                 DestinationPrefixListId=pid, DestinationCidrBlock="1.0.0.0/8", GatewayId=igw)
    # A route costs MaxEntries against the table's 50 routes.
    big = new_list(ec2, max_entries=45)["PrefixListId"]
    expect_error("RouteLimitExceeded", 400, ec2.create_route, RouteTableId=rtb,
                 DestinationPrefixListId=big, GatewayId=igw)
    assoc = ec2.get_managed_prefix_list_associations(PrefixListId=pid)["PrefixListAssociations"]
    assert [a["ResourceId"] for a in assoc] == [rtb]
    expect_error("DependencyViolation", 400, ec2.delete_managed_prefix_list, PrefixListId=pid)
    ec2.delete_route(RouteTableId=rtb, DestinationPrefixListId=pid)
    expect_error("InvalidRoute.NotFound", 400, ec2.delete_route, RouteTableId=rtb,
                 DestinationPrefixListId=pid)
    ec2.delete_managed_prefix_list(PrefixListId=pid)
    ec2.delete_managed_prefix_list(PrefixListId=big)


def test_cli(aws):
    code, out, err = aws("create-managed-prefix-list", "--prefix-list-name", "cli-list",
                         "--max-entries", "3", "--address-family", "IPv4",
                         "--entries", "Cidr=10.7.0.0/16,Description=seven")
    assert code == 0, err
    pid = out["PrefixList"]["PrefixListId"]
    code, out, err = aws("get-managed-prefix-list-entries", "--prefix-list-id", pid)
    assert code == 0, err
    assert out["Entries"] == [{"Cidr": "10.7.0.0/16", "Description": "seven"}]
    code, out, err = aws("create-tags", "--resources", pid, "--tags", "Key=k,Value=v")
    assert code == 0, err
    code, out, err = aws("describe-tags", "--filters", f"Name=resource-id,Values={pid}")
    assert code == 0, err
    assert [(t["ResourceType"], t["Key"]) for t in out["Tags"]] == [("prefix-list", "k")]
    code, out, err = aws("modify-managed-prefix-list", "--prefix-list-id", pid,
                         "--current-version", "5", "--add-entries", "Cidr=10.8.0.0/16")
    assert code != 0 and "PrefixListVersionMismatch" in err
    code, out, err = aws("delete-managed-prefix-list", "--prefix-list-id", pid)
    assert code == 0, err
