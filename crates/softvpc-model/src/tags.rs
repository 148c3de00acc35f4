//! Tags: `TagSpecification`s at creation time and `CreateTags` on existing resources.

use super::{ApiError, Tags, Txn};

/// Most tags a resource may carry.
pub const MAX_TAGS: usize = 50;

/// One `TagSpecification.N`: the resource type it applies to and its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSpec {
    /// The resource type it applies to (`vpc`, `instance`, ...).
    pub resource_type: String,
    /// The tags, in order.
    pub tags: Vec<(String, String)>,
}

/// True for a key with the `aws:` prefix, reserved for the tags AWS itself puts on resources.
pub fn is_reserved(key: &str) -> bool {
    key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:"))
}

/// Refuses malformed tags: empty or over-long keys, over-long values, the reserved `aws:` prefix.
pub fn validate(tags: &[(String, String)]) -> Result<(), ApiError> {
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(ApiError::invalid_value(format!(
                "Tag key '{k}' must be between 1 and 128 characters long"
            )));
        }
        if v.chars().count() > 256 {
            return Err(ApiError::invalid_value(format!(
                "Tag value for key '{k}' must be at most 256 characters long"
            )));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(ApiError::invalid_value(
                "Tag keys starting with 'aws:' are reserved for internal use",
            ));
        }
    }
    Ok(())
}

/// Adds `tags` to `existing` (same key: replaced), refusing more than [`MAX_TAGS`].
pub fn merge(existing: &mut Tags, tags: &[(String, String)]) -> Result<(), ApiError> {
    for (k, v) in tags {
        existing.insert(k.clone(), v.clone());
    }
    // AWS's own `aws:` tags (e.g. a launch template's) do not count against the limit.
    if existing.keys().filter(|k| !is_reserved(k)).count() > MAX_TAGS {
        return Err(ApiError::new(
            "TagLimitExceeded",
            format!("The maximum number of tags per resource is {MAX_TAGS}"),
        ));
    }
    Ok(())
}

/// Checks the tag specifications of a create call: each names one of `allowed` resource types
/// and carries valid tags.
pub fn check_specs(specs: &[TagSpec], allowed: &[&str]) -> Result<(), ApiError> {
    for spec in specs {
        if !allowed.contains(&spec.resource_type.as_str()) {
            return Err(ApiError::invalid_value(format!(
                "'{}' is not a valid taggable resource type for this operation.",
                spec.resource_type
            )));
        }
        validate(&spec.tags)?;
    }
    Ok(())
}

/// The tags the specifications give to resources of `resource_type`.
pub fn tags_for(specs: &[TagSpec], resource_type: &str) -> Result<Tags, ApiError> {
    let mut tags = Tags::new();
    for spec in specs.iter().filter(|s| s.resource_type == resource_type) {
        merge(&mut tags, &spec.tags)?;
    }
    Ok(tags)
}

/// `CreateTags`: adds tags to every resource named; all must exist, else nothing changes.
pub fn create_tags(
    txn: &mut Txn,
    resource_ids: &[String],
    tags: &[(String, String)],
) -> Result<(), ApiError> {
    if resource_ids.is_empty() {
        return Err(ApiError::missing("ResourceId"));
    }
    validate(tags)?;
    for id in resource_ids {
        edit_tags(txn, id, &mut |t: &mut Tags| merge(t, tags))?;
    }
    Ok(())
}

/// `DeleteTags`: removes tags from every resource named (all must exist, else nothing changes).
/// A tag given with a value is removed only if its value matches; without one, whatever its
/// value. No tags at all: every tag of the resources is removed.
pub fn delete_tags(
    txn: &mut Txn,
    resource_ids: &[String],
    tags: &[(String, Option<String>)],
) -> Result<(), ApiError> {
    if resource_ids.is_empty() {
        return Err(ApiError::missing("ResourceId"));
    }
    if tags.iter().any(|(k, _)| is_reserved(k)) {
        return Err(ApiError::invalid_value(
            "Tag keys starting with 'aws:' are reserved for internal use",
        ));
    }
    let mut strip = |existing: &mut Tags| {
        if tags.is_empty() {
            // All of the user's tags; AWS's own stay.
            existing.retain(|k, _| is_reserved(k));
        }
        for (k, v) in tags {
            if v.as_ref().is_none_or(|v| existing.get(k) == Some(v)) {
                existing.remove(k);
            }
        }
        Ok(())
    };
    for id in resource_ids {
        edit_tags(txn, id, &mut strip)?;
    }
    Ok(())
}

