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
