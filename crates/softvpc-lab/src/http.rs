//! A minimal blocking HTTP/1.1 client for the lab's calls to its own server on loopback.
//!
//! The lab only ever talks to `127.0.0.1:<api-port>`: one request per connection
//! (`Connection: close`), a bounded response size and a deadline for the whole exchange. That is
//! all it needs, so it does not pull an HTTP client crate (and its TLS stack) into the build.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Largest response body accepted.
const MAX_RESPONSE: usize = 32 << 20;

/// A response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends one request (with `extra` headers, e.g. a signature) and reads the whole response,
/// within `timeout`. The `Host` header is `addr`, as signed.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    extra: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> anyhow::Result<Response> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true).ok();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: softvpc-lab\r\n");
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" || !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;

    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no complete answer from {addr} within {timeout:?}");
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!("no complete answer from {addr} within {timeout:?}")
            }
            Err(e) => return Err(e).with_context(|| format!("reading from {addr}")),
        };
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > MAX_RESPONSE + 64 * 1024 {
            bail!("answer from {addr} is larger than {MAX_RESPONSE} bytes");
        }
        // Stop as soon as a length-delimited response is complete (the server may keep the
        // connection open despite `Connection: close`).
        if let Ok(Some(resp)) = parse_response(&raw, false) {
            return Ok(resp);
        }
    }
    match parse_response(&raw, true)? {
        Some(resp) => Ok(resp),
        None => bail!("truncated HTTP answer from {addr}"),
    }
}

/// Parses a response. `Ok(None)`: incomplete. `eof`: the connection is closed, so a body without
/// a length ends here.
pub fn parse_response(raw: &[u8], eof: bool) -> anyhow::Result<Option<Response>> {
    let Some(head_end) = find(raw, b"\r\n\r\n") else {
        return if eof {
            bail!("malformed HTTP answer (no end of headers)")
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&raw[..head_end]).context("HTTP headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        bail!("malformed HTTP status line {status_line:?}");
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("malformed HTTP status line {status_line:?}"))?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse::<usize>().context("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            chunked = true;
        }
    }
    let rest = &raw[head_end + 4..];
    let body = if chunked {
        match dechunk(rest)? {
            Some(body) => body,
            None if eof => bail!("truncated chunked HTTP body"),
            None => return Ok(None),
        }
    } else if let Some(len) = content_length {
        if len > MAX_RESPONSE {
            bail!("HTTP body of {len} bytes is too large");
        }
        if rest.len() < len {
            return if eof {
                bail!("truncated HTTP body")
            } else {
                Ok(None)
            };
        }
        rest[..len].to_vec()
    } else if eof || status == 204 || status == 304 {
        rest.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(Response { status, body }))
}

/// Decodes a chunked body; `Ok(None)` while incomplete.
fn dechunk(mut data: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = find(data, b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&data[..line_end]).context("bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        if size > MAX_RESPONSE || out.len() + size > MAX_RESPONSE {
            bail!("chunked HTTP body is too large");
        }
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Percent-encodes a form value (`application/x-www-form-urlencoded`, RFC 3986 unreserved kept).
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_responses_parse_when_complete() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/xml\r\n\r\nhello";
        assert_eq!(
            parse_response(raw, false).unwrap(),
            Some(Response {
                status: 200,
                body: b"hello".to_vec()
            })
        );
        assert_eq!(parse_response(&raw[..raw.len() - 1], false).unwrap(), None);
        assert!(parse_response(&raw[..raw.len() - 1], true).is_err());
    }

    #[test]
    fn chunked_responses_are_decoded() {
        let raw = b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(raw, false).unwrap(),
            Some(Response {
                status: 400,
                body: b"abcde".to_vec()
            })
        );
        assert_eq!(parse_response(&raw[..40], false).unwrap(), None);
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(parse_response(bad, false).is_err());
    }

    #[test]
    fn unframed_bodies_end_at_eof() {
        let raw = b"HTTP/1.0 200 OK\r\n\r\nbody";
        assert_eq!(parse_response(raw, false).unwrap(), None);
        assert_eq!(parse_response(raw, true).unwrap().unwrap().body, b"body");
        assert!(parse_response(b"SSH-2.0-x\r\n\r\n", true).is_err());
    }

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(form_encode("10.0.0.0/16"), "10.0.0.0%2F16");
        assert_eq!(form_encode("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(form_encode("zigi-vm1_x.y~"), "zigi-vm1_x.y~");
    }

    #[test]
    fn a_real_exchange_over_loopback() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while find(&got, b"a=1").is_none() {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let resp = request(
            addr,
            "POST",
            "/",
            Some("application/x-www-form-urlencoded"),
            &[("X-Amz-Date".to_string(), "20261122T000000Z".to_string())],
            b"a=1",
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(
            resp,
            Response {
                status: 200,
                body: b"ok".to_vec()
            }
        );
        let req = server.join().unwrap();
        assert!(req.starts_with("POST / HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Content-Length: 3\r\n"), "{req}");
    }
}
