//! The gRPC mapping service: `Join`, `Renew`, `RegisterHost`, `Watch` and
//! `PutFlowLogRecords` (the agents' flow log records, see [`super::flow_records`]).
//!
//! Every RPC but Join authenticates the host by its client certificate ([`Trust`]): a host
//! registers and watches only as itself, and a refusal is logged with its reason and changes
//! nothing. A watch ends when its host is revoked or its certificate expires.
//!
//! A watch first sends a Snapshot, or Deltas when the agent resumes with this server's epoch and
//! a revision still in the log ring. It then follows its host's wake-up signal, raised only by
//! revisions that concern the host ([`MappingProjection::subscribe`]): it sends the Delta since
//! the last revision it sent, or a fresh Snapshot if it fell so far behind that the ring no
//! longer holds its revision: never silently stale. Every [`HEARTBEAT`] a watch whose revision
//! lags (revisions that did not concern it) sends a Heartbeat, so its agent's resume point stays
//! recent. `Watch` is served by [`super::watch`]'s route: each message encoded once for every
//! stream that sends it, the stream itself polled by HTTP/2.

use std::sync::Arc;

use softvpc_proto::pb;
use softvpc_proto::pb::mapping_server::Mapping;
use tonic::{Request, Response, Status};

use softvpc_mapping::Feed;

use super::fanout::ConnClocks;
use super::watch::{next_revocation, ClosedLog, Encoded, EncodedStream, MappingRoutes, WatchState};
use super::{Flag, MappingProjection};
use crate::trust::{Refusal, Trust};
use softvpc_model::host::register_host_in;
use softvpc_store::Store;
use softvpc_trust::identity::PeerIdentity;

/// How often a watch brings its agent up to the newest revision when no change concerned it.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// The service implementation over the shared store and its mapping log.
#[derive(Clone)]
pub struct MappingService {
    store: Arc<Store>,
    projection: Arc<MappingProjection>,
    trust: Arc<Trust>,
    /// Becomes true when the server shuts down: open watch streams then end, so a graceful
    /// shutdown does not wait forever for these endless streams.
    closing: Option<tokio::sync::watch::Receiver<bool>>,
    /// Where flow log records are written (None: refused).
    flow_log_dir: Option<std::path::PathBuf>,
    /// The connections' write clocks, for the fan-out times (None: a message counts as
    /// written when it is handed to HTTP/2).
    clocks: Option<Arc<ConnClocks>>,
}

impl MappingService {
    /// A service whose streams end only when their agent goes away.
    pub fn new(store: Arc<Store>, projection: Arc<MappingProjection>, trust: Arc<Trust>) -> Self {
        MappingService {
            store,
            projection,
            trust,
            closing: None,
            flow_log_dir: None,
            clocks: None,
        }
    }

    /// A service whose streams end once `closing` becomes true.
    pub fn with_shutdown(
        store: Arc<Store>,
        projection: Arc<MappingProjection>,
        trust: Arc<Trust>,
        closing: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        MappingService {
            store,
            projection,
            trust,
            closing: Some(closing),
            flow_log_dir: None,
            clocks: None,
        }
    }

    /// Writes the flow log records agents send under `dir` (the server's `--flow-log-dir`).
    pub fn with_flow_log_dir(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.flow_log_dir = dir;
        self
    }

    /// Times each watch message by the first socket write on its connection after it
    /// (connections accepted through [`ConnClocks::clock`]).
    pub fn with_clocks(mut self, clocks: Arc<ConnClocks>) -> Self {
        self.clocks = Some(clocks);
        self
    }

    /// The host behind `request`'s client certificate, or the refusal (logged).
    fn authenticate<T>(&self, rpc: &str, request: &Request<T>) -> Result<PeerIdentity, Status> {
        let certs = request.peer_certs();
        self.trust
            .authenticate(certs.as_deref().map(|c| c.as_slice()))
            .map_err(|r| refuse(rpc, request, None, r))
    }

