//! The `Watch` route: each watch message encoded once, its bytes sent to every stream.
//!
//! Hosts with the same view at the same revision get the same message
//! ([`softvpc_mapping::SharedMessages`]); the server shares it encoded ([`Encoded`]: protobuf
//! bytes in a reference-counted [`Bytes`]), and this route's codec ([`WatchCodec`]) writes those
//! bytes as they are, so a change reaching 1,000 hosts costs one protobuf encoding, not 1,000.
//! The generated `MappingServer` serves every other RPC ([`MappingRoutes`] sends the Watch path
//! here and the rest there).
//!
//! A watch is the response stream itself ([`WatchState`]): the HTTP/2 stream's task polls it,
//! it takes the host's wake-up flag, builds (or takes the shared) message and hands it to HTTP/2,
//! without a task and a channel of its own in between, and without registering anything again
//! per message.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes};
use prost::Message;
use softvpc_mapping::Feed;
use softvpc_proto::pb;
use softvpc_proto::pb::mapping_server::MappingServer;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::{Request, Response, Status};

use super::fanout::ConnClock;
use super::service::MappingService;
use super::{Flag, MappingProjection};
use crate::trust::{Refusal, Trust};
use softvpc_trust::identity::PeerIdentity;

/// The gRPC path of `Watch`.
pub const WATCH_PATH: &str = "/softvpc.mapping.v1.Mapping/Watch";

/// A watch message, encoded once and shared by every stream that sends it.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The revision the agent reaches by applying it.
    pub revision: u64,
    /// Whether it is a Snapshot.
    pub snapshot: bool,
    /// Its protobuf encoding (a `pb::WatchResponse`).
    pub bytes: Bytes,
}

impl Encoded {
    /// Encodes `m`.
    pub fn new(m: pb::WatchResponse) -> Self {
        Encoded {
            revision: m.revision,
            snapshot: matches!(m.kind, Some(pb::watch_response::Kind::Snapshot(_))),
            bytes: Bytes::from(m.encode_to_vec()),
        }
    }

    /// The message again (for the generated service's `watch`, which streams messages).
    pub fn decode(&self) -> Result<pb::WatchResponse, Status> {
        pb::WatchResponse::decode(self.bytes.clone())
            .map_err(|e| Status::internal(format!("re-decoding a watch message: {e}")))
    }
}

/// A watch's response stream: encoded messages.
pub type EncodedStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<Encoded, Status>> + Send + 'static>>;

/// Decodes `WatchRequest`s with prost and writes [`Encoded`] messages' bytes as they are.
#[derive(Debug, Default, Clone, Copy)]
pub struct WatchCodec;

/// [`WatchCodec`]'s encoder: copies the shared bytes into the frame.
#[derive(Debug, Default, Clone, Copy)]
pub struct EncodedEncoder;

impl Encoder for EncodedEncoder {
    type Item = Encoded;
    type Error = Status;

    fn encode(&mut self, item: Encoded, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item.bytes);
        Ok(())
    }
}

impl Codec for WatchCodec {
    type Encode = Encoded;
    type Decode = pb::WatchRequest;
    type Encoder = EncodedEncoder;
    type Decoder = tonic_prost::ProstDecoder<pb::WatchRequest>;

    fn encoder(&mut self) -> EncodedEncoder {
        EncodedEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

/// The mapping service's routes: `Watch` through [`WatchCodec`], the rest through the generated
/// `MappingServer`.
#[derive(Clone)]
pub struct MappingRoutes {
    service: Arc<MappingService>,
    generated: MappingServer<MappingService>,
}

impl MappingRoutes {
    /// The routes of `service`.
    pub fn new(service: MappingService) -> Self {
        let service = Arc::new(service);
        let generated = MappingServer::from_arc(service.clone())
            .max_decoding_message_size(softvpc_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(softvpc_proto::MAX_MESSAGE_BYTES);
        MappingRoutes { service, generated }
    }
}

impl tonic::server::NamedService for MappingRoutes {
    const NAME: &'static str = softvpc_proto::pb::mapping_server::SERVICE_NAME;
}

/// `Watch` for [`tonic::server::Grpc::server_streaming`].
struct WatchRoute(Arc<MappingService>);

impl tonic::server::ServerStreamingService<pb::WatchRequest> for WatchRoute {
    type Response = Encoded;
    type ResponseStream = EncodedStream;
    type Future = BoxFuture<Response<EncodedStream>, Status>;

    fn call(&mut self, request: Request<pb::WatchRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.open_watch(request).await })
    }
}

impl<B> Service<http::Request<B>> for MappingRoutes
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != WATCH_PATH {
            return self.generated.call(req);
        }
        let route = WatchRoute(self.service.clone());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(WatchCodec).apply_max_message_size_config(
                Some(softvpc_proto::MAX_MESSAGE_BYTES),
                Some(softvpc_proto::MAX_MESSAGE_BYTES),
            );
            Ok(grpc.server_streaming(route, req).await)
        })
    }
}

/// Logs the end of a watch once, whichever way it ends (its stream dropped by HTTP/2 when the
/// agent goes away, or ended here).
pub(super) struct ClosedLog(pub(super) String);

impl Drop for ClosedLog {
    fn drop(&mut self) {
        tracing::info!(host = %self.0, "watch closed");
    }
}

