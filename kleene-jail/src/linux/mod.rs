//! The Linux backend: namespaces (mount, pid, uts, ipc, and net when disabled), bind mounts,
//! pivot_root, /proc, a minimal /dev, capabilities and ids.

mod child;
mod procs;
mod spawner;
pub(crate) mod sys;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::sync::OnceLock;

pub(crate) use procs::{find_under, release_under, wait_exited, Found};
pub(crate) use sys::Waiter;

use crate::config::{
    build_env, cstr, exec_candidates, ExecConfig, JailConfig, Lifetime, NetworkMode,
};
use crate::error::{Error, Result};
use crate::jail::{CommandEnd, JailHandle, JailId};
use crate::mountpoint::make_mount_point;
use crate::params::linux_params;
use crate::passwd::{open_root, resolve_in_root, ResolvedUser};
use crate::process::{cloexec_pipe, prepare_stdio, set_nonblocking, ExitStatus, Process};
use crate::report::{failure_error, RECORD};
use child::{BindPlan, ExecArrays, InitJail, ProcPlan, StartPlan};

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

/// Builds the part of the plan shared by start and exec.
fn proc_plan(
    cfg: &ExecConfig,
    user: &ResolvedUser,
    clean: bool,
    stdio: [RawFd; 3],
    tty: bool,
    err_fd: RawFd,
) -> Result<ProcPlan> {
    let env = build_env(clean, &cfg.env, user, std::env::vars_os())?;
    let candidates = exec_candidates(&cfg.argv[0], &env)?;
    let argv = cfg
        .argv
        .iter()
        .map(|a| cstr(a.as_bytes(), "an argument"))
        .collect::<Result<Vec<_>>>()?;
    let workdir = cfg.workdir.as_ref().map_or(Ok(CString::from(c"/")), |w| {
        cstr(w.as_os_str().as_bytes(), "the working directory")
    })?;
    Ok(ProcPlan {
        workdir,
        drop_caps: crate::caps::capabilities_to_drop(last_cap()),
        uid: user.uid,
        gid: user.gid,
        groups: user.groups.clone(),
        stdio,
        tty,
        candidates,
        argv,
        env,
        err_fd,
        owner: None,
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

/// Reads the child's failure record from the close-on-exec pipe: None at EOF (exec done).
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

pub(crate) async fn start(cfg: &JailConfig) -> Result<(JailHandle, Process, BackendState)> {
    cfg.validate()?;
    let lp = linux_params(&cfg.params)?;
    let hostname = lp
        .hostname
        .clone()
        .or_else(|| cfg.hostname.clone())
        .or_else(|| cfg.name.clone())
        .unwrap_or_else(|| "kleene".to_owned());
    let devfs = lp.devfs.unwrap_or(cfg.devfs);
    let clean = lp.clean.or(cfg.process.clean_env).unwrap_or(true);
    let user_spec = lp.user.clone().or_else(|| cfg.process.user.clone());
    let share_ipc = lp.sysvipc.unwrap_or(false);

    let (user, binds) = prepare_root(cfg, devfs, user_spec.as_deref())?;
    let netns = network_namespace(&cfg.network)?;
    let (child_stdio, parent_stdio) = prepare_stdio(&cfg.process)?;
    let (err_r, err_w) = cloexec_pipe().map_err(|e| Error::io("make a pipe", e))?;
    let init_jail = (cfg.lifetime == Lifetime::Processes).then_some(InitJail {
        persist: lp.persist.unwrap_or(false),
    });
    let status_pipe = if cfg.init || init_jail.is_some() {
        Some(cloexec_pipe().map_err(|e| Error::io("make a pipe", e))?)
    } else {
        None
    };
    let plan = StartPlan {
        root: cstr(cfg.root.as_os_str().as_bytes(), "the root")?,
        binds,
        devfs,
        hostname: cstr(hostname.as_bytes(), "the host name")?,
        loopback: cfg.network == NetworkMode::Disabled,
        netns: netns.as_ref().map(|n| n.as_fd().as_raw_fd()),
        init_status_fd: status_pipe.as_ref().map(|(_, w)| w.as_raw_fd()),
        init_jail,
        owner: None,
        proc: proc_plan(
            &cfg.process,
            &user,
            clean,
            child_stdio.raw(),
            child_stdio.tty,
            err_w.as_raw_fd(),
        )?,
    };
    let flags = start_flags(share_ipc, &cfg.network);
    // Kept open until the clone is done (the child joins it by descriptor).
    let child_netns = netns;
    let with_owner = cfg.process.dies_with_owner();
    let (status_r, status_w) = status_pipe.unzip();
    // The job owns the child's descriptors, so they stay open until the clone is done.
    let child_fds = (err_w, child_stdio, status_w, child_netns);
    let (pid, pidfd) = clone_jail(plan, flags, with_owner, child_fds).await?;
    if let Some(r) = &status_r {
        set_nonblocking(r.as_raw_fd()).map_err(|e| Error::io("set up the status pipe", e))?;
    }
    let waiter = KillUnlessKept(Some(Waiter::new(pid, pidfd, status_r)?));
    let waiter = confirm_start(waiter, err_r, cfg).await?;
    let process = Process::new(pid, waiter, parent_stdio)?;
    let handle = JailHandle {
        name: cfg.name.clone(),
        id: JailId(pid),
        pid,
        root: cfg.root.clone(),
    };
    Ok((handle, process, BackendState))
}

/// Resolves the jail's user in its root and makes the mount points there (`/proc`,
/// `/dev` with `devfs`, the bind mounts' targets): the user and the bind mounts' plans.
fn prepare_root(
    cfg: &JailConfig,
    devfs: bool,
    user_spec: Option<&str>,
) -> Result<(ResolvedUser, Vec<BindPlan>)> {
    let root_fd = open_root(&cfg.root)?;
    let user = resolve_in_root(&root_fd, user_spec.unwrap_or("0"))?;
    make_mount_point(&root_fd, Path::new("proc"), false)?;
    if devfs {
        make_mount_point(&root_fd, Path::new("dev"), false)?;
    }
    let mut binds = Vec::with_capacity(cfg.mounts.len());
    for m in &cfg.mounts {
        let rel = relative(&m.target);
        // The child opens the target with openat2(RESOLVE_IN_ROOT), which finds it there.
        make_mount_point(&root_fd, &rel, !m.source.is_dir())?;
        binds.push(BindPlan {
            source: cstr(m.source.as_os_str().as_bytes(), "a mount source")?,
            target_rel: cstr(rel.as_os_str().as_bytes(), "a mount target")?,
            target_abs: cstr(m.target.as_os_str().as_bytes(), "a mount target")?,
            read_only: m.read_only,
            kept_flags: if m.read_only {
                kept_mount_flags(&m.source)?
            } else {
                0
            },
        });
    }
    drop(root_fd);
    Ok((user, binds))
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

/// The `clone` flags of a jail's first process: its own namespaces (ipc unless shared,
/// net when the network is disabled) and a pidfd.
fn start_flags(share_ipc: bool, network: &NetworkMode) -> libc::c_int {
    let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_PIDFD;
    if !share_ipc {
        flags |= libc::CLONE_NEWIPC;
    }
    if *network == NetworkMode::Disabled {
        flags |= libc::CLONE_NEWNET;
    }
    flags
}

/// Clones the jail's first process with `flags` on the owner's spawner thread, the child
/// running [`child::start_child`] on `plan`: its pid and pidfd. `child_fds` stay open
/// until the clone is done.
async fn clone_jail<K: Send + 'static>(
    mut plan: StartPlan,
    flags: libc::c_int,
    with_owner: bool,
    child_fds: K,
) -> Result<(libc::pid_t, OwnedFd)> {
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
            r
        },
        |r| {
            if let Ok((_, pidfd)) = r {
                kill_and_reap(&pidfd);
            }
        },
    )
    .await?
    .map_err(|e| Error::io("clone the jail's first process", e))
}

/// Waits for the jail's command to exec: its waiter, or the child's reported failure
/// once its first process (an init outlives the command) is killed and reaped.
async fn confirm_start(
    mut waiter: KillUnlessKept,
    err_r: OwnedFd,
    cfg: &JailConfig,
) -> Result<Waiter> {
    if let Some(rec) = read_failure(err_r).await? {
        // An init (above all one that persists) outlives the command that failed.
        let _ = waiter.get()?.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = waiter.get()?.wait().await;
        return Err(failure_error(
            &rec,
            &cfg.process.argv[0],
            cfg.process.workdir.as_deref(),
            &cfg.mounts,
        ));
    }
    waiter.keep()
}

/// The namespaces of `pid` that differ from ours (joining one's own is pointless).
fn differing_namespaces(pid: i32) -> Result<libc::c_int> {
    use std::os::unix::fs::MetadataExt;
    let mut flags = 0;
    for (name, flag) in [
        ("mnt", libc::CLONE_NEWNS),
        ("pid", libc::CLONE_NEWPID),
        ("uts", libc::CLONE_NEWUTS),
        ("ipc", libc::CLONE_NEWIPC),
        ("net", libc::CLONE_NEWNET),
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
    let clean = cfg.clean_env.unwrap_or(true);
    let (child_stdio, parent_stdio) = prepare_stdio(cfg)?;
    let (err_r, err_w) = cloexec_pipe().map_err(|e| Error::io("make a pipe", e))?;
    let (pid_r, pid_w) = cloexec_pipe().map_err(|e| Error::io("make a pipe", e))?;
    let plan = proc_plan(
        cfg,
        &user,
        clean,
        child_stdio.raw(),
        child_stdio.tty,
        err_w.as_raw_fd(),
    )?;
    let job = ExecJob {
        pidfd,
        ns_flags,
        plan,
        with_owner: cfg.dies_with_owner(),
        pid_r,
        child_fds: (err_w, pid_w, child_stdio),
    };
    let Some(pid) = fork_in_jail(job).await? else {
        return match read_failure(err_r).await? {
            Some(rec) => Err(failure_error(
                &rec,
                &cfg.argv[0],
                cfg.workdir.as_deref(),
                &[],
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
            &[],
        ));
    }
    Process::new(pid, waiter.keep()?, parent_stdio)
}

/// The jail `handle` to start a process in: a pidfd of its init, and the namespaces of
/// it that differ from ours. A process that is no jail's init is refused.
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
    if ns_flags & libc::CLONE_NEWPID == 0 {
        return Err(Error::InvalidConfig(format!(
            "process {} is not the init of a jail",
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
    /// The child's ends (failure pipe, pid pipe, stdio), open until the clone is done.
    child_fds: (OwnedFd, OwnedFd, crate::process::ChildStdio),
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
