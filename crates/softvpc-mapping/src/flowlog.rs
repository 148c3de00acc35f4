//! Flow log settings as the mapping protocol carries them with each ENI ([`FlowLogSpec`]), and
//! AWS's record fields ([`Field`]): the `LogFormat` parser, each field's version, and the
//! default format. The agent formats records with these; the server makes the specs.

use std::fmt;

use softvpc_proto::pb;

use crate::record::RecordError;

/// Every flow log record field AWS documents (versions 2 to 10), in AWS's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Field {
    Version,
    AccountId,
    InterfaceId,
    Srcaddr,
    Dstaddr,
    Srcport,
    Dstport,
    Protocol,
    Packets,
    Bytes,
    Start,
    End,
    Action,
    LogStatus,
    VpcId,
    SubnetId,
    InstanceId,
    TcpFlags,
    Type,
    PktSrcaddr,
    PktDstaddr,
    Region,
    AzId,
    SublocationType,
    SublocationId,
    PktSrcAwsService,
    PktDstAwsService,
    FlowDirection,
    TrafficPath,
    EcsClusterArn,
    EcsClusterName,
    EcsContainerInstanceArn,
    EcsContainerInstanceId,
    EcsContainerId,
    EcsSecondContainerId,
    EcsServiceName,
    EcsTaskDefinitionArn,
    EcsTaskArn,
    EcsTaskId,
    RejectReason,
    ResourceId,
    EncryptionStatus,
}

/// The fields with their names, in AWS's order.
pub const FIELDS: [(Field, &str); 42] = [
    (Field::Version, "version"),
    (Field::AccountId, "account-id"),
    (Field::InterfaceId, "interface-id"),
    (Field::Srcaddr, "srcaddr"),
    (Field::Dstaddr, "dstaddr"),
    (Field::Srcport, "srcport"),
    (Field::Dstport, "dstport"),
    (Field::Protocol, "protocol"),
    (Field::Packets, "packets"),
    (Field::Bytes, "bytes"),
    (Field::Start, "start"),
    (Field::End, "end"),
    (Field::Action, "action"),
    (Field::LogStatus, "log-status"),
    (Field::VpcId, "vpc-id"),
    (Field::SubnetId, "subnet-id"),
    (Field::InstanceId, "instance-id"),
    (Field::TcpFlags, "tcp-flags"),
    (Field::Type, "type"),
    (Field::PktSrcaddr, "pkt-srcaddr"),
    (Field::PktDstaddr, "pkt-dstaddr"),
    (Field::Region, "region"),
    (Field::AzId, "az-id"),
    (Field::SublocationType, "sublocation-type"),
    (Field::SublocationId, "sublocation-id"),
    (Field::PktSrcAwsService, "pkt-src-aws-service"),
    (Field::PktDstAwsService, "pkt-dst-aws-service"),
    (Field::FlowDirection, "flow-direction"),
    (Field::TrafficPath, "traffic-path"),
    (Field::EcsClusterArn, "ecs-cluster-arn"),
    (Field::EcsClusterName, "ecs-cluster-name"),
    (Field::EcsContainerInstanceArn, "ecs-container-instance-arn"),
    (Field::EcsContainerInstanceId, "ecs-container-instance-id"),
    (Field::EcsContainerId, "ecs-container-id"),
    (Field::EcsSecondContainerId, "ecs-second-container-id"),
    (Field::EcsServiceName, "ecs-service-name"),
    (Field::EcsTaskDefinitionArn, "ecs-task-definition-arn"),
    (Field::EcsTaskArn, "ecs-task-arn"),
    (Field::EcsTaskId, "ecs-task-id"),
    (Field::RejectReason, "reject-reason"),
    (Field::ResourceId, "resource-id"),
    (Field::EncryptionStatus, "encryption-status"),
];

