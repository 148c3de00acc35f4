//! Security group actions: CreateSecurityGroup, DeleteSecurityGroup, DescribeSecurityGroups,
//! Authorize/RevokeSecurityGroupIngress/Egress, DescribeSecurityGroupRules,
//! ModifySecurityGroupRules, UpdateSecurityGroupRuleDescriptionsIngress/Egress (model-driven
//! handlers; the rules live in [`softvpc_model::security_group`]).

use softvpc_ec2_protocol::Value;

use super::input::{self, ValueExt};
use super::Ctx;
use softvpc_model::security_group::{
    self as sg, Peer, Permission, RuleUpdate, SecurityGroup, SgRule,
};
use softvpc_model::{ApiError, State, Tags, Txn, OWNER_ID};

fn group_arn(id: &str) -> String {
    format!("arn:aws:ec2:us-east-1:{OWNER_ID}:security-group/{id}")
}

fn rule_arn(id: &str) -> String {
    format!("arn:aws:ec2:us-east-1:{OWNER_ID}:security-group-rule/{id}")
}

/// A referenced group of another VPC (a peered one) is shown with its VPC and, while it is
/// active, the peering connection, as AWS shows it (`VpcId`, `VpcPeeringConnectionId`,
/// `PeeringStatus`); a group of the same VPC (or one that is gone) with neither.
fn with_peer_vpc(v: Value, state: &State, own_vpc: Option<&str>, referenced: &str) -> Value {
    let Some(other) = state
        .security_groups
        .get(referenced)
        .map(|g| g.vpc_id.as_str())
        .filter(|v| Some(*v) != own_vpc)
    else {
        return v;
    };
    let v = v.with("VpcId", other);
    match own_vpc.and_then(|own| softvpc_model::peering::active_between(state, own, other)) {
        Some(p) => v
            .with("VpcPeeringConnectionId", p.id.as_str())
            .with("PeeringStatus", "active"),
        None => v,
    }
}

/// The `IpPermissions` of one direction: rules with the same protocol and ports are one
/// permission with several peers, in the order they were first added (as AWS groups them).
fn permissions(state: &State, g: &SecurityGroup, egress: bool) -> Value {
    let mut groups: Vec<(&SgRule, Vec<&SgRule>)> = Vec::new();
    for r in g.rules_of(egress) {
        match groups.iter_mut().find(|(first, _)| {
            first.spec.protocol == r.spec.protocol
                && first.spec.from_port == r.spec.from_port
                && first.spec.to_port == r.spec.to_port
        }) {
            Some((_, members)) => members.push(r),
            None => groups.push((r, vec![r])),
        }
    }
    Value::List(
        groups
            .into_iter()
            .map(|(first, members)| {
                let ranges: Vec<Value> = members
                    .iter()
                    .filter_map(|r| match &r.spec.peer {
                        Peer::Cidr(c) => Some(
                            Value::new_struct()
                                .with("CidrIp", c.to_string())
                                .with_opt("Description", r.spec.description.as_deref()),
                        ),
                        _ => None,
                    })
                    .collect();
                let pairs: Vec<Value> = members
                    .iter()
                    .filter_map(|r| match &r.spec.peer {
                        Peer::Group(id) => Some(with_peer_vpc(
                            Value::new_struct()
                                .with("GroupId", id.as_str())
                                .with("UserId", OWNER_ID)
                                .with_opt("Description", r.spec.description.as_deref()),
                            state,
                            Some(&g.vpc_id),
                            id,
                        )),
                        _ => None,
                    })
                    .collect();
                let lists: Vec<Value> = members
                    .iter()
                    .filter_map(|r| match &r.spec.peer {
                        Peer::PrefixList(id) => Some(
                            Value::new_struct()
                                .with("PrefixListId", id.as_str())
                                .with_opt("Description", r.spec.description.as_deref()),
                        ),
                        _ => None,
                    })
                    .collect();
                Value::new_struct()
                    .with("IpProtocol", first.spec.protocol.as_str())
                    .with_opt("FromPort", first.spec.from_port)
                    .with_opt("ToPort", first.spec.to_port)
                    .with("IpRanges", ranges)
                    .with("UserIdGroupPairs", pairs)
                    .with("Ipv6Ranges", Value::List(Vec::new()))
                    .with("PrefixListIds", lists)
            })
            .collect(),
    )
}

