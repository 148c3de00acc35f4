"""Nothing silently ignored (issue 13): every member of every served action's input shape is in
exactly one of the three lists of docs/ec2-api-coverage.md ("Input members, action by action"):
implemented, accepted without effect (with the reason), or refused with an error naming it.

The walk reads the model the server decodes requests with
(crates/softvpc-ec2-protocol/model/ec2-vpc.json, trimmed from botocore's EC2 model), so a
member added by regenerating the model fails here until it is classified. Every refused member
is then sent with a sample value (boto3, and the AWS CLI for a few) against real resources, and
the refusal must name it."""

import json
import re
import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import aws_env

ROOT = Path(__file__).resolve().parents[2]
MODEL = json.loads((ROOT / "crates/softvpc-ec2-protocol/model/ec2-vpc.json").read_text())
DOC = (ROOT / "docs/ec2-api-coverage.md").read_text()


def input_members(action):
    op = MODEL["operations"][action]
    if "input" not in op:
        return []
    return [m["name"] for m in MODEL["shapes"][op["input"]]["members"]]


def parse_doc():
    """{action: {"implemented": [...], "no effect": {member: reason}, "refused": [...]}}."""
    start = DOC.index("## Input members, action by action")
    end = DOC.index("\n## ", start + 1)
    lists = {}
    current = None
    for line in DOC[start:end].splitlines():
        head = re.match(r"^#### (\w+)$", line)
        if head:
            current = lists.setdefault(
                head.group(1), {"implemented": [], "no effect": {}, "refused": []})
            continue
        if current is None:
            continue
        if line.startswith("- Implemented: "):
            current["implemented"] += re.findall(r"`([\w.]+)`", line)
        elif line.startswith("- Refused: "):
            current["refused"] += re.findall(r"`([\w.]+)`", line)
        elif line.startswith("- No effect: "):
            m = re.match(r"^- No effect: `([\w.]+)` — (.+)$", line)
            assert m and m.group(2).strip(), f"no-effect line without a reason: {line!r}"
            current["no effect"][m.group(1)] = m.group(2).strip()
    return lists


LISTS = parse_doc()


def test_every_member_is_in_exactly_one_list():
    problems = []
    for action in sorted(MODEL["operations"]):
        entry = LISTS.get(action)
        if entry is None:
            problems.append(f"{action}: no section")
            continue
        members = input_members(action)
        listed = entry["implemented"] + list(entry["no effect"]) + entry["refused"]
        for m in members:
            n = listed.count(m)
            if n != 1:
                problems.append(f"{action}.{m}: in {n} lists")
        for m in listed:
            if m not in members:
                problems.append(f"{action}.{m}: not a member of the model's input shape")
    for action in LISTS:
        if action not in MODEL["operations"]:
            problems.append(f"{action}: listed but not served")
    assert not problems, "\n".join(problems)


