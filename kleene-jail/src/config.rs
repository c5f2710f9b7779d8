//! What to run and how to isolate it: [`JailConfig`] for a new jail, [`ExecConfig`] for a
//! process started in a running one.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::caps::Capabilities;
use crate::error::{Error, Result};
use crate::params::JailParam;
use crate::passwd::ResolvedUser;
use crate::rlimit::Rlimit;

/// The `PATH` of a clean environment (and the search path when the environment has none).
pub const DEFAULT_PATH: &str = "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin";

/// The network a jail sees.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NetworkMode {
    /// The host's network stack (FreeBSD `ip4=inherit ip6=inherit`; Linux: no network
    /// namespace).
    #[default]
    Inherit,
    /// An own stack with only the loopback interface, up (FreeBSD `ip4=disable ip6=disable`,
    /// which leaves no IP at all; Linux: a new network namespace with `lo` up).
    Disabled,
    /// Linux: the network namespace given, which the caller has set up (interfaces,
    /// addresses, routes; kleene-net does it). The jail's first process joins it before
    /// anything else. Refused on FreeBSD.
    Namespace(NetNs),
    /// FreeBSD: the network jail parameters given in place of `ip4`/`ip6` (`ip4.addr`,
    /// `ip6.addr`, `vnet`, and `exec.created`: argv lists run after the jail is made and before
    /// its command, which move and configure a vnet jail's epairs; kleene-net makes them).
    /// Refused on Linux.
    JailParams(Vec<(String, String)>),
}

/// A network namespace, held open by a descriptor (so that it lives at least as long as
/// this value, and then as long as a process is in it).
#[derive(Debug, Clone)]
pub struct NetNs(Arc<OwnedFd>);

impl NetNs {
    /// The namespace `fd` refers to (an open `/proc/PID/ns/net`, or one kept from
    /// `unshare`).
    pub fn new(fd: OwnedFd) -> Self {
        Self(Arc::new(fd))
    }

    /// Its descriptor.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl PartialEq for NetNs {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for NetNs {}

/// A mount in the jail: a directory or file of the host made visible there (a bind mount
/// on Linux, nullfs on FreeBSD), or on Linux a file system (`proc`, `tmpfs`, ...) for an
/// OCI bundle's mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Path on the host of a bind mount; for a file system its source (`proc`, `tmpfs`,
    /// `shm`: what `/proc/self/mountinfo` shows).
    pub source: PathBuf,
    /// Absolute path inside the jail; created (as a directory, or an empty file when the
    /// source of a bind mount is a file) when missing.
    pub target: PathBuf,
    /// Mounted read-only (the same as [`MountFlags::read_only`]).
    pub read_only: bool,
    /// The file system type, `None` for a bind mount.
    pub(crate) fstype: Option<String>,
    pub(crate) flags: MountFlags,
    pub(crate) data: String,
    pub(crate) recursive: bool,
    pub(crate) propagation: Option<Propagation>,
    pub(crate) idmapped: bool,
}

/// The files under `/proc` a bind mount may cover, as runc allows them (what lxcfs
/// provides).
pub const PROC_BIND_TARGETS: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// Refuses a bind mount at or under `/proc` or `/sys` in the jail (as runc refuses
/// them: a host directory over the kernel's files would hide or replace what the jail
/// sees of itself, `/proc/sys` above all), except runc's [`PROC_BIND_TARGETS`].
pub fn check_bind_target(target: &Path) -> Result<()> {
    let parts: Vec<&std::ffi::OsStr> = target
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(p) => Some(p),
            _ => None,
        })
        .collect();
    let first = parts.first().and_then(|p| p.to_str());
    if !matches!(first, Some("proc") | Some("sys")) {
        return Ok(());
    }
    let normal: PathBuf = std::iter::once(std::ffi::OsStr::new("/"))
        .chain(parts.iter().copied())
        .collect();
    if PROC_BIND_TARGETS.iter().any(|p| Path::new(p) == normal) {
        return Ok(());
    }
    Err(Error::InvalidConfig(format!(
        "mount destination {} is refused: nothing may be mounted over /proc or /sys",
        target.display()
    )))
}

/// A device node to make in the jail ([`JailConfig::device`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Its absolute path in the jail (`/dev/fuse`).
    pub path: PathBuf,
    /// `'c'` (character), `'b'` (block) or `'p'` (FIFO).
    pub kind: char,
    /// Its major number.
    pub major: u32,
    /// Its minor number.
    pub minor: u32,
    /// Its permission bits (`0o666`).
    pub mode: u32,
    /// Its owner (a uid in the jail).
    pub uid: u32,
    /// Its group.
    pub gid: u32,
}

/// The file systems [`Mount::filesystem`] accepts.
pub const MOUNT_FILESYSTEMS: &[&str] = &[
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2",
];

impl Mount {
    /// A read-write bind of `source` at `target` (absolute, inside the jail), recursive
    /// (what is mounted below `source` comes along) unless [`Mount::recursive`] says
    /// otherwise.
    pub fn bind(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        Mount {
            source: source.into(),
            target: target.into(),
            read_only: false,
            fstype: None,
            flags: MountFlags::default(),
            data: String::new(),
            recursive: true,
            propagation: None,
            idmapped: false,
        }
    }

    /// Linux: a new instance of file system `fstype` (one of [`MOUNT_FILESYSTEMS`]:
    /// `proc`, `sysfs`, `tmpfs`, `devpts`, `mqueue`, `cgroup`, `cgroup2`) at `target`,
    /// `source` being what the mount table shows as its source. Refused on FreeBSD.
    pub fn filesystem(
        fstype: impl Into<String>,
        source: impl Into<PathBuf>,
        target: impl Into<PathBuf>,
    ) -> Self {
        Mount {
            fstype: Some(fstype.into()),
            recursive: false,
            ..Mount::bind(source, target)
        }
    }

    /// Makes the mount read-only.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self.flags.read_only = true;
        self
    }

    /// The mount's flags (they replace earlier ones, [`Mount::read_only`] included). A bind
    /// mount is made, then remounted with them (keeping `nosuid`, `nodev`, `noexec` and
    /// the atime flags of the mount its source is on, so a bind never lifts a
    /// restriction of the host's); a file system is mounted with them.
    pub fn flags(mut self, flags: MountFlags) -> Self {
        self.read_only = flags.read_only;
        self.flags = flags;
        self
    }

    /// The file system's options, comma-separated as mount(8) takes them after `-o`
    /// (`mode=755,size=65536k`); empty: none. Not for bind mounts.
    pub fn data(mut self, data: impl Into<String>) -> Self {
        self.data = data.into();
        self
    }

    /// For a bind mount: whether the mounts below the source come along (`rbind`, the
    /// default) or not (`bind`).
    pub fn recursive(mut self, on: bool) -> Self {
        self.recursive = on;
        self
    }

    /// The propagation of the mount once made (default: that of the jail's mounts,
    /// private). Linux only.
    pub fn propagation(mut self, propagation: Propagation) -> Self {
        self.propagation = Some(propagation);
        self
    }

    /// Linux, for a bind mount in a jail with a [`JailConfig::user_namespace`]: the bind
    /// is made through an idmapped mount (`mount_setattr(2)` `MOUNT_ATTR_IDMAP` with the
    /// jail's user namespace), so the ids stored in the file system are the container's:
    /// a file owned by host id N appears owned by container id N (host root's files are
    /// container root's), and what the jail creates there is stored with its container
    /// ids. A file system that does not support idmapped mounts (`mount_setattr` answers
    /// `EINVAL`: older kernels' tmpfs, FUSE servers that do not opt in, such as zfs-fuse)
    /// makes [`JailConfig::start`] fail with [`Error::IdmappedMountUnsupported`] naming
    /// the source: no fallback. Refused on FreeBSD and without a user namespace.
    pub fn idmapped(mut self, on: bool) -> Self {
        self.idmapped = on;
        self
    }

    /// The file system type, `None` for a bind mount.
    pub fn fstype(&self) -> Option<&str> {
        self.fstype.as_deref()
    }

    /// The flags the mount is made with ([`Mount::read_only`] included).
    pub fn mount_flags(&self) -> MountFlags {
        MountFlags {
            read_only: self.read_only,
            ..self.flags
        }
    }

    /// Whether the mount uses more than FreeBSD's nullfs can do (a file system, flags but
    /// `read_only`, data, a propagation, a non-recursive bind).
    #[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
    pub(crate) fn beyond_nullfs(&self) -> bool {
        self.fstype.is_some()
            || self.mount_flags()
                != MountFlags {
                    read_only: self.read_only,
                    ..MountFlags::default()
                }
            || !self.data.is_empty()
            || self.propagation.is_some()
            || !self.recursive
            || self.idmapped
    }
}

