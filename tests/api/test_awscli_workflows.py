"""The common VPC workflows end to end with the real AWS CLI, each written as a user would script
it: a VPC with public and private subnets behind an internet and a NAT gateway; security groups
with rules; VPC peering. Every refusal on the way is checked as the CLI reports it (the exit code
of a service error: 254 with CLI v2, 255 with v1; `An error occurred (Code) when calling the Op
operation: message`).

test_awscli.py covers the basics (one VPC, one instance, simple errors); these build on them."""

import json
import re
import subprocess

import pytest


def service_error_exit_code():
    """The exit code the installed AWS CLI gives a service error: v2 254, v1 255."""
    out = subprocess.run(["aws", "--version"], capture_output=True, text=True, timeout=30)
    major = re.match(r"aws-cli/(\d+)\.", out.stdout + out.stderr)
    assert major, out
    return 254 if int(major.group(1)) >= 2 else 255


SERVICE_ERROR = service_error_exit_code()


class Cli:
    """`aws ec2 ...` against the test server."""

    def __init__(self, aws):
        self.aws = aws

    def __call__(self, *args):
        """Runs the command; it must succeed. Returns the parsed JSON output (None if none)."""
        rc, out, err = self.aws(*args)
        assert rc == 0, (args, rc, err)
        return out

    def refused(self, code, operation, message, *args):
        """Runs the command; it must fail as the CLI reports an EC2 error: its service-error exit
        code and `An error occurred (code) when calling the operation operation: message`."""
        rc, out, err = self.aws(*args)
        assert rc == SERVICE_ERROR, (args, rc, err)
        expected = f"An error occurred ({code}) when calling the {operation} operation: {message}"
        assert expected in err, (expected, err)


@pytest.fixture
def cli(aws):
    return Cli(aws)


def name_tag(resource_type, name):
    return f"ResourceType={resource_type},Tags=[{{Key=Name,Value={name}}}]"


