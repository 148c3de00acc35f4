"""ENIs on the data plane, through the real AWS CLI: a secondary address assigned with
`assign-private-ip-addresses` appears on the instance's eth0 and is pingable from an instance on
another host, and is gone after `unassign-private-ip-addresses`; a stopped instance leaves its
host (namespace removed) and comes back, with the same address, when started."""

from e2e_harness import PREFIX, netns_exists, wait_until

SECONDARY = "10.0.0.99"


def eth0_addresses(lab, name):
    return lab.exec(name, "ip", "-o", "-4", "addr", "show", "eth0", check=True).stdout


def primary_eni(lab, name):
    iid = lab.instance(name)["instance_id"]
    out = lab.aws("describe-network-interfaces", "--filters",
                  f"Name=attachment.instance-id,Values={iid}",
                  "Name=attachment.device-index,Values=0")
    enis = out["NetworkInterfaces"]
    assert len(enis) == 1, enis
    return enis[0]["NetworkInterfaceId"]


def test_secondary_ip_follows_assign_and_unassign(lab):
    eni = primary_eni(lab, "zigi-vm2")  # host-2
    before = lab.ping("zigi-vm1", SECONDARY, count=1, wait=1)
    assert not before.ok, "the address answers before it is assigned"
    assigned = False
    try:
        out = lab.aws("assign-private-ip-addresses", "--network-interface-id", eni,
                      "--private-ip-addresses", SECONDARY)
        assigned = True
        assert out is None or "AssignedPrivateIpAddresses" in out or out == {}, out
        wait_until(lambda: f"{SECONDARY}/24" in eth0_addresses(lab, "zigi-vm2"), 30,
                   what="the secondary address on zigi-vm2's eth0")
        # From host-1, across the underlay; and the instance answers from that address.
        lab.wait_ping("zigi-vm1", SECONDARY, timeout=30)
        ping = lab.ping("zigi-vm1", SECONDARY, count=2)
        assert ping.ok and ping.received == 2, ping
        assert f'"{SECONDARY}"' in lab.mappings_text("host-1"), "host-1's agent lacks the address"
        # The primary address is untouched.
        assert lab.ping("zigi-vm1", "10.0.0.185", count=1).ok

        lab.aws("unassign-private-ip-addresses", "--network-interface-id", eni,
                "--private-ip-addresses", SECONDARY)
        assigned = False
    finally:
        if assigned:
            lab.aws("unassign-private-ip-addresses", "--network-interface-id", eni,
                    "--private-ip-addresses", SECONDARY, check=False)
    wait_until(lambda: f"{SECONDARY}/" not in eth0_addresses(lab, "zigi-vm2"), 30,
               what="the secondary address to leave zigi-vm2's eth0")
    wait_until(lambda: f'"{SECONDARY}"' not in lab.mappings_text("host-1"), 30,
               what="host-1's agent to forget the secondary address")
    gone = lab.ping("zigi-vm1", SECONDARY, count=3, wait=1)
    assert not gone.ok and gone.received == 0, gone
    assert lab.ping("zigi-vm1", "10.0.0.185", count=1).ok


def test_stop_and_start_move_the_instance_off_and_back_on_its_host(lab):
    subnet_id = lab.instance("zigi-vm1")["subnet_id"]
    host2 = lab.host_id("host-2")
    out = lab.aws("run-instances", "--image-id", "ami-1", "--count", "1",
                  "--subnet-id", subnet_id, "--private-ip-address", "10.0.0.88",
                  "--placement", f"HostId={host2}")
    iid = out["Instances"][0]["InstanceId"]
    netns = f"{PREFIX}{iid}"
    try:
        wait_until(lambda: netns_exists(netns), 30, what=f"namespace {netns}")
        lab.wait_ping("zigi-vm1", "10.0.0.88", timeout=30)

        out = lab.aws("stop-instances", "--instance-ids", iid)
        assert out["StoppingInstances"][0]["CurrentState"]["Name"] == "stopping", out
        wait_until(lambda: not netns_exists(netns), 30, what=f"namespace {netns} to go while stopped")
        gone = lab.ping("zigi-vm1", "10.0.0.88", count=2, wait=1)
        assert not gone.ok and gone.received == 0, gone
        described = lab.aws("describe-instances", "--instance-ids", iid)["Reservations"][0]["Instances"][0]
        assert described["State"]["Name"] == "stopped", described
        assert described["PrivateIpAddress"] == "10.0.0.88", described

        lab.aws("start-instances", "--instance-ids", iid)
        wait_until(lambda: netns_exists(netns), 30, what=f"namespace {netns} back after start")
        lab.wait_ping("zigi-vm1", "10.0.0.88", timeout=30)
    finally:
        lab.aws("terminate-instances", "--instance-ids", iid, check=False)
    wait_until(lambda: not netns_exists(netns), 30, what=f"namespace {netns} to go")
