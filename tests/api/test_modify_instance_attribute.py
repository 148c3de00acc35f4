"""ModifyInstanceAttribute through boto3 and the AWS CLI: `Groups` replaces the groups of the
instance's network interface (AWS: refused for an instance with several interfaces),
`SourceDestCheck` sets that ENI's check; the attributes softvpc has nothing behind are refused."""

from helpers import expect_error, instances


def run_one(ec2, subnet):
    r = ec2.run_instances(ImageId="ami-12345678", SubnetId=subnet["SubnetId"], MinCount=1, MaxCount=1)
    return instances({"Reservations": [r]})[0]


def groups_of_eni(ec2, eni_id):
    a = ec2.describe_network_interface_attribute(NetworkInterfaceId=eni_id, Attribute="groupSet")
    return [g["GroupId"] for g in a["Groups"]]


def new_group(ec2, vpc, name):
    return ec2.create_security_group(GroupName=name, Description="d", VpcId=vpc["VpcId"])["GroupId"]


def test_groups_replace_the_primary_enis_groups(ec2, vpc, subnet):
    inst = run_one(ec2, subnet)
    iid = inst["InstanceId"]
    eni = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    web, db = new_group(ec2, vpc, "web"), new_group(ec2, vpc, "db")
    assert len(groups_of_eni(ec2, eni)) == 1  # the default group

    ec2.modify_instance_attribute(InstanceId=iid, Groups=[web, db])
    assert sorted(groups_of_eni(ec2, eni)) == sorted([web, db])
    desc = instances(ec2.describe_instances(InstanceIds=[iid]))[0]
    assert sorted(g["GroupId"] for g in desc["SecurityGroups"]) == sorted([web, db])

    ec2.modify_instance_attribute(InstanceId=iid, Groups=[db])
    assert groups_of_eni(ec2, eni) == [db]

    # Refusals change nothing.
    expect_error("InvalidGroup.NotFound", 400, ec2.modify_instance_attribute,
                 InstanceId=iid, Groups=["sg-0123456789abcdef0"])
    expect_error("DryRunOperation", 412, ec2.modify_instance_attribute,
                 InstanceId=iid, Groups=[web], DryRun=True)
    expect_error("InvalidInstanceID.NotFound", 400, ec2.modify_instance_attribute,
                 InstanceId="i-0123456789abcdef0", Groups=[web])
    assert groups_of_eni(ec2, eni) == [db]


def test_a_group_of_another_vpc_is_refused(ec2, vpc, subnet):
    inst = run_one(ec2, subnet)
    other_vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]
    foreign = new_group(ec2, other_vpc, "elsewhere")
    eni = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    before = groups_of_eni(ec2, eni)
    # Same answer as ModifyNetworkInterfaceAttribute gives for that group.
    code = expect_error_code(ec2.modify_network_interface_attribute, NetworkInterfaceId=eni, Groups=[foreign])
    assert expect_error_code(ec2.modify_instance_attribute, InstanceId=inst["InstanceId"], Groups=[foreign]) == code
    assert groups_of_eni(ec2, eni) == before


def expect_error_code(fn, **kw):
    import botocore.exceptions
    try:
        fn(**kw)
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError("the call succeeded")


def test_source_dest_check(ec2, subnet):
    inst = run_one(ec2, subnet)
    eni = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    ec2.modify_instance_attribute(InstanceId=inst["InstanceId"], SourceDestCheck={"Value": False})
    a = ec2.describe_network_interface_attribute(NetworkInterfaceId=eni, Attribute="sourceDestCheck")
    assert a["SourceDestCheck"]["Value"] is False


def test_several_interfaces_are_refused(ec2, vpc, subnet):
    inst = run_one(ec2, subnet)
    extra = ec2.create_network_interface(SubnetId=subnet["SubnetId"])["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=extra, InstanceId=inst["InstanceId"], DeviceIndex=1)
    web = new_group(ec2, vpc, "web2")
    err = expect_error("InvalidInstanceID", 400, ec2.modify_instance_attribute,
                       InstanceId=inst["InstanceId"], Groups=[web])
    assert "multiple interfaces" in err["Error"]["Message"]
    assert web not in groups_of_eni(ec2, extra)


def test_one_attribute_per_call_and_unsupported_ones(ec2, vpc, subnet):
    inst = run_one(ec2, subnet)
    iid = inst["InstanceId"]
    web = new_group(ec2, vpc, "web3")
    expect_error("InvalidParameterCombination", 400, ec2.modify_instance_attribute,
                 InstanceId=iid, Groups=[web], SourceDestCheck={"Value": False})
    expect_error("MissingParameter", 400, ec2.modify_instance_attribute, InstanceId=iid)
    # The instance type changes only while stopped (test_instance_attributes.py).
    expect_error("IncorrectInstanceState", 400, ec2.modify_instance_attribute,
                 InstanceId=iid, InstanceType={"Value": "m5.large"})
    err = expect_error("UnsupportedOperation", 400, ec2.modify_instance_attribute,
                       InstanceId=iid, Kernel={"Value": "aki-12345678"})
    assert "Kernel" in err["Error"]["Message"]
    expect_error("InvalidParameterCombination", 400, ec2.modify_instance_attribute,
                 InstanceId=iid, Attribute="groupSet", Value=web)


def test_awscli_groups(aws, ec2, vpc, subnet):
    inst = run_one(ec2, subnet)
    web = new_group(ec2, vpc, "cli-web")
    rc, out, err = aws("modify-instance-attribute", "--instance-id", inst["InstanceId"], "--groups", web)
    assert rc == 0, err
    eni = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    assert groups_of_eni(ec2, eni) == [web]
