//! A running jail and the handle that finds it again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::config::{ExecConfig, JailConfig, Lifetime};
use crate::error::{Error, Result};
use crate::process::{ExitStatus, Output, Process};
use crate::sys;

/// A jail's id: the jid on FreeBSD, the host pid of the jail's pid 1 on Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JailId(pub i32);

impl std::fmt::Display for JailId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What identifies a running jail across processes: persist these fields and rebuild the
/// handle with [`JailHandle::new`] to `exec` into the jail or signal it from another process
/// (the daemonless mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailHandle {
    /// The name given at start.
    pub name: Option<String>,
    /// The jail id.
    pub id: JailId,
    /// The host pid of the jail's first process (the command, or the init).
    pub pid: i32,
    /// The root directory on the host.
    pub root: PathBuf,
}

impl JailHandle {
    /// A handle from persisted fields. The caller vouches that `pid`/`id` still name this
    /// jail (on Linux `exec` checks that `pid` is in another mount namespace, as every
    /// jail's first process is).
    pub fn new(name: Option<String>, id: JailId, pid: i32, root: impl Into<PathBuf>) -> Self {
        JailHandle {
            name,
            id,
            pid,
            root: root.into(),
        }
    }

    /// Starts a process in the jail, like `jexec`. The returned process is a child of the
    /// calling process.
    pub async fn exec(&self, cfg: &ExecConfig) -> Result<Process> {
        sys::exec(self, None, cfg).await
    }

    /// Sends a signal to the jail's first process.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        sys::signal_handle(self, signal)
    }

    /// Sends a signal to every process of a jail of [`Lifetime::Processes`]: on Linux to
    /// its init, which passes it to all the others (and stops with them when it is
    /// SIGTERM, SIGINT, SIGQUIT or SIGHUP); on FreeBSD to each process in the jail. For a
    /// jail of [`Lifetime::Command`] on Linux it reaches the command (or its init).
    pub fn signal_all(&self, signal: Signal) -> Result<()> {
        sys::signal_all(self, signal)
    }

    /// Changes parameters of the running jail where the platform can: FreeBSD updates its
    /// kernel parameters with `jail_set(2)`; Linux takes only those read when used
    /// (`exec.stop`). Any other is refused by name ([`Error::UnsupportedParameter`]).
    pub fn update_params(&self, params: &[crate::JailParam]) -> Result<()> {
        sys::update_params(self, params)
    }

    /// Kills every process of the jail at once (Linux: SIGKILL to its pid 1, which takes
    /// the pid namespace with it; FreeBSD: `jail_remove(2)`).
    pub fn kill_all(&self) -> Result<()> {
        sys::kill_all(self)
    }

    /// Whether the jail is still running (Linux: its pid 1 lives; FreeBSD: the jail exists
    /// and is not dying).
    pub fn is_running(&self) -> bool {
        sys::is_running(self)
    }
}

/// How a jail's command ended, from [`Jail::wait_command`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandEnd {
    /// The command's status.
    pub status: ExitStatus,
    /// Whether the jail ended with it (always, with [`Lifetime::Command`]; with
    /// [`Lifetime::Processes`], when no other process remained and `persist` is off).
    pub jail_ended: bool,
}

/// A running jail, as [`JailConfig::start`] returns it: its first process (whose standard
/// streams are in [`Jail::process_mut`]) and what to tear down when it stops.
#[derive(Debug)]
pub struct Jail {
    handle: JailHandle,
    process: Process,
    state: sys::BackendState,
    stop_command: Option<String>,
    lifetime: Lifetime,
    command: Option<CommandEnd>,
    torn_down: bool,
    group: Option<crate::ResourceGroup>,
}

impl JailConfig {
    /// Starts the jail: isolates a process in the root and runs the command in it. Errors
    /// found before the command runs (a missing root, an unknown user, a failed mount, a
    /// missing command) are returned here.
    pub async fn start(&self) -> Result<Jail> {
        let stop_command = crate::params::stop_command(&self.params)?;
        crate::limits::check(&self.resources, self.resource_group.as_ref())?;
        let group = self.resource_group.clone();
        if let Some(g) = &group {
            g.create(&self.resources)?;
        }
        let (handle, process, state) = match sys::start(self).await {
            Ok(started) => started,
            Err(e) => {
                if let Some(g) = &group {
                    let _ = g.remove();
                }
                return Err(e);
            }
        };
        Ok(Jail {
            group,
            handle,
            process,
            state,
            stop_command,
            lifetime: self.lifetime,
            command: None,
            torn_down: false,
        })
    }
}

