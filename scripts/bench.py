#!/usr/bin/env python3
"""Number-crunching half of scripts/bench.sh (the shell half builds the topologies).

  bench.py ping FILE             p50/p99/mean RTT (ms) from `ping` output (per-packet time=), and
                                 the share of replies under 12 us (the kernel path's fast mode)
  bench.py iperf FILE [STAT0 STAT1]   receiver throughput (Gbit/s) and retransmits from
                                 `iperf3 -J` (UDP: the packets the receiver got per second, in
                                 thousands); with /proc/stat's per-CPU lines before and after
                                 the run (bench.sh's cpu_snapshot), the machine's CPU seconds in
                                 all and each CPU's busy and softirq share
  bench.py propagation STATUS N  mapping propagation: N API changes (RunInstances and
                                 TerminateInstances in turn), each timed from the API call until
                                 every agent's /mappings reflects it; STATUS is `lab status --json`
  bench.py sg-propagation STATUS N [NAME NAME]   AuthorizeSecurityGroupIngress -> the rule
                                 holds on every agent, N rounds: the two instances (default
                                 bench-a and bench-b, one per host) in a group without inbound
                                 rules, each probing the other over UDP from a fresh flow every
                                 2 ms (tests/e2e/udpprobe.py); from the API call until both
                                 first echoes; the rule revoked between rounds
  bench.py drops STATUS          the agents' counters of drops outside and inside the engine
                                 (TAP queues, VXLAN socket buffer, engine), summed over agents
  bench.py rules STATUS N        puts N security-group rules on bench-b's ENI (N=0: back to the
                                 default group), half inbound, half outbound, in groups of at
                                 most the server's quota per direction (SOFTVPC_SG_RULES_PER_GROUP,
                                 default 60); one inbound rule (all from 10.0.0.0/16)
                                 and one outbound (all to 0.0.0.0/0) match, the rest never do
  bench.py serve PORT            (in bench-b) TCP server that accepts and closes, and a UDP
                                 socket on the same port that is never read; prints "ready"
  bench.py connect IP PORT N C [SECONDS [PORT0]]   (in bench-a) N new TCP connections, C at a
                                 time (the i-th from source port PORT0 + i if given),
                                 each closed by RST once made, for 60 s at most: connect time
                                 p50/p99 (SYN to SYN-ACK, the first packets of a flow) and new
                                 connections per second
  bench.py udp-flows IP PORT N   (in bench-a) one UDP datagram from each of N source ports
  bench.py hold-flows IP PORT N SECONDS PERIOD   (in bench-a) N UDP flows (source ports 20000
                                 on) kept tracked: one datagram from each every PERIOD seconds,
                                 for SECONDS at most (or until killed); prints "ready" and the
                                 flows made once the first round is sent
  bench.py kernel-count STATUS   what the lab's kernel holds for the fast path: tc filters
                                 (distinct priorities) on the hosts' underlay ingress and the
                                 instances' eth egress, the agents' installed flows
                                 (softvpc_fast_path_flows) and tracked connections, their CPU
                                 time and their data path's syncs with the engine's offer
  bench.py scale-report BASE SCALE [KBASE KSCALE]   bench.sh -S's table: the fast path's rows
                                 with 1,000 rules and N held flows next to its base rows of the
                                 same run; with the kernel's rows measured beside each, also
                                 each one's ratio to its kernel's, scale's over base's
  bench.py flowmem STATUS        the agents' resident memory and tracked flows / flow-table
                                 entries (summed over agents), to take before and after udp-flows
  bench.py merge-rounds [+EXTRA...] FILE...   bench.sh's rounds (-N): the rounds' figures (one
                                 file each) as one object of the same shape, each number the
                                 median over the rounds, the pings' percentiles over every
                                 round's replies pooled, each round's headline figures, and the
                                 members of each +EXTRA file (measured once) as they are
  bench.py report KERNEL SOFTVPC PROP [RULES [SGPROP]]   the final table (JSON files of the
                                 above)
  bench.py nat-addresses STATUS  (scripts/bench-nat.sh) web's Elastic IP and the NAT gateway's,
                                 as DescribeAddresses and DescribeNatGateways report them
  bench.py nat-report KERNEL MODE=SOFTVPC...    bench-nat.sh's table: the kernel's nftables
                                 half against each softvpc fast-path mode's
  bench.py services DNS NAME RUNS QUERIES   (in an instance: bench-nat.sh's app) the instance
                                 services of issue 11: busybox udhcpc's lease time on eth0 (start
                                 -> bound: DISCOVER, OFFER, REQUEST, ACK from the router; RUNS
                                 runs) and the A queries for NAME per second the router at DNS
                                 answers (one client, 64 in flight, QUERIES, 30 s at most)

Every figure is printed as one JSON object on stdout, so the shell can keep them in files.
"""

import ctypes
import http.client
import configparser
import json
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time

CLONE_NEWNET = 0x40000000


def percentile(values, p):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def ping_stats(path):
    text = open(path).read()
    times = [float(t) for t in re.findall(r"time=([\d.]+) ms", text)]
    if not times:
        raise SystemExit(f"no ping replies in {path}:\n{text}")
    sent = re.search(r"(\d+) packets transmitted", text)
    return ping_figures(times, int(sent.group(1)) if sent else None)


def ping_figures(times, sent):
    """The RTT figures of a list of replies' times (ms); the times are kept so that rounds
    can be pooled (merge_rounds)."""
    return {"n": len(times), "sent": sent, "times_ms": times,
            "p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99),
            "mean_ms": sum(times) / len(times), "min_ms": min(times), "max_ms": max(times),
            # A round trip that stays on one CPU's softirq takes 5-12 us here; above that it
            # waited (a cold cache, a descheduled vCPU): the share under 12 us moves less with
            # the load than the p50 does (BENCHMARKS.md, the fast path's session 10).
            "under_12us": sum(1 for t in times if t < 0.012) / len(times)}


def iperf_stats(path, stat0=None, stat1=None):
    out = iperf_figures(path)
    if stat0 is not None and stat1 is not None:
        a, b = read_cpu_stat(stat0), read_cpu_stat(stat1)
        # The whole machine's busy time during the run (user, nice, system, irq, softirq and
        # steal, every CPU): iperf3 itself, the agents and the kernel's softirq work,
        # comparable between the kernel half and softvpc's on a machine doing nothing else.
        busy = sum(b[c][1] - a[c][1] for c in a if c in b)
        out["machine_cpu_s"] = busy / os.sysconf("SC_CLK_TCK")
        out["per_cpu"] = per_cpu_shares(a, b)
    return out


def read_cpu_stat(path):
    """bench.sh's cpu_snapshot: per CPU, (all jiffies, busy jiffies, softirq jiffies)."""
    cpus = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 9 and f[0].startswith("cpu") and f[0] != "cpu":
            # user nice system idle iowait irq softirq steal
            v = [int(x) for x in f[1:9]]
            cpus[f[0]] = (sum(v), v[0] + v[1] + v[2] + v[5] + v[6] + v[7], v[6])
    return cpus


