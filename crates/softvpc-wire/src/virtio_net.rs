//! The legacy 10-byte `virtio_net_hdr` a TAP device opened with `IFF_VNET_HDR` puts in front of
//! every frame, in smoltcp's two-level style.
//!
//! Why our own module: smoltcp has no virtio support, and the virtio crates on crates.io
//! (`virtio-bindings`, `virtio-drivers`, vhost crates) give C-layout structs or whole device
//! drivers, not a checked view over a byte buffer that validates untrusted offload metadata.
//! The fast path (64 KB TSO/GSO super-frames between TAP and the underlay) needs exactly that.
//!
//! Layout (virtio 1.x section 5.1.6, `struct virtio_net_hdr` without `num_buffers`):
//!
//! ```text
//! offset  size  field
//!      0     1  flags        NEEDS_CSUM 0x01, DATA_VALID 0x02
//!      1     1  gso_type     NONE 0, TCPV4 1, UDP 3, TCPV6 4, UDP_L4 5; | ECN 0x80
//!      2     2  hdr_len      length of the headers to copy into each segment
//!      4     2  gso_size     payload bytes per segment (the MSS)
//!      6     2  csum_start   where checksumming starts, from the start of the frame
//!      8     2  csum_offset  where to store the checksum, from csum_start
//! ```
//!
//! The 16-bit fields are little-endian: a TAP uses the host's byte order unless told otherwise
//! with `TUNSETVNETLE`/`TUNSETVNETBE`, and the hosts we run on (x86_64, aarch64) are
//! little-endian. With `TUNSETVNETHDRSZ` set to 12 a 2-byte `num_buffers` follows; that variant
//! is not used here.
//!
//! Two levels of checks, as the kernel's `tun_get_user`/`virtio_net_hdr_to_skb` make them:
//! [`Repr::parse`] validates the header alone (flags, GSO type and size, the checksum's place
//! within the frame), [`Repr::check_frame`] validates it against the frame it came with (the
//! header length, a GSO type that matches the frame's IP version and transport, the partial
//! checksum at that transport's checksum field). [`Repr::finish_checksum`] completes a partial
//! checksum in place, as a NIC or `skb_checksum_help` does.

use core::fmt;

/// Flag: the frame has a partial checksum; the receiver must finish it (`csum_start`,
/// `csum_offset` say where).
pub const FLAG_NEEDS_CSUM: u8 = 0x01;
/// Flag: the checksum of the frame has already been validated.
pub const FLAG_DATA_VALID: u8 = 0x02;
/// The flag bits this module knows.
pub const FLAGS_KNOWN: u8 = FLAG_NEEDS_CSUM | FLAG_DATA_VALID;

/// GSO type: not a GSO frame.
pub const GSO_NONE: u8 = 0;
/// GSO type: TCP over IPv4 (TSO).
pub const GSO_TCPV4: u8 = 1;
/// GSO type: UDP fragmentation offload (UFO, legacy).
pub const GSO_UDP: u8 = 3;
/// GSO type: TCP over IPv6 (TSO).
pub const GSO_TCPV6: u8 = 4;
/// GSO type: UDP segmentation offload (USO, `UDP_SEGMENT`).
pub const GSO_UDP_L4: u8 = 5;
/// GSO modifier bit: the TCP frame has CWR set; ECN must be handled when segmenting.
pub const GSO_ECN: u8 = 0x80;

/// Byte offsets of the header fields.
pub mod field {
    /// A byte range within the header.
    pub type Field = core::ops::Range<usize>;

    /// Flags (`NEEDS_CSUM`, `DATA_VALID`).
    pub const FLAGS: usize = 0;
    /// GSO type, with the ECN bit.
    pub const GSO_TYPE: usize = 1;
    /// Header length (little-endian).
    pub const HDR_LEN: Field = 2..4;
    /// Segment size (little-endian).
    pub const GSO_SIZE: Field = 4..6;
    /// Checksum start (little-endian).
    pub const CSUM_START: Field = 6..8;
    /// Checksum offset from `csum_start` (little-endian).
    pub const CSUM_OFFSET: Field = 8..10;
    /// The Ethernet frame.
    pub const PAYLOAD: core::ops::RangeFrom<usize> = 10..;
}

