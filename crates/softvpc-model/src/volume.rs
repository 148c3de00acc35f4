//! EBS volume records: every instance's root volume (`vol-`), made at launch, shown by
//! DescribeVolumes and in the instance's block device mappings, taggable (RunInstances'
//! `volume` tag specifications and CreateTags), deleted with the instance when its
//! `DeleteOnTermination` holds (the default, as for an AMI's root volume) and otherwise left
//! `available`, detached. softvpc stores no block data: the record is what the API shows.

use serde::{Deserialize, Serialize};

use super::filter::{iso_time, Filterable};
use super::ids::new_id;
use super::{ApiError, State, Tags, Txn};

/// The root device of every instance (Amazon Linux's).
pub const ROOT_DEVICE: &str = "/dev/xvda";
/// The root volume's size, GiB (Amazon Linux's AMIs).
pub const ROOT_SIZE_GIB: u32 = 8;
/// The root volume's type and its baseline performance (gp3's).
pub const ROOT_TYPE: &str = "gp3";
/// gp3's baseline IOPS.
pub const ROOT_IOPS: u32 = 3000;
/// gp3's baseline throughput, MiB/s.
pub const ROOT_THROUGHPUT: u32 = 125;

/// Where a volume is attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeAttachment {
    /// The instance it is attached to.
    pub instance_id: String,
    /// Its device name there.
    pub device: String,
    /// When attached (Unix seconds).
    pub attach_time: u64,
    /// Deleted with the instance.
    pub delete_on_termination: bool,
}

/// One EBS volume record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// `vol-...`.
    pub id: String,
    /// Size, GiB.
    pub size_gib: u32,
    /// `gp3`, `gp2`, ...
    pub volume_type: String,
    /// Its instance's zone.
    pub availability_zone: String,
    /// When created (Unix seconds).
    pub create_time: u64,
    /// Its tags.
    pub tags: Tags,
    /// None: `available`.
    pub attachment: Option<VolumeAttachment>,
}

impl Volume {
    /// `in-use` while attached, else `available`.
    pub fn state(&self) -> &'static str {
        if self.attachment.is_some() {
            "in-use"
        } else {
            "available"
        }
    }
}

/// Makes the root volume of `instance_id` (launched now in `zone`) and returns its id.
pub fn create_root(
    txn: &mut Txn,
    instance_id: &str,
    zone: &str,
    delete_on_termination: bool,
    tags: Tags,
) -> String {
    let id = new_id("vol");
    txn.put(Volume {
        id: id.clone(),
        size_gib: ROOT_SIZE_GIB,
        volume_type: ROOT_TYPE.to_string(),
        availability_zone: zone.to_string(),
        create_time: txn.now,
        tags,
        attachment: Some(VolumeAttachment {
            instance_id: instance_id.to_string(),
            device: ROOT_DEVICE.to_string(),
            attach_time: txn.now,
            delete_on_termination,
        }),
    });
    id
}

/// The volumes attached to `instance_id`, by device name.
pub fn of_instance(state: &State, instance_id: &str) -> Vec<Volume> {
    let mut v: Vec<Volume> = state
        .volumes
        .values()
        .filter(|v| {
            v.attachment
                .as_ref()
                .is_some_and(|a| a.instance_id == instance_id)
        })
        .map(|v| (**v).clone())
        .collect();
    v.sort_by(|a, b| {
        let dev = |v: &Volume| v.attachment.as_ref().map(|a| a.device.clone());
        dev(a).cmp(&dev(b))
    });
    v
}

/// At termination: deletes the instance's delete-on-termination volumes, detaches the others.
pub fn release_for_termination(txn: &mut Txn, instance_id: &str) {
    for mut v in of_instance(&txn.state, instance_id) {
        if v.attachment
            .as_ref()
            .is_some_and(|a| a.delete_on_termination)
        {
            txn.delete::<Volume>(&v.id);
        } else {
            v.attachment = None;
            txn.put(v);
        }
    }
}

/// Sets `DeleteOnTermination` of the volume attached to `instance_id` at `device`
/// (ModifyInstanceAttribute `BlockDeviceMappings`).
pub fn set_delete_on_termination(
    txn: &mut Txn,
    instance_id: &str,
    device: &str,
    volume_id: Option<&str>,
    value: bool,
) -> Result<(), ApiError> {
    let Some(mut v) = of_instance(&txn.state, instance_id)
        .into_iter()
        .find(|v| v.attachment.as_ref().is_some_and(|a| a.device == device))
    else {
        return Err(ApiError::invalid_value(format!(
            "The device '{device}' is not attached to instance '{instance_id}'."
        )));
    };
    if volume_id.is_some_and(|id| id != v.id) {
        return Err(ApiError::invalid_value(format!(
            "The volume '{}' is not attached to instance '{instance_id}' at '{device}'.",
            volume_id.unwrap_or_default()
        )));
    }
    if let Some(a) = v.attachment.as_mut() {
        a.delete_on_termination = value;
    }
    txn.put(v);
    Ok(())
}

/// Applies `edit` to the tags of volume `id` (CreateTags, DeleteTags).
pub fn edit_tags(
    txn: &mut Txn,
    id: &str,
    edit: &mut dyn FnMut(&mut Tags) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let mut v = txn
        .state
        .volumes
        .get(id)
        .map(|v| (**v).clone())
        .ok_or_else(|| not_found(&[id]))?;
    edit(&mut v.tags)?;
    txn.put(v);
    Ok(())
}

/// AWS's refusal of unknown volume ids.
pub fn not_found(ids: &[&str]) -> ApiError {
    ApiError::not_found("InvalidVolume.NotFound", "volume", ids)
}

impl Filterable for Volume {
    const FILTERS: &'static [&'static str] = &[
        "attachment.attach-time",
        "attachment.delete-on-termination",
        "attachment.device",
        "attachment.instance-id",
        "attachment.status",
        "availability-zone",
        "create-time",
        "encrypted",
        "multi-attach-enabled",
        "size",
        "snapshot-id",
        "status",
        "volume-id",
        "volume-type",
    ];
    const UNHELD: &'static [&'static str] = &[
        "attachment.associated-resource",
        "fast-restored",
        "operator.managed",
        "operator.principal",
    ];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        let a = self.attachment.as_ref();
        let one = |s: String| vec![s];
        match name {
            "attachment.attach-time" => a.map(|a| iso_time(a.attach_time)).into_iter().collect(),
            "attachment.delete-on-termination" => a
                .map(|a| a.delete_on_termination.to_string())
                .into_iter()
                .collect(),
            "attachment.device" => a.map(|a| a.device.clone()).into_iter().collect(),
            "attachment.instance-id" => a.map(|a| a.instance_id.clone()).into_iter().collect(),
            "attachment.status" => a.map(|_| "attached".to_string()).into_iter().collect(),
            "availability-zone" => one(self.availability_zone.clone()),
            "create-time" => one(iso_time(self.create_time)),
            "encrypted" | "multi-attach-enabled" => one("false".into()),
            "size" => one(self.size_gib.to_string()),
            // Made empty, not from a snapshot: a snapshot-id filter matches "".
            "snapshot-id" => one(String::new()),
            "status" => one(self.state().into()),
            "volume-id" => one(self.id.clone()),
            "volume-type" => one(self.volume_type.clone()),
            _ => Vec::new(),
        }
    }

    fn tag_map(&self) -> Tags {
        self.tags.clone()
    }
}
