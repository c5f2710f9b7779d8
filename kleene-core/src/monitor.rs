//! The container monitor: one small process per running container (like podman's conmon).
//! It starts the jail, records its pid, waits for it, records the exit code and tears the
//! jail down, so that any later process sees the truth without a daemon.
//!
//! The monitor is the program itself, started again, as runc does with `runc init`: the
//! engine runs `/proc/self/exe kleene-monitor CONTAINER_ID` (FreeBSD: the program's path as
//! the kernel tells it), or [`Config::monitor`] when one is set, and [`init`], called first
//! in that program's `main`, turns the new process into the monitor. Nothing is looked up
//! in the environment or on `PATH`; the container id in the arguments is only for `ps`.
//!
//! The protocol runs on the monitor's standard input, one end of a Unix stream socket pair
//! (so no other descriptor has to cross `exec`):
//! 1. The engine writes one JSON line, [`Request`]: its kleene-core version, the whole
//!    [`Config`], the container id and whether the container is detached. An attached
//!    container's stdin comes along as an `SCM_RIGHTS` descriptor (the caller's own
//!    stdin, or a pipe the caller writes).
//! 2. The monitor refuses a request of another version, starts the jail, and writes one
//!    JSON line back, [`Report`] (with its own version): `started` with the pid and jail
//!    id, or `failed` with a typed reason. A monitor that dies before that leaves the
//!    engine an end of file, and the engine names its exit status.
//! 3. For a detached container it then closes the socket. For an attached one it writes a
//!    second line when the container's command ends, `exited` with its exit code and
//!    whether the container ended with it (it runs on while processes remain, as a jail
//!    does), and closes the socket then.
//!
//! The container's stdout and stderr are the monitor's own: the caller's (`run -it`), pipes
//! to the caller, or (detached) its log.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};

use kleene_jail::{Jail, JailConfig, Mount};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::container::{jail_name, Attach};
use crate::engine::{Engine, Inner};
use crate::error::{CoreError, Result};
use crate::jails::JailRun;
use crate::meta::now;
use crate::model::{Container, MountSource, RunState, Runtime};
use crate::rootfs::{RootDir, Symlinks};
use crate::tree::{self, TreeCopy};
use crate::Config;

/// The first argument of a process started as a container monitor.
const MONITOR_ARG: &str = "kleene-monitor";

/// kleene-core's version: the engine and its monitors must have the same.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The longest line either side reads.
const MAX_LINE: u64 = 1 << 20;

static INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// Call this first in `main`: containers are run by this program itself, started again as
/// their monitor (as runc re-executes itself as `runc init`). In a process started that
/// way, `init` runs the monitor and exits the process; anywhere else it returns at once.
///
/// ```no_run
/// fn main() {
///     kleene_core::init();
///     // ... the program, which may open an Engine and run containers
/// }
/// ```
///
/// Call it before anything reads the arguments or starts threads that matter (a
/// `#[tokio::main]` program calls it first in its `async fn main`; the monitor then runs
/// on a thread of its own). Without it, [`crate::Engine::open`] fails with
/// [`CoreError::NoMonitor`], unless [`Config::monitor`] names a program that calls it (such
/// as kleene-core's `kleene-monitor`, for test binaries, whose `main` is libtest's).
pub fn init() {
    INIT_CALLED.store(true, Ordering::SeqCst);
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == MONITOR_ARG)
    {
        std::process::exit(monitor_process());
    }
}

/// Whether [`init`] was called in this process.
pub(crate) fn init_called() -> bool {
    INIT_CALLED.load(Ordering::SeqCst)
}

/// What the engine asks of a monitor: one JSON line.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    /// The engine's kleene-core version.
    version: String,
    /// The engine's whole configuration.
    config: Config,
    /// The container to run.
    container: String,
    /// Output to the log (and no stdin), instead of the monitor's stdout and stderr.
    detached: bool,
    /// Whether the container's stdin came with the request as a descriptor.
    stdin: bool,
    /// What this start runs instead of the container's configuration.
    #[serde(default)]
    overrides: crate::container::StartOverrides,
}

/// What a monitor answers: one JSON line.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    /// The monitor's kleene-core version.
    version: String,
    /// How the start went.
    outcome: Outcome,
}

/// The first thing read of either line, so that another version is told as such.
#[derive(Debug, Deserialize)]
struct Versioned {
    version: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    /// The container runs: its first process and its jail.
    Started { pid: i32, jid: i32 },
    /// Its command ended (attached containers only); the container too, or not.
    Exited {
        exit_code: i32,
        container_ended: bool,
        /// The container was removed with its end (a start with `remove`).
        #[serde(default)]
        removed: bool,
    },
    /// It does not.
    Failed(Failure),
}

