//! Bounded processes, and the state a test root must be in once no klee runs: after a
//! `kill -9` (of klee, a container monitor or the ZFS daemon) and the next klee's repair.
//! Shared by tests/faults.rs and tests/zfs_daemon.rs (included with `#[path]`).
//!
//! Nothing here waits on the pool without a deadline: every klee and zfs(8) run is killed
//! when it takes longer than its bound (a hang fails the test with what the process was
//! doing, it never hangs the suite), processes and mounts are found through /proc alone
//! (readlinks, mountinfo; never a stat below the pool), and the one file read in the pool,
//! the metadata, is read on a thread of its own with a deadline.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the klee command after a fault (and each check's own commands) may take.
pub const BOUND: Duration = Duration::from_secs(60);

/// How long processes get to end after their owner was killed (the kernel delivers a
/// parent-death signal at once; a jail's teardown takes a moment).
pub const PROCESS_GRACE: Duration = Duration::from_secs(5);

static SEQ: AtomicU64 = AtomicU64::new(0);

/// What a finished process printed, and how it ended.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Its stderr's last non-empty line (where a killed klee was).
    pub fn last_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} after {:.2} s\n--- stdout:\n{}--- stderr:\n{}---",
            self.status,
            self.took.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

/// A process started with its output going to files (a pipe could be held open by a
/// leaked grandchild; a file never blocks), waited for with a deadline.
#[derive(Debug)]
pub struct Bounded {
    child: Child,
    what: String,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
    status: Option<ExitStatus>,
}

impl Bounded {
    /// Starts `cmd` (stdin closed); `what` names it in messages, `logs` holds its output.
    pub fn spawn(mut cmd: Command, what: impl Into<String>, logs: &Path) -> Self {
        let what = what.into();
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let out = logs.join(format!("{n}.out"));
        let err = logs.join(format!("{n}.err"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out).expect("creating an output file"))
            .stderr(File::create(&err).expect("creating an output file"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
        Self {
            child,
            what,
            out,
            err,
            started: Instant::now(),
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What it wrote to stdout and stderr so far (klee's transcripts are on stdout).
    pub fn output_so_far(&self) -> String {
        let mut all = std::fs::read_to_string(&self.out).unwrap_or_default();
        all.push_str(&self.stderr_so_far());
        all
    }

    /// What it wrote to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether it has ended (and is reaped).
    pub fn exited(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status.is_some()
    }

    /// SIGKILL, if it still runs; whether it was still running.
    pub fn kill(&mut self) -> bool {
        if self.exited() {
            return false;
        }
        self.child.kill().expect("SIGKILL");
        true
    }

    /// Waits until it ends; panics (after killing it, with what it was doing) when that
    /// takes longer than `limit` in all.
    pub fn wait(self, limit: Duration) -> Output {
        let deadline = self.started + limit;
        self.wait_until(deadline, limit)
    }

    /// [`Bounded::wait`], with `limit` counted from now.
    pub fn wait_more(self, limit: Duration) -> Output {
        self.wait_until(Instant::now() + limit, limit)
    }

    fn wait_until(mut self, deadline: Instant, limit: Duration) -> Output {
        while !self.exited() {
            if Instant::now() > deadline {
                let doing = describe_tree(self.pid());
                let _ = self.child.kill();
                // Reaped if it can be: a process whose thread waits on a wedged FUSE
                // daemon cannot finish exiting, and waiting for it would hang the test.
                let reaped = Instant::now() + Duration::from_secs(5);
                while !self.exited() && Instant::now() < reaped {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let partial = self.output_with(self.status.unwrap_or_default());
                panic!(
                    "HANG: `{}` did not return within {} s (killed).\nIts processes: {doing}\nWhat it printed: {partial}",
                    self.what,
                    limit.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let status = self.status.expect("exited");
        self.output_with(status)
    }

    fn output_with(&self, status: ExitStatus) -> Output {
        Output {
            status,
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
            took: self.started.elapsed(),
        }
    }
}

/// Runs `cmd` to its end within `limit` (see [`Bounded::wait`]).
pub fn run(cmd: Command, what: impl Into<String>, logs: &Path, limit: Duration) -> Output {
    Bounded::spawn(cmd, what, logs).wait(limit)
}

/// `klee --root ROOT ...` runs from a working directory outside the pool, with their
/// output kept in `logs`.
#[derive(Debug, Clone)]
pub struct Klee {
    pub root: String,
    pub logs: PathBuf,
}

impl Klee {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = crate::common::klee_process();
        cmd.arg("--root")
            .arg(&self.root)
            .args(args)
            .current_dir(&self.logs);
        cmd
    }

    pub fn spawn(&self, args: &[&str]) -> Bounded {
        Bounded::spawn(
            self.command(args),
            format!("klee {}", args.join(" ")),
            &self.logs,
        )
    }

    /// Runs klee within [`BOUND`].
    pub fn run(&self, args: &[&str]) -> Output {
        self.spawn(args).wait(BOUND)
    }

    /// Runs klee within [`BOUND`], and panics if it fails; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.success(), "klee {args:?} failed: {out}");
        out.stdout
    }

    /// A JSON listing (`lsi`, `lsc -a`, `lsv` with `--format json`) or an inspect.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("klee {args:?}: not JSON ({e}): {out}"))
    }
}

/// Runs zfs(8) within [`BOUND`]; panics if it fails.
pub fn zfs(args: &[&str], logs: &Path) -> String {
    let mut cmd = Command::new("zfs");
    cmd.args(args);
    let out = run(cmd, format!("zfs {}", args.join(" ")), logs, BOUND);
    assert!(out.success(), "zfs {args:?} failed: {out}");
    out.stdout
}

// ---- /proc ----

/// One process, from /proc/PID/stat.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    pub comm: String,
}

fn parse_stat(pid: i32, stat: &str) -> Option<Proc> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(Proc {
        pid,
        ppid,
        state,
        comm,
    })
}

/// Every process that is not a zombie.
pub fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some(p) = parse_stat(pid, &stat) {
            if p.state != 'Z' && p.state != 'X' {
                out.push(p);
            }
        }
    }
    out
}

/// A process' arguments.
pub fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The program a process runs (`/proc/PID/exe`), " (deleted)" cut off.
pub fn exe(pid: i32) -> Option<PathBuf> {
    let l = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let s = l.to_string_lossy();
    Some(PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s)))
}

