"""Security groups through boto3: the default group of every VPC, CreateSecurityGroup,
DeleteSecurityGroup, DescribeSecurityGroups (ids, names, filters, paginator), Authorize/Revoke
Ingress/Egress, DescribeSecurityGroupRules, ModifySecurityGroupRules, and an AWS CLI smoke test."""

import re

from helpers import expect_error, tags

SG = re.compile(r"^sg-[0-9a-f]{17}$")
SGR = re.compile(r"^sgr-[0-9a-f]{17}$")
ALL_OUT = {
    "IpProtocol": "-1",
    "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
    "Ipv6Ranges": [],
    "PrefixListIds": [],
    "UserIdGroupPairs": [],
}


def ssh(cidr="10.0.0.0/8", port=22, desc=None):
    r = {"CidrIp": cidr}
    if desc:
        r["Description"] = desc
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [r]}


def group(ec2, gid):
    return ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]


def default_group(ec2, vpc_id):
    got = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"]
    assert len(got) == 1
    return got[0]


def test_every_vpc_has_a_default_group(ec2, vpc):
    g = default_group(ec2, vpc["VpcId"])
    assert SG.match(g["GroupId"])
    assert g["Description"] == "default VPC security group"
    assert g["OwnerId"] == "123456789012"
    assert len(g["IpPermissions"]) == 1
    inbound = g["IpPermissions"][0]
    assert inbound["IpProtocol"] == "-1"
    assert [p["GroupId"] for p in inbound["UserIdGroupPairs"]] == [g["GroupId"]]
    assert g["IpPermissionsEgress"] == [ALL_OUT]
    expect_error("CannotDelete", 400, ec2.delete_security_group, GroupId=g["GroupId"])


def test_create_describe_delete(ec2, vpc):
    out = ec2.create_security_group(
        GroupName="web", Description="web tier", VpcId=vpc["VpcId"],
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": "Name", "Value": "web-sg"}]}],
    )
    gid = out["GroupId"]
    assert SG.match(gid)
    assert tags(out) == {"Name": "web-sg"}
    g = group(ec2, gid)
    assert g["GroupName"] == "web" and g["Description"] == "web tier"
    assert g["VpcId"] == vpc["VpcId"]
    assert g["IpPermissions"] == []
    assert g["IpPermissionsEgress"] == [ALL_OUT]
    assert tags(g) == {"Name": "web-sg"}
    by_name = ec2.describe_security_groups(GroupNames=["web"])["SecurityGroups"]
    assert gid in {x["GroupId"] for x in by_name}
    assert ec2.delete_security_group(GroupId=gid)["Return"] is True
    expect_error("InvalidGroup.NotFound", 400, ec2.describe_security_groups, GroupIds=[gid])
    expect_error("InvalidGroup.NotFound", 400, ec2.delete_security_group, GroupId=gid)
    expect_error("InvalidGroupId.Malformed", 400, ec2.describe_security_groups, GroupIds=["web"])
    expect_error("InvalidGroupId.Malformed", 400, ec2.delete_security_group, GroupId="sg-xyz")
    expect_error("InvalidGroup.NotFound", 400, ec2.delete_security_group, GroupName="no-such-group")


def test_create_refusals(ec2, vpc):
    v = vpc["VpcId"]
    ec2.create_security_group(GroupName="dup", Description="d", VpcId=v)
    expect_error("InvalidGroup.Duplicate", 400, ec2.create_security_group, GroupName="dup", Description="d", VpcId=v)
    expect_error("InvalidGroup.Reserved", 400, ec2.create_security_group, GroupName="default", Description="d", VpcId=v)
    expect_error("InvalidVpcID.NotFound", 400, ec2.create_security_group, GroupName="x", Description="d",
                 VpcId="vpc-0123456789abcdef0")
    expect_error("VPCIdNotSpecified", 400, ec2.create_security_group, GroupName="x", Description="d")
    expect_error("InvalidParameterValue", 400, ec2.create_security_group, GroupName="sg-x", Description="d", VpcId=v)
    # The same name in another VPC is fine.
    other = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    ec2.create_security_group(GroupName="dup", Description="d", VpcId=other)


