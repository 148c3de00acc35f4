//! VPCs: CIDR rules (/16../28, canonicalised), VNI allocation, deletion rules, filters, and
//! secondary IPv4 CIDR blocks (Associate/DisassociateVpcCidrBlock) with AWS's restrictions.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::filter::Filterable;
use super::ids::new_id;
use super::{ApiError, State, Tags, Txn, Vpc, FIRST_VNI, MAX_VNI};

/// Parses an IPv4 CIDR strictly (dotted quad, `/`, prefix length 0..=32) and canonicalises it
/// (host bits cleared: 100.68.0.18/18 -> 100.68.0.0/18). `param` names the parameter in the
/// error message.
pub fn parse_cidr(value: &str, param: &str) -> Result<Ipv4Net, ApiError> {
    let invalid = || {
        ApiError::invalid_value(format!(
            "Value ({value}) for parameter {param} is invalid. This is not a valid CIDR block."
        ))
    };
    let (addr, len) = value.split_once('/').ok_or_else(invalid)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
    if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let len: u8 = len.parse().map_err(|_| invalid())?;
    Ipv4Net::new(addr, len)
        .map(|n| n.trunc())
        .map_err(|_| invalid())
}

/// A secondary IPv4 CIDR block of a VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CidrBlock {
    /// `vpc-cidr-assoc-...`.
    pub association_id: String,
    /// The block.
    pub cidr: Ipv4Net,
    /// When it was disassociated (seconds since the epoch): it is listed `disassociated` for
    /// [`DISASSOCIATED_VISIBLE_SECS`], then forgotten.
    #[serde(default)]
    pub disassociated_at: Option<u64>,
}

impl CidrBlock {
    /// Its `CidrBlockState.State`.
    pub fn state(&self) -> &'static str {
        if self.disassociated_at.is_some() {
            "disassociated"
        } else {
            "associated"
        }
    }

    /// True while DescribeVpcs lists it at `now`.
    pub fn visible(&self, now: u64) -> bool {
        self.disassociated_at
            .is_none_or(|t| now < t.saturating_add(DISASSOCIATED_VISIBLE_SECS))
    }
}

/// How long a disassociated block stays listed (AWS shows it for a while).
pub const DISASSOCIATED_VISIBLE_SECS: u64 = 3600;
/// AWS's default quota of IPv4 CIDR blocks per VPC, the primary included.
pub const MAX_IPV4_CIDR_BLOCKS: usize = 5;

/// The VPC `id`, or AWS's `InvalidVpcID.NotFound`.
pub fn get_vpc<'a>(state: &'a State, id: &str) -> Result<&'a std::sync::Arc<Vpc>, ApiError> {
    state
        .vpcs
        .get(id)
        .ok_or_else(|| ApiError::not_found("InvalidVpcID.NotFound", "vpc", &[id]))
}

/// `CreateVpc`.
pub fn create_vpc(
    txn: &mut Txn,
    cidr: &str,
    instance_tenancy: Option<&str>,
    tags: Tags,
) -> Result<Vpc, ApiError> {
    let net = parse_cidr(cidr, "cidrBlock")?;
    if !(16..=28).contains(&net.prefix_len()) {
        return Err(ApiError::new(
            "InvalidVpc.Range",
            format!("The CIDR '{cidr}' is invalid."),
        ));
    }
    let tenancy = instance_tenancy.unwrap_or("default");
    if !["default", "dedicated", "host"].contains(&tenancy) {
        return Err(ApiError::invalid_value(format!(
            "Value ({tenancy}) for parameter instanceTenancy is invalid."
        )));
    }
    let vni = allocate_vni(&txn.state)?;
    txn.state.next_vni = if vni >= MAX_VNI { FIRST_VNI } else { vni + 1 };
    // As on AWS, a new VPC uses the region's default DHCP option set.
    let dhcp_options_id = Some(super::dhcp_options::region_default(txn));
    let vpc = Vpc {
        id: new_id("vpc"),
        cidr: net,
        cidr_association_id: new_id("vpc-cidr-assoc"),
        vni,
        instance_tenancy: tenancy.to_string(),
        tags,
        is_default: false,
        enable_dns_support: true,
        enable_dns_hostnames: false,
        dhcp_options_id,
        secondary_cidrs: Vec::new(),
    };
    txn.put(vpc.clone());
    super::route_table::create_main_route_table(txn, &vpc.id, vpc.cidr);
    // Every VPC comes with its default security group and network ACL, in the same transaction.
    super::security_group::create_default_group(txn, &vpc.id);
    super::network_acl::create_default_acl(txn, &vpc.id);
    Ok(vpc)
}

