"""The per-ENI connection-tracking limit on the wire (issue 10): `softvpc agent
--conntrack-limit` / SOFTVPC_CONNTRACK_LIMIT.

A lab of its own (two hosts, one instance each, the default security group, which tracks both
directions) whose agents run with a limit of 16 tracked flows per ENI. An established TCP
session from ct-vm1 to ct-vm2 takes one entry; then ct-vm1 opens 40 new UDP flows to ct-vm2's
echo server: at most the 15 left are echoed, the others are refused and counted
(`softvpc_drops_total{reason="conntrack_full"}`, per ENI
`softvpc_eni_conntrack_allowance_exceeded_total`), a new TCP connection is refused too, while
the established session keeps working. The lab is taken down even on failure.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from e2e_harness import HERE, Lab, free_port, metric_sum, netns_list, run
from probes import PROBE, eni_of

LIMIT = 16
FLOWS = 40
VM1, VM2 = "10.0.0.10", "10.0.0.20"
UDPPROBE = str(HERE / "udpprobe.py")

TOPOLOGY = """\
[[host]]
name = "host-1"

[[host]]
name = "host-2"

[[vpc]]
name = "ct-vpc"
cidr = "10.0.0.0/16"
[[vpc.subnet]]
cidr = "10.0.0.0/24"

[[instance]]
name = "ct-vm1"
vpc = "ct-vpc"
subnet = "10.0.0.0/24"
ip = "10.0.0.10"
host = "host-1"

[[instance]]
name = "ct-vm2"
vpc = "ct-vpc"
subnet = "10.0.0.0/24"
ip = "10.0.0.20"
host = "host-2"
"""


@pytest.fixture
def ct_lab():
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (network namespaces)")
    tmp = Path(tempfile.mkdtemp(prefix="svc-ct-"))
    topology = tmp / "topology.toml"
    topology.write_text(TOPOLOGY)
    lab = Lab(topology)
    prefix = f"svc{os.getpid()}-"
    lab.env.update(SOFTVPC_LAB_PREFIX=prefix, SOFTVPC_LAB_DIR=str(tmp / "lab"),
                   SOFTVPC_LAB_API_PORT=free_port(), SOFTVPC_CONNTRACK_LIMIT=str(LIMIT))
    try:
        up = lab.cli("up", str(topology), timeout=300)
        assert up.returncode == 0, f"lab up failed:\n{up.stdout}\n{up.stderr}"
        yield lab
    finally:
        down = lab.cli("down", timeout=120)
        for ns in netns_list():
            if ns.startswith(prefix):
                run(["ip", "netns", "del", ns])
        shutil.rmtree(tmp, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr


def spawn(lab, name, *cmd):
    proc = subprocess.Popen(["ip", "netns", "exec", lab.netns(name), sys.executable, "-u",
                             *cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc


def test_new_flows_past_the_limit_are_refused_and_counted(ct_lab):
    lab = ct_lab
    eni1 = eni_of(lab, lab.instance("ct-vm1")["vpc_id"], VM1)["NetworkInterfaceId"]
    procs = []
    try:
        server = spawn(lab, "ct-vm2", PROBE, "serve", "7000", "7001")
        procs.append(server)
        assert server.stdout.readline().strip() == "ready"
        echo = spawn(lab, "ct-vm2", UDPPROBE, "echo", "9000")
        procs.append(echo)
        assert echo.stdout.readline().strip() == "ready"

        # One established TCP session: a tracked flow on each ENI.
        session = spawn(lab, "ct-vm1", PROBE, "session", VM2, "7000")
        procs.append(session)
        assert session.stdout.readline().strip() == "connected"

        def say(line):
            session.stdin.write(line + "\n")
            session.stdin.flush()
            return session.stdout.readline().strip()

        assert say("before") == "echo before"

        # 40 new UDP flows: only what the limit leaves is echoed.
        out = lab.netns_exec(lab.netns("ct-vm1"), sys.executable, UDPPROBE, "flows", VM2,
                             "9000", str(FLOWS), "3", timeout=30, check=True)
        echoed = int(out.stdout.strip())
        assert 1 <= echoed <= LIMIT - 1, f"{echoed} of {FLOWS} new flows passed a limit of {LIMIT}"

        m1 = lab.metrics("host-1")
        refused = metric_sum(m1, "softvpc_drops_total", reason="conntrack_full")
        assert refused >= FLOWS - echoed, m1
        assert metric_sum(m1, "softvpc_eni_conntrack_allowance_exceeded_total", eni=eni1) \
            >= FLOWS - echoed
        assert metric_sum(m1, "softvpc_eni_tracked_flows", eni=eni1) == LIMIT

        # A new TCP connection is a new flow too: refused while the table is full.
        new_tcp = lab.netns_exec(lab.netns("ct-vm1"), sys.executable, PROBE, "connect", VM2,
                                 "7001", "1.5", timeout=15)
        assert new_tcp.returncode != 0, "a new TCP connection passed a full table"
        assert metric_sum(lab.metrics("host-1"), "softvpc_drops_total",
                          reason="conntrack_full") > refused

        # The established session goes on.
        assert say("after") == "echo after", "the tracked session stopped at the limit"
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=5)
