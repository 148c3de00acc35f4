"""Network interfaces through boto3: Create/Delete/Describe (filters, paginator),
Attach/Detach, Assign/UnassignPrivateIpAddresses, Modify/DescribeNetworkInterfaceAttribute."""

import re

import botocore.exceptions

from helpers import expect_error, tags


def avail(ec2, subnet):
    s = ec2.describe_subnets(SubnetIds=[subnet["SubnetId"]])["Subnets"][0]
    return s["AvailableIpAddressCount"]


def launch(ec2, subnet, host="host-1"):
    r = ec2.run_instances(
        ImageId="ami-12345678", SubnetId=subnet["SubnetId"], MinCount=1, MaxCount=1,
        Placement={"HostId": host},
    )
    return r["Instances"][0]


def make_groups(ec2, vpc, n, prefix="g"):
    """n new security groups of the VPC, or None while the API does not serve
    CreateSecurityGroup yet (the group checks are then left out)."""
    try:
        return [ec2.create_security_group(GroupName=f"{prefix}{i}", Description="d", VpcId=vpc["VpcId"])["GroupId"]
                for i in range(n)]
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] == "InvalidAction":
            return None
        raise


def test_create_describe_delete(ec2, vpc, subnet):
    before = avail(ec2, subnet)
    eni = ec2.create_network_interface(
        SubnetId=subnet["SubnetId"], Description="db", PrivateIpAddress="10.0.0.50",
        SecondaryPrivateIpAddressCount=2,
        TagSpecifications=[{"ResourceType": "network-interface", "Tags": [{"Key": "Name", "Value": "db0"}]}],
    )["NetworkInterface"]
    assert re.match(r"^eni-[0-9a-f]{17}$", eni["NetworkInterfaceId"])
    assert re.match(r"^02(:[0-9a-f]{2}){5}$", eni["MacAddress"])
    assert eni["Status"] == "available"
    assert eni["PrivateIpAddress"] == "10.0.0.50"
    assert eni["SourceDestCheck"] is True
    assert eni["Description"] == "db"
    assert tags(eni) == {"Name": "db0"}
    assert "Attachment" not in eni
    addrs = [(a["PrivateIpAddress"], a["Primary"]) for a in eni["PrivateIpAddresses"]]
    assert addrs == [("10.0.0.50", True), ("10.0.0.4", False), ("10.0.0.5", False)]
    assert [g["GroupName"] for g in eni["Groups"]] == ["default"]
    assert avail(ec2, subnet) == before - 3

    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni["NetworkInterfaceId"]])["NetworkInterfaces"]
    assert got[0]["PrivateIpAddresses"] == eni["PrivateIpAddresses"]
    def by(name, *values):
        """The ENIs of this test's VPC that match one filter (the server is shared by tests)."""
        return [
            e["NetworkInterfaceId"]
            for e in ec2.describe_network_interfaces(Filters=[
                {"Name": name, "Values": list(values)}, {"Name": "vpc-id", "Values": [vpc["VpcId"]]},
            ])["NetworkInterfaces"]
        ]

    me = [eni["NetworkInterfaceId"]]
    assert by("addresses.private-ip-address", "10.0.0.5") == me
    assert by("private-ip-address", "10.0.0.50", "10.0.0.99") == me
    assert by("addresses.primary", "false") == me
    assert by("status", "available") == me
    assert by("mac-address", eni["MacAddress"]) == me
    assert by("tag:Name", "db*") == me
    assert by("description", "db") == me
    assert by("subnet-id", subnet["SubnetId"]) == me
    assert by("network-interface-id", me[0]) == me
    assert by("group-id", eni["Groups"][0]["GroupId"]) == me
    assert me[0] not in by("status", "in-use")
    expect_error("InvalidParameterValue", 400, ec2.describe_network_interfaces,
                 Filters=[{"Name": "bogus", "Values": ["x"]}])
    expect_error("InvalidNetworkInterfaceID.NotFound", 400, ec2.describe_network_interfaces,
                 NetworkInterfaceIds=["eni-0123456789abcdef0"])

    expect_error("DryRunOperation", 412, ec2.delete_network_interface,
                 NetworkInterfaceId=eni["NetworkInterfaceId"], DryRun=True)
    ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
    assert avail(ec2, subnet) == before
    expect_error("InvalidNetworkInterfaceID.NotFound", 400, ec2.delete_network_interface,
                 NetworkInterfaceId=eni["NetworkInterfaceId"])


