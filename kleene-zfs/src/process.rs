//! zfs(8) processes with a deadline: a wedged ZFS daemon must not hang the engine.
//!
//! Every process is watched from the calling thread while helper threads read its pipes
//! and reap it. When the deadline passes, the process is sent SIGKILL and the caller gets
//! [`ZfsError::Timeout`] at once: a process in uninterruptible sleep (a FUSE request the
//! daemon never answers) cannot die until the daemon answers, so nothing here waits for it;
//! its helper threads reap it whenever it goes.
//!
//! Streams (send, receive, send | receive) pass through this process in chunks, and their
//! deadline counts from the last chunk that moved: a long transfer that keeps moving is
//! never cut, one that stops for the whole deadline is.

use std::io::{self, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, ExitStatus};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::backend::Result;
use crate::error::{Argv, ZfsError};

/// How long a zfs(8) process may take before it is killed and [`ZfsError::Timeout`]
/// returned. For a stream (send, receive, copy) the time counts from the last data that
/// moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Commands that change datasets: create, destroy, snapshot, clone, rename, rollback,
    /// promote, mount, unmount, set, inherit, receive. Also bounds the wait for the turn
    /// zfs-fuse changes take.
    pub change: Duration,
    /// Commands that read: list, get, and send.
    pub read: Duration,
}

impl Default for Deadlines {
    /// 60 s for changes, 30 s for reads: zfs-fuse answers in milliseconds, and a destroy
    /// retried while "busy" takes a few seconds at most.
    fn default() -> Self {
        Self {
            change: Duration::from_secs(60),
            read: Duration::from_secs(30),
        }
    }
}

impl Deadlines {
    /// The same deadline for every command.
    pub fn uniform(deadline: Duration) -> Self {
        Self {
            change: deadline,
            read: deadline,
        }
    }
}

/// A duration as a person reads it: `60 s`, `250 ms`, `1.5 s`.
pub(crate) fn human(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// What a finished process left.
#[derive(Debug)]
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stderr: String,
}

/// A running child that can be killed from the watching thread while a helper reaps it.
#[derive(Debug, Clone)]
struct Shared(Arc<Mutex<Child>>);

impl Shared {
    /// SIGKILL, unless it was reaped already (then its pid may belong to another process
    /// and std's `Child::kill` does nothing).
    fn kill(&self) {
        let mut child = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = child.kill();
    }

    /// Waits for the exit without holding the lock for long, so that [`Shared::kill`]
    /// always gets through: called once the child closed its pipes, when the exit is
    /// a matter of microseconds.
    fn reap(&self) -> io::Result<ExitStatus> {
        let mut pause = Duration::from_micros(50);
        loop {
            let status = self
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .try_wait()?;
            if let Some(status) = status {
                return Ok(status);
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }
}

/// What the helper threads report to the watching thread.
enum Event {
    /// A chunk of the child's stdout (`send`), or `None` at its end.
    Data(Option<Vec<u8>>),
    /// A chunk went into a child's stdin (or through a pump).
    Moved,
    /// A child's stdin is closed: all input given, or the child stopped reading.
    InputDone(Option<io::Error>),
    /// A child exited (reaped) with its stderr, or could not be waited for.
    Exited(usize, io::Result<Finished>),
}

const CHUNK: usize = 64 * 1024;
/// Chunks handed to a writer thread and not yet written: bounds the memory a stream takes.
const IN_FLIGHT: usize = 4;

fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map(drop)
}

/// Starts the reaper of a spawned child: it drains stderr (so a chatty child never blocks),
/// then reaps, then reports [`Event::Exited`].
fn watch(index: usize, mut child: Child, events: Sender<Event>) -> io::Result<Shared> {
    let stderr = child.stderr.take();
    let shared = Shared(Arc::new(Mutex::new(child)));
    let reaper = shared.clone();
    let started = spawn_thread("zfs-reaper", move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut text);
        }
        let result = reaper.reap().map(|status| Finished {
            status,
            stderr: text,
        });
        let _ = events.send(Event::Exited(index, result));
    });
    if let Err(e) = started {
        shared.kill();
        return Err(e);
    }
    Ok(shared)
}

