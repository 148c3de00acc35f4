//! `ClientToken` idempotency, as AWS documents it ("Ensuring idempotency in Amazon EC2 API
//! requests"): a create retried with the same token and the same parameters answers with what the
//! first call made and creates nothing; the same token with other parameters is refused with
//! `IdempotentParameterMismatch`. The token is stored in the resource it created, so it survives a
//! restart and lasts as long as the resource is stored (terminated instances included).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ApiError;

/// AWS's refusal of a token reused with other parameters.
pub fn mismatch() -> ApiError {
    ApiError::new(
        "IdempotentParameterMismatch",
        "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).",
    )
}

/// Finds the resource an earlier request with `token` made. `Ok(Some(_))`: a retry, answer with
/// it; `Err(IdempotentParameterMismatch)`: the token was used with other parameters (`same` says
/// whether the earlier resource matches this request); `Ok(None)`: no token, or a new one.
pub fn replay<'a, T: 'a>(
    token: Option<&str>,
    resources: impl IntoIterator<Item = &'a Arc<T>>,
    token_of: impl Fn(&T) -> Option<&str>,
    same: impl FnOnce(&T) -> bool,
) -> Result<Option<&'a Arc<T>>, ApiError> {
    let Some(token) = token else {
        return Ok(None);
    };
    match resources.into_iter().find(|r| token_of(r) == Some(token)) {
        None => Ok(None),
        Some(r) if same(r) => Ok(Some(r)),
        Some(_) => Err(mismatch()),
    }
}

/// The token a resource was created with, and the digest of that request's parameters (so a
/// retry is compared with every parameter, not only with what the resource still shows: tags
/// and attributes may have changed since).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientToken {
    /// The token the client sent.
    pub token: String,
    /// A digest of every parameter of the request it came with.
    pub digest: String,
}

impl ClientToken {
    /// The token, for [`replay`]'s `token_of`.
    pub fn of(t: &Option<ClientToken>) -> Option<&str> {
        t.as_ref().map(|t| t.token.as_str())
    }
}

/// A stable digest of a request's parameters: 64-bit FNV-1a over length-prefixed fields. Stable
/// across builds (unlike `std`'s hasher), since digests are stored.
#[derive(Debug, Clone, Copy)]
pub struct Digest(u64);

impl Digest {
    /// A digest of the parameters of `action`.
    pub fn new(action: &str) -> Self {
        Digest(0xcbf2_9ce4_8422_2325).str(action)
    }

    fn bytes(mut self, bytes: &[u8]) -> Self {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    /// Adds a string (length-prefixed, so fields cannot run into each other).
    pub fn str(self, s: &str) -> Self {
        self.bytes(&(s.len() as u64).to_le_bytes())
            .bytes(s.as_bytes())
    }

    /// Adds an optional string (absent and empty differ).
    pub fn opt(self, s: Option<&str>) -> Self {
        match s {
            None => self.bytes(&[0]),
            Some(s) => self.bytes(&[1]).str(s),
        }
    }

    /// Adds a number.
    pub fn num(self, n: u64) -> Self {
        self.bytes(&n.to_le_bytes())
    }

    /// Adds a list of strings (its length first).
    pub fn list<'a>(self, items: impl IntoIterator<Item = &'a str>) -> Self {
        let items: Vec<&str> = items.into_iter().collect();
        items
            .iter()
            .fold(self.num(items.len() as u64), |d, s| d.str(s))
    }

    /// The digest as 16 hex digits.
    pub fn finish(self) -> String {
        format!("{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct R {
        token: Option<String>,
        vpc: &'static str,
    }

    #[test]
    fn replay_finds_matches_and_refuses_mismatches() {
        let rs = [
            Arc::new(R {
                token: Some("a".into()),
                vpc: "vpc-1",
            }),
            Arc::new(R {
                token: None,
                vpc: "vpc-2",
            }),
        ];
        fn tok(r: &R) -> Option<&str> {
            r.token.as_deref()
        }
        let got = replay(Some("a"), &rs, tok, |r| r.vpc == "vpc-1").unwrap();
        assert_eq!(got.unwrap().vpc, "vpc-1");
        let err = replay(Some("a"), &rs, tok, |r| r.vpc == "vpc-2").unwrap_err();
        assert_eq!(err.code, "IdempotentParameterMismatch");
        assert!(replay(Some("b"), &rs, tok, |_| true).unwrap().is_none());
        assert!(replay(None, &rs, tok, |_| false).unwrap().is_none());
    }

    #[test]
    fn digests_are_stable_and_separate_fields() {
        // Pinned: a stored digest must mean the same after an upgrade.
        assert_eq!(Digest::new("").finish(), "a8c7f832281a39c5");
        let d = |a: &str, b: &str| Digest::new("X").str(a).str(b).finish();
        assert_eq!(d("ab", "c"), d("ab", "c"));
        assert_ne!(d("ab", "c"), d("a", "bc"));
        assert_ne!(
            Digest::new("X").opt(None).finish(),
            Digest::new("X").opt(Some("")).finish()
        );
        assert_ne!(
            Digest::new("X").list(["a", "b"]).finish(),
            Digest::new("X").list(["b", "a"]).finish()
        );
    }
}
