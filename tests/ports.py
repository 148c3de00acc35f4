"""Loopback TCP ports for the servers the tests start, shared by tests/api and tests/e2e.

`bind(0)` hands out a port from the kernel's ephemeral range, which is also where every outgoing
connection (boto3, the AWS CLI, etcd clients, the servers themselves) takes its local port: in
the gap between picking the port and the server binding it, a connection can take it, and the
server then fails with "Address already in use" (this failed a CI run). So ports come from below
the ephemeral range, where no outgoing connection lands, are checked free with a test bind, and
are never handed out twice by one test process.
"""

import random
import socket

_handed_out = set()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on, outside the ephemeral range."""
    high = min(_ephemeral_low(), 32768)
    low = max(1024, high - 12000)
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(low, high)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {low}..{high}")