/// The flags of a [`Mount`], as mount(8) names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountFlags {
    /// `ro`.
    pub read_only: bool,
    /// `nosuid`: set-user-ID and file capabilities do nothing.
    pub nosuid: bool,
    /// `nodev`: device nodes cannot be opened.
    pub nodev: bool,
    /// `noexec`: nothing can be executed.
    pub noexec: bool,
    /// `noatime`.
    pub noatime: bool,
    /// `nodiratime`.
    pub nodiratime: bool,
    /// `relatime`.
    pub relatime: bool,
    /// `strictatime`.
    pub strictatime: bool,
    /// `sync`.
    pub sync: bool,
    /// `dirsync`.
    pub dirsync: bool,
}

/// The propagation of a mount (see mount_namespaces(7)): `R` variants apply to the mounts
/// below it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// `private`.
    Private,
    /// `rprivate`.
    RPrivate,
    /// `slave`.
    Slave,
    /// `rslave`.
    RSlave,
    /// `shared`.
    Shared,
    /// `rshared`.
    RShared,
    /// `unbindable`.
    Unbindable,
    /// `runbindable`.
    RUnbindable,
}

/// A namespace of a Linux jail that can be new, joined or the host's (the mount namespace
/// is always new; the network is [`NetworkMode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Namespace {
    /// Process ids (default: new, the command is pid 1).
    Pid,
    /// System V IPC and POSIX message queues (default: new).
    Ipc,
    /// Host and NIS domain name (default: new).
    Uts,
    /// The cgroup root the jail sees (default: the host's).
    Cgroup,
}

impl Namespace {
    /// Its name in `/proc/PID/ns`.
    pub fn name(self) -> &'static str {
        match self {
            Namespace::Pid => "pid",
            Namespace::Ipc => "ipc",
            Namespace::Uts => "uts",
            Namespace::Cgroup => "cgroup",
        }
    }

    /// Its index in [`Namespaces`], for failure records.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn index(self) -> u32 {
        match self {
            Namespace::Pid => 0,
            Namespace::Ipc => 1,
            Namespace::Uts => 2,
            Namespace::Cgroup => 3,
        }
    }

    pub(crate) const ALL: [Namespace; 4] = [
        Namespace::Pid,
        Namespace::Ipc,
        Namespace::Uts,
        Namespace::Cgroup,
    ];
}

/// One line of a user namespace's `uid_map` or `gid_map` (user_namespaces(7)): the ids
/// `container_id .. container_id + size` in the jail are the host's `host_id .. host_id +
/// size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdMapping {
    /// The first id inside the jail.
    pub container_id: u32,
    /// The host id it stands for.
    pub host_id: u32,
    /// How many consecutive ids are mapped.
    pub size: u32,
}

impl IdMapping {
    /// `size` ids from `container_id` in the jail mapped to those from `host_id` on the host.
    pub fn new(container_id: u32, host_id: u32, size: u32) -> Self {
        IdMapping {
            container_id,
            host_id,
            size,
        }
    }

    /// Whether container id `id` is in this range.
    pub fn maps(&self, id: u32) -> bool {
        id >= self.container_id
            && u64::from(id) < u64::from(self.container_id) + u64::from(self.size)
    }
}

/// The most lines a `uid_map` or `gid_map` may have (Linux 4.15 and later).
pub const MAX_ID_MAPPINGS: usize = 340;

/// Checks a uid or gid map (`what`: `uid_map`, `gid_map`) as the kernel would take it:
/// not empty, at most [`MAX_ID_MAPPINGS`] lines, none empty or past `u32::MAX` (the id
/// `u32::MAX` itself is invalid), and no two overlapping on either side.
pub(crate) fn check_id_map(map: &[IdMapping], what: &str) -> Result<()> {
    if map.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "the user namespace's {what} is empty"
        )));
    }
    if map.len() > MAX_ID_MAPPINGS {
        return Err(Error::InvalidConfig(format!(
            "the user namespace's {what} has {} lines, more than {MAX_ID_MAPPINGS}",
            map.len()
        )));
    }
    let end = |first: u32, size: u32| u64::from(first) + u64::from(size);
    for m in map {
        if m.size == 0 {
            return Err(Error::InvalidConfig(format!(
                "{what}: the mapping of container id {} to host id {} has size 0",
                m.container_id, m.host_id
            )));
        }
        for (side, first) in [("container", m.container_id), ("host", m.host_id)] {
            if end(first, m.size) > u64::from(u32::MAX) {
                return Err(Error::InvalidConfig(format!(
                    "{what}: {} {side} ids from {first} go past {}",
                    m.size,
                    u32::MAX - 1
                )));
            }
        }
    }
    for (i, a) in map.iter().enumerate() {
        for b in &map[i + 1..] {
            for (side, x, y) in [
                ("container", a.container_id, b.container_id),
                ("host", a.host_id, b.host_id),
            ] {
                if u64::from(x) < end(y, b.size) && u64::from(y) < end(x, a.size) {
                    return Err(Error::InvalidConfig(format!(
                        "{what}: the {side} ids of the mappings {} {} {} and {} {} {} overlap (at {side} id {})",
                        a.container_id, a.host_id, a.size, b.container_id, b.host_id, b.size,
                        x.max(y)
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Checks that `id` (of the jail's user: `what` names it, `uid 1000`) is mapped by `map`
/// (`map_name`: `uid_map`, `gid_map`).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn check_mapped(map: &[IdMapping], map_name: &str, id: u32, what: &str) -> Result<()> {
    if map.iter().any(|m| m.maps(id)) {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "{what} {id} of the jail's user is not mapped by the user namespace's {map_name}"
        )))
    }
}

/// A user namespace of a jail: its maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserNamespace {
    pub uid_map: Vec<IdMapping>,
    pub gid_map: Vec<IdMapping>,
}

impl UserNamespace {
    /// Checks that the user (`uid`, `gid`, supplementary `groups`) is mapped.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn check_user(&self, uid: u32, gid: u32, groups: &[u32]) -> Result<()> {
        check_mapped(&self.uid_map, "uid_map", uid, "uid")?;
        check_mapped(&self.gid_map, "gid_map", gid, "gid")?;
        for g in groups {
            check_mapped(&self.gid_map, "gid_map", *g, "supplementary group")?;
        }
        Ok(())
    }
}

/// The text of a `uid_map`/`gid_map` file: a line `container host size` each.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn id_map_text(map: &[IdMapping]) -> String {
    map.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
        .collect()
}

/// The maps of a `uid_map`/`gid_map` file (of a running jail).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn parse_id_map(text: &str) -> Vec<IdMapping> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|w| w.parse::<u32>());
            match (f.next(), f.next(), f.next()) {
                (Some(Ok(c)), Some(Ok(h)), Some(Ok(n))) => Some(IdMapping::new(c, h, n)),
                _ => None,
            }
        })
        .collect()
}

