//! VPC flow logs (`fl-`): which traffic of a VPC, subnet or network interface is recorded, in
//! which format, and where the records go. Create/Delete/Describe with AWS semantics: per-resource
//! outcomes (`Unsuccessful` items) for what AWS reports per resource, whole-request refusals for
//! bad parameters, `ClientToken` idempotency, and flow logs deleted together with the resource
//! they watch.
//!
//! A destination is a local directory under the server's flow-log directory: a CloudWatch Logs
//! log group `G` is `<dir>/G` (a `/` in the name makes subdirectories), an S3 bucket ARN
//! `arn:aws:s3:::B/P` is `<dir>/B/P`, a Kinesis Data Firehose delivery stream `S` is `<dir>/S`.
//! The model only validates and stores the relative path (no `.`/`..` components, never
//! absolute); the EC2 layer creates the directory after the commit. Records are written by the
//! data plane (a later issue).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::filter::Filterable;
use super::idempotency::{self, ClientToken, Digest};
use super::ids::new_id;
use super::{ApiError, State, Tags, Txn, OWNER_ID};
use crate::peering::REGION;

/// The default record format (all version 2 fields, in AWS's order).
pub const DEFAULT_FORMAT: &str = "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} \
${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}";

/// Every field AWS documents for flow log records (versions 2 to 10).
pub const FIELDS: &[&str] = &[
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
    "vpc-id",
    "subnet-id",
    "instance-id",
    "tcp-flags",
    "type",
    "pkt-srcaddr",
    "pkt-dstaddr",
    "region",
    "az-id",
    "sublocation-type",
    "sublocation-id",
    "pkt-src-aws-service",
    "pkt-dst-aws-service",
    "flow-direction",
    "traffic-path",
    "ecs-cluster-arn",
    "ecs-cluster-name",
    "ecs-container-instance-arn",
    "ecs-container-instance-id",
    "ecs-container-id",
    "ecs-second-container-id",
    "ecs-service-name",
    "ecs-task-definition-arn",
    "ecs-task-arn",
    "ecs-task-id",
    "reject-reason",
    "resource-id",
    "encryption-status",
];

/// Most resources one CreateFlowLogs call may name (AWS: 1000 for VPCs, subnets, ENIs).
pub const MAX_RESOURCES: usize = 1000;

/// The resource types a flow log can watch here (AWS also has transit gateways, which softvpc
/// does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceType {
    /// A VPC.
    #[serde(rename = "VPC")]
    Vpc,
    /// A subnet.
    Subnet,
    /// A network interface.
    NetworkInterface,
}

impl ResourceType {
    /// The wire name (`FlowLogsResourceType`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Vpc => "VPC",
            ResourceType::Subnet => "Subnet",
            ResourceType::NetworkInterface => "NetworkInterface",
        }
    }

    /// Parses the wire name; the types AWS has but softvpc does not are refused.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "VPC" => Ok(ResourceType::Vpc),
            "Subnet" => Ok(ResourceType::Subnet),
            "NetworkInterface" => Ok(ResourceType::NetworkInterface),
            other => Err(ApiError::invalid_value(format!(
                "Resource type '{other}' is not supported: softvpc has no transit gateways or \
                 regional NAT gateways; flow logs watch VPC, Subnet or NetworkInterface resources."
            ))),
        }
    }
}

/// Where records go (`LogDestinationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DestinationType {
    /// `cloud-watch-logs`: a log group.
    CloudWatchLogs,
    /// `s3`: a bucket and prefix.
    S3,
    /// `kinesis-data-firehose`: a delivery stream.
    KinesisDataFirehose,
}

impl DestinationType {
    /// AWS's name for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationType::CloudWatchLogs => "cloud-watch-logs",
            DestinationType::S3 => "s3",
            DestinationType::KinesisDataFirehose => "kinesis-data-firehose",
        }
    }

    /// Parses the wire name (the decoder has already checked the enum).
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "cloud-watch-logs" => Ok(DestinationType::CloudWatchLogs),
            "s3" => Ok(DestinationType::S3),
            "kinesis-data-firehose" => Ok(DestinationType::KinesisDataFirehose),
            other => Err(ApiError::invalid_value(format!(
                "Value ({other}) for parameter LogDestinationType is invalid."
            ))),
        }
    }
}

/// `DestinationOptions` of an S3 destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Options {
    /// `plain-text` or `parquet`.
    pub file_format: String,
    /// `HiveCompatiblePartitions`.
    pub hive_compatible_partitions: bool,
    /// `PerHourPartition`.
    pub per_hour_partition: bool,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            file_format: "plain-text".into(),
            hive_compatible_partitions: false,
            per_hour_partition: false,
        }
    }
}

