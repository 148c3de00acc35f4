//! Replays the saved `sigv4_verify` fuzz inputs (seeds and any crash once fixed) through the
//! fuzz target's body, so a regression shows up in `cargo test` without cargo-fuzz.

use std::path::PathBuf;

#[test]
fn saved_sigv4_verify_inputs_hold_the_invariants() {
    let dir: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "regressions",
        "sigv4_verify",
    ]
    .iter()
    .collect();
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("regressions dir") {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("read");
        softvpc_sigv4::fuzzing::verify_input(&data);
        n += 1;
    }
    assert!(n >= 5, "expected the saved seeds in {}", dir.display());
}
