//! Requests signed by a real client: botocore (the AWS CLI's and boto3's signer), captured by
//! `gen_botocore_fixtures.py` into `tests/fixtures/*.json`. Each must verify as EC2 at its
//! frozen time; changing any byte of the body, of a signed header, of the query, the secret,
//! the access key, the method or the path must make it fail.

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::OwnedRequest;
use softvpc_sigv4::{verify, AuthError, Secret, Verified};

struct Fixture {
    name: String,
    now: SystemTime,
    access_key: String,
    secret: Secret,
    presigned: bool,
    req: OwnedRequest,
}

fn load_all() -> Vec<Fixture> {
    let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures"]
        .iter()
        .collect();
    load_dir(&dir)
}

fn load_dir(dir: &std::path::Path) -> Vec<Fixture> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixtures dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 6,
        "expected the captured fixtures in {}",
        dir.display()
    );
    paths
        .iter()
        .map(|p| {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json");
            let s = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("{k}")).to_owned();
            let headers = v["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().expect("name").to_owned(),
                        h[1].as_str().expect("value").as_bytes().to_vec(),
                    )
                })
                .collect();
            Fixture {
                name: s("name"),
                now: UNIX_EPOCH + Duration::from_secs(v["now_unix"].as_u64().expect("now")),
                access_key: s("access_key"),
                secret: Secret {
                    secret_access_key: s("secret_key"),
                    session_token: v["session_token"].as_str().map(str::to_owned),
                },
                presigned: v["presigned"].as_bool().expect("presigned"),
                req: OwnedRequest {
                    method: s("method"),
                    path: s("path"),
                    query: s("query"),
                    headers,
                    body: s("body").into_bytes(),
                },
            }
        })
        .collect()
}

fn check(f: &Fixture, req: &OwnedRequest, now: SystemTime) -> Result<Verified, AuthError> {
    let headers = req.header_refs();
    verify(&req.view(&headers), now, |k| {
        (k == f.access_key).then(|| f.secret.clone())
    })
}

#[test]
fn every_botocore_request_verifies() {
    check_all_verify(load_all());
}

