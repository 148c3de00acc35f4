//! Gateway services: what the VPC's virtual router does itself, on the host, so that no ARP,
//! broadcast or multicast frame ever crosses the underlay, and nothing leaves an instance under
//! another's name.
//!
//! Egress, in order:
//! - [`antispoof`]: the source MAC must be the ENI's (then, per protocol, the ARP sender or the
//!   IPv4 source);
//! - [`arp`]: proxy ARP for every ENI address of the VPC and for the subnet router (.1): every
//!   ARP frame ends here;
//! - IPv4: the header must be valid; [`dhcp`] answers the client's DHCP messages (to the
//!   limited broadcast or the subnet router); [`dns`] answers UDP queries to the VPC's
//!   resolver (base + 2, 169.254.169.253) or hands them to the shell to forward; [`imds`]
//!   hands TCP to 169.254.169.254:80 to the shell's metadata server; other
//!   broadcast and multicast are refused;
//!   [`icmp`] answers echo requests to the subnet router address.
//!
//! Ingress: nothing to answer (ARP and broadcasts never cross the underlay; the overlay refuses
//! them), so the layer passes.

pub mod antispoof;
pub mod arp;
pub mod dhcp;
pub mod dns;
pub mod icmp;
pub mod imds;

use softvpc_wire::{EthernetProtocol, IpProtocol, Ipv4Meta, L3Meta, L4Key, UdpPacket, UdpRepr};

use std::net::Ipv4Addr;

use softvpc_wire::Ipv4Packet;

use super::{Ctx, LayerResult, Packet, Reply, Step};
use crate::counters::Path;
use crate::mapping::{router_mac, EniEntry, SubnetEntry};
use crate::DropReason;

/// A DHCP answer on its way to the port: the frame is written from it by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpReply {
    /// The VPC router's MAC (the answer's source).
    pub router_mac: [u8; 6],
    /// The asking ENI as DHCP sees it.
    pub lease: dhcp::Lease,
    /// The answer.
    pub answer: dhcp::Answer,
}

/// Egress: anti-spoofing, ARP, the router address, no broadcast.
#[inline]
pub(crate) fn egress<'a>(cx: Ctx<'_>, pkt: &mut Packet<'a, '_>) -> LayerResult {
    let Some((port, eni)) = pkt.sender else {
        return Err(DropReason::UnknownPort);
    };
    let meta = &pkt.meta;
    antispoof::check_src_mac(eni, meta.src_mac.0)?;
    if meta.vlan.is_some() {
        return Err(DropReason::UnsupportedEthertype);
    }
    let ip = match meta.l3 {
        L3Meta::Arp(Some(arp)) => {
            return match arp::handle(cx.table, eni, &arp)? {
                arp::Answer::Reply(reply) => {
                    pkt.reply = Some((port, reply));
                    Ok(Step::Reply)
                }
                arp::Answer::Absorb(path) => Ok(Step::Absorb(path)),
            };
        }
        L3Meta::Arp(None) | L3Meta::Ipv4Unreadable => return Err(DropReason::Malformed),
        L3Meta::Other => return Err(DropReason::UnsupportedEthertype),
        L3Meta::Ipv4(ip) if ip.valid => ip,
        L3Meta::Ipv4(_) => return Err(DropReason::Malformed),
    };
    debug_assert_eq!(meta.ethertype, Some(EthernetProtocol::Ipv4));
    let (src, dst) = (ip.src, ip.dst);
    antispoof::check_ipv4_src(eni, src, dst)?;

    let dst_mac = meta.dst_mac;
    let subnet = eni.subnet.and_then(|s| cx.table.subnet(s));
    if ip.proto == IpProtocol::Udp
        && ip.l4
            == (L4Key::Ports {
                src: dhcp::CLIENT_PORT,
                dst: dhcp::SERVER_PORT,
            })
        && (dst.is_broadcast() || subnet.is_some_and(|s| s.router_ip == dst))
    {
        return dhcp_request(cx, pkt, port, eni, subnet, ip);
    }
    if ip.proto == IpProtocol::Udp
        && matches!(ip.l4, L4Key::Ports { dst: dns::PORT, .. })
        && (dst == dns::LINK_LOCAL || resolver_ip(cx, pkt.vni) == Some(dst))
    {
        return dns_query(cx, pkt, port, eni, ip);
    }
    if dst == imds::ADDR
        && ip.proto == IpProtocol::Tcp
        && matches!(
            ip.l4,
            L4Key::Ports {
                dst: imds::PORT,
                ..
            }
        )
    {
        return imds_request(pkt, port, ip);
    }
    let directed_broadcast = subnet.is_some_and(|s| s.cidr.broadcast() == dst);
    if !dst_mac.is_unicast() || dst.is_broadcast() || dst.is_multicast() || directed_broadcast {
        return Err(DropReason::BroadcastNotForwarded);
    }

    if let Some(router_subnet) = cx.table.router_subnet(pkt.vni, dst) {
        // The router address of the sender's own subnet answers pings; nothing else is served.
        let rmac = router_mac(pkt.vni);
        return match subnet {
            Some(own) if own.subnet_id == router_subnet.subnet_id && dst_mac.0 == rmac => {
                let reply = icmp::to_router(eni, rmac, router_subnet.router_ip, &pkt.meta)?;
                pkt.reply = Some((port, reply));
                Ok(Step::Reply)
            }
            _ => Err(DropReason::NoRoute),
        };
    }
    Ok(Step::Next)
}