/// A flow log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowLog {
    /// `fl-...`.
    pub id: String,
    /// The VPC, subnet or ENI whose traffic it records.
    pub resource_id: String,
    /// What kind of resource that is.
    pub resource_type: ResourceType,
    /// `ACCEPT`, `REJECT` or `ALL`.
    pub traffic_type: String,
    /// Where records go.
    pub destination_type: DestinationType,
    /// The destination's ARN (`LogDestination`).
    pub log_destination: String,
    /// The log group (CloudWatch Logs destinations only).
    pub log_group_name: Option<String>,
    /// The destination directory relative to the flow-log directory (`/`-separated, validated:
    /// never absolute, no `.` or `..` components).
    pub dir: String,
    /// The record format (AWS's `${field}` list).
    pub log_format: String,
    /// Seconds: 60 or 600.
    pub max_aggregation_interval: u32,
    /// `DeliverLogsPermissionArn` (kept, shown).
    pub deliver_logs_permission_arn: Option<String>,
    /// `DeliverCrossAccountRole` (kept, shown).
    pub deliver_cross_account_role: Option<String>,
    /// S3 destinations only.
    pub destination_options: Option<S3Options>,
    /// Creation time, seconds since the Unix epoch.
    pub creation_time: u64,
    /// Why delivery fails (`DeliverLogsStatus` FAILED), e.g. the directory could not be made.
    pub deliver_logs_error: Option<String>,
    /// The `ClientToken` of the CreateFlowLogs call that made it, with that request's digest.
    pub client_token: Option<ClientToken>,
    /// Its tags.
    pub tags: Tags,
}

impl FlowLog {
    /// `DeliverLogsStatus`: SUCCESS unless delivery is known to fail.
    pub fn deliver_logs_status(&self) -> &'static str {
        if self.deliver_logs_error.is_some() {
            "FAILED"
        } else {
            "SUCCESS"
        }
    }
}

impl Txn {
    /// Deletes the flow logs watching `resource_id` (a VPC, subnet or ENI being deleted: AWS
    /// deletes its flow logs with it).
    pub fn delete_flow_logs_of(&mut self, resource_id: &str) {
        let ids: Vec<String> = self
            .state
            .flow_logs
            .values()
            .filter(|f| f.resource_id == resource_id)
            .map(|f| f.id.clone())
            .collect();
        for id in ids {
            tracing::info!(flow_log = %id, resource = %resource_id, "flow log deleted with its resource");
            self.delete::<FlowLog>(&id);
        }
    }
}

/// The parameters of CreateFlowLogs, as given.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// `ResourceType`.
    pub resource_type: String,
    /// `ResourceIds`.
    pub resource_ids: Vec<String>,
    /// `TrafficType`.
    pub traffic_type: Option<String>,
    /// `LogDestinationType`.
    pub log_destination_type: Option<String>,
    /// `LogDestination`.
    pub log_destination: Option<String>,
    /// `LogGroupName`.
    pub log_group_name: Option<String>,
    /// `LogFormat`.
    pub log_format: Option<String>,
    /// `MaxAggregationInterval`.
    pub max_aggregation_interval: Option<i64>,
    /// `DeliverLogsPermissionArn`.
    pub deliver_logs_permission_arn: Option<String>,
    /// `DeliverCrossAccountRole`.
    pub deliver_cross_account_role: Option<String>,
    /// `DestinationOptions` as (FileFormat, HiveCompatiblePartitions, PerHourPartition).
    pub destination_options: Option<(Option<String>, Option<bool>, Option<bool>)>,
    /// `ClientToken`.
    pub client_token: Option<String>,
    /// From `TagSpecifications`.
    pub tags: Tags,
}

/// One per-resource failure (`UnsuccessfulItem`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsuccessful {
    /// The resource no flow log was made for.
    pub resource_id: String,
    /// AWS's error code.
    pub code: String,
    /// AWS's error message.
    pub message: String,
}

/// What CreateFlowLogs made and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateResult {
    /// The flow logs made.
    pub flow_log_ids: Vec<String>,
    /// The resources refused, with why.
    pub unsuccessful: Vec<Unsuccessful>,
}

/// The checked, normalised settings every flow log of one request shares.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    resource_type: ResourceType,
    traffic_type: String,
    destination_type: DestinationType,
    log_destination: String,
    log_group_name: Option<String>,
    dir: String,
    log_format: String,
    max_aggregation_interval: u32,
    deliver_logs_permission_arn: Option<String>,
    deliver_cross_account_role: Option<String>,
    destination_options: Option<S3Options>,
}

fn invalid_parameter(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidParameter", message)
}

/// Splits a name into directory components, refusing what could leave the flow-log directory
/// (`.` and `..` components, NUL bytes). Empty components (`a//b`, a leading `/`) are skipped.
fn path_components<'a>(what: &str, name: &'a str) -> Result<Vec<&'a str>, ApiError> {
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty()
        || parts
            .iter()
            .any(|p| *p == "." || *p == ".." || p.contains('\0'))
    {
        return Err(ApiError::invalid_value(format!(
            "{what} '{name}' cannot name a local directory: it must contain a name other than \
             '.' or '..' and no '.' or '..' path component."
        )));
    }
    Ok(parts)
}

