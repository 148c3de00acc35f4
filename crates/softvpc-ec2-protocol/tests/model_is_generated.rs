//! The committed model is exactly what `scripts/gen-ec2-model.py` writes from the installed
//! botocore (when that botocore is the version the model records), and it holds every operation
//! the VPC API needs.

use std::process::Command;

use softvpc_ec2_protocol::model;

#[test]
fn model_has_the_vpc_operations() {
    let m = model();
    for op in [
        "CreateVpc",
        "DescribeVpcs",
        "ModifyVpcAttribute",
        "CreateSubnet",
        "RunInstances",
        "CreateNetworkInterface",
        "AssignPrivateIpAddresses",
        "AuthorizeSecurityGroupIngress",
        "CreateNetworkAclEntry",
        "ReplaceRouteTableAssociation",
        "AttachInternetGateway",
        "AllocateAddress",
        "CreateNatGateway",
        "AcceptVpcPeeringConnection",
        "CreateDhcpOptions",
        "CreateFlowLogs",
        "DescribeTags",
        "DescribeHosts",
        "DescribeAccountAttributes",
    ] {
        assert!(m.operation(op).is_some(), "{op} missing from the model");
    }
    assert_eq!(m.api_version, "2016-11-15");
    assert_eq!(m.xml_namespace, "http://ec2.amazonaws.com/doc/2016-11-15/");
}

#[test]
fn committed_model_matches_the_generator() {
    let version = Command::new("python3")
        .args(["-c", "import botocore; print(botocore.__version__)"])
        .output();
    let version = match version {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => {
            println!("!!!!!!!! SKIPPED: committed_model_matches_the_generator: python3 with botocore is not installed !!!!!!!!");
            return;
        }
    };
    if version != model().botocore_version {
        println!(
            "!!!!!!!! SKIPPED: committed_model_matches_the_generator: installed botocore {version}, model from {} (rerun scripts/gen-ec2-model.py to update) !!!!!!!!",
            model().botocore_version
        );
        return;
    }
    let out = std::env::temp_dir().join(format!("softvpc-ec2-model-{}.json", std::process::id()));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/gen-ec2-model.py"
    );
    let status = Command::new("python3")
        .arg(script)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run the generator");
    let generated = std::fs::read_to_string(&out);
    let _ = std::fs::remove_file(&out);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let committed = include_str!("../model/ec2-vpc.json");
    assert!(
        generated.expect("generated model") == committed,
        "model/ec2-vpc.json is stale: rerun scripts/gen-ec2-model.py"
    );
}
