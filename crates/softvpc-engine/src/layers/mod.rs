//! The layers a frame walks through, one module each (in the spirit of OPTE's VPC layers).
//!
//! Egress (a frame an instance sent on its port), in order:
//!
//! 1. [`antispoof`]: the source MAC (and, per protocol, source IPv4 / ARP sender) must be the
//!    ENI's own.
//! 2. [`gateway`]: services the VPC provides on the host itself, so that nothing broadcast ever
//!    leaves it: proxy ARP ([`gateway::arp`]) and ICMP echo for the subnet router address
//!    ([`gateway::icmp`]). DHCP will be a sibling module here (it must see the
//!    `0.0.0.0 -> 255.255.255.255` discover that anti-spoofing lets through for it).
//! 3. *(insertion point)* network ACLs (stateless, per subnet), then security groups (stateful,
//!    per ENI, with a flow table), then NAT (for gateways): each a module of its own, called
//!    from `engine::egress_ipv4` between the gateway and the route lookup, returning
//!    `Result<_, DropReason>` with a new reason of its own.
//! 4. [`route`]: which ENI the destination is, whether the frame is bridged (same subnet, MACs
//!    kept) or routed (through the router MAC: MACs rewritten, TTL decremented).
//! 5. [`overlay`]: same host, straight to the target's port; other host, VXLAN-encapsulated to
//!    the owner's underlay address.
//!
//! Ingress (a VXLAN datagram from the underlay): [`overlay`] decapsulates it and checks that
//! the inner frame is for an ENI of that VNI on this host; security groups (ingress rules) will
//! slot in after that check.
//!
//! Each layer either passes the frame on or ends it with a `Verdict`.

pub mod antispoof;
pub mod gateway;
pub mod overlay;
pub mod route;

use crate::counters::Path;
use crate::{DropReason, PortId, Transmit};

/// How one input frame or datagram ended. Exactly one per input: the engine counts it.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Write `frame` to local `port`; `path` says why (forwarded, decapsulated, ARP or ICMP
    /// reply).
    ToPort {
        port: PortId,
        frame: Vec<u8>,
        path: Path,
    },
    /// Send a datagram on the underlay.
    ToUnderlay(Transmit),
    /// Consumed on purpose (not an error): counted under `path`.
    Absorb(Path),
    /// Dropped and counted under the reason.
    Drop(DropReason),
}

impl From<DropReason> for Verdict {
    fn from(reason: DropReason) -> Self {
        Verdict::Drop(reason)
    }
}

/// Checks an IPv4 packet from untrusted input: whole (smoltcp's length checks), version 4, a
/// header of at least 20 bytes, a valid header checksum. Anything else is `malformed`.
#[inline]
pub(crate) fn checked_ipv4(payload: &[u8]) -> Result<softvpc_wire::Ipv4Packet<&[u8]>, DropReason> {
    let ip = softvpc_wire::Ipv4Packet::new_checked(payload).map_err(|_| DropReason::Malformed)?;
    if ip.version() != 4 || ip.header_len() < 20 || !ip.verify_checksum() {
        return Err(DropReason::Malformed);
    }
    Ok(ip)
}
