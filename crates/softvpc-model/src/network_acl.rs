//! Network ACLs (`acl-`) and their subnet associations (`aclassoc-`): the default ACL of every
//! VPC (rule 100 allows all, then the `*` deny reported as 32767, in both directions), custom
//! ACLs (only the deny rules), entry validation (rule numbers 1..32766, protocols, port ranges,
//! ICMP), association of every subnet with exactly one ACL, deletion rules, filters.
//!
//! Stateless filtering at the subnet boundary is the data plane's job (a later issue); this
//! module stores, validates and serves.

use std::sync::Arc;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::filter::Filterable;
use super::idempotency::replay;
use super::ids::new_id;
use super::vpc::parse_cidr;
use super::{ApiError, State, Tags, Txn};

/// The rule number the final `*` deny rule is reported with.
pub const DENY_ALL_RULE: u16 = 32767;
/// The highest rule number a user may give.
pub const MAX_RULE_NUMBER: i64 = 32766;

/// A network ACL of a VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAcl {
    /// `acl-...`.
    pub id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// The VPC's default ACL (subnets without another get it).
    pub is_default: bool,
    /// Entries of both directions, the `*` rules included.
    pub entries: Vec<AclEntry>,
    /// The subnets it applies to.
    pub associations: Vec<AclAssociation>,
    /// Its tags.
    pub tags: Tags,
    /// The `ClientToken` of the `CreateNetworkAcl` that made it (idempotent retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

impl NetworkAcl {
    /// The entries in AWS's order: egress first, then by rule number.
    pub fn sorted_entries(&self) -> Vec<&AclEntry> {
        let mut v: Vec<&AclEntry> = self.entries.iter().collect();
        v.sort_by_key(|e| (!e.egress, e.rule_number));
        v
    }
}

/// One entry (rule) of a network ACL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclEntry {
    /// Lower numbers are evaluated first (1 to 32766; 32767 is `*`).
    pub rule_number: u16,
    /// Outbound (true) or inbound.
    pub egress: bool,
    /// A protocol number as a string, `-1` for all (AWS reports numbers).
    pub protocol: String,
    /// `allow` or `deny`.
    pub action: String,
    /// The peer CIDR it matches.
    pub cidr: Ipv4Net,
    /// tcp/udp only.
    pub port_range: Option<(u16, u16)>,
    /// ICMP only: (type, code), -1 meaning all.
    pub icmp: Option<(i32, i32)>,
}

/// A subnet's association with an ACL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclAssociation {
    /// `aclassoc-...`.
    pub id: String,
    /// The subnet.
    pub subnet_id: String,
}

/// An entry as `CreateNetworkAclEntry`/`ReplaceNetworkAclEntry` give it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryRequest {
    /// `RuleNumber`.
    pub rule_number: i64,
    /// `Egress`.
    pub egress: bool,
    /// `Protocol`.
    pub protocol: String,
    /// `RuleAction`.
    pub action: String,
    /// `CidrBlock`.
    pub cidr: Option<String>,
    /// `PortRange.From`.
    pub port_from: Option<i64>,
    /// `PortRange.To`.
    pub port_to: Option<i64>,
    /// `IcmpTypeCode.Type`.
    pub icmp_type: Option<i64>,
    /// `IcmpTypeCode.Code`.
    pub icmp_code: Option<i64>,
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found("InvalidNetworkAclID.NotFound", "networkAcl", &[id])
}

fn entry(rule_number: u16, egress: bool, action: &str) -> AclEntry {
    AclEntry {
        rule_number,
        egress,
        protocol: "-1".into(),
        action: action.into(),
        cidr: Ipv4Net::default(),
        port_range: None,
        icmp: None,
    }
}

fn new_acl(vpc_id: &str, is_default: bool, tags: Tags) -> NetworkAcl {
    let mut entries = Vec::new();
    for egress in [true, false] {
        if is_default {
            entries.push(entry(100, egress, "allow"));
        }
        entries.push(entry(DENY_ALL_RULE, egress, "deny"));
    }
    NetworkAcl {
        id: new_id("acl"),
        vpc_id: vpc_id.to_string(),
        is_default,
        entries,
        associations: Vec::new(),
        tags,
        client_token: None,
    }
}

