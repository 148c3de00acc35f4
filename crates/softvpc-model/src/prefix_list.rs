//! Customer-managed prefix lists (`pl-`): named, versioned sets of IPv4 CIDR blocks that security
//! group rules (`PrefixListIds`) and routes (`DestinationPrefixListId`) reference instead of a
//! CIDR. AWS's rules: `MaxEntries` (1..=1000) caps the entries and is what a reference costs
//! against the security group's rule limit; every change of the entries makes a new version and
//! must name the current one (`PrefixListVersionMismatch` otherwise); the entries and the size
//! cannot change in one call; a list that is referenced cannot be deleted. Changes apply at once
//! (AWS's `*-in-progress` states are never shown: the list is `create-complete` or
//! `modify-complete`). IPv6 lists are refused: softvpc has no IPv6.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::filter::Filterable;
use super::idempotency::replay;
use super::ids::new_id;
use super::route_table::Destination;
use super::security_group::Peer;
use super::vpc::parse_cidr;
use super::{ApiError, State, Tags, Txn};

/// The largest `MaxEntries` AWS allows.
pub const MAX_MAX_ENTRIES: u32 = 1000;
/// The most routes a route table may have (AWS's default quota); a prefix list route counts as
/// its list's `MaxEntries`.
pub const MAX_ROUTES_PER_TABLE: usize = 50;

/// One entry: a CIDR block and an optional description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The CIDR block (network address, as AWS stores it).
    pub cidr: Ipv4Net,
    /// Its description (up to 255 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A customer-managed prefix list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixList {
    /// `pl-...`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The most entries it may hold.
    pub max_entries: u32,
    /// The current version (1 at creation; each change of the entries adds one).
    pub version: u64,
    /// The current entries, in the order they were added.
    pub entries: Vec<Entry>,
    /// The entries of earlier versions (for `GetManagedPrefixListEntries` `TargetVersion`).
    #[serde(default)]
    pub history: Vec<(u64, Vec<Entry>)>,
    /// `create-complete` or `modify-complete`.
    pub state: String,
    /// Its tags.
    pub tags: Tags,
    /// The `ClientToken` of the `CreateManagedPrefixList` that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

impl PrefixList {
    /// AWS's ARN of the list.
    pub fn arn(&self, region: &str) -> String {
        format!(
            "arn:aws:ec2:{region}:{}:prefix-list/{}",
            super::OWNER_ID,
            self.id
        )
    }

    /// The entries of `version` (the current one, or one of the history).
    pub fn entries_at(&self, version: u64) -> Option<&[Entry]> {
        if version == self.version {
            return Some(&self.entries);
        }
        self.history
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, e)| e.as_slice())
    }

    /// The CIDR blocks of the current version.
    pub fn cidrs(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        self.entries.iter().map(|e| e.cidr)
    }
}

/// `InvalidPrefixListID.NotFound` for `id`.
pub fn not_found(id: &str) -> ApiError {
    ApiError::new(
        "InvalidPrefixListID.NotFound",
        format!("The prefix list ID '{id}' does not exist"),
    )
}

/// Refuses an id that is not `pl-` + hex (`InvalidPrefixListID.Malformed`, before any lookup).
pub fn check_id(id: &str) -> Result<(), ApiError> {
    let hex = id
        .strip_prefix("pl-")
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if hex {
        Ok(())
    } else {
        Err(ApiError::new(
            "InvalidPrefixListID.Malformed",
            format!("Invalid id: \"{id}\" (expecting \"pl-...\")"),
        ))
    }
}

/// The list `id`, checked and found.
pub fn get<'a>(state: &'a State, id: &str) -> Result<&'a std::sync::Arc<PrefixList>, ApiError> {
    check_id(id)?;
    state.prefix_lists.get(id).ok_or_else(|| not_found(id))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::invalid_value(
            "The prefix list name must be between 1 and 255 characters long.",
        ));
    }
    if name.to_ascii_lowercase().starts_with("com.amazonaws") {
        return Err(ApiError::invalid_value(format!(
            "The prefix list name '{name}' is invalid: names starting with 'com.amazonaws' are reserved."
        )));
    }
    Ok(())
}

