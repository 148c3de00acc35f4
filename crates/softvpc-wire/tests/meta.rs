//! The one parse ([`FrameMeta`]) against independent references: the flow hash equals the
//! byte-walking implementation it replaced (so the VXLAN source port of every flow is unchanged),
//! and `Ipv4Meta::valid` equals smoltcp's checked parse plus the router's extra checks.

use proptest::collection::vec;
use proptest::prelude::*;
use softvpc_wire::{flow_hash, FrameMeta, Ipv4Packet, L3Meta};

/// The flow hash as it was before the one parse (a copy of the old `flow::flow_hash`).
mod reference {
    const ETHERTYPE_IPV4: u16 = 0x0800;
    const ETHERTYPE_VLAN: u16 = 0x8100;
    const IPPROTO_TCP: u8 = 6;
    const IPPROTO_UDP: u8 = 17;

    /// An odd 64-bit constant (2^64 / golden ratio) that spreads bits in a multiply.
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    /// A small multiply-xorshift hasher: fast, no allocation, fixed seed.
    struct Mixer(u64);

    impl Mixer {
        #[inline]
        fn add(&mut self, word: u64) {
            self.0 = (self.0 ^ word).wrapping_mul(K);
            self.0 ^= self.0 >> 29;
        }

        /// murmur3's 64-bit finalizer, so every input bit reaches the high bits of the result
        /// (which [`vxlan_source_port`] uses).
        #[inline]
        fn finish(self) -> u32 {
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
    fn be16(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
    }

    #[inline]
    fn be32(b: &[u8], at: usize) -> Option<u32> {
        let s = b.get(at..at + 4)?;
        Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    #[inline]
    fn mac(b: &[u8], at: usize) -> Option<u64> {
        let s = b.get(at..at + 6)?;
        Some(u64::from_be_bytes([
            0, 0, s[0], s[1], s[2], s[3], s[4], s[5],
        ]))
    }

    /// Hashes the flow an Ethernet frame belongs to. Never panics; any input, even empty, gets a
    /// hash. The same header fields always give the same hash (no seed); payload bytes and IPv4
    /// fields that vary per packet (id, TTL, length, checksum) are not hashed.
    pub fn flow_hash(frame: &[u8]) -> u32 {
        let mut m = Mixer(K);
        // Tag each layer so that, e.g., a truncated frame cannot collide with a longer one by
        // construction.
        match (mac(frame, 0), mac(frame, 6)) {
            (Some(dst), Some(src)) => {
                m.add(dst << 8 | 1);
                m.add(src);
            }
            _ => {
                // Shorter than two MACs: hash what there is.
                m.add(frame.len() as u64);
                for chunk in frame.chunks(8) {
                    let mut w = [0u8; 8];
                    w[..chunk.len()].copy_from_slice(chunk);
                    m.add(u64::from_le_bytes(w));
                }
                return m.finish();
            }
        }

        // One 802.1Q tag is skipped so tagged frames hash on their IP flow as well.
        let (mut ethertype, mut l3) = (be16(frame, 12), 14);
        if ethertype == Some(ETHERTYPE_VLAN) {
            ethertype = be16(frame, 16);
            l3 = 18;
        }
        let Some(ethertype) = ethertype else {
            return m.finish();
        };
        m.add(u64::from(ethertype) << 8 | 2);
        if ethertype != ETHERTYPE_IPV4 {
            return m.finish();
        }

        let Some(ip) = frame.get(l3..) else {
            return m.finish();
        };
        let (Some(&ver_ihl), Some(src), Some(dst), Some(&proto)) =
            (ip.first(), be32(ip, 12), be32(ip, 16), ip.get(9))
        else {
            return m.finish();
        };
        let ihl = usize::from(ver_ihl & 0x0f) * 4;
        if ver_ihl >> 4 != 4 || ihl < 20 {
            return m.finish();
        }
        m.add(u64::from(src) << 32 | u64::from(dst));
        m.add(u64::from(proto) << 8 | 3);

        // Flags and fragment offset: MF set or a non-zero offset means a fragment.
        let fragmented = be16(ip, 6).is_some_and(|f| f & 0x3fff != 0);
        if fragmented || (proto != IPPROTO_TCP && proto != IPPROTO_UDP) {
            return m.finish();
        }
        if let (Some(sport), Some(dport)) = (be16(ip, ihl), be16(ip, ihl + 2)) {
            m.add(u64::from(sport) << 16 | u64::from(dport));
        }
        m.finish()
    }
}

/// Frames that reach every branch: random bytes behind a valid-looking Ethernet/IPv4 header,
/// sometimes tagged, sometimes truncated.
fn frames() -> impl Strategy<Value = Vec<u8>> {
    (
        vec(any::<u8>(), 12..12 + 60),
        any::<bool>(),
        prop_oneof![Just(0x0800u16), Just(0x0806), Just(0x86dd), any::<u16>()],
        any::<u8>(),
        vec(any::<u8>(), 0..80),
        any::<bool>(),
        0usize..120,
    )
        .prop_map(|(head, vlan, ethertype, ver_ihl, rest, fix, cut)| {
            let mut f = head[..12].to_vec();
            if vlan {
                f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
            }
            f.extend_from_slice(&ethertype.to_be_bytes());
            let l3 = f.len();
            f.push(if ver_ihl % 3 == 0 { ver_ihl } else { 0x45 });
            f.extend_from_slice(&rest);
            if fix && f.len() >= l3 + 20 {
                // A plausible total length and a right checksum, so `valid` is often true.
                let total = (f.len() - l3).min(usize::from(u16::MAX)) as u16;
                f[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
                let mut ip = Ipv4Packet::new_unchecked(&mut f[l3..]);
                if ip.header_len() as usize <= ip.total_len() as usize {
                    ip.fill_checksum();
                }
            }
            if cut < f.len() && cut % 2 == 0 {
                f.truncate(cut);
            }
            f
        })
}

proptest! {
    #[test]
    fn flow_hash_equals_the_reference(frame in prop_oneof![frames(), vec(any::<u8>(), 0..80)]) {
        prop_assert_eq!(flow_hash(&frame), reference::flow_hash(&frame));
    }

    #[test]
    fn ipv4_valid_equals_smoltcp_checked_parse(frame in frames()) {
        let Ok(meta) = FrameMeta::parse(&frame) else {
            prop_assert!(frame.len() < 14);
            return Ok(());
        };
        if meta.vlan.is_some() || meta.ethertype != Some(softvpc_wire::EthernetProtocol::Ipv4) {
            return Ok(());
        }
        let l3 = &frame[14..];
        let expected = Ipv4Packet::new_checked(l3)
            .is_ok_and(|ip| ip.version() == 4 && ip.header_len() >= 20 && ip.verify_checksum());
        let got = matches!(meta.l3, L3Meta::Ipv4(ip) if ip.valid);
        prop_assert_eq!(got, expected);
        if let Some(ip) = meta.ipv4_packet() {
            prop_assert_eq!(ip.src_addr(), meta.ipv4().unwrap().src);
            prop_assert_eq!(ip.hop_limit(), meta.ipv4().unwrap().ttl);
        }
    }
}
