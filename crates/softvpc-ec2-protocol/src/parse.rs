//! EC2 Query responses back into [`Value`] trees, the way botocore's `EC2QueryParser` reads
//! them (the inverse of [`crate::encode()`]): under `<OpResponse>`, each element is matched to
//! a member of the output shape by its `locationName` (else the member name), lists are a wrapper
//! of `<item>`s (an empty wrapper is an empty list), scalars are typed by their shape. Elements
//! the shape does not have are skipped, as botocore skips them; `requestId` is returned beside
//! the tree. Also the EC2 error document.
//!
//! Clients read answers with it (`softvpc-ec2-client`); it never panics on any input, refuses
//! nesting deeper than [`MAX_DEPTH`], and reads the document in one pass without building a
//! generic element tree first.

use quick_xml::events::{BytesCData, BytesStart, BytesText, Event};
use quick_xml::Reader;

use crate::model::{model, Model, ShapeId, ShapeKind};
use crate::value::{Timestamp, Value};

/// Deepest element nesting accepted (EC2 answers are a dozen levels deep at most).
pub const MAX_DEPTH: usize = 64;

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The operation is not in the model.
    #[error("unknown operation {0}")]
    UnknownOperation(String),
    /// Not well-formed XML (or it ends early).
    #[error("malformed XML: {0}")]
    Xml(String),
    /// The document element is not the one the operation answers with.
    #[error("the document element is <{found}>, expected <{expected}>")]
    WrongRoot {
        /// The element found.
        found: String,
        /// The element expected (`CreateVpcResponse`, or `Response` for errors).
        expected: String,
    },
    /// A scalar's text is not a value of its shape.
    #[error("{path}: {text:?} is not {expected}")]
    BadValue {
        /// Where, as element names from the document element down.
        path: String,
        /// The text found.
        text: String,
        /// What the shape wants (`an integer`, `a boolean`, ...).
        expected: &'static str,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("XML nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// A success answer: its request id and the output tree (keyed by the model's member names, as
/// [`crate::encode()`] takes it).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The `requestId` element, when present.
    pub request_id: Option<String>,
    /// The output structure; empty for operations without an output shape.
    pub output: Value,
}

/// An error answer (`Response/Errors/Error/{Code,Message}`, `RequestID`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorResponse {
    /// The AWS error code (`InvalidVpcID.NotFound`).
    pub code: String,
    /// The message.
    pub message: String,
    /// The `RequestID` element, when present.
    pub request_id: Option<String>,
}

fn xml_error(e: impl std::fmt::Display) -> ParseError {
    ParseError::Xml(e.to_string())
}

/// A `BadValue` found inside element `name`: its path gains that element in front. Paths are
/// only built on this error path, so reading a large answer costs no string per element.
fn under(e: ParseError, name: &str) -> ParseError {
    match e {
        ParseError::BadValue {
            path,
            text,
            expected,
        } => ParseError::BadValue {
            path: if path.is_empty() {
                name.to_string()
            } else {
                format!("{name}/{path}")
            },
            text,
            expected,
        },
        other => other,
    }
}

/// One pass over a document; `depth` counts the open elements.
struct Parser<'a> {
    reader: Reader<&'a [u8]>,
    depth: usize,
}

