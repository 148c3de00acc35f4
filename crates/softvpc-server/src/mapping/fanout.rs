//! When each revision's watch messages left the server: the server's own share of a change's
//! propagation, apart from the agents'.
//!
//! [`FanoutTimes`] keeps, for the newest [`KEPT`] revisions, the instant the revision was
//! committed to the mapping log (durable) and, over the watch messages that carried it, how
//! many were written and when the first and the last was written to its agent's socket. A
//! message counts as written at the first write on its connection's TCP socket after its watch
//! handed it to HTTP/2 ([`Clocked`], below TLS: so the TLS record and the `write` are the
//! server's, the rest is the network's and the agent's). The admin socket serves the figures
//! (`POST /mapping/fanout`), which `softvpc-bench-mapping` prints beside the agents' figures.

use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How many recent revisions keep their times.
pub const KEPT: usize = 4096;

struct RevisionTimes {
    revision: u64,
    committed: Instant,
    writes: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// The fan-out times of the newest revisions (see the module's documentation).
#[derive(Default)]
pub struct FanoutTimes {
    revisions: Mutex<VecDeque<RevisionTimes>>,
}

/// One revision's fan-out, as the admin socket answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RevisionFanout {
    /// The mapping revision.
    pub revision: u64,
    /// Watch messages of this revision written to agents' sockets.
    pub writes: u64,
    /// From the commit to the first write, in microseconds (None: none written).
    pub first_write_us: Option<u64>,
    /// From the commit to the last write, in microseconds (None: none written).
    pub last_write_us: Option<u64>,
}

/// `POST /mapping/fanout`: the revisions from `from` to `to` (inclusive) still kept.
#[derive(Debug, Serialize, Deserialize)]
pub struct FanoutRequest {
    /// The first revision asked for.
    pub from: u64,
    /// The last revision asked for.
    pub to: u64,
}

/// The answer to a [`FanoutRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub struct FanoutResponse {
    /// The revisions kept in that range, in order.
    pub revisions: Vec<RevisionFanout>,
}

impl FanoutTimes {
    fn lock(&self) -> MutexGuard<'_, VecDeque<RevisionTimes>> {
        // Only whole pushes and counter updates happen under the lock.
        self.revisions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Revision `revision` was committed to the mapping log at `at`.
    pub fn committed(&self, revision: u64, at: Instant) {
        let mut r = self.lock();
        if r.back().is_some_and(|b| b.revision >= revision) {
            return; // a rebuilt log starts again below: keep the first times
        }
        if r.len() == KEPT {
            r.pop_front();
        }
        r.push_back(RevisionTimes {
            revision,
            committed: at,
            writes: 0,
            first: None,
            last: None,
        });
    }

    /// A watch message of `revision` was written at `at`.
    pub fn written(&self, revision: u64, at: Instant) {
        let mut r = self.lock();
        // Almost always the newest revision: look from the back.
        if let Some(t) = r.iter_mut().rev().find(|t| t.revision <= revision) {
            if t.revision == revision {
                t.writes += 1;
                t.first.get_or_insert(at);
                t.last = Some(t.last.map_or(at, |l| l.max(at)));
            }
        }
    }

    /// The kept revisions from `from` to `to`.
    pub fn report(&self, from: u64, to: u64) -> Vec<RevisionFanout> {
        let us = |c: Instant, t: Option<Instant>| {
            t.map(|t| t.saturating_duration_since(c).as_micros() as u64)
        };
        self.lock()
            .iter()
            .filter(|t| (from..=to).contains(&t.revision))
            .map(|t| RevisionFanout {
                revision: t.revision,
                writes: t.writes,
                first_write_us: us(t.committed, t.first),
                last_write_us: us(t.committed, t.last),
            })
            .collect()
    }
}

/// One mapping connection's record of the watch messages handed to HTTP/2 and not yet seen
/// leaving by a socket write.
pub struct ConnClock {
    times: Arc<FanoutTimes>,
    any: AtomicBool,
    handed: Mutex<Vec<u64>>,
}

impl ConnClock {
    /// A watch message of `revision` was handed to HTTP/2 on this connection.
    pub fn handed(&self, revision: u64) {
        self.handed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(revision);
        self.any.store(true, Ordering::Release);
    }

