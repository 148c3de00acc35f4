"""Concurrent requests are safe (issue 3, "Concurrent requests are safe"): many clients racing for
the same thing get exactly the outcomes AWS would give one at a time, never a shared address, a
duplicate name, a double delete or a half-made resource seen by a reader.

Every race is bounded: a handful of threads, a few requests each, a barrier so they really start
together.
"""

import ipaddress
import threading
import time
import uuid

import botocore.exceptions

THREADS = 8


def race(server, fn, per_thread=1):
    """Runs fn(client, thread index, call index) `per_thread` times on each of THREADS threads,
    all released together; returns a list of ("ok", result) / ("err", error code) outcomes."""
    clients = [server.client() for _ in range(THREADS)]
    barrier = threading.Barrier(THREADS)
    outcomes = []
    lock = threading.Lock()

    def worker(i):
        barrier.wait(timeout=30)
        for k in range(per_thread):
            try:
                out = ("ok", fn(clients[i], i, k))
            except botocore.exceptions.ClientError as e:
                out = ("err", e.response["Error"]["Code"])
            with lock:
                outcomes.append(out)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a racing request hung"
    assert len(outcomes) == THREADS * per_thread
    return outcomes


def oks(outcomes):
    return [r for kind, r in outcomes if kind == "ok"]


def errors(outcomes):
    return sorted(r for kind, r in outcomes if kind == "err")


def test_enis_racing_for_a_small_subnet_never_share_an_address(server, ec2):
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    # A /28 has 16 addresses; AWS reserves 5 (network, router, DNS, future, broadcast).
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.0.0/28")["Subnet"]
    assert subnet["AvailableIpAddressCount"] == 11
    sid = subnet["SubnetId"]

    outcomes = race(server, lambda c, i, k: c.create_network_interface(SubnetId=sid)
                    ["NetworkInterface"], per_thread=3)

    made = oks(outcomes)
    assert len(made) == 11, outcomes
    assert errors(outcomes) == ["InsufficientFreeAddressesInSubnet"] * (THREADS * 3 - 11)
    ips = [e["PrivateIpAddress"] for e in made]
    assert len(set(ips)) == 11, f"an address was handed out twice: {sorted(ips)}"
    net = ipaddress.ip_network("10.40.0.0/28")
    reserved = {net[0], net[1], net[2], net[3], net[-1]}
    for ip in ips:
        assert ipaddress.ip_address(ip) in net and ipaddress.ip_address(ip) not in reserved, ip
    described = ec2.describe_network_interfaces(
        Filters=[{"Name": "subnet-id", "Values": [sid]}])["NetworkInterfaces"]
    assert sorted(e["NetworkInterfaceId"] for e in described) == sorted(
        e["NetworkInterfaceId"] for e in made)
    assert ec2.describe_subnets(SubnetIds=[sid])["Subnets"][0]["AvailableIpAddressCount"] == 0

    # Deleting them all at once gives every address back.
    ids = [e["NetworkInterfaceId"] for e in made]
    outcomes = race(server, lambda c, i, k: c.delete_network_interface(
        NetworkInterfaceId=ids[i * 2 + k]) if i * 2 + k < len(ids) else None, per_thread=2)
    assert errors(outcomes) == []
    assert ec2.describe_subnets(SubnetIds=[sid])["Subnets"][0]["AvailableIpAddressCount"] == 11


def test_secondary_addresses_assigned_concurrently_are_distinct(server, ec2):
    vpc = ec2.create_vpc(CidrBlock="10.41.0.0/16")["Vpc"]["VpcId"]
    sid = ec2.create_subnet(VpcId=vpc, CidrBlock="10.41.0.0/26")["Subnet"]["SubnetId"]
    enis = [ec2.create_network_interface(SubnetId=sid)["NetworkInterface"]["NetworkInterfaceId"]
            for _ in range(THREADS)]

    race(server, lambda c, i, k: c.assign_private_ip_addresses(
        NetworkInterfaceId=enis[i], SecondaryPrivateIpAddressCount=2), per_thread=2)

    described = ec2.describe_network_interfaces(NetworkInterfaceIds=enis)["NetworkInterfaces"]
    addrs = [a["PrivateIpAddress"] for e in described for a in e["PrivateIpAddresses"]]
    assert len(addrs) == THREADS * 5, addrs  # primary + 4 secondaries each
    assert len(set(addrs)) == len(addrs), "an address is held by two ENIs"
    # 64 - 5 reserved - 40 held.
    assert ec2.describe_subnets(SubnetIds=[sid])["Subnets"][0]["AvailableIpAddressCount"] == 19


def test_same_security_group_name_at_once_makes_exactly_one(server, ec2):
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    outcomes = race(server, lambda c, i, k: c.create_security_group(
        VpcId=vpc, GroupName="web", Description="racing")["GroupId"])
    assert len(oks(outcomes)) == 1, outcomes
    assert errors(outcomes) == ["InvalidGroup.Duplicate"] * (THREADS - 1)
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["web"]}])
    assert [g["GroupId"] for g in groups["SecurityGroups"]] == oks(outcomes)


