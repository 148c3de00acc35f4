//! Fuzz bodies, shared by the cargo-fuzz targets in `fuzz/` and the tests that replay saved
//! inputs from `tests/regressions/<target>/`: `ec2_query` (below) and `flow_log_records` (the
//! record lines agents send with `PutFlowLogRecords`).
//!
//! `ec2_query`: the input is first decoded as one form-encoded request; then each line of it is
//! sent, in order, through the full action dispatch against a fresh memory-only store with two
//! hosts registered and the mapping projection attached. Placeholders `$vpc`, `$subnet`, `$i`, `$eni` and `$h` in a line are
//! replaced by the latest such id seen in an earlier response, so short inputs reach deep
//! states. Checked on every request: no panic, a well-formed XML answer, only the statuses the
//! API uses, a refused request leaves the model exactly as it was, and every mutation's derived
//! mapping changes reproduce the mapping records exactly (`MappingProjection::checked`).

use crate::mapping::MappingProjection;
use softvpc_ec2_api::dispatch;
use softvpc_model::host::register_host;
use softvpc_store::Store;

/// A memory-only store with a checked mapping projection attached.
fn checked_store() -> Store {
    MappingProjection::attach_checked(Store::ephemeral(), 64).0
}

/// Most requests one input may send.
pub const MAX_REQUESTS: usize = 24;

/// Latest ids seen in responses, by placeholder.
#[derive(Default)]
struct Ids {
    vpc: String,
    subnet: String,
    instance: String,
    eni: String,
    host: String,
}

impl Ids {
    fn learn(&mut self, body: &str) {
        for (tag, slot) in [
            ("vpcId", &mut self.vpc),
            ("subnetId", &mut self.subnet),
            ("instanceId", &mut self.instance),
            ("networkInterfaceId", &mut self.eni),
            ("hostId", &mut self.host),
        ] {
            let open = format!("<{tag}>");
            if let Some(start) = body.rfind(&open) {
                let rest = &body[start + open.len()..];
                if let Some(end) = rest.find('<') {
                    *slot = rest[..end].to_string();
                }
            }
        }
    }

    fn substitute(&self, line: &[u8]) -> Vec<u8> {
        if !line.contains(&b'$') {
            return line.to_vec();
        }
        let text = String::from_utf8_lossy(line)
            .replace("$subnet", &self.subnet)
            .replace("$vpc", &self.vpc)
            .replace("$eni", &self.eni)
            .replace("$i", &self.instance)
            .replace("$h", &self.host);
        text.into_bytes()
    }
}

fn assert_well_formed(body: &str) {
    let mut reader = quick_xml::Reader::from_str(body);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("malformed XML answer ({e}): {body}"),
        }
    }
}

/// The `ec2_query` fuzz body.
pub fn ec2_query(data: &[u8]) {
    // The model decoder alone on the whole input: refusals are fine, panics are not.
    if let Ok(pairs) = softvpc_ec2_protocol::parse_form(data) {
        let _ = softvpc_ec2_protocol::decode_request(&pairs);
    }
    let cp = checked_store();
    for (name, ip) in [("host-1", "198.18.0.11"), ("host-2", "198.18.0.12")] {
        cp.mutate(false, |t| register_host(t, name, ip))
            .expect("registering a fixed host");
    }
    let mut ids = Ids::default();
    for line in data.split(|b| *b == b'\n').take(MAX_REQUESTS) {
        let line = ids.substitute(line);
        let before = cp.state();
        let reply = dispatch(&cp, &[&line]);
        assert_well_formed(&reply.body);
        match reply.status {
            200 => ids.learn(&reply.body),
            400 | 412 => {
                assert!(reply.body.contains("<Code>"), "{}", reply.body);
                assert!(
                    *cp.state() == *before,
                    "a refused request changed the model: {}",
                    String::from_utf8_lossy(&line)
                );
            }
            s => panic!("unexpected status {s}: {}", reply.body),
        }
    }
}

