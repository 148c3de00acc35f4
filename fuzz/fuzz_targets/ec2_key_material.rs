//! Fuzzes ImportKeyPair's public key reader (OpenSSH lines, RFC 4716 files, DER and PEM
//! SubjectPublicKeyInfo, from any caller): never panics, and a key it reads reads again the same
//! from the OpenSSH line it gives back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use softvpc_ec2_api::key_pair::parse_public;

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = parse_public(data) {
        let again = parse_public(k.public_key.as_bytes()).expect("its own OpenSSH line reads");
        assert_eq!(again, k);
    }
});