def per_cpu_shares(a, b):
    """Each CPU's busy and softirq share of the time between two read_cpu_stat() snapshots.
    On the fast path the kernel's softirq work is the data path, so its share per CPU shows
    whether the data path uses every core."""
    shares = []
    for cpu in sorted(a, key=lambda c: int(c[3:])):
        if cpu not in b:
            continue
        total = b[cpu][0] - a[cpu][0]
        if total <= 0:
            continue
        shares.append({"cpu": cpu, "busy": (b[cpu][1] - a[cpu][1]) / total,
                       "softirq": (b[cpu][2] - a[cpu][2]) / total})
    return shares


def per_cpu_text(shares):
    return ", ".join(f"{s['cpu']} {s['busy'] * 100:.0f}% ({s['softirq'] * 100:.0f}%)"
                     for s in shares)


def iperf_figures(path):
    data = json.load(open(path))
    if "error" in data:
        raise SystemExit(f"iperf3 failed: {data['error']}")
    end = data["end"]
    if data.get("start", {}).get("test_start", {}).get("protocol") == "UDP":
        # Packets the receiver got per second (the sender's count minus the receiver's losses).
        total = end["sum"]
        got = total["packets"] - total["lost_packets"]
        return {"kpps": got / total["seconds"] / 1e3, "sent_packets": total["packets"],
                "bytes": total["bytes"],
                "lost_packets": total["lost_packets"], "seconds": total["seconds"]}
    return {"gbps": end["sum_received"]["bits_per_second"] / 1e9,
            "sender_gbps": end["sum_sent"]["bits_per_second"] / 1e9,
            "retransmits": end["sum_sent"].get("retransmits"),
            "bytes": end["sum_received"]["bytes"],
            "seconds": end["sum_received"]["seconds"]}


def median_of(values):
    """The median of a list of like values: numbers directly (ints by median_low, so counts stay
    whole), dicts key by key, equal-length lists element by element; anything else (None,
    strings) the first round's."""
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        if all(isinstance(v, int) for v in values):
            return statistics.median_low(values)
        return statistics.median(values)
    if values and all(isinstance(v, dict) for v in values):
        return {k: median_of([v[k] for v in values if k in v]) for k in values[0]}
    if values and all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1:
        return [median_of(list(x)) for x in zip(*values)]
    return values[0] if values else None


# The headline figures: (name, member, field, format). Each round's are kept beside the
# medians for the per-round ratios.
HEADLINE = [("one stream", "iperf", "gbps", "{:.2f}"), ("8 streams", "iperf8", "gbps", "{:.2f}"),
            ("UDP 64 B", "udp64", "kpps", "{:.1f}"), ("ping p50", "ping", "p50_ms", "{:.3f}"),
            ("ping p99", "ping", "p99_ms", "{:.3f}")]


def merge_rounds(args):
    """bench.sh's rounds (-N): one object shaped as a round's figures, every number the median
    over the rounds, except the pings, whose percentiles are taken over every round's replies
    pooled; plus "rounds" (each round's headline figures) and "rounds_bytes" (what all the
    rounds' iperf3 runs moved, for the CPU per GB of counters that span every round).
    An argument +FILE adds FILE's members as they are (what was measured once, not per round)."""
    extra = {}
    for a in args:
        if a.startswith("+"):
            extra.update(json.load(open(a[1:])))
    rounds = [json.load(open(p)) for p in args if not p.startswith("+")]
    out = median_of(rounds)
    times = [r.get("ping", {}).get("times_ms") for r in rounds]
    if all(times):
        sent = [r["ping"].get("sent") for r in rounds]
        out["ping"] = ping_figures([t for ts in times for t in ts],
                                   sum(sent) if None not in sent else None)
    out["rounds"] = [{name: r.get(a, {}).get(b) for name, a, b, _ in HEADLINE} for r in rounds]
    out["rounds_bytes"] = sum(r.get(k, {}).get("bytes") or 0
                              for r in rounds for k in ("iperf", "iperf8", "udp64"))
    out.update(extra)
    return out


def rounds_text(kernel, soft, lead="softvpc/kernel"):
    """The per-round ratios of two merged halves (merge_rounds), one line."""
    kr, sr = kernel.get("rounds"), soft.get("rounds")
    if not kr or not sr or len(kr) != len(sr):
        return None
    parts = []
    for name, *_ in HEADLINE:
        ratios = [f"{s[name] / k[name]:.2f}" if k.get(name) and s.get(name) is not None
                  else "-" for k, s in zip(kr, sr)]
        parts.append(f"{name} {' '.join(ratios)}")
    return f"{lead} in each of the {len(kr)} rounds: " + "; ".join(parts) + "."


DROP_SERIES = {"tap_tx_dropped": "softvpc_port_tx_dropped_total",
               "underlay_socket_drops": "softvpc_underlay_socket_drops_total",
               "engine_drops": "softvpc_drops_total"}
# Kernel fast path work, summed like the drops (bench-nat.sh reports it).
FAST_SERIES = {"fast_installs": "softvpc_fast_path_installs_total",
               "fast_removals": "softvpc_fast_path_removals_total"}


def agent_series(netns):
    """(series name, value) of every sample on the agent's /metrics in NETNS."""
    text = subprocess.run(
        ["ip", "netns", "exec", netns, "curl", "-s", "-f", "--max-time", "5",
         "http://127.0.0.1:9469/metrics"], capture_output=True, text=True, check=True,
        timeout=10).stdout
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        yield re.split(r"[{ ]", line, maxsplit=1)[0], float(line.rsplit(None, 1)[1])


def agent_drops(status_path):
    """Sums, over the lab's agents, the drop counters of their /metrics (cumulative)."""
    status = json.load(open(status_path))
    totals = dict.fromkeys({**DROP_SERIES, **FAST_SERIES}, 0)
    totals["agent_cpu_s"] = 0.0
    for host in status["hosts"]:
        if not host.get("agent", True):
            continue
        # The agent's user + system CPU time so far (fields 14 and 15 of /proc/PID/stat).
        fields = open(f"/proc/{host['pid']}/stat").read().rsplit(")", 1)[1].split()
        totals["agent_cpu_s"] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for name, value in agent_series(host["netns"]):
            for key, series in {**DROP_SERIES, **FAST_SERIES}.items():
                if name == series:
                    totals[key] += int(value)
    return totals


class AgentPoller(threading.Thread):
    """Polls one agent's /mappings from inside its network namespace.

    The thread enters the namespace with setns(2), which moves only the calling thread, so its
    HTTP connection (and any reconnection) lives there while the rest of the process stays put."""

    def __init__(self, netns, port=9469):
        super().__init__(daemon=True)
        self.netns, self.port = netns, port
        self.ready, self.work, self.done = threading.Event(), threading.Event(), threading.Event()
        self.predicate, self.seen_at, self.error, self.stop = None, None, None, False
        self.polls = 0

    def run(self):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            fd = os.open(f"/run/netns/{self.netns}", os.O_RDONLY)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {self.netns}")
            os.close(fd)
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        except Exception as err:  # reported to the main thread
            self.error = err
            self.ready.set()
            return
        self.ready.set()
        while not self.stop:
            if not self.work.wait(timeout=0.5):
                continue
            self.work.clear()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not self.stop:
                try:
                    conn.request("GET", "/mappings")
                    body = conn.getresponse().read().decode()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    time.sleep(0.01)
                    continue
                self.polls += 1
                if self.predicate(body):
                    self.seen_at = time.monotonic()
                    break
                time.sleep(0.0005)
            self.done.set()

    def watch(self, predicate):
        self.predicate, self.seen_at = predicate, None
        self.done.clear()
        self.work.set()


