//! The syntax tree: what Docker's own parser builds, with spans.
//!
//! [`parse_syntax`] follows BuildKit's parser (`frontend/dockerfile/parser`)
//! rule for rule: physical lines are joined into logical lines at the escape
//! character, comment and blank lines inside a continuation are dropped, each
//! instruction's text is split into arguments by the rule of that instruction,
//! and heredoc bodies are collected after the line that opens them. Nothing
//! is expanded here. [`dump`] prints the tree in the format of BuildKit's
//! `testfiles/*/result`.

use std::borrow::Cow;

use crate::error::{ErrorKind, ParseError};
use crate::expand::{EmptyEnv, Expander};
use crate::grammar::{self, is_hspace, is_space, Rule};
use crate::span::{SourceMap, Span};

/// The instruction keywords, upper case, in the order Docker documents them.
pub const INSTRUCTION_NAMES: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

/// An instruction keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Keyword {
    From,
    Run,
    Cmd,
    Label,
    Maintainer,
    Expose,
    Env,
    Add,
    Copy,
    Entrypoint,
    Volume,
    User,
    Workdir,
    Arg,
    Onbuild,
    StopSignal,
    Healthcheck,
    Shell,
}

impl Keyword {
    #[cfg(test)]
    const ALL: [Keyword; 18] = [
        Keyword::From,
        Keyword::Run,
        Keyword::Cmd,
        Keyword::Label,
        Keyword::Maintainer,
        Keyword::Expose,
        Keyword::Env,
        Keyword::Add,
        Keyword::Copy,
        Keyword::Entrypoint,
        Keyword::Volume,
        Keyword::User,
        Keyword::Workdir,
        Keyword::Arg,
        Keyword::Onbuild,
        Keyword::StopSignal,
        Keyword::Healthcheck,
        Keyword::Shell,
    ];

    /// The keyword upper case, e.g. `"HEALTHCHECK"`.
    pub fn name(self) -> &'static str {
        INSTRUCTION_NAMES[self as usize]
    }

    /// The keyword for `word`, case-insensitively.
    pub fn from_word(word: &str) -> Option<Keyword> {
        // Upper-cased into one integer (the length in its last byte, so
        // that `FROM\0` is not `FROM`), then one match: every instruction
        // line asks, and comparing slices costs a call per candidate.
        const fn key(name: &[u8]) -> u128 {
            let mut buf = [0u8; 16];
            let mut i = 0;
            while i < name.len() && i < 15 {
                buf[i] = name[i].to_ascii_uppercase();
                i += 1;
            }
            buf[15] = name.len() as u8;
            u128::from_le_bytes(buf)
        }
        const FROM: u128 = key(b"FROM");
        const RUN: u128 = key(b"RUN");
        const CMD: u128 = key(b"CMD");
        const LABEL: u128 = key(b"LABEL");
        const MAINTAINER: u128 = key(b"MAINTAINER");
        const EXPOSE: u128 = key(b"EXPOSE");
        const ENV: u128 = key(b"ENV");
        const ADD: u128 = key(b"ADD");
        const COPY: u128 = key(b"COPY");
        const ENTRYPOINT: u128 = key(b"ENTRYPOINT");
        const VOLUME: u128 = key(b"VOLUME");
        const USER: u128 = key(b"USER");
        const WORKDIR: u128 = key(b"WORKDIR");
        const ARG: u128 = key(b"ARG");
        const ONBUILD: u128 = key(b"ONBUILD");
        const STOPSIGNAL: u128 = key(b"STOPSIGNAL");
        const HEALTHCHECK: u128 = key(b"HEALTHCHECK");
        const SHELL: u128 = key(b"SHELL");
        // No keyword is longer than 11 letters.
        if word.len() > 11 {
            return None;
        }
        Some(match key(word.as_bytes()) {
            FROM => Keyword::From,
            RUN => Keyword::Run,
            CMD => Keyword::Cmd,
            LABEL => Keyword::Label,
            MAINTAINER => Keyword::Maintainer,
            EXPOSE => Keyword::Expose,
            ENV => Keyword::Env,
            ADD => Keyword::Add,
            COPY => Keyword::Copy,
            ENTRYPOINT => Keyword::Entrypoint,
            VOLUME => Keyword::Volume,
            USER => Keyword::User,
            WORKDIR => Keyword::Workdir,
            ARG => Keyword::Arg,
            ONBUILD => Keyword::Onbuild,
            STOPSIGNAL => Keyword::StopSignal,
            HEALTHCHECK => Keyword::Healthcheck,
            SHELL => Keyword::Shell,
            _ => return None,
        })
    }
}

/// An argument: its text after the instruction's splitting rule (quotes kept
/// where Docker keeps them, JSON escapes decoded), and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The text.
    pub value: String,
    /// Where it was written (empty for the separators Docker adds to ENV/LABEL).
    pub span: Span,
}

/// A `--name=value` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The flag with quotes and escapes removed, e.g. `--from=build`.
    pub text: String,
    /// The name, e.g. `from`.
    pub name: String,
    /// The value after `=`, `None` for `--name`.
    pub value: Option<String>,
    /// Where it was written.
    pub span: Span,
}

/// A heredoc body collected after its instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// The file descriptor written before `<<`, if any (`3<<EOF`).
    pub fd: Option<u32>,
    /// Whether variables are expanded in the body (the delimiter was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body lines.
    pub chomp: bool,
    /// The body, every line with its line end, delimiter line excluded.
    pub content: String,
    /// Where the body (and its delimiter line) was written.
    pub span: Span,
}

impl Heredoc {
    /// The body as the instruction sees it: for `<<-` without leading tabs.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// One instruction of the syntax tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Which instruction.
    pub keyword: Keyword,
    /// The keyword as written (any case).
    pub keyword_text: String,
    /// Where the keyword was written.
    pub keyword_span: Span,
    /// Flags before the arguments, the `--` that ends them dropped.
    pub flags: Vec<Flag>,
    /// The arguments, split by the instruction's rule. For ENV and LABEL they
    /// come in triples: name, value, and `"="` or `""` (legacy `NAME value` form).
    pub args: Vec<Word>,
    /// The text after the flags, trimmed, as written (continuations joined).
    pub rest: Word,
    /// The arguments were written in the exec (JSON array) form.
    pub json: bool,
    /// The instruction an ONBUILD wraps.
    pub sub: Option<Box<Node>>,
    /// Heredoc bodies, in the order their markers appear.
    pub heredocs: Vec<Heredoc>,
    /// The logical line (continuations joined), as Docker keeps it.
    pub original: String,
    /// From the keyword to the end of the instruction's last line (heredoc bodies included).
    pub span: Span,
}