def test_client_token_retries_at_once_make_one_route_table(server, ec2):
    vpc = ec2.create_vpc(CidrBlock="10.43.0.0/16")["Vpc"]["VpcId"]
    token = str(uuid.uuid4())
    outcomes = race(server, lambda c, i, k: c.create_route_table(
        VpcId=vpc, ClientToken=token)["RouteTable"]["RouteTableId"], per_thread=2)
    ids = set(oks(outcomes))
    assert errors(outcomes) == [] and len(ids) == 1, outcomes
    tables = ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"]
    assert len(tables) == 2  # the main one and the one the token made


def test_one_delete_wins_the_others_see_not_found(server, ec2):
    vpc = ec2.create_vpc(CidrBlock="10.44.0.0/16")["Vpc"]["VpcId"]
    sid = ec2.create_subnet(VpcId=vpc, CidrBlock="10.44.1.0/24")["Subnet"]["SubnetId"]
    outcomes = race(server, lambda c, i, k: c.delete_subnet(SubnetId=sid))
    assert len(oks(outcomes)) == 1, outcomes
    assert errors(outcomes) == ["InvalidSubnetID.NotFound"] * (THREADS - 1)
    outcomes = race(server, lambda c, i, k: c.delete_vpc(VpcId=vpc))
    assert len(oks(outcomes)) == 1, outcomes
    assert errors(outcomes) == ["InvalidVpcID.NotFound"] * (THREADS - 1)


def test_subnet_delete_racing_eni_create_leaves_no_orphan(server, ec2):
    # Either the ENI is made first (then the delete is refused) or the subnet goes first (then
    # the create fails); never an ENI in a deleted subnet.
    for round_ in range(5):
        vpc = ec2.create_vpc(CidrBlock="10.45.0.0/16")["Vpc"]["VpcId"]
        sid = ec2.create_subnet(VpcId=vpc, CidrBlock="10.45.0.0/24")["Subnet"]["SubnetId"]

        def op(c, i, k):
            if i % 2:
                c.delete_subnet(SubnetId=sid)
                return "deleted"
            return c.create_network_interface(SubnetId=sid)["NetworkInterface"][
                "NetworkInterfaceId"]

        outcomes = race(server, op)
        made = [r for r in oks(outcomes) if r != "deleted"]
        enis = ec2.describe_network_interfaces(
            Filters=[{"Name": "subnet-id", "Values": [sid]}])["NetworkInterfaces"]
        subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
        if subnets:
            assert sorted(e["NetworkInterfaceId"] for e in enis) == sorted(made), outcomes
            assert "deleted" not in oks(outcomes)
            for e in enis:
                ec2.delete_network_interface(NetworkInterfaceId=e["NetworkInterfaceId"])
            ec2.delete_subnet(SubnetId=sid)
        else:
            assert enis == [], f"round {round_}: ENIs outlived their subnet: {enis}"
            assert oks(outcomes).count("deleted") == 1 and made == [], outcomes
            assert set(errors(outcomes)) <= {"InvalidSubnetID.NotFound", "DependencyViolation"}
        ec2.delete_vpc(VpcId=vpc)


def test_readers_never_see_a_half_made_vpc(server, ec2):
    stop = threading.Event()
    seen_broken = []
    checked = [0]

    def reader():
        c = server.client()
        while not stop.is_set() and checked[0] < 400:
            for v in c.describe_vpcs(Filters=[{"Name": "tag:race", "Values": ["reader"]}])["Vpcs"]:
                vid = v["VpcId"]
                f = [{"Name": "vpc-id", "Values": [vid]}]
                sgs = c.describe_security_groups(Filters=f + [
                    {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
                main = c.describe_route_tables(Filters=f + [
                    {"Name": "association.main", "Values": ["true"]}])["RouteTables"]
                acl = c.describe_network_acls(Filters=f + [
                    {"Name": "default", "Values": ["true"]}])["NetworkAcls"]
                # The VPC may be deleted between the calls; only a VPC still there counts.
                still = c.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vid]}])["Vpcs"]
                if still and (len(sgs), len(main), len(acl)) != (1, 1, 1):
                    seen_broken.append((vid, len(sgs), len(main), len(acl)))
                checked[0] += 1

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        def op(c, i, k):
            v = c.create_vpc(CidrBlock=f"10.{50 + i}.0.0/16", TagSpecifications=[{
                "ResourceType": "vpc", "Tags": [{"Key": "race", "Value": "reader"}]}])["Vpc"]
            if k % 2:
                c.delete_vpc(VpcId=v["VpcId"])
            return v["VpcId"]

        outcomes = race(server, op, per_thread=4)
        assert errors(outcomes) == []
        # Let the readers finish at least one pass over the surviving VPCs.
        deadline = time.monotonic() + 10
        while checked[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in readers:
            t.join(timeout=60)
    assert checked[0] > 0, "the readers never saw a VPC"
    assert seen_broken == [], seen_broken
    for vid in oks(outcomes):
        try:
            ec2.delete_vpc(VpcId=vid)
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "InvalidVpcID.NotFound"
