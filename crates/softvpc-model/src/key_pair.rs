//! Key pairs (`key-`): a name, an SSH public key and AWS's fingerprint of it. Made by
//! CreateKeyPair (the private key goes to the caller once and is never stored) or ImportKeyPair;
//! RunInstances' `KeyName` must name one, and the instance keeps a copy of the public key for
//! the instance metadata service (deleting the key pair later does not take it away, as on AWS).
//! The cryptography (generation, parsing, fingerprints) is the API's; the model keeps records.

use serde::{Deserialize, Serialize};

use super::filter::Filterable;
use super::ids::new_id;
use super::{ApiError, State, Tags, Txn};

/// Longest key name AWS accepts (ASCII characters).
pub const MAX_NAME_LEN: usize = 255;

/// One key pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPair {
    /// `key-...`.
    pub id: String,
    /// Its name, unique in the region.
    pub name: String,
    /// `rsa` or `ed25519`.
    pub key_type: String,
    /// AWS's fingerprint (see the API's key_pair module for which digest).
    pub fingerprint: String,
    /// The public key in OpenSSH's one-line form, without comment (`ssh-rsa AAAA...`).
    pub public_key: String,
    /// Seconds since the Unix epoch (creation or import).
    pub create_time: u64,
    /// Its tags.
    pub tags: Tags,
}

impl KeyPair {
    /// The public key as AWS shows it (`IncludePublicKey`, instance metadata): the OpenSSH line
    /// with the key name as comment.
    pub fn openssh_line(&self) -> String {
        format!("{} {}", self.public_key, self.name)
    }
}

/// `InvalidKeyPair.NotFound` for a key name.
pub fn name_not_found(name: &str) -> ApiError {
    ApiError::new(
        "InvalidKeyPair.NotFound",
        format!("The key pair '{name}' does not exist"),
    )
}

/// `InvalidKeyPair.NotFound` for key pair ids.
pub fn id_not_found(ids: &[&str]) -> ApiError {
    ApiError::not_found("InvalidKeyPair.NotFound", "key pair", ids)
}

/// The key pair named `name`.
pub fn by_name<'a>(state: &'a State, name: &str) -> Option<&'a std::sync::Arc<KeyPair>> {
    state.key_pairs.values().find(|k| k.name == name)
}

/// Checks a new key name: present, ASCII, at most 255 characters, not taken.
pub fn check_new_name(state: &State, name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::missing("KeyName"));
    }
    if !name.is_ascii() || name.len() > MAX_NAME_LEN {
        return Err(ApiError::invalid_value(format!(
            "Value ({name}) for parameter keyName is invalid. Key names must be up to \
             {MAX_NAME_LEN} ASCII characters."
        )));
    }
    if by_name(state, name).is_some() {
        return Err(ApiError::new(
            "InvalidKeyPair.Duplicate",
            format!("The keypair '{name}' already exists."),
        ));
    }
    Ok(())
}

/// Stores a new key pair (CreateKeyPair, ImportKeyPair): the name is checked here, inside the
/// transaction, so two concurrent creations of one name cannot both succeed.
pub fn create_key_pair(
    txn: &mut Txn,
    name: &str,
    key_type: &str,
    fingerprint: String,
    public_key: String,
    tags: Tags,
) -> Result<KeyPair, ApiError> {
    check_new_name(&txn.state, name)?;
    let k = KeyPair {
        id: new_id("key"),
        name: name.to_string(),
        key_type: key_type.to_string(),
        fingerprint,
        public_key,
        create_time: txn.now,
        tags,
    };
    txn.put(k.clone());
    Ok(k)
}