/// What [`Parser::next`] hands out: the events the walk cares about, borrowing the document.
enum Step<'a> {
    /// A child element starts; `true` when it is self-closing (`<tagSet/>`).
    Open(BytesStart<'a>, bool),
    /// Text, still escaped.
    Text(BytesText<'a>),
    /// CDATA.
    CData(BytesCData<'a>),
    /// The current element ends.
    Close,
    /// The document ends.
    Eof,
}

/// An element's local name (namespace prefix dropped: EC2 uses one default namespace); names
/// that are not UTF-8 match nothing.
fn name_of<'e>(e: &'e BytesStart<'_>) -> std::borrow::Cow<'e, str> {
    String::from_utf8_lossy(e.local_name().into_inner())
}

impl<'a> Parser<'a> {
    fn new(xml: &'a str) -> Parser<'a> {
        let mut reader = Reader::from_str(xml);
        // Text is kept exactly (strings may have leading or trailing spaces); whitespace between
        // elements is ignored where a structure or list is expected.
        reader.config_mut().trim_text(false);
        Parser { reader, depth: 0 }
    }

    fn next(&mut self) -> Result<Step<'a>, ParseError> {
        loop {
            let event = self.reader.read_event().map_err(xml_error)?;
            return Ok(match event {
                Event::Start(e) => Step::Open(e, false),
                Event::Empty(e) => Step::Open(e, true),
                Event::End(_) => Step::Close,
                Event::Text(t) => Step::Text(t),
                Event::CData(c) => Step::CData(c),
                Event::Eof => Step::Eof,
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => continue,
            });
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        if self.depth >= MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        self.depth += 1;
        Ok(())
    }

    /// Skips the rest of the element just opened (not self-closing), whatever it holds.
    fn skip(&mut self) -> Result<(), ParseError> {
        let mut depth = 0usize;
        loop {
            match self.next()? {
                Step::Open(_, true) | Step::Text(_) | Step::CData(_) => {}
                Step::Open(_, false) => {
                    depth += 1;
                    if self.depth + depth > MAX_DEPTH {
                        return Err(ParseError::TooDeep);
                    }
                }
                Step::Close if depth == 0 => return Ok(()),
                Step::Close => depth -= 1,
                Step::Eof => return Err(xml_error("the document ends inside an element")),
            }
        }
    }

    /// The document element's name (after the declaration and comments).
    fn root(&mut self) -> Result<(String, bool), ParseError> {
        loop {
            match self.next()? {
                Step::Open(e, empty) => return Ok((name_of(&e).into_owned(), empty)),
                Step::Text(t) if t.iter().all(u8::is_ascii_whitespace) => {}
                Step::Text(_) | Step::CData(_) => {
                    return Err(xml_error("text before the document element"))
                }
                Step::Close => return Err(xml_error("an end tag before the document element")),
                Step::Eof => return Err(xml_error("empty document")),
            }
        }
    }

    /// After the document element: only whitespace, comments and the end.
    fn end(&mut self) -> Result<(), ParseError> {
        loop {
            match self.next()? {
                Step::Eof => return Ok(()),
                Step::Text(t) if t.iter().all(u8::is_ascii_whitespace) => {}
                _ => return Err(xml_error("content after the document element")),
            }
        }
    }

    /// The text of the element just opened, up to its end; child elements are skipped.
    fn text(&mut self, empty: bool) -> Result<String, ParseError> {
        let mut text = String::new();
        if empty {
            return Ok(text);
        }
        loop {
            match self.next()? {
                Step::Text(t) => {
                    let t = t.unescape().map_err(xml_error)?;
                    if text.is_empty() {
                        text = t.into_owned();
                    } else {
                        text.push_str(&t);
                    }
                }
                Step::CData(c) => text.push_str(&String::from_utf8_lossy(&c)),
                Step::Open(_, true) => {}
                Step::Open(_, false) => {
                    self.enter()?;
                    self.skip()?;
                    self.depth -= 1;
                }
                Step::Close => return Ok(text),
                Step::Eof => return Err(xml_error("the document ends inside an element")),
            }
        }
    }

    /// The value of shape `shape` from the element just opened.
    fn value(&mut self, m: &Model, shape: ShapeId, empty: bool) -> Result<Value, ParseError> {
        let s = m.shape(shape);
        match &s.kind {
            ShapeKind::Structure(st) => {
                let mut out = std::collections::BTreeMap::new();
                if !empty {
                    self.members(
                        |name| st.by_element_name.get(name).copied(),
                        |p, i, empty| {
                            let member = &st.members[i];
                            let v = p.value(m, member.shape, empty)?;
                            out.insert(member.name.clone(), v);
                            Ok(())
                        },
                    )?;
                }
                Ok(Value::Struct(out))
            }
            ShapeKind::List(l) => {
                let item = l.member_location_name.as_deref().unwrap_or("item");
                let mut items = Vec::new();
                if !empty {
                    self.members(
                        |name| (name == item).then_some(0),
                        |p, _, empty| {
                            items.push(p.value(m, l.member, empty)?);
                            Ok(())
                        },
                    )?;
                }
                Ok(Value::List(items))
            }
            kind => {
                let text = self.text(empty)?;
                scalar(kind, text)
            }
        }
    }

    /// Walks the children of the element just opened: `pick` says which ones to read (an index
    /// handed to `read`), the others are skipped; text between them is ignored.
    fn members(
        &mut self,
        pick: impl Fn(&str) -> Option<usize>,
        mut read: impl FnMut(&mut Self, usize, bool) -> Result<(), ParseError>,
    ) -> Result<(), ParseError> {
        loop {
            match self.next()? {
                Step::Open(e, empty) => {
                    let name = name_of(&e);
                    match pick(&name) {
                        Some(i) => {
                            self.enter()?;
                            read(self, i, empty).map_err(|err| under(err, &name))?;
                            self.depth -= 1;
                        }
                        None if empty => {}
                        None => {
                            self.enter()?;
                            self.skip()?;
                            self.depth -= 1;
                        }
                    }
                }
                Step::Text(_) | Step::CData(_) => {}
                Step::Close => return Ok(()),
                Step::Eof => return Err(xml_error("the document ends inside an element")),
            }
        }
    }
}

/// A scalar of `kind` from its text.
fn scalar(kind: &ShapeKind, text: String) -> Result<Value, ParseError> {
    let bad = |text: &str, expected: &'static str| ParseError::BadValue {
        path: String::new(),
        text: text.to_string(),
        expected,
    };
    Ok(match kind {
        ShapeKind::String { .. } | ShapeKind::Blob => Value::String(text),
        ShapeKind::Integer | ShapeKind::Long => {
            Value::Integer(text.trim().parse().map_err(|_| bad(&text, "an integer"))?)
        }
        ShapeKind::Double | ShapeKind::Float => Value::Double(match text.trim() {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            t => t.parse().map_err(|_| bad(&text, "a number"))?,
        }),
        ShapeKind::Boolean => match text.trim() {
            "true" => Value::Boolean(true),
            "false" => Value::Boolean(false),
            _ => return Err(bad(&text, "a boolean")),
        },
        ShapeKind::Timestamp => {
            let t = text.trim();
            Value::Timestamp(
                Timestamp::parse_iso8601(t)
                    .or_else(|| t.parse::<i64>().ok().map(Timestamp::from_unix))
                    .ok_or_else(|| bad(&text, "a timestamp"))?,
            )
        }
        ShapeKind::Structure(_) | ShapeKind::List(_) => {
            return Err(bad(&text, "a scalar (model defect)"))
        }
    })
}

/// Reads the success answer of `operation` (`<OperationResponse>`).
pub fn parse_response(operation: &str, xml: &str) -> Result<Response, ParseError> {
    parse_response_with(model(), operation, xml)
}

/// [`parse_response`] against a given model.
pub fn parse_response_with(m: &Model, operation: &str, xml: &str) -> Result<Response, ParseError> {
    let op = m
        .operation(operation)
        .ok_or_else(|| ParseError::UnknownOperation(operation.to_string()))?;
    let mut p = Parser::new(xml);
    let expected = format!("{operation}Response");
    let (root, empty) = p.root()?;
    if root != expected {
        return Err(ParseError::WrongRoot {
            found: root,
            expected,
        });
    }
    p.enter()?;
    let mut request_id = None;
    let mut output = std::collections::BTreeMap::new();
    if !empty {
        let st = op.output.and_then(|s| match &m.shape(s).kind {
            ShapeKind::Structure(st) => Some(st),
            _ => None,
        });
        // Index `usize::MAX` is the `requestId` element, which is not an output member.
        let pick = |name: &str| {
            if name == "requestId" {
                return Some(usize::MAX);
            }
            st.and_then(|st| st.by_element_name.get(name).copied())
        };
        p.members(pick, |p, i, empty| {
            if i == usize::MAX {
                request_id = Some(p.text(empty)?);
                return Ok(());
            }
            if let Some(st) = st {
                let member = &st.members[i];
                let v = p.value(m, member.shape, empty)?;
                output.insert(member.name.clone(), v);
            }
            Ok(())
        })
        .map_err(|e| under(e, &expected))?;
    }
    p.end()?;
    Ok(Response {
        request_id,
        output: Value::Struct(output),
    })
}

/// Reads an EC2 error document (see [`crate::encode_error`]): the first `Error`'s `Code` and
/// `Message`, and `RequestID` (`RequestId` also accepted).
pub fn parse_error(xml: &str) -> Result<ErrorResponse, ParseError> {
    let mut p = Parser::new(xml);
    let (root, empty) = p.root()?;
    if root != "Response" {
        return Err(ParseError::WrongRoot {
            found: root,
            expected: "Response".to_string(),
        });
    }
    p.enter()?;
    let mut out = ErrorResponse::default();
    let mut seen_error = false;
    if !empty {
        const ERRORS: usize = 0;
        const REQUEST_ID: usize = 1;
        p.members(
            |name| match name {
                "Errors" => Some(ERRORS),
                "RequestID" | "RequestId" => Some(REQUEST_ID),
                _ => None,
            },
            |p, i, empty| {
                if i == REQUEST_ID {
                    out.request_id = Some(p.text(empty)?);
                    return Ok(());
                }
                if empty {
                    return Ok(());
                }
                p.members(
                    |name| (name == "Error").then_some(0),
                    |p, _, empty| {
                        let first = !seen_error;
                        seen_error = true;
                        if empty {
                            return Ok(());
                        }
                        p.members(
                            |name| match name {
                                "Code" => Some(0),
                                "Message" => Some(1),
                                _ => None,
                            },
                            |p, which, empty| {
                                let text = p.text(empty)?;
                                if first {
                                    if which == 0 {
                                        out.code = text;
                                    } else {
                                        out.message = text;
                                    }
                                }
                                Ok(())
                            },
                        )
                    },
                )
            },
        )?;
    }
    p.end()?;
    if !seen_error {
        return Err(xml_error("the error document has no Errors/Error"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_encoder_writes() {
        let output = Value::new_struct().with(
            "Vpcs",
            vec![Value::new_struct()
                .with("VpcId", "vpc-1")
                .with("CidrBlock", "10.0.0.0/16")
                .with("IsDefault", false)
                .with("Tags", Vec::<Value>::new())],
        );
        let xml = crate::try_encode("DescribeVpcs", &output, "req-1").unwrap();
        let r = parse_response("DescribeVpcs", &xml).unwrap();
        assert_eq!(r.request_id.as_deref(), Some("req-1"));
        assert_eq!(r.output, output);
    }

    #[test]
    fn pretty_printed_answers_with_unknown_elements() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeVpcsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>7a62c49f</requestId>
  <vpcSet>
    <item>
      <vpcId>vpc-0123456789abcdef0</vpcId>
      <futureField><a>1</a></futureField>
      <tagSet><item><key>Name</key><value> a &amp; b </value></item></tagSet>
    </item>
    <item><vpcId>vpc-1</vpcId><tagSet/><isDefault>true</isDefault></item>
  </vpcSet>
</DescribeVpcsResponse>"#;
        let r = parse_response("DescribeVpcs", xml).unwrap();
        let vpcs = r.output.get_list("Vpcs");
        assert_eq!(vpcs.len(), 2);
        assert_eq!(vpcs[0].get_str("VpcId"), Some("vpc-0123456789abcdef0"));
        assert_eq!(
            vpcs[0].get_list("Tags")[0].get_str("Value"),
            Some(" a & b ")
        );
        assert_eq!(vpcs[1].get_list("Tags").len(), 0);
        assert_eq!(vpcs[1].get_bool("IsDefault"), Some(true));
    }

    #[test]
    fn operations_without_output_and_errors() {
        let xml = crate::encode("DeleteVpc", &Value::new_struct(), "r");
        let r = parse_response("DeleteVpc", &xml).unwrap();
        assert_eq!(r.output, Value::new_struct());
        let e = parse_error(&crate::encode_error(
            "InvalidVpcID.NotFound",
            "x < y",
            "r-9",
        ))
        .unwrap();
        assert_eq!(
            e,
            ErrorResponse {
                code: "InvalidVpcID.NotFound".into(),
                message: "x < y".into(),
                request_id: Some("r-9".into())
            }
        );
    }

    #[test]
    fn refusals() {
        let wrong = parse_response("DescribeVpcs", "<DescribeSubnetsResponse/>");
        assert!(matches!(wrong, Err(ParseError::WrongRoot { .. })));
        let bad = parse_response(
            "DescribeSubnets",
            "<DescribeSubnetsResponse><subnetSet><item><availableIpAddressCount>x</availableIpAddressCount></item></subnetSet></DescribeSubnetsResponse>",
        );
        match bad {
            Err(ParseError::BadValue { path, .. }) => assert_eq!(
                path,
                "DescribeSubnetsResponse/subnetSet/item/availableIpAddressCount"
            ),
            other => panic!("{other:?}"),
        }
        assert!(parse_response("Nope", "<NopeResponse/>").is_err());
        for doc in [
            "",
            "<DescribeVpcsResponse>",
            "<DescribeVpcsResponse></x>",
            "<DescribeVpcsResponse/><b/>",
            "text",
        ] {
            assert!(parse_response("DescribeVpcs", doc).is_err(), "{doc:?}");
        }
        let deep = format!(
            "<DescribeVpcsResponse>{}{}</DescribeVpcsResponse>",
            "<a>".repeat(100),
            "</a>".repeat(100)
        );
        assert_eq!(
            parse_response("DescribeVpcs", &deep),
            Err(ParseError::TooDeep)
        );
        assert!(parse_error("<Response><RequestID>x</RequestID></Response>").is_err());
        assert!(parse_error("<Other/>").is_err());
    }
}
