//! The kernel primitives of the planned fast path (`docs/fast-path.md`): a VXLAN device with its
//! own UDP port, static FDB entries with a destination port, the `clsact` qdisc, and u32 filters
//! whose only action is a `mirred` redirect (the one tc action this kernel has built in). Each
//! method does what one iproute2 command does and is worded as it in errors.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::{StreamExt, TryStreamExt};
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use rtnetlink::packet_core::{Nla, NlaBuffer, NlasIterator, Parseable};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags};
use rtnetlink::packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirror, TcActionMirrorOption,
    TcActionOption, TcActionType, TcAttribute, TcFilterU32, TcFilterU32Option, TcHandle, TcMessage,
    TcMirror, TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};
use rtnetlink::packet_route::tc::{TcActionMirrorOption as MirrorOpt, TcStats2};
use rtnetlink::packet_route::tc::{TcBpfFlags, TcFilterBpf, TcFilterBpfOption};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::LinkVxlan;

use crate::{format_mac, Error, Netlink, Result};

/// What the filters of one priority counted (`tc -s filter show`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// The priority.
    pub prio: u16,
    /// Packets their actions handled (the kernel's counter is 32 bits: it wraps).
    pub packets: u64,
    /// Bytes (from the network header's frame: Ethernet included on these hooks).
    pub bytes: u64,
    /// Milliseconds since one was last used (10 ms resolution); none if never reported.
    pub idle_ms: Option<u64>,
}

/// Where on a device a filter sits: the `clsact` hook it is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Frames the device receives (`ingress`).
    Ingress,
    /// Frames the device transmits (`egress`), before its qdisc and software segmentation.
    Egress,
}

impl Hook {
    fn parent(self) -> TcHandle {
        TcHandle {
            major: 0xffff,
            minor: match self {
                Hook::Ingress => TcHandle::MIN_INGRESS,
                Hook::Egress => TcHandle::MIN_EGRESS,
            },
        }
    }

    fn name(self) -> &'static str {
        match self {
            Hook::Ingress => "ingress",
            Hook::Egress => "egress",
        }
    }
}

/// What a redirect does with the frame at its target device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirect {
    /// Transmit it there (`mirred egress redirect`): for a VXLAN device, encapsulate and send.
    Egress,
    /// Receive it there (`mirred ingress redirect`): the target's stack gets it as its own.
    Ingress,
}

/// One u32 key: the 32-bit word at `offset` bytes from the network header, masked, must equal
/// `value` (both in host order; negative offsets reach into the Ethernet header: destination MAC
/// at -14, source MAC at -8, EtherType at -2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct U32Match {
    /// Byte offset from the network header of the 32-bit word compared.
    pub offset: i32,
    /// The bits compared.
    pub mask: u32,
    /// Their value.
    pub value: u32,
}

impl U32Match {
    /// The keys matching destination MAC `mac` (as `match ether dst MAC`).
    pub fn ether_dst(mac: &[u8; 6]) -> [U32Match; 2] {
        [
            U32Match {
                offset: -16,
                mask: 0x0000_ffff,
                value: u32::from(u16::from_be_bytes([mac[0], mac[1]])),
            },
            U32Match {
                offset: -12,
                mask: 0xffff_ffff,
                value: u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]),
            },
        ]
    }

    /// The key matching IPv4 source address `ip`.
    pub fn ipv4_src(ip: Ipv4Addr) -> U32Match {
        U32Match {
            offset: 12,
            mask: 0xffff_ffff,
            value: u32::from(ip),
        }
    }

    /// The key matching IPv4 destination address `ip`.
    pub fn ipv4_dst(ip: Ipv4Addr) -> U32Match {
        U32Match {
            offset: 16,
            mask: 0xffff_ffff,
            value: u32::from(ip),
        }
    }
}

