//! The code that runs in the child between `clone(2)` and `execve(2)`.
//!
//! The calling process is multi-threaded (tokio), so the child of a `clone` has only the
//! calling thread and possibly locks held by threads that no longer exist. Everything here is
//! therefore a raw system call on data prepared before the clone: no allocation, no locks,
//! no panics, no formatting. Failures are reported to the parent as a fixed-size record on a
//! close-on-exec pipe (EOF there means the exec succeeded).

use std::ffi::{c_char, CStr, CString};
use std::os::fd::RawFd;

use crate::report::{encode, Stage, RECORD};

/// A mount, prepared: a bind mount (no `fstype`) or a file system.
#[derive(Debug)]
pub(crate) struct MountPlan {
    /// The bind mount's source on the host, or the file system's source (`tmpfs`).
    pub source: CString,
    /// The file system type; `None` for a bind mount.
    pub fstype: Option<CString>,
    /// The target relative to the root, for `openat2(RESOLVE_IN_ROOT)` before pivot_root.
    pub target_rel: CString,
    /// Create the target (and its parents) when missing, as an empty file with
    /// `target_file`, else a directory (the standard_mounts(false) mode).
    pub create: bool,
    pub target_file: bool,
    /// The flags of mount(2): `MS_BIND` (with `MS_REC`) for a bind, the file system's flags.
    pub flags: libc::c_ulong,
    /// The file system's options.
    pub data: Option<CString>,
    /// A bind's remount flags (`MS_BIND | MS_REMOUNT | ...`, with the nosuid/nodev/noexec
    /// and atime flags of the source mount); 0: no remount.
    pub remount: libc::c_ulong,
    /// The propagation flags set afterwards; 0: none.
    pub propagation: libc::c_ulong,
    /// A tmpfs at /dev, filled with the device nodes and links runc makes.
    pub populate_dev: bool,
    /// A bind made through the idmapped mount the parent sent: its slot among the
    /// descriptors received ([`UserNsPlan::idmapped`]).
    pub idmap_slot: Option<usize>,
}

/// A namespace the jail's first process joins.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JoinPlan {
    /// The namespace file, opened by the parent.
    pub fd: RawFd,
    /// Its `CLONE_NEW*` type.
    pub nstype: libc::c_int,
    /// Its [`crate::config::Namespace::index`], for the failure record.
    pub index: u32,
}

/// Capabilities given in place of the default set.
#[derive(Debug)]
pub(crate) struct CapsPlan {
    /// Dropped from the bounding set.
    pub drop: Vec<u32>,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    /// Raised one by one.
    pub ambient: Vec<u32>,
}

/// A resource limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RlimitPlan {
    pub resource: libc::c_int,
    pub soft: u64,
    pub hard: u64,
    /// Its [`crate::Rlimit`] index, for the failure record.
    pub index: u32,
}

/// What ties a jailed process to its owner, the process that started it: its parent is the
/// owner's spawner thread (see [`super::spawner`]), which lives exactly as long as the owner.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnerLink {
    /// The owner's pid (its thread group id), as the owner's `/proc` shows it.
    pub pid: libc::pid_t,
    /// An `O_PATH` descriptor of the owner's `/proc`, or -1 when it cannot be used: where
    /// the child reads its parent's pid (`getppid` is 0 in a new pid namespace).
    pub proc_fd: RawFd,
}

/// The part shared by a jail's command and an exec'd process: who it runs as, where, with
/// which streams, and what is executed.
#[derive(Debug)]
pub(crate) struct ProcPlan {
    pub workdir: CString,
    pub drop_caps: Vec<u32>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<libc::gid_t>,
    pub stdio: [RawFd; 3],
    pub tty: bool,
    pub candidates: Vec<CString>,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    pub err_fd: RawFd,
    /// Die with the owner, armed (again) after the ids are set, which clears the
    /// parent-death signal: for a jail's command that is pid 1, and an exec'd process.
    pub owner: Option<OwnerLink>,
    /// Capabilities in place of the default set.
    pub caps: Option<CapsPlan>,
    pub rlimits: Vec<RlimitPlan>,
    pub no_new_privs: bool,
    /// `oom_score_adj` as the decimal text written to `/proc/self/oom_score_adj`.
    pub oom_score_adj: Option<CString>,
    pub umask: libc::mode_t,
    /// The gate FIFO (an `O_PATH` descriptor) the command is held on before `execve`.
    pub hold: Option<RawFd>,
    /// `cgroup.procs` files (opened by the parent) the process writes `0` to, first thing:
    /// it joins its groups before it can fork.
    pub cgroup_procs: Vec<RawFd>,
    /// The compiled seccomp filter, installed before `execve`.
    pub seccomp: Option<crate::SeccompProgram>,
    /// A terminal made in the jail's devpts: its master goes back over this socket.
    pub jail_pty: Option<JailPtyPlan>,
}

/// A terminal the process makes in the jail's own devpts (as runc makes it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct JailPtyPlan {
    /// The child's end of the socket the master is sent back on (SCM_RIGHTS).
    pub sock: RawFd,
    pub size: libc::winsize,
    /// Bind the slave at /dev/console (a jail's first process).
    pub console: bool,
}

/// A device node to make: its directory and name relative to the root, its mode (type and
/// permissions), number and owner.
#[derive(Debug)]
pub(crate) struct DevicePlan {
    pub dir_rel: CString,
    pub name: CString,
    pub mode: libc::mode_t,
    pub dev: libc::dev_t,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// Everything a new jail's child does.
#[derive(Debug)]
pub(crate) struct StartPlan {
    pub root: CString,
    pub mounts: Vec<MountPlan>,
    /// The crate's own /proc (and /dev with `devfs`), mounted after pivot_root.
    pub standard_mounts: bool,
    pub devfs: bool,
    /// The host name, set unless the uts namespace is joined or the host's.
    pub hostname: Option<CString>,
    pub loopback: bool,
    /// The network namespace to join, first thing (it has its own `lo`).
    pub netns: Option<RawFd>,
    /// Other namespaces to join, right after it.
    pub joins: Vec<JoinPlan>,
    /// A joined pid namespace: where the process forked into it reports its pid (the
    /// first child exits then).
    pub pid_report: Option<RawFd>,
    /// The propagation every mount gets before the root is bound (`MS_REC` with
    /// `MS_PRIVATE`, or `MS_SLAVE`).
    pub root_initial: libc::c_ulong,
    /// The propagation set on the root after pivot_root; 0: none.
    pub root_after: libc::c_ulong,
    /// The flags the root is remounted read-only with; `None`: left writable.
    pub readonly_root: Option<libc::c_ulong>,
    /// `/proc/sys/...` files and the values written to them.
    pub sysctls: Vec<(CString, CString)>,
    /// Device nodes made after the mounts, before pivot_root.
    pub devices: Vec<DevicePlan>,
    pub readonly_paths: Vec<CString>,
    pub masked_paths: Vec<CString>,
    /// The pty's slave on the host (`/dev/pts/N`), bound at /dev/console of a filled /dev.
    pub console: Option<CString>,
    /// The init is not pid 1: it makes itself a child subreaper.
    pub subreaper: bool,
    /// Init mode: the write end of the pipe the init reports the command's status on.
    pub init_status_fd: Option<RawFd>,
    /// Init mode: the init outlives the command while any process of the jail remains
    /// ([`crate::Lifetime::Processes`]), and with `persist` while none does, until a
    /// signal stops it.
    pub init_jail: Option<InitJail>,
    /// Die with the owner, armed first thing in pid 1.
    pub owner: Option<OwnerLink>,
    /// Make the new cgroup namespace after joining the groups (its root is then the
    /// jail's group), rather than at the clone.
    pub unshare_cgroupns: bool,
    /// A user namespace of the jail's own, made after the joins.
    pub userns: Option<UserNsPlan>,
    pub proc: ProcPlan,
}

/// The most idmapped mounts (the root's included) the parent hands a jail.
pub(crate) const MAX_IDMAPPED: usize = 16;

/// How the jail's first process makes its user namespace (runc's order): after joining
/// the namespaces given (owned by the host's user namespace), `unshare(CLONE_NEWUSER)`,
/// a byte to the parent, which writes the maps (and makes the idmapped mounts, sent
/// back with `SCM_RIGHTS`) and answers; then the ids inside, then the other namespaces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UserNsPlan {
    /// The child's end of the socket pair shared with the parent.
    pub sync_fd: RawFd,
    /// The `CLONE_NEW*` namespaces made after the user namespace.
    pub unshare: libc::c_int,
    /// The ids the process takes in the user namespace once mapped (0, unless the maps
    /// leave container root out: then the jail's user's).
    pub uid: u32,
    pub gid: u32,
    /// How many idmapped mounts the parent sends (the root's first, when
    /// `idmapped_root`).
    pub idmapped: usize,
    pub idmapped_root: bool,
}

/// How a jail-mode init lives on after the command.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InitJail {
    /// Runs on with no process left, until a signal stops it (the `persist` parameter).
    pub persist: bool,
}

/// What a jail-mode init writes on its status pipe when the command ends: the raw wait
/// status, then whether the init ends with it (no other process of the jail remains).
pub(crate) const INIT_REPORT: usize = 5;

/// Pointer arrays for execve, built before the clone (they point into a `ProcPlan`).
pub(crate) struct ExecArrays {
    pub argv: Vec<*const c_char>,
    pub env: Vec<*const c_char>,
}

impl ExecArrays {
    pub fn new(p: &ProcPlan) -> Self {
        let mut argv: Vec<*const c_char> = p.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut env: Vec<*const c_char> = p.env.iter().map(|a| a.as_ptr()).collect();
        env.push(std::ptr::null());
        ExecArrays { argv, env }
    }
}

fn errno() -> i32 {
    nix::errno::Errno::last_raw()
}

/// Reports a failure and exits; never returns.
fn fail(err_fd: RawFd, stage: Stage, index: u32, errno: i32) -> ! {
    let rec = encode(stage, errno, index);
    // SAFETY: writes RECORD bytes from a stack buffer; _exit never returns and runs no
    // atexit handlers (which could take locks of vanished threads).
    unsafe {
        libc::write(err_fd, rec.as_ptr().cast(), RECORD);
        libc::_exit(127)
    }
}

