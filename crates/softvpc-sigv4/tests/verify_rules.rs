//! The verifier's refusals, one rule at a time, on requests signed by the test signer
//! (`common::Signer`): which EC2 error each malformed, stale or tampered request gets.

mod common;

use std::time::Duration;

use common::{OwnedRequest, Signer};
use softvpc_sigv4::time::Timestamp;
use softvpc_sigv4::{verify, AuthError, FailureReason, Secret, Verified};

const AK: &str = "AKIAEXAMPLEEXAMPLE12";
const SK: &str = "secretsecretsecretsecretsecretsecret1234";

fn at() -> Timestamp {
    Timestamp::parse_amz("20261122T003000Z").expect("ts")
}

fn signer() -> Signer<'static> {
    Signer {
        access_key: AK,
        secret: SK,
        region: "us-east-1",
        service: "ec2",
        time: at(),
        session_token: None,
    }
}

fn base() -> OwnedRequest {
    OwnedRequest {
        method: "POST".into(),
        path: "/".into(),
        query: String::new(),
        headers: vec![
            ("Host".into(), b"127.0.0.1:8787".to_vec()),
            (
                "Content-Type".into(),
                b"application/x-www-form-urlencoded; charset=utf-8".to_vec(),
            ),
        ],
        body: b"Action=DescribeVpcs&Version=2016-11-15".to_vec(),
    }
}

fn signed() -> OwnedRequest {
    let mut r = base();
    signer().sign_header(&mut r);
    r
}

fn run(r: &OwnedRequest) -> Result<Verified, AuthError> {
    run_at(r, at())
}

fn run_at(r: &OwnedRequest, now: Timestamp) -> Result<Verified, AuthError> {
    let h = r.header_refs();
    verify(&r.view(&h), now.system_time(), |k| {
        (k == AK).then(|| Secret::new(SK))
    })
}

fn set_header(r: &mut OwnedRequest, name: &str, value: &str) {
    r.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    r.headers.push((name.into(), value.as_bytes().to_vec()));
}

fn code(r: &OwnedRequest) -> &'static str {
    run(r).expect_err("must be refused").code()
}

#[test]
fn signed_request_verifies() {
    let v = run(&signed()).expect("valid");
    assert_eq!(v.access_key, AK);
    assert_eq!(v.region, "us-east-1");
    assert!(!v.presigned);
    assert_eq!(v.expires_at, None);
}

#[test]
fn unsigned_request_is_auth_failure_401() {
    let e = run(&base()).expect_err("unsigned");
    assert_eq!(e, AuthError::Missing);
    assert_eq!(e.aws_error().0, "AuthFailure");
    assert_eq!(e.aws_error().2, 401);
}

#[test]
fn malformed_authorization_headers_are_incomplete_signature() {
    let good = String::from_utf8(signed().header("authorization").expect("auth").into_bytes())
        .expect("utf-8");
    let cases = [
        good.replace("AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA512 "),
        good.replace("AWS4-HMAC-SHA256 ", "AWS "),
        good[..good.find(", Signature=").expect("sig")].to_owned(),
        good.replace("Credential=", "Credentials="),
        good.replace("/aws4_request", "/aws5_request"),
        good.replace("/us-east-1/", "/"),
        good.replace("/ec2/", "/s3/"),
        good.replace("/20261122/", "/20261121/"),
        good.replace("/us-east-1/", "//"),
        good.replace(
            "SignedHeaders=content-type;host;x-amz-date",
            "SignedHeaders=content-type;x-amz-date",
        ),
        good.replace(
            "SignedHeaders=content-type;host;x-amz-date",
            "SignedHeaders=",
        ),
        format!("{good}, Signature=00"),
        "AWS4-HMAC-SHA256".to_owned(),
        String::new(),
    ];
    for (i, a) in cases.iter().enumerate() {
        let mut r = signed();
        set_header(&mut r, "Authorization", a);
        let e = run(&r).expect_err("malformed");
        assert_eq!(e.code(), "IncompleteSignature", "case {i}: {a:?} -> {e:?}");
        assert_eq!(e.http_status(), 400);
        assert!(!e.message().is_empty());
    }
}

#[test]
fn empty_access_key_is_missing_authentication_token() {
    let mut r = signed();
    let a = r.header("authorization").expect("auth").replace(AK, "");
    set_header(&mut r, "Authorization", &a);
    let e = run(&r).expect_err("no key");
    assert_eq!(e.code(), "MissingAuthenticationToken");
    assert_eq!(e.http_status(), 403);
}

#[test]
fn two_mechanisms_or_two_authorization_headers_are_refused() {
    let mut r = signed();
    r.query = "X-Amz-Algorithm=AWS4-HMAC-SHA256".into();
    assert_eq!(code(&r), "IncompleteSignature");
    let mut r = signed();
    let a = r.header("authorization").expect("auth");
    r.headers.push(("authorization".into(), a.into_bytes()));
    assert_eq!(code(&r), "IncompleteSignature");
}

