"""RunInstances with several NetworkInterfaces: new ENIs created at launch next to existing
ENIs attached at launch, DeleteOnTermination defaults and overrides, termination (created
ENIs deleted, attached ones left available), every refusal leaving the state unchanged,
ClientToken retries, and the AWS CLI's --network-interfaces form."""

import json
import uuid

import pytest

from helpers import expect_error, instances, tags


@pytest.fixture
def net(ec2, vpc):
    """A VPC with two subnets in us-east-1a, one in us-east-1b, and a second VPC's subnet."""
    a = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]
    b = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.2.0/24", AvailabilityZone="us-east-1a")["Subnet"]
    far = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.3.0/24", AvailabilityZone="us-east-1b")["Subnet"]
    other_vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]
    other = ec2.create_subnet(VpcId=other_vpc["VpcId"], CidrBlock="10.1.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]
    sg = ec2.create_security_group(VpcId=vpc["VpcId"], GroupName=f"grp-{uuid.uuid4().hex[:8]}", Description="d")["GroupId"]
    return {"vpc": vpc["VpcId"], "a": a["SubnetId"], "b": b["SubnetId"], "far": far["SubnetId"],
            "other": other["SubnetId"], "sg": sg}


def enis_of_vpc(ec2, vpc_id):
    """Every ENI of the VPC, comparable before/after (sorted, attach times included)."""
    out = ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["NetworkInterfaces"]
    return sorted(out, key=lambda e: e["NetworkInterfaceId"])


def instances_of_vpc(ec2, vpc_id):
    r = ec2.describe_instances(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
    return sorted(i["InstanceId"] for i in instances(r))


def by_device(instance):
    return {n["Attachment"]["DeviceIndex"]: n for n in instance["NetworkInterfaces"]}


def test_new_and_existing_interfaces_then_terminate(ec2, net):
    existing = ec2.create_network_interface(SubnetId=net["b"], PrivateIpAddress="10.0.2.50",
                                            Description="kept")["NetworkInterface"]
    eid = existing["NetworkInterfaceId"]
    r = ec2.run_instances(
        ImageId="ami-1", MinCount=1, MaxCount=1, InstanceType="t3.micro",
        NetworkInterfaces=[
            {"DeviceIndex": 1, "NetworkInterfaceId": eid},
            {"DeviceIndex": 0, "SubnetId": net["a"], "Groups": [net["sg"]], "Description": "created",
             "PrivateIpAddresses": [{"PrivateIpAddress": "10.0.1.20", "Primary": True},
                                    {"PrivateIpAddress": "10.0.1.21", "Primary": False}],
             "SecondaryPrivateIpAddressCount": 1},
        ],
        TagSpecifications=[{"ResourceType": "network-interface", "Tags": [{"Key": "role", "Value": "eth"}]}],
    )
    inst = r["Instances"][0]
    iid = inst["InstanceId"]
    assert inst["SubnetId"] == net["a"] and inst["PrivateIpAddress"] == "10.0.1.20"
    # Two interfaces: no automatic public IP (AWS assigns one only with a single interface).
    assert "PublicIpAddress" not in inst

    d = instances(ec2.describe_instances(InstanceIds=[iid]))[0]
    devs = by_device(d)
    assert sorted(devs) == [0, 1]
    primary, second = devs[0], devs[1]
    assert primary["SubnetId"] == net["a"] and second["SubnetId"] == net["b"]
    assert second["NetworkInterfaceId"] == eid
    assert primary["NetworkInterfaceId"] != eid
    assert primary["Description"] == "created" and second["Description"] == "kept"
    assert [g["GroupId"] for g in primary["Groups"]] == [net["sg"]]
    addrs = [a["PrivateIpAddress"] for a in primary["PrivateIpAddresses"]]
    assert addrs[:2] == ["10.0.1.20", "10.0.1.21"] and len(addrs) == 3
    assert addrs[2].startswith("10.0.1.") and addrs[2] not in ("10.0.1.20", "10.0.1.21")
    assert second["PrivateIpAddress"] == "10.0.2.50"
    assert primary["Attachment"]["DeleteOnTermination"] is True
    assert second["Attachment"]["DeleteOnTermination"] is False

    created = primary["NetworkInterfaceId"]
    enis = {e["NetworkInterfaceId"]: e for e in ec2.describe_network_interfaces(
        NetworkInterfaceIds=[created, eid])["NetworkInterfaces"]}
    assert enis[created]["Status"] == "in-use" and enis[eid]["Status"] == "in-use"
    assert enis[created]["Attachment"]["InstanceId"] == iid == enis[eid]["Attachment"]["InstanceId"]
    assert enis[created]["Attachment"]["DeleteOnTermination"] is True
    assert enis[eid]["Attachment"]["DeleteOnTermination"] is False
    # network-interface tags go to the ENI created at launch, not to the attached one.
    assert tags(enis[created]) == {"role": "eth"}
    assert tags(enis[eid]) == {}

    ec2.terminate_instances(InstanceIds=[iid])
    left = ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [net["vpc"]]}])["NetworkInterfaces"]
    assert [e["NetworkInterfaceId"] for e in left] == [eid]
    assert left[0]["Status"] == "available" and "Attachment" not in left[0]
    assert left[0]["PrivateIpAddress"] == "10.0.2.50"
    # The created ENI's addresses went back to the subnet.
    sub = ec2.describe_subnets(SubnetIds=[net["a"]])["Subnets"][0]
    assert sub["AvailableIpAddressCount"] == 251
    # The kept ENI can launch another instance as its primary interface.
    r2 = ec2.run_instances(ImageId="ami-1", MinCount=1, MaxCount=1,
                           NetworkInterfaces=[{"DeviceIndex": 0, "NetworkInterfaceId": eid}])
    i2 = r2["Instances"][0]
    assert i2["SubnetId"] == net["b"] and i2["PrivateIpAddress"] == "10.0.2.50"
    ec2.terminate_instances(InstanceIds=[i2["InstanceId"]])
    left = ec2.describe_network_interfaces(NetworkInterfaceIds=[eid])["NetworkInterfaces"][0]
    assert left["Status"] == "available"
    gone = instances(ec2.describe_instances(InstanceIds=[i2["InstanceId"]]))[0]
    assert gone["State"]["Name"] == "terminated"
    assert gone["NetworkInterfaces"] == [] and gone["SecurityGroups"] == []