macro_rules! try_sys {
    ($plan_err:expr, $stage:expr, $index:expr, $call:expr) => {
        if $call < 0 {
            fail($plan_err, $stage, $index as u32, errno())
        }
    };
}

/// "/proc/self/fd/<fd>" into `buf`, NUL-terminated, without allocating.
fn proc_fd_path(fd: RawFd, buf: &mut [u8; 32]) -> *const c_char {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    let mut digits = [0u8; 12];
    let mut n = fd.unsigned_abs();
    let mut len = 0;
    loop {
        if let Some(d) = digits.get_mut(len) {
            *d = b'0' + (n % 10) as u8;
        }
        len += 1;
        n /= 10;
        if n == 0 || len >= digits.len() {
            break;
        }
    }
    let mut pos = 0;
    for b in PREFIX
        .iter()
        .copied()
        .chain(digits[..len].iter().rev().copied())
    {
        if let Some(slot) = buf.get_mut(pos) {
            *slot = b;
        }
        pos += 1;
    }
    if let Some(slot) = buf.get_mut(pos) {
        *slot = 0;
    }
    buf.as_ptr().cast()
}

fn openat2_raw(dir: RawFd, path: *const c_char, flags: i32) -> RawFd {
    // SAFETY: open_how is a plain C struct for which all-zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid NUL-terminated path and open_how, both outliving the call.
    unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            path,
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        ) as RawFd
    }
}

fn mount(
    src: *const c_char,
    target: *const c_char,
    fstype: *const c_char,
    flags: libc::c_ulong,
    data: *const c_char,
) -> i32 {
    // SAFETY: every pointer is null or a NUL-terminated string prepared before the clone.
    unsafe { libc::mount(src, target, fstype, flags, data.cast()) }
}

const NULL: *const c_char = std::ptr::null();

/// The parent pid (the fourth field) of a `/proc/PID/stat` line: `pid (comm) state ppid ...`,
/// where `comm` may contain spaces and parentheses.
pub(crate) fn parse_stat_ppid(stat: &[u8]) -> Option<libc::pid_t> {
    let close = stat.iter().rposition(|b| *b == b')')?;
    let rest = stat.get(close + 1..)?;
    // " S 1234 ..."
    let mut fields = rest.split(|b| *b == b' ').filter(|f| !f.is_empty()).skip(1);
    let ppid = fields.next()?;
    let mut n: libc::pid_t = 0;
    if ppid.is_empty() {
        return None;
    }
    for b in ppid {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n
            .checked_mul(10)?
            .checked_add(libc::pid_t::from(b - b'0'))?;
    }
    Some(n)
}

/// This process' parent pid as the owner's `/proc` shows it (in the owner's pid namespace,
/// where it is not 0 as `getppid` is in a new one); Err(errno).
pub(crate) fn read_host_ppid(proc_fd: RawFd) -> Result<libc::pid_t, i32> {
    // SAFETY: openat with a descriptor the caller keeps open and a NUL-terminated path.
    let fd = unsafe {
        libc::openat(
            proc_fd,
            c"self/stat".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(errno());
    }
    let mut buf = [0u8; 512];
    let mut len = 0;
    while len < buf.len() {
        let rest = &mut buf[len..];
        // SAFETY: reads into the unfilled rest of `buf`.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            // SAFETY: closes the descriptor opened above.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        if n == 0 {
            break;
        }
        len += n as usize;
    }
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    parse_stat_ppid(&buf[..len]).ok_or(libc::EINVAL)
}

/// Arms `PR_SET_PDEATHSIG` with SIGKILL, then closes the race with an owner that died
/// before that: if the parent is no longer the owner (the process was reparented), exits.
/// After the arming, the owner's death is certain to kill this process: while the owner
/// lives, the parent is its spawner thread, and while it dies, another of its threads (the
/// kernel reparents to one and signals again at each of their exits).
fn die_with_owner(link: &OwnerLink, err: RawFd) {
    // SAFETY: prctl with integer arguments.
    try_sys!(err, Stage::OwnerDeath, 0, unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    });
    if link.proc_fd < 0 {
        return;
    }
    match read_host_ppid(link.proc_fd) {
        Ok(ppid) if ppid == link.pid => {}
        // The owner is gone: nobody waits for this process or reads its report.
        // SAFETY: exits without atexit handlers.
        Ok(_) => unsafe { libc::_exit(128 + libc::SIGKILL) },
        Err(e) => fail(err, Stage::OwnerDeath, 1, e),
    }
}

fn make_dev(err: RawFd) {
    let tmpfs = c"tmpfs".as_ptr();
    try_sys!(
        err,
        Stage::Dev,
        0,
        mount(
            tmpfs,
            c"/dev".as_ptr(),
            tmpfs,
            libc::MS_NOSUID | libc::MS_STRICTATIME,
            c"mode=755,size=65536k".as_ptr()
        )
    );
    let nodes: [(&CStr, u32, u32); 6] = [
        (c"/dev/null", 1, 3),
        (c"/dev/zero", 1, 5),
        (c"/dev/full", 1, 7),
        (c"/dev/random", 1, 8),
        (c"/dev/urandom", 1, 9),
        (c"/dev/tty", 5, 0),
    ];
    for (i, (path, major, minor)) in nodes.iter().enumerate() {
        // SAFETY: mknod with a NUL-terminated path; makedev is arithmetic.
        try_sys!(err, Stage::Dev, i + 1, unsafe {
            libc::mknod(
                path.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(*major, *minor),
            )
        });
    }
    // SAFETY: mkdir with NUL-terminated paths.
    try_sys!(err, Stage::Dev, 10, unsafe {
        libc::mkdir(c"/dev/pts".as_ptr(), 0o755)
    });
    try_sys!(
        err,
        Stage::Dev,
        11,
        mount(
            c"devpts".as_ptr(),
            c"/dev/pts".as_ptr(),
            c"devpts".as_ptr(),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            c"newinstance,ptmxmode=0666,mode=0620".as_ptr()
        )
    );
    // SAFETY: mkdir with a NUL-terminated path.
    try_sys!(err, Stage::Dev, 12, unsafe {
        libc::mkdir(c"/dev/shm".as_ptr(), 0o1777)
    });
    try_sys!(
        err,
        Stage::Dev,
        13,
        mount(
            tmpfs,
            c"/dev/shm".as_ptr(),
            tmpfs,
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"mode=1777,size=65536k".as_ptr()
        )
    );
    let links: [(&CStr, &CStr); 5] = [
        (c"pts/ptmx", c"/dev/ptmx"),
        (c"/proc/self/fd", c"/dev/fd"),
        (c"/proc/self/fd/0", c"/dev/stdin"),
        (c"/proc/self/fd/1", c"/dev/stdout"),
        (c"/proc/self/fd/2", c"/dev/stderr"),
    ];
    for (i, (to, from)) in links.iter().enumerate() {
        // SAFETY: symlink with NUL-terminated paths.
        try_sys!(err, Stage::Dev, 20 + i, unsafe {
            libc::symlink(to.as_ptr(), from.as_ptr())
        });
    }
}

fn loopback_up(err: RawFd) {
    // SAFETY: a socket only to address the interface by ioctl.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    try_sys!(err, Stage::Loopback, 0, s);
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, b) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *b as c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq passed; the union member
    // ifru_flags is the one these requests use.
    unsafe {
        try_sys!(
            err,
            Stage::Loopback,
            1,
            libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr)
        );
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        try_sys!(
            err,
            Stage::Loopback,
            2,
            libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr)
        );
        libc::close(s);
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn limit_capabilities(p: &ProcPlan) {
    let err = p.err_fd;
    for cap in &p.drop_caps {
        // SAFETY: prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, *cap as libc::c_ulong, 0, 0, 0) };
        // EINVAL: a capability this kernel does not know.
        if r < 0 && errno() != libc::EINVAL {
            fail(err, Stage::Capabilities, *cap, errno());
        }
    }
    let keep = crate::caps::default_mask();
    let mut header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget/capset with a version-3 header and two data structs, as the ABI wants.
    unsafe {
        try_sys!(
            err,
            Stage::Capabilities,
            100,
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut CapHeader,
                data.as_mut_ptr()
            )
        );
        for (i, d) in data.iter_mut().enumerate() {
            let k = (keep >> (32 * i)) as u32;
            d.effective &= k;
            d.permitted &= k;
            d.inheritable = 0;
        }
        try_sys!(
            err,
            Stage::Capabilities,
            101,
            libc::syscall(
                libc::SYS_capset,
                &mut header as *mut CapHeader,
                data.as_ptr()
            )
        );
        // Ambient capabilities survive execve: none.
        let r = libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        if r < 0 && errno() != libc::EINVAL {
            fail(err, Stage::Capabilities, 102, errno());
        }
    }
}

/// Blocks (`block`) or unblocks all signals.
fn mask_all_signals(block: bool) {
    // SAFETY: sigset_t is plain data; sigfillset/sigemptyset/sigprocmask only touch it and the
    // thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        if block {
            libc::sigfillset(&mut set);
        } else {
            libc::sigemptyset(&mut set);
        }
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: resets a disposition; the caller (Rust's runtime) may have SIGPIPE ignored,
        // which execve would otherwise keep.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    mask_all_signals(false);
}

