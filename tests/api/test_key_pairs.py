"""Key pairs through boto3 and the AWS CLI: CreateKeyPair (rsa and ed25519, pem and ppk),
ImportKeyPair (OpenSSH, RFC 4716 and DER public keys), DescribeKeyPairs (names, ids, filters,
IncludePublicKey, tags), DeleteKeyPair, each refusal with AWS's code; the fingerprints checked
against what openssl and ssh-keygen compute from the key material itself, as AWS documents."""

import base64
import hashlib
import hmac
import os
import struct
import subprocess
import uuid

from helpers import expect_error, tags


def name(prefix="kp"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def run(*args, stdin=None):
    p = subprocess.run(args, input=stdin, capture_output=True, check=True)
    return p.stdout


def colon(digest):
    return ":".join(f"{b:02x}" for b in digest)


def ssh_string(b):
    return struct.pack(">I", len(b)) + b


def test_create_rsa_key_pair(ec2, tmp_path):
    n = name()
    expect_error("DryRunOperation", 412, ec2.create_key_pair, KeyName=n, DryRun=True)
    expect_error("InvalidKeyPair.NotFound", 400, ec2.describe_key_pairs, KeyNames=[n])
    k = ec2.create_key_pair(KeyName=n, TagSpecifications=[
        {"ResourceType": "key-pair", "Tags": [{"Key": "team", "Value": "ops"}]}])
    assert k["KeyName"] == n and k["KeyPairId"].startswith("key-")
    assert tags(k) == {"team": "ops"}
    pem = k["KeyMaterial"]
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    path = tmp_path / "k.pem"
    path.write_text(pem)
    path.chmod(0o600)
    # AWS: the SHA-1 of the private key's PKCS#8 DER.
    der = run("openssl", "pkcs8", "-topk8", "-nocrypt", "-inform", "PEM", "-outform", "DER", "-in", str(path))
    assert k["KeyFingerprint"] == colon(hashlib.sha1(der).digest())
    assert "2048 bit" in run("openssl", "rsa", "-in", str(path), "-noout", "-text").decode()
    # The public key DescribeKeyPairs shows is the private key's (ssh-keygen derives it).
    public = run("ssh-keygen", "-y", "-f", str(path)).decode().split()[:2]
    d = ec2.describe_key_pairs(KeyNames=[n], IncludePublicKey=True)["KeyPairs"][0]
    assert d["PublicKey"].split() == public + [n]
    assert d["KeyType"] == "rsa" and d["KeyFingerprint"] == k["KeyFingerprint"]
    assert d["KeyPairId"] == k["KeyPairId"] and tags(d) == {"team": "ops"}
    assert d["CreateTime"].year >= 2024
    assert "PublicKey" not in ec2.describe_key_pairs(KeyNames=[n])["KeyPairs"][0]
    # The name is taken; the material is given once and never again.
    expect_error("InvalidKeyPair.Duplicate", 400, ec2.create_key_pair, KeyName=n)
    expect_error("InvalidKeyPair.Duplicate", 400, ec2.create_key_pair, KeyName=n, KeyType="ed25519")
    assert "KeyMaterial" not in d
    ec2.delete_key_pair(KeyName=n)
    expect_error("InvalidKeyPair.NotFound", 400, ec2.describe_key_pairs, KeyNames=[n])


def test_create_ed25519_key_pair(ec2, tmp_path):
    n = name()
    k = ec2.create_key_pair(KeyName=n, KeyType="ed25519")
    assert "Tags" not in k
    pem = k["KeyMaterial"]
    assert pem.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    path = tmp_path / "k"
    path.write_text(pem)
    path.chmod(0o600)
    # AWS: base64 SHA-256, which is what ssh-keygen -l prints (without the padding).
    out = run("ssh-keygen", "-l", "-E", "sha256", "-f", str(path)).decode().split()
    assert out[0] == "256" and out[1] == "SHA256:" + k["KeyFingerprint"].rstrip("=")
    assert out[-1] == "(ED25519)"
    public = run("ssh-keygen", "-y", "-f", str(path)).decode().split()[:2]
    d = ec2.describe_key_pairs(KeyPairIds=[k["KeyPairId"]], IncludePublicKey=True)["KeyPairs"][0]
    assert d["KeyType"] == "ed25519" and d["PublicKey"].split()[:2] == public
    ec2.delete_key_pair(KeyPairId=k["KeyPairId"])
    assert ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [n]}])["KeyPairs"] == []


