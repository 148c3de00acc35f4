//! Replays the saved fuzz inputs in `tests/regressions/<target>/` (seeds and past findings)
//! through the same bodies the `ec2_query` and `flow_log_records` fuzz targets run.

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

#[test]
fn replay_flow_log_records_inputs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions/flow_log_records");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("regression directory") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        softvpc_server::fuzzing::flow_log_records(&data);
        n += 1;
    }
    assert!(n >= 4, "the seed inputs are there");
}
