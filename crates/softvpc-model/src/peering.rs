//! VPC peering connections (`pcx-`) within our one account and region: requested
//! (`pending-acceptance`, or `failed` when the CIDRs overlap), then accepted (`active`),
//! rejected or deleted; a request not accepted within 7 days is `expired` (seen through
//! [`PeeringConnection::observed`] at the caller's `now`, so no timer is needed and tests give
//! the time). Routes may target an active peering of their VPC; a route to a peering
//! that is no longer active is a blackhole (see [`super::route_table::route_state`]).

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::filter::Filterable;
use super::ids::new_id;
use super::{ApiError, State, Tags, Txn, OWNER_ID};

/// The only region we serve.
pub const REGION: &str = "us-east-1";

/// A peering connection's status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeeringStatus {
    /// Waiting for the accepter.
    PendingAcceptance,
    /// Could not be made (e.g. overlapping CIDRs).
    Failed,
    /// Accepted: routes may use it.
    Active,
    /// Refused by the accepter.
    Rejected,
    /// Deleted (describable for a while).
    Deleted,
    /// Not accepted before its `ExpirationTime`.
    Expired,
}

impl PeeringStatus {
    /// AWS's status code.
    pub fn as_str(self) -> &'static str {
        match self {
            PeeringStatus::PendingAcceptance => "pending-acceptance",
            PeeringStatus::Failed => "failed",
            PeeringStatus::Active => "active",
            PeeringStatus::Rejected => "rejected",
            PeeringStatus::Deleted => "deleted",
            PeeringStatus::Expired => "expired",
        }
    }

    /// AWS's status message.
    pub fn message(self) -> String {
        match self {
            PeeringStatus::PendingAcceptance => format!("Pending Acceptance by {OWNER_ID}"),
            PeeringStatus::Failed => "Overlapping CIDR range".to_string(),
            PeeringStatus::Active => "Active".to_string(),
            PeeringStatus::Rejected => format!("Rejected by {OWNER_ID}"),
            PeeringStatus::Deleted => format!("Deleted by {OWNER_ID}"),
            PeeringStatus::Expired => "Expired".to_string(),
        }
    }
}

/// One side of a peering connection. The CIDRs are kept so a connection whose VPC is gone still
/// describes as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeeringSide {
    /// The VPC.
    pub vpc_id: String,
    /// Its primary CIDR block.
    pub cidr: Ipv4Net,
    /// Its secondary CIDR blocks, kept current while the connection is pending or active.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secondary_cidrs: Vec<Ipv4Net>,
}

impl PeeringSide {
    /// Every CIDR block of the side, the primary first (AWS's `CidrBlockSet`).
    pub fn cidrs(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        std::iter::once(self.cidr).chain(self.secondary_cidrs.iter().copied())
    }

    fn of(vpc: &super::Vpc) -> Self {
        PeeringSide {
            vpc_id: vpc.id.clone(),
            cidr: vpc.cidr,
            secondary_cidrs: vpc.cidrs().skip(1).collect(),
        }
    }
}

/// A VPC peering connection (`pcx-`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeeringConnection {
    /// `pcx-...`.
    pub id: String,
    /// The VPC that asked.
    pub requester: PeeringSide,
    /// The VPC that accepts.
    pub accepter: PeeringSide,
    /// Its status.
    pub status: PeeringStatus,
    /// Its tags.
    pub tags: Tags,
    /// When a request still pending acceptance expires (seconds since the epoch): 7 days after
    /// it was made, as on AWS. None for a connection created failed (and for records written
    /// before this field existed).
    #[serde(default)]
    pub expiration_time: Option<u64>,
}

/// How long a request waits for acceptance on AWS (7 days).
pub const PENDING_LIFETIME_SECS: u64 = 7 * 24 * 3600;

impl PeeringConnection {
    /// Its status at `now`: a request still pending acceptance at its `ExpirationTime` is
    /// `expired`.
    pub fn status_at(&self, now: u64) -> PeeringStatus {
        match (self.status, self.expiration_time) {
            (PeeringStatus::PendingAcceptance, Some(t)) if now >= t => PeeringStatus::Expired,
            (s, _) => s,
        }
    }

    /// The connection as a client sees it at `now` (its status moved on, see
    /// [`Self::status_at`]): what describe calls filter and show, and what mutations start from.
    pub fn observed(&self, now: u64) -> PeeringConnection {
        PeeringConnection {
            status: self.status_at(now),
            ..self.clone()
        }
    }

