//! `softvpc lab down`: remove everything a lab with this prefix created, with or without its
//! state file (after a crash or a half-finished `up`), idempotently.
//!
//! Order: processes first (so no agent recreates a namespace), then whatever else runs inside
//! the lab's namespaces (instances' DHCP clients, `lab exec` commands), then every netns whose
//! name starts with the prefix and its `/etc/netns/<ns>/`, then leftover links with the prefix in
//! the root netns, then the lab's files in the state dir.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;

use crate::names;
use crate::state::LabState;
use crate::sys;
use crate::LabArgs;

/// How long processes get to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(4);

/// What a teardown removed.
#[derive(Debug, Default)]
pub struct Removed {
    /// The lab's own processes (server, agents) that were stopped.
    pub processes: Vec<i32>,
    /// Of those, the ones that needed SIGKILL after the grace period.
    pub killed: Vec<i32>,
    /// Other processes that ran inside the lab's namespaces (e.g. started by `lab exec`).
    pub inside: Vec<i32>,
    /// Network namespaces removed.
    pub netns: Vec<String>,
    /// Links removed.
    pub links: Vec<String>,
    /// Namespaces whose `/etc/netns/<ns>/` was removed.
    pub etc: Vec<String>,
    /// Whether the state directory was removed.
    pub state_dir: bool,
    /// Things that could not be removed.
    pub failures: Vec<String>,
}

impl Removed {
    /// Whether nothing was left to remove.
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
            && self.netns.is_empty()
            && self.links.is_empty()
            && self.etc.is_empty()
            && !self.state_dir
    }

    /// One line per kind of thing removed.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.processes.is_empty() {
            let pids: Vec<String> = self.processes.iter().map(i32::to_string).collect();
            let mut line = format!(
                "{} process(es) (pid {})",
                self.processes.len(),
                pids.join(", ")
            );
            if !self.killed.is_empty() {
                line.push_str(&format!(", {} needed SIGKILL", self.killed.len()));
            }
            lines.push(line);
        }
        if !self.inside.is_empty() {
            let pids: Vec<String> = self.inside.iter().map(i32::to_string).collect();
            lines.push(format!(
                "{} process(es) running inside the lab's namespaces (pid {})",
                self.inside.len(),
                pids.join(", ")
            ));
        }
        if !self.netns.is_empty() {
            lines.push(format!(
                "{} netns ({})",
                self.netns.len(),
                self.netns.join(", ")
            ));
        }
        if !self.links.is_empty() {
            lines.push(format!(
                "{} link(s) ({})",
                self.links.len(),
                self.links.join(", ")
            ));
        }
        if !self.etc.is_empty() {
            lines.push(format!("{} /etc/netns dir(s)", self.etc.len()));
        }
        if self.state_dir {
            lines.push("the state dir".to_string());
        }
        lines
    }
}

/// `lab down`.
pub fn down(args: &LabArgs) -> anyhow::Result<()> {
    if !sys::is_root() {
        bail!("`softvpc lab down` needs root (network namespaces)");
    }
    let removed = teardown(&args.prefix, &args.state_dir)?;
    if removed.is_empty() {
        outln!(
            "nothing to remove: no lab with prefix {:?} (state dir {})",
            args.prefix,
            args.state_dir.display()
        );
    } else {
        outln!("removed lab {:?}:", args.prefix);
        for line in removed.summary() {
            outln!("  {line}");
        }
    }
    if !removed.failures.is_empty() {
        bail!(
            "could not remove everything:\n  {}",
            removed.failures.join("\n  ")
        );
    }
    Ok(())
}

