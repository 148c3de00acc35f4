"""Hand-built packets for the end-to-end tests: Ethernet, IPv4, UDP, ICMP, VXLAN, and a pcap reader.

The tests inject frames the product must refuse (spoofed, truncated, wrong lengths, bad VXLAN), so
they are built byte by byte here rather than by a library that would "fix" them. The pcap reader
gives the tests the exact bytes tcpdump captured, to look for markers and MAC addresses.
"""

import struct

BROADCAST = "ff:ff:ff:ff:ff:ff"
ETH_IPV4 = 0x0800
ETH_ARP = 0x0806


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def ip_bytes(ip: str) -> bytes:
    return bytes(int(part) for part in ip.split("."))


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ethernet(dst: str, src: str, ethertype: int, payload: bytes) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", ethertype) + payload


def ipv4(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64, total_length=None,
         ihl: int = 5, ident: int = 0x5356) -> bytes:
    """An IPv4 header (valid checksum) plus payload; total_length/ihl may be forced to lie."""
    length = 20 + len(payload) if total_length is None else total_length
    header = struct.pack("!BBHHHBBH4s4s", (4 << 4) | ihl, 0, length, ident, 0x4000, ttl, proto, 0,
                         ip_bytes(src), ip_bytes(dst))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def udp(src_ip: str, dst_ip: str, sport: int, dport: int, payload: bytes) -> bytes:
    length = 8 + len(payload)
    pseudo = ip_bytes(src_ip) + ip_bytes(dst_ip) + struct.pack("!BBH", 0, 17, length)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    csum = checksum(pseudo + header + payload) or 0xFFFF
    return struct.pack("!HHHH", sport, dport, length, csum) + payload


def udp_frame(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, payload: bytes,
              sport: int = 40000, dport: int = 9999) -> bytes:
    """A complete, well-formed Ethernet/IPv4/UDP frame."""
    return ethernet(dst_mac, src_mac, ETH_IPV4,
                    ipv4(src_ip, dst_ip, 17, udp(src_ip, dst_ip, sport, dport, payload)))


def icmp_echo_frame(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, payload: bytes,
                    ident: int = 0x5356, seq: int = 1) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    return ethernet(dst_mac, src_mac, ETH_IPV4, ipv4(src_ip, dst_ip, 1, body))


def vxlan(vni: int, inner: bytes, flags: int = 0x08) -> bytes:
    """RFC 7348 header: flags byte, 24 reserved bits, 24-bit VNI, 8 reserved bits."""
    return struct.pack("!B3s", flags, b"\0\0\0") + struct.pack("!I", vni << 8) + inner


def read_pcap(path: str):
    """Frames of a classic pcap file (tcpdump -w), as a list of (timestamp, bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    frames, off = [], 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        if off + incl > len(data):
            break  # tcpdump was stopped mid-record
        frames.append((sec + frac / (1e9 if nano else 1e6), data[off:off + incl]))
        off += incl
    return frames


class Frame:
    """A captured Ethernet frame with the fields the tests look at."""

    def __init__(self, raw: bytes):
        self.raw = raw
        self.dst = mac_str(raw[0:6]) if len(raw) >= 6 else ""
        self.src = mac_str(raw[6:12]) if len(raw) >= 12 else ""
        self.ethertype = struct.unpack("!H", raw[12:14])[0] if len(raw) >= 14 else 0

    def __contains__(self, needle: bytes) -> bool:
        return needle in self.raw

    def ipv4(self):
        """(src, dst, proto, ttl) of an IPv4 frame, else None."""
        if self.ethertype != ETH_IPV4 or len(self.raw) < 34:
            return None
        h = self.raw[14:34]
        return (".".join(map(str, h[12:16])), ".".join(map(str, h[16:20])), h[9], h[8])

    def arp(self):
        """(op, sender_mac, sender_ip, target_ip) of an ARP frame, else None."""
        if self.ethertype != ETH_ARP or len(self.raw) < 42:
            return None
        a = self.raw[14:42]
        op = struct.unpack("!H", a[6:8])[0]
        return (op, mac_str(a[8:14]), ".".join(map(str, a[14:18])), ".".join(map(str, a[24:28])))

    def __repr__(self):
        return f"Frame({self.src} > {self.dst} 0x{self.ethertype:04x} {len(self.raw)}B)"