    /// `ExpirationTime` as AWS shows it: only while the request is pending acceptance.
    pub fn shown_expiration(&self) -> Option<u64> {
        self.expiration_time
            .filter(|_| self.status == PeeringStatus::PendingAcceptance)
    }

    /// True when `vpc_id` is one of its two sides.
    pub fn involves(&self, vpc_id: &str) -> bool {
        self.requester.vpc_id == vpc_id || self.accepter.vpc_id == vpc_id
    }
}

/// `InvalidVpcPeeringConnectionID.NotFound` for `id`.
pub fn pcx_not_found(id: &str) -> ApiError {
    ApiError::not_found(
        "InvalidVpcPeeringConnectionID.NotFound",
        "vpcPeeringConnection",
        &[id],
    )
}

/// The connection `id` as it is at the transaction's `now`, if it exists.
pub fn get_peering(txn: &Txn, id: &str) -> Result<PeeringConnection, ApiError> {
    txn.state
        .peering_connections
        .get(id)
        .map(|p| p.observed(txn.now))
        .ok_or_else(|| pcx_not_found(id))
}

/// True when `id` is an active peering connection with `vpc_id` on one side: only then can a
/// route of that VPC use it.
pub fn is_active_for(state: &State, id: &str, vpc_id: &str) -> bool {
    state
        .peering_connections
        .get(id)
        .is_some_and(|p| p.status == PeeringStatus::Active && p.involves(vpc_id))
}

/// The active peering connection between VPCs `a` and `b`, if there is one: only then may a
/// security group of one reference a group of the other.
pub fn active_between<'s>(state: &'s State, a: &str, b: &str) -> Option<&'s PeeringConnection> {
    state
        .peering_connections
        .values()
        .find(|p| {
            p.status == PeeringStatus::Active
                && ((p.requester.vpc_id == a && p.accepter.vpc_id == b)
                    || (p.requester.vpc_id == b && p.accepter.vpc_id == a))
        })
        .map(|p| &**p)
}

/// What `CreateVpcPeeringConnection` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// `VpcId` (the requester).
    pub vpc_id: String,
    /// `PeerVpcId` (the accepter).
    pub peer_vpc_id: String,
    /// `PeerOwnerId` (must be this account's).
    pub peer_owner_id: Option<String>,
    /// `PeerRegion` (must be this region).
    pub peer_region: Option<String>,
    /// From `TagSpecifications`.
    pub tags: Tags,
}

fn vpc_side(txn: &Txn, id: &str) -> Result<PeeringSide, ApiError> {
    let vpc = super::vpc::get_vpc(&txn.state, id)?;
    Ok(PeeringSide::of(vpc))
}

/// After `vpc`'s CIDR blocks changed: its pending and active connections show its blocks as they
/// are now; those in `failed` (a pending request whose requester overlaps a block the accepter
/// added) fail, as on AWS.
pub fn on_cidr_blocks(txn: &mut Txn, vpc: &super::Vpc, failed: &[String]) {
    let ids: Vec<String> = txn
        .state
        .peering_connections
        .values()
        .filter(|p| {
            p.involves(&vpc.id)
                && matches!(
                    p.status_at(txn.now),
                    PeeringStatus::Active | PeeringStatus::PendingAcceptance
                )
        })
        .map(|p| p.id.clone())
        .collect();
    for id in ids {
        let Some(p) = txn.state.peering_connections.get(&id) else {
            continue;
        };
        let mut p = (**p).clone();
        let side = PeeringSide::of(vpc);
        if p.requester.vpc_id == vpc.id {
            p.requester = side;
        } else {
            p.accepter = side;
        }
        if failed.contains(&p.id) {
            p.status = PeeringStatus::Failed;
        }
        txn.put(p);
    }
}

/// `CreateVpcPeeringConnection`: `pending-acceptance`, or `failed` when the two VPCs' CIDRs
/// overlap (AWS records the failed connection rather than refusing the call).
pub fn create_peering(txn: &mut Txn, req: &CreateRequest) -> Result<PeeringConnection, ApiError> {
    if let Some(owner) = &req.peer_owner_id {
        if owner != OWNER_ID {
            return Err(ApiError::invalid_value(format!(
                "Peering with another account ({owner}) is not supported; the only account is {OWNER_ID}."
            )));
        }
    }
    if let Some(region) = &req.peer_region {
        if region != REGION {
            return Err(ApiError::invalid_value(format!(
                "Inter-region peering ({region}) is not supported; the only region is {REGION}."
            )));
        }
    }
    let requester = vpc_side(txn, &req.vpc_id)?;
    let accepter = vpc_side(txn, &req.peer_vpc_id)?;
    if requester.vpc_id == accepter.vpc_id {
        return Err(ApiError::new(
            "InvalidVpcPeeringConnection.Duplicate",
            format!(
                "A VPC peering connection cannot be created between a VPC and itself ({}).",
                requester.vpc_id
            ),
        ));
    }
    let overlap = requester.cidrs().any(|a| {
        accepter
            .cidrs()
            .any(|b| a.contains(&b.network()) || b.contains(&a.network()))
    });
    let p = PeeringConnection {
        id: new_id("pcx"),
        requester,
        accepter,
        status: if overlap {
            PeeringStatus::Failed
        } else {
            PeeringStatus::PendingAcceptance
        },
        tags: req.tags.clone(),
        expiration_time: (!overlap).then(|| txn.now + PENDING_LIFETIME_SECS),
    };
    txn.put(p.clone());
    Ok(p)
}

