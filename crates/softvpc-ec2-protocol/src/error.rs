//! The protocol-level refusals, each with the AWS error code and message clients see.

/// Why a request was refused before reaching an action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The `Action` names no operation of the model.
    #[error("InvalidAction: {}", self.message())]
    InvalidAction {
        /// The `Action` given.
        action: String,
    },
    /// A parameter name the operation's input does not have.
    #[error("UnknownParameter: {}", self.message())]
    UnknownParameter {
        /// The whole parameter name.
        name: String,
    },
    /// A value the member's shape does not accept (type, enum, range, list index).
    #[error("InvalidParameterValue: {message}")]
    InvalidParameterValue {
        /// AWS's message.
        message: String,
    },
    /// A member the model marks required is absent.
    #[error("MissingParameter: {}", self.message())]
    MissingParameter {
        /// The wire path of the missing member.
        name: String,
    },
    /// The form encoding itself is broken (not UTF-8 after percent-decoding).
    #[error("MalformedQueryString: {message}")]
    MalformedQueryString {
        /// AWS's message.
        message: String,
    },
}

impl ProtocolError {
    /// The AWS error code (`<Code>`).
    pub fn code(&self) -> &'static str {
        match self {
            ProtocolError::InvalidAction { .. } => "InvalidAction",
            ProtocolError::UnknownParameter { .. } => "UnknownParameter",
            ProtocolError::InvalidParameterValue { .. } => "InvalidParameterValue",
            ProtocolError::MissingParameter { .. } => "MissingParameter",
            ProtocolError::MalformedQueryString { .. } => "MalformedQueryString",
        }
    }

    /// The AWS error message (`<Message>`), worded as EC2 words it.
    pub fn message(&self) -> String {
        match self {
            ProtocolError::InvalidAction { action } => {
                format!("The action {action} is not valid for this web service.")
            }
            ProtocolError::UnknownParameter { name } => {
                format!("The parameter {name} is not recognized")
            }
            ProtocolError::InvalidParameterValue { message }
            | ProtocolError::MalformedQueryString { message } => message.clone(),
            ProtocolError::MissingParameter { name } => {
                format!("The request must contain the parameter {name}")
            }
        }
    }

    /// The HTTP status EC2 answers with (400 for all of these).
    pub fn http_status(&self) -> u16 {
        400
    }

    /// The error document (see [`crate::encode_error`]).
    pub fn to_xml(&self, request_id: &str) -> String {
        crate::encode_error(self.code(), &self.message(), request_id)
    }

    pub(crate) fn invalid_value(message: impl Into<String>) -> ProtocolError {
        ProtocolError::InvalidParameterValue {
            message: message.into(),
        }
    }
}

/// Why a tree does not fit an operation's shape: its output shape when a server encodes an
/// answer ([`crate::EncodeError`]), its input shape when a client serializes a request
/// ([`crate::SerializeError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// The operation is not in the model.
    #[error("unknown operation {0}")]
    UnknownOperation(String),
    /// A member the structure does not have.
    #[error("{path}: no member {member} in shape {shape}")]
    UnknownMember {
        /// Where, as member names (`RunInstances.NetworkInterfaces[1]`).
        path: String,
        /// The member given.
        member: String,
        /// The structure's shape name.
        shape: String,
    },
    /// A value of another kind than the shape holds.
    #[error("{path}: shape {shape} cannot hold {found}")]
    TypeMismatch {
        /// Where, as member names.
        path: String,
        /// The shape name.
        shape: String,
        /// What was given (`a list`, `a string`, ...), see [`crate::Value::kind_name`].
        found: &'static str,
    },
}
