//! What the metadata service knows about each local instance ([`ImdsView`], built from the
//! mapping records by [`view_of`]) and the metadata tree it serves from it ([`lookup`]): AWS's
//! categories, listings one item per line with a trailing `/` on directories, leaves as plain
//! text without a trailing newline, the identity document as AWS prints it; the user data
//! ([`user_data`]) as the bytes given.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use softvpc_mapping::metadata::InstanceMetadata;
use softvpc_mapping::record::format_mac;
use softvpc_mapping::Records;

/// One ENI of an instance, as its metadata shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniView {
    /// `eni-...`.
    pub eni_id: String,
    /// `device-number`.
    pub device_index: u32,
    /// `aa:bb:..`.
    pub mac: String,
    /// Primary private address, then the secondary ones.
    pub ips: Vec<Ipv4Addr>,
    /// (public, private) pairs: the primary address's first.
    pub public: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Its subnet.
    pub subnet_id: String,
    /// Its subnet's CIDR (None if the record is missing).
    pub subnet_cidr: Option<Ipv4Net>,
    /// Its VPC.
    pub vpc_id: String,
    /// Its VPC's CIDRs, primary first.
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// Its groups' ids and names.
    pub groups: Vec<(String, String)>,
}

/// One local instance's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    /// `i-...`.
    pub instance_id: String,
    /// The instance's part (type, placement, options, tags).
    pub meta: InstanceMetadata,
    /// Its ENIs on this host, by device index.
    pub enis: Vec<EniView>,
    /// Its VPC's `enableDnsHostnames` (public host names).
    pub dns_hostnames: bool,
}

impl InstanceView {
    /// The instance's primary ENI (the lowest device index).
    pub fn primary(&self) -> Option<&EniView> {
        self.enis.first()
    }
}

/// Every local ENI attached to an instance, with its instance's metadata.
pub type ImdsView = HashMap<String, Arc<InstanceView>>;

/// The view for the ENIs placed on `host_id` (records without metadata are left out).
pub fn view_of(records: &Records, host_id: &str) -> ImdsView {
    let mut by_instance: BTreeMap<&str, (InstanceMetadata, Vec<EniView>, bool)> = BTreeMap::new();
    for e in records.enis.values() {
        let Some(meta) = &e.instance_metadata else {
            continue;
        };
        if host_id.is_empty() || e.host_id != host_id || e.instance_id.is_empty() {
            continue;
        }
        let vpc = records.vpcs.get(&e.vpc_id);
        let view = EniView {
            eni_id: e.eni_id.clone(),
            device_index: e.device_index,
            mac: format_mac(&e.mac),
            ips: std::iter::once(e.ip)
                .chain(e.secondary_ips.iter().copied())
                .collect(),
            public: e
                .public_addresses
                .iter()
                .map(|p| (p.public_ip, p.private_ip))
                .collect(),
            subnet_id: e.subnet_id.clone(),
            subnet_cidr: records.subnets.get(&e.subnet_id).map(|s| s.cidr),
            vpc_id: e.vpc_id.clone(),
            vpc_cidrs: vpc.map(|v| v.cidrs.clone()).unwrap_or_default(),
            groups: e
                .security_group_ids
                .iter()
                .enumerate()
                .map(|(n, id)| {
                    (
                        id.clone(),
                        meta.security_group_names
                            .get(n)
                            .cloned()
                            .unwrap_or_default(),
                    )
                })
                .collect(),
        };
        let hostnames = vpc.is_some_and(|v| v.services.dns_hostnames);
        let entry = by_instance
            .entry(&e.instance_id)
            .or_insert_with(|| ((**meta).clone(), Vec::new(), hostnames));
        if e.device_index == 0 {
            entry.0 = (**meta).clone();
            entry.2 = hostnames;
        }
        entry.1.push(view);
    }
    let mut out = ImdsView::new();
    for (id, (meta, mut enis, dns_hostnames)) in by_instance {
        enis.sort_by_key(|e| (e.device_index, e.eni_id.clone()));
        let ids: Vec<String> = enis.iter().map(|e| e.eni_id.clone()).collect();
        let view = Arc::new(InstanceView {
            instance_id: id.to_string(),
            meta,
            enis,
            dns_hostnames,
        });
        for eni in ids {
            out.insert(eni, Arc::clone(&view));
        }
    }
    out
}