#[test]
fn date_is_required_and_must_parse() {
    let mut r = signed();
    r.headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case("x-amz-date"));
    assert_eq!(code(&r), "IncompleteSignature");
    let mut r = signed();
    set_header(&mut r, "X-Amz-Date", "2026-11-22T00:30:00Z");
    assert_eq!(code(&r), "IncompleteSignature");
}

#[test]
fn date_header_fallback_works() {
    let mut r = base();
    r.headers
        .push(("Date".into(), b"Sun, 22 Nov 2026 00:30:00 GMT".to_vec()));
    // Sign by hand with the Date header (the test signer always adds X-Amz-Date).
    use softvpc_sigv4::canonical::*;
    let th: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), String::from_utf8(v.clone()).expect("utf-8")))
        .collect();
    let refs: Vec<(&str, &str)> = th.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let names = ["content-type", "date", "host"];
    let creq = canonical_request(
        "POST",
        "/",
        "",
        &canonical_headers(&refs, &names).expect("present"),
        "content-type;date;host",
        &sha256_hex(&r.body),
    );
    let scope = credential_scope("20261122", "us-east-1", "ec2");
    let sts = string_to_sign("20261122T003000Z", &scope, &creq);
    let sig = hex::encode(signature(
        &signing_key(SK, "20261122", "us-east-1", "ec2"),
        &sts,
    ));
    r.headers.push((
        "Authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={AK}/{scope}, SignedHeaders=content-type;date;host, Signature={sig}"
        )
        .into_bytes(),
    ));
    let v = run(&r).expect("Date fallback");
    assert_eq!(v.signed_at, at().system_time());
}

#[test]
fn content_sha256_header_must_match_the_body() {
    use softvpc_sigv4::canonical::sha256_hex;
    let mut r = base();
    let h = sha256_hex(&r.body);
    r.headers
        .push(("X-Amz-Content-Sha256".into(), h.clone().into_bytes()));
    signer().sign_header(&mut r);
    run(&r).expect("matching content hash");
    // Same signed hash, different body: the signature alone would not notice.
    let mut t = r.clone();
    t.body = b"Action=DeleteVpc&VpcId=vpc-1&Version=2016-11-15".to_vec();
    assert_eq!(
        run(&t).expect_err("tampered"),
        AuthError::Failure(FailureReason::PayloadHashMismatch)
    );
}

#[test]
fn unsigned_payload_only_without_body() {
    let mut r = base();
    r.headers
        .push(("X-Amz-Content-Sha256".into(), b"UNSIGNED-PAYLOAD".to_vec()));
    signer().sign_header(&mut r);
    // The test signer hashes the body; re-sign with UNSIGNED-PAYLOAD by hand is not needed:
    // whatever the signature, a body under an unsigned payload is refused.
    let e = run(&r).expect_err("unsigned body");
    assert_eq!(e.code(), "AuthFailure");
}

#[test]
fn missing_signed_header_fails() {
    let mut r = signed();
    r.headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
    assert_eq!(
        run(&r).expect_err("missing"),
        AuthError::Failure(FailureReason::MissingSignedHeader("content-type".into()))
    );
}

#[test]
fn skew_limits() {
    let r = signed();
    let t = at().unix_secs();
    let ts = |s: u64| {
        let d = Duration::from_secs(s);
        Timestamp::from_system_time(std::time::UNIX_EPOCH + d).expect("ts")
    };
    run_at(&r, ts(t + 900)).expect("15 min late");
    run_at(&r, ts(t - 900)).expect("15 min early");
    let e = run_at(&r, ts(t + 901)).expect_err("late");
    assert_eq!(e.aws_error().0, "RequestExpired");
    assert_eq!(e.aws_error().2, 400);
    assert_eq!(
        run_at(&r, ts(t - 901)).expect_err("early").code(),
        "RequestExpired"
    );
    // A clock before 1970 cannot vouch for anything.
    let h = r.header_refs();
    let e = verify(
        &r.view(&h),
        std::time::UNIX_EPOCH - Duration::from_secs(1),
        |_| Some(Secret::new(SK)),
    )
    .expect_err("pre-epoch clock");
    assert_eq!(e.code(), "RequestExpired");
}

fn presigned(expires: u64) -> OwnedRequest {
    let mut r = base();
    r.method = "GET".into();
    r.headers.truncate(1); // Host only
    r.body.clear();
    r.query = "Action=DescribeVpcs&Version=2016-11-15".into();
    signer().presign(&mut r, expires);
    r
}

#[test]
fn presigned_form_verifies_and_expires() {
    let r = presigned(600);
    let v = run(&r).expect("presigned");
    assert!(v.presigned);
    assert!(!v.payload_signed); // the test signer uses UNSIGNED-PAYLOAD
    assert_eq!(
        v.expires_at,
        Some(at().system_time() + Duration::from_secs(600))
    );
    let later = |s: u64| {
        Timestamp::from_system_time(at().system_time() + Duration::from_secs(s)).expect("ts")
    };
    run_at(&r, later(600)).expect("last valid second");
    assert_eq!(
        run_at(&r, later(601)).expect_err("expired").code(),
        "RequestExpired"
    );
    // A body under an unsigned presigned payload is refused.
    let mut b = r.clone();
    b.body = b"Action=DeleteVpc".to_vec();
    assert_eq!(
        run(&b).expect_err("body"),
        AuthError::Failure(FailureReason::UnsignedPayloadWithBody)
    );
}

