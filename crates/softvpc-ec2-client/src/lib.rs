//! softvpc's own client of its EC2 Query API, used by the lab, the API benchmark and the Rust
//! tests, so there is one way to build a request and one way to read an answer.
//!
//! - Requests are typed [`Value`] trees keyed by the model's member names
//!   (`Value::new_struct().with("CidrBlock", "10.0.0.0/16")`), serialized by botocore's rules
//!   from the same EC2 model the server decodes with (`softvpc-ec2-protocol`), so a tree that
//!   does not fit the operation's input is refused here, before the server sees it.
//! - Every request is SigV4-signed ([`softvpc_sigv4::sign_ec2_query`]) with a key pair given
//!   directly or read from a shared-credentials file.
//! - Answers are read back into [`Value`] trees by the model ([`codec::decode_reply`]); an
//!   error answer is an [`ApiError`] with AWS's code and message.
//!
//! [`codec`] is the pure half (body in, tree out), for callers that run the server's dispatcher
//! in process. [`Client`] (async, tokio) and [`BlockingClient`] (its own current-thread
//! runtime, for synchronous callers) add HTTP/1.1 over hyper-util's pooled client: connections
//! are kept alive between calls, every call has a deadline. The transport is plain HTTP today;
//! HTTPS with a given CA bundle slots in as a `rustls::ClientConfig` on [`Config`] that selects
//! a TLS connector in `client.rs` (the only place that opens connections).
//!
//! ```no_run
//! use softvpc_ec2_client::{BlockingClient, Config, Value};
//! let api = BlockingClient::new(Config::http(
//!     "127.0.0.1:8787".parse().unwrap(),
//!     softvpc_ec2_client::Credentials::File("/var/lib/softvpc/credentials".into()),
//! ))?;
//! let out = api.call("CreateVpc", &Value::new_struct().with("CidrBlock", "10.0.0.0/16"))?;
//! println!("{}", out.get("Vpc").and_then(|v| v.get_str("VpcId")).unwrap_or_default());
//! # Ok::<(), softvpc_ec2_client::Error>(())
//! ```
#![warn(missing_docs)]

mod blocking;
mod client;
pub mod codec;
mod error;
pub mod read;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use blocking::BlockingClient;
pub use client::{Client, Reply};
pub use error::{ApiError, Error};
pub use softvpc_ec2_protocol::Value;

/// The region requests are signed for (the server's; it refuses a signature for another).
pub const DEFAULT_REGION: &str = "us-east-1";

/// How long one call may take by default, from connecting to the last byte of the answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest answer body read (a full DescribeNetworkInterfaces of 64,000 ENIs fits).
pub const MAX_ANSWER: usize = 256 << 20;

/// Where the key pair comes from.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// This key pair.
    Static(softvpc_sigv4::Credentials),
    /// The `default` profile (else the first) of this shared-credentials file, read at every
    /// call: a server writes its file on first start, possibly after the client exists.
    File(PathBuf),
}

impl Credentials {
    /// The key pair to sign with now.
    pub fn resolve(&self) -> Result<softvpc_sigv4::Credentials, Error> {
        match self {
            Credentials::Static(c) => Ok(c.clone()),
            Credentials::File(path) => {
                let profiles = softvpc_sigv4::read_credentials_file(path)
                    .map_err(|e| Error::Credentials(format!("reading {}: {e}", path.display())))?;
                let pick = profiles
                    .iter()
                    .find(|p| p.name == "default")
                    .or(profiles.first());
                match pick {
                    Some(p) => Ok(p.credentials.clone()),
                    None => Err(Error::Credentials(format!(
                        "{} holds no credentials",
                        path.display()
                    ))),
                }
            }
        }
    }
}

/// What a client needs to reach one server.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server's API address (`--listen`); requests go to `http://ADDR/`.
    pub addr: SocketAddr,
    /// The key pair to sign with.
    pub credentials: Credentials,
    /// The region in the signature's scope.
    pub region: String,
    /// Deadline of one call (connect, send, read the whole answer).
    pub timeout: Duration,
}

impl Config {
    /// Plain HTTP to `addr`, region [`DEFAULT_REGION`], timeout [`DEFAULT_TIMEOUT`].
    pub fn http(addr: SocketAddr, credentials: Credentials) -> Config {
        Config {
            addr,
            credentials,
            region: DEFAULT_REGION.to_string(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The endpoint URL, as the AWS CLI's `--endpoint-url` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