    /// The service's routes for tonic's server (`Watch` with each message encoded once).
    pub fn into_server(self) -> MappingRoutes {
        MappingRoutes::new(self)
    }
}

/// Logs a refusal with its reason and turns it into the status the client gets.
fn refuse<T>(rpc: &str, request: &Request<T>, host: Option<&str>, r: Refusal) -> Status {
    let peer = request
        .remote_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::warn!(rpc, %peer, host, code = ?r.code, reason = %r.reason, "mapping service: refused");
    r.status()
}

fn certificate_response(
    trust: &Trust,
    issued: softvpc_trust::ca::Issued,
) -> pb::CertificateResponse {
    pb::CertificateResponse {
        certificate_pem: issued.cert_pem,
        ca_pem: trust.ca().cert_pem().to_string(),
        not_after: issued.not_after,
    }
}

#[tonic::async_trait]
impl Mapping for MappingService {
    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::CertificateResponse>, Status> {
        let req = request.get_ref().clone();
        let trust = self.trust.clone();
        let result = tokio::task::spawn_blocking(move || {
            trust.join(&req.token, &req.host_name, &req.csr_pem)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        let host = request.get_ref().host_name.as_str();
        match result {
            Ok(issued) => {
                tracing::info!(host, serial = %issued.serial, not_after = issued.not_after, "host joined: certificate issued");
                Ok(Response::new(certificate_response(&self.trust, issued)))
            }
            Err(r) => Err(refuse("Join", &request, Some(host), r)),
        }
    }

    async fn renew(
        &self,
        request: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::CertificateResponse>, Status> {
        let peer = self.authenticate("Renew", &request)?;
        let csr = request.get_ref().csr_pem.clone();
        let (trust, p) = (self.trust.clone(), peer.clone());
        let result = tokio::task::spawn_blocking(move || trust.renew(&p, &csr))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        match result {
            Ok(issued) => {
                tracing::info!(host = %peer.host, serial = %issued.serial, not_after = issued.not_after, "host certificate renewed");
                Ok(Response::new(certificate_response(&self.trust, issued)))
            }
            Err(r) => Err(refuse("Renew", &request, Some(&peer.host), r)),
        }
    }

    async fn register_host(
        &self,
        request: Request<pb::RegisterHostRequest>,
    ) -> Result<Response<pb::RegisterHostResponse>, Status> {
        let peer = self.authenticate("RegisterHost", &request)?;
        if request.get_ref().name != peer.host {
            let reason = format!(
                "the certificate is for host {:?}, not {:?}",
                peer.host,
                request.get_ref().name
            );
            return Err(refuse(
                "RegisterHost",
                &request,
                Some(&peer.host),
                Refusal {
                    code: tonic::Code::PermissionDenied,
                    reason,
                },
            ));
        }
        let req = request.into_inner();
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || {
            store.mutate(false, |txn| {
                register_host_in(
                    txn,
                    &req.name,
                    &req.underlay_ip,
                    Some(req.availability_zone.as_str()),
                )
            })
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        match result {
            Ok(host_id) => {
                tracing::info!(%host_id, "host registered");
                Ok(Response::new(pb::RegisterHostResponse { host_id }))
            }
            Err(e) if e.status >= 500 => Err(Status::internal(e.message)),
            Err(e) => Err(Status::invalid_argument(format!(
                "{}: {}",
                e.code, e.message
            ))),
        }
    }

    async fn put_flow_log_records(
        &self,
        request: Request<pb::PutFlowLogRecordsRequest>,
    ) -> Result<Response<pb::PutFlowLogRecordsResponse>, Status> {
        let peer = self.authenticate("PutFlowLogRecords", &request)?;
        let Some(dir) = self.flow_log_dir.clone() else {
            return Err(Status::failed_precondition(
                "this server has no flow log directory",
            ));
        };
        let req = request.into_inner();
        let store = self.store.clone();
        let out = tokio::task::spawn_blocking(move || {
            super::flow_records::append(&store.state(), &dir, &peer.host, &req)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::PutFlowLogRecordsResponse {
            written: out.written,
            refused: out.refused,
        }))
    }

    type WatchStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::WatchResponse, Status>> + Send>,
    >;

    /// Served by [`MappingRoutes`] with each message encoded once; this generated route (used
    /// only if the generated server is served alone) streams the same messages decoded again.
    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let stream = self.open_watch(request).await?.into_inner();
        let decoded = tokio_stream::StreamExt::map(stream, |m| m.and_then(|e| e.decode()));
        Ok(Response::new(Box::pin(decoded)))
    }
}

impl MappingService {
    /// Opens a watch for an authenticated host: its first message, then the stream of the
    /// following ones (see [`super::watch`]).
    pub(super) async fn open_watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<EncodedStream>, Status> {
        let peer = self.authenticate("Watch", &request)?;
        let name = self
            .store
            .state()
            .hosts
            .get(&request.get_ref().host_id)
            .map(|h| h.name.clone());
        match name {
            None => {
                return Err(Status::not_found(format!(
                    "unknown host id '{}': call RegisterHost first",
                    request.get_ref().host_id
                )))
            }
            Some(n) if n != peer.host => {
                let reason = format!(
                    "the certificate is for host {:?}, not {:?} ({})",
                    peer.host,
                    n,
                    request.get_ref().host_id
                );
                return Err(refuse(
                    "Watch",
                    &request,
                    Some(&peer.host),
                    Refusal {
                        code: tonic::Code::PermissionDenied,
                        reason,
                    },
                ));
            }
            Some(_) => {}
        }
        let clock = self
            .clocks
            .as_ref()
            .and_then(|c| c.get(request.remote_addr()));
        let req = request.into_inner();
        let projection = self.projection.clone();
        // An agent coming from another replica may be ahead of this one (its commits reach
        // here by a watch): catch up first, so it resumes instead of resyncing.
        if req.revision > self.store.state().revision {
            let store = self.store.clone();
            let _ = tokio::task::spawn_blocking(move || store.sync()).await;
        }
        // Subscribe before computing the first message so no advance is missed in between.
        let wake = projection.subscribe(&req.host_id);
        // Feeds sending the same message (most hosts holding the same VPCs get the same
        // Delta) share it, encoded once.
        let (feed, first) = Feed::open_shared(
            &req,
            &projection.read(req.revision),
            projection.shared(),
            Encoded::new,
        );
        tracing::info!(
            host = %req.host_id,
            resumed = !first.snapshot,
            revision = first.revision,
            "watch opened"
        );
        let closing = self.closing.clone();
        let closed = Box::pin(async move {
            match closing {
                // An error means the sender is gone: the server is going away too.
                Some(mut c) => {
                    let _ = c.wait_for(|c| *c).await;
                }
                None => std::future::pending::<()>().await,
            }
        });
        // The stream ends when the certificate it was opened with expires (the agent has renewed
        // by then and reconnects with the new one).
        let expiry = tokio::time::Instant::now()
            + std::time::Duration::from_secs(
                peer.not_after.saturating_sub(softvpc_trust::now_secs()),
            );
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let state = WatchState {
            _closed_log: ClosedLog(req.host_id.clone()),
            feed,
            projection,
            wake,
            heartbeat,
            closed,
            expiry: Box::pin(tokio::time::sleep_until(expiry)),
            trust: self.trust.clone(),
            revocations: next_revocation(self.trust.revocations()),
            slow_woken: Arc::new(Flag::raised()),
            peer,
            queued: std::collections::VecDeque::from([Ok(first)]),
            ended: false,
            clock,
        };
        Ok(Response::new(state.into_stream()))
    }
}