/// A DHCP client message from `eni`: answered on its port, absorbed, or dropped as
/// `dhcp_invalid` (also when its UDP header or checksum is bad).
#[cold]
fn dhcp_request<'a>(
    cx: Ctx<'_>,
    pkt: &mut Packet<'a, '_>,
    port: crate::PortId,
    eni: &EniEntry,
    subnet: Option<&SubnetEntry>,
    ip: Ipv4Meta,
) -> LayerResult {
    let (Some(subnet), Some(vpc), Some(packet)) =
        (subnet, cx.table.vpc(pkt.vni), pkt.meta.ipv4_packet())
    else {
        return Err(DropReason::DhcpInvalid);
    };
    let Some(base) = vpc.cidrs.first() else {
        return Err(DropReason::DhcpInvalid);
    };
    let bytes: &[u8] = packet.into_inner();
    let total = usize::from(Ipv4Packet::new_unchecked(bytes).total_len());
    let udp_bytes = bytes
        .get(usize::from(ip.header_len)..total)
        .ok_or(DropReason::DhcpInvalid)?;
    let udp = UdpPacket::new_checked(udp_bytes).map_err(|_| DropReason::DhcpInvalid)?;
    UdpRepr::parse(
        &udp,
        &ip.src.into(),
        &ip.dst.into(),
        &softvpc_wire::ChecksumCapabilities::default(),
    )
    .map_err(|_| DropReason::DhcpInvalid)?;
    let lease = dhcp::Lease {
        mac: eni.mac,
        ip: eni.ip,
        prefix_len: subnet.cidr.prefix_len(),
        router: subnet.router_ip,
        dns: Ipv4Addr::from(u32::from(base.network()).wrapping_add(2)),
    };
    let default_set;
    let set = match &vpc.services {
        Some(services) => &services.dhcp,
        None => {
            default_set = dhcp::OptionSet::amazon_default(lease.dns, &cx.config.dhcp.domain_name);
            &default_set
        }
    };
    match dhcp::answer_with(udp.payload(), &lease, &cx.config.dhcp, set) {
        Ok(answer) => {
            pkt.reply = Some((
                port,
                Reply::Dhcp(Box::new(DhcpReply {
                    router_mac: router_mac(pkt.vni),
                    lease,
                    answer,
                })),
            ));
            Ok(Step::Reply)
        }
        Err(dhcp::Ignored::NoAnswer) => Ok(Step::Absorb(Path::DhcpAbsorbed)),
        Err(dhcp::Ignored::Invalid) => Err(DropReason::DhcpInvalid),
    }
}