impl Jail {
    /// The host pid of the jail's first process.
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// The jail id.
    pub fn id(&self) -> JailId {
        self.handle.id
    }

    /// The name given at start.
    pub fn name(&self) -> Option<&str> {
        self.handle.name.as_deref()
    }

    /// The root directory on the host.
    pub fn root(&self) -> &Path {
        &self.handle.root
    }

    /// What to persist to find the jail again.
    pub fn handle(&self) -> &JailHandle {
        &self.handle
    }

    /// Its resource group, if it was given one.
    pub fn resource_group(&self) -> Option<&crate::ResourceGroup> {
        self.group.as_ref()
    }

    /// The jail's first process.
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// The jail's first process, to take its `stdin`/`stdout`/`stderr`/`pty`.
    pub fn process_mut(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Waits for the jail to end: with [`Lifetime::Command`] that is its command's end;
    /// with [`Lifetime::Processes`] the end of its last process. Returns the command's
    /// status. The jail's mounts go with it on Linux; call [`Jail::stop`] (or
    /// [`Jail::teardown`]) to remove a FreeBSD jail and its mounts.
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        let known = self.command.map(|c| c.status);
        sys::wait_jail(&mut self.process, &self.handle, self.lifetime, known).await
    }

    /// Waits for the jail's command (its first process) to end; with
    /// [`Lifetime::Processes`] the jail may run on (see [`CommandEnd::jail_ended`]).
    pub async fn wait_command(&mut self) -> Result<CommandEnd> {
        if let Some(c) = self.command {
            return Ok(c);
        }
        let end = sys::wait_command(&mut self.process, &self.handle, self.lifetime).await?;
        self.command = Some(end);
        Ok(end)
    }

    /// Waits for the command and collects what it wrote to piped stdout and stderr.
    pub async fn output(&mut self) -> Result<Output> {
        self.process.output().await
    }

    /// Sends a signal to the jail's first process.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        self.process.signal(signal)
    }

    /// Starts another process in the running jail, like `jexec`.
    pub async fn exec(&self, cfg: &ExecConfig) -> Result<Process> {
        if self.torn_down {
            return Err(Error::NotRunning);
        }
        sys::exec(&self.handle, self.process.waiter.pidfd().ok(), cfg).await
    }

    /// Stops the jail: runs the `exec.stop` command in it if one was given (as root, with
    /// `/bin/sh -c`, for at most `timeout`), then SIGTERM (to every process of a jail of
    /// [`Lifetime::Processes`]), up to `timeout` for it to end, then SIGKILL; then tears
    /// down what was mounted for it. Returns how the command ended.
    ///
    /// On Linux, a command that is pid 1 and has no SIGTERM handler ignores SIGTERM (the
    /// kernel's rule for namespace inits), so it is killed after the timeout, as `docker
    /// stop` does; with [`JailConfig::init`] the init forwards SIGTERM to it.
    pub async fn stop(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if !self.torn_down && self.handle.is_running() {
            if let Some(cmd) = self.stop_command.clone() {
                let cfg = ExecConfig::new(["/bin/sh", "-c", cmd.as_str()])
                    .stdin(crate::Stdio::Null)
                    .stdout(crate::Stdio::Null)
                    .stderr(crate::Stdio::Null);
                if let Ok(mut p) = self.exec(&cfg).await {
                    if tokio::time::timeout(timeout, p.wait()).await.is_err() {
                        let _ = p.signal(Signal::SIGKILL);
                        let _ = p.wait().await;
                    }
                }
            }
            let _ = match self.lifetime {
                Lifetime::Command => self.process.signal(Signal::SIGTERM),
                Lifetime::Processes => self.handle.signal_all(Signal::SIGTERM),
            };
        }
        let status = match tokio::time::timeout(timeout, self.wait()).await {
            Ok(s) => s?,
            Err(_) => {
                let _ = self.handle.kill_all();
                let _ = self.process.signal(Signal::SIGKILL);
                self.wait().await?
            }
        };
        self.teardown().await?;
        Ok(status)
    }

    /// Removes what the jail left after its first process ended (FreeBSD: the jail and its
    /// mounts; both: its resource group). Idempotent.
    pub async fn teardown(&mut self) -> Result<()> {
        if !self.torn_down {
            sys::teardown(&mut self.state, &self.handle).await?;
            if let Some(g) = &self.group {
                g.remove()?;
            }
            self.torn_down = true;
        }
        Ok(())
    }
}
