//! Flat EC2 Query parameters into a typed [`Value`] tree, the inverse of botocore's
//! `EC2Serializer`: a member's wire name is its `queryName`, else its `locationName`
//! capitalised, else its name; structures nest as `Parent.Child`; lists flatten as `Name.N`
//! counting from 1 with nothing for the list member's own name; booleans are `true`/`false`;
//! timestamps ISO 8601.
//!
//! Every parameter is walked down the input shape segment by segment; a segment the shape does
//! not have is `UnknownParameter` (the whole parameter name in the message), a value the leaf
//! shape refuses is `InvalidParameterValue`, and once all are placed each structure present is
//! checked for its model-required members (`MissingParameter`, with the wire path).

use std::collections::BTreeMap;

use crate::model::{model, Model, ShapeId, ShapeKind};
use crate::value::{Timestamp, Value};
use crate::ProtocolError;

/// Largest list index accepted (`Name.10000`); higher ones are refused rather than stored.
pub const MAX_LIST_INDEX: u32 = 10_000;

/// Enum values quoted in an error message at most.
const ENUM_VALUES_IN_MESSAGE: usize = 20;

/// Whether `name` is a protocol-level parameter (the action, API version, signature and
/// presigning fields) rather than operation input.
pub fn is_protocol_param(name: &str) -> bool {
    matches!(
        name,
        "Action"
            | "Version"
            | "AWSAccessKeyId"
            | "Signature"
            | "SignatureMethod"
            | "SignatureVersion"
            | "Timestamp"
            | "Expires"
            | "SecurityToken"
    ) || name
        .get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case("x-amz-"))
}

/// A tree being built from parameters; member and list keys are indices so repeated or
/// out-of-order parameters land in the same place.
enum Node {
    Struct(BTreeMap<usize, Node>),
    List(BTreeMap<u32, Node>),
    Scalar(Option<Value>),
}

impl Node {
    fn for_shape(m: &Model, shape: ShapeId) -> Node {
        match m.shape(shape).kind {
            ShapeKind::Structure(_) => Node::Struct(BTreeMap::new()),
            ShapeKind::List(_) => Node::List(BTreeMap::new()),
            _ => Node::Scalar(None),
        }
    }
}

/// Decodes the parameters of one `operation` request (the `Action` value). Protocol-level
/// parameters (see [`is_protocol_param`]) are skipped; a repeated parameter keeps its last
/// value.
pub fn decode(operation: &str, params: &[(String, String)]) -> Result<Value, ProtocolError> {
    decode_with(model(), operation, params)
}

/// [`decode`] where the operation comes from the `Action` parameter; returns it with the tree.
pub fn decode_request(params: &[(String, String)]) -> Result<(String, Value), ProtocolError> {
    let action = params
        .iter()
        .rev()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| ProtocolError::MissingParameter {
            name: "Action".to_string(),
        })?;
    let tree = decode(&action, params)?;
    Ok((action, tree))
}

/// A whole request: the form-encoded inputs (the query string, then the POST body) parsed and
/// decoded as [`decode_request`] does.
pub fn decode_form(inputs: &[&[u8]]) -> Result<(String, Value), ProtocolError> {
    decode_request(&crate::form::parse_forms(inputs)?)
}

/// [`decode`] against a given model.
pub fn decode_with(
    m: &Model,
    operation: &str,
    params: &[(String, String)],
) -> Result<Value, ProtocolError> {
    let op = m
        .operation(operation)
        .ok_or_else(|| ProtocolError::InvalidAction {
            action: operation.to_string(),
        })?;
    let Some(input) = op.input else {
        if let Some((k, _)) = params.iter().find(|(k, _)| !is_protocol_param(k)) {
            return Err(ProtocolError::UnknownParameter { name: k.clone() });
        }
        return Ok(Value::new_struct());
    };
    let mut root = Node::for_shape(m, input);
    for (key, value) in params {
        place(m, input, &mut root, key, value)?;
    }
    finish(m, input, root, "")
}

