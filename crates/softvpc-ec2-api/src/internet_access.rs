//! Internet access: internet gateways (Create/Delete/Describe/Attach/DetachInternetGateway),
//! Elastic IPs (Allocate/Release/Associate/DisassociateAddress, DescribeAddresses) and NAT
//! gateways (Create/Delete/DescribeNatGateways); model-driven handlers over
//! [`softvpc_model::internet_gateway`], [`softvpc_model::address`] and [`softvpc_model::nat_gateway`].

use softvpc_ec2_protocol::{Timestamp, Value};

use super::input::{self, optional, required, ValueExt};
use super::Ctx;
use softvpc_model::address::{self, Address, AssociateRequest};
use softvpc_model::filter::Filter;
use softvpc_model::internet_gateway::{self, InternetGateway};
use softvpc_model::nat_gateway::{self, NatGateway};
use softvpc_model::{ApiError, State, OWNER_ID};
use softvpc_store::now_secs;

// ----- internet gateways -----

/// The `InternetGateway` output structure.
pub fn igw_value(g: &InternetGateway) -> Value {
    let attachments: Vec<Value> = g
        .vpc_id
        .iter()
        .map(|v| {
            // AWS reports an internet gateway's attachment as `available`.
            Value::new_struct()
                .with("State", "available")
                .with("VpcId", v.as_str())
        })
        .collect();
    Value::new_struct()
        .with("Attachments", Value::List(attachments))
        .with("InternetGatewayId", g.id.as_str())
        .with("OwnerId", OWNER_ID)
        .with_opt("Tags", input::tags_opt(&g.tags))
}

pub fn create_internet_gateway(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let tags = input::creation_tags(input, "internet-gateway")?;
    let igw = ctx.mutate(|t| internet_gateway::create_internet_gateway(t, tags.clone()))?;
    tracing::info!(internet_gateway = %igw.id, "internet gateway created");
    Ok(Value::new_struct().with("InternetGateway", igw_value(&igw)))
}

pub fn delete_internet_gateway(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "InternetGatewayId")?;
    ctx.mutate(|t| internet_gateway::delete_internet_gateway(t, id))?;
    tracing::info!(internet_gateway = %id, "internet gateway deleted");
    Ok(Value::new_struct())
}

pub fn attach_internet_gateway(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "InternetGatewayId")?;
    let vpc = required(input, "VpcId")?;
    ctx.mutate(|t| internet_gateway::attach_internet_gateway(t, id, vpc))?;
    tracing::info!(internet_gateway = %id, vpc = %vpc, "internet gateway attached");
    Ok(Value::new_struct())
}

pub fn detach_internet_gateway(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "InternetGatewayId")?;
    let vpc = required(input, "VpcId")?;
    ctx.mutate(|t| internet_gateway::detach_internet_gateway(t, id, vpc))?;
    tracing::info!(internet_gateway = %id, vpc = %vpc, "internet gateway detached");
    Ok(Value::new_struct())
}

pub fn describe_internet_gateways(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    let (items, next) = input::describe(
        &state,
        &state.internet_gateways,
        input,
        "InternetGatewayIds",
        ("InvalidInternetGatewayID.NotFound", "internetGateway"),
    )?;
    let list = items.iter().map(|g| igw_value(g)).collect();
    Ok(Value::new_struct()
        .with("InternetGateways", Value::List(list))
        .with_opt("NextToken", next))
}

// ----- Elastic IPs -----

