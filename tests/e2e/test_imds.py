"""The instance metadata service at 169.254.169.254 (issue 11), served by each instance's host
router, asked with curl and with botocore's own `InstanceMetadataFetcher` inside instances:
IMDSv1 and IMDSv2 (token PUT, TTL header, AWS's 400/401/403/404/405), the metadata paths and
listings, an instance with the same address on the same host in another VPC seeing only its own
data, `ModifyInstanceMetadataOptions` (HttpTokens required, HttpEndpoint disabled,
InstanceMetadataTags) taking effect, and the token's PUT response leaving with the IP TTL of the
hop limit (checked on the wire with tcpdump); an instance launched with RunInstances'
`MetadataOptions`, user data, a key pair and a public IP: its user data byte for byte (and the
new one after ModifyInstanceAttribute while stopped), `public-keys/`, `public-ipv4`, AWS's
content types, and no other instance on the host seeing any of it."""

import base64
import json
import sys

from e2e_harness import PREFIX, WORK_DIR, metric_sum, netns_exists, wait_until

IMDS = "http://169.254.169.254"
VM = "zigi-vm1"        # 10.0.0.148 in zigi-vpc1 on host-1
TWIN = "other-vm1"     # 10.0.0.148 in zigi-vpc2 on host-1: same address, same host, other VPC


def curl(lab, vm, path, *args):
    """(status, body) of one request from inside `vm`."""
    proc = lab.exec(vm, "curl", "-s", "--max-time", "5", "-w", "\n%{http_code}", *args,
                    IMDS + path, timeout=20)
    body, _, code = proc.stdout.rpartition("\n")
    return int(code or 0), body


def token(lab, vm, ttl=60):
    status, body = curl(lab, vm, "/latest/api/token", "-X", "PUT",
                        "-H", f"X-aws-ec2-metadata-token-ttl-seconds: {ttl}")
    assert status == 200 and body, (status, body)
    return body


def get(lab, vm, path, tok=None):
    args = ("-H", f"X-aws-ec2-metadata-token: {tok}") if tok else ()
    return curl(lab, vm, path, *args)


def options(lab, vm, **kw):
    iid = lab.instance(vm)["instance_id"]
    args = ["modify-instance-metadata-options", "--instance-id", iid]
    for k, v in kw.items():
        args += ["--" + k.replace("_", "-"), str(v)]
    return lab.aws(*args)


def described_options(lab, vm):
    iid = lab.instance(vm)["instance_id"]
    r = lab.aws("describe-instances", "--instance-ids", iid)
    return r["Reservations"][0]["Instances"][0]["MetadataOptions"]