/// A CloudWatch Logs log group name: 1-512 of `[.-_/#A-Za-z0-9]`, usable as a directory.
fn check_log_group(name: &str) -> Result<String, ApiError> {
    let ok = (1..=512).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_/#".contains(c));
    if !ok {
        return Err(ApiError::invalid_value(format!(
            "1 validation error detected: Value '{name}' at 'logGroupName' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+"
        )));
    }
    Ok(path_components("LogGroupName", name)?.join("/"))
}

/// `arn:aws:logs:REGION:ACCOUNT:log-group:NAME[:*]` -> NAME.
fn log_group_from_arn(arn: &str) -> Result<String, ApiError> {
    let bad = || {
        invalid_parameter(format!(
            "LogDestination: {arn} is not a valid CloudWatch Logs log group ARN."
        ))
    };
    let rest = arn.strip_prefix("arn:aws:logs:").ok_or_else(bad)?;
    let mut parts = rest.splitn(4, ':');
    let (_region, _account, kind, name) = (
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
    );
    if kind != "log-group" {
        return Err(bad());
    }
    let name = name.strip_suffix(":*").unwrap_or(name);
    if name.is_empty() {
        return Err(bad());
    }
    Ok(name.to_string())
}

/// An S3 bucket name: 3-63 of lowercase letters, digits, `.` and `-`, starting and ending with a
/// letter or digit, no `..`.
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !b.contains("..")
}

/// `arn:aws:s3:::BUCKET[/PREFIX]` -> the relative directory `BUCKET[/PREFIX]`.
fn s3_dir(arn: &str) -> Result<String, ApiError> {
    let bad = || {
        invalid_parameter(format!(
            "LogDestination: {arn} is not a valid S3 bucket ARN."
        ))
    };
    let rest = arn.strip_prefix("arn:aws:s3:::").ok_or_else(bad)?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if !valid_bucket(bucket) {
        return Err(bad());
    }
    let mut dir = vec![bucket];
    if !prefix.split('/').all(|p| p.is_empty()) {
        let parts = path_components("LogDestination prefix", prefix)?;
        if parts.contains(&"AWSLogs") {
            return Err(invalid_parameter(format!(
                "LogDestination: {arn} uses AWSLogs as a subfolder name, which is reserved."
            )));
        }
        dir.extend(parts);
    }
    Ok(dir.join("/"))
}

/// `arn:aws:firehose:REGION:ACCOUNT:deliverystream/NAME` (or `:NAME`) -> NAME.
fn firehose_stream(arn: &str) -> Result<String, ApiError> {
    let bad = || {
        invalid_parameter(format!(
            "LogDestination: {arn} is not a valid Kinesis Data Firehose delivery stream ARN."
        ))
    };
    let rest = arn.strip_prefix("arn:aws:firehose:").ok_or_else(bad)?;
    let mut parts = rest.splitn(3, ':');
    let (_region, _account, resource) = (
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
    );
    let name = resource
        .strip_prefix("deliverystream/")
        .or_else(|| resource.strip_prefix("deliverystream:"))
        .ok_or_else(bad)?;
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(bad());
    }
    Ok(path_components("Delivery stream name", name)?.join("/"))
}

/// Checks a `LogFormat`: `${field}` tokens separated by single spaces, each a documented field.
pub fn check_format(format: &str) -> Result<(), ApiError> {
    let invalid = || {
        ApiError::invalid_value(format!(
            "1 validation error detected: Value '{format}' at 'logFormat' has an invalid format"
        ))
    };
    if format.is_empty() {
        return Err(invalid());
    }
    for token in format.split(' ') {
        let field = token
            .strip_prefix("${")
            .and_then(|t| t.strip_suffix('}'))
            .filter(|f| !f.is_empty())
            .ok_or_else(invalid)?;
        if !FIELDS.contains(&field) {
            return Err(ApiError::invalid_value(format!(
                "Invalid LogFormat: '${{{field}}}' is not a flow log record field."
            )));
        }
    }
    Ok(())
}