def test_delete_on_termination_override_and_several_instances(ec2, net):
    r = ec2.run_instances(
        ImageId="ami-1", MinCount=3, MaxCount=3,
        NetworkInterfaces=[
            {"DeviceIndex": 0, "SubnetId": net["a"]},
            {"DeviceIndex": 1, "SubnetId": net["a"], "DeleteOnTermination": False,
             "SecondaryPrivateIpAddressCount": 1},
        ],
    )
    ids = [i["InstanceId"] for i in r["Instances"]]
    assert len(ids) == 3
    seen = set()
    kept = []
    for i in instances(ec2.describe_instances(InstanceIds=ids)):
        devs = by_device(i)
        assert sorted(devs) == [0, 1]
        assert devs[0]["Attachment"]["DeleteOnTermination"] is True
        assert devs[1]["Attachment"]["DeleteOnTermination"] is False
        assert len(devs[1]["PrivateIpAddresses"]) == 2
        for n in devs.values():
            for a in n["PrivateIpAddresses"]:
                assert a["PrivateIpAddress"] not in seen
                seen.add(a["PrivateIpAddress"])
        kept.append(devs[1]["NetworkInterfaceId"])
    assert len(seen) == 9
    ec2.terminate_instances(InstanceIds=ids)
    left = enis_of_vpc(ec2, net["vpc"])
    assert sorted(e["NetworkInterfaceId"] for e in left) == sorted(kept)
    assert all(e["Status"] == "available" for e in left)


