//! An instance's metadata options (AWS's `InstanceMetadataOptions`): whether its instance
//! metadata service answers, whether it needs an IMDSv2 token, the hop limit of the token's PUT
//! response, and whether its tags are in the metadata. Set by `RunInstances`' `MetadataOptions`
//! and `ModifyInstanceMetadataOptions`; the host's router serves the metadata accordingly.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::{InstanceState, Txn};

/// The largest `HttpPutResponseHopLimit` AWS accepts.
pub const MAX_HOP_LIMIT: u8 = 64;

/// The options as stored on an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataOptions {
    /// `HttpTokens` `required` (IMDSv2 only); false: `optional` (v1 and v2).
    pub tokens_required: bool,
    /// `HttpPutResponseHopLimit`, 1-64: the IP TTL of the token's PUT response.
    pub hop_limit: u8,
    /// `HttpEndpoint` `enabled`.
    pub endpoint_enabled: bool,
    /// `InstanceMetadataTags` `enabled`.
    pub tags_enabled: bool,
}

impl Default for MetadataOptions {
    /// AWS's defaults for an AMI without `ImdsSupport`: tokens optional, hop limit 1, endpoint
    /// on, tags off.
    fn default() -> Self {
        MetadataOptions {
            tokens_required: false,
            hop_limit: 1,
            endpoint_enabled: true,
            tags_enabled: false,
        }
    }
}

impl MetadataOptions {
    /// `HttpTokens` as AWS writes it.
    pub fn http_tokens(&self) -> &'static str {
        if self.tokens_required {
            "required"
        } else {
            "optional"
        }
    }

    /// `HttpEndpoint` as AWS writes it.
    pub fn http_endpoint(&self) -> &'static str {
        enabled(self.endpoint_enabled)
    }

    /// `InstanceMetadataTags` as AWS writes it.
    pub fn instance_metadata_tags(&self) -> &'static str {
        enabled(self.tags_enabled)
    }

    /// These options with `req`'s members applied (absent members keep their value), checked
    /// as AWS checks them.
    pub fn apply(&self, req: &MetadataOptionsRequest) -> Result<MetadataOptions, ApiError> {
        let mut out = *self;
        if let Some(t) = &req.http_tokens {
            out.tokens_required = match t.as_str() {
                "required" => true,
                "optional" => false,
                other => return Err(bad_enum("HttpTokens", other, "optional, required")),
            };
        }
        if let Some(n) = req.hop_limit {
            out.hop_limit = u8::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_HOP_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid_value(format!(
                        "Invalid value '{n}' for HttpPutResponseHopLimit. \
                         Valid values are integers from 1 to {MAX_HOP_LIMIT}."
                    ))
                })?;
        }
        if let Some(e) = &req.http_endpoint {
            out.endpoint_enabled = parse_enabled("HttpEndpoint", e)?;
        }
        if let Some(t) = &req.instance_metadata_tags {
            out.tags_enabled = parse_enabled("InstanceMetadataTags", t)?;
        }
        if let Some(v6) = &req.http_protocol_ipv6 {
            if parse_enabled("HttpProtocolIpv6", v6)? {
                return Err(ApiError::invalid_value(
                    "The parameter HttpProtocolIpv6 is not supported: there is no IPv6 (no \
                     instance metadata IPv6 endpoint).",
                ));
            }
        }
        Ok(out)
    }
}

fn enabled(b: bool) -> &'static str {
    if b {
        "enabled"
    } else {
        "disabled"
    }
}

fn parse_enabled(name: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "enabled" => Ok(true),
        "disabled" => Ok(false),
        other => Err(bad_enum(name, other, "enabled, disabled")),
    }
}

fn bad_enum(name: &str, v: &str, valid: &str) -> ApiError {
    ApiError::invalid_value(format!(
        "Invalid value '{v}' for {name}. Valid values: {valid}."
    ))
}

/// `MetadataOptions` of `RunInstances`, or the members of `ModifyInstanceMetadataOptions`, as
/// given (checked by [`MetadataOptions::apply`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataOptionsRequest {
    /// `HttpTokens`.
    pub http_tokens: Option<String>,
    /// `HttpPutResponseHopLimit`.
    pub hop_limit: Option<i64>,
    /// `HttpEndpoint`.
    pub http_endpoint: Option<String>,
    /// `HttpProtocolIpv6`.
    pub http_protocol_ipv6: Option<String>,
    /// `InstanceMetadataTags`.
    pub instance_metadata_tags: Option<String>,
}

impl MetadataOptionsRequest {
    /// The members for an idempotency digest, in a fixed order ("" for absent).
    pub fn digest_parts(&self) -> [String; 5] {
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        [
            s(&self.http_tokens),
            self.hop_limit.map(|n| n.to_string()).unwrap_or_default(),
            s(&self.http_endpoint),
            s(&self.http_protocol_ipv6),
            s(&self.instance_metadata_tags),
        ]
    }
}

/// `ModifyInstanceMetadataOptions`: the instance's new options.
pub fn modify(
    txn: &mut Txn,
    instance_id: &str,
    req: &MetadataOptionsRequest,
) -> Result<MetadataOptions, ApiError> {
    let Some(current) = txn.state.instances.get(instance_id).cloned() else {
        return Err(ApiError::not_found(
            "InvalidInstanceID.NotFound",
            "instance",
            &[instance_id],
        ));
    };
    if matches!(
        current.state,
        InstanceState::Terminated | InstanceState::ShuttingDown
    ) {
        return Err(ApiError::new(
            "IncorrectInstanceState",
            format!(
                "The instance '{instance_id}' is not in a state from which its metadata options \
                 can be modified."
            ),
        ));
    }
    let options = current.metadata_options.apply(req)?;
    if options != current.metadata_options {
        let mut i = (*current).clone();
        i.metadata_options = options;
        txn.put(i);
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> MetadataOptionsRequest {
        MetadataOptionsRequest::default()
    }

    #[test]
    fn absent_members_keep_their_value_and_present_ones_are_checked() {
        let d = MetadataOptions::default();
        assert_eq!(d.apply(&req()).unwrap(), d);
        let r = MetadataOptionsRequest {
            http_tokens: Some("required".into()),
            hop_limit: Some(2),
            ..req()
        };
        let o = d.apply(&r).unwrap();
        assert!(o.tokens_required && o.hop_limit == 2 && o.endpoint_enabled && !o.tags_enabled);
        let o2 = o
            .apply(&MetadataOptionsRequest {
                http_endpoint: Some("disabled".into()),
                instance_metadata_tags: Some("enabled".into()),
                http_protocol_ipv6: Some("disabled".into()),
                ..req()
            })
            .unwrap();
        assert!(o2.tokens_required && o2.hop_limit == 2 && !o2.endpoint_enabled && o2.tags_enabled);
        for n in [0, 65, -1, 1000] {
            let e = d
                .apply(&MetadataOptionsRequest {
                    hop_limit: Some(n),
                    ..req()
                })
                .unwrap_err();
            assert_eq!(e.code, "InvalidParameterValue", "{n}");
        }
        for n in [1, 64] {
            assert!(d
                .apply(&MetadataOptionsRequest {
                    hop_limit: Some(n),
                    ..req()
                })
                .is_ok());
        }
        let e = d
            .apply(&MetadataOptionsRequest {
                http_protocol_ipv6: Some("enabled".into()),
                ..req()
            })
            .unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue");
        assert!(e.message.contains("HttpProtocolIpv6"));
    }
}
