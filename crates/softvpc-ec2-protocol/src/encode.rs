//! [`Value`] trees into EC2 Query responses, written the way botocore's `EC2QueryParser` reads
//! them: `<OpResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">`, `requestId` first,
//! then the output shape's members in model order under their `locationName`s (`vpcSet`,
//! `tagSet`), lists as a wrapper element of `<item>`s, absent members omitted, empty lists as
//! empty wrappers (botocore reads `<tagSet/>` as `[]`), booleans `true`/`false`, timestamps
//! ISO 8601 with milliseconds; operations without an output shape answer `<return>true</return>`
//! as EC2 does. And the EC2 error document.

use quick_xml::events::{BytesDecl, BytesStart, Event};
use quick_xml::Writer;

use crate::error::ShapeError;
use crate::model::{model, Model, ShapeId, ShapeKind};
use crate::value::{Timestamp, Value};

/// Why a tree does not fit an operation's output shape ([`try_encode`]).
pub type EncodeError = ShapeError;

/// Escapes element text so an XML 1.0 parser gives back exactly `text`: `&`, `<`, `>`, and
/// `\r` (parsers turn a raw CR into LF); characters XML 1.0 cannot carry at all (most C0
/// controls, U+FFFE, U+FFFF) become U+FFFD.
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