def test_create_refusals(ec2, vpc, subnet):
    ec2.create_network_interface(SubnetId=subnet["SubnetId"], PrivateIpAddress="10.0.0.9")
    for ip, code in [("10.0.0.9", "InvalidIPAddress.InUse"), ("10.0.0.1", "InvalidParameterValue"),
                     ("10.0.1.9", "InvalidParameterValue")]:
        expect_error(code, 400, ec2.create_network_interface, SubnetId=subnet["SubnetId"], PrivateIpAddress=ip)
    expect_error("InvalidSubnetID.NotFound", 400, ec2.create_network_interface, SubnetId="subnet-0123456789abcdef0")
    expect_error("InsufficientFreeAddressesInSubnet", 400, ec2.create_network_interface,
                 SubnetId=subnet["SubnetId"], SecondaryPrivateIpAddressCount=300)
    expect_error("InvalidGroup.NotFound", 400, ec2.create_network_interface,
                 SubnetId=subnet["SubnetId"], Groups=["sg-0123456789abcdef0"])
    many = make_groups(ec2, vpc, 6)
    if many is not None:
        expect_error("SecurityGroupsPerInterfaceLimitExceeded", 400, ec2.create_network_interface,
                     SubnetId=subnet["SubnetId"], Groups=many)
    before = avail(ec2, subnet)
    expect_error("DryRunOperation", 412, ec2.create_network_interface, SubnetId=subnet["SubnetId"], DryRun=True)
    assert avail(ec2, subnet) == before


def test_attach_detach(ec2, vpc, subnet):
    inst = launch(ec2, subnet)
    eni = ec2.create_network_interface(SubnetId=subnet["SubnetId"])["NetworkInterface"]
    eid = eni["NetworkInterfaceId"]
    expect_error("DryRunOperation", 412, ec2.attach_network_interface,
                 NetworkInterfaceId=eid, InstanceId=inst["InstanceId"], DeviceIndex=1, DryRun=True)
    att = ec2.attach_network_interface(NetworkInterfaceId=eid, InstanceId=inst["InstanceId"], DeviceIndex=1)
    assert re.match(r"^eni-attach-[0-9a-f]{17}$", att["AttachmentId"])
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eid])["NetworkInterfaces"][0]
    assert got["Status"] == "in-use"
    assert got["Attachment"]["InstanceId"] == inst["InstanceId"]
    assert got["Attachment"]["DeviceIndex"] == 1
    assert got["Attachment"]["Status"] == "attached"
    by_inst = ec2.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [inst["InstanceId"]]}])["NetworkInterfaces"]
    assert sorted(e["Attachment"]["DeviceIndex"] for e in by_inst) == [0, 1]
    one = ec2.describe_network_interfaces(Filters=[
        {"Name": "attachment.instance-id", "Values": [inst["InstanceId"]]},
        {"Name": "attachment.device-index", "Values": ["1"]}])["NetworkInterfaces"]
    assert [e["NetworkInterfaceId"] for e in one] == [eid]

    other = ec2.create_network_interface(SubnetId=subnet["SubnetId"])["NetworkInterface"]["NetworkInterfaceId"]
    expect_error("InvalidParameterValue", 400, ec2.attach_network_interface,
                 NetworkInterfaceId=other, InstanceId=inst["InstanceId"], DeviceIndex=1)
    expect_error("InvalidNetworkInterface.InUse", 400, ec2.attach_network_interface,
                 NetworkInterfaceId=eid, InstanceId=inst["InstanceId"], DeviceIndex=2)
    expect_error("InvalidInstanceID.NotFound", 400, ec2.attach_network_interface,
                 NetworkInterfaceId=other, InstanceId="i-0123456789abcdef0", DeviceIndex=2)
    far = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.9.0/24", AvailabilityZone="us-east-1b")["Subnet"]
    far_eni = ec2.create_network_interface(SubnetId=far["SubnetId"])["NetworkInterface"]["NetworkInterfaceId"]
    expect_error("InvalidParameterCombination", 400, ec2.attach_network_interface,
                 NetworkInterfaceId=far_eni, InstanceId=inst["InstanceId"], DeviceIndex=2)
    expect_error("InvalidNetworkInterface.InUse", 400, ec2.delete_network_interface, NetworkInterfaceId=eid)

    primary = next(e for e in by_inst if e["Attachment"]["DeviceIndex"] == 0)
    expect_error("OperationNotPermitted", 400, ec2.detach_network_interface,
                 AttachmentId=primary["Attachment"]["AttachmentId"])
    expect_error("InvalidAttachmentID.NotFound", 400, ec2.detach_network_interface,
                 AttachmentId="eni-attach-0123456789abcdef0")
    ec2.detach_network_interface(AttachmentId=att["AttachmentId"])
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eid])["NetworkInterfaces"][0]
    assert got["Status"] == "available" and "Attachment" not in got
    ec2.delete_network_interface(NetworkInterfaceId=eid)


