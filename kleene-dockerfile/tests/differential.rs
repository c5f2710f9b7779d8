//! Differential test against the `parse-dockerfile` crate over the BuildKit
//! corpus and a few Dockerfiles of our own.
//!
//! Compared, for every file both parsers accept:
//! - the sequence of instruction kinds (all instructions);
//! - FROM image and stage name; flag names and values (every instruction);
//! - exec-form (JSON) arguments of RUN, CMD, ENTRYPOINT, SHELL, VOLUME, COPY, ADD;
//! - whitespace-separated arguments of EXPOSE, VOLUME, COPY, ADD, and the
//!   single argument of USER, WORKDIR, STOPSIGNAL, MAINTAINER, when they hold
//!   no quote or escape character;
//! - the shell-form text of RUN/CMD/ENTRYPOINT, and the raw text of
//!   ENV/LABEL/ARG, when the instruction fits on one line;
//! - HEALTHCHECK's type (CMD or NONE) and ONBUILD's trigger kind.
//!
//! Skipped, because the two parsers model them differently on purpose:
//! - text containing quotes or escapes: Docker (and this crate) keep them in
//!   the syntax tree and remove them at expansion, `parse-dockerfile` unescapes
//!   while parsing;
//! - shell-form and ENV text spanning continuation lines: Docker joins the
//!   lines (dropping the escape and comment lines), `parse-dockerfile` keeps
//!   the source slice;
//! - a line ending in an escaped escape (`foo\\`): Docker ends the instruction
//!   there (BuildKit's `trailing-backslash` case), `parse-dockerfile` continues
//!   it, so such files are not compared;
//! - flags on CMD/ENTRYPOINT (BuildKit's `flags` case): Docker's parser splits
//!   them off every instruction, `parse-dockerfile` only off those that take
//!   flags, so those commands are not compared; the `--` ending the flags,
//!   which `parse-dockerfile` keeps as a nameless flag, is dropped from its list;
//! - shell text ending in the escape character at the end of the file
//!   (BuildKit's `continue-at-eof`): Docker drops it, `parse-dockerfile` keeps it;
//! - files only one of them accepts (e.g. `HEALTHCHECK CONNECT`, which only
//!   Docker's syntax layer takes): counted and listed, but only files both
//!   accept are compared.
#![allow(clippy::unwrap_used)]

mod common;

use kleene_dockerfile::{parse_syntax, Keyword, Node};
use parse_dockerfile as pd;

fn corpus() -> Vec<(String, String)> {
    let dir = common::vendored();
    let mut out = Vec::new();
    let cases = std::fs::read_dir(dir.join("testfiles"))
        .unwrap_or_else(|e| panic!("BuildKit cases not found at {}: {e}", dir.display()));
    for entry in cases {
        let p = entry.unwrap().path().join("Dockerfile");
        if let Ok(text) = std::fs::read_to_string(&p) {
            out.push((p.display().to_string(), text));
        }
    }
    out.sort();
    let own = [
        ("own/kleene", "ARG VER=13.2\nFROM FreeBSD:${VER} AS base\nRUN pkg install -y nginx\nCOPY --chown=www:www site /usr/local/www/\nEXPOSE 80 443\nUSER www\nWORKDIR /usr/local/www\nCMD [\"nginx\", \"-g\", \"daemon off;\"]\n"),
        ("own/multistage", "FROM base AS build\nRUN make\nFROM base\nCOPY --from=build /out /app\nENTRYPOINT [\"/app/run\"]\nVOLUME /data /logs\nSTOPSIGNAL SIGINT\nHEALTHCHECK --interval=5s CMD [\"/app/check\"]\nONBUILD RUN echo hi\nSHELL [\"/bin/sh\", \"-ec\"]\n"),
        ("own/env", "FROM a\nENV A=1 B=2\nLABEL version=1.0\nARG X=1\nMAINTAINER me\nHEALTHCHECK NONE\n"),
        ("own/heredoc", "FROM a\nRUN <<EOF\necho hi\nEOF\nCOPY <<EOT /etc/motd\nhello\nEOT\n"),
    ];
    out.extend(own.iter().map(|(n, t)| (n.to_string(), t.to_string())));
    out
}

