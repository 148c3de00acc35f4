//! Why a request was refused, and how to say so on the wire the way EC2 does.
//!
//! The client-facing answer ([`AuthError::aws_error`]) deliberately collapses an unknown access
//! key, a wrong signature, a wrong session token and a body that does not match its signed hash
//! into one `AuthFailure`, so a caller cannot probe which access keys exist. The precise reason
//! stays available ([`FailureReason`], `Display`) for the server's own logs.

/// EC2's message for `AuthFailure` (what the AWS CLI prints after the code).
pub const AUTH_FAILURE_MESSAGE: &str =
    "AWS was not able to validate the provided access credentials";

/// Why verification failed in a way the client is told only as `AuthFailure`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureReason {
    /// The access key id is not known to the lookup.
    UnknownAccessKey,
    /// The signature does not match the one computed with the key's secret.
    SignatureMismatch,
    /// The signature is not 64 hex digits.
    MalformedSignature,
    /// The session token is missing, unexpected or different from the key's.
    SecurityTokenMismatch,
    /// `X-Amz-Content-Sha256` names a hash the body does not have.
    PayloadHashMismatch,
    /// The payload is unsigned (`UNSIGNED-PAYLOAD`, or a streaming mode) yet the request has a
    /// body: EC2 parameters can travel in the body, so an unsigned one could be rewritten.
    UnsignedPayloadWithBody,
    /// A header listed in SignedHeaders is not in the request.
    MissingSignedHeader(String),
    /// A signed header's value is not valid UTF-8 (no SigV4 client sends such a value).
    NonUtf8SignedHeader(String),
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Neither an `Authorization` header nor presigned query parameters.
    #[error("request is not signed")]
    Missing,
    /// The credential names an empty access key id.
    #[error("credential has no access key id")]
    MissingAccessKey,
    /// The signature material is malformed or incomplete (the message says what is wrong).
    #[error("incomplete signature: {0}")]
    Incomplete(String),
    /// The request's timestamp is too far from the server's clock, or a presigned URL expired.
    #[error("{0}")]
    Expired(String),
    /// The credential scope names another region than the one this endpoint serves. AWS's
    /// wording: "Credential should be scoped to a valid region, not 'eu-west-1'."; EC2 answers
    /// it as `AuthFailure` (401), the query services (STS) as `SignatureDoesNotMatch` (403).
    #[error("credential scoped to region {region}, this endpoint serves {expected}")]
    WrongRegion {
        /// The region the scope names.
        region: String,
        /// The region this endpoint serves.
        expected: String,
    },
    /// Credentials could not be validated; the reason is for logs only.
    #[error("authentication failed: {0:?}")]
    Failure(FailureReason),
}

impl AuthError {
    /// The EC2 error code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::Failure(_) | AuthError::WrongRegion { .. } => {
                "AuthFailure"
            }
            AuthError::MissingAccessKey => "MissingAuthenticationToken",
            AuthError::Incomplete(_) => "IncompleteSignature",
            AuthError::Expired(_) => "RequestExpired",
        }
    }

    /// The message for the `<Message>` element. Never distinguishes the `AuthFailure` causes.
    pub fn message(&self) -> String {
        match self {
            AuthError::Missing | AuthError::Failure(_) => AUTH_FAILURE_MESSAGE.to_owned(),
            AuthError::MissingAccessKey => {
                "The request must contain a valid (registered) AWS access key ID.".to_owned()
            }
            AuthError::Incomplete(m) | AuthError::Expired(m) => m.clone(),
            AuthError::WrongRegion { region, .. } => {
                format!("Credential should be scoped to a valid region, not '{region}'.")
            }
        }
    }

    /// The HTTP status EC2 answers with: 401 `AuthFailure`, 403 `MissingAuthenticationToken`,
    /// 400 `IncompleteSignature` and `RequestExpired`.
    pub fn http_status(&self) -> u16 {
        match self {
            AuthError::Missing | AuthError::Failure(_) | AuthError::WrongRegion { .. } => 401,
            AuthError::MissingAccessKey => 403,
            AuthError::Incomplete(_) | AuthError::Expired(_) => 400,
        }
    }

    /// `(code, message, http status)` for the EC2 error response.
    pub fn aws_error(&self) -> (&'static str, String, u16) {
        (self.code(), self.message(), self.http_status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_and_bad_signature_look_the_same() {
        let a = AuthError::Failure(FailureReason::UnknownAccessKey).aws_error();
        let b = AuthError::Failure(FailureReason::SignatureMismatch).aws_error();
        let c = AuthError::Missing.aws_error();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.0, "AuthFailure");
        assert_eq!(a.2, 401);
    }

    #[test]
    fn codes_and_statuses() {
        assert_eq!(
            AuthError::Expired("x".into()).aws_error(),
            ("RequestExpired", "x".to_owned(), 400)
        );
        assert_eq!(
            AuthError::Incomplete("y".into()).code(),
            "IncompleteSignature"
        );
        assert_eq!(AuthError::Incomplete("y".into()).http_status(), 400);
        assert_eq!(AuthError::MissingAccessKey.http_status(), 403);
    }
}
