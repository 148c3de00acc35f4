//! `ApiError`: a refusal with AWS semantics (error code, message, HTTP status), independent of
//! the transport. The EC2 layer renders it as AWS's error XML.

use std::fmt;

/// A request the model refused (or could not carry out). Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The AWS error code, e.g. `InvalidVpcID.NotFound`.
    pub code: String,
    /// A human-readable message in AWS's wording where known.
    pub message: String,
    /// The HTTP status the API answers with (400 for most client errors).
    pub status: u16,
}

impl ApiError {
    /// A client error (HTTP 400) with an AWS code.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ApiError {
            code: code.to_string(),
            message: message.into(),
            status: 400,
        }
    }

    /// The same error with another HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// `DependencyViolation`: the `noun` (AWS's camelCase name, e.g. `routeTable`) `id` is still
    /// in use and cannot be deleted.
    pub fn has_dependencies(noun: &str, id: &str) -> Self {
        Self::new(
            "DependencyViolation",
            format!("The {noun} '{id}' has dependencies and cannot be deleted."),
        )
    }

    /// `MissingParameter`: a required parameter is absent.
    pub fn missing(name: &str) -> Self {
        Self::new(
            "MissingParameter",
            format!("The request must contain the parameter {name}"),
        )
    }

    /// `InvalidParameterValue`.
    pub fn invalid_value(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterValue", message)
    }

    /// `DryRunOperation` (HTTP 412): the request would have succeeded.
    pub fn dry_run() -> Self {
        Self::new(
            "DryRunOperation",
            "Request would have succeeded, but DryRun flag is set.",
        )
        .with_status(412)
    }

    /// `InternalError` (HTTP 500): the server failed (e.g. the store); the request changed nothing.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("InternalError", message).with_status(500)
    }

    /// `<Kind>ID.NotFound` for one or more ids, in AWS's wording
    /// ("The vpc ID 'vpc-1' does not exist", "The instance IDs 'a, b' do not exist").
    pub fn not_found(code: &str, noun: &str, ids: &[&str]) -> Self {
        let message = if ids.len() == 1 {
            format!("The {noun} ID '{}' does not exist", ids[0])
        } else {
            format!("The {noun} IDs '{}' do not exist", ids.join(", "))
        };
        Self::new(code, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
