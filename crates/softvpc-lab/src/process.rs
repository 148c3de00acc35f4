//! `softvpc lab stop TARGET [--kill]` and `softvpc lab start TARGET`: stop one of the lab's
//! processes (the server, or a host's agent) and start it again with the command line it was
//! started with (recorded in the state file), for fault drills: a control plane that is gone
//! for a while, an agent killed with SIGKILL and restarted. The new process is recorded in the
//! state file, so `status` and `down` know it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::state::{LabState, ProcessRecord};
use crate::sys;
use crate::LabArgs;

/// How long `stop` waits for the process to be gone.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// The server's name as a target.
pub const SERVER: &str = "server";

fn load(args: &LabArgs) -> anyhow::Result<LabState> {
    let state = LabState::load(&args.state_dir)?.with_context(|| {
        format!(
            "no lab in {} (run `softvpc lab up` first)",
            args.state_dir.display()
        )
    })?;
    Ok(state)
}

/// The record of `target` (`server` or a host with an agent).
fn record<'a>(state: &'a mut LabState, target: &str) -> anyhow::Result<&'a mut ProcessRecord> {
    if target == SERVER {
        return state.server.as_mut().context("the lab has no server");
    }
    let names: Vec<String> = state
        .hosts
        .iter()
        .filter(|h| h.agent)
        .map(|h| h.name.clone())
        .collect();
    let Some(host) = state.hosts.iter_mut().find(|h| h.name == target) else {
        bail!(
            "no host {target:?} in the lab; targets: {SERVER}, {}",
            names.join(", ")
        );
    };
    host.process
        .as_mut()
        .with_context(|| format!("host {target} runs no agent"))
}

/// `lab stop`: SIGTERM (or SIGKILL with `kill`) to the target, then waits until it is gone.
pub fn stop(args: &LabArgs, target: &str, sigkill: bool) -> anyhow::Result<()> {
    if !sys::is_root() {
        bail!("`softvpc lab stop` needs root");
    }
    let mut state = load(args)?;
    let rec = record(&mut state, target)?;
    if !rec.is_running() {
        outln!("{target} is not running");
        return Ok(());
    }
    if rec.argv.is_empty() {
        // A lab made before command lines were recorded: keep it for `start`.
        rec.argv = sys::cmdline(rec.pid).unwrap_or_default();
    }
    let pid = rec.pid;
    let signal = if sigkill {
        Signal::SIGKILL
    } else {
        Signal::SIGTERM
    };
    state.save(&args.state_dir)?;
    kill(Pid::from_raw(pid), signal).with_context(|| format!("sending {signal} to {pid}"))?;
    let deadline = Instant::now() + STOP_WAIT;
    // Gone, not only a zombie leader: its other threads may still hold its sockets (a restart
    // would find the VXLAN port in use) until the last one exits and the process is reaped.
    let task_dir = format!("/proc/{pid}/task");
    while sys::pid_alive(pid) || std::fs::read_dir(&task_dir).is_ok_and(|d| d.count() > 1) {
        if Instant::now() >= deadline {
            bail!("{target} (pid {pid}) did not exit within {STOP_WAIT:?} of {signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    outln!("stopped {target} (pid {pid}, {signal})");
    Ok(())
}

/// `lab start`: runs the target's recorded command line again (its log is appended to) and
/// records the new process. Refused while it runs.
pub fn start(args: &LabArgs, target: &str) -> anyhow::Result<()> {
    if !sys::is_root() {
        bail!("`softvpc lab start` needs root");
    }
    let mut state = load(args)?;
    let rec = record(&mut state, target)?;
    if rec.is_running() {
        bail!(
            "{target} is running (pid {}); `softvpc lab stop {target}` first",
            rec.pid
        );
    }
    let Some((bin, rest)) = rec.argv.split_first() else {
        bail!("the state file has no command line for {target} (a lab made by an older softvpc)");
    };
    let child = sys::spawn_detached(std::path::Path::new(bin), rest, &rec.log)?;
    let pid = child.id() as i32;
    let argv = rec.argv.clone();
    *rec = ProcessRecord::new(pid, rec.log.clone());
    rec.argv = argv;
    state.save(&args.state_dir)?;
    outln!("started {target} (pid {pid})");
    Ok(())
}
