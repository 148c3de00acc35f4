"""Route tables on the wire (issue 10): a middlebox instance routing between two subnets, a
blackhole, and longest-prefix match between overlapping routes, with ping, TCP and tcpdump.

A scratch VPC 10.70.0.0/16:
  subnet X 10.70.1.0/24: x1 10.70.1.10 (host-1)
  subnet Y 10.70.2.0/24: y1 10.70.2.10 (host-1), y2 10.70.2.200 (host-2)
  subnet R 10.70.3.0/24: r1 10.70.3.10 (host-2), the router: ip_forward on in its namespace
X's table sends 10.70.2.0/24 to r1's ENI (and 10.70.2.200/32 to an interface that is then
deleted: a blackhole), Y's table sends 10.70.1.0/24 to r1's ENI. r1 is on the other host, so
what it forwards to y1 arrives at host-1 from host-2 with x1's address as its source: the
receive side accepts it because host-2 holds an ENI of the VPC with its check off.

With the kernel fast path on (`SOFTVPC_FAST_PATH=on`) the routed flows (x1 -> r1, r1 -> y1 and
back) run in the kernel after their first packet (a cls_bpf program per flow rewrites the MACs
and the TTL as the engine decided): the agents' `softvpc_fast_path_routed_packets_total` shows
it, and the TTLs stay what the engine gives.
"""

import json
import os
import subprocess

from e2e_harness import PREFIX, metric_sum, wait_until
from probes import Server, connects
from scratch import Scratch, capture

X1, Y1, Y2, R1 = "10.70.1.10", "10.70.2.10", "10.70.2.200", "10.70.3.10"
FAST = os.environ.get("SOFTVPC_FAST_PATH", "on") == "on"
ROUTED = "softvpc_fast_path_routed_packets_total"


def routed_in_kernel(lab, src, dst, hosts, count=10):
    """With the fast path on: `count` pings src -> dst, and each of `hosts` carried at least
    half of them (a routed flow per direction, installed after its first packet) in the kernel,
    read back from its agent's metrics."""
    before = {h: metric_sum(lab.metrics(h), ROUTED) for h in hosts}
    r = lab.ping(src, dst, count=count, wait=1, interval=0.05)
    assert r.ok and len(r.ttls) == count, r
    wait_until(lambda: all(metric_sum(lab.metrics(h), ROUTED) - before[h] >= count // 2
                           for h in hosts), 15,
               what=f"routed packets carried by the kernel on {hosts}")
    for h in hosts:
        errors, why = lab.fast_path_errors(h)
        assert errors == 0, f"{h}: {errors} fast path errors\n{why}"
    return r


def bulk_tcp(lab, src, dst, dst_ip, secs=2):
    """The bytes a `secs` iperf3 TCP run from instance `src` to `dst` (at `dst_ip`) delivered."""
    netns = f"{PREFIX}{dst}"
    server = subprocess.Popen(["ip", "netns", "exec", netns, "iperf3", "-s", "-1", "-B", dst_ip],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: ":5201 " in lab.netns_exec(netns, "ss", "-ltn").stdout, 10,
                   interval=0.1, what="iperf3 to listen")
        proc = lab.exec(src, "iperf3", "-c", dst_ip, "-t", str(secs), "-J", timeout=40)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout)["end"]["sum_received"]["bytes"]
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=5)


def ping(lab, iid, ip, count=1, wait=1):
    return lab.ping(iid, ip, count=count, wait=wait, interval=0.2)


def echo_requests(cap, src, dst):
    return [line for line in cap.lines if f"{src} > {dst}: ICMP echo request" in line]


