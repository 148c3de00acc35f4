"""DHCP for instances (issue 11): every lab instance's eth0 is configured by its own running
DHCP client (busybox's udhcpc, started by the agent: address, mask, router, MTU 9001 and the
instance's /etc/resolv.conf); a change of the VPC's DHCP option set through the API (domain
name, DNS and NTP servers) reaches the instance at its next renewal. A second udhcpc run by hand gets exactly the ENI's address and
AWS's options from the VPC router on its host; malformed DHCP is dropped and counted; a RELEASE
is absorbed. DHCP never crosses the underlay."""

import os
import re
import signal
import stat
import struct
import time
import uuid
from pathlib import Path

from e2e_harness import STATE_DIR, WORK_DIR, metric_sum, run, wait_until
from frames import ip_bytes, mac_bytes, udp_frame

# udhcpc runs this script with the lease in its environment; it only records it (the instance's
# own client has already configured eth0, with the same address).
SCRIPT = """#!/bin/sh
if [ "$1" = bound ] || [ "$1" = renew ]; then
  env > "$OUT"
fi
exit 0
"""


def udhcpc(lab, name, out, *extra):
    script = WORK_DIR / "udhcpc-record.sh"
    script.write_text(SCRIPT)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    proc = lab.exec(name, "env", f"OUT={out}", "udhcpc", "-i", "eth0", "-f", "-q", "-n",
                    "-t", "3", "-T", "1", "-O", "mtu", "-s", str(script), *extra, timeout=30)
    assert proc.returncode == 0, f"udhcpc failed:\n{proc.stdout}\n{proc.stderr}"
    env = {}
    for line in out.read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    return env, proc


def frames(lab, host, path):
    return metric_sum(lab.metrics(host), "softvpc_frames_total", path=path)


def test_udhcpc_gets_the_enis_address_and_aws_options(lab):
    before = frames(lab, "host-2", "dhcp_replies")
    underlay_before = frames(lab, "host-2", "to_underlay")
    out = WORK_DIR / "lease-vm3.env"
    env, _ = udhcpc(lab, "zigi-vm3", out)
    assert env["ip"] == "10.0.1.20"
    assert env["subnet"] == "255.255.255.0"
    assert env["router"] == "10.0.1.1"
    assert env["serverid"] == "10.0.1.1"
    assert env["dns"].split() == ["10.0.0.2"]          # the VPC's base + 2
    assert env["domain"] == "ec2.internal"              # us-east-1
    assert env["hostname"] == "ip-10-0-1-20"
    assert env["broadcast"] == "10.0.1.255"
    assert env["mtu"] == "9001"              # AWS's jumbo frames
    assert env["lease"] == "3600"
    # DISCOVER -> OFFER, REQUEST -> ACK: two answers from host-2's router (more if an instance's
    # own client renews meanwhile, at T1 of its one-hour lease), none via the underlay.
    assert frames(lab, "host-2", "dhcp_replies") - before >= 2
    assert frames(lab, "host-2", "to_underlay") == underlay_before


def test_asking_for_another_address_still_gets_the_enis(lab):
    out = WORK_DIR / "lease-vm1.env"
    env, _ = udhcpc(lab, "zigi-vm1", out, "-r", "10.0.0.99")
    assert env["ip"] == "10.0.0.148"
    # Same address in the other VPC, its own router.
    env, _ = udhcpc(lab, "other-vm1", WORK_DIR / "lease-other1.env")
    assert env["ip"] == "10.0.0.148" and env["router"] == "10.0.0.1"


def dhcp_message(msg_type, mac, ciaddr="0.0.0.0", server=None):
    """A BOOTREQUEST (RFC 2131 figure 1) with option 53 and optionally 54."""
    fixed = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, 0x5EED, 0, 0,
                        ip_bytes(ciaddr), bytes(4), bytes(4), bytes(4),
                        mac_bytes(mac) + bytes(10), bytes(64), bytes(128))
    opts = bytes([53, 1, msg_type])
    if server:
        opts += bytes([54, 4]) + ip_bytes(server)
    return fixed + bytes([99, 130, 83, 99]) + opts + bytes([255])


