"""Proxy ARP as seen by a real ARP client (iputils arping) inside the VPC.

RFC 5227 probes (sender 0.0.0.0): for one's own address nobody answers (no false conflict); for an
address another ENI owns the virtual router answers (conflict detection works). An unassigned
address gets no answer. Gratuitous ARP is absorbed: it reaches no other instance.
"""

import re

from frames import ETH_ARP


def _replies(output):
    """MACs in arping's "Unicast reply from IP [MAC]" lines."""
    return [m.lower() for m in re.findall(r"reply from \S+ \[([0-9A-Fa-f:]+)\]", output)]


def test_probe_for_own_address_gets_no_reply(lab):
    with lab.capture("zigi-vm4", "zigi-vm2") as caps:
        proc = lab.exec("zigi-vm1", "arping", "-D", "-I", "eth0", "-c", "2", "-w", "3",
                        "10.0.0.148", timeout=20)
    assert proc.returncode == 0, f"DAD for its own address must succeed:\n{proc.stdout}"
    assert re.search(r"Sent [1-9]\d* probe", proc.stdout), proc.stdout + proc.stderr
    assert not _replies(proc.stdout), proc.stdout
    for name, cap in caps.items():
        assert not [f for f in cap.frames if f.ethertype == ETH_ARP], f"probe reached {name}"


def test_probe_for_taken_address_detects_conflict(lab, macs):
    with lab.capture("zigi-vm4") as caps:
        proc = lab.exec("zigi-vm1", "arping", "-D", "-I", "eth0", "-c", "2", "-w", "3",
                        "10.0.0.30", timeout=20)
    assert proc.returncode == 1, f"DAD for zigi-vm4's address must see a conflict:\n{proc.stdout}"
    assert set(_replies(proc.stdout)) == {macs["zigi-vm4"]}, proc.stdout
    # The router answered on zigi-vm4's behalf: the probe itself never reached zigi-vm4.
    probes = [f for f in caps["zigi-vm4"].frames
              if f.arp() and f.arp()[0] == 1 and f.arp()[1] == macs["zigi-vm1"]]
    assert not probes, caps["zigi-vm4"].text()


def test_request_for_assigned_addresses_is_answered(lab, macs):
    for target, owner in (("10.0.0.185", "zigi-vm2"), ("10.0.0.30", "zigi-vm4")):
        proc = lab.exec("zigi-vm1", "arping", "-I", "eth0", "-c", "2", "-w", "3", target,
                        timeout=20)
        assert proc.returncode == 0, proc.stdout
        assert set(_replies(proc.stdout)) == {macs[owner]}, proc.stdout


def test_unassigned_address_gets_no_reply(lab):
    with lab.capture("zigi-vm4", "zigi-vm2") as caps:
        proc = lab.exec("zigi-vm1", "arping", "-I", "eth0", "-c", "3", "-w", "3", "10.0.0.99",
                        timeout=20)
    assert re.search(r"Sent [1-9]\d* probe", proc.stdout), proc.stdout + proc.stderr
    assert proc.returncode == 1 and not _replies(proc.stdout), proc.stdout
    for name, cap in caps.items():
        assert not [f for f in cap.frames if f.ethertype == ETH_ARP], f"request reached {name}"


def test_gratuitous_arp_is_absorbed(lab, macs):
    with lab.capture("zigi-vm4", "zigi-vm2", "other-vm1") as caps:
        unsolicited = lab.exec("zigi-vm1", "arping", "-U", "-I", "eth0", "-c", "2", "-w", "2",
                               "10.0.0.148", timeout=20)
        answer_mode = lab.exec("zigi-vm1", "arping", "-A", "-I", "eth0", "-c", "2", "-w", "2",
                               "10.0.0.148", timeout=20)
    sent = re.findall(r"Sent (\d+) probe", unsolicited.stdout + answer_mode.stdout)
    assert sent and all(int(n) >= 1 for n in sent), unsolicited.stdout + answer_mode.stdout
    for name, cap in caps.items():
        leaked = [f for f in cap.frames
                  if f.src == macs["zigi-vm1"] or (f.arp() and f.arp()[1] == macs["zigi-vm1"])]
        assert not leaked, f"gratuitous ARP from zigi-vm1 reached {name}:\n{cap.text()}"
