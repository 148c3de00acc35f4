"""Ansible's amazon.aws collection (from PyPI's `ansible` package) as a client nobody here wrote:
the playbook tests/api/ansible/public_private.yml builds AWS's public/private VPC design (VPC,
public and private subnets, internet gateway, NAT gateway with its Elastic IP, route tables, DHCP
options, a network ACL, security groups, a key pair, ec2_instance in both tiers) against a
server of its own, reached only through the modules' endpoint settings. Run twice, the second
run changes nothing; torn down, nothing is left. What it built is checked with boto3."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Server

PLAYBOOK = Path(__file__).resolve().parent / "ansible" / "public_private.yml"


@pytest.fixture(scope="module")
def srv(workdir):
    s = Server(workdir / "ansible").start()
    yield s
    s.stop()


def playbook(srv, workdir, state):
    """Runs the playbook with `state`; returns (per-task results, stats for localhost)."""
    exe = shutil.which("ansible-playbook")
    assert exe, "ansible-playbook is missing: scripts/test-deps.sh installs the ansible package"
    ak, sk = srv.credentials()
    home = workdir / "ansible-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_HOME=str(home),
               ANSIBLE_LOCAL_TEMP=str(home / "tmp"), ANSIBLE_LOCALHOST_WARNING="False",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="False", ANSIBLE_NOCOLOR="1",
               # Credentials and endpoint come from the playbook's module defaults only.
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    p = subprocess.run(
        [exe, str(PLAYBOOK), "-e", f"state={state}", "-e", f"endpoint={srv.endpoint}",
         "-e", f"access_key={ak}", "-e", f"secret_key={sk}",
         "-e", f"ansible_python_interpreter={sys.executable}"],
        capture_output=True, text=True, env=env, timeout=600)
    try:
        out = json.loads(p.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"ansible-playbook said: {p.stdout[-3000:]}\n{p.stderr[-3000:]}") from None
    tasks = {t["task"]["name"]: t["hosts"]["localhost"]
             for play in out["plays"] for t in play["tasks"] if "localhost" in t["hosts"]}
    failed = {n: r.get("msg") for n, r in tasks.items() if r.get("failed")}
    assert p.returncode == 0 and not failed, (failed, p.stderr[-3000:])
    return tasks, out["stats"]["localhost"]


def test_public_private_design_is_idempotent_and_torn_down(srv, workdir):
    c = srv.client()
    tasks, stats = playbook(srv, workdir, "present")
    assert stats["failures"] == 0 and stats["changed"] == 14, stats
    vpc_id = tasks["VPC"]["vpc"]["id"]
    pub = tasks["Public subnet"]["subnet"]["id"]
    priv = tasks["Private subnet"]["subnet"]["id"]

    # What it built, seen through boto3.
    subnets = {s["SubnetId"]: s for s in c.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]}
    assert set(subnets) == {pub, priv} and subnets[pub]["MapPublicIpOnLaunch"] is True
    nat = c.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["NatGateways"]
    assert [(n["SubnetId"], n["State"]) for n in nat] == [(pub, "available")]
    tables = {}
    for rt in c.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["RouteTables"]:
        for a in rt["Associations"]:
            if a.get("SubnetId"):
                tables[a["SubnetId"]] = {r["DestinationCidrBlock"]: r.get("GatewayId") or r.get("NatGatewayId")
                                         for r in rt["Routes"]}
    assert tables[pub]["0.0.0.0/0"].startswith("igw-")
    assert tables[priv]["0.0.0.0/0"] == nat[0]["NatGatewayId"]
    acl = c.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [priv]}])["NetworkAcls"]
    assert not acl[0]["IsDefault"] and {e["RuleNumber"] for e in acl[0]["Entries"]} == {100, 110, 32767}
    vpc = c.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
    dopts = c.describe_dhcp_options(DhcpOptionsIds=[vpc["DhcpOptionsId"]])["DhcpOptions"][0]
    assert {"Key": "domain-name", "Values": [{"Value": "demo.internal"}]} in dopts["DhcpConfigurations"]
    live = [i for r in c.describe_instances(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]},
        {"Name": "instance-state-name", "Values": ["running"]}])["Reservations"] for i in r["Instances"]]
    by_subnet = {}
    for i in live:
        by_subnet.setdefault(i["SubnetId"], []).append(i)
        assert i["KeyName"] == "ansible-demo-key"
    assert len(by_subnet[pub]) == 1 and by_subnet[pub][0]["PublicIpAddress"].startswith("203.0.113.")
    web_sg = tasks["Web security group"]["group_id"]
    assert [g["GroupId"] for g in by_subnet[pub][0]["SecurityGroups"]] == [web_sg]
    assert len(by_subnet[priv]) == 2 and all("PublicIpAddress" not in i for i in by_subnet[priv])
    app = c.describe_security_groups(GroupIds=[tasks["App security group (SSH from the web tier)"]["group_id"]])
    (perm,) = app["SecurityGroups"][0]["IpPermissions"]
    assert (perm["FromPort"], perm["UserIdGroupPairs"][0]["GroupId"]) == (22, web_sg)

    # Again: nothing to change.
    tasks, stats = playbook(srv, workdir, "present")
    changed = [n for n, r in tasks.items() if r.get("changed")]
    assert stats["changed"] == 0 and not changed, changed

    # Torn down: nothing of it is left, and a second teardown has nothing to do.
    tasks, stats = playbook(srv, workdir, "absent")
    assert stats["changed"] >= 9, stats
    assert c.describe_vpcs()["Vpcs"] == []
    assert c.describe_dhcp_options()["DhcpOptions"] == []
    assert c.describe_key_pairs()["KeyPairs"] == []
    assert c.describe_addresses()["Addresses"] == []
    assert c.describe_network_interfaces()["NetworkInterfaces"] == []
    assert c.describe_volumes()["Volumes"] == []
    assert {i["State"]["Name"] for r in c.describe_instances()["Reservations"]
            for i in r["Instances"]} <= {"terminated"}
    assert {n["State"] for n in c.describe_nat_gateways()["NatGateways"]} <= {"deleted"}
    tasks, stats = playbook(srv, workdir, "absent")
    assert stats["changed"] == 0, stats
