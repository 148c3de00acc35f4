//! `softvpc trace`: asks the agents of the lab's hosts to run one packet through their live
//! engines (`POST /trace` on the sender's host; `POST /trace/underlay` on each host the
//! datagram the data path would send goes to) and prints each layer's decision and the rule
//! behind it, per host, ending in DELIVERED or DROPPED with the reason.
//!
//! The agents are the ones given with `--agent [NETNS/]ADDR:PORT` (any softvpc agents: each
//! says its host name and underlay address in its `/mappings`), else the lab's, from its state
//! file (each agent's endpoint is loopback in its host's namespace, `127.0.0.1:9469`). An
//! endpoint in a namespace is reached from a thread inside it. Which host holds the sender comes
//! from the agents' own views (`/mappings`: their ports, and the instances' Name tags).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};

use crate::state::LabState;

/// The agents' endpoint in their namespaces (the agent's `--metrics-listen` default).
pub const AGENT_ENDPOINT: &str = "127.0.0.1:9469";
/// Hosts a trace may cross before it is cut (a loop would be a bug; this bounds it).
const MAX_HOPS: usize = 8;

/// `softvpc trace --help`.
pub const LONG_ABOUT: &str = "\
Where one packet would go and why, decided by the live engines of the lab's hosts.

Runs the packet through the same engine code as real traffic, with the live tables and
connection tracking of each host it crosses (nothing is sent, nothing changes), and prints per
host and per layer (gateway, security group, network ACL, route, NAT, overlay) the decision and
the rule behind it: the sgr- rule, the ACL and its rule number, the route table, route and
target, the peering connection. It ends in DELIVERED (to an ENI, or answered by the virtual
router) or DROPPED with the reason (the reason the drop counters would show). The frame is
built as the instance would send it: TCP SYN, UDP datagram, ICMP echo request, or an empty
packet of another protocol, after ARP for the next hop (traced too: if nothing answers, the
instance cannot send). --json prints every host's answer as one JSON document.

It asks the lab's agents, or the agents given with --agent (softvpc agents anywhere, e.g.
--agent 198.18.0.11:9469 for an agent run with --metrics-listen 198.18.0.11:9469, or
--agent NETNS/127.0.0.1:9469 for one listening on loopback inside a network namespace); a
datagram the trace sends to a host none of them runs on is reported as not traced.

Examples:
  softvpc trace --from zigi-vm1 tcp 10.0.0.185:22
  softvpc trace --agent svpc-host-1/127.0.0.1:9469 --agent svpc-host-2/127.0.0.1:9469 \\
      --from zigi-vm1 tcp 10.0.0.185:22
  softvpc trace --from zigi-vm1 icmp 10.0.1.20
  softvpc trace --from eni-0abc udp 10.0.0.30:53 --src-port 5353 --json";

/// `softvpc trace`'s arguments (see [`LONG_ABOUT`]).
#[derive(clap::Args, Debug, Clone)]
pub struct TraceArgs {
    /// The sender: an instance (Name tag or id) or an ENI id.
    #[arg(long)]
    pub from: String,
    /// tcp, udp, icmp, or a protocol number.
    pub protocol: String,
    /// The destination: ADDRESS, or ADDRESS:PORT (a port is required for tcp and udp).
    pub destination: String,
    /// The source address (default: the sender ENI's primary address; an instance's ENI that
    /// holds it is used).
    #[arg(long)]
    pub src: Option<Ipv4Addr>,
    /// The source port for tcp and udp (default 32768).
    #[arg(long)]
    pub src_port: Option<u16>,
    /// Print the agents' answers as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// Directory holding the lab's state (read only without --agent).
    #[arg(long, env = "SOFTVPC_LAB_DIR", default_value = "/run/softvpc-lab")]
    pub state_dir: PathBuf,
    /// An agent to ask instead of the lab's (repeat for every host the packet may cross): its
    /// HTTP endpoint (`softvpc agent --metrics-listen`), ADDR:PORT, or NETNS/ADDR:PORT to reach
    /// it inside network namespace NETNS.
    #[arg(long = "agent", value_name = "[NETNS/]ADDR:PORT")]
    pub agents: Vec<String>,
}

/// One agent a trace may ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Its host's name.
    pub name: String,
    /// Its host's underlay address (where datagrams to it go).
    pub underlay_ip: String,
    /// The network namespace its endpoint is reached in (`None`: this one).
    pub netns: Option<String>,
    /// Its HTTP endpoint, ADDR:PORT.
    pub endpoint: String,
}

