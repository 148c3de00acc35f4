//! `softvpc`: one binary for every role (control-plane server, host agent, lab).

use clap::{Parser, Subcommand};

/// Software-defined VPCs for Linux hosts: isolated virtual networks spanning many hosts, VXLAN
/// encapsulation, proxy ARP, and an EC2-compatible API.
#[derive(Parser, Debug)]
#[command(name = "softvpc", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the control plane: the EC2 Query API and the mapping service.
    Server(softvpc_server::ServerArgs),
    /// Run the host agent: the virtual router for the ENIs placed on this host.
    Agent(softvpc_agent::AgentArgs),
    /// Build, inspect and tear down a multi-host lab on this machine (network namespaces).
    Lab(softvpc_lab::LabArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Server(args) => softvpc_server::run(args),
        Command::Agent(args) => softvpc_agent::run(args),
        Command::Lab(args) => softvpc_lab::run(args),
    }
}

/// Logs go to stderr; `RUST_LOG` (e.g. `softvpc=debug`) sets the level, `info` by default.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