/// A parser directive (`# escape=`, `# syntax=`, `# check=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The name, lower case.
    pub name: String,
    /// The value, trimmed.
    pub value: String,
    /// The directive's line.
    pub span: Span,
}

/// Something Docker accepts but warns about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// What is suspicious.
    pub message: String,
    /// Where.
    pub span: Span,
}

/// A parsed Dockerfile before interpretation: directives and instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxTree {
    /// Parser directives, in file order.
    pub directives: Vec<Directive>,
    /// The escape character in force (`\` unless `# escape=` chose `` ` ``).
    pub escape: char,
    /// The instructions, in file order.
    pub nodes: Vec<Node>,
    /// Warnings (empty continuation lines).
    pub warnings: Vec<Warning>,
}

/// A logical line (physical pieces joined): where each piece came from, as
/// (offset in the logical text, offset in the source), ascending.
pub(crate) struct Logical<'a> {
    segs: &'a [(usize, usize)],
}

impl Logical<'_> {
    fn to_source(&self, p: usize, is_end: bool) -> usize {
        let idx = if is_end {
            self.segs.partition_point(|s| s.0 < p)
        } else {
            self.segs.partition_point(|s| s.0 <= p)
        };
        match self.segs.get(idx.saturating_sub(1)) {
            Some(&(l, s)) => s + p.saturating_sub(l),
            None => p,
        }
    }
}

/// What turns the logical offsets of one instruction into source spans.
pub(crate) struct Ctx<'a> {
    map: &'a SourceMap<'a>,
    logical: Logical<'a>,
    pub(crate) escape: char,
}

impl Ctx<'_> {
    pub(crate) fn span(&self, start: usize, end: usize) -> Span {
        let s = self.logical.to_source(start, false);
        let e = if end <= start {
            s
        } else {
            self.logical.to_source(end, true)
        };
        self.map.span(s, e)
    }

    fn err(&self, kind: ErrorKind, start: usize, end: usize) -> ParseError {
        ParseError::new(kind, self.span(start, end))
    }
}

/// A word of the internal tree: its value (borrowed from the logical line
/// unless decoding changed it) and its logical byte range.
#[derive(Debug, Clone)]
pub(crate) struct RawWord<'a> {
    pub(crate) value: Cow<'a, str>,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl<'a> RawWord<'a> {
    fn borrowed(value: &'a str, start: usize, end: usize) -> Self {
        RawWord {
            value: Cow::Borrowed(value),
            start,
            end,
        }
    }

    pub(crate) fn span(&self, ctx: &Ctx<'_>) -> Span {
        ctx.span(self.start, self.end)
    }

    fn to_word(&self, ctx: &Ctx<'_>) -> Word {
        Word {
            value: self.value.to_string(),
            span: self.span(ctx),
        }
    }
}

/// A flag of the internal tree: its text with quotes and escapes removed
/// (always starting with `--`) and its logical byte range.
#[derive(Debug, Clone)]
pub(crate) struct RawFlag<'a> {
    pub(crate) text: Cow<'a, str>,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl RawFlag<'_> {
    /// The name, e.g. `from`.
    pub(crate) fn name(&self) -> &str {
        let body = self.text.get(2..).unwrap_or("");
        body.split_once('=').map_or(body, |(n, _)| n)
    }

    /// The value after `=`, `None` for `--name`.
    pub(crate) fn value(&self) -> Option<&str> {
        let body = self.text.get(2..).unwrap_or("");
        body.split_once('=').map(|(_, v)| v)
    }

    pub(crate) fn span(&self, ctx: &Ctx<'_>) -> Span {
        ctx.span(self.start, self.end)
    }
}

/// One instruction as the parser sees it, borrowing from its logical line;
/// [`Node`] is its owned form, the typed layer reads it directly.
#[derive(Debug, Clone)]
pub(crate) struct RawNode<'a> {
    pub(crate) keyword: Keyword,
    pub(crate) keyword_text: &'a str,
    /// Logical range of the keyword.
    pub(crate) kw: (usize, usize),
    pub(crate) flags: Vec<RawFlag<'a>>,
    pub(crate) args: Vec<RawWord<'a>>,
    pub(crate) rest: RawWord<'a>,
    pub(crate) json: bool,
    pub(crate) sub: Option<Box<RawNode<'a>>>,
    pub(crate) heredocs: Vec<Heredoc>,
    /// The trimmed line, and its logical range.
    pub(crate) original: &'a str,
    pub(crate) line: (usize, usize),
}

impl RawNode<'_> {
    pub(crate) fn keyword_span(&self, ctx: &Ctx<'_>) -> Span {
        ctx.span(self.kw.0, self.kw.1)
    }

    fn to_node(&self, ctx: &Ctx<'_>, span: Span) -> Node {
        Node {
            keyword: self.keyword,
            keyword_text: self.keyword_text.to_string(),
            keyword_span: self.keyword_span(ctx),
            flags: self
                .flags
                .iter()
                .map(|f| Flag {
                    text: f.text.to_string(),
                    name: f.name().to_string(),
                    value: f.value().map(str::to_string),
                    span: f.span(ctx),
                })
                .collect(),
            args: self.args.iter().map(|w| w.to_word(ctx)).collect(),
            rest: self.rest.to_word(ctx),
            json: self.json,
            sub: self.sub.as_ref().map(|s| {
                let span = ctx.span(s.line.0, s.line.1);
                Box::new(s.to_node(ctx, span))
            }),
            heredocs: self.heredocs.clone(),
            original: self.original.to_string(),
            span,
        }
    }
}

/// Parser directive state: directives are read until the first line that is
/// not one.
struct DirectiveParser {
    done: bool,
    list: Vec<Directive>,
    escape: char,
}

