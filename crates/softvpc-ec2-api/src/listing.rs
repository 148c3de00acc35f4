//! Large Describe answers sent as they are written: a [`Listing`] is the selection (the ids the
//! page holds, taken from one state snapshot) and a renderer per item, and the HTTP body is
//! encoded item by item into chunks ([`softvpc_ec2_protocol::encode_streamed`]) on a blocking
//! thread that waits while the client reads (a bounded channel). So an answer's memory is one
//! item's tree and a few chunks, whatever the number of items or of concurrent readers, instead
//! of the whole response tree and its XML (about 10 KB per ENI: 100 MB for 10,000). The bytes
//! are the same as the whole document's; only the framing differs (HTTP/1.1 chunked, no
//! `Content-Length`).

use std::sync::Arc;

use softvpc_ec2_protocol::Value;

/// Listings with more items than this are streamed; smaller ones are encoded whole (and keep
/// their `Content-Length`).
pub const STREAM_MIN_ITEMS: usize = 256;

/// The environment variable that replaces [`STREAM_MIN_ITEMS`] (read once), so a benchmark can
/// compare whole answers with streamed ones on the same binary (`softvpc-bench-api --whole`).
pub const STREAM_MIN_ITEMS_ENV: &str = "SOFTVPC_API_STREAM_MIN_ITEMS";

/// Listings with more items than this are streamed: [`STREAM_MIN_ITEMS`], or
/// [`STREAM_MIN_ITEMS_ENV`] when set to a number.
pub fn stream_min_items() -> usize {
    static MIN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| {
        std::env::var(STREAM_MIN_ITEMS_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(STREAM_MIN_ITEMS)
    })
}

/// Bytes per chunk of a streamed answer.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Chunks written ahead of the client (the channel's bound): with [`CHUNK_BYTES`], at most about
/// 256 KiB per answer in flight.
pub const CHUNKS_AHEAD: usize = 4;

/// A Describe answer whose list member is rendered one item at a time.
pub struct Listing {
    /// Every other output member (`NextToken`).
    pub head: Value,
    /// The list member's model name (`NetworkInterfaces`).
    pub member: &'static str,
    /// How many items the list holds (what decides streaming; a listing of groups may count
    /// their members instead, as DescribeInstances counts instances, not reservations).
    pub len: usize,
    /// The items' trees, produced on demand.
    pub items: Box<dyn Iterator<Item = Value> + Send>,
}

impl Listing {
    /// The listing of `items`, each rendered by `render` when its turn comes.
    pub fn new<T: Send + Sync + 'static>(
        head: Value,
        member: &'static str,
        items: Vec<Arc<T>>,
        mut render: impl FnMut(&T) -> Value + Send + 'static,
    ) -> Listing {
        Listing {
            head,
            member,
            len: items.len(),
            items: Box::new(items.into_iter().map(move |i| render(&i))),
        }
    }

    /// The whole output tree (for small answers, and for callers that want the document).
    pub fn into_value(self) -> Value {
        let Listing {
            head,
            member,
            items,
            ..
        } = self;
        head.with(member, Value::List(items.collect()))
    }

    /// Encodes the answer of `operation` into `sink` in chunks; `false` from `sink` stops it.
    /// A tree that does not fit the model is logged and ends the answer early in debug builds
    /// (a truncated document, which the client refuses), and leaves the member out in release
    /// builds, as whole answers do.
    pub fn write(
        mut self,
        operation: &str,
        request_id: &str,
        sink: &mut dyn FnMut(String) -> bool,
    ) {
        if let Err(e) = softvpc_ec2_protocol::encode_streamed(
            operation,
            &self.head,
            self.member,
            &mut self.items,
            request_id,
            cfg!(debug_assertions),
            CHUNK_BYTES,
            sink,
        ) {
            tracing::error!(action = operation, error = %e, "streamed response does not fit the model");
        }
    }
}
