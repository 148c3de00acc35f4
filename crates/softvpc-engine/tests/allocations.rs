//! The steady path allocates nothing: once the shell's `Output` has grown to a batch's size,
//! handling batches (bridged, routed, local, encapsulated, ARP and ICMP replies, drops, and
//! decapsulation) performs zero heap allocations. Counted by a global allocator that counts the
//! allocations of the current thread.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use softvpc_engine::{Output, Path};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn steady_batches_allocate_nothing() {
    let r1 = Ipv4Addr::new(10, 0, 0, 1);
    let frames: Vec<Vec<u8>> = vec![
        udp(VM1.mac, VM2.mac, VM1.ip, VM2.ip, 1, 2, &[7; 1400]), // bridged, encapsulated
        udp(VM1.mac, ROUTER1, VM1.ip, VM3.ip, 1, 2, b"routed"),  // routed, encapsulated
        udp(VM1.mac, VM4.mac, VM1.ip, VM4.ip, 1, 2, b"local"),   // local port
        arp_request(&VM1, VM2.ip),                               // ARP reply
        echo_request(VM1.mac, ROUTER1, VM1.ip, r1, 64, 1, 1, b"gw"), // ICMP reply
        udp(VM1.mac, VM2.mac, VM4.ip, VM2.ip, 1, 2, b"spoofed"), // drop
        vec![0u8; 5],                                            // malformed
    ];
    let datagrams: Vec<Vec<u8>> = vec![
        vxlan(
            VNI1.0,
            &udp(VM2.mac, VM1.mac, VM2.ip, VM1.ip, 1, 2, &[9; 1400]),
        ),
        vxlan(0xbeef, &[0u8; 60]),
    ];
    let mut e = seed_engine(HOST1);
    let mut out = Output::default();
    let round = |e: &mut softvpc_engine::Engine, out: &mut Output, i: u64| {
        out.clear();
        let now = at_ms(i);
        e.handle_port_frames(now, VM1.port, frames.iter().map(|f| &f[..]), out);
        e.handle_underlay_datagrams(now, datagrams.iter().map(|d| (HOST2, &d[..])), out);
        if e.poll_timeout().is_some_and(|t| t <= now) {
            e.handle_timeout(now);
        }
        assert_eq!(out.to_ports().len(), 4);
        assert_eq!(out.transmits().len(), 2);
    };
    // Warm-up: the output grows to a batch's size once; the first drop opens a report
    // interval (its sample buffer was allocated with the engine).
    round(&mut e, &mut out, 0);

    let before = allocations();
    for i in 1..1000 {
        round(&mut e, &mut out, i);
    }
    assert_eq!(allocations() - before, 0, "the steady path allocated");
    assert_eq!(e.counters().frames(Path::ToUnderlay), 2000);

    // The one allocation the report makes, when its interval closes: off the packet path.
    let deadline = e.poll_timeout().expect("drops opened an interval");
    assert!(deadline > at_ms(999));
    e.handle_timeout(deadline + Duration::from_millis(1));
    assert!(e.poll_event().is_some());
}
