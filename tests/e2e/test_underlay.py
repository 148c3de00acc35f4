"""What crosses the underlay: VXLAN as the contract says, and never an ARP or a broadcast.

Captured on the fabric bridge while zigi-vm1 and other-vm1 (two VPCs, same addresses) ping their
peers on host-2 with empty neighbour tables, and zigi-vm1 sends gratuitous ARP: every VXLAN
datagram has the I flag, its VPC's VNI, UDP destination 4789, a source port in 49152..65535 that
is stable per flow, and checksum 0 (with the kernel fast path on, a flow's first packets carry the
engine's source port and the rest the kernel VXLAN device's: at most two per flow); no
encapsulated frame is ARP, broadcast or multicast.
"""

import os
import struct

from frames import ETH_ARP, Frame

FAST = os.environ.get("SOFTVPC_FAST_PATH", "on") == "on"
ZIGI_PATTERN, OTHER_PATTERN = "5a17a001", "0e17a002"


def _vxlan(frame):
    """(src_ip, dst_ip, sport, dport, checksum, flags, vni, inner Frame) or None."""
    ip = frame.ipv4()
    if not ip or ip[2] != 17:
        return None
    ihl = (frame.raw[14] & 0x0F) * 4
    udp = frame.raw[14 + ihl:]
    if len(udp) < 16:
        return None
    sport, dport, _length, csum = struct.unpack("!HHHH", udp[:8])
    if dport != 4789:
        return None
    flags, vni = udp[8], struct.unpack("!I", udp[12:16])[0] >> 8
    return ip[0], ip[1], sport, dport, csum, flags, vni, Frame(udp[16:])


def test_underlay_carries_only_well_formed_vxlan(lab, macs):
    vni1 = lab.vni(lab.instance("zigi-vm1")["vpc_id"])
    vni2 = lab.vni(lab.instance("other-vm1")["vpc_id"])
    assert vni1 != vni2
    h1, h2 = lab.host("host-1")["underlay_ip"], lab.host("host-2")["underlay_ip"]
    for name in ("zigi-vm1", "zigi-vm2", "other-vm1", "other-vm2"):
        lab.exec(name, "ip", "neigh", "flush", "all", check=True)

    with lab.capture("fabric", iface="br0") as caps:
        assert lab.ping("zigi-vm1", "10.0.0.185", count=3, pattern=ZIGI_PATTERN).ok
        assert lab.ping("other-vm1", "10.0.0.185", count=3, pattern=OTHER_PATTERN).ok
        lab.exec("zigi-vm1", "arping", "-U", "-I", "eth0", "-c", "2", "-w", "2", "10.0.0.148",
                 timeout=20)
        lab.exec("zigi-vm1", "arping", "-I", "eth0", "-c", "2", "-w", "2", "10.0.0.99",
                 timeout=20)
    cap = caps["fabric"]

    vxlan = [v for v in map(_vxlan, cap.frames) if v]
    assert vxlan, f"no VXLAN on the fabric:\n{cap.text()}"
    sports_by_flow = {}
    for src, dst, sport, _dport, csum, flags, vni, inner in vxlan:
        assert {src, dst} <= {h1, h2, lab.host("kvtep")["underlay_ip"]}, (src, dst)
        assert flags == 0x08, f"VXLAN flags {flags:#04x}"
        assert 49152 <= sport <= 65535, sport
        assert csum == 0, f"outer UDP checksum {csum:#06x}"
        assert inner.ethertype != ETH_ARP, f"an ARP frame crossed the network: {inner}"
        assert not int(inner.dst.split(":")[0], 16) & 1, f"broadcast/multicast crossed: {inner}"
        if bytes.fromhex(ZIGI_PATTERN) * 4 in inner.raw:
            assert vni == vni1, f"zigi-vpc1 traffic under VNI {vni:#x}"
        if bytes.fromhex(OTHER_PATTERN) * 4 in inner.raw:
            assert vni == vni2, f"zigi-vpc2 traffic under VNI {vni:#x}"
        ip = inner.ipv4()
        if ip:
            ihl = (inner.raw[14] & 0x0F) * 4
            ports = inner.raw[14 + ihl:14 + ihl + 8]  # ICMP: type, code, sum, id; UDP: ports
            flow_id = ports[4:6] if ip[2] == 1 else ports[0:4]
            sports_by_flow.setdefault((vni, src, ip[0], ip[1], ip[2], flow_id), set()).add(sport)

    carried = b"".join(v[7].raw for v in vxlan)
    for pattern in (ZIGI_PATTERN, OTHER_PATTERN):
        assert bytes.fromhex(pattern) * 4 in carried, f"pattern {pattern} not seen on the fabric"
    # One flow, one outer source port (so the underlay can spread flows without reordering them);
    # with the fast path, one for the engine's first packets and one for the kernel's.
    for flow, sports in sports_by_flow.items():
        assert len(sports) <= (2 if FAST else 1), f"flow {flow} used source ports {sports}"
    # Nothing of the VPCs travels on the fabric unencapsulated.
    for f in cap.frames:
        ip = f.ipv4()
        assert not (ip and (ip[0].startswith("10.") or ip[1].startswith("10."))), f
        arp = f.arp()
        assert not (arp and arp[2].startswith("10.")), f
