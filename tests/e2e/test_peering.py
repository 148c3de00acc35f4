"""VPC peering on the wire (issue 10), with ping and TCP between instances of scratch VPCs.

  A 10.61.0.0/16: a1 10.61.1.10 (host-1)
  B 10.62.0.0/16: b1 10.62.1.10 (host-2)
  C 10.63.0.0/16: c1 10.63.1.10 (host-1)
  D 10.61.0.0/16 (overlaps A): d1 10.61.1.10 (host-2), the same address as a1
Each VPC's default group admits 10.0.0.0/8, so only routes and peerings decide.
Peerings A-B, B-C and B-D are active; A-D fails (overlapping CIDRs). Traffic crosses only when
both sides route to the connection, at the VPCs' MTU of 9001 (DF pings of 9001 bytes); A reaches C through nothing (not transitive, even with a
route for C's CIDR over A-B); D, peered with B but not routed to by B, gets no answer from b1,
and b1's packets for a1's address never reach d1; a group of B referencing A's default group
admits a1 and not c1; deleting A-B cuts a1 and b1 at once and its routes become blackholes.

With the kernel fast path on (`SOFTVPC_FAST_PATH=on`) the peered flows run in the kernel after
their first packet, encapsulated with the peer VPC's VNI and rewritten as the engine decided:
the agents' `softvpc_fast_path_routed_packets_total` shows it; deleting the peering still cuts
them at once (the change removes every kernel flow before the next packet).
"""

import os

from e2e_harness import PingResult, metric_sum, wait_until
from probes import Server, connects, wait_connects
from scratch import Scratch, capture

A1, B1, C1 = "10.61.1.10", "10.62.1.10", "10.63.1.10"
FAST = os.environ.get("SOFTVPC_FAST_PATH", "on") == "on"
ROUTED = "softvpc_fast_path_routed_packets_total"


def ping(lab, iid, ip, count=1):
    return lab.ping(iid, ip, count=count, wait=1, interval=0.2)


