//! A flow hash over an inner Ethernet frame, and the VXLAN UDP source port derived from it.
//!
//! RFC 7348 section 5 recommends that the outer UDP source port be a hash of the inner frame's
//! headers, in the dynamic range 49152-65535, so that underlay ECMP and receive-side scaling
//! spread flows while keeping each flow's packets in order.
//!
//! Why our own code: the hash crates on crates.io hash whatever bytes they are given; the work
//! here is choosing which header fields make a flow, reading them without panicking on any
//! input, and doing it with no allocation and no random seed (the port must be the same on
//! every host and every run, so a flow always takes the same underlay path).
//!
//! Fields: destination and source MAC always; for IPv4 also the addresses and protocol; for
//! TCP/UDP in an unfragmented datagram also the ports (a fragment carries no ports, and hashing
//! them on the first fragment only would split one datagram across paths). A frame too short
//! for a layer is hashed on the layers it has.

use smoltcp::wire::EthernetAddress;

use crate::meta::FrameMeta;

/// The first port of the dynamic range RFC 7348 recommends for the outer UDP source port.
pub const VXLAN_SOURCE_PORT_MIN: u16 = 49152;
/// The last port of that range.
pub const VXLAN_SOURCE_PORT_MAX: u16 = 65535;

/// An odd 64-bit constant (2^64 / golden ratio) that spreads bits in a multiply.
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// A small multiply-xorshift hasher: fast, no allocation, fixed seed.
pub(crate) struct Mixer(u64);

impl Mixer {
    #[inline]
    pub(crate) fn new() -> Mixer {
        Mixer(K)
    }

    #[inline]
    pub(crate) fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(K);
        self.0 ^= self.0 >> 29;
    }

    /// The two MACs, the first word tagged so that a truncated frame cannot collide with a
    /// longer one by construction.
    #[inline]
    pub(crate) fn add_macs(&mut self, dst: EthernetAddress, src: EthernetAddress) {
        self.add(mac_word(&dst.0) << 8 | 1);
        self.add(mac_word(&src.0));
    }

    /// murmur3's 64-bit finalizer, so every input bit reaches the high bits of the result
    /// (which [`vxlan_source_port`] uses).
    #[inline]
    pub(crate) fn finish(self) -> u32 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        (h ^ (h >> 32)) as u32
    }
}

#[inline]
fn mac_word(s: &[u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, s[0], s[1], s[2], s[3], s[4], s[5]])
}

/// Hashes the flow an Ethernet frame belongs to. Never panics; any input, even empty, gets a
/// hash. The same header fields always give the same hash (no seed); payload bytes and IPv4
/// fields that vary per packet (id, TTL, length, checksum) are not hashed.
///
/// This is [`FrameMeta::flow_hash`] of the frame's one parse; only frames shorter than an
/// Ethernet header are hashed here directly (on their MACs, or their raw bytes).
pub fn flow_hash(frame: &[u8]) -> u32 {
    if let Ok(meta) = FrameMeta::parse(frame) {
        return meta.flow_hash();
    }
    let mut m = Mixer::new();
    if let (Some(dst), Some(src)) = (frame.get(0..6), frame.get(6..12)) {
        // Two MACs but no ethertype.
        let mac = |b: &[u8]| {
            let mut a = [0u8; 6];
            a.copy_from_slice(b);
            EthernetAddress(a)
        };
        m.add_macs(mac(dst), mac(src));
        return m.finish();
    }
    // Shorter than two MACs: hash what there is.
    m.add(frame.len() as u64);
    for chunk in frame.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        m.add(u64::from_le_bytes(w));
    }
    m.finish()
}

