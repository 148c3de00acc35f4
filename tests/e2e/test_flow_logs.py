"""Flow log records on the wire (issue 10), checked field by field against what was sent.

In zigi-vpc1: zigi-vm1 (10.0.0.148, host-1) talks to zigi-vm2 (10.0.0.185, host-2). The test
puts zigi-vm2 in a group `svt-fl` (ICMP and TCP 8080 from 10.0.0.0/16; nothing else), makes two
flow logs with the AWS CLI, MaxAggregationInterval 60:

- on the VPC, TrafficType ALL, the default format, to an S3 bucket ARN (`<flow-log-dir>/B/P`);
- on zigi-vm2's ENI, TrafficType REJECT, a custom format of every field, to a CloudWatch Logs
  log group (`<flow-log-dir>/G`);

then sends known traffic from zigi-vm1 (ping -c 5, nc with 20,000 bytes to :8080, a connection
to :9090 the group refuses) while tcpdump captures zigi-vm1's eth0, and waits for the records
(the e2e lab runs its agents with SOFTVPC_FLOW_LOG_MAX_WINDOW=10: windows close after 10 s
instead of 60 s, which AWS's "maximum" interval allows). A parser reads every line of both files
and the sums per flow, ENI and action must equal the capture exactly (packets, IPv4 bytes), the
actions must be ACCEPT except the refused SYNs (REJECT), times must fall inside the test, and
each custom field must say what AWS would. Groups and flow logs are restored and deleted at the
end, whatever happens.

With the kernel fast path on (`SOFTVPC_FAST_PATH=on`) this exact comparison with a capture on
eth0 does not apply and the test says so: tcpdump on the TAP does not see the frames the kernel
redirects at its egress hook, and the kernel's filters count a TCP super-frame as the instance
handed it. `test_fast_path.py` checks a ping flow's records exactly in both modes.
"""

import collections
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e_harness import STATE_DIR, wait_until

PROBE = str(Path(__file__).resolve().parent / "tcpprobe.py")
VM1, VM2 = "10.0.0.148", "10.0.0.185"
DEFAULT = ["version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport",
           "protocol", "packets", "bytes", "start", "end", "action", "log-status"]
CUSTOM = DEFAULT + ["vpc-id", "subnet-id", "instance-id", "tcp-flags", "type", "pkt-srcaddr",
                    "pkt-dstaddr", "region", "az-id", "sublocation-type", "sublocation-id",
                    "pkt-src-aws-service", "pkt-dst-aws-service", "flow-direction",
                    "traffic-path", "ecs-cluster-name", "ecs-task-id", "reject-reason"]
FLOW_LOG_DIR = STATE_DIR / "server" / "flow-logs"
BUCKET, PREFIX = "svt-flow-logs", "e2e"
GROUP = "svt/flow-logs"


def parse(path, fields):
    """Each line of a flow log file as {field: value}; every line must have every field."""
    records = []
    for line in Path(path).read_text().splitlines():
        values = line.split(" ")
        assert len(values) == len(fields), f"{path}: {line!r} does not have {len(fields)} fields"
        records.append(dict(zip(fields, values)))
    return records


def flows_in(frames):
    """(src, dst, proto, sport, dport) -> [packets, bytes, tcp flags seen] of the IPv4 frames
    between the two instances, as the flow log counts them (ICMP without ports)."""
    flows = collections.defaultdict(lambda: [0, 0, []])
    for f in frames:
        raw = f.raw
        if len(raw) < 34 or raw[12:14] != b"\x08\x00":
            continue
        ip = raw[14:]
        ihl = (ip[0] & 0x0F) * 4
        total, proto = struct.unpack("!H", ip[2:4])[0], ip[9]
        src, dst = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
        if {src, dst} != {VM1, VM2}:
            continue
        sport = dport = 0
        flags = 0
        if proto in (6, 17):
            sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
        if proto == 6:
            flags = ip[ihl + 13]
        entry = flows[(src, dst, proto, sport, dport)]
        entry[0] += 1
        entry[1] += total
        entry[2].append(flags)
    return flows


def aws_flags(flags):
    out = 0
    for f in flags:
        out |= f & 0x07
        if f & 0x02 and f & 0x10:
            out |= 0x10
    return out


def sums(records, eni, action=None):
    """(pkt src, dst, proto, sport, dport) -> [packets, bytes] of `eni`'s OK records."""
    out = collections.defaultdict(lambda: [0, 0])
    for r in records:
        if r["interface-id"] != eni or r["log-status"] != "OK":
            continue
        if action and r["action"] != action:
            continue
        src, dst = r.get("pkt-srcaddr", r["srcaddr"]), r.get("pkt-dstaddr", r["dstaddr"])
        key = (src, dst, int(r["protocol"]), int(r["srcport"]), int(r["dstport"]))
        out[key][0] += int(r["packets"])
        out[key][1] += int(r["bytes"])
    return out


