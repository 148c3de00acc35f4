"""Smoke tests with the real AWS CLI: every response must parse, errors come back as AWS's."""


def test_cli_lifecycle(aws):
    rc, out, err = aws("create-vpc", "--cidr-block", "10.0.0.0/16",
                       "--tag-specifications", "ResourceType=vpc,Tags=[{Key=Name,Value=cli-vpc}]")
    assert rc == 0, err
    vpc = out["Vpc"]["VpcId"]
    rc, out, err = aws("create-subnet", "--vpc-id", vpc, "--cidr-block", "10.0.1.0/24")
    assert rc == 0, err
    subnet = out["Subnet"]["SubnetId"]
    assert out["Subnet"]["AvailableIpAddressCount"] == 251
    rc, out, err = aws("run-instances", "--image-id", "ami-0abcdef", "--count", "1",
                       "--subnet-id", subnet, "--private-ip-address", "10.0.1.20",
                       "--placement", "HostId=host-2",
                       "--tag-specifications", "ResourceType=instance,Tags=[{Key=Name,Value=cli-vm3}]")
    assert rc == 0, err
    iid = out["Instances"][0]["InstanceId"]
    rc, out, err = aws("describe-instances", "--filters", "Name=tag:Name,Values=cli-vm*",
                       f"Name=vpc-id,Values={vpc}")
    assert rc == 0, err
    found = [i for r in out["Reservations"] for i in r["Instances"]]
    assert [(i["InstanceId"], i["PrivateIpAddress"], i["State"]["Name"]) for i in found] == [(iid, "10.0.1.20", "running")]
    rc, out, err = aws("describe-vpcs", "--filters", "Name=tag:Name,Values=cli-vpc", f"Name=vpc-id,Values={vpc}")
    assert rc == 0, err
    assert [v["VpcId"] for v in out["Vpcs"]] == [vpc]
    rc, out, err = aws("describe-subnets", "--subnet-ids", subnet)
    assert rc == 0 and out["Subnets"][0]["AvailableIpAddressCount"] == 250, err
    rc, out, err = aws("describe-network-interfaces", "--filters", f"Name=subnet-id,Values={subnet}")
    assert rc == 0, err
    assert [n["PrivateIpAddress"] for n in out["NetworkInterfaces"]] == ["10.0.1.20"]
    rc, out, err = aws("describe-hosts")
    assert rc == 0 and len(out["Hosts"]) >= 2, err
    rc, out, err = aws("create-tags", "--resources", iid, "--tags", "Key=role,Value=web")
    assert rc == 0, err
    rc, out, err = aws("delete-subnet", "--subnet-id", subnet)
    assert rc != 0 and "DependencyViolation" in err
    rc, out, err = aws("terminate-instances", "--instance-ids", iid)
    assert rc == 0, err
    assert out["TerminatingInstances"][0]["CurrentState"]["Name"] == "shutting-down"
    rc, out, err = aws("wait", "instance-terminated", "--instance-ids", iid)
    assert rc == 0, err
    rc, out, err = aws("delete-subnet", "--subnet-id", subnet)
    assert rc == 0, err
    rc, out, err = aws("delete-vpc", "--vpc-id", vpc)
    assert rc == 0, err


def test_cli_errors(aws):
    rc, out, err = aws("create-vpc", "--cidr-block", "10.0.0.0/8")
    assert rc != 0 and "InvalidVpc.Range" in err
    rc, out, err = aws("describe-vpcs", "--vpc-ids", "vpc-0123456789abcdef0")
    assert rc != 0 and "InvalidVpcID.NotFound" in err
    rc, out, err = aws("describe-instances", "--instance-ids", "i-0123456789abcdef0")
    assert rc != 0 and "InvalidInstanceID.NotFound" in err
    rc, out, err = aws("run-instances", "--image-id", "ami-1", "--count", "1",
                       "--subnet-id", "subnet-0123456789abcdef0")
    assert rc != 0 and "InvalidSubnetID.NotFound" in err


def test_cli_wait_instance_running(aws):
    rc, out, err = aws("create-vpc", "--cidr-block", "10.0.0.0/16")
    vpc = out["Vpc"]["VpcId"]
    rc, out, err = aws("create-subnet", "--vpc-id", vpc, "--cidr-block", "10.0.0.0/24")
    subnet = out["Subnet"]["SubnetId"]
    rc, out, err = aws("run-instances", "--image-id", "ami-1", "--count", "2", "--subnet-id", subnet)
    assert rc == 0, err
    ids = [i["InstanceId"] for i in out["Instances"]]
    assert len(ids) == 2
    rc, out, err = aws("wait", "instance-running", "--instance-ids", *ids)
    assert rc == 0, err
    rc, out, err = aws("describe-instances", "--instance-ids", *ids, "--query",
                       "Reservations[].Instances[].PrivateIpAddress")
    assert rc == 0 and sorted(out) == ["10.0.0.4", "10.0.0.5"], err


def test_cli_client_token(aws):
    rc, out, err = aws("create-vpc", "--cidr-block", "10.0.0.0/16")
    vpc = out["Vpc"]["VpcId"]
    rc, out, err = aws("create-subnet", "--vpc-id", vpc, "--cidr-block", "10.0.0.0/24")
    subnet = out["Subnet"]["SubnetId"]
    launch = ("run-instances", "--image-id", "ami-1", "--count", "1", "--subnet-id", subnet,
              "--client-token", "cli-run-token")
    rc, first, err = aws(*launch)
    assert rc == 0, err
    rc, again, err = aws(*launch)
    assert rc == 0, err
    assert again["ReservationId"] == first["ReservationId"]
    assert [i["InstanceId"] for i in again["Instances"]] == [i["InstanceId"] for i in first["Instances"]]
    rc, out, err = aws(*launch, "--instance-type", "t3.large")
    assert rc != 0 and "An error occurred (IdempotentParameterMismatch) when calling the RunInstances operation" in err
    eni = ("create-network-interface", "--subnet-id", subnet, "--client-token", "cli-eni-token")
    rc, a, err = aws(*eni)
    assert rc == 0 and a["ClientToken"] == "cli-eni-token", err
    rc, b, err = aws(*eni)
    assert rc == 0 and b["NetworkInterface"]["NetworkInterfaceId"] == a["NetworkInterface"]["NetworkInterfaceId"], err
    rc, out, err = aws("describe-instances", "--filters", f"Name=vpc-id,Values={vpc}",
                       "--query", "Reservations[].Instances[].ClientToken")
    assert rc == 0 and out == ["cli-run-token"], (out, err)
    iid = first["Instances"][0]["InstanceId"]
    assert aws("terminate-instances", "--instance-ids", iid)[0] == 0
    assert aws("delete-network-interface", "--network-interface-id", a["NetworkInterface"]["NetworkInterfaceId"])[0] == 0