/// The VPC's resolver address: its (primary) CIDR's base + 2.
#[inline]
pub(crate) fn resolver_ip(cx: Ctx<'_>, vni: crate::mapping::Vni) -> Option<Ipv4Addr> {
    let base = cx.table.vpc(vni)?.cidrs.first()?.network();
    Some(Ipv4Addr::from(u32::from(base).wrapping_add(2)))
}

/// A UDP query to the VPC's resolver from `eni`: answered on its port, handed to the shell to
/// forward, or dropped (`dns_disabled`, `dns_invalid`, also for a bad UDP header or checksum).
#[cold]
fn dns_query<'a>(
    cx: Ctx<'_>,
    pkt: &mut Packet<'a, '_>,
    port: crate::PortId,
    eni: &EniEntry,
    ip: Ipv4Meta,
) -> LayerResult {
    let (Some(vpc), Some(packet)) = (cx.table.vpc(pkt.vni), pkt.meta.ipv4_packet()) else {
        return Err(DropReason::DnsInvalid);
    };
    let services = vpc.services.as_deref();
    if services.is_some_and(|s| !s.dns_support) {
        return Err(DropReason::DnsDisabled);
    }
    let bytes: &'a [u8] = packet.into_inner();
    let total = usize::from(Ipv4Packet::new_unchecked(bytes).total_len());
    let udp_bytes = bytes
        .get(usize::from(ip.header_len)..total)
        .ok_or(DropReason::DnsInvalid)?;
    let udp = UdpPacket::new_checked(udp_bytes).map_err(|_| DropReason::DnsInvalid)?;
    UdpRepr::parse(
        &udp,
        &ip.src.into(),
        &ip.dst.into(),
        &softvpc_wire::ChecksumCapabilities::default(),
    )
    .map_err(|_| DropReason::DnsInvalid)?;
    let src_port = udp.src_port();
    let payload: &'a [u8] = &udp_bytes[8..usize::from(udp.len()).max(8)];
    let zone = dns::Zone {
        private_domain: services.map_or(&cx.config.dhcp.domain_name[..], |s| &s.private_domain),
        region: services.map_or("us-east-1", |s| &s.region),
        cidrs: &vpc.cidrs,
        hostnames: services.is_some_and(|s| s.dns_hostnames),
        upstream: cx.config.dns_upstream,
    };
    let table = cx.table;
    let vni = pkt.vni;
    let public = |public_ip: Ipv4Addr| table.private_of_public(vni, public_ip);
    let asker = dns::Asker {
        port,
        vni,
        mac: eni.mac,
        ip: ip.src,
        src_port,
        server: ip.dst,
    };
    match dns::resolve(payload, &zone, &public).map_err(|_| DropReason::DnsInvalid)? {
        dns::Resolution::Answer(answer) => {
            pkt.reply = Some((
                port,
                Reply::Dns(Box::new(dns::DnsReply {
                    router_mac: router_mac(vni),
                    asker,
                    payload: answer,
                })),
            ));
        }
        dns::Resolution::Forward => {
            pkt.reply = Some((port, Reply::DnsForward(Box::new(asker), payload)));
        }
    }
    Ok(Step::Reply)
}

/// TCP to the metadata service from `port`: the whole IPv4 packet goes to the shell's metadata
/// server (a fragment or a truncated packet is dropped as malformed).
#[cold]
fn imds_request<'a>(pkt: &mut Packet<'a, '_>, port: crate::PortId, ip: Ipv4Meta) -> LayerResult {
    if ip.fragment {
        return Err(DropReason::Malformed);
    }
    let packet = pkt.meta.ipv4_packet().ok_or(DropReason::Malformed)?;
    let bytes: &'a [u8] = packet.into_inner();
    let total = usize::from(Ipv4Packet::new_unchecked(bytes).total_len());
    let whole = bytes.get(..total).ok_or(DropReason::Malformed)?;
    pkt.reply = Some((port, Reply::Imds(whole)));
    Ok(Step::Reply)
}

/// Ingress: nothing to answer; passes.
#[inline]
pub(crate) fn ingress<'a>(_cx: Ctx<'_>, _pkt: &mut Packet<'a, '_>) -> LayerResult {
    Ok(Step::Next)
}
