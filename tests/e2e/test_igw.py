"""Internet gateway and Elastic IPs on the wire (issue 11), with real clients (curl, Python
sockets) between the instances and the lab's internet namespace.

zigi-vm1 (10.0.0.148, host-1) and zigi-vm2 (10.0.0.185, host-2) are in zigi-vpc1's default
group. The test attaches an internet gateway to zigi-vpc1 and routes 0.0.0.0/0 to it in the
main route table, then: without a public IP nothing passes (counted `no_public_ip`); with an
Elastic IP curl to 203.0.113.10 sees the Elastic IP; the internet reaches the instance at its
Elastic IP exactly when a security group admits it; the Elastic IP moved to zigi-vm2 (another
host) goes with it; without the route nothing passes either way. An automatic public IPv4
(MapPublicIpOnLaunch) works the same way, until an Elastic IP replaces it. Everything the tests
make is removed at the end, whatever happens.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

from e2e_harness import PREFIX, WORK_DIR, Capture, metric_sum, netns_exists, wait_until

PROBE = str(Path(__file__).resolve().parent / "tcpprobe.py")
WEB = "203.0.113.10"
VM1, VM2 = "10.0.0.148", "10.0.0.185"
# The lab's internet router's MAC (softvpc-lab names::INTERNET_MAC).
INTERNET_MAC = "02:49:4e:45:54:01"


def eni_of(lab, vpc, ip):
    out = lab.aws("describe-network-interfaces", "--filters", f"Name=vpc-id,Values={vpc}",
                  f"Name=addresses.private-ip-address,Values={ip}")
    (eni,) = out["NetworkInterfaces"]
    return eni


def curl_web(lab, name, secs=2):
    """What 203.0.113.10 saw as the client's address ("" when nothing came back)."""
    proc = lab.exec(name, "curl", "-sS", "--max-time", str(secs), f"http://{WEB}/",
                    timeout=secs + 10)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def wait_curl_from(lab, name, eip, timeout=20):
    """Waits until `name`'s curl to the web server comes from `eip`. Meanwhile the internet's
    bridge is captured: when it never does, the failure says which MAC the internet sent the
    replies to, what ARP said about the address, and what each agent holds for it."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    inet = lab.netns("internet")
    cap = Capture(inet, "inet0", WORK_DIR / f"igw-{name}-{eip}.pcap", label="internet").start()
    try:
        wait_until(lambda: curl_web(lab, name) == eip, timeout, interval=0.3,
                   what=f"{name}'s curl from {eip}")
    except AssertionError as err:
        cap.stop()
        held = {h: [line for line in json.dumps(lab.mappings(h), indent=1).splitlines()
                    if eip in line] for h in ("host-1", "host-2")}
        raise AssertionError(
            f"{err}\n--- internet bridge (tcpdump -e, last 60 lines):\n"
            + "\n".join(cap.lines[-60:])
            + f"\n--- internet ip neigh:\n{lab.netns_exec(inet, 'ip', 'neigh').stdout}"
            + f"--- inet0 fdb:\n{lab.netns_exec(inet, 'bridge', 'fdb', 'show', 'br', 'inet0').stdout}"
            + f"--- the agents' mappings naming {eip}: {held}") from None
    finally:
        cap.stop()


def internet_connects(lab, ip, port, secs=1.5):
    proc = lab.netns_exec(lab.netns("internet"), sys.executable, PROBE, "connect", ip,
                          str(port), str(secs), timeout=secs + 10)
    return proc.returncode == 0


def test_elastic_ip_through_the_internet_gateway(lab):
    vpc = lab.instance("zigi-vm1")["vpc_id"]
    vm1_eni, vm2_eni = eni_of(lab, vpc, VM1), eni_of(lab, vpc, VM2)
    vm1_instance = vm1_eni["Attachment"]["InstanceId"]
    vm2_instance = vm2_eni["Attachment"]["InstanceId"]
    vm1_groups = [g["GroupId"] for g in vm1_eni["Groups"]]
    (rtb,) = lab.aws("describe-route-tables", "--filters", f"Name=vpc-id,Values={vpc}",
                     "Name=association.main,Values=true")["RouteTables"]
    rtb = rtb["RouteTableId"]
    igw = alloc = sg = None
    routed = False
    server = None
    try:
        igw = lab.aws("create-internet-gateway")["InternetGateway"]["InternetGatewayId"]
        lab.aws("attach-internet-gateway", "--internet-gateway-id", igw, "--vpc-id", vpc)
        lab.aws("create-route", "--route-table-id", rtb, "--destination-cidr-block",
                "0.0.0.0/0", "--gateway-id", igw)
        routed = True

        # Routed to the gateway, but no public IP: nothing passes, and it is counted.
        before = lab.drops("host-1", "no_public_ip")
        assert curl_web(lab, "zigi-vm1", 1) == ""
        wait_until(lambda: lab.drops("host-1", "no_public_ip") > before, 10,
                   what="no_public_ip counted")

        # An Elastic IP: the internet sees it as the source.
        addr = lab.aws("allocate-address", "--domain", "vpc")
        alloc, eip = addr["AllocationId"], addr["PublicIp"]
        lab.aws("associate-address", "--instance-id", vm1_instance, "--allocation-id", alloc)
        wait_curl_from(lab, "zigi-vm1", eip)
        assert lab.ping("zigi-vm1", WEB, count=2, wait=2).ok, "ICMP echo out and back"

        # From the internet to the Elastic IP: the default group admits only its members.
        server = subprocess.Popen(["ip", "netns", "exec", lab.netns("zigi-vm1"),
                                   sys.executable, PROBE, "serve", "8080"],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "ready"
        denied = lab.drops("host-1", "sg_denied")
        assert not internet_connects(lab, eip, 8080)
        assert lab.drops("host-1", "sg_denied") > denied
        # A group admitting tcp 8080 from anywhere: the internet connects.
        sg = lab.aws("create-security-group", "--group-name", "svt-igw", "--description", "i",
                     "--vpc-id", vpc)["GroupId"]
        lab.aws("authorize-security-group-ingress", "--group-id", sg, "--protocol", "tcp",
                "--port", "8080", "--cidr", "0.0.0.0/0")
        lab.aws("modify-instance-attribute", "--instance-id", vm1_instance, "--groups",
                *vm1_groups, sg)
        wait_until(lambda: internet_connects(lab, eip, 8080), 20, interval=0.3,
                   what="the internet reaches zigi-vm1:8080 at its Elastic IP")
        # Nothing reaches the private address or another port from the internet.
        assert not internet_connects(lab, VM1, 8080)
        assert not internet_connects(lab, eip, 8081)
        # The group says no again: refused again.
        lab.aws("modify-instance-attribute", "--instance-id", vm1_instance, "--groups",
                *vm1_groups)
        wait_until(lambda: not internet_connects(lab, eip, 8080), 20, interval=0.3,
                   what="zigi-vm1:8080 closed to the internet")

        # The Elastic IP moves to zigi-vm2 on host-2: it goes with it.
        lab.aws("associate-address", "--instance-id", vm2_instance, "--allocation-id", alloc,
                "--allow-reassociation")
        wait_curl_from(lab, "zigi-vm2", eip)
        assert curl_web(lab, "zigi-vm1", 1) == "", "zigi-vm1 has no public IP any more"

        # No route to the gateway: nothing passes, either way.
        lab.aws("delete-route", "--route-table-id", rtb, "--destination-cidr-block",
                "0.0.0.0/0")
        routed = False
        wait_until(lambda: curl_web(lab, "zigi-vm2", 1) == "", 20, interval=0.3,
                   what="zigi-vm2 cut from the internet")
        before = lab.drops("host-2", "no_igw_route")
        assert not lab.netns_exec(lab.netns("internet"), "ping", "-c", "2", "-W", "1",
                                  eip).returncode == 0
        assert lab.drops("host-2", "no_igw_route") > before
    finally:
        if server:
            server.kill()
            server.wait(timeout=5)
        lab.aws("modify-instance-attribute", "--instance-id", vm1_instance, "--groups",
                *vm1_groups, check=False)
        if sg:
            lab.aws("delete-security-group", "--group-id", sg, check=False)
        if alloc:
            lab.release_address(alloc)
        if routed:
            lab.aws("delete-route", "--route-table-id", rtb, "--destination-cidr-block",
                    "0.0.0.0/0", check=False)
        if igw:
            lab.remove_internet_gateway(igw, vpc)


def test_the_edge_follows_the_internet_routers_new_mac(lab):
    """The next hop on the internet side changes its MAC without a word (a router replaced;
    a Linux bridge without a set address takes its lowest port's, so an agent restart used to
    change it): the edge's cached MAC goes unproven, the edge asks again (ARP) and zigi-vm1
    reaches the internet again within seconds, at most the revalidation time (5 s) plus
    TCP's retransmission, not when some ARP happens to come by."""
    vpc = lab.instance("zigi-vm1")["vpc_id"]
    vm1_instance = eni_of(lab, vpc, VM1)["Attachment"]["InstanceId"]
    (rtb,) = lab.aws("describe-route-tables", "--filters", f"Name=vpc-id,Values={vpc}",
                     "Name=association.main,Values=true")["RouteTables"]
    rtb = rtb["RouteTableId"]
    inet = lab.netns("internet")
    igw = alloc = None
    routed = moved = False
    try:
        igw = lab.aws("create-internet-gateway")["InternetGateway"]["InternetGatewayId"]
        lab.aws("attach-internet-gateway", "--internet-gateway-id", igw, "--vpc-id", vpc)
        lab.aws("create-route", "--route-table-id", rtb, "--destination-cidr-block",
                "0.0.0.0/0", "--gateway-id", igw)
        routed = True
        addr = lab.aws("allocate-address", "--domain", "vpc")
        alloc, eip = addr["AllocationId"], addr["PublicIp"]
        lab.aws("associate-address", "--instance-id", vm1_instance, "--allocation-id", alloc)
        wait_curl_from(lab, "zigi-vm1", eip)

        asks = metric_sum(lab.metrics("host-1"), "softvpc_frames_total", path="edge_arp")
        lab.netns_exec(inet, "ip", "link", "set", "inet0", "address", "02:49:4e:45:54:99",
                       check=True)
        moved = True
        start = time.monotonic()
        wait_curl_from(lab, "zigi-vm1", eip, timeout=15)
        took = time.monotonic() - start
        assert metric_sum(lab.metrics("host-1"), "softvpc_frames_total",
                          path="edge_arp") > asks, "the edge asked for its next hop again"
        print(f"internet reached again {took:.1f} s after the router's MAC changed")
    finally:
        if moved:
            lab.netns_exec(inet, "ip", "link", "set", "inet0", "address", INTERNET_MAC)
            # Back at the lab's MAC before the next test (the edges follow it the same way).
            if alloc:
                wait_until(lambda: curl_web(lab, "zigi-vm1") == eip, 20, interval=0.3,
                           what="zigi-vm1 through the router at its usual MAC")
        if alloc:
            lab.release_address(alloc)
        if routed:
            lab.aws("delete-route", "--route-table-id", rtb, "--destination-cidr-block",
                    "0.0.0.0/0", check=False)
        if igw:
            lab.remove_internet_gateway(igw, vpc)