/// The `SecurityGroup` structure of one group.
pub fn group_value(state: &State, g: &SecurityGroup) -> Value {
    Value::new_struct()
        .with("GroupId", g.id.as_str())
        .with("GroupName", g.name.as_str())
        .with("Description", g.description.as_str())
        .with("VpcId", g.vpc_id.as_str())
        .with("OwnerId", OWNER_ID)
        .with("SecurityGroupArn", group_arn(&g.id))
        .with("IpPermissions", permissions(state, g, false))
        .with("IpPermissionsEgress", permissions(state, g, true))
        .with_opt("Tags", input::tags_opt(&g.tags))
}

/// The `SecurityGroupRule` structure of one rule.
pub fn rule_value(state: &State, r: &SgRule) -> Value {
    let s = &r.spec;
    let v = Value::new_struct()
        .with("SecurityGroupRuleId", r.id.as_str())
        .with("GroupId", r.group_id.as_str())
        .with("GroupOwnerId", OWNER_ID)
        .with("IsEgress", r.egress)
        .with("IpProtocol", s.protocol.as_str())
        .with("FromPort", s.from_port.unwrap_or(-1))
        .with("ToPort", s.to_port.unwrap_or(-1))
        .with_opt("Description", s.description.as_deref())
        .with_opt("Tags", input::tags_opt(&r.tags))
        .with("SecurityGroupRuleArn", rule_arn(&r.id));
    match &s.peer {
        Peer::Cidr(c) => v.with("CidrIpv4", c.to_string()),
        Peer::Group(g) => {
            let own_vpc = state
                .security_groups
                .get(&r.group_id)
                .map(|own| own.vpc_id.as_str());
            v.with(
                "ReferencedGroupInfo",
                with_peer_vpc(
                    Value::new_struct()
                        .with("GroupId", g.as_str())
                        .with("UserId", OWNER_ID),
                    state,
                    own_vpc,
                    g,
                ),
            )
        }
        Peer::PrefixList(p) => v.with("PrefixListId", p.as_str()),
    }
}

/// The `RevokedSecurityGroupRule` structure of one rule.
fn revoked_value(r: &SgRule) -> Value {
    let s = &r.spec;
    let v = Value::new_struct()
        .with("SecurityGroupRuleId", r.id.as_str())
        .with("GroupId", r.group_id.as_str())
        .with("IsEgress", r.egress)
        .with("IpProtocol", s.protocol.as_str())
        .with("FromPort", s.from_port.unwrap_or(-1))
        .with("ToPort", s.to_port.unwrap_or(-1))
        .with_opt("Description", s.description.as_deref());
    match &s.peer {
        Peer::Cidr(c) => v.with("CidrIpv4", c.to_string()),
        Peer::Group(g) => v.with("ReferencedGroupId", g.as_str()),
        Peer::PrefixList(p) => v.with("PrefixListId", p.as_str()),
    }
}

pub fn create_security_group(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let name = input::required(input, "GroupName")?;
    let description = input.get_str("Description").unwrap_or("");
    if description.is_empty() {
        return Err(ApiError::missing("GroupDescription"));
    }
    let tags = input::creation_tags(input, "security-group")?;
    let vpc_id = input::optional(input, "VpcId");
    let g =
        ctx.mutate(|t| sg::create_security_group(t, name, description, vpc_id, tags.clone()))?;
    tracing::info!(group = %g.id, vpc = %g.vpc_id, name = %g.name, "security group created");
    Ok(Value::new_struct()
        .with("GroupId", g.id.as_str())
        .with("SecurityGroupArn", group_arn(&g.id))
        .with_opt("Tags", input::tags_opt(&g.tags)))
}

pub fn delete_security_group(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = input::optional(input, "GroupId");
    let name = input::optional(input, "GroupName");
    let deleted = ctx.mutate(|t| {
        let g = sg::resolve(&t.state, id, name)?;
        sg::delete_security_group(t, &g.id)?;
        Ok(g.id.clone())
    })?;
    tracing::info!(group = %deleted, "security group deleted");
    Ok(Value::new_struct()
        .with("Return", true)
        .with("GroupId", deleted))
}

