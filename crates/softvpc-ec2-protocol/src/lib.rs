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
//! Modules: [`model`] (the parsed service model), [`value`] (the tree), [`form`] (form
//! decoding), [`decode`] and [`encode`] (the two directions), [`error`] (protocol refusals).

pub mod decode;
pub mod encode;
pub mod error;
pub mod form;
pub mod model;
pub mod value;

pub use decode::{decode, decode_form, decode_request, decode_with, is_protocol_param};
pub use encode::{encode, encode_error, try_encode, EncodeError};
pub use error::ProtocolError;
pub use form::{parse_form, parse_forms};
pub use model::{model, Model};
pub use value::{Timestamp, Value};

/// The API version every request and response uses.
pub const API_VERSION: &str = "2016-11-15";
