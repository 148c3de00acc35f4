//! Create/Delete/DescribeFlowLogs: model-driven handlers over [`softvpc_model::flow_log`], and
//! the local destinations: after a commit that created flow logs, each one's directory is made
//! under the server's flow-log directory (`--flow-log-dir`). A directory that cannot be made is
//! logged and recorded on the flow log (`DeliverLogsStatus` FAILED with
//! `DeliverLogsErrorMessage`); the request itself has already succeeded, as on AWS where
//! delivery problems surface in DescribeFlowLogs, not in CreateFlowLogs.

use std::path::Path;
use std::sync::Arc;

use softvpc_ec2_protocol::Value;

use super::input::{self, optional, timestamp, ValueExt};
use super::Ctx;
use softvpc_model::filter;
use softvpc_model::flow_log::{self, CreateRequest, FlowLog, Unsuccessful};
use softvpc_model::ApiError;
use softvpc_store::Store;

/// The `FlowLog` output structure.
pub fn flow_log_value(f: &FlowLog) -> Value {
    let options = f.destination_options.as_ref().map(|o| {
        Value::new_struct()
            .with("FileFormat", o.file_format.as_str())
            .with("HiveCompatiblePartitions", o.hive_compatible_partitions)
            .with("PerHourPartition", o.per_hour_partition)
    });
    Value::new_struct()
        .with("CreationTime", timestamp(f.creation_time))
        .with_opt("DeliverLogsErrorMessage", f.deliver_logs_error.as_deref())
        .with_opt(
            "DeliverLogsPermissionArn",
            f.deliver_logs_permission_arn.as_deref(),
        )
        .with_opt(
            "DeliverCrossAccountRole",
            f.deliver_cross_account_role.as_deref(),
        )
        .with("DeliverLogsStatus", f.deliver_logs_status())
        .with("FlowLogId", f.id.as_str())
        .with("FlowLogStatus", "ACTIVE")
        .with_opt("LogGroupName", f.log_group_name.as_deref())
        .with("ResourceId", f.resource_id.as_str())
        .with("TrafficType", f.traffic_type.as_str())
        .with("LogDestinationType", f.destination_type.as_str())
        .with("LogDestination", f.log_destination.as_str())
        .with("LogFormat", f.log_format.as_str())
        .with_opt("Tags", input::tags_opt(&f.tags))
        .with("MaxAggregationInterval", f.max_aggregation_interval)
        .with_opt("DestinationOptions", options)
}

/// The `UnsuccessfulItemSet` output list.
fn unsuccessful_value(items: &[Unsuccessful]) -> Value {
    input::list_of(items, |u| {
        Value::new_struct()
            .with(
                "Error",
                Value::new_struct()
                    .with("Code", u.code.as_str())
                    .with("Message", u.message.as_str()),
            )
            .with("ResourceId", u.resource_id.as_str())
    })
}

/// Reads the CreateFlowLogs input tree.
fn create_request(input: &Value) -> Result<CreateRequest, ApiError> {
    let opt = |name: &str| optional(input, name).map(str::to_string);
    let destination_options = input.get("DestinationOptions").map(|o| {
        (
            optional(o, "FileFormat").map(str::to_string),
            o.get_bool("HiveCompatiblePartitions"),
            o.get_bool("PerHourPartition"),
        )
    });
    Ok(CreateRequest {
        resource_type: input::required(input, "ResourceType")?.to_string(),
        resource_ids: input::id_list(input, "ResourceIds"),
        traffic_type: opt("TrafficType"),
        log_destination_type: opt("LogDestinationType"),
        log_destination: opt("LogDestination"),
        log_group_name: opt("LogGroupName"),
        // An empty LogFormat is refused (AWS: at least one field), not taken as absent.
        log_format: input.get_str("LogFormat").map(str::to_string),
        max_aggregation_interval: input.get_i64("MaxAggregationInterval"),
        deliver_logs_permission_arn: opt("DeliverLogsPermissionArn"),
        deliver_cross_account_role: opt("DeliverCrossAccountRole"),
        destination_options,
        client_token: opt("ClientToken"),
        tags: input::creation_tags(input, "vpc-flow-log")?,
    })
}

