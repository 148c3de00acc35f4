//! The host side: its credentials on disk, joining with a token, renewing, and the mutual-TLS
//! channel to the mapping service.
//!
//! A host's state directory holds `host.key` (mode 0600, never leaves the host), `host.crt`,
//! `ca.crt` and `joined-token` (the id of the token it joined with, so a restart with the same
//! `--join-token` reuses the certificate instead of spending a used token again).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use softvpc_proto::pb;
use softvpc_proto::pb::mapping_client::MappingClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::token::JoinToken;

/// A host's certificate, key and CA.
#[derive(Clone)]
pub struct Credentials {
    /// The host name the certificate is bound to.
    pub host: String,
    /// The host's certificate, PEM.
    pub cert_pem: String,
    /// The host's private key, PEM.
    pub key_pem: String,
    /// The CA's certificate, PEM (trusted for the server).
    pub ca_pem: String,
    /// Seconds since the Unix epoch.
    pub not_before: u64,
    /// Seconds since the Unix epoch.
    pub not_after: u64,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("host", &self.host)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn files(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    (
        dir.join("host.crt"),
        dir.join("host.key"),
        dir.join("ca.crt"),
        dir.join("joined-token"),
    )
}

impl Credentials {
    fn from_pems(cert_pem: String, key_pem: String, ca_pem: String) -> anyhow::Result<Self> {
        let der = crate::ca::pem_to_der(&cert_pem)?;
        let id = crate::identity::parse(&der).map_err(|e| anyhow::anyhow!(e))?;
        crate::ca::pem_to_der(&ca_pem).context("the CA certificate")?;
        Ok(Credentials {
            host: id.host,
            cert_pem,
            key_pem,
            ca_pem,
            not_before: id.not_before,
            not_after: id.not_after,
        })
    }

    /// The credentials in `dir`, if it holds any, with the id of the token they came from.
    pub fn load(dir: &Path) -> anyhow::Result<Option<(Credentials, String)>> {
        let (crt, key, ca, joined) = files(dir);
        if !crt.exists() || !key.exists() || !ca.exists() {
            return Ok(None);
        }
        let read = |p: &Path| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        let creds = Self::from_pems(read(&crt)?, read(&key)?, read(&ca)?)
            .with_context(|| format!("loading the host credentials in {}", dir.display()))?;
        let token_id = std::fs::read_to_string(&joined)
            .unwrap_or_default()
            .trim()
            .to_string();
        Ok(Some((creds, token_id)))
    }

    /// Writes the credentials to `dir` (the key first, mode 0600; each file atomically).
    pub fn save(&self, dir: &Path, token_id: Option<&str>) -> anyhow::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let (crt, key, ca, joined) = files(dir);
        crate::write_file(&key, self.key_pem.as_bytes(), 0o600)?;
        crate::write_file(&crt, self.cert_pem.as_bytes(), 0o644)?;
        crate::write_file(&ca, self.ca_pem.as_bytes(), 0o644)?;
        if let Some(id) = token_id {
            crate::write_file(&joined, format!("{id}\n").as_bytes(), 0o600)?;
        }
        Ok(())
    }

    /// When to renew: two thirds into the certificate's life, counted from its issue (its
    /// validity starts [`crate::ca::SKEW`] earlier).
    pub fn renew_at(&self) -> u64 {
        let issued = (self.not_before + crate::ca::SKEW.as_secs()).min(self.not_after);
        issued + (self.not_after - issued) * 2 / 3
    }

    /// Whether the certificate's validity has ended (by the system clock).
    pub fn expired(&self) -> bool {
        crate::now_secs() >= self.not_after
    }
}

/// `https://HOST:PORT` (or `HOST:PORT`) as an endpoint with the keep-alives agents use. Plain
/// `http://` is refused: the mapping service speaks TLS only.
pub fn endpoint(url: &str) -> anyhow::Result<Endpoint> {
    let url = if url.contains("://") {
        url.to_string()
    } else {
        format!("https://{url}")
    };
    if !url.starts_with("https://") {
        bail!("the mapping service URL must be https:// (it speaks mutual TLS only), got {url:?}");
    }
    Ok(Endpoint::from_shared(url.clone())
        .with_context(|| format!("bad mapping service URL {url:?}"))?
        .connect_timeout(Duration::from_secs(3))
        // Watch messages are small and latency-bound: no Nagle delay (tonic's default too).
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(10)))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true))
}

