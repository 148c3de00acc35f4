//! Named network namespaces, compatible with iproute2: a namespace `NAME` is a bind mount of a
//! namespace file on `/run/netns/NAME`, so `ip netns exec NAME ...`, `ip -n NAME ...` and
//! `ip netns list` see ours, and we see theirs.
//!
//! `setns(2)` and `unshare(2)` of a network namespace change the calling thread only. Entering a
//! namespace is written once, here: [`enter`] moves the calling thread (for a process that
//! should live in one namespace: call it before any other thread exists), [`run_in`] runs a
//! short task on a throw-away thread inside a namespace (sockets it opens stay in that
//! namespace), [`exec`] replaces the process with a command inside one (as `ip netns exec`).

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::{Error, Result};

/// Where iproute2 keeps named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Where a namespace's own configuration files live (`/etc/netns/NAME/resolv.conf`...): `ip
/// netns exec` (and [`exec`]) bind-mounts each over its `/etc` counterpart.
pub const ETC_NETNS_DIR: &str = "/etc/netns";

/// The directory of a namespace's own `/etc` files.
pub fn etc_dir(name: &str) -> PathBuf {
    Path::new(ETC_NETNS_DIR).join(name)
}

/// The path of a named namespace.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Whether a named namespace exists.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// The named namespaces, sorted (`ip netns list`).
pub fn list() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// A name iproute2 would accept: non-empty, at most 255 bytes, no `/`, not `.` or `..`.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 || name.contains('/') || name == "." || name == ".." {
        return Err(Error::new(
            format!("ip netns add {name:?}"),
            io::Error::new(io::ErrorKind::InvalidInput, "invalid namespace name"),
        ));
    }
    Ok(())
}

/// Makes `/run/netns` a shared mount point (as iproute2 does), so a namespace mounted there
/// later shows in every mount namespace that already saw the directory.
fn prepare_netns_dir() -> Result<()> {
    let op = || format!("preparing {NETNS_DIR}");
    std::fs::create_dir_all(NETNS_DIR).map_err(|e| Error::new(op(), e))?;
    let shared = || {
        mount(
            Some("none"),
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself first.
        Err(nix::errno::Errno::EINVAL) => {
            mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| Error::new(op(), e.into()))?;
            shared().map_err(|e| Error::new(op(), e.into()))
        }
        Err(e) => Err(Error::new(op(), e.into())),
    }
}

/// Creates a new, empty network namespace named `name` (`ip netns add NAME`). Fails with
/// [`Error::is_exists`] if the name is taken. On failure nothing is left behind.
pub fn create(name: &str) -> Result<()> {
    check_name(name)?;
    prepare_netns_dir()?;
    let op = || format!("ip netns add {name}");
    let target = path(name);
    // The mount point; O_EXCL makes a taken name an error, as in iproute2.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&target)
        .map_err(|e| Error::new(op(), e))?;
    let t = target.clone();
    let made = std::thread::Builder::new()
        .name("netns-create".into())
        .spawn(move || -> io::Result<()> {
            // This thread alone moves into the new namespace, then pins it by the bind mount;
            // /proc/thread-self (not /proc/self, the main thread's) names this thread's.
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &t,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            Ok(())
        })
        .map_err(|e| Error::new(op(), e))?
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")));
    if let Err(e) = made {
        let _ = std::fs::remove_file(&target);
        return Err(Error::new(op(), e));
    }
    Ok(())
}

/// Deletes the named namespace (`ip netns del NAME`): the namespace itself goes when nothing
/// (process, open fd, TAP fd's device) holds it any more.
pub fn delete(name: &str) -> Result<()> {
    let target = path(name);
    // Not mounted (a half-made namespace) is fine: the file still has to go.
    let _ = umount2(&target, MntFlags::MNT_DETACH);
    std::fs::remove_file(&target).map_err(|e| Error::new(format!("ip netns del {name}"), e))
}

/// Opens the named namespace (for `setns`, or to move a link into it by fd).
pub fn open(name: &str) -> Result<File> {
    let p = path(name);
    File::open(&p).map_err(|e| Error::new(format!("opening network namespace {}", p.display()), e))
}

/// Moves the calling thread into the named network namespace. Threads started afterwards
/// inherit it; threads that exist already do not.
pub fn enter(name: &str) -> Result<()> {
    let f = open(name)?;
    setns(&f, CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::new(format!("setns into network namespace {name}"), e.into()))
}