/// Creates the default ACL of a new VPC.
pub fn create_default_acl(txn: &mut Txn, vpc_id: &str) -> NetworkAcl {
    let acl = new_acl(vpc_id, true, Tags::new());
    txn.put(acl.clone());
    acl
}

/// The default ACL of `vpc_id`, if it has one.
pub fn default_acl(state: &State, vpc_id: &str) -> Option<Arc<NetworkAcl>> {
    state
        .network_acls
        .values()
        .find(|a| a.vpc_id == vpc_id && a.is_default)
        .cloned()
}

/// `CreateNetworkAcl`: only the deny rules. A retry with the same `ClientToken` and VPC returns
/// the ACL the first call made; the same token with another VPC is
/// `IdempotentParameterMismatch`.
pub fn create_network_acl(
    txn: &mut Txn,
    vpc_id: &str,
    tags: Tags,
    client_token: Option<&str>,
) -> Result<NetworkAcl, ApiError> {
    if let Some(a) = replay(
        client_token,
        txn.state.network_acls.values(),
        |a| a.client_token.as_deref(),
        |a| a.vpc_id == vpc_id,
    )? {
        return Ok((**a).clone());
    }
    super::vpc::get_vpc(&txn.state, vpc_id)?;
    let mut acl = new_acl(vpc_id, false, tags);
    acl.client_token = client_token.map(str::to_string);
    txn.put(acl.clone());
    Ok(acl)
}

/// `DeleteNetworkAcl`: not the default one, not while subnets are associated.
pub fn delete_network_acl(txn: &mut Txn, id: &str) -> Result<(), ApiError> {
    let acl = txn
        .state
        .network_acls
        .get(id)
        .cloned()
        .ok_or_else(|| not_found(id))?;
    if acl.is_default {
        return Err(ApiError::invalid_value(format!(
            "cannot delete default network ACL {id}"
        )));
    }
    if !acl.associations.is_empty() {
        return Err(ApiError::has_dependencies("networkAcl", id));
    }
    txn.delete::<NetworkAcl>(id);
    Ok(())
}

/// A protocol as AWS reports it in ACL entries: a number, `-1` for all.
pub fn normalize_protocol(value: &str) -> Result<String, ApiError> {
    let v = value.trim().to_ascii_lowercase();
    let invalid = || {
        ApiError::invalid_value(format!(
            "Invalid value '{value}' for protocol. Must be a protocol number, 'tcp', 'udp', 'icmp' or '-1'."
        ))
    };
    Ok(match v.as_str() {
        "tcp" => "6".into(),
        "udp" => "17".into(),
        "icmp" => "1".into(),
        "-1" | "all" => "-1".into(),
        n if !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()) => {
            let num: u16 = n.parse().map_err(|_| invalid())?;
            if num > 255 {
                return Err(invalid());
            }
            num.to_string()
        }
        _ => return Err(invalid()),
    })
}

/// Validates an entry request into an entry.
pub fn check_entry(req: &EntryRequest) -> Result<AclEntry, ApiError> {
    if !(1..=MAX_RULE_NUMBER).contains(&req.rule_number) {
        return Err(ApiError::invalid_value(format!(
            "Invalid value '{}' for parameter ruleNumber. Rule numbers must be between 1 and {MAX_RULE_NUMBER}.",
            req.rule_number
        )));
    }
    let protocol = normalize_protocol(&req.protocol)?;
    let action = req.action.to_ascii_lowercase();
    if action != "allow" && action != "deny" {
        return Err(ApiError::invalid_value(format!(
            "Invalid value '{}' for parameter ruleAction. Must be 'allow' or 'deny'.",
            req.action
        )));
    }
    let cidr_text = req
        .cidr
        .as_deref()
        .ok_or_else(|| ApiError::missing("cidrBlock"))?;
    let cidr = parse_cidr(cidr_text, "cidrBlock")?;
    let mut port_range = None;
    let mut icmp = None;
    match protocol.as_str() {
        "6" | "17" => {
            let (Some(f), Some(t)) = (req.port_from, req.port_to) else {
                return Err(ApiError::missing("portRange"));
            };
            if !(0..=65535).contains(&f) || !(0..=65535).contains(&t) || f > t {
                return Err(ApiError::invalid_value(format!(
                    "Invalid value for portRange. Must be within 0-65535 with From <= To (from {f} to {t})."
                )));
            }
            port_range = Some((f as u16, t as u16));
        }
        "1" => {
            let (Some(ty), Some(code)) = (req.icmp_type, req.icmp_code) else {
                return Err(ApiError::missing("icmpTypeCode"));
            };
            if !(-1..=255).contains(&ty) || !(-1..=255).contains(&code) {
                return Err(ApiError::invalid_value(format!(
                    "Invalid value for icmpTypeCode (type {ty}, code {code})."
                )));
            }
            icmp = Some((ty as i32, code as i32));
        }
        _ => {}
    }
    Ok(AclEntry {
        rule_number: req.rule_number as u16,
        egress: req.egress,
        protocol,
        action,
        cidr,
        port_range,
        icmp,
    })
}

