//! A VPC of 100,000 ENIs reaches an agent. Its Snapshot is far beyond gRPC's default 4 MiB
//! message limit, which both ends raise deliberately (`softvpc_proto::MAX_MESSAGE_BYTES`); a
//! client left at the default cannot take it, which is what this guards against.
//!
//! The ENIs are put in the store directly (softvpc's API gives a VPC one /16, and creating
//! 100,000 through it would take minutes here); everything after that is the real path: the
//! mapping projection, the Watch over mutual TLS with a host certificate, the agent's applier.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use prost::Message;
use softvpc_ec2_client::Value;
use softvpc_mapping::Replica;
use softvpc_model::{Eni, Subnet, Vpc};
use softvpc_proto::pb;
use softvpc_trust::client::Credentials;

mod common;
use common::{api, create_subnet, create_vpc};

const ENIS: u32 = 100_000;

fn channel(server: &common::Running, name: &str) -> tonic::transport::Channel {
    let (issued, key) = server
        .trust
        .enroll_for_tests(name, -60, Duration::from_secs(3600));
    let creds = Credentials {
        host: name.into(),
        cert_pem: issued.cert_pem,
        key_pem: key,
        ca_pem: server.trust.ca().cert_pem().into(),
        not_before: 0,
        not_after: issued.not_after,
    };
    softvpc_trust::client::channel(&format!("https://{}", server.addr), &creds).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vpc_of_100000_enis_reaches_an_agent() {
    let server = common::start(16, Duration::from_secs(3600)).await;
    let cp = server.store.clone();
    let vpc = create_vpc(&cp, "10.0.0.0/16");
    let subnet = create_subnet(&cp, &vpc, "10.0.0.0/16");
    let host_id = cp
        .mutate(false, |t| {
            softvpc_model::host::register_host_in(t, "host-1", "198.18.0.1", None)
        })
        .unwrap();
    let out = api(
        &cp,
        "RunInstances",
        Value::new_struct()
            .with("ImageId", "ami-1")
            .with("MinCount", 1i64)
            .with("MaxCount", 1i64)
            .with("SubnetId", subnet.as_str())
            .with(
                "Placement",
                Value::new_struct().with("HostId", host_id.as_str()),
            ),
    );
    let instance = out.get_list("Instances")[0]
        .get_str("InstanceId")
        .unwrap()
        .to_string();

    // The VPC and subnet grow to a /14 (AWS adds CIDR blocks to a VPC) and get 100,000
    // unattached ENIs like the instance's.
    let built = Instant::now();
    let (vpc2, subnet2) = (vpc.clone(), subnet.clone());
    cp.mutate(false, move |t| {
        let wide: ipnet::Ipv4Net = "10.0.0.0/14".parse().unwrap();
        let mut v: Vpc = (*t.state.vpcs[&vpc2]).clone();
        v.cidr = wide;
        t.put(v);
        let mut s: Subnet = (*t.state.subnets[&subnet2]).clone();
        s.cidr = wide;
        t.put(s);
        let template: Eni = t
            .state
            .enis
            .values()
            .find(|e| e.vpc_id == vpc2)
            .map(|e| (**e).clone())
            .unwrap();
        for i in 0..ENIS {
            let mut e = template.clone();
            e.id = format!("eni-{i:017x}");
            e.private_ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + i);
            e.mac = format!(
                "02:01:{:02x}:{:02x}:{:02x}:00",
                i >> 16,
                (i >> 8) & 0xff,
                i & 0xff
            );
            e.attachment = None;
            e.secondary_ips.clear();
            e.client_token = None;
            e.public_ip = None;
            e.description = format!("bulk {i}");
            t.put(e);
        }
        Ok(())
    })
    .unwrap();
    eprintln!(
        "{ENIS} ENIs stored and projected in {:.1} s (instance {instance})",
        built.elapsed().as_secs_f64()
    );

    // The agent of host-1 (its instance is in the VPC) gets the whole VPC in one Snapshot.
    let req = pb::WatchRequest {
        host_id: host_id.clone(),
        ..Default::default()
    };
    let t = Instant::now();
    let mut client = softvpc_proto::client(channel(&server, "host-1"));
    let mut stream = client.watch(req.clone()).await.unwrap().into_inner();
    let first = tokio::time::timeout(Duration::from_secs(120), stream.message())
        .await
        .expect("a first message within 120 s")
        .expect("the snapshot, not an error")
        .expect("a message");
    let took = t.elapsed();
    let size = first.encoded_len();
    let mut replica = Replica::default();
    replica.apply(&first).unwrap();
    assert!(matches!(
        first.kind,
        Some(pb::watch_response::Kind::Snapshot(_))
    ));
    assert_eq!(replica.records.enis.len(), ENIS as usize + 1);
    assert!(replica.records.vpcs.contains_key(&vpc));
    assert!(
        size > 4 << 20,
        "{size} bytes: not beyond gRPC's default limit, the test proves nothing"
    );
    eprintln!(
        "snapshot of {} ENIs: {:.1} MB, received and decoded in {:.2} s, applied in {:.2} s",
        ENIS + 1,
        size as f64 / 1e6,
        took.as_secs_f64(),
        (t.elapsed() - took).as_secs_f64()
    );

    // A client left at tonic's default 4 MiB limit cannot take it: the raised limit is what
    // lets the agent sync.
    let mut small = pb::mapping_client::MappingClient::new(channel(&server, "host-1"));
    let mut stream = small.watch(req).await.unwrap().into_inner();
    let err = tokio::time::timeout(Duration::from_secs(120), stream.message())
        .await
        .expect("an answer within 120 s")
        .expect_err("a default-limit client must refuse the snapshot");
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err}");
}
