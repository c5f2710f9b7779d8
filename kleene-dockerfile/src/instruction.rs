//! The typed layer: stages and instructions for the build engine.
//!
//! Payloads keep the raw, unexpanded words; the build engine expands them
//! with [`Dockerfile::expander`] as each instruction runs, since the
//! variables in scope change from instruction to instruction.

use std::time::Duration;

use crate::error::{ErrorKind, ParseError};
use crate::expand::{EmptyEnv, Env, ExpandError, Expander};
use crate::image_ref::{ImageRef, ImageRefError};
use crate::span::{Span, Spanned};
use crate::syntax::{self, Ctx, Directive, Heredoc, Keyword, RawFlag, RawNode, Warning};

/// A parsed and validated Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// Parser directives (`# syntax=`, `# escape=`, `# check=`), in file order.
    pub directives: Vec<Directive>,
    /// The escape character: `\`, or `` ` `` after `# escape=```.
    pub escape: char,
    /// ARGs declared before the first FROM (usable in FROM lines).
    pub global_args: Vec<Spanned<ArgDecl>>,
    /// The build stages, in order.
    pub stages: Vec<Stage>,
    /// Things Docker accepts but warns about.
    pub warnings: Vec<Warning>,
}

/// One build stage: a FROM and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// `FROM ... AS name`, lower case.
    pub name: Option<String>,
    /// The FROM that opens the stage.
    pub from: Spanned<From>,
    /// The instructions after the FROM, up to the next FROM.
    pub instructions: Vec<Spanned<Instruction>>,
}

/// `FROM [--platform=P] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The image as written (`name[:tag][@snapshot]`, may hold `$VAR`s).
    pub image: String,
    /// `--platform`.
    pub platform: Option<String>,
    /// The stage name after `AS`, lower case.
    pub alias: Option<String>,
}

/// Why a FROM's image cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Expanding the variables failed.
    #[error(transparent)]
    Expand(#[from] ExpandError),
    /// The expanded text is no image reference.
    #[error(transparent)]
    Reference(#[from] ImageRefError),
}

impl From {
    /// Expands the image with `env` (the global ARGs) and parses it.
    pub fn image_ref(
        &self,
        expander: &Expander,
        env: &(impl Env + ?Sized),
    ) -> Result<ImageRef, ImageError> {
        Ok(ImageRef::parse(&expander.expand(&self.image, env)?)?)
    }

    /// The snapshot written after `@`, when the image is literal text.
    pub fn snapshot(&self) -> Option<String> {
        if self.image.contains('$') {
            return None;
        }
        ImageRef::parse(&self.image).ok().and_then(|r| r.snapshot)
    }
}

/// A command in shell form (run by the shell) or exec form (an argv).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellOrExec {
    /// `RUN echo $HOME`: one string for the shell.
    Shell(String),
    /// `RUN ["echo", "hi"]`: the argv, used as is.
    Exec(Vec<String>),
}

/// RUN flags. Kleene runs none of them yet; they are parsed so that
/// Dockerfiles written for BuildKit are understood and can be refused
/// precisely by the engine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunFlags {
    /// `--mount=...`, each as written.
    pub mounts: Vec<String>,
    /// `--network=...`.
    pub network: Option<String>,
    /// `--security=...`.
    pub security: Option<String>,
    /// `--device=...`, each as written.
    pub devices: Vec<String>,
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command.
    pub command: ShellOrExec,
    /// Its flags.
    pub flags: RunFlags,
    /// Heredocs (`RUN <<EOF`), in order.
    pub heredocs: Vec<Heredoc>,
}

/// `COPY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// Source paths or patterns (heredoc sources are in `heredocs`).
    pub sources: Vec<String>,
    /// Destination.
    pub dest: String,
    /// `--from=stage-or-image`.
    pub from: Option<String>,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=mode`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude=pattern`, each.
    pub exclude: Vec<String>,
    /// Inline sources (`COPY <<EOF /dest`): name, body, whether to expand.
    pub heredocs: Vec<Heredoc>,
}

