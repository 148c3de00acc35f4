"""The differences from AWS issue 13 listed, each checked as AWS behaves: the tag filter glob
with `*` in values, tagSet omitted when untagged, tags on security group rules,
DescribeSecurityGroupRules with a malformed group-id filter, ModifySecurityGroupRules errors,
CreateRoute to a peering pending acceptance, ModifySubnetAttribute's other attributes, and the
NAT gateway's interface."""

from helpers import expect_error, tags


def test_tag_filter_glob_with_stars_in_values(ec2):
    vid = ec2.create_vpc(CidrBlock="10.40.0.0/16", TagSpecifications=[
        {"ResourceType": "vpc", "Tags": [{"Key": "star", "Value": "x*y?z"}]}])["Vpc"]["VpcId"]
    for pattern in ["x*", "x*y?z", "*y?z", "x\\*y*", "x*y\\?z", "?*"]:
        found = ec2.describe_vpcs(Filters=[{"Name": "tag:star", "Values": [pattern]}])["Vpcs"]
        assert vid in [v["VpcId"] for v in found], pattern
    for pattern in ["x\\*a*", "y*", "x*y\\?a"]:
        found = ec2.describe_vpcs(Filters=[{"Name": "tag:star", "Values": [pattern]}])["Vpcs"]
        assert vid not in [v["VpcId"] for v in found], pattern


def test_untagged_resources_have_no_tag_set(ec2, server):
    vid = ec2.create_vpc(CidrBlock="10.41.0.0/16")["Vpc"]["VpcId"]
    (v,) = ec2.describe_vpcs(VpcIds=[vid])["Vpcs"]
    assert "Tags" not in v
    status, body = server.post(f"Action=DescribeVpcs&Version=2016-11-15&VpcId.1={vid}")
    assert status == 200 and "tagSet" not in body, body
    ec2.create_tags(Resources=[vid], Tags=[{"Key": "a", "Value": "b"}])
    assert tags(ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0]) == {"a": "b"}


def test_security_group_rules_take_tags(ec2, vpc):
    gid = ec2.create_security_group(GroupName="tagged-rules", Description="d",
                                    VpcId=vpc["VpcId"])["GroupId"]
    r = ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    rid = r["SecurityGroupRules"][0]["SecurityGroupRuleId"]
    ec2.create_tags(Resources=[rid], Tags=[{"Key": "why", "Value": "ssh"}])
    (rule,) = ec2.describe_security_group_rules(SecurityGroupRuleIds=[rid])["SecurityGroupRules"]
    assert tags(rule) == {"why": "ssh"}
    t = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [rid]}])["Tags"]
    assert [(x["ResourceType"], x["Key"]) for x in t] == [("security-group-rule", "why")]
    ec2.delete_tags(Resources=[rid], Tags=[{"Key": "why"}])
    assert "Tags" not in ec2.describe_security_group_rules(SecurityGroupRuleIds=[rid])["SecurityGroupRules"][0]
    expect_error("InvalidSecurityGroupRuleId.NotFound", 400, ec2.create_tags,
                 Resources=["sgr-0123456789abcdef0"], Tags=[{"Key": "a", "Value": "b"}])


def test_security_group_rules_group_id_filter_is_checked(ec2):
    err = expect_error("InvalidGroupId.Malformed", 400, ec2.describe_security_group_rules,
                       Filters=[{"Name": "group-id", "Values": ["foobar"]}])
    assert err["Error"]["Message"] == 'Invalid id: "foobar" (expecting "sg-...")'


