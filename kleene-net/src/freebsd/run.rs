//! Runs a [`Command`] with a deadline: no shell, stdin fed from a thread, stdout and stderr
//! drained by threads so a chatty program cannot block on a full pipe.
//!
//! Compiled for FreeBSD, and for tests everywhere (it is plain `std`).

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use super::{Command, Error, Result, DEFAULT_TIMEOUT};

/// The longest pause between two checks of whether the program has exited.
const MAX_POLL: Duration = Duration::from_millis(50);

/// Runs `cmd` with [`DEFAULT_TIMEOUT`] and returns its stdout.
pub fn run(cmd: &Command) -> Result<String> {
    run_with_timeout(cmd, DEFAULT_TIMEOUT)
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Option<Receiver<Vec<u8>>> {
    let mut pipe = pipe?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        // a read error leaves what was read so far; the exit status tells the rest
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    Some(rx)
}

fn collect(rx: Option<Receiver<Vec<u8>>>, deadline: Instant) -> String {
    let Some(rx) = rx else {
        return String::new();
    };
    // a grandchild holding the pipe open must not hold us past the deadline
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    rx.recv_timeout(wait)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Runs `cmd`, killing it once `timeout` has passed, and returns its stdout.
///
/// A non-zero exit is [`Error::Failed`] with the program's stderr; a program still running at
/// the deadline is killed and reaped, giving [`Error::Timeout`]. `LC_ALL=C` keeps the output
/// parseable.
pub fn run_with_timeout(cmd: &Command, timeout: Duration) -> Result<String> {
    let io_error = |source| Error::Io {
        program: cmd.program.clone(),
        args: cmd.args.clone(),
        source,
    };
    let mut child = std::process::Command::new(&cmd.program)
        .args(&cmd.args)
        .env("LC_ALL", "C")
        .stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_error)?;
    let deadline = Instant::now() + timeout;
    log::debug!("running {cmd}");

    if let (Some(input), Some(mut stdin)) = (cmd.stdin.clone(), child.stdin.take()) {
        thread::spawn(move || {
            // a program that exits without reading all of it gets EPIPE here; its exit
            // status reports the failure
            let _ = stdin.write_all(input.as_bytes());
        });
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());

    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io_error(e));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            log::warn!("{cmd} did not finish within {timeout:?}; killed it");
            return Err(Error::Timeout {
                program: cmd.program.clone(),
                args: cmd.args.clone(),
                timeout,
            });
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(MAX_POLL);
    };

    let stdout = collect(stdout, deadline);
    let stderr = collect(stderr, deadline);
    if status.success() {
        Ok(stdout)
    } else {
        Err(Error::Failed {
            program: cmd.program.clone(),
            args: cmd.args.clone(),
            status,
            stderr,
        })
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn stdout_is_returned() {
        let out = run(&Command::new("echo", ["em0", "lo0"])).expect("echo runs");
        assert_eq!(out, "em0 lo0\n");
    }

    #[test]
    fn stdin_is_fed() {
        let out = run(&Command::new("cat", Vec::<String>::new()).with_stdin("pass all\n"))
            .expect("cat runs");
        assert_eq!(out, "pass all\n");
    }

    #[test]
    fn large_stdin_and_stdout_do_not_deadlock() {
        let big = "pass quick on lo0 all\n".repeat(20_000);
        let out = run(&Command::new("cat", Vec::<String>::new()).with_stdin(big.clone()))
            .expect("cat runs");
        assert_eq!(out.len(), big.len());
    }

    #[test]
    fn failure_carries_status_and_stderr() {
        let err = run(&Command::new("ls", ["/nonexistent-kleene-net-test"]));
        match err {
            Err(Error::Failed {
                program,
                args,
                status,
                stderr,
            }) => {
                assert_eq!(program, "ls");
                assert_eq!(args, ["/nonexistent-kleene-net-test"]);
                assert!(!status.success());
                assert!(stderr.contains("nonexistent-kleene-net-test"), "{stderr}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn missing_program_is_an_io_error() {
        let err = run(&Command::new("/nonexistent/kleene-net-test", ["x"]));
        assert!(matches!(err, Err(Error::Io { .. })), "{err:?}");
    }

    #[test]
    fn slow_program_is_killed_at_the_deadline() {
        let started = Instant::now();
        let err = run_with_timeout(&Command::new("sleep", ["10"]), Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(5));
        match err {
            Err(e @ Error::Timeout { .. }) => {
                assert_eq!(
                    e.to_string(),
                    "sleep 10 did not finish within 0.2s and was killed"
                );
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
}