/// Runs `f` on a new thread inside the named namespace and returns its result; the caller's
/// own namespace is untouched. Sockets `f` opens stay in that namespace.
pub fn run_in<T: Send + 'static, E: From<Error> + Send + 'static>(
    name: &str,
    f: impl FnOnce() -> std::result::Result<T, E> + Send + 'static,
) -> std::result::Result<T, E> {
    let name = name.to_string();
    let op = format!("running a task in network namespace {name}");
    std::thread::Builder::new()
        .name("netns-task".into())
        .spawn(move || {
            enter(&name)?;
            f()
        })
        .map_err(|e| Error::new(op.clone(), e))?
        .join()
        .unwrap_or_else(|_| Err(Error::new(op, io::Error::other("the task panicked")).into()))
}

/// Writes a sysctl under `/proc/sys` for the calling thread's network namespace (`net.*` keys
/// are per namespace).
pub fn write_sysctl(key: &str, value: &str) -> Result<()> {
    let p = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
    std::fs::write(&p, value)
        .map_err(|e| Error::new(format!("writing {value} to {}", p.display()), e))
}

/// Sets a sysctl inside the named namespace.
pub fn set_sysctl(name: &str, key: &str, value: &str) -> Result<()> {
    let (key, value) = (key.to_string(), value.to_string());
    run_in(name, move || write_sysctl(&key, &value))
}

/// Replaces this process with `program args...` inside the named namespace, as
/// `ip netns exec NAME` does: the process enters the namespace, gets a private mount namespace
/// with `/sys` remounted (so `/sys/class/net` lists the namespace's interfaces) and each file of
/// `/etc/netns/NAME/` bind-mounted over its `/etc` counterpart (so the instance's
/// `resolv.conf` is what resolvers read), and execs.
/// Returns only on failure. Call it from a single-threaded process (a private mount namespace
/// cannot be made while other threads share this one's filesystem context).
pub fn exec(name: &str, program: &OsString, args: &[OsString]) -> Error {
    if let Err(e) = enter(name) {
        return e;
    }
    let op = |what: &str| format!("ip netns exec {name}: {what}");
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNS) {
        return Error::new(op("unshare(CLONE_NEWNS)"), e.into());
    }
    // Our mounts must not propagate back to the host.
    if let Err(e) = mount(
        Some(""),
        "/",
        Some("none"),
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    ) {
        return Error::new(op("making / a slave mount"), e.into());
    }
    let _ = umount2("/sys", MntFlags::MNT_DETACH);
    if let Err(e) = mount(
        Some(name),
        "/sys",
        Some("sysfs"),
        MsFlags::empty(),
        None::<&str>,
    ) {
        return Error::new(op("mounting /sys"), e.into());
    }
    if let Err(e) = bind_etc(name) {
        return e;
    }
    let e = std::process::Command::new(program).args(args).exec();
    Error::new(
        op(&format!(
            "running {}",
            String::from_utf8_lossy(&program.clone().into_vec())
        )),
        e,
    )
}

/// Bind-mounts each entry of `/etc/netns/NAME/` over `/etc/<entry>` in the calling process's
/// (private) mount namespace, as iproute2's `bind_etc` does; an entry whose counterpart does not
/// exist in `/etc` is skipped (as there). No directory: nothing to do.
fn bind_etc(name: &str) -> Result<()> {
    let dir = etc_dir(name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        if file_name == "." || file_name == ".." {
            continue;
        }
        let target = Path::new("/etc").join(&file_name);
        if !target.exists() {
            continue;
        }
        let source = entry.path();
        mount(
            Some(&source),
            &target,
            Some("none"),
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            Error::new(
                format!(
                    "ip netns exec {name}: binding {} over {}",
                    source.display(),
                    target.display()
                ),
                e.into(),
            )
        })?;
    }
    Ok(())
}

/// Makes `cmd` start inside the named network namespace (its child enters it between fork and
/// exec); the caller's namespace is untouched. Only the network namespace changes: files the
/// command opens are the caller's.
pub fn command_in(name: &str, cmd: &mut std::process::Command) -> Result<()> {
    let f = open(name)?;
    // SAFETY: setns(2) is async-signal-safe and the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || setns(&f, CloneFlags::CLONE_NEWNET).map_err(io::Error::from));
    }
    Ok(())
}