pub fn describe_security_groups(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    let ids = input::id_list(input, "GroupIds");
    for id in &ids {
        sg::check_id(id)?;
    }
    // AWS names a missing group without the word "ID": "The security group 'sg-1' does not exist".
    if let Some(missing) = ids.iter().find(|i| !state.security_groups.contains_key(*i)) {
        return Err(ApiError::new(
            "InvalidGroup.NotFound",
            format!("The security group '{missing}' does not exist"),
        ));
    }
    let names = input::id_list(input, "GroupNames");
    for n in &names {
        if !state.security_groups.values().any(|g| &g.name == n) {
            return Err(ApiError::new(
                "InvalidGroup.NotFound",
                format!("The security group '{n}' does not exist"),
            ));
        }
    }
    let items = input::select(
        &state,
        &state.security_groups,
        &ids,
        ("InvalidGroup.NotFound", "security group"),
        &input::filters(input)?,
    )?;
    let items: Vec<_> = items
        .into_iter()
        .filter(|g| names.is_empty() || names.contains(&g.name))
        .collect();
    let (items, next) = input::paginate_sorted(items, input, !ids.is_empty(), |g| g.id.clone())?;
    Ok(Value::new_struct()
        .with(
            "SecurityGroups",
            input::list_of(&items, |g| group_value(&state, g)),
        )
        .with_opt("NextToken", next))
}

/// `(CidrIp, Description)` pairs of a permission's `IpRanges`.
fn ip_ranges(p: &Value) -> Result<Vec<(String, Option<String>)>, ApiError> {
    p.get_list("IpRanges")
        .iter()
        .map(|r| {
            let cidr = input::optional(r, "CidrIp")
                .ok_or_else(|| ApiError::missing("IpPermissions.N.IpRanges.M.CidrIp"))?;
            Ok((
                cidr.to_string(),
                r.get_str("Description").map(str::to_string),
            ))
        })
        .collect()
}

/// The permissions of an Authorize/Revoke request: `IpPermissions`, or the older flat form
/// (`IpProtocol`, `FromPort`, `ToPort`, `CidrIp`, `SourceSecurityGroupName`). Group peers given
/// by name are resolved among the groups of `vpc_id`.
/// A pair's `UserId`, `VpcId`, `VpcPeeringConnectionId` and `PeeringStatus` only describe the
/// referenced group here (one account, one region; a describe answer sent back, as tools do
/// when they revoke, carries them): accepted when they say what is so, refused by name when
/// not, never ignored. A group that does not exist is left to the rule's own check.
fn check_pair(state: &State, vpc_id: &str, group_id: &str, pair: &Value) -> Result<(), ApiError> {
    let Some(group_vpc) = state
        .security_groups
        .get(group_id)
        .map(|g| g.vpc_id.as_str())
    else {
        return Ok(());
    };
    let peering = (group_vpc != vpc_id)
        .then(|| softvpc_model::peering::active_between(state, vpc_id, group_vpc))
        .flatten();
    let refuse = |member: &str, value: &str, is: &str| {
        Err(ApiError::invalid_value(format!(
            "Invalid value '{value}' for UserIdGroupPairs.{member}: {is}"
        )))
    };
    if let Some(u) = input::optional(pair, "UserId").filter(|u| *u != OWNER_ID) {
        return refuse("UserId", u, &format!("the only account is {OWNER_ID}"));
    }
    if let Some(v) = input::optional(pair, "VpcId").filter(|v| *v != group_vpc) {
        return refuse("VpcId", v, &format!("{group_id} is in {group_vpc}"));
    }
    if let Some(p) = input::optional(pair, "VpcPeeringConnectionId")
        .filter(|p| peering.is_none_or(|c| c.id != *p))
    {
        return refuse(
            "VpcPeeringConnectionId",
            p,
            &format!("{group_id} is not reached through that active peering connection"),
        );
    }
    if let Some(st) =
        input::optional(pair, "PeeringStatus").filter(|st| peering.is_none() || *st != "active")
    {
        return refuse(
            "PeeringStatus",
            st,
            "it can only be active, for a group of an actively peered VPC",
        );
    }
    Ok(())
}

