//! Security groups (`sg-`) and their rules (`sgr-`): creation with AWS's defaults (no inbound
//! rules, all egress), the `default` group of every VPC, rule validation (protocols, port ranges,
//! ICMP type/code, CIDRs, referenced groups), duplicates, the per-direction rule limit,
//! revocation by content or by rule id, rule modification, deletion rules, filters.
//!
//! Rules are stored flat, one per source (a CIDR or a group), as AWS's security-group-rule API
//! sees them; `DescribeSecurityGroups` regroups them into `IpPermissions`. Enforcement belongs to
//! the data plane (a later issue): this module stores, validates and serves.

use std::sync::Arc;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::filter::Filterable;
use super::ids::new_id;
use super::vpc::parse_cidr;
use super::{ApiError, State, Tags, Txn};

/// The most rules a group may have in each direction by default (AWS's quota; the server may
/// raise it: [`crate::quota`]).
pub const MAX_RULES_PER_DIRECTION: usize = 60;
/// The name of every VPC's default group.
pub const DEFAULT_GROUP_NAME: &str = "default";
/// The description of every VPC's default group.
pub const DEFAULT_GROUP_DESCRIPTION: &str = "default VPC security group";

/// A security group of a VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// `sg-...`.
    pub id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Its name, unique in the VPC.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Ingress and egress rules, in creation order.
    pub rules: Vec<SgRule>,
    /// Its tags.
    pub tags: Tags,
}

impl SecurityGroup {
    /// True for the VPC's `default` group (it cannot be deleted).
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_GROUP_NAME
    }

    /// The rules of one direction.
    pub fn rules_of(&self, egress: bool) -> impl Iterator<Item = &SgRule> {
        self.rules.iter().filter(move |r| r.egress == egress)
    }
}

/// Where a rule allows traffic from (ingress) or to (egress).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    /// Addresses in this CIDR.
    Cidr(Ipv4Net),
    /// The ENIs in this security group (`sg-`).
    Group(String),
    /// The CIDR blocks of this managed prefix list (`pl-`), whatever they are at the time.
    PrefixList(String),
}

/// One rule of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgRule {
    /// `sgr-` id.
    pub id: String,
    /// The group the rule belongs to.
    pub group_id: String,
    /// Outbound (true) or inbound.
    pub egress: bool,
    /// What it allows.
    pub spec: RuleSpec,
    /// Its tags.
    pub tags: Tags,
}

/// What a rule matches: protocol, ports and peer (the identity used for duplicates), plus its
/// description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    /// `tcp`, `udp`, `icmp`, `-1` (all) or another protocol number, as AWS reports it.
    pub protocol: String,
    /// First port (tcp/udp) or ICMP type (-1: all); None when the protocol has no ports.
    pub from_port: Option<i32>,
    /// Last port (tcp/udp) or ICMP code (-1: all); None when the protocol has no ports.
    pub to_port: Option<i32>,
    /// Whom it allows: a CIDR or a group.
    pub peer: Peer,
    /// Its description.
    pub description: Option<String>,
}

impl RuleSpec {
    /// True when both match the same traffic (the description does not count).
    pub fn same_rule(&self, other: &RuleSpec) -> bool {
        self.protocol == other.protocol
            && self.from_port == other.from_port
            && self.to_port == other.to_port
            && self.peer == other.peer
    }

    /// The rule as AWS words it in `InvalidPermission.Duplicate`.
    fn describe(&self) -> String {
        let peer = match &self.peer {
            Peer::Cidr(c) => c.to_string(),
            Peer::Group(g) | Peer::PrefixList(g) => g.clone(),
        };
        match (self.from_port, self.to_port) {
            (Some(f), Some(t)) => format!(
                "peer: {peer}, {}, from port: {f}, to port: {t}, ALLOW",
                self.protocol.to_uppercase()
            ),
            _ if self.protocol == "-1" => format!("peer: {peer}, ALL, ALLOW"),
            _ => format!("peer: {peer}, {}, ALLOW", self.protocol.to_uppercase()),
        }
    }
}

/// One `IpPermission` as a request gives it: protocol, ports and any number of peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permission {
    /// `IpProtocol`: a name or number, `-1` for all.
    pub protocol: String,
    /// `FromPort` (ICMP: the type).
    pub from_port: Option<i64>,
    /// `ToPort` (ICMP: the code).
    pub to_port: Option<i64>,
    /// `IpRanges`: CIDR and optional description.
    pub cidrs: Vec<(String, Option<String>)>,
    /// `UserIdGroupPairs`: group id and optional description.
    pub groups: Vec<(String, Option<String>)>,
    /// `PrefixListIds`: prefix list id and optional description.
    pub prefix_lists: Vec<(String, Option<String>)>,
}

/// A protocol as AWS reports it in security group rules: names for tcp/udp/icmp (also when
/// given as numbers), `-1` for all, else the number.
pub fn normalize_protocol(value: &str) -> Result<String, ApiError> {
    let v = value.trim().to_ascii_lowercase();
    let unknown = || {
        ApiError::invalid_value(format!(
            "Invalid value '{value}' for IP protocol. Unknown protocol."
        ))
    };
    Ok(match v.as_str() {
        "tcp" | "6" => "tcp".into(),
        "udp" | "17" => "udp".into(),
        "icmp" | "1" => "icmp".into(),
        "-1" | "all" => "-1".into(),
        n if !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()) => {
            let num: u16 = n.parse().map_err(|_| unknown())?;
            if num > 255 {
                return Err(unknown());
            }
            num.to_string()
        }
        _ => return Err(unknown()),
    })
}

