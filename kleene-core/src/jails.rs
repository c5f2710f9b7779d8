//! How the engine runs a command in a jail for a build step: through [`Jails`], which is
//! kleene-jail on a real host ([`HostJails`]) and a stand-in in tests, so that builds can be
//! planned, cached and checked without root.
//!
//! As in Kleene, every RUN of a stage runs in one build container: the stage's first RUN
//! starts it (a persistent jail of [`kleene_jail::Lifetime::Processes`], so what a RUN
//! starts in the background, a database server, is there for the next RUN), the later
//! ones run in it, and the build ends it with the stage ([`Jails::end`]).

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use kleene_jail::{ExitStatus, JailConfig, NetworkMode, Signal};
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

use crate::event::{Event, Events, OutputStream};
use crate::model::JailParamText;

/// A command to run to its end in a jail on a root directory: a build's RUN step.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JailRun {
    /// The jail's root directory (a mounted dataset).
    pub root: PathBuf,
    /// The jail's name.
    pub name: String,
    /// Its host name.
    pub hostname: String,
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// The whole environment, in order.
    pub env: Vec<(String, String)>,
    /// The user it runs as; root when `None`.
    pub user: Option<String>,
    /// Its working directory; `/` when `None`.
    pub workdir: Option<String>,
    /// Its network: the host's, none, or (for a container on networks) the namespace or
    /// jail parameters kleene-net set up.
    pub network: NetworkMode,
    /// Jail parameters.
    pub params: Vec<JailParamText>,
    /// Discard its output instead of sending it as [`Event::Output`].
    pub quiet: bool,
    /// Bind mounts of the build container (`build -m`).
    pub mounts: Vec<kleene_jail::Mount>,
    /// Its system-call filter (Linux).
    pub seccomp: Option<kleene_jail::SeccompProfile>,
    /// Its user namespace (Linux); its root is then an idmapped mount.
    pub userns: Option<crate::UserNs>,
}

impl JailRun {
    /// `argv` in a jail named `name` on `root`, with nothing else set.
    pub fn new(root: impl Into<PathBuf>, name: impl Into<String>, argv: Vec<String>) -> Self {
        let name = name.into();
        Self {
            root: root.into(),
            hostname: name.clone(),
            name,
            argv,
            env: Vec::new(),
            user: None,
            workdir: None,
            network: NetworkMode::Inherit,
            params: Vec::new(),
            quiet: false,
            mounts: Vec::new(),
            seccomp: None,
            userns: None,
        }
    }
}

/// How a [`JailRun`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunEnd {
    /// The command ended by itself.
    Exited(ExitStatus),
    /// The run was cancelled and its processes killed.
    Cancelled,
}

/// The future a [`Jails`] implementation returns.
pub type RunFuture<'a> =
    Pin<Box<dyn Future<Output = Result<RunEnd, kleene_jail::Error>> + Send + 'a>>;

/// The future [`Jails::end`] returns.
pub type EndFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Runs build steps in jails.
pub trait Jails: Send + Sync + fmt::Debug {
    /// Runs `run` to its end in the build container named `run.name` (started by this run
    /// when there is none, or when the running one has another root or network), sending
    /// its output (unless quiet) to `events` line by line; when `cancel` changes or its
    /// sender is dropped, kills the command and its container and answers
    /// [`RunEnd::Cancelled`].
    fn run<'a>(
        &'a self,
        run: JailRun,
        events: &'a Events,
        cancel: watch::Receiver<()>,
    ) -> RunFuture<'a>;

    /// Stops the build container `name` and everything in it, if it runs. Nothing of it is
    /// left running when the future completes.
    fn end<'a>(&'a self, name: &'a str) -> EndFuture<'a>;
}

