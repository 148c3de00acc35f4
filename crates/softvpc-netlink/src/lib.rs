//! softvpc's network plumbing, shared by the agent, the lab and the server: named network
//! namespaces ([`netns`], iproute2-compatible) and links, addresses, routes and rules over
//! rtnetlink ([`Netlink`]), without forking `ip`.
//!
//! A [`Netlink`] is one rtnetlink socket, bound to the network namespace it was opened in
//! ([`Netlink::connect`] for the caller's, [`Netlink::connect_in`] for a named one); its
//! operations act there whatever thread later awaits them. Its methods are async and need a
//! tokio runtime (the socket's connection runs as a task on it); synchronous callers use
//! [`block_on`]. Each method does what one iproute2 command does, and its errors are worded as
//! that command, with the kernel's errno ([`Error::is_not_found`], [`Error::is_exists`]).

#![warn(missing_docs)]

pub mod bpf;
mod error;
mod fastpath;
pub mod netns;

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{
    RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{
    AddressMessageBuilder, IpVersion, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};

pub use error::{Error, Result};
pub use fastpath::{FilterStats, Hook, Redirect, U32Match};

/// Runs `fut` to completion on a new single-threaded runtime: for synchronous callers (the lab).
/// Must not be called from inside a tokio runtime.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a single-threaded tokio runtime")
        .block_on(fut)
}

/// A change to one link, sent as one request (`ip link set dev DEV ...`). Unset fields are left
/// as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkChange {
    /// New name (`name NEW`).
    pub name: Option<String>,
    /// New MAC address (`address MAC`).
    pub mac: Option<[u8; 6]>,
    /// New MTU (`mtu N`).
    pub mtu: Option<u32>,
    /// Administratively up or down.
    pub up: Option<bool>,
}

impl LinkChange {
    fn describe(&self, dev: &str) -> String {
        let mut s = format!("ip link set dev {dev}");
        if let Some(n) = &self.name {
            s += &format!(" name {n}");
        }
        if let Some(m) = &self.mac {
            s += &format!(" address {}", format_mac(m));
        }
        if let Some(m) = self.mtu {
            s += &format!(" mtu {m}");
        }
        match self.up {
            Some(true) => s += " up",
            Some(false) => s += " down",
            None => {}
        }
        s
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// A link's packet counters, from its `IFLA_STATS64` (what `ip -s link` shows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
    /// Packets dropped on receive.
    pub rx_dropped: u64,
    /// Packets dropped on transmit (for a TAP: frames the interface's owner sent while the
    /// queue towards the fd's reader was full).
    pub tx_dropped: u64,
}

fn link_stats_of(l: &LinkMessage) -> LinkStats {
    l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Stats64(s) => Some(LinkStats {
                rx_packets: s.rx_packets,
                tx_packets: s.tx_packets,
                rx_dropped: s.rx_dropped,
                tx_dropped: s.tx_dropped,
            }),
            _ => None,
        })
        .unwrap_or_default()
}

/// An IPv4 route (`ip route add ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination network and prefix length (`0.0.0.0/0` is `default`).
    pub dst: (Ipv4Addr, u8),
    /// Next hop (`via`); none for a connected route.
    pub via: Option<Ipv4Addr>,
    /// Output interface (`dev`).
    pub dev: String,
    /// Preferred source address (`src`).
    pub src: Option<Ipv4Addr>,
    /// Routing table (`table`); none is `main`.
    pub table: Option<u32>,
}

impl Route {
    /// `default via GW dev DEV`.
    pub fn default_via(gw: Ipv4Addr, dev: &str) -> Route {
        Route {
            dst: (Ipv4Addr::UNSPECIFIED, 0),
            via: Some(gw),
            dev: dev.to_string(),
            src: None,
            table: None,
        }
    }

