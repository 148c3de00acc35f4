//! Property tests of the metadata service's parsers of untrusted input (the request head and
//! the request path) and of its answers: nothing panics on any bytes; well-formed paths parse
//! back to their segments; every answer is one of AWS's statuses, and a request that is not
//! a GET or HEAD of a path the service has never gets data.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use softvpc_agent::imds::content::{parse_path, Category, EniView, InstanceView};
use softvpc_agent::imds::http::{answer, read_request, BadRequest, Method, Request, TokenKey};
use softvpc_mapping::metadata::InstanceMetadata;

fn instance() -> InstanceView {
    InstanceView {
        instance_id: "i-0123456789abcdef0".into(),
        meta: InstanceMetadata {
            region: "us-east-1".into(),
            availability_zone: "us-east-1a".into(),
            user_data: b"#!/bin/sh\n\xff".to_vec(),
            public_key: Some(("k".into(), "ssh-ed25519 AAAA k".into())),
            ..Default::default()
        },
        enis: vec![EniView {
            eni_id: "eni-1".into(),
            device_index: 0,
            mac: "02:00:00:00:00:01".into(),
            ips: vec![Ipv4Addr::new(10, 0, 0, 5)],
            public: vec![],
            subnet_id: "subnet-1".into(),
            subnet_cidr: None,
            vpc_id: "vpc-1".into(),
            vpc_cidrs: vec![],
            groups: vec![],
        }],
        dns_hostnames: false,
    }
}

fn segment() -> impl Strategy<Value = String> {
    "[a-z0-9:.-]{1,12}".prop_filter("no dot segments", |s| s != "." && s != "..")
}

proptest! {
    #[test]
    fn any_bytes_read_as_a_request_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(Some((req, n))) = read_request(&bytes) {
            prop_assert!(n <= bytes.len());
            prop_assert!(req.body_len <= 8192);
        }
    }

    #[test]
    fn any_path_parses_or_is_refused_without_panic(path in ".{0,80}") {
        let _ = parse_path(&path);
    }

    #[test]
    fn meta_data_paths_parse_back_to_their_segments(
        segs in proptest::collection::vec(segment(), 0..6),
        slash in any::<bool>(),
    ) {
        let mut path = format!("/latest/meta-data/{}", segs.join("/"));
        if slash && !segs.is_empty() {
            path.push('/');
        }
        let want: Vec<&str> = segs.iter().map(String::as_str).collect();
        prop_assert_eq!(parse_path(&path), Some(Category::MetaData(want)));
    }

    #[test]
    fn answers_are_awss_statuses(
        method in prop_oneof![Just(Method::Get), Just(Method::Head), Just(Method::Put), Just(Method::Other)],
        path in "(/latest/(meta-data|api|dynamic|user-data)/?)?[a-z0-9=/.-]{0,30}",
        token in proptest::option::of("[A-Za-z0-9_-]{0,60}"),
        ttl in proptest::option::of("[0-9a-z-]{0,7}"),
        forwarded in any::<bool>(),
    ) {
        let req = Request { method, path, token, ttl, forwarded, body_len: 0, keep_alive: true };
        let r = answer(&req, &instance(), &TokenKey::from_bytes([1; 32]), 1_000);
        prop_assert!([200, 400, 401, 403, 404, 405].contains(&r.status), "{}", r.status);
        if r.status == 200 && method != Method::Put {
            prop_assert!(matches!(method, Method::Get | Method::Head));
        }
        if method == Method::Other {
            prop_assert_eq!(r.status, 405);
        }
    }

    #[test]
    fn a_written_request_reads_back_whole(
        method in prop_oneof![Just("GET"), Just("HEAD"), Just("PUT"), Just("DELETE")],
        path in "/[a-zA-Z0-9/._=-]{0,40}",
        token in proptest::option::of("[A-Za-z0-9_-]{1,60}"),
        ttl in proptest::option::of("[0-9]{1,6}"),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        http10 in any::<bool>(),
        split in any::<prop::sample::Index>(),
    ) {
        let mut raw = format!("{method} {path} HTTP/1.{}\r\nHost: 169.254.169.254\r\n", u8::from(!http10));
        if let Some(t) = &token {
            raw.push_str(&format!("X-aws-ec2-metadata-token: {t}\r\n"));
        }
        if let Some(t) = &ttl {
            raw.push_str(&format!("x-AWS-ec2-metadata-token-ttl-seconds:  {t} \r\n"));
        }
        raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let head_len = raw.len();
        let mut bytes = raw.into_bytes();
        bytes.extend_from_slice(&body);
        // Any prefix of the head is incomplete, never an error.
        let cut = split.index(head_len);
        prop_assert_eq!(read_request(&bytes[..cut]), Ok(None));
        let (req, n) = read_request(&bytes).expect("well formed").expect("complete");
        prop_assert_eq!(n, head_len);
        prop_assert_eq!(req.body_len, body.len());
        prop_assert_eq!(req.path, path);
        prop_assert_eq!(req.token, token);
        prop_assert_eq!(req.ttl, ttl);
        prop_assert_eq!(req.keep_alive, !http10);
        let want = match method { "GET" => Method::Get, "HEAD" => Method::Head, "PUT" => Method::Put, _ => Method::Other };
        prop_assert_eq!(req.method, want);
    }

    #[test]
    fn a_head_without_its_end_is_refused_past_the_limit(filler in "[a-z]{1,40}") {
        // A header that never ends: incomplete below 8 KiB, then a 400, never a wait for ever.
        let mut raw = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        while raw.len() < 8192 {
            raw.extend_from_slice(filler.as_bytes());
        }
        prop_assert_eq!(read_request(&raw[..8191]), Ok(None));
        prop_assert_eq!(read_request(&raw), Err(BadRequest));
    }
}
