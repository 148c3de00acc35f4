//! VXLAN header (RFC 7348, section 5), in smoltcp's two-level style.
//!
//! Why our own module: smoltcp has no VXLAN support, and the crates on crates.io that do either
//! allocate, parse into owned structs only (no in-place zero-copy view we can write through when
//! encapsulating into a preallocated buffer), or do not distinguish "truncated" from "I flag not
//! set", which the engine counts separately (`malformed` vs `vxlan_bad_flags`). The format is 8
//! bytes; owning it costs less than adapting a dependency.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Receive policy follows the RFC: the I flag must be set; the reserved bits are set to zero on
//! transmit and ignored on receipt ([`Packet::reserved_bits_clear`] lets a caller be stricter).

use core::fmt;

/// The IANA-assigned UDP destination port for VXLAN.
pub const UDP_PORT: u16 = 4789;

/// The "I" flag: the VNI field is valid. Must be set in every packet we accept.
pub const FLAG_I: u8 = 0x08;

/// The largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;

/// Byte offsets of the header fields, as in the RFC's diagram.
pub mod field {
    /// A byte range within the header.
    pub type Field = core::ops::Range<usize>;

    /// Flags byte (`RRRRIRRR`).
    pub const FLAGS: usize = 0;
    /// First reserved field (24 bits).
    pub const RESERVED0: Field = 1..4;
    /// VXLAN Network Identifier (24 bits, big-endian).
    pub const VNI: Field = 4..7;
    /// Second reserved field (8 bits).
    pub const RESERVED1: usize = 7;
    /// The inner Ethernet frame.
    pub const PAYLOAD: core::ops::RangeFrom<usize> = 8..;
}

/// Length of the VXLAN header in bytes.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// Why a buffer is not an acceptable VXLAN packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the 8-byte header: drop it and count it as malformed.
    Truncated,
    /// The I flag is not set, so the VNI is not valid (RFC 7348): drop it and count it as
    /// `vxlan_bad_flags`.
    BadFlags,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => write!(f, "VXLAN packet shorter than its 8-byte header"),
            Error::BadFlags => write!(f, "VXLAN header without the I flag"),
        }
    }
}

impl std::error::Error for Error {}

/// A read/write view of a VXLAN header followed by its inner Ethernet frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
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

    /// Whether the I flag (valid VNI) is set.
    #[inline]
    pub fn i_flag(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// The 24-bit VXLAN Network Identifier.
    #[inline]
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The first reserved field (24 bits).
    #[inline]
    pub fn reserved0(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::RESERVED0];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The second reserved field (8 bits).
    #[inline]
    pub fn reserved1(&self) -> u8 {
        self.buffer.as_ref()[field::RESERVED1]
    }

    /// Whether every reserved bit (flags other than I, both reserved fields) is zero, as a
    /// conforming sender leaves them. Receivers should ignore them (RFC 7348); this is for
    /// callers that want to be strict or count oddities.
    pub fn reserved_bits_clear(&self) -> bool {
        self.flags() & !FLAG_I == 0 && self.reserved0() == 0 && self.reserved1() == 0
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The inner Ethernet frame (everything after the header).
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

    /// Sets the VNI; only the low 24 bits of `value` are used.
    #[inline]
    pub fn set_vni(&mut self, value: u32) {
        let b = value.to_be_bytes();
        self.buffer.as_mut()[field::VNI].copy_from_slice(&b[1..4]);
    }

    /// Sets the first reserved field; only the low 24 bits of `value` are used.
    #[inline]
    pub fn set_reserved0(&mut self, value: u32) {
        let b = value.to_be_bytes();
        self.buffer.as_mut()[field::RESERVED0].copy_from_slice(&b[1..4]);
    }

    /// Sets the second reserved field.
    #[inline]
    pub fn set_reserved1(&mut self, value: u8) {
        self.buffer.as_mut()[field::RESERVED1] = value;
    }

    /// The inner Ethernet frame, mutably (to write it in place after the header).
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

/// The meaning of a VXLAN header: the VNI it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The 24-bit VNI (at most [`VNI_MAX`]; higher bits are dropped by [`Repr::emit`]).
    pub vni: u32,
}

impl Repr {
    /// Reads a checked header. Fails with [`Error::BadFlags`] when the I flag is not set;
    /// reserved bits are ignored (RFC 7348).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr, Error> {
        packet.check_len()?;
        if !packet.i_flag() {
            return Err(Error::BadFlags);
        }
        Ok(Repr { vni: packet.vni() })
    }

    /// The header length this representation emits.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header: I flag set, reserved fields zero. The payload is left untouched.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_flags(FLAG_I);
        packet.set_reserved0(0);
        packet.set_vni(self.vni);
        packet.set_reserved1(0);
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VXLAN vni={:#08x}", self.vni)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A header as Linux's vxlan driver sends it for VNI 0x000101, then 2 payload bytes.
    static PACKET: [u8; 10] = [0x08, 0, 0, 0, 0x00, 0x01, 0x01, 0x00, 0xaa, 0xbb];

    #[test]
    fn reads_fields() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.flags(), FLAG_I);
        assert!(p.i_flag());
        assert_eq!(p.vni(), 0x000101);
        assert_eq!(p.reserved0(), 0);
        assert_eq!(p.reserved1(), 0);
        assert!(p.reserved_bits_clear());
        assert_eq!(p.payload(), &[0xaa, 0xbb]);
        assert_eq!(Repr::parse(&p), Ok(Repr { vni: 0x000101 }));
    }

    #[test]
    fn emits_the_same_bytes() {
        let mut buf = [0xffu8; 10];
        buf[8] = 0xaa;
        buf[9] = 0xbb;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        Repr { vni: 0x000101 }.emit(&mut p);
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn emit_masks_vni_to_24_bits() {
        let mut buf = [0u8; HEADER_LEN];
        Repr { vni: 0xab12_3456 }.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
    }

    #[test]
    fn truncated_is_not_bad_flags() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&PACKET[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
        // Exactly a header, empty payload: fine.
        let p = Packet::new_checked(&PACKET[..HEADER_LEN]).unwrap();
        assert!(p.payload().is_empty());
    }

    #[test]
    fn missing_i_flag_is_bad_flags() {
        let mut buf = PACKET;
        buf[0] = 0x00;
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::BadFlags));
        buf[0] = 0xf7; // every bit but I
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::BadFlags));
    }

    #[test]
    fn reserved_bits_are_ignored_on_receipt() {
        let buf = [0xff, 0x12, 0x34, 0x56, 0x00, 0x00, 0x2a, 0x99];
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(!p.reserved_bits_clear());
        assert_eq!(p.reserved0(), 0x123456);
        assert_eq!(p.reserved1(), 0x99);
        assert_eq!(Repr::parse(&p), Ok(Repr { vni: 42 }));
    }
}