/// Applies `edit` to the tags of the resource `id` names (found by its id prefix) and stores the
/// resource again; an unknown resource is refused with its type's NotFound code.
fn edit_tags(
    txn: &mut Txn,
    id: &str,
    edit: &mut dyn FnMut(&mut Tags) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let prefix = id.split('-').next().unwrap_or("");
    match prefix {
        "vpc" => {
            let mut v = super::vpc::get_vpc(&txn.state, id).map(|v| (**v).clone())?;
            edit(&mut v.tags)?;
            txn.put(v);
        }
        "subnet" => {
            let mut s = super::subnet::get_subnet(&txn.state, id).map(|v| (**v).clone())?;
            edit(&mut s.tags)?;
            txn.put(s);
        }
        "i" => {
            let mut i = txn
                .state
                .instances
                .get(id)
                .map(|i| (**i).clone())
                .ok_or_else(|| {
                    ApiError::not_found("InvalidInstanceID.NotFound", "instance", &[id])
                })?;
            edit(&mut i.tags)?;
            txn.put(i);
        }
        "eni" => {
            let mut e = txn
                .state
                .enis
                .get(id)
                .map(|e| (**e).clone())
                .ok_or_else(|| {
                    ApiError::not_found(
                        "InvalidNetworkInterfaceID.NotFound",
                        "networkInterface",
                        &[id],
                    )
                })?;
            edit(&mut e.tags)?;
            txn.put(e);
        }
        "sg" => {
            let mut g = txn
                .state
                .security_groups
                .get(id)
                .map(|g| (**g).clone())
                .ok_or_else(|| {
                    ApiError::new(
                        "InvalidGroup.NotFound",
                        format!("The security group '{id}' does not exist"),
                    )
                })?;
            edit(&mut g.tags)?;
            txn.put(g);
        }
        "acl" => {
            let mut a = txn
                .state
                .network_acls
                .get(id)
                .map(|a| (**a).clone())
                .ok_or_else(|| {
                    ApiError::not_found("InvalidNetworkAclID.NotFound", "networkAcl", &[id])
                })?;
            edit(&mut a.tags)?;
            txn.put(a);
        }
        "dopt" => super::dhcp_options::edit_tags(txn, id, edit)?,
        "fl" => super::flow_log::edit_tags(txn, id, edit)?,
        "pl" => super::prefix_list::edit_tags(txn, id, edit)?,
        "key" => super::key_pair::edit_tags(txn, id, edit)?,
        "lt" => super::launch_template::edit_tags(txn, id, edit)?,
        "vol" => super::volume::edit_tags(txn, id, edit)?,
        "sgr" => {
            let mut g = txn
                .state
                .security_groups
                .values()
                .find(|g| g.rules.iter().any(|r| r.id == id))
                .map(|g| (**g).clone())
                .ok_or_else(|| {
                    ApiError::new(
                        "InvalidSecurityGroupRuleId.NotFound",
                        format!("The security group rule ID '{id}' does not exist"),
                    )
                })?;
            if let Some(r) = g.rules.iter_mut().find(|r| r.id == id) {
                edit(&mut r.tags)?;
            }
            txn.put(g);
        }
        _ => match super::route_table::edit_tags(txn, id, edit) {
            Some(r) => r?,
            None => {
                return Err(ApiError::new(
                    "InvalidID",
                    format!("The ID '{id}' is not valid"),
                ))
            }
        },
    }
    Ok(())
}

/// One row of `DescribeTags`: a tag and the resource carrying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagItem {
    /// The tagged resource's id.
    pub resource_id: String,
    /// Its resource type (`vpc`, `instance`, ...).
    pub resource_type: &'static str,
    /// The tag key.
    pub key: String,
    /// The tag value.
    pub value: String,
}

impl super::filter::Filterable for TagItem {
    const FILTERS: &'static [&'static str] = &["resource-id", "resource-type", "key", "value"];

    fn field(&self, _state: &super::State, name: &str) -> Vec<String> {
        let v = match name {
            "resource-id" => self.resource_id.clone(),
            "resource-type" => self.resource_type.to_string(),
            "key" => self.key.clone(),
            "value" => self.value.clone(),
            _ => return Vec::new(),
        };
        vec![v]
    }

    fn tag_map(&self) -> Tags {
        // `tag:<key>` on DescribeTags matches this tag itself.
        Tags::from([(self.key.clone(), self.value.clone())])
    }
}

