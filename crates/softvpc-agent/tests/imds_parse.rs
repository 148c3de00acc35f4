//! Property tests of the metadata service's parsers of untrusted input (the request head and
//! the request path) and of its answers: nothing panics on any bytes; well-formed paths parse
//! back to their segments; every answer is one of AWS's statuses, and a request that is not
//! a GET or HEAD of a path the service has never gets data.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use softvpc_agent::imds::content::{parse_path, Category, EniView, InstanceView};
use softvpc_agent::imds::http::{answer, read_request, Method, Request, TokenKey};
use softvpc_mapping::metadata::InstanceMetadata;

fn instance() -> InstanceView {
    InstanceView {
        instance_id: "i-0123456789abcdef0".into(),
        meta: InstanceMetadata {
            region: "us-east-1".into(),
            availability_zone: "us-east-1a".into(),
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
        path in "(/latest/(meta-data|api|dynamic)/)?[a-z/.-]{0,30}",
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
}
