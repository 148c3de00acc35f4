"""Every botocore EC2 waiter about resources softvpc serves, against the server: each succeeds
when its condition holds, and when it does not the waiter ends as on AWS: retrying until
MaxAttempts ("Max attempts exceeded"), stopping at a failure state ("terminal failure state"),
or stopping on an error no acceptor expects. The waiters' own acceptors (state paths, the
NotFound codes they retry on) are botocore's, so a wrong field or error code here fails.

The list of waiters is checked against botocore's waiters-2.json, so a new waiter for a served
Describe action is not silently untested."""

import json
import os

import botocore
import botocore.exceptions
import pytest

from helpers import instances

FAST = {"Delay": 1, "MaxAttempts": 8}
# For the negative cases: two polls, one second apart.
SHORT = {"Delay": 1, "MaxAttempts": 2}

MISSING = {
    "vpc": "vpc-0123456789abcdef0",
    "subnet": "subnet-0123456789abcdef0",
    "instance": "i-0123456789abcdef0",
    "eni": "eni-0123456789abcdef0",
    "sg": "sg-0123456789abcdef0",
    "igw": "igw-0123456789abcdef0",
    "nat": "nat-0123456789abcdef0",
    "pcx": "pcx-0123456789abcdef0",
}

# Waiters this file exercises (botocore names).
TESTED = {
    "InstanceExists", "InstanceRunning", "InstanceStatusOk", "SystemStatusOk", "InstanceStopped",
    "InstanceTerminated", "InternetGatewayExists", "NatGatewayAvailable", "NatGatewayDeleted",
    "NetworkInterfaceAvailable", "SecurityGroupExists", "SubnetAvailable", "VpcAvailable", "VpcExists",
    "VpcPeeringConnectionExists", "VpcPeeringConnectionDeleted",
}
SERVED = {
    "DescribeInstances", "DescribeInstanceStatus", "DescribeInternetGateways", "DescribeNatGateways",
    "DescribeNetworkInterfaces", "DescribeSecurityGroups", "DescribeSubnets", "DescribeVpcs",
    "DescribeVpcPeeringConnections",
}


def test_every_waiter_on_a_served_action_is_tested():
    p = os.path.join(os.path.dirname(botocore.__file__), "data", "ec2", "2016-11-15", "waiters-2.json")
    waiters = json.load(open(p))["waiters"]
    on_served = {name for name, w in waiters.items() if w["operation"] in SERVED}
    assert on_served == TESTED


def timed_out(waiter, **kw):
    """Asserts the waiter polls until MaxAttempts without reaching success or failure."""
    with pytest.raises(botocore.exceptions.WaiterError) as info:
        waiter.wait(WaiterConfig=SHORT, **kw)
    assert "Max attempts exceeded" in str(info.value), info.value
    return info.value


def failed(waiter, **kw):
    """Asserts the waiter stops at one of its failure states (no further polling)."""
    with pytest.raises(botocore.exceptions.WaiterError) as info:
        waiter.wait(WaiterConfig={"Delay": 1, "MaxAttempts": 30}, **kw)
    assert "terminal failure state" in str(info.value), info.value
    return info.value


def errored(waiter, code, **kw):
    """Asserts the waiter stops on an error response none of its acceptors expects."""
    with pytest.raises(botocore.exceptions.WaiterError) as info:
        waiter.wait(WaiterConfig={"Delay": 1, "MaxAttempts": 30}, **kw)
    assert info.value.last_response["Error"]["Code"] == code, info.value.last_response
    return info.value


def nobody():
    return [{"Name": "tag:waiter-test", "Values": ["nobody-has-this"]}]


@pytest.fixture
def running(ec2, subnet):
    r = ec2.run_instances(ImageId="ami-12345678", SubnetId=subnet["SubnetId"], MinCount=1, MaxCount=1)
    return r["Instances"][0]["InstanceId"]


def test_vpc_waiters(ec2, vpc):
    vid = vpc["VpcId"]
    ec2.get_waiter("vpc_available").wait(VpcIds=[vid], WaiterConfig=FAST)
    ec2.get_waiter("vpc_exists").wait(VpcIds=[vid], WaiterConfig=FAST)
    # vpc_exists retries on InvalidVpcID.NotFound; vpc_available has no acceptor for it.
    e = timed_out(ec2.get_waiter("vpc_exists"), VpcIds=[MISSING["vpc"]])
    assert e.last_response["Error"]["Code"] == "InvalidVpcID.NotFound"
    errored(ec2.get_waiter("vpc_available"), "InvalidVpcID.NotFound", VpcIds=[MISSING["vpc"]])
    # Nothing matched: "all available" does not hold for an empty list.
    timed_out(ec2.get_waiter("vpc_available"), Filters=nobody())


