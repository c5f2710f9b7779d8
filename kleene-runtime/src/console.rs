//! The console socket: with `process.terminal`, the caller (conmon, containerd's shim)
//! names a unix socket; the runtime sends the terminal's master end over it with
//! SCM_RIGHTS, and the caller then owns the container's terminal.

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use std::os::unix::net::UnixStream;

use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

use crate::error::{Error, Result};

/// Sends `master` over the unix socket at `path`, with the terminal's name as the data
/// (runc sends the same).
pub fn send_master(path: &Path, master: BorrowedFd<'_>, name: &str) -> Result<()> {
    let fail = |what: &str, e: rustix::io::Errno| {
        Error::io(
            format!("console socket {}: {what}", path.display()),
            e.into(),
        )
    };
    let sock = UnixStream::connect(path)
        .map_err(|e| Error::io(format!("console socket {}: connecting", path.display()), e))?;
    let fds = [master];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(Error::io(
            format!("console socket {}", path.display()),
            std::io::Error::other("no room for the descriptor"),
        ));
    }
    let name = if name.is_empty() { "console" } else { name };
    sendmsg(
        sock.as_fd(),
        &[IoSlice::new(name.as_bytes())],
        &mut control,
        SendFlags::empty(),
    )
    .map_err(|e| fail("sending the terminal", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::io::IoSliceMut;
    use std::os::unix::net::UnixListener;

    #[test]
    fn the_master_arrives_over_the_socket() {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let path = tmp.path().join("console.sock");
        let listener = UnixListener::bind(&path).expect("a listener");
        let (r, w) = rustix::pipe::pipe().expect("a pipe");
        let sender = std::thread::spawn({
            let path = path.clone();
            move || send_master(&path, w.as_fd(), "/dev/pts/7")
        });
        let (conn, _) = listener.accept().expect("the runtime connects");
        let mut buf = [0u8; 64];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = recvmsg(
            &conn,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::empty(),
        )
        .expect("the message");
        sender.join().expect("the sender").expect("sent");
        assert_eq!(&buf[..got.bytes], b"/dev/pts/7");
        let fd = control
            .drain()
            .find_map(|m| match m {
                RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
                _ => None,
            })
            .expect("a descriptor");
        // The received descriptor is the pipe's write end: what is written reaches `r`.
        rustix::io::write(&fd, b"x").expect("written through it");
        let mut one = [0u8; 1];
        rustix::io::read(&r, &mut one).expect("read");
        assert_eq!(&one, b"x");
    }
}
