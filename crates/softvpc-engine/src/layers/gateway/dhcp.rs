//! DHCP (RFC 2131) answered by the VPC router on the host, as AWS's does: every ENI gets its
//! primary private address, whatever client asks, and never anything else. DHCP never crosses
//! the underlay: the gateway layer takes every client message (UDP 68 -> 67, to the limited
//! broadcast or to the subnet router) off the sender's port and answers on that port.
//!
//! The wire format is `dhcproto`'s; this module only decides ([`answer`], pure, fuzzed and
//! property-tested) and frames the answer ([`emit`]):
//!
//! | client sends | router answers |
//! | --- | --- |
//! | DISCOVER | OFFER of the ENI's primary address |
//! | REQUEST (selecting, init-reboot, renewing, rebinding) | ACK when the address asked for (option 50, else `ciaddr`) is the ENI's, else NAK; ignored when it names another server |
//! | INFORM (from the ENI's address) | ACK with the options, no lease |
//! | RELEASE, DECLINE | nothing (the address is the ENI's for its life); absorbed |
//!
//! Every answer carries the server identifier (the subnet router, network + 1), the subnet
//! mask, the router, the options of the VPC's DHCP option set ([`OptionSet`]: DNS servers,
//! domain name, NTP and NetBIOS servers; without a set AWS's default: the VPC's base + 2,
//! AmazonProvidedDNS, and `ec2.internal` in us-east-1, `<region>.compute.internal`
//! elsewhere), the host name
//! (`ip-10-0-0-148`), the broadcast address, the interface MTU (option 26) and, but for INFORM
//! and NAK, the lease time with T1 = 1/2 and T2 = 7/8 of it. Anything else (undecodable, a
//! server's message type, a `chaddr` that is not the ENI's MAC, a message without a type) is
//! dropped and counted as `dhcp_invalid`.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use smoltcp::phy::ChecksumCapabilities;
use softvpc_wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Packet,
    Ipv4Repr, UdpPacket, UdpRepr,
};

/// The DHCP server port.
pub const SERVER_PORT: u16 = 67;
/// The DHCP client port.
pub const CLIENT_PORT: u16 = 68;
/// TTL of the router's answers.
const TTL: u8 = 64;

/// What the host's router hands out besides each ENI's own addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpConfig {
    /// Domain name (option 15) and suffix of the private DNS names.
    pub domain_name: String,
    /// Lease time in seconds (option 51).
    pub lease_secs: u32,
    /// Interface MTU (option 26): the MTU the instance's interface has.
    pub mtu: u16,
}

impl DhcpConfig {
    /// AWS's defaults for `region`: its default domain name, a one-hour lease, and `mtu`.
    pub fn for_region(region: &str, mtu: u16) -> DhcpConfig {
        DhcpConfig {
            domain_name: default_domain_name(region),
            lease_secs: 3600,
            mtu,
        }
    }
}

/// AWS's default domain name: `ec2.internal` in us-east-1, `<region>.compute.internal`
/// elsewhere.
pub fn default_domain_name(region: &str) -> String {
    if region == "us-east-1" {
        "ec2.internal".to_string()
    } else {
        format!("{region}.compute.internal")
    }
}

/// The private DNS host label of an address, as AWS names it: `ip-10-0-0-148`.
pub fn host_label(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("ip-{a}-{b}-{c}-{d}")
}

/// What the router knows about the asking ENI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The ENI's MAC (the only `chaddr` answered).
    pub mac: [u8; 6],
    /// Its primary private address.
    pub ip: Ipv4Addr,
    /// Its subnet's prefix length.
    pub prefix_len: u8,
    /// The subnet router (network + 1): router and server identifier.
    pub router: Ipv4Addr,
    /// The VPC's DNS server (base + 2).
    pub dns: Ipv4Addr,
}

impl Lease {
    fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(
            u32::MAX
                .checked_shl(32 - u32::from(self.prefix_len))
                .unwrap_or(0),
        )
    }

    fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.ip) | !u32::from(self.mask()))
    }
}

/// Why a DHCP message got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not a client message the router answers (undecodable, not BOOTREQUEST/Ethernet, a
    /// server's message type, no type, another MAC than the ENI's): dropped and counted.
    Invalid,
    /// A client message that needs no answer (RELEASE, DECLINE, a REQUEST for another
    /// server): absorbed.
    NoAnswer,
}

/// The router's answer: a DHCP message and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The encoded DHCP message (the UDP payload).
    pub payload: Vec<u8>,
    /// IPv4 destination: the client's `ciaddr`, the offered address, or the limited broadcast
    /// (the client asked for broadcast, or a NAK).
    pub dst_ip: Ipv4Addr,
    /// Whether the Ethernet destination is broadcast (else the ENI's MAC).
    pub broadcast_mac: bool,
}

