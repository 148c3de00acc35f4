//! The public AWS SigV4 test-suite vectors (see `tests/vectors/README.md`): for each one, the
//! canonical request, string to sign and signature computed by this crate must equal the
//! published ones, and the full verifier must accept the signed request (with the vector's
//! service as policy) and refuse it with a wrong secret or a stale clock.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::parse_req;
use softvpc_sigv4::canonical::{
    canonical_headers, canonical_query, canonical_request, canonical_uri, credential_scope,
    sha256_hex, signature, signing_key, string_to_sign,
};
use softvpc_sigv4::time::Timestamp;
use softvpc_sigv4::{verify_with, AuthError, Policy, Secret};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// Every vector shipped in tests/vectors (a `.req` with its `.creq`, `.sts`, `.authz`).
const VECTORS: &[&str] = &[
    "get-vanilla",
    "get-vanilla-empty-query-key",
    "get-vanilla-query-order-key",
    "get-vanilla-query-order-key-case",
    "get-vanilla-query-order-value",
    "get-vanilla-query-unreserved",
    "get-vanilla-utf8-query",
    "get-unreserved",
    "get-space",
    "get-header-key-duplicate",
    "get-header-value-order",
    "get-header-value-trim",
    "post-vanilla",
    "post-vanilla-query",
    "post-header-key-sort",
    "post-header-value-case",
    "post-x-www-form-urlencoded",
    "post-x-www-form-urlencoded-parameters",
    "post-sts-header-before",
    "post-sts-header-after",
    "botocore-get-utf8",
    "botocore-get-space",
];

fn vector_file(name: &str, ext: &str) -> String {
    let p: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "vectors",
        &format!("{name}.{ext}"),
    ]
    .iter()
    .collect();
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

struct Authz {
    day: String,
    region: String,
    service: String,
    signed_headers: String,
    signature: String,
}

fn parse_authz(a: &str) -> Authz {
    let rest = a
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .expect("prefix");
    let (cred, rest) = rest.split_once(", SignedHeaders=").expect("signed headers");
    let (sh, sig) = rest.split_once(", Signature=").expect("signature");
    let parts: Vec<&str> = cred.split('/').collect();
    assert_eq!(parts[0], "AKIDEXAMPLE");
    assert_eq!(parts[4], "aws4_request");
    Authz {
        day: parts[1].into(),
        region: parts[2].into(),
        service: parts[3].into(),
        signed_headers: sh.into(),
        signature: sig.into(),
    }
}

fn secret_for(name: &str) -> Secret {
    let token = vector_file("session-token", "txt");
    let mut s = Secret::new(SECRET);
    if name.starts_with("post-sts-") {
        s.session_token = Some(token);
    }
    s
}

#[test]
fn canonical_request_string_to_sign_and_signature_match_the_suite() {
    for name in VECTORS {
        let req = parse_req(&vector_file(name, "req"));
        let authz_text = vector_file(name, "authz");
        let authz = parse_authz(&authz_text);
        let text: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), String::from_utf8(v.clone()).expect("utf-8")))
            .collect();
        let refs: Vec<(&str, &str)> = text.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let signed: Vec<&str> = authz.signed_headers.split(';').collect();
        let creq = canonical_request(
            &req.method,
            &canonical_uri(&req.path),
            &canonical_query(&req.query, None),
            &canonical_headers(&refs, &signed).expect("signed headers present"),
            &authz.signed_headers,
            &sha256_hex(&req.body),
        );
        assert_eq!(creq, vector_file(name, "creq"), "{name}: canonical request");

        let ts = match req.header("x-amz-date") {
            Some(d) => Timestamp::parse_amz(d.trim()).expect("x-amz-date"),
            None => Timestamp::parse_http(req.header("date").expect("date").trim()).expect("date"),
        };
        let scope = credential_scope(&authz.day, &authz.region, &authz.service);
        let sts = string_to_sign(&ts.amz(), &scope, &creq);
        assert_eq!(sts, vector_file(name, "sts"), "{name}: string to sign");

        let key = signing_key(SECRET, &authz.day, &authz.region, &authz.service);
        assert_eq!(
            hex::encode(signature(&key, &sts)),
            authz.signature,
            "{name}: signature"
        );
    }
}