/// Checks the whole-request parameters (anything wrong here refuses the request).
fn settings(req: &CreateRequest) -> Result<Settings, ApiError> {
    let resource_type = ResourceType::parse(&req.resource_type)?;
    if req.resource_ids.is_empty() {
        return Err(ApiError::missing("ResourceId"));
    }
    if req.resource_ids.len() > MAX_RESOURCES {
        return Err(ApiError::invalid_value(format!(
            "The maximum number of resource IDs per request is {MAX_RESOURCES}."
        )));
    }
    let traffic_type = req
        .traffic_type
        .clone()
        .ok_or_else(|| ApiError::missing("TrafficType"))?;
    if !["ACCEPT", "REJECT", "ALL"].contains(&traffic_type.as_str()) {
        return Err(ApiError::invalid_value(format!(
            "Value ({traffic_type}) for parameter TrafficType is invalid."
        )));
    }
    let destination_type = match &req.log_destination_type {
        Some(t) => DestinationType::parse(t)?,
        None => DestinationType::CloudWatchLogs,
    };
    if req.log_group_name.is_none() && req.log_destination.is_none() {
        return Err(invalid_parameter(
            "LogDestination can't be empty if LogGroupName is not provided.",
        ));
    }
    let (log_destination, log_group_name, dir) = match destination_type {
        DestinationType::CloudWatchLogs => {
            if req.deliver_logs_permission_arn.is_none() {
                return Err(invalid_parameter(
                    "DeliverLogsPermissionArn can't be empty if LogDestinationType is cloud-watch-logs.",
                ));
            }
            // (Neither given was refused above.)
            let group = match (&req.log_group_name, &req.log_destination) {
                (Some(g), None) => g.clone(),
                (None, Some(arn)) => log_group_from_arn(arn)?,
                _ => {
                    return Err(invalid_parameter(
                        "Please only provide LogGroupName or only provide LogDestination.",
                    ))
                }
            };
            let dir = check_log_group(&group)?;
            let arn = format!("arn:aws:logs:{REGION}:{OWNER_ID}:log-group:{group}");
            (arn, Some(group), dir)
        }
        DestinationType::S3 | DestinationType::KinesisDataFirehose => {
            if req.log_group_name.is_some() {
                return Err(invalid_parameter(
                    "LogDestination type must be cloud-watch-logs if LogGroupName is provided.",
                ));
            }
            let arn = req.log_destination.clone().ok_or_else(|| {
                invalid_parameter("LogDestination can't be empty if LogGroupName is not provided.")
            })?;
            let dir = if destination_type == DestinationType::S3 {
                s3_dir(&arn)?
            } else {
                firehose_stream(&arn)?
            };
            (arn, None, dir)
        }
    };
    let destination_options = match (&req.destination_options, destination_type) {
        (None, DestinationType::S3) => Some(S3Options::default()),
        (None, _) => None,
        (Some((format, hive, hourly)), DestinationType::S3) => {
            let file_format = format.clone().unwrap_or_else(|| "plain-text".into());
            if !["plain-text", "parquet"].contains(&file_format.as_str()) {
                return Err(ApiError::invalid_value(format!(
                    "Value ({file_format}) for parameter FileFormat is invalid."
                )));
            }
            // Records are written as plain-text lines in one file per flow log: options that
            // ask for another file format or another layout are refused, never accepted and
            // then written differently.
            if file_format == "parquet" {
                return Err(ApiError::invalid_value(
                    "Value (parquet) for parameter FileFormat is not supported: softvpc writes \
                     flow log records as plain-text lines.",
                ));
            }
            for (name, on) in [
                ("HiveCompatiblePartitions", hive),
                ("PerHourPartition", hourly),
            ] {
                if *on == Some(true) {
                    return Err(ApiError::invalid_value(format!(
                        "Value (true) for parameter {name} is not supported: softvpc writes each \
                         flow log's records to one file, <destination>/<flow-log-id>.log, \
                         without partitions."
                    )));
                }
            }
            Some(S3Options {
                file_format,
                hive_compatible_partitions: hive.unwrap_or(false),
                per_hour_partition: hourly.unwrap_or(false),
            })
        }
        (Some(_), _) => {
            return Err(invalid_parameter(
                "DestinationOptions can only be used when LogDestinationType is s3.",
            ))
        }
    };
    let log_format = match &req.log_format {
        Some(f) => {
            check_format(f)?;
            f.clone()
        }
        None => DEFAULT_FORMAT.to_string(),
    };
    let max_aggregation_interval = match req.max_aggregation_interval {
        None => 600,
        Some(60) => 60,
        Some(600) => 600,
        Some(_) => {
            return Err(invalid_parameter(
                "Invalid Flow Log Max Aggregation Interval",
            ))
        }
    };
    Ok(Settings {
        resource_type,
        traffic_type,
        destination_type,
        log_destination,
        log_group_name,
        dir,
        log_format,
        max_aggregation_interval,
        deliver_logs_permission_arn: req.deliver_logs_permission_arn.clone(),
        deliver_cross_account_role: req.deliver_cross_account_role.clone(),
        destination_options,
    })
}

/// Whether `resource_id` exists as a resource of `kind`; else the per-item error AWS reports.
fn resource_error(state: &State, kind: ResourceType, id: &str) -> Option<Unsuccessful> {
    let (exists, code, noun) = match kind {
        ResourceType::Vpc => (state.vpcs.contains_key(id), "InvalidVpcID.NotFound", "vpc"),
        ResourceType::Subnet => (
            state.subnets.contains_key(id),
            "InvalidSubnetID.NotFound",
            "subnet",
        ),
        ResourceType::NetworkInterface => (
            state.enis.contains_key(id),
            "InvalidNetworkInterfaceID.NotFound",
            "networkInterface",
        ),
    };
    (!exists).then(|| {
        let e = ApiError::not_found(code, noun, &[id]);
        Unsuccessful {
            resource_id: id.to_string(),
            code: e.code,
            message: e.message,
        }
    })
}

/// AWS's refusal of a second flow log with the same resource, traffic type and destination.
fn already_exists(id: &str) -> Unsuccessful {
    Unsuccessful {
        resource_id: id.to_string(),
        code: "FlowLogAlreadyExists".into(),
        message:
            "Error. There is an existing Flow Log with the same configuration and log destination."
                .into(),
    }
}