/// Length of the header in bytes.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// Why a buffer does not hold an acceptable `virtio_net_hdr`. Each is a reason to drop the frame
/// and count it as malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the 10-byte header.
    Truncated,
    /// A flag bit outside `NEEDS_CSUM | DATA_VALID` is set (the value is the flags byte).
    UnknownFlags(u8),
    /// Both `NEEDS_CSUM` and `DATA_VALID` are set, which the virtio spec forbids a sender to do.
    ConflictingFlags,
    /// The GSO type (without the ECN bit) is not one we know, or ECN is set without GSO.
    UnknownGsoType(u8),
    /// A GSO type is set but `gso_size` is 0: the frame could never be segmented.
    GsoWithoutSize,
    /// A GSO type is set without `NEEDS_CSUM`: segments would go out with wrong checksums.
    GsoWithoutChecksum,
    /// `csum_start + csum_offset + 2` is past the end of the frame: writing the checksum there
    /// would be out of bounds.
    ChecksumOutOfBounds,
    /// `hdr_len` is longer than the frame (the kernel's TAP refuses such a write too).
    HeaderLenOutOfBounds,
    /// The GSO type does not match the frame: TCPV4 on anything but an unfragmented IPv4 TCP
    /// segment, TCPV6 on anything but IPv6 TCP, UDP/UDP_L4 on anything but UDP, or the
    /// transport header is cut short. (A VLAN tag in front of a GSO frame is refused too: an
    /// instance's TAP never sends one.)
    GsoMismatch,
    /// A GSO frame whose partial checksum is not its transport header's checksum field
    /// (`csum_start` not at the TCP/UDP header, or `csum_offset` not 16 for TCP, 6 for UDP):
    /// every segment would get a checksum in the wrong place.
    ChecksumMisplaced,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => write!(f, "virtio_net_hdr shorter than 10 bytes"),
            Error::UnknownFlags(v) => write!(f, "virtio_net_hdr with unknown flags {v:#04x}"),
            Error::ConflictingFlags => {
                write!(f, "virtio_net_hdr with both NEEDS_CSUM and DATA_VALID")
            }
            Error::UnknownGsoType(v) => write!(f, "virtio_net_hdr with unknown gso_type {v:#04x}"),
            Error::GsoWithoutSize => write!(f, "virtio_net_hdr GSO frame with gso_size 0"),
            Error::GsoWithoutChecksum => {
                write!(f, "virtio_net_hdr GSO frame without NEEDS_CSUM")
            }
            Error::ChecksumOutOfBounds => {
                write!(
                    f,
                    "virtio_net_hdr checksum location past the end of the frame"
                )
            }
            Error::HeaderLenOutOfBounds => {
                write!(f, "virtio_net_hdr hdr_len past the end of the frame")
            }
            Error::GsoMismatch => write!(f, "virtio_net_hdr gso_type does not match the frame"),
            Error::ChecksumMisplaced => {
                write!(
                    f,
                    "virtio_net_hdr GSO frame with its checksum outside the L4 checksum field"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

/// A read/write view of a `virtio_net_hdr` followed by its Ethernet frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn read_le16(b: &[u8], f: field::Field) -> u16 {
    let b = &b[f];
    u16::from_le_bytes([b[0], b[1]])
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length; accessors may panic until
    /// [`check_len`](Self::check_len) has passed. Use [`new_checked`](Self::new_checked) on
    /// untrusted input.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after checking it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures no accessor will panic: the buffer holds at least [`HEADER_LEN`] bytes.
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flags byte.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The GSO type byte, ECN bit included.
    #[inline]
    pub fn gso_type(&self) -> u8 {
        self.buffer.as_ref()[field::GSO_TYPE]
    }

    /// The header length hint.
    #[inline]
    pub fn hdr_len(&self) -> u16 {
        read_le16(self.buffer.as_ref(), field::HDR_LEN)
    }

    /// The GSO segment size.
    #[inline]
    pub fn gso_size(&self) -> u16 {
        read_le16(self.buffer.as_ref(), field::GSO_SIZE)
    }

    /// Where checksumming starts, from the start of the frame.
    #[inline]
    pub fn csum_start(&self) -> u16 {
        read_le16(self.buffer.as_ref(), field::CSUM_START)
    }

    /// Where the checksum is stored, from `csum_start`.
    #[inline]
    pub fn csum_offset(&self) -> u16 {
        read_le16(self.buffer.as_ref(), field::CSUM_OFFSET)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The Ethernet frame after the header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags byte.
    #[inline]
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets the GSO type byte (ECN bit included).
    #[inline]
    pub fn set_gso_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::GSO_TYPE] = value;
    }

    /// Sets the header length hint.
    #[inline]
    pub fn set_hdr_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::HDR_LEN].copy_from_slice(&value.to_le_bytes());
    }

    /// Sets the GSO segment size.
    #[inline]
    pub fn set_gso_size(&mut self, value: u16) {
        self.buffer.as_mut()[field::GSO_SIZE].copy_from_slice(&value.to_le_bytes());
    }

    /// Sets where checksumming starts.
    #[inline]
    pub fn set_csum_start(&mut self, value: u16) {
        self.buffer.as_mut()[field::CSUM_START].copy_from_slice(&value.to_le_bytes());
    }

    /// Sets where the checksum is stored, from `csum_start`.
    #[inline]
    pub fn set_csum_offset(&mut self, value: u16) {
        self.buffer.as_mut()[field::CSUM_OFFSET].copy_from_slice(&value.to_le_bytes());
    }

    /// The Ethernet frame, mutably.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// What the frame's checksum state is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Checksum {
    /// Nothing said: the checksum in the frame is complete but not validated.
    None,
    /// `NEEDS_CSUM`: the L4 checksum field holds only the pseudo-header sum; the one's
    /// complement sum from `start` to the end of the frame goes at `start + offset`.
    Partial {
        /// Where checksumming starts, from the start of the frame.
        start: u16,
        /// Where the checksum is stored, from `start`.
        offset: u16,
    },
    /// `DATA_VALID`: the checksum has been validated already.
    DataValid,
}

