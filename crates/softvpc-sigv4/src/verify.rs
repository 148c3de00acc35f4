//! Verifying a received request: the `Authorization` header form and the presigned query form.
//!
//! Sans-IO: the caller hands over a [`Request`] view (method, raw path, raw query, headers in
//! received order, body), the current time and a key lookup; [`verify`] answers [`Verified`] or
//! an [`AuthError`]. The checks, in order, each refusing before any key is looked up so the order
//! itself reveals nothing about which keys exist:
//!
//! 1. exactly one auth mechanism, well formed (else `IncompleteSignature`);
//! 2. credential scope `<access key>/<YYYYMMDD>/<region>/<service>/aws4_request`, with the day
//!    equal to the request timestamp's day, the service one of the policy's (`ec2`) and, when
//!    the policy pins one, the region the server's (else [`AuthError::WrongRegion`]);
//! 3. time: header form within ±15 minutes of `now`; presigned form not in the future by more
//!    than 15 minutes, not past `X-Amz-Date + X-Amz-Expires` (at most 7 days) (`RequestExpired`);
//! 4. payload: a claimed `X-Amz-Content-Sha256` must be the body's hash; a presigned URL may
//!    sign the body's hash (botocore does, for EC2) or `UNSIGNED-PAYLOAD`; an unsigned payload
//!    is only accepted with an empty body;
//! 5. signature recomputed with the looked-up secret (a fixed dummy secret when the key is
//!    unknown, so both paths do the same work) and compared in constant time; then the session
//!    token, also in constant time.

use std::time::{Duration, SystemTime};

use subtle::ConstantTimeEq;

use crate::canonical::{
    self, canonical_headers, canonical_query, canonical_request, canonical_uri, credential_scope,
    sha256_hex, signing_key, string_to_sign, ALGORITHM, TERMINATOR, UNSIGNED_PAYLOAD,
};
use crate::error::{AuthError, FailureReason};
use crate::time::Timestamp;

/// A received HTTP request, as the verifier needs to see it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method, e.g. `POST` (compared as given: HTTP methods are case-sensitive).
    pub method: &'a str,
    /// The path exactly as received, still percent-encoded, without the query (`/`).
    pub path: &'a str,
    /// The query string exactly as received, without the `?` (empty if none).
    pub query: &'a str,
    /// Every header as a (name, value) pair in the order received; repeated names repeat.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The request body, complete.
    pub body: &'a [u8],
}

/// What the key lookup returns for a known access key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The secret access key.
    pub secret_access_key: String,
    /// For temporary credentials, the session token the request must carry
    /// (`X-Amz-Security-Token`); `None` for long-term keys, which must not carry one.
    pub session_token: Option<String>,
}

impl Secret {
    /// A long-term key's secret (no session token).
    pub fn new(secret_access_key: impl Into<String>) -> Self {
        Self {
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret, even in a debug log.
        f.debug_struct("Secret")
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id that signed the request.
    pub access_key: String,
    /// The region named in the credential scope (the caller may insist on its own).
    pub region: String,
    /// The service named in the credential scope (the policy's service).
    pub service: String,
    /// When the request says it was signed.
    pub signed_at: SystemTime,
    /// True for the presigned query form, false for the `Authorization` header form.
    pub presigned: bool,
    /// For the presigned form, the instant the URL stops being valid.
    pub expires_at: Option<SystemTime>,
    /// Lower-case names of the headers covered by the signature, as the client listed them.
    pub signed_headers: Vec<String>,
    /// Whether the body is covered by the signature. When false the body is empty (non-empty
    /// unsigned bodies are refused), so the caller can always trust the body it parses.
    pub payload_signed: bool,
}

/// What the verifier accepts: the service, the clock skew and the longest presigned validity.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// The service the credential scope must name (`ec2`).
    pub service: &'a str,
    /// Other services the scope may name instead (softvpc's endpoint also answers STS's
    /// `GetCallerIdentity`); [`Verified::service`] says which one signed.
    pub also_services: &'a [&'a str],
    /// Largest accepted distance between the request timestamp and `now` (AWS: 15 minutes).
    pub max_skew: Duration,
    /// Largest accepted `X-Amz-Expires` (AWS: 7 days).
    pub max_presign_expiry: Duration,
    /// When set, the only region the credential scope may name (a server that serves one
    /// region); `None` accepts any non-empty region and reports it in [`Verified::region`].
    pub region: Option<&'a str>,
}

