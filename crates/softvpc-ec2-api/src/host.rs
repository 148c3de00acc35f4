//! DescribeHosts: the registered hosts, shaped as EC2 Dedicated Hosts (tag Name = host name).

use softvpc_ec2_protocol::Value;

use super::input::{self, timestamp, ValueExt};
use super::Ctx;
use softvpc_model::filter::Filterable;
use softvpc_model::instance::DEFAULT_INSTANCE_TYPE;
use softvpc_model::{ApiError, Host, InstanceState, State, OWNER_ID};

fn host_value(state: &State, h: &Host) -> Value {
    let instances: Vec<Value> = state
        .instances
        .values()
        .filter(|i| i.host_id == h.id && i.state != InstanceState::Terminated)
        .map(|i| {
            Value::new_struct()
                .with("InstanceId", i.id.as_str())
                .with("InstanceType", i.instance_type.as_str())
                .with("OwnerId", OWNER_ID)
        })
        .collect();
    Value::new_struct()
        .with("HostId", h.id.as_str())
        .with("AutoPlacement", "on")
        .with("HostRecovery", "off")
        .with("AvailabilityZone", h.availability_zone.as_str())
        .with(
            "HostProperties",
            Value::new_struct()
                .with("InstanceType", DEFAULT_INSTANCE_TYPE)
                .with("InstanceFamily", "t3")
                .with("Sockets", 1i64)
                .with("Cores", 2i64)
                .with("TotalVCpus", 2i64),
        )
        .with("Instances", instances)
        .with("State", "available")
        .with("AllocationTime", timestamp(h.allocation_time))
        .with("OwnerId", OWNER_ID)
        .with("MemberOfServiceLinkedResourceGroup", false)
        .with_opt("Tags", input::tags_opt(&h.tag_map()))
}

pub fn describe_hosts(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    let (items, next) = input::describe(
        &state,
        &state.hosts,
        input,
        "HostIds",
        ("InvalidHostID.NotFound", "host"),
    )?;
    Ok(Value::new_struct()
        .with("Hosts", input::list_of(&items, |h| host_value(&state, h)))
        .with_opt("NextToken", next))
}