/// The options the router reads, with the length each must have: message type, requested
/// address, server identifier.
const READ_OPTIONS: [(u8, usize); 3] = [(53, 1), (50, 4), (54, 4)];
/// The fixed BOOTP header before the magic cookie (RFC 2131 figure 1).
const FIXED_LEN: usize = 236;
/// The magic cookie that starts the options (RFC 2131 3.).
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// The message with only the options the router reads, each of the right length, or `None`
/// when its framing is broken (shorter than the fixed header, no magic cookie, `hlen` not 6,
/// an option running past the end). `dhcproto`'s decoder asserts on some option lengths and
/// slices `chaddr` by `hlen` (both found by the property tests), so only this checked subset
/// reaches it.
pub fn sanitize(payload: &[u8]) -> Option<Vec<u8>> {
    let fixed = payload.get(..FIXED_LEN)?;
    if payload.get(FIXED_LEN..FIXED_LEN + 4)? != MAGIC_COOKIE || fixed[2] != 6 {
        return None;
    }
    let mut out = Vec::with_capacity(FIXED_LEN + 4 + 16);
    out.extend_from_slice(&payload[..FIXED_LEN + 4]);
    let mut rest = &payload[FIXED_LEN + 4..];
    while let Some((&code, tail)) = rest.split_first() {
        match code {
            0 => rest = tail,
            255 => break,
            _ => {
                let (&len, tail) = tail.split_first()?;
                let value = tail.get(..usize::from(len))?;
                if READ_OPTIONS.contains(&(code, value.len())) {
                    out.extend_from_slice(&[code, len]);
                    out.extend_from_slice(value);
                }
                rest = &tail[usize::from(len)..];
            }
        }
    }
    out.push(255);
    Some(out)
}

/// The options of a VPC's DHCP option set, resolved (`AmazonProvidedDNS` is the VPC's base + 2):
/// what the router hands out besides the ENI's own addresses. An empty list or `None` leaves
/// its option out, as AWS does for a set without that key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptionSet {
    /// `domain-name` (option 15).
    pub domain_name: Option<String>,
    /// `domain-name-servers` (option 6).
    pub name_servers: Vec<Ipv4Addr>,
    /// `ntp-servers` (option 42).
    pub ntp_servers: Vec<Ipv4Addr>,
    /// `netbios-name-servers` (option 44).
    pub netbios_name_servers: Vec<Ipv4Addr>,
    /// `netbios-node-type` (option 46).
    pub netbios_node_type: Option<u8>,
}

impl OptionSet {
    /// AWS's default set: AmazonProvidedDNS (`dns`) and the region's domain.
    pub fn amazon_default(dns: Ipv4Addr, domain_name: &str) -> OptionSet {
        OptionSet {
            domain_name: Some(domain_name.to_string()),
            name_servers: vec![dns],
            ..OptionSet::default()
        }
    }
}

/// Decides the answer to a DHCP message `payload` (the UDP payload) from the ENI described by
/// `lease`, with AWS's default option set (`lease.dns`, `cfg.domain_name`).
pub fn answer(payload: &[u8], lease: &Lease, cfg: &DhcpConfig) -> Result<Answer, Ignored> {
    answer_with(
        payload,
        lease,
        cfg,
        &OptionSet::amazon_default(lease.dns, &cfg.domain_name),
    )
}