/// "running", "a zombie (ended, not reaped)" or "gone", for messages.
pub fn what_of(pid: i32) -> &'static str {
    match std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(pid, &s))
    {
        Some(p) if p.state == 'Z' => "a zombie (ended, not reaped yet)",
        Some(_) => "running",
        None => "gone",
    }
}

/// Whether a process runs (a zombie has ended).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(pid, &s))
        .is_some_and(|p| p.state != 'Z' && p.state != 'X')
}

/// A process and its descendants, one line each with state, kernel wait channel and
/// arguments: what a hung command was doing.
pub fn describe_tree(pid: i32) -> String {
    let all = processes();
    let mut lines = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        if lines.len() > 50 {
            break;
        }
        if let Some(pr) = all.iter().find(|x| x.pid == p) {
            let wchan = std::fs::read_to_string(format!("/proc/{p}/wchan")).unwrap_or_default();
            lines.push(format!(
                "\n  {} {} wchan={} {:?}",
                p,
                pr.state,
                wchan,
                cmdline(p)
            ));
        }
        todo.extend(all.iter().filter(|x| x.ppid == p).map(|x| x.pid));
    }
    lines.concat()
}

fn readlink(path: String) -> Option<String> {
    std::fs::read_link(path)
        .ok()
        .map(|l| l.to_string_lossy().into_owned())
}

fn at_or_below(path: &str, top: &str) -> bool {
    path == top
        || path
            .strip_prefix(top)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Decodes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of a mountinfo: (mount point, file system type, source).
pub fn mounts(mountinfo: &str) -> Vec<(String, String, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = unescape(left.split(' ').nth(4)?);
            let mut r = right.split(' ');
            let fstype = r.next()?.to_string();
            let source = unescape(r.next()?);
            Some((point, fstype, source))
        })
        .collect()
}

/// Why process `pid` holds something of dataset `root` (mounted at `mnt`): its working
/// directory or root directory is there (a chroot, a host process), or its root is one of
/// `root`'s datasets in a mount namespace of its own (a jail: `/proc/PID/root` then reads
/// `/`, and its mountinfo names the dataset mounted as its `/`).
pub fn holds(pid: i32, root: &str, mnt: &str, own_mntns: &str) -> Option<String> {
    if let Some(cwd) = readlink(format!("/proc/{pid}/cwd")) {
        if at_or_below(&cwd, mnt) {
            return Some(format!("its cwd is {cwd}"));
        }
    }
    let r = readlink(format!("/proc/{pid}/root"))?;
    if at_or_below(&r, mnt) {
        return Some(format!("its root is {r}"));
    }
    if r != "/" || readlink(format!("/proc/{pid}/ns/mnt")).as_deref() == Some(own_mntns) {
        return None;
    }
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    let (_, fstype, source) = mounts(&info).into_iter().rfind(|(p, _, _)| p == "/")?;
    at_or_below(&source, root).then(|| format!("its root is dataset {source} ({fstype})"))
}

