"""Scratch VPCs for the policy tests: VPCs, subnets, route tables and instances made through
boto3 (`Scratch.ec2`; one process, so the calls stay fast on a loaded machine) on the lab's
hosts, and all of it removed again (instances terminated and their namespaces gone, then
peerings, interfaces, subnets, tables and VPCs), whatever the test did.

    with Scratch(lab) as s:
        vpc = s.vpc("10.70.0.0/16")
        a = s.launch(s.subnet(vpc, "10.70.1.0/24"), "10.70.1.10", "host-1")
"""

import contextlib
import json

import boto3
import botocore.exceptions
from botocore.config import Config

from e2e_harness import PREFIX, WORK_DIR, Capture, netns_exists, run, wait_until


@contextlib.contextmanager
def capture(lab, iid, iface="eth0"):
    """tcpdump on an interface of an instance a test launched (Lab.capture takes lab names);
    yields the Capture, read back on exit."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    cap = Capture(f"{PREFIX}{iid}", iface, WORK_DIR / f"cap-{iid}.pcap", label=iid).start()
    try:
        yield cap
    finally:
        cap.stop()


class Scratch:
    def __init__(self, lab):
        self.lab = lab
        ak, sk = lab.credentials()
        self.ec2 = boto3.client("ec2", endpoint_url=lab.api_url, region_name="us-east-1",
                                aws_access_key_id=ak, aws_secret_access_key=sk,
                                config=Config(retries={"total_max_attempts": 1}))
        self.vpcs, self.subnets, self.tables, self.instances = [], [], [], []
        self.peerings, self.enis = [], []
        self._hosts = {}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.cleanup()
        except AssertionError as err:
            if exc_type is None:
                raise
            print(err)  # the test's own failure is the one to report
        return False

    # ---- making things
    def vpc(self, cidr):
        vpc = self.ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
        self.vpcs.append(vpc)
        return vpc

    def subnet(self, vpc, cidr):
        sub = self.ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"]
        self.subnets.append(sub)
        return sub

    def route_table(self, vpc, *subnets):
        """A new route table associated with `subnets`."""
        rtb = self.ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        self.tables.append(rtb)
        for subnet in subnets:
            self.ec2.associate_route_table(RouteTableId=rtb, SubnetId=subnet)
        return rtb

    def default_group(self, vpc):
        """The id of the VPC's default group."""
        (group,) = self.ec2.describe_security_groups(Filters=[
            {"Name": "vpc-id", "Values": [vpc]},
            {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
        return group["GroupId"]

    def open_default_group(self, vpc, cidr):
        """The VPC's default group admits all traffic from `cidr` too."""
        self.ec2.authorize_security_group_ingress(
            GroupId=self.default_group(vpc),
            IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": cidr}]}])

    def main_table(self, vpc):
        (rtb,) = self.ec2.describe_route_tables(Filters=[
            {"Name": "vpc-id", "Values": [vpc]},
            {"Name": "association.main", "Values": ["true"]}])["RouteTables"]
        return rtb["RouteTableId"]

    def route(self, rtb, cidr, **target):
        """CreateRoute: `target` is NetworkInterfaceId=... or VpcPeeringConnectionId=...."""
        self.ec2.create_route(RouteTableId=rtb, DestinationCidrBlock=cidr, **target)

    def route_states(self, rtb):
        (table,) = self.ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"]
        return {r.get("DestinationCidrBlock"): r["State"] for r in table["Routes"]}

    def eni(self, subnet, ip):
        """A network interface attached to nothing."""
        eni = self.ec2.create_network_interface(SubnetId=subnet, PrivateIpAddress=ip)
        self.enis.append(eni["NetworkInterface"]["NetworkInterfaceId"])
        return self.enis[-1]

    def peering(self, requester, accepter, accept=True):
        pcx = self.ec2.create_vpc_peering_connection(
            VpcId=requester, PeerVpcId=accepter)["VpcPeeringConnection"]
        pcx_id = pcx["VpcPeeringConnectionId"]
        self.peerings.append(pcx_id)
        if accept and pcx["Status"]["Code"] != "failed":
            self.ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx_id)
        return pcx_id

    def peering_status(self, pcx):
        (p,) = self.ec2.describe_vpc_peering_connections(
            VpcPeeringConnectionIds=[pcx])["VpcPeeringConnections"]
        return p["Status"]["Code"]

    def launch(self, subnet, ip, host):
        """An instance at `ip` in `subnet` on lab host `host`; returns its id once its namespace
        has the address."""
        if host not in self._hosts:
            self._hosts[host] = self.lab.host_id(host)
        out = self.ec2.run_instances(ImageId="ami-1", MinCount=1, MaxCount=1, SubnetId=subnet,
                                     PrivateIpAddress=ip,
                                     Placement={"HostId": self._hosts[host]})
        inst = out["Instances"][0]
        iid = inst["InstanceId"]
        self.instances.append(iid)
        netns = f"{PREFIX}{iid}"

        def ready():
            if not netns_exists(netns):
                return False
            addrs = run(["ip", "netns", "exec", netns, "ip", "-o", "-4", "addr"]).stdout
            return f"{ip}/" in addrs

        wait_until(ready, 60, what=f"instance {iid} ({ip}) on {host}")
        return iid

    def eni_of(self, iid):
        out = self.ec2.describe_instances(InstanceIds=[iid])
        inst = out["Reservations"][0]["Instances"][0]
        return inst["NetworkInterfaces"][0]["NetworkInterfaceId"]

    # ---- removing it all
    def cleanup(self):
        ec2, problems = self.ec2, []

        def attempt(call, **kwargs):
            try:
                call(**kwargs)
                return True
            except botocore.exceptions.ClientError as err:
                problems.append(f"{call.__name__}({kwargs}): {err}")
                return False

        if self.instances:
            attempt(ec2.terminate_instances, InstanceIds=self.instances)
            for iid in self.instances:
                try:
                    wait_until(lambda: not netns_exists(f"{PREFIX}{iid}"), 60,
                               what=f"namespace of {iid} to go")
                except AssertionError as err:
                    problems.append(str(err))
        for pcx in self.peerings:
            # (a failed one may refuse deletion; it carries nothing anyway)
            with contextlib.suppress(botocore.exceptions.ClientError):
                ec2.delete_vpc_peering_connection(VpcPeeringConnectionId=pcx)
        for eni in self.enis:
            with contextlib.suppress(botocore.exceptions.ClientError):
                ec2.delete_network_interface(NetworkInterfaceId=eni)

        def deleted(subnet):
            # An instance's interface may take a moment to go after its termination.
            try:
                ec2.delete_subnet(SubnetId=subnet)
                return True
            except botocore.exceptions.ClientError:
                return False

        for subnet in self.subnets:
            try:
                wait_until(lambda: deleted(subnet), 30, interval=0.5,
                           what=f"delete-subnet {subnet}")
            except AssertionError as err:
                problems.append(str(err))
        for rtb in self.tables:
            attempt(ec2.delete_route_table, RouteTableId=rtb)
        for vpc in self.vpcs:
            groups = ec2.describe_security_groups(
                Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
            for group in groups:
                if group["GroupName"] != "default":
                    attempt(ec2.delete_security_group, GroupId=group["GroupId"])
            acls = ec2.describe_network_acls(
                Filters=[{"Name": "vpc-id", "Values": [vpc]}])["NetworkAcls"]
            for acl in acls:
                if not acl["IsDefault"]:
                    attempt(ec2.delete_network_acl, NetworkAclId=acl["NetworkAclId"])
            attempt(ec2.delete_vpc, VpcId=vpc)
        if problems:
            raise AssertionError("scratch cleanup: " + json.dumps(problems, indent=1))
