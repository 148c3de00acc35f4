"""`softvpc trace` against the real packet's fate.

For each case, `softvpc trace --json` asks the agents' live engines where the packet goes; then
the same packet is really sent (`ping`, `nc -z` to a listening `nc -l`) and its fate must match
the trace's verdict: DELIVERED exactly when the real packet got through. The cases cover the
paths the engine has (bridged to another host, routed between subnets, local on one host, the
router address, an address nobody holds, an address outside the VPC) and a security-group
policy put on zigi-vm2's ENI and changed (whatever the agents enforce at the time, trace and
reality must agree). The human output is checked for its per-host, per-layer lines.
"""

import json
import subprocess
import time

import pytest

from e2e_harness import SOFTVPC_BIN, run

PORT = 5001


def trace(lab, src, proto, dst, *extra, check=True):
    proc = run([SOFTVPC_BIN, "trace", "--from", src, proto, dst, "--json", *extra],
               timeout=30, env=lab.env)
    if not check:
        return proc
    assert proc.returncode == 0, f"softvpc trace failed: {proc.stderr}"
    return json.loads(proc.stdout)


def real_ping(lab, src, dst):
    return lab.ping(src, dst, count=1, wait=2).ok


def real_tcp(lab, src, dst, port):
    """Whether the SYN reached the destination: connected, or refused by its kernel (an RST
    came back); a timeout means it was dropped on the way."""
    proc = lab.exec(src, "nc", "-v", "-z", "-w", "2", dst, str(port), timeout=15)
    return proc.returncode == 0 or "refused" in proc.stdout + proc.stderr


