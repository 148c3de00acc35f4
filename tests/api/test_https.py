"""The EC2 API over HTTPS: with a certificate from the server's own CA (`--https`; clients trust
`<data-dir>/ca/ca.crt`) or one the operator gives (`--tls-cert/--tls-key`, here from a CA made
with openssl). The AWS CLI with `--ca-bundle` and boto3 with `verify=` work; a wrong CA bundle
fails, and so does plain HTTP to the HTTPS port. Plain HTTP stays the default."""

import json
import subprocess

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import SSLError

from conftest import REGION, Server, aws_env


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _operator_ca(d):
    """A CA and a server certificate for 127.0.0.1/localhost made with openssl (not softvpc)."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "op-ca.key", "-out", "op-ca.crt", "-subj", "/CN=operator CA", "-days", "2",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "api.key", "-out", "api.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                               "extendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "api.csr", "-CA", "op-ca.crt", "-CAkey", "op-ca.key",
             "-CAcreateserial", "-out", "api.crt", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return d / "op-ca.crt", d / "api.crt", d / "api.key"


class HttpsServer(Server):
    def __init__(self, data_dir, extra_args):
        super().__init__(data_dir, extra_args=extra_args)
        self.endpoint = f"https://127.0.0.1:{self.port}"
        self.plain = f"http://127.0.0.1:{self.port}"

    def start(self):
        # The base class polls /healthz over plain HTTP; wait for the port instead.
        import socket
        import time
        args = [
            self.bin(), "server", "--data-dir", str(self.data_dir),
            "--listen", f"127.0.0.1:{self.port}",
            "--mapping-listen", f"127.0.0.1:{self.mapping_port}", "--no-default-vpc",
            *self.extra_args,
        ]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"softvpc server exited: {self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                time.sleep(0.1)
                continue
            # Listening, and (on a loaded machine, not always yet) its key pair written.
            if "aws_secret_access_key" in (self.credentials_file.read_text()
                                           if self.credentials_file.exists() else ""):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("softvpc server did not listen within 30 s")

    @staticmethod
    def bin():
        from conftest import BIN
        return BIN

    def boto(self, verify):
        ak, sk = self.credentials()
        return boto3.client("ec2", endpoint_url=self.endpoint, region_name=REGION, verify=verify,
                            aws_access_key_id=ak, aws_secret_access_key=sk,
                            config=Config(retries={"max_attempts": 1, "mode": "standard"}))

    def cli(self, *args, ca_bundle=None):
        extra = ["--ca-bundle", str(ca_bundle)] if ca_bundle else []
        p = subprocess.run(["aws", "ec2", "--endpoint-url", self.endpoint, "--output", "json",
                            *extra, *args],
                           capture_output=True, text=True, env=aws_env(self.credentials_file),
                           timeout=60)
        return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None), p.stderr


@pytest.fixture(scope="module")
def own_ca(workdir):
    srv = HttpsServer(workdir / "https-own", ["--https"]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def operator(workdir):
    ca, cert, key = _operator_ca(workdir / "operator-pki")
    srv = HttpsServer(workdir / "https-operator",
                      ["--tls-cert", str(cert), "--tls-key", str(key)]).start()
    srv.ca = ca
    yield srv
    srv.stop()


def test_https_with_the_servers_own_ca(own_ca, workdir):
    bundle = own_ca.data_dir / "ca" / "ca.crt"
    ec2 = own_ca.boto(verify=str(bundle))
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    rc, out, err = own_ca.cli("describe-vpcs", "--vpc-ids", vpc, ca_bundle=bundle)
    assert rc == 0, err
    assert out["Vpcs"][0]["VpcId"] == vpc

    # A bundle of another CA: refused by both clients.
    wrong, _, _ = _operator_ca(workdir / "wrong-pki")
    with pytest.raises(SSLError):
        own_ca.boto(verify=str(wrong)).describe_vpcs()
    rc, _, err = own_ca.cli("describe-vpcs", ca_bundle=wrong)
    assert rc != 0 and "SSL" in err, err
    # No bundle: the system roots do not know softvpc's CA.
    with pytest.raises(SSLError):
        own_ca.boto(verify=True).describe_vpcs()
    # Plain HTTP to the HTTPS port gets nothing.
    p = subprocess.run(["curl", "-sS", "--max-time", "5", own_ca.plain + "/healthz"],
                       capture_output=True, text=True)
    assert p.returncode != 0 or "ok" not in p.stdout, p
    assert "connection refused" in own_ca.log_path.read_text()


def test_https_with_the_operators_certificate(operator, workdir):
    ec2 = operator.boto(verify=str(operator.ca))
    assert ec2.describe_vpcs()["Vpcs"] == []
    rc, out, err = operator.cli("describe-vpcs", ca_bundle=operator.ca)
    assert rc == 0, err
    assert out["Vpcs"] == []
    # The softvpc CA is not the one that signed this certificate.
    softvpc_ca = operator.data_dir / "ca" / "ca.crt"
    with pytest.raises(SSLError):
        operator.boto(verify=str(softvpc_ca)).describe_vpcs()
    rc, _, err = operator.cli("describe-vpcs", ca_bundle=softvpc_ca)
    assert rc != 0, err
    p = subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", str(operator.ca),
                        operator.endpoint + "/healthz"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p


def test_tls_cert_needs_its_key(workdir):
    from conftest import BIN
    p = subprocess.run([BIN, "server", "--data-dir", str(workdir / "nokey"),
                        "--tls-cert", "/nonexistent.crt"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0
    assert "--tls-key" in p.stderr, p.stderr
