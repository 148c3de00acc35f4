//! The SigV4 building blocks: canonical request, string to sign, signing key and signature.
//!
//! Everything here is a pure function of its inputs and independent of the service name, so the
//! public AWS test-suite vectors (service `service`) exercise exactly the code that verifies EC2
//! requests (service `ec2`). The rules follow the AWS SigV4 specification:
//!
//! - URI: each byte of the path as received is URI-encoded once, `/` kept. Paths are *not*
//!   normalized (no `.`/`..` removal, no `//` folding): that step exists only for some services'
//!   clients, and EC2 requests always use `/`.
//! - Query: split on `&`, each name and value percent-decoded then re-encoded with the AWS
//!   unreserved set (`A-Za-z0-9-_.~`, hex upper case), sorted by encoded name then encoded value.
//! - Headers: names lower-cased, values trimmed with inner whitespace runs collapsed to one
//!   space, repeated headers joined with `,` in the order received.

use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// The only algorithm SigV4 defines for HMAC signing.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The terminator of every credential scope.
pub const TERMINATOR: &str = "aws4_request";
/// The payload hash a presigned URL signs instead of the body.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Bytes AWS leaves unencoded: RFC 3986 unreserved characters.
const AWS_QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same set for a path, where `/` separates segments and stays as is.
const AWS_PATH: &AsciiSet = &AWS_QUERY.remove(b'/');

type HmacSha256 = Hmac<Sha256>;

/// Lower-case hex SHA-256, the form SigV4 uses for payload and canonical-request hashes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The canonical URI: the path as received, URI-encoded once (`/` kept); empty means `/`.
pub fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_owned();
    }
    percent_encode(raw_path.as_bytes(), AWS_PATH).to_string()
}

/// The canonical query string of a raw (still percent-encoded) query, leaving out any parameter
/// whose encoded name equals `exclude` (the presigned form's own `X-Amz-Signature`).
pub fn canonical_query(raw_query: &str, exclude: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (reencode(k), reencode(v))
        })
        .filter(|(k, _)| exclude != Some(k.as_str()))
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(raw_query.len() + 16);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Decodes `%XX` escapes (a malformed escape stays literal) and encodes with the AWS set.
fn reencode(s: &str) -> String {
    let bytes: Vec<u8> = percent_decode_str(s).collect();
    percent_encode(&bytes, AWS_QUERY).to_string()
}

/// Percent-decodes a query component into bytes (no `+` to space: SigV4 clients send `%20`).
pub fn query_decode(s: &str) -> Vec<u8> {
    percent_decode_str(s).collect()
}

/// A header value as it enters the canonical request: trimmed, whitespace runs collapsed.
pub fn canonical_header_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value
        .split([' ', '\t', '\n', '\r', '\x0b', '\x0c'])
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Error from [`canonical_headers`]: a header the signature names is not in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingHeader(pub String);

/// The canonical headers block (each line `name:value\n`) for the signed header names, in the
/// order given. Repeated headers are joined with `,` in the order received.
pub fn canonical_headers(
    headers: &[(&str, &str)],
    signed: &[&str],
) -> Result<String, MissingHeader> {
    let mut out = String::new();
    for name in signed {
        let mut first = true;
        out.push_str(name);
        out.push(':');
        for (_, v) in headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
            if !first {
                out.push(',');
            }
            out.push_str(&canonical_header_value(v));
            first = false;
        }
        if first {
            return Err(MissingHeader((*name).to_owned()));
        }
        out.push('\n');
    }
    Ok(out)
}

/// The canonical request, joined exactly as SigV4 specifies.
pub fn canonical_request(
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    canonical_headers: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    format!(
        "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
    )
}

/// `<day>/<region>/<service>/aws4_request`.
pub fn credential_scope(day: &str, region: &str, service: &str) -> String {
    format!("{day}/{region}/{service}/{TERMINATOR}")
}

/// The string to sign: algorithm, timestamp (`YYYYMMDDTHHMMSSZ`), scope, canonical-request hash.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The derived key: HMAC chain `"AWS4"+secret` -> day -> region -> service -> `aws4_request`.
pub fn signing_key(secret: &str, day: &str, region: &str, service: &str) -> [u8; 32] {
    let mut k = Vec::with_capacity(4 + secret.len());
    k.extend_from_slice(b"AWS4");
    k.extend_from_slice(secret.as_bytes());
    let k_date = hmac(&k, day.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, TERMINATOR.as_bytes())
}

/// The raw signature bytes (hex-encode them for the wire).
pub fn signature(signing_key: &[u8; 32], string_to_sign: &str) -> [u8; 32] {
    hmac(signing_key, string_to_sign.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encoding_keeps_slash_and_unreserved() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/a b/ሴ"), "/a%20b/%E1%88%B4");
        // Already-encoded input is encoded again: SigV4 (outside S3) signs the wire path encoded.
        assert_eq!(canonical_uri("/a%20b"), "/a%2520b");
        assert_eq!(canonical_uri("//x/../"), "//x/../");
    }

    #[test]
    fn query_is_reencoded_and_sorted() {
        assert_eq!(canonical_query("", None), "");
        assert_eq!(canonical_query("b=2&a=1&a=0", None), "a=0&a=1&b=2");
        assert_eq!(canonical_query("k", None), "k=");
        assert_eq!(canonical_query("a=%2f%7E+x&&", None), "a=%2F~%2Bx");
        assert_eq!(canonical_query("a=b c", None), "a=b%20c");
        assert_eq!(canonical_query("a=%zz", None), "a=%25zz");
        assert_eq!(
            canonical_query("X-Amz-Signature=abc&Z=1", Some("X-Amz-Signature")),
            "Z=1"
        );
        // Sorting is on the encoded form: "%" (0x25) sorts before letters.
        assert_eq!(canonical_query("b=1&%41=2", None), "A=2&b=1");
    }

    #[test]
    fn header_values_trimmed_and_collapsed() {
        assert_eq!(canonical_header_value("  a   b\t\tc  "), "a b c");
        assert_eq!(canonical_header_value(""), "");
        let h = [("Host", "x"), ("My-H", " v1 "), ("my-h", "v2")];
        assert_eq!(
            canonical_headers(&h, &["host", "my-h"]).as_deref(),
            Ok("host:x\nmy-h:v1,v2\n")
        );
        assert_eq!(
            canonical_headers(&h, &["host", "x-amz-date"]),
            Err(MissingHeader("x-amz-date".into()))
        );
    }
}