def test_dry_run(ec2, vpc):
    before = ec2.describe_security_groups()["SecurityGroups"]
    expect_error("DryRunOperation", 412, ec2.create_security_group, GroupName="dry", Description="d",
                 VpcId=vpc["VpcId"], DryRun=True)
    assert ec2.describe_security_groups()["SecurityGroups"] == before
    gid = ec2.create_security_group(GroupName="dry2", Description="d", VpcId=vpc["VpcId"])["GroupId"]
    expect_error("DryRunOperation", 412, ec2.authorize_security_group_ingress, GroupId=gid,
                 IpPermissions=[ssh()], DryRun=True)
    assert group(ec2, gid)["IpPermissions"] == []
    expect_error("DryRunOperation", 412, ec2.delete_security_group, GroupId=gid, DryRun=True)
    expect_error("DryRunOperation", 412, ec2.describe_security_groups, DryRun=True)
    group(ec2, gid)


def test_authorize_and_revoke(ec2, vpc):
    gid = ec2.create_security_group(GroupName="rules", Description="d", VpcId=vpc["VpcId"])["GroupId"]
    other = ec2.create_security_group(GroupName="peer", Description="d", VpcId=vpc["VpcId"])["GroupId"]
    out = ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        ssh("10.0.0.0/8", desc="ssh from lan"),
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "192.168.0.0/16"}]},
        {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "6", "FromPort": 443, "ToPort": 443, "UserIdGroupPairs": [{"GroupId": other}]},
    ])
    assert out["Return"] is True
    rules = out["SecurityGroupRules"]
    assert len(rules) == 4
    assert all(SGR.match(r["SecurityGroupRuleId"]) and r["IsEgress"] is False and r["GroupId"] == gid for r in rules)
    assert rules[0]["CidrIpv4"] == "10.0.0.0/8" and rules[0]["Description"] == "ssh from lan"
    assert rules[3]["IpProtocol"] == "tcp" and rules[3]["ReferencedGroupInfo"]["GroupId"] == other

    perms = group(ec2, gid)["IpPermissions"]
    ssh_perm = [p for p in perms if p.get("FromPort") == 22][0]
    assert sorted(r["CidrIp"] for r in ssh_perm["IpRanges"]) == ["10.0.0.0/8", "192.168.0.0/16"]
    icmp = [p for p in perms if p["IpProtocol"] == "icmp"][0]
    assert (icmp["FromPort"], icmp["ToPort"]) == (8, -1)

    err = expect_error("InvalidPermission.Duplicate", 400, ec2.authorize_security_group_ingress,
                       GroupId=gid, IpPermissions=[ssh("10.0.0.0/8")])
    assert "already exists" in err["Error"]["Message"]
    # Egress: the default all-traffic rule is there already.
    expect_error("InvalidPermission.Duplicate", 400, ec2.authorize_security_group_egress, GroupId=gid,
                 IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    ec2.authorize_security_group_egress(GroupId=gid, IpPermissions=[ssh("10.1.0.0/16")])
    assert len(group(ec2, gid)["IpPermissionsEgress"]) == 2

    out = ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=[ssh("192.168.0.0/16")])
    assert out["Return"] is True
    assert [r["CidrIpv4"] for r in out["RevokedSecurityGroupRules"]] == ["192.168.0.0/16"]
    expect_error("InvalidPermission.NotFound", 400, ec2.revoke_security_group_ingress,
                 GroupId=gid, IpPermissions=[ssh("192.168.0.0/16")])
    # By rule id.
    rid = rules[2]["SecurityGroupRuleId"]
    ec2.revoke_security_group_ingress(GroupId=gid, SecurityGroupRuleIds=[rid])
    assert all(p["IpProtocol"] != "icmp" for p in group(ec2, gid)["IpPermissions"])
    # Egress revoke.
    ec2.revoke_security_group_egress(GroupId=gid, IpPermissions=[ssh("10.1.0.0/16")])
    assert group(ec2, gid)["IpPermissionsEgress"] == [ALL_OUT]
    # A group referenced by another group's rule cannot be deleted.
    expect_error("DependencyViolation", 400, ec2.delete_security_group, GroupId=other)


