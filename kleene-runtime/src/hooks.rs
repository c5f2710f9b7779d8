//! Hooks of config.json: programs the runtime runs at points of a container's life, each
//! given the container's state (the spec's JSON) on its stdin. A hook that fails, or
//! outlives its `timeout`, fails the operation (except poststart and poststop, whose
//! failures are reported and do not undo what happened, as the spec says).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// How long a hook without a `timeout` may run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `hooks` in order, each with `state` on stdin; the first failure stops them.
pub fn run(kind: &'static str, hooks: &[Hook], state: &serde_json::Value) -> Result<()> {
    for hook in hooks {
        run_one(kind, hook, state)?;
    }
    Ok(())
}

fn run_one(kind: &'static str, hook: &Hook, state: &serde_json::Value) -> Result<()> {
    let path = hook.path().display().to_string();
    let fail = |reason: String| Error::Hook {
        kind,
        path: path.clone(),
        reason,
    };
    let mut cmd = Command::new(hook.path());
    // args[0] is the program's argv[0], as in execve.
    if let Some(args) = hook.args() {
        if let Some((first, rest)) = args.split_first() {
            std::os::unix::process::CommandExt::arg0(&mut cmd, first);
            cmd.args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("could not start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is no failure.
        let _ = stdin.write_all(state.to_string().as_bytes());
    }
    let timeout = hook
        .timeout()
        .and_then(|t| u64::try_from(t).ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                let err = err.trim();
                return Err(fail(if err.is_empty() {
                    format!("ended with {status}")
                } else {
                    format!("ended with {status}: {err}")
                }));
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("timed out after {} s", timeout.as_secs())));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(fail(format!("waiting for it: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    fn hook(args: &[&str], timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default()
            .path("/bin/sh")
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .env(vec!["FOO=bar".to_string()]);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().expect("a hook")
    }

    #[test]
    fn a_hook_reads_the_state_and_its_env() {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let out = tmp.path().join("out");
        let script = format!(
            "cat > {}; echo \"$FOO\" >> {}",
            out.display(),
            out.display()
        );
        let state = serde_json::json!({"id": "c1", "status": "created"});
        run("prestart", &[hook(&["sh", "-c", &script], None)], &state).expect("the hook");
        let got = std::fs::read_to_string(&out).expect("its output");
        assert_eq!(got, format!("{state}bar\n"));
    }

    #[test]
    fn failures_and_timeouts_name_the_hook() {
        let state = serde_json::json!({});
        let e = run(
            "poststop",
            &[hook(&["sh", "-c", "echo oops >&2; exit 3"], None)],
            &state,
        )
        .expect_err("a failing hook");
        let text = e.to_string();
        assert!(
            text.starts_with("poststop hook /bin/sh: ended with"),
            "{text}"
        );
        assert!(text.contains("oops"), "{text}");
        let e = run(
            "prestart",
            &[hook(&["sh", "-c", "sleep 5"], Some(1))],
            &state,
        )
        .expect_err("a hook over its timeout");
        assert!(e.to_string().contains("timed out after 1 s"), "{e}");
    }
}