impl Policy<'static> {
    /// The EC2 policy: service `ec2`, 15 minutes of skew, presigned URLs up to 7 days.
    pub const EC2: Policy<'static> = Policy {
        service: "ec2",
        also_services: &[],
        max_skew: Duration::from_secs(15 * 60),
        max_presign_expiry: Duration::from_secs(7 * 24 * 3600),
        region: None,
    };
}

/// A secret no key has: stands in for an unknown key so that path costs the same HMAC work.
const DUMMY_SECRET: &str = "softvpc-sigv4-unknown-access-key-placeholder";

/// Verifies an EC2 API request (service `ec2`) signed with SigV4 in either form.
pub fn verify(
    req: &Request<'_>,
    now: SystemTime,
    lookup: impl Fn(&str) -> Option<Secret>,
) -> Result<Verified, AuthError> {
    verify_with(req, now, &Policy::EC2, lookup)
}

/// [`verify`] with an explicit [`Policy`] (the AWS test-suite vectors use service `service`).
pub fn verify_with(
    req: &Request<'_>,
    now: SystemTime,
    policy: &Policy<'_>,
    lookup: impl Fn(&str) -> Option<Secret>,
) -> Result<Verified, AuthError> {
    let result = verify_inner(req, now, policy, lookup);
    if let Err(e) = &result {
        tracing::debug!(error = %e, method = req.method, "sigv4 verification refused a request");
    }
    result
}

/// The signature material of either form, before any secret is involved.
struct Parsed {
    access_key: String,
    day: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signed_headers_raw: String,
    signature: Option<[u8; 32]>,
    timestamp: Timestamp,
    presigned: bool,
    expires: Option<Duration>,
    security_token: Option<String>,
}

fn incomplete(msg: impl Into<String>) -> AuthError {
    AuthError::Incomplete(msg.into())
}

fn header_values<'r>(req: &Request<'r>, name: &str) -> Vec<&'r [u8]> {
    req.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
        .collect()
}

/// The single value of a header that must not repeat; `Ok(None)` when absent.
fn single_header<'r>(req: &Request<'r>, name: &str) -> Result<Option<&'r str>, AuthError> {
    match header_values(req, name).as_slice() {
        [] => Ok(None),
        [v] => std::str::from_utf8(v)
            .map(|s| Some(s.trim()))
            .map_err(|_| incomplete(format!("The {name} header is not valid UTF-8."))),
        _ => Err(incomplete(format!(
            "The {name} header appears more than once."
        ))),
    }
}

/// The decoded query parameters (name, value) in order; names and values as UTF-8 (lossy:
/// a mangled value fails the later checks or the signature anyway).
fn query_params(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                String::from_utf8_lossy(&canonical::query_decode(k)).into_owned(),
                String::from_utf8_lossy(&canonical::query_decode(v)).into_owned(),
            )
        })
        .collect()
}