/// Why a monitor did not start its container; each becomes a [`CoreError`] for the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Failure {
    /// The container could not start (the jail's text): [`CoreError::StartFailed`].
    Start(String),
    /// The request is of another kleene-core version: [`CoreError::MonitorVersion`].
    Version { engine: String, monitor: String },
    /// Anything else (the request, the metadata): [`CoreError::MonitorFailed`].
    Monitor(String),
}

impl Failure {
    fn into_error(self, container: &str) -> CoreError {
        match self {
            Failure::Start(reason) => CoreError::StartFailed {
                container: container.to_string(),
                reason,
            },
            Failure::Version { engine, monitor } => CoreError::MonitorVersion { engine, monitor },
            Failure::Monitor(reason) => CoreError::MonitorFailed {
                container: container.to_string(),
                reason,
            },
        }
    }
}

/// A monitor that reported its container started.
#[derive(Debug)]
pub(crate) struct Spawned {
    /// The monitor process; it ends when the container has ended and been recorded.
    pub child: tokio::process::Child,
    /// The container's stdin, with [`Attach::Piped`].
    pub stdin: Option<tokio::net::unix::pipe::Sender>,
    /// Where an attached container's command end is reported ([`command_end`]).
    pub reports: Option<Reports>,
}

/// The engine's end of an attached monitor's socket, after the start report.
pub(crate) type Reports = tokio::io::BufReader<tokio::net::UnixStream>;

/// Reads an attached monitor's second report: the command's exit code and whether the
/// container ended with it. `None` when the monitor closed the socket without one (it
/// died, or the container could not be waited for).
pub(crate) async fn command_end(reports: &mut Reports) -> Option<(i32, bool, bool)> {
    let mut line = Vec::new();
    let mut limited = (&mut *reports).take(MAX_LINE);
    limited.read_until(b'\n', &mut line).await.ok()?;
    if line.last() != Some(&b'\n') {
        return None;
    }
    match read_report_outcome(&line).ok()? {
        Outcome::Exited {
            exit_code,
            container_ended,
            removed,
        } => Some((exit_code, container_ended, removed)),
        _ => None,
    }
}

/// A monitor's request, sent as far as the socket's buffer took it before the monitor runs.
#[derive(Debug)]
struct SentRequest {
    /// The engine's end of the socket.
    ours: UnixStream,
    /// The monitor's end, which becomes its stdin.
    theirs: UnixStream,
    /// The whole request line.
    line: Vec<u8>,
    /// How many bytes of `line` are already in the socket.
    sent: usize,
    /// The end the caller writes the container's stdin to, with [`Attach::Piped`].
    stdin_writer: Option<OwnedFd>,
}

/// An I/O error of the monitor of container `c` while doing `what`.
fn monitor_io(c: &Container, what: &str, e: std::io::Error) -> CoreError {
    CoreError::io(format!("{what} for the monitor of container {}", c.name), e)
}

/// Starts the monitor of container `c` and waits for its report: the monitor runs on
/// when this returns (and when the future is dropped).
pub(crate) async fn spawn(
    config: &Config,
    c: &Container,
    attach: Attach,
    overrides: &crate::container::StartOverrides,
) -> Result<Spawned> {
    let (program, arg0) = monitor_program(config)?;
    let request = send_request(config, c, attach, overrides)?;
    let mut child = start_monitor(&program, arg0, c, attach, request.theirs)?;
    let stdin = match request.stdin_writer {
        Some(w) => Some(
            tokio::net::unix::pipe::Sender::from_owned_fd(w)
                .map_err(|e| monitor_io(c, "setting up a pipe", e))?,
        ),
        None => None,
    };
    let (answer, reports) =
        read_start_report(c, attach, request.ours, &request.line[request.sent..]).await?;
    if answer.last() != Some(&b'\n') {
        let status = child
            .wait()
            .await
            .map_err(|e| monitor_io(c, "waiting for the monitor", e))?;
        return Err(CoreError::MonitorFailed {
            container: c.name.clone(),
            reason: format!("it ended ({status}) before reporting whether the container started"),
        });
    }
    match read_report(&answer) {
        Ok((pid, jid)) => {
            log::debug!(
                "the monitor of container {} started it: pid {pid}, jail {jid}",
                c.name
            );
            Ok(Spawned {
                child,
                stdin,
                reports,
            })
        }
        Err(failure) => {
            // It ends right after a failure: reaped here, not left a zombie.
            let _ = child.wait().await;
            Err(failure.into_error(&c.name))
        }
    }
}