def test_middlebox_blackhole_and_longest_prefix(lab):
    with Scratch(lab) as s:
        vpc = s.vpc("10.70.0.0/16")
        sx, sy, sr = (s.subnet(vpc, f"10.70.{n}.0/24") for n in (1, 2, 3))
        x1 = s.launch(sx, X1, "host-1")
        y1 = s.launch(sy, Y1, "host-1")
        y2 = s.launch(sy, Y2, "host-2")
        r1 = s.launch(sr, R1, "host-2")
        r1_eni = s.eni_of(r1)
        for key in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
                    "net.ipv4.conf.eth0.send_redirects=0"):
            lab.netns_exec(f"{PREFIX}{r1}", "sysctl", "-w", key, check=True)

        # Only the local route: x1 reaches y1 directly (one routed hop: TTL 63).
        direct = wait_until(lambda: (r := ping(lab, x1, Y1)).ok and r, 30,
                            what="x1 -> y1 directly")
        assert direct.ttls == [63], direct
        if FAST:
            # Across subnets and hosts: the sender's egress rewrites, on both hosts.
            assert set(routed_in_kernel(lab, x1, Y2, ["host-1", "host-2"]).ttls) == {63}

        rtb_x = s.route_table(vpc, sx)
        rtb_y = s.route_table(vpc, sy)
        s.route(rtb_x, "10.70.2.0/24", NetworkInterfaceId=r1_eni)
        s.route(rtb_y, "10.70.1.0/24", NetworkInterfaceId=r1_eni)

        # r1's source/destination check is on: what is routed to it for y1 is dropped at its
        # host and counted.
        before = lab.drops("host-2", "src_dst_check")
        wait_until(lambda: not ping(lab, x1, Y1).ok, 15, what="x1 -> y1 to stop (check on)")
        assert lab.drops("host-2", "src_dst_check") > before

        # Check off: x1 <-> y1 through r1. tcpdump in r1 sees the request come in and go out
        # again; the TTL says three hops (router, r1, router).
        s.ec2.modify_network_interface_attribute(NetworkInterfaceId=r1_eni,
                                                 SourceDestCheck={"Value": False})
        wait_until(lambda: ping(lab, x1, Y1).ok, 15, what="x1 -> y1 through r1")
        with capture(lab, r1) as cap:
            through = ping(lab, x1, Y1, count=3)
        assert through.ok and set(through.ttls) == {61}, through
        # tcpdump in r1 sees what arrives and what r1 sends through the engine; with the fast
        # path on, what r1 sends on a flow the kernel holds leaves at its TAP's egress hook,
        # before tcpdump (the TTL of 61 shows r1 forwarded it).
        want = 3 if FAST else 6
        assert len(echo_requests(cap, X1, Y1)) >= want, f"r1 did not forward:\n{cap.text()}"
        replies = [line for line in cap.lines if f"{Y1} > {X1}: ICMP echo reply" in line]
        assert len(replies) >= want, f"replies did not come back through r1:\n{cap.text()}"
        if FAST:
            # Through the middlebox: x1 -> r1 and y1 -> r1 on host-1, r1 -> y1 and r1 -> x1 on
            # host-2, each a routed flow in the kernel.
            assert set(routed_in_kernel(lab, x1, Y1, ["host-1", "host-2"]).ttls) == {61}
        server = Server(lab, y1, 8080)
        try:
            assert connects(lab, x1, Y1, 8080), "TCP through the middlebox"
        finally:
            server.stop()
        # A TCP stream through the middlebox: r1 forwards x1's super-frames, which with the
        # fast path on its host's underlay program decapsulated (their tunnel GSO state left
        # as it was: docs/fast-path.md, "Super-frames decapsulated"), to y1, through its TAP
        # (the engine, which gets them segmented) until the flow is in the kernel, then
        # re-encapsulated by its egress VXLAN device.
        moved = bulk_tcp(lab, x1, y1, Y1)
        assert moved > 10 * 1024 * 1024, f"{moved} bytes through the middlebox"

        # Longest prefix: 10.70.2.200/32 beats 10.70.2.0/24. Its target, an interface, is
        # deleted: the route is a blackhole, y2 is unreachable (counted), y1 still goes via r1.
        z = s.eni(sy, "10.70.2.250")
        s.route(rtb_x, f"{Y2}/32", NetworkInterfaceId=z)
        s.ec2.delete_network_interface(NetworkInterfaceId=z)
        s.enis.remove(z)
        assert s.route_states(rtb_x)[f"{Y2}/32"] == "blackhole"
        before = lab.drops("host-1", "blackhole")
        wait_until(lambda: not ping(lab, x1, Y2).ok, 15, what="x1 -> y2 to be blackholed")
        assert lab.drops("host-1", "blackhole") > before
        assert ping(lab, x1, Y1).ttls == [61], "10.70.2.0/24 still goes through r1"
        # y2 itself is fine: y1 reaches it (Y's table has no such route).
        assert ping(lab, y1, Y2).ok

        # Without the /24s the local /16 is the longest match again: direct, r1 sees nothing.
        for rtb, cidr in ((rtb_x, "10.70.2.0/24"), (rtb_y, "10.70.1.0/24")):
            s.ec2.delete_route(RouteTableId=rtb, DestinationCidrBlock=cidr)
        wait_until(lambda: ping(lab, x1, Y1).ttls == [63], 15, what="x1 -> y1 direct again")
        with capture(lab, r1) as cap:
            assert ping(lab, x1, Y1, count=2).ok
        assert not echo_requests(cap, X1, Y1), f"r1 still sees x1's pings:\n{cap.text()}"
        assert not ping(lab, x1, Y2).ok, "the /32 blackhole is more specific than local"


def test_secondary_cidr_block_is_routed_locally(lab):
    """An instance in a subnet of a secondary VPC CIDR block (AssociateVpcCidrBlock) and one in
    the primary block, on different hosts, ping each other through the VPC's local routes."""
    with Scratch(lab) as s:
        vpc = s.vpc("10.71.0.0/16")
        s.ec2.associate_vpc_cidr_block(VpcId=vpc, CidrBlock="10.72.0.0/16")
        primary = s.launch(s.subnet(vpc, "10.71.1.0/24"), "10.71.1.10", "host-1")
        secondary = s.launch(s.subnet(vpc, "10.72.1.0/24"), "10.72.1.10", "host-2")
        # One routed hop each way (TTL 63): the router's local route for each block.
        there = wait_until(lambda: (r := ping(lab, primary, "10.72.1.10")).ok and r, 30,
                           what="primary block -> secondary block")
        assert there.ttls == [63], there
        back = ping(lab, secondary, "10.71.1.10", count=2)
        assert back.ok and set(back.ttls) == {63}, back
