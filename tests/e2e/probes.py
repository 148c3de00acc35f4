"""Helpers of the policy tests around tcpprobe.py (run inside instance namespaces): connect
attempts that tell "connected" from "timed out", polls until a policy change holds, an echo
server, and one long-lived TCP session driven line by line."""

import subprocess
import sys
from pathlib import Path

from e2e_harness import PREFIX, wait_until

PROBE = str(Path(__file__).resolve().parent / "tcpprobe.py")


def ns(lab, name):
    """The namespace of a lab instance by name, or of an instance id the test launched."""
    if name.startswith("i-"):
        return f"{PREFIX}{name}"
    return lab.netns(name)


def eni_of(lab, vpc, ip):
    out = lab.aws("describe-network-interfaces", "--filters", f"Name=vpc-id,Values={vpc}",
                  f"Name=addresses.private-ip-address,Values={ip}")
    (eni,) = out["NetworkInterfaces"]
    return eni


def connects(lab, src, ip, port, secs=2.0):
    proc = lab.netns_exec(ns(lab, src), sys.executable, PROBE, "connect", ip, str(port),
                          str(secs), timeout=secs + 10)
    return proc.returncode == 0


def wait_connects(lab, src, ip, port, want, timeout=15):
    """Polls until connecting from `src` to ip:port succeeds (want=True) or times out (False):
    the change has to reach the agents first."""
    return wait_until(lambda: connects(lab, src, ip, port, 1.0) == want, timeout,
                      interval=0.3, what=f"{src} -> {ip}:{port} {'open' if want else 'closed'}")


class Server:
    """tcpprobe's echo server on `ports` inside instance `name`."""

    def __init__(self, lab, name, *ports):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns(lab, name), sys.executable, PROBE, "serve",
             *map(str, ports)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=5)


class Session:
    """One open TCP connection from instance `name`, driven line by line."""

    def __init__(self, lab, name, ip, port):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns(lab, name), sys.executable, "-u", PROBE, "session",
             ip, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.first = self.proc.stdout.readline().strip()

    def say(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self):
        self.proc.kill()
        self.proc.wait(timeout=5)