/// Working directory, limits, capabilities, ids, stdio, then (held first, with a gate)
/// execve. Never returns.
pub(crate) fn finish_and_exec(p: &ProcPlan, arrays: &ExecArrays) -> ! {
    let err = p.err_fd;
    // While still root with every capability (the console is a bind mount).
    let jail_tty = p.jail_pty.map(|t| open_jail_pty(&t, err));
    // SAFETY: chdir with a NUL-terminated path.
    try_sys!(err, Stage::Workdir, 0, unsafe {
        libc::chdir(p.workdir.as_ptr())
    });
    set_rlimits(p);
    if !p.no_new_privs {
        // Installing needs CAP_SYS_ADMIN without no_new_privs: before it is dropped.
        install_seccomp(p);
    }
    match &p.caps {
        None => limit_capabilities(p),
        Some(c) => {
            drop_bounding(c, err);
            // The permitted set survives the change of uid (the effective one is set after).
            // SAFETY: prctl with integer arguments.
            try_sys!(err, Stage::Capabilities, 103, unsafe {
                libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0)
            });
        }
    }
    set_ids(p);
    if let Some(c) = &p.caps {
        // SAFETY: prctl with integer arguments.
        try_sys!(err, Stage::Capabilities, 104, unsafe {
            libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0)
        });
        set_capabilities(c, err);
    }
    // SAFETY: umask only sets the process' mask.
    unsafe { libc::umask(p.umask) };
    set_stdio(p, jail_tty);
    // Whatever else is open (from C code that did not use O_CLOEXEC) is not the jail's.
    // SAFETY: close_range with integer arguments; errors (old kernels) are harmless.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    reset_signals();
    if p.no_new_privs {
        // As runc: last, so the filter governs as little of the set-up as can be.
        install_seccomp(p);
    }
    if let Some(gate) = p.hold {
        hold_then_exec(p, arrays, gate);
    }
    let last = try_exec(&p.candidates, arrays);
    fail(err, Stage::Exec, 0, last)
}

/// Installs the plan's seccomp filter (prepared without allocating: a pointer and a
/// length into the program the parent compiled).
fn install_seccomp(p: &ProcPlan) {
    if let Some(prog) = &p.seccomp {
        if let Err(errno) = prog.prepare().install() {
            fail(p.err_fd, Stage::Seccomp, 0, errno)
        }
    }
}

/// Sets the plan's resource limits (before the user and capabilities change: raising a
/// hard limit needs `CAP_SYS_RESOURCE`).
fn set_rlimits(p: &ProcPlan) {
    #[repr(C)]
    struct Rlimit64 {
        cur: u64,
        max: u64,
    }
    for r in &p.rlimits {
        // u64::MAX is RLIM64_INFINITY.
        let lim = Rlimit64 {
            cur: r.soft,
            max: r.hard,
        };
        // SAFETY: prlimit64 on this process reads one struct rlimit64 (two u64s) from the
        // pointer, valid for the call; the old limit is not asked for.
        try_sys!(p.err_fd, Stage::Rlimit, r.index, unsafe {
            libc::syscall(
                libc::SYS_prlimit64,
                0,
                r.resource,
                &lim as *const Rlimit64,
                std::ptr::null_mut::<Rlimit64>(),
            )
        });
    }
}

/// Writes the plan's `oom_score_adj` (inherited by the children of this process).
/// Joins the groups whose `cgroup.procs` the parent opened: writing `0` moves the
/// writer (its whole thread group).
fn join_cgroups(p: &ProcPlan) {
    for (i, fd) in p.cgroup_procs.iter().enumerate() {
        // SAFETY: writes one byte from a static string to a descriptor the parent keeps
        // open until the clone is done.
        let n = unsafe { libc::write(*fd, c"0".as_ptr().cast(), 1) };
        try_sys!(p.err_fd, Stage::Cgroup, (i as u32) + 2, n);
    }
}

pub(crate) fn write_oom_score_adj(p: &ProcPlan) {
    let Some(text) = &p.oom_score_adj else {
        return;
    };
    let err = p.err_fd;
    // SAFETY: open with a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c"/proc/self/oom_score_adj".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        )
    };
    try_sys!(err, Stage::OomScoreAdj, 0, fd);
    let len = text.as_bytes().len();
    // SAFETY: writes `len` bytes of the prepared string; closes the descriptor opened above.
    let n = unsafe {
        let n = libc::write(fd, text.as_ptr().cast(), len);
        let e = errno();
        libc::close(fd);
        if n < 0 {
            fail(err, Stage::OomScoreAdj, 0, e)
        }
        n
    };
    if n as usize != len {
        fail(err, Stage::OomScoreAdj, 1, libc::EIO)
    }
}

/// Drops from the bounding set what the plan does not keep.
fn drop_bounding(c: &CapsPlan, err: RawFd) {
    for cap in &c.drop {
        // SAFETY: prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, *cap as libc::c_ulong, 0, 0, 0) };
        // EINVAL: a capability this kernel does not know.
        if r < 0 && errno() != libc::EINVAL {
            fail(err, Stage::Capabilities, *cap, errno());
        }
    }
}

/// Sets the effective, permitted and inheritable sets, then raises the ambient ones.
fn set_capabilities(c: &CapsPlan, err: RawFd) {
    let mut header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let half = |mask: u64, i: usize| (mask >> (32 * i)) as u32;
    let data = [0usize, 1].map(|i| CapData {
        effective: half(c.effective, i),
        permitted: half(c.permitted, i),
        inheritable: half(c.inheritable, i),
    });
    // SAFETY: capset with a version-3 header and two data structs, as the ABI wants.
    try_sys!(err, Stage::Capabilities, 101, unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    });
    // SAFETY: prctl with integer arguments.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if r < 0 && errno() != libc::EINVAL {
        fail(err, Stage::Capabilities, 102, errno());
    }
    for cap in &c.ambient {
        // SAFETY: prctl with integer arguments.
        try_sys!(err, Stage::Capabilities, 64 + cap, unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                *cap as libc::c_ulong,
                0,
                0,
            )
        });
    }
}

/// access(2) with the effective ids and capabilities, as open(2) and execve(2) check
/// (`faccessat2` with `AT_EACCESS`; plain access(2) before Linux 5.8).
fn access_effective(path: *const c_char, mode: libc::c_int) -> libc::c_int {
    // SAFETY: faccessat2 with a NUL-terminated path and integer arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            libc::AT_FDCWD,
            path,
            mode,
            libc::AT_EACCESS,
        )
    } as libc::c_int;
    if r < 0 && errno() == libc::ENOSYS {
        // SAFETY: access with a NUL-terminated path.
        return unsafe { libc::access(path, mode) };
    }
    r
}

/// The command's path as execvp would find it (an executable regular file), without
/// executing it: Err(errno) as execve would report it.
fn resolve_command(candidates: &[CString]) -> Result<&CString, i32> {
    let mut last = libc::ENOENT;
    for cand in candidates {
        let e = if access_effective(cand.as_ptr(), libc::X_OK) < 0 {
            errno()
        } else {
            // SAFETY: stat is plain data; stat writes into it through a valid pointer.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: stat with a NUL-terminated path and a valid struct.
            if unsafe { libc::stat(cand.as_ptr(), &mut st) } < 0 {
                errno()
            } else if st.st_mode & libc::S_IFMT == libc::S_IFREG {
                return Ok(cand);
            } else {
                libc::EACCES
            }
        };
        if e != libc::ENOENT && e != libc::ENOTDIR {
            last = e;
            if e != libc::EACCES {
                break;
            }
        }
    }
    Err(last)
}