fn check_max_entries(max: i64) -> Result<u32, ApiError> {
    u32::try_from(max)
        .ok()
        .filter(|m| (1..=MAX_MAX_ENTRIES).contains(m))
        .ok_or_else(|| {
            ApiError::invalid_value(format!(
                "Invalid value '{max}' for MaxEntries. It must be between 1 and {MAX_MAX_ENTRIES}."
            ))
        })
}

/// Checks the entries of a request (CIDRs, descriptions, no CIDR twice).
fn parse_entries(entries: &[(String, Option<String>)]) -> Result<Vec<Entry>, ApiError> {
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    for (cidr, description) in entries {
        if cidr.contains(':') {
            return Err(ApiError::invalid_value(format!(
                "The CIDR '{cidr}' does not match the address family IPv4."
            )));
        }
        let net = parse_cidr(cidr, "Cidr")?;
        if let Some(d) = description {
            if d.chars().count() > 255 {
                return Err(ApiError::invalid_value(
                    "The prefix list entry description must be at most 255 characters long.",
                ));
            }
        }
        if out.iter().any(|e| e.cidr == net) {
            return Err(ApiError::invalid_value(format!(
                "The request contains the CIDR '{net}' more than once."
            )));
        }
        out.push(Entry {
            cidr: net,
            description: description.clone(),
        });
    }
    Ok(out)
}

fn too_many(max: u32) -> ApiError {
    ApiError::new(
        "PrefixListMaxEntriesExceeded",
        format!("The prefix list would have more than its maximum of {max} entries."),
    )
}

/// The parameters of `CreateManagedPrefixList`.
#[derive(Debug, Clone, Default)]
pub struct CreateSpec {
    /// `PrefixListName`.
    pub name: String,
    /// `MaxEntries`.
    pub max_entries: i64,
    /// `AddressFamily`.
    pub address_family: String,
    /// `Entries`: CIDR and description.
    pub entries: Vec<(String, Option<String>)>,
    /// Tags from the `prefix-list` tag specifications.
    pub tags: Tags,
    /// `ClientToken`.
    pub client_token: Option<String>,
}

/// `CreateManagedPrefixList`.
pub fn create(txn: &mut Txn, spec: CreateSpec) -> Result<PrefixList, ApiError> {
    if let Some(p) = replay(
        spec.client_token.as_deref(),
        txn.state.prefix_lists.values(),
        |p| p.client_token.as_deref(),
        |p| p.name == spec.name && i64::from(p.max_entries) == spec.max_entries,
    )? {
        return Ok((**p).clone());
    }
    match spec.address_family.as_str() {
        "IPv4" => {}
        "IPv6" => {
            return Err(ApiError::invalid_value(
                "IPv6 prefix lists are not supported: softvpc has no IPv6.",
            ))
        }
        other => {
            return Err(ApiError::invalid_value(format!(
                "Invalid value '{other}' for AddressFamily. It must be IPv4 or IPv6."
            )))
        }
    }
    check_name(&spec.name)?;
    let max_entries = check_max_entries(spec.max_entries)?;
    let entries = parse_entries(&spec.entries)?;
    if entries.len() > max_entries as usize {
        return Err(too_many(max_entries));
    }
    let list = PrefixList {
        id: new_id("pl"),
        name: spec.name,
        max_entries,
        version: 1,
        entries,
        history: Vec::new(),
        state: "create-complete".into(),
        tags: spec.tags,
        client_token: spec.client_token,
    };
    txn.put(list.clone());
    Ok(list)
}