def test_imdsv1_and_v2_serve_the_instances_own_data(lab):
    inst = lab.instance(VM)
    iid = inst["instance_id"]
    desc = lab.aws("describe-instances", "--instance-ids", iid)["Reservations"][0]["Instances"][0]
    eni = desc["NetworkInterfaces"][0]
    mac = eni["MacAddress"]
    assert get(lab, VM, "/latest/meta-data/instance-id") == (200, iid)
    tok = token(lab, VM)
    expected = {
        "instance-id": iid,
        "local-ipv4": "10.0.0.148",
        "local-hostname": "ip-10-0-0-148.ec2.internal",
        "mac": mac,
        "instance-type": desc["InstanceType"],
        "ami-id": desc["ImageId"],
        "placement/availability-zone": desc["Placement"]["AvailabilityZone"],
        "placement/region": "us-east-1",
        f"network/interfaces/macs/{mac}/device-number": "0",
        f"network/interfaces/macs/{mac}/interface-id": eni["NetworkInterfaceId"],
        f"network/interfaces/macs/{mac}/subnet-id": desc["SubnetId"],
        f"network/interfaces/macs/{mac}/vpc-id": desc["VpcId"],
        f"network/interfaces/macs/{mac}/local-ipv4s": "10.0.0.148",
        f"network/interfaces/macs/{mac}/subnet-ipv4-cidr-block": "10.0.0.0/24",
        f"network/interfaces/macs/{mac}/vpc-ipv4-cidr-block": "10.0.0.0/16",
        f"network/interfaces/macs/{mac}/vpc-ipv4-cidr-blocks": "10.0.0.0/16",
        f"network/interfaces/macs/{mac}/security-group-ids":
            "\n".join(g["GroupId"] for g in eni["Groups"]),
    }
    for path, want in expected.items():
        assert get(lab, VM, "/latest/meta-data/" + path, tok) == (200, want), path
        assert get(lab, VM, "/latest/meta-data/" + path) == (200, want), path
    # Listings: one item per line, directories with a trailing '/', no trailing newline.
    status, listing = get(lab, VM, "/latest/meta-data/", tok)
    items = listing.split("\n")
    assert status == 200 and items == sorted(items), listing
    for item in ("instance-id", "local-ipv4", "mac", "network/", "placement/", "services/"):
        assert item in items, listing
    assert "tags/" not in items, listing     # InstanceMetadataTags is off by default
    assert get(lab, VM, "/latest/meta-data/network/interfaces/macs/", tok) == (200, mac + "/")
    assert get(lab, VM, "/latest/dynamic/", tok) == (200, "instance-identity/")
    status, doc = get(lab, VM, "/latest/dynamic/instance-identity/document", tok)
    assert status == 200 and doc.startswith('{\n  "accountId" : "'), doc
    parsed = json.loads(doc)
    assert (parsed["instanceId"], parsed["privateIp"], parsed["region"]) == \
        (iid, "10.0.0.148", "us-east-1")
    assert parsed["availabilityZone"] == desc["Placement"]["AvailabilityZone"]
    # A dated version as cloud-init asks.
    assert get(lab, VM, "/2009-04-04/meta-data/instance-id") == (200, iid)


def test_awss_status_codes(lab):
    assert get(lab, VM, "/latest/meta-data/no-such-item")[0] == 404
    assert get(lab, VM, "/latest/meta-data/instance-id", "not-a-token")[0] == 401
    # A PUT without the TTL header, or with one out of 1..21600: 400.
    assert curl(lab, VM, "/latest/api/token", "-X", "PUT")[0] == 400
    for ttl in ("0", "21601", "abc"):
        assert curl(lab, VM, "/latest/api/token", "-X", "PUT",
                    "-H", f"X-aws-ec2-metadata-token-ttl-seconds: {ttl}")[0] == 400, ttl
    # Proxied token requests and dated token paths: 403; GET of the token path: 405.
    assert curl(lab, VM, "/latest/api/token", "-X", "PUT", "-H", "X-Forwarded-For: 1.2.3.4",
                "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60")[0] == 403
    assert curl(lab, VM, "/2021-03-23/api/token", "-X", "PUT",
                "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60")[0] == 403
    assert curl(lab, VM, "/latest/api/token")[0] == 405
    # The PUT answer echoes the TTL.
    proc = lab.exec(VM, "curl", "-s", "-i", "--max-time", "5", "-X", "PUT",
                    "-H", "X-aws-ec2-metadata-token-ttl-seconds: 21600", IMDS + "/latest/api/token",
                    timeout=20)
    assert "X-Aws-Ec2-Metadata-Token-Ttl-Seconds: 21600" in proc.stdout, proc.stdout
    series = lab.metrics("host-1")
    for code in ("200", "400", "401", "403", "404", "405"):
        assert metric_sum(series, "softvpc_imds_responses_total", status=code) > 0, code


