//! The instance metadata service's place in the router (issue 11): TCP to 169.254.169.254
//! port 80 from a local port is taken off the data path before any security group or ACL (AWS
//! never filters it) and handed to the shell as the IPv4 packet it is, with the port it came
//! from; the shell's metadata server (the agent's `imds`, a TCP/IP stack per port) answers with
//! IPv4 packets that [`Engine::handle_imds_reply`](crate::Engine::handle_imds_reply) checks and
//! frames back to that same port only. The port is the identity: the server learns which ENI
//! asked from the port, never from anything in the packet, so no instance can see another's
//! metadata.
//!
//! Nothing else to 169.254.169.254 is served (other ports, other protocols): such packets go
//! on to the route layer, which has no route for link-local addresses.

use std::net::Ipv4Addr;

use softvpc_wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Packet,
    TcpPacket,
};

use crate::mapping::{EniEntry, Mac};

/// The metadata service's address.
pub const ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// Its HTTP port.
pub const PORT: u16 = 80;

/// Why a packet of the metadata server was not framed to its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// Checks a packet of the metadata server for `eni` (behind the port it answers): a whole IPv4
/// packet without options from 169.254.169.254 port 80, TCP, to one of the ENI's own addresses.
/// The packet's IP TTL is the server's to choose (the token's hop limit), so it is kept.
pub fn check_reply(eni: &EniEntry, packet: &[u8]) -> Result<(), Invalid> {
    let ip = Ipv4Packet::new_checked(packet).map_err(|_| Invalid)?;
    if ip.version() != 4
        || usize::from(ip.total_len()) != packet.len()
        || ip.next_header() != IpProtocol::Tcp
        || ip.src_addr() != ADDR
        || !eni.owns_ip(ip.dst_addr())
        || !ip.verify_checksum()
    {
        return Err(Invalid);
    }
    let tcp = TcpPacket::new_checked(ip.payload()).map_err(|_| Invalid)?;
    if tcp.src_port() != PORT {
        return Err(Invalid);
    }
    Ok(())
}

/// The length of the frame carrying `packet`.
pub fn frame_len(packet: &[u8]) -> usize {
    EthernetFrame::<&[u8]>::header_len() + packet.len()
}

/// Writes `packet` in an Ethernet frame from the router's MAC to `dst_mac` into `buf`
/// ([`frame_len`] bytes).
pub fn emit(buf: &mut [u8], router_mac: Mac, dst_mac: Mac, packet: &[u8]) {
    let mut frame = EthernetFrame::new_unchecked(&mut *buf);
    EthernetRepr {
        src_addr: EthernetAddress(router_mac),
        dst_addr: EthernetAddress(dst_mac),
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut frame);
    frame.payload_mut()[..packet.len()].copy_from_slice(packet);
}
