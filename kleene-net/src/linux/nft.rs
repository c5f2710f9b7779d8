//! Running `nft(8)`: argv only (never a shell), bounded in time.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::error::{Error, Result};

/// How long an `nft` run may take before it is killed.
pub const NFT_TIMEOUT: Duration = Duration::from_secs(30);

/// The program run; found on `PATH`.
const NFT: &str = "nft";

/// Runs `nft ARGS` with `input` on its stdin (none when `None`), in the calling thread's
/// network namespace (a child inherits the namespace of the thread that spawns it: call it
/// from [`super::Sandbox::run_in`] to act on a sandbox), killing it after `timeout`.
/// Returns its stdout; a non-zero exit is an error carrying its stderr.
pub fn nft_command(args: &[&str], input: Option<&str>, timeout: Duration) -> Result<String> {
    let shown = args.join(" ");
    let mut child = Command::new(NFT)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Io {
            op: "spawn",
            path: NFT.to_string(),
            source,
        })?;

    // Feed stdin and drain stdout/stderr in threads, so that no pipe can fill and block
    // either side while we watch the clock.
    let stdin = child.stdin.take();
    let script = input.map(str::to_string);
    let feeder = std::thread::spawn(move || -> std::io::Result<()> {
        if let (Some(mut pipe), Some(script)) = (stdin, script) {
            pipe.write_all(script.as_bytes())?;
        }
        Ok(())
    });
    let stdout = child.stdout.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = String::new();
        if let Some(mut pipe) = stdout {
            let _ = pipe.read_to_string(&mut buf);
        }
        buf
    });
    let stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut buf = String::new();
        if let Some(mut pipe) = stderr {
            let _ = pipe.read_to_string(&mut buf);
        }
        buf
    });

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::NftTimeout {
                    args: shown,
                    timeout,
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Io {
                    op: "wait for",
                    path: NFT.to_string(),
                    source,
                });
            }
        }
    };
    // the child is gone: its pipes are closed, so these threads end
    let fed = feeder.join();
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        return Err(Error::Nft {
            args: shown,
            status,
            stderr: err.trim().to_string(),
        });
    }
    match fed {
        Ok(Ok(())) => Ok(out),
        Ok(Err(source)) => Err(Error::Io {
            op: "write the script to",
            path: NFT.to_string(),
            source,
        }),
        Err(_) => Err(Error::Thread {
            ns: "the current namespace".to_string(),
            reason: "nft stdin writer panicked".to_string(),
        }),
    }
}

/// Applies an nftables script: `nft -f -` with `script` on stdin, in the calling thread's
/// network namespace, killed after [`NFT_TIMEOUT`]. The error carries nft's stderr.
pub fn apply_nft(script: &str) -> Result<()> {
    nft_command(&["-f", "-"], Some(script), NFT_TIMEOUT).map(|_| ())
}

/// Whether `nft` can be run (`nft --version` succeeds within 5 s).
pub fn nft_available() -> bool {
    nft_command(&["--version"], None, Duration::from_secs(5)).is_ok()
}
