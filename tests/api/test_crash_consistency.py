"""Persistence under a crash (issue 3, "Storage and behaviour under faults"): a bounded burst of
writes from several threads, `kill -9` of the server in the middle of it (at a seeded random
point), a restart on the same data dir, then:
- every acknowledged change is there (created ids describable with the acknowledged attributes,
  terminated instances terminated or forgotten (the store drops them by design) and never back
  alive, acknowledged rules and tags present);
- nothing is half-made (every subnet / security group has its VPC, every VPC has its default
  security group, default network ACL and main route table, every live instance has its ENI, and
  each subnet's AvailableIpAddressCount matches the addresses its ENIs hold);
- the server still accepts writes.
Requests that were in flight at the kill are unknown: they may or may not have happened, but
whatever did happen must be whole.
"""

import ipaddress
import os
import random
import signal
import threading
import time

import botocore.exceptions

from conftest import Server
from helpers import instances, tags

THREADS = 4
REQUESTS_PER_THREAD = 60
SEEDS = (1, 2, 3)


class Worker:
    """One writer thread: works only on its own resources, so what it was acknowledged is exact."""

    def __init__(self, srv, tid, seed):
        self.ec2 = srv.client()
        self.tid = tid
        self.rng = random.Random(seed * 1000 + tid)
        self.vpcs = {}        # vpc id -> cidr
        self.subnets = {}     # subnet id -> (vpc id, cidr)
        self.instances = {}   # instance id -> (subnet id, eni id, ip)
        self.terminated = set()
        self.maybe_terminated = set()
        self.groups = {}      # group id -> (vpc id, name)
        self.rules = []       # (group id, port)
        self.tags = []        # (resource id, key, value)
        self.sent = 0
        self.acked = 0
        self.failed = None    # first error: the connection dying is expected, API errors are not
        self.next_subnet = 0

    def one(self):
        op = self.rng.choice(
            ["vpc", "subnet", "subnet", "run", "run", "run", "sg", "rule", "tag", "terminate"])
        ec2 = self.ec2
        if op == "vpc" or not self.vpcs:
            # VPCs may overlap; each thread uses its own /16 only to keep the data readable.
            cidr = f"10.{self.tid}.0.0/16"
            v = ec2.create_vpc(CidrBlock=cidr)["Vpc"]
            self.vpcs[v["VpcId"]] = cidr
        elif op == "subnet" or not self.subnets:
            vpc = self.rng.choice(sorted(self.vpcs))
            self.next_subnet += 1
            cidr = f"10.{self.tid}.{self.next_subnet}.0/24"
            s = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]
            self.subnets[s["SubnetId"]] = (vpc, cidr)
        elif op == "run":
            sub = self.rng.choice(sorted(self.subnets))
            i = ec2.run_instances(ImageId="ami-12345678", SubnetId=sub, MinCount=1, MaxCount=1)["Instances"][0]
            self.instances[i["InstanceId"]] = (
                sub, i["NetworkInterfaces"][0]["NetworkInterfaceId"], i["PrivateIpAddress"])
        elif op == "sg" or (op == "rule" and not self.groups):
            vpc = self.rng.choice(sorted(self.vpcs))
            name = f"g{self.tid}-{self.sent}"
            g = ec2.create_security_group(GroupName=name, Description="crash test", VpcId=vpc)
            self.groups[g["GroupId"]] = (vpc, name)
        elif op == "rule":
            gid = self.rng.choice(sorted(self.groups))
            port = 1000 + self.sent
            ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[{
                "IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                "IpRanges": [{"CidrIp": "203.0.113.0/24"}]}])
            self.rules.append((gid, port))
        elif op == "tag":
            pool = sorted(self.vpcs) + sorted(self.subnets) + sorted(self.groups)
            rid = self.rng.choice(pool)
            key, value = f"k{self.sent}", f"v{self.tid}-{self.sent}"
            ec2.create_tags(Resources=[rid], Tags=[{"Key": key, "Value": value}])
            self.tags.append((rid, key, value))
        else:  # terminate
            live = sorted(set(self.instances) - self.terminated)
            if not live:
                return
            iid = self.rng.choice(live)
            # In flight at the kill, it may or may not have happened: both are fine then.
            self.maybe_terminated.add(iid)
            ec2.terminate_instances(InstanceIds=[iid])
            self.terminated.add(iid)

    def run(self, stop):
        for _ in range(REQUESTS_PER_THREAD):
            if stop.is_set():
                return
            self.sent += 1
            try:
                self.one()
            except botocore.exceptions.ClientError as e:
                # An API refusal of a well-formed request is a bug (the burst only asks for what
                # this thread's own acknowledged state allows), unless the server was dying.
                if not stop.is_set():
                    self.failed = e
                return
            except Exception:  # connection reset / refused: the server was killed
                return
            self.acked += 1


def by_id(items, key):
    return {x[key]: x for x in items}


def check_consistent(ec2, workers):
    vpcs = by_id(ec2.describe_vpcs()["Vpcs"], "VpcId")
    subnets = by_id(ec2.describe_subnets()["Subnets"], "SubnetId")
    groups = by_id(ec2.describe_security_groups()["SecurityGroups"], "GroupId")
    acls = ec2.describe_network_acls()["NetworkAcls"]
    tables = ec2.describe_route_tables()["RouteTables"]
    insts = by_id(instances(ec2.describe_instances()), "InstanceId")
    enis = by_id(ec2.describe_network_interfaces()["NetworkInterfaces"], "NetworkInterfaceId")

    # Every acknowledged change is there, with the acknowledged attributes.
    for w in workers:
        for vid, cidr in w.vpcs.items():
            assert vid in vpcs, f"acknowledged VPC {vid} lost"
            assert vpcs[vid]["CidrBlock"] == cidr
        for sid, (vid, cidr) in w.subnets.items():
            assert sid in subnets, f"acknowledged subnet {sid} lost"
            assert (subnets[sid]["VpcId"], subnets[sid]["CidrBlock"]) == (vid, cidr)
        for iid, (sid, eni, ip) in w.instances.items():
            # Terminated instances are stored too (kept for an hour), so every acknowledged
            # launch is there: terminated ones never back alive, and their ENI never back.
            assert iid in insts, f"acknowledged instance {iid} lost"
            i = insts[iid]
            if iid in w.terminated or i["State"]["Name"] != "running":
                assert iid in w.terminated or iid in w.maybe_terminated, (iid, i["State"])
                assert i["State"]["Name"] == "terminated", i
                assert eni not in enis, f"terminated {iid} kept its ENI {eni}"
                continue
            assert (i["SubnetId"], i["PrivateIpAddress"]) == (sid, ip)
            assert eni in enis, f"acknowledged instance {iid} lost its ENI {eni}"
        for gid, (vid, name) in w.groups.items():
            assert gid in groups, f"acknowledged security group {gid} lost"
            assert (groups[gid]["VpcId"], groups[gid]["GroupName"]) == (vid, name)
        for gid, port in w.rules:
            ports = [(p.get("FromPort"), p.get("ToPort")) for p in groups[gid]["IpPermissions"]]
            assert (port, port) in ports, f"acknowledged rule tcp/{port} of {gid} lost: {ports}"
        for rid, key, value in w.tags:
            res = vpcs.get(rid) or subnets.get(rid) or groups.get(rid)
            assert tags(res).get(key) == value, f"acknowledged tag {key}={value} on {rid} lost"

    # Nothing half-made, acknowledged or not.
    for vid in vpcs:
        assert [g for g in groups.values() if g["VpcId"] == vid and g["GroupName"] == "default"], \
            f"{vid} has no default security group"
        assert [a for a in acls if a["VpcId"] == vid and a["IsDefault"]], f"{vid} has no default ACL"
        assert [t for t in tables if t["VpcId"] == vid
                and any(a.get("Main") for a in t.get("Associations", []))], \
            f"{vid} has no main route table"
    for s in subnets.values():
        assert s["VpcId"] in vpcs, f"subnet {s['SubnetId']} of missing {s['VpcId']}"
    for g in groups.values():
        assert g["VpcId"] in vpcs, f"security group {g['GroupId']} of missing {g['VpcId']}"
    used = {sid: 0 for sid in subnets}
    for e in enis.values():
        assert e["SubnetId"] in subnets, f"ENI {e['NetworkInterfaceId']} of missing {e['SubnetId']}"
        used[e["SubnetId"]] += len(e["PrivateIpAddresses"])
    for iid, i in insts.items():
        if i["State"]["Name"] in ("shutting-down", "terminated"):
            assert not [e for e in enis.values()
                        if (e.get("Attachment") or {}).get("InstanceId") == iid], iid
            continue
        mine = [e for e in enis.values() if (e.get("Attachment") or {}).get("InstanceId") == iid]
        assert len(mine) == 1, f"instance {iid} has ENIs {mine}"
        assert mine[0]["PrivateIpAddress"] == i["PrivateIpAddress"]
        assert mine[0]["SubnetId"] == i["SubnetId"]
    for sid, s in subnets.items():
        size = ipaddress.ip_network(s["CidrBlock"]).num_addresses
        assert s["AvailableIpAddressCount"] == size - 5 - used[sid], \
            f"{sid}: AvailableIpAddressCount {s['AvailableIpAddressCount']}, ENIs use {used[sid]}"
    return vpcs, subnets, insts


def test_acknowledged_writes_survive_kill_9(workdir):
    started = time.monotonic()
    for seed in SEEDS:
        rng = random.Random(seed)
        srv = Server(workdir / f"crash-{seed}").start()
        try:
            workers = [Worker(srv, tid, seed) for tid in range(THREADS)]
            stop = threading.Event()
            threads = [threading.Thread(target=w.run, args=(stop,)) for w in workers]
            for t in threads:
                t.start()
            # Kill at a seeded random point of the burst: once a random number of writes is
            # acknowledged (a point counted in requests, not seconds, so machine load cannot
            # move it past the end of the burst), plus a random sub-request delay.
            target = rng.randint(30, THREADS * REQUESTS_PER_THREAD * 3 // 4)
            deadline = time.monotonic() + 20
            while sum(w.acked for w in workers) < target and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.005))
            pid = srv.proc.pid
            os.kill(pid, signal.SIGKILL)
            stop.set()
            srv.proc.wait(timeout=10)
            for t in threads:
                t.join(timeout=30)
            assert not any(t.is_alive() for t in threads)
            for w in workers:
                assert w.failed is None, f"thread {w.tid}: {w.failed}"
            total = sum(w.acked for w in workers)
            # The kill must land mid-burst, with real work acknowledged before it.
            assert 0 < total < THREADS * REQUESTS_PER_THREAD, total

            srv.stop()
            srv.start()
            ec2 = srv.client()
            vpcs, subnets, insts = check_consistent(ec2, workers)

            # Still accepts writes, and new ids collide with nothing recovered.
            v = ec2.create_vpc(CidrBlock="10.200.0.0/16")["Vpc"]
            s = ec2.create_subnet(VpcId=v["VpcId"], CidrBlock="10.200.0.0/24")["Subnet"]
            i = ec2.run_instances(ImageId="ami-12345678", SubnetId=s["SubnetId"], MinCount=1, MaxCount=1)["Instances"][0]
            assert v["VpcId"] not in vpcs and s["SubnetId"] not in subnets
            assert i["InstanceId"] not in insts
            check_consistent(ec2, workers)
        finally:
            srv.stop()
    assert time.monotonic() - started < 90