/// The next free VNI from `next_vni` upward (wrapping to [`FIRST_VNI`]), unique among VPCs.
fn allocate_vni(state: &State) -> Result<u32, ApiError> {
    let used: std::collections::HashSet<u32> = state.vpcs.values().map(|v| v.vni).collect();
    let start = state.next_vni.clamp(FIRST_VNI, MAX_VNI);
    let span = MAX_VNI - FIRST_VNI + 1;
    (0..span)
        .map(|k| FIRST_VNI + (start - FIRST_VNI + k) % span)
        .find(|v| !used.contains(v))
        // AWS's wording; the limit here is the VNI space (every VPC has its own VNI).
        .ok_or_else(|| {
            ApiError::new(
                "VpcLimitExceeded",
                "The maximum number of VPCs has been reached.",
            )
        })
}

/// `DeleteVpc`: refused while subnets (or anything in them) remain.
pub fn delete_vpc(txn: &mut Txn, id: &str) -> Result<(), ApiError> {
    get_vpc(&txn.state, id)?;
    let busy = txn.state.subnets.values().any(|s| s.vpc_id == id)
        || txn.state.enis.values().any(|e| e.vpc_id == id);
    if busy {
        return Err(ApiError::has_dependencies("vpc", id));
    }
    super::security_group::check_vpc_deletable(&txn.state, id)?;
    super::network_acl::check_vpc_deletable(&txn.state, id)?;
    if super::internet_gateway::igw_of_vpc(&txn.state, id).is_some() {
        return Err(ApiError::has_dependencies("vpc", id));
    }
    super::route_table::on_vpc_delete(txn, id)?;
    super::peering::on_vpc_delete(txn, id);
    super::security_group::delete_groups_of_vpc(txn, id);
    super::network_acl::delete_acls_of_vpc(txn, id);
    txn.delete_vpc(id);
    Ok(())
}

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("a constant CIDR")
}

/// The ranges AWS never lets a VPC use (RFC 5735 special ranges).
const NEVER: &[&str] = &[
    "0.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
];
const RFC1918: &[&str] = &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// AWS's "IPv4 CIDR block association restrictions" (VPC user guide): which ranges a new
/// block may come from, given the VPC's primary block (and, for 10.0.0.0/16, all its blocks).
fn restricted(vpc: &Vpc, c: &Ipv4Net) -> bool {
    let within = |r: &str| overlaps(&net(r), c);
    let primary_in = |r: &str| net(r).contains(&vpc.cidr);
    if NEVER.iter().any(|r| within(r)) {
        return true;
    }
    let private = RFC1918.iter().any(|r| within(r));
    let shared = within("198.19.0.0/16");
    if let Some(home) = RFC1918.iter().find(|r| primary_in(r)) {
        // Another private range, or 198.19.0.0/16.
        if (private && !net(home).contains(c)) || shared {
            return true;
        }
        if *home == "10.0.0.0/8"
            && within("10.0.0.0/16")
            && vpc.cidrs().any(|b| overlaps(&b, &net("10.0.0.0/15")))
        {
            return true;
        }
        return *home == "172.16.0.0/12" && within("172.31.0.0/16");
    }
    if primary_in("198.19.0.0/16") {
        return private;
    }
    // A publicly routable primary, or one from 100.64.0.0/10.
    private || shared
}

