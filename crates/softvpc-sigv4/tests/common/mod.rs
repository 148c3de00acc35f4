//! Shared test helpers: a raw-HTTP request parser for the vector files, and a small SigV4
//! *signer* (tests only; the crate itself only verifies) for round-trip and mutation tests.

#![allow(dead_code)] // each test binary uses a different subset

use softvpc_sigv4::canonical::{
    canonical_headers, canonical_query, canonical_request, canonical_uri, credential_scope,
    sha256_hex, signature, signing_key, string_to_sign, UNSIGNED_PAYLOAD,
};
use softvpc_sigv4::time::Timestamp;
use softvpc_sigv4::Request;

/// An owned HTTP request; `view()` lends it as the verifier's [`Request`].
#[derive(Debug, Clone)]
pub struct OwnedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl OwnedRequest {
    pub fn header_refs(&self) -> Vec<(&str, &[u8])> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect()
    }

    pub fn view<'a>(&'a self, headers: &'a [(&'a str, &'a [u8])]) -> Request<'a> {
        Request {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers,
            body: &self.body,
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Parses the test suite's `.req` form: request line, `Name:value` lines, blank line, body.
/// The request target may contain raw spaces (get-space), so the protocol is cut off the end.
pub fn parse_req(text: &str) -> OwnedRequest {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.split('\n');
    let request_line = lines.next().expect("request line");
    let (method, rest) = request_line.split_once(' ').expect("method");
    let target = rest.strip_suffix(" HTTP/1.1").expect("protocol");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.to_owned(), v.as_bytes().to_vec())
        })
        .collect();
    OwnedRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

/// What a test signer needs to know.
#[derive(Debug, Clone)]
pub struct Signer<'a> {
    pub access_key: &'a str,
    pub secret: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub time: Timestamp,
    pub session_token: Option<&'a str>,
}

fn sorted_lower_names(req: &OwnedRequest, extra: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = req
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .chain(extra.iter().map(|s| (*s).to_owned()))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn text_headers(req: &OwnedRequest) -> Vec<(String, String)> {
    req.headers
        .iter()
        .map(|(n, v)| {
            (
                n.clone(),
                String::from_utf8(v.clone()).expect("utf-8 header"),
            )
        })
        .collect()
}

impl Signer<'_> {
    fn signature_hex(&self, creq: &str) -> String {
        let day = self.time.day();
        let scope = credential_scope(&day, self.region, self.service);
        let sts = string_to_sign(&self.time.amz(), &scope, creq);
        let key = signing_key(self.secret, &day, self.region, self.service);
        hex::encode(signature(&key, &sts))
    }

    /// Adds `X-Amz-Date` (and the token) and an `Authorization` header signing every header.
    pub fn sign_header(&self, req: &mut OwnedRequest) {
        req.headers
            .push(("X-Amz-Date".into(), self.time.amz().into_bytes()));
        if let Some(t) = self.session_token {
            req.headers
                .push(("X-Amz-Security-Token".into(), t.as_bytes().to_vec()));
        }
        let names = sorted_lower_names(req, &[]);
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let th = text_headers(req);
        let th_refs: Vec<(&str, &str)> = th.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let block = canonical_headers(&th_refs, &name_refs).expect("all present");
        let signed = names.join(";");
        let creq = canonical_request(
            &req.method,
            &canonical_uri(&req.path),
            &canonical_query(&req.query, None),
            &block,
            &signed,
            &sha256_hex(&req.body),
        );
        let sig = self.signature_hex(&creq);
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={signed}, Signature={sig}",
            self.access_key,
            credential_scope(&self.time.day(), self.region, self.service)
        );
        req.headers
            .push(("Authorization".into(), auth.into_bytes()));
    }

    /// Appends the presigned parameters (and the signature) to the query string.
    pub fn presign(&self, req: &mut OwnedRequest, expires: u64) {
        let names = sorted_lower_names(req, &[]);
        let signed = names.join(";");
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let cred = format!(
            "{}/{}",
            self.access_key,
            credential_scope(&self.time.day(), self.region, self.service)
        );
        let mut q = req.query.clone();
        let mut add = |k: &str, v: &str| {
            if !q.is_empty() {
                q.push('&');
            }
            q.push_str(k);
            q.push('=');
            q.push_str(&enc(v));
        };
        add("X-Amz-Algorithm", "AWS4-HMAC-SHA256");
        add("X-Amz-Credential", &cred);
        add("X-Amz-Date", &self.time.amz());
        add("X-Amz-Expires", &expires.to_string());
        add("X-Amz-SignedHeaders", &signed);
        if let Some(t) = self.session_token {
            add("X-Amz-Security-Token", t);
        }
        req.query = q;
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let th = text_headers(req);
        let th_refs: Vec<(&str, &str)> = th.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let block = canonical_headers(&th_refs, &name_refs).expect("all present");
        let creq = canonical_request(
            &req.method,
            &canonical_uri(&req.path),
            &canonical_query(&req.query, None),
            &block,
            &signed,
            UNSIGNED_PAYLOAD,
        );
        let sig = self.signature_hex(&creq);
        req.query.push_str("&X-Amz-Signature=");
        req.query.push_str(&sig);
    }
}
