"""Agent restart (issue 12): host-2's agent is killed with SIGKILL under a continuous ping and
started again, with the server up, and with the server down (the agent then forwards from the
mapping view its last run saved on disk until the server is back). Its instances are not re-created: each keeps its namespace (same inode), its eth0
(same interface index, MAC and address), because the TAPs are persistent and the new agent
takes them over (`softvpc_interfaces_adopted_total`). The pings resume; the forwarding gap (the
longest time between two answered echoes) is printed.
"""

import os
import re
import signal
import subprocess

from e2e_harness import _STARTED, WORK_DIR, metric_sum, wait_until

HOST = "host-2"
INSTANCES = ("zigi-vm2", "zigi-vm3")  # host-2's instances in zigi-vpc1
TARGET = "10.0.0.185"  # zigi-vm2, pinged from zigi-vm1 on host-1
INTERVAL = 0.05


def eth0(lab, name):
    """(ifindex, link line without counters, addresses) of the instance's eth0."""
    link = lab.exec(name, "ip", "-o", "link", "show", "dev", "eth0", check=True).stdout
    addr = lab.exec(name, "ip", "-o", "-4", "addr", "show", "dev", "eth0", check=True).stdout
    index = int(link.split(":", 1)[0])
    mac = re.search(r"link/ether (\S+)", link).group(1)
    addrs = sorted(re.findall(r"inet (\S+)", addr))
    return index, mac, addrs


def adopted_count(lab):
    """The agent's adopted-interfaces counter (0 while its endpoint does not answer yet)."""
    try:
        return metric_sum(lab.metrics(HOST), "softvpc_interfaces_adopted_total")
    except AssertionError:
        return 0


