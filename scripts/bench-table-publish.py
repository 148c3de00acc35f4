#!/usr/bin/env python3
"""How soon a mapping change is live in the agents' data path (prints figures; not a test).

Needs root. Brings up a small lab of its own (prefix `svp<pid>-`, state under /tmp, a free API
port; always taken down at the end): host-1 and host-2, one VPC, one instance on each. Then, for
ROUNDS rounds, launches an instance on host-1 and terminates it again through the EC2 API (the
AWS CLI), waiting each time until host-1's agent has plumbed (or removed) it. Every one of those
changes needs local plumbing on host-1 (a namespace, a TAP, addresses, routes) and none on host-2
(where it is a remote ENI).

Reported per agent, from its /metrics: `softvpc_table_publish_seconds` (a watch message that
changed the mappings -> the table built from it is live in the data path; one sample per table
refresh) and, on host-1, `softvpc_instance_plumbing_seconds` (one reconcile's steps).

usage: sudo SOFTVPC_BIN=target/release/softvpc python3 scripts/bench-table-publish.py [ROUNDS]
"""

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SOFTVPC_E2E_PREFIX", f"svp{os.getpid()}-")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))

from e2e_harness import WORK_DIR, Lab, metric_sum, netns_list, run, wait_until  # noqa: E402

TOPOLOGY = """\
[[host]]
name = "host-1"

[[host]]
name = "host-2"

[[vpc]]
name = "bench-vpc"
cidr = "10.0.0.0/16"
[[vpc.subnet]]
cidr = "10.0.0.0/24"

[[instance]]
name = "b-vm1"
vpc = "bench-vpc"
subnet = "10.0.0.0/24"
ip = "10.0.0.10"
host = "host-1"

[[instance]]
name = "b-vm2"
vpc = "bench-vpc"
subnet = "10.0.0.0/24"
ip = "10.0.0.20"
host = "host-2"
"""

MAX_ROUNDS = 50


def timing(lab, host, name):
    m = lab.metrics(host)
    return metric_sum(m, f"{name}_count"), metric_sum(m, f"{name}_sum")


def summary(samples):
    if not samples:
        return "no samples"
    s = sorted(samples)
    mean = sum(s) / len(s)
    return (f"n={len(s)} mean={mean * 1e3:.2f} ms p50={s[len(s) // 2] * 1e3:.2f} ms "
            f"max={s[-1] * 1e3:.2f} ms")


def main():
    if os.geteuid() != 0:
        sys.exit("bench-table-publish needs root (network namespaces)")
    rounds = min(int(sys.argv[1]) if len(sys.argv) > 1 else 10, MAX_ROUNDS)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    topo = Path(tempfile.mkdtemp(prefix="svp-topo-")) / "lab.toml"
    topo.write_text(TOPOLOGY)
    lab = Lab(topo)
    print(f"load average at the start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    try:
        up = lab.cli("up", str(topo), timeout=300)
        if up.returncode != 0:
            sys.exit(f"lab up failed:\n{up.stdout}\n{up.stderr}")
        status = lab.status(refresh=True)
        host1 = lab.host_id("host-1")
        vm1 = lab.instance("b-vm1")
        subnet = lab.aws("describe-instances", "--instance-ids",
                         vm1["instance_id"])["Reservations"][0]["Instances"][0]["SubnetId"]
        lag = {h: [] for h in ("host-1", "host-2")}
        plumbing = []
        last = {h: timing(lab, h, "softvpc_table_publish_seconds") for h in lag}
        last_plumb = timing(lab, "host-1", "softvpc_instance_plumbing_seconds")

        def sample():
            nonlocal last_plumb
            time.sleep(0.3)  # let the other agent's refresh finish too
            for h in lag:
                now = timing(lab, h, "softvpc_table_publish_seconds")
                dc, ds = now[0] - last[h][0], now[1] - last[h][1]
                if dc > 0:
                    lag[h].append(ds / dc)
                last[h] = now
            now = timing(lab, "host-1", "softvpc_instance_plumbing_seconds")
            if now[0] > last_plumb[0]:
                plumbing.append((now[1] - last_plumb[1]) / (now[0] - last_plumb[0]))
            last_plumb = now

        def held(iid):
            return any(i["instance_id"] == iid
                       for i in lab.mappings("host-1").get("instances", []))

        for i in range(rounds):
            out = lab.aws("run-instances", "--image-id", "ami-1", "--count", "1",
                          "--subnet-id", subnet, "--placement", f"HostId={host1}")
            iid = out["Instances"][0]["InstanceId"]
            wait_until(lambda: held(iid), 30, what=f"{iid} plumbed on host-1")
            sample()
            lab.aws("terminate-instances", "--instance-ids", iid)
            wait_until(lambda: not held(iid), 30, what=f"{iid} removed from host-1")
            sample()
        print(f"softvpc: {run([os.environ.get('SOFTVPC_BIN', 'softvpc'), '--version']).stdout.strip()}, "
              f"{rounds} rounds (launch + terminate on host-1)")
        for h in lag:
            role = "local plumbing" if h == "host-1" else "remote only"
            print(f"table publish lag, {h} ({role}): {summary(lag[h])}")
        print(f"instance plumbing per reconcile, host-1: {summary(plumbing)}")
        del status
    finally:
        lab.cli("down", timeout=120)
        for ns in netns_list():
            if ns.startswith(os.environ["SOFTVPC_E2E_PREFIX"]):
                run(["ip", "netns", "del", ns])
        print(f"load average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