fn pd_keyword(i: &pd::Instruction<'_>) -> &'static str {
    match i {
        pd::Instruction::Add(_) => "ADD",
        pd::Instruction::Arg(_) => "ARG",
        pd::Instruction::Cmd(_) => "CMD",
        pd::Instruction::Copy(_) => "COPY",
        pd::Instruction::Entrypoint(_) => "ENTRYPOINT",
        pd::Instruction::Env(_) => "ENV",
        pd::Instruction::Expose(_) => "EXPOSE",
        pd::Instruction::From(_) => "FROM",
        pd::Instruction::Healthcheck(_) => "HEALTHCHECK",
        pd::Instruction::Label(_) => "LABEL",
        pd::Instruction::Maintainer(_) => "MAINTAINER",
        pd::Instruction::Onbuild(_) => "ONBUILD",
        pd::Instruction::Run(_) => "RUN",
        pd::Instruction::Shell(_) => "SHELL",
        pd::Instruction::Stopsignal(_) => "STOPSIGNAL",
        pd::Instruction::User(_) => "USER",
        pd::Instruction::Volume(_) => "VOLUME",
        pd::Instruction::Workdir(_) => "WORKDIR",
        _ => "UNKNOWN",
    }
}

fn plain(s: &str) -> bool {
    !s.contains(['"', '\'', '\\', '`'])
}

struct Cmp<'a> {
    file: &'a str,
    line: usize,
    compared: usize,
    mismatches: Vec<String>,
}

impl Cmp<'_> {
    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, ours: T, theirs: T) {
        self.compared += 1;
        if ours != theirs {
            self.mismatches.push(format!(
                "{}:{}: {what}: ours {ours:?}, parse-dockerfile {theirs:?}",
                self.file, self.line
            ));
        }
    }
}

fn values(node: &Node) -> Vec<String> {
    node.args.iter().map(|w| w.value.clone()).collect()
}

fn strs(v: &[pd::UnescapedString<'_>]) -> Vec<String> {
    v.iter().map(|s| s.value.to_string()).collect()
}

fn flags(c: &mut Cmp<'_>, node: &Node, theirs: &[pd::Flag<'_>]) {
    let ours: Vec<(String, Option<String>)> = node
        .flags
        .iter()
        .map(|f| (f.name.clone(), f.value.clone()))
        .collect();
    let theirs: Vec<(String, Option<String>)> = theirs
        .iter()
        .filter(|f| !f.name.value.is_empty())
        .map(|f| {
            (
                f.name.value.to_string(),
                f.value.as_ref().map(|v| v.value.to_string()),
            )
        })
        .collect();
    c.eq("flags", ours, theirs);
}

fn command(c: &mut Cmp<'_>, node: &Node, theirs: &pd::Command<'_>, single_line: bool) {
    if !node.flags.is_empty() && matches!(node.keyword, Keyword::Cmd | Keyword::Entrypoint) {
        return;
    }
    match theirs {
        pd::Command::Exec(v) => {
            c.eq("exec form", node.json, true);
            c.eq("exec args", values(node), strs(&v.value));
        }
        pd::Command::Shell(s) => {
            c.eq("shell form", node.json, false);
            if single_line && node.heredocs.is_empty() && !s.value.trim_end().ends_with('\\') {
                c.eq("shell text", node.rest.value.as_str(), s.value.trim());
            }
        }
        _ => {}
    }
}

