//! Trust between hosts and the mapping service, with real gRPC clients over real TLS on
//! loopback: joining with tokens (expired, reused, another host's: refused), the impostor
//! (plain text, no certificate, another host's certificate, another CA's: refused, nothing
//! changes), watches only as oneself, renewal, expired certificates, and `remove-host` through
//! the admin socket (the watch ends, reconnecting is refused, other hosts drop the host).

use std::time::Duration;

use softvpc_proto::pb;
use softvpc_proto::pb::mapping_client::MappingClient;
use softvpc_server::mapping;
use softvpc_server::trust::{admin, Trust};
use softvpc_trust::client::{self, Credentials};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

mod common;
use common::{api, create_subnet, create_vpc};
use softvpc_ec2_client::Value;

type Server = common::Running;

impl Server {
    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A real join: a token from the admin socket, traded over the Join RPC.
    async fn join(&self, host: &str) -> Credentials {
        let token = self.token(host, 600).await.unwrap();
        client::join(&self.url(), &token.parse().unwrap(), host)
            .await
            .unwrap()
    }

    /// `softvpc server join-token`'s call.
    async fn token(&self, host: &str, ttl_secs: u64) -> anyhow::Result<String> {
        let dir = self.dir.0.clone();
        let host = host.to_string();
        let r: admin::TokenResponse = tokio::task::spawn_blocking(move || {
            admin::call(
                &dir,
                "/join-tokens",
                &admin::TokenRequest { host, ttl_secs },
            )
        })
        .await??;
        Ok(r.token)
    }

    /// `softvpc server remove-host`'s call.
    async fn remove(&self, host: &str, force: bool) -> anyhow::Result<admin::RemoveResponse> {
        let dir = self.dir.0.clone();
        let host = host.to_string();
        tokio::task::spawn_blocking(move || {
            admin::call(&dir, "/hosts/remove", &admin::RemoveRequest { host, force })
        })
        .await?
    }

    fn client(&self, creds: &Credentials) -> MappingClient<Channel> {
        MappingClient::new(client::channel(&self.url(), creds).unwrap())
    }

    /// TLS that trusts the server but presents no certificate.
    fn anonymous(&self) -> MappingClient<Channel> {
        let tls = ClientTlsConfig::new()
            .domain_name(softvpc_trust::SERVER_NAME)
            .ca_certificate(Certificate::from_pem(self.trust.ca().cert_pem()));
        let ch = Endpoint::from_shared(self.url())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_lazy();
        MappingClient::new(ch)
    }

    fn host_ip(&self, name: &str) -> String {
        let s = self.store.state();
        s.host_by_name(name).unwrap().underlay_ip.to_string()
    }
}

async fn start(host_cert_ttl: Duration) -> Server {
    common::start(mapping::DEFAULT_CAPACITY, host_cert_ttl).await
}

async fn register(
    c: &mut MappingClient<Channel>,
    name: &str,
    ip: &str,
) -> Result<String, tonic::Status> {
    c.register_host(pb::RegisterHostRequest {
        name: name.into(),
        underlay_ip: ip.into(),
        availability_zone: String::new(),
    })
    .await
    .map(|r| r.into_inner().host_id)
}