def test_modify_security_group_rules_errors_are_aws_s(ec2, vpc):
    gid = ec2.create_security_group(GroupName="modify-errors", Description="d",
                                    VpcId=vpc["VpcId"])["GroupId"]
    r = ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    rid = r["SecurityGroupRules"][0]["SecurityGroupRuleId"]
    err = expect_error("InvalidParameterValue", 400, ec2.modify_security_group_rules, GroupId=gid,
                       SecurityGroupRules=[{"SecurityGroupRuleId": rid, "SecurityGroupRule": {
                           "FromPort": 80, "ToPort": 80, "CidrIpv4": "10.0.0.0/8"}}])
    assert err["Error"]["Message"] == ("Invalid value 'null' for protocol. VPC security group rules "
                                       "must specify protocols explicitly.")
    err = expect_error("InvalidParameterValue", 400, ec2.modify_security_group_rules, GroupId=gid,
                       SecurityGroupRules=[{"SecurityGroupRuleId": rid, "SecurityGroupRule": {
                           "IpProtocol": "-1", "FromPort": 0, "ToPort": 0, "CidrIpv4": "10.0.0.0/8"}}])
    assert err["Error"]["Message"].startswith("You may not specify all protocols and specific ports.")
    # A missing port, a missing source and two sources: AWS's codes and wording (as moto's
    # AWS-verified test_modify_security_group_rules records them).
    err = expect_error("InvalidParameterValue", 400, ec2.modify_security_group_rules, GroupId=gid,
                       SecurityGroupRules=[{"SecurityGroupRuleId": rid, "SecurityGroupRule": {
                           "IpProtocol": "udp", "ToPort": 27011, "CidrIpv4": "10.0.0.0/8"}}])
    assert err["Error"]["Message"] == ("Invalid value for portRange. Must specify both from and to "
                                       "ports with TCP/UDP.")
    err = expect_error("MissingParameter", 400, ec2.modify_security_group_rules, GroupId=gid,
                       SecurityGroupRules=[{"SecurityGroupRuleId": rid, "SecurityGroupRule": {
                           "IpProtocol": "udp", "FromPort": 27010, "ToPort": 27011}}])
    assert err["Error"]["Message"] == ("The request must contain exactly one of: cidrIp, cidrIpv6, "
                                       "prefixListId, or referencedGroupId")
    for second in [{"CidrIpv6": "2001:db8::/32"}, {"ReferencedGroupId": gid}]:
        err = expect_error("InvalidParameterCombination", 400, ec2.modify_security_group_rules, GroupId=gid,
                           SecurityGroupRules=[{"SecurityGroupRuleId": rid, "SecurityGroupRule": dict(
                               {"IpProtocol": "udp", "FromPort": 27010, "ToPort": 27011,
                                "CidrIpv4": "10.0.0.0/8"}, **second)}])
        assert err["Error"]["Message"] == ("Only one of cidrIp, cidrIpv6, prefixListId, or "
                                           "referencedGroupId can be specified"), second
    err = expect_error("InvalidParameterValue", 400, ec2.modify_security_group_rules, GroupId=gid,
                       SecurityGroupRules=[{"SecurityGroupRuleId": rid, "SecurityGroupRule": {
                           "IpProtocol": "udp", "FromPort": 1, "ToPort": 2, "CidrIpv6": "2001:db8::/32"}}])
    assert "IPv6" in err["Error"]["Message"]
    # AuthorizeSecurityGroupIngress words a missing port the same way.
    err = expect_error("InvalidParameterValue", 400, ec2.authorize_security_group_ingress, GroupId=gid,
                       IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22,
                                       "IpRanges": [{"CidrIp": "10.9.0.0/16"}]}])
    assert err["Error"]["Message"] == ("Invalid value for portRange. Must specify both from and to "
                                       "ports with TCP/UDP.")
    (rule,) = ec2.describe_security_group_rules(SecurityGroupRuleIds=[rid])["SecurityGroupRules"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["CidrIpv4"]) == ("tcp", 80, "10.0.0.0/8"), \
        "a refused modification changed the rule"
    # All protocols with the -1 ports AWS itself reports is fine.
    ec2.modify_security_group_rules(GroupId=gid, SecurityGroupRules=[{
        "SecurityGroupRuleId": rid, "SecurityGroupRule": {
            "IpProtocol": "-1", "FromPort": -1, "ToPort": -1, "CidrIpv4": "10.0.0.0/8"}}])


def test_route_to_a_peering_pending_acceptance_is_a_blackhole_until_active(ec2):
    a = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    b = ec2.create_vpc(CidrBlock="10.43.0.0/16")["Vpc"]["VpcId"]
    pcx = ec2.create_vpc_peering_connection(VpcId=a, PeerVpcId=b)["VpcPeeringConnection"]
    pid = pcx["VpcPeeringConnectionId"]
    assert pcx["Status"]["Code"] in ("initiating-request", "pending-acceptance")
    rtb = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [a]}])["RouteTables"][0]
    ec2.create_route(RouteTableId=rtb["RouteTableId"], DestinationCidrBlock="10.43.0.0/16",
                     VpcPeeringConnectionId=pid)

    def state():
        (t,) = ec2.describe_route_tables(RouteTableIds=[rtb["RouteTableId"]])["RouteTables"]
        return [r["State"] for r in t["Routes"] if r.get("VpcPeeringConnectionId") == pid]

    assert state() == ["blackhole"]
    ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    assert state() == ["active"]