# Sample values that ask for the refused thing (the default value of a member passes).
SAMPLES = {
    "AllocateAddress": {
        "Address": "203.0.113.77", "PublicIpv4Pool": "ipv4pool-ec2-1",
        "CustomerOwnedIpv4Pool": "pool-1", "IpamPoolId": "ipam-pool-1",
        "NetworkBorderGroup": "eu-west-1",
    },
    "ReleaseAddress": {"NetworkBorderGroup": "eu-west-1"},
    "AssignPrivateIpAddresses": {"Ipv4Prefixes": ["10.9.0.16/28"], "Ipv4PrefixCount": 1},
    "UnassignPrivateIpAddresses": {"Ipv4Prefixes": ["10.9.0.16/28"]},
    "AssociateRouteTable": {"GatewayId": "{igw}", "PublicIpv4Pool": "ipv4pool-ec2-1"},
    "AttachNetworkInterface": {
        "NetworkCardIndex": 1, "EnaSrdSpecification": {"EnaSrdEnabled": True},
        "EnaQueueCount": 2,
    },
    "CreateNatGateway": {
        "AvailabilityMode": "regional", "VpcId": "{vpc}",
        "AvailabilityZoneAddresses": [{"AvailabilityZone": "us-east-1a", "AllocationIds": ["eipalloc-1"]}],
        "SecondaryAllocationIds": ["eipalloc-1"], "SecondaryPrivateIpAddresses": ["10.9.0.200"],
        "SecondaryPrivateIpAddressCount": 1,
    },
    "CreateNetworkAclEntry": {"Ipv6CidrBlock": "2001:db8::/64"},
    "ReplaceNetworkAclEntry": {"Ipv6CidrBlock": "2001:db8::/64"},
    "CreateNetworkInterface": {
        "Ipv4Prefixes": [{"Ipv4Prefix": "10.9.0.16/28"}], "Ipv4PrefixCount": 1,
        "Ipv6Prefixes": [{"Ipv6Prefix": "2001:db8::/80"}], "Ipv6PrefixCount": 1,
        "EnablePrimaryIpv6": True,
        "Operator": {"Principal": "x"}, "Ipv6Addresses": [{"Ipv6Address": "2001:db8::1"}],
        "Ipv6AddressCount": 1, "InterfaceType": "efa",
    },
    "DeleteRoute": {"DestinationIpv6CidrBlock": "2001:db8::/64"},
    "CreateSubnet": {
        "Ipv6CidrBlock": "2001:db8::/64", "OutpostArn": "arn:aws:outposts:us-east-1:1:outpost/op-1",
        "Ipv6Native": True, "Ipv4IpamPoolId": "ipam-pool-1", "Ipv4NetmaskLength": 24,
        "Ipv6IpamPoolId": "ipam-pool-1", "Ipv6NetmaskLength": 64,
    },
    "CreateVpc": {
        "Ipv6Pool": "pool-1", "Ipv6CidrBlock": "2001:db8::/56", "Ipv4IpamPoolId": "ipam-pool-1",
        "Ipv4NetmaskLength": 16, "Ipv6IpamPoolId": "ipam-pool-1", "Ipv6NetmaskLength": 56,
        "Ipv6CidrBlockNetworkBorderGroup": "us-east-1", "VpcEncryptionControl": {"Mode": "monitor"},
        "AmazonProvidedIpv6CidrBlock": True,
    },
    "ModifyInstanceAttribute": {
        "Kernel": {"Value": "aki-1"}, "Ramdisk": {"Value": "ari-1"},
        "EbsOptimized": {"Value": True}, "SriovNetSupport": {"Value": "simple"},
        "EnaSupport": {"Value": True},
    },
    "ModifyNetworkInterfaceAttribute": {
        "EnaSrdSpecification": {"EnaSrdEnabled": True}, "EnablePrimaryIpv6": True,
        "AssociatePublicIpAddress": True, "AssociatedSubnetIds": ["{subnet}"],
    },
    "ModifySubnetAttribute": {
        "AssignIpv6AddressOnCreation": {"Value": True}, "MapCustomerOwnedIpOnLaunch": {"Value": True},
        "CustomerOwnedIpv4Pool": "pool-1", "EnableDns64": {"Value": True},
        "EnableResourceNameDnsAAAARecordOnLaunch": {"Value": True}, "EnableLniAtDeviceIndex": 1,
        "DisableLniAtDeviceIndex": {"Value": True},
    },
    "ModifyVpcAttribute": {"EnableNetworkAddressUsageMetrics": {"Value": True}},
    "AssociateVpcCidrBlock": {
        "AmazonProvidedIpv6CidrBlock": True, "Ipv6CidrBlock": "2001:db8::/56", "Ipv6Pool": "pool-1",
        "Ipv6IpamPoolId": "ipam-pool-1", "Ipv6NetmaskLength": 56,
        "Ipv6CidrBlockNetworkBorderGroup": "us-east-1", "Ipv4IpamPoolId": "ipam-pool-1",
        "Ipv4NetmaskLength": 16,
    },
    "RunInstances": {
        "Ipv6AddressCount": 1, "Ipv6Addresses": [{"Ipv6Address": "2001:db8::1"}],
        "KernelId": "aki-1", "RamdiskId": "ari-1", "Monitoring": {"Enabled": True},
        "ElasticGpuSpecification": [{"Type": "eg1.medium"}],
        "ElasticInferenceAccelerators": [{"Type": "eia1.medium"}],
        "InstanceMarketOptions": {"MarketType": "spot"}, "CpuOptions": {"CoreCount": 1},
        "CapacityReservationSpecification": {"CapacityReservationPreference": "none"},
        "HibernationOptions": {"Configured": True},
        "LicenseSpecifications": [{"LicenseConfigurationArn": "arn:aws:license-manager:x"}],
        "MetadataOptions": {"HttpTokens": "required"}, "EnclaveOptions": {"Enabled": True},
        "PrivateDnsNameOptions": {"HostnameType": "resource-name"},
        "MaintenanceOptions": {"AutoRecovery": "disabled"}, "EnablePrimaryIpv6": True,
        "NetworkPerformanceOptions": {"BandwidthWeighting": "vpc-1"},
        "Operator": {"Principal": "x"},
        "SecondaryInterfaces": [{"DeviceIndex": 1}],
        "IamInstanceProfile": {"Name": "no-such-profile"},
    },
    "StopInstances": {"Hibernate": True},
    "CreateLaunchTemplate": {"Operator": {"Principal": "x"}},
    "CreateLaunchTemplateVersion": {"ResolveAlias": True},
    "DescribeLaunchTemplateVersions": {"ResolveAlias": True},
}
ROUTE_TARGETS = {
    "VpcEndpointId": "vpce-1", "TransitGatewayId": "tgw-1", "LocalGatewayId": "lgw-1",
    "CarrierGatewayId": "cagw-1", "CoreNetworkArn": "arn:aws:networkmanager::1:core-network/x",
    "OdbNetworkArn": "arn:aws:odb:us-east-1:1:odb-network/x",
    "EgressOnlyInternetGatewayId": "eigw-1", "DestinationIpv6CidrBlock": "2001:db8::/64",
}
SAMPLES["CreateRoute"] = dict(ROUTE_TARGETS)
SAMPLES["ReplaceRoute"] = dict(ROUTE_TARGETS)
for a in ("AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress",
          "RevokeSecurityGroupIngress", "RevokeSecurityGroupEgress"):
    SAMPLES[a] = {"SourceSecurityGroupOwnerId": "999999999999"}


