"""The kernel fast path (issue 14), in whichever mode the suite runs.

`SOFTVPC_FAST_PATH=on` (read by `softvpc lab up`, passed to every agent as `--fast-path on`) runs
the suite with the fast path; `scripts/test.sh` runs the whole suite with it off and again with
it on. In both modes a TCP stream between zigi-vm1 (host-1) and
zigi-vm2 (host-2) must move its data. With the fast path on the agents must have installed its
flows and the kernel must have carried most of its packets (folded back into the engines'
counters), without netlink errors; with it off no fast-path metric exists. With it on, datagrams
sent straight to a fast-path device's own port (a forger skipping the engine) never reach the
instance and are counted as `softvpc_fast_path_forged_total`. In both modes the VPC's flow log
counts every packet of a ping flow exactly, whether the engine or the kernel carried it (the
kernel's counts are folded into the flow log records). No packet is lost while a flow moves from
the engine to the kernel: every echo of a fast ping series that starts on a new flow (its first
packets through the engine, the rest through the kernel once installed) is answered, and with
the fast path on the kernel-carried replies are decapsulated by the flow's program on the
underlay device, not by the port's VXLAN device.
"""

import json
import os
import re
import subprocess

import pytest

from e2e_harness import STATE_DIR, metric_sum, wait_until
from probes import eni_of
from frames import udp_frame, vxlan

FAST = os.environ.get("SOFTVPC_FAST_PATH", "on") == "on"
# The agents' decapsulating programs (on unless SOFTVPC_FAST_PATH_DECAP=off, for comparisons).
DECAP = FAST and os.environ.get("SOFTVPC_FAST_PATH_DECAP", "on") != "off"
VM1, VM2 = "10.0.0.148", "10.0.0.185"


def _iperf(lab, seconds=2):
    server = subprocess.Popen(["ip", "netns", "exec", lab.netns("zigi-vm2"), "iperf3", "-s", "-1",
                               "-B", VM2], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: ":5201 " in lab.exec("zigi-vm2", "ss", "-ltn").stdout, 10,
                   interval=0.1, what="iperf3 to listen")
        proc = lab.exec("zigi-vm1", "iperf3", "-c", VM2, "-t", str(seconds), "-J", timeout=40)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout)["end"]["sum_received"]
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=5)


def _fast(lab, host, name):
    """One fast-path counter of `host`."""
    return metric_sum(lab.metrics(host), name)


def test_a_tcp_stream_runs_in_the_mode_the_suite_asked_for(lab):
    before = {h: lab.metrics(h) for h in ("host-1", "host-2")}
    received = _iperf(lab)
    assert received["bytes"] > 10 * 1024 * 1024, received
    for host in ("host-1", "host-2"):
        m = lab.metrics(host)
        names = {n for (n, _) in m}
        if not FAST:
            assert "softvpc_fast_path_flows" not in names, f"{host}: fast path metrics while off"
            continue
        errors, why = lab.fast_path_errors(host)
        assert errors == 0, f"{host}: {errors} fast path errors\n{why}"
        assert metric_sum(m, "softvpc_fast_path_installs_total") >= 2, host
        # The stream's segments went through the kernel (read back every 0.5 s), and are
        # counted as the engine's own forwarded frames (folded by the data path).
        def folded(host=host):
            m = lab.metrics(host)
            carried = (metric_sum(m, "softvpc_fast_path_packets_total")
                       - metric_sum(before[host], "softvpc_fast_path_packets_total"))
            grew = sum(metric_sum(m, "softvpc_frames_total", path=p)
                       - metric_sum(before[host], "softvpc_frames_total", path=p)
                       for p in ("to_underlay", "to_port_decap"))
            return carried > 1000 and grew >= carried

        wait_until(folded, 5, what=f"{host}: kernel-carried packets folded into the engine")


def test_datagrams_to_a_fast_path_devices_own_port_are_dropped_and_counted(lab, macs):
    if not FAST:
        pytest.skip("the fast path is off in this run (SOFTVPC_FAST_PATH=on runs it)")
    _iperf(lab, seconds=1)  # zigi-vm2's devices exist once a flow of it was installed
    wait_until(lambda: "fpe" in lab.exec("zigi-vm2", "ip", "-o", "link", "show").stdout, 5,
               what="zigi-vm2's fast-path devices")
    h2 = lab.host("host-2")["underlay_ip"]
    vni = lab.vni(lab.instance("zigi-vm2")["vpc_id"])
    needle = b"fastpath-forged!" * 2
    inner = udp_frame(macs["zigi-vm1"], macs["zigi-vm2"], VM1, VM2, needle, sport=40000,
                      dport=5201)
    forged = _fast(lab, "host-2", "softvpc_fast_path_forged_total")
    # zigi-vm2's egress device fpe<P> listens on the host's 47000 + P % 2000.
    links = lab.exec("zigi-vm2", "ip", "-o", "link", "show", check=True).stdout
    (p,) = re.findall(r"\bfpe(\d+)\b", links)
    with lab.capture("zigi-vm2") as caps:
        lab.send_udp(lab.netns("kvtep"), h2, 47000 + int(p) % 2000, [vxlan(vni, inner)] * 3)
    assert not caps["zigi-vm2"].udp_containing(needle), "a forged datagram reached the instance"
    wait_until(lambda: _fast(lab, "host-2", "softvpc_fast_path_forged_total") >= forged + 3, 5,
               what="forged datagrams counted")


