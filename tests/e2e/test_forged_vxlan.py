"""Forged VXLAN from a registered host (issue 10, receive side): a datagram is accepted only if
the mapping places its inner source on the host it came from.

From host-2's namespace (a registered host, so its underlay address passes the host check) to
host-1's VXLAN port, in zigi-vpc1's VNI, to zigi-vm1 (host-1): a control frame from zigi-vm2
(which host-2 holds), and frames claiming zigi-vm4 (held by host-1 itself), an address nobody
holds, zigi-vm1's own address, and zigi-vm4's address behind zigi-vm2's MAC. The capture in
zigi-vm1 shows the control and none of the forged ones; host-1's agent counts them as
`forged_source`, in total and on zigi-vm1's ENI.
"""

import frames as fr
from e2e_harness import metric_sum

VM1, VM2, VM4 = "10.0.0.148", "10.0.0.185", "10.0.0.30"


def test_forged_inner_source_is_dropped_and_counted(lab, macs):
    vni = lab.vni(lab.instance("zigi-vm1")["vpc_id"])
    vm1_mac = macs["zigi-vm1"]
    h1_ip = lab.host("host-1")["underlay_ip"]
    h2_ns = lab.host("host-2")["netns"]

    def datagram(src_mac, src_ip, marker):
        return fr.vxlan(vni, fr.udp_frame(src_mac, vm1_mac, src_ip, VM1, marker, dport=9999))

    control = datagram(macs["zigi-vm2"], VM2, b"svt-forge-control")
    forged = [
        datagram(macs["zigi-vm4"], VM4, b"svt-forge-vm4"),  # held by host-1, not host-2
        datagram("02:de:ad:be:ef:02", "10.0.0.99", b"svt-forge-nobody"),  # no such ENI
        datagram(macs["zigi-vm1"], VM1, b"svt-forge-itself"),  # the target's own address
        datagram(macs["zigi-vm2"], VM4, b"svt-forge-vm2-mac"),  # host-2's MAC, host-1's address
    ]

    def counted():
        m = lab.metrics("host-1")
        return (metric_sum(m, "softvpc_drops_total", reason="forged_source"),
                metric_sum(m, "softvpc_eni_drops_total", reason="forged_source"))

    before = counted()
    with lab.capture("zigi-vm1") as caps:
        lab.send_udp(h2_ns, h1_ip, 4789, forged)
        lab.send_udp(h2_ns, h1_ip, 4789, [control])
    after = counted()

    cap = caps["zigi-vm1"]
    assert cap.udp_containing(b"svt-forge-control"), \
        f"the control frame from zigi-vm2 did not reach zigi-vm1:\n{cap.text()}"
    leaked = [f for f in cap.frames if b"svt-forge-" in f.raw
              and b"svt-forge-control" not in f.raw]
    assert not leaked, f"forged frames reached zigi-vm1: {leaked}\n{cap.text()}"
    assert after[0] - before[0] >= len(forged), f"forged_source drops {before} -> {after}"
    assert after[1] - before[1] >= len(forged), f"zigi-vm1's ENI forged_source {before} -> {after}"
