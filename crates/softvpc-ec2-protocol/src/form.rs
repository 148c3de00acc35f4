//! `application/x-www-form-urlencoded` bodies and query strings into decoded `(name, value)`
//! pairs, in order. Untrusted input: never panics, refuses invalid UTF-8 and more than
//! [`MAX_PARAMS`] pairs, keeps a stray `%` as literal text (as browsers do).

use crate::ProtocolError;

/// Most parameters one request may carry.
pub const MAX_PARAMS: usize = 10_000;

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one form component: `+` is a space, `%XX` a byte, any other `%` itself.
pub fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = input.get(i + 1).copied().and_then(hex_val);
                let lo = input.get(i + 2).copied().and_then(hex_val);
                if let (Some(h), Some(l)) = (hi, lo) {
                    out.push((h << 4) | l);
                    i += 3;
                } else {
                    out.push(b'%');
                    i += 1;
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn decode_text(input: &[u8]) -> Result<String, ProtocolError> {
    String::from_utf8(percent_decode(input)).map_err(|_| ProtocolError::MalformedQueryString {
        message: "The request contains a parameter that is not valid UTF-8.".to_string(),
    })
}

/// Decodes form-encoded inputs (e.g. the query string, then the POST body) into pairs, in
/// order. Empty names are skipped; a name without `=` has the empty value.
pub fn parse_forms(inputs: &[&[u8]]) -> Result<Vec<(String, String)>, ProtocolError> {
    let mut out = Vec::new();
    for input in inputs {
        for pair in input.split(|b| *b == b'&') {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let key = decode_text(k)?;
            if key.is_empty() {
                continue;
            }
            if out.len() == MAX_PARAMS {
                return Err(ProtocolError::invalid_value(format!(
                    "The request has more than {MAX_PARAMS} parameters."
                )));
            }
            out.push((key, decode_text(v)?));
        }
    }
    Ok(out)
}

/// Decodes one form-encoded input.
pub fn parse_form(input: &[u8]) -> Result<Vec<(String, String)>, ProtocolError> {
    parse_forms(&[input])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_in_order_with_escapes() {
        let p = parse_form(b"Action=CreateVpc&CidrBlock=10.0.0.0%2F16&A=b+c&Empty&=x&&Pct=50%")
            .unwrap();
        let want: Vec<(String, String)> = [
            ("Action", "CreateVpc"),
            ("CidrBlock", "10.0.0.0/16"),
            ("A", "b c"),
            ("Empty", ""),
            ("Pct", "50%"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(p, want);
    }

    #[test]
    fn bad_utf8_and_too_many() {
        let e = parse_form(b"A=%ff").unwrap_err();
        assert_eq!(e.code(), "MalformedQueryString");
        let many = "a=1&".repeat(MAX_PARAMS + 1);
        assert_eq!(
            parse_form(many.as_bytes()).unwrap_err().code(),
            "InvalidParameterValue"
        );
        assert_eq!(
            parse_form("a=1&".repeat(MAX_PARAMS).as_bytes())
                .unwrap()
                .len(),
            MAX_PARAMS
        );
    }
}
