//! The server's side of trust between hosts and the control plane.
//!
//! - [`Trust`]: the CA (`<data-dir>/ca/`), the join tokens it handed out and the certificates it
//!   issued per host (`<data-dir>/trust.json`, written atomically, mode 0600). A host is
//!   *enrolled* while it holds an issued, unexpired certificate that was not revoked; every RPC
//!   but Join needs one.
//! - [`admin`]: the local admin socket (`<data-dir>/admin/admin.sock`, directory mode 0700) that
//!   `softvpc server join-token` and `softvpc server remove-host` talk to.
//! - [`listener`]: the EC2 API over HTTPS (axum over the TLS accept loop).

pub mod admin;
pub mod listener;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use softvpc_trust::ca::{Ca, Issued};
use softvpc_trust::identity::{self, PeerIdentity};
use softvpc_trust::now_secs;
use softvpc_trust::token::JoinToken;
use tokio::sync::watch;

/// Default lifetime of a host certificate (agents renew at two thirds).
pub const DEFAULT_HOST_CERT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default and longest lifetime of a join token.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// The longest lifetime of a join token.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Used and expired tokens are kept this long (so a reuse is logged as such), then forgotten.
const TOKEN_MEMORY: u64 = 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenRecord {
    host: String,
    /// SHA-256 of the secret (hex); the secret itself is never stored.
    secret_sha256: String,
    expires: u64,
    /// When it was traded for a certificate.
    used: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Enrollment {
    /// Serial (hex) -> expiry of every unexpired certificate issued to the host.
    certs: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TrustFile {
    tokens: BTreeMap<String, TokenRecord>,
    hosts: BTreeMap<String, Enrollment>,
}

/// Why a request was refused: the gRPC code and the reason (logged, and told to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The gRPC status code the client gets.
    pub code: tonic::Code,
    /// Why (logged, and told to the client).
    pub reason: String,
}

impl Refusal {
    fn denied(reason: impl Into<String>) -> Self {
        Refusal {
            code: tonic::Code::PermissionDenied,
            reason: reason.into(),
        }
    }

    fn unauthenticated(reason: impl Into<String>) -> Self {
        Refusal {
            code: tonic::Code::Unauthenticated,
            reason: reason.into(),
        }
    }

    /// The gRPC status the client gets.
    pub fn status(&self) -> tonic::Status {
        tonic::Status::new(self.code, self.reason.clone())
    }
}

/// The CA, the tokens and the enrollments.
pub struct Trust {
    ca: Ca,
    /// None: memory only (tests).
    path: Option<PathBuf>,
    /// Server replicas: the trust state lives here (shared by all) instead of `path`, so a
    /// token made on one replica joins on another, and a host enrolled or revoked on one is
    /// so on all. The version of `file` it was read at.
    shared: Option<(
        Box<dyn softvpc_store::SharedDoc>,
        std::sync::atomic::AtomicI64,
    )>,
    file: Mutex<TrustFile>,
    /// Bumped at every revocation: open watches re-check their certificate.
    revocations: watch::Sender<u64>,
    host_cert_ttl: Duration,
}

impl Trust {
    /// Loads (or creates) the CA and the trust state in `data_dir`.
    pub fn open(data_dir: &Path, host_cert_ttl: Duration) -> anyhow::Result<Trust> {
        let ca = Ca::load_or_create(&data_dir.join("ca"))?;
        let path = data_dir.join("trust.json");
        let file = if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        } else {
            TrustFile::default()
        };
        Ok(Self::with(ca, Some(path), file, host_cert_ttl))
    }

    /// A new CA and trust state in memory (tests).
    pub fn ephemeral(host_cert_ttl: Duration) -> anyhow::Result<Trust> {
        Ok(Self::with(
            Ca::generate()?,
            None,
            TrustFile::default(),
            host_cert_ttl,
        ))
    }

    /// The same trust kept in `doc`, shared by every server replica (the first replica's
    /// local state seeds it).
    pub fn shared(mut self, doc: Box<dyn softvpc_store::SharedDoc>) -> anyhow::Result<Trust> {
        let (bytes, version) = doc.read().context("reading the shared trust state")?;
        let version = match bytes {
            Some(b) => {
                *self.file.get_mut().unwrap_or_else(|e| e.into_inner()) =
                    serde_json::from_slice(&b).context("parsing the shared trust state")?;
                version
            }
            None => {
                let text = serde_json::to_vec_pretty(&*self.lock())?;
                match doc.write_if(&text, 0)? {
                    Some(v) => v,
                    // Another replica seeded it meanwhile: take theirs.
                    None => return self.shared(doc),
                }
            }
        };
        self.shared = Some((doc, version.into()));
        Ok(self)
    }

    /// Re-reads the shared trust state (replicas) if another replica changed it; a change
    /// wakes the open watches so they check their certificates again.
    pub fn refresh(&self) {
        let Some((doc, version)) = &self.shared else {
            return;
        };
        let (bytes, v) = match doc.read() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "reading the shared trust state failed");
                return;
            }
        };
        if v == version.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let Some(parsed) = bytes.and_then(|b| serde_json::from_slice::<TrustFile>(&b).ok()) else {
            return;
        };
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = parsed;
        version.store(v, std::sync::atomic::Ordering::SeqCst);
        self.revocations.send_modify(|n| *n += 1);
    }

    fn with(ca: Ca, path: Option<PathBuf>, file: TrustFile, host_cert_ttl: Duration) -> Trust {
        Trust {
            ca,
            path,
            shared: None,
            file: Mutex::new(file),
            revocations: watch::channel(0).0,
            host_cert_ttl,
        }
    }

    /// The server's CA.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrustFile> {
        // Replicas: decide on what every replica has written.
        self.refresh();
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `file` (all or nothing) before a change is acted on.
    fn persist(&self, file: &TrustFile) -> Result<(), Refusal> {
        let text = serde_json::to_vec_pretty(file).map_err(|e| Refusal {
            code: tonic::Code::Internal,
            reason: e.to_string(),
        })?;
        if let Some((doc, version)) = &self.shared {
            let v = version.load(std::sync::atomic::Ordering::SeqCst);
            return match doc.write_if(&text, v) {
                Ok(Some(new)) => {
                    version.store(new, std::sync::atomic::Ordering::SeqCst);
                    Ok(())
                }
                Ok(None) => Err(Refusal {
                    code: tonic::Code::Unavailable,
                    reason: "the trust state changed on another server replica; retry".into(),
                }),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot write the shared trust state");
                    Err(Refusal {
                        code: tonic::Code::Unavailable,
                        reason: "the trust state could not be stored".into(),
                    })
                }
            };
        }
        let Some(path) = &self.path else {
            return Ok(());
        };
        softvpc_trust::write_file(path, &text, 0o600).map_err(|e| {
            tracing::error!(error = %e, path = %path.display(), "cannot write the trust state");
            Refusal {
                code: tonic::Code::Internal,
                reason: "the trust state could not be stored".into(),
            }
        })
    }

    /// A new single-use join token for `host`, valid for `ttl`.
    pub fn create_token(&self, host: &str, ttl: Duration) -> Result<(JoinToken, u64), String> {
        if !identity::valid_host_name(host) {
            return Err(format!(
                "invalid host name {host:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
            ));
        }
        if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
            return Err(format!(
                "a token lives between 1 second and {} hours",
                MAX_TOKEN_TTL.as_secs() / 3600
            ));
        }
        let token = JoinToken::generate(self.ca.hash());
        let now = now_secs();
        let expires = now + ttl.as_secs();
        let mut file = self.lock();
        let mut next = file.clone();
        next.tokens.retain(|_, t| {
            t.expires + TOKEN_MEMORY > now && t.used.is_none_or(|u| u + TOKEN_MEMORY > now)
        });
        next.tokens.insert(
            token.id_hex(),
            TokenRecord {
                host: host.to_string(),
                secret_sha256: token.secret_digest(),
                expires,
                used: None,
            },
        );
        self.persist(&next).map_err(|r| r.reason)?;
        *file = next;
        tracing::info!(host, token = %token.id_hex(), expires, "join token created");
        Ok((token, expires))
    }

    /// Trades a join token for a certificate for `host` over the key of `csr_pem`. The token
    /// must be known, unused, unexpired and made for `host`; it is spent only on success. A
    /// join replaces the host's earlier certificates.
    pub fn join(&self, token: &str, host: &str, csr_pem: &str) -> Result<Issued, Refusal> {
        let token: JoinToken = token
            .parse()
            .map_err(|e| Refusal::unauthenticated(format!("malformed join token: {e}")))?;
        let id = token.id_hex();
        let now = now_secs();
        let mut file = self.lock();
        let rec = file
            .tokens
            .get(&id)
            .filter(|t| t.secret_sha256 == token.secret_digest())
            .ok_or_else(|| Refusal::unauthenticated(format!("unknown join token {id}")))?;
        if rec.used.is_some() {
            return Err(Refusal::unauthenticated(format!(
                "join token {id} was already used"
            )));
        }
        if now >= rec.expires {
            return Err(Refusal::unauthenticated(format!(
                "join token {id} has expired"
            )));
        }
        if rec.host != host {
            return Err(Refusal::denied(format!(
                "join token {id} is for host {:?}, not {host:?}",
                rec.host
            )));
        }
        let issued = self
            .ca
            .issue_host(csr_pem, host, self.host_cert_ttl)
            .map_err(|e| Refusal {
                code: tonic::Code::InvalidArgument,
                reason: format!("{e:#}"),
            })?;
        let mut next = file.clone();
        if let Some(t) = next.tokens.get_mut(&id) {
            t.used = Some(now);
        }
        let mut enrollment = Enrollment::default();
        enrollment
            .certs
            .insert(issued.serial.clone(), issued.not_after);
        next.hosts.insert(host.to_string(), enrollment);
        self.persist(&next)?;
        *file = next;
        drop(file);
        // Certificates issued before this join no longer count.
        self.revocations.send_modify(|n| *n += 1);
        Ok(issued)
    }

    /// The enrolled host behind a connection's client certificate chain.
    pub fn authenticate(
        &self,
        certs: Option<&[CertificateDer<'static>]>,
    ) -> Result<PeerIdentity, Refusal> {
        let Some(leaf) = certs.and_then(|c| c.first()) else {
            return Err(Refusal::unauthenticated(
                "a client certificate is required (join with a token first)",
            ));
        };
        let peer = identity::parse(leaf).map_err(Refusal::unauthenticated)?;
        self.check(&peer)?;
        Ok(peer)
    }

    /// Whether `peer`'s certificate is still one the server issued to it and has not revoked.
    pub fn check(&self, peer: &PeerIdentity) -> Result<(), Refusal> {
        if now_secs() >= peer.not_after {
            return Err(Refusal::unauthenticated(format!(
                "the certificate of host {:?} has expired",
                peer.host
            )));
        }
        let file = self.lock();
        match file.hosts.get(&peer.host) {
            None => Err(Refusal::denied(format!(
                "host {:?} is not enrolled (removed, or never joined)",
                peer.host
            ))),
            Some(e) if !e.certs.contains_key(&peer.serial) => Err(Refusal::denied(format!(
                "certificate {} of host {:?} is revoked or was not issued by this server",
                peer.serial, peer.host
            ))),
            Some(_) => Ok(()),
        }
    }

    /// A new certificate for an authenticated host.
    pub fn renew(&self, peer: &PeerIdentity, csr_pem: &str) -> Result<Issued, Refusal> {
        self.check(peer)?;
        let issued = self
            .ca
            .issue_host(csr_pem, &peer.host, self.host_cert_ttl)
            .map_err(|e| Refusal {
                code: tonic::Code::InvalidArgument,
                reason: format!("{e:#}"),
            })?;
        let now = now_secs();
        let mut file = self.lock();
        let mut next = file.clone();
        let Some(e) = next.hosts.get_mut(&peer.host) else {
            return Err(Refusal::denied("host removed meanwhile"));
        };
        e.certs.retain(|_, exp| *exp > now);
        e.certs.insert(issued.serial.clone(), issued.not_after);
        self.persist(&next)?;
        *file = next;
        Ok(issued)
    }

    /// Revokes every certificate and token of `host`. Returns whether it was enrolled.
    pub fn revoke(&self, host: &str) -> Result<bool, String> {
        let mut file = self.lock();
        let mut next = file.clone();
        let was = next.hosts.remove(host).is_some();
        next.tokens.retain(|_, t| t.host != host);
        self.persist(&next).map_err(|r| r.reason)?;
        *file = next;
        drop(file);
        self.revocations.send_modify(|n| *n += 1);
        tracing::warn!(
            host,
            "host revoked: its certificates are no longer accepted"
        );
        Ok(was)
    }

    /// Woken at every revocation (and every join, which replaces a host's certificates).
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// The mapping service's TLS config (a fresh server certificate for `names`).
    pub fn mapping_tls(&self, names: &[String]) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let (chain, key) = self.ca.issue_server(names)?;
        softvpc_trust::tls::mapping_server_config(self.ca.cert_der(), chain, key)
    }

    /// An HTTPS config with a server certificate of this CA for `names`.
    pub fn https_tls(&self, names: &[String]) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let (chain, key) = self.ca.issue_server(names)?;
        softvpc_trust::tls::https_server_config(chain, key)
    }

    /// The certificate and key of a host certificate issued now without a token and recorded
    /// as enrolled (tests: a host that joined, without the round trip).
    pub fn enroll_for_tests(&self, host: &str, from_now: i64, ttl: Duration) -> (Issued, String) {
        let (issued, key) = self
            .ca
            .issue_host_with_key(host, from_now, ttl)
            .expect("issuing a test certificate");
        let mut file = self.lock();
        file.hosts
            .entry(host.to_string())
            .or_default()
            .certs
            .insert(issued.serial.clone(), issued.not_after);
        (issued, key)
    }
}