/// Reads a child's stdout in chunks, reporting each as [`Event::Data`].
fn read_stdout(mut stdout: ChildStdout, events: Sender<Event>) -> io::Result<()> {
    spawn_thread("zfs-stdout", move || {
        let mut buf = vec![0; CHUNK];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = events.send(Event::Data(None));
                    return;
                }
                Ok(n) => {
                    if events.send(Event::Data(Some(buf[..n].to_vec()))).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// Writes chunks given on `chunks` into a child's stdin, each reported as [`Event::Moved`];
/// closes the stdin when `chunks` ends or the child stops reading.
fn write_stdin(
    mut stdin: ChildStdin,
    chunks: Receiver<Vec<u8>>,
    events: Sender<Event>,
) -> io::Result<()> {
    spawn_thread("zfs-stdin", move || {
        for chunk in chunks {
            if let Err(e) = stdin.write_all(&chunk) {
                drop(stdin);
                let _ = events.send(Event::InputDone(Some(e)));
                return;
            }
            if events.send(Event::Moved).is_err() {
                return;
            }
        }
        drop(stdin);
        let _ = events.send(Event::InputDone(None));
    })
}

/// Copies a child's stdout into another's stdin, reporting each chunk as [`Event::Moved`].
fn pump(mut from: ChildStdout, mut to: ChildStdin, events: Sender<Event>) -> io::Result<()> {
    spawn_thread("zfs-pump", move || {
        let mut buf = vec![0; CHUNK];
        let error = loop {
            match from.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => {
                    if let Err(e) = to.write_all(&buf[..n]) {
                        break Some(e);
                    }
                    if events.send(Event::Moved).is_err() {
                        return;
                    }
                }
                Err(e) => break Some(e),
            }
        };
        // Closing both ends: the receiver sees the end of the stream, and a sender whose
        // receiver quit gets EPIPE instead of blocking on a full pipe.
        drop(to);
        drop(from);
        let _ = events.send(Event::InputDone(error));
    })
}

fn timeout(argv: &Argv, after: Duration) -> ZfsError {
    log::warn!(
        "{argv}: no answer after {}; killed (is the ZFS daemon wedged?)",
        human(after)
    );
    ZfsError::Timeout {
        argv: argv.clone(),
        after,
    }
}

fn lost(argv: &Argv) -> ZfsError {
    ZfsError::io(
        format!("watching {argv}"),
        io::Error::other("a helper thread ended without a word"),
    )
}

/// Runs a spawned child (stdout and stderr piped) to its end within `limit`: its stdout
/// and how it ended, or [`ZfsError::Timeout`] after killing it.
pub(crate) fn output(
    mut child: Child,
    argv: &Argv,
    limit: Duration,
) -> Result<(Vec<u8>, Finished)> {
    let deadline = Instant::now() + limit;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take();
    let shared =
        watch(0, child, tx.clone()).map_err(|e| ZfsError::io(format!("watching {argv}"), e))?;
    if let Some(stdout) = stdout {
        if let Err(e) = read_stdout(stdout, tx.clone()) {
            shared.kill();
            return Err(ZfsError::io(format!("watching {argv}"), e));
        }
    } else {
        let _ = tx.send(Event::Data(None));
    }
    drop(tx);
    let mut out = Vec::new();
    let mut eof = false;
    let mut finished = None;
    while !(eof && finished.is_some()) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Data(Some(chunk))) => out.extend_from_slice(&chunk),
            Ok(Event::Data(None)) => eof = true,
            Ok(Event::Exited(_, result)) => {
                finished = Some(result.map_err(|e| ZfsError::io(format!("waiting for {argv}"), e))?)
            }
            Ok(Event::Moved | Event::InputDone(_)) => {}
            Err(RecvTimeoutError::Timeout) => {
                shared.kill();
                return Err(timeout(argv, limit));
            }
            Err(RecvTimeoutError::Disconnected) => return Err(lost(argv)),
        }
    }
    match finished {
        Some(f) => Ok((out, f)),
        None => Err(lost(argv)),
    }
}

