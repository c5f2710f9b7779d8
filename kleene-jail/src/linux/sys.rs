//! Thin wrappers of the Linux system calls the backend uses in the calling process.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::Signal;
use tokio::io::unix::AsyncFd;

use crate::error::{Error, Result};
use crate::jail::CommandEnd;
use crate::process::ExitStatus;

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A pidfd for `pid` (which must be our unreaped child, or the caller accepts pid reuse).
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: Signal) -> io::Result<()> {
    // SAFETY: a null siginfo pointer is allowed (the kernel fills in a SI_USER one).
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as i32,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })?;
    Ok(())
}

/// `waitid(P_PIDFD, WEXITED | WNOHANG)`: the status if the process has ended (and reaps it).
pub(crate) fn waitid_pidfd(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<ExitStatus>> {
    // SAFETY: siginfo_t is a plain C struct for which all-zero is valid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: `info` is a valid siginfo_t the kernel writes into.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        break;
    }
    // SAFETY: waitid filled `info` for a child-state change (or left it zeroed).
    let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(if code == libc::CLD_EXITED {
        ExitStatus::Exited(status)
    } else {
        ExitStatus::Signaled(status)
    }))
}

/// Waits for one process through its pidfd.
#[derive(Debug)]
pub(crate) struct Waiter {
    pid: i32,
    fd: Option<AsyncFd<OwnedFd>>,
    /// The init's report of the command's raw wait status (init mode).
    status_pipe: Option<AsyncFd<OwnedFd>>,
    /// The command's end, once the init reported it.
    command: Option<CommandEnd>,
    /// How the process ended, once reaped.
    ended: Option<ExitStatus>,
}

impl Waiter {
    pub fn new(pid: i32, pidfd: OwnedFd, status_pipe: Option<OwnedFd>) -> Result<Self> {
        let fd = crate::process::register(pidfd, tokio::io::Interest::READABLE)
            .map_err(|e| Error::io("register the process with tokio", e))?;
        let status_pipe = status_pipe
            .map(|p| crate::process::register(p, tokio::io::Interest::READABLE))
            .transpose()
            .map_err(|e| Error::io("register the status pipe with tokio", e))?;
        Ok(Waiter {
            pid,
            fd: Some(fd),
            status_pipe,
            command: None,
            ended: None,
        })
    }

    pub fn pidfd(&self) -> Result<BorrowedFd<'_>> {
        self.fd
            .as_ref()
            .map(|f| f.get_ref().as_fd_borrowed())
            .ok_or(Error::NotRunning)
    }

    fn finish(&mut self, status: ExitStatus) -> ExitStatus {
        self.fd = None;
        let status = match (self.command, self.status_pipe.take()) {
            (Some(c), _) => c.status,
            (None, Some(p)) => read_init_report(p.get_ref())
                .ok()
                .flatten()
                .map_or(status, |end| end.status),
            (None, None) => status,
        };
        self.ended = Some(status);
        status
    }

    /// Waits for the command of an init (the init's report on its status pipe); without
    /// an init the process is the command, and its end the jail's.
    pub async fn wait_command(&mut self) -> Result<CommandEnd> {
        if let Some(c) = self.command {
            return Ok(c);
        }
        loop {
            let Some(pipe) = &self.status_pipe else {
                // No init, or one that ended without a report (killed): the first process's
                // end is all there is.
                let status = self.wait().await?;
                return Ok(CommandEnd {
                    status,
                    jail_ended: true,
                });
            };
            let mut guard = pipe
                .readable()
                .await
                .map_err(|e| Error::io("wait for the command", e))?;
            match read_init_report(guard.get_inner()) {
                Ok(Some(end)) => {
                    self.command = Some(end);
                    return Ok(end);
                }
                // End of file: the init is gone without reporting.
                Ok(None) => {
                    drop(guard);
                    self.status_pipe = None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read the init's report", e)),
            }
        }
    }

    pub async fn wait(&mut self) -> Result<ExitStatus> {
        if let Some(s) = self.ended {
            return Ok(s);
        }
        loop {
            let fd = self.fd.as_ref().ok_or(Error::NotRunning)?;
            let mut guard = fd
                .readable()
                .await
                .map_err(|e| Error::io("wait for the process", e))?;
            match waitid_pidfd(guard.get_inner().as_fd_borrowed(), false)
                .map_err(|e| Error::io("wait for the process", e))?
            {
                Some(status) => {
                    drop(guard);
                    return Ok(self.finish(status));
                }
                None => guard.clear_ready(),
            }
        }
    }

    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if let Some(s) = self.ended {
            return Ok(Some(s));
        }
        let fd = self.fd.as_ref().ok_or(Error::NotRunning)?;
        match waitid_pidfd(fd.get_ref().as_fd_borrowed(), false)
            .map_err(|e| Error::io("wait for the process", e))?
        {
            Some(status) => Ok(Some(self.finish(status))),
            None => Ok(None),
        }
    }

    pub fn signal(&self, signal: Signal) -> Result<()> {
        let fd = self.pidfd()?;
        pidfd_send_signal(fd, signal).map_err(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => Error::NotRunning,
            _ => Error::io(format!("send {signal} to process {}", self.pid), e),
        })
    }

    /// Reaps the process whenever it ends, so a dropped handle leaves no zombie.
    pub fn reap_in_background(&mut self) {
        let Some(fd) = self.fd.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Ok(guard) = fd.readable().await {
                        let _ = waitid_pidfd(guard.get_inner().as_fd_borrowed(), true);
                    }
                });
            }
            Err(_) => {
                let _ = waitid_pidfd(fd.get_ref().as_fd_borrowed(), false);
            }
        }
    }
}

/// Reads an init's report: 4 bytes of raw wait status, and (jail mode) a fifth saying
/// whether the init ends with the command. `None` at end of file.
fn read_init_report(pipe: &OwnedFd) -> io::Result<Option<CommandEnd>> {
    let mut raw = [0u8; crate::linux::child::INIT_REPORT];
    // SAFETY: reads at most `raw.len()` bytes into `raw`; the pipe is non-blocking, and one
    // report is a single write of fewer than PIPE_BUF bytes, so it arrives whole.
    let n = unsafe { libc::read(pipe.as_raw_fd(), raw.as_mut_ptr().cast(), raw.len()) };
    match n {
        n if n < 0 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        n if n >= 4 => Ok(Some(CommandEnd {
            status: ExitStatus::from_raw(i32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]])),
            jail_ended: n == 4 || raw[4] != 0,
        })),
        _ => Err(io::Error::other("a short report from the init")),
    }
}

trait AsFdBorrowed {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_>;
}

impl AsFdBorrowed for OwnedFd {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

/// Whether the process of `pidfd` has ended (a pidfd polls readable then), without reaping.
pub(crate) fn pidfd_exited(pidfd: BorrowedFd<'_>) -> bool {
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polls one valid pollfd without waiting.
    let r = unsafe { libc::poll(&mut pfd, 1, 0) };
    r > 0 && pfd.revents & libc::POLLIN != 0
}
