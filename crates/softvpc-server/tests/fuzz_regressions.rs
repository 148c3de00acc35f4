//! Replays the saved fuzz inputs in `tests/regressions/ec2_query/` (seeds and past findings)
//! through the same body the `ec2_query` fuzz target runs.

use std::path::Path;

#[test]
fn replay_ec2_query_inputs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions/ec2_query");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("regression directory") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        softvpc_server::fuzzing::ec2_query(&data);
        n += 1;
    }
    assert!(n >= 2, "the seed inputs are there");
}
