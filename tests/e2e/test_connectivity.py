"""Reachability inside a VPC: across hosts, on one host, across subnets through the router (.1),
and the router itself. The reply's TTL tells whether it was routed (63) or switched (64)."""

import json
import subprocess

import pytest

from e2e_harness import PingResult, wait_until
from frames import ETH_IPV4

VPC_INSTANCES = ["zigi-vm1", "zigi-vm2", "zigi-vm3", "zigi-vm4", "other-vm1", "other-vm2"]


def router_mac(vni):
    return "0a:56:50:" + ":".join(f"{(vni >> s) & 0xFF:02x}" for s in (16, 8, 0))


@pytest.mark.parametrize("src,dst_ip,peer", [
    ("zigi-vm1", "10.0.0.185", "zigi-vm2"),   # same subnet, other host (VXLAN)
    ("zigi-vm2", "10.0.0.148", "zigi-vm1"),
    ("zigi-vm1", "10.0.0.30", "zigi-vm4"),    # same subnet, same host (no encapsulation)
    ("zigi-vm4", "10.0.0.148", "zigi-vm1"),
    ("other-vm1", "10.0.0.185", "other-vm2"),
])
def test_same_subnet_ping_is_switched(lab, src, dst_ip, peer):
    result = lab.ping(src, dst_ip, count=3)
    assert result.ok and result.received == 3, result
    assert set(result.ttls) == {64}, f"a switched reply keeps TTL 64: {result}"


@pytest.mark.parametrize("src,dst_ip", [
    ("zigi-vm1", "10.0.1.20"),   # 10.0.0.0/24 on host-1 -> 10.0.1.0/24 on host-2
    ("zigi-vm3", "10.0.0.148"),
    ("zigi-vm4", "10.0.1.20"),
    ("zigi-vm3", "10.0.0.185"),  # across subnets on the same host (host-2)
])
def test_cross_subnet_ping_is_routed(lab, src, dst_ip):
    result = lab.ping(src, dst_ip, count=3)
    assert result.ok and result.received == 3, result
    assert set(result.ttls) == {63}, f"a routed reply arrives with TTL 63: {result}"


def test_routed_frames_carry_the_router_mac(lab, macs):
    vpc_id = lab.instance("zigi-vm1")["vpc_id"]
    rmac = router_mac(lab.vni(vpc_id))
    lab.exec("zigi-vm1", "ip", "neigh", "flush", "all", check=True)
    with lab.capture("zigi-vm3") as caps:
        result = lab.ping("zigi-vm1", "10.0.1.20", count=1, pattern="a1b2c3d4")
    assert result.ok, result
    # zigi-vm1 resolved its gateway 10.0.0.1 to the VPC router's MAC.
    neigh = lab.exec("zigi-vm1", "ip", "neigh", "show", "10.0.0.1", check=True).stdout
    assert rmac in neigh, f"gateway neighbour of zigi-vm1 is not {rmac}: {neigh}"
    # At zigi-vm3 the echo request comes from the router's MAC, TTL decremented.
    requests = [f for f in caps["zigi-vm3"].containing(bytes.fromhex("a1b2c3d4") * 4)
                if f.ethertype == ETH_IPV4 and f.ipv4()[0] == "10.0.0.148"]
    assert requests, caps["zigi-vm3"].text()
    for f in requests:
        assert f.src == rmac and f.dst == macs["zigi-vm3"], f
        assert f.ipv4()[3] == 63, f"the router decrements TTL: {f.ipv4()}"


@pytest.mark.parametrize("name", VPC_INSTANCES)
def test_every_instance_reaches_its_router(lab, name):
    gateway = lab.instance(name)["ip"].rsplit(".", 1)[0] + ".1"
    result = lab.ping(name, gateway, count=2)
    assert result.ok and result.received == 2, result


def test_default_route_and_mtu_inside_instances(lab, macs):
    """Each instance's eth0 carries its ENI's MAC, IP and MTU 9001, default route via .1."""
    for name in VPC_INSTANCES:
        inst = lab.instance(name)
        link = lab.exec(name, "ip", "-o", "link", "show", "eth0", check=True).stdout
        assert macs[name] in link and "mtu 9001" in link, link
        addr = lab.exec(name, "ip", "-o", "-4", "addr", "show", "eth0", check=True).stdout
        assert f"inet {inst['ip']}/24" in addr, addr
        route = lab.exec(name, "ip", "route", "show", "default", check=True).stdout
        assert f"via {inst['ip'].rsplit('.', 1)[0]}.1" in route, route


@pytest.mark.parametrize("src,dst_ip", [
    ("zigi-vm1", "10.0.0.185"),  # VXLAN: 9001 + 50 bytes of encapsulation on the 9100 underlay
    ("zigi-vm1", "10.0.0.30"),   # same host
    ("zigi-vm1", "10.0.1.20"),   # routed, other host
])
def test_full_size_frames_cross(lab, src, dst_ip):
    """9001-byte IP packets (the instance MTU, AWS's jumbo frames) with DF set get through,
    both ways."""
    result = PingResult(lab.exec(src, "ping", "-n", "-M", "do", "-s", "8973", "-c", "3",
                                 "-i", "0.2", "-W", "2", dst_ip, timeout=30))
    assert result.ok and result.received == 3, result
    assert "8981 bytes from" in result.output, result


def test_tracepath_within_the_vpc_reports_jumbo_frames(lab):
    """tracepath (iputils) from zigi-vm1 to zigi-vm2 on the other host: pmtu 9001, one hop."""
    proc = lab.exec("zigi-vm1", "tracepath", "-n", "-m", "3", "10.0.0.185", timeout=30)
    assert "pmtu 9001" in proc.stdout, proc.stdout + proc.stderr


def test_bulk_tcp_between_hosts(lab):
    """A short iperf3 TCP run between zigi-vm1 and zigi-vm2 (bounded: 2 s) moves data."""
    server = subprocess.Popen(["ip", "netns", "exec", lab.netns("zigi-vm2"), "iperf3", "-s", "-1",
                               "-B", "10.0.0.185"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: ":5201 " in lab.exec("zigi-vm2", "ss", "-ltn").stdout, 10,
                   interval=0.1, what="iperf3 to listen")
        proc = lab.exec("zigi-vm1", "iperf3", "-c", "10.0.0.185", "-t", "2", "-J", timeout=40)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        received = json.loads(proc.stdout)["end"]["sum_received"]
        assert received["bytes"] > 10 * 1024 * 1024, received
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=5)