    /// `NET/LEN dev DEV proto kernel scope link src SRC`: a connected route, as the kernel adds
    /// for an address (used where the address has `noprefixroute`).
    pub fn connected(net: Ipv4Addr, len: u8, dev: &str, src: Ipv4Addr) -> Route {
        Route {
            dst: (net, len),
            via: None,
            dev: dev.to_string(),
            src: Some(src),
            table: None,
        }
    }

    /// The same route in table `table`.
    pub fn in_table(mut self, table: u32) -> Route {
        self.table = Some(table);
        self
    }

    fn describe(&self) -> String {
        let (net, len) = self.dst;
        let mut s = if len == 0 {
            "ip route add default".to_string()
        } else {
            format!("ip route add {net}/{len}")
        };
        if let Some(v) = self.via {
            s += &format!(" via {v}");
        }
        s += &format!(" dev {}", self.dev);
        if let Some(src) = self.src {
            s += &format!(" src {src}");
        }
        if let Some(t) = self.table {
            s += &format!(" table {t}");
        }
        s
    }
}

/// An IPv4 policy-routing rule `from SRC lookup TABLE priority PRIO` as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Source address (`from`; none is `all`).
    pub from: Option<Ipv4Addr>,
    /// The table it looks up.
    pub table: u32,
    /// Its priority.
    pub priority: Option<u32>,
}

/// An rtnetlink socket in one network namespace. Cheap to clone (clones share the socket).
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: rtnetlink::Handle,
}