def test_an_instance_with_the_same_address_on_the_same_host_sees_only_its_own(lab):
    mine, twin = lab.instance(VM)["instance_id"], lab.instance(TWIN)["instance_id"]
    assert mine != twin
    assert get(lab, TWIN, "/latest/meta-data/instance-id") == (200, twin)
    assert get(lab, TWIN, "/latest/meta-data/local-ipv4") == (200, "10.0.0.148")
    twin_vpc = lab.aws("describe-instances", "--instance-ids", twin)[
        "Reservations"][0]["Instances"][0]["VpcId"]
    status, mac = get(lab, TWIN, "/latest/meta-data/mac")
    assert get(lab, TWIN, f"/latest/meta-data/network/interfaces/macs/{mac}/vpc-id") == \
        (200, twin_vpc)
    # One instance's token is refused on the other.
    assert get(lab, TWIN, "/latest/meta-data/instance-id", token(lab, VM))[0] == 401
    assert get(lab, TWIN, "/latest/meta-data/instance-id", token(lab, TWIN)) == (200, twin)
    # Both at once, interleaved, on many connections: never the other's answer.
    for _ in range(5):
        assert get(lab, VM, "/latest/meta-data/instance-id") == (200, mine)
        assert get(lab, TWIN, "/latest/meta-data/instance-id") == (200, twin)


def test_http_tokens_required_refuses_imdsv1_and_options_show_in_describe(lab):
    assert described_options(lab, VM) == {
        "State": "applied", "HttpTokens": "optional", "HttpPutResponseHopLimit": 1,
        "HttpEndpoint": "enabled", "HttpProtocolIpv6": "disabled",
        "InstanceMetadataTags": "disabled"}
    r = options(lab, VM, http_tokens="required")
    assert r["InstanceMetadataOptions"]["HttpTokens"] == "required"
    assert r["InstanceMetadataOptions"]["State"] == "pending"
    try:
        wait_until(lambda: get(lab, VM, "/latest/meta-data/instance-id")[0] == 401, 15,
                   interval=0.3, what="IMDSv1 refused with HttpTokens=required")
        iid = lab.instance(VM)["instance_id"]
        assert get(lab, VM, "/latest/meta-data/instance-id", token(lab, VM)) == (200, iid)
        assert described_options(lab, VM)["HttpTokens"] == "required"
        # The other instance on the host is untouched.
        assert get(lab, TWIN, "/latest/meta-data/local-ipv4") == (200, "10.0.0.148")
    finally:
        options(lab, VM, http_tokens="optional")
    wait_until(lambda: get(lab, VM, "/latest/meta-data/instance-id")[0] == 200, 15,
               interval=0.3, what="IMDSv1 back with HttpTokens=optional")


def test_http_endpoint_disabled_answers_403(lab):
    options(lab, VM, http_endpoint="disabled")
    try:
        wait_until(lambda: get(lab, VM, "/latest/meta-data/instance-id")[0] == 403, 15,
                   interval=0.3, what="403 with HttpEndpoint=disabled")
        assert curl(lab, VM, "/latest/api/token", "-X", "PUT",
                    "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60")[0] == 403
        assert described_options(lab, VM)["HttpEndpoint"] == "disabled"
    finally:
        options(lab, VM, http_endpoint="enabled")
    wait_until(lambda: get(lab, VM, "/latest/meta-data/instance-id")[0] == 200, 15,
               interval=0.3, what="the endpoint back")


def test_tags_are_served_when_instance_metadata_tags_is_enabled(lab):
    assert get(lab, VM, "/latest/meta-data/tags/instance")[0] == 404
    options(lab, VM, instance_metadata_tags="enabled")
    try:
        wait_until(lambda: get(lab, VM, "/latest/meta-data/tags/instance")[0] == 200, 15,
                   interval=0.3, what="tags in the metadata")
        assert "Name" in get(lab, VM, "/latest/meta-data/tags/instance")[1].split("\n")
        assert get(lab, VM, "/latest/meta-data/tags/instance/Name") == (200, VM)
        assert "tags/" in get(lab, VM, "/latest/meta-data/")[1].split("\n")
    finally:
        options(lab, VM, instance_metadata_tags="disabled")
    wait_until(lambda: get(lab, VM, "/latest/meta-data/tags/instance")[0] == 404, 15,
               interval=0.3, what="tags gone from the metadata")


