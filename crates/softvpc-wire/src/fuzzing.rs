//! The bodies of the wire fuzz targets (`fuzz/fuzz_targets/wire_*.rs`).
//!
//! They live in the crate, not in `fuzz/`, so that the regression test
//! (`tests/regressions.rs`) replays saved crash inputs through exactly the code the fuzzer ran,
//! and so that proptests can call them too. Each takes arbitrary bytes and panics only when an
//! invariant of this crate is broken (a parser panicked, or emit -> parse did not round trip);
//! a parse error is an expected outcome, not a failure.

use core::fmt::{self, Write};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{ArpPacket, EthernetFrame, Ipv4Packet};

use crate::{dissect, flow, virtio_net, vxlan};

/// How many VXLAN-in-VXLAN levels [`frame`] follows (input bytes are the only other bound).
pub const MAX_NESTING: usize = 4;

/// A `fmt::Write` that discards output, so `Display` impls run without allocating.
struct Sink;

impl Write for Sink {
    fn write_str(&mut self, _: &str) -> fmt::Result {
        Ok(())
    }
}

/// VXLAN: checked view, every accessor, `Repr::parse`, and emit -> parse round trip.
pub fn vxlan(data: &[u8]) {
    let Ok(packet) = vxlan::Packet::new_checked(data) else {
        assert!(data.len() < vxlan::HEADER_LEN);
        return;
    };
    let _ = (
        packet.flags(),
        packet.reserved0(),
        packet.reserved1(),
        packet.reserved_bits_clear(),
    );
    assert_eq!(packet.payload().len(), data.len() - vxlan::HEADER_LEN);
    match vxlan::Repr::parse(&packet) {
        Ok(repr) => {
            assert!(packet.i_flag());
            assert!(repr.vni <= vxlan::VNI_MAX);
            let _ = write!(Sink, "{repr}");
            let mut buf = data.to_vec();
            let mut out = vxlan::Packet::new_unchecked(&mut buf[..]);
            repr.emit(&mut out);
            let again = vxlan::Packet::new_checked(&buf[..]).expect("emitted header fits");
            assert!(again.reserved_bits_clear());
            assert_eq!(vxlan::Repr::parse(&again), Ok(repr));
            assert_eq!(
                again.payload(),
                packet.payload(),
                "emit touched the payload"
            );
        }
        Err(e) => {
            assert_eq!(e, vxlan::Error::BadFlags);
            assert!(!packet.i_flag());
        }
    }
}

/// virtio_net_hdr as a TAP hands it over (the header, then the frame): checked view, every
/// accessor, `Repr::parse`, emit -> parse round trip, `Repr::check_frame` against the frame
/// (what it accepts can be segmented: headers within the frame), and `Repr::finish_checksum`
/// (in bounds for any parsed header; the finished checksum verifies against the pseudo-header
/// sum the field held).
pub fn virtio_net(data: &[u8]) {
    let Ok(packet) = virtio_net::Packet::new_checked(data) else {
        assert!(data.len() < virtio_net::HEADER_LEN);
        return;
    };
    let _ = (packet.gso_type(), packet.gso_size(), packet.hdr_len());
    let Ok(repr) = virtio_net::Repr::parse(&packet) else {
        return;
    };
    if let virtio_net::Checksum::Partial { start, offset } = repr.checksum {
        // The promise parse makes: the checksum can be written in place without going out of
        // bounds.
        let at = usize::from(start) + usize::from(offset);
        assert!(packet.payload().get(at..at + 2).is_some());
    }
    let _ = write!(Sink, "{repr}");
    let frame = packet.payload();
    if repr.check_frame(frame).is_ok() {
        assert!(usize::from(repr.hdr_len) <= frame.len());
        if repr.gso.is_some() {
            let virtio_net::Checksum::Partial { start, offset } = repr.checksum else {
                panic!("a GSO frame passed check_frame without a partial checksum");
            };
            assert!(
                usize::from(offset) == virtio_net::TCP_CHECKSUM_FIELD
                    || usize::from(offset) == virtio_net::UDP_CHECKSUM_FIELD
            );
            assert!(usize::from(start) + usize::from(offset) + 2 <= frame.len());
        }
    }
    let mut finished = frame.to_vec();
    repr.finish_checksum(&mut finished)
        .expect("parse checked the checksum's place");
    if let virtio_net::Checksum::Partial { start, offset } = repr.checksum {
        let (start, at) = (usize::from(start), usize::from(start) + usize::from(offset));
        assert_eq!(
            finished[..at],
            frame[..at],
            "finish touched bytes before the checksum"
        );
        assert_eq!(
            finished[at + 2..],
            frame[at + 2..],
            "finish touched bytes after it"
        );
        if offset % 2 == 0 {
            // The receiver's check: the pseudo-header sum (what the field held) plus the
            // finished bytes sums to all ones.
            let pseudo = u16::from_be_bytes([frame[at], frame[at + 1]]);
            let sum = virtio_net::ones_complement_sum(&finished[start..]);
            let total = u32::from(pseudo) + u32::from(sum);
            let folded = (total & 0xffff) + (total >> 16);
            assert_eq!(folded, 0xffff, "finished checksum does not verify");
        }
    }
    let mut buf = data.to_vec();
    repr.emit(&mut virtio_net::Packet::new_unchecked(&mut buf[..]));
    let again = virtio_net::Packet::new_checked(&buf[..]).expect("emitted header fits");
    assert_eq!(virtio_net::Repr::parse(&again), Ok(repr));
    assert_eq!(
        again.payload(),
        packet.payload(),
        "emit touched the payload"
    );
}

