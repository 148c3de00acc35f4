//! Launch templates (`lt-`): named, versioned sets of RunInstances parameters. Each version
//! keeps its launch template data as given (the API checked it: only members RunInstances
//! honours), as JSON keyed by the model's member names; versions are numbered from 1, one is the
//! default (`$Default`), the highest is `$Latest`. RunInstances with `LaunchTemplate` starts
//! from a version's data and lets its own parameters override it (the API merges the trees).

use serde::{Deserialize, Serialize};

use super::filter::{iso_time, Filterable};
use super::ids::new_id;
use super::{ApiError, State, Tags, Txn, OWNER_ID};

/// Most versions a launch template may have (AWS's quota).
pub const MAX_VERSIONS: u64 = 10_000;

/// Who made templates and versions, as AWS shows it (`CreatedBy`).
pub fn created_by() -> String {
    format!("arn:aws:iam::{OWNER_ID}:root")
}

/// One version of a launch template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchTemplateVersion {
    /// Its number, from 1.
    pub number: u64,
    /// `VersionDescription`.
    pub description: Option<String>,
    /// Seconds since the Unix epoch.
    pub create_time: u64,
    /// The launch template data (member name -> value), as JSON.
    pub data: serde_json::Value,
    /// The `ClientToken` of the CreateLaunchTemplate(Version) that made it.
    #[serde(default)]
    pub client_token: Option<String>,
}

/// A launch template and its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchTemplate {
    /// `lt-...`.
    pub id: String,
    /// Its name, unique in the region.
    pub name: String,
    /// Seconds since the Unix epoch.
    pub create_time: u64,
    /// The version `$Default` means.
    pub default_version: u64,
    /// The highest version number ever given (deleted versions are not reused).
    pub latest_version: u64,
    /// The versions that exist, by number.
    pub versions: Vec<LaunchTemplateVersion>,
    /// Its tags.
    pub tags: Tags,
}

impl LaunchTemplate {
    /// Version `n`, if it exists.
    pub fn version(&self, n: u64) -> Option<&LaunchTemplateVersion> {
        self.versions.iter().find(|v| v.number == n)
    }

    /// The version a `Version` parameter names: a number, `$Latest` or `$Default`; none means
    /// `$Default`.
    pub fn resolve(&self, spec: Option<&str>) -> Result<&LaunchTemplateVersion, ApiError> {
        let n = match spec.map(str::trim) {
            None | Some("") | Some("$Default") => Some(self.default_version),
            Some("$Latest") => self.versions.last().map(|v| v.number),
            Some(s) => s.parse::<u64>().ok(),
        };
        n.and_then(|n| self.version(n)).ok_or_else(|| {
            ApiError::new(
                "InvalidLaunchTemplateId.VersionNotFound",
                format!(
                    "Could not find launch template version {} for launch template {}.",
                    spec.unwrap_or("$Default"),
                    self.id
                ),
            )
        })
    }
}

/// `InvalidLaunchTemplateId.NotFound`.
pub fn id_not_found(id: &str) -> ApiError {
    ApiError::new(
        "InvalidLaunchTemplateId.NotFound",
        format!("The specified launch template, with template ID {id}, does not exist."),
    )
}

/// `InvalidLaunchTemplateName.NotFoundException`.
pub fn name_not_found(name: &str) -> ApiError {
    ApiError::new(
        "InvalidLaunchTemplateName.NotFoundException",
        format!("The specified launch template, with template name {name}, does not exist."),
    )
}

/// The launch template named `name`.
pub fn by_name<'a>(state: &'a State, name: &str) -> Option<&'a std::sync::Arc<LaunchTemplate>> {
    state.launch_templates.values().find(|t| t.name == name)
}

/// The template a request names by `LaunchTemplateId` or `LaunchTemplateName` (exactly one).
pub fn find<'a>(
    state: &'a State,
    id: Option<&str>,
    name: Option<&str>,
) -> Result<&'a std::sync::Arc<LaunchTemplate>, ApiError> {
    match (id, name) {
        (Some(_), Some(_)) => Err(ApiError::new(
            "InvalidParameterCombination",
            "The parameters LaunchTemplateId and LaunchTemplateName cannot be used together. \
             Specify one of them.",
        )),
        (Some(id), None) => {
            if !id.starts_with("lt-") {
                return Err(ApiError::new(
                    "InvalidLaunchTemplateId.Malformed",
                    format!(
                        "The specified ID for the launch template ({id}) is not valid. Launch \
                         template IDs begin with 'lt-'."
                    ),
                ));
            }
            state
                .launch_templates
                .get(id)
                .ok_or_else(|| id_not_found(id))
        }
        (None, Some(name)) => by_name(state, name).ok_or_else(|| name_not_found(name)),
        (None, None) => Err(ApiError::missing("LaunchTemplateId or LaunchTemplateName")),
    }
}