def test_secondary_addresses(ec2, vpc, subnet):
    inst = launch(ec2, subnet)
    eid = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    before = avail(ec2, subnet)
    r = ec2.assign_private_ip_addresses(NetworkInterfaceId=eid, PrivateIpAddresses=["10.0.0.77"])
    assert [a["PrivateIpAddress"] for a in r["AssignedPrivateIpAddresses"]] == ["10.0.0.77"]
    r = ec2.assign_private_ip_addresses(NetworkInterfaceId=eid, SecondaryPrivateIpAddressCount=2)
    assert len(r["AssignedPrivateIpAddresses"]) == 2
    assert avail(ec2, subnet) == before - 3
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eid])["NetworkInterfaces"][0]
    secondary = [a["PrivateIpAddress"] for a in got["PrivateIpAddresses"] if not a["Primary"]]
    assert secondary[0] == "10.0.0.77" and len(secondary) == 3

    other = ec2.create_network_interface(SubnetId=subnet["SubnetId"])["NetworkInterface"]["NetworkInterfaceId"]
    expect_error("InvalidIPAddress.InUse", 400, ec2.assign_private_ip_addresses,
                 NetworkInterfaceId=other, PrivateIpAddresses=["10.0.0.77"])
    expect_error("InsufficientFreeAddressesInSubnet", 400, ec2.assign_private_ip_addresses,
                 NetworkInterfaceId=other, SecondaryPrivateIpAddressCount=45 * 6)
    expect_error("InvalidNetworkInterfaceID.NotFound", 400, ec2.assign_private_ip_addresses,
                 NetworkInterfaceId="eni-0123456789abcdef0", SecondaryPrivateIpAddressCount=1)
    expect_error("InvalidParameterValue", 400, ec2.unassign_private_ip_addresses,
                 NetworkInterfaceId=other, PrivateIpAddresses=["10.0.0.77"])
    ec2.unassign_private_ip_addresses(NetworkInterfaceId=eid, PrivateIpAddresses=secondary)
    assert avail(ec2, subnet) == before - 1, "only the other ENI's primary address is held"
    # Freed: the other ENI can take it now.
    ec2.assign_private_ip_addresses(NetworkInterfaceId=other, PrivateIpAddresses=["10.0.0.77"])


def test_attributes(ec2, vpc, subnet):
    eid = ec2.create_network_interface(SubnetId=subnet["SubnetId"])["NetworkInterface"]["NetworkInterfaceId"]
    attr = lambda a: ec2.describe_network_interface_attribute(NetworkInterfaceId=eid, Attribute=a)
    assert attr("sourceDestCheck")["SourceDestCheck"]["Value"] is True
    ec2.modify_network_interface_attribute(NetworkInterfaceId=eid, SourceDestCheck={"Value": False})
    assert attr("sourceDestCheck")["SourceDestCheck"]["Value"] is False
    ec2.modify_network_interface_attribute(NetworkInterfaceId=eid, Description={"Value": "router"})
    assert attr("description")["Description"]["Value"] == "router"
    assert [x["GroupName"] for x in attr("groupSet")["Groups"]] == ["default"]
    many = make_groups(ec2, vpc, 6, "x")
    if many is not None:
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eid, Groups=many[:1])
        assert [x["GroupId"] for x in attr("groupSet")["Groups"]] == many[:1]
        expect_error("SecurityGroupsPerInterfaceLimitExceeded", 400, ec2.modify_network_interface_attribute,
                     NetworkInterfaceId=eid, Groups=many)
    expect_error("InvalidGroup.NotFound", 400, ec2.modify_network_interface_attribute,
                 NetworkInterfaceId=eid, Groups=["sg-0123456789abcdef0"])
    expect_error("DryRunOperation", 412, ec2.modify_network_interface_attribute,
                 NetworkInterfaceId=eid, SourceDestCheck={"Value": True}, DryRun=True)
    assert attr("sourceDestCheck")["SourceDestCheck"]["Value"] is False
    expect_error("InvalidNetworkInterfaceID.NotFound", 400, ec2.modify_network_interface_attribute,
                 NetworkInterfaceId="eni-0123456789abcdef0", SourceDestCheck={"Value": True})