/// `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    /// Source paths, patterns or URLs (heredoc sources are in `heredocs`).
    pub sources: Vec<String>,
    /// Destination.
    pub dest: String,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// `--checksum=digest`.
    pub checksum: Option<String>,
    /// `--unpack` / `--unpack=false`, `None` when not given.
    pub unpack: Option<bool>,
    /// `--exclude=pattern`, each.
    pub exclude: Vec<String>,
    /// Inline sources.
    pub heredocs: Vec<Heredoc>,
}

/// One `NAME=VALUE` of ENV or LABEL (both raw: quotes still in place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The name as written.
    pub key: String,
    /// The value as written.
    pub value: String,
}

/// One name of ARG, with its default if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The name.
    pub name: String,
    /// The default as written, `None` for `ARG NAME`.
    pub default: Option<String>,
}

/// HEALTHCHECK options; `None` when not given (the engine's default applies).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthcheckOptions {
    /// `--interval`.
    pub interval: Option<Duration>,
    /// `--timeout`.
    pub timeout: Option<Duration>,
    /// `--start-period`.
    pub start_period: Option<Duration>,
    /// `--start-interval`.
    pub start_interval: Option<Duration>,
    /// `--retries`.
    pub retries: Option<u32>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [options] CMD command`.
    Cmd {
        /// The check command.
        command: ShellOrExec,
        /// Its options.
        options: HealthcheckOptions,
    },
}

/// `ONBUILD`: an instruction for images built FROM this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger as written (heredoc bodies appended), to store in the image.
    pub expression: String,
    /// The trigger, parsed.
    pub instruction: Box<Instruction>,
}

/// An instruction with its typed payload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Instruction {
    From(From),
    Run(Run),
    Cmd(ShellOrExec),
    Label(Vec<KeyValue>),
    Maintainer(String),
    Expose(Vec<String>),
    Env(Vec<KeyValue>),
    Add(Add),
    Copy(Copy),
    Entrypoint(ShellOrExec),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Arg(Vec<ArgDecl>),
    Onbuild(Onbuild),
    StopSignal(String),
    Healthcheck(Healthcheck),
    Shell(Vec<String>),
}

impl Instruction {
    /// The instruction's keyword.
    pub fn keyword(&self) -> Keyword {
        match self {
            Instruction::From(_) => Keyword::From,
            Instruction::Run(_) => Keyword::Run,
            Instruction::Cmd(_) => Keyword::Cmd,
            Instruction::Label(_) => Keyword::Label,
            Instruction::Maintainer(_) => Keyword::Maintainer,
            Instruction::Expose(_) => Keyword::Expose,
            Instruction::Env(_) => Keyword::Env,
            Instruction::Add(_) => Keyword::Add,
            Instruction::Copy(_) => Keyword::Copy,
            Instruction::Entrypoint(_) => Keyword::Entrypoint,
            Instruction::Volume(_) => Keyword::Volume,
            Instruction::User(_) => Keyword::User,
            Instruction::Workdir(_) => Keyword::Workdir,
            Instruction::Arg(_) => Keyword::Arg,
            Instruction::Onbuild(_) => Keyword::Onbuild,
            Instruction::StopSignal(_) => Keyword::StopSignal,
            Instruction::Healthcheck(_) => Keyword::Healthcheck,
            Instruction::Shell(_) => Keyword::Shell,
        }
    }
}

impl Dockerfile {
    /// Parses and validates `text`.
    pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        // Syntax errors anywhere come first, then the first invalid
        // instruction: once one is found, the rest is only read.
        let mut invalid: Option<ParseError> = None;
        let mut last_span = Span::default();
        let walked = syntax::walk(text, |ctx, node, span| {
            last_span = span;
            if invalid.is_none() {
                if let Err(e) = add_node(ctx, node, span, &mut global_args, &mut stages) {
                    invalid = Some(e);
                }
            }
        })?;
        if let Some(e) = invalid {
            return Err(e);
        }
        if stages.is_empty() {
            return Err(ParseError::new(ErrorKind::NoFrom, last_span));
        }
        Ok(Dockerfile {
            directives: walked.directives,
            escape: walked.escape,
            global_args,
            stages,
            warnings: walked.warnings,
        })
    }

    /// The value of parser directive `name` (`syntax`, `escape`, `check`).
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
            .map(|d| d.value.as_str())
    }

    /// An expander with this file's escape character.
    pub fn expander(&self) -> Expander {
        Expander::new(self.escape)
    }

    /// Expands `word` with `env` by Docker's rules, with this file's escape character.
    pub fn expand(&self, word: &str, env: &(impl Env + ?Sized)) -> Result<String, ExpandError> {
        self.expander().expand(word, env)
    }

    /// Expands and splits each of `words` (for list arguments such as COPY
    /// sources or EXPOSE ports), with this file's escape character.
    pub fn expand_list(
        &self,
        words: &[String],
        env: &(impl Env + ?Sized),
    ) -> Result<Vec<String>, ExpandError> {
        self.expander().expand_list(words, env)
    }

    /// The stage named `name` (case-insensitively), or the stage with index `name`.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| name.parse::<usize>().ok().and_then(|i| self.stages.get(i)))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlagType {
    Bool,
    Str,
    Strings,
}

type FlagSpec = &'static [(&'static str, FlagType)];

const FROM_FLAGS: FlagSpec = &[("platform", FlagType::Str)];
const RUN_FLAGS: FlagSpec = &[
    ("mount", FlagType::Strings),
    ("network", FlagType::Str),
    ("security", FlagType::Str),
    ("device", FlagType::Strings),
];
const COPY_FLAGS: FlagSpec = &[
    ("from", FlagType::Str),
    ("chown", FlagType::Str),
    ("chmod", FlagType::Str),
    ("link", FlagType::Bool),
    ("parents", FlagType::Bool),
    ("exclude", FlagType::Strings),
];
const ADD_FLAGS: FlagSpec = &[
    ("chown", FlagType::Str),
    ("chmod", FlagType::Str),
    ("link", FlagType::Bool),
    ("keep-git-dir", FlagType::Bool),
    ("checksum", FlagType::Str),
    ("unpack", FlagType::Bool),
    ("exclude", FlagType::Strings),
];
const HEALTHCHECK_FLAGS: FlagSpec = &[
    ("interval", FlagType::Str),
    ("timeout", FlagType::Str),
    ("start-period", FlagType::Str),
    ("start-interval", FlagType::Str),
    ("retries", FlagType::Str),
];
const NO_FLAGS: FlagSpec = &[];

/// Adds one instruction to the stages (or the global ARGs).
fn add_node(
    ctx: &Ctx<'_>,
    node: &RawNode<'_>,
    span: Span,
    global_args: &mut Vec<Spanned<ArgDecl>>,
    stages: &mut Vec<Stage>,
) -> Result<(), ParseError> {
    // The common case first, converted straight into its place: an
    // instruction is a couple of hundred bytes, and each move is a copy.
    if node.keyword != Keyword::From {
        if let Some(stage) = stages.last_mut() {
            stage
                .instructions
                .push(Spanned::new(convert(ctx, node, &node.heredocs)?, span));
            return Ok(());
        }
    }
    match convert(ctx, node, &node.heredocs)? {
        Instruction::From(from) => stages.push(Stage {
            name: from.alias.clone(),
            from: Spanned::new(from, span),
            // Most stages are short: this spares the first few regrowths.
            instructions: Vec::with_capacity(16),
        }),
        other => match stages.last_mut() {
            Some(stage) => stage.instructions.push(Spanned::new(other, span)),
            None => match other {
                Instruction::Arg(decls) => {
                    global_args.extend(decls.into_iter().map(|d| Spanned::new(d, span)))
                }
                _ => {
                    return Err(ParseError::new(
                        ErrorKind::InstructionBeforeFrom {
                            found: node.keyword_text.to_string(),
                        },
                        node.keyword_span(ctx),
                    ))
                }
            },
        },
    }
    Ok(())
}

/// The validated flags of one instruction: (name, value, flag).
struct Flags<'n, 'a> {
    values: Vec<(&'static str, &'n str, &'n RawFlag<'a>)>,
}

impl Flags<'_, '_> {
    fn str(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, v, _)| *v)
    }

    fn string(&self, name: &str) -> Option<String> {
        self.str(name).map(str::to_string)
    }

    fn strings(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(n, _, _)| *n == name)
            .map(|(_, v, _)| v.to_string())
            .collect()
    }

    fn bool(&self, name: &str) -> Option<bool> {
        self.str(name).map(|v| v == "true")
    }

    fn span(&self, ctx: &Ctx<'_>, name: &str) -> Option<Span> {
        self.values
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, f)| f.span(ctx))
    }
}

fn parse_flags<'n, 'a>(
    ctx: &Ctx<'_>,
    node: &'n RawNode<'a>,
    spec: FlagSpec,
) -> Result<Flags<'n, 'a>, ParseError> {
    let instruction = node.keyword.name();
    let mut values: Vec<(&'static str, &'n str, &'n RawFlag<'a>)> = Vec::new();
    for flag in &node.flags {
        let flag_name = flag.name();
        let Some(&(name, ty)) = spec.iter().find(|(n, _)| *n == flag_name) else {
            return Err(ParseError::new(
                ErrorKind::UnknownFlag {
                    instruction,
                    flag: flag.text.to_string(),
                    expected: spec.iter().map(|(n, _)| *n).collect(),
                },
                flag.span(ctx),
            ));
        };
        if ty != FlagType::Strings && values.iter().any(|(n, _, _)| *n == name) {
            return Err(ParseError::new(
                ErrorKind::DuplicateFlag {
                    instruction,
                    flag: flag.text.to_string(),
                    name: name.to_string(),
                },
                flag.span(ctx),
            ));
        }
        let value: &'n str = match (ty, flag.value()) {
            (FlagType::Bool, None) => "true",
            (FlagType::Bool, Some("")) => {
                return Err(ParseError::new(
                    ErrorKind::FlagMissingValue {
                        instruction,
                        flag: flag.text.to_string(),
                        name: name.to_string(),
                    },
                    flag.span(ctx),
                ))
            }
            (FlagType::Bool, Some(v)) if v.eq_ignore_ascii_case("true") => "true",
            (FlagType::Bool, Some(v)) if v.eq_ignore_ascii_case("false") => "false",
            (FlagType::Bool, Some(_)) => {
                return Err(ParseError::new(
                    ErrorKind::FlagNotBoolean {
                        instruction,
                        flag: flag.text.to_string(),
                        name: name.to_string(),
                    },
                    flag.span(ctx),
                ))
            }
            (_, None) => {
                return Err(ParseError::new(
                    ErrorKind::FlagMissingValue {
                        instruction,
                        flag: flag.text.to_string(),
                        name: name.to_string(),
                    },
                    flag.span(ctx),
                ))
            }
            (_, Some(v)) => v,
        };
        values.push((name, value, flag));
    }
    Ok(Flags { values })
}

fn args_span(ctx: &Ctx<'_>, node: &RawNode<'_>) -> Span {
    if node.rest.value.is_empty() {
        node.keyword_span(ctx)
    } else {
        node.rest.span(ctx)
    }
}

fn wrong_args(ctx: &Ctx<'_>, node: &RawNode<'_>, requirement: &'static str) -> ParseError {
    ParseError::new(
        ErrorKind::WrongArguments {
            instruction: node.keyword.name(),
            requirement,
            found: node.rest.value.to_string(),
        },
        args_span(ctx, node),
    )
}

fn values(node: &RawNode<'_>) -> Vec<String> {
    node.args.iter().map(|w| w.value.to_string()).collect()
}

fn command(node: &RawNode<'_>) -> ShellOrExec {
    if node.json {
        ShellOrExec::Exec(values(node))
    } else {
        match node.args.first() {
            Some(w) => ShellOrExec::Shell(w.value.to_string()),
            None => ShellOrExec::Exec(Vec::new()),
        }
    }
}

/// A variable name: a letter or `_`, then letters, digits, `_`, `.` or `-`.
/// (`.` and `-` cannot be referenced with `$` but Docker images set such
/// variables for the programs they run.)
fn valid_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Checks a raw name (quotes may still be in it); names built from variables
/// are checked by the engine after expansion.
fn check_name(
    raw: &str,
    escape: char,
    instruction: &'static str,
    span: impl FnOnce() -> Span,
) -> Result<(), ParseError> {
    if raw.contains('$') {
        return Ok(());
    }
    // Without quotes and escapes a name expands to itself.
    let name = if raw.contains(['\'', '"', escape]) {
        std::borrow::Cow::Owned(
            Expander::new(escape)
                .expand(raw, &EmptyEnv)
                .unwrap_or_else(|_| raw.to_string()),
        )
    } else {
        std::borrow::Cow::Borrowed(raw)
    };
    if name.is_empty() {
        return Err(ParseError::new(
            ErrorKind::BlankName {
                instruction,
                found: raw.to_string(),
            },
            span(),
        ));
    }
    if !valid_variable_name(&name) {
        return Err(ParseError::new(
            ErrorKind::InvalidVariableName {
                instruction,
                name: raw.to_string(),
            },
            span(),
        ));
    }
    Ok(())
}

fn key_values(
    ctx: &Ctx<'_>,
    node: &RawNode<'_>,
    check_names: bool,
) -> Result<Vec<KeyValue>, ParseError> {
    if node.args.is_empty() {
        return Err(wrong_args(ctx, node, "requires at least one argument"));
    }
    let mut out = Vec::with_capacity(node.args.len() / 3);
    for triple in node.args.chunks(3) {
        let [key, value, _sep] = triple else {
            return Err(wrong_args(ctx, node, "requires NAME=VALUE pairs"));
        };
        if key.value.is_empty() {
            return Err(ParseError::new(
                ErrorKind::BlankName {
                    instruction: node.keyword.name(),
                    found: format!("{}={}", key.value, value.value),
                },
                key.span(ctx),
            ));
        }
        if check_names {
            check_name(&key.value, ctx.escape, node.keyword.name(), || {
                key.span(ctx)
            })?;
        }
        out.push(KeyValue {
            key: key.value.to_string(),
            value: value.value.to_string(),
        });
    }
    Ok(out)
}

fn one_arg(ctx: &Ctx<'_>, node: &RawNode<'_>) -> Result<String, ParseError> {
    match node.args.as_slice() {
        [one] => Ok(one.value.to_string()),
        _ => Err(wrong_args(ctx, node, "requires exactly one argument")),
    }
}

/// Splits COPY/ADD arguments into sources, destination and heredoc sources.
fn sources_and_dest(
    ctx: &Ctx<'_>,
    node: &RawNode<'_>,
    node_heredocs: &[Heredoc],
) -> Result<(Vec<String>, String, Vec<Heredoc>), ParseError> {
    let Some((dest, srcs)) = node.args.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(wrong_args(
            ctx,
            node,
            "requires at least two arguments (expected sources and a destination)",
        ));
    };
    if !node.json && matches!(syntax::parse_heredoc_marker(&dest.value), Ok(Some(_))) {
        return Err(ParseError::new(
            ErrorKind::HeredocNotAllowed {
                instruction: node.keyword.name(),
                position: "a destination",
                found: dest.value.to_string(),
            },
            dest.span(ctx),
        ));
    }
    let mut sources = Vec::with_capacity(srcs.len());
    let mut heredocs = Vec::new();
    for src in srcs {
        let marker = if node.json {
            None
        } else {
            syntax::parse_heredoc_marker(&src.value).ok().flatten()
        };
        match marker {
            Some(m) => {
                let mut doc = node_heredocs
                    .iter()
                    .find(|d| d.name == m.name)
                    .cloned()
                    .unwrap_or(m);
                doc.content = doc.body();
                doc.chomp = false;
                heredocs.push(doc);
            }
            None => sources.push(src.value.to_string()),
        }
    }
    Ok((sources, dest.value.to_string(), heredocs))
}

/// Go's `time.ParseDuration`, for HEALTHCHECK options.
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * nanos_per;
    }
    if !total.is_finite() || total > 9.2e18 {
        return None;
    }
    Some(Duration::from_nanos(total.round() as u64))
}

fn duration_flag(
    ctx: &Ctx<'_>,
    node: &RawNode<'_>,
    flags: &Flags<'_, '_>,
    name: &'static str,
) -> Result<Option<Duration>, ParseError> {
    let Some(v) = flags.str(name) else {
        return Ok(None);
    };
    let invalid = |expected| {
        ParseError::new(
            ErrorKind::InvalidFlagValue {
                instruction: "HEALTHCHECK",
                name: name.to_string(),
                value: v.to_string(),
                expected,
            },
            flags
                .span(ctx, name)
                .unwrap_or_else(|| node.keyword_span(ctx)),
        )
    };
    if v.is_empty() {
        return Ok(None);
    }
    let d = parse_duration(v).ok_or_else(|| invalid("a duration such as 30s, 1m30s or 500ms"))?;
    if !d.is_zero() && d < Duration::from_millis(1) {
        return Err(invalid("0 or a duration of at least 1ms"));
    }
    Ok(Some(d))
}

fn healthcheck(ctx: &Ctx<'_>, node: &RawNode<'_>) -> Result<Healthcheck, ParseError> {
    let Some(typ) = node.args.first() else {
        return Err(wrong_args(ctx, node, "requires at least one argument"));
    };
    let kind = typ.value.to_ascii_uppercase();
    if kind == "NONE" {
        if node.args.len() > 1 {
            return Err(ParseError::new(
                ErrorKind::InvalidHealthcheck {
                    reason: "HEALTHCHECK NONE takes no arguments",
                    found: node.rest.value.to_string(),
                    expected: "HEALTHCHECK NONE alone",
                },
                node.rest.span(ctx),
            ));
        }
        if let Some(flag) = node.flags.first() {
            return Err(ParseError::new(
                ErrorKind::UnknownFlag {
                    instruction: "HEALTHCHECK",
                    flag: flag.text.to_string(),
                    expected: Vec::new(),
                },
                flag.span(ctx),
            ));
        }
        return Ok(Healthcheck::None);
    }
    let flags = parse_flags(ctx, node, HEALTHCHECK_FLAGS)?;
    if kind != "CMD" {
        return Err(ParseError::new(
            ErrorKind::InvalidHealthcheck {
                reason: "unknown type",
                found: typ.value.to_string(),
                expected: "CMD or NONE",
            },
            typ.span(ctx),
        ));
    }
    let args: Vec<String> = node.args[1..].iter().map(|w| w.value.to_string()).collect();
    let command = if node.json {
        ShellOrExec::Exec(args)
    } else {
        match args.into_iter().next() {
            Some(s) => ShellOrExec::Shell(s),
            None => ShellOrExec::Exec(Vec::new()),
        }
    };
    if matches!(&command, ShellOrExec::Exec(a) if a.is_empty()) {
        return Err(ParseError::new(
            ErrorKind::InvalidHealthcheck {
                reason: "missing command after HEALTHCHECK CMD",
                found: node.rest.value.to_string(),
                expected: "HEALTHCHECK CMD command",
            },
            args_span(ctx, node),
        ));
    }
    let retries = match flags.str("retries") {
        None => None,
        Some("") => None,
        Some(v) => Some(v.parse::<u32>().map_err(|_| {
            ParseError::new(
                ErrorKind::InvalidFlagValue {
                    instruction: "HEALTHCHECK",
                    name: "retries".to_string(),
                    value: v.to_string(),
                    expected: "a number of retries, 0 or more",
                },
                flags
                    .span(ctx, "retries")
                    .unwrap_or_else(|| node.keyword_span(ctx)),
            )
        })?),
    };
    Ok(Healthcheck::Cmd {
        command,
        options: HealthcheckOptions {
            interval: duration_flag(ctx, node, &flags, "interval")?,
            timeout: duration_flag(ctx, node, &flags, "timeout")?,
            start_period: duration_flag(ctx, node, &flags, "start-period")?,
            start_interval: duration_flag(ctx, node, &flags, "start-interval")?,
            retries,
        },
    })
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.'))
}

/// Turns one instruction into a typed instruction, validating it;
/// `heredocs` are the bodies read after it.
fn convert(
    ctx: &Ctx<'_>,
    node: &RawNode<'_>,
    heredocs: &[Heredoc],
) -> Result<Instruction, ParseError> {
    let no_flags = |node: &RawNode<'_>| parse_flags(ctx, node, NO_FLAGS).map(|_| ());
    Ok(match node.keyword {
        Keyword::From => {
            let flags = parse_flags(ctx, node, FROM_FLAGS)?;
            let alias =
                match node.args.as_slice() {
                    [_] => None,
                    [_, as_kw, name] if as_kw.value.eq_ignore_ascii_case("as") => {
                        let lower = name.value.to_lowercase();
                        if !valid_stage_name(&lower) {
                            return Err(ParseError::new(
                                ErrorKind::InvalidStageName {
                                    found: name.value.to_string(),
                                },
                                name.span(ctx),
                            ));
                        }
                        Some(lower)
                    }
                    _ => return Err(wrong_args(
                        ctx,
                        node,
                        "requires either one or three arguments (expected FROM image [AS name])",
                    )),
                };
            Instruction::From(From {
                image: node.args[0].value.to_string(),
                platform: flags.string("platform"),
                alias,
            })
        }
        Keyword::Run => {
            let flags = parse_flags(ctx, node, RUN_FLAGS)?;
            if node.args.is_empty() && !node.json {
                return Err(wrong_args(ctx, node, "requires at least one argument"));
            }
            Instruction::Run(Run {
                command: command(node),
                flags: RunFlags {
                    mounts: flags.strings("mount"),
                    network: flags.string("network"),
                    security: flags.string("security"),
                    devices: flags.strings("device"),
                },
                heredocs: heredocs.to_vec(),
            })
        }
        Keyword::Cmd => {
            no_flags(node)?;
            Instruction::Cmd(command(node))
        }
        Keyword::Entrypoint => {
            no_flags(node)?;
            Instruction::Entrypoint(command(node))
        }
        Keyword::Shell => {
            no_flags(node)?;
            if !node.json {
                if node.args.is_empty() {
                    return Err(wrong_args(ctx, node, "requires at least one argument"));
                }
                return Err(ParseError::new(
                    ErrorKind::ExpectedJson {
                        instruction: "SHELL",
                        found: node.rest.value.to_string(),
                    },
                    node.rest.span(ctx),
                ));
            }
            if node.args.is_empty() {
                return Err(wrong_args(ctx, node, "requires at least one argument"));
            }
            Instruction::Shell(values(node))
        }
        Keyword::Env => {
            no_flags(node)?;
            Instruction::Env(key_values(ctx, node, true)?)
        }
        Keyword::Label => {
            no_flags(node)?;
            Instruction::Label(key_values(ctx, node, false)?)
        }
        Keyword::Arg => {
            no_flags(node)?;
            if node.args.is_empty() {
                return Err(wrong_args(ctx, node, "requires at least one argument"));
            }
            let mut decls = Vec::with_capacity(node.args.len());
            for w in &node.args {
                let (name, default) = match w.value.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (&*w.value, None),
                };
                check_name(name, ctx.escape, "ARG", || w.span(ctx))?;
                decls.push(ArgDecl {
                    name: name.to_string(),
                    default,
                });
            }
            Instruction::Arg(decls)
        }
        Keyword::Maintainer => {
            no_flags(node)?;
            Instruction::Maintainer(one_arg(ctx, node)?)
        }
        Keyword::User => {
            no_flags(node)?;
            Instruction::User(one_arg(ctx, node)?)
        }
        Keyword::Workdir => {
            no_flags(node)?;
            Instruction::Workdir(one_arg(ctx, node)?)
        }
        Keyword::StopSignal => {
            no_flags(node)?;
            Instruction::StopSignal(one_arg(ctx, node)?)
        }
        Keyword::Expose => {
            no_flags(node)?;
            if node.args.is_empty() {
                return Err(wrong_args(ctx, node, "requires at least one argument"));
            }
            Instruction::Expose(values(node))
        }
        Keyword::Volume => {
            no_flags(node)?;
            if node.args.is_empty() {
                return Err(wrong_args(ctx, node, "requires at least one argument"));
            }
            let mut vols = Vec::with_capacity(node.args.len());
            for w in &node.args {
                let v = w.value.trim();
                if v.is_empty() {
                    return Err(ParseError::new(
                        ErrorKind::EmptyVolume {
                            found: node.rest.value.to_string(),
                        },
                        w.span(ctx),
                    ));
                }
                vols.push(v.to_string());
            }
            Instruction::Volume(vols)
        }
        Keyword::Copy => {
            let flags = parse_flags(ctx, node, COPY_FLAGS)?;
            let (sources, dest, heredocs) = sources_and_dest(ctx, node, heredocs)?;
            Instruction::Copy(Copy {
                sources,
                dest,
                from: flags.string("from"),
                chown: flags.string("chown"),
                chmod: flags.string("chmod"),
                link: flags.bool("link").unwrap_or(false),
                parents: flags.bool("parents").unwrap_or(false),
                exclude: flags.strings("exclude"),
                heredocs,
            })
        }
        Keyword::Add => {
            let flags = parse_flags(ctx, node, ADD_FLAGS)?;
            let (sources, dest, heredocs) = sources_and_dest(ctx, node, heredocs)?;
            Instruction::Add(Add {
                sources,
                dest,
                chown: flags.string("chown"),
                chmod: flags.string("chmod"),
                link: flags.bool("link").unwrap_or(false),
                keep_git_dir: flags.bool("keep-git-dir").unwrap_or(false),
                checksum: flags.string("checksum"),
                unpack: flags.bool("unpack"),
                exclude: flags.strings("exclude"),
                heredocs,
            })
        }
        Keyword::Healthcheck => Instruction::Healthcheck(healthcheck(ctx, node)?),
        Keyword::Onbuild => {
            no_flags(node)?;
            let Some(sub) = &node.sub else {
                return Err(wrong_args(ctx, node, "requires at least one argument"));
            };
            if matches!(
                sub.keyword,
                Keyword::Onbuild | Keyword::From | Keyword::Maintainer
            ) {
                return Err(ParseError::new(
                    ErrorKind::InvalidOnbuildTrigger {
                        found: sub.keyword_text.to_string(),
                    },
                    sub.keyword_span(ctx),
                ));
            }
            let mut expression = node.rest.value.to_string();
            for doc in heredocs {
                expression.push('\n');
                expression.push_str(&doc.content);
                expression.push_str(&doc.name);
            }
            Instruction::Onbuild(Onbuild {
                expression,
                instruction: Box::new(convert(ctx, sub, heredocs)?),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("1..2s"), None);
    }

    #[test]
    fn names() {
        assert!(valid_variable_name("PATH"));
        assert!(valid_variable_name("_x1"));
        assert!(valid_variable_name("spring.profiles-active"));
        assert!(!valid_variable_name("1abc"));
        assert!(!valid_variable_name("a b"));
        assert!(!valid_variable_name("a=b"));
        assert!(!valid_variable_name(""));
        assert!(valid_stage_name("build-1.x_y"));
        assert!(!valid_stage_name("1st"));
    }
}
