//! The whole agent (`softvpc_agent::serve`) against a scripted mapping service, as root in a
//! scratch namespace: registration retries, snapshot -> instances come up and reach their router,
//! delta -> instances added and removed, stream end -> resume with epoch/revision/held VPCs,
//! protocol error -> full resync, shutdown -> instances (namespaces, persistent TAPs) kept. `/mappings` and `/metrics` are
//! read over HTTP like a person or the lab would. The scripted service speaks TLS with its own
//! CA: the agent joins with a token (verifying the server by the token's CA hash) and every
//! later call carries its host certificate.
//!
//! Prints "SKIPPED (needs root)" and returns when not root. Namespaces are `avt-<pid>-ctl-...`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use softvpc_agent::{netns, AgentArgs};
use softvpc_proto::pb;
use softvpc_proto::pb::mapping_server::{Mapping, MappingServer};
use softvpc_trust::ca::Ca;
use softvpc_trust::token::JoinToken;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tokio_stream::StreamExt;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

const HOST_ID: &str = "h-0000000000000test";

#[derive(Default)]
struct FakeState {
    /// Join calls, and the token the fake accepts.
    joins: u32,
    token: String,
    /// RegisterHost calls to refuse before answering.
    refuse_registers: u32,
    registers: u32,
    watches: Vec<pb::WatchRequest>,
    /// The open stream's sender; dropping it ends the stream.
    stream: Option<mpsc::UnboundedSender<Result<pb::WatchResponse, tonic::Status>>>,
}

#[derive(Clone)]
struct Fake(Arc<Mutex<FakeState>>, Arc<Ca>);

/// The host name in the client certificate of `request`, if any.
fn peer_host<T>(request: &tonic::Request<T>) -> Option<String> {
    let certs = request.peer_certs()?;
    softvpc_trust::identity::parse(certs.first()?)
        .ok()
        .map(|p| p.host)
}

#[tonic::async_trait]
impl Mapping for Fake {
    async fn put_flow_log_records(
        &self,
        _request: tonic::Request<pb::PutFlowLogRecordsRequest>,
    ) -> Result<tonic::Response<pb::PutFlowLogRecordsResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("no flow logs in this test"))
    }

    async fn join(
        &self,
        request: tonic::Request<pb::JoinRequest>,
    ) -> Result<tonic::Response<pb::CertificateResponse>, tonic::Status> {
        let mut s = self.0.lock().expect("lock");
        s.joins += 1;
        let req = request.into_inner();
        if req.token != s.token || req.host_name != "host-t" {
            return Err(tonic::Status::unauthenticated("bad token"));
        }
        let issued = self
            .1
            .issue_host(&req.csr_pem, "host-t", Duration::from_secs(3600))
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        Ok(tonic::Response::new(pb::CertificateResponse {
            certificate_pem: issued.cert_pem,
            ca_pem: self.1.cert_pem().into(),
            not_after: issued.not_after,
        }))
    }

    async fn renew(
        &self,
        _request: tonic::Request<pb::RenewRequest>,
    ) -> Result<tonic::Response<pb::CertificateResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }

    async fn register_host(
        &self,
        request: tonic::Request<pb::RegisterHostRequest>,
    ) -> Result<tonic::Response<pb::RegisterHostResponse>, tonic::Status> {
        assert_eq!(
            peer_host(&request).as_deref(),
            Some("host-t"),
            "no host certificate"
        );
        let mut s = self.0.lock().expect("lock");
        s.registers += 1;
        if s.refuse_registers > 0 {
            s.refuse_registers -= 1;
            return Err(tonic::Status::unavailable("not yet"));
        }
        assert_eq!(request.get_ref().name, "host-t");
        assert_eq!(request.get_ref().underlay_ip, "127.0.0.1");
        assert_eq!(request.get_ref().availability_zone, "us-east-1b");
        Ok(tonic::Response::new(pb::RegisterHostResponse {
            host_id: HOST_ID.into(),
        }))
    }

    type WatchStream = UnboundedReceiverStream<Result<pb::WatchResponse, tonic::Status>>;

    async fn watch(
        &self,
        request: tonic::Request<pb::WatchRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        assert_eq!(
            peer_host(&request).as_deref(),
            Some("host-t"),
            "no host certificate"
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let mut s = self.0.lock().expect("lock");
        s.watches.push(request.into_inner());
        s.stream = Some(tx);
        Ok(tonic::Response::new(UnboundedReceiverStream::new(rx)))
    }
}

