//! Create/Describe/Modify/DeleteLaunchTemplate and Create/Describe/DeleteLaunchTemplateVersions
//! over [`softvpc_model::launch_template`], and RunInstances' `LaunchTemplate`: the version's
//! data laid under the request (a member the request gives replaces the template's; tag
//! specifications merge per resource type, the request's value winning per key), then launched
//! as any RunInstances request.
//!
//! Launch template data holds only members RunInstances honours ([`HONOURED`]), checked by
//! RunInstances' own rules when the version is made (a member RunInstances refuses is refused
//! here by name); any other member is refused by name too, never kept unused.

use std::collections::BTreeMap;

use softvpc_ec2_protocol::Value;

use super::input::{self, timestamp, ValueExt};
use super::Ctx;
use softvpc_model::launch_template::{self, created_by, LaunchTemplate, VersionView};
use softvpc_model::ApiError;

/// The members of `RequestLaunchTemplateData` a launch can use: each is a RunInstances member
/// of the same name and structure.
pub const HONOURED: &[&str] = &[
    "ImageId",
    "InstanceType",
    "KeyName",
    "SecurityGroupIds",
    "SecurityGroups",
    "UserData",
    "TagSpecifications",
    "Placement",
    "NetworkInterfaces",
    "BlockDeviceMappings",
    "DisableApiTermination",
    "DisableApiStop",
    "InstanceInitiatedShutdownBehavior",
    "Monitoring",
];

/// Resource types a template's tag specifications may name (those a launch makes).
const TAGGED_AT_LAUNCH: &[&str] = &["instance", "volume", "network-interface"];

/// A tree as JSON (no timestamps occur in launch template data).
pub fn to_json(v: &Value) -> serde_json::Value {
    v.to_json()
}