fn same_config(f: &FlowLog, s: &Settings) -> bool {
    f.traffic_type == s.traffic_type && f.destination_type == s.destination_type && f.dir == s.dir
}

/// A stable digest of every CreateFlowLogs parameter (stored with the token).
fn request_digest(req: &CreateRequest) -> String {
    let (format, hive, hourly) = req.destination_options.clone().unwrap_or_default();
    let flag = |b: Option<bool>| b.map(|b| if b { "true" } else { "false" });
    Digest::new("CreateFlowLogs")
        .str(&req.resource_type)
        .list(req.resource_ids.iter().map(String::as_str))
        .opt(req.traffic_type.as_deref())
        .opt(req.log_destination_type.as_deref())
        .opt(req.log_destination.as_deref())
        .opt(req.log_group_name.as_deref())
        .opt(req.log_format.as_deref())
        .opt(
            req.max_aggregation_interval
                .map(|i| i.to_string())
                .as_deref(),
        )
        .opt(req.deliver_logs_permission_arn.as_deref())
        .opt(req.deliver_cross_account_role.as_deref())
        .opt(req.destination_options.as_ref().map(|_| ""))
        .opt(format.as_deref())
        .opt(flag(hive))
        .opt(flag(hourly))
        .list(req.tags.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]))
        .finish()
}

/// `CreateFlowLogs`: one flow log per named resource. Bad parameters refuse the whole request;
/// a resource that does not exist, or already has a flow log with the same traffic type and
/// destination, is reported in `Unsuccessful` while the others are created. A retry with the
/// same `ClientToken` and parameters returns the flow logs the first call made (and makes no new
/// ones); the same token with other parameters is `IdempotentParameterMismatch`.
pub fn create_flow_logs(txn: &mut Txn, req: &CreateRequest) -> Result<CreateResult, ApiError> {
    let s = settings(req)?;
    let token = req.client_token.as_ref().map(|t| ClientToken {
        token: t.clone(),
        digest: request_digest(req),
    });
    if let Some(token) = &token {
        let earlier: Vec<Arc<FlowLog>> = txn
            .state
            .flow_logs
            .values()
            .filter(|f| ClientToken::of(&f.client_token) == Some(token.token.as_str()))
            .cloned()
            .collect();
        if !earlier.is_empty() {
            if earlier
                .iter()
                .any(|f| f.client_token.as_ref() != Some(token))
            {
                return Err(idempotency::mismatch());
            }
            let mut out = CreateResult::default();
            for rid in &req.resource_ids {
                if let Some(f) = earlier.iter().find(|f| &f.resource_id == rid) {
                    if !out.flow_log_ids.contains(&f.id) {
                        out.flow_log_ids.push(f.id.clone());
                    }
                } else {
                    // Not made the first time: report why, as the first call did.
                    out.unsuccessful.push(
                        resource_error(&txn.state, s.resource_type, rid)
                            .unwrap_or_else(|| already_exists(rid)),
                    );
                }
            }
            return Ok(out);
        }
    }
    let mut out = CreateResult::default();
    for rid in &req.resource_ids {
        if let Some(e) = resource_error(&txn.state, s.resource_type, rid) {
            out.unsuccessful.push(e);
            continue;
        }
        let duplicate = txn
            .state
            .flow_logs
            .values()
            .any(|f| &f.resource_id == rid && same_config(f, &s));
        if duplicate {
            out.unsuccessful.push(already_exists(rid));
            continue;
        }
        let f = FlowLog {
            id: new_id("fl"),
            resource_id: rid.clone(),
            resource_type: s.resource_type,
            traffic_type: s.traffic_type.clone(),
            destination_type: s.destination_type,
            log_destination: s.log_destination.clone(),
            log_group_name: s.log_group_name.clone(),
            dir: s.dir.clone(),
            log_format: s.log_format.clone(),
            max_aggregation_interval: s.max_aggregation_interval,
            deliver_logs_permission_arn: s.deliver_logs_permission_arn.clone(),
            deliver_cross_account_role: s.deliver_cross_account_role.clone(),
            destination_options: s.destination_options.clone(),
            creation_time: txn.now,
            deliver_logs_error: None,
            client_token: token.clone(),
            tags: req.tags.clone(),
        };
        out.flow_log_ids.push(f.id.clone());
        txn.put(f);
    }
    Ok(out)
}

/// `InvalidFlowLogId.NotFound` as an `Unsuccessful` item of DeleteFlowLogs.
fn flow_log_not_found(id: &str) -> Unsuccessful {
    Unsuccessful {
        resource_id: id.to_string(),
        code: "InvalidFlowLogId.NotFound".into(),
        message: format!(
            "These flow log ids in the input list are not found: [TotalCount: 1] {id}"
        ),
    }
}

