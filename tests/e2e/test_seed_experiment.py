"""The seed experiment (seeds 000/001): the first ping between two VMs, seen from the receiver.

With empty neighbour tables, zigi-vm1 (10.0.0.148, host-1) pings zigi-vm2 (10.0.0.185, host-2)
once. zigi-vm1's ARP request is answered by its host's virtual router from the mapping service, so
it never crosses the network: at zigi-vm2 the ICMP echo request is the first thing that arrives,
then zigi-vm2 asks ARP for 10.0.0.148 (answered by *its* router) and replies.
"""

from e2e_harness import ARP_REPLY_RE, ARP_REQUEST_RE, ECHO_REPLY_RE, ECHO_REQUEST_RE


def _relevant(lines):
    return [line for line in lines if " ARP" in line or "ICMP" in line]


def test_first_ping_arrives_before_any_arp(lab, macs, capsys):
    for vm in ("zigi-vm1", "zigi-vm2"):
        lab.exec(vm, "ip", "neigh", "flush", "all", check=True)
        assert "lladdr" not in lab.exec(vm, "ip", "neigh", "show", check=True).stdout

    with lab.capture("zigi-vm1", "zigi-vm2") as caps:
        result = lab.ping("zigi-vm1", "10.0.0.185", count=1, wait=3)
    assert result.ok, result

    at_vm1, at_vm2 = _relevant(caps["zigi-vm1"].lines), _relevant(caps["zigi-vm2"].lines)
    with capsys.disabled():
        print("\n--- seed experiment: zigi-vm1 (10.0.0.148) pings zigi-vm2 (10.0.0.185) once")
        print("--- tcpdump at zigi-vm1:\n" + "\n".join(at_vm1))
        print("--- tcpdump at zigi-vm2:\n" + "\n".join(at_vm2))

    # At zigi-vm1 the trace is ordinary: ARP request, reply (vm2's MAC), echo request, reply.
    vm1_arp = [ARP_REQUEST_RE.search(line) for line in at_vm1]
    assert any(m and m.groups() == ("10.0.0.185", "10.0.0.148") for m in vm1_arp), at_vm1
    vm1_replies = [m.groups() for m in map(ARP_REPLY_RE.search, at_vm1) if m]
    assert ("10.0.0.185", macs["zigi-vm2"]) in vm1_replies, at_vm1

    # At zigi-vm2: the echo request comes before any ARP.
    assert at_vm2, "nothing arrived at zigi-vm2"
    first = at_vm2[0]
    m = ECHO_REQUEST_RE.search(first)
    assert m and m.groups() == ("10.0.0.148", "10.0.0.185"), f"first frame at zigi-vm2: {first}"
    assert macs["zigi-vm1"] in first and macs["zigi-vm2"] in first, first

    # Then zigi-vm2 asks for 10.0.0.148, is answered with zigi-vm1's MAC, and replies.
    requests = [(i, m.groups()) for i, m in enumerate(map(ARP_REQUEST_RE.search, at_vm2)) if m]
    replies = [(i, m.groups()) for i, m in enumerate(map(ARP_REPLY_RE.search, at_vm2)) if m]
    echo_replies = [i for i, line in enumerate(at_vm2) if ECHO_REPLY_RE.search(line)]
    asked = [i for i, req in requests if req == ("10.0.0.148", "10.0.0.185")]
    assert asked, f"zigi-vm2 never asked ARP for 10.0.0.148:\n{at_vm2}"
    answered = [i for i, rep in replies if rep == ("10.0.0.148", macs["zigi-vm1"]) and i > asked[0]]
    assert answered, f"zigi-vm2's ARP request was not answered with zigi-vm1's MAC:\n{at_vm2}"
    assert echo_replies and echo_replies[0] > answered[0], at_vm2

    # zigi-vm1's ARP request never reached zigi-vm2: no broadcast crosses the network.
    assert not any(req == ("10.0.0.185", "10.0.0.148") for _, req in requests), at_vm2
    assert not any(f.arp() and f.arp()[2] == "10.0.0.148" and f.arp()[0] == 1
                   for f in caps["zigi-vm2"].frames), "an ARP request from zigi-vm1 reached vm2"