impl Fake {
    fn send(&self, msg: pb::WatchResponse) {
        let s = self.0.lock().expect("lock");
        s.stream
            .as_ref()
            .expect("an open stream")
            .send(Ok(msg))
            .expect("stream open");
    }

    fn end_stream(&self) {
        self.0.lock().expect("lock").stream = None;
    }

    fn watches(&self) -> Vec<pb::WatchRequest> {
        self.0.lock().expect("lock").watches.clone()
    }
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the agent's endpoint");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: agent\r\n\r\n").expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    let (head, body) = out.split_once("\r\n\r\n").expect("HTTP response");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}

fn mappings(addr: SocketAddr) -> serde_json::Value {
    serde_json::from_str(&http_get(addr, "/mappings")).expect("JSON")
}

fn eni(n: u8, host: &str) -> pb::Eni {
    pb::Eni {
        eni_id: format!("eni-000000000000000{n:02}"),
        vpc_id: "vpc-1".into(),
        vni: 0x101,
        subnet_id: "subnet-1".into(),
        ip: format!("10.9.0.{n}"),
        secondary_ips: vec![],
        mac: format!("02:00:00:00:09:{n:02x}"),
        host_id: host.into(),
        host_underlay_ip: if host == HOST_ID {
            "127.0.0.1"
        } else {
            "127.0.0.2"
        }
        .into(),
        instance_id: format!("i-000000000000000{n:02}"),
        instance_name: format!("vm{n}"),
        device_index: 0,
        ..Default::default()
    }
}

fn snapshot(epoch: &str, revision: u64, enis: Vec<pb::Eni>) -> pb::WatchResponse {
    pb::WatchResponse {
        epoch: epoch.into(),
        revision,
        kind: Some(pb::watch_response::Kind::Snapshot(pb::Snapshot {
            hosts: vec![
                pb::Host {
                    host_id: HOST_ID.into(),
                    name: "host-t".into(),
                    underlay_ip: "127.0.0.1".into(),
                },
                pb::Host {
                    host_id: "h-other".into(),
                    name: "host-o".into(),
                    underlay_ip: "127.0.0.2".into(),
                },
            ],
            vpcs: vec![pb::Vpc {
                vpc_id: "vpc-1".into(),
                vni: 0x101,
                cidrs: vec!["10.9.0.0/16".into()],
                services: None,
            }],
            subnets: vec![pb::Subnet {
                subnet_id: "subnet-1".into(),
                vpc_id: "vpc-1".into(),
                cidr: "10.9.0.0/24".into(),
            }],
            enis,
            ..Default::default()
        })),
    }
}

fn delta(epoch: &str, revision: u64, changes: Vec<pb::change::Kind>) -> pb::WatchResponse {
    pb::WatchResponse {
        epoch: epoch.into(),
        revision,
        kind: Some(pb::watch_response::Kind::Delta(pb::Delta {
            changes: changes
                .into_iter()
                .map(|k| pb::Change { kind: Some(k) })
                .collect(),
        })),
    }
}

fn ping(ns: &str, dst: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "2", dst])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Deletes the listed namespaces (if they exist) when dropped.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in &self.0 {
            if netns::exists(ns) {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }
}