/// `DeleteKeyPair` by name or id. As on AWS, deleting a name that does not exist succeeds (and
/// deletes nothing); an id that does not exist is `InvalidKeyPair.NotFound`. Returns the id of
/// the key pair deleted.
pub fn delete_key_pair(
    txn: &mut Txn,
    name: Option<&str>,
    id: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let found = match (name, id) {
        (_, Some(id)) => {
            let k = txn
                .state
                .key_pairs
                .get(id)
                .cloned()
                .ok_or_else(|| id_not_found(&[id]))?;
            if name.is_some_and(|n| n != k.name) {
                return Err(ApiError::new(
                    "InvalidParameterCombination",
                    "The parameters KeyName and KeyPairId do not name the same key pair.",
                ));
            }
            Some(k.id.clone())
        }
        (Some(n), None) => by_name(&txn.state, n).map(|k| k.id.clone()),
        (None, None) => return Err(ApiError::missing("KeyName or KeyPairId")),
    };
    if let Some(id) = &found {
        txn.delete::<KeyPair>(id);
    }
    Ok(found)
}

/// Applies `edit` to the tags of key pair `id` (CreateTags, DeleteTags).
pub fn edit_tags(
    txn: &mut Txn,
    id: &str,
    edit: &mut dyn FnMut(&mut Tags) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let mut k = txn
        .state
        .key_pairs
        .get(id)
        .map(|k| (**k).clone())
        .ok_or_else(|| id_not_found(&[id]))?;
    edit(&mut k.tags)?;
    txn.put(k);
    Ok(())
}

impl Filterable for KeyPair {
    const FILTERS: &'static [&'static str] = &["key-pair-id", "fingerprint", "key-name"];

    fn field(&self, _state: &State, name: &str) -> Vec<String> {
        match name {
            "key-pair-id" => vec![self.id.clone()],
            "fingerprint" => vec![self.fingerprint.clone()],
            "key-name" => vec![self.name.clone()],
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

    fn make(txn: &mut Txn, name: &str) -> Result<KeyPair, ApiError> {
        create_key_pair(
            txn,
            name,
            "ed25519",
            "fp".into(),
            "ssh-ed25519 AAAA".into(),
            Tags::new(),
        )
    }

    #[test]
    fn names_are_unique_and_checked() {
        let mut txn = Txn::new(State::new(), 7);
        let k = make(&mut txn, "deploy").unwrap();
        assert!(k.id.starts_with("key-"));
        assert_eq!(k.create_time, 7);
        assert_eq!(k.openssh_line(), "ssh-ed25519 AAAA deploy");
        assert_eq!(
            make(&mut txn, "deploy").unwrap_err().code,
            "InvalidKeyPair.Duplicate"
        );
        assert_eq!(make(&mut txn, "").unwrap_err().code, "MissingParameter");
        assert_eq!(
            make(&mut txn, "clé").unwrap_err().code,
            "InvalidParameterValue"
        );
        assert_eq!(
            make(&mut txn, &"k".repeat(256)).unwrap_err().code,
            "InvalidParameterValue"
        );
        make(&mut txn, &"k".repeat(255)).unwrap();
    }

    #[test]
    fn delete_by_name_is_idempotent_by_id_is_not() {
        let mut txn = Txn::new(State::new(), 0);
        let k = make(&mut txn, "a").unwrap();
        assert_eq!(delete_key_pair(&mut txn, Some("nope"), None).unwrap(), None);
        assert_eq!(
            delete_key_pair(&mut txn, None, Some("key-0123456789abcdef0"))
                .unwrap_err()
                .code,
            "InvalidKeyPair.NotFound"
        );
        assert_eq!(
            delete_key_pair(&mut txn, Some("b"), Some(&k.id))
                .unwrap_err()
                .code,
            "InvalidParameterCombination"
        );
        assert_eq!(
            delete_key_pair(&mut txn, None, Some(&k.id)).unwrap(),
            Some(k.id.clone())
        );
        assert!(txn.state.key_pairs.is_empty());
        assert_eq!(
            delete_key_pair(&mut txn, None, None).unwrap_err().code,
            "MissingParameter"
        );
    }
}
