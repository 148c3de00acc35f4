"""An ENI attached at device index 1 reaches the data plane as the instance's eth1, and follows
the ENI when it moves to an instance on another host (issue 3: "traffic follows the ENI").

Placement: A = zigi-vm1 (host-1, 10.0.0.148), B = zigi-vm2 (host-2, 10.0.0.185); the ENI lives
in the other subnet, 10.0.1.0/24. Clients: zigi-vm3 (host-2, 10.0.1.20: the ENI's subnet) and
zigi-vm4 (host-1, 10.0.0.30: another subnet, so replies from the ENI's address are routed by
the instance's policy rule out of eth1, not eth0). On A the ENI is reached across hosts from vm3
and locally from vm4; on B the other way round. Throughout, A's namespace is never re-created
(same inode, a process in it survives) and a ping to A's primary address loses nothing.

A second test puts an ENI of the primary's own subnet at device index 2 (no eth1) of a fresh
instance: replies from its address leave by eth2 even to that subnet, and terminating the
instance takes the namespace with both interfaces while the extra ENI survives, detached.
"""

import os
import re
import signal
import subprocess

from e2e_harness import (_STARTED, ECHO_REPLY_RE, ECHO_REQUEST_RE, PREFIX, metric_sum,
                         netns_exists, wait_until)

A, B = "zigi-vm1", "zigi-vm2"
CLIENTS = ("zigi-vm3", "zigi-vm4")
ENI_IP, SECOND_IP = "10.0.1.60", "10.0.1.61"
A_PRIMARY = "10.0.0.148"


def dev_addrs(lab, name, dev):
    """`ip -o -4 addr show dev DEV` in instance NAME ('' when DEV does not exist)."""
    proc = lab.exec(name, "ip", "-o", "-4", "addr", "show", "dev", dev)
    return proc.stdout if proc.returncode == 0 else ""


def dev_exists(lab, name, dev):
    return lab.exec(name, "ip", "link", "show", "dev", dev).returncode == 0


def port_of(lab, host, eni_id):
    return next((p for p in lab.mappings(host)["ports"] if p["eni_id"] == eni_id), None)


def netns_inode(netns):
    return os.stat(f"/run/netns/{netns}").st_ino


def echo_pairs(cap):
    text = cap.text()
    return set(ECHO_REQUEST_RE.findall(text)), set(ECHO_REPLY_RE.findall(text))


def assert_served_on(lab, owner, ip, dev="eth1", clients=CLIENTS):
    """Each client pings `ip`; a capture on the owner's `dev` sees each request arrive there and
    each reply leave there."""
    for client in clients:
        lab.wait_ping(client, ip, timeout=30)
    with lab.capture(owner, iface=dev) as caps:
        for client in clients:
            got = lab.ping(client, ip, count=2)
            assert got.ok and got.received == 2, f"{client} -> {ip} via {owner}'s {dev}: {got}"
    requests, replies = echo_pairs(caps[owner])
    for client in clients:
        src = lab.instance(client)["ip"]
        assert (src, ip) in requests, \
            f"no echo request {src} > {ip} on {owner}'s {dev}:\n{caps[owner].text()}"
        assert (ip, src) in replies, \
            f"no echo reply {ip} > {src} left {owner}'s {dev} (policy routing?):\n" \
            f"{caps[owner].text()}"


def instances_gauge(lab, host):
    return metric_sum(lab.metrics(host), "softvpc_instances")


