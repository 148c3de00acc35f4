//! The body of the `sigv4_verify` fuzz target (in `fuzz/`), kept here so the crate's own test
//! replays saved inputs (`tests/regressions/sigv4_verify/`) through exactly the same code.
//!
//! Input layout: byte 0 is a mode, bytes 1..5 a big-endian `i32` clock offset in seconds, and
//! the rest is `method \0 path \0 query \0 headers \0 body` (headers are `name:value` lines
//! separated by `\n`; the body is everything after the fourth `\0`). Mode bit 0 makes the
//! target sign the request itself with a known key before verifying it (so the fuzzer reaches
//! the payload, token and signature-comparison paths that random bytes never would); bit 1
//! signs the presigned form instead of the header form.
//!
//! Invariants checked: no panic; every refusal maps to a 400/401/403 EC2 error; and when a
//! self-signed request verifies, changing a byte of its body makes it fail.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::canonical::{
    canonical_headers, canonical_query, canonical_request, canonical_uri, credential_scope,
    sha256_hex, signature, signing_key, string_to_sign, UNSIGNED_PAYLOAD,
};
use crate::time::Timestamp;
use crate::{verify, Request, Secret};

const AK: &str = "AKIAFUZZFUZZFUZZFUZZ";
const SK: &str = "fuzzsecretfuzzsecretfuzzsecretfuzzsecret";
/// 2026-11-22T00:00:00Z: the time the target signs at.
const BASE: u64 = 1_795_305_600;

struct Parts<'a> {
    mode: u8,
    offset: i32,
    method: &'a str,
    path: &'a str,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
    body: &'a [u8],
}

fn split(data: &[u8]) -> Option<Parts<'_>> {
    if data.len() < 5 {
        return None;
    }
    let mode = data[0];
    let offset = i32::from_be_bytes([data[1], data[2], data[3], data[4]]);
    let mut fields = data[5..].splitn(5, |b| *b == 0);
    let method = std::str::from_utf8(fields.next()?).ok()?;
    let path = std::str::from_utf8(fields.next().unwrap_or(b"/")).ok()?;
    let query = String::from_utf8_lossy(fields.next().unwrap_or(b"")).into_owned();
    let headers = fields
        .next()
        .unwrap_or(b"")
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|b| *b == b':')?;
            let name = std::str::from_utf8(&line[..colon]).ok()?;
            Some((name.to_owned(), line[colon + 1..].to_vec()))
        })
        .collect();
    let body = fields.next().unwrap_or(b"");
    Some(Parts {
        mode,
        offset,
        method,
        path,
        query,
        headers,
        body,
    })
}

