//! The runtime's operations, as runc's commands do them: `create` sets a container up and
//! leaves its first process held before the user's program; `start` lets it go; `kill`,
//! `delete`, `state`, `list`, `ps` and `exec` act on what `create` recorded. Each runs in a
//! short-lived runtime process: the container's processes are children of the caller
//! (conmon, containerd's shim), which reaps them after the runtime has exited.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kleene_jail::{Jail, JailHandle, JailId, Signal};
use oci_spec::runtime::Process;

use crate::bundle::{self, Bundle};
use crate::error::{Error, Result};
use crate::hooks;
use crate::state::{self, Record, Status, Store, GATE};

/// What `create` (and `run`) take besides the bundle.
#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    /// Where to write the first process's host pid.
    pub pid_file: Option<PathBuf>,
    /// The unix socket to send the terminal's master end to, with `process.terminal`.
    pub console_socket: Option<PathBuf>,
}

/// What `exec` takes besides the process.
#[derive(Debug, Default, Clone)]
pub struct ExecOptions {
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// Return once the process runs, leaving it to the caller to reap.
    pub detach: bool,
}

/// A container as `list` shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    pub status: Status,
    pub record: Option<Record>,
}

/// How long `delete --force` and `kill` of a created container wait for the process to
/// end after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// The runtime over one state root.
#[derive(Debug, Clone)]
pub struct Runtime {
    store: Store,
}