def test_authorize_validation(ec2, vpc):
    gid = ec2.create_security_group(GroupName="val", Description="d", VpcId=vpc["VpcId"])["GroupId"]
    bad = [
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "udp", "FromPort": 0, "ToPort": 70000, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "bogus", "FromPort": 1, "ToPort": 1, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "300", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "icmp", "FromPort": 300, "ToPort": 0, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 1, "IpRanges": [{"CidrIp": "10.0.0.0/33"}]},
    ]
    for p in bad:
        expect_error("InvalidParameterValue", 400, ec2.authorize_security_group_ingress, GroupId=gid, IpPermissions=[p])
    expect_error("InvalidGroup.NotFound", 400, ec2.authorize_security_group_ingress, GroupId=gid,
                 IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-0123456789abcdef0"}]}])
    expect_error("InvalidGroup.NotFound", 400, ec2.authorize_security_group_ingress,
                 GroupId="sg-0123456789abcdef0", IpPermissions=[ssh()])
    # One bad permission refuses the whole call.
    expect_error("InvalidParameterValue", 400, ec2.authorize_security_group_ingress, GroupId=gid,
                 IpPermissions=[ssh(), bad[0]])
    assert group(ec2, gid)["IpPermissions"] == []
    # Protocol numbers other than tcp/udp/icmp have no ports.
    out = ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "50", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    assert out["SecurityGroupRules"][0]["IpProtocol"] == "50"
    assert out["SecurityGroupRules"][0]["FromPort"] == -1


def test_rule_limit(ec2, vpc):
    gid = ec2.create_security_group(GroupName="limit", Description="d", VpcId=vpc["VpcId"])["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[ssh(port=1000 + i) for i in range(60)])
    expect_error("RulesPerSecurityGroupLimitExceeded", 400, ec2.authorize_security_group_ingress,
                 GroupId=gid, IpPermissions=[ssh(port=5)])
    assert len(group(ec2, gid)["IpPermissions"]) == 60


def test_legacy_flat_parameters(ec2, vpc):
    gid = ec2.create_security_group(GroupName="flat", Description="d", VpcId=vpc["VpcId"])["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=gid, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0")
    perms = group(ec2, gid)["IpPermissions"]
    assert perms[0]["FromPort"] == 80 and perms[0]["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}]
    ec2.revoke_security_group_ingress(GroupId=gid, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0")
    assert group(ec2, gid)["IpPermissions"] == []


def test_describe_filters_and_paginator(ec2, vpc):
    v = vpc["VpcId"]
    ids = []
    for i in range(7):
        gid = ec2.create_security_group(
            GroupName=f"pg-{i}", Description=f"page {i}", VpcId=v,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": "batch", "Value": "pg7"}]}],
        )["GroupId"]
        ids.append(gid)
    ec2.authorize_security_group_ingress(GroupId=ids[0], IpPermissions=[ssh("10.77.0.0/16", port=2222)])

    def found(filters):
        return {g["GroupId"] for g in ec2.describe_security_groups(Filters=filters)["SecurityGroups"]}

    assert found([{"Name": "tag:batch", "Values": ["pg7"]}]) == set(ids)
    assert found([{"Name": "group-name", "Values": ["pg-1", "pg-2"]}, {"Name": "vpc-id", "Values": [v]}]) == {ids[1], ids[2]}
    assert found([{"Name": "description", "Values": ["page ?"]}, {"Name": "vpc-id", "Values": [v]}]) == set(ids)
    assert found([{"Name": "ip-permission.from-port", "Values": ["2222"]}]) == {ids[0]}
    assert found([{"Name": "ip-permission.cidr", "Values": ["10.77.0.0/16"]}]) == {ids[0]}
    assert ids[0] in found([{"Name": "egress.ip-permission.cidr", "Values": ["0.0.0.0/0"]}])
    assert found([{"Name": "group-id", "Values": [ids[3]]}]) == {ids[3]}
    assert ids[0] in found([{"Name": "owner-id", "Values": ["123456789012"]}])
    expect_error("InvalidParameterValue", 400, ec2.describe_security_groups, Filters=[{"Name": "nope", "Values": ["x"]}])

    pages = ec2.get_paginator("describe_security_groups").paginate(
        Filters=[{"Name": "tag:batch", "Values": ["pg7"]}], PaginationConfig={"PageSize": 5})
    sizes = [len(p["SecurityGroups"]) for p in pages]
    assert sizes == [5, 2]
    expect_error("InvalidNextToken", 400, ec2.describe_security_groups, MaxResults=5, NextToken="zzz")


def test_security_group_rules_api(ec2, vpc):
    gid = ec2.create_security_group(GroupName="sgr", Description="d", VpcId=vpc["VpcId"])["GroupId"]
    added = ec2.authorize_security_group_ingress(
        GroupId=gid, IpPermissions=[ssh("10.0.0.0/8"), ssh("10.0.0.0/8", port=80)],
        TagSpecifications=[{"ResourceType": "security-group-rule", "Tags": [{"Key": "k", "Value": "v"}]}],
    )["SecurityGroupRules"]
    assert tags(added[0]) == {"k": "v"}
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [gid]}])["SecurityGroupRules"]
    assert len(rules) == 3  # two ingress + the default egress rule
    egress = [r for r in rules if r["IsEgress"]]
    assert egress[0]["IpProtocol"] == "-1" and egress[0]["CidrIpv4"] == "0.0.0.0/0"
    assert (egress[0]["FromPort"], egress[0]["ToPort"]) == (-1, -1)
    rid = added[0]["SecurityGroupRuleId"]
    one = ec2.describe_security_group_rules(SecurityGroupRuleIds=[rid])["SecurityGroupRules"]
    assert [r["SecurityGroupRuleId"] for r in one] == [rid]
    expect_error("InvalidSecurityGroupRuleId.NotFound", 400, ec2.describe_security_group_rules,
                 SecurityGroupRuleIds=["sgr-0123456789abcdef0"])
    pages = list(ec2.get_paginator("describe_security_group_rules").paginate(
        Filters=[{"Name": "group-id", "Values": [gid]}], PaginationConfig={"PageSize": 5}))
    assert sum(len(p["SecurityGroupRules"]) for p in pages) == 3

    assert ec2.modify_security_group_rules(GroupId=gid, SecurityGroupRules=[{
        "SecurityGroupRuleId": rid,
        "SecurityGroupRule": {"IpProtocol": "tcp", "FromPort": 2022, "ToPort": 2022,
                              "CidrIpv4": "172.16.0.0/12", "Description": "moved"},
    }])["Return"] is True
    r = ec2.describe_security_group_rules(SecurityGroupRuleIds=[rid])["SecurityGroupRules"][0]
    assert (r["FromPort"], r["CidrIpv4"], r["Description"]) == (2022, "172.16.0.0/12", "moved")
    expect_error("InvalidPermission.Duplicate", 400, ec2.modify_security_group_rules, GroupId=gid, SecurityGroupRules=[{
        "SecurityGroupRuleId": rid,
        "SecurityGroupRule": {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "CidrIpv4": "10.0.0.0/8"},
    }])
    expect_error("InvalidSecurityGroupRuleId.NotFound", 400, ec2.modify_security_group_rules, GroupId=gid,
                 SecurityGroupRules=[{"SecurityGroupRuleId": "sgr-0123456789abcdef0",
                                      "SecurityGroupRule": {"IpProtocol": "-1", "CidrIpv4": "10.0.0.0/8"}}])


def test_tags_on_groups(ec2, vpc):
    gid = ec2.create_security_group(GroupName="tagged", Description="d", VpcId=vpc["VpcId"])["GroupId"]
    ec2.create_tags(Resources=[gid], Tags=[{"Key": "team", "Value": "net"}])
    assert tags(group(ec2, gid)) == {"team": "net"}
    ec2.delete_tags(Resources=[gid], Tags=[{"Key": "team"}])
    assert tags(group(ec2, gid)) == {}


def test_vpc_deletion_and_default_group(ec2):
    v = ec2.create_vpc(CidrBlock="10.3.0.0/16")["Vpc"]["VpcId"]
    gid = ec2.create_security_group(GroupName="blocker", Description="d", VpcId=v)["GroupId"]
    expect_error("DependencyViolation", 400, ec2.delete_vpc, VpcId=v)
    ec2.delete_security_group(GroupName="blocker")
    default_id = default_group(ec2, v)["GroupId"]
    ec2.delete_vpc(VpcId=v)
    expect_error("InvalidGroup.NotFound", 400, ec2.describe_security_groups, GroupIds=[default_id, gid])


def test_cli_security_group_workflow(aws):
    rc, out, err = aws("create-vpc", "--cidr-block", "10.20.0.0/16")
    assert rc == 0, err
    vpc = out["Vpc"]["VpcId"]
    rc, out, err = aws("create-security-group", "--group-name", "cli-web", "--description", "web servers",
                       "--vpc-id", vpc)
    assert rc == 0, err
    gid = out["GroupId"]
    rc, out, err = aws("authorize-security-group-ingress", "--group-id", gid, "--protocol", "tcp",
                       "--port", "443", "--cidr", "0.0.0.0/0")
    assert rc == 0, err
    assert out["SecurityGroupRules"][0]["FromPort"] == 443
    rc, out, err = aws("authorize-security-group-ingress", "--group-id", gid, "--ip-permissions",
                       "IpProtocol=tcp,FromPort=22,ToPort=22,IpRanges=[{CidrIp=10.0.0.0/8,Description=admin}]")
    assert rc == 0, err
    rc, out, err = aws("authorize-security-group-ingress", "--group-id", gid, "--protocol", "tcp",
                       "--port", "443", "--cidr", "0.0.0.0/0")
    assert rc != 0 and "InvalidPermission.Duplicate" in err
    rc, out, err = aws("describe-security-groups", "--group-ids", gid)
    assert rc == 0, err
    perms = out["SecurityGroups"][0]["IpPermissions"]
    assert sorted(p["FromPort"] for p in perms) == [22, 443]
    rc, out, err = aws("describe-security-group-rules", "--filters", f"Name=group-id,Values={gid}")
    assert rc == 0, err
    assert len(out["SecurityGroupRules"]) == 3
    rc, out, err = aws("revoke-security-group-ingress", "--group-id", gid, "--protocol", "tcp",
                       "--port", "443", "--cidr", "0.0.0.0/0")
    assert rc == 0, err
    rc, out, err = aws("delete-vpc", "--vpc-id", vpc)
    assert rc != 0 and "DependencyViolation" in err
    rc, out, err = aws("delete-security-group", "--group-id", gid)
    assert rc == 0, err
    rc, out, err = aws("delete-vpc", "--vpc-id", vpc)
    assert rc == 0, err


def test_groups_and_acls_survive_a_restart(workdir):
    from conftest import Server

    srv = Server(workdir / "sgacl-restart").start()
    try:
        c = srv.client()
        v = c.create_vpc(CidrBlock="10.5.0.0/16")["Vpc"]["VpcId"]
        gid = c.create_security_group(GroupName="keep", Description="d", VpcId=v)["GroupId"]
        c.authorize_security_group_ingress(GroupId=gid, IpPermissions=[ssh("10.5.0.0/16", desc="kept")])
        aid = c.create_network_acl(VpcId=v)["NetworkAcl"]["NetworkAclId"]
        c.create_network_acl_entry(NetworkAclId=aid, RuleNumber=10, Protocol="-1", RuleAction="deny",
                                   Egress=False, CidrBlock="10.6.0.0/16")
        s = c.create_subnet(VpcId=v, CidrBlock="10.5.1.0/24")["Subnet"]["SubnetId"]
        groups = c.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [v]}])["SecurityGroups"]
        acls = c.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [v]}])["NetworkAcls"]
        srv.stop()
        srv.start()
        c = srv.client()
        assert c.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [v]}])["SecurityGroups"] == groups
        assert c.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [v]}])["NetworkAcls"] == acls
        assoc = c.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [s]}])["NetworkAcls"]
        assert len(assoc) == 1 and assoc[0]["IsDefault"] is True
    finally:
        srv.stop()