fn acl_mut(txn: &Txn, id: &str) -> Result<NetworkAcl, ApiError> {
    txn.state
        .network_acls
        .get(id)
        .map(|a| (**a).clone())
        .ok_or_else(|| not_found(id))
}

fn entry_not_found(acl_id: &str, rule_number: i64, egress: bool) -> ApiError {
    ApiError::new(
        "InvalidNetworkAclEntry.NotFound",
        format!(
            "The network acl entry identified by {rule_number} ({}) does not exist in the network acl {acl_id}.",
            if egress { "egress" } else { "ingress" }
        ),
    )
}

/// `CreateNetworkAclEntry`: a new rule number in its direction.
pub fn create_entry(txn: &mut Txn, acl_id: &str, req: &EntryRequest) -> Result<(), ApiError> {
    let mut acl = acl_mut(txn, acl_id)?;
    let e = check_entry(req)?;
    if acl
        .entries
        .iter()
        .any(|x| x.egress == e.egress && x.rule_number == e.rule_number)
    {
        return Err(ApiError::new(
            "NetworkAclEntryAlreadyExists",
            format!(
                "The network acl entry identified by {} already exists.",
                e.rule_number
            ),
        ));
    }
    acl.entries.push(e);
    txn.put(acl);
    Ok(())
}

/// `ReplaceNetworkAclEntry`: the rule number must exist in its direction.
pub fn replace_entry(txn: &mut Txn, acl_id: &str, req: &EntryRequest) -> Result<(), ApiError> {
    let mut acl = acl_mut(txn, acl_id)?;
    let e = check_entry(req)?;
    let Some(slot) = acl
        .entries
        .iter_mut()
        .find(|x| x.egress == e.egress && x.rule_number == e.rule_number)
    else {
        return Err(entry_not_found(acl_id, req.rule_number, req.egress));
    };
    *slot = e;
    txn.put(acl);
    Ok(())
}

/// `DeleteNetworkAclEntry`: the `*` rule cannot be deleted (its number is out of range).
pub fn delete_entry(
    txn: &mut Txn,
    acl_id: &str,
    rule_number: i64,
    egress: bool,
) -> Result<(), ApiError> {
    let mut acl = acl_mut(txn, acl_id)?;
    if !(1..=MAX_RULE_NUMBER).contains(&rule_number) {
        return Err(ApiError::invalid_value(format!(
            "Invalid value '{rule_number}' for parameter ruleNumber. Rule numbers must be between 1 and {MAX_RULE_NUMBER}."
        )));
    }
    let before = acl.entries.len();
    acl.entries
        .retain(|x| !(x.egress == egress && i64::from(x.rule_number) == rule_number));
    if acl.entries.len() == before {
        return Err(entry_not_found(acl_id, rule_number, egress));
    }
    txn.put(acl);
    Ok(())
}