@pytest.fixture(scope="module")
def world(ec2):
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.0.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(VpcId=vpc, GroupName="members", Description="d")["GroupId"]
    eni = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
    inst = ec2.run_instances(ImageId="ami-1", MinCount=1, MaxCount=1, SubnetId=subnet,
                             InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="10.99.0.0/16", NetworkInterfaceId=eni)
    acl = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
    ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=100, Protocol="-1", RuleAction="allow",
                                 Egress=False, CidrBlock="0.0.0.0/0")
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    alloc = ec2.allocate_address(Domain="vpc")["AllocationId"]
    lt = ec2.create_launch_template(LaunchTemplateName="members",
                                    LaunchTemplateData={"ImageId": "ami-1"})["LaunchTemplate"]
    return dict(vpc=vpc, subnet=subnet, sg=sg, eni=eni, instance=inst, rtb=rtb, acl=acl, igw=igw,
                alloc=alloc, lt=lt["LaunchTemplateId"])


def base_request(action, w):
    """Valid parameters for `action`, so that only the refused member can fail it."""
    entry = {"RuleNumber": 100, "Protocol": "-1", "RuleAction": "allow", "Egress": False,
             "CidrBlock": "0.0.0.0/0", "NetworkAclId": w["acl"]}
    perm = {"GroupId": w["sg"], "IpPermissions": [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "UserIdGroupPairs": [{"GroupId": w["sg"]}]}]}
    return {
        "AllocateAddress": {"Domain": "vpc"},
        "ReleaseAddress": {"AllocationId": w["alloc"]},
        "AssignPrivateIpAddresses": {"NetworkInterfaceId": w["eni"]},
        "UnassignPrivateIpAddresses": {"NetworkInterfaceId": w["eni"]},
        "AssociateRouteTable": {"RouteTableId": w["rtb"], "SubnetId": w["subnet"]},
        "AttachNetworkInterface": {"NetworkInterfaceId": w["eni"], "InstanceId": w["instance"],
                                   "DeviceIndex": 1},
        "AuthorizeSecurityGroupIngress": perm, "AuthorizeSecurityGroupEgress": perm,
        "RevokeSecurityGroupIngress": perm, "RevokeSecurityGroupEgress": perm,
        "CreateNatGateway": {"SubnetId": w["subnet"], "AllocationId": w["alloc"]},
        "CreateNetworkAclEntry": dict(entry, RuleNumber=200),
        "ReplaceNetworkAclEntry": entry,
        "CreateNetworkInterface": {"SubnetId": w["subnet"]},
        "CreateRoute": {"RouteTableId": w["rtb"], "DestinationCidrBlock": "10.98.0.0/16",
                        "NetworkInterfaceId": w["eni"]},
        "ReplaceRoute": {"RouteTableId": w["rtb"], "DestinationCidrBlock": "10.99.0.0/16",
                         "NetworkInterfaceId": w["eni"]},
        "DeleteRoute": {"RouteTableId": w["rtb"], "DestinationCidrBlock": "10.99.0.0/16"},
        "CreateSubnet": {"VpcId": w["vpc"], "CidrBlock": "10.9.200.0/24"},
        "CreateVpc": {"CidrBlock": "10.10.0.0/16"},
        "AssociateVpcCidrBlock": {"VpcId": w["vpc"], "CidrBlock": "10.12.0.0/16"},
        "ModifyInstanceAttribute": {"InstanceId": w["instance"]},
        "ModifyNetworkInterfaceAttribute": {"NetworkInterfaceId": w["eni"]},
        "ModifySubnetAttribute": {"SubnetId": w["subnet"]},
        "ModifyVpcAttribute": {"VpcId": w["vpc"]},
        "RunInstances": {"ImageId": "ami-1", "MinCount": 1, "MaxCount": 1,
                         "SubnetId": w["subnet"], "InstanceType": "t3.micro"},
        "StopInstances": {"InstanceIds": [w["instance"]]},
        "CreateLaunchTemplate": {"LaunchTemplateName": "members-new",
                                 "LaunchTemplateData": {"ImageId": "ami-1"}},
        "CreateLaunchTemplateVersion": {"LaunchTemplateId": w["lt"],
                                        "LaunchTemplateData": {"ImageId": "ami-2"}},
        "DescribeLaunchTemplateVersions": {"LaunchTemplateId": w["lt"]},
    }[action]


