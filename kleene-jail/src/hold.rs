//! Letting a held process go ([`crate::JailConfig::hold`]): the process waits in an open of
//! the gate FIFO for writing, which returns once a reader opens it; it then writes one byte
//! and executes its command.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long [`release`] waits for the held process to answer.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Lets the process held on the FIFO `gate` ([`crate::JailConfig::hold`]) run its command:
/// opens the FIFO for reading and waits (at most [`RELEASE_TIMEOUT`]) for the byte the
/// process writes before its `execve`. Any process may call it (the one that started the
/// jail may be gone). An error when the process is gone (the FIFO closed without the byte)
/// or does not answer in time (nothing is holding on the FIFO).
pub fn release(gate: &Path) -> Result<()> {
    release_within(gate, RELEASE_TIMEOUT)
}

pub(crate) fn release_within(gate: &Path, timeout: Duration) -> Result<()> {
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(gate)
        .map_err(|e| Error::io(format!("open the gate {}", gate.display()), e))?;
    let is_fifo = fifo
        .metadata()
        .map_err(|e| Error::io(format!("stat the gate {}", gate.display()), e))?
        .file_type()
        .is_fifo();
    if !is_fifo {
        return Err(Error::InvalidConfig(format!(
            "the gate {} is not a FIFO",
            gate.display()
        )));
    }
    let fail = |reason: String| Error::Release {
        gate: gate.to_owned(),
        reason,
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(fail(format!(
                "does not answer (no byte within {} ms: is a process held on it?)",
                timeout.as_millis()
            )));
        }
        let mut pfd = libc::pollfd {
            fd: fifo.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: polls one valid pollfd for at most `ms` milliseconds.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io(format!("wait on the gate {}", gate.display()), e));
        }
        if r == 0 {
            continue;
        }
        let mut byte = [0u8; 1];
        // SAFETY: reads at most one byte into `byte` from the FIFO, which is non-blocking.
        let n = unsafe { libc::read(fifo.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
        match n {
            1 => return Ok(()),
            0 => {
                return Err(fail(
                    "is gone (the gate closed without its byte)".to_owned(),
                ))
            }
            _ => {
                let e = io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    continue;
                }
                return Err(Error::io(format!("read the gate {}", gate.display()), e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;

    fn fifo(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("gate");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        path
    }

    #[test]
    fn nobody_held_is_a_bounded_error() {
        let dir = tempfile::tempdir().unwrap();
        let gate = fifo(dir.path());
        let started = Instant::now();
        let err = release_within(&gate, Duration::from_millis(50)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.to_string().contains("does not answer"), "{err}");
    }

    #[test]
    fn a_writer_without_its_byte_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let gate = fifo(dir.path());
        let writer = {
            let gate = gate.clone();
            // Blocks until the reader below opens, then closes without writing.
            std::thread::spawn(move || drop(std::fs::OpenOptions::new().write(true).open(gate)))
        };
        let err = release_within(&gate, Duration::from_secs(5)).unwrap_err();
        writer.join().unwrap();
        assert!(err.to_string().contains("is gone"), "{err}");
    }

    #[test]
    fn the_byte_releases() {
        let dir = tempfile::tempdir().unwrap();
        let gate = fifo(dir.path());
        let writer = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new().write(true).open(gate).unwrap();
                f.write_all(b"0").unwrap();
            })
        };
        release_within(&gate, Duration::from_secs(5)).unwrap();
        writer.join().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(
            release_within(&file, Duration::from_millis(10)),
            Err(Error::InvalidConfig(_))
        ));
    }
}