/// Checks a launch template name: 3 to 128 of letters, digits and `( ) . - / _`.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = (3..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"().-/_".contains(&b));
    if !ok {
        return Err(ApiError::new(
            "InvalidLaunchTemplateName.MalformedException",
            format!(
                "The launch template name '{name}' is not valid. A launch template name must \
                 be 3 to 128 characters long and contain only letters, digits and ( ) . - / _."
            ),
        ));
    }
    Ok(())
}

fn check_description(d: Option<&str>) -> Result<(), ApiError> {
    if d.is_some_and(|d| d.chars().count() > 255) {
        return Err(ApiError::invalid_value(
            "Value for parameter versionDescription is invalid: at most 255 characters.",
        ));
    }
    Ok(())
}

fn mismatch() -> ApiError {
    ApiError::new(
        "IdempotentParameterMismatch",
        "The client token you have provided is associated with a resource that is already \
         deleted or has different parameters. Use a different client token.",
    )
}

/// `CreateLaunchTemplate`: the template and its version 1 (the default). A retry with the same
/// `ClientToken` answers the template it made.
pub fn create_launch_template(
    txn: &mut Txn,
    name: &str,
    description: Option<&str>,
    data: serde_json::Value,
    tags: Tags,
    client_token: Option<&str>,
) -> Result<LaunchTemplate, ApiError> {
    check_name(name)?;
    check_description(description)?;
    if let Some(tok) = client_token {
        let made = txn.state.launch_templates.values().find(|t| {
            t.versions
                .first()
                .is_some_and(|v| v.number == 1 && v.client_token.as_deref() == Some(tok))
        });
        if let Some(t) = made {
            let v1 = &t.versions[0];
            if t.name != name || v1.data != data || v1.description.as_deref() != description {
                return Err(mismatch());
            }
            return Ok((**t).clone());
        }
    }
    if by_name(&txn.state, name).is_some() {
        return Err(ApiError::new(
            "InvalidLaunchTemplateName.AlreadyExistsException",
            format!("Launch template name already in use: {name}."),
        ));
    }
    let t = LaunchTemplate {
        id: new_id("lt"),
        name: name.to_string(),
        create_time: txn.now,
        default_version: 1,
        latest_version: 1,
        versions: vec![LaunchTemplateVersion {
            number: 1,
            description: description.map(str::to_string),
            create_time: txn.now,
            data,
            client_token: client_token.map(str::to_string),
        }],
        tags,
    };
    txn.put(t.clone());
    Ok(t)
}

/// `CreateLaunchTemplateVersion`: the next version of template `id`, with `data` (the API has
/// already laid it over its source version's, if any). Returns the template and the number; a
/// retry with the same `ClientToken` answers the version it made.
pub fn create_version(
    txn: &mut Txn,
    id: &str,
    description: Option<&str>,
    data: serde_json::Value,
    client_token: Option<&str>,
) -> Result<(LaunchTemplate, u64), ApiError> {
    check_description(description)?;
    let mut t = txn
        .state
        .launch_templates
        .get(id)
        .map(|t| (**t).clone())
        .ok_or_else(|| id_not_found(id))?;
    if let Some(v) = client_token.and_then(|tok| {
        t.versions
            .iter()
            .find(|v| v.client_token.as_deref() == Some(tok))
    }) {
        if v.data != data || v.description.as_deref() != description {
            return Err(mismatch());
        }
        let n = v.number;
        return Ok((t, n));
    }
    if t.versions.len() as u64 >= MAX_VERSIONS {
        return Err(ApiError::new(
            "LaunchTemplateVersionLimitExceeded",
            format!("The launch template {id} has reached its limit of {MAX_VERSIONS} versions."),
        ));
    }
    let number = t.latest_version + 1;
    t.latest_version = number;
    t.versions.push(LaunchTemplateVersion {
        number,
        description: description.map(str::to_string),
        create_time: txn.now,
        data,
        client_token: client_token.map(str::to_string),
    });
    txn.put(t.clone());
    Ok((t, number))
}

