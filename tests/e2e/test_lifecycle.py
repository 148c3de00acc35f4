"""Instance lifecycle through the real AWS CLI: run-instances makes an instance reachable within a
bounded wait; terminate-instances makes it unreachable, removes its namespace, and its host's agent
forgets it."""

from e2e_harness import PREFIX, netns_exists, wait_until


def test_run_then_terminate_instance(lab):
    subnet_id = lab.instance("zigi-vm1")["subnet_id"]
    host2 = lab.host_id("host-2")
    out = lab.aws("run-instances", "--image-id", "ami-1", "--count", "1",
                  "--subnet-id", subnet_id, "--private-ip-address", "10.0.0.77",
                  "--placement", f"HostId={host2}",
                  "--tag-specifications",
                  "ResourceType=instance,Tags=[{Key=Name,Value=svt-lifecycle}]")
    inst = out["Instances"][0]
    iid = inst["InstanceId"]
    enis = [n["NetworkInterfaceId"] for n in inst.get("NetworkInterfaces", [])]
    netns = f"{PREFIX}{iid}"
    terminated = False
    try:
        assert inst["PrivateIpAddress"] == "10.0.0.77", inst
        assert inst.get("SubnetId") == subnet_id, inst
        described = lab.aws("describe-instances", "--instance-ids", iid)
        tags = described["Reservations"][0]["Instances"][0].get("Tags", [])
        assert {"Key": "Name", "Value": "svt-lifecycle"} in tags, tags

        wait_until(lambda: netns_exists(netns), 30, what=f"namespace {netns}")
        lab.wait_ping("zigi-vm1", "10.0.0.77", timeout=30)
        # The new instance is usable by id through the lab, and reaches back across hosts.
        addr = lab.exec(iid, "ip", "-o", "-4", "addr", "show", "eth0", check=True).stdout
        assert "10.0.0.77/24" in addr, addr
        back = lab.ping(iid, "10.0.0.148", count=2)
        assert back.ok and set(back.ttls) == {64}, back
        view = lab.mappings_text("host-2")
        assert '"10.0.0.77"' in view, "host-2's agent does not list the new ENI's address"
        assert iid in view or any(e in view for e in enis), "host-2's agent does not list it"

        out = lab.aws("terminate-instances", "--instance-ids", iid)
        terminated = True
        assert out["TerminatingInstances"][0]["InstanceId"] == iid, out
    finally:
        if not terminated:
            lab.aws("terminate-instances", "--instance-ids", iid, check=False)

    wait_until(lambda: not netns_exists(netns), 30, what=f"namespace {netns} to go")

    def forgotten():
        view = lab.mappings_text("host-2")
        return (iid not in view and not any(e in view for e in enis)
                and '"10.0.0.77"' not in view)

    wait_until(forgotten, 30, what="host-2's agent to forget the instance")
    gone = lab.ping("zigi-vm1", "10.0.0.77", count=3, wait=1)
    assert not gone.ok and gone.received == 0, gone
    # The rest of the VPC is untouched.
    assert lab.ping("zigi-vm1", "10.0.0.185", count=1).ok