/// Parses a duration as `90`, `90s`, `15m`, `2h` or `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?}: use e.g. 90s, 15m, 2h, 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("bad duration {s:?}: use e.g. 90s, 15m, 2h, 7d")),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr() -> String {
        softvpc_trust::ca::new_key_and_csr("x").unwrap().1
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn tokens_are_single_use_and_bound_to_their_host() {
        let t = Trust::ephemeral(Duration::from_secs(3600)).unwrap();
        let (tok, _) = t.create_token("host-1", DEFAULT_TOKEN_TTL).unwrap();
        let s = tok.to_string();
        let wrong = t.join(&s, "host-2", &csr()).unwrap_err();
        assert_eq!(wrong.code, tonic::Code::PermissionDenied, "{wrong:?}");
        let issued = t.join(&s, "host-1", &csr()).unwrap();
        let reused = t.join(&s, "host-1", &csr()).unwrap_err();
        assert!(reused.reason.contains("already used"), "{reused:?}");
        let mut forged = tok.clone();
        forged.secret[0] ^= 1;
        assert!(t
            .join(&forged.to_string(), "host-1", &csr())
            .unwrap_err()
            .reason
            .contains("unknown"));
        assert!(t
            .join("nonsense", "host-1", &csr())
            .unwrap_err()
            .reason
            .contains("malformed"));
        let der = softvpc_trust::ca::pem_to_der(&issued.cert_pem).unwrap();
        let peer = t.authenticate(Some(&[der])).unwrap();
        assert_eq!(peer.host, "host-1");
        assert!(t.authenticate(None).is_err());
        let renewed = t.renew(&peer, &csr()).unwrap();
        assert_ne!(renewed.serial, issued.serial);
        assert!(
            t.check(&peer).is_ok(),
            "the old certificate stays valid until it expires"
        );
        assert!(t.revoke("host-1").unwrap());
        assert!(t.check(&peer).is_err());
        // An expired token.
        let (old, _) = t.create_token("host-3", Duration::from_secs(1)).unwrap();
        t.lock().tokens.get_mut(&old.id_hex()).unwrap().expires = now_secs() - 1;
        assert!(t
            .join(&old.to_string(), "host-3", &csr())
            .unwrap_err()
            .reason
            .contains("expired"));
        assert!(t.create_token("bad name", DEFAULT_TOKEN_TTL).is_err());
    }

    #[test]
    fn state_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("svpc-trust-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = Trust::open(&dir, DEFAULT_HOST_CERT_TTL).unwrap();
        let (tok, _) = t.create_token("host-1", DEFAULT_TOKEN_TTL).unwrap();
        let issued = t.join(&tok.to_string(), "host-1", &csr()).unwrap();
        drop(t);
        let t = Trust::open(&dir, DEFAULT_HOST_CERT_TTL).unwrap();
        let der = softvpc_trust::ca::pem_to_der(&issued.cert_pem).unwrap();
        assert!(t.authenticate(Some(&[der])).is_ok());
        assert!(t.join(&tok.to_string(), "host-1", &csr()).is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("trust.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