/// What a jail gets of a [`Namespace`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NamespaceMode {
    /// A new one of its own.
    New,
    /// The one of this file (`/proc/PID/ns/ipc`, a bind-mounted namespace), opened before
    /// the jail's first process is made and joined by it before any other set-up.
    Join(PathBuf),
    /// The host's (the caller's).
    Host,
}

/// The namespaces set with [`JailConfig::namespace`] (`None`: the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Namespaces {
    pub pid: Option<NamespaceMode>,
    pub ipc: Option<NamespaceMode>,
    pub uts: Option<NamespaceMode>,
    pub cgroup: Option<NamespaceMode>,
}

impl Namespaces {
    /// The mode of `ns`: the one set, else the default (new, but the host's cgroup
    /// namespace).
    pub fn mode(&self, ns: Namespace) -> NamespaceMode {
        let set = match ns {
            Namespace::Pid => &self.pid,
            Namespace::Ipc => &self.ipc,
            Namespace::Uts => &self.uts,
            Namespace::Cgroup => &self.cgroup,
        };
        match (set, ns) {
            (Some(m), _) => m.clone(),
            (None, Namespace::Cgroup) => NamespaceMode::Host,
            (None, _) => NamespaceMode::New,
        }
    }

    /// Whether any is set to other than its default.
    #[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
    pub fn changed(&self) -> bool {
        Namespace::ALL
            .iter()
            .any(|ns| self.mode(*ns) != Namespaces::default().mode(*ns))
    }

    fn set(&mut self, ns: Namespace, mode: NamespaceMode) {
        let slot = match ns {
            Namespace::Pid => &mut self.pid,
            Namespace::Ipc => &mut self.ipc,
            Namespace::Uts => &mut self.uts,
            Namespace::Cgroup => &mut self.cgroup,
        };
        *slot = Some(mode);
    }
}

/// Where a standard stream of a jailed process goes.
#[derive(Debug, Clone, Default)]
pub enum Stdio {
    /// The caller's own stream.
    #[default]
    Inherit,
    /// A pipe; the other end is in the returned process' `stdin`/`stdout`/`stderr`.
    Piped,
    /// `/dev/null` of the host.
    Null,
    /// A descriptor of the caller (a log file, a socket): duplicated for each start.
    Fd(Arc<OwnedFd>),
}

impl Stdio {
    /// Uses `fd` (e.g. a log file the engine opened).
    pub fn fd(fd: impl Into<OwnedFd>) -> Self {
        Stdio::Fd(Arc::new(fd.into()))
    }
}

/// The size of a pseudo-terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WinSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

impl Default for WinSize {
    fn default() -> Self {
        WinSize { rows: 24, cols: 80 }
    }
}

/// A process to run inside a jail: the jail's own command, or one started by
/// [`crate::Jail::exec`] like `jexec`.
#[derive(Debug, Clone, Default)]
pub struct ExecConfig {
    pub(crate) argv: Vec<OsString>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) clean_env: Option<bool>,
    pub(crate) exact_env: bool,
    pub(crate) user: Option<String>,
    pub(crate) workdir: Option<PathBuf>,
    pub(crate) stdin: Stdio,
    pub(crate) stdout: Stdio,
    pub(crate) stderr: Stdio,
    pub(crate) tty: Option<WinSize>,
    pub(crate) kill_with_owner: Option<bool>,
    pub(crate) capabilities: Option<Capabilities>,
    pub(crate) rlimits: Vec<(Rlimit, u64, u64)>,
    pub(crate) no_new_privileges: Option<bool>,
    pub(crate) oom_score_adj: Option<i32>,
    pub(crate) additional_gids: Option<Vec<u32>>,
    pub(crate) umask: Option<u32>,
    pub(crate) seccomp: Option<crate::SeccompProfile>,
    pub(crate) jail_terminal: bool,
}