def test_peering_routes_transitivity_overlap_and_deletion(lab):
    with Scratch(lab) as s:
        vpcs, tables, insts = {}, {}, {}
        for name, cidr, host in (("a", "10.61", "host-1"), ("b", "10.62", "host-2"),
                                 ("c", "10.63", "host-1"), ("d", "10.61", "host-2")):
            vpcs[name] = s.vpc(f"{cidr}.0.0/16")
            subnet = s.subnet(vpcs[name], f"{cidr}.1.0/24")
            tables[name] = s.main_table(vpcs[name])
            insts[name] = s.launch(subnet, f"{cidr}.1.10", host)
            s.open_default_group(vpcs[name], "10.0.0.0/8")
        a1, b1, c1, d1 = (insts[n] for n in "abcd")

        ab = s.peering(vpcs["a"], vpcs["b"])
        bc = s.peering(vpcs["b"], vpcs["c"])
        bd = s.peering(vpcs["b"], vpcs["d"])
        ad = s.peering(vpcs["a"], vpcs["d"])
        status = s.peering_status(ad)
        assert status == "failed", f"A and D overlap, yet their peering is {status}"

        # Active, but no routes: nothing crosses.
        assert not ping(lab, a1, B1).ok
        # One side's route only: the request leaves A, but b1's answer has no way back (and
        # host-2 takes a1's address as forged without B's route to it).
        s.route(tables["a"], "10.62.0.0/16", VpcPeeringConnectionId=ab)
        assert not ping(lab, a1, B1, count=2).ok, "only A routes to A-B"
        assert not ping(lab, b1, A1, count=2).ok, "only A routes to A-B"
        # Both: both directions, ping and TCP.
        s.route(tables["b"], "10.61.0.0/16", VpcPeeringConnectionId=ab)
        wait_until(lambda: ping(lab, a1, B1).ok, 15, what="a1 -> b1 over A-B")
        assert ping(lab, b1, A1, count=2).ok
        # At the VPC's MTU: 9001-byte IP packets with DF set cross the peering both ways
        # (instances have 9001 by DHCP; VXLAN's 50 bytes fit the lab's 9100 underlay).
        for src, dst in ((a1, B1), (b1, A1)):
            r = PingResult(lab.exec(src, "ping", "-n", "-M", "do", "-s", "8973", "-c", "2",
                                    "-i", "0.2", "-W", "2", dst, timeout=30))
            assert r.ok and "8981 bytes from" in r.output, r
        if FAST:
            # a1 -> b1 leaves host-1 in the kernel, b1's answers leave host-2 in the kernel.
            hosts = ("host-1", "host-2")
            before = {h: metric_sum(lab.metrics(h), ROUTED) for h in hosts}
            r = lab.ping(a1, B1, count=10, wait=1, interval=0.05)
            assert r.ok and len(r.ttls) == 10, r
            wait_until(lambda: all(metric_sum(lab.metrics(h), ROUTED) - before[h] >= 5
                                   for h in hosts), 15,
                       what="peered packets carried by the kernel on both hosts")
        srv_b = Server(lab, b1, 8080)
        srv_a = Server(lab, a1, 8080)
        try:
            assert connects(lab, a1, B1, 8080)
            assert connects(lab, b1, A1, 8080)

            # B-C routed both ways: b1 <-> c1. A routes C's CIDR over A-B: not transitive.
            s.route(tables["b"], "10.63.0.0/16", VpcPeeringConnectionId=bc)
            s.route(tables["c"], "10.62.0.0/16", VpcPeeringConnectionId=bc)
            s.route(tables["a"], "10.63.0.0/16", VpcPeeringConnectionId=ab)
            s.route(tables["c"], "10.61.0.0/16", VpcPeeringConnectionId=bc)
            wait_until(lambda: ping(lab, b1, C1).ok, 15, what="b1 -> c1 over B-C")
            assert ping(lab, c1, B1).ok
            assert not ping(lab, a1, C1, count=2).ok, "A-B and B-C do not give A-C"
            assert not ping(lab, c1, A1, count=2).ok, "C-B and B-A do not give C-A"

            # D overlaps A and is peered with B, which routes 10.61.0.0/16 to A: d1 gets no
            # answer from b1 (b1's replies go to a1), and what b1 sends to 10.61.1.10 reaches
            # a1, never d1.
            s.route(tables["d"], "10.62.0.0/16", VpcPeeringConnectionId=bd)
            assert not ping(lab, d1, B1, count=2).ok, "B routes 10.61/16 to A, not D"
            with capture(lab, d1) as cap:
                assert connects(lab, b1, A1, 8080), "b1 reaches a1 at that address"
                assert ping(lab, b1, A1).ok
            leaked = [line for line in cap.lines if B1 in line]
            assert not leaked, f"b1's packets reached d1:\n{cap.text()}"

            # A group may reference a group of a peered VPC: b1 in a group of B that admits TCP
            # 8080 only from A's default group. a1 (a member, over A-B) connects; c1 (over B-C,
            # admitted by B's default group a moment before) does not. Then b1 goes back.
            assert connects(lab, c1, B1, 8080), "B's default group admits 10.0.0.0/8"
            web_b = s.ec2.create_security_group(GroupName="svt-peer-ref", Description="p",
                                                VpcId=vpcs["b"])["GroupId"]
            s.ec2.authorize_security_group_ingress(GroupId=web_b, IpPermissions=[{
                "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
                "UserIdGroupPairs": [{"GroupId": s.default_group(vpcs["a"])}]}])
            b1_eni = s.eni_of(b1)
            s.ec2.modify_network_interface_attribute(NetworkInterfaceId=b1_eni, Groups=[web_b])
            wait_connects(lab, c1, B1, 8080, False)
            assert connects(lab, a1, B1, 8080), "a1 is a member of A's default group"
            s.ec2.modify_network_interface_attribute(NetworkInterfaceId=b1_eni,
                                                     Groups=[s.default_group(vpcs["b"])])
            wait_connects(lab, c1, B1, 8080, True)

            # Deleting A-B cuts a1 and b1 at once; its routes become blackholes.
            s.ec2.delete_vpc_peering_connection(VpcPeeringConnectionId=ab)
            s.peerings.remove(ab)
            wait_until(lambda: not ping(lab, a1, B1).ok, 5, what="A-B traffic to stop")
            assert not ping(lab, b1, A1, count=2).ok
            assert not connects(lab, a1, B1, 8080, secs=1.0)
            states = s.route_states(tables["a"])
            assert states["10.62.0.0/16"] == "blackhole", states
            assert ping(lab, b1, C1).ok, "B-C is untouched"
        finally:
            srv_a.stop()
            srv_b.stop()
