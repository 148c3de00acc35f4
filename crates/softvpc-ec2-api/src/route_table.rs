//! Route tables: CreateRouteTable, DeleteRouteTable, DescribeRouteTables, CreateRoute,
//! ReplaceRoute, DeleteRoute, AssociateRouteTable, DisassociateRouteTable,
//! ReplaceRouteTableAssociation (model-driven handlers; the rules live in
//! [`softvpc_model::route_table`]).

use softvpc_ec2_protocol::Value;

use super::input::{self, required, ValueExt};
use super::Ctx;
use softvpc_model::route_table::{self as rt, Destination, RouteTable, Target, TargetSpec};
use softvpc_model::{ApiError, State, OWNER_ID};

/// The `RouteTable` output structure.
pub fn route_table_value(state: &State, r: &RouteTable) -> Value {
    let routes: Vec<Value> = r
        .routes
        .iter()
        .map(|route| {
            let (field, id) = rt::target_fields(&route.target);
            let dest = match &route.destination {
                Destination::Cidr(c) => ("DestinationCidrBlock", c.to_string()),
                Destination::PrefixList(p) => ("DestinationPrefixListId", p.clone()),
            };
            let mut v = Value::new_struct()
                .with(dest.0, dest.1)
                .with(field, id)
                .with("Origin", route.origin.as_str())
                .with("State", rt::route_state(state, &r.vpc_id, route));
            // A route to an instance's interface also names the instance, as AWS does.
            if let Target::NetworkInterface(eni) = &route.target {
                let instance = state
                    .enis
                    .get(eni)
                    .and_then(|e| e.attachment.as_ref())
                    .map(|a| a.instance_id.clone());
                if let Some(i) = instance {
                    v = v.with("InstanceId", i).with("InstanceOwnerId", OWNER_ID);
                }
            }
            v
        })
        .collect();
    let associations: Vec<Value> = r
        .associations
        .iter()
        .map(|a| {
            Value::new_struct()
                .with("Main", a.main)
                .with("RouteTableAssociationId", a.id.as_str())
                .with("RouteTableId", r.id.as_str())
                .with_opt("SubnetId", a.subnet_id.clone())
                .with("AssociationState", associated())
        })
        .collect();
    Value::new_struct()
        .with("Associations", Value::List(associations))
        .with("PropagatingVgws", Value::List(Vec::new()))
        .with("RouteTableId", r.id.as_str())
        .with("Routes", Value::List(routes))
        .with_opt("Tags", input::tags_opt(&r.tags))
        .with("VpcId", r.vpc_id.as_str())
        .with("OwnerId", OWNER_ID)
}

fn associated() -> Value {
    Value::new_struct().with("State", "associated")
}

fn target_spec(input: &Value) -> TargetSpec {
    let opt = |n: &str| input::optional(input, n).map(str::to_string);
    TargetSpec {
        gateway_id: opt("GatewayId"),
        nat_gateway_id: opt("NatGatewayId"),
        network_interface_id: opt("NetworkInterfaceId"),
        instance_id: opt("InstanceId"),
        vpc_peering_connection_id: opt("VpcPeeringConnectionId"),
    }
}

pub fn create_route_table(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let vpc_id = required(input, "VpcId")?;
    let tags = input::creation_tags(input, "route-table")?;
    let token = input::optional(input, "ClientToken");
    let rtb = ctx.mutate(|t| rt::create_route_table_with_token(t, vpc_id, tags.clone(), token))?;
    tracing::info!(route_table = %rtb.id, vpc = %vpc_id, "route table created");
    let state = ctx.cp.state();
    Ok(Value::new_struct()
        .with("RouteTable", route_table_value(&state, &rtb))
        .with_opt("ClientToken", token))
}

pub fn delete_route_table(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "RouteTableId")?;
    ctx.mutate(|t| rt::delete_route_table(t, id))?;
    tracing::info!(route_table = %id, "route table deleted");
    Ok(Value::new_struct())
}