def test_flow_log_records_match_the_traffic(lab):
    if os.environ.get("SOFTVPC_FAST_PATH", "on") == "on":
        pytest.skip("a capture on eth0 misses what the kernel fast path redirects at the TAP's "
                    "egress; test_fast_path.py checks flow log counts with the fast path on")
    vpc = lab.aws("describe-vpcs", "--filters", "Name=tag:Name,Values=zigi-vpc1")["Vpcs"][0]
    vpc_id = vpc["VpcId"]

    def eni_of(ip):
        out = lab.aws("describe-network-interfaces", "--filters", f"Name=vpc-id,Values={vpc_id}",
                      f"Name=addresses.private-ip-address,Values={ip}")
        (eni,) = out["NetworkInterfaces"]
        return eni

    eni1, eni2 = eni_of(VM1), eni_of(VM2)
    old_groups = [g["GroupId"] for g in eni2["Groups"]]
    subnet = lab.aws("describe-subnets", "--subnet-ids", eni2["SubnetId"])["Subnets"][0]
    sg = lab.aws("create-security-group", "--group-name", "svt-fl", "--description", "flow logs",
                 "--vpc-id", vpc_id)["GroupId"]
    flow_logs = []
    server = None
    try:
        for perm in ("IpProtocol=icmp,FromPort=-1,ToPort=-1,IpRanges=[{CidrIp=10.0.0.0/16}]",
                     "IpProtocol=tcp,FromPort=8080,ToPort=8080,IpRanges=[{CidrIp=10.0.0.0/16}]"):
            lab.aws("authorize-security-group-ingress", "--group-id", sg, "--ip-permissions", perm)
        lab.aws("modify-network-interface-attribute", "--network-interface-id",
                eni2["NetworkInterfaceId"], "--groups", sg)
        all_fl = lab.aws("create-flow-logs", "--resource-type", "VPC", "--resource-ids", vpc_id,
                         "--traffic-type", "ALL", "--log-destination-type", "s3",
                         "--log-destination", f"arn:aws:s3:::{BUCKET}/{PREFIX}",
                         "--max-aggregation-interval", "60")["FlowLogIds"][0]
        flow_logs.append(all_fl)
        custom = " ".join(f"${{{f}}}" for f in CUSTOM)
        rej_fl = lab.aws("create-flow-logs", "--resource-type", "NetworkInterface",
                         "--resource-ids", eni2["NetworkInterfaceId"], "--traffic-type", "REJECT",
                         "--log-group-name", GROUP, "--deliver-logs-permission-arn",
                         "arn:aws:iam::123456789012:role/flow-logs", "--log-format", custom,
                         "--max-aggregation-interval", "60")["FlowLogIds"][0]
        flow_logs.append(rej_fl)
        all_file = FLOW_LOG_DIR / BUCKET / PREFIX / f"{all_fl}.log"
        rej_file = FLOW_LOG_DIR / GROUP / f"{rej_fl}.log"

        # The configuration reaches the agents (and the group the data path): the first NODATA
        # lines of zigi-vm2's ENI show the capture has started.
        wait_until(lambda: all_file.exists() and eni2["NetworkInterfaceId"] in all_file.read_text(),
                   30, interval=0.5, what="the VPC flow log's first records")
        server = subprocess.Popen(["ip", "netns", "exec", lab.netns("zigi-vm2"), "nc", "-l", "-k",
                                   "8080"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        started = int(time.time())
        with lab.capture("zigi-vm1") as caps:
            ping = lab.ping("zigi-vm1", VM2, count=5, interval=0.2)
            assert ping.received == 5, ping
            sent = lab.exec("zigi-vm1", "sh", "-c",
                            f"head -c 20000 /dev/zero | nc -N -w 3 {VM2} 8080", timeout=20)
            assert sent.returncode == 0, sent.stderr
            # Refused: the SYN and its retransmission (about 1 s later) are REJECT at zigi-vm2.
            probe = lab.exec("zigi-vm1", sys.executable, PROBE, "connect", VM2, "9090", "2.5",
                             timeout=15)
            assert probe.returncode == 1, "the group must refuse :9090"
            time.sleep(0.5)
        ended = int(time.time()) + 1
        flows = flows_in(caps["zigi-vm1"].frames)
        assert any(k[4] == 8080 for k in flows) and any(k[4] == 9090 for k in flows), flows
        refused = {k: v for k, v in flows.items() if k[4] == 9090 and k[0] == VM1}

        def expected():
            """What each ENI's records must sum to: everything between the two instances."""
            return {k: v[:2] for k, v in flows.items()}

        def complete():
            if not all_file.exists():
                return False
            got = sums(parse(all_file, DEFAULT), eni2["NetworkInterfaceId"])
            return all(got.get(k) == v[:2] for k, v in flows.items())

        wait_until(complete, 45, interval=1.0, what="flow log records covering the traffic")
        # Give late windows of zigi-vm1's host a moment as well, then read everything.
        wait_until(lambda: all(
            sums(parse(all_file, DEFAULT), eni1["NetworkInterfaceId"]).get(k) == v[:2]
            for k, v in flows.items()), 20, interval=1.0, what="zigi-vm1's records")
        records = parse(all_file, DEFAULT)

        # The VPC flow log, default format: both ENIs, every flow, exact packets and bytes.
        for eni in (eni1, eni2):
            got = sums(records, eni["NetworkInterfaceId"])
            for key, want in expected().items():
                assert got.get(key) == want, (eni["NetworkInterfaceId"], key, got.get(key), want)
            # Nothing else between them was recorded.
            extra = {k: v for k, v in got.items() if {k[0], k[1]} == {VM1, VM2} and k not in flows}
            assert not extra, extra
        # Actions: zigi-vm2 rejected exactly the :9090 SYNs; zigi-vm1 let them out (ACCEPT).
        rejected = sums(records, eni2["NetworkInterfaceId"], "REJECT")
        assert {k: v for k, v in rejected.items() if v[0]} == {k: v[:2] for k, v in refused.items()}
        assert not sums(records, eni1["NetworkInterfaceId"], "REJECT")
        for r in records:
            assert r["version"] == "2" and r["account-id"] == "123456789012", r
            if r["log-status"] in ("NODATA", "SKIPDATA"):
                assert r["log-status"] == "NODATA", r
                assert all(r[f] == "-" for f in DEFAULT[3:10] + ["action"]), r
                continue
            assert r["log-status"] == "OK", r
            assert r["action"] in ("ACCEPT", "REJECT"), r
            if {r["srcaddr"], r["dstaddr"]} == {VM1, VM2}:
                assert started <= int(r["start"]) <= int(r["end"]) <= ended, (r, started, ended)
            if r["protocol"] == "1":
                assert (r["srcport"], r["dstport"]) == ("0", "0"), r
        # ICMP: 5 requests and 5 replies of 84 bytes each (ping's 56 data bytes).
        icmp = sums(records, eni2["NetworkInterfaceId"])
        assert icmp[(VM1, VM2, 1, 0, 0)] == [5, 5 * 84]
        assert icmp[(VM2, VM1, 1, 0, 0)] == [5, 5 * 84]
        # TCP to 8080: the 20,000 bytes plus headers, all accepted.
        tcp_in = [v for k, v in sums(records, eni2["NetworkInterfaceId"], "ACCEPT").items()
                  if k[4] == 8080]
        assert tcp_in and tcp_in[0][1] > 20000

        # The ENI flow log: REJECT only, every custom field as AWS writes it.
        rej = [r for r in parse(rej_file, CUSTOM) if r["log-status"] == "OK"]
        assert rej, rej_file.read_text()
        assert {r["action"] for r in rej} == {"REJECT"}
        assert sum(int(r["packets"]) for r in rej) == sum(v[0] for v in refused.values())
        assert sum(int(r["bytes"]) for r in rej) == sum(v[1] for v in refused.values())
        syn_flags = aws_flags(f for v in refused.values() for f in v[2])
        inst = lab.instance("zigi-vm2")
        for r in rej:
            # The highest version among the fields asked for: reject-reason's (8).
            assert r["version"] == "8", r
            assert r["interface-id"] == eni2["NetworkInterfaceId"]
            assert (r["srcaddr"], r["dstaddr"]) == (VM1, VM2), r
            assert (r["pkt-srcaddr"], r["pkt-dstaddr"]) == (VM1, VM2), r
            assert r["dstport"] == "9090" and r["protocol"] == "6", r
            assert r["vpc-id"] == vpc_id and r["subnet-id"] == eni2["SubnetId"], r
            assert r["instance-id"] == inst["instance_id"], (r, inst)
            assert r["tcp-flags"] == str(syn_flags) == "2", r
            assert r["type"] == "IPv4" and r["region"] == "us-east-1", r
            az = subnet.get("AvailabilityZoneId") or "use1-az" + str(
                ord(subnet["AvailabilityZone"][-1]) - ord("a") + 1)
            assert r["az-id"] == az, (r, subnet)
            assert r["flow-direction"] == "ingress" and r["traffic-path"] == "-", r
            for f in ("sublocation-type", "sublocation-id", "pkt-src-aws-service",
                      "pkt-dst-aws-service", "ecs-cluster-name", "ecs-task-id",
                      "reject-reason"):
                assert r[f] == "-", (f, r)
            assert started <= int(r["start"]) <= int(r["end"]) <= ended, r

        # The agents count what they shipped, and lost nothing.
        for host in ("host-1", "host-2"):
            text = lab.agent_get(host, "/metrics")
            metrics = dict(line.rsplit(" ", 1) for line in text.splitlines()
                           if line.startswith("softvpc_flow_log_"))
            assert int(metrics["softvpc_flow_log_records_written_total"]) > 0, metrics
            assert int(metrics["softvpc_flow_log_packets_lost_total"]) == 0, metrics
            assert int(metrics['softvpc_flow_log_records_lost_total{reason="queue_full"}']) == 0
            assert int(metrics['softvpc_flow_log_records_refused_total']) == 0
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=5)
        if flow_logs:
            lab.aws("delete-flow-logs", "--flow-log-ids", *flow_logs, check=False)
        lab.aws("modify-network-interface-attribute", "--network-interface-id",
                eni2["NetworkInterfaceId"], "--groups", *old_groups, check=False)
        lab.aws("delete-security-group", "--group-id", sg, check=False)
