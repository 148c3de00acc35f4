"""Internet gateway and Elastic IPs on the wire (issue 11), with real clients (curl, Python
sockets) between the instances and the lab's internet namespace.

zigi-vm1 (10.0.0.148, host-1) and zigi-vm2 (10.0.0.185, host-2) are in zigi-vpc1's default
group. The test attaches an internet gateway to zigi-vpc1 and routes 0.0.0.0/0 to it in the
main route table, then: without a public IP nothing passes (counted `no_public_ip`); with an
Elastic IP curl to 203.0.113.10 sees the Elastic IP; the internet reaches the instance at its
Elastic IP exactly when a security group admits it; the Elastic IP moved to zigi-vm2 (another
host) goes with it; without the route nothing passes either way. Everything it made is removed
at the end, whatever happens.
"""

import subprocess
import sys
from pathlib import Path

from e2e_harness import wait_until

PROBE = str(Path(__file__).resolve().parent / "tcpprobe.py")
WEB = "203.0.113.10"
VM1, VM2 = "10.0.0.148", "10.0.0.185"


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
        wait_until(lambda: curl_web(lab, "zigi-vm1") == eip, 20, interval=0.3,
                   what=f"zigi-vm1's curl from {eip}")
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
        wait_until(lambda: curl_web(lab, "zigi-vm2") == eip, 20, interval=0.3,
                   what=f"zigi-vm2's curl from {eip}")
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
            for a in lab.aws("describe-addresses", "--allocation-ids", alloc)["Addresses"]:
                if a.get("AssociationId"):
                    lab.aws("disassociate-address", "--association-id", a["AssociationId"],
                            check=False)
            lab.aws("release-address", "--allocation-id", alloc, check=False)
        if routed:
            lab.aws("delete-route", "--route-table-id", rtb, "--destination-cidr-block",
                    "0.0.0.0/0", check=False)
        if igw:
            lab.aws("detach-internet-gateway", "--internet-gateway-id", igw, "--vpc-id", vpc,
                    check=False)
            lab.aws("delete-internet-gateway", "--internet-gateway-id", igw, check=False)