def test_ppk_format(ec2):
    for key_type, alg in (("rsa", "ssh-rsa"), ("ed25519", "ssh-ed25519")):
        n = name("ppk")
        k = ec2.create_key_pair(KeyName=n, KeyType=key_type, KeyFormat="ppk")
        lines = k["KeyMaterial"].splitlines()
        assert lines[:3] == [f"PuTTY-User-Key-File-2: {alg}", "Encryption: none", f"Comment: {n}"]
        npub = int(lines[3].split(": ")[1])
        public = base64.b64decode("".join(lines[4:4 + npub]))
        npriv = int(lines[4 + npub].split(": ")[1])
        private = base64.b64decode("".join(lines[5 + npub:5 + npub + npriv]))
        mac = lines[5 + npub + npriv].split(": ")[1]
        # PuTTY's version 2 MAC of an unencrypted file, recomputed here.
        data = b"".join(ssh_string(x) for x in (alg.encode(), b"none", n.encode(), public, private))
        key = hashlib.sha1(b"putty-private-key-file-mac-key").digest()
        assert hmac.new(key, data, hashlib.sha1).hexdigest() == mac
        d = ec2.describe_key_pairs(KeyNames=[n], IncludePublicKey=True)["KeyPairs"][0]
        assert base64.b64decode(d["PublicKey"].split()[1]) == public
        ec2.delete_key_pair(KeyName=n)