def put_response_ttls(lab, vm):
    """IP TTLs of the frames from 169.254.169.254 carrying the token PUT's answer, on the wire
    of `vm`'s eth0."""
    with lab.capture(vm) as caps:
        token(lab, vm)
    ttls = []
    for frame in caps[vm].frames:
        f = frame.raw
        ip = f[14:]
        if len(ip) < 40 or f[12:14] != b"\x08\x00" or ip[9] != 6:
            continue
        if ip[12:16] != bytes([169, 254, 169, 254]):
            continue
        tcp = ip[(ip[0] & 15) * 4:]
        payload = tcp[(tcp[12] >> 4) * 4:]
        if b"X-Aws-Ec2-Metadata-Token-Ttl-Seconds" in payload:
            ttls.append(ip[8])
    assert ttls, "no PUT answer captured"
    return ttls


def test_the_token_answer_leaves_with_the_hop_limit_as_ip_ttl(lab):
    assert set(put_response_ttls(lab, VM)) == {1}
    options(lab, VM, http_put_response_hop_limit=3)
    try:
        wait_until(lambda: described_options(lab, VM)["HttpPutResponseHopLimit"] == 3, 10,
                   what="hop limit 3 described")
        wait_until(lambda: set(put_response_ttls(lab, VM)) == {3}, 15, interval=0.5,
                   what="the PUT answer with TTL 3")
    finally:
        options(lab, VM, http_put_response_hop_limit=1)
    bad = lab.aws("modify-instance-metadata-options", "--instance-id",
                  lab.instance(VM)["instance_id"], "--http-put-response-hop-limit", "65",
                  check=False)
    assert bad.returncode != 0 and "InvalidParameterValue" in bad.stderr, bad.stderr


FETCHER = r"""
import json, sys
from botocore.utils import InstanceMetadataFetcher, InstanceMetadataRegionFetcher
f = InstanceMetadataFetcher(timeout=3, num_attempts=2)
token = f._fetch_metadata_token()
# botocore joins its base URL (ending in "/") with paths written without a leading "/".
iid = f._get_request("latest/meta-data/instance-id", None, token).text
region = InstanceMetadataRegionFetcher(timeout=3, num_attempts=2).retrieve_region()
creds = f.retrieve_iam_role_credentials()
print(json.dumps({"token": bool(token), "instance_id": iid, "region": region, "creds": creds}))
"""


