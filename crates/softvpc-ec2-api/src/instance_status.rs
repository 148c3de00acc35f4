//! DescribeInstanceStatus: the status checks of instances, as the `instance_status_ok` and
//! `system_status_ok` waiters read them.
//!
//! softvpc has no hardware or guest agent to check: a running instance (its namespace and TAP
//! are the agent's business) reports both checks `ok` with reachability `passed`; an instance
//! in any other state reports `not-applicable`. As on AWS, only running instances are listed
//! unless `IncludeAllInstances` is true, and an instance id that does not exist is
//! `InvalidInstanceID.NotFound`.

use std::sync::Arc;

use softvpc_ec2_protocol::Value;

use super::input::{self, ValueExt};
use super::{Ctx, Listing};
use softvpc_model::filter::Filterable;
use softvpc_model::{ApiError, Instance, InstanceState, Map, State, Tags};

/// One instance as DescribeInstanceStatus sees it.
pub struct StatusItem(Arc<Instance>);

impl StatusItem {
    /// `ok` for a running instance, else `not-applicable` (both checks alike).
    fn status(&self) -> &'static str {
        if self.0.state == InstanceState::Running {
            "ok"
        } else {
            "not-applicable"
        }
    }

    /// The reachability detail: `passed` when running, else none.
    fn reachability(&self) -> Option<&'static str> {
        (self.0.state == InstanceState::Running).then_some("passed")
    }
}

impl Filterable for StatusItem {
    const FILTERS: &'static [&'static str] = &[
        "availability-zone",
        "instance-state-code",
        "instance-state-name",
        "instance-status.reachability",
        "instance-status.status",
        "system-status.reachability",
        "system-status.status",
    ];
    const UNHELD: &'static [&'static str] = &[
        "availability-zone-id",
        "event.code",
        "event.description",
        "event.instance-event-id",
        "event.not-after",
        "event.not-before",
        "event.not-before-deadline",
        "operator.managed",
        "operator.principal",
        "attached-ebs-status.status",
    ];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        let i = &self.0;
        match name {
            "availability-zone" => vec![i.availability_zone.clone()],
            "instance-state-code" => vec![i.state.code().to_string()],
            "instance-state-name" => vec![i.state.name().to_string()],
            "instance-status.status" | "system-status.status" => vec![self.status().to_string()],
            "instance-status.reachability" | "system-status.reachability" => self
                .reachability()
                .map(str::to_string)
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    fn tag_map(&self) -> Tags {
        self.0.tags.clone()
    }
}

/// An `InstanceStatusSummary`.
fn summary(item: &StatusItem) -> Value {
    let details = item
        .reachability()
        .map(|r| {
            Value::new_struct()
                .with("Name", "reachability")
                .with("Status", r)
        })
        .into_iter()
        .collect();
    Value::new_struct()
        .with("Details", Value::List(details))
        .with("Status", item.status())
}

fn status_value(item: &StatusItem) -> Value {
    let i = &item.0;
    Value::new_struct()
        .with("AvailabilityZone", i.availability_zone.as_str())
        .with("Events", Value::List(Vec::new()))
        .with("InstanceId", i.id.as_str())
        .with(
            "InstanceState",
            Value::new_struct()
                .with("Code", i.state.code())
                .with("Name", i.state.name()),
        )
        .with("InstanceStatus", summary(item))
        .with("SystemStatus", summary(item))
}

pub fn describe_instance_status(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    instance_status_listing(ctx, input).map(Listing::into_value)
}

/// DescribeInstanceStatus as a [`Listing`] (streamed past 256 statuses).
pub fn instance_status_listing(ctx: &Ctx<'_>, input: &Value) -> Result<Listing, ApiError> {
    let state = ctx.cp.state();
    // Terminated instances past their retention are gone, as in DescribeInstances.
    let all: Map<StatusItem> = softvpc_model::instance::visible(&state, softvpc_store::now_secs())
        .iter()
        .map(|(id, i)| (id.clone(), Arc::new(StatusItem(i.clone()))))
        .collect();
    let include_all = input::flag(input, "IncludeAllInstances").unwrap_or(false);
    let ids = input::id_list(input, "InstanceIds");
    let items: Vec<Arc<StatusItem>> = input::select(
        &state,
        &all,
        &ids,
        ("InvalidInstanceID.NotFound", "instance"),
        &input::filters(input)?,
    )?
    .into_iter()
    .filter(|s| include_all || s.0.state == InstanceState::Running)
    .collect();
    let (page, next) = input::paginate_sorted(items, input, !ids.is_empty(), |s| s.0.id.clone())?;
    let head = Value::new_struct().with_opt("NextToken", next);
    Ok(Listing::new(head, "InstanceStatuses", page, status_value))
}
