"""pytest fixtures for the end-to-end tests: one softvpc lab for the whole session.

The `lab` fixture writes the test topology (e2e_harness.TOPOLOGY: the seed topology plus an
agent-less host `kvtep` with one instance `kvm1`), runs `softvpc lab up` with its own lab prefix
(`svt<pid>-`), state under /tmp and a free API port, and always runs `softvpc lab down` at the
end, then checks that none of its namespaces and none of the lab's processes is left. Labs of
earlier runs that crashed (their pid is gone) are taken down first.

Run one test: `sudo SOFTVPC_BIN=target/release/softvpc python3 -m pytest -v tests/e2e -k seed`.
"""

import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from e2e_harness import (_STARTED, PREFIX, RUN_PREFIX_RE, SOFTVPC_BIN, STATE_DIR,
                         TOPOLOGY, WORK_DIR, Lab, netns_list, pid_alive, run, wait_until)


def _dead_runs():
    """Lab prefixes of earlier e2e runs whose process is gone."""
    prefixes = set()
    for ns in netns_list():
        m = RUN_PREFIX_RE.match(ns)
        if m and m.group(1) != PREFIX and not pid_alive(int(m.group(2))):
            prefixes.add(m.group(1))
    return prefixes


def _leftovers():
    return [n for n in netns_list() if n.startswith(PREFIX)]


def _lab_processes(status):
    pids = []
    if status:
        server = status.get("server") or {}
        if server.get("pid"):
            pids.append(server["pid"])
        pids += [h["pid"] for h in status.get("hosts", []) if h.get("pid")]
        if (status.get("internet") or {}).get("pid"):
            pids.append(status["internet"]["pid"])
    return pids


@pytest.fixture(scope="session")
def lab():
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests need root (network namespaces)")
    if not Path(SOFTVPC_BIN).exists():
        pytest.fail(f"softvpc binary not found at {SOFTVPC_BIN} (set SOFTVPC_BIN)")
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    topology = WORK_DIR / "e2e-lab.toml"
    topology.write_text(TOPOLOGY)
    lab = Lab(topology)

    # Runs that crashed (their pid is gone) may have left their labs behind: take them down.
    for prefix in _dead_runs():
        env = dict(lab.env, SOFTVPC_LAB_PREFIX=prefix, SOFTVPC_LAB_DIR=f"/tmp/{prefix}e2e-lab")
        run([SOFTVPC_BIN, "lab", "down"], timeout=120, env=env)
        for ns in netns_list():
            if ns.startswith(prefix):
                run(["ip", "netns", "del", ns])
        shutil.rmtree(f"/tmp/{prefix}e2e-lab", ignore_errors=True)
    for old_work in Path("/tmp").glob("svt-e2e-*"):
        pid = old_work.name.rsplit("-", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(old_work, ignore_errors=True)
    if _leftovers() or STATE_DIR.exists():
        lab.cli("down", timeout=120)
        for ns in _leftovers():
            run(["ip", "netns", "del", ns])

    status = None
    try:
        up = lab.cli("up", str(topology), timeout=300)
        sys.stderr.write(up.stdout)
        if up.returncode != 0:
            raise AssertionError(f"softvpc lab up failed (exit {up.returncode}):\n"
                                 f"{up.stdout}\n{up.stderr}")
        status = lab.status(refresh=True)
        yield lab
    finally:
        status = status or _safe_status(lab)
        down = lab.cli("down", timeout=120)
        problems = []
        if down.returncode != 0:
            problems.append(f"lab down exit {down.returncode}: {down.stderr}")
        left = _leftovers()
        for ns in left:
            run(["ip", "netns", "del", ns])
        if left:
            problems.append(f"namespaces left after lab down: {left}")
        pids = _lab_processes(status)
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not any(pid_alive(p) for p in pids), 10, what="lab processes")
        alive = [pid for pid in pids if pid_alive(pid)]
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if alive:
            problems.append(f"lab processes alive after lab down: {alive}")
        for proc in _STARTED:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
        shutil.rmtree(WORK_DIR, ignore_errors=True)
        if problems:
            raise AssertionError("; ".join(problems))


def _safe_status(lab):
    try:
        return lab.status(refresh=True)
    except Exception:  # the lab may never have come up
        return None


@pytest.fixture(scope="session")
def ec2(lab):
    """A boto3 EC2 client on the lab's API endpoint (no retries: errors surface at once)."""
    import boto3
    from botocore.config import Config
    return boto3.client("ec2", endpoint_url=lab.api_url, region_name="us-east-1",
                        aws_access_key_id=lab.credentials()[0],
                        aws_secret_access_key=lab.credentials()[1],
                        config=Config(retries={"total_max_attempts": 1}))


@pytest.fixture
def macs(lab):
    """Name -> ENI MAC of every lab instance."""
    return {i["name"]: i["mac"] for i in lab.status()["instances"]}


@pytest.fixture
def ips(lab):
    return {i["name"]: i["ip"] for i in lab.status()["instances"]}


def pytest_collection_modifyitems(session, config, items):
    """The seed experiment (the product's headline) runs first, on a fresh lab."""
    items.sort(key=lambda item: 0 if "test_seed_experiment" in item.nodeid else 1)


def _diagnostics(lab):
    """What a failed test's lab looked like: each agent's nonzero drop counters, the internet
    namespace's neighbours and bridge, and the last lines of every log. CI's log is all anyone
    sees of a failure there, so it has to say more than the assertion."""
    out = []

    def section(title, fn):
        try:
            out.append(f"--- {title}\n{fn()}")
        except Exception as err:  # diagnostics must never hide the failure itself
            out.append(f"--- {title}: unavailable ({err})")

    for host in (lab.status(refresh=True).get("hosts") or []):
        name = host["name"]
        section(f"{name}: drops", lambda n=name: "\n".join(
            line for line in lab.agent_get(n, "/metrics").splitlines()
            if line.startswith("softvpc_drops_total") and not line.endswith(" 0")))
    inet = lab.netns("internet")
    section("internet: ip neigh", lambda: lab.netns_exec(inet, "ip", "neigh").stdout)
    section("internet: bridge fdb", lambda: lab.netns_exec(inet, "bridge", "fdb").stdout)
    section("internet: ip -s link", lambda: lab.netns_exec(inet, "ip", "-s", "link").stdout)
    for log in sorted((STATE_DIR / "logs").glob("*.log")):
        section(f"{log.name} (last 40 lines)",
                lambda p=log: "\n".join(p.read_text(errors="replace").splitlines()[-40:]))
    return "\n".join(out)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed and "lab" in getattr(item, "funcargs", {}):
        rep.sections.append(("lab diagnostics", _diagnostics(item.funcargs["lab"])))
