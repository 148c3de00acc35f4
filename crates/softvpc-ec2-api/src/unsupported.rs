//! Members of the EC2 model that the handlers do not read, refused by name before the handler
//! runs, so that nothing a client sends is silently ignored (issue 13). Members a handler
//! refuses itself (with its own wording or code) are not listed here. `tests/api/
//! test_input_members.py` walks botocore's model and checks that every member of every served
//! action is implemented, accepted without effect (listed in `docs/ec2-api-coverage.md` with the
//! reason) or refused with an error naming it.

use softvpc_ec2_protocol::Value;

use crate::error::ApiError;
use crate::input;
use softvpc_model::peering::REGION;
use softvpc_model::OWNER_ID;

const NO_IPV6: &str = "there is no IPv6";
const NO_POOLS: &str = "addresses come from softvpc's own pool, there are no IPAM or BYOIP pools";
const NO_ENA: &str = "interfaces are virtual, with no ENA features";
const NO_PREFIXES: &str = "interfaces have addresses, not prefixes";
const NO_TGW: &str = "there are no such gateways or endpoints";

/// (action, [(member, why)]): refused when the member asks for something (see
/// [`input::refuse_unsupported`]: `false`, 0 and empty values pass).
static REFUSED: &[(&str, &[(&str, &str)])] = &[
    (
        "AllocateAddress",
        &[
            ("CustomerOwnedIpv4Pool", NO_POOLS),
            ("IpamPoolId", NO_POOLS),
        ],
    ),
    (
        "AssignPrivateIpAddresses",
        &[
            ("Ipv4Prefixes", NO_PREFIXES),
            ("Ipv4PrefixCount", NO_PREFIXES),
        ],
    ),
    (
        "UnassignPrivateIpAddresses",
        &[("Ipv4Prefixes", NO_PREFIXES)],
    ),
    (
        "AssociateRouteTable",
        &[("PublicIpv4Pool", "there are no public IPv4 pools to route")],
    ),
    (
        "AttachNetworkInterface",
        &[
            (
                "NetworkCardIndex",
                "instances have one network card (index 0)",
            ),
            ("EnaSrdSpecification", NO_ENA),
            ("EnaQueueCount", NO_ENA),
        ],
    ),
    (
        "ModifyNetworkInterfaceAttribute",
        &[
            ("EnaSrdSpecification", NO_ENA),
            ("EnablePrimaryIpv6", NO_IPV6),
            (
                "AssociatePublicIpAddress",
                "public addresses come with RunInstances or an Elastic IP",
            ),
            ("AssociatedSubnetIds", "interfaces belong to one subnet"),
        ],
    ),
    (
        "CreateNatGateway",
        &[
            (
                "AvailabilityMode",
                "NAT gateways are zonal, in their subnet",
            ),
            ("VpcId", "NAT gateways are zonal: give SubnetId"),
            (
                "AvailabilityZoneAddresses",
                "NAT gateways are zonal, in their subnet",
            ),
            ("SecondaryAllocationIds", "a NAT gateway has one address"),
            (
                "SecondaryPrivateIpAddresses",
                "a NAT gateway has one address",
            ),
            (
                "SecondaryPrivateIpAddressCount",
                "a NAT gateway has one address",
            ),
        ],
    ),
    (
        "CreateRoute",
        &[
            ("VpcEndpointId", NO_TGW),
            ("TransitGatewayId", NO_TGW),
            ("LocalGatewayId", NO_TGW),
            ("CarrierGatewayId", NO_TGW),
            ("CoreNetworkArn", NO_TGW),
            ("OdbNetworkArn", NO_TGW),
            ("EgressOnlyInternetGatewayId", NO_IPV6),
        ],
    ),
    (
        "ReplaceRoute",
        &[
            ("VpcEndpointId", NO_TGW),
            ("TransitGatewayId", NO_TGW),
            ("LocalGatewayId", NO_TGW),
            ("CarrierGatewayId", NO_TGW),
            ("CoreNetworkArn", NO_TGW),
            ("OdbNetworkArn", NO_TGW),
            ("EgressOnlyInternetGatewayId", NO_IPV6),
        ],
    ),
    (
        "ModifyVpcAttribute",
        &[(
            "EnableNetworkAddressUsageMetrics",
            "network address usage is not metered",
        )],
    ),
    (
        "StopInstances",
        &[("Hibernate", "instances have no memory to save")],
    ),
];

/// (action, member, the one value accepted, why): members that can only name what exists here.
static ONLY: &[(&str, &str, &str, &str)] = &[
    (
        "AllocateAddress",
        "NetworkBorderGroup",
        REGION,
        "addresses belong to the server's region",
    ),
    (
        "ReleaseAddress",
        "NetworkBorderGroup",
        REGION,
        "addresses belong to the server's region",
    ),
    (
        "AuthorizeSecurityGroupIngress",
        "SourceSecurityGroupOwnerId",
        OWNER_ID,
        "groups belong to the one account",
    ),
    (
        "AuthorizeSecurityGroupEgress",
        "SourceSecurityGroupOwnerId",
        OWNER_ID,
        "groups belong to the one account",
    ),
    (
        "RevokeSecurityGroupIngress",
        "SourceSecurityGroupOwnerId",
        OWNER_ID,
        "groups belong to the one account",
    ),
    (
        "RevokeSecurityGroupEgress",
        "SourceSecurityGroupOwnerId",
        OWNER_ID,
        "groups belong to the one account",
    ),
];

/// Refuses a member of `action` listed in [`REFUSED`] that asks for something, or one of
/// [`ONLY`] with another value than the one accepted.
pub(crate) fn check(action: &str, input: &Value) -> Result<(), ApiError> {
    if let Some((_, members)) = REFUSED.iter().find(|(a, _)| *a == action) {
        input::refuse_unsupported(input, members)?;
    }
    for (_, member, accepted, why) in ONLY.iter().filter(|o| o.0 == action) {
        only_value(input, member, accepted, why)?;
    }
    Ok(())
}

/// Refuses `member` when its value is not `accepted`.
fn only_value(input: &Value, member: &str, accepted: &str, why: &str) -> Result<(), ApiError> {
    match input::optional(input, member) {
        Some(v) if v != accepted => Err(ApiError::invalid_value(format!(
            "The parameter {member} is not supported: {why}."
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_member_is_in_the_model() {
        let model = softvpc_ec2_protocol::model();
        let listed = REFUSED
            .iter()
            .flat_map(|(a, ms)| ms.iter().map(move |(m, _)| (*a, *m)))
            .chain(ONLY.iter().map(|o| (o.0, o.1)));
        for (action, m) in listed {
            assert!(
                crate::find_action(action).is_some(),
                "{action} is not served"
            );
            let op = model.operation(action).expect("op");
            let shape = model.shape(op.input.expect("input"));
            let softvpc_ec2_protocol::model::ShapeKind::Structure(st) = &shape.kind else {
                panic!("{action}: input is not a structure")
            };
            assert!(
                st.members.iter().any(|x| x.name == m),
                "{action}.{m} not in the model"
            );
        }
    }
}