/// Holds the process on its gate: finds the command (so its absence is still reported),
/// checks the gate can be opened, tells the parent it is held, waits in the open of the
/// FIFO for writing until [`crate::release`] opens it for reading, writes one byte and
/// executes the command. Failures after the report only end the process (exit 127).
fn hold_then_exec(p: &ProcPlan, arrays: &ExecArrays, gate: RawFd) -> ! {
    let err = p.err_fd;
    let cmd = match resolve_command(&p.candidates) {
        Ok(c) => c,
        Err(e) => fail(err, Stage::Exec, 0, e),
    };
    let mut buf = [0u8; 32];
    let path = proc_fd_path(gate, &mut buf);
    // A change of ids (above all into a user namespace) leaves the process non-dumpable,
    // and /proc/self/fd then belongs to root: it is made dumpable again, as execve would
    // make it a moment later anyway.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    try_sys!(err, Stage::Hold, 0, access_effective(path, libc::W_OK));
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
    let fd = loop {
        // SAFETY: open with a NUL-terminated path; blocks until a reader opens the FIFO.
        let fd = unsafe { libc::open(path, libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd >= 0 {
            break fd;
        }
        if errno() != libc::EINTR {
            fail(-1, Stage::Hold, 1, errno())
        }
    };
    // SAFETY: writes one byte from a static string; closes the descriptors of the gate.
    unsafe {
        libc::write(fd, c"0".as_ptr().cast(), 1);
        libc::close(fd);
        libc::close(gate);
    }
    let last = try_exec(std::slice::from_ref(cmd), arrays);
    fail(-1, Stage::Exec, 0, last)
}

/// Sets the groups, gid and uid (and no_new_privs unless off), then arms the owner's death
/// signal, which the change of ids cleared.
fn set_ids(p: &ProcPlan) {
    let err = p.err_fd;
    // Raw system calls: glibc's set*id wrappers signal every thread the process had before
    // the clone, which this child does not have.
    // SAFETY: setgroups reads `groups.len()` gids from the pointer.
    try_sys!(err, Stage::Groups, 0, unsafe {
        libc::syscall(libc::SYS_setgroups, p.groups.len(), p.groups.as_ptr())
    });
    // SAFETY: integer arguments only.
    try_sys!(err, Stage::Gid, 0, unsafe {
        libc::syscall(libc::SYS_setresgid, p.gid, p.gid, p.gid)
    });
    // SAFETY: integer arguments only.
    try_sys!(err, Stage::Uid, 0, unsafe {
        libc::syscall(libc::SYS_setresuid, p.uid, p.uid, p.uid)
    });
    if p.no_new_privs {
        // SAFETY: prctl with integer arguments.
        try_sys!(err, Stage::NoNewPrivs, 0, unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        });
    }
    // A change of uid or gid clears the parent-death signal: arm it now. Later it stays, as
    // no_new_privs (non-root) or root's own capabilities keep execve from changing the ids.
    if let Some(link) = &p.owner {
        die_with_owner(link, err);
    }
}

/// Puts the prepared descriptors on 0, 1 and 2, and with a terminal makes it the
/// controlling one of a new session.
fn set_stdio(p: &ProcPlan, jail_tty: Option<RawFd>) {
    let err = p.err_fd;
    if let Some(slave) = jail_tty {
        for target in 0..3 {
            // SAFETY: dup2 of the slave opened by this process onto the standard streams.
            try_sys!(err, Stage::Stdio, target, unsafe {
                libc::dup2(slave, target)
            });
        }
        if slave > 2 {
            // SAFETY: closes the descriptor duplicated above.
            unsafe { libc::close(slave) };
        }
        // SAFETY: setsid/ioctl with integer arguments; fd 0 is the terminal's slave side.
        unsafe {
            try_sys!(err, Stage::Terminal, 0, libc::setsid());
            try_sys!(err, Stage::Terminal, 1, libc::ioctl(0, libc::TIOCSCTTY, 0));
        }
        return;
    }
    for (target, fd) in p.stdio.iter().enumerate() {
        if *fd < 0 {
            continue;
        }
        let target = target as RawFd;
        // SAFETY: dup2/fcntl on descriptors prepared by the parent (all >= 3, so no clobbering).
        try_sys!(err, Stage::Stdio, target, unsafe {
            libc::dup2(*fd, target)
        });
    }
    if p.tty {
        // SAFETY: setsid/ioctl with integer arguments; fd 0 is the terminal's slave side.
        unsafe {
            try_sys!(err, Stage::Terminal, 0, libc::setsid());
            try_sys!(err, Stage::Terminal, 1, libc::ioctl(0, libc::TIOCSCTTY, 0));
        }
    }
}

/// Makes a terminal in the jail's devpts (`/dev/ptmx` as the jail sees it), sized as
/// planned, binds its slave at /dev/console when asked, and sends the master back on the
/// plan's socket (SCM_RIGHTS): the slave's descriptor. Allocates nothing.
fn open_jail_pty(t: &JailPtyPlan, err: RawFd) -> RawFd {
    // SAFETY: open with a NUL-terminated path.
    let master = unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    try_sys!(err, Stage::Terminal, 10, master);
    let mut unlock: libc::c_int = 0;
    let mut n: libc::c_uint = 0;
    // SAFETY: ioctls on the master with pointers to locals of the right types.
    unsafe {
        try_sys!(
            err,
            Stage::Terminal,
            11,
            libc::ioctl(master, libc::TIOCSPTLCK, &mut unlock)
        );
        try_sys!(
            err,
            Stage::Terminal,
            12,
            libc::ioctl(master, libc::TIOCGPTN, &mut n)
        );
        try_sys!(
            err,
            Stage::Terminal,
            13,
            libc::ioctl(master, libc::TIOCSWINSZ, &t.size)
        );
    }
    // "/dev/pts/N", built on the stack.
    let mut path = [0u8; 32];
    let prefix = b"/dev/pts/";
    path[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 10];
    let (mut v, mut len) = (n, 0);
    loop {
        digits[len] = b'0' + (v % 10) as u8;
        len += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..len {
        path[prefix.len() + i] = digits[len - 1 - i];
    }
    let slave_path: *const c_char = path.as_ptr().cast();
    // SAFETY: open with the NUL-terminated path above.
    let slave = unsafe { libc::open(slave_path, libc::O_RDWR | libc::O_NOCTTY) };
    try_sys!(err, Stage::Terminal, 14, slave);
    if t.console {
        // runc binds the terminal at /dev/console; the file is made when missing.
        // SAFETY: open/mount/close with NUL-terminated paths prepared here.
        unsafe {
            let f = libc::open(
                c"/dev/console".as_ptr(),
                libc::O_CREAT
                    | libc::O_WRONLY
                    | libc::O_NOFOLLOW
                    | libc::O_NOCTTY
                    | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            );
            if f >= 0 {
                libc::close(f);
            }
            try_sys!(
                err,
                Stage::Console,
                1,
                mount(
                    slave_path,
                    c"/dev/console".as_ptr(),
                    NULL,
                    libc::MS_BIND,
                    NULL
                )
            );
        }
    }
    send_fd(t.sock, master, err);
    // SAFETY: closes descriptors this process no longer needs (the parent has the master).
    unsafe {
        libc::close(master);
        libc::close(t.sock);
    }
    slave
}

/// Sends `fd` on the unix socket `sock` (one byte of data, the descriptor as
/// SCM_RIGHTS), with buffers on the stack.
fn send_fd(sock: RawFd, fd: RawFd, err: RawFd) {
    #[repr(C, align(8))]
    struct Cmsg([u8; 64]);
    let mut control = Cmsg([0u8; 64]);
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: msghdr is a plain C struct for which all-zero is valid; CMSG_* are pointer
    // arithmetic within `control`, which is large and aligned enough for one descriptor;
    // sendmsg reads the structures, all of which outlive the call.
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        try_sys!(err, Stage::Terminal, 15, libc::sendmsg(sock, &msg, 0));
    }
}

/// Tries execve on each candidate path in turn, as execvp does; returns (only when
/// none execs) the errno to report.
fn try_exec(candidates: &[CString], arrays: &ExecArrays) -> i32 {
    let mut last = libc::ENOENT;
    for cand in candidates {
        let mut e = libc::ETXTBSY;
        // ETXTBSY: another thread of the caller had the file open for writing when it cloned
        // a child, which holds it until its own exec; that is a matter of milliseconds.
        for _ in 0..200 {
            // SAFETY: NUL-terminated path and null-terminated pointer arrays into `p`, which
            // lives until execve replaces the process.
            unsafe { libc::execve(cand.as_ptr(), arrays.argv.as_ptr(), arrays.env.as_ptr()) };
            e = errno();
            if e != libc::ETXTBSY {
                break;
            }
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 5_000_000,
            };
            // SAFETY: nanosleep reads the timespec; a null remainder pointer is allowed.
            unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
        }
        // As execvp: keep looking after ENOENT/ENOTDIR, remember EACCES.
        if e != libc::ENOENT && e != libc::ENOTDIR {
            last = e;
            if e != libc::EACCES {
                break;
            }
        }
    }
    last
}

/// The child of a new jail: pid 1 of the new pid namespace (unless that is joined or the
/// host's). Never returns.
pub(crate) fn start_child(plan: &StartPlan, arrays: &ExecArrays) -> ! {
    let err = plan.proc.err_fd;
    if let Some(link) = &plan.owner {
        die_with_owner(link, err);
    }
    join_cgroups(&plan.proc);
    if plan.unshare_cgroupns {
        // SAFETY: unshare with a namespace flag.
        try_sys!(err, Stage::Cgroup, 1, unsafe {
            libc::unshare(libc::CLONE_NEWCGROUP)
        });
    }
    // Through the host's /proc, before the root changes; the children inherit it.
    write_oom_score_adj(&plan.proc);
    if let Some(fd) = plan.netns {
        // SAFETY: setns on a descriptor the parent keeps open until the clone is done.
        try_sys!(err, Stage::JoinNetwork, 0, unsafe {
            libc::setns(fd, libc::CLONE_NEWNET)
        });
    }
    for j in &plan.joins {
        // SAFETY: setns on a descriptor the parent keeps open until the clone is done.
        try_sys!(err, Stage::JoinNamespace, j.index, unsafe {
            libc::setns(j.fd, j.nstype)
        });
    }
    let idmapped = match &plan.userns {
        Some(u) => enter_user_namespace(plan, u),
        None => [-1; MAX_IDMAPPED],
    };
    if let Some(report) = plan.pid_report {
        fork_into_pid_namespace(plan, report);
    }
    // SAFETY: umask only sets the process' mask (device nodes get exactly 0666 below).
    unsafe { libc::umask(0) };
    let root_fd = bind_root(plan, &idmapped);
    make_mounts(plan, root_fd, &idmapped);
    make_devices(plan, root_fd);
    if plan.userns.is_some() && plan.standard_mounts {
        // Before pivot_root: a user namespace may mount proc only where the host's is
        // fully visible, and the host's device nodes are bound from the host's /dev.
        standard_mounts_in_root(plan, root_fd);
    }
    pivot_to(root_fd, err);
    // From here on every path resolves inside the jail.
    if plan.standard_mounts && plan.userns.is_none() {
        try_sys!(
            err,
            Stage::Proc,
            0,
            mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                NULL
            )
        );
        if plan.devfs {
            make_dev(err);
        }
    }
    if plan.root_after != 0 {
        try_sys!(
            err,
            Stage::RootPropagation,
            0,
            mount(NULL, c"/".as_ptr(), NULL, plan.root_after, NULL)
        );
    }
    if let Some(hostname) = &plan.hostname {
        // SAFETY: sethostname reads `len` bytes.
        try_sys!(err, Stage::Hostname, 0, unsafe {
            libc::sethostname(hostname.as_ptr(), hostname.as_bytes().len())
        });
    }
    if plan.loopback {
        loopback_up(err);
    }
    write_sysctls(plan);
    readonly_paths(plan);
    mask_paths(plan);
    if let Some(flags) = plan.readonly_root {
        try_sys!(
            err,
            Stage::ReadonlyRoot,
            0,
            mount(NULL, c"/".as_ptr(), NULL, flags, NULL)
        );
    }
    if let Some(status_fd) = plan.init_status_fd {
        run_init(plan, arrays, status_fd);
    }
    finish_and_exec(&plan.proc, arrays)
}

/// A joined pid namespace takes effect for children only: forks the process that goes on
/// in it, as a child of this one's parent (`CLONE_PARENT`), which gets its pid on `report`;
/// this process exits. Returns in the forked process only.
fn fork_into_pid_namespace(plan: &StartPlan, report: RawFd) {
    let err = plan.proc.err_fd;
    // SAFETY: a fork-like clone whose child gets our parent as its parent.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    try_sys!(err, Stage::Fork, 1, pid);
    if pid == 0 {
        // The parent reads the pid until every write end is closed.
        // SAFETY: closes this process' copy of the report pipe.
        unsafe { libc::close(report) };
        // The parent-death signal is not inherited.
        if let Some(link) = &plan.owner {
            die_with_owner(link, err);
        }
        return;
    }
    let raw = (pid as i32).to_ne_bytes();
    // SAFETY: writes 4 bytes from the stack; exits without atexit handlers.
    unsafe {
        libc::write(report, raw.as_ptr().cast(), raw.len());
        libc::_exit(0)
    }
}