impl ExecConfig {
    /// Runs `argv` (`argv[0]` is looked up in the process' `PATH` inside the jail unless it
    /// contains a `/`).
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        ExecConfig {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    /// Sets an environment variable (applied after the clean or inherited environment).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `true` (the default, like `exec.clean`): start from an environment with only `PATH`,
    /// `HOME`, `SHELL`, `USER`, `LOGNAME` and the caller's `TERM`; `false`: start from the
    /// caller's environment.
    pub fn clean_env(mut self, clean: bool) -> Self {
        self.clean_env = Some(clean);
        self
    }

    /// Exactly the variables given ([`ExecConfig::env`]), and `HOME` from the user's
    /// passwd entry when they do not set it: what an OCI runtime gives (runc's rule).
    /// The command is still looked up in the `PATH` given.
    pub fn exact_env(mut self, on: bool) -> Self {
        self.exact_env = on;
        self
    }

    /// How [`build_env`] starts this process's environment.
    pub(crate) fn env_mode(&self, clean: bool) -> EnvMode {
        if self.exact_env {
            EnvMode::Exact
        } else if clean {
            EnvMode::Clean
        } else {
            EnvMode::Inherit
        }
    }

    /// The user: a name or `uid[:gid]` (also `name:group`), resolved in the container's
    /// `/etc/passwd` and `/etc/group`. Default: root.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// The working directory inside the jail (default `/`); it must exist.
    pub fn workdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    /// Standard input (default: inherited).
    pub fn stdin(mut self, s: Stdio) -> Self {
        self.stdin = s;
        self
    }

    /// Standard output (default: inherited).
    pub fn stdout(mut self, s: Stdio) -> Self {
        self.stdout = s;
        self
    }

    /// Standard error (default: inherited).
    pub fn stderr(mut self, s: Stdio) -> Self {
        self.stderr = s;
        self
    }

    /// Runs the process on a new pseudo-terminal of this size, as its controlling terminal
    /// and all three standard streams (the `stdin`/`stdout`/`stderr` settings are then
    /// ignored); the master side is the process' `pty`.
    pub fn tty(mut self, size: WinSize) -> Self {
        self.tty = Some(size);
        self
    }

    /// Linux, with [`ExecConfig::tty`]: the terminal is made in the jail's own devpts (its
    /// `/dev/ptmx`, which the jail must have, as an OCI bundle's `/dev` has), as runc makes
    /// it, rather than on the host's: inside, the process's tty is `/dev/pts/N` of the
    /// jail. The master comes back in [`crate::Process::pty`] as ever. For a jail's first
    /// process it is also bound at `/dev/console`.
    pub fn jail_terminal(mut self, on: bool) -> Self {
        self.jail_terminal = on;
        self
    }

    /// `true` (the default): the process is killed (SIGKILL) when its owner, the process
    /// that called `start` or `exec`, dies, however it dies (`kill -9` included). For a
    /// jail's first process on Linux that is pid 1 of the jail's pid namespace, so the whole
    /// jail dies with it; a process started by `exec` dies alone (its children are orphaned
    /// to the jail's pid 1). `false`: it outlives its owner, for the daemonless mode; then
    /// [`crate::stop_processes_under`] is what finds and stops it if the owner never does.
    ///
    /// The owner is the calling *process*, not the calling thread: a jail started from a
    /// thread that then exits (such as one of tokio's blocking-pool threads) lives on.
    pub fn kill_with_owner(mut self, on: bool) -> Self {
        self.kill_with_owner = Some(on);
        self
    }

    /// Whether [`ExecConfig::kill_with_owner`] is on (the default) or off.
    pub(crate) fn dies_with_owner(&self) -> bool {
        self.kill_with_owner.unwrap_or(true)
    }

    /// Linux: the process's capabilities, in place of the default (Docker's set as the
    /// bounding set, effective and permitted; nothing inheritable or ambient). The bounding
    /// set is reduced to `bounding` before the user is switched (keeping the capabilities
    /// across it, as runc does), then the effective, permitted and inheritable sets are
    /// set and the `ambient` ones raised (each must be permitted and inheritable).
    /// Capabilities this kernel does not know are ignored. Refused on FreeBSD.
    ///
    /// `execve` then applies the kernel's rules: a non-root process keeps only its
    /// ambient capabilities as effective and permitted; root's become its bounding set
    /// (plus the inheritable ones).
    pub fn capabilities(mut self, caps: Capabilities) -> Self {
        self.capabilities = Some(caps);
        self
    }

    /// A resource limit, set before the process's user is switched: `soft` and `hard`,
    /// `u64::MAX` meaning unlimited. A later setting of the same resource wins. On FreeBSD
    /// the limits FreeBSD has are set; the others are refused.
    pub fn rlimit(mut self, resource: Rlimit, soft: u64, hard: u64) -> Self {
        self.rlimits.retain(|(r, _, _)| *r != resource);
        self.rlimits.push((resource, soft, hard));
        self
    }

    /// Whether `no_new_privs` is set (set-user-ID bits and file capabilities do nothing at
    /// `execve`, and it is inherited). Default: set for a user other than root, not for
    /// root. On FreeBSD `true` is `PROC_NO_NEW_PRIVS_CTL`.
    pub fn no_new_privileges(mut self, on: bool) -> Self {
        self.no_new_privileges = Some(on);
        self
    }

    /// Linux: the process's `oom_score_adj` (-1000 to 1000), written before it enters the
    /// jail's root (so inherited by what it starts). Refused on FreeBSD.
    pub fn oom_score_adj(mut self, adj: i32) -> Self {
        self.oom_score_adj = Some(adj);
        self
    }

    /// The supplementary groups (setgroups(2)) of a numeric user (`uid` or `uid:gid`, as an
    /// OCI bundle gives it): exactly these, as runc sets them (without this setting such a
    /// user's only group is its gid). A user given by name keeps the groups of the
    /// container's `/etc/group` and gets these too.
    pub fn additional_gids(mut self, gids: Vec<u32>) -> Self {
        self.additional_gids = Some(gids);
        self
    }

    /// The supplementary groups of a process whose user (as given, `spec`) resolved to
    /// `resolved` (its gid first, then those of `/etc/group`).
    pub(crate) fn groups(&self, spec: Option<&str>, resolved: &[u32]) -> Vec<u32> {
        let numeric = spec
            .unwrap_or("0")
            .split(':')
            .next()
            .is_some_and(|u| u.parse::<u32>().is_ok());
        match &self.additional_gids {
            None => resolved.to_vec(),
            Some(extra) if numeric => extra.clone(),
            Some(extra) => {
                let mut groups = resolved.to_vec();
                for g in extra {
                    if !groups.contains(g) {
                        groups.push(*g);
                    }
                }
                groups
            }
        }
    }

    /// The file mode creation mask of the process (default `0o022`).
    pub fn umask(mut self, umask: u32) -> Self {
        self.umask = Some(umask);
        self
    }

    /// Linux: filters the process's system calls with `profile` (for Docker's default,
    /// [`crate::SeccompProfile::docker_default`]). The profile's capability conditions are
    /// decided by the process's effective capabilities; it is compiled before the process
    /// starts (a profile that does not compile fails the start) and installed as runc
    /// does: just before `execve` with no_new_privs, else before the capabilities are
    /// lowered. Refused on FreeBSD.
    pub fn seccomp(mut self, profile: crate::SeccompProfile) -> Self {
        self.seccomp = Some(profile);
        self
    }

    /// Whether a setting beyond those FreeBSD maps (capabilities, `oom_score_adj`) is set:
    /// its name.
    #[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
    pub(crate) fn linux_only_setting(&self) -> Option<&'static str> {
        if self.capabilities.is_some() {
            Some("capabilities")
        } else if self.oom_score_adj.is_some() {
            Some("oom_score_adj")
        } else if self.seccomp.is_some() {
            Some("seccomp")
        } else {
            None
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err(Error::InvalidConfig("the command is empty".into()));
        }
        if let Some(adj) = self.oom_score_adj {
            if !(-1000..=1000).contains(&adj) {
                return Err(Error::InvalidConfig(format!(
                    "oom_score_adj {adj} is not in -1000..=1000"
                )));
            }
        }
        if let Some(umask) = self.umask {
            if umask > 0o777 {
                return Err(Error::InvalidConfig(format!(
                    "umask {umask:o} is not a file mode mask"
                )));
            }
        }
        for (r, soft, hard) in &self.rlimits {
            if soft > hard {
                return Err(Error::InvalidConfig(format!(
                    "{}: the soft limit {soft} is over the hard limit {hard}",
                    r.name()
                )));
            }
        }
        if let Some(w) = &self.workdir {
            if !w.is_absolute() {
                return Err(Error::InvalidConfig(format!(
                    "working directory {} is not absolute",
                    w.display()
                )));
            }
        }
        Ok(())
    }
}

/// A jail to start: its root, isolation settings, `-J` parameters and command.
///
/// Jail parameters take precedence over the typed settings, as in Kleene (`-J
/// exec.jail_user=x` wins over `user`, `-J host.hostname=h` over `hostname`).
#[derive(Debug, Clone)]
pub struct JailConfig {
    pub(crate) root: PathBuf,
    pub(crate) name: Option<String>,
    pub(crate) hostname: Option<String>,
    pub(crate) params: Vec<JailParam>,
    pub(crate) network: NetworkMode,
    pub(crate) devfs: bool,
    pub(crate) mounts: Vec<Mount>,
    pub(crate) init: bool,
    pub(crate) lifetime: Lifetime,
    pub(crate) process: ExecConfig,
    pub(crate) namespaces: Namespaces,
    pub(crate) standard_mounts: bool,
    pub(crate) root_propagation: Option<Propagation>,
    pub(crate) readonly_root: bool,
    pub(crate) masked_paths: Vec<PathBuf>,
    pub(crate) readonly_paths: Vec<PathBuf>,
    pub(crate) sysctls: Vec<(String, String)>,
    pub(crate) devices: Vec<DeviceNode>,
    pub(crate) hold: Option<PathBuf>,
    pub(crate) resources: crate::Resources,
    pub(crate) resource_group: Option<crate::ResourceGroup>,
    pub(crate) user_namespace: Option<UserNamespace>,
    pub(crate) idmapped_root: bool,
}

/// When a jail ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Lifetime {
    /// With its command, as a Docker container does (the default).
    #[default]
    Command,
    /// With its last process, as a FreeBSD jail without `persist` does (Kleene's model):
    /// processes the command leaves behind (daemons started by `/etc/rc`) and processes
    /// started with `exec` keep it running after the command ends. With the jail parameter
    /// `persist` it runs with no process at all until it is stopped. On Linux the jail's
    /// pid 1 is then a reaping init that waits for all of them ([`JailConfig::init`] is
    /// implied).
    Processes,
}