def test_botocores_metadata_fetcher_inside_an_instance(lab):
    iid = lab.instance(VM)["instance_id"]
    proc = lab.exec(VM, "env", "AWS_EC2_METADATA_DISABLED=false", sys.executable, "-c", FETCHER,
                    timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # IMDSv2 token, the instance's id and region; no IAM role: no credentials (botocore's {}).
    assert out == {"token": True, "instance_id": iid, "region": "us-east-1", "creds": {}}, out
    # With tokens required, botocore still gets in (it uses IMDSv2).
    options(lab, VM, http_tokens="required")
    try:
        wait_until(lambda: get(lab, VM, "/latest/meta-data/instance-id")[0] == 401, 15,
                   interval=0.3, what="tokens required")
        proc = lab.exec(VM, "env", "AWS_EC2_METADATA_DISABLED=false", sys.executable, "-c",
                        FETCHER, timeout=60)
        assert json.loads(proc.stdout.strip().splitlines()[-1])["instance_id"] == iid, proc
    finally:
        options(lab, VM, http_tokens="optional")


def headers_and_body(lab, vm, path, *args):
    """(status, {lower-case header: value}, body bytes) of one request from inside `vm`, the
    body written to a file (it may be binary) in the lab's work directory."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    out, head = WORK_DIR / f"imds-{vm}.body", WORK_DIR / f"imds-{vm}.head"
    for f in (out, head):
        f.unlink(missing_ok=True)
    proc = lab.exec(vm, "curl", "-s", "--max-time", "5", "-o", str(out), "-D", str(head),
                    *args, IMDS + path, timeout=20)
    assert proc.returncode == 0, proc.stderr
    lines = head.read_bytes().decode().split("\r\n")
    status = int(lines[0].split()[1])
    fields = dict((k.strip().lower(), v.strip()) for k, _, v in
                  (line.partition(":") for line in lines[1:] if line))
    return status, fields, out.read_bytes()


def test_content_types_and_listings_are_awss(lab):
    tok = token(lab, VM)
    auth = ("-H", f"X-aws-ec2-metadata-token: {tok}")
    status, h, body = headers_and_body(lab, VM, "/latest/meta-data/instance-id", *auth)
    assert (status, h["content-type"], h["server"]) == (200, "text/plain", "EC2ws"), h
    assert int(h["content-length"]) == len(body) and not body.endswith(b"\n"), body
    status, h, body = headers_and_body(lab, VM, "/latest/meta-data/placement/", *auth)
    assert (status, h["content-type"]) == (200, "text/plain")
    assert body == b"availability-zone\navailability-zone-id\nregion", body
    # Without the trailing slash a directory lists the same.
    assert headers_and_body(lab, VM, "/latest/meta-data/placement", *auth)[2] == body
    status, h, body = headers_and_body(lab, VM, "/latest/meta-data/nothing-here", *auth)
    assert (status, h["content-type"]) == (404, "text/html"), h
    assert b"<title>404 - Not Found</title>" in body, body
    # No user data, no key: a 404 and not listed.
    assert headers_and_body(lab, VM, "/latest/user-data", *auth)[0] == 404
    assert headers_and_body(lab, VM, "/latest/", *auth)[2] == b"dynamic\nmeta-data"
    assert get(lab, VM, "/latest/meta-data/public-keys/", tok)[0] == 404
    # The versions, oldest first, `latest` last.
    status, _, body = headers_and_body(lab, VM, "/")
    versions = body.decode().split("\n")
    assert status == 200 and versions[0] == "1.0" and versions[-1] == "latest", versions
    assert "2009-04-04" in versions and "2021-03-23" in versions, versions


USER_DATA = b"#!/bin/sh\necho hello from softvpc\n\x00\xff\xfe binary tail\n"
NEW_USER_DATA = b"#cloud-config\nruncmd: [true]\n"


def test_an_instance_launched_with_options_user_data_and_a_key(lab):
    """RunInstances' MetadataOptions, UserData, KeyName and a public IP, seen inside the new
    instance; its user data replaced while stopped; nobody else on the host sees any of it."""
    subnet = lab.instance(VM)["subnet_id"]
    host1 = lab.host_id("host-1")
    key = f"{PREFIX}imds-key"
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    ud = WORK_DIR / "imds-user-data.bin"
    ud.write_bytes(USER_DATA)
    lab.aws("create-key-pair", "--key-name", key, "--key-type", "ed25519")
    iid = None
    try:
        out = lab.aws(
            "run-instances", "--image-id", "ami-1", "--count", "1",
            "--network-interfaces",
            f"DeviceIndex=0,SubnetId={subnet},PrivateIpAddress=10.0.0.79,"
            "AssociatePublicIpAddress=true",
            "--placement", f"HostId={host1}", "--key-name", key,
            "--user-data", f"fileb://{ud}",
            "--metadata-options",
            "HttpTokens=required,HttpPutResponseHopLimit=2,InstanceMetadataTags=enabled",
            "--tag-specifications",
            "ResourceType=instance,Tags=[{Key=Name,Value=svt-imds},{Key=Team,Value=blue}]")
        iid = out["Instances"][0]["InstanceId"]
        netns = f"{PREFIX}{iid}"
        wait_until(lambda: netns_exists(netns), 30, what=f"namespace {netns}")
        desc = lab.aws("describe-instances", "--instance-ids", iid)[
            "Reservations"][0]["Instances"][0]
        assert desc["MetadataOptions"]["HttpTokens"] == "required", desc["MetadataOptions"]
        public_ip = desc["PublicIpAddress"]
        mac = desc["NetworkInterfaces"][0]["MacAddress"]
        # Tokens required from the start: IMDSv1 refused, IMDSv2 served.
        wait_until(lambda: get(lab, iid, "/latest/meta-data/instance-id")[0] == 401, 30,
                   interval=0.3, what="the new instance's metadata (IMDSv1 refused)")
        tok = token(lab, iid)
        assert get(lab, iid, "/latest/meta-data/instance-id", tok) == (200, iid)
        assert get(lab, iid, "/latest/meta-data/local-ipv4", tok) == (200, "10.0.0.79")
        assert get(lab, iid, "/latest/meta-data/public-ipv4", tok) == (200, public_ip)
        macs = f"/latest/meta-data/network/interfaces/macs/{mac}/"
        assert get(lab, iid, macs + "public-ipv4s", tok) == (200, public_ip)
        assert get(lab, iid, macs + f"ipv4-associations/{public_ip}", tok) == (200, "10.0.0.79")
        assert get(lab, iid, "/latest/meta-data/tags/instance", tok) == (200, "Name\nTeam")
        assert get(lab, iid, "/latest/meta-data/tags/instance/Team", tok) == (200, "blue")
        # The key pair, as AWS lists it.
        assert get(lab, iid, "/latest/meta-data/public-keys/", tok) == (200, f"0={key}")
        assert get(lab, iid, "/latest/meta-data/public-keys/0/", tok) == (200, "openssh-key")
        described_key = lab.aws("describe-key-pairs", "--key-names", key,
                                "--include-public-key")["KeyPairs"][0]["PublicKey"]
        status, line = get(lab, iid, "/latest/meta-data/public-keys/0/openssh-key", tok)
        assert status == 200 and line.split()[:2] == described_key.split()[:2], \
            (line, described_key)
        # The user data, byte for byte, as binary.
        auth = ("-H", f"X-aws-ec2-metadata-token: {tok}")
        status, h, body = headers_and_body(lab, iid, "/latest/user-data", *auth)
        assert (status, h["content-type"], body) == (200, "application/octet-stream", USER_DATA)
        assert headers_and_body(lab, iid, "/latest/", *auth)[2] == \
            b"dynamic\nmeta-data\nuser-data"
        # Nobody else on host-1 sees it: each sees only its own.
        for other in (VM, "zigi-vm4", TWIN):
            oid = lab.instance(other)["instance_id"]
            assert get(lab, other, "/latest/meta-data/instance-id") == (200, oid), other
            assert get(lab, other, "/latest/user-data")[0] == 404, other
            assert get(lab, other, "/latest/meta-data/public-keys/")[0] == 404, other
            assert get(lab, other, "/latest/meta-data/tags/instance")[0] == 404, other
        # New user data while stopped (ModifyInstanceAttribute), served after the start.
        lab.aws("stop-instances", "--instance-ids", iid)
        wait_until(lambda: not netns_exists(netns), 30, what=f"{netns} gone while stopped")
        lab.aws("modify-instance-attribute", "--instance-id", iid, "--attribute", "userData",
                "--value", base64.b64encode(NEW_USER_DATA).decode())
        lab.aws("start-instances", "--instance-ids", iid)
        wait_until(lambda: netns_exists(netns), 30, what=f"{netns} back after the start")
        wait_until(lambda: get(lab, iid, "/latest/meta-data/instance-id")[0] == 401, 30,
                   interval=0.3, what="the metadata after the start (IMDSv1 still refused)")
        status, h, body = headers_and_body(lab, iid, "/latest/user-data",
                                           "-H", f"X-aws-ec2-metadata-token: {token(lab, iid)}")
        assert (status, body) == (200, NEW_USER_DATA), (status, body)
    finally:
        if iid:
            lab.aws("terminate-instances", "--instance-ids", iid, check=False)
        lab.aws("delete-key-pair", "--key-name", key, check=False)
    wait_until(lambda: not netns_exists(f"{PREFIX}{iid}"), 30, what="the instance gone")
