//! Named network namespaces (`ip netns`'s `/run/netns/NAME` bind mounts).
//!
//! `setns(2)` changes the namespace of the calling thread only. The agent enters its host
//! namespace on the main thread before any other thread exists (every thread it starts then
//! inherits it); short tasks that must run inside an instance's namespace (writing its sysctls)
//! run on a throw-away thread via [`run_in`], so no long-lived thread ever changes namespace.

use std::fs::File;
use std::path::PathBuf;

use anyhow::Context as _;
use nix::sched::{setns, CloneFlags};

/// Where `ip netns` keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// The path of a named namespace.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Whether a named namespace exists.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Moves the calling thread into the named network namespace.
pub fn enter(name: &str) -> anyhow::Result<()> {
    let p = path(name);
    let f = File::open(&p).with_context(|| format!("opening network namespace {}", p.display()))?;
    setns(f, CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns into network namespace {name}"))?;
    Ok(())
}

/// Runs `f` on a new thread inside the named namespace and returns its result (the caller's
/// own namespace is untouched).
pub fn run_in<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let name = name.to_string();
    std::thread::Builder::new()
        .name("netns-task".into())
        .spawn(move || {
            enter(&name)?;
            f()
        })
        .context("spawning a namespace task thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("namespace task panicked"))?
}

/// Writes a sysctl under `/proc/sys` (for the calling thread's network namespace).
pub fn write_sysctl(key: &str, value: &str) -> anyhow::Result<()> {
    let p = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
    std::fs::write(&p, value).with_context(|| format!("writing {value} to {}", p.display()))
}
