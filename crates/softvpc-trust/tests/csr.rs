//! Property tests of the certificate-request parsing of Join and Renew (`Ca::issue_host`, the
//! body of the `trust_csr` fuzz target): any text an agent sends is signed or refused, never a
//! panic; whatever is signed is a host certificate for the host the CA names, whatever the
//! request asked for.

use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use softvpc_trust::ca::{new_key_and_csr, pem_to_der, Ca};
use softvpc_trust::identity;

const BEGIN: &str = "-----BEGIN CERTIFICATE REQUEST-----";
const END: &str = "-----END CERTIFICATE REQUEST-----";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// One CA for every case (making one is the slow part).
fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| Ca::generate().expect("CA"))
}

/// A real request (for a host name other than the one the CA will put in the certificate).
fn real_csr() -> &'static str {
    static CSR: OnceLock<String> = OnceLock::new();
    CSR.get_or_init(|| new_key_and_csr("not-the-host").expect("CSR").1)
}

/// Signed: a certificate for `host-1` (not the name the request carried); otherwise refused.
fn signed_or_refused(pem: &str) -> Result<(), TestCaseError> {
    if let Ok(issued) = ca().issue_host(pem, "host-1", Duration::from_secs(60)) {
        let der = pem_to_der(&issued.cert_pem).expect("the CA's own PEM");
        let id = identity::parse(&der).expect("the CA's own certificate");
        prop_assert_eq!(id.host, "host-1");
        prop_assert_eq!(id.serial, issued.serial);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any text at all.
    #[test]
    fn any_text(s in "\\PC{0,200}") {
        signed_or_refused(&s)?;
    }

    /// PEM framing around random base64 (random DER): reaches the DER parser.
    #[test]
    fn pem_framed_garbage(body in proptest::collection::vec(proptest::sample::select(BASE64), 0..400)) {
        let body = String::from_utf8(body).unwrap();
        let pem = format!("{BEGIN}\n{body}\n{END}\n");
        if body.is_empty() {
            prop_assert!(ca().issue_host(&pem, "host-1", Duration::from_secs(60)).is_err());
        }
        signed_or_refused(&pem)?;
    }

    /// A real request with base64 characters replaced or cut off: a damaged DER structure,
    /// a bad signature, a truncated key.
    #[test]
    fn damaged_real_request(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), proptest::sample::select(BASE64)), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let csr = real_csr();
        let start = csr.find('\n').unwrap() + 1;
        let end = csr.find(END).unwrap();
        let mut body: Vec<u8> = csr[start..end].bytes().collect();
        let positions: Vec<usize> = (0..body.len()).filter(|i| body[*i] != b'\n').collect();
        for (at, c) in edits {
            body[positions[at.index(positions.len())]] = c;
        }
        if let Some(cut) = cut {
            body.truncate(cut.index(body.len()));
        }
        let pem = format!("{BEGIN}\n{}{END}\n", String::from_utf8(body).unwrap());
        signed_or_refused(&pem)?;
    }
}

/// The undamaged request is signed (so the damaged cases start from something that works).
#[test]
fn the_real_request_is_signed_for_the_named_host() {
    let issued = ca()
        .issue_host(real_csr(), "host-1", Duration::from_secs(60))
        .expect("signed");
    let id = identity::parse(&pem_to_der(&issued.cert_pem).unwrap()).unwrap();
    assert_eq!(id.host, "host-1");
}
