//! The syntax tree: what Docker's own parser builds, with spans.
//!
//! [`parse_syntax`] follows BuildKit's parser (`frontend/dockerfile/parser`)
//! rule for rule: physical lines are joined into logical lines at the escape
//! character, comment and blank lines inside a continuation are dropped, each
//! instruction's text is split into arguments by the rule of that instruction,
//! and heredoc bodies are collected after the line that opens them. Nothing
//! is expanded here. [`dump`] prints the tree in the format of BuildKit's
//! `testfiles/*/result`.

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
        Keyword::ALL
            .iter()
            .copied()
            .find(|k| k.name().eq_ignore_ascii_case(word))
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

/// A logical line: physical pieces joined, and where each piece came from.
struct Logical {
    text: String,
    /// (offset in `text`, offset in the source), ascending.
    segs: Vec<(usize, usize)>,
}

impl Logical {
    fn push(&mut self, src_off: usize, s: &str) {
        self.segs.push((self.text.len(), src_off));
        self.text.push_str(s);
    }

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

struct Ctx<'a> {
    map: &'a SourceMap<'a>,
    logical: &'a Logical,
    escape: char,
}

impl Ctx<'_> {
    fn span(&self, start: usize, end: usize) -> Span {
        let s = self.logical.to_source(start, false);
        let e = if end <= start {
            s
        } else {
            self.logical.to_source(end, true)
        };
        self.map.span(s, e)
    }

    fn word(&self, value: impl Into<String>, start: usize, end: usize) -> Word {
        Word {
            value: value.into(),
            span: self.span(start, end),
        }
    }

    fn err(&self, kind: ErrorKind, start: usize, end: usize) -> ParseError {
        ParseError::new(kind, self.span(start, end))
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
        if !line.starts_with('#') {
            self.done = true;
            return Ok(());
        }
        let Some(mut pairs) = grammar::parse(Rule::directive, line) else {
            self.done = true;
            return Ok(());
        };
        let mut name = String::new();
        let mut raw_value = "";
        for p in pairs.next().into_iter().flat_map(|p| p.into_inner()) {
            match p.as_rule() {
                Rule::directive_name => name = p.as_str().to_ascii_lowercase(),
                Rule::directive_value => raw_value = p.as_str(),
                _ => {}
            }
        }
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
    s.trim_start().starts_with('#')
}

/// Strips a trailing line continuation: the escape character as the last
/// non-blank character, unless it is itself escaped. Returns the text kept
/// and whether the line continues.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    let Some(body) = t.strip_suffix(escape) else {
        return (line, false);
    };
    if body.is_empty() || !body.ends_with(escape) {
        (body, true)
    } else {
        (line, false)
    }
}

/// Parses `text` into a syntax tree, the way Docker's parser does, rejecting
/// unknown instructions.
pub fn parse_syntax(text: &str) -> Result<SyntaxTree, ParseError> {
    let lines = grammar::lines(text);
    let starts: Vec<usize> = if lines.is_empty() {
        vec![0]
    } else {
        lines.iter().map(|(o, _)| *o).collect()
    };
    let map = SourceMap::new(text, starts);
    let mut directives = DirectiveParser {
        done: false,
        list: Vec::new(),
        escape: '\\',
    };
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (mut off, raw) = lines[i];
        let mut line = trim_newline(raw);
        if i == 0 {
            if let Some(rest) = line.strip_prefix('\u{FEFF}') {
                off += 3;
                line = rest;
            }
        }
        let trimmed = line.trim_start();
        off += line.len() - trimmed.len();
        let line = trimmed;
        directives.check(line, off, &map)?;
        let line = if is_comment(line) { "" } else { line };
        i += 1;
        let escape = directives.escape;
        let (first, mut continues) = trim_continuation(line, escape);
        if !continues && first.is_empty() {
            continue;
        }
        let mut logical = Logical {
            text: String::with_capacity(first.len()),
            segs: Vec::with_capacity(1),
        };
        logical.push(off, first);
        let mut last_end = off + line.len();
        let mut empty_continuation = false;
        while continues && i < lines.len() {
            let (off, raw) = lines[i];
            i += 1;
            let line = trim_newline(raw);
            directives.check(line, off, &map)?;
            last_end = off + line.len();
            if is_comment(raw) {
                continue;
            }
            if line.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (piece, more) = trim_continuation(line, escape);
            logical.push(off, piece);
            continues = more;
        }
        let ctx = Ctx {
            map: &map,
            logical: &logical,
            escape,
        };
        if empty_continuation {
            warnings.push(Warning {
                message: format!("empty continuation line found in: {}", logical.text),
                span: map.span(off, last_end),
            });
        }
        let mut node = node_from_line(&ctx, &logical.text, 0, false)?;
        if can_contain_heredoc(&node) && logical.text.contains("<<") {
            for mut doc in heredocs_from_line(&ctx, &logical.text)? {
                let body_start = lines.get(i).map(|(o, _)| *o).unwrap_or(text.len());
                let mut terminated = false;
                while i < lines.len() {
                    let (off, raw) = lines[i];
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
                        ctx.span(0, logical.text.len()),
                    ));
                }
                doc.span = map.span(body_start, last_end);
                node.heredocs.push(doc);
            }
        }
        node.span = map.span(node.span.start, last_end.max(node.span.start));
        nodes.push(node);
    }
    if nodes.is_empty() {
        let end = text.len();
        return Err(ParseError::new(
            ErrorKind::NoInstructions,
            map.span(end, end),
        ));
    }
    Ok(SyntaxTree {
        directives: directives.list,
        escape: directives.escape,
        nodes,
        warnings,
    })
}

