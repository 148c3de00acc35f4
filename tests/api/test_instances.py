"""RunInstances/DescribeInstances/TerminateInstances, DescribeNetworkInterfaces, DescribeHosts
and CreateTags through boto3."""

import re

from helpers import expect_error, instances, tags


def name_tags(resource_type, name):
    return [{"ResourceType": resource_type, "Tags": [{"Key": "Name", "Value": name}]}]


def run(ec2, subnet, **kw):
    kw.setdefault("MinCount", 1)
    kw.setdefault("MaxCount", 1)
    return ec2.run_instances(ImageId="ami-12345678", SubnetId=subnet["SubnetId"], **kw)


def test_describe_hosts(ec2):
    hosts = ec2.describe_hosts()["Hosts"]
    by_name = {tags(h)["Name"]: h for h in hosts}
    assert {"host-1", "host-2"} <= set(by_name)
    for h in hosts:
        assert re.match(r"^h-[0-9a-f]{17}$", h["HostId"])
        assert h["State"] == "available"
        assert h["AvailabilityZone"] == "us-east-1a"
        assert "InstanceType" in h["HostProperties"]
    one = ec2.describe_hosts(HostIds=[by_name["host-2"]["HostId"]])["Hosts"]
    assert [tags(h)["Name"] for h in one] == ["host-2"]
    named = ec2.describe_hosts(Filter=[{"Name": "tag:Name", "Values": ["host-1"]}])["Hosts"]
    assert [h["HostId"] for h in named] == [by_name["host-1"]["HostId"]]


def test_run_instance_fields(ec2, vpc, subnet):
    host2 = next(h for h in ec2.describe_hosts()["Hosts"] if tags(h)["Name"] == "host-2")
    r = run(
        ec2, subnet, PrivateIpAddress="10.0.0.148", Placement={"HostId": "host-1"},
        TagSpecifications=name_tags("instance", "zigi-vm1") + name_tags("network-interface", "zigi-vm1-eth0"),
    )
    assert re.match(r"^r-[0-9a-f]{17}$", r["ReservationId"])
    assert r["OwnerId"] == "123456789012"
    (i,) = r["Instances"]
    assert re.match(r"^i-[0-9a-f]{17}$", i["InstanceId"])
    assert i["State"] == {"Code": 0, "Name": "pending"}
    assert i["ImageId"] == "ami-12345678"
    assert i["PrivateIpAddress"] == "10.0.0.148"
    assert tags(i) == {"Name": "zigi-vm1"}

    (d,) = instances(ec2.describe_instances(InstanceIds=[i["InstanceId"]]))
    assert d["State"] == {"Code": 16, "Name": "running"}
    assert d["PrivateIpAddress"] == "10.0.0.148"
    assert d["PrivateDnsName"] == "ip-10-0-0-148.ec2.internal"
    assert d["SubnetId"] == subnet["SubnetId"]
    assert d["VpcId"] == vpc["VpcId"]
    assert d["InstanceType"] == "t3.micro"
    assert d["Placement"]["AvailabilityZone"] == "us-east-1a"
    host1 = next(h for h in ec2.describe_hosts()["Hosts"] if tags(h)["Name"] == "host-1")
    assert d["Placement"]["HostId"] == host1["HostId"]
    assert d["SourceDestCheck"] is True
    assert d["LaunchTime"].year >= 2024
    (eni,) = d["NetworkInterfaces"]
    assert re.match(r"^eni-[0-9a-f]{17}$", eni["NetworkInterfaceId"])
    assert re.match(r"^02(:[0-9a-f]{2}){5}$", eni["MacAddress"])
    assert eni["PrivateIpAddress"] == "10.0.0.148"
    assert eni["Status"] == "in-use"
    assert eni["Attachment"]["DeviceIndex"] == 0
    assert eni["Attachment"]["DeleteOnTermination"] is True
    assert eni["Attachment"]["Status"] == "attached"
    assert any(x["InstanceId"] == i["InstanceId"] for x in host1["Instances"])

    # Placement by host id; the subnet's count drops by one per instance.
    r2 = run(ec2, subnet, Placement={"HostId": host2["HostId"]})
    (d2,) = instances(ec2.describe_instances(InstanceIds=[r2["Instances"][0]["InstanceId"]]))
    assert d2["Placement"]["HostId"] == host2["HostId"]
    assert d2["PrivateIpAddress"] == "10.0.0.4", "lowest free address first"
    (s,) = ec2.describe_subnets(SubnetIds=[subnet["SubnetId"]])["Subnets"]
    assert s["AvailableIpAddressCount"] == 249

    # The ENI is describable, with its tags and attachment.
    (n,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni["NetworkInterfaceId"]])["NetworkInterfaces"]
    assert n["Attachment"]["InstanceId"] == i["InstanceId"]
    assert n["MacAddress"] == eni["MacAddress"]
    assert n["SubnetId"] == subnet["SubnetId"] and n["VpcId"] == vpc["VpcId"]
    assert n["SourceDestCheck"] is True
    assert n["PrivateIpAddresses"][0]["Primary"] is True
    assert tags(n) == {"Name": "zigi-vm1-eth0"}