/// [`escape_text`] appended to `out`.
fn escape_into(out: &mut String, text: &str) {
    // Most text needs no escaping at all: copy it whole.
    if !text
        .bytes()
        .any(|b| b < 0x20 || matches!(b, b'&' | b'<' | b'>' | 0xef))
    {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// Where in the tree an element is, for error messages only: built on the stack as the
/// encoder descends and rendered as text (`Op.Member[2].Member`) only when there is an error,
/// so a large answer costs no string per element.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root(&'a str),
    Member(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root(op) => f.write_str(op),
            Path::Member(parent, name) => write!(f, "{parent}.{name}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

fn format_double(d: f64) -> String {
    if d.is_nan() {
        "NaN".to_string()
    } else if d.is_infinite() {
        if d > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        d.to_string()
    }
}

/// Writes into a `String`, which cannot fail. Element markup is written directly (names are
/// the model's ASCII identifiers), text through [`escape_into`]; the same bytes quick-xml would
/// write, without an allocation per element.
struct Out {
    w: String,
    strict: bool,
}

impl Out {
    fn new() -> Out {
        let mut w = Writer::new(Vec::with_capacity(128));
        let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        // Only ASCII markup was written.
        let mut w = String::from_utf8(w.into_inner()).unwrap_or_default();
        w.reserve(1024);
        // AWS puts a newline after the declaration.
        w.push('\n');
        Out { w, strict: true }
    }

    /// A start tag with attributes (escaped by quick-xml).
    fn open_with(&mut self, start: BytesStart<'_>) {
        let mut w = Writer::new(Vec::new());
        let _ = w.write_event(Event::Start(start));
        self.w
            .push_str(std::str::from_utf8(&w.into_inner()).unwrap_or_default());
    }

    fn open(&mut self, name: &str) {
        self.w.push('<');
        self.w.push_str(name);
        self.w.push('>');
    }

    fn close(&mut self, name: &str) {
        self.w.push_str("</");
        self.w.push_str(name);
        self.w.push('>');
    }

    fn text_elem(&mut self, name: &str, text: &str) {
        self.open(name);
        escape_into(&mut self.w, text);
        self.close(name);
    }

    fn finish(self) -> String {
        self.w
    }

    /// A mismatch: an error when strict, else logged and the member skipped.
    fn mismatch(&self, err: EncodeError) -> Result<(), EncodeError> {
        if self.strict {
            Err(err)
        } else {
            tracing::warn!(error = %err, "EC2 response member does not fit the model; skipped");
            Ok(())
        }
    }

    fn members(
        &mut self,
        m: &Model,
        shape: ShapeId,
        value: &Value,
        path: &Path<'_>,
    ) -> Result<(), EncodeError> {
        let s = m.shape(shape);
        let (ShapeKind::Structure(st), Value::Struct(map)) = (&s.kind, value) else {
            return self.mismatch(EncodeError::TypeMismatch {
                path: path.to_string(),
                shape: s.name.clone(),
                found: value.kind_name(),
            });
        };
        for name in map.keys() {
            if !st.by_name.contains_key(name) {
                self.mismatch(EncodeError::UnknownMember {
                    path: path.to_string(),
                    member: name.clone(),
                    shape: s.name.clone(),
                })?;
            }
        }
        for member in &st.members {
            if let Some(v) = map.get(&member.name) {
                let child = Path::Member(path, &member.name);
                self.element(m, member.shape, member.element_name(), v, &child)?;
            }
        }
        Ok(())
    }

    fn element(
        &mut self,
        m: &Model,
        shape: ShapeId,
        name: &str,
        value: &Value,
        path: &Path<'_>,
    ) -> Result<(), EncodeError> {
        let s = m.shape(shape);
        let mismatch = || EncodeError::TypeMismatch {
            path: path.to_string(),
            shape: s.name.clone(),
            found: value.kind_name(),
        };
        let text = match (&s.kind, value) {
            (ShapeKind::Structure(_), Value::Struct(_)) => {
                self.open(name);
                self.members(m, shape, value, path)?;
                self.close(name);
                return Ok(());
            }
            (ShapeKind::List(l), Value::List(items)) => {
                let item_name = l.member_location_name.as_deref().unwrap_or("item");
                self.open(name);
                for (i, item) in items.iter().enumerate() {
                    self.element(m, l.member, item_name, item, &Path::Index(path, i))?;
                }
                self.close(name);
                return Ok(());
            }
            (ShapeKind::String { .. } | ShapeKind::Blob, Value::String(t)) => {
                self.text_elem(name, t);
                return Ok(());
            }
            (ShapeKind::Integer | ShapeKind::Long, Value::Integer(i)) => i.to_string(),
            (ShapeKind::Double | ShapeKind::Float, Value::Double(d)) => format_double(*d),
            (ShapeKind::Double | ShapeKind::Float, Value::Integer(i)) => i.to_string(),
            (ShapeKind::Boolean, Value::Boolean(b)) => b.to_string(),
            (ShapeKind::Timestamp, Value::Timestamp(t)) => t.to_iso8601(),
            // JSON-built trees carry timestamps as text: accepted when it parses.
            (ShapeKind::Timestamp, Value::String(t)) => match Timestamp::parse_iso8601(t) {
                Some(ts) => ts.to_iso8601(),
                None => return self.mismatch(mismatch()),
            },
            // Scalars of another type: an error when strict, else written as their text.
            (
                ShapeKind::String { .. } | ShapeKind::Blob,
                Value::Integer(_) | Value::Double(_) | Value::Boolean(_) | Value::Timestamp(_),
            ) if !self.strict => scalar_text(value),
            _ => return self.mismatch(mismatch()),
        };
        self.text_elem(name, &text);
        Ok(())
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Integer(i) => i.to_string(),
        Value::Double(d) => format_double(*d),
        Value::Boolean(b) => b.to_string(),
        Value::Timestamp(t) => t.to_iso8601(),
        Value::Struct(_) | Value::List(_) => String::new(),
    }
}

fn encode_inner(
    m: &Model,
    operation: &str,
    output: &Value,
    request_id: &str,
    strict: bool,
) -> Result<String, EncodeError> {
    let op = m.operation(operation);
    if op.is_none() && strict {
        return Err(EncodeError::UnknownOperation(operation.to_string()));
    }
    let mut out = Out::new();
    out.strict = strict;
    let root = format!("{operation}Response");
    let start =
        BytesStart::new(root.as_str()).with_attributes([("xmlns", m.xml_namespace.as_str())]);
    out.open_with(start);
    out.text_elem("requestId", request_id);
    match op.and_then(|o| o.output) {
        Some(shape) => out.members(m, shape, output, &Path::Root(operation))?,
        None => {
            let empty = output.as_struct().is_none_or(|s| s.is_empty());
            if !empty {
                out.mismatch(EncodeError::UnknownMember {
                    path: operation.to_string(),
                    member: "(any)".to_string(),
                    shape: "(no output)".to_string(),
                })?;
            }
            // EC2 answers the actions the model gives no output (DeleteVpc, AttachInternetGateway)
            // with `<return>true</return>`; SDKs ignore it, older tools look for it.
            if op.is_some() {
                out.text_elem("return", "true");
            }
        }
    }
    out.close(&root);
    Ok(out.finish())
}

/// The success response of `operation` for `output` (a structure of the output shape keyed by
/// member names). Lenient: a member the shape does not have, or a value of the wrong type, is
/// logged and left out (numbers and booleans given for string members are written as text), so
/// a server bug never becomes an unparseable answer. See [`try_encode`] for the strict form.
pub fn encode(operation: &str, output: &Value, request_id: &str) -> String {
    encode_inner(model(), operation, output, request_id, false).unwrap_or_default()
}

/// [`encode`], refusing any tree that does not fit the output shape exactly.
pub fn try_encode(
    operation: &str,
    output: &Value,
    request_id: &str,
) -> Result<String, EncodeError> {
    encode_inner(model(), operation, output, request_id, true)
}

/// Where a streamed answer's bytes go ([`encode_streamed`]): called with each chunk in order;
/// `false` means nobody reads any more (the client left), and encoding stops.
pub type Sink<'a> = dyn FnMut(String) -> bool + 'a;

/// The same document as [`encode`]`(operation, head.with(list_member, items), request_id)`, byte
/// for byte, written in chunks of about `chunk_bytes` to `sink` while the items are produced one
/// at a time: a listing of 100,000 items never exists whole, as a tree or as text. `head` holds
/// every other output member (a `list_member` in it is ignored). `strict` as in [`try_encode`]:
/// a mismatch ends the stream with the error (the chunks already sent stay sent), lenient
/// leaves the member out.
#[allow(clippy::too_many_arguments)]
pub fn encode_streamed(
    operation: &str,
    head: &Value,
    list_member: &str,
    items: &mut dyn Iterator<Item = Value>,
    request_id: &str,
    strict: bool,
    chunk_bytes: usize,
    sink: &mut Sink<'_>,
) -> Result<(), EncodeError> {
    let m = model();
    let unknown = |member: &str, shape: &str| EncodeError::UnknownMember {
        path: operation.to_string(),
        member: member.to_string(),
        shape: shape.to_string(),
    };
    let op = m
        .operation(operation)
        .ok_or_else(|| EncodeError::UnknownOperation(operation.to_string()))?;
    let shape = op
        .output
        .ok_or_else(|| unknown(list_member, "(no output)"))?;
    let s = m.shape(shape);
    let (ShapeKind::Structure(st), Value::Struct(map)) = (&s.kind, head) else {
        return Err(EncodeError::TypeMismatch {
            path: operation.to_string(),
            shape: s.name.clone(),
            found: head.kind_name(),
        });
    };
    let list = st
        .by_name
        .get(list_member)
        .map(|&i| &st.members[i])
        .filter(|member| matches!(m.shape(member.shape).kind, ShapeKind::List(_)))
        .ok_or_else(|| unknown(list_member, &s.name))?;
    let ShapeKind::List(l) = &m.shape(list.shape).kind else {
        return Err(unknown(list_member, &s.name));
    };
    let mut out = Out::new();
    out.strict = strict;
    let root = format!("{operation}Response");
    let start =
        BytesStart::new(root.as_str()).with_attributes([("xmlns", m.xml_namespace.as_str())]);
    out.open_with(start);
    out.text_elem("requestId", request_id);
    for name in map.keys() {
        if !st.by_name.contains_key(name) {
            out.mismatch(unknown(name, &s.name))?;
        }
    }
    let path = Path::Root(operation);
    for member in &st.members {
        if member.name == list_member {
            let item_name = l.member_location_name.as_deref().unwrap_or("item");
            let list_path = Path::Member(&path, &member.name);
            out.open(member.element_name());
            for (i, item) in items.enumerate() {
                out.element(m, l.member, item_name, &item, &Path::Index(&list_path, i))?;
                if out.w.len() >= chunk_bytes {
                    let chunk = std::mem::replace(&mut out.w, String::with_capacity(chunk_bytes));
                    if !sink(chunk) {
                        return Ok(());
                    }
                }
            }
            out.close(member.element_name());
        } else if let Some(v) = map.get(&member.name) {
            let child = Path::Member(&path, &member.name);
            out.element(m, member.shape, member.element_name(), v, &child)?;
        }
    }
    out.close(&root);
    sink(out.finish());
    Ok(())
}

/// The EC2 error document:
/// `<Response><Errors><Error><Code>..</Code><Message>..</Message></Error></Errors><RequestID>..</RequestID></Response>`
/// (`RequestID` spelled as EC2 does; botocore's `EC2QueryParser` reads it).
pub fn encode_error(code: &str, message: &str, request_id: &str) -> String {
    let mut out = Out::new();
    out.open("Response");
    out.open("Errors");
    out.open("Error");
    out.text_elem("Code", code);
    out.text_elem("Message", message);
    out.close("Error");
    out.close("Errors");
    out.text_elem("RequestID", request_id);
    out.close("Response");
    out.finish()
}
