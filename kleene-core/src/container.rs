//! Containers: clones of image snapshots, run by a small monitor process each, so that a
//! detached container outlives the process that started it (no daemon).

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kleene_jail::{ExecConfig, JailHandle, JailId, Signal};
use kleene_zfs::Properties;
use tokio::process::{Child, ChildStderr, ChildStdout};

use crate::engine::{Engine, Inner, OpLock, PROP_ID};
use crate::error::{CoreError, Object, Result};
use crate::id::Id;
use crate::meta::{now, Table};
use crate::model::{
    Container, ContainerConfig, Driver, JailParamText, MountSource, MountSpec, PublishedPort,
    RestartPolicy, RunState, Runtime,
};
use crate::network::Addresses;
use crate::vars::merge_env;

/// A request for a container (`klee container create`); build it with
/// [`CreateContainer::new`] and its setters.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CreateContainer {
    /// The image: id, prefix, `name[:tag]`, optionally `@snapshot`.
    pub image: String,
    /// Its name; generated when `None`.
    pub name: Option<String>,
    /// The command; the image's when empty.
    pub cmd: Vec<String>,
    /// `KEY=value` pairs added to (and overriding) the image's.
    pub env: Vec<String>,
    /// The user; the image's when `None`.
    pub user: Option<String>,
    /// The working directory; the image's when `None`.
    pub workdir: Option<String>,
    /// Mounts (`-v`).
    pub mounts: Vec<MountSpec>,
    /// The network driver; `ipnet` when networks are given, else `host`.
    pub driver: Option<Driver>,
    /// The networks it is connected to, with the addresses asked for.
    pub networks: Vec<(String, Addresses)>,
    /// Ports published on the host (`-p`).
    pub publish: Vec<PublishedPort>,
    /// Jail parameters (`-J`).
    pub jail_params: Vec<JailParamText>,
    /// Kept by `prune` (`--persist`).
    pub persist: bool,
    /// When it is started without being asked (`--restart`).
    pub restart: RestartPolicy,
    /// Resource limits.
    pub limits: crate::Limits,
    /// Its system-call filter.
    pub seccomp: crate::Seccomp,
    /// Its user namespace: `None` the engine's default ([`crate::Config::userns`]),
    /// `Some(None)` the host's, `Some(Some(range))` that range.
    pub userns: Option<Option<crate::UserNs>>,
}