fn can_contain_heredoc(node: &Node) -> bool {
    let node = match (&node.keyword, &node.sub) {
        (Keyword::Onbuild, Some(sub)) => sub,
        _ => node,
    };
    matches!(node.keyword, Keyword::Run | Keyword::Copy | Keyword::Add) && !node.json
}

/// Trims Unicode white space off `s` (at logical offset `off`), returning the
/// trimmed text and its offset.
fn trim_at(s: &str, off: usize) -> (&str, usize) {
    let t = s.trim_start();
    let off = off + (s.len() - t.len());
    (t.trim_end(), off)
}

fn node_from_line(
    ctx: &Ctx<'_>,
    text: &str,
    base: usize,
    nested: bool,
) -> Result<Node, ParseError> {
    let (line, base) = trim_at(text, base);
    // Docker splits the keyword off at the first run of `[\t\v\f\r ]`.
    let kw_end = line.find(is_hspace).unwrap_or(line.len());
    let keyword_text = &line[..kw_end];
    let after = &line[kw_end..];
    let rest = after.trim_start_matches(is_hspace);
    let rest_off = base + kw_end + (after.len() - rest.len());
    let kw_span = ctx.span(base, base + keyword_text.len());
    let Some(keyword) = Keyword::from_word(keyword_text) else {
        return Err(ParseError::new(
            ErrorKind::UnknownInstruction {
                found: keyword_text.to_string(),
            },
            kw_span,
        ));
    };
    if nested && keyword == Keyword::Onbuild {
        return Err(ParseError::new(
            ErrorKind::InvalidOnbuildTrigger {
                found: keyword_text.to_string(),
            },
            kw_span,
        ));
    }
    let (flags, args_text, args_off) = extract_flags(ctx, rest, rest_off);
    let (args_text, args_off) = trim_at(args_text, args_off);
    let mut node = Node {
        keyword,
        keyword_text: keyword_text.to_string(),
        keyword_span: kw_span,
        flags,
        args: Vec::new(),
        rest: ctx.word(args_text, args_off, args_off + args_text.len()),
        json: false,
        sub: None,
        heredocs: Vec::new(),
        original: line.to_string(),
        span: ctx.span(base, base + line.len()),
    };
    match keyword {
        Keyword::Add | Keyword::Copy | Keyword::Volume => {
            match parse_json(ctx, args_text, args_off)? {
                Some(words) => {
                    node.args = words;
                    node.json = true;
                }
                None => node.args = split_whitespace(ctx, args_text, args_off),
            }
        }
        Keyword::Cmd | Keyword::Entrypoint | Keyword::Run | Keyword::Shell => {
            (node.args, node.json) = parse_maybe_json(ctx, args_text, args_off)?;
        }
        Keyword::Arg => node.args = parse_words(ctx, args_text, args_off),
        Keyword::Env | Keyword::Label => {
            node.args = parse_name_val(ctx, args_text, args_off, keyword)?;
        }
        Keyword::Expose | Keyword::From => node.args = split_whitespace(ctx, args_text, args_off),
        Keyword::Maintainer | Keyword::StopSignal | Keyword::User | Keyword::Workdir => {
            if !args_text.is_empty() {
                node.args = vec![ctx.word(args_text, args_off, args_off + args_text.len())];
            }
        }
        Keyword::Healthcheck => {
            if !args_text.is_empty() {
                let sep = args_text.find(is_space).unwrap_or(args_text.len());
                let typ = &args_text[..sep];
                let after = &args_text[sep..];
                let cmd_text = after.trim_start();
                let cmd_off = args_off + sep + (after.len() - cmd_text.len());
                let (mut cmd, json) = parse_maybe_json(ctx, cmd_text, cmd_off)?;
                node.args = vec![ctx.word(typ, args_off, args_off + sep)];
                node.args.append(&mut cmd);
                node.json = json;
            }
        }
        Keyword::Onbuild => {
            if !args_text.is_empty() {
                let sub = node_from_line(ctx, args_text, args_off, true)?;
                node.sub = Some(Box::new(sub));
            }
        }
    }
    Ok(node)
}

