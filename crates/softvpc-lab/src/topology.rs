//! The lab's topology file: hosts, VPCs with their subnets, and instances, in TOML.
//!
//! [`Topology::parse`] reads the file format (documented in `examples/seed-lab.toml`, which is
//! also the built-in [`SEED_TOPOLOGY`]) and validates it before anything is built, so a typo is a
//! clear error naming the offending entry instead of a half-built lab. Validation mirrors what the
//! server will enforce (CIDR sizes, subnets inside their VPC, reserved addresses) and adds what
//! only the lab knows (hosts, names, per-VPC address uniqueness).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use ipnet::Ipv4Net;
use serde::Deserialize;

use crate::names;

/// The built-in seed topology (`examples/seed-lab.toml`).
pub const SEED_TOPOLOGY: &str = include_str!("../../../examples/seed-lab.toml");

/// Largest number of hosts: host i gets 198.18.0.(10+i).
pub const MAX_HOSTS: usize = 240;

/// A validated topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The hosts (at most [`MAX_HOSTS`]).
    pub hosts: Vec<Host>,
    /// The VPCs.
    pub vpcs: Vec<Vpc>,
    /// The instances.
    pub instances: Vec<Instance>,
    /// The lab's internet, if the file describes one (`[internet]`).
    pub internet: Option<Internet>,
    /// How instances' `eth0` gets its address (`instance_addressing`, default DHCP).
    pub addressing: Addressing,
}

/// How the lab's instances get their address (the agents' `--instance-addressing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    /// A DHCP client (busybox's udhcpc) in each instance asks its host's virtual router, as on
    /// EC2: address, mask, router, MTU 9001, DNS servers and domain.
    #[default]
    Dhcp,
    /// The agent sets the address, MTU and default route itself; no DHCP client runs.
    Static,
}

impl Addressing {
    /// The agent's `--instance-addressing` value.
    pub fn as_arg(self) -> &'static str {
        match self {
            Addressing::Dhcp => "dhcp",
            Addressing::Static => "static",
        }
    }
}

/// The lab's "internet": hosts of 203.0.113.0/24 that belong to no VPC, in one namespace, with
/// softvpc's own HTTP and UDP echo servers (see [`crate::internet`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Internet {
    /// Its hosts' addresses, each in [`INTERNET_HOSTS_FIRST`]..=[`INTERNET_HOSTS_LAST`].
    pub hosts: Vec<Ipv4Addr>,
    /// Where the HTTP server listens (one of `hosts`): it answers with the client's address.
    pub http: Option<SocketAddrV4>,
    /// Where the UDP echo server listens (one of `hosts`).
    pub udp_echo: Option<SocketAddrV4>,
    /// Where its resolver listens (one of `hosts`): the upstream the lab's agents forward the
    /// DNS queries their VPC routers do not answer to.
    pub dns: Option<SocketAddrV4>,
    /// The names that resolver knows (lowercase, no final dot) and their addresses; every
    /// other name is NXDOMAIN.
    pub dns_names: BTreeMap<String, Ipv4Addr>,
}

/// The internet's network: the documentation range 203.0.113.0/24.
pub const INTERNET_NET: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(203, 0, 113, 0), 24) {
    Ok(net) => net,
    Err(_) => panic!("a /24 is a valid prefix"),
};
/// The lowest address an internet host may have (.0 is the network's).
pub const INTERNET_HOSTS_FIRST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The highest: the server hands out public and Elastic IPs from 203.0.113.16 on.
pub const INTERNET_HOSTS_LAST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 15);

/// A host: a network namespace on the fabric, normally running `softvpc agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Its name (unique).
    pub name: String,
    /// Whether the lab runs an agent for it (false: only registered with the server).
    pub agent: bool,
    /// Its address on the underlay fabric.
    pub underlay_ip: Ipv4Addr,
    /// Its availability zone (default us-east-1a).
    pub availability_zone: String,
}

/// A VPC and its subnets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vpc {
    /// Its name (unique; its Name tag).
    pub name: String,
    /// Its CIDR block.
    pub cidr: Ipv4Net,
    /// Its subnets.
    pub subnets: Vec<Subnet>,
    /// Whether it gets an internet gateway (`internet_gateway = true`).
    pub internet_gateway: bool,
    /// Its NAT gateways (each with an Elastic IP).
    pub nat_gateways: Vec<NatGateway>,
    /// Its security groups (besides the default group).
    pub security_groups: Vec<SecurityGroup>,
}

/// A public NAT gateway in a subnet of its VPC (the lab allocates its Elastic IP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatGateway {
    /// Its name (unique in the VPC; its Name tag).
    pub name: String,
    /// Index into the VPC's subnets.
    pub subnet: usize,
}

/// A route of a subnet's own route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The destination CIDR.
    pub destination: Ipv4Net,
    /// Where it goes.
    pub target: RouteTarget,
}

/// A route's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteTarget {
    /// The VPC's internet gateway (`internet-gateway`).
    InternetGateway,
    /// A NAT gateway of the VPC (`nat-gateway:NAME`), by index.
    NatGateway(usize),
}

/// A security group of a VPC: egress open (AWS's default), the given ingress rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    /// Its name (unique in the VPC; its GroupName).
    pub name: String,
    /// Its inbound rules.
    pub ingress: Vec<IngressRule>,
}

/// One inbound rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressRule {
    /// `tcp`, `udp`, `icmp` or `-1`.
    pub protocol: String,
    /// Port range (TCP/UDP; `None`: all, or ICMP).
    pub ports: Option<(u16, u16)>,
    /// Who may connect.
    pub peer: RulePeer,
}

