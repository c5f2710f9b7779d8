//! Image builds (`klee build`): a build dataset cloned from the parent image's snapshot,
//! each RUN in a fresh jail on it and each COPY/ADD written into it, a ZFS snapshot after
//! each, a failed build kept as `<name>:failed`, and a snapshot build cache.

//!
//! The work is split along its seams: [`plan`] (which stages, stage references, global
//! ARGs and build args), [`state`] (a stage's variables and configuration), [`stage`] (a
//! stage's dataset and row from FROM to finished or failed), [`cache`] (every cache key
//! and the cache itself), [`run`] (RUN through [`crate::jails::Jails`]) and [`copy`]
//! (COPY and ADD; downloads through [`crate::fetch`]).

mod cache;
mod copy;
mod glob;
mod plan;
mod run;
mod stage;
mod state;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use kleene_dockerfile::Instruction as Ins;

use self::plan::{BuildArgs, Plan};
use self::state::{DoneStage, StageState};
use crate::engine::{Engine, OpLock};
use crate::error::{CoreError, Object, Result};
use crate::event::{Event, Events};
use crate::id::Id;
use crate::interrupt::{AbortOnDrop, Interrupt};
use crate::model::{Driver, Image, JailParamText, MountSource, MountSpec};
use crate::network::Addresses;

/// A build request (`klee build`); build it with [`BuildRequest::new`] and its setters.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BuildRequest {
    /// The context directory: COPY and ADD read from here, and nowhere else.
    pub context: PathBuf,
    /// The Dockerfile; `<context>/Dockerfile` when `None`. A relative path is taken
    /// relative to the current directory.
    pub dockerfile: Option<PathBuf>,
    /// `name[:tag]` of the new image; untagged when `None`. A failed build is kept as
    /// `<name>:failed`.
    pub tag: Option<String>,
    /// `--build-arg NAME=value`: values for the ARGs the Dockerfile declares.
    pub build_args: Vec<(String, String)>,
    /// `--from IMAGE`: overrides the FROM of the stage built (`name[:tag][@snapshot]`, id).
    pub from: Option<String>,
    /// The stage to build (name or index); the last one when `None`.
    pub target: Option<String>,
    /// Jail parameters (`-J`) of every RUN.
    pub jail_params: Vec<JailParamText>,
    /// On failure remove everything instead of keeping `<name>:failed`.
    pub rm: bool,
    /// No [`Event::Output`] events (RUN output is discarded).
    pub quiet: bool,
    /// Run every step, using and feeding no cache.
    pub no_cache: bool,
    /// The network driver of RUN: `host` (the default) or `disabled`; with networks,
    /// their namespace unless `disabled` (`RUN --network` overrides it per step).
    pub network: Driver,
    /// The user of RUN steps before (and unless) a USER instruction (`build -u`).
    pub user: Option<String>,
    /// `KEY=value` pairs in the environment of RUN steps, under the Dockerfile's ENV and
    /// ARG (`build -e`).
    pub env: Vec<String>,
    /// Networks the RUN steps are connected to (`build -n`), with the addresses asked
    /// for: the steps share one network namespace with a link into each, for the build.
    pub networks: Vec<(String, Addresses)>,
    /// Volumes and host paths mounted into the build container (`build -m`): seen by the
    /// RUN steps, never part of a snapshot.
    pub mounts: Vec<MountSpec>,
    /// Stops the build from outside (Ctrl-C): the running step is killed and the build
    /// fails, its state kept as `<name>:failed` (unless `rm`), as for any failure.
    pub interrupt: Option<Interrupt>,
}

impl BuildRequest {
    /// A request for the context `context` with the defaults.
    pub fn new(context: impl Into<PathBuf>) -> Self {
        Self {
            context: context.into(),
            ..Self::default()
        }
    }

    /// Reads this Dockerfile instead of `<context>/Dockerfile`.
    pub fn dockerfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.dockerfile = Some(path.into());
        self
    }

    /// Names the new image `name[:tag]`.
    pub fn tag(mut self, nametag: impl Into<String>) -> Self {
        self.tag = Some(nametag.into());
        self
    }

    /// Gives a value to an ARG (`--build-arg NAME=value`); a later one for the same name wins.
    pub fn build_arg(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.build_args.push((name.into(), value.into()));
        self
    }

    /// Builds the stage on this image instead of its FROM (`--from`).
    pub fn from_image(mut self, image: impl Into<String>) -> Self {
        self.from = Some(image.into());
        self
    }

    /// Builds this stage (name or index) instead of the last.
    pub fn target(mut self, stage: impl Into<String>) -> Self {
        self.target = Some(stage.into());
        self
    }

    /// Adds a jail parameter of every RUN.
    pub fn jail_param(mut self, param: JailParamText) -> Self {
        self.jail_params.push(param);
        self
    }

    /// On failure, removes everything instead of keeping `<name>:failed`.
    pub fn rm(mut self, rm: bool) -> Self {
        self.rm = rm;
        self
    }

    /// Discards RUN output instead of sending it as events.
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// Runs every step, using and feeding no cache.
    pub fn no_cache(mut self, no_cache: bool) -> Self {
        self.no_cache = no_cache;
        self
    }

    /// Runs RUN steps as this user until a USER instruction (`build -u`).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Mounts a volume or host path into the build container (`build -m`).
    pub fn mount(mut self, mount: MountSpec) -> Self {
        self.mounts.push(mount);
        self
    }

    /// Adds `KEY=value` to the environment of RUN steps, under ENV and ARG (`build -e`).
    pub fn env(mut self, kv: impl Into<String>) -> Self {
        self.env.push(kv.into());
        self
    }

    /// Sets the network driver of RUN (`host` or `disabled`).
    pub fn driver(mut self, driver: Driver) -> Self {
        self.network = driver;
        self
    }

    /// Connects the RUN steps to a network (`build -n`), with the addresses asked for.
    pub fn network(mut self, network: impl Into<String>, addresses: Addresses) -> Self {
        self.networks.push((network.into(), addresses));
        self
    }

    /// Stops the build when `interrupt` fires: the running step is killed and the build
    /// fails, kept as `<name>:failed` unless `rm`.
    pub fn interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = Some(interrupt);
        self
    }
}

