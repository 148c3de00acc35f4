//! [`Value`] trees into EC2 Query request parameters, as botocore's `EC2Serializer` writes them
//! (the inverse of [`crate::decode()`]): `Action` and `Version` first, then the input shape's
//! members in model order under their wire names ([`crate::model::Member::wire_name`]),
//! structures nested as `Parent.Child`, lists flattened as `Name.N` counting from 1 (an empty
//! list writes nothing), booleans `true`/`false`, timestamps ISO 8601.
//!
//! A tree that does not fit the input shape (a member the shape does not have, a list where a
//! structure belongs, text for a number) is refused: a client finds its mistake before the
//! server does. Clients send the result with [`form_encode`].

use crate::error::ShapeError;
use crate::model::{model, Model, ShapeId, ShapeKind};
use crate::value::{Timestamp, Value};
use crate::API_VERSION;

/// Why a tree does not fit an operation's input shape.
pub type SerializeError = ShapeError;

/// The parameters of an `operation` request with `input` (a structure of the input shape keyed
/// by member names), `Action` and `Version` first.
pub fn serialize_request(
    operation: &str,
    input: &Value,
) -> Result<Vec<(String, String)>, SerializeError> {
    serialize_request_with(model(), operation, input)
}

/// [`serialize_request`] against a given model.
pub fn serialize_request_with(
    m: &Model,
    operation: &str,
    input: &Value,
) -> Result<Vec<(String, String)>, SerializeError> {
    let op = m
        .operation(operation)
        .ok_or_else(|| SerializeError::UnknownOperation(operation.to_string()))?;
    let mut out = vec![
        ("Action".to_string(), operation.to_string()),
        ("Version".to_string(), API_VERSION.to_string()),
    ];
    match op.input {
        Some(shape) => flatten(m, shape, input, "", operation, &mut out)?,
        None => {
            if input.as_struct().is_none_or(|s| !s.is_empty()) {
                return Err(SerializeError::UnknownMember {
                    path: operation.to_string(),
                    member: "(any)".to_string(),
                    shape: "(no input)".to_string(),
                });
            }
        }
    }
    Ok(out)
}

fn flatten(
    m: &Model,
    shape: ShapeId,
    value: &Value,
    prefix: &str,
    path: &str,
    out: &mut Vec<(String, String)>,
) -> Result<(), SerializeError> {
    let s = m.shape(shape);
    let join = |seg: &str| {
        if prefix.is_empty() {
            seg.to_string()
        } else {
            format!("{prefix}.{seg}")
        }
    };
    let mismatch = || SerializeError::TypeMismatch {
        path: path.to_string(),
        shape: s.name.clone(),
        found: value.kind_name(),
    };
    let text = match (&s.kind, value) {
        (ShapeKind::Structure(st), Value::Struct(map)) => {
            if let Some(name) = map.keys().find(|k| !st.by_name.contains_key(*k)) {
                return Err(SerializeError::UnknownMember {
                    path: path.to_string(),
                    member: name.clone(),
                    shape: s.name.clone(),
                });
            }
            for member in &st.members {
                if let Some(v) = map.get(&member.name) {
                    let child = format!("{path}.{}", member.name);
                    flatten(m, member.shape, v, &join(&member.wire_name()), &child, out)?;
                }
            }
            return Ok(());
        }
        (ShapeKind::List(l), Value::List(items)) => {
            for (i, item) in items.iter().enumerate() {
                let child = format!("{path}[{}]", i + 1);
                flatten(m, l.member, item, &join(&(i + 1).to_string()), &child, out)?;
            }
            return Ok(());
        }
        (ShapeKind::String { .. } | ShapeKind::Blob, Value::String(t)) => t.clone(),
        (ShapeKind::Integer | ShapeKind::Long, Value::Integer(i)) => i.to_string(),
        (ShapeKind::Double | ShapeKind::Float, Value::Double(d)) => d.to_string(),
        (ShapeKind::Double | ShapeKind::Float, Value::Integer(i)) => i.to_string(),
        (ShapeKind::Boolean, Value::Boolean(b)) => b.to_string(),
        (ShapeKind::Timestamp, Value::Timestamp(t)) => t.to_iso8601(),
        (ShapeKind::Timestamp, Value::String(t)) => Timestamp::parse_iso8601(t)
            .ok_or_else(mismatch)?
            .to_iso8601(),
        _ => return Err(mismatch()),
    };
    out.push((prefix.to_string(), text));
    Ok(())
}

/// Form-encodes pairs as `application/x-www-form-urlencoded`: every byte but RFC 3986's
/// unreserved characters percent-encoded (so the body is also its own SigV4 canonical form).
pub fn form_encode(pairs: &[(String, String)]) -> String {
    fn enc(s: &str, out: &mut String) {
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(b as char);
            } else {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
    let mut out = String::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        enc(k, &mut out);
        out.push('=');
        enc(v, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_members_lists_and_scalars() {
        let input = Value::new_struct()
            .with("CidrBlock", "10.0.0.0/16")
            .with("DryRun", true)
            .with(
                "TagSpecifications",
                vec![Value::new_struct().with("ResourceType", "vpc").with(
                    "Tags",
                    vec![Value::new_struct()
                        .with("Key", "Name")
                        .with("Value", "a b&c")],
                )],
            );
        let pairs = serialize_request("CreateVpc", &input).unwrap();
        assert_eq!(
            form_encode(&pairs),
            "Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0%2F16\
             &TagSpecification.1.ResourceType=vpc&TagSpecification.1.Tag.1.Key=Name\
             &TagSpecification.1.Tag.1.Value=a%20b%26c&DryRun=true"
        );
        // And the decoder reads it back as the same tree.
        let (action, back) = crate::decode_request(&pairs).unwrap();
        assert_eq!((action.as_str(), back), ("CreateVpc", input));
    }

    #[test]
    fn trees_that_do_not_fit_are_refused() {
        let e = serialize_request("CreateVpc", &Value::new_struct().with("Bogus", "1"));
        assert!(
            matches!(e, Err(SerializeError::UnknownMember { .. })),
            "{e:?}"
        );
        let e = serialize_request(
            "DescribeVpcs",
            &Value::new_struct().with("MaxResults", "1000"),
        );
        assert!(
            matches!(e, Err(SerializeError::TypeMismatch { .. })),
            "{e:?}"
        );
        assert!(serialize_request("Nope", &Value::new_struct()).is_err());
    }
}
