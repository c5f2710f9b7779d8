//! The parent's half of a jail's user namespace: once the jail's first process has made
//! it, write its maps, make the idmapped mounts with it and hand them over.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{id_map_text, IdMapping};
use crate::error::{Error, Result};

/// How long the parent waits for the child to make its user namespace (it only joins
/// groups and namespaces before).
const MAKE_TIMEOUT: Duration = Duration::from_secs(30);

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` of mount_setattr(2) (`MOUNT_ATTR_SIZE_VER0`).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A tree to clone with the user namespace's idmapping.
#[derive(Debug)]
pub(crate) struct IdmappedTree {
    /// The root directory or a bind mount's source.
    pub path: PathBuf,
    /// With the mounts below it.
    pub recursive: bool,
}

/// What the parent does for a jail's user namespace.
#[derive(Debug)]
pub(crate) struct UserNsSetup {
    /// The parent's end of the socket pair.
    pub sock: UnixStream,
    pub uid_map: String,
    pub gid_map: String,
    /// The idmapped mounts, in the order the child uses them (the root first).
    pub trees: Vec<IdmappedTree>,
    /// The propagation of the cloned trees (`MS_PRIVATE` or `MS_SLAVE`): none stays a
    /// peer of the host's mounts.
    pub propagation: u64,
}

impl UserNsSetup {
    pub fn new(
        sock: UnixStream,
        uid_map: &[IdMapping],
        gid_map: &[IdMapping],
        trees: Vec<IdmappedTree>,
        propagation: u64,
    ) -> Self {
        UserNsSetup {
            sock,
            uid_map: id_map_text(uid_map),
            gid_map: id_map_text(gid_map),
            trees,
            propagation,
        }
    }

    /// Waits for child `pid` to make its user namespace, writes the maps, makes the
    /// idmapped mounts and answers. Ok also when the child ended before (its failure is
    /// on its report pipe); Err when the parent's part failed (the caller kills the child).
    pub fn run(mut self, pid: libc::pid_t) -> Result<()> {
        let ctx = |what: &str| format!("{what} of the jail's user namespace (process {pid})");
        self.sock
            .set_read_timeout(Some(MAKE_TIMEOUT))
            .map_err(|e| Error::io(ctx("wait for the creation"), e))?;
        let mut byte = [0u8; 1];
        let n = loop {
            match self.sock.read(&mut byte) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        }
        .map_err(|e| Error::io(ctx("wait for the creation"), e))?;
        if n == 0 {
            return Ok(());
        }
        for (name, text) in [("uid_map", &self.uid_map), ("gid_map", &self.gid_map)] {
            write_map(pid, name, text)
                .map_err(|e| Error::io(ctx(&format!("write the {name}")), e))?;
        }
        let trees = self.idmapped_trees(pid)?;
        send_answer(&self.sock, &trees).map_err(|e| Error::io(ctx("answer the creation"), e))
    }

    /// Clones each tree and sets its idmapping to the user namespace of `pid`.
    fn idmapped_trees(&self, pid: libc::pid_t) -> Result<Vec<OwnedFd>> {
        if self.trees.is_empty() {
            return Ok(Vec::new());
        }
        let userns = std::fs::File::open(format!("/proc/{pid}/ns/user"))
            .map_err(|e| Error::io(format!("open the user namespace of process {pid}"), e))?;
        self.trees
            .iter()
            .map(|t| idmapped_tree(t, userns.as_raw_fd(), self.propagation))
            .collect()
    }
}

/// Writes a `uid_map`/`gid_map` in one write(2), as the kernel wants it.
fn write_map(pid: libc::pid_t, name: &str, text: &str) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/{name}"))?;
    let n = f.write(text.as_bytes())?;
    if n != text.len() {
        return Err(io::Error::other(format!(
            "a short write ({n} of {} bytes)",
            text.len()
        )));
    }
    Ok(())
}

/// A detached clone of `t.path` (`open_tree(OPEN_TREE_CLONE)`), private or slave, idmapped
/// with the user namespace `userns`.
fn idmapped_tree(t: &IdmappedTree, userns: RawFd, propagation: u64) -> Result<OwnedFd> {
    let path = CString::new(t.path.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidConfig(format!("{} contains a NUL byte", t.path.display())))?;
    let rec = if t.recursive {
        libc::AT_RECURSIVE as libc::c_uint
    } else {
        0
    };
    // SAFETY: open_tree with a NUL-terminated path and integer flags.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | rec,
        )
    };
    if fd < 0 {
        return Err(Error::io(
            format!("clone the mount of {}", t.path.display()),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let flags = libc::AT_EMPTY_PATH as libc::c_uint | rec;
    let set = |attr: MountAttr| -> io::Result<()> {
        // SAFETY: mount_setattr on the detached tree with an empty path and a mount_attr
        // of the size passed, valid for the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                c"".as_ptr(),
                flags,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    set(MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation,
        userns_fd: 0,
    })
    .map_err(|e| {
        Error::io(
            format!("set the propagation of the clone of {}", t.path.display()),
            e,
        )
    })?;
    set(MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns as u64,
    })
    .map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) => Error::IdmappedMountUnsupported {
            path: t.path.clone(),
        },
        _ => Error::io(format!("make an idmapped mount of {}", t.path.display()), e),
    })?;
    Ok(tree)
}

/// Sends the zero byte that lets the child go on, with `fds` (`SCM_RIGHTS`).
fn send_answer(sock: &UnixStream, fds: &[OwnedFd]) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let data_len = std::mem::size_of_val(raw.as_slice());
    // SAFETY: CMSG_SPACE is arithmetic.
    let space = unsafe { libc::CMSG_SPACE(data_len as libc::c_uint) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain data for which all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: the control buffer has room for one header with `data_len` bytes of
        // data (CMSG_SPACE), which CMSG_FIRSTHDR/CMSG_DATA address.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(data_len as libc::c_uint) as usize;
            std::ptr::copy_nonoverlapping(raw.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), data_len);
        }
    }
    loop {
        // SAFETY: sendmsg of the buffers `msg` points to, which outlive the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n == 1 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if n < 0 && e.kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return Err(if n < 0 {
            e
        } else {
            io::Error::other("a short send")
        });
    }
}