/// Makes the user namespace (see [`UserNsPlan`]) and the namespaces that belong to it:
/// the idmapped mounts the parent sent (unused slots -1).
fn enter_user_namespace(plan: &StartPlan, u: &UserNsPlan) -> [RawFd; MAX_IDMAPPED] {
    let err = plan.proc.err_fd;
    // SAFETY: unshare with a namespace flag.
    try_sys!(err, Stage::UserNamespace, 0, unsafe {
        libc::unshare(libc::CLONE_NEWUSER)
    });
    // SAFETY: writes one byte from a static string to the socket the parent reads.
    let n = unsafe { libc::write(u.sync_fd, c"U".as_ptr().cast(), 1) };
    try_sys!(err, Stage::UserNamespaceMaps, 0, n);
    let fds = receive_answer(u, err);
    // SAFETY: integer arguments, and setgroups with no groups; raw system calls (glibc's
    // wrappers signal threads this child does not have).
    unsafe {
        try_sys!(
            err,
            Stage::UserNamespaceRoot,
            0,
            libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>())
        );
        try_sys!(
            err,
            Stage::UserNamespaceRoot,
            1,
            libc::syscall(libc::SYS_setresgid, u.gid, u.gid, u.gid)
        );
        try_sys!(
            err,
            Stage::UserNamespaceRoot,
            2,
            libc::syscall(libc::SYS_setresuid, u.uid, u.uid, u.uid)
        );
    }
    // The change of ids cleared the parent-death signal.
    if let Some(link) = &plan.owner {
        die_with_owner(link, err);
    }
    // SAFETY: unshare with namespace flags; closes this process' end of the socket.
    unsafe {
        try_sys!(err, Stage::Unshare, 0, libc::unshare(u.unshare));
        libc::close(u.sync_fd);
    }
    fds
}

