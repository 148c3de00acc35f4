//! VPC peering connections (Create/Accept/Reject/Delete/DescribeVpcPeeringConnections);
//! model-driven handlers over [`softvpc_model::peering`].

use softvpc_ec2_protocol::Value;

use super::input::{self, optional, required, ValueExt};
use super::Ctx;
use softvpc_model::peering::{self, PeeringConnection, PeeringSide, PeeringStatus, REGION};
use softvpc_model::{ApiError, OWNER_ID};

fn side_value(s: &PeeringSide) -> Value {
    let cidr = s.cidr.to_string();
    Value::new_struct()
        .with("CidrBlock", cidr.as_str())
        .with(
            "CidrBlockSet",
            Value::List(
                s.cidrs()
                    .map(|c| Value::new_struct().with("CidrBlock", c.to_string()))
                    .collect(),
            ),
        )
        .with("OwnerId", OWNER_ID)
        .with("VpcId", s.vpc_id.as_str())
        .with("Region", REGION)
}

/// The `VpcPeeringConnection` output structure, reporting `status` (Create answers
/// `initiating-request`, the state a request passes through before it is stored).
fn pcx_value(p: &PeeringConnection, status: &str, message: &str) -> Value {
    Value::new_struct()
        .with("AccepterVpcInfo", side_value(&p.accepter))
        .with("RequesterVpcInfo", side_value(&p.requester))
        .with(
            "Status",
            Value::new_struct()
                .with("Code", status)
                .with("Message", message),
        )
        .with_opt("Tags", input::tags_opt(&p.tags))
        .with_opt(
            "ExpirationTime",
            p.expiration_time
                .filter(|_| status == "pending-acceptance" || status == "initiating-request")
                .map(input::timestamp),
        )
        .with("VpcPeeringConnectionId", p.id.as_str())
}

/// The connection as it is now.
pub fn peering_value(p: &PeeringConnection) -> Value {
    pcx_value(p, p.status.as_str(), &p.status.message())
}

pub fn create_vpc_peering_connection(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let opt = |n: &str| optional(input, n).map(str::to_string);
    let req = peering::CreateRequest {
        vpc_id: required(input, "VpcId")?.to_string(),
        peer_vpc_id: required(input, "PeerVpcId")?.to_string(),
        peer_owner_id: opt("PeerOwnerId"),
        peer_region: opt("PeerRegion"),
        tags: input::creation_tags(input, "vpc-peering-connection")?,
    };
    let p = ctx.mutate(|t| peering::create_peering(t, &req))?;
    tracing::info!(peering = %p.id, requester = %p.requester.vpc_id,
        accepter = %p.accepter.vpc_id, status = p.status.as_str(), "VPC peering requested");
    let out = if p.status == PeeringStatus::Failed {
        peering_value(&p)
    } else {
        pcx_value(
            &p,
            "initiating-request",
            &format!("Initiating Request to {OWNER_ID}"),
        )
    };
    Ok(Value::new_struct().with("VpcPeeringConnection", out))
}

pub fn accept_vpc_peering_connection(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "VpcPeeringConnectionId")?;
    let p = ctx.mutate(|t| peering::accept_peering(t, id))?;
    tracing::info!(peering = %id, "VPC peering accepted");
    Ok(Value::new_struct().with("VpcPeeringConnection", peering_value(&p)))
}

pub fn reject_vpc_peering_connection(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "VpcPeeringConnectionId")?;
    ctx.mutate(|t| peering::reject_peering(t, id))?;
    tracing::info!(peering = %id, "VPC peering rejected");
    Ok(Value::new_struct().with("Return", true))
}

pub fn delete_vpc_peering_connection(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "VpcPeeringConnectionId")?;
    ctx.mutate(|t| peering::delete_peering(t, id))?;
    tracing::info!(peering = %id, "VPC peering deleted");
    Ok(Value::new_struct().with("Return", true))
}

pub fn describe_vpc_peering_connections(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    // Filters and answers see each connection at the clock's time (a request past its
    // ExpirationTime is `expired`).
    let now = softvpc_store::now_secs();
    let observed: softvpc_model::Map<PeeringConnection> = state
        .peering_connections
        .iter()
        .map(|(id, p)| (id.clone(), std::sync::Arc::new(p.observed(now))))
        .collect();
    let (items, next) = input::describe(
        &state,
        &observed,
        input,
        "VpcPeeringConnectionIds",
        (
            "InvalidVpcPeeringConnectionID.NotFound",
            "vpcPeeringConnection",
        ),
    )?;
    let list = items.iter().map(|p| peering_value(p)).collect();
    Ok(Value::new_struct()
        .with("VpcPeeringConnections", Value::List(list))
        .with_opt("NextToken", next))
}
