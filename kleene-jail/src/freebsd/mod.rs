//! The FreeBSD backend: `jail_set(2)` with every kernel parameter passed through,
//! `jail_attach(2)` in a forked child, devfs (with a ruleset) and nullfs mounts by
//! `nmount(2)`, `jail_remove(2)` and unmounts at teardown.
//!
//! The parameter list itself is built by the platform-neutral [`crate::params`] code; this
//! module only turns it into iovecs and makes the system calls. The one exception is the
//! network's `exec.created` commands ([`created`]), run between the jail's creation and
//! its command.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::config::{
    build_env, cstr, exec_candidates, ExecConfig, JailConfig, Lifetime, NetworkMode,
};
use crate::error::{Error, Result};
use crate::freebsd_plan::{find_jid, jail_params, persist_update, split_params, Iovecs};
use crate::jail::{CommandEnd, JailHandle, JailId};
use crate::mountpoint::make_mount_point;
use crate::params::{kernel_params, KernelParam};
use crate::passwd::{open_root, resolve_in_root, ResolvedUser};
use crate::process::{cloexec_pipe, prepare_stdio, ExitStatus, Process};
use crate::report::{decode, encode, failure_error, Stage, RECORD};

mod created;
pub(crate) mod rctl;
pub(crate) use rctl::{group_usage as rctl_usage, remove as rctl_remove, update as rctl_update};

pub(crate) const PLATFORM: &str = "FreeBSD";

/// The devfs ruleset of jails (`devfsrules_jail` in /etc/defaults/devfs.rules).
const DEFAULT_DEVFS_RULESET: i32 = 4;

/// What a jail needs torn down: the jail itself and the mounts made for it, in the order
/// they were made.
#[derive(Debug, Default)]
pub(crate) struct BackendState {
    jid: Option<i32>,
    mounts: Vec<CString>,
}