/// Waits for the parent's answer on the socket: one zero byte once the maps are
/// written, with the idmapped mounts' descriptors.
fn receive_answer(u: &UserNsPlan, err: RawFd) -> [RawFd; MAX_IDMAPPED] {
    let mut fds = [-1 as RawFd; MAX_IDMAPPED];
    let mut byte = [1u8; 1];
    // Room for a cmsghdr and MAX_IDMAPPED descriptors, aligned for cmsghdr.
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: msghdr is plain data for which all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    let n = loop {
        // SAFETY: recvmsg into the buffers `msg` points to, which outlive the call.
        let n = unsafe { libc::recvmsg(u.sync_fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 || errno() != libc::EINTR {
            break n;
        }
    };
    try_sys!(err, Stage::UserNamespaceMaps, 1, n);
    if n == 0 || byte[0] != 0 {
        // The parent gave up (it reports why).
        fail(err, Stage::UserNamespaceMaps, 2, libc::EPIPE)
    }
    let mut got = 0;
    // SAFETY: the CMSG_* functions walk the control buffer recvmsg filled, within
    // msg_controllen; CMSG_DATA of an SCM_RIGHTS message holds its descriptors (read
    // unaligned).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let len = (*c).cmsg_len - libc::CMSG_LEN(0) as usize;
                let count = len / std::mem::size_of::<RawFd>();
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..count {
                    let fd = data.add(i).read_unaligned();
                    if let Some(slot) = fds.get_mut(got) {
                        *slot = fd;
                    }
                    got += 1;
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if got != u.idmapped || msg.msg_flags & libc::MSG_CTRUNC != 0 {
        fail(err, Stage::UserNamespaceMaps, 3, libc::EBADMSG)
    }
    fds
}

const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// move_mount(2) of the detached tree `from` onto `to_dir`/`to_path`, `flags` saying
/// which paths are empty.
fn move_mount(
    from: RawFd,
    to_dir: RawFd,
    to_path: *const c_char,
    flags: libc::c_uint,
) -> libc::c_long {
    // SAFETY: move_mount with descriptors of this process and NUL-terminated paths.
    unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            c"".as_ptr(),
            to_dir,
            to_path,
            flags | MOVE_MOUNT_F_EMPTY_PATH,
        )
    }
}

/// Sets the propagation of every mount (private, or slaves of the host's), bind-mounts the
/// jail's root on itself (or moves the idmapped root the parent sent onto it) and opens
/// it: its descriptor.
fn bind_root(plan: &StartPlan, idmapped: &[RawFd; MAX_IDMAPPED]) -> RawFd {
    let err = plan.proc.err_fd;
    try_sys!(
        err,
        Stage::MountPrivate,
        0,
        mount(NULL, c"/".as_ptr(), NULL, plan.root_initial, NULL)
    );
    let root = plan.root.as_ptr();
    if plan.userns.is_some_and(|u| u.idmapped_root) {
        try_sys!(
            err,
            Stage::IdmappedRoot,
            0,
            move_mount(idmapped[0], libc::AT_FDCWD, root, 0)
        );
        // SAFETY: closes the descriptor received.
        unsafe { libc::close(idmapped[0]) };
    } else {
        try_sys!(
            err,
            Stage::BindRoot,
            0,
            mount(root, root, NULL, libc::MS_BIND | libc::MS_REC, NULL)
        );
    }
    // SAFETY: open with a NUL-terminated path.
    let root_fd = unsafe { libc::open(root, libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    try_sys!(err, Stage::OpenRoot, 0, root_fd);
    root_fd
}

/// Makes each of the plan's mounts on its target, found inside the root (`root_fd`) before
/// the pivot (and created there in the standard_mounts(false) mode), then remounts it with
/// its flags, sets its propagation and fills a /dev.
/// Makes the plan's device nodes, each directory found (or made) inside the root; a
/// node already there is replaced.
fn make_devices(plan: &StartPlan, root_fd: RawFd) {
    let err = plan.proc.err_fd;
    for (i, d) in plan.devices.iter().enumerate() {
        let i = i as u32;
        if !d.dir_rel.to_bytes().is_empty() {
            if let Err(e) = ensure_mount_point(root_fd, &d.dir_rel, false) {
                fail(err, Stage::Device, i, e);
            }
        }
        let dir = if d.dir_rel.to_bytes().is_empty() {
            // SAFETY: dup of the caller's descriptor.
            unsafe { libc::fcntl(root_fd, libc::F_DUPFD_CLOEXEC, 0) }
        } else {
            openat2_raw(
                root_fd,
                d.dir_rel.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY,
            )
        };
        try_sys!(err, Stage::Device, i, dir);
        // SAFETY: unlinkat, mknodat and fchownat on a descriptor of this function with a
        // NUL-terminated name; the node is not followed (AT_SYMLINK_NOFOLLOW).
        unsafe {
            libc::unlinkat(dir, d.name.as_ptr(), 0);
            if libc::mknodat(dir, d.name.as_ptr(), d.mode, d.dev) < 0
                || libc::fchownat(
                    dir,
                    d.name.as_ptr(),
                    d.uid,
                    d.gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                ) < 0
            {
                let e = errno();
                libc::close(dir);
                fail(err, Stage::Device, i, e);
            }
            libc::close(dir);
        }
    }
}

fn make_mounts(plan: &StartPlan, root_fd: RawFd, idmapped: &[RawFd; MAX_IDMAPPED]) {
    let err = plan.proc.err_fd;
    for (i, m) in plan.mounts.iter().enumerate() {
        if m.create {
            if let Err(e) = ensure_mount_point(root_fd, &m.target_rel, m.target_file) {
                fail(err, Stage::MountPoint, i as u32, e);
            }
        }
        let fd = openat2_raw(root_fd, m.target_rel.as_ptr(), libc::O_PATH);
        try_sys!(err, Stage::OpenBindTarget, i, fd);
        let mut buf = [0u8; 32];
        let target = proc_fd_path(fd, &mut buf);
        match (&m.fstype, m.idmap_slot) {
            (None, Some(slot)) => {
                let from = idmapped.get(slot).copied().unwrap_or(-1);
                try_sys!(
                    err,
                    Stage::Bind,
                    i,
                    move_mount(from, fd, c"".as_ptr(), MOVE_MOUNT_T_EMPTY_PATH)
                );
                // SAFETY: closes the descriptor received.
                unsafe { libc::close(from) };
            }
            (None, None) => try_sys!(
                err,
                Stage::Bind,
                i,
                mount(m.source.as_ptr(), target, NULL, m.flags, NULL)
            ),
            (Some(fstype), _) => try_sys!(
                err,
                Stage::Mount,
                i,
                mount(
                    m.source.as_ptr(),
                    target,
                    fstype.as_ptr(),
                    m.flags,
                    m.data.as_ref().map_or(NULL, |d| d.as_ptr())
                )
            ),
        }
        // SAFETY: closes a descriptor this function opened.
        unsafe { libc::close(fd) };
        if m.remount == 0 && m.propagation == 0 && !m.populate_dev {
            continue;
        }
        // Opened again: now the root of the new mount.
        let fd = openat2_raw(root_fd, m.target_rel.as_ptr(), libc::O_PATH);
        try_sys!(err, Stage::OpenBindTarget, i, fd);
        let target = proc_fd_path(fd, &mut buf);
        if m.remount != 0 {
            try_sys!(
                err,
                Stage::RemountReadOnly,
                i,
                mount(NULL, target, NULL, m.remount, NULL)
            );
        }
        if m.propagation != 0 {
            try_sys!(
                err,
                Stage::Propagation,
                i,
                mount(NULL, target, NULL, m.propagation, NULL)
            );
        }
        if m.populate_dev {
            fill_dev(fd, plan, i as u32);
        }
        // SAFETY: closes a descriptor this function opened.
        unsafe { libc::close(fd) };
    }
}

/// Makes `rel` below the root `root_fd` when it is missing, each component resolved inside
/// the root (`RESOLVE_IN_ROOT`): the missing parent directories, then the last component as
/// a directory or (`file`) an empty file. Err(errno).
fn ensure_mount_point(root_fd: RawFd, rel: &CStr, file: bool) -> Result<(), i32> {
    let fd = openat2_raw(root_fd, rel.as_ptr(), libc::O_PATH);
    if fd >= 0 {
        // SAFETY: closes a descriptor this function opened.
        unsafe { libc::close(fd) };
        return Ok(());
    }
    if errno() != libc::ENOENT {
        return Err(errno());
    }
    let bytes = rel.to_bytes();
    let mut prefix = [0u8; 4096];
    let mut name = [0u8; 256];
    if bytes.len() >= prefix.len() {
        return Err(libc::ENAMETOOLONG);
    }
    let mut start = 0;
    while start < bytes.len() {
        let end = bytes[start..]
            .iter()
            .position(|b| *b == b'/')
            .map_or(bytes.len(), |p| start + p);
        prefix[..end].copy_from_slice(&bytes[..end]);
        prefix[end] = 0;
        let fd = openat2_raw(root_fd, prefix.as_ptr().cast(), libc::O_PATH);
        if fd >= 0 {
            // SAFETY: closes a descriptor this function opened.
            unsafe { libc::close(fd) };
            start = end + 1;
            continue;
        }
        if errno() != libc::ENOENT {
            return Err(errno());
        }
        let parent = if start == 0 {
            root_fd
        } else {
            // The prefix up to the slash before this component.
            prefix[start - 1] = 0;
            let p = openat2_raw(
                root_fd,
                prefix.as_ptr().cast(),
                libc::O_PATH | libc::O_DIRECTORY,
            );
            if p < 0 {
                return Err(errno());
            }
            p
        };
        let len = end - start;
        if len >= name.len() {
            return Err(libc::ENAMETOOLONG);
        }
        name[..len].copy_from_slice(&bytes[start..end]);
        name[len] = 0;
        let r = if end == bytes.len() && file {
            // SAFETY: openat with a descriptor of this function and a NUL-terminated name.
            let f = unsafe {
                libc::openat(
                    parent,
                    name.as_ptr().cast(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_NOFOLLOW
                        | libc::O_NOCTTY
                        | libc::O_CLOEXEC,
                    0o644 as libc::c_uint,
                )
            };
            if f >= 0 {
                // SAFETY: closes the file just made.
                unsafe { libc::close(f) };
            }
            f
        } else {
            // SAFETY: mkdirat with a descriptor of this function and a NUL-terminated name.
            unsafe { libc::mkdirat(parent, name.as_ptr().cast(), 0o755) }
        };
        let e = errno();
        if parent != root_fd {
            // SAFETY: closes a descriptor this function opened.
            unsafe { libc::close(parent) };
        }
        // EEXIST: made meanwhile, or a dangling symlink (the mount then fails on it).
        if r < 0 && e != libc::EEXIST {
            return Err(e);
        }
        start = end + 1;
    }
    Ok(())
}

/// The device nodes of a /dev in a user namespace, bound from the host's.
const HOST_DEV_NODES: [(&CStr, &CStr); 6] = [
    (c"null", c"/dev/null"),
    (c"zero", c"/dev/zero"),
    (c"full", c"/dev/full"),
    (c"random", c"/dev/random"),
    (c"urandom", c"/dev/urandom"),
    (c"tty", c"/dev/tty"),
];

/// Makes an empty file `name` in the directory `dev` and binds the host's node `host` (a
/// path of the host's tree, before pivot_root) onto it. Err(errno).
fn bind_dev_node(dev: RawFd, name: &CStr, host: &CStr) -> Result<(), i32> {
    // SAFETY: openat with a descriptor of the caller and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dev,
            name.as_ptr(),
            libc::O_CREAT
                | libc::O_EXCL
                | libc::O_WRONLY
                | libc::O_NOFOLLOW
                | libc::O_NOCTTY
                | libc::O_CLOEXEC,
            0o666 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(errno());
    }
    let mut buf = [0u8; 32];
    let r = mount(
        host.as_ptr(),
        proc_fd_path(fd, &mut buf),
        NULL,
        libc::MS_BIND,
        NULL,
    );
    let e = errno();
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    if r < 0 {
        return Err(e);
    }
    Ok(())
}

/// In a user namespace, before pivot_root: the crate's /proc and (with devfs) /dev inside
/// the root `root_fd`, the device nodes bound from the host's.
fn standard_mounts_in_root(plan: &StartPlan, root_fd: RawFd) {
    let err = plan.proc.err_fd;
    let mut buf = [0u8; 32];
    let fd = openat2_raw(root_fd, c"proc".as_ptr(), libc::O_PATH);
    try_sys!(err, Stage::Proc, 1, fd);
    try_sys!(
        err,
        Stage::Proc,
        0,
        mount(
            c"proc".as_ptr(),
            proc_fd_path(fd, &mut buf),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            NULL
        )
    );
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    if !plan.devfs {
        return;
    }
    let fd = openat2_raw(root_fd, c"dev".as_ptr(), libc::O_PATH);
    try_sys!(err, Stage::Dev, 30, fd);
    let tmpfs = c"tmpfs".as_ptr();
    try_sys!(
        err,
        Stage::Dev,
        0,
        mount(
            tmpfs,
            proc_fd_path(fd, &mut buf),
            tmpfs,
            libc::MS_NOSUID | libc::MS_STRICTATIME,
            c"mode=755,size=65536k".as_ptr()
        )
    );
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    // Opened again: now the root of the tmpfs.
    let dev = openat2_raw(root_fd, c"dev".as_ptr(), libc::O_PATH | libc::O_DIRECTORY);
    try_sys!(err, Stage::Dev, 31, dev);
    for (i, (name, host)) in HOST_DEV_NODES.iter().enumerate() {
        if let Err(e) = bind_dev_node(dev, name, host) {
            fail(err, Stage::Dev, i as u32 + 1, e);
        }
    }
    let subdirs: [(&CStr, libc::mode_t, &CStr, libc::c_ulong, &CStr); 2] = [
        (
            c"pts",
            0o755,
            c"devpts",
            libc::MS_NOSUID | libc::MS_NOEXEC,
            c"newinstance,ptmxmode=0666,mode=0620",
        ),
        (
            c"shm",
            0o1777,
            c"tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"mode=1777,size=65536k",
        ),
    ];
    for (i, (name, mode, fstype, flags, data)) in subdirs.iter().enumerate() {
        let at = 10 + 2 * i;
        // SAFETY: mkdirat/openat with a descriptor of this function and NUL-terminated
        // names.
        let fd = unsafe {
            try_sys!(
                err,
                Stage::Dev,
                at,
                libc::mkdirat(dev, name.as_ptr(), *mode)
            );
            libc::openat(
                dev,
                name.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        try_sys!(err, Stage::Dev, at + 1, fd);
        try_sys!(
            err,
            Stage::Dev,
            at + 1,
            mount(
                fstype.as_ptr(),
                proc_fd_path(fd, &mut buf),
                fstype.as_ptr(),
                *flags,
                data.as_ptr()
            )
        );
        // SAFETY: closes the descriptor opened above.
        unsafe { libc::close(fd) };
    }
    let links: [(&CStr, &CStr); 5] = [
        (c"pts/ptmx", c"ptmx"),
        (c"/proc/self/fd", c"fd"),
        (c"/proc/self/fd/0", c"stdin"),
        (c"/proc/self/fd/1", c"stdout"),
        (c"/proc/self/fd/2", c"stderr"),
    ];
    for (i, (to, from)) in links.iter().enumerate() {
        // SAFETY: symlinkat with NUL-terminated strings and a descriptor of this function.
        try_sys!(err, Stage::Dev, 20 + i, unsafe {
            libc::symlinkat(to.as_ptr(), dev, from.as_ptr())
        });
    }
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(dev) };
}

/// Fills the tmpfs `dev` (an `O_PATH` descriptor of its root) as runc does: device nodes,
/// the links of a /dev, and the terminal bound at `console` when there is one.
fn fill_dev(dev: RawFd, plan: &StartPlan, index: u32) {
    let err = plan.proc.err_fd;
    let nodes: [(&CStr, u32, u32); 6] = [
        (c"null", 1, 3),
        (c"zero", 1, 5),
        (c"full", 1, 7),
        (c"random", 1, 8),
        (c"urandom", 1, 9),
        (c"tty", 5, 0),
    ];
    if plan.userns.is_some() {
        // No mknod in a user namespace: the host's nodes, bound.
        for (name, host) in HOST_DEV_NODES {
            if let Err(e) = bind_dev_node(dev, name, host) {
                fail(err, Stage::DevNodes, index, e);
            }
        }
    }
    for (path, major, minor) in nodes.into_iter().filter(|_| plan.userns.is_none()) {
        // SAFETY: mknodat with a descriptor of the caller and a NUL-terminated name;
        // makedev is arithmetic.
        try_sys!(err, Stage::DevNodes, index, unsafe {
            libc::mknodat(
                dev,
                path.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(major, minor),
            )
        });
    }
    let links: [(&CStr, &CStr); 5] = [
        (c"pts/ptmx", c"ptmx"),
        (c"/proc/self/fd", c"fd"),
        (c"/proc/self/fd/0", c"stdin"),
        (c"/proc/self/fd/1", c"stdout"),
        (c"/proc/self/fd/2", c"stderr"),
    ];
    for (to, from) in links {
        // SAFETY: symlinkat with NUL-terminated strings and a descriptor of the caller.
        try_sys!(err, Stage::DevNodes, index, unsafe {
            libc::symlinkat(to.as_ptr(), dev, from.as_ptr())
        });
    }
    let Some(slave) = &plan.console else {
        return;
    };
    // SAFETY: openat with a descriptor of the caller and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dev,
            c"console".as_ptr(),
            libc::O_CREAT
                | libc::O_EXCL
                | libc::O_WRONLY
                | libc::O_NOFOLLOW
                | libc::O_NOCTTY
                | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    try_sys!(err, Stage::Console, index, fd);
    let mut buf = [0u8; 32];
    // The slave's path in the host's tree, still there before pivot_root (a descriptor of
    // it, opened in the caller's mount namespace, could not be bound in this one).
    try_sys!(
        err,
        Stage::Console,
        index,
        mount(
            slave.as_ptr(),
            proc_fd_path(fd, &mut buf),
            NULL,
            libc::MS_BIND,
            NULL
        )
    );
    // SAFETY: closes a descriptor this function opened.
    unsafe { libc::close(fd) };
}

/// Writes the plan's sysctls (in the jail, through its /proc).
fn write_sysctls(plan: &StartPlan) {
    let err = plan.proc.err_fd;
    for (i, (path, value)) in plan.sysctls.iter().enumerate() {
        // SAFETY: open with a NUL-terminated path.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        try_sys!(err, Stage::Sysctl, i, fd);
        let len = value.as_bytes().len();
        // SAFETY: writes `len` bytes of the prepared value; closes what was opened.
        let (n, e) = unsafe {
            let n = libc::write(fd, value.as_ptr().cast(), len);
            let e = errno();
            libc::close(fd);
            (n, e)
        };
        if n < 0 {
            fail(err, Stage::Sysctl, i as u32, e);
        }
        if n as usize != len {
            fail(err, Stage::Sysctl, i as u32, libc::EIO);
        }
    }
}

/// The flags of the mount holding `path` that a bind remount must repeat (nosuid, nodev,
/// noexec, the atime ones), from statfs(2); Err(errno).
fn kept_flags(path: *const c_char) -> Result<libc::c_ulong, i32> {
    // SAFETY: statfs is plain data for which all-zero is valid.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs (a system call wrapper) with a NUL-terminated path and a valid struct.
    if unsafe { libc::statfs(path, &mut st) } < 0 {
        return Err(errno());
    }
    // The libc crate keeps `f_flags` private (in `f_spare`): it is the word after
    // `f_frsize`, of its type, in every Linux ABI.
    let at = std::mem::offset_of!(libc::statfs, f_frsize) + std::mem::size_of_val(&st.f_frsize);
    let word = std::mem::size_of_val(&st.f_frsize);
    let mut bytes = [0u8; 8];
    // SAFETY: `at + word` is within `st` (f_spare follows f_frsize), `word` is at most 8,
    // and the bytes are copied out of a fully initialised struct.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&st as *const libc::statfs).cast::<u8>().add(at),
            bytes.as_mut_ptr(),
            word.min(8),
        )
    };
    let flags = if word == 4 {
        u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as u64
    } else {
        u64::from_ne_bytes(bytes)
    };
    // The ST_* flags of f_flags have the values of the MS_* ones.
    let keep = libc::MS_NOSUID
        | libc::MS_NODEV
        | libc::MS_NOEXEC
        | libc::MS_NOATIME
        | libc::MS_NODIRATIME
        | libc::MS_RELATIME;
    Ok(flags as libc::c_ulong & keep)
}

/// Binds each read-only path onto itself and remounts it read-only; a missing one is
/// skipped.
fn readonly_paths(plan: &StartPlan) {
    let err = plan.proc.err_fd;
    for (i, path) in plan.readonly_paths.iter().enumerate() {
        let p = path.as_ptr();
        if mount(p, p, NULL, libc::MS_BIND | libc::MS_REC, NULL) < 0 {
            if errno() == libc::ENOENT {
                continue;
            }
            fail(err, Stage::ReadonlyPath, i as u32, errno());
        }
        let kept = match kept_flags(p) {
            Ok(f) => f,
            Err(e) => fail(err, Stage::ReadonlyPath, i as u32, e),
        };
        try_sys!(
            err,
            Stage::ReadonlyPath,
            i,
            mount(
                NULL,
                p,
                NULL,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | kept,
                NULL
            )
        );
    }
}

/// Covers each masked path as runc does: a directory with an empty read-only tmpfs,
/// anything else with the jail's /dev/null (checked to be the device); a missing one is
/// skipped.
fn mask_paths(plan: &StartPlan) {
    let err = plan.proc.err_fd;
    let mut null_checked = false;
    for (i, path) in plan.masked_paths.iter().enumerate() {
        // SAFETY: stat is plain data; stat writes into it through a valid pointer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: stat with a NUL-terminated path and a valid struct.
        if unsafe { libc::stat(path.as_ptr(), &mut st) } < 0 {
            if errno() == libc::ENOENT || errno() == libc::ENOTDIR {
                continue;
            }
            fail(err, Stage::MaskedPath, i as u32, errno());
        }
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            let tmpfs = c"tmpfs".as_ptr();
            try_sys!(
                err,
                Stage::MaskedPath,
                i,
                mount(tmpfs, path.as_ptr(), tmpfs, libc::MS_RDONLY, NULL)
            );
            continue;
        }
        if !null_checked {
            // SAFETY: stat is plain data; lstat writes into it through a valid pointer.
            let mut null: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: lstat with a NUL-terminated path and a valid struct.
            let r = unsafe { libc::lstat(c"/dev/null".as_ptr(), &mut null) };
            if r < 0 {
                fail(err, Stage::MaskedPath, i as u32, errno());
            }
            if null.st_mode & libc::S_IFMT != libc::S_IFCHR || null.st_rdev != libc::makedev(1, 3) {
                fail(err, Stage::MaskedPath, i as u32, libc::ENODEV);
            }
            null_checked = true;
        }
        try_sys!(
            err,
            Stage::MaskedPath,
            i,
            mount(
                c"/dev/null".as_ptr(),
                path.as_ptr(),
                NULL,
                libc::MS_BIND,
                NULL
            )
        );
    }
}

/// Makes the root `root_fd` the process' root (the old one detached) and closes it.
fn pivot_to(root_fd: RawFd, err: RawFd) {
    // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only the
    // jail's tree (runc's way, no directory for the old root needed).
    // SAFETY: fchdir/pivot_root/umount2/chdir with valid descriptors and NUL-terminated paths.
    unsafe {
        try_sys!(err, Stage::Pivot, 0, libc::fchdir(root_fd));
        try_sys!(
            err,
            Stage::Pivot,
            1,
            libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr())
        );
        try_sys!(
            err,
            Stage::UmountOldRoot,
            0,
            libc::umount2(c".".as_ptr(), libc::MNT_DETACH)
        );
        try_sys!(err, Stage::Pivot, 2, libc::chdir(c"/".as_ptr()));
        libc::close(root_fd);
    }
}

