"""The README's two commands on a fresh machine (issue 8), checked so that they cannot drift.

- `softvpc lab up` needs none of the test tools, nor any other program but the instances' DHCP
  client (udhcpc): it runs here with `ping`, `arping`, `tcpdump` and `iperf3` hidden
  (/dev/null bind-mounted over each in a private mount namespace) and an empty PATH, and its
  instances then get their addresses by DHCP and reach each other across hosts.
- User errors (missing prerequisite: the TUN/TAP device; bad flag, not root, a lab already up, a missing topology
  file) print one clear message and exit non-zero, without a backtrace although RUST_BACKTRACE
  is set.
- The test script's dependency step installs the Python test packages into an interpreter that
  lacks them (a fresh virtualenv).

Each lab here has its own prefix, state dir and API port, and is taken down even on failure.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from e2e_harness import REPO, SOFTVPC_BIN, free_port, netns_list, run, wait_until

HIDDEN_TOOLS = ["ping", "arping", "tcpdump", "iperf3"]

SMALL_TOPOLOGY = """\
[[host]]
name = "host-1"

[[host]]
name = "host-2"

[[vpc]]
name = "fresh-vpc"
cidr = "10.0.0.0/16"
[[vpc.subnet]]
cidr = "10.0.0.0/24"

[[instance]]
name = "fresh-vm1"
vpc = "fresh-vpc"
subnet = "10.0.0.0/24"
ip = "10.0.0.10"
host = "host-1"

