//! Fuzzes the join-token parser (`svpc1.<id>.<secret>.<ca hash>`, from command lines and the
//! Join RPC): never panics, and what parses prints back to the same token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use softvpc_trust::token::JoinToken;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = s.parse::<JoinToken>() {
        let again: JoinToken = t.to_string().parse().expect("a printed token parses");
        assert_eq!(again, t);
    }
});