def test_run_instances_counts_and_order(ec2, vpc):
    s = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.5.0/28")["Subnet"]
    r = run(ec2, s, MinCount=2, MaxCount=3)
    ips = [i["PrivateIpAddress"] for i in r["Instances"]]
    assert ips == ["10.0.5.4", "10.0.5.5", "10.0.5.6"]
    assert len({i["InstanceId"] for i in r["Instances"]}) == 3
    # 8 left in the /28: MaxCount 20 launches 8, then nothing is left.
    r = run(ec2, s, MinCount=1, MaxCount=20)
    assert len(r["Instances"]) == 8
    (got,) = ec2.describe_subnets(SubnetIds=[s["SubnetId"]])["Subnets"]
    assert got["AvailableIpAddressCount"] == 0
    expect_error("InsufficientFreeAddressesInSubnet", 400, run, ec2, s)
    expect_error("DependencyViolation", 400, ec2.delete_subnet, SubnetId=s["SubnetId"])


def test_run_instances_refusals_change_nothing(ec2, vpc, subnet):
    run(ec2, subnet, PrivateIpAddress="10.0.0.148")
    snapshot = ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["NetworkInterfaces"]
    expect_error("InvalidIPAddress.InUse", 400, run, ec2, subnet, PrivateIpAddress="10.0.0.148")
    for reserved in ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.255"]:
        expect_error("InvalidParameterValue", 400, run, ec2, subnet, PrivateIpAddress=reserved)
    expect_error("InvalidParameterValue", 400, run, ec2, subnet, PrivateIpAddress="10.0.1.10")
    expect_error("InvalidParameterValue", 400, run, ec2, subnet, PrivateIpAddress="not-an-ip")
    expect_error("InvalidHostID.NotFound", 400, run, ec2, subnet, Placement={"HostId": "h-0123456789abcdef0"})
    expect_error("InvalidParameterValue", 400, run, ec2, subnet, Placement={"HostId": "no-such-host"})
    expect_error("InvalidSubnetID.NotFound", 400, ec2.run_instances, ImageId="ami-1", MinCount=1, MaxCount=1, SubnetId="subnet-0123456789abcdef0")
    # No subnet and no default VPC (the test server runs with --no-default-vpc), as on AWS.
    expect_error("VPCIdNotSpecified", 400, ec2.run_instances, ImageId="ami-1", MinCount=1, MaxCount=1)
    expect_error("InvalidParameterValue", 400, run, ec2, subnet, MinCount=3, MaxCount=2)
    expect_error("InvalidParameterValue", 400, run, ec2, subnet, TagSpecifications=name_tags("volcano", "x"))
    expect_error("InvalidParameterValue", 400, run, ec2, subnet,
                 TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "aws:x", "Value": "y"}]}])
    after = ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["NetworkInterfaces"]
    assert after == snapshot
    running = instances(ec2.describe_instances(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]))
    assert len(running) == 1