def fill(value, w):
    if isinstance(value, str):
        return re.sub(r"\{(\w+)\}", lambda m: w[m.group(1)], value)
    if isinstance(value, list):
        return [fill(v, w) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, w) for k, v in value.items()}
    return value


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


REFUSED = [(a, m) for a in sorted(LISTS) for m in LISTS[a]["refused"]]


@pytest.mark.parametrize("action,member", REFUSED, ids=[f"{a}.{m}" for a, m in REFUSED])
def test_refused_member_is_refused_by_name(ec2, world, action, member):
    assert member in SAMPLES.get(action, {}), f"no sample value for refused {action}.{member}"
    kwargs = dict(base_request(action, world))
    kwargs[member] = fill(SAMPLES[action][member], world)
    with pytest.raises(ClientError) as e:
        getattr(ec2, snake(action))(**kwargs)
    err = e.value.response["Error"]
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, err
    assert member.lower() in err["Message"].lower(), f"{action}.{member}: {err}"


@pytest.mark.parametrize("args,member", [
    (["create-vpc", "--cidr-block", "10.11.0.0/16", "--amazon-provided-ipv6-cidr-block"],
     "AmazonProvidedIpv6CidrBlock"),
    (["create-route", "--route-table-id", "{rtb}", "--destination-cidr-block", "10.97.0.0/16",
      "--transit-gateway-id", "tgw-1", "--network-interface-id", "{eni}"], "TransitGatewayId"),
    (["modify-vpc-attribute", "--vpc-id", "{vpc}", "--enable-network-address-usage-metrics"],
     "EnableNetworkAddressUsageMetrics"),
    (["stop-instances", "--instance-ids", "{instance}", "--hibernate"], "Hibernate"),
])
def test_refused_members_with_the_cli(server, world, args, member):
    p = subprocess.run(
        ["aws", "ec2", "--endpoint-url", server.endpoint, "--output", "json",
         *[fill(a, world) for a in args]],
        capture_output=True, text=True, env=aws_env(server.credentials_file), timeout=60)
    assert p.returncode != 0, p.stdout
    assert member in p.stderr, p.stderr


def test_no_effect_members_are_accepted(ec2, world):
    """A sample of the no-effect list: accepted and the call does what it does without them."""
    r = ec2.describe_instances(InstanceIds=[world["instance"]], IncludeManagedResources=True)
    assert r["Reservations"][0]["Instances"][0]["InstanceId"] == world["instance"]
    zones = ec2.describe_availability_zones(AllAvailabilityZones=True)["AvailabilityZones"]
    assert zones == ec2.describe_availability_zones()["AvailabilityZones"]
    inst = ec2.run_instances(ImageId="ami-1", MinCount=1, MaxCount=1, SubnetId=world["subnet"],
                             EbsOptimized=True, CreditSpecification={"CpuCredits": "standard"},
                             AdditionalInfo="x")["Instances"][0]["InstanceId"]
    ec2.stop_instances(InstanceIds=[inst], Force=True, SkipOsShutdown=True, Hibernate=False)
    ec2.terminate_instances(InstanceIds=[inst], Force=True, SkipOsShutdown=True)
    state = ec2.describe_instances(InstanceIds=[inst])["Reservations"][0]["Instances"][0]["State"]
    assert state["Name"] in ("shutting-down", "terminated")