/// `ModifyLaunchTemplate`: sets the default version (a number that exists).
pub fn set_default_version(
    txn: &mut Txn,
    id: &str,
    version: &str,
) -> Result<LaunchTemplate, ApiError> {
    let mut t = txn
        .state
        .launch_templates
        .get(id)
        .map(|t| (**t).clone())
        .ok_or_else(|| id_not_found(id))?;
    let n = match version.parse::<u64>() {
        Ok(n) if t.version(n).is_some() => n,
        _ => {
            return Err(ApiError::new(
                "InvalidLaunchTemplateId.VersionNotFound",
                format!(
                    "Could not find launch template version {version} for launch template {id}."
                ),
            ))
        }
    };
    t.default_version = n;
    txn.put(t.clone());
    Ok(t)
}

/// `DeleteLaunchTemplate`: the template and every version.
pub fn delete_launch_template(txn: &mut Txn, id: &str) -> Result<LaunchTemplate, ApiError> {
    let t = txn
        .state
        .launch_templates
        .get(id)
        .map(|t| (**t).clone())
        .ok_or_else(|| id_not_found(id))?;
    txn.delete::<LaunchTemplate>(id);
    Ok(t)
}

/// One version DeleteLaunchTemplateVersions could not delete: the version as given, AWS's
/// error code (`LaunchTemplateErrorCode`) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRefusal {
    /// The version as given.
    pub version: String,
    /// `launchTemplateVersionDoesNotExist` or `unexpectedError`.
    pub code: &'static str,
    /// Why.
    pub message: String,
}

/// `DeleteLaunchTemplateVersions`: deletes each named version (numbers only); the default
/// version cannot be deleted (DeleteLaunchTemplate deletes it with the rest). Returns the
/// template, the numbers deleted and the refusals, in request order.
pub fn delete_versions(
    txn: &mut Txn,
    id: &str,
    versions: &[String],
) -> Result<(LaunchTemplate, Vec<u64>, Vec<VersionRefusal>), ApiError> {
    let mut t = txn
        .state
        .launch_templates
        .get(id)
        .map(|t| (**t).clone())
        .ok_or_else(|| id_not_found(id))?;
    let (mut done, mut refused) = (Vec::new(), Vec::new());
    for v in versions {
        match v.parse::<u64>().ok().filter(|n| t.version(*n).is_some()) {
            Some(n) if n == t.default_version => refused.push(VersionRefusal {
                version: v.clone(),
                code: "unexpectedError",
                message: "Cannot delete the default version of the launch template. Delete \
                          the launch template instead, or set another default version first."
                    .into(),
            }),
            Some(n) => {
                t.versions.retain(|x| x.number != n);
                done.push(n);
            }
            None => refused.push(VersionRefusal {
                version: v.clone(),
                code: "launchTemplateVersionDoesNotExist",
                message: format!("The specified launch template version ({v}) does not exist."),
            }),
        }
    }
    if !done.is_empty() {
        txn.put(t.clone());
    }
    Ok((t, done, refused))
}

/// Applies `edit` to the tags of template `id` (CreateTags, DeleteTags).
pub fn edit_tags(
    txn: &mut Txn,
    id: &str,
    edit: &mut dyn FnMut(&mut Tags) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let mut t = txn
        .state
        .launch_templates
        .get(id)
        .map(|t| (**t).clone())
        .ok_or_else(|| id_not_found(id))?;
    edit(&mut t.tags)?;
    txn.put(t);
    Ok(())
}

impl Filterable for LaunchTemplate {
    const FILTERS: &'static [&'static str] = &["create-time", "launch-template-name"];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        match name {
            "create-time" => vec![iso_time(self.create_time)],
            "launch-template-name" => vec![self.name.clone()],
            _ => Vec::new(),
        }
    }

    fn tag_map(&self) -> Tags {
        self.tags.clone()
    }
}

/// A version seen with its template (DescribeLaunchTemplateVersions' filters read both).
#[derive(Debug, Clone, PartialEq)]
pub struct VersionView {
    /// The template.
    pub template: std::sync::Arc<LaunchTemplate>,
    /// The version.
    pub version: LaunchTemplateVersion,
}

