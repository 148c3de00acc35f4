//! The discovery calls SDKs and tools make before anything else: DescribeRegions (one region,
//! `us-east-1`), DescribeAvailabilityZones (the zones subnets may be created in) and
//! DescribeAccountAttributes (VPC-only platform, the default VPC, limits softvpc enforces).

use softvpc_ec2_protocol::Value;

use super::input;
use super::Ctx;
use softvpc_model::filter::{self, Filterable};
use softvpc_model::peering::REGION;
/// The zones of [`REGION`] (the ones CreateSubnet accepts and hosts register in) and their
/// zone ids: the model's list, the one source.
pub use softvpc_model::zone::ZONES;
use softvpc_model::{ApiError, State, Tags};

/// One availability zone.
pub struct Zone {
    name: &'static str,
    id: &'static str,
}

impl Filterable for Zone {
    const FILTERS: &'static [&'static str] = &[
        "group-name",
        "opt-in-status",
        "region-name",
        "state",
        "zone-id",
        "zone-name",
        "zone-type",
    ];
    // Only Local and Wavelength Zones have parents, messages or long group names.
    const UNHELD: &'static [&'static str] = &[
        "group-long-name",
        "message",
        "parent-zone-id",
        "parent-zone-name",
    ];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        let v = match name {
            "group-name" | "region-name" => REGION,
            "opt-in-status" => "opt-in-not-required",
            "state" => "available",
            "zone-id" => self.id,
            "zone-name" => self.name,
            "zone-type" => "availability-zone",
            _ => return Vec::new(),
        };
        vec![v.to_string()]
    }

    fn tag_map(&self) -> Tags {
        Tags::new()
    }
}

/// The region.
pub struct Region;

impl Filterable for Region {
    const FILTERS: &'static [&'static str] = &["endpoint", "opt-in-status", "region-name"];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        let v = match name {
            "endpoint" => format!("ec2.{REGION}.amazonaws.com"),
            "opt-in-status" => "opt-in-not-required".into(),
            "region-name" => REGION.into(),
            _ => return Vec::new(),
        };
        vec![v]
    }

    fn tag_map(&self) -> Tags {
        Tags::new()
    }
}

/// Refuses names not in `known` as AWS does: `Invalid <what>: [a, b]`.
fn check_names(given: &[String], known: &[&str], what: &str) -> Result<(), ApiError> {
    let bad: Vec<&str> = given
        .iter()
        .map(String::as_str)
        .filter(|n| !known.contains(n))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_value(format!(
            "Invalid {what}: [{}]",
            bad.join(", ")
        )))
    }
}

pub fn describe_availability_zones(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let names = input::id_list(input, "ZoneNames");
    let ids = input::id_list(input, "ZoneIds");
    let filters = input::filters(input)?;
    filter::check::<Zone>(&filters)?;
    check_names(&names, &ZONES.map(|z| z.0), "availability zone")?;
    check_names(&ids, &ZONES.map(|z| z.1), "availability zone")?;
    let state = ctx.cp.state();
    let zones: Vec<Zone> = ZONES
        .iter()
        .map(|&(name, id)| Zone { name, id })
        .filter(|z| names.is_empty() || names.iter().any(|n| n == z.name))
        .filter(|z| ids.is_empty() || ids.iter().any(|i| i == z.id))
        .filter(|z| filter::matches(z, &state, &filters))
        .collect();
    Ok(Value::new_struct().with(
        "AvailabilityZones",
        input::list_of(&zones, |z| {
            Value::new_struct()
                .with("OptInStatus", "opt-in-not-required")
                .with("Messages", Value::List(Vec::new()))
                .with("RegionName", REGION)
                .with("ZoneName", z.name)
                .with("ZoneId", z.id)
                .with("GroupName", REGION)
                .with("NetworkBorderGroup", REGION)
                .with("ZoneType", "availability-zone")
                .with("State", "available")
        }),
    ))
}

pub fn describe_regions(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let names = input::id_list(input, "RegionNames");
    let filters = input::filters(input)?;
    filter::check::<Region>(&filters)?;
    check_names(&names, &[REGION], "region")?;
    let state = ctx.cp.state();
    let list: Vec<Value> = [Region]
        .iter()
        .filter(|r| filter::matches(*r, &state, &filters))
        .map(|_| {
            Value::new_struct()
                .with("OptInStatus", "opt-in-not-required")
                .with("RegionName", REGION)
                .with("Endpoint", format!("ec2.{REGION}.amazonaws.com"))
        })
        .collect();
    Ok(Value::new_struct().with("Regions", Value::List(list)))
}

pub fn describe_account_attributes(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    let state = ctx.cp.state();
    let default_vpc = state
        .vpcs
        .values()
        .find(|v| v.is_default)
        .map_or_else(|| "none".to_string(), |v| v.id.clone());
    let all: [(&str, Vec<String>); 4] = [
        ("supported-platforms", vec!["VPC".into()]),
        ("default-vpc", vec![default_vpc]),
        (
            "vpc-max-security-groups-per-interface",
            vec![state.quotas.groups_per_interface.to_string()],
        ),
        (
            "max-instances",
            vec![softvpc_model::instance::MAX_LAUNCH.to_string()],
        ),
    ];
    let wanted = input::id_list(input, "AttributeNames");
    let list = all
        .iter()
        .filter(|(name, _)| wanted.is_empty() || wanted.iter().any(|w| w == name))
        .map(|(name, values)| {
            Value::new_struct().with("AttributeName", *name).with(
                "AttributeValues",
                input::list_of(values, |v| {
                    Value::new_struct().with("AttributeValue", v.as_str())
                }),
            )
        })
        .collect();
    Ok(Value::new_struct().with("AccountAttributes", Value::List(list)))
}
