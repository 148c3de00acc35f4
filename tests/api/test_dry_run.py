"""DryRun on every action (issue 3: "DryRun (412 DryRunOperation, nothing changed)").

One server of its own holds one of everything; every action the EC2 model gives a DryRun member is
called with DryRun=True on a request that would succeed. Each must answer 412 DryRunOperation, and
afterwards every Describe answers exactly as before. The table of calls is checked against the
protocol model, so an action added without a row here fails this test.

A request that would fail gets its real error, not DryRunOperation (AWS checks the request before
it reports that it would have succeeded).
"""

import json
import re
from pathlib import Path

import pytest

from conftest import Server
from helpers import expect_error

MODEL = Path(__file__).resolve().parents[2] / "crates/softvpc-ec2-protocol/model/ec2-vpc.json"
WAIT = {"Delay": 1, "MaxAttempts": 20}


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def dry_run_actions():
    model = json.loads(MODEL.read_text())
    out = set()
    for name, op in model["operations"].items():
        members = model["shapes"][op["input"]]["members"] if op.get("input") else []
        if any(m["name"] == "DryRun" for m in members):
            out.add(name)
    return out


@pytest.fixture(scope="module")
def srv(workdir):
    s = Server(workdir / "dry-run").start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def world(srv):
    """One of everything, each in the state the action under test needs."""
    ec2 = srv.client()
    w = {}
    vpc = lambda cidr: ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]  # noqa: E731
    w["vpc"], w["vpc_b"], w["vpc_c"], w["vpc_empty"] = (
        vpc("10.60.0.0/16"), vpc("10.61.0.0/16"), vpc("10.62.0.0/16"), vpc("10.63.0.0/16"))
    sub = lambda v, c: ec2.create_subnet(VpcId=v, CidrBlock=c)["Subnet"]["SubnetId"]  # noqa: E731
    w["subnet"], w["subnet2"], w["subnet_empty"] = (
        sub(w["vpc"], "10.60.1.0/24"), sub(w["vpc"], "10.60.2.0/24"), sub(w["vpc"], "10.60.3.0/24"))

    igw = lambda: ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]  # noqa: E731
    w["igw"], w["igw_b"], w["igw_free"] = igw(), igw(), igw()
    ec2.attach_internet_gateway(InternetGatewayId=w["igw"], VpcId=w["vpc"])
    ec2.attach_internet_gateway(InternetGatewayId=w["igw_b"], VpcId=w["vpc_b"])

    run = ec2.run_instances(ImageId="ami-12345678", SubnetId=w["subnet"], MinCount=2, MaxCount=2)
    w["i_running"], w["i_stopped"] = [i["InstanceId"] for i in run["Instances"]]
    ec2.get_waiter("instance_running").wait(InstanceIds=[w["i_running"], w["i_stopped"]],
                                            WaiterConfig=WAIT)
    ec2.stop_instances(InstanceIds=[w["i_stopped"]])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[w["i_stopped"]], WaiterConfig=WAIT)

    eni = lambda: ec2.create_network_interface(SubnetId=w["subnet"])[  # noqa: E731
        "NetworkInterface"]["NetworkInterfaceId"]
    w["eni"], w["eni_attached"] = eni(), eni()
    w["eni_attachment"] = ec2.attach_network_interface(
        NetworkInterfaceId=w["eni_attached"], InstanceId=w["i_running"], DeviceIndex=1)["AttachmentId"]

    eip = lambda: ec2.allocate_address(Domain="vpc")["AllocationId"]  # noqa: E731
    w["eip_free"], w["eip_assoc"], w["eip_nat"] = eip(), eip(), eip()
    w["eip_association"] = ec2.associate_address(
        AllocationId=w["eip_assoc"], InstanceId=w["i_running"])["AssociationId"]
    w["nat"] = ec2.create_nat_gateway(SubnetId=w["subnet"], AllocationId=w["eip_nat"])[
        "NatGateway"]["NatGatewayId"]
    ec2.get_waiter("nat_gateway_available").wait(NatGatewayIds=[w["nat"]], WaiterConfig=WAIT)

    w["sg"] = ec2.create_security_group(GroupName="web", Description="d", VpcId=w["vpc"])["GroupId"]
    w["sg_free"] = ec2.create_security_group(GroupName="free", Description="d",
                                             VpcId=w["vpc"])["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=w["sg"], IpPermissions=[ssh()])
    ec2.authorize_security_group_egress(GroupId=w["sg"], IpPermissions=[ssh("10.9.0.0/16")])
    w["sgr"] = ec2.describe_security_group_rules(Filters=[
        {"Name": "group-id", "Values": [w["sg"]]}])["SecurityGroupRules"][0]["SecurityGroupRuleId"]

    w["acl"] = ec2.create_network_acl(VpcId=w["vpc"])["NetworkAcl"]["NetworkAclId"]
    w["acl_free"] = ec2.create_network_acl(VpcId=w["vpc"])["NetworkAcl"]["NetworkAclId"]
    ec2.create_network_acl_entry(NetworkAclId=w["acl"], RuleNumber=100, Protocol="-1",
                                 RuleAction="allow", Egress=False, CidrBlock="0.0.0.0/0")
    w["acl_assoc"] = ec2.describe_network_acls(Filters=[
        {"Name": "association.subnet-id", "Values": [w["subnet2"]]}])["NetworkAcls"][0][
        "Associations"][0]["NetworkAclAssociationId"]

    w["rtb"] = ec2.create_route_table(VpcId=w["vpc"])["RouteTable"]["RouteTableId"]
    w["rtb_free"] = ec2.create_route_table(VpcId=w["vpc"])["RouteTable"]["RouteTableId"]
    w["rtb_assoc"] = ec2.associate_route_table(RouteTableId=w["rtb"], SubnetId=w["subnet"])[
        "AssociationId"]
    ec2.create_route(RouteTableId=w["rtb"], DestinationCidrBlock="0.0.0.0/0",
                     GatewayId=w["igw"])

    w["pcx_pending"] = ec2.create_vpc_peering_connection(VpcId=w["vpc"], PeerVpcId=w["vpc_b"])[
        "VpcPeeringConnection"]["VpcPeeringConnectionId"]
    w["pcx_active"] = ec2.create_vpc_peering_connection(VpcId=w["vpc"], PeerVpcId=w["vpc_c"])[
        "VpcPeeringConnection"]["VpcPeeringConnectionId"]
    ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=w["pcx_active"])

    dopt = lambda: ec2.create_dhcp_options(DhcpConfigurations=[  # noqa: E731
        {"Key": "domain-name", "Values": ["example.internal"]}])["DhcpOptions"]["DhcpOptionsId"]
    w["dopt"], w["dopt_free"] = dopt(), dopt()
    ec2.associate_dhcp_options(DhcpOptionsId=w["dopt"], VpcId=w["vpc"])

    w["fl"] = ec2.create_flow_logs(
        ResourceIds=[w["vpc"]], ResourceType="VPC", TrafficType="ALL", LogGroupName="dry-run",
        DeliverLogsPermissionArn="arn:aws:iam::123456789012:role/flow-logs")["FlowLogIds"][0]
    ec2.create_tags(Resources=[w["vpc"]], Tags=[{"Key": "env", "Value": "test"}])
    w["key"] = ec2.create_key_pair(KeyName="dry-key", KeyType="ed25519")["KeyName"]
    w["key_pub"] = ec2.describe_key_pairs(KeyNames=["dry-key"], IncludePublicKey=True)[
        "KeyPairs"][0]["PublicKey"]
    pl = ec2.create_managed_prefix_list(PrefixListName="dry-pl", MaxEntries=5, AddressFamily="IPv4",
                                        Entries=[{"Cidr": "10.1.0.0/16"}])["PrefixList"]
    w["pl"], w["pl_version"] = pl["PrefixListId"], pl["Version"]
    lt = ec2.create_launch_template(LaunchTemplateName="dry-lt",
                                    LaunchTemplateData={"ImageId": "ami-12345678"})["LaunchTemplate"]
    w["lt"] = lt["LaunchTemplateId"]
    ec2.create_launch_template_version(LaunchTemplateId=w["lt"], LaunchTemplateData={"ImageId": "ami-2"})
    return w


