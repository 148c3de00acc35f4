//! `softvpc lab status [--json]`: the server, the hosts and their agents, and the instances as
//! the API reports them (DescribeInstances), with their namespaces.

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::bail;
use serde::Serialize;

use crate::ec2::{Ec2Client, InstanceInfo};
use crate::names;
use crate::state::{LabState, ProcessRecord};
use crate::sys;
use crate::LabArgs;

/// What `lab status` reports.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The lab's namespace and link prefix.
    pub prefix: String,
    /// The EC2 API endpoint, if the lab got that far.
    pub api_url: Option<String>,
    /// The server's shared-credentials file (sign API requests with its `default` profile).
    pub credentials_file: Option<std::path::PathBuf>,
    /// The server process.
    pub server: ProcessStatus,
    /// The hosts and their agents.
    pub hosts: Vec<HostStatus>,
    /// The instances.
    pub instances: Vec<InstanceStatus>,
    /// The lab's internet, if it has one.
    pub internet: Option<InternetStatus>,
    /// `lab up --ha`: the server replicas (the first is `server`).
    pub replicas: Vec<ReplicaStatus>,
    /// `lab up --ha`: the etcd members.
    pub etcd: Vec<EtcdStatus>,
}

/// A server replica of `lab up --ha`.
#[derive(Debug, Serialize)]
pub struct ReplicaStatus {
    /// `replica-N`.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its EC2 API endpoint.
    pub api_url: String,
    /// Its mapping service, as agents are given it.
    pub mapping_url: String,
    /// Its data directory (`softvpc server join-token --data-dir` and `remove-host` use it).
    pub data_dir: std::path::PathBuf,
    /// Its process id.
    pub pid: Option<i32>,
    /// Whether it still runs.
    pub running: bool,
}

/// An etcd member of `lab up --ha`.
#[derive(Debug, Serialize)]
pub struct EtcdStatus {
    /// Its member name.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its client URL (reachable from the lab's namespaces on the fabric).
    pub client_url: String,
    /// Its process id.
    pub pid: Option<i32>,
    /// Whether it still runs.
    pub running: bool,
}

/// The lab's internet and its servers.
#[derive(Debug, Serialize)]
pub struct InternetStatus {
    /// Its network namespace.
    pub netns: String,
    /// Its hosts' addresses.
    pub hosts: Vec<String>,
    /// The HTTP server's address.
    pub http: Option<String>,
    /// The UDP echo's address.
    pub udp_echo: Option<String>,
    /// The servers' process id.
    pub pid: Option<i32>,
    /// Whether the servers still run.
    pub running: bool,
}

/// Whether a process the lab started still runs.
#[derive(Debug, Serialize)]
pub struct ProcessStatus {
    /// Its process id, if it was started.
    pub pid: Option<i32>,
    /// Whether it is still running (the same process, not a reused pid).
    pub running: bool,
}

/// A host and its agent.
#[derive(Debug, Serialize)]
pub struct HostStatus {
    /// Its name in the topology.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its underlay address.
    pub underlay_ip: String,
    /// Whether the lab runs an agent for it.
    pub agent: bool,
    /// The agent's process id.
    pub pid: Option<i32>,
    /// Whether the agent still runs.
    pub running: bool,
}

/// An instance, from the API when it answers, else from the state file.
#[derive(Debug, Serialize)]
pub struct InstanceStatus {
    /// Its `Name` tag.
    pub name: Option<String>,
    /// `i-...`.
    pub instance_id: String,
    /// Its network namespace.
    pub netns: String,
    /// Its primary private address.
    pub ip: Option<String>,
    /// The MAC of its first interface.
    pub mac: Option<String>,
    /// The host it is placed on (name when known, else id).
    pub host: Option<String>,
    /// `vpc-...`.
    pub vpc_id: Option<String>,
    /// Its VPC's Name tag.
    pub vpc_name: Option<String>,
    /// `subnet-...`.
    pub subnet_id: Option<String>,
    /// `pending`, `running`, ... (`unknown` when the API does not answer).
    pub state: Option<String>,
}

/// The instances of a lab: from the API when it answers, else from the state file (state
/// "unknown"). The error says why the API could not be used.
/// With `--ha`, each replica is asked in turn until one answers.
pub fn instances(state: &LabState) -> (Vec<InstanceStatus>, Option<anyhow::Error>) {
    let mut answer = instances_from(state, &state.api_url);
    for r in &state.replicas {
        if answer.1.is_none() {
            break;
        }
        if r.api_url != state.api_url {
            answer = instances_from(state, &r.api_url);
        }
    }
    answer
}

