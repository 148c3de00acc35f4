"""Bad API requests against the running lab get AWS errors and change nothing: the Describe output
and the agents' mapping views are the same before and after."""

import re
import urllib.error
import urllib.parse
import urllib.request

import pytest
from botocore.exceptions import ClientError


def _snapshot(lab, ec2):
    state = {}
    for call, key in (("describe_vpcs", "Vpcs"), ("describe_subnets", "Subnets"),
                      ("describe_instances", "Reservations"),
                      ("describe_network_interfaces", "NetworkInterfaces")):
        state[key] = getattr(ec2, call)()[key]
    for host in ("host-1", "host-2"):
        view = lab.mappings_text(host)
        state[f"{host} ids"] = sorted(set(re.findall(r"\b(?:eni|i|vpc|subnet)-[0-9a-f]{17}\b",
                                                     view)))
    return state


def _error_code(call, **kwargs):
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value.response["Error"]["Code"]


def test_failed_requests_change_nothing(lab, ec2):
    vpc1 = lab.instance("zigi-vm1")["vpc_id"]
    subnet1 = lab.instance("zigi-vm1")["subnet_id"]
    missing_vpc, missing_subnet = "vpc-0123456789abcdef0", "subnet-0123456789abcdef0"
    before = _snapshot(lab, ec2)

    cases = [
        ("InvalidVpc.Range", ec2.create_vpc, {"CidrBlock": "10.0.0.0/8"}),
        ("InvalidSubnet.Range", ec2.create_subnet, {"VpcId": vpc1, "CidrBlock": "10.1.0.0/24"}),
        ("InvalidSubnet.Conflict", ec2.create_subnet,
         {"VpcId": vpc1, "CidrBlock": "10.0.0.128/25"}),
        ("InvalidVpcID.NotFound", ec2.create_subnet,
         {"VpcId": missing_vpc, "CidrBlock": "10.0.5.0/24"}),
        ("DependencyViolation", ec2.delete_vpc, {"VpcId": vpc1}),
        ("InvalidVpcID.NotFound", ec2.delete_vpc, {"VpcId": missing_vpc}),
        ("DependencyViolation", ec2.delete_subnet, {"SubnetId": subnet1}),
        ("InvalidSubnetID.NotFound", ec2.delete_subnet, {"SubnetId": missing_subnet}),
        ("InvalidIPAddress.InUse", ec2.run_instances,
         {"ImageId": "ami-1", "MinCount": 1, "MaxCount": 1, "SubnetId": subnet1,
          "PrivateIpAddress": "10.0.0.148"}),
        ("InvalidSubnetID.NotFound", ec2.run_instances,
         {"ImageId": "ami-1", "MinCount": 1, "MaxCount": 1, "SubnetId": missing_subnet}),
    ]
    for code, call, kwargs in cases:
        assert _error_code(call, **kwargs) == code, (call.__name__, kwargs)

    # An unknown action through the raw Query API gets InvalidAction in AWS's XML error format.
    body = urllib.parse.urlencode({"Action": "FrobnicateVpc", "Version": "2016-11-15"}).encode()
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    signed = AWSRequest(method="POST", url=lab.api_url, data=body, headers={
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(*lab.credentials()), "ec2", "us-east-1").add_auth(signed)
    request = urllib.request.Request(lab.api_url, data=body, headers=dict(signed.headers.items()))
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 400
    xml = info.value.read().decode()
    assert "<Code>InvalidAction</Code>" in xml and "<Errors>" in xml, xml

    after = _snapshot(lab, ec2)
    assert after == before
    # And the VPC still works.
    assert lab.ping("zigi-vm1", "10.0.0.185", count=1).ok
