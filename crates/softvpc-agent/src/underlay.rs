//! Underlay sockets: receive VXLAN on a UDP socket, send it with a raw socket.
//!
//! Receiving uses an ordinary UDP socket bound to `<underlay-ip>:4789`, so the kernel does the
//! IPv4/UDP checks and hands over just the payload (VXLAN header onwards) and the outer source.
//!
//! Sending uses `socket(AF_INET, SOCK_RAW, IPPROTO_UDP)`: the agent writes the 8-byte UDP header
//! itself (source port = the engine's flow hash, so the underlay can spread flows, RFC 7348 5.;
//! checksum 0, allowed for VXLAN over IPv4) and the kernel adds the IPv4 header. A raw
//! IPPROTO_UDP socket would also get a copy of every UDP datagram the host receives; a BPF filter
//! that accepts nothing stops that.
//!
//! This is the seam for faster underlay I/O later (`recvmmsg`/`sendmmsg`, UDP GSO with
//! `UDP_SEGMENT` and GRO, AF_XDP): the data path only calls [`UnderlayRx::recv_batch`] and
//! [`UnderlayTx::send`].

use std::io::{self, IoSlice};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use anyhow::Context as _;
use nix::sys::socket::{
    bind, sendmsg, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol,
    SockType, SockaddrIn,
};

use crate::batch::Batch;

/// The VXLAN UDP port (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;

/// Receive buffer we ask for (bursts from many senders).
const RX_SOCKET_BUFFER: usize = 4 << 20;

/// The receiving side: a non-blocking UDP socket on the VXLAN port.
#[derive(Debug)]
pub struct UnderlayRx {
    sock: UdpSocket,
}

impl UnderlayRx {
    /// Bind the VXLAN receive socket on `ip:port` in the current namespace.
    pub fn bind(ip: Ipv4Addr, port: u16) -> anyhow::Result<UnderlayRx> {
        let sock = UdpSocket::bind(SocketAddrV4::new(ip, port))
            .with_context(|| format!("binding the VXLAN socket to {ip}:{port}"))?;
        sock.set_nonblocking(true)?;
        // Best effort: RcvBufForce needs CAP_NET_ADMIN (we have it) and ignores rmem_max.
        if setsockopt(&sock, sockopt::RcvBufForce, &RX_SOCKET_BUFFER).is_err() {
            let _ = setsockopt(&sock, sockopt::RcvBuf, &RX_SOCKET_BUFFER);
        }
        Ok(UnderlayRx { sock })
    }

    /// The bound address (useful when bound to port 0 in tests).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Receives queued datagrams into `batch` (cleared first) until it is full or nothing is
    /// left. Returns the number of receive errors other than "nothing left" (counted, skipped).
    pub fn recv_batch(&self, batch: &mut Batch) -> u64 {
        batch.clear();
        let mut errors = 0;
        while let Some(slot) = batch.next_slot() {
            match self.sock.recv_from(slot) {
                Ok((n, SocketAddr::V4(from))) => batch.commit(n, *from.ip()),
                // An IPv4 socket never reports an IPv6 source; skip it if it somehow does.
                Ok((_, SocketAddr::V6(_))) => errors += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // E.g. ECONNREFUSED from an ICMP error queued on the socket: not fatal.
                Err(_) => errors += 1,
            }
        }
        errors
    }
}

impl UnderlayRx {
    /// A second handle on the socket for reading its drop counter from another thread (the
    /// metrics endpoint) while the data path owns this one.
    pub fn drop_counter(&self) -> io::Result<SocketDrops> {
        Ok(SocketDrops {
            fd: self.sock.as_fd().try_clone_to_owned()?,
        })
    }
}

/// Reads the kernel's drop counter of the VXLAN socket: datagrams that arrived while its
/// receive buffer was full (or that failed the socket's checks), i.e. dropped before the data
/// path could read them, which no engine counter can see.
#[derive(Debug)]
pub struct SocketDrops {
    fd: OwnedFd,
}

impl SocketDrops {
    /// The socket's `sk_drops` (`SO_MEMINFO`'s `SK_MEMINFO_DROPS`; the `drops` column of
    /// `/proc/net/udp`).
    pub fn read(&self) -> io::Result<u64> {
        // SK_MEMINFO_VARS is 9 on current kernels; an older kernel fills fewer and says so.
        let mut info = [0u32; 9];
        let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
        // SAFETY: `fd` is an open socket; SO_MEMINFO writes at most `len` bytes into `info`,
        // which is valid, exclusively borrowed and `len` bytes long, and updates `len`.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_MEMINFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let i = libc::SK_MEMINFO_DROPS as usize;
        if (len as usize) < (i + 1) * 4 {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        Ok(u64::from(info[i]))
    }
}

impl AsFd for UnderlayRx {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// The sending side: a raw IPPROTO_UDP socket bound to the underlay address.
#[derive(Debug)]
pub struct UnderlayTx {
    fd: OwnedFd,
}

impl UnderlayTx {
    /// Opens the raw socket with `src` as the outer source address. Blocking on purpose: when the
    /// underlay queue is full, the data path waits instead of dropping (back-pressure).
    pub fn open(src: Ipv4Addr) -> anyhow::Result<UnderlayTx> {
        let fd = socket(
            AddressFamily::Inet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::Udp,
        )
        .context("opening the raw UDP socket (needs CAP_NET_RAW)")?;
        attach_drop_all_filter(&fd).context("attaching the drop-all filter to the raw socket")?;
        bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(src, 0)))
            .with_context(|| format!("binding the raw socket to {src}"))?;
        Ok(UnderlayTx { fd })
    }

