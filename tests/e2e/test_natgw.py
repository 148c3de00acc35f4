"""NAT gateways on the wire (issue 11), with real clients (curl, ping, tracepath, Python
sockets) between private instances and the lab's internet namespace.

zigi-vpc1 gets a public subnet (10.0.9.0/24, its own route table: 0.0.0.0/0 -> an internet
gateway) holding a NAT gateway with an Elastic IP; the main route table (zigi-vm1 on host-1 and
zigi-vm2 on host-2 use it) sends 0.0.0.0/0 to the NAT gateway. Then: both instances' curl to
203.0.113.10 shows the gateway's Elastic IP, whichever host holds the gateway; 50 parallel
connections all work and the server saw 50 distinct address:port pairs; UDP echo and ping
through it, a fragmented 4,000-byte UDP datagram echoed whole; nothing from the internet
reaches the private instances (counted `nat_no_translation` on the gateway's host);
`tracepath` reports pmtu 1500 through it, and through the internet gateway with an Elastic IP.
Everything it made is removed at the end.
"""

import sys
import time
from pathlib import Path

from e2e_harness import metric_sum, wait_until

PROBE = str(Path(__file__).resolve().parent / "tcpprobe.py")
WEB = "203.0.113.10"
VM1, VM2 = "10.0.0.148", "10.0.0.185"
UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(b"through the nat gateway", ("203.0.113.10", 7))
data, peer = s.recvfrom(2048)
print(data.decode(), peer[0])
"""
# 4,000 bytes without DF from an eth0 of MTU 1500: the instance's kernel sends three fragments,
# the echo's answer comes back in fragments too (AWS's NAT gateway forwards fragmented UDP).
UDP_FRAGMENTED = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# IP_MTU_DISCOVER (10) = IP_PMTUDISC_DONT (0): no DF, so the kernel fragments (Python's
# socket module does not name these Linux constants).
s.setsockopt(socket.IPPROTO_IP, 10, 0)
s.settimeout(2)
data = bytes(i % 251 for i in range(4000))
for attempt in range(5):
    s.sendto(data, ("203.0.113.10", 7))
    try:
        got, peer = s.recvfrom(65535)
    except socket.timeout:
        continue
    print(got == data, len(got), peer[0])
    break
"""


def curl(lab, name, path="/", secs=3):
    """What 203.0.113.10 answered ("" when nothing came back)."""
    proc = lab.exec(name, "curl", "-sS", "--max-time", str(secs), f"http://{WEB}{path}",
                    timeout=secs + 10)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def nat_host(lab, nat_id):
    """The host whose agent holds the NAT gateway (its metrics name it)."""
    for host in ("host-1", "host-2"):
        text = lab.agent_get(host, "/metrics")
        if f'nat_gateway_id="{nat_id}"' in text:
            return host
    return None


def tracepath_pmtu(lab, name):
    """`tracepath -n` from instance NAME to 203.0.113.10 with eth0 at MTU 9001 (AWS's; a
    no-op once DHCP gives it): the path MTU it reports, or None."""
    lab.exec(name, "ip", "link", "set", "eth0", "mtu", "9001", check=True)
    proc = lab.exec(name, "tracepath", "-n", "-m", "6", WEB, timeout=60)
    for line in proc.stdout.splitlines():
        if "pmtu" in line and "Resume" in line:
            return int(line.split("pmtu")[1].split()[0])
    raise AssertionError(f"tracepath printed no summary: {proc.stdout} {proc.stderr}")


