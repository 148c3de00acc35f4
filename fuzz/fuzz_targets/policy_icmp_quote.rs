//! Fuzzes the one parser of untrusted bytes in softvpc-policy: the IPv4 header (and ports) an
//! ICMP error quotes. Whatever it reads must then be safe to look up in a connection-tracking
//! table, in both directions, and a quote of a tracked flow must find it.
#![no_main]

use std::net::Ipv4Addr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use softvpc_policy::conntrack::{ConnTrack, Timeouts};
use softvpc_policy::packet::parse_icmp_quote;
use softvpc_policy::{Direction, Generation, Packet};

fuzz_target!(|data: &[u8]| {
    let Ok(quoted) = parse_icmp_quote(data) else {
        return;
    };
    let now = Instant::now();
    let mut ct: ConnTrack<()> = ConnTrack::new(4, Timeouts::default(), now);
    let tracked = Packet::udp(Ipv4Addr::new(10, 0, 0, 5), 40000, Ipv4Addr::new(10, 0, 1, 9), 53);
    ct.insert(&tracked, Direction::Egress, now, Generation(0), ()).unwrap();
    for dir in [Direction::Ingress, Direction::Egress] {
        let _ = ct.lookup_icmp_error(&quoted, dir, now);
    }
    // The quoted packet itself as a new connection: tracked, then found by its own quote.
    if ct.insert(&quoted, Direction::Egress, now, Generation(1), ()).is_ok() {
        assert!(ct.lookup_icmp_error(&quoted, Direction::Ingress, now).is_some());
    }
});