// ---- the checks ----

/// What klee lists, after the checks.
#[derive(Debug, Default, Clone)]
pub struct State {
    pub images: Vec<Value>,
    pub containers: Vec<Value>,
    pub volumes: Vec<Value>,
}

impl State {
    pub fn running(&self) -> impl Iterator<Item = &Value> {
        self.containers
            .iter()
            .filter(|c| c["runtime"]["state"] == "Running")
    }
}

fn list(k: &Klee, args: &[&str]) -> Result<Vec<Value>, String> {
    let out = k.run(args);
    if !out.success() {
        return Err(format!("klee {args:?} failed: {out}"));
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("klee {args:?}: not JSON ({e}): {out}"))
}

/// The three listings; containers in state Starting are waited for (a monitor may be
/// starting one) for up to [`PROCESS_GRACE`] and reported if they stay so.
fn listings(k: &Klee, problems: &mut Vec<String>) -> Option<State> {
    let deadline = Instant::now() + PROCESS_GRACE;
    loop {
        let containers = match list(k, &["lsc", "-a", "--format", "json"]) {
            Ok(c) => c,
            Err(e) => {
                problems.push(e);
                return None;
            }
        };
        let starting: Vec<&Value> = containers
            .iter()
            .filter(|c| c["runtime"]["state"] == "Starting")
            .collect();
        if !starting.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        for c in starting {
            problems.push(format!(
                "container {} is stuck in state Starting ({}s after its klee ended): runtime {}",
                c["id"],
                PROCESS_GRACE.as_secs(),
                c["runtime"]
            ));
        }
        // A container shown running must have a monitor that lives; a zombie has ended.
        // One whose monitor had ended before a second listing, which still shows it
        // running, is a ghost (the first listing may have come just before an end).
        let running_on = |c: &Value| {
            (c["runtime"]["state"] == "Running")
                .then(|| c["runtime"]["monitor_pid"].as_i64().unwrap_or(0))
        };
        let ended: BTreeSet<i64> = containers
            .iter()
            .filter_map(running_on)
            .filter(|&m| !alive(m as i32))
            .collect();
        let ghost = |c: &Value| running_on(c).is_some_and(|m| ended.contains(&m));
        if !ended.is_empty() {
            let again = match list(k, &["lsc", "-a", "--format", "json"]) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(e);
                    return None;
                }
            };
            for c in again.iter().filter(|c| ghost(c)) {
                let m = c["runtime"]["monitor_pid"].as_i64().unwrap_or(0) as i32;
                let p = c["runtime"]["pid"].as_i64().unwrap_or(0) as i32;
                problems.push(format!(
                    "container {} is shown running, but its monitor {m} is {} and its process {p} is {}: runtime {}",
                    c["id"],
                    what_of(m),
                    what_of(p),
                    c["runtime"]
                ));
            }
        }
        let images = list(k, &["lsi", "--format", "json"]);
        let volumes = list(k, &["lsv", "--format", "json"]);
        match (images, volumes) {
            (Ok(images), Ok(volumes)) => {
                return Some(State {
                    images,
                    containers,
                    volumes,
                })
            }
            (i, v) => {
                problems.extend(i.err());
                problems.extend(v.err());
                return None;
            }
        }
    }
}

/// Runs `f` on a thread of its own; `None` if it does not finish within `limit` (the
/// thread is left behind: a file system that does not answer cannot be interrupted).
pub fn with_deadline<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// Rows of the metadata that are not `ready` (an operation that did not finish), read
/// from `<root mountpoint>/metadata.sqlite` without writing anything; each with whether
/// its operation still runs (a live process holds its lock in `ops`).
fn unfinished_rows(metadata: PathBuf, ops: &Path) -> Result<Vec<(String, bool)>, String> {
    use rusqlite::{Connection, OpenFlags};
    let conn = Connection::open_with_flags(
        &metadata,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("opening {} read-only: {e}", metadata.display()))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for (table, key) in [("images", "id"), ("containers", "id"), ("volumes", "name")] {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {key}, state, coalesce(op, ''), dataset FROM {table} WHERE state != 'ready'"
            ))
            .map_err(|e| format!("reading {table}: {e}"))?;
        let found = stmt
            .query_map([], |r| {
                let op = r.get::<_, String>(2)?;
                let running = op_running(ops, &op);
                Ok((
                    format!(
                        "{table} row {} is {:?} (op {op:?}{}, dataset {})",
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        if running { ", still running" } else { "" },
                        r.get::<_, String>(3)?
                    ),
                    running,
                ))
            })
            .and_then(|m| m.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| format!("reading {table}: {e}"))?;
        rows.extend(found);
    }
    Ok(rows)
}