#[test]
fn the_verifier_accepts_every_vector_and_refuses_it_when_wrong() {
    for name in VECTORS {
        let mut req = parse_req(&vector_file(name, "req"));
        let authz_text = vector_file(name, "authz");
        let authz = parse_authz(&authz_text);
        req.headers
            .push(("Authorization".into(), authz_text.clone().into_bytes()));
        let ts = match req.header("x-amz-date") {
            Some(d) => Timestamp::parse_amz(d.trim()).expect("x-amz-date"),
            None => Timestamp::parse_http(req.header("date").expect("date").trim()).expect("date"),
        };
        let policy = Policy {
            service: &authz.service,
            ..Policy::EC2
        };
        let headers = req.header_refs();
        let view = req.view(&headers);
        let now = ts.system_time() + Duration::from_secs(60);

        let ok = verify_with(&view, now, &policy, |k| {
            (k == "AKIDEXAMPLE").then(|| secret_for(name))
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ok.access_key, "AKIDEXAMPLE");
        assert_eq!(ok.region, "us-east-1");
        assert_eq!(ok.service, authz.service);
        assert!(!ok.presigned);
        assert!(ok.payload_signed);
        assert_eq!(ok.signed_at, ts.system_time());

        // Wrong secret, unknown key: the same AuthFailure.
        let wrong = verify_with(&view, now, &policy, |_| {
            let mut s = secret_for(name);
            s.secret_access_key.push('x');
            Some(s)
        })
        .expect_err("wrong secret");
        let unknown = verify_with(&view, now, &policy, |_| None).expect_err("unknown key");
        assert_eq!(wrong.aws_error(), unknown.aws_error(), "{name}");
        assert_eq!(wrong.aws_error().0, "AuthFailure");
        assert_eq!(wrong.http_status(), 401);

        // 16 minutes late or early: RequestExpired.
        for now in [
            ts.system_time() + Duration::from_secs(16 * 60),
            ts.system_time() - Duration::from_secs(16 * 60),
        ] {
            let e =
                verify_with(&view, now, &policy, |_| Some(secret_for(name))).expect_err("stale");
            assert!(matches!(e, AuthError::Expired(_)), "{name}: {e:?}");
            assert_eq!(e.aws_error().0, "RequestExpired");
        }
        // Exactly 15 minutes either way is still accepted.
        for now in [
            ts.system_time() + Duration::from_secs(15 * 60),
            ts.system_time() - Duration::from_secs(15 * 60),
        ] {
            verify_with(&view, now, &policy, |_| Some(secret_for(name)))
                .unwrap_or_else(|e| panic!("{name} at the skew limit: {e}"));
        }

        // The EC2 policy refuses a credential scoped to another service.
        let e =
            verify_with(&view, now, &Policy::EC2, |_| Some(secret_for(name))).expect_err("service");
        assert_eq!(e.code(), "IncompleteSignature", "{name}");
    }
}

#[test]
fn session_token_must_match_the_keys() {
    // post-sts-header-before signs the token; presenting it for a long-term key (no token) or
    // with another expected token fails like a bad signature.
    let mut req = parse_req(&vector_file("post-sts-header-before", "req"));
    let authz_text = vector_file("post-sts-header-before", "authz");
    req.headers
        .push(("Authorization".into(), authz_text.into_bytes()));
    let ts = Timestamp::parse_amz("20150830T123600Z").expect("ts");
    let policy = Policy {
        service: "service",
        ..Policy::EC2
    };
    let headers = req.header_refs();
    let view = req.view(&headers);
    let e = verify_with(&view, ts.system_time(), &policy, |_| {
        Some(Secret::new(SECRET))
    })
    .expect_err("token without a token key");
    assert_eq!(e.code(), "AuthFailure");
    let e = verify_with(&view, ts.system_time(), &policy, |_| {
        Some(Secret {
            secret_access_key: SECRET.into(),
            session_token: Some("other".into()),
        })
    })
    .expect_err("other token");
    assert_eq!(e.code(), "AuthFailure");
}
