//! The agent's mapping view: what the mapping service sent, converted to the engine's types.
//!
//! [`MappingView`] holds the [`MappingRecords`] plus the resume point of the watch (epoch,
//! revision). It applies each `WatchResponse`: a Snapshot replaces everything, a Delta applies
//! its changes in order, a Heartbeat only advances the revision. Converting untrusted protobuf
//! into engine types is checked field by field; a bad record is skipped (and reported in the
//! [`Applied`] summary for the caller to log), never a panic. Everything here is pure, so the
//! watch protocol's state machine is unit-tested without a server.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use softvpc_engine::{EniInfo, HostInfo, Mac, MappingRecords, SubnetInfo, Vni, VpcInfo};
use softvpc_proto::pb;

/// A record the agent could not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record's id is empty: it cannot be stored or deleted by id.
    #[error("{kind} record with an empty id")]
    MissingId { kind: &'static str },
    /// A field does not parse (bad address, CIDR, MAC or a VNI wider than 24 bits).
    #[error("{kind} {id}: bad {field} {value:?}")]
    BadField {
        kind: &'static str,
        id: String,
        field: &'static str,
        value: String,
    },
}

fn bad(kind: &'static str, id: &str, field: &'static str, value: impl ToString) -> RecordError {
    RecordError::BadField {
        kind,
        id: id.to_string(),
        field,
        value: value.to_string(),
    }
}

fn require_id(kind: &'static str, id: &str) -> Result<(), RecordError> {
    if id.is_empty() {
        Err(RecordError::MissingId { kind })
    } else {
        Ok(())
    }
}

fn parse_vni(kind: &'static str, id: &str, vni: u32) -> Result<Vni, RecordError> {
    if vni > Vni::MAX {
        return Err(bad(kind, id, "vni", vni));
    }
    Ok(Vni(vni))
}

/// Parses `aa:bb:cc:dd:ee:ff` (case-insensitive).
pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in mac.iter_mut() {
        let part = parts.next()?;
        // from_str_radix alone would accept a sign ("+f").
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &Mac) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// Converts a proto host.
pub fn host_from_pb(h: &pb::Host) -> Result<HostInfo, RecordError> {
    require_id("host", &h.host_id)?;
    let underlay_ip = h
        .underlay_ip
        .parse::<Ipv4Addr>()
        .map_err(|_| bad("host", &h.host_id, "underlay_ip", &h.underlay_ip))?;
    Ok(HostInfo {
        host_id: h.host_id.clone(),
        name: h.name.clone(),
        underlay_ip,
    })
}

