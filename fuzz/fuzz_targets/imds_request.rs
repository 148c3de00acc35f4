//! Fuzzes the instance metadata service's request path (`softvpc_agent::imds`): any bytes read
//! as a request head, its target parsed as a metadata path and answered for an instance (with
//! and without a token): a request or a 400, one of AWS's statuses, never a panic.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use softvpc_agent::imds::content::{lookup, parse_path, EniView, InstanceView};
use softvpc_agent::imds::http::{answer, read_request, TokenKey};
use softvpc_mapping::metadata::InstanceMetadata;

fuzz_target!(|data: &[u8]| {
    let v = InstanceView {
        instance_id: "i-0123456789abcdef0".into(),
        meta: InstanceMetadata {
            tags_enabled: true,
            tags: [("Name".to_string(), "vm".to_string())].into(),
            user_data: b"#!/bin/sh\n\xff".to_vec(),
            public_key: Some(("k".into(), "ssh-ed25519 AAAA k".into())),
            ..Default::default()
        },
        enis: vec![EniView {
            eni_id: "eni-1".into(),
            device_index: 0,
            mac: "02:00:00:00:00:01".into(),
            ips: vec![Ipv4Addr::new(10, 0, 0, 5)],
            public: vec![(Ipv4Addr::new(203, 0, 113, 20), Ipv4Addr::new(10, 0, 0, 5))],
            subnet_id: "subnet-1".into(),
            subnet_cidr: Some("10.0.0.0/24".parse().expect("cidr")),
            vpc_id: "vpc-1".into(),
            vpc_cidrs: vec!["10.0.0.0/16".parse().expect("cidr")],
            groups: vec![("sg-1".into(), "default".into())],
        }],
        dns_hostnames: true,
    };
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(cat) = parse_path(text) {
            let _ = lookup(&v, &cat);
        }
    }
    let key = TokenKey::from_bytes([3; 32]);
    if let Ok(Some((mut req, n))) = read_request(data) {
        assert!(n <= data.len());
        let r = answer(&req, &v, &key, 1_000);
        assert!([200, 400, 401, 403, 404, 405].contains(&r.status));
        let _ = r.to_bytes(!req.keep_alive, "Thu, 01 Jan 1970 00:16:40 GMT");
        req.token = Some(key.issue(&v.instance_id, 2_000));
        assert!([200, 400, 401, 403, 404, 405].contains(&answer(&req, &v, &key, 1_000).status));
    }
});
