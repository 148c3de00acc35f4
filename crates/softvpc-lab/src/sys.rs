//! The lab's system plumbing: named namespaces and links through `softvpc-netlink` (netlink, no
//! `ip` process), and processes (spawn detached, find, terminate) through `/proc` and signals.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use softvpc_netlink::netns::{exists as netns_exists, list as netns_list, NETNS_DIR};

/// Link names in the current (root) netns.
pub fn root_links() -> anyhow::Result<Vec<String>> {
    Ok(softvpc_netlink::block_on(async {
        softvpc_netlink::Netlink::connect()?.link_names().await
    })?)
}

/// Deletes a link of the current (root) netns.
pub fn delete_root_link(name: &str) -> anyhow::Result<()> {
    Ok(softvpc_netlink::block_on(async {
        softvpc_netlink::Netlink::connect()?.del_link(name).await
    })?)
}

/// Replaces this process with `program args...` inside the named netns (`ip netns exec`);
/// returns only on failure.
pub fn exec_in_netns(
    ns: &str,
    program: &std::ffi::OsString,
    args: &[std::ffi::OsString],
) -> softvpc_netlink::Error {
    softvpc_netlink::netns::exec(ns, program, args)
}

/// Starts a long-running child detached from the lab command: its own session (no terminal
/// signals), stdin null, stdout and stderr appended to `log`.
pub fn spawn_detached(bin: &Path, args: &[String], log: &Path) -> anyhow::Result<Child> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(bin);
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: setsid() is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    cmd.spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

/// [`spawn_detached`], with the child inside the named netns (for programs that, unlike softvpc,
/// have no `--netns` of their own: the lab's etcd members).
pub fn spawn_detached_in(
    netns: &str,
    program: &Path,
    args: &[String],
    log: &Path,
) -> anyhow::Result<Child> {
    use std::os::fd::AsRawFd;
    let ns = softvpc_netlink::netns::open(netns)?;
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    let fd = ns.as_raw_fd();
    // SAFETY: setsid() and setns() are async-signal-safe system calls; the namespace file stays
    // open in the parent (`ns`) until spawn returns, so `fd` is valid in the child.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            let ns = std::os::fd::BorrowedFd::borrow_raw(fd);
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {} in netns {netns}", program.display()))?;
    drop(ns);
    Ok(child)
}

/// Whether a process exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X"),
        Err(_) => false,
    }
}

/// When a process started (clock ticks since boot, /proc/PID/stat field 22): with the pid, it
/// identifies a process even after the pid has been reused.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts at field 3 (state), so field 22 is its 20th.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A process's argv, from /proc.
pub fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// Pids of live processes whose command line satisfies `pred`.
pub fn find_processes(pred: impl Fn(&[String]) -> bool) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me && pid_alive(pid))
        .filter(|&pid| cmdline(pid).is_some_and(|argv| pred(&argv)))
        .collect();
    pids.sort_unstable();
    pids
}

/// Identity (device, inode) of a network namespace file: a `/run/netns/NAME` bind mount or a
/// `/proc/PID/ns/net` link.
pub fn netns_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Pids of live processes (other than this one) whose network namespace is one of `ids`.
pub fn processes_in_netns(ids: &[(u64, u64)]) -> Vec<i32> {
    if ids.is_empty() {
        return Vec::new();
    }
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me && pid_alive(pid))
        .filter(|&pid| {
            netns_id(Path::new(&format!("/proc/{pid}/ns/net"))).is_some_and(|id| ids.contains(&id))
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Stops processes: SIGTERM, up to `grace` to exit, then SIGKILL. Returns the pids that had to be
/// killed with SIGKILL and those still alive after it.
pub fn terminate(pids: &[i32], grace: Duration) -> (Vec<i32>, Vec<i32>) {
    let live: Vec<i32> = pids.iter().copied().filter(|&p| pid_alive(p)).collect();
    for &pid in &live {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let wait = |until: Instant| loop {
        let left: Vec<i32> = live.iter().copied().filter(|&p| pid_alive(p)).collect();
        if left.is_empty() || Instant::now() >= until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stubborn = wait(Instant::now() + grace);
    for &pid in &stubborn {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let survivors = if stubborn.is_empty() {
        Vec::new()
    } else {
        wait(Instant::now() + Duration::from_secs(2))
    };
    // A dead process stays a zombie until its reaper (init, for the detached lab processes)
    // collects it, and until then it still answers kill(pid, 0): wait a little for that too,
    // so callers that check right after `down` see the pids gone.
    let reaped_by = Instant::now() + Duration::from_secs(3);
    while live
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists())
        && Instant::now() < reaped_by
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    (stubborn, survivors)
}

/// Whether this process runs as root (the lab needs CAP_SYS_ADMIN and CAP_NET_ADMIN).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_are_found_watched_and_terminated() {
        let log = std::env::temp_dir().join(format!("softvpc-lab-test-{}.log", std::process::id()));
        // A sleep whose argument is unique to this test run; SIGTERM ends it at once.
        let marker = format!("60.{}", std::process::id());
        let mut child =
            spawn_detached(Path::new("sleep"), std::slice::from_ref(&marker), &log).expect("spawn");
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        let found = loop {
            let found = find_processes(|argv| argv.get(1).is_some_and(|a| a == &marker));
            if !found.is_empty() || Instant::now() > deadline {
                break found;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(found, [pid]);
        assert!(pid_alive(pid));
        let started = start_time(pid).expect("start time");
        assert!(started >= start_time(std::process::id() as i32).expect("own start time"));
        // It shares this test's network namespace, so it is found by that namespace.
        let ours = netns_id(Path::new("/proc/self/ns/net")).expect("own netns");
        assert!(processes_in_netns(&[ours]).contains(&pid));
        assert!(processes_in_netns(&[]).is_empty());
        // Reap in the background so the child does not linger as a zombie of this test.
        let reaper = std::thread::spawn(move || child.wait());
        let (killed, survivors) = terminate(&[pid], Duration::from_secs(5));
        assert!(
            killed.is_empty() && survivors.is_empty(),
            "{killed:?} {survivors:?}"
        );
        reaper.join().unwrap().unwrap();
        assert!(!pid_alive(pid));
        let _ = std::fs::remove_file(log);
    }
}
