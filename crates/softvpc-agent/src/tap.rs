//! TAP devices: one per local ENI, the instance's side of its virtual NIC.
//!
//! A small, careful wrapper in the style of Firecracker's `tap.rs`: open `/dev/net/tun`, attach
//! it to a new TAP interface with `TUNSETIFF` (`IFF_TAP | IFF_NO_PI`, so every read and write is
//! exactly one Ethernet frame), non-blocking. The interface can be moved to another network
//! namespace (and renamed) while the agent keeps reading and writing the fd.
//!
//! An instance's TAP is **persistent** (`TUNSETPERSIST`, [`Tap::create_persistent`]): it outlives
//! the agent's fd, so an agent that exits, crashes or is killed with SIGKILL leaves every
//! instance its namespace, its `eth<N>` (same interface index), addresses and routes; only the
//! carrier drops while no fd is attached. The next agent attaches to the existing device again
//! ([`Tap::attach`], from inside the instance's namespace, by its name there) and forwards on.
//! Stale devices are the agent's to remove: a port that goes away clears the flag before its fd
//! closes ([`Tap::set_persistent`]), so the device goes with the fd as before; at start the agent
//! deletes the instance TAPs that belong to no port (`instance::Plumber::adopt`). The edge TAP
//! stays non-persistent (it is made again at every start).
//!
//! Next step (not done yet, the design allows it): `IFF_VNET_HDR` plus `TUNSETVNETHDRSZ` and
//! `TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4)`, so each read or write carries a 10-byte
//! `virtio_net_hdr` (`softvpc_wire`) and up to 64 KB TCP super-frames with partial checksums. The
//! flag and ioctl numbers are declared below; [`Tap::open`] would take the offload set, and the
//! data path's buffers are already sized for 64 KB reads.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// Longest interface name the kernel accepts (`IFNAMSIZ` minus the NUL).
pub const MAX_IFNAME_LEN: usize = libc::IFNAMSIZ - 1;

// ioctl numbers from <linux/if_tun.h>: _IOW('T', n, int/unsigned int).
const TUNSETIFF: u64 = 0x4004_54ca; // _IOW('T', 202, int)
const TUNSETPERSIST: u64 = 0x4004_54cb; // _IOW('T', 203, int)
#[allow(dead_code)] // The documented next step (offloads); kept next to its siblings.
const TUNSETOFFLOAD: u64 = 0x4004_54d0; // _IOW('T', 208, unsigned int)
#[allow(dead_code)]
const TUNSETVNETHDRSZ: u64 = 0x4004_54d8; // _IOW('T', 216, int)

// Interface flags from <linux/if_tun.h>.
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
#[allow(dead_code)]
const IFF_VNET_HDR: libc::c_short = 0x4000;

const TUN_PATH: &str = "/dev/net/tun";

/// Why a TAP device could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name is empty, longer than 15 bytes, or has a byte the kernel refuses (`/`, NUL,
    /// whitespace). Pick a shorter name ([`tap_name_for_eni`] always fits).
    #[error("invalid TAP interface name {0:?}")]
    InvalidName(String),
    /// `/dev/net/tun` could not be opened: the `tun` module is missing or we lack permission.
    #[error("opening /dev/net/tun: {0}")]
    OpenTun(#[source] io::Error),
    /// `TUNSETPERSIST` failed.
    #[error("TUNSETPERSIST {name}: {source}")]
    Persist {
        /// The device.
        name: String,
        #[source]
        /// The kernel's error.
        source: io::Error,
    },
    /// `TUNSETIFF` failed: no CAP_NET_ADMIN, or a device of that name exists and is busy (or,
    /// attaching, is not a TAP).
    #[error("TUNSETIFF {name}: {source}")]
    CreateTap {
        /// The device name asked for.
        name: String,
        #[source]
        /// The kernel's error.
        source: io::Error,
    },
}

/// `struct ifreq` with the flags member of its union (the only member TUNSETIFF uses).
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    // The kernel's union is 24 bytes (struct ifmap on 64-bit); it copies the whole struct.
    _pad: [u8; 22],
}