/// How long a build container's processes get to end after SIGTERM when it is ended.
const BUILD_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A running build container. Dropped without [`Jails::end`] (a build whose future was
/// dropped), it is killed.
#[derive(Debug)]
struct BuildJail {
    jail: Option<kleene_jail::Jail>,
    root: PathBuf,
    network: NetworkMode,
}

impl Drop for BuildJail {
    fn drop(&mut self) {
        if let Some(jail) = &self.jail {
            let _ = jail.handle().kill_all();
        }
    }
}

/// The host's jails: FreeBSD jails or Linux namespaces, through kleene-jail.
#[derive(Debug, Default)]
pub struct HostJails {
    /// The build containers between two of their runs, by name.
    running: std::sync::Mutex<std::collections::HashMap<String, BuildJail>>,
}

impl HostJails {
    fn take(&self, name: &str) -> Option<BuildJail> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name)
    }

    fn put(&self, name: String, jail: BuildJail) {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name, jail);
    }
}

impl JailRun {
    /// The jail's configuration, its standard streams left to the caller: the one place
    /// where the engine's words (network, parameters, user, workdir) become kleene-jail's,
    /// for build steps and containers alike.
    pub(crate) fn jail_config(&self) -> JailConfig {
        let mut cfg = JailConfig::new(&self.root)
            .name(self.name.as_str())
            .hostname(self.hostname.as_str())
            .network(self.network.clone())
            .process(self.exec_config());
        for p in &self.params {
            cfg = cfg.param(p.param().clone());
        }
        for m in &self.mounts {
            cfg = cfg.mount(m.clone());
        }
        if let Some(u) = self.userns {
            // The root's files, owned by host ids, are seen through the namespace: root's
            // own are container root's. Where the file system cannot do that (zfs-fuse),
            // the start is refused, naming it.
            cfg = cfg
                .user_namespace(vec![u.mapping()], vec![u.mapping()])
                .idmapped_root(true);
        }
        cfg
    }

    /// The process of the run: its command, clean environment, user and workdir (the jail's
    /// first process, or one started in a running build container).
    pub(crate) fn exec_config(&self) -> kleene_jail::ExecConfig {
        let mut cfg = kleene_jail::ExecConfig::new(&self.argv).clean_env(true);
        for (k, v) in &self.env {
            cfg = cfg.env(k, v);
        }
        if let Some(u) = &self.user {
            cfg = cfg.user(u.as_str());
        }
        if let Some(w) = &self.workdir {
            cfg = cfg.workdir(w.as_str());
        }
        if let Some(p) = &self.seccomp {
            cfg = cfg.seccomp(p.clone());
        }
        cfg
    }
}

impl HostJails {
    /// The build container `run` runs in, and the process it started there when the
    /// container was already running (`None` when `run` is a new container's first process).
    async fn enter(
        &self,
        run: &JailRun,
    ) -> Result<(BuildJail, Option<kleene_jail::Process>), kleene_jail::Error> {
        let mut running = self.take(&run.name);
        if running
            .as_ref()
            .is_some_and(|b| b.root != run.root || b.network != run.network)
        {
            // Another network (RUN --network) or root: a container of its own.
            if let Some(mut old) = running.take() {
                stop(&mut old).await;
            }
        }
        match running {
            Some(b) => {
                let jail = b.jail.as_ref().ok_or(kleene_jail::Error::NotRunning)?;
                let p = jail
                    .exec(
                        &run.exec_config()
                            .stdin(kleene_jail::Stdio::Null)
                            .stdout(output_stdio(run.quiet))
                            .stderr(output_stdio(run.quiet)),
                    )
                    .await;
                match p {
                    Ok(p) => Ok((b, Some(p))),
                    Err(e) => {
                        let mut b = b;
                        stop(&mut b).await;
                        Err(e)
                    }
                }
            }
            None => {
                let jail = run
                    .jail_config()
                    .lifetime(kleene_jail::Lifetime::Processes)
                    .param(kleene_jail::JailParam::with_bool("persist", true))
                    .stdin(kleene_jail::Stdio::Null)
                    .stdout(output_stdio(run.quiet))
                    .stderr(output_stdio(run.quiet))
                    .start()
                    .await?;
                let b = BuildJail {
                    jail: Some(jail),
                    root: run.root.clone(),
                    network: run.network.clone(),
                };
                Ok((b, None))
            }
        }
    }
}

/// Where a run's stdout and stderr go: nowhere when it is quiet, else to a pipe.
fn output_stdio(quiet: bool) -> kleene_jail::Stdio {
    if quiet {
        kleene_jail::Stdio::Null
    } else {
        kleene_jail::Stdio::Piped
    }
}