/// Whether operation `op` runs: a process holds the lock of `<ops>/<op>.lock`.
fn op_running(ops: &Path, op: &str) -> bool {
    !op.is_empty()
        && File::options()
            .read(true)
            .write(true)
            .open(ops.join(format!("{op}.lock")))
            .is_ok_and(|f| f.try_lock().is_err())
}

/// Lock files in `<root mountpoint>/ops` that no process holds: operations that ended
/// without removing theirs (each operation holds one while it runs).
pub fn stale_locks(ops: PathBuf) -> Result<Vec<String>, String> {
    let entries = std::fs::read_dir(&ops).map_err(|e| format!("reading {}: {e}", ops.display()))?;
    let mut stale = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let Ok(f) = File::options().read(true).write(true).open(&path) else {
            continue; // removed meanwhile
        };
        if f.try_lock().is_ok() {
            stale.push(format!(
                "stale operation lock {} (no process holds it)",
                path.display()
            ));
        }
    }
    Ok(stale)
}

/// A file below `mnt` that process `pid` has open (`/proc/PID/fd` links: the host's
/// paths, whatever namespace opened them).
fn open_below(pid: i32, mnt: &str) -> Option<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .find(|l| at_or_below(l, mnt))
}

/// Whether a process is a container monitor: klee (or a program embedding kleene-core)
/// run again as `PROGRAM kleene-monitor ...`, or the former `kleene-monitor` binary.
pub fn is_monitor(pid: i32) -> bool {
    cmdline(pid).get(1).is_some_and(|a| a == "kleene-monitor")
        || exe(pid).is_some_and(|e| e.file_name().is_some_and(|n| n == "kleene-monitor"))
}

/// The processes that hold something of `root` (mounted at `mnt`: their root or working
/// directory there, or a file there open) and are neither a running container's (its
/// first process and that one's descendants) nor the monitor of a running or starting
/// container.
pub fn stray_processes(root: &str, mnt: &str, state: &State) -> Vec<String> {
    let own_ns = readlink("/proc/self/ns/mnt".into()).unwrap_or_default();
    let me = std::process::id() as i32;
    let all = processes();
    let parent: HashMap<i32, i32> = all.iter().map(|p| (p.pid, p.ppid)).collect();
    let containers: BTreeSet<i64> = state
        .running()
        .filter_map(|c| c["runtime"]["pid"].as_i64())
        .collect();
    let monitors: BTreeSet<i64> = state
        .containers
        .iter()
        .filter(|c| matches!(c["runtime"]["state"].as_str(), Some("Running" | "Starting")))
        .filter_map(|c| c["runtime"]["monitor_pid"].as_i64())
        .collect();
    let of_container = |pid: i32| {
        let mut p = pid;
        for _ in 0..64 {
            if containers.contains(&i64::from(p)) {
                return true;
            }
            match parent.get(&p) {
                Some(&pp) if pp > 1 => p = pp,
                _ => return false,
            }
        }
        false
    };
    let mut stray = Vec::new();
    for p in &all {
        if p.pid == me {
            continue;
        }
        let why = holds(p.pid, root, mnt, &own_ns)
            .or_else(|| open_below(p.pid, mnt).map(|f| format!("it has {f} open")));
        let Some(why) = why else {
            continue;
        };
        let (ok, whose) = if is_monitor(p.pid) {
            // A container's init is a copy of its monitor (the same command line).
            (
                monitors.contains(&i64::from(p.pid)) || of_container(p.pid),
                "a container monitor, of no running or starting container",
            )
        } else {
            (of_container(p.pid), "no running container's")
        };
        if !ok {
            stray.push(format!(
                "pid {} ({}, state {}, parent {}, {:?}): {why}; it is {whose}",
                p.pid,
                p.comm,
                p.state,
                p.ppid,
                cmdline(p.pid)
            ));
        }
    }
    stray
}