/// `AssociateVpcCidrBlock` (IPv4): AWS's rules in order: size (/16../28), the range restrictions,
/// the quota (five blocks with the primary), no overlap with the VPC's blocks, not the same as or
/// larger than a route's destination in any of its route tables, no overlap with a VPC it is
/// actively peered with, none while a request it made is pending acceptance (a pending request
/// to it whose requester overlaps the new block fails instead). Every route table of the VPC
/// gets the block's `local` route. Returns the VPC and the new block.
pub fn associate_cidr_block(
    txn: &mut Txn,
    vpc_id: &str,
    cidr: &str,
) -> Result<(Vpc, CidrBlock), ApiError> {
    let mut vpc = (**get_vpc(&txn.state, vpc_id)?).clone();
    let c = parse_cidr(cidr, "cidrBlock")?;
    if !(16..=28).contains(&c.prefix_len()) {
        return Err(ApiError::new(
            "InvalidVpc.Range",
            format!("The CIDR '{cidr}' is invalid."),
        ));
    }
    if restricted(&vpc, &c) {
        return Err(ApiError::new(
            "InvalidVpc.Range",
            format!(
                "The CIDR '{c}' is restricted. Use a CIDR from the same private address range as the current VPC CIDR, or use a publicly-routable CIDR. For additional restrictions, see https://docs.aws.amazon.com/vpc/latest/userguide/vpc-cidr-blocks.html"
            ),
        ));
    }
    if vpc.cidrs().count() >= MAX_IPV4_CIDR_BLOCKS {
        return Err(ApiError::new(
            "CidrLimitExceeded",
            format!(
                "This network '{vpc_id}' has met its maximum number of allowed CIDRs: {MAX_IPV4_CIDR_BLOCKS}"
            ),
        ));
    }
    if let Some(b) = vpc.cidrs().find(|b| overlaps(b, &c)) {
        return Err(ApiError::new(
            "InvalidVpc.Range",
            format!("The CIDR '{c}' conflicts with the CIDR block {b} associated with {vpc_id}."),
        ));
    }
    for t in txn
        .state
        .route_tables
        .values()
        .filter(|t| t.vpc_id == vpc_id)
    {
        if let Some(d) = t
            .routes
            .iter()
            .filter_map(|r| r.destination.cidr())
            .find(|d| c.contains(d))
        {
            return Err(ApiError::new(
                "InvalidVpc.Range",
                format!(
                    "The CIDR '{c}' is the same as or larger than the destination {d} of a route in {}.",
                    t.id
                ),
            ));
        }
    }
    let mut failed = Vec::new();
    for p in txn
        .state
        .peering_connections
        .values()
        .filter(|p| p.involves(vpc_id))
    {
        use super::peering::PeeringStatus as S;
        let (mine, peer) = if p.requester.vpc_id == vpc_id {
            (&p.requester, &p.accepter)
        } else {
            (&p.accepter, &p.requester)
        };
        match p.status_at(txn.now) {
            S::Active => {
                if let Some(b) = peer.cidrs().find(|b| overlaps(b, &c)) {
                    return Err(ApiError::new(
                        "InvalidVpc.Range",
                        format!(
                            "The CIDR '{c}' overlaps with CIDR {b} of {}, peered with {vpc_id} by {}.",
                            peer.vpc_id, p.id
                        ),
                    ));
                }
            }
            S::PendingAcceptance if mine.vpc_id == p.requester.vpc_id => {
                return Err(ApiError::new(
                    "OperationNotPermitted",
                    format!(
                        "A CIDR block cannot be added to {vpc_id} while its VPC peering connection request {} is pending acceptance.",
                        p.id
                    ),
                ));
            }
            S::PendingAcceptance if peer.cidrs().any(|b| overlaps(&b, &c)) => {
                failed.push(p.id.clone());
            }
            _ => {}
        }
    }
    let block = CidrBlock {
        association_id: super::ids::new_id("vpc-cidr-assoc"),
        cidr: c,
        disassociated_at: None,
    };
    let now = txn.now;
    vpc.secondary_cidrs.retain(|b| b.visible(now));
    vpc.secondary_cidrs.push(block.clone());
    txn.put(vpc.clone());
    super::route_table::on_cidr_block(txn, vpc_id, c, true);
    super::peering::on_cidr_blocks(txn, &vpc, &failed);
    Ok((vpc, block))
}

