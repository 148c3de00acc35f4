"""Interop with the Linux kernel's VXLAN device.

The lab's `kvtep` host is registered with the server but runs no agent. Here a kernel VTEP plays
its virtual router, flannel-style: a VXLAN device with the VPC's VNI (`nolearning proxy`), a bridge,
a veth to a VM namespace holding kvm1's ENI MAC and IP, a static FDB entry sending zigi-vm1's MAC to
host-1's underlay IP and a neighbour entry so the kernel answers kvm1's ARP. kvm1 and zigi-vm1 then
ping each other: softvpc's VXLAN is understood by the kernel and the kernel's by softvpc.
"""

from e2e_harness import ECHO_REQUEST_RE, PREFIX, run


def test_kernel_vxlan_vtep_exchanges_traffic_with_an_agent(lab, macs):
    kvtep, host1 = lab.host("kvtep"), lab.host("host-1")
    kvm, vm1 = lab.instance("kvm1"), lab.instance("zigi-vm1")
    assert kvm["vpc_id"] == vm1["vpc_id"] and kvm["host"] == "kvtep", kvm
    vni = lab.vni(kvm["vpc_id"])
    hns, vmns = kvtep["netns"], f"{PREFIX}kvm1"

    def ip(*args):
        return run(["ip", *args], check=True)

    try:
        ip("netns", "add", vmns)
        ip("-n", vmns, "link", "set", "lo", "up")
        ip("-n", hns, "link", "add", "kvx0", "type", "vxlan", "id", str(vni), "dstport", "4789",
           "local", kvtep["underlay_ip"], "dev", "u0", "nolearning", "proxy")
        ip("-n", hns, "link", "add", "kbr0", "type", "bridge")
        ip("-n", hns, "link", "set", "kvx0", "master", "kbr0")
        ip("-n", hns, "link", "add", "ktap0", "type", "veth", "peer", "name", "eth0",
           "netns", vmns)
        ip("-n", hns, "link", "set", "ktap0", "master", "kbr0")
        ip("-n", hns, "link", "set", "ktap0", "mtu", "1450")
        for dev in ("kvx0", "kbr0", "ktap0"):
            ip("-n", hns, "link", "set", dev, "up")
        ip("-n", vmns, "link", "set", "eth0", "address", kvm["mac"])
        ip("-n", vmns, "addr", "add", f"{kvm['ip']}/24", "dev", "eth0")
        ip("-n", vmns, "link", "set", "eth0", "mtu", "1450", "up")
        run(["bridge", "-n", hns, "fdb", "append", vm1["mac"], "dev", "kvx0",
             "dst", host1["underlay_ip"], "self", "permanent"], check=True)
        ip("-n", hns, "neigh", "add", vm1["ip"], "lladdr", vm1["mac"], "dev", "kvx0",
           "nud", "permanent")

        with lab.capture("zigi-vm1") as caps:
            to_agent = run(["ip", "netns", "exec", vmns, "ping", "-n", "-c", "3", "-W", "2",
                            "-i", "0.2", vm1["ip"]], timeout=30)
        assert to_agent.returncode == 0, f"kvm1 -> zigi-vm1 failed:\n{to_agent.stdout}"
        arrived = [line for line in caps["zigi-vm1"].lines if ECHO_REQUEST_RE.search(line)
                   and f"{kvm['ip']} > {vm1['ip']}" in line]
        assert arrived and kvm["mac"] in arrived[0], caps["zigi-vm1"].text()

        lab.exec("zigi-vm1", "ip", "neigh", "flush", "all", check=True)
        from_agent = lab.ping("zigi-vm1", kvm["ip"], count=3)
        assert from_agent.ok and from_agent.received == 3, from_agent
        neigh = lab.exec("zigi-vm1", "ip", "neigh", "show", kvm["ip"], check=True).stdout
        assert kvm["mac"] in neigh, f"zigi-vm1 resolved kvm1 to the wrong MAC: {neigh}"
    finally:
        run(["ip", "netns", "del", vmns])
        for dev in ("ktap0", "kbr0", "kvx0"):
            run(["ip", "-n", hns, "link", "del", dev])