impl Filterable for VersionView {
    const FILTERS: &'static [&'static str] = &[
        "create-time",
        "ebs-optimized",
        "image-id",
        "instance-type",
        "is-default-version",
    ];
    // Settings RunInstances refuses here (IAM, kernels, metadata options, license manager,
    // network cards, host resource groups): no version holds one.
    const UNHELD: &'static [&'static str] = &[
        "http-endpoint",
        "http-protocol-ipv4",
        "host-resource-group-arn",
        "http-tokens",
        "iam-instance-profile",
        "kernel-id",
        "license-configuration-arn",
        "network-card-index",
        "ram-disk-id",
    ];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        let data = &self.version.data;
        let text = |m: &str| {
            data.get(m)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .into_iter()
                .collect()
        };
        match name {
            "create-time" => vec![iso_time(self.version.create_time)],
            "ebs-optimized" => vec![data
                .get("EbsOptimized")
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
                .to_string()],
            "image-id" => text("ImageId"),
            "instance-type" => text("InstanceType"),
            "is-default-version" => {
                vec![(self.version.number == self.template.default_version).to_string()]
            }
            _ => Vec::new(),
        }
    }

    fn tag_map(&self) -> Tags {
        Tags::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_default_and_latest() {
        let mut txn = Txn::new(State::new(), 5);
        let t = create_launch_template(
            &mut txn,
            "web",
            Some("v1"),
            json!({"ImageId": "ami-1"}),
            Tags::new(),
            Some("tok-1"),
        )
        .unwrap();
        // A retry answers the same template; other parameters with the token do not.
        let again = create_launch_template(
            &mut txn,
            "web",
            Some("v1"),
            json!({"ImageId": "ami-1"}),
            Tags::new(),
            Some("tok-1"),
        )
        .unwrap();
        assert_eq!(again.id, t.id);
        assert_eq!(
            create_launch_template(
                &mut txn,
                "web2",
                None,
                json!({}),
                Tags::new(),
                Some("tok-1")
            )
            .unwrap_err()
            .code,
            "IdempotentParameterMismatch"
        );
        assert!(t.id.starts_with("lt-"));
        assert_eq!((t.default_version, t.latest_version), (1, 1));
        assert_eq!(
            create_launch_template(&mut txn, "web", None, json!({}), Tags::new(), None)
                .unwrap_err()
                .code,
            "InvalidLaunchTemplateName.AlreadyExistsException"
        );
        for bad in ["ab", "has space", &"x".repeat(129)] {
            assert_eq!(
                create_launch_template(&mut txn, bad, None, json!({}), Tags::new(), None)
                    .unwrap_err()
                    .code,
                "InvalidLaunchTemplateName.MalformedException"
            );
        }
        let (_, n) = create_version(
            &mut txn,
            &t.id,
            None,
            json!({"ImageId": "ami-2"}),
            Some("v"),
        )
        .unwrap();
        assert_eq!(n, 2);
        let (_, n) = create_version(
            &mut txn,
            &t.id,
            None,
            json!({"ImageId": "ami-2"}),
            Some("v"),
        )
        .unwrap();
        assert_eq!(n, 2);
        let t = txn.state.launch_templates[&t.id].clone();
        assert_eq!(t.resolve(None).unwrap().number, 1);
        assert_eq!(t.resolve(Some("$Latest")).unwrap().number, 2);
        assert_eq!(t.resolve(Some("2")).unwrap().data["ImageId"], "ami-2");
        for bad in ["3", "x", "$latest"] {
            assert_eq!(
                t.resolve(Some(bad)).unwrap_err().code,
                "InvalidLaunchTemplateId.VersionNotFound"
            );
        }
        set_default_version(&mut txn, &t.id, "2").unwrap();
        assert_eq!(
            set_default_version(&mut txn, &t.id, "9").unwrap_err().code,
            "InvalidLaunchTemplateId.VersionNotFound"
        );
        // The default (2) stays; 1 goes; 7 never existed; numbers are not reused.
        let (_, done, refused) =
            delete_versions(&mut txn, &t.id, &["2".into(), "1".into(), "7".into()]).unwrap();
        assert_eq!(done, vec![1]);
        assert_eq!(
            refused.iter().map(|r| r.code).collect::<Vec<_>>(),
            vec!["unexpectedError", "launchTemplateVersionDoesNotExist"]
        );
        let (_, n) = create_version(&mut txn, &t.id, None, json!({}), None).unwrap();
        assert_eq!(n, 3);
        let state = &txn.state;
        assert_eq!(find(state, None, Some("web")).unwrap().id, t.id);
        assert_eq!(
            find(state, Some("lt-0123456789abcdef0"), None)
                .unwrap_err()
                .code,
            "InvalidLaunchTemplateId.NotFound"
        );
        assert_eq!(
            find(state, Some("bogus"), None).unwrap_err().code,
            "InvalidLaunchTemplateId.Malformed"
        );
        assert_eq!(
            find(state, None, Some("nope")).unwrap_err().code,
            "InvalidLaunchTemplateName.NotFoundException"
        );
        assert_eq!(
            find(state, Some(&t.id), Some("web")).unwrap_err().code,
            "InvalidParameterCombination"
        );
        assert_eq!(
            find(state, None, None).unwrap_err().code,
            "MissingParameter"
        );
        delete_launch_template(&mut txn, &t.id).unwrap();
        assert!(txn.state.launch_templates.is_empty());
    }
}
