//! How the engine runs a command in a jail for a build step: through [`Jails`], which is
//! kleene-jail on a real host ([`HostJails`]) and a stand-in in tests, so that builds can be
//! planned, cached and checked without root.

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
        }
    }
}

/// How a [`JailRun`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The command ended by itself.
    Exited(ExitStatus),
    /// The run was cancelled and its processes killed.
    Cancelled,
}

/// The future a [`Jails`] implementation returns.
pub type RunFuture<'a> =
    Pin<Box<dyn Future<Output = Result<RunEnd, kleene_jail::Error>> + Send + 'a>>;

/// Runs build steps in jails.
pub trait Jails: Send + Sync + fmt::Debug {
    /// Runs `run` to its end, sending its output (unless quiet) to `events` line by line;
    /// when `cancel` changes or its sender is dropped, kills it and answers
    /// [`RunEnd::Cancelled`]. Whatever
    /// happens, nothing of the jail is left running when the future completes.
    fn run<'a>(
        &'a self,
        run: JailRun,
        events: &'a Events,
        cancel: watch::Receiver<()>,
    ) -> RunFuture<'a>;
}

/// The host's jails: FreeBSD jails or Linux namespaces, through kleene-jail.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostJails;

impl JailRun {
    /// The jail's configuration, its standard streams left to the caller: the one place
    /// where the engine's words (network, parameters, user, workdir) become kleene-jail's,
    /// for build steps and containers alike.
    pub(crate) fn jail_config(&self) -> JailConfig {
        let mut cfg = JailConfig::new(&self.root)
            .name(self.name.as_str())
            .hostname(self.hostname.as_str())
            .network(self.network.clone())
            .command(&self.argv)
            .clean_env(true);
        for p in &self.params {
            cfg = cfg.param(p.param().clone());
        }
        for (k, v) in &self.env {
            cfg = cfg.env(k, v);
        }
        if let Some(u) = &self.user {
            cfg = cfg.user(u.as_str());
        }
        if let Some(w) = &self.workdir {
            cfg = cfg.workdir(w.as_str());
        }
        cfg
    }
}

impl Jails for HostJails {
    fn run<'a>(
        &'a self,
        run: JailRun,
        events: &'a Events,
        mut cancel: watch::Receiver<()>,
    ) -> RunFuture<'a> {
        Box::pin(async move {
            let out = || {
                if run.quiet {
                    kleene_jail::Stdio::Null
                } else {
                    kleene_jail::Stdio::Piped
                }
            };
            let mut jail = run
                .jail_config()
                .stdin(kleene_jail::Stdio::Null)
                .stdout(out())
                .stderr(out())
                .start()
                .await?;
            let killer = jail.handle().clone();
            let stdout = jail.process_mut().stdout.take();
            let stderr = jail.process_mut().stderr.take();
            let status = {
                let io = async {
                    tokio::join!(
                        pump(stdout, OutputStream::Stdout, events),
                        pump(stderr, OutputStream::Stderr, events)
                    );
                    jail.wait().await
                };
                tokio::select! {
                    s = io => Some(s),
                    _ = cancel.changed() => None,
                }
            };
            let Some(status) = status else {
                let _ = killer.signal(Signal::SIGKILL);
                let _ = jail.wait().await;
                let _ = jail.teardown().await;
                return Ok(RunEnd::Cancelled);
            };
            let _ = jail.teardown().await;
            Ok(RunEnd::Exited(status?))
        })
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