/// The peer of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulePeer {
    /// An address range.
    Cidr(Ipv4Net),
    /// Members of another security group of the VPC, by index.
    Group(usize),
}

/// A subnet of a VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    /// Optional Name tag.
    pub name: Option<String>,
    /// Its CIDR block, inside the VPC's.
    pub cidr: Ipv4Net,
    /// Its availability zone (default us-east-1a): its instances' hosts must be in it.
    pub availability_zone: String,
    /// Routes of its own route table (empty: it keeps the VPC's main table).
    pub routes: Vec<RouteSpec>,
}

/// An instance: one ENI in a subnet, placed on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Its name (unique; its Name tag).
    pub name: String,
    /// Index into [`Topology::vpcs`].
    pub vpc: usize,
    /// Index into that VPC's subnets.
    pub subnet: usize,
    /// Fixed private IP, or `None` to let the server pick one.
    pub ip: Option<Ipv4Addr>,
    /// Index into [`Topology::hosts`].
    pub host: usize,
    /// Whether the lab gives it an Elastic IP.
    pub elastic_ip: bool,
    /// Its security groups (indices into its VPC's; empty: the default group).
    pub security_groups: Vec<usize>,
}

/// Why a topology was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyError(pub String);

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TopologyError {}

macro_rules! bail {
    ($($arg:tt)*) => { return Err(TopologyError(format!($($arg)*))) };
}

// The file format, as serde sees it. Unknown keys are refused so that typos do not pass silently.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default)]
    host: Vec<RawHost>,
    #[serde(default)]
    vpc: Vec<RawVpc>,
    #[serde(default)]
    instance: Vec<RawInstance>,
    internet: Option<RawInternet>,
    #[serde(default)]
    instance_addressing: Addressing,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInternet {
    hosts: Vec<String>,
    http: Option<String>,
    udp_echo: Option<String>,
    dns: Option<String>,
    #[serde(default)]
    dns_names: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: String,
    #[serde(default = "yes")]
    agent: bool,
    availability_zone: Option<String>,
}

/// The zones of the server's region a topology may name.
const ZONES: [&str; 6] = [
    "us-east-1a",
    "us-east-1b",
    "us-east-1c",
    "us-east-1d",
    "us-east-1e",
    "us-east-1f",
];