/// Converts a proto VPC (CIDRs are normalised to their network address).
pub fn vpc_from_pb(v: &pb::Vpc) -> Result<VpcInfo, RecordError> {
    require_id("vpc", &v.vpc_id)?;
    let vni = parse_vni("vpc", &v.vpc_id, v.vni)?;
    let cidrs = v
        .cidrs
        .iter()
        .map(|c| {
            c.parse::<Ipv4Net>()
                .map(|n| n.trunc())
                .map_err(|_| bad("vpc", &v.vpc_id, "cidr", c))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VpcInfo {
        vpc_id: v.vpc_id.clone(),
        vni,
        cidrs,
    })
}

/// Converts a proto subnet.
pub fn subnet_from_pb(s: &pb::Subnet) -> Result<SubnetInfo, RecordError> {
    require_id("subnet", &s.subnet_id)?;
    let cidr = s
        .cidr
        .parse::<Ipv4Net>()
        .map_err(|_| bad("subnet", &s.subnet_id, "cidr", &s.cidr))?
        .trunc();
    Ok(SubnetInfo {
        subnet_id: s.subnet_id.clone(),
        vpc_id: s.vpc_id.clone(),
        cidr,
    })
}

/// Converts a proto ENI. An empty `host_underlay_ip` means "not placed".
pub fn eni_from_pb(e: &pb::Eni) -> Result<EniInfo, RecordError> {
    const K: &str = "eni";
    require_id(K, &e.eni_id)?;
    let id = &e.eni_id;
    let vni = parse_vni(K, id, e.vni)?;
    let ip =
        e.ip.parse::<Ipv4Addr>()
            .map_err(|_| bad(K, id, "ip", &e.ip))?;
    let secondary_ips = e
        .secondary_ips
        .iter()
        .map(|s| {
            s.parse::<Ipv4Addr>()
                .map_err(|_| bad(K, id, "secondary_ip", s))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mac = parse_mac(&e.mac).ok_or_else(|| bad(K, id, "mac", &e.mac))?;
    let host_underlay_ip = if e.host_underlay_ip.is_empty() {
        None
    } else {
        Some(
            e.host_underlay_ip
                .parse::<Ipv4Addr>()
                .map_err(|_| bad(K, id, "host_underlay_ip", &e.host_underlay_ip))?,
        )
    };
    Ok(EniInfo {
        eni_id: e.eni_id.clone(),
        vpc_id: e.vpc_id.clone(),
        vni,
        subnet_id: e.subnet_id.clone(),
        ip,
        secondary_ips,
        mac,
        host_id: e.host_id.clone(),
        host_underlay_ip,
        instance_id: e.instance_id.clone(),
        instance_name: e.instance_name.clone(),
        device_index: e.device_index,
    })
}

/// Builds records from a snapshot, skipping (and returning) the bad ones.
pub fn records_from_snapshot(s: &pb::Snapshot) -> (MappingRecords, Vec<RecordError>) {
    let mut records = MappingRecords::default();
    let mut errors = Vec::new();
    for h in &s.hosts {
        match host_from_pb(h) {
            Ok(h) => {
                records.hosts.insert(h.host_id.clone(), h);
            }
            Err(e) => errors.push(e),
        }
    }
    for v in &s.vpcs {
        match vpc_from_pb(v) {
            Ok(v) => {
                records.vpcs.insert(v.vpc_id.clone(), v);
            }
            Err(e) => errors.push(e),
        }
    }
    for sn in &s.subnets {
        match subnet_from_pb(sn) {
            Ok(sn) => {
                records.subnets.insert(sn.subnet_id.clone(), sn);
            }
            Err(e) => errors.push(e),
        }
    }
    for e in &s.enis {
        match eni_from_pb(e) {
            Ok(e) => {
                records.enis.insert(e.eni_id.clone(), e);
            }
            Err(err) => errors.push(err),
        }
    }
    (records, errors)
}

/// Applies one change to `records`. Deleting a VPC also drops its subnets and ENIs (the
/// protocol says so); deleting something the agent does not hold is a no-op.
pub fn apply_change(records: &mut MappingRecords, change: &pb::Change) -> Result<(), RecordError> {
    use pb::change::Kind;
    let Some(kind) = &change.kind else {
        // An empty change (or one from a newer protocol this agent does not know): nothing to do.
        return Ok(());
    };
    match kind {
        Kind::UpsertHost(h) => {
            let h = host_from_pb(h)?;
            records.hosts.insert(h.host_id.clone(), h);
        }
        Kind::DeleteHostId(id) => {
            records.hosts.remove(id);
        }
        Kind::UpsertVpc(v) => {
            let v = vpc_from_pb(v)?;
            records.vpcs.insert(v.vpc_id.clone(), v);
        }
        Kind::DeleteVpcId(id) => {
            records.vpcs.remove(id);
            records.subnets.retain(|_, s| &s.vpc_id != id);
            records.enis.retain(|_, e| &e.vpc_id != id);
        }
        Kind::UpsertSubnet(s) => {
            let s = subnet_from_pb(s)?;
            records.subnets.insert(s.subnet_id.clone(), s);
        }
        Kind::DeleteSubnetId(id) => {
            records.subnets.remove(id);
        }
        Kind::UpsertEni(e) => {
            let e = eni_from_pb(e)?;
            records.enis.insert(e.eni_id.clone(), e);
        }
        Kind::DeleteEniId(id) => {
            records.enis.remove(id);
        }
    }
    Ok(())
}

/// What applying one watch message did (for logs and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Everything was replaced. `resync` is true when the agent already held a view (so this
    /// is a resynchronisation, not the first sync).
    Snapshot {
        resync: bool,
        skipped: Vec<RecordError>,
    },
    /// `changes` changes were applied in order (bad ones skipped).
    Delta {
        changes: usize,
        skipped: Vec<RecordError>,
    },
    /// Only the revision advanced.
    Heartbeat,
    /// A replay of a revision already applied (ignored).
    Stale,
}

impl Applied {
    /// Whether the records may have changed (so instances and the table need a refresh).
    pub fn changed(&self) -> bool {
        matches!(self, Applied::Snapshot { .. } | Applied::Delta { .. })
    }
}

/// The watch stream broke the protocol; the caller must drop its state and resync.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A Delta or Heartbeat for an epoch the agent does not hold: it cannot be applied on top.
    #[error("{kind} for epoch {got:?} while holding epoch {held:?}")]
    EpochMismatch {
        kind: &'static str,
        got: String,
        held: String,
    },
    /// A message with no kind the agent understands.
    #[error("watch message with no known kind (revision {0})")]
    UnknownKind(u64),
}

/// The agent's copy of the mapping view and the watch resume point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingView {
    pub records: MappingRecords,
    /// The server log's epoch this state came from (empty: none yet).
    pub epoch: String,
    /// The last revision applied (0: none yet).
    pub revision: u64,
    /// Snapshots applied so far (the first is the initial sync, later ones are resyncs).
    pub snapshots: u64,
}

