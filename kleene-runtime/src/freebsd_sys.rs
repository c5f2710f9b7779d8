//! The little the runtime asks FreeBSD's kernel itself (the jail is kleene-jail's): a
//! process's start time and state (`kern.proc.pid`), and the mounts left under a
//! container's root at `delete`. The logic is platform-neutral, in [`crate::freebsd`].

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `kern.proc.pid.<pid>`: the process's start time ([`crate::freebsd::start_time`]) and
/// state letter ([`crate::freebsd::state_letter`]).
pub fn proc_stat(pid: i32) -> Option<(u64, u8)> {
    let mib = [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_PID, pid];
    // SAFETY: kinfo_proc is plain data; all zeroes is a valid value.
    let mut kp: libc::kinfo_proc = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::kinfo_proc>();
    let mut len = size;
    // SAFETY: the kernel writes at most `len` bytes into `kp`, which has that size.
    let r = unsafe {
        libc::sysctl(
            mib.as_ptr(),
            mib.len() as libc::c_uint,
            (&mut kp as *mut libc::kinfo_proc).cast(),
            &mut len,
            std::ptr::null(),
            0,
        )
    };
    // No such process: success with nothing written.
    if r < 0 || len != size || kp.ki_structsize as usize != size {
        return None;
    }
    Some((
        crate::freebsd::start_time(kp.ki_start.tv_sec as i64, kp.ki_start.tv_usec as i64),
        crate::freebsd::state_letter(kp.ki_stat as i32),
    ))
}

/// The mount points of the host, in the order they were mounted (`getfsstat(2)`).
fn mount_points() -> Result<Vec<PathBuf>> {
    let err = |e| Error::io("listing the mounts", e);
    for _ in 0..4 {
        // SAFETY: a count query: no buffer.
        let n = unsafe { libc::getfsstat(std::ptr::null_mut(), 0, libc::MNT_NOWAIT) };
        if n < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        let cap = n as usize + 8;
        let mut list: Vec<libc::statfs> = Vec::with_capacity(cap);
        let bytes = (cap * std::mem::size_of::<libc::statfs>()) as libc::c_long;
        // SAFETY: the kernel writes at most `bytes` bytes, the capacity of `list`.
        let got = unsafe { libc::getfsstat(list.as_mut_ptr(), bytes, libc::MNT_NOWAIT) };
        if got < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        if got as usize >= cap {
            continue; // more mounts meanwhile: maybe some not listed
        }
        // SAFETY: the kernel filled `got` whole statfs records.
        unsafe { list.set_len(got as usize) };
        return Ok(list
            .iter()
            .map(|m| {
                // SAFETY: f_mntonname is a C char array; reinterpreted as bytes of the
                // same length.
                let bytes: &[u8] = unsafe {
                    std::slice::from_raw_parts(m.f_mntonname.as_ptr().cast(), m.f_mntonname.len())
                };
                let name = CStr::from_bytes_until_nul(bytes)
                    .map(|c| c.to_bytes())
                    .unwrap_or(bytes);
                PathBuf::from(OsStr::from_bytes(name))
            })
            .collect());
    }
    Err(err(io::Error::other("the mount list keeps growing")))
}

/// Unmounts what is mounted below `root` (not `root` itself), the last mounted first:
/// the devfs and nullfs mounts kleene-jail made for the container's jail.
pub fn unmount_below(root: &Path) -> Result<()> {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    let mut first_err = None;
    for point in crate::freebsd::mounts_below(&root, &mount_points()?) {
        let Ok(c) = std::ffi::CString::new(point.as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: unmount with a NUL-terminated path.
        if unsafe { libc::unmount(c.as_ptr(), 0) } < 0 {
            // SAFETY: as above, forced: the jail's processes are gone.
            if unsafe { libc::unmount(c.as_ptr(), libc::MNT_FORCE) } < 0 && first_err.is_none() {
                first_err = Some(Error::io(
                    format!("unmounting {}", point.display()),
                    io::Error::last_os_error(),
                ));
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}