impl CreateContainer {
    /// A container of `image` (id, prefix, `name[:tag]`, optionally `@snapshot`) with the
    /// image's command, environment, user and workdir, on the host's network.
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            ..Self::default()
        }
    }

    /// Names it (a name is generated otherwise).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Runs this command instead of the image's (the image's entrypoint still comes first).
    pub fn cmd<I: IntoIterator<Item = S>, S: Into<String>>(mut self, cmd: I) -> Self {
        self.cmd = cmd.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a `KEY=value` pair over the image's environment.
    pub fn env(mut self, kv: impl Into<String>) -> Self {
        self.env.push(kv.into());
        self
    }

    /// Runs as this user instead of the image's.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Starts in this directory instead of the image's.
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    /// Adds a mount.
    pub fn mount(mut self, mount: MountSpec) -> Self {
        self.mounts.push(mount);
        self
    }

    /// Sets the network driver (`host`, `disabled`, `ipnet`, `vnet`).
    pub fn driver(mut self, driver: Driver) -> Self {
        self.driver = Some(driver);
        self
    }

    /// Connects it to a network, with the addresses asked for (free ones otherwise).
    pub fn network(mut self, network: impl Into<String>, addresses: Addresses) -> Self {
        self.networks.push((network.into(), addresses));
        self
    }

    /// Publishes a port on the host.
    pub fn publish(mut self, port: PublishedPort) -> Self {
        self.publish.push(port);
        self
    }

    /// Adds a jail parameter.
    pub fn jail_param(mut self, param: JailParamText) -> Self {
        self.jail_params.push(param);
        self
    }

    /// Keeps it from `prune` (`--persist`).
    pub fn persist(mut self, persist: bool) -> Self {
        self.persist = persist;
        self
    }

    /// Sets its restart policy (`--restart`).
    pub fn restart(mut self, restart: RestartPolicy) -> Self {
        self.restart = restart;
        self
    }

    /// Sets its resource limits.
    pub fn limits(mut self, limits: crate::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets its system-call filter (Docker's default otherwise).
    pub fn seccomp(mut self, seccomp: crate::Seccomp) -> Self {
        self.seccomp = seccomp;
        self
    }

    /// Sets its user namespace (`None`: the host's) instead of the engine's default.
    pub fn userns(mut self, userns: Option<crate::UserNs>) -> Self {
        self.userns = Some(userns);
        self
    }
}

/// What `container update` changes of a container, as Kleene's: each field given replaces
/// the container's (`env` and `jail_params` replace the whole list, as klee says: "using
/// `jailparam` and `env` removes all values from the existing configuration").
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ContainerUpdate {
    /// A new name.
    pub name: Option<String>,
    /// The user commands run as.
    pub user: Option<String>,
    /// `KEY=value` pairs over the image's environment.
    pub env: Option<Vec<String>>,
    /// Jail parameters. On a running container they are also applied to its jail where
    /// the platform can (FreeBSD's `jail_set(2)` update); where it cannot, the update is
    /// kept and the error names the parameter: it takes effect at the next start.
    pub jail_params: Option<Vec<JailParamText>>,
    /// Kept by `prune`.
    pub persist: Option<bool>,
    /// The restart policy.
    pub restart: Option<RestartPolicy>,
    /// The command (after the image's entrypoint).
    pub cmd: Option<Vec<String>>,
    /// Resource limits: those given replace the container's; on a running container they
    /// also apply at once.
    pub limits: Option<crate::Limits>,
}

impl ContainerUpdate {
    /// Nothing changed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renames it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Replaces its environment (over the image's).
    pub fn env(mut self, env: Vec<String>) -> Self {
        self.env = Some(env);
        self
    }

    /// Replaces its jail parameters.
    pub fn jail_params(mut self, params: Vec<JailParamText>) -> Self {
        self.jail_params = Some(params);
        self
    }

    /// Sets whether `prune` keeps it.
    pub fn persist(mut self, persist: bool) -> Self {
        self.persist = Some(persist);
        self
    }

    /// Sets its restart policy.
    pub fn restart(mut self, restart: RestartPolicy) -> Self {
        self.restart = Some(restart);
        self
    }

    /// Replaces its command.
    pub fn cmd(mut self, cmd: Vec<String>) -> Self {
        self.cmd = Some(cmd);
        self
    }

    /// Changes the limits it names (the others stay).
    pub fn limits(mut self, limits: crate::Limits) -> Self {
        self.limits = Some(limits);
        self
    }
}

/// A second process for a running container (`klee exec`); build it with
/// [`ExecSpec::new`] and its setters.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ExecSpec {
    /// The command.
    pub cmd: Vec<String>,
    /// `KEY=value` pairs over the container's.
    pub env: Vec<String>,
    /// The user; the container's when `None`.
    pub user: Option<String>,
    /// The working directory; the container's when `None`.
    pub workdir: Option<String>,
    /// A terminal of this size instead of the streams below.
    pub tty: Option<kleene_jail::WinSize>,
    /// Its stdin.
    pub stdin: kleene_jail::Stdio,
    /// Its stdout.
    pub stdout: kleene_jail::Stdio,
    /// Its stderr.
    pub stderr: kleene_jail::Stdio,
}

impl ExecSpec {
    /// Runs `cmd` with the container's environment, user and workdir, and the caller's
    /// standard streams.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(cmd: I) -> Self {
        Self {
            cmd: cmd.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Adds a `KEY=value` pair over the container's environment.
    pub fn env(mut self, kv: impl Into<String>) -> Self {
        self.env.push(kv.into());
        self
    }

    /// Runs as this user instead of the container's.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Starts in this directory instead of the container's.
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    /// Gives it a terminal of this size (its streams are the terminal).
    pub fn tty(mut self, size: kleene_jail::WinSize) -> Self {
        self.tty = Some(size);
        self
    }

    /// Connects its standard streams.
    pub fn stdio(
        mut self,
        stdin: kleene_jail::Stdio,
        stdout: kleene_jail::Stdio,
        stderr: kleene_jail::Stdio,
    ) -> Self {
        self.stdin = stdin;
        self.stdout = stdout;
        self.stderr = stderr;
        self
    }
}

/// What one start of a container runs instead of its configuration's: a command, more
/// environment (over the container's), another user. The default changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct StartOverrides {
    /// The command instead of the container's (when not empty).
    pub cmd: Vec<String>,
    /// `KEY=value` pairs over the container's environment.
    pub env: Vec<String>,
    /// The user instead of the container's (when not empty).
    pub user: String,
    /// Whether the container is removed when it ends with its command (docker's `--rm`):
    /// its monitor takes it out of every listing before it tells an attached caller of
    /// the end ([`Exit::removed`]), and destroys its dataset after (a kill there leaves
    /// the removal pending, for the next [`Engine::open`] to finish).
    #[serde(default)]
    pub remove: bool,
}

impl StartOverrides {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `cmd` instead of the container's command (an empty one changes nothing).
    pub fn cmd<I: IntoIterator<Item = S>, S: Into<String>>(mut self, cmd: I) -> Self {
        self.cmd = cmd.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a `KEY=value` pair over the container's environment.
    pub fn env(mut self, kv: impl Into<String>) -> Self {
        self.env.push(kv.into());
        self
    }

    /// Runs as `user` instead of the container's user (an empty one changes nothing).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// Removes the container when it ends with its command (see [`StartOverrides::remove`]).
    pub fn remove(mut self, remove: bool) -> Self {
        self.remove = remove;
        self
    }

    /// `c` as this start runs it.
    pub(crate) fn apply(&self, mut c: Container) -> Container {
        if !self.cmd.is_empty() {
            c.config.cmd = self.cmd.clone();
        }
        if !self.env.is_empty() {
            c.config.env = crate::vars::merge_env(&c.config.env, &self.env);
        }
        if !self.user.is_empty() {
            c.config.user = self.user.clone();
        }
        c
    }
}

/// How a started container's standard streams are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attach {
    /// Output goes to the container's log; the caller may exit.
    Detached,
    /// The caller's own stdin, stdout and stderr (a terminal, for `run -it`).
    Inherit,
    /// Pipes the caller reads and writes.
    Piped,
}

/// A started container. For attached starts, its streams and a way to wait for its end.
#[derive(Debug)]
pub struct Started {
    /// The container, as it is now.
    pub container: Container,
    /// Its stdin, with [`Attach::Piped`].
    pub stdin: Option<tokio::net::unix::pipe::Sender>,
    /// Its stdout, with [`Attach::Piped`].
    pub stdout: Option<ChildStdout>,
    /// Its stderr, with [`Attach::Piped`].
    pub stderr: Option<ChildStderr>,
    monitor: Child,
    reports: Option<crate::monitor::Reports>,
    engine: Engine,
}

/// How an attached container's command ended, from [`Started::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The command's exit code (128 + signal when killed).
    pub code: i32,
    /// Whether the container ended with it; when not, it runs on (processes the command
    /// left, or `exec` started, remain, or it has the jail parameter `persist`) until it
    /// is stopped or its last process ends.
    pub container_ended: bool,
    /// Whether the container is removed (started with [`StartOverrides::remove`]): gone
    /// from every listing, its dataset destroyed or being destroyed by its monitor.
    pub removed: bool,
}

