//! Access keys: generating a pair, and the AWS shared-credentials file that hands it to clients.
//!
//! The server generates one pair on first start and writes it to `<data-dir>/credentials` in
//! the INI format the AWS CLI and SDKs read (`AWS_SHARED_CREDENTIALS_FILE`):
//!
//! ```text
//! [default]
//! aws_access_key_id = AKIA...
//! aws_secret_access_key = ...
//! ```
//!
//! The file is created with mode 0600 from the start (a temporary file opened with that mode,
//! then renamed over the target), so the secret is never readable by others, not even briefly.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::rngs::OsRng;
use rand::RngCore;

/// An access key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `AKIA` followed by 16 characters of `A-Z2-7`, like AWS long-term key ids.
    pub access_key_id: String,
    /// 40 characters of `A-Za-z0-9+/`, like AWS secret access keys.
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// One profile read from a shared-credentials file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The section name (`default`).
    pub name: String,
    /// Its key pair.
    pub credentials: Credentials,
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Characters drawn uniformly from `alphabet` (its length divides 256, so `byte % len` is
/// unbiased) with bytes from the operating system's RNG.
fn random_chars(alphabet: &[u8], n: usize) -> String {
    debug_assert!(256 % alphabet.len() == 0);
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
        .collect()
}

/// A fresh key pair from the OS RNG (16 base32 characters = 80 bits in the id, 240 bits of
/// secret).
pub fn generate_credentials() -> Credentials {
    Credentials {
        access_key_id: format!("AKIA{}", random_chars(BASE32, 16)),
        secret_access_key: random_chars(BASE64, 40),
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Writes `creds` as `[profile]` to `path` (replacing the file), mode 0600 from creation.
pub fn write_credentials_file(path: &Path, profile: &str, creds: &Credentials) -> io::Result<()> {
    let bad = |s: &str| {
        s.is_empty()
            || s.chars().any(|c| {
                c.is_control() || c.is_whitespace() || matches!(c, '[' | ']' | '=' | '#' | ';')
            })
    };
    if bad(profile) {
        return Err(invalid(format!("invalid profile name {profile:?}")));
    }
    if bad(&creds.access_key_id) || bad(&creds.secret_access_key) {
        return Err(invalid(
            "access key id and secret must be non-empty and free of whitespace, '=' and brackets"
                .to_owned(),
        ));
    }
    let text = format!(
        "[{profile}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        creds.access_key_id, creds.secret_access_key
    );
    let file_name = path
        .file_name()
        .ok_or_else(|| invalid(format!("{} has no file name", path.display())))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp: PathBuf = path.with_file_name(tmp_name);
    // A leftover temporary from a crashed run is ours to replace.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename durable too.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads every complete profile (both keys present) from a shared-credentials file, in file
/// order. Comments (`#`, `;`) and other keys (`aws_session_token`, `region`...) are ignored.
pub fn read_credentials_file(path: &Path) -> io::Result<Vec<Profile>> {
    let text = fs::read_to_string(path)?;
    parse_credentials(&text)
}

fn parse_credentials(text: &str) -> io::Result<Vec<Profile>> {
    struct Section {
        name: String,
        id: Option<String>,
        secret: Option<String>,
    }
    let mut sections: Vec<Section> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(inner) = line.strip_prefix('[') {
            let name = inner.strip_suffix(']').ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("line {}: unterminated section header", i + 1),
                )
            })?;
            sections.push(Section {
                name: name.trim().to_owned(),
                id: None,
                secret: None,
            });
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line {}: expected key = value", i + 1),
            )
        })?;
        let Some(section) = sections.last_mut() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line {}: key outside any [profile] section", i + 1),
            ));
        };
        match k.trim() {
            "aws_access_key_id" => section.id = Some(v.trim().to_owned()),
            "aws_secret_access_key" => section.secret = Some(v.trim().to_owned()),
            _ => {}
        }
    }
    Ok(sections
        .into_iter()
        .filter_map(|s| {
            Some(Profile {
                name: s.name,
                credentials: Credentials {
                    access_key_id: s.id?,
                    secret_access_key: s.secret?,
                },
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_keys_have_the_aws_shape_and_differ() {
        let a = generate_credentials();
        let b = generate_credentials();
        assert_eq!(a.access_key_id.len(), 20);
        assert!(a.access_key_id.starts_with("AKIA"));
        assert!(a.access_key_id[4..].bytes().all(|c| BASE32.contains(&c)));
        assert_eq!(a.secret_access_key.len(), 40);
        assert!(a.secret_access_key.bytes().all(|c| BASE64.contains(&c)));
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains(&a.secret_access_key));
    }

    #[test]
    fn write_then_read_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials");
        // A pre-existing world-readable file must end up 0600 too (it is replaced, not reused).
        fs::write(&path, "old").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let creds = generate_credentials();
        write_credentials_file(&path, "default", &creds).expect("write creds");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let read = read_credentials_file(&path).expect("read");
        assert_eq!(
            read,
            vec![Profile {
                name: "default".into(),
                credentials: creds
            }]
        );
        // No temporary left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn refuses_names_that_would_break_the_ini() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials");
        let creds = generate_credentials();
        for p in ["", "a]b", "a b", "x\ny"] {
            assert!(write_credentials_file(&path, p, &creds).is_err(), "{p:?}");
        }
        assert!(!path.exists());
    }

    #[test]
    fn parses_the_aws_format_with_comments_and_extra_keys() {
        let text = "# comment\n[default]\naws_access_key_id=AKIAEXAMPLE\n; other\n\
                    aws_secret_access_key =  s3cr/t+\naws_session_token = tok\n\n\
                    [incomplete]\naws_access_key_id = X\n[ other ]\nregion=us-east-1\n\
                    aws_secret_access_key=b\naws_access_key_id=a\n";
        let p = parse_credentials(text).expect("parse");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "default");
        assert_eq!(p[0].credentials.access_key_id, "AKIAEXAMPLE");
        assert_eq!(p[0].credentials.secret_access_key, "s3cr/t+");
        assert_eq!(p[1].name, "other");
        assert_eq!(p[1].credentials.access_key_id, "a");
        assert!(parse_credentials("key=value\n").is_err());
        assert!(parse_credentials("[unterminated\n").is_err());
    }
}