/// Every tag of every resource, ordered by resource type, resource id, then key (a stable
/// order so `NextToken` offsets stay meaningful between pages).
pub fn all_tags(state: &super::State) -> Vec<TagItem> {
    let mut out = Vec::new();
    let mut add = |rtype: &'static str, id: &str, tags: &Tags| {
        for (k, v) in tags {
            out.push(TagItem {
                resource_id: id.to_string(),
                resource_type: rtype,
                key: k.clone(),
                value: v.clone(),
            });
        }
    };
    for (id, r) in &state.vpcs {
        add("vpc", id, &r.tags);
    }
    for (id, r) in &state.subnets {
        add("subnet", id, &r.tags);
    }
    for (id, r) in &state.instances {
        add("instance", id, &r.tags);
    }
    for (id, r) in &state.enis {
        add("network-interface", id, &r.tags);
    }
    for (id, r) in &state.security_groups {
        add("security-group", id, &r.tags);
    }
    for (id, r) in &state.network_acls {
        add("network-acl", id, &r.tags);
    }
    for (id, r) in &state.route_tables {
        add("route-table", id, &r.tags);
    }
    for (id, r) in &state.internet_gateways {
        add("internet-gateway", id, &r.tags);
    }
    for (id, r) in &state.addresses {
        add("elastic-ip", id, &r.tags);
    }
    for (id, r) in &state.nat_gateways {
        add("natgateway", id, &r.tags);
    }
    for (id, r) in &state.peering_connections {
        add("vpc-peering-connection", id, &r.tags);
    }
    for (id, r) in &state.dhcp_options {
        add("dhcp-options", id, &r.tags);
    }
    for (id, r) in &state.flow_logs {
        add("vpc-flow-log", id, &r.tags);
    }
    for (id, r) in &state.prefix_lists {
        add("prefix-list", id, &r.tags);
    }
    for (id, r) in &state.key_pairs {
        add("key-pair", id, &r.tags);
    }
    for (id, r) in &state.launch_templates {
        add("launch-template", id, &r.tags);
    }
    for (id, r) in &state.volumes {
        add("volume", id, &r.tags);
    }
    for g in state.security_groups.values() {
        for r in &g.rules {
            add("security-group-rule", &r.id, &r.tags);
        }
    }
    out.sort_by(|a, b| {
        (a.resource_type, &a.resource_id, &a.key).cmp(&(b.resource_type, &b.resource_id, &b.key))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{vpc::create_vpc, State};

    #[test]
    fn create_and_delete_tags() {
        let mut txn = Txn::new(State::new(), 0);
        let v = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let ids = vec![v.id.clone()];
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        create_tags(&mut txn, &ids, &[kv("a", "1"), kv("b", "2"), kv("c", "3")]).unwrap();
        assert_eq!(txn.state.vpcs[&v.id].tags.len(), 3);
        // Value mismatch: kept; no value: removed whatever it is.
        delete_tags(
            &mut txn,
            &ids,
            &[("a".into(), Some("9".into())), ("b".into(), None)],
        )
        .unwrap();
        let t = &txn.state.vpcs[&v.id].tags;
        assert_eq!(t.keys().collect::<Vec<_>>(), ["a", "c"]);
        delete_tags(&mut txn, &ids, &[("a".into(), Some("1".into()))]).unwrap();
        assert_eq!(txn.state.vpcs[&v.id].tags.len(), 1);
        delete_tags(&mut txn, &ids, &[]).unwrap();
        assert!(txn.state.vpcs[&v.id].tags.is_empty());
        let many: Vec<_> = (0..51).map(|i| kv(&format!("k{i}"), "v")).collect();
        assert_eq!(
            create_tags(&mut txn, &ids, &many).unwrap_err().code,
            "TagLimitExceeded"
        );
        assert_eq!(
            delete_tags(&mut txn, &["vpc-nope".into()], &[])
                .unwrap_err()
                .code,
            "InvalidVpcID.NotFound"
        );
        assert_eq!(
            create_tags(&mut txn, &["foo-1".into()], &[kv("a", "b")])
                .unwrap_err()
                .code,
            "InvalidID"
        );
    }

    #[test]
    fn all_tags_lists_and_filters() {
        use crate::filter::{matches, Filter};
        let mut txn = Txn::new(State::new(), 0);
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        let a = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let b = create_vpc(&mut txn, "10.1.0.0/16", None, Tags::new()).unwrap();
        let sg = crate::internet_gateway::create_internet_gateway(&mut txn, Tags::new()).unwrap();
        create_tags(
            &mut txn,
            std::slice::from_ref(&a.id),
            &[kv("Name", "web"), kv("env", "prod")],
        )
        .unwrap();
        create_tags(&mut txn, std::slice::from_ref(&b.id), &[kv("Name", "db")]).unwrap();
        create_tags(&mut txn, std::slice::from_ref(&sg.id), &[kv("Name", "gw")]).unwrap();
        let all = all_tags(&txn.state);
        let mine: Vec<_> = all
            .iter()
            .filter(|t| [&a.id, &b.id, &sg.id].contains(&&t.resource_id))
            .collect();
        assert_eq!(mine.len(), 4);
        assert!(mine
            .iter()
            .any(|t| t.resource_type == "internet-gateway" && t.value == "gw"));
        let f = |n: &str, v: &str| Filter {
            name: n.into(),
            values: vec![v.into()],
        };
        let count = |fs: &[Filter]| {
            all.iter()
                .filter(|t| matches(*t, &txn.state, fs))
                .filter(|t| [&a.id, &b.id, &sg.id].contains(&&t.resource_id))
                .count()
        };
        assert_eq!(count(&[f("key", "Name")]), 3);
        assert_eq!(count(&[f("key", "Name"), f("resource-type", "vpc")]), 2);
        assert_eq!(count(&[f("value", "d?")]), 1);
        assert_eq!(count(&[f("resource-id", &a.id)]), 2);
        assert_eq!(count(&[f("tag:env", "prod")]), 1);
    }
}