/// `DisassociateVpcCidrBlock` (IPv4): not the primary block (`OperationNotPermitted`), not
/// while a subnet is in it (`InvalidCidrBlock.InUse`); its `local` routes go. Returns the VPC id
/// and the block as it was.
pub fn disassociate_cidr_block(
    txn: &mut Txn,
    association_id: &str,
) -> Result<(String, CidrBlock), ApiError> {
    let not_found = || {
        ApiError::new(
            "InvalidVpcCidrBlockAssociationID.NotFound",
            format!("The vpc CIDR block association ID '{association_id}' does not exist"),
        )
    };
    if txn
        .state
        .vpcs
        .values()
        .any(|v| v.cidr_association_id == association_id)
    {
        return Err(ApiError::new(
            "OperationNotPermitted",
            format!(
                "The vpc CIDR block with association ID {association_id} may not be disassociated. It is the primary IPv4 CIDR block of the VPC"
            ),
        ));
    }
    let mut vpc = txn
        .state
        .vpcs
        .values()
        .find(|v| {
            v.secondary_cidrs
                .iter()
                .any(|b| b.association_id == association_id && b.disassociated_at.is_none())
        })
        .map(|v| (**v).clone())
        .ok_or_else(not_found)?;
    let pos = vpc
        .secondary_cidrs
        .iter()
        .position(|b| b.association_id == association_id)
        .ok_or_else(not_found)?;
    let c = vpc.secondary_cidrs[pos].cidr;
    if txn
        .state
        .subnets
        .values()
        .any(|s| s.vpc_id == vpc.id && c.contains(&s.cidr))
    {
        return Err(ApiError::new(
            "InvalidCidrBlock.InUse",
            format!(
                "The vpc {} currently has a subnet within CIDR block {c}",
                vpc.id
            ),
        ));
    }
    let block = vpc.secondary_cidrs[pos].clone();
    vpc.secondary_cidrs[pos].disassociated_at = Some(txn.now);
    txn.put(vpc.clone());
    super::route_table::on_cidr_block(txn, &vpc.id, c, false);
    super::peering::on_cidr_blocks(txn, &vpc, &[]);
    Ok((vpc.id, block))
}

