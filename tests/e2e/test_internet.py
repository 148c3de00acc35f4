"""The lab's internet (issue 11): a namespace of 203.0.113.0/24 hosts that belong to no VPC, with
softvpc's own HTTP server (answers with the client's address) and UDP echo, reached with real
clients (curl, socat) from inside it. The seed topology has no internet gateway, so an instance
cannot reach it (test_igw.py attaches one)."""

import re

from e2e_harness import SOFTVPC_BIN, run

WEB = "203.0.113.10"
CLIENT = "203.0.113.11"


def test_internet_namespace_holds_its_hosts(lab):
    status = lab.status()["internet"]
    assert status["netns"] == lab.netns("internet")
    assert status["hosts"] == [WEB, CLIENT]
    assert status["running"] and status["pid"], status
    out = lab.exec("internet", "ip", "-4", "-o", "addr", "show", "dev", "inet0", check=True).stdout
    assert sorted(re.findall(r"inet (\S+)", out)) == [f"{WEB}/24", f"{CLIENT}/24"], out


def test_http_answers_with_the_client_address(lab):
    got = lab.exec("internet", "curl", "-sS", "--max-time", "5", "--interface", CLIENT,
                   f"http://{WEB}/", check=True).stdout
    assert got == f"{CLIENT}\n"
    got = lab.exec("internet", "curl", "-sS", "--max-time", "5", "--interface", CLIENT,
                   "--local-port", "40312", f"http://{WEB}/addr", check=True).stdout
    assert got == f"{CLIENT}:40312\n"
    # The server's own address, when the client is on the web host itself.
    got = lab.exec("internet", "curl", "-sS", "--max-time", "5", f"http://{WEB}/", check=True).stdout
    assert got == f"{WEB}\n"
    missing = lab.exec("internet", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                       "--max-time", "5", f"http://{WEB}/nothing-here", check=True).stdout
    assert missing == "404"


def test_udp_echo_returns_each_datagram(lab):
    for payload in ["hello internet", "x" * 1400]:
        # socat sends its stdin as one datagram and prints what comes back within -t seconds.
        proc = run([SOFTVPC_BIN, "lab", "exec", "internet", "--", "socat", "-t", "2", "-T", "3",
                    "-", f"UDP4:{WEB}:7,bind={CLIENT}"], input=payload, env=lab.env, timeout=15)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == payload


def test_instances_do_not_reach_the_internet_yet(lab):
    # No internet gateway in the seed topology: an instance's curl gets nowhere, and the internet
    # has no route to any VPC address.
    proc = lab.exec("zigi-vm1", "curl", "-sS", "--max-time", "2", f"http://{WEB}/")
    assert proc.returncode != 0 and proc.stdout == "", proc
    route = lab.exec("internet", "ip", "route", "get", "10.0.0.148")
    assert route.returncode != 0 and "unreachable" in route.stderr, route
