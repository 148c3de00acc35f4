//! StartInstances and StopInstances.

use softvpc_ec2_protocol::Value;

use super::input;
use super::Ctx;
use softvpc_model::instance::{self, StateChange};
use softvpc_model::{ApiError, InstanceState};

fn state_value(s: InstanceState) -> Value {
    Value::new_struct()
        .with("Code", s.code())
        .with("Name", s.name())
}

fn changes_value(changes: &[StateChange]) -> Value {
    input::list_of(changes, |c| {
        Value::new_struct()
            .with("InstanceId", c.instance_id.as_str())
            .with("CurrentState", state_value(c.current))
            .with("PreviousState", state_value(c.previous))
    })
}

pub fn start_instances(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let ids = input::id_list(input, "InstanceIds");
    let changes = ctx.mutate(|t| instance::start_instances(t, &ids))?;
    tracing::info!(instances = ?ids, "instances started");
    Ok(Value::new_struct().with("StartingInstances", changes_value(&changes)))
}

pub fn stop_instances(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let ids = input::id_list(input, "InstanceIds");
    let changes = ctx.mutate(|t| instance::stop_instances(t, &ids))?;
    tracing::info!(instances = ?ids, "instances stopped");
    Ok(Value::new_struct().with("StoppingInstances", changes_value(&changes)))
}
