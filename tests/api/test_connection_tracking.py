"""ConnectionTrackingSpecification through boto3 and the AWS CLI: CreateNetworkInterface,
ModifyNetworkInterfaceAttribute and RunInstances' NetworkInterfaces take an ENI's idle timeouts
(TcpEstablishedTimeout 60-432000, UdpStreamTimeout 60-180, UdpTimeout 30-60), refuse values out
of those bounds with InvalidParameterValue (changing nothing), and DescribeNetworkInterfaces /
DescribeInstances show the timeouts in force as ConnectionTrackingConfiguration."""

import pytest

from helpers import expect_error, instances

BOUNDS = {"TcpEstablishedTimeout": (60, 432000), "UdpStreamTimeout": (60, 180),
          "UdpTimeout": (30, 60)}


def config(ec2, eni_id):
    (eni,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"]
    return eni.get("ConnectionTrackingConfiguration")


def test_create_and_describe(ec2, subnet):
    plain = ec2.create_network_interface(SubnetId=subnet["SubnetId"])["NetworkInterface"]
    assert "ConnectionTrackingConfiguration" not in plain
    assert config(ec2, plain["NetworkInterfaceId"]) is None
    eni = ec2.create_network_interface(
        SubnetId=subnet["SubnetId"],
        ConnectionTrackingSpecification={"TcpEstablishedTimeout": 3600, "UdpTimeout": 45},
    )["NetworkInterface"]
    want = {"TcpEstablishedTimeout": 3600, "UdpStreamTimeout": 180, "UdpTimeout": 45}
    assert eni["ConnectionTrackingConfiguration"] == want
    assert config(ec2, eni["NetworkInterfaceId"]) == want


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_bounds(ec2, subnet, name):
    lo, hi = BOUNDS[name]
    for ok in (lo, hi):
        eni = ec2.create_network_interface(SubnetId=subnet["SubnetId"],
                                           ConnectionTrackingSpecification={name: ok})
        assert eni["NetworkInterface"]["ConnectionTrackingConfiguration"][name] == ok
    before = ec2.describe_network_interfaces(
        Filters=[{"Name": "subnet-id", "Values": [subnet["SubnetId"]]}])["NetworkInterfaces"]
    for bad in (lo - 1, hi + 1, 0, -5):
        err = expect_error("InvalidParameterValue", 400, ec2.create_network_interface,
                           SubnetId=subnet["SubnetId"],
                           ConnectionTrackingSpecification={name: bad})
        assert name in err["Error"]["Message"], err
        assert f"{lo} and {hi}" in err["Error"]["Message"], err
    after = ec2.describe_network_interfaces(
        Filters=[{"Name": "subnet-id", "Values": [subnet["SubnetId"]]}])["NetworkInterfaces"]
    assert len(after) == len(before), "a refused create made an interface"


def test_modify_changes_only_what_it_names(ec2, subnet):
    eni = ec2.create_network_interface(SubnetId=subnet["SubnetId"])["NetworkInterface"]
    eid = eni["NetworkInterfaceId"]
    ec2.modify_network_interface_attribute(
        NetworkInterfaceId=eid, ConnectionTrackingSpecification={"UdpStreamTimeout": 90})
    assert config(ec2, eid) == {"TcpEstablishedTimeout": 432000, "UdpStreamTimeout": 90,
                                "UdpTimeout": 30}
    ec2.modify_network_interface_attribute(
        NetworkInterfaceId=eid,
        ConnectionTrackingSpecification={"TcpEstablishedTimeout": 120, "UdpTimeout": 60})
    assert config(ec2, eid) == {"TcpEstablishedTimeout": 120, "UdpStreamTimeout": 90,
                                "UdpTimeout": 60}
    expect_error("InvalidParameterValue", 400, ec2.modify_network_interface_attribute,
                 NetworkInterfaceId=eid, ConnectionTrackingSpecification={"UdpTimeout": 61})
    assert config(ec2, eid)["UdpTimeout"] == 60, "a refused modification changed the ENI"
    # One attribute per call, as for the others.
    expect_error("InvalidParameterCombination", 400, ec2.modify_network_interface_attribute,
                 NetworkInterfaceId=eid, SourceDestCheck={"Value": False},
                 ConnectionTrackingSpecification={"UdpTimeout": 40})


def test_run_instances_network_interfaces(ec2, subnet):
    r = ec2.run_instances(ImageId="ami-1", MinCount=1, MaxCount=1, Placement={"HostId": "host-1"},
                          NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet["SubnetId"],
                                              "ConnectionTrackingSpecification":
                                                  {"UdpTimeout": 50}}])
    inst = r["Instances"][0]
    want = {"TcpEstablishedTimeout": 432000, "UdpStreamTimeout": 180, "UdpTimeout": 50}
    assert inst["NetworkInterfaces"][0]["ConnectionTrackingConfiguration"] == want
    (described,) = instances(ec2.describe_instances(InstanceIds=[inst["InstanceId"]]))
    assert described["NetworkInterfaces"][0]["ConnectionTrackingConfiguration"] == want
    assert config(ec2, inst["NetworkInterfaces"][0]["NetworkInterfaceId"]) == want
    ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])


def test_aws_cli(aws, subnet):
    code, out, err = aws("create-network-interface", "--subnet-id", subnet["SubnetId"],
                         "--connection-tracking-specification",
                         "TcpEstablishedTimeout=600,UdpStreamTimeout=120,UdpTimeout=35")
    assert code == 0, err
    eid = out["NetworkInterface"]["NetworkInterfaceId"]
    assert out["NetworkInterface"]["ConnectionTrackingConfiguration"] == {
        "TcpEstablishedTimeout": 600, "UdpStreamTimeout": 120, "UdpTimeout": 35}
    code, _, err = aws("modify-network-interface-attribute", "--network-interface-id", eid,
                       "--connection-tracking-specification", "UdpTimeout=29")
    assert code != 0 and "InvalidParameterValue" in err, err
    code, _, err = aws("modify-network-interface-attribute", "--network-interface-id", eid,
                       "--connection-tracking-specification", "UdpTimeout=30")
    assert code == 0, err
    code, out, err = aws("describe-network-interfaces", "--network-interface-ids", eid)
    assert out["NetworkInterfaces"][0]["ConnectionTrackingConfiguration"]["UdpTimeout"] == 30