/// A node of the metadata tree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Leaf(String),
    Dir(BTreeMap<String, Node>),
    /// A node its parent lists under another name than its path segment (`public-keys/` lists
    /// `0=<key name>` for the path `public-keys/0/`).
    Listed(String, Box<Node>),
}

fn leaf(s: impl Into<String>) -> Node {
    Node::Leaf(s.into())
}

fn lines<T: ToString>(items: impl IntoIterator<Item = T>) -> Node {
    leaf(
        items
            .into_iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

fn dir<const N: usize>(items: [(&str, Node); N]) -> Node {
    Node::Dir(items.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// AWS's private IP name (`ip-10-0-0-5.ec2.internal`).
pub fn ip_name(ip: Ipv4Addr, domain: &str) -> String {
    let [a, b, c, d] = ip.octets();
    format!("ip-{a}-{b}-{c}-{d}.{domain}")
}

/// AWS's public DNS name of a public address in the region.
fn public_name(ip: Ipv4Addr, region: &str) -> String {
    let [a, b, c, d] = ip.octets();
    if region == "us-east-1" {
        format!("ec2-{a}-{b}-{c}-{d}.compute-1.amazonaws.com")
    } else {
        format!("ec2-{a}-{b}-{c}-{d}.{region}.compute.amazonaws.com")
    }
}

/// The availability zone id AWS would show (`use1-az1` for `us-east-1a`, as the flow logs'
/// `az-id`): the region's short code, then the zone's letter as a number.
fn az_id(az: &str, region: &str) -> String {
    let letter = az.strip_prefix(region).and_then(|l| l.bytes().next());
    let parts: Vec<&str> = region.split('-').collect();
    let short = match parts.as_slice() {
        [area, direction, n] => {
            let d = match *direction {
                "northeast" => "ne",
                "northwest" => "nw",
                "southeast" => "se",
                "southwest" => "sw",
                other => other.get(..1).unwrap_or(""),
            };
            format!("{area}{d}{n}")
        }
        _ => return String::new(),
    };
    match letter {
        Some(l) if l.is_ascii_lowercase() => format!("{short}-az{}", l - b'a' + 1),
        _ => String::new(),
    }
}

fn eni_node(v: &InstanceView, e: &EniView) -> Node {
    let domain = &v.meta.private_domain;
    let primary_ip = e.ips.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mut m: BTreeMap<String, Node> = BTreeMap::new();
    let mut put = |k: &str, n: Node| {
        m.insert(k.to_string(), n);
    };
    put("device-number", leaf(e.device_index.to_string()));
    put("interface-id", leaf(e.eni_id.clone()));
    put("local-hostname", leaf(ip_name(primary_ip, domain)));
    put("local-ipv4s", lines(&e.ips));
    put("mac", leaf(e.mac.clone()));
    put("owner-id", leaf(v.meta.account_id.clone()));
    put("security-group-ids", lines(e.groups.iter().map(|g| &g.0)));
    put("security-groups", lines(e.groups.iter().map(|g| &g.1)));
    put("subnet-id", leaf(e.subnet_id.clone()));
    if let Some(c) = e.subnet_cidr {
        put("subnet-ipv4-cidr-block", leaf(c.to_string()));
    }
    put("vpc-id", leaf(e.vpc_id.clone()));
    if let Some(c) = e.vpc_cidrs.first() {
        put("vpc-ipv4-cidr-block", leaf(c.to_string()));
        put("vpc-ipv4-cidr-blocks", lines(&e.vpc_cidrs));
    }
    if !e.public.is_empty() {
        put("public-ipv4s", lines(e.public.iter().map(|p| p.0)));
        put(
            "ipv4-associations",
            Node::Dir(
                e.public
                    .iter()
                    .map(|(public, private)| (public.to_string(), leaf(private.to_string())))
                    .collect(),
            ),
        );
        if v.dns_hostnames {
            put(
                "public-hostname",
                leaf(public_name(e.public[0].0, &v.meta.region)),
            );
        }
    }
    Node::Dir(m)
}

fn meta_data(v: &InstanceView) -> Node {
    let m = &v.meta;
    let mut top: BTreeMap<String, Node> = BTreeMap::new();
    let mut put = |k: &str, n: Node| {
        top.insert(k.to_string(), n);
    };
    put("ami-id", leaf(m.image_id.clone()));
    put("ami-launch-index", leaf(m.ami_launch_index.to_string()));
    put("ami-manifest-path", leaf("(unknown)"));
    put("instance-action", leaf("none"));
    put("instance-id", leaf(v.instance_id.clone()));
    put("instance-life-cycle", leaf("on-demand"));
    put("instance-type", leaf(m.instance_type.clone()));
    put(
        "placement",
        dir([
            ("availability-zone", leaf(m.availability_zone.clone())),
            (
                "availability-zone-id",
                leaf(az_id(&m.availability_zone, &m.region)),
            ),
            ("region", leaf(m.region.clone())),
        ]),
    );
    put("reservation-id", leaf(m.reservation_id.clone()));
    put(
        "services",
        dir([
            ("domain", leaf("amazonaws.com")),
            ("partition", leaf("aws")),
        ]),
    );
    if let Some(p) = v.primary() {
        let ip = p.ips.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED);
        put("hostname", leaf(ip_name(ip, &m.private_domain)));
        put("local-hostname", leaf(ip_name(ip, &m.private_domain)));
        put("local-ipv4", leaf(ip.to_string()));
        put("mac", leaf(p.mac.clone()));
        put("security-groups", lines(p.groups.iter().map(|g| &g.1)));
        if let Some((public, _)) = p.public.first() {
            put("public-ipv4", leaf(public.to_string()));
            if v.dns_hostnames {
                put("public-hostname", leaf(public_name(*public, &m.region)));
            }
        }
    }
    let macs: BTreeMap<String, Node> = v
        .enis
        .iter()
        .map(|e| (e.mac.clone(), eni_node(v, e)))
        .collect();
    put(
        "network",
        dir([("interfaces", dir([("macs", Node::Dir(macs))]))]),
    );
    if let Some((name, line)) = &m.public_key {
        put(
            "public-keys",
            dir([(
                "0",
                Node::Listed(
                    format!("0={name}"),
                    Box::new(dir([("openssh-key", leaf(line.clone()))])),
                ),
            )]),
        );
    }
    if m.tags_enabled {
        put(
            "tags",
            dir([(
                "instance",
                Node::Dir(
                    m.tags
                        .iter()
                        .map(|(k, v)| (k.clone(), leaf(v.clone())))
                        .collect(),
                ),
            )]),
        );
    }
    Node::Dir(top)
}

/// `dynamic/instance-identity/document`, as AWS prints it (two-space indent, ` : `).
pub fn identity_document(v: &InstanceView) -> String {
    let m = &v.meta;
    let s = |x: &str| serde_json::Value::String(x.to_string()).to_string();
    let private_ip = v
        .primary()
        .and_then(|p| p.ips.first())
        .map(|ip| s(&ip.to_string()))
        .unwrap_or_else(|| "null".into());
    let fields: [(&str, String); 15] = [
        ("accountId", s(&m.account_id)),
        ("architecture", s("x86_64")),
        ("availabilityZone", s(&m.availability_zone)),
        ("billingProducts", "null".into()),
        ("devpayProductCodes", "null".into()),
        ("marketplaceProductCodes", "null".into()),
        ("imageId", s(&m.image_id)),
        ("instanceId", s(&v.instance_id)),
        ("instanceType", s(&m.instance_type)),
        ("kernelId", "null".into()),
        ("pendingTime", s(&rfc3339(m.launch_time))),
        ("privateIp", private_ip),
        ("ramdiskId", "null".into()),
        ("region", s(&m.region)),
        ("version", s("2017-09-30")),
    ];
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("  \"{k}\" : {v}"))
        .collect();
    format!("{{\n{}\n}}", body.join(",\n"))
}

/// `2016-11-19T16:32:11Z`.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, mo, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// What a metadata path names, once the version is taken off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Category<'a> {
    /// `/`: the versions.
    Versions,
    /// `/<version>/`: the categories.
    Root,
    /// `/<version>/meta-data/...`: the segments below.
    MetaData(Vec<&'a str>),
    /// `/<version>/dynamic/...`.
    Dynamic(Vec<&'a str>),
    /// `/<version>/user-data`.
    UserData,
    /// `/<version>/api/token`; `latest` is false for a dated version.
    Token {
        /// Whether the version was `latest`.
        latest: bool,
    },
}

/// The versions `/` lists (AWS's, oldest first, then `latest`).
pub const VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
    "2011-01-01",
    "2011-05-01",
    "2012-01-12",
    "2014-02-25",
    "2014-11-05",
    "2015-10-20",
    "2016-04-19",
    "2016-06-30",
    "2016-09-02",
    "2018-03-28",
    "2018-08-17",
    "2018-09-24",
    "2019-10-01",
    "2020-10-27",
    "2021-01-03",
    "2021-03-23",
    "2021-07-15",
    "2022-09-24",
    "2024-04-11",
    "latest",
];

/// Parses a request target (`/latest/meta-data/placement/region`, a query string ignored) into
/// what it names; `None` for anything the service does not have (404): an unknown version or
/// category, an empty or dot segment, no leading `/`.
pub fn parse_path(target: &str) -> Option<Category<'_>> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(Category::Versions);
    }
    let mut segs: Vec<&str> = rest.split('/').collect();
    // One trailing slash is allowed (a listing); inner empty segments are not.
    if segs.last() == Some(&"") {
        segs.pop();
    }
    if segs.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
        return None;
    }
    let (version, below) = segs.split_first()?;
    if !VERSIONS.contains(version) {
        return None;
    }
    let latest = *version == "latest";
    match below {
        [] => Some(Category::Root),
        ["meta-data", tail @ ..] => Some(Category::MetaData(tail.to_vec())),
        ["dynamic", tail @ ..] => Some(Category::Dynamic(tail.to_vec())),
        ["user-data"] => Some(Category::UserData),
        ["api", "token"] => Some(Category::Token { latest }),
        _ => None,
    }
}

