//! Golden tests from Kleene's own documentation: the console sessions in its markdown (and
//! in the `examples` of its klee reference, `_data/klee-reference/*.yaml`), read at test
//! time, run command by command with our `klee`, and compared line by line with what the
//! docs show.
//!
//! What may differ, and how it is compared:
//! - 12-hex ids: each id of the docs stands for the id we printed at the same place; the
//!   mapping is kept for the whole session, so an id (or an initial segment of it, in a
//!   command) used again later must be our same id.
//! - ages ("6 minutes ago", "About a minute ago", "5 hoursago") and ISO-8601 times.
//! - sizes and rates ("1.91 MiB", "16.15 MiB/s", "1976 kB").
//! - tables: their column widths follow the (normalised) contents, so table lines are
//!   compared word by word and a rule line only as a rule.
//! - the root: the docs' `zroot/kleene` is the test's root dataset (and its mountpoint).
//! - lines the session marks as the container's own (FreeBSD) program output.
//! - blank lines at the end of a command's output (the docs use them as spacing).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::common::{texts, Scratch};

/// Kleene's docs: `$KLEENE_DOCS` when set, else the pages the tests use, vendored in
/// `tests/fixtures/kleene-docs` (always there, so the tests never skip).
pub fn dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("KLEENE_DOCS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kleene-docs"),
    };
    assert!(dir.is_dir(), "Kleene's docs are not at {}", dir.display());
    Some(dir)
}

/// One ```console block: where it starts (1-based line of the fence) and its text.
#[derive(Debug, Clone)]
pub struct Block {
    pub line: usize,
    pub text: String,
}

/// The ```console blocks of a markdown text.
pub fn console_blocks_of(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (n, line) in markdown.lines().enumerate() {
        let t = line.trim();
        match &mut current {
            None if t == "```console" => {
                current = Some(Block {
                    line: n + 1,
                    text: String::new(),
                })
            }
            None => {}
            Some(_) if t == "```" => blocks.push(current.take().unwrap()),
            Some(b) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
        }
    }
    blocks
}

/// The ```console blocks of a doc file: a markdown file, or the `examples` of a klee
/// reference YAML file. `path` is relative to the docs' directory.
pub fn console_blocks(docs: &Path, path: &str) -> Vec<Block> {
    let text =
        std::fs::read_to_string(docs.join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    if path.ends_with(".yaml") {
        console_blocks_of(&yaml_string(&text, "examples"))
    } else {
        console_blocks_of(&text)
    }
}

/// The `n`th (1-based) console block of a doc file.
pub fn block(docs: &Path, path: &str, n: usize) -> Block {
    let blocks = console_blocks(docs, path);
    assert!(
        n >= 1 && n <= blocks.len(),
        "{path} has {} console blocks, not {n}",
        blocks.len()
    );
    blocks[n - 1].clone()
}

/// The `n`th (1-based) fenced block of a doc file whose info string is `lang` (e.g.
/// `dockerfile`), exactly as the docs give it.
pub fn fenced(docs: &Path, path: &str, lang: &str, n: usize) -> String {
    let text = std::fs::read_to_string(docs.join(path)).unwrap();
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        match &mut current {
            None if t.strip_prefix("```") == Some(lang) => current = Some(String::new()),
            None => {}
            Some(_) if t == "```" => found.push(current.take().unwrap()),
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
        }
    }
    assert!(
        n >= 1 && n <= found.len(),
        "{path} has {} {lang} blocks, not {n}",
        found.len()
    );
    found[n - 1].clone()
}

