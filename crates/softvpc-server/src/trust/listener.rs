//! A TLS listener for axum: connections come from [`softvpc_trust::tls::accept`] (handshakes
//! run concurrently, refused ones are logged with their reason).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// Accepted, handshaken TLS connections, as an [`axum::serve::Listener`].
pub struct TlsListener {
    rx: mpsc::Receiver<TlsStream<TcpStream>>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts TLS connections on `listener` with `config`; `what` names the listener in logs.
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        what: &'static str,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(TlsListener {
            rx: softvpc_trust::tls::accept(listener, config, what),
            local,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.rx.recv().await {
                Some(s) => match s.get_ref().0.peer_addr() {
                    Ok(peer) => return (s, peer),
                    Err(_) => continue, // already gone
                },
                // The accept loop never ends while we hold the receiver.
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