async fn first_message(
    c: &mut MappingClient<Channel>,
    host_id: &str,
) -> Result<pb::WatchResponse, tonic::Status> {
    let mut s = c
        .watch(pb::WatchRequest {
            host_id: host_id.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    tokio::time::timeout(Duration::from_secs(5), s.message())
        .await
        .expect("a message within 5 s")?
        .ok_or_else(|| tonic::Status::aborted("stream ended"))
}

fn snapshot(m: &pb::WatchResponse) -> &pb::Snapshot {
    match &m.kind {
        Some(pb::watch_response::Kind::Snapshot(s)) => s,
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

/// Two joined, registered hosts and an instance on host-1 (in its own VPC) and one on host-2
/// (in another VPC).
async fn two_hosts(srv: &Server) -> (Credentials, Credentials, String, String) {
    let c1 = srv.join("host-1").await;
    let c2 = srv.join("host-2").await;
    let h1 = register(&mut srv.client(&c1), "host-1", "198.18.0.11")
        .await
        .unwrap();
    let h2 = register(&mut srv.client(&c2), "host-2", "198.18.0.12")
        .await
        .unwrap();
    for (cidr, host) in [("10.1.0.0", "host-1"), ("10.2.0.0", "host-2")] {
        let vpc = create_vpc(&srv.store, &format!("{cidr}/16"));
        let subnet = create_subnet(&srv.store, &vpc, &format!("{cidr}/24"));
        let placement = Value::new_struct().with("HostId", host);
        api(
            &srv.store,
            "RunInstances",
            Value::new_struct()
                .with("ImageId", "ami-1")
                .with("MinCount", 1i64)
                .with("MaxCount", 1i64)
                .with("SubnetId", subnet.as_str())
                .with("Placement", placement),
        );
    }
    (c1, c2, h1, h2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_impostor_is_refused_and_nothing_changes() {
    let srv = start(Duration::from_secs(3600)).await;
    let (_c1, c2, h1, _h2) = two_hosts(&srv).await;
    let before = srv.store.state().revision;

    // Plain text (what curl did in the issue): no TLS, no answer.
    let mut plain = MappingClient::new(
        Endpoint::from_shared(format!("http://{}", srv.addr))
            .unwrap()
            .connect_lazy(),
    );
    assert!(register(&mut plain, "host-1", "198.18.0.99").await.is_err());

    // TLS without a certificate.
    let e = register(&mut srv.anonymous(), "host-1", "198.18.0.99")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");

    // host-2's certificate.
    let e = register(&mut srv.client(&c2), "host-1", "198.18.0.99")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

    // A certificate for host-1 from another CA: the handshake fails.
    let other = Trust::ephemeral(Duration::from_secs(3600)).unwrap();
    let (issued, key) = other.enroll_for_tests("host-1", -60, Duration::from_secs(3600));
    let forged = Credentials {
        host: "host-1".into(),
        cert_pem: issued.cert_pem,
        key_pem: key,
        ca_pem: srv.trust.ca().cert_pem().into(),
        not_before: 0,
        not_after: issued.not_after,
    };
    let e = register(&mut srv.client(&forged), "host-1", "198.18.0.99")
        .await
        .unwrap_err();
    assert_ne!(e.code(), tonic::Code::Ok);

    // A certificate of this CA that the server never issued (its key leaked, say): refused.
    let (issued, key) = srv
        .trust
        .ca()
        .issue_host_with_key("host-1", -60, Duration::from_secs(3600))
        .unwrap();
    let unknown = Credentials {
        cert_pem: issued.cert_pem,
        key_pem: key,
        ..forged.clone()
    };
    let e = register(&mut srv.client(&unknown), "host-1", "198.18.0.99")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

    // A new host name without a token: no certificate, so no registration, so no placement.
    let e = register(&mut srv.anonymous(), "host-9", "198.18.0.19")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert!(srv.store.state().host_by_name("host-9").is_none());

    // Nothing changed: host-1 keeps its address, and so do its ENIs in host-2's view.
    assert_eq!(srv.store.state().revision, before);
    assert_eq!(srv.host_ip("host-1"), "198.18.0.11");
    let m = first_message(
        &mut srv.client(&c2),
        &srv.store.state().host_by_name("host-2").unwrap().id,
    )
    .await
    .unwrap();
    let host1 = snapshot(&m).hosts.iter().find(|h| h.host_id == h1).unwrap();
    assert_eq!(host1.underlay_ip, "198.18.0.11");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_watches_only_as_itself() {
    let srv = start(Duration::from_secs(3600)).await;
    let (c1, c2, h1, h2) = two_hosts(&srv).await;

    // No certificate: nothing.
    let e = first_message(&mut srv.anonymous(), &h1).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    // host-2 asking for host-1's view: refused.
    let e = first_message(&mut srv.client(&c2), &h1).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);

    // Each host's own view holds its own VPC only.
    let vpc_of = |host: &str| {
        let s = srv.store.state();
        let id = s.host_by_name(host).unwrap().id.clone();
        s.instances
            .values()
            .find(|i| i.host_id == id)
            .map(|i| s.enis[&i.eni_id].vpc_id.clone())
            .unwrap()
    };
    let m1 = first_message(&mut srv.client(&c1), &h1).await.unwrap();
    let m2 = first_message(&mut srv.client(&c2), &h2).await.unwrap();
    let vpcs = |m: &pb::WatchResponse| -> Vec<String> {
        snapshot(m).vpcs.iter().map(|v| v.vpc_id.clone()).collect()
    };
    assert_eq!(vpcs(&m1), vec![vpc_of("host-1")]);
    assert_eq!(vpcs(&m2), vec![vpc_of("host-2")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_tokens_are_short_lived_single_use_and_for_one_host() {
    let srv = start(Duration::from_secs(3600)).await;
    let url = srv.url();
    let join = |token: String, host: &'static str| {
        let url = url.clone();
        async move { client::join(&url, &token.parse().unwrap(), host).await }
    };
    let status = |e: anyhow::Error| e.downcast::<tonic::Status>().unwrap();

    // Another host's token.
    let t = srv.token("host-1", 600).await.unwrap();
    let e = status(join(t.clone(), "host-2").await.unwrap_err());
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // The right host: a certificate bound to its name.
    let creds = join(t.clone(), "host-1").await.unwrap();
    assert_eq!(creds.host, "host-1");
    // Reused.
    let e = status(join(t, "host-1").await.unwrap_err());
    assert!(e.message().contains("already used"), "{e:?}");
    // Expired.
    let t = srv.token("host-3", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let e = status(join(t, "host-3").await.unwrap_err());
    assert!(e.message().contains("expired"), "{e:?}");
    // Forged secret, and garbage.
    let mut forged: softvpc_trust::token::JoinToken =
        srv.token("host-4", 600).await.unwrap().parse().unwrap();
    forged.secret[3] ^= 0x40;
    let e = status(join(forged.to_string(), "host-4").await.unwrap_err());
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    // A token for a server with another CA: the agent refuses the server itself.
    let mut wrong_ca = forged.clone();
    wrong_ca.ca_hash[0] ^= 1;
    let e = join(wrong_ca.to_string(), "host-4").await.unwrap_err();
    assert!(e
        .downcast_ref::<tonic::Status>()
        .is_none_or(|s| s.code() != tonic::Code::Ok));
    // Bad host names and TTLs are refused by the admin socket.
    assert!(srv.token("no spaces", 600).await.is_err());
    assert!(srv.token("host-5", 0).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_renew_and_expire() {
    let srv = start(Duration::from_secs(3600)).await;
    let c1 = srv.join("host-1").await;
    let h1 = register(&mut srv.client(&c1), "host-1", "198.18.0.11")
        .await
        .unwrap();
    assert!(c1.renew_at() > softvpc_trust::now_secs() + 2000);

    // Renewal: a new key and certificate, which work.
    let renewed = client::renew(&srv.url(), &c1).await.unwrap();
    assert_ne!(renewed.cert_pem, c1.cert_pem);
    assert_ne!(renewed.key_pem, c1.key_pem);
    assert!(first_message(&mut srv.client(&renewed), &h1).await.is_ok());

    // An expired certificate: refused (at the handshake).
    let (issued, key) = srv
        .trust
        .enroll_for_tests("host-1", -7200, Duration::from_secs(3600));
    let expired = Credentials {
        cert_pem: issued.cert_pem,
        key_pem: key,
        ..c1.clone()
    };
    assert!(register(&mut srv.client(&expired), "host-1", "198.18.0.11")
        .await
        .is_err());
    assert!(client::renew(&srv.url(), &expired).await.is_err());

    // A watch ends when the certificate it was opened with expires.
    let (issued, key) = srv
        .trust
        .enroll_for_tests("host-1", -60, Duration::from_secs(62));
    let short = Credentials {
        cert_pem: issued.cert_pem,
        key_pem: key,
        ..c1.clone()
    };
    let mut s = srv
        .client(&short)
        .watch(pb::WatchRequest {
            host_id: h1.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(s.message().await.unwrap().is_some());
    let end = tokio::time::timeout(Duration::from_secs(8), s.message())
        .await
        .expect("the watch ends when the certificate expires");
    assert_eq!(end.unwrap_err().code(), tonic::Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_host_revokes_at_once() {
    let srv = start(Duration::from_secs(3600)).await;
    let (c1, c2, h1, h2) = two_hosts(&srv).await;
    let mut w1 = srv
        .client(&c1)
        .watch(pb::WatchRequest {
            host_id: h1.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(w1.message().await.unwrap().is_some());
    let mut w2 = srv
        .client(&c2)
        .watch(pb::WatchRequest {
            host_id: h2.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(w2.message().await.unwrap().is_some());

    // Refused while an instance runs there; nothing changes.
    let e = srv.remove("host-1", false).await.unwrap_err();
    assert!(e.to_string().contains("instance"), "{e}");
    assert!(srv.store.state().hosts.contains_key(&h1));
    assert!(srv.remove("host-nope", false).await.is_err());

    // --force: the instance is terminated, the host forgotten, its watch ends.
    let r = srv.remove("host-1", true).await.unwrap();
    assert_eq!(r.terminated.len(), 1);
    assert_eq!(r.host_id.as_deref(), Some(h1.as_str()));
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match w1.message().await {
                Ok(Some(_)) => continue, // deltas sent before the revocation
                other => return other,
            }
        }
    })
    .await
    .expect("host-1's watch ends");
    assert_eq!(end.unwrap_err().code(), tonic::Code::PermissionDenied);
    // It cannot come back with its certificate.
    let e = register(&mut srv.client(&c1), "host-1", "198.18.0.11")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(srv.store.state().host_by_name("host-1").is_none());
    // host-2 is told host-1 is gone (so its data plane drops host-1's VXLAN).
    let gone = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let m = w2.message().await.unwrap().unwrap();
            if let Some(pb::watch_response::Kind::Delta(d)) = &m.kind {
                if d.changes
                    .iter()
                    .any(|c| c.kind == Some(pb::change::Kind::DeleteHostId(h1.clone())))
                {
                    return;
                }
            }
        }
    })
    .await;
    assert!(gone.is_ok(), "host-2 never heard host-1 was removed");
    // A new token brings it back, as a new host.
    let again = srv.join("host-1").await;
    let new_id = register(&mut srv.client(&again), "host-1", "198.18.0.11")
        .await
        .unwrap();
    assert_ne!(new_id, h1);
}
