//! What an instance's operating system does with its first interface at boot, played by the
//! agent: a real DHCP client (busybox's `udhcpc`) configures `eth0` from the host's virtual
//! router, as on an EC2 instance ([`Addressing::Dhcp`]), or the agent configures the address
//! itself ([`Addressing::Static`], `instance.rs`).
//!
//! With DHCP, `eth0` comes up with its MAC, MTU 1500 and no address; the agent starts
//! `udhcpc -i eth0 -f` inside the instance's namespace with [`SCRIPT`] as its event script. The
//! script applies each lease (`bound`, and every `renew` at T1 or on SIGUSR1): address and mask,
//! interface MTU (option 26: 9001), default route via the router (a renewal with the same ones
//! leaves the interface as it is), and the resolver file (the DNS servers, the domain name as
//! search domain), rewritten at every renewal. So a changed DHCP option set reaches the
//! instance at its next renewal. `$LEASE_FILE` gets the last lease's variables and
//! `$LEASE_FILE.log` one line per event.
//!
//! The resolver file is `/etc/netns/<namespace>/resolv.conf`, which `ip netns exec` and
//! `softvpc lab exec` bind-mount over `/etc/resolv.conf`; it goes with the namespace.
//!
//! A client outlives the agent, as the instance does (an agent restart must not take addresses
//! away): its pid is kept in `<state-dir>/dhcp/<namespace>.pid`, a restarted agent keeps a
//! client that still runs in its namespace and starts one where none does, and a client is
//! stopped by that pid (checked to still be a DHCP client in that namespace) before its
//! namespace is deleted. `softvpc lab down` kills whatever still runs in the lab's namespaces.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use softvpc_netlink::netns;
use tracing::{info, warn};

/// How instances' `eth0` gets its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Addressing {
    /// The agent configures the address, mask, MTU and default route itself.
    #[default]
    Static,
    /// A DHCP client in the instance (`--dhcp-client`) asks the host's virtual router.
    Dhcp,
}

/// udhcpc's event script: applies a lease as a distribution's DHCP hooks do. `$RESOLV_CONF` is
/// the instance's resolver file.
pub const SCRIPT: &str = r##"#!/bin/sh
# softvpc agent: udhcpc's event script for an instance's eth0 (udhcpc sets the variables).
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
command -v ip >/dev/null 2>&1 || ip() { busybox ip "$@"; }
case "$1" in
deconfig)
  ip link set dev "$interface" up
  ;;
bound|renew)
  # A renewal that brings the same address, router and MTU leaves the interface alone (as a
  # distribution's hooks do), so a hand-set MTU or route lasts until the lease changes.
  applied="$ip/$mask router=$router mtu=$mtu"
  if [ "$1" = bound ] || [ "$(cat "$LEASE_FILE.applied" 2>/dev/null)" != "$applied" ]; then
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    ip addr replace "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
    for r in $router; do
      ip route replace default via "$r" dev "$interface" src "$ip"
      break
    done
    echo "$applied" > "$LEASE_FILE.applied"
  fi
  {
    echo "# from DHCP (udhcpc $1 at $(date -u +%FT%TZ))"
    [ -n "$domain" ] && echo "search $domain"
    for d in $dns; do echo "nameserver $d"; done
  } > "$RESOLV_CONF.new" && mv -f "$RESOLV_CONF.new" "$RESOLV_CONF"
  if [ -n "$LEASE_FILE" ]; then
    env | grep -E '^(interface|ip|mask|subnet|router|dns|domain|mtu|lease|serverid|hostname|broadcast|ntpsrv)=' > "$LEASE_FILE.new"
    echo "event=$1" >> "$LEASE_FILE.new"
    mv -f "$LEASE_FILE.new" "$LEASE_FILE"
    echo "$(date -u +%FT%TZ) $1 ip=$ip/$mask router=$router mtu=$mtu lease=$lease domain=$domain dns=$dns" >> "$LEASE_FILE.log"
  fi
  ;;
esac
exit 0
"##;

/// The PATH the client and its script run with (the agent's own may be empty).
const CLIENT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long a stopped client gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The resolver file of an instance namespace.
pub fn resolv_conf(ns: &str) -> PathBuf {
    netns::etc_dir(ns).join("resolv.conf")
}

/// Creates the namespace's `/etc/netns/<ns>/` with a resolver file holding only a comment, so
/// that commands run in the namespace see it (not the host's) from the start.
pub fn prepare_etc(ns: &str) -> anyhow::Result<()> {
    let dir = netns::etc_dir(ns);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = resolv_conf(ns);
    if !path.exists() {
        std::fs::write(&path, "# no DHCP lease yet\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Removes `/etc/netns/<ns>/` (gone already is fine).
pub fn remove_etc(ns: &str) {
    let dir = netns::etc_dir(ns);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(dir = %dir.display(), error = %e, "removing an instance's /etc/netns"),
    }
}

/// Finds the DHCP client: `udhcpc`, else `busybox` (run as `busybox udhcpc`), on the agent's
/// PATH or in the usual system directories.
pub fn find_client() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(std::env::split_paths(CLIENT_PATH))
        .filter(|d| d.is_absolute())
        .collect();
    ["udhcpc", "busybox"]
        .iter()
        .find_map(|name| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()))
}

