//! Property tests: the verifier never panics on arbitrary input, and whatever the body, query
//! parameters and header values, a request signed by the test signer verifies, while the same
//! request with one body byte changed does not.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::{OwnedRequest, Signer};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC};
use proptest::prelude::*;
use softvpc_sigv4::time::Timestamp;
use softvpc_sigv4::{verify, Secret};

const AK: &str = "AKIAPROPTESTEXAMPLE1";
const SK: &str = "proptestsecretproptestsecretproptest1234";

/// Header names worth hitting: the ones the verifier reads, plus noise.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Authorization".to_owned()),
        Just("X-Amz-Date".to_owned()),
        Just("Date".to_owned()),
        Just("Host".to_owned()),
        Just("X-Amz-Security-Token".to_owned()),
        Just("X-Amz-Content-Sha256".to_owned()),
        "[A-Za-z-]{1,12}",
    ]
}

/// Values that often look almost right, plus arbitrary bytes.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "AWS4-HMAC-SHA256 Credential=[A-Z0-9/]{0,40}(, SignedHeaders=[a-z;-]{0,20})?(, Signature=[0-9a-f]{0,64})?"
            .prop_map(String::into_bytes),
        "AWS4-HMAC-SHA256 Credential=AKIAPROPTESTEXAMPLE1/2026112[0-9]/us-east-1/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=[0-9a-f]{64}"
            .prop_map(String::into_bytes),
        "2026112[0-9]T[0-2][0-9][0-5][0-9][0-5][0-9]Z".prop_map(String::into_bytes),
        "[ -~]{0,40}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

fn query_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "(X-Amz-(Algorithm|Credential|Date|Expires|SignedHeaders|Signature|Security-Token)=[A-Za-z0-9%/-]{0,30}&){0,7}",
        "[ -~]{0,60}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn verify_never_panics(
        method in "[A-Z]{0,7}",
        path in any::<String>(),
        query in query_string(),
        headers in proptest::collection::vec((header_name(), header_value()), 0..8),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        now_secs in 0u64..4_000_000_000,
        known in any::<bool>(),
    ) {
        let refs: Vec<(&str, &[u8])> =
            headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        let req = softvpc_sigv4::Request {
            method: &method,
            path: &path,
            query: &query,
            headers: &refs,
            body: &body,
        };
        let result = verify(&req, UNIX_EPOCH + Duration::from_secs(now_secs), |_| {
            known.then(|| Secret::new(SK))
        });
        if let Err(e) = result {
            let (code, message, status) = e.aws_error();
            prop_assert!(!code.is_empty() && !message.is_empty());
            prop_assert!(matches!(status, 400 | 401 | 403));
        }
    }
}

/// Bytes a client might leave unencoded in a query (the test also tries fully encoded).
const LOOSE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'&')
    .add(b'=')
    .add(b'%')
    .add(b'#')
    .add(b'+');

fn build_query(params: &[(String, String)], loose: bool) -> String {
    let set = if loose { LOOSE } else { NON_ALPHANUMERIC };
    params
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, set),
                utf8_percent_encode(v, set)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn signer(time: Timestamp) -> Signer<'static> {
    Signer {
        access_key: AK,
        secret: SK,
        region: "eu-west-3",
        service: "ec2",
        time,
        session_token: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn header_form_round_trips(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        params in proptest::collection::vec((".{1,12}", ".{0,12}"), 0..6),
        loose in any::<bool>(),
        extra in proptest::collection::vec(("x-[a-z]{1,8}", "[ -~]{0,20}"), 0..4),
        secs in 1_000_000_000u64..4_000_000_000,
        flip_at in any::<prop::sample::Index>(),
    ) {
        let time = Timestamp::from_system_time(UNIX_EPOCH + Duration::from_secs(secs)).expect("ts");
        let mut req = OwnedRequest {
            method: "POST".into(),
            path: "/".into(),
            query: build_query(&params, loose),
            headers: vec![("Host".into(), b"127.0.0.1:8787".to_vec())],
            body: body.clone(),
        };
        for (n, v) in &extra {
            req.headers.push((n.clone(), v.clone().into_bytes()));
        }
        signer(time).sign_header(&mut req);
        let h = req.header_refs();
        let v = verify(&req.view(&h), time.system_time(), |k| (k == AK).then(|| Secret::new(SK)));
        prop_assert!(v.is_ok(), "{:?}", v);
        prop_assert_eq!(v.expect("ok").region, "eu-west-3");
        if !body.is_empty() {
            let mut t = req.clone();
            let i = flip_at.index(body.len());
            t.body[i] ^= 0x80;
            let h = t.header_refs();
            let e = verify(&t.view(&h), time.system_time(), |_| Some(Secret::new(SK)));
            prop_assert!(e.is_err());
        }
    }

    #[test]
    fn presigned_form_round_trips(
        params in proptest::collection::vec((".{1,12}", ".{0,12}"), 0..6),
        loose in any::<bool>(),
        secs in 1_000_000_000u64..4_000_000_000,
        expires in 1u64..=604_800,
        used_after in 0u64..=604_800,
    ) {
        let time = Timestamp::from_system_time(UNIX_EPOCH + Duration::from_secs(secs)).expect("ts");
        let mut req = OwnedRequest {
            method: "GET".into(),
            path: "/".into(),
            query: build_query(&params, loose),
            headers: vec![("Host".into(), b"localhost:8787".to_vec())],
            body: Vec::new(),
        };
        signer(time).presign(&mut req, expires);
        let h = req.header_refs();
        let now = time.system_time() + Duration::from_secs(used_after);
        let v = verify(&req.view(&h), now, |k| (k == AK).then(|| Secret::new(SK)));
        if used_after <= expires {
            prop_assert!(v.is_ok(), "{:?}", v);
        } else {
            prop_assert_eq!(v.expect_err("expired").code(), "RequestExpired");
        }
    }
}
