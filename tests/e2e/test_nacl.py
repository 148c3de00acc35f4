"""Network ACLs on the wire, with real TCP clients (issue 10): stateless, per subnet, at the
subnet boundary only, lowest rule number first, first match wins, ingress and egress apart.

zigi-vpc1: zigi-vm1 (10.0.0.148, host-1), zigi-vm2 (10.0.0.185, host-2) and zigi-vm4 (10.0.0.30,
host-1) in 10.0.0.0/24; zigi-vm3 (10.0.1.20, host-2) alone in 10.0.1.0/24. All are in the VPC's
default security group (members admit each other), so only the ACLs decide here.

`svt-acl3` goes on zigi-vm3's subnet:
  ingress 100 deny  tcp 81          from 10.0.0.0/24
          110 allow tcp 80-81       from 10.0.0.0/24
          120 allow tcp 1024-65535  from 10.0.0.0/24   (replies to zigi-vm3's own connections)
  egress   90 deny  tcp 700         to 10.0.0.0/24
          100 allow tcp 1024-65535  to 10.0.0.0/24     (replies to connections made to it)
          110 allow tcp 700-701     to 10.0.0.0/24
Then a deny-everything ACL on 10.0.0.0/24 shows that an ACL never applies between two ENIs of
one subnet. Both subnets get their old ACL back at the end, whatever happens.
"""

from e2e_harness import wait_until
from probes import Server, connects, wait_connects

VM1, VM2, VM3, VM4 = "10.0.0.148", "10.0.0.185", "10.0.1.20", "10.0.0.30"


def association(ec2, subnet):
    """(association id, ACL id) of `subnet`'s network ACL."""
    (acl,) = ec2.describe_network_acls(Filters=[
        {"Name": "association.subnet-id", "Values": [subnet]}])["NetworkAcls"]
    (assoc,) = [a for a in acl["Associations"] if a["SubnetId"] == subnet]
    return assoc["NetworkAclAssociationId"], acl["NetworkAclId"]


def associate(ec2, subnet, acl):
    assoc, _ = association(ec2, subnet)
    ec2.replace_network_acl_association(AssociationId=assoc, NetworkAclId=acl)


def entry(ec2, acl, direction, number, action, ports, cidr):
    """A TCP entry (protocol 6) for `ports` (one port or a (from, to) pair)."""
    ec2.create_network_acl_entry(NetworkAclId=acl, Egress=direction == "egress",
                                 RuleNumber=number, Protocol="6", RuleAction=action,
                                 CidrBlock=cidr, PortRange={"From": ports[0], "To": ports[-1]})


def delete_entry(ec2, acl, direction, number):
    ec2.delete_network_acl_entry(NetworkAclId=acl, Egress=direction == "egress",
                                 RuleNumber=number)