impl Field {
    /// AWS's name.
    pub fn name(self) -> &'static str {
        FIELDS[self as usize].1
    }

    /// The field named `name`.
    pub fn parse(name: &str) -> Option<Field> {
        FIELDS.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }

    /// The record version that introduced it (AWS's `version` field is the highest among the
    /// chosen fields). 2: the default fields; 3: vpc-id to pkt-dstaddr; 4: region to
    /// sublocation-id; 5: the AWS services, flow-direction, traffic-path; 7: ECS; then
    /// reject-reason 8 and resource-id / encryption-status 10 (not confirmed by AWS's
    /// documentation, see aws-data-plane.md).
    pub fn version(self) -> u8 {
        use Field::*;
        match self {
            Version | AccountId | InterfaceId | Srcaddr | Dstaddr | Srcport | Dstport
            | Protocol | Packets | Bytes | Start | End | Action | LogStatus => 2,
            VpcId | SubnetId | InstanceId | TcpFlags | Type | PktSrcaddr | PktDstaddr => 3,
            Region | AzId | SublocationType | SublocationId => 4,
            PktSrcAwsService | PktDstAwsService | FlowDirection | TrafficPath => 5,
            EcsClusterArn
            | EcsClusterName
            | EcsContainerInstanceArn
            | EcsContainerInstanceId
            | EcsContainerId
            | EcsSecondContainerId
            | EcsServiceName
            | EcsTaskDefinitionArn
            | EcsTaskArn
            | EcsTaskId => 7,
            RejectReason => 8,
            ResourceId | EncryptionStatus => 10,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The default format's fields (version 2).
pub const DEFAULT_FIELDS: [Field; 14] = [
    Field::Version,
    Field::AccountId,
    Field::InterfaceId,
    Field::Srcaddr,
    Field::Dstaddr,
    Field::Srcport,
    Field::Dstport,
    Field::Protocol,
    Field::Packets,
    Field::Bytes,
    Field::Start,
    Field::End,
    Field::Action,
    Field::LogStatus,
];

/// Parses AWS's `LogFormat`: `${field}` tokens separated by single spaces, each a known field.
/// `None` for anything else (empty, unknown field, other separators).
pub fn parse_format(format: &str) -> Option<Vec<Field>> {
    if format.is_empty() {
        return None;
    }
    format
        .split(' ')
        .map(|t| {
            t.strip_prefix("${")
                .and_then(|t| t.strip_suffix('}'))
                .and_then(Field::parse)
        })
        .collect()
}

/// The `LogFormat` text of `fields`.
pub fn format_string(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| format!("${{{}}}", f.name()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which records a flow log keeps (`TrafficType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficType {
    /// ACCEPT records only.
    Accept,
    /// REJECT records only.
    Reject,
    /// Both.
    All,
}

impl TrafficType {
    /// AWS's word.
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficType::Accept => "ACCEPT",
            TrafficType::Reject => "REJECT",
            TrafficType::All => "ALL",
        }
    }

    /// Parses AWS's word.
    pub fn parse(s: &str) -> Option<TrafficType> {
        match s {
            "ACCEPT" => Some(TrafficType::Accept),
            "REJECT" => Some(TrafficType::Reject),
            "ALL" => Some(TrafficType::All),
            _ => None,
        }
    }
}

/// One flow log covering an ENI, as its host's agent needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowLogSpec {
    /// `fl-...`.
    pub flow_log_id: String,
    /// Which records it keeps.
    pub traffic_type: TrafficType,
    /// `MaxAggregationInterval` in seconds: 60 or 600.
    pub interval: u32,
    /// The record's fields, in order.
    pub fields: Vec<Field>,
    /// `account-id`.
    pub account_id: String,
    /// `region`.
    pub region: String,
    /// `az-id` (empty: `-`).
    pub az_id: String,
}

impl FlowLogSpec {
    /// The protobuf form.
    pub fn to_pb(&self) -> pb::FlowLogSpec {
        pb::FlowLogSpec {
            flow_log_id: self.flow_log_id.clone(),
            traffic_type: self.traffic_type.as_str().into(),
            max_aggregation_interval: self.interval,
            log_format: format_string(&self.fields),
            account_id: self.account_id.clone(),
            region: self.region.clone(),
            az_id: self.az_id.clone(),
        }
    }

    /// Checks and converts a protobuf spec of ENI `eni_id`.
    pub fn from_pb(eni_id: &str, s: &pb::FlowLogSpec) -> Result<FlowLogSpec, RecordError> {
        let bad = |field: &'static str, value: &str| RecordError::BadField {
            kind: "eni",
            id: eni_id.to_string(),
            field,
            value: value.to_string(),
        };
        if s.flow_log_id.is_empty() {
            return Err(bad("flow_log_id", ""));
        }
        if ![60, 600].contains(&s.max_aggregation_interval) {
            return Err(bad(
                "max_aggregation_interval",
                &s.max_aggregation_interval.to_string(),
            ));
        }
        Ok(FlowLogSpec {
            flow_log_id: s.flow_log_id.clone(),
            traffic_type: TrafficType::parse(&s.traffic_type)
                .ok_or_else(|| bad("traffic_type", &s.traffic_type))?,
            interval: s.max_aggregation_interval,
            fields: parse_format(&s.log_format).ok_or_else(|| bad("log_format", &s.log_format))?,
            account_id: s.account_id.clone(),
            region: s.region.clone(),
            az_id: s.az_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_default_format_parses_to_the_fourteen_version_2_fields() {
        let default = "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} \
${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}";
        assert_eq!(parse_format(default).unwrap(), DEFAULT_FIELDS);
        assert_eq!(format_string(&DEFAULT_FIELDS), default);
        for (i, (f, _)) in FIELDS.iter().enumerate() {
            assert_eq!(*f as usize, i);
            assert_eq!(Field::parse(f.name()), Some(*f));
        }
    }

    #[test]
    fn bad_formats_are_refused() {
        for bad in [
            "",
            " ",
            "${version}  ${srcaddr}",
            "${version},${srcaddr}",
            "${nope}",
            "version",
            "${version",
            "${}",
        ] {
            assert_eq!(parse_format(bad), None, "{bad:?}");
        }
    }

    proptest! {
        /// Any text: no panic; what parses prints back to itself.
        #[test]
        fn parse_format_round_trips(s in "\\PC{0,80}") {
            if let Some(fields) = parse_format(&s) {
                prop_assert_eq!(format_string(&fields), s);
            }
        }

        /// Any list of fields prints to a format that parses back to it.
        #[test]
        fn formats_of_fields_parse_back(idx in proptest::collection::vec(0usize..42, 1..50)) {
            let fields: Vec<Field> = idx.iter().map(|i| FIELDS[*i].0).collect();
            prop_assert_eq!(parse_format(&format_string(&fields)), Some(fields));
        }
    }
}
