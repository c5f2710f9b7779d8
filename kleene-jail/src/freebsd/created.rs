//! jail(8)'s `exec.created` for a container's network: commands run on the host once the
//! jail exists and before its command, which is how a `vnet` jail gets its links (kleene-net
//! moves each epair's jail side in with `ifconfig … vnet JAIL` and sets its addresses and
//! routes inside with `jexec JAIL /sbin/ifconfig …`).
//!
//! They come only from [`crate::NetworkMode::JailParams`] (a `-J exec.created` is refused
//! with the other pseudo-parameters). Each value is one command whose words are separated
//! by white space, and it is run without a shell, as jail(8) runs a command without shell
//! metacharacters; the commands run in order, and the first that fails (or runs past
//! [`TIMEOUT`] and is killed) fails the start, which then removes the jail.

use std::io::{self, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::params::JailParam;

/// The parameter's name.
pub(super) const EXEC_CREATED: &str = "exec.created";

/// How long one command may run before it is killed.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The `exec.created` values out of `params`, and the parameters left for the kernel.
pub(super) fn split(params: Vec<JailParam>) -> Result<(Vec<String>, Vec<JailParam>)> {
    let mut commands = Vec::new();
    let mut rest = Vec::with_capacity(params.len());
    for p in params {
        if p.name() == EXEC_CREATED {
            commands.push(p.as_str()?.to_owned());
        } else {
            rest.push(p);
        }
    }
    Ok((commands, rest))
}

/// Runs `commands` in order (on a blocking thread: each waits for its program).
pub(super) async fn run_all(commands: Vec<String>) -> Result<()> {
    if commands.is_empty() {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || commands.iter().try_for_each(|c| run(c)))
        .await
        .map_err(|e| Error::io("run the exec.created commands", io::Error::other(e)))?
}

fn run(command: &str) -> Result<()> {
    let failed = |source| Error::Setup {
        step: format!("{EXEC_CREATED} {command}"),
        source,
    };
    let words: Vec<&str> = command.split_whitespace().collect();
    let Some((program, args)) = words.split_first() else {
        return Err(Error::invalid_param(
            format!("{EXEC_CREATED}={command}"),
            "the command is empty",
        ));
    };
    let mut child = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(failed)?;
    // Drained by a thread, so that a chatty program cannot block on a full pipe.
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            // What could be read is enough: the exit status tells the rest.
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "it did not finish within {} s and was killed",
                        TIMEOUT.as_secs()
                    ),
                )));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(e));
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    Err(failed(io::Error::other(format!(
        "{status}: {}",
        stderr.trim()
    ))))
}
