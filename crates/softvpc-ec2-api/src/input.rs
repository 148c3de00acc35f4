//! Shared helpers for model-driven action handlers (see the module docs of [`super`]): reading
//! the decoded input tree (strings that must be present, id lists, `Filters`,
//! `TagSpecifications`, `Tags`), `MaxResults`/`NextToken` paging, Describe selection, and
//! building output pieces (`tagSet`, optional members).
//!
//! The decoder has already checked types, enums, ranges and the model's required members; what
//! is left here is what the model does not say (an empty string where a value is needed, a
//! filter without a name, a tag specification for the wrong resource type).

use std::sync::Arc;

use softvpc_ec2_protocol::Value;

use softvpc_model::filter::{self, Filter, Filterable};
use softvpc_model::tags::{check_specs, tags_for, TagSpec};
use softvpc_model::{ApiError, Map, State, Tags};

/// Member `name` as text, refused with `MissingParameter` when absent or empty (for members
/// the action needs even where the model does not mark them required, e.g. CreateVpc's
/// `CidrBlock`).
pub fn required<'v>(input: &'v Value, name: &str) -> Result<&'v str, ApiError> {
    match input.get_str(name) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ApiError::missing(name)),
    }
}

/// Member `name` as text when present and non-empty.
pub fn optional<'v>(input: &'v Value, name: &str) -> Option<&'v str> {
    input.get_str(name).filter(|s| !s.is_empty())
}

/// Member `name` as a boolean when present.
pub fn flag(input: &Value, name: &str) -> Option<bool> {
    input.get_bool(name)
}

/// A list of strings (e.g. `VpcIds`), owned, in request order; empty when absent.
pub fn id_list(input: &Value, name: &str) -> Vec<String> {
    input
        .get_strings(name)
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// The `Filters` member (`Filter.N.Name` / `Filter.N.Value.M` on the wire; a few operations
/// such as DescribeHosts call the member `Filter`).
pub fn filters(input: &Value) -> Result<Vec<Filter>, ApiError> {
    let list = match input.get("Filters") {
        Some(_) => input.get_list("Filters"),
        None => input.get_list("Filter"),
    };
    list.iter()
        .map(|f| {
            let name = optional(f, "Name").ok_or_else(|| ApiError::missing("Filter.N.Name"))?;
            Ok(Filter {
                name: name.to_string(),
                values: id_list(f, "Values"),
            })
        })
        .collect()
}

/// A list of `{Key, Value}` structures (member `name`, e.g. `Tags` of CreateTags); a missing
/// value is "".
pub fn tag_pairs(list: &[Value], wire_name: &str) -> Result<Vec<(String, String)>, ApiError> {
    list.iter()
        .map(|t| {
            let key = t
                .get_str("Key")
                .ok_or_else(|| ApiError::missing(&format!("{wire_name}.N.Key")))?;
            Ok((
                key.to_string(),
                t.get_str("Value").unwrap_or("").to_string(),
            ))
        })
        .collect()
}

/// The `TagSpecifications` member, each checked to name one of `allowed` resource types and to
/// carry valid tags.
pub fn tag_specs(input: &Value, allowed: &[&str]) -> Result<Vec<TagSpec>, ApiError> {
    let specs = parse_tag_specs(input)?;
    check_specs(&specs, allowed)?;
    Ok(specs)
}

/// The `TagSpecifications` member as given (resource types and tags not checked yet).
pub fn parse_tag_specs(input: &Value) -> Result<Vec<TagSpec>, ApiError> {
    input
        .get_list("TagSpecifications")
        .iter()
        .map(|s| {
            let resource_type = optional(s, "ResourceType")
                .ok_or_else(|| ApiError::missing("TagSpecification.N.ResourceType"))?;
            Ok(TagSpec {
                resource_type: resource_type.to_string(),
                tags: tag_pairs(s.get_list("Tags"), "TagSpecification.N.Tag")?,
            })
        })
        .collect()
}

/// The tags a create call gives its one new resource of `resource_type` (every
/// `TagSpecifications` entry must be for that type).
pub fn creation_tags(input: &Value, resource_type: &str) -> Result<Tags, ApiError> {
    tags_for(&tag_specs(input, &[resource_type])?, resource_type)
}

/// The `tagSet` output member: `[{Key, Value}]` in key order.
pub fn tag_set(tags: &Tags) -> Value {
    Value::List(
        tags.iter()
            .map(|(k, v)| {
                Value::new_struct()
                    .with("Key", k.as_str())
                    .with("Value", v.as_str())
            })
            .collect(),
    )
}

/// The `tagSet` of a resource as AWS answers it: absent when the resource has no tags (AWS
/// omits the element rather than sending an empty set).
pub fn tags_opt(tags: &Tags) -> Option<Value> {
    (!tags.is_empty()).then(|| tag_set(tags))
}

/// Refuses the first of `members` (name, why) that asks for something: a `true`, a non-zero
/// number, a non-empty string, list or structure. `false`, 0 and empty values ask for AWS's
/// default, which is what softvpc does, so they pass. The error names the member:
/// `InvalidParameterValue` "The parameter X is not supported: why."
pub fn refuse_unsupported(input: &Value, members: &[(&str, &str)]) -> Result<(), ApiError> {
    for (member, why) in members {
        let asks = match input.get(member) {
            None | Some(Value::Boolean(false)) | Some(Value::Integer(0)) => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::List(l)) => !l.is_empty(),
            Some(_) => true,
        };
        if asks {
            return Err(ApiError::invalid_value(format!(
                "The parameter {member} is not supported: {why}."
            )));
        }
    }
    Ok(())
}

