//! A stage's life: its FROM resolved and its pending row written, its instructions run, its
//! dataset cloned when a step first writes, finished as an image, or, on failure, kept as
//! `<name>:failed` or removed.

use kleene_zfs::Properties;

use super::plan::Plan;
use super::state::{DoneStage, StageState};
use super::{expand_err, Builder, StageFailure};
use crate::engine::{OpLock, PROP_ID};
use crate::error::{CoreError, Result};
use crate::event::Event;
use crate::id::Id;
use crate::image::IMAGE_SNAPSHOT;
use crate::meta::Table;
use crate::model::Instruction;

impl Builder {
    /// Builds stage `index` as image `id`, up to its last instruction.
    pub(super) async fn build_stage(
        &mut self,
        plan: &Plan,
        index: usize,
        id: Id,
        op: &OpLock,
    ) -> std::result::Result<StageState, StageFailure> {
        let mut st = self
            .begin_stage(plan, index, id, op)
            .await
            .map_err(|e| (e, None))?;
        for ins in &plan.df.stages[index].instructions {
            let text = plan.step_text(ins.span, Some(&ins.node));
            self.step_started(plan, text.clone());
            if self.cancelled() {
                return Err((CoreError::Cancelled, Some(st)));
            }
            if self.interrupted() {
                return Err((CoreError::Interrupted, Some(st)));
            }
            st.chain.field(text.as_bytes());
            match self.step(plan, &ins.node, &mut st).await {
                Ok(snapshot) => st.config.instructions.push(Instruction { text, snapshot }),
                Err(e) => return Err((e, Some(st))),
            }
        }
        Ok(st)
    }

    /// Tells the user a step begins.
    fn step_started(&mut self, plan: &Plan, text: String) {
        self.n += 1;
        self.events.emit(Event::BuildStep {
            n: self.n,
            total: plan.total,
            text,
        });
    }

    /// FROM: the base resolved (a stage of this build, or an image), the stage's pending
    /// row written.
    async fn begin_stage(
        &mut self,
        plan: &Plan,
        index: usize,
        id: Id,
        op: &OpLock,
    ) -> Result<StageState> {
        let from = &plan.df.stages[index].from;
        let from_text = plan.step_text(from.span, None);
        self.step_started(plan, from_text.clone());
        let reference = match plan.base_override(index) {
            Some(r) => r,
            None => plan
                .df
                .expand(&from.image, &plan.global_args)
                .map_err(|e| expand_err("FROM", e))?,
        };
        if reference == "scratch" {
            return Err(CoreError::Unsupported(
                "FROM scratch is not supported: a kleene build starts from an image".into(),
            ));
        }
        let (base, parent_config) = match plan.built(&self.done, index, &reference) {
            Some(d) => ((d.snapshot.clone(), d.id.clone()), d.config.clone()),
            None => {
                let (image, snap) = match self.engine.resolve_image(&reference).await {
                    Ok(found) => found,
                    // `FROM registry.example/name:tag` that is not here: pulled, as
                    // Docker does (names without a registry are local images only).
                    Err(CoreError::NotFound { .. })
                        if crate::pull::names_a_registry(&reference) =>
                    {
                        let mut pull = crate::PullImage::new(reference.clone());
                        if let Some(i) = &self.req.interrupt {
                            pull = pull.interrupt(i.clone());
                        }
                        let image = self.engine.pull_image(pull, self.events.clone()).await?;
                        let snap = image.dataset.snapshot(crate::IMAGE_SNAPSHOT)?;
                        (image, snap)
                    }
                    Err(e) => return Err(e),
                };
                ((snap, image.id), image.config)
            }
        };
        let dataset = self.engine.inner.image_root.child(id.as_str())?;
        let (i, ds, token) = (id.clone(), dataset.clone(), op.token.clone());
        self.engine
            .blocking(move |inner| {
                inner.store().insert_pending_image(&i, &ds, &token)?;
                crate::failpoint("build-after-row");
                Ok(())
            })
            .await?;
        Ok(StageState::new(
            index,
            id,
            dataset,
            base,
            from_text,
            parent_config,
        ))
    }

    /// Makes the stage's dataset (a clone of its base snapshot) if it does not exist yet.
    pub(super) async fn materialize(&self, st: &mut StageState) -> Result<()> {
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
                    super::copy::make_dir(&root, d)?;
                }
                Ok(root)
            })
            .await?;
        st.pending_dirs.clear();
        st.root = Some(root);
        Ok(())
    }

    /// WORKDIR's directory: made now if the dataset exists, else when it is made.
    pub(super) async fn make_workdir(&self, st: &mut StageState, dir: String) -> Result<()> {
        let Some(root) = st.root.clone() else {
            st.pending_dirs.push(dir);
            return Ok(());
        };
        self.engine
            .blocking(move |_| super::copy::make_dir(&root, &dir))
            .await
    }

    /// Makes a built stage an image: `@image` snapshotted, its row finished (with
    /// `nametag`, for the target).
    pub(super) async fn finish_stage(
        &self,
        mut st: StageState,
        nametag: Option<(String, String)>,
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
                index: st.index,
                id: st.id,
                root: st.root.unwrap_or_default(),
                config: st.config,
                snapshot,
                last_snapshot: st.last_snapshot,
            }),
            Err(e) => Err((e, Some(st))),
        }
    }

    /// Turns a failure into the error returned, keeping `<name>:failed` or cleaning up.
    pub(super) async fn fail(
        &self,
        e: CoreError,
        st: Option<StageState>,
        nametag: &Option<(String, String)>,
    ) -> CoreError {
        let cancelled = self.cancelled() || matches!(e, CoreError::Cancelled);
        let Some(mut st) = st else {
            // Nothing of this stage exists; earlier stages go.
            self.remove_done().await;
            return if cancelled { CoreError::Cancelled } else { e };
        };
        let reason = e.to_string();
        if cancelled || self.req.rm {
            if let Err(ce) = self.discard(&st).await {
                log::warn!("could not clean up build {}: {ce}", st.id);
            }
            self.remove_done().await;
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
        if let Err(ke) = self.keep_failed(&mut st, nametag).await {
            log::warn!("could not keep the failed build {}: {ke}", st.id);
            let _ = self.discard(&st).await;
            // No BuildFailed event: nothing was kept to resume from. The error says why.
            let reason = format!("{reason} (and its state could not be kept: {ke})");
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

    /// Keeps a failed stage as image `<name>:failed` (untagged without a name).
    async fn keep_failed(
        &self,
        st: &mut StageState,
        nametag: &Option<(String, String)>,
    ) -> Result<()> {
        self.materialize(st).await?;
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
            .map(|_| ())
    }

    /// Removes the stages built so far, the latest first.
    pub(super) async fn remove_done(&self) {
        for d in self.done.iter().rev() {
            if let Err(e) = self.engine.remove_image(d.id.as_str()).await {
                log::warn!("could not remove build stage {}: {e}", d.id);
            }
        }
    }

    /// Removes a stage's dataset and row.
    async fn discard(&self, st: &StageState) -> Result<()> {
        let id = st.id.clone();
        let dataset = st.dataset.clone();
        self.engine
            .blocking(move |inner| {
                inner.destroy_dataset(&dataset)?;
                inner.store().delete_row(Table::Images, id.as_str())
            })
            .await
    }
}