impl Runtime {
    /// The runtime with its state under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Runtime> {
        Ok(Runtime {
            store: Store::open(root)?,
        })
    }

    /// Sets container `id` up from the bundle at `bundle_dir` and leaves its first
    /// process held before the user's program: its host pid. A bad bundle is refused
    /// before anything is made; a failure later removes what was made.
    pub async fn create(&self, id: &str, bundle_dir: &Path, opts: &CreateOptions) -> Result<i32> {
        let jail = self.create_jail(id, bundle_dir, opts).await?;
        Ok(jail.pid())
    }

    /// `create`, keeping the jail (its first process is this process's child).
    async fn create_jail(&self, id: &str, bundle_dir: &Path, opts: &CreateOptions) -> Result<Jail> {
        state::check_id(id)?;
        let bundle = bundle::load(bundle_dir)?;
        // FreeBSD: the jail named by the id, mapped (and refused) before anything is made.
        #[cfg(target_os = "freebsd")]
        let bundle = bundle.for_freebsd_jail(id)?;
        check_console(bundle.terminal, opts.console_socket.as_deref())?;
        let locked = self.store.create(id)?;
        match self.create_locked(&locked, bundle, opts).await {
            Ok(jail) => Ok(jail),
            Err(e) => {
                let _ = locked.remove();
                Err(e)
            }
        }
    }

    async fn create_locked(
        &self,
        locked: &state::Locked,
        bundle: Bundle,
        opts: &CreateOptions,
    ) -> Result<Jail> {
        let gate = locked.dir.join(GATE);
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &gate,
            // As runc's exec.fifo: the held process opens it as the container's user.
            rustix::fs::Mode::from_raw_mode(0o622),
        )
        .map_err(|e| Error::io(format!("making {}", gate.display()), e.into()))?;
        // The mode whatever the umask: a user namespace's root is "other" to the FIFO.
        rustix::fs::chmod(&gate, rustix::fs::Mode::from_raw_mode(0o622))
            .map_err(|e| Error::io(format!("making {}", gate.display()), e.into()))?;
        #[cfg_attr(target_os = "freebsd", allow(unused_mut))]
        let mut config = bundle.jail.clone().name(&locked.id).hold(&gate);
        // FreeBSD: the mapping ([`Bundle::for_freebsd_jail`]) set the jail's RCTL group and
        // limits; there is no cgroup to plan.
        #[cfg(not(target_os = "freebsd"))]
        let group = {
            let (parent, name) = crate::limits::cgroup_path(&bundle.linux, &locked.id)?;
            let group = kleene_jail::ResourceGroup::plan(&parent, &name)?;
            if let Some(g) = &group {
                config = config.resource_group(g.clone());
            }
            config = config.resources(bundle.resources.clone());
            group
        };
        let mut jail = config.start().await?;
        #[cfg(target_os = "freebsd")]
        let group = jail.resource_group().cloned();
        let pid = jail.pid();
        // From here on a failure must not leave the held process behind.
        let result = async {
            let (pid_start, _) = state::proc_stat(pid).ok_or_else(|| {
                Error::io(
                    format!("reading the state of process {pid}"),
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                )
            })?;
            if bundle.terminal {
                let socket = opts
                    .console_socket
                    .as_deref()
                    .expect("checked by check_console before");
                let pty = jail.process_mut().pty.take().ok_or_else(|| {
                    Error::io(
                        "the container's terminal",
                        std::io::Error::other("kleene-jail made none"),
                    )
                })?;
                let name = pty.name().unwrap_or_default();
                let master = pty.into_master();
                crate::console::send_master(socket, master.as_fd(), &name)?;
            }
            let record = Record {
                oci_version: bundle.oci_version.clone(),
                id: locked.id.clone(),
                bundle: bundle.dir.clone(),
                rootfs: bundle.rootfs.clone(),
                pid,
                pid_start,
                created: state::now_rfc3339(),
                annotations: bundle.annotations.clone(),
                hooks: Some(bundle.hooks.clone()),
                process: Some(bundle.process.clone()),
                resource_group: group.as_ref().map(|g| g.locator()),
                seccomp: bundle.seccomp.clone(),
                jid: cfg!(target_os = "freebsd").then(|| jail.id().0),
            };
            locked.write(&record)?;
            let st = state::oci_state(&locked.id, Status::Created, Some(&record));
            hooks::run(
                "prestart",
                bundle.hooks.prestart().as_deref().unwrap_or_default(),
                &st,
            )?;
            hooks::run(
                "createRuntime",
                bundle.hooks.create_runtime().as_deref().unwrap_or_default(),
                &st,
            )?;
            if let Some(p) = &opts.pid_file {
                write_pid_file(p, pid)?;
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Ok(jail),
            Err(e) => {
                let _ = jail.signal(Signal::SIGKILL);
                let _ = jail.wait().await;
                // FreeBSD: the jail and its mounts go too.
                #[cfg(target_os = "freebsd")]
                let _ = jail.teardown().await;
                if let Some(g) = jail.resource_group() {
                    let _ = g.remove();
                }
                Err(e)
            }
        }
    }

    /// Lets a created container's first process run its program.
    pub fn start(&self, id: &str) -> Result<()> {
        let locked = self.store.lock(id)?;
        let record = locked.record()?;
        let status = self.store.status(id, record.as_ref());
        let Some(record) = record.filter(|_| status == Status::Created) else {
            return Err(Error::State {
                id: id.to_string(),
                status: status.as_str(),
                reason: "only a created container can be started".into(),
            });
        };
        let gate = locked.dir.join(GATE);
        kleene_jail::release(&gate)?;
        std::fs::remove_file(&gate)
            .map_err(|e| Error::io(format!("removing {}", gate.display()), e))?;
        let st = state::oci_state(id, Status::Running, Some(&record));
        if let Some(h) = record.hooks.as_ref().and_then(|h| h.poststart().clone()) {
            // The spec: a failing poststart hook is logged; the container runs on.
            if let Err(e) = hooks::run("poststart", &h, &st) {
                eprintln!("warning: {e}");
            }
        }
        Ok(())
    }

    /// The spec's state of container `id`.
    pub fn state(&self, id: &str) -> Result<serde_json::Value> {
        let record = self.store.record(id)?;
        let status = self.store.status(id, record.as_ref());
        Ok(state::oci_state(id, status, record.as_ref()))
    }

    /// Sends `signal` to the container's first process (with `all`, to every process of
    /// its pid namespace).
    pub fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<()> {
        let record = self.store.record(id)?;
        let status = self.store.status(id, record.as_ref());
        let record = match record {
            Some(r) if matches!(status, Status::Created | Status::Running | Status::Paused) => r,
            _ => {
                return Err(Error::State {
                    id: id.to_string(),
                    status: status.as_str(),
                    reason: "there is no process to signal".into(),
                })
            }
        };
        // As runc: a paused container is thawed for SIGKILL, which a frozen task never
        // receives.
        let thaw = status == Status::Paused && signal == Signal::SIGKILL;
        let pids = if all {
            processes(&record)
        } else {
            vec![record.pid]
        };
        for pid in pids {
            match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("signalling process {pid} of container {id}"),
                        e.into(),
                    ))
                }
            }
        }
        if thaw {
            self.freeze(id, &record, false)?;
        }
        Ok(())
    }

    /// Pauses (`true`: every process frozen) or resumes a container.
    pub fn pause(&self, id: &str, pause: bool) -> Result<()> {
        let locked = self.store.lock(id)?;
        let record = locked.record()?;
        let status = self.store.status(id, record.as_ref());
        if cfg!(target_os = "freebsd") {
            return Err(Error::State {
                id: id.to_string(),
                status: status.as_str(),
                reason: format!(
                    "{} is not supported on FreeBSD (no freezer for a jail's processes)",
                    if pause { "pause" } else { "resume" }
                ),
            });
        }
        let want = if pause {
            Status::Running
        } else {
            Status::Paused
        };
        match record {
            Some(r) if status == want => self.freeze(id, &r, pause),
            _ => Err(Error::State {
                id: id.to_string(),
                status: status.as_str(),
                reason: if pause {
                    "only a running container can be paused".into()
                } else {
                    "only a paused container can be resumed".into()
                },
            }),
        }
    }

    fn freeze(&self, id: &str, record: &Record, frozen: bool) -> Result<()> {
        let Some(locator) = record.resource_group.as_deref() else {
            return Err(Error::State {
                id: id.to_string(),
                status: "running",
                reason: "it has no cgroup (the host mounts no cgroup hierarchy)".into(),
            });
        };
        Ok(kleene_jail::ResourceGroup::from_locator(locator)?.freeze(frozen)?)
    }

    /// Removes a container: a stopped or created one always, a running one with `force`
    /// (killed first). Runs the poststop hooks.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let locked = self.store.lock(id)?;
        let record = locked.record()?;
        let status = self.store.status(id, record.as_ref());
        if matches!(status, Status::Running | Status::Paused) && !force {
            return Err(Error::State {
                id: id.to_string(),
                status: status.as_str(),
                reason: "stop it first, or delete it with --force".into(),
            });
        }
        if let Some(r) = &record {
            if matches!(status, Status::Created | Status::Running | Status::Paused) {
                for pid in processes(r) {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
                }
                if status == Status::Paused {
                    // Frozen tasks die once thawed.
                    self.freeze(id, r, false)?;
                }
                let deadline = Instant::now() + KILL_WAIT;
                while state::alive(r) {
                    if Instant::now() >= deadline {
                        return Err(Error::State {
                            id: id.to_string(),
                            status: status.as_str(),
                            reason: format!(
                                "process {} did not end within {} s of SIGKILL",
                                r.pid,
                                KILL_WAIT.as_secs()
                            ),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        #[cfg(target_os = "freebsd")]
        if let Some(r) = &record {
            remove_jail(r)?;
        }
        if let Some(locator) = record.as_ref().and_then(|r| r.resource_group.as_deref()) {
            // Kills what is left in it (processes the first one left behind).
            kleene_jail::ResourceGroup::from_locator(locator)?.remove()?;
        }
        locked.remove()?;
        if let Some(r) = &record {
            let st = state::oci_state(id, Status::Stopped, Some(r));
            if let Some(h) = r.hooks.as_ref().and_then(|h| h.poststop().clone()) {
                if let Err(e) = hooks::run("poststop", &h, &st) {
                    eprintln!("warning: {e}");
                }
            }
        }
        Ok(())
    }

    /// Every container of the root.
    pub fn list(&self) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        for id in self.store.ids()? {
            let record = self.store.record(&id).ok().flatten();
            let status = self.store.status(&id, record.as_ref());
            out.push(Listed { id, status, record });
        }
        Ok(out)
    }

    /// The host pids of the container's processes.
    pub fn ps(&self, id: &str) -> Result<Vec<i32>> {
        let record = self.store.record(id)?;
        let status = self.store.status(id, record.as_ref());
        match record {
            Some(r) if matches!(status, Status::Created | Status::Running | Status::Paused) => {
                Ok(processes(&r))
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Runs a process in a running container: with `detach` its pid once it runs, else
    /// its exit code when it ends.
    pub async fn exec(&self, id: &str, process: &Process, opts: &ExecOptions) -> Result<i32> {
        let (config, terminal) = bundle::process_config(process, "process")?;
        check_console(terminal, opts.console_socket.as_deref())?;
        let record = self.store.record(id)?;
        let status = self.store.status(id, record.as_ref());
        let record = match record {
            Some(r) if status == Status::Running => r,
            _ => {
                return Err(Error::State {
                    id: id.to_string(),
                    status: status.as_str(),
                    reason: "exec needs a running container".into(),
                })
            }
        };
        // The jail id: the first process's pid on Linux, the jail's jid on FreeBSD.
        let jail_id = if cfg!(target_os = "freebsd") {
            record.jid.ok_or_else(|| Error::State {
                id: id.to_string(),
                status: status.as_str(),
                reason: "its record has no jail id".into(),
            })?
        } else {
            record.pid
        };
        let handle = JailHandle::new(
            Some(id.to_string()),
            JailId(jail_id),
            record.pid,
            &record.rootfs,
        );
        let mut config = config.kill_with_owner(!opts.detach);
        if let Some(s) = &record.seccomp {
            let l = oci_spec::runtime::LinuxBuilder::default()
                .seccomp(s.clone())
                .build()
                .map_err(|e| Error::invalid("linux.seccomp", e.to_string()))?;
            if let Some(profile) = crate::limits::seccomp(&l)? {
                config = config.seccomp(profile);
            }
        }
        let mut p = handle.exec(&config).await?;
        let pid = p.pid();
        if let Some(path) = &opts.pid_file {
            write_pid_file(path, pid)?;
        }
        if terminal {
            if let Some(socket) = &opts.console_socket {
                let pty = p.pty.take().ok_or_else(|| {
                    Error::io(
                        "the process's terminal",
                        std::io::Error::other("kleene-jail made none"),
                    )
                })?;
                let name = pty.name().unwrap_or_default();
                crate::console::send_master(socket, pty.into_master().as_fd(), &name)?;
            }
        }
        if opts.detach {
            return Ok(pid);
        }
        let status = p.wait().await?;
        Ok(status.shell_code())
    }

    /// `run`: create and start, then (unless `detach`) wait for the container's end and
    /// delete it: the exit code of its first process.
    pub async fn run(
        &self,
        id: &str,
        bundle_dir: &Path,
        opts: &CreateOptions,
        detach: bool,
    ) -> Result<i32> {
        let mut jail = self.create_jail(id, bundle_dir, opts).await?;
        if let Err(e) = self.start(id) {
            let _ = self.delete(id, true);
            return Err(e);
        }
        if detach {
            return Ok(0);
        }
        // The first process is our child: wait for it here (no subreaper needed).
        let status = jail.wait().await;
        self.delete(id, true)?;
        Ok(status?.shell_code())
    }

    /// The first process of container `id`'s config.json: what `exec` starts from.
    pub fn process_of(&self, id: &str) -> Result<Option<Process>> {
        Ok(self.store.record(id)?.and_then(|r| r.process))
    }

    /// The store (for tests and `list`).
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// A terminal needs a console socket to go to, and a console socket a terminal.
fn check_console(terminal: bool, socket: Option<&Path>) -> Result<()> {
    match (terminal, socket) {
        (true, None) => Err(Error::invalid(
            "process.terminal",
            "a terminal needs --console-socket to send it to",
        )),
        (false, Some(_)) => Err(Error::invalid(
            "process.terminal",
            "--console-socket was given, but the process has no terminal",
        )),
        _ => Ok(()),
    }
}

/// Writes a pid file as runc does: the number alone, replaced atomically.
fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("kleene-tmp");
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Error::io(format!("writing the pid file {}", path.display()), e))
}

/// FreeBSD's `delete`: removes the container's jail (`jail_remove(2)`, through
/// kleene-jail's [`kleene_jail::stop_processes_under`], which kills whatever still runs in
/// the jails rooted there) and unmounts the devfs and nullfs mounts made under its root.
#[cfg(target_os = "freebsd")]
fn remove_jail(r: &Record) -> Result<()> {
    match kleene_jail::stop_processes_under(&r.rootfs, Duration::ZERO) {
        Ok(_) | Err(kleene_jail::Error::RootNotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    crate::freebsd_sys::unmount_below(&r.rootfs)
}

/// The container's processes on FreeBSD: those of the jails rooted at its root (the
/// processes whose `ki_jid` is the container's jail), through kleene-jail.
#[cfg(target_os = "freebsd")]
fn processes(r: &Record) -> Vec<i32> {
    kleene_jail::processes_under(&r.rootfs).unwrap_or_default()
}

/// The container's processes: every process of its pid namespace when it has its own,
/// else its first process and that one's descendants.
#[cfg(not(target_os = "freebsd"))]
fn processes(r: &Record) -> Vec<i32> {
    let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let Some(theirs) = ns(r.pid) else {
        return Vec::new();
    };
    let own = ns(std::process::id() as i32).is_some_and(|mine| mine != theirs);
    let mut all: Vec<(i32, i32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let ppid = parent_of(&stat).unwrap_or(0);
            if own {
                if ns(pid).as_ref() == Some(&theirs) {
                    all.push((pid, ppid));
                }
            } else {
                all.push((pid, ppid));
            }
        }
    }
    if own {
        let mut pids: Vec<i32> = all.into_iter().map(|(p, _)| p).collect();
        pids.sort_unstable();
        return pids;
    }
    let mut found = vec![r.pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        for (p, pp) in &all {
            if *pp == parent && !found.contains(p) {
                found.push(*p);
            }
        }
        i += 1;
    }
    found.sort_unstable();
    found
}

/// Field 4 (ppid) of a /proc/PID/stat line.
#[cfg_attr(target_os = "freebsd", allow(dead_code))]
fn parent_of(stat: &[u8]) -> Option<i32> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    rest.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Parses a signal as runc does: `TERM`, `SIGTERM`, `sigterm` or `15`.
pub fn parse_signal(text: &str) -> Result<Signal> {
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n)
            .map_err(|_| Error::invalid("signal", format!("{n} is not a signal")));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| Error::invalid("signal", format!("{text:?} is not a signal")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_as_runc_spells_them() {
        assert_eq!(parse_signal("TERM").expect("TERM"), Signal::SIGTERM);
        assert_eq!(parse_signal("sigkill").expect("sigkill"), Signal::SIGKILL);
        assert_eq!(parse_signal("9").expect("9"), Signal::SIGKILL);
        assert_eq!(parse_signal("SIGUSR1").expect("USR1"), Signal::SIGUSR1);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }

    #[test]
    fn parents_from_stat() {
        assert_eq!(parent_of(b"12 (x y) S 7 12 12 0"), Some(7));
    }

    #[test]
    fn terminals_and_console_sockets_go_together() {
        assert!(check_console(true, None).is_err());
        assert!(check_console(false, Some(Path::new("/s"))).is_err());
        assert!(check_console(true, Some(Path::new("/s"))).is_ok());
        assert!(check_console(false, None).is_ok());
    }
}