impl Started {
    /// Waits for the container's command to end: its exit code, and whether the
    /// container ended with it (then its end is recorded when this returns).
    pub async fn wait(mut self) -> Result<Exit> {
        drop(self.stdin.take());
        if let Some(reports) = self.reports.as_mut() {
            if let Some((code, container_ended, removed)) =
                crate::monitor::command_end(reports).await
            {
                if container_ended && !removed {
                    // It records the end before it says so; it exits right after.
                    let _ = self.monitor.wait().await;
                }
                // A removed container's monitor destroys its dataset now, off the caller's
                // path (the removal is recorded: a kill leaves it to the next open).
                return Ok(Exit {
                    code,
                    container_ended,
                    removed,
                });
            }
        }
        let status = self.monitor.wait().await;
        let c = self.engine.container(self.container.id.as_str()).await?;
        let code = c.runtime.exit_code.ok_or_else(|| {
            let reason = c
                .runtime
                .error
                .clone()
                .unwrap_or_else(|| "it ended without recording the container's exit".into());
            // How the monitor itself ended says why it recorded nothing.
            let how = match status {
                Ok(s) => match (s.code(), s.signal()) {
                    (Some(code), _) => format!("it exited with status {code}"),
                    (None, Some(sig)) => format!("it was killed by signal {sig}"),
                    _ => format!("{s}"),
                },
                Err(e) => format!("waiting for it failed: {e}"),
            };
            CoreError::MonitorFailed {
                container: c.name.clone(),
                reason: format!("{reason} ({how})"),
            }
        })?;
        Ok(Exit {
            code,
            container_ended: true,
            removed: false,
        })
    }
}

/// Kleene's `exec.stop` when a container's jail parameters give none.
pub const DEFAULT_EXEC_STOP: &str = "/bin/sh /etc/rc.shutdown";

/// The command `stop` runs in a container first: the last `exec.stop` of its jail
/// parameters (`exec.nostop` or an empty value: none), else [`DEFAULT_EXEC_STOP`].
pub(crate) fn stop_command(params: &[JailParamText]) -> Option<String> {
    let mut cmd = Some(DEFAULT_EXEC_STOP.to_string());
    for p in params.iter().map(JailParamText::param) {
        if p.name() == "exec.stop" {
            cmd = match p.value() {
                kleene_jail::ParamValue::Value(v) if !v.trim().is_empty() => Some(v.clone()),
                _ => None,
            };
        }
    }
    cmd
}

/// How long stop and remove wait for a start under way to settle.
const START_SETTLE: Duration = Duration::from_secs(60);

const ADJECTIVES: &[&str] = &[
    "agile", "bold", "calm", "deft", "eager", "fond", "glad", "hardy", "keen", "lucid", "merry",
    "noble", "proud", "quiet", "rapid", "sharp", "tidy", "vivid", "witty", "zesty",
];
const NOUNS: &[&str] = &[
    "bohr", "curie", "dijkstra", "euler", "fermat", "gauss", "hopper", "kleene", "knuth",
    "lamport", "lovelace", "noether", "pascal", "ritchie", "shannon", "thompson", "turing",
];

/// Checks a container name: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 128 characters, and not
/// shaped like an id (which would make lookups ambiguous).
pub fn check_container_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(CoreError::InvalidInput(format!(
            "invalid container name {name:?}: use letters, digits, '_', '.' and '-', beginning with a letter or digit"
        )));
    }
    if Id::parse(name).is_ok() {
        return Err(CoreError::InvalidInput(format!(
            "invalid container name {name:?}: it looks like a container id"
        )));
    }
    Ok(())
}

/// Whether `pid` is a live process. A zombie is not: a killed monitor and its container
/// stay zombies until their parents reap them, and `kill(pid, 0)` still reaches them.
fn process_alive(pid: Option<i32>) -> bool {
    let Some(p) = pid.and_then(rustix::process::Pid::from_raw) else {
        return false;
    };
    if rustix::process::test_kill_process(p).is_err() {
        return false;
    }
    !is_zombie(p.as_raw_nonzero().get())
}

/// Whether `pid` has ended and waits to be reaped (Linux: state Z or X in
/// `/proc/PID/stat`; elsewhere it cannot be told cheaply, and is taken as alive).
fn is_zombie(pid: i32) -> bool {
    if !cfg!(target_os = "linux") {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold spaces.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| matches!(state, "Z" | "X" | "x"))
}

