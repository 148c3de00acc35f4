//! The mapping service over real gRPC on loopback: registration, Snapshot then Deltas, resume
//! from a revision, a foreign epoch, a lagging reader, and VPCs appearing and disappearing for a
//! host as its first and last ENI come and go. The agent's applier (`softvpc_mapping::Replica`)
//! replays every message and must always end up equal to a fresh Snapshot. Every host talks over mutual TLS with its
//! own certificate (the trust checks themselves: `trust_grpc.rs`).

use std::net::Ipv4Addr;
use std::time::Duration;

use softvpc_ec2_client::read::name_tag_spec;
use softvpc_ec2_client::Value;
use softvpc_mapping::Replica;
use softvpc_proto::pb;
use softvpc_proto::pb::mapping_client::MappingClient;
use softvpc_server::trust::Trust;
use softvpc_store::Store;
use softvpc_trust::client::Credentials;
use tonic::transport::Channel;
use tonic::Streaming;

mod common;
use common::{api, create_subnet, create_vpc};

type Server = common::Running;

/// A mutual-TLS client of the mapping service at `addr` as host `name` (enrolled in `trust`).
fn client_as(trust: &Trust, addr: std::net::SocketAddr, name: &str) -> MappingClient<Channel> {
    let (issued, key) = trust.enroll_for_tests(name, -60, Duration::from_secs(3600));
    let creds = Credentials {
        host: name.into(),
        cert_pem: issued.cert_pem,
        key_pem: key,
        ca_pem: trust.ca().cert_pem().into(),
        not_before: 0,
        not_after: issued.not_after,
    };
    MappingClient::new(softvpc_trust::client::channel(&format!("https://{addr}"), &creds).unwrap())
}

impl Server {
    /// A client with host `name`'s certificate.
    fn as_host(&self, name: &str) -> MappingClient<Channel> {
        client_as(&self.trust, self.addr, name)
    }

    /// A client with the certificate of the host with id `host_id`.
    fn as_id(&self, host_id: &str) -> MappingClient<Channel> {
        let name = self.store.state().hosts[host_id].name.clone();
        self.as_host(&name)
    }
}

async fn start(ring: usize) -> Server {
    common::start(ring, Duration::from_secs(3600)).await
}

/// Runs `action` through the real dispatcher; the request is built and the answer read by
/// softvpc's EC2 client (`softvpc-ec2-client`), as the lab and the benchmark do over HTTP.
/// Launches one instance on `host` (a host id or name); returns its id.
fn run_instance(
    cp: &Store,
    subnet: &str,
    host: &str,
    ip: Option<&str>,
    name: Option<&str>,
) -> String {
    let mut input = Value::new_struct()
        .with("ImageId", "ami-1")
        .with("MinCount", 1i64)
        .with("MaxCount", 1i64)
        .with("SubnetId", subnet)
        .with("Placement", Value::new_struct().with("HostId", host));
    if let Some(ip) = ip {
        input = input.with("PrivateIpAddress", ip);
    }
    if let Some(name) = name {
        input = input.with("TagSpecifications", name_tag_spec("instance", name));
    }
    let out = api(cp, "RunInstances", input);
    out.get_list("Instances")[0]
        .get_str("InstanceId")
        .unwrap()
        .to_string()
}

fn terminate(cp: &Store, instance: &str) {
    let ids = vec![Value::from(instance)];
    api(
        cp,
        "TerminateInstances",
        Value::new_struct().with("InstanceIds", ids),
    );
}

fn name_tag(cp: &Store, resource: &str, name: &str) {
    let input = Value::new_struct()
        .with("Resources", vec![Value::from(resource)])
        .with(
            "Tags",
            vec![Value::new_struct().with("Key", "Name").with("Value", name)],
        );
    api(cp, "CreateTags", input);
}

async fn next(stream: &mut Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a watch message within 5 s")
        .expect("stream ok")
        .expect("stream open")
}

/// What an agent holds: the agent's own applier ([`Replica`]), which must accept every
/// message.
#[derive(Debug, Default, Clone, PartialEq)]
struct View(Replica);

impl std::ops::Deref for View {
    type Target = Replica;
    fn deref(&self) -> &Replica {
        &self.0
    }
}

impl std::ops::DerefMut for View {
    fn deref_mut(&mut self) -> &mut Replica {
        &mut self.0
    }
}

impl View {
    fn apply(&mut self, m: &pb::WatchResponse) {
        self.0
            .apply(m)
            .expect("the agent's applier accepts the message");
    }

    fn held(&self) -> Vec<String> {
        self.0.records.vpcs.keys().cloned().collect()
    }

    fn held_groups(&self) -> Vec<String> {
        self.0.records.security_groups.keys().cloned().collect()
    }

