//! The agent's identity: join (or reuse the stored certificate) at start, renew before expiry,
//! and hand the control loop a mutual-TLS client with the current certificate.
//!
//! Renewal runs on its own task two thirds into the certificate's life, retrying with backoff;
//! the new key and certificate are saved, and the control loop uses them from its next
//! connection on (the server ends a watch when the certificate it was opened with expires).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use softvpc_proto::pb::mapping_client::MappingClient;
use softvpc_trust::client::{self, Credentials};
use softvpc_trust::token::JoinToken;
use tonic::transport::Channel;
use tracing::{error, info, warn};

use crate::control::Backoff;

/// The current credentials and where to use them.
pub struct Connector {
    /// Every server replica's mapping service URL; calls go to `urls[at]` until it fails.
    urls: Vec<String>,
    at: std::sync::atomic::AtomicUsize,
    dir: PathBuf,
    creds: ArcSwap<Credentials>,
}

/// Whether a failed Join or Renew is worth retrying (the server is not reachable yet), rather
/// than a refusal that will not change.
fn retryable(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<tonic::Status>() {
        Some(s) => matches!(
            s.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::DeadlineExceeded
        ),
        None => false,
    }
}

impl Connector {
    /// Loads or obtains the host's credentials: retries while the server cannot be reached,
    /// fails on a refusal (a bad, used or expired token, another host's token).
    /// `urls`: every server replica's mapping service, tried in turn.
    pub async fn start(
        urls: &[String],
        dir: PathBuf,
        host: &str,
        token: Option<&JoinToken>,
    ) -> anyhow::Result<Arc<Connector>> {
        anyhow::ensure!(!urls.is_empty(), "--server needs at least one URL");
        for url in urls {
            client::endpoint(url)?;
        }
        let mut backoff = Backoff::default();
        let mut at = 0;
        let creds = loop {
            let url = &urls[at % urls.len()];
            match client::ensure(url, &dir, host, token).await {
                Ok(c) => break c,
                Err(e) if retryable(&e) => {
                    warn!(error = %format!("{e:#}"), server = %url, "joining: server not reachable; retrying");
                    at += 1;
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(e),
            }
        };
        Ok(Arc::new(Connector {
            urls: urls.to_vec(),
            at: (at % urls.len()).into(),
            dir,
            creds: ArcSwap::from_pointee(creds),
        }))
    }

    /// The server replica calls go to now.
    pub fn url(&self) -> &str {
        let at = self.at.load(std::sync::atomic::Ordering::Relaxed);
        &self.urls[at % self.urls.len()]
    }

    /// After a failure of the current server: the next replica (one URL: the same again).
    pub fn fail_over(&self) {
        if self.urls.len() > 1 {
            let at = self.at.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            info!(server = %self.urls[at % self.urls.len()], "failing over to the next server replica");
        }
    }

    /// A client on a new mutual-TLS channel to the current replica with the current
    /// certificate.
    pub fn client(&self) -> anyhow::Result<MappingClient<Channel>> {
        Ok(softvpc_proto::client(client::channel(
            self.url(),
            &self.creds.load(),
        )?))
    }

    /// The credentials in use now (renewal swaps them).
    pub fn credentials(&self) -> Arc<Credentials> {
        self.creds.load_full()
    }

    /// Renews the certificate two thirds into its life, forever.
    pub async fn renew_forever(self: Arc<Self>) {
        let mut backoff = Backoff::default();
        loop {
            let creds = self.creds.load_full();
            // At least a second apart, whatever the certificate says.
            let wait = creds
                .renew_at()
                .saturating_sub(softvpc_trust::now_secs())
                .max(1);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            let url = self.url().to_string();
            match client::renew(&url, &creds).await {
                Ok(new) => {
                    if let Err(e) = new.save(&self.dir, None) {
                        error!(error = %format!("{e:#}"), "cannot save the renewed certificate; keeping it in memory");
                    }
                    info!(not_after = new.not_after, "host certificate renewed");
                    self.creds.store(Arc::new(new));
                    backoff.reset();
                }
                Err(e) => {
                    if retryable(&e) {
                        self.fail_over();
                    }
                    if creds.expired() {
                        error!(error = %format!("{e:#}"), "host certificate expired without renewal: join again with a new token");
                    } else {
                        warn!(error = %format!("{e:#}"), "renewing the host certificate failed; retrying");
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}
