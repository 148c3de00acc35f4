"""UDP helpers for the propagation measurement, run inside instance namespaces.

  udpprobe.py echo PORT                    echoes every datagram; prints "ready"
  udpprobe.py race PORT SECS IP...         one fresh socket (a new flow) per target, a probe every
                                           2 ms to each; prints "IP TIME" (time.time() of the
                                           first echo) per target, or "IP none" after SECS
  udpprobe.py flows IP PORT COUNT SECS     COUNT fresh sockets (COUNT new flows), one datagram
                                           each, one after the other; prints how many were echoed
                                           within SECS
"""

import select
import socket
import sys
import time


def echo(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)


def flows(ip, port, count, secs):
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((ip, port))
        s.setblocking(False)
        s.send(b"flow")
        socks.append(s)
        time.sleep(0.005)
    echoed = set()
    end = time.time() + secs
    while len(echoed) < count and time.time() < end:
        ready, _, _ = select.select([s for s in socks if s not in echoed], [], [], 0.1)
        for s in ready:
            try:
                s.recv(2048)
                echoed.add(s)
            except OSError:
                pass
    print(len(echoed), flush=True)


def race(port, secs, ips):
    socks = {}
    for ip in ips:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((ip, port))
        s.setblocking(False)
        socks[s] = ip
    first = {}
    print("started", flush=True)
    end = time.time() + secs
    while len(first) < len(ips) and time.time() < end:
        for s, ip in socks.items():
            if ip not in first:
                try:
                    s.send(b"probe")
                except OSError:
                    pass
        ready, _, _ = select.select(list(socks), [], [], 0.002)
        now = time.time()
        for s in ready:
            try:
                s.recv(2048)
            except OSError:
                continue
            first.setdefault(socks[s], now)
    for ip in ips:
        print(ip, first.get(ip, "none"), flush=True)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "echo":
        echo(int(args[0]))
    elif cmd == "race":
        race(int(args[0]), float(args[1]), args[2:])
    elif cmd == "flows":
        flows(args[0], int(args[1]), int(args[2]), float(args[3]))
    else:
        sys.exit(f"unknown command {cmd}")
