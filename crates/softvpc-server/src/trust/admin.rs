//! The local admin socket: `<data-dir>/admin/admin.sock` (the directory is mode 0700, so only
//! the server's user reaches it). `softvpc server join-token` and `softvpc server remove-host`
//! talk HTTP/1.1 to it:
//!
//! - `POST /join-tokens` `{"host": NAME, "ttl_secs": N}` -> `{"token": ..., "expires": ...}`
//! - `POST /hosts/remove` `{"host": NAME, "force": bool}` -> `{"terminated": [...]}`; 409 when
//!   instances run there and `force` is false, 404 for an unknown host.
//! - `POST /mapping/fanout` `{"from": REV, "to": REV}` -> `{"revisions": [...]}`: per recent
//!   revision, how many watch messages carried it and when the first and last left, after its
//!   commit (`crate::mapping::fanout`; what `softvpc-bench-mapping` prints as the server's share).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::Trust;
use crate::mapping::fanout::{FanoutRequest, FanoutResponse};
use crate::mapping::MappingProjection;
use softvpc_store::Store;

/// Where the admin socket of the server with `data_dir` lives.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin").join("admin.sock")
}

/// Binds the admin socket (replacing a stale one).
pub fn bind(data_dir: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let path = socket_path(data_dir);
    let dir = path.parent().expect("socket path has a parent");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            bail!(
                "another server already serves {} (its admin socket {} answers)",
                data_dir.display(),
                path.display()
            );
        }
        std::fs::remove_file(&path)?;
    }
    let l = std::os::unix::net::UnixListener::bind(&path)
        .with_context(|| format!("binding the admin socket {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    l.set_nonblocking(true)?;
    Ok(tokio::net::UnixListener::from_std(l)?)
}

#[derive(Clone)]
struct Admin {
    cp: Arc<Store>,
    trust: Arc<Trust>,
    projection: Arc<MappingProjection>,
}

/// `POST /join-tokens`: a token for `host`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenRequest {
    /// The host the token is for.
    pub host: String,
    /// How long it stays usable.
    pub ttl_secs: u64,
}

/// The answer to a [`TokenRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The token (`svpc1.<id>.<secret>.<CA hash>`).
    pub token: String,
    /// When it expires (seconds since the Unix epoch).
    pub expires: u64,
}

/// `POST /hosts/remove`: remove `host` and revoke its certificates.
#[derive(Debug, Serialize, Deserialize)]
pub struct RemoveRequest {
    /// The host's name.
    pub host: String,
    /// Terminate the host's instances instead of refusing.
    pub force: bool,
}

/// The answer to a [`RemoveRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub struct RemoveResponse {
    /// The removed host's id (None: it was not registered).
    pub host_id: Option<String>,
    /// The instances terminated with it.
    pub terminated: Vec<String>,
}

type Reply<T> = Result<Json<T>, (StatusCode, String)>;

/// The admin router.
pub fn router(cp: Arc<Store>, trust: Arc<Trust>, projection: Arc<MappingProjection>) -> Router {
    Router::new()
        .route("/join-tokens", post(join_token))
        .route("/hosts/remove", post(remove_host))
        .route("/mapping/fanout", post(mapping_fanout))
        .with_state(Admin {
            cp,
            trust,
            projection,
        })
}

async fn mapping_fanout(
    State(a): State<Admin>,
    Json(req): Json<FanoutRequest>,
) -> Reply<FanoutResponse> {
    Ok(Json(FanoutResponse {
        revisions: a.projection.fanout_times().report(req.from, req.to),
    }))
}

async fn join_token(State(a): State<Admin>, Json(req): Json<TokenRequest>) -> Reply<TokenResponse> {
    let (token, expires) = a
        .trust
        .create_token(&req.host, Duration::from_secs(req.ttl_secs))
        .map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    Ok(Json(TokenResponse {
        token: token.to_string(),
        expires,
    }))
}

async fn remove_host(
    State(a): State<Admin>,
    Json(req): Json<RemoveRequest>,
) -> Reply<RemoveResponse> {
    let cp = a.cp.clone();
    let host = req.host.clone();
    // The model first (refused while instances run there), then the certificates. A host
    // known only to the trust state (joined, never registered) is just revoked.
    let removed = tokio::task::spawn_blocking(move || {
        cp.mutate(false, |t| {
            softvpc_model::host::remove_host(t, &host, req.force)
        })
    })
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let (host_id, terminated) = match removed {
        Ok(Some((id, terminated))) => (Some(id), terminated),
        Ok(None) => (None, Vec::new()),
        Err(e) if e.code == "IncorrectState" => return Err((StatusCode::CONFLICT, e.message)),
        Err(e) => return Err((StatusCode::BAD_REQUEST, e.message)),
    };
    let enrolled = a
        .trust
        .revoke(&req.host)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))?;
    if host_id.is_none() && !enrolled {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no host named {:?}", req.host),
        ));
    }
    tracing::warn!(host = %req.host, host_id = ?host_id, terminated = ?terminated, "host removed");
    Ok(Json(RemoveResponse {
        host_id,
        terminated,
    }))
}

/// A POST of `body` (JSON) to the admin socket of the server with `data_dir`; the answer's JSON.
pub fn call<Req: Serialize, Resp: for<'de> Deserialize<'de>>(
    data_dir: &Path,
    path: &str,
    body: &Req,
) -> anyhow::Result<Resp> {
    use std::io::{Read, Write};
    let sock = socket_path(data_dir);
    let mut s = std::os::unix::net::UnixStream::connect(&sock).with_context(|| {
        format!(
            "connecting to {} (is `softvpc server --data-dir {}` running, as this user?)",
            sock.display(),
            data_dir.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = serde_json::to_vec(body)?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: softvpc-admin\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(&body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed answer from the admin socket")?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("malformed status line from the admin socket")?;
    if status != 200 {
        bail!("{}", body.trim());
    }
    serde_json::from_str(body).context("malformed JSON from the admin socket")
}
