#!/usr/bin/env python3
"""API write latency on redb and on etcd (a 3-member cluster on loopback), and replica failover
time (issue 12's benchmark). Prints figures for BENCHMARKS.md.

    SOFTVPC_BIN=target/release/softvpc python3 scripts/bench-etcd.py [--writes N]

Each write is a CreateTags on one VPC (a small mutation: one resource written), sequential from
one boto3 client, then from 8 client threads at once (group commit). Failover: a client writing
through replica A in a loop, A killed with SIGKILL, the client moves to replica B: the time from
the kill to B's first acknowledged write (B's client is made and connected before the kill;
`--failovers N` kills, 10 by default).
"""

import argparse
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
        for name, srv in (("redb", redb), ("etcd, 3 members", a)):
            print(f"CreateTags, {name}, 1 client:  {measure(srv, args.writes, 1)}")
            print(f"CreateTags, {name}, 8 clients: {measure(srv, args.writes, 8)}")

        # Failover: writes through A, A killed, the client moves to B.
        vpc = a.client().create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
        results = []
        for round_ in range(args.failovers):
            ec2 = a.client()
            for i in range(20):
                ec2.create_tags(Resources=[vpc], Tags=[{"Key": "r", "Value": f"{round_}-{i}"}])
            # B's client exists and holds a connection before the kill (building a boto3
            # client takes longer than the failover itself, and is no part of it).
            ec2_b = b.client()
            ec2_b.describe_vpcs(VpcIds=[vpc])
            killed = time.perf_counter()
            a.proc.send_signal(signal.SIGKILL)
            a.proc.wait()
            while True:
                try:
                    ec2.create_tags(Resources=[vpc], Tags=[{"Key": "x", "Value": "v"}])
                except Exception:
                    ec2 = ec2_b
                    try:
                        ec2.create_tags(Resources=[vpc], Tags=[{"Key": "after", "Value": f"{round_}"}])
                        break
                    except Exception:
                        time.sleep(0.01)
            results.append((time.perf_counter() - killed) * 1000)
            a.stop()
            a.start()
        print("failover (kill -9 of the client's replica -> next write acknowledged by another): "
              + ", ".join(f"{r:.1f} ms" for r in results))
        print(f"failover over {len(results)} kills: p50 {pct(results, 0.5):.1f} ms, "
              f"max {max(results):.1f} ms")
    finally:
        for s in servers:
            s.stop()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