/// The flags at the start of `rest`, and the text after them.
fn extract_flags<'t>(ctx: &Ctx<'_>, rest: &'t str, off: usize) -> (Vec<Flag>, &'t str, usize) {
    let mut flags = Vec::new();
    if !rest.trim_start_matches(is_space).starts_with("--") {
        return (flags, rest, off);
    }
    let Some(pairs) = grammar::parse(Rule::flags, rest) else {
        return (flags, rest, off);
    };
    let mut rest_start = 0;
    for top in pairs {
        rest_start = top.as_span().end();
        for p in top.into_inner() {
            if p.as_rule() != Rule::flag_word {
                continue;
            }
            let text = unquote_flag(p.as_str());
            let span = p.as_span();
            if text == "--" {
                rest_start = span.end();
                break;
            }
            let body = &text[2..];
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            flags.push(Flag {
                name,
                value,
                span: ctx.span(off + span.start(), off + span.end()),
                text,
            });
        }
    }
    let rest_start = rest_start.min(rest.len());
    (flags, &rest[rest_start..], off + rest_start)
}

/// Removes quotes and `\` escapes from a flag word, as Docker does.
fn unquote_flag(word: &str) -> String {
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
    out
}

/// Splits at runs of `[\t\v\f\r ]`.
fn split_whitespace(ctx: &Ctx<'_>, text: &str, off: usize) -> Vec<Word> {
    let mut out = Vec::new();
    if text.is_empty() {
        return out;
    }
    let mut start = 0;
    let mut in_sep = false;
    for (i, c) in text.char_indices() {
        if is_hspace(c) {
            if !in_sep {
                out.push(ctx.word(&text[start..i], off + start, off + i));
                in_sep = true;
            }
        } else if in_sep {
            start = i;
            in_sep = false;
        }
    }
    if in_sep {
        out.push(ctx.word("", off + text.len(), off + text.len()));
    } else {
        out.push(ctx.word(&text[start..], off + start, off + text.len()));
    }
    out
}

/// The exec form: `Some(words)` for a JSON array of strings, `None` for text
/// that is not a JSON array (the shell form), an error for a JSON array
/// holding something else than strings.
fn parse_json(ctx: &Ctx<'_>, text: &str, off: usize) -> Result<Option<Vec<Word>>, ParseError> {
    let t = text.trim_start();
    let off = off + (text.len() - t.len());
    if !t.starts_with('[') {
        return Ok(None);
    }
    if let Some(pairs) = grammar::parse(Rule::exec_form, t) {
        let words = pairs
            .flatten()
            .filter(|p| p.as_rule() == Rule::json_string)
            .map(|p| {
                let s = p.as_span();
                ctx.word(
                    grammar::decode_json_string(p.as_str()),
                    off + s.start(),
                    off + s.end(),
                )
            })
            .collect();
        return Ok(Some(words));
    }
    // Deeper nesting than this is no exec form a person wrote; keep the
    // recursive JSON rule away from it and read it as shell text.
    if grammar::json_depth(t) > 64 {
        return Ok(None);
    }
    if grammar::parse(Rule::json_doc, t).is_some() {
        return Err(ctx.err(
            ErrorKind::NotStringArray {
                found: t.to_string(),
            },
            off,
            off + t.len(),
        ));
    }
    Ok(None)
}