/// Makes the monitor's socket and sends it the request (with the container's stdin) as
/// far as the socket's buffer takes it.
fn send_request(
    config: &Config,
    c: &Container,
    attach: Attach,
    overrides: &crate::container::StartOverrides,
) -> Result<SentRequest> {
    let io = |what: &str, e| monitor_io(c, what, e);
    let (ours, theirs) = UnixStream::pair().map_err(|e| io("making a socket", e))?;
    // The container's stdin, sent with the request.
    let (stdin, stdin_writer) = match attach {
        Attach::Detached => (None, None),
        // A program without a stdin gives the container none either.
        Attach::Inherit => (std::io::stdin().as_fd().try_clone_to_owned().ok(), None),
        Attach::Piped => {
            let (r, w) = std::io::pipe().map_err(|e| io("making a pipe", e))?;
            (Some(OwnedFd::from(r)), Some(OwnedFd::from(w)))
        }
    };
    let request = Request {
        version: VERSION.to_string(),
        config: config.clone(),
        container: c.id.to_string(),
        detached: attach == Attach::Detached,
        stdin: stdin.is_some(),
        overrides: overrides.clone(),
    };
    let mut line = serde_json::to_vec(&request)
        .map_err(|e| CoreError::Internal(format!("the monitor request: {e}")))?;
    line.push(b'\n');
    // Into the socket's buffer before the monitor runs; what does not fit follows below.
    ours.set_nonblocking(true)
        .map_err(|e| io("setting up a socket", e))?;
    let sent =
        send_with_fd(&ours, &line, stdin.as_ref()).map_err(|e| io("sending the request", e))?;
    drop(stdin);
    Ok(SentRequest {
        ours,
        theirs,
        line,
        sent,
        stdin_writer,
    })
}

/// Starts the monitor process of container `c`, its stdin the monitor's end of the socket.
fn start_monitor(
    program: &Path,
    arg0: OsString,
    c: &Container,
    attach: Attach,
    theirs: UnixStream,
) -> Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg0(arg0)
        .arg(MONITOR_ARG)
        .arg(c.id.as_str())
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .kill_on_drop(false);
    if attach != Attach::Inherit {
        // Its own process group: the caller's Ctrl-C is not the container's. With the
        // caller's terminal it must stay in the foreground group to read from it.
        cmd.process_group(0);
    }
    let (out, err) = match attach {
        Attach::Detached => (Stdio::null(), Stdio::null()),
        Attach::Inherit => (Stdio::inherit(), Stdio::inherit()),
        Attach::Piped => (Stdio::piped(), Stdio::piped()),
    };
    cmd.stdout(out).stderr(err);
    let spawned = cmd.spawn();
    // The command holds a copy of the monitor's end: an end of file must mean that the
    // monitor is gone.
    drop(cmd);
    spawned.map_err(|e| {
        CoreError::io(
            format!(
                "starting the monitor of container {} ({})",
                c.name,
                program.display()
            ),
            e,
        )
    })
}

/// Sends the rest of the request and reads the monitor's start report line (without its
/// newline when the monitor died first), with, for an attached container, the socket
/// its later report comes on.
async fn read_start_report(
    c: &Container,
    attach: Attach,
    ours: UnixStream,
    rest: &[u8],
) -> Result<(Vec<u8>, Option<Reports>)> {
    let mut socket = tokio::net::UnixStream::from_std(ours)
        .map_err(|e| monitor_io(c, "setting up a socket", e))?;
    let mut answer = Vec::new();
    let mut reports = None;
    // A monitor that died leaves an end of file, or an error (a reset, when it did not
    // read everything): either way its exit status tells more.
    if socket.write_all(rest).await.is_ok() {
        let mut reader = tokio::io::BufReader::new(socket);
        if (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut answer)
            .await
            .is_err()
        {
            answer.clear();
        }
        reports = (attach != Attach::Detached).then_some(reader);
    }
    Ok((answer, reports))
}

/// The monitor program and its `argv[0]`: [`Config::monitor`], else this program.
fn monitor_program(config: &Config) -> Result<(PathBuf, OsString)> {
    if let Some(p) = &config.monitor {
        return Ok((p.clone(), p.clone().into_os_string()));
    }
    if !init_called() {
        return Err(CoreError::NoMonitor);
    }
    let arg0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| OsString::from(MONITOR_ARG));
    // The running program's file even when its path was replaced (an upgrade) or removed.
    #[cfg(target_os = "linux")]
    let exe = PathBuf::from("/proc/self/exe");
    // FreeBSD's is the path the kernel keeps for the process (sysctl, not PATH).
    #[cfg(not(target_os = "linux"))]
    let exe = std::env::current_exe().map_err(|e| {
        CoreError::io(
            "finding this program's path to start a container monitor",
            e,
        )
    })?;
    Ok((exe, arg0))
}

