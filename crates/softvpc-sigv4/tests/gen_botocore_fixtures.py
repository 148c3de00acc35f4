#!/usr/bin/env python3
"""Capture EC2 requests signed by botocore (the signer inside the AWS CLI and boto3) as fixtures.

The Rust test `botocore_fixtures.rs` verifies every captured request and checks that changing
the body, a signed header, the key or the date makes it fail. Nothing is sent anywhere: a
`before-send` hook records the fully signed request and answers it with a canned response.
The clock is frozen so the output is deterministic (except botocore's random invocation id,
which is signed like any other header).

Usage: python3 crates/softvpc-sigv4/tests/gen_botocore_fixtures.py [OUT_DIR]
(default OUT_DIR: tests/fixtures/ beside this script, the committed fixtures; the Rust test
`botocore_live` also runs it into a temporary directory to check the installed botocore.)
"""

import datetime
import json
import os
import sys
from unittest import mock
from urllib.parse import urlsplit

import botocore
import botocore.auth
import botocore.session
from botocore.awsrequest import AWSResponse

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
ENDPOINT = "http://127.0.0.1:8787"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLE//session+token/with=odd&chars"
FROZEN = datetime.datetime(2026, 11, 21, 23, 59, 30, tzinfo=datetime.timezone.utc)

EMPTY_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<DescribeVpcsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
    b"<requestId>r</requestId><vpcSet/></DescribeVpcsResponse>"
)


class _Raw:
    """Just enough of a urllib3 response for botocore's parser."""

    def __init__(self, body):
        self._body = body

    def stream(self, *_args, **_kwargs):
        yield self._body


def wire_headers(url, headers, body):
    """The headers as they go on the wire: Host first (http.client adds it from the URL,
    and botocore signs that value), then botocore's own, then Content-Length if absent."""
    out = [["Host", urlsplit(url).netloc]]
    for name, value in headers.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        out.append([name, value])
    if body and not any(n.lower() == "content-length" for n, _ in out):
        out.append(["Content-Length", str(len(body))])
    return out


def fixture(name, url, method, headers, body, session_token, presigned):
    parts = urlsplit(url)
    if isinstance(body, str):
        body = body.encode("utf-8")
    body = body or b""
    return {
        "name": name,
        "botocore_version": botocore.__version__,
        "now_unix": int(FROZEN.timestamp()),
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "session_token": session_token,
        "region": "us-east-1",
        "presigned": presigned,
        "method": method,
        "path": parts.path or "/",
        "query": parts.query,
        "headers": wire_headers(url, headers, body),
        "body": body.decode("utf-8"),
    }


def client(session_token=None):
    session = botocore.session.get_session()
    return session.create_client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=ENDPOINT,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        aws_session_token=session_token,
    )


def capture_header_form(name, operation, params, session_token=None):
    captured = {}

    def before_send(request, **_kwargs):
        captured["request"] = request
        return AWSResponse(request.url, 200, {}, _Raw(EMPTY_XML))

    c = client(session_token)
    c.meta.events.register("before-send.ec2", before_send)
    try:
        getattr(c, operation)(**params)
    except botocore.exceptions.BotoCoreError:
        pass
    except botocore.exceptions.ClientError:
        pass
    req = captured["request"]
    return fixture(name, req.url, req.method, req.headers, req.body, session_token, False)


def capture_presigned(name, operation, params, expires, session_token=None):
    c = client(session_token)
    url = c.generate_presigned_url(
        operation, Params=params, ExpiresIn=expires, HttpMethod="GET"
    )
    return fixture(name, url, "GET", {}, b"", session_token, True)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else OUT
    os.makedirs(out, exist_ok=True)
    cases = []
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=FROZEN):
        cases.append(capture_header_form("describe-vpcs", "describe_vpcs", {}))
        cases.append(
            capture_header_form(
                "describe-vpcs-filters",
                "describe_vpcs",
                {
                    "Filters": [
                        {"Name": "tag:Name", "Values": ["web tier", "a&b=c", "caf\u00e9*"]},
                        {"Name": "cidr-block", "Values": ["10.0.0.0/16"]},
                    ],
                    "MaxResults": 5,
                },
            )
        )
        cases.append(
            capture_header_form(
                "create-vpc-tags",
                "create_vpc",
                {
                    "CidrBlock": "10.1.0.0/16",
                    "TagSpecifications": [
                        {
                            "ResourceType": "vpc",
                            "Tags": [
                                {"Key": "Name", "Value": "prod  vpc / \u1234 + ~"},
                                {"Key": "empty", "Value": ""},
                            ],
                        }
                    ],
                },
            )
        )
        cases.append(
            capture_header_form(
                "describe-subnets-session-token",
                "describe_subnets",
                {"SubnetIds": ["subnet-0123456789abcdef0"]},
                session_token=SESSION_TOKEN,
            )
        )
        cases.append(
            capture_presigned(
                "presigned-describe-vpcs",
                "describe_vpcs",
                {"VpcIds": ["vpc-0123456789abcdef0"], "Filters": [{"Name": "tag:k", "Values": ["v w"]}]},
                300,
            )
        )
        cases.append(
            capture_presigned(
                "presigned-session-token",
                "describe_vpcs",
                {},
                3600,
                session_token=SESSION_TOKEN,
            )
        )
    for case in cases:
        path = os.path.join(out, case["name"] + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(case, f, indent=2, ensure_ascii=False)
            f.write("\n")
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
