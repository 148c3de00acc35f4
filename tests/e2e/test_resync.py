"""An agent cut off from the mapping service keeps forwarding with what it knows, and catches up
with every change it missed once it can reconnect: never silently stale.

host-2's agent loses the server (a `prohibit` route to 198.18.0.1 in host-2's namespace, and its
watch connection killed with `ss -K`); meanwhile an instance is launched on host-1 in zigi-vpc1.
host-1 learns it at once, host-2 cannot. Traffic between the hosts keeps flowing. Once the route
is gone, host-2's agent reconnects, catches up, and zigi-vm2 reaches the new instance.
"""

from e2e_harness import run, wait_until

NEW_IP = "10.0.0.88"


def test_agent_catches_up_after_losing_the_server(lab):
    ns = lab.host("host-2")["netns"]
    subnet_id = lab.instance("zigi-vm1")["subnet_id"]
    host1 = lab.host_id("host-1")
    iid = None
    cut = False
    try:
        run(["ip", "-n", ns, "route", "add", "prohibit", "198.18.0.1/32"], check=True)
        cut = True
        run(["ip", "netns", "exec", ns, "ss", "-K", "dst", "198.18.0.1"], check=True)

        out = lab.aws("run-instances", "--image-id", "ami-1", "--count", "1",
                      "--subnet-id", subnet_id, "--private-ip-address", NEW_IP,
                      "--placement", f"HostId={host1}")
        iid = out["Instances"][0]["InstanceId"]
        wait_until(lambda: f'"{NEW_IP}"' in lab.mappings_text("host-1"), 30,
                   what="host-1 to learn the new instance")
        # Fail static: the cut-off agent still forwards between the existing instances.
        for src, dst in (("zigi-vm2", "10.0.0.148"), ("zigi-vm1", "10.0.0.185")):
            result = lab.ping(src, dst, count=1)
            assert result.ok, f"{src} -> {dst} while host-2 is cut off: {result}"
        assert f'"{NEW_IP}"' not in lab.mappings_text("host-2"), \
            "host-2 learned a change while cut off from the server (the cut did not work)"

        run(["ip", "-n", ns, "route", "del", "prohibit", "198.18.0.1/32"], check=True)
        cut = False
        wait_until(lambda: f'"{NEW_IP}"' in lab.mappings_text("host-2"), 60,
                   what="host-2's agent to catch up after reconnecting")
        assert lab.wait_ping("zigi-vm2", NEW_IP, timeout=30).ok
    finally:
        if cut:
            run(["ip", "-n", ns, "route", "del", "prohibit", "198.18.0.1/32"])
        if iid:
            lab.aws("terminate-instances", "--instance-ids", iid, check=False)
    wait_until(lambda: f'"{NEW_IP}"' not in lab.mappings_text("host-2"), 30,
               what="host-2 to forget the terminated instance")