/// Extra builders on output trees.
pub trait ValueExt {
    /// [`Value::with`] when `value` is `Some`, else unchanged.
    fn with_opt<V: Into<Value>>(self, name: &str, value: Option<V>) -> Value;
}

impl ValueExt for Value {
    fn with_opt<V: Into<Value>>(self, name: &str, value: Option<V>) -> Value {
        match value {
            Some(v) => self.with(name, v),
            None => self,
        }
    }
}

/// An instant in seconds since the epoch as an output timestamp.
pub fn timestamp(secs: u64) -> Value {
    Value::Timestamp(softvpc_ec2_protocol::Timestamp::from_unix(
        i64::try_from(secs).unwrap_or(i64::MAX),
    ))
}

/// A list of items rendered by `f` (for output list members).
pub fn list_of<T>(items: &[T], f: impl FnMut(&T) -> Value) -> Value {
    Value::List(items.iter().map(f).collect())
}

/// AWS's `MaxResults` bounds for one Describe action, and the id-list member it cannot be
/// combined with (wire prefix such as `InstanceId`, and AWS's name for it in the message).
struct PagingRule {
    action: &'static str,
    min: i64,
    max: i64,
    ids: Option<(&'static str, &'static str)>,
}

/// Every Describe action softvpc serves that takes `MaxResults` (bounds from AWS's API
/// reference; `docs/ec2-api-coverage.md` lists them).
const PAGING: &[PagingRule] = &[
    PagingRule {
        action: "DescribeVpcs",
        min: 5,
        max: 1000,
        ids: None,
    },
    PagingRule {
        action: "DescribeSubnets",
        min: 5,
        max: 1000,
        ids: None,
    },
    PagingRule {
        action: "DescribeInstances",
        min: 5,
        max: 1000,
        ids: Some(("InstanceId.", "instancesSet")),
    },
    PagingRule {
        action: "DescribeInstanceStatus",
        min: 5,
        max: 1000,
        ids: Some(("InstanceId.", "instancesSet")),
    },
    PagingRule {
        action: "DescribeNetworkInterfaces",
        min: 5,
        max: 1000,
        ids: Some(("NetworkInterfaceId.", "networkInterfaceIdSet")),
    },
    PagingRule {
        action: "DescribeSecurityGroups",
        min: 5,
        max: 1000,
        ids: None,
    },
    PagingRule {
        action: "DescribeSecurityGroupRules",
        min: 5,
        max: 1000,
        ids: None,
    },
    PagingRule {
        action: "DescribeNetworkAcls",
        min: 5,
        max: 1000,
        ids: None,
    },
    PagingRule {
        action: "DescribeRouteTables",
        min: 5,
        max: 100,
        ids: None,
    },
    PagingRule {
        action: "DescribeInternetGateways",
        min: 5,
        max: 1000,
        ids: None,
    },
    PagingRule {
        action: "DescribeNatGateways",
        min: 5,
        max: 1000,
        ids: None,
    },
    PagingRule {
        action: "DescribeVpcPeeringConnections",
        min: 5,
        max: 1000,
        ids: None,
    },
    PagingRule {
        action: "DescribeDhcpOptions",
        min: 5,
        max: 1000,
        ids: None,
    },
    PagingRule {
        action: "DescribeTags",
        min: 5,
        max: 1000,
        ids: None,
    },
    // AWS: "if MaxResults is given a value larger than 500, only 500 items are returned".
    PagingRule {
        action: "DescribeVolumes",
        min: 5,
        max: i64::MAX,
        ids: Some(("VolumeId.", "volumeIdSet")),
    },
    PagingRule {
        action: "DescribeManagedPrefixLists",
        min: 1,
        max: 100,
        ids: None,
    },
    PagingRule {
        action: "GetManagedPrefixListEntries",
        min: 1,
        max: 100,
        ids: None,
    },
    PagingRule {
        action: "GetManagedPrefixListAssociations",
        min: 5,
        max: 255,
        ids: None,
    },
    PagingRule {
        action: "DescribeLaunchTemplates",
        min: 1,
        max: 200,
        ids: None,
    },
    PagingRule {
        action: "DescribeLaunchTemplateVersions",
        min: 1,
        max: 200,
        ids: None,
    },
    PagingRule {
        action: "DescribeHosts",
        min: 5,
        max: 500,
        ids: Some(("HostId.", "hostSet")),
    },
];

