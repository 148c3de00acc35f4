//! Fuzzes the certificate-request parsing of Join and Renew (untrusted PEM from agents): the
//! CA signs a host certificate or refuses, never panics.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use softvpc_trust::ca::Ca;

fuzz_target!(|data: &[u8]| {
    static CA: OnceLock<Ca> = OnceLock::new();
    let ca = CA.get_or_init(|| Ca::generate().expect("CA"));
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ca.issue_host(s, "host-1", Duration::from_secs(60));
});