impl JailConfig {
    /// A jail rooted at `root` (a directory of the host, e.g. a ZFS clone's mountpoint).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        JailConfig {
            root: root.into(),
            name: None,
            hostname: None,
            params: Vec::new(),
            network: NetworkMode::Inherit,
            devfs: true,
            mounts: Vec::new(),
            init: false,
            lifetime: Lifetime::Command,
            process: ExecConfig::default(),
            namespaces: Namespaces::default(),
            standard_mounts: true,
            root_propagation: None,
            readonly_root: false,
            masked_paths: Vec::new(),
            readonly_paths: Vec::new(),
            sysctls: Vec::new(),
            devices: Vec::new(),
            hold: None,
            resources: crate::Resources::default(),
            resource_group: None,
            user_namespace: None,
            idmapped_root: false,
        }
    }

    /// The jail's name (FreeBSD `name=`; on Linux kept for the caller only).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The host name inside the jail (default: the name, else `kleene`).
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// Adds a jail parameter (see [`JailParam::parse`]).
    pub fn param(mut self, param: JailParam) -> Self {
        self.params.push(param);
        self
    }

    /// Adds jail parameters.
    pub fn params(mut self, params: impl IntoIterator<Item = JailParam>) -> Self {
        self.params.extend(params);
        self
    }

    /// The network (default [`NetworkMode::Inherit`]).
    pub fn network(mut self, mode: NetworkMode) -> Self {
        self.network = mode;
        self
    }

    /// Whether the jail gets a `/dev` (default true; like `mount.devfs`).
    pub fn devfs(mut self, on: bool) -> Self {
        self.devfs = on;
        self
    }

    /// Adds a bind (nullfs) mount.
    pub fn mount(mut self, mount: Mount) -> Self {
        self.mounts.push(mount);
        self
    }

    /// Linux: run a minimal init as pid 1 that starts the command as pid 2, reaps every
    /// orphan in the jail and forwards signals (like `docker run --init`). Default false: the
    /// command itself is pid 1. FreeBSD jails have no pid 1; the setting has no effect there.
    pub fn init(mut self, on: bool) -> Self {
        self.init = on;
        self
    }

    /// When the jail ends (default [`Lifetime::Command`]). See [`crate::Jail::wait_command`]
    /// and [`crate::Jail::wait`].
    pub fn lifetime(mut self, lifetime: Lifetime) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The command and its arguments.
    pub fn command<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.process.argv = argv.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the whole process description at once.
    pub fn process(mut self, process: ExecConfig) -> Self {
        self.process = process;
        self
    }

    /// See [`ExecConfig::env`].
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.process = self.process.env(key, value);
        self
    }

    /// See [`ExecConfig::clean_env`] (also `exec.clean`).
    pub fn clean_env(mut self, clean: bool) -> Self {
        self.process = self.process.clean_env(clean);
        self
    }

    /// See [`ExecConfig::user`] (also `exec.jail_user`).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.process = self.process.user(user);
        self
    }

    /// See [`ExecConfig::workdir`].
    pub fn workdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.process = self.process.workdir(dir);
        self
    }

    /// See [`ExecConfig::stdin`].
    pub fn stdin(mut self, s: Stdio) -> Self {
        self.process = self.process.stdin(s);
        self
    }

    /// See [`ExecConfig::stdout`].
    pub fn stdout(mut self, s: Stdio) -> Self {
        self.process = self.process.stdout(s);
        self
    }

    /// See [`ExecConfig::stderr`].
    pub fn stderr(mut self, s: Stdio) -> Self {
        self.process = self.process.stderr(s);
        self
    }

    /// See [`ExecConfig::tty`].
    pub fn tty(mut self, size: WinSize) -> Self {
        self.process = self.process.tty(size);
        self
    }

    /// Whether the jail dies with its owner, the process that calls [`JailConfig::start`]
    /// (default `true`); see [`ExecConfig::kill_with_owner`]. On Linux the first process is
    /// pid 1 of the jail's pid namespace, so with it every process of the jail dies. On
    /// FreeBSD the first process dies; what it started stays in the jail until the jail is
    /// removed ([`crate::Jail::stop`], or [`crate::stop_processes_under`] after a crash).
    pub fn kill_with_owner(mut self, on: bool) -> Self {
        self.process = self.process.kill_with_owner(on);
        self
    }

    /// Linux: what the jail gets of namespace `ns` (defaults: new pid, ipc and uts
    /// namespaces, the host's cgroup namespace; the mount namespace is always new and the
    /// network is [`JailConfig::network`]). The `allow.sysvipc` parameter, when given, wins
    /// for the ipc namespace (true: the host's, false: a new one).
    ///
    /// - [`NamespaceMode::Join`] of the pid namespace: the jail's first process is forked
    ///   in it after joining (it is not that namespace's pid 1; what it orphans goes to
    ///   that namespace's init), a child of the caller as usual.
    /// - [`NamespaceMode::Host`] of the pid namespace: the command is not pid 1 and sees
    ///   the host's processes; `kill_all` and a dying owner kill the first process only.
    /// - Without a new pid namespace, [`JailConfig::init`] makes the init a child
    ///   subreaper (it still reaps what the command orphans), and
    ///   [`Lifetime::Processes`] is refused (its init counts the processes of its pid
    ///   namespace).
    /// - Without a new uts namespace the host name is left alone: setting one
    ///   ([`JailConfig::hostname`], `host.hostname`) is refused.
    ///
    /// FreeBSD refuses anything but the defaults.
    pub fn namespace(mut self, ns: Namespace, mode: NamespaceMode) -> Self {
        self.namespaces.set(ns, mode);
        self
    }

    /// `true` (the default): the jail gets the crate's own `/proc` and (with
    /// [`JailConfig::devfs`]) minimal `/dev`, mounted after the configured mounts. `false`
    /// (for an OCI bundle): only the configured mounts are made, in their order, inside the
    /// root before it is entered, each mount point created when missing (also inside a
    /// file system mounted before, such as `/dev/pts` in a tmpfs at `/dev`). A `tmpfs` at
    /// `/dev` is then filled as runc does: the device nodes `null`, `zero`, `full`,
    /// `random`, `urandom` and `tty`, the links `ptmx` (to `pts/ptmx`), `fd`, `stdin`,
    /// `stdout` and `stderr` (to `/proc/self/fd`), and `console` (the terminal, bound
    /// there) when the process has one. [`JailConfig::devfs`] and `mount.devfs` then have
    /// no effect. A target inside an earlier mount is resolved inside the root when the
    /// jail's first process makes it (a symlink there cannot lead out); the others are
    /// checked before, and one whose path leads out of the root is an error naming the
    /// mount. Linux only: FreeBSD refuses `false`.
    pub fn standard_mounts(mut self, on: bool) -> Self {
        self.standard_mounts = on;
        self
    }

    /// Linux: the propagation of the jail's root once entered (default: private, as every
    /// mount of the jail is). The host's mount table never changes: the jail's mounts are
    /// made private first, or slaves of the host's for the `Slave` and `Shared` variants
    /// (so the host's later mounts reach the jail); `Shared` then makes them a peer group of
    /// the jail's own. Refused on FreeBSD.
    pub fn root_propagation(mut self, propagation: Propagation) -> Self {
        self.root_propagation = Some(propagation);
        self
    }

    /// Linux: remounts the jail's root read-only once every mount is made (the mounts on
    /// it keep their own flags). Default false. Refused on FreeBSD.
    pub fn readonly_root(mut self, on: bool) -> Self {
        self.readonly_root = on;
        self
    }

    /// Linux: hides `path` in the jail once its mounts are made: a file is covered by
    /// `/dev/null`, a directory by an empty read-only tmpfs; a missing path is ignored (as
    /// runc does). A file needs `/proc` in the jail. Refused on FreeBSD.
    pub fn masked_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.masked_paths.push(path.into());
        self
    }

    /// Linux: makes `path` read-only in the jail once its mounts are made (bound onto
    /// itself and remounted read-only); a missing path is ignored. Refused on FreeBSD.
    pub fn readonly_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.readonly_paths.push(path.into());
        self
    }

    /// Linux: writes `value` to `/proc/sys/<key, its dots as slashes>` in the jail's
    /// namespaces before its command runs (after its mounts, before the read-only paths:
    /// the jail needs `/proc`). Whether the key is one of the jail's own namespaces (an ipc
    /// or network one) is the caller's to check; a failure names the key. Refused on
    /// FreeBSD.
    pub fn sysctl(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.sysctls.push((key.into(), value.into()));
        self
    }

    /// Resource limits ([`crate::Resources`]: memory, CPU, cpuset, processes); they
    /// need a [`JailConfig::resource_group`].
    pub fn resources(mut self, limits: crate::Resources) -> Self {
        self.resources = limits;
        self
    }

    /// The jail's resource group ([`crate::ResourceGroup::plan`]): its processes are
    /// counted there and limited by [`JailConfig::resources`]. On Linux the cgroup is made
    /// at start (the first process joins it before anything else) and removed with the
    /// jail; on FreeBSD the jail's RCTL rules are added at start and removed with it.
    pub fn resource_group(mut self, group: crate::ResourceGroup) -> Self {
        self.resource_group = Some(group);
        self
    }

    /// Holds the command just before `execve` until [`crate::release`] is called on
    /// `gate`, a FIFO the caller made (outside the root). Everything else is set up first
    /// (mounts, user, capabilities, limits, working directory, the command found), so
    /// [`JailConfig::start`] still returns those failures; it returns once the process is
    /// held. With [`JailConfig::init`] the command is held, not the init.
    ///
    /// Linux: the process opens the FIFO for writing through `/proc/self/fd` (so the jail
    /// needs `/proc`), as the jail's user: the FIFO must be writable by that user (runc
    /// makes its own `0622`); both are checked before `start` returns. FreeBSD: the FIFO
    /// is opened (read-write, which does not block there) before the fork, the process
    /// blocks reading one byte from it after `jail_attach` and its other set-up, and
    /// [`crate::release`] writes that byte. With `kill_with_owner(false)` the held process
    /// outlives the caller.
    pub fn hold(mut self, gate: impl Into<PathBuf>) -> Self {
        self.hold = Some(gate.into());
        self
    }

    /// Linux: the jail gets a user namespace of its own with these maps, so that its root
    /// (and every id in it) is an unprivileged id of the host: with `[IdMapping::new(0,
    /// 100000, 65536)]` container root is host uid 100000, and host files owned by ids
    /// that are not mapped (host root's) appear owned by `nobody` (65534) and are only
    /// as accessible as their "other" permission bits say.
    ///
    /// The maps must not be empty, have at most [`MAX_ID_MAPPINGS`] lines each, no range
    /// past `u32::MAX` and no two ranges overlapping (on either side); the jail's user (its
    /// uid, gid and supplementary groups) must be mapped. `start` refuses anything else,
    /// naming the id. The maps are written by the caller (root in the host's user
    /// namespace), so `setgroups` stays allowed in the jail.
    ///
    /// The first process joins the resource group, the network namespace and the joined
    /// namespaces (all owned by the host's user namespace) first, then makes the user
    /// namespace, and the other new namespaces after it (so they belong to it: the jail's
    /// root can mount `/proc`, set its host name, bring up its `lo`). Device nodes cannot
    /// be made in a user namespace: `/dev` gets the host's `null`, `zero`, `full`,
    /// `random`, `urandom` and `tty` bound onto empty files (as rootless runc does). A
    /// `sysfs` mount ([`Mount::filesystem`]) needs a network namespace of the jail's own
    /// ([`NetworkMode::Disabled`]); with the host's or a joined one it is a read-only
    /// recursive bind of the host's `/sys` instead, as runc does. The root and the mount
    /// sources must be reachable (every directory of their paths searchable) by the host
    /// id of the jail's root. Processes started by [`crate::Jail::exec`] join the user
    /// namespace too, their user given in container ids. Refused on FreeBSD.
    pub fn user_namespace(mut self, uid_map: Vec<IdMapping>, gid_map: Vec<IdMapping>) -> Self {
        self.user_namespace = Some(UserNamespace { uid_map, gid_map });
        self
    }

    /// Linux, with a [`JailConfig::user_namespace`]: the jail's root is an idmapped mount
    /// of the root directory (see [`Mount::idmapped`]): its files, owned by host ids,
    /// appear owned by the same ids in the jail (host root's files are container root's,
    /// which can write them), and what the jail writes is stored with its container ids.
    /// The parent makes it (`open_tree(2)`, `mount_setattr(2)` with the jail's user
    /// namespace, once it exists) and hands it to the jail's first process, which moves it
    /// onto the root (`move_mount(2)`). A root on a file system that does not support
    /// idmapped mounts makes `start` fail with [`Error::IdmappedMountUnsupported`]: no
    /// fallback. Default false. Refused on FreeBSD and without a user namespace.
    pub fn idmapped_root(mut self, on: bool) -> Self {
        self.idmapped_root = on;
        self
    }

    /// See [`ExecConfig::capabilities`].
    pub fn capabilities(mut self, caps: Capabilities) -> Self {
        self.process = self.process.capabilities(caps);
        self
    }

    /// See [`ExecConfig::rlimit`].
    pub fn rlimit(mut self, resource: Rlimit, soft: u64, hard: u64) -> Self {
        self.process = self.process.rlimit(resource, soft, hard);
        self
    }

    /// See [`ExecConfig::no_new_privileges`].
    pub fn no_new_privileges(mut self, on: bool) -> Self {
        self.process = self.process.no_new_privileges(on);
        self
    }

    /// See [`ExecConfig::oom_score_adj`].
    pub fn oom_score_adj(mut self, adj: i32) -> Self {
        self.process = self.process.oom_score_adj(adj);
        self
    }

    /// See [`ExecConfig::additional_gids`].
    pub fn additional_gids(mut self, gids: Vec<u32>) -> Self {
        self.process = self.process.additional_gids(gids);
        self
    }

    /// See [`ExecConfig::umask`].
    pub fn umask(mut self, umask: u32) -> Self {
        self.process = self.process.umask(umask);
        self
    }

    /// Linux: makes device node `node` in the jail (config.json's `linux.devices`), after
    /// the mounts (so in a `/dev` tmpfs), its directory made inside the root when missing.
    /// Whether the jail may open it is the device cgroup's say
    /// ([`crate::Resources::devices`]). Refused with a user namespace (no `mknod` there)
    /// and on FreeBSD (devfs rulesets decide).
    pub fn device(mut self, node: DeviceNode) -> Self {
        self.devices.push(node);
        self
    }

    /// See [`ExecConfig::seccomp`].
    pub fn seccomp(mut self, profile: crate::SeccompProfile) -> Self {
        self.process = self.process.seccomp(profile);
        self
    }

    /// The root directory.
    pub fn root_path(&self) -> &Path {
        &self.root
    }

    /// The first setting FreeBSD does not have, by name, if any is set.
    #[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
    pub(crate) fn linux_only_setting(&self) -> Option<&'static str> {
        if self.namespaces.changed() {
            Some("namespace")
        } else if !self.standard_mounts {
            Some("standard_mounts(false)")
        } else if self.root_propagation.is_some() {
            Some("root_propagation")
        } else if self.readonly_root {
            Some("readonly_root")
        } else if !self.masked_paths.is_empty() {
            Some("masked_path")
        } else if !self.readonly_paths.is_empty() {
            Some("readonly_path")
        } else if !self.sysctls.is_empty() {
            Some("sysctl")
        } else if !self.devices.is_empty() {
            Some("device")
        } else if self.user_namespace.is_some() {
            Some("user_namespace")
        } else if self.idmapped_root {
            Some("idmapped_root")
        } else if self.mounts.iter().any(Mount::beyond_nullfs) {
            Some("a mount other than a bind mount with read_only")
        } else {
            self.process.linux_only_setting()
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.process.validate()?;
        for d in &self.devices {
            let bad = |why: &str| {
                Err(Error::InvalidConfig(format!(
                    "device {}: {why}",
                    d.path.display()
                )))
            };
            if !d.path.is_absolute()
                || d.path
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
                || d.path.file_name().is_none()
            {
                return bad("the path must be absolute, without ..");
            }
            if !matches!(d.kind, 'c' | 'b' | 'p') {
                return bad("the type is c, b or p");
            }
            if d.mode > 0o7777 {
                return bad("the mode is a permission mask");
            }
        }
        if !self.root.is_absolute() {
            return Err(Error::InvalidConfig(format!(
                "root {} is not absolute",
                self.root.display()
            )));
        }
        if !self.root.is_dir() {
            return Err(Error::RootNotFound {
                path: self.root.clone(),
            });
        }
        for m in &self.mounts {
            if !m.target.is_absolute() {
                return Err(Error::InvalidConfig(format!(
                    "mount target {} is not absolute",
                    m.target.display()
                )));
            }
            if m.target
                .components()
                .any(|c| c == std::path::Component::ParentDir)
            {
                return Err(Error::InvalidConfig(format!(
                    "mount target {} contains ..",
                    m.target.display()
                )));
            }
            if !m
                .target
                .components()
                .any(|c| matches!(c, std::path::Component::Normal(_)))
            {
                return Err(Error::InvalidConfig(format!(
                    "mount target {} is the jail's root",
                    m.target.display()
                )));
            }
            match &m.fstype {
                None => {
                    check_bind_target(&m.target)?;
                    if !m.source.exists() {
                        return Err(Error::InvalidConfig(format!(
                            "mount source {} does not exist",
                            m.source.display()
                        )));
                    }
                    if !m.data.is_empty() {
                        return Err(Error::InvalidConfig(format!(
                            "the bind mount at {} has file system options ({})",
                            m.target.display(),
                            m.data
                        )));
                    }
                }
                Some(t) if !MOUNT_FILESYSTEMS.contains(&t.as_str()) => {
                    return Err(Error::InvalidConfig(format!(
                        "file system {t:?} at {} is not one of {}",
                        m.target.display(),
                        MOUNT_FILESYSTEMS.join(", ")
                    )));
                }
                Some(_) => {}
            }
        }
        for (what, paths) in [
            ("masked path", &self.masked_paths),
            ("read-only path", &self.readonly_paths),
        ] {
            for p in paths {
                if !p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir)
                {
                    return Err(Error::InvalidConfig(format!(
                        "{what} {} is not absolute or contains ..",
                        p.display()
                    )));
                }
            }
        }
        for (key, _) in &self.sysctls {
            sysctl_path(key)?;
        }
        self.validate_user_namespace()
    }

    /// Checks the user namespace's maps, and that idmapped mounts have one.
    fn validate_user_namespace(&self) -> Result<()> {
        match &self.user_namespace {
            Some(u) => {
                check_id_map(&u.uid_map, "uid_map")?;
                check_id_map(&u.gid_map, "gid_map")?;
            }
            None if self.idmapped_root => {
                return Err(Error::InvalidConfig(
                    "idmapped_root needs a user_namespace (its maps are the mount's)".into(),
                ))
            }
            None => {}
        }
        for m in &self.mounts {
            if m.idmapped && (self.user_namespace.is_none() || m.fstype.is_some()) {
                return Err(Error::InvalidConfig(format!(
                    "the idmapped mount at {} needs a user_namespace and must be a bind mount",
                    m.target.display()
                )));
            }
        }
        Ok(())
    }
}

