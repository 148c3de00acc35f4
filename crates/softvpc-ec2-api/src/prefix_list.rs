//! Managed prefix lists: Create/Describe/Modify/DeleteManagedPrefixList,
//! GetManagedPrefixListEntries and GetManagedPrefixListAssociations (model-driven handlers; the
//! rules live in [`softvpc_model::prefix_list`]).

use softvpc_ec2_protocol::Value;

use super::input::{self, required, tag_set, ValueExt};
use super::Ctx;
use softvpc_model::prefix_list::{self as pl, CreateSpec, ModifySpec, PrefixList};
use softvpc_model::{ApiError, OWNER_ID};

/// The `ManagedPrefixList` output structure.
fn list_value(p: &PrefixList) -> Value {
    Value::new_struct()
        .with("PrefixListId", p.id.as_str())
        .with("AddressFamily", "IPv4")
        .with("State", p.state.as_str())
        .with("PrefixListArn", p.arn(softvpc_model::peering::REGION))
        .with("PrefixListName", p.name.as_str())
        .with("MaxEntries", i64::from(p.max_entries))
        .with("Version", i64::try_from(p.version).unwrap_or(i64::MAX))
        .with("Tags", tag_set(&p.tags))
        .with("OwnerId", OWNER_ID)
}

/// `Entries` / `AddEntries` as (CIDR, description).
fn entries(input: &Value, member: &str) -> Result<Vec<(String, Option<String>)>, ApiError> {
    input
        .get_list(member)
        .iter()
        .map(|e| {
            let cidr = input::optional(e, "Cidr")
                .ok_or_else(|| ApiError::missing(&format!("{member}.N.Cidr")))?;
            Ok((
                cidr.to_string(),
                e.get_str("Description").map(str::to_string),
            ))
        })
        .collect()
}

pub fn create_managed_prefix_list(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let spec = CreateSpec {
        name: required(input, "PrefixListName")?.to_string(),
        max_entries: input
            .get_i64("MaxEntries")
            .ok_or_else(|| ApiError::missing("MaxEntries"))?,
        address_family: required(input, "AddressFamily")?.to_string(),
        entries: entries(input, "Entries")?,
        tags: input::creation_tags(input, "prefix-list")?,
        client_token: input::optional(input, "ClientToken").map(str::to_string),
    };
    let p = ctx.mutate(|t| pl::create(t, spec.clone()))?;
    tracing::info!(prefix_list = %p.id, entries = p.entries.len(), "prefix list created");
    Ok(Value::new_struct().with("PrefixList", list_value(&p)))
}

pub fn describe_managed_prefix_lists(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    for id in input::id_list(input, "PrefixListIds") {
        pl::check_id(&id)?;
    }
    let (items, next) = input::describe(
        &state,
        &state.prefix_lists,
        input,
        "PrefixListIds",
        ("InvalidPrefixListID.NotFound", "prefix list"),
    )?;
    Ok(Value::new_struct()
        .with("PrefixLists", input::list_of(&items, |p| list_value(p)))
        .with_opt("NextToken", next))
}

pub fn modify_managed_prefix_list(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "PrefixListId")?;
    if input.get("IpamPrefixListResolverSyncEnabled").is_some() {
        return Err(ApiError::invalid_value(
            "IpamPrefixListResolverSyncEnabled is not supported: softvpc has no IPAM.",
        ));
    }
    let remove = input
        .get_list("RemoveEntries")
        .iter()
        .map(|e| {
            input::optional(e, "Cidr")
                .map(str::to_string)
                .ok_or_else(|| ApiError::missing("RemoveEntries.N.Cidr"))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let spec = ModifySpec {
        current_version: input.get_i64("CurrentVersion"),
        name: input::optional(input, "PrefixListName").map(str::to_string),
        add: entries(input, "AddEntries")?,
        remove,
        max_entries: input.get_i64("MaxEntries"),
    };
    let p = ctx.mutate(|t| pl::modify(t, id, spec.clone()))?;
    tracing::info!(prefix_list = %p.id, version = p.version, "prefix list modified");
    Ok(Value::new_struct().with("PrefixList", list_value(&p)))
}

pub fn delete_managed_prefix_list(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "PrefixListId")?;
    let p = ctx.mutate(|t| pl::delete(t, id))?;
    tracing::info!(prefix_list = %id, "prefix list deleted");
    Ok(Value::new_struct().with("PrefixList", list_value(&p)))
}

pub fn get_managed_prefix_list_entries(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "PrefixListId")?;
    let state = ctx.cp.state();
    let p = pl::get(&state, id)?;
    let version = match input.get_i64("TargetVersion") {
        None => p.version,
        Some(v) => u64::try_from(v).unwrap_or(0),
    };
    let entries = p.entries_at(version).ok_or_else(|| {
        ApiError::invalid_value(format!(
            "The version {version} does not exist for prefix list {id}."
        ))
    })?;
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| {
            Value::new_struct()
                .with("Cidr", e.cidr.to_string())
                .with_opt("Description", e.description.as_deref())
        })
        .collect();
    let (page, next) = input::paginate(rows, input)?;
    Ok(Value::new_struct()
        .with("Entries", Value::List(page))
        .with_opt("NextToken", next))
}

pub fn get_managed_prefix_list_associations(
    ctx: &Ctx<'_>,
    input: &Value,
) -> Result<Value, ApiError> {
    let id = required(input, "PrefixListId")?;
    let state = ctx.cp.state();
    pl::get(&state, id)?;
    let rows: Vec<Value> = pl::associations(&state, id)
        .into_iter()
        .map(|(_, rid)| {
            Value::new_struct()
                .with("ResourceId", rid)
                .with("ResourceOwner", OWNER_ID)
        })
        .collect();
    let (page, next) = input::paginate(rows, input)?;
    Ok(Value::new_struct()
        .with("PrefixListAssociations", Value::List(page))
        .with_opt("NextToken", next))
}
