//! CreateTags, DeleteTags, DescribeTags.

use std::sync::Arc;

use softvpc_ec2_protocol::Value;

use super::input::{id_list, tag_pairs};
use super::{Ctx, Listing};
use softvpc_model::{self as model, ApiError};

pub fn create_tags(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let ids = id_list(input, "Resources");
    let tags = tag_pairs(input.get_list("Tags"), "Tag")?;
    if tags.is_empty() {
        return Err(ApiError::missing("Tag"));
    }
    ctx.mutate(|t| model::tags::create_tags(t, &ids, &tags))?;
    Ok(Value::new_struct())
}

pub fn delete_tags(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let ids = id_list(input, "Resources");
    // A tag without a value deletes the key whatever its value.
    let tags = input
        .get_list("Tags")
        .iter()
        .map(|t| {
            let key = t
                .get_str("Key")
                .ok_or_else(|| ApiError::missing("Tag.N.Key"))?;
            Ok((key.to_string(), t.get_str("Value").map(str::to_string)))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    ctx.mutate(|t| model::tags::delete_tags(t, &ids, &tags))?;
    Ok(Value::new_struct())
}

/// `DescribeTags`: every tag of every resource, filtered by `resource-id`, `resource-type`,
/// `key`, `value` (and `tag:<key>`), paged by `MaxResults`/`NextToken`.
pub fn describe_tags(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    tag_listing(ctx, input).map(Listing::into_value)
}

/// DescribeTags as a [`Listing`] (streamed past 256 tags: up to 50 per resource).
pub fn tag_listing(ctx: &Ctx<'_>, input: &Value) -> Result<Listing, ApiError> {
    let filters = super::input::filters(input)?;
    softvpc_model::filter::check::<model::tags::TagItem>(&filters)?;
    let state = ctx.cp.state();
    let items: Vec<Arc<model::tags::TagItem>> = model::tags::all_tags(&state)
        .into_iter()
        .filter(|t| softvpc_model::filter::matches(t, &state, &filters))
        .map(Arc::new)
        .collect();
    // NUL sorts before every other character: the joined text sorts as the (type, id, key) tuple.
    let (page, next) = super::input::paginate_sorted(items, input, false, |t| {
        format!("{}\u{0}{}\u{0}{}", t.resource_type, t.resource_id, t.key)
    })?;
    let head = super::input::ValueExt::with_opt(Value::new_struct(), "NextToken", next);
    Ok(Listing::new(head, "Tags", page, |t| {
        Value::new_struct()
            .with("Key", t.key.as_str())
            .with("ResourceId", t.resource_id.as_str())
            .with("ResourceType", t.resource_type)
            .with("Value", t.value.as_str())
    }))
}