def test_eni_moves_between_hosts_and_traffic_follows(lab):
    subnet_b = lab.instance("zigi-vm3")["subnet_id"]
    a_id, b_id = lab.instance(A)["instance_id"], lab.instance(B)["instance_id"]
    a_ns = lab.netns(A)
    assert lab.instance(A)["host"] == "host-1" and lab.instance(B)["host"] == "host-2"
    inode = netns_inode(a_ns)
    held = {h: instances_gauge(lab, h) for h in ("host-1", "host-2")}
    assert held["host-1"] >= 2 and held["host-2"] >= 2, held
    assert not dev_exists(lab, A, "eth1") and not dev_exists(lab, B, "eth1")
    before = lab.ping("zigi-vm3", ENI_IP, count=1, wait=1)
    assert not before.ok, f"{ENI_IP} answers before the ENI exists: {before}"

    # A process living in A's namespace, and a ping to A's primary address from another host,
    # both running for the whole test.
    sleeper = subprocess.Popen(["ip", "netns", "exec", a_ns, "sleep", "600"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pinger = subprocess.Popen(["ip", "netns", "exec", lab.netns("zigi-vm3"), "ping", "-n",
                               "-i", "0.2", "-W", "2", "-w", "400", A_PRIMARY],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _STARTED.extend([sleeper, pinger])

    eni = lab.aws("create-network-interface", "--subnet-id", subnet_b,
                  "--private-ip-address", ENI_IP)["NetworkInterface"]
    eni_id, mac = eni["NetworkInterfaceId"], eni["MacAddress"]
    attachment = None
    try:
        # 1. Attached to A at device index 1: A's eth1 on host-1.
        attachment = lab.aws("attach-network-interface", "--network-interface-id", eni_id,
                             "--instance-id", a_id, "--device-index", "1")["AttachmentId"]
        wait_until(lambda: f"{ENI_IP}/24" in dev_addrs(lab, A, "eth1"), 30,
                   what=f"{ENI_IP}/24 on {A}'s eth1")
        link = lab.exec(A, "ip", "-o", "link", "show", "dev", "eth1", check=True).stdout
        assert mac in link and "mtu 9001" in link, link
        port = port_of(lab, "host-1", eni_id)
        assert port and port["dev"] == "eth1" and port["device_index"] == 1, port
        assert port["instance_id"] == a_id and port["route_table"] == 10001, port
        rules = lab.exec(A, "ip", "rule", "show", check=True).stdout
        assert f"from {ENI_IP} lookup 10001" in rules, rules
        default = lab.exec(A, "ip", "route", "show", "default", check=True).stdout
        assert default.strip().startswith("default via 10.0.0.1 dev eth0"), default
        assert_served_on(lab, A, ENI_IP)

        # 2. A secondary address: added in place on eth1, with its own rule, and served.
        lab.aws("assign-private-ip-addresses", "--network-interface-id", eni_id,
                "--private-ip-addresses", SECOND_IP)
        wait_until(lambda: f"{SECOND_IP}/24" in dev_addrs(lab, A, "eth1"), 30,
                   what=f"{SECOND_IP}/24 on {A}'s eth1")
        rules = lab.exec(A, "ip", "rule", "show", check=True).stdout
        assert f"from {SECOND_IP} lookup 10001" in rules, rules
        assert_served_on(lab, A, SECOND_IP)

        # 3. Detached: eth1 leaves A (and its rules), nothing answers the addresses. The data
        # path closed the TAP itself (no read error from a device deleted under it).
        read_errors = metric_sum(lab.metrics("host-1"), "softvpc_io_errors_total", op="tap_read")
        lab.aws("detach-network-interface", "--attachment-id", attachment)
        attachment = None
        wait_until(lambda: not dev_exists(lab, A, "eth1"), 30, what=f"{A}'s eth1 to go")
        wait_until(lambda: port_of(lab, "host-1", eni_id) is None, 30,
                   what="host-1's agent to drop the ENI's port")
        rules = lab.exec(A, "ip", "rule", "show", check=True).stdout
        assert "10001" not in rules, rules
        assert metric_sum(lab.metrics("host-1"), "softvpc_io_errors_total",
                          op="tap_read") == read_errors
        gone = lab.ping("zigi-vm4", ENI_IP, count=2, wait=1)
        assert not gone.ok and gone.received == 0, gone

        # 4. Attached to B (host-2) at device index 1: traffic follows, both addresses.
        attachment = lab.aws("attach-network-interface", "--network-interface-id", eni_id,
                             "--instance-id", b_id, "--device-index", "1")["AttachmentId"]
        wait_until(lambda: all(f"{ip}/24" in dev_addrs(lab, B, "eth1")
                               for ip in (ENI_IP, SECOND_IP)), 30,
                   what=f"{ENI_IP} and {SECOND_IP} on {B}'s eth1")
        port = port_of(lab, "host-2", eni_id)
        assert port and port["dev"] == "eth1" and port["instance_id"] == b_id, port
        assert port_of(lab, "host-1", eni_id) is None
        assert not dev_exists(lab, A, "eth1"), f"{A} still has an eth1"
        assert_served_on(lab, B, ENI_IP)
        assert_served_on(lab, B, SECOND_IP)
        b_default = lab.exec(B, "ip", "route", "show", "default", check=True).stdout
        assert b_default.strip().startswith("default via 10.0.0.1 dev eth0"), b_default

        # Interfaces came and went; no namespace did, and nothing was skipped.
        assert {h: instances_gauge(lab, h) for h in held} == held
        for h in held:
            assert metric_sum(lab.metrics(h), "softvpc_enis_skipped") == 0, lab.metrics(h)

        # A's eth0 and namespace were never disturbed.
        assert lab.ping("zigi-vm4", A_PRIMARY, count=2).ok
        assert netns_inode(a_ns) == inode, f"{a_ns} was re-created"
        assert sleeper.poll() is None, "the process in A's namespace died"
        assert os.stat(f"/proc/{sleeper.pid}/ns/net").st_ino == inode, \
            "the process in A's namespace is not in A's namespace any more"
    finally:
        if attachment:
            lab.aws("detach-network-interface", "--attachment-id", attachment, check=False)
        def deleted():
            return lab.aws("delete-network-interface", "--network-interface-id", eni_id,
                           check=False).returncode == 0

        wait_until(deleted, 30, interval=1, what=f"{eni_id} to be deleted")
        if sleeper.poll() is None:
            os.kill(sleeper.pid, signal.SIGKILL)
        sleeper.wait(timeout=5)
        if pinger.poll() is None:
            os.kill(pinger.pid, signal.SIGINT)
        out, _ = pinger.communicate(timeout=10)

    wait_until(lambda: not dev_exists(lab, B, "eth1"), 30, what=f"{B}'s eth1 to go")
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, f"no ping statistics:\n{out}"
    sent, received = int(m.group(1)), int(m.group(2))
    answered = {int(n) for n in re.findall(r"icmp_seq=(\d+) ", out)}
    lost = sorted(set(range(1, sent + 1)) - answered)
    # The last echo may still be in flight when ping is interrupted.
    assert sent >= 20 and sent - received <= 1, \
        f"ping to A's primary address lost {sent - received} of {sent} (icmp_seq {lost}) " \
        f"during the moves:\n{out[-1500:]}"


def test_eni_in_the_primary_subnet_at_index_2_and_terminate(lab):
    subnet_a = lab.instance("zigi-vm1")["subnet_id"]
    host1 = lab.host_id("host-1")
    ip, extra_ip = "10.0.0.91", "10.0.0.92"
    before = instances_gauge(lab, "host-1")
    out = lab.aws("run-instances", "--image-id", "ami-1", "--count", "1", "--subnet-id", subnet_a,
                  "--private-ip-address", ip, "--placement", f"HostId={host1}",
                  "--tag-specifications",
                  "ResourceType=instance,Tags=[{Key=Name,Value=eni-move-d}]")
    iid = out["Instances"][0]["InstanceId"]
    netns = f"{PREFIX}{iid}"
    eni_id = None
    try:
        wait_until(lambda: netns_exists(netns), 30, what=f"namespace {netns}")
        eni = lab.aws("create-network-interface", "--subnet-id", subnet_a,
                      "--private-ip-address", extra_ip)["NetworkInterface"]
        eni_id = eni["NetworkInterfaceId"]
        lab.aws("attach-network-interface", "--network-interface-id", eni_id,
                "--instance-id", iid, "--device-index", "2")
        wait_until(lambda: f"{extra_ip}/24" in dev_addrs(lab, "eni-move-d", "eth2"), 30,
                   what=f"{extra_ip}/24 on eth2")
        assert not dev_exists(lab, "eni-move-d", "eth1")
        assert instances_gauge(lab, "host-1") == before + 1
        # vm2 (host-2) is in this subnet: the reply to it from eth2's address still leaves by
        # eth2 (table 10002), though eth0 is on the same subnet; vm3 is in the other one.
        assert_served_on(lab, "eni-move-d", extra_ip, dev="eth2",
                         clients=("zigi-vm2", "zigi-vm3"))
        # eth0's own traffic stays on eth0.
        assert_served_on(lab, "eni-move-d", ip, dev="eth0", clients=("zigi-vm2",))

        lab.aws("terminate-instances", "--instance-ids", iid)
        wait_until(lambda: not netns_exists(netns), 30,
                   what=f"namespace {netns} (eth0 and eth2) to go with the instance")
        wait_until(lambda: port_of(lab, "host-1", eni_id) is None, 30,
                   what="host-1's agent to drop eth2's port")
        assert instances_gauge(lab, "host-1") == before
        described = lab.aws("describe-network-interfaces", "--network-interface-ids",
                            eni_id)["NetworkInterfaces"][0]
        assert described["Status"] == "available" and "Attachment" not in described, described
        gone = lab.ping("zigi-vm2", extra_ip, count=2, wait=1)
        assert not gone.ok and gone.received == 0, gone
    finally:
        lab.aws("terminate-instances", "--instance-ids", iid, check=False)
        if eni_id:
            def deleted():
                return lab.aws("delete-network-interface", "--network-interface-id", eni_id,
                               check=False).returncode == 0

            wait_until(deleted, 30, interval=1, what=f"{eni_id} to be deleted")
    wait_until(lambda: not netns_exists(netns), 30, what=f"namespace {netns} to go")