def test_vpc_with_public_and_private_subnets(cli):
    # The network: a VPC, a public and a private subnet.
    vpc = cli("create-vpc", "--cidr-block", "10.0.0.0/16",
              "--tag-specifications", name_tag("vpc", "wf-vpc"), "--query", "Vpc.VpcId")
    cli("wait", "vpc-available", "--vpc-ids", vpc)
    public = cli("create-subnet", "--vpc-id", vpc, "--cidr-block", "10.0.1.0/24",
                 "--availability-zone", "us-east-1a",
                 "--tag-specifications", name_tag("subnet", "wf-public"), "--query", "Subnet.SubnetId")
    private = cli("create-subnet", "--vpc-id", vpc, "--cidr-block", "10.0.2.0/24",
                  "--availability-zone", "us-east-1a",
                  "--tag-specifications", name_tag("subnet", "wf-private"), "--query", "Subnet.SubnetId")

    # The public side: an internet gateway and a route table with the default route to it.
    igw = cli("create-internet-gateway", "--query", "InternetGateway.InternetGatewayId")
    assert cli("attach-internet-gateway", "--internet-gateway-id", igw, "--vpc-id", vpc) is None
    public_rtb = cli("create-route-table", "--vpc-id", vpc, "--query", "RouteTable.RouteTableId")
    assert cli("create-route", "--route-table-id", public_rtb, "--destination-cidr-block", "0.0.0.0/0",
               "--gateway-id", igw) == {"Return": True}
    public_assoc = cli("associate-route-table", "--route-table-id", public_rtb, "--subnet-id", public)
    assert public_assoc["AssociationState"] == {"State": "associated"}
    public_assoc = public_assoc["AssociationId"]
    cli("modify-subnet-attribute", "--subnet-id", public, "--map-public-ip-on-launch")
    shown = cli("describe-subnets", "--subnet-ids", public, private,
                "--query", "Subnets[].[SubnetId,MapPublicIpOnLaunch]")
    assert sorted(shown) == sorted([[public, True], [private, False]])

    # The private side: a NAT gateway (with an Elastic IP) in the public subnet.
    eip = cli("allocate-address", "--domain", "vpc")
    nat = cli("create-nat-gateway", "--subnet-id", public, "--allocation-id", eip["AllocationId"],
              "--tag-specifications", name_tag("natgateway", "wf-nat"), "--query", "NatGateway")
    assert nat["State"] == "pending"
    nat = nat["NatGatewayId"]
    cli("wait", "nat-gateway-available", "--nat-gateway-ids", nat)
    nat_addr = cli("describe-nat-gateways", "--nat-gateway-ids", nat,
                   "--query", "NatGateways[0].NatGatewayAddresses[0].[PublicIp,AllocationId]")
    assert nat_addr == [eip["PublicIp"], eip["AllocationId"]]
    private_rtb = cli("create-route-table", "--vpc-id", vpc, "--query", "RouteTable.RouteTableId")
    cli("create-route", "--route-table-id", private_rtb, "--destination-cidr-block", "0.0.0.0/0",
        "--nat-gateway-id", nat)
    private_assoc = cli("associate-route-table", "--route-table-id", private_rtb, "--subnet-id", private,
                        "--query", "AssociationId")

    # One instance in each subnet.
    web = cli("run-instances", "--image-id", "ami-0abcdef1234567890", "--instance-type", "t3.micro",
              "--subnet-id", public, "--count", "1",
              "--tag-specifications", name_tag("instance", "wf-web"), "--query", "Instances[0].InstanceId")
    db = cli("run-instances", "--image-id", "ami-0abcdef1234567890", "--instance-type", "t3.micro",
             "--subnet-id", private, "--count", "1",
             "--tag-specifications", name_tag("instance", "wf-db"), "--query", "Instances[0].InstanceId")
    cli("wait", "instance-running", "--instance-ids", web, db)
    rows = cli("describe-instances", "--filters", f"Name=vpc-id,Values={vpc}", "Name=instance-state-name,Values=running",
               "--query", "sort_by(Reservations[].Instances[], &PrivateIpAddress)"
                          "[].[Tags[?Key=='Name']|[0].Value,SubnetId,PrivateIpAddress,State.Name]")
    # (The NAT gateway's interface took the public subnet's first address, 10.0.1.4.)
    assert rows == [["wf-web", public, "10.0.1.5", "running"], ["wf-db", private, "10.0.2.4", "running"]]
    # The routes as the subnets see them.
    via = cli("describe-route-tables", "--filters", f"Name=association.subnet-id,Values={private}",
              "--query", "RouteTables[].Routes[?DestinationCidrBlock=='0.0.0.0/0'][].NatGatewayId")
    assert via == [nat]
    via = cli("describe-route-tables", "--filters", f"Name=association.subnet-id,Values={public}",
              "--query", "RouteTables[].Routes[?DestinationCidrBlock=='0.0.0.0/0'][].GatewayId")
    assert via == [igw]
    assert cli("describe-network-interfaces", "--filters", f"Name=subnet-id,Values={public}",
               "--query", "length(NetworkInterfaces)") == 2, "the web instance's and the NAT gateway's"

    # Tear-down, in the wrong order first: every dependency is refused and changes nothing.
    cli.refused("DependencyViolation", "DeleteVpc",
                f"The vpc '{vpc}' has dependencies and cannot be deleted.", "delete-vpc", "--vpc-id", vpc)
    cli.refused("DependencyViolation", "DeleteSubnet",
                f"The subnet '{public}' has dependencies and cannot be deleted.",
                "delete-subnet", "--subnet-id", public)
    cli.refused("DependencyViolation", "DeleteInternetGateway",
                f"The internetGateway '{igw}' has dependencies and cannot be deleted.",
                "delete-internet-gateway", "--internet-gateway-id", igw)
    cli.refused("DependencyViolation", "DetachInternetGateway",
                f"Network {vpc} has some mapped public address(es). Please unmap those public address(es) "
                "before detaching the gateway.",
                "detach-internet-gateway", "--internet-gateway-id", igw, "--vpc-id", vpc)
    cli.refused("DependencyViolation", "DeleteRouteTable",
                f"The routeTable '{private_rtb}' has dependencies and cannot be deleted.",
                "delete-route-table", "--route-table-id", private_rtb)
    assert cli("describe-vpcs", "--vpc-ids", vpc, "--query", "Vpcs[0].State") == "available"

    # Then in the right order.
    out = cli("terminate-instances", "--instance-ids", web, db,
              "--query", "TerminatingInstances[].CurrentState.Name")
    assert out == ["shutting-down", "shutting-down"]
    cli("wait", "instance-terminated", "--instance-ids", web, db)
    cli.refused("DependencyViolation", "DeleteSubnet",
                f"The subnet '{public}' has dependencies and cannot be deleted.",
                "delete-subnet", "--subnet-id", public)  # the NAT gateway is still there
    assert cli("delete-nat-gateway", "--nat-gateway-id", nat, "--query", "NatGatewayId") == nat
    cli("wait", "nat-gateway-deleted", "--nat-gateway-ids", nat)
    cli("release-address", "--allocation-id", eip["AllocationId"])
    cli("disassociate-route-table", "--association-id", private_assoc)
    cli("disassociate-route-table", "--association-id", public_assoc)
    cli("delete-route-table", "--route-table-id", private_rtb)
    cli("delete-route-table", "--route-table-id", public_rtb)
    cli("detach-internet-gateway", "--internet-gateway-id", igw, "--vpc-id", vpc)
    cli("delete-internet-gateway", "--internet-gateway-id", igw)
    cli("delete-subnet", "--subnet-id", public)
    cli("delete-subnet", "--subnet-id", private)
    cli("delete-vpc", "--vpc-id", vpc)
    cli.refused("InvalidVpcID.NotFound", "DescribeVpcs", f"The vpc ID '{vpc}' does not exist",
                "describe-vpcs", "--vpc-ids", vpc)
    # Terminated instances stay visible for a while, as on AWS.
    assert cli("describe-instances", "--instance-ids", web, db,
               "--query", "Reservations[].Instances[].State.Name") == ["terminated", "terminated"]