def test_terminate_instances(ec2, vpc, subnet):
    a = run(ec2, subnet, PrivateIpAddress="10.0.0.30")["Instances"][0]
    b = run(ec2, subnet)["Instances"][0]
    expect_error("InvalidInstanceID.NotFound", 400, ec2.terminate_instances, InstanceIds=[a["InstanceId"], "i-0123456789abcdef0"])
    (still,) = instances(ec2.describe_instances(InstanceIds=[a["InstanceId"]]))
    assert still["State"]["Name"] == "running", "a refused terminate changes nothing"
    out = ec2.terminate_instances(InstanceIds=[a["InstanceId"]])["TerminatingInstances"]
    assert out == [{
        "InstanceId": a["InstanceId"],
        "CurrentState": {"Code": 32, "Name": "shutting-down"},
        "PreviousState": {"Code": 16, "Name": "running"},
    }]
    (gone,) = instances(ec2.describe_instances(InstanceIds=[a["InstanceId"]]))
    assert gone["State"] == {"Code": 48, "Name": "terminated"}
    assert gone.get("NetworkInterfaces", []) == []
    enis = ec2.describe_network_interfaces(Filters=[{"Name": "attachment.instance-id", "Values": [a["InstanceId"]]}])
    assert enis["NetworkInterfaces"] == []
    # The address is free again.
    c = run(ec2, subnet, PrivateIpAddress="10.0.0.30")["Instances"][0]
    assert c["PrivateIpAddress"] == "10.0.0.30"
    # Terminating twice is fine.
    again = ec2.terminate_instances(InstanceIds=[a["InstanceId"]])["TerminatingInstances"]
    assert again[0]["CurrentState"]["Name"] == "terminated"
    states = {i["InstanceId"]: i["State"]["Name"] for i in instances(ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["running"]}, {"Name": "vpc-id", "Values": [vpc["VpcId"]]}]))}
    assert states == {b["InstanceId"]: "running", c["InstanceId"]: "running"}
    # With every instance gone, the subnet and VPC can be deleted.
    ec2.terminate_instances(InstanceIds=[b["InstanceId"], c["InstanceId"]])
    ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    ec2.delete_vpc(VpcId=vpc["VpcId"])
    expect_error("MissingParameter", 400, ec2.terminate_instances, InstanceIds=[])


def test_describe_instances_filters(ec2, vpc, subnet):
    run(ec2, subnet, PrivateIpAddress="10.0.0.148", TagSpecifications=name_tags("instance", "flt-zigi-vm1"))
    vm2 = run(ec2, subnet, PrivateIpAddress="10.0.0.185", TagSpecifications=name_tags("instance", "flt-zigi-vm2"))["Instances"][0]
    in_vpc = {"Name": "vpc-id", "Values": [vpc["VpcId"]]}

    def names(*filters):
        return sorted(tags(i)["Name"] for i in instances(ec2.describe_instances(Filters=[in_vpc, *filters])))

    assert names() == ["flt-zigi-vm1", "flt-zigi-vm2"]
    assert names({"Name": "tag:Name", "Values": ["flt-zigi-*"]}) == ["flt-zigi-vm1", "flt-zigi-vm2"]
    assert names({"Name": "tag:Name", "Values": ["*vm2"]}) == ["flt-zigi-vm2"]
    assert names({"Name": "private-ip-address", "Values": ["10.0.0.148"]}) == ["flt-zigi-vm1"]
    assert names({"Name": "private-ip-address", "Values": ["10.0.0.148", "10.0.0.185"]}) == ["flt-zigi-vm1", "flt-zigi-vm2"]
    assert names({"Name": "subnet-id", "Values": [subnet["SubnetId"]]}) == ["flt-zigi-vm1", "flt-zigi-vm2"]
    assert names({"Name": "instance-state-name", "Values": ["running"]}) == ["flt-zigi-vm1", "flt-zigi-vm2"]
    assert names({"Name": "instance-state-name", "Values": ["stopped"]}) == []
    assert names({"Name": "tag-key", "Values": ["Name"]}) == ["flt-zigi-vm1", "flt-zigi-vm2"]
    assert names({"Name": "tag-value", "Values": ["flt-zigi-vm?"]}) == ["flt-zigi-vm1", "flt-zigi-vm2"]
    ec2.terminate_instances(InstanceIds=[vm2["InstanceId"]])
    assert names({"Name": "instance-state-name", "Values": ["running"]}) == ["flt-zigi-vm1"]
    assert names({"Name": "instance-state-name", "Values": ["terminated"]}) == ["flt-zigi-vm2"]
    expect_error("InvalidParameterValue", 400, ec2.describe_instances, Filters=[{"Name": "bogus", "Values": ["x"]}])
    expect_error("InvalidInstanceID.NotFound", 400, ec2.describe_instances, InstanceIds=["i-0123456789abcdef0"])


