//! Network namespaces held by a file descriptor.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use nix::sched::{setns, unshare, CloneFlags};
use rtnetlink::sys::protocols::NETLINK_ROUTE;
use rtnetlink::sys::{AsyncSocket, TokioSocket};

use super::error::{Error, Result};
use super::netlink::{current_ns_label, Netlink};

/// A network namespace held by an [`OwnedFd`] (of `/proc/…/ns/net`). The namespace lives as
/// long as this descriptor or a process in it; nothing is bind-mounted, so nothing outlives
/// both. Dropping the last `Sandbox` of a namespace with no process in it frees it, and the
/// veth ends inside it (with their host-side peers).
#[derive(Debug)]
pub struct Sandbox {
    fd: OwnedFd,
    label: String,
}

fn open_ns(path: &str) -> Result<Sandbox> {
    let file = File::open(path).map_err(|source| Error::Io {
        op: "open",
        path: path.to_string(),
        source,
    })?;
    let ino = file
        .metadata()
        .map_err(|source| Error::Io {
            op: "stat",
            path: path.to_string(),
            source,
        })?
        .ino();
    Ok(Sandbox {
        fd: OwnedFd::from(file),
        label: format!("net:[{ino}]"),
    })
}

/// Joins a helper thread, resuming its panic (so that a failed assertion in a closure given
/// to [`Sandbox::run_in`] fails the caller as it would have inline).
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    match handle.join() {
        Ok(v) => v,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

impl Sandbox {
    /// A new, empty network namespace (only a down `lo`). It is made in a short-lived
    /// thread that calls `unshare(CLONE_NEWNET)` and opens `/proc/thread-self/ns/net`; the
    /// calling thread never changes namespace.
    pub fn new() -> Result<Sandbox> {
        std::thread::scope(|s| {
            let worker = std::thread::Builder::new()
                .name("kleene-netns-new".to_string())
                .spawn_scoped(s, || {
                    unshare(CloneFlags::CLONE_NEWNET).map_err(|source| Error::Namespace {
                        op: "unshare",
                        ns: "new".to_string(),
                        source,
                    })?;
                    open_ns("/proc/thread-self/ns/net")
                })
                .map_err(|e| Error::Thread {
                    ns: "new".to_string(),
                    reason: e.to_string(),
                })?;
            join(worker)
        })
    }

    /// The network namespace of process `pid` (opens `/proc/PID/ns/net`).
    pub fn of_process(pid: u32) -> Result<Sandbox> {
        open_ns(&format!("/proc/{pid}/ns/net"))
    }

    /// The calling thread's network namespace (opens `/proc/thread-self/ns/net`).
    pub fn current() -> Result<Sandbox> {
        open_ns("/proc/thread-self/ns/net")
    }

    /// The namespace descriptor (e.g. for `setns` in a container's child process).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `net:[inode]`, as `readlink /proc/PID/ns/net` shows it; used in error messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Runs `f` in a fresh thread that `setns(2)`'d into this namespace, and returns its
    /// result. Sockets made there stay in this namespace; processes spawned there start in
    /// it. A panic in `f` is resumed in the caller.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        std::thread::scope(|s| {
            let worker = std::thread::Builder::new()
                .name("kleene-netns".to_string())
                .spawn_scoped(s, || {
                    setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| {
                        Error::Namespace {
                            op: "setns into",
                            ns: self.label.clone(),
                            source,
                        }
                    })?;
                    Ok(f())
                })
                .map_err(|e| Error::Thread {
                    ns: self.label.clone(),
                    reason: e.to_string(),
                })?;
            join(worker)
        })
    }

    /// A route-netlink connection inside this namespace: its socket is created in a thread
    /// that entered the namespace, then driven by a task on the current tokio runtime (an
    /// error outside one).
    pub fn netlink(&self) -> Result<Netlink> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| Error::NoRuntime {
            ns: self.label.clone(),
            reason: e.to_string(),
        })?;
        let rt = runtime.clone();
        let socket = self
            .run_in(move || {
                // registering the socket with the runtime's reactor needs its context
                let _guard = rt.enter();
                TokioSocket::new(NETLINK_ROUTE)
            })?
            .map_err(|source| Error::Io {
                op: "open a route netlink socket in",
                path: self.label.clone(),
                source,
            })?;
        let (conn, handle, _) = rtnetlink::from_socket(socket);
        let task = runtime.spawn(conn).abort_handle();
        Ok(Netlink::from_parts(handle, self.label.clone(), task))
    }
}

fn write_sysctl(path: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|source| Error::Io {
            op: "open",
            path: path.to_string(),
            source,
        })?;
    file.write_all(b"1\n").map_err(|source| Error::Io {
        op: "write 1 to",
        path: path.to_string(),
        source,
    })
}

fn enable_forwarding_here() -> Result<()> {
    write_sysctl("/proc/sys/net/ipv4/ip_forward")?;
    write_sysctl("/proc/sys/net/ipv6/conf/all/forwarding")
}

/// Turns on IPv4 and IPv6 forwarding (`net.ipv4.ip_forward`,
/// `net.ipv6.conf.all.forwarding`) in `sandbox`'s namespace, or in the calling thread's
/// when `None`. These sysctls are per namespace; they are written as plain files.
pub fn enable_forwarding(sandbox: Option<&Sandbox>) -> Result<()> {
    match sandbox {
        Some(sb) => sb.run_in(enable_forwarding_here)?,
        None => enable_forwarding_here(),
    }
    .map_err(|e| match e {
        Error::Io { op, path, source } => Error::Io {
            op,
            path: format!(
                "{path} (in {})",
                sandbox.map_or_else(current_ns_label, |s| s.label.clone())
            ),
            source,
        },
        other => other,
    })
}