/// [`instances`], asking the API at `api_url` (a lab's replica).
fn instances_from(state: &LabState, api_url: &str) -> (Vec<InstanceStatus>, Option<anyhow::Error>) {
    let addr: SocketAddr = match api_url.trim_start_matches("http://").parse() {
        Ok(a) => a,
        Err(_) => {
            return (
                from_state(state),
                Some(anyhow::anyhow!(
                    "bad API URL {:?} in the state file",
                    api_url
                )),
            )
        }
    };
    let api = match Ec2Client::new(addr, state.credentials_file.clone()) {
        Ok(api) => api,
        Err(e) => return (from_state(state), Some(e)),
    };
    match api.describe_instances() {
        Ok(list) => {
            // Names are best effort: a failing DescribeHosts/DescribeVpcs falls back to the
            // state file's record.
            let mut host_names: HashMap<String, String> = state
                .hosts
                .iter()
                .filter_map(|h| Some((h.host_id.clone()?, h.name.clone())))
                .collect();
            if let Ok(hosts) = api.describe_hosts() {
                host_names.extend(hosts.into_iter().filter_map(|h| Some((h.host_id, h.name?))));
            }
            let mut vpc_names: HashMap<String, String> = state
                .vpcs
                .iter()
                .map(|v| (v.vpc_id.clone(), v.name.clone()))
                .collect();
            if let Ok(vpcs) = api.describe_vpcs() {
                vpc_names.extend(vpcs.into_iter().filter_map(|v| Some((v.vpc_id, v.name?))));
            }
            // The lab's own instances first, in topology order; then any created through the
            // API since, by id.
            let order: HashMap<&str, usize> = state
                .instances
                .iter()
                .enumerate()
                .map(|(i, r)| (r.instance_id.as_str(), i))
                .collect();
            let mut list = list;
            list.sort_by(|a, b| {
                let key = |i: &InstanceInfo| {
                    order
                        .get(i.instance_id.as_str())
                        .copied()
                        .unwrap_or(usize::MAX)
                };
                key(a)
                    .cmp(&key(b))
                    .then_with(|| a.instance_id.cmp(&b.instance_id))
            });
            let out = list
                .into_iter()
                .map(|i: InstanceInfo| InstanceStatus {
                    netns: names::instance_netns(&state.prefix, &i.instance_id),
                    host: i
                        .host_id
                        .as_ref()
                        .and_then(|h| host_names.get(h).cloned())
                        .or(i.host_id.clone()),
                    vpc_name: i.vpc_id.as_ref().and_then(|v| vpc_names.get(v).cloned()),
                    name: i.name,
                    instance_id: i.instance_id,
                    ip: i.ip,
                    mac: i.mac,
                    vpc_id: i.vpc_id,
                    subnet_id: i.subnet_id,
                    state: i.state,
                })
                .collect();
            (out, None)
        }
        Err(e) => (from_state(state), Some(e)),
    }
}

fn from_state(state: &LabState) -> Vec<InstanceStatus> {
    state
        .instances
        .iter()
        .map(|r| InstanceStatus {
            name: Some(r.name.clone()),
            instance_id: r.instance_id.clone(),
            netns: r.netns.clone(),
            ip: r.ip.clone(),
            mac: None,
            host: Some(r.host.clone()),
            vpc_id: Some(r.vpc_id.clone()),
            vpc_name: Some(r.vpc.clone()),
            subnet_id: Some(r.subnet_id.clone()),
            state: Some("unknown".to_string()),
        })
        .collect()
}