def test_import_key_pairs(ec2, tmp_path):
    # RSA 3072 (ssh-keygen's default size), in OpenSSH, RFC 4716 and DER forms.
    priv = tmp_path / "rsa"
    run("ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-C", "me@example", "-f", str(priv))
    openssh = (tmp_path / "rsa.pub").read_bytes()
    spki_pem = run("ssh-keygen", "-e", "-m", "PKCS8", "-f", str(tmp_path / "rsa.pub"))
    spki_der = run("openssl", "pkey", "-pubin", "-outform", "DER", stdin=spki_pem)
    want = colon(hashlib.md5(spki_der).digest())
    rfc4716 = run("ssh-keygen", "-e", "-f", str(tmp_path / "rsa.pub"))
    assert rfc4716.startswith(b"---- BEGIN SSH2 PUBLIC KEY ----")
    for material in (openssh, rfc4716, spki_der):
        n = name("imp")
        k = ec2.import_key_pair(KeyName=n, PublicKeyMaterial=material, TagSpecifications=[
            {"ResourceType": "key-pair", "Tags": [{"Key": "src", "Value": "import"}]}])
        assert k["KeyFingerprint"] == want, material[:40]
        assert tags(k) == {"src": "import"} and "KeyMaterial" not in k
        d = ec2.describe_key_pairs(KeyNames=[n], IncludePublicKey=True)["KeyPairs"][0]
        assert d["KeyType"] == "rsa" and d["PublicKey"].split()[:2] == openssh.decode().split()[:2]
        expect_error("InvalidKeyPair.Duplicate", 400, ec2.import_key_pair, KeyName=n, PublicKeyMaterial=openssh)
        ec2.delete_key_pair(KeyName=n)
    # Ed25519: base64 SHA-256, as ssh-keygen prints it.
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "ed"))
    pub = (tmp_path / "ed.pub").read_bytes()
    fp = run("ssh-keygen", "-l", "-E", "sha256", "-f", str(tmp_path / "ed.pub")).decode().split()[1]
    n = name("imp")
    k = ec2.import_key_pair(KeyName=n, PublicKeyMaterial=pub)
    assert "SHA256:" + k["KeyFingerprint"].rstrip("=") == fp
    assert ec2.describe_key_pairs(KeyNames=[n])["KeyPairs"][0]["KeyType"] == "ed25519"
    ec2.delete_key_pair(KeyName=n)
    # What AWS cannot read or does not take.
    run("ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(tmp_path / "ec"))
    # An 8192-bit RSA public key (AWS takes at most 4096): only its size matters, so the modulus
    # is random (generating a real one takes minutes).
    n = int.from_bytes(os.urandom(1024), "big") | (1 << 8191) | 1
    blob = ssh_string(b"ssh-rsa") + ssh_string(b"\x01\x00\x01") + ssh_string(b"\x00" + n.to_bytes(1024, "big"))
    big = b"ssh-rsa " + base64.b64encode(blob)
    for bad in (b"not a key", b"ssh-rsa AAAAB3NzaC1yc2E", (tmp_path / "ec.pub").read_bytes(), big):
        expect_error("InvalidKeyPair.Format", 400, ec2.import_key_pair, KeyName=name(), PublicKeyMaterial=bad)
    expect_error("DryRunOperation", 412, ec2.import_key_pair, KeyName=name(), PublicKeyMaterial=pub, DryRun=True)


def test_describe_filters_tags_and_delete(ec2):
    a = ec2.create_key_pair(KeyName=name("flt"), KeyType="ed25519", TagSpecifications=[
        {"ResourceType": "key-pair", "Tags": [{"Key": "env", "Value": "prod"}]}])
    b = ec2.create_key_pair(KeyName=name("flt"), KeyType="ed25519")
    ids = [a["KeyPairId"], b["KeyPairId"]]

    def names(**kw):
        return sorted(k["KeyName"] for k in ec2.describe_key_pairs(**kw)["KeyPairs"])

    assert names(KeyPairIds=ids) == sorted([a["KeyName"], b["KeyName"]])
    assert names(KeyNames=[a["KeyName"], b["KeyName"]]) == sorted([a["KeyName"], b["KeyName"]])
    assert names(Filters=[{"Name": "key-pair-id", "Values": [b["KeyPairId"]]}]) == [b["KeyName"]]
    assert names(Filters=[{"Name": "fingerprint", "Values": [a["KeyFingerprint"]]}]) == [a["KeyName"]]
    assert names(Filters=[{"Name": "key-name", "Values": ["flt-*"]}, {"Name": "key-pair-id", "Values": ids}]) \
        == sorted([a["KeyName"], b["KeyName"]])
    assert names(Filters=[{"Name": "tag:env", "Values": ["prod"]}]) == [a["KeyName"]]
    assert names(KeyPairIds=ids, Filters=[{"Name": "tag-key", "Values": ["env"]}]) == [a["KeyName"]]
    expect_error("InvalidKeyPair.NotFound", 400, ec2.describe_key_pairs, KeyPairIds=["key-0123456789abcdef0"])
    expect_error("InvalidKeyPair.NotFound", 400, ec2.describe_key_pairs, KeyNames=[a["KeyName"], "no-such-key"])
    expect_error("InvalidParameterValue", 400, ec2.describe_key_pairs, Filters=[{"Name": "bogus", "Values": ["x"]}])
    expect_error("DryRunOperation", 412, ec2.describe_key_pairs, DryRun=True)
    # Tags through CreateTags/DeleteTags/DescribeTags.
    ec2.create_tags(Resources=[b["KeyPairId"]], Tags=[{"Key": "env", "Value": "dev"}])
    rows = ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": ["key-pair"]},
                                      {"Name": "resource-id", "Values": ids}])["Tags"]
    assert sorted((r["ResourceId"], r["Value"]) for r in rows) == sorted(zip(ids, ["prod", "dev"]))
    ec2.delete_tags(Resources=[a["KeyPairId"]], Tags=[{"Key": "env"}])
    assert names(KeyPairIds=ids, Filters=[{"Name": "tag:env", "Values": ["*"]}]) == [b["KeyName"]]
    # Delete: by name (an unknown name succeeds, as on AWS), by id (an unknown id does not).
    expect_error("DryRunOperation", 412, ec2.delete_key_pair, KeyName=a["KeyName"], DryRun=True)
    r = ec2.delete_key_pair(KeyName=a["KeyName"])
    assert r["Return"] is True and r["KeyPairId"] == a["KeyPairId"]
    assert ec2.delete_key_pair(KeyName=a["KeyName"])["Return"] is True
    expect_error("InvalidKeyPair.NotFound", 400, ec2.delete_key_pair, KeyPairId=a["KeyPairId"])
    expect_error("InvalidKeyPair.NotFound", 400, ec2.create_tags, Resources=[a["KeyPairId"]],
                 Tags=[{"Key": "x", "Value": "y"}])
    expect_error("MissingParameter", 400, ec2.delete_key_pair)
    ec2.delete_key_pair(KeyPairId=b["KeyPairId"])
    expect_error("InvalidKeyPair.NotFound", 400, ec2.describe_key_pairs, KeyPairIds=ids)