fn unknown(key: &str) -> ProtocolError {
    ProtocolError::UnknownParameter {
        name: key.to_string(),
    }
}

/// Puts one parameter into the tree.
fn place(
    m: &Model,
    input: ShapeId,
    root: &mut Node,
    key: &str,
    value: &str,
) -> Result<(), ProtocolError> {
    let segments: Vec<&str> = key.split('.').collect();
    if let ShapeKind::Structure(s) = &m.shape(input).kind {
        // Protocol parameters only when the input has no member of that wire name.
        if !s.by_wire_name.contains_key(segments[0]) && is_protocol_param(key) {
            return Ok(());
        }
    }
    let mut node = root;
    let mut shape = input;
    let mut i = 0;
    loop {
        match &m.shape(shape).kind {
            ShapeKind::Structure(s) => {
                let seg = segments.get(i).ok_or_else(|| unknown(key))?;
                let idx = *s.by_wire_name.get(*seg).ok_or_else(|| unknown(key))?;
                let member_shape = s.members[idx].shape;
                let Node::Struct(map) = node else {
                    return Err(unknown(key));
                };
                node = map
                    .entry(idx)
                    .or_insert_with(|| Node::for_shape(m, member_shape));
                shape = member_shape;
            }
            ShapeKind::List(l) => {
                let seg = segments.get(i).ok_or_else(|| unknown(key))?;
                let n = list_index(key, seg)?;
                let Node::List(map) = node else {
                    return Err(unknown(key));
                };
                node = map.entry(n).or_insert_with(|| Node::for_shape(m, l.member));
                shape = l.member;
            }
            _ => {
                if i != segments.len() {
                    return Err(unknown(key));
                }
                *node = Node::Scalar(Some(scalar(m, shape, key, value)?));
                return Ok(());
            }
        }
        i += 1;
    }
}

/// A list index segment: digits without a leading zero, 1..=MAX_LIST_INDEX.
fn list_index(key: &str, seg: &str) -> Result<u32, ProtocolError> {
    if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unknown(key));
    }
    let n = if seg.len() > 9 || seg.starts_with('0') {
        None
    } else {
        seg.parse::<u32>().ok()
    };
    match n {
        Some(n) if (1..=MAX_LIST_INDEX).contains(&n) => Ok(n),
        _ => Err(ProtocolError::invalid_value(format!(
            "The list index {seg} in parameter {key} is invalid. Expected an index from 1 to {MAX_LIST_INDEX}."
        ))),
    }
}

fn bad_value(key: &str, value: &str, expected: &str) -> ProtocolError {
    ProtocolError::invalid_value(format!(
        "Value ({value}) for parameter {key} is invalid. {expected}"
    ))
}

fn check_range(
    key: &str,
    value: &str,
    n: f64,
    min: Option<i64>,
    max: Option<i64>,
) -> Result<(), ProtocolError> {
    if let Some(lo) = min {
        if n < lo as f64 {
            return Err(bad_value(
                key,
                value,
                &format!("Expected a value of at least {lo}."),
            ));
        }
    }
    if let Some(hi) = max {
        if n > hi as f64 {
            return Err(bad_value(
                key,
                value,
                &format!("Expected a value of at most {hi}."),
            ));
        }
    }
    Ok(())
}