/// The file of sysctl `key` below `/proc/sys` (`kernel.shmmax`: `kernel/shmmax`).
pub(crate) fn sysctl_path(key: &str) -> Result<String> {
    let path = key.replace('.', "/");
    if key.is_empty()
        || key.contains('\0')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(Error::InvalidConfig(format!(
            "sysctl {key:?} is not a sysctl name"
        )));
    }
    Ok(path)
}

pub(crate) fn cstr(bytes: &[u8], what: &str) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::InvalidConfig(format!("{what} contains a NUL byte")))
}

/// Where a process's environment starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvMode {
    /// `PATH`, `HOME`, `SHELL`, `USER`, `LOGNAME` and the caller's `TERM` (`exec.clean`).
    Clean,
    /// The caller's environment.
    Inherit,
    /// Nothing but `HOME` when the given variables lack it (an OCI runtime's).
    Exact,
}

/// The environment of a jailed process, as `KEY=VALUE` strings.
pub(crate) fn build_env(
    mode: EnvMode,
    given: &[(String, String)],
    user: &ResolvedUser,
    host: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<CString>> {
    let mut vars: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    fn set(vars: &mut Vec<(Vec<u8>, Vec<u8>)>, k: &[u8], v: &[u8]) {
        match vars.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.to_vec(),
            None => vars.push((k.to_vec(), v.to_vec())),
        }
    }
    let host: Vec<(OsString, OsString)> = host.into_iter().collect();
    if mode == EnvMode::Exact {
        if !given.iter().any(|(k, _)| k == "HOME") {
            set(&mut vars, b"HOME", user.home.as_bytes());
        }
    } else if mode == EnvMode::Clean {
        set(&mut vars, b"PATH", DEFAULT_PATH.as_bytes());
        set(&mut vars, b"HOME", user.home.as_bytes());
        set(&mut vars, b"SHELL", user.shell.as_bytes());
        if let Some(name) = &user.name {
            set(&mut vars, b"USER", name.as_bytes());
            set(&mut vars, b"LOGNAME", name.as_bytes());
        }
        if let Some((_, term)) = host.iter().find(|(k, _)| k == "TERM") {
            set(&mut vars, b"TERM", term.as_bytes());
        }
    } else {
        for (k, v) in &host {
            set(&mut vars, k.as_bytes(), v.as_bytes());
        }
    }
    for (k, v) in given {
        if k.is_empty() || k.contains('=') {
            return Err(Error::InvalidConfig(format!(
                "environment variable name {k:?} is empty or contains '='"
            )));
        }
        set(&mut vars, k.as_bytes(), v.as_bytes());
    }
    vars.into_iter()
        .map(|(mut k, v)| {
            k.push(b'=');
            k.extend_from_slice(&v);
            cstr(&k, "an environment variable")
        })
        .collect()
}

