"""StartInstances/StopInstances through boto3, with the instance_stopped / instance_running
waiters: a stopped instance keeps its private address and ENI; IncorrectInstanceState where AWS
refuses. Terminated instances and ClientTokens survive a restart."""

from conftest import Server
from helpers import expect_error, instances


def state_of(ec2, iid):
    return instances(ec2.describe_instances(InstanceIds=[iid]))[0]


def test_stop_start_terminate(ec2, vpc, subnet):
    inst = ec2.run_instances(ImageId="ami-12345678", SubnetId=subnet["SubnetId"], MinCount=1, MaxCount=1)["Instances"][0]
    iid, ip = inst["InstanceId"], inst["PrivateIpAddress"]
    eni = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]

    expect_error("DryRunOperation", 412, ec2.stop_instances, InstanceIds=[iid], DryRun=True)
    assert state_of(ec2, iid)["State"]["Name"] == "running"
    r = ec2.stop_instances(InstanceIds=[iid])["StoppingInstances"][0]
    assert r["InstanceId"] == iid
    assert r["PreviousState"] == {"Code": 16, "Name": "running"}
    assert r["CurrentState"] == {"Code": 64, "Name": "stopping"}
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    stopped = state_of(ec2, iid)
    assert stopped["State"] == {"Code": 80, "Name": "stopped"}
    assert stopped["PrivateIpAddress"] == ip
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
    assert got["PrivateIpAddress"] == ip and got["Attachment"]["InstanceId"] == iid
    by_state = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["stopped"]}])
    assert iid in [i["InstanceId"] for i in instances(by_state)]

    # Stopping again changes nothing.
    again = ec2.stop_instances(InstanceIds=[iid])["StoppingInstances"][0]
    assert again["CurrentState"]["Name"] == "stopped"

    r = ec2.start_instances(InstanceIds=[iid])["StartingInstances"][0]
    assert r["PreviousState"] == {"Code": 80, "Name": "stopped"}
    assert r["CurrentState"] == {"Code": 0, "Name": "pending"}
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    assert state_of(ec2, iid)["PrivateIpAddress"] == ip

    # A stopped instance can be terminated; a terminated one can be neither started nor stopped.
    ec2.stop_instances(InstanceIds=[iid])
    t = ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"][0]
    assert t["PreviousState"]["Name"] == "stopped"
    expect_error("IncorrectInstanceState", 400, ec2.start_instances, InstanceIds=[iid])
    expect_error("IncorrectInstanceState", 400, ec2.stop_instances, InstanceIds=[iid])


def test_unknown_ids_change_nothing(ec2, vpc, subnet):
    iid = ec2.run_instances(ImageId="ami-12345678", SubnetId=subnet["SubnetId"], MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    expect_error("InvalidInstanceID.NotFound", 400, ec2.stop_instances, InstanceIds=[iid, "i-0123456789abcdef0"])
    assert state_of(ec2, iid)["State"]["Name"] == "running"
    expect_error("InvalidInstanceID.NotFound", 400, ec2.start_instances, InstanceIds=["i-0123456789abcdef0"])
    ec2.terminate_instances(InstanceIds=[iid])


def test_terminated_instances_and_tokens_survive_restart(workdir):
    srv = Server(workdir / "terminated-restart").start()
    try:
        ec2 = srv.client()
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]
        subnet = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.0.0.0/24")["Subnet"]

        def launch():
            return ec2.run_instances(ImageId="ami-1", MinCount=1, MaxCount=1, SubnetId=subnet["SubnetId"],
                                     ClientToken="restart-run-token")

        def create_eni():
            return ec2.create_network_interface(SubnetId=subnet["SubnetId"], ClientToken="restart-eni-token")

        gone = launch()["Instances"][0]
        stopped = ec2.run_instances(ImageId="ami-1", MinCount=1, MaxCount=1, SubnetId=subnet["SubnetId"])["Instances"][0]
        eni = create_eni()["NetworkInterface"]
        ec2.terminate_instances(InstanceIds=[gone["InstanceId"]])
        ec2.stop_instances(InstanceIds=[stopped["InstanceId"]])
        before = {i["InstanceId"]: i for i in instances(ec2.describe_instances(
            InstanceIds=[gone["InstanceId"], stopped["InstanceId"]]))}
        assert before[stopped["InstanceId"]]["StateTransitionReason"].startswith("User initiated (")
        srv.stop()
        srv.start()
        ec2 = srv.client()
        after = {i["InstanceId"]: i for i in instances(ec2.describe_instances(
            InstanceIds=[gone["InstanceId"], stopped["InstanceId"]]))}
        t = after[gone["InstanceId"]]
        assert t["State"] == {"Code": 48, "Name": "terminated"}
        assert t["StateTransitionReason"] == before[gone["InstanceId"]]["StateTransitionReason"]
        assert "PrivateIpAddress" not in t and t.get("NetworkInterfaces", []) == []
        assert after[stopped["InstanceId"]]["StateTransitionReason"] == before[stopped["InstanceId"]]["StateTransitionReason"]
        ec2.get_waiter("instance_terminated").wait(InstanceIds=[gone["InstanceId"]],
                                                   WaiterConfig={"Delay": 1, "MaxAttempts": 5})
        # The tokens were stored with their resources: retries still answer with them.
        retry = launch()["Instances"][0]
        assert (retry["InstanceId"], retry["State"]["Name"]) == (gone["InstanceId"], "terminated")
        assert create_eni()["NetworkInterface"]["NetworkInterfaceId"] == eni["NetworkInterfaceId"]
        assert len(instances(ec2.describe_instances())) == 2
        # Its address was freed at termination and stays free.
        s = ec2.describe_subnets(SubnetIds=[subnet["SubnetId"]])["Subnets"][0]
        assert s["AvailableIpAddressCount"] == 249
    finally:
        srv.stop()
