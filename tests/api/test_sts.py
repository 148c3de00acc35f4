"""STS GetCallerIdentity on the EC2 endpoint (what Terraform and Ansible's amazon.aws ask first),
the server's region pinned in the signature's scope, and the x-amzn-RequestId header."""

import subprocess

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import REGION, aws_env


def sts_client(server, region=REGION):
    ak, sk = server.credentials()
    return boto3.client(
        "sts", endpoint_url=server.endpoint, region_name=region,
        aws_access_key_id=ak, aws_secret_access_key=sk,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def test_get_caller_identity_boto3(server):
    r = sts_client(server).get_caller_identity()
    assert r["Account"] == "123456789012"
    assert r["Arn"] == "arn:aws:iam::123456789012:root"
    assert r["UserId"] == "123456789012"
    # The request id travels in the body and in the header SDKs read.
    rid = r["ResponseMetadata"]["RequestId"]
    assert rid and r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"] == rid
    # The account matches what EC2 shows as the owner.
    vpcs = server.client().describe_security_groups()["SecurityGroups"]
    assert all(g["OwnerId"] == r["Account"] for g in vpcs)


def test_get_caller_identity_cli(server):
    p = subprocess.run(
        ["aws", "sts", "get-caller-identity", "--endpoint-url", server.endpoint, "--output", "json"],
        capture_output=True, text=True, env=aws_env(server.credentials_file), timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert '"Account": "123456789012"' in p.stdout


def test_sts_refuses_what_it_does_not_serve(server):
    with pytest.raises(ClientError) as e:
        sts_client(server).assume_role(RoleArn="arn:aws:iam::123456789012:role/x", RoleSessionName="session")
    err = e.value.response["Error"]
    assert err["Code"] == "InvalidAction"
    assert "Could not find operation AssumeRole" in err["Message"]


def test_wrong_region_signature_refused(server):
    """A request signed for another region is refused (EC2: AuthFailure 401; STS:
    SignatureDoesNotMatch 403), with AWS's wording; the same key in the server's region works."""
    ak, sk = server.credentials()
    other = boto3.client("ec2", endpoint_url=server.endpoint, region_name="eu-west-1",
                         aws_access_key_id=ak, aws_secret_access_key=sk,
                         config=Config(retries={"max_attempts": 1, "mode": "standard"}))
    with pytest.raises(ClientError) as e:
        other.describe_vpcs()
    err = e.value.response
    assert err["Error"]["Code"] == "AuthFailure"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 401
    assert err["Error"]["Message"] == "Credential should be scoped to a valid region, not 'eu-west-1'."
    with pytest.raises(ClientError) as e:
        sts_client(server, "us-west-2").get_caller_identity()
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "not 'us-west-2'" in e.value.response["Error"]["Message"]
    server.client().describe_vpcs()

    env = aws_env(server.credentials_file)
    env["AWS_DEFAULT_REGION"] = "ap-south-1"
    p = subprocess.run(["aws", "ec2", "describe-vpcs", "--endpoint-url", server.endpoint],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode != 0
    assert "AuthFailure" in p.stderr and "not 'ap-south-1'" in p.stderr, p.stderr


def test_every_answer_carries_x_amzn_request_id(server):
    status, body = server.post("Action=DescribeVpcs&Version=2016-11-15")
    assert status == 200
    r = server.client().describe_vpcs()
    h = r["ResponseMetadata"]["HTTPHeaders"]
    assert h["x-amzn-requestid"] == r["ResponseMetadata"]["RequestId"]
    with pytest.raises(ClientError) as e:
        server.client().describe_vpcs(VpcIds=["vpc-0000000000000000f"])
    meta = e.value.response["ResponseMetadata"]
    assert meta["HTTPHeaders"]["x-amzn-requestid"] == meta["RequestId"]
