"""Network ACLs through boto3: the default ACL of every VPC and its subnet associations,
CreateNetworkAcl, DeleteNetworkAcl, DescribeNetworkAcls (ids, filters, paginator),
Create/Replace/DeleteNetworkAclEntry, ReplaceNetworkAclAssociation, and an AWS CLI smoke test."""

import re

from helpers import expect_error, tags

ACL = re.compile(r"^acl-[0-9a-f]{17}$")
ASSOC = re.compile(r"^aclassoc-[0-9a-f]{17}$")


def acl(ec2, acl_id):
    return ec2.describe_network_acls(NetworkAclIds=[acl_id])["NetworkAcls"][0]


def default_acl(ec2, vpc_id):
    got = ec2.describe_network_acls(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "default", "Values": ["true"]}])["NetworkAcls"]
    assert len(got) == 1
    return got[0]


def rules(a):
    return [(e["Egress"], e["RuleNumber"], e["RuleAction"], e["Protocol"], e["CidrBlock"]) for e in a["Entries"]]


def entry(acl_id, n=100, egress=False, **kw):
    args = dict(NetworkAclId=acl_id, RuleNumber=n, Protocol="6", RuleAction="allow", Egress=egress,
                CidrBlock="10.0.0.0/8", PortRange={"From": 22, "To": 22})
    args.update(kw)
    return args


def test_default_acl_and_subnet_association(ec2, vpc):
    a = default_acl(ec2, vpc["VpcId"])
    assert ACL.match(a["NetworkAclId"])
    assert a["IsDefault"] is True and a["OwnerId"] == "123456789012"
    assert rules(a) == [
        (True, 100, "allow", "-1", "0.0.0.0/0"),
        (True, 32767, "deny", "-1", "0.0.0.0/0"),
        (False, 100, "allow", "-1", "0.0.0.0/0"),
        (False, 32767, "deny", "-1", "0.0.0.0/0"),
    ]
    assert a["Associations"] == []
    s = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    a = default_acl(ec2, vpc["VpcId"])
    assert len(a["Associations"]) == 1
    assoc = a["Associations"][0]
    assert assoc["SubnetId"] == s and assoc["NetworkAclId"] == a["NetworkAclId"]
    assert ASSOC.match(assoc["NetworkAclAssociationId"])
    found = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [s]}])["NetworkAcls"]
    assert [x["NetworkAclId"] for x in found] == [a["NetworkAclId"]]
    expect_error("InvalidParameterValue", 400, ec2.delete_network_acl, NetworkAclId=a["NetworkAclId"])
    ec2.delete_subnet(SubnetId=s)
    assert default_acl(ec2, vpc["VpcId"])["Associations"] == []


def test_create_and_delete(ec2, vpc):
    out = ec2.create_network_acl(
        VpcId=vpc["VpcId"],
        TagSpecifications=[{"ResourceType": "network-acl", "Tags": [{"Key": "Name", "Value": "custom"}]}],
    )["NetworkAcl"]
    aid = out["NetworkAclId"]
    assert out["IsDefault"] is False and out["VpcId"] == vpc["VpcId"]
    assert rules(out) == [(True, 32767, "deny", "-1", "0.0.0.0/0"), (False, 32767, "deny", "-1", "0.0.0.0/0")]
    assert tags(out) == {"Name": "custom"}
    assert acl(ec2, aid) == out
    ec2.delete_network_acl(NetworkAclId=aid)
    expect_error("InvalidNetworkAclID.NotFound", 400, ec2.describe_network_acls, NetworkAclIds=[aid])
    expect_error("InvalidNetworkAclID.NotFound", 400, ec2.delete_network_acl, NetworkAclId=aid)
    expect_error("InvalidVpcID.NotFound", 400, ec2.create_network_acl, VpcId="vpc-0123456789abcdef0")


def test_dry_run(ec2, vpc):
    before = ec2.describe_network_acls()["NetworkAcls"]
    expect_error("DryRunOperation", 412, ec2.create_network_acl, VpcId=vpc["VpcId"], DryRun=True)
    assert ec2.describe_network_acls()["NetworkAcls"] == before
    aid = ec2.create_network_acl(VpcId=vpc["VpcId"])["NetworkAcl"]["NetworkAclId"]
    expect_error("DryRunOperation", 412, ec2.create_network_acl_entry, DryRun=True, **entry(aid))
    assert len(acl(ec2, aid)["Entries"]) == 2
    expect_error("DryRunOperation", 412, ec2.delete_network_acl, NetworkAclId=aid, DryRun=True)
    expect_error("DryRunOperation", 412, ec2.describe_network_acls, DryRun=True)
    acl(ec2, aid)