/// The paths execve is tried on, in order, like execvp(3) with the process' own `PATH`.
pub(crate) fn exec_candidates(argv0: &OsStr, env: &[CString]) -> Result<Vec<CString>> {
    let name = argv0.as_bytes();
    if name.contains(&b'/') {
        return Ok(vec![cstr(name, "the command")?]);
    }
    let path = env
        .iter()
        .find_map(|kv| kv.as_bytes().strip_prefix(b"PATH="))
        .unwrap_or(DEFAULT_PATH.as_bytes());
    path.split(|b| *b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { b"." as &[u8] } else { dir };
            let mut full = dir.to_vec();
            if !full.ends_with(b"/") {
                full.push(b'/');
            }
            full.extend_from_slice(name);
            cstr(&full, "the command")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn alice() -> ResolvedUser {
        ResolvedUser {
            name: Some("alice".into()),
            uid: 1,
            gid: 1,
            groups: vec![1],
            home: "/home/alice".into(),
            shell: "/bin/ash".into(),
        }
    }

    fn host() -> Vec<(OsString, OsString)> {
        vec![
            ("SECRET".into(), "x".into()),
            ("TERM".into(), "xterm".into()),
            ("PATH".into(), "/host/bin".into()),
        ]
    }

    fn strings(v: Vec<CString>) -> Vec<String> {
        v.into_iter().map(|c| c.into_string().unwrap()).collect()
    }

    #[test]
    fn clean_env_keeps_only_the_login_variables() {
        let env = strings(
            build_env(
                EnvMode::Clean,
                &[("A".into(), "b".into())],
                &alice(),
                host(),
            )
            .unwrap(),
        );
        assert_eq!(
            env,
            vec![
                format!("PATH={DEFAULT_PATH}"),
                "HOME=/home/alice".into(),
                "SHELL=/bin/ash".into(),
                "USER=alice".into(),
                "LOGNAME=alice".into(),
                "TERM=xterm".into(),
                "A=b".into(),
            ]
        );
    }

    #[test]
    fn exact_env_is_the_given_and_home() {
        let env = strings(
            build_env(
                EnvMode::Exact,
                &[("A".into(), "b".into())],
                &alice(),
                host(),
            )
            .unwrap(),
        );
        assert_eq!(env, ["HOME=/home/alice", "A=b"]);
        let env = strings(
            build_env(
                EnvMode::Exact,
                &[("HOME".into(), "/x".into())],
                &alice(),
                host(),
            )
            .unwrap(),
        );
        assert_eq!(env, ["HOME=/x"]);
    }

    #[test]
    fn unclean_env_is_the_callers_plus_given() {
        let env = strings(
            build_env(
                EnvMode::Inherit,
                &[("PATH".into(), "/mine".into())],
                &alice(),
                host(),
            )
            .unwrap(),
        );
        assert_eq!(env, vec!["SECRET=x", "TERM=xterm", "PATH=/mine"]);
    }

    #[test]
    fn bad_variables_are_refused() {
        assert!(build_env(
            EnvMode::Clean,
            &[("A=B".into(), "c".into())],
            &alice(),
            host()
        )
        .is_err());
        assert!(build_env(
            EnvMode::Clean,
            &[("A".into(), "c\0".into())],
            &alice(),
            host()
        )
        .is_err());
        assert!(build_env(
            EnvMode::Clean,
            &[(String::new(), "c".into())],
            &alice(),
            host()
        )
        .is_err());
    }

    #[test]
    fn candidates_follow_path() {
        let env = vec![CString::new("PATH=/a:/b/::/c").unwrap()];
        let c = strings(exec_candidates(OsStr::new("ls"), &env).unwrap());
        assert_eq!(c, vec!["/a/ls", "/b/ls", "./ls", "/c/ls"]);
        let c = strings(exec_candidates(OsStr::new("./x"), &env).unwrap());
        assert_eq!(c, vec!["./x"]);
        let c = strings(exec_candidates(OsStr::new("sh"), &[]).unwrap());
        assert_eq!(c[1], "/bin/sh");
    }

    #[test]
    fn additional_groups() {
        let resolved = [5, 7];
        let plain = ExecConfig::new(["x"]);
        assert_eq!(plain.groups(Some("1:5"), &resolved), [5, 7]);
        let given = ExecConfig::new(["x"]).additional_gids(vec![7, 9]);
        assert_eq!(given.groups(Some("1:5"), &resolved), [7, 9]);
        assert_eq!(given.groups(Some("1"), &resolved), [7, 9]);
        assert_eq!(given.groups(None, &resolved), [7, 9]);
        assert_eq!(given.groups(Some("alice"), &resolved), [5, 7, 9]);
        let none = ExecConfig::new(["x"]).additional_gids(vec![]);
        assert!(none.groups(Some("0:0"), &[0]).is_empty());
    }

    #[test]
    fn id_maps() {
        let m = |c, h, n| IdMapping::new(c, h, n);
        check_id_map(&[m(0, 100000, 65536)], "uid_map").unwrap();
        check_id_map(&[m(0, 1000, 1), m(1, 100000, 65535)], "uid_map").unwrap();
        let err = |map: &[IdMapping]| check_id_map(map, "uid_map").unwrap_err().to_string();
        assert!(err(&[]).contains("uid_map is empty"));
        assert!(err(&vec![m(0, 0, 1); 341]).contains("more than 340"));
        assert!(err(&[m(0, 0, 0)]).contains("size 0"));
        assert!(err(&[m(u32::MAX - 1, 0, 2)]).contains("container ids"));
        assert!(err(&[m(0, u32::MAX, 1)]).contains("host ids"));
        let e = err(&[m(0, 100000, 10), m(5, 200000, 10)]);
        assert!(
            e.contains("container ids") && e.contains("overlap (at container id 5)"),
            "{e}"
        );
        let e = err(&[m(0, 100000, 10), m(100, 100009, 1)]);
        assert!(e.contains("host ids") && e.contains("100009"), "{e}");
        let u = UserNamespace {
            uid_map: vec![m(0, 100000, 1000)],
            gid_map: vec![m(0, 100000, 1000)],
        };
        u.check_user(0, 0, &[1, 999]).unwrap();
        assert!(u
            .check_user(1000, 0, &[])
            .unwrap_err()
            .to_string()
            .contains("uid 1000 of the jail's user is not mapped"));
        assert!(u
            .check_user(0, 0, &[5, 1000])
            .unwrap_err()
            .to_string()
            .contains("supplementary group 1000"));
        assert_eq!(
            parse_id_map(&id_map_text(&[m(0, 100000, 65536), m(70000, 1, 2)])),
            [m(0, 100000, 65536), m(70000, 1, 2)]
        );
        assert_eq!(
            parse_id_map("         0     100000      65536\n"),
            [m(0, 100000, 65536)]
        );
        // FreeBSD refuses them by name.
        let maps = vec![m(0, 100000, 65536)];
        let cfg = JailConfig::new("/r").user_namespace(maps.clone(), maps);
        assert_eq!(cfg.linux_only_setting(), Some("user_namespace"));
        assert_eq!(
            JailConfig::new("/r")
                .idmapped_root(true)
                .linux_only_setting(),
            Some("idmapped_root")
        );
        assert!(Mount::bind("/a", "/b").idmapped(true).beyond_nullfs());
    }

    #[test]
    fn validation() {
        let dir = tempfile::tempdir().unwrap();
        let ok = JailConfig::new(dir.path()).command(["true"]);
        ok.validate().unwrap();
        assert!(JailConfig::new(dir.path()).validate().is_err());
        assert!(matches!(
            JailConfig::new(dir.path().join("missing"))
                .command(["true"])
                .validate(),
            Err(Error::RootNotFound { .. })
        ));
        assert!(ok
            .clone()
            .mount(Mount::bind(dir.path(), "relative"))
            .validate()
            .is_err());
        assert!(ok
            .clone()
            .mount(Mount::bind(dir.path(), "/a/../../b"))
            .validate()
            .is_err());
        assert!(ok.clone().workdir("tmp").validate().is_err());
    }
}
