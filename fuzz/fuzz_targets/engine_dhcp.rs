//! Fuzzes the router's DHCP server (`softvpc_engine::layers::gateway::dhcp`): any UDP payload
//! from an ENI is answered with a message that decodes, is for that ENI's MAC and offers only
//! its address, or is refused; never a panic (`dhcproto`'s decoder only sees the options the
//! router reads, see `dhcp::sanitize`).
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use softvpc_engine::layers::gateway::dhcp::{answer, sanitize, DhcpConfig, Lease};

const MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 1];
const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 148);

fuzz_target!(|data: &[u8]| {
    let lease = Lease {
        mac: MAC,
        ip: IP,
        prefix_len: 24,
        router: Ipv4Addr::new(10, 0, 0, 1),
        dns: Ipv4Addr::new(10, 0, 0, 2),
    };
    let _ = sanitize(data);
    if let Ok(a) = answer(data, &lease, &DhcpConfig::for_region("us-east-1", 9001)) {
        // The answer is what the router itself encoded: it must be a well-framed DHCP message
        // for this ENI.
        let clean = sanitize(&a.payload).expect("the router's answer is well framed");
        assert_eq!(&clean[28..34], &MAC);
        let yiaddr = Ipv4Addr::new(clean[16], clean[17], clean[18], clean[19]);
        assert!(yiaddr == IP || yiaddr.is_unspecified());
    }
});