/// Checks `MaxResults` of `action` against AWS's bounds, and that it is not combined with the
/// id list AWS forbids it with, on the raw request pairs: before the model decoder, whose
/// generic range message is not the one AWS gives for `MaxResults`. A value that is not a
/// number is left to the decoder.
pub fn check_paging(action: &str, pairs: &[(String, String)]) -> Result<(), ApiError> {
    let Some(rule) = PAGING.iter().find(|r| r.action == action) else {
        return Ok(());
    };
    // Every occurrence is checked (a repeated parameter is refused whichever copy is bad).
    let values: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "MaxResults")
        .map(|(_, v)| v.as_str())
        .collect();
    if values.is_empty() {
        return Ok(());
    }
    if let Some((prefix, aws_name)) = rule.ids {
        if pairs.iter().any(|(k, _)| k.starts_with(prefix)) {
            return Err(ApiError::new(
                "InvalidParameterCombination",
                format!("The parameter {aws_name} cannot be used with the parameter maxResults"),
            ));
        }
    }
    for raw in values {
        let Ok(n) = raw.trim().parse::<i64>() else {
            continue;
        };
        if n < rule.min {
            return Err(ApiError::invalid_value(format!(
                "Value ( {n} ) for parameter maxResults is invalid. Expecting a value greater than {}.",
                rule.min
            )));
        }
        if n > rule.max {
            return Err(ApiError::invalid_value(format!(
                "Value ( {n} ) for parameter maxResults is invalid. Expecting a value smaller than or equal to {}.",
                rule.max
            )));
        }
    }
    Ok(())
}

/// `MaxResults` / `NextToken` paging over an already filtered list. The token is the offset of
/// the next item; a token that is not one is `InvalidNextToken`. (`MaxResults` was checked against AWS's
/// bounds by [`check_paging`].)
pub fn paginate<T>(items: Vec<T>, input: &Value) -> Result<(Vec<T>, Option<String>), ApiError> {
    let start = match input.get_str("NextToken") {
        None | Some("") => 0usize,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= items.len())
            .ok_or_else(|| ApiError::new("InvalidNextToken", "The specified token is invalid."))?,
    };
    let Some(max) = input.get_i64("MaxResults") else {
        return Ok((items.into_iter().skip(start).collect(), None));
    };
    let max = usize::try_from(max).unwrap_or(0).max(1);
    let end = start.saturating_add(max).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((
        items.into_iter().skip(start).take(end - start).collect(),
        next,
    ))
}

/// Paging over a list sorted by `key` (ascending, one key per item): the token names the key of
/// the last item handed out ([`after_token`]) and the next page starts after it, so items
/// created or deleted between the calls are neither repeated nor skipped. When `by_offset` (the
/// list follows the request's own id order instead), [`paginate`] pages it.
pub fn paginate_sorted<T>(
    items: Vec<T>,
    input: &Value,
    by_offset: bool,
    key: impl Fn(&T) -> String,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    if by_offset {
        return paginate(items, input);
    }
    let start = match input.get_str("NextToken") {
        None | Some("") => 0,
        Some(t) => {
            let after = parse_after_token(t)?;
            items.partition_point(|i| key(i) <= after)
        }
    };
    let max = input
        .get_i64("MaxResults")
        .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(0).max(1));
    let mut page: Vec<T> = items.into_iter().skip(start).collect();
    let next = if page.len() > max {
        page.truncate(max);
        page.last().map(|last| after_token(&key(last)))
    } else {
        None
    };
    Ok((page, next))
}