fn runtime(op: &str) -> Result<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current().map_err(|e| Error::new(op, std::io::Error::other(e)))
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace. Needs a tokio runtime.
    pub fn connect() -> Result<Netlink> {
        let op = "opening an rtnetlink socket";
        let rt = runtime(op)?;
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| Error::new(op, e))?;
        rt.spawn(conn);
        Ok(Netlink { handle })
    }

    /// Opens a socket in the named network namespace (the caller's is untouched). Needs a
    /// tokio runtime.
    pub fn connect_in(ns: &str) -> Result<Netlink> {
        let op = format!("opening an rtnetlink socket in network namespace {ns}");
        let rt = runtime(&op)?;
        // The socket belongs to the namespace of the thread that creates it.
        let fd: OwnedFd = netns::run_in(ns, || {
            let s = rtnetlink::sys::Socket::new(rtnetlink::sys::protocols::NETLINK_ROUTE)
                .map_err(|e| Error::new("socket(AF_NETLINK)", e))?;
            // SAFETY: into_raw_fd hands over sole ownership of an open fd.
            Ok::<_, Error>(unsafe { OwnedFd::from_raw_fd(s.into_raw_fd()) })
        })?;
        let _guard = rt.enter();
        // SAFETY: `fd` is an open AF_NETLINK socket that we own; ownership moves to the
        // TokioSocket (registered with the runtime entered above).
        let socket = unsafe { rtnetlink::sys::TokioSocket::from_raw_fd(fd.into_raw_fd()) };
        let (conn, handle, _) = rtnetlink::from_socket(socket);
        rt.spawn(conn);
        Ok(Netlink { handle })
    }

    /// The index of link `dev`, or none if there is no such link.
    pub async fn link_index(&self, dev: &str) -> Result<Option<u32>> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(dev.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(l)) => Ok(Some(l.header.index)),
            Ok(None) => Ok(None),
            Err(e) => {
                let e = Error::netlink(format!("ip link show dev {dev}"), e);
                if e.is_not_found() {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// The kernel's counters of link `dev` (`ip -s link show dev DEV`), or none if there is no
    /// such link.
    pub async fn link_stats(&self, dev: &str) -> Result<Option<LinkStats>> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(dev.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(l)) => Ok(Some(link_stats_of(&l))),
            Ok(None) => Ok(None),
            Err(e) => {
                let e = Error::netlink(format!("ip -s link show dev {dev}"), e);
                if e.is_not_found() {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Whether link `dev` exists.
    pub async fn link_exists(&self, dev: &str) -> Result<bool> {
        Ok(self.link_index(dev).await?.is_some())
    }

    async fn index(&self, dev: &str, op: &str) -> Result<u32> {
        self.link_index(dev).await?.ok_or_else(|| {
            Error::new(
                op,
                std::io::Error::from_raw_os_error(nix::errno::Errno::ENODEV as i32),
            )
        })
    }

    /// Every link's name (`ip link show`).
    pub async fn link_names(&self) -> Result<Vec<String>> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink("ip link show", e))?;
        Ok(links
            .iter()
            .filter_map(|l| {
                l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })
            })
            .collect())
    }

    /// `ip link add NAME type bridge`.
    pub async fn add_bridge(&self, name: &str) -> Result<()> {
        self.handle
            .link()
            .add(LinkBridge::new(name).build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("ip link add {name} type bridge"), e))
    }

    /// `ip link add NAME type veth peer name PEER [netns PEER_NS]`: a veth pair whose peer end is
    /// created directly in namespace `peer_ns` (if given), so it never appears here.
    pub async fn add_veth(&self, name: &str, peer: &str, peer_ns: Option<&str>) -> Result<()> {
        let op = format!(
            "ip link add {name} type veth peer name {peer}{}",
            peer_ns.map(|n| format!(" netns {n}")).unwrap_or_default()
        );
        let ns_file = peer_ns.map(netns::open).transpose()?;
        let mut peer_msg = LinkMessageBuilder::<LinkUnspec>::new().name(peer.to_string());
        if let Some(f) = &ns_file {
            peer_msg = peer_msg.setns_by_fd(f.as_raw_fd());
        }
        let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(name.to_string())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg.build())))
            .build();
        let r = self.handle.link().add(msg).execute().await;
        drop(ns_file); // Kept open until the kernel has read the fd.
        r.map_err(|e| Error::netlink(op, e))
    }

    /// Deletes link `dev` (`ip link del dev DEV`; a veth's peer goes with it).
    pub async fn del_link(&self, dev: &str) -> Result<()> {
        let op = format!("ip link del dev {dev}");
        let index = self.index(dev, &op).await?;
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(|e| Error::netlink(op, e))
    }

    /// Applies `change` to link `dev` in one request.
    pub async fn set_link(&self, dev: &str, change: &LinkChange) -> Result<()> {
        let op = change.describe(dev);
        let index = self.index(dev, &op).await?;
        let mut b = LinkUnspec::new_with_index(index);
        if let Some(n) = &change.name {
            b = b.name(n.clone());
        }
        if let Some(m) = change.mac {
            b = b.address(m.to_vec());
        }
        if let Some(m) = change.mtu {
            b = b.mtu(m);
        }
        match change.up {
            Some(true) => b = b.up(),
            Some(false) => b = b.down(),
            None => {}
        }
        self.handle
            .link()
            .set(b.build())
            .execute()
            .await
            .map_err(|e| Error::netlink(op, e))
    }

    /// `ip link set dev DEV up`.
    pub async fn set_up(&self, dev: &str) -> Result<()> {
        self.set_link(
            dev,
            &LinkChange {
                up: Some(true),
                ..LinkChange::default()
            },
        )
        .await
    }

    /// `ip link set dev DEV master BRIDGE`.
    pub async fn set_master(&self, dev: &str, bridge: &str) -> Result<()> {
        let op = format!("ip link set dev {dev} master {bridge}");
        let index = self.index(dev, &op).await?;
        let master = self.index(bridge, &op).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).controller(master).build())
            .execute()
            .await
            .map_err(|e| Error::netlink(op, e))
    }

    /// `ip link set dev DEV netns NS`: moves the link into the named namespace (a TAP keeps
    /// working through its fd).
    pub async fn move_to_netns(&self, dev: &str, ns: &str) -> Result<()> {
        let op = format!("ip link set dev {dev} netns {ns}");
        let index = self.index(dev, &op).await?;
        let f = netns::open(ns)?;
        let r = self
            .handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .setns_by_fd(f.as_raw_fd())
                    .build(),
            )
            .execute()
            .await;
        drop(f); // Kept open until the kernel has read the fd.
        r.map_err(|e| Error::netlink(op, e))
    }

    /// `ip addr add ADDR/LEN dev DEV [noprefixroute]`.
    pub async fn add_address(
        &self,
        dev: &str,
        addr: Ipv4Addr,
        len: u8,
        noprefixroute: bool,
    ) -> Result<()> {
        let op = format!(
            "ip addr add {addr}/{len} dev {dev}{}",
            if noprefixroute { " noprefixroute" } else { "" }
        );
        let index = self.index(dev, &op).await?;
        let mut req = self.handle.address().add(index, IpAddr::V4(addr), len);
        if noprefixroute {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Noprefixroute));
        }
        req.execute().await.map_err(|e| Error::netlink(op, e))
    }

    /// `ip addr del ADDR/LEN dev DEV`.
    pub async fn del_address(&self, dev: &str, addr: Ipv4Addr, len: u8) -> Result<()> {
        let op = format!("ip addr del {addr}/{len} dev {dev}");
        let index = self.index(dev, &op).await?;
        let msg = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(addr, len)
            .build();
        self.handle
            .address()
            .del(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink(op, e))
    }

    /// The IPv4 addresses on `dev` with their prefix lengths (`ip -4 addr show dev DEV`).
    pub async fn addresses(&self, dev: &str) -> Result<Vec<(Ipv4Addr, u8)>> {
        let op = format!("ip -4 addr show dev {dev}");
        let index = self.index(dev, &op).await?;
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink(op, e))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.family == AddressFamily::Inet)
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(IpAddr::V4(ip)) => Some((*ip, m.header.prefix_len)),
                    _ => None,
                })
            })
            .collect())
    }

    /// Adds `route`. A route with a next hop gets `proto boot` (as `ip route add` gives it); a
    /// connected one `proto kernel scope link`.
    pub async fn add_route(&self, route: &Route) -> Result<()> {
        let op = route.describe();
        let index = self.index(&route.dev, &op).await?;
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(route.dst.0, route.dst.1)
            .output_interface(index);
        b = match route.via {
            Some(gw) => b.gateway(gw).protocol(RouteProtocol::Boot),
            None => b.protocol(RouteProtocol::Kernel).scope(RouteScope::Link),
        };
        if let Some(src) = route.src {
            b = b.pref_source(src);
        }
        if let Some(t) = route.table {
            b = b.table_id(t);
        }
        self.handle
            .route()
            .add(b.build())
            .execute()
            .await
            .map_err(|e| Error::netlink(op, e))
    }

    /// Deletes every IPv4 route of table `table` (`ip route flush table T`); returns how many.
    pub async fn flush_table(&self, table: u32) -> Result<usize> {
        let op = format!("ip route flush table {table}");
        let routes: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink(op.clone(), e))?;
        let mut n = 0;
        for r in routes.into_iter().filter(|r| route_table(r) == table) {
            match self.handle.route().del(r).execute().await {
                Ok(()) => n += 1,
                Err(e) => {
                    let e = Error::netlink(op.clone(), e);
                    // Gone meanwhile (with its link) is what we want.
                    if !e.is_not_found() {
                        return Err(e);
                    }
                }
            }
        }
        Ok(n)
    }

    /// `ip rule add from FROM lookup TABLE priority PRIO`.
    pub async fn add_rule(&self, from: Ipv4Addr, table: u32, priority: u32) -> Result<()> {
        let op = format!("ip rule add from {from} lookup {table} priority {priority}");
        self.handle
            .rule()
            .add()
            .v4()
            .source_prefix(from, 32)
            .table_id(table)
            .priority(priority)
            .action(RuleAction::ToTable)
            .execute()
            .await
            .map_err(|e| Error::netlink(op, e))
    }

    /// `ip rule del from FROM lookup TABLE priority PRIO`.
    pub async fn del_rule(&self, from: Ipv4Addr, table: u32, priority: u32) -> Result<()> {
        let op = format!("ip rule del from {from} lookup {table} priority {priority}");
        let rule = Rule {
            from: Some(from),
            table,
            priority: Some(priority),
        };
        self.handle
            .rule()
            .del(rule_message(&rule))
            .execute()
            .await
            .map_err(|e| Error::netlink(op, e))
    }

    /// The IPv4 rules that look up `table` (`ip rule show table T`).
    pub async fn rules_of_table(&self, table: u32) -> Result<Vec<Rule>> {
        let msgs: Vec<RuleMessage> = self
            .handle
            .rule()
            .get(IpVersion::V4)
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink(format!("ip rule show table {table}"), e))?;
        Ok(msgs
            .iter()
            .map(read_rule)
            .filter(|r| r.table == table)
            .collect())
    }

    /// Deletes every IPv4 rule that looks up `table`; returns how many.
    pub async fn del_rules_of_table(&self, table: u32) -> Result<usize> {
        let mut n = 0;
        for rule in self.rules_of_table(table).await? {
            match self.handle.rule().del(rule_message(&rule)).execute().await {
                Ok(()) => n += 1,
                Err(e) => {
                    let e = Error::netlink(format!("ip rule del table {table}"), e);
                    if !e.is_not_found() {
                        return Err(e);
                    }
                }
            }
        }
        Ok(n)
    }
}

