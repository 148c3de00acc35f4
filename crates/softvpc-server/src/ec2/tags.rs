//! CreateTags, DeleteTags.

use super::query::Params;
use super::xml::Xml;
use super::Ctx;
use crate::model::{self, ApiError};

pub fn create_tags(ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<(), ApiError> {
    let ids = p.list("ResourceId");
    let tags = p.tags("Tag")?;
    if tags.is_empty() {
        return Err(ApiError::missing("Tag"));
    }
    ctx.mutate(|t| model::tags::create_tags(t, &ids, &tags))?;
    x.elem("return", "true");
    Ok(())
}

pub fn delete_tags(ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<(), ApiError> {
    let ids = p.list("ResourceId");
    let tags = p
        .members("Tag")
        .into_iter()
        .map(|t| {
            let key = t.get("Key").ok_or_else(|| ApiError::missing("Tag.N.Key"))?;
            Ok((key.to_string(), t.get("Value").map(str::to_string)))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    ctx.mutate(|t| model::tags::delete_tags(t, &ids, &tags))?;
    x.elem("return", "true");
    Ok(())
}
