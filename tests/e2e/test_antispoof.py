"""Anti-spoofing: a frame whose source MAC or source IP is not its ENI's own never arrives anywhere.

zigi-vm1 writes hand-built UDP frames on its eth0 (AF_PACKET): well-formed ones as a control, and
ones with a foreign source IP (unassigned, or zigi-vm4's) or a foreign source MAC, to zigi-vm4
(same host) and zigi-vm2 (other host). Captures at both show the controls and none of the spoofed
frames, and host-1's agent counts them as `spoofed_source`.
"""

import frames as fr

FOREIGN_MAC = "02:de:ad:be:ef:01"


def test_spoofed_frames_are_dropped_and_counted(lab, macs):
    vm1_mac, vm1_ip = macs["zigi-vm1"], "10.0.0.148"
    targets = {"zigi-vm4": "10.0.0.30", "zigi-vm2": "10.0.0.185"}
    legit, spoofed = [], []
    for name, ip in targets.items():
        dst = macs[name]
        legit.append(fr.udp_frame(vm1_mac, dst, vm1_ip, ip, f"svt-legit-{name}".encode()))
        spoofed += [
            fr.udp_frame(vm1_mac, dst, "10.0.0.99", ip, f"svt-spoof-ip-{name}".encode()),
            fr.udp_frame(vm1_mac, dst, "10.0.0.30" if name == "zigi-vm2" else "10.0.0.185", ip,
                         f"svt-spoof-peer-ip-{name}".encode()),
            fr.udp_frame(FOREIGN_MAC, dst, vm1_ip, ip, f"svt-spoof-mac-{name}".encode()),
            fr.udp_frame(macs["zigi-vm4"] if name == "zigi-vm2" else macs["zigi-vm2"], dst,
                         vm1_ip, ip, f"svt-spoof-peer-mac-{name}".encode()),
        ]

    before = lab.drops("host-1", "spoofed_source")
    with lab.capture(*targets) as caps:
        lab.send_frames("zigi-vm1", spoofed + legit)
        # A second legit round after the spoofed ones: the port still works.
        lab.send_frames("zigi-vm1", legit)
    after = lab.drops("host-1", "spoofed_source")

    for name, cap in caps.items():
        got = cap.udp_containing(f"svt-legit-{name}".encode())
        assert len(got) == 2, f"control frames did not reach {name}:\n{cap.text()}"
        leaked = cap.containing(b"svt-spoof")
        assert not leaked, f"spoofed frames reached {name}: {leaked}\n{cap.text()}"
        assert not [f for f in cap.frames if f.src == FOREIGN_MAC], cap.text()
    assert after - before >= len(spoofed), f"spoofed_source drops {before} -> {after}"