#[test]
fn presigned_parameter_rules() {
    // Longer than 7 days, zero, or not a number.
    for bad in ["604801", "0", "-1", "1e3", ""] {
        let mut r = presigned(600);
        r.query = r
            .query
            .replace("X-Amz-Expires=600", &format!("X-Amz-Expires={bad}"));
        assert_eq!(code(&r), "IncompleteSignature", "expires {bad:?}");
    }
    run(&presigned(604_800)).expect("7 days is allowed");
    // Each required parameter missing in turn.
    for name in [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    ] {
        let r0 = presigned(600);
        let mut r = r0.clone();
        r.query = r0
            .query
            .split('&')
            .filter(|p| !p.starts_with(&format!("{name}=")))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(code(&r), "IncompleteSignature", "without {name}");
    }
    // A repeated parameter.
    let mut r = presigned(600);
    r.query.push_str("&X-Amz-Date=20261122T003000Z");
    assert_eq!(code(&r), "IncompleteSignature");
    // An added unsigned parameter changes the canonical query.
    let mut r = presigned(600);
    r.query.push_str("&DryRun=true");
    assert_eq!(code(&r), "AuthFailure");
}

#[test]
fn session_token_rules() {
    let tok = "token/with+odd=chars";
    let s = Signer {
        session_token: Some(tok),
        ..signer()
    };
    let mut r = base();
    s.sign_header(&mut r);
    let h = r.header_refs();
    let view = r.view(&h);
    let now = at().system_time();
    let with = |t: Option<&str>| Secret {
        secret_access_key: SK.into(),
        session_token: t.map(str::to_owned),
    };
    verify(&view, now, |_| Some(with(Some(tok)))).expect("matching token");
    assert_eq!(
        verify(&view, now, |_| Some(with(None))).expect_err("unexpected token"),
        AuthError::Failure(FailureReason::SecurityTokenMismatch)
    );
    assert_eq!(
        verify(&view, now, |_| Some(with(Some("other")))).expect_err("other token"),
        AuthError::Failure(FailureReason::SecurityTokenMismatch)
    );
    // A temporary key used without its token.
    let r = signed();
    let h = r.header_refs();
    assert_eq!(
        verify(&r.view(&h), now, |_| Some(with(Some(tok)))).expect_err("missing token"),
        AuthError::Failure(FailureReason::SecurityTokenMismatch)
    );
    // Presigned with a token.
    let mut p = presigned(60);
    p.query.clear();
    p.query = "Action=DescribeVpcs".into();
    s.presign(&mut p, 60);
    let h = p.header_refs();
    verify(&p.view(&h), now, |_| Some(with(Some(tok)))).expect("presigned token");
}

#[test]
fn policy_region_pins_the_scope() {
    use softvpc_sigv4::{verify_with, Policy};
    let r = signed();
    let h = r.header_refs();
    let now = at().system_time();
    let pinned = |region| Policy {
        region: Some(region),
        ..Policy::EC2
    };
    verify_with(&r.view(&h), now, &pinned("us-east-1"), |_| {
        Some(Secret::new(SK))
    })
    .expect("same region");
    let e = verify_with(&r.view(&h), now, &pinned("eu-west-1"), |_| {
        Some(Secret::new(SK))
    })
    .expect_err("other region");
    assert_eq!(e.code(), "AuthFailure");
    assert_eq!(e.http_status(), 401);
    assert_eq!(
        e.message(),
        "Credential should be scoped to a valid region, not 'us-east-1'."
    );
}

#[test]
fn secret_debug_is_redacted() {
    let s = format!("{:?}", Secret::new(SK));
    assert!(!s.contains(SK), "{s}");
}

#[test]
fn policy_also_services_admits_another_service() {
    use softvpc_sigv4::{verify_with, Policy};
    let mut r = base();
    Signer {
        service: "sts",
        ..signer()
    }
    .sign_header(&mut r);
    let h = r.header_refs();
    let now = at().system_time();
    let e = verify_with(&r.view(&h), now, &Policy::EC2, |_| Some(Secret::new(SK)))
        .expect_err("sts scope on an ec2-only policy");
    assert_eq!(e.code(), "IncompleteSignature");
    let both = Policy {
        also_services: &["sts"],
        ..Policy::EC2
    };
    let v = verify_with(&r.view(&h), now, &both, |_| Some(Secret::new(SK))).expect("sts allowed");
    assert_eq!(v.service, "sts");
    let other = Policy {
        also_services: &["iam"],
        ..Policy::EC2
    };
    assert!(verify_with(&r.view(&h), now, &other, |_| Some(Secret::new(SK))).is_err());
}
