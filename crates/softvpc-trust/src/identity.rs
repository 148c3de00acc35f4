//! Who is at the other end: the host name, serial and expiry of a peer's certificate (the
//! chain was already verified against the CA by the TLS handshake).

use x509_parser::prelude::{FromDer, X509Certificate};

/// The organisational unit of every host certificate (the server's own has none), so no other
/// certificate of the CA can pass as a host.
pub const HOST_OU: &str = "softvpc hosts";

/// A host's identity, read from its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The host name the certificate is bound to.
    pub host: String,
    /// Lowercase hex.
    pub serial: String,
    /// Seconds since the Unix epoch.
    pub not_before: u64,
    /// Seconds since the Unix epoch.
    pub not_after: u64,
}

/// The host-name rule the model applies too: 1 to 64 of letters, digits, '-', '_', '.'.
pub fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Reads a host certificate (DER). Refuses certificates that are not host certificates.
pub fn parse(der: &[u8]) -> Result<PeerIdentity, String> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the certificate".into());
    }
    let subject = cert.subject();
    let ou = subject
        .iter_organizational_unit()
        .next()
        .and_then(|a| a.as_str().ok());
    if ou != Some(HOST_OU) {
        return Err("not a host certificate".into());
    }
    let mut cns = subject.iter_common_name();
    let host = cns
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or("certificate has no host name")?;
    if cns.next().is_some() || !valid_host_name(host) {
        return Err("certificate has no valid host name".into());
    }
    let serial = hex::encode(cert.raw_serial());
    let not_before = cert.validity().not_before.timestamp().max(0) as u64;
    let not_after = cert.validity().not_after.timestamp().max(0) as u64;
    Ok(PeerIdentity {
        host: host.to_string(),
        serial,
        not_before,
        not_after,
    })
}
