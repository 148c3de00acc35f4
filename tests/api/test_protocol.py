"""The EC2 Query wire protocol itself: raw requests, error documents, GET, DryRun, and the store
surviving a restart."""

import re
import xml.etree.ElementTree as ET

from conftest import Server
from helpers import expect_error, instances

NS = "{http://ec2.amazonaws.com/doc/2016-11-15/}"


def error_of(body):
    root = ET.fromstring(body)
    assert root.tag == "Response"
    err = root.find("Errors/Error")
    request_id = root.find("RequestID")
    assert request_id is not None and request_id.text, "RequestID with capital ID"
    return err.find("Code").text, err.find("Message").text


def test_healthz(server):
    import urllib.request
    with urllib.request.urlopen(server.endpoint + "/healthz", timeout=5) as r:
        assert r.status == 200


def test_unknown_and_missing_action(server):
    status, body = server.post("Action=LaunchRockets&Version=2016-11-15")
    assert status == 400
    code, msg = error_of(body)
    assert code == "InvalidAction" and "LaunchRockets" in msg
    status, body = server.post("Version=2016-11-15")
    assert status == 400
    assert error_of(body)[0] == "MissingParameter"


def test_success_document_shape(server):
    status, body = server.post("Action=CreateVpc&Version=2016-11-15&CidrBlock=10.20.0.0%2F16")
    assert status == 200
    root = ET.fromstring(body)
    assert root.tag == NS + "CreateVpcResponse"
    assert re.match(r"^[0-9a-f-]{36}$", root.find(NS + "requestId").text)
    assert root.find(f"{NS}vpc/{NS}cidrBlock").text == "10.20.0.0/16"


def test_get_query_string_and_authorization_ignored(server):
    status, body = server.post("Action=DescribeVpcs&Version=2016-11-15&Filter.1.Name=cidr&Filter.1.Value.1=10.20.0.0%2F16", method="GET")
    assert status == 200
    assert "<vpcSet>" in body
    # Malformed bodies are refused, not crashed on.
    status, body = server.post("Action=CreateVpc&CidrBlock=%FF%FE")
    assert status == 400
    assert error_of(body)[0] == "MalformedQueryString"


def test_dry_run(ec2):
    before = ec2.describe_vpcs()["Vpcs"]
    expect_error("DryRunOperation", 412, ec2.create_vpc, CidrBlock="10.30.0.0/16", DryRun=True)
    expect_error("InvalidVpc.Range", 400, ec2.create_vpc, CidrBlock="10.30.0.0/8", DryRun=True)
    expect_error("DryRunOperation", 412, ec2.describe_vpcs, DryRun=True)
    assert ec2.describe_vpcs()["Vpcs"] == before


def test_state_survives_restart(workdir):
    srv = Server(workdir / "restart").start()
    try:
        ec2 = srv.client()
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]
        subnet = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.0.0/24")["Subnet"]
        keep = ec2.run_instances(ImageId="ami-1", MinCount=1, MaxCount=1, SubnetId=subnet["SubnetId"])["Instances"][0]
        gone = ec2.run_instances(ImageId="ami-1", MinCount=1, MaxCount=1, SubnetId=subnet["SubnetId"])["Instances"][0]
        ec2.terminate_instances(InstanceIds=[gone["InstanceId"]])
        hosts = sorted(h["HostId"] for h in ec2.describe_hosts()["Hosts"])
        srv.stop()
        srv.start()
        ec2 = srv.client()
        assert ec2.describe_vpcs(VpcIds=[vpc["VpcId"]])["Vpcs"][0]["CidrBlock"] == "10.0.0.0/16"
        (s,) = ec2.describe_subnets(SubnetIds=[subnet["SubnetId"]])["Subnets"]
        assert s["AvailableIpAddressCount"] == 250
        (i,) = instances(ec2.describe_instances(InstanceIds=[keep["InstanceId"]]))
        assert i["State"]["Name"] == "running"
        assert i["PrivateIpAddress"] == keep["PrivateIpAddress"]
        # Terminated instances stay (terminated, for about an hour, as on AWS); hosts keep their ids.
        (t,) = instances(ec2.describe_instances(InstanceIds=[gone["InstanceId"]]))
        assert t["State"]["Name"] == "terminated"
        assert sorted(h["HostId"] for h in ec2.describe_hosts()["Hosts"]) == hosts
        # VNIs continue (a second VPC still works after restart).
        ec2.create_vpc(CidrBlock="10.0.0.0/16")
    finally:
        srv.stop()