def test_automatic_public_ip_through_the_internet_gateway(lab):
    """An instance launched in a subnet with MapPublicIpOnLaunch (its own route table:
    0.0.0.0/0 -> an internet gateway) on host-2 gets an automatic public IPv4 that works on the
    wire both ways: curl to 203.0.113.10 sees it, the internet pings it (its group admits ICMP);
    an Elastic IP associated with it replaces it: the internet sees the Elastic IP and the old
    automatic address reaches nothing any more."""
    vpc = lab.instance("zigi-vm1")["vpc_id"]
    host2 = lab.host_id("host-2")
    igw = subnet = rtb = assoc = sg = iid = alloc = None
    netns = None
    try:
        igw = lab.aws("create-internet-gateway")["InternetGateway"]["InternetGatewayId"]
        lab.aws("attach-internet-gateway", "--internet-gateway-id", igw, "--vpc-id", vpc)
        subnet = lab.aws("create-subnet", "--vpc-id", vpc, "--cidr-block",
                         "10.0.8.0/24")["Subnet"]["SubnetId"]
        lab.aws("modify-subnet-attribute", "--subnet-id", subnet, "--map-public-ip-on-launch")
        rtb = lab.aws("create-route-table", "--vpc-id", vpc)["RouteTable"]["RouteTableId"]
        lab.aws("create-route", "--route-table-id", rtb, "--destination-cidr-block",
                "0.0.0.0/0", "--gateway-id", igw)
        assoc = lab.aws("associate-route-table", "--route-table-id", rtb, "--subnet-id",
                        subnet)["AssociationId"]
        sg = lab.aws("create-security-group", "--group-name", "svt-auto-ip", "--description",
                     "icmp from anywhere", "--vpc-id", vpc)["GroupId"]
        lab.aws("authorize-security-group-ingress", "--group-id", sg, "--protocol", "icmp",
                "--port", "-1", "--cidr", "0.0.0.0/0")
        out = lab.aws("run-instances", "--image-id", "ami-1", "--count", "1", "--subnet-id",
                      subnet, "--private-ip-address", "10.0.8.20", "--security-group-ids", sg,
                      "--placement", f"HostId={host2}")
        iid = out["Instances"][0]["InstanceId"]
        netns = f"{PREFIX}{iid}"
        desc = lab.aws("describe-instances", "--instance-ids", iid)[
            "Reservations"][0]["Instances"][0]
        auto = desc.get("PublicIpAddress")
        assert auto and auto.startswith("203.0.113."), desc
        wait_until(lambda: netns_exists(netns) and "10.0.8.20/" in lab.netns_exec(
            netns, "ip", "-o", "-4", "addr").stdout, 60, what=f"{iid} configured")

        # Out with the automatic address, and in at it.
        wait_until(lambda: curl_web(lab, iid) == auto, 30, interval=0.3,
                   what=f"{iid}'s curl from its automatic public IP {auto}")
        inet = lab.netns("internet")
        wait_until(lambda: lab.netns_exec(inet, "ping", "-c", "1", "-W", "1", auto)
                   .returncode == 0, 20, interval=0.3, what=f"the internet pings {auto}")

        # An Elastic IP replaces it: out and in at the Elastic IP, the old address is nobody's.
        addr = lab.aws("allocate-address", "--domain", "vpc")
        alloc, eip = addr["AllocationId"], addr["PublicIp"]
        lab.aws("associate-address", "--instance-id", iid, "--allocation-id", alloc)
        wait_until(lambda: curl_web(lab, iid) == eip, 30, interval=0.3,
                   what=f"{iid}'s curl from its Elastic IP {eip}")
        assert lab.netns_exec(inet, "ping", "-c", "2", "-W", "2", eip).returncode == 0
        desc = lab.aws("describe-instances", "--instance-ids", iid)[
            "Reservations"][0]["Instances"][0]
        assert desc.get("PublicIpAddress") == eip, desc
        # Allocated while the automatic address was held, so another one; that one is
        # released (AWS's behaviour) and nothing answers at it any more.
        assert eip != auto
        wait_until(lambda: lab.netns_exec(inet, "ping", "-c", "1", "-W", "1", auto)
                   .returncode != 0, 20, interval=0.3, what=f"{auto} answered by nobody")
    finally:
        if iid:
            lab.aws("terminate-instances", "--instance-ids", iid, check=False)
            wait_until(lambda: not netns_exists(netns), 60, what=f"{netns} gone")
        if alloc:
            lab.release_address(alloc)
        if assoc:
            lab.aws("disassociate-route-table", "--association-id", assoc, check=False)
        if rtb:
            lab.aws("delete-route-table", "--route-table-id", rtb, check=False)
        # The terminated instance's ENI goes a moment after its namespace.
        for what, args in (("security group", ["delete-security-group", "--group-id", sg]),
                           ("subnet", ["delete-subnet", "--subnet-id", subnet])):
            if args[-1]:
                deadline = time.monotonic() + 30
                while (lab.aws(*args, check=False).returncode != 0
                       and time.monotonic() < deadline):
                    time.sleep(0.5)
        if igw:
            lab.remove_internet_gateway(igw, vpc)