/// Checks a protocol and its ports and gives the stored (from, to).
pub fn check_ports(
    protocol: &str,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<(Option<i32>, Option<i32>), ApiError> {
    match protocol {
        "tcp" | "udp" => {
            let (Some(f), Some(t)) = (from, to) else {
                // AWS's wording (moto's AWS-verified test_modify_security_group_rules).
                return Err(ApiError::invalid_value(
                    "Invalid value for portRange. Must specify both from and to ports with TCP/UDP.",
                ));
            };
            if !(0..=65535).contains(&f) || !(0..=65535).contains(&t) || f > t {
                return Err(ApiError::invalid_value(format!(
                    "Invalid TCP/UDP port range (from {f} to {t})."
                )));
            }
            Ok((Some(f as i32), Some(t as i32)))
        }
        "icmp" => {
            let f = from.unwrap_or(-1);
            let t = to.unwrap_or(-1);
            if !(-1..=255).contains(&f) {
                return Err(ApiError::invalid_value(format!(
                    "Invalid value '{f}' for ICMP type."
                )));
            }
            if !(-1..=255).contains(&t) {
                return Err(ApiError::invalid_value(format!(
                    "Invalid value '{t}' for ICMP code."
                )));
            }
            if f == -1 && t != -1 {
                return Err(ApiError::invalid_value(
                    "Invalid ICMP code: a specific code needs a specific ICMP type (type -1 means all types and all codes).",
                ));
            }
            Ok((Some(f as i32), Some(t as i32)))
        }
        // All protocols, or one without ports: the rule covers every port whatever was given.
        _ => Ok((None, None)),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        "InvalidGroup.NotFound",
        format!("The security group '{id}' does not exist"),
    )
}

fn check_description(d: &str, what: &str) -> Result<(), ApiError> {
    let ok = d.chars().count() <= 255 && d.chars().all(|c| c.is_ascii() && !c.is_control());
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_value(format!(
            "Invalid {what}. Valid descriptions are strings less than 256 characters from the following set:  a-zA-Z0-9. _-:/()#,@[]+=&;{{}}!$*"
        )))
    }
}

/// Turns the permissions of a request into rule specs, each peer one spec. `vpc_id` is the group's
/// VPC: referenced groups must exist in it or in a VPC actively peered with it.
pub fn specs_of(
    state: &State,
    vpc_id: &str,
    perms: &[Permission],
) -> Result<Vec<RuleSpec>, ApiError> {
    let mut out = Vec::new();
    for p in perms {
        let protocol = normalize_protocol(&p.protocol)?;
        let (from_port, to_port) = check_ports(&protocol, p.from_port, p.to_port)?;
        if p.cidrs.is_empty() && p.groups.is_empty() && p.prefix_lists.is_empty() {
            return Err(ApiError::new(
                "MissingParameter",
                "The request must contain the parameter ipPermissions.ipRanges or ipPermissions.groups",
            ));
        }
        for (pl, desc) in &p.prefix_lists {
            if let Some(d) = desc {
                check_description(d, "rule description")?;
            }
            super::prefix_list::get(state, pl)?;
            out.push(RuleSpec {
                protocol: protocol.clone(),
                from_port,
                to_port,
                peer: Peer::PrefixList(pl.clone()),
                description: desc.clone(),
            });
        }
        for (cidr, desc) in &p.cidrs {
            if let Some(d) = desc {
                check_description(d, "rule description")?;
            }
            let net = parse_cidr(cidr, "cidrIp")
                .map_err(|_| ApiError::invalid_value(format!("CIDR block {cidr} is malformed")))?;
            out.push(RuleSpec {
                protocol: protocol.clone(),
                from_port,
                to_port,
                peer: Peer::Cidr(net),
                description: desc.clone(),
            });
        }
        for (gid, desc) in &p.groups {
            if let Some(d) = desc {
                check_description(d, "rule description")?;
            }
            match state.security_groups.get(gid) {
                Some(g) if g.vpc_id == vpc_id => {}
                // A group of a VPC peered with this one (AWS: same account and region).
                Some(g) if super::peering::active_between(state, vpc_id, &g.vpc_id).is_some() => {}
                Some(_) => {
                    return Err(ApiError::new(
                        "InvalidGroup.NotFound",
                        format!("You have specified two resources that belong to different networks: the security group '{gid}' is in another VPC."),
                    ))
                }
                None => return Err(not_found(gid)),
            }
            out.push(RuleSpec {
                protocol: protocol.clone(),
                from_port,
                to_port,
                peer: Peer::Group(gid.clone()),
                description: desc.clone(),
            });
        }
    }
    Ok(out)
}

fn all_egress_rule(group_id: &str) -> SgRule {
    SgRule {
        id: new_id("sgr"),
        group_id: group_id.to_string(),
        egress: true,
        spec: RuleSpec {
            protocol: "-1".into(),
            from_port: None,
            to_port: None,
            peer: Peer::Cidr(Ipv4Net::default()),
            description: None,
        },
        tags: Tags::new(),
    }
}

/// Creates the `default` group of a new VPC: inbound all from itself, all egress.
pub fn create_default_group(txn: &mut Txn, vpc_id: &str) -> SecurityGroup {
    let id = new_id("sg");
    let inbound = SgRule {
        id: new_id("sgr"),
        group_id: id.clone(),
        egress: false,
        spec: RuleSpec {
            protocol: "-1".into(),
            from_port: None,
            to_port: None,
            peer: Peer::Group(id.clone()),
            description: None,
        },
        tags: Tags::new(),
    };
    let group = SecurityGroup {
        id: id.clone(),
        vpc_id: vpc_id.to_string(),
        name: DEFAULT_GROUP_NAME.into(),
        description: DEFAULT_GROUP_DESCRIPTION.into(),
        rules: vec![inbound, all_egress_rule(&id)],
        tags: Tags::new(),
    };
    txn.put(group.clone());
    group
}

/// The id of the `default` group of `vpc_id`, if it has one.
pub fn default_group_id(state: &State, vpc_id: &str) -> Option<String> {
    state
        .security_groups
        .values()
        .find(|g| g.vpc_id == vpc_id && g.is_default())
        .map(|g| g.id.clone())
}

/// `CreateSecurityGroup`.
pub fn create_security_group(
    txn: &mut Txn,
    name: &str,
    description: &str,
    vpc_id: Option<&str>,
    tags: Tags,
) -> Result<SecurityGroup, ApiError> {
    // Without a VpcId the group goes to the default VPC, as on AWS.
    let default_vpc = txn
        .state
        .vpcs
        .values()
        .find(|v| v.is_default)
        .map(|v| v.id.clone());
    let vpc_id = match (vpc_id, default_vpc.as_deref()) {
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => {
            return Err(ApiError::new(
                "VPCIdNotSpecified",
                "No default VPC for this user",
            ))
        }
    };
    super::vpc::get_vpc(&txn.state, vpc_id)?;
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::invalid_value(
            "Invalid value for parameter GroupName: it must be 1 to 255 characters long.",
        ));
    }
    if name.to_ascii_lowercase().starts_with("sg-") {
        return Err(ApiError::invalid_value(
            "Group names may not be in the format sg-*.",
        ));
    }
    check_description(name, "group name")?;
    check_description(description, "group description")?;
    if name == DEFAULT_GROUP_NAME {
        return Err(ApiError::new(
            "InvalidGroup.Reserved",
            "The security group 'default' is reserved",
        ));
    }
    if txn
        .state
        .security_groups
        .values()
        .any(|g| g.vpc_id == vpc_id && g.name == name)
    {
        return Err(ApiError::new(
            "InvalidGroup.Duplicate",
            format!("The security group '{name}' already exists for VPC '{vpc_id}'"),
        ));
    }
    let id = new_id("sg");
    let group = SecurityGroup {
        id: id.clone(),
        vpc_id: vpc_id.to_string(),
        name: name.to_string(),
        description: description.to_string(),
        rules: vec![all_egress_rule(&id)],
        tags,
    };
    txn.put(group.clone());
    Ok(group)
}

