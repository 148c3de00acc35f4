"""The replicated control plane (issue 12): three `softvpc server --store etcd` replicas on a
three-member etcd cluster (loopback, the Debian `etcd-server` package), with real boto3 clients.

- A burst of writes from several client threads spread over the replicas; one replica is killed
  (SIGKILL) in the middle. Its clients fail over to the next replica by themselves; each must
  have a write acknowledged by another replica within 5 s of the kill. Afterwards every
  replica holds every acknowledged change, each with its acknowledged attributes, and nothing
  half-made (the whole history of acknowledged operations is checked, as in the crash test).
- One etcd member killed: the replicas go on serving reads and writes.
- Everything stopped and started again (etcd members on their data directories, replicas on
  the same prefix): the state is intact.
"""

import random
import shutil
import signal
import threading
import time

import botocore.exceptions

from conftest import EtcdCluster, Server
from test_crash_consistency import REQUESTS_PER_THREAD, Worker, check_consistent

THREADS = 6
FAILOVER_LIMIT = 5.0


class Replica(Server):
    """A server replica on the etcd cluster `cluster`, under one shared prefix."""

    def __init__(self, data_dir, cluster, prefix):
        super().__init__(data_dir, extra_args=[
            "--store", "etcd", "--etcd-endpoints", cluster.endpoints, "--etcd-prefix", prefix])


def store_flags_are_ours(monkeypatch):
    # The suite's store selection must not add a second --store to these servers.
    import conftest
    monkeypatch.setattr(conftest, "STORE", "redb")


class FailoverWorker(Worker):
    """A crash-test writer that, when its replica stops answering, moves to the next one."""

    def __init__(self, replicas, tid, seed):
        self.replicas = replicas
        self.at = tid % len(replicas)
        super().__init__(replicas[self.at], tid, seed)
        self.lost_at = None       # when its replica stopped answering
        self.failover = None      # seconds from then to its next acknowledged write

    def run(self, stop):
        for _ in range(REQUESTS_PER_THREAD):
            if stop.is_set():
                return
            self.sent += 1
            try:
                self.one()
            except botocore.exceptions.ClientError as e:
                self.failed = e
                return
            except Exception:  # connection refused / reset: the replica died
                if self.lost_at is None:
                    self.lost_at = time.monotonic()
                self.at = (self.at + 1) % len(self.replicas)
                self.ec2 = self.replicas[self.at].client()
                continue
            self.acked += 1
            if self.lost_at is not None and self.failover is None:
                self.failover = time.monotonic() - self.lost_at


def test_replicas_survive_a_replica_kill_an_etcd_member_kill_and_a_restart(workdir, monkeypatch):
    store_flags_are_ours(monkeypatch)
    cluster = EtcdCluster(workdir / "etcd-ha").start()
    replicas = []
    try:
        prefix = "/softvpc-ha/"
        first = Replica(workdir / "ha-0", cluster, prefix).start()
        replicas.append(first)
        for i in (1, 2):
            r = Replica(workdir / f"ha-{i}", cluster, prefix)
            # One control plane: the replicas sign with the same API key pair.
            r.data_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(first.credentials_file, r.credentials_file)
            replicas.append(r.start())

        # A change made on one replica is seen at once on another (the read barrier).
        v = replicas[0].client().create_vpc(CidrBlock="10.99.0.0/16")["Vpc"]
        got = replicas[1].client().describe_vpcs(VpcIds=[v["VpcId"]])["Vpcs"]
        assert got[0]["CidrBlock"] == "10.99.0.0/16"
        s = replicas[2].client().create_subnet(VpcId=v["VpcId"], CidrBlock="10.99.1.0/24")
        assert s["Subnet"]["VpcId"] == v["VpcId"]

        # The burst, with replica 0 killed in the middle of it.
        rng = random.Random(12)
        workers = [FailoverWorker(replicas, tid, 7) for tid in range(THREADS)]
        stop = threading.Event()
        threads = [threading.Thread(target=w.run, args=(stop,)) for w in workers]
        for t in threads:
            t.start()
        target = rng.randint(40, THREADS * REQUESTS_PER_THREAD // 3)
        deadline = time.monotonic() + 60
        while sum(w.acked for w in workers) < target and time.monotonic() < deadline:
            time.sleep(0.001)
        killed_at = time.monotonic()
        replicas[0].proc.send_signal(signal.SIGKILL)
        replicas[0].proc.wait(timeout=10)
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        for w in workers:
            assert w.failed is None, f"thread {w.tid}: {w.failed}"
        moved = [w for w in workers if w.lost_at is not None]
        assert moved, "no client was on the killed replica"
        for w in moved:
            assert w.failover is not None, f"thread {w.tid} never wrote again"
            assert w.failover <= FAILOVER_LIMIT, f"thread {w.tid}: {w.failover:.2f} s"
            assert w.lost_at - killed_at < FAILOVER_LIMIT
        failover = max(w.failover for w in moved)
        print(f"failover: clients of the killed replica wrote again after {failover:.3f} s (max)")
        # The survivors agree, and hold every acknowledged change.
        views = [check_consistent(r.client(), workers) for r in replicas[1:]]
        assert views[0] == views[1]

        # One etcd member down: reads and writes go on.
        cluster.members[0].proc.send_signal(signal.SIGKILL)
        cluster.members[0].proc.wait(timeout=10)
        started = time.monotonic()
        for i in range(10):
            r = replicas[1 + i % 2].client()
            r.create_tags(Resources=[v["VpcId"]], Tags=[{"Key": f"after-member-kill-{i}", "Value": "x"}])
        print(f"10 writes with one etcd member down: {time.monotonic() - started:.3f} s")
        tagged = replicas[2].client().describe_vpcs(VpcIds=[v["VpcId"]])["Vpcs"][0]["Tags"]
        assert {t["Key"] for t in tagged} >= {f"after-member-kill-{i}" for i in range(10)}
        before = check_consistent(replicas[1].client(), workers)

        # Everything stopped and started again: the state is intact.
        for r in replicas:
            r.stop()
        cluster.stop()
        cluster.start()
        for r in replicas:
            r.start()
        for r in replicas:
            after = check_consistent(r.client(), workers)
            for kind, a, b in zip(("vpcs", "subnets", "instances"), after, before):
                assert a.keys() == b.keys(), kind
                for k in a:
                    assert a[k] == b[k], (kind, k, a[k], b[k])
            tagged = r.client().describe_vpcs(VpcIds=[v["VpcId"]])["Vpcs"][0]["Tags"]
            assert {t["Key"] for t in tagged} >= {f"after-member-kill-{i}" for i in range(10)}
        # And takes writes on every replica.
        for r in replicas:
            r.client().create_vpc(CidrBlock="10.98.0.0/16")
    finally:
        for r in replicas:
            r.stop()
        cluster.stop()
