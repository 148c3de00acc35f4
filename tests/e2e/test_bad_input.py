"""Bad input is dropped and counted, never delivered, and the agent keeps running.

From an instance (raw AF_PACKET frames): truncated frames and IPv4 headers with lying lengths.
From the underlay (UDP to host-1's 198.18.0.11:4789): truncated VXLAN, the I flag clear, an unknown
VNI, a frame for a MAC that is not an ENI of that VNI on host-1 (sent from host-2's namespace, a
registered host); and well-formed VXLAN from the fabric namespace, which is not a registered host.
A well-formed VXLAN frame from host-2 is the control: it is delivered, so the path is real.
Last, bounded floods of random frames and datagrams (fixed seeds) from both sides.
"""

import sys

import frames as fr
from e2e_harness import SENDPKT


def _drops(lab, host, *reasons):
    return {r: lab.drops(host, r) for r in reasons}


def _traffic_still_flows(lab):
    for src, dst in (("zigi-vm1", "10.0.0.185"), ("zigi-vm2", "10.0.0.148"),
                     ("zigi-vm1", "10.0.0.30"), ("zigi-vm1", "10.0.1.20")):
        result = lab.ping(src, dst, count=1)
        assert result.ok, f"{src} -> {dst} after bad input: {result}"


def test_malformed_frames_from_an_instance(lab, macs):
    src, dst = macs["zigi-vm1"], macs["zigi-vm4"]
    good_ip = fr.ipv4("10.0.0.148", "10.0.0.30", 17,
                      fr.udp("10.0.0.148", "10.0.0.30", 40000, 9999, b"svt-bad-length"))
    bad = [
        fr.ethernet(dst, src, fr.ETH_IPV4, b""),                      # no IPv4 header at all
        fr.ethernet(dst, src, fr.ETH_IPV4, good_ip[:12]),             # truncated IPv4 header
        fr.ethernet(dst, src, fr.ETH_IPV4, fr.ipv4(                   # total length > frame
            "10.0.0.148", "10.0.0.30", 17, good_ip[20:], total_length=1400)),
        fr.ethernet(dst, src, fr.ETH_IPV4, fr.ipv4(                   # total length < header
            "10.0.0.148", "10.0.0.30", 17, good_ip[20:], total_length=12)),
        fr.ethernet(dst, src, fr.ETH_IPV4, fr.ipv4(                   # IHL below 5
            "10.0.0.148", "10.0.0.30", 17, good_ip[20:], ihl=3)),
        fr.ethernet(fr.BROADCAST, src, fr.ETH_ARP, bytes(10)),        # truncated ARP
    ]
    before = _drops(lab, "host-1", "malformed")
    with lab.capture("zigi-vm4") as caps:
        lab.send_frames("zigi-vm1", bad)
    after = _drops(lab, "host-1", "malformed")

    assert after["malformed"] - before["malformed"] >= len(bad), (before, after)
    delivered = [f for f in caps["zigi-vm4"].frames if f.raw in bad or b"svt-bad-length" in f.raw]
    assert not delivered, caps["zigi-vm4"].text()
    assert lab.agent_alive("host-1")
    _traffic_still_flows(lab)


def test_bad_vxlan_from_the_underlay(lab, macs):
    vm1 = lab.instance("zigi-vm1")
    vni = lab.vni(vm1["vpc_id"])
    host1_ip = lab.host("host-1")["underlay_ip"]

    def inner(marker, dst_mac=vm1["mac"]):
        return fr.udp_frame(macs["zigi-vm2"], dst_mac, "10.0.0.185", "10.0.0.148",
                            f"svt-underlay-{marker}".encode())

    bad_from_host2 = {
        "malformed": [b"\x08\x00\x00", fr.vxlan(vni, b""), fr.vxlan(vni, inner("short")[:10])],
        "vxlan_bad_flags": [fr.vxlan(vni, inner("no-i-flag"), flags=0x00)],
        "vxlan_unknown_vni": [fr.vxlan(0xFEDCBA, inner("unknown-vni"))],
        "vxlan_not_local": [fr.vxlan(vni, inner("not-local", dst_mac=macs["other-vm1"]))],
    }
    from_fabric = [fr.vxlan(vni, inner("unknown-source"))]
    control = fr.vxlan(vni, inner("control"))

    reasons = [*bad_from_host2, "vxlan_unknown_source"]
    before = _drops(lab, "host-1", *reasons)
    with lab.capture("zigi-vm1", "other-vm1") as caps:
        for payloads in bad_from_host2.values():
            lab.send_udp(lab.host("host-2")["netns"], host1_ip, 4789, payloads)
        lab.send_udp(lab.netns("fabric"), host1_ip, 4789, from_fabric)
        lab.send_udp(lab.host("host-2")["netns"], host1_ip, 4789, [control])
    after = _drops(lab, "host-1", *reasons)

    for reason, payloads in bad_from_host2.items():
        assert after[reason] - before[reason] >= len(payloads), (reason, before, after)
    assert after["vxlan_unknown_source"] - before["vxlan_unknown_source"] >= 1, (before, after)

    at_vm1 = caps["zigi-vm1"]
    assert at_vm1.udp_containing(b"svt-underlay-control"), \
        f"the well-formed control frame was not delivered:\n{at_vm1.text()}"
    for name, cap in caps.items():
        leaked = [f for f in cap.frames if b"svt-underlay-" in f.raw
                  and b"svt-underlay-control" not in f.raw]
        assert not leaked, f"bad VXLAN payload reached {name}: {leaked}\n{cap.text()}"
    assert lab.agent_alive("host-1")
    _traffic_still_flows(lab)


def _all_drops(lab, host):
    return sum(v for (name, _), v in lab.metrics(host).items() if name == "softvpc_drops_total")


def test_garbage_floods_leave_the_agents_running(lab, macs):
    """A bounded flood of random frames from an instance and random datagrams on the underlay
    (fixed seeds, 2,000 of each): everything is refused and counted, nothing stops."""
    count = 2000
    vnis = [str(lab.vni(lab.instance(n)["vpc_id"])) for n in ("zigi-vm1", "other-vm1")]
    before = {h: _all_drops(lab, h) for h in ("host-1", "host-2")}
    with lab.capture("zigi-vm4", "zigi-vm2") as caps:
        lab.exec("zigi-vm1", sys.executable, SENDPKT, "garbage-raw", "eth0", "5356", str(count),
                 macs["zigi-vm1"], macs["zigi-vm4"], macs["zigi-vm2"], timeout=120, check=True)
        lab.netns_exec(lab.host("host-2")["netns"], sys.executable, SENDPKT, "garbage-vxlan",
                       lab.host("host-1")["underlay_ip"], "7348", str(count), *vnis,
                       timeout=120, check=True)
    after = {h: _all_drops(lab, h) for h in ("host-1", "host-2")}

    # host-1 refused (nearly) all of both floods; the rest is what randomness made well-formed
    # enough to pass, e.g. an IPv4-looking frame for zigi-vm4 with zigi-vm1's own addresses.
    assert after["host-1"] - before["host-1"] >= count, (before, after)
    for name, cap in caps.items():
        from_vm1 = [f for f in cap.frames if f.src == macs["zigi-vm1"]]
        assert len(from_vm1) <= count // 100, f"{len(from_vm1)} garbage frames reached {name}"
    assert lab.agent_alive("host-1") and lab.agent_alive("host-2")
    _traffic_still_flows(lab)
