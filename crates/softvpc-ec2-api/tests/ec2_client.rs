//! softvpc's own EC2 client (`softvpc-ec2-client`) against the real API router over loopback
//! HTTP: signed calls with a key pair from a credentials file, answers read through the model,
//! AWS refusals as `ApiError`s, a request that does not fit the model never sent, a wrong key
//! refused, and the transport's failures (nothing listening, a server that never answers)
//! ending in errors within the deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use softvpc_ec2_client::read::{name_tag_spec, tag};
use softvpc_ec2_client::{BlockingClient, Client, Config, Credentials, Error, Value};
use softvpc_store::Store;

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The API router on a free loopback port, on a runtime of its own thread; the control plane
/// to look at; the accepted key pair, also written to a credentials file.
struct Api {
    addr: SocketAddr,
    cp: Arc<Store>,
    creds: softvpc_sigv4::Credentials,
    file: std::path::PathBuf,
    _dir: TempDir,
    _runtime: tokio::runtime::Runtime,
}

fn start() -> Api {
    let dir = TempDir(std::env::temp_dir().join(format!(
        "softvpc-ec2-client-test-{}",
        softvpc_model::ids::new_id("t")
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let creds = softvpc_sigv4::generate_credentials();
    let file = dir.0.join("credentials");
    softvpc_sigv4::write_credentials_file(&file, "default", &creds).unwrap();
    let cp = Arc::new(Store::ephemeral());
    let keys = Arc::new(softvpc_ec2_api::auth::Keys::from_credentials([&creds]));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let router = softvpc_ec2_api::router(cp.clone(), keys, None);
    runtime.spawn(async move { axum::serve(listener, router).await });
    Api {
        addr,
        cp,
        creds,
        file,
        _dir: dir,
        _runtime: runtime,
    }
}

#[test]
fn signed_calls_answers_and_refusals() {
    let api = start();
    let client =
        BlockingClient::new(Config::http(api.addr, Credentials::File(api.file.clone()))).unwrap();
    assert!(client.healthy());

    let out = client
        .call(
            "CreateVpc",
            &Value::new_struct()
                .with("CidrBlock", "10.0.0.0/16")
                .with("TagSpecifications", name_tag_spec("vpc", "blue & <green>")),
        )
        .unwrap();
    let vpc = out.get("Vpc").unwrap();
    let vpc_id = vpc.get_str("VpcId").unwrap().to_string();
    assert!(vpc_id.starts_with("vpc-"), "{vpc_id}");
    assert_eq!(tag(vpc, "Name"), Some("blue & <green>"));
    assert!(api.cp.state().vpcs.contains_key(&vpc_id));

    let listed = client
        .call(
            "DescribeVpcs",
            &Value::new_struct().with("VpcIds", vec![Value::from(vpc_id.as_str())]),
        )
        .unwrap();
    let vpcs = listed.get_list("Vpcs");
    assert_eq!(vpcs.len(), 1);
    assert_eq!(vpcs[0].get_str("CidrBlock"), Some("10.0.0.0/16"));
    assert_eq!(vpcs[0].get_bool("IsDefault"), Some(false));

    // AWS's refusal, with its status, code and message.
    let e = client
        .call(
            "CreateSubnet",
            &Value::new_struct()
                .with("VpcId", vpc_id.as_str())
                .with("CidrBlock", "10.1.0.0/24"),
        )
        .unwrap_err();
    let refusal = e.api().expect("an API refusal");
    assert_eq!(
        (refusal.status, refusal.code.as_str()),
        (400, "InvalidSubnet.Range")
    );
    assert!(refusal.request_id.is_some());
    let e = client
        .call(
            "CreateVpc",
            &Value::new_struct()
                .with("CidrBlock", "10.1.0.0/16")
                .with("DryRun", true),
        )
        .unwrap_err();
    assert_eq!(
        e.api().map(|a| (a.status, a.code.as_str())),
        Some((412, "DryRunOperation"))
    );

    // The model refuses to build a request it does not know; nothing reaches the server.
    let revision = api.cp.state().revision;
    let e = client
        .call(
            "CreateVpc",
            &Value::new_struct().with("Cidr", "10.2.0.0/16"),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Request { .. }), "{e}");
    assert_eq!(api.cp.state().revision, revision);
    // Raw parameters reach it, and the server refuses them itself.
    let r = client
        .send_raw("CreateVpc", &[("Cidr".into(), "10.2.0.0/16".into())])
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        r.decode("CreateVpc")
            .unwrap_err()
            .api()
            .map(|a| a.code.as_str()),
        Some("UnknownParameter")
    );

    // A key the server does not know.
    let stranger = BlockingClient::new(Config::http(
        api.addr,
        Credentials::Static(softvpc_sigv4::generate_credentials()),
    ))
    .unwrap();
    let e = stranger
        .call("DescribeVpcs", &Value::new_struct())
        .unwrap_err();
    assert_eq!(e.api().map(|a| a.code.as_str()), Some("AuthFailure"), "{e}");
    // The same calls with the right static key work.
    let known = BlockingClient::new(Config::http(
        api.addr,
        Credentials::Static(api.creds.clone()),
    ))
    .unwrap();
    assert_eq!(
        known
            .call("DescribeVpcs", &Value::new_struct())
            .unwrap()
            .get_list("Vpcs")
            .len(),
        1
    );
    // A missing credentials file is a credentials error, not a transport one.
    let lost = BlockingClient::new(Config::http(
        api.addr,
        Credentials::File(api.file.with_file_name("missing")),
    ))
    .unwrap();
    assert!(matches!(
        lost.call("DescribeVpcs", &Value::new_struct()),
        Err(Error::Credentials(_))
    ));
}

#[test]
fn transport_failures_end_within_the_deadline() {
    // Nothing listens.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let creds = Credentials::Static(softvpc_sigv4::generate_credentials());
    let client = BlockingClient::new(Config::http(addr, creds.clone())).unwrap();
    assert!(!client.healthy());
    let e = client
        .call("DescribeVpcs", &Value::new_struct())
        .unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e}");

    // A server that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = Config::http(silent.local_addr().unwrap(), creds);
    config.timeout = Duration::from_millis(300);
    let client = BlockingClient::new(config).unwrap();
    let start = Instant::now();
    let e = client
        .call("DescribeVpcs", &Value::new_struct())
        .unwrap_err();
    assert!(
        matches!(&e, Error::Transport { message, .. } if message.contains("no complete answer")),
        "{e}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_client_in_a_tokio_program() {
    let api = tokio::task::spawn_blocking(start).await.unwrap();
    let client = Client::new(Config::http(
        api.addr,
        Credentials::Static(api.creds.clone()),
    ));
    assert!(client.healthy().await);
    let reply = client
        .send("DescribeVpcs", &Value::new_struct())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.took > Duration::ZERO);
    assert_eq!(
        reply.decode("DescribeVpcs").unwrap().get_list("Vpcs").len(),
        0
    );
    // The runtime of `api` is dropped off the async context.
    tokio::task::spawn_blocking(move || drop(api))
        .await
        .unwrap();
}