def test_default_vpc_groups(workdir):
    from conftest import Server

    srv = Server(workdir / "sgacl-default-vpc", default_vpc=True).start()
    try:
        c = srv.client()
        dv = c.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        default_group(c, dv)
        acl = c.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [dv]}])["NetworkAcls"]
        assert len(acl) == 1 and len(acl[0]["Associations"]) == 6, "the default subnets use the default ACL"
        gid = c.create_security_group(GroupName="no-vpc-given", Description="d")["GroupId"]
        assert group(c, gid)["VpcId"] == dv
        c.authorize_security_group_ingress(GroupName="no-vpc-given", IpProtocol="tcp", FromPort=80, ToPort=80,
                                           CidrIp="0.0.0.0/0")
        c.delete_security_group(GroupName="no-vpc-given")
        expect_error("InvalidGroup.NotFound", 400, c.describe_security_groups, GroupIds=[gid])
    finally:
        srv.stop()


def test_group_in_use_by_an_eni(ec2, vpc):
    subnet = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.7.0/24")["Subnet"]["SubnetId"]
    gid = ec2.create_security_group(GroupName="eni-sg", Description="d", VpcId=vpc["VpcId"])["GroupId"]
    eni = ec2.create_network_interface(SubnetId=subnet, Groups=[gid])["NetworkInterface"]
    assert [g["GroupId"] for g in eni["Groups"]] == [gid]
    expect_error("DependencyViolation", 400, ec2.delete_security_group, GroupId=gid)
    plain = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]
    assert [g["GroupId"] for g in plain["Groups"]] == [default_group(ec2, vpc["VpcId"])["GroupId"]]
    ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
    ec2.delete_network_interface(NetworkInterfaceId=plain["NetworkInterfaceId"])
    ec2.delete_security_group(GroupId=gid)


