//! The state of a stage being built: where it stands (dataset, base snapshot, cache
//! chain), its ARGs and ENV and the environment RUN sees, and the instructions that only
//! change the image's configuration (ENV, ARG, USER, WORKDIR, CMD, LABEL, ...).

use std::path::PathBuf;

use kleene_dockerfile::{ArgDecl, Dockerfile, Instruction as Ins, KeyValue, ShellOrExec};
use kleene_zfs::{DatasetName, SnapshotName};

use super::cache::Chain;
use super::expand_err;
use super::plan::BuildArgs;
use crate::error::{CoreError, Result};
use crate::id::Id;
use crate::model::{ImageConfig, ImageSnapshot, Instruction};
use crate::vars;

/// One stage being built.
#[derive(Debug)]
pub(super) struct StageState {
    /// The stage's index in the Dockerfile.
    pub index: usize,
    pub id: Id,
    pub dataset: DatasetName,
    /// Where the dataset is mounted, once it exists (see `Builder::materialize`).
    pub root: Option<PathBuf>,
    /// The snapshot the dataset is (or will be) cloned from, and the image owning it.
    pub base: SnapshotName,
    pub base_owner: Id,
    /// Everything since the last snapshot, for cache keys.
    pub chain: Chain,
    pub last_snapshot: Option<String>,
    pub config: ImageConfig,
    /// CMD is still the parent's (an ENTRYPOINT then clears it).
    pub cmd_inherited: bool,
    pub env: Vec<(String, String)>,
    pub args: Vec<(String, String)>,
    pub shell: Vec<String>,
    /// WORKDIRs to make once the dataset exists.
    pub pending_dirs: Vec<String>,
}

/// A finished stage of this build.
#[derive(Debug)]
pub(super) struct DoneStage {
    pub index: usize,
    pub id: Id,
    pub root: PathBuf,
    pub config: ImageConfig,
    pub snapshot: SnapshotName,
    pub last_snapshot: Option<String>,
}

impl StageState {
    /// Stage `index`, image `id` on `dataset`, starting from `base` (owned by image
    /// `base_owner`, whose configuration is `parent`), shown as `from_text`; nothing of it
    /// exists yet.
    pub fn new(
        index: usize,
        id: Id,
        dataset: DatasetName,
        (base, base_owner): (SnapshotName, Id),
        from_text: String,
        parent: ImageConfig,
    ) -> Self {
        let env = vars::from_env(&parent.env);
        let chain = Chain::start(&format!("{base_owner}@{}", base.snapshot()));
        StageState {
            index,
            id,
            dataset,
            root: None,
            base,
            base_owner,
            chain,
            last_snapshot: None,
            config: ImageConfig {
                instructions: vec![Instruction {
                    text: from_text,
                    snapshot: None,
                }],
                origin: None,
                ..parent
            },
            cmd_inherited: true,
            env,
            args: Vec::new(),
            shell: vec!["/bin/sh".into(), "-c".into()],
            pending_dirs: Vec::new(),
        }
    }