fn invalid_transition(p: &PeeringConnection, action: &str) -> ApiError {
    ApiError::new(
        "InvalidStateTransition",
        format!(
            "Invalid state transition for pcx {}, attempted to transition from {} to {action}",
            p.id,
            p.status.as_str()
        ),
    )
}

/// Moves `id` from one of `from` to `to`, else `InvalidStateTransition`.
fn transition(
    txn: &mut Txn,
    id: &str,
    from: &[PeeringStatus],
    to: PeeringStatus,
) -> Result<PeeringConnection, ApiError> {
    let mut p = get_peering(txn, id)?;
    if !from.contains(&p.status) {
        return Err(invalid_transition(&p, to.as_str()));
    }
    p.status = to;
    txn.put(p.clone());
    Ok(p)
}

/// `AcceptVpcPeeringConnection`: only a `pending-acceptance` request.
pub fn accept_peering(txn: &mut Txn, id: &str) -> Result<PeeringConnection, ApiError> {
    transition(
        txn,
        id,
        &[PeeringStatus::PendingAcceptance],
        PeeringStatus::Active,
    )
}

/// `RejectVpcPeeringConnection`: only a `pending-acceptance` request.
pub fn reject_peering(txn: &mut Txn, id: &str) -> Result<(), ApiError> {
    transition(
        txn,
        id,
        &[PeeringStatus::PendingAcceptance],
        PeeringStatus::Rejected,
    )
    .map(|_| ())
}

/// `DeleteVpcPeeringConnection`: an `active` or `pending-acceptance` connection (AWS refuses
/// `failed`, `rejected` and `deleted` ones). The record stays, `deleted`, as AWS shows it.
pub fn delete_peering(txn: &mut Txn, id: &str) -> Result<(), ApiError> {
    transition(
        txn,
        id,
        &[PeeringStatus::PendingAcceptance, PeeringStatus::Active],
        PeeringStatus::Deleted,
    )
    .map(|_| ())
}

/// Deleting a VPC deletes its active and pending peering connections too (as AWS does when
/// both sides are in one account).
pub fn on_vpc_delete(txn: &mut Txn, vpc_id: &str) {
    let ids: Vec<String> = txn
        .state
        .peering_connections
        .values()
        .filter(|p| {
            p.involves(vpc_id)
                && matches!(
                    p.status_at(txn.now),
                    PeeringStatus::Active | PeeringStatus::PendingAcceptance
                )
        })
        .map(|p| p.id.clone())
        .collect();
    for id in ids {
        if let Some(p) = txn.state.peering_connections.get(&id) {
            let mut p = (**p).clone();
            p.status = PeeringStatus::Deleted;
            txn.put(p);
        }
    }
}