fn read_permissions(
    state: &State,
    vpc_id: &str,
    input: &Value,
) -> Result<Vec<Permission>, ApiError> {
    let by_name = |name: &str| -> Result<String, ApiError> {
        state
            .security_groups
            .values()
            .find(|g| g.vpc_id == vpc_id && g.name == name)
            .map(|g| g.id.clone())
            .ok_or_else(|| {
                ApiError::new(
                    "InvalidGroup.NotFound",
                    format!("The security group '{name}' does not exist in VPC '{vpc_id}'"),
                )
            })
    };
    let mut out = Vec::new();
    for p in input.get_list("IpPermissions") {
        if !p.get_list("Ipv6Ranges").is_empty() {
            return Err(ApiError::invalid_value("IPv6 ranges are not supported."));
        }
        let mut prefix_lists = Vec::new();
        for pl in p.get_list("PrefixListIds") {
            let id = input::optional(pl, "PrefixListId")
                .ok_or_else(|| ApiError::missing("IpPermissions.N.PrefixListIds.M.PrefixListId"))?;
            prefix_lists.push((
                id.to_string(),
                pl.get_str("Description").map(str::to_string),
            ));
        }
        let protocol = input::optional(p, "IpProtocol")
            .ok_or_else(|| ApiError::missing("IpPermissions.N.IpProtocol"))?;
        let mut groups = Vec::new();
        for pair in p.get_list("UserIdGroupPairs") {
            let id = match (
                input::optional(pair, "GroupId"),
                input::optional(pair, "GroupName"),
            ) {
                (Some(id), _) => id.to_string(),
                (None, Some(name)) => by_name(name)?,
                (None, None) => return Err(ApiError::missing("IpPermissions.N.Groups.M.GroupId")),
            };
            check_pair(state, vpc_id, &id, pair)?;
            groups.push((id, pair.get_str("Description").map(str::to_string)));
        }
        out.push(Permission {
            protocol: protocol.to_string(),
            from_port: p.get_i64("FromPort"),
            to_port: p.get_i64("ToPort"),
            cidrs: ip_ranges(p)?,
            groups,
            prefix_lists,
        });
    }
    let flat_cidr = input::optional(input, "CidrIp");
    let flat_group = input::optional(input, "SourceSecurityGroupName");
    let flat_protocol = input::optional(input, "IpProtocol");
    if flat_cidr.is_some() || flat_group.is_some() || flat_protocol.is_some() {
        if !out.is_empty() {
            return Err(ApiError::new(
                "InvalidParameterCombination",
                "The parameter IpPermissions cannot be used with CidrIp, IpProtocol, FromPort, ToPort or SourceSecurityGroupName.",
            ));
        }
        let groups = match flat_group {
            Some(n) => vec![(by_name(n)?, None)],
            None => Vec::new(),
        };
        out.push(Permission {
            // Only a source group given: all protocols, as AWS does.
            protocol: flat_protocol.unwrap_or("-1").to_string(),
            from_port: input.get_i64("FromPort"),
            to_port: input.get_i64("ToPort"),
            cidrs: flat_cidr
                .map(|c| vec![(c.to_string(), None)])
                .unwrap_or_default(),
            groups,
            prefix_lists: Vec::new(),
        });
    }
    Ok(out)
}

fn target_group(t: &Txn, input: &Value) -> Result<std::sync::Arc<SecurityGroup>, ApiError> {
    sg::resolve(
        &t.state,
        input::optional(input, "GroupId"),
        input::optional(input, "GroupName"),
    )
}

fn authorize(ctx: &Ctx<'_>, input: &Value, egress: bool) -> Result<Value, ApiError> {
    let specs = input::tag_specs(input, &["security-group-rule"])?;
    let tags: Tags = softvpc_model::tags::tags_for(&specs, "security-group-rule")?;
    let added = ctx.mutate(|t| {
        let g = target_group(t, input)?;
        let perms = read_permissions(&t.state, &g.vpc_id, input)?;
        sg::authorize(t, &g.id, egress, &perms, tags.clone())
    })?;
    tracing::info!(
        rules = added.len(),
        egress,
        "security group rules authorized"
    );
    let state = ctx.cp.state();
    Ok(Value::new_struct().with("Return", true).with(
        "SecurityGroupRules",
        input::list_of(&added, |r| rule_value(&state, r)),
    ))
}

