//! Runs BuildKit's own Dockerfile parser test cases against this crate.
//!
//! The cases are vendored in `tests/fixtures/buildkit` (with BuildKit's
//! LICENSE); `$KLEENE_BUILDKIT_TESTS` and `shared/peer-tests/buildkit-dockerfile`
//! beside the workspace are run too when present. Their README describes the
//! formats. Every case must pass: `testfiles/*/Dockerfile` dumps byte for byte
//! to its `result`, `testfiles-negative/*/Dockerfile` is rejected, and every
//! `envVarTest` / `wordsTest` line expands to the expected words.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use kleene_dockerfile::{dump, Expander};

mod common;

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

fn read(path: &Path) -> String {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    String::from_utf8(bytes).unwrap_or_else(|_| panic!("{} is not UTF-8", path.display()))
}

struct Tally {
    passed: usize,
    total: usize,
}

impl Tally {
    fn new() -> Self {
        Tally {
            passed: 0,
            total: 0,
        }
    }
    fn record(&mut self, ok: bool) {
        self.total += 1;
        if ok {
            self.passed += 1;
        }
    }
}

fn env_var_test(path: &Path, failures: &mut Vec<String>) -> Tally {
    let env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let ex = Expander::new('\\');
    let mut tally = Tally::new();
    for (n, line) in read(path).lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        if fields.len() != 3 {
            tally.record(false);
            failures.push(format!("envVarTest:{}: malformed line {line:?}", n + 1));
            continue;
        }
        let (platform, source, expected) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        if platform != "A" && platform != "U" {
            continue;
        }
        let got = ex.expand(source, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(w), e) => w == e,
            _ => false,
        };
        tally.record(ok);
        if !ok {
            failures.push(format!(
                "envVarTest:{}: {source:?} expanded to {got:?}, expected {expected:?}",
                n + 1
            ));
        }
    }
    tally
}

fn words_test(path: &Path, failures: &mut Vec<String>) -> Tally {
    let mut env: Vec<(String, String)> = Vec::new();
    let ex = Expander::new('\\');
    let mut tally = Tally::new();
    for (n, line) in read(path).lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(assignment) = line.strip_prefix("ENV ") {
            let (k, v) = assignment.split_once('=').unwrap_or((assignment, ""));
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        if fields.len() != 2 {
            tally.record(false);
            failures.push(format!("wordsTest:{}: malformed line {line:?}", n + 1));
            continue;
        }
        let input = fields[0].trim();
        let expected: Vec<&str> = fields[1].trim_start_matches(' ').split(',').collect();
        let got = ex.expand_words(input, &env);
        let ok = match &got {
            Err(_) => expected == ["error"],
            Ok(words) => *words == expected,
        };
        tally.record(ok);
        if !ok {
            failures.push(format!(
                "wordsTest:{}: {input:?} gave {got:?}, expected {expected:?}",
                n + 1
            ));
        }
    }
    tally
}

#[test]
fn buildkit_conformance() {
    for dir in common::case_dirs() {
        conformance(&dir);
    }
}

fn conformance(dir: &Path) {
    assert!(
        dir.join("testfiles").is_dir(),
        "BuildKit test cases not found at {}",
        dir.display()
    );
    let mut failures = Vec::new();

    let mut positive = Tally::new();
    for case in subdirs(&dir.join("testfiles")) {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let text = read(&case.join("Dockerfile"));
        let expected = read(&case.join("result"));
        let got = kleene_dockerfile::parse_syntax(&text).map(|t| dump(&t));
        let ok = got.as_deref() == Ok(expected.as_str());
        positive.record(ok);
        if !ok {
            failures.push(format!(
                "testfiles/{name}: got\n{got:?}\nexpected\n{expected}"
            ));
        }
    }

    let mut negative = Tally::new();
    for case in subdirs(&dir.join("testfiles-negative")) {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let text = read(&case.join("Dockerfile"));
        let got = kleene_dockerfile::parse(&text);
        negative.record(got.is_err());
        if let Ok(df) = got {
            failures.push(format!("testfiles-negative/{name}: accepted: {df:?}"));
        }
    }

    let env = env_var_test(&dir.join("envVarTest"), &mut failures);
    let words = words_test(&dir.join("wordsTest"), &mut failures);

    println!(
        "buildkit conformance ({}): {}/{} testfiles, {}/{} negative, {}/{} envVarTest, {}/{} wordsTest",
        dir.display(),
        positive.passed,
        positive.total,
        negative.passed,
        negative.total,
        env.passed,
        env.total,
        words.passed,
        words.total
    );
    assert!(
        positive.total > 0 && negative.total > 0 && env.total > 0 && words.total > 0,
        "no cases found in {}",
        dir.display()
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
