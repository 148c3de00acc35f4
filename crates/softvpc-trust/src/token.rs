//! Join tokens: `svpc1.<id>.<secret>.<ca-hash>`, all lowercase hex.
//!
//! - `id` (8 bytes) names the token on the server (it is logged; it grants nothing alone);
//! - `secret` (16 bytes) proves possession; the server keeps only its SHA-256;
//! - `ca-hash` (32 bytes) is the SHA-256 of the server CA's certificate (DER), so the agent can
//!   check the server it contacts first without a CA file (as kubeadm's discovery hash does).
//!
//! The parser takes untrusted input (command lines, the Join RPC): strict, bounded, never panics.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The prefix (and format version) of every token.
pub const PREFIX: &str = "svpc1";

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Names the token on the server (not secret).
    pub id: [u8; 8],
    /// Proves the holder was given the token.
    pub secret: [u8; 16],
    /// SHA-256 of the CA certificate's DER: the agent pins the server's CA with it.
    pub ca_hash: [u8; 32],
}

/// Why a string is not a join token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("a join token has the form svpc1.<16 hex>.<32 hex>.<64 hex>")]
    /// Not three dot-separated fields after the version.
    Shape,
    #[error("unknown join token version (expected svpc1)")]
    /// A version other than `svpc1`.
    Version,
    #[error("the join token's {0} is not {1} lowercase hex digits")]
    /// A field of the wrong length or not lowercase hex: (field, digits expected).
    Field(&'static str, usize),
}

impl JoinToken {
    /// A fresh random token for a server whose CA certificate hashes to `ca_hash`.
    pub fn generate(ca_hash: [u8; 32]) -> JoinToken {
        use rand::RngCore;
        let mut t = JoinToken {
            id: [0; 8],
            secret: [0; 16],
            ca_hash,
        };
        rand::thread_rng().fill_bytes(&mut t.id);
        rand::thread_rng().fill_bytes(&mut t.secret);
        t
    }

    /// The id as hex (what the server files the token under and logs).
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    /// SHA-256 of the secret, hex: what the server stores.
    pub fn secret_digest(&self) -> String {
        hex::encode(Sha256::digest(self.secret))
    }
}

// Never print the secret by accident (Debug is used in logs).
impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinToken({})", self.id_hex())
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}.{}",
            hex::encode(self.id),
            hex::encode(self.secret),
            hex::encode(self.ca_hash)
        )
    }
}

fn field<const N: usize>(s: &str, name: &'static str) -> Result<[u8; N], TokenError> {
    let ok = s.len() == 2 * N && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !ok {
        return Err(TokenError::Field(name, 2 * N));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| TokenError::Field(name, 2 * N))?;
    Ok(out)
}

impl FromStr for JoinToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, TokenError> {
        // Surrounding whitespace is a copy-and-paste accident, not part of the token.
        let s = s.trim();
        if s.len() > 256 {
            return Err(TokenError::Shape);
        }
        let mut parts = s.split('.');
        let (Some(v), Some(id), Some(secret), Some(hash), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Shape);
        };
        if v != PREFIX {
            return Err(TokenError::Version);
        }
        Ok(JoinToken {
            id: field(id, "id")?,
            secret: field(secret, "secret")?,
            ca_hash: field(hash, "CA hash")?,
        })
    }
}

/// SHA-256 of a certificate's DER.
pub fn cert_hash(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_refusals() {
        let t = JoinToken::generate([7; 32]);
        let s = t.to_string();
        assert_eq!(s.len(), 5 + 1 + 16 + 1 + 32 + 1 + 64);
        assert_eq!(s.parse::<JoinToken>().unwrap(), t);
        assert_eq!(format!(" {s}\n").parse::<JoinToken>().unwrap(), t);
        assert!(!format!("{t:?}").contains(&hex::encode(t.secret)));
        assert_eq!("".parse::<JoinToken>(), Err(TokenError::Shape));
        assert_eq!(
            s.replace("svpc1", "svpc2").parse::<JoinToken>(),
            Err(TokenError::Version)
        );
        assert_eq!(
            s.to_uppercase()
                .replace("SVPC1", "svpc1")
                .parse::<JoinToken>(),
            Err(TokenError::Field("id", 16))
        );
        assert_eq!(
            format!("{s}.x").parse::<JoinToken>(),
            Err(TokenError::Shape)
        );
        let short = &s[..s.len() - 1];
        assert_eq!(
            short.parse::<JoinToken>(),
            Err(TokenError::Field("CA hash", 64))
        );
    }

    proptest! {
        #[test]
        fn any_string_parses_or_errs(s in ".{0,300}") {
            let _ = s.parse::<JoinToken>();
        }

        #[test]
        fn shaped_strings_never_panic(parts in proptest::collection::vec("[0-9a-fA-F.g]{0,70}", 0..6)) {
            let s = format!("svpc1.{}", parts.join("."));
            if let Ok(t) = s.parse::<JoinToken>() {
                prop_assert_eq!(t.to_string(), s);
            }
        }

        #[test]
        fn display_parses_back(id in any::<[u8; 8]>(), secret in any::<[u8; 16]>(), hash in any::<[u8; 32]>()) {
            let t = JoinToken { id, secret, ca_hash: hash };
            prop_assert_eq!(t.to_string().parse::<JoinToken>().unwrap(), t);
        }

        #[test]
        fn one_flipped_character_is_another_token_or_refused(i in 0usize..120, c in "[0-9a-z.]") {
            let t = JoinToken::generate([3; 32]);
            let mut s = t.to_string().into_bytes();
            s[i] = c.as_bytes()[0];
            let s = String::from_utf8(s).unwrap();
            if let Ok(p) = s.parse::<JoinToken>() {
                prop_assert_eq!(p.to_string(), s);
            }
        }
    }
}
