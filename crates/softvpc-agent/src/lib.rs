//! The softvpc host agent: TAP and UDP I/O around the sans-IO engine, and the mapping watch.

use std::net::{Ipv4Addr, SocketAddr};

/// `softvpc agent`: the virtual router for the ENIs placed on this host.
#[derive(clap::Args, Debug, Clone)]
pub struct AgentArgs {
    /// Mapping service URL, e.g. http://198.18.0.1:8788.
    #[arg(long)]
    pub server: String,
    /// This host's name (registered with the server; instances are placed by it).
    #[arg(long)]
    pub host_name: String,
    /// This host's underlay IPv4 address (VXLAN is received on it, UDP 4789).
    #[arg(long)]
    pub underlay_ip: Ipv4Addr,
    /// Enter this named network namespace (`ip netns`) before doing anything else.
    #[arg(long)]
    pub netns: Option<String>,
    /// Each local instance gets a network namespace named PREFIX + instance id, with its ENI's
    /// TAP device inside as `eth0`.
    #[arg(long, default_value = "svpc-")]
    pub instance_netns_prefix: String,
    /// Prometheus metrics endpoint (inside the agent's network namespace).
    #[arg(long, default_value = "127.0.0.1:9469")]
    pub metrics_listen: SocketAddr,
}

/// Runs the agent until interrupted.
pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("not implemented yet")
}