/// `ReplaceNetworkAclAssociation`: moves the association's subnet to `acl_id` (same VPC) under a
/// new association id, which it returns.
pub fn replace_association(
    txn: &mut Txn,
    association_id: &str,
    acl_id: &str,
) -> Result<String, ApiError> {
    let from = txn
        .state
        .network_acls
        .values()
        .find(|a| a.associations.iter().any(|s| s.id == association_id))
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                "InvalidAssociationID.NotFound",
                format!("The association ID '{association_id}' does not exist"),
            )
        })?;
    let target = acl_mut(txn, acl_id)?;
    if target.vpc_id != from.vpc_id {
        return Err(ApiError::invalid_value(format!(
            "Network ACL {acl_id} and the association {association_id} belong to different VPCs."
        )));
    }
    let subnet_id = from
        .associations
        .iter()
        .find(|s| s.id == association_id)
        .map(|s| s.subnet_id.clone())
        .unwrap_or_default();
    let new = AclAssociation {
        id: new_id("aclassoc"),
        subnet_id,
    };
    let mut from = (*from).clone();
    from.associations.retain(|s| s.id != association_id);
    txn.put(from);
    // Re-read the target: it may be the same ACL the association came from.
    let mut target = acl_mut(txn, acl_id)?;
    target.associations.push(new.clone());
    txn.put(target);
    Ok(new.id)
}

/// For `CreateSubnet`: associates the new subnet with its VPC's default ACL.
pub fn associate_new_subnet(txn: &mut Txn, vpc_id: &str, subnet_id: &str) {
    if let Some(acl) = default_acl(&txn.state, vpc_id) {
        let mut acl = (*acl).clone();
        acl.associations.push(AclAssociation {
            id: new_id("aclassoc"),
            subnet_id: subnet_id.to_string(),
        });
        txn.put(acl);
    }
}

/// For `DeleteSubnet`: drops the subnet's association.
pub fn disassociate_subnet(txn: &mut Txn, subnet_id: &str) {
    let holder = txn
        .state
        .network_acls
        .values()
        .find(|a| a.associations.iter().any(|s| s.subnet_id == subnet_id))
        .cloned();
    if let Some(acl) = holder {
        let mut acl = (*acl).clone();
        acl.associations.retain(|s| s.subnet_id != subnet_id);
        txn.put(acl);
    }
}

/// For `DeleteVpc`: refuses while ACLs other than the default remain.
pub fn check_vpc_deletable(state: &State, vpc_id: &str) -> Result<(), ApiError> {
    if state
        .network_acls
        .values()
        .any(|a| a.vpc_id == vpc_id && !a.is_default)
    {
        return Err(ApiError::has_dependencies("vpc", vpc_id));
    }
    Ok(())
}

/// For `DeleteVpc`: removes the VPC's ACLs (only the default one is left by then).
pub fn delete_acls_of_vpc(txn: &mut Txn, vpc_id: &str) {
    txn.delete_where::<NetworkAcl>(|a| a.vpc_id == vpc_id);
}

