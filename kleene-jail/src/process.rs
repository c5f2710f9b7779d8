//! A process running in a jail: its exit status, signals, standard streams and terminal.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use nix::sys::signal::Signal;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::{ExecConfig, Stdio, WinSize};
use crate::error::{Error, Result};

/// The write end of a jailed process' standard input.
pub type ChildStdin = tokio::net::unix::pipe::Sender;
/// The read end of a jailed process' standard output or error.
pub type ChildOutput = tokio::net::unix::pipe::Receiver;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It called exit with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

impl ExitStatus {
    /// The exit code, when it exited.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Exited(c) => Some(*c),
            ExitStatus::Signaled(_) => None,
        }
    }

    /// The signal that killed it.
    pub fn signal(&self) -> Option<i32> {
        match self {
            ExitStatus::Signaled(s) => Some(*s),
            ExitStatus::Exited(_) => None,
        }
    }

    /// Exit code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }

    /// The shell's convention: the code, or 128 + the signal.
    pub fn shell_code(&self) -> i32 {
        match self {
            ExitStatus::Exited(c) => *c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }

    /// Decodes a wait(2) status word.
    pub fn from_raw(status: i32) -> Self {
        if libc::WIFSIGNALED(status) {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exit code {c}"),
            ExitStatus::Signaled(s) => match Signal::try_from(*s) {
                Ok(sig) => write!(f, "killed by {sig}"),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

/// The master side of a jailed process' pseudo-terminal: read its output, write its input,
/// resize it.
#[derive(Debug)]
pub struct Pty {
    fd: AsyncFd<OwnedFd>,
}

impl Pty {
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Self> {
        set_nonblocking(fd.as_raw_fd())?;
        Ok(Pty {
            fd: register(
                fd,
                tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE,
            )?,
        })
    }

    /// Sets the terminal size (the process gets `SIGWINCH`).
    pub fn resize(&self, size: WinSize) -> Result<()> {
        let ws = libc::winsize {
            ws_row: size.rows,
            ws_col: size.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one `struct winsize` from the pointer, which is valid for
        // the call; the descriptor is the pty master this value owns.
        let r = unsafe { libc::ioctl(self.fd.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if r < 0 {
            return Err(Error::io("resize the terminal", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// The path of the terminal's slave side on the host (`/dev/pts/N`).
    pub fn name(&self) -> Option<String> {
        #[cfg(any(target_os = "linux", target_os = "freebsd"))]
        {
            let mut buf = [0 as libc::c_char; 128];
            // SAFETY: ptsname_r writes a NUL-terminated name of at most `buf.len()` bytes
            // into `buf`; the descriptor is the pty master this value owns.
            let r = unsafe {
                libc::ptsname_r(self.fd.get_ref().as_raw_fd(), buf.as_mut_ptr(), buf.len())
            };
            if r != 0 {
                return None;
            }
            // SAFETY: ptsname_r succeeded, so `buf` holds a NUL-terminated string.
            let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
            Some(name.to_string_lossy().into_owned())
        }
        #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
        {
            None
        }
    }

    /// The master side's descriptor, for another process to own the terminal (sent over a
    /// unix socket, for instance): taken out of tokio's reactor and made blocking again.
    pub fn into_master(self) -> OwnedFd {
        let fd = self.fd.into_inner();
        // SAFETY: F_GETFL/F_SETFL on the descriptor this value owned; no pointers.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
        fd
    }
}

impl AsyncRead for Pty {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|inner| {
                // SAFETY: `unfilled` is a writable buffer of `unfilled.len()` bytes.
                let n = unsafe {
                    libc::read(
                        inner.get_ref().as_raw_fd(),
                        unfilled.as_mut_ptr().cast(),
                        unfilled.len(),
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // The slave side is closed everywhere: the end of the output.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Pty {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|inner| {
                // SAFETY: `data` is a readable buffer of `data.len()` bytes.
                let n = unsafe {
                    libc::write(
                        inner.get_ref().as_raw_fd(),
                        data.as_ptr().cast(),
                        data.len(),
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Registers an owned descriptor with tokio's reactor (needs a runtime).
pub(crate) fn register(fd: OwnedFd, interest: tokio::io::Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is open, and stays open and the same descriptor until the AsyncFd
    // that owns it is dropped.
    Ok(unsafe { AsyncFd::register_with_interest(fd, interest) }?)
}

pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor the caller owns; no pointers involved.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A process started in a jail: the jail's command or one started by `exec`.
///
/// Dropping it does not kill the process (a jail outlives its handle); on Linux a background
/// task of the current tokio runtime reaps it then. Whether it outlives the calling process
/// is [`ExecConfig::kill_with_owner`] (by default it does not).
#[derive(Debug)]
pub struct Process {
    pid: i32,
    /// Its standard input, when [`Stdio::Piped`].
    pub stdin: Option<ChildStdin>,
    /// Its standard output, when [`Stdio::Piped`].
    pub stdout: Option<ChildOutput>,
    /// Its standard error, when [`Stdio::Piped`].
    pub stderr: Option<ChildOutput>,
    /// The terminal's master side, when started with a tty.
    pub pty: Option<Pty>,
    pub(crate) waiter: crate::sys::Waiter,
    status: Option<ExitStatus>,
}

impl Process {
    pub(crate) fn new(pid: i32, waiter: crate::sys::Waiter, parent: ParentStdio) -> Result<Self> {
        let err = |e| Error::io("register the standard streams with tokio", e);
        Ok(Process {
            pid,
            stdin: parent
                .stdin
                .map(ChildStdin::from_owned_fd)
                .transpose()
                .map_err(err)?,
            stdout: parent
                .stdout
                .map(ChildOutput::from_owned_fd)
                .transpose()
                .map_err(err)?,
            stderr: parent
                .stderr
                .map(ChildOutput::from_owned_fd)
                .transpose()
                .map_err(err)?,
            pty: parent.pty.map(Pty::new).transpose().map_err(err)?,
            waiter,
            status: None,
        })
    }

    /// The process id, as the host sees it.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the process to end (closing its stdin first, so a process reading it ends).
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        drop(self.stdin.take());
        let s = self.waiter.wait().await?;
        self.status = Some(s);
        Ok(s)
    }

    /// The exit status if the process has ended, without waiting.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.waiter.try_wait()?;
        }
        Ok(self.status)
    }

    /// Sends a signal. On Linux a jail's pid 1 gets only the signals it handles, SIGKILL and
    /// SIGSTOP (a pid namespace's rule); see [`crate::Jail::stop`].
    pub fn signal(&self, signal: Signal) -> Result<()> {
        if self.status.is_some() {
            return Err(Error::NotRunning);
        }
        self.waiter.signal(signal)
    }

    /// Waits for the process and collects everything it wrote to piped stdout and stderr
    /// (taking those streams).
    pub async fn output(&mut self) -> Result<Output> {
        use tokio::io::AsyncReadExt;
        drop(self.stdin.take());
        let mut out = Vec::new();
        let mut err = Vec::new();
        let stdout = self.stdout.take();
        let stderr = self.stderr.take();
        let read_out = async {
            if let Some(mut s) = stdout {
                s.read_to_end(&mut out).await?;
            }
            Ok::<_, io::Error>(())
        };
        let read_err = async {
            if let Some(mut s) = stderr {
                s.read_to_end(&mut err).await?;
            }
            Ok::<_, io::Error>(())
        };
        let (a, b, status) = tokio::join!(read_out, read_err, self.wait());
        a.map_err(|e| Error::io("read the standard output", e))?;
        b.map_err(|e| Error::io("read the standard error", e))?;
        Ok(Output {
            status: status?,
            stdout: out,
            stderr: err,
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.waiter.reap_in_background();
        }
    }
}

/// What [`Process::output`] collects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (when piped).
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr (when piped).
    pub stderr: Vec<u8>,
}

/// The caller's ends of the standard streams.
#[derive(Debug, Default)]
pub(crate) struct ParentStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub pty: Option<OwnedFd>,
}

/// The child's ends: what goes onto fds 0, 1 and 2 (None: left as inherited), and whether
/// they are a terminal to make the controlling one.
#[derive(Debug, Default)]
pub(crate) struct ChildStdio {
    pub fds: [Option<OwnedFd>; 3],
    pub tty: bool,
}

impl ChildStdio {
    pub fn raw(&self) -> [RawFd; 3] {
        let r = |o: &Option<OwnedFd>| o.as_ref().map_or(-1, |f| f.as_raw_fd());
        [r(&self.fds[0]), r(&self.fds[1]), r(&self.fds[2])]
    }
}

/// Moves `fd` to a number >= 3 (so that setting up 0, 1 and 2 in the child never clobbers it).
pub(crate) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor of an open one; no pointers.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` was just returned by fcntl and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

pub(crate) fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    Ok((above_stdio(r)?, above_stdio(w)?))
}

fn set_cloexec(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: F_SETFD on a descriptor we own; no pointers.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the descriptors for the child's standard streams and the caller's other ends.
pub(crate) fn prepare_stdio(cfg: &ExecConfig) -> Result<(ChildStdio, ParentStdio)> {
    let mut child = ChildStdio::default();
    let mut parent = ParentStdio::default();
    if let Some(size) = cfg.tty {
        let ws = libc::winsize {
            ws_row: size.rows,
            ws_col: size.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None)
            .map_err(|e| Error::io("open a pseudo-terminal", e.into()))?;
        let err = |e| Error::io("set up the pseudo-terminal", e);
        set_cloexec(&pty.master).map_err(err)?;
        set_cloexec(&pty.slave).map_err(err)?;
        let slave = above_stdio(pty.slave).map_err(err)?;
        for fd in &mut child.fds {
            *fd = Some(slave.try_clone().map_err(err)?);
        }
        child.tty = true;
        parent.pty = Some(above_stdio(pty.master).map_err(err)?);
        return Ok((child, parent));
    }
    for (i, s) in [&cfg.stdin, &cfg.stdout, &cfg.stderr]
        .into_iter()
        .enumerate()
    {
        let err = |e| Error::io("set up the standard streams", e);
        child.fds[i] = match s {
            Stdio::Inherit => None,
            Stdio::Null => {
                let f = std::fs::OpenOptions::new()
                    .read(i == 0)
                    .write(i != 0)
                    .open("/dev/null")
                    .map_err(err)?;
                Some(above_stdio(f.into()).map_err(err)?)
            }
            Stdio::Fd(fd) => Some(
                above_stdio(fd.try_clone().map_err(err)?)
                    .and_then(|f| set_cloexec(&f).map(|()| f))
                    .map_err(err)?,
            ),
            Stdio::Piped => {
                let (r, w) = cloexec_pipe().map_err(err)?;
                let (mine, theirs) = if i == 0 { (w, r) } else { (r, w) };
                match i {
                    0 => parent.stdin = Some(mine),
                    1 => parent.stdout = Some(mine),
                    _ => parent.stderr = Some(mine),
                }
                Some(theirs)
            }
        };
    }
    Ok((child, parent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_decoding() {
        assert_eq!(ExitStatus::from_raw(0), ExitStatus::Exited(0));
        assert_eq!(ExitStatus::from_raw(3 << 8), ExitStatus::Exited(3));
        assert_eq!(ExitStatus::from_raw(9), ExitStatus::Signaled(9));
        assert_eq!(ExitStatus::Signaled(15).shell_code(), 143);
        assert_eq!(ExitStatus::Signaled(9).to_string(), "killed by SIGKILL");
        assert_eq!(ExitStatus::Exited(2).to_string(), "exit code 2");
        assert!(ExitStatus::Exited(0).success());
    }
}
