//! `softvpc lab`: a multi-host VPC setup on one machine, in network namespaces.
//!
//! `lab up` builds an underlay fabric (a bridge in its own netns), one netns per host running
//! `softvpc agent`, the server in the root netns, and then the topology's VPCs, subnets and
//! instances through the server's own EC2 API; it returns once every instance reaches its subnet
//! router. With `[internet]` in the topology it also builds the lab's internet ([`internet`]).
//! With `--ha`, the control plane is 3 server replicas on a 3-member etcd cluster ([`ha`]).
//! `down` removes everything (also after a crash), `status` says what runs, `exec` runs a
//! command inside an instance's netns (or the internet's), `stop` and `start` stop and restart
//! the server or an agent ([`process`], for fault drills).
//!
//! Modules: [`topology`] (the file format), [`names`] (every derived name and address),
//! [`state`] (what a lab created), [`sys`] (iproute2 and processes), [`probe`] (the ICMP
//! readiness probe, so the lab needs no `ping`), [`ec2`] (the calls the lab makes, through
//! `softvpc-ec2-client`), and one module per subcommand.
#![warn(missing_docs)]

use std::path::PathBuf;

/// `println!` that ignores a closed stdout (`softvpc lab up | head` must not panic mid-build).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that ignores a closed stdout, and flushes (progress output).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout();
        let _ = write!(stdout, $($arg)*);
        let _ = stdout.flush();
    }};
}

pub mod down;
pub mod ec2;
pub mod exec;
pub mod ha;
pub mod internet;
pub mod names;
pub mod probe;
pub mod process;
pub mod state;
pub mod status;
pub mod sys;
pub mod topology;
pub mod trace;
pub mod up;

/// `softvpc lab`: build, inspect and tear down a lab.
#[derive(clap::Args, Debug, Clone)]
pub struct LabArgs {
    /// Directory holding the lab's state (pids, server data, logs).
    #[arg(
        long,
        env = "SOFTVPC_LAB_DIR",
        default_value = "/run/softvpc-lab",
        global = true
    )]
    pub state_dir: PathBuf,
    /// Prefix of every namespace and link the lab creates.
    #[arg(
        long,
        env = "SOFTVPC_LAB_PREFIX",
        default_value = "svpc-",
        global = true
    )]
    pub prefix: String,
    #[command(subcommand)]
    /// What to do.
    pub command: LabCommand,
}

/// The `softvpc lab` subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum LabCommand {
    /// Build the lab from a topology file (default: the built-in seed topology).
    Up {
        /// Topology file (TOML; see examples/seed-lab.toml). Default: the seed topology.
        file: Option<PathBuf>,
        /// Port of the EC2 API on 127.0.0.1.
        #[arg(long, env = "SOFTVPC_LAB_API_PORT", default_value_t = 8787)]
        api_port: u16,
        /// The softvpc binary to run the server and agents from (default: this one).
        #[arg(long, env = "SOFTVPC_LAB_BIN")]
        bin: Option<PathBuf>,
        /// Seconds to wait for the instances to reach their routers.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
        /// The agents' kernel fast path (`softvpc agent --fast-path`; on by default, `off` sends
        /// every packet through the agents' engines).
        #[arg(long, env = "SOFTVPC_FAST_PATH", default_value = "on",
              value_parser = ["on", "off"])]
        fast_path: String,
        /// A replicated control plane, as on several machines: a 3-member etcd cluster (the
        /// `etcd` of Debian's etcd-server package; member N in netns PREFIXetcd-N at
        /// 198.18.2.N, data in the state dir) and 3 `softvpc server --store etcd` replicas
        /// (replica N in netns PREFIXreplica-N, its mapping service at 198.18.1.N:8788, its EC2
        /// API at 127.0.0.N:API_PORT); every agent is given all three replicas and fails over
        /// by itself. `lab status` lists them; `lab down` stops and removes them.
        #[arg(long)]
        ha: bool,
    },
    /// Remove everything the lab created.
    Down,
    /// Say what runs.
    Status {
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Run a command in an instance's namespace (NAME: Name tag or instance id; `internet`: the
    /// lab's internet).
    Exec {
        /// Name tag or instance id of the instance, or `internet`.
        name: String,
        #[arg(last = true, required = true)]
        /// The command and its arguments (after `--`).
        cmd: Vec<String>,
    },
    /// Stop the server or a host's agent (SIGTERM, or SIGKILL with --kill); `lab start` runs
    /// it again.
    Stop {
        /// `server`, or a host name (its agent).
        target: String,
        /// SIGKILL instead of SIGTERM (a crash).
        #[arg(long)]
        kill: bool,
    },
    /// Start the server or a host's agent again, with the command line `lab up` gave it.
    Start {
        /// `server`, or a host name (its agent).
        target: String,
    },
    /// Serve the lab internet's HTTP and UDP echo (run by `lab up`, stopped by `lab down`).
    #[command(name = "internet-serve", hide = true)]
    InternetServe(internet::ServeArgs),
}

/// Runs a lab subcommand.
pub fn run(args: LabArgs) -> anyhow::Result<()> {
    names::check_prefix(&args.prefix).map_err(anyhow::Error::msg)?;
    match &args.command {
        LabCommand::Up {
            file,
            api_port,
            bin,
            wait_secs,
            fast_path,
            ha,
        } => up::up(
            &args,
            &up::UpOptions {
                file: file.clone(),
                api_port: *api_port,
                bin: bin.clone(),
                wait: std::time::Duration::from_secs(*wait_secs),
                fast_path: fast_path.clone(),
                ha: *ha,
            },
        ),
        LabCommand::Down => down::down(&args),
        LabCommand::Status { json } => status::status(&args, *json),
        LabCommand::Exec { name, cmd } => exec::exec(&args, name, cmd),
        LabCommand::Stop { target, kill } => process::stop(&args, target, *kill),
        LabCommand::Start { target } => process::start(&args, target),
        LabCommand::InternetServe(serve) => internet::serve(serve),
    }
}

/// How the user invoked the binary (for printed example commands): `softvpc` when it is on
/// PATH as such, else the path it was run by.
pub(crate) fn invoked_as() -> String {
    std::env::args()
        .next()
        .filter(|a| a.contains('/'))
        .unwrap_or_else(|| "softvpc".to_string())
}

/// Environment prefix for printed commands when the lab is not the default one.
pub(crate) fn env_hint(args: &LabArgs) -> String {
    let mut hint = String::new();
    if args.prefix != "svpc-" {
        hint.push_str(&format!("SOFTVPC_LAB_PREFIX={} ", args.prefix));
    }
    if args.state_dir != std::path::Path::new("/run/softvpc-lab") {
        hint.push_str(&format!("SOFTVPC_LAB_DIR={} ", args.state_dir.display()));
    }
    hint
}
