//! Image builds (`klee build`): a build dataset cloned from the parent image's snapshot,
//! each RUN in a fresh jail on it and each COPY/ADD written into it, a ZFS snapshot after
//! each, a failed build kept as `<name>:failed`, and a snapshot build cache.

mod copy;
mod glob;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use kleene_dockerfile::{Dockerfile, Instruction as Ins, ShellOrExec, Stage};
use kleene_jail::{JailConfig, JailParam, NetworkMode, Signal};
use kleene_zfs::{DatasetName, Properties, SnapshotName};
use sha2::{Digest, Sha256};
use tokio::io::AsyncBufReadExt;

use self::copy::{Perms, Source};
use self::glob::Ignore;
use crate::engine::{Engine, OpLock, PROP_ID};
use crate::error::{CoreError, Result};
use crate::event::{Event, Events, OutputStream};
use crate::id::Id;
use crate::image::{parse_nametag, IMAGE_SNAPSHOT};
use crate::model::{Image, ImageConfig, Instruction, Network};

/// A build request (`klee build`).
#[derive(Debug, Clone, Default)]
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
    pub jail_params: Vec<String>,
    /// On failure remove everything instead of keeping `<name>:failed`.
    pub rm: bool,
    /// No [`Event::Output`] events (RUN output is discarded).
    pub quiet: bool,
    /// Run every step, using and feeding no cache.
    pub no_cache: bool,
    /// The network of RUN: `host` (default) or `disabled`.
    pub network: Option<String>,
}

impl BuildRequest {
    /// A request for the context `context` with the defaults.
    pub fn new(context: impl Into<PathBuf>) -> Self {
        Self {
            context: context.into(),
            ..Self::default()
        }
    }
}

/// What a successful build made.
#[derive(Debug, Clone)]
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

/// One stage being built.
struct StageState {
    id: Id,
    dataset: DatasetName,
    root: Option<PathBuf>,
    /// The snapshot the dataset is (or will be) cloned from, and the image owning it.
    base: SnapshotName,
    base_owner: Id,
    /// Everything since the last snapshot, for cache keys.
    chain: Sha256,
    last_snapshot: Option<String>,
    config: ImageConfig,
    cmd_inherited: bool,
    env: Vec<(String, String)>,
    args: Vec<(String, String)>,
    shell: Vec<String>,
    pending_dirs: Vec<String>,
}

impl StageState {
    /// ARGs then ENV (a later pair wins, so ENV wins over ARG).
    fn vars(&self) -> Vec<(String, String)> {
        let mut v = self.args.clone();
        v.extend(self.env.iter().cloned());
        v
    }

    /// The environment of RUN: ENV overrides ARG; each name once.
    fn run_env(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in self.vars() {
            if let Some(slot) = out.iter_mut().find(|(n, _)| *n == k) {
                slot.1 = v;
            } else {
                out.push((k, v));
            }
        }
        out
    }

    fn reset_chain(&mut self, snapshot: &str) {
        self.chain = Sha256::new();
        self.chain.update(snapshot.as_bytes());
        self.chain.update([0]);
    }

    fn parent(&self) -> String {
        format!("{}@{}", self.base_owner, self.base.snapshot())
    }
}

/// A finished stage of this build.
struct DoneStage {
    name: Option<String>,
    index: usize,
    id: Id,
    root: PathBuf,
    config: ImageConfig,
    snapshot: SnapshotName,
    last_snapshot: Option<String>,
}