def test_network_acls_on_the_wire(lab, ec2):
    vpc = lab.instance("zigi-vm1")["vpc_id"]
    subnet0, subnet1 = lab.instance("zigi-vm1")["subnet_id"], lab.instance("zigi-vm3")["subnet_id"]
    old0, old1 = association(ec2, subnet0)[1], association(ec2, subnet1)[1]
    created, servers = [], []
    try:
        servers.append(Server(lab, "zigi-vm3", 80, 81))
        servers.append(Server(lab, "zigi-vm1", 700, 701))
        # Before: the default ACL admits everything.
        wait_connects(lab, "zigi-vm1", VM3, 81, True)

        acl = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
        created.append(acl)
        entry(ec2, acl, "ingress", 100, "deny", (81,), "10.0.0.0/24")
        entry(ec2, acl, "ingress", 110, "allow", (80, 81), "10.0.0.0/24")
        entry(ec2, acl, "ingress", 120, "allow", (1024, 65535), "10.0.0.0/24")
        entry(ec2, acl, "egress", 90, "deny", (700,), "10.0.0.0/24")
        entry(ec2, acl, "egress", 100, "allow", (1024, 65535), "10.0.0.0/24")
        entry(ec2, acl, "egress", 110, "allow", (700, 701), "10.0.0.0/24")
        before = lab.drops("host-2", "nacl_denied")
        associate(ec2, subnet1, acl)

        # The deny at 100 overrides the allow at 110 for 81; 80 passes by 110, its replies by
        # egress 100.
        wait_connects(lab, "zigi-vm1", VM3, 81, False)
        assert connects(lab, "zigi-vm1", VM3, 80), "ingress 110 allows 80, egress 100 the reply"
        assert connects(lab, "zigi-vm4", VM3, 80), "from the other host-1 instance as well"
        assert not lab.ping("zigi-vm1", VM3, count=1, wait=1).ok, "no ICMP entry: `*` denies"
        # Egress: 701 leaves by 110 (its replies come in by ingress 120); 700 is denied at 90.
        assert connects(lab, "zigi-vm3", VM1, 701)
        assert not connects(lab, "zigi-vm3", VM1, 700), "egress 90 denies before 110 allows"
        # Ingress and egress are separate lists: ingress 110 allows port 80 in, nothing lets
        # zigi-vm3 send to port 80.
        servers.append(Server(lab, "zigi-vm1", 80))
        assert not connects(lab, "zigi-vm3", VM1, 80), "no egress entry for port 80"
        assert lab.drops("host-2", "nacl_denied") > before

        # Numbers decide, not the order entries were made in: without 100, 110 allows 81, and a
        # deny added later at 130 comes too late.
        delete_entry(ec2, acl, "ingress", 100)
        entry(ec2, acl, "ingress", 130, "deny", (81,), "10.0.0.0/24")
        wait_connects(lab, "zigi-vm1", VM3, 81, True)
        # And a deny put in front (105) wins again.
        entry(ec2, acl, "ingress", 105, "deny", (81,), "10.0.0.0/24")
        wait_connects(lab, "zigi-vm1", VM3, 81, False)

        # Stateless: without the ephemeral-port egress entry the SYN still arrives, but the
        # SYN-ACK may not leave, so the connection times out.
        delete_entry(ec2, acl, "egress", 100)
        wait_connects(lab, "zigi-vm1", VM3, 80, False)
        with lab.capture("zigi-vm3") as caps:
            assert not connects(lab, "zigi-vm1", VM3, 80, secs=1.0)
        syns = [line for line in caps["zigi-vm3"].lines
                if f"{VM1}." in line and f"> {VM3}.80:" in line and "Flags [S]" in line]
        assert syns, f"the SYN never reached zigi-vm3:\n{caps['zigi-vm3'].text()}"
        # The entry back: replies leave again.
        entry(ec2, acl, "egress", 100, "allow", (1024, 65535), "10.0.0.0/24")
        wait_connects(lab, "zigi-vm1", VM3, 80, True)

        # Within a subnet no ACL applies: deny-everything on 10.0.0.0/24 cuts zigi-vm1 from
        # zigi-vm3 (another subnet) but not from zigi-vm2 (other host) or zigi-vm4 (same host).
        deny_all = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
        created.append(deny_all)
        associate(ec2, subnet0, deny_all)
        wait_connects(lab, "zigi-vm1", VM3, 80, False)
        assert lab.ping("zigi-vm1", VM2, count=2, wait=1).ok, "same subnet, other host"
        assert lab.ping("zigi-vm1", VM4, count=2, wait=1).ok, "same subnet, same host"
        servers.append(Server(lab, "zigi-vm2", 702))
        assert connects(lab, "zigi-vm1", VM2, 702)
    finally:
        for srv in servers:
            srv.stop()
        for subnet, old in ((subnet0, old0), (subnet1, old1)):
            try:
                associate(ec2, subnet, old)
            except Exception as err:  # keep restoring the rest
                print(f"restoring {subnet}'s ACL: {err}")
        for acl in created:
            try:
                ec2.delete_network_acl(NetworkAclId=acl)
            except Exception as err:
                print(f"deleting {acl}: {err}")
    wait_until(lambda: lab.ping("zigi-vm1", VM3, wait=1).ok, 15, what="zigi-vm1 -> zigi-vm3")
