//! Ctrl-C and SIGTERM while a command runs: the first stops the operation the way the
//! engine stops it cleanly (a build keeps `<name>:failed`, an image create removes its
//! partial image, an attached container is stopped and its exit recorded); a second one
//! exits at once, and the next klee command repairs what was left.

use kleene_core::Interrupt;
use tokio::signal::unix::{signal, SignalKind};

/// The exit code of a command aborted by a second Ctrl-C (128 + SIGINT).
pub const ABORTED: i32 = 130;

/// Watches SIGINT and SIGTERM from now on; the returned interrupt fires on the first, and
/// the process exits with [`ABORTED`] on the second. `what` names the operation in the
/// message printed on the first.
pub fn watch(what: &'static str) -> Interrupt {
    let interrupt = Interrupt::new();
    let fired = interrupt.clone();
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without handlers the default disposition stays: the process dies at once and
        // the next command repairs, which is the second signal's behaviour anyway.
        return interrupt;
    };
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            seen += 1;
            if seen == 1 {
                eprintln!("klee: stopping the {what}; press Ctrl-C again to abort at once");
                fired.interrupt();
            } else {
                eprintln!("klee: aborted; the next klee command repairs what was left");
                std::process::exit(ABORTED);
            }
        }
    });
    interrupt
}

/// Our terminal in raw mode while a terminal is attached (a container's, or a remote
/// one through kleened), so that every key reaches it; restored on drop.
pub struct RawMode(nix::sys::termios::Termios);

impl std::fmt::Debug for RawMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawMode")
    }
}

impl RawMode {
    /// Puts stdin's terminal in raw mode; `None` when stdin is no terminal.
    pub fn enable() -> Option<Self> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        use nix::sys::termios::{tcsetattr, SetArg};
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.0);
    }
}