impl DirectiveParser {
    /// Looks at `line` (newline and, for a first line, leading white space
    /// already removed) starting at source offset `off`.
    fn check(&mut self, line: &str, off: usize, map: &SourceMap<'_>) -> Result<(), ParseError> {
        if self.done {
            return Ok(());
        }
        // A directive is `#`, a name, `=` and a value: without `=` the
        // grammar cannot match, so the parser is not asked.
        if !line.starts_with('#') || !line.contains('=') {
            self.done = true;
            return Ok(());
        }
        let Some((raw_name, raw_value)) = grammar::directive(line) else {
            self.done = true;
            return Ok(());
        };
        let name = raw_name.to_ascii_lowercase();
        if !matches!(name.as_str(), "escape" | "syntax" | "check") {
            self.done = true;
            return Ok(());
        }
        // Go's `\s*=\s*(.+?)\s*$`: trimmed, but an all-space value keeps its last character.
        let re_space = |c: char| matches!(c, '\t' | '\n' | '\u{0C}' | '\r' | ' ');
        let trimmed = raw_value.trim_matches(re_space);
        let value = if trimmed.is_empty() {
            raw_value
                .chars()
                .last()
                .map(String::from)
                .unwrap_or_default()
        } else {
            trimmed.to_string()
        };
        let span = map.span(off, off + line.len());
        if self.list.iter().any(|d| d.name == name) {
            return Err(ParseError::new(
                ErrorKind::DuplicateDirective { name },
                span,
            ));
        }
        if name == "escape" {
            self.escape = match value.as_str() {
                "\\" => '\\',
                "`" => '`',
                _ => {
                    return Err(ParseError::new(
                        ErrorKind::InvalidDirective {
                            name,
                            value,
                            expected: "\\ or `",
                        },
                        span,
                    ))
                }
            };
        }
        self.list.push(Directive { name, value, span });
        Ok(())
    }
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(s: &str) -> bool {
    grammar::trim_space_start(s).starts_with('#')
}

/// Strips a trailing line continuation: the escape character as the last
/// non-blank character, unless it is itself escaped. Returns the text kept
/// and whether the line continues.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    // The escape character is `\` or `` ` `` (the directive allows no other),
    // so the test is on bytes: a `char` pattern costs a `memcmp` per line.
    debug_assert!(
        escape.is_ascii(),
        "the escape directive allows only \\ and `"
    );
    let esc = escape as u8;
    let bytes = line.as_bytes();
    let mut n = bytes.len();
    while n > 0 && matches!(bytes[n - 1], b' ' | b'\t') {
        n -= 1;
    }
    if n == 0 || bytes[n - 1] != esc {
        return (line, false);
    }
    // `n - 1` is the escape, an ASCII byte: a character boundary.
    let body = &line[..n - 1];
    if body.is_empty() || body.as_bytes()[body.len() - 1] != esc {
        (body, true)
    } else {
        (line, false)
    }
}

/// What [`walk`] gives besides the instructions.
pub(crate) struct Walked {
    pub(crate) directives: Vec<Directive>,
    pub(crate) escape: char,
    pub(crate) warnings: Vec<Warning>,
}

/// Parses `text` into a syntax tree, the way Docker's parser does, rejecting
/// unknown instructions.
pub fn parse_syntax(text: &str) -> Result<SyntaxTree, ParseError> {
    let mut nodes = Vec::new();
    let walked = walk(text, |ctx, node, span| nodes.push(node.to_node(ctx, span)))?;
    Ok(SyntaxTree {
        directives: walked.directives,
        escape: walked.escape,
        nodes,
        warnings: walked.warnings,
    })
}

/// Reads `text` the way Docker's parser does and hands each instruction, with
/// its span (heredoc bodies included), to `each` as soon as it is read. Fails
/// at the first syntax error, or when there is no instruction at all.
pub(crate) fn walk(
    text: &str,
    mut each: impl FnMut(&Ctx<'_>, &RawNode<'_>, Span),
) -> Result<Walked, ParseError> {
    let map = SourceMap::new(text, grammar::line_starts(text));
    // Physical lines: (byte offset, line with its `\n` when it has one).
    let line_count = if text.is_empty() { 0 } else { map.line_count() };
    let line_at = |i: usize| map.line(i);
    let mut directives = DirectiveParser {
        done: false,
        list: Vec::new(),
        escape: '\\',
    };
    let mut warnings = Vec::new();
    let mut count = 0usize;
    // Reused for every continued instruction.
    let mut joined = String::new();
    let mut segs: Vec<(usize, usize)> = Vec::with_capacity(8);
    // The argument list of the last instruction, its allocation reused.
    let mut spare_args: Vec<RawWord<'static>> = Vec::with_capacity(8);
    let mut i = 0;
    while i < line_count {
        let (mut off, raw) = line_at(i);
        let mut line = trim_newline(raw);
        if i == 0 {
            if let Some(rest) = line.strip_prefix('\u{FEFF}') {
                off += 3;
                line = rest;
            }
        }
        let trimmed = grammar::trim_space_start(line);
        off += line.len() - trimmed.len();
        let line = trimmed;
        directives.check(line, off, &map)?;
        let line = if is_comment(line) { "" } else { line };
        let first_line = i;
        i += 1;
        let escape = directives.escape;
        let (first, mut continues) = trim_continuation(line, escape);
        if !continues && first.is_empty() {
            continue;
        }
        segs.clear();
        segs.push((0, off));
        joined.clear();
        let mut is_joined = false;
        let mut last_end = off + line.len();
        let mut empty_continuation = false;
        while continues && i < line_count {
            let (off, raw) = line_at(i);
            i += 1;
            let line = trim_newline(raw);
            directives.check(line, off, &map)?;
            last_end = off + line.len();
            if is_comment(raw) {
                continue;
            }
            if grammar::trim_space_start(line).is_empty() {
                empty_continuation = true;
                continue;
            }
            let (piece, more) = trim_continuation(line, escape);
            if !is_joined {
                joined.push_str(first);
                is_joined = true;
            }
            segs.push((joined.len(), off));
            joined.push_str(piece);
            continues = more;
        }
        let logical_text: &str = if is_joined { &joined } else { first };
        let ctx = Ctx {
            map: &map,
            logical: Logical { segs: &segs },
            escape,
        };
        if empty_continuation {
            warnings.push(Warning {
                message: format!("empty continuation line found in: {logical_text}"),
                span: map.span(off, last_end),
            });
        }
        let args = recycle(std::mem::take(&mut spare_args));
        let mut node = node_from_line(&ctx, logical_text, 0, false, args)?;
        if can_contain_heredoc(&node) && logical_text.contains("<<") {
            for mut doc in heredocs_from_line(&ctx, logical_text)? {
                let body_start = if i < line_count {
                    line_at(i).0
                } else {
                    text.len()
                };
                let mut terminated = false;
                while i < line_count {
                    let (off, raw) = line_at(i);
                    i += 1;
                    let mut candidate = trim_newline(raw);
                    last_end = off + candidate.len();
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(raw);
                }
                if !terminated {
                    return Err(ParseError::new(
                        ErrorKind::UnterminatedHeredoc {
                            delimiter: doc.name.clone(),
                        },
                        ctx.span(0, logical_text.len()),
                    ));
                }
                doc.span = map.span(body_start, last_end);
                node.heredocs.push(doc);
            }
        }
        let start = ctx.logical.to_source(node.line.0, false);
        let span = map.span_near(start, last_end.max(start), Some(first_line), Some(i - 1));
        count += 1;
        each(&ctx, &node, span);
        spare_args = recycle(std::mem::take(&mut node.args));
    }
    if count == 0 {
        let end = text.len();
        return Err(ParseError::new(
            ErrorKind::NoInstructions,
            map.span(end, end),
        ));
    }
    Ok(Walked {
        directives: directives.list,
        escape: directives.escape,
        warnings,
    })
}