    /// The socket wrote: every message handed before counts as written now.
    fn wrote(&self) {
        if !self.any.swap(false, Ordering::AcqRel) {
            return;
        }
        let handed = std::mem::take(&mut *self.handed.lock().unwrap_or_else(|e| e.into_inner()));
        let now = Instant::now();
        for revision in handed {
            self.times.written(revision, now);
        }
    }
}

/// The open mapping connections' clocks, by the agent's address (how a watch finds its own:
/// `Request::remote_addr`).
#[derive(Default)]
pub struct ConnClocks {
    times: Arc<FanoutTimes>,
    conns: Mutex<HashMap<SocketAddr, Weak<ConnClock>>>,
}

impl ConnClocks {
    /// Clocks recording into `times`.
    pub fn new(times: Arc<FanoutTimes>) -> Self {
        ConnClocks {
            times,
            conns: Mutex::default(),
        }
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<SocketAddr, Weak<ConnClock>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wraps an accepted TCP connection so its writes are timed.
    pub fn clock(self: &Arc<Self>, tcp: tokio::net::TcpStream) -> Clocked {
        let clock = Arc::new(ConnClock {
            times: self.times.clone(),
            any: AtomicBool::new(false),
            handed: Mutex::default(),
        });
        let peer = tcp.peer_addr().ok();
        if let Some(p) = peer {
            self.conns().insert(p, Arc::downgrade(&clock));
        }
        Clocked {
            tcp,
            clock,
            peer,
            clocks: Arc::downgrade(self),
        }
    }

    /// The clock of the connection from `peer`, if it is open.
    pub fn get(&self, peer: Option<SocketAddr>) -> Option<Arc<ConnClock>> {
        self.conns().get(&peer?).and_then(Weak::upgrade)
    }
}

/// An accepted mapping connection whose socket writes tell its [`ConnClock`].
pub struct Clocked {
    tcp: tokio::net::TcpStream,
    clock: Arc<ConnClock>,
    peer: Option<SocketAddr>,
    clocks: Weak<ConnClocks>,
}

impl Drop for Clocked {
    fn drop(&mut self) {
        if let (Some(p), Some(c)) = (self.peer, self.clocks.upgrade()) {
            let mut conns = c.conns();
            // A new connection from the same address may have replaced it.
            if conns
                .get(&p)
                .is_some_and(|w| w.ptr_eq(&Arc::downgrade(&self.clock)))
            {
                conns.remove(&p);
            }
        }
    }
}

impl AsyncRead for Clocked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Clocked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.wrote();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.wrote();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Clocked {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_per_revision_and_bounded() {
        let t = FanoutTimes::default();
        let c = Instant::now();
        t.committed(5, c);
        t.committed(6, c);
        t.written(5, c + Duration::from_millis(2));
        t.written(5, c + Duration::from_millis(1));
        t.written(7, c + Duration::from_millis(9)); // not committed: ignored
        let r = t.report(0, 10);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            RevisionFanout {
                revision: 5,
                writes: 2,
                first_write_us: Some(2000),
                last_write_us: Some(2000),
            }
        );
        assert_eq!(r[1].writes, 0);
        assert_eq!(r[1].last_write_us, None);
        for rev in 7..(7 + KEPT as u64) {
            t.committed(rev, c);
        }
        assert_eq!(t.report(0, u64::MAX).len(), KEPT);
        assert!(t.report(5, 6).is_empty());
    }

    #[tokio::test]
    async fn a_socket_write_marks_what_was_handed_before_it() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let times = Arc::new(FanoutTimes::default());
        let clocks = Arc::new(ConnClocks::new(times.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
        });
        let (tcp, peer) = listener.accept().await.unwrap();
        let mut conn = clocks.clock(tcp);
        let clock = clocks.get(Some(peer)).expect("registered by its peer");
        times.committed(1, Instant::now());
        clock.handed(1);
        assert_eq!(times.report(1, 1)[0].writes, 0);
        conn.write_all(b"data").await.unwrap();
        assert_eq!(times.report(1, 1)[0].writes, 1);
        client.await.unwrap();
        drop(conn);
        assert!(clocks.get(Some(peer)).is_none(), "forgotten when closed");
    }
}
