"""Agent restart (issue 12): host-2's agent is killed with SIGKILL under a continuous ping and
started again, with the server up, and with the server down (the agent then forwards from the
mapping view its last run saved on disk until the server is back). Its instances are not re-created: each keeps its namespace (same inode), its eth0
(same interface index, MAC and address), because the TAPs are persistent and the new agent
takes them over (`softvpc_interfaces_adopted_total`). The pings resume; the forwarding gap (the
longest time between two answered echoes) is printed.

With the kernel fast path on (`SOFTVPC_FAST_PATH=on`, which `scripts/test.sh` runs this file
with too) the ping's flow is in the kernel when the agent is killed: the filters, devices and
namespaces the dead agent made outlive it. The new agent removes them (the underlay's flow
filters and the per-port namespaces at start, `softvpc_fast_path_leftovers_removed_total`; each
adopted `eth0`'s flow filters and the old `fpe`/`fpi` devices when it takes the instance over),
then installs its own: afterwards host-2's underlay device has exactly one flow filter (the
host's program, `svfp_in`), each instance's eth0 one (its port's program, `svfp_eg<P>`) if the
port has fast-path devices and none otherwise, and every fast-path namespace, veth and VXLAN
device belongs to one port (none left, none twice). The programs and their flow map live only
as long as their filters (nothing is pinned), so no filter left means no program or map left.
"""

import os
import re
import signal
import subprocess
from collections import Counter

from e2e_harness import _STARTED, PREFIX, WORK_DIR, metric_sum, wait_until

HOST = "host-2"
INSTANCES = ("zigi-vm2", "zigi-vm3")  # host-2's instances in zigi-vpc1
TARGET = "10.0.0.185"  # zigi-vm2, pinged from zigi-vm1 on host-1
INTERVAL = 0.05
FAST = os.environ.get("SOFTVPC_FAST_PATH", "on") == "on"


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


def _filters(lab, netns, dev, hook):
    """{pref: set of cls_bpf program names (empty for other classifiers)} of the filters on
    `dev`'s `hook` in `netns` (`tc filter show`)."""
    out = lab.netns_exec(netns, "tc", "filter", "show", "dev", dev, hook, check=True).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"filter .*\bpref (\d+)\b", line)
        if m:
            names = found.setdefault(int(m.group(1)), set())
            names.update(re.findall(r"\bname (svfp_\w+)", line))
    return found


def _links(lab, netns):
    out = lab.netns_exec(netns, "ip", "-o", "link", "show", check=True).stdout
    return set(re.findall(r"^\d+: ([^:@]+)", out, re.M))


def fast_path_objects(lab):
    """host-2's fast-path kernel objects, checked for consistency: returns (flow filters, fp
    namespaces) or a string saying what is wrong (duplicates, leftovers)."""
    host = lab.host(HOST)
    host_ns = host["netns"]
    fp_prefix = PREFIX + "fp" + host["underlay_ip"].replace(".", "-") + "-"
    fp_ns = {int(n[len(fp_prefix):]) for n in os.listdir("/run/netns")
             if n.startswith(fp_prefix) and n[len(fp_prefix):].isdigit()}
    host_links = _links(lab, host_ns)
    filters = 0
    problems = []
    # The underlay's ingress: the host's one flow program, whatever the number of flows.
    under = _filters(lab, host_ns, "u0", "ingress")
    if list(under.values()) != [{"svfp_in"}]:
        problems.append(f"u0 ingress filters {under}, not the one flow program svfp_in")
    filters += len(under)
    veths = {int(v[3:]) for v in host_links if re.fullmatch(r"fpv\d+", v)}
    if veths != fp_ns:
        problems.append(f"veths fpv{sorted(veths)} vs namespaces fp..-{sorted(fp_ns)}")
    delivers = {int(v[3:]) for v in host_links if re.fullmatch(r"fpd\d+", v)}
    if not delivers <= fp_ns:
        problems.append(f"veths fpd{sorted(delivers)} without namespaces fp..-{sorted(fp_ns)}")
    ports = Counter()
    on_host = {i["netns"] for i in lab.status(refresh=True)["instances"]
               if i.get("host") == HOST and os.path.exists(f"/run/netns/{i['netns']}")}
    assert set(lab.netns(n) for n in INSTANCES) <= set(on_host), on_host
    for ns in on_host:
        name = ns
        links = _links(lab, ns)
        for dev in links:
            m = re.fullmatch(r"fp(?:[ei]|di)(\d+)(?:v\d+)?", dev)
            if m:
                ports[int(m.group(1))] += dev.startswith("fpi")
                if int(m.group(1)) not in fp_ns:
                    problems.append(f"{name}: {dev} has no namespace fp..-{m.group(1)}")
        port = next((int(m.group(1)) for d in links
                     if (m := re.fullmatch(r"fpe(\d+)", d))), None)
        for eth in sorted(d for d in links if re.fullmatch(r"eth\d+", d)):
            egress = _filters(lab, ns, eth, "egress")
            want = [] if port is None else [{f"svfp_eg{port}"}]
            if list(egress.values()) != want:
                problems.append(f"{name} {eth} egress filters {egress}, want {want}")
            filters += len(egress)
    for port in fp_ns:
        if ports.get(port) != 1:
            problems.append(f"namespace fp..-{port} has {ports.get(port, 0)} fpi devices")
    return "; ".join(problems) if problems else (filters, fp_ns)


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
        if FAST:
            # The ping's flow is in the kernel on both hosts (echo and reply).
            wait_until(lambda: metric_sum(lab.metrics(HOST), "softvpc_fast_path_flows") >= 2,
                       30, interval=0.2, what=f"{HOST}'s fast path to carry the ping")
            before_kill = fast_path_objects(lab)
            assert not isinstance(before_kill, str), before_kill
            assert before_kill[1], "no fast-path namespace on host-2 before the kill"
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
        if FAST:
            # The new agent removed what the old one left and carries the ping in the kernel
            # again; every fast-path object on host-2 is its own, none twice.
            m = lab.metrics(HOST)
            assert metric_sum(m, "softvpc_fast_path_leftovers_removed_total") >= 1, \
                "the new agent found nothing of the old one's fast path"
            errors, why = lab.fast_path_errors(HOST)
            assert errors == 0, f"{HOST}: {errors} fast path errors\n{why}"

            def consistent():
                flows = metric_sum(lab.metrics(HOST), "softvpc_fast_path_flows")
                objects = fast_path_objects(lab)
                # (Read twice around the objects: a flow installed meanwhile is not a leak.)
                again = metric_sum(lab.metrics(HOST), "softvpc_fast_path_flows")
                if isinstance(objects, str) or flows < 2 or flows != again:
                    return None
                return (flows, objects)

            last = []
            try:
                flows, (filters, fp_ns) = wait_until(
                    lambda: (r := consistent()) or last.append(fast_path_objects(lab)), 30,
                    interval=0.5, what=f"{HOST}'s fast-path objects to be the new agent's only")
            except AssertionError as e:
                raise AssertionError(f"{e}: last seen {last[-1:]}") from None
            print(f"\nfast path after the restart: {flows} flows, {filters} filters, "
                  f"port namespaces {sorted(fp_ns)} (before the kill: {sorted(before_kill[1])})")

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