def ssh(cidr="10.0.0.0/8", port=22):
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": cidr}]}


def calls(w):
    """Action -> the keyword arguments of a request that would succeed."""
    return {
        "AcceptVpcPeeringConnection": {"VpcPeeringConnectionId": w["pcx_pending"]},
        "AllocateAddress": {"Domain": "vpc"},
        "AssociateAddress": {"AllocationId": w["eip_free"], "NetworkInterfaceId": w["eni"]},
        "AssociateDhcpOptions": {"DhcpOptionsId": w["dopt_free"], "VpcId": w["vpc_b"]},
        "AssociateRouteTable": {"RouteTableId": w["rtb_free"], "SubnetId": w["subnet2"]},
        "AttachInternetGateway": {"InternetGatewayId": w["igw_free"], "VpcId": w["vpc_c"]},
        "AttachNetworkInterface": {"NetworkInterfaceId": w["eni"], "InstanceId": w["i_running"],
                                   "DeviceIndex": 2},
        "AuthorizeSecurityGroupEgress": {"GroupId": w["sg"], "IpPermissions": [ssh(port=443)]},
        "AuthorizeSecurityGroupIngress": {"GroupId": w["sg"], "IpPermissions": [ssh(port=443)]},
        "CreateDhcpOptions": {"DhcpConfigurations": [{"Key": "domain-name", "Values": ["x.test"]}]},
        "CreateFlowLogs": {"ResourceIds": [w["subnet"]], "ResourceType": "Subnet",
                           "TrafficType": "REJECT", "LogGroupName": "dry-run-2",
                           "DeliverLogsPermissionArn": "arn:aws:iam::123456789012:role/fl"},
        "CreateInternetGateway": {},
        "CreateManagedPrefixList": {"PrefixListName": "dry-new-pl", "MaxEntries": 5,
                                    "AddressFamily": "IPv4"},
        "CreateKeyPair": {"KeyName": "dry-new"},
        "CreateLaunchTemplate": {"LaunchTemplateName": "dry-new-lt",
                                 "LaunchTemplateData": {"InstanceType": "t3.micro"}},
        "CreateLaunchTemplateVersion": {"LaunchTemplateId": w["lt"],
                                        "LaunchTemplateData": {"ImageId": "ami-3"}},
        "CreateNatGateway": {"SubnetId": w["subnet2"], "AllocationId": w["eip_free"]},
        "CreateNetworkAcl": {"VpcId": w["vpc"]},
        "CreateNetworkAclEntry": {"NetworkAclId": w["acl"], "RuleNumber": 200, "Protocol": "6",
                                  "PortRange": {"From": 22, "To": 22}, "RuleAction": "deny",
                                  "Egress": False, "CidrBlock": "10.0.0.0/8"},
        "CreateNetworkInterface": {"SubnetId": w["subnet"]},
        "CreateRoute": {"RouteTableId": w["rtb"], "DestinationCidrBlock": "172.16.0.0/12",
                        "GatewayId": w["igw"]},
        "CreateRouteTable": {"VpcId": w["vpc"]},
        "CreateSecurityGroup": {"GroupName": "new", "Description": "d", "VpcId": w["vpc"]},
        "CreateSubnet": {"VpcId": w["vpc"], "CidrBlock": "10.60.9.0/24"},
        "CreateTags": {"Resources": [w["vpc"]], "Tags": [{"Key": "k", "Value": "v"}]},
        "CreateVpc": {"CidrBlock": "10.70.0.0/16"},
        "CreateVpcPeeringConnection": {"VpcId": w["vpc_b"], "PeerVpcId": w["vpc_c"]},
        "DeleteDhcpOptions": {"DhcpOptionsId": w["dopt_free"]},
        "DeleteFlowLogs": {"FlowLogIds": [w["fl"]]},
        "DeleteInternetGateway": {"InternetGatewayId": w["igw_free"]},
        "DeleteKeyPair": {"KeyName": w["key"]},
        "DeleteLaunchTemplate": {"LaunchTemplateId": w["lt"]},
        "DeleteLaunchTemplateVersions": {"LaunchTemplateId": w["lt"], "Versions": ["2"]},
        "DeleteManagedPrefixList": {"PrefixListId": w["pl"]},
        "DeleteNatGateway": {"NatGatewayId": w["nat"]},
        "DeleteNetworkAcl": {"NetworkAclId": w["acl_free"]},
        "DeleteNetworkAclEntry": {"NetworkAclId": w["acl"], "RuleNumber": 100, "Egress": False},
        "DeleteNetworkInterface": {"NetworkInterfaceId": w["eni"]},
        "DeleteRoute": {"RouteTableId": w["rtb"], "DestinationCidrBlock": "0.0.0.0/0"},
        "DeleteRouteTable": {"RouteTableId": w["rtb_free"]},
        "DeleteSecurityGroup": {"GroupId": w["sg_free"]},
        "DeleteSubnet": {"SubnetId": w["subnet_empty"]},
        "DeleteTags": {"Resources": [w["vpc"]], "Tags": [{"Key": "env"}]},
        "DeleteVpc": {"VpcId": w["vpc_empty"]},
        "DeleteVpcPeeringConnection": {"VpcPeeringConnectionId": w["pcx_active"]},
        "DescribeAccountAttributes": {},
        "DescribeAddresses": {},
        "DescribeAvailabilityZones": {},
        "DescribeDhcpOptions": {},
        "DescribeFlowLogs": {},
        "DescribeInstanceAttribute": {"InstanceId": w["i_running"], "Attribute": "userData"},
        "DescribeInstanceStatus": {},
        "DescribeVolumes": {},
        "DescribeInstances": {},
        "DescribeInternetGateways": {},
        "DescribeKeyPairs": {},
        "DescribeLaunchTemplates": {},
        "DescribeLaunchTemplateVersions": {"LaunchTemplateId": w["lt"]},
        "DescribeManagedPrefixLists": {},
        "DescribeNatGateways": {},
        "DescribeNetworkAcls": {},
        "DescribeNetworkInterfaceAttribute": {"NetworkInterfaceId": w["eni"],
                                              "Attribute": "description"},
        "DescribeNetworkInterfaces": {},
        "DescribeRegions": {},
        "DescribeRouteTables": {},
        "DescribeSecurityGroupRules": {},
        "DescribeSecurityGroups": {},
        "DescribeSubnets": {},
        "DescribeTags": {},
        "DescribeVpcAttribute": {"VpcId": w["vpc"], "Attribute": "enableDnsSupport"},
        "DescribeVpcPeeringConnections": {},
        "DescribeVpcs": {},
        "DetachInternetGateway": {"InternetGatewayId": w["igw_b"], "VpcId": w["vpc_b"]},
        "DetachNetworkInterface": {"AttachmentId": w["eni_attachment"]},
        "DisassociateAddress": {"AssociationId": w["eip_association"]},
        "DisassociateRouteTable": {"AssociationId": w["rtb_assoc"]},
        "GetManagedPrefixListAssociations": {"PrefixListId": w["pl"]},
        "GetManagedPrefixListEntries": {"PrefixListId": w["pl"]},
        "ImportKeyPair": {"KeyName": "dry-import", "PublicKeyMaterial": w["key_pub"].encode()},
        "ModifyInstanceAttribute": {"InstanceId": w["i_stopped"], "SourceDestCheck": {"Value": False}},
        "ModifyLaunchTemplate": {"LaunchTemplateId": w["lt"], "DefaultVersion": "2"},
        "ModifyInstanceMetadataOptions": {"InstanceId": w["i_running"], "HttpTokens": "required"},
        "ModifyManagedPrefixList": {"PrefixListId": w["pl"], "CurrentVersion": w["pl_version"],
                                    "AddEntries": [{"Cidr": "10.2.0.0/16"}]},
        "ModifyNetworkInterfaceAttribute": {"NetworkInterfaceId": w["eni"],
                                            "Description": {"Value": "changed"}},
        "ModifySecurityGroupRules": {"GroupId": w["sg"], "SecurityGroupRules": [{
            "SecurityGroupRuleId": w["sgr"],
            "SecurityGroupRule": {"IpProtocol": "tcp", "FromPort": 2222, "ToPort": 2222,
                                  "CidrIpv4": "10.0.0.0/8"}}]},
        "RejectVpcPeeringConnection": {"VpcPeeringConnectionId": w["pcx_pending"]},
        "ReleaseAddress": {"AllocationId": w["eip_free"]},
        "ReplaceNetworkAclAssociation": {"AssociationId": w["acl_assoc"], "NetworkAclId": w["acl"]},
        "ReplaceNetworkAclEntry": {"NetworkAclId": w["acl"], "RuleNumber": 100, "Protocol": "-1",
                                   "RuleAction": "deny", "Egress": False,
                                   "CidrBlock": "0.0.0.0/0"},
        "ReplaceRoute": {"RouteTableId": w["rtb"], "DestinationCidrBlock": "0.0.0.0/0",
                         "NatGatewayId": w["nat"]},
        "ReplaceRouteTableAssociation": {"AssociationId": w["rtb_assoc"],
                                         "RouteTableId": w["rtb_free"]},
        "RevokeSecurityGroupEgress": {"GroupId": w["sg"], "IpPermissions": [ssh("10.9.0.0/16")]},
        "RevokeSecurityGroupIngress": {"GroupId": w["sg"], "IpPermissions": [ssh()]},
        "RunInstances": {"LaunchTemplate": {"LaunchTemplateId": w["lt"]}, "SubnetId": w["subnet"],
                         "MinCount": 1, "MaxCount": 1},
        "StartInstances": {"InstanceIds": [w["i_stopped"]]},
        "StopInstances": {"InstanceIds": [w["i_running"]]},
        "TerminateInstances": {"InstanceIds": [w["i_running"]]},
        "UpdateSecurityGroupRuleDescriptionsEgress": {
            "GroupId": w["sg"], "IpPermissions": [dict(ssh("10.9.0.0/16"), IpRanges=[
                {"CidrIp": "10.9.0.0/16", "Description": "dry"}])]},
        "UpdateSecurityGroupRuleDescriptionsIngress": {
            "GroupId": w["sg"], "IpPermissions": [dict(ssh(), IpRanges=[
                {"CidrIp": "10.0.0.0/8", "Description": "dry"}])]},
    }