/// `DeleteFlowLogs`: deletes the flow logs that exist, reports the others in `Unsuccessful`.
/// The destination directories and what they hold are kept (AWS keeps log groups and buckets).
pub fn delete_flow_logs(txn: &mut Txn, ids: &[String]) -> Result<Vec<Unsuccessful>, ApiError> {
    if ids.is_empty() {
        return Err(ApiError::missing("FlowLogId"));
    }
    if ids.len() > MAX_RESOURCES {
        return Err(ApiError::invalid_value(format!(
            "The maximum number of flow log IDs per request is {MAX_RESOURCES}."
        )));
    }
    let mut unsuccessful = Vec::new();
    for id in ids {
        if txn.state.flow_logs.contains_key(id) {
            txn.delete::<FlowLog>(id);
        } else {
            unsuccessful.push(flow_log_not_found(id));
        }
    }
    Ok(unsuccessful)
}

/// Records the outcome of preparing flow log `id`'s destination: `None` is delivering, `Some`
/// the reason it cannot. Changes nothing when the flow log is gone or already says so.
pub fn set_delivery_error(txn: &mut Txn, id: &str, error: Option<String>) {
    let Some(f) = txn.state.flow_logs.get(id) else {
        return;
    };
    if f.deliver_logs_error == error {
        return;
    }
    let mut f = (**f).clone();
    f.deliver_logs_error = error;
    txn.put(f);
}

/// Edits the tags of flow log `id` (for CreateTags/DeleteTags).
pub fn edit_tags(
    txn: &mut Txn,
    id: &str,
    edit: &mut dyn FnMut(&mut Tags) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let mut f = txn
        .state
        .flow_logs
        .get(id)
        .map(|f| (**f).clone())
        .ok_or_else(|| ApiError::not_found("InvalidFlowLogId.NotFound", "flow log", &[id]))?;
    edit(&mut f.tags)?;
    txn.put(f);
    Ok(())
}