impl Netlink {
    /// `ip link add NAME type vxlan id VNI local LOCAL dstport PORT srcport 49152 65535
    /// noudpcsum nolearning`: a VXLAN device (outer UDP checksum 0, as the agent sends)
    /// whose socket (bound to `0.0.0.0:PORT`) stays in this socket's namespace even when the
    /// device is moved to another.
    pub async fn add_vxlan(&self, name: &str, vni: u32, local: Ipv4Addr, port: u16) -> Result<()> {
        // Outer source ports from the inner flow's hash in 49152..65535 and checksum 0, as the
        // agent sends.
        let msg = LinkVxlan::new(name, vni)
            .local(local)
            .port(port)
            .port_range(49152, 65535)
            .udp_csum(false)
            .learning(false)
            .build();
        self.handle.link().add(msg).execute().await.map_err(|e| {
            Error::netlink(
                format!(
                    "ip link add {name} type vxlan id {vni} local {local} dstport {port} \
                         nolearning"
                ),
                e,
            )
        })
    }

    /// `bridge fdb append MAC dev DEV dst DST port PORT self permanent`: frames to `mac` leave a
    /// VXLAN device for `dst:port`.
    pub async fn fdb_add(&self, dev: &str, mac: &[u8; 6], dst: Ipv4Addr, port: u16) -> Result<()> {
        let op = format!(
            "bridge fdb append {} dev {dev} dst {dst} port {port} self permanent",
            format_mac(mac)
        );
        let index = self.index(dev, &op).await?;
        let mut req = self
            .handle
            .neighbours()
            .add_bridge(index, mac)
            .flags(NeighbourFlags::Own);
        let m = req.message_mut();
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::from(
                IpAddr::V4(dst),
            )));
        m.attributes.push(NeighbourAttribute::Port(port));
        req.execute().await.map_err(|e| Error::netlink(op, e))
    }

    /// `bridge fdb replace MAC dev DEV dst DST port PORT self permanent`: frames to `mac` leave
    /// a VXLAN device for `dst:port` only (an earlier destination of `mac` is replaced).
    pub async fn fdb_replace(
        &self,
        dev: &str,
        mac: &[u8; 6],
        dst: Ipv4Addr,
        port: u16,
    ) -> Result<()> {
        let op = format!(
            "bridge fdb replace {} dev {dev} dst {dst} port {port} self permanent",
            format_mac(mac)
        );
        let index = self.index(dev, &op).await?;
        let mut req = self
            .handle
            .neighbours()
            .add_bridge(index, mac)
            .flags(NeighbourFlags::Own)
            .replace();
        let m = req.message_mut();
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::from(
                IpAddr::V4(dst),
            )));
        m.attributes.push(NeighbourAttribute::Port(port));
        req.execute().await.map_err(|e| Error::netlink(op, e))
    }

    /// `tc qdisc add dev DEV clsact`: the hooks filters attach to.
    pub async fn add_clsact(&self, dev: &str) -> Result<()> {
        let op = format!("tc qdisc add dev {dev} clsact");
        let index = self.index(dev, &op).await?;
        let mut m = TcMessage::with_index(index as i32);
        m.header.parent = TcHandle::CLSACT;
        m.header.handle = TcHandle {
            major: 0xffff,
            minor: 0,
        };
        m.attributes.push(TcAttribute::Kind("clsact".into()));
        self.tc_request(
            RouteNetlinkMessage::NewQueueDiscipline(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &op,
        )
        .await
    }

    /// `tc filter add dev DEV HOOK prio PRIO protocol all u32 match ... action mirred
    /// {egress|ingress} redirect dev TO`. No keys matches every frame.
    pub async fn add_redirect(
        &self,
        dev: &str,
        hook: Hook,
        prio: u16,
        keys: &[U32Match],
        to: &str,
        how: Redirect,
    ) -> Result<()> {
        let op = format!(
            "tc filter add dev {dev} {} prio {prio} u32 ({} keys) action mirred {} redirect dev {to}",
            hook.name(),
            keys.len(),
            match how {
                Redirect::Egress => "egress",
                Redirect::Ingress => "ingress",
            }
        );
        let index = self.index(dev, &op).await?;
        let to_index = self.index(to, &op).await?;
        let action = mirred(to_index, how);
        let mut sel = TcU32Selector::default();
        sel.flags = TcU32SelectorFlags::Terminal;
        sel.keys = if keys.is_empty() {
            vec![TcU32Key::default()]
        } else {
            keys.iter()
                .map(|k| {
                    let mut key = TcU32Key::default();
                    key.off = k.offset;
                    key.mask = k.mask;
                    key.val = k.value & k.mask;
                    key
                })
                .collect()
        };
        sel.nkeys = sel.keys.len() as u8;
        let mut m = TcMessage::with_index(index as i32);
        m.header.parent = hook.parent();
        // info: priority in the upper half, protocol (ETH_P_ALL, network order) in the lower.
        m.header.info = (u32::from(prio) << 16) | u32::from(0x0003u16.to_be());
        m.attributes
            .push(TcAttribute::Kind(TcFilterU32::KIND.to_string()));
        m.attributes.push(TcAttribute::Options(vec![
            TcOption::U32(TcFilterU32Option::Selector(sel)),
            TcOption::U32(TcFilterU32Option::Action(vec![action])),
        ]));
        self.tc_request(
            RouteNetlinkMessage::NewTrafficFilter(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &op,
        )
        .await
    }

    /// `tc filter add dev DEV HOOK prio PRIO protocol all bpf direct-action fd FD name NAME`: a
    /// direct-action `cls_bpf` filter (the program's return value is the verdict: `bpf_redirect`
    /// and `TC_ACT_REDIRECT`, or `TC_ACT_UNSPEC` for the next filter). The filter keeps its own
    /// reference to the program: `prog` may be closed after.
    pub async fn add_bpf_direct(
        &self,
        dev: &str,
        hook: Hook,
        prio: u16,
        prog: &std::os::fd::OwnedFd,
        name: &str,
    ) -> Result<()> {
        use std::os::fd::AsRawFd;
        let op = format!(
            "tc filter add dev {dev} {} prio {prio} bpf direct-action name {name}",
            hook.name()
        );
        let index = self.index(dev, &op).await?;
        let mut m = TcMessage::with_index(index as i32);
        m.header.parent = hook.parent();
        m.header.info = (u32::from(prio) << 16) | u32::from(0x0003u16.to_be());
        m.attributes
            .push(TcAttribute::Kind(TcFilterBpf::KIND.to_string()));
        m.attributes.push(TcAttribute::Options(vec![
            TcOption::Bpf(TcFilterBpfOption::ProgFd(prog.as_raw_fd() as u32)),
            TcOption::Bpf(TcFilterBpfOption::ProgName(name.to_string())),
            TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
        ]));
        self.tc_request(
            RouteNetlinkMessage::NewTrafficFilter(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &op,
        )
        .await
    }

    /// `tc filter del dev DEV HOOK prio PRIO`: every filter at that priority. Nothing there is
    /// not an error.
    pub async fn del_filters(&self, dev: &str, hook: Hook, prio: u16) -> Result<()> {
        let op = format!("tc filter del dev {dev} {} prio {prio}", hook.name());
        let index = self.index(dev, &op).await?;
        let mut m = TcMessage::with_index(index as i32);
        m.header.parent = hook.parent();
        m.header.info = u32::from(prio) << 16;
        match self
            .tc_request(RouteNetlinkMessage::DelTrafficFilter(m), 0, &op)
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            r => r,
        }
    }

    /// `tc qdisc del dev DEV clsact`: the hooks and every filter on them. Nothing there is not
    /// an error.
    pub async fn del_clsact(&self, dev: &str) -> Result<()> {
        let op = format!("tc qdisc del dev {dev} clsact");
        let index = self.index(dev, &op).await?;
        let mut m = TcMessage::with_index(index as i32);
        m.header.parent = TcHandle::CLSACT;
        m.header.handle = TcHandle {
            major: 0xffff,
            minor: 0,
        };
        match self
            .tc_request(RouteNetlinkMessage::DelQueueDiscipline(m), 0, &op)
            .await
        {
            Err(e) if e.is_not_found() || e.errno() == Some(nix::libc::EINVAL) => Ok(()),
            r => r,
        }
    }

    /// `ip link show dev DEV`'s MAC address, or none if there is no such link.
    pub async fn link_mac(&self, dev: &str) -> Result<Option<[u8; 6]>> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(dev.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(l)) => Ok(l.attributes.iter().find_map(|a| match a {
                LinkAttribute::Address(m) if m.len() == 6 => {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(m);
                    Some(mac)
                }
                _ => None,
            })),
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

    /// `tc -s filter show dev DEV HOOK`: per priority, what its u32 filters' `mirred` actions
    /// counted (summed over the priority's filters) and how long ago one was last used.
    pub async fn filter_stats(&self, dev: &str, hook: Hook) -> Result<Vec<FilterStats>> {
        let op = format!("tc -s filter show dev {dev} {}", hook.name());
        let index = self.index(dev, &op).await?;
        let mut m = TcMessage::with_index(index as i32);
        m.header.parent = hook.parent();
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetTrafficFilter(m));
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut handle = self.handle.clone();
        let mut response = handle
            .request(req)
            .map_err(|e| Error::netlink(op.clone(), e))?;
        let mut out: Vec<FilterStats> = Vec::new();
        while let Some(msg) = response.next().await {
            let m = match msg.payload {
                NetlinkPayload::Error(err) if err.code.is_some() => {
                    return Err(Error::netlink(op, rtnetlink::Error::NetlinkError(err)));
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewTrafficFilter(m)) => m,
                _ => continue,
            };
            let prio = (m.header.info >> 16) as u16;
            for a in &m.attributes {
                let TcAttribute::Options(opts) = a else {
                    continue;
                };
                for o in opts {
                    let actions = match o {
                        TcOption::U32(TcFilterU32Option::Action(actions)) => actions.clone(),
                        TcOption::Bpf(TcFilterBpfOption::Other(nla))
                            if nla.kind() & 0x3fff == TCA_BPF_ACT =>
                        {
                            let mut value = vec![0u8; nla.value_len()];
                            nla.emit_value(&mut value);
                            parse_actions(&value)
                        }
                        _ => continue,
                    };
                    for act in &actions {
                        let mut s = FilterStats {
                            prio,
                            ..Default::default()
                        };
                        for aa in &act.attributes {
                            match aa {
                                TcActionAttribute::Stats(st) => {
                                    for x in st {
                                        if let TcStats2::Basic(b) = x {
                                            s.packets += u64::from(b.packets);
                                            s.bytes += b.bytes;
                                        }
                                    }
                                }
                                TcActionAttribute::Options(ao) => {
                                    for x in ao {
                                        if let TcActionOption::Mirror(MirrorOpt::Tm(t)) = x {
                                            // USER_HZ (1/100 s) since the last use.
                                            s.idle_ms = Some(t.lastuse.saturating_mul(10));
                                        }
                                    }
                                }
                                _ => {}
                            }
                        }
                        match out.iter_mut().find(|f| f.prio == prio) {
                            Some(f) => {
                                f.packets += s.packets;
                                f.bytes += s.bytes;
                                f.idle_ms = match (f.idle_ms, s.idle_ms) {
                                    (Some(a), Some(b)) => Some(a.min(b)),
                                    (a, b) => a.or(b),
                                };
                            }
                            None => out.push(s),
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    async fn tc_request(&self, msg: RouteNetlinkMessage, flags: u16, op: &str) -> Result<()> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut handle = self.handle.clone();
        let mut response = handle
            .request(req)
            .map_err(|e| Error::netlink(op.to_string(), e))?;
        while let Some(msg) = response.next().await {
            if let NetlinkPayload::Error(err) = msg.payload {
                if err.code.is_some() {
                    return Err(Error::netlink(
                        op.to_string(),
                        rtnetlink::Error::NetlinkError(err),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `TCA_BPF_ACT`: a `cls_bpf` filter's actions (not modelled by netlink-packet-route).
const TCA_BPF_ACT: u16 = 1;

/// A `mirred` redirect to `to_index` (its verdict: stolen).
fn mirred(to_index: u32, how: Redirect) -> TcAction {
    let mut mirror = TcMirror::default();
    mirror.generic = TcActionGeneric::default();
    mirror.generic.action = TcActionType::Stolen;
    mirror.eaction = match how {
        Redirect::Egress => TcMirrorActionType::EgressRedir,
        Redirect::Ingress => TcMirrorActionType::IngressRedir,
    };
    mirror.ifindex = to_index;
    let mut action = TcAction::default();
    action.attributes = vec![
        TcActionAttribute::Kind(TcActionMirror::KIND.to_string()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            mirror,
        ))]),
    ];
    action
}

/// The actions nested in a `TCA_BPF_ACT` attribute (those that parse).
fn parse_actions(value: &[u8]) -> Vec<TcAction> {
    NlasIterator::new(value)
        .filter_map(|nla| nla.ok())
        .filter_map(|nla: NlaBuffer<&[u8]>| TcAction::parse(&nla).ok())
        .collect()
}
