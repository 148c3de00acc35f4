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
//! The crate is sans-IO: [`verify`] takes a [`Request`] view, the current time and a key lookup,
//! and answers [`Verified`] or an [`AuthError`] that knows its EC2 error code, message and HTTP
//! status ([`AuthError::aws_error`]).
//!
//! - [`canonical`]: canonical request, string to sign, signing key (service-independent).
//! - [`verify`](mod@verify): the two signature forms and their checks.
//! - [`credentials`]: key generation and the AWS shared-credentials file (mode 0600).
//! - [`error`]: refusals and their EC2 wire form.
//! - [`time`]: the SigV4 and HTTP timestamp formats.
//! - `fuzzing` (hidden): the body of the `sigv4_verify` fuzz target.

pub mod canonical;
pub mod credentials;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod time;
pub mod verify;

pub use credentials::{
    generate_credentials, read_credentials_file, write_credentials_file, Credentials, Profile,
};
pub use error::{AuthError, FailureReason};
pub use verify::{verify, verify_with, Policy, Request, Secret, Verified};
