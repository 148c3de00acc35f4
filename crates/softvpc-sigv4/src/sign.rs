//! Client-side signing (the `Authorization` header form), for softvpc's own clients of its
//! API (the lab). Built on the same canonicalization the verifier uses, so whatever [`sign`]
//! produces [`crate::verify()`] accepts.

use std::time::SystemTime;

use crate::canonical::{
    canonical_headers, canonical_query, canonical_request, canonical_uri, credential_scope,
    sha256_hex, signature, signing_key, string_to_sign, ALGORITHM,
};
use crate::credentials::Credentials;
use crate::time::Timestamp;

/// Who signs, for which region and service, and when.
#[derive(Debug, Clone)]
pub struct SigningParams<'a> {
    /// The key pair.
    pub credentials: &'a Credentials,
    /// e.g. `us-east-1`.
    pub region: &'a str,
    /// e.g. `ec2`.
    pub service: &'a str,
    /// The signing time (`X-Amz-Date`).
    pub time: SystemTime,
}

/// The headers to add to a request so that it carries a SigV4 signature: `X-Amz-Date` and
/// `Authorization`, in that order. `headers` are the headers the request will send (they must
/// include `Host`, exactly as sent); all of them are signed, as are the body and the path and
/// query exactly as they will appear on the wire. `None` when the time cannot be expressed
/// (before 1970 or after 9999).
pub fn sign(
    params: &SigningParams<'_>,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Vec<(String, String)>> {
    let time = Timestamp::from_system_time(params.time)?;
    let amz_date = time.amz();
    let day = time.day();
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("x-amz-date", &amz_date));
    let mut names: Vec<String> = all.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    names.sort();
    names.dedup();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    // Every name comes from `all` itself, so none can be missing.
    let block = canonical_headers(&all, &name_refs).ok()?;
    let signed = names.join(";");
    let creq = canonical_request(
        method,
        &canonical_uri(path),
        &canonical_query(query, None),
        &block,
        &signed,
        &sha256_hex(body),
    );
    let scope = credential_scope(&day, params.region, params.service);
    let sts = string_to_sign(&amz_date, &scope, &creq);
    let key = signing_key(
        &params.credentials.secret_access_key,
        &day,
        params.region,
        params.service,
    );
    let sig = hex::encode(signature(&key, &sts));
    let auth = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed}, Signature={sig}",
        params.credentials.access_key_id
    );
    Some(vec![
        ("X-Amz-Date".to_string(), amz_date),
        ("Authorization".to_string(), auth),
    ])
}

/// The `Content-Type` of an AWS Query API request body (EC2's form encoding).
pub const QUERY_CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// Signs an EC2 Query API request as AWS's SDKs send it: `POST /` to `host` with a form `body` of
/// [`QUERY_CONTENT_TYPE`], service `ec2`, signed now. Returns the headers to add (see [`sign`]).
pub fn sign_ec2_query(
    credentials: &Credentials,
    region: &str,
    host: &str,
    body: &[u8],
) -> Option<Vec<(String, String)>> {
    let params = SigningParams {
        credentials,
        region,
        service: "ec2",
        time: SystemTime::now(),
    };
    sign(
        &params,
        "POST",
        "/",
        "",
        &[("Host", host), ("Content-Type", QUERY_CONTENT_TYPE)],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{generate_credentials, verify, Secret};
    use std::time::Duration;

    fn signed_request(creds: &Credentials, now: SystemTime, body: &[u8]) -> Vec<(String, Vec<u8>)> {
        let base = [
            ("Host", "127.0.0.1:8787"),
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
        ];
        let p = SigningParams {
            credentials: creds,
            region: "us-east-1",
            service: "ec2",
            time: now,
        };
        let added = sign(&p, "POST", "/", "", &base, body).unwrap();
        base.iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .chain(added.into_iter().map(|(n, v)| (n, v.into_bytes())))
            .collect()
    }

    #[test]
    fn signed_requests_verify_and_tampering_is_caught() {
        let creds = generate_credentials();
        let now = SystemTime::now();
        let body = b"Action=DescribeVpcs&Version=2016-11-15";
        let headers = signed_request(&creds, now, body);
        let view: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        let lookup = |ak: &str| {
            (ak == creds.access_key_id).then(|| Secret::new(creds.secret_access_key.clone()))
        };
        let req = crate::Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &view,
            body,
        };
        let v = verify(&req, now + Duration::from_secs(5), lookup).unwrap();
        assert_eq!(v.access_key, creds.access_key_id);
        assert!(v.payload_signed);
        // Another body under the same signature is refused.
        let tampered = crate::Request {
            body: b"Action=DeleteVpc&Version=2016-11-15",
            ..req
        };
        assert!(verify(&tampered, now, lookup).is_err());
        // Another key's secret does not verify.
        let other = generate_credentials();
        let wrong = |ak: &str| {
            (ak == creds.access_key_id).then(|| Secret::new(other.secret_access_key.clone()))
        };
        assert!(verify(&req, now, wrong).is_err());
    }

    #[test]
    fn ec2_query_signing_verifies() {
        let creds = generate_credentials();
        let body = b"Action=DescribeVpcs&Version=2016-11-15";
        let host = "127.0.0.1:8787";
        let added = sign_ec2_query(&creds, "us-east-1", host, body).unwrap();
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("Host", host.as_bytes()),
            ("Content-Type", QUERY_CONTENT_TYPE.as_bytes()),
        ];
        headers.extend(added.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
        let req = crate::Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body,
        };
        let lookup = |ak: &str| {
            (ak == creds.access_key_id).then(|| Secret::new(creds.secret_access_key.clone()))
        };
        let v = verify(&req, SystemTime::now(), lookup).unwrap();
        assert_eq!(v.access_key, creds.access_key_id);
        // The host is signed: the same headers sent to another host are refused.
        let mut moved = headers.clone();
        moved[0] = ("Host", b"127.0.0.1:9999");
        let req2 = crate::Request {
            headers: &moved,
            ..req
        };
        assert!(verify(&req2, SystemTime::now(), lookup).is_err());
    }
}
