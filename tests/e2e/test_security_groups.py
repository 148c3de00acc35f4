"""Security groups on the wire, with real TCP clients and ping (issue 10).

In zigi-vpc1: zigi-vm1 (10.0.0.148) and zigi-vm4 (10.0.0.30) on host-1, zigi-vm2 (10.0.0.185) on
host-2, all in the VPC's default group (which admits its own members). The test moves zigi-vm2
into a group `svt-web` (ingress tcp 8080 from 10.0.0.0/16, tcp 9090 from members of `svt-client`)
and zigi-vm1 into `svt-client` (no ingress at all) through ModifyNetworkInterfaceAttribute and
ModifyInstanceAttribute, and checks what connects and what times out. Every group is restored and
deleted at the end, whatever happens.
"""

from probes import Server, Session, connects, eni_of, wait_connects

VM1, VM2, VM4 = "10.0.0.148", "10.0.0.185", "10.0.0.30"


def test_groups_rules_and_membership_on_the_wire(lab):
    vpc = lab.instance("zigi-vm1")["vpc_id"]
    vm1_eni, vm2_eni = eni_of(lab, vpc, VM1), eni_of(lab, vpc, VM2)
    vm1_instance = vm1_eni["Attachment"]["InstanceId"]
    default = [g["GroupId"] for g in vm2_eni["Groups"]]
    vm1_default = [g["GroupId"] for g in vm1_eni["Groups"]]
    created, servers, sessions = [], [], []
    try:
        web = lab.aws("create-security-group", "--group-name", "svt-web", "--description", "w",
                      "--vpc-id", vpc)["GroupId"]
        created.append(web)
        client = lab.aws("create-security-group", "--group-name", "svt-client",
                         "--description", "c", "--vpc-id", vpc)["GroupId"]
        created.append(client)
        rule_8080 = lab.aws("authorize-security-group-ingress", "--group-id", web,
                            "--protocol", "tcp", "--port", "8080",
                            "--cidr", "10.0.0.0/16")["SecurityGroupRules"][0]
        lab.aws("authorize-security-group-ingress", "--group-id", web, "--ip-permissions",
                f"IpProtocol=tcp,FromPort=9090,ToPort=9090,UserIdGroupPairs=[{{GroupId={client}}}]")
        servers.append(Server(lab, "zigi-vm2", 8080, 8081, 9090))

        # In the default group, zigi-vm4 (a member) reaches every port of zigi-vm2.
        wait_connects(lab, "zigi-vm4", VM2, 8081, True)

        # ModifyNetworkInterfaceAttribute --groups: zigi-vm2 is only in svt-web now.
        lab.aws("modify-network-interface-attribute", "--network-interface-id",
                vm2_eni["NetworkInterfaceId"], "--groups", web)
        wait_connects(lab, "zigi-vm4", VM2, 8081, False)
        assert connects(lab, "zigi-vm4", VM2, 8080), "tcp 8080 from 10.0.0.0/16 is allowed"
        assert not lab.ping("zigi-vm4", VM2, count=2, wait=1).ok, "no ICMP rule"
        # 9090 admits members of svt-client only: zigi-vm4 is not one.
        assert not connects(lab, "zigi-vm4", VM2, 9090)

        # ModifyInstanceAttribute --groups: zigi-vm1 joins svt-client (and nothing else).
        lab.aws("modify-instance-attribute", "--instance-id", vm1_instance, "--groups", client)
        wait_connects(lab, "zigi-vm1", VM2, 9090, True)
        assert not connects(lab, "zigi-vm4", VM2, 9090), "still not a member"
        # zigi-vm1 has no ingress rule at all: the replies of its own connections come back
        # (tracked), but zigi-vm4 cannot reach it.
        assert connects(lab, "zigi-vm1", VM2, 8080)
        servers.append(Server(lab, "zigi-vm1", 7070))
        assert not connects(lab, "zigi-vm4", VM1, 7070)

        # Revoking the 8080 rule keeps the open connection and refuses new ones.
        s = Session(lab, "zigi-vm1", VM2, 8080)
        sessions.append(s)
        assert s.first == "connected", s.first
        assert s.say("before") == "echo before"
        lab.aws("revoke-security-group-ingress", "--group-id", web,
                "--security-group-rule-ids", rule_8080["SecurityGroupRuleId"])
        wait_connects(lab, "zigi-vm4", VM2, 8080, False)
        assert not connects(lab, "zigi-vm1", VM2, 8080)
        assert s.say("after") == "echo after", "the tracked connection survives the revoke"

        # Back to the default group: zigi-vm4 reaches 8081 again.
        lab.aws("modify-network-interface-attribute", "--network-interface-id",
                vm2_eni["NetworkInterfaceId"], "--groups", *default)
        wait_connects(lab, "zigi-vm4", VM2, 8081, True)
    finally:
        for s in sessions:
            s.close()
        for srv in servers:
            srv.stop()
        lab.aws("modify-network-interface-attribute", "--network-interface-id",
                vm2_eni["NetworkInterfaceId"], "--groups", *default, check=False)
        lab.aws("modify-network-interface-attribute", "--network-interface-id",
                vm1_eni["NetworkInterfaceId"], "--groups", *vm1_default, check=False)
        for g in reversed(created):
            lab.aws("delete-security-group", "--group-id", g, check=False)
    # The seed lab works as before.
    lab.wait_ping("zigi-vm1", VM2)
    lab.wait_ping("zigi-vm4", VM2)