/// Sends `data` and, with its first byte, `fd`; the number of bytes sent.
fn send_with_fd(socket: &UnixStream, data: &[u8], fd: Option<&OwnedFd>) -> std::io::Result<usize> {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = fd.map(|f| [f.as_fd()]);
    if let Some(fds) = &fds {
        if !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(std::io::Error::other("no room for a descriptor"));
        }
    }
    Ok(sendmsg(
        socket,
        &[std::io::IoSlice::new(data)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?)
}

/// The engine's side of a report line: the pid and jail id, or why not.
fn read_report(line: &[u8]) -> std::result::Result<(i32, i32), Failure> {
    match read_report_outcome(line)? {
        Outcome::Started { pid, jid } => Ok((pid, jid)),
        Outcome::Failed(f) => Err(f),
        Outcome::Exited { .. } => Err(Failure::Monitor(
            "the monitor reported an exit before the start".into(),
        )),
    }
}

/// Any report line's outcome, once its version is checked.
fn read_report_outcome(line: &[u8]) -> std::result::Result<Outcome, Failure> {
    let unreadable = |e: serde_json::Error| Failure::Monitor(format!("unreadable report: {e}"));
    let v: Versioned = serde_json::from_slice(line).map_err(unreadable)?;
    if v.version != VERSION {
        return Err(Failure::Version {
            engine: VERSION.to_string(),
            monitor: v.version,
        });
    }
    let report: Report = serde_json::from_slice(line).map_err(unreadable)?;
    Ok(report.outcome)
}

/// The monitor's side of a request line.
fn read_request(line: &[u8]) -> std::result::Result<Request, Failure> {
    let unreadable = |e: serde_json::Error| Failure::Monitor(format!("unreadable request: {e}"));
    let v: Versioned = serde_json::from_slice(line).map_err(unreadable)?;
    if v.version != VERSION {
        return Err(Failure::Version {
            engine: v.version,
            monitor: VERSION.to_string(),
        });
    }
    serde_json::from_slice(line).map_err(unreadable)
}

/// The monitor process, from [`init`]: its exit code.
fn monitor_process() -> i32 {
    let socket = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixStream::from(fd),
        Err(e) => {
            say(format_args!("kleene-monitor: no standard input: {e}\n"));
            return 2;
        }
    };
    // Nothing this process starts may hold the engine's socket.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = rustix::stdio::dup2_stdin(&null);
    }
    let (line, stdin) = match receive_request(&socket) {
        Ok(r) => r,
        Err(e) => {
            say(format_args!(
                "kleene-monitor: {e}: this process runs a container for the engine, which starts it with a socket as standard input; it is not a command\n"
            ));
            return 2;
        }
    };
    let request = match read_request(&line) {
        Ok(r) => r,
        Err(failure) => {
            report(&socket, Outcome::Failed(failure));
            return 1;
        }
    };
    // `init` may have been called inside a runtime (`#[tokio::main]`): the monitor gets a
    // thread and a runtime of its own.
    let monitor = std::thread::spawn(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(run(request, stdin, socket)),
            Err(e) => {
                let reason = format!("cannot start the async runtime: {e}");
                report(&socket, Outcome::Failed(Failure::Monitor(reason)));
                1
            }
        }
    });
    monitor.join().unwrap_or(1)
}

/// Reads the request line and the descriptor that came with it.
fn receive_request(socket: &UnixStream) -> std::io::Result<(Vec<u8>, Option<OwnedFd>)> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut line = Vec::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    loop {
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let n = recvmsg(
            socket,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?
        .bytes;
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = msg {
                fds.extend(received);
            }
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "no request: the engine closed the socket",
            ));
        }
        if let Some(end) = buf[..n].iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&buf[..end]);
            return Ok((line, fds.pop()));
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() as u64 > MAX_LINE {
            return Err(std::io::Error::other("the request is too long"));
        }
    }
}

/// Writes the report line; an engine that went away is not an error of the monitor (and
/// no SIGPIPE, whatever the program's disposition).
fn report(socket: &UnixStream, outcome: Outcome) {
    let report = Report {
        version: VERSION.to_string(),
        outcome,
    };
    let mut line = serde_json::to_vec(&report).expect("a report serializes: strings and numbers");
    line.push(b'\n');
    let mut rest = line.as_slice();
    while !rest.is_empty() {
        match send_with_fd(socket, rest, None) {
            Ok(n) if n > 0 => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}

/// Terminal signals are the container's. With the caller's terminal (`run -it`) the monitor
/// is in the terminal's foreground process group as well, and Ctrl-C, Ctrl-\, Ctrl-Z or a
/// hangup must not end it before it records the container's exit: caught, they do nothing
/// here. The jail's process starts with default dispositions and decides itself.
fn catch_terminal_signals() -> Vec<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    [
        SignalKind::interrupt(),
        SignalKind::quit(),
        SignalKind::hangup(),
        SignalKind::from_raw(rustix::process::Signal::TSTP.as_raw()),
    ]
    .into_iter()
    .filter_map(|kind| match signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            say(format_args!(
                "kleene-monitor: cannot catch signal {}: {e}\n",
                kind.as_raw_value()
            ));
            None
        }
    })
    .collect()
}

