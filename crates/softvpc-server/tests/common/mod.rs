//! What the server's integration tests share: a scratch directory and EC2 calls made in process
//! through the one EC2 client codec (`softvpc_ec2_client::codec`), not by reading XML by hand.

use std::path::PathBuf;

use softvpc_ec2_client::codec;
use softvpc_ec2_client::read::str_at;
use softvpc_ec2_client::Value;
use softvpc_server::control::ControlPlane;
use softvpc_server::ec2;

/// A directory under the system's temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(format!(
            "softvpc-server-test-{}",
            softvpc_server::model::ids::new_id("t")
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
pub fn api(cp: &ControlPlane, action: &str, input: Value) -> Value {
    let body = codec::request_body(action, &input).unwrap();
    let reply = ec2::dispatch(cp, &[body.as_bytes()]);
    codec::decode_reply(action, reply.status, &reply.body).unwrap_or_else(|e| panic!("{e}"))
}

pub fn create_vpc(cp: &ControlPlane, cidr: &str) -> String {
    let out = api(cp, "CreateVpc", Value::new_struct().with("CidrBlock", cidr));
    str_at(&out, &["Vpc", "VpcId"]).unwrap().to_string()
}

pub fn create_subnet(cp: &ControlPlane, vpc: &str, cidr: &str) -> String {
    let input = Value::new_struct()
        .with("VpcId", vpc)
        .with("CidrBlock", cidr);
    let out = api(cp, "CreateSubnet", input);
    str_at(&out, &["Subnet", "SubnetId"]).unwrap().to_string()
}