/// Splits `--agent [NETNS/]ADDR:PORT` into (namespace, endpoint).
pub fn parse_agent(s: &str) -> Result<(Option<String>, String), String> {
    let (ns, endpoint) = match s.rsplit_once('/') {
        Some((ns, e)) if !ns.is_empty() => (Some(ns.to_string()), e),
        Some(_) => return Err(format!("bad --agent {s:?}: NETNS/ADDR:PORT or ADDR:PORT")),
        None => (None, s),
    };
    endpoint
        .parse::<std::net::SocketAddr>()
        .map_err(|_| format!("bad --agent {s:?}: the endpoint must be ADDR:PORT"))?;
    Ok((ns, endpoint.to_string()))
}

/// The agents to ask: the `--agent`s (named by their own `/mappings`), else the lab's.
fn agents(args: &TraceArgs) -> anyhow::Result<Vec<Agent>> {
    if !args.agents.is_empty() {
        let mut out = Vec::new();
        for a in &args.agents {
            let (netns, endpoint) = parse_agent(a).map_err(anyhow::Error::msg)?;
            let mut agent = Agent {
                name: String::new(),
                underlay_ip: String::new(),
                netns,
                endpoint,
            };
            let view = request(&agent, "GET", "/mappings", None)
                .with_context(|| format!("asking the agent at {a} who it is"))?;
            agent.name = view["host_name"].as_str().unwrap_or_default().to_string();
            agent.underlay_ip = view["underlay_ip"].as_str().unwrap_or_default().to_string();
            if agent.underlay_ip.is_empty() {
                bail!("the agent at {a} did not say its underlay address");
            }
            out.push(agent);
        }
        return Ok(out);
    }
    let Some(state) = LabState::load(&args.state_dir)? else {
        bail!(
            "no lab is up (no state in {}); softvpc trace asks the lab's agents, or the ones \
             given with --agent",
            args.state_dir.display()
        );
    };
    Ok(state
        .hosts
        .iter()
        .filter(|h| h.agent)
        .map(|h| Agent {
            name: h.name.clone(),
            underlay_ip: h.underlay_ip.clone(),
            netns: Some(h.netns.clone()),
            endpoint: AGENT_ENDPOINT.to_string(),
        })
        .collect())
}

/// Splits `ADDRESS[:PORT]`.
pub fn parse_destination(s: &str) -> Result<(Ipv4Addr, Option<u16>), String> {
    let (addr, port) = match s.split_once(':') {
        Some((a, p)) => (
            a,
            Some(
                p.parse::<u16>()
                    .map_err(|_| format!("bad port in {s:?}: 0-65535"))?,
            ),
        ),
        None => (s, None),
    };
    let addr = addr
        .parse::<Ipv4Addr>()
        .map_err(|_| format!("bad destination {s:?}: an IPv4 address, optionally :PORT"))?;
    Ok((addr, port))
}

/// Runs `softvpc trace`.
pub fn run(args: &TraceArgs) -> anyhow::Result<()> {
    let (dst, dst_port) = parse_destination(&args.destination).map_err(anyhow::Error::msg)?;
    let agents = agents(args)?;
    // Who holds the sender, from the agents' own views.
    let mut views = Vec::new();
    for h in &agents {
        let v = request(h, "GET", "/mappings", None)
            .with_context(|| format!("asking the agent of {} for its view", h.name))?;
        views.push((h, v));
    }
    let from = resolve_sender(&args.from, &views).map_err(anyhow::Error::msg)?;
    let (first, _) = views
        .iter()
        .find(|(_, v)| holds(v, &from))
        .context("no agent holds the sender")?;
    let body = json!({
        "from": from,
        "protocol": args.protocol,
        "dst": dst.to_string(),
        "dst_port": dst_port,
        "src": args.src.map(|s| s.to_string()),
        "src_port": args.src_port,
    });
    let mut answer = request(first, "POST", "/trace", Some(body))?;
    let mut hops: Vec<Value> = answer["hops"].as_array().cloned().unwrap_or_default();
    let mut from_ip = first.underlay_ip.clone();
    while let Some(last) = hops.last() {
        if last["verdict"]["kind"] != "to_underlay" || hops.len() >= MAX_HOPS {
            break;
        }
        let host_ip = last["verdict"]["host_ip"].as_str().unwrap_or_default();
        let datagram = last["verdict"]["datagram"].clone();
        let Some(next) = agents.iter().find(|h| h.underlay_ip == host_ip) else {
            hops.push(json!({
                "host": null, "underlay_ip": host_ip, "stage": "ingress", "layers": [],
                "verdict": {"kind": "unknown_host",
                            "detail": format!("{host_ip} runs none of the agents asked: its fate is not traced")},
            }));
            break;
        };
        let a = request(
            next,
            "POST",
            "/trace/underlay",
            Some(json!({ "src": from_ip, "datagram": datagram })),
        )
        .with_context(|| format!("asking the agent of {} to trace the datagram", next.name))?;
        hops.extend(a["hops"].as_array().cloned().unwrap_or_default());
        from_ip = next.underlay_ip.clone();
    }
    let (verdict, reason) = final_verdict(&hops);
    answer["hops"] = Value::Array(hops);
    answer["verdict"] = json!(verdict);
    answer["reason"] = json!(reason);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", render(&answer));
    }
    Ok(())
}

