"""Automatic public IPv4 addresses (MapPublicIpOnLaunch, NetworkInterfaces.1.AssociatePublicIpAddress):
assignment at launch from the Elastic IP pool (203.0.113.0/24), the override both ways, release at
stop (a new address at start) and terminate, replacement by an Elastic IP and the new address
after disassociation, PublicDnsName with and without enableDnsHostnames, filters, persistence.

The module runs its own server: the tests reason about which pool addresses are free.
The data plane does not use these addresses yet; only the API is checked here."""

import ipaddress

import pytest

from conftest import Server
from helpers import expect_error, instances

POOL = ipaddress.ip_network("203.0.113.0/24")


@pytest.fixture(scope="module")
def srv(workdir):
    s = Server(workdir / "public-ip").start()
    yield s
    s.stop()


@pytest.fixture
def ec2(srv):
    return srv.client()


@pytest.fixture
def net(ec2):
    """A VPC with an internet gateway and a subnet; deleted afterwards (instances terminated)."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    sub = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    yield vpc, sub
    ids = [i["InstanceId"] for i in instances(ec2.describe_instances(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}]))
           if i["State"]["Name"] != "terminated"]
    if ids:
        ec2.terminate_instances(InstanceIds=ids)
    for a in ec2.describe_addresses()["Addresses"]:
        if "AssociationId" in a:
            ec2.disassociate_address(AssociationId=a["AssociationId"])
        ec2.release_address(AllocationId=a["AllocationId"])
    # ENIs attached by hand outlive their instance.
    for e in ec2.describe_network_interfaces(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}])["NetworkInterfaces"]:
        ec2.delete_network_interface(NetworkInterfaceId=e["NetworkInterfaceId"])
    ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    ec2.delete_internet_gateway(InternetGatewayId=igw)
    ec2.delete_subnet(SubnetId=sub)
    ec2.delete_vpc(VpcId=vpc)


def map_public(ec2, sub, on):
    ec2.modify_subnet_attribute(SubnetId=sub, MapPublicIpOnLaunch={"Value": on})


def run(ec2, sub=None, public=None, **kw):
    """Launches one instance into `sub`; `public` set: through NetworkInterfaces with
    AssociatePublicIpAddress."""
    if public is None:
        kw["SubnetId"] = sub
    else:
        kw["NetworkInterfaces"] = [{"DeviceIndex": 0, "SubnetId": sub,
                                    "AssociatePublicIpAddress": public}]
    kw.setdefault("ImageId", "ami-12345678")
    r = ec2.run_instances(MinCount=1, MaxCount=1, **kw)
    return r["Instances"][0]


def describe(ec2, iid):
    return instances(ec2.describe_instances(InstanceIds=[iid]))[0]


def eni_of(ec2, inst):
    eid = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    return ec2.describe_network_interfaces(NetworkInterfaceIds=[eid])["NetworkInterfaces"][0]


def dns(ip):
    return "ec2-" + ip.replace(".", "-") + ".compute-1.amazonaws.com"


def test_subnet_flag_on_and_off(ec2, net):
    vpc, sub = net
    off = run(ec2, sub)
    assert "PublicIpAddress" not in off
    assert "PublicIpAddress" not in describe(ec2, off["InstanceId"])
    assert "Association" not in eni_of(ec2, off)
    map_public(ec2, sub, True)
    on = run(ec2, sub)
    # RunInstances already answers with it.
    ip = on["PublicIpAddress"]
    assert ipaddress.ip_address(ip) in POOL
    d = describe(ec2, on["InstanceId"])
    assert d["PublicIpAddress"] == ip
    # enableDnsHostnames is off in a new VPC: no public DNS name.
    assert d["PublicDnsName"] == ""
    nic = d["NetworkInterfaces"][0]
    assert nic["Association"] == {"IpOwnerId": "amazon", "PublicDnsName": "", "PublicIp": ip}
    assert nic["PrivateIpAddresses"][0]["Association"]["PublicIp"] == ip
    eni = eni_of(ec2, on)
    # Owned by amazon; no allocation or association id, unlike an Elastic IP.
    assert eni["Association"] == {"IpOwnerId": "amazon", "PublicDnsName": "", "PublicIp": ip}
    assert eni["PrivateIpAddresses"][0]["Association"]["PublicIp"] == ip
    # Two instances never share one, and the subnet attribute turned off stops it.
    other = run(ec2, sub)
    assert other["PublicIpAddress"] != ip
    map_public(ec2, sub, False)
    assert "PublicIpAddress" not in run(ec2, sub)


def test_override_both_ways_and_refusals(ec2, net):
    vpc, sub = net
    forced = run(ec2, sub, public=True)
    assert ipaddress.ip_address(forced["PublicIpAddress"]) in POOL
    map_public(ec2, sub, True)
    refused = run(ec2, sub, public=False)
    assert "PublicIpAddress" not in refused
    assert "Association" not in eni_of(ec2, refused)
    expect_error("InvalidParameterCombination", 400, ec2.run_instances, ImageId="ami-12345678",
                 MinCount=1, MaxCount=1, NetworkInterfaces=[
                     {"DeviceIndex": 0, "SubnetId": sub, "AssociatePublicIpAddress": True},
                     {"DeviceIndex": 1, "SubnetId": sub}])
    err = expect_error("InvalidParameterCombination", 400, ec2.run_instances, MinCount=1,
                       MaxCount=1, SubnetId=sub, ImageId="ami-12345678",
                       NetworkInterfaces=[{"DeviceIndex": 0, "AssociatePublicIpAddress": True}])
    assert "instance-level subnet ID" in err["Error"]["Message"]


def test_filters(ec2, net):
    vpc, sub = net
    inst = run(ec2, sub, public=True)
    plain = run(ec2, sub)
    ip = inst["PublicIpAddress"]

    def ids(name, value):
        flt = [{"Name": name, "Values": [value]}, {"Name": "vpc-id", "Values": [vpc]}]
        return {i["InstanceId"] for i in instances(ec2.describe_instances(Filters=flt))}

    assert ids("ip-address", ip) == {inst["InstanceId"]}
    assert ids("network-interface.association.public-ip", ip) == {inst["InstanceId"]}
    assert ids("network-interface.association.ip-owner-id", "amazon") == {inst["InstanceId"]}
    assert ids("network-interface.addresses.association.ip-owner-id", "amazon") == {inst["InstanceId"]}
    assert ids("network-interface.addresses.association.public-ip", ip) == {inst["InstanceId"]}
    assert ids("ip-address", "203.0.113.253") == set()

    def enis(name, value):
        r = ec2.describe_network_interfaces(Filters=[{"Name": name, "Values": [value]},
                                                     {"Name": "vpc-id", "Values": [vpc]}])
        return {e["NetworkInterfaceId"] for e in r["NetworkInterfaces"]}

    eid = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    assert enis("association.public-ip", ip) == {eid}
    assert enis("association.ip-owner-id", "amazon") == {eid}


def test_stop_start_and_terminate(ec2, net):
    vpc, sub = net
    inst = run(ec2, sub, public=True)
    iid, first = inst["InstanceId"], inst["PublicIpAddress"]
    ec2.stop_instances(InstanceIds=[iid])
    stopped = describe(ec2, iid)
    assert "PublicIpAddress" not in stopped
    assert "Association" not in eni_of(ec2, inst)
    # The freed address goes to the next taker (an Elastic IP, lowest free first) ...
    held = ec2.allocate_address(Domain="vpc")
    assert held["PublicIp"] == first
    # ... so the start brings another one.
    ec2.start_instances(InstanceIds=[iid])
    second = describe(ec2, iid)["PublicIpAddress"]
    assert second != first and ipaddress.ip_address(second) in POOL
    ec2.terminate_instances(InstanceIds=[iid])
    assert "PublicIpAddress" not in describe(ec2, iid)
    # Released: the address can be allocated again.
    again = ec2.allocate_address(Domain="vpc")
    assert again["PublicIp"] == second


def test_elastic_ip_replaces_the_public_ip(ec2, net):
    vpc, sub = net
    inst = run(ec2, sub, public=True)
    iid, auto = inst["InstanceId"], inst["PublicIpAddress"]
    eip = ec2.allocate_address(Domain="vpc")
    assert eip["PublicIp"] != auto
    assoc = ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=iid)["AssociationId"]
    d = describe(ec2, iid)
    assert d["PublicIpAddress"] == eip["PublicIp"]
    a = eni_of(ec2, inst)["Association"]
    assert a["PublicIp"] == eip["PublicIp"] and a["AllocationId"] == eip["AllocationId"]
    assert a["IpOwnerId"] != "amazon"
    # The automatic address went back to the pool: the next Elastic IP gets it.
    spare = ec2.allocate_address(Domain="vpc")
    assert spare["PublicIp"] == auto
    ec2.release_address(AllocationId=spare["AllocationId"])
    # Disassociated, with one ENI and no other Elastic IP: a new automatic address.
    ec2.disassociate_address(AssociationId=assoc)
    d = describe(ec2, iid)
    assert d["PublicIpAddress"] not in ("", eip["PublicIp"])
    assert d["NetworkInterfaces"][0]["Association"]["IpOwnerId"] == "amazon"
    # With a second ENI attached, losing the Elastic IP leaves it without a public IP.
    assoc = ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=iid)["AssociationId"]
    extra = ec2.create_network_interface(SubnetId=sub)["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=extra, InstanceId=iid, DeviceIndex=1)
    ec2.disassociate_address(AssociationId=assoc)
    assert "PublicIpAddress" not in describe(ec2, iid)


def test_public_dns_name_follows_enable_dns_hostnames(ec2, net):
    vpc, sub = net
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    inst = run(ec2, sub, public=True)
    ip = inst["PublicIpAddress"]
    d = describe(ec2, inst["InstanceId"])
    assert d["PublicDnsName"] == dns(ip)
    assert d["NetworkInterfaces"][0]["Association"]["PublicDnsName"] == dns(ip)
    assert eni_of(ec2, inst)["Association"]["PublicDnsName"] == dns(ip)
    flt = [{"Name": "dns-name", "Values": [dns(ip)]}]
    assert [i["InstanceId"] for i in instances(ec2.describe_instances(Filters=flt))] == [inst["InstanceId"]]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": False})
    d = describe(ec2, inst["InstanceId"])
    assert d["PublicDnsName"] == "" and d["PublicIpAddress"] == ip


def test_restart_keeps_the_public_ip(workdir):
    s = Server(workdir / "public-ip-restart").start()
    try:
        ec2 = s.client()
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        sub = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.0.0/24")["Subnet"]["SubnetId"]
        map_public(ec2, sub, True)
        inst = run(ec2, sub)
        ip = inst["PublicIpAddress"]
        before = eni_of(ec2, inst)["Association"]
        s.stop()
        s.start()
        ec2 = s.client()
        assert describe(ec2, inst["InstanceId"])["PublicIpAddress"] == ip
        assert eni_of(ec2, inst)["Association"] == before
        # Still taken after the restart: an Elastic IP gets another address.
        assert ec2.allocate_address(Domain="vpc")["PublicIp"] != ip
    finally:
        s.stop()


def test_awscli_associate_public_ip_address(aws, server):
    """The CLI's --[no-]associate-public-ip-address moves --subnet-id, --private-ip-address and
    --security-group-ids into NetworkInterfaces.1 (the shared session server)."""
    c = server.client()
    vpc = c.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    sub = c.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    sg = c.create_security_group(VpcId=vpc, GroupName="pub", Description="pub")["GroupId"]
    ids = []
    try:
        rc, out, err = aws("run-instances", "--image-id", "ami-1", "--count", "1",
                           "--subnet-id", sub, "--private-ip-address", "10.0.0.50",
                           "--security-group-ids", sg, "--associate-public-ip-address")
        assert rc == 0, err
        i = out["Instances"][0]
        ids.append(i["InstanceId"])
        assert ipaddress.ip_address(i["PublicIpAddress"]) in POOL
        assert i["PrivateIpAddress"] == "10.0.0.50"
        assert [g["GroupId"] for g in i["SecurityGroups"]] == [sg]
        map_public(c, sub, True)
        rc, out, err = aws("run-instances", "--image-id", "ami-1", "--count", "1",
                           "--subnet-id", sub, "--no-associate-public-ip-address")
        assert rc == 0, err
        ids.append(out["Instances"][0]["InstanceId"])
        assert "PublicIpAddress" not in out["Instances"][0]
    finally:
        if ids:
            c.terminate_instances(InstanceIds=ids)
        c.delete_security_group(GroupId=sg)
        c.delete_subnet(SubnetId=sub)
        c.delete_vpc(VpcId=vpc)