/// The `Address` output structure.
pub fn address_value(state: &State, a: &Address) -> Value {
    let assoc = a.association.as_ref();
    let subnet = assoc
        .and_then(|s| state.enis.get(&s.network_interface_id))
        .map(|e| e.subnet_id.clone());
    Value::new_struct()
        .with("AllocationId", a.allocation_id.as_str())
        .with_opt("AssociationId", assoc.map(|s| s.id.clone()))
        .with("Domain", "vpc")
        .with_opt(
            "NetworkInterfaceId",
            assoc.map(|s| s.network_interface_id.clone()),
        )
        .with_opt("NetworkInterfaceOwnerId", assoc.map(|_| OWNER_ID))
        .with_opt("PrivateIpAddress", assoc.map(|s| s.private_ip.to_string()))
        .with_opt("Tags", input::tags_opt(&a.tags))
        .with("PublicIpv4Pool", "amazon")
        .with("NetworkBorderGroup", "us-east-1")
        .with_opt("SubnetId", subnet)
        .with_opt("InstanceId", a.instance_id(state))
        .with("PublicIp", a.public_ip.to_string())
}

pub fn allocate_address(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    input::refuse_unsupported(
        input,
        &[
            ("Address", "addresses come from softvpc's own pool"),
            ("PublicIpv4Pool", "addresses come from softvpc's own pool"),
        ],
    )?;
    let tags = input::creation_tags(input, "elastic-ip")?;
    let domain = optional(input, "Domain");
    let a = ctx.mutate(|t| address::allocate_address(t, domain, tags.clone()))?;
    tracing::info!(allocation = %a.allocation_id, ip = %a.public_ip, "address allocated");
    Ok(Value::new_struct()
        .with("AllocationId", a.allocation_id.as_str())
        .with("PublicIpv4Pool", "amazon")
        .with("NetworkBorderGroup", "us-east-1")
        .with("Domain", "vpc")
        .with("PublicIp", a.public_ip.to_string()))
}

pub fn release_address(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = optional(input, "AllocationId");
    let ip = optional(input, "PublicIp");
    ctx.mutate(|t| address::release_address(t, id, ip))?;
    tracing::info!(allocation = ?id, ip = ?ip, "address released");
    Ok(Value::new_struct())
}

pub fn associate_address(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let opt = |n: &str| optional(input, n).map(str::to_string);
    let req = AssociateRequest {
        allocation_id: opt("AllocationId"),
        public_ip: opt("PublicIp"),
        instance_id: opt("InstanceId"),
        network_interface_id: opt("NetworkInterfaceId"),
        private_ip: opt("PrivateIpAddress"),
        allow_reassociation: input.get_bool("AllowReassociation").unwrap_or(false),
    };
    let id = ctx.mutate(|t| address::associate_address(t, &req))?;
    tracing::info!(association = %id, "address associated");
    Ok(Value::new_struct().with("AssociationId", id))
}

pub fn disassociate_address(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = optional(input, "AssociationId");
    let ip = optional(input, "PublicIp");
    ctx.mutate(|t| address::disassociate_address(t, id, ip))?;
    tracing::info!(association = ?id, ip = ?ip, "address disassociated");
    Ok(Value::new_struct())
}

pub fn describe_addresses(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    let mut items = input::select(
        &state,
        &state.addresses,
        &input::id_list(input, "AllocationIds"),
        ("InvalidAllocationID.NotFound", "allocation"),
        &input::filters(input)?,
    )?;
    let ips = input::id_list(input, "PublicIps");
    if !ips.is_empty() {
        if let Some(missing) = ips.iter().find(|ip| {
            !state
                .addresses
                .values()
                .any(|a| a.public_ip.to_string() == **ip)
        }) {
            return Err(ApiError::new(
                "InvalidAddress.NotFound",
                format!("Address '{missing}' not found."),
            ));
        }
        items.retain(|a| ips.contains(&a.public_ip.to_string()));
    }
    let list = items.iter().map(|a| address_value(&state, a)).collect();
    Ok(Value::new_struct().with("Addresses", Value::List(list)))
}

// ----- NAT gateways -----