impl MappingView {
    /// The request that resumes the watch from where this view is.
    pub fn watch_request(&self, host_id: &str) -> pb::WatchRequest {
        pb::WatchRequest {
            host_id: host_id.to_string(),
            epoch: self.epoch.clone(),
            revision: self.revision,
            held_vpc_ids: self.records.vpcs.keys().cloned().collect(),
        }
    }

    /// Forgets the resume point (keeping the records until the next Snapshot replaces them), so
    /// the next watch asks for a full Snapshot.
    pub fn reset_resume_point(&mut self) {
        self.epoch.clear();
        self.revision = 0;
    }

    /// Applies one watch message. On `Err` the view is unchanged and the caller should
    /// [`reset_resume_point`](Self::reset_resume_point) and reconnect.
    pub fn apply(&mut self, msg: &pb::WatchResponse) -> Result<Applied, ProtocolError> {
        use pb::watch_response::Kind;
        match &msg.kind {
            Some(Kind::Snapshot(s)) => {
                let resync = self.snapshots > 0;
                self.snapshots += 1;
                let (records, skipped) = records_from_snapshot(s);
                self.records = records;
                self.epoch = msg.epoch.clone();
                self.revision = msg.revision;
                Ok(Applied::Snapshot { resync, skipped })
            }
            Some(Kind::Delta(d)) => {
                self.check_epoch("delta", &msg.epoch)?;
                if msg.revision <= self.revision {
                    return Ok(Applied::Stale);
                }
                let mut skipped = Vec::new();
                for change in &d.changes {
                    if let Err(e) = apply_change(&mut self.records, change) {
                        skipped.push(e);
                    }
                }
                self.revision = msg.revision;
                Ok(Applied::Delta {
                    changes: d.changes.len(),
                    skipped,
                })
            }
            Some(Kind::Heartbeat(_)) => {
                self.check_epoch("heartbeat", &msg.epoch)?;
                if msg.revision <= self.revision {
                    return Ok(Applied::Stale);
                }
                self.revision = msg.revision;
                Ok(Applied::Heartbeat)
            }
            None => Err(ProtocolError::UnknownKind(msg.revision)),
        }
    }