/// Removes every trace of the lab with this prefix.
pub fn teardown(prefix: &str, state_dir: &Path) -> anyhow::Result<Removed> {
    let mut removed = Removed::default();
    let state = match LabState::load(state_dir) {
        Ok(state) => state,
        Err(e) => {
            tracing::warn!("ignoring unreadable state file: {e:#}");
            None
        }
    };
    if let Some(state) = &state {
        if state.prefix != prefix {
            bail!(
                "the state dir {} belongs to the lab with prefix {:?}, not {prefix:?}; \
                 pass the matching --prefix or another --state-dir",
                state_dir.display(),
                state.prefix
            );
        }
    }

    // The lab's namespaces, identified before the agents go: an agent deletes its instances'
    // netns names on exit, and a process still running inside one (a `lab exec` tcpdump, say)
    // must be found by the namespace itself.
    let lab_netns: Vec<String> = sys::netns_list()
        .into_iter()
        .filter(|ns| ns.starts_with(prefix))
        .collect();
    let netns_ids: Vec<(u64, u64)> = lab_netns
        .iter()
        .filter_map(|ns| sys::netns_id(&Path::new(sys::NETNS_DIR).join(ns)))
        // Never the namespace `down` itself or init runs in, whatever it is named.
        .filter(|id| {
            Some(*id) != sys::netns_id(Path::new("/proc/self/ns/net"))
                && Some(*id) != sys::netns_id(Path::new("/proc/1/ns/net"))
        })
        .collect();

    // Recorded pids are only trusted while they still name the process the lab started (same
    // start time) or still carry this lab's flags: a pid may have been reused since. The /proc
    // scan finds the rest, state file or not.
    let mut pids: Vec<i32> = state
        .iter()
        .flat_map(|s| s.processes())
        .filter(|p| {
            p.is_same_process()
                || sys::cmdline(p.pid)
                    .is_some_and(|argv| names::cmdline_has_lab_flags(&argv, prefix))
        })
        .map(|p| p.pid)
        .collect();
    pids.extend(sys::find_processes(|argv| {
        names::cmdline_belongs_to_lab(argv, prefix)
    }));
    pids.sort_unstable();
    pids.dedup();
    let (killed, survivors) = sys::terminate(&pids, GRACE);
    for pid in &survivors {
        removed
            .failures
            .push(format!("process {pid} survived SIGKILL"));
    }
    removed.processes = pids;
    removed.killed = killed;

    let inside = sys::processes_in_netns(&netns_ids);
    let (killed, survivors) = sys::terminate(&inside, Duration::from_secs(2));
    for pid in &survivors {
        removed.failures.push(format!(
            "process {pid} (inside a lab netns) survived SIGKILL"
        ));
    }
    removed.inside = inside;
    removed.killed.extend(killed);

    for ns in sys::netns_list()
        .into_iter()
        .filter(|ns| ns.starts_with(prefix))
    {
        match softvpc_netlink::netns::delete(&ns) {
            Ok(()) => removed.netns.push(ns),
            Err(e) => removed.failures.push(e.to_string()),
        }
    }

    // Instances' own /etc files (their resolv.conf, written by their DHCP client), also of
    // namespaces already gone.
    if let Ok(dir) = std::fs::read_dir(softvpc_netlink::netns::ETC_NETNS_DIR) {
        for entry in dir.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !name.starts_with(prefix) {
                continue;
            }
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => removed.etc.push(name),
                Err(e) => removed
                    .failures
                    .push(format!("removing {}: {e}", entry.path().display())),
            }
        }
    }

    match sys::root_links() {
        Ok(links) => {
            for link in links.into_iter().filter(|l| l.starts_with(prefix)) {
                match sys::delete_root_link(&link) {
                    Ok(()) => removed.links.push(link),
                    // Deleting one end of a veth removes its peer too.
                    Err(_) if !sys::root_links().unwrap_or_default().contains(&link) => {}
                    Err(e) => removed.failures.push(format!("{e:#}")),
                }
            }
        }
        Err(e) => removed.failures.push(format!("{e:#}")),
    }

    removed.state_dir = remove_state_dir(state_dir, &mut removed.failures);
    Ok(removed)
}

/// Removes the lab's files from the state dir, then the dir itself if that left it empty.
/// Only the lab's own entries are deleted, so a mistaken `--state-dir` cannot wipe a directory.
fn remove_state_dir(state_dir: &Path, failures: &mut Vec<String>) -> bool {
    if !state_dir.exists() {
        return false;
    }
    let mut any = false;
    let replicas = (2..=names::HA_MEMBERS).map(|i| format!("replica-{i}"));
    let entries = [
        "state.json",
        "state.json.tmp",
        "logs",
        "server",
        "agents",
        "etcd",
    ]
    .map(String::from)
    .into_iter()
    .chain(replicas);
    for entry in entries {
        let path = state_dir.join(entry);
        let result = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else if path.exists() {
            std::fs::remove_file(&path)
        } else {
            continue;
        };
        match result {
            Ok(()) => any = true,
            Err(e) => failures.push(format!("removing {}: {e}", path.display())),
        }
    }
    if std::fs::remove_dir(state_dir).is_ok() {
        any = true;
    }
    any
}