impl Engine {
    /// Creates a container: a clone of the image's snapshot, with the image's command,
    /// environment, user and workdir unless given.
    pub async fn create_container(&self, req: CreateContainer) -> Result<Container> {
        if let Some(name) = &req.name {
            check_container_name(name)?;
        }
        req.limits.validate()?;
        req.seccomp.profile()?;
        let userns = req.userns.unwrap_or(self.inner.config.userns);
        if userns.is_some() && !cfg!(target_os = "linux") {
            return Err(CoreError::Unsupported(
                "user namespaces are Linux's: a FreeBSD jail's root is the host's".into(),
            ));
        }
        for m in &req.mounts {
            m.check()?;
        }
        let (image, snapshot) = self.resolve_image(&req.image).await?;
        let driver = req.driver.unwrap_or(if req.networks.is_empty() {
            Driver::Host
        } else {
            Driver::Ipnet
        });
        let mut networks = Vec::new();
        for (reference, addrs) in &req.networks {
            let n = self.network(reference).await?;
            if !driver.can_connect(n.spec.kind) {
                return Err(CoreError::InvalidInput(format!(
                    "the {driver} network driver cannot connect to {} network {}{}",
                    n.spec.kind,
                    n.name,
                    if driver == Driver::Vnet {
                        ": vnet is for bridge networks"
                    } else {
                        ": use ipnet or vnet"
                    }
                )));
            }
            networks.push((n, *addrs));
        }
        if !req.publish.is_empty() && matches!(driver, Driver::Host | Driver::Disabled) {
            return Err(CoreError::InvalidInput(format!(
                "ports cannot be published with the {driver} network driver: connect the container to a network"
            )));
        }
        self.blocking(move |inner| {
            let generated = req.name.is_none();
            let name = match req.name {
                Some(n) => n,
                None => inner.generate_name()?,
            };
            let cfg = &image.config;
            let mut cmd = cfg.entrypoint.clone();
            cmd.extend(if req.cmd.is_empty() {
                cfg.cmd.clone()
            } else {
                req.cmd.clone()
            });
            if cmd.is_empty() {
                return Err(CoreError::InvalidInput(format!(
                    "no command given, and image {} has none",
                    image.nametag()
                )));
            }
            let id = Id::generate()?;
            let dataset = inner.container_root.child(id.as_str())?;
            let container = Container {
                id: id.clone(),
                name,
                image_id: image.id.clone(),
                snapshot: snapshot.clone(),
                dataset,
                config: ContainerConfig {
                    cmd,
                    env: merge_env(&cfg.env, &req.env),
                    user: req.user.unwrap_or_else(|| cfg.user.clone()),
                    workdir: req.workdir.unwrap_or_else(|| cfg.workdir.clone()),
                    mounts: req.mounts,
                    network: driver,
                    publish: req.publish,
                    jail_params: req.jail_params,
                    stop_signal: cfg.stop_signal,
                    persist: req.persist,
                    restart: req.restart,
                    limits: req.limits.clone(),
                    seccomp: req.seccomp.clone(),
                    userns,
                },
                created: now(),
                runtime: Runtime::default(),
            };
            inner.create_container(container, &snapshot, &networks, generated)
        })
        .await
    }

    /// Every container, newest first, with its state checked against the host.
    pub async fn containers(&self) -> Result<Vec<Container>> {
        self.blocking(|inner| {
            let all = inner.store().containers()?;
            all.into_iter().map(|c| inner.refresh(c)).collect()
        })
        .await
    }

    /// One container by full id, unique id prefix or name, its state checked.
    pub async fn container(&self, reference: &str) -> Result<Container> {
        let reference = reference.to_string();
        self.blocking(move |inner| inner.resolve_container(&reference))
            .await
    }

    /// Starts a container through its monitor process (this program started again; see
    /// [`crate::init`]), once the monitor reports it running. A container that could not
    /// start is [`CoreError::StartFailed`], with the jail's reason; a monitor that failed
    /// is [`CoreError::MonitorFailed`] or [`CoreError::MonitorVersion`].
    pub async fn start_container(&self, reference: &str, attach: Attach) -> Result<Started> {
        self.start_container_with(reference, attach, StartOverrides::default())
            .await
    }

    /// Starts a container as [`Engine::start_container`] does, with a command, more
    /// environment or another user for this run only (kleened's `exec/start` of a stopped
    /// container with `start_container`); the container's configuration is unchanged.
    pub async fn start_container_with(
        &self,
        reference: &str,
        attach: Attach,
        overrides: StartOverrides,
    ) -> Result<Started> {
        let c = self.container(reference).await?;
        // The monitor's jail joins its cgroups some 15 ms from now: the kernel's wait for
        // that (see `ResourceGroup::warm_joins`) starts here, beside the start's records.
        if let Ok(Some(g)) =
            kleene_jail::ResourceGroup::plan(crate::CGROUP_PARENT, &jail_name(&c.id))
        {
            let _ = g.warm_joins();
        }
        self.check_startable(&c).await?;
        self.mark_starting(c.id.clone()).await?;
        crate::failpoint("start-after-marking");
        // The monitor says started, or why not, on its socket.
        // A monitor stuck below a wedged filesystem never answers: the watch ends the wait.
        let spawned = crate::watch::until(
            &self.inner.probe,
            self.inner.config.fs_deadline,
            crate::monitor::spawn(&self.inner.config, &c, attach, &overrides),
        )
        .await;
        let mut spawned = match spawned {
            Ok(s) => s,
            Err(e) => {
                self.record_failed_start(c.id.clone(), e.to_string()).await;
                return Err(e);
            }
        };
        let container = self.container(c.id.as_str()).await?;
        Ok(Started {
            container,
            stdin: spawned.stdin,
            stdout: spawned.child.stdout.take(),
            stderr: spawned.child.stderr.take(),
            monitor: spawned.child,
            reports: spawned.reports,
            engine: self.clone(),
        })
    }

