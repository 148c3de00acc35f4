"""1,000 security-group rules on one ENI, enforced on the wire (issue 10).

The e2e lab's server runs with `SOFTVPC_SG_RULES_PER_GROUP=200` (e2e_harness.Lab: the account
quota raised as AWS allows, 200 rules x 5 groups per interface = 1,000). zigi-vm2's ENI gets five
groups of 200 inbound TCP rules each: rule k admits port 20000 + 2k from zigi-vm1 (10.0.0.148/32)
only, so the even ports 20000..21998 are open to zigi-vm1, every odd port between them is in no
rule, and zigi-vm4 (same subnet, host-1) matches none. Real TCP connects check the first, middle
and last rules of the first and last groups, the gaps, and the other source; the groups are
restored and deleted at the end whatever happens.
"""

import json

from e2e_harness import SOFTVPC_BIN, run
from probes import Server, connects, eni_of, wait_connects

VM1, VM2 = "10.0.0.148", "10.0.0.185"
GROUPS, PER_GROUP = 5, 200


def port_of(k):
    return 20000 + 2 * k


def test_eni_with_1000_rules_enforces_each(lab, ec2):
    vpc = lab.instance("zigi-vm1")["vpc_id"]
    eni = eni_of(lab, vpc, VM2)
    eni_id = eni["NetworkInterfaceId"]
    default = [g["GroupId"] for g in eni["Groups"]]
    attrs = {a["AttributeName"]: a["AttributeValues"][0]["AttributeValue"]
             for a in ec2.describe_account_attributes()["AccountAttributes"]}
    assert attrs["vpc-max-security-groups-per-interface"] == str(GROUPS)
    created, servers = [], []
    try:
        for g in range(GROUPS):
            gid = ec2.create_security_group(GroupName=f"svt-1000-{g}", Description="many",
                                            VpcId=vpc)["GroupId"]
            created.append(gid)
            perms = [{"IpProtocol": "tcp", "FromPort": port_of(k), "ToPort": port_of(k),
                      "IpRanges": [{"CidrIp": f"{VM1}/32"}]}
                     for k in range(g * PER_GROUP, (g + 1) * PER_GROUP)]
            r = ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=perms)
            assert len(r["SecurityGroupRules"]) == PER_GROUP
        # One more rule is over the quota, as on AWS.
        try:
            ec2.authorize_security_group_ingress(GroupId=created[0], IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 1,
                 "IpRanges": [{"CidrIp": f"{VM1}/32"}]}])
            raise AssertionError("rule 201 of a group was accepted")
        except ec2.exceptions.ClientError as err:
            assert err.response["Error"]["Code"] == "RulesPerSecurityGroupLimitExceeded"

        rules = sum(len(g["IpPermissions"]) for g in
                    ec2.describe_security_groups(GroupIds=created)["SecurityGroups"])
        assert rules == GROUPS * PER_GROUP == 1000

        allowed = [port_of(0), port_of(100), port_of(199), port_of(800), port_of(999)]
        gaps = [port_of(0) + 1, port_of(500) + 1, port_of(999) + 1]
        servers.append(Server(lab, "zigi-vm2", *allowed, *gaps))
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eni_id, Groups=created)

        # The last rule of the last group holds once the groups reach host-2's agent.
        wait_connects(lab, "zigi-vm1", VM2, port_of(999), True, timeout=30)
        denied = lab.drops("host-2", "sg_denied")
        for port in allowed:
            assert connects(lab, "zigi-vm1", VM2, port), f"port {port} has a rule for zigi-vm1"
        for port in gaps:
            assert not connects(lab, "zigi-vm1", VM2, port, secs=1.0), f"port {port} has no rule"
        for port in (port_of(0), port_of(999)):
            assert not connects(lab, "zigi-vm4", VM2, port, secs=1.0), \
                f"port {port} admits zigi-vm1 only"

        assert lab.drops("host-2", "sg_denied") > denied, "the refusals are counted"

        # `softvpc trace` names the very rule that admits the last port: rule 1,000.
        last = [r for r in ec2.describe_security_group_rules(
            Filters=[{"Name": "group-id", "Values": [created[-1]]}])["SecurityGroupRules"]
            if not r["IsEgress"] and r["FromPort"] == port_of(999)]
        assert len(last) == 1
        proc = run([SOFTVPC_BIN, "trace", "--from", "zigi-vm1", "tcp", f"{VM2}:{port_of(999)}",
                    "--json"], timeout=30, env=lab.env)
        assert proc.returncode == 0, proc.stderr
        t = json.loads(proc.stdout)
        assert t["verdict"] == "DELIVERED", t
        assert last[0]["SecurityGroupRuleId"] in proc.stdout, t
    finally:
        for srv in servers:
            srv.stop()
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eni_id, Groups=default)
        for gid in created:
            try:
                ec2.delete_security_group(GroupId=gid)
            except Exception:  # noqa: BLE001 - cleanup best effort; the ENI left them above
                pass
