"""The replicated control plane in a lab of its own (`softvpc lab up --ha`, issue 12): three
etcd members and three server replicas on the lab's underlay, two hosts whose agents are given
every replica. In order, on one lab:

1. Shared trust: a join token made on replica 2 enrolls a new host through replica 3 (its agent
   knows only replica 3); replica 2 accepts the host's certificate; the host is removed on
   replica 1, and then replica 3 ends its watch and refuses it, and replica 2 refuses its
   certificate too.
2. Agent failover: the replica host-1's agent watches (read from its log) is killed with
   SIGKILL; a security group rule added through another replica reaches host-1's data plane (a
   ping that the rule allows gets through); the agent moved to another replica and resumed its
   watch there (its resync counter did not move).
3. One etcd member (the cluster's leader) killed: pings keep flowing, every live replica keeps
   taking writes, and a rule change made afterwards still reaches the data plane.

The lab has its own prefix (`sva<pid>-`), state dir and API port, and is always taken down.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from e2e_harness import (SOFTVPC_BIN, HandHost, Lab, free_port, metric_sum, netns_exists,
                         netns_list, pid_alive, run, wait_until)

HA_PREFIX = f"sva{os.getpid()}-"
HA_PREFIX_RE = re.compile(r"^(sva(\d+)-)")
HA_STATE = Path(f"/tmp/{HA_PREFIX}ha-lab")
HA_WORK = Path(f"/tmp/sva-e2e-{os.getpid()}")

TOPOLOGY = """\
[[host]]
name = "host-1"

[[host]]
name = "host-2"

[[vpc]]
name = "ha-vpc"
cidr = "10.5.0.0/16"
[[vpc.subnet]]
cidr = "10.5.0.0/24"

# ha-vm1 admits nothing until a test adds a rule.
[[vpc.security_group]]
name = "locked"

[[vpc.security_group]]
name = "open"
ingress = [{ protocol = "icmp", cidr = "10.5.0.0/16" }]

[[instance]]
name = "ha-vm1"
vpc = "ha-vpc"
subnet = "10.5.0.0/24"
ip = "10.5.0.11"
host = "host-1"
security_groups = ["locked"]

[[instance]]
name = "ha-vm2"
vpc = "ha-vpc"
subnet = "10.5.0.0/24"
ip = "10.5.0.12"
host = "host-2"
security_groups = ["open"]
"""

VM1_IP = "10.5.0.11"
VM2_IP = "10.5.0.12"
MAPPING_PORT = 8788


class HaLab(Lab):
    """The e2e harness's Lab, on the HA lab's own prefix, state dir and port."""

    def __init__(self, topology_path):
        super().__init__(topology_path)
        self.env.update(SOFTVPC_LAB_PREFIX=HA_PREFIX, SOFTVPC_LAB_DIR=str(HA_STATE),
                        SOFTVPC_LAB_API_PORT=free_port())

    def netns(self, name):
        if name in ("fabric", "internet"):
            return f"{HA_PREFIX}{name}"
        return super().netns(name)

    def replicas(self):
        return self.status(refresh=True)["replicas"]

    def replica(self, name):
        return next(r for r in self.replicas() if r["name"] == name)

    def client(self, replica):
        """boto3 EC2 on one replica (botocore's retries off: each call goes to that replica)."""
        import boto3
        from botocore.config import Config
        ak, sk = self.credentials()
        return boto3.client("ec2", endpoint_url=replica["api_url"], region_name="us-east-1",
                            aws_access_key_id=ak, aws_secret_access_key=sk,
                            config=Config(retries={"total_max_attempts": 1},
                                          connect_timeout=5, read_timeout=30))

    def vm_netns(self, name):
        return self.instance(name)["netns"]

    def vm_ping(self, src, dst, count=1, wait=1, interval=0.2, timeout=None):
        """ping from instance `src`'s namespace (straight through `ip netns exec`, so it does
        not depend on any replica answering `lab exec`'s lookup)."""
        proc = run(["ip", "netns", "exec", self.vm_netns(src), "ping", "-n", "-c", str(count),
                    "-W", str(wait), "-i", str(interval), dst],
                   timeout=timeout or count * (interval + wait) + 15)
        return proc

    def agent_log(self, host):
        text = (HA_STATE / "logs" / f"agent-{host}.log").read_text(errors="replace")
        return re.sub(r"\x1b\[[0-9;]*m", "", text)  # tracing's colours

    def replica_log(self, name):
        return (HA_STATE / "logs" / f"{name}.log").read_text(errors="replace")


def _ping_ok(lab, src, dst):
    return lab.vm_ping(src, dst).returncode == 0


def _dead_ha_runs():
    prefixes = set()
    for ns in netns_list():
        m = HA_PREFIX_RE.match(ns)
        if m and m.group(1) != HA_PREFIX and not pid_alive(int(m.group(2))):
            prefixes.add(m.group(1))
    return prefixes


@pytest.fixture(scope="module")
def ha():
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests need root (network namespaces)")
    if not Path(SOFTVPC_BIN).exists():
        pytest.fail(f"softvpc binary not found at {SOFTVPC_BIN} (set SOFTVPC_BIN)")
    if shutil.which("etcd") is None:
        pytest.fail("etcd is not installed (Debian etcd-server; scripts/test-deps.sh installs it)")
    HA_WORK.mkdir(parents=True, exist_ok=True)
    topology = HA_WORK / "ha-lab.toml"
    topology.write_text(TOPOLOGY)
    lab = HaLab(topology)
    # HA labs of earlier runs that crashed: take them down.
    for prefix in _dead_ha_runs():
        env = dict(lab.env, SOFTVPC_LAB_PREFIX=prefix, SOFTVPC_LAB_DIR=f"/tmp/{prefix}ha-lab")
        run([SOFTVPC_BIN, "lab", "down"], timeout=120, env=env)
        shutil.rmtree(f"/tmp/{prefix}ha-lab", ignore_errors=True)
    status = None
    try:
        up = lab.cli("up", "--ha", str(topology), timeout=300)
        print(up.stdout)
        assert up.returncode == 0, f"softvpc lab up --ha failed:\n{up.stdout}\n{up.stderr}"
        status = lab.status(refresh=True)
        yield lab
    finally:
        if status is None:
            with contextlib.suppress(Exception):
                status = lab.status(refresh=True)
        down = lab.cli("down", timeout=120)
        left = [ns for ns in netns_list() if ns.startswith(HA_PREFIX)]
        for ns in left:
            run(["ip", "netns", "del", ns])
        pids = []
        if status:
            pids += [r["pid"] for r in status.get("replicas", []) if r.get("pid")]
            pids += [e["pid"] for e in status.get("etcd", []) if e.get("pid")]
            pids += [h["pid"] for h in status.get("hosts", []) if h.get("pid")]
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not any(pid_alive(p) for p in pids), 15, what="HA lab processes")
        alive = [p for p in pids if pid_alive(p)]
        for p in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        shutil.rmtree(HA_WORK, ignore_errors=True)
        assert down.returncode == 0, f"lab down: {down.stdout}\n{down.stderr}"
        assert not left, f"namespaces left after lab down: {left}"
        assert not alive, f"processes alive after lab down: {alive}"
        assert not HA_STATE.exists(), f"{HA_STATE} left after lab down"