/// Checks that the root `k.root` is clean once no klee runs (call it after the klee
/// command that repairs): (a) every dataset below the root is the root's own
/// (`image`, `container`, `volumes`) or listed by klee, and every listed one exists;
/// (b) no process holds anything below the root but running containers, and no container
/// monitor runs but those of running containers; (c) nothing is mounted below the root
/// but the datasets, each once, at its own mount point; (d) the metadata has no row that
/// is not `ready` (one whose operation still runs gets a moment to finish), and no
/// operation's lock file is left; no container stays in state
/// Starting, and none is shown running whose monitor has ended. Returns klee's listings and
/// the problems found (empty when clean).
pub fn check(k: &Klee) -> (State, Vec<String>) {
    let mut problems = Vec::new();
    let Some(state) = listings(k, &mut problems) else {
        return (State::default(), problems);
    };
    let root = k.root.as_str();
    // (a) datasets
    let on_disk: BTreeSet<String> = zfs(
        &["list", "-H", "-o", "name", "-t", "filesystem", "-r", root],
        &k.logs,
    )
    .lines()
    .map(str::to_string)
    .collect();
    let mut known: BTreeSet<String> = [
        root.to_string(),
        format!("{root}/image"),
        format!("{root}/container"),
        format!("{root}/volumes"),
        format!("{root}/layer"),
    ]
    .into();
    // OCI layers belong to the images on them.
    for image in &state.images {
        for chain in image["config"]["layers"].as_array().into_iter().flatten() {
            if let Some(c) = chain.as_str() {
                known.insert(format!("{root}/layer/{}", c.trim_start_matches("sha256:")));
            }
        }
    }
    for (kind, v) in state
        .images
        .iter()
        .map(|v| ("image", v))
        .chain(state.containers.iter().map(|v| ("container", v)))
        .chain(state.volumes.iter().map(|v| ("volume", v)))
    {
        match v["dataset"].as_str() {
            Some(d) => {
                if !on_disk.contains(d) {
                    problems.push(format!("{kind} {v} is listed but its dataset {d} is gone"));
                }
                known.insert(d.to_string());
            }
            None => problems.push(format!("{kind} {v} names no dataset")),
        }
    }
    for d in on_disk.difference(&known) {
        problems.push(format!(
            "orphan dataset {d}: no image, container, volume or image layer has it"
        ));
    }
    // (c) mounts
    let mnt = zfs(&["get", "-H", "-o", "value", "mountpoint", root], &k.logs)
        .trim()
        .to_string();
    if !mnt.starts_with('/') {
        problems.push(format!("{root} has no mount point ({mnt:?})"));
        return (state, problems);
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("reading mountinfo");
    let mut seen = BTreeSet::new();
    for (point, fstype, source) in mounts(&info) {
        if !at_or_below(&point, &mnt) {
            continue;
        }
        let expected = source.strip_prefix(root).map(|rest| format!("{mnt}{rest}"));
        let ok = (fstype == "zfs" || fstype.starts_with("fuse.zfs"))
            && on_disk.contains(&source)
            && expected.as_deref() == Some(point.as_str());
        if !ok {
            problems.push(format!(
                "mount {point} ({fstype} {source}) is not a dataset of {root} at its own mount point"
            ));
        }
        if !seen.insert(point.clone()) {
            problems.push(format!("{point} is mounted more than once"));
        }
    }
    // (b) processes, given a moment to end
    let deadline = Instant::now() + PROCESS_GRACE;
    let mut stray = stray_processes(root, &mnt, &state);
    while !stray.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        stray = stray_processes(root, &mnt, &state);
    }
    problems.extend(stray);
    // (d) metadata rows, and the operations' lock files. A row of an operation that still
    // runs is given a moment: a running container's monitor may have begun its removal
    // (an `--rm` container that ended) after the listings above.
    let deadline = Instant::now() + PROCESS_GRACE;
    loop {
        let metadata = Path::new(&mnt).join("metadata.sqlite");
        let ops = Path::new(&mnt).join("ops");
        match with_deadline(BOUND, move || {
            let rows = unfinished_rows(metadata, &ops)?;
            Ok::<_, String>((rows, stale_locks(ops)?))
        }) {
            None => problems.push(format!(
                "HANG: reading {mnt}/metadata.sqlite and {mnt}/ops did not finish within {} s",
                BOUND.as_secs()
            )),
            Some(Err(e)) => problems.push(e),
            Some(Ok((rows, _))) if rows.iter().any(|r| r.1) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Some(Ok((rows, stale))) => {
                problems.extend(rows.into_iter().map(|r| r.0));
                problems.extend(stale);
            }
        }
        break;
    }
    (state, problems)
}

/// `klee lsi` (which opens the engine and repairs) within [`BOUND`]: the repairs it told,
/// or why it failed.
pub fn repair(k: &Klee) -> Result<Vec<String>, String> {
    let out = k.run(&["lsi"]);
    if !out.success() {
        return Err(format!("the first klee after the fault failed: {out}"));
    }
    Ok(out
        .stderr
        .lines()
        .filter(|l| l.starts_with("klee: "))
        .map(|l| l.trim_start_matches("klee: ").to_string())
        .collect())
}