def test_describe_network_interfaces_filters(ec2, vpc, subnet):
    i = run(ec2, subnet, PrivateIpAddress="10.0.0.77")["Instances"][0]
    in_vpc = {"Name": "vpc-id", "Values": [vpc["VpcId"]]}

    def ips(*filters):
        return sorted(n["PrivateIpAddress"] for n in ec2.describe_network_interfaces(Filters=[in_vpc, *filters])["NetworkInterfaces"])

    run(ec2, subnet)
    assert ips() == ["10.0.0.4", "10.0.0.77"]
    assert ips({"Name": "private-ip-address", "Values": ["10.0.0.77"]}) == ["10.0.0.77"]
    assert ips({"Name": "attachment.instance-id", "Values": [i["InstanceId"]]}) == ["10.0.0.77"]
    assert ips({"Name": "subnet-id", "Values": [subnet["SubnetId"]]}) == ["10.0.0.4", "10.0.0.77"]
    assert ips({"Name": "status", "Values": ["in-use"]}) == ["10.0.0.4", "10.0.0.77"]
    expect_error("InvalidNetworkInterfaceID.NotFound", 400, ec2.describe_network_interfaces,
                 NetworkInterfaceIds=["eni-0123456789abcdef0"])


def test_create_tags(ec2, vpc, subnet):
    i = run(ec2, subnet)["Instances"][0]
    eni = i["NetworkInterfaces"][0]["NetworkInterfaceId"]
    ec2.create_tags(Resources=[vpc["VpcId"], subnet["SubnetId"], i["InstanceId"], eni],
                    Tags=[{"Key": "team", "Value": "net"}, {"Key": "empty", "Value": ""}])
    (v,) = ec2.describe_vpcs(VpcIds=[vpc["VpcId"]])["Vpcs"]
    assert tags(v) == {"team": "net", "empty": ""}
    (s,) = ec2.describe_subnets(SubnetIds=[subnet["SubnetId"]])["Subnets"]
    assert tags(s)["team"] == "net"
    (d,) = instances(ec2.describe_instances(InstanceIds=[i["InstanceId"]]))
    assert tags(d)["team"] == "net"
    (n,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"]
    assert tags(n)["team"] == "net"
    # Overwrite a value.
    ec2.create_tags(Resources=[i["InstanceId"]], Tags=[{"Key": "team", "Value": "ops"}])
    (d,) = instances(ec2.describe_instances(InstanceIds=[i["InstanceId"]]))
    assert tags(d)["team"] == "ops"
    # All or nothing: one unknown id, nothing tagged.
    expect_error("InvalidInstanceID.NotFound", 400, ec2.create_tags,
                 Resources=[vpc["VpcId"], "i-0123456789abcdef0"], Tags=[{"Key": "late", "Value": "x"}])
    (v,) = ec2.describe_vpcs(VpcIds=[vpc["VpcId"]])["Vpcs"]
    assert "late" not in tags(v)
    expect_error("InvalidVpcID.NotFound", 400, ec2.create_tags, Resources=["vpc-0123456789abcdef0"], Tags=[{"Key": "k", "Value": "v"}])
    expect_error("InvalidSubnetID.NotFound", 400, ec2.create_tags, Resources=["subnet-0123456789abcdef0"], Tags=[{"Key": "k", "Value": "v"}])
    expect_error("InvalidNetworkInterfaceID.NotFound", 400, ec2.create_tags, Resources=["eni-0123456789abcdef0"], Tags=[{"Key": "k", "Value": "v"}])
    expect_error("InvalidParameterValue", 400, ec2.create_tags, Resources=[vpc["VpcId"]], Tags=[{"Key": "aws:k", "Value": "v"}])
    expect_error("MissingParameter", 400, ec2.create_tags, Resources=[], Tags=[{"Key": "k", "Value": "v"}])


def test_delete_tags(ec2, vpc):
    vid = vpc["VpcId"]
    ec2.create_tags(Resources=[vid], Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}, {"Key": "c", "Value": "3"}])
    # A value that does not match keeps the tag; a key alone removes it.
    ec2.delete_tags(Resources=[vid], Tags=[{"Key": "a", "Value": "other"}, {"Key": "b"}])
    (v,) = ec2.describe_vpcs(VpcIds=[vid])["Vpcs"]
    assert tags(v) == {"a": "1", "c": "3"}
    expect_error("InvalidVpcID.NotFound", 400, ec2.delete_tags, Resources=[vid, "vpc-0123456789abcdef0"], Tags=[{"Key": "a"}])
    (v,) = ec2.describe_vpcs(VpcIds=[vid])["Vpcs"]
    assert tags(v) == {"a": "1", "c": "3"}, "all or nothing"
    ec2.delete_tags(Resources=[vid])
    (v,) = ec2.describe_vpcs(VpcIds=[vid])["Vpcs"]
    assert tags(v) == {}