/// An empty vector with the allocation of `v` (collected in place): the
/// mapping only changes the lifetime of the (absent) elements.
#[allow(clippy::unnecessary_filter_map)]
fn recycle<'b>(mut v: Vec<RawWord<'_>>) -> Vec<RawWord<'b>> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

fn can_contain_heredoc(node: &RawNode<'_>) -> bool {
    let node = match (&node.keyword, &node.sub) {
        (Keyword::Onbuild, Some(sub)) => sub,
        _ => node,
    };
    matches!(node.keyword, Keyword::Run | Keyword::Copy | Keyword::Add) && !node.json
}

/// Trims Unicode white space off `s` (at logical offset `off`), returning the
/// trimmed text and its offset.
fn trim_at(s: &str, off: usize) -> (&str, usize) {
    let t = grammar::trim_space_start(s);
    let off = off + (s.len() - t.len());
    (grammar::trim_space_end(t), off)
}

#[inline]
fn node_from_line<'a>(
    ctx: &Ctx<'_>,
    text: &'a str,
    base: usize,
    nested: bool,
    mut args: Vec<RawWord<'a>>,
) -> Result<RawNode<'a>, ParseError> {
    let (line, base) = trim_at(text, base);
    // Docker splits the keyword off at the first run of `[\t\v\f\r ]`.
    let kw_end = line
        .bytes()
        .position(grammar::is_hspace_byte)
        .unwrap_or(line.len());
    let keyword_text = &line[..kw_end];
    let after = &line[kw_end..];
    let rest = grammar::trim_hspace_start(after);
    let rest_off = base + kw_end + (after.len() - rest.len());
    let kw = (base, base + keyword_text.len());
    let Some(keyword) = Keyword::from_word(keyword_text) else {
        return Err(ctx.err(
            ErrorKind::UnknownInstruction {
                found: keyword_text.to_string(),
            },
            kw.0,
            kw.1,
        ));
    };
    if nested && keyword == Keyword::Onbuild {
        return Err(ctx.err(
            ErrorKind::InvalidOnbuildTrigger {
                found: keyword_text.to_string(),
            },
            kw.0,
            kw.1,
        ));
    }
    let (flags, args_text, args_off) = extract_flags(rest, rest_off);
    let (args_text, args_off) = trim_at(args_text, args_off);
    let mut node = RawNode {
        keyword,
        keyword_text,
        kw,
        flags,
        args: Vec::new(),
        rest: RawWord::borrowed(args_text, args_off, args_off + args_text.len()),
        json: false,
        sub: None,
        heredocs: Vec::new(),
        original: line,
        line: (base, base + line.len()),
    };
    match keyword {
        Keyword::Add | Keyword::Copy | Keyword::Volume => {
            node.json = parse_json(ctx, args_text, args_off, &mut args)?;
            if !node.json {
                split_whitespace(args_text, args_off, &mut args);
            }
        }
        Keyword::Cmd | Keyword::Entrypoint | Keyword::Run | Keyword::Shell => {
            node.json = parse_maybe_json(ctx, args_text, args_off, &mut args)?;
        }
        Keyword::Arg => parse_words(ctx.escape, args_text, args_off, &mut args),
        Keyword::Env | Keyword::Label => {
            parse_name_val(ctx, args_text, args_off, keyword, &mut args)?;
        }
        Keyword::Expose | Keyword::From => split_whitespace(args_text, args_off, &mut args),
        Keyword::Maintainer | Keyword::StopSignal | Keyword::User | Keyword::Workdir => {
            if !args_text.is_empty() {
                args.push(RawWord::borrowed(
                    args_text,
                    args_off,
                    args_off + args_text.len(),
                ));
            }
        }
        Keyword::Healthcheck => {
            if !args_text.is_empty() {
                let sep = args_text.find(is_space).unwrap_or(args_text.len());
                let typ = &args_text[..sep];
                let after = &args_text[sep..];
                let cmd_text = after.trim_start();
                let cmd_off = args_off + sep + (after.len() - cmd_text.len());
                args.push(RawWord::borrowed(typ, args_off, args_off + sep));
                node.json = parse_maybe_json(ctx, cmd_text, cmd_off, &mut args)?;
            }
        }
        Keyword::Onbuild => {
            if !args_text.is_empty() {
                let sub = node_from_line(ctx, args_text, args_off, true, Vec::new())?;
                node.sub = Some(Box::new(sub));
            }
        }
    }
    node.args = args;
    Ok(node)
}

/// Byte offset of the first character at or after `i` that is not Unicode
/// white space (the grammar's `uspace`).
fn skip_space(s: &str, i: usize) -> usize {
    let rest = s.get(i..).unwrap_or("");
    i + (rest.len() - grammar::trim_space_start(rest).len())
}