def test_release_and_decline_are_absorbed(lab, macs):
    # busybox's udhcpc -R does not send its RELEASE when it quits at once (-q), so the RELEASE
    # and DECLINE are built here (RFC 2131 layouts) and sent from the instance's eth0.
    mac = macs["zigi-vm4"]
    vni = lab.vni(lab.instance("zigi-vm4")["vpc_id"])
    router = "0a:56:50:" + ":".join(f"{(vni >> s) & 0xFF:02x}" for s in (16, 8, 0))
    before = frames(lab, "host-1", "dhcp_absorbed")
    replies = frames(lab, "host-1", "dhcp_replies")
    release = udp_frame(mac, router, "10.0.0.30", "10.0.0.1",
                        dhcp_message(7, mac, "10.0.0.30", server="10.0.0.1"), sport=68, dport=67)
    decline = udp_frame(mac, "ff:ff:ff:ff:ff:ff", "0.0.0.0", "255.255.255.255",
                        dhcp_message(4, mac), sport=68, dport=67)
    lab.send_frames("zigi-vm4", [release, decline])
    wait_until(lambda: frames(lab, "host-1", "dhcp_absorbed") - before == 2, 5,
               what="RELEASE and DECLINE absorbed")
    assert frames(lab, "host-1", "dhcp_replies") == replies
    # The instance keeps its address (the agent's, which DHCP confirmed).
    assert lab.ping("zigi-vm4", "10.0.0.148").ok


def test_malformed_dhcp_is_dropped_and_counted(lab, macs):
    mac = macs["zigi-vm1"]
    before = lab.drops("host-1", "dhcp_invalid")
    bad = [
        b"not a dhcp message",
        dhcp_message(1, macs["zigi-vm4"]),            # another MAC in chaddr
        dhcp_message(2, mac),                         # an OFFER: a rogue server
        dhcp_message(1, mac)[:200],                   # cut short
    ]
    lab.send_frames("zigi-vm1", [udp_frame(mac, "ff:ff:ff:ff:ff:ff", "0.0.0.0", "255.255.255.255",
                                           b, sport=68, dport=67) for b in bad])
    wait_until(lambda: lab.drops("host-1", "dhcp_invalid") - before == len(bad), 5,
               what="malformed DHCP counted")
    # The router still answers a real client afterwards.
    env, _ = udhcpc(lab, "zigi-vm1", WORK_DIR / "lease-vm1b.env")
    assert env["ip"] == "10.0.0.148"


def instance_client(lab, name):
    """The pid of the instance's own DHCP client (the one the agent started): exactly one udhcpc
    on eth0 in the foreground, not a one-shot (-q) run of a test."""
    pids = run(["ip", "netns", "pids", lab.netns(name)], check=True).stdout.split()
    found = []
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"udhcpc") for a in argv) and b"-q" not in argv and b"-f" in argv:
            found.append(int(pid))
    assert len(found) == 1, f"DHCP clients in {name}: {found} (of {pids})"
    return found[0]


def resolv_conf(lab, name):
    """/etc/resolv.conf as commands in the instance see it (the namespace's own file)."""
    return lab.exec(name, "cat", "/etc/resolv.conf", check=True).stdout


def resolver_of(text):
    search = [line.split()[1:] for line in text.splitlines() if line.startswith("search ")]
    servers = [line.split()[1] for line in text.splitlines() if line.startswith("nameserver ")]
    return (search[0] if search else []), servers


def test_every_instance_is_configured_by_its_own_running_dhcp_client(lab):
    # zigi-vm3: 10.0.1.20 in 10.0.1.0/24 of zigi-vpc1 (10.0.0.0/16), on host-2.
    pid = instance_client(lab, "zigi-vm3")
    addr = lab.exec("zigi-vm3", "ip", "-o", "-4", "addr", "show", "dev", "eth0", check=True).stdout
    assert re.search(r"inet 10\.0\.1\.20/24 brd 10\.0\.1\.255 ", addr), addr
    route = lab.exec("zigi-vm3", "ip", "-4", "route", "show", "default", check=True).stdout
    assert route.split() == ["default", "via", "10.0.1.1", "dev", "eth0", "src", "10.0.1.20"], route
    link = lab.exec("zigi-vm3", "ip", "-o", "link", "show", "dev", "eth0", check=True).stdout
    assert " mtu 9001 " in link, link            # option 26; the interface came up at 1500
    text = resolv_conf(lab, "zigi-vm3")
    assert "udhcpc bound" in text or "udhcpc renew" in text, text
    assert resolver_of(text) == (["ec2.internal"], ["10.0.0.2"]), text
    # The host's resolver file is not the instance's.
    assert Path("/etc/resolv.conf").read_text() != text
    # Every instance of the lab (agent hosts) has its client; the other VPC's gets its own +2.
    for name in ("zigi-vm1", "zigi-vm2", "zigi-vm4", "other-vm1"):
        instance_client(lab, name)
    assert resolver_of(resolv_conf(lab, "other-vm1")) == (["ec2.internal"], ["10.0.0.2"])
    # The resolver file is in effect: glibc's resolver (search domain + the VPC's +2) finds a
    # private name by its short form.
    hosts = lab.exec("zigi-vm3", "getent", "hosts", "ip-10-0-0-185", timeout=30)
    assert hosts.returncode == 0 and hosts.stdout.split()[0] == "10.0.0.185", hosts
    assert instance_client(lab, "zigi-vm3") == pid