/// [`answer`] with the VPC's option set `set`.
pub fn answer_with(
    payload: &[u8],
    lease: &Lease,
    cfg: &DhcpConfig,
    set: &OptionSet,
) -> Result<Answer, Ignored> {
    let clean = sanitize(payload).ok_or(Ignored::Invalid)?;
    let msg = Message::decode(&mut Decoder::new(&clean)).map_err(|_| Ignored::Invalid)?;
    if msg.opcode() != Opcode::BootRequest
        || msg.htype() != HType::Eth
        || msg.hlen() != 6
        || msg.chaddr().get(..6) != Some(&lease.mac[..])
    {
        return Err(Ignored::Invalid);
    }
    let requested = match msg.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    let server = match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    };
    let reply_type = match msg.opts().msg_type().ok_or(Ignored::Invalid)? {
        MessageType::Discover => MessageType::Offer,
        MessageType::Request => {
            if server.is_some_and(|s| s != lease.router) {
                // The client chose another server's offer (RFC 2131 4.3.2).
                return Err(Ignored::NoAnswer);
            }
            let asked = requested.unwrap_or(msg.ciaddr());
            if asked == lease.ip {
                MessageType::Ack
            } else {
                MessageType::Nak
            }
        }
        MessageType::Inform => {
            if msg.ciaddr() != lease.ip {
                return Err(Ignored::Invalid);
            }
            MessageType::Ack
        }
        MessageType::Release | MessageType::Decline => return Err(Ignored::NoAnswer),
        _ => return Err(Ignored::Invalid),
    };
    let inform = msg.opts().has_msg_type(MessageType::Inform);

    let mut reply = Message::default();
    reply
        .set_opcode(Opcode::BootReply)
        .set_htype(HType::Eth)
        .set_xid(msg.xid())
        .set_flags(msg.flags())
        .set_ciaddr(msg.ciaddr())
        .set_giaddr(msg.giaddr())
        .set_chaddr(&lease.mac);
    let opts = reply.opts_mut();
    opts.insert(DhcpOption::MessageType(reply_type));
    opts.insert(DhcpOption::ServerIdentifier(lease.router));
    if reply_type == MessageType::Nak {
        return Ok(Answer {
            payload: reply.to_vec().map_err(|_| Ignored::Invalid)?,
            dst_ip: Ipv4Addr::BROADCAST,
            broadcast_mac: true,
        });
    }
    if !inform {
        reply.set_yiaddr(lease.ip);
        let opts = reply.opts_mut();
        opts.insert(DhcpOption::AddressLeaseTime(cfg.lease_secs));
        opts.insert(DhcpOption::Renewal(cfg.lease_secs / 2));
        opts.insert(DhcpOption::Rebinding(
            (u64::from(cfg.lease_secs) * 7 / 8) as u32,
        ));
    }
    let opts = reply.opts_mut();
    opts.insert(DhcpOption::SubnetMask(lease.mask()));
    opts.insert(DhcpOption::Router(vec![lease.router]));
    if !set.name_servers.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(set.name_servers.clone()));
    }
    if let Some(domain) = &set.domain_name {
        opts.insert(DhcpOption::DomainName(domain.clone()));
    }
    if !set.ntp_servers.is_empty() {
        opts.insert(DhcpOption::NtpServers(set.ntp_servers.clone()));
    }
    if !set.netbios_name_servers.is_empty() {
        opts.insert(DhcpOption::NetBiosNameServers(
            set.netbios_name_servers.clone(),
        ));
    }
    if let Some(t) = set.netbios_node_type {
        opts.insert(DhcpOption::NetBiosNodeType(t.into()));
    }
    opts.insert(DhcpOption::Hostname(host_label(lease.ip)));
    opts.insert(DhcpOption::BroadcastAddr(lease.broadcast()));
    opts.insert(DhcpOption::InterfaceMtu(cfg.mtu));

    // RFC 2131 4.1: to `ciaddr` when the client has one; else broadcast if it asked; else
    // unicast to the offered address and the client's MAC.
    let ciaddr = msg.ciaddr();
    let (dst_ip, broadcast_mac) = if !ciaddr.is_unspecified() {
        (ciaddr, false)
    } else if msg.flags().broadcast() {
        (Ipv4Addr::BROADCAST, true)
    } else {
        (lease.ip, false)
    };
    Ok(Answer {
        payload: reply.to_vec().map_err(|_| Ignored::Invalid)?,
        dst_ip,
        broadcast_mac,
    })
}

/// The length of the frame carrying `answer`.
pub(crate) fn frame_len(answer: &Answer) -> usize {
    14 + 20 + 8 + answer.payload.len()
}

/// Writes the Ethernet + IPv4 + UDP frame of `answer` from the router into `buf`
/// ([`frame_len`] bytes).
pub(crate) fn emit(buf: &mut [u8], router_mac: [u8; 6], lease: &Lease, answer: &Answer) {
    let dst_mac = if answer.broadcast_mac {
        EthernetAddress::BROADCAST
    } else {
        EthernetAddress(lease.mac)
    };
    let udp = UdpRepr {
        src_port: SERVER_PORT,
        dst_port: CLIENT_PORT,
    };
    let ip_repr = Ipv4Repr {
        src_addr: lease.router,
        dst_addr: answer.dst_ip,
        next_header: IpProtocol::Udp,
        payload_len: 8 + answer.payload.len(),
        hop_limit: TTL,
    };
    let caps = ChecksumCapabilities::default();
    let mut frame = EthernetFrame::new_unchecked(buf);
    EthernetRepr {
        src_addr: EthernetAddress(router_mac),
        dst_addr: dst_mac,
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut frame);
    let mut ip = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip_repr.emit(&mut ip, &caps);
    let mut packet = UdpPacket::new_unchecked(ip.payload_mut());
    udp.emit(
        &mut packet,
        &lease.router.into(),
        &answer.dst_ip.into(),
        answer.payload.len(),
        |b| b.copy_from_slice(&answer.payload),
        &caps,
    );
}
