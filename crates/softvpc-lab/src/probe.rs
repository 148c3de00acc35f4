//! An in-process ICMP echo probe inside a named network namespace: the lab's readiness check.
//!
//! The lab must work on a fresh machine, where `ping` (iputils) is not installed, so it sends its
//! own echo request from a raw ICMP socket opened inside the namespace. Packets are built and
//! parsed with smoltcp's ICMPv4 representation (checksums included); only the socket is ours.
//! The probe runs on a thread inside the namespace (`softvpc_netlink::netns::run_in`), so the
//! caller's namespace is never touched; the socket stays bound to the namespace it was made in.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::Context;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, Ipv4Packet};
use socket2::{Domain, Protocol, Socket, Type};

/// Sends one ICMP echo request to `dst` from inside the named netns and waits up to `timeout`
/// for its reply. `Ok(false)` means no reply in time (or the network is unreachable from there);
/// `Err` means the probe itself could not run (no such netns, no privilege).
pub fn ping_in_netns(netns: &str, dst: Ipv4Addr, timeout: Duration) -> anyhow::Result<bool> {
    softvpc_netlink::netns::run_in(netns, move || ping(dst, timeout))
}

/// Echo identifiers differ per probe so concurrent probes in one namespace do not take each
/// other's replies (raw ICMP sockets see every ICMP packet of the namespace).
fn next_ident() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    (std::process::id() as u16)
        .wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919))
}

/// One echo exchange from the current thread's network namespace.
pub fn ping(dst: Ipv4Addr, timeout: Duration) -> anyhow::Result<bool> {
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
        .context("opening a raw ICMP socket (needs root or CAP_NET_RAW)")?;
    let ident = next_ident();
    let payload = *b"softvpc-lab-probe";
    let request = Icmpv4Repr::EchoRequest {
        ident,
        seq_no: 1,
        data: &payload,
    };
    let mut buf = vec![0u8; request.buffer_len()];
    request.emit(
        &mut Icmpv4Packet::new_unchecked(&mut buf[..]),
        &ChecksumCapabilities::default(),
    );
    let target = SocketAddrV4::new(dst, 0);
    match sock.send_to(&buf, &target.into()) {
        Ok(_) => {}
        // No route yet (an address or link still being set up): simply not reachable now.
        Err(e) if is_unreachable(&e) => return Ok(false),
        Err(e) => return Err(e).context(format!("sending an ICMP echo request to {dst}")),
    }
    let deadline = Instant::now() + timeout;
    let mut rx = [MaybeUninit::<u8>::uninit(); 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        sock.set_read_timeout(Some(left))?;
        let (n, _) = match sock.recv_from(&mut rx) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("receiving ICMP"),
        };
        // SAFETY: recv_from initialised the first `n` bytes.
        let frame: &[u8] = unsafe { std::slice::from_raw_parts(rx.as_ptr().cast::<u8>(), n) };
        if is_reply(frame, dst, ident, &payload) {
            return Ok(true);
        }
    }
}

/// Whether a raw-socket datagram (IPv4 header + ICMP) is the echo reply from `dst` to our probe.
fn is_reply(datagram: &[u8], dst: Ipv4Addr, ident: u16, payload: &[u8]) -> bool {
    let Ok(ip) = Ipv4Packet::new_checked(datagram) else {
        return false;
    };
    if ip.src_addr() != dst {
        return false;
    }
    let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
        return false;
    };
    matches!(
        Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()),
        Ok(Icmpv4Repr::EchoReply { ident: i, data, .. }) if i == ident && data == payload
    )
}

/// The errors `send_to` reports for a destination with no route (yet).
fn is_unreachable(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::ENETUNREACH | Errno::EHOSTUNREACH | Errno::EADDRNOTAVAIL)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(src: Ipv4Addr, ident: u16, data: &[u8]) -> Vec<u8> {
        use smoltcp::wire::{IpProtocol, Ipv4Repr};
        let icmp = Icmpv4Repr::EchoReply {
            ident,
            seq_no: 1,
            data,
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: Ipv4Addr::new(10, 0, 0, 5),
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; ip.buffer_len() + icmp.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut pkt = Ipv4Packet::new_unchecked(&mut buf[..]);
        ip.emit(&mut pkt, &caps);
        icmp.emit(&mut Icmpv4Packet::new_unchecked(pkt.payload_mut()), &caps);
        buf
    }

    #[test]
    fn only_our_reply_from_the_target_counts() {
        let dst = Ipv4Addr::new(10, 0, 0, 1);
        let ours = reply(dst, 42, b"probe");
        assert!(is_reply(&ours, dst, 42, b"probe"));
        assert!(!is_reply(&ours, dst, 43, b"probe"), "another probe's ident");
        assert!(!is_reply(&ours, dst, 42, b"other"), "another payload");
        assert!(!is_reply(&ours, Ipv4Addr::new(10, 0, 0, 2), 42, b"probe"));
        let mut corrupt = ours.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(!is_reply(&corrupt, dst, 42, b"probe"), "bad checksum");
        assert!(!is_reply(&ours[..10], dst, 42, b"probe"), "truncated");
        assert!(!is_reply(&[], dst, 42, b"probe"));
    }

    #[test]
    fn idents_differ_between_probes() {
        assert_ne!(next_ident(), next_ident());
    }

    /// Root only: a probe to loopback inside a fresh namespace is answered by its kernel.
    #[test]
    fn loopback_in_a_fresh_namespace_answers() {
        if !nix::unistd::geteuid().is_root() {
            println!("SKIPPED (needs root): loopback_in_a_fresh_namespace_answers");
            eprintln!("!! SKIPPED (needs root): loopback_in_a_fresh_namespace_answers");
            return;
        }
        let name = format!("svpc-probe-test-{}", std::process::id());
        softvpc_netlink::netns::create(&name).expect("create netns");
        let result = (|| {
            softvpc_netlink::block_on(async {
                softvpc_netlink::Netlink::connect_in(&name)?
                    .set_up("lo")
                    .await
            })?;
            let up = ping_in_netns(&name, Ipv4Addr::LOCALHOST, Duration::from_secs(2))?;
            // An address nothing in the namespace holds or routes: unreachable, not an error.
            let nowhere = ping_in_netns(
                &name,
                Ipv4Addr::new(198, 18, 255, 254),
                Duration::from_millis(300),
            )?;
            anyhow::Ok((up, nowhere))
        })();
        let _ = softvpc_netlink::netns::delete(&name);
        let (up, nowhere) = result.expect("probe");
        assert!(up, "loopback answers inside the namespace");
        assert!(!nowhere, "no route means no answer");
        assert!(ping_in_netns(&name, Ipv4Addr::LOCALHOST, Duration::from_millis(100)).is_err());
    }
}