fn parse_maybe_json(
    ctx: &Ctx<'_>,
    text: &str,
    off: usize,
) -> Result<(Vec<Word>, bool), ParseError> {
    if text.is_empty() {
        return Ok((Vec::new(), false));
    }
    match parse_json(ctx, text, off)? {
        Some(words) => Ok((words, true)),
        None => Ok((vec![ctx.word(text, off, off + text.len())], false)),
    }
}

/// Docker's `parseWords`: splits at unquoted white space, keeping quotes and
/// escapes in the words (they are removed when the word is expanded).
fn parse_words(ctx: &Ctx<'_>, text: &str, off: usize) -> Vec<Word> {
    split_words(ctx.escape, text, off)
        .into_iter()
        .map(|(value, start, end)| ctx.word(value, start, end))
        .collect()
}

/// [`parse_words`] with the logical byte range of each word's raw text.
fn split_words(escape: char, text: &str, off: usize) -> Vec<(String, usize, usize)> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut cur = String::new();
    let mut start = 0;
    let mut iter = text.char_indices().peekable();
    while let Some((pos, ch)) = iter.next() {
        let at_end_after =
            |iter: &mut std::iter::Peekable<std::str::CharIndices<'_>>| iter.peek().is_none();
        if phase == Phase::Spaces {
            if is_space(ch) {
                continue;
            }
            phase = Phase::Word;
            start = pos;
        }
        if phase == Phase::Word {
            if is_space(ch) {
                phase = Phase::Spaces;
                if blank_ok || !cur.is_empty() {
                    words.push((std::mem::take(&mut cur), off + start, off + pos));
                }
                cur.clear();
                blank_ok = false;
                continue;
            }
            let mut ch = ch;
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if at_end_after(&mut iter) {
                    continue;
                }
                cur.push(ch);
                if let Some((_, n)) = iter.next() {
                    ch = n;
                }
            }
            cur.push(ch);
            continue;
        }
        // Phase::Quote
        let mut ch = ch;
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if at_end_after(&mut iter) {
                phase = Phase::Word;
                continue;
            }
            cur.push(ch);
            if let Some((_, n)) = iter.next() {
                ch = n;
            }
        }
        cur.push(ch);
    }
    if phase != Phase::Spaces && (blank_ok || !cur.is_empty()) {
        words.push((cur, off + start, off + text.len()));
    }
    words
}

/// ENV and LABEL: `NAME=VALUE ...` or the legacy `NAME VALUE`, as triples.
fn parse_name_val(
    ctx: &Ctx<'_>,
    text: &str,
    off: usize,
    keyword: Keyword,
) -> Result<Vec<Word>, ParseError> {
    let words = split_words(ctx.escape, text, off);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    let sep_word = |v: &str, at: usize| Word {
        value: v.to_string(),
        span: ctx.span(at, at),
    };
    if !first.0.contains('=') {
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
        let value = after.trim_start_matches(is_hspace);
        let j = i + (after.len() - value.len());
        return Ok(vec![
            ctx.word(&text[..i], off, off + i),
            ctx.word(value, off + j, off + text.len()),
            sep_word("", off + text.len()),
        ]);
    }
    let mut out = Vec::with_capacity(words.len() * 3);
    for (value, start, end) in words {
        let Some(eq) = value.find('=') else {
            return Err(ctx.err(
                ErrorKind::MissingEquals {
                    instruction: keyword.name(),
                    word: value,
                },
                start,
                end,
            ));
        };
        // The raw text of a word equals its value (split_words keeps quotes
        // and escapes; only an escape at the very end is dropped), so the `=`
        // is at the same logical offset.
        let (k, v) = (&value[..eq], &value[eq + 1..]);
        let eq_at = (start + eq).min(end);
        out.push(ctx.word(k, start, eq_at));
        out.push(ctx.word(v, (eq_at + 1).min(end), end));
        out.push(ctx.word("=", eq_at, (eq_at + 1).min(end)));
    }
    Ok(out)
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