/// The fixed world of the `flow_log_records` body: host-1 (the caller) with one instance,
/// host-2, and a flow log on the instance's VPC; (state, flow log id, ENI id).
fn flow_log_world() -> &'static (softvpc_model::State, String, String) {
    use softvpc_model::{flow_log, instance, subnet, vpc, State, Tags, Txn};
    static WORLD: std::sync::OnceLock<(State, String, String)> = std::sync::OnceLock::new();
    WORLD.get_or_init(|| {
        let mut t = Txn::new(State::new(), 1_000);
        register_host(&mut t, "host-1", "198.18.0.11").expect("host-1");
        register_host(&mut t, "host-2", "198.18.0.12").expect("host-2");
        let v = vpc::create_vpc(&mut t, "10.0.0.0/16", None, Tags::new()).expect("vpc");
        let sn =
            subnet::create_subnet(&mut t, &v.id, "10.0.0.0/24", None, Tags::new()).expect("subnet");
        let r = instance::run_instances(
            &mut t,
            &instance::RunRequest {
                min_count: 1,
                max_count: 1,
                subnet_id: sn.id.clone(),
                host: Some("host-1".into()),
                ..Default::default()
            },
        )
        .expect("instance");
        let fl = flow_log::create_flow_logs(
            &mut t,
            &flow_log::CreateRequest {
                resource_type: "VPC".into(),
                resource_ids: vec![v.id.clone()],
                traffic_type: Some("ALL".into()),
                log_destination_type: Some("s3".into()),
                log_destination: Some("arn:aws:s3:::fuzz-bucket".into()),
                ..Default::default()
            },
        )
        .expect("flow log");
        let eni = r.instances[0].eni_id.clone();
        (t.state, fl.flow_log_ids[0].clone(), eni)
    })
}

