"""Hosts in availability zones: `softvpc server --register-host NAME=IP@ZONE` (the agents send
the same through RegisterHost, `softvpc agent --availability-zone`) puts a host in a zone, by
name or zone id; DescribeHosts shows it and filters on it; a zone outside the region is refused
at start-up."""

import subprocess

import pytest

from conftest import BIN, Server, free_port

HOSTS = {"zh-a": "198.18.0.41", "zh-b": "198.18.0.42@us-east-1b", "zh-f": "198.18.0.43@use1-az6"}


@pytest.fixture(scope="module")
def srv(workdir):
    s = Server(workdir / "host-zones", hosts=HOSTS).start()
    yield s
    s.stop()


def test_hosts_show_their_zone(srv):
    c = srv.client()
    zones = sorted(h["AvailabilityZone"] for h in c.describe_hosts()["Hosts"])
    assert zones == ["us-east-1a", "us-east-1b", "us-east-1f"]
    got = c.describe_hosts(Filter=[{"Name": "availability-zone", "Values": ["us-east-1b", "us-east-1f"]}])
    assert sorted(h["AvailabilityZone"] for h in got["Hosts"]) == ["us-east-1b", "us-east-1f"]


def test_a_zone_outside_the_region_is_refused(workdir):
    p = subprocess.run(
        [BIN, "server", "--data-dir", str(workdir / "bad-zone"), "--listen", f"127.0.0.1:{free_port()}",
         "--mapping-listen", f"127.0.0.1:{free_port()}", "--no-default-vpc",
         "--register-host", "zx=198.18.0.44@us-west-2a"],
        capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "us-west-2a" in p.stderr and "us-east-1a" in p.stderr, p.stderr
