#!/usr/bin/env python3
"""API write latency on redb and on etcd (a 3-member cluster on loopback), and replica failover
time (issue 12's benchmark). Prints figures for BENCHMARKS.md.

    SOFTVPC_BIN=target/release/softvpc python3 scripts/bench-etcd.py [--writes N]

Each write is a CreateTags on one VPC (a small mutation: one resource written), sequential from
one boto3 client, then from 8 client threads at once (group commit). Failover: a client writing
through replica A in a loop, A killed with SIGKILL, the client moves to replica B: the time from
the kill to B's first acknowledged write (clients without botocore's retries; B's client is made
and connected before the kill; `--failovers N` kills, 10 by default), split into the kill until
A's process is gone, until the client's request to A fails, and from there until B acknowledges
its write. The load average is printed before and after each part (the figures mean little on a
loaded machine without it).
"""

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "api"))
import conftest  # noqa: E402
from conftest import EtcdCluster, Server  # noqa: E402

conftest.STORE = "redb"  # the flags below say which store each server uses


def client(srv):
    """boto3 EC2 on `srv` that never retries: botocore's `max_attempts` (what the tests' clients
    set) counts retries, so a request to a killed replica would wait out a backoff of up to a
    second and try it again before failing, and that wait is the client's, not the failover's."""
    import boto3
    from botocore.config import Config
    ak, sk = srv.credentials()
    return boto3.client("ec2", endpoint_url=srv.endpoint, region_name=conftest.REGION,
                        aws_access_key_id=ak, aws_secret_access_key=sk,
                        config=Config(retries={"total_max_attempts": 1}))


def load():
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def measure(srv, n, threads):
    vpc = srv.client().create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    lat = []
    lock = threading.Lock()

    def run(tid):
        ec2 = srv.client()
        mine = []
        for i in range(n // threads):
            t0 = time.perf_counter()
            ec2.create_tags(Resources=[vpc], Tags=[{"Key": f"k{tid}", "Value": f"v{i}"}])
            mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            lat.extend(mine)

    started = time.perf_counter()
    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - started
    return (f"p50 {statistics.median(lat):.2f} ms, p99 {pct(lat, 0.99):.2f} ms, "
            f"{len(lat) / wall:.0f} writes/s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=400)
    ap.add_argument("--failovers", type=int, default=10, help="replica kills to time")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="softvpc-bench-etcd-"))
    servers = []
    cluster = EtcdCluster(work / "etcd").start()
    try:
        redb = Server(work / "redb").start()
        servers.append(redb)
        etcd_args = ["--store", "etcd", "--etcd-endpoints", cluster.endpoints,
                     "--etcd-prefix", "/bench/"]
        a = Server(work / "a", extra_args=etcd_args).start()
        servers.append(a)
        b = Server(work / "b", extra_args=etcd_args)
        b.data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(a.credentials_file, b.credentials_file)
        servers.append(b.start())
        print(f"{os.cpu_count()} CPUs; before the writes: {load()}", flush=True)
        for name, srv in (("redb", redb), ("etcd, 3 members", a)):
            print(f"CreateTags, {name}, 1 client:  {measure(srv, args.writes, 1)}", flush=True)
            print(f"CreateTags, {name}, 8 clients: {measure(srv, args.writes, 8)}", flush=True)
        print(f"after the writes: {load()}", flush=True)

        # Failover: writes through A, A killed, the client moves to B.
        vpc = a.client().create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
        results = []
        parts = []  # (kill -> A reaped, -> A's error to the client, -> B's acknowledgement)
        for round_ in range(args.failovers):
            ec2 = client(a)
            for i in range(20):
                ec2.create_tags(Resources=[vpc], Tags=[{"Key": "r", "Value": f"{round_}-{i}"}])
            # B's client exists and holds a connection before the kill (building a boto3
            # client takes longer than the failover itself, and is no part of it).
            ec2_b = client(b)
            ec2_b.describe_vpcs(VpcIds=[vpc])
            killed = time.perf_counter()
            a.proc.send_signal(signal.SIGKILL)
            a.proc.wait()
            dead = time.perf_counter()
            refused = None
            while True:
                try:
                    ec2.create_tags(Resources=[vpc], Tags=[{"Key": "x", "Value": "v"}])
                except Exception:
                    if refused is None:
                        refused = time.perf_counter()
                    ec2 = ec2_b
                    try:
                        ec2.create_tags(Resources=[vpc], Tags=[{"Key": "after", "Value": f"{round_}"}])
                        break
                    except Exception:
                        time.sleep(0.01)
            done = time.perf_counter()
            results.append((done - killed) * 1000)
            parts.append(((dead - killed) * 1000, (refused - dead) * 1000, (done - refused) * 1000))
            a.stop()
            a.start()
        print("failover (kill -9 of the client's replica -> next write acknowledged by another): "
              + ", ".join(f"{r:.1f} ms" for r in results))
        print(f"failover over {len(results)} kills: p50 {pct(results, 0.5):.1f} ms, "
              f"max {max(results):.1f} ms")
        print("of which: kill -> A's process gone (the kernel's teardown) / -> the client's error "
              "from A / -> B's acknowledgement: "
              + ", ".join(f"{a:.1f} / {b:.1f} / {c:.1f} ms" for a, b, c in parts))
        print(f"from A's error to B's acknowledgement: p50 {pct([c for _, _, c in parts], 0.5):.1f} "
              f"ms, max {max(c for _, _, c in parts):.1f} ms")
        print(f"after the failovers: {load()}")
    finally:
        for s in servers:
            s.stop()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