/// What a successful build made.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildOutcome {
    /// The new image.
    pub image: Image,
    /// The most recent snapshot of the build (`@<id>`; a cached step's is
    /// `<image id>@<id>`), if any step made one.
    pub snapshot: Option<String>,
    /// Steps (instructions, FROM included) of the stages built.
    pub steps: usize,
    /// RUN, COPY and ADD steps taken from the cache instead of being run.
    pub cached: usize,
    /// RUN steps that ran.
    pub runs: usize,
}

fn expand_err(text: &str, e: kleene_dockerfile::ExpandError) -> CoreError {
    CoreError::Expand {
        text: text.to_string(),
        source: e,
    }
}

impl Engine {
    /// Builds an image from a Dockerfile (`klee build`). Events tell the progress as klee
    /// prints it: [`Event::BuildStarted`], [`Event::BuildStep`], [`Event::Output`],
    /// [`Event::SnapshotCreated`], [`Event::StepCached`], [`Event::BuildFailed`], and
    /// [`Event::Download`] for ADD's URLs.
    ///
    /// Errors found before the build dataset exists (an unreadable or invalid
    /// Dockerfile, an unknown parent image, bad options) are returned as they are;
    /// a failure after it is [`CoreError::BuildFailed`], the state kept as
    /// `<name>:failed` unless `rm` was asked. Dropping the future cancels the build: the
    /// running jail is killed and nothing of the build is left.
    pub async fn build(&self, req: BuildRequest, events: Events) -> Result<BuildOutcome> {
        let (cancel_on_drop, cancel) = tokio::sync::watch::channel(());
        let builder = Builder {
            engine: self.clone(),
            args: BuildArgs::new(req.build_args.clone()),
            req,
            events,
            cancel,
            done: Vec::new(),
            n: 0,
            cached: 0,
            runs: 0,
            net: None,
            mounts: Vec::new(),
        };
        let task = tokio::spawn(builder.run());
        let result = task
            .await
            .map_err(|e| CoreError::Internal(format!("build task failed: {e}")))?;
        drop(cancel_on_drop);
        result
    }
}

/// The name of stage `id`'s build container (all its RUN steps run in it).
pub(crate) fn jail_name(id: &Id) -> String {
    format!("kleene-build-{id}")
}

/// A build in progress.
struct Builder {
    engine: Engine,
    req: BuildRequest,
    events: Events,
    /// Closed when the caller dropped the build.
    cancel: tokio::sync::watch::Receiver<()>,
    /// The build args, and which an ARG used.
    args: BuildArgs,
    /// The stages finished so far.
    done: Vec<DoneStage>,
    /// Steps begun so far.
    n: usize,
    cached: usize,
    runs: usize,
    /// The namespace of the build's networks, which RUN steps join (`build -n`).
    net: Option<kleene_jail::NetworkMode>,
    /// The build container's mounts (`build -m`), resolved.
    mounts: Vec<kleene_jail::Mount>,
}

/// Failure of a stage: the error, and the stage's state if it has a row.
type StageFailure = (CoreError, Option<StageState>);

impl Builder {
    fn cancelled(&self) -> bool {
        self.cancel.has_changed().is_err()
    }

    /// Whether the caller's [`Interrupt`] fired: the build stops and fails, kept as
    /// `<name>:failed`.
    fn interrupted(&self) -> bool {
        self.req
            .interrupt
            .as_ref()
            .is_some_and(|i| i.is_interrupted())
    }