impl Filterable for Vpc {
    const FILTERS: &'static [&'static str] = &[
        "vpc-id",
        "cidr",
        "cidr-block",
        "cidr-block-association.cidr-block",
        "cidr-block-association.association-id",
        "cidr-block-association.state",
        "state",
        "is-default",
        "dhcp-options-id",
        "owner-id",
        "instance-tenancy",
    ];
    const UNHELD: &'static [&'static str] = &[
        "ipv6-cidr-block-association.ipv6-cidr-block",
        "ipv6-cidr-block-association.ipv6-pool",
        "ipv6-cidr-block-association.association-id",
        "ipv6-cidr-block-association.state",
    ];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        // The blocks a filter sees: the primary and the secondary ones still listed (a
        // disassociated block past its listing time is gone at the next association).
        let blocks = || {
            std::iter::once((self.cidr, self.cidr_association_id.as_str(), "associated")).chain(
                self.secondary_cidrs
                    .iter()
                    .map(|b| (b.cidr, b.association_id.as_str(), b.state())),
            )
        };
        let v = match name {
            "vpc-id" => self.id.clone(),
            "cidr" | "cidr-block" => self.cidr.to_string(),
            "cidr-block-association.cidr-block" => {
                return blocks().map(|b| b.0.to_string()).collect()
            }
            "cidr-block-association.association-id" => {
                return blocks().map(|b| b.1.to_string()).collect()
            }
            "cidr-block-association.state" => return blocks().map(|b| b.2.to_string()).collect(),
            "state" => "available".into(),
            "is-default" => self.is_default.to_string(),
            "dhcp-options-id" => self
                .dhcp_options_id
                .clone()
                .unwrap_or_else(|| "default".into()),
            "owner-id" => super::OWNER_ID.into(),
            "instance-tenancy" => self.instance_tenancy.clone(),
            _ => return Vec::new(),
        };
        vec![v]
    }

    fn tag_map(&self) -> Tags {
        self.tags.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_parsed_strictly_and_canonicalised() {
        assert_eq!(
            parse_cidr("100.68.0.18/18", "c").unwrap().to_string(),
            "100.68.0.0/18"
        );
        for bad in [
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0/16",
            "x/16",
            "10.0.0.0/+8",
            "10.0.0.0/016",
            " 10.0.0.0/16",
            "",
        ] {
            let e = parse_cidr(bad, "cidrBlock").unwrap_err();
            assert_eq!(e.code, "InvalidParameterValue", "{bad}");
        }
    }

    #[test]
    fn vpc_prefix_range_and_vnis() {
        let mut txn = Txn::new(State::new(), 0);
        for bad in ["10.0.0.0/15", "10.0.0.0/29", "10.0.0.0/8"] {
            assert_eq!(
                create_vpc(&mut txn, bad, None, Tags::new())
                    .unwrap_err()
                    .code,
                "InvalidVpc.Range"
            );
        }
        assert!(txn.is_empty(), "refusals write nothing");
        let a = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let b = create_vpc(&mut txn, "10.0.0.0/28", None, Tags::new()).unwrap();
        assert_eq!(a.vni, FIRST_VNI);
        assert_eq!(b.vni, FIRST_VNI + 1);
        assert_ne!(a.id, b.id);
        assert_eq!(a.cidr.to_string(), "10.0.0.0/16");
    }

    #[test]
    fn vni_allocation_skips_used_and_wraps() {
        let mut txn = Txn::new(State::new(), 0);
        txn.state.next_vni = MAX_VNI;
        let a = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        assert_eq!(a.vni, MAX_VNI);
        let b = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        assert_eq!(b.vni, FIRST_VNI);
        txn.state.next_vni = MAX_VNI;
        let c = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        assert_eq!(c.vni, FIRST_VNI + 1, "skips the VNIs in use");
    }

    fn code(r: Result<(Vpc, CidrBlock), ApiError>) -> String {
        r.unwrap_err().code
    }

    fn local_routes(txn: &Txn, vpc: &str) -> Vec<Vec<String>> {
        txn.state
            .route_tables
            .values()
            .filter(|t| t.vpc_id == vpc)
            .map(|t| {
                t.routes
                    .iter()
                    .filter(|r| r.target == super::super::route_table::Target::Local)
                    .map(|r| r.destination.to_string())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn secondary_blocks_follow_aws_restrictions() {
        let mut txn = Txn::new(State::new(), 1000);
        let v = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        for (bad, why) in [
            ("10.1.0.0/15", "InvalidVpc.Range"),
            ("10.1.0.0/29", "InvalidVpc.Range"),
            ("192.168.0.0/16", "InvalidVpc.Range"),
            ("172.16.0.0/16", "InvalidVpc.Range"),
            ("198.19.0.0/16", "InvalidVpc.Range"),
            ("169.254.0.0/16", "InvalidVpc.Range"),
            ("10.0.128.0/17", "InvalidVpc.Range"),
            ("10.0.0.0/16", "InvalidVpc.Range"),
            ("10.0.0/16", "InvalidParameterValue"),
        ] {
            assert_eq!(
                code(associate_cidr_block(&mut txn, &v.id, bad)),
                why,
                "{bad}"
            );
        }
        assert_eq!(
            code(associate_cidr_block(&mut txn, "vpc-nope", "10.1.0.0/16")),
            "InvalidVpcID.NotFound"
        );
        assert!(txn.state.vpcs[&v.id].secondary_cidrs.is_empty());
        // 10.0.0.0/15 holds a block: nothing from 10.0.0.0/16 (here also an overlap anyway).
        let (_, b) = associate_cidr_block(&mut txn, &v.id, "10.1.0.0/16").unwrap();
        associate_cidr_block(&mut txn, &v.id, "100.64.0.0/16").unwrap();
        associate_cidr_block(&mut txn, &v.id, "203.0.113.0/24").unwrap();
        associate_cidr_block(&mut txn, &v.id, "10.2.0.0/28").unwrap();
        let e = associate_cidr_block(&mut txn, &v.id, "10.3.0.0/16").unwrap_err();
        assert_eq!(e.code, "CidrLimitExceeded");
        assert_eq!(
            e.message,
            format!(
                "This network '{}' has met its maximum number of allowed CIDRs: 5",
                v.id
            )
        );
        let vpc = txn.state.vpcs[&v.id].clone();
        assert_eq!(vpc.cidrs().count(), 5);
        // Every route table (the main one and a new one) has a local route for every block.
        super::super::route_table::create_route_table(&mut txn, &v.id, Tags::new()).unwrap();
        for t in local_routes(&txn, &v.id) {
            assert_eq!(t.len(), 5, "{t:?}");
        }
        // A subnet in a secondary block; the block cannot go while it is there.
        let s =
            super::super::subnet::create_subnet(&mut txn, &v.id, "10.1.2.0/24", None, Tags::new())
                .unwrap();
        assert_eq!(
            disassociate_cidr_block(&mut txn, &b.association_id)
                .unwrap_err()
                .code,
            "InvalidCidrBlock.InUse"
        );
        assert_eq!(
            disassociate_cidr_block(&mut txn, &v.cidr_association_id)
                .unwrap_err()
                .code,
            "OperationNotPermitted"
        );
        assert_eq!(
            disassociate_cidr_block(&mut txn, "vpc-cidr-assoc-nope")
                .unwrap_err()
                .code,
            "InvalidVpcCidrBlockAssociationID.NotFound"
        );
        super::super::subnet::delete_subnet(&mut txn, &s.id).unwrap();
        disassociate_cidr_block(&mut txn, &b.association_id).unwrap();
        let vpc = txn.state.vpcs[&v.id].clone();
        assert!(!vpc.cidrs().any(|c| c.to_string() == "10.1.0.0/16"));
        for t in local_routes(&txn, &v.id) {
            assert!(!t.contains(&"10.1.0.0/16".to_string()), "{t:?}");
        }
        // Listed `disassociated` for a while, then no more; a second disassociation: not found.
        let gone = vpc
            .secondary_cidrs
            .iter()
            .find(|x| x.association_id == b.association_id)
            .unwrap();
        assert_eq!(gone.state(), "disassociated");
        assert!(gone.visible(txn.now + DISASSOCIATED_VISIBLE_SECS - 1));
        assert!(!gone.visible(txn.now + DISASSOCIATED_VISIBLE_SECS));
        assert_eq!(
            disassociate_cidr_block(&mut txn, &b.association_id)
                .unwrap_err()
                .code,
            "InvalidVpcCidrBlockAssociationID.NotFound"
        );
        // The freed slot takes a new block.
        associate_cidr_block(&mut txn, &v.id, "10.1.0.0/16").unwrap();
    }

    #[test]
    fn range_restrictions_follow_the_primary_block() {
        let mut txn = Txn::new(State::new(), 0);
        let mut ok = |primary: &str, cidr: &str| {
            let v = create_vpc(&mut txn, primary, None, Tags::new()).unwrap();
            associate_cidr_block(&mut txn, &v.id, cidr).is_ok()
        };
        assert!(ok("172.20.0.0/16", "172.21.0.0/16"));
        assert!(!ok("172.20.0.0/16", "172.31.0.0/16"));
        assert!(!ok("172.20.0.0/16", "10.0.0.0/16"));
        assert!(ok("192.168.0.0/20", "192.168.16.0/20"));
        assert!(ok("192.168.0.0/20", "100.64.0.0/16"));
        assert!(!ok("192.168.0.0/20", "10.0.0.0/16"));
        assert!(ok("100.64.0.0/16", "100.65.0.0/16"));
        assert!(!ok("100.64.0.0/16", "10.0.0.0/16"));
        assert!(!ok("100.64.0.0/16", "198.19.0.0/16"));
        assert!(!ok("198.19.0.0/16", "10.0.0.0/16"));
        assert!(ok("198.19.0.0/16", "100.64.0.0/16"));
        assert!(ok("10.4.0.0/16", "10.0.0.0/16"));
        assert!(
            !ok("10.1.0.0/16", "10.0.0.0/16"),
            "10.0.0.0/15 holds a block"
        );
    }

    #[test]
    fn routes_and_peering_limit_secondary_blocks() {
        use super::super::peering::{self, PeeringStatus};
        use super::super::route_table::{self, TargetSpec};
        let mut txn = Txn::new(State::new(), 0);
        let a = create_vpc(&mut txn, "10.2.0.0/16", None, Tags::new()).unwrap();
        let b = create_vpc(&mut txn, "10.8.0.0/16", None, Tags::new()).unwrap();
        let c = create_vpc(&mut txn, "10.9.0.0/16", None, Tags::new()).unwrap();
        // A route to 10.0.0.0/24: 10.0.0.0/24 or larger is refused, 10.0.0.0/25 is fine.
        let main = txn
            .state
            .route_tables
            .values()
            .find(|t| t.vpc_id == a.id)
            .unwrap()
            .id
            .clone();
        let ab = peering::create_peering(
            &mut txn,
            &peering::CreateRequest {
                vpc_id: a.id.clone(),
                peer_vpc_id: b.id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
        // The requester of a pending request cannot add a block; the accepter can.
        assert_eq!(
            code(associate_cidr_block(&mut txn, &a.id, "10.5.0.0/16")),
            "OperationNotPermitted"
        );
        peering::accept_peering(&mut txn, &ab.id).unwrap();
        let spec = TargetSpec {
            vpc_peering_connection_id: Some(ab.id.clone()),
            ..Default::default()
        };
        route_table::create_route(&mut txn, &main, "10.0.0.0/24", &spec).unwrap();
        assert_eq!(
            code(associate_cidr_block(&mut txn, &a.id, "10.0.0.0/24")),
            "InvalidVpc.Range"
        );
        associate_cidr_block(&mut txn, &a.id, "10.0.0.0/25").unwrap();
        // Active peering: no overlap with the peer's blocks.
        assert_eq!(
            code(associate_cidr_block(&mut txn, &a.id, "10.8.1.0/24")),
            "InvalidVpc.Range"
        );
        // The connection shows the new block; on the wire record too (via the model).
        let p = txn.state.peering_connections[&ab.id].clone();
        assert_eq!(p.requester.cidrs().count(), 2);
        // A pending request to `c` from `b`: `c` adds a block overlapping `b`: the request fails.
        let bc = peering::create_peering(
            &mut txn,
            &peering::CreateRequest {
                vpc_id: b.id.clone(),
                peer_vpc_id: c.id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(bc.status, PeeringStatus::PendingAcceptance);
        associate_cidr_block(&mut txn, &c.id, "10.8.0.0/28").unwrap();
        assert_eq!(
            txn.state.peering_connections[&bc.id].status,
            PeeringStatus::Failed
        );
    }
}
