//! CreateTags.

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