/// Refuses a group id that is not `sg-` + hex (`InvalidGroupId.Malformed`, as AWS does before
/// looking it up).
pub fn check_id(id: &str) -> Result<(), ApiError> {
    let hex = id
        .strip_prefix("sg-")
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if hex {
        Ok(())
    } else {
        Err(ApiError::new(
            "InvalidGroupId.Malformed",
            format!("Invalid id: \"{id}\" (expecting \"sg-...\")"),
        ))
    }
}

/// Finds a group by id or by name (a name must be unique among the VPCs' groups, since there is
/// no default VPC to scope it by).
pub fn resolve(
    state: &State,
    group_id: Option<&str>,
    group_name: Option<&str>,
) -> Result<Arc<SecurityGroup>, ApiError> {
    match (group_id, group_name) {
        (Some(id), _) => {
            check_id(id)?;
            state
                .security_groups
                .get(id)
                .cloned()
                .ok_or_else(|| not_found(id))
        }
        (None, Some(name)) => {
            // A name means the default VPC's group when there is one (as on AWS), else the
            // one group of that name in any VPC.
            let default_vpc = state.vpcs.values().find(|v| v.is_default);
            if let Some(g) = default_vpc.and_then(|v| {
                state
                    .security_groups
                    .values()
                    .find(|g| g.vpc_id == v.id && g.name == name)
            }) {
                return Ok(g.clone());
            }
            let mut found = state.security_groups.values().filter(|g| g.name == name);
            match (found.next(), found.next()) {
                (Some(g), None) => Ok(g.clone()),
                (None, _) => Err(ApiError::new(
                    "InvalidGroup.NotFound",
                    format!("The security group '{name}' does not exist"),
                )),
                (Some(_), Some(_)) => Err(ApiError::new(
                    "InvalidParameterCombination",
                    format!("More than one security group is named '{name}'; use GroupId."),
                )),
            }
        }
        (None, None) => Err(ApiError::missing("GroupId")),
    }
}

/// `DeleteSecurityGroup`: refused for the default group, and while an ENI uses the group or
/// another group's rule references it.
pub fn delete_security_group(txn: &mut Txn, id: &str) -> Result<(), ApiError> {
    let group = txn
        .state
        .security_groups
        .get(id)
        .cloned()
        .ok_or_else(|| not_found(id))?;
    if group.is_default() {
        return Err(ApiError::new(
            "CannotDelete",
            format!(
                "the specified group: \"{id}\" name: \"{}\" cannot be deleted by a user",
                group.name
            ),
        ));
    }
    let referenced = txn.state.security_groups.values().any(|g| {
        g.id != id
            && g.rules
                .iter()
                .any(|r| r.spec.peer == Peer::Group(id.to_string()))
    });
    if referenced || group_in_use(&txn.state, id) {
        return Err(ApiError::new(
            "DependencyViolation",
            format!("resource {id} has a dependent object"),
        ));
    }
    txn.delete::<SecurityGroup>(id);
    Ok(())
}

/// True when a network interface uses the group.
pub fn group_in_use(state: &State, id: &str) -> bool {
    state
        .enis
        .values()
        .any(|e| e.security_groups.iter().any(|g| g == id))
}

/// Adds rules to a group in one direction (`AuthorizeSecurityGroupIngress`/`Egress`). All or
/// nothing: a duplicate (of an existing rule or within the request) refuses the whole call.
pub fn authorize(
    txn: &mut Txn,
    group_id: &str,
    egress: bool,
    perms: &[Permission],
    tags: Tags,
) -> Result<Vec<SgRule>, ApiError> {
    let group = txn
        .state
        .security_groups
        .get(group_id)
        .cloned()
        .ok_or_else(|| not_found(group_id))?;
    let specs = specs_of(&txn.state, &group.vpc_id, perms)?;
    if specs.is_empty() {
        return Err(ApiError::missing("IpPermissions"));
    }
    let mut group = (*group).clone();
    let mut added = Vec::with_capacity(specs.len());
    for spec in specs {
        if let Some(dup) = group
            .rules_of(egress)
            .chain(added.iter())
            .find(|r| r.spec.same_rule(&spec))
        {
            return Err(ApiError::new(
                "InvalidPermission.Duplicate",
                format!(
                    "the specified rule \"{}\" already exists",
                    dup.spec.describe()
                ),
            ));
        }
        added.push(SgRule {
            id: new_id("sgr"),
            group_id: group_id.to_string(),
            egress,
            spec,
            tags: tags.clone(),
        });
    }
    // A prefix list reference costs its list's MaxEntries (AWS's rule).
    let cost =
        super::prefix_list::rule_cost(&txn.state, group.rules_of(egress).chain(added.iter()));
    if cost > txn.state.quotas.rules_per_group {
        return Err(ApiError::new(
            "RulesPerSecurityGroupLimitExceeded",
            "The maximum number of rules per security group has been reached.",
        ));
    }
    group.rules.extend(added.iter().cloned());
    txn.put(group);
    Ok(added)
}

/// Where in `group.rules` the rule of direction `egress` is that `spec` names by content (its
/// description aside): how revoke and the description update find a rule.
fn rule_matching(group: &SecurityGroup, egress: bool, spec: &RuleSpec) -> Result<usize, ApiError> {
    group
        .rules
        .iter()
        .position(|r| r.egress == egress && r.spec.same_rule(spec))
        .ok_or_else(|| {
            ApiError::new(
                "InvalidPermission.NotFound",
                "The specified rule does not exist in this security group.",
            )
        })
}

/// Where in `group.rules` the rule of direction `egress` with id `id` is.
fn rule_with_id(group: &SecurityGroup, egress: bool, id: &str) -> Result<usize, ApiError> {
    group
        .rules
        .iter()
        .position(|r| r.egress == egress && r.id == id)
        .ok_or_else(|| {
            ApiError::new(
                "InvalidSecurityGroupRuleId.NotFound",
                format!("The security group rule ID '{id}' does not exist"),
            )
        })
}