@pytest.fixture
def listener(lab):
    """`nc -l` on zigi-vm2:5001, restarted for every connection (nc -k)."""
    proc = subprocess.Popen([SOFTVPC_BIN, "lab", "exec", "zigi-vm2", "--", "nc", "-k", "-l",
                             str(PORT)], env=lab.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            if f":{PORT} " in lab.exec("zigi-vm2", "ss", "-ltn").stdout:
                break
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def agree(lab, src, proto, dst, port=None):
    """Traces, then sends for real; asserts they agree and returns the trace."""
    target = f"{dst}:{port}" if port else dst
    t = trace(lab, src, proto, target)
    real = real_tcp(lab, src, dst, port) if proto == "tcp" else real_ping(lab, src, dst)
    delivered = t["verdict"] == "DELIVERED"
    assert delivered == real, (
        f"trace says {t['verdict']} ({t['reason']}) but the real {proto} packet "
        f"{'got through' if real else 'did not'}: {json.dumps(t, indent=1)}")
    return t


def test_trace_verdicts_match_real_traffic(lab, listener):
    for name in ("zigi-vm1", "zigi-vm2"):
        lab.exec(name, "ip", "neigh", "flush", "all", check=True)
    # Bridged to another host: egress on host-1, VXLAN, ingress on host-2.
    t = agree(lab, "zigi-vm1", "icmp", "10.0.0.185")
    assert t["verdict"] == "DELIVERED"
    assert [h["host"] for h in t["hops"]] == ["host-1", "host-2"]
    assert t["hops"][0]["verdict"]["kind"] == "to_underlay"
    assert t["hops"][0]["verdict"]["host_ip"] == lab.host("host-2")["underlay_ip"]
    assert t["hops"][1]["stage"] == "ingress"
    eni2 = lab.instance("zigi-vm2")
    t = agree(lab, "zigi-vm1", "tcp", "10.0.0.185", PORT)
    assert t["verdict"] == "DELIVERED" and t["packet"]["dst_port"] == PORT
    layers = [(l["layer"], l["decision"]) for l in t["hops"][0]["layers"]]
    assert layers[0] == ("gateway", "pass") and ("route", "pass") in layers, layers
    # --from an ENI id, with the source address and port given: the same path, that packet.
    eni1 = t["packet"]["from_eni"]
    assert eni1.startswith("eni-"), t["packet"]
    by_eni = trace(lab, eni1, "tcp", f"10.0.0.185:{PORT}", "--src", "10.0.0.148",
                   "--src-port", "40001")
    assert by_eni["verdict"] == "DELIVERED", by_eni
    assert by_eni["packet"]["from_eni"] == eni1
    assert (by_eni["packet"]["src"], by_eni["packet"]["src_port"]) == ("10.0.0.148", 40001)
    assert [h["host"] for h in by_eni["hops"]] == ["host-1", "host-2"]
    # Routed to the other subnet (host-2), and local on host-1 (zigi-vm4).
    t = agree(lab, "zigi-vm1", "icmp", "10.0.1.20")
    assert t["verdict"] == "DELIVERED" and t["hops"][0]["next_hop"]["ip"] == "10.0.0.1"
    t = agree(lab, "zigi-vm1", "icmp", "10.0.0.30")
    assert t["verdict"] == "DELIVERED" and [h["host"] for h in t["hops"]] == ["host-1"]
    # The router address: answered by the virtual router.
    t = agree(lab, "zigi-vm1", "icmp", "10.0.0.1")
    assert t["verdict"] == "DELIVERED" and t["hops"][0]["verdict"]["kind"] == "reply"
    # Nobody holds 10.0.0.99: ARP gets no answer, nothing is sent.
    t = agree(lab, "zigi-vm1", "icmp", "10.0.0.99")
    assert t["verdict"] == "DROPPED" and "no_arp_answer" in t["reason"], t
    # Outside the VPC, no gateway: dropped by the route layer.
    t = agree(lab, "zigi-vm1", "icmp", "203.0.113.10")
    assert t["verdict"] == "DROPPED", t
    assert eni2["instance_id"]


def test_trace_agrees_under_a_security_group(lab, listener):
    inst = lab.aws("describe-instances", "--filters", "Name=tag:Name,Values=zigi-vm2")
    eni = inst["Reservations"][0]["Instances"][0]["NetworkInterfaces"][0]
    eni_id, vpc_id = eni["NetworkInterfaceId"], eni["VpcId"]
    old_groups = [g["GroupId"] for g in eni["Groups"]]
    sg = lab.aws("create-security-group", "--group-name", f"trace-{time.time_ns()}",
                 "--description", "trace test", "--vpc-id", vpc_id)["GroupId"]
    try:
        lab.aws("modify-network-interface-attribute", "--network-interface-id", eni_id,
                "--groups", sg)
        time.sleep(2)
        # No inbound rule: whatever the agents hold, trace and the wire agree.
        for proto, port in (("icmp", None), ("tcp", PORT)):
            t = agree(lab, "zigi-vm1", proto, "10.0.0.185", port)
            if t["verdict"] == "DROPPED":
                assert "sg_denied" in t["reason"], t
        lab.aws("authorize-security-group-ingress", "--group-id", sg, "--protocol", "tcp",
                "--port", str(PORT), "--cidr", "10.0.0.0/16")
        time.sleep(2)
        t = agree(lab, "zigi-vm1", "tcp", "10.0.0.185", PORT)
        assert t["verdict"] == "DELIVERED"
        agree(lab, "zigi-vm1", "icmp", "10.0.0.185")
        agree(lab, "zigi-vm1", "tcp", "10.0.0.185", PORT + 1)
    finally:
        lab.aws("modify-network-interface-attribute", "--network-interface-id", eni_id,
                "--groups", *old_groups)
        time.sleep(1)
        lab.aws("delete-security-group", "--group-id", sg, check=False)
    lab.wait_ping("zigi-vm1", "10.0.0.185", timeout=10)


def test_trace_prints_hosts_layers_and_verdict(lab):
    proc = run([SOFTVPC_BIN, "trace", "--from", "zigi-vm1", "icmp", "10.0.0.185"],
               timeout=30, env=lab.env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "host-1 (" in out and "host-2 (" in out, out
    for layer in ("gateway", "security_group", "nacl", "route", "overlay"):
        assert f"  {layer}" in out, out
    assert out.rstrip().splitlines()[-1].startswith("DELIVERED to eni-"), out
    # Errors are one line, exit 1; bad arguments exit 2 with usage; --help explains.
    bad = run([SOFTVPC_BIN, "trace", "--from", "no-such-vm", "icmp", "10.0.0.1"],
              timeout=30, env=lab.env)
    assert bad.returncode == 1 and bad.stderr.startswith("softvpc: error: ") \
        and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    bad = run([SOFTVPC_BIN, "trace", "--from", "zigi-vm1", "tcp", "10.0.0.185"],
              timeout=30, env=lab.env)
    assert bad.returncode == 1 and "destination port" in bad.stderr, bad.stderr
    assert run([SOFTVPC_BIN, "trace", "--from", "zigi-vm1", "icmp"], env=lab.env).returncode == 2
    helped = run([SOFTVPC_BIN, "trace", "--help"], env=lab.env)
    assert helped.returncode == 0 and "DELIVERED" in helped.stdout and "--json" in helped.stdout


def test_trace_outside_a_lab_asks_the_agents_given(lab, tmp_path):
    """`--agent [NETNS/]ADDR:PORT`: no lab state is read (SOFTVPC_LAB_DIR points at an empty
    directory); the agents named say who they are, and the verdicts are the lab mode's."""
    agents = []
    for h in ("host-1", "host-2"):
        agents += ["--agent", f"{lab.host(h)['netns']}/127.0.0.1:9469"]
    env = dict(lab.env, SOFTVPC_LAB_DIR=str(tmp_path))
    for proto, dst in (("icmp", "10.0.0.185"), ("icmp", "10.0.1.20"), ("icmp", "10.0.0.99")):
        in_lab = trace(lab, "zigi-vm1", proto, dst)
        proc = run([SOFTVPC_BIN, "trace", *agents, "--from", "zigi-vm1", proto, dst, "--json"],
                   timeout=30, env=env)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert (out["verdict"], out["reason"]) == (in_lab["verdict"], in_lab["reason"]), out
        assert [h["host"] for h in out["hops"]] == [h["host"] for h in in_lab["hops"]]
    # Without --agent and without a lab: one clear error.
    proc = run([SOFTVPC_BIN, "trace", "--from", "zigi-vm1", "icmp", "10.0.0.185"], timeout=30,
               env=env)
    assert proc.returncode != 0 and "--agent" in proc.stderr, proc.stderr
    # Only host-1's agent: the datagram to host-2 is reported as not traced.
    proc = run([SOFTVPC_BIN, "trace", *agents[:2], "--from", "zigi-vm1", "icmp", "10.0.0.185",
                "--json"], timeout=30, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["hops"][-1]["verdict"]["kind"] == "unknown_host", out