/// Streams a spawned child's stdout into `out`; at most `limit` may pass without data.
pub(crate) fn stream_out(
    mut child: Child,
    argv: &Argv,
    limit: Duration,
    out: &mut dyn Write,
) -> Result<Finished> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take();
    let shared =
        watch(0, child, tx.clone()).map_err(|e| ZfsError::io(format!("watching {argv}"), e))?;
    match stdout {
        Some(s) => {
            if let Err(e) = read_stdout(s, tx.clone()) {
                shared.kill();
                return Err(ZfsError::io(format!("watching {argv}"), e));
            }
        }
        None => {
            let _ = tx.send(Event::Data(None));
        }
    }
    drop(tx);
    let mut eof = false;
    let mut finished = None;
    while !(eof && finished.is_some()) {
        match rx.recv_timeout(limit) {
            Ok(Event::Data(Some(chunk))) => {
                if let Err(e) = out.write_all(&chunk) {
                    shared.kill();
                    return Err(ZfsError::io(format!("writing the stream of {argv}"), e));
                }
            }
            Ok(Event::Data(None)) => eof = true,
            Ok(Event::Exited(_, result)) => {
                finished = Some(result.map_err(|e| ZfsError::io(format!("waiting for {argv}"), e))?)
            }
            Ok(Event::Moved | Event::InputDone(_)) => {}
            Err(RecvTimeoutError::Timeout) => {
                shared.kill();
                return Err(timeout(argv, limit));
            }
            Err(RecvTimeoutError::Disconnected) => return Err(lost(argv)),
        }
    }
    out.flush()
        .map_err(|e| ZfsError::io(format!("writing the stream of {argv}"), e))?;
    finished.ok_or_else(|| lost(argv))
}

/// Feeds `input` into a spawned child's stdin; at most `limit` may pass without the child
/// taking data or, after the input ends, without it exiting. Returns how it ended and
/// whether writing to it failed (a child that stops reading breaks the pipe: its own
/// error says more).
pub(crate) fn stream_in(
    mut child: Child,
    argv: &Argv,
    limit: Duration,
    input: &mut dyn Read,
) -> Result<(Finished, Option<io::Error>)> {
    let (tx, rx) = mpsc::channel();
    let stdin = child.stdin.take();
    let shared =
        watch(0, child, tx.clone()).map_err(|e| ZfsError::io(format!("watching {argv}"), e))?;
    let (chunks, chunk_rx) = mpsc::channel::<Vec<u8>>();
    match stdin {
        Some(stdin) => {
            if let Err(e) = write_stdin(stdin, chunk_rx, tx.clone()) {
                shared.kill();
                return Err(ZfsError::io(format!("watching {argv}"), e));
            }
        }
        None => {
            let _ = tx.send(Event::InputDone(None));
        }
    }
    drop(tx);
    let mut chunks = Some(chunks);
    let mut in_flight = 0usize;
    let mut write_error = None;
    let mut input_done = false;
    let mut finished: Option<Finished> = None;
    let mut buf = vec![0; CHUNK];
    loop {
        // Hand over input while the child keeps up and nothing ended.
        if !input_done && finished.is_none() && in_flight < IN_FLIGHT {
            if let Some(sender) = &chunks {
                let n = match input.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // A partial stream must not be received as if it were whole.
                        shared.kill();
                        return Err(ZfsError::io(format!("reading the stream for {argv}"), e));
                    }
                };
                if n == 0 {
                    chunks = None;
                } else if sender.send(buf[..n].to_vec()).is_ok() {
                    in_flight += 1;
                } else {
                    chunks = None;
                }
                continue;
            }
        }
        if input_done && finished.is_some() {
            break;
        }
        match rx.recv_timeout(limit) {
            Ok(Event::Moved) => in_flight = in_flight.saturating_sub(1),
            Ok(Event::InputDone(e)) => {
                input_done = true;
                in_flight = 0;
                chunks = None;
                write_error = e;
            }
            Ok(Event::Exited(_, result)) => {
                let f = result.map_err(|e| ZfsError::io(format!("waiting for {argv}"), e))?;
                finished = Some(f);
                // It quit: whatever is still to be written goes nowhere.
                chunks = None;
                if !input_done {
                    in_flight = 0;
                    input_done = true;
                }
            }
            Ok(Event::Data(..)) => {}
            Err(RecvTimeoutError::Timeout) => {
                shared.kill();
                return Err(timeout(argv, limit));
            }
            Err(RecvTimeoutError::Disconnected) => return Err(lost(argv)),
        }
    }
    let finished = finished.ok_or_else(|| lost(argv))?;
    Ok((finished, write_error))
}

