"""RunInstances `SecurityGroups` (group names) as AWS resolves them, through boto3 and the AWS
CLI: names of the default VPC's groups (the instance gets the named groups, not `default`), an
unknown name `InvalidGroup.NotFound` naming the default VPC, and names with a subnet of another
VPC `InvalidParameterCombination`.

Runs its own server (module scope) with a default VPC."""

import json
import subprocess

import pytest

from conftest import Server, aws_env
from helpers import expect_error, instances


@pytest.fixture(scope="module")
def srv(workdir):
    s = Server(workdir / "group-names", default_vpc=True).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def c(srv):
    return srv.client()


def default_vpc(c):
    return c.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]


def test_group_names_resolve_in_the_default_vpc(c):
    vpc = default_vpc(c)
    web = c.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    db = c.create_security_group(GroupName="db", Description="db", VpcId=vpc)["GroupId"]
    (i,) = c.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1,
                           SecurityGroups=["web", "db"])["Instances"]
    shown = instances(c.describe_instances(InstanceIds=[i["InstanceId"]]))[0]
    assert sorted(g["GroupId"] for g in shown["SecurityGroups"]) == sorted([web, db])
    assert shown["VpcId"] == vpc
    err = expect_error("InvalidGroup.NotFound", 400, c.run_instances, ImageId="ami-12345678", MinCount=1,
                       MaxCount=1, SecurityGroups=["nosuchgroup"])
    assert err["Error"]["Message"] == f"The security group 'nosuchgroup' does not exist in default VPC '{vpc}'"
    # A subnet of another VPC and group names do not go together (AWS's code).
    other = c.create_vpc(CidrBlock="10.70.0.0/16")["Vpc"]["VpcId"]
    sub = c.create_subnet(VpcId=other, CidrBlock="10.70.1.0/24")["Subnet"]["SubnetId"]
    expect_error("InvalidParameterCombination", 400, c.run_instances, ImageId="ami-12345678", MinCount=1,
                 MaxCount=1, SubnetId=sub, SecurityGroups=["web"])
    c.terminate_instances(InstanceIds=[i["InstanceId"]])


def test_group_names_with_the_aws_cli(srv, c):
    env = aws_env(srv.credentials_file)

    def aws(*args):
        p = subprocess.run(["aws", "ec2", "--endpoint-url", srv.endpoint, "--output", "json", *args],
                           capture_output=True, text=True, env=env, timeout=60)
        return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None), p.stderr

    vpc = default_vpc(c)
    gid = c.create_security_group(GroupName="cli-app", Description="app", VpcId=vpc)["GroupId"]
    rc, out, err = aws("run-instances", "--image-id", "ami-12345678", "--count", "1",
                       "--security-groups", "cli-app")
    assert rc == 0, err
    assert [g["GroupId"] for g in out["Instances"][0]["SecurityGroups"]] == [gid]
    aws("terminate-instances", "--instance-ids", out["Instances"][0]["InstanceId"])
    rc, _, err = aws("run-instances", "--image-id", "ami-12345678", "--count", "1",
                     "--security-groups", "cli-missing")
    assert rc != 0 and "InvalidGroup.NotFound" in err and "cli-missing" in err, err