/// The `flow_log_records` fuzz body: the server's check of the record lines agents send
/// (`PutFlowLogRecords`, untrusted: any host may send anything). The first byte picks whose
/// batch it is (the right host, flow log and ENI, or one of them wrong), the rest is split on
/// NUL into lines (so lines may hold newlines, CR, non-ASCII, anything). Checked: a batch for
/// another host's ENI or an unknown flow log writes nothing; every line is either written or
/// refused; exactly the written lines reach the file, each as one line that passes
/// `valid_line`, in order.
pub fn flow_log_records(data: &[u8]) {
    use crate::mapping::flow_records::{append, destination_file, valid_line};
    use softvpc_proto::pb;
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (state, fl, eni) = flow_log_world();
    let (host, fl_id, eni_id) = match pick % 4 {
        0 => ("host-1", fl.as_str(), eni.as_str()),
        1 => ("host-2", fl.as_str(), eni.as_str()),
        2 => ("host-1", "fl-0123456789abcdef0", eni.as_str()),
        _ => ("host-1", fl.as_str(), "eni-0123456789abcdef0"),
    };
    let lines: Vec<String> = rest
        .split(|b| *b == 0)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let dir =
        std::env::temp_dir().join(format!("softvpc-fuzz-flow-records-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let req = pb::PutFlowLogRecordsRequest {
        batches: vec![pb::FlowLogBatch {
            flow_log_id: fl_id.to_string(),
            eni_id: eni_id.to_string(),
            lines: lines.clone(),
        }],
    };
    let out = append(state, &dir, host, &req);
    assert_eq!(out.written + out.refused, lines.len() as u64);
    let f = &state.flow_logs[fl];
    let written =
        std::fs::read_to_string(destination_file(&dir, &f.dir, &f.id)).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    if pick % 4 != 0 {
        assert_eq!(out.written, 0, "a batch the host may not write was written");
        assert!(written.is_empty());
        return;
    }
    let expected: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| valid_line(l))
        .collect();
    assert_eq!(out.written, expected.len() as u64);
    let got: Vec<&str> = written.split_terminator('\n').collect();
    assert_eq!(got, expected, "the file holds exactly the accepted lines");
    assert!(got.iter().all(|l| valid_line(l)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Plausible request lines: real actions and parameter names, values from a small
    /// vocabulary including the id placeholders.
    fn request() -> impl Strategy<Value = String> {
        let action = prop::sample::select(vec![
            "CreateVpc",
            "DescribeVpcs",
            "DeleteVpc",
            "CreateSubnet",
            "DescribeSubnets",
            "DeleteSubnet",
            "RunInstances",
            "DescribeInstances",
            "TerminateInstances",
            "DescribeNetworkInterfaces",
            "DescribeHosts",
            "CreateTags",
            "DeleteTags",
            "Nope",
        ]);
        let key = prop::sample::select(vec![
            "CidrBlock",
            "VpcId",
            "VpcId.1",
            "SubnetId",
            "SubnetId.1",
            "InstanceId.1",
            "InstanceId.2",
            "NetworkInterfaceId.1",
            "HostId.1",
            "ResourceId.1",
            "Tag.1.Key",
            "Tag.1.Value",
            "MinCount",
            "MaxCount",
            "PrivateIpAddress",
            "Placement.HostId",
            "AvailabilityZone",
            "DryRun",
            "MaxResults",
            "NextToken",
            "Filter.1.Name",
            "Filter.1.Value.1",
            "TagSpecification.1.ResourceType",
            "TagSpecification.1.Tag.1.Key",
            "TagSpecification.1.Tag.1.Value",
        ]);
        let value = prop::sample::select(vec![
            "10.0.0.0/16",
            "10.0.0.0/24",
            "10.0.1.0/28",
            "10.0.0.0/8",
            "10.0.0.148",
            "10.0.0.1",
            "10.0.1.5",
            "$vpc",
            "$subnet",
            "$i",
            "$eni",
            "$h",
            "host-1",
            "host-2",
            "1",
            "2",
            "5",
            "30",
            "true",
            "false",
            "Name",
            "vpc-id",
            "tag:Name",
            "instance-state-name",
            "running",
            "instance",
            "vpc",
            "subnet",
            "network-interface",
            "zigi-*",
            "",
            "aws:x",
        ]);
        (action, prop::collection::vec((key, value), 0..6)).prop_map(|(a, kv)| {
            let mut line = format!("Action={a}");
            for (k, v) in kv {
                line.push('&');
                line.push_str(k);
                line.push('=');
                line.push_str(&v.replace('/', "%2F").replace(':', "%3A"));
            }
            line
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Random sequences of plausible requests: never a panic, never a partial change.
        #[test]
        fn request_sequences_keep_the_invariants(lines in prop::collection::vec(request(), 1..MAX_REQUESTS)) {
            ec2_query(lines.join("\n").as_bytes());
        }
    }

    #[test]
    fn placeholders_reach_deep_states() {
        // Build a VPC, subnet and instance through placeholders, then check the instance is
        // really there (a refused step would leave DescribeInstances empty).
        let cp = checked_store();
        cp.mutate(false, |t| register_host(t, "host-1", "198.18.0.11"))
            .unwrap();
        let mut ids = Ids::default();
        for line in [
            "Action=CreateVpc&CidrBlock=10.0.0.0%2F16",
            "Action=CreateSubnet&VpcId=$vpc&CidrBlock=10.0.0.0%2F24",
            "Action=RunInstances&ImageId=ami-1&SubnetId=$subnet&MinCount=1&MaxCount=1",
        ] {
            let r = dispatch(&cp, &[&ids.substitute(line.as_bytes())]);
            assert_eq!(r.status, 200, "{}", r.body);
            ids.learn(&r.body);
        }
        assert!(ids.instance.starts_with("i-"));
        assert_eq!(cp.state().instances.len(), 1);
    }
}
