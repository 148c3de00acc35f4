//! `<state-dir>/state.json`: what a lab created (namespaces, processes, API resources), written
//! after every step of `lab up` so that `down`, `status` and `exec` know it even after a crash
//! or a half-finished `up`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The state file's name inside the state dir.
pub const STATE_FILE: &str = "state.json";

/// Everything the lab recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    /// Prefix of every namespace and link of this lab.
    pub prefix: String,
    /// The EC2 API endpoint (`http://127.0.0.1:PORT`).
    pub api_url: String,
    /// The EC2 API port.
    pub api_port: u16,
    /// The server's shared-credentials file (its API key pair), written on its first start.
    #[serde(default)]
    pub credentials_file: PathBuf,
    /// The binary the lab started its processes from.
    pub bin: PathBuf,
    /// Unix time (seconds) when `up` started.
    pub created_at: u64,
    /// True once `up` finished successfully.
    pub complete: bool,
    /// The server process.
    pub server: Option<ProcessRecord>,
    /// The fabric namespace (the underlay bridge), once created.
    pub fabric_netns: Option<String>,
    /// The hosts, in topology order.
    pub hosts: Vec<HostRecord>,
    /// The VPCs and their subnets as created through the API.
    pub vpcs: Vec<VpcRecord>,
    /// The instances as launched through the API.
    pub instances: Vec<InstanceRecord>,
    /// Every netns the lab itself created (instance namespaces are the agents').
    pub netns: Vec<String>,
    /// The lab's internet, once created.
    #[serde(default)]
    pub internet: Option<InternetRecord>,
    /// `lab up --ha`: the server replicas (the first is also `server`).
    #[serde(default)]
    pub replicas: Vec<ReplicaRecord>,
    /// `lab up --ha`: the etcd cluster's members.
    #[serde(default)]
    pub etcd: Vec<EtcdRecord>,
}

/// A server replica of `lab up --ha`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    /// `replica-N`.
    pub name: String,
    /// Its network namespace (on the fabric).
    pub netns: String,
    /// Its EC2 API endpoint (`http://127.0.0.N:PORT`, root netns).
    pub api_url: String,
    /// Its mapping service (`https://198.18.1.N:8788`).
    pub mapping_url: String,
    /// Its data directory (CA and API key pair copied from the first replica's).
    pub data_dir: PathBuf,
    /// Its process, once started.
    pub process: Option<ProcessRecord>,
}

/// An etcd member of `lab up --ha`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdRecord {
    /// `etcd-N` (its etcd member name).
    pub name: String,
    /// Its network namespace (on the fabric).
    pub netns: String,
    /// Its client URL (`http://198.18.2.N:2379`).
    pub client_url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its process, once started.
    pub process: Option<ProcessRecord>,
}

/// The lab's internet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternetRecord {
    /// Its network namespace.
    pub netns: String,
    /// Its hosts' addresses.
    pub hosts: Vec<String>,
    /// Where its HTTP server listens, if it has one.
    pub http: Option<String>,
    /// Where its UDP echo listens, if it has one.
    pub udp_echo: Option<String>,
    /// The process serving both (none without servers).
    pub process: Option<ProcessRecord>,
}

/// A process the lab started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// Its process id.
    pub pid: i32,
    /// Where its output goes.
    pub log: PathBuf,
    /// Its start time (see [`crate::sys::start_time`]), to tell it from a later process that
    /// got the same pid.
    #[serde(default)]
    pub start_time: Option<u64>,
    /// Its command line (program first), so `lab start` can run it again after `lab stop`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
}

impl ProcessRecord {
    /// Records a process just started.
    pub fn new(pid: i32, log: PathBuf) -> ProcessRecord {
        ProcessRecord {
            pid,
            log,
            start_time: crate::sys::start_time(pid),
            argv: Vec::new(),
        }
    }

    /// The same record with the command line it was started with.
    pub fn with_argv(mut self, bin: &Path, args: &[String]) -> ProcessRecord {
        self.argv = std::iter::once(bin.display().to_string())
            .chain(args.iter().cloned())
            .collect();
        self
    }

    /// Whether this very process still runs (not just some process with its pid).
    pub fn is_running(&self) -> bool {
        crate::sys::pid_alive(self.pid)
            && (self.start_time.is_none() || crate::sys::start_time(self.pid) == self.start_time)
    }

