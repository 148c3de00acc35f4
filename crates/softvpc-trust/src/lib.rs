//! Trust between hosts and the control plane.
//!
//! The server keeps a CA ([`ca`]); a host joins with a short-lived, single-use join token
//! ([`token`]) that also pins the CA's certificate hash, so the agent can verify the server on
//! first contact without a CA file; the server answers with a certificate bound to the host's
//! name. From then on the agent talks to the mapping service over mutual TLS only ([`tls`],
//! [`client`]), and the server reads the host's identity from its certificate ([`identity`]).

#![warn(missing_docs)]

pub mod ca;
pub mod client;
pub mod identity;
pub mod tls;
pub mod token;

/// The DNS name in the server's certificate that agents check (whatever address they dial).
pub const SERVER_NAME: &str = "softvpc-server";

/// The crypto provider every TLS config here uses (ring, as tonic's `tls-ring`; aws-lc-rs would
/// add post-quantum key exchange but needs a C toolchain build).
#[allow(deprecated)]
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `contents` to `path` atomically (temp file, fsync, rename) with `mode`.
pub fn write_file(path: &std::path::Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}
