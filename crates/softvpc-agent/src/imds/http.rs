//! The metadata service's HTTP, sans-IO: a request head read from a connection's bytes
//! ([`read_request`], `httparse`), the answer AWS's IMDS gives it ([`answer`]: IMDSv2 tokens,
//! IMDSv1, `HttpTokens`, `HttpEndpoint`, AWS's 400/401/403/404/405), and the response bytes
//! ([`Response::to_bytes`]). Tokens ([`TokenKey`]) are stateless: an HMAC over the instance and
//! the expiry under a key of this agent, so their number is unbounded, as on AWS, and one
//! instance's token is refused for another.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::content::{self, Category, InstanceView};

/// The header asking for a token's lifetime (PUT).
pub const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// The header carrying a token (GET, HEAD).
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// The longest token lifetime (6 hours).
pub const MAX_TTL: u64 = 21_600;
/// The largest request head read (more is a 400).
pub const MAX_HEAD: usize = 8192;
/// The largest request body skipped (more is a 400).
pub const MAX_BODY: usize = 8192;

/// HTTP method, as far as the service cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// HEAD: a GET without the body.
    Head,
    /// PUT (the token).
    Put,
    /// Anything else (405).
    Other,
}

/// A request head, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The request target.
    pub path: String,
    /// `X-aws-ec2-metadata-token`.
    pub token: Option<String>,
    /// `X-aws-ec2-metadata-token-ttl-seconds`, as sent.
    pub ttl: Option<String>,
    /// An `X-Forwarded-For` header was present.
    pub forwarded: bool,
    /// The body's length (`Content-Length`), skipped.
    pub body_len: usize,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
}

/// A request the service cannot read: answered 400 and the connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRequest;

/// Reads one request head from the start of `buf`: `Ok(None)` while incomplete, else the
/// request and the bytes its head took (the body, `body_len` bytes, follows).
pub fn read_request(buf: &[u8]) -> Result<Option<(Request, usize)>, BadRequest> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        _ => return Err(BadRequest),
    };
    if n > MAX_HEAD {
        return Err(BadRequest);
    }
    let method = match req.method.ok_or(BadRequest)? {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "PUT" => Method::Put,
        _ => Method::Other,
    };
    let version = req.version.ok_or(BadRequest)?;
    let mut out = Request {
        method,
        path: req.path.ok_or(BadRequest)?.to_string(),
        token: None,
        ttl: None,
        forwarded: false,
        body_len: 0,
        keep_alive: version == 1,
    };
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| BadRequest)?.trim();
        let name = h.name;
        if name.eq_ignore_ascii_case(TOKEN_HEADER) {
            out.token = Some(value.to_string());
        } else if name.eq_ignore_ascii_case(TTL_HEADER) {
            out.ttl = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            out.forwarded = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            out.body_len = value.parse().map_err(|_| BadRequest)?;
            if out.body_len > MAX_BODY {
                return Err(BadRequest);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked bodies are not taken (no client of the service sends one).
            return Err(BadRequest);
        } else if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                out.keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                out.keep_alive = true;
            }
        }
    }
    Ok(Some((out, n)))
}

