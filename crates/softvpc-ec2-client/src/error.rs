//! What a call can end in besides an answer.

use softvpc_ec2_protocol::{ParseError, SerializeError};

/// The server refused the request: its HTTP status and AWS's error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The action called.
    pub action: String,
    /// The HTTP status (400 for most refusals, 412 for DryRun).
    pub status: u16,
    /// The AWS error code (`InvalidSubnet.Range`); `Unknown` when the answer was no EC2 error
    /// document.
    pub code: String,
    /// The message (or the start of a body that was no error document).
    pub message: String,
    /// The request id of the error document, when it had one.
    pub request_id: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed (HTTP {}): {}: {}",
            self.action, self.status, self.code, self.message
        )
    }
}

impl std::error::Error for ApiError {}

/// Why a call gave no output tree.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The input tree does not fit the operation's input shape (nothing was sent).
    #[error("{action}: the request does not fit the EC2 model: {source}")]
    Request {
        /// The action.
        action: String,
        /// What does not fit.
        source: SerializeError,
    },
    /// A success answer the model cannot read.
    #[error("{action}: unreadable answer: {source}")]
    Answer {
        /// The action.
        action: String,
        /// Why it cannot be read.
        source: ParseError,
    },
    /// No answer: connection refused or broken, deadline passed, answer too large.
    #[error("{action}: calling the EC2 API at {url}: {message}")]
    Transport {
        /// The action (or the path, for unsigned GETs).
        action: String,
        /// The endpoint.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The key pair could not be read, or the clock cannot be expressed in a signature.
    #[error("credentials: {0}")]
    Credentials(String),
}

impl Error {
    /// The server's refusal, if this is one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }
}