#[test]
fn agent_follows_the_mapping_service() {
    if !is_root() {
        println!("SKIPPED (needs root): agent_follows_the_mapping_service");
        return;
    }
    let prefix = format!("avt-{}-ctl-", std::process::id());
    let host_ns = format!("{prefix}host");
    let (ns11, ns12) = (
        format!("{prefix}i-00000000000000011"),
        format!("{prefix}i-00000000000000012"),
    );
    let _cleanup = Cleanup(vec![host_ns.clone(), ns11.clone(), ns12.clone()]);
    let out = Command::new("ip")
        .args(["netns", "add", &host_ns])
        .status()
        .expect("ip");
    assert!(out.success());

    let thread = std::thread::spawn(move || {
        netns::enter(&host_ns).expect("enter");
        let lo = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("ip");
        assert!(lo.success());
        scenario(&prefix, &ns11, &ns12);
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

fn scenario(prefix: &str, ns11: &str, ns12: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ca = Arc::new(Ca::generate().expect("CA"));
    let token = JoinToken::generate(ca.hash());
    let fake = Fake(Arc::default(), ca.clone());
    fake.0.lock().expect("lock").refuse_registers = 2;
    fake.0.lock().expect("lock").token = token.to_string();
    let state_dir = std::env::temp_dir().join(format!("{prefix}state"));
    let _ = std::fs::remove_dir_all(&state_dir);

    // The agent starts before the server: registration must be retried.
    let grpc_addr: SocketAddr = "127.0.0.1:18788".parse().expect("addr");
    let metrics: SocketAddr = "127.0.0.1:19469".parse().expect("addr");
    let args = AgentArgs {
        server: vec![format!("https://{grpc_addr}")],
        join_token: Some(token.clone()),
        state_dir: state_dir.clone(),
        host_name: "host-t".into(),
        underlay_ip: Ipv4Addr::LOCALHOST,
        availability_zone: "us-east-1b".into(),
        netns: None,
        instance_netns_prefix: prefix.to_string(),
        dns_upstream: None,
        dns_upstream_netns: None,
        metrics_listen: metrics,
        edge_netns: None,
        edge_bridge: "inet0".into(),
        edge_gateway: Ipv4Addr::new(203, 0, 113, 1),
        fast_path: Default::default(),
        flow_log_max_window: None,
        conntrack_limit: softvpc_policy::conntrack::DEFAULT_LIMIT,
        instance_addressing: Default::default(),
        dhcp_client: None,
        dhcp_lease_seconds: 3600,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = rt.spawn(softvpc_agent::serve(args, async move {
        let _ = stop_rx.await;
    }));
    std::thread::sleep(Duration::from_millis(300));
    let server_fake = fake.clone();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::bind(grpc_addr)
            .await
            .expect("bind");
        let (chain, key) = ca.issue_server(&[]).expect("server certificate");
        let tls =
            softvpc_trust::tls::mapping_server_config(ca.cert_der(), chain, key).expect("tls");
        let incoming = ReceiverStream::new(softvpc_trust::tls::accept(listener, tls, "fake"))
            .map(Ok::<_, std::io::Error>);
        tonic::transport::Server::builder()
            .add_service(MappingServer::new(server_fake))
            .serve_with_incoming(incoming)
            .await
            .expect("serve");
    });

    let t = Duration::from_secs(15);
    wait_for("the first watch", t, || !fake.watches().is_empty());
    assert_eq!(
        fake.0.lock().expect("lock").registers,
        3,
        "two refusals, then success"
    );
    assert_eq!(fake.0.lock().expect("lock").joins, 1, "joined once");
    // The key stays on the host, readable by root only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state_dir.join("host.key"))
        .expect("host.key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let first = &fake.watches()[0];
    assert_eq!(
        (first.host_id.as_str(), first.epoch.as_str(), first.revision),
        (HOST_ID, "", 0)
    );

    // Snapshot: eni 11 is ours, eni 13 lives elsewhere.
    fake.send(snapshot(
        "e1",
        5,
        vec![eni(11, HOST_ID), eni(13, "h-other")],
    ));
    wait_for("revision 5", t, || mappings(metrics)["revision"] == 5);
    let m = mappings(metrics);
    assert_eq!(m["host_id"], HOST_ID);
    assert_eq!(m["epoch"], "e1");
    assert_eq!(m["enis"].as_array().map(Vec::len), Some(2));
    assert_eq!(m["ports"].as_array().map(Vec::len), Some(1));
    assert_eq!(m["ports"][0]["netns"], ns11);
    assert_eq!(m["ports"][0]["gateway"], "10.9.0.1");
    assert!(netns::exists(ns11));
    assert!(
        ping(ns11, "10.9.0.1"),
        "instance cannot reach its router through the agent"
    );

    // Delta: a second local instance appears; the two talk on this host.
    fake.send(delta(
        "e1",
        6,
        vec![pb::change::Kind::UpsertEni(eni(12, HOST_ID))],
    ));
    wait_for("instance 12", t, || {
        netns::exists(ns12) && mappings(metrics)["revision"] == 6
    });
    assert!(
        ping(ns11, "10.9.0.12"),
        "local instances cannot reach each other"
    );

    // The stream ends: the agent resumes where it was.
    fake.end_stream();
    wait_for("the resumed watch", t, || fake.watches().len() == 2);
    let resumed = &fake.watches()[1];
    assert_eq!((resumed.epoch.as_str(), resumed.revision), ("e1", 6));
    assert_eq!(resumed.held_vpc_ids, vec!["vpc-1".to_string()]);
    assert!(
        netns::exists(ns12),
        "a reconnect must not tear instances down"
    );

    // Delta on the resumed stream: instance 12 leaves this host.
    fake.send(delta(
        "e1",
        7,
        vec![pb::change::Kind::DeleteEniId(eni(12, HOST_ID).eni_id)],
    ));
    wait_for("instance 12 gone", t, || !netns::exists(ns12));
    assert!(!ping(ns11, "10.9.0.12"));

    // A delta from another epoch: the agent drops its resume point and asks for a snapshot.
    fake.send(delta("e0", 8, vec![]));
    wait_for("the resync watch", t, || fake.watches().len() == 3);
    let resync = &fake.watches()[2];
    assert_eq!((resync.epoch.as_str(), resync.revision), ("", 0));
    fake.send(snapshot("e2", 3, vec![eni(11, HOST_ID)]));
    wait_for("epoch e2", t, || mappings(metrics)["epoch"] == "e2");
    let text = http_get(metrics, "/metrics");
    assert!(text.contains("softvpc_mapping_resyncs_total 1\n"), "{text}");
    assert!(text.contains("softvpc_mapping_revision 3\n"), "{text}");
    assert!(text.contains("softvpc_ports 1\n"), "{text}");
    assert!(text.contains("softvpc_vpcs_held 1\n"), "{text}");
    assert!(
        text.contains("softvpc_drops_total{reason=\"arp_unanswered\"}"),
        "{text}"
    );
    assert!(
        !text.contains("softvpc_frames_total{path=\"icmp_replies\"} 0\n"),
        "{text}"
    );
    assert_eq!(http_get(metrics, "/healthz"), "ok\n");
    assert!(
        ping(ns11, "10.9.0.1"),
        "instance 11 lost its router across the resync"
    );

    // A burst of deltas (applied together): the end state is what counts.
    let ns14 = format!("{prefix}i-00000000000000014");
    let _cleanup14 = Cleanup(vec![ns14.clone()]);
    fake.send(delta(
        "e2",
        4,
        vec![pb::change::Kind::UpsertEni(eni(12, HOST_ID))],
    ));
    fake.send(delta(
        "e2",
        5,
        vec![pb::change::Kind::DeleteEniId(eni(12, HOST_ID).eni_id)],
    ));
    fake.send(delta(
        "e2",
        6,
        vec![pb::change::Kind::UpsertEni(eni(14, HOST_ID))],
    ));
    wait_for("revision 6", t, || mappings(metrics)["revision"] == 6);
    wait_for("instance 14", t, || netns::exists(&ns14));
    assert!(
        !netns::exists(ns12),
        "instance 12 should not exist after the burst"
    );
    assert!(
        ping(&ns14, "10.9.0.11"),
        "instance 14 cannot reach instance 11"
    );

    // Shutdown: the agent returns Ok; the instances outlive it (persistent TAPs), for the
    // next agent to take over.
    stop_tx.send(()).expect("stop");
    let result = rt.block_on(agent).expect("join");
    assert!(result.is_ok(), "{result:?}");
    assert!(netns::exists(ns11), "an instance went with the agent");
    assert!(netns::exists(&ns14), "an instance went with the agent");
    let link = Command::new("ip")
        .args(["-n", ns11, "-o", "link", "show", "dev", "eth0"])
        .output()
        .expect("ip");
    assert!(link.status.success(), "eth0 went with the agent");
    rt.shutdown_timeout(Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(&state_dir);
}