/// A channel that presents `creds` and trusts only their CA (connects lazily).
pub fn channel(url: &str, creds: &Credentials) -> anyhow::Result<Channel> {
    let tls = ClientTlsConfig::new()
        .domain_name(crate::SERVER_NAME)
        .ca_certificate(Certificate::from_pem(&creds.ca_pem))
        .identity(Identity::from_pem(&creds.cert_pem, &creds.key_pem));
    Ok(endpoint(url)?
        .tls_config(tls)
        .context("TLS configuration")?
        .connect_lazy())
}

/// A channel without a client certificate that trusts the server only if its CA hashes to
/// `ca_hash` (first contact, for Join).
pub fn pinned_channel(url: &str, ca_hash: [u8; 32]) -> anyhow::Result<Channel> {
    let tls = ClientTlsConfig::new().domain_name(crate::SERVER_NAME);
    Ok(endpoint(url)?
        .tls_config_with_verifier(tls, crate::tls::PinnedCaVerifier::new(ca_hash))
        .context("TLS configuration")?
        .connect_lazy())
}

fn credentials_from(
    host: &str,
    key_pem: String,
    resp: pb::CertificateResponse,
    ca_hash: Option<[u8; 32]>,
) -> anyhow::Result<Credentials> {
    if let Some(hash) = ca_hash {
        let ca = crate::ca::pem_to_der(&resp.ca_pem).context("the server's CA certificate")?;
        if crate::token::cert_hash(&ca) != hash {
            bail!("the server sent a CA certificate that is not the one the join token names");
        }
    }
    let creds = Credentials::from_pems(resp.certificate_pem, key_pem, resp.ca_pem)?;
    if creds.host != host {
        bail!(
            "the server issued a certificate for {:?}, not {host:?}",
            creds.host
        );
    }
    Ok(creds)
}

/// Joins the mapping service at `url` as `host` with `token`: a new key, a certificate for it.
pub async fn join(url: &str, token: &JoinToken, host: &str) -> anyhow::Result<Credentials> {
    let mut client = MappingClient::new(pinned_channel(url, token.ca_hash)?);
    let (key_pem, csr_pem) = crate::ca::new_key_and_csr(host)?;
    let resp = client
        .join(pb::JoinRequest {
            token: token.to_string(),
            host_name: host.to_string(),
            csr_pem,
        })
        .await
        .map_err(|s| anyhow::Error::new(s).context("Join"))?
        .into_inner();
    credentials_from(host, key_pem, resp, Some(token.ca_hash))
}

/// A new certificate (and key) for the host of `creds`, asked for with `creds`.
pub async fn renew(url: &str, creds: &Credentials) -> anyhow::Result<Credentials> {
    let mut client = MappingClient::new(channel(url, creds)?);
    let (key_pem, csr_pem) = crate::ca::new_key_and_csr(&creds.host)?;
    let resp = client
        .renew(pb::RenewRequest { csr_pem })
        .await
        .map_err(|s| anyhow::Error::new(s).context("Renew"))?
        .into_inner();
    let ca = crate::ca::pem_to_der(&creds.ca_pem)?;
    credentials_from(
        &creds.host,
        key_pem,
        resp,
        Some(crate::token::cert_hash(&ca)),
    )
}

/// The host's credentials: those in `dir` if they are for `host`, unexpired, and (when a token
/// is given) came from that same token; otherwise joins with `token` and saves the new ones.
pub async fn ensure(
    url: &str,
    dir: &Path,
    host: &str,
    token: Option<&JoinToken>,
) -> anyhow::Result<Credentials> {
    if let Some((creds, joined)) = Credentials::load(dir)? {
        let same_token = token.is_none_or(|t| t.id_hex() == joined);
        if creds.host == host && !creds.expired() && same_token {
            tracing::info!(dir = %dir.display(), not_after = creds.not_after, "using the stored host certificate");
            return Ok(creds);
        }
        if creds.host != host {
            tracing::warn!(stored = %creds.host, host, "stored certificate is for another host name");
        } else if creds.expired() {
            tracing::warn!(
                not_after = creds.not_after,
                "stored certificate has expired"
            );
        }
    }
    let Some(token) = token else {
        bail!(
            "no valid host certificate in {}: join with --join-token (from `softvpc server join-token --host {host}`)",
            dir.display()
        );
    };
    tracing::info!(token = %token.id_hex(), host, "joining");
    let creds = join(url, token, host).await?;
    creds.save(dir, Some(&token.id_hex()))?;
    tracing::info!(dir = %dir.display(), not_after = creds.not_after, "joined: host certificate saved");
    Ok(creds)
}