def test_modify_subnet_attribute_other_attributes(ec2, subnet):
    sid = subnet["SubnetId"]
    ec2.modify_subnet_attribute(SubnetId=sid, PrivateDnsHostnameTypeOnLaunch="resource-name")
    ec2.modify_subnet_attribute(SubnetId=sid, EnableResourceNameDnsARecordOnLaunch={"Value": True})
    (s,) = ec2.describe_subnets(SubnetIds=[sid])["Subnets"]
    opts = s["PrivateDnsNameOptionsOnLaunch"]
    assert opts["HostnameType"] == "resource-name" and opts["EnableResourceNameDnsARecord"] is True
    # Asking for nothing passes; asking for IPv6 is refused by name.
    ec2.modify_subnet_attribute(SubnetId=sid, EnableDns64={"Value": False})
    err = expect_error("InvalidParameterValue", 400, ec2.modify_subnet_attribute, SubnetId=sid,
                       AssignIpv6AddressOnCreation={"Value": True})
    assert "AssignIpv6AddressOnCreation" in err["Error"]["Message"]
    expect_error("MissingParameter", 400, ec2.modify_subnet_attribute, SubnetId=sid)


def test_nat_gateway_interface_shows_as_on_aws(ec2, vpc, subnet):
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc["VpcId"])
    alloc = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=subnet["SubnetId"], AllocationId=alloc)["NatGateway"]
    eni_id = nat["NatGatewayAddresses"][0]["NetworkInterfaceId"]
    (eni,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"]
    assert eni["Status"] == "in-use"
    assert eni["InterfaceType"] == "nat_gateway"
    assert eni["RequesterManaged"] is True
    assert eni["Attachment"]["Status"] == "attached" and eni["Attachment"]["InstanceOwnerId"] == "amazon-aws"
    found = ec2.describe_network_interfaces(Filters=[
        {"Name": "interface-type", "Values": ["nat_gateway"]},
        {"Name": "requester-managed", "Values": ["true"]},
        {"Name": "status", "Values": ["in-use"]}])["NetworkInterfaces"]
    assert eni_id in [e["NetworkInterfaceId"] for e in found]


def test_create_calls_refuse_what_they_do_not_model(ec2, vpc, subnet):
    for fn, kw, member in [
        (ec2.create_vpc, {"CidrBlock": "10.44.0.0/16", "AmazonProvidedIpv6CidrBlock": True},
         "AmazonProvidedIpv6CidrBlock"),
        (ec2.create_vpc, {"CidrBlock": "10.44.0.0/16", "Ipv6CidrBlock": "2600:1f18::/56"}, "Ipv6CidrBlock"),
        (ec2.create_subnet, {"VpcId": vpc["VpcId"], "CidrBlock": "10.0.9.0/24", "Ipv6Native": True},
         "Ipv6Native"),
        (ec2.create_subnet, {"VpcId": vpc["VpcId"], "CidrBlock": "10.0.9.0/24",
                             "Ipv6CidrBlock": "2600:1f18::/64"}, "Ipv6CidrBlock"),
        (ec2.create_network_interface, {"SubnetId": subnet["SubnetId"], "Ipv6AddressCount": 1},
         "Ipv6AddressCount"),
        (ec2.create_network_interface, {"SubnetId": subnet["SubnetId"],
                                        "Ipv6Addresses": [{"Ipv6Address": "2600:1f18::1"}]},
         "Ipv6Addresses"),
    ]:
        err = expect_error("InvalidParameterValue", 400, fn, **kw)
        assert member in err["Error"]["Message"], (member, err)
    # The defaults pass.
    ec2.create_vpc(CidrBlock="10.45.0.0/16", AmazonProvidedIpv6CidrBlock=False)
    ec2.create_network_interface(SubnetId=subnet["SubnetId"], Ipv6AddressCount=0)


def test_create_subnet_by_availability_zone_id(ec2, vpc):
    s = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.20.0/24",
                          AvailabilityZoneId="use1-az2")["Subnet"]
    assert (s["AvailabilityZone"], s["AvailabilityZoneId"]) == ("us-east-1b", "use1-az2")
    (d,) = ec2.describe_subnets(SubnetIds=[s["SubnetId"]])["Subnets"]
    assert d["AvailabilityZoneId"] == "use1-az2"
    err = expect_error("InvalidParameterValue", 400, ec2.create_subnet, VpcId=vpc["VpcId"],
                       CidrBlock="10.0.21.0/24", AvailabilityZoneId="bogus-az9")
    assert "bogus-az9" in err["Error"]["Message"]
    expect_error("InvalidParameterCombination", 400, ec2.create_subnet, VpcId=vpc["VpcId"],
                 CidrBlock="10.0.21.0/24", AvailabilityZone="us-east-1a", AvailabilityZoneId="use1-az2")
