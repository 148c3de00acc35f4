//! The server under test: a real `softvpc server` process (the release binary) on a data
//! directory and free loopback ports, dying with the benchmark (parent-death signal); shared by
//! the benchmarks of this crate.

// Each benchmark binary uses its own part of this module.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use softvpc_ec2_client::{BlockingClient, Config, Credentials};

/// The server process and its data directory; both go away on drop.
pub struct Server {
    pub child: Child,
    /// The scratch directory (the store is in `data/`, the server's output in `server.log`).
    pub dir: PathBuf,
    remove_dir: bool,
    /// The EC2 API.
    pub addr: SocketAddr,
    /// The mapping service.
    pub mapping: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Server {
    /// Stops the server (SIGTERM, then SIGKILL after 5 s); idempotent.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The softvpc binary to run: `given` (`--bin`), else `$SOFTVPC_BIN`, else `softvpc` next to
/// this program.
pub fn softvpc_bin(given: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match (given, std::env::var_os("SOFTVPC_BIN")) {
        (Some(b), _) => b.clone(),
        (None, Some(b)) => PathBuf::from(b),
        (None, None) => std::env::current_exe()?
            .parent()
            .context("no directory for this program")?
            .join("softvpc"),
    })
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `bin server` on `dir` (removed on drop when `remove_dir`) with `extra` arguments.
pub fn start_server(
    bin: &Path,
    dir: PathBuf,
    remove_dir: bool,
    extra: &[String],
) -> anyhow::Result<Server> {
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let mapping: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    let mut cmd = Command::new(bin);
    cmd.arg("server")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args([
            "--listen",
            &addr.to_string(),
            "--mapping-listen",
            &mapping.to_string(),
        ])
        .args(extra)
        .arg("--no-default-vpc")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: the closure only calls prctl(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut server = Server {
        child,
        dir,
        remove_dir,
        addr,
        mapping,
    };
    // Unsigned `GET /healthz` only: the key pair does not matter.
    let mut probe = Config::http(
        addr,
        Credentials::Static(softvpc_sigv4::generate_credentials()),
    );
    probe.timeout = Duration::from_secs(1);
    let probe = BlockingClient::new(probe)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!(
                "the server exited ({status}); see {}",
                server.dir.join("server.log").display()
            );
        }
        if probe.healthy() && server.credentials_file().exists() {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!("the server did not answer /healthz within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Server {
    pub fn credentials_file(&self) -> PathBuf {
        self.dir.join("data").join("credentials")
    }

    pub fn store_file(&self) -> PathBuf {
        self.dir.join("data").join("softvpc.redb")
    }

    /// Starts the kernel's peak-RSS count (`VmHWM`) again from the current RSS (writes 5 to
    /// `/proc/PID/clear_refs`); false when that is not allowed.
    pub fn reset_peak_rss(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").is_ok()
    }

    /// A `/proc/PID/status` field in kB (VmRSS:, VmHWM:, ...), in bytes (0 if unreadable).
    pub fn proc_status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Server {
    /// A signed EC2 API client with the server's key pair.
    pub fn api_client(&self) -> anyhow::Result<BlockingClient> {
        let profiles = softvpc_sigv4::read_credentials_file(&self.credentials_file())?;
        let creds = profiles
            .into_iter()
            .next()
            .context("no credentials in the server's file")?
            .credentials;
        let mut config = Config::http(self.addr, Credentials::Static(creds));
        config.timeout = Duration::from_secs(120);
        Ok(BlockingClient::new(config)?)
    }

    /// The server's CPU time so far (user + system), from `/proc/PID/stat`.
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let ticks: u64 = fields
            .get(11..13)
            .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0);
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as u64;
        Duration::from_micros(ticks * 1_000_000 / hz.max(1))
    }
}