impl Filterable for NetworkAcl {
    const FILTERS: &'static [&'static str] = &[
        "network-acl-id",
        "vpc-id",
        "default",
        "owner-id",
        "association.association-id",
        "association.network-acl-id",
        "association.subnet-id",
        "entry.cidr",
        "entry.egress",
        "entry.icmp.code",
        "entry.icmp.type",
        "entry.port-range.from",
        "entry.port-range.to",
        "entry.protocol",
        "entry.rule-action",
        "entry.rule-number",
    ];
    const UNHELD: &'static [&'static str] = &["entry.ipv6-cidr"];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        let entries = |f: &dyn Fn(&AclEntry) -> Option<String>| -> Vec<String> {
            self.entries.iter().filter_map(f).collect()
        };
        match name {
            "network-acl-id" => vec![self.id.clone()],
            "vpc-id" => vec![self.vpc_id.clone()],
            "default" => vec![self.is_default.to_string()],
            "owner-id" => vec![super::OWNER_ID.into()],
            "association.association-id" => {
                self.associations.iter().map(|a| a.id.clone()).collect()
            }
            "association.network-acl-id" => {
                self.associations.iter().map(|_| self.id.clone()).collect()
            }
            "association.subnet-id" => self
                .associations
                .iter()
                .map(|a| a.subnet_id.clone())
                .collect(),
            "entry.cidr" => entries(&|e| Some(e.cidr.to_string())),
            "entry.egress" => entries(&|e| Some(e.egress.to_string())),
            "entry.icmp.code" => entries(&|e| e.icmp.map(|i| i.1.to_string())),
            "entry.icmp.type" => entries(&|e| e.icmp.map(|i| i.0.to_string())),
            "entry.port-range.from" => entries(&|e| e.port_range.map(|p| p.0.to_string())),
            "entry.port-range.to" => entries(&|e| e.port_range.map(|p| p.1.to_string())),
            "entry.protocol" => entries(&|e| Some(e.protocol.clone())),
            "entry.rule-action" => entries(&|e| Some(e.action.clone())),
            "entry.rule-number" => entries(&|e| Some(e.rule_number.to_string())),
            _ => Vec::new(),
        }
    }

    fn tag_map(&self) -> Tags {
        self.tags.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::super::subnet::{create_subnet, delete_subnet};
    use super::super::vpc::{create_vpc, delete_vpc};
    use super::*;

    fn setup() -> (Txn, String) {
        let mut txn = Txn::new(State::new(), 0);
        let vpc = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        (txn, vpc.id)
    }

    fn tcp_entry(rule: i64, egress: bool) -> EntryRequest {
        EntryRequest {
            rule_number: rule,
            egress,
            protocol: "tcp".into(),
            action: "allow".into(),
            cidr: Some("10.0.0.0/8".into()),
            port_from: Some(22),
            port_to: Some(22),
            ..Default::default()
        }
    }

    #[test]
    fn default_acl_and_subnet_associations() {
        let (mut txn, vpc) = setup();
        let acl = default_acl(&txn.state, &vpc).expect("default ACL");
        let rules: Vec<(bool, u16, &str)> = acl
            .sorted_entries()
            .iter()
            .map(|e| (e.egress, e.rule_number, e.action.as_str()))
            .collect();
        assert_eq!(
            rules,
            [
                (true, 100, "allow"),
                (true, 32767, "deny"),
                (false, 100, "allow"),
                (false, 32767, "deny")
            ]
        );
        let s = create_subnet(&mut txn, &vpc, "10.0.1.0/24", None, Tags::new()).unwrap();
        let acl = default_acl(&txn.state, &vpc).unwrap();
        assert_eq!(acl.associations.len(), 1);
        assert_eq!(acl.associations[0].subnet_id, s.id);
        assert!(acl.associations[0].id.starts_with("aclassoc-"));
        delete_subnet(&mut txn, &s.id).unwrap();
        assert!(default_acl(&txn.state, &vpc)
            .unwrap()
            .associations
            .is_empty());
    }

    #[test]
    fn custom_acls_entries_and_refusals() {
        let (mut txn, vpc) = setup();
        let acl = create_network_acl(&mut txn, &vpc, Tags::new(), None).unwrap();
        assert_eq!(acl.entries.len(), 2);
        assert!(acl
            .entries
            .iter()
            .all(|e| e.action == "deny" && e.rule_number == 32767));
        create_entry(&mut txn, &acl.id, &tcp_entry(100, false)).unwrap();
        create_entry(&mut txn, &acl.id, &tcp_entry(100, true)).unwrap();
        assert_eq!(
            create_entry(&mut txn, &acl.id, &tcp_entry(100, false))
                .unwrap_err()
                .code,
            "NetworkAclEntryAlreadyExists"
        );
        for bad in [0, 32767, -1, 40000] {
            assert_eq!(
                create_entry(&mut txn, &acl.id, &tcp_entry(bad, false))
                    .unwrap_err()
                    .code,
                "InvalidParameterValue",
                "{bad}"
            );
        }
        let no_ports = EntryRequest {
            port_from: None,
            port_to: None,
            ..tcp_entry(110, false)
        };
        assert_eq!(
            create_entry(&mut txn, &acl.id, &no_ports).unwrap_err().code,
            "MissingParameter"
        );
        let bad_action = EntryRequest {
            action: "maybe".into(),
            ..tcp_entry(120, false)
        };
        assert_eq!(
            create_entry(&mut txn, &acl.id, &bad_action)
                .unwrap_err()
                .code,
            "InvalidParameterValue"
        );
        let icmp = EntryRequest {
            protocol: "1".into(),
            icmp_type: Some(8),
            icmp_code: Some(-1),
            ..tcp_entry(130, false)
        };
        create_entry(&mut txn, &acl.id, &icmp).unwrap();
        let stored = &txn.state.network_acls[&acl.id];
        let e = stored
            .entries
            .iter()
            .find(|e| e.rule_number == 130)
            .unwrap();
        assert_eq!(
            (e.protocol.as_str(), e.icmp, e.port_range),
            ("1", Some((8, -1)), None)
        );
        // Replace and delete.
        let deny = EntryRequest {
            action: "deny".into(),
            ..tcp_entry(100, false)
        };
        replace_entry(&mut txn, &acl.id, &deny).unwrap();
        assert_eq!(
            replace_entry(&mut txn, &acl.id, &tcp_entry(200, false))
                .unwrap_err()
                .code,
            "InvalidNetworkAclEntry.NotFound"
        );
        delete_entry(&mut txn, &acl.id, 100, false).unwrap();
        assert_eq!(
            delete_entry(&mut txn, &acl.id, 100, false)
                .unwrap_err()
                .code,
            "InvalidNetworkAclEntry.NotFound"
        );
        assert_eq!(
            delete_entry(&mut txn, "acl-00000000000000000", 100, false)
                .unwrap_err()
                .code,
            "InvalidNetworkAclID.NotFound"
        );
    }

    #[test]
    fn associations_move_and_block_deletion() {
        let (mut txn, vpc) = setup();
        let s = create_subnet(&mut txn, &vpc, "10.0.1.0/24", None, Tags::new()).unwrap();
        let custom = create_network_acl(&mut txn, &vpc, Tags::new(), None).unwrap();
        let def = default_acl(&txn.state, &vpc).unwrap();
        assert_eq!(
            delete_network_acl(&mut txn, &def.id).unwrap_err().code,
            "InvalidParameterValue"
        );
        let old = def.associations[0].id.clone();
        let new = replace_association(&mut txn, &old, &custom.id).unwrap();
        assert_ne!(new, old);
        assert_eq!(
            replace_association(&mut txn, &old, &custom.id)
                .unwrap_err()
                .code,
            "InvalidAssociationID.NotFound"
        );
        assert_eq!(
            delete_network_acl(&mut txn, &custom.id).unwrap_err().code,
            "DependencyViolation"
        );
        let subnets = custom_field(&txn, &custom.id, "association.subnet-id");
        assert_eq!(subnets, vec![s.id.clone()]);
        // Other VPC's ACL: refused.
        let other = create_vpc(&mut txn, "10.1.0.0/16", None, Tags::new()).unwrap();
        let other_acl = default_acl(&txn.state, &other.id).unwrap();
        assert_eq!(
            replace_association(&mut txn, &new, &other_acl.id)
                .unwrap_err()
                .code,
            "InvalidParameterValue"
        );
        // Back to the default, then the custom one can go, then the VPC.
        let back = replace_association(&mut txn, &new, &def.id).unwrap();
        assert!(back.starts_with("aclassoc-"));
        assert_eq!(
            delete_vpc(&mut txn, &vpc).unwrap_err().code,
            "DependencyViolation"
        );
        delete_subnet(&mut txn, &s.id).unwrap();
        assert_eq!(
            delete_vpc(&mut txn, &vpc).unwrap_err().code,
            "DependencyViolation",
            "the custom ACL still blocks"
        );
        delete_network_acl(&mut txn, &custom.id).unwrap();
        delete_vpc(&mut txn, &vpc).unwrap();
        assert!(txn.state.network_acls.values().all(|a| a.vpc_id != vpc));
    }

    fn custom_field(txn: &Txn, id: &str, name: &str) -> Vec<String> {
        txn.state.network_acls[id].field(&txn.state, name)
    }

    #[test]
    fn client_token_makes_create_idempotent() {
        let (mut txn, vpc) = setup();
        let a = create_network_acl(&mut txn, &vpc, Tags::new(), Some("tok-1")).unwrap();
        let b = create_network_acl(&mut txn, &vpc, Tags::new(), Some("tok-1")).unwrap();
        assert_eq!(a.id, b.id);
        let other = create_vpc(&mut txn, "10.1.0.0/16", None, Tags::new()).unwrap();
        assert_eq!(
            create_network_acl(&mut txn, &other.id, Tags::new(), Some("tok-1"))
                .unwrap_err()
                .code,
            "IdempotentParameterMismatch"
        );
        let c = create_network_acl(&mut txn, &vpc, Tags::new(), Some("tok-2")).unwrap();
        assert_ne!(a.id, c.id);
    }
}