def test_paginator(ec2, vpc, subnet):
    ids = {ec2.create_network_interface(SubnetId=subnet["SubnetId"])["NetworkInterface"]["NetworkInterfaceId"]
           for _ in range(7)}
    pages = ec2.get_paginator("describe_network_interfaces").paginate(
        Filters=[{"Name": "subnet-id", "Values": [subnet["SubnetId"]]}], PaginationConfig={"PageSize": 5})
    seen = [e["NetworkInterfaceId"] for p in pages for e in p["NetworkInterfaces"]]
    assert len(seen) == 7 and set(seen) == ids


def test_create_client_token(ec2, vpc, subnet):
    before = avail(ec2, subnet)
    first = ec2.create_network_interface(SubnetId=subnet["SubnetId"], Description="idem",
                                         ClientToken="eni-token-1")
    eni = first["NetworkInterface"]
    assert first["ClientToken"] == "eni-token-1"
    again = ec2.create_network_interface(SubnetId=subnet["SubnetId"], Description="idem",
                                         ClientToken="eni-token-1")
    assert again["ClientToken"] == "eni-token-1"
    assert again["NetworkInterface"]["NetworkInterfaceId"] == eni["NetworkInterfaceId"]
    assert again["NetworkInterface"]["PrivateIpAddress"] == eni["PrivateIpAddress"]
    assert avail(ec2, subnet) == before - 1, "the retry took no address"
    err = expect_error("IdempotentParameterMismatch", 400, ec2.create_network_interface,
                       SubnetId=subnet["SubnetId"], Description="other", ClientToken="eni-token-1")
    assert err["Error"]["Message"] == ("Arguments on this idempotent request are inconsistent with "
                                       "arguments used in previous request(s).")
    found = ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [subnet["SubnetId"]]}])
    assert [n["NetworkInterfaceId"] for n in found["NetworkInterfaces"]] == [eni["NetworkInterfaceId"]]
    # botocore sends a fresh token when none is given: two calls, two interfaces.
    a = ec2.create_network_interface(SubnetId=subnet["SubnetId"])
    b = ec2.create_network_interface(SubnetId=subnet["SubnetId"])
    assert a["ClientToken"] != b["ClientToken"]
    assert a["NetworkInterface"]["NetworkInterfaceId"] != b["NetworkInterface"]["NetworkInterfaceId"]
    for n in (eni, a["NetworkInterface"], b["NetworkInterface"]):
        ec2.delete_network_interface(NetworkInterfaceId=n["NetworkInterfaceId"])