def test_run_instances_with_security_groups(ec2, vpc):
    subnet = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.8.0/24")["Subnet"]["SubnetId"]
    gid = ec2.create_security_group(GroupName="run-sg", Description="d", VpcId=vpc["VpcId"])["GroupId"]
    inst = ec2.run_instances(ImageId="ami-1", MinCount=1, MaxCount=1, SubnetId=subnet,
                             SecurityGroupIds=[gid])["Instances"][0]
    assert [g["GroupId"] for g in inst["SecurityGroups"]] == [gid]
    assert inst["SecurityGroups"][0]["GroupName"] == "run-sg"
    assert [g["GroupId"] for g in inst["NetworkInterfaces"][0]["Groups"]] == [gid]
    expect_error("DependencyViolation", 400, ec2.delete_security_group, GroupId=gid)
    plain = ec2.run_instances(ImageId="ami-1", MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]
    assert [g["GroupName"] for g in plain["SecurityGroups"]] == ["default"]
    expect_error("InvalidGroup.NotFound", 400, ec2.run_instances, ImageId="ami-1", MinCount=1, MaxCount=1,
                 SubnetId=subnet, SecurityGroupIds=["sg-0123456789abcdef0"])
    ec2.terminate_instances(InstanceIds=[inst["InstanceId"], plain["InstanceId"]])
    ec2.delete_security_group(GroupId=gid)