def refusals(net, existing, busy):
    """(kwargs, code) pairs: each RunInstances call must fail with that code (HTTP 400)."""
    base = {"ImageId": "ami-1", "MinCount": 1, "MaxCount": 1}
    return [
        # Two interfaces at device index 0.
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"]},
                                        {"DeviceIndex": 0, "SubnetId": net["b"]}]}, "InvalidParameterValue"),
        # No device index 0.
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 1, "SubnetId": net["a"]}]}, "InvalidParameterValue"),
        # A device index missing.
        ({**base, "NetworkInterfaces": [{"SubnetId": net["a"]}]}, "InvalidParameterValue"),
        # Subnets in different VPCs.
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"]},
                                        {"DeviceIndex": 1, "SubnetId": net["other"]}]}, "InvalidParameterValue"),
        # Subnets in different availability zones.
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"]},
                                        {"DeviceIndex": 1, "SubnetId": net["far"]}]}, "InvalidParameterCombination"),
        # t3.micro takes 2 interfaces.
        ({**base, "InstanceType": "t3.micro",
          "NetworkInterfaces": [{"DeviceIndex": d, "SubnetId": net["a"]} for d in range(3)]}, "AttachmentLimitExceeded"),
        # Unknown ENI.
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"]},
                                        {"DeviceIndex": 1, "NetworkInterfaceId": "eni-0123456789abcdef0"}]},
         "InvalidNetworkInterfaceID.NotFound"),
        # ENI attached elsewhere.
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"]},
                                        {"DeviceIndex": 1, "NetworkInterfaceId": busy}]}, "InvalidNetworkInterface.InUse"),
        # An existing ENI with several instances.
        ({**base, "MaxCount": 2, "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"]},
                                                       {"DeviceIndex": 1, "NetworkInterfaceId": existing}]},
         "InvalidParameterCombination"),
        # Creation settings on an existing ENI; DeleteOnTermination true on an existing ENI.
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 0, "NetworkInterfaceId": existing, "SubnetId": net["b"]}]},
         "InvalidParameterCombination"),
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 0, "NetworkInterfaceId": existing, "DeleteOnTermination": True}]},
         "InvalidParameterCombination"),
        # A public address on an existing ENI.
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 0, "NetworkInterfaceId": existing,
                                         "AssociatePublicIpAddress": True}]}, "InvalidParameterCombination"),
        # Instance-level subnet next to interfaces.
        ({**base, "SubnetId": net["a"], "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"]}]},
         "InvalidParameterCombination"),
        # Secondary device without a subnet.
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"]}, {"DeviceIndex": 1}]},
         "MissingParameter"),
        # A second interface's address taken, after the first would have been created.
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"]},
                                        {"DeviceIndex": 1, "SubnetId": net["b"], "PrivateIpAddress": "10.0.2.50"}]},
         "InvalidIPAddress.InUse"),
        # Unknown security group on the second interface.
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"]},
                                        {"DeviceIndex": 1, "SubnetId": net["b"], "Groups": ["sg-0123456789abcdef0"]}]},
         "InvalidGroup.NotFound"),
        # Members softvpc does not model.
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"], "Ipv6AddressCount": 1}]},
         "InvalidParameterValue"),
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"], "InterfaceType": "efa"}]},
         "InvalidParameterValue"),
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"], "NetworkCardIndex": 1}]},
         "InvalidParameterValue"),
        # A connection tracking timeout outside AWS's bounds.
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"],
                                         "ConnectionTrackingSpecification": {"TcpEstablishedTimeout": 59}}]},
         "InvalidParameterValue"),
        # Connection tracking is for an interface created at launch, not one attached.
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 0, "NetworkInterfaceId": existing,
                                         "ConnectionTrackingSpecification": {"UdpTimeout": 30}}]},
         "InvalidParameterCombination"),
        ({**base, "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"], "Ipv4PrefixCount": 1}]},
         "InvalidParameterValue"),
    ]


