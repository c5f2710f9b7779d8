//! Finding the host's processes whose root directory or working directory is a jail root
//! or below it, for [`crate::stop_processes_under`].
//!
//! Paths do not work: `/proc/PID/root` of a jail's process reads `/` (the root of its own
//! mount namespace, after `pivot_root`) and its cwd reads as a path inside the jail. So
//! directories are compared by device and inode: a jail's root is a bind mount of the host
//! directory, the same inode. "Below" is found by walking `..` up from the process' root
//! and cwd; the walk ends at the root of the process' own mount namespace, which for a
//! jail is the jail root itself. `statx` with `AT_STATX_DONT_SYNC` reads the cached inode
//! only, so a wedged FUSE daemon (zfs-fuse) cannot hang the search.

use std::collections::HashSet;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::child::parse_stat_ppid;
use super::sys::{pidfd_exited, pidfd_open, pidfd_send_signal};
use crate::error::{Error, Result};

/// Directories deeper than this below a process' root are not walked further.
const MAX_DEPTH: usize = 1024;

/// A process found under a root, held by a pidfd (so a signal never reaches a process that
/// reused its pid).
#[derive(Debug)]
pub(crate) struct Found {
    pid: i32,
    first: bool,
    pidfd: OwnedFd,
}

impl Found {
    /// The host pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether it is pid 1 of its own pid namespace: the kernel kills the rest of the
    /// namespace when it dies, so it goes first.
    pub fn first(&self) -> bool {
        self.first
    }

    /// Sends `signal`; a process that is gone already is not an error.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        match pidfd_send_signal(self.pidfd.as_fd(), signal) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            r => r,
        }
    }

    /// Whether it has ended (a zombie counts: it holds no directory any more).
    pub fn exited(&self) -> bool {
        pidfd_exited(self.pidfd.as_fd())
    }
}

/// (device major, device minor, inode) of a directory, from the cached inode.
type DirId = (u32, u32, u64);

fn dir_id(dir: RawFd, path: &std::ffi::CStr, flags: i32) -> io::Result<DirId> {
    // SAFETY: statx is plain data for which all-zero is valid.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path, a descriptor or AT_FDCWD, and a statx to fill, all
    // valid for the call.
    let r = unsafe {
        libc::statx(
            dir,
            path.as_ptr(),
            flags | libc::AT_STATX_DONT_SYNC,
            libc::STATX_INO,
            &mut stx,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((stx.stx_dev_major, stx.stx_dev_minor, stx.stx_ino))
}

fn open_dir(dir: RawFd, path: &std::ffi::CStr) -> io::Result<OwnedFd> {
    // SAFETY: openat with a NUL-terminated path and a descriptor or AT_FDCWD.
    let fd = unsafe {
        libc::openat(
            dir,
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the directory `link` (a `/proc/PID/root` or `/proc/PID/cwd`) is `target` or
/// below it.
fn at_or_below(link: &str, target: DirId) -> bool {
    let Ok(path) = CString::new(link) else {
        return false;
    };
    let Ok(mut dir) = open_dir(libc::AT_FDCWD, &path) else {
        return false;
    };
    let Ok(mut id) = dir_id(dir.as_raw_fd(), c"", libc::AT_EMPTY_PATH) else {
        return false;
    };
    for _ in 0..MAX_DEPTH {
        if id == target {
            return true;
        }
        let Ok(parent) = open_dir(dir.as_raw_fd(), c"..") else {
            return false;
        };
        let Ok(parent_id) = dir_id(parent.as_raw_fd(), c"", libc::AT_EMPTY_PATH) else {
            return false;
        };
        if parent_id == id {
            // The top: `..` of a root is itself.
            return false;
        }
        (dir, id) = (parent, parent_id);
    }
    false
}

fn is_namespace_init(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|ids| {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            ids.len() > 1 && ids.last() == Some(&"1")
        })
        .unwrap_or(false)
}

/// This process and its ancestors: never stopped.
fn self_and_ancestors() -> HashSet<i32> {
    let mut out = HashSet::new();
    let mut pid = std::process::id() as i32;
    out.insert(pid);
    for _ in 0..MAX_DEPTH {
        let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
            break;
        };
        match parse_stat_ppid(&stat) {
            Some(ppid) if ppid > 0 && out.insert(ppid) => pid = ppid,
            _ => break,
        }
    }
    out
}

/// Every process (but this one and its ancestors) whose root or working directory is
/// `root` or below it.
pub(crate) fn find_under(root: &Path) -> Result<Vec<Found>> {
    let croot = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidConfig("the root contains a NUL byte".into()))?;
    let target = dir_id(libc::AT_FDCWD, &croot, 0).map_err(|_| Error::RootNotFound {
        path: root.to_owned(),
    })?;
    let spared = self_and_ancestors();
    let entries = std::fs::read_dir("/proc").map_err(|e| Error::io("list /proc", e))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if spared.contains(&pid) {
            continue;
        }
        // The pidfd first: if the pid is reused after it, the pidfd shows the exit below.
        let Ok(pidfd) = pidfd_open(pid) else {
            continue;
        };
        if !at_or_below(&format!("/proc/{pid}/root"), target)
            && !at_or_below(&format!("/proc/{pid}/cwd"), target)
        {
            continue;
        }
        if pidfd_exited(pidfd.as_fd()) {
            continue;
        }
        found.push(Found {
            pid,
            first: is_namespace_init(pid),
            pidfd,
        });
    }
    Ok(found)
}

/// Waits until every process of `found` has ended, or `timeout` has passed.
pub(crate) fn wait_exited(found: &[&Found], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut fds: Vec<libc::pollfd> = found
            .iter()
            .filter(|f| !f.exited())
            .map(|f| libc::pollfd {
                fd: f.pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let left = deadline.saturating_duration_since(Instant::now());
        if fds.is_empty() || left.is_zero() {
            return;
        }
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: polls `fds.len()` valid pollfds; returns when one ends or at the timeout.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    }
}

/// Nothing is left after the processes: a Linux jail is its processes.
pub(crate) fn release_under(_root: &Path) -> Result<()> {
    Ok(())
}