def test_ha_lab_is_up_as_described(ha):
    """Three replicas and three etcd members run, each in its namespace on the fabric; every
    replica answers the API with the same state; the agents were given every replica."""
    st = ha.status(refresh=True)
    assert [r["name"] for r in st["replicas"]] == ["replica-1", "replica-2", "replica-3"]
    assert [e["name"] for e in st["etcd"]] == ["etcd-1", "etcd-2", "etcd-3"]
    assert all(r["running"] for r in st["replicas"]), st["replicas"]
    assert all(e["running"] for e in st["etcd"]), st["etcd"]
    for r in st["replicas"] + st["etcd"]:
        assert netns_exists(r["netns"]), r
    ids = [sorted(i["InstanceId"] for res in ha.client(r).describe_instances()["Reservations"]
                  for i in res["Instances"]) for r in st["replicas"]]
    assert len(ids[0]) == 2 and ids[0] == ids[1] == ids[2], ids
    for host in ("host-1", "host-2"):
        args = Path(f"/proc/{ha.host(host)['pid']}/cmdline").read_bytes().split(b"\0")
        servers = args[args.index(b"--server") + 1].decode()
        assert servers.split(",") == [r["mapping_url"] for r in st["replicas"]], servers
    # The etcd cluster has three started members (asked from the fabric, as replicas see it).
    out = run(["ip", "netns", "exec", ha.netns("fabric"), "etcdctl",
               "--endpoints", st["etcd"][0]["client_url"], "member", "list", "-w", "json"],
              check=True, env=dict(os.environ, ETCDCTL_API="3")).stdout
    assert len(json.loads(out)["members"]) == 3, out
    human = ha.cli("status", check=True).stdout
    assert "replica-3" in human and "etcd-3" in human, human
    assert _ping_ok(ha, "ha-vm1", VM2_IP)


# ---- shared trust

X3, X3_IP = "host-x3", "198.18.0.63"
RPC = "https://softvpc-server:8788/softvpc.mapping.v1.Mapping/"


def _register_body(name, ip):
    msg = b""
    for field, value in ((1, name), (2, ip)):
        data = value.encode()
        msg += bytes([field << 3 | 2, len(data)]) + data
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