/// The value of a top-level key of a YAML file whose value is a (single- or double-)
/// quoted flow scalar, as the klee reference files write their `examples`.
pub fn yaml_string(yaml: &str, key: &str) -> String {
    let prefix = format!("{key}: ");
    let start = yaml
        .lines()
        .scan(0usize, |pos, l| {
            let here = *pos;
            *pos += l.len() + 1;
            Some((here, l))
        })
        .find(|(_, l)| l.starts_with(&prefix))
        .map(|(p, _)| p + prefix.len())
        .unwrap_or_else(|| panic!("no `{key}:` in the YAML"));
    let rest = &yaml[start..];
    let quote = rest.chars().next().unwrap();
    let body = &rest[1..];
    // The raw text up to the closing quote.
    let mut raw = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            ('\'', '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
                raw.push_str("''");
            }
            ('\'', '\'') | ('"', '"') => break,
            ('"', '\\') => {
                raw.push('\\');
                if let Some(n) = chars.next() {
                    raw.push(n);
                }
            }
            _ => raw.push(c),
        }
    }
    assert!(
        quote == '\'' || quote == '"',
        "`{key}` is not a quoted scalar"
    );
    // Fold the lines: a single break is a space, each empty line a newline; a `\` at the
    // end of a line (double quotes) joins it to the next without a space.
    let lines: Vec<&str> = raw.split('\n').collect();
    let mut out = String::new();
    let mut empties = 0;
    let mut joined = true; // the first line: no separator
    for (i, line) in lines.iter().enumerate() {
        let mut l = if i == 0 { *line } else { line.trim_start() };
        if i + 1 < lines.len() {
            l = l.trim_end_matches([' ', '\t']);
        }
        if l.is_empty() && i > 0 && i + 1 < lines.len() {
            empties += 1;
            continue;
        }
        if !joined {
            if empties == 0 {
                out.push(' ');
            } else {
                out.push_str(&"\n".repeat(empties));
            }
        }
        empties = 0;
        let escaped_break = quote == '"' && {
            let trailing = l.len() - l.trim_end_matches('\\').len();
            trailing % 2 == 1
        };
        let text = if escaped_break { &l[..l.len() - 1] } else { l };
        if quote == '"' {
            out.push_str(&unescape(text));
        } else {
            out.push_str(&text.replace("''", "'"));
        }
        joined = escaped_break;
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
            }
            Some(other) => out.push(other), // \\ \" \/ and `\ `
            None => {}
        }
    }
    out
}

/// One command of a session and the output the docs show for it.
#[derive(Debug, Clone)]
pub struct Step {
    /// The command line, without the prompt (continuation lines joined).
    pub command: String,
    pub output: Vec<String>,
}

/// The commands of a console block: `$ ` lines (with `\` continuations) and the lines up
/// to the next one. Lines before the first command and a bare `$` are not output.
pub fn steps(block: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = block.lines();
    while let Some(line) = lines.next() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            let mut command = cmd.to_string();
            while command.ends_with('\\') {
                command.pop();
                command.push_str(lines.next().unwrap_or_default().trim_start());
            }
            steps.push(Step {
                command: command.trim().to_string(),
                output: Vec::new(),
            });
        } else if line.trim() == "$" {
            continue;
        } else if let Some(step) = steps.last_mut() {
            step.output.push(line.to_string());
        }
    }
    steps
}

