"""Managed prefix lists on the wire (issue 13): a security group rule whose source is a prefix
list admits exactly the list's entries, and a change of the list's entries (no change of the
group) changes what connects.

zigi-vm2 (10.0.0.185, host-2) goes into a group `svt-pl` admitting tcp 8080 from the list
`svt-admins`, which first holds zigi-vm1 (10.0.0.148) and then zigi-vm4 (10.0.0.30) instead,
both on host-1. The group, the list and zigi-vm2's groups are restored at the end, whatever
happens.
"""

from test_security_groups import VM1, VM2, VM4, Server, connects, eni_of, wait_connects


def test_prefix_list_in_a_security_group_rule(lab):
    vpc = lab.instance("zigi-vm1")["vpc_id"]
    vm2_eni = eni_of(lab, vpc, VM2)
    default = [g["GroupId"] for g in vm2_eni["Groups"]]
    group = pl = server = None
    try:
        pl = lab.aws("create-managed-prefix-list", "--prefix-list-name", "svt-admins",
                     "--max-entries", "4", "--address-family", "IPv4",
                     "--entries", f"Cidr={VM1}/32,Description=zigi-vm1")["PrefixList"]["PrefixListId"]
        group = lab.aws("create-security-group", "--group-name", "svt-pl", "--description", "pl",
                        "--vpc-id", vpc)["GroupId"]
        lab.aws("authorize-security-group-ingress", "--group-id", group, "--ip-permissions",
                f"IpProtocol=tcp,FromPort=8080,ToPort=8080,PrefixListIds=[{{PrefixListId={pl}}}]")
        server = Server(lab, "zigi-vm2", 8080)
        lab.aws("modify-network-interface-attribute", "--network-interface-id",
                vm2_eni["NetworkInterfaceId"], "--groups", group)
        wait_connects(lab, "zigi-vm1", VM2, 8080, True)
        assert not connects(lab, "zigi-vm4", VM2, 8080), "zigi-vm4 is not in the list"

        # The list now holds zigi-vm4 instead of zigi-vm1; the group is unchanged.
        lab.aws("modify-managed-prefix-list", "--prefix-list-id", pl, "--current-version", "1",
                "--add-entries", f"Cidr={VM4}/32", "--remove-entries", f"Cidr={VM1}/32")
        wait_connects(lab, "zigi-vm4", VM2, 8080, True)
        assert not connects(lab, "zigi-vm1", VM2, 8080), "zigi-vm1 left the list"
    finally:
        if server:
            server.stop()
        lab.aws("modify-network-interface-attribute", "--network-interface-id",
                vm2_eni["NetworkInterfaceId"], "--groups", *default, check=False)
        if group:
            lab.aws("delete-security-group", "--group-id", group, check=False)
        if pl:
            lab.aws("delete-managed-prefix-list", "--prefix-list-id", pl, check=False)
    lab.wait_ping("zigi-vm4", VM2)