    /// Sends one UDP datagram `src_port -> dst:dst_port` carrying `payload`.
    pub fn send(
        &self,
        dst: Ipv4Addr,
        src_port: u16,
        dst_port: u16,
        payload: &[u8],
    ) -> io::Result<()> {
        let header = udp_header(src_port, dst_port, payload.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let iov = [IoSlice::new(&header), IoSlice::new(payload)];
        // For raw IPv4 sockets the port in the address is ignored (the header we wrote has it).
        let addr = SockaddrIn::from(SocketAddrV4::new(dst, 0));
        loop {
            match sendmsg(
                self.fd.as_raw_fd(),
                &iov,
                &[],
                MsgFlags::empty(),
                Some(&addr),
            ) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The UDP header for a datagram with `payload_len` bytes: ports, length, checksum 0 (none).
/// `None` when the datagram would not fit UDP's 16-bit length.
pub fn udp_header(src_port: u16, dst_port: u16, payload_len: usize) -> Option<[u8; 8]> {
    let len = u16::try_from(payload_len.checked_add(8)?).ok()?;
    let mut h = [0u8; 8];
    h[0..2].copy_from_slice(&src_port.to_be_bytes());
    h[2..4].copy_from_slice(&dst_port.to_be_bytes());
    h[4..6].copy_from_slice(&len.to_be_bytes());
    // h[6..8]: checksum 0 = not computed (RFC 768; RFC 7348 allows it for VXLAN over IPv4).
    Some(h)
}

/// Attaches a classic BPF program `ret #0` (accept nothing) so the raw socket, which is only for
/// sending, never queues copies of the host's incoming UDP traffic.
fn attach_drop_all_filter(fd: &OwnedFd) -> io::Result<()> {
    let mut code = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    // SAFETY: `fd` is an open socket; SO_ATTACH_FILTER reads a `sock_fprog` whose `filter`
    // points to `len` valid `sock_filter` instructions; both live until the call returns (the
    // kernel copies the program).
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_header_layout() {
        let h = udp_header(50000, VXLAN_PORT, 100).expect("fits");
        assert_eq!(h, [0xc3, 0x50, 0x12, 0xb5, 0x00, 108, 0, 0]);
        assert!(udp_header(1, 2, 65535 - 8).is_some());
        assert!(udp_header(1, 2, 65535 - 7).is_none());
        assert!(udp_header(1, 2, usize::MAX).is_none());
    }

    #[test]
    fn rx_batches_loopback_datagrams() {
        let rx = UnderlayRx::bind(Ipv4Addr::LOCALHOST, 0).expect("bind");
        let to = rx.local_addr().expect("addr");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        for i in 0..5u8 {
            tx.send_to(&[i; 20], to).expect("send");
        }
        let mut batch = Batch::new(4, 2048);
        // Loopback delivery is synchronous, but allow the socket a moment anyway.
        let mut got = Vec::new();
        for _ in 0..100 {
            assert_eq!(rx.recv_batch(&mut batch), 0);
            got.extend(batch.iter().map(|(src, d)| (src, d.to_vec())));
            if got.len() >= 5 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(got.len(), 5);
        for (i, (src, d)) in got.iter().enumerate() {
            assert_eq!(*src, Ipv4Addr::LOCALHOST);
            assert_eq!(d, &vec![i as u8; 20]);
        }
        // Nothing left: an empty batch, no error.
        assert_eq!(rx.recv_batch(&mut batch), 0);
        assert!(batch.is_empty());
    }

    #[test]
    fn receive_buffer_overflow_is_counted() {
        let rx = UnderlayRx::bind(Ipv4Addr::LOCALHOST, 0).expect("bind");
        let drops = rx.drop_counter().expect("dup");
        assert_eq!(drops.read().expect("SO_MEMINFO"), 0);
        // Shrink the buffer (the kernel doubles it and keeps a floor) and overfill it unread.
        setsockopt(&rx.sock, sockopt::RcvBuf, &1024).expect("SO_RCVBUF");
        let to = rx.local_addr().expect("addr");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        for _ in 0..200 {
            tx.send_to(&[0u8; 1400], to).expect("send");
        }
        let n = drops.read().expect("SO_MEMINFO");
        assert!(n > 0 && n <= 200, "drops {n}");
    }
}