def lease_log(lab, name):
    """The events the instance's client applied: its script's log in the agent's state dir."""
    inst = lab.instance(name)
    path = STATE_DIR / "agents" / inst["host"] / "dhcp" / f"{lab.netns(name)}.lease.log"
    return path.read_text().splitlines() if path.exists() else []


def lease_vars(lab, name):
    """The variables of the last lease the instance's client applied (its script's copy)."""
    inst = lab.instance(name)
    path = STATE_DIR / "agents" / inst["host"] / "dhcp" / f"{lab.netns(name)}.lease"
    return dict(line.partition("=")[::2] for line in path.read_text().splitlines())


def renew(lab, name):
    """A renewal by the instance's client (SIGUSR1: udhcpc sends its REQUEST now rather than at
    T1, half the one-hour lease); returns the resolver file once the client has applied the ACK
    (its script logged one more renew event)."""
    pid = instance_client(lab, name)
    renewals = sum(" renew " in line for line in lease_log(lab, name))
    os.kill(pid, signal.SIGUSR1)
    wait_until(lambda: sum(" renew " in line for line in lease_log(lab, name)) > renewals, 30,
               what=f"a DHCP renewal applied in {name}")
    assert instance_client(lab, name) == pid
    text = resolv_conf(lab, name)
    assert "udhcpc renew" in text, text
    return text


def test_a_changed_dhcp_option_set_is_seen_at_the_next_renewal(lab):
    name = "zigi-vm1"
    vpc = lab.instance(name)["vpc_id"]
    original = lab.aws("describe-vpcs", "--vpc-ids", vpc)["Vpcs"][0]["DhcpOptionsId"]
    domain = f"svt-{uuid.uuid4().hex[:8]}.example"
    # The renewal itself: same address and router, the lease applied again.
    text = renew(lab, name)
    assert resolver_of(text) == (["ec2.internal"], ["10.0.0.2"]), text
    assert lab.ping(name, "10.0.0.185").ok
    created = lab.aws("create-dhcp-options", "--dhcp-configurations",
                      f"Key=domain-name,Values={domain}",
                      "Key=domain-name-servers,Values=10.0.0.2,169.254.169.253",
                      "Key=ntp-servers,Values=169.254.169.123,10.0.0.123")
    dopt = created["DhcpOptions"]["DhcpOptionsId"]
    associated = False
    try:
        lab.aws("associate-dhcp-options", "--dhcp-options-id", dopt, "--vpc-id", vpc)
        associated = True
        # The option set reaches the host's router within the propagation time: renew until
        # the instance's resolver file shows it (each renewal is a real REQUEST/ACK).
        deadline = time.monotonic() + 60
        while True:
            text = renew(lab, name)
            if resolver_of(text) == ([domain], ["10.0.0.2", "169.254.169.253"]):
                break
            assert time.monotonic() < deadline, f"option set {dopt} not seen after renewals:\n{text}"
        # The NTP servers came with it (option 42, as the client's lease shows them).
        assert lease_vars(lab, name).get("ntpsrv", "").split() == ["169.254.169.123",
                                                                   "10.0.0.123"]
        # Address and route are the ENI's still, and the new resolver works.
        addr = lab.exec(name, "ip", "-o", "-4", "addr", "show", "dev", "eth0", check=True).stdout
        assert "inet 10.0.0.148/24 " in addr, addr
        hosts = lab.exec(name, "getent", "hosts", "ip-10-0-0-185.ec2.internal", timeout=30)
        assert hosts.returncode == 0 and hosts.stdout.split()[0] == "10.0.0.185", hosts
        # The other VPC's instances keep their set.
        assert resolver_of(resolv_conf(lab, "other-vm1")) == (["ec2.internal"], ["10.0.0.2"])
    finally:
        if associated:
            lab.aws("associate-dhcp-options", "--dhcp-options-id", original, "--vpc-id", vpc)
    deadline = time.monotonic() + 60
    while resolver_of(renew(lab, name)) != (["ec2.internal"], ["10.0.0.2"]):
        assert time.monotonic() < deadline, "the default option set did not come back"
    assert "ntpsrv" not in lease_vars(lab, name)    # AWS's default set names none
    lab.aws("delete-dhcp-options", "--dhcp-options-id", dopt, check=False)
