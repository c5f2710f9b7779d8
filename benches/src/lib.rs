#![doc = include_str!("../README.md")]

pub mod chart;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a benchmark's command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The command could not be started.
    #[error("starting {command}: {source}")]
    Start {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// It ended with a failure.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// The median of `v` (the upper one of an even count); `v` must not be empty.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs a command to its end; its stdout when it succeeded, its stderr in the error.
pub fn run_ok(cmd: &mut Command) -> Result<String, RunError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| RunError::Start {
            command: format!("{cmd:?}"),
            source,
        })?;
    if !out.status.success() {
        return Err(RunError::Failed {
            command: format!("{cmd:?}"),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Times one run of a command.
/// Waits (at most ten seconds) until no container monitor runs: a `klee run --rm` returns
/// once its container is out of every listing, and its monitor destroys the dataset (and
/// tears a network down) after. Called before a timed run, so that the work the previous
/// one left to its monitor is counted in neither.
pub fn settle() {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && monitors_run() {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether a process runs whose second argument is `kleene-monitor`.
fn monitors_run() -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
            c.split(|&b| b == 0)
                .nth(1)
                .is_some_and(|a| a == b"kleene-monitor")
        })
    })
}

pub fn timed(cmd: &mut Command) -> Result<Duration, RunError> {
    let t = Instant::now();
    run_ok(cmd)?;
    Ok(t.elapsed())
}