def test_bad_names(ec2):
    expect_error("InvalidParameterValue", 400, ec2.create_key_pair, KeyName="k" * 256)
    expect_error("InvalidParameterValue", 400, ec2.create_key_pair, KeyName="clé")
    expect_error("InvalidParameterValue", 400, ec2.create_key_pair, KeyName=name(), TagSpecifications=[
        {"ResourceType": "vpc", "Tags": [{"Key": "a", "Value": "b"}]}])


def test_key_pairs_with_the_aws_cli(aws, tmp_path):
    n = name("cli")
    rc, out, err = aws("create-key-pair", "--key-name", n, "--key-type", "ed25519")
    assert rc == 0, err
    (tmp_path / "k").write_text(out["KeyMaterial"])
    (tmp_path / "k").chmod(0o600)
    fp = run("ssh-keygen", "-l", "-E", "sha256", "-f", str(tmp_path / "k")).decode().split()[1]
    assert fp == "SHA256:" + out["KeyFingerprint"].rstrip("=")
    run("ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(tmp_path / "r"))
    m = name("cli")
    rc, out, err = aws("import-key-pair", "--key-name", m, "--public-key-material", f"fileb://{tmp_path / 'r.pub'}")
    assert rc == 0, err
    rc, out, err = aws("describe-key-pairs", "--key-names", n, m, "--include-public-key")
    assert rc == 0, err
    assert sorted((k["KeyName"], k["KeyType"]) for k in out["KeyPairs"]) == sorted([(n, "ed25519"), (m, "rsa")])
    assert all(k["PublicKey"].startswith("ssh-") for k in out["KeyPairs"])
    rc, out, err = aws("describe-key-pairs", "--key-names", "no-such-key-cli")
    assert rc != 0 and "InvalidKeyPair.NotFound" in err
    for k in (n, m):
        rc, out, err = aws("delete-key-pair", "--key-name", k)
        assert rc == 0 and out["Return"] is True, err
    rc, out, err = aws("describe-key-pairs", "--filters", f"Name=key-name,Values={n},{m}")
    assert rc == 0 and out["KeyPairs"] == [], err


def test_run_instances_key_name(ec2, subnet):
    """RunInstances `KeyName`: checked (`InvalidKeyPair.NotFound`), shown by DescribeInstances
    and its `key-name` filter, and kept by the instance after the key pair is deleted."""
    n = name("launch")
    ec2.create_key_pair(KeyName=n, KeyType="ed25519")
    err = expect_error("InvalidKeyPair.NotFound", 400, ec2.run_instances, ImageId="ami-12345678", MinCount=1,
                       MaxCount=1, SubnetId=subnet["SubnetId"], KeyName=n + "-missing")
    assert n + "-missing" in err["Error"]["Message"]
    (i,) = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, SubnetId=subnet["SubnetId"],
                             KeyName=n)["Instances"]
    assert i["KeyName"] == n

    def found():
        r = ec2.describe_instances(Filters=[{"Name": "key-name", "Values": [n]}])["Reservations"]
        return [(x["InstanceId"], x["KeyName"]) for res in r for x in res["Instances"]]

    assert found() == [(i["InstanceId"], n)]
    ec2.delete_key_pair(KeyName=n)
    assert found() == [(i["InstanceId"], n)], "the instance keeps its key name after the key pair goes"
    ec2.terminate_instances(InstanceIds=[i["InstanceId"]])
