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
pub fn timed(cmd: &mut Command) -> Result<Duration, RunError> {
    let t = Instant::now();
    run_ok(cmd)?;
    Ok(t.elapsed())
}