MISMATCH = "Arguments on this idempotent request are inconsistent with arguments used in previous request(s)."


def test_run_instances_client_token(ec2, vpc, subnet):
    def launch(**kw):
        return run(ec2, subnet, MinCount=2, MaxCount=2, ClientToken="run-token-1",
                   TagSpecifications=name_tags("instance", "idem"), **kw)

    first = launch()
    ids = [i["InstanceId"] for i in first["Instances"]]
    assert len(ids) == 2
    # The token is echoed per instance (the reservation has none), as on AWS.
    assert "ClientToken" not in first
    assert [i["ClientToken"] for i in first["Instances"]] == ["run-token-1"] * 2
    assert [i["State"]["Name"] for i in first["Instances"]] == ["pending"] * 2

    # A retry launches nothing and answers with the first launch.
    again = launch()
    assert again["ReservationId"] == first["ReservationId"]
    assert [i["InstanceId"] for i in again["Instances"]] == ids
    assert [i["PrivateIpAddress"] for i in again["Instances"]] == ["10.0.0.4", "10.0.0.5"]
    in_vpc = instances(ec2.describe_instances(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]))
    assert sorted(i["InstanceId"] for i in in_vpc) == sorted(ids)
    assert {i["ClientToken"] for i in in_vpc} == {"run-token-1"}

    # The same token with another parameter is refused and launches nothing.
    err = expect_error("IdempotentParameterMismatch", 400, launch, InstanceType="t3.large")
    assert err["Error"]["Message"] == MISMATCH
    err = expect_error("IdempotentParameterMismatch", 400, run, ec2, subnet, ClientToken="run-token-1")
    s = ec2.describe_subnets(SubnetIds=[subnet["SubnetId"]])["Subnets"][0]
    assert s["AvailableIpAddressCount"] == 249

    # Without a token botocore sends a fresh one each time: two calls, two launches.
    a = run(ec2, subnet)["Instances"][0]
    b = run(ec2, subnet)["Instances"][0]
    assert a["InstanceId"] != b["InstanceId"]
    assert a["ClientToken"] and a["ClientToken"] != b["ClientToken"]

    # A retry after termination still answers with the (now terminated) instances.
    ec2.terminate_instances(InstanceIds=ids)
    late = launch()
    assert [(i["InstanceId"], i["State"]["Name"]) for i in late["Instances"]] == [(i, "terminated") for i in ids]
    ec2.terminate_instances(InstanceIds=[a["InstanceId"], b["InstanceId"]])