/// One scalar value checked against its shape.
fn scalar(m: &Model, shape: ShapeId, key: &str, value: &str) -> Result<Value, ProtocolError> {
    let s = m.shape(shape);
    match &s.kind {
        ShapeKind::String { enum_values } => {
            if !enum_values.is_empty() && !enum_values.iter().any(|e| e == value) {
                let mut shown: Vec<&str> = enum_values
                    .iter()
                    .take(ENUM_VALUES_IN_MESSAGE)
                    .map(String::as_str)
                    .collect();
                if enum_values.len() > ENUM_VALUES_IN_MESSAGE {
                    shown.push("...");
                }
                return Err(bad_value(
                    key,
                    value,
                    &format!("Valid values: {}.", shown.join(", ")),
                ));
            }
            let len = value.chars().count() as f64;
            if s.min.is_some_and(|lo| len < lo as f64) || s.max.is_some_and(|hi| len > hi as f64) {
                return Err(bad_value(
                    key,
                    value,
                    &format!(
                        "Expected a length from {} to {}.",
                        s.min.unwrap_or(0),
                        s.max.map_or("unbounded".to_string(), |h| h.to_string())
                    ),
                ));
            }
            Ok(Value::String(value.to_string()))
        }
        ShapeKind::Blob => Ok(Value::String(value.to_string())),
        ShapeKind::Integer | ShapeKind::Long => {
            let n: i64 = if matches!(s.kind, ShapeKind::Integer) {
                value.parse::<i32>().map(i64::from).ok()
            } else {
                value.parse::<i64>().ok()
            }
            .ok_or_else(|| bad_value(key, value, "Expected an integer."))?;
            check_range(key, value, n as f64, s.min, s.max)?;
            Ok(Value::Integer(n))
        }
        ShapeKind::Double | ShapeKind::Float => {
            let d: f64 = value
                .parse()
                .map_err(|_| bad_value(key, value, "Expected a number."))?;
            check_range(key, value, d, s.min, s.max)?;
            Ok(Value::Double(d))
        }
        ShapeKind::Boolean => {
            if value.eq_ignore_ascii_case("true") {
                Ok(Value::Boolean(true))
            } else if value.eq_ignore_ascii_case("false") {
                Ok(Value::Boolean(false))
            } else {
                Err(bad_value(key, value, "Expected: 'true' or 'false'."))
            }
        }
        ShapeKind::Timestamp => Timestamp::parse_iso8601(value)
            .or_else(|| value.parse::<i64>().ok().map(Timestamp::from_unix))
            .map(Value::Timestamp)
            .ok_or_else(|| bad_value(key, value, "Expected an ISO 8601 timestamp.")),
        // Structures and lists are never leaves: `place` only calls this for scalars.
        ShapeKind::Structure(_) | ShapeKind::List(_) => Err(unknown(key)),
    }
}

fn join(prefix: &str, seg: &str) -> String {
    if prefix.is_empty() {
        seg.to_string()
    } else {
        format!("{prefix}.{seg}")
    }
}

/// The built tree into a [`Value`], checking required members and list lengths.
fn finish(m: &Model, shape: ShapeId, node: Node, prefix: &str) -> Result<Value, ProtocolError> {
    let s = m.shape(shape);
    match (node, &s.kind) {
        (Node::Struct(mut map), ShapeKind::Structure(st)) => {
            let mut out = BTreeMap::new();
            for (idx, member) in st.members.iter().enumerate() {
                let path = join(prefix, &member.wire_name());
                match map.remove(&idx) {
                    Some(child) => {
                        out.insert(member.name.clone(), finish(m, member.shape, child, &path)?);
                    }
                    None if member.required => {
                        return Err(ProtocolError::MissingParameter { name: path })
                    }
                    None => {}
                }
            }
            Ok(Value::Struct(out))
        }
        (Node::List(items), ShapeKind::List(l)) => {
            let len = items.len() as i64;
            if s.min.is_some_and(|lo| len < lo) || s.max.is_some_and(|hi| len > hi) {
                return Err(ProtocolError::invalid_value(format!(
                    "The parameter {prefix} has {len} values. Expected from {} to {}.",
                    s.min.unwrap_or(0),
                    s.max.map_or("any number".to_string(), |h| h.to_string())
                )));
            }
            let mut out = Vec::with_capacity(items.len());
            for (n, child) in items {
                out.push(finish(m, l.member, child, &join(prefix, &n.to_string()))?);
            }
            Ok(Value::List(out))
        }
        (Node::Scalar(Some(v)), _) => Ok(v),
        // A placeholder never filled, or a node of the wrong kind: not reachable through
        // `place`, refused rather than trusted.
        _ => Err(unknown(prefix)),
    }
}