/// The kind of segmentation a GSO frame asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GsoKind {
    /// TCP over IPv4.
    TcpV4,
    /// TCP over IPv6.
    TcpV6,
    /// Legacy UDP fragmentation (UFO).
    Udp,
    /// UDP segmentation (USO).
    UdpL4,
}

impl GsoKind {
    /// The `gso_type` value, without the ECN bit.
    pub const fn to_raw(self) -> u8 {
        match self {
            GsoKind::TcpV4 => GSO_TCPV4,
            GsoKind::TcpV6 => GSO_TCPV6,
            GsoKind::Udp => GSO_UDP,
            GsoKind::UdpL4 => GSO_UDP_L4,
        }
    }

    /// The kind for a `gso_type` value without the ECN bit (`None` for `GSO_NONE` or unknown).
    pub const fn from_raw(value: u8) -> Option<GsoKind> {
        match value {
            GSO_TCPV4 => Some(GsoKind::TcpV4),
            GSO_TCPV6 => Some(GsoKind::TcpV6),
            GSO_UDP => Some(GsoKind::Udp),
            GSO_UDP_L4 => Some(GsoKind::UdpL4),
            _ => None,
        }
    }
}

/// The segmentation a GSO frame asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gso {
    /// What to segment.
    pub kind: GsoKind,
    /// Payload bytes per segment (MSS); never 0 in a parsed `Repr`.
    pub size: u16,
    /// The ECN bit (TCP CWR handling).
    pub ecn: bool,
}

/// The validated meaning of a `virtio_net_hdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The checksum state of the frame.
    pub checksum: Checksum,
    /// Segmentation, if this is a GSO super-frame.
    pub gso: Option<Gso>,
    /// Length of the headers (Ethernet through L4) to copy into each segment; a hint, kept as
    /// sent (it may be set on non-GSO frames too).
    pub hdr_len: u16,
}

impl Repr {
    /// A header that asks for nothing: a plain, complete frame (all fields zero).
    pub const PLAIN: Repr = Repr {
        checksum: Checksum::None,
        gso: None,
        hdr_len: 0,
    };