fn revoke(ctx: &Ctx<'_>, input: &Value, egress: bool) -> Result<Value, ApiError> {
    let rule_ids = input::id_list(input, "SecurityGroupRuleIds");
    let revoked = ctx.mutate(|t| {
        let g = target_group(t, input)?;
        let perms = read_permissions(&t.state, &g.vpc_id, input)?;
        sg::revoke(t, &g.id, egress, &perms, &rule_ids)
    })?;
    tracing::info!(
        rules = revoked.len(),
        egress,
        "security group rules revoked"
    );
    Ok(Value::new_struct().with("Return", true).with(
        "RevokedSecurityGroupRules",
        input::list_of(&revoked, revoked_value),
    ))
}

/// `UpdateSecurityGroupRuleDescriptionsIngress`/`Egress`: rules named by `IpPermissions` (the
/// Authorize form, each peer with its new description) or by `SecurityGroupRuleDescriptions`.
fn update_descriptions(ctx: &Ctx<'_>, input: &Value, egress: bool) -> Result<Value, ApiError> {
    let by_id = input
        .get_list("SecurityGroupRuleDescriptions")
        .iter()
        .map(|d| {
            let id = input::optional(d, "SecurityGroupRuleId").ok_or_else(|| {
                ApiError::missing("SecurityGroupRuleDescriptions.N.SecurityGroupRuleId")
            })?;
            Ok((id.to_string(), d.get_str("Description").map(str::to_string)))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    ctx.mutate(|t| {
        let g = target_group(t, input)?;
        let perms = read_permissions(&t.state, &g.vpc_id, input)?;
        sg::update_descriptions(t, &g.id, egress, &perms, &by_id)
    })?;
    tracing::info!(egress, "security group rule descriptions updated");
    Ok(Value::new_struct().with("Return", true))
}

pub fn update_descriptions_ingress(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    update_descriptions(ctx, input, false)
}

pub fn update_descriptions_egress(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    update_descriptions(ctx, input, true)
}

pub fn authorize_ingress(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    authorize(ctx, input, false)
}

pub fn authorize_egress(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    authorize(ctx, input, true)
}

pub fn revoke_ingress(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    revoke(ctx, input, false)
}

pub fn revoke_egress(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    revoke(ctx, input, true)
}

pub fn describe_security_group_rules(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    // AWS checks the ids a group-id filter names (a value with a wildcard is a pattern).
    for f in input::filters(input)?
        .iter()
        .filter(|f| f.name == "group-id")
    {
        if let Some(v) = f
            .values
            .iter()
            .find(|v| !v.contains(['*', '?']) && !v.starts_with("sg-"))
        {
            return Err(ApiError::new(
                "InvalidGroupId.Malformed",
                format!("Invalid id: \"{v}\" (expecting \"sg-...\")"),
            ));
        }
    }
    let state = ctx.cp.state();
    let all = sg::all_rules(&state);
    let (items, next) = input::describe(
        &state,
        &all,
        input,
        "SecurityGroupRuleIds",
        ("InvalidSecurityGroupRuleId.NotFound", "security group rule"),
    )?;
    Ok(Value::new_struct()
        .with(
            "SecurityGroupRules",
            input::list_of(&items, |r| rule_value(&state, r)),
        )
        .with_opt("NextToken", next))
}

pub fn modify_security_group_rules(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let group_id = input::required(input, "GroupId")?;
    let updates = input
        .get_list("SecurityGroupRules")
        .iter()
        .map(|u| {
            let rule_id = input::required(u, "SecurityGroupRuleId")?;
            let r = u
                .get("SecurityGroupRule")
                .ok_or_else(|| ApiError::missing("SecurityGroupRule.N.SecurityGroupRule"))?;
            let s = |n: &str| input::optional(r, n).map(str::to_string);
            Ok(RuleUpdate {
                rule_id: rule_id.to_string(),
                protocol: s("IpProtocol"),
                from_port: r.get_i64("FromPort"),
                to_port: r.get_i64("ToPort"),
                cidr: s("CidrIpv4"),
                referenced_group: s("ReferencedGroupId"),
                prefix_list: s("PrefixListId"),
                description: s("Description"),
                cidr_ipv6: s("CidrIpv6").is_some(),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    ctx.mutate(|t| sg::modify_rules(t, group_id, &updates))?;
    Ok(Value::new_struct().with("Return", true))
}