/// The monitor's life: start the container, report, wait, record.
async fn run(req: Request, stdin: Option<OwnedFd>, socket: UnixStream) -> i32 {
    // Kept for the process' life (tokio never restores a disposition anyway).
    let _signals = catch_terminal_signals();
    if req.stdin != stdin.is_some() {
        let reason = "the container's stdin did not come with the request".to_string();
        report(&socket, Outcome::Failed(Failure::Monitor(reason)));
        return 1;
    }
    let (engine, c, mut jail, started) = match start(&req, stdin).await {
        Ok(started) => started,
        Err(failure) => {
            report(&socket, Outcome::Failed(failure));
            return 1;
        }
    };
    report(
        &socket,
        Outcome::Started {
            pid: jail.pid(),
            jid: jail.id().0,
        },
    );
    // An attached caller hears of the command's end on it too.
    let socket = (!req.detached).then_some(socket);
    match finish(
        &engine,
        &c,
        &mut jail,
        started,
        socket,
        req.overrides.remove,
    )
    .await
    {
        Ok(()) => 0,
        Err(e) => {
            say(format_args!("kleene-monitor: {e}\n"));
            1
        }
    }
}

async fn set_runtime(engine: &Engine, c: &Container, rt: Runtime) -> Result<()> {
    let id = c.id.clone();
    engine
        .blocking(move |inner| inner.store().set_runtime(&id, &rt))
        .await
}

