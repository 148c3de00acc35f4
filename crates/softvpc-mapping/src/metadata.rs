//! The instance metadata an ENI's record carries for its host's metadata service (issue 11):
//! what `169.254.169.254` serves about the ENI's instance beyond the ENI itself (type, image,
//! placement, launch, tags) and the instance's metadata options. The server fills it only for
//! an ENI attached to an instance placed on a host.

use std::collections::BTreeMap;

use softvpc_proto::pb;

use crate::record::RecordError;

/// The instance's part of its metadata, and its `MetadataOptions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceMetadata {
    /// `instance-type`.
    pub instance_type: String,
    /// `ami-id`.
    pub image_id: String,
    /// `placement/availability-zone`.
    pub availability_zone: String,
    /// `placement/region`.
    pub region: String,
    /// The owner account (`accountId`, `owner-id`).
    pub account_id: String,
    /// `reservation-id`.
    pub reservation_id: String,
    /// `ami-launch-index`.
    pub ami_launch_index: u32,
    /// Seconds since the Unix epoch (`pendingTime`).
    pub launch_time: u64,
    /// `HttpTokens` `required`.
    pub tokens_required: bool,
    /// `HttpPutResponseHopLimit` (1-64).
    pub hop_limit: u8,
    /// `HttpEndpoint` `enabled`.
    pub endpoint_enabled: bool,
    /// `InstanceMetadataTags` `enabled`.
    pub tags_enabled: bool,
    /// The instance's tags (empty unless `tags_enabled`).
    pub tags: BTreeMap<String, String>,
    /// The names of the ENI's security groups, in the order of its ids.
    pub security_group_names: Vec<String>,
    /// The region's private DNS domain (`ec2.internal`, `<region>.compute.internal`).
    pub private_domain: String,
    /// `user-data`: the instance's user data, decoded (empty: it has none).
    pub user_data: Vec<u8>,
    /// `public-keys/0`: the key pair named at launch and its OpenSSH public key line.
    pub public_key: Option<(String, String)>,
}

impl Default for InstanceMetadata {
    fn default() -> Self {
        InstanceMetadata {
            instance_type: String::new(),
            image_id: String::new(),
            availability_zone: String::new(),
            region: String::new(),
            account_id: String::new(),
            reservation_id: String::new(),
            ami_launch_index: 0,
            launch_time: 0,
            tokens_required: false,
            hop_limit: 1,
            endpoint_enabled: true,
            tags_enabled: false,
            tags: BTreeMap::new(),
            security_group_names: Vec::new(),
            private_domain: "ec2.internal".to_string(),
            user_data: Vec::new(),
            public_key: None,
        }
    }
}

impl InstanceMetadata {
    /// The protobuf form.
    pub fn to_pb(&self) -> pb::InstanceMetadata {
        pb::InstanceMetadata {
            instance_type: self.instance_type.clone(),
            image_id: self.image_id.clone(),
            availability_zone: self.availability_zone.clone(),
            region: self.region.clone(),
            account_id: self.account_id.clone(),
            reservation_id: self.reservation_id.clone(),
            ami_launch_index: self.ami_launch_index,
            launch_time: self.launch_time,
            tokens_required: self.tokens_required,
            hop_limit: u32::from(self.hop_limit),
            endpoint_disabled: !self.endpoint_enabled,
            tags_enabled: self.tags_enabled,
            tags: self
                .tags
                .iter()
                .map(|(k, v)| pb::MetadataTag {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            security_group_names: self.security_group_names.clone(),
            private_domain: self.private_domain.clone(),
            user_data: self.user_data.clone(),
            key_name: self
                .public_key
                .as_ref()
                .map(|k| k.0.clone())
                .unwrap_or_default(),
            public_key: self
                .public_key
                .as_ref()
                .map(|k| k.1.clone())
                .unwrap_or_default(),
        }
    }

    /// Checks and converts the protobuf form of ENI `eni_id`'s metadata.
    pub fn from_pb(eni_id: &str, m: &pb::InstanceMetadata) -> Result<Self, RecordError> {
        let hop_limit = match m.hop_limit {
            0 => 1,
            n @ 1..=64 => n as u8,
            n => {
                return Err(RecordError::BadField {
                    kind: "eni",
                    id: eni_id.to_string(),
                    field: "instance_metadata.hop_limit",
                    value: n.to_string(),
                })
            }
        };
        Ok(InstanceMetadata {
            instance_type: m.instance_type.clone(),
            image_id: m.image_id.clone(),
            availability_zone: m.availability_zone.clone(),
            region: m.region.clone(),
            account_id: m.account_id.clone(),
            reservation_id: m.reservation_id.clone(),
            ami_launch_index: m.ami_launch_index,
            launch_time: m.launch_time,
            tokens_required: m.tokens_required,
            hop_limit,
            endpoint_enabled: !m.endpoint_disabled,
            tags_enabled: m.tags_enabled,
            tags: m
                .tags
                .iter()
                .map(|t| (t.key.clone(), t.value.clone()))
                .collect(),
            security_group_names: m.security_group_names.clone(),
            private_domain: if m.private_domain.is_empty() {
                "ec2.internal".to_string()
            } else {
                m.private_domain.clone()
            },
            user_data: m.user_data.clone(),
            public_key: (!m.key_name.is_empty() || !m.public_key.is_empty())
                .then(|| (m.key_name.clone(), m.public_key.clone())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_a_hop_limit_above_64() {
        let m = InstanceMetadata {
            instance_type: "t3.micro".into(),
            hop_limit: 2,
            tokens_required: true,
            endpoint_enabled: false,
            tags_enabled: true,
            tags: [("Name".to_string(), "web".to_string())].into(),
            security_group_names: vec!["default".into()],
            user_data: b"#!/bin/sh\n\xff\x00".to_vec(),
            public_key: Some(("k".into(), "ssh-ed25519 AAAA k".into())),
            ..Default::default()
        };
        assert_eq!(InstanceMetadata::from_pb("eni-1", &m.to_pb()).unwrap(), m);
        let mut pb = m.to_pb();
        pb.hop_limit = 65;
        assert!(InstanceMetadata::from_pb("eni-1", &pb).is_err());
        pb.hop_limit = 0;
        assert_eq!(
            InstanceMetadata::from_pb("eni-1", &pb).unwrap().hop_limit,
            1
        );
    }
}