    /// Refuses to start `c` when it runs (or starts) already, or when a running container
    /// publishes one of its ports.
    async fn check_startable(&self, c: &Container) -> Result<()> {
        if matches!(c.runtime.state, RunState::Running | RunState::Starting) {
            return Err(CoreError::Running {
                name: c.name.clone(),
                force_helps: false,
            });
        }
        if !c.config.publish.is_empty() {
            let running: Vec<Container> = self
                .containers()
                .await?
                .into_iter()
                .filter(|o| matches!(o.runtime.state, RunState::Running | RunState::Starting))
                .collect();
            if let Some(why) = crate::network::port_conflict(c, &running) {
                return Err(CoreError::InvalidInput(why));
            }
        }
        Ok(())
    }

    /// Records container `id` as starting, by this process.
    async fn mark_starting(&self, id: Id) -> Result<()> {
        self.blocking(move |inner| {
            inner.store().set_runtime(
                &id,
                &Runtime {
                    state: RunState::Starting,
                    starter_pid: Some(std::process::id() as i32),
                    ..Runtime::default()
                },
            )
        })
        .await
    }

    /// Records `error` as the end of container `id` when it is still starting (best
    /// effort).
    ///
    /// A monitor that failed before recording anything leaves no container starting:
    /// the error is recorded in its place.
    async fn record_failed_start(&self, id: Id, error: String) {
        let _ = self
            .blocking(move |inner| {
                let starting = inner
                    .store()
                    .container(&id)?
                    .is_some_and(|now| now.runtime.state == RunState::Starting);
                if starting {
                    inner.store().set_runtime(
                        &id,
                        &Runtime {
                            state: RunState::Exited,
                            finished: Some(now()),
                            error: Some(error),
                            ..Runtime::default()
                        },
                    )?;
                }
                Ok(())
            })
            .await;
    }