/// The table of a route: the attribute if present (tables above 255), else the header's.
fn route_table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

fn read_rule(m: &RuleMessage) -> Rule {
    let mut rule = Rule {
        from: None,
        table: u32::from(m.header.table),
        priority: None,
    };
    for a in &m.attributes {
        match a {
            RuleAttribute::Source(IpAddr::V4(ip)) => rule.from = Some(*ip),
            RuleAttribute::Table(t) => rule.table = *t,
            RuleAttribute::Priority(p) => rule.priority = Some(*p),
            _ => {}
        }
    }
    rule
}

/// The message that names exactly one rule, for deleting it.
fn rule_message(rule: &Rule) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.action = RuleAction::ToTable;
    if rule.table > 255 {
        m.header.table = RouteHeader::RT_TABLE_UNSPEC;
        m.attributes.push(RuleAttribute::Table(rule.table));
    } else {
        m.header.table = rule.table as u8;
    }
    if let Some(from) = rule.from {
        m.header.src_len = 32;
        m.attributes.push(RuleAttribute::Source(IpAddr::V4(from)));
    }
    if let Some(p) = rule.priority {
        m.attributes.push(RuleAttribute::Priority(p));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_worded_as_iproute2_commands() {
        let c = LinkChange {
            name: Some("eth1".into()),
            mac: Some([2, 0, 0, 0, 9, 0xab]),
            mtu: Some(1450),
            up: Some(true),
        };
        assert_eq!(
            c.describe("t1"),
            "ip link set dev t1 name eth1 address 02:00:00:00:09:ab mtu 1450 up"
        );
        let r = Route::default_via(Ipv4Addr::new(10, 0, 1, 1), "eth1").in_table(10001);
        assert_eq!(
            r.describe(),
            "ip route add default via 10.0.1.1 dev eth1 table 10001"
        );
        let r = Route::connected(
            Ipv4Addr::new(10, 0, 1, 0),
            24,
            "eth1",
            Ipv4Addr::new(10, 0, 1, 5),
        );
        assert_eq!(
            r.describe(),
            "ip route add 10.0.1.0/24 dev eth1 src 10.0.1.5"
        );
    }

    #[test]
    fn rule_messages_round_trip() {
        for table in [7, 10001] {
            let rule = Rule {
                from: Some(Ipv4Addr::new(10, 9, 1, 6)),
                table,
                priority: Some(table),
            };
            assert_eq!(read_rule(&rule_message(&rule)), rule);
        }
    }
}