/// One open watch: its feed and what ends or wakes it.
///
/// It is the stream itself (a [`tokio_stream::Stream`]), polled by its HTTP/2 stream's task. A
/// message costs that task one poll that takes the host's [`Flag`] and hands the message over,
/// and one that finds nothing to do: the rare events (heartbeat, shutdown, certificate expiry,
/// revocation) are polled only when one of them woke the stream, through a waker of their own
/// ([`Self::slow_woken`]) that stays the same, so their registrations are kept, not made again
/// per message.
pub(super) struct WatchState {
    pub(super) feed: Feed,
    pub(super) projection: Arc<MappingProjection>,
    /// The host's wake-up signal (revisions that concern it).
    pub(super) wake: Arc<Flag>,
    pub(super) heartbeat: tokio::time::Interval,
    /// Resolves when the server shuts down.
    pub(super) closed: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// When the certificate the watch was opened with expires.
    pub(super) expiry: Pin<Box<tokio::time::Sleep>>,
    pub(super) trust: Arc<Trust>,
    pub(super) peer: PeerIdentity,
    /// The next change of the revocations (with the receiver again, for the one after).
    pub(super) revocations: Revocations,
    /// Raised when one of the rare events above woke the stream (raised at the start, so the
    /// first poll registers them).
    pub(super) slow_woken: Arc<Flag>,
    /// What to send before waiting again (the first message; a revoked host's last ones).
    pub(super) queued: VecDeque<Result<Encoded, Status>>,
    /// Nothing more after `queued`.
    pub(super) ended: bool,
    /// The connection's write clock (the fan-out times).
    pub(super) clock: Option<Arc<ConnClock>>,
    pub(super) _closed_log: ClosedLog,
}

/// The next change of the trust's revocations, and its receiver for the one after.
pub(super) type Revocations = Pin<
    Box<
        dyn Future<
                Output = (
                    Result<(), tokio::sync::watch::error::RecvError>,
                    tokio::sync::watch::Receiver<u64>,
                ),
            > + Send,
    >,
>;

/// Waits for the next change of `rx`.
pub(super) fn next_revocation(mut rx: tokio::sync::watch::Receiver<u64>) -> Revocations {
    Box::pin(async move { (rx.changed().await, rx) })
}

impl WatchState {
    /// The stream of this watch's messages.
    pub(super) fn into_stream(self) -> EncodedStream {
        Box::pin(self)
    }

    /// Polls the rare events with their own waker (which raises [`Self::slow_woken`]), each
    /// until it is pending again; queues what they call for. False when the watch ends now.
    fn poll_slow(&mut self) -> bool {
        let waker = std::task::Waker::from(self.slow_woken.clone());
        let mut cx = Context::from_waker(&waker);
        if self.closed.as_mut().poll(&mut cx).is_ready() {
            return false;
        }
        if self.expiry.as_mut().poll(&mut cx).is_ready() {
            let r = Refusal {
                code: tonic::Code::Unauthenticated,
                reason: "the host certificate expired".into(),
            };
            tracing::info!(host = %self.peer.host, "watch ended: certificate expired");
            self.queued.push_back(Err(r.status()));
            self.ended = true;
            return true;
        }
        while let Poll::Ready((changed, rx)) = self.revocations.as_mut().poll(&mut cx) {
            if changed.is_err() {
                return false;
            }
            self.revocations = next_revocation(rx);
            if let Err(r) = self.trust.check(&self.peer) {
                // What was committed before the revocation still reaches the host
                // (remove-host --force terminates its instances first), so its agent
                // removes them instead of keeping them for a server that is gone.
                if let Some(m) = self.next_message() {
                    self.queued.push_back(Ok(m));
                }
                tracing::warn!(host = %self.peer.host, reason = %r.reason, "watch ended: host revoked");
                self.queued.push_back(Err(r.status()));
                self.ended = true;
                return true;
            }
        }
        let mut beat = false;
        while self.heartbeat.poll_tick(&mut cx).is_ready() {
            beat = true;
        }
        if beat && self.projection.revision() != self.feed.revision() {
            self.queue_next();
        }
        true
    }

    fn queue_next(&mut self) {
        if let Some(m) = self.next_message() {
            if m.snapshot {
                tracing::debug!(host = %self.feed.host_id(), revision = m.revision, "watch: snapshot");
            }
            self.queued.push_back(Ok(m));
        }
    }

    /// The feed's next message, shared with every feed that sends the same one. The log read
    /// is a cheap copy; the message is built (once) without any lock held.
    fn next_message(&mut self) -> Option<Encoded> {
        let read = self.projection.read(self.feed.revision());
        self.feed
            .next_shared(&read, self.projection.shared(), Encoded::new)
    }

    /// A message of `revision` goes to HTTP/2: it counts as written at the connection's next
    /// socket write (or now, without a clock).
    fn handed(&self, revision: u64) {
        match &self.clock {
            Some(c) => c.handed(revision),
            None => self
                .projection
                .fanout_times()
                .written(revision, std::time::Instant::now()),
        }
    }
}

impl tokio_stream::Stream for WatchState {
    type Item = Result<Encoded, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.queued.pop_front() {
                if let Ok(m) = &item {
                    this.handed(m.revision);
                }
                return Poll::Ready(Some(item));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            if this.slow_woken.take(cx.waker()) {
                if !this.poll_slow() {
                    return Poll::Ready(None); // the server is shutting down
                }
                if !this.queued.is_empty() || this.ended {
                    continue;
                }
            }
            if this.wake.take(cx.waker()) {
                this.queue_next();
                if !this.queued.is_empty() {
                    continue;
                }
            }
            return Poll::Pending;
        }
    }
}
