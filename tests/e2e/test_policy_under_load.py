"""Policy changes under a full-speed stream (issue 14, "Tests"): a revoked route or network ACL
stops an `iperf3` TCP stream between two hosts at once, a tracked stream survives the removal of
the security-group rule that admitted it while a new connection is refused, in whichever mode
the suite runs (the kernel fast path on, the default: the stream is first shown to run in the
kernel; `SOFTVPC_FAST_PATH=off`: every packet through the engine).

Scratch VPCs, each instance pair across host-1 (sender) and host-2 (receiver):
  route  P 10.81.0.0/16: p1 10.81.1.10 (host-1); Q 10.82.0.0/16: q1 10.82.1.10 (host-2);
         peered, each main table routing to the other over the peering; the stream p1 -> q1,
         then P's route to Q is deleted.
  ACL    V 10.80.0.0/16: a1 10.80.1.10 (subnet A, host-1), b1 10.80.2.10 (subnet B, host-2);
         the stream a1 -> b1 (routed across subnets), then the VPC's default ACL gets an
         ingress deny for it (rule 50) in front of its allow-all (100).
  group  V again: a1 -> b2 10.80.1.20 (subnet A, host-2, bridged), b2 only in a group whose
         one rule (tcp 5201-5202 from 10.80.0.0/16) admits the stream; the rule is revoked.
  move   V again: a UDP flood (iperf3 -u -b 0) from s1 10.80.1.10 (host-1) to an ENI
         10.80.1.70 of o1 (host-2), moved to n1 (host-1) under it.

When a host applied a change is its agent's own account: `/mappings` `table` is the revision
the table its data path decides with was built at (the control loop records it before handing
the table over, the data path when it takes it in, after the kernel fast path removed the older
table's flows). The test is the lab's only writer meanwhile, so a table revision above the one
each agent held before the call is the change's. What the receiver gets is sampled every 5 ms
inside its namespace from the IP layer's received bytes (`IpExt InOctets` of /proc/net/netstat:
every IPv4 packet its stack receives, whichever device or path delivered it; the fast path
hands frames to `eth0` by redirect, past the TAP's own counters). Times read from the samples
(when the count last grew, bytes after a moment) have the sampler's resolution: 5 ms, more
when the machine is loaded.

Stops: between the first sample after both agents reported the change and the sample 1.5 s
later, not one byte arrives (no margin), while the sender's iperf3 still runs and an engine
counts the drops of its retransmissions. Moved: the same for the old instance, from when its
host's data path took the ENI out (`/mappings` `local_changes`), while the flood reaches the
new instance. Survives: in the 2 s after both agents
reported it, the stream keeps at least a fifth of its rate before the change (with the fast
path on, back in the kernel: its packets counted there again), and a new connection to the
group's ports times out. Each run prints the stream's rate, the bytes received after the
change's table was in use on both hosts, and the time from the API call to the last byte.
"""

import contextlib
import os
import subprocess
import sys
import time

from e2e_harness import PREFIX, WORK_DIR, _STARTED, eni_gone, metric_sum, wait_until
from probes import Server, connects
from scratch import Scratch

FAST = os.environ.get("SOFTVPC_FAST_PATH", "on") == "on"
HOSTS = ("host-1", "host-2")  # the sender's, the receiver's
STREAM_SECS = 25  # iperf3's own bound; each case ends well within it (checked)
WINDOW = 1.5  # seconds after both agents applied a revocation in which nothing may arrive
KEEPS = 2.0  # seconds after the rule removal over which the tracked stream's rate is taken
PORT = 5201

