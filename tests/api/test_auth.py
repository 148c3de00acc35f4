"""SigV4 authentication of the EC2 API: every request except /healthz must be signed with the key
pair the server generated in `<data-dir>/credentials`. Refusals are checked by AWS code and HTTP
status: unsigned, unknown key, wrong signature -> 401 AuthFailure; a clock more than 15 minutes
off -> 400 RequestExpired. Both forms are accepted: Authorization header and presigned query.

Expired and presigned requests are signed here by hand (a small independent SigV4 signer) so the
signing time can be chosen; the others use botocore's signer."""

import datetime
import hashlib
import hmac
import os
import stat
import urllib.error
import urllib.parse
import urllib.request

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import REGION
from helpers import expect_error

BODY = "Action=DescribeVpcs&Version=2016-11-15"


def _q(s):
    return urllib.parse.quote(s, safe="-_.~")


def _canonical_query(pairs):
    return "&".join(f"{k}={v}" for k, v in sorted((_q(k), _q(v)) for k, v in pairs))


def _key(secret, day):
    k = ("AWS4" + secret).encode()
    for part in (day, REGION, "ec2", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def hand_signed(server, when, secret=None, presign_expires=None, body=BODY):
    """Sends `body` signed at `when` (header form, POST) or presigned (GET with the parameters in
    the query, valid `presign_expires` seconds); returns (status, text)."""
    ak, sk = server.credentials()
    secret = secret or sk
    amz = when.strftime("%Y%m%dT%H%M%SZ")
    day = amz[:8]
    scope = f"{day}/{REGION}/ec2/aws4_request"
    host = server.endpoint.split("://", 1)[1]
    if presign_expires is None:
        headers = {"content-type": "application/x-www-form-urlencoded; charset=utf-8",
                   "host": host, "x-amz-date": amz}
        names = sorted(headers)
        creq = "\n".join(["POST", "/", "", "".join(f"{n}:{headers[n]}\n" for n in names),
                          ";".join(names), hashlib.sha256(body.encode()).hexdigest()])
    else:
        pairs = urllib.parse.parse_qsl(body) + [
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Credential", f"{ak}/{scope}"),
            ("X-Amz-Date", amz),
            ("X-Amz-Expires", str(presign_expires)),
            ("X-Amz-SignedHeaders", "host"),
        ]
        query = _canonical_query(pairs)
        creq = "\n".join(["GET", "/", query, f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(creq.encode()).hexdigest()])
    sig = hmac.new(_key(secret, day), sts.encode(), hashlib.sha256).hexdigest()
    if presign_expires is None:
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={sig}")
        req = urllib.request.Request(server.endpoint + "/", data=body.encode(), method="POST",
                                     headers={k: v for k, v in headers.items() if k != "host"})
    else:
        req = urllib.request.Request(f"{server.endpoint}/?{query}&X-Amz-Signature={sig}", method="GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def test_credentials_file_is_private_and_in_aws_format(server):
    mode = stat.S_IMODE(os.stat(server.credentials_file).st_mode)
    assert mode == 0o600
    ak, sk = server.credentials()
    assert ak.startswith("AKIA") and len(ak) == 20
    assert len(sk) == 40


def test_healthz_needs_no_signature(server):
    with urllib.request.urlopen(server.endpoint + "/healthz", timeout=5) as r:
        assert r.status == 200


def test_signed_requests_are_served(server, ec2):
    assert "Vpcs" in ec2.describe_vpcs()
    status, body = hand_signed(server, now())
    assert status == 200, body
    assert "<DescribeVpcsResponse" in body


def test_unsigned_request_is_refused(server):
    for method in ("POST", "GET"):
        status, body = server.post(BODY, method=method, sign=False)
        assert status == 401, body
        assert "<Code>AuthFailure</Code>" in body


def test_unknown_key_is_refused(server):
    bad = server.client(access_key="AKIAAAAAAAAAAAAAAAAA", secret="x" * 40)
    expect_error("AuthFailure", 401, bad.describe_vpcs)


def test_wrong_signature_is_refused(server):
    ak, _ = server.credentials()
    bad = server.client(access_key=ak, secret="y" * 40)
    expect_error("AuthFailure", 401, bad.describe_vpcs)
    status, body = hand_signed(server, now(), secret="z" * 40)
    assert status == 401 and "<Code>AuthFailure</Code>" in body, body


def test_tampered_body_is_refused(server):
    # Signed for one body, sent with another: the payload hash no longer matches.
    ak, sk = server.credentials()
    url = server.endpoint + "/"
    areq = AWSRequest(method="POST", url=url, data=BODY.encode(),
                      headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(ak, sk), "ec2", REGION).add_auth(areq)
    other = b"Action=CreateVpc&Version=2016-11-15&CidrBlock=10.99.0.0%2F16"
    req = urllib.request.Request(url, data=other, method="POST", headers=dict(areq.headers.items()))
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 401
    assert "<Code>AuthFailure</Code>" in info.value.read().decode()


@pytest.mark.parametrize("skew_minutes", [-20, 20])
def test_clock_skew_over_15_minutes_is_request_expired(server, skew_minutes):
    status, body = hand_signed(server, now() + datetime.timedelta(minutes=skew_minutes))
    assert status == 400, body
    assert "<Code>RequestExpired</Code>" in body
    # Within the 15 minutes allowed it is fine.
    status, body = hand_signed(server, now() + datetime.timedelta(minutes=skew_minutes // 4))
    assert status == 200, body


def test_presigned_requests(server):
    # botocore's presigner.
    ak, sk = server.credentials()
    areq = AWSRequest(method="GET", url=server.endpoint + "/?" + BODY)
    SigV4QueryAuth(Credentials(ak, sk), "ec2", REGION, expires=60).add_auth(areq)
    with urllib.request.urlopen(areq.url, timeout=10) as r:
        assert r.status == 200
        assert "<DescribeVpcsResponse" in r.read().decode()
    # Hand-presigned: valid, then expired (signed 10 minutes ago for 60 s), then a wrong secret.
    status, body = hand_signed(server, now(), presign_expires=300)
    assert status == 200, body
    status, body = hand_signed(server, now() - datetime.timedelta(minutes=10), presign_expires=60)
    assert status == 400 and "<Code>RequestExpired</Code>" in body, body
    status, body = hand_signed(server, now(), presign_expires=300, secret="w" * 40)
    assert status == 401 and "<Code>AuthFailure</Code>" in body, body