/// The words of a command line, as sh splits them (quotes and backslashes; no expansion,
/// which the sessions used here do not need).
pub fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.push(chars.next().unwrap_or('\\')),
                        '$' | '`' => panic!("no expansion in test commands: {line}"),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().unwrap_or('\\'));
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '$' | '`' | '|' | '>' | '<' | ';' | '&' => {
                panic!("no expansion, pipes or redirections in test commands: {line}")
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Whether `s` is an id as Kleene prints them: 12 lower-case hex digits.
pub fn is_id(s: &str) -> bool {
    s.len() == 12
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Replaces ages ("3 minutes ago", "About an hour ago", "Less than a second ago", and the
/// docs' "5 hoursago") by `<AGE>`.
pub fn normalise_ages(line: &str) -> String {
    const UNITS: [&str; 7] = ["second", "minute", "hour", "day", "week", "month", "year"];
    let mut out = String::new();
    let mut i = 0;
    let b = line.as_bytes();
    while i < line.len() {
        let at_word = i == 0 || b[i - 1] == b' ';
        if at_word && line.is_char_boundary(i) {
            let rest = &line[i..];
            let mut r = rest;
            for lead in ["About ", "Less than "] {
                if let Some(x) = r.strip_prefix(lead) {
                    r = x;
                }
            }
            let digits = r.len() - r.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let after_n = if digits > 0 {
                Some(&r[digits..])
            } else if r.starts_with("an ") {
                Some(&r[2..])
            } else if r.starts_with("a ") {
                Some(&r[1..])
            } else {
                None
            };
            if let Some(x) = after_n.and_then(|x| x.strip_prefix(' ')) {
                if let Some(unit) = UNITS.iter().find(|u| x.starts_with(**u)) {
                    let mut y = &x[unit.len()..];
                    y = y.strip_prefix('s').unwrap_or(y);
                    y = y.strip_prefix(' ').unwrap_or(y);
                    if let Some(z) = y.strip_prefix("ago") {
                        out.push_str("<AGE>");
                        i = line.len() - z.len();
                        continue;
                    }
                }
            }
        }
        let c = line[i..].chars().next().unwrap();
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Replaces ISO-8601 times (`2024-02-29T14:54:05.317207Z`) by `<TIME>`.
pub fn normalise_times(line: &str) -> String {
    let shape = "dddd-dd-ddTdd:dd:dd";
    let mut out = String::new();
    let mut i = 0;
    let b = line.as_bytes();
    while i < b.len() {
        let fits = b.len() - i >= shape.len()
            && shape.bytes().zip(&b[i..]).all(|(s, c)| match s {
                b'd' => c.is_ascii_digit(),
                s => s == *c,
            });
        if fits {
            let mut j = i + shape.len();
            if j < b.len() && b[j] == b'.' {
                j += 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
            }
            if j < b.len() && b[j] == b'Z' {
                j += 1;
            }
            out.push_str("<TIME>");
            i = j;
            continue;
        }
        let c = line[i..].chars().next().unwrap();
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Replaces sizes and rates ("1.91 MiB", "16.15 MiB/s", "1976 kB", "1344 MBps") by `<SIZE>`.
pub fn normalise_sizes(line: &str) -> String {
    const UNITS: [&str; 12] = [
        "MiB/s", "KiB/s", "GiB/s", "B/s", "MBps", "kBps", "Bps", "KiB", "MiB", "GiB", "kB", "B",
    ];
    let words: Vec<&str> = line.split(' ').collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].trim_start_matches('(');
        let number = !w.is_empty()
            && w.chars().all(|c| c.is_ascii_digit() || c == '.')
            && w.chars().next().unwrap().is_ascii_digit();
        if number && i + 1 < words.len() {
            let unit = words[i + 1].trim_end_matches([')', ',']);
            if UNITS.contains(&unit) {
                let open = &words[i][..words[i].len() - w.len()];
                let close = &words[i + 1][unit.len()..];
                out.push(format!("{open}<SIZE>{close}"));
                i += 2;
                continue;
            }
        }
        out.push(words[i].to_string());
        i += 1;
    }
    out.join(" ")
}

fn normalise(line: &str) -> String {
    normalise_sizes(&normalise_times(&normalise_ages(line)))
}

fn is_rule(line: &str) -> bool {
    let t = line.trim();
    t.chars().count() >= 3 && t.chars().all(|c| c == '─' || c == '-' || c == '+')
}

/// A line of expected output.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Line {
        text: String,
        table: bool,
    },
    /// Any lines (the container's own FreeBSD program output), up to the next expected line.
    Anything,
}

/// A doc session run on a scratch root.
pub struct Session<'a> {
    pub s: &'a Scratch,
    /// Where klee runs (the build context of `klee build .`).
    pub cwd: PathBuf,
    /// doc id -> our id, and back.
    ids: HashMap<String, String>,
    ours: HashMap<String, String>,
    /// Text of the docs replaced by ours before comparing (e.g. the root).
    replace: Vec<(String, String)>,
    /// (after, before): the doc lines strictly between a line equal to `after` and the
    /// next line starting with `before` are the container's program output.
    program_output: Vec<(String, String)>,
    /// Doc errata fixed before comparing: (doc text, what it should be), with the reason.
    errata: Vec<(String, String)>,
    /// Known differences: (doc line, our line) accepted as they are, to be fixed.
    known: Vec<(String, String)>,
    /// What each command printed, for reports.
    pub transcript: String,
}

/// A report of one step's comparison.
#[derive(Debug)]
pub struct Mismatch {
    pub command: String,
    pub expected: Vec<String>,
    pub actual: Vec<String>,
    pub at: String,
}

impl<'a> Session<'a> {
    pub fn new(s: &'a Scratch, cwd: &Path) -> Self {
        Session {
            s,
            cwd: cwd.to_path_buf(),
            ids: HashMap::new(),
            ours: HashMap::new(),
            replace: Vec::new(),
            program_output: Vec::new(),
            errata: Vec::new(),
            known: Vec::new(),
            transcript: String::new(),
        }
    }

    /// The docs' root `zroot/kleene` (and its mountpoint `/zroot/kleene`) is our root.
    pub fn with_root_paths(mut self) -> Self {
        let out = std::process::Command::new("zfs")
            .args(["get", "-H", "-o", "value", "mountpoint", &self.s.root])
            .output()
            .unwrap();
        assert!(out.status.success(), "zfs get mountpoint {}", self.s.root);
        let mountpoint = String::from_utf8(out.stdout).unwrap().trim().to_string();
        self.replace
            .push(("/zroot/kleene".into(), format!("\u{0}{mountpoint}")));
        self.replace
            .push(("zroot/kleene".into(), self.s.root.clone()));
        self.replace.push(("\u{0}".into(), String::new()));
        self
    }

    /// Doc lines after `after` up to the next line starting with `before` are the
    /// container's own (FreeBSD) program output, not compared.
    pub fn program_output(mut self, after: &str, before: &str) -> Self {
        self.program_output.push((after.into(), before.into()));
        self
    }

    /// A typo of the docs, fixed before comparing.
    pub fn erratum(mut self, doc: &str, fixed: &str) -> Self {
        self.errata.push((doc.into(), fixed.into()));
        self
    }

    /// KNOWN DIFFERENCE: the docs' line `doc` is, for now, our `ours` (after the same
    /// normalisation). The step fails if we print the docs' line, so the entry is removed
    /// once the difference is fixed.
    pub fn known_difference(mut self, doc: &str, ours: &str) -> Self {
        self.known.push((doc.into(), ours.into()));
        self
    }

    /// Binds a doc id to one of ours, for ids the docs use before printing them.
    pub fn bind(&mut self, doc: &str, ours: &str) {
        assert!(is_id(doc) && is_id(ours));
        self.ids.insert(doc.into(), ours.into());
        self.ours.insert(ours.into(), doc.into());
    }

    /// Our id for a doc id, once the session has seen it.
    pub fn our_id(&self, doc: &str) -> Option<&str> {
        self.ids.get(doc).map(String::as_str)
    }

    /// Runs a command that is not part of a session (set-up); its stdout.
    pub fn setup(&self, args: &[&str]) -> String {
        let out = self.s.klee(args).current_dir(&self.cwd).output().unwrap();
        assert!(
            out.status.success(),
            "set-up klee {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fix(&self, text: &str) -> String {
        let mut t = text.to_string();
        for (from, to) in &self.errata {
            t = t.replace(from, to);
        }
        t
    }

    /// Command words with the docs' ids (and initial segments of them) made ours, and the
    /// docs' paths below the root made ours.
    fn translate_word(&self, w: &str) -> String {
        if w.len() >= 2
            && w.len() <= 12
            && w.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            let matches: Vec<&String> = self.ids.keys().filter(|d| d.starts_with(w)).collect();
            if matches.len() == 1 {
                return self.ids[matches[0]][..w.len()].to_string();
            }
        }
        let mut w = w.to_string();
        for (from, to) in &self.replace {
            w = w.replace(from, to);
        }
        w
    }

    fn expectations(&self, output: &[String]) -> Vec<Expect> {
        let mut lines: Vec<String> = output.iter().map(|l| self.fix(l)).collect();
        while lines.last().is_some_and(|l| l.trim().is_empty()) {
            lines.pop();
        }
        let mut out = Vec::new();
        let mut skipping: Option<&str> = None;
        let mut table = false;
        for (i, line) in lines.iter().enumerate() {
            if let Some(before) = skipping {
                if line.starts_with(before) {
                    skipping = None;
                } else {
                    continue;
                }
            }
            if lines.get(i + 1).is_some_and(|n| is_rule(n)) && !is_rule(line) {
                table = true;
            } else if line.trim().is_empty() {
                table = false;
            }
            out.push(Expect::Line {
                text: line.clone(),
                table,
            });
            if let Some((_, before)) = self.program_output.iter().find(|(a, _)| a == line) {
                skipping = Some(before);
                out.push(Expect::Anything);
            }
        }
        out
    }

    /// Our line against the docs' (both normalised); binds new ids when it matches.
    fn line_matches(&mut self, doc: &str, ours: &str, table: bool) -> bool {
        let mut doc = normalise(doc);
        for (from, to) in &self.replace {
            doc = doc.replace(from, to);
        }
        let mut ours = normalise(ours);
        if table {
            if is_rule(&doc) && is_rule(&ours) {
                return true;
            }
            doc = doc.split_whitespace().collect::<Vec<_>>().join(" ");
            ours = ours.split_whitespace().collect::<Vec<_>>().join(" ");
        } else {
            doc = doc.trim_end().to_string();
            ours = ours.trim_end().to_string();
        }
        let mut new: Vec<(String, String)> = Vec::new();
        let (d, o) = (doc.as_bytes(), ours.as_bytes());
        let (mut i, mut j) = (0, 0);
        let boundary = |s: &[u8], k: usize| k >= s.len() || !s[k].is_ascii_alphanumeric();
        while i < d.len() {
            let starts_id = (i == 0 || !d[i - 1].is_ascii_alphanumeric())
                && i + 12 <= d.len()
                && is_id(&doc[i..i + 12])
                && boundary(d, i + 12)
                && doc[i..i + 12].bytes().any(|b| b.is_ascii_digit());
            if starts_id {
                if j + 12 > o.len() || !is_id(&ours[j..j + 12]) || !boundary(o, j + 12) {
                    return false;
                }
                let (di, oi) = (&doc[i..i + 12], &ours[j..j + 12]);
                let known = self
                    .ids
                    .get(di)
                    .cloned()
                    .or_else(|| new.iter().find(|(a, _)| a == di).map(|(_, b)| b.clone()));
                match known {
                    Some(k) if k != oi => return false,
                    Some(_) => {}
                    None => {
                        let taken = self.ours.contains_key(oi) || new.iter().any(|(_, b)| b == oi);
                        if taken {
                            return false;
                        }
                        new.push((di.to_string(), oi.to_string()));
                    }
                }
                i += 12;
                j += 12;
            } else {
                if j >= o.len() || d[i] != o[j] {
                    return false;
                }
                i += 1;
                j += 1;
            }
        }
        if j != o.len() {
            return false;
        }
        for (a, b) in new {
            self.ours.insert(b.clone(), a.clone());
            self.ids.insert(a, b);
        }
        true
    }

    fn line_or_known(&mut self, doc: &str, ours: &str, table: bool) -> bool {
        let known = self
            .known
            .iter()
            .find(|(d, _)| d == doc)
            .map(|(_, o)| o.clone());
        match known {
            Some(k) => {
                assert!(
                    !self.line_matches(doc, ours, table),
                    "a KNOWN DIFFERENCE is gone: we now print the docs' {doc:?}; remove it from the test"
                );
                self.line_matches(&k, ours, table)
            }
            None => self.line_matches(doc, ours, table),
        }
    }

    /// Compares our lines with the docs'.
    fn compare(&mut self, expected: &[Expect], actual: &[String]) -> Result<(), String> {
        let (mut i, mut j) = (0, 0);
        while i < expected.len() {
            match &expected[i] {
                Expect::Anything => {
                    // Up to the line matching the next expected one.
                    let next = expected.get(i + 1).cloned();
                    match next {
                        None => j = actual.len(),
                        Some(Expect::Line { text, table }) => {
                            while j < actual.len() && !self.line_or_known(&text, &actual[j], table)
                            {
                                j += 1;
                            }
                            if j == actual.len() {
                                return Err(format!("no line matching {text:?}"));
                            }
                            i += 1;
                            j += 1;
                        }
                        Some(Expect::Anything) => {}
                    }
                    i += 1;
                }
                Expect::Line { text, table } => {
                    let (text, table) = (text.clone(), *table);
                    let Some(ours) = actual.get(j) else {
                        return Err(format!("missing line {text:?}"));
                    };
                    if !self.line_or_known(&text, ours, table) {
                        return Err(format!("expected {text:?}, got {ours:?}"));
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        if j < actual.len() {
            return Err(format!("extra lines from {:?}", actual[j]));
        }
        Ok(())
    }

    /// Runs one step: klee (with our root, in `cwd`) or one of the few host commands the
    /// docs use (`sudo touch PATH`), and compares its stdout with the docs'.
    pub fn step(&mut self, step: &Step) {
        let words = shell_words(&self.fix(&step.command));
        let words: Vec<String> = words.iter().map(|w| self.translate_word(w)).collect();
        let expected = self.expectations(&step.output);
        // A command the docs show without its output: run, not compared.
        let shown = step.output.iter().any(|l| !l.trim().is_empty());
        let answers_yes = step
            .output
            .iter()
            .any(|l| l.trim_end().ends_with("[y/N]: y"));
        let (stdout, stderr, status) = match words.first().map(String::as_str) {
            Some("klee") => {
                let mut cmd = self.s.klee(&words[1..]);
                cmd.current_dir(&self.cwd);
                if answers_yes {
                    cmd.write_stdin("y\n");
                }
                let out = cmd.output().unwrap();
                let (o, e) = texts(&out);
                (o, e, out.status)
            }
            Some("sudo") if words.get(1).map(String::as_str) == Some("touch") => {
                let out = std::process::Command::new("touch")
                    .args(&words[2..])
                    .output()
                    .unwrap();
                let (o, e) = texts(&out);
                (o, e, out.status)
            }
            _ => panic!("a command the doc tests cannot run: {}", step.command),
        };
        // The terminal echoes the answer to a prompt; klee's output continues after it.
        let stdout = if answers_yes {
            stdout.replacen("[y/N]: ", "[y/N]: y\n", 1)
        } else {
            stdout
        };
        self.transcript
            .push_str(&format!("$ {}\n{stdout}", words.join(" ")));
        let mut actual: Vec<String> = stdout.lines().map(str::to_string).collect();
        while actual.last().is_some_and(|l| l.trim().is_empty()) {
            actual.pop();
        }
        if !shown {
            assert!(
                status.success(),
                "`$ {}` failed ({status}):\n{stdout}\n{stderr}",
                step.command
            );
            return;
        }
        let show = |e: &[Expect]| {
            e.iter()
                .map(|x| match x {
                    Expect::Line { text, .. } => text.clone(),
                    Expect::Anything => "<container's program output>".into(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        if let Err(at) = self.compare(&expected, &actual) {
            panic!(
                "`$ {}` differs from the docs: {at}\n--- docs\n{}\n--- ours ({status})\n{}\n--- our stderr\n{stderr}\n--- session so far\n{}",
                step.command,
                show(&expected),
                actual.join("\n"),
                self.transcript
            );
        }
        assert!(
            stderr.is_empty(),
            "`$ {}` printed on stderr, which the docs do not show:\n{stderr}",
            step.command
        );
    }

    /// Runs every command of a console block in order.
    pub fn run_block(&mut self, block: &Block) {
        let steps = steps(&self.fix(&block.text));
        assert!(
            !steps.is_empty(),
            "no commands in the block at line {}",
            block.line
        );
        for step in &steps {
            self.step(step);
        }
    }
}