/// Init mode: fork the command, then reap every child and forward signals until the
/// command ends; report its raw status on `status_fd` and exit with its code. In jail mode
/// ([`StartPlan::init_jail`]) the init goes on after the command while other processes of
/// the jail remain (its orphans, which become the init's children, and processes `exec`
/// started, which are not), passes every signal to all of them, and with `persist` runs on
/// with none until a signal stops it.
fn run_init(plan: &StartPlan, arrays: &ExecArrays, status_fd: RawFd) -> ! {
    mask_all_signals(true);
    if plan.subreaper {
        // Not pid 1 of a pid namespace: what the command orphans comes here all the same.
        // SAFETY: prctl with integer arguments.
        try_sys!(plan.proc.err_fd, Stage::Subreaper, 0, unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        });
    }
    // The jail's /proc (mounted above): how the init sees processes that are not its
    // children. Kept open, so a command that unmounts /proc does not blind it.
    let proc_fd = match plan.init_jail {
        // SAFETY: open with a NUL-terminated path.
        Some(_) => unsafe {
            libc::open(
                c"/proc".as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        },
        None => -1,
    };
    let cmd = fork_command(plan, arrays, status_fd);
    // Named for what it is in `ps` (it is a copy of its starter otherwise).
    // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"kleene-init".as_ptr()) };
    close_init_fds(plan, status_fd, proc_fd);
    supervise(plan, cmd, status_fd, proc_fd)
}

/// Forks the init's child, which execs the command (without the status pipe): its pid.
fn fork_command(plan: &StartPlan, arrays: &ExecArrays, status_fd: RawFd) -> libc::pid_t {
    let err = plan.proc.err_fd;
    // SAFETY: a fork-like clone (no new stack: the child continues here on a copy).
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    try_sys!(err, Stage::Fork, 0, pid);
    if pid == 0 {
        // SAFETY: closes this process' copy of the status pipe.
        unsafe { libc::close(status_fd) };
        finish_and_exec(&plan.proc, arrays);
    }
    pid as libc::pid_t
}

/// Closes every descriptor from 3 up but those of `keep` (negative ones are ignored).
fn close_all_but<const N: usize>(mut keep: [RawFd; N]) {
    keep.sort_unstable();
    let mut from = 3 as libc::c_int;
    // SAFETY: close_range with integer arguments, on descriptors this process owns.
    unsafe {
        for k in keep {
            if k >= from {
                if k > from {
                    libc::syscall(libc::SYS_close_range, from as u32, (k - 1) as u32, 0u32);
                }
                from = k + 1;
            }
        }
        libc::syscall(libc::SYS_close_range, from as u32, u32::MAX, 0u32);
    }
}

/// Closes every descriptor of the init but its status pipe and the jail's /proc.
fn close_init_fds(plan: &StartPlan, status_fd: RawFd, proc_fd: RawFd) {
    let err = plan.proc.err_fd;
    // The init keeps no descriptor but its status pipe and /proc: not the streams (the
    // command's end of them is what the caller reads), not the owner's /proc, and not what
    // other threads of the caller had open at the clone (their pipes would never see EOF).
    // SAFETY: closing descriptors this process owns; close_range takes integers.
    unsafe {
        libc::close(err);
        for fd in plan.proc.stdio {
            if fd >= 0 {
                libc::close(fd);
            }
        }
        for fd in 0..3 {
            libc::close(fd);
        }
    }
    close_all_but([status_fd, proc_fd]);
}