    fn check_epoch(&self, kind: &'static str, epoch: &str) -> Result<(), ProtocolError> {
        if self.epoch.is_empty() || self.epoch != epoch {
            return Err(ProtocolError::EpochMismatch {
                kind,
                got: epoch.to_string(),
                held: self.epoch.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pb::change::Kind as C;
    use pb::watch_response::Kind as W;

    pub fn pb_host(id: &str, ip: &str) -> pb::Host {
        pb::Host {
            host_id: id.into(),
            name: format!("name-{id}"),
            underlay_ip: ip.into(),
        }
    }

    pub fn pb_vpc(id: &str, vni: u32, cidr: &str) -> pb::Vpc {
        pb::Vpc {
            vpc_id: id.into(),
            vni,
            cidrs: vec![cidr.into()],
        }
    }

    pub fn pb_subnet(id: &str, vpc: &str, cidr: &str) -> pb::Subnet {
        pb::Subnet {
            subnet_id: id.into(),
            vpc_id: vpc.into(),
            cidr: cidr.into(),
        }
    }

    pub fn pb_eni(id: &str, vpc: &str, vni: u32, subnet: &str, ip: &str, host: &str) -> pb::Eni {
        pb::Eni {
            eni_id: id.into(),
            vpc_id: vpc.into(),
            vni,
            subnet_id: subnet.into(),
            ip: ip.into(),
            secondary_ips: vec![],
            mac: "02:00:00:00:00:01".into(),
            host_id: host.into(),
            host_underlay_ip: if host.is_empty() {
                String::new()
            } else {
                "198.18.0.11".into()
            },
            instance_id: format!("i-{id}"),
            instance_name: String::new(),
            device_index: 0,
            ..Default::default()
        }
    }

    fn snapshot(epoch: &str, revision: u64, s: pb::Snapshot) -> pb::WatchResponse {
        pb::WatchResponse {
            epoch: epoch.into(),
            revision,
            kind: Some(W::Snapshot(s)),
        }
    }

    fn delta(epoch: &str, revision: u64, changes: Vec<C>) -> pb::WatchResponse {
        pb::WatchResponse {
            epoch: epoch.into(),
            revision,
            kind: Some(W::Delta(pb::Delta {
                changes: changes
                    .into_iter()
                    .map(|k| pb::Change { kind: Some(k) })
                    .collect(),
            })),
        }
    }

    fn base_snapshot() -> pb::Snapshot {
        pb::Snapshot {
            hosts: vec![pb_host("h-1", "198.18.0.11"), pb_host("h-2", "198.18.0.12")],
            vpcs: vec![pb_vpc("vpc-a", 0x101, "10.0.0.0/16")],
            subnets: vec![pb_subnet("subnet-a", "vpc-a", "10.0.0.0/24")],
            enis: vec![pb_eni(
                "eni-1",
                "vpc-a",
                0x101,
                "subnet-a",
                "10.0.0.148",
                "h-1",
            )],
        }
    }

    #[test]
    fn macs_parse_and_format() {
        let mac = parse_mac("02:Ab:cd:00:ff:10").expect("valid");
        assert_eq!(mac, [0x02, 0xab, 0xcd, 0x00, 0xff, 0x10]);
        assert_eq!(format_mac(&mac), "02:ab:cd:00:ff:10");
        for bad in [
            "",
            "02:ab:cd:00:ff",
            "02:ab:cd:00:ff:10:11",
            "02:ab:cd:00:ff:1",
            "zz:ab:cd:00:ff:10",
            "02-ab-cd-00-ff-10",
            "+2:ab:cd:00:ff:10",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn eni_converts_every_field() {
        let mut e = pb_eni("eni-1", "vpc-a", 0x101, "subnet-a", "10.0.0.148", "h-1");
        e.secondary_ips = vec!["10.0.0.149".into()];
        e.instance_name = "zigi-vm1".into();
        let info = eni_from_pb(&e).expect("valid");
        assert_eq!(info.vni, Vni(0x101));
        assert_eq!(info.ip, Ipv4Addr::new(10, 0, 0, 148));
        assert_eq!(info.secondary_ips, vec![Ipv4Addr::new(10, 0, 0, 149)]);
        assert_eq!(info.mac, [2, 0, 0, 0, 0, 1]);
        assert_eq!(info.host_underlay_ip, Some(Ipv4Addr::new(198, 18, 0, 11)));
        assert_eq!(info.instance_id, "i-eni-1");
        assert_eq!(info.instance_name, "zigi-vm1");
        // Unplaced ENI: no underlay address.
        let unplaced = eni_from_pb(&pb_eni("eni-2", "vpc-a", 0x101, "subnet-a", "10.0.0.5", ""))
            .expect("valid");
        assert_eq!(unplaced.host_underlay_ip, None);
    }

    #[test]
    fn bad_records_are_refused_with_the_field() {
        let mut e = pb_eni("eni-1", "vpc-a", 0x101, "subnet-a", "10.0.0.300", "h-1");
        assert!(matches!(
            eni_from_pb(&e),
            Err(RecordError::BadField { field: "ip", .. })
        ));
        e.ip = "10.0.0.1".into();
        e.mac = "02:00".into();
        assert!(matches!(
            eni_from_pb(&e),
            Err(RecordError::BadField { field: "mac", .. })
        ));
        e.mac = "02:00:00:00:00:01".into();
        e.vni = 0x0100_0000;
        assert!(matches!(
            eni_from_pb(&e),
            Err(RecordError::BadField { field: "vni", .. })
        ));
        e.vni = 1;
        e.host_underlay_ip = "host-1".into();
        assert!(matches!(
            eni_from_pb(&e),
            Err(RecordError::BadField {
                field: "host_underlay_ip",
                ..
            })
        ));
        e.eni_id.clear();
        assert_eq!(eni_from_pb(&e), Err(RecordError::MissingId { kind: "eni" }));
        assert!(matches!(
            vpc_from_pb(&pb_vpc("vpc-a", 1, "10.0.0.0/33")),
            Err(RecordError::BadField { field: "cidr", .. })
        ));
        assert!(matches!(
            subnet_from_pb(&pb_subnet("subnet-a", "vpc-a", "nonsense")),
            Err(RecordError::BadField { field: "cidr", .. })
        ));
        assert!(host_from_pb(&pb_host("h-1", "::1")).is_err());
        // CIDRs with host bits are normalised, not refused.
        let v = vpc_from_pb(&pb_vpc("vpc-a", 1, "10.0.3.7/16")).expect("valid");
        assert_eq!(
            v.cidrs,
            vec!["10.0.0.0/16".parse::<Ipv4Net>().expect("net")]
        );
    }

    #[test]
    fn snapshot_skips_bad_records_and_keeps_the_rest() {
        let mut s = base_snapshot();
        s.enis.push(pb_eni(
            "eni-bad",
            "vpc-a",
            0x101,
            "subnet-a",
            "not-an-ip",
            "h-1",
        ));
        s.hosts.push(pb_host("", "198.18.0.13"));
        let (records, errors) = records_from_snapshot(&s);
        assert_eq!(errors.len(), 2);
        assert_eq!(records.hosts.len(), 2);
        assert_eq!(records.enis.keys().collect::<Vec<_>>(), vec!["eni-1"]);
        assert_eq!(records.vpcs["vpc-a"].vni, Vni(0x101));
    }

    #[test]
    fn snapshot_replaces_everything() {
        let mut view = MappingView::default();
        let first = view
            .apply(&snapshot("e1", 5, base_snapshot()))
            .expect("apply");
        assert_eq!(
            first,
            Applied::Snapshot {
                resync: false,
                skipped: vec![]
            }
        );
        assert_eq!(view.records.enis.len(), 1);

        let other = pb::Snapshot {
            hosts: vec![pb_host("h-9", "198.18.0.19")],
            vpcs: vec![pb_vpc("vpc-b", 0x102, "10.0.0.0/16")],
            subnets: vec![],
            enis: vec![],
        };
        let second = view.apply(&snapshot("e2", 3, other)).expect("apply");
        assert_eq!(
            second,
            Applied::Snapshot {
                resync: true,
                skipped: vec![]
            }
        );
        assert_eq!(view.epoch, "e2");
        // A new epoch may restart revisions lower: the snapshot's revision is taken as is.
        assert_eq!(view.revision, 3);
        assert!(view.records.enis.is_empty());
        assert!(view.records.subnets.is_empty());
        assert_eq!(view.records.hosts.keys().collect::<Vec<_>>(), vec!["h-9"]);
        assert_eq!(view.records.vpcs.keys().collect::<Vec<_>>(), vec!["vpc-b"]);
    }

    #[test]
    fn deltas_apply_in_order() {
        let mut view = MappingView::default();
        view.apply(&snapshot("e1", 5, base_snapshot()))
            .expect("apply");
        let moved = pb_eni("eni-1", "vpc-a", 0x101, "subnet-a", "10.0.0.148", "h-2");
        let changes = vec![
            C::UpsertEni(pb_eni(
                "eni-2",
                "vpc-a",
                0x101,
                "subnet-a",
                "10.0.0.185",
                "h-2",
            )),
            C::UpsertEni(moved),
            C::DeleteEniId("eni-2".into()),
            C::UpsertHost(pb_host("h-3", "198.18.0.13")),
            C::DeleteHostId("h-2".into()),
            C::UpsertSubnet(pb_subnet("subnet-b", "vpc-a", "10.0.1.0/24")),
            C::DeleteEniId("eni-never-held".into()),
        ];
        let applied = view.apply(&delta("e1", 6, changes)).expect("apply");
        assert_eq!(
            applied,
            Applied::Delta {
                changes: 7,
                skipped: vec![]
            }
        );
        assert_eq!(view.revision, 6);
        // Upsert then delete of eni-2 leaves nothing; eni-1's second upsert wins.
        assert_eq!(view.records.enis.keys().collect::<Vec<_>>(), vec!["eni-1"]);
        assert_eq!(view.records.enis["eni-1"].host_id, "h-2");
        assert_eq!(
            view.records.hosts.keys().collect::<Vec<_>>(),
            vec!["h-1", "h-3"]
        );
        assert_eq!(view.records.subnets.len(), 2);
    }

    #[test]
    fn deleting_a_vpc_drops_its_subnets_and_enis() {
        let mut s = base_snapshot();
        s.vpcs.push(pb_vpc("vpc-b", 0x102, "10.0.0.0/16"));
        s.subnets
            .push(pb_subnet("subnet-b", "vpc-b", "10.0.0.0/24"));
        s.enis.push(pb_eni(
            "eni-b",
            "vpc-b",
            0x102,
            "subnet-b",
            "10.0.0.148",
            "h-1",
        ));
        let mut view = MappingView::default();
        view.apply(&snapshot("e1", 1, s)).expect("apply");
        view.apply(&delta("e1", 2, vec![C::DeleteVpcId("vpc-a".into())]))
            .expect("apply");
        assert_eq!(view.records.vpcs.keys().collect::<Vec<_>>(), vec!["vpc-b"]);
        assert_eq!(
            view.records.subnets.keys().collect::<Vec<_>>(),
            vec!["subnet-b"]
        );
        assert_eq!(view.records.enis.keys().collect::<Vec<_>>(), vec!["eni-b"]);
    }

    #[test]
    fn a_bad_change_is_skipped_and_the_rest_applied() {
        let mut view = MappingView::default();
        view.apply(&snapshot("e1", 1, base_snapshot()))
            .expect("apply");
        let changes = vec![
            C::UpsertEni(pb_eni("eni-x", "vpc-a", 0x101, "subnet-a", "bogus", "h-1")),
            C::UpsertEni(pb_eni(
                "eni-2",
                "vpc-a",
                0x101,
                "subnet-a",
                "10.0.0.185",
                "h-2",
            )),
        ];
        let Applied::Delta { changes, skipped } = view.apply(&delta("e1", 2, changes)).expect("ok")
        else {
            panic!("not a delta");
        };
        assert_eq!(changes, 2);
        assert_eq!(skipped.len(), 1);
        assert!(view.records.enis.contains_key("eni-2"));
        assert!(!view.records.enis.contains_key("eni-x"));
    }

    #[test]
    fn resume_state_and_protocol_checks() {
        let mut view = MappingView::default();
        // Nothing held: ask for a snapshot.
        let req = view.watch_request("h-1");
        assert_eq!((req.epoch.as_str(), req.revision), ("", 0));
        assert!(req.held_vpc_ids.is_empty());
        // A delta before any snapshot cannot be applied.
        assert!(matches!(
            view.apply(&delta("e1", 1, vec![])),
            Err(ProtocolError::EpochMismatch { .. })
        ));

        view.apply(&snapshot("e1", 10, base_snapshot()))
            .expect("apply");
        view.apply(&pb::WatchResponse {
            epoch: "e1".into(),
            revision: 12,
            kind: Some(W::Heartbeat(pb::Heartbeat {})),
        })
        .expect("heartbeat");
        let req = view.watch_request("h-1");
        assert_eq!(req.host_id, "h-1");
        assert_eq!((req.epoch.as_str(), req.revision), ("e1", 12));
        assert_eq!(req.held_vpc_ids, vec!["vpc-a".to_string()]);

        // Replays of applied revisions are ignored.
        let before = view.clone();
        let replay = delta("e1", 12, vec![C::DeleteVpcId("vpc-a".into())]);
        assert_eq!(view.apply(&replay), Ok(Applied::Stale));
        assert_eq!(view, before);
        // A delta from another epoch is refused and changes nothing.
        assert!(view.apply(&delta("e0", 13, vec![])).is_err());
        assert!(view
            .apply(&pb::WatchResponse {
                epoch: "e1".into(),
                revision: 13,
                kind: None
            })
            .is_err());
        assert_eq!(view, before);

        view.reset_resume_point();
        let req = view.watch_request("h-1");
        assert_eq!((req.epoch.as_str(), req.revision), ("", 0));
        // The snapshot that follows a reset is a resync, not a first sync.
        let again = view
            .apply(&snapshot("e2", 1, base_snapshot()))
            .expect("apply");
        assert_eq!(
            again,
            Applied::Snapshot {
                resync: true,
                skipped: vec![]
            }
        );
    }
}