def test_refusals_change_nothing(ec2, net):
    existing = ec2.create_network_interface(SubnetId=net["b"], PrivateIpAddress="10.0.2.50")["NetworkInterface"]
    holder = ec2.run_instances(ImageId="ami-1", MinCount=1, MaxCount=1, SubnetId=net["a"])["Instances"][0]
    busy = holder["NetworkInterfaces"][0]["NetworkInterfaceId"]
    before = (enis_of_vpc(ec2, net["vpc"]), instances_of_vpc(ec2, net["vpc"]),
              ec2.describe_subnets(SubnetIds=[net["a"], net["b"]])["Subnets"])
    for kwargs, code in refusals(net, existing["NetworkInterfaceId"], busy):
        expect_error(code, 400, ec2.run_instances, **kwargs)
        after = (enis_of_vpc(ec2, net["vpc"]), instances_of_vpc(ec2, net["vpc"]),
                 ec2.describe_subnets(SubnetIds=[net["a"], net["b"]])["Subnets"])
        assert after == before, kwargs


def test_client_token_retry(ec2, net):
    existing = ec2.create_network_interface(SubnetId=net["b"])["NetworkInterface"]["NetworkInterfaceId"]
    token = f"tok-{uuid.uuid4()}"
    kwargs = {"ImageId": "ami-1", "MinCount": 1, "MaxCount": 1, "ClientToken": token,
              "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"]},
                                    {"DeviceIndex": 1, "NetworkInterfaceId": existing}]}
    first = ec2.run_instances(**kwargs)
    again = ec2.run_instances(**kwargs)
    assert again["ReservationId"] == first["ReservationId"]
    assert [i["InstanceId"] for i in again["Instances"]] == [i["InstanceId"] for i in first["Instances"]]
    assert len(instances_of_vpc(ec2, net["vpc"])) == 1
    # Same token, another interface setting: a mismatch, not a second launch.
    changed = {**kwargs, "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"]},
                                               {"DeviceIndex": 1, "SubnetId": net["b"]}]}
    expect_error("IdempotentParameterMismatch", 400, ec2.run_instances, **changed)
    changed = {**kwargs, "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": net["a"]},
                                               {"DeviceIndex": 1, "NetworkInterfaceId": existing,
                                                "DeleteOnTermination": False}]}
    expect_error("IdempotentParameterMismatch", 400, ec2.run_instances, **changed)
    assert len(instances_of_vpc(ec2, net["vpc"])) == 1


def test_awscli_network_interfaces(aws, ec2, net):
    existing = ec2.create_network_interface(SubnetId=net["b"], PrivateIpAddress="10.0.2.60")["NetworkInterface"]
    spec = [{"DeviceIndex": 0, "SubnetId": net["a"], "Groups": [net["sg"]], "PrivateIpAddress": "10.0.1.40"},
            {"DeviceIndex": 1, "NetworkInterfaceId": existing["NetworkInterfaceId"]}]
    rc, out, err = aws("run-instances", "--image-id", "ami-1", "--count", "1",
                       "--network-interfaces", json.dumps(spec))
    assert rc == 0, err
    iid = out["Instances"][0]["InstanceId"]
    rc, out, err = aws("describe-instances", "--instance-ids", iid)
    assert rc == 0, err
    devs = by_device(out["Reservations"][0]["Instances"][0])
    assert devs[0]["PrivateIpAddress"] == "10.0.1.40" and devs[0]["SubnetId"] == net["a"]
    assert devs[1]["NetworkInterfaceId"] == existing["NetworkInterfaceId"]
    assert devs[1]["PrivateIpAddress"] == "10.0.2.60"
    ec2.terminate_instances(InstanceIds=[iid])