def test_security_groups_with_rules(cli, tmp_path):
    vpc = cli("create-vpc", "--cidr-block", "10.0.0.0/16", "--query", "Vpc.VpcId")
    subnet = cli("create-subnet", "--vpc-id", vpc, "--cidr-block", "10.0.0.0/24", "--query", "Subnet.SubnetId")
    web = cli("create-security-group", "--group-name", "wf-web", "--description", "web tier",
              "--vpc-id", vpc, "--query", "GroupId")
    app = cli("create-security-group", "--group-name", "wf-app", "--description", "app tier",
              "--vpc-id", vpc, "--query", "GroupId")
    cli("wait", "security-group-exists", "--group-ids", web, app)
    cli.refused("InvalidGroup.Duplicate", "CreateSecurityGroup",
                f"The security group 'wf-web' already exists for VPC '{vpc}'",
                "create-security-group", "--group-name", "wf-web", "--description", "again", "--vpc-id", vpc)

    # HTTPS from anywhere, and ICMP echo from the VPC, into the web tier (shorthand and JSON).
    cli("authorize-security-group-ingress", "--group-id", web, "--protocol", "tcp", "--port", "443",
        "--cidr", "0.0.0.0/0")
    icmp = [{"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1,
             "IpRanges": [{"CidrIp": "10.0.0.0/16", "Description": "ping from the VPC"}]}]
    cli("authorize-security-group-ingress", "--group-id", web, "--ip-permissions", json.dumps(icmp))
    # Port 8080 into the app tier from the web tier only (a group reference), from a file.
    perms = tmp_path / "app.json"
    perms.write_text(json.dumps([{"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
                                  "UserIdGroupPairs": [{"GroupId": web, "Description": "from web"}]}]))
    out = cli("authorize-security-group-ingress", "--group-id", app, "--ip-permissions", f"file://{perms}")
    assert out["Return"] is True
    (ref_rule,) = out["SecurityGroupRules"]
    assert (ref_rule["GroupId"], ref_rule["ReferencedGroupInfo"]["GroupId"]) == (app, web)
    assert (ref_rule["FromPort"], ref_rule["ToPort"], ref_rule["IsEgress"]) == (8080, 8080, False)
    cli.refused("InvalidPermission.Duplicate", "AuthorizeSecurityGroupIngress",
                "the specified rule \"peer: 0.0.0.0/0, TCP, from port: 443, to port: 443, ALLOW\" already exists",
                "authorize-security-group-ingress", "--group-id", web, "--protocol", "tcp", "--port", "443",
                "--cidr", "0.0.0.0/0")

    rules = cli("describe-security-group-rules", "--filters", f"Name=group-id,Values={web}",
                "--query", "SecurityGroupRules[?IsEgress==`false`]"
                           "|sort_by(@, &IpProtocol)[].[IpProtocol,FromPort,ToPort,CidrIpv4,Description]")
    assert rules == [["icmp", 8, -1, "10.0.0.0/16", "ping from the VPC"], ["tcp", 443, 443, "0.0.0.0/0", None]]
    shown = cli("describe-security-groups", "--group-ids", app,
                "--query", "SecurityGroups[0].IpPermissions[0].UserIdGroupPairs[0].GroupId")
    assert shown == web
    # The web group is referenced by the app group's rule: it cannot go yet.
    cli.refused("DependencyViolation", "DeleteSecurityGroup", "resource " + web + " has a dependent object",
                "delete-security-group", "--group-id", web)

    # An instance uses the app group: the group cannot be deleted while it does.
    inst = cli("run-instances", "--image-id", "ami-1", "--count", "1", "--subnet-id", subnet,
               "--security-group-ids", app, "--query", "Instances[0]")
    assert [g["GroupId"] for g in inst["SecurityGroups"]] == [app]
    cli.refused("DependencyViolation", "DeleteSecurityGroup", "resource " + app + " has a dependent object",
                "delete-security-group", "--group-id", app)

    # Revoke by rule id and by the same JSON; the ICMP rule goes, then the reference.
    https = cli("describe-security-group-rules", "--filters", f"Name=group-id,Values={web}",
                "--query", "SecurityGroupRules[?IpProtocol=='tcp'].SecurityGroupRuleId | [0]")
    cli("revoke-security-group-ingress", "--group-id", web, "--security-group-rule-ids", https)
    cli("revoke-security-group-ingress", "--group-id", web, "--ip-permissions", json.dumps(icmp))
    left = cli("describe-security-group-rules", "--filters", f"Name=group-id,Values={web}",
               "--query", "SecurityGroupRules[?IsEgress==`false`]")
    assert left == []
    cli("revoke-security-group-ingress", "--group-id", app, "--ip-permissions", f"file://{perms}")
    cli("delete-security-group", "--group-id", web)

    cli("terminate-instances", "--instance-ids", inst["InstanceId"])
    cli("wait", "instance-terminated", "--instance-ids", inst["InstanceId"])
    cli("delete-security-group", "--group-id", app)
    cli.refused("InvalidGroup.NotFound", "DescribeSecurityGroups", f"The security group '{app}' does not exist",
                "describe-security-groups", "--group-ids", app)
    # The default group is the VPC's own.
    default = cli("describe-security-groups", "--filters", f"Name=vpc-id,Values={vpc}", "Name=group-name,Values=default",
                  "--query", "SecurityGroups[0].GroupId")
    cli.refused("CannotDelete", "DeleteSecurityGroup", "the specified group: \"" + default + "\" name: \"default\" cannot be deleted by a user",
                "delete-security-group", "--group-id", default)
    cli("delete-subnet", "--subnet-id", subnet)
    cli("delete-vpc", "--vpc-id", vpc)