/// The parameters of `ModifyManagedPrefixList`.
#[derive(Debug, Clone, Default)]
pub struct ModifySpec {
    /// `CurrentVersion`.
    pub current_version: Option<i64>,
    /// `PrefixListName`.
    pub name: Option<String>,
    /// `AddEntries`: CIDR and description.
    pub add: Vec<(String, Option<String>)>,
    /// `RemoveEntries`: CIDRs.
    pub remove: Vec<String>,
    /// `MaxEntries`.
    pub max_entries: Option<i64>,
}

/// `ModifyManagedPrefixList`: a new name (same version), new entries (removals first, then
/// additions; a new version), or a new size, checked against every reference.
pub fn modify(txn: &mut Txn, id: &str, spec: ModifySpec) -> Result<PrefixList, ApiError> {
    let mut list = (**get(&txn.state, id)?).clone();
    let changes_entries = !spec.add.is_empty() || !spec.remove.is_empty();
    if changes_entries && spec.max_entries.is_some() {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "You cannot modify the entries of a prefix list and modify the size of a prefix list at the same time.",
        ));
    }
    if changes_entries {
        let Some(current) = spec.current_version else {
            return Err(ApiError::missing("CurrentVersion"));
        };
        if u64::try_from(current).ok() != Some(list.version) {
            return Err(ApiError::new(
                "PrefixListVersionMismatch",
                "The prefix list has the incorrect version number.",
            ));
        }
    } else if let Some(current) = spec.current_version {
        if u64::try_from(current).ok() != Some(list.version) {
            return Err(ApiError::new(
                "PrefixListVersionMismatch",
                "The prefix list has the incorrect version number.",
            ));
        }
    }
    if let Some(name) = &spec.name {
        check_name(name)?;
        list.name = name.clone();
    }
    if changes_entries {
        let mut entries = list.entries.clone();
        let mut removed: Vec<Ipv4Net> = Vec::new();
        for cidr in &spec.remove {
            let net = parse_cidr(cidr, "Cidr")?;
            if removed.contains(&net) {
                return Err(ApiError::invalid_value(format!(
                    "The request contains the CIDR '{net}' more than once."
                )));
            }
            let Some(pos) = entries.iter().position(|e| e.cidr == net) else {
                return Err(ApiError::new(
                    "InvalidPrefixListModification",
                    format!("The prefix list entry '{net}' does not exist in {id}."),
                ));
            };
            entries.remove(pos);
            removed.push(net);
        }
        for e in parse_entries(&spec.add)? {
            if entries.iter().any(|x| x.cidr == e.cidr) {
                return Err(ApiError::new(
                    "InvalidPrefixListModification",
                    format!("The prefix list entry '{}' already exists in {id}.", e.cidr),
                ));
            }
            entries.push(e);
        }
        if entries.len() > list.max_entries as usize {
            return Err(too_many(list.max_entries));
        }
        let old = std::mem::replace(&mut list.entries, entries);
        list.history.push((list.version, old));
        list.version += 1;
    }
    if let Some(max) = spec.max_entries {
        let max = check_max_entries(max)?;
        if (list.entries.len() as u64) > u64::from(max) {
            return Err(ApiError::invalid_value(format!(
                "The prefix list has {} entries, more than the new maximum of {max}.",
                list.entries.len()
            )));
        }
        list.max_entries = max;
        check_references_fit(&txn.state, &list)?;
    }
    list.state = "modify-complete".into();
    txn.put(list.clone());
    Ok(list)
}

/// Refuses a new size that would take a referencing security group or route table over its
/// limit (AWS fails the modification the same way).
fn check_references_fit(state: &State, list: &PrefixList) -> Result<(), ApiError> {
    let mut with = state.clone();
    with.prefix_lists
        .insert(list.id.clone(), std::sync::Arc::new(list.clone()));
    for (kind, id) in associations(state, &list.id) {
        let over = match kind {
            Association::SecurityGroup => state.security_groups.get(&id).is_some_and(|g| {
                [false, true].iter().any(|&egress| {
                    rule_cost(&with, g.rules_of(egress)) > state.quotas.rules_per_group
                })
            }),
            Association::RouteTable => state
                .route_tables
                .get(&id)
                .is_some_and(|t| route_cost(&with, &t.routes) > MAX_ROUTES_PER_TABLE),
        };
        if over {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "The prefix list {} cannot grow to {} entries: {id} references it and would exceed its limit.",
                    list.id, list.max_entries
                ),
            ));
        }
    }
    Ok(())
}