/// The init's loop: waits for signals (or, `polling`, looks again shortly), forwards
/// them, reaps, reports the command's end on `status_fd` and exits when the jail ends.
/// Never returns.
fn supervise(plan: &StartPlan, cmd: libc::pid_t, status_fd: RawFd, proc_fd: RawFd) -> ! {
    // SAFETY: sigset_t is plain data, filled by sigfillset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: fills the set.
    unsafe { libc::sigfillset(&mut set) };
    let mut code: Option<libc::c_int> = None;
    let mut stopping = false;
    // While only processes that are not its children remain, the init looks again at
    // this pace (no signal tells it they ended).
    let poll = libc::timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    let mut polling = false;
    loop {
        let timeout = if polling {
            &poll as *const libc::timespec
        } else {
            std::ptr::null()
        };
        // SAFETY: waits for one of the blocked signals; `set` and `timeout` are valid.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), timeout) };
        if sig < 0 && errno() != libc::EAGAIN {
            continue;
        }
        if sig > 0 && sig != libc::SIGCHLD && forward_signal(plan.init_jail, cmd, sig) {
            stopping = true;
        }
        // Reap whatever ended (also on a timeout, and after a forwarded signal).
        let (children_left, cmd_status) = reap_children(cmd);
        let Some(jail) = plan.init_jail else {
            if let Some(status) = cmd_status {
                let raw = status.to_ne_bytes();
                // SAFETY: writes 4 bytes; then exits without atexit handlers.
                unsafe {
                    libc::write(status_fd, raw.as_ptr().cast(), raw.len());
                    libc::_exit(exit_code(status))
                }
            }
            continue;
        };
        let empty = !children_left && !others_alive(proc_fd);
        let ends = empty && (!jail.persist || stopping);
        if let Some(status) = cmd_status {
            code = Some(exit_code(status));
            let mut report = [0u8; INIT_REPORT];
            report[..4].copy_from_slice(&status.to_ne_bytes());
            report[4] = u8::from(ends);
            // SAFETY: writes INIT_REPORT bytes from the stack.
            unsafe { libc::write(status_fd, report.as_ptr().cast(), report.len()) };
        }
        if code.is_some() && ends {
            // SAFETY: exits without atexit handlers.
            unsafe { libc::_exit(code.unwrap_or(0)) }
        }
        // Other processes than children: looked for again shortly.
        polling = code.is_some() && !children_left && !empty;
    }
}

/// Passes signal `sig` on: to the command, or in jail mode to every process of the
/// jail. Whether it stops the jail (one that ends processes by default, in jail mode).
fn forward_signal(init_jail: Option<InitJail>, cmd: libc::pid_t, sig: libc::c_int) -> bool {
    match init_jail {
        None => {
            // SAFETY: forwards the signal to the command.
            unsafe { libc::kill(cmd, sig) };
            false
        }
        Some(_) => {
            // A signal to the jail is one to all of it; one that ends processes by
            // default stops it, whatever `persist` says.
            // SAFETY: kill(-1) in a pid namespace reaches every process of the
            // namespace but its init.
            unsafe { libc::kill(-1, sig) };
            matches!(
                sig,
                libc::SIGTERM | libc::SIGINT | libc::SIGQUIT | libc::SIGHUP
            )
        }
    }
}

/// Reaps every child that ended, without waiting: whether any child is left, and the
/// command's wait status if it was among them.
fn reap_children(cmd: libc::pid_t) -> (bool, Option<libc::c_int>) {
    let mut children_left = true;
    let mut cmd_status = None;
    loop {
        let mut status = 0;
        // SAFETY: reaps any child; `status` is valid.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r == 0 {
            break;
        }
        if r < 0 {
            children_left = errno() != libc::ECHILD;
            break;
        }
        if r == cmd {
            cmd_status = Some(status);
        }
    }
    (children_left, cmd_status)
}

/// The shell's convention for a wait status: the code, or 128 + the signal.
fn exit_code(status: libc::c_int) -> libc::c_int {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// Whether a process other than the init (pid 1) and zombies shows in the jail's /proc
/// (`proc_fd`), read with getdents64 into a stack buffer (no allocation after the clone).
/// Without /proc it answers false.
fn others_alive(proc_fd: RawFd) -> bool {
    if proc_fd < 0 {
        return false;
    }
    // SAFETY: rewinds a directory descriptor this process owns.
    unsafe { libc::lseek(proc_fd, 0, libc::SEEK_SET) };
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`.
        let n =
            unsafe { libc::syscall(libc::SYS_getdents64, proc_fd, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            return false;
        }
        let mut off = 0usize;
        while off + 19 < n as usize {
            // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name.
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            if reclen == 0 {
                return false;
            }
            let name = &buf[off + 19..(off + reclen).min(n as usize)];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if is_pid_name(name) && name != b"1" && !is_zombie(proc_fd, name) {
                return true;
            }
            off += reclen;
        }
    }
}

fn is_pid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(u8::is_ascii_digit)
}

/// Whether `/proc/<pid>/stat` says the process is a zombie (or it is gone).
fn is_zombie(proc_fd: RawFd, pid: &[u8]) -> bool {
    let mut path = [0u8; 32];
    if pid.len() + 6 > path.len() {
        return false;
    }
    path[..pid.len()].copy_from_slice(pid);
    path[pid.len()..pid.len() + 5].copy_from_slice(b"/stat");
    // SAFETY: `path` is NUL-terminated (zeroed beyond what was copied).
    let fd = unsafe {
        libc::openat(
            proc_fd,
            path.as_ptr().cast(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return true;
    }
    let mut stat = [0u8; 256];
    // SAFETY: reads at most `stat.len()` bytes into `stat`; closes what was opened.
    let n = unsafe {
        let n = libc::read(fd, stat.as_mut_ptr().cast(), stat.len());
        libc::close(fd);
        n
    };
    if n <= 0 {
        return true;
    }
    stat_state(&stat[..n as usize]) == Some(b'Z')
}

/// The state letter of a `/proc/<pid>/stat` line: the field after the last `)`.
fn stat_state(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).copied()
}

/// The first child of an exec: enters the jail's namespaces, then forks the process that
/// execs as a sibling (CLONE_PARENT: the caller's child, so the caller reaps it) inside the
/// jail's pid namespace, reports its pid and exits. Never returns.
pub(crate) fn exec_child(
    ns_fd: RawFd,
    ns_flags: libc::c_int,
    pid_fd: RawFd,
    p: &ProcPlan,
    arrays: &ExecArrays,
) -> ! {
    let err = p.err_fd;
    join_cgroups(p);
    // Through the host's /proc, before entering the jail; the process forked inherits it.
    write_oom_score_adj(p);
    // SAFETY: setns with a pidfd and a namespace mask.
    try_sys!(err, Stage::Setns, 0, unsafe {
        libc::setns(ns_fd, ns_flags)
    });
    // SAFETY: a fork-like clone whose child gets our parent as its parent.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    try_sys!(err, Stage::Fork, 0, pid);
    if pid == 0 {
        finish_and_exec(p, arrays);
    }
    let raw = (pid as i32).to_ne_bytes();
    // SAFETY: writes 4 bytes from the stack; exits without atexit handlers.
    unsafe {
        libc::write(pid_fd, raw.as_ptr().cast(), raw.len());
        libc::_exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fd_paths() {
        let mut buf = [0u8; 32];
        let p = proc_fd_path(1234, &mut buf);
        // SAFETY: proc_fd_path NUL-terminates the buffer it returns a pointer into.
        let s = unsafe { CStr::from_ptr(p) };
        assert_eq!(s.to_bytes(), b"/proc/self/fd/1234");
        let p = proc_fd_path(0, &mut buf);
        // SAFETY: as above.
        let s = unsafe { CStr::from_ptr(p) };
        assert_eq!(s.to_bytes(), b"/proc/self/fd/0");
    }

    #[test]
    fn the_init_reads_process_states_and_pid_names() {
        assert_eq!(stat_state(b"42 (sleep) S 7 42"), Some(b'S'));
        assert_eq!(stat_state(b"42 (a) b) Z 1 1"), Some(b'Z'));
        assert_eq!(stat_state(b"42 (x"), None);
        assert!(is_pid_name(b"123"));
        assert!(!is_pid_name(b"self"));
        assert!(!is_pid_name(b""));
        assert!(!is_pid_name(b"1a"));
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(9), 137);
    }

    #[test]
    fn stat_parent_pids() {
        assert_eq!(parse_stat_ppid(b"42 (sleep) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parse_stat_ppid(b"42 (a) b) (c) R 1234 1 1"), Some(1234));
        assert_eq!(parse_stat_ppid(b"42 (x y) Z 0 0"), Some(0));
        assert_eq!(parse_stat_ppid(b"42 (sleep) S"), None);
        assert_eq!(parse_stat_ppid(b"42 (sleep) S x1 2"), None);
        assert_eq!(parse_stat_ppid(b"no parenthesis"), None);
        let mine = std::fs::read("/proc/self/stat").unwrap_or_default();
        assert_eq!(
            parse_stat_ppid(&mine),
            Some(nix::unistd::getppid().as_raw())
        );
    }

    #[test]
    fn a_child_whose_owner_is_not_its_parent_exits() {
        // SAFETY: open with a NUL-terminated path.
        let proc_fd = unsafe {
            libc::open(
                c"/proc".as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        assert!(proc_fd >= 0);
        let me = std::process::id() as libc::pid_t;
        // The parent is the owner: the child goes on (0); it is not: the child exits (137).
        for (owner, code) in [(me, 0), (me + 1, 137)] {
            let link = OwnerLink {
                pid: owner,
                proc_fd,
            };
            // SAFETY: the child only makes raw system calls and exits.
            match unsafe { libc::fork() } {
                0 => {
                    die_with_owner(&link, -1);
                    // SAFETY: exits without atexit handlers.
                    unsafe { libc::_exit(0) }
                }
                pid => {
                    assert!(pid > 0);
                    let mut status = 0;
                    // SAFETY: waits for our own child; `status` is valid.
                    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
                    assert!(libc::WIFEXITED(status));
                    assert_eq!(libc::WEXITSTATUS(status), code, "owner {owner}");
                }
            }
        }
        // SAFETY: closes the descriptor opened above.
        unsafe { libc::close(proc_fd) };
    }
}
