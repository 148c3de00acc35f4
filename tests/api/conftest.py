"""Fixtures for the EC2 API tests: a real `softvpc server` on loopback (no root needed), a boto3
client and an AWS CLI runner pointed at it, both using the key pair the server generated in
`<data-dir>/credentials` on first start (every API request is SigV4-verified).

SOFTVPC_BIN names the softvpc binary (default: target/release/softvpc in the checkout).
SOFTVPC_TEST_STORE=etcd runs every server on the etcd store instead of redb: one local etcd
(the Debian `etcd-server` package) is started for the session, on free loopback ports, and each
server data directory gets its own key prefix (a restart on the same directory finds its state).
"""

import atexit
import configparser
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ports import free_port  # noqa: E402  (tests/ports.py, shared with tests/e2e)

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTVPC_BIN", str(ROOT / "target" / "release" / "softvpc"))
HOSTS = {"host-1": "198.18.0.11", "host-2": "198.18.0.12"}
REGION = "us-east-1"


def read_credentials(path):
    """(access key id, secret) of profile `default` in a shared-credentials file."""
    cp = configparser.ConfigParser()
    cp.read(path)
    return cp["default"]["aws_access_key_id"], cp["default"]["aws_secret_access_key"]


def aws_env(credentials_file):
    """Environment for the AWS CLI: the server's credentials file, nothing else."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(credentials_file), AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE="/dev/null")
    return env


STORE = os.environ.get("SOFTVPC_TEST_STORE", "redb")
assert STORE in ("redb", "etcd"), f"SOFTVPC_TEST_STORE must be redb or etcd, not {STORE!r}"

# Flags every etcd the tests start needs: transactions as large as softvpc's commits, and a
# bounded history.
ETCD_FLAGS = ["--max-txn-ops", "10000", "--max-request-bytes", "16777216",
              "--auto-compaction-mode", "revision", "--auto-compaction-retention", "10000"]


class Etcd:
    """One local etcd member (a single-member cluster) in its own data directory."""

    def __init__(self, data_dir):
        self.data_dir = Path(data_dir)
        self.client_port = free_port()
        self.peer_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.client_port}"
        self.proc = None

    name = "t"

    def start(self):
        return self.start_member(f"t=http://127.0.0.1:{self.peer_port}")

    def start_member(self, initial_cluster, wait=True):
        """Starts this member of the cluster `initial_cluster` (NAME=PEER_URL,...); a restart
        on the same data directory rejoins it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = ["etcd", "--name", self.name, "--data-dir", str(self.data_dir / "data"),
                "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", initial_cluster, "--initial-cluster-token", "softvpc-test",
                *ETCD_FLAGS]
        self.log = open(self.data_dir / "etcd.log", "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        return self.wait_healthy() if wait else self

    def wait_healthy(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("etcd exited: " + (self.data_dir / "etcd.log").read_text()[-2000:])
            try:
                with urllib.request.urlopen(self.endpoint + "/health", timeout=1) as r:
                    if b"true" in r.read():
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("etcd did not become healthy within 30 s")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


class EtcdCluster:
    """A cluster of `n` etcd members on loopback, each in its own data directory."""

    def __init__(self, data_dir, n=3):
        self.data_dir = Path(data_dir)
        self.members = [Etcd(self.data_dir / f"m{i}") for i in range(n)]
        for i, m in enumerate(self.members):
            m.name = f"m{i}"
        self.initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)

    @property
    def endpoints(self):
        return ",".join(m.endpoint for m in self.members)

    def start(self):
        for m in self.members:
            m.start_member(self.initial, wait=False)
        for m in self.members:
            m.wait_healthy()
        return self

    def stop(self):
        for m in self.members:
            m.stop()


_session_etcd = None


def session_etcd():
    """The etcd the servers of this test session share (started on first use, stopped at exit)."""
    global _session_etcd
    if _session_etcd is None:
        _session_etcd = Etcd(tempfile.mkdtemp(prefix="softvpc-api-etcd-")).start()

        def cleanup(e=_session_etcd):
            e.stop()
            shutil.rmtree(e.data_dir, ignore_errors=True)

        atexit.register(cleanup)
    return _session_etcd


def store_args(data_dir):
    """The server flags of the store under test for a server on `data_dir`."""
    if STORE != "etcd":
        return []
    prefix = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]
    return ["--store", "etcd", "--etcd-endpoints", session_etcd().endpoint,
            "--etcd-prefix", f"/softvpc-test/{prefix}/"]


class Server:
    """One `softvpc server` process with its own data directory and ports."""

    def __init__(self, data_dir, hosts=HOSTS, default_vpc=False, extra_args=()):
        self.data_dir = data_dir
        self.hosts = hosts
        # More `softvpc server` flags (e.g. `--flow-log-dir DIR`).
        self.extra_args = list(extra_args)
        # Tests start without the default VPC (so VPC counts and CIDRs are theirs) unless asked.
        self.default_vpc = default_vpc
        self.port = free_port()
        self.mapping_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.log_path = Path(data_dir).with_suffix(".log")

    def start(self):
        args = [
            BIN, "server",
            "--data-dir", str(self.data_dir),
            "--listen", f"127.0.0.1:{self.port}",
            "--mapping-listen", f"127.0.0.1:{self.mapping_port}",
        ]
        for name, ip in self.hosts.items():
            args += ["--register-host", f"{name}={ip}"]
        if not self.default_vpc:
            args.append("--no-default-vpc")
        args += store_args(self.data_dir)
        args += self.extra_args
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"softvpc server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.endpoint + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("softvpc server did not become healthy within 30 s")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    @property
    def credentials_file(self):
        return Path(self.data_dir) / "credentials"

    def credentials(self):
        """(access key id, secret) the server generated on first start."""
        return read_credentials(self.credentials_file)

    def client(self, access_key=None, secret=None):
        ak, sk = self.credentials()
        return boto3.client(
            "ec2",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access_key or ak,
            aws_secret_access_key=secret or sk,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )

    def post(self, body, method="POST", sign=True):
        """A raw request, SigV4-signed with the server's key (botocore's signer) unless
        `sign=False`; returns (HTTP status, body text)."""
        data = body.encode() if method == "POST" else None
        url = self.endpoint + "/" + ("" if method == "POST" else "?" + body)
        headers = {}
        if data is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
        if sign:
            areq = AWSRequest(method=method, url=url, data=data, headers=headers)
            SigV4Auth(Credentials(*self.credentials()), "ec2", REGION).add_auth(areq)
            headers = dict(areq.headers.items())
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


@pytest.fixture(scope="session")
def workdir():
    d = tempfile.mkdtemp(prefix="softvpc-api-test-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def server(workdir):
    srv = Server(workdir / "main").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def ec2(server):
    return server.client()


@pytest.fixture(scope="session")
def aws(server):
    """Runs `aws ec2 --endpoint-url ... ARGS --output json`; returns (exit code, parsed JSON or
    None, stderr)."""

    def run(*args):
        env = aws_env(server.credentials_file)
        p = subprocess.run(
            ["aws", "ec2", "--endpoint-url", server.endpoint, "--output", "json", *args],
            capture_output=True, text=True, env=env, timeout=60,
        )
        out = json.loads(p.stdout) if p.stdout.strip() else None
        return p.returncode, out, p.stderr

    return run


@pytest.fixture
def vpc(ec2):
    """A fresh 10.0.0.0/16 VPC (VPCs may overlap, so every test gets its own)."""
    return ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]


@pytest.fixture
def subnet(ec2, vpc):
    return ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.0.0/24")["Subnet"]
