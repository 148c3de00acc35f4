"""AWS's "VPC with public and private subnets" (issue 11): `softvpc lab up
examples/public-private.toml` builds it through the EC2 API, and every path in it works with
real clients (curl, Python sockets, ping).

web (public subnet, Elastic IP, group "web": tcp 80 and ICMP from anywhere) and app (private
subnet routed to the NAT gateway, no public IP, group "app": tcp 8080 and ICMP from "web"):
web's curl to 203.0.113.10 shows its Elastic IP, app's shows the NAT gateway's; the internet
reaches web:80 at its Elastic IP but not web:8080, and nothing of app; web reaches app:8080 and
pings it; without a resolver in the topology's internet, names the VPC router does not know get
SERVFAIL. The lab has its own prefix, state dir and API port, and is taken down even on failure.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from e2e_harness import REPO, Lab, free_port, netns_list, run, wait_until

PROBE = str(Path(__file__).resolve().parent / "tcpprobe.py")
WEB = "203.0.113.10"
PP_PREFIX = f"spp{os.getpid()}-"
PP_DIR = Path(f"/tmp/{PP_PREFIX}lab")


@pytest.fixture(scope="module")
def pp():
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (network namespaces)")
    lab = Lab(REPO / "examples" / "public-private.toml")
    lab.env.update(SOFTVPC_LAB_PREFIX=PP_PREFIX, SOFTVPC_LAB_DIR=str(PP_DIR),
                   SOFTVPC_LAB_API_PORT=free_port())
    try:
        up = lab.cli("up", str(lab.topology_path), timeout=300)
        assert up.returncode == 0, f"lab up failed:\n{up.stdout}\n{up.stderr}"
        yield lab
    finally:
        lab.cli("down", timeout=120)
        for ns in netns_list():
            if ns.startswith(PP_PREFIX):
                run(["ip", "netns", "del", ns])
        shutil.rmtree(PP_DIR, ignore_errors=True)
    assert not [ns for ns in netns_list() if ns.startswith(PP_PREFIX)], "namespaces left"


def curl(lab, name, secs=3):
    proc = lab.exec(name, "curl", "-sS", "--max-time", str(secs), f"http://{WEB}/",
                    timeout=secs + 10)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def connects(lab, netns, ip, port, secs=1.5):
    proc = run(["ip", "netns", "exec", netns, sys.executable, PROBE, "connect", ip, str(port),
                str(secs)], timeout=secs + 10)
    return proc.returncode == 0


def serve(lab, name, port):
    server = subprocess.Popen(["ip", "netns", "exec", lab.netns(name), sys.executable, PROBE,
                               "serve", str(port)], stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"
    return server


def test_public_and_private_subnets(pp):
    internet = f"{PP_PREFIX}internet"
    web_id = pp.instance("web")["instance_id"]
    (web_eip,) = [a["PublicIp"] for a in pp.aws("describe-addresses")["Addresses"]
                  if a.get("InstanceId") == web_id]
    (nat,) = pp.aws("describe-nat-gateways")["NatGateways"]
    assert nat["State"] == "available"
    nat_eip = nat["NatGatewayAddresses"][0]["PublicIp"]
    assert nat_eip != web_eip

    # Out: web as its Elastic IP, app as the NAT gateway's.
    wait_until(lambda: curl(pp, "web") == web_eip, 30, interval=0.3, what="web's curl")
    wait_until(lambda: curl(pp, "app") == nat_eip, 30, interval=0.3, what="app's curl")

    servers = []
    try:
        servers = [serve(pp, "web", 80), serve(pp, "web", 8080), serve(pp, "app", 8080)]
        # In: the internet reaches web:80 at its Elastic IP; not 8080 (its group), not app.
        assert connects(pp, internet, web_eip, 80)
        assert not connects(pp, internet, web_eip, 8080)
        assert not connects(pp, internet, nat_eip, 8080)
        assert not connects(pp, internet, "10.0.1.10", 8080)
        # Between the tiers: web reaches app:8080 and pings it (app's group admits "web").
        assert connects(pp, pp.netns("web"), "10.0.1.10", 8080)
        assert pp.ping("web", "10.0.1.10", count=2, wait=2).ok
        # The internet pings web (its group allows ICMP) but app has nothing to be pinged at.
        assert run(["ip", "netns", "exec", internet, "ping", "-c", "2", "-W", "2",
                    web_eip], timeout=20).returncode == 0
        # This topology names no resolver for its internet, so the agents have no upstream:
        # names the VPC's router does not know get SERVFAIL at once; its own names resolve.
        out = pp.exec("app", "dig", "@10.0.0.2", "+time=4", "+tries=1", "www.example.test",
                      timeout=30).stdout
        assert "status: SERVFAIL" in out, out
        out = pp.exec("app", "dig", "@10.0.0.2", "+short", "ip-10-0-0-10.ec2.internal",
                      timeout=30).stdout
        assert out.split() == ["10.0.0.10"], out
    finally:
        for s in servers:
            s.kill()
            s.wait(timeout=5)
