//! Fuzzes the router's DNS resolver (`softvpc_engine::layers::gateway::dns`): any UDP payload
//! sent to the VPC's resolver is answered with a response that carries the query's id, handed
//! on to forward, or refused; the forwarder never takes bytes that answer no pending query; never
//! a panic.
#![no_main]

use std::net::Ipv4Addr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use softvpc_engine::layers::gateway::dns::{resolve, servfail, Asker, Forwarder, Resolution, Zone};
use softvpc_engine::{PortId, Vni};

fuzz_target!(|data: &[u8]| {
    let cidrs = ["10.0.0.0/16".parse::<ipnet::Ipv4Net>().expect("cidr")];
    for (hostnames, upstream) in [(false, false), (true, true)] {
        let zone = Zone {
            private_domain: "ec2.internal",
            region: "us-east-1",
            cidrs: &cidrs,
            hostnames,
            upstream,
        };
        let public = |ip: Ipv4Addr| (ip.octets()[0] == 203).then_some(Ipv4Addr::new(10, 0, 0, 9));
        if let Ok(Resolution::Answer(a)) = resolve(data, &zone, &public) {
            assert_eq!(&a[..2], &data[..2], "the answer carries the query's id");
            assert!(a[2] & 0x80 != 0, "the answer is a response");
        }
    }
    let _ = servfail(data);
    let asker = Asker {
        port: PortId(1),
        vni: Vni(1),
        mac: [2, 0, 0, 0, 0, 1],
        ip: Ipv4Addr::new(10, 0, 0, 148),
        src_port: 5353,
        server: Ipv4Addr::new(10, 0, 0, 2),
    };
    let now = Instant::now();
    let mut fwd = Forwarder::default();
    if let Some(sent) = fwd.send(now, asker, data) {
        // The upstream echoing the query back is matched to the asker, with the asker's id.
        let (back, bytes) = fwd.receive(now, &sent).expect("its own question matches");
        assert_eq!(back, asker);
        assert_eq!(&bytes[..2], &data[..2]);
    }
    let _ = fwd.receive(now, data);
});