fn errmsg_text(buf: &[u8]) -> String {
    CStr::from_bytes_until_nul(buf)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn str_param(name: &str, value: &[u8]) -> KernelParam {
    let mut v = value.to_vec();
    v.push(0);
    KernelParam {
        name: CString::new(name).expect("static option names have no NUL"),
        value: v,
    }
}

/// jail_set(2) with JAIL_UPDATE of an existing jail.
fn jail_update(kernel: &[KernelParam]) -> Result<()> {
    let mut errmsg = [0u8; 256];
    let mut iov = Iovecs::new(kernel, Some(&mut errmsg));
    // SAFETY: the iovecs point into `kernel` and `errmsg`, which outlive the call.
    let r = unsafe {
        libc::jail_set(
            iov.iov.as_mut_ptr(),
            iov.iov.len() as libc::c_uint,
            libc::JAIL_UPDATE,
        )
    };
    drop(iov);
    if r < 0 {
        let e = io::Error::last_os_error();
        let msg = errmsg_text(&errmsg);
        return Err(Error::Setup {
            step: format!("jail_set update ({msg})"),
            source: e,
        });
    }
    Ok(())
}

/// Whether jail `jid` exists and is not dying.
fn jail_exists(jid: i32) -> bool {
    let kernel = find_jid(jid);
    let mut iov = Iovecs::new(&kernel, None);
    // SAFETY: the iovecs point into `kernel`, which outlives the call.
    let r = unsafe { libc::jail_get(iov.iov.as_mut_ptr(), iov.iov.len() as libc::c_uint, 0) };
    r >= 0
}

/// jail_set(2) with JAIL_CREATE. Synchronous, so that the iovecs (raw pointers, not Send)
/// never live across an await of the async start.
fn jail_create(kernel: &[KernelParam]) -> Result<i32> {
    let mut errmsg = [0u8; 256];
    let mut iov = Iovecs::new(kernel, Some(&mut errmsg));
    // SAFETY: the iovecs point into `kernel` and `errmsg`, which outlive the call.
    let jid = unsafe {
        libc::jail_set(
            iov.iov.as_mut_ptr(),
            iov.iov.len() as libc::c_uint,
            libc::JAIL_CREATE,
        )
    };
    drop(iov);
    if jid < 0 {
        let e = io::Error::last_os_error();
        let msg = errmsg_text(&errmsg);
        return Err(Error::Setup {
            step: if msg.is_empty() {
                "jail_set".into()
            } else {
                format!("jail_set ({msg})")
            },
            source: e,
        });
    }
    Ok(jid)
}

fn nmount(options: &[KernelParam], flags: i32) -> io::Result<()> {
    let mut errmsg = [0u8; 256];
    let mut iov = Iovecs::new(options, Some(&mut errmsg));
    // SAFETY: the iovecs point into `options` and `errmsg`, which outlive the call.
    let r = unsafe { libc::nmount(iov.iov.as_mut_ptr(), iov.iov.len() as libc::c_uint, flags) };
    if r < 0 {
        let e = io::Error::last_os_error();
        let msg = errmsg_text(&errmsg);
        return Err(if msg.is_empty() {
            e
        } else {
            io::Error::new(e.kind(), format!("{msg}: {e}"))
        });
    }
    Ok(())
}

/// `root/rel` for a mount point, made as the jail will see it: symlinks on the way are
/// followed inside the root (one leading out is refused), so the path has none left.
fn mount_point(root: &Path, target: &Path, file: bool) -> Result<PathBuf> {
    let real = make_mount_point(&open_root(root)?, target, file)?;
    Ok(root.join(real))
}

fn unmount_all(mounts: &mut Vec<CString>) -> Result<()> {
    let mut first_err = None;
    while let Some(m) = mounts.pop() {
        // SAFETY: unmount with a NUL-terminated path.
        if unsafe { libc::unmount(m.as_ptr(), 0) } < 0 {
            // SAFETY: as above, forced: the jail's processes are gone.
            if unsafe { libc::unmount(m.as_ptr(), libc::MNT_FORCE) } < 0 && first_err.is_none() {
                first_err = Some(Error::io(
                    format!("unmount {}", m.to_string_lossy()),
                    io::Error::last_os_error(),
                ));
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// What the forked child needs, prepared before the fork.
struct ChildPlan {
    jid: i32,
    workdir: CString,
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    stdio: [RawFd; 3],
    tty: bool,
    candidates: Vec<CString>,
    argv: Vec<CString>,
    env: Vec<CString>,
    err_fd: RawFd,
    /// The owner's pid, when the process is to die with it.
    owner: Option<libc::pid_t>,
    /// Resource limits: resource, soft, hard.
    rlimits: Vec<(libc::c_int, libc::rlim_t, libc::rlim_t)>,
    /// `PROC_NO_NEW_PRIVS_CTL` before the exec.
    no_new_privs: bool,
    umask: libc::mode_t,
    /// The gate of [`JailConfig::hold`], open read-write: the command waits for a byte
    /// on it.
    hold: Option<RawFd>,
}

fn fail(err_fd: RawFd, stage: Stage, errno: i32) -> ! {
    let rec = encode(stage, errno, 0);
    // SAFETY: writes RECORD bytes from the stack, then exits without atexit handlers.
    unsafe {
        libc::write(err_fd, rec.as_ptr().cast(), RECORD);
        libc::_exit(127)
    }
}

fn errno() -> i32 {
    nix::errno::Errno::last_raw()
}

/// `procctl(PROC_PDEATHSIG_CTL)`: SIGKILL when the parent *process* (the owner) exits;
/// then, if the owner died before that (the parent changed), exit.
fn die_with_owner(err: RawFd, owner: libc::pid_t) {
    let mut sig: libc::c_int = libc::SIGKILL;
    // SAFETY: procctl reads one int from the pointer, valid for the call; getpid/getppid
    // and _exit take no pointers.
    unsafe {
        let me = libc::getpid();
        if libc::procctl(
            libc::P_PID,
            me as libc::id_t,
            libc::PROC_PDEATHSIG_CTL,
            (&mut sig as *mut libc::c_int).cast(),
        ) < 0
        {
            fail(err, Stage::OwnerDeath, errno());
        }
        if libc::getppid() != owner {
            libc::_exit(128 + libc::SIGKILL);
        }
    }
}

/// The forked child: attach to the jail, become the user, exec. Async-signal-safe calls only.
fn child(p: &ChildPlan, argv: &[*const libc::c_char], env: &[*const libc::c_char]) -> ! {
    let err = p.err_fd;
    if let Some(owner) = p.owner {
        die_with_owner(err, owner);
    }
    // SAFETY: (the whole block) system calls on data prepared before the fork; every pointer is
    // to a NUL-terminated string or a null-terminated array that outlives the calls.
    unsafe {
        if libc::jail_attach(p.jid) < 0 {
            fail(err, Stage::Setns, errno());
        }
        if libc::chdir(p.workdir.as_ptr()) < 0 {
            fail(err, Stage::Workdir, errno());
        }
        for (resource, soft, hard) in &p.rlimits {
            let lim = libc::rlimit {
                rlim_cur: *soft,
                rlim_max: *hard,
            };
            if libc::setrlimit(*resource, &lim) < 0 {
                fail(err, Stage::Rlimit, errno());
            }
        }
        if libc::setgroups(p.groups.len() as libc::c_int, p.groups.as_ptr()) < 0 {
            fail(err, Stage::Groups, errno());
        }
        if libc::setgid(p.gid) < 0 {
            fail(err, Stage::Gid, errno());
        }
        if libc::setuid(p.uid) < 0 {
            fail(err, Stage::Uid, errno());
        }
        // Again after the change of ids, in case it cleared the setting.
        if let Some(owner) = p.owner {
            die_with_owner(err, owner);
        }
        if p.no_new_privs {
            let mut on: libc::c_int = libc::PROC_NO_NEW_PRIVS_ENABLE;
            if libc::procctl(
                libc::P_PID,
                libc::getpid() as libc::id_t,
                libc::PROC_NO_NEW_PRIVS_CTL,
                (&mut on as *mut libc::c_int).cast(),
            ) < 0
            {
                fail(err, Stage::NoNewPrivs, errno());
            }
        }
        libc::umask(p.umask);
        for (target, fd) in p.stdio.iter().enumerate() {
            if *fd >= 0 && libc::dup2(*fd, target as RawFd) < 0 {
                fail(err, Stage::Stdio, errno());
            }
        }
        if p.tty && (libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0) {
            fail(err, Stage::Terminal, errno());
        }
        // _SIG_MAXSIG: 128 signals; signal(2) refuses the ones that do not exist.
        for sig in 1..=128 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        if let Some(gate) = p.hold {
            hold_then_exec(p, argv, env, gate);
        }
        let mut last = libc::ENOENT;
        for cand in &p.candidates {
            libc::execve(cand.as_ptr(), argv.as_ptr(), env.as_ptr());
            let e = errno();
            if e != libc::ENOENT && e != libc::ENOTDIR {
                last = e;
                if e != libc::EACCES {
                    break;
                }
            }
        }
        fail(err, Stage::Exec, last)
    }
}

/// Closes every descriptor from 3 up but those of `keep`.
fn close_all_but<const N: usize>(mut keep: [RawFd; N]) {
    keep.sort_unstable();
    let mut from: RawFd = 3;
    // SAFETY: close_range with integer arguments, on descriptors this process owns.
    unsafe {
        for k in keep {
            if k >= from {
                if k > from {
                    libc::close_range(from as libc::c_uint, (k - 1) as libc::c_uint, 0);
                }
                from = k + 1;
            }
        }
        libc::close_range(from as libc::c_uint, libc::c_uint::MAX, 0);
    }
}

/// Holds the process on its gate ([`JailConfig::hold`]), its set-up done: finds the
/// command (so its absence is still reported), keeps no descriptor but its streams and
/// the gate, tells the parent it is held, blocks until [`crate::release`] writes a byte
/// to the gate, and executes the command. Failures after the report only end the process
/// (exit 127). Async-signal-safe calls only.
fn hold_then_exec(
    p: &ChildPlan,
    argv: &[*const libc::c_char],
    env: &[*const libc::c_char],
    gate: RawFd,
) -> ! {
    let err = p.err_fd;
    let mut cmd = None;
    let mut last = libc::ENOENT;
    for cand in &p.candidates {
        // SAFETY: eaccess with a NUL-terminated path prepared before the fork.
        if unsafe { libc::eaccess(cand.as_ptr(), libc::X_OK) } == 0 {
            cmd = Some(cand);
            break;
        }
        let e = errno();
        if e != libc::ENOENT && e != libc::ENOTDIR {
            last = e;
            if e != libc::EACCES {
                break;
            }
        }
    }
    let Some(cmd) = cmd else {
        fail(err, Stage::Exec, last)
    };
    // While held, the process keeps nothing of its starter's but its standard streams:
    // close-on-exec descriptors would otherwise stay open until the execve (a lock the
    // starter holds, a pipe whose reader waits for EOF).
    close_all_but([err, gate]);
    let rec = encode(Stage::Held, 0, 0);
    // SAFETY: writes RECORD bytes from the stack, then closes the report pipe: nothing is
    // reported after this.
    unsafe {
        libc::write(err, rec.as_ptr().cast(), RECORD);
        libc::close(err);
    }
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: reads at most one byte into `byte`, on the stack. The gate is open
        // read-write by this process, so the read blocks until a byte comes (never EOF).
        let n = unsafe { libc::read(gate, byte.as_mut_ptr().cast(), 1) };
        if n == 1 {
            break;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        // SAFETY: exits without atexit handlers.
        unsafe { libc::_exit(127) }
    }
    // SAFETY: closes the gate, then executes with NUL-terminated strings and
    // null-terminated arrays prepared before the fork; exits without atexit handlers when
    // the execve fails.
    unsafe {
        libc::close(gate);
        libc::execve(cmd.as_ptr(), argv.as_ptr(), env.as_ptr());
        libc::_exit(127)
    }
}

/// Opens the gate FIFO of [`JailConfig::hold`] read-write (which does not block on
/// FreeBSD), above the standard descriptors, close-on-exec: the held process inherits it
/// through the fork and reads its byte there.
fn open_gate(path: &Path) -> Result<OwnedFd> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
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

async fn read_failure(fd: OwnedFd) -> Result<Option<[u8; RECORD]>> {
    // A blocking read on a helper thread: it ends at the child's exec or failure report.
    tokio::task::spawn_blocking(move || {
        let mut rec = [0u8; RECORD];
        let mut got = 0;
        while got < RECORD {
            let buf = &mut rec[got..];
            // SAFETY: reads into the unfilled rest of `rec`.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n == 0 {
                return Ok(None);
            }
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io("read the child's report", e));
            }
            got += n as usize;
        }
        Ok(Some(rec))
    })
    .await
    .map_err(|e| Error::io("read the child's report", io::Error::other(e)))?
}

async fn spawn_in_jail(
    jid: i32,
    cfg: &ExecConfig,
    user_spec: Option<&str>,
    user: &ResolvedUser,
    clean: bool,
    hold: Option<&Path>,
) -> Result<Process> {
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
    let rlimits = cfg
        .rlimits
        .iter()
        .map(|(r, soft, hard)| {
            // u64::MAX (and anything beyond rlim_t) is RLIM_INFINITY.
            let lim = |v: u64| {
                libc::rlim_t::try_from(v)
                    .unwrap_or(libc::RLIM_INFINITY)
                    .min(libc::RLIM_INFINITY)
            };
            r.resource()
                .map(|res| (res, lim(*soft), lim(*hard)))
                .ok_or_else(|| Error::UnsupportedSetting {
                    setting: r.name().to_owned(),
                    platform: PLATFORM,
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let groups = cfg.groups(user_spec, &user.groups);
    let gate = hold.map(open_gate).transpose()?;
    let (child_stdio, parent_stdio) = prepare_stdio(cfg)?;
    let (err_r, err_w) = cloexec_pipe().map_err(|e| Error::io("make a pipe", e))?;
    let plan = ChildPlan {
        jid,
        workdir,
        uid: user.uid,
        gid: user.gid,
        groups,
        rlimits,
        // Explicitly on only: FreeBSD jails never had it by default.
        no_new_privs: cfg.no_new_privileges == Some(true),
        umask: cfg.umask.unwrap_or(0o022) as libc::mode_t,
        stdio: child_stdio.raw(),
        tty: child_stdio.tty,
        candidates,
        argv,
        env,
        err_fd: err_w.as_raw_fd(),
        owner: cfg
            .dies_with_owner()
            .then(|| std::process::id() as libc::pid_t),
        hold: gate.as_ref().map(|g| g.as_raw_fd()),
    };
    let pid = {
        let mut argv_ptrs: Vec<*const libc::c_char> =
            plan.argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut env_ptrs: Vec<*const libc::c_char> = plan.env.iter().map(|a| a.as_ptr()).collect();
        env_ptrs.push(std::ptr::null());
        // SAFETY: the child runs only `child`, which makes async-signal-safe calls on data
        // prepared here and ends in execve or _exit.
        match unsafe { libc::fork() } {
            -1 => return Err(Error::io("fork", io::Error::last_os_error())),
            0 => child(&plan, &argv_ptrs, &env_ptrs),
            pid => pid,
        }
    };
    drop(plan);
    drop(err_w);
    drop(child_stdio);
    // Only the held process keeps the gate open: with it gone, a release finds no reader.
    drop(gate);
    let mut waiter = Waiter::new(pid);
    if let Some(rec) = read_failure(err_r).await?.filter(|rec| !is_held(rec)) {
        let _ = waiter.wait().await;
        return Err(failure_error(
            &rec,
            &cfg.argv[0],
            cfg.workdir.as_deref(),
            None,
        ));
    }
    Process::new(pid, waiter, parent_stdio)
}

/// Whether a record says the process is held (not a failure).
fn is_held(rec: &[u8; RECORD]) -> bool {
    decode(rec).0 == Stage::Held as u32
}

/// Refuses a setting FreeBSD does not have, by name.
fn refuse_linux_settings(setting: Option<&'static str>) -> Result<()> {
    match setting {
        Some(setting) => Err(Error::UnsupportedSetting {
            setting: setting.to_owned(),
            platform: PLATFORM,
        }),
        None => Ok(()),
    }
}

pub(crate) async fn start(cfg: &JailConfig) -> Result<(JailHandle, Process, BackendState)> {
    cfg.validate()?;
    refuse_linux_settings(cfg.linux_only_setting())?;
    if matches!(cfg.network, NetworkMode::Namespace(_)) {
        return Err(Error::InvalidConfig(
            "network namespaces are Linux's: on FreeBSD a container's network is jail parameters"
                .into(),
        ));
    }
    let (pseudo, user_params) = split_params(&cfg.params)?;
    // The network's exec.created commands run once the jail exists (see `created`).
    let (created, params) = created::split(jail_params(cfg, user_params))?;
    let devfs = pseudo.devfs.unwrap_or(cfg.devfs);
    let clean = pseudo.clean.or(cfg.process.clean_env).unwrap_or(true);
    let root_fd = open_root(&cfg.root)?;
    let user_spec = pseudo.user.as_deref().or(cfg.process.user.as_deref());
    let user = resolve_in_root(&root_fd, user_spec.unwrap_or("0"))?;
    drop(root_fd);
    let kernel = kernel_params(&params)?;

    let mut state = BackendState::default();
    let result = async {
        if devfs {
            state.mounts.push(mount_devfs(&cfg.root, &params)?);
        }
        for m in &cfg.mounts {
            state.mounts.push(mount_nullfs(&cfg.root, m)?);
        }
        let jid = jail_create(&kernel)?;
        state.jid = Some(jid);
        // Its limits, before anything runs in it (the rules go with the jail's group).
        if let Some(name) = cfg.resource_group.as_ref().and_then(|g| g.rctl_jail()) {
            if cfg.name.as_deref() != Some(name) {
                return Err(Error::InvalidConfig(format!(
                    "the resource group names jail {name}, but the jail is named {}",
                    cfg.name.as_deref().unwrap_or("(nothing)")
                )));
            }
            rctl::apply(name, &cfg.resources)?;
            if let Some(list) = &cfg.resources.cpuset_cpus {
                rctl::apply_cpuset(jid, &crate::rctl::cpuset_list(list)?)?;
            }
        }
        created::run_all(created).await?;
        let process = spawn_in_jail(
            jid,
            &cfg.process,
            user_spec,
            &user,
            clean,
            cfg.hold.as_deref(),
        )
        .await?;
        if let Some(update) = persist_update(cfg.lifetime, &cfg.params, jid)? {
            jail_update(&update)?;
        }
        Ok((jid, process))
    }
    .await;
    match result {
        Ok((jid, process)) => {
            let handle = JailHandle {
                name: cfg.name.clone(),
                id: JailId(jid),
                pid: process.pid(),
                root: cfg.root.clone(),
            };
            Ok((handle, process, state))
        }
        Err(e) => {
            let handle = JailHandle::new(None, JailId(state.jid.unwrap_or(-1)), -1, &cfg.root);
            let _ = teardown(&mut state, &handle).await;
            Err(e)
        }
    }
}

/// Mounts devfs on the jail's `/dev` under `root`, with the ruleset of `params` (the
/// jails' default without one): the mount's path.
fn mount_devfs(root: &Path, params: &[crate::JailParam]) -> Result<CString> {
    let ruleset = params
        .iter()
        .rev()
        .find(|p| p.name() == "devfs_ruleset")
        .and_then(|p| p.as_str().ok().map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_DEVFS_RULESET.to_string());
    let point = mount_point(root, Path::new("/dev"), false)?;
    let fspath = cstr(point.as_os_str().as_bytes(), "the root")?;
    nmount(
        &[
            str_param("fstype", b"devfs"),
            str_param("fspath", fspath.as_bytes()),
            str_param("ruleset", ruleset.as_bytes()),
        ],
        0,
    )
    .map_err(|e| Error::Setup {
        step: "mounting devfs".into(),
        source: e,
    })?;
    Ok(fspath)
}

/// Mounts `m` by nullfs inside the jail's `root` (its mount point made there): the
/// mount's path.
fn mount_nullfs(root: &Path, m: &crate::config::Mount) -> Result<CString> {
    let point = mount_point(root, &m.target, !m.source.is_dir())?;
    let fspath = cstr(point.as_os_str().as_bytes(), "a mount target")?;
    nmount(
        &[
            str_param("fstype", b"nullfs"),
            str_param("fspath", fspath.as_bytes()),
            str_param("target", m.source.as_os_str().as_bytes()),
        ],
        if m.read_only { libc::MNT_RDONLY } else { 0 },
    )
    .map_err(|e| Error::Setup {
        step: format!(
            "nullfs mount of {} at {}",
            m.source.display(),
            m.target.display()
        ),
        source: e,
    })?;
    Ok(fspath)
}

pub(crate) async fn exec(
    handle: &JailHandle,
    _pidfd: Option<BorrowedFd<'_>>,
    cfg: &ExecConfig,
) -> Result<Process> {
    cfg.validate()?;
    refuse_linux_settings(cfg.linux_only_setting())?;
    let root_fd = open_root(&handle.root)?;
    let user = resolve_in_root(&root_fd, cfg.user.as_deref().unwrap_or("0"))?;
    drop(root_fd);
    spawn_in_jail(
        handle.id.0,
        cfg,
        cfg.user.as_deref(),
        &user,
        cfg.clean_env.unwrap_or(true),
        None,
    )
    .await
}

pub(crate) async fn teardown(state: &mut BackendState, _handle: &JailHandle) -> Result<()> {
    if let Some(jid) = state.jid.take() {
        // SAFETY: jail_remove takes a jid; it kills what still runs in the jail.
        if unsafe { libc::jail_remove(jid) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(Error::io(format!("remove jail {jid}"), e));
            }
        }
    }
    unmount_all(&mut state.mounts)
}

pub(crate) fn signal_handle(handle: &JailHandle, signal: Signal) -> Result<()> {
    nix::sys::signal::kill(Pid::from_raw(handle.pid), signal).map_err(|_| Error::NotRunning)
}

pub(crate) fn is_running(handle: &JailHandle) -> bool {
    jail_exists(handle.id.0)
}

pub(crate) fn signal_all(handle: &JailHandle, signal: Signal) -> Result<()> {
    let mut any = false;
    for p in all_processes()?
        .iter()
        .filter(|p| p.ki_jid == handle.id.0 && p.ki_stat != libc::SZOMB)
    {
        any |= nix::sys::signal::kill(Pid::from_raw(p.ki_pid), signal).is_ok();
    }
    if any || jail_exists(handle.id.0) {
        Ok(())
    } else {
        Err(Error::NotRunning)
    }
}

pub(crate) fn update_params(handle: &JailHandle, params: &[crate::JailParam]) -> Result<()> {
    let update = crate::freebsd_plan::live_update(params, handle.id.0)?;
    jail_update(&update)
}

pub(crate) fn kill_all(handle: &JailHandle) -> Result<()> {
    // SAFETY: jail_remove takes a jid; it kills what still runs in the jail.
    if unsafe { libc::jail_remove(handle.id.0) } < 0 {
        return Err(Error::NotRunning);
    }
    Ok(())
}

/// The command is the jail's first process; the jail ends with it unless processes remain
/// (or it persists, with [`Lifetime::Command`] until teardown).
pub(crate) async fn wait_command(
    process: &mut Process,
    handle: &JailHandle,
    lifetime: Lifetime,
) -> Result<CommandEnd> {
    let status = process.wait().await?;
    Ok(CommandEnd {
        status,
        jail_ended: lifetime == Lifetime::Command || !jail_exists(handle.id.0),
    })
}

/// How often the end of a jail of [`Lifetime::Processes`] is looked for (no event tells
/// it).
const JAIL_POLL: std::time::Duration = std::time::Duration::from_millis(200);

pub(crate) async fn wait_jail(
    process: &mut Process,
    handle: &JailHandle,
    lifetime: Lifetime,
    command: Option<ExitStatus>,
) -> Result<ExitStatus> {
    let status = match command {
        Some(s) => s,
        None => process.wait().await?,
    };
    if lifetime == Lifetime::Processes {
        while jail_exists(handle.id.0) {
            tokio::time::sleep(JAIL_POLL).await;
        }
    }
    Ok(status)
}

/// Waits for a child by pid (FreeBSD has no pidfd here; a blocking waitpid runs on tokio's
/// blocking pool).
#[derive(Debug)]
pub(crate) struct Waiter {
    pid: i32,
    done: bool,
}

impl Waiter {
    fn new(pid: i32) -> Self {
        Waiter { pid, done: false }
    }

    pub fn pidfd(&self) -> Result<BorrowedFd<'_>> {
        Err(Error::NotRunning)
    }

    fn decode(status: i32) -> ExitStatus {
        ExitStatus::from_raw(status)
    }

    pub async fn wait(&mut self) -> Result<ExitStatus> {
        if self.done {
            return Err(Error::NotRunning);
        }
        let pid = self.pid;
        let status = tokio::task::spawn_blocking(move || loop {
            let mut status = 0;
            // SAFETY: waits for our own child; `status` is valid.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                return Ok(status);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        })
        .await
        .map_err(|e| Error::io("wait for the process", io::Error::other(e)))?
        .map_err(|e| Error::io("wait for the process", e))?;
        self.done = true;
        Ok(Self::decode(status))
    }

    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.done {
            return Err(Error::NotRunning);
        }
        let mut status = 0;
        // SAFETY: polls our own child; `status` is valid.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if r == self.pid {
            self.done = true;
            return Ok(Some(Self::decode(status)));
        }
        if r < 0 {
            return Err(Error::io(
                "wait for the process",
                io::Error::last_os_error(),
            ));
        }
        Ok(None)
    }

    pub fn signal(&self, signal: Signal) -> Result<()> {
        nix::sys::signal::kill(Pid::from_raw(self.pid), signal).map_err(|_| Error::NotRunning)
    }

    pub fn reap_in_background(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let pid = self.pid;
        let reap = move || {
            let mut status = 0;
            // SAFETY: waits for our own child; `status` is valid.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(reap);
            }
            Err(_) => {
                std::thread::spawn(reap);
            }
        }
    }
}

/// A process found in a jail under a root (FreeBSD has no pidfd for another's process).
#[derive(Debug)]
pub(crate) struct Found {
    pid: i32,
}

impl Found {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// FreeBSD jails have no pid 1: none goes first.
    pub fn first(&self) -> bool {
        false
    }

    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        match nix::sys::signal::kill(Pid::from_raw(self.pid), signal) {
            Err(nix::errno::Errno::ESRCH) | Ok(()) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn exited(&self) -> bool {
        nix::sys::signal::kill(Pid::from_raw(self.pid), None) == Err(nix::errno::Errno::ESRCH)
    }
}

/// The jids of the live jails whose path is `root` or below it (`jail_get(2)` from
/// `lastjid` on, as jls(8) lists them).
fn jails_under(root: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    let mut lastjid: libc::c_int = 0;
    loop {
        let mut jid: libc::c_int = 0;
        let mut path = [0u8; 1024];
        let int = std::mem::size_of::<libc::c_int>();
        let name = |n: &CStr| libc::iovec {
            iov_base: n.as_ptr() as *mut libc::c_void,
            iov_len: n.to_bytes_with_nul().len(),
        };
        let mut iov = [
            name(c"lastjid"),
            libc::iovec {
                iov_base: (&mut lastjid as *mut libc::c_int).cast(),
                iov_len: int,
            },
            name(c"jid"),
            libc::iovec {
                iov_base: (&mut jid as *mut libc::c_int).cast(),
                iov_len: int,
            },
            name(c"path"),
            libc::iovec {
                iov_base: path.as_mut_ptr().cast(),
                iov_len: path.len(),
            },
        ];
        // SAFETY: the iovecs point at NUL-terminated names and at buffers of the lengths
        // given, all live for the call.
        let r = unsafe { libc::jail_get(iov.as_mut_ptr(), iov.len() as libc::c_uint, 0) };
        if r < 0 {
            // ENOENT: no jail after lastjid.
            return out;
        }
        lastjid = r;
        let jail_path = CStr::from_bytes_until_nul(&path)
            .map(|c| PathBuf::from(std::ffi::OsStr::from_bytes(c.to_bytes())))
            .unwrap_or_default();
        if jail_path.starts_with(root) {
            out.push(r);
        }
    }
}

/// Every process of the host (`kern.proc.proc`).
fn all_processes() -> Result<Vec<libc::kinfo_proc>> {
    let mib = [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_PROC];
    let size = std::mem::size_of::<libc::kinfo_proc>();
    let err = |e| Error::io("list the processes", e);
    for _ in 0..4 {
        let mut len = 0usize;
        // SAFETY: a size query: no buffer, `len` receives the size needed.
        let r = unsafe {
            libc::sysctl(
                mib.as_ptr(),
                mib.len() as libc::c_uint,
                std::ptr::null_mut(),
                &mut len,
                std::ptr::null(),
                0,
            )
        };
        if r < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        let cap = len / size + 16;
        let mut procs: Vec<libc::kinfo_proc> = Vec::with_capacity(cap);
        let mut len = cap * size;
        // SAFETY: the kernel writes at most `len` bytes, the capacity of `procs`.
        let r = unsafe {
            libc::sysctl(
                mib.as_ptr(),
                mib.len() as libc::c_uint,
                procs.as_mut_ptr().cast(),
                &mut len,
                std::ptr::null(),
                0,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOMEM) {
                continue; // more processes meanwhile
            }
            return Err(err(e));
        }
        // SAFETY: the kernel filled `len` bytes of whole kinfo_proc records.
        unsafe { procs.set_len(len / size) };
        if procs
            .first()
            .is_some_and(|p| p.ki_structsize as usize != size)
        {
            return Err(err(io::Error::other(
                "kinfo_proc of the kernel and of libc differ in size",
            )));
        }
        return Ok(procs);
    }
    Err(err(io::Error::other("the process list keeps growing")))
}

/// The processes of the jails whose path is `root` or below it, except this process and
/// its ancestors. (Processes outside jails whose working directory is there are not found
/// on FreeBSD.)
pub(crate) fn find_under(root: &Path) -> Result<Vec<Found>> {
    let jids = jails_under(root);
    if jids.is_empty() {
        return Ok(Vec::new());
    }
    let procs = all_processes()?;
    let mut spared = vec![std::process::id() as i32];
    while let Some(parent) = spared
        .last()
        .and_then(|pid| procs.iter().find(|p| p.ki_pid == *pid))
        .map(|p| p.ki_ppid)
        .filter(|pp| *pp > 0 && !spared.contains(pp))
    {
        spared.push(parent);
    }
    Ok(procs
        .iter()
        .filter(|p| jids.contains(&p.ki_jid) && p.ki_stat != libc::SZOMB)
        .filter(|p| !spared.contains(&p.ki_pid))
        .map(|p| Found { pid: p.ki_pid })
        .collect())
}

/// Waits until every process of `found` has ended, or `timeout` has passed (polling: no
/// pidfds here).
pub(crate) fn wait_exited(found: &[&Found], timeout: std::time::Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while found.iter().any(|f| !f.exited()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Removes the jails whose path is `root` or below it (`jail_remove(2)` kills whatever
/// still runs in them). Their mounts (devfs, nullfs) are the caller's to unmount.
pub(crate) fn release_under(root: &Path) -> Result<()> {
    for jid in jails_under(root) {
        // SAFETY: jail_remove takes a jid.
        if unsafe { libc::jail_remove(jid) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(Error::io(format!("remove jail {jid}"), e));
            }
        }
    }
    Ok(())
}
