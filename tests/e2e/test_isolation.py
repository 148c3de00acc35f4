"""Isolation between VPCs that use the same addresses.

zigi-vpc1 and zigi-vpc2 both use 10.0.0.0/16; zigi-vm1/other-vm1 are both 10.0.0.148 on host-1 and
zigi-vm2/other-vm2 both 10.0.0.185 on host-2. Each pair pings with its own payload pattern while
all four capture: each VPC's traffic arrives, and no frame of one VPC (by payload pattern or MAC)
ever appears in the other.
"""

import frames as fr

ZIGI_PATTERN = "5a160001"
OTHER_PATTERN = "0e160002"
ZIGI = ("zigi-vm1", "zigi-vm2")
OTHER = ("other-vm1", "other-vm2")


def test_overlapping_vpcs_never_see_each_other(lab, macs):
    for name in ZIGI + OTHER:
        lab.exec(name, "ip", "neigh", "flush", "all", check=True)
    with lab.capture(*ZIGI, *OTHER) as caps:
        zigi = lab.ping("zigi-vm1", "10.0.0.185", count=3, pattern=ZIGI_PATTERN)
        other = lab.ping("other-vm1", "10.0.0.185", count=3, pattern=OTHER_PATTERN)
        zigi_back = lab.ping("zigi-vm2", "10.0.0.148", count=2, pattern=ZIGI_PATTERN)
        other_back = lab.ping("other-vm2", "10.0.0.148", count=2, pattern=OTHER_PATTERN)
    for result in (zigi, other, zigi_back, other_back):
        assert result.ok, result

    zigi_bytes, other_bytes = bytes.fromhex(ZIGI_PATTERN) * 4, bytes.fromhex(OTHER_PATTERN) * 4
    zigi_macs = {macs[n] for n in ("zigi-vm1", "zigi-vm2", "zigi-vm3", "zigi-vm4", "kvm1")}
    other_macs = {macs[n] for n in OTHER}

    for mine, theirs, my_bytes, their_bytes, their_macs in (
            (ZIGI, OTHER, zigi_bytes, other_bytes, other_macs),
            (OTHER, ZIGI, other_bytes, zigi_bytes, zigi_macs)):
        for name in mine:
            cap = caps[name]
            # Our own pings arrived (so the capture works and would have seen a leak).
            assert cap.containing(my_bytes), f"{name} saw none of its VPC's pings:\n{cap.text()}"
            leaked = cap.containing(their_bytes)
            assert not leaked, f"{name} saw the other VPC's payload: {leaked}\n{cap.text()}"
            foreign = [f for f in cap.frames
                       if f.src in their_macs or f.dst in their_macs
                       or (f.arp() and f.arp()[1] in their_macs)]
            assert not foreign, f"{name} saw the other VPC's MACs: {foreign}\n{cap.text()}"
        # ARP for the shared address resolves to this VPC's owner, never the other's.
        answers = {f.arp()[1] for f in caps[mine[1]].frames
                   if f.arp() and f.arp()[0] == 2 and f.arp()[2] == "10.0.0.148"}
        assert answers == {macs[mine[0]]}, f"{mine[1]} resolved 10.0.0.148 to {answers}"


def test_an_address_of_another_vpc_does_not_exist(lab, macs):
    """10.0.0.30 is zigi-vm4's address in zigi-vpc1, on the same host as other-vm1 (zigi-vpc2):
    from other-vm1 it neither answers ARP nor ping, and zigi-vm4 sees nothing of it."""
    lab.exec("other-vm1", "ip", "neigh", "flush", "all", check=True)
    # Also a hand-built frame straight at zigi-vm4's MAC and IP (an attempt to cross VPCs with
    # a known MAC), and the same kind of frame to other-vm2 as the control.
    probe = fr.udp_frame(macs["other-vm1"], macs["zigi-vm4"], "10.0.0.148", "10.0.0.30",
                         b"svt-cross-vpc")
    control = fr.udp_frame(macs["other-vm1"], macs["other-vm2"], "10.0.0.148", "10.0.0.185",
                           b"svt-same-vpc")
    with lab.capture("zigi-vm4", "other-vm2") as caps:
        arp = lab.exec("other-vm1", "arping", "-I", "eth0", "-c", "2", "-w", "3", "10.0.0.30",
                       timeout=20)
        ping = lab.ping("other-vm1", "10.0.0.30", count=2, wait=1, pattern=OTHER_PATTERN)
        lab.send_frames("other-vm1", [probe, control])
    assert "Sent" in arp.stdout and arp.returncode == 1, arp.stdout
    assert not ping.ok and ping.received == 0, ping
    assert caps["other-vm2"].udp_containing(b"svt-same-vpc"), caps["other-vm2"].text()
    cap = caps["zigi-vm4"]
    assert not [f for f in cap.frames if f.src == macs["other-vm1"]], cap.text()
    assert not cap.containing(bytes.fromhex(OTHER_PATTERN) * 4), cap.text()
    assert not cap.containing(b"svt-cross-vpc"), cap.text()