def _register_with_cert(lab, netns, replica, cert, key, name, ip):
    """RegisterHost on `replica`'s mapping service with curl, from `netns`; its grpc-status."""
    body = HA_WORK / "register.bin"
    body.write_bytes(_register_body(name, ip))
    ca = Path(replica["data_dir"]) / "ca" / "ca.crt"
    mapping_ip = replica["mapping_url"].split("//")[1].split(":")[0]
    proc = lab.netns_exec(netns, "curl", "-sS", "--max-time", "10", "-D", "-", "-o", "/dev/null",
                          "--http2", "--cacert", str(ca),
                          "--resolve", f"softvpc-server:{MAPPING_PORT}:{mapping_ip}",
                          "--cert", str(cert), "--key", str(key),
                          "-H", "content-type: application/grpc", "-H", "te: trailers",
                          "--data-binary", f"@{body}", RPC + "RegisterHost", timeout=30)
    for line in proc.stdout.splitlines():
        if line.lower().startswith("grpc-status:"):
            return int(line.split(":", 1)[1].strip())
    return None


class _NewHost(HandHost):
    """A host added by hand to the lab's underlay whose agent knows only one replica."""

    def __init__(self, lab, replica_url):
        super().__init__(lab, X3, X3_IP, f"{HA_PREFIX}x3", f"{HA_PREFIX}x3"[:15],
                         HA_WORK / "x3-agent", HA_WORK / "x3-agent.log", HA_PREFIX)
        self.replica_url = replica_url

    def start(self, token):
        self.plug()
        self.start_agent(self.replica_url, token)
        return self


def _registered(client, name):
    return any(t["Value"] == name for h in client.describe_hosts()["Hosts"]
               for t in h.get("Tags", []) if t["Key"] == "Name")


def test_shared_trust_token_on_one_replica_revocation_on_another(ha):
    r1, r2, r3 = (ha.replica(f"replica-{i}") for i in (1, 2, 3))
    token = run([SOFTVPC_BIN, "server", "join-token", "--data-dir", r2["data_dir"],
                 "--host", X3, "--ttl", "5m"], check=True).stdout.strip()
    assert token.startswith("svpc1."), token
    x3 = _NewHost(ha, r3["mapping_url"])
    try:
        x3.start(token)
        # Enrolled through replica 3 with replica 2's token; every replica sees the host.
        wait_until(lambda: _registered(ha.client(r1), X3), 60,
                   what=f"{X3} to join through replica-3 with replica-2's token")
        assert _registered(ha.client(r2), X3)
        wait_until(lambda: "opening watch" in x3.agent_log(), 30, what="the new host's watch")
        cert, key = x3.state / "host.crt", x3.state / "host.key"
        assert cert.exists() and key.exists()
        # Its certificate is good on a replica it never talked to.
        assert _register_with_cert(ha, x3.ns, r2, cert, key, X3, X3_IP) == 0

        # Removed (its certificates revoked) on replica 1.
        removed = run([SOFTVPC_BIN, "server", "remove-host", "--data-dir", r1["data_dir"], X3],
                      check=True)
        assert "revoked" in removed.stdout, removed.stdout
        assert not _registered(ha.client(r3), X3)
        # Replica 3 ends its watch and refuses it from then on.
        wait_until(lambda: "watch ended: host revoked" in ha.replica_log("replica-3"), 30,
                   what="replica-3 to end the revoked host's watch")
        wait_until(lambda: "PermissionDenied" in x3.agent_log()
                   and "RegisterHost failed" in x3.agent_log(), 30,
                   what="the revoked host's agent to be refused by replica-3")
        # Replica 2 refuses the revoked certificate as well.
        wait_until(lambda: _register_with_cert(ha, x3.ns, r2, cert, key, X3, X3_IP)
                   not in (0, None), 30, what="replica-2 to refuse the revoked certificate")
        assert not _registered(ha.client(r2), X3)
    finally:
        x3.stop()


# ---- agent failover

def _watched_server(lab, host):
    """The mapping URL of the replica the host's agent opened its last watch on."""
    servers = re.findall(r"opening watch.*?server=(\S+)", lab.agent_log(host))
    assert servers, f"no 'opening watch' in {host}'s log"
    return servers[-1]


def _resyncs(lab, host):
    return metric_sum(lab.metrics(host), "softvpc_mapping_resyncs_total")


def _watching(lab, host):
    return metric_sum(lab.metrics(host), "softvpc_mapping_watching") == 1


