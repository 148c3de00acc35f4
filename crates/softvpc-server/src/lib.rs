//! The softvpc control plane: the resource model in redb, the EC2 Query API, the mapping service.

use std::net::SocketAddr;
use std::path::PathBuf;

/// `softvpc server`: the EC2-compatible API and the mapping service agents watch.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Directory of the persistent store (created if missing).
    #[arg(long, env = "SOFTVPC_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address of the EC2 Query API (HTTP). Unauthenticated for now: keep it on loopback.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Address of the mapping service (gRPC) that agents connect to.
    #[arg(long, default_value = "127.0.0.1:8788")]
    pub mapping_listen: SocketAddr,
    /// Open the mapping-service listener inside this named network namespace (`ip netns`),
    /// while the API stays in the current one. Used by the lab.
    #[arg(long)]
    pub mapping_netns: Option<String>,
}

/// Runs the server until interrupted.
pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("not implemented yet")
}