/// Signs `p` with the fuzz key at `BASE`, covering every header whose value is UTF-8.
/// Returns `false` (nothing to sign) when there is no such header.
fn self_sign(p: &mut Parts<'_>, presign: bool) -> bool {
    let ts = Timestamp::from_system_time(UNIX_EPOCH + Duration::from_secs(BASE))
        .expect("BASE is a valid time");
    let text: Vec<(String, String)> = p
        .headers
        .iter()
        .filter_map(|(n, v)| Some((n.clone(), String::from_utf8(v.clone()).ok()?)))
        .collect();
    if !presign {
        p.headers
            .push(("X-Amz-Date".to_owned(), ts.amz().into_bytes()));
    }
    let mut names: Vec<String> = text.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    if !presign {
        names.push("x-amz-date".to_owned());
    }
    names.sort();
    names.dedup();
    if names.is_empty() || names.iter().any(|n| n.is_empty() || n.contains(';')) {
        return false;
    }
    let signed = names.join(";");
    let day = ts.day();
    let scope = credential_scope(&day, "us-east-1", "ec2");
    if presign {
        if !p.query.is_empty() {
            p.query.push('&');
        }
        p.query.push_str(&format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={AK}%2F{}&X-Amz-Date={}\
             &X-Amz-Expires=300&X-Amz-SignedHeaders={}",
            scope.replace('/', "%2F"),
            ts.amz(),
            signed.replace(';', "%3B")
        ));
    }
    let mut all_text = text;
    if !presign {
        all_text.push(("X-Amz-Date".to_owned(), ts.amz()));
    }
    let refs: Vec<(&str, &str)> = all_text
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let Ok(block) = canonical_headers(&refs, &name_refs) else {
        return false;
    };
    let payload = if presign {
        UNSIGNED_PAYLOAD.to_owned()
    } else {
        sha256_hex(p.body)
    };
    let creq = canonical_request(
        p.method,
        &canonical_uri(p.path),
        &canonical_query(&p.query, None),
        &block,
        &signed,
        &payload,
    );
    let sts = string_to_sign(&ts.amz(), &scope, &creq);
    let sig = signature(&signing_key(SK, &day, "us-east-1", "ec2"), &sts);
    let hex_sig: String = sig.iter().map(|b| format!("{b:02x}")).collect();
    if presign {
        p.query.push_str("&X-Amz-Signature=");
        p.query.push_str(&hex_sig);
    } else {
        p.headers.push((
            "Authorization".to_owned(),
            format!(
                "AWS4-HMAC-SHA256 Credential={AK}/{scope}, SignedHeaders={signed}, \
                 Signature={hex_sig}"
            )
            .into_bytes(),
        ));
    }
    true
}

fn run(p: &Parts<'_>, body: &[u8], now: SystemTime) -> Result<crate::Verified, crate::AuthError> {
    let refs: Vec<(&str, &[u8])> = p
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let req = Request {
        method: p.method,
        path: p.path,
        query: &p.query,
        headers: &refs,
        body,
    };
    verify(&req, now, |k| (k == AK).then(|| Secret::new(SK)))
}

/// One fuzz input; panics only when an invariant above is broken.
pub fn verify_input(data: &[u8]) {
    let Some(mut p) = split(data) else {
        return;
    };
    let presign = p.mode & 2 == 2;
    let self_signed = p.mode & 1 == 1 && self_sign(&mut p, presign);
    let now = UNIX_EPOCH + Duration::from_secs(BASE.saturating_add_signed(i64::from(p.offset)));
    match run(&p, p.body, now) {
        Err(e) => {
            let (code, message, status) = e.aws_error();
            assert!(!code.is_empty() && !message.is_empty());
            assert!(matches!(status, 400 | 401 | 403), "{code} {status}");
        }
        Ok(v) => {
            assert_eq!(v.access_key, AK);
            if self_signed && !p.body.is_empty() {
                let mut changed = p.body.to_vec();
                changed[0] ^= 0x01;
                assert!(
                    run(&p, &changed, now).is_err(),
                    "a changed body still verified"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(mode: u8, offset: i32, rest: &[u8]) -> Vec<u8> {
        let mut v = vec![mode];
        v.extend_from_slice(&offset.to_be_bytes());
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn self_signed_inputs_verify() {
        let rest = b"POST\0/\0\0Host:127.0.0.1:8787\nContent-Type:application/x-www-form-urlencoded\0Action=DescribeVpcs";
        for mode in [1u8, 3] {
            let data = input(mode, 30, rest);
            let mut p = split(&data).expect("split");
            assert!(self_sign(&mut p, mode & 2 == 2));
            let now = UNIX_EPOCH + Duration::from_secs(BASE + 30);
            let body: &[u8] = if mode & 2 == 2 { b"" } else { p.body };
            run(&p, body, now).expect("self-signed request verifies");
            verify_input(&data);
        }
    }

    #[test]
    fn short_and_odd_inputs_do_not_panic() {
        for data in [
            &b""[..],
            b"\x01",
            b"\x01\0\0\0\0",
            b"\x03\x7f\xff\xff\xffGET",
            b"\x01\x80\0\0\0GET\0/\0a=b\0:\n:x\0",
        ] {
            verify_input(data);
        }
    }
}