    /// ARGs then ENV (a later pair wins, so ENV wins over ARG): what words expand with.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut v = self.args.clone();
        v.extend(self.env.iter().cloned());
        v
    }

    /// The environment of RUN: ENV overrides ARG; each name once.
    pub fn run_env(&self) -> Vec<(String, String)> {
        vars::later_wins(self.vars(), vars::pair_key)
    }

    /// The image snapshot the stage's dataset is cloned from, as its parent.
    pub fn parent(&self) -> ImageSnapshot {
        ImageSnapshot {
            image: self.base_owner.clone(),
            snapshot: self.base.snapshot().to_string(),
        }
    }

    /// Continues from `snapshot` (`<image>@<snap>`, as shown) of image `owner`: a cache hit.
    pub fn continue_from(&mut self, owner: Id, snapshot: SnapshotName, shown: String) {
        self.base = snapshot;
        self.base_owner = owner;
        self.chain = Chain::start(&shown);
        self.last_snapshot = Some(shown);
    }

    /// Records the snapshot `@<snap>` a step made on the stage's own dataset.
    pub fn snapshotted(&mut self, snap: &Id) {
        self.last_snapshot = Some(format!("@{snap}"));
        self.chain = Chain::start(&format!("{}@{snap}", self.id));
    }

    /// A command of CMD or ENTRYPOINT: the shell form runs through SHELL.
    pub fn command(&self, c: &ShellOrExec) -> Vec<String> {
        match c {
            ShellOrExec::Exec(v) => v.clone(),
            ShellOrExec::Shell(s) => {
                let mut v = self.shell.clone();
                v.push(s.clone());
                v
            }
        }
    }

    /// WORKDIR: the new working directory, absolute and clean (made by the caller).
    pub fn set_workdir(&mut self, df: &Dockerfile, w: &str) -> Result<String> {
        let w = self.expand(df, w, "WORKDIR")?;
        let path = if w.starts_with('/') {
            w
        } else {
            format!("{}/{w}", self.config.workdir)
        };
        let clean = format!("/{}", crate::rootfs::clean(&path).join("/"));
        self.chain.raw(clean.as_bytes());
        self.config.workdir = clean.clone();
        Ok(clean)
    }

    /// Applies an instruction that changes only the configuration (not RUN, COPY, ADD or
    /// WORKDIR), or refuses it.
    pub fn apply(
        &mut self,
        df: &Dockerfile,
        ins: &Ins,
        args: &mut BuildArgs,
        global_args: &[(String, String)],
    ) -> Result<()> {
        match ins {
            Ins::Env(kvs) => self.set_env(df, kvs)?,
            Ins::Arg(decls) => self.set_args(df, decls, args, global_args)?,
            Ins::User(u) => self.config.user = self.expand(df, u, "USER")?,
            Ins::Cmd(c) => {
                self.config.cmd = self.command(c);
                self.cmd_inherited = false;
            }
            Ins::Entrypoint(c) => {
                self.config.entrypoint = self.command(c);
                if self.cmd_inherited {
                    self.config.cmd.clear();
                }
            }
            Ins::Shell(v) => self.shell = v.clone(),
            Ins::Label(kvs) => self.set_labels(df, kvs)?,
            Ins::Maintainer(m) => {
                let v = self.expand(df, m, "MAINTAINER")?;
                self.config.labels.retain(|(k, _)| k != "maintainer");
                self.config.labels.push(("maintainer".into(), v));
            }
            Ins::Expose(ports) => self.expose(df, ports)?,
            Ins::Volume(vols) => {
                let vars = self.vars();
                for v in df
                    .expand_list(vols, &vars)
                    .map_err(|e| expand_err("VOLUME", e))?
                {
                    if !self.config.volumes.contains(&v) {
                        self.config.volumes.push(v);
                    }
                }
            }
            Ins::StopSignal(s) => {
                let text = self.expand(df, s, "STOPSIGNAL")?;
                self.config.stop_signal = Some(text.parse()?);
            }
            Ins::Healthcheck(_) => {
                return Err(CoreError::Unsupported(
                    "HEALTHCHECK is not supported: kleene has no health checks".into(),
                ))
            }
            Ins::Onbuild(_) => {
                return Err(CoreError::Unsupported(
                    "ONBUILD is not supported by kleene builds".into(),
                ))
            }
            Ins::From(_) => return Err(CoreError::Internal("FROM inside a stage".into())),
            Ins::Run(_) | Ins::Copy(_) | Ins::Add(_) | Ins::Workdir(_) => {
                return Err(CoreError::Internal(
                    "a step that writes was taken for a setting".into(),
                ))
            }
        }
        Ok(())
    }

    /// Expands `word` with the stage's variables; `what` names it in an error.
    pub fn expand(&self, df: &Dockerfile, word: &str, what: &str) -> Result<String> {
        df.expand(word, &self.vars())
            .map_err(|e| expand_err(what, e))
    }

    fn set_env(&mut self, df: &Dockerfile, kvs: &[KeyValue]) -> Result<()> {
        for kv in kvs {
            let v = self.expand(df, &kv.value, &format!("ENV {}", kv.key))?;
            self.chain.raw(format!("{}={v}", kv.key).as_bytes());
            vars::set(&mut self.env, &kv.key, v);
        }
        self.config.env = vars::to_env(&self.env);
        Ok(())
    }

    fn set_args(
        &mut self,
        df: &Dockerfile,
        decls: &[ArgDecl],
        args: &mut BuildArgs,
        global_args: &[(String, String)],
    ) -> Result<()> {
        for d in decls {
            if let Some(v) = args.resolve(df, d, &self.vars(), global_args)? {
                self.chain.raw(format!("{}={v}", d.name).as_bytes());
                vars::set(&mut self.args, &d.name, v);
            }
        }
        Ok(())
    }

    fn set_labels(&mut self, df: &Dockerfile, kvs: &[KeyValue]) -> Result<()> {
        for kv in kvs {
            let k = self.expand(df, &kv.key, "LABEL")?;
            let v = self.expand(df, &kv.value, "LABEL")?;
            vars::upsert(&mut self.config.labels, (k, v), vars::pair_key);
        }
        Ok(())
    }

    fn expose(&mut self, df: &Dockerfile, ports: &[String]) -> Result<()> {
        let vars = self.vars();
        for p in df
            .expand_list(ports, &vars)
            .map_err(|e| expand_err("EXPOSE", e))?
        {
            let p = if p.contains('/') {
                p
            } else {
                format!("{p}/tcp")
            };
            if !self.config.expose.contains(&p) {
                self.config.expose.push(p);
            }
        }
        Ok(())
    }
}
