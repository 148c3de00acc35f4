//! Network ACL actions: CreateNetworkAcl, DeleteNetworkAcl, DescribeNetworkAcls,
//! Create/Replace/DeleteNetworkAclEntry, ReplaceNetworkAclAssociation (model-driven handlers;
//! the rules live in [`softvpc_model::network_acl`]).

use softvpc_ec2_protocol::Value;

use super::input::{self, ValueExt};
use super::Ctx;
use softvpc_model::network_acl::{self as acl, EntryRequest, NetworkAcl};
use softvpc_model::{ApiError, OWNER_ID};

/// The `NetworkAcl` structure of one ACL.
pub fn acl_value(a: &NetworkAcl) -> Value {
    let entries: Vec<Value> = a
        .sorted_entries()
        .into_iter()
        .map(|e| {
            Value::new_struct()
                .with("RuleNumber", u32::from(e.rule_number))
                .with("Protocol", e.protocol.as_str())
                .with("RuleAction", e.action.as_str())
                .with("Egress", e.egress)
                .with("CidrBlock", e.cidr.to_string())
                .with_opt(
                    "PortRange",
                    e.port_range.map(|(f, t)| {
                        Value::new_struct()
                            .with("From", u32::from(f))
                            .with("To", u32::from(t))
                    }),
                )
                .with_opt(
                    "IcmpTypeCode",
                    e.icmp
                        .map(|(ty, code)| Value::new_struct().with("Type", ty).with("Code", code)),
                )
        })
        .collect();
    let associations: Vec<Value> = a
        .associations
        .iter()
        .map(|s| {
            Value::new_struct()
                .with("NetworkAclAssociationId", s.id.as_str())
                .with("NetworkAclId", a.id.as_str())
                .with("SubnetId", s.subnet_id.as_str())
        })
        .collect();
    Value::new_struct()
        .with("NetworkAclId", a.id.as_str())
        .with("VpcId", a.vpc_id.as_str())
        .with("IsDefault", a.is_default)
        .with("OwnerId", OWNER_ID)
        .with("Entries", entries)
        .with("Associations", associations)
        .with_opt("Tags", input::tags_opt(&a.tags))
}

pub fn create_network_acl(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let vpc_id = input::required(input, "VpcId")?;
    let tags = input::creation_tags(input, "network-acl")?;
    let token = input::optional(input, "ClientToken");
    let a = ctx.mutate(|t| acl::create_network_acl(t, vpc_id, tags.clone(), token))?;
    tracing::info!(acl = %a.id, vpc = %a.vpc_id, "network ACL created");
    Ok(Value::new_struct()
        .with("NetworkAcl", acl_value(&a))
        .with_opt("ClientToken", token))
}

pub fn delete_network_acl(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = input::required(input, "NetworkAclId")?;
    ctx.mutate(|t| acl::delete_network_acl(t, id))?;
    tracing::info!(acl = %id, "network ACL deleted");
    Ok(Value::new_struct())
}

pub fn describe_network_acls(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    let (items, next) = input::describe(
        &state,
        &state.network_acls,
        input,
        "NetworkAclIds",
        ("InvalidNetworkAclID.NotFound", "networkAcl"),
    )?;
    Ok(Value::new_struct()
        .with("NetworkAcls", input::list_of(&items, |a| acl_value(a)))
        .with_opt("NextToken", next))
}

fn entry_request(input: &Value) -> Result<EntryRequest, ApiError> {
    input::refuse_unsupported(input, &[("Ipv6CidrBlock", "there is no IPv6")])?;
    let rule_number = input
        .get_i64("RuleNumber")
        .ok_or_else(|| ApiError::missing("RuleNumber"))?;
    let egress = input
        .get_bool("Egress")
        .ok_or_else(|| ApiError::missing("Egress"))?;
    let port = input.get("PortRange");
    let icmp = input.get("IcmpTypeCode");
    Ok(EntryRequest {
        rule_number,
        egress,
        protocol: input::required(input, "Protocol")?.to_string(),
        action: input::required(input, "RuleAction")?.to_string(),
        cidr: input::optional(input, "CidrBlock").map(str::to_string),
        port_from: port.and_then(|p| p.get_i64("From")),
        port_to: port.and_then(|p| p.get_i64("To")),
        icmp_type: icmp.and_then(|i| i.get_i64("Type")),
        icmp_code: icmp.and_then(|i| i.get_i64("Code")),
    })
}

pub fn create_network_acl_entry(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = input::required(input, "NetworkAclId")?;
    let req = entry_request(input)?;
    ctx.mutate(|t| acl::create_entry(t, id, &req))?;
    Ok(Value::new_struct())
}

pub fn replace_network_acl_entry(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = input::required(input, "NetworkAclId")?;
    let req = entry_request(input)?;
    ctx.mutate(|t| acl::replace_entry(t, id, &req))?;
    Ok(Value::new_struct())
}

pub fn delete_network_acl_entry(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = input::required(input, "NetworkAclId")?;
    let rule_number = input
        .get_i64("RuleNumber")
        .ok_or_else(|| ApiError::missing("RuleNumber"))?;
    let egress = input
        .get_bool("Egress")
        .ok_or_else(|| ApiError::missing("Egress"))?;
    ctx.mutate(|t| acl::delete_entry(t, id, rule_number, egress))?;
    Ok(Value::new_struct())
}

pub fn replace_network_acl_association(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let association_id = input::required(input, "AssociationId")?;
    let acl_id = input::required(input, "NetworkAclId")?;
    let new_id = ctx.mutate(|t| acl::replace_association(t, association_id, acl_id))?;
    Ok(Value::new_struct().with("NewAssociationId", new_id))
}