/// JSON back into a tree.
pub fn from_json(j: &serde_json::Value) -> Value {
    match j {
        serde_json::Value::Object(m) => Value::Struct(
            m.iter()
                .map(|(k, v)| (k.clone(), from_json(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
        serde_json::Value::Array(a) => Value::List(a.iter().map(from_json).collect()),
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Double(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::Null => Value::new_struct(),
    }
}

/// Checks `LaunchTemplateData`: only [`HONOURED`] members, each as RunInstances would take
/// it; returns it as JSON to store.
fn check_data(data: &Value) -> Result<serde_json::Value, ApiError> {
    let Some(members) = data.as_struct() else {
        return Err(ApiError::missing("LaunchTemplateData"));
    };
    for name in members.keys() {
        if !HONOURED.contains(&name.as_str()) {
            return Err(ApiError::invalid_value(format!(
                "The parameter LaunchTemplateData.{name} is not supported: RunInstances does \
                 not honour it here."
            )));
        }
    }
    let specs = input::parse_tag_specs(data)?;
    softvpc_model::tags::check_specs(&specs, TAGGED_AT_LAUNCH)?;
    super::instance::check_launch_members(data)?;
    Ok(to_json(data))
}

/// AWS's `Warning` for template data it stores but could not launch with: a malformed
/// `ImageId` (the launch then fails with `InvalidAMIID.Malformed`, as on AWS).
fn validation_warning(data: &serde_json::Value) -> Option<Value> {
    let id = data.get("ImageId")?.as_str()?;
    let e = softvpc_model::instance::check_image_id(id).err()?;
    Some(Value::new_struct().with(
        "Errors",
        Value::List(vec![Value::new_struct()
                .with("Code", e.code.as_str())
                .with("Message", e.message.as_str())]),
    ))
}

fn template_value(t: &LaunchTemplate) -> Value {
    Value::new_struct()
        .with("LaunchTemplateId", t.id.as_str())
        .with("LaunchTemplateName", t.name.as_str())
        .with("CreateTime", timestamp(t.create_time))
        .with("CreatedBy", created_by())
        .with("DefaultVersionNumber", t.default_version as i64)
        .with("LatestVersionNumber", t.latest_version as i64)
        .with_opt(
            "Tags",
            (!t.tags.is_empty()).then(|| input::tag_set(&t.tags)),
        )
}

fn version_value(t: &LaunchTemplate, v: &launch_template::LaunchTemplateVersion) -> Value {
    Value::new_struct()
        .with("LaunchTemplateId", t.id.as_str())
        .with("LaunchTemplateName", t.name.as_str())
        .with("VersionNumber", v.number as i64)
        .with_opt("VersionDescription", v.description.clone())
        .with("CreateTime", timestamp(v.create_time))
        .with("CreatedBy", created_by())
        .with("DefaultVersion", v.number == t.default_version)
        .with("LaunchTemplateData", from_json(&v.data))
}

fn refuse_true(input: &Value, member: &str, why: &str) -> Result<(), ApiError> {
    if input.get_bool(member) == Some(true) {
        return Err(ApiError::invalid_value(format!(
            "The parameter {member} is not supported: {why}."
        )));
    }
    Ok(())
}

/// `CreateLaunchTemplate`.
pub fn create_launch_template(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let name = input::required(input, "LaunchTemplateName")?;
    if input.get("Operator").is_some() {
        return Err(ApiError::invalid_value(
            "The parameter Operator is not supported: there are no managed launch templates.",
        ));
    }
    let tags = input::creation_tags(input, "launch-template")?;
    let data = input
        .get("LaunchTemplateData")
        .ok_or_else(|| ApiError::missing("LaunchTemplateData"))?;
    let data = check_data(data)?;
    let description = input::optional(input, "VersionDescription");
    let token = input::optional(input, "ClientToken");
    let t = ctx.mutate(|t| {
        launch_template::create_launch_template(
            t,
            name,
            description,
            data.clone(),
            tags.clone(),
            token,
        )
    })?;
    tracing::info!(launch_template = %t.id, name = %t.name, "launch template created");
    Ok(Value::new_struct()
        .with("LaunchTemplate", template_value(&t))
        .with_opt("Warning", validation_warning(&data)))
}

/// The launch template `input` names by `LaunchTemplateId` or `LaunchTemplateName` (one of
/// them): what every per-template action looks up first.
fn named_template<'s>(
    state: &'s softvpc_model::State,
    input: &Value,
) -> Result<&'s std::sync::Arc<LaunchTemplate>, ApiError> {
    launch_template::find(
        state,
        input::optional(input, "LaunchTemplateId"),
        input::optional(input, "LaunchTemplateName"),
    )
}

/// `CreateLaunchTemplateVersion`: the data laid over `SourceVersion`'s, if given.
pub fn create_launch_template_version(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    refuse_true(
        input,
        "ResolveAlias",
        "image ids are not resolved from parameters",
    )?;
    let state = ctx.cp.state();
    let t = named_template(&state, input)?.clone();
    let given = input
        .get("LaunchTemplateData")
        .ok_or_else(|| ApiError::missing("LaunchTemplateData"))?;
    let data = match input::optional(input, "SourceVersion") {
        Some(src) => {
            let base = from_json(&t.resolve(Some(src))?.data);
            overlay(&base, given)
        }
        None => given.clone(),
    };
    let data = check_data(&data)?;
    let description = input::optional(input, "VersionDescription");
    let token = input::optional(input, "ClientToken");
    let (t, n) = ctx.mutate(|txn| {
        launch_template::create_version(txn, &t.id, description, data.clone(), token)
    })?;
    tracing::info!(launch_template = %t.id, version = n, "launch template version created");
    let v = t.version(n).expect("just made");
    Ok(Value::new_struct()
        .with("LaunchTemplateVersion", version_value(&t, v))
        .with_opt("Warning", validation_warning(&v.data)))
}

/// `ModifyLaunchTemplate`: `SetDefaultVersion` (a retry sets the same default again, so the
/// client token needs no record).
pub fn modify_launch_template(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    let t = named_template(&state, input)?.clone();
    let t = match input::optional(input, "DefaultVersion") {
        Some(v) => ctx.mutate(|txn| launch_template::set_default_version(txn, &t.id, v))?,
        None => (*t).clone(),
    };
    tracing::info!(launch_template = %t.id, default = t.default_version, "launch template modified");
    Ok(Value::new_struct().with("LaunchTemplate", template_value(&t)))
}

/// `DeleteLaunchTemplate`.
pub fn delete_launch_template(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    let id = named_template(&state, input)?.id.clone();
    let t = ctx.mutate(|txn| launch_template::delete_launch_template(txn, &id))?;
    tracing::info!(launch_template = %t.id, "launch template deleted");
    Ok(Value::new_struct().with("LaunchTemplate", template_value(&t)))
}

/// `DeleteLaunchTemplateVersions`: each version deleted or refused on its own.
pub fn delete_launch_template_versions(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    let id = named_template(&state, input)?.id.clone();
    let versions = input::id_list(input, "Versions");
    if versions.is_empty() {
        return Err(ApiError::missing("LaunchTemplateVersion"));
    }
    let (t, done, refused) =
        ctx.mutate(|txn| launch_template::delete_versions(txn, &id, &versions))?;
    let ok: Vec<Value> = done
        .iter()
        .map(|n| {
            Value::new_struct()
                .with("LaunchTemplateId", t.id.as_str())
                .with("LaunchTemplateName", t.name.as_str())
                .with("VersionNumber", *n as i64)
        })
        .collect();
    let bad: Vec<Value> = refused
        .iter()
        .map(|r| {
            Value::new_struct()
                .with("LaunchTemplateId", t.id.as_str())
                .with("LaunchTemplateName", t.name.as_str())
                .with("VersionNumber", r.version.parse::<i64>().unwrap_or(0))
                .with(
                    "ResponseError",
                    Value::new_struct()
                        .with("Code", r.code)
                        .with("Message", r.message.as_str()),
                )
        })
        .collect();
    Ok(Value::new_struct()
        .with_opt(
            "SuccessfullyDeletedLaunchTemplateVersions",
            (!ok.is_empty()).then_some(Value::List(ok)),
        )
        .with_opt(
            "UnsuccessfullyDeletedLaunchTemplateVersions",
            (!bad.is_empty()).then_some(Value::List(bad)),
        ))
}

/// `DescribeLaunchTemplates`: by ids or names, filters, pages of at most 200
/// (`IncludeManagedResources` has nothing to add: there are no managed templates).
pub fn describe_launch_templates(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    let names = input::id_list(input, "LaunchTemplateNames");
    if !names.is_empty() {
        let mut ids = Vec::new();
        for n in &names {
            let t = launch_template::by_name(&state, n).ok_or_else(|| {
                ApiError::new(
                    "InvalidLaunchTemplateName.NotFoundException",
                    "At least one of the launch templates specified in the request does not exist.",
                )
            })?;
            ids.push(t.id.clone());
        }
        let items = input::select(
            &state,
            &state.launch_templates,
            &ids,
            ("InvalidLaunchTemplateId.NotFound", "launch template"),
            &input::filters(input)?,
        )?;
        let (page, next) = input::paginate(items, input)?;
        return Ok(Value::new_struct()
            .with(
                "LaunchTemplates",
                input::list_of(&page, |t| template_value(t)),
            )
            .with_opt("NextToken", next));
    }
    let ids = input::id_list(input, "LaunchTemplateIds");
    if let Some(bad) = ids
        .iter()
        .find(|i| !state.launch_templates.contains_key(*i))
    {
        return Err(launch_template::id_not_found(bad));
    }
    let (items, next) = input::describe(
        &state,
        &state.launch_templates,
        input,
        "LaunchTemplateIds",
        ("InvalidLaunchTemplateId.NotFound", "launch template"),
    )?;
    Ok(Value::new_struct()
        .with(
            "LaunchTemplates",
            input::list_of(&items, |t| template_value(t)),
        )
        .with_opt("NextToken", next))
}

/// `DescribeLaunchTemplateVersions`: the versions of one template (all, the ones named, or a
/// `MinVersion`..`MaxVersion` range), or `$Latest`/`$Default` of every template.
pub fn describe_launch_template_versions(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    refuse_true(
        input,
        "ResolveAlias",
        "image ids are not resolved from parameters",
    )?;
    let state = ctx.cp.state();
    let versions = input::id_list(input, "Versions");
    let id = input::optional(input, "LaunchTemplateId");
    let name = input::optional(input, "LaunchTemplateName");
    let range = |key: &str| -> Result<Option<u64>, ApiError> {
        match input::optional(input, key) {
            None => Ok(None),
            Some(s) => s.parse::<u64>().map(Some).map_err(|_| {
                ApiError::invalid_value(format!("Value ({s}) for parameter {key} is invalid."))
            }),
        }
    };
    let (min, max) = (range("MinVersion")?, range("MaxVersion")?);
    let mut views: Vec<VersionView> = Vec::new();
    if id.is_none() && name.is_none() {
        if versions.is_empty() || versions.iter().any(|v| v != "$Latest" && v != "$Default") {
            return Err(ApiError::invalid_value(
                "To describe the launch template data for all your launch templates, for \
                 'Versions' specify '$Latest', '$Default', or both, and omit 'LaunchTemplateId', \
                 'LaunchTemplateName', and version numbers.",
            ));
        }
        for t in state.launch_templates.values() {
            for v in &versions {
                let ver = t.resolve(Some(v))?.clone();
                if !views
                    .iter()
                    .any(|x| x.template.id == t.id && x.version.number == ver.number)
                {
                    views.push(VersionView {
                        template: t.clone(),
                        version: ver,
                    });
                }
            }
        }
    } else {
        let t = launch_template::find(&state, id, name)?.clone();
        if versions.is_empty() {
            for v in &t.versions {
                if min.is_some_and(|m| v.number < m) || max.is_some_and(|m| v.number > m) {
                    continue;
                }
                views.push(VersionView {
                    template: t.clone(),
                    version: v.clone(),
                });
            }
        } else {
            for v in &versions {
                let ver = t.resolve(Some(v))?.clone();
                if !views.iter().any(|x| x.version.number == ver.number) {
                    views.push(VersionView {
                        template: t.clone(),
                        version: ver,
                    });
                }
            }
        }
    }
    let filters = input::filters(input)?;
    softvpc_model::filter::check::<VersionView>(&filters)?;
    let views: Vec<VersionView> = views
        .into_iter()
        .filter(|v| softvpc_model::filter::matches(v, &state, &filters))
        .collect();
    let (page, next) = input::paginate(views, input)?;
    Ok(Value::new_struct()
        .with(
            "LaunchTemplateVersions",
            input::list_of(&page, |v| version_value(&v.template, &v.version)),
        )
        .with_opt("NextToken", next))
}

/// `base` with `over`'s members laid on it: a member `over` gives replaces `base`'s, except
/// `TagSpecifications`, merged per resource type (`over`'s value wins per key).
pub fn overlay(base: &Value, over: &Value) -> Value {
    let mut out = base.as_struct().cloned().unwrap_or_default();
    for (k, v) in over.as_struct().into_iter().flatten() {
        if k == "TagSpecifications" {
            if let Some(b) = out.get("TagSpecifications") {
                out.insert(k.clone(), merge_tag_specs(b, v));
                continue;
            }
        }
        out.insert(k.clone(), v.clone());
    }
    Value::Struct(out)
}

fn merge_tag_specs(base: &Value, over: &Value) -> Value {
    let mut by_type: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for spec in base
        .as_list()
        .unwrap_or_default()
        .iter()
        .chain(over.as_list().unwrap_or_default())
    {
        let rtype = spec.get_str("ResourceType").unwrap_or("").to_string();
        let idx = match by_type.iter().position(|(t, _)| *t == rtype) {
            Some(i) => i,
            None => {
                by_type.push((rtype, BTreeMap::new()));
                by_type.len() - 1
            }
        };
        for t in spec.get_list("Tags") {
            if let Some(k) = t.get_str("Key") {
                by_type[idx]
                    .1
                    .insert(k.to_string(), t.get_str("Value").unwrap_or("").to_string());
            }
        }
    }
    Value::List(
        by_type
            .into_iter()
            .map(|(t, tags)| {
                Value::new_struct().with("ResourceType", t).with(
                    "Tags",
                    Value::List(
                        tags.into_iter()
                            .map(|(k, v)| Value::new_struct().with("Key", k).with("Value", v))
                            .collect(),
                    ),
                )
            })
            .collect(),
    )
}

/// RunInstances' `LaunchTemplate`: the request laid over the version it names, and that
/// template's id and version number (for AWS's `aws:ec2launchtemplate:` tags). Without one,
/// the request as it is.
pub fn launch_input(
    ctx: &Ctx<'_>,
    input: &Value,
) -> Result<(Value, Option<(String, u64)>), ApiError> {
    let Some(spec) = input.get("LaunchTemplate") else {
        return Ok((input.clone(), None));
    };
    let state = ctx.cp.state();
    let t = named_template(&state, spec)?;
    let v = t.resolve(input::optional(spec, "Version"))?;
    let mut request = input.as_struct().cloned().unwrap_or_default();
    request.remove("LaunchTemplate");
    Ok((
        overlay(&from_json(&v.data), &Value::Struct(request)),
        Some((t.id.clone(), v.number)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(rtype: &str, kv: &[(&str, &str)]) -> Value {
        Value::new_struct().with("ResourceType", rtype).with(
            "Tags",
            Value::List(
                kv.iter()
                    .map(|(k, v)| Value::new_struct().with("Key", *k).with("Value", *v))
                    .collect(),
            ),
        )
    }

    #[test]
    fn the_request_overrides_the_template() {
        let base = Value::new_struct()
            .with("ImageId", "ami-1")
            .with("InstanceType", "t3.micro")
            .with(
                "TagSpecifications",
                Value::List(vec![
                    tags("instance", &[("a", "1"), ("b", "2")]),
                    tags("volume", &[("v", "1")]),
                ]),
            );
        let over = Value::new_struct().with("InstanceType", "t3.large").with(
            "TagSpecifications",
            Value::List(vec![tags("instance", &[("b", "9"), ("c", "3")])]),
        );
        let m = overlay(&base, &over);
        assert_eq!(m.get_str("ImageId"), Some("ami-1"));
        assert_eq!(m.get_str("InstanceType"), Some("t3.large"));
        assert_eq!(
            m.get("TagSpecifications").unwrap(),
            &Value::List(vec![
                tags("instance", &[("a", "1"), ("b", "9"), ("c", "3")]),
                tags("volume", &[("v", "1")]),
            ])
        );
    }

    #[test]
    fn json_round_trips() {
        let v = Value::new_struct()
            .with("A", "x")
            .with("B", 3i64)
            .with("C", true)
            .with("D", Value::List(vec![Value::new_struct().with("E", "y")]));
        assert_eq!(from_json(&to_json(&v)), v);
    }
}