/// The key tokens are signed with (random per agent start: tokens do not outlive it).
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A fresh random key.
    pub fn random() -> TokenKey {
        TokenKey(rand::random())
    }

    /// A fixed key (tests).
    pub fn from_bytes(b: [u8; 32]) -> TokenKey {
        TokenKey(b)
    }

    fn mac(&self, instance_id: &str, expiry: u64) -> [u8; 32] {
        let mut m = <Hmac<Sha256>>::new_from_slice(&self.0).expect("any key length");
        m.update(instance_id.as_bytes());
        m.update(&[0]);
        m.update(&expiry.to_be_bytes());
        m.finalize().into_bytes().into()
    }

    /// A token for `instance_id` valid until `expiry` (seconds since the epoch).
    pub fn issue(&self, instance_id: &str, expiry: u64) -> String {
        use base64::Engine as _;
        let mut raw = Vec::with_capacity(41);
        raw.push(1u8);
        raw.extend_from_slice(&expiry.to_be_bytes());
        raw.extend_from_slice(&self.mac(instance_id, expiry));
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `token` is this key's, for `instance_id`, and unexpired at `now`.
    pub fn check(&self, token: &str, instance_id: &str, now: u64) -> bool {
        use base64::Engine as _;
        let Ok(raw) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        let [1, rest @ ..] = raw.as_slice() else {
            return false;
        };
        if rest.len() != 40 {
            return false;
        }
        let expiry = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
        let want = self.mac(instance_id, expiry);
        // Constant time: the comparison does not tell how much of a guess was right.
        let same = want
            .iter()
            .zip(&rest[8..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        same && now < expiry
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body (sent unless the request was HEAD).
    pub body: Vec<u8>,
    /// `text/plain` for data, `application/octet-stream` for the user data, `text/html` for
    /// AWS's error pages.
    pub content_type: &'static str,
    /// The token's lifetime, echoed on a token PUT.
    pub ttl: Option<u64>,
    /// Send the answer with the IP TTL set to the instance's hop limit (the token PUT).
    pub hop_limited: bool,
    /// Whether a body is written (not for HEAD).
    pub with_body: bool,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    }
}

/// AWS's error page for `status`.
pub fn error(status: u16) -> Response {
    let title = format!("{status} - {}", reason(status));
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n\
         <!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n\
         \t\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n\
         <html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n \
         <head>\n  <title>{title}</title>\n </head>\n \
         <body>\n  <h1>{title}</h1>\n </body>\n</html>\n"
    );
    Response {
        status,
        body: body.into_bytes(),
        content_type: "text/html",
        ttl: None,
        hop_limited: false,
        with_body: true,
    }
}

fn ok(body: String) -> Response {
    Response {
        status: 200,
        body: body.into_bytes(),
        content_type: "text/plain",
        ttl: None,
        hop_limited: false,
        with_body: true,
    }
}

/// The service's answer to `req` from instance `v` at `now` (seconds since the epoch).
pub fn answer(req: &Request, v: &InstanceView, key: &TokenKey, now: u64) -> Response {
    let mut r = decide(req, v, key, now);
    if req.method == Method::Head {
        r.with_body = false;
    }
    r
}

fn decide(req: &Request, v: &InstanceView, key: &TokenKey, now: u64) -> Response {
    if !v.meta.endpoint_enabled {
        return error(403);
    }
    let cat = content::parse_path(&req.path);
    match req.method {
        Method::Put => {
            match cat {
                Some(Category::Token { latest: true }) => {}
                // A token from a dated version, or proxied: refused as AWS does.
                Some(Category::Token { latest: false }) => return error(403),
                _ => return error(405),
            }
            if req.forwarded {
                return error(403);
            }
            let Some(ttl) = req
                .ttl
                .as_deref()
                .and_then(|t| t.parse::<u64>().ok())
                .filter(|t| (1..=MAX_TTL).contains(t))
            else {
                return error(400);
            };
            let mut r = ok(key.issue(&v.instance_id, now + ttl));
            r.ttl = Some(ttl);
            r.hop_limited = true;
            r
        }
        Method::Get | Method::Head => {
            if matches!(cat, Some(Category::Token { .. })) {
                return error(405);
            }
            match &req.token {
                Some(t) if !key.check(t, &v.instance_id, now) => return error(401),
                Some(_) => {}
                None if v.meta.tokens_required => return error(401),
                None => {}
            }
            if matches!(cat, Some(Category::UserData)) {
                return match content::user_data(v) {
                    Some(data) => Response {
                        body: data.to_vec(),
                        content_type: "application/octet-stream",
                        ..ok(String::new())
                    },
                    None => error(404),
                };
            }
            match cat.and_then(|c| content::lookup(v, &c)) {
                Some(body) => ok(body),
                None => error(404),
            }
        }
        Method::Other => error(405),
    }
}

impl Response {
    /// The response's bytes, AWS's headers; `close` adds `Connection: close`; `date` is the
    /// HTTP date of now.
    pub fn to_bytes(&self, close: bool, date: &str) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nAccept-Ranges: none\r\n",
            self.status,
            reason(self.status),
            self.content_type
        );
        if let Some(ttl) = self.ttl {
            head.push_str(&format!("X-Aws-Ec2-Metadata-Token-Ttl-Seconds: {ttl}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nDate: {date}\r\nServer: EC2ws\r\nConnection: {}\r\n\r\n",
            self.body.len(),
            if close { "close" } else { "keep-alive" }
        ));
        let mut out = head.into_bytes();
        if self.with_body {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> InstanceView {
        super::super::content::tests_support::instance()
    }

    fn req(method: Method, path: &str) -> Request {
        Request {
            method,
            path: path.into(),
            token: None,
            ttl: None,
            forwarded: false,
            body_len: 0,
            keep_alive: true,
        }
    }

    #[test]
    fn imdsv2_token_then_get_and_the_refusals() {
        let key = TokenKey::from_bytes([7; 32]);
        let mut v = view();
        let now = 1_000_000;
        let mut put = req(Method::Put, "/latest/api/token");
        assert_eq!(answer(&put, &v, &key, now).status, 400, "no TTL");
        for bad in ["0", "21601", "x", "-1"] {
            put.ttl = Some(bad.into());
            assert_eq!(answer(&put, &v, &key, now).status, 400, "{bad}");
        }
        put.ttl = Some("60".into());
        let r = answer(&put, &v, &key, now);
        assert_eq!((r.status, r.ttl, r.hop_limited), (200, Some(60), true));
        let token = String::from_utf8(r.body.clone()).unwrap();
        let mut get = req(Method::Get, "/latest/meta-data/instance-id");
        get.token = Some(token.clone());
        assert_eq!(
            answer(&get, &v, &key, now + 59).body,
            b"i-0123456789abcdef0"
        );
        assert_eq!(answer(&get, &v, &key, now + 60).status, 401, "expired");
        get.token = Some("garbage".into());
        assert_eq!(answer(&get, &v, &key, now).status, 401);
        // Another instance's token.
        let other = key.issue("i-other", now + 100);
        get.token = Some(other);
        assert_eq!(answer(&get, &v, &key, now).status, 401);
        // v1 works while tokens are optional, not once required.
        get.token = None;
        assert_eq!(answer(&get, &v, &key, now).status, 200);
        v.meta.tokens_required = true;
        assert_eq!(answer(&get, &v, &key, now).status, 401);
        get.token = Some(token);
        assert_eq!(answer(&get, &v, &key, now).status, 200);
        // Proxied or dated token requests, GET of the token path, other methods.
        let mut fwd = put.clone();
        fwd.forwarded = true;
        assert_eq!(answer(&fwd, &v, &key, now).status, 403);
        let mut dated = put.clone();
        dated.path = "/2021-03-23/api/token".into();
        assert_eq!(answer(&dated, &v, &key, now).status, 403);
        assert_eq!(
            answer(&req(Method::Get, "/latest/api/token"), &v, &key, now).status,
            405
        );
        assert_eq!(
            answer(&req(Method::Other, "/latest/meta-data/"), &v, &key, now).status,
            405
        );
        let mut missing = get.clone();
        missing.path = "/latest/meta-data/nothing".into();
        assert_eq!(answer(&missing, &v, &key, now).status, 404);
        v.meta.endpoint_enabled = false;
        assert_eq!(answer(&get, &v, &key, now).status, 403);
        assert_eq!(answer(&put, &v, &key, now).status, 403);
    }

    #[test]
    fn requests_are_read_whole_and_responses_carry_awss_headers() {
        let raw = b"PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n\
                    X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\nGET / HTTP/1.1\r\n";
        let (r, n) = read_request(raw).unwrap().unwrap();
        assert_eq!(r.method, Method::Put);
        assert_eq!(r.ttl.as_deref(), Some("21600"));
        assert!(r.keep_alive);
        assert_eq!(&raw[n..], b"GET / HTTP/1.1\r\n");
        assert_eq!(read_request(&raw[n..]).unwrap(), None);
        assert_eq!(read_request(b"\x00\x01garbage\r\n\r\n"), Err(BadRequest));
        let r10 = read_request(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().0;
        assert!(!r10.keep_alive);
        let bytes = ok("abc".into()).to_bytes(false, "Sun, 06 Dec 2026 11:00:00 GMT");
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"));
        assert!(text.contains("Content-Length: 3\r\n") && text.ends_with("\r\n\r\nabc"));
        assert!(text.contains("Server: EC2ws\r\n"));
        let e = error(404);
        let body = String::from_utf8(e.body).unwrap();
        assert!(body.contains("<title>404 - Not Found</title>"));
    }

    #[test]
    fn user_data_is_the_bytes_given_or_a_404() {
        let key = TokenKey::from_bytes([7; 32]);
        let mut v = view();
        let get = req(Method::Get, "/latest/user-data");
        let r = answer(&get, &v, &key, 1);
        assert_eq!((r.status, r.content_type), (404, "text/html"));
        v.meta.user_data = b"#!/bin/sh\n\x00\xff".to_vec();
        let r = answer(&get, &v, &key, 1);
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "application/octet-stream");
        assert_eq!(r.body, b"#!/bin/sh\n\x00\xff");
        let bytes = r.to_bytes(false, "Sun, 06 Dec 2026 11:00:00 GMT");
        assert!(bytes.ends_with(b"\r\n\r\n#!/bin/sh\n\x00\xff"));
        let head = String::from_utf8_lossy(&bytes);
        assert!(head.contains("Content-Type: application/octet-stream\r\nAccept-Ranges: none\r\n"));
        assert!(head.contains("Content-Length: 12\r\n"), "{head}");
        // A dated version serves it too; HEAD without the body; tokens still apply.
        let dated = req(Method::Get, "/2009-04-04/user-data");
        assert_eq!(answer(&dated, &v, &key, 1).body, b"#!/bin/sh\n\x00\xff");
        let head = answer(&req(Method::Head, "/latest/user-data"), &v, &key, 1);
        assert!(!head.to_bytes(true, "x").ends_with(b"\xff"));
        v.meta.tokens_required = true;
        assert_eq!(answer(&get, &v, &key, 1).status, 401);
    }
}