/// Removes rules from a group in one direction (`RevokeSecurityGroupIngress`/`Egress`), named by
/// content or by rule id. All must exist, else nothing changes.
pub fn revoke(
    txn: &mut Txn,
    group_id: &str,
    egress: bool,
    perms: &[Permission],
    rule_ids: &[String],
) -> Result<Vec<SgRule>, ApiError> {
    let group = txn
        .state
        .security_groups
        .get(group_id)
        .cloned()
        .ok_or_else(|| not_found(group_id))?;
    if perms.is_empty() && rule_ids.is_empty() {
        return Err(ApiError::missing("IpPermissions"));
    }
    let specs = specs_of(&txn.state, &group.vpc_id, perms)?;
    let mut remove: Vec<String> = Vec::new();
    let by_spec = specs.iter().map(|spec| rule_matching(&group, egress, spec));
    let by_id = rule_ids.iter().map(|id| rule_with_id(&group, egress, id));
    for at in by_spec.chain(by_id) {
        let id = &group.rules[at?].id;
        if !remove.contains(id) {
            remove.push(id.clone());
        }
    }
    let mut group = (*group).clone();
    let revoked: Vec<SgRule> = group
        .rules
        .iter()
        .filter(|r| remove.contains(&r.id))
        .cloned()
        .collect();
    group.rules.retain(|r| !remove.contains(&r.id));
    txn.put(group);
    Ok(revoked)
}

/// `UpdateSecurityGroupRuleDescriptionsIngress`/`Egress`: sets the description of existing rules
/// of one direction, named by content (`perms`: each peer's description replaces the rule's, an
/// absent one removes it) or by id (`by_id`). Nothing but descriptions changes; all or nothing.
pub fn update_descriptions(
    txn: &mut Txn,
    group_id: &str,
    egress: bool,
    perms: &[Permission],
    by_id: &[(String, Option<String>)],
) -> Result<(), ApiError> {
    let group = txn
        .state
        .security_groups
        .get(group_id)
        .cloned()
        .ok_or_else(|| not_found(group_id))?;
    if perms.is_empty() && by_id.is_empty() {
        return Err(ApiError::missing("IpPermissions"));
    }
    if !perms.is_empty() && !by_id.is_empty() {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            // AWS's wording, quoted in aws/aws-sdk-java-v2#5217.
            "The parameter 'ipPermissions' may not be used in combination with 'securityGroupRuleDescriptions'.",
        ));
    }
    let mut group = (*group).clone();
    for spec in specs_of(&txn.state, &group.vpc_id, perms)? {
        let at = rule_matching(&group, egress, &spec)?;
        group.rules[at].spec.description = spec.description;
    }
    for (id, description) in by_id {
        if let Some(d) = description {
            check_description(d, "rule description")?;
        }
        let at = rule_with_id(&group, egress, id)?;
        group.rules[at].spec.description = description.clone();
    }
    txn.put(group);
    Ok(())
}

/// One `SecurityGroupRule` update of `ModifySecurityGroupRules`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleUpdate {
    /// `SecurityGroupRuleId`.
    pub rule_id: String,
    /// `IpProtocol`.
    pub protocol: Option<String>,
    /// `FromPort`.
    pub from_port: Option<i64>,
    /// `ToPort`.
    pub to_port: Option<i64>,
    /// `CidrIpv4`.
    pub cidr: Option<String>,
    /// `ReferencedGroupId`.
    pub referenced_group: Option<String>,
    /// `PrefixListId`.
    pub prefix_list: Option<String>,
    /// `Description`.
    pub description: Option<String>,
    /// `CidrIpv6` was given (refused: no IPv6 here; counted as a source first, as AWS does).
    pub cidr_ipv6: bool,
}

/// `ModifySecurityGroupRules`: replaces rules of `group_id` in place (ids kept). All or nothing.
pub fn modify_rules(txn: &mut Txn, group_id: &str, updates: &[RuleUpdate]) -> Result<(), ApiError> {
    let group = txn
        .state
        .security_groups
        .get(group_id)
        .cloned()
        .ok_or_else(|| not_found(group_id))?;
    if updates.is_empty() {
        return Err(ApiError::missing("SecurityGroupRule"));
    }
    let mut group = (*group).clone();
    for u in updates {
        let Some(pos) = group.rules.iter().position(|r| r.id == u.rule_id) else {
            return Err(ApiError::new(
                "InvalidSecurityGroupRuleId.NotFound",
                format!("The security group rule ID '{}' does not exist", u.rule_id),
            ));
        };
        // AWS's wording for a rule without a protocol, and for ports on an all-protocols rule.
        let protocol = u.protocol.clone().ok_or_else(|| {
            ApiError::invalid_value(
                "Invalid value 'null' for protocol. VPC security group rules must specify protocols explicitly.",
            )
        })?;
        let ports_given = [u.from_port, u.to_port]
            .iter()
            .any(|p| p.is_some_and(|p| p != -1));
        let normalized = normalize_protocol(&protocol)?;
        if ports_given && normalized == "-1" {
            return Err(ApiError::invalid_value(
                "You may not specify all protocols and specific ports. Please specify each protocol and port range combination individually, or all protocols and no port range.",
            ));
        }
        // AWS's wording for a missing port and a missing or double source (from moto's
        // AWS-verified test_modify_security_group_rules).
        if matches!(normalized.as_str(), "tcp" | "udp")
            && (u.from_port.is_none() || u.to_port.is_none())
        {
            return Err(ApiError::invalid_value(
                "Invalid value for portRange. Must specify both from and to ports with TCP/UDP.",
            ));
        }
        let sources = [&u.cidr, &u.referenced_group, &u.prefix_list]
            .iter()
            .filter(|s| s.is_some())
            .count()
            + usize::from(u.cidr_ipv6);
        if sources == 0 {
            return Err(ApiError::new(
                "MissingParameter",
                "The request must contain exactly one of: cidrIp, cidrIpv6, prefixListId, or referencedGroupId",
            ));
        }
        if sources > 1 {
            return Err(ApiError::new(
                "InvalidParameterCombination",
                "Only one of cidrIp, cidrIpv6, prefixListId, or referencedGroupId can be specified",
            ));
        }
        if u.cidr_ipv6 {
            return Err(ApiError::invalid_value("IPv6 ranges are not supported."));
        }
        let with = |id: &String| vec![(id.clone(), u.description.clone())];
        let (cidrs, groups, prefix_lists) = match (&u.cidr, &u.referenced_group, &u.prefix_list) {
            (Some(c), _, _) => (with(c), vec![], vec![]),
            (None, Some(g), _) => (vec![], with(g), vec![]),
            (None, None, p) => (vec![], vec![], p.iter().flat_map(with).collect()),
        };
        let perm = Permission {
            protocol,
            from_port: u.from_port,
            to_port: u.to_port,
            cidrs,
            groups,
            prefix_lists,
        };
        let spec = specs_of(&txn.state, &group.vpc_id, &[perm])?
            .pop()
            .ok_or_else(|| ApiError::missing("SecurityGroupRule"))?;
        let egress = group.rules[pos].egress;
        let clash = group
            .rules
            .iter()
            .enumerate()
            .any(|(i, r)| i != pos && r.egress == egress && r.spec.same_rule(&spec));
        if clash {
            return Err(ApiError::new(
                "InvalidPermission.Duplicate",
                format!("the specified rule \"{}\" already exists", spec.describe()),
            ));
        }
        group.rules[pos].spec = spec;
        let egress = group.rules[pos].egress;
        if super::prefix_list::rule_cost(&txn.state, group.rules_of(egress))
            > txn.state.quotas.rules_per_group
        {
            return Err(ApiError::new(
                "RulesPerSecurityGroupLimitExceeded",
                "The maximum number of rules per security group has been reached.",
            ));
        }
    }
    txn.put(group);
    Ok(())
}

