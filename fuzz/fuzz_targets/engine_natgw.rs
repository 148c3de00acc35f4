//! Fuzzes a NAT gateway's translation table (`softvpc_engine::natgw`): any bytes as IPv4
//! packets in either direction, with time moving on: nothing may panic (the property tests in
//! `crates/softvpc-engine/tests/natgw.rs` check what the translations do).
#![no_main]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use softvpc_engine::{NatConfig, NatTable};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut table = NatTable::new(NatConfig {
        destination_limit: 4,
        ..NatConfig::default()
    });
    let private = Ipv4Addr::new(10, 0, 0, 50);
    for (i, chunk) in data.split(|b| *b == 0xA5).enumerate() {
        let mut packet = chunk.to_vec();
        let now = t0 + Duration::from_secs(u64::from(chunk.first().copied().unwrap_or(0)) * i as u64);
        if i % 2 == 0 {
            let _ = table.translate_out(now, &mut packet, private);
        } else {
            let _ = table.translate_in(now, &mut packet);
        }
        table.expire(now);
    }
});