    /// Reads and validates a checked header. The checksum location, when present, is checked to
    /// lie within the frame that follows the header.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr, Error> {
        packet.check_len()?;
        let flags = packet.flags();
        if flags & !FLAGS_KNOWN != 0 {
            return Err(Error::UnknownFlags(flags));
        }
        let checksum = match (flags & FLAG_NEEDS_CSUM != 0, flags & FLAG_DATA_VALID != 0) {
            (true, true) => return Err(Error::ConflictingFlags),
            (true, false) => {
                let (start, offset) = (packet.csum_start(), packet.csum_offset());
                // The checksum is a u16 stored at start + offset; it must fit in the frame.
                let end = usize::from(start) + usize::from(offset) + 2;
                if end > packet.payload().len() {
                    return Err(Error::ChecksumOutOfBounds);
                }
                Checksum::Partial { start, offset }
            }
            (false, true) => Checksum::DataValid,
            (false, false) => Checksum::None,
        };

        let raw = packet.gso_type();
        let ecn = raw & GSO_ECN != 0;
        let gso = match raw & !GSO_ECN {
            GSO_NONE if ecn => return Err(Error::UnknownGsoType(raw)),
            GSO_NONE => None,
            kind => {
                let kind = GsoKind::from_raw(kind).ok_or(Error::UnknownGsoType(raw))?;
                let size = packet.gso_size();
                if size == 0 {
                    return Err(Error::GsoWithoutSize);
                }
                if !matches!(checksum, Checksum::Partial { .. }) {
                    return Err(Error::GsoWithoutChecksum);
                }
                Some(Gso { kind, size, ecn })
            }
        };

        Ok(Repr {
            checksum,
            gso,
            hdr_len: packet.hdr_len(),
        })
    }

    /// Checks the header against the frame it came with (the bytes after the header): `hdr_len`
    /// within the frame, a partial checksum within the frame, and for a GSO frame a transport
    /// that matches the GSO type with its whole header, the partial checksum at that header's
    /// checksum field. A frame that passes can be segmented without reading out of bounds.
    pub fn check_frame(&self, frame: &[u8]) -> Result<(), Error> {
        if usize::from(self.hdr_len) > frame.len() {
            return Err(Error::HeaderLenOutOfBounds);
        }
        if let Checksum::Partial { start, offset } = self.checksum {
            if usize::from(start) + usize::from(offset) + 2 > frame.len() {
                return Err(Error::ChecksumOutOfBounds);
            }
        }
        let Some(gso) = self.gso else {
            return Ok(());
        };
        let (l4, proto) = transport_of(frame, gso.kind).ok_or(Error::GsoMismatch)?;
        let (want, csum_field) = match gso.kind {
            GsoKind::TcpV4 | GsoKind::TcpV6 => (IP_PROTO_TCP, TCP_CHECKSUM_FIELD),
            GsoKind::Udp | GsoKind::UdpL4 => (IP_PROTO_UDP, UDP_CHECKSUM_FIELD),
        };
        if proto != want {
            return Err(Error::GsoMismatch);
        }
        let l4_len = if proto == IP_PROTO_TCP {
            // The data offset, in 32-bit words; a TCP header is at least 20 bytes.
            let words = frame.get(l4 + 12).ok_or(Error::GsoMismatch)? >> 4;
            match usize::from(words) * 4 {
                len if len < TCP_MIN_HEADER_LEN => return Err(Error::GsoMismatch),
                len => len,
            }
        } else {
            UDP_HEADER_LEN
        };
        if l4 + l4_len > frame.len() {
            return Err(Error::GsoMismatch);
        }
        match self.checksum {
            Checksum::Partial { start, offset }
                if usize::from(start) == l4 && usize::from(offset) == csum_field =>
            {
                Ok(())
            }
            _ => Err(Error::ChecksumMisplaced),
        }
    }

    /// Completes a partial checksum (`NEEDS_CSUM`) in the frame, as a NIC or the kernel's
    /// `skb_checksum_help` does: the field at `csum_start + csum_offset` holds the
    /// pseudo-header's sum; the one's complement sum from `csum_start` to the end of the frame
    /// (that field included) is complemented and stored there. Frames without a partial
    /// checksum are left alone. `ChecksumOutOfBounds` if the field is not within `frame`
    /// (never for the frame a parsed header came with).
    pub fn finish_checksum(&self, frame: &mut [u8]) -> Result<(), Error> {
        let Checksum::Partial { start, offset } = self.checksum else {
            return Ok(());
        };
        let start = usize::from(start);
        let at = start + usize::from(offset);
        if at + 2 > frame.len() {
            return Err(Error::ChecksumOutOfBounds);
        }
        let sum = ones_complement_sum(&frame[start..]);
        frame[at..at + 2].copy_from_slice(&(!sum).to_be_bytes());
        Ok(())
    }

    /// The header length this representation emits.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header; the frame after it is left untouched.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let (flags, start, offset) = match self.checksum {
            Checksum::None => (0, 0, 0),
            Checksum::Partial { start, offset } => (FLAG_NEEDS_CSUM, start, offset),
            Checksum::DataValid => (FLAG_DATA_VALID, 0, 0),
        };
        let (gso_type, gso_size) = match self.gso {
            None => (GSO_NONE, 0),
            Some(g) => (g.kind.to_raw() | if g.ecn { GSO_ECN } else { 0 }, g.size),
        };
        packet.set_flags(flags);
        packet.set_gso_type(gso_type);
        packet.set_hdr_len(self.hdr_len);
        packet.set_gso_size(gso_size);
        packet.set_csum_start(start);
        packet.set_csum_offset(offset);
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERNET_LEN: usize = 14;
const IPV6_HEADER_LEN: usize = 40;
const IP_PROTO_TCP: u8 = 6;
const IP_PROTO_UDP: u8 = 17;
const UDP_HEADER_LEN: usize = 8;
const TCP_MIN_HEADER_LEN: usize = 20;
/// Offset of the checksum field in a TCP header.
pub const TCP_CHECKSUM_FIELD: usize = 16;
/// Offset of the checksum field in a UDP header.
pub const UDP_CHECKSUM_FIELD: usize = 6;