# Samples the receiving namespace's IP-layer received bytes every 5 ms: "t_ns octets" when the
# count changed and at least every 100 ms regardless (so the file shows the sampler was alive
# through a silent window). Bounded by its own limit; SIGTERM ends it.
SAMPLER = r"""
import signal, sys, time
out, limit = sys.argv[1], float(sys.argv[2])
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
def octets():
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines, lines[1:]):
        if names.startswith("IpExt:") and values.startswith("IpExt:"):
            row = dict(zip(names.split()[1:], values.split()[1:]))
            return int(row["InOctets"])
    raise SystemExit("no IpExt InOctets in /proc/net/netstat")
end = time.monotonic() + limit
last, last_t = None, 0
with open(out, "w", buffering=1) as f:
    while not stop and time.monotonic() < end:
        now, n = time.time_ns(), octets()
        if n != last or now - last_t >= 100_000_000:
            f.write(f"{now} {n}\n")
            last, last_t = n, now
        time.sleep(0.005)
"""


def spawn(procs, netns, *cmd, out=None):
    """Starts `cmd` in `netns`, recorded in `procs` (killed by pid by the caller) and in the
    harness's list (killed at the session's end if still alive)."""
    proc = subprocess.Popen(["ip", "netns", "exec", netns, *map(str, cmd)],
                            stdout=out or subprocess.DEVNULL,
                            stderr=subprocess.STDOUT if out else subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    _STARTED.append(proc)
    procs.append(proc)
    return proc


def stop(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


class Sampler:
    """The IP-layer received bytes of one namespace, sampled every 5 ms (`SAMPLER`)."""

    def __init__(self, procs, netns, tag):
        WORK_DIR.mkdir(parents=True, exist_ok=True)
        self.tag, self.path = tag, WORK_DIR / f"load-{tag}-rx.txt"
        self.proc = spawn(procs, netns, sys.executable, "-c", SAMPLER, self.path,
                          STREAM_SECS + 30)

    def samples(self):
        rows = []
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and all(p.isdigit() for p in parts):
                    rows.append((int(parts[0]), int(parts[1])))
        return rows

    def at(self, t_ns):
        """(time, bytes) of the first sample at or after `t_ns`, or None."""
        return next(((t, n) for t, n in self.samples() if t >= t_ns), None)

    def until(self, t_ns, why=""):
        """Waits for a sample at or after `t_ns` (the sampler writes one at least every
        100 ms) and returns it."""
        return wait_until(lambda: self.at(t_ns), (t_ns - time.time_ns()) / 1e9 + 5,
                          interval=0.05, what=f"{self.tag}: the sampler to pass {t_ns} "
                                              f"(exit {self.proc.poll()}) {why}")

    def rate(self, secs=1.0):
        """Bytes per second received over the last `secs`."""
        rows = self.samples()
        a = self.at(time.time_ns() - int(secs * 1e9))
        if not a or not rows or rows[-1][0] <= a[0]:
            return 0.0
        return (rows[-1][1] - a[1]) / ((rows[-1][0] - a[0]) / 1e9)

    def last_change(self):
        """Time of the last sample whose byte count grew."""
        rows = self.samples()
        for (_, n0), (t1, n1) in zip(reversed(rows[:-1]), reversed(rows)):
            if n1 > n0:
                return t1
        return None


class Stream:
    """An iperf3 TCP stream from instance `src` to `dst_ip` (instance `dst`), at full speed,
    `STREAM_SECS` at most, with the receiver's sampler; every process killed by pid on exit."""

    def __init__(self, lab, src, dst, dst_ip, tag):
        self.lab, self.src, self.dst, self.dst_ip, self.tag = lab, src, dst, dst_ip, tag
        self.procs = []
        self.client_log = WORK_DIR / f"load-{tag}-client.txt"

    def __enter__(self):
        dst_ns, src_ns = f"{PREFIX}{self.dst}", f"{PREFIX}{self.src}"
        try:
            self.rx = Sampler(self.procs, dst_ns, self.tag)
            spawn(self.procs, dst_ns, "iperf3", "-s", "-1", "-B", self.dst_ip, "-p", PORT)
            wait_until(lambda: f":{PORT} " in self.lab.netns_exec(dst_ns, "ss", "-ltn").stdout,
                       10, interval=0.1, what="iperf3 to listen")
            self.client = spawn(self.procs, src_ns, "iperf3", "-c", self.dst_ip, "-p", PORT,
                                "-t", STREAM_SECS, "-i", "1", out=open(self.client_log, "w"))
        except BaseException:
            stop(self.procs)
            raise
        return self

    def __exit__(self, *exc):
        stop(self.procs)
        return False

    # The receiver's samples.
    def at(self, t_ns):
        return self.rx.at(t_ns)

    def until(self, t_ns):
        return self.rx.until(t_ns, self.why())

    def rate(self, secs=1.0):
        return self.rx.rate(secs)

    def last_change(self):
        return self.rx.last_change()

    def running(self):
        return self.client.poll() is None and self.rx.proc.poll() is None

    def why(self):
        client = self.client_log.read_text(errors="replace")[-1500:] \
            if self.client_log.exists() else ""
        return (f"(client exit {self.client.poll()}, sampler exit {self.rx.proc.poll()}; "
                f"client said:\n{client})")


def fast(lab, host, name="softvpc_fast_path_packets_total"):
    return metric_sum(lab.metrics(host), name)


def drops(lab):
    """softvpc_drops_total of both agents, "host:reason" -> count (nonzero ones)."""
    out = {}
    for h in HOSTS:
        for (name, labels), value in lab.metrics(h).items():
            if name == "softvpc_drops_total" and value:
                key = f"{h}:{dict(labels).get('reason', '?')}"
                out[key] = out.get(key, 0) + value
    return out


def at_speed(lab, stream):
    """Waits until the stream runs (at least 5 MB/s over a second) and, with the fast path on,
    in the kernel on both hosts (the sender's egress hook, the receiver's underlay hook: more
    than 1,000 of their packets in 1.5 s); returns the rate in bytes/s."""
    wait_until(lambda: stream.rate() > 5e6 or not stream.running(), 20, interval=0.25,
               what=f"{stream.tag}: the stream to run {stream.why()}")
    assert stream.running(), f"{stream.tag}: the stream ended early {stream.why()}"
    if FAST:
        before = {h: fast(lab, h) for h in HOSTS}
        wait_until(lambda: all(fast(lab, h) - before[h] > 1000 for h in HOSTS), 10,
                   interval=0.25, what=f"{stream.tag}: the stream carried by the kernel on "
                                       f"both hosts {({h: fast(lab, h) - before[h] for h in HOSTS})}")
        for h in HOSTS:
            errors, why = lab.fast_path_errors(h)
            assert errors == 0, f"{h}: {errors} fast path errors\n{why}"
    time.sleep(1.0)  # a full second at speed for the rate (not an assertion)
    rate = stream.rate()
    assert rate > 5e6, f"{stream.tag}: {rate / 1e6:.1f} MB/s {stream.why()}"
    return rate


def quiet_revisions(lab):
    """Each agent's view revision, once both hold the same one twice 0.3 s apart (caught up
    with the server: each gets every revision, as a delta or a heartbeat)."""
    def read():
        return {h: lab.mappings(h)["revision"] for h in HOSTS}

    def settled():
        first = read()
        time.sleep(0.3)
        second = read()
        return second if first == second and len(set(second.values())) == 1 else None

    return wait_until(settled, 15, interval=0.1, what="both agents at one revision")


def applied(lab, before, what, hosts=HOSTS):
    """Polls until the data path of each of `hosts` (those that hold what changed) uses a table
    built after `before` (its view's revision before the change); returns {host: table} and
    the time it saw the last one."""
    tables = {}

    def done():
        for h in hosts:
            if h not in tables:
                t = lab.mappings(h).get("table")
                if t and t["revision"] > before[h]:
                    tables[h] = t
        return len(tables) == len(hosts)

    wait_until(done, 15, interval=0.02, what=f"both agents to apply {what} (have {tables})")
    return tables, time.time_ns()


def revoke_and_check_it_stops(lab, stream, what, revoke):
    """Runs `revoke` under the stream and asserts that nothing more arrives once both agents
    applied it; prints the figures."""
    rate = at_speed(lab, stream)
    before = quiet_revisions(lab)
    drops_before = drops(lab)
    called = time.time_ns()
    revoke()
    returned = time.time_ns()
    tables, seen = applied(lab, before, what)
    in_use = max(t["at_unix_ns"] for t in tables.values())
    first = stream.until(seen)
    last = stream.until(seen + int(WINDOW * 1e9))
    end_running = stream.running()
    grew = {r: n - drops_before.get(r, 0) for r, n in drops(lab).items()
            if n > drops_before.get(r, 0)}
    after_in_use = last[1] - stream.at(in_use)[1]
    stopped = stream.last_change()
    diag = (f"{what}: rate before {rate * 8 / 1e9:.2f} Gbit/s; applied {tables} (seen "
            f"{(seen - called) / 1e6:.0f} ms after the call); bytes in the {WINDOW} s window "
            f"{last[1] - first[1]} ({first} -> {last}); after both tables were in use "
            f"{after_in_use}; last byte {(stopped - called) / 1e6 if stopped else 0:.0f} ms "
            f"after the call; drops grew {grew} {stream.why()}")
    print(f"\n{what} under a {rate * 8 / 1e9:.2f} Gbit/s iperf3 stream (fast path "
          f"{'on' if FAST else 'off'}): API call {(returned - called) / 1e6:.0f} ms, both agents "
          f"applied it {(in_use - called) / 1e6:.0f} ms after the call (seen after "
          f"{(seen - called) / 1e6:.0f} ms); the receiver's count last grew "
          f"{(stopped - called) / 1e6 if stopped else 0:.0f} ms after the call; bytes received "
          f"after both tables were in use: {after_in_use}, in the {WINDOW} s after they were "
          f"seen: {last[1] - first[1]}; the agents' drops {grew}; "
          f"load {os.getloadavg()[0]:.1f}")
    # No margin: the window starts when the test saw both agents report the change, 20-100 ms
    # after the later one took it in; what arrived in between (frames the other host had sent
    # before it applied, still queued: up to 126 KB with the fast path off, none with it on,
    # in this file's runs) is printed above, not asserted.
    assert last[1] == first[1], f"bytes arrived after both agents applied the change: {diag}"
    # The sender still sends (else silence proves nothing), and an engine drops it.
    assert end_running, f"the stream ended during the window: {diag}"
    assert sum(grew.values()) > 0, f"no drop counted: {diag}"
    return after_in_use


def test_a_revoked_peering_route_stops_a_full_speed_stream(lab):
    with Scratch(lab) as s:
        p, q = s.vpc("10.81.0.0/16"), s.vpc("10.82.0.0/16")
        p1 = s.launch(s.subnet(p, "10.81.1.0/24"), "10.81.1.10", HOSTS[0])
        q1 = s.launch(s.subnet(q, "10.82.1.0/24"), "10.82.1.10", HOSTS[1])
        for vpc in (p, q):
            s.open_default_group(vpc, "10.0.0.0/8")
        pcx = s.peering(p, q)
        rtb_p = s.main_table(p)
        s.route(rtb_p, "10.82.0.0/16", VpcPeeringConnectionId=pcx)
        s.route(s.main_table(q), "10.81.0.0/16", VpcPeeringConnectionId=pcx)
        wait_until(lambda: lab.ping(p1, "10.82.1.10", wait=1).ok, 30, interval=0.3,
                   what="p1 -> q1 over the peering")
        with Stream(lab, p1, q1, "10.82.1.10", "route") as stream:
            routed = fast(lab, HOSTS[0], "softvpc_fast_path_routed_packets_total") if FAST else 0
            revoke_and_check_it_stops(
                lab, stream, "DeleteRoute (P's route to Q over the peering)",
                lambda: s.ec2.delete_route(RouteTableId=rtb_p,
                                           DestinationCidrBlock="10.82.0.0/16"))
            if FAST:
                # The stream was a routed (peered) kernel flow at the sender's egress.
                assert fast(lab, HOSTS[0], "softvpc_fast_path_routed_packets_total") \
                    - routed > 1000


def test_an_acl_deny_stops_a_full_speed_stream(lab):
    with Scratch(lab) as s:
        vpc = s.vpc("10.80.0.0/16")
        a1 = s.launch(s.subnet(vpc, "10.80.1.0/24"), "10.80.1.10", HOSTS[0])
        b1 = s.launch(s.subnet(vpc, "10.80.2.0/24"), "10.80.2.10", HOSTS[1])
        (acl,) = s.ec2.describe_network_acls(Filters=[
            {"Name": "vpc-id", "Values": [vpc]},
            {"Name": "default", "Values": ["true"]}])["NetworkAcls"]
        wait_until(lambda: lab.ping(a1, "10.80.2.10", wait=1).ok, 30, interval=0.3,
                   what="a1 -> b1")
        with Stream(lab, a1, b1, "10.80.2.10", "acl") as stream:
            revoke_and_check_it_stops(
                lab, stream, "CreateNetworkAclEntry (ingress 50 deny tcp 5201 from subnet A)",
                lambda: s.ec2.create_network_acl_entry(
                    NetworkAclId=acl["NetworkAclId"], Egress=False, RuleNumber=50,
                    Protocol="6", RuleAction="deny", CidrBlock="10.80.1.0/24",
                    PortRange={"From": PORT, "To": PORT}))


def test_a_tracked_stream_survives_its_rule_removal_and_new_connections_are_refused(lab):
    with Scratch(lab) as s:
        vpc = s.vpc("10.80.0.0/16")
        subnet = s.subnet(vpc, "10.80.1.0/24")
        a1 = s.launch(subnet, "10.80.1.10", HOSTS[0])
        b2 = s.launch(subnet, "10.80.1.20", HOSTS[1])
        web = s.ec2.create_security_group(GroupName="svt-load-web", Description="w",
                                          VpcId=vpc)["GroupId"]
        rule = s.ec2.authorize_security_group_ingress(
            GroupId=web, IpPermissions=[{"IpProtocol": "tcp", "FromPort": PORT,
                                         "ToPort": PORT + 1,
                                         "IpRanges": [{"CidrIp": "10.80.0.0/16"}]}])[
            "SecurityGroupRules"][0]["SecurityGroupRuleId"]
        s.ec2.modify_network_interface_attribute(NetworkInterfaceId=s.eni_of(b2),
                                                 Groups=[web])
        probe = Server(lab, b2, PORT + 1)
        try:
            wait_until(lambda: connects(lab, a1, "10.80.1.20", PORT + 1, 1.0), 30,
                       interval=0.3, what="a1 -> b2:5202 admitted by the rule")
            with Stream(lab, a1, b2, "10.80.1.20", "sg") as stream:
                rate = at_speed(lab, stream)
                before = quiet_revisions(lab)
                installs = {h: fast(lab, h, "softvpc_fast_path_installs_total") for h in HOSTS} \
                    if FAST else {}
                called = time.time_ns()
                s.ec2.revoke_security_group_ingress(GroupId=web, SecurityGroupRuleIds=[rule])
                # Only the receiver's host holds its group (a1 is in the VPC's default group).
                tables, seen = applied(lab, before, "RevokeSecurityGroupIngress", [HOSTS[1]])
                carried = {h: fast(lab, h) for h in HOSTS} if FAST else {}
                first = stream.until(seen)
                last = stream.until(seen + int(KEEPS * 1e9))
                after = (last[1] - first[1]) / ((last[0] - first[0]) / 1e9)
                # A new connection, while the tracked one runs: refused (the SYN is dropped).
                refused = not connects(lab, a1, "10.80.1.20", PORT + 1, 2.0)
                alive = stream.running()
                later = stream.rate()
                diag = (f"rate before {rate * 8 / 1e9:.2f} Gbit/s, in the {KEEPS} s after "
                        f"host-2 applied the removal {after * 8 / 1e9:.2f} Gbit/s ({first} -> "
                        f"{last}), after the refused connect {later * 8 / 1e9:.2f} Gbit/s; "
                        f"applied {tables} {stream.why()}")
                print(f"\nRevokeSecurityGroupIngress under a {rate * 8 / 1e9:.2f} Gbit/s iperf3 "
                      f"stream (fast path {'on' if FAST else 'off'}): the receiver's host applied it "
                      f"{(max(t['at_unix_ns'] for t in tables.values()) - called) / 1e6:.0f} ms "
                      f"after the call; the tracked stream ran at {after * 8 / 1e9:.2f} Gbit/s "
                      f"over the next {KEEPS} s ({after / rate:.2f}x) and "
                      f"{later * 8 / 1e9:.2f} Gbit/s after a new connection was "
                      f"{'refused' if refused else 'ADMITTED'}; load {os.getloadavg()[0]:.1f}")
                assert alive, f"the tracked stream ended: {diag}"
                assert after >= rate / 5 and after > 5e6, f"the tracked stream slowed: {diag}"
                assert later > 5e6, f"the tracked stream stopped: {diag}"
                assert refused, f"a new connection was admitted after the removal: {diag}"
                if FAST:
                    # The change flushed host-2's kernel flows; its engine, which still tracks
                    # the connection, offered them again, and the kernel carries the stream on
                    # both hosts (host-1's egress flow was never flushed: no table change there).
                    wait_until(lambda: all(fast(lab, h) - carried[h] > 1000 for h in HOSTS), 10,
                               interval=0.25, what=f"the stream back in the kernel: {diag}")
                    assert fast(lab, HOSTS[1], "softvpc_fast_path_installs_total") \
                        > installs[HOSTS[1]], f"no flow installed again on host-2: {diag}"
        finally:
            probe.stop()


MOVED = "10.80.1.70"
SINK = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
time.sleep(float(sys.argv[2]))  # never reads: a full buffer drops silently (no ICMP errors)
"""


def local_change(lab, host, eni, key, after):
    """`host`'s first local change of a revision above `after` that has `eni` in `key`
    ("added"/"removed") and that its data path uses (stamped), or None."""
    for c in lab.mappings(host)["local_changes"]:
        if c["revision"] > after and eni in c[key] and c["at_unix_ns"]:
            return c
    return None


def test_a_moved_eni_gets_no_more_of_a_full_speed_flood_at_its_old_host(lab):
    """A UDP flood (iperf3 -u -b 0, reversed: the sender is iperf3's server) to an ENI's address;
    the ENI moves from `old` (host-2) to `new` (host-1) under it. Once host-2's data path uses
    the table without the ENI, `old` receives nothing more (its IP layer's bytes), while `new`
    gets the flood (which still runs)."""
    with Scratch(lab) as s:
        subnet = s.subnet(s.vpc("10.80.0.0/16"), "10.80.1.0/24")
        sender = s.launch(subnet, "10.80.1.10", HOSTS[0])
        old = s.launch(subnet, "10.80.1.20", HOSTS[1])
        new = s.launch(subnet, "10.80.1.30", HOSTS[0])
        eni = s.eni(subnet, MOVED)
        procs = []
        try:
            s.ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=old,
                                           DeviceIndex=1)
            wait_until(lambda: f"{MOVED}/24" in lab.exec(old, "ip", "-o", "-4", "addr", "show",
                                                         "dev", "eth1").stdout, 60,
                       what=f"{MOVED} on the old instance's eth1")
            old_rx = Sampler(procs, f"{PREFIX}{old}", "move-old")
            new_rx = Sampler(procs, f"{PREFIX}{new}", "move-new")
            spawn(procs, f"{PREFIX}{new}", sys.executable, "-c", SINK, PORT + 101,
                  STREAM_SECS + 30)
            sender_ns = f"{PREFIX}{sender}"
            server = spawn(procs, sender_ns, "iperf3", "-s", "-1", "-B", "10.80.1.10", "-p",
                           PORT + 100)
            wait_until(lambda: f":{PORT + 100} " in lab.netns_exec(sender_ns, "ss",
                                                                   "-ltn").stdout,
                       10, interval=0.1, what="iperf3 to listen")
            log = WORK_DIR / "load-move-client.txt"
            spawn(procs, f"{PREFIX}{old}", "iperf3", "-c", "10.80.1.10", "-p", PORT + 100,
                  "-B", MOVED, "--cport", PORT + 101, "-u", "-b", "0", "-l", "8000", "-R",
                  "-t", STREAM_SECS, out=open(log, "w"))

            def why():
                return (f"(server exit {server.poll()}; client said:\n"
                        f"{log.read_text(errors='replace')[-1500:] if log.exists() else ''})")

            wait_until(lambda: old_rx.rate() > 5e6 or server.poll() is not None, 20,
                       interval=0.25, what=f"the flood to reach the old instance {why()}")
            assert server.poll() is None, f"the flood ended early {why()}"
            if FAST:
                carried = fast(lab, HOSTS[1])
                wait_until(lambda: fast(lab, HOSTS[1]) - carried > 1000, 10, interval=0.25,
                           what="the flood carried by the kernel into host-2")
            time.sleep(1.0)  # a full second of flood for the rate (not an assertion)
            rate = old_rx.rate()
            before = quiet_revisions(lab)
            called = time.time_ns()
            att = s.ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])[
                "NetworkInterfaces"][0]["Attachment"]["AttachmentId"]
            s.ec2.detach_network_interface(AttachmentId=att)
            s.ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=new,
                                           DeviceIndex=1)
            change = wait_until(lambda: local_change(lab, HOSTS[1], eni, "removed",
                                                     before[HOSTS[1]]), 30, interval=0.02,
                                what="host-2 to take the moved ENI out of its data path")
            seen = time.time_ns()
            first = old_rx.until(seen, why())
            last = old_rx.until(seen + int(WINDOW * 1e9), why())
            after_applied = last[1] - old_rx.at(change["at_unix_ns"])[1]
            stopped = old_rx.last_change()
            diag = (f"flood {rate * 8 / 1e9:.2f} Gbit/s at the old instance; host-2 applied "
                    f"{change}, seen {(seen - called) / 1e6:.0f} ms after the detach call; old "
                    f"instance's bytes in the {WINDOW} s window {last[1] - first[1]} ({first} -> "
                    f"{last}), after host-2's table was in use {after_applied}; new instance "
                    f"{new_rx.rate() * 8 / 1e9:.2f} Gbit/s {why()}")
            assert last[1] == first[1], f"the old instance received after the move: {diag}"
            # The flood goes on, to the ENI's new instance (else silence proves nothing).
            wait_until(lambda: new_rx.rate() > 5e6, 30, interval=0.25,
                       what=f"the flood to reach the new instance: {diag}")
            alive = server.poll() is None
            print(f"\nENI move under a {rate * 8 / 1e9:.2f} Gbit/s UDP flood (fast path "
                  f"{'on' if FAST else 'off'}): the old host applied it "
                  f"{(change['at_unix_ns'] - called) / 1e6:.0f} ms after the detach call; the "
                  f"old instance's count last grew "
                  f"{(stopped - called) / 1e6 if stopped else 0:.0f} ms after the call; "
                  f"{after_applied} bytes after the old host's table was in use, "
                  f"{last[1] - first[1]} in the {WINDOW} s after it was seen; the new instance "
                  f"then got {new_rx.rate() * 8 / 1e9:.2f} Gbit/s; load "
                  f"{os.getloadavg()[0]:.1f}")
            assert alive, f"the flood ended: {diag}"
        finally:
            stop(procs)
            eni_gone(s.ec2, eni)
            s.enis.remove(eni)


