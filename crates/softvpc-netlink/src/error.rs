//! One error type for every plumbing operation: what was attempted (worded like the iproute2
//! command that would do the same) and the kernel's answer.

use std::io;

/// A failed plumbing operation.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {source}")]
pub struct Error {
    op: String,
    #[source]
    source: io::Error,
}

/// The result of a plumbing operation.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error of operation `op` (e.g. `ip link set dev eth0 up`).
    pub fn new(op: impl Into<String>, source: io::Error) -> Error {
        Error {
            op: op.into(),
            source,
        }
    }

    pub(crate) fn netlink(op: impl Into<String>, e: rtnetlink::Error) -> Error {
        let source = match e {
            rtnetlink::Error::NetlinkError(m) => m.to_io(),
            other => io::Error::other(other.to_string()),
        };
        Error::new(op, source)
    }

    /// The operation that failed.
    pub fn op(&self) -> &str {
        &self.op
    }

    /// The kernel's errno, if the kernel answered with one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// The object (link, address, route, rule, namespace) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(
                libc_errno::ENODEV
                    | libc_errno::ENOENT
                    | libc_errno::ESRCH
                    | libc_errno::EADDRNOTAVAIL
            )
        )
    }

    /// The object exists already.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc_errno::EEXIST)
    }
}

/// The errno values the predicates above test (from nix, so no libc dependency of our own).
mod libc_errno {
    use nix::errno::Errno;
    pub const ENODEV: i32 = Errno::ENODEV as i32;
    pub const ENOENT: i32 = Errno::ENOENT as i32;
    pub const ESRCH: i32 = Errno::ESRCH as i32;
    pub const EADDRNOTAVAIL: i32 = Errno::EADDRNOTAVAIL as i32;
    pub const EEXIST: i32 = Errno::EEXIST as i32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_answers_are_classified_and_shown_with_the_operation() {
        let e = Error::new("ip link del dev eth9", io::Error::from_raw_os_error(19));
        assert!(e.is_not_found() && !e.is_exists());
        assert_eq!(e.errno(), Some(19));
        assert!(e.to_string().starts_with("ip link del dev eth9: "), "{e}");
        let e = Error::new("ip netns add x", io::Error::from_raw_os_error(17));
        assert!(e.is_exists() && !e.is_not_found());
        let e = Error::new("x", io::Error::other("no errno"));
        assert_eq!(e.errno(), None);
        assert!(!e.is_exists() && !e.is_not_found());
    }
}
