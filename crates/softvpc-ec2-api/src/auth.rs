//! SigV4 authentication of the EC2 API: the server's access keys (generated on first start into
//! `<data-dir>/credentials`, mode 0600, AWS shared-credentials format, profile `default`; read
//! back on later starts) and the check every API request passes before it is dispatched.
//!
//! Both SigV4 forms are accepted (the `Authorization` header and presigned query parameters).
//! Refusals: missing, unknown key or wrong signature -> 401 `AuthFailure` (one answer for all,
//! so a caller cannot probe for keys); a timestamp more than 15 minutes off, or an expired
//! presigned URL -> 400 `RequestExpired`; a credential scoped to another region than the
//! server's ([`REGION`]) -> 401 `AuthFailure` "Credential should be scoped to a valid region,
//! not 'eu-west-1'." (STS-scoped requests: 403 `SignatureDoesNotMatch`, as the query services
//! answer).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use softvpc_sigv4::{
    generate_credentials, read_credentials_file, verify_with, write_credentials_file, AuthError,
    Credentials, Policy, Request, Secret, Verified,
};

use softvpc_model::peering::REGION;

/// The profile the generated key pair is written under.
pub const PROFILE: &str = "default";

/// The access keys the API accepts.
#[derive(Clone, Default)]
pub struct Keys {
    secrets: HashMap<String, Secret>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("access_keys", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keys {
    /// Keys accepting exactly `creds`.
    pub fn from_credentials<'a>(creds: impl IntoIterator<Item = &'a Credentials>) -> Keys {
        Keys {
            secrets: creds
                .into_iter()
                .map(|c| {
                    (
                        c.access_key_id.clone(),
                        Secret::new(c.secret_access_key.clone()),
                    )
                })
                .collect(),
        }
    }

    /// Verifies one request (either SigV4 form) against these keys at time `now`: scoped to
    /// `ec2` (or `sts`, for GetCallerIdentity) in the server's region.
    pub fn verify(&self, req: &Request<'_>, now: SystemTime) -> Result<Verified, AuthError> {
        let policy = Policy {
            also_services: &["sts"],
            region: Some(REGION),
            ..Policy::EC2
        };
        verify_with(req, now, &policy, |ak| self.secrets.get(ak).cloned())
    }
}

/// Where the server keeps its credentials.
pub fn credentials_path(data_dir: &Path) -> PathBuf {
    data_dir.join("credentials")
}

/// The keys of `<data_dir>/credentials` (every complete profile), generating the file with a
/// fresh key pair under [`PROFILE`] when it does not exist yet.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Keys> {
    let path = credentials_path(data_dir);
    match read_credentials_file(&path) {
        Ok(profiles) => {
            anyhow::ensure!(
                !profiles.is_empty(),
                "{} holds no complete profile (aws_access_key_id and aws_secret_access_key)",
                path.display()
            );
            tracing::info!(path = %path.display(), profiles = profiles.len(), "API credentials loaded");
            Ok(Keys::from_credentials(
                profiles.iter().map(|p| &p.credentials),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let creds = generate_credentials();
            write_credentials_file(&path, PROFILE, &creds)
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), access_key = %creds.access_key_id, "API credentials generated");
            Ok(Keys::from_credentials([&creds]))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_once_then_read_back() {
        let dir = std::env::temp_dir().join(format!(
            "softvpc-auth-test-{}-{}",
            std::process::id(),
            softvpc_model::ids::new_request_id()
        ));
        let first = load_or_create(&dir).unwrap();
        let path = credentials_path(&dir);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let profiles = read_credentials_file(&path).unwrap();
        assert_eq!(profiles.len(), 1);
        assert_eq!(profiles[0].name, PROFILE);
        let second = load_or_create(&dir).unwrap();
        assert_eq!(
            first.secrets.keys().collect::<Vec<_>>(),
            second.secrets.keys().collect::<Vec<_>>()
        );
        assert!(first
            .secrets
            .contains_key(&profiles[0].credentials.access_key_id));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