def propagation(status_path, changes):
    import boto3
    from botocore.config import Config

    status = json.load(open(status_path))
    # Every API call is SigV4-signed with the key pair the lab's server generated.
    creds = configparser.ConfigParser()
    creds.read(status["credentials_file"])
    ak, sk = creds["default"]["aws_access_key_id"], creds["default"]["aws_secret_access_key"]
    ec2 = boto3.client("ec2", endpoint_url=status["api_url"], region_name="us-east-1",
                       aws_access_key_id=ak, aws_secret_access_key=sk,
                       config=Config(retries={"total_max_attempts": 1}))
    agents = [h for h in status["hosts"] if h.get("agent", True)]
    subnet_id = status["instances"][0]["subnet_id"]
    # Host ids by name, from an agent's view (the placement of each RunInstances alternates).
    view = json.loads(subprocess.run(
        ["ip", "netns", "exec", agents[0]["netns"], "curl", "-s", "-f", "--max-time", "5",
         "http://127.0.0.1:9469/mappings"], capture_output=True, text=True, check=True,
        timeout=10).stdout)
    host_ids = {h.get("name"): h.get("host_id") for h in view.get("hosts", [])}
    placements = [host_ids.get(h["name"]) for h in agents]

    pollers = [AgentPoller(h["netns"]) for h in agents]
    for p in pollers:
        p.start()
        p.ready.wait(10)
        if p.error:
            raise SystemExit(f"cannot poll the agent in {p.netns}: {p.error}")

    def timed(call, predicate):
        # The pollers start with the call: an agent may apply the change before the API answers.
        t0 = time.monotonic()
        for p in pollers:
            p.watch(predicate)
        result = call()
        api = time.monotonic() - t0
        for p in pollers:
            if not p.done.wait(35) or p.seen_at is None:
                raise SystemExit(f"agent in {p.netns} did not reflect the change within 30 s")
        return result, api, [p.seen_at - t0 for p in pollers]

    run_times, term_times, run_api, term_api, live = [], [], [], [], []
    run_on_placement, run_elsewhere = [], []  # when the placement host / the others saw it
    try:
        for i in range(changes // 2):
            ip = f"10.0.0.{50 + (i % 90)}"  # clear of the bench instances (.20, .148)
            placement = placements[i % len(placements)]
            kwargs = {"ImageId": "ami-1", "MinCount": 1, "MaxCount": 1, "SubnetId": subnet_id,
                      "PrivateIpAddress": ip}
            if placement:
                kwargs["Placement"] = {"HostId": placement}
            out, api, seen = timed(lambda: ec2.run_instances(**kwargs),
                                   lambda body, ip=ip: f'"{ip}"' in body)
            iid = out["Instances"][0]["InstanceId"]
            live.append(iid)
            run_times.append(max(seen))
            run_api.append(api)
            if placement:
                here = i % len(pollers)
                run_on_placement.append(seen[here])
                run_elsewhere += [t for j, t in enumerate(seen) if j != here]
            _, api, seen = timed(lambda: ec2.terminate_instances(InstanceIds=[iid]),
                                 lambda body, ip=ip: f'"{ip}"' not in body)
            live.remove(iid)
            term_times.append(max(seen))
            term_api.append(api)
    finally:
        if live:
            ec2.terminate_instances(InstanceIds=live)
        for p in pollers:
            p.stop = True
    both, api_times = run_times + term_times, run_api + term_api
    ms = lambda v: round(v * 1000, 2)  # noqa: E731
    return {"changes": len(both), "agents": len(pollers),
            "p50_ms": ms(percentile(both, 50)), "p99_ms": ms(percentile(both, 99)),
            "run_p50_ms": ms(percentile(run_times, 50)),
            "terminate_p50_ms": ms(percentile(term_times, 50)),
            "api_p50_ms": ms(percentile(api_times, 50)),
            "api_p99_ms": ms(percentile(api_times, 99)),
            "run_api_p50_ms": ms(percentile(run_api, 50)),
            "terminate_api_p50_ms": ms(percentile(term_api, 50)),
            "run_placement_host_p50_ms":
                ms(percentile(run_on_placement, 50)) if run_on_placement else None,
            "run_other_hosts_p50_ms":
                ms(percentile(run_elsewhere, 50)) if run_elsewhere else None,
            "max_ms": ms(max(both))}


UDPPROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e",
                        "udpprobe.py")


def sg_propagation(status_path, rounds, names=("bench-a", "bench-b")):
    """See the module doc; the instances get their groups back, and the group goes, whatever
    happens."""
    status = json.load(open(status_path))
    ec2 = ec2_client(status)
    insts = [next(i for i in status["instances"] if i["name"] == n) for n in names]
    vpc = insts[0]["vpc_id"]
    enis = []
    for i in insts:
        (e,) = ec2.describe_network_interfaces(Filters=[
            {"Name": "vpc-id", "Values": [vpc]},
            {"Name": "addresses.private-ip-address", "Values": [i["ip"]]}])["NetworkInterfaces"]
        enis.append((e["NetworkInterfaceId"], [g["GroupId"] for g in e["Groups"]]))
    group = ec2.create_security_group(GroupName=f"bench-propagation-{os.getpid()}",
                                      Description="bench", VpcId=vpc)["GroupId"]
    procs, totals, api = [], [], []
    try:
        for eni, _ in enis:
            ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=[group])
        for i in insts:
            p = subprocess.Popen(["ip", "netns", "exec", i["netns"], sys.executable, UDPPROBE,
                                  "echo", "7000"], stdout=subprocess.PIPE, text=True)
            procs.append(p)
            if p.stdout.readline().strip() != "ready":
                raise SystemExit(f"no UDP echo in {i['name']}")
        time.sleep(1.0)  # the group change reaches both agents
        pairs = ((insts[0], insts[1]), (insts[1], insts[0]))
        for _ in range(rounds):
            races = [subprocess.Popen(["ip", "netns", "exec", a["netns"], sys.executable,
                                       UDPPROBE, "race", "7000", "10", b["ip"]],
                                      stdout=subprocess.PIPE, text=True) for a, b in pairs]
            for r in races:
                if r.stdout.readline().strip() != "started":
                    raise SystemExit("a UDP prober did not start")
            time.sleep(0.05)  # probes are being dropped before the call
            t0 = time.time()
            rule = ec2.authorize_security_group_ingress(
                GroupId=group, IpPermissions=[{"IpProtocol": "udp", "FromPort": 7000,
                                               "ToPort": 7000,
                                               "IpRanges": [{"CidrIp": "10.0.0.0/16"}]}])
            api.append(time.time() - t0)
            firsts = []
            for r in races:
                out = r.communicate(timeout=30)[0].split()
                if len(out) != 2 or out[1] == "none":
                    raise SystemExit(f"the rule never held within 10 s: {out}")
                firsts.append(float(out[1]))
            totals.append(max(firsts) - t0)
            ec2.revoke_security_group_ingress(
                GroupId=group,
                SecurityGroupRuleIds=[rule["SecurityGroupRules"][0]["SecurityGroupRuleId"]])
            time.sleep(0.3)
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=5)
        for eni, groups in enis:
            ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=groups)
        ec2.delete_security_group(GroupId=group)
    ms = lambda v: round(v * 1000, 2)  # noqa: E731
    return {"rounds": len(totals), "p50_ms": ms(percentile(totals, 50)),
            "p99_ms": ms(percentile(totals, 99)), "max_ms": ms(max(totals)),
            "api_p50_ms": ms(percentile(api, 50))}