def test_terminated_instance_stays_visible(ec2, vpc, subnet):
    inst = run(ec2, subnet)["Instances"][0]
    iid = inst["InstanceId"]
    assert inst["StateTransitionReason"] == "" and "StateReason" not in inst
    ec2.terminate_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    (gone,) = instances(ec2.describe_instances(InstanceIds=[iid]))
    assert gone["State"] == {"Code": 48, "Name": "terminated"}
    assert re.fullmatch(r"User initiated \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d GMT\)", gone["StateTransitionReason"]), gone
    assert gone["StateReason"] == {"Code": "Client.UserInitiatedShutdown",
                                   "Message": "Client.UserInitiatedShutdown: User initiated shutdown"}
    # As AWS shows a terminated instance: no private address or DNS name, no interfaces.
    assert "PrivateIpAddress" not in gone and gone["PrivateDnsName"] == ""
    assert gone.get("NetworkInterfaces", []) == []
    assert (gone["SubnetId"], gone["VpcId"]) == (subnet["SubnetId"], vpc["VpcId"])
    by_state = instances(ec2.describe_instances(Filters=[
        {"Name": "instance-state-code", "Values": ["48"]}, {"Name": "vpc-id", "Values": [vpc["VpcId"]]}]))
    assert [i["InstanceId"] for i in by_state] == [iid]
    for name, value in (("reason", "User initiated (*"), ("state-reason-code", "Client.UserInitiatedShutdown"),
                        ("state-reason-message", "Client.UserInitiatedShutdown: User initiated shutdown")):
        found = instances(ec2.describe_instances(Filters=[
            {"Name": name, "Values": [value]}, {"Name": "vpc-id", "Values": [vpc["VpcId"]]}]))
        assert [i["InstanceId"] for i in found] == [iid], name