pub fn describe_route_tables(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    let (items, next) = input::describe(
        &state,
        &state.route_tables,
        input,
        "RouteTableIds",
        ("InvalidRouteTableID.NotFound", "routeTable"),
    )?;
    let list = items.iter().map(|r| route_table_value(&state, r)).collect();
    Ok(Value::new_struct()
        .with("RouteTables", Value::List(list))
        .with_opt("NextToken", next))
}

/// The destination: `DestinationCidrBlock` or `DestinationPrefixListId` (a `pl-` id, which the
/// model tells from a CIDR), exactly one.
fn destination(input: &Value) -> Result<&str, ApiError> {
    input::refuse_unsupported(input, &[("DestinationIpv6CidrBlock", "there is no IPv6")])?;
    match (
        input::optional(input, "DestinationCidrBlock"),
        input::optional(input, "DestinationPrefixListId"),
    ) {
        (Some(c), None) if c.starts_with("pl-") => Err(ApiError::invalid_value(format!(
            "Value ({c}) for parameter destinationCidrBlock is invalid. This is not a valid CIDR block."
        ))),
        (Some(c), None) => Ok(c),
        (None, Some(p)) => {
            softvpc_model::prefix_list::check_id(p)?;
            Ok(p)
        }
        (None, None) => Err(ApiError::missing("DestinationCidrBlock")),
        (Some(_), Some(_)) => Err(ApiError::new(
            "InvalidParameterCombination",
            "The parameter destinationCidrBlock cannot be used with the parameter destinationPrefixListId",
        )),
    }
}

pub fn create_route(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "RouteTableId")?;
    let dest = destination(input)?;
    let spec = target_spec(input);
    ctx.mutate(|t| rt::create_route(t, id, dest, &spec))?;
    tracing::info!(route_table = %id, destination = %dest, "route created");
    Ok(Value::new_struct().with("Return", true))
}

pub fn replace_route(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "RouteTableId")?;
    let dest = destination(input)?;
    let mut spec = target_spec(input);
    if input.get_bool("LocalTarget") == Some(true) {
        spec.gateway_id = Some("local".into());
    }
    ctx.mutate(|t| rt::replace_route(t, id, dest, &spec))?;
    tracing::info!(route_table = %id, destination = %dest, "route replaced");
    Ok(Value::new_struct())
}

pub fn delete_route(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "RouteTableId")?;
    let dest = destination(input)?;
    ctx.mutate(|t| rt::delete_route(t, id, dest))?;
    tracing::info!(route_table = %id, destination = %dest, "route deleted");
    Ok(Value::new_struct())
}

pub fn associate_route_table(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "RouteTableId")?;
    input::refuse_unsupported(
        input,
        &[(
            "GatewayId",
            "gateway route table associations do not exist; give a SubnetId",
        )],
    )?;
    let subnet = required(input, "SubnetId")?;
    let assoc = ctx.mutate(|t| rt::associate_route_table(t, id, subnet))?;
    tracing::info!(route_table = %id, subnet = %subnet, association = %assoc, "route table associated");
    Ok(Value::new_struct()
        .with("AssociationId", assoc)
        .with("AssociationState", associated()))
}

pub fn disassociate_route_table(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "AssociationId")?;
    ctx.mutate(|t| rt::disassociate_route_table(t, id))?;
    tracing::info!(association = %id, "route table disassociated");
    Ok(Value::new_struct())
}

pub fn replace_route_table_association(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let assoc = required(input, "AssociationId")?;
    let id = required(input, "RouteTableId")?;
    let new = ctx.mutate(|t| rt::replace_route_table_association(t, assoc, id))?;
    tracing::info!(route_table = %id, old = %assoc, new = %new, "route table association replaced");
    Ok(Value::new_struct()
        .with("NewAssociationId", new)
        .with("AssociationState", associated()))
}