/// The flags at the start of `rest`, and the text after them: the
/// grammar's `flags` rule (`--` words, each followed by white space or the
/// end), read byte by byte.
fn extract_flags(rest: &str, off: usize) -> (Vec<RawFlag<'_>>, &str, usize) {
    let mut flags = Vec::new();
    if !grammar::trim_space_start(rest).starts_with("--") {
        return (flags, rest, off);
    }
    let mut pos = skip_space(rest, 0);
    let mut rest_start = pos;
    while rest[pos..].starts_with("--") {
        let end = flag_word_end(rest, pos);
        let text = unquote_flag(&rest[pos..end]);
        if text == "--" {
            rest_start = end;
            break;
        }
        flags.push(RawFlag {
            text,
            start: off + pos,
            end: off + end,
        });
        // A flag word ends at white space or at the end of the text.
        pos = skip_space(rest, end);
        rest_start = pos;
    }
    let rest_start = rest_start.min(rest.len());
    (flags, &rest[rest_start..], off + rest_start)
}

/// The end of the flag word starting (with `--`) at `start`: the grammar's
/// `flag_word`, pieces that are quoted strings (a missing closing quote
/// runs to the end), `\` escapes, or any character but white space.
fn flag_word_end(s: &str, start: usize) -> usize {
    let b = s.as_bytes();
    let next_len = |i: usize| {
        s.get(i..)
            .and_then(|r| r.chars().next())
            .map(char::len_utf8)
    };
    let mut i = start + 2;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'\\' => {
                            i += 1;
                            i += next_len(i).unwrap_or(0);
                        }
                        c if c == q => {
                            i += 1;
                            break;
                        }
                        _ => i += next_len(i).unwrap_or(1),
                    }
                }
            }
            b'\\' => {
                i += 1;
                i += next_len(i).unwrap_or(0);
            }
            c if c.is_ascii() => {
                if is_space(c as char) {
                    break;
                }
                i += 1;
            }
            _ => match s[i..].chars().next() {
                Some(c) if is_space(c) => break,
                Some(c) => i += c.len_utf8(),
                None => break,
            },
        }
    }
    i
}

/// Removes quotes and `\` escapes from a flag word, as Docker does.
fn unquote_flag(word: &str) -> Cow<'_, str> {
    if !word.contains(['\'', '"', '\\']) {
        return Cow::Borrowed(word);
    }
    let mut out = String::with_capacity(word.len());
    let mut quote: Option<char> = None;
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    continue;
                }
                if c == '\\' {
                    match chars.next() {
                        Some(n) => out.push(n),
                        None => continue,
                    }
                    continue;
                }
                out.push(c);
            }
            Some(q) => {
                if c == q {
                    quote = None;
                    continue;
                }
                if c == '\\' {
                    match chars.next() {
                        Some(n) => out.push(n),
                        None => quote = None,
                    }
                    continue;
                }
                out.push(c);
            }
        }
    }
    Cow::Owned(out)
}

/// Splits at runs of `[\t\v\f\r ]`.
fn split_whitespace<'a>(text: &'a str, off: usize, out: &mut Vec<RawWord<'a>>) {
    if text.is_empty() {
        return;
    }
    let mut start = 0;
    let mut in_sep = false;
    for (i, c) in text.char_indices() {
        if is_hspace(c) {
            if !in_sep {
                out.push(RawWord::borrowed(&text[start..i], off + start, off + i));
                in_sep = true;
            }
        } else if in_sep {
            start = i;
            in_sep = false;
        }
    }
    if in_sep {
        out.push(RawWord::borrowed("", off + text.len(), off + text.len()));
    } else {
        out.push(RawWord::borrowed(
            &text[start..],
            off + start,
            off + text.len(),
        ));
    }
}

/// The exec form: `Some(words)` for a JSON array of strings, `None` for text
/// that is not a JSON array (the shell form), an error for a JSON array
/// holding something else than strings.
fn parse_json<'a>(
    ctx: &Ctx<'_>,
    text: &'a str,
    off: usize,
    out: &mut Vec<RawWord<'a>>,
) -> Result<bool, ParseError> {
    let t = grammar::trim_space_start(text);
    let off = off + (text.len() - t.len());
    if !t.starts_with('[') {
        return Ok(false);
    }
    if exec_form(t, off, out) {
        return Ok(true);
    }
    // Nesting deeper than 64 is no exec form a person wrote: shell text.
    if maybe_json_array(t) && grammar::is_json_document(t, 64) {
        return Err(ctx.err(
            ErrorKind::NotStringArray {
                found: t.to_string(),
            },
            off,
            off + t.len(),
        ));
    }
    Ok(false)
}

/// Whether `t` (which starts with `[`) can be a JSON document at all: its
/// last character but JSON white space is `]`, and the first one after the
/// `[` closes the array or opens a value. Text that fails this (single
/// quotes, a missing `]`) is shell text without asking the grammar.
fn maybe_json_array(t: &str) -> bool {
    let json_ws = [' ', '\t', '\n', '\r'];
    let inner = t.get(1..).unwrap_or("").trim_start_matches(json_ws);
    t.trim_end_matches(json_ws).ends_with(']')
        && inner.starts_with(|c: char| {
            matches!(c, ']' | '[' | '{' | '"' | '-' | 't' | 'f' | 'n') || c.is_ascii_digit()
        })
}

/// The grammar's `exec_form` rule read byte by byte: an array of JSON
/// strings and nothing else but JSON white space. The strings come decoded,
/// with the logical range of their token (quotes included), added to `out`;
/// `out` is left as it was when `t` is no exec form.
fn exec_form<'a>(t: &'a str, off: usize, out: &mut Vec<RawWord<'a>>) -> bool {
    let len = out.len();
    let words = exec_form_words(t, off, out);
    if words.is_none() {
        out.truncate(len);
    }
    words.is_some()
}

fn exec_form_words<'a>(t: &'a str, off: usize, words: &mut Vec<RawWord<'a>>) -> Option<()> {
    let b = t.as_bytes();
    let ws = |mut i: usize| {
        while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    };
    let mut i = ws(0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i = ws(i + 1);
    if b.get(i) == Some(&b'"') {
        loop {
            let (end, escaped) = json_string_end(b, i)?;
            let tok = &t[i..end];
            let value = if escaped {
                Cow::Owned(grammar::decode_json_string(tok))
            } else {
                Cow::Borrowed(&tok[1..tok.len() - 1])
            };
            words.push(RawWord {
                value,
                start: off + i,
                end: off + end,
            });
            let j = ws(end);
            if b.get(j) != Some(&b',') {
                i = j;
                break;
            }
            i = ws(j + 1);
            if b.get(i) != Some(&b'"') {
                return None;
            }
        }
    }
    if b.get(i) != Some(&b']') {
        return None;
    }
    (ws(i + 1) == b.len()).then_some(())
}

