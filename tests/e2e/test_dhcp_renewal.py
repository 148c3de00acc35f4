"""DHCP lease renewal at T1 (issue 11): an instance's own DHCP client (busybox's udhcpc, started
by the agent) renews its lease by itself, with nothing prodding it, and a DHCP option set
associated with its VPC meanwhile is what that renewal brings.

AWS's lease is an hour (T1 at 30 minutes), too long for a test, so this test adds a host by hand
whose agent hands out 30-second leases (`--dhcp-lease-seconds 30`, T1 at 15 s); the lab's own
hosts keep AWS's hour. The instance is in a VPC of its own, so no other test's option set moves.
"""

import re
import time
import uuid
from datetime import datetime

from e2e_harness import (PREFIX, SOFTVPC_BIN, STATE_DIR, WORK_DIR, HandHost, netns_exists, run,
                         wait_until)

SERVER_DIR = STATE_DIR / "server"
MAPPING = "198.18.0.1:8788"
HOST, HOST_IP = "host-x5", "198.18.0.65"
LEASE = 30
VM_IP = "10.77.0.65"


def lease_events(log):
    """(time, event, {key: value}) per line the client's event script logged."""
    events = []
    if not log.exists():
        return events
    for line in log.read_text().splitlines():
        stamp, event, *rest = line.split(" ")
        fields = dict(f.split("=", 1) for f in rest if "=" in f)
        events.append((datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"), event, fields))
    return events


def client_pids(netns):
    """The udhcpc processes running in `netns`."""
    pids = run(["ip", "netns", "pids", netns]).stdout.split()
    found = []
    for pid in pids:
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"udhcpc") for a in argv):
            found.append(int(pid))
    return found


def test_the_client_renews_at_t1_by_itself_and_gets_the_new_option_set(lab):
    host = HandHost(lab, HOST, HOST_IP, f"{PREFIX}x5", f"{PREFIX}x5p"[:15],
                    WORK_DIR / "x5-agent", WORK_DIR / "x5-agent.log", PREFIX, mtu=9100)
    vpc = subnet = dopt = iid = vm_ns = None
    try:
        host.plug()
        token = run([SOFTVPC_BIN, "server", "join-token", "--data-dir", str(SERVER_DIR),
                     "--host", HOST, "--ttl", "5m"], check=True).stdout.strip()
        host.start_agent(f"https://{MAPPING}", token, "--instance-addressing", "dhcp",
                         "--dhcp-lease-seconds", str(LEASE))
        wait_until(lambda: any(t["Value"] == HOST for h in lab.aws("describe-hosts")["Hosts"]
                               for t in h.get("Tags", [])), 60, what=f"{HOST} to register")
        vpc = lab.aws("create-vpc", "--cidr-block", "10.77.0.0/16")["Vpc"]["VpcId"]
        subnet = lab.aws("create-subnet", "--vpc-id", vpc, "--cidr-block", "10.77.0.0/24",
                         "--availability-zone", "us-east-1a")["Subnet"]["SubnetId"]
        out = lab.aws("run-instances", "--image-id", "ami-1", "--count", "1",
                      "--subnet-id", subnet, "--private-ip-address", VM_IP,
                      "--placement", f"HostId={lab.host_id(HOST)}")
        iid = out["Instances"][0]["InstanceId"]
        vm_ns = f"{PREFIX}{iid}"
        log = host.state / "dhcp" / f"{vm_ns}.lease.log"

        # The first lease: the short one, AWS's default option set.
        bound = wait_until(lambda: [e for e in lease_events(log) if e[1] == "bound"], 60,
                           what="the instance's client to be bound")[0]
        assert bound[2]["ip"] == f"{VM_IP}/24" and bound[2]["lease"] == str(LEASE), bound
        assert bound[2]["domain"] == "ec2.internal", bound
        [pid] = client_pids(vm_ns)

        domain = f"svt-{uuid.uuid4().hex[:8]}.example"
        dopt = lab.aws("create-dhcp-options", "--dhcp-configurations",
                       f"Key=domain-name,Values={domain}",
                       "Key=domain-name-servers,Values=AmazonProvidedDNS")[
            "DhcpOptions"]["DhcpOptionsId"]
        lab.aws("associate-dhcp-options", "--dhcp-options-id", dopt, "--vpc-id", vpc)

        # Renewals come at T1 (half the lease) without any signal; the set reaches the host
        # within the propagation time, so one of the first renewals brings it. Generous deadline
        # for a loaded machine: four lease times.
        def renewed_with_new_domain():
            return [e for e in lease_events(log)
                    if e[1] == "renew" and e[2].get("domain") == domain]
        seen = wait_until(renewed_with_new_domain, 4 * LEASE, interval=0.5,
                          what=f"a T1 renewal bringing domain {domain}")[0]
        events = lease_events(log)
        renewals = [e for e in events if e[1] == "renew"]
        print(f"lease {LEASE} s: renewals at "
              f"{[int((e[0] - bound[0]).total_seconds()) for e in renewals]} s after the bind; "
              f"{domain} seen at {int((seen[0] - bound[0]).total_seconds())} s")
        # By itself at T1: the first renewal came no sooner than half the lease after the bind
        # (the log's times are to the second), from the same client, without a new DISCOVER.
        assert (renewals[0][0] - bound[0]).total_seconds() >= LEASE // 2 - 1, events
        assert [e[1] for e in events].count("bound") == 1, events
        assert client_pids(vm_ns) == [pid]
        assert seen[2]["ip"] == f"{VM_IP}/24" and seen[2]["lease"] == str(LEASE), seen
        # The instance's resolver file follows, and its address is the ENI's still.
        resolv = run(["cat", f"/etc/netns/{vm_ns}/resolv.conf"], check=True).stdout
        assert re.search(rf"^search {re.escape(domain)}$", resolv, re.M), resolv
        assert re.search(r"^nameserver 10\.77\.0\.2$", resolv, re.M), resolv
        addr = run(["ip", "-n", vm_ns, "-o", "-4", "addr", "show", "dev", "eth0"],
                   check=True).stdout
        assert f"inet {VM_IP}/24 " in addr, addr
    finally:
        if iid:
            lab.aws("terminate-instances", "--instance-ids", iid, check=False)
            try:
                wait_until(lambda: not netns_exists(vm_ns), 30,
                           what="the instance namespace to go")
            except AssertionError:
                for pid in client_pids(vm_ns):
                    run(["kill", str(pid)])
                run(["ip", "netns", "del", vm_ns])
        host.stop()
        run([SOFTVPC_BIN, "server", "remove-host", "--data-dir", str(SERVER_DIR), HOST,
             "--force"])
        if subnet:
            # Deletable once the terminated instance's ENI is gone.
            deadline = time.monotonic() + 30
            while (lab.aws("delete-subnet", "--subnet-id", subnet, check=False).returncode
                   and time.monotonic() < deadline):
                time.sleep(0.5)
        if vpc:
            lab.aws("delete-vpc", "--vpc-id", vpc, check=False)
        if dopt:
            lab.aws("delete-dhcp-options", "--dhcp-options-id", dopt, check=False)