/// Resolves `--from` (Name tag, instance id or ENI id) to an instance or ENI id some agent
/// holds a port for.
pub fn resolve_sender(from: &str, views: &[(&Agent, Value)]) -> Result<String, String> {
    if views.iter().any(|(_, v)| holds(v, from)) {
        return Ok(from.to_string());
    }
    let mut ids: Vec<String> = Vec::new();
    for (_, v) in views {
        for e in v["enis"].as_array().into_iter().flatten() {
            if e["instance_name"].as_str() == Some(from) {
                if let Some(i) = e["instance_id"].as_str() {
                    if views.iter().any(|(_, v)| holds(v, i)) && !ids.iter().any(|x| x == i) {
                        ids.push(i.to_string());
                    }
                }
            }
        }
    }
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "no instance or ENI {from:?} has a port on any agent asked"
        )),
        several => Err(format!(
            "several instances are named {from:?}: {}; use an instance id",
            several.join(", ")
        )),
    }
}

fn holds(view: &Value, id: &str) -> bool {
    view["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["eni_id"] == id || p["instance_id"] == id)
}

/// DELIVERED or DROPPED, and why.
pub fn final_verdict(hops: &[Value]) -> (&'static str, String) {
    let Some(last) = hops.last() else {
        return ("DROPPED", "no host traced the packet".into());
    };
    let v = &last["verdict"];
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_string();
    match v["kind"].as_str().unwrap_or_default() {
        "to_port" => ("DELIVERED", format!("to {}", s("eni"))),
        "reply" => (
            "DELIVERED",
            "answered by the virtual router (the VPC router address)".into(),
        ),
        "drop" => (
            "DROPPED",
            match v["detail"].as_str() {
                Some(d) => format!("{}: {d}", s("reason")),
                None => format!(
                    "{} (at {})",
                    s("reason"),
                    last["host"].as_str().unwrap_or("-")
                ),
            },
        ),
        "absorb" => ("DROPPED", format!("absorbed: {}", s("reason"))),
        "to_underlay" => (
            "DROPPED",
            format!("still travelling after {MAX_HOPS} hosts"),
        ),
        _ => ("DROPPED", s("detail")),
    }
}

/// The human-readable trace.
pub fn render(answer: &Value) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let p = &answer["packet"];
    let port = |k: &str| match p[k].as_u64() {
        Some(n) => format!(":{n}"),
        None => String::new(),
    };
    let _ = writeln!(
        o,
        "packet: {} ({}) protocol {} {}{} -> {}{}",
        p["from_instance"].as_str().unwrap_or("-"),
        p["from_eni"].as_str().unwrap_or("-"),
        p["protocol"],
        p["src"].as_str().unwrap_or("-"),
        port("src_port"),
        p["dst"].as_str().unwrap_or("-"),
        port("dst_port"),
    );
    for hop in answer["hops"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "{} ({}) {}:",
            hop["host"].as_str().unwrap_or("?"),
            hop["underlay_ip"].as_str().unwrap_or("?"),
            hop["stage"].as_str().unwrap_or("?"),
        );
        if let Some(nh) = hop.get("next_hop") {
            let _ = writeln!(
                o,
                "  arp          {} is-at {}",
                nh["ip"].as_str().unwrap_or("-"),
                nh["mac"].as_str().unwrap_or("-")
            );
        }
        for l in hop["layers"].as_array().into_iter().flatten() {
            let mut line = format!(
                "  {:<14} {}",
                l["layer"].as_str().unwrap_or("?"),
                l["decision"].as_str().unwrap_or("?")
            );
            if let Some(r) = l["reason"].as_str() {
                let _ = write!(line, " {r}");
            }
            if let Some(w) = l["why"]["text"].as_str() {
                let _ = write!(line, "  [{w}]");
            }
            let _ = writeln!(o, "{line}");
        }
        let v = &hop["verdict"];
        let target = match v["kind"].as_str().unwrap_or_default() {
            "to_port" => format!("to {}", v["eni"].as_str().unwrap_or("-")),
            "to_underlay" => format!("VXLAN to {}", v["host_ip"].as_str().unwrap_or("-")),
            "reply" => "answered".to_string(),
            "drop" => format!("drop {}", v["reason"].as_str().unwrap_or("-")),
            other => other.to_string(),
        };
        let _ = writeln!(o, "  -> {target}");
    }
    let _ = writeln!(
        o,
        "{} {}",
        answer["verdict"].as_str().unwrap_or("DROPPED"),
        answer["reason"].as_str().unwrap_or("")
    );
    o
}