def ec2_client(status):
    import boto3
    from botocore.config import Config

    creds = configparser.ConfigParser()
    creds.read(status["credentials_file"])
    ak, sk = creds["default"]["aws_access_key_id"], creds["default"]["aws_secret_access_key"]
    return boto3.client("ec2", endpoint_url=status["api_url"], region_name="us-east-1",
                        aws_access_key_id=ak, aws_secret_access_key=sk,
                        config=Config(retries={"total_max_attempts": 1}))


# The bench lab's server runs with --sg-rules-per-group 200 (scripts/bench.sh exports
# SOFTVPC_SG_RULES_PER_GROUP; AWS allows raising it while rules x 5 groups stay <= 1,000).
RULES_PER_DIRECTION = int(os.environ.get("SOFTVPC_SG_RULES_PER_GROUP", "60"))


def set_rules(status_path, n):
    """bench-b's ENI gets n rules (see the module doc); returns what it has now."""
    status = json.load(open(status_path))
    ec2 = ec2_client(status)
    b = next(i for i in status["instances"] if i["name"] == "bench-b")
    (eni,) = ec2.describe_network_interfaces(Filters=[
        {"Name": "vpc-id", "Values": [b["vpc_id"]]},
        {"Name": "addresses.private-ip-address", "Values": [b["ip"]]}])["NetworkInterfaces"]
    groups = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [b["vpc_id"]]}])["SecurityGroups"]
    default = next(g["GroupId"] for g in groups if g["GroupName"] == "default")
    ec2.modify_network_interface_attribute(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                           Groups=[default])
    for g in groups:
        if g["GroupName"].startswith("bench-rules-"):
            ec2.delete_security_group(GroupId=g["GroupId"])
    if n == 0:
        return {"rules": 0, "groups": 1}
    inbound, outbound = n - n // 2, n // 2
    count = max(math.ceil(inbound / RULES_PER_DIRECTION), math.ceil(outbound / RULES_PER_DIRECTION))
    made, serial = [], 0

    def filler(k):
        # Rules that never match the bench's traffic: one port each from a /32 in 172.31/16.
        nonlocal serial
        perms = []
        for _ in range(k):
            serial += 1
            perms.append({"IpProtocol": "tcp", "FromPort": 1000 + serial % 60000,
                          "ToPort": 1000 + serial % 60000,
                          "IpRanges": [{"CidrIp": f"172.31.{serial // 250}.{serial % 250 + 1}/32"}]})
        return perms

    for i in range(count):
        gid = ec2.create_security_group(GroupName=f"bench-rules-{i}", Description="bench",
                                        VpcId=b["vpc_id"])["GroupId"]
        made.append(gid)
        last = i == count - 1
        k_in = min(RULES_PER_DIRECTION, inbound - i * RULES_PER_DIRECTION)
        k_out = min(RULES_PER_DIRECTION, outbound - i * RULES_PER_DIRECTION)
        perms = filler(max(0, k_in - (1 if last else 0)))
        if last:
            perms.append({"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.0.0.0/16"}]})
        if perms:
            ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=perms)
        # A new group comes with "all to 0.0.0.0/0" outbound: kept in the last group only.
        if not last:
            ec2.revoke_security_group_egress(GroupId=gid, IpPermissions=[
                {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        perms = filler(max(0, k_out - (1 if last else 0)))
        if perms:
            ec2.authorize_security_group_egress(GroupId=gid, IpPermissions=perms)
    ec2.modify_network_interface_attribute(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                           Groups=made)
    total = sum(len(ec2.describe_security_group_rules(Filters=[
        {"Name": "group-id", "Values": [g]}])["SecurityGroupRules"]) for g in made)
    time.sleep(1.0)  # propagation takes ~15 ms (see BENCHMARKS.md); leave ample margin
    return {"rules": total, "groups": len(made)}


def serve(port):
    import socket
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(4096)
    # The UDP flows of udp-flows land here, unread: no ICMP port unreachable for each.
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        conn, _ = s.accept()
        conn.close()


def connect_bench(ip, port, total, concurrency, limit_s=60, first_port=0):
    """New TCP connections as fast as `concurrency` outstanding ones allow, for `limit_s` at
    most; with `first_port`, the i-th from source port first_port + i (else the kernel picks,
    and Linux gives connect() only even ports: at most ~32,000 distinct to one destination)."""
    import selectors
    import socket
    import struct
    sel = selectors.DefaultSelector()
    times, failed, started, pending = [], 0, 0, 0
    linger = struct.pack("ii", 1, 0)  # close sends RST: no TIME_WAIT on either side
    t_start = time.monotonic()
    deadline = t_start + limit_s
    while (started < total or pending) and time.monotonic() < deadline:
        while started < total and pending < concurrency:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.setblocking(False)
            if first_port:
                try:
                    s.bind(("0.0.0.0", first_port + started))
                except OSError:
                    s.close()
                    started += 1
                    failed += 1
                    continue
            t0 = time.monotonic()
            s.connect_ex((ip, port))
            sel.register(s, selectors.EVENT_WRITE, t0)
            started += 1
            pending += 1
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            sel.unregister(s)
            pending -= 1
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                times.append(time.monotonic() - key.data)
            else:
                failed += 1
            s.close()
    elapsed = time.monotonic() - t_start
    if not times:
        raise SystemExit("no connection succeeded")
    return {"connections": len(times), "failed": failed + pending, "seconds": elapsed,
            "per_s": len(times) / elapsed, "p50_ms": percentile(times, 50) * 1000,
            "p99_ms": percentile(times, 99) * 1000}


def udp_flows(ip, port, n):
    import socket
    sent = 0
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("0.0.0.0", 20000 + i))
            s.sendto(b"f", (ip, port))
            sent += 1
        except OSError:
            pass
        finally:
            s.close()
    return {"flows": sent}


def hold_flows(ip, port, n, seconds, period):
    """N UDP flows from bench-a kept tracked (and, with the fast path on, installed in the
    kernel): a datagram from each source port every `period` s, for `seconds` at most."""
    import resource
    import signal
    import socket
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard > 0 else want, hard))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    socks = []
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("0.0.0.0", 20000 + i))
        except OSError:
            s.close()
            continue
        socks.append(s)
    deadline = time.monotonic() + seconds
    rounds, sent = 0, 0

    def send(batch):
        nonlocal sent
        for s in batch:
            try:
                s.sendto(b"k", (ip, port))
                sent += 1
            except OSError:
                pass

    # The first round at once (the flows are made); after it every round is spread evenly
    # over its period, a slice every TICK, so holding them is a steady n/period datagrams a
    # second and not a burst of n that lands in whichever measurement runs then.
    tick = 0.2
    start = time.monotonic()
    send(socks)
    rounds = 1
    print(json.dumps({"ready": True, "flows": len(socks)}), flush=True)
    slices = max(1, int(period / tick))
    per = max(1, math.ceil(len(socks) / slices))
    while not stop and time.monotonic() < min(start + period, deadline):
        time.sleep(0.05)
    while not stop and time.monotonic() < deadline:
        start = time.monotonic()
        for k in range(0, len(socks), per):
            if stop or time.monotonic() >= deadline:
                break
            send(socks[k:k + per])
            wake = start + (k // per + 1) * tick
            while not stop and time.monotonic() < min(wake, deadline):
                time.sleep(min(tick, max(0.0, wake - time.monotonic())))
        rounds += 1
        while not stop and time.monotonic() < min(start + period, deadline):
            time.sleep(0.05)
    print(json.dumps({"flows": len(socks), "rounds": rounds, "sent": sent}), flush=True)


def drops_text(before, after):
    """The drops outside the engine (and the engine's) between two agent_series() reads."""
    d = {k: after[k] - before[k] for k in DROP_SERIES}
    return (f"TAP queues {d['tap_tx_dropped']}, VXLAN socket buffer "
            f"{d['underlay_socket_drops']}, engine {d['engine_drops']}")


def tc_prios(netns, dev, hook):
    """The distinct filter priorities on DEV's clsact HOOK in NETNS (tc, as netlink shows)."""
    out = subprocess.run(["tc", "-n", netns, "filter", "show", "dev", dev, hook],
                         capture_output=True, text=True, timeout=60).stdout
    return len(set(re.findall(r"\bpref (\d+)", out)))


def kernel_count(status_path):
    """What the lab's kernel holds for the fast path now (see the module doc)."""
    status = json.load(open(status_path))
    out = {"underlay_ingress_filters": 0, "eth_egress_filters": 0, "installed_flows": 0,
           "tracked": 0, "syncs": 0, "sync_us": 0, "slow_syncs": 0, "sync_max_us": 0,
           "agent_cpu_s": 0.0}
    for host in status["hosts"]:
        if not host.get("agent", True):
            continue
        fields = open(f"/proc/{host['pid']}/stat").read().rsplit(")", 1)[1].split()
        out["agent_cpu_s"] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        links = json.loads(subprocess.run(["ip", "-n", host["netns"], "-j", "addr", "show"],
                                          capture_output=True, text=True, check=True,
                                          timeout=30).stdout)
        for link in links:
            if any(a.get("local", "").startswith("198.18.") for a in link.get("addr_info", [])):
                out["underlay_ingress_filters"] += tc_prios(host["netns"], link["ifname"],
                                                            "ingress")
        for name, value in agent_series(host["netns"]):
            if name == "softvpc_fast_path_flows":
                out["installed_flows"] += int(value)
            elif name == "softvpc_eni_tracked_flows":
                out["tracked"] += int(value)
            # The data path's syncs with the engine's offer (docs/fast-path.md).
            elif name == "softvpc_fast_path_syncs_total":
                out["syncs"] += int(value)
            elif name == "softvpc_fast_path_sync_microseconds_total":
                out["sync_us"] += int(value)
            elif name == "softvpc_fast_path_slow_syncs_total":
                out["slow_syncs"] += int(value)
            elif name == "softvpc_fast_path_sync_max_microseconds":
                out["sync_max_us"] = max(out["sync_max_us"], int(value))
    for inst in status["instances"]:
        links = json.loads(subprocess.run(["ip", "-n", inst["netns"], "-j", "link", "show"],
                                          capture_output=True, text=True, check=True,
                                          timeout=30).stdout)
        for link in links:
            if link["ifname"].startswith("eth"):
                out["eth_egress_filters"] += tc_prios(inst["netns"], link["ifname"], "egress")
    out["load"] = open("/proc/loadavg").read().split()[:3]
    return out


def scale_report(base_path, scale_path, kbase_path=None, kscale_path=None):
    base, scale = json.load(open(base_path)), json.load(open(scale_path))
    kbase = json.load(open(kbase_path)) if kbase_path and os.path.exists(kbase_path) else None
    kscale = (json.load(open(kscale_path))
              if kscale_path and os.path.exists(kscale_path) else None)
    get = lambda d, a, b: d.get(a, {}).get(b)  # noqa: E731
    # With the kernel's rounds beside each, also each ratio to the kernel's rows of its own
    # time, scale's over base's: what the machine did between the two cancels out.
    beside = kbase is not None and kscale is not None

    def row(label, a, b, fmt):
        bval, sval = get(base, a, b), get(scale, a, b)
        ratio = f"{sval / bval:.3f}" if bval and sval is not None else "-"
        bv = fmt.format(bval) if bval is not None else "failed"
        sv = fmt.format(sval) if sval is not None else "failed"
        line = f"| {label:<28} | {bv:>15} | {sv:>22} | {ratio:>11} |"
        if beside:
            kb, ks = get(kbase, a, b), get(kscale, a, b)
            rel = (f"{(sval / ks) / (bval / kb):.3f}"
                   if kb and ks and bval and sval is not None and fmt != "{:d}" else "-")
            line += f" {rel:>22} |"
        return line

    c = scale["count_after"]
    lines = [f"| metric                       | fast path, base | {scale['rules']['rules']} rules, "
             f"{scale['flows']['flows']} flows | scale/base |"
             + (" each against its kernel |" if beside else ""),
             "|------------------------------|----------------:|-----------------------:|"
             "-----------:|" + ("-----------------------:|" if beside else "")]
    for label, a, b, fmt in [("iperf3 TCP, Gbit/s", "iperf", "gbps", "{:.2f}"),
                             ("iperf3 TCP 8 streams, Gbit/s", "iperf8", "gbps", "{:.2f}"),
                             ("UDP 64 B received, kpps", "udp64", "kpps", "{:.1f}"),
                             ("ping RTT p50, ms", "ping", "p50_ms", "{:.3f}"),
                             ("ping RTT p99, ms", "ping", "p99_ms", "{:.3f}")]:
        lines.append(row(label, a, b, fmt))
    lines.append(row("TCP retransmits, 1 stream", "iperf", "retransmits", "{:d}"))
    lines.append(row("TCP retransmits, 8 streams", "iperf8", "retransmits", "{:d}"))
    if beside:
        lines.append("\nThe last column: (scale / the kernel's rows in the scale rows' rounds) over "
                     "(base / the kernel's rows in the base rows' rounds). The kernel's rows "
                     "then: " + ", ".join(
                         f"{label} {fmt.format(get(kbase, a, b))} -> "
                         f"{fmt.format(get(kscale, a, b))}"
                         for label, a, b, fmt in HEADLINE
                         if get(kbase, a, b) is not None and get(kscale, a, b) is not None)
                     + ".")
        text = rounds_text(kscale, scale, "Scale rows / kernel")
        if text:
            lines.append(text)
    b = scale["count_before"]
    lines.append(f"\nHeld: {scale['flows']['flows']} UDP flows bench-a -> bench-b (one datagram "
                 f"each every {scale['period']} s during the measurement), "
                 f"{scale['rules']['rules']} security-group rules on bench-b's ENI "
                 f"({scale['rules']['groups']} groups). In the kernel before / after the "
                 f"measurement: installed flows (both agents) {b['installed_flows']} / "
                 f"{c['installed_flows']}; tc filters on the underlay devices' ingress "
                 f"{b['underlay_ingress_filters']} / {c['underlay_ingress_filters']}, on the "
                 f"instances' eth egress {b['eth_egress_filters']} / {c['eth_egress_filters']}; "
                 f"tracked connections (both agents) {b['tracked']} / {c['tracked']}; "
                 f"{scale['install_s']:.1f} s from the first datagrams until the kernel held "
                 f"them.")
    before, after = scale.get("drops_before"), scale.get("drops_after")
    if before and after:
        lines.append(f"Drops during these rows' measurements (both agents): "
                     f"{drops_text(before, after)}.")
    if "agent_cpu_s" in b:
        lines.append(f"The agents' CPU time during the measurement (both, user + system): "
                     f"{c['agent_cpu_s'] - b['agent_cpu_s']:.1f} s.")
    syncs = c.get("syncs", 0) - b.get("syncs", 0)
    if syncs > 0:
        lines.append(f"The agents' data-path syncs with the engine's offer during the measurement: "
                     f"{syncs}, {(c['sync_us'] - b['sync_us']) / syncs:.0f} us each on average, "
                     f"{c['slow_syncs'] - b['slow_syncs']} of 1 ms or more; the longest since "
                     f"the agents started {c['sync_max_us']} us.")
    lines.append(f"Load average: base rows at {scale['base_load']}, these at "
                 f"{' '.join(b['load'])} -> {' '.join(c['load'])}.")
    return "\n".join(lines)


def flowmem(status_path):
    status = json.load(open(status_path))
    out = {"rss_kb": 0, "tracked": 0, "flow_entries": 0}
    for host in status["hosts"]:
        if not host.get("agent", True):
            continue
        for line in open(f"/proc/{host['pid']}/status"):
            if line.startswith("VmRSS:"):
                out["rss_kb"] += int(line.split()[1])
        for name, value in agent_series(host["netns"]):
            if name == "softvpc_eni_tracked_flows":
                out["tracked"] += int(value)
            elif name == "softvpc_flow_table_entries":
                out["flow_entries"] += int(value)
    return out


def rules_report(rules):
    lines = ["\nSecurity-group rules on the receiving ENI (bench-b), softvpc only: established "
             "flows go through the flow table, the first packets of a flow (the TCP connect) "
             "walk the layers on both hosts.",
             "| rules on the ENI | iperf3 TCP, Gbit/s | ping p50, ms | ping p99, ms | "
             "connect p50, ms | connect p99, ms | new connections/s |",
             "|-----------------:|-------------------:|-------------:|-------------:|"
             "----------------:|----------------:|------------------:|"]
    for r in rules["runs"]:
        c = r["connect"]
        n = r["rules"]["rules"] or "default group"
        lines.append(f"| {n:>16} | {r['iperf']['gbps']:>18.2f} | "
                     f"{r['ping']['p50_ms']:>12.3f} | {r['ping']['p99_ms']:>12.3f} | "
                     f"{c['p50_ms']:>15.3f} | {c['p99_ms']:>15.3f} | {c['per_s']:>17.0f} |")
    m = rules.get("flowmem")
    if m:
        before, after, n = m["before"], m["after"], m["flows"]["flows"]
        tracked = after["tracked"] - before["tracked"]
        entries = after["flow_entries"] - before["flow_entries"]
        rss = (after["rss_kb"] - before["rss_kb"]) * 1024
        per = f"{rss / tracked:.0f} B" if tracked > 0 else "-"
        lines.append(f"\nMemory per tracked flow: {n} new UDP flows from bench-a made "
                     f"{tracked} tracked connections and {entries} flow-table entries on the "
                     f"two agents; their resident memory grew by {rss / 1e6:.2f} MB: {per} per "
                     f"tracked connection, flow-table entry included (the engine's own measure, "
                     f"without allocator slack, is in cargo bench -p softvpc-engine --bench "
                     f"policy_flows).")
    return "\n".join(lines)


def report(kernel_path, softvpc_path, prop_path, rules_path=None, sgprop_path=None):
    kernel = json.load(open(kernel_path))
    soft = json.load(open(softvpc_path)) if os.path.exists(softvpc_path) else {}
    prop = json.load(open(prop_path)) if os.path.exists(prop_path) else {}

    def row(label, k, s, fmt):
        ratio = f"{s / k:.3f}" if k and s is not None else "-"
        sv = fmt.format(s) if s is not None else "failed"
        return f"| {label:<28} | {fmt.format(k):>12} | {sv:>12} | {ratio:>14} |"

    get = lambda d, a, b: d.get(a, {}).get(b)  # noqa: E731
    lines = ["| metric                       | kernel VXLAN |      softvpc | softvpc/kernel |",
             "|------------------------------|-------------:|-------------:|---------------:|",
             row("iperf3 TCP, Gbit/s", kernel["iperf"]["gbps"], get(soft, "iperf", "gbps"),
                 "{:.2f}"),
             row("iperf3 TCP 8 streams, Gbit/s", get(kernel, "iperf8", "gbps"),
                 get(soft, "iperf8", "gbps"), "{:.2f}"),
             row("UDP 64 B received, kpps", get(kernel, "udp64", "kpps"),
                 get(soft, "udp64", "kpps"), "{:.1f}"),
             row("ping RTT p50, ms", kernel["ping"]["p50_ms"], get(soft, "ping", "p50_ms"),
                 "{:.3f}"),
             row("ping RTT p99, ms", kernel["ping"]["p99_ms"], get(soft, "ping", "p99_ms"),
                 "{:.3f}"),
             row("ping RTT under 12 us, share", kernel["ping"].get("under_12us", 0.0),
                 get(soft, "ping", "under_12us"), "{:.2f}"),
             row("TCP retransmits, 1 stream", kernel["iperf"]["retransmits"] or 0,
                 get(soft, "iperf", "retransmits"), "{:d}"),
             row("TCP retransmits, 8 streams", get(kernel, "iperf8", "retransmits") or 0,
                 get(soft, "iperf8", "retransmits"), "{:d}")]
    if "rounds" in kernel and "rounds" in soft:
        n = len(kernel["rounds"])
        lines.append(f"\nEach figure is the median of {n} rounds in which the two halves took "
                     f"turns (the kernel first in odd rounds, softvpc in even ones); the pings' "
                     f"percentiles are over all rounds' replies together.")
        text = rounds_text(kernel, soft)
        if text:
            lines.append(text)
    elif "rounds" in kernel:
        lines.append(f"\nThe kernel's figures are the median of its {len(kernel['rounds'])} "
                     f"rounds (measured beside the fast path's, below); softvpc's here are one "
                     f"run.")
    before, after = soft.get("drops_before"), soft.get("drops_after")
    if before and after:
        lines.append(f"\nsoftvpc drops during its measurements (both agents): "
                     f"{drops_text(before, after)}.")
        moved = soft.get("rounds_bytes",
                         sum(get(soft, k, "bytes") or 0 for k in ("iperf", "iperf8", "udp64")))
        moved /= 1e9
        if "agent_cpu_s" in before and moved:
            cpu = after["agent_cpu_s"] - before["agent_cpu_s"]
            lines.append(f"softvpc agents' CPU time: {cpu:.1f} s for the {moved:.2f} GB their "
                         f"iperf3 runs moved, {cpu / moved:.2f} s per GB (the kernel path's CPU "
                         f"is softirq time: in the machine's CPU time below)"
                         + (" (over every round, the kernel's turns included)."
                            if "rounds_bytes" in soft else "."))
    kinds = ("iperf", "iperf8", "udp64")
    cpu = {name: (sum(get(d, k, "machine_cpu_s") or 0 for k in kinds),
                  sum(get(d, k, "bytes") or 0 for k in kinds) / 1e9)
           for name, d in (("kernel VXLAN", kernel), ("softvpc", soft))
           if all(get(d, k, "machine_cpu_s") is not None for k in kinds)}
    if len(cpu) == 2 and all(gb for _, gb in cpu.values()):
        lines.append("The machine's CPU time during the iperf3 runs (every CPU's busy time: "
                     "iperf3, the agents, the kernel's softirq work; other work on the machine "
                     "counts too): " + "; ".join(
                         f"{name} {s:.1f} s for {gb:.2f} GB, {s / gb:.2f} s per GB"
                         for name, (s, gb) in cpu.items()) + ".")
    cores = [(name, get(d, "iperf8", "per_cpu"))
             for name, d in (("kernel VXLAN", kernel), ("softvpc", soft))]
    if all(shares for _, shares in cores):
        lines.append("Each CPU during the 8 streams, busy (of it softirq, where the kernel "
                     "forwards: the kernel VXLAN and softvpc's fast path): " + "; ".join(
                         f"{name} {per_cpu_text(shares)}" for name, shares in cores) + ".")
    if "underlay_iperf" in kernel:
        lines.append(f"\nUnderlay alone (host to host over the fabric bridge, no encapsulation): "
                     f"{kernel['underlay_iperf']['gbps']:.2f} Gbit/s.")
    if prop:
        lines.append(f"\nMapping propagation ({prop['changes']} changes, half RunInstances, half "
                     f"TerminateInstances; from the API call until all {prop['agents']} agents' "
                     f"/mappings show it): p50 {prop['p50_ms']} ms, p99 {prop['p99_ms']} ms, "
                     f"max {prop['max_ms']} ms.\n  RunInstances p50 {prop['run_p50_ms']} ms "
                     f"(its API call alone {prop.get('run_api_p50_ms')} ms), TerminateInstances "
                     f"p50 {prop['terminate_p50_ms']} ms (API call "
                     f"{prop.get('terminate_api_p50_ms')} ms); all API calls p50 "
                     f"{prop['api_p50_ms']} ms, p99 {prop['api_p99_ms']} ms."
                     f"\n  A RunInstances is seen by the other hosts' agents at p50 "
                     f"{prop.get('run_other_hosts_p50_ms')} ms, by the agent of the host the "
                     f"instance is placed on (which plumbs its netns and TAP first) at p50 "
                     f"{prop.get('run_placement_host_p50_ms')} ms.")
    elif prop_path != "-":
        lines.append("\nMapping propagation: not measured (the softvpc half failed).")
    if rules_path and os.path.exists(rules_path):
        lines.append(rules_report(json.load(open(rules_path))))
    if sgprop_path:
        sg = json.load(open(sgprop_path)) if os.path.exists(sgprop_path) else {}
        if sg:
            lines.append(f"\nSecurity-group rule propagation ({sg['rounds']} rounds; from an "
                         f"AuthorizeSecurityGroupIngress call until a new UDP flow gets through "
                         f"it on both agents, bench-a -> bench-b and back): p50 {sg['p50_ms']} "
                         f"ms, p99 {sg['p99_ms']} ms, max {sg['max_ms']} ms (the API call "
                         f"itself p50 {sg['api_p50_ms']} ms).")
        else:
            lines.append("\nSecurity-group rule propagation: not measured (its step failed).")
    return "\n".join(lines)


def nat_addresses(status_path):
    status = json.load(open(status_path))
    ec2 = ec2_client(status)
    web = next(i["instance_id"] for i in status["instances"] if i["name"] == "web")
    (eip,) = [a["PublicIp"] for a in ec2.describe_addresses()["Addresses"]
              if a.get("InstanceId") == web]
    (nat,) = ec2.describe_nat_gateways()["NatGateways"]
    return f"{eip} {nat['NatGatewayAddresses'][0]['PublicIp']}"


NAT_ROWS = [  # (label, measurement, field, format)
    ("IGW (EIP) TCP up, Gbit/s", "igw-up", "gbps", "{:.2f}"),
    ("IGW (EIP) TCP down, Gbit/s", "igw-down", "gbps", "{:.2f}"),
    ("NAT gw TCP up, Gbit/s", "nat-up", "gbps", "{:.2f}"),
    ("NAT gw TCP down, Gbit/s", "nat-down", "gbps", "{:.2f}"),
    ("IGW (EIP) new conn/s out", "igw-conn", "per_s", "{:.0f}"),
    ("NAT gw new conn/s", "nat-conn", "per_s", "{:.0f}"),
    ("new conn/s in, to the EIP", "eip-conn", "per_s", "{:.0f}"),
    ("IGW connect p50, ms", "igw-conn", "p50_ms", "{:.3f}"),
    ("IGW connect p99, ms", "igw-conn", "p99_ms", "{:.3f}"),
    ("NAT gw connect p50, ms", "nat-conn", "p50_ms", "{:.3f}"),
    ("NAT gw connect p99, ms", "nat-conn", "p99_ms", "{:.3f}"),
    ("EIP inbound connect p50, ms", "eip-conn", "p50_ms", "{:.3f}"),
    ("EIP inbound connect p99, ms", "eip-conn", "p99_ms", "{:.3f}"),
    ("TCP retransmits, IGW up", "igw-up", "retransmits", "{:d}"),
    ("TCP retransmits, NAT gw up", "nat-up", "retransmits", "{:d}"),
]


def nat_report(kernel_path, modes):
    """The table of scripts/bench-nat.sh: kernel nftables, then each softvpc mode and ratio."""
    kernel = json.load(open(kernel_path))
    runs = [(m, json.load(open(p))) for m, p in (a.split("=", 1) for a in modes)]
    head = "| metric                       | kernel nftables |"
    rule = "|------------------------------|----------------:|"
    for m, _ in runs:
        head += f" softvpc, fast path {m:<3} | {m}/kernel |"
        rule += "------------------------:|" + "-" * (len(m) + 8) + ":|"
    lines = [head, rule]
    for label, key, field, fmt in NAT_ROWS:
        k = kernel.get(key, {}).get(field)
        line = f"| {label:<28} | {fmt.format(k or 0) if k is not None else '-':>15} |"
        for m, fig in runs:
            s = fig.get(key, {}).get(field)
            ratio = f"{s / k:.3f}" if k and s is not None else "-"
            line += f" {fmt.format(s or 0) if s is not None else '-':>23} | {ratio:>{len(m) + 7}} |"
        lines.append(line)
    failed = {name: {key: fig[key].get("failed", 0) for key in ("igw-conn", "nat-conn", "eip-conn")}
              for name, fig in [("kernel", kernel)] + [(f"softvpc {m}", f) for m, f in runs]}
    lines.append(f"\nConnections that failed or did not finish in 60 s (of each path's N): "
                 f"{json.dumps(failed)}")
    for name, fig in [("kernel nftables", kernel)] + [(f"softvpc, fast path {m}", f)
                                                       for m, f in runs]:
        s = fig.get("nat-sustained")
        if s:
            lines.append(f"Sustained through the NAT gateway ({name}): {s['connections']} "
                         f"connections made, {s['failed']} failed, in {s['seconds']:.1f} s "
                         f"({s['per_s']:.0f}/s).")
    for m, fig in runs:
        sv = fig.get("services")
        if sv:
            lines.append(f"softvpc, fast path {m}: instance services (app, in the private subnet): "
                         f"DHCP lease (udhcpc start -> bound, {sv['dhcp_runs']} runs) p50 "
                         f"{sv['dhcp_p50_ms']:.1f} ms, max {sv['dhcp_max_ms']:.1f} ms; DNS at the "
                         f"VPC's +2: {sv['dns_answers']} answers in {sv['dns_seconds']:.2f} s = "
                         f"{sv['dns_qps']:,.0f} queries/s (one client, 64 in flight). The kernel "
                         f"topology has no DHCP or DNS service to compare with.")
    for m, fig in runs:
        before, after = fig.get("drops_before"), fig.get("drops_after")
        if not (before and after):
            continue
        d = {k: after[k] - before[k] for k in DROP_SERIES}
        moved = sum(fig.get(k, {}).get("bytes") or 0
                    for k in ("igw-up", "igw-down", "nat-up", "nat-down")) / 1e9
        cpu = after["agent_cpu_s"] - before["agent_cpu_s"]
        fast = {k: after.get(k, 0) - before.get(k, 0) for k in FAST_SERIES}
        lines.append(f"softvpc, fast path {m}: kernel flows installed {fast['fast_installs']}, "
                     f"removed {fast['fast_removals']} during the measurements (both agents).")
        lines.append(f"softvpc, fast path {m}: drops during the measurements (both agents): TAP "
                     f"queues {d['tap_tx_dropped']}, VXLAN socket buffer "
                     f"{d['underlay_socket_drops']}, engine {d['engine_drops']}; agents' CPU "
                     f"time {cpu:.1f} s (iperf3 moved {moved:.2f} GB"
                     + (f", {cpu / moved:.2f} s per GB incl. the connections" if moved else "")
                     + ").")
    return "\n".join(lines)


def services(dns, name, runs, queries):
    """See the module doc. udhcpc's script only writes the time of `bound` (eth0 is left as it
    is); the DNS load is bounded by count and time; each answer must be NOERROR to count."""
    import socket
    import struct
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        script, out = os.path.join(tmp, "bound.sh"), os.path.join(tmp, "bound.ns")
        with open(script, "w") as f:
            f.write('#!/bin/sh\n[ "$1" = bound ] && date +%s%N > "$OUT"\nexit 0\n')
        os.chmod(script, 0o755)
        lease_ms = []
        for _ in range(runs):
            if os.path.exists(out):
                os.unlink(out)
            start = time.time_ns()
            subprocess.run(["udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "3", "-T", "1",
                            "-s", script], env={**os.environ, "OUT": out}, check=True,
                           capture_output=True, timeout=30)
            lease_ms.append((int(open(out).read()) - start) / 1e6)
    qname = b"".join(bytes([len(label)]) + label for label in name.encode().split(b".")) + b"\0"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.connect((dns, 53))
    s.settimeout(1.0)
    sent = got = 0
    window = 64
    start = time.monotonic()
    while got < queries and time.monotonic() - start < 30:
        while sent < queries and sent - got < window:
            s.send(struct.pack("!HHHHHH", sent & 0xFFFF, 0x0100, 1, 0, 0, 0) + qname
                   + b"\0\1\0\1")
            sent += 1
        try:
            reply = s.recv(512)
            if len(reply) > 3 and reply[3] & 0x0F == 0:
                got += 1
        except socket.timeout:
            sent = got
    secs = time.monotonic() - start
    lease_ms.sort()
    return {"dhcp_runs": runs, "dhcp_p50_ms": percentile(lease_ms, 50),
            "dhcp_max_ms": lease_ms[-1], "dns_answers": got, "dns_seconds": secs,
            "dns_qps": got / secs if secs > 0 else 0.0}


def main(argv):
    if len(argv) >= 2 and argv[0] == "ping":
        print(json.dumps(ping_stats(argv[1])))
    elif len(argv) >= 2 and argv[0] == "iperf":
        print(json.dumps(iperf_stats(*argv[1:4])))
    elif len(argv) >= 3 and argv[0] == "propagation":
        print(json.dumps(propagation(argv[1], int(argv[2]))))
    elif len(argv) >= 3 and argv[0] == "sg-propagation":
        print(json.dumps(sg_propagation(argv[1], int(argv[2]), *([tuple(argv[3:5])]
                                                                  if len(argv) >= 5 else []))))
    elif len(argv) >= 2 and argv[0] == "drops":
        print(json.dumps(agent_drops(argv[1])))
    elif len(argv) >= 3 and argv[0] == "rules":
        print(json.dumps(set_rules(argv[1], int(argv[2]))))
    elif len(argv) >= 2 and argv[0] == "serve":
        serve(int(argv[1]))
    elif len(argv) >= 5 and argv[0] == "connect":
        print(json.dumps(connect_bench(argv[1], int(argv[2]), int(argv[3]), int(argv[4]),
                                       *(float(a) for a in argv[5:6]),
                                       *(int(a) for a in argv[6:7]))))
    elif len(argv) >= 4 and argv[0] == "udp-flows":
        print(json.dumps(udp_flows(argv[1], int(argv[2]), int(argv[3]))))
    elif len(argv) >= 6 and argv[0] == "hold-flows":
        hold_flows(argv[1], int(argv[2]), int(argv[3]), float(argv[4]), float(argv[5]))
    elif len(argv) >= 2 and argv[0] == "kernel-count":
        print(json.dumps(kernel_count(argv[1])))
    elif len(argv) >= 3 and argv[0] == "scale-report":
        print(scale_report(*argv[1:5]))
    elif len(argv) >= 2 and argv[0] == "flowmem":
        print(json.dumps(flowmem(argv[1])))
    elif len(argv) >= 2 and argv[0] == "nat-addresses":
        print(nat_addresses(argv[1]))
    elif len(argv) >= 2 and argv[0] == "nat-report":
        print(nat_report(argv[1], argv[2:]))
    elif len(argv) >= 5 and argv[0] == "services":
        print(json.dumps(services(argv[1], argv[2], int(argv[3]), int(argv[4]))))
    elif len(argv) >= 2 and argv[0] == "merge-rounds":
        print(json.dumps(merge_rounds(argv[1:])))
    elif len(argv) >= 4 and argv[0] == "report":
        print(report(argv[1], argv[2], argv[3], *argv[4:6]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