/// Where the transport header of `frame` starts and its IP protocol, for the IP version the GSO
/// kind allows (TCPV4: IPv4, TCPV6: IPv6, UDP kinds: either); `None` for anything else, an IPv4
/// fragment, or a cut-short IP header. IPv6 extension headers are not followed (the next header
/// must be the transport).
fn transport_of(frame: &[u8], kind: GsoKind) -> Option<(usize, u8)> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(ETHERNET_LEN..)?;
    let v4 = matches!(kind, GsoKind::TcpV4 | GsoKind::Udp | GsoKind::UdpL4);
    let v6 = matches!(kind, GsoKind::TcpV6 | GsoKind::Udp | GsoKind::UdpL4);
    match ethertype {
        ETHERTYPE_IPV4 if v4 => {
            let first = *ip.first()?;
            let ihl = usize::from(first & 0x0f) * 4;
            if first >> 4 != 4 || ihl < 20 || ip.len() < ihl {
                return None;
            }
            // More fragments or a fragment offset: a fragment cannot be segmented.
            if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
                return None;
            }
            Some((ETHERNET_LEN + ihl, ip[9]))
        }
        ETHERTYPE_IPV6 if v6 => {
            if ip.len() < IPV6_HEADER_LEN || ip[0] >> 4 != 6 {
                return None;
            }
            Some((ETHERNET_LEN + IPV6_HEADER_LEN, ip[6]))
        }
        _ => None,
    }
}

