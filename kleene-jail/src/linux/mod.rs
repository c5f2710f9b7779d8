//! The Linux backend: namespaces (mount, pid, uts, ipc, and net when disabled), bind mounts,
//! pivot_root, /proc, a minimal /dev, capabilities and ids.

mod child;
mod procs;
mod spawner;
pub(crate) mod sys;
mod userns;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

pub(crate) use procs::{find_under, release_under, wait_exited, Found};
pub(crate) use sys::Waiter;

use crate::config::{
    build_env, cstr, exec_candidates, sysctl_path, ExecConfig, JailConfig, Lifetime, Mount,
    MountFlags, Namespace, NamespaceMode, NetworkMode, Propagation,
};
use crate::error::{Error, Result};
use crate::jail::{CommandEnd, JailHandle, JailId};
use crate::mountpoint::make_mount_point;
use crate::params::linux_params;
use crate::passwd::{open_root, resolve_in_root, ResolvedUser};
use crate::process::{cloexec_pipe, prepare_stdio, set_nonblocking, ExitStatus, Process};
use crate::report::{decode, failure_error, Stage, RECORD};
use child::{
    CapsPlan, ExecArrays, InitJail, JoinPlan, MountPlan, ProcPlan, RlimitPlan, StartPlan,
    UserNsPlan, MAX_IDMAPPED,
};
use userns::{IdmappedTree, UserNsSetup};

/// The name of the platform in messages.
pub(crate) const PLATFORM: &str = "Linux";

/// What a started jail needs torn down: nothing on Linux, its mounts live and die with its
/// mount namespace.
#[derive(Debug, Default)]
pub(crate) struct BackendState;

fn last_cap() -> u32 {
    static LAST: OnceLock<u32> = OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40)
    })
}

/// The flags of the mount holding `path` that a read-only bind remount of it must repeat.
fn kept_mount_flags(path: &Path) -> Result<libc::c_ulong> {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let st =
        statvfs(path).map_err(|e| Error::io(format!("statvfs {}", path.display()), e.into()))?;
    let f = st.flags();
    let mut out: libc::c_ulong = 0;
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, libc::MS_NOSUID),
        (FsFlags::ST_NODEV, libc::MS_NODEV),
        (FsFlags::ST_NOEXEC, libc::MS_NOEXEC),
        (FsFlags::ST_NOATIME, libc::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, libc::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    Ok(out)
}

