"""DHCP for instances (issue 11): a real DHCP client (busybox's udhcpc) inside an instance
namespace gets exactly its ENI's address and AWS's options from the VPC router on its host;
malformed DHCP is dropped and counted; a RELEASE is absorbed. DHCP never crosses the underlay."""

import stat

import struct

from e2e_harness import WORK_DIR, metric_sum, wait_until
from frames import ip_bytes, mac_bytes, udp_frame

# udhcpc runs this script with the lease in its environment; it only records it (the agent has
# already configured eth0, with the same address).
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
    # DISCOVER -> OFFER, REQUEST -> ACK: two answers from host-2's router, none via the underlay.
    assert frames(lab, "host-2", "dhcp_replies") - before == 2
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