/// The `NatGateway` output structure as seen at `now`.
pub fn nat_value(n: &NatGateway, now: u64) -> Value {
    let state = n.observed_state(now);
    let addr = Value::new_struct()
        .with_opt("AllocationId", n.allocation_id.clone())
        .with("NetworkInterfaceId", n.eni_id.as_str())
        .with("PrivateIp", n.private_ip.to_string())
        .with_opt("PublicIp", n.public_ip.map(|ip| ip.to_string()))
        .with_opt("AssociationId", n.association_id.clone())
        .with("IsPrimary", true)
        .with(
            "Status",
            match state {
                nat_gateway::NatState::Pending => "associating",
                nat_gateway::NatState::Available => "succeeded",
                nat_gateway::NatState::Deleting => "disassociating",
                nat_gateway::NatState::Deleted => "succeeded",
            },
        );
    Value::new_struct()
        .with("CreateTime", Timestamp::from_unix(n.create_time as i64))
        .with_opt(
            "DeleteTime",
            n.delete_time
                .filter(|_| state == nat_gateway::NatState::Deleted)
                .map(|t| Timestamp::from_unix(t as i64)),
        )
        .with("NatGatewayAddresses", Value::List(vec![addr]))
        .with("NatGatewayId", n.id.as_str())
        .with("State", state.as_str())
        .with("SubnetId", n.subnet_id.as_str())
        .with("VpcId", n.vpc_id.as_str())
        .with_opt("Tags", input::tags_opt(&n.tags))
        .with("ConnectivityType", n.connectivity_type.as_str())
}

pub fn create_nat_gateway(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let subnet = required(input, "SubnetId")?;
    let opt = |n: &str| optional(input, n).map(str::to_string);
    let req = nat_gateway::CreateRequest {
        subnet_id: subnet.to_string(),
        allocation_id: opt("AllocationId"),
        connectivity_type: opt("ConnectivityType"),
        private_ip: opt("PrivateIpAddress"),
        tags: input::creation_tags(input, "natgateway")?,
        client_token: opt("ClientToken"),
    };
    let nat = ctx.mutate(|t| nat_gateway::create_nat_gateway(t, &req))?;
    tracing::info!(nat_gateway = %nat.id, subnet = %subnet, "NAT gateway created");
    Ok(Value::new_struct()
        .with_opt("ClientToken", opt("ClientToken"))
        .with("NatGateway", nat_value(&nat, nat.create_time)))
}

pub fn delete_nat_gateway(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let id = required(input, "NatGatewayId")?;
    ctx.mutate(|t| nat_gateway::delete_nat_gateway(t, id))?;
    tracing::info!(nat_gateway = %id, "NAT gateway deleting");
    Ok(Value::new_struct().with("NatGatewayId", id))
}

pub fn describe_nat_gateways(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    let now = now_secs();
    // This action's filter member is `Filter`, not `Filters`.
    let filters = input
        .get_list("Filter")
        .iter()
        .map(|f| {
            let name = optional(f, "Name").ok_or_else(|| ApiError::missing("Filter.N.Name"))?;
            Ok(Filter {
                name: name.to_string(),
                values: input::id_list(f, "Values"),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let ids = input::id_list(input, "NatGatewayIds");
    if let Some(missing) = ids
        .iter()
        .find(|id| !state.nat_gateways.get(*id).is_some_and(|n| n.visible(now)))
    {
        return Err(nat_gateway::nat_not_found(missing));
    }
    // Filters and answers see each gateway's state moved on by the clock.
    let observed: softvpc_model::Map<NatGateway> = state
        .nat_gateways
        .iter()
        .map(|(id, n)| (id.clone(), std::sync::Arc::new(n.observed(now))))
        .collect();
    let items = input::select(
        &state,
        &observed,
        &ids,
        ("NatGatewayNotFound", "natGateway"),
        &filters,
    )?;
    let items: Vec<_> = items.into_iter().filter(|n| n.visible(now)).collect();
    let (items, next) = input::paginate_sorted(items, input, !ids.is_empty(), |n| n.id.clone())?;
    let list = items.iter().map(|n| nat_value(n, now)).collect();
    Ok(Value::new_struct()
        .with("NatGateways", Value::List(list))
        .with_opt("NextToken", next))
}
