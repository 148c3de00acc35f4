//! STS on the EC2 endpoint: `GetCallerIdentity`, the call Terraform and Ansible's amazon.aws
//! make first to learn the account id. A request whose SigV4 credential scope names the service
//! `sts` comes here instead of the EC2 dispatcher (see [`super::handle`]).
//!
//! STS speaks the AWS Query protocol (not EC2's): the answer is
//! `<GetCallerIdentityResponse><GetCallerIdentityResult>...</GetCallerIdentityResult>
//! <ResponseMetadata><RequestId/></ResponseMetadata></GetCallerIdentityResponse>` and errors are
//! `<ErrorResponse><Error><Type>Sender</Type><Code/><Message/></Error><RequestId/></ErrorResponse>`.
//! The server's key pair is the account's own (root) credentials, so the caller is the account
//! root, as AWS answers for root keys: ARN `arn:aws:iam::<account>:root`, user id the account id.

use super::Reply;
use softvpc_model::OWNER_ID;

/// STS's XML namespace.
pub const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// The only STS API version.
pub const VERSION: &str = "2011-06-15";

/// The caller's identity: (account, ARN, user id).
pub fn caller_identity() -> (&'static str, String, &'static str) {
    (OWNER_ID, format!("arn:aws:iam::{OWNER_ID}:root"), OWNER_ID)
}

/// The Query-protocol error document.
pub fn render_error(code: &str, message: &str, request_id: &str) -> String {
    let kind = if code == "InternalFailure" {
        "Receiver"
    } else {
        "Sender"
    };
    format!(
        "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>{kind}</Type><Code>{}</Code>\
         <Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        xml_escape(code),
        xml_escape(message)
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn refuse(code: &str, message: String, request_id: &str) -> Reply {
    Reply {
        status: 400,
        body: render_error(code, &message, request_id),
        request_id: request_id.to_string(),
    }
}

/// Handles one STS request given its raw form-encoded inputs (query string and body).
pub fn dispatch(inputs: &[&[u8]], request_id: &str) -> Reply {
    let pairs = match softvpc_ec2_protocol::parse_forms(inputs) {
        Ok(p) => p,
        Err(e) => return refuse(e.code(), e.message(), request_id),
    };
    let get = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(action) = get("Action").filter(|a| !a.is_empty()) else {
        return refuse(
            "MissingAction",
            "Missing Action parameter.".into(),
            request_id,
        );
    };
    let version = get("Version").unwrap_or(VERSION);
    if action != "GetCallerIdentity" || version != VERSION {
        // STS's wording for an action it does not serve (softvpc serves only this one).
        return refuse(
            "InvalidAction",
            format!("Could not find operation {action} for version {version}"),
            request_id,
        );
    }
    if let Some((k, _)) = pairs.iter().find(|(k, _)| k != "Action" && k != "Version") {
        return refuse(
            "InvalidParameterValue",
            format!("The parameter {k} is not recognized by GetCallerIdentity."),
            request_id,
        );
    }
    let (account, arn, user_id) = caller_identity();
    Reply {
        status: 200,
        body: format!(
            "<GetCallerIdentityResponse xmlns=\"{XMLNS}\"><GetCallerIdentityResult>\
             <Arn>{arn}</Arn><UserId>{user_id}</UserId><Account>{account}</Account>\
             </GetCallerIdentityResult><ResponseMetadata><RequestId>{request_id}</RequestId>\
             </ResponseMetadata></GetCallerIdentityResponse>"
        ),
        request_id: request_id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_caller_identity_and_refusals() {
        let r = dispatch(&[b"Action=GetCallerIdentity&Version=2011-06-15"], "rid-1");
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.body.contains("<Account>123456789012</Account>")
                && r.body.contains("<Arn>arn:aws:iam::123456789012:root</Arn>")
                && r.body.contains("<RequestId>rid-1</RequestId>"),
            "{}",
            r.body
        );
        let r = dispatch(&[b"Action=AssumeRole&Version=2011-06-15"], "rid-2");
        assert_eq!(r.status, 400);
        assert!(r.body.contains("<Code>InvalidAction</Code>"), "{}", r.body);
        assert!(
            r.body
                .contains("Could not find operation AssumeRole for version 2011-06-15"),
            "{}",
            r.body
        );
        let r = dispatch(&[b"Version=2011-06-15"], "rid-3");
        assert!(r.body.contains("<Code>MissingAction</Code>"), "{}", r.body);
        let r = dispatch(&[b"Action=GetCallerIdentity&Bogus=1"], "rid-4");
        assert!(r.body.contains("Bogus"), "{}", r.body);
    }
}
