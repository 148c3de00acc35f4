"""Availability zones as failure domains, through boto3 and the AWS CLI: hosts registered in
zones (DescribeHosts shows them), DescribeAvailabilityZones, subnets with AvailabilityZone and
AvailabilityZoneId (created by either), the default VPC's default subnet per zone (AWS's
172.31.0.0/20, 172.31.16.0/20, ... layout), and RunInstances placing only on hosts of the
subnet's zone (InsufficientInstanceCapacity otherwise), Placement.AvailabilityZone checked as
AWS checks it.

Runs its own server (module scope): hosts in us-east-1a and us-east-1b only."""

import json
import subprocess

import pytest

from conftest import Server, aws_env
from helpers import expect_error, instances

HOSTS = {"az-a1": "198.18.0.31@us-east-1a", "az-a2": "198.18.0.32", "az-b1": "198.18.0.33@use1-az2"}
ZONES = [("us-east-1a", "use1-az1"), ("us-east-1b", "use1-az2"), ("us-east-1c", "use1-az3"),
         ("us-east-1d", "use1-az4"), ("us-east-1e", "use1-az5"), ("us-east-1f", "use1-az6")]


@pytest.fixture(scope="module")
def srv(workdir):
    s = Server(workdir / "zones", hosts=HOSTS, default_vpc=True).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def c(srv):
    return srv.client()


def hosts_by_id(c):
    return {h["HostId"]: h for h in c.describe_hosts()["Hosts"]}


def test_hosts_and_zones(c):
    hosts = c.describe_hosts()["Hosts"]
    assert sorted(h["AvailabilityZone"] for h in hosts) == ["us-east-1a", "us-east-1a", "us-east-1b"]
    got = c.describe_hosts(Filter=[{"Name": "availability-zone", "Values": ["us-east-1b"]}])["Hosts"]
    assert len(got) == 1
    zones = c.describe_availability_zones()["AvailabilityZones"]
    assert [(z["ZoneName"], z["ZoneId"]) for z in zones] == ZONES
    assert all(z["State"] == "available" and z["RegionName"] == "us-east-1" for z in zones)


def test_default_vpc_has_a_default_subnet_per_zone(c):
    vpc = c.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    subnets = c.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]
    got = sorted((s["AvailabilityZone"], s["AvailabilityZoneId"], s["CidrBlock"], s["DefaultForAz"],
                  s["MapPublicIpOnLaunch"]) for s in subnets)
    want = [(z, zid, f"172.31.{16 * n}.0/20", True, True) for n, (z, zid) in enumerate(ZONES)]
    assert got == want
    got = c.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]},
                                      {"Name": "availability-zone-id", "Values": ["use1-az3"]}])["Subnets"]
    assert [s["CidrBlock"] for s in got] == ["172.31.32.0/20"]


def test_subnets_by_zone_name_or_id(c):
    vpc = c.create_vpc(CidrBlock="10.90.0.0/16")["Vpc"]["VpcId"]
    a = c.create_subnet(VpcId=vpc, CidrBlock="10.90.1.0/24", AvailabilityZone="us-east-1b")["Subnet"]
    b = c.create_subnet(VpcId=vpc, CidrBlock="10.90.2.0/24", AvailabilityZoneId="use1-az4")["Subnet"]
    assert (a["AvailabilityZone"], a["AvailabilityZoneId"]) == ("us-east-1b", "use1-az2")
    assert (b["AvailabilityZone"], b["AvailabilityZoneId"]) == ("us-east-1d", "use1-az4")
    expect_error("InvalidParameterValue", 400, c.create_subnet, VpcId=vpc, CidrBlock="10.90.3.0/24",
                 AvailabilityZone="us-west-1b")
    expect_error("InvalidParameterValue", 400, c.create_subnet, VpcId=vpc, CidrBlock="10.90.3.0/24",
                 AvailabilityZoneId="bogus-az9")


