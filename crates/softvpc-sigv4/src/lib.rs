//! AWS Signature Version 4 verification for the softvpc EC2 API, and the access-key file.
//!
//! Why hand-written: the maintained AWS crates (`aws-sigv4`) only *sign* requests; nothing
//! well-kept verifies SigV4 on the server side. Verification needs the same canonicalization as
//! signing plus the server-only rules (scope, clock skew, presigned expiry, constant-time
//! comparison, one answer for unknown keys and bad signatures), so this crate implements it
//! from the specification on top of the `hmac`/`sha2`/`subtle`/`percent-encoding` crates, and is
//! checked against the public AWS SigV4 test-suite vectors and against requests signed by
//! botocore (the AWS CLI's and boto3's signer).
//!
//! The crate is sans-IO: [`verify()`] takes a [`Request`] view, the current time and a key lookup,
//! and answers [`Verified`] or an [`AuthError`] that knows its EC2 error code, message and HTTP
//! status ([`AuthError::aws_error`]).
//!
//! # Wiring it into an axum handler
//!
//! Take the whole request (`axum::extract::Request`), read the body to bytes first (with a
//! size limit), then pass the path and query exactly as received (`uri.path()`,
//! `uri.query().unwrap_or("")`: still percent-encoded, not decoded or re-serialized) and every
//! header in order (`headers.iter()` yields repeated names repeatedly; hyper keeps the `Host`
//! header the client sent, port included):
//!
//! ```text
//! let (parts, body) = req.into_parts();
//! let body = axum::body::to_bytes(body, MAX_BODY).await?;
//! let headers: Vec<(&str, &[u8])> =
//!     parts.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
//! let view = softvpc_sigv4::Request {
//!     method: parts.method.as_str(),
//!     path: parts.uri.path(),
//!     query: parts.uri.query().unwrap_or(""),
//!     headers: &headers,
//!     body: &body,
//! };
//! match softvpc_sigv4::verify(&view, SystemTime::now(), |ak| keys.get(ak).cloned()) {
//!     Ok(v) => { /* parse Action from query + body; v.access_key is the caller */ }
//!     Err(e) => {
//!         let (code, message, status) = e.aws_error(); // EC2 <Response><Errors>... with status
//!         tracing::info!(reason = %e, "refused");      // Display has the precise reason
//!     }
//! }
//! ```
//!
//! Over HTTP/2 there is no `Host` header (`:authority` instead); the AWS CLI and SDKs talk
//! HTTP/1.1 to an `http://` endpoint, so the server should insert `host` from `uri.authority()`
//! only when the header is absent.
//!
//! # Modules
//!
//! - [`canonical`]: canonical request, string to sign, signing key (service-independent).
//! - [`verify`](mod@verify): the two signature forms and their checks.
//! - [`sign`](mod@sign): client-side signing (header form) for softvpc's own clients.
//! - [`credentials`]: key generation and the AWS shared-credentials file (mode 0600).
//! - [`error`]: refusals and their EC2 wire form.
//! - [`time`]: the SigV4 and HTTP timestamp formats.
//! - `fuzzing` (hidden): the body of the `sigv4_verify` fuzz target.
#![warn(missing_docs)]

pub mod canonical;
pub mod credentials;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod sign;
pub mod time;
pub mod verify;

pub use credentials::{
    generate_credentials, read_credentials_file, write_credentials_file, Credentials, Profile,
};
pub use error::{AuthError, FailureReason};
pub use sign::{sign, sign_ec2_query, SigningParams, QUERY_CONTENT_TYPE};
pub use verify::{verify, verify_with, Policy, Request, Secret, Verified};