def test_subnet_available(ec2, subnet):
    ec2.get_waiter("subnet_available").wait(SubnetIds=[subnet["SubnetId"]], WaiterConfig=FAST)
    timed_out(ec2.get_waiter("subnet_available"), Filters=nobody())
    errored(ec2.get_waiter("subnet_available"), "InvalidSubnetID.NotFound", SubnetIds=[MISSING["subnet"]])


def test_instance_exists_and_running(ec2, running):
    ec2.get_waiter("instance_exists").wait(InstanceIds=[running], WaiterConfig=FAST)
    ec2.get_waiter("instance_running").wait(InstanceIds=[running], WaiterConfig=FAST)
    e = timed_out(ec2.get_waiter("instance_exists"), InstanceIds=[MISSING["instance"]])
    assert e.last_response["Error"]["Code"] == "InvalidInstanceID.NotFound"
    timed_out(ec2.get_waiter("instance_exists"), Filters=nobody())
    timed_out(ec2.get_waiter("instance_running"), InstanceIds=[MISSING["instance"]])
    # A running instance is not stopped nor terminated: those waiters keep polling.
    timed_out(ec2.get_waiter("instance_stopped"), InstanceIds=[running])
    timed_out(ec2.get_waiter("instance_terminated"), InstanceIds=[running])


def test_instance_stopped_then_running_again(ec2, running):
    ec2.stop_instances(InstanceIds=[running])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[running], WaiterConfig=FAST)
    (i,) = instances(ec2.describe_instances(InstanceIds=[running]))
    assert i["State"]["Name"] == "stopped"
    # Stopped is neither running nor one of instance_running's failure states: it keeps polling.
    timed_out(ec2.get_waiter("instance_running"), InstanceIds=[running])
    timed_out(ec2.get_waiter("instance_status_ok"), InstanceIds=[running])
    timed_out(ec2.get_waiter("instance_status_ok"), InstanceIds=[running], IncludeAllInstances=True)
    ec2.start_instances(InstanceIds=[running])
    ec2.get_waiter("instance_running").wait(InstanceIds=[running], WaiterConfig=FAST)


def test_instance_terminated(ec2, running):
    ec2.terminate_instances(InstanceIds=[running])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[running], WaiterConfig=FAST)
    # Waiting for a terminated instance to run or stop is a failure, not a timeout.
    failed(ec2.get_waiter("instance_running"), InstanceIds=[running])
    failed(ec2.get_waiter("instance_stopped"), InstanceIds=[running])


def test_instance_status_waiters(ec2, running):
    ec2.get_waiter("instance_status_ok").wait(InstanceIds=[running], WaiterConfig=FAST)
    ec2.get_waiter("system_status_ok").wait(InstanceIds=[running], WaiterConfig=FAST)
    (s,) = ec2.describe_instance_status(InstanceIds=[running])["InstanceStatuses"]
    assert s["InstanceState"] == {"Code": 16, "Name": "running"}
    assert s["InstanceStatus"] == {"Status": "ok", "Details": [{"Name": "reachability", "Status": "passed"}]}
    assert s["SystemStatus"]["Status"] == "ok"
    # instance_status_ok retries on InvalidInstanceID.NotFound; system_status_ok has no acceptor for it.
    e = timed_out(ec2.get_waiter("instance_status_ok"), InstanceIds=[MISSING["instance"]])
    assert e.last_response["Error"]["Code"] == "InvalidInstanceID.NotFound"
    errored(ec2.get_waiter("system_status_ok"), "InvalidInstanceID.NotFound", InstanceIds=[MISSING["instance"]])
    timed_out(ec2.get_waiter("system_status_ok"), Filters=nobody())


def test_describe_instance_status_lists_running_instances_unless_asked(ec2, running):
    ec2.stop_instances(InstanceIds=[running])
    assert ec2.describe_instance_status(InstanceIds=[running])["InstanceStatuses"] == []
    (s,) = ec2.describe_instance_status(InstanceIds=[running], IncludeAllInstances=True)["InstanceStatuses"]
    assert s["InstanceState"]["Name"] == "stopped"
    assert s["InstanceStatus"] == {"Status": "not-applicable", "Details": []}
    flt = [{"Name": "instance-state-name", "Values": ["stopped"]}]
    got = ec2.describe_instance_status(Filters=flt, IncludeAllInstances=True)["InstanceStatuses"]
    assert running in [x["InstanceId"] for x in got]


