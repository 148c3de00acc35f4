//! The gRPC mapping service: `RegisterHost` and `Watch`.
//!
//! A watch first sends a Snapshot, or Deltas when the agent resumes with this server's epoch and
//! a revision still in the log ring. It then follows the revision signal: on each advance it
//! sends the Delta since the last revision it sent (a Heartbeat when nothing concerns this host),
//! or a fresh Snapshot if it fell so far behind that the ring no longer holds its revision: never
//! silently stale.

use std::sync::Arc;

use softvpc_proto::pb;
use softvpc_proto::pb::mapping_server::{Mapping, MappingServer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use softvpc_mapping::Feed;

use crate::control::ControlPlane;
use crate::model::host::register_host;

/// Messages buffered per watch before the stream task waits for the agent.
const STREAM_BUFFER: usize = 16;

/// The service implementation over the shared control plane.
#[derive(Clone)]
pub struct MappingService {
    cp: Arc<ControlPlane>,
    /// Becomes true when the server shuts down: open watch streams then end, so a graceful
    /// shutdown does not wait forever for these endless streams.
    closing: Option<tokio::sync::watch::Receiver<bool>>,
}

impl MappingService {
    /// A service whose streams end only when their agent goes away.
    pub fn new(cp: Arc<ControlPlane>) -> Self {
        MappingService { cp, closing: None }
    }

    /// A service whose streams end once `closing` becomes true.
    pub fn with_shutdown(
        cp: Arc<ControlPlane>,
        closing: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        MappingService {
            cp,
            closing: Some(closing),
        }
    }

    /// The tonic server wrapper.
    pub fn into_server(self) -> MappingServer<Self> {
        MappingServer::new(self)
    }
}

#[tonic::async_trait]
impl Mapping for MappingService {
    async fn register_host(
        &self,
        request: Request<pb::RegisterHostRequest>,
    ) -> Result<Response<pb::RegisterHostResponse>, Status> {
        let req = request.into_inner();
        let cp = self.cp.clone();
        let result = tokio::task::spawn_blocking(move || {
            cp.mutate(false, |txn| register_host(txn, &req.name, &req.underlay_ip))
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

    type WatchStream = ReceiverStream<Result<pb::WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let req = request.into_inner();
        if !self.cp.state().hosts.contains_key(&req.host_id) {
            return Err(Status::not_found(format!(
                "unknown host id '{}': call RegisterHost first",
                req.host_id
            )));
        }
        let cp = self.cp.clone();
        // Subscribe before computing the first message so no advance is missed in between.
        let mut wake = cp.subscribe();
        let (mut feed, first) = Feed::open(&req, &cp.mapping_since(req.revision));
        tracing::info!(
            host = %req.host_id,
            resumed = first_is_delta(&first),
            revision = first.revision,
            "watch opened"
        );
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let closing = self.closing.clone();
        tokio::spawn(async move {
            let closed = async move {
                match closing {
                    // An error means the sender is gone: the server is going away too.
                    Some(mut c) => {
                        let _ = c.wait_for(|c| *c).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::pin!(closed);
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    changed = wake.changed() => {
                        if changed.is_err() {
                            break; // server shutting down
                        }
                    }
                    _ = tx.closed() => break,
                    _ = &mut closed => break,
                }
                // The log read is a cheap copy; the message is built without any lock held.
                let read = cp.mapping_since(feed.revision());
                if let Some(m) = feed.next(&read) {
                    if !first_is_delta(&m) {
                        tracing::debug!(host = %feed.host_id(), revision = m.revision, "watch: snapshot");
                    }
                    // A slow agent must not hold up a shutdown either.
                    tokio::select! {
                        sent = tx.send(Ok(m)) => if sent.is_err() { break },
                        _ = &mut closed => break,
                    }
                }
            }
            tracing::info!(host = %feed.host_id(), "watch closed");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn first_is_delta(m: &pb::WatchResponse) -> bool {
    !matches!(m.kind, Some(pb::watch_response::Kind::Snapshot(_)))
}