def test_agent_fails_over_and_resumes_on_another_replica(ha):
    group = next(g for g in ha.client(ha.replica("replica-2")).describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["locked"]}])["SecurityGroups"])
    # ha-vm1's group admits nothing: ha-vm2 cannot ping it.
    assert not _ping_ok(ha, "ha-vm2", VM1_IP)

    watched = _watched_server(ha, "host-1")
    victim = next(r for r in ha.replicas() if r["mapping_url"] == watched)
    other = next(r for r in ha.replicas() if r["name"] != victim["name"] and r["running"])
    resyncs = _resyncs(ha, "host-1")
    log_at = len(ha.agent_log("host-1"))

    os.kill(victim["pid"], signal.SIGKILL)
    wait_until(lambda: not pid_alive(victim["pid"]), 10, what=f"{victim['name']} to die")

    # The change, through another replica, while host-1's agent has lost its replica.
    ha.client(other).authorize_security_group_ingress(
        GroupId=group["GroupId"],
        IpPermissions=[{"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1,
                        "IpRanges": [{"CidrIp": f"{VM2_IP}/32"}]}])
    wait_until(lambda: _ping_ok(ha, "ha-vm2", VM1_IP), 60,
               what="the rule added on another replica to reach host-1's data plane")

    after = ha.agent_log("host-1")[log_at:]
    assert "failing over to the next server replica" in after, after
    now = _watched_server(ha, "host-1")
    assert now != watched, f"host-1's agent still on {watched}"
    wait_until(lambda: _watching(ha, "host-1"), 30, what="host-1's agent to watch again")
    # Resumed from its revision on the new replica: no full resync.
    assert _resyncs(ha, "host-1") == resyncs, after
    assert "resync=true" not in after, after
    print(f"host-1's agent moved from {watched} to {now} and resumed its watch")


# ---- an etcd member down

def _etcd_leader(lab):
    """The etcd member that leads now (asked of every member from the fabric)."""
    st = lab.status(refresh=True)
    eps = ",".join(e["client_url"] for e in st["etcd"] if e["running"])
    out = run(["ip", "netns", "exec", lab.netns("fabric"), "etcdctl", "--endpoints", eps,
               "endpoint", "status", "-w", "json"], check=True, timeout=30,
              env=dict(os.environ, ETCDCTL_API="3")).stdout
    for ep in json.loads(out):
        status = ep["Status"]
        if status["header"]["member_id"] == status["leader"]:
            return next(e for e in st["etcd"] if e["client_url"] == ep["Endpoint"])
    raise AssertionError(f"no leader among {out}")


def test_api_and_data_plane_go_on_without_one_etcd_member(ha):
    live = [r for r in ha.replicas() if r["running"]]
    assert len(live) >= 2, live
    group = next(g for g in ha.client(live[0]).describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["locked"]}])["SecurityGroups"])
    vpc_id = ha.instance("ha-vm1")["vpc_id"]
    wait_until(lambda: _ping_ok(ha, "ha-vm2", VM1_IP), 30, what="the ping before")

    leader = _etcd_leader(ha)
    # A steady ping across hosts through the kill (5 s of it, every 0.1 s).
    ping = subprocess.Popen(["ip", "netns", "exec", ha.vm_netns("ha-vm1"), "ping", "-n", "-c",
                             "50", "-i", "0.1", "-W", "1", VM2_IP],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1)
        os.kill(leader["pid"], signal.SIGKILL)
        out, _ = ping.communicate(timeout=60)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait(timeout=5)
    received = int(re.search(r"(\d+) received", out).group(1))
    print(f"etcd leader {leader['name']} killed: {received}/50 pings answered across hosts")
    # The data plane does not depend on etcd at all; 2 of 50 allowed for a loaded machine.
    assert received >= 48, out

    # Every live replica takes writes (after etcd's new election, which the replicas ride out).
    for i, r in enumerate(live):
        def tagged(r=r, i=i):
            try:
                ha.client(r).create_tags(Resources=[vpc_id],
                                         Tags=[{"Key": f"member-down-{i}", "Value": r["name"]}])
                return True
            except Exception as e:  # ServiceUnavailable while etcd elects a leader
                print(f"{r['name']}: {e}")
                return False
        wait_until(tagged, 60, interval=0.5, what=f"{r['name']} to take a write")
    for r in live:
        tags = {t["Key"] for t in ha.client(r).describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["Tags"]}
        assert {f"member-down-{i}" for i in range(len(live))} <= tags, (r["name"], tags)

    # A change made now still reaches the data plane: revoke the ICMP rule, then restore it.
    perm = [{"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1,
             "IpRanges": [{"CidrIp": f"{VM2_IP}/32"}]}]
    ha.client(live[-1]).revoke_security_group_ingress(GroupId=group["GroupId"], IpPermissions=perm)
    wait_until(lambda: not _ping_ok(ha, "ha-vm2", VM1_IP), 60,
               what="the revoked rule to stop the ping")
    ha.client(live[0]).authorize_security_group_ingress(GroupId=group["GroupId"],
                                                        IpPermissions=perm)
    wait_until(lambda: _ping_ok(ha, "ha-vm2", VM1_IP), 60,
               what="the restored rule to let the ping through")
