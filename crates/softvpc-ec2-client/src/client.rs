//! The async client: signed `POST /` over hyper-util's pooled HTTP/1.1 client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use softvpc_ec2_protocol::Value;

use crate::codec::{decode_reply, raw_body, request_body};
use crate::error::Error;
use crate::{Config, MAX_ANSWER};

/// The connector every connection is opened with. HTTPS (issue 7) becomes a second connector
/// chosen here from a `rustls::ClientConfig` on [`Config`]; nothing else changes.
type Connector = HttpConnector;

/// One raw answer: status, body and the time from sending the request to its last byte.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The body (EC2 answers are UTF-8 XML; other bytes are replaced).
    pub body: String,
    /// From handing the request to the connection pool to the answer's last byte (signing and
    /// decoding not included).
    pub took: Duration,
}

impl Reply {
    /// The output tree of this answer to `action`, or the refusal it carries.
    pub fn decode(&self, action: &str) -> Result<Value, Error> {
        decode_reply(action, self.status, &self.body)
    }
}

/// A client of one server. Cheap to clone (clones share the connection pool); needs a tokio
/// runtime (see [`crate::BlockingClient`] for synchronous callers).
#[derive(Clone)]
pub struct Client {
    http: hyper_util::client::legacy::Client<Connector, Full<Bytes>>,
    config: Arc<Config>,
    /// The `Host` header, exactly as signed.
    host: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `config`; connects on the first call.
    pub fn new(config: Config) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.timeout));
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Client {
            http,
            host: config.addr.to_string(),
            config: Arc::new(config),
        }
    }

    /// What this client was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Calls `action` with `input` (serialized by the model) and returns its output tree.
    pub async fn call(&self, action: &str, input: &Value) -> Result<Value, Error> {
        self.send(action, input).await?.decode(action)
    }

    /// Sends `action` with `input` and returns the raw answer, whatever its status.
    pub async fn send(&self, action: &str, input: &Value) -> Result<Reply, Error> {
        let body = request_body(action, input)?;
        self.send_body(action, body).await
    }

    /// Sends `action` with parameters given by wire name, unchecked by the model (see
    /// [`crate::codec::raw_body`]), and returns the raw answer.
    pub async fn send_raw(
        &self,
        action: &str,
        params: &[(String, String)],
    ) -> Result<Reply, Error> {
        self.send_body(action, raw_body(action, params)).await
    }

    /// Signs and sends a form body; `action` names the call in errors.
    pub async fn send_body(&self, action: &str, body: String) -> Result<Reply, Error> {
        let creds = self.config.credentials.resolve()?;
        let signed =
            softvpc_sigv4::sign_ec2_query(&creds, &self.config.region, &self.host, body.as_bytes())
                .ok_or_else(|| {
                    Error::Credentials("the clock cannot be expressed in a signature".into())
                })?;
        let mut req = http::Request::post(format!("{}/", self.config.url()))
            .header(http::header::HOST, &self.host)
            .header(
                http::header::CONTENT_TYPE,
                softvpc_sigv4::QUERY_CONTENT_TYPE,
            )
            .header(http::header::USER_AGENT, USER_AGENT);
        for (name, value) in &signed {
            req = req.header(name.as_str(), value.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.transport(action, e))?;
        self.exchange(action, req).await
    }

    /// `GET path` without a signature (`/healthz`).
    pub async fn get(&self, path: &str) -> Result<Reply, Error> {
        let req = http::Request::get(format!("{}{path}", self.config.url()))
            .header(http::header::HOST, &self.host)
            .header(http::header::USER_AGENT, USER_AGENT)
            .body(Full::new(Bytes::new()))
            .map_err(|e| self.transport(path, e))?;
        self.exchange(path, req).await
    }

    /// Whether `GET /healthz` answers 200 within the timeout.
    pub async fn healthy(&self) -> bool {
        matches!(self.get("/healthz").await, Ok(r) if r.status == 200)
    }

    async fn exchange(
        &self,
        action: &str,
        req: http::Request<Full<Bytes>>,
    ) -> Result<Reply, Error> {
        let start = Instant::now();
        let answer = async {
            let resp = self.http.request(req).await.map_err(|e| error_chain(&e))?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.config.timeout, answer)
            .await
            .map_err(|_| {
                self.transport(
                    action,
                    format!("no complete answer within {:?}", self.config.timeout),
                )
            })?
            .map_err(|e| self.transport(action, e))?;
        let took = start.elapsed();
        let body = match String::from_utf8(body.into()) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Ok(Reply { status, body, took })
    }

    fn transport(&self, action: &str, e: impl std::fmt::Display) -> Error {
        Error::Transport {
            action: action.to_string(),
            url: self.config.url(),
            message: e.to_string(),
        }
    }
}

/// The `User-Agent` of every request.
const USER_AGENT: &str = concat!("softvpc-ec2-client/", env!("CARGO_PKG_VERSION"));

/// An error with its sources (hyper-util's errors say little at the top level).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