/// An open TAP device. Reading yields one Ethernet frame; writing sends one to the interface.
/// Dropping it closes the fd, which deletes the interface (wherever it has been moved to) unless
/// it is persistent.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Creates a persistent TAP interface called `name` (in the caller's network namespace): it
    /// stays when the fd closes, until [`Tap::set_persistent`]`(false)` or a netlink delete.
    pub fn create_persistent(name: &str) -> Result<Tap, TapError> {
        let tap = Tap::open(name)?;
        tap.set_persistent(true)?;
        Ok(tap)
    }

    /// Attaches to the existing TAP interface `name` of the calling thread's network namespace
    /// (a persistent one an earlier agent left), non-blocking. Fails if it is not a TAP or
    /// another fd holds it.
    pub fn attach(name: &str) -> Result<Tap, TapError> {
        // TUNSETIFF on an existing device's name attaches to it (the flags must match its kind).
        Tap::open(name)
    }

    /// Makes the device outlive its fd (or not: then closing the fd deletes it).
    pub fn set_persistent(&self, persistent: bool) -> Result<(), TapError> {
        // SAFETY: `file` is an open /dev/net/tun fd attached to a device; TUNSETPERSIST takes
        // its argument by value.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                TUNSETPERSIST as _,
                libc::c_ulong::from(persistent),
            )
        };
        if rc < 0 {
            return Err(TapError::Persist {
                name: self.name.clone(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Opens `/dev/net/tun` and `TUNSETIFF`s `name` (in the caller's network namespace): a new
    /// non-persistent TAP, or the existing TAP of that name. Non-blocking.
    pub fn open(name: &str) -> Result<Tap, TapError> {
        validate_name(name)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_PATH)
            .map_err(TapError::OpenTun)?;

        let mut req = IfReqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI,
            _pad: [0; 22],
        };
        // validate_name guarantees at most IFNAMSIZ-1 bytes, so the name stays NUL-terminated.
        req.name[..name.len()].copy_from_slice(name.as_bytes());

        // SAFETY: `file` is an open /dev/net/tun fd; TUNSETIFF reads and writes a `struct ifreq`,
        // and `req` is a properly sized (40-byte), initialised, exclusively borrowed ifreq that
        // outlives the call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) };
        if rc < 0 {
            return Err(TapError::CreateTap {
                name: name.to_string(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(Tap {
            file,
            name: name.to_string(),
        })
    }

    /// The name the interface was created with (it may since have been renamed in another
    /// namespace; the fd does not care).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame into `buf`. `WouldBlock` when none is queued. A frame longer than `buf`
    /// is truncated by the kernel, so `buf` should hold the largest frame (64 KB with offloads).
    pub fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one frame to the interface (the instance receives it).
    pub fn write_frame(&self, frame: &[u8]) -> io::Result<usize> {
        (&self.file).write(frame)
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

fn validate_name(name: &str) -> Result<(), TapError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(TapError::InvalidName(name.to_string()))
    }
}

/// The agent-side TAP name for an ENI: `t` + the last 14 characters of its id (`eni-` + 17 hex
/// gives `t` + 14 hex = 15 bytes, the kernel's limit). Inside the instance it is renamed
/// `eth<device index>`; the short name only has to be unique among this host's ENIs while it is
/// being set up.
pub fn tap_name_for_eni(eni_id: &str) -> String {
    let tail: String = eni_id
        .strip_prefix("eni-")
        .unwrap_or(eni_id)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let start = tail.len().saturating_sub(MAX_IFNAME_LEN - 1);
    format!("t{}", &tail[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_fit_and_are_distinct() {
        let a = tap_name_for_eni("eni-0123456789abcdef0");
        let b = tap_name_for_eni("eni-0123456789abcdef1");
        assert_eq!(a, "t3456789abcdef0");
        assert_eq!(a.len(), MAX_IFNAME_LEN);
        assert_ne!(a, b);
        assert!(validate_name(&a).is_ok());
        // Odd ids still give a valid name.
        let odd = tap_name_for_eni("eni-x/y:z");
        assert!(validate_name(&odd).is_ok(), "{odd}");
        assert_eq!(tap_name_for_eni("short"), "tshort");
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("tap0").is_ok());
        assert!(validate_name("123456789012345").is_ok());
        for bad in ["", "1234567890123456", "a/b", "a b", "a:b", "..", "é"] {
            assert!(
                matches!(validate_name(bad), Err(TapError::InvalidName(_))),
                "{bad:?} accepted"
            );
        }
        // The constructor refuses before touching the kernel.
        assert!(matches!(
            Tap::open("this-name-is-too-long"),
            Err(TapError::InvalidName(_))
        ));
    }

    #[test]
    fn ifreq_has_the_kernel_size() {
        assert_eq!(std::mem::size_of::<IfReqFlags>(), 40);
    }
}
