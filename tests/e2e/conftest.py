"""pytest fixtures for the end-to-end tests: one softvpc lab for the whole session.

The `lab` fixture writes the test topology (e2e_harness.TOPOLOGY: the seed topology plus an
agent-less host `kvtep` with one instance `kvm1`), runs `softvpc lab up` with the lab prefix `svt-`,
state under /tmp and its own API port, and always runs `softvpc lab down` at the end, then checks
that no `svt-` namespace and none of the lab's processes is left.

Run one test: `sudo SOFTVPC_BIN=target/release/softvpc python3 -m pytest -v tests/e2e -k seed`.
"""

import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from e2e_harness import (_STARTED, AWS_KEY, PREFIX, SOFTVPC_BIN, STATE_DIR, TOPOLOGY, WORK_DIR, Lab,
                         netns_list, pid_alive, run, wait_until)


def _leftovers():
    return [n for n in netns_list() if n.startswith(PREFIX)]


def _lab_processes(status):
    pids = []
    if status:
        server = status.get("server") or {}
        if server.get("pid"):
            pids.append(server["pid"])
        pids += [h["pid"] for h in status.get("hosts", []) if h.get("pid")]
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

    # A previous run that crashed may have left its lab behind: take it down first.
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
                        aws_access_key_id=AWS_KEY, aws_secret_access_key=AWS_KEY,
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