fn zone(what: &str, z: Option<&String>) -> Result<String, TopologyError> {
    match z {
        None => Ok(ZONES[0].to_string()),
        Some(z) if ZONES.contains(&z.as_str()) => Ok(z.clone()),
        Some(z) => bail!(
            "{what}: unknown availability zone {z:?} (zones: {})",
            ZONES.join(", ")
        ),
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVpc {
    name: String,
    cidr: String,
    #[serde(default)]
    subnet: Vec<RawSubnet>,
    #[serde(default)]
    internet_gateway: bool,
    #[serde(default)]
    nat_gateway: Vec<RawNatGateway>,
    #[serde(default)]
    security_group: Vec<RawSecurityGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubnet {
    cidr: String,
    name: Option<String>,
    availability_zone: Option<String>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    destination: String,
    target: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNatGateway {
    name: String,
    subnet: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecurityGroup {
    name: String,
    #[serde(default)]
    ingress: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    protocol: String,
    port: Option<u16>,
    ports: Option<String>,
    cidr: Option<String>,
    group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    name: String,
    vpc: String,
    subnet: Option<String>,
    ip: Option<String>,
    host: String,
    #[serde(default)]
    elastic_ip: bool,
    #[serde(default)]
    security_groups: Vec<String>,
}

/// Parses a CIDR that must be written in canonical form (no host bits), /16../28 like AWS.
fn parse_cidr(what: &str, text: &str) -> Result<Ipv4Net, TopologyError> {
    let net: Ipv4Net = match text.parse() {
        Ok(net) => net,
        Err(_) => bail!("{what}: {text:?} is not an IPv4 CIDR block (like 10.0.0.0/16)"),
    };
    if net.trunc() != net {
        bail!(
            "{what}: {text} has host bits set (did you mean {}?)",
            net.trunc()
        );
    }
    if !(16..=28).contains(&net.prefix_len()) {
        bail!("{what}: {text} must be between /16 and /28");
    }
    Ok(net)
}

/// Checks a Name tag value used for a VPC, subnet or instance.
fn check_name(what: &str, name: &str) -> Result<(), TopologyError> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        bail!("{what}: name {name:?} must be 1..255 printable characters");
    }
    Ok(())
}

/// The addresses AWS reserves in a subnet: network, router (+1), DNS (+2), +3 and broadcast.
pub fn is_reserved(subnet: Ipv4Net, ip: Ipv4Addr) -> bool {
    let offset = u32::from(ip).wrapping_sub(u32::from(subnet.network()));
    offset <= 3 || ip == subnet.broadcast()
}

/// The subnet router's address (network + 1).
pub fn router_ip(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

impl Topology {
    /// The built-in seed topology.
    pub fn seed() -> Topology {
        // The seed file is part of the build and covered by a unit test.
        Topology::parse(SEED_TOPOLOGY).expect("the built-in seed topology is valid")
    }

    /// Parses and validates a topology file.
    pub fn parse(text: &str) -> Result<Topology, TopologyError> {
        let raw: RawTopology = toml::from_str(text).map_err(|e| TopologyError(e.to_string()))?;
        if raw.host.is_empty() {
            bail!("the topology has no [[host]]");
        }
        if raw.host.len() > MAX_HOSTS {
            bail!(
                "the topology has {} hosts; at most {MAX_HOSTS} are supported",
                raw.host.len()
            );
        }

        let mut hosts = Vec::with_capacity(raw.host.len());
        let mut host_index = HashMap::new();
        for (i, h) in raw.host.iter().enumerate() {
            names::check_host_name(&h.name)
                .map_err(|e| TopologyError(format!("host {:?}: {e}", h.name)))?;
            if host_index.insert(h.name.clone(), i).is_some() {
                bail!("host {:?} is defined twice", h.name);
            }
            hosts.push(Host {
                name: h.name.clone(),
                agent: h.agent,
                underlay_ip: names::underlay_ip(i + 1),
                availability_zone: zone(
                    &format!("host {:?}", h.name),
                    h.availability_zone.as_ref(),
                )?,
            });
        }

        let mut vpcs = Vec::with_capacity(raw.vpc.len());
        let mut vpc_index = HashMap::new();
        for v in &raw.vpc {
            let what = format!("vpc {:?}", v.name);
            check_name(&what, &v.name)?;
            if vpc_index.insert(v.name.clone(), vpcs.len()).is_some() {
                bail!("vpc {:?} is defined twice", v.name);
            }
            let cidr = parse_cidr(&what, &v.cidr)?;
            let mut subnets: Vec<Subnet> = Vec::with_capacity(v.subnet.len());
            for s in &v.subnet {
                let swhat = format!("{what}, subnet {}", s.cidr);
                let scidr = parse_cidr(&swhat, &s.cidr)?;
                if !cidr.contains(&scidr) {
                    bail!("{swhat}: not inside the VPC's CIDR {cidr}");
                }
                if let Some(other) = subnets
                    .iter()
                    .find(|o| o.cidr.contains(&scidr) || scidr.contains(&o.cidr))
                {
                    bail!("{swhat}: overlaps subnet {} of the same VPC", other.cidr);
                }
                if let Some(name) = &s.name {
                    check_name(&swhat, name)?;
                    if subnets.iter().any(|o| o.name.as_deref() == Some(name)) {
                        bail!("{what}: two subnets are named {name:?}");
                    }
                }
                subnets.push(Subnet {
                    name: s.name.clone(),
                    cidr: scidr,
                    availability_zone: zone(&swhat, s.availability_zone.as_ref())?,
                    routes: Vec::new(),
                });
            }
            let find_subnet = |text: &str| {
                let by_cidr = text.parse::<Ipv4Net>().ok();
                subnets
                    .iter()
                    .position(|s| Some(s.cidr) == by_cidr || s.name.as_deref() == Some(text))
            };
            let mut nat_gateways: Vec<NatGateway> = Vec::new();
            for n in &v.nat_gateway {
                let nwhat = format!("{what}, nat_gateway {:?}", n.name);
                check_name(&nwhat, &n.name)?;
                if nat_gateways.iter().any(|o| o.name == n.name) {
                    bail!("{nwhat}: defined twice");
                }
                let Some(subnet) = find_subnet(&n.subnet) else {
                    bail!("{nwhat}: no subnet {:?} in the vpc", n.subnet);
                };
                if !v.internet_gateway {
                    bail!("{nwhat}: a public NAT gateway needs `internet_gateway = true`");
                }
                nat_gateways.push(NatGateway {
                    name: n.name.clone(),
                    subnet,
                });
            }
            for (si, s) in v.subnet.iter().enumerate() {
                for r in &s.routes {
                    let rwhat = format!("{what}, subnet {}, route {}", s.cidr, r.destination);
                    let destination: Ipv4Net = match r.destination.parse() {
                        Ok(d) => d,
                        Err(_) => bail!("{rwhat}: not an IPv4 CIDR block"),
                    };
                    let target = match r.target.as_str() {
                        "internet-gateway" if v.internet_gateway => RouteTarget::InternetGateway,
                        "internet-gateway" => {
                            bail!("{rwhat}: the vpc has no `internet_gateway = true`")
                        }
                        t => match t.strip_prefix("nat-gateway:") {
                            Some(name) => match nat_gateways.iter().position(|n| n.name == name) {
                                Some(i) => RouteTarget::NatGateway(i),
                                None => bail!("{rwhat}: no nat_gateway {name:?} in the vpc"),
                            },
                            None => bail!(
                                "{rwhat}: target {t:?} is neither internet-gateway nor \
                                 nat-gateway:NAME"
                            ),
                        },
                    };
                    subnets[si].routes.push(RouteSpec {
                        destination: destination.trunc(),
                        target,
                    });
                }
            }
            let mut security_groups: Vec<SecurityGroup> = Vec::new();
            for g in &v.security_group {
                let gwhat = format!("{what}, security_group {:?}", g.name);
                check_name(&gwhat, &g.name)?;
                if g.name == "default" || security_groups.iter().any(|o| o.name == g.name) {
                    bail!("{gwhat}: the name is taken");
                }
                security_groups.push(SecurityGroup {
                    name: g.name.clone(),
                    ingress: Vec::new(),
                });
            }
            for (gi, g) in v.security_group.iter().enumerate() {
                let gwhat = format!("{what}, security_group {:?}", g.name);
                for r in &g.ingress {
                    let rule = parse_rule(&gwhat, r, &security_groups)?;
                    security_groups[gi].ingress.push(rule);
                }
            }
            vpcs.push(Vpc {
                name: v.name.clone(),
                cidr,
                subnets,
                internet_gateway: v.internet_gateway,
                nat_gateways,
                security_groups,
            });
        }

        let mut instances = Vec::with_capacity(raw.instance.len());
        let mut instance_names = HashSet::new();
        // (vpc, ip) pairs in use: an address is unique within its VPC only.
        let mut used_ips: HashMap<(usize, Ipv4Addr), String> = HashMap::new();
        for r in &raw.instance {
            let what = format!("instance {:?}", r.name);
            check_name(&what, &r.name)?;
            if !instance_names.insert(r.name.clone()) {
                bail!("instance {:?} is defined twice", r.name);
            }
            let Some(&host) = host_index.get(&r.host) else {
                bail!(
                    "{what}: unknown host {:?} (hosts: {})",
                    r.host,
                    list(raw.host.iter().map(|h| &h.name))
                );
            };
            let Some(&vpc) = vpc_index.get(&r.vpc) else {
                bail!(
                    "{what}: unknown vpc {:?} (vpcs: {})",
                    r.vpc,
                    list(raw.vpc.iter().map(|v| &v.name))
                );
            };
            let v = &vpcs[vpc];
            let ip = match &r.ip {
                None => None,
                Some(text) => match text.parse::<Ipv4Addr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => bail!("{what}: ip {text:?} is not an IPv4 address"),
                },
            };
            let subnet = match (&r.subnet, ip) {
                (Some(s), _) => {
                    let by_cidr = s.parse::<Ipv4Net>().ok();
                    let found = v.subnets.iter().position(|sub| {
                        Some(sub.cidr) == by_cidr || sub.name.as_deref() == Some(s.as_str())
                    });
                    match found {
                        Some(i) => i,
                        None => bail!(
                            "{what}: vpc {:?} has no subnet {s:?} (subnets: {})",
                            v.name,
                            list(v.subnets.iter().map(|s| s.cidr.to_string()))
                        ),
                    }
                }
                (None, Some(ip)) => match v.subnets.iter().position(|s| s.cidr.contains(&ip)) {
                    Some(i) => i,
                    None => bail!("{what}: no subnet of vpc {:?} holds {ip}", v.name),
                },
                (None, None) => match v.subnets.len() {
                    1 => 0,
                    0 => bail!("{what}: vpc {:?} has no subnet", v.name),
                    _ => bail!(
                        "{what}: vpc {:?} has several subnets; say which (subnet = CIDR)",
                        v.name
                    ),
                },
            };
            let s = &v.subnets[subnet];
            if let Some(ip) = ip {
                if !s.cidr.contains(&ip) {
                    bail!("{what}: ip {ip} is outside subnet {}", s.cidr);
                }
                if is_reserved(s.cidr, ip) {
                    bail!(
                        "{what}: ip {ip} is reserved in subnet {} (network, .1 router, .2 DNS, .3, broadcast)",
                        s.cidr
                    );
                }
                if let Some(other) = used_ips.insert((vpc, ip), r.name.clone()) {
                    bail!(
                        "{what}: ip {ip} is already used by instance {other:?} in vpc {:?}",
                        v.name
                    );
                }
            }
            let (sz, hz) = (
                &vpcs[vpc].subnets[subnet].availability_zone,
                &hosts[host].availability_zone,
            );
            if sz != hz {
                bail!(
                    "{what}: its subnet is in {sz} but host {:?} is in {hz} (an instance runs on \
                     a host of its subnet's zone)",
                    hosts[host].name
                );
            }
            let mut security_groups = Vec::new();
            for g in &r.security_groups {
                match vpcs[vpc].security_groups.iter().position(|x| &x.name == g) {
                    Some(i) => security_groups.push(i),
                    None => bail!(
                        "{what}: vpc {:?} has no security_group {g:?}",
                        vpcs[vpc].name
                    ),
                }
            }
            if r.elastic_ip && !vpcs[vpc].internet_gateway {
                bail!("{what}: an Elastic IP needs the vpc's `internet_gateway = true`");
            }
            instances.push(Instance {
                name: r.name.clone(),
                vpc,
                subnet,
                ip,
                host,
                elastic_ip: r.elastic_ip,
                security_groups,
            });
        }

        let internet = raw.internet.as_ref().map(parse_internet).transpose()?;
        Ok(Topology {
            hosts,
            vpcs,
            instances,
            internet,
            addressing: raw.instance_addressing,
        })
    }

    /// The subnet an instance is in.
    pub fn subnet_of(&self, inst: &Instance) -> &Subnet {
        &self.vpcs[inst.vpc].subnets[inst.subnet]
    }
}

/// Checks one ingress rule: a protocol, a port or port range for TCP/UDP, one peer.
fn parse_rule(
    what: &str,
    r: &RawRule,
    groups: &[SecurityGroup],
) -> Result<IngressRule, TopologyError> {
    let protocol = match r.protocol.as_str() {
        p @ ("tcp" | "udp" | "icmp" | "-1") => p.to_string(),
        "all" => "-1".to_string(),
        p => bail!("{what}: protocol {p:?} is not tcp, udp, icmp or -1"),
    };
    let ports = match (&r.port, &r.ports) {
        (Some(p), None) => Some((*p, *p)),
        (None, Some(range)) => {
            let parsed = range
                .split_once('-')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
            match parsed {
                Some((a, b)) if a <= b => Some((a, b)),
                _ => bail!("{what}: ports {range:?} is not FROM-TO"),
            }
        }
        (None, None) => None,
        (Some(_), Some(_)) => bail!("{what}: give port or ports, not both"),
    };
    if ports.is_some() != matches!(protocol.as_str(), "tcp" | "udp") {
        bail!("{what}: tcp and udp rules need a port (or ports); icmp and -1 take none");
    }
    let peer = match (&r.cidr, &r.group) {
        (Some(c), None) => match c.parse::<Ipv4Net>() {
            Ok(net) => RulePeer::Cidr(net.trunc()),
            Err(_) => bail!("{what}: cidr {c:?} is not an IPv4 CIDR block"),
        },
        (None, Some(g)) => match groups.iter().position(|x| &x.name == g) {
            Some(i) => RulePeer::Group(i),
            None => bail!("{what}: no security_group {g:?} in the vpc"),
        },
        _ => bail!("{what}: a rule needs one of cidr or group"),
    };
    Ok(IngressRule {
        protocol,
        ports,
        peer,
    })
}

/// Checks `[internet]`: hosts in 203.0.113.1-15, unique; servers on one of them.
fn parse_internet(raw: &RawInternet) -> Result<Internet, TopologyError> {
    if raw.hosts.is_empty() {
        bail!("internet: `hosts` lists no address");
    }
    let mut hosts = Vec::with_capacity(raw.hosts.len());
    for text in &raw.hosts {
        let Ok(ip) = text.parse::<Ipv4Addr>() else {
            bail!("internet: host {text:?} is not an IPv4 address");
        };
        if !(INTERNET_HOSTS_FIRST..=INTERNET_HOSTS_LAST).contains(&ip) {
            bail!(
                "internet: host {ip} must be in {INTERNET_HOSTS_FIRST}-{INTERNET_HOSTS_LAST} \
                 (the rest of {INTERNET_NET} is the server's pool of public and Elastic IPs)"
            );
        }
        if hosts.contains(&ip) {
            bail!("internet: host {ip} is listed twice");
        }
        hosts.push(ip);
    }
    let server =
        |what: &str, text: &Option<String>| -> Result<Option<SocketAddrV4>, TopologyError> {
            let Some(text) = text else { return Ok(None) };
            let Ok(addr) = text.parse::<SocketAddrV4>() else {
                bail!(
                "internet: {what} {text:?} is not an IPv4 address and port (like 203.0.113.10:80)"
            );
            };
            if !hosts.contains(addr.ip()) || addr.port() == 0 {
                bail!(
                    "internet: {what} {addr} must be on one of its hosts ({}), port 1-65535",
                    list(hosts.iter().map(ToString::to_string))
                );
            }
            Ok(Some(addr))
        };
    let dns = server("dns", &raw.dns)?;
    if dns.is_none() && !raw.dns_names.is_empty() {
        bail!("internet: `dns_names` without `dns` (the resolver's address and port)");
    }
    let mut dns_names = BTreeMap::new();
    for (name, ip) in &raw.dns_names {
        let lower = name.trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if lower.len() > 253 || !lower.split('.').all(label_ok) {
            bail!("internet: dns_names: {name:?} is not a host name");
        }
        let Ok(ip) = ip.parse::<Ipv4Addr>() else {
            bail!("internet: dns_names: {name} = {ip:?} is not an IPv4 address");
        };
        if dns_names.insert(lower, ip).is_some() {
            bail!("internet: dns_names: {name} is listed twice");
        }
    }
    Ok(Internet {
        http: server("http", &raw.http)?,
        udp_echo: server("udp_echo", &raw.udp_echo)?,
        dns,
        dns_names,
        hosts,
    })
}

fn list<I, S>(items: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let v: Vec<String> = items.into_iter().map(|s| s.as_ref().to_string()).collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_addressing_defaults_to_dhcp_and_can_be_static() {
        assert_eq!(Topology::seed().addressing, Addressing::Dhcp);
        let one = "[[host]]\nname = \"host-1\"\n";
        let t = Topology::parse(&format!("instance_addressing = \"static\"\n{one}")).unwrap();
        assert_eq!(t.addressing, Addressing::Static);
        let e = Topology::parse(&format!("instance_addressing = \"bootp\"\n{one}")).unwrap_err();
        assert!(e.0.contains("bootp"), "{e}");
    }

    fn err(text: &str) -> String {
        Topology::parse(text)
            .expect_err("topology should be refused")
            .0
    }

    const HOSTS: &str = "[[host]]\nname = \"h1\"\n[[host]]\nname = \"h2\"\nagent = false\n";

    fn with_vpc(rest: &str) -> String {
        format!("{HOSTS}[[vpc]]\nname = \"v\"\ncidr = \"10.0.0.0/16\"\n[[vpc.subnet]]\ncidr = \"10.0.0.0/24\"\nname = \"a\"\n[[vpc.subnet]]\ncidr = \"10.0.1.0/24\"\n{rest}")
    }

    #[test]
    fn seed_topology_has_the_seed_names_and_addresses() {
        let t = Topology::seed();
        let hosts: Vec<_> = t
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), h.underlay_ip, h.agent))
            .collect();
        assert_eq!(
            hosts,
            [
                ("host-1", Ipv4Addr::new(198, 18, 0, 11), true),
                ("host-2", Ipv4Addr::new(198, 18, 0, 12), true)
            ]
        );
        let vpcs: Vec<_> = t
            .vpcs
            .iter()
            .map(|v| {
                (
                    v.name.as_str(),
                    v.cidr.to_string(),
                    v.subnets
                        .iter()
                        .map(|s| s.cidr.to_string())
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(
            vpcs,
            [
                (
                    "zigi-vpc1",
                    "10.0.0.0/16".to_string(),
                    vec!["10.0.0.0/24".to_string(), "10.0.1.0/24".to_string()]
                ),
                (
                    "zigi-vpc2",
                    "10.0.0.0/16".to_string(),
                    vec!["10.0.0.0/24".to_string()]
                ),
            ]
        );
        let inst: Vec<_> = t
            .instances
            .iter()
            .map(|i| {
                (
                    i.name.as_str(),
                    t.vpcs[i.vpc].name.as_str(),
                    t.subnet_of(i).cidr.to_string(),
                    i.ip.map(|ip| ip.to_string()),
                    t.hosts[i.host].name.as_str(),
                )
            })
            .collect();
        let want = [
            (
                "zigi-vm1",
                "zigi-vpc1",
                "10.0.0.0/24",
                "10.0.0.148",
                "host-1",
            ),
            (
                "zigi-vm2",
                "zigi-vpc1",
                "10.0.0.0/24",
                "10.0.0.185",
                "host-2",
            ),
            (
                "zigi-vm3",
                "zigi-vpc1",
                "10.0.1.0/24",
                "10.0.1.20",
                "host-2",
            ),
            (
                "zigi-vm4",
                "zigi-vpc1",
                "10.0.0.0/24",
                "10.0.0.30",
                "host-1",
            ),
            (
                "other-vm1",
                "zigi-vpc2",
                "10.0.0.0/24",
                "10.0.0.148",
                "host-1",
            ),
            (
                "other-vm2",
                "zigi-vpc2",
                "10.0.0.0/24",
                "10.0.0.185",
                "host-2",
            ),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(n, v, s, ip, h)| (*n, *v, s.to_string(), Some(ip.to_string()), *h))
            .collect();
        assert_eq!(inst, want);
    }

    #[test]
    fn every_example_topology_is_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("examples/") {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let t =
                    Topology::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!t.hosts.is_empty(), "{}", path.display());
                checked += 1;
            }
        }
        assert!(
            checked >= 2,
            "expected the seed and at least one more example"
        );
    }

    #[test]
    fn the_public_private_example_has_gateways_routes_and_groups() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let text = std::fs::read_to_string(dir.join("public-private.toml")).unwrap();
        let t = Topology::parse(&text).unwrap();
        let v = &t.vpcs[0];
        assert!(v.internet_gateway);
        assert_eq!(v.nat_gateways[0].name, "nat");
        assert_eq!(v.nat_gateways[0].subnet, 0);
        assert_eq!(v.subnets[0].routes[0].target, RouteTarget::InternetGateway);
        assert_eq!(v.subnets[1].routes[0].target, RouteTarget::NatGateway(0));
        assert_eq!(v.security_groups[1].ingress[0].peer, RulePeer::Group(0));
        assert_eq!(v.security_groups[1].ingress[0].ports, Some((8080, 8080)));
        let web = t.instances.iter().find(|i| i.name == "web").unwrap();
        assert!(web.elastic_ip);
        assert_eq!(web.security_groups, [0]);
        // Mistakes are named.
        let broken = text.replace("nat-gateway:nat", "nat-gateway:gone");
        assert!(err(&broken).contains("no nat_gateway \"gone\""));
        let broken = text.replace("internet_gateway = true", "");
        assert!(err(&broken).contains("internet_gateway = true"));
        let broken = text.replace("port = 8080, group", "group");
        assert!(err(&broken).contains("need a port"));
        let broken = text.replace("security_groups = [\"app\"]", "security_groups = [\"db\"]");
        assert!(err(&broken).contains("no security_group \"db\""));
    }

    #[test]
    fn subnet_is_found_by_cidr_name_or_ip() {
        let t = Topology::parse(&with_vpc(
            "[[instance]]\nname = \"x\"\nvpc = \"v\"\nsubnet = \"a\"\nhost = \"h1\"\n\
             [[instance]]\nname = \"y\"\nvpc = \"v\"\nsubnet = \"10.0.1.0/24\"\nhost = \"h2\"\n\
             [[instance]]\nname = \"z\"\nvpc = \"v\"\nip = \"10.0.1.9\"\nhost = \"h2\"\n",
        ))
        .expect("valid");
        let subnets: Vec<_> = t.instances.iter().map(|i| (i.subnet, i.ip)).collect();
        assert_eq!(
            subnets,
            [(0, None), (1, None), (1, Some(Ipv4Addr::new(10, 0, 1, 9)))]
        );
        assert!(!t.hosts[1].agent);
        assert_eq!(t.hosts[1].underlay_ip, Ipv4Addr::new(198, 18, 0, 12));
    }

    #[test]
    fn unknown_references_are_refused_with_the_known_names() {
        let e = err(&with_vpc(
            "[[instance]]\nname = \"x\"\nvpc = \"v\"\nsubnet = \"a\"\nhost = \"h9\"\n",
        ));
        assert!(
            e.contains("unknown host \"h9\"") && e.contains("h1, h2"),
            "{e}"
        );
        let e = err(&with_vpc(
            "[[instance]]\nname = \"x\"\nvpc = \"nope\"\nhost = \"h1\"\n",
        ));
        assert!(
            e.contains("unknown vpc \"nope\"") && e.contains("(vpcs: v)"),
            "{e}"
        );
        let e = err(&with_vpc(
            "[[instance]]\nname = \"x\"\nvpc = \"v\"\nsubnet = \"10.0.9.0/24\"\nhost = \"h1\"\n",
        ));
        assert!(e.contains("has no subnet \"10.0.9.0/24\""), "{e}");
        let e = err(&with_vpc(
            "[[instance]]\nname = \"x\"\nvpc = \"v\"\nhost = \"h1\"\n",
        ));
        assert!(e.contains("several subnets"), "{e}");
    }

    #[test]
    fn addresses_are_checked() {
        let e = err(&with_vpc("[[instance]]\nname = \"x\"\nvpc = \"v\"\nsubnet = \"a\"\nip = \"10.0.1.5\"\nhost = \"h1\"\n"));
        assert!(
            e.contains("ip 10.0.1.5 is outside subnet 10.0.0.0/24"),
            "{e}"
        );
        for reserved in ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.255"] {
            let e = err(&with_vpc(&format!(
                "[[instance]]\nname = \"x\"\nvpc = \"v\"\nip = \"{reserved}\"\nhost = \"h1\"\n"
            )));
            assert!(e.contains("is reserved"), "{reserved}: {e}");
        }
        let e = err(&with_vpc(
            "[[instance]]\nname = \"x\"\nvpc = \"v\"\nip = \"10.0.0.4x\"\nhost = \"h1\"\n",
        ));
        assert!(e.contains("not an IPv4 address"), "{e}");
        let e = err(&with_vpc(
            "[[instance]]\nname = \"x\"\nvpc = \"v\"\nip = \"10.0.0.9\"\nhost = \"h1\"\n\
             [[instance]]\nname = \"y\"\nvpc = \"v\"\nip = \"10.0.0.9\"\nhost = \"h2\"\n",
        ));
        assert!(e.contains("already used by instance \"x\""), "{e}");
        let e = err(&with_vpc(
            "[[instance]]\nname = \"x\"\nvpc = \"v\"\nip = \"10.1.0.9\"\nhost = \"h1\"\n",
        ));
        assert!(e.contains("no subnet of vpc \"v\" holds 10.1.0.9"), "{e}");
    }

    #[test]
    fn cidrs_are_checked() {
        let e = err(&format!(
            "{HOSTS}[[vpc]]\nname = \"v\"\ncidr = \"10.0.0.0/8\"\n"
        ));
        assert!(e.contains("between /16 and /28"), "{e}");
        let e = err(&format!(
            "{HOSTS}[[vpc]]\nname = \"v\"\ncidr = \"10.0.0.1/16\"\n"
        ));
        assert!(
            e.contains("host bits set (did you mean 10.0.0.0/16?)"),
            "{e}"
        );
        let e = err(&format!("{HOSTS}[[vpc]]\nname = \"v\"\ncidr = \"ten\"\n"));
        assert!(e.contains("not an IPv4 CIDR block"), "{e}");
        let e = err(&format!("{HOSTS}[[vpc]]\nname = \"v\"\ncidr = \"10.0.0.0/16\"\n[[vpc.subnet]]\ncidr = \"10.1.0.0/24\"\n"));
        assert!(e.contains("not inside the VPC's CIDR 10.0.0.0/16"), "{e}");
        let e = err(&format!(
            "{HOSTS}[[vpc]]\nname = \"v\"\ncidr = \"10.0.0.0/16\"\n[[vpc.subnet]]\ncidr = \"10.0.0.0/20\"\n[[vpc.subnet]]\ncidr = \"10.0.1.0/24\"\n"
        ));
        assert!(e.contains("overlaps subnet 10.0.0.0/20"), "{e}");
    }

    #[test]
    fn duplicates_and_bad_names_are_refused() {
        let e = err("[[host]]\nname = \"a\"\n[[host]]\nname = \"a\"\n");
        assert!(e.contains("host \"a\" is defined twice"), "{e}");
        let e = err(&format!("{HOSTS}[[vpc]]\nname = \"v\"\ncidr = \"10.0.0.0/16\"\n[[vpc]]\nname = \"v\"\ncidr = \"10.1.0.0/16\"\n"));
        assert!(e.contains("vpc \"v\" is defined twice"), "{e}");
        let e = err(&with_vpc(
            "[[instance]]\nname = \"x\"\nvpc = \"v\"\nsubnet = \"a\"\nhost = \"h1\"\n\
             [[instance]]\nname = \"x\"\nvpc = \"v\"\nsubnet = \"a\"\nhost = \"h1\"\n",
        ));
        assert!(e.contains("instance \"x\" is defined twice"), "{e}");
        let e = err("[[host]]\nname = \"fabric\"\n");
        assert!(e.contains("reserved"), "{e}");
        let e = err("[[host]]\nname = \"a b\"\n");
        assert!(e.contains("host \"a b\""), "{e}");
        let e = err("[[host]]\nname = \"a\"\nagnet = false\n");
        assert!(e.contains("unknown field"), "{e}");
        assert!(err("").contains("no [[host]]"));
    }

    #[test]
    fn the_internet_is_checked() {
        let t = Topology::seed();
        let net = t.internet.expect("the seed topology has an internet");
        assert_eq!(
            net.hosts,
            [
                Ipv4Addr::new(203, 0, 113, 10),
                Ipv4Addr::new(203, 0, 113, 11)
            ]
        );
        assert_eq!(net.http, Some("203.0.113.10:80".parse().unwrap()));
        assert_eq!(net.udp_echo, Some("203.0.113.10:7".parse().unwrap()));
        assert_eq!(net.dns, Some("203.0.113.10:53".parse().unwrap()));
        assert_eq!(
            net.dns_names.get("www.example.test"),
            Some(&Ipv4Addr::new(203, 0, 113, 10))
        );
        let t = Topology::parse(&format!(
            "{HOSTS}[internet]\nhosts = [\"203.0.113.5\"]\ndns = \"203.0.113.5:53\"\n\
             [internet.dns_names]\n\"Www.Example.TEST.\" = \"203.0.113.5\"\n"
        ))
        .unwrap();
        let names = t.internet.unwrap().dns_names;
        assert_eq!(names.keys().collect::<Vec<_>>(), ["www.example.test"]);
        assert_eq!(Topology::parse(HOSTS).unwrap().internet, None);
        let with = |body: &str| format!("{HOSTS}[internet]\n{body}");
        for (body, want) in [
            ("hosts = []\n", "lists no address"),
            (
                "hosts = [\"203.0.113.16\"]\n",
                "must be in 203.0.113.1-203.0.113.15",
            ),
            ("hosts = [\"10.0.0.1\"]\n", "must be in"),
            ("hosts = [\"x\"]\n", "not an IPv4 address"),
            (
                "hosts = [\"203.0.113.5\", \"203.0.113.5\"]\n",
                "listed twice",
            ),
            (
                "hosts = [\"203.0.113.5\"]\nhttp = \"203.0.113.6:80\"\n",
                "must be on one of its hosts",
            ),
            (
                "hosts = [\"203.0.113.5\"]\nudp_echo = \"203.0.113.5\"\n",
                "not an IPv4 address and port",
            ),
            (
                "hosts = [\"203.0.113.5\"]\nudp_echo = \"203.0.113.5:0\"\n",
                "port 1-65535",
            ),
            (
                "hosts = [\"203.0.113.5\"]\nftp = \"203.0.113.5:21\"\n",
                "unknown field",
            ),
            (
                "hosts = [\"203.0.113.5\"]\ndns = \"203.0.113.6:53\"\n",
                "must be on one of its hosts",
            ),
            (
                "hosts = [\"203.0.113.5\"]\n[internet.dns_names]\n\"a.test\" = \"203.0.113.5\"\n",
                "without `dns`",
            ),
            (
                "hosts = [\"203.0.113.5\"]\ndns = \"203.0.113.5:53\"\n\
                 [internet.dns_names]\n\"a..test\" = \"203.0.113.5\"\n",
                "not a host name",
            ),
            (
                "hosts = [\"203.0.113.5\"]\ndns = \"203.0.113.5:53\"\n\
                 [internet.dns_names]\n\"a.test\" = \"x\"\n",
                "not an IPv4 address",
            ),
            (
                "hosts = [\"203.0.113.5\"]\ndns = \"203.0.113.5:53\"\n\
                 [internet.dns_names]\n\"a.test\" = \"203.0.113.5\"\n\"A.test\" = \"203.0.113.5\"\n",
                "listed twice",
            ),
        ] {
            let e = err(&with(body));
            assert!(e.contains(want), "{body}: {e}");
        }
    }

    #[test]
    fn reserved_addresses_follow_aws() {
        let s: Ipv4Net = "10.0.1.0/24".parse().unwrap();
        assert!(is_reserved(s, "10.0.1.3".parse().unwrap()));
        assert!(!is_reserved(s, "10.0.1.4".parse().unwrap()));
        assert!(!is_reserved(s, "10.0.1.254".parse().unwrap()));
        assert!(is_reserved(s, "10.0.1.255".parse().unwrap()));
        assert_eq!(router_ip(s), Ipv4Addr::new(10, 0, 1, 1));
    }
}

