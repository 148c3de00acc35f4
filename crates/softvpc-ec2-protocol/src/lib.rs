//! The EC2 Query protocol, driven by botocore's EC2 service model rather than by hand: request
//! parameters decode into typed trees and typed trees encode into the response XML, for every
//! operation of the committed model (`model/ec2-vpc.json`, written by
//! `scripts/gen-ec2-model.py`). Pure: no HTTP, no async, no I/O.
//!
//! A server uses it as:
//! ```
//! use softvpc_ec2_protocol as ec2;
//! let pairs = ec2::parse_form(b"Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0%2F16").unwrap();
//! let (action, input) = ec2::decode_request(&pairs).unwrap();
//! assert_eq!(input.get_str("CidrBlock"), Some("10.0.0.0/16"));
//! let output = ec2::Value::new_struct().with(
//!     "Vpc",
//!     ec2::Value::new_struct().with("VpcId", "vpc-0123").with("CidrBlock", "10.0.0.0/16"),
//! );
//! let xml = ec2::encode(&action, &output, "req-1");
//! assert!(xml.contains("<vpc><vpcId>vpc-0123</vpcId><cidrBlock>10.0.0.0/16</cidrBlock></vpc>"));
//! ```
//!
//! In a server, per request:
//! 1. `decode_form(&[query_string, body])` gives `(action, input)` or a [`ProtocolError`]; answer
//!    the error with HTTP [`ProtocolError::http_status`] and body
//!    [`ProtocolError::to_xml`]`(request_id)`.
//! 2. Dispatch on `action`; read the input by model member names (`input.get_str("VpcId")`,
//!    `input.get_bool("DryRun")`, `input.get_list("Filters")` whose items have `Name` and
//!    `Values`, `input.get_list("TagSpecifications")` with `ResourceType` and `Tags`).
//!    Types, enums, list indices, integer ranges (`MaxResults` 5..=1000) and model-required
//!    members are already checked; semantic checks stay with the action.
//! 3. Build the output tree by member names ([`Value::with`], or `Value::from(&json!(..))`) and
//!    answer with [`encode()`]`(action, &output, request_id)` (element names, order, `item`
//!    wrappers and escaping come from the model); action errors with [`encode_error`].
//!
//! A client uses the other two directions: [`serialize_request`] (a tree into the request's
//! parameters, as botocore's `EC2Serializer`) and [`parse_response`] / [`parse_error`] (the
//! answer back into a tree, as botocore's `EC2QueryParser`); `softvpc-ec2-client` wraps them
//! with signing and HTTP.
//!
//! Modules: [`mod@model`] (the parsed service model), [`value`] (the tree), [`form`] (form
//! decoding), [`mod@decode`] and [`mod@encode`] (the server's two directions),
//! [`mod@serialize`] and [`mod@parse`] (the client's), [`error`] (protocol refusals).
#![warn(missing_docs)]

pub mod decode;
pub mod encode;
pub mod error;
pub mod form;
pub mod model;
pub mod parse;
pub mod serialize;
pub mod value;

pub use decode::{decode, decode_form, decode_request, decode_with, is_protocol_param};
pub use encode::{encode, encode_error, encode_streamed, try_encode, EncodeError};
pub use error::{ProtocolError, ShapeError};
pub use form::{parse_form, parse_forms};
pub use model::{model, Model};
pub use parse::{parse_error, parse_response, ErrorResponse, ParseError, Response};
pub use serialize::{form_encode, serialize_request, SerializeError};
pub use value::{Timestamp, Value};

/// The API version every request and response uses.
pub const API_VERSION: &str = "2016-11-15";
