//! Letting a held process go ([`crate::JailConfig::hold`]).
//!
//! Linux: the process waits in an open of the gate FIFO for writing, which returns once a
//! reader opens it; it then writes one byte and executes its command.
//!
//! FreeBSD: the process holds the gate open read-write (opened before its fork, as the
//! host's path is out of reach once it is attached to the jail) and blocks reading one
//! byte; [`release`] opens the gate for writing without blocking (which fails with ENXIO
//! when no process has it open for reading) and writes that byte.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long [`release`] waits for the held process to answer (Linux).
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Lets the process held on the FIFO `gate` ([`crate::JailConfig::hold`]) run its command.
/// Any process may call it (the one that started the jail may be gone).
///
/// Linux: opens the FIFO for reading and waits (at most [`RELEASE_TIMEOUT`]) for the byte
/// the process writes before its `execve`; an error when the process is gone (the FIFO
/// closed without the byte) or does not answer in time (nothing is holding on the FIFO).
///
/// FreeBSD: writes the byte the held process waits for; an error when no process has the
/// gate open (nothing is held on it).
pub fn release(gate: &Path) -> Result<()> {
    #[cfg(target_os = "freebsd")]
    {
        release_by_write(gate)
    }
    #[cfg(not(target_os = "freebsd"))]
    {
        release_within(gate, RELEASE_TIMEOUT)
    }
}

/// Opens `gate` and checks it is a FIFO.
fn open_fifo(gate: &Path, write: bool) -> Result<std::fs::File> {
    let fifo = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(gate);
    let fifo = match fifo {
        Ok(f) => f,
        // A FIFO opened for writing without blocking, which no process has open for
        // reading.
        Err(e) if write && e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(Error::Release {
                gate: gate.to_owned(),
                reason: "does not answer (no process has it open: is a process held on it?)"
                    .to_owned(),
            })
        }
        Err(e) => return Err(Error::io(format!("open the gate {}", gate.display()), e)),
    };
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
    Ok(fifo)
}

/// FreeBSD's release (platform-neutral, so tested on Linux too): writes one byte to the
/// gate, which the held process reads.
#[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
pub(crate) fn release_by_write(gate: &Path) -> Result<()> {
    let fifo = open_fifo(gate, true)?;
    loop {
        // SAFETY: writes one byte from a static string to the open FIFO.
        let n = unsafe { libc::write(fifo.as_raw_fd(), c"0".as_ptr().cast(), 1) };
        if n == 1 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EPIPE) => {
                return Err(Error::Release {
                    gate: gate.to_owned(),
                    reason: "is gone (the gate closed before its byte)".to_owned(),
                })
            }
            // Bytes of earlier releases fill the FIFO: the process is not reading.
            Some(libc::EAGAIN) => {
                return Err(Error::Release {
                    gate: gate.to_owned(),
                    reason: "does not answer (the gate is full: is a process held on it?)"
                        .to_owned(),
                })
            }
            _ => return Err(Error::io(format!("write the gate {}", gate.display()), e)),
        }
    }
}

#[cfg_attr(target_os = "freebsd", allow(dead_code))]
pub(crate) fn release_within(gate: &Path, timeout: Duration) -> Result<()> {
    let fifo = open_fifo(gate, false)?;
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
    fn a_write_release_needs_a_reader() {
        let dir = tempfile::tempdir().unwrap();
        let gate = fifo(dir.path());
        let err = release_by_write(&gate).unwrap_err();
        assert!(err.to_string().contains("does not answer"), "{err}");
        // The held process's side: the gate open read-write (no blocking), one byte read.
        let held = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&gate)
            .unwrap();
        let reader = std::thread::spawn(move || {
            let mut byte = [0u8; 1];
            std::io::Read::read_exact(&mut &held, &mut byte).unwrap();
            byte[0]
        });
        release_by_write(&gate).unwrap();
        assert_eq!(reader.join().unwrap(), b'0');
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(
            release_by_write(&file),
            Err(Error::InvalidConfig(_))
        ));
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