def test_network_interface_available(ec2, subnet, running):
    eni = ec2.create_network_interface(SubnetId=subnet["SubnetId"])["NetworkInterface"]["NetworkInterfaceId"]
    ec2.get_waiter("network_interface_available").wait(NetworkInterfaceIds=[eni], WaiterConfig=FAST)
    ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=running, DeviceIndex=1)
    timed_out(ec2.get_waiter("network_interface_available"), NetworkInterfaceIds=[eni])
    # InvalidNetworkInterfaceID.NotFound is a failure state of this waiter.
    failed(ec2.get_waiter("network_interface_available"), NetworkInterfaceIds=[MISSING["eni"]])


def test_security_group_exists(ec2, vpc):
    gid = ec2.create_security_group(GroupName="waiter-sg", Description="w", VpcId=vpc["VpcId"])["GroupId"]
    ec2.get_waiter("security_group_exists").wait(GroupIds=[gid], WaiterConfig=FAST)
    e = timed_out(ec2.get_waiter("security_group_exists"), GroupIds=[MISSING["sg"]])
    assert e.last_response["Error"]["Code"] == "InvalidGroup.NotFound"
    timed_out(ec2.get_waiter("security_group_exists"), Filters=nobody())


def test_internet_gateway_exists(ec2):
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.get_waiter("internet_gateway_exists").wait(InternetGatewayIds=[igw], WaiterConfig=FAST)
    timed_out(ec2.get_waiter("internet_gateway_exists"), Filters=nobody())
    # botocore's waiter retries on `InvalidInternetGateway.NotFound`, but EC2 (and softvpc) answer
    # `InvalidInternetGatewayID.NotFound`: on AWS too the waiter stops at once on a missing id.
    errored(ec2.get_waiter("internet_gateway_exists"), "InvalidInternetGatewayID.NotFound",
            InternetGatewayIds=[MISSING["igw"]])


def nat_in(ec2, vpc, subnet):
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc["VpcId"])
    alloc = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=subnet["SubnetId"], AllocationId=alloc)["NatGateway"]
    assert nat["State"] == "pending"
    return nat["NatGatewayId"]


def test_nat_gateway_waiters(ec2, vpc, subnet):
    nid = nat_in(ec2, vpc, subnet)
    # Pending at first, then available: the waiter polls through it.
    ec2.get_waiter("nat_gateway_available").wait(NatGatewayIds=[nid], WaiterConfig=FAST)
    timed_out(ec2.get_waiter("nat_gateway_deleted"), NatGatewayIds=[nid])
    e = timed_out(ec2.get_waiter("nat_gateway_available"), NatGatewayIds=[MISSING["nat"]])
    assert e.last_response["Error"]["Code"] == "NatGatewayNotFound"
    # A gateway that does not exist counts as deleted.
    ec2.get_waiter("nat_gateway_deleted").wait(NatGatewayIds=[MISSING["nat"]], WaiterConfig=FAST)
    ec2.delete_nat_gateway(NatGatewayId=nid)
    # deleting/deleted are failure states of nat_gateway_available.
    failed(ec2.get_waiter("nat_gateway_available"), NatGatewayIds=[nid])
    ec2.get_waiter("nat_gateway_deleted").wait(NatGatewayIds=[nid], WaiterConfig=FAST)
    (n,) = ec2.describe_nat_gateways(NatGatewayIds=[nid])["NatGateways"]
    assert n["State"] == "deleted"


def test_vpc_peering_waiters(ec2, vpc):
    other = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    pcx = ec2.create_vpc_peering_connection(VpcId=vpc["VpcId"], PeerVpcId=other)["VpcPeeringConnection"]
    pid = pcx["VpcPeeringConnectionId"]
    ec2.get_waiter("vpc_peering_connection_exists").wait(VpcPeeringConnectionIds=[pid], WaiterConfig=FAST)
    e = timed_out(ec2.get_waiter("vpc_peering_connection_exists"), VpcPeeringConnectionIds=[MISSING["pcx"]])
    assert e.last_response["Error"]["Code"] == "InvalidVpcPeeringConnectionID.NotFound"
    timed_out(ec2.get_waiter("vpc_peering_connection_deleted"), VpcPeeringConnectionIds=[pid])
    # A missing connection counts as deleted.
    ec2.get_waiter("vpc_peering_connection_deleted").wait(VpcPeeringConnectionIds=[MISSING["pcx"]],
                                                          WaiterConfig=FAST)
    ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    ec2.delete_vpc_peering_connection(VpcPeeringConnectionId=pid)
    ec2.get_waiter("vpc_peering_connection_deleted").wait(VpcPeeringConnectionIds=[pid], WaiterConfig=FAST)
    (p,) = ec2.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pid])["VpcPeeringConnections"]
    assert p["Status"]["Code"] == "deleted"