/// The resources a Describe call returns: those named by `ids` (all must exist, else the
/// `not_found` code with noun, e.g. `("InvalidVpcID.NotFound", "vpc")`), or all of them, that
/// pass `filters` (unknown filter names refused first).
pub fn select<T: Filterable>(
    state: &State,
    all: &Map<T>,
    ids: &[String],
    not_found: (&str, &str),
    filters: &[Filter],
) -> Result<Vec<Arc<T>>, ApiError> {
    filter::check::<T>(filters)?;
    let items: Vec<Arc<T>> = if ids.is_empty() {
        all.values().cloned().collect()
    } else {
        let missing: Vec<&str> = ids
            .iter()
            .filter(|i| !all.contains_key(*i))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::not_found(not_found.0, not_found.1, &missing));
        }
        let mut seen = std::collections::HashSet::new();
        ids.iter()
            .filter(|i| seen.insert(i.as_str()))
            .filter_map(|i| all.get(i).cloned())
            .collect()
    };
    Ok(items
        .into_iter()
        .filter(|i| filter::matches(&**i, state, filters))
        .collect())
}

/// The whole Describe pattern: [`select`] by the id-list member `ids_member` and `Filters`,
/// then a page. Returns the page and the next token.
///
/// Without ids, the resources are walked in id order and the token names the last id handed
/// out ([`after_token`]), so a page starts right after it even when resources were created or
/// deleted between the calls (an offset would then skip or repeat one). With ids, the list is
/// fixed by the request and [`paginate`] pages it by offset.
pub fn describe<T: Filterable>(
    state: &State,
    all: &Map<T>,
    input: &Value,
    ids_member: &str,
    not_found: (&str, &str),
) -> Result<(Vec<Arc<T>>, Option<String>), ApiError> {
    let ids = id_list(input, ids_member);
    let filters = filters(input)?;
    if !ids.is_empty() {
        return paginate(select(state, all, &ids, not_found, &filters)?, input);
    }
    filter::check::<T>(&filters)?;
    let after = match input.get_str("NextToken") {
        None | Some("") => None,
        Some(t) => Some(parse_after_token(t)?),
    };
    let max = input
        .get_i64("MaxResults")
        .map(|m| usize::try_from(m).unwrap_or(0).max(1));
    let rest = match &after {
        Some(id) => all.range::<_, String>((
            std::ops::Bound::Excluded(id.clone()),
            std::ops::Bound::Unbounded,
        )),
        None => all.range::<_, String>(..),
    };
    let mut page: Vec<(&String, &Arc<T>)> = Vec::new();
    let mut more = false;
    for (id, item) in rest.filter(|(_, i)| filter::matches(&***i, state, &filters)) {
        if max.is_some_and(|m| page.len() == m) {
            more = true;
            break;
        }
        page.push((id, item));
    }
    let next = match page.last() {
        Some((id, _)) if more => Some(after_token(id)),
        _ => None,
    };
    Ok((page.into_iter().map(|(_, i)| i.clone()).collect(), next))
}

/// The `NextToken` that resumes a walk in id order after `id`: `a1.` and the id in hex (opaque
/// to clients, as AWS's tokens are).
pub fn after_token(id: &str) -> String {
    let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
    format!("a1.{hex}")
}

