"""DNS at the VPC's base + 2 and 169.254.169.253 (issue 11), answered by the VPC router on the
instance's host, asked with dig (dnsutils) inside instances: private IP names, reverse names with
enableDnsHostnames, public names resolving to the private address (split horizon),
enableDnsSupport=false, forwarding to the lab's upstream (the seed's internet runs a resolver on
203.0.113.10:53 that knows two names; the agents forward to it), SERVFAIL when the upstream does
not answer, malformed queries answered FORMERR or dropped and counted. (SERVFAIL without any
upstream: test_public_private.py, whose topology names no resolver.)"""

import os
import signal

from e2e_harness import metric_sum, wait_until

RESOLVER = "203.0.113.10"   # the seed's internet resolver (examples/seed-lab.toml)


def dig(lab, name, *args, server="10.0.0.2", vm="zigi-vm1"):
    proc = lab.exec(vm, "dig", f"@{server}", "+time=4", "+tries=1", *args, name, timeout=30)
    return proc.stdout + proc.stderr


def status_of(out):
    for line in out.splitlines():
        if "status:" in line:
            return line.split("status:")[1].split(",")[0].strip()
    return None


def answers(out):
    return [line.split()[-1] for line in out.splitlines()
            if line and not line.startswith(";") and "\tIN\t" in line.replace(" ", "\t")]


def counter(lab, host, reason=None, path=None):
    series = lab.metrics(host)
    if reason:
        return metric_sum(series, "softvpc_drops_total", reason=reason)
    return metric_sum(series, "softvpc_frames_total", path=path)


def test_private_names_at_base_plus_2_and_link_local(lab):
    before = counter(lab, "host-1", path="dns_replies")
    for server in ("10.0.0.2", "169.254.169.253"):
        out = dig(lab, "ip-10-0-0-185.ec2.internal", server=server)
        assert status_of(out) == "NOERROR", out
        assert answers(out) == ["10.0.0.185"], out
    out = dig(lab, "ip-10-0-1-20.ec2.internal", "+short")
    assert out.split() == ["10.0.1.20"], out
    out = dig(lab, "no-such-host.ec2.internal")
    assert status_of(out) == "NXDOMAIN", out
    assert counter(lab, "host-1", path="dns_replies") - before >= 4


def test_instances_resolv_conf_points_at_base_plus_2(lab):
    # Written by the instance's DHCP client from the VPC's option set; dig with no @server and
    # getent (glibc) use it.
    conf = lab.exec("zigi-vm2", "cat", "/etc/resolv.conf", check=True).stdout
    assert [line for line in conf.splitlines() if not line.startswith("#")] == \
        ["search ec2.internal", "nameserver 10.0.0.2"], conf
    proc = lab.exec("zigi-vm2", "dig", "+time=4", "+tries=2", "ip-10-0-1-20.ec2.internal",
                    timeout=30)
    assert status_of(proc.stdout) == "NOERROR" and answers(proc.stdout) == ["10.0.1.20"], proc
    assert "SERVER: 10.0.0.2#53" in proc.stdout, proc.stdout
    hosts = lab.exec("zigi-vm2", "getent", "hosts", "ip-10-0-0-148", timeout=30)
    assert hosts.returncode == 0 and hosts.stdout.split()[0] == "10.0.0.148", hosts


def test_reverse_names_follow_enable_dns_hostnames(lab):
    vpc = lab.instance("zigi-vm1")["vpc_id"]
    out = dig(lab, "10.0.0.185", "-x")
    # Not the router's without hostnames: forwarded (the lab's resolver knows no such name).
    assert status_of(out) in ("NXDOMAIN", "SERVFAIL") and not answers(out), out
    lab.aws("modify-vpc-attribute", "--vpc-id", vpc, "--enable-dns-hostnames", '{"Value":true}')
    try:
        wait_until(lambda: "ip-10-0-0-185.ec2.internal." in dig(lab, "10.0.0.185", "+short", "-x"),
                   15, interval=0.5, what="the PTR record with enableDnsHostnames")
    finally:
        lab.aws("modify-vpc-attribute", "--vpc-id", vpc, "--enable-dns-hostnames", '{"Value":false}')


def test_disabled_dns_support_answers_nothing(lab):
    vpc = lab.instance("other-vm1")["vpc_id"]
    lab.aws("modify-vpc-attribute", "--vpc-id", vpc, "--enable-dns-support", '{"Value":false}')
    try:
        before = counter(lab, "host-1", reason="dns_disabled")
        wait_until(lambda: "timed out" in dig(lab, "ip-10-0-0-185.ec2.internal", vm="other-vm1")
                   or "no servers could be reached" in dig(lab, "ip-10-0-0-185.ec2.internal",
                                                           vm="other-vm1"),
                   30, interval=0.5, what="no DNS answer with enableDnsSupport=false")
        assert counter(lab, "host-1", reason="dns_disabled") > before
        # The other VPC still resolves.
        assert answers(dig(lab, "ip-10-0-0-185.ec2.internal")) == ["10.0.0.185"]
    finally:
        lab.aws("modify-vpc-attribute", "--vpc-id", vpc, "--enable-dns-support", '{"Value":true}')
    wait_until(lambda: answers(dig(lab, "ip-10-0-0-185.ec2.internal", vm="other-vm1"))
               == ["10.0.0.185"], 30, interval=0.5, what="DNS back on")