#[cfg(test)]
mod zone_tests {
    use super::*;

    const TWO_ZONES: &str =
        "[[host]]\nname = \"h1\"\n[[host]]\nname = \"h2\"\navailability_zone = \"us-east-1b\"\n\
        [[vpc]]\nname = \"v\"\ncidr = \"10.0.0.0/16\"\n\
        [[vpc.subnet]]\ncidr = \"10.0.0.0/24\"\n\
        [[vpc.subnet]]\ncidr = \"10.0.1.0/24\"\navailability_zone = \"us-east-1b\"\n\
        [[instance]]\nname = \"a\"\nvpc = \"v\"\nsubnet = \"10.0.0.0/24\"\nhost = \"h1\"\n\
        [[instance]]\nname = \"b\"\nvpc = \"v\"\nsubnet = \"10.0.1.0/24\"\nhost = \"h2\"\n";

    #[test]
    fn hosts_and_subnets_have_zones() {
        let t = Topology::parse(TWO_ZONES).expect("valid");
        let zones: Vec<&str> = t
            .hosts
            .iter()
            .map(|h| h.availability_zone.as_str())
            .collect();
        assert_eq!(zones, ["us-east-1a", "us-east-1b"]);
        assert_eq!(t.vpcs[0].subnets[1].availability_zone, "us-east-1b");
        // The seed stays in one zone.
        assert!(Topology::seed()
            .hosts
            .iter()
            .all(|h| h.availability_zone == "us-east-1a"));
    }

    #[test]
    fn an_instance_runs_in_its_subnets_zone() {
        let crossed = TWO_ZONES.replace(
            "subnet = \"10.0.1.0/24\"\nhost = \"h2\"",
            "subnet = \"10.0.1.0/24\"\nhost = \"h1\"",
        );
        let e = Topology::parse(&crossed).expect_err("refused").0;
        assert!(e.contains("us-east-1b") && e.contains("us-east-1a"), "{e}");
        let bad = TWO_ZONES.replace(
            "availability_zone = \"us-east-1b\"\n[[vpc]]",
            "availability_zone = \"mars-1a\"\n[[vpc]]",
        );
        assert!(Topology::parse(&bad)
            .expect_err("refused")
            .0
            .contains("mars-1a"));
    }
}
