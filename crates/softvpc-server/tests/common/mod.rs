//! What the server's integration tests share: a scratch directory, a server on loopback
//! ([`start`]), and EC2 calls made in process through the one EC2 client codec
//! (`softvpc_ec2_client::codec`), not by reading XML by hand.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use softvpc_ec2_api as ec2;
use softvpc_ec2_client::codec;
use softvpc_ec2_client::read::str_at;
use softvpc_ec2_client::Value;
use softvpc_server::mapping::MappingProjection;
use softvpc_server::trust::{admin, Trust};
use softvpc_store::Store;

/// A directory under the system's temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(format!(
            "softvpc-server-test-{}",
            softvpc_model::ids::new_id("t")
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One EC2 action against `cp`, in process; panics with AWS's error if it fails.
pub fn api(cp: &Store, action: &str, input: Value) -> Value {
    let body = codec::request_body(action, &input).unwrap();
    let reply = ec2::dispatch(cp, &[body.as_bytes()]);
    codec::decode_reply(action, reply.status, &reply.body).unwrap_or_else(|e| panic!("{e}"))
}

pub fn create_vpc(cp: &Store, cidr: &str) -> String {
    let out = api(cp, "CreateVpc", Value::new_struct().with("CidrBlock", cidr));
    str_at(&out, &["Vpc", "VpcId"]).unwrap().to_string()
}

pub fn create_subnet(cp: &Store, vpc: &str, cidr: &str) -> String {
    let input = Value::new_struct()
        .with("VpcId", vpc)
        .with("CidrBlock", cidr);
    let out = api(cp, "CreateSubnet", input);
    str_at(&out, &["Subnet", "SubnetId"]).unwrap().to_string()
}

/// A server on loopback, as `softvpc server` runs it (EC2 API, mapping service over mutual TLS,
/// admin socket), with its store, CA and trust file in a scratch directory. Dropping it stops it.
pub struct Running {
    pub store: Arc<Store>,
    /// Checks every mutation's derived mapping changes (`MappingProjection::checked`).
    pub projection: Arc<MappingProjection>,
    pub trust: Arc<Trust>,
    /// The mapping service's address.
    pub addr: SocketAddr,
    pub dir: TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The server's task, until [`Running::stop`] takes it.
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Starts a server whose mapping log holds `ring` revisions and whose host certificates live
/// `host_cert_ttl`.
pub async fn start(ring: usize, host_cert_ttl: Duration) -> Running {
    let dir = TempDir::new();
    let (store, projection) = MappingProjection::attach_checked(Store::open(&dir.0).unwrap(), ring);
    let store = Arc::new(store);
    let trust = Arc::new(Trust::open(&dir.0, host_cert_ttl).unwrap());
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mapping = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = mapping.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listeners = softvpc_server::Listeners {
        cp: store.clone(),
        projection: projection.clone(),
        keys: Default::default(),
        mapping_tls: trust.mapping_tls(&[]).unwrap(),
        trust: trust.clone(),
        api,
        api_tls: None,
        flow_log_dir: None,
        mapping,
        admin: Some(admin::bind(&dir.0).unwrap()),
    };
    let task = tokio::spawn(softvpc_server::serve(listeners, async {
        let _ = stopped.await;
    }));
    Running {
        store,
        projection,
        trust,
        addr,
        dir,
        stop: Some(stop),
        task: Some(task),
    }
}

impl Running {
    /// Asks the server to stop and returns its task (to await its end).
    pub fn stop(&mut self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.take().expect("stopped once")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