DESCRIBES = [
    ("describe_vpcs", {}), ("describe_subnets", {}), ("describe_instances", {}),
    ("describe_instance_status", {"IncludeAllInstances": True}),
    ("describe_network_interfaces", {}), ("describe_security_groups", {}),
    ("describe_security_group_rules", {}), ("describe_network_acls", {}),
    ("describe_route_tables", {}), ("describe_internet_gateways", {}), ("describe_addresses", {}),
    ("describe_nat_gateways", {}), ("describe_vpc_peering_connections", {}),
    ("describe_dhcp_options", {}), ("describe_flow_logs", {}), ("describe_tags", {}),
    ("describe_key_pairs", {"IncludePublicKey": True}),
    ("describe_managed_prefix_lists", {}),
    ("describe_launch_templates", {}),
    ("describe_launch_template_versions", {"Versions": ["$Latest", "$Default"]}),
]


def snapshot(ec2):
    out = {}
    for name, kw in DESCRIBES:
        r = getattr(ec2, name)(**kw)
        r.pop("ResponseMetadata", None)
        out[name] = r
    return json.loads(json.dumps(out, default=str, sort_keys=True))


def test_every_action_with_dry_run_has_a_case(world):
    assert set(calls(world)) == dry_run_actions()


def test_dry_run_changes_nothing_on_any_action(srv, world):
    ec2 = srv.client()
    before = snapshot(ec2)
    answered = []
    for action, kw in sorted(calls(world).items()):
        try:
            expect_error("DryRunOperation", 412, getattr(ec2, snake(action)), DryRun=True, **kw)
        except AssertionError as e:
            raise AssertionError(f"{action}: {e}") from None
        answered.append(action)
    assert len(answered) == len(dry_run_actions())
    after = snapshot(ec2)
    for name in before:
        assert after[name] == before[name], f"DryRun changed what {name} shows"


def test_dry_run_of_a_failing_request_gets_its_real_error(srv, world):
    ec2 = srv.client()
    expect_error("InvalidVpcID.NotFound", 400, ec2.delete_vpc, VpcId="vpc-0123456789abcdef0",
                 DryRun=True)
    expect_error("DependencyViolation", 400, ec2.delete_vpc, VpcId=world["vpc"], DryRun=True)
    expect_error("InvalidGroup.Duplicate", 400, ec2.create_security_group, GroupName="web",
                 Description="d", VpcId=world["vpc"], DryRun=True)