/// For `DeleteVpc`: refuses while groups other than `default` remain in the VPC.
pub fn check_vpc_deletable(state: &State, vpc_id: &str) -> Result<(), ApiError> {
    if state
        .security_groups
        .values()
        .any(|g| g.vpc_id == vpc_id && !g.is_default())
    {
        return Err(ApiError::has_dependencies("vpc", vpc_id));
    }
    Ok(())
}

/// For `DeleteVpc`: removes the VPC's default group.
pub fn delete_groups_of_vpc(txn: &mut Txn, vpc_id: &str) {
    txn.delete_where::<SecurityGroup>(|g| g.vpc_id == vpc_id);
}

/// Gives every VPC that lacks them its default group and default network ACL, and associates
/// subnets that have no ACL with the default one (stores written before groups and ACLs
/// existed). Returns how many VPCs were completed; nothing changes when none needed it.
pub fn ensure_vpc_defaults(txn: &mut Txn) -> Result<usize, ApiError> {
    let vpcs: Vec<String> = txn.state.vpcs.keys().cloned().collect();
    let mut completed = 0;
    for vpc_id in vpcs {
        let mut changed = false;
        if default_group_id(&txn.state, &vpc_id).is_none() {
            create_default_group(txn, &vpc_id);
            changed = true;
        }
        if super::network_acl::default_acl(&txn.state, &vpc_id).is_none() {
            super::network_acl::create_default_acl(txn, &vpc_id);
            changed = true;
        }
        let orphans: Vec<String> = txn
            .state
            .subnets
            .values()
            .filter(|s| s.vpc_id == vpc_id)
            .filter(|s| {
                !txn.state
                    .network_acls
                    .values()
                    .any(|a| a.associations.iter().any(|x| x.subnet_id == s.id))
            })
            .map(|s| s.id.clone())
            .collect();
        for subnet_id in orphans {
            super::network_acl::associate_new_subnet(txn, &vpc_id, &subnet_id);
            changed = true;
        }
        completed += usize::from(changed);
    }
    Ok(completed)
}

/// Values of `ip-permission.*` filters for one rule.
fn permission_field(r: &SgRule, state: &State, name: &str) -> Option<String> {
    let s = &r.spec;
    Some(match name {
        "protocol" => s.protocol.clone(),
        "from-port" => s.from_port.unwrap_or(-1).to_string(),
        "to-port" => s.to_port.unwrap_or(-1).to_string(),
        "cidr" => match &s.peer {
            Peer::Cidr(c) => c.to_string(),
            _ => return None,
        },
        "group-id" => match &s.peer {
            Peer::Group(g) => g.clone(),
            _ => return None,
        },
        "group-name" => match &s.peer {
            Peer::Group(g) => state.security_groups.get(g)?.name.clone(),
            _ => return None,
        },
        "user-id" => match &s.peer {
            Peer::Group(_) => super::OWNER_ID.into(),
            _ => return None,
        },
        "prefix-list-id" => match &s.peer {
            Peer::PrefixList(p) => p.clone(),
            _ => return None,
        },
        _ => return None,
    })
}

impl Filterable for SecurityGroup {
    const FILTERS: &'static [&'static str] = &[
        "group-id",
        "group-name",
        "vpc-id",
        "description",
        "owner-id",
        "ip-permission.protocol",
        "ip-permission.from-port",
        "ip-permission.to-port",
        "ip-permission.cidr",
        "ip-permission.group-id",
        "ip-permission.group-name",
        "ip-permission.user-id",
        "ip-permission.prefix-list-id",
        "egress.ip-permission.prefix-list-id",
        // IPv6 is not supported: known names that match nothing.
        "ip-permission.ipv6-cidr",
        "egress.ip-permission.ipv6-cidr",
        "egress.ip-permission.protocol",
        "egress.ip-permission.from-port",
        "egress.ip-permission.to-port",
        "egress.ip-permission.cidr",
        "egress.ip-permission.group-id",
        "egress.ip-permission.group-name",
        "egress.ip-permission.user-id",
    ];

    fn field(&self, state: &State, name: &str) -> Vec<String> {
        if let Some(f) = name.strip_prefix("egress.ip-permission.") {
            return self
                .rules_of(true)
                .filter_map(|r| permission_field(r, state, f))
                .collect();
        }
        if let Some(f) = name.strip_prefix("ip-permission.") {
            return self
                .rules_of(false)
                .filter_map(|r| permission_field(r, state, f))
                .collect();
        }
        let v = match name {
            "group-id" => self.id.clone(),
            "group-name" => self.name.clone(),
            "vpc-id" => self.vpc_id.clone(),
            "description" => self.description.clone(),
            "owner-id" => super::OWNER_ID.into(),
            _ => return Vec::new(),
        };
        vec![v]
    }

    fn tag_map(&self) -> Tags {
        self.tags.clone()
    }
}

impl Filterable for SgRule {
    const FILTERS: &'static [&'static str] = &["group-id", "security-group-rule-id"];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        match name {
            "group-id" => vec![self.group_id.clone()],
            "security-group-rule-id" => vec![self.id.clone()],
            _ => Vec::new(),
        }
    }

    fn tag_map(&self) -> Tags {
        self.tags.clone()
    }
}

