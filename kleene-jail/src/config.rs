//! What to run and how to isolate it: [`JailConfig`] for a new jail, [`ExecConfig`] for a
//! process started in a running one.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::params::JailParam;
use crate::passwd::ResolvedUser;

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
    /// `ip6.addr`, `vnet`, `vnet.interface`; kleene-net makes them). Refused on Linux.
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

/// A directory or file of the host made visible in the jail (a bind mount on Linux, nullfs
/// on FreeBSD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Path on the host.
    pub source: PathBuf,
    /// Absolute path inside the jail; created (as a directory, or an empty file when the
    /// source is a file) when missing.
    pub target: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

impl Mount {
    /// A read-write bind of `source` at `target` (absolute, inside the jail).
    pub fn bind(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        Mount {
            source: source.into(),
            target: target.into(),
            read_only: false,
        }
    }

    /// Makes the mount read-only.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
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
    pub(crate) user: Option<String>,
    pub(crate) workdir: Option<PathBuf>,
    pub(crate) stdin: Stdio,
    pub(crate) stdout: Stdio,
    pub(crate) stderr: Stdio,
    pub(crate) tty: Option<WinSize>,
    pub(crate) kill_with_owner: Option<bool>,
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

    pub(crate) fn validate(&self) -> Result<()> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err(Error::InvalidConfig("the command is empty".into()));
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

    /// The root directory.
    pub fn root_path(&self) -> &Path {
        &self.root
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.process.validate()?;
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
            if !m.source.exists() {
                return Err(Error::InvalidConfig(format!(
                    "mount source {} does not exist",
                    m.source.display()
                )));
            }
        }
        Ok(())
    }
}

pub(crate) fn cstr(bytes: &[u8], what: &str) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::InvalidConfig(format!("{what} contains a NUL byte")))
}

/// The environment of a jailed process, as `KEY=VALUE` strings.
pub(crate) fn build_env(
    clean: bool,
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
    if clean {
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
        let env = strings(build_env(true, &[("A".into(), "b".into())], &alice(), host()).unwrap());
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
    fn unclean_env_is_the_callers_plus_given() {
        let env = strings(
            build_env(false, &[("PATH".into(), "/mine".into())], &alice(), host()).unwrap(),
        );
        assert_eq!(env, vec!["SECRET=x", "TERM=xterm", "PATH=/mine"]);
    }

    #[test]
    fn bad_variables_are_refused() {
        assert!(build_env(true, &[("A=B".into(), "c".into())], &alice(), host()).is_err());
        assert!(build_env(true, &[("A".into(), "c\0".into())], &alice(), host()).is_err());
        assert!(build_env(true, &[(String::new(), "c".into())], &alice(), host()).is_err());
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