def test_agent_kill9_restart_keeps_instances(lab):
    before = {n: (os.stat(f"/run/netns/{lab.netns(n)}").st_ino, eth0(lab, n))
              for n in INSTANCES}
    log = WORK_DIR / "agent-restart-ping.txt"
    with open(log, "w") as f:
        pinger = subprocess.Popen(
            ["ip", "netns", "exec", lab.netns("zigi-vm1"), "ping", "-n", "-D", "-i",
             str(INTERVAL), "-W", "1", "-w", "120", TARGET],
            stdout=f, stderr=subprocess.STDOUT)
    _STARTED.append(pinger)

    def replies():
        return len(re.findall(r"bytes from", log.read_text()))

    stopped = False
    try:
        lab.wait_ping("zigi-vm4", "10.0.1.20", timeout=30)
        wait_until(lambda: replies() >= 20, 30, what="pings answered before the kill")
        lab.cli("stop", HOST, "--kill", check=True)
        stopped = True
        lab.cli("start", HOST, check=True)
        stopped = False
        # A new process: its counter starts at 0.
        wait_until(lambda: adopted_count(lab) >= len(INSTANCES), 60, interval=0.5,
                   what=f"{HOST}'s new agent to take over its instances")
        result = lab.wait_ping("zigi-vm3", "10.0.0.30", timeout=30)
        assert result.ok
        for n in INSTANCES:
            inode, dev = before[n]
            assert os.stat(f"/run/netns/{lab.netns(n)}").st_ino == inode, f"{n} was re-created"
            assert eth0(lab, n) == dev, f"{n}'s eth0 changed: {dev} -> {eth0(lab, n)}"
        # The continuous ping is answered again (and for a while).
        resumed_at = replies()
        wait_until(lambda: replies() >= resumed_at + 20, 30,
                   what="the continuous ping to zigi-vm2 to be answered again")
    finally:
        if stopped:
            lab.cli("start", HOST)
        if pinger.poll() is None:
            os.kill(pinger.pid, signal.SIGINT)
        pinger.wait(timeout=10)
        out = log.read_text()
        wait_until(lambda: lab.agent_alive(HOST), 30, what=f"{HOST}'s agent running")

    stamps = [float(t) for t in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", out, re.M)]
    assert len(stamps) > 20, out[-1500:]
    gap = max(b - a for a, b in zip(stamps, stamps[1:]))
    print(f"\nagent kill -9 and restart: forwarding gap {gap:.2f} s "
          f"(longest time between answered echoes, ping -i {INTERVAL})")
    assert gap < 60, f"the gap ({gap:.1f} s) is longer than the restart should take"


def test_agent_restarted_without_a_server_keeps_forwarding(lab):
    """With the server down, host-2's agent is killed with SIGKILL and started again: it loads
    the mapping view its last run saved (`mappings.pb` in its state directory), marked stale,
    and forwards across hosts before any server answers; when the server is back its watch
    resumes from the saved revision (no full resync) and the view is current again."""
    wait_until(lambda: lab.mappings(HOST)["revision"] > 0 and not lab.mappings(HOST)["stale"],
               60, interval=0.5, what=f"{HOST}'s agent to hold a current view")
    # (The agent writes its view to disk within a second of each change; nothing changed for
    # a while here, so the file holds this revision.)
    log = WORK_DIR / "agent-offline-ping.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    server_stopped = host_stopped = False
    pinger = None
    try:
        lab.cli("stop", "server", "--kill", check=True)
        server_stopped = True
        wait_until(lambda: metric_sum(lab.metrics(HOST), "softvpc_mapping_watching") == 0, 20,
                   what=f"{HOST}'s agent to lose its watch")
        revision = lab.mappings(HOST)["revision"]
        lab.cli("stop", HOST, "--kill", check=True)
        host_stopped = True
        lab.cli("start", HOST, check=True)
        host_stopped = False

        # The new agent answers, from the saved view, with no server.
        def stale_view():
            try:
                m = lab.mappings(HOST)
            except AssertionError:
                return None
            # The saved revision: the held one, or an older one if the last heartbeats came
            # within the writer's second.
            return m if m["stale"] and 0 < m["revision"] <= revision else None

        view = wait_until(stale_view, 60, interval=0.5,
                          what=f"{HOST}'s new agent to load its saved view")
        assert any(p["dev"] == "eth0" for p in view["ports"]), view["ports"]
        wait_until(lambda: adopted_count(lab) >= len(INSTANCES), 60, interval=0.5,
                   what=f"{HOST}'s new agent to take over its instances")
        assert metric_sum(lab.metrics(HOST), "softvpc_mapping_stale") == 1
        # Across hosts, both ways, while no server runs.
        assert lab.wait_ping("zigi-vm1", TARGET, timeout=30).ok
        assert lab.wait_ping("zigi-vm3", "10.0.0.30", timeout=30).ok
        with open(log, "w") as f:
            pinger = subprocess.Popen(
                ["ip", "netns", "exec", lab.netns("zigi-vm4"), "ping", "-n", "-i", "0.2",
                 "-W", "2", "-c", "25", "10.0.1.20"], stdout=f, stderr=subprocess.STDOUT)
        _STARTED.append(pinger)
        pinger.wait(timeout=60)
        out = log.read_text()
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        assert m and int(m.group(2)) == int(m.group(1)) == 25, \
            f"ping across hosts with the restarted agent and no server:\n{out[-1500:]}"
        assert lab.mappings(HOST)["stale"], "the view is not stale, yet no server runs"

        lab.cli("start", "server", check=True)
        server_stopped = False

        def resumed():
            m = lab.metrics(HOST)
            return (metric_sum(m, "softvpc_mapping_watching") == 1
                    and metric_sum(m, "softvpc_mapping_resumes_total") >= 1
                    and metric_sum(m, "softvpc_mapping_stale") == 0) and m

        m = wait_until(resumed, 60, interval=0.5,
                       what=f"{HOST}'s agent to resume its watch on the restarted server")
        assert metric_sum(m, "softvpc_mapping_resyncs_total") == 0, \
            "the agent resynced from a full snapshot instead of resuming from its saved revision"
        assert lab.wait_ping("zigi-vm3", "10.0.0.30", timeout=30).ok
    finally:
        if pinger is not None and pinger.poll() is None:
            pinger.kill()
            pinger.wait(timeout=5)
        if host_stopped:
            lab.cli("start", HOST)
        if server_stopped:
            lab.cli("start", "server")
        wait_until(lambda: lab.agent_alive(HOST), 30, what=f"{HOST}'s agent running")
        wait_until(lambda: metric_sum(lab.metrics(HOST), "softvpc_mapping_watching") == 1, 60,
                   interval=0.5, what=f"{HOST}'s agent watching again")