/// Forwards the run's output as events until its command ends, answering its status, or
/// `None` when `cancel` changes (or its sender is dropped) first.
async fn wait_run(
    process: &mut Option<kleene_jail::Process>,
    build: &mut BuildJail,
    events: &Events,
    mut cancel: watch::Receiver<()>,
) -> Option<Result<ExitStatus, kleene_jail::Error>> {
    let (stdout, stderr) = match (&mut *process, build.jail.as_mut()) {
        (Some(p), _) => (p.stdout.take(), p.stderr.take()),
        (None, Some(j)) => (j.process_mut().stdout.take(), j.process_mut().stderr.take()),
        (None, None) => (None, None),
    };
    let ended = async {
        match (process, build.jail.as_mut()) {
            (Some(p), _) => p.wait().await,
            (None, Some(j)) => j.wait_command().await.map(|e| e.status),
            (None, None) => Err(kleene_jail::Error::NotRunning),
        }
    };
    let io = async {
        let pumps = async {
            tokio::join!(
                pump(stdout, OutputStream::Stdout, events),
                pump(stderr, OutputStream::Stderr, events)
            )
        };
        tokio::pin!(pumps);
        tokio::pin!(ended);
        // What the command left running in the background may hold its output
        // open: once it ended, what is already written is read, no more.
        let status = tokio::select! {
            _ = &mut pumps => (&mut ended).await,
            status = &mut ended => {
                let _ = tokio::time::timeout(OUTPUT_GRACE, &mut pumps).await;
                status
            }
        };
        status
    };
    tokio::select! {
        s = io => Some(s),
        _ = cancel.changed() => None,
    }
}

/// Kills and reaps the process a run started in a running build container, if any.
///
/// A process exec started is our child, in the jail's pid namespace: it must be
/// reaped before the jail's init can finish dying (the kernel waits for every
/// process of the namespace to be reaped).
async fn reap(process: Option<kleene_jail::Process>) {
    if let Some(mut p) = process {
        let _ = p.signal(Signal::SIGKILL);
        let _ = p.wait().await;
    }
}

impl Jails for HostJails {
    fn run<'a>(
        &'a self,
        run: JailRun,
        events: &'a Events,
        cancel: watch::Receiver<()>,
    ) -> RunFuture<'a> {
        Box::pin(async move {
            let (mut build, mut process) = self.enter(&run).await?;
            let status = wait_run(&mut process, &mut build, events, cancel).await;
            let Some(status) = status else {
                reap(process).await;
                stop_now(&mut build).await;
                return Ok(RunEnd::Cancelled);
            };
            let status = match status {
                Ok(s) => s,
                Err(e) => {
                    reap(process).await;
                    stop_now(&mut build).await;
                    return Err(e);
                }
            };
            self.put(run.name.clone(), build);
            Ok(RunEnd::Exited(status))
        })
    }

    fn end<'a>(&'a self, name: &'a str) -> EndFuture<'a> {
        Box::pin(async move {
            if let Some(mut b) = self.take(name) {
                stop(&mut b).await;
            }
        })
    }
}

/// How long a RUN's output is still read after it ended, while processes it started in
/// the background keep its pipes open.
const OUTPUT_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// Stops a build container: SIGTERM to all of it, SIGKILL after [`BUILD_STOP_TIMEOUT`].
async fn stop(b: &mut BuildJail) {
    if let Some(mut jail) = b.jail.take() {
        let _ = jail.stop(BUILD_STOP_TIMEOUT).await;
    }
}

/// Kills a build container at once (a cancelled or broken run).
async fn stop_now(b: &mut BuildJail) {
    if let Some(mut jail) = b.jail.take() {
        let _ = jail.handle().kill_all();
        let _ = jail.wait().await;
        let _ = jail.teardown().await;
    }
}

/// Forwards a jail's output, line by line, as events.
async fn pump(r: Option<kleene_jail::ChildOutput>, stream: OutputStream, events: &Events) {
    let Some(r) = r else {
        return;
    };
    let mut r = tokio::io::BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                }
                events.emit(Event::Output {
                    stream,
                    data: String::from_utf8_lossy(&buf).into_owned(),
                });
            }
        }
    }
}