/// Maps a flow hash onto the VXLAN UDP source port range 49152..=65535 (RFC 7348 section 5).
/// Uses the hash's high bits (multiply-shift, as Linux's `udp_flow_src_port` does) so the ports
/// spread evenly.
#[inline]
pub fn vxlan_source_port(hash: u32) -> u16 {
    const SPAN: u64 = (VXLAN_SOURCE_PORT_MAX - VXLAN_SOURCE_PORT_MIN) as u64 + 1;
    // (hash * SPAN) >> 32 < SPAN, so the sum is at most 65535.
    VXLAN_SOURCE_PORT_MIN + ((u64::from(hash) * SPAN) >> 32) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + UDP header: 02:..:01 -> 02:..:02, 10.0.1.5:40000 -> 10.0.2.7:53.
    fn udp_frame() -> Vec<u8> {
        let mut f = vec![
            0x02, 0, 0, 0, 0, 0x02, // dst MAC
            0x02, 0, 0, 0, 0, 0x01, // src MAC
            0x08, 0x00, // IPv4
            0x45, 0, 0, 36, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, // ver/ihl .. proto, csum
            10, 0, 1, 5, 10, 0, 2, 7, // src, dst
            0x9c, 0x40, 0, 53, 0, 16, 0, 0, // UDP 40000 -> 53
        ];
        f.extend_from_slice(b"payload!");
        f
    }

    #[test]
    fn same_flow_same_hash_regardless_of_per_packet_fields() {
        let a = udp_frame();
        let mut b = a.clone();
        b[18] = 0x99; // IP id
        b[22] = 3; // TTL
        b[24] = 0xab; // IP checksum
        b[42] ^= 0xff; // payload
        assert_eq!(flow_hash(&a), flow_hash(&b));
    }

    #[test]
    fn each_flow_field_changes_the_hash() {
        let base = flow_hash(&udp_frame());
        // dst MAC, src MAC, ethertype-adjacent IP proto, src IP, dst IP, sport, dport.
        for at in [5, 11, 23, 29, 33, 35, 37] {
            let mut f = udp_frame();
            f[at] ^= 0x01;
            assert_ne!(flow_hash(&f), base, "byte {at}");
        }
    }

    #[test]
    fn fragments_ignore_ports() {
        let mut a = udp_frame();
        a[20] = 0x20; // MF
        let mut b = a.clone();
        b[35] ^= 1; // sport
        assert_eq!(flow_hash(&a), flow_hash(&b));
    }

    #[test]
    fn vlan_tag_is_skipped() {
        let plain = udp_frame();
        let mut tagged = plain[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        tagged.extend_from_slice(&plain[12..]);
        let mut other = tagged.clone();
        other[18 + 20 + 1] ^= 1; // sport inside the tagged frame
        assert_ne!(flow_hash(&tagged), flow_hash(&other));
    }

    #[test]
    fn short_input_does_not_panic_and_is_deterministic() {
        let f = udp_frame();
        for len in 0..=f.len() {
            assert_eq!(flow_hash(&f[..len]), flow_hash(&f[..len]));
        }
        // Ports cut short are left out, whole ones are hashed.
        assert_eq!(flow_hash(&f[..36]), flow_hash(&f[..34]));
        assert_ne!(flow_hash(&f[..38]), flow_hash(&f[..34]));
    }

    #[test]
    fn source_port_range() {
        assert_eq!(vxlan_source_port(0), 49152);
        assert_eq!(vxlan_source_port(u32::MAX), 65535);
        assert_eq!(vxlan_source_port(0x8000_0000), 49152 + 8192);
    }

    #[test]
    fn source_ports_spread() {
        // 4096 flows differing in source port land in many of the 16 buckets of 1024 ports.
        let mut buckets = [0u32; 16];
        let mut f = udp_frame();
        for sport in 0..4096u16 {
            f[34..36].copy_from_slice(&sport.to_be_bytes());
            let p = vxlan_source_port(flow_hash(&f));
            buckets[usize::from((p - VXLAN_SOURCE_PORT_MIN) / 1024)] += 1;
        }
        // Each bucket expects 256; a decent hash stays well within 2x.
        assert!(
            buckets.iter().all(|&n| (128..512).contains(&n)),
            "{buckets:?}"
        );
    }
}