/// Whether `path` names busybox, whose udhcpc is an applet.
fn is_busybox(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "busybox")
}

/// The DHCP clients of this agent's instances: one `udhcpc` per instance's `eth0`, tracked by
/// pid files.
#[derive(Debug, Clone)]
pub struct DhcpClients {
    program: PathBuf,
    dir: PathBuf,
}

impl DhcpClients {
    /// Clients run as `program` (udhcpc or busybox), with their script, pid and lease files in
    /// `dir` (the script is written now). Fails when the program is not there.
    pub fn new(program: PathBuf, dir: PathBuf) -> anyhow::Result<DhcpClients> {
        use std::os::unix::fs::PermissionsExt;
        if !program.is_file() {
            anyhow::bail!(
                "the DHCP client {} does not exist (install udhcpc, or run with --instance-addressing static)",
                program.display()
            );
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let clients = DhcpClients { program, dir };
        let script = clients.script();
        let tmp = script.with_extension("new");
        std::fs::write(&tmp, SCRIPT)
            .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)))
            .and_then(|()| std::fs::rename(&tmp, &script))
            .with_context(|| format!("writing {}", script.display()))?;
        Ok(clients)
    }

    fn script(&self) -> PathBuf {
        self.dir.join("udhcpc.script")
    }

    fn pid_file(&self, ns: &str) -> PathBuf {
        self.dir.join(format!("{ns}.pid"))
    }

    /// The lease file of the client in `ns` (its `.log` has one line per event).
    pub fn lease_file(&self, ns: &str) -> PathBuf {
        self.dir.join(format!("{ns}.lease"))
    }

    /// The pid of the client running in `ns`, if its pid file names one that is still a DHCP
    /// client in that namespace (a pid may have been reused since).
    pub fn running(&self, ns: &str) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_file(ns))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        is_client_in(pid, ns).then_some(pid)
    }

    /// Starts the client for `ns`'s `eth0`, replacing a running one; returns its pid.
    pub fn start(&self, ns: &str) -> anyhow::Result<u32> {
        self.stop(ns);
        let mut cmd = std::process::Command::new(&self.program);
        if is_busybox(&self.program) {
            cmd.arg("udhcpc");
        }
        // Foreground; 5 DISCOVERs 1 s apart, then a 2 s pause and again, for ever (the
        // interface may come up before the router knows its port).
        cmd.args(["-i", "eth0", "-f", "-t", "5", "-T", "1", "-A", "2"])
            .args(["-O", "mtu", "-O", "ntpsrv", "-s"])
            .arg(self.script())
            .env("PATH", CLIENT_PATH)
            .env("RESOLV_CONF", resolv_conf(ns))
            .env("LEASE_FILE", self.lease_file(ns))
            .stdin(std::process::Stdio::null());
        netns::command_in(ns, &mut cmd)?;
        // A new session: the client is the instance's, not part of the agent's process group
        // (a signal to the agent's group must not reach it).
        // SAFETY: setsid(2) is async-signal-safe.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                nix::unistd::setsid()
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
        // tokio reaps it when it exits (the handle is dropped: the client outlives this call and,
        // when the agent restarts, the agent).
        let child = tokio::process::Command::from(cmd)
            .spawn()
            .with_context(|| format!("starting {} in {ns}", self.program.display()))?;
        let pid = child.id().context("the DHCP client exited at once")?;
        drop(child);
        let pid_file = self.pid_file(ns);
        std::fs::write(&pid_file, format!("{pid}\n"))
            .with_context(|| format!("writing {}", pid_file.display()))?;
        info!(netns = %ns, pid, "DHCP client started");
        Ok(pid)
    }

    /// Stops the client of `ns`, if one runs, and forgets it.
    pub fn stop(&self, ns: &str) {
        if let Some(pid) = self.running(ns) {
            terminate(pid);
            info!(netns = %ns, pid, "DHCP client stopped");
        }
        let _ = std::fs::remove_file(self.pid_file(ns));
    }
}

/// Whether `pid` is a live (not zombie) udhcpc whose network namespace is `ns`.
fn is_client_in(pid: i32, ns: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    if !alive(pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    if !cmdline.split(|b| *b == 0).any(|a| a.ends_with(b"udhcpc")) {
        return false;
    }
    let id = |p: PathBuf| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    match (
        id(format!("/proc/{pid}/ns/net").into()),
        id(netns::path(ns)),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Whether `pid` runs (a zombie has finished).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name's closing parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`].
fn terminate(pid: i32) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if alive(pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_applies_every_lease_field_the_issue_names() {
        for needle in [
            "mtu \"$mtu\"",
            "\"$ip/${mask:-24}\"",
            "default via \"$r\"",
            "search $domain",
            "nameserver $d",
            "bound|renew)",
        ] {
            assert!(SCRIPT.contains(needle), "{needle}");
        }
    }

    #[test]
    fn a_missing_client_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("svpc-guest-{}", std::process::id()));
        let e = DhcpClients::new("/nonexistent/udhcpc".into(), dir).unwrap_err();
        assert!(
            format!("{e}").contains("--instance-addressing static"),
            "{e}"
        );
    }

    #[test]
    fn our_own_pid_is_no_dhcp_client() {
        assert!(alive(std::process::id() as i32));
        assert!(!is_client_in(std::process::id() as i32, "no-such-netns"));
    }
}