    /// Stops a running container as jail(8) stops a jail: its `exec.stop` command
    /// ([`DEFAULT_EXEC_STOP`] unless the jail parameters say otherwise; skipped with a zero
    /// timeout), then its stop signal (SIGTERM by default) to every process, then SIGKILL
    /// to all after `timeout`. Returns the container as it ended.
    pub async fn stop_container(&self, reference: &str, timeout: Duration) -> Result<Container> {
        let c = self.settled(self.container(reference).await?).await?;
        if c.runtime.state != RunState::Running {
            return Err(CoreError::NotRunning { name: c.name });
        }
        let handle = self.inner.handle(&c)?;
        let deadline = Instant::now() + timeout;
        if !timeout.is_zero() {
            if let Some(cmd) = stop_command(&c.config.jail_params) {
                let cfg = ExecConfig::new(["/bin/sh", "-c", cmd.as_str()])
                    .clean_env(true)
                    .stdin(kleene_jail::Stdio::Null)
                    .stdout(kleene_jail::Stdio::Null)
                    .stderr(kleene_jail::Stdio::Null);
                // A container without a shell (or the command) just goes on to the signal.
                if let Ok(mut p) = handle.exec(&cfg).await {
                    if tokio::time::timeout(timeout, p.wait()).await.is_err() {
                        let _ = p.signal(Signal::SIGKILL);
                        let _ = p.wait().await;
                    }
                }
            }
        }
        let sig = c.config.stop_signal.unwrap_or_default();
        let _ = handle.signal_all(sig.0);
        let mut killed = false;
        loop {
            let now_c = self.container(c.id.as_str()).await?;
            if now_c.runtime.state != RunState::Running {
                return Ok(now_c);
            }
            if !killed && Instant::now() >= deadline {
                let _ = handle.kill_all();
                killed = true;
            }
            if killed && Instant::now() > deadline + Duration::from_secs(30) {
                return Err(CoreError::Internal(format!(
                    "container {} did not stop",
                    c.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Container `c` once its start, if one is under way, has settled: running, or ended
    /// (the start failed, or its monitor died). A start takes milliseconds; one still
    /// under way after [`START_SETTLE`] is reported as a monitor failure.
    async fn settled(&self, mut c: Container) -> Result<Container> {
        let deadline = Instant::now() + START_SETTLE;
        while c.runtime.state == RunState::Starting {
            if Instant::now() >= deadline {
                return Err(CoreError::MonitorFailed {
                    container: c.name,
                    reason: format!("still starting after {} s", START_SETTLE.as_secs()),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            c = self.container(c.id.as_str()).await?;
        }
        Ok(c)
    }

    /// Stops (if running) and starts a container, detached.
    pub async fn restart_container(&self, reference: &str, timeout: Duration) -> Result<Container> {
        let c = self.settled(self.container(reference).await?).await?;
        if c.runtime.state == RunState::Running {
            self.stop_container(c.id.as_str(), timeout).await?;
        }
        Ok(self
            .start_container(c.id.as_str(), Attach::Detached)
            .await?
            .container)
    }

    /// Runs a second process in a running container, like `jexec`, with the container's
    /// environment (overridden by the request's), user and workdir unless given. The
    /// process is a child of the caller.
    pub async fn exec_container(
        &self,
        reference: &str,
        req: ExecSpec,
    ) -> Result<kleene_jail::Process> {
        let c = self.container(reference).await?;
        if c.runtime.state != RunState::Running {
            return Err(CoreError::NotRunning { name: c.name });
        }
        if req.cmd.is_empty() {
            return Err(CoreError::InvalidInput("exec needs a command".into()));
        }
        let handle = self.inner.handle(&c)?;
        let mut exec = ExecConfig::new(&req.cmd).clean_env(true);
        for kv in merge_env(&c.config.env, &req.env) {
            if let Some((k, v)) = kv.split_once('=') {
                exec = exec.env(k, v);
            }
        }
        let user = req.user.unwrap_or_else(|| c.config.user.clone());
        if !user.is_empty() {
            exec = exec.user(user);
        }
        let workdir = req.workdir.unwrap_or_else(|| c.config.workdir.clone());
        if !workdir.is_empty() {
            exec = exec.workdir(workdir);
        }
        exec = exec.stdin(req.stdin).stdout(req.stdout).stderr(req.stderr);
        if let Some(size) = req.tty {
            exec = exec.tty(size);
        }
        // The container's filter holds for what runs beside its command, as in Docker.
        if let Some(profile) = c.config.seccomp.profile()? {
            exec = exec.seccomp(profile);
        }
        handle
            .exec(&exec)
            .await
            .map_err(|e| CoreError::jail(format!("exec in container {}", c.name), e))
    }

    /// What a detached container wrote, stdout and stderr interleaved.
    pub async fn container_logs(&self, reference: &str) -> Result<Vec<u8>> {
        let c = self.container(reference).await?;
        let path = self.inner.log_path(&c.id);
        match std::fs::read(&path) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(CoreError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Removes a container; a running one only with `force` (it is killed first).
    pub async fn remove_container(&self, reference: &str, force: bool) -> Result<Id> {
        // A container whose start is under way is removed as what it becomes: removing it
        // meanwhile destroyed nothing (its jail holds the dataset) and left the jail running.
        let c = self.settled(self.container(reference).await?).await?;
        if c.runtime.state == RunState::Running {
            if !force {
                return Err(CoreError::Running {
                    name: c.name,
                    force_helps: true,
                });
            }
            self.stop_container(c.id.as_str(), Duration::ZERO).await?;
        }
        let networked = c.config.network != crate::model::Driver::Host;
        #[cfg(target_os = "linux")]
        if networked {
            // What a set-up killed before its peer moved left on the host (see
            // `network::platform::container_links`): it names this container only.
            let id = c.id.clone();
            let swept = self
                .blocking(move |_| {
                    let listed = crate::network::platform::container_links()?;
                    let mine: Vec<String> = listed
                        .into_iter()
                        .filter(|l| crate::network::platform::is_link_of(l, &id))
                        .collect();
                    crate::network::platform::remove_links(&mine)
                })
                .await;
            if let Err(e) = swept {
                log::warn!("{e}");
            }
        }
        let id = self
            .blocking(move |inner| inner.remove_container(&c))
            .await?;
        if networked {
            // Its rules go with it, whoever applied the firewall last: a container whose
            // monitor was killed was still running (its jail dying) when the last
            // application counted it.
            self.apply_firewall().await?;
        }
        Ok(id)
    }

    /// Removes every container that is not running; their ids.
    pub async fn prune_containers(&self) -> Result<Vec<Id>> {
        let mut removed = Vec::new();
        for c in self.containers().await? {
            if !c.config.persist
                && !matches!(c.runtime.state, RunState::Running | RunState::Starting)
            {
                removed.push(
                    self.blocking(move |inner| inner.remove_container(&c))
                        .await?,
                );
            }
        }
        Ok(removed)
    }

    /// Changes a container's configuration (`klee container update`); the container as it
    /// is then. Changes take effect at its next start, except jail parameters of a running
    /// container, which are applied to its jail where the platform allows
    /// ([`CoreError::Unsupported`] names the one it does not; the update is kept).
    pub async fn update_container(
        &self,
        reference: &str,
        update: ContainerUpdate,
    ) -> Result<Container> {
        if let Some(name) = &update.name {
            check_container_name(name)?;
        }
        let c = self.container(reference).await?;
        let image = self.image(c.image_id.as_str()).await?;
        let mut config = c.config.clone();
        if let Some(user) = update.user {
            config.user = user;
        }
        if let Some(env) = &update.env {
            config.env = merge_env(&image.config.env, env);
        }
        if let Some(params) = update.jail_params.clone() {
            config.jail_params = params;
        }
        if let Some(persist) = update.persist {
            config.persist = persist;
        }
        if let Some(restart) = update.restart {
            config.restart = restart;
        }
        if let Some(cmd) = update.cmd {
            let mut full = image.config.entrypoint.clone();
            full.extend(cmd);
            config.cmd = full;
        }
        if let Some(limits) = &update.limits {
            config.limits = config.limits.merged(limits);
            config.limits.validate()?;
        }
        let id = c.id.clone();
        let name = update.name.clone();
        let updated = self
            .blocking(move |inner| {
                if let Some(name) = &name {
                    inner.store().rename_container(&id, name)?;
                }
                inner.store().set_container_config(&id, &config)?;
                inner.resolve_container(id.as_str())
            })
            .await?;
        // A running container's group takes new limits now.
        if let (Some(limits), RunState::Running) = (&update.limits, c.runtime.state) {
            crate::limits::apply_live(&updated, limits)?;
        }
        // A running container's jail takes what it can of the new parameters now.
        if let (Some(params), RunState::Running) = (update.jail_params, c.runtime.state) {
            let handle = self.inner.handle(&updated)?;
            let params: Vec<kleene_jail::JailParam> =
                params.iter().map(|p| p.param().clone()).collect();
            handle.update_params(&params).map_err(|e| match e {
                kleene_jail::Error::UnsupportedParameter { name, platform } => {
                    CoreError::Unsupported(format!(
                        "jail parameter {name} cannot be changed on a running container on {platform}: the update is kept and takes effect when container {} starts again",
                        updated.name
                    ))
                }
                other => CoreError::jail(
                    format!(
                        "updating the jail of running container {} (the update is kept and takes effect at its next start)",
                        updated.name
                    ),
                    other,
                ),
            })?;
        }
        Ok(updated)
    }

    /// Renames a container.
    pub async fn rename_container(&self, reference: &str, name: &str) -> Result<Container> {
        check_container_name(name)?;
        let reference = reference.to_string();
        let name = name.to_string();
        self.blocking(move |inner| {
            let c = inner.resolve_container(&reference)?;
            inner.store().rename_container(&c.id, &name)?;
            inner.resolve_container(c.id.as_str())
        })
        .await
    }
}

impl Inner {
    pub fn log_path(&self, id: &Id) -> PathBuf {
        self.root_mount.join("logs").join(format!("{id}.log"))
    }

    fn generate_name(&self) -> Result<String> {
        for _ in 0..100 {
            let mut b = [0u8; 3];
            getrandom::fill(&mut b)
                .map_err(|e| CoreError::Internal(format!("no randomness: {e}")))?;
            let name = format!(
                "{}_{}",
                ADJECTIVES[b[0] as usize % ADJECTIVES.len()],
                NOUNS[b[1] as usize % NOUNS.len()]
            );
            let name = if b[2] % 2 == 0 {
                name
            } else {
                format!("{name}{}", b[2] % 100)
            };
            if self.store().container_by_name(&name)?.is_none() {
                return Ok(name);
            }
        }
        Err(CoreError::Internal("no free container name".into()))
    }

    /// Makes `container` (`generated_name`: its name was drawn here, and another is drawn
    /// when a process running at the same moment took it first).
    fn create_container(
        &self,
        mut container: Container,
        snapshot: &kleene_zfs::SnapshotName,
        networks: &[(crate::model::Network, Addresses)],
        generated_name: bool,
    ) -> Result<Container> {
        let op = OpLock::begin(&self.ops_dir)?;
        // Named volumes are made on first use, as docker does.
        for m in &container.config.mounts {
            match &m.source {
                MountSource::Volume(v) if self.store().volume(v)?.is_none() => {
                    match self.create_volume(v) {
                        Ok(_) | Err(CoreError::AlreadyExists { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                MountSource::HostPath(p) => {
                    // A directory or a single file, as docker takes them.
                    let meta = std::fs::metadata(p).map_err(|e| {
                        CoreError::InvalidInput(format!("mount source {p} on the host: {e}"))
                    })?;
                    if !meta.is_dir() && !meta.is_file() {
                        return Err(CoreError::InvalidInput(format!(
                            "mount source {p} is neither a directory nor a file on the host"
                        )));
                    }
                }
                _ => {}
            }
        }
        let mut draws = 0;
        loop {
            // Bound first: a guard in the match would live through the arms, and drawing
            // a name locks the store again (a deadlock when two processes drew one name).
            let inserted = self.store().insert_pending_container(&container, &op.token);
            match inserted {
                Err(CoreError::AlreadyExists { .. }) if generated_name && draws < 10 => {
                    draws += 1;
                    container.name = self.generate_name()?;
                }
                done => break done?,
            }
        }
        crate::failpoint("container-after-row");
        let dataset = container.dataset.clone();
        let made = (|| {
            // Its addresses, taken with the pending row: a failure or a crash before the
            // row is finished releases them with it.
            for (n, addrs) in networks {
                self.allocate_endpoint(&container.id, n, *addrs)?;
            }
            self.zfs.clone_snapshot(
                snapshot,
                &dataset,
                &Properties::new().with(PROP_ID, container.id.as_str())?,
            )?;
            crate::failpoint("container-after-clone");
            self.store().finish_container(&container.id)
        })();
        if let Err(e) = made {
            if self.destroy_dataset(&dataset).is_ok() {
                self.store()
                    .delete_row(Table::Containers, container.id.as_str())?;
            }
            return Err(e);
        }
        drop(op);
        self.resolve_container(container.id.as_str())
    }

    pub fn resolve_container(&self, reference: &str) -> Result<Container> {
        let found = {
            let store = self.store();
            let mut found = None;
            if let Ok(id) = Id::parse(reference) {
                found = store.container(&id)?;
            }
            if found.is_none() {
                found = store.container_by_name(reference)?;
            }
            if found.is_none() && Id::is_prefix(reference) {
                let mut all = store.containers_by_prefix(reference)?;
                if all.len() > 1 {
                    return Err(CoreError::Ambiguous {
                        kind: Object::Container,
                        reference: reference.to_string(),
                        candidates: all
                            .iter()
                            .map(|c| format!("{} ({})", c.id, c.name))
                            .collect(),
                    });
                }
                found = all.pop();
            }
            found
        };
        let c = found.ok_or_else(|| CoreError::NotFound {
            kind: Object::Container,
            reference: reference.to_string(),
        })?;
        self.refresh(c)
    }

    /// A container whose monitor died (a crash, a kill -9, a reboot) is not running any
    /// more, whatever its row says: the row is corrected.
    pub(crate) fn refresh(&self, mut c: Container) -> Result<Container> {
        let rt = &c.runtime;
        let stale = match rt.state {
            RunState::Running => (!process_alive(rt.monitor_pid) && !process_alive(rt.pid))
                .then_some("its monitor ended without recording an exit"),
            // Before its monitor records itself, the start is its starter's.
            RunState::Starting => match rt.monitor_pid {
                Some(_) => (!process_alive(rt.monitor_pid))
                    .then_some("its monitor ended without recording an exit"),
                None => (rt.starter_pid.is_some() && !process_alive(rt.starter_pid))
                    .then_some("the process starting it ended before its monitor ran"),
            },
            _ => None,
        };
        if let Some(why) = stale {
            let exited = Runtime {
                state: RunState::Exited,
                finished: Some(now()),
                started: c.runtime.started,
                error: Some(why.into()),
                ..Runtime::default()
            };
            // Unless the monitor recorded the exit meanwhile: then its record stands.
            if !self.store().replace_runtime(&c.id, &c.runtime, &exited)? {
                let id = c.id.clone();
                return self.store().container(&id)?.ok_or(CoreError::NotFound {
                    kind: Object::Container,
                    reference: id.to_string(),
                });
            }
            // Its group goes with it (what is left in it is killed).
            if let Some(locator) = &c.runtime.resource_group {
                crate::limits::remove_left_group(locator);
            }
            c.runtime = exited;
        }
        Ok(c)
    }

    fn handle(&self, c: &Container) -> Result<JailHandle> {
        let (Some(pid), Some(jid)) = (c.runtime.pid, c.runtime.jid) else {
            return Err(CoreError::NotRunning {
                name: c.name.clone(),
            });
        };
        let root = self.mountpoint(&c.dataset)?;
        Ok(JailHandle::new(
            Some(jail_name(&c.id)),
            JailId(jid),
            pid,
            root,
        ))
    }

    fn remove_container(&self, c: &Container) -> Result<Id> {
        let op = OpLock::begin(&self.ops_dir)?;
        if !self
            .store()
            .mark_removing(Table::Containers, c.id.as_str(), &op.token)?
        {
            return Err(CoreError::NotFound {
                kind: Object::Container,
                reference: c.id.to_string(),
            });
        }
        self.destroy_dataset(&c.dataset)?;
        self.store().delete_row(Table::Containers, c.id.as_str())?;
        let _ = std::fs::remove_file(self.log_path(&c.id));
        drop(op);
        Ok(c.id.clone())
    }
}

/// The jail name of a container.
pub(crate) fn jail_name(id: &Id) -> String {
    format!("kleene-{id}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn start_overrides_change_one_run_only_where_given() {
        let mut c = crate::testkit::container("c");
        c.config.cmd = vec!["/bin/sleep".into(), "60".into()];
        c.config.env = vec!["A=1".into()];
        c.config.user = "www".into();
        assert_eq!(StartOverrides::new().apply(c.clone()).config, c.config);
        let run = StartOverrides::new()
            .cmd(["/bin/echo", "hi"])
            .env("A=2")
            .env("B=3")
            .apply(c.clone());
        assert_eq!(run.config.cmd, ["/bin/echo", "hi"]);
        assert_eq!(run.config.env, ["A=2", "B=3"]);
        assert_eq!(run.config.user, "www");
        let run = StartOverrides::new().user("root").apply(c);
        assert_eq!(run.config.user, "root");
        assert_eq!(run.config.cmd, ["/bin/sleep", "60"]);
    }

    #[tokio::test]
    async fn a_drawn_name_taken_meanwhile_is_drawn_again() {
        let t = crate::testkit::TestEngine::new().await;
        let first = t
            .engine
            .create_container(CreateContainer::new("base").name("taken"))
            .await
            .unwrap();
        // A second container that drew the same name (another process took it first).
        let mut c = first.clone();
        c.id = Id::generate().unwrap();
        c.dataset = t.engine.inner.container_root.child(c.id.as_str()).unwrap();
        let inner = std::sync::Arc::clone(&t.engine.inner);
        let snapshot = first.snapshot.clone();
        // On a thread of its own: a deadlock (the store's guard held while drawing) would
        // never answer, and is left behind rather than waited for.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(inner.create_container(c, &snapshot, &[], true));
        });
        let made = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the creation answers")
            .unwrap();
        assert_ne!(made.name, "taken");
        assert_eq!(t.engine.containers().await.unwrap().len(), 2);
    }

    #[test]
    fn env_merge_overrides_in_place() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let over = vec!["A=2".to_string(), "B=3".to_string()];
        assert_eq!(merge_env(&base, &over), ["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped yet: a zombie once it has ended.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !is_zombie(pid) {
            assert!(std::time::Instant::now() < deadline, "true never ended");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!process_alive(Some(pid)));
        assert!(process_alive(Some(std::process::id() as i32)));
        child.wait().unwrap();
        assert!(!process_alive(Some(pid)));
    }

    #[test]
    fn names() {
        check_container_name("web-1.a_b").unwrap();
        for bad in ["", "-x", "a b", "a/b", "0123456789ab", &"x".repeat(129)] {
            assert!(check_container_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mount_specs() {
        let m = MountSpec::parse("data:/var/db:ro").unwrap();
        assert_eq!(m.source, MountSource::Volume("data".into()));
        assert!(m.read_only);
        let m = MountSpec::parse("/srv/www:/usr/local/www").unwrap();
        assert_eq!(m.source, MountSource::HostPath("/srv/www".into()));
        assert!(!m.read_only);
        for bad in ["data", "data:rel", "data:/x:rx", "/a:/b/../c", "-v:/x"] {
            assert!(MountSpec::parse(bad).is_err(), "{bad}");
        }
        // Nothing over the kernel's files, as runc refuses it.
        for bad in [
            "/h:/proc",
            "/h:/proc/sys",
            "/h://sys/fs",
            "/h:/sys",
            "v:/proc/./sys/kernel",
        ] {
            let e = MountSpec::parse(bad).expect_err(bad).to_string();
            assert!(e.contains("/proc or /sys") && e.contains(bad), "{e}");
        }
        // lxcfs's files are allowed, as runc allows them.
        assert!(MountSpec::parse("/var/lib/lxcfs/proc/meminfo:/proc/meminfo:ro").is_ok());
        assert!(MountSpec::parse("/h:/procfs").is_ok());
    }
}
