//! Planning a build before anything is made: the Dockerfile and `.dockerignore` read, the
//! target stage and the stages it needs, stage references (by name or index), the global
//! ARGs and the build args that give ARGs their values.

use std::collections::HashSet;
use std::path::PathBuf;

use kleene_dockerfile::{ArgDecl, Dockerfile, Instruction as Ins, Span};

use super::glob::Ignore;
use super::state::DoneStage;
use super::{expand_err, BuildRequest};
use crate::error::{CoreError, Result};
use crate::image::parse_nametag;
use crate::vars;

/// What a build does, worked out from the request and the Dockerfile.
#[derive(Debug)]
pub(super) struct Plan {
    /// The Dockerfile's text (steps are shown as written).
    pub source: String,
    pub df: Dockerfile,
    /// The context directory, canonical.
    pub context: PathBuf,
    /// `.dockerignore` of the context.
    pub ignore: Option<Ignore>,
    /// The stage built (the last unless the request names one).
    pub target: usize,
    /// The stages built, in order: the target and those it needs.
    pub stages: Vec<usize>,
    /// Steps (FROM and instructions) of those stages.
    pub total: usize,
    /// The global ARGs (before the first FROM) with their values.
    pub global_args: Vec<(String, String)>,
    /// The new image's `name:tag`.
    pub nametag: Option<(String, String)>,
    /// `--from`: the target stage's FROM instead of its own.
    pub from: Option<String>,
}

impl Plan {
    /// Reads the context's Dockerfile (or the request's) and `.dockerignore`, then plans.
    pub fn load(req: &BuildRequest, args: &mut BuildArgs) -> Result<Plan> {
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
        let source = std::fs::read_to_string(&df_path)
            .map_err(|e| CoreError::io(format!("reading {}", df_path.display()), e))?;
        let df = Dockerfile::parse(&source).map_err(|e| {
            let name = df_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "Dockerfile".into());
            CoreError::Dockerfile(e.with_file_name(name))
        })?;
        let ignore = match std::fs::read_to_string(context.join(".dockerignore")) {
            Ok(t) => Some(Ignore::parse(&t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(CoreError::io("reading .dockerignore", e)),
        };
        Plan::new(req, source, df, context, ignore, args)
    }

    /// Plans a build of a parsed Dockerfile: the target, its stages, the global ARGs.
    pub fn new(
        req: &BuildRequest,
        source: String,
        df: Dockerfile,
        context: PathBuf,
        ignore: Option<Ignore>,
        args: &mut BuildArgs,
    ) -> Result<Plan> {
        let target = match &req.target {
            None => df.stages.len() - 1,
            Some(t) => stage_ref(&df, df.stages.len(), t).ok_or_else(|| {
                CoreError::InvalidInput(format!("target stage {t:?} could not be found"))
            })?,
        };
        let nametag = req.tag.as_deref().map(parse_nametag).transpose()?;
        let mut global_args = Vec::new();
        for a in &df.global_args {
            if let Some(v) = args.resolve(&df, a, &global_args, &[])? {
                vars::set(&mut global_args, &a.name, v);
            }
        }
        let stages = needed_stages(&df, target);
        let total = stages
            .iter()
            .map(|i| 1 + df.stages[*i].instructions.len())
            .sum();
        Ok(Plan {
            source,
            df,
            context,
            ignore,
            target,
            stages,
            total,
            global_args,
            nametag,
            from: req.from.clone(),
        })
    }

    /// The image reference that replaces stage `index`'s FROM (`--from`, for the target).
    pub fn base_override(&self, index: usize) -> Option<String> {
        (index == self.target).then(|| self.from.clone()).flatten()
    }

    /// The `name:tag` stage `index` gets: the request's for the target, none for the others.
    pub fn nametag_of(&self, index: usize) -> Option<(String, String)> {
        (index == self.target)
            .then(|| self.nametag.clone())
            .flatten()
    }

    /// The stage built before stage `upto` that `reference` names (FROM, COPY --from).
    pub fn built<'a>(
        &self,
        done: &'a [DoneStage],
        upto: usize,
        reference: &str,
    ) -> Option<&'a DoneStage> {
        let j = stage_ref(&self.df, upto, reference)?;
        done.iter().find(|d| d.index == j)
    }

    /// The text a step is shown with (see [`step_text`]).
    pub fn step_text(&self, span: Span, ins: Option<&Ins>) -> String {
        step_text(&self.source, span, ins)
    }
}

/// The stage before `upto` that `name` names: by its name (case-insensitively), or by
/// its index.
pub(super) fn stage_ref(df: &Dockerfile, upto: usize, name: &str) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    df.stages[..upto]
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
        .or_else(|| name.parse::<usize>().ok().filter(|i| *i < upto))
}

/// The stages `target` needs (FROM another stage, COPY --from a stage), itself included,
/// in order.
pub(super) fn needed_stages(df: &Dockerfile, target: usize) -> Vec<usize> {
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

/// The text a step is shown with: its source, continuation lines joined, a heredoc's
/// body left out.
pub(super) fn step_text(source: &str, span: Span, ins: Option<&Ins>) -> String {
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

/// The build args (`--build-arg`) and which of them an ARG used.
#[derive(Debug, Default)]
pub(super) struct BuildArgs {
    given: Vec<(String, String)>,
    consumed: HashSet<String>,
}

impl BuildArgs {
    /// The build args of a request, in order (a later one for a name wins).
    pub fn new(given: Vec<(String, String)>) -> Self {
        Self {
            given,
            consumed: HashSet::new(),
        }
    }

    /// The value of ARG `decl`: its build arg, else its default expanded with `vars`, else
    /// its value in `inherited` (the global ARGs, for an ARG in a stage); `None` when it
    /// has none.
    pub fn resolve(
        &mut self,
        df: &Dockerfile,
        decl: &ArgDecl,
        vars: &[(String, String)],
        inherited: &[(String, String)],
    ) -> Result<Option<String>> {
        if let Some((_, v)) = self.given.iter().rev().find(|(k, _)| *k == decl.name) {
            self.consumed.insert(decl.name.clone());
            return Ok(Some(v.clone()));
        }
        match &decl.default {
            Some(d) => df
                .expand(d, vars)
                .map(Some)
                .map_err(|e| expand_err(&format!("ARG {}", decl.name), e)),
            None => Ok(inherited
                .iter()
                .find(|(k, _)| *k == decl.name)
                .map(|(_, v)| v.clone())),
        }
    }

    /// The build args no ARG used, in the order given.
    pub fn unused(&self) -> Vec<&str> {
        self.given
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !self.consumed.contains(*k))
            .collect()
    }
}