def test_entries(ec2, vpc):
    aid = ec2.create_network_acl(VpcId=vpc["VpcId"])["NetworkAcl"]["NetworkAclId"]
    ec2.create_network_acl_entry(**entry(aid, 100))
    ec2.create_network_acl_entry(**entry(aid, 100, egress=True, PortRange={"From": 1024, "To": 65535}))
    ec2.create_network_acl_entry(NetworkAclId=aid, RuleNumber=110, Protocol="1", RuleAction="allow", Egress=False,
                                 CidrBlock="0.0.0.0/0", IcmpTypeCode={"Type": 8, "Code": -1})
    ec2.create_network_acl_entry(NetworkAclId=aid, RuleNumber=120, Protocol="-1", RuleAction="deny", Egress=False,
                                 CidrBlock="192.168.1.0/24")
    a = acl(ec2, aid)
    ingress = [e for e in a["Entries"] if not e["Egress"]]
    assert [e["RuleNumber"] for e in ingress] == [100, 110, 120, 32767]
    assert ingress[0]["PortRange"] == {"From": 22, "To": 22} and ingress[0]["Protocol"] == "6"
    assert ingress[1]["IcmpTypeCode"] == {"Type": 8, "Code": -1}
    assert "PortRange" not in ingress[2]
    egress = [e for e in a["Entries"] if e["Egress"]]
    assert egress[0]["PortRange"] == {"From": 1024, "To": 65535}

    expect_error("NetworkAclEntryAlreadyExists", 400, ec2.create_network_acl_entry, **entry(aid, 100))
    for n in [0, 32767, 40000]:
        expect_error("InvalidParameterValue", 400, ec2.create_network_acl_entry, **entry(aid, n))
    expect_error("InvalidParameterValue", 400, ec2.create_network_acl_entry, **entry(aid, 130, Protocol="bogus"))
    expect_error("InvalidParameterValue", 400, ec2.create_network_acl_entry,
                 **entry(aid, 130, PortRange={"From": 80, "To": 22}))
    expect_error("InvalidParameterValue", 400, ec2.create_network_acl_entry, **entry(aid, 130, CidrBlock="10.0.0.0/40"))
    no_ports = entry(aid, 130)
    del no_ports["PortRange"]
    expect_error("MissingParameter", 400, ec2.create_network_acl_entry, **no_ports)
    expect_error("InvalidNetworkAclID.NotFound", 400, ec2.create_network_acl_entry, **entry("acl-0123456789abcdef0"))

    ec2.replace_network_acl_entry(**entry(aid, 100, RuleAction="deny", CidrBlock="10.1.0.0/16"))
    e100 = [e for e in acl(ec2, aid)["Entries"] if e["RuleNumber"] == 100 and not e["Egress"]][0]
    assert (e100["RuleAction"], e100["CidrBlock"]) == ("deny", "10.1.0.0/16")
    expect_error("InvalidNetworkAclEntry.NotFound", 400, ec2.replace_network_acl_entry, **entry(aid, 200))

    ec2.delete_network_acl_entry(NetworkAclId=aid, RuleNumber=100, Egress=False)
    expect_error("InvalidNetworkAclEntry.NotFound", 400, ec2.delete_network_acl_entry,
                 NetworkAclId=aid, RuleNumber=100, Egress=False)
    assert [e["RuleNumber"] for e in acl(ec2, aid)["Entries"] if e["Egress"]] == [100, 32767], "egress 100 stays"


def test_replace_association(ec2, vpc):
    s = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.2.0/24")["Subnet"]["SubnetId"]
    d = default_acl(ec2, vpc["VpcId"])
    old = d["Associations"][0]["NetworkAclAssociationId"]
    custom = ec2.create_network_acl(VpcId=vpc["VpcId"])["NetworkAcl"]["NetworkAclId"]
    new = ec2.replace_network_acl_association(AssociationId=old, NetworkAclId=custom)["NewAssociationId"]
    assert ASSOC.match(new) and new != old
    c = acl(ec2, custom)
    assert [(x["NetworkAclAssociationId"], x["SubnetId"]) for x in c["Associations"]] == [(new, s)]
    assert default_acl(ec2, vpc["VpcId"])["Associations"] == []
    expect_error("InvalidAssociationID.NotFound", 400, ec2.replace_network_acl_association,
                 AssociationId=old, NetworkAclId=custom)
    expect_error("InvalidNetworkAclID.NotFound", 400, ec2.replace_network_acl_association,
                 AssociationId=new, NetworkAclId="acl-0123456789abcdef0")
    expect_error("DependencyViolation", 400, ec2.delete_network_acl, NetworkAclId=custom)
    found = ec2.describe_network_acls(Filters=[{"Name": "association.association-id", "Values": [new]}])["NetworkAcls"]
    assert [x["NetworkAclId"] for x in found] == [custom]
    back = ec2.replace_network_acl_association(AssociationId=new, NetworkAclId=d["NetworkAclId"])["NewAssociationId"]
    assert default_acl(ec2, vpc["VpcId"])["Associations"][0]["NetworkAclAssociationId"] == back
    ec2.delete_network_acl(NetworkAclId=custom)