impl Filterable for FlowLog {
    const FILTERS: &'static [&'static str] = &[
        "deliver-log-status",
        "log-destination-type",
        "flow-log-id",
        "log-group-name",
        "resource-id",
        "traffic-type",
    ];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        match name {
            "deliver-log-status" => vec![self.deliver_logs_status().into()],
            "log-destination-type" => vec![self.destination_type.as_str().into()],
            "flow-log-id" => vec![self.id.clone()],
            "log-group-name" => self.log_group_name.clone().into_iter().collect(),
            "resource-id" => vec![self.resource_id.clone()],
            "traffic-type" => vec![self.traffic_type.clone()],
            _ => Vec::new(),
        }
    }

    fn tag_map(&self) -> Tags {
        self.tags.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vpc::{create_vpc, delete_vpc};
    use crate::{Table, Write};

    fn cwl(ids: &[&str], group: &str) -> CreateRequest {
        CreateRequest {
            resource_type: "VPC".into(),
            resource_ids: ids.iter().map(|s| s.to_string()).collect(),
            traffic_type: Some("ALL".into()),
            log_group_name: Some(group.into()),
            deliver_logs_permission_arn: Some(format!("arn:aws:iam::{OWNER_ID}:role/flow")),
            ..Default::default()
        }
    }

    fn s3(ids: &[&str], arn: &str) -> CreateRequest {
        CreateRequest {
            resource_type: "VPC".into(),
            resource_ids: ids.iter().map(|s| s.to_string()).collect(),
            traffic_type: Some("REJECT".into()),
            log_destination_type: Some("s3".into()),
            log_destination: Some(arn.into()),
            ..Default::default()
        }
    }

    fn code(r: Result<CreateResult, ApiError>) -> String {
        r.unwrap_err().code
    }

    #[test]
    fn creates_with_aws_defaults_and_reports_per_resource_failures() {
        let mut txn = Txn::new(State::new(), 1_700_000_000);
        let v = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let r = create_flow_logs(
            &mut txn,
            &cwl(&[&v.id, "vpc-0123456789abcdef0"], "/aws/vpc/flows"),
        )
        .unwrap();
        assert_eq!(r.flow_log_ids.len(), 1);
        assert!(super::super::ids::is_well_formed(&r.flow_log_ids[0], "fl"));
        assert_eq!(r.unsuccessful.len(), 1);
        assert_eq!(r.unsuccessful[0].code, "InvalidVpcID.NotFound");
        assert_eq!(r.unsuccessful[0].resource_id, "vpc-0123456789abcdef0");
        let f = &txn.state.flow_logs[&r.flow_log_ids[0]];
        assert_eq!(f.log_format, DEFAULT_FORMAT);
        assert_eq!(f.max_aggregation_interval, 600);
        assert_eq!(f.destination_type, DestinationType::CloudWatchLogs);
        assert_eq!(f.dir, "aws/vpc/flows");
        assert_eq!(
            f.log_destination,
            format!("arn:aws:logs:us-east-1:{OWNER_ID}:log-group:/aws/vpc/flows")
        );
        assert_eq!(f.deliver_logs_status(), "SUCCESS");
        assert_eq!(f.creation_time, 1_700_000_000);

        // Same resource, traffic type and destination: per-item FlowLogAlreadyExists; the log
        // group named by its ARN is the same destination.
        let mut again = cwl(&[&v.id], "ignored");
        again.log_group_name = None;
        again.log_destination = Some(format!(
            "arn:aws:logs:us-east-1:{OWNER_ID}:log-group:/aws/vpc/flows:*"
        ));
        let r = create_flow_logs(&mut txn, &again).unwrap();
        assert!(r.flow_log_ids.is_empty());
        assert_eq!(r.unsuccessful[0].code, "FlowLogAlreadyExists");
        // Another traffic type to the same group is a different flow log.
        let mut accept = cwl(&[&v.id], "/aws/vpc/flows");
        accept.traffic_type = Some("ACCEPT".into());
        assert_eq!(
            create_flow_logs(&mut txn, &accept)
                .unwrap()
                .flow_log_ids
                .len(),
            1
        );

        // S3 with a prefix, a subnet-typed request naming a VPC id.
        let r = create_flow_logs(&mut txn, &s3(&[&v.id], "arn:aws:s3:::flow-bucket/a/b/")).unwrap();
        let f = &txn.state.flow_logs[&r.flow_log_ids[0]];
        assert_eq!(f.dir, "flow-bucket/a/b");
        assert_eq!(f.destination_options, Some(S3Options::default()));
        let mut sub = s3(&[&v.id], "arn:aws:s3:::flow-bucket");
        sub.resource_type = "Subnet".into();
        let r = create_flow_logs(&mut txn, &sub).unwrap();
        assert_eq!(r.unsuccessful[0].code, "InvalidSubnetID.NotFound");
    }

    #[test]
    fn refuses_bad_parameters_whole() {
        let mut txn = Txn::new(State::new(), 0);
        let v = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let id = v.id.as_str();
        let cases: Vec<(CreateRequest, &str)> = vec![
            (
                CreateRequest {
                    traffic_type: None,
                    ..cwl(&[id], "g")
                },
                "MissingParameter",
            ),
            (
                CreateRequest {
                    resource_type: "TransitGateway".into(),
                    ..cwl(&[id], "g")
                },
                "InvalidParameterValue",
            ),
            (
                CreateRequest {
                    deliver_logs_permission_arn: None,
                    ..cwl(&[id], "g")
                },
                "InvalidParameter",
            ),
            (
                CreateRequest {
                    log_group_name: None,
                    ..cwl(&[id], "g")
                },
                "InvalidParameter",
            ),
            (
                CreateRequest {
                    log_destination: Some("arn:aws:logs:us-east-1:1:log-group:g".into()),
                    ..cwl(&[id], "g")
                },
                "InvalidParameter",
            ),
            (
                CreateRequest {
                    max_aggregation_interval: Some(10),
                    ..cwl(&[id], "g")
                },
                "InvalidParameter",
            ),
            (cwl(&[id], "../escape"), "InvalidParameterValue"),
            (cwl(&[id], "a/../../b"), "InvalidParameterValue"),
            (cwl(&[id], ".."), "InvalidParameterValue"),
            (cwl(&[id], "bad name"), "InvalidParameterValue"),
            (cwl(&[id], ""), "InvalidParameterValue"),
            (
                CreateRequest {
                    log_group_name: Some("g".into()),
                    ..s3(&[id], "arn:aws:s3:::bucket")
                },
                "InvalidParameter",
            ),
            (s3(&[id], "arn:aws:s3:::Bad_Bucket"), "InvalidParameter"),
            (
                s3(&[id], "arn:aws:s3:::bucket/../x"),
                "InvalidParameterValue",
            ),
            (s3(&[id], "arn:aws:s3:::bucket/AWSLogs"), "InvalidParameter"),
            (s3(&[id], "arn:aws:s3:::a..b"), "InvalidParameter"),
            (
                s3(&[id], "arn:aws:logs:us-east-1:1:log-group:g"),
                "InvalidParameter",
            ),
            (
                CreateRequest {
                    destination_options: Some((Some("parquet".into()), None, None)),
                    ..cwl(&[id], "g")
                },
                "InvalidParameter",
            ),
            // Options asking for a file format or layout softvpc does not write: refused.
            (
                CreateRequest {
                    destination_options: Some((Some("parquet".into()), None, None)),
                    ..s3(&[id], "arn:aws:s3:::bucket")
                },
                "InvalidParameterValue",
            ),
            (
                CreateRequest {
                    destination_options: Some((None, Some(true), None)),
                    ..s3(&[id], "arn:aws:s3:::bucket")
                },
                "InvalidParameterValue",
            ),
            (
                CreateRequest {
                    destination_options: Some((Some("plain-text".into()), None, Some(true))),
                    ..s3(&[id], "arn:aws:s3:::bucket")
                },
                "InvalidParameterValue",
            ),
            (
                CreateRequest {
                    log_format: Some("${version} ${nope}".into()),
                    ..cwl(&[id], "g")
                },
                "InvalidParameterValue",
            ),
            (
                CreateRequest {
                    log_format: Some("${version} ".into()),
                    ..cwl(&[id], "g")
                },
                "InvalidParameterValue",
            ),
            (
                CreateRequest {
                    log_format: Some(String::new()),
                    ..cwl(&[id], "g")
                },
                "InvalidParameterValue",
            ),
            (
                CreateRequest {
                    resource_ids: vec![id.to_string(); MAX_RESOURCES + 1],
                    ..cwl(&[id], "g")
                },
                "InvalidParameterValue",
            ),
        ];
        for (req, want) in cases {
            assert_eq!(code(create_flow_logs(&mut txn, &req)), want, "{req:?}");
        }
        assert!(txn.state.flow_logs.is_empty());
        let kinesis = CreateRequest {
            log_destination_type: Some("kinesis-data-firehose".into()),
            ..s3(
                &[id],
                &format!("arn:aws:firehose:us-east-1:{OWNER_ID}:deliverystream/fh.1"),
            )
        };
        let r = create_flow_logs(&mut txn, &kinesis).unwrap();
        assert_eq!(txn.state.flow_logs[&r.flow_log_ids[0]].dir, "fh.1");
        let custom = CreateRequest {
            log_format: Some("${srcaddr} ${dstaddr} ${reject-reason}".into()),
            max_aggregation_interval: Some(60),
            ..cwl(&[id], "g")
        };
        let r = create_flow_logs(&mut txn, &custom).unwrap();
        let f = &txn.state.flow_logs[&r.flow_log_ids[0]];
        assert_eq!(
            (f.max_aggregation_interval, f.log_format.as_str()),
            (60, "${srcaddr} ${dstaddr} ${reject-reason}")
        );
    }

    #[test]
    fn client_token_makes_create_idempotent() {
        let mut txn = Txn::new(State::new(), 0);
        let a = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let b = create_vpc(&mut txn, "10.1.0.0/16", None, Tags::new()).unwrap();
        let missing = "vpc-0123456789abcdef0";
        let req = CreateRequest {
            client_token: Some("tok-1".into()),
            ..cwl(&[&a.id, missing, &b.id], "g")
        };
        let first = create_flow_logs(&mut txn, &req).unwrap();
        assert_eq!(first.flow_log_ids.len(), 2);
        let again = create_flow_logs(&mut txn, &req).unwrap();
        assert_eq!(again, first);
        assert_eq!(txn.state.flow_logs.len(), 2);
        let other = CreateRequest {
            traffic_type: Some("ACCEPT".into()),
            ..req.clone()
        };
        assert_eq!(
            code(create_flow_logs(&mut txn, &other)),
            "IdempotentParameterMismatch"
        );
        // Every parameter counts, tags included.
        let tagged = CreateRequest {
            tags: Tags::from([("k".to_string(), "v".to_string())]),
            ..req.clone()
        };
        assert_eq!(
            code(create_flow_logs(&mut txn, &tagged)),
            "IdempotentParameterMismatch"
        );
        assert_eq!(txn.state.flow_logs.len(), 2);
    }

    #[test]
    fn delete_reports_unknown_ids_and_resources_take_their_flow_logs() {
        let mut txn = Txn::new(State::new(), 0);
        let v = create_vpc(&mut txn, "10.0.0.0/16", None, Tags::new()).unwrap();
        let ids = create_flow_logs(&mut txn, &cwl(&[&v.id], "g"))
            .unwrap()
            .flow_log_ids;
        let un =
            delete_flow_logs(&mut txn, &[ids[0].clone(), "fl-0123456789abcdef0".into()]).unwrap();
        assert_eq!(un.len(), 1);
        assert_eq!(
            (un[0].code.as_str(), un[0].resource_id.as_str()),
            ("InvalidFlowLogId.NotFound", "fl-0123456789abcdef0")
        );
        assert!(txn.state.flow_logs.is_empty());
        assert_eq!(
            delete_flow_logs(&mut txn, &[]).unwrap_err().code,
            "MissingParameter"
        );

        let kept = create_flow_logs(&mut txn, &cwl(&[&v.id], "g"))
            .unwrap()
            .flow_log_ids;
        set_delivery_error(&mut txn, &kept[0], Some("Access error".into()));
        assert_eq!(
            txn.state.flow_logs[&kept[0]].deliver_logs_status(),
            "FAILED"
        );
        txn.writes.clear();
        delete_vpc(&mut txn, &v.id).unwrap();
        assert!(txn.state.flow_logs.is_empty());
        assert!(txn.writes.iter().any(
            |w| matches!(w, Write::Delete { table: Table::FlowLogs, key } if key == &kept[0])
        ));
    }

    #[test]
    fn formats_are_checked_field_by_field() {
        assert!(check_format(DEFAULT_FORMAT).is_ok());
        assert!(check_format(
            &FIELDS
                .iter()
                .map(|f| format!("${{{f}}}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
        .is_ok());
        for bad in [
            "",
            " ${version}",
            "${version}  ${bytes}",
            "version",
            "${}",
            "${bogus}",
            "${version}${bytes}",
        ] {
            assert!(check_format(bad).is_err(), "{bad}");
        }
    }
}