/// The two ends of `send | receive` and how each ended.
#[derive(Debug)]
pub(crate) struct Piped {
    pub sender: Finished,
    pub receiver: Finished,
}

/// Runs `sender | receiver` through this process; at most `limit` may pass without data
/// moving or, after the stream ends, without both exiting. On expiry both are killed and
/// the timeout names the receiver if it still runs, else the sender.
pub(crate) fn pipe(
    mut sender: Child,
    send_argv: &Argv,
    mut receiver: Child,
    recv_argv: &Argv,
    limit: Duration,
) -> Result<Piped> {
    let (tx, rx) = mpsc::channel();
    let from = sender.stdout.take();
    let to = receiver.stdin.take();
    let s = watch(0, sender, tx.clone());
    let r = watch(1, receiver, tx.clone());
    let (s, r) = match (s, r) {
        (Ok(s), Ok(r)) => (s, r),
        (s, r) => {
            for shared in [&s, &r].into_iter().flatten() {
                shared.kill();
            }
            let e = s
                .err()
                .or(r.err())
                .unwrap_or_else(|| io::Error::other("no reaper"));
            return Err(ZfsError::io(format!("watching {send_argv}"), e));
        }
    };
    match (from, to) {
        (Some(from), Some(to)) => {
            if let Err(e) = pump(from, to, tx.clone()) {
                s.kill();
                r.kill();
                return Err(ZfsError::io(format!("watching {send_argv}"), e));
            }
        }
        _ => {
            let _ = tx.send(Event::InputDone(None));
        }
    }
    drop(tx);
    let mut ends: [Option<Finished>; 2] = [None, None];
    let mut pumped = false;
    while !(pumped && ends.iter().all(Option::is_some)) {
        match rx.recv_timeout(limit) {
            Ok(Event::Moved | Event::Data(..)) => {}
            Ok(Event::InputDone(_)) => pumped = true,
            Ok(Event::Exited(i, result)) => {
                let argv = if i == 0 { send_argv } else { recv_argv };
                let f = result.map_err(|e| ZfsError::io(format!("waiting for {argv}"), e))?;
                // A receiver that failed will never read the rest: stop the sender.
                if i == 1 && !f.status.success() {
                    s.kill();
                }
                if let Some(end) = ends.get_mut(i) {
                    *end = Some(f);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                s.kill();
                r.kill();
                let argv = if ends[1].is_none() {
                    recv_argv
                } else {
                    send_argv
                };
                return Err(timeout(argv, limit));
            }
            Err(RecvTimeoutError::Disconnected) => return Err(lost(send_argv)),
        }
    }
    let [Some(sender), Some(receiver)] = ends else {
        return Err(lost(send_argv));
    };
    Ok(Piped { sender, receiver })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_secs(60)), "60 s");
        assert_eq!(human(Duration::from_millis(250)), "250 ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5 s");
    }
}