def test_attachment_delete_on_termination(ec2, vpc, subnet, aws):
    """ModifyNetworkInterfaceAttribute Attachment (AttachmentId + DeleteOnTermination): shown by
    DescribeNetworkInterfaces and the attachment attribute, honoured by TerminateInstances."""
    inst = launch(ec2, subnet)
    mk = lambda: ec2.create_network_interface(SubnetId=subnet["SubnetId"])["NetworkInterface"]["NetworkInterfaceId"]
    gone, kept = mk(), mk()
    att_gone = ec2.attach_network_interface(NetworkInterfaceId=gone, InstanceId=inst["InstanceId"],
                                            DeviceIndex=1)["AttachmentId"]
    att_kept = ec2.attach_network_interface(NetworkInterfaceId=kept, InstanceId=inst["InstanceId"],
                                            DeviceIndex=2)["AttachmentId"]
    shown = lambda eni: ec2.describe_network_interfaces(
        NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]["Attachment"]["DeleteOnTermination"]
    assert shown(gone) is False, "attached by hand: kept by default"
    expect_error("DryRunOperation", 412, ec2.modify_network_interface_attribute, NetworkInterfaceId=gone,
                 Attachment={"AttachmentId": att_gone, "DeleteOnTermination": True}, DryRun=True)
    assert shown(gone) is False
    ec2.modify_network_interface_attribute(NetworkInterfaceId=gone,
                                           Attachment={"AttachmentId": att_gone, "DeleteOnTermination": True})
    assert shown(gone) is True
    attr = ec2.describe_network_interface_attribute(NetworkInterfaceId=gone, Attribute="attachment")
    assert attr["Attachment"]["DeleteOnTermination"] is True
    filtered = ec2.describe_network_interfaces(Filters=[
        {"Name": "attachment.delete-on-termination", "Values": ["true"]},
        {"Name": "attachment.instance-id", "Values": [inst["InstanceId"]]}])["NetworkInterfaces"]
    assert sorted(e["NetworkInterfaceId"] for e in filtered) == sorted(
        [gone, inst["NetworkInterfaces"][0]["NetworkInterfaceId"]])
    # Another interface's attachment, an unknown one, or half a change: refused.
    expect_error("InvalidAttachmentID.NotFound", 400, ec2.modify_network_interface_attribute,
                 NetworkInterfaceId=kept, Attachment={"AttachmentId": att_gone, "DeleteOnTermination": True})
    expect_error("InvalidAttachmentID.NotFound", 400, ec2.modify_network_interface_attribute,
                 NetworkInterfaceId=kept,
                 Attachment={"AttachmentId": "eni-attach-0123456789abcdef0", "DeleteOnTermination": True})
    expect_error("MissingParameter", 400, ec2.modify_network_interface_attribute,
                 NetworkInterfaceId=kept, Attachment={"AttachmentId": att_kept})
    err = expect_error("InvalidParameterValue", 400, ec2.modify_network_interface_attribute,
                       NetworkInterfaceId=kept, Attachment={"AttachmentId": att_kept, "EnaQueueCount": 2})
    assert "EnaQueueCount" in err["Error"]["Message"]
    # The AWS CLI sets it back and forth the same way.
    rc, _, err = aws("modify-network-interface-attribute", "--network-interface-id", kept,
                     "--attachment", f"AttachmentId={att_kept},DeleteOnTermination=true")
    assert rc == 0, err
    rc, _, err = aws("modify-network-interface-attribute", "--network-interface-id", kept,
                     "--attachment", f"AttachmentId={att_kept},DeleteOnTermination=false")
    assert rc == 0, err
    assert shown(kept) is False
    ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])
    left = {e["NetworkInterfaceId"]: e for e in ec2.describe_network_interfaces(
        Filters=[{"Name": "subnet-id", "Values": [subnet["SubnetId"]]}])["NetworkInterfaces"]}
    assert gone not in left, "DeleteOnTermination: deleted with the instance"
    assert left[kept]["Status"] == "available" and "Attachment" not in left[kept]
    ec2.delete_network_interface(NetworkInterfaceId=kept)


def test_large_listing_is_streamed_and_parses_the_same(ec2, aws, vpc):
    """More than 256 ENIs in one answer: the server encodes it item by item while sending it
    (chunked framing); boto3 and the AWS CLI read every ENI, exactly as the paged answers have
    them."""
    sub = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.8.0/22")["Subnet"]
    made = {ec2.create_network_interface(SubnetId=sub["SubnetId"], Description=f"s<{i}>&")
            ["NetworkInterface"]["NetworkInterfaceId"] for i in range(300)}
    flt = [{"Name": "subnet-id", "Values": [sub["SubnetId"]]}]
    whole = ec2.describe_network_interfaces(Filters=flt)
    assert "NextToken" not in whole
    got = {e["NetworkInterfaceId"]: e for e in whole["NetworkInterfaces"]}
    assert set(got) == made
    paged = {}
    for page in ec2.get_paginator("describe_network_interfaces").paginate(
            Filters=flt, PaginationConfig={"PageSize": 100}):
        assert len(page["NetworkInterfaces"]) <= 100
        paged.update((e["NetworkInterfaceId"], e) for e in page["NetworkInterfaces"])
    assert paged == got
    assert all(re.fullmatch(r"s<\d+>&", e["Description"]) for e in got.values())
    code, out, err = aws("describe-network-interfaces", "--no-paginate",
                         "--filters", f"Name=subnet-id,Values={sub['SubnetId']}")
    assert code == 0, err
    assert {e["NetworkInterfaceId"] for e in out["NetworkInterfaces"]} == made
    for eni in made:
        ec2.delete_network_interface(NetworkInterfaceId=eni)