/// One HTTP request to `agent` (from a thread in its namespace, if it has one), its JSON answer
/// (an agent's error answer becomes the error).
fn request(agent: &Agent, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let method = method.to_string();
    let path = path.to_string();
    let ns_name = agent
        .netns
        .clone()
        .unwrap_or_else(|| "this namespace".into());
    let endpoint = agent.endpoint.clone();
    let call = move || -> anyhow::Result<_> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let stream = tokio::time::timeout(
                std::time::Duration::from_secs(3),
                tokio::net::TcpStream::connect(endpoint.as_str()),
            )
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {endpoint} timed out"))?
            .with_context(|| format!("connecting to the agent at {endpoint} in {ns_name}"))?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let req = hyper::Request::builder()
                .method(method.as_str())
                .uri(path.as_str())
                .header("host", endpoint.as_str())
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(
                    body.map(|b| b.to_string()).unwrap_or_default(),
                )))?;
            let resp =
                tokio::time::timeout(std::time::Duration::from_secs(10), send.send_request(req))
                    .await
                    .map_err(|_| anyhow::anyhow!("the agent did not answer in 10 s"))??;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            Ok((status, bytes))
        })
    };
    let (status, bytes) = match &agent.netns {
        Some(ns) => softvpc_netlink::netns::run_in(ns, call)?,
        // A thread of its own all the same: the caller may run inside a runtime.
        None => std::thread::spawn(call)
            .join()
            .map_err(|_| anyhow::anyhow!("the trace request thread panicked"))??,
    };
    let value: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("the agent answered {status} with no JSON"))?;
    if !status.is_success() {
        bail!(
            "the agent answered {status}: {}",
            value["error"].as_str().unwrap_or("no reason given")
        );
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse() {
        assert_eq!(
            parse_destination("10.0.0.185:22"),
            Ok((Ipv4Addr::new(10, 0, 0, 185), Some(22)))
        );
        assert_eq!(
            parse_destination("10.0.0.1"),
            Ok((Ipv4Addr::new(10, 0, 0, 1), None))
        );
        assert!(parse_destination("10.0.0.1:x").is_err());
        assert!(parse_destination("host:22").is_err());
    }

    #[test]
    fn agents_parse() {
        assert_eq!(
            parse_agent("198.18.0.11:9469"),
            Ok((None, "198.18.0.11:9469".to_string()))
        );
        assert_eq!(
            parse_agent("svpc-host-1/127.0.0.1:9469"),
            Ok((
                Some("svpc-host-1".to_string()),
                "127.0.0.1:9469".to_string()
            ))
        );
        assert!(parse_agent("/127.0.0.1:9469").is_err());
        assert!(parse_agent("host-1").is_err());
        assert!(parse_agent("ns/127.0.0.1").is_err());
    }

    #[test]
    fn verdicts_come_from_the_last_hop() {
        let hop = |v: Value| json!({"host": "host-2", "verdict": v});
        assert_eq!(
            final_verdict(&[hop(json!({"kind": "to_port", "eni": "eni-1"}))]),
            ("DELIVERED", "to eni-1".to_string())
        );
        let (v, r) = final_verdict(&[hop(json!({"kind": "drop", "reason": "sg_denied"}))]);
        assert_eq!((v, r.as_str()), ("DROPPED", "sg_denied (at host-2)"));
        assert_eq!(final_verdict(&[]).0, "DROPPED");
    }
}
