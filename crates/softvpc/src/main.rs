//! `softvpc`: one binary for every role (control-plane server, host agent, lab).

use std::process::ExitCode;

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
    Server(softvpc_server::ServerCli),
    /// Run the host agent: the virtual router for the ENIs placed on this host.
    Agent(softvpc_agent::AgentArgs),
    /// Build, inspect and tear down a multi-host lab on this machine (network namespaces).
    Lab(softvpc_lab::LabArgs),
    /// Where one packet would go and why: each host's live engine decides, layer by layer
    /// (in the lab; see `softvpc trace --help`).
    #[command(long_about = softvpc_lab::trace::LONG_ABOUT)]
    Trace(softvpc_lab::trace::TraceArgs),
}

/// A command that fails returns an error: the user gets its message chain on one line and exit
/// status 1, never a backtrace (not even with `RUST_BACKTRACE` set), because a failing command is
/// a user's problem to fix (a missing prerequisite, a bad argument, a lab already up). Bugs panic,
/// and panics keep their backtraces.
fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Server(args) => softvpc_server::main(args),
        Command::Agent(args) => softvpc_agent::run(args),
        Command::Lab(args) => softvpc_lab::run(args),
        Command::Trace(args) => softvpc_lab::trace::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            use std::io::Write as _;
            // `{:#}` prints the context chain ("a: b: c") and no backtrace.
            let _ = writeln!(std::io::stderr(), "softvpc: error: {err:#}");
            ExitCode::FAILURE
        }
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