fn compare(c: &mut Cmp<'_>, node: &Node, theirs: &pd::Instruction<'_>) {
    let single_line = node.span.line == node.span.end_line;
    match theirs {
        pd::Instruction::From(f) => {
            flags(c, node, &f.options);
            c.eq("image", node.args[0].value.as_str(), f.image.value.as_ref());
            let alias = node.args.get(2).map(|w| w.value.clone());
            c.eq(
                "alias",
                alias,
                f.as_.as_ref().map(|(_, n)| n.value.to_string()),
            );
        }
        pd::Instruction::Run(r) => {
            flags(c, node, &r.options);
            command(c, node, &r.arguments, single_line);
        }
        pd::Instruction::Cmd(r) => command(c, node, &r.arguments, single_line),
        pd::Instruction::Entrypoint(r) => command(c, node, &r.arguments, single_line),
        pd::Instruction::Shell(s) => c.eq("shell", values(node), strs(&s.arguments)),
        pd::Instruction::Copy(cp) => {
            flags(c, node, &cp.options);
            if node.heredocs.is_empty() && (node.json || plain(&node.rest.value)) {
                let mut theirs: Vec<String> = cp
                    .src
                    .iter()
                    .filter_map(|s| match s {
                        pd::Source::Path(p) => Some(p.value.to_string()),
                        _ => None,
                    })
                    .collect();
                theirs.push(cp.dest.value.to_string());
                c.eq("copy args", values(node), theirs);
            }
        }
        pd::Instruction::Add(a) => {
            flags(c, node, &a.options);
            if node.heredocs.is_empty() && (node.json || plain(&node.rest.value)) {
                let mut theirs: Vec<String> = a
                    .src
                    .iter()
                    .filter_map(|s| match s {
                        pd::Source::Path(p) => Some(p.value.to_string()),
                        _ => None,
                    })
                    .collect();
                theirs.push(a.dest.value.to_string());
                c.eq("add args", values(node), theirs);
            }
        }
        pd::Instruction::Expose(e) if plain(&node.rest.value) => {
            c.eq("expose", values(node), strs(&e.arguments));
        }
        pd::Instruction::Volume(v) => match &v.arguments {
            pd::JsonOrStringArray::Json(j) => c.eq("volume json", values(node), strs(&j.value)),
            pd::JsonOrStringArray::String(s) => {
                if plain(&node.rest.value) {
                    c.eq("volume", values(node), strs(s));
                }
            }
        },
        pd::Instruction::User(u) if plain(&node.rest.value) => {
            c.eq("user", values(node), vec![u.arguments.value.to_string()])
        }
        pd::Instruction::Workdir(u) if plain(&node.rest.value) => {
            c.eq("workdir", values(node), vec![u.arguments.value.to_string()])
        }
        pd::Instruction::Stopsignal(u) if plain(&node.rest.value) => c.eq(
            "stopsignal",
            values(node),
            vec![u.arguments.value.to_string()],
        ),
        pd::Instruction::Maintainer(m) if plain(&node.rest.value) => {
            c.eq("maintainer", values(node), vec![m.name.value.to_string()])
        }
        pd::Instruction::Env(e) if single_line => c.eq(
            "env text",
            node.rest.value.as_str(),
            e.arguments.value.trim(),
        ),
        pd::Instruction::Label(e) if single_line => c.eq(
            "label text",
            node.rest.value.as_str(),
            e.arguments.value.trim(),
        ),
        pd::Instruction::Arg(e) if single_line => c.eq(
            "arg text",
            node.rest.value.as_str(),
            e.arguments.value.trim(),
        ),
        pd::Instruction::Healthcheck(h) => {
            let theirs = match &h.arguments {
                pd::HealthcheckArguments::Cmd { .. } => "CMD",
                pd::HealthcheckArguments::None { .. } => "NONE",
                _ => "OTHER",
            };
            c.eq(
                "healthcheck type",
                node.args.first().map(|w| w.value.to_ascii_uppercase()),
                Some(theirs.to_string()),
            );
            flags(c, node, &h.options);
        }
        pd::Instruction::Onbuild(o) => {
            let ours = node.sub.as_ref().map(|s| s.keyword.name());
            c.eq("onbuild trigger", ours, Some(pd_keyword(&o.instruction)));
        }
        _ => {}
    }
}

#[test]
fn differential_against_parse_dockerfile() {
    let mut files_compared = 0;
    let mut instructions_compared = 0;
    let mut fields = 0;
    let mut only_one = Vec::new();
    let mut mismatches = Vec::new();
    for (file, text) in corpus() {
        if text.lines().any(|l| l.trim_end().ends_with("\\\\")) {
            only_one.push(format!(
                "{file}: not compared (a line ends in an escaped escape)"
            ));
            continue;
        }
        let ours = parse_syntax(&text);
        let theirs = pd::parse(&text);
        let (ours, theirs) = match (ours, theirs) {
            (Ok(o), Ok(t)) => (o, t),
            (o, t) => {
                only_one.push(format!(
                    "{file}: ours ok={}, parse-dockerfile ok={}",
                    o.is_ok(),
                    t.is_ok()
                ));
                continue;
            }
        };
        files_compared += 1;
        let kinds: Vec<&str> = ours.nodes.iter().map(|n| n.keyword.name()).collect();
        let their_kinds: Vec<&str> = theirs.instructions.iter().map(pd_keyword).collect();
        if kinds != their_kinds {
            mismatches.push(format!(
                "{file}: kinds: ours {kinds:?}, parse-dockerfile {their_kinds:?}"
            ));
            continue;
        }
        let mut c = Cmp {
            file: &file,
            line: 0,
            compared: 0,
            mismatches: Vec::new(),
        };
        for (node, inst) in ours.nodes.iter().zip(&theirs.instructions) {
            c.line = node.span.line;
            compare(&mut c, node, inst);
            instructions_compared += 1;
        }
        fields += c.compared;
        mismatches.extend(c.mismatches);
    }
    println!(
        "differential: {files_compared} files, {instructions_compared} instructions, {fields} fields compared; \
         {} files not compared",
        only_one.len()
    );
    for o in &only_one {
        println!("  not compared: {o}");
    }
    assert!(
        files_compared >= 20,
        "too few files compared: {files_compared}"
    );
    assert!(fields >= 200, "too few fields compared: {fields}");
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
