"""Drops outside the engine are visible in the agent's metrics (issue 14).

Two queues sit between the kernel and the agent's data-path thread: each port's TAP queue (what
the instance sends waits there until the agent reads it; when it is full the kernel drops and
counts the frame as the interface's tx_dropped, which only `ip -s link` inside the instance
shows) and the VXLAN socket's receive buffer. No engine counter can see either. The test stops
an agent (SIGSTOP, so nothing is read), overfills the queue, lets it go on (SIGCONT) and checks
that `/metrics` reports the kernel's own counts: `softvpc_port_tx_dropped_total` equal to the
instance's `ip -s link` and `softvpc_underlay_socket_drops_total`.
"""

import contextlib
import json
import os
import signal
import sys

from e2e_harness import metric_sum, wait_until

# The TAP's queue holds txqueuelen frames (1000); the socket's buffer 8 MB.
FRAMES = 3000
DATAGRAMS = 20000


@contextlib.contextmanager
def agent_stopped(lab, host):
    pid = lab.host(host)["pid"]
    assert pid and lab.agent_alive(host), f"{host}'s agent is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
    # Answering again (its data path drained the queues).
    wait_until(lambda: lab.metrics(host), 15, what=f"{host}'s agent to answer")


def instance_link(lab, name):
    out = lab.exec(name, "ip", "-s", "-j", "link", "show", "eth0", check=True).stdout
    return json.loads(out)[0]


def instance_tx_dropped(lab, name):
    return instance_link(lab, name)["stats64"]["tx"]["dropped"]


def test_tap_queue_drops_are_exported_as_the_instance_sees_them(lab):
    lab.wait_ping("zigi-vm1", "10.0.0.185")  # ARP resolved: the datagrams go straight out
    iid = lab.instance("zigi-vm1")["instance_id"]
    series = dict(name="softvpc_port_tx_dropped_total", instance=iid, dev="eth0")
    before = metric_sum(lab.metrics("host-1"), **series)
    assert before == instance_tx_dropped(lab, "zigi-vm1")
    send = ("import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"for i in range({FRAMES}):\n"
            "    s.sendto(b'svt-tap-queue', ('10.0.0.185', 9))\n")
    with agent_stopped(lab, "host-1"):
        lab.exec("zigi-vm1", sys.executable, "-c", send, check=True)
        seen = instance_tx_dropped(lab, "zigi-vm1")
    queue = instance_link(lab, "zigi-vm1")["txqlen"]
    # All but what the queue holds (give or take a few frames in flight).
    assert abs((seen - before) - (FRAMES - queue)) <= 50, \
        f"the TAP dropped {seen - before} of {FRAMES} frames with a queue of {queue}"
    after = metric_sum(lab.metrics("host-1"), **series)
    assert after == instance_tx_dropped(lab, "zigi-vm1") == seen
    # The engine saw none of those drops.
    text = lab.agent_get("host-1", "/metrics")
    assert "# TYPE softvpc_port_tx_dropped_total counter" in text


def test_underlay_receive_buffer_drops_are_exported(lab):
    host = lab.host("host-2")
    name = "softvpc_underlay_socket_drops_total"
    before = metric_sum(lab.metrics("host-2"), name)
    # VXLAN-shaped datagrams from the fabric (not a registered host: the engine drops whatever
    # it gets to read, as vxlan_unknown_source).
    send = ("import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "d = b'\\x08' + bytes(1399)\n"
            f"for i in range({DATAGRAMS}):\n"
            f"    s.sendto(d, ('{host['underlay_ip']}', 4789))\n")
    with agent_stopped(lab, "host-2"):
        lab.netns_exec(lab.netns("fabric"), sys.executable, "-c", send, check=True, timeout=60)
    dropped = metric_sum(lab.metrics("host-2"), name) - before
    # 20,000 x 1400 bytes is 28 MB against a buffer of 8 MB.
    assert DATAGRAMS // 4 <= dropped <= DATAGRAMS, f"{dropped} drops counted"