/// A whole frame: [`dissect`](crate::dissect()) with and without checksum verification,
/// following VXLAN payloads up to [`MAX_NESTING`] levels, plus the flow hash and the raw
/// accessors of each layer's checked view.
pub fn frame(data: &[u8]) {
    for caps in [
        ChecksumCapabilities::default(),
        ChecksumCapabilities::ignored(),
    ] {
        let mut bytes = data;
        for _ in 0..MAX_NESTING {
            let hash = flow::flow_hash(bytes);
            assert_eq!(hash, flow::flow_hash(bytes), "flow hash not deterministic");
            let port = flow::vxlan_source_port(hash);
            assert!(port >= flow::VXLAN_SOURCE_PORT_MIN);
            accessors(bytes);
            meta(bytes, hash);
            let d = dissect::dissect(bytes, &caps);
            let _ = write!(Sink, "{d}");
            match d.vxlan_inner {
                Some(inner) => bytes = inner,
                None => break,
            }
        }
    }
}

/// The one parse ([`FrameMeta`](crate::FrameMeta), the flow key extraction): it agrees with
/// the flow hash, a key reversed twice is itself, and the views it hands out are safe to read.
fn meta(data: &[u8], hash: u32) {
    let Ok(m) = crate::FrameMeta::parse(data) else {
        assert!(data.len() < crate::ETHERNET_HEADER_LEN);
        return;
    };
    assert_eq!(m.flow_hash(), hash, "the parse and the flow hash disagree");
    if let Some(key) = m.flow_key() {
        assert_eq!(key.reversed().reversed(), key);
    }
    if let Some(ip) = m.ipv4_packet() {
        let _ = (ip.payload().len(), ip.total_len(), ip.next_header());
    }
    let _ = m.l3_bytes().len();
}

/// Calls the accessors `Repr::parse` may skip (it stops at the first bad field), on whatever
/// layers pass `new_checked`: the contract is that none of them panics after that.
fn accessors(data: &[u8]) {
    let Ok(eth) = EthernetFrame::new_checked(data) else {
        return;
    };
    let _ = (eth.dst_addr(), eth.src_addr(), eth.ethertype());
    let payload = eth.payload();
    if let Ok(arp) = ArpPacket::new_checked(payload) {
        let _ = (
            arp.hardware_type(),
            arp.protocol_type(),
            arp.operation(),
            arp.source_hardware_addr(),
            arp.source_protocol_addr(),
            arp.target_hardware_addr(),
            arp.target_protocol_addr(),
        );
    }
    if let Ok(ip) = Ipv4Packet::new_checked(payload) {
        let _ = (
            ip.version(),
            ip.header_len(),
            ip.dscp(),
            ip.ecn(),
            ip.total_len(),
            ip.ident(),
            ip.dont_frag(),
            ip.more_frags(),
            ip.frag_offset(),
            ip.hop_limit(),
            ip.next_header(),
            ip.checksum(),
            ip.src_addr(),
            ip.dst_addr(),
            ip.verify_checksum(),
            ip.payload().len(),
        );
    }
}