pub fn create_flow_logs(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let req = create_request(input)?;
    let result = ctx.mutate(|t| flow_log::create_flow_logs(t, &req))?;
    for id in &result.flow_log_ids {
        tracing::info!(flow_log = %id, "flow log created");
    }
    if let Some(dir) = ctx.flow_log_dir {
        prepare_destinations(ctx.cp, dir, Some(&result.flow_log_ids));
    }
    let ids: Vec<Value> = result
        .flow_log_ids
        .iter()
        .map(|i| Value::from(i.as_str()))
        .collect();
    Ok(Value::new_struct()
        .with_opt("ClientToken", req.client_token.as_deref())
        .with("FlowLogIds", Value::List(ids))
        .with("Unsuccessful", unsuccessful_value(&result.unsuccessful)))
}

pub fn delete_flow_logs(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let ids = input::id_list(input, "FlowLogIds");
    let unsuccessful = ctx.mutate(|t| flow_log::delete_flow_logs(t, &ids))?;
    for id in ids
        .iter()
        .filter(|i| !unsuccessful.iter().any(|u| &u.resource_id == *i))
    {
        tracing::info!(flow_log = %id, "flow log deleted");
    }
    Ok(Value::new_struct().with("Unsuccessful", unsuccessful_value(&unsuccessful)))
}

/// DescribeFlowLogs. Unlike most Describe calls, ids that do not exist are not an error: AWS
/// simply returns no flow log for them.
pub fn describe_flow_logs(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    let filters = input::filters(input)?;
    filter::check::<FlowLog>(&filters)?;
    let ids = input::id_list(input, "FlowLogIds");
    if ids.len() > flow_log::MAX_RESOURCES {
        return Err(ApiError::invalid_value(format!(
            "The maximum number of flow log IDs per request is {}.",
            flow_log::MAX_RESOURCES
        )));
    }
    let items: Vec<Arc<FlowLog>> = state
        .flow_logs
        .values()
        .filter(|f| ids.is_empty() || ids.contains(&f.id))
        .filter(|f| filter::matches(&***f, &state, &filters))
        .cloned()
        .collect();
    let (page, next) = input::paginate_sorted(items, input, false, |f| f.id.clone())?;
    Ok(Value::new_struct()
        .with("FlowLogs", input::list_of(&page, |f| flow_log_value(f)))
        .with_opt("NextToken", next))
}

/// Makes the destination directory (under `base`) of each flow log in `ids` (every flow log
/// when `None`, e.g. at startup) and records the outcome on the flow log: a directory that cannot be made turns
/// its `DeliverLogsStatus` to FAILED, one that can (again) back to SUCCESS. Never fails: problems
/// are logged.
pub fn prepare_destinations(cp: &Store, base: &Path, ids: Option<&[String]>) {
    let state = cp.state();
    let mut outcomes: Vec<(String, Option<String>)> = Vec::new();
    for f in state.flow_logs.values() {
        if ids.is_some_and(|ids| !ids.contains(&f.id)) {
            continue;
        }
        // `dir` was validated by the model: relative, no `.`/`..` components.
        let path = base.join(&f.dir);
        let error = match std::fs::create_dir_all(&path) {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(flow_log = %f.id, path = %path.display(), error = %e,
                    "cannot create the flow log destination directory; delivery FAILED");
                let kind = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    "Access error"
                } else {
                    "Unknown error"
                };
                Some(format!("{kind}: cannot create {}: {e}", path.display()))
            }
        };
        if f.deliver_logs_error != error {
            outcomes.push((f.id.clone(), error));
        }
    }
    if outcomes.is_empty() {
        return;
    }
    let recorded = cp.mutate(false, |t| {
        for (id, error) in &outcomes {
            flow_log::set_delivery_error(t, id, error.clone());
        }
        Ok(())
    });
    if let Err(e) = recorded {
        tracing::error!(error = %e, "could not record the flow log delivery status");
    }
}