    /// Equality of content (not of revision bookkeeping).
    fn same_content(&self, other: &View) -> bool {
        self.0.records == other.0.records
    }
}

/// A fresh snapshot of what `host_id` needs, as a View.
async fn fresh(srv: &Server, host_id: &str) -> View {
    let mut s = srv
        .as_id(host_id)
        .watch(pb::WatchRequest {
            host_id: host_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let m = next(&mut s).await;
    assert!(matches!(
        m.kind,
        Some(pb::watch_response::Kind::Snapshot(_))
    ));
    let mut v = View::default();
    v.apply(&m);
    v
}

/// Reads messages until the view reaches `revision`.
async fn catch_up(
    stream: &mut Streaming<pb::WatchResponse>,
    view: &mut View,
    revision: u64,
) -> Vec<pb::WatchResponse> {
    let mut seen = Vec::new();
    while view.revision < revision {
        let m = next(stream).await;
        view.apply(&m);
        seen.push(m);
    }
    seen
}

fn kind(m: &pb::WatchResponse) -> &'static str {
    match m.kind {
        Some(pb::watch_response::Kind::Snapshot(_)) => "snapshot",
        Some(pb::watch_response::Kind::Delta(_)) => "delta",
        Some(pb::watch_response::Kind::Heartbeat(_)) => "heartbeat",
        None => "none",
    }
}

fn kinds(ms: &[pb::WatchResponse]) -> Vec<&'static str> {
    ms.iter().map(kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_the_model() {
    let srv = start(10_000).await;
    let cp = srv.store.clone();
    let h1 = srv
        .as_host("host-1")
        .register_host(pb::RegisterHostRequest {
            name: "host-1".into(),
            underlay_ip: "198.18.0.11".into(),
            availability_zone: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .host_id;
    let again = srv
        .as_host("host-1")
        .register_host(pb::RegisterHostRequest {
            name: "host-1".into(),
            underlay_ip: "198.18.0.11".into(),
            availability_zone: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .host_id;
    assert_eq!(h1, again, "registration is idempotent by name");
    assert!(srv
        .as_host("host-x")
        .register_host(pb::RegisterHostRequest {
            name: "host-x".into(),
            underlay_ip: "not-an-ip".into(),
            availability_zone: String::new(),
        })
        .await
        .is_err());
    let h2 = srv
        .as_host("host-2")
        .register_host(pb::RegisterHostRequest {
            name: "host-2".into(),
            underlay_ip: "198.18.0.12".into(),
            availability_zone: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .host_id;
    assert!(
        srv.as_host("host-1")
            .watch(pb::WatchRequest {
                host_id: "h-00000000000000000".into(),
                ..Default::default()
            })
            .await
            .is_err(),
        "unknown host"
    );

    // First message: a Snapshot with both hosts and no VPC (nothing placed yet).
    let mut w1 = srv
        .as_id(&h1)
        .watch(pb::WatchRequest {
            host_id: h1.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut w1).await;
    let mut view1 = View::default();
    view1.apply(&first);
    assert_eq!([kind(&first)], ["snapshot"]);
    assert_eq!(first.epoch, srv.projection.epoch());
    assert_eq!(view1.records.hosts.len(), 2);
    assert!(view1.records.vpcs.is_empty());

    // A VPC and subnet without ENIs on host-1: only heartbeats for it.
    let vpc = create_vpc(&cp, "10.0.0.0/16");
    let subnet = create_subnet(&cp, &vpc, "10.0.0.0/24");
    let seen = catch_up(&mut w1, &mut view1, cp.state().revision).await;
    assert!(
        kinds(&seen).iter().all(|k| *k == "heartbeat"),
        "{:?}",
        kinds(&seen)
    );
    assert!(view1.records.vpcs.is_empty());

    // First ENI on host-1: the whole VPC arrives in a Delta.
    let rev_before_vm1 = cp.state().revision;
    let vm1 = run_instance(&cp, &subnet, "host-1", Some("10.0.0.148"), Some("zigi-vm1"));
    let seen = catch_up(&mut w1, &mut view1, cp.state().revision).await;
    assert_eq!(kinds(&seen), ["delta"]);
    assert!(view1.records.vpcs.contains_key(&vpc));
    assert_eq!(view1.records.vpcs[&vpc].vni, 0x000101);
    assert_eq!(view1.records.vpcs[&vpc].cidrs[0].to_string(), "10.0.0.0/16");
    assert!(view1.records.subnets.contains_key(&subnet));
    let eni1 = view1.records.enis.values().next().unwrap().clone();
    assert_eq!(eni1.ip, Ipv4Addr::new(10, 0, 0, 148));
    assert_eq!(eni1.instance_id, vm1);
    assert_eq!(eni1.instance_name, "zigi-vm1");
    assert_eq!(eni1.host_id, h1);
    assert_eq!(eni1.host_underlay_ip, Some(Ipv4Addr::new(198, 18, 0, 11)));
    assert_eq!(eni1.vni, 0x000101);
    assert_eq!(eni1.mac[0], 0x02);
    let view_after_vm1 = view1.clone();

    // A second ENI in the VPC, on host-2: host-1 hears of it.
    let vm2 = run_instance(&cp, &subnet, &h2, Some("10.0.0.185"), None);
    catch_up(&mut w1, &mut view1, cp.state().revision).await;
    assert_eq!(view1.records.enis.len(), 2);
    assert!(
        view1
            .records
            .enis
            .values()
            .any(|e| e.instance_id == vm2
                && e.host_underlay_ip == Some(Ipv4Addr::new(198, 18, 0, 12)))
    );

    // A rename reaches the mapping records.
    name_tag(&cp, &vm1, "renamed");
    catch_up(&mut w1, &mut view1, cp.state().revision).await;
    assert!(view1
        .records
        .enis
        .values()
        .any(|e| e.instance_name == "renamed"));
    assert!(view1.same_content(&fresh(&srv, &h1).await));

    // A second VPC with the same CIDR on host-2 only: host-1 never sees it.
    let vpc2 = create_vpc(&cp, "10.0.0.0/16");
    let subnet2 = create_subnet(&cp, &vpc2, "10.0.0.0/24");
    run_instance(&cp, &subnet2, "host-2", Some("10.0.0.148"), None);
    catch_up(&mut w1, &mut view1, cp.state().revision).await;
    assert!(!view1.records.vpcs.contains_key(&vpc2));
    let fresh2 = fresh(&srv, &h2).await;
    assert!(fresh2.records.vpcs.contains_key(&vpc2) && fresh2.records.vpcs.contains_key(&vpc));
    assert_eq!(fresh2.records.vpcs[&vpc2].vni, 0x000102);

    // Resume from the revision right after vm1: Deltas, not a Snapshot, and the result equals
    // the live view.
    let mut resumed = view_after_vm1.clone();
    let mut wr = srv
        .as_id(&h1)
        .watch(pb::WatchRequest {
            host_id: h1.clone(),
            epoch: srv.projection.epoch().to_string(),
            revision: resumed.revision,
            held_vpc_ids: resumed.held(),
            held_security_group_ids: resumed.held_groups(),
        })
        .await
        .unwrap()
        .into_inner();
    let m = next(&mut wr).await;
    assert_eq!([kind(&m)], ["delta"]);
    resumed.apply(&m);
    assert_eq!(resumed.revision, cp.state().revision);
    assert!(resumed.same_content(&view1));
    assert!(rev_before_vm1 < resumed.revision);

    // A foreign epoch gets a Snapshot.
    let mut wf = srv
        .as_id(&h1)
        .watch(pb::WatchRequest {
            host_id: h1.clone(),
            epoch: "epoch-from-another-life".into(),
            revision: view1.revision,
            held_vpc_ids: view1.held(),
            held_security_group_ids: view1.held_groups(),
        })
        .await
        .unwrap()
        .into_inner();
    let m = next(&mut wf).await;
    assert_eq!([kind(&m)], ["snapshot"]);

    // Last ENI of the VPC on host-1 goes: the VPC is dropped from host-1's view.
    terminate(&cp, &vm1);
    let seen = catch_up(&mut w1, &mut view1, cp.state().revision).await;
    let deleted = seen.iter().any(|m| match &m.kind {
        Some(pb::watch_response::Kind::Delta(d)) => d
            .changes
            .iter()
            .any(|c| c.kind == Some(pb::change::Kind::DeleteVpcId(vpc.clone()))),
        _ => false,
    });
    assert!(deleted, "delete_vpc_id sent");
    assert!(
        view1.records.vpcs.is_empty()
            && view1.records.enis.is_empty()
            && view1.records.subnets.is_empty()
    );
    assert!(view1.same_content(&fresh(&srv, &h1).await));

    // Resuming from before vm1 was placed, holding nothing: still converges.
    let mut old = view1.clone();
    old.revision = rev_before_vm1;
    old.epoch = srv.projection.epoch().to_string();
    std::sync::Arc::make_mut(&mut old.records).vpcs.clear();
    let mut wo = srv
        .as_id(&h1)
        .watch(pb::WatchRequest {
            host_id: h1.clone(),
            epoch: srv.projection.epoch().to_string(),
            revision: rev_before_vm1,
            held_vpc_ids: vec![],
            held_security_group_ids: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let m = next(&mut wo).await;
    old.apply(&m);
    assert!(old.same_content(&view1), "{old:?} vs {view1:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_behind_the_ring_gets_a_snapshot() {
    let srv = start(3).await;
    let cp = srv.store.clone();
    let h1 = srv
        .as_host("host-1")
        .register_host(pb::RegisterHostRequest {
            name: "host-1".into(),
            underlay_ip: "198.18.0.11".into(),
            availability_zone: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .host_id;
    let view = fresh(&srv, &h1).await;
    for i in 0..5 {
        create_vpc(&cp, &format!("10.{i}.0.0/16"));
    }
    // The ring holds 3 revisions; the agent's is 5 behind.
    let mut w = srv
        .as_id(&h1)
        .watch(pb::WatchRequest {
            host_id: h1.clone(),
            epoch: srv.projection.epoch().to_string(),
            revision: view.revision,
            held_vpc_ids: vec![],
            held_security_group_ids: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let m = next(&mut w).await;
    assert_eq!([kind(&m)], ["snapshot"]);
    assert_eq!(m.revision, cp.state().revision);
    // A revision from the future (e.g. a wiped server with the same epoch string) too.
    let mut w = srv
        .as_id(&h1)
        .watch(pb::WatchRequest {
            host_id: h1,
            epoch: srv.projection.epoch().to_string(),
            revision: cp.state().revision + 100,
            held_vpc_ids: vec![],
            held_security_group_ids: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!([kind(&next(&mut w).await)], ["snapshot"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_watchers_converge_under_churn() {
    let srv = start(10_000).await;
    let cp = srv.store.clone();
    let mut hosts = Vec::new();
    for i in 1..=3 {
        let id = srv
            .as_host(&format!("host-{i}"))
            .register_host(pb::RegisterHostRequest {
                name: format!("host-{i}"),
                underlay_ip: format!("198.18.0.{}", 10 + i),
                availability_zone: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .host_id;
        hosts.push(id);
    }
    // One watcher per host, each applying everything it receives, concurrently with the churn.
    let mut tasks = Vec::new();
    for h in &hosts {
        let mut client = srv.as_id(h);
        let host_id = h.clone();
        let (done_tx, mut done_rx) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            let mut s = client
                .watch(pb::WatchRequest {
                    host_id,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let mut view = View::default();
            loop {
                let target = *done_rx.borrow_and_update();
                if target != 0 && view.revision >= target {
                    return view;
                }
                tokio::select! {
                    m = next(&mut s) => view.apply(&m),
                    _ = done_rx.changed() => {}
                }
            }
        });
        tasks.push((h.clone(), task, done_tx));
    }
    // Churn: two VPCs, instances placed round-robin, some terminated, tags changed.
    let cp2 = cp.clone();
    tokio::task::spawn_blocking(move || {
        let mut subnets = Vec::new();
        for _ in 0..2 {
            let vpc = create_vpc(&cp2, "10.0.0.0/16");
            subnets.push(create_subnet(&cp2, &vpc, "10.0.0.0/24"));
        }
        let mut live = Vec::new();
        for n in 0..60 {
            let subnet = &subnets[n % 2];
            let host = format!("host-{}", 1 + n % 3);
            let id = run_instance(&cp2, subnet, &host, None, None);
            live.push(id);
            if n % 4 == 3 {
                let victim = live.remove(n % live.len());
                terminate(&cp2, &victim);
            }
            if n % 5 == 0 {
                let who = &live[0];
                name_tag(&cp2, who, &format!("n{n}"));
            }
        }
    })
    .await
    .unwrap();
    let final_revision = cp.state().revision;
    for (h, task, done_tx) in tasks {
        done_tx.send(final_revision).unwrap();
        let view = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("watcher caught up")
            .unwrap();
        assert_eq!(view.revision, final_revision);
        let want = fresh(&srv, &h).await;
        assert!(view.same_content(&want), "host {h} diverged");
        assert!(!view.records.enis.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_watches() {
    let mut srv = start(10_000).await;
    let mut client = srv.as_host("host-1");
    let host_id = client
        .register_host(pb::RegisterHostRequest {
            name: "host-1".into(),
            underlay_ip: "198.18.0.11".into(),
            availability_zone: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .host_id;
    let mut w = client
        .watch(pb::WatchRequest {
            host_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    next(&mut w).await;
    let server = srv.stop();
    // The server must not wait forever for the (endless) watch stream to finish.
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stopped within 5 s")
        .unwrap()
        .unwrap();
    // The agent sees its stream end (cleanly or with an error), not a hang.
    let end = tokio::time::timeout(Duration::from_secs(5), w.message()).await;
    assert!(matches!(end, Ok(Ok(None)) | Ok(Err(_))), "{end:?}");
}