/// The folded 16-bit one's complement sum of `data` (big-endian words, an odd last byte padded
/// with zero), as the Internet checksum adds.
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    // u64: no overflow for any slice length that fits in memory.
    let mut sum: u64 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "virtio_net_hdr csum={:?}", self.checksum)?;
        if let Some(g) = self.gso {
            write!(f, " gso={:?} size={} ecn={}", g.kind, g.size, g.ecn)?;
        }
        write!(f, " hdr_len={}", self.hdr_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TSO super-frame header as Linux writes it to a TAP for a TCP/IPv4 flow: NEEDS_CSUM,
    /// TCPV4, hdr_len 66 (14 + 20 + 32), MSS 1398, csum_start 34 (14 + 20), csum_offset 16
    /// (the TCP checksum field).
    const TSO: [u8; 10] = [0x01, 0x01, 66, 0, 0x76, 0x05, 34, 0, 16, 0];

    fn with_frame(hdr: [u8; 10], frame_len: usize) -> Vec<u8> {
        let mut v = hdr.to_vec();
        v.resize(HEADER_LEN + frame_len, 0);
        v
    }

    #[test]
    fn reads_little_endian_fields() {
        let buf = with_frame(TSO, 100);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.flags(), FLAG_NEEDS_CSUM);
        assert_eq!(p.gso_type(), GSO_TCPV4);
        assert_eq!(p.hdr_len(), 66);
        assert_eq!(p.gso_size(), 1398);
        assert_eq!(p.csum_start(), 34);
        assert_eq!(p.csum_offset(), 16);
        assert_eq!(p.payload().len(), 100);
        assert_eq!(
            Repr::parse(&p),
            Ok(Repr {
                checksum: Checksum::Partial {
                    start: 34,
                    offset: 16
                },
                gso: Some(Gso {
                    kind: GsoKind::TcpV4,
                    size: 1398,
                    ecn: false
                }),
                hdr_len: 66,
            })
        );
    }

    #[test]
    fn emit_writes_the_same_bytes() {
        let mut buf = [0xffu8; HEADER_LEN + 4];
        let repr = Repr::parse(&Packet::new_checked(&with_frame(TSO, 60)[..]).unwrap()).unwrap();
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf[..HEADER_LEN], TSO);
        assert_eq!(buf[HEADER_LEN..], [0xff; 4], "payload untouched");
    }

    #[test]
    fn plain_is_all_zero() {
        let mut buf = [0xffu8; HEADER_LEN];
        Repr::PLAIN.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0; HEADER_LEN]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Repr::parse(&p), Ok(Repr::PLAIN));
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&TSO[..len]).unwrap_err(),
                Error::Truncated
            );
        }
    }

    #[test]
    fn checksum_must_fit_in_frame() {
        // csum at 34 + 16 = 50..52: a 52-byte frame fits, 51 does not.
        let p = with_frame(TSO, 52);
        assert!(Repr::parse(&Packet::new_checked(&p[..]).unwrap()).is_ok());
        let p = with_frame(TSO, 51);
        assert_eq!(
            Repr::parse(&Packet::new_checked(&p[..]).unwrap()),
            Err(Error::ChecksumOutOfBounds)
        );
        // Offsets near u16::MAX must not overflow.
        let mut hdr = TSO;
        hdr[6..10].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        let p = with_frame(hdr, 100);
        assert_eq!(
            Repr::parse(&Packet::new_checked(&p[..]).unwrap()),
            Err(Error::ChecksumOutOfBounds)
        );
    }

    #[test]
    fn rejects_bad_metadata() {
        let cases: [([u8; 10], Error); 6] = [
            ([0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0], Error::UnknownFlags(0x04)),
            ([0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0], Error::ConflictingFlags),
            (
                [0x01, 0x02, 0, 0, 1, 0, 0, 0, 0, 0],
                Error::UnknownGsoType(0x02),
            ),
            (
                [0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0],
                Error::UnknownGsoType(0x80),
            ),
            ([0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0], Error::GsoWithoutSize),
            (
                [0x00, 0x05, 0, 0, 1, 0, 0, 0, 0, 0],
                Error::GsoWithoutChecksum,
            ),
        ];
        for (hdr, err) in cases {
            let buf = with_frame(hdr, 64);
            let p = Packet::new_checked(&buf[..]).unwrap();
            assert_eq!(Repr::parse(&p), Err(err), "{hdr:02x?}");
        }
    }

    #[test]
    fn ecn_and_data_valid() {
        let buf = with_frame([0x01, 0x84, 0, 0, 0xa8, 0x05, 54, 0, 16, 0], 100);
        let r = Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!(
            r.gso,
            Some(Gso {
                kind: GsoKind::TcpV6,
                size: 1448,
                ecn: true
            })
        );
        let buf = with_frame([0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0], 10);
        let r = Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!(r.checksum, Checksum::DataValid);
        assert_eq!(r.gso, None);
    }
}