/// `lab status`.
pub fn status(args: &LabArgs, json: bool) -> anyhow::Result<()> {
    let Some(state) = LabState::load(&args.state_dir)? else {
        if json {
            let empty = Status {
                prefix: args.prefix.clone(),
                api_url: None,
                credentials_file: None,
                server: ProcessStatus {
                    pid: None,
                    running: false,
                },
                hosts: Vec::new(),
                instances: Vec::new(),
                internet: None,
                replicas: Vec::new(),
                etcd: Vec::new(),
            };
            outln!("{}", serde_json::to_string_pretty(&empty)?);
        }
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
    let server = ProcessStatus {
        pid: state.server.as_ref().map(|p| p.pid),
        running: state.server.as_ref().is_some_and(ProcessRecord::is_running),
    };
    let hosts: Vec<HostStatus> = state
        .hosts
        .iter()
        .map(|h| HostStatus {
            name: h.name.clone(),
            netns: h.netns.clone(),
            underlay_ip: h.underlay_ip.clone(),
            agent: h.agent,
            pid: h.process.as_ref().map(|p| p.pid),
            running: h.process.as_ref().is_some_and(ProcessRecord::is_running),
        })
        .collect();
    let replicas: Vec<ReplicaStatus> = state
        .replicas
        .iter()
        .map(|r| ReplicaStatus {
            name: r.name.clone(),
            netns: r.netns.clone(),
            api_url: r.api_url.clone(),
            mapping_url: r.mapping_url.clone(),
            data_dir: r.data_dir.clone(),
            pid: r.process.as_ref().map(|p| p.pid),
            running: r.process.as_ref().is_some_and(ProcessRecord::is_running),
        })
        .collect();
    let etcd: Vec<EtcdStatus> = state
        .etcd
        .iter()
        .map(|e| EtcdStatus {
            name: e.name.clone(),
            netns: e.netns.clone(),
            client_url: e.client_url.clone(),
            pid: e.process.as_ref().map(|p| p.pid),
            running: e.process.as_ref().is_some_and(ProcessRecord::is_running),
        })
        .collect();
    // The instances from the server, or with --ha from a replica that runs.
    let (instances, api_error) = match server.running || replicas.iter().any(|r| r.running) {
        true => instances(&state),
        false => (from_state(&state), None),
    };
    let status = Status {
        prefix: state.prefix.clone(),
        api_url: Some(state.api_url.clone()),
        credentials_file: Some(state.credentials_file.clone()),
        server,
        hosts,
        instances,
        internet: state.internet.as_ref().map(|i| InternetStatus {
            netns: i.netns.clone(),
            hosts: i.hosts.clone(),
            http: i.http.clone(),
            udp_echo: i.udp_echo.clone(),
            pid: i.process.as_ref().map(|p| p.pid),
            running: i.process.as_ref().is_some_and(ProcessRecord::is_running),
        }),
        replicas,
        etcd,
    };

    let mut problems = Vec::new();
    if !state.complete {
        problems.push("`lab up` did not finish".to_string());
    }
    if status.replicas.is_empty() && !status.server.running {
        problems.push("the server is not running".to_string());
    }
    for r in status.replicas.iter().filter(|r| !r.running) {
        problems.push(format!("server {} is not running", r.name));
    }
    for e in status.etcd.iter().filter(|e| !e.running) {
        problems.push(format!("etcd member {} is not running", e.name));
    }
    for h in status.hosts.iter().filter(|h| h.agent && !h.running) {
        problems.push(format!("the agent of {} is not running", h.name));
    }
    if let Some(i) = status
        .internet
        .as_ref()
        .filter(|i| i.pid.is_some() && !i.running)
    {
        problems.push(format!(
            "the internet's servers ({}) are not running",
            i.netns
        ));
    }
    if let Some(e) = &api_error {
        problems.push(format!("the API does not answer: {e:#}"));
    }

    if json {
        outln!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_human(&status, &args.state_dir);
    }
    // A lab that is up but degraded still exits 0: scripts read the JSON to see what runs.
    for p in &problems {
        eprintln!("warning: {p}");
    }
    Ok(())
}

fn running(pid: Option<i32>, running: bool) -> String {
    match (pid, running) {
        (Some(pid), true) => format!("pid {pid}, running"),
        (Some(pid), false) => format!("pid {pid}, NOT RUNNING"),
        (None, _) => "not started".to_string(),
    }
}

fn print_human(s: &Status, state_dir: &std::path::Path) {
    outln!("lab {:?} (state {})", s.prefix, state_dir.display());
    outln!("  API     {}", s.api_url.as_deref().unwrap_or("-"));
    if s.replicas.is_empty() {
        outln!("  server  {}", running(s.server.pid, s.server.running));
    } else {
        outln!("server replicas (etcd store):");
        for r in &s.replicas {
            outln!(
                "  {:<10} API {:<22} mapping {:<24} netns {:<18} {}",
                r.name,
                r.api_url,
                r.mapping_url,
                r.netns,
                running(r.pid, r.running)
            );
        }
        outln!("etcd members:");
        for e in &s.etcd {
            outln!(
                "  {:<10} {:<24} netns {:<18} {}",
                e.name,
                e.client_url,
                e.netns,
                running(e.pid, e.running)
            );
        }
    }
    outln!("hosts:");
    for h in &s.hosts {
        let agent = if h.agent {
            format!("agent {}", running(h.pid, h.running))
        } else {
            "no agent (registered only)".to_string()
        };
        outln!(
            "  {:<10} netns {:<16} underlay {:<13} {agent}",
            h.name,
            h.netns,
            h.underlay_ip
        );
    }
    if let Some(i) = &s.internet {
        let mut servers = Vec::new();
        if let Some(a) = &i.http {
            servers.push(format!("http {a}"));
        }
        if let Some(a) = &i.udp_echo {
            servers.push(format!("udp echo {a}"));
        }
        outln!("internet: netns {}, hosts {}", i.netns, i.hosts.join(", "));
        if !servers.is_empty() {
            outln!("  {} ({})", servers.join(", "), running(i.pid, i.running));
        }
    }
    outln!("instances:");
    outln!(
        "  {:<12} {:<21} {:<12} {:<8} {:<12} {:<10} NETNS",
        "NAME",
        "INSTANCE ID",
        "IP",
        "HOST",
        "VPC",
        "STATE"
    );
    for i in &s.instances {
        let ns = if sys::netns_exists(&i.netns) {
            i.netns.clone()
        } else {
            format!("{} (absent)", i.netns)
        };
        outln!(
            "  {:<12} {:<21} {:<12} {:<8} {:<12} {:<10} {ns}",
            i.name.as_deref().unwrap_or("-"),
            i.instance_id,
            i.ip.as_deref().unwrap_or("-"),
            i.host.as_deref().unwrap_or("-"),
            i.vpc_name.as_deref().or(i.vpc_id.as_deref()).unwrap_or("-"),
            i.state.as_deref().unwrap_or("-"),
        );
    }
}