def test_filters_paginator_tags(ec2):
    v = ec2.create_vpc(CidrBlock="10.44.0.0/16")["Vpc"]["VpcId"]
    ids = [ec2.create_network_acl(VpcId=v)["NetworkAcl"]["NetworkAclId"] for _ in range(6)]
    ec2.create_tags(Resources=ids[:2], Tags=[{"Key": "tier", "Value": "db"}])
    ec2.create_network_acl_entry(**entry(ids[0], 150, PortRange={"From": 5432, "To": 5432}))

    def found(filters):
        return {a["NetworkAclId"] for a in ec2.describe_network_acls(Filters=filters)["NetworkAcls"]}

    vpc_f = {"Name": "vpc-id", "Values": [v]}
    assert len(found([vpc_f])) == 7  # the default one and six custom
    assert found([vpc_f, {"Name": "default", "Values": ["false"]}]) == set(ids)
    assert found([{"Name": "tag:tier", "Values": ["db"]}]) == set(ids[:2])
    assert found([vpc_f, {"Name": "entry.rule-number", "Values": ["150"]}]) == {ids[0]}
    assert found([vpc_f, {"Name": "entry.port-range.from", "Values": ["5432"]}]) == {ids[0]}
    assert found([vpc_f, {"Name": "entry.rule-action", "Values": ["allow"]}]) - set(ids) != set()
    assert found([{"Name": "network-acl-id", "Values": [ids[3]]}]) == {ids[3]}
    expect_error("InvalidParameterValue", 400, ec2.describe_network_acls, Filters=[{"Name": "nope", "Values": ["x"]}])
    ec2.delete_tags(Resources=[ids[0]], Tags=[{"Key": "tier"}])
    assert tags(acl(ec2, ids[0])) == {}

    pages = ec2.get_paginator("describe_network_acls").paginate(Filters=[vpc_f], PaginationConfig={"PageSize": 5})
    assert [len(p["NetworkAcls"]) for p in pages] == [5, 2]

    expect_error("DependencyViolation", 400, ec2.delete_vpc, VpcId=v)
    for a in ids:
        ec2.delete_network_acl(NetworkAclId=a)
    ec2.delete_vpc(VpcId=v)
    assert found([vpc_f]) == set()


def test_cli_network_acl_workflow(aws):
    rc, out, err = aws("create-vpc", "--cidr-block", "10.21.0.0/16")
    assert rc == 0, err
    vpc = out["Vpc"]["VpcId"]
    rc, out, err = aws("create-network-acl", "--vpc-id", vpc)
    assert rc == 0, err
    aid = out["NetworkAcl"]["NetworkAclId"]
    rc, out, err = aws("create-network-acl-entry", "--network-acl-id", aid, "--ingress", "--rule-number", "100",
                       "--protocol", "tcp", "--port-range", "From=443,To=443", "--cidr-block", "0.0.0.0/0",
                       "--rule-action", "allow")
    assert rc == 0, err
    rc, out, err = aws("describe-network-acls", "--network-acl-ids", aid)
    assert rc == 0, err
    e = [x for x in out["NetworkAcls"][0]["Entries"] if x["RuleNumber"] == 100][0]
    assert (e["Protocol"], e["PortRange"], e["Egress"]) == ("6", {"From": 443, "To": 443}, False)
    rc, out, err = aws("delete-network-acl-entry", "--network-acl-id", aid, "--ingress", "--rule-number", "100")
    assert rc == 0, err
    rc, out, err = aws("delete-network-acl", "--network-acl-id", aid)
    assert rc == 0, err
    rc, out, err = aws("delete-vpc", "--vpc-id", vpc)
    assert rc == 0, err


def test_client_token_idempotency(ec2, vpc):
    a = ec2.create_network_acl(VpcId=vpc["VpcId"], ClientToken="acl-token-1")
    b = ec2.create_network_acl(VpcId=vpc["VpcId"], ClientToken="acl-token-1")
    assert a["NetworkAcl"]["NetworkAclId"] == b["NetworkAcl"]["NetworkAclId"]
    assert b["ClientToken"] == "acl-token-1"
    other = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    expect_error("IdempotentParameterMismatch", 400, ec2.create_network_acl, VpcId=other, ClientToken="acl-token-1")
    ec2.delete_network_acl(NetworkAclId=a["NetworkAcl"]["NetworkAclId"])