fn relative(target: &Path) -> std::path::PathBuf {
    target
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// The mount(2) flags of `f`.
fn ms_flags(f: MountFlags) -> libc::c_ulong {
    [
        (f.read_only, libc::MS_RDONLY),
        (f.nosuid, libc::MS_NOSUID),
        (f.nodev, libc::MS_NODEV),
        (f.noexec, libc::MS_NOEXEC),
        (f.noatime, libc::MS_NOATIME),
        (f.nodiratime, libc::MS_NODIRATIME),
        (f.relatime, libc::MS_RELATIME),
        (f.strictatime, libc::MS_STRICTATIME),
        (f.sync, libc::MS_SYNCHRONOUS),
        (f.dirsync, libc::MS_DIRSYNC),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .fold(0, |acc, (_, flag)| acc | flag)
}

/// The mount(2) flags of a propagation.
fn propagation_flags(p: Propagation) -> libc::c_ulong {
    match p {
        Propagation::Private => libc::MS_PRIVATE,
        Propagation::RPrivate => libc::MS_PRIVATE | libc::MS_REC,
        Propagation::Slave => libc::MS_SLAVE,
        Propagation::RSlave => libc::MS_SLAVE | libc::MS_REC,
        Propagation::Shared => libc::MS_SHARED,
        Propagation::RShared => libc::MS_SHARED | libc::MS_REC,
        Propagation::Unbindable => libc::MS_UNBINDABLE,
        Propagation::RUnbindable => libc::MS_UNBINDABLE | libc::MS_REC,
    }
}

/// The remount flags of a bind mount with `flags` of source `source`, 0 when the bind
/// needs no remount: the flags asked for plus the restrictions of the source's mount (an
/// atime mode asked for replaces the source's).
fn bind_remount_flags(flags: MountFlags, source: &Path) -> Result<libc::c_ulong> {
    let asked = ms_flags(flags);
    if asked == 0 {
        return Ok(0);
    }
    let mut kept = kept_mount_flags(source)?;
    let atime = libc::MS_NOATIME | libc::MS_RELATIME | libc::MS_STRICTATIME;
    if asked & atime != 0 {
        kept &= !atime;
    }
    Ok(libc::MS_BIND | libc::MS_REMOUNT | asked | kept)
}

/// Builds the part of the plan shared by start and exec.
fn proc_plan(
    cfg: &ExecConfig,
    user_spec: Option<&str>,
    user: &ResolvedUser,
    clean: bool,
    stdio: [RawFd; 3],
    tty: bool,
    err_fd: RawFd,
) -> Result<ProcPlan> {
    let env = build_env(cfg.env_mode(clean), &cfg.env, user, std::env::vars_os())?;
    let candidates = exec_candidates(&cfg.argv[0], &env)?;
    let argv = cfg
        .argv
        .iter()
        .map(|a| cstr(a.as_bytes(), "an argument"))
        .collect::<Result<Vec<_>>>()?;
    let workdir = cfg.workdir.as_ref().map_or(Ok(CString::from(c"/")), |w| {
        cstr(w.as_os_str().as_bytes(), "the working directory")
    })?;
    let groups = cfg.groups(user_spec, &user.groups);
    let last = last_cap();
    let known = if last >= 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    };
    let caps = cfg.capabilities.map(|c| CapsPlan {
        drop: (0..=last.min(63))
            .filter(|n| c.bounding & (1u64 << n) == 0)
            .collect(),
        effective: c.effective & known,
        permitted: c.permitted & known,
        inheritable: c.inheritable & known,
        ambient: (0..=last.min(63))
            .filter(|n| c.ambient & (1u64 << n) != 0)
            .collect(),
    });
    let rlimits = cfg
        .rlimits
        .iter()
        .map(|(r, soft, hard)| {
            let resource = r.resource().ok_or_else(|| Error::UnsupportedSetting {
                setting: r.name().to_owned(),
                platform: PLATFORM,
            })?;
            Ok(RlimitPlan {
                resource,
                soft: *soft,
                hard: *hard,
                index: r.index(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // Decided by what the process will have: its own sets, or the default ones.
    let effective = cfg
        .capabilities
        .map_or_else(crate::caps::default_mask, |c| c.effective);
    let seccomp = cfg
        .seccomp
        .as_ref()
        .map(|p| p.clone().with_capabilities(effective).compile())
        .transpose()
        .map_err(|e| Error::InvalidConfig(format!("seccomp profile: {e}")))?;
    Ok(ProcPlan {
        seccomp,
        jail_pty: None,
        workdir,
        drop_caps: crate::caps::capabilities_to_drop(last),
        uid: user.uid,
        gid: user.gid,
        groups,
        stdio,
        tty,
        candidates,
        argv,
        env,
        err_fd,
        owner: None,
        caps,
        rlimits,
        no_new_privs: cfg.no_new_privileges.unwrap_or(user.uid != 0),
        oom_score_adj: cfg
            .oom_score_adj
            .map(|adj| cstr(adj.to_string().as_bytes(), "oom_score_adj"))
            .transpose()?,
        umask: cfg.umask.unwrap_or(0o022) as libc::mode_t,
        hold: None,
        cgroup_procs: Vec::new(),
    })
}

/// A fork-like `clone` with extra flags; returns the child's pid (0 in the child) and, in
/// the parent, a pidfd when `CLONE_PIDFD` is among the flags.
///
/// # Safety
/// In the child only async-signal-safe code may run before execve or _exit.
unsafe fn raw_clone(flags: libc::c_int) -> io::Result<(libc::pid_t, RawFd)> {
    let mut pidfd: RawFd = -1;
    // SAFETY: no new stack (the child continues on a copy of this one, like fork); the
    // parent_tid slot receives the pidfd for CLONE_PIDFD, the other pointers are unused.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            &mut pidfd as *mut RawFd,
            0usize,
            0usize,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((r as libc::pid_t, pidfd))
}

fn own(fd: RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Reads the child's failure record from the close-on-exec pipe: None at EOF (exec done),
/// or the record (of a failure, or that the process is held).
async fn read_failure(fd: OwnedFd) -> Result<Option<[u8; RECORD]>> {
    set_nonblocking(fd.as_raw_fd()).map_err(|e| Error::io("read the child's report", e))?;
    let afd = crate::process::register(fd, tokio::io::Interest::READABLE)
        .map_err(|e| Error::io("read the child's report", e))?;
    let mut rec = [0u8; RECORD];
    let mut got = 0;
    loop {
        let mut guard = afd
            .readable()
            .await
            .map_err(|e| Error::io("read the child's report", e))?;
        let res = guard.try_io(|inner| {
            let buf = &mut rec[got..];
            // SAFETY: reads into the unfilled rest of `rec`.
            let n = unsafe {
                libc::read(
                    inner.get_ref().as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match res {
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(n)) => {
                got += n;
                if got == RECORD {
                    return Ok(Some(rec));
                }
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => return Err(Error::io("read the child's report", e)),
            Err(_would_block) => {}
        }
    }
}

/// Whether a record says the process is held (not a failure).
fn is_held(rec: &[u8; RECORD]) -> bool {
    decode(rec).0 == Stage::Held as u32
}

/// The namespaces of a jail, its parameters applied.
struct JailNamespaces {
    pid: NamespaceMode,
    ipc: NamespaceMode,
    uts: NamespaceMode,
    cgroup: NamespaceMode,
}

impl JailNamespaces {
    fn of(cfg: &JailConfig, sysvipc: Option<bool>) -> Self {
        let ns = |n| cfg.namespaces.mode(n);
        JailNamespaces {
            pid: ns(Namespace::Pid),
            ipc: match sysvipc {
                Some(true) => NamespaceMode::Host,
                Some(false) => NamespaceMode::New,
                None => ns(Namespace::Ipc),
            },
            uts: ns(Namespace::Uts),
            cgroup: ns(Namespace::Cgroup),
        }
    }

    fn each(&self) -> [(Namespace, &NamespaceMode, libc::c_int); 4] {
        [
            (Namespace::Pid, &self.pid, libc::CLONE_NEWPID),
            (Namespace::Ipc, &self.ipc, libc::CLONE_NEWIPC),
            (Namespace::Uts, &self.uts, libc::CLONE_NEWUTS),
            (Namespace::Cgroup, &self.cgroup, libc::CLONE_NEWCGROUP),
        ]
    }

    /// Opens the namespace files to join: each descriptor, its type and index.
    fn open_joins(&self) -> Result<Vec<(OwnedFd, libc::c_int, u32)>> {
        let mut out = Vec::new();
        for (ns, mode, flag) in self.each() {
            if let NamespaceMode::Join(path) = mode {
                let f = std::fs::File::open(path).map_err(|e| {
                    Error::io(
                        format!("open the {} namespace {}", ns.name(), path.display()),
                        e,
                    )
                })?;
                out.push((OwnedFd::from(f), flag, ns.index()));
            }
        }
        Ok(out)
    }
}

pub(crate) async fn start(cfg: &JailConfig) -> Result<(JailHandle, Process, BackendState)> {
    cfg.validate()?;
    let lp = linux_params(&cfg.params)?;
    let ns = JailNamespaces::of(cfg, lp.sysvipc);
    if ns.pid != NamespaceMode::New && cfg.lifetime == Lifetime::Processes {
        return Err(Error::InvalidConfig(
            "Lifetime::Processes needs a new pid namespace (its init counts the processes of its own)"
                .into(),
        ));
    }
    let hostname = jail_hostname(cfg, &lp, &ns)?;
    let devfs = lp.devfs.unwrap_or(cfg.devfs);
    let clean = lp.clean.or(cfg.process.clean_env).unwrap_or(true);
    let user_spec = lp.user.clone().or_else(|| cfg.process.user.clone());

    let (user, mounts) = prepare_root(cfg, devfs, user_spec.as_deref())?;
    let netns = network_namespace(&cfg.network)?;
    let joins = ns.open_joins()?;
    let gate = cfg.hold.as_deref().map(open_gate).transpose()?;
    let cgroup_procs = match cfg.resource_group.as_ref().and_then(|g| g.cgroup()) {
        Some(g) => open_procs_files(&g.procs_files())?,
        None => Vec::new(),
    };
    let jail_pty = JailPty::prepare(&cfg.process, !cfg.standard_mounts)?;
    let (child_stdio, mut parent_stdio) = prepare_stdio(jail_pty.stdio_config(&cfg.process))?;
    let console = match (&parent_stdio.pty, cfg.standard_mounts) {
        (Some(master), false) => Some(pty_slave_name(master)?),
        _ => None,
    };
    let (err_r, err_w) = cloexec_pipe().map_err(|e| Error::io("make a pipe", e))?;
    let userns = cfg.user_namespace.as_ref();
    // A new pid namespace made by unshare (after the user namespace) takes effect for
    // children only, as a joined one does.
    let pid_pipe = optional_pipe(
        matches!(ns.pid, NamespaceMode::Join(_))
            || (userns.is_some() && ns.pid == NamespaceMode::New),
    )?;
    let init_jail = (cfg.lifetime == Lifetime::Processes).then_some(InitJail {
        persist: lp.persist.unwrap_or(false),
    });
    let status_pipe = optional_pipe(cfg.init || init_jail.is_some())?;
    let mut proc = proc_plan(
        &cfg.process,
        user_spec.as_deref(),
        &user,
        clean,
        child_stdio.raw(),
        child_stdio.tty,
        err_w.as_raw_fd(),
    )?;
    proc.hold = gate.as_ref().map(|g| g.as_raw_fd());
    proc.jail_pty = jail_pty.plan();
    proc.cgroup_procs = cgroup_procs.iter().map(|f| f.as_raw_fd()).collect();
    if let Some(u) = userns {
        u.check_user(user.uid, user.gid, &proc.groups)?;
    }
    // A new cgroup namespace is made after the group is joined, so the group is its root
    // (with a user namespace every new namespace is made after it).
    let unshare_cgroupns =
        userns.is_none() && !cgroup_procs.is_empty() && ns.cgroup == NamespaceMode::New;
    let (root_initial, root_after) = root_propagation(cfg.root_propagation);
    let (user_plan, userns_setup, sync_child) = match userns {
        Some(u) => {
            let (setup, child_end) = userns_setup(cfg, u, root_initial)?;
            let mut flags = start_flags(&ns, &cfg.network) & !libc::CLONE_PIDFD;
            if ns.cgroup == NamespaceMode::New {
                flags |= libc::CLONE_NEWCGROUP;
            }
            let plan = UserNsPlan {
                sync_fd: child_end.as_raw_fd(),
                unshare: flags,
                uid: if u.uid_map.iter().any(|m| m.maps(0)) {
                    0
                } else {
                    user.uid
                },
                gid: if u.gid_map.iter().any(|m| m.maps(0)) {
                    0
                } else {
                    user.gid
                },
                idmapped: setup.trees.len(),
                idmapped_root: cfg.idmapped_root,
            };
            (Some(plan), Some(setup), Some(child_end))
        }
        None => (None, None, None),
    };
    let paths = PathPlans::of(cfg)?;
    let plan = StartPlan {
        root: cstr(cfg.root.as_os_str().as_bytes(), "the root")?,
        mounts,
        standard_mounts: cfg.standard_mounts,
        devfs,
        hostname: hostname
            .map(|h| cstr(h.as_bytes(), "the host name"))
            .transpose()?,
        loopback: cfg.network == NetworkMode::Disabled,
        netns: netns.as_ref().map(|n| n.as_fd().as_raw_fd()),
        joins: join_plans(&joins),
        pid_report: pid_pipe.as_ref().map(|(_, w)| w.as_raw_fd()),
        root_initial,
        root_after,
        readonly_root: readonly_root_flags(cfg)?,
        sysctls: paths.sysctls,
        devices: device_plans(cfg)?,
        readonly_paths: paths.readonly,
        masked_paths: paths.masked,
        console,
        subreaper: ns.pid != NamespaceMode::New,
        init_status_fd: status_pipe.as_ref().map(|(_, w)| w.as_raw_fd()),
        init_jail,
        owner: None,
        unshare_cgroupns,
        userns: user_plan,
        proc,
    };
    let mut flags = start_flags(&ns, &cfg.network);
    if unshare_cgroupns {
        flags &= !libc::CLONE_NEWCGROUP;
    }
    if userns.is_some() {
        // The namespaces are made by the child, after its user namespace.
        flags = libc::CLONE_PIDFD;
    }
    let with_owner = cfg.process.dies_with_owner();
    let (status_r, status_w) = status_pipe.unzip();
    let (pid_r, pid_w) = pid_pipe.unzip();
    // The job owns the child's descriptors, so they stay open until the clone is done
    // (the namespaces are joined, the gate reopened by descriptor).
    let child_fds = (
        err_w,
        child_stdio,
        status_w,
        netns,
        joins,
        gate,
        pid_w,
        cgroup_procs,
        sync_child,
    );
    let started = clone_jail(plan, flags, with_owner, pid_r, userns_setup, child_fds).await?;
    let (pid, waiter) = wait_started(cfg, started, err_r, status_r).await?;
    parent_stdio.pty = jail_pty.master()?.or(parent_stdio.pty);
    let process = Process::new(pid, waiter, parent_stdio)?;
    let handle = JailHandle {
        name: cfg.name.clone(),
        id: JailId(pid),
        pid,
        root: cfg.root.clone(),
    };
    Ok((handle, process, BackendState))
}

/// The device nodes to make, as the child makes them.
fn device_plans(cfg: &JailConfig) -> Result<Vec<child::DevicePlan>> {
    if !cfg.devices.is_empty() && cfg.user_namespace.is_some() {
        return Err(Error::UnsupportedSetting {
            setting: "device nodes in a user namespace (no mknod there)".into(),
            platform: PLATFORM,
        });
    }
    cfg.devices
        .iter()
        .map(|d| {
            let rel = relative(&d.path);
            let dir = rel.parent().unwrap_or(Path::new(""));
            let name = rel.file_name().unwrap_or_default();
            let kind = match d.kind {
                'b' => libc::S_IFBLK,
                'p' => libc::S_IFIFO,
                _ => libc::S_IFCHR,
            };
            Ok(child::DevicePlan {
                dir_rel: cstr(dir.as_os_str().as_bytes(), "a device's directory")?,
                name: cstr(name.as_bytes(), "a device's name")?,
                mode: kind | (d.mode & 0o7777),
                dev: libc::makedev(d.major, d.minor),
                uid: d.uid,
                gid: d.gid,
            })
        })
        .collect()
}

/// Opens the `cgroup.procs` files a child writes `0` to in order to join its groups.
fn open_procs_files(files: &[std::path::PathBuf]) -> Result<Vec<OwnedFd>> {
    files
        .iter()
        .map(|f| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(f)
                .map(OwnedFd::from)
                .map_err(|e| Error::io(format!("open {}", f.display()), e))
        })
        .collect()
}

/// A terminal made in the jail (`ExecConfig::jail_terminal`): the socket its master comes
/// back on, and the child's plan.
struct JailPty {
    parts: Option<(OwnedFd, OwnedFd, child::JailPtyPlan)>,
    stdio: Option<ExecConfig>,
}

impl JailPty {
    fn prepare(cfg: &ExecConfig, console: bool) -> Result<JailPty> {
        let (Some(size), true) = (cfg.tty, cfg.jail_terminal) else {
            return Ok(JailPty {
                parts: None,
                stdio: None,
            });
        };
        let (mine, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| Error::io("make a socket pair for the terminal", e))?;
        let (mine, theirs) = (OwnedFd::from(mine), OwnedFd::from(theirs));
        let plan = child::JailPtyPlan {
            sock: theirs.as_raw_fd(),
            size: libc::winsize {
                ws_row: size.rows,
                ws_col: size.cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
            console,
        };
        // The process's streams are the terminal it makes: none are prepared here.
        let mut stdio = cfg.clone();
        stdio.tty = None;
        stdio.stdin = crate::Stdio::Null;
        stdio.stdout = crate::Stdio::Null;
        stdio.stderr = crate::Stdio::Null;
        Ok(JailPty {
            parts: Some((mine, theirs, plan)),
            stdio: Some(stdio),
        })
    }

    /// The configuration whose streams are prepared on the host.
    fn stdio_config<'a>(&'a self, cfg: &'a ExecConfig) -> &'a ExecConfig {
        self.stdio.as_ref().unwrap_or(cfg)
    }

    /// The child's plan.
    fn plan(&self) -> Option<child::JailPtyPlan> {
        self.parts.as_ref().map(|(_, _, p)| *p)
    }

    /// The master the child sent, once it is set up (`None` without a jail terminal).
    fn master(self) -> Result<Option<OwnedFd>> {
        let Some((mine, theirs, _)) = self.parts else {
            return Ok(None);
        };
        // The child has its copy: a child that ended without sending ends the read.
        drop(theirs);
        receive_fd(&mine)
            .map(Some)
            .map_err(|e| Error::io("receive the jail's terminal", e))
    }
}

/// Receives one descriptor (SCM_RIGHTS) on `sock`, blocking.
fn receive_fd(sock: &OwnedFd) -> io::Result<OwnedFd> {
    #[repr(C, align(8))]
    struct Cmsg([u8; 64]);
    let mut control = Cmsg([0u8; 64]);
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: msghdr is a plain C struct for which all-zero is valid; recvmsg writes at
    // most the given lengths into `byte` and `control`; CMSG_* walk `control` only.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = control.0.len() as _;
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if n == 0 || cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return Err(io::Error::other("the child sent no terminal"));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
        Ok(std::os::fd::FromRawFd::from_raw_fd(fd))
    }
}

/// A close-on-exec pipe when `on`.
fn optional_pipe(on: bool) -> Result<Option<(OwnedFd, OwnedFd)>> {
    on.then(|| cloexec_pipe().map_err(|e| Error::io("make a pipe", e)))
        .transpose()
}

/// The namespaces the child joins, by descriptor.
fn join_plans(joins: &[(OwnedFd, libc::c_int, u32)]) -> Vec<JoinPlan> {
    joins
        .iter()
        .map(|(fd, nstype, index)| JoinPlan {
            fd: fd.as_raw_fd(),
            nstype: *nstype,
            index: *index,
        })
        .collect()
}

/// The remount flags of a read-only root (keeping the flags of the mount it is on).
fn readonly_root_flags(cfg: &JailConfig) -> Result<Option<libc::c_ulong>> {
    if !cfg.readonly_root {
        return Ok(None);
    }
    Ok(Some(
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | kept_mount_flags(&cfg.root)?,
    ))
}

/// The jail's host name: the one given (a `-J host.hostname` first), else its name, else
/// "kleene", in a uts namespace of its own; none, and an error if one was given, in the
/// host's or a joined one.
fn jail_hostname(
    cfg: &JailConfig,
    lp: &crate::params::LinuxParams,
    ns: &JailNamespaces,
) -> Result<Option<String>> {
    let given = lp.hostname.clone().or_else(|| cfg.hostname.clone());
    match (&ns.uts, given) {
        (NamespaceMode::New, given) => Ok(Some(
            given
                .or_else(|| cfg.name.clone())
                .unwrap_or_else(|| "kleene".to_owned()),
        )),
        (_, Some(h)) => Err(Error::InvalidConfig(format!(
            "host name {h}: the jail has no uts namespace of its own"
        ))),
        (_, None) => Ok(None),
    }
}

/// The mount flags the root gets before the mounts (private, or slave of the host's
/// mounts for slave and shared propagation: the host's mounts never change) and after
/// them (shared or unbindable inside the jail).
fn root_propagation(p: Option<Propagation>) -> (libc::c_ulong, libc::c_ulong) {
    let initial = libc::MS_REC
        | match p {
            Some(
                Propagation::Slave
                | Propagation::RSlave
                | Propagation::Shared
                | Propagation::RShared,
            ) => libc::MS_SLAVE,
            _ => libc::MS_PRIVATE,
        };
    let after = match p {
        Some(
            p @ (Propagation::Shared
            | Propagation::RShared
            | Propagation::Unbindable
            | Propagation::RUnbindable),
        ) => propagation_flags(p),
        _ => 0,
    };
    (initial, after)
}

/// The sysctl files and values, read-only paths and masked paths of a jail, as the
/// child's C strings.
struct PathPlans {
    sysctls: Vec<(CString, CString)>,
    readonly: Vec<CString>,
    masked: Vec<CString>,
}

impl PathPlans {
    fn of(cfg: &JailConfig) -> Result<PathPlans> {
        let paths = |list: &[PathBuf], what: &str| -> Result<Vec<CString>> {
            list.iter()
                .map(|p| cstr(p.as_os_str().as_bytes(), what))
                .collect()
        };
        Ok(PathPlans {
            sysctls: cfg
                .sysctls
                .iter()
                .map(|(k, v)| {
                    Ok((
                        cstr(
                            format!("/proc/sys/{}", sysctl_path(k)?).as_bytes(),
                            "a sysctl",
                        )?,
                        cstr(v.as_bytes(), "a sysctl value")?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?,
            readonly: paths(&cfg.readonly_paths, "a read-only path")?,
            masked: paths(&cfg.masked_paths, "a masked path")?,
        })
    }
}

/// After the clone: the first process and its waiter once it has exec'd (or is held), or
/// the error the child reported.
async fn wait_started(
    cfg: &JailConfig,
    started: Option<(i32, OwnedFd)>,
    err_r: OwnedFd,
    status_r: Option<OwnedFd>,
) -> Result<(i32, Waiter)> {
    let Some((pid, pidfd)) = started else {
        return Err(match read_failure(err_r).await? {
            Some(rec) => failure_error(
                &rec,
                &cfg.process.argv[0],
                cfg.process.workdir.as_deref(),
                Some(cfg),
            ),
            None => Error::Setup {
                step: "forking into the pid namespace".into(),
                source: io::Error::other("the first child ended without a report"),
            },
        });
    };
    if let Some(r) = &status_r {
        set_nonblocking(r.as_raw_fd()).map_err(|e| Error::io("set up the status pipe", e))?;
    }
    let waiter = KillUnlessKept(Some(Waiter::new(pid, pidfd, status_r)?));
    Ok((pid, confirm_start(waiter, err_r, cfg).await?))
}

/// Opens the gate FIFO of [`JailConfig::hold`] (`O_PATH`: opening it for writing would
/// block until a reader comes).
fn open_gate(path: &Path) -> Result<OwnedFd> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io(format!("open the gate {}", path.display()), e))?;
    let is_fifo = f
        .metadata()
        .map_err(|e| Error::io(format!("stat the gate {}", path.display()), e))?
        .file_type()
        .is_fifo();
    if !is_fifo {
        return Err(Error::InvalidConfig(format!(
            "the gate {} is not a FIFO",
            path.display()
        )));
    }
    crate::process::above_stdio(f.into()).map_err(|e| Error::io("open the gate", e))
}

/// The host path of the slave side of the pty whose master is `master`.
fn pty_slave_name(master: &OwnedFd) -> Result<CString> {
    let mut buf = [0 as libc::c_char; 128];
    // SAFETY: ptsname_r writes a NUL-terminated name of at most `buf.len()` bytes into
    // `buf`; the descriptor is a pty master the caller owns.
    let r = unsafe { libc::ptsname_r(master.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
    if r != 0 {
        return Err(Error::io(
            "find the terminal's name",
            io::Error::from_raw_os_error(r),
        ));
    }
    // SAFETY: ptsname_r succeeded, so `buf` holds a NUL-terminated string.
    Ok(unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_owned())
}

/// Resolves the jail's user in its root and makes the mount points there (`/proc` and,
/// with `devfs`, `/dev` for the standard mounts; the configured mounts' targets, but those
/// inside an earlier mount, which the child makes): the user and the mounts' plans.
fn prepare_root(
    cfg: &JailConfig,
    devfs: bool,
    user_spec: Option<&str>,
) -> Result<(ResolvedUser, Vec<MountPlan>)> {
    let root_fd = open_root(&cfg.root)?;
    let user = resolve_in_root(&root_fd, user_spec.unwrap_or("0"))?;
    if cfg.standard_mounts {
        make_mount_point(&root_fd, Path::new("proc"), false)?;
        if devfs {
            make_mount_point(&root_fd, Path::new("dev"), false)?;
        }
    }
    let mounts = cgroup_mounts(cfg)?;
    let mut plans = Vec::with_capacity(mounts.len());
    // The idmapped trees the parent sends: the root's first.
    let mut next_slot = usize::from(cfg.idmapped_root);
    for (i, m) in mounts.iter().enumerate() {
        let rel = relative(&m.target);
        let file = m.fstype.is_none() && !m.source.is_dir();
        let below_earlier = mounts[..i]
            .iter()
            .any(|e| rel.starts_with(relative(&e.target)));
        // The standard mode makes every target here, as it always did; the other leaves
        // those inside an earlier mount to the child, which sees that mount.
        if cfg.standard_mounts || !below_earlier {
            // The child opens the target with openat2(RESOLVE_IN_ROOT), which finds it there.
            make_mount_point(&root_fd, &rel, file).map_err(|e| name_mount(e, m))?;
        }
        let slot = m.idmapped.then(|| {
            next_slot += 1;
            next_slot - 1
        });
        plans.push(mount_plan(cfg, m, &rel, file, slot)?);
    }
    drop(root_fd);
    Ok((user, plans))
}

/// The jail's mounts, a `cgroup` file system made what the host can give: on cgroup v1
/// (whose hierarchies are mounted one by one and cannot be mounted whole again) runc's
/// emulation — a tmpfs with each hierarchy's group of the jail bound in, read-only when
/// the mount is; on v2 the `cgroup2` file system.
fn cgroup_mounts(cfg: &JailConfig) -> Result<Vec<Mount>> {
    let mut out = Vec::with_capacity(cfg.mounts.len());
    for m in &cfg.mounts {
        if m.fstype.as_deref() != Some("cgroup") {
            out.push(m.clone());
            continue;
        }
        match crate::cgroup::Hierarchy::detect()? {
            Some(crate::cgroup::Hierarchy::V2(_)) | None => {
                let mut m = m.clone();
                m.fstype = Some("cgroup2".into());
                out.push(m);
            }
            Some(crate::cgroup::Hierarchy::V1(_)) => {
                let group = cfg.resource_group.as_ref().and_then(|g| g.cgroup());
                let mut tmpfs = Mount::filesystem("tmpfs", "cgroup", &m.target)
                    .flags(MountFlags {
                        nosuid: true,
                        nodev: true,
                        noexec: true,
                        ..MountFlags::default()
                    })
                    .data("mode=755");
                tmpfs.propagation = m.propagation;
                out.push(tmpfs);
                for (name, dir) in crate::cgroup::v1_views(group)? {
                    let mut bind = Mount::bind(dir, m.target.join(name)).flags(MountFlags {
                        nosuid: true,
                        nodev: true,
                        noexec: true,
                        read_only: m.mount_flags().read_only,
                        ..MountFlags::default()
                    });
                    bind.read_only = m.mount_flags().read_only;
                    out.push(bind);
                }
            }
        }
    }
    Ok(out)
}

/// Names mount `m` in an error about its mount point.
fn name_mount(e: Error, m: &Mount) -> Error {
    match e {
        Error::Io { context, source } => Error::Io {
            context: format!(
                "mount of {} at {}: {context}",
                m.source.display(),
                m.target.display()
            ),
            source,
        },
        other => other,
    }
}

/// The child's plan of mount `m`, at `rel` below the root.
fn mount_plan(
    cfg: &JailConfig,
    m: &Mount,
    rel: &Path,
    file: bool,
    idmap_slot: Option<usize>,
) -> Result<MountPlan> {
    // sysfs needs a network namespace owned by the jail's user namespace; without one of
    // its own, the host's /sys read-only, as runc does.
    let sys_bind = cfg.user_namespace.is_some()
        && m.fstype.as_deref() == Some("sysfs")
        && cfg.network != NetworkMode::Disabled;
    let host_sys = Mount::bind("/sys", &m.target).flags(MountFlags {
        read_only: true,
        ..m.mount_flags()
    });
    let m = if sys_bind { &host_sys } else { m };
    let flags = m.mount_flags();
    let (mount_flags, remount) = match &m.fstype {
        None => (
            libc::MS_BIND | if m.recursive { libc::MS_REC } else { 0 },
            bind_remount_flags(flags, &m.source)?,
        ),
        Some(_) => (ms_flags(flags), 0),
    };
    Ok(MountPlan {
        idmap_slot,
        source: cstr(m.source.as_os_str().as_bytes(), "a mount source")?,
        fstype: m
            .fstype
            .as_ref()
            .map(|t| cstr(t.as_bytes(), "a file system type"))
            .transpose()?,
        target_rel: cstr(rel.as_os_str().as_bytes(), "a mount target")?,
        create: !cfg.standard_mounts,
        target_file: file,
        flags: mount_flags,
        data: (!m.data.is_empty())
            .then(|| cstr(m.data.as_bytes(), "mount options"))
            .transpose()?,
        remount,
        propagation: m.propagation.map_or(0, propagation_flags),
        populate_dev: !cfg.standard_mounts
            && m.fstype.as_deref() == Some("tmpfs")
            && rel == Path::new("dev"),
    })
}

/// The network namespace the jail joins, if any; FreeBSD's network parameters are refused.
fn network_namespace(network: &NetworkMode) -> Result<Option<crate::config::NetNs>> {
    match network {
        NetworkMode::Namespace(n) => Ok(Some(n.clone())),
        NetworkMode::JailParams(_) => Err(Error::InvalidConfig(
            "network jail parameters are FreeBSD's: on Linux a container joins a network namespace"
                .into(),
        )),
        _ => Ok(None),
    }
}

/// The `clone` flags of a jail's first process: a mount namespace, the new namespaces
/// (net when the network is disabled) and a pidfd.
fn start_flags(ns: &JailNamespaces, network: &NetworkMode) -> libc::c_int {
    let mut flags = libc::CLONE_NEWNS | libc::CLONE_PIDFD;
    for (_, mode, flag) in ns.each() {
        if *mode == NamespaceMode::New {
            flags |= flag;
        }
    }
    if *network == NetworkMode::Disabled {
        flags |= libc::CLONE_NEWNET;
    }
    flags
}

/// Clones the jail's first process with `flags` on the owner's spawner thread, the child
/// running [`child::start_child`] on `plan`: its pid and pidfd. `child_fds` stay open
/// until the clone is done. With `pid_r` (a joined pid namespace) the child forks the
/// process that goes on and exits: that process's pid (read from `pid_r`), `None` when
/// the child ended without one (its failure is on the failure pipe).
async fn clone_jail<K: Send + 'static>(
    mut plan: StartPlan,
    flags: libc::c_int,
    with_owner: bool,
    pid_r: Option<OwnedFd>,
    userns: Option<UserNsSetup>,
    child_fds: K,
) -> Result<Option<(libc::pid_t, OwnedFd)>> {
    spawner::run(
        move |link| {
            if with_owner {
                // pid 1 arms the signal first thing; without the init it is also the command,
                // which arms it again once its ids are set.
                plan.owner = Some(*link);
                if plan.init_status_fd.is_none() {
                    plan.proc.owner = Some(*link);
                }
            }
            let arrays = ExecArrays::new(&plan.proc);
            // SAFETY: the child runs only start_child, which makes raw system calls on the
            // prepared plan and ends in execve or _exit.
            let r = match unsafe { raw_clone(flags) } {
                Ok((0, _)) => child::start_child(&plan, &arrays),
                Ok((pid, pidfd)) => Ok((pid, own(pidfd))),
                Err(e) => Err(e),
            };
            drop(child_fds);
            let (pid, pidfd) = r.map_err(|e| Error::io("clone the jail's first process", e))?;
            if let Some(setup) = userns {
                // The child waits for its maps (and idmapped mounts) before it goes on.
                if let Err(e) = setup.run(pid) {
                    kill_and_reap(&pidfd);
                    return Err(e);
                }
            }
            let Some(pid_r) = pid_r else {
                return Ok(Some((pid, pidfd)));
            };
            // The first child only joins the namespaces, forks and writes 4 bytes.
            let mut raw = [0u8; 4];
            // SAFETY: reads at most 4 bytes into `raw` from a blocking pipe whose every
            // write end closes when the first child exits or its child closes it.
            let n = unsafe { libc::read(pid_r.as_raw_fd(), raw.as_mut_ptr().cast(), raw.len()) };
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            drop(pidfd);
            if n != 4 {
                return Ok(None);
            }
            // A child of this process (CLONE_PARENT), unreaped: its pid names it.
            let pid = i32::from_ne_bytes(raw);
            let pidfd = sys::pidfd_open(pid).map_err(|e| Error::io("open the jail's pidfd", e))?;
            Ok(Some((pid, pidfd)))
        },
        |r| {
            if let Ok(Some((_, pidfd))) = r {
                kill_and_reap(&pidfd);
            }
        },
    )
    .await?
}

/// The parent's part of a jail's user namespace (the maps, the idmapped trees: the
/// root's first, then those of the mounts that ask, in their order) and the child's end
/// of the socket pair it answers on.
fn userns_setup(
    cfg: &JailConfig,
    u: &crate::config::UserNamespace,
    root_initial: libc::c_ulong,
) -> Result<(UserNsSetup, OwnedFd)> {
    let mut trees = Vec::new();
    if cfg.idmapped_root {
        trees.push(IdmappedTree {
            path: cfg.root.clone(),
            recursive: true,
        });
    }
    trees.extend(
        cfg.mounts
            .iter()
            .filter(|m| m.idmapped)
            .map(|m| IdmappedTree {
                path: m.source.clone(),
                recursive: m.recursive,
            }),
    );
    if trees.len() > MAX_IDMAPPED {
        return Err(Error::InvalidConfig(format!(
            "{} idmapped mounts (the root's included): at most {MAX_IDMAPPED}",
            trees.len()
        )));
    }
    let (parent, child) =
        std::os::unix::net::UnixStream::pair().map_err(|e| Error::io("make a socket pair", e))?;
    let propagation = if root_initial & libc::MS_SLAVE != 0 {
        libc::MS_SLAVE
    } else {
        libc::MS_PRIVATE
    };
    let child = crate::process::above_stdio(child.into())
        .map_err(|e| Error::io("make a socket pair", e))?;
    // c_ulong is u32 on 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let propagation = u64::from(propagation);
    Ok((
        UserNsSetup::new(parent, &u.uid_map, &u.gid_map, trees, propagation),
        child,
    ))
}

/// Waits for the jail's command to exec: its waiter, or the child's reported failure
/// once its first process (an init outlives the command) is killed and reaped.
async fn confirm_start(
    mut waiter: KillUnlessKept,
    err_r: OwnedFd,
    cfg: &JailConfig,
) -> Result<Waiter> {
    match read_failure(err_r).await? {
        // The command is held on its gate, everything set up.
        Some(rec) if is_held(&rec) => waiter.keep(),
        Some(rec) => {
            // An init (above all one that persists) outlives the command that failed.
            let _ = waiter.get()?.signal(nix::sys::signal::Signal::SIGKILL);
            let _ = waiter.get()?.wait().await;
            Err(failure_error(
                &rec,
                &cfg.process.argv[0],
                cfg.process.workdir.as_deref(),
                Some(cfg),
            ))
        }
        None => waiter.keep(),
    }
}

/// The namespaces of `pid` that differ from ours (joining one's own is pointless).
fn differing_namespaces(pid: i32) -> Result<libc::c_int> {
    use std::os::unix::fs::MetadataExt;
    let mut flags = 0;
    for (name, flag) in [
        ("user", libc::CLONE_NEWUSER),
        ("mnt", libc::CLONE_NEWNS),
        ("pid", libc::CLONE_NEWPID),
        ("uts", libc::CLONE_NEWUTS),
        ("ipc", libc::CLONE_NEWIPC),
        ("net", libc::CLONE_NEWNET),
        ("cgroup", libc::CLONE_NEWCGROUP),
    ] {
        let theirs =
            std::fs::metadata(format!("/proc/{pid}/ns/{name}")).map_err(|_| Error::NotRunning)?;
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}"))
            .map_err(|e| Error::io("read our namespaces", e))?;
        if (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()) {
            flags |= flag;
        }
    }
    Ok(flags)
}

pub(crate) async fn exec(
    handle: &JailHandle,
    jail_pidfd: Option<BorrowedFd<'_>>,
    cfg: &ExecConfig,
) -> Result<Process> {
    cfg.validate()?;
    let (pidfd, ns_flags) = jail_to_enter(handle, jail_pidfd)?;
    let root_fd = open_root(Path::new(&format!("/proc/{}/root", handle.pid)))
        .map_err(|_| Error::NotRunning)?;
    let user = resolve_in_root(&root_fd, cfg.user.as_deref().unwrap_or("0"))?;
    drop(root_fd);
    if ns_flags & libc::CLONE_NEWUSER != 0 {
        // The process joins the jail's user namespace: its user must be mapped there.
        let map = |name: &str| -> Result<Vec<crate::config::IdMapping>> {
            std::fs::read_to_string(format!("/proc/{}/{name}", handle.pid))
                .map(|t| crate::config::parse_id_map(&t))
                .map_err(|_| Error::NotRunning)
        };
        let u = crate::config::UserNamespace {
            uid_map: map("uid_map")?,
            gid_map: map("gid_map")?,
        };
        u.check_user(
            user.uid,
            user.gid,
            &cfg.groups(cfg.user.as_deref(), &user.groups),
        )?;
    }
    let clean = cfg.clean_env.unwrap_or(true);
    let jail_pty = JailPty::prepare(cfg, false)?;
    let (child_stdio, mut parent_stdio) = prepare_stdio(jail_pty.stdio_config(cfg))?;
    let (err_r, err_w) = cloexec_pipe().map_err(|e| Error::io("make a pipe", e))?;
    let (pid_r, pid_w) = cloexec_pipe().map_err(|e| Error::io("make a pipe", e))?;
    // The process joins the jail's groups (limits and accounting) as `runc exec` does.
    let cgroup_procs = open_procs_files(&crate::cgroup::procs_files_of(handle.pid))?;
    let mut plan = proc_plan(
        cfg,
        cfg.user.as_deref(),
        &user,
        clean,
        child_stdio.raw(),
        child_stdio.tty,
        err_w.as_raw_fd(),
    )?;
    plan.cgroup_procs = cgroup_procs.iter().map(|f| f.as_raw_fd()).collect();
    plan.jail_pty = jail_pty.plan();
    let job = ExecJob {
        pidfd,
        ns_flags,
        plan,
        with_owner: cfg.dies_with_owner(),
        pid_r,
        child_fds: (err_w, pid_w, child_stdio, cgroup_procs),
    };
    let Some(pid) = fork_in_jail(job).await? else {
        return match read_failure(err_r).await? {
            Some(rec) => Err(failure_error(
                &rec,
                &cfg.argv[0],
                cfg.workdir.as_deref(),
                None,
            )),
            None => Err(Error::Setup {
                step: "entering the jail".into(),
                source: io::Error::other("the helper process ended without a report"),
            }),
        };
    };
    let child_pidfd = sys::pidfd_open(pid).map_err(|e| Error::io("open a pidfd", e))?;
    let mut waiter = KillUnlessKept(Some(Waiter::new(pid, child_pidfd, None)?));
    if let Some(rec) = read_failure(err_r).await? {
        let _ = waiter.get()?.wait().await;
        return Err(failure_error(
            &rec,
            &cfg.argv[0],
            cfg.workdir.as_deref(),
            None,
        ));
    }
    parent_stdio.pty = jail_pty.master()?.or(parent_stdio.pty);
    Process::new(pid, waiter.keep()?, parent_stdio)
}

/// The jail `handle` to start a process in: a pidfd of its first process, and the
/// namespaces of it that differ from ours. A process that shares our mount namespace (every
/// jail has its own) is refused.
fn jail_to_enter(
    handle: &JailHandle,
    jail_pidfd: Option<BorrowedFd<'_>>,
) -> Result<(OwnedFd, libc::c_int)> {
    let pidfd = match jail_pidfd {
        Some(fd) => fd
            .try_clone_to_owned()
            .map_err(|e| Error::io("duplicate the jail's pidfd", e))?,
        None => sys::pidfd_open(handle.pid).map_err(|_| Error::NotRunning)?,
    };
    let ns_flags = differing_namespaces(handle.pid)?;
    if ns_flags & libc::CLONE_NEWNS == 0 {
        return Err(Error::InvalidConfig(format!(
            "process {} is not in a jail",
            handle.pid
        )));
    }
    Ok((pidfd, ns_flags))
}

/// What [`fork_in_jail`] hands the spawner thread: the jail to enter and the process to
/// start there.
struct ExecJob {
    /// The jail's init.
    pidfd: OwnedFd,
    /// The namespaces to enter.
    ns_flags: libc::c_int,
    plan: ProcPlan,
    /// Whether the process dies with its owner.
    with_owner: bool,
    /// Where the helper writes the process's pid.
    pid_r: OwnedFd,
    /// The child's ends (failure pipe, pid pipe, stdio, cgroup.procs files), open until
    /// the clone is done.
    child_fds: (OwnedFd, OwnedFd, crate::process::ChildStdio, Vec<OwnedFd>),
}

/// Starts `job`'s process in its jail from the owner's spawner thread, through a helper
/// that enters the namespaces and forks: the process's pid, `None` when the helper
/// ended without one (its failure is on the failure pipe, if it made it that far).
async fn fork_in_jail(job: ExecJob) -> Result<Option<libc::pid_t>> {
    let ExecJob {
        pidfd,
        ns_flags,
        mut plan,
        with_owner,
        pid_r,
        child_fds,
    } = job;
    spawner::run(
        move |link| {
            if with_owner {
                plan.owner = Some(*link);
            }
            let arrays = ExecArrays::new(&plan);
            // SAFETY: the child runs only exec_child: raw system calls on the prepared plan,
            // ending in execve or _exit.
            let helper = match unsafe { raw_clone(0) } {
                Ok((0, _)) => child::exec_child(
                    pidfd.as_raw_fd(),
                    ns_flags,
                    child_fds.1.as_raw_fd(),
                    &plan,
                    &arrays,
                ),
                Ok((pid, _)) => pid,
                Err(e) => return Err(e),
            };
            drop(child_fds);
            // The helper only enters the namespaces, forks and writes 4 bytes: this blocks
            // for microseconds.
            let mut raw = [0u8; 4];
            // SAFETY: reads at most 4 bytes into `raw` from a blocking pipe whose every write
            // end closes when the helper exits or its child execs.
            let n = unsafe { libc::read(pid_r.as_raw_fd(), raw.as_mut_ptr().cast(), raw.len()) };
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(helper), None);
            // The process (a child of this process, by CLONE_PARENT) is unreaped, so its pid
            // names it until it is waited for.
            Ok((n == 4).then(|| i32::from_ne_bytes(raw)))
        },
        |r| {
            if let Ok(Some(pid)) = r {
                if let Ok(fd) = sys::pidfd_open(pid) {
                    kill_and_reap(&fd);
                }
            }
        },
    )
    .await?
    .map_err(|e| Error::io("fork", e))
}

/// SIGKILLs and reaps a child that nobody will own (its starter is gone).
fn kill_and_reap(pidfd: &OwnedFd) {
    let _ = sys::pidfd_send_signal(pidfd.as_fd(), nix::sys::signal::Signal::SIGKILL);
    let _ = sys::waitid_pidfd(pidfd.as_fd(), true);
}

/// A started process between the clone and the `Process` that owns it: when the start is
/// abandoned there (its future dropped), the process is killed and reaped in the
/// background rather than left running unowned.
struct KillUnlessKept(Option<Waiter>);

impl KillUnlessKept {
    fn get(&mut self) -> Result<&mut Waiter> {
        self.0.as_mut().ok_or(Error::NotRunning)
    }

    fn keep(mut self) -> Result<Waiter> {
        self.0.take().ok_or(Error::NotRunning)
    }
}

impl Drop for KillUnlessKept {
    fn drop(&mut self) {
        if let Some(mut w) = self.0.take() {
            if let Ok(None) = w.try_wait() {
                let _ = w.signal(nix::sys::signal::Signal::SIGKILL);
                w.reap_in_background();
            }
        }
    }
}

pub(crate) async fn teardown(_state: &mut BackendState, _handle: &JailHandle) -> Result<()> {
    Ok(())
}

pub(crate) fn signal_handle(handle: &JailHandle, signal: nix::sys::signal::Signal) -> Result<()> {
    let fd = sys::pidfd_open(handle.pid).map_err(|_| Error::NotRunning)?;
    sys::pidfd_send_signal(fd.as_fd(), signal).map_err(|_| Error::NotRunning)
}

pub(crate) fn signal_all(handle: &JailHandle, signal: nix::sys::signal::Signal) -> Result<()> {
    // A jail-mode init passes it to every process of its namespace.
    signal_handle(handle, signal)
}

pub(crate) fn update_params(_handle: &JailHandle, params: &[crate::JailParam]) -> Result<()> {
    crate::params::linux_live_update(params)
}

pub(crate) fn kill_all(handle: &JailHandle) -> Result<()> {
    // The kernel kills a pid namespace with its init.
    signal_handle(handle, nix::sys::signal::Signal::SIGKILL)
}

pub(crate) async fn wait_command(
    process: &mut Process,
    _handle: &JailHandle,
    _lifetime: Lifetime,
) -> Result<CommandEnd> {
    process.waiter.wait_command().await
}

/// The jail ends with its pid 1 (the command, or the init that outlives it).
pub(crate) async fn wait_jail(
    process: &mut Process,
    _handle: &JailHandle,
    _lifetime: Lifetime,
    _command: Option<ExitStatus>,
) -> Result<ExitStatus> {
    process.wait().await
}

pub(crate) fn is_running(handle: &JailHandle) -> bool {
    match sys::pidfd_open(handle.pid) {
        Ok(fd) => !sys::pidfd_exited(fd.as_fd()),
        Err(_) => false,
    }
}