/// Every rule of every group, by rule id (for `DescribeSecurityGroupRules`).
pub fn all_rules(state: &State) -> super::Map<SgRule> {
    state
        .security_groups
        .values()
        .flat_map(|g| g.rules.iter())
        .map(|r| (r.id.clone(), Arc::new(r.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::vpc::create_vpc;
    use super::*;

    fn setup() -> (Txn, String) {
        let mut txn = Txn::new(State::new(), 0);
        let vpc = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        (txn, vpc.id)
    }

    fn tcp(from: i64, to: i64, cidr: &str) -> Permission {
        Permission {
            protocol: "tcp".into(),
            from_port: Some(from),
            to_port: Some(to),
            cidrs: vec![(cidr.into(), None)],
            groups: vec![],
            prefix_lists: vec![],
        }
    }

    #[test]
    fn protocols_are_normalised() {
        assert_eq!(normalize_protocol("TCP").unwrap(), "tcp");
        assert_eq!(normalize_protocol("6").unwrap(), "tcp");
        assert_eq!(normalize_protocol("17").unwrap(), "udp");
        assert_eq!(normalize_protocol("1").unwrap(), "icmp");
        assert_eq!(normalize_protocol("-1").unwrap(), "-1");
        assert_eq!(normalize_protocol("50").unwrap(), "50");
        for bad in ["256", "foo", "", "-2", "1000"] {
            assert_eq!(
                normalize_protocol(bad).unwrap_err().code,
                "InvalidParameterValue",
                "{bad}"
            );
        }
    }

    #[test]
    fn ports_are_checked_per_protocol() {
        assert_eq!(
            check_ports("tcp", Some(22), Some(22)).unwrap(),
            (Some(22), Some(22))
        );
        assert!(check_ports("tcp", Some(80), Some(22)).is_err());
        assert!(check_ports("udp", Some(0), Some(65536)).is_err());
        assert!(check_ports("tcp", None, Some(22)).is_err());
        assert_eq!(
            check_ports("icmp", Some(8), Some(-1)).unwrap(),
            (Some(8), Some(-1))
        );
        assert!(check_ports("icmp", Some(-1), Some(0)).is_err());
        assert!(check_ports("icmp", Some(256), Some(0)).is_err());
        assert_eq!(check_ports("-1", Some(5), Some(9)).unwrap(), (None, None));
        assert_eq!(check_ports("50", None, None).unwrap(), (None, None));
    }

    #[test]
    fn every_vpc_gets_a_default_group() {
        let (txn, vpc) = setup();
        let id = default_group_id(&txn.state, &vpc).expect("default group");
        let g = &txn.state.security_groups[&id];
        assert_eq!(g.name, "default");
        let inbound: Vec<_> = g.rules_of(false).collect();
        assert_eq!(inbound.len(), 1);
        assert_eq!(inbound[0].spec.peer, Peer::Group(id.clone()));
        assert_eq!(inbound[0].spec.protocol, "-1");
        let out: Vec<_> = g.rules_of(true).collect();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].spec.peer, Peer::Cidr("0.0.0.0/0".parse().unwrap()));
    }

    #[test]
    fn create_rules_and_refusals() {
        let (mut txn, vpc) = setup();
        let g =
            create_security_group(&mut txn, "web", "web tier", Some(&vpc), Tags::new()).unwrap();
        assert!(g.id.starts_with("sg-"));
        assert_eq!(g.rules_of(false).count(), 0);
        assert_eq!(g.rules_of(true).count(), 1);
        let code = |r: Result<SecurityGroup, ApiError>| r.unwrap_err().code;
        assert_eq!(
            code(create_security_group(
                &mut txn,
                "web",
                "x",
                Some(&vpc),
                Tags::new()
            )),
            "InvalidGroup.Duplicate"
        );
        assert_eq!(
            code(create_security_group(
                &mut txn,
                "default",
                "x",
                Some(&vpc),
                Tags::new()
            )),
            "InvalidGroup.Reserved"
        );
        assert_eq!(
            code(create_security_group(
                &mut txn,
                "a",
                "x",
                Some("vpc-nope"),
                Tags::new()
            )),
            "InvalidVpcID.NotFound"
        );
        assert_eq!(
            code(create_security_group(&mut txn, "a", "x", None, Tags::new())),
            "VPCIdNotSpecified"
        );
        assert_eq!(
            code(create_security_group(
                &mut txn,
                "sg-1",
                "x",
                Some(&vpc),
                Tags::new()
            )),
            "InvalidParameterValue"
        );

        let added = authorize(
            &mut txn,
            &g.id,
            false,
            &[tcp(22, 22, "10.0.0.0/8")],
            Tags::new(),
        )
        .unwrap();
        assert_eq!(added.len(), 1);
        assert!(added[0].id.starts_with("sgr-"));
        let e = authorize(
            &mut txn,
            &g.id,
            false,
            &[tcp(22, 22, "10.0.0.0/8")],
            Tags::new(),
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidPermission.Duplicate");
        assert!(e
            .message
            .contains("peer: 10.0.0.0/8, TCP, from port: 22, to port: 22"));
        // The same rule egress is not a duplicate; the default egress rule is.
        authorize(
            &mut txn,
            &g.id,
            true,
            &[tcp(22, 22, "10.0.0.0/8")],
            Tags::new(),
        )
        .unwrap();
        let all = Permission {
            protocol: "-1".into(),
            cidrs: vec![("0.0.0.0/0".into(), None)],
            ..Default::default()
        };
        assert_eq!(
            authorize(&mut txn, &g.id, true, &[all], Tags::new())
                .unwrap_err()
                .code,
            "InvalidPermission.Duplicate"
        );
        // A duplicate inside one request refuses it whole.
        let before = txn.state.security_groups[&g.id].clone();
        let r = authorize(
            &mut txn,
            &g.id,
            false,
            &[tcp(80, 80, "0.0.0.0/0"), tcp(80, 80, "0.0.0.0/0")],
            Tags::new(),
        );
        assert_eq!(r.unwrap_err().code, "InvalidPermission.Duplicate");
        assert_eq!(txn.state.security_groups[&g.id], before);

        // Referenced groups must exist.
        let by_group = Permission {
            protocol: "tcp".into(),
            from_port: Some(443),
            to_port: Some(443),
            groups: vec![("sg-0000000000000000f".into(), None)],
            ..Default::default()
        };
        assert_eq!(
            authorize(&mut txn, &g.id, false, &[by_group], Tags::new())
                .unwrap_err()
                .code,
            "InvalidGroup.NotFound"
        );
        assert_eq!(
            authorize(
                &mut txn,
                &g.id,
                false,
                &[tcp(1, 2, "10.0.0.0/33")],
                Tags::new()
            )
            .unwrap_err()
            .code,
            "InvalidParameterValue"
        );

        // Revoke by content, then the same again is NotFound.
        let revoked = revoke(&mut txn, &g.id, false, &[tcp(22, 22, "10.0.0.0/8")], &[]).unwrap();
        assert_eq!(revoked[0].id, added[0].id);
        assert_eq!(
            revoke(&mut txn, &g.id, false, &[tcp(22, 22, "10.0.0.0/8")], &[])
                .unwrap_err()
                .code,
            "InvalidPermission.NotFound"
        );
        // Revoke by id.
        let egress_id = txn.state.security_groups[&g.id]
            .rules_of(true)
            .next()
            .unwrap()
            .id
            .clone();
        revoke(&mut txn, &g.id, true, &[], &[egress_id]).unwrap();
        assert_eq!(txn.state.security_groups[&g.id].rules_of(true).count(), 1);
    }

    #[test]
    fn rule_limit_per_direction() {
        let (mut txn, vpc) = setup();
        let g = create_security_group(&mut txn, "many", "x", Some(&vpc), Tags::new()).unwrap();
        let perms: Vec<Permission> = (0..60)
            .map(|p| tcp(1000 + p, 1000 + p, "10.0.0.0/8"))
            .collect();
        authorize(&mut txn, &g.id, false, &perms, Tags::new()).unwrap();
        assert_eq!(
            authorize(
                &mut txn,
                &g.id,
                false,
                &[tcp(1, 1, "10.0.0.0/8")],
                Tags::new()
            )
            .unwrap_err()
            .code,
            "RulesPerSecurityGroupLimitExceeded"
        );
        // Egress has its own 60 (one used by the default rule).
        let perms: Vec<Permission> = (0..59)
            .map(|p| tcp(1000 + p, 1000 + p, "10.0.0.0/8"))
            .collect();
        authorize(&mut txn, &g.id, true, &perms, Tags::new()).unwrap();
        assert_eq!(
            authorize(
                &mut txn,
                &g.id,
                true,
                &[tcp(1, 1, "10.0.0.0/8")],
                Tags::new()
            )
            .unwrap_err()
            .code,
            "RulesPerSecurityGroupLimitExceeded"
        );
    }

    #[test]
    fn raised_rule_quota() {
        let (mut txn, vpc) = setup();
        txn.state.quotas = crate::quota::Quotas::new(1000, 1).unwrap();
        let g = create_security_group(&mut txn, "many", "x", Some(&vpc), Tags::new()).unwrap();
        let perms: Vec<Permission> = (0..1000)
            .map(|p| tcp(1000 + p, 1000 + p, "10.0.0.0/8"))
            .collect();
        authorize(&mut txn, &g.id, false, &perms, Tags::new()).unwrap();
        assert_eq!(
            txn.state.security_groups[&g.id].rules_of(false).count(),
            1000
        );
        assert_eq!(
            authorize(
                &mut txn,
                &g.id,
                false,
                &[tcp(1, 1, "10.0.0.0/8")],
                Tags::new()
            )
            .unwrap_err()
            .code,
            "RulesPerSecurityGroupLimitExceeded"
        );
    }

    #[test]
    fn delete_rules() {
        let (mut txn, vpc) = setup();
        let def = default_group_id(&txn.state, &vpc).unwrap();
        assert_eq!(
            delete_security_group(&mut txn, &def).unwrap_err().code,
            "CannotDelete"
        );
        assert_eq!(
            delete_security_group(&mut txn, "sg-0000000000000000f")
                .unwrap_err()
                .code,
            "InvalidGroup.NotFound"
        );
        let a = create_security_group(&mut txn, "a", "x", Some(&vpc), Tags::new()).unwrap();
        let b = create_security_group(&mut txn, "b", "x", Some(&vpc), Tags::new()).unwrap();
        let from_a = Permission {
            protocol: "-1".into(),
            groups: vec![(a.id.clone(), Some("from a".into()))],
            prefix_lists: vec![],
            ..Default::default()
        };
        authorize(
            &mut txn,
            &b.id,
            false,
            std::slice::from_ref(&from_a),
            Tags::new(),
        )
        .unwrap();
        assert_eq!(
            delete_security_group(&mut txn, &a.id).unwrap_err().code,
            "DependencyViolation"
        );
        assert_eq!(
            super::super::vpc::delete_vpc(&mut txn, &vpc)
                .unwrap_err()
                .code,
            "DependencyViolation"
        );
        revoke(&mut txn, &b.id, false, &[from_a], &[]).unwrap();
        delete_security_group(&mut txn, &a.id).unwrap();
        assert_eq!(resolve(&txn.state, None, Some("b")).unwrap().id, b.id);
        assert_eq!(
            resolve(&txn.state, Some("web"), None).unwrap_err().code,
            "InvalidGroupId.Malformed"
        );
        delete_security_group(&mut txn, &b.id).unwrap();
        super::super::vpc::delete_vpc(&mut txn, &vpc).unwrap();
        assert!(
            txn.state.security_groups.is_empty(),
            "default group went with the VPC"
        );
    }

    #[test]
    fn modify_rules_in_place() {
        let (mut txn, vpc) = setup();
        let g = create_security_group(&mut txn, "m", "x", Some(&vpc), Tags::new()).unwrap();
        let added = authorize(
            &mut txn,
            &g.id,
            false,
            &[tcp(22, 22, "10.0.0.0/8"), tcp(80, 80, "10.0.0.0/8")],
            Tags::new(),
        )
        .unwrap();
        let update = RuleUpdate {
            rule_id: added[0].id.clone(),
            protocol: Some("tcp".into()),
            from_port: Some(2222),
            to_port: Some(2222),
            cidr: Some("192.168.0.0/16".into()),
            description: Some("ssh".into()),
            ..Default::default()
        };
        modify_rules(&mut txn, &g.id, std::slice::from_ref(&update)).unwrap();
        let r = &txn.state.security_groups[&g.id].rules;
        let r0 = r.iter().find(|r| r.id == added[0].id).unwrap();
        assert_eq!(r0.spec.from_port, Some(2222));
        assert_eq!(r0.spec.description.as_deref(), Some("ssh"));
        // Making it equal to the other rule is a duplicate.
        let clash = RuleUpdate {
            from_port: Some(80),
            to_port: Some(80),
            cidr: Some("10.0.0.0/8".into()),
            ..update.clone()
        };
        assert_eq!(
            modify_rules(&mut txn, &g.id, &[clash]).unwrap_err().code,
            "InvalidPermission.Duplicate"
        );
        let unknown = RuleUpdate {
            rule_id: "sgr-00000000000000000".into(),
            ..update
        };
        assert_eq!(
            modify_rules(&mut txn, &g.id, &[unknown]).unwrap_err().code,
            "InvalidSecurityGroupRuleId.NotFound"
        );
    }

    #[test]
    fn filters_see_rules() {
        let (mut txn, vpc) = setup();
        let g = create_security_group(&mut txn, "f", "x", Some(&vpc), Tags::new()).unwrap();
        authorize(
            &mut txn,
            &g.id,
            false,
            &[tcp(22, 22, "10.1.0.0/16")],
            Tags::new(),
        )
        .unwrap();
        let g = txn.state.security_groups[&g.id].clone();
        assert_eq!(g.field(&txn.state, "ip-permission.from-port"), vec!["22"]);
        assert_eq!(
            g.field(&txn.state, "ip-permission.cidr"),
            vec!["10.1.0.0/16"]
        );
        assert_eq!(
            g.field(&txn.state, "egress.ip-permission.cidr"),
            vec!["0.0.0.0/0"]
        );
        assert_eq!(
            g.field(&txn.state, "egress.ip-permission.protocol"),
            vec!["-1"]
        );
        // The default group (2 rules) and this one (egress + one ingress).
        assert_eq!(all_rules(&txn.state).len(), 2 + 2);
    }

    #[test]
    fn groups_used_by_enis_cannot_be_deleted() {
        let (mut txn, vpc) = setup();
        let g = create_security_group(&mut txn, "used", "x", Some(&vpc), Tags::new()).unwrap();
        assert!(!group_in_use(&txn.state, &g.id));
        let subnet =
            super::super::subnet::create_subnet(&mut txn, &vpc, "10.0.0.0/24", None, Tags::new())
                .unwrap();
        let eni = super::super::Eni {
            id: "eni-0000000000000000a".into(),
            subnet_id: subnet.id.clone(),
            vpc_id: vpc.clone(),
            availability_zone: subnet.availability_zone.clone(),
            private_ip: "10.0.0.4".parse().unwrap(),
            mac: "02:00:00:00:00:01".into(),
            description: String::new(),
            source_dest_check: true,
            connection_tracking: Default::default(),
            attachment: None,
            tags: Tags::new(),
            secondary_ips: Vec::new(),
            security_groups: vec![g.id.clone()],
            client_token: None,
            public_ip: None,
        };
        txn.put(eni);
        assert!(group_in_use(&txn.state, &g.id));
        assert_eq!(
            delete_security_group(&mut txn, &g.id).unwrap_err().code,
            "DependencyViolation"
        );
        txn.delete_eni("eni-0000000000000000a");
        delete_security_group(&mut txn, &g.id).unwrap();
    }

    #[test]
    fn without_a_vpc_id_the_default_vpc_is_used() {
        let (mut txn, _vpc) = setup();
        let (default_vpc, _) = super::super::attributes::create_default_vpc(&mut txn).unwrap();
        let g = create_security_group(&mut txn, "dv", "x", None, Tags::new()).unwrap();
        assert_eq!(g.vpc_id, default_vpc);
        let def = resolve(&txn.state, None, Some("default")).unwrap();
        assert_eq!(
            def.vpc_id, default_vpc,
            "a name means the default VPC's group"
        );
    }

    #[test]
    fn old_stores_get_their_defaults() {
        let (mut txn, vpc) = setup();
        let subnet =
            super::super::subnet::create_subnet(&mut txn, &vpc, "10.0.0.0/24", None, Tags::new())
                .unwrap();
        // As a store from before groups and ACLs: none of them.
        txn.state.security_groups.clear();
        txn.state.network_acls.clear();
        assert_eq!(ensure_vpc_defaults(&mut txn).unwrap(), 1);
        assert!(default_group_id(&txn.state, &vpc).is_some());
        let acl = super::super::network_acl::default_acl(&txn.state, &vpc).unwrap();
        assert_eq!(acl.associations.len(), 1);
        assert_eq!(acl.associations[0].subnet_id, subnet.id);
        let mut again = Txn::new(txn.state.clone(), 0);
        assert_eq!(ensure_vpc_defaults(&mut again).unwrap(), 0);
        assert!(again.is_empty(), "a complete store is left alone");
    }

    #[test]
    fn descriptions_change_alone_and_all_or_nothing() {
        let (mut txn, vpc) = setup();
        let g = create_security_group(&mut txn, "d", "x", Some(&vpc), Tags::new()).unwrap();
        let added = authorize(
            &mut txn,
            &g.id,
            false,
            &[tcp(22, 22, "10.0.0.0/8")],
            Tags::new(),
        )
        .unwrap();
        let with_desc = |p: Permission, d: &str| Permission {
            cidrs: p
                .cidrs
                .into_iter()
                .map(|(c, _)| (c, Some(d.into())))
                .collect(),
            ..p
        };
        // By id: the group's default egress rule sorts before or after it by its random id.
        let rule = |txn: &Txn| {
            txn.state.security_groups[&g.id]
                .rules
                .iter()
                .find(|r| r.id == added[0].id)
                .expect("the authorized rule")
                .clone()
        };
        update_descriptions(
            &mut txn,
            &g.id,
            false,
            &[with_desc(tcp(22, 22, "10.0.0.0/8"), "ssh")],
            &[],
        )
        .unwrap();
        let r = rule(&txn);
        assert_eq!(
            (r.id.as_str(), r.spec.description.as_deref()),
            (added[0].id.as_str(), Some("ssh"))
        );
        assert_eq!(r.spec.from_port, Some(22));
        // A second, missing permission refuses the whole call; the egress side has no such id.
        let mut t2 = Txn::new(txn.state.clone(), 0);
        let e = update_descriptions(
            &mut t2,
            &g.id,
            false,
            &[
                with_desc(tcp(22, 22, "10.0.0.0/8"), "new"),
                tcp(23, 23, "10.0.0.0/8"),
            ],
            &[],
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidPermission.NotFound");
        assert!(t2.is_empty());
        let e = update_descriptions(&mut t2, &g.id, true, &[], &[(added[0].id.clone(), None)])
            .unwrap_err();
        assert_eq!(e.code, "InvalidSecurityGroupRuleId.NotFound");
        // By id, None removes the description.
        update_descriptions(&mut txn, &g.id, false, &[], &[(added[0].id.clone(), None)]).unwrap();
        assert_eq!(rule(&txn).spec.description, None);
    }
}