/// The id an [`after_token`] names; anything else is `InvalidNextToken`.
fn parse_after_token(token: &str) -> Result<String, ApiError> {
    let invalid = || ApiError::new("InvalidNextToken", "The specified token is invalid.");
    let hex = token.strip_prefix("a1.").ok_or_else(invalid)?;
    if hex.is_empty() || hex.len() % 2 != 0 || hex.len() > 512 {
        return Err(invalid());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

/// The one attribute change of a `Modify*Attribute` request: AWS refuses several
/// (`InvalidParameterCombination`) and none (`MissingParameter`).
pub fn one_change<T>(mut changes: Vec<T>) -> Result<T, ApiError> {
    if changes.len() > 1 {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "Fields for multiple attribute types specified",
        ));
    }
    changes.pop().ok_or_else(|| {
        ApiError::new(
            "MissingParameter",
            "The request must contain exactly one attribute to modify.",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use softvpc_ec2_protocol::decode;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_filters_ids_and_tag_specs() {
        let input = decode(
            "DescribeVpcs",
            &pairs(&[
                ("VpcId.2", "vpc-b"),
                ("VpcId.1", "vpc-a"),
                ("Filter.1.Name", "tag:Name"),
                ("Filter.1.Value.1", "a*"),
                ("Filter.1.Value.2", "b"),
                ("Filter.2.Name", "cidr"),
                ("Filter.2.Value.1", "10.0.0.0/16"),
                ("MaxResults", "5"),
            ]),
        )
        .unwrap();
        assert_eq!(id_list(&input, "VpcIds"), ["vpc-a", "vpc-b"]);
        let f = filters(&input).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name, "tag:Name");
        assert_eq!(f[0].values, ["a*", "b"]);
        assert_eq!(f[1].values, ["10.0.0.0/16"]);

        let input = decode(
            "CreateVpc",
            &pairs(&[
                ("CidrBlock", "10.0.0.0/16"),
                ("TagSpecification.1.ResourceType", "vpc"),
                ("TagSpecification.1.Tag.1.Key", "Name"),
                ("TagSpecification.1.Tag.1.Value", "x"),
                ("TagSpecification.1.Tag.2.Key", "empty"),
            ]),
        )
        .unwrap();
        let tags = creation_tags(&input, "vpc").unwrap();
        assert_eq!(tags.get("Name").map(String::as_str), Some("x"));
        assert_eq!(tags.get("empty").map(String::as_str), Some(""));
        assert_eq!(
            creation_tags(&input, "subnet").unwrap_err().code,
            "InvalidParameterValue"
        );
        assert_eq!(required(&input, "CidrBlock").unwrap(), "10.0.0.0/16");
        assert_eq!(
            required(&input, "InstanceTenancy").unwrap_err().code,
            "MissingParameter"
        );
        let set = tag_set(&tags);
        assert_eq!(set.as_list().map(<[Value]>::len), Some(2));
        assert_eq!(set.as_list().unwrap()[0].get_str("Key"), Some("Name"));
    }

    #[test]
    fn a_filter_without_a_name_is_refused() {
        let input = decode("DescribeVpcs", &pairs(&[("Filter.1.Value.1", "x")])).unwrap();
        assert_eq!(filters(&input).unwrap_err().code, "MissingParameter");
    }

    #[test]
    fn pages_by_offset_tokens() {
        let items: Vec<u32> = (0..12).collect();
        let input = Value::new_struct().with("MaxResults", 5i64);
        let (page, next) = paginate(items.clone(), &input).unwrap();
        assert_eq!(page, [0, 1, 2, 3, 4]);
        assert_eq!(next.as_deref(), Some("5"));
        let input = input.with("NextToken", "10");
        let (page, next) = paginate(items.clone(), &input).unwrap();
        assert_eq!(page, [10, 11]);
        assert_eq!(next, None);
        let bad = Value::new_struct().with("NextToken", "13");
        assert_eq!(
            paginate(items.clone(), &bad).unwrap_err().code,
            "InvalidNextToken"
        );
        let (all, next) = paginate(items, &Value::new_struct()).unwrap();
        assert_eq!((all.len(), next), (12, None));
    }

    #[test]
    fn after_tokens_round_trip_and_refuse_anything_else() {
        for id in ["vpc-0123456789abcdef0", "sgr-1", "a"] {
            assert_eq!(parse_after_token(&after_token(id)).unwrap(), id);
        }
        for bad in ["", "5", "garbage", "a1.", "a1.0", "a1.zz", "a1.ff", "b1.61"] {
            assert_eq!(
                parse_after_token(bad).unwrap_err().code,
                "InvalidNextToken",
                "{bad}"
            );
        }
    }

    #[test]
    fn sorted_paging_resumes_after_the_last_key() {
        let key = |n: &u32| format!("{n:03}");
        let items: Vec<u32> = (0..12).map(|n| n * 2).collect();
        let input = Value::new_struct().with("MaxResults", 5i64);
        let (page, next) = paginate_sorted(items.clone(), &input, false, key).unwrap();
        assert_eq!(page, [0, 2, 4, 6, 8]);
        let next = next.unwrap();
        // 8 was handed out; 9 appeared and 2 went away since: the next page starts at 9.
        let changed: Vec<u32> = [0, 4, 6, 8, 9, 10, 12].into();
        let input = Value::new_struct()
            .with("MaxResults", 5i64)
            .with("NextToken", next.as_str());
        let (page, next) = paginate_sorted(changed, &input, false, key).unwrap();
        assert_eq!((page, next), (vec![9, 10, 12], None));
        let bad = Value::new_struct().with("NextToken", "5");
        assert_eq!(
            paginate_sorted(items, &bad, false, key).unwrap_err().code,
            "InvalidNextToken"
        );
    }

    #[test]
    fn max_results_bounds_and_id_combinations() {
        let check = |action: &str, p: &[(&str, &str)]| check_paging(action, &pairs(p));
        let err = check("DescribeVpcs", &[("MaxResults", "4")]).unwrap_err();
        assert_eq!(err.code, "InvalidParameterValue");
        assert_eq!(
            err.message,
            "Value ( 4 ) for parameter maxResults is invalid. Expecting a value greater than 5."
        );
        assert!(check("DescribeVpcs", &[("MaxResults", "5")]).is_ok());
        assert!(check("DescribeVpcs", &[("MaxResults", "1000")]).is_ok());
        assert!(check("DescribeVpcs", &[("MaxResults", "1001")]).is_err());
        assert!(check("DescribeRouteTables", &[("MaxResults", "100")]).is_ok());
        let err = check("DescribeRouteTables", &[("MaxResults", "101")]).unwrap_err();
        assert!(err.message.ends_with("smaller than or equal to 100."));
        assert!(check("DescribeHosts", &[("MaxResults", "501")]).is_err());
        // With the instance ids: refused whatever the value.
        let err = check(
            "DescribeInstances",
            &[("InstanceId.1", "i-1"), ("MaxResults", "10")],
        )
        .unwrap_err();
        assert_eq!(err.code, "InvalidParameterCombination");
        // Ids alone, a non-number (left to the decoder), other actions: not this check's business.
        assert!(check("DescribeInstances", &[("InstanceId.1", "i-1")]).is_ok());
        assert!(check("DescribeVpcs", &[("MaxResults", "many")]).is_ok());
        assert!(check("DescribeAddresses", &[("MaxResults", "1")]).is_ok());
        assert!(check("DescribeVpcs", &[("VpcId.1", "vpc-1"), ("MaxResults", "5")]).is_ok());
        let repeated = [("MaxResults", "3"), ("MaxResults", "5")];
        assert_eq!(
            check("DescribeVpcs", &repeated).unwrap_err().code,
            "InvalidParameterValue"
        );
    }

    use proptest::prelude::*;

    proptest! {
        /// Arbitrary bytes through the form parser, the model decoder and the helpers: a
        /// refusal or a value, never a panic.
        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut data = b"Action=DescribeInstances&".to_vec();
            data.extend_from_slice(&input);
            if let Ok(pairs) = softvpc_ec2_protocol::parse_form(&data) {
                if let Ok((_, v)) = softvpc_ec2_protocol::decode_request(&pairs) {
                    let _ = filters(&v);
                    let _ = tag_specs(&v, &["instance"]);
                    let _ = paginate(vec![1, 2, 3], &v);
                    let _ = id_list(&v, "InstanceIds");
                }
            }
        }

        /// `Name.N` lists come back in index order whatever order they were sent in, and
        /// filters keep their values' order.
        #[test]
        fn lists_come_back_in_index_order(values in proptest::collection::vec("[a-z0-9-]{1,10}", 1..20)) {
            let mut p: Vec<(String, String)> = values.iter().enumerate().rev()
                .map(|(i, v)| (format!("InstanceId.{}", i + 1), v.clone())).collect();
            p.push(("Filter.1.Name".into(), "instance-id".into()));
            p.extend(values.iter().enumerate().rev()
                .map(|(i, v)| (format!("Filter.1.Value.{}", i + 1), v.clone())));
            let v = decode("DescribeInstances", &p).unwrap();
            prop_assert_eq!(&id_list(&v, "InstanceIds"), &values);
            prop_assert_eq!(&filters(&v).unwrap()[0].values, &values);
        }
    }
}