fn hex(h: Sha256) -> String {
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn env_list(env: &[(String, String)]) -> Vec<String> {
    env.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn set_pair(list: &mut Vec<(String, String)>, k: &str, v: String) {
    if let Some(slot) = list.iter_mut().find(|(n, _)| n == k) {
        slot.1 = v;
    } else {
        list.push((k.to_string(), v));
    }
}

fn expand_err(text: &str, e: impl std::fmt::Display) -> CoreError {
    CoreError::InvalidInput(format!("{text}: {e}"))
}

/// The text a step is shown with: its source, continuation lines joined, a heredoc's
/// body left out.
fn step_text(source: &str, span: kleene_dockerfile::Span, ins: Option<&Ins>) -> String {
    let raw = source.get(span.range()).unwrap_or("");
    let has_heredoc = match ins {
        Some(Ins::Run(r)) => !r.heredocs.is_empty(),
        Some(Ins::Copy(c)) => !c.heredocs.is_empty(),
        Some(Ins::Add(a)) => !a.heredocs.is_empty(),
        _ => false,
    };
    let raw = if has_heredoc {
        raw.lines().next().unwrap_or("")
    } else {
        raw
    };
    raw.split('\n')
        .map(|l| l.trim_end_matches('\r').trim_end_matches('\\').trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Stages a stage depends on: FROM another stage, COPY --from a stage.
fn stage_ref(df: &Dockerfile, upto: usize, name: &str) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    df.stages[..upto]
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
        .or_else(|| name.parse::<usize>().ok().filter(|i| *i < upto))
}

fn needed_stages(df: &Dockerfile, target: usize) -> Vec<usize> {
    let mut need = vec![false; df.stages.len()];
    need[target] = true;
    for i in (0..=target).rev() {
        if !need[i] {
            continue;
        }
        let s = &df.stages[i];
        if let Some(j) = stage_ref(df, i, &s.from.image) {
            need[j] = true;
        }
        for ins in &s.instructions {
            if let Ins::Copy(c) = &ins.node {
                if let Some(j) = c.from.as_deref().and_then(|f| stage_ref(df, i, f)) {
                    need[j] = true;
                }
            }
        }
    }
    (0..=target).filter(|i| need[*i]).collect()
}

impl Engine {
    /// Builds an image from a Dockerfile (`klee build`). Events tell the progress as klee
    /// prints it: [`Event::BuildStarted`], [`Event::BuildStep`], [`Event::Output`],
    /// [`Event::SnapshotCreated`], [`Event::StepCached`], [`Event::BuildFailed`].
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
            req,
            events,
            cancel,
            consumed: HashSet::new(),
            source: String::new(),
            cached: 0,
            runs: 0,
        };
        let task = tokio::spawn(builder.run());
        let result = task
            .await
            .map_err(|e| CoreError::Internal(format!("build task failed: {e}")))?;
        drop(cancel_on_drop);
        result
    }
}

struct Builder {
    engine: Engine,
    req: BuildRequest,
    events: Events,
    /// Closed when the caller dropped the build.
    cancel: tokio::sync::watch::Receiver<()>,
    consumed: HashSet<String>,
    source: String,
    cached: usize,
    runs: usize,
}

/// Failure of a stage: the error, and the stage's state if it has a row.
type StageFailure = (CoreError, Option<StageState>);

impl Builder {
    fn cancelled(&self) -> bool {
        self.cancel.has_changed().is_err()
    }

    async fn run(mut self) -> Result<BuildOutcome> {
        let req = self.req.clone();
        let context = std::fs::canonicalize(&req.context)
            .map_err(|e| CoreError::io(format!("build context {}", req.context.display()), e))?;
        if !context.is_dir() {
            return Err(CoreError::InvalidInput(format!(
                "build context {} is not a directory",
                context.display()
            )));
        }
        let df_path = req
            .dockerfile
            .clone()
            .unwrap_or_else(|| context.join("Dockerfile"));
        self.source = std::fs::read_to_string(&df_path)
            .map_err(|e| CoreError::io(format!("reading {}", df_path.display()), e))?;
        let df = Dockerfile::parse(&self.source).map_err(|e| {
            let name = df_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "Dockerfile".into());
            CoreError::InvalidInput(e.with_file_name(name).to_string())
        })?;
        let ignore = match std::fs::read_to_string(context.join(".dockerignore")) {
            Ok(t) => Some(Ignore::parse(&t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(CoreError::io("reading .dockerignore", e)),
        };
        let target = match &req.target {
            None => df.stages.len() - 1,
            Some(t) => stage_ref(&df, df.stages.len(), t).ok_or_else(|| {
                CoreError::InvalidInput(format!("target stage {t:?} could not be found"))
            })?,
        };
        let nametag = req.tag.as_deref().map(parse_nametag).transpose()?;
        match req.network.as_deref() {
            None | Some("host") | Some("disabled") => {}
            Some(other) => {
                return Err(CoreError::Unsupported(format!(
                    "network {other:?} is not supported yet: use \"host\" or \"disabled\""
                )))
            }
        }
        for p in &req.jail_params {
            JailParam::parse(p)
                .map_err(|e| CoreError::InvalidInput(format!("jail parameter {p:?}: {e}")))?;
        }
        // Global ARGs: build args override their defaults.
        let mut global_args: Vec<(String, String)> = Vec::new();
        for a in &df.global_args {
            let value = match req.build_args.iter().rev().find(|(k, _)| *k == a.name) {
                Some((_, v)) => {
                    self.consumed.insert(a.name.clone());
                    Some(v.clone())
                }
                None => match &a.default {
                    Some(d) => Some(
                        df.expand(d, &global_args)
                            .map_err(|e| expand_err(&format!("ARG {}", a.name), e))?,
                    ),
                    None => None,
                },
            };
            if let Some(v) = value {
                set_pair(&mut global_args, &a.name, v);
            }
        }
        let stages = needed_stages(&df, target);
        let total: usize = stages
            .iter()
            .map(|i| 1 + df.stages[*i].instructions.len())
            .sum();
        let op = OpLock::begin(&self.engine.inner.ops_dir)?;
        let final_id = Id::generate()?;
        self.events.emit(Event::BuildStarted {
            id: final_id.clone(),
        });
        let mut done: Vec<DoneStage> = Vec::new();
        let mut n = 0;
        for &i in &stages {
            let id = if i == target {
                final_id.clone()
            } else {
                Id::generate()?
            };
            let stage = &df.stages[i];
            let from_override = if i == target { req.from.clone() } else { None };
            let result = self
                .build_stage(
                    &df,
                    stage,
                    i,
                    id,
                    from_override,
                    &global_args,
                    &done,
                    &context,
                    ignore.as_ref(),
                    &op,
                    &mut n,
                    total,
                )
                .await;
            match result {
                Ok(st) => {
                    let finish_tag = if i == target { nametag.clone() } else { None };
                    let finished = self.finish_stage(st, finish_tag, stage, i).await;
                    match finished {
                        Ok(d) => done.push(d),
                        Err((e, st)) => return Err(self.fail(e, st, done, &nametag).await),
                    }
                }
                Err((e, st)) => return Err(self.fail(e, st, done, &nametag).await),
            }
        }
        let unused: Vec<&str> = req
            .build_args
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !self.consumed.contains(*k))
            .collect();
        if !unused.is_empty() {
            self.events.status(format!(
                "[Warning] One or more build-args [{}] were not consumed",
                unused.join(" ")
            ));
        }
        let last = done
            .pop()
            .ok_or_else(|| CoreError::Internal("no stage built".into()))?;
        // Intermediate stages go unless a later stage was cloned from them.
        for d in done.iter().rev() {
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
                        kind: "image",
                        reference: id.to_string(),
                    })
            })
            .await?;
        drop(op);
        self.events.emit(Event::ImageCreated {
            id: image.id.clone(),
        });
        Ok(BuildOutcome {
            image,
            snapshot: last.last_snapshot,
            steps: total,
            cached: self.cached,
            runs: self.runs,
        })
    }

    /// Turns a failure into the error returned, keeping `<name>:failed` or cleaning up.
    async fn fail(
        &self,
        e: CoreError,
        st: Option<StageState>,
        done: Vec<DoneStage>,
        nametag: &Option<(String, String)>,
    ) -> CoreError {
        let cancelled = self.cancelled() || matches!(e, CoreError::Cancelled);
        let Some(mut st) = st else {
            // Nothing of this stage exists; earlier stages go.
            self.remove_done(&done).await;
            return if cancelled { CoreError::Cancelled } else { e };
        };
        let reason = e.to_string();
        if cancelled || self.req.rm {
            if let Err(ce) = self.discard(&st).await {
                log::warn!("could not clean up build {}: {ce}", st.id);
            }
            self.remove_done(&done).await;
            if cancelled {
                return CoreError::Cancelled;
            }
            self.events.emit(Event::BuildFailed {
                image: st.id.clone(),
                snapshot: None,
                reason: reason.clone(),
            });
            return CoreError::BuildFailed {
                image_id: st.id,
                snapshot: None,
                reason,
            };
        }
        // Keep the state as <name>:failed.
        let kept = async {
            self.materialize(&mut st).await?;
            let name = nametag.as_ref().map(|(n, _)| n.clone()).unwrap_or_default();
            let tag = if name.is_empty() {
                String::new()
            } else {
                "failed".to_string()
            };
            let id = st.id.clone();
            let dataset = st.dataset.clone();
            let parent = st.parent();
            let config = st.config.clone();
            self.engine
                .blocking(move |inner| {
                    inner
                        .zfs
                        .snapshot(&dataset.snapshot(IMAGE_SNAPSHOT)?, &Properties::new())?;
                    inner
                        .store()
                        .finish_image(&id, &name, &tag, Some(&parent), &config)
                })
                .await
        }
        .await;
        if let Err(ke) = kept {
            log::warn!("could not keep the failed build {}: {ke}", st.id);
            let _ = self.discard(&st).await;
            return CoreError::BuildFailed {
                image_id: st.id,
                snapshot: None,
                reason,
            };
        }
        self.events.emit(Event::BuildFailed {
            image: st.id.clone(),
            snapshot: st.last_snapshot.clone(),
            reason: reason.clone(),
        });
        CoreError::BuildFailed {
            image_id: st.id,
            snapshot: st.last_snapshot,
            reason,
        }
    }

    async fn remove_done(&self, done: &[DoneStage]) {
        for d in done.iter().rev() {
            if let Err(e) = self.engine.remove_image(d.id.as_str()).await {
                log::warn!("could not remove build stage {}: {e}", d.id);
            }
        }
    }

    /// Removes a stage's dataset and row.
    async fn discard(&self, st: &StageState) -> Result<()> {
        let id = st.id.clone();
        let dataset = st.dataset.to_string();
        self.engine
            .blocking(move |inner| {
                inner.destroy_dataset(&dataset)?;
                inner.store().delete_row("images", id.as_str())
            })
            .await
    }

    /// Makes the stage's dataset (a clone of its base snapshot) if it does not exist yet.
    async fn materialize(&self, st: &mut StageState) -> Result<()> {
        if st.root.is_some() {
            return Ok(());
        }
        let id = st.id.clone();
        let base = st.base.clone();
        let dataset = st.dataset.clone();
        let parent = st.parent();
        let dirs = st.pending_dirs.clone();
        let root = self
            .engine
            .blocking(move |inner| {
                inner.store().set_image_parent(&id, &parent)?;
                inner.zfs.clone_snapshot(
                    &base,
                    &dataset,
                    &Properties::new().with(PROP_ID, id.as_str())?,
                )?;
                crate::failpoint("build-after-clone");
                let root = inner.mountpoint(&dataset)?;
                for d in &dirs {
                    copy::make_dir(&root, d)?;
                }
                Ok(root)
            })
            .await?;
        st.pending_dirs.clear();
        st.root = Some(root);
        Ok(())
    }

    /// Snapshots the stage after a step, records it in the cache, tells the user.
    async fn snapshot(&self, st: &mut StageState, key: Option<String>) -> Result<String> {
        let snap = Id::generate()?;
        let name = st.dataset.snapshot(snap.as_str())?;
        let id = st.id.clone();
        let s = snap.to_string();
        self.engine
            .blocking(move |inner| {
                inner.zfs.snapshot(&name, &Properties::new())?;
                if let Some(k) = key {
                    inner.store().cache_insert(&k, &id, &s)?;
                }
                crate::failpoint("build-after-snapshot");
                Ok(())
            })
            .await?;
        let shown = format!("@{snap}");
        self.events.emit(Event::SnapshotCreated {
            snapshot: shown.clone(),
        });
        st.last_snapshot = Some(shown.clone());
        let full = format!("{}@{snap}", st.id);
        st.reset_chain(&full);
        Ok(shown)
    }

    /// Looks a step up in the cache: on a hit (its image and snapshot still exist), the
    /// stage continues from that snapshot.
    async fn try_cache(&mut self, st: &mut StageState, key: &str) -> Result<bool> {
        if self.req.no_cache || st.root.is_some() {
            return Ok(false);
        }
        let key = key.to_string();
        let me = st.id.clone();
        let hit = self
            .engine
            .blocking(move |inner| {
                let Some((image_id, snap)) = inner.store().cache_lookup(&key)? else {
                    return Ok(None);
                };
                let alive = match inner.store().image(&image_id)? {
                    Some(image) => {
                        let s = DatasetName::new(image.dataset.as_str())?.snapshot(&snap)?;
                        inner.zfs.exists(&s)?.then_some(s)
                    }
                    None => None,
                };
                match alive {
                    Some(s) => {
                        // Our row names it as parent at once: the image cannot go now.
                        inner
                            .store()
                            .set_image_parent(&me, &format!("{image_id}@{snap}"))?;
                        Ok(Some((image_id, s)))
                    }
                    None => {
                        inner.store().cache_delete(&key)?;
                        Ok(None)
                    }
                }
            })
            .await?;
        let Some((owner, snap)) = hit else {
            return Ok(false);
        };
        let shown = format!("{owner}@{}", snap.snapshot());
        self.events.emit(Event::StepCached {
            snapshot: shown.clone(),
        });
        st.base = snap;
        st.base_owner = owner;
        st.last_snapshot = Some(shown.clone());
        st.reset_chain(&shown);
        self.cached += 1;
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    async fn build_stage(
        &mut self,
        df: &Dockerfile,
        stage: &Stage,
        index: usize,
        id: Id,
        from_override: Option<String>,
        global_args: &[(String, String)],
        done: &[DoneStage],
        context: &Path,
        ignore: Option<&Ignore>,
        op: &OpLock,
        n: &mut usize,
        total: usize,
    ) -> std::result::Result<StageState, StageFailure> {
        *n += 1;
        let from_text = step_text(&self.source, stage.from.span, None);
        self.events.emit(Event::BuildStep {
            n: *n,
            total,
            text: from_text.clone(),
        });
        let reference = match from_override {
            Some(r) => r,
            None => df
                .expand(&stage.from.image, global_args)
                .map_err(|e| (expand_err("FROM", e), None))?,
        };
        if reference == "scratch" {
            return Err((
                CoreError::Unsupported(
                    "FROM scratch is not supported: a kleene build starts from an image".into(),
                ),
                None,
            ));
        }
        let (base, base_owner, parent_config) = match stage_ref(df, index, &reference)
            .and_then(|j| done.iter().find(|d| d.index == j))
        {
            Some(d) => (d.snapshot.clone(), d.id.clone(), d.config.clone()),
            None => {
                let (image, snap) = self
                    .engine
                    .resolve_image(&reference)
                    .await
                    .map_err(|e| (e, None))?;
                (snap, image.id, image.config)
            }
        };
        let dataset = self
            .engine
            .inner
            .image_root
            .child(id.as_str())
            .map_err(|e| (e.into(), None))?;
        {
            let (id, ds, token) = (id.clone(), dataset.to_string(), op.token.clone());
            self.engine
                .blocking(move |inner| {
                    inner.store().insert_pending_image(&id, &ds, &token)?;
                    crate::failpoint("build-after-row");
                    Ok(())
                })
                .await
                .map_err(|e| (e, None))?;
        }
        let mut st = StageState {
            id,
            dataset,
            root: None,
            base: base.clone(),
            base_owner: base_owner.clone(),
            chain: Sha256::new(),
            last_snapshot: None,
            config: ImageConfig {
                instructions: vec![Instruction {
                    text: from_text,
                    snapshot: None,
                }],
                ..parent_config
            },
            cmd_inherited: true,
            env: Vec::new(),
            args: Vec::new(),
            shell: vec!["/bin/sh".into(), "-c".into()],
            pending_dirs: Vec::new(),
        };
        for kv in &st.config.env {
            if let Some((k, v)) = kv.split_once('=') {
                st.env.push((k.to_string(), v.to_string()));
            }
        }
        st.reset_chain(&format!("{base_owner}@{}", base.snapshot()));
        for ins in &stage.instructions {
            *n += 1;
            let text = step_text(&self.source, ins.span, Some(&ins.node));
            self.events.emit(Event::BuildStep {
                n: *n,
                total,
                text: text.clone(),
            });
            if self.cancelled() {
                return Err((CoreError::Cancelled, Some(st)));
            }
            st.chain.update(text.as_bytes());
            st.chain.update([0]);
            let step = self
                .step(df, &ins.node, &mut st, global_args, done, context, ignore)
                .await;
            match step {
                Ok(snapshot) => st.config.instructions.push(Instruction { text, snapshot }),
                Err(e) => return Err((e, Some(st))),
            }
        }
        Ok(st)
    }

    async fn finish_stage(
        &self,
        mut st: StageState,
        nametag: Option<(String, String)>,
        stage: &Stage,
        index: usize,
    ) -> std::result::Result<DoneStage, StageFailure> {
        if let Err(e) = self.materialize(&mut st).await {
            return Err((e, Some(st)));
        }
        let id = st.id.clone();
        let dataset = st.dataset.clone();
        let parent = st.parent();
        let config = st.config.clone();
        let finished = self
            .engine
            .blocking(move |inner| {
                let snap = dataset.snapshot(IMAGE_SNAPSHOT)?;
                inner.zfs.snapshot(&snap, &Properties::new())?;
                crate::failpoint("build-before-finish");
                let (name, tag) = nametag.unwrap_or_default();
                inner
                    .store()
                    .finish_image(&id, &name, &tag, Some(&parent), &config)?;
                Ok(snap)
            })
            .await;
        match finished {
            Ok(snapshot) => Ok(DoneStage {
                name: stage.name.clone(),
                index,
                id: st.id.clone(),
                root: st.root.clone().unwrap_or_default(),
                config: st.config,
                snapshot,
                last_snapshot: st.last_snapshot,
            }),
            Err(e) => Err((e, Some(st))),
        }
    }

    /// Runs one instruction; the snapshot it made, if any.
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &mut self,
        df: &Dockerfile,
        ins: &Ins,
        st: &mut StageState,
        global_args: &[(String, String)],
        done: &[DoneStage],
        context: &Path,
        ignore: Option<&Ignore>,
    ) -> Result<Option<String>> {
        let vars = st.vars();
        let ex = |w: &str, what: &str| df.expand(w, &vars).map_err(|e| expand_err(what, e));
        match ins {
            Ins::From(_) => Err(CoreError::Internal("FROM inside a stage".into())),
            Ins::Env(kvs) => {
                for kv in kvs {
                    let vars = st.vars();
                    let v = df
                        .expand(&kv.value, &vars)
                        .map_err(|e| expand_err(&format!("ENV {}", kv.key), e))?;
                    st.chain.update(format!("{}={v}", kv.key).as_bytes());
                    set_pair(&mut st.env, &kv.key, v);
                }
                st.config.env = env_list(&st.env);
                Ok(None)
            }
            Ins::Arg(decls) => {
                for d in decls {
                    let value = match self.req.build_args.iter().rev().find(|(k, _)| *k == d.name) {
                        Some((_, v)) => {
                            self.consumed.insert(d.name.clone());
                            Some(v.clone())
                        }
                        None => match &d.default {
                            Some(def) => Some(
                                df.expand(def, &st.vars())
                                    .map_err(|e| expand_err(&format!("ARG {}", d.name), e))?,
                            ),
                            None => global_args
                                .iter()
                                .find(|(k, _)| *k == d.name)
                                .map(|(_, v)| v.clone()),
                        },
                    };
                    if let Some(v) = value {
                        st.chain.update(format!("{}={v}", d.name).as_bytes());
                        set_pair(&mut st.args, &d.name, v);
                    }
                }
                Ok(None)
            }
            Ins::User(u) => {
                st.config.user = ex(u, "USER")?;
                Ok(None)
            }
            Ins::Workdir(w) => {
                let w = ex(w, "WORKDIR")?;
                let path = if w.starts_with('/') {
                    w
                } else {
                    format!("{}/{w}", st.config.workdir)
                };
                let clean = format!("/{}", crate::rootfs::clean(&path).join("/"));
                st.chain.update(clean.as_bytes());
                st.config.workdir = clean.clone();
                match &st.root {
                    Some(root) => {
                        let root = root.clone();
                        self.engine
                            .blocking(move |_| copy::make_dir(&root, &clean))
                            .await?;
                    }
                    None => st.pending_dirs.push(clean),
                }
                Ok(None)
            }
            Ins::Cmd(c) => {
                st.config.cmd = self.command(c, st);
                st.cmd_inherited = false;
                Ok(None)
            }
            Ins::Entrypoint(c) => {
                st.config.entrypoint = self.command(c, st);
                if st.cmd_inherited {
                    st.config.cmd.clear();
                }
                Ok(None)
            }
            Ins::Shell(v) => {
                st.shell = v.clone();
                Ok(None)
            }
            Ins::Label(kvs) => {
                for kv in kvs {
                    let k = ex(&kv.key, "LABEL")?;
                    let v = ex(&kv.value, "LABEL")?;
                    if let Some(slot) = st.config.labels.iter_mut().find(|(n, _)| *n == k) {
                        slot.1 = v;
                    } else {
                        st.config.labels.push((k, v));
                    }
                }
                Ok(None)
            }
            Ins::Maintainer(m) => {
                let v = ex(m, "MAINTAINER")?;
                st.config.labels.retain(|(k, _)| k != "maintainer");
                st.config.labels.push(("maintainer".into(), v));
                Ok(None)
            }
            Ins::Expose(ports) => {
                for p in df
                    .expand_list(ports, &vars)
                    .map_err(|e| expand_err("EXPOSE", e))?
                {
                    let p = if p.contains('/') {
                        p
                    } else {
                        format!("{p}/tcp")
                    };
                    if !st.config.expose.contains(&p) {
                        st.config.expose.push(p);
                    }
                }
                Ok(None)
            }
            Ins::Volume(vols) => {
                for v in df
                    .expand_list(vols, &vars)
                    .map_err(|e| expand_err("VOLUME", e))?
                {
                    if !st.config.volumes.contains(&v) {
                        st.config.volumes.push(v);
                    }
                }
                Ok(None)
            }
            Ins::StopSignal(s) => {
                st.config.stop_signal = Some(ex(s, "STOPSIGNAL")?);
                Ok(None)
            }
            Ins::Healthcheck(_) => Err(CoreError::Unsupported(
                "HEALTHCHECK is not supported: kleene has no health checks".into(),
            )),
            Ins::Onbuild(_) => Err(CoreError::Unsupported(
                "ONBUILD is not supported by kleene builds".into(),
            )),
            Ins::Run(run) => self.run_step(run, st).await,
            Ins::Copy(c) => {
                if c.parents || !c.exclude.is_empty() {
                    return Err(CoreError::Unsupported(
                        "COPY --parents and --exclude are not supported".into(),
                    ));
                }
                let base: PathBuf;
                let (base_ref, ign, what): (&Path, Option<&Ignore>, &str) = match &c.from {
                    None => (context, ignore, "build context"),
                    Some(f) => {
                        let f = ex(f, "COPY --from")?;
                        let stage_index = done.iter().find(|d| {
                            d.name.as_deref() == Some(f.to_ascii_lowercase().as_str())
                                || f.parse::<usize>().ok() == Some(d.index)
                        });
                        base = match stage_index {
                            Some(d) => d.root.clone(),
                            None => {
                                let (image, _) = self.engine.resolve_image(&f).await?;
                                let ds = DatasetName::new(image.dataset.as_str())?;
                                self.engine
                                    .blocking(move |inner| inner.mountpoint(&ds))
                                    .await?
                            }
                        };
                        (&base, None, "source image")
                    }
                };
                let sources = df
                    .expand_list(&c.sources, &vars)
                    .map_err(|e| expand_err("COPY", e))?;
                let dest = ex(&c.dest, "COPY")?;
                let (chown, chmod) =
                    owner_and_mode(&ex, c.chown.as_deref(), c.chmod.as_deref(), "COPY")?;
                let heredocs: Vec<(String, Vec<u8>)> = c
                    .heredocs
                    .iter()
                    .map(|h| {
                        let body = if h.expand {
                            df.expander()
                                .raw_quotes(true)
                                .raw_escapes(true)
                                .expand(&h.content, &vars)
                                .map_err(|e| expand_err("COPY heredoc", e))?
                        } else {
                            h.content.clone()
                        };
                        Ok((h.name.clone(), body.into_bytes()))
                    })
                    .collect::<Result<_>>()?;
                self.copy_step(
                    st, base_ref, ign, what, &sources, heredocs, &dest, chown, chmod, false,
                )
                .await
            }
            Ins::Add(a) => {
                if !a.exclude.is_empty() || a.keep_git_dir {
                    return Err(CoreError::Unsupported(
                        "ADD --exclude and --keep-git-dir are not supported".into(),
                    ));
                }
                let sources = df
                    .expand_list(&a.sources, &vars)
                    .map_err(|e| expand_err("ADD", e))?;
                let dest = ex(&a.dest, "ADD")?;
                let (chown, chmod) =
                    owner_and_mode(&ex, a.chown.as_deref(), a.chmod.as_deref(), "ADD")?;
                let checksum = a
                    .checksum
                    .as_deref()
                    .map(|s| ex(s, "ADD --checksum"))
                    .transpose()?;
                let mut heredocs: Vec<(String, Vec<u8>)> = a
                    .heredocs
                    .iter()
                    .map(|h| (h.name.clone(), h.content.clone().into_bytes()))
                    .collect();
                let (urls, local): (Vec<String>, Vec<String>) = sources
                    .into_iter()
                    .partition(|s| s.starts_with("http://") || s.starts_with("https://"));
                if checksum.is_some() && (urls.len() != 1 || !local.is_empty()) {
                    return Err(CoreError::InvalidInput(
                        "ADD --checksum needs exactly one http(s) source".into(),
                    ));
                }
                for u in &urls {
                    let data = fetch(u, checksum.as_deref()).await?;
                    let name = u
                        .split(['?', '#'])
                        .next()
                        .and_then(|p| p.rsplit('/').next())
                        .filter(|n| !n.is_empty())
                        .unwrap_or("index.html")
                        .to_string();
                    heredocs.push((name, data));
                }
                let unpack = a.unpack.unwrap_or(true);
                self.copy_step(
                    st,
                    context,
                    ignore,
                    "build context",
                    &local,
                    heredocs,
                    &dest,
                    chown,
                    chmod,
                    unpack,
                )
                .await
            }
        }
    }

    fn command(&self, c: &ShellOrExec, st: &StageState) -> Vec<String> {
        match c {
            ShellOrExec::Exec(v) => v.clone(),
            ShellOrExec::Shell(s) => {
                let mut v = st.shell.clone();
                v.push(s.clone());
                v
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn copy_step(
        &mut self,
        st: &mut StageState,
        base: &Path,
        ignore: Option<&Ignore>,
        what: &str,
        patterns: &[String],
        inline: Vec<(String, Vec<u8>)>,
        dest: &str,
        chown: Option<String>,
        chmod: Option<u32>,
        unpack: bool,
    ) -> Result<Option<String>> {
        let sources: Vec<Source> = if patterns.is_empty() {
            Vec::new()
        } else {
            let (b, pats, ig, w) = (
                base.to_path_buf(),
                patterns.to_vec(),
                ignore.cloned(),
                what.to_string(),
            );
            self.engine
                .blocking(move |_| copy::find_sources(&b, &pats, ig.as_ref(), &w))
                .await?
        };
        let count = sources.len() + inline.len();
        let wildcard = patterns.iter().any(|p| glob::has_meta(p));
        let dest_abs = if dest.starts_with('/') {
            dest.to_string()
        } else {
            format!("{}/{dest}", st.config.workdir)
        };
        let dest_dir_hint = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
        if (count > 1 || wildcard) && !dest_dir_hint && !(count == 1 && wildcard) {
            return Err(CoreError::InvalidInput(format!(
                "when copying more than one source, the destination must be a directory and end with a /: {dest}"
            )));
        }
        // The cache key: the state so far, the sources' contents, the destination.
        let mut key = st.chain.clone();
        {
            let (srcs, ig) = (sources.clone(), ignore.cloned());
            let digest = self
                .engine
                .blocking(move |_| copy::hash_sources(&srcs, ig.as_ref()))
                .await?;
            key.update(digest.as_bytes());
        }
        for (name, data) in &inline {
            key.update(name.as_bytes());
            key.update(Sha256::digest(data));
        }
        for part in [
            what,
            &dest_abs,
            &st.config.workdir,
            chown.as_deref().unwrap_or(""),
            &format!("{chmod:?}{unpack}"),
        ] {
            key.update(part.as_bytes());
            key.update([0]);
        }
        let key = hex(key);
        if self.try_cache(st, &key).await? {
            return Ok(None);
        }
        self.materialize(st).await?;
        let root = st.root.clone().unwrap_or_default();
        let ig = if what == "build context" {
            ignore.cloned()
        } else {
            None
        };
        let dest_dir_hint = dest_dir_hint || count > 1;
        self.engine
            .blocking(move |_| {
                let owner = match &chown {
                    Some(spec) => copy::parse_chown(&root, spec)?,
                    None => (0, 0),
                };
                let perms = Perms { owner, chmod };
                let into_dir = dest_dir_hint || copy::is_dir_in_root(&root, &dest_abs);
                for s in &sources {
                    if unpack && is_archive(&s.host) {
                        copy::unpack(&root, &dest_abs, owner, s)?;
                        continue;
                    }
                    copy::place(&root, s, &dest_abs, into_dir, perms, ig.as_ref())?;
                }
                for (name, data) in &inline {
                    let target = if into_dir || inline.len() > 1 {
                        format!("{dest_abs}/{name}")
                    } else {
                        dest_abs.clone()
                    };
                    copy::write_data(&root, &target, data, 0o644, perms)?;
                }
                Ok(())
            })
            .await?;
        let snap = self
            .snapshot(st, (!self.req.no_cache).then_some(key))
            .await?;
        Ok(Some(snap))
    }

    async fn run_step(
        &mut self,
        run: &kleene_dockerfile::Run,
        st: &mut StageState,
    ) -> Result<Option<String>> {
        if !run.flags.mounts.is_empty()
            || !run.flags.devices.is_empty()
            || run.flags.security.is_some()
        {
            return Err(CoreError::Unsupported(
                "RUN --mount, --device and --security are not supported".into(),
            ));
        }
        let network = match run.flags.network.as_deref().or(self.req.network.as_deref()) {
            None | Some("host") | Some("default") => Network::Host,
            Some("none") | Some("disabled") => Network::Disabled,
            Some(other) => {
                return Err(CoreError::Unsupported(format!(
                    "network {other:?} is not supported in RUN"
                )))
            }
        };
        let argv: Vec<String> = match &run.command {
            ShellOrExec::Exec(v) => v.clone(),
            ShellOrExec::Shell(s) => {
                let script = match run.heredocs.as_slice() {
                    // `RUN <<EOF` alone: the body is the script.
                    [h] if s.trim_start().starts_with("<<") && !s.trim().contains(' ') => {
                        h.content.clone()
                    }
                    hs => {
                        let mut script = s.clone();
                        for h in hs {
                            script.push('\n');
                            script.push_str(&h.content);
                            script.push_str(&h.name);
                        }
                        script
                    }
                };
                let mut v = st.shell.clone();
                v.push(script);
                v
            }
        };
        let env = st.run_env();
        let mut key = st.chain.clone();
        for part in argv
            .iter()
            .chain(env_list(&env).iter())
            .chain(self.req.jail_params.iter())
            .chain([&st.config.user, &st.config.workdir, &format!("{network:?}")])
        {
            key.update(part.as_bytes());
            key.update([0]);
        }
        let key = hex(key);
        if self.try_cache(st, &key).await? {
            return Ok(None);
        }
        self.materialize(st).await?;
        let root = st.root.clone().unwrap_or_default();
        if !st.config.workdir.is_empty() {
            let (r, w) = (root.clone(), st.config.workdir.clone());
            self.engine
                .blocking(move |_| copy::make_dir(&r, &w))
                .await?;
        }
        let out = if self.req.quiet {
            kleene_jail::Stdio::Null
        } else {
            kleene_jail::Stdio::Piped
        };
        let mut cfg = JailConfig::new(&root)
            .name(format!("kleene-build-{}", st.id))
            .hostname(st.id.as_str())
            .network(match network {
                Network::Host => NetworkMode::Inherit,
                Network::Disabled => NetworkMode::Disabled,
            })
            .command(&argv)
            .clean_env(true)
            .stdin(kleene_jail::Stdio::Null)
            .stdout(if self.req.quiet {
                kleene_jail::Stdio::Null
            } else {
                kleene_jail::Stdio::Piped
            })
            .stderr(out);
        for p in &self.req.jail_params {
            cfg = cfg.param(
                JailParam::parse(p)
                    .map_err(|e| CoreError::InvalidInput(format!("jail parameter {p:?}: {e}")))?,
            );
        }
        for (k, v) in &env {
            cfg = cfg.env(k, v);
        }
        if !st.config.user.is_empty() {
            cfg = cfg.user(st.config.user.as_str());
        }
        if !st.config.workdir.is_empty() {
            cfg = cfg.workdir(st.config.workdir.as_str());
        }
        let shown = argv.join(" ");
        let mut jail = cfg.start().await.map_err(|e| {
            CoreError::Conflict(format!("the command '{shown}' could not start: {e}"))
        })?;
        self.runs += 1;
        let killer = jail.handle().clone();
        let stdout = jail.process_mut().stdout.take();
        let stderr = jail.process_mut().stderr.take();
        let mut cancel = self.cancel.clone();
        let events = self.events.clone();
        let status = {
            let io = async {
                tokio::join!(
                    pump(stdout, OutputStream::Stdout, &events),
                    pump(stderr, OutputStream::Stderr, &events)
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
            return Err(CoreError::Cancelled);
        };
        let _ = jail.teardown().await;
        let status =
            status.map_err(|e| CoreError::Conflict(format!("the command '{shown}': {e}")))?;
        if !status.success() {
            return Err(CoreError::Conflict(format!(
                "the command '{shown}' returned a non-zero code: {}",
                status.shell_code()
            )));
        }
        let snap = self
            .snapshot(st, (!self.req.no_cache).then_some(key))
            .await?;
        Ok(Some(snap))
    }
}

/// Forwards a RUN's output, line by line, as events.
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

/// Whether a file is a tar archive (plain or compressed) that ADD unpacks.
fn is_archive(p: &Path) -> bool {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(p) else {
        return false;
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = Vec::new();
    if f.take(512).read_to_end(&mut head).is_err() {
        return false;
    }
    crate::archive::Compression::detect(&head).is_some()
}

/// Downloads an ADD source, checking `sha256:<hex>` when given.
/// `--chown` and `--chmod` of COPY or ADD (`what`), expanded; the mode parsed.
fn owner_and_mode(
    ex: &impl Fn(&str, &str) -> Result<String>,
    chown: Option<&str>,
    chmod: Option<&str>,
    what: &str,
) -> Result<(Option<String>, Option<u32>)> {
    let chown = chown
        .map(|s| ex(s, &format!("{what} --chown")))
        .transpose()?;
    let chmod = chmod
        .map(|s| ex(s, &format!("{what} --chmod")).and_then(|m| copy::parse_chmod(&m)))
        .transpose()?;
    Ok((chown, chmod))
}

async fn fetch(url: &str, checksum: Option<&str>) -> Result<Vec<u8>> {
    let err = |reason: String| CoreError::Fetch {
        url: url.to_string(),
        reason,
    };
    let resp = reqwest::get(url).await.map_err(|e| err(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(err(format!("server answered {}", resp.status())));
    }
    let data = resp.bytes().await.map_err(|e| err(e.to_string()))?.to_vec();
    if let Some(sum) = checksum {
        let want = sum.strip_prefix("sha256:").ok_or_else(|| {
            CoreError::InvalidInput(format!(
                "unsupported checksum {sum:?}: expected sha256:<hex>"
            ))
        })?;
        let got: String = Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if !got.eq_ignore_ascii_case(want) {
            return Err(err(format!("sha256 is {got}, expected {want}")));
        }
    }
    Ok(data)
}