def _rx_packets(lab, vm, prefix):
    """Received packets of `vm`'s link named `prefix`<digits> (the port's fast-path devices)."""
    links = json.loads(lab.exec(vm, "ip", "-j", "-s", "link", "show", check=True).stdout)
    (link,) = [x for x in links if re.fullmatch(prefix + r"\d+", x["ifname"])]
    return link["stats64"]["rx"]["packets"]


def test_no_ping_is_lost_while_its_flow_moves_to_the_kernel(lab):
    """N echoes, N replies, across the installation of the flow (a new ICMP identifier per ping
    run: a new flow each time, so each run crosses an installation with the fast path on). With
    the fast path on, the replies the kernel carries to zigi-vm1 are decapsulated by the flow's
    program on host-1's underlay device and arrive through the `fpdi<P>` veth, never through the
    port's VXLAN device `fpi<P>` (which only GSO super-frames take)."""
    count = 100
    if DECAP:
        lab.ping("zigi-vm1", VM2, count=3, interval=0.02, wait=2)  # the devices exist
        wait_until(lambda: "fpdi" in lab.exec("zigi-vm1", "ip", "-o", "link", "show").stdout, 10,
                   what="zigi-vm1's fast-path devices")
        decap0, vxlan0 = _rx_packets(lab, "zigi-vm1", "fpdi"), _rx_packets(lab, "zigi-vm1", "fpi")
    for attempt in range(3):
        installs = _fast(lab, "host-1", "softvpc_fast_path_installs_total")
        carried = _fast(lab, "host-1", "softvpc_fast_path_packets_total")
        ping = lab.ping("zigi-vm1", VM2, count=count, interval=0.02, wait=2)
        assert ping.received == count, f"run {attempt}: {ping}"
        if FAST:
            # The flow was installed during the run and the kernel carried part of it.
            wait_until(lambda i=installs: _fast(lab, "host-1", "softvpc_fast_path_installs_total")
                       > i, 10, what=f"run {attempt}: the echo flow installed")
            wait_until(lambda c=carried: _fast(lab, "host-1", "softvpc_fast_path_packets_total")
                       > c, 5, what="the kernel to carry some of the echoes")
    if DECAP:
        decap = _rx_packets(lab, "zigi-vm1", "fpdi") - decap0
        vxlan = _rx_packets(lab, "zigi-vm1", "fpi") - vxlan0
        assert decap >= count, f"replies decapsulated by the program: {decap}"
        assert vxlan == 0, f"replies through the VXLAN device: {vxlan}"


def _icmp_records(path, eni):
    """(pkt src, pkt dst) -> [packets, bytes] of `eni`'s ICMP ACCEPT records (default format)."""
    out = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        f = line.split(" ")
        if f[2] != eni or f[13] != "OK" or f[7] != "1" or f[12] != "ACCEPT":
            continue
        e = out.setdefault((f[3], f[4]), [0, 0])
        e[0] += int(f[8])
        e[1] += int(f[9])
    return out


def test_flow_logs_count_the_packets_the_kernel_carried(lab):
    count = 40
    vpc_id = lab.instance("zigi-vm1")["vpc_id"]
    eni1 = eni_of(lab, vpc_id, VM1)["NetworkInterfaceId"]
    eni2 = eni_of(lab, vpc_id, VM2)["NetworkInterfaceId"]
    bucket = "svt-fast-path-flow-logs"
    fl = lab.aws("create-flow-logs", "--resource-type", "VPC", "--resource-ids", vpc_id,
                 "--traffic-type", "ALL", "--log-destination-type", "s3",
                 "--log-destination", f"arn:aws:s3:::{bucket}",
                 "--max-aggregation-interval", "60")["FlowLogIds"][0]
    try:
        path = STATE_DIR / "server" / "flow-logs" / bucket / f"{fl}.log"
        # The agents log both ENIs once their first (NODATA) lines are written.
        wait_until(lambda: path.exists() and eni1 in path.read_text() and eni2 in path.read_text(),
                   30, interval=0.5, what="the flow log's first records")
        carried = _fast(lab, "host-1", "softvpc_fast_path_packets_total")
        ping = lab.ping("zigi-vm1", VM2, count=count, interval=0.05, wait=2)
        assert ping.received == count, ping
        if FAST:
            # Most echoes went through the kernel (its counters are read every 0.5 s).
            wait_until(lambda: _fast(lab, "host-1", "softvpc_fast_path_packets_total")
                       >= carried + count, 5, what="the kernel to carry the pings")
        # 84 IPv4 bytes per packet (20 + 8 + 56); each ENI logs both directions.
        want = {(VM1, VM2): [count, 84 * count], (VM2, VM1): [count, 84 * count]}
        for eni in (eni1, eni2):
            wait_until(lambda eni=eni: _icmp_records(path, eni) == want, 40, interval=1.0,
                       what=f"{eni}'s records of the {count} pings")
    finally:
        lab.aws("delete-flow-logs", "--flow-log-ids", fl, check=False)