def test_other_names_are_forwarded_and_servfail_without_an_answer(lab):
    # The lab's resolver (in its internet) answers the names it knows, NXDOMAIN the rest; the
    # routers of both hosts forward to it through their agents.
    before = counter(lab, "host-2", path="dns_forwarded")
    for vm, server in (("zigi-vm1", "10.0.0.2"), ("zigi-vm2", "169.254.169.253")):
        out = dig(lab, "www.example.test", server=server, vm=vm)
        assert status_of(out) == "NOERROR", out
        assert answers(out) == ["203.0.113.10"], out
    assert answers(dig(lab, "client.example.test", vm="zigi-vm3")) == ["203.0.113.11"]
    out = dig(lab, "nowhere.example.test")
    assert status_of(out) == "NXDOMAIN", out
    assert counter(lab, "host-2", path="dns_forwarded") > before
    # glibc's resolver in an instance goes the same way (resolv.conf: the VPC's +2).
    hosts = lab.exec("zigi-vm4", "getent", "hosts", "www.example.test", timeout=30)
    assert hosts.returncode == 0 and hosts.stdout.split()[0] == "203.0.113.10", hosts
    # The same resolver answers on the internet itself.
    out = lab.netns_exec(lab.netns("internet"), "dig", f"@{RESOLVER}", "+time=4", "+tries=1",
                         "+short", "www.example.test", timeout=30).stdout
    assert out.split() == ["203.0.113.10"], out
    # The upstream does not answer (the internet's servers stopped for a moment): SERVFAIL
    # from the router after its timeout, not a hang.
    pid = lab.status()["internet"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        out = dig(lab, "www.example.test")
        assert status_of(out) == "SERVFAIL", out
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_until(lambda: answers(dig(lab, "www.example.test")) == ["203.0.113.10"], 15,
               interval=0.5, what="the lab's resolver back")


def test_malformed_queries_get_formerr_or_are_dropped_and_counted(lab):
    probe = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2)\n"
        "s.sendto(bytes.fromhex(sys.argv[1]),('10.0.0.2',53))\n"
        "try:\n print(s.recv(4096).hex())\n"
        "except socket.timeout:\n print('timeout')\n"
    )
    # A header promising one question, then garbage: FORMERR with the query's id.
    garbage = "abcd01000001000000000000" + "3f" * 20
    out = lab.exec("zigi-vm1", "python3", "-c", probe, garbage, timeout=15).stdout.strip()
    assert out != "timeout", out
    reply = bytes.fromhex(out)
    assert reply[:2] == bytes.fromhex("abcd") and reply[2] & 0x80 and reply[3] & 0x0F == 1, out
    # Shorter than a header: dropped, counted; the router keeps answering.
    before = counter(lab, "host-1", reason="dns_invalid")
    out = lab.exec("zigi-vm1", "python3", "-c", probe, "0102", timeout=15).stdout.strip()
    assert out == "timeout", out
    wait_until(lambda: counter(lab, "host-1", reason="dns_invalid") > before, 5,
               what="dns_invalid counted")
    assert answers(dig(lab, "ip-10-0-0-30.ec2.internal")) == ["10.0.0.30"]


def test_public_names_resolve_to_the_private_address_inside_the_vpc(lab):
    """Split horizon: with enableDnsHostnames, the public DNS name DescribeInstances shows for
    zigi-vm1's Elastic IP resolves, inside its VPC, to its private address (from another host's
    router too); without enableDnsHostnames the router does not answer it (it is forwarded)."""
    vpc = lab.instance("zigi-vm1")["vpc_id"]
    iid = lab.instance("zigi-vm1")["instance_id"]
    igw = alloc = None
    hostnames = False
    try:
        # AWS associates Elastic IPs only in VPCs with an internet gateway.
        igw = lab.aws("create-internet-gateway")["InternetGateway"]["InternetGatewayId"]
        lab.aws("attach-internet-gateway", "--internet-gateway-id", igw, "--vpc-id", vpc)
        addr = lab.aws("allocate-address", "--domain", "vpc")
        alloc, eip = addr["AllocationId"], addr["PublicIp"]
        lab.aws("associate-address", "--instance-id", iid, "--allocation-id", alloc)
        name = "ec2-" + eip.replace(".", "-") + ".compute-1.amazonaws.com"
        out = dig(lab, name, vm="zigi-vm2")
        # Not the router's without hostnames: forwarded (SERVFAIL with no upstream).
        assert status_of(out) in ("SERVFAIL", "NXDOMAIN") and not answers(out), out
        lab.aws("modify-vpc-attribute", "--vpc-id", vpc, "--enable-dns-hostnames",
                '{"Value":true}')
        hostnames = True
        desc = lab.aws("describe-instances", "--instance-ids", iid)[
            "Reservations"][0]["Instances"][0]
        assert desc["PublicDnsName"] == name, desc["PublicDnsName"]
        for vm, server in (("zigi-vm2", "10.0.0.2"), ("zigi-vm3", "169.254.169.253"),
                           ("zigi-vm1", "10.0.0.2")):
            wait_until(lambda v=vm, s=server: answers(dig(lab, name, server=s, vm=v))
                       == ["10.0.0.148"], 15, interval=0.5,
                       what=f"{name} -> 10.0.0.148 from {vm}")
        # glibc's resolver in the instance (its resolv.conf) says the same.
        hosts = lab.exec("zigi-vm2", "getent", "hosts", name, timeout=30)
        assert hosts.returncode == 0 and hosts.stdout.split()[0] == "10.0.0.148", hosts
    finally:
        if hostnames:
            lab.aws("modify-vpc-attribute", "--vpc-id", vpc, "--enable-dns-hostnames",
                    '{"Value":false}')
        if alloc:
            lab.release_address(alloc)
        if igw:
            lab.remove_internet_gateway(igw, vpc)