/// Starts the jail and records it running.
async fn start(
    req: &Request,
    stdin: Option<OwnedFd>,
) -> std::result::Result<(Engine, Container, Jail, i64), Failure> {
    let other = |e: CoreError| Failure::Monitor(e.to_string());
    // Its resource group is named in the record before it is made: a kill from here on
    // leaves a group the repair finds. Planned first: joining it waits for the kernel
    // (see `warm_joins`), and that wait runs while the engine opens.
    let id = crate::id::Id::parse(&req.container).map_err(other)?;
    let group = kleene_jail::ResourceGroup::plan(crate::CGROUP_PARENT, &jail_name(&id))
        .map_err(|e| Failure::Start(e.to_string()))?;
    if let Some(g) = &group {
        let _ = g.warm_joins();
    }
    let engine = Engine::builder(req.config.clone())
        .without_repair()
        .open()
        .await
        .map_err(other)?;
    let c = req
        .overrides
        .apply(engine.container(&req.container).await.map_err(other)?);
    let monitor_pid = Some(std::process::id() as i32);
    let resource_group = group.as_ref().map(|g| g.locator());
    crate::failpoint("monitor-before-starting");
    // The start becomes this monitor's only while it is still its starter's: one whose
    // starter died first was given up (recorded as ended by whoever saw it), and stays so.
    let seen = c.runtime.clone();
    let mine = Runtime {
        state: RunState::Starting,
        monitor_pid,
        resource_group: resource_group.clone(),
        ..Runtime::default()
    };
    let id = c.id.clone();
    let taken = seen.state == RunState::Starting
        && engine
            .blocking(move |inner| inner.store().replace_runtime(&id, &seen, &mine))
            .await
            .map_err(other)?;
    if !taken {
        return Err(Failure::Start(
            "the start was given up: the process starting the container ended first".into(),
        ));
    }
    crate::failpoint("monitor-after-starting");
    // Its network (links in a namespace of its own, held here until the jail runs in it)
    // and the firewall with its ports, before the jail starts.
    let net = match crate::network::container_network(&engine, &c).await {
        Ok(net) => engine.apply_firewall().await.map(|()| net),
        Err(e) => Err(e),
    };
    let jail = match net {
        Ok(net) => match jail_config(&engine.inner, &c, req.detached, stdin, net.mode.clone()) {
            Ok(mut cfg) => {
                let mut resources = c.config.limits.resources();
                if let Some(g) = group {
                    // Docker's device rules where the host can enforce them (cgroup v1):
                    // CAP_MKNOD must not make a host disk readable.
                    if g.filters_devices() {
                        resources.devices = kleene_jail::DeviceRule::docker_defaults();
                    }
                    cfg = cfg.resource_group(g);
                }
                cfg = cfg.resources(resources);
                cfg.start().await.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    let jail = match jail {
        Ok(j) => j,
        Err(reason) => {
            set_runtime(&engine, &c, failed(&reason))
                .await
                .map_err(other)?;
            return Err(Failure::Start(reason));
        }
    };
    let started = now();
    set_runtime(
        &engine,
        &c,
        Runtime {
            state: RunState::Running,
            pid: Some(jail.pid()),
            jid: Some(jail.id().0),
            monitor_pid,
            started: Some(started),
            resource_group,
            ..Runtime::default()
        },
    )
    .await
    .map_err(other)?;
    Ok((engine, c, jail, started))
}

/// Waits for the container's command and records its exit code (telling an attached
/// caller on `socket`), then for the container's end (its last process, as a jail's),
/// tears the jail down and records that.
async fn finish(
    engine: &Engine,
    c: &Container,
    jail: &mut Jail,
    started: i64,
    socket: Option<UnixStream>,
    remove: bool,
) -> Result<()> {
    let end = jail.wait_command().await;
    let exit_code = match &end {
        Ok(e) => e.status.shell_code(),
        Err(_) => 255,
    };
    let runs_on = matches!(&end, Ok(e) if !e.jail_ended);
    if runs_on {
        set_runtime(
            engine,
            c,
            Runtime {
                state: RunState::Running,
                pid: Some(jail.pid()),
                jid: Some(jail.id().0),
                monitor_pid: Some(std::process::id() as i32),
                started: Some(started),
                exit_code: Some(exit_code),
                command_finished: Some(now()),
                resource_group: jail.resource_group().map(|g| g.locator()),
                ..Runtime::default()
            },
        )
        .await?;
    }
    if let Some(socket) = socket {
        if runs_on {
            report(
                &socket,
                Outcome::Exited {
                    exit_code,
                    container_ended: false,
                    removed: false,
                },
            );
            drop(socket);
        } else {
            // Told once the end is recorded (below), so the caller finds it so.
            return finish_ended(
                engine,
                c,
                jail,
                started,
                end.map(|e| e.status),
                Some(socket),
                remove,
            )
            .await;
        }
    }
    let status = match end {
        Ok(_) => jail.wait().await,
        Err(e) => Err(e),
    };
    // A container that ran on after its command is not removed (as klee says).
    finish_ended(engine, c, jail, started, status, None, remove && !runs_on).await
}

/// Tears the ended container's jail down and records its end (the command's exit code);
/// tells an attached caller on `socket`.
async fn finish_ended(
    engine: &Engine,
    c: &Container,
    jail: &mut Jail,
    started: i64,
    status: kleene_jail::Result<kleene_jail::ExitStatus>,
    socket: Option<UnixStream>,
    remove: bool,
) -> Result<()> {
    // Read before the group goes with the teardown.
    let oom_killed = jail
        .resource_group()
        .and_then(|g| g.usage().ok())
        .is_some_and(|u| u.oom_kills > 0);
    let teardown = jail.teardown().await;
    let exit_code = match &status {
        Ok(s) => s.shell_code(),
        Err(_) => 255,
    };
    let ended = Runtime {
        state: RunState::Exited,
        started: Some(started),
        finished: Some(now()),
        exit_code: Some(exit_code),
        error: status.err().map(|e| e.to_string()),
        oom_killed,
        ..Runtime::default()
    };
    // With `remove`, the end and the removal are recorded together, under an operation
    // of this process: from here the container is in no listing, and a kill before its
    // dataset is destroyed leaves a removal the next open finishes.
    let removal = if remove {
        let id = c.id.clone();
        let marked = engine
            .blocking(move |inner| {
                let op = crate::engine::OpLock::begin(&inner.ops_dir)?;
                let store = inner.store();
                if store.end_and_mark_removing(&id, &ended, &op.token)? {
                    return Ok(Some(op));
                }
                // Being removed by someone else already: only its end is recorded.
                store.set_runtime(&id, &ended)?;
                Ok(None)
            })
            .await;
        match marked {
            Ok(op) => op,
            Err(e) => {
                say(format_args!("kleene-monitor: container {}: {e}\n", c.name));
                None
            }
        }
    } else {
        set_runtime(engine, c, ended).await?;
        None
    };
    if removal.is_some() {
        // The caller's copies of the container's output end here, not when the dataset
        // is gone: nothing writes to them any more.
        release_output();
    }
    if let Some(socket) = socket {
        report(
            &socket,
            Outcome::Exited {
                exit_code,
                container_ended: true,
                removed: removal.is_some(),
            },
        );
    }
    if let Some(op) = removal {
        crate::failpoint("monitor-after-removal-report");
        let c = c.clone();
        let removed = engine
            .blocking(move |inner| {
                inner.destroy_dataset(&c.dataset)?;
                inner
                    .store()
                    .delete_row(crate::meta::Table::Containers, c.id.as_str())?;
                let _ = std::fs::remove_file(inner.log_path(&c.id));
                drop(op);
                Ok(())
            })
            .await;
        if let Err(e) = removed {
            say(format_args!(
                "kleene-monitor: removing container {}: {e}\n",
                c.name
            ));
        }
    }
    // Its published ports and rules go with it.
    if c.config.network != crate::model::Driver::Host {
        if let Err(e) = engine.apply_firewall().await {
            say(format_args!("kleene-monitor: container {}: {e}\n", c.name));
        }
    }
    teardown.map_err(|e| CoreError::jail(format!("tearing down container {}", c.name), e))
}

/// Writes to the monitor's stderr (an attached caller's pipe): a caller that went away is
/// no reason to fail, where `eprintln!` would panic on the closed pipe.
fn say(what: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = std::io::stderr().write_fmt(what);
}

/// Points this process' stdout and stderr at /dev/null: the caller's pipes (or terminal)
/// are then held by nothing of the container's, and its copies end.
fn release_output() {
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return;
    };
    let _ = rustix::stdio::dup2_stdout(&null);
    let _ = rustix::stdio::dup2_stderr(&null);
}

fn failed(error: &str) -> Runtime {
    Runtime {
        state: RunState::Exited,
        finished: Some(now()),
        exit_code: Some(127),
        error: Some(error.to_string()),
        ..Runtime::default()
    }
}

/// The container's jail: with `detached` its output goes to the log; otherwise to the
/// monitor's stdout and stderr, and its stdin is `stdin` (none: `/dev/null`).
fn jail_config(
    inner: &Inner,
    c: &Container,
    detached: bool,
    stdin: Option<OwnedFd>,
    network: kleene_jail::NetworkMode,
) -> Result<JailConfig> {
    let root = inner.mountpoint(&c.dataset)?;
    let run = container_run(&root, c, network);
    // Kleene's model: the container runs while its jail has processes.
    let mut cfg = run.jail_config().lifetime(kleene_jail::Lifetime::Processes);
    // WORKDIR and mount points are made and found inside the root as the jail sees it.
    let root_dir = RootDir::open(&root)?;
    if let Some(w) = &run.workdir {
        // WORKDIR is made if missing, as docker does.
        drop(root_dir.open_dir(w, Symlinks::FollowInRoot, true)?);
    }
    for m in &c.config.mounts {
        cfg = cfg.mount(container_mount(
            inner,
            &root,
            &root_dir,
            m,
            c.config.userns.is_some(),
        )?);
    }
    if detached {
        let (file, err) = open_log(inner, c)?;
        cfg = cfg
            .stdin(kleene_jail::Stdio::Null)
            .stdout(kleene_jail::Stdio::fd(file))
            .stderr(kleene_jail::Stdio::fd(err));
    } else {
        cfg = cfg.stdin(stdin.map_or(kleene_jail::Stdio::Null, kleene_jail::Stdio::fd));
    }
    Ok(cfg)
}

/// The container's command as a [`JailRun`] on `root`: its name, environment, user,
/// workdir, jail parameters and `network`.
fn container_run(root: &Path, c: &Container, network: kleene_jail::NetworkMode) -> JailRun {
    let mut run = JailRun::new(root, jail_name(&c.id), c.config.cmd.clone());
    run.hostname = c.id.to_string();
    run.network = network;
    run.params = c.config.jail_params.clone();
    run.env = c
        .config
        .env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    run.user = (!c.config.user.is_empty()).then(|| c.config.user.clone());
    // Checked when the container was made.
    run.seccomp = c.config.seccomp.profile().ok().flatten();
    run.userns = c.config.userns;
    run.workdir = (!c.config.workdir.is_empty()).then(|| c.config.workdir.clone());
    run
}

/// The bind mount of `m`, its mount point made inside the root (and a volume filled with
/// the image's content on its first mount).
fn container_mount(
    inner: &Inner,
    root: &Path,
    root_dir: &RootDir,
    m: &crate::model::MountSpec,
    c_has_userns: bool,
) -> Result<Mount> {
    // The mount point is made inside the root, its symlinks followed there: a
    // directory, or for a host file its directory (kleene-jail makes the file).
    let file = matches!(&m.source, MountSource::HostPath(p) if !Path::new(p).is_dir());
    let dir = if file {
        Path::new(&m.destination)
            .parent()
            .map_or_else(|| "/".to_string(), |p| p.to_string_lossy().into_owned())
    } else {
        m.destination.clone()
    };
    drop(root_dir.open_dir(&dir, Symlinks::FollowInRoot, true)?);
    let source = match &m.source {
        MountSource::HostPath(p) => std::path::PathBuf::from(p),
        MountSource::Volume(v) => {
            let volume = inner.volume(v)?;
            if inner.store().mark_volume_filled(v)? {
                let real = root_dir.resolve(&m.destination, Symlinks::FollowInRoot)?;
                fill_volume(&root.join(real), &volume.mountpoint)?;
            }
            volume.mountpoint
        }
    };
    let volume = matches!(m.source, MountSource::Volume(_));
    let mut mount = Mount::bind(source, &m.destination);
    if m.read_only {
        mount = mount.read_only();
    }
    if volume && c_has_userns {
        // A volume is the engine's: seen through the user namespace as the dataset is,
        // so its files keep the owners any container sees (a host directory keeps the
        // host's, which container root does not own).
        mount = mount.idmapped(true);
    }
    Ok(mount)
}

/// Opens (appending, made if missing) the container's log twice: its stdout and stderr.
fn open_log(inner: &Inner, c: &Container) -> Result<(std::fs::File, std::fs::File)> {
    let log = inner.log_path(&c.id);
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CoreError::io(format!("creating {}", dir.display()), e))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| CoreError::io(format!("opening {}", log.display()), e))?;
    let err = file
        .try_clone()
        .map_err(|e| CoreError::io(format!("opening {}", log.display()), e))?;
    Ok((file, err))
}