def test_vpc_peering(cli):
    vpcs = {}
    for name, cidr in (("wf-left", "10.10.0.0/16"), ("wf-right", "10.20.0.0/16"), ("wf-overlap", "10.10.128.0/17")):
        vpcs[name] = cli("create-vpc", "--cidr-block", cidr, "--tag-specifications", name_tag("vpc", name),
                         "--query", "Vpc.VpcId")
    left, right, overlap = vpcs["wf-left"], vpcs["wf-right"], vpcs["wf-overlap"]

    pcx = cli("create-vpc-peering-connection", "--vpc-id", left, "--peer-vpc-id", right,
              "--tag-specifications", name_tag("vpc-peering-connection", "wf-pcx"),
              "--query", "VpcPeeringConnection")
    # (AWS answers initiating-request or already pending-acceptance; the waiter covers both.)
    assert pcx["Status"]["Code"] in ("initiating-request", "pending-acceptance"), pcx
    assert (pcx["RequesterVpcInfo"]["VpcId"], pcx["AccepterVpcInfo"]["VpcId"]) == (left, right)
    pcx = pcx["VpcPeeringConnectionId"]
    cli("wait", "vpc-peering-connection-exists", "--vpc-peering-connection-ids", pcx)
    pending = cli("describe-vpc-peering-connections",
                  "--filters", "Name=status-code,Values=pending-acceptance", f"Name=requester-vpc-info.vpc-id,Values={left}",
                  "--query", "VpcPeeringConnections[].VpcPeeringConnectionId")
    assert pending == [pcx]
    # Routes through it only once it is active.
    left_rtb = cli("describe-route-tables", "--filters", f"Name=vpc-id,Values={left}", "Name=association.main,Values=true",
                   "--query", "RouteTables[0].RouteTableId")
    right_rtb = cli("describe-route-tables", "--filters", f"Name=vpc-id,Values={right}", "Name=association.main,Values=true",
                    "--query", "RouteTables[0].RouteTableId")
    accepted = cli("accept-vpc-peering-connection", "--vpc-peering-connection-id", pcx,
                   "--query", "VpcPeeringConnection.Status.Code")
    assert accepted == "active"
    cli("create-route", "--route-table-id", left_rtb, "--destination-cidr-block", "10.20.0.0/16",
        "--vpc-peering-connection-id", pcx)
    cli("create-route", "--route-table-id", right_rtb, "--destination-cidr-block", "10.10.0.0/16",
        "--vpc-peering-connection-id", pcx)
    for rtb, dest in ((left_rtb, "10.20.0.0/16"), (right_rtb, "10.10.0.0/16")):
        route = cli("describe-route-tables", "--route-table-ids", rtb,
                    "--query", f"RouteTables[0].Routes[?DestinationCidrBlock=='{dest}']|[0]")
        assert (route["VpcPeeringConnectionId"], route["State"]) == (pcx, "active"), route
    by_filter = cli("describe-vpc-peering-connections",
                    "--filters", "Name=status-code,Values=active", f"Name=accepter-vpc-info.vpc-id,Values={right}",
                    "Name=tag:Name,Values=wf-pcx",
                    "--query", "VpcPeeringConnections[].[VpcPeeringConnectionId,AccepterVpcInfo.CidrBlock]")
    assert by_filter == [[pcx, "10.20.0.0/16"]]

    # Overlapping CIDRs cannot be peered: as on AWS the request is recorded as failed, and it
    # can be neither accepted nor deleted.
    bad = cli("create-vpc-peering-connection", "--vpc-id", left, "--peer-vpc-id", overlap,
              "--query", "VpcPeeringConnection.VpcPeeringConnectionId")
    status = cli("describe-vpc-peering-connections", "--vpc-peering-connection-ids", bad,
                 "--query", "VpcPeeringConnections[0].Status")
    assert status == {"Code": "failed", "Message": "Overlapping CIDR range"}
    cli.refused("InvalidStateTransition", "AcceptVpcPeeringConnection",
                f"Invalid state transition for pcx {bad}, attempted to transition from failed to active",
                "accept-vpc-peering-connection", "--vpc-peering-connection-id", bad)
    cli.refused("InvalidStateTransition", "DeleteVpcPeeringConnection",
                f"Invalid state transition for pcx {bad}, attempted to transition from failed to deleted",
                "delete-vpc-peering-connection", "--vpc-peering-connection-id", bad)

    # Delete: the connection goes to deleted and its routes become blackholes.
    assert cli("delete-vpc-peering-connection", "--vpc-peering-connection-id", pcx) == {"Return": True}
    cli("wait", "vpc-peering-connection-deleted", "--vpc-peering-connection-ids", pcx)
    state = cli("describe-route-tables", "--route-table-ids", left_rtb,
                "--query", "RouteTables[0].Routes[?DestinationCidrBlock=='10.20.0.0/16']|[0].State")
    assert state == "blackhole"
    cli("delete-route", "--route-table-id", left_rtb, "--destination-cidr-block", "10.20.0.0/16")
    cli("delete-route", "--route-table-id", right_rtb, "--destination-cidr-block", "10.10.0.0/16")
    for v in (left, right, overlap):
        cli("delete-vpc", "--vpc-id", v)