def test_nat_gateway(lab):
    vpc = lab.instance("zigi-vm1")["vpc_id"]
    (main,) = lab.aws("describe-route-tables", "--filters", f"Name=vpc-id,Values={vpc}",
                      "Name=association.main,Values=true")["RouteTables"]
    main = main["RouteTableId"]
    mtus = {n: lab.exec(n, "cat", "/sys/class/net/eth0/mtu").stdout.strip()
            for n in ("zigi-vm1", "zigi-vm2")}
    igw = subnet = rtb = assoc = alloc = nat = eip_vm = None
    routed = False
    try:
        igw = lab.aws("create-internet-gateway")["InternetGateway"]["InternetGatewayId"]
        lab.aws("attach-internet-gateway", "--internet-gateway-id", igw, "--vpc-id", vpc)
        subnet = lab.aws("create-subnet", "--vpc-id", vpc, "--cidr-block",
                         "10.0.9.0/24")["Subnet"]["SubnetId"]
        rtb = lab.aws("create-route-table", "--vpc-id", vpc)["RouteTable"]["RouteTableId"]
        lab.aws("create-route", "--route-table-id", rtb, "--destination-cidr-block",
                "0.0.0.0/0", "--gateway-id", igw)
        assoc = lab.aws("associate-route-table", "--route-table-id", rtb, "--subnet-id",
                        subnet)["AssociationId"]
        addr = lab.aws("allocate-address", "--domain", "vpc")
        alloc, eip = addr["AllocationId"], addr["PublicIp"]
        nat = lab.aws("create-nat-gateway", "--subnet-id", subnet, "--allocation-id",
                      alloc)["NatGateway"]["NatGatewayId"]
        wait_until(lambda: lab.aws("describe-nat-gateways", "--nat-gateway-ids", nat)
                   ["NatGateways"][0]["State"] == "available", 20, what="NAT gateway available")
        lab.aws("create-route", "--route-table-id", main, "--destination-cidr-block",
                "0.0.0.0/0", "--nat-gateway-id", nat)
        routed = True

        # Both private instances (one on each host) reach the internet as the Elastic IP.
        for name in ("zigi-vm1", "zigi-vm2"):
            wait_until(lambda n=name: curl(lab, n) == eip, 30, interval=0.3,
                       what=f"{name}'s curl from the NAT gateway's {eip}")
        held_by = nat_host(lab, nat)
        assert held_by in ("host-1", "host-2"), "an agent holds the NAT gateway"

        # 50 parallel connections from zigi-vm2: all answered, 50 distinct address:port pairs.
        script = (f"for i in $(seq 50); do curl -sS --max-time 10 http://{WEB}/addr & done; "
                  "wait")
        proc = lab.exec("zigi-vm2", "sh", "-c", script, timeout=60)
        seen = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
        assert len(seen) == 50, (proc.stdout, proc.stderr)
        assert all(s.rsplit(":", 1)[0] == eip for s in seen), seen
        assert len(set(seen)) == 50, f"translations not distinct: {sorted(seen)}"
        ports = [int(s.rsplit(":", 1)[1]) for s in seen]
        assert all(1024 <= p <= 65535 for p in ports)
        metrics = lab.metrics(held_by)
        assert metric_sum(metrics, "softvpc_nat_gateway_active_connection_count",
                          nat_gateway_id=nat) >= 50

        # UDP echo and ICMP echo through it.
        proc = lab.exec("zigi-vm1", sys.executable, "-c", UDP_ECHO, timeout=20)
        assert proc.stdout.split() == ["through", "the", "nat", "gateway", WEB], proc.stderr
        assert lab.ping("zigi-vm1", WEB, count=2, wait=2).ok, "ping through the NAT gateway"

        # Fragmented UDP both ways through it, whole at each end; no fragment dropped.
        frag_drops = lab.drops(held_by, "nat_fragment")
        lab.exec("zigi-vm1", "ip", "link", "set", "eth0", "mtu", "1500", check=True)
        proc = lab.exec("zigi-vm1", sys.executable, "-c", UDP_FRAGMENTED, timeout=30)
        assert proc.stdout.split() == ["True", "4000", WEB], (proc.stdout, proc.stderr)
        assert lab.drops(held_by, "nat_fragment") == frag_drops

        # Nothing from the internet reaches a private instance: not at the Elastic IP (no
        # translation: dropped and counted on the gateway's host), not at a private address.
        before = lab.drops(held_by, "nat_no_translation")
        for port in (80, 22, ports[0]):
            proc = lab.netns_exec(lab.netns("internet"), sys.executable, PROBE, "connect", eip,
                                  str(port), "1", timeout=15)
            assert proc.returncode != 0, f"the internet connected to {eip}:{port}"
        assert lab.drops(held_by, "nat_no_translation") >= before + 3
        proc = lab.netns_exec(lab.netns("internet"), sys.executable, PROBE, "connect", VM1,
                              "22", "1", timeout=15)
        assert proc.returncode != 0

        # Path MTU through the NAT gateway, then through the internet gateway with an
        # Elastic IP (zigi-vm1's subnet routed to the internet gateway instead).
        assert tracepath_pmtu(lab, "zigi-vm2") == 1500
        vm1_instance = lab.instance("zigi-vm1")["instance_id"]
        eip_vm = lab.aws("allocate-address", "--domain", "vpc")
        lab.aws("associate-address", "--instance-id", vm1_instance, "--allocation-id",
                eip_vm["AllocationId"])
        lab.aws("replace-route", "--route-table-id", main, "--destination-cidr-block",
                "0.0.0.0/0", "--gateway-id", igw)
        wait_until(lambda: curl(lab, "zigi-vm1") == eip_vm["PublicIp"], 30, interval=0.3,
                   what="zigi-vm1 through the internet gateway with its Elastic IP")
        assert tracepath_pmtu(lab, "zigi-vm1") == 1500
    finally:
        for name, mtu in mtus.items():
            if mtu:
                lab.exec(name, "ip", "link", "set", "eth0", "mtu", mtu)
        if eip_vm:
            lab.release_address(eip_vm["AllocationId"])
        if routed:
            lab.aws("delete-route", "--route-table-id", main, "--destination-cidr-block",
                    "0.0.0.0/0", check=False)
        if nat:
            lab.aws("delete-nat-gateway", "--nat-gateway-id", nat, check=False)
            deadline = time.time() + 20
            while time.time() < deadline:
                state = lab.aws("describe-nat-gateways", "--nat-gateway-ids", nat,
                                check=False)
                if state.returncode != 0 or '"deleted"' in state.stdout:
                    break
                time.sleep(0.3)
        if alloc:
            lab.aws("release-address", "--allocation-id", alloc, check=False)
        if assoc:
            lab.aws("disassociate-route-table", "--association-id", assoc, check=False)
        if rtb:
            lab.aws("delete-route-table", "--route-table-id", rtb, check=False)
        if subnet:
            lab.aws("delete-subnet", "--subnet-id", subnet, check=False)
        if igw:
            lab.remove_internet_gateway(igw, vpc)
