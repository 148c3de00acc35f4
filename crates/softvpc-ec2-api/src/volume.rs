//! DescribeVolumes: the instances' root volume records (see [`softvpc_model::volume`]).

use softvpc_ec2_protocol::Value;

use super::input::{self, timestamp, ValueExt};
use super::{Ctx, Listing};
use softvpc_model::volume::{Volume, ROOT_IOPS, ROOT_THROUGHPUT};
use softvpc_model::ApiError;

fn volume_value(v: &Volume) -> Value {
    let attachments: Vec<Value> = v
        .attachment
        .iter()
        .map(|a| {
            Value::new_struct()
                .with("AttachTime", timestamp(a.attach_time))
                .with("Device", a.device.as_str())
                .with("InstanceId", a.instance_id.as_str())
                .with("State", "attached")
                .with("VolumeId", v.id.as_str())
                .with("DeleteOnTermination", a.delete_on_termination)
        })
        .collect();
    let gp3 = v.volume_type == "gp3";
    Value::new_struct()
        .with("Attachments", attachments)
        .with("AvailabilityZone", v.availability_zone.as_str())
        .with("CreateTime", timestamp(v.create_time))
        .with("Encrypted", false)
        .with("Size", v.size_gib)
        .with("SnapshotId", "")
        .with("State", v.state())
        .with("VolumeId", v.id.as_str())
        .with_opt(
            "Iops",
            (v.volume_type != "standard").then_some(if gp3 {
                ROOT_IOPS
            } else {
                // gp2: 3 IOPS per GiB, at least 100.
                (v.size_gib * 3).max(100)
            }),
        )
        .with_opt("Throughput", gp3.then_some(ROOT_THROUGHPUT))
        .with_opt("Tags", input::tags_opt(&v.tags))
        .with("VolumeType", v.volume_type.as_str())
        .with("MultiAttachEnabled", false)
}

/// Largest page (AWS answers at most 500 volumes whatever `MaxResults` says).
const MAX_PAGE: i64 = 500;

pub fn describe_volumes(ctx: &Ctx<'_>, input: &Value) -> Result<Value, ApiError> {
    volume_listing(ctx, input).map(Listing::into_value)
}

/// DescribeVolumes as a [`Listing`] (streamed past 256 volumes: one root volume per instance).
pub fn volume_listing(ctx: &Ctx<'_>, input: &Value) -> Result<Listing, ApiError> {
    let state = ctx.cp.state();
    let mut input = input.clone();
    if input.get_i64("MaxResults").is_some_and(|m| m > MAX_PAGE) {
        input = input.with("MaxResults", MAX_PAGE);
    }
    let (items, next) = input::describe(
        &state,
        &state.volumes,
        &input,
        "VolumeIds",
        ("InvalidVolume.NotFound", "volume"),
    )?;
    let head = Value::new_struct().with_opt("NextToken", next);
    Ok(Listing::new(head, "Volumes", items, volume_value))
}