def test_elastic_ip_shows_as_the_public_address(ec2, vpc, subnet):
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc["VpcId"])
    inst = run(ec2, subnet)["Instances"][0]
    iid, eni = inst["InstanceId"], inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    assert "PublicIpAddress" not in inst and inst["PublicDnsName"] == ""
    eip = ec2.allocate_address(Domain="vpc")
    assoc = ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=iid)["AssociationId"]

    (i,) = instances(ec2.describe_instances(InstanceIds=[iid]))
    assert i["PublicIpAddress"] == eip["PublicIp"]
    # No public DNS name while the VPC has DNS hostnames disabled (the default), as on AWS.
    assert i["PublicDnsName"] == ""
    (n,) = i["NetworkInterfaces"]
    assert n["Association"] == {"IpOwnerId": "123456789012", "PublicDnsName": "", "PublicIp": eip["PublicIp"]}
    assert n["PrivateIpAddresses"][0]["Association"]["PublicIp"] == eip["PublicIp"]
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
    assert got["Association"] == {"AllocationId": eip["AllocationId"], "AssociationId": assoc,
                                  "IpOwnerId": "123456789012", "PublicDnsName": "", "PublicIp": eip["PublicIp"]}
    found = instances(ec2.describe_instances(Filters=[{"Name": "ip-address", "Values": [eip["PublicIp"]]}]))
    assert [x["InstanceId"] for x in found] == [iid]

    ec2.modify_vpc_attribute(VpcId=vpc["VpcId"], EnableDnsHostnames={"Value": True})
    dns = "ec2-" + eip["PublicIp"].replace(".", "-") + ".compute-1.amazonaws.com"
    (i,) = instances(ec2.describe_instances(InstanceIds=[iid]))
    assert i["PublicDnsName"] == dns
    assert i["NetworkInterfaces"][0]["Association"]["PublicDnsName"] == dns
    found = instances(ec2.describe_instances(Filters=[{"Name": "dns-name", "Values": [dns]}]))
    assert [x["InstanceId"] for x in found] == [iid]

    # An Elastic IP on a secondary address shows on that address only.
    ec2.disassociate_address(AssociationId=assoc)
    ec2.assign_private_ip_addresses(NetworkInterfaceId=eni, PrivateIpAddresses=["10.0.0.200"])
    ec2.associate_address(AllocationId=eip["AllocationId"], NetworkInterfaceId=eni, PrivateIpAddress="10.0.0.200")
    (i,) = instances(ec2.describe_instances(InstanceIds=[iid]))
    assert "PublicIpAddress" not in i and i["PublicDnsName"] == ""
    (n,) = i["NetworkInterfaces"]
    assert "Association" not in n
    assoc_of = {a["PrivateIpAddress"]: a.get("Association", {}).get("PublicIp") for a in n["PrivateIpAddresses"]}
    assert assoc_of == {inst["PrivateIpAddress"]: None, "10.0.0.200": eip["PublicIp"]}

    # Terminated: no public address; the Elastic IP is free again.
    ec2.terminate_instances(InstanceIds=[iid])
    (i,) = instances(ec2.describe_instances(InstanceIds=[iid]))
    assert "PublicIpAddress" not in i
    addr = ec2.describe_addresses(AllocationIds=[eip["AllocationId"]])["Addresses"][0]
    assert "AssociationId" not in addr
    ec2.release_address(AllocationId=eip["AllocationId"])
    ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vpc["VpcId"])
    ec2.delete_internet_gateway(InternetGatewayId=igw)


def test_large_describe_instances_is_streamed_and_parses_the_same(ec2, vpc, aws):
    """More than 256 instances in one DescribeInstances answer: streamed (reservation by
    reservation); boto3 and the AWS CLI read every instance, as the paged answers have them."""
    s = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.12.0/22")["Subnet"]
    made = set()
    for _ in range(3):
        r = run(ec2, s, MinCount=100, MaxCount=100)
        made |= {i["InstanceId"] for i in r["Instances"]}
    made |= {i["InstanceId"] for i in run(ec2, s, MinCount=7, MaxCount=7)["Instances"]}
    flt = [{"Name": "subnet-id", "Values": [s["SubnetId"]]}]
    whole = ec2.describe_instances(Filters=flt)
    assert "NextToken" not in whole
    def fixed(i):  # what does not move with the instance's lifecycle
        return (i["PrivateIpAddress"], i["SubnetId"], i["ImageId"], i["AmiLaunchIndex"],
                i["NetworkInterfaces"][0]["NetworkInterfaceId"])

    got = {i["InstanceId"]: fixed(i) for r in whole["Reservations"] for i in r["Instances"]}
    assert set(got) == made and len(whole["Reservations"]) == 4
    paged = {}
    for page in ec2.get_paginator("describe_instances").paginate(
            Filters=flt, PaginationConfig={"PageSize": 50}):
        paged.update((i["InstanceId"], fixed(i)) for r in page["Reservations"]
                     for i in r["Instances"])
    assert paged == got
    code, out, err = aws("describe-instances", "--no-paginate",
                         "--filters", f"Name=subnet-id,Values={s['SubnetId']}")
    assert code == 0, err
    assert {i["InstanceId"] for r in out["Reservations"] for i in r["Instances"]} == made
    ec2.terminate_instances(InstanceIds=sorted(made))