def test_instances_go_to_hosts_of_their_zone(c):
    hosts = hosts_by_id(c)
    vpc = c.create_vpc(CidrBlock="10.91.0.0/16")["Vpc"]["VpcId"]
    sub = {z: c.create_subnet(VpcId=vpc, CidrBlock=f"10.91.{n}.0/24", AvailabilityZone=z)["Subnet"]["SubnetId"]
           for n, z in enumerate(["us-east-1a", "us-east-1b", "us-east-1c"])}
    run = c.run_instances(ImageId="ami-12345678", SubnetId=sub["us-east-1b"], MinCount=3, MaxCount=3)
    for i in run["Instances"]:
        assert i["Placement"]["AvailabilityZone"] == "us-east-1b"
        assert hosts[i["Placement"]["HostId"]]["AvailabilityZone"] == "us-east-1b"
    run = c.run_instances(ImageId="ami-12345678", SubnetId=sub["us-east-1a"], MinCount=4, MaxCount=4)
    placed = {i["Placement"]["HostId"] for i in run["Instances"]}
    assert len(placed) == 2 and all(hosts[h]["AvailabilityZone"] == "us-east-1a" for h in placed)
    # No host in us-east-1c: AWS's capacity error, naming the zones that have capacity.
    err = expect_error("InsufficientInstanceCapacity", 500, c.run_instances, ImageId="ami-12345678",
                       SubnetId=sub["us-east-1c"], MinCount=1, MaxCount=1)
    assert "us-east-1c" in err["Error"]["Message"] and "us-east-1a" in err["Error"]["Message"]
    # Placement.AvailabilityZone must be the subnet's zone.
    expect_error("InvalidParameterValue", 400, c.run_instances, ImageId="ami-12345678", MinCount=1, MaxCount=1,
                 SubnetId=sub["us-east-1a"], Placement={"AvailabilityZone": "us-east-1b"})
    ok = c.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, SubnetId=sub["us-east-1a"],
                         Placement={"AvailabilityZone": "us-east-1a"})["Instances"][0]
    assert ok["Placement"]["AvailabilityZone"] == "us-east-1a"
    expect_error("InvalidParameterValue", 400, c.run_instances, ImageId="ami-12345678", MinCount=1, MaxCount=1,
                 Placement={"AvailabilityZone": "us-west-2a"})
    # A host of another zone named by HostId.
    b_host = next(h for h, v in hosts.items() if v["AvailabilityZone"] == "us-east-1b")
    expect_error("InvalidParameterValue", 400, c.run_instances, ImageId="ami-12345678", MinCount=1, MaxCount=1,
                 SubnetId=sub["us-east-1a"], Placement={"HostId": b_host})
    # Without a subnet: the zone's default subnet; without a zone either, one with hosts.
    i = c.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1,
                        Placement={"AvailabilityZone": "us-east-1b"})["Instances"][0]
    assert i["Placement"]["AvailabilityZone"] == "us-east-1b" and i["PrivateIpAddress"].startswith("172.31.")
    expect_error("InsufficientInstanceCapacity", 500, c.run_instances, ImageId="ami-12345678", MinCount=1,
                 MaxCount=1, Placement={"AvailabilityZone": "us-east-1f"})
    i = c.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]
    assert i["Placement"]["AvailabilityZone"] in ("us-east-1a", "us-east-1b")
    ids = [x["InstanceId"] for x in instances(c.describe_instances())]
    c.terminate_instances(InstanceIds=ids)


def test_zones_with_the_aws_cli(srv):
    # InsufficientInstanceCapacity is a server error (500), which the CLI would retry.
    env = dict(aws_env(srv.credentials_file), AWS_MAX_ATTEMPTS="1")

    def aws(*args):
        p = subprocess.run(["aws", "ec2", "--endpoint-url", srv.endpoint, "--output", "json", *args],
                           capture_output=True, text=True, env=env, timeout=60)
        return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None), p.stderr

    rc, out, err = aws("describe-availability-zones", "--zone-ids", "use1-az2")
    assert rc == 0 and [z["ZoneName"] for z in out["AvailabilityZones"]] == ["us-east-1b"], err
    rc, out, err = aws("run-instances", "--image-id", "ami-12345678", "--count", "1",
                       "--placement", "AvailabilityZone=us-east-1c")
    assert rc != 0 and "InsufficientInstanceCapacity" in err
    rc, out, err = aws("run-instances", "--image-id", "ami-12345678", "--count", "1",
                       "--placement", "AvailabilityZone=us-east-1b")
    assert rc == 0 and out["Instances"][0]["Placement"]["AvailabilityZone"] == "us-east-1b", err
    aws("terminate-instances", "--instance-ids", out["Instances"][0]["InstanceId"])