[[instance]]
name = "fresh-vm2"
vpc = "fresh-vpc"
subnet = "10.0.0.0/24"
ip = "10.0.0.20"
host = "host-2"
"""



# Refuses to run in init's mount namespace: test mounts must never leak to the machine.
MOUNT_GUARD = 'set -e\n[ "$(readlink /proc/self/ns/mnt)" != "$(readlink /proc/1/ns/mnt)" ] || exit 99\n'


def tool_paths():
    """The real files of the hidden tools (all must be installed here, or hiding proves nothing)."""
    paths = []
    for tool in HIDDEN_TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is not installed: run scripts/test-deps.sh as root"
        paths.append(os.path.realpath(found))
    return paths


# Hide / unhide each tool in the mount namespace this runs in: /dev/null (not executable) over it.
def hide_script():
    return MOUNT_GUARD + "\n".join(f"mount --bind /dev/null {p}" for p in tool_paths())


def unhide_script():
    return "set -e\n" + "\n".join(f"umount {p}" for p in tool_paths())


def no_backtrace(proc):
    text = proc.stdout + proc.stderr
    assert "backtrace" not in text.lower(), text
    assert "panicked" not in text, text


class SmallLab:
    """A two-host lab whose commands all run in one private mount namespace (held open by a
    `sleep`), where the test tools can be hidden. The lab's netns bind mounts live in that mount
    namespace too, so every lab command, `exec` included, runs there."""

    def __init__(self, tmp: Path):
        self.prefix = f"svf{os.getpid()}-"
        self.state_dir = tmp / "lab"
        self.topology = tmp / "topology.toml"
        self.topology.write_text(SMALL_TOPOLOGY)
        self.env = dict(os.environ, SOFTVPC_LAB_PREFIX=self.prefix,
                        SOFTVPC_LAB_DIR=str(self.state_dir), SOFTVPC_LAB_API_PORT=free_port(),
                        RUST_BACKTRACE="1")
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sleep", "900"])
        # Until unshare(2) has run, the holder is still in our mount namespace: entering it then
        # would hide the tools from the whole machine.
        ours = os.readlink("/proc/self/ns/mnt")
        wait_until(lambda: self._holder_ns() not in (None, ours), 10,
                   what="the private mount namespace")

    def _holder_ns(self):
        try:
            return os.readlink(f"/proc/{self.holder.pid}/ns/mnt")
        except OSError:
            return None

    def inside(self, *cmd, timeout=120):
        return run(["nsenter", "-t", str(self.holder.pid), "-m", "--", *cmd], timeout=timeout,
                   env=self.env)

    def cli(self, *args, timeout=120):
        return self.inside(SOFTVPC_BIN, "lab", *args, timeout=timeout)

    def sh(self, script):
        return self.inside("sh", "-c", script)

    def close(self):
        down = self.cli("down")
        self.holder.kill()
        self.holder.wait(timeout=10)
        for ns in netns_list():
            if ns.startswith(self.prefix):
                run(["ip", "netns", "del", ns])
        return down


@pytest.fixture
def small_lab():
    tmp = Path(tempfile.mkdtemp(prefix="svf-fresh-"))
    lab = SmallLab(tmp)
    try:
        yield lab
    finally:
        down = lab.close()
        shutil.rmtree(tmp, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not [ns for ns in netns_list() if ns.startswith(lab.prefix)]


def test_lab_up_needs_no_test_tools_and_refuses_a_second_up(small_lab):
    hide = small_lab.sh(hide_script())
    assert hide.returncode == 0, hide.stderr
    # Hiding works, so this test can fail: ping cannot run any more.
    probe = small_lab.inside("ping", "-c1", "-W1", "127.0.0.1")
    assert probe.returncode != 0, "ping still runs: hiding failed"
    # And with an empty PATH: the lab (its server and agents too) runs no external program but
    # the instances' DHCP client, which the agents find in the system directories.
    empty = small_lab.state_dir.parent / "empty-path"
    empty.mkdir()
    up = small_lab.inside("env", f"PATH={empty}", SOFTVPC_BIN, "lab", "up",
                          str(small_lab.topology), timeout=300)
    assert up.returncode == 0, f"lab up with {HIDDEN_TOOLS} hidden failed:\n{up.stdout}\n{up.stderr}"
    assert "2/2 instances reach their router" in up.stdout, up.stdout

    # The lab it built works: an instance reaches the other across hosts (with ping back).
    unhide = small_lab.sh(unhide_script())
    assert unhide.returncode == 0, unhide.stderr
    ping = small_lab.cli("exec", "fresh-vm1", "--", "ping", "-c1", "-W2", "10.0.0.20", timeout=30)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    # A lab already up is the user's: a second `up` refuses in one line and leaves it running.
    again = small_lab.cli("up", str(small_lab.topology))
    assert again.returncode != 0
    assert "already up" in again.stderr and "lab down" in again.stderr, again.stderr
    no_backtrace(again)
    status = small_lab.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    ping = small_lab.cli("exec", "fresh-vm2", "--", "ping", "-c1", "-W2", "10.0.0.10", timeout=30)
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_user_errors_are_one_clear_message(small_lab, tmp_path):
    run_ = small_lab.inside

    # A missing prerequisite: the TUN/TAP device (here /dev/null in its place).
    masked = small_lab.sh(MOUNT_GUARD + "mount --bind /dev/null /dev/net/tun")
    assert masked.returncode == 0, masked.stderr
    proc = run_(SOFTVPC_BIN, "lab", "up", str(small_lab.topology))
    small_lab.sh("umount /dev/net/tun")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "/dev/net/tun" in proc.stderr and "modprobe tun" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    no_backtrace(proc)

    # A bad flag: clap's usage error.
    proc = run_(SOFTVPC_BIN, "lab", "up", "--no-such-flag")
    assert proc.returncode == 2 and "--no-such-flag" in proc.stderr, proc.stderr
    no_backtrace(proc)

    # A topology file that does not exist.
    proc = run_(SOFTVPC_BIN, "lab", "up", str(tmp_path / "nope.toml"))
    assert proc.returncode == 1 and "nope.toml" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    no_backtrace(proc)

    # Not root: as `nobody` (the built-in seed topology: nobody cannot read our temp dir).
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run softvpc as an unprivileged user")
    proc = run_("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SOFTVPC_BIN,
                "lab", "up")
    if "Permission denied" in proc.stderr and "setpriv" in proc.stderr:
        pytest.fail(f"nobody cannot execute {SOFTVPC_BIN} (check directory permissions)")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "needs root" in proc.stderr, proc.stderr
    no_backtrace(proc)
    # Nothing was built by any of these.
    assert not [ns for ns in netns_list() if ns.startswith(small_lab.prefix)]


def test_dependency_step_installs_missing_python_packages(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # The fresh interpreter lacks the test packages, so the step has something to do.
    probe = run([python, "-c", "import pytest"])
    assert probe.returncode != 0, "a fresh virtualenv already has pytest?"
    step = run(["bash", str(REPO / "scripts" / "test-deps.sh")], timeout=600,
               env=dict(os.environ, PYTHON=str(python)))
    assert step.returncode == 0, step.stdout + step.stderr
    assert "installing Python packages" in step.stdout and "pytest" in step.stdout, step.stdout
    check = run([python, "-c", "import pytest, boto3, awscli"])
    assert check.returncode == 0, check.stderr
    # A second run finds everything and installs nothing.
    again = run(["bash", str(REPO / "scripts" / "test-deps.sh")], timeout=120,
                env=dict(os.environ, PYTHON=str(python)))
    assert again.returncode == 0 and "installing" not in again.stdout, again.stdout