fn verify_inner(
    req: &Request<'_>,
    now: SystemTime,
    policy: &Policy<'_>,
    lookup: impl Fn(&str) -> Option<Secret>,
) -> Result<Verified, AuthError> {
    let params = query_params(req.query);
    let has_presign = params
        .iter()
        .any(|(k, _)| k == "X-Amz-Algorithm" || k == "X-Amz-Signature" || k == "X-Amz-Credential");
    let auth_headers = header_values(req, "authorization");

    let parsed = match (auth_headers.as_slice(), has_presign) {
        ([], false) => return Err(AuthError::Missing),
        ([_, _, ..], _) => {
            return Err(incomplete(
                "The Authorization header appears more than once.",
            ))
        }
        ([_], true) => {
            return Err(incomplete(
                "Only one authentication mechanism is allowed: an Authorization header or \
                 X-Amz-* query parameters, not both.",
            ))
        }
        ([h], false) => parse_header_form(req, h)?,
        ([], true) => parse_presigned(&params, policy)?,
    };

    // Scope checks: all before the key lookup.
    if parsed.access_key.is_empty() {
        return Err(AuthError::MissingAccessKey);
    }
    if parsed.service != policy.service && !policy.also_services.contains(&parsed.service.as_str())
    {
        return Err(incomplete(format!(
            "Credential should be scoped to correct service: '{}'.",
            policy.service
        )));
    }
    if parsed.region.is_empty() {
        return Err(incomplete("Credential should be scoped to a valid region."));
    }
    if let Some(region) = policy.region.filter(|r| *r != parsed.region) {
        return Err(AuthError::WrongRegion {
            region: parsed.region.clone(),
            expected: region.to_owned(),
        });
    }
    if parsed.day != parsed.timestamp.day() {
        return Err(incomplete(format!(
            "Date in Credential scope does not match YYYYMMDD from the request timestamp: \
             '{}' != '{}'.",
            parsed.day,
            parsed.timestamp.day()
        )));
    }
    if !parsed.signed_headers.iter().any(|h| h == "host") {
        return Err(incomplete(
            "'Host' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }

    let expires_at = check_time(&parsed, now, policy)?;

    // Payload hash candidates: what the client may have signed in place of the body.
    let claimed = single_header(req, "x-amz-content-sha256")?;
    let body_hash = sha256_hex(req.body);
    let candidates: Vec<(String, bool)> = match claimed {
        Some(c) if c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()) => {
            if !c.eq_ignore_ascii_case(&body_hash) {
                return Err(AuthError::Failure(FailureReason::PayloadHashMismatch));
            }
            vec![(c.to_owned(), true)]
        }
        // UNSIGNED-PAYLOAD or a streaming mode: accepted only without a body (checked below).
        Some(c) => vec![(c.to_owned(), false)],
        // Presigned URLs: botocore signs the (empty) body's hash for EC2, S3-style signers
        // sign UNSIGNED-PAYLOAD; both are valid SigV4.
        None if parsed.presigned => vec![(body_hash, true), (UNSIGNED_PAYLOAD.to_owned(), false)],
        None => vec![(body_hash, true)],
    };

    // Canonical request over the signed headers.
    let mut text_headers: Vec<(&str, &str)> = Vec::with_capacity(req.headers.len());
    for (name, value) in req.headers {
        let signed = parsed
            .signed_headers
            .iter()
            .any(|s| s.eq_ignore_ascii_case(name));
        if signed {
            let v = std::str::from_utf8(value).map_err(|_| {
                AuthError::Failure(FailureReason::NonUtf8SignedHeader(
                    name.to_ascii_lowercase(),
                ))
            })?;
            text_headers.push((name, v));
        }
    }
    let signed_list: Vec<&str> = parsed.signed_headers.iter().map(String::as_str).collect();
    let headers_block = canonical_headers(&text_headers, &signed_list)
        .map_err(|m| AuthError::Failure(FailureReason::MissingSignedHeader(m.0)))?;
    let uri = canonical_uri(req.path);
    let query = canonical_query(req.query, parsed.presigned.then_some("X-Amz-Signature"));
    let scope = credential_scope(&parsed.day, &parsed.region, &parsed.service);
    let amz_date = parsed.timestamp.amz();

    // Lookup, then the same HMAC work whether or not the key exists.
    let secret = lookup(&parsed.access_key);
    let secret_str = secret
        .as_ref()
        .map_or(DUMMY_SECRET, |s| s.secret_access_key.as_str());
    let key = signing_key(secret_str, &parsed.day, &parsed.region, &parsed.service);
    let mut matched: Option<bool> = None;
    for (payload_hash, signed) in &candidates {
        let creq = canonical_request(
            req.method,
            &uri,
            &query,
            &headers_block,
            &parsed.signed_headers_raw,
            payload_hash,
        );
        let expected = canonical::signature(&key, &string_to_sign(&amz_date, &scope, &creq));
        let ok: bool = match &parsed.signature {
            Some(given) => expected.ct_eq(given).into(),
            None => false,
        };
        if ok && matched.is_none() {
            matched = Some(*signed);
        }
    }
    let Some(secret) = secret else {
        return Err(AuthError::Failure(FailureReason::UnknownAccessKey));
    };
    if parsed.signature.is_none() {
        return Err(AuthError::Failure(FailureReason::MalformedSignature));
    }
    let Some(payload_signed) = matched else {
        return Err(AuthError::Failure(FailureReason::SignatureMismatch));
    };
    if !payload_signed && !req.body.is_empty() {
        return Err(AuthError::Failure(FailureReason::UnsignedPayloadWithBody));
    }
    let token_ok = match (&secret.session_token, &parsed.security_token) {
        (None, None) => true,
        (Some(want), Some(got)) => bool::from(want.as_bytes().ct_eq(got.as_bytes())),
        _ => false,
    };
    if !token_ok {
        return Err(AuthError::Failure(FailureReason::SecurityTokenMismatch));
    }

    Ok(Verified {
        access_key: parsed.access_key,
        region: parsed.region,
        service: parsed.service,
        signed_at: parsed.timestamp.system_time(),
        presigned: parsed.presigned,
        expires_at,
        signed_headers: parsed.signed_headers,
        payload_signed,
    })
}

/// Applies the clock rules; returns the presigned expiry instant.
fn check_time(
    parsed: &Parsed,
    now: SystemTime,
    policy: &Policy<'_>,
) -> Result<Option<SystemTime>, AuthError> {
    let signed = parsed.timestamp.unix_secs();
    let skew = policy.max_skew.as_secs();
    // A clock before 1970 cannot judge anything: refuse as expired rather than accept.
    let Some(now_ts) = Timestamp::from_system_time(now) else {
        return Err(AuthError::Expired("Request has expired.".to_owned()));
    };
    let now_s = now_ts.unix_secs();
    let window = format!(
        "request timestamp {}, server time {}",
        parsed.timestamp.amz(),
        now_ts.amz()
    );
    if signed > now_s.saturating_add(skew) {
        return Err(AuthError::Expired(format!(
            "Request has expired: the request timestamp is more than {} minutes in the future \
             ({window}).",
            skew / 60
        )));
    }
    match parsed.expires {
        None => {
            if now_s > signed.saturating_add(skew) {
                return Err(AuthError::Expired(format!(
                    "Request has expired: the request timestamp is more than {} minutes old \
                     ({window}).",
                    skew / 60
                )));
            }
            Ok(None)
        }
        Some(exp) => {
            let until = signed.saturating_add(exp.as_secs());
            if now_s > until {
                return Err(AuthError::Expired(format!(
                    "Request has expired: the presigned URL expired after {} seconds ({window}).",
                    exp.as_secs()
                )));
            }
            Ok(Some(std::time::UNIX_EPOCH + Duration::from_secs(until)))
        }
    }
}

/// Splits `AKID/YYYYMMDD/region/service/aws4_request`.
fn parse_credential(cred: &str) -> Result<(String, String, String, String), AuthError> {
    let parts: Vec<&str> = cred.split('/').collect();
    let [akid, day, region, service, terminator] = parts.as_slice() else {
        return Err(incomplete(format!(
            "Credential must have the form <access key>/<YYYYMMDD>/<region>/<service>/{TERMINATOR}, \
             got '{cred}'."
        )));
    };
    if *terminator != TERMINATOR {
        return Err(incomplete(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not \
             '{terminator}'."
        )));
    }
    if day.len() != 8 || !day.bytes().all(|b| b.is_ascii_digit()) {
        return Err(incomplete(format!(
            "Credential date must be YYYYMMDD, not '{day}'."
        )));
    }
    Ok((
        (*akid).to_owned(),
        (*day).to_owned(),
        (*region).to_owned(),
        (*service).to_owned(),
    ))
}

/// Splits and checks a SignedHeaders list (`host;x-amz-date`).
fn parse_signed_headers(raw: &str) -> Result<Vec<String>, AuthError> {
    let list: Vec<String> = raw.split(';').map(str::to_owned).collect();
    if raw.is_empty() || list.iter().any(|h| h.is_empty() || h.trim() != h) {
        return Err(incomplete(format!("SignedHeaders is malformed: '{raw}'.")));
    }
    Ok(list)
}

/// A hex signature; `None` (fails as a wrong signature, after the same work) unless 64 hex digits.
fn parse_signature(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    (s.len() == 64 && hex::decode_to_slice(s, &mut out).is_ok()).then_some(out)
}

fn parse_header_form(req: &Request<'_>, header: &[u8]) -> Result<Parsed, AuthError> {
    let value = std::str::from_utf8(header)
        .map_err(|_| incomplete("The Authorization header is not valid UTF-8."))?
        .trim();
    let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}' (only {ALGORITHM} is accepted)."
        )));
    }
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(incomplete(format!(
                "Authorization header component '{part}' is not of the form key=value."
            )));
        };
        let slot = match k.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            other => {
                return Err(incomplete(format!(
                    "Unknown Authorization header component '{other}'."
                )))
            }
        };
        if slot.replace(v.trim()).is_some() {
            return Err(incomplete(format!(
                "Authorization header component '{}' appears more than once.",
                k.trim()
            )));
        }
    }
    let missing: Vec<&str> = [
        ("Credential", credential.is_none()),
        ("SignedHeaders", signed_headers.is_none()),
        ("Signature", signature.is_none()),
    ]
    .iter()
    .filter(|(_, m)| *m)
    .map(|(n, _)| *n)
    .collect();
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(incomplete(format!(
            "Authorization header requires {} parameter(s).",
            missing
                .iter()
                .map(|m| format!("'{m}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let (access_key, day, region, service) = parse_credential(credential)?;
    let timestamp = match single_header(req, "x-amz-date")? {
        Some(d) => Timestamp::parse_amz(d).ok_or_else(|| {
            incomplete(format!(
                "X-Amz-Date must be in ISO 8601 basic format (YYYYMMDD'T'HHMMSS'Z'), got '{d}'."
            ))
        })?,
        None => match single_header(req, "date")? {
            Some(d) => Timestamp::parse_http(d).ok_or_else(|| {
                incomplete(format!("The Date header is not an HTTP date: '{d}'."))
            })?,
            None => {
                return Err(incomplete(
                    "Authorization header requires the existence of either an 'X-Amz-Date' or \
                     a 'Date' header.",
                ))
            }
        },
    };
    let security_token = single_header(req, "x-amz-security-token")?.map(str::to_owned);
    Ok(Parsed {
        access_key,
        day,
        region,
        service,
        signed_headers: parse_signed_headers(signed_headers)?,
        signed_headers_raw: signed_headers.to_owned(),
        signature: parse_signature(signature),
        timestamp,
        presigned: false,
        expires: None,
        security_token,
    })
}

fn parse_presigned(params: &[(String, String)], policy: &Policy<'_>) -> Result<Parsed, AuthError> {
    let get = |name: &str| -> Result<Option<&str>, AuthError> {
        let mut it = params.iter().filter(|(k, _)| k == name);
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(incomplete(format!(
                "The query parameter '{name}' appears more than once."
            )));
        }
        Ok(first)
    };
    let required = [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    ];
    let mut values = [""; 6];
    let mut missing = Vec::new();
    for (slot, name) in values.iter_mut().zip(required) {
        match get(name)? {
            Some(v) => *slot = v,
            None => missing.push(format!("'{name}'")),
        }
    }
    if !missing.is_empty() {
        return Err(incomplete(format!(
            "AWS query-string parameters must include {}.",
            missing.join(", ")
        )));
    }
    let [algorithm, credential, date, expires, signed_headers, signature] = values;
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}' (only {ALGORITHM} is accepted)."
        )));
    }
    let (access_key, day, region, service) = parse_credential(credential)?;
    let timestamp = Timestamp::parse_amz(date).ok_or_else(|| {
        incomplete(format!(
            "X-Amz-Date must be in ISO 8601 basic format (YYYYMMDD'T'HHMMSS'Z'), got '{date}'."
        ))
    })?;
    let max = policy.max_presign_expiry.as_secs();
    let expires = match expires.parse::<u64>() {
        Ok(e) if (1..=max).contains(&e) && expires.bytes().all(|b| b.is_ascii_digit()) => e,
        _ => {
            return Err(incomplete(format!(
                "X-Amz-Expires must be a whole number of seconds from 1 to {max}, got \
                 '{expires}'."
            )))
        }
    };
    Ok(Parsed {
        access_key,
        day,
        region,
        service,
        signed_headers: parse_signed_headers(signed_headers)?,
        signed_headers_raw: signed_headers.to_owned(),
        signature: parse_signature(signature),
        timestamp,
        presigned: true,
        expires: Some(Duration::from_secs(expires)),
        security_token: get("X-Amz-Security-Token")?.map(str::to_owned),
    })
}