impl Filterable for PeeringConnection {
    const FILTERS: &'static [&'static str] = &[
        "vpc-peering-connection-id",
        "status-code",
        "status-message",
        "requester-vpc-info.vpc-id",
        "requester-vpc-info.cidr-block",
        "requester-vpc-info.owner-id",
        "accepter-vpc-info.vpc-id",
        "accepter-vpc-info.cidr-block",
        "accepter-vpc-info.owner-id",
        "expiration-time",
    ];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        match name {
            "vpc-peering-connection-id" => vec![self.id.clone()],
            "status-code" => vec![self.status.as_str().into()],
            "status-message" => vec![self.status.message()],
            "requester-vpc-info.vpc-id" => vec![self.requester.vpc_id.clone()],
            "requester-vpc-info.cidr-block" => {
                self.requester.cidrs().map(|c| c.to_string()).collect()
            }
            "accepter-vpc-info.vpc-id" => vec![self.accepter.vpc_id.clone()],
            "accepter-vpc-info.cidr-block" => {
                self.accepter.cidrs().map(|c| c.to_string()).collect()
            }
            "requester-vpc-info.owner-id" | "accepter-vpc-info.owner-id" => {
                vec![OWNER_ID.into()]
            }
            "expiration-time" => self
                .shown_expiration()
                .map(super::filter::iso_time)
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    fn tag_map(&self) -> Tags {
        self.tags.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::super::route_table::{route_state, Route, Target};
    use super::super::vpc::{create_vpc, delete_vpc};
    use super::*;

    fn req(a: &str, b: &str) -> CreateRequest {
        CreateRequest {
            vpc_id: a.into(),
            peer_vpc_id: b.into(),
            ..Default::default()
        }
    }

    fn code<T: std::fmt::Debug>(r: Result<T, ApiError>) -> String {
        r.unwrap_err().code
    }

    #[test]
    fn a_request_not_accepted_in_seven_days_expires() {
        use super::super::route_table::{create_route, TargetSpec};
        let t0 = 1_700_000_000;
        let mut txn = Txn::new(State::new(), t0);
        let a = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let b = create_vpc(&mut txn, "10.1.0.0/16", None, Tags::new()).unwrap();
        let p = create_peering(&mut txn, &req(&a.id, &b.id)).unwrap();
        let q = create_peering(&mut txn, &req(&b.id, &a.id)).unwrap();
        assert_eq!(p.expiration_time, Some(t0 + PENDING_LIFETIME_SECS));
        let stored = txn.state.peering_connections[&p.id].clone();
        let end = t0 + PENDING_LIFETIME_SECS;
        assert_eq!(stored.status_at(end - 1), PeeringStatus::PendingAcceptance);
        assert_eq!(stored.status_at(end), PeeringStatus::Expired);
        assert_eq!(stored.observed(end).status.as_str(), "expired");
        assert_eq!(stored.observed(end).shown_expiration(), None);
        // Just in time: accepted, and an active connection never expires.
        let mut before = Txn::new(txn.state.clone(), end - 1);
        accept_peering(&mut before, &q.id).unwrap();
        let accepted = before.state.peering_connections[&q.id].clone();
        assert_eq!(
            accepted.status_at(end + 10 * PENDING_LIFETIME_SECS),
            PeeringStatus::Active
        );
        // Too late: neither accepted, rejected nor deleted, and no route may use it.
        let mut after = Txn::new(txn.state.clone(), end);
        for r in [
            accept_peering(&mut after, &p.id).map(|_| ()),
            reject_peering(&mut after, &p.id),
            delete_peering(&mut after, &p.id),
        ] {
            assert_eq!(code(r), "InvalidStateTransition");
        }
        let main = after
            .state
            .route_tables
            .values()
            .find(|t| t.vpc_id == a.id)
            .unwrap()
            .id
            .clone();
        let spec = TargetSpec {
            vpc_peering_connection_id: Some(p.id.clone()),
            ..Default::default()
        };
        assert_eq!(
            code(create_route(&mut after, &main, "10.1.0.0/16", &spec)),
            "InvalidVpcPeeringConnectionID.NotFound"
        );
        // Deleting the VPC leaves an expired request expired.
        delete_vpc(&mut after, &b.id).unwrap();
        assert_eq!(
            after.state.peering_connections[&p.id].status_at(end),
            PeeringStatus::Expired
        );
    }

    #[test]
    fn lifecycle_and_refusals() {
        let mut txn = Txn::new(State::new(), 0);
        let a = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let b = create_vpc(&mut txn, "10.1.0.0/16", None, Tags::new()).unwrap();
        let p = create_peering(&mut txn, &req(&a.id, &b.id)).unwrap();
        assert!(p.id.starts_with("pcx-"));
        assert_eq!(p.status, PeeringStatus::PendingAcceptance);
        assert_eq!(p.accepter.cidr.to_string(), "10.1.0.0/16");
        assert!(!is_active_for(&txn.state, &p.id, &a.id));
        assert_eq!(
            code(delete_vpc(&mut txn, "vpc-0123456789abcdef0")),
            "InvalidVpcID.NotFound"
        );
        accept_peering(&mut txn, &p.id).unwrap();
        assert!(is_active_for(&txn.state, &p.id, &a.id));
        assert!(is_active_for(&txn.state, &p.id, &b.id));
        assert_eq!(
            code(accept_peering(&mut txn, &p.id)),
            "InvalidStateTransition"
        );
        assert_eq!(
            code(reject_peering(&mut txn, &p.id)),
            "InvalidStateTransition"
        );
        delete_peering(&mut txn, &p.id).unwrap();
        assert_eq!(
            txn.state.peering_connections[&p.id].status,
            PeeringStatus::Deleted
        );
        assert_eq!(
            code(delete_peering(&mut txn, &p.id)),
            "InvalidStateTransition"
        );
        assert_eq!(
            code(accept_peering(&mut txn, "pcx-0123456789abcdef0")),
            "InvalidVpcPeeringConnectionID.NotFound"
        );
        // Rejected is final.
        let q = create_peering(&mut txn, &req(&b.id, &a.id)).unwrap();
        reject_peering(&mut txn, &q.id).unwrap();
        assert_eq!(
            code(delete_peering(&mut txn, &q.id)),
            "InvalidStateTransition"
        );
        assert_eq!(
            code(accept_peering(&mut txn, &q.id)),
            "InvalidStateTransition"
        );
    }

    #[test]
    fn create_checks() {
        let mut txn = Txn::new(State::new(), 0);
        let a = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let inner = create_vpc(&mut txn, "10.0.128.0/17", None, Tags::new()).unwrap();
        let far = create_vpc(&mut txn, "10.9.0.0/16", None, Tags::new()).unwrap();
        let f = create_peering(&mut txn, &req(&inner.id, &a.id)).unwrap();
        assert_eq!(f.status, PeeringStatus::Failed);
        assert_eq!(
            code(delete_peering(&mut txn, &f.id)),
            "InvalidStateTransition"
        );
        assert_eq!(
            code(create_peering(
                &mut txn,
                &req(&a.id, "vpc-0123456789abcdef0")
            )),
            "InvalidVpcID.NotFound"
        );
        assert_eq!(
            code(create_peering(&mut txn, &req(&a.id, &a.id))),
            "InvalidVpcPeeringConnection.Duplicate"
        );
        let mut r = req(&a.id, &far.id);
        r.peer_region = Some("eu-west-1".into());
        assert_eq!(code(create_peering(&mut txn, &r)), "InvalidParameterValue");
        r.peer_region = Some(REGION.into());
        r.peer_owner_id = Some("999999999999".into());
        assert_eq!(code(create_peering(&mut txn, &r)), "InvalidParameterValue");
        r.peer_owner_id = Some(OWNER_ID.into());
        assert_eq!(
            create_peering(&mut txn, &r).unwrap().status,
            PeeringStatus::PendingAcceptance
        );
    }

    #[test]
    fn routes_follow_the_peering_and_vpc_delete_deletes_it() {
        let mut txn = Txn::new(State::new(), 0);
        let a = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let b = create_vpc(&mut txn, "10.1.0.0/16", None, Tags::new()).unwrap();
        let c = create_vpc(&mut txn, "10.2.0.0/16", None, Tags::new()).unwrap();
        let p = create_peering(&mut txn, &req(&a.id, &b.id)).unwrap();
        accept_peering(&mut txn, &p.id).unwrap();
        let route = Route {
            destination: "10.1.0.0/16".parse().unwrap(),
            target: Target::VpcPeeringConnection(p.id.clone()),
            origin: super::super::route_table::Origin::CreateRoute,
        };
        assert_eq!(route_state(&txn.state, &a.id, &route), "active");
        // Not transitive: a third VPC cannot use it.
        assert_eq!(route_state(&txn.state, &c.id, &route), "blackhole");
        delete_vpc(&mut txn, &b.id).unwrap();
        assert_eq!(
            txn.state.peering_connections[&p.id].status,
            PeeringStatus::Deleted
        );
        assert_eq!(route_state(&txn.state, &a.id, &route), "blackhole");
    }

    #[test]
    fn pending_requests_expire_seven_days_later() {
        let mut txn = Txn::new(State::new(), 1_000);
        let a = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let b = create_vpc(&mut txn, "10.1.0.0/16", None, Tags::new()).unwrap();
        let c = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let p = create_peering(&mut txn, &req(&a.id, &b.id)).unwrap();
        assert_eq!(p.shown_expiration(), Some(1_000 + 7 * 24 * 3600));
        assert_eq!(p.field(&txn.state, "expiration-time").len(), 1);
        let p = accept_peering(&mut txn, &p.id).unwrap();
        assert_eq!(p.shown_expiration(), None, "active: no expiration shown");
        assert!(p.field(&txn.state, "expiration-time").is_empty());
        let f = create_peering(&mut txn, &req(&a.id, &c.id)).unwrap();
        assert_eq!(f.status, PeeringStatus::Failed);
        assert_eq!(f.expiration_time, None);
    }
}
