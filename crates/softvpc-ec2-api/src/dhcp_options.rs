//! Create/Delete/Associate/DescribeDhcpOptions: model-driven handlers over
//! [`softvpc_model::dhcp_options`].

use softvpc_ec2_protocol::Value;

use super::input::{self, required, ValueExt};
use super::Ctx;
use softvpc_model::dhcp_options::{self, DhcpOptions};
use softvpc_model::{ApiError, OWNER_ID};

/// The `DhcpOptions` output structure.
pub fn dopt_value(d: &DhcpOptions) -> Value {
    let configs: Vec<Value> = d
        .options
        .iter()
        .map(|(k, vs)| {
            let values: Vec<Value> = vs
                .iter()
                .map(|v| Value::new_struct().with("Value", v.as_str()))
                .collect();
            Value::new_struct()
                .with("Key", k.as_str())
                .with("Values", Value::List(values))
        })
        .collect();
    Value::new_struct()
        .with("DhcpConfigurations", Value::List(configs))
        .with("DhcpOptionsId", d.id.as_str())
        .with("OwnerId", OWNER_ID)
        .with_opt("Tags", input::tags_opt(&d.tags))
}

pub fn create_dhcp_options(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let tags = input::creation_tags(input, "dhcp-options")?;
    let options = input
        .get_list("DhcpConfigurations")
        .iter()
        .map(|c| {
            let key = c
                .get_str("Key")
                .ok_or_else(|| ApiError::missing("DhcpConfiguration.N.Key"))?;
            let values = c
                .get_strings("Values")
                .into_iter()
                .map(str::to_string)
                .collect();
            Ok((key.to_string(), values))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let d = ctx.mutate(|t| dhcp_options::create_dhcp_options(t, options.clone(), tags.clone()))?;
    tracing::info!(dhcp_options = %d.id, "DHCP options created");
    Ok(Value::new_struct().with("DhcpOptions", dopt_value(&d)))
}

pub fn delete_dhcp_options(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "DhcpOptionsId")?;
    ctx.mutate(|t| dhcp_options::delete_dhcp_options(t, id))?;
    tracing::info!(dhcp_options = %id, "DHCP options deleted");
    Ok(Value::new_struct())
}

pub fn associate_dhcp_options(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "DhcpOptionsId")?;
    let vpc = required(input, "VpcId")?;
    ctx.mutate(|t| dhcp_options::associate_dhcp_options(t, id, vpc))?;
    tracing::info!(dhcp_options = %id, vpc = %vpc, "DHCP options associated");
    Ok(Value::new_struct())
}

pub fn describe_dhcp_options(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    let (items, next) = input::describe(
        &state,
        &state.dhcp_options,
        input,
        "DhcpOptionsIds",
        ("InvalidDhcpOptionID.NotFound", "dhcpOption"),
    )?;
    Ok(Value::new_struct()
        .with("DhcpOptions", input::list_of(&items, |d| dopt_value(d)))
        .with_opt("NextToken", next))
}
