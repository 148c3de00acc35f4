//! TLS configurations (rustls, ring) and the TLS accept loop both servers use.
//!
//! - The mapping service asks every client for a certificate of the CA but does not require
//!   one: Join is the one RPC a host makes before it has a certificate; every other RPC checks
//!   the peer's certificate itself. A certificate that is presented must verify (chain to the
//!   CA, client-auth usage, inside its validity), or the handshake fails.
//! - The EC2 API over HTTPS asks for no client certificate (requests are SigV4-signed).
//! - An agent's first contact checks the server against the CA hash in its join token
//!   ([`PinnedCaVerifier`]); later ones against the CA file it then saved.
//!
//! [`accept`] runs handshakes concurrently (a slow client cannot hold up others), bounds each by
//! [`HANDSHAKE_TIMEOUT`], and logs every refused one with its reason (plain text, no or a bad
//! certificate, another CA, expired).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Longest time a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once, per listener; more wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;

fn roots(ca: &CertificateDer<'static>) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| anyhow::anyhow!("the CA certificate is not a trust anchor: {e}"))?;
    Ok(Arc::new(roots))
}

/// The mapping service's config: server `chain` and `key`; client certificates of `ca` asked
/// for, verified when given, not required (see the module doc). HTTP/2 only.
pub fn mapping_server_config(
    ca: &CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, crate::provider())
        .allow_unauthenticated()
        .build()?;
    let mut config = ServerConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// An HTTPS server's config (no client certificates; HTTP/1.1 and HTTP/2).
pub fn https_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Reads a certificate chain and a private key from PEM files (an operator's `--tls-cert`,
/// `--tls-key`).
pub fn load_pem_files(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no certificate", cert.display());
    }
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    Ok((chain, key))
}

/// Accepts TCP connections on `listener` and hands over those whose TLS handshake succeeded.
/// Ends when the receiver is dropped.
pub fn accept(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    what: &'static str,
) -> mpsc::Receiver<TlsStream<TcpStream>> {
    accept_wrapped(listener, config, what, |tcp| tcp)
}

/// Like [`accept`], running TLS over `wrap(tcp)` (e.g. a stream that times its writes) instead
/// of the accepted TCP stream itself.
pub fn accept_wrapped<S, W>(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    what: &'static str,
    wrap: W,
) -> mpsc::Receiver<TlsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    W: Fn(TcpStream) -> S + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = tx.closed() => return,
            };
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // E.g. EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "{what}: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx, io) = (acceptor.clone(), tx.clone(), wrap(tcp));
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(stream).await;
                    }
                    Ok(Err(e)) => log_refused(what, peer, &e.to_string()),
                    Err(_) => log_refused(what, peer, "TLS handshake timed out"),
                }
            });
        }
    });
    rx
}

fn log_refused(what: &str, peer: SocketAddr, reason: &str) {
    tracing::warn!(%peer, reason, "{what}: connection refused");
}

/// Verifies the server on an agent's first contact: its chain must include a certificate whose
/// SHA-256 is the join token's CA hash, and the server's certificate must verify against it
/// (as [`crate::SERVER_NAME`], server-auth usage, in its validity).
#[derive(Debug)]
pub struct PinnedCaVerifier {
    hash: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl PinnedCaVerifier {
    /// A verifier that accepts only a CA whose certificate hashes (SHA-256) to `hash`.
    pub fn new(hash: [u8; 32]) -> Arc<Self> {
        Arc::new(PinnedCaVerifier {
            hash,
            provider: crate::provider(),
        })
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| crate::token::cert_hash(c) == self.hash)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the server's CA is not the one the join token names (CA hash mismatch)".into(),
                )
            })?;
        let roots =
            roots(&ca.clone().into_owned()).map_err(|e| rustls::Error::General(e.to_string()))?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots,
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection `accept` hands over has Nagle's algorithm off (`TCP_NODELAY`): the
    /// mapping service's small watch messages would otherwise wait up to 40 ms for the
    /// receiver's delayed ACK (issue 12 measured a 100-agent p50 of 39 ms without it, 6 ms with).
    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let ca = crate::ca::Ca::generate().unwrap();
        let (chain, key) = ca.issue_server(&[]).unwrap();
        let config = https_server_config(chain, key).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted = accept(listener, config, "test");

        let mut roots = RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        for _ in 0..3 {
            let tcp = TcpStream::connect(addr).await.unwrap();
            // The client's socket keeps the kernel's default (Nagle on), so what is checked
            // below is the server's doing.
            assert!(!tcp.nodelay().unwrap());
            let name = ServerName::try_from(crate::SERVER_NAME).unwrap();
            let _tls = connector.connect(name, tcp).await.unwrap();
            let stream = tokio::time::timeout(Duration::from_secs(30), accepted.recv())
                .await
                .expect("a connection within 30 s")
                .expect("the accept loop runs");
            assert!(stream.get_ref().0.nodelay().unwrap(), "TCP_NODELAY not set");
        }
    }
}
