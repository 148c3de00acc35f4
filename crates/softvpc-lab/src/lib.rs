//! `softvpc lab`: a multi-host VPC setup on one machine, in network namespaces.

use std::path::PathBuf;

/// `softvpc lab`: build, inspect and tear down a lab.
#[derive(clap::Args, Debug, Clone)]
pub struct LabArgs {
    /// Directory holding the lab's state (pids, server data, logs).
    #[arg(long, env = "SOFTVPC_LAB_DIR", default_value = "/run/softvpc-lab", global = true)]
    pub state_dir: PathBuf,
    /// Prefix of every namespace and link the lab creates.
    #[arg(long, env = "SOFTVPC_LAB_PREFIX", default_value = "svpc-", global = true)]
    pub prefix: String,
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum LabCommand {
    /// Build the lab from a topology file (default: the built-in seed topology).
    Up { file: Option<PathBuf> },
    /// Remove everything the lab created.
    Down,
    /// Say what runs.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Run a command in an instance's namespace (NAME: Name tag or instance id).
    Exec {
        name: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
}

/// Runs a lab subcommand.
pub fn run(args: LabArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("not implemented yet")
}
