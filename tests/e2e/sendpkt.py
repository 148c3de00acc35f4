#!/usr/bin/env python3
"""Sends hand-built packets from inside a network namespace (run it there with `ip netns exec` or
`softvpc lab exec`).

  sendpkt.py raw IFACE HEX...          one Ethernet frame per HEX, on an AF_PACKET socket
  sendpkt.py udp DST_IP PORT HEX...    one UDP datagram per HEX, from an ephemeral port

Prints one line per packet sent (or the error the kernel gave for it) and exits 0 when every
packet was accepted by the kernel, 1 otherwise.
"""

import socket
import sys


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    mode, failures = argv[0], 0
    if mode == "raw":
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        sock.bind((argv[1], 0))
        send, payloads = sock.send, argv[2:]
    elif mode == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dest = (argv[1], int(argv[2]))
        send, payloads = (lambda data: sock.sendto(data, dest)), argv[3:]
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    for hexdata in payloads:
        data = bytes.fromhex(hexdata)
        try:
            sent = send(data)
            print(f"sent {sent}/{len(data)}")
        except OSError as err:
            failures += 1
            print(f"error {err.errno} for {len(data)} bytes: {err}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