fn walk(mut node: &Node, segs: &[&str]) -> Option<String> {
    for s in segs {
        match node {
            Node::Dir(m) => node = m.get(*s)?,
            Node::Leaf(_) | Node::Listed(..) => return None,
        }
        if let Node::Listed(_, inner) = node {
            node = inner;
        }
    }
    Some(match node {
        Node::Leaf(v) => v.clone(),
        Node::Dir(m) => m
            .iter()
            .map(|(k, v)| match v {
                Node::Dir(_) => format!("{k}/"),
                Node::Leaf(_) => k.clone(),
                Node::Listed(label, _) => label.clone(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Node::Listed(_, _) => return None,
    })
}

/// The body for a GET of `cat` by instance `v`; `None`: 404 (also the token path, which the
/// caller answers itself).
pub fn lookup(v: &InstanceView, cat: &Category<'_>) -> Option<String> {
    match cat {
        Category::Versions => Some(VERSIONS.join("\n")),
        // `user-data` is listed only when the instance has some, as on AWS.
        Category::Root => Some(if v.meta.user_data.is_empty() {
            "dynamic\nmeta-data".to_string()
        } else {
            "dynamic\nmeta-data\nuser-data".to_string()
        }),
        Category::MetaData(segs) => walk(&meta_data(v), segs),
        Category::Dynamic(segs) => {
            let tree = dir([(
                "instance-identity",
                dir([("document", leaf(identity_document(v)))]),
            )]);
            walk(&tree, segs)
        }
        // Bytes, not text: answered by the caller through [`user_data`].
        Category::UserData | Category::Token { .. } => None,
    }
}

/// `/<version>/user-data`: the instance's user data as given (decoded from the API's base64);
/// `None` (a 404) when it has none.
pub fn user_data(v: &InstanceView) -> Option<&[u8]> {
    Some(v.meta.user_data.as_slice()).filter(|d| !d.is_empty())
}

/// A two-ENI instance for the tests of this module and of `http`.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub(crate) fn instance() -> InstanceView {
        InstanceView {
            instance_id: "i-0123456789abcdef0".into(),
            meta: InstanceMetadata {
                instance_type: "t3.micro".into(),
                image_id: "ami-12345678".into(),
                availability_zone: "us-east-1a".into(),
                region: "us-east-1".into(),
                account_id: "123456789012".into(),
                reservation_id: "r-1".into(),
                launch_time: 1_479_573_131,
                tags_enabled: true,
                tags: [("Name".to_string(), "web".to_string())].into(),
                ..Default::default()
            },
            enis: vec![
                EniView {
                    eni_id: "eni-0".into(),
                    device_index: 0,
                    mac: "02:00:00:00:00:01".into(),
                    ips: vec![Ipv4Addr::new(10, 0, 1, 5), Ipv4Addr::new(10, 0, 1, 6)],
                    public: vec![(Ipv4Addr::new(203, 0, 113, 20), Ipv4Addr::new(10, 0, 1, 5))],
                    subnet_id: "subnet-1".into(),
                    subnet_cidr: Some("10.0.1.0/24".parse().unwrap()),
                    vpc_id: "vpc-1".into(),
                    vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
                    groups: vec![
                        ("sg-1".into(), "default".into()),
                        ("sg-2".into(), "web".into()),
                    ],
                },
                EniView {
                    eni_id: "eni-1".into(),
                    device_index: 1,
                    mac: "02:00:00:00:00:02".into(),
                    ips: vec![Ipv4Addr::new(10, 0, 2, 5)],
                    public: vec![],
                    subnet_id: "subnet-2".into(),
                    subnet_cidr: Some("10.0.2.0/24".parse().unwrap()),
                    vpc_id: "vpc-1".into(),
                    vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
                    groups: vec![("sg-1".into(), "default".into())],
                },
            ],
            dns_hostnames: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::instance;
    use super::*;

    fn get(v: &InstanceView, path: &str) -> Option<String> {
        lookup(v, &parse_path(path)?)
    }

    #[test]
    fn leaves_and_listings_are_byte_exact() {
        let v = instance();
        assert_eq!(
            get(&v, "/latest/meta-data/instance-id").unwrap(),
            "i-0123456789abcdef0"
        );
        assert_eq!(get(&v, "/latest/meta-data/local-ipv4").unwrap(), "10.0.1.5");
        assert_eq!(
            get(&v, "/latest/meta-data/local-hostname").unwrap(),
            "ip-10-0-1-5.ec2.internal"
        );
        assert_eq!(
            get(&v, "/latest/meta-data/public-ipv4").unwrap(),
            "203.0.113.20"
        );
        assert_eq!(
            get(&v, "/latest/meta-data/placement/").unwrap(),
            "availability-zone\navailability-zone-id\nregion"
        );
        assert_eq!(
            get(&v, "/latest/meta-data/placement/availability-zone-id").unwrap(),
            "use1-az1"
        );
        assert_eq!(
            get(&v, "/latest/meta-data/network/interfaces/macs/").unwrap(),
            "02:00:00:00:00:01/\n02:00:00:00:00:02/"
        );
        let m = "/latest/meta-data/network/interfaces/macs/02:00:00:00:00:01/";
        assert_eq!(
            get(&v, m).unwrap(),
            "device-number\ninterface-id\nipv4-associations/\nlocal-hostname\nlocal-ipv4s\nmac\n\
             owner-id\npublic-ipv4s\nsecurity-group-ids\nsecurity-groups\nsubnet-id\n\
             subnet-ipv4-cidr-block\nvpc-id\nvpc-ipv4-cidr-block\nvpc-ipv4-cidr-blocks"
        );
        assert_eq!(
            get(&v, &format!("{m}local-ipv4s")).unwrap(),
            "10.0.1.5\n10.0.1.6"
        );
        assert_eq!(
            get(&v, &format!("{m}security-group-ids")).unwrap(),
            "sg-1\nsg-2"
        );
        assert_eq!(
            get(&v, &format!("{m}ipv4-associations/203.0.113.20")).unwrap(),
            "10.0.1.5"
        );
        let m2 = "/latest/meta-data/network/interfaces/macs/02:00:00:00:00:02/device-number";
        assert_eq!(get(&v, m2).unwrap(), "1");
        assert_eq!(get(&v, "/latest/meta-data/tags/instance").unwrap(), "Name");
        assert_eq!(
            get(&v, "/latest/meta-data/tags/instance/Name").unwrap(),
            "web"
        );
        let top = get(&v, "/latest/meta-data/").unwrap();
        assert!(top.starts_with("ami-id\nami-launch-index\n"), "{top}");
        assert!(
            top.contains("\nnetwork/\n") && top.contains("\nplacement/\n"),
            "{top}"
        );
        assert!(!top.ends_with('\n'));
        assert_eq!(
            get(&v, "/2009-04-04/meta-data/instance-id").unwrap(),
            "i-0123456789abcdef0"
        );
        assert_eq!(get(&v, "/latest/meta-data/nope"), None);
        assert_eq!(get(&v, "/latest/meta-data/instance-id/x"), None);
        assert_eq!(get(&v, "/1999-01-01/meta-data/instance-id"), None);
        assert_eq!(get(&v, "/latest/").unwrap(), "dynamic\nmeta-data");
        assert!(get(&v, "/").unwrap().ends_with("\nlatest"));
    }

    #[test]
    fn user_data_and_public_keys_as_aws_lists_them() {
        let mut v = instance();
        assert_eq!(user_data(&v), None);
        assert_eq!(get(&v, "/latest/meta-data/public-keys/"), None);
        assert!(!get(&v, "/latest/meta-data/")
            .unwrap()
            .contains("public-keys"));
        v.meta.user_data = b"#!/bin/sh\n\xff".to_vec();
        v.meta.public_key = Some(("ops".into(), "ssh-ed25519 AAAAC3Nz ops".into()));
        assert_eq!(user_data(&v), Some(&b"#!/bin/sh\n\xff"[..]));
        assert_eq!(
            get(&v, "/latest/").unwrap(),
            "dynamic\nmeta-data\nuser-data"
        );
        assert_eq!(get(&v, "/latest/meta-data/public-keys/").unwrap(), "0=ops");
        assert_eq!(get(&v, "/latest/meta-data/public-keys").unwrap(), "0=ops");
        assert_eq!(
            get(&v, "/latest/meta-data/public-keys/0/").unwrap(),
            "openssh-key"
        );
        assert_eq!(
            get(&v, "/latest/meta-data/public-keys/0/openssh-key").unwrap(),
            "ssh-ed25519 AAAAC3Nz ops"
        );
        assert_eq!(get(&v, "/latest/meta-data/public-keys/0=ops"), None);
        assert_eq!(get(&v, "/latest/meta-data/public-keys/1/"), None);
        let top = get(&v, "/latest/meta-data/").unwrap();
        assert!(top.contains("\npublic-keys/\n"), "{top}");
    }

    #[test]
    fn tags_are_absent_unless_enabled_and_the_document_is_awss_format() {
        let mut v = instance();
        v.meta.tags_enabled = false;
        assert_eq!(get(&v, "/latest/meta-data/tags/instance"), None);
        let doc = get(&v, "/latest/dynamic/instance-identity/document").unwrap();
        assert!(
            doc.starts_with("{\n  \"accountId\" : \"123456789012\",\n"),
            "{doc}"
        );
        assert!(
            doc.contains("\"pendingTime\" : \"2016-11-19T16:32:11Z\""),
            "{doc}"
        );
        assert!(doc.contains("\"kernelId\" : null"), "{doc}");
        assert!(doc.ends_with("\"version\" : \"2017-09-30\"\n}"), "{doc}");
        let parsed: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(parsed["privateIp"], "10.0.1.5");
        assert_eq!(parsed["region"], "us-east-1");
    }

    #[test]
    fn paths_parse_as_aws_serves_them() {
        assert_eq!(parse_path("/"), Some(Category::Versions));
        assert_eq!(parse_path("/latest"), Some(Category::Root));
        assert_eq!(
            parse_path("/latest/api/token"),
            Some(Category::Token { latest: true })
        );
        assert_eq!(
            parse_path("/2021-03-23/api/token"),
            Some(Category::Token { latest: false })
        );
        assert_eq!(
            parse_path("/latest/meta-data/placement/region?x=1"),
            Some(Category::MetaData(vec!["placement", "region"]))
        );
        for bad in [
            "",
            "latest",
            "//latest",
            "/latest//meta-data",
            "/latest/../x",
            "/x/meta-data",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
    }
}
