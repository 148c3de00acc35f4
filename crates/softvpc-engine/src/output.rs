//! What the engine wants done after a batch, written into buffers the shell owns.
//!
//! [`Output`] is one byte arena plus two lists of descriptors: frames for local ports and
//! datagrams for the underlay, each a range of the arena. The shell keeps one `Output`, hands it
//! to every entry point, performs it ([`Output::to_ports`], [`Output::transmits`]) and
//! [`clear`](Output::clear)s it: the arena and the lists keep their capacity, so once they have
//! grown to a batch's high-water mark the engine allocates nothing per packet (the
//! `allocations` test counts it).

use std::net::Ipv4Addr;
use std::ops::Range;

use crate::PortId;

/// One UDP datagram to send on the underlay; `payload` starts with the VXLAN header.
///
/// Checksum: the outer UDP checksum is 0 (RFC 7348 allows it over IPv4); the shell sends it
/// with a raw socket from `EngineConfig::underlay_ip`. For GSO super-frames a `segment_size`
/// field will be added (as in quinn's `Transmit`): the payload is then several datagrams' worth
/// sent in one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit<'a> {
    /// The receiving host's underlay address.
    pub dst_ip: Ipv4Addr,
    /// The VXLAN port (4789).
    pub dst_port: u16,
    /// Outer UDP source port: a hash of the inner flow (RFC 7348 5.), in 49152..=65535.
    pub src_port: u16,
    /// The UDP payload: VXLAN header and inner frame.
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Datagram {
    dst_ip: Ipv4Addr,
    dst_port: u16,
    src_port: u16,
    range: Range<usize>,
}

/// Frames to write to local ports and datagrams to send on the underlay, in the order the
/// engine produced them (per kind). See the [module docs](self).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Output {
    bytes: Vec<u8>,
    frames: Vec<(PortId, Range<usize>)>,
    datagrams: Vec<Datagram>,
    dns_forwards: Vec<(crate::layers::gateway::dns::Asker, Range<usize>)>,
    imds: Vec<(PortId, Range<usize>)>,
}

impl Output {
    /// An empty output whose arena already holds `bytes` bytes (a batch's worth avoids even the
    /// first growth).
    pub fn with_capacity(bytes: usize) -> Self {
        Output {
            bytes: Vec::with_capacity(bytes),
            ..Output::default()
        }
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
            && self.datagrams.is_empty()
            && self.dns_forwards.is_empty()
            && self.imds.is_empty()
    }

    /// Forgets everything, keeping the capacity.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.frames.clear();
        self.datagrams.clear();
        self.dns_forwards.clear();
        self.imds.clear();
    }

    /// The IPv4 packets for the instance metadata server, each with the port it came from
    /// (hand the server's answers to
    /// [`Engine::handle_imds_reply`](crate::Engine::handle_imds_reply) with that port).
    pub fn imds(&self) -> impl ExactSizeIterator<Item = (PortId, &[u8])> + '_ {
        self.imds.iter().map(|(p, r)| (*p, &self.bytes[r.clone()]))
    }

    /// Queues a copy of `packet` from `port` for the metadata server.
    pub(crate) fn push_imds(&mut self, port: PortId, packet: &[u8]) -> usize {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(packet);
        self.imds.push((port, start..self.bytes.len()));
        packet.len()
    }

    /// The DNS queries to forward to the upstream resolver, each with who asked (hand it back
    /// with the answer to [`Engine::handle_dns_answer`](crate::Engine::handle_dns_answer)).
    pub fn dns_forwards(
        &self,
    ) -> impl ExactSizeIterator<Item = (crate::layers::gateway::dns::Asker, &[u8])> + '_ {
        self.dns_forwards
            .iter()
            .map(|(a, r)| (*a, &self.bytes[r.clone()]))
    }

    /// Queues a copy of `query` to forward for `asker`.
    pub(crate) fn push_dns_forward(
        &mut self,
        asker: crate::layers::gateway::dns::Asker,
        query: &[u8],
    ) -> usize {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(query);
        self.dns_forwards.push((asker, start..self.bytes.len()));
        query.len()
    }

    /// The frames for local ports, in order.
    pub fn to_ports(&self) -> impl ExactSizeIterator<Item = (PortId, &[u8])> + '_ {
        self.frames
            .iter()
            .map(|(port, r)| (*port, &self.bytes[r.clone()]))
    }

    /// The datagrams for the underlay, in order.
    pub fn transmits(&self) -> impl ExactSizeIterator<Item = Transmit<'_>> + '_ {
        self.datagrams.iter().map(|d| Transmit {
            dst_ip: d.dst_ip,
            dst_port: d.dst_port,
            src_port: d.src_port,
            payload: &self.bytes[d.range.clone()],
        })
    }

    /// Appends `len` bytes to the arena, lets `fill` write them, and queues them for `port`.
    /// Returns the number of bytes queued.
    pub(crate) fn push_port_frame(
        &mut self,
        port: PortId,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> usize {
        let range = self.append(len, fill);
        self.frames.push((port, range));
        len
    }

    /// Appends a copy of `frame` for `port`, then lets `edit` rewrite the copy in place.
    pub(crate) fn push_port_copy(
        &mut self,
        port: PortId,
        frame: &[u8],
        edit: impl FnOnce(&mut [u8]),
    ) -> usize {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(frame);
        edit(&mut self.bytes[start..]);
        self.frames.push((port, start..start + frame.len()));
        frame.len()
    }

    /// Appends a datagram whose payload is `header` followed by a copy of `frame` (then
    /// rewritten in place by `edit`). Returns the payload length.
    pub(crate) fn push_datagram(
        &mut self,
        dst_ip: Ipv4Addr,
        dst_port: u16,
        src_port: u16,
        header: &[u8],
        frame: &[u8],
        edit: impl FnOnce(&mut [u8]),
    ) -> usize {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(header);
        let inner = self.bytes.len();
        self.bytes.extend_from_slice(frame);
        edit(&mut self.bytes[inner..]);
        let range = start..self.bytes.len();
        let len = range.len();
        self.datagrams.push(Datagram {
            dst_ip,
            dst_port,
            src_port,
            range,
        });
        len
    }

    fn append(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.resize(start + len, 0);
        fill(&mut self.bytes[start..]);
        start..start + len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_keep_their_order_and_bytes_and_clear_keeps_capacity() {
        let mut out = Output::default();
        out.push_port_copy(PortId(1), b"abc", |f| f[0] = b'x');
        out.push_datagram(Ipv4Addr::LOCALHOST, 4789, 50000, b"HDR", b"def", |f| {
            f[2] = b'F'
        });
        out.push_port_frame(PortId(2), 2, |f| f.copy_from_slice(b"gh"));
        let ports: Vec<_> = out.to_ports().collect();
        assert_eq!(
            ports,
            vec![(PortId(1), &b"xbc"[..]), (PortId(2), &b"gh"[..])]
        );
        let t: Vec<_> = out.transmits().collect();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].payload, b"HDRdeF");
        assert_eq!((t[0].dst_port, t[0].src_port), (4789, 50000));
        let cap = out.bytes.capacity();
        out.clear();
        assert!(out.is_empty());
        assert_eq!(out.bytes.capacity(), cap);
    }
}
