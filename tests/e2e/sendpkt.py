#!/usr/bin/env python3
"""Sends hand-built packets from inside a network namespace (run it there with `ip netns exec` or
`softvpc lab exec`).

  sendpkt.py raw IFACE HEX...          one Ethernet frame per HEX, on an AF_PACKET socket
  sendpkt.py udp DST_IP PORT HEX...    one UDP datagram per HEX, from an ephemeral port
  sendpkt.py garbage-raw IFACE SEED COUNT SRC_MAC DST_MAC...
                                       COUNT random Ethernet frames from SRC_MAC (to the given
                                       MACs or random ones; IPv4, ARP or random ethertypes)
  sendpkt.py garbage-vxlan DST_IP SEED COUNT VNI...
                                       COUNT random datagrams to DST_IP:4789: random bytes, or a
                                       VXLAN header (random flags, one of the VNIs or a random
                                       one) before random bytes

Prints one line per packet sent (or the error the kernel gave for it) and exits 0 when every
packet was accepted by the kernel, 1 otherwise.
"""

import random
import socket
import struct
import sys


def garbage_frame(rng, src_mac, dst_macs):
    dst = rng.choice(dst_macs + ["ff:ff:ff:ff:ff:ff", None])
    dst_b = bytes(rng.getrandbits(8) for _ in range(6)) if dst is None else bytes.fromhex(
        dst.replace(":", ""))
    ethertype = rng.choice([0x0800, 0x0800, 0x0806, rng.getrandbits(16)])
    body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
    if ethertype == 0x0800 and body and rng.random() < 0.5:
        body = bytes([0x45]) + body[1:]  # looks like IPv4 at first glance
    return dst_b + bytes.fromhex(src_mac.replace(":", "")) + struct.pack("!H", ethertype) + body


def garbage_datagram(rng, vnis):
    body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
    if rng.random() < 0.2:
        return body
    flags = rng.choice([0x08, 0x08, rng.getrandbits(8)])
    vni = rng.choice(vnis + [rng.getrandbits(24)])
    return struct.pack("!B3sI", flags, b"\0\0\0", vni << 8) + body


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
    elif mode == "garbage-raw":
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        sock.bind((argv[1], 0))
        rng, count = random.Random(int(argv[2])), int(argv[3])
        frames = [garbage_frame(rng, argv[4], argv[5:]).hex() for _ in range(count)]
        send, payloads = sock.send, frames
    elif mode == "garbage-vxlan":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dest = (argv[1], 4789)
        rng, count = random.Random(int(argv[2])), int(argv[3])
        vnis = [int(v) for v in argv[4:]]
        payloads = [garbage_datagram(rng, vnis).hex() for _ in range(count)]
        send = lambda data: sock.sendto(data, dest)  # noqa: E731
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    if mode.startswith("garbage"):
        sent = 0
        for hexdata in payloads:
            try:
                send(bytes.fromhex(hexdata))
                sent += 1
            except OSError:
                failures += 1  # e.g. a frame too short for the device: not sent, not counted
        print(f"sent {sent} of {len(payloads)}")
        return 0
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