    /// Whether the pid still names this very process (known start time that matches).
    pub fn is_same_process(&self) -> bool {
        self.start_time.is_some() && crate::sys::start_time(self.pid) == self.start_time
    }
}

/// A host of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Its name in the topology.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its underlay address.
    pub underlay_ip: String,
    /// Whether an agent runs for it.
    pub agent: bool,
    /// Its agent process (none for agent-less hosts).
    pub process: Option<ProcessRecord>,
    /// Its id once registered (`h-...`).
    pub host_id: Option<String>,
}

/// A VPC the lab created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcRecord {
    /// Its name in the topology (and Name tag).
    pub name: String,
    /// Its CIDR block.
    pub cidr: String,
    /// `vpc-...`.
    pub vpc_id: String,
    /// Its subnets.
    pub subnets: Vec<SubnetRecord>,
}

/// A subnet the lab created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetRecord {
    /// Its Name tag, if the topology gives one.
    pub name: Option<String>,
    /// Its CIDR block.
    pub cidr: String,
    /// `subnet-...`.
    pub subnet_id: String,
}

/// An instance the lab launched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Its name in the topology (and Name tag).
    pub name: String,
    /// `i-...`.
    pub instance_id: String,
    /// Its network namespace (the agent creates it).
    pub netns: String,
    /// Its primary private address.
    pub ip: Option<String>,
    /// The host it is placed on (topology name).
    pub host: String,
    /// Its VPC (topology name).
    pub vpc: String,
    /// `vpc-...`.
    pub vpc_id: String,
    /// `subnet-...`.
    pub subnet_id: String,
}

impl LabState {
    /// The state file of the lab in `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(STATE_FILE)
    }

    /// Reads the state file; `Ok(None)` when there is none.
    pub fn load(state_dir: &Path) -> anyhow::Result<Option<LabState>> {
        let path = Self::path(state_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let state = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a lab state file", path.display()))?;
        Ok(Some(state))
    }

    /// Writes the state file atomically (temp file + rename), so a crash never leaves half a file.
    pub fn save(&self, state_dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(state_dir);
        let tmp = state_dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Every process the lab recorded.
    pub fn processes(&self) -> impl Iterator<Item = &ProcessRecord> {
        let server = self.server.as_ref().map(|p| p.pid);
        self.server
            .iter()
            .chain(
                self.replicas
                    .iter()
                    .filter_map(|r| r.process.as_ref())
                    .filter(move |p| Some(p.pid) != server),
            )
            .chain(self.hosts.iter().filter_map(|h| h.process.as_ref()))
            .chain(self.internet.iter().filter_map(|i| i.process.as_ref()))
            .chain(self.etcd.iter().filter_map(|e| e.process.as_ref()))
    }

    /// Whether this is a `lab up --ha` lab.
    pub fn is_ha(&self) -> bool {
        !self.etcd.is_empty() || !self.replicas.is_empty()
    }

    /// Pids of every process the lab recorded.
    pub fn pids(&self) -> Vec<i32> {
        self.processes().map(|p| p.pid).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_the_file() {
        let dir =
            std::env::temp_dir().join(format!("softvpc-lab-state-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(LabState::load(&dir).unwrap(), None);
        let state = LabState {
            prefix: "t-".into(),
            api_port: 8787,
            server: Some(ProcessRecord {
                pid: 10,
                log: dir.join("logs/server.log"),
                start_time: None,
                argv: Vec::new(),
            }),
            hosts: vec![HostRecord {
                name: "host-1".into(),
                netns: "t-host-1".into(),
                underlay_ip: "198.18.0.11".into(),
                agent: true,
                process: Some(ProcessRecord {
                    pid: 11,
                    log: dir.join("logs/agent-host-1.log"),
                    start_time: None,
                    argv: vec!["softvpc".into(), "agent".into()],
                }),
                host_id: None,
            }],
            ..LabState::default()
        };
        state.save(&dir).unwrap();
        assert_eq!(LabState::load(&dir).unwrap(), Some(state.clone()));
        assert_eq!(state.pids(), [10, 11]);
        std::fs::write(LabState::path(&dir), "{").unwrap();
        assert!(LabState::load(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