/// Re-runs the generator with the installed botocore (fresh signatures: the invocation id is
/// random) and verifies its output, so a botocore upgrade that signs differently is caught.
/// Skipped, loudly, where python3 or botocore is missing (the committed fixtures still run).
#[test]
fn freshly_signed_by_installed_botocore_verifies() {
    let has_botocore = std::process::Command::new("python3")
        .args(["-c", "import botocore"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_botocore {
        eprintln!("SKIPPED: python3 with botocore not available");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let script: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "gen_botocore_fixtures.py",
    ]
    .iter()
    .collect();
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(dir.path())
        .output()
        .expect("run generator");
    assert!(
        out.status.success(),
        "generator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_all_verify(load_dir(dir.path()));
}

fn check_all_verify(fixtures: Vec<Fixture>) {
    for f in fixtures {
        let v = check(&f, &f.req, f.now).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert_eq!(v.access_key, f.access_key, "{}", f.name);
        assert_eq!(v.region, "us-east-1");
        assert_eq!(v.service, "ec2");
        assert_eq!(v.presigned, f.presigned, "{}", f.name);
        assert!(v.signed_headers.iter().any(|h| h == "host"));
        // botocore signs the body's hash even when presigning (the empty body's, for a URL).
        assert!(v.payload_signed, "{}", f.name);
        if f.presigned {
            assert!(v.expires_at.is_some());
        } else {
            assert!(v.signed_headers.iter().any(|h| h == "x-amz-date"));
        }
        // Unsigned headers (User-Agent) can change without affecting the signature.
        let mut ua = f.req.clone();
        for (n, val) in &mut ua.headers {
            if n.eq_ignore_ascii_case("user-agent") {
                val.extend_from_slice(b" changed");
            }
        }
        check(&f, &ua, f.now).unwrap_or_else(|e| panic!("{} (user-agent): {e}", f.name));
    }
}

/// Flips one bit of byte `i` (keeps ASCII letters/digits distinct and never adds whitespace
/// runs that canonicalization could fold back).
fn flip(b: &mut u8) {
    *b ^= 0x01;
}

#[test]
fn any_changed_byte_of_body_signed_header_or_query_fails() {
    for f in load_all() {
        let v = check(&f, &f.req, f.now).expect("baseline");
        let mut tried = 0usize;

        for i in 0..f.req.body.len() {
            let mut r = f.req.clone();
            flip(&mut r.body[i]);
            assert!(check(&f, &r, f.now).is_err(), "{}: body byte {i}", f.name);
            tried += 1;
        }
        for (hi, (name, value)) in f.req.headers.iter().enumerate() {
            let lname = name.to_ascii_lowercase();
            let covered = v.signed_headers.contains(&lname)
                || lname == "authorization"
                || lname == "x-amz-security-token";
            if !covered {
                continue;
            }
            for i in 0..value.len() {
                let mut r = f.req.clone();
                flip(&mut r.headers[hi].1[i]);
                let res = check(&f, &r, f.now);
                assert!(res.is_err(), "{}: header {name} byte {i}", f.name);
                tried += 1;
            }
        }
        for i in 0..f.req.query.len() {
            let mut q = f.req.query.clone().into_bytes();
            flip(&mut q[i]);
            let Ok(q) = String::from_utf8(q) else {
                continue;
            };
            let mut r = f.req.clone();
            r.query = q;
            // Flipping "&"<->"'" or "="<->"<" still changes the canonical query.
            assert!(check(&f, &r, f.now).is_err(), "{}: query byte {i}", f.name);
            tried += 1;
        }
        assert!(tried > 20, "{}: only {tried} mutations", f.name);
    }
}

#[test]
fn wrong_secret_key_method_path_or_date_fails() {
    for f in load_all() {
        // Each byte of the secret.
        for i in 0..f.secret.secret_access_key.len() {
            let mut s = f.secret.secret_access_key.clone().into_bytes();
            flip(&mut s[i]);
            let secret = Secret {
                secret_access_key: String::from_utf8(s).expect("ascii"),
                session_token: f.secret.session_token.clone(),
            };
            let headers = f.req.header_refs();
            let e = verify(&f.req.view(&headers), f.now, |_| Some(secret.clone()))
                .expect_err("wrong secret");
            assert_eq!(e.code(), "AuthFailure", "{}: secret byte {i}", f.name);
        }
        // Unknown access key: same answer as a wrong signature.
        let headers = f.req.header_refs();
        let e = verify(&f.req.view(&headers), f.now, |_| None).expect_err("unknown key");
        assert_eq!(e.aws_error(), AuthError::Missing.aws_error());

        let mut r = f.req.clone();
        r.method = if r.method == "GET" { "POST" } else { "GET" }.into();
        assert!(check(&f, &r, f.now).is_err(), "{}: method", f.name);

        let mut r = f.req.clone();
        r.path = "/x".into();
        assert!(check(&f, &r, f.now).is_err(), "{}: path", f.name);

        // The date moved by one second (header form: X-Amz-Date; presigned: the parameter).
        let mut r = f.req.clone();
        if f.presigned {
            r.query = r
                .query
                .replace("X-Amz-Date=20261121T235930Z", "X-Amz-Date=20261121T235931Z");
        } else {
            for (n, val) in &mut r.headers {
                if n.eq_ignore_ascii_case("x-amz-date") {
                    *val = b"20261121T235931Z".to_vec();
                }
            }
        }
        let e = check(&f, &r, f.now).expect_err("moved date");
        assert_eq!(e.code(), "AuthFailure", "{}: date", f.name);
    }
}

#[test]
fn clock_rules_apply_to_real_requests() {
    for f in load_all() {
        let later = |s: u64| f.now + Duration::from_secs(s);
        let earlier = |s: u64| f.now - Duration::from_secs(s);
        if f.presigned {
            let v = check(&f, &f.req, f.now).expect("baseline");
            let exp = v
                .expires_at
                .expect("expiry")
                .duration_since(f.now)
                .expect("after")
                .as_secs();
            // Valid until the last second of X-Amz-Expires (even past the next midnight),
            // expired one second after.
            check(&f, &f.req, later(exp)).unwrap_or_else(|e| panic!("{}: {e}", f.name));
            let e = check(&f, &f.req, later(exp + 1)).expect_err("expired");
            assert_eq!(e.code(), "RequestExpired", "{}", f.name);
            assert_eq!(e.http_status(), 400);
        } else {
            // The fixtures are signed at 23:59:30: a server clock already on the next day
            // still accepts them (the scope day is the request's, not the server's).
            check(&f, &f.req, later(14 * 60)).unwrap_or_else(|e| panic!("{}: {e}", f.name));
            let e = check(&f, &f.req, later(15 * 60 + 1)).expect_err("late");
            assert_eq!(e.code(), "RequestExpired", "{}", f.name);
        }
        let e = check(&f, &f.req, earlier(15 * 60 + 1)).expect_err("from the future");
        assert_eq!(e.code(), "RequestExpired", "{}", f.name);
    }
}