/// `DeleteManagedPrefixList`: refused while a security group rule or a route references it.
pub fn delete(txn: &mut Txn, id: &str) -> Result<PrefixList, ApiError> {
    let mut list = (**get(&txn.state, id)?).clone();
    if !associations(&txn.state, id).is_empty() {
        return Err(ApiError::has_dependencies("prefixList", id));
    }
    txn.delete::<PrefixList>(id);
    list.state = "delete-complete".into();
    Ok(list)
}

/// Edits the tags of list `id` (for CreateTags/DeleteTags).
pub fn edit_tags(
    txn: &mut Txn,
    id: &str,
    edit: &mut dyn FnMut(&mut Tags) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let mut list = (**get(&txn.state, id)?).clone();
    edit(&mut list.tags)?;
    txn.put(list);
    Ok(())
}

/// What references a prefix list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Association {
    /// A rule of this security group (`sg-`).
    SecurityGroup,
    /// A route of this route table (`rtb-`).
    RouteTable,
}

/// The security groups and route tables that reference list `id`, in id order.
pub fn associations(state: &State, id: &str) -> Vec<(Association, String)> {
    let peer = Peer::PrefixList(id.to_string());
    let mut out: Vec<(Association, String)> = state
        .security_groups
        .values()
        .filter(|g| g.rules.iter().any(|r| r.spec.peer == peer))
        .map(|g| (Association::SecurityGroup, g.id.clone()))
        .collect();
    out.extend(
        state
            .route_tables
            .values()
            .filter(|t| {
                t.routes
                    .iter()
                    .any(|r| r.destination == Destination::PrefixList(id.to_string()))
            })
            .map(|t| (Association::RouteTable, t.id.clone())),
    );
    out
}

/// What rules cost against the per-direction limit: one each, a prefix list reference its
/// list's `MaxEntries` (AWS's rule).
pub fn rule_cost<'a>(
    state: &State,
    rules: impl IntoIterator<Item = &'a super::security_group::SgRule>,
) -> usize {
    rules
        .into_iter()
        .map(|r| match &r.spec.peer {
            Peer::PrefixList(id) => state
                .prefix_lists
                .get(id)
                .map_or(1, |p| p.max_entries as usize),
            _ => 1,
        })
        .sum()
}

/// What routes cost against the per-table limit: one each, a prefix list route its list's
/// `MaxEntries`.
pub fn route_cost(state: &State, routes: &[super::route_table::Route]) -> usize {
    routes
        .iter()
        .map(|r| match &r.destination {
            Destination::PrefixList(id) => state
                .prefix_lists
                .get(id)
                .map_or(1, |p| p.max_entries as usize),
            Destination::Cidr(_) => 1,
        })
        .sum()
}

