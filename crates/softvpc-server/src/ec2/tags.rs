//! CreateTags, DeleteTags.

use softvpc_ec2_protocol::Value;

use super::input::{id_list, tag_pairs};
use super::Ctx;
use crate::model::{self, ApiError};

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