/// The end of the JSON string token opening at `start` (the grammar's
/// `json_string`), and whether it holds escapes.
fn json_string_end(b: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut i = start + 1;
    let mut escaped = false;
    loop {
        match *b.get(i)? {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                match *b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let hex = b.get(i + 2..i + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        i += 6;
                    }
                    _ => return None,
                }
            }
            0x00..=0x1F => return None,
            _ => i += 1,
        }
    }
}

/// The exec form or the whole text as one word; whether it was the exec form.
fn parse_maybe_json<'a>(
    ctx: &Ctx<'_>,
    text: &'a str,
    off: usize,
    out: &mut Vec<RawWord<'a>>,
) -> Result<bool, ParseError> {
    if text.is_empty() {
        return Ok(false);
    }
    if parse_json(ctx, text, off, out)? {
        return Ok(true);
    }
    out.push(RawWord::borrowed(text, off, off + text.len()));
    Ok(false)
}

/// Docker's `parseWords`: splits at unquoted white space, keeping quotes and
/// escapes in the words (they are removed when the word is expanded).
fn parse_words<'a>(escape: char, text: &'a str, off: usize, out: &mut Vec<RawWord<'a>>) {
    out.extend(
        SplitWords::new(escape, text).map(|(start, value_end, end)| {
            RawWord::borrowed(&text[start..value_end], off + start, off + end)
        }),
    );
}

/// The words of [`parse_words`] as byte ranges of `text`: (start, end of the
/// value, end). A word's value is its raw text (quotes and escapes are kept),
/// except that an escape character ending the text is dropped.
#[derive(Clone)]
struct SplitWords<'t> {
    escape: char,
    len: usize,
    iter: AsciiFirst<'t>,
}

impl<'t> SplitWords<'t> {
    fn new(escape: char, text: &'t str) -> Self {
        SplitWords {
            escape,
            len: text.len(),
            iter: AsciiFirst { text, pos: 0 },
        }
    }
}

/// `char_indices()` that decodes only non-ASCII bytes: the words of ENV,
/// LABEL and ARG are nearly all ASCII.
#[derive(Clone)]
struct AsciiFirst<'t> {
    text: &'t str,
    pos: usize,
}

impl AsciiFirst<'_> {
    fn done(&self) -> bool {
        self.pos >= self.text.len()
    }
}

impl Iterator for AsciiFirst<'_> {
    type Item = (usize, char);

    fn next(&mut self) -> Option<(usize, char)> {
        let at = self.pos;
        let b = *self.text.as_bytes().get(at)?;
        let c = if b.is_ascii() {
            b as char
        } else {
            // `at` always follows whole characters: a boundary.
            self.text.get(at..)?.chars().next()?
        };
        self.pos += c.len_utf8();
        Some((at, c))
    }
}

impl Iterator for SplitWords<'_> {
    type Item = (usize, usize, usize);

    fn next(&mut self) -> Option<(usize, usize, usize)> {
        loop {
            // Leading white space.
            let (start, first) = loop {
                let (pos, ch) = self.iter.next()?;
                if !is_space(ch) {
                    break (pos, ch);
                }
            };
            let mut in_quote = false;
            let mut quote = '\0';
            let mut blank_ok = false;
            // The value is `text[start..value_end]`.
            let mut value_end = start;
            let mut next = Some((start, first));
            while let Some((pos, ch)) = next.take().or_else(|| self.iter.next()) {
                if !in_quote {
                    if is_space(ch) {
                        if blank_ok || value_end > start {
                            return Some((start, value_end, pos));
                        }
                        break;
                    }
                    if ch == '\'' || ch == '"' {
                        quote = ch;
                        blank_ok = true;
                        in_quote = true;
                    }
                    value_end = pos + ch.len_utf8();
                    if ch == self.escape {
                        match self.iter.next() {
                            None => value_end = pos,
                            Some((p, n)) => value_end = p + n.len_utf8(),
                        }
                    }
                    continue;
                }
                if ch == quote {
                    in_quote = false;
                }
                value_end = pos + ch.len_utf8();
                if ch == self.escape && quote != '\'' {
                    match self.iter.next() {
                        None => {
                            in_quote = false;
                            value_end = pos;
                        }
                        Some((p, n)) => value_end = p + n.len_utf8(),
                    }
                }
            }
            if self.iter.done() {
                // The text ended inside this word.
                return (blank_ok || value_end > start).then_some((start, value_end, self.len));
            }
        }
    }
}

/// ENV and LABEL: `NAME=VALUE ...` or the legacy `NAME VALUE`, as triples.
fn parse_name_val<'a>(
    ctx: &Ctx<'_>,
    text: &'a str,
    off: usize,
    keyword: Keyword,
    out: &mut Vec<RawWord<'a>>,
) -> Result<(), ParseError> {
    let words = SplitWords::new(ctx.escape, text);
    let Some((first_start, first_value_end, _)) = words.clone().next() else {
        return Ok(());
    };
    if !text[first_start..first_value_end].contains('=') {
        let Some(i) = text.find(is_hspace) else {
            return Err(ctx.err(
                ErrorKind::MissingValue {
                    instruction: keyword.name(),
                    name: text.to_string(),
                },
                off,
                off + text.len(),
            ));
        };
        let after = &text[i..];
        let value = grammar::trim_hspace_start(after);
        let j = i + (after.len() - value.len());
        let end = off + text.len();
        out.extend([
            RawWord::borrowed(&text[..i], off, off + i),
            RawWord::borrowed(value, off + j, end),
            RawWord::borrowed("", end, end),
        ]);
        return Ok(());
    }
    for (s, value_end, e) in words {
        let value = &text[s..value_end];
        let (start, end) = (off + s, off + e);
        let Some(eq) = value.find('=') else {
            return Err(ctx.err(
                ErrorKind::MissingEquals {
                    instruction: keyword.name(),
                    word: value.to_string(),
                },
                start,
                end,
            ));
        };
        // The raw text of a word equals its value (only an escape at the
        // very end is dropped), so the `=` is at the same logical offset.
        let (k, v) = (&value[..eq], &value[eq + 1..]);
        let eq_at = (start + eq).min(end);
        out.push(RawWord::borrowed(k, start, eq_at));
        out.push(RawWord::borrowed(v, (eq_at + 1).min(end), end));
        out.push(RawWord::borrowed("=", eq_at, (eq_at + 1).min(end)));
    }
    Ok(())
}

