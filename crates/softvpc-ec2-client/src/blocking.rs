//! The synchronous face of [`Client`]: the same calls, each run to completion on a runtime
//! of the client's own (one thread: the caller's), so the lab and the benchmark threads need no
//! async code. Do not use it from inside a tokio runtime (tokio refuses nested `block_on`).

use std::sync::Arc;

use softvpc_ec2_protocol::Value;

use crate::client::{Client, Reply};
use crate::error::Error;
use crate::Config;

/// A blocking client of one server. Clones share the runtime and the connection pool.
#[derive(Clone, Debug)]
pub struct BlockingClient {
    runtime: Arc<tokio::runtime::Runtime>,
    inner: Client,
}

impl BlockingClient {
    /// A client for `config`; fails only when the runtime cannot be built.
    pub fn new(config: Config) -> Result<BlockingClient, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::Transport {
                action: "starting the client runtime".to_string(),
                url: config.url(),
                message: e.to_string(),
            })?;
        // The pool's connection tasks are spawned on this runtime, so the client is built in it.
        let inner = {
            let _guard = runtime.enter();
            Client::new(config)
        };
        Ok(BlockingClient {
            runtime: Arc::new(runtime),
            inner,
        })
    }

    /// What this client was built with.
    pub fn config(&self) -> &Config {
        self.inner.config()
    }

    /// See [`Client::call`].
    pub fn call(&self, action: &str, input: &Value) -> Result<Value, Error> {
        self.runtime.block_on(self.inner.call(action, input))
    }

    /// See [`Client::send`].
    pub fn send(&self, action: &str, input: &Value) -> Result<Reply, Error> {
        self.runtime.block_on(self.inner.send(action, input))
    }

    /// See [`Client::send_raw`].
    pub fn send_raw(&self, action: &str, params: &[(String, String)]) -> Result<Reply, Error> {
        self.runtime.block_on(self.inner.send_raw(action, params))
    }

    /// See [`Client::get`].
    pub fn get(&self, path: &str) -> Result<Reply, Error> {
        self.runtime.block_on(self.inner.get(path))
    }

    /// See [`Client::healthy`].
    pub fn healthy(&self) -> bool {
        self.runtime.block_on(self.inner.healthy())
    }
}