impl Filterable for PrefixList {
    const FILTERS: &'static [&'static str] = &["owner-id", "prefix-list-id", "prefix-list-name"];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        match name {
            "owner-id" => vec![super::OWNER_ID.into()],
            "prefix-list-id" => vec![self.id.clone()],
            "prefix-list-name" => vec![self.name.clone()],
            _ => Vec::new(),
        }
    }

    fn tag_map(&self) -> Tags {
        self.tags.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, max: i64, entries: &[&str]) -> CreateSpec {
        CreateSpec {
            name: name.into(),
            max_entries: max,
            address_family: "IPv4".into(),
            entries: entries.iter().map(|c| (c.to_string(), None)).collect(),
            ..Default::default()
        }
    }

    fn code<T: std::fmt::Debug>(r: Result<T, ApiError>) -> String {
        r.unwrap_err().code
    }

    #[test]
    fn create_modify_versions_and_limits() {
        let mut txn = Txn::new(State::new(), 0);
        let pl = create(
            &mut txn,
            spec("corp", 3, &["10.1.0.0/16", "192.168.7.0/24"]),
        )
        .unwrap();
        assert!(pl.id.starts_with("pl-"));
        assert_eq!((pl.version, pl.state.as_str()), (1, "create-complete"));
        assert_eq!(
            code(create(&mut txn, spec("x", 1, &["1.0.0.0/8", "2.0.0.0/8"]))),
            "PrefixListMaxEntriesExceeded"
        );
        assert_eq!(
            code(create(&mut txn, spec("x", 0, &[]))),
            "InvalidParameterValue"
        );
        assert_eq!(
            code(create(&mut txn, spec("com.amazonaws.x", 1, &[]))),
            "InvalidParameterValue"
        );
        assert_eq!(
            code(create(&mut txn, spec("x", 2, &["1.0.0.0/8", "1.0.0.0/8"]))),
            "InvalidParameterValue"
        );
        let mut v6 = spec("x", 1, &[]);
        v6.address_family = "IPv6".into();
        assert_eq!(code(create(&mut txn, v6)), "InvalidParameterValue");

        let add = |cur: Option<i64>, add: &[&str], rm: &[&str]| ModifySpec {
            current_version: cur,
            add: add
                .iter()
                .map(|c| (c.to_string(), Some("d".into())))
                .collect(),
            remove: rm.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(
            code(modify(&mut txn, &pl.id, add(None, &["10.9.0.0/16"], &[]))),
            "MissingParameter"
        );
        assert_eq!(
            code(modify(
                &mut txn,
                &pl.id,
                add(Some(7), &["10.9.0.0/16"], &[])
            )),
            "PrefixListVersionMismatch"
        );
        let m = modify(
            &mut txn,
            &pl.id,
            add(Some(1), &["10.9.0.0/16"], &["192.168.7.0/24"]),
        )
        .unwrap();
        assert_eq!(m.version, 2);
        assert_eq!(
            m.cidrs().map(|c| c.to_string()).collect::<Vec<_>>(),
            ["10.1.0.0/16", "10.9.0.0/16"]
        );
        assert_eq!(m.entries_at(1).unwrap().len(), 2);
        assert_eq!(
            code(modify(
                &mut txn,
                &pl.id,
                add(Some(2), &["1.0.0.0/8", "2.0.0.0/8"], &[])
            )),
            "PrefixListMaxEntriesExceeded"
        );
        assert_eq!(
            code(modify(&mut txn, &pl.id, add(Some(2), &[], &["8.8.8.0/24"]))),
            "InvalidPrefixListModification"
        );
        let both = ModifySpec {
            current_version: Some(2),
            add: vec![("1.0.0.0/8".into(), None)],
            max_entries: Some(5),
            ..Default::default()
        };
        assert_eq!(
            code(modify(&mut txn, &pl.id, both)),
            "InvalidParameterCombination"
        );
        let shrink = ModifySpec {
            max_entries: Some(1),
            ..Default::default()
        };
        assert_eq!(
            code(modify(&mut txn, &pl.id, shrink)),
            "InvalidParameterValue"
        );
        let rename = ModifySpec {
            name: Some("corp2".into()),
            ..Default::default()
        };
        let r = modify(&mut txn, &pl.id, rename).unwrap();
        assert_eq!(
            (r.name.as_str(), r.version, r.state.as_str()),
            ("corp2", 2, "modify-complete")
        );
        assert_eq!(
            code(get(&txn.state, "pl-nothex")),
            "InvalidPrefixListID.Malformed"
        );
        assert_eq!(
            code(get(&txn.state, "pl-0123")),
            "InvalidPrefixListID.NotFound"
        );
        delete(&mut txn, &pl.id).unwrap();
        assert!(txn.state.prefix_lists.is_empty());
    }
}