    /// A receiver that a running step watches: it closes when the caller drops the build
    /// or fires its interrupt. The forwarding task ends with the returned guard.
    fn stop_watch(&self) -> (tokio::sync::watch::Receiver<()>, AbortOnDrop) {
        let (tx, rx) = tokio::sync::watch::channel(());
        let mut cancel = self.cancel.clone();
        let interrupt = self.req.interrupt.clone();
        let task = tokio::spawn(async move {
            let interrupted = async {
                match interrupt {
                    Some(i) => i.interrupted().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.changed() => {}
                _ = interrupted => {}
            }
            drop(tx);
        });
        (rx, AbortOnDrop(task))
    }

    async fn run(mut self) -> Result<BuildOutcome> {
        let plan = Plan::load(&self.req, &mut self.args)?;
        self.mounts = self.resolve_mounts().await?;
        let op = OpLock::begin(&self.engine.inner.ops_dir)?;
        let final_id = Id::generate()?;
        let networks = self.req.networks.clone();
        if !networks.is_empty() {
            let engine = self.engine.clone();
            let net = crate::network::build_network(&engine, &final_id, &op.token, &networks).await;
            match net {
                Ok(mode) => self.net = mode,
                Err(e) => {
                    let _ = crate::network::release_build_network(&engine, &final_id).await;
                    return Err(e);
                }
            }
            let result = self.build_all(plan, op, final_id.clone()).await;
            // The endpoints go with the build (the namespace with the last step).
            crate::network::release_build_network(&engine, &final_id).await?;
            return result;
        }
        self.build_all(plan, op, final_id).await
    }

    /// `build -m`: a volume's mountpoint or an existing host path, before any work.
    async fn resolve_mounts(&self) -> Result<Vec<kleene_jail::Mount>> {
        let mut out = Vec::new();
        for m in &self.req.mounts {
            let source = match &m.source {
                MountSource::Volume(v) => self.engine.volume(v).await?.mountpoint,
                MountSource::HostPath(p) => {
                    let p = PathBuf::from(p);
                    if !p.exists() {
                        return Err(CoreError::InvalidInput(format!(
                            "build mount {}: no such file or directory on the host",
                            p.display()
                        )));
                    }
                    p
                }
            };
            let mut mount = kleene_jail::Mount::bind(source, &m.destination);
            if m.read_only {
                mount = mount.read_only();
            }
            out.push(mount);
        }
        Ok(out)
    }

    async fn build_all(mut self, plan: Plan, op: OpLock, final_id: Id) -> Result<BuildOutcome> {
        self.events.emit(Event::BuildStarted {
            id: final_id.clone(),
        });
        for &i in &plan.stages {
            let id = if i == plan.target {
                final_id.clone()
            } else {
                Id::generate()?
            };
            let jail = jail_name(&id);
            let built = self.build_stage(&plan, i, id, &op).await;
            // The stage's build container ends with it, before its last snapshot (or
            // before it is kept as failed).
            self.engine.inner.jails.end(&jail).await;
            let built = match built {
                Ok(st) => self.finish_stage(st, plan.nametag_of(i)).await,
                Err(failure) => Err(failure),
            };
            match built {
                Ok(d) => self.done.push(d),
                Err((e, st)) => return Err(self.fail(e, st, &plan.nametag).await),
            }
        }
        let unused = self.args.unused();
        if !unused.is_empty() {
            self.events.status(format!(
                "[Warning] One or more build-args [{}] were not consumed",
                unused.join(" ")
            ));
        }
        let outcome = self.outcome(&plan).await?;
        drop(op);
        self.events.emit(Event::ImageCreated {
            id: outcome.image.id.clone(),
        });
        Ok(outcome)
    }

    /// After the last stage: intermediate stages removed (unless a later stage was cloned
    /// from them), the new image read back.
    async fn outcome(&mut self, plan: &Plan) -> Result<BuildOutcome> {
        let last = self
            .done
            .pop()
            .ok_or_else(|| CoreError::Internal("no stage built".into()))?;
        for d in self.done.iter().rev() {
            match self.engine.remove_image(d.id.as_str()).await {
                Ok(_) | Err(CoreError::InUse { .. }) => {}
                Err(e) => log::warn!("could not remove build stage {}: {e}", d.id),
            }
        }
        let id = last.id.clone();
        let image = self
            .engine
            .blocking(move |inner| {
                inner
                    .store()
                    .image(&id)?
                    .ok_or_else(|| CoreError::NotFound {
                        kind: Object::Image,
                        reference: id.to_string(),
                    })
            })
            .await?;
        Ok(BuildOutcome {
            image,
            snapshot: last.last_snapshot,
            steps: plan.total,
            cached: self.cached,
            runs: self.runs,
        })
    }

    /// Runs one instruction; the snapshot it made, if any.
    async fn step(
        &mut self,
        plan: &Plan,
        ins: &Ins,
        st: &mut StageState,
    ) -> Result<Option<String>> {
        match ins {
            Ins::Run(run) => self.run_step(run, st).await,
            Ins::Copy(c) => self.copy(plan, c, st).await,
            Ins::Add(a) => self.add(plan, a, st).await,
            Ins::Workdir(w) => {
                let dir = st.set_workdir(&plan.df, w)?;
                self.make_workdir(st, dir).await?;
                Ok(None)
            }
            other => {
                st.apply(&plan.df, other, &mut self.args, &plan.global_args)?;
                Ok(None)
            }
        }
    }
}
