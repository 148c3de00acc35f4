"""UpdateSecurityGroupRuleDescriptionsIngress/Egress (issue 13) through boto3 and the AWS CLI:
rules named by IpPermissions (each peer's new description; none removes it) or by rule id,
only descriptions change (rule ids, ports and peers stay), one direction at a time, AWS's
refusals, DryRun, all or nothing."""

from helpers import expect_error

MISSING_SG = "sg-0123456789abcdef0"
MISSING_SGR = "sgr-0123456789abcdef0"


def rules(ec2, sg, egress):
    got = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [sg]}])[
        "SecurityGroupRules"]
    return {r["SecurityGroupRuleId"]: r for r in got if r["IsEgress"] == egress}


def test_descriptions_by_permission_and_by_id(ec2):
    vpc = ec2.create_vpc(CidrBlock="10.80.0.0/16")["Vpc"]["VpcId"]
    sg = ec2.create_security_group(GroupName="desc", Description="d", VpcId=vpc)["GroupId"]
    peer = ec2.create_security_group(GroupName="peer", Description="d", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "old ssh"},
                      {"CidrIp": "192.168.0.0/16"}],
         "UserIdGroupPairs": [{"GroupId": peer, "Description": "old peer"}]}])
    before = rules(ec2, sg, False)
    assert len(before) == 3

    # By content: each peer gets the description given with it, one given without loses it.
    r = ec2.update_security_group_rule_descriptions_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "new ssh"},
                      {"CidrIp": "192.168.0.0/16", "Description": "lab"}],
         "UserIdGroupPairs": [{"GroupId": peer}]}])
    assert r["Return"] is True
    after = rules(ec2, sg, False)
    assert set(after) == set(before), "rule ids are kept"
    by_peer = {r.get("CidrIpv4") or r["ReferencedGroupInfo"]["GroupId"]: r for r in after.values()}
    assert by_peer["10.0.0.0/8"]["Description"] == "new ssh"
    assert by_peer["192.168.0.0/16"]["Description"] == "lab"
    assert "Description" not in by_peer[peer]
    for r in after.values():
        assert (r["IpProtocol"], r["FromPort"], r["ToPort"]) == ("tcp", 22, 22)
    perm = ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]["IpPermissions"][0]
    assert {x["CidrIp"]: x.get("Description") for x in perm["IpRanges"]} == {
        "10.0.0.0/8": "new ssh", "192.168.0.0/16": "lab"}

    # By rule id.
    rid = by_peer[peer]["SecurityGroupRuleId"]
    ec2.update_security_group_rule_descriptions_ingress(GroupId=sg, SecurityGroupRuleDescriptions=[
        {"SecurityGroupRuleId": rid, "Description": "peer again"}])
    assert rules(ec2, sg, False)[rid]["Description"] == "peer again"

    # Egress: the default allow-all rule, by content; ingress rules are not egress rules.
    ec2.update_security_group_rule_descriptions_egress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "all out"}]}])
    (out,) = rules(ec2, sg, True).values()
    assert out["Description"] == "all out"
    expect_error("InvalidSecurityGroupRuleId.NotFound", 400,
                 ec2.update_security_group_rule_descriptions_egress, GroupId=sg,
                 SecurityGroupRuleDescriptions=[{"SecurityGroupRuleId": rid, "Description": "x"}])

    # Refusals, each changing nothing (all or nothing: the first permission exists).
    snapshot = rules(ec2, sg, False)
    expect_error("InvalidPermission.NotFound", 400,
                 ec2.update_security_group_rule_descriptions_ingress, GroupId=sg, IpPermissions=[
                     {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                      "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "changed?"}]},
                     {"IpProtocol": "tcp", "FromPort": 23, "ToPort": 23,
                      "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "x"}]}])
    expect_error("InvalidSecurityGroupRuleId.NotFound", 400,
                 ec2.update_security_group_rule_descriptions_ingress, GroupId=sg,
                 SecurityGroupRuleDescriptions=[{"SecurityGroupRuleId": MISSING_SGR,
                                                 "Description": "x"}])
    expect_error("InvalidGroup.NotFound", 400, ec2.update_security_group_rule_descriptions_ingress,
                 GroupId=MISSING_SG, SecurityGroupRuleDescriptions=[
                     {"SecurityGroupRuleId": rid, "Description": "x"}])
    expect_error("InvalidParameterValue", 400, ec2.update_security_group_rule_descriptions_ingress,
                 GroupId=sg, SecurityGroupRuleDescriptions=[
                     {"SecurityGroupRuleId": rid, "Description": "bad\u00e9"}])
    expect_error("MissingParameter", 400, ec2.update_security_group_rule_descriptions_ingress,
                 GroupId=sg)
    err = expect_error("InvalidParameterCombination", 400,
                       ec2.update_security_group_rule_descriptions_ingress, GroupId=sg,
                       SecurityGroupRuleDescriptions=[{"SecurityGroupRuleId": rid, "Description": "x"}],
                       IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                                       "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    # AWS's wording (quoted in aws/aws-sdk-java-v2#5217).
    assert err["Error"]["Message"] == ("The parameter 'ipPermissions' may not be used in combination "
                                       "with 'securityGroupRuleDescriptions'.")
    expect_error("DryRunOperation", 412, ec2.update_security_group_rule_descriptions_ingress,
                 GroupId=sg, DryRun=True, SecurityGroupRuleDescriptions=[
                     {"SecurityGroupRuleId": rid, "Description": "dry"}])
    assert rules(ec2, sg, False) == snapshot


def test_descriptions_with_the_cli(ec2, aws):
    vpc = ec2.create_vpc(CidrBlock="10.81.0.0/16")["Vpc"]["VpcId"]
    sg = ec2.create_security_group(GroupName="cli-desc", Description="d", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    code, out, err = aws("update-security-group-rule-descriptions-ingress", "--group-id", sg,
                         "--ip-permissions",
                         'IpProtocol=tcp,FromPort=443,ToPort=443,IpRanges=[{CidrIp=0.0.0.0/0,Description="https from anywhere"}]')
    assert code == 0, err
    assert out["Return"] is True
    (r,) = rules(ec2, sg, False).values()
    assert r["Description"] == "https from anywhere"
    code, out, err = aws("update-security-group-rule-descriptions-ingress", "--group-id", sg,
                         "--security-group-rule-descriptions",
                         f"SecurityGroupRuleId={r['SecurityGroupRuleId']},Description=tls")
    assert code == 0, err
    assert rules(ec2, sg, False)[r["SecurityGroupRuleId"]]["Description"] == "tls"
    code, _, err = aws("update-security-group-rule-descriptions-egress", "--group-id", sg,
                       "--security-group-rule-descriptions",
                       f"SecurityGroupRuleId={r['SecurityGroupRuleId']},Description=x")
    assert code != 0 and "InvalidSecurityGroupRuleId.NotFound" in err, err