/// An empty volume takes the image's content at its mount point, on its first mount.
fn fill_volume(source: &Path, volume: &Path) -> Result<()> {
    let empty = std::fs::read_dir(volume)
        .map_err(|e| CoreError::io(format!("reading {}", volume.display()), e))?
        .next()
        .is_none();
    if !empty {
        return Ok(());
    }
    // `source` was resolved inside the root: no symlink on its way. Owners and modes
    // as they are in the image.
    let copy = TreeCopy {
        owner: None,
        chmod: None,
        exclude: None,
    };
    copy.contents(source, "", &tree::open_dir(volume)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn line<T: Serialize>(value: &T) -> Vec<u8> {
        serde_json::to_vec(value).unwrap()
    }

    fn request(version: &str) -> Request {
        Request {
            version: version.to_string(),
            config: Config::default(),
            container: "0123456789ab".into(),
            detached: true,
            stdin: false,
            overrides: crate::container::StartOverrides::default(),
        }
    }

    #[test]
    fn a_request_carries_the_whole_config() {
        let mut config = Config::new(kleene_zfs::DatasetName::new("tank/k").unwrap());
        config.release = Some("14.1-RELEASE".into());
        config.monitor = Some("/usr/libexec/kleene-monitor".into());
        let sent = Request {
            config,
            ..request(VERSION)
        };
        let got = read_request(&line(&sent)).unwrap();
        assert_eq!(got.config.root.as_str(), "tank/k");
        assert_eq!(got.config.release.as_deref(), Some("14.1-RELEASE"));
        assert_eq!(
            got.config.monitor.as_deref(),
            Some(Path::new("/usr/libexec/kleene-monitor"))
        );
        assert_eq!(got.container, "0123456789ab");
        // A root that is no dataset name is refused on the way in.
        let bad = String::from_utf8(line(&sent))
            .unwrap()
            .replace("tank/k", "tank//k");
        assert!(matches!(
            read_request(bad.as_bytes()),
            Err(Failure::Monitor(_))
        ));
    }

    #[test]
    fn another_version_is_refused_on_both_sides() {
        // The monitor refuses an engine of another version, whatever the rest looks like.
        let err = read_request(br#"{"version":"9.9.9","something":"new"}"#).unwrap_err();
        assert_eq!(
            err,
            Failure::Version {
                engine: "9.9.9".into(),
                monitor: VERSION.into()
            }
        );
        let err = err.into_error("web");
        assert!(matches!(err, CoreError::MonitorVersion { .. }), "{err}");
        assert!(err.to_string().contains("9.9.9"), "{err}");
        // The engine refuses the report of a monitor of another version.
        let err = read_report(br#"{"version":"0.0.1","outcome":{"started":{"pid":1,"jid":1}}}"#)
            .unwrap_err();
        assert_eq!(
            err,
            Failure::Version {
                engine: VERSION.into(),
                monitor: "0.0.1".into()
            }
        );
        assert!(matches!(read_request(b"garbage"), Err(Failure::Monitor(_))));
    }

    #[test]
    fn reports_become_typed_errors() {
        let started = Report {
            version: VERSION.into(),
            outcome: Outcome::Started { pid: 42, jid: 7 },
        };
        assert_eq!(read_report(&line(&started)).unwrap(), (42, 7));
        let failed = Report {
            version: VERSION.into(),
            outcome: Outcome::Failed(Failure::Start("exec /bin/nosuch: not found".into())),
        };
        let err = read_report(&line(&failed)).unwrap_err().into_error("web");
        assert!(
            matches!(&err, CoreError::StartFailed { container, reason }
                if container == "web" && reason.contains("/bin/nosuch")),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "container web could not start: exec /bin/nosuch: not found"
        );
    }
}