/// Heredoc markers on an instruction line (BuildKit lexes the whole line
/// with `\` as escape, quotes and escapes kept, unset variables left as written).
fn heredocs_from_line(ctx: &Ctx<'_>, line: &str) -> Result<Vec<Heredoc>, ParseError> {
    let lexer = Expander::new('\\')
        .raw_quotes(true)
        .raw_escapes(true)
        .skip_unset(true);
    let Ok(words) = lexer.expand_words(line, &EmptyEnv) else {
        return Ok(Vec::new());
    };
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc_marker(&word).map_err(|reason| {
            ctx.err(
                ErrorKind::InvalidHeredoc {
                    found: word.clone(),
                    reason,
                },
                0,
                line.len(),
            )
        })? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Reads a heredoc marker word such as `<<EOF`, `<<-"EOF"`, `3<<EOF`;
/// `Ok(None)` when the word is no marker.
pub(crate) fn parse_heredoc_marker(word: &str) -> Result<Option<Heredoc>, String> {
    // The grammar wants digits and then `<<`: anything else is no marker,
    // and the parser is not asked.
    if !word
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .starts_with("<<")
    {
        return Ok(None);
    }
    let Some(pairs) = grammar::parse(Rule::heredoc_marker, word) else {
        return Ok(None);
    };
    let mut fd = None;
    let mut chomp = false;
    let mut rest = "";
    for p in pairs.flatten() {
        match p.as_rule() {
            Rule::heredoc_fd if !p.as_str().is_empty() => fd = p.as_str().parse::<u32>().ok(),
            Rule::heredoc_chomp => chomp = true,
            Rule::heredoc_word => rest = p.as_str(),
            _ => {}
        }
    }
    if rest.is_empty() {
        return Ok(None);
    }
    let plain = Expander::new('\\').skip_unset(true);
    let words = plain
        .expand_words(rest, &EmptyEnv)
        .map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = plain
        .raw_quotes(true)
        .expand_words(rest, &EmptyEnv)
        .map_err(|e| e.to_string())?;
    if raw.len() != words.len() {
        return Err(format!(
            "lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    let name = words.into_iter().next().unwrap_or_default();
    let expand = quotes(&name) == raw.first().map(|r| quotes(r)).unwrap_or(0);
    Ok(Some(Heredoc {
        name,
        fd,
        expand,
        chomp,
        content: String::new(),
        span: Span::default(),
    }))
}

/// Quotes `s` the way Go's `strconv.Quote` does.
pub fn go_quote(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0B}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7F}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if !is_go_printable(c) => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint` for non-ASCII characters:
/// controls, format characters, separators other than the space, private use
/// and non-characters are not printable.
fn is_go_printable(c: char) -> bool {
    let u = c as u32;
    if u < 0x80 {
        return (0x20..0x7F).contains(&u);
    }
    !matches!(u,
        0x80..=0xA0
        | 0xAD
        | 0x600..=0x605
        | 0x61C
        | 0x6DD
        | 0x70F
        | 0x1680
        | 0x180E
        | 0x2000..=0x200F
        | 0x2028..=0x202F
        | 0x205F..=0x2064
        | 0x2066..=0x206F
        | 0x3000
        | 0xD800..=0xF8FF
        | 0xFDD0..=0xFDEF
        | 0xFEFF
        | 0xFFF9..=0xFFFB
        | 0xFFFE..=0xFFFF
        | 0xE0001
        | 0xE0020..=0xE007F
        | 0xF0000..=0x10FFFF
    ) && (u & 0xFFFE) != 0xFFFE
}

fn dump_node(node: &Node, out: &mut String) {
    out.push_str(&node.keyword_text.to_lowercase());
    if !node.flags.is_empty() {
        out.push_str(" [");
        for (i, f) in node.flags.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&go_quote(&f.text));
        }
        out.push(']');
    }
    if let Some(sub) = &node.sub {
        out.push_str(" (");
        dump_node(sub, out);
        out.push(')');
    }
    for a in &node.args {
        out.push(' ');
        out.push_str(&go_quote(&a.value));
    }
}

/// Prints the tree in BuildKit's dump format: one `(keyword ["--flag"] "arg" ...)`
/// line per instruction.
pub fn dump(tree: &SyntaxTree) -> String {
    let mut out = String::new();
    for node in &tree.nodes {
        out.push('(');
        dump_node(node, &mut out);
        out.push_str(")\n");
    }
    out
}

#[cfg(test)]
mod tests {
    //! The byte-level scanners against the grammar rules they implement.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn soup(tokens: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(tokens), 0..24).prop_map(|t| t.concat())
    }

    const TOKENS: &[&str] = &[
        "--", "-", "a", "=", "b c", " ", "\t", "\n", "\r", "\u{a0}", "\u{2003}", "\u{e9}", "\"",
        "'", "\\", "\\\"", "[", "]", ",", "\"x\"", "\\u00e9", "\\uZZ", "\\n", "\\q", "\u{1}", "{",
        "}", ":", "1", "-2.5e3", "true", "null", "`",
    ];

    const DIRECTIVE_TOKENS: &[&str] = &[
        "#",
        "escape",
        "Syntax",
        "a1",
        "1",
        "_",
        "=",
        " ",
        "\t",
        "\u{c}",
        "\u{b}",
        "\u{a0}",
        "\u{2003}",
        "\n",
        "\r",
        "\\",
        "`",
        "docker/dockerfile:1",
        "\u{e9}",
    ];

    #[test]
    fn keywords_are_found_in_any_case() {
        for k in Keyword::ALL {
            let name = k.name();
            assert_eq!(Keyword::from_word(name), Some(k));
            assert_eq!(Keyword::from_word(&name.to_lowercase()), Some(k));
            let mixed: String = name
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_lowercase()
                    } else {
                        c
                    }
                })
                .collect();
            assert_eq!(Keyword::from_word(&mixed), Some(k));
            assert_eq!(Keyword::from_word(&format!("{name}X")), None);
            assert_eq!(Keyword::from_word(&name[1..]), None);
        }
        for word in [
            "",
            "FROM\0",
            "\0FROM",
            "RUN\0\0",
            "FROMM",
            "HEALTHCHECKS",
            "\u{17f}hell",
            "ſhell",
            "RUN ",
            "K\u{212a}",
        ] {
            assert_eq!(Keyword::from_word(word), None, "{word:?}");
        }
    }

    #[test]
    fn json_deeper_than_the_limit_is_no_document() {
        let doc = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(grammar::is_json_document(&doc(64), 64));
        assert!(!grammar::is_json_document(&doc(65), 64));
        assert!(grammar::parse(Rule::json_doc, &doc(65)).is_some());
        // A deep array after CMD is shell text, not the "not a string array" error.
        let deep = format!("FROM a\nCMD {}\n", doc(100_000));
        assert!(crate::parse(&deep).is_ok());
        assert!(crate::parse("FROM a\nCMD [[]]\n").is_err());
    }

    #[test]
    fn numbers_and_literals_follow_the_grammar() {
        for t in [
            "[0]",
            "[-0]",
            "[01]",
            "[1.]",
            "[1.5]",
            "[1e]",
            "[1e+]",
            "[1E-3]",
            "[-]",
            "[.5]",
            "[tru]",
            "[true]",
            "[null,false]",
            "[\"\\u12\"]",
            "[\"\\u12ab\"]",
            "{}",
            "{\"a\"}",
            "{\"a\":1,}",
            "[1,]",
            " [ ] ",
            "\"s\"",
            "1",
            "[\"\u{1}\"]",
        ] {
            assert_eq!(
                grammar::is_json_document(t, 64),
                grammar::parse(Rule::json_doc, t).is_some(),
                "{t:?}"
            );
        }
    }

    /// The grammar's `flags` rule, read as the parser read it before.
    fn grammar_flags(rest: &str) -> (Vec<(String, usize, usize)>, usize) {
        let mut flags = Vec::new();
        let pairs = grammar::parse(Rule::flags, rest).unwrap();
        let mut rest_start = 0;
        for top in pairs {
            rest_start = top.as_span().end();
            for p in top.into_inner() {
                if p.as_rule() != Rule::flag_word {
                    continue;
                }
                let text = unquote_flag(p.as_str()).into_owned();
                let span = p.as_span();
                if text == "--" {
                    rest_start = span.end();
                    break;
                }
                flags.push((text, span.start(), span.end()));
            }
        }
        (flags, rest_start.min(rest.len()))
    }

    fn grammar_exec_form(t: &str) -> Option<Vec<(String, usize, usize)>> {
        let pairs = grammar::parse(Rule::exec_form, t)?;
        Some(
            pairs
                .flatten()
                .filter(|p| p.as_rule() == Rule::json_string)
                .map(|p| {
                    let s = p.as_span();
                    (grammar::decode_json_string(p.as_str()), s.start(), s.end())
                })
                .collect(),
        )
    }

    proptest! {
        #[test]
        fn line_starts_are_the_grammar_lines(text in soup(TOKENS)) {
            let lines = grammar::lines(&text);
            let mut expected: Vec<usize> = lines.iter().map(|(o, _)| *o).collect();
            if expected.is_empty() {
                expected.push(0);
            }
            prop_assert_eq!(grammar::line_starts(&text), expected);
        }

        #[test]
        fn flags_are_the_grammar_flags(text in soup(TOKENS)) {
            for rest in [text.clone(), format!("--{text}"), format!(" --a {text}")] {
                let (flags, after, off) = extract_flags(&rest, 0);
                let got: Vec<_> = flags.iter().map(|f| (f.text.to_string(), f.start, f.end)).collect();
                if rest.trim_start_matches(is_space).starts_with("--") {
                    let (want, start) = grammar_flags(&rest);
                    prop_assert_eq!(&got, &want);
                    prop_assert_eq!(off, start);
                } else {
                    prop_assert!(got.is_empty());
                    prop_assert_eq!(off, 0);
                }
                prop_assert_eq!(after, &rest[off..]);
            }
        }

        #[test]
        fn directive_is_the_grammar_directive(text in soup(DIRECTIVE_TOKENS)) {
            for line in [text.clone(), format!("#{text}"), format!("# a{text}"), format!("#\u{a0}x {text}")] {
                let want = grammar::parse(Rule::directive, &line).map(|pairs| {
                    let mut name = "";
                    let mut value = "";
                    for p in pairs.flatten() {
                        match p.as_rule() {
                            Rule::directive_name => name = p.as_str(),
                            Rule::directive_value => value = p.as_str(),
                            _ => {}
                        }
                    }
                    (name, value)
                });
                prop_assert_eq!(grammar::directive(&line), want);
            }
        }

        #[test]
        fn json_document_is_the_grammar_json_document(text in soup(TOKENS)) {
            for t in [text.clone(), format!("[{text}"), format!("[{text}]"), format!("{{\"k\":{text}}}")] {
                let want = grammar::parse(Rule::json_doc, &t).is_some();
                prop_assert_eq!(grammar::is_json_document(&t, 64), want, "{:?}", t);
            }
        }

        #[test]
        fn exec_form_is_the_grammar_exec_form(text in soup(TOKENS)) {
            for t in [text.clone(), format!("[{text}"), format!("[\"{text}\"]")] {
                let mut words = vec![RawWord::borrowed("x", 0, 0)];
                let got = exec_form(&t, 0, &mut words).then(|| {
                    words[1..].iter().map(|w| (w.value.to_string(), w.start, w.end)).collect::<Vec<_>>()
                });
                if got.is_none() {
                    prop_assert_eq!(words.len(), 1);
                }
                prop_assert_eq!(got, grammar_exec_form(&t));
            }
        }

        #[test]
        fn json_prefilter_only_skips_non_json(text in soup(TOKENS)) {
            let t = format!("[{text}");
            if !maybe_json_array(&t) {
                prop_assert!(grammar::parse(Rule::json_doc, &t).is_none());
            }
        }
    }
}
