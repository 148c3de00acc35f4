//! AWS's error XML for an [`ApiError`]:
//! `<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>`
//! (`RequestID` with a capital ID: older botocore needs it).

/// The error type itself lives in the model (it carries no HTTP machinery).
pub use softvpc_model::ApiError;

/// The error document for `err` answered to request `request_id`.
pub fn render(err: &ApiError, request_id: &str) -> String {
    softvpc_ec2_protocol::encode_error(&err.code, &err.message, request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_document_shape() {
        let e = ApiError::not_found("InvalidVpcID.NotFound", "vpc", &["vpc-1"]);
        let s = render(&e, "req-1");
        assert!(s.contains(
            "<Response><Errors><Error><Code>InvalidVpcID.NotFound</Code><Message>The vpc ID 'vpc-1' does not exist</Message></Error></Errors><RequestID>req-1</RequestID></Response>"
        ), "{s}");
    }
}
