//! `softvpc lab exec NAME -- CMD...`: run a command inside an instance's netns (or, for NAME
//! `internet`, the lab's internet), replacing this
//! process (so exit code, stdin and signals pass straight through), as `ip netns exec` does.

use anyhow::bail;

use crate::state::LabState;
use crate::status;
use crate::sys;
use crate::LabArgs;

/// An instance that NAME may designate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its `Name` tag.
    pub name: Option<String>,
    /// `i-...`.
    pub instance_id: String,
    /// Its instance state, when the API answered.
    pub state: Option<String>,
}

/// Finds the instance NAME designates (an instance id, or a Name tag). Among several with the
/// same Name tag, the ones not terminated win; if that still leaves several, it is an error.
pub fn resolve(name: &str, candidates: &[Candidate]) -> Result<String, String> {
    if let Some(c) = candidates.iter().find(|c| c.instance_id == name) {
        return Ok(c.instance_id.clone());
    }
    let by_name: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.name.as_deref() == Some(name))
        .collect();
    let live: Vec<&&Candidate> = by_name
        .iter()
        .filter(|c| !matches!(c.state.as_deref(), Some("terminated" | "shutting-down")))
        .collect();
    match (live.as_slice(), by_name.as_slice()) {
        ([one], _) => Ok(one.instance_id.clone()),
        ([], [one]) => Ok(one.instance_id.clone()),
        ([], []) => {
            let mut known: Vec<String> = candidates
                .iter()
                .map(|c| match &c.name {
                    Some(n) => format!("{n} ({})", c.instance_id),
                    None => c.instance_id.clone(),
                })
                .collect();
            known.sort();
            let known = if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            };
            Err(format!(
                "no instance is named {name:?}; known instances: {known}"
            ))
        }
        (several, _) if !several.is_empty() => {
            let ids: Vec<&str> = several.iter().map(|c| c.instance_id.as_str()).collect();
            Err(format!(
                "several instances are named {name:?}: {}; use an instance id",
                ids.join(", ")
            ))
        }
        (_, several) => {
            let ids: Vec<&str> = several.iter().map(|c| c.instance_id.as_str()).collect();
            Err(format!(
                "several terminated instances are named {name:?}: {}; use an instance id",
                ids.join(", ")
            ))
        }
    }
}

/// `lab exec`.
pub fn exec(args: &LabArgs, name: &str, cmd: &[String]) -> anyhow::Result<()> {
    let Some(state) = LabState::load(&args.state_dir)? else {
        bail!(
            "no lab is up with prefix {:?} (no state in {})",
            args.prefix,
            args.state_dir.display()
        );
    };
    if state.prefix != args.prefix {
        bail!(
            "the state dir {} belongs to the lab with prefix {:?}, not {:?}",
            args.state_dir.display(),
            state.prefix,
            args.prefix
        );
    }
    if name == "internet" {
        let Some(internet) = &state.internet else {
            bail!("the lab has no internet (its topology has no [internet])");
        };
        return exec_in(&internet.netns, name, cmd);
    }
    let (instances, _) = status::instances(&state);
    let candidates: Vec<Candidate> = instances
        .into_iter()
        .map(|i| Candidate {
            name: i.name,
            instance_id: i.instance_id,
            state: i.state,
        })
        .collect();
    let instance_id = resolve(name, &candidates).map_err(anyhow::Error::msg)?;
    let ns = crate::names::instance_netns(&args.prefix, &instance_id);
    if !sys::netns_exists(&ns) {
        let st = candidates
            .iter()
            .find(|c| c.instance_id == instance_id)
            .and_then(|c| c.state.clone())
            .unwrap_or_else(|| "unknown".into());
        bail!("instance {name} ({instance_id}, state {st}) has no netns {ns} (not yet created by its agent, terminated, or on an agent-less host)");
    }
    exec_in(&ns, name, cmd)
}

/// Replaces this process with CMD inside `ns`.
fn exec_in(ns: &str, name: &str, cmd: &[String]) -> anyhow::Result<()> {
    let Some((program, rest)) = cmd.split_first() else {
        bail!("no command given: softvpc lab exec {name} -- COMMAND [ARGS...]");
    };
    let args: Vec<std::ffi::OsString> = rest.iter().map(Into::into).collect();
    // Returns only if the command could not be started.
    let err = sys::exec_in_netns(ns, &program.into(), &args);
    bail!("{err}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: Option<&str>, id: &str, state: &str) -> Candidate {
        Candidate {
            name: name.map(String::from),
            instance_id: id.into(),
            state: Some(state.into()),
        }
    }

    #[test]
    fn names_and_ids_resolve() {
        let all = [
            c(Some("zigi-vm1"), "i-1", "running"),
            c(Some("zigi-vm2"), "i-2", "running"),
            c(None, "i-3", "pending"),
        ];
        assert_eq!(resolve("zigi-vm1", &all), Ok("i-1".into()));
        assert_eq!(resolve("i-2", &all), Ok("i-2".into()));
        assert_eq!(resolve("i-3", &all), Ok("i-3".into()));
        let e = resolve("zigi-vm9", &all).unwrap_err();
        assert_eq!(e, "no instance is named \"zigi-vm9\"; known instances: i-3, zigi-vm1 (i-1), zigi-vm2 (i-2)");
        assert!(resolve("x", &[])
            .unwrap_err()
            .ends_with("known instances: none"));
    }

    #[test]
    fn live_instances_win_over_terminated_ones() {
        let all = [
            c(Some("vm"), "i-old", "terminated"),
            c(Some("vm"), "i-new", "running"),
        ];
        assert_eq!(resolve("vm", &all), Ok("i-new".into()));
        assert_eq!(resolve("vm", &all[..1]), Ok("i-old".into()));
        let twins = [
            c(Some("vm"), "i-a", "running"),
            c(Some("vm"), "i-b", "pending"),
        ];
        let e = resolve("vm", &twins).unwrap_err();
        assert!(
            e.contains("several instances are named \"vm\": i-a, i-b"),
            "{e}"
        );
    }
}
