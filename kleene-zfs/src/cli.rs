//! The zfs(8) backend: typed argv in, `-H` parseable output out, no shell anywhere.
//!
//! One code path serves OpenZFS (FreeBSD and Linux) and zfs-fuse. Where they differ the
//! backend learns which it talks to once, lazily, and adapts:
//!
//! | what | OpenZFS | zfs-fuse (pool v23) |
//! | --- | --- | --- |
//! | several snapshots in one call | `zfs snapshot a@s b@s` | `zfs snapshot -r a@s` when that is the same set |
//! | the `clones` property | read | derived from every dataset's `origin` |
//! | mount after create, clone, receive | automatic | `zfs mount` |
//!
//! Listings use `zfs get -Hp` on both: it has `-p` (exact numbers) where zfs-fuse's
//! `zfs list` has not.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::backend::{Backend, Depth, Entry, Kind, Result};
use crate::error::{classify, describe_status, Argv, ZfsError};
use crate::name::{DatasetName, SnapshotName};
use crate::process::{self, Deadlines};
use crate::property::Properties;

/// Which zfs(8) the backend talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenZFS (FreeBSD, Linux): every feature this crate uses.
    OpenZfs,
    /// zfs-fuse: no multi-snapshot, no `clones`, no automount, no `list -p`.
    ZfsFuse,
}

/// The zfs(8) backend.
#[derive(Debug)]
pub struct Cli {
    zfs: PathBuf,
    dialect: OnceLock<Dialect>,
    deadlines: Deadlines,
    turn_file: PathBuf,
}

/// The zfs-fuse daemon's control socket.
const ZFS_FUSE_SOCKET: &str = "/var/run/zfs/zfs_socket";

/// Whether a thread of this process holds the turn to change zfs-fuse datasets.
static TURN_TAKEN: Mutex<bool> = Mutex::new(false);
/// Signalled when the turn is given back.
static TURN_FREED: Condvar = Condvar::new();

/// Where processes take turns changing zfs-fuse datasets.
const ZFS_FUSE_LOCK: &str = "/run/kleene-zfs-fuse.lock";

fn default_turn_file() -> PathBuf {
    if Path::new("/run").is_dir() {
        PathBuf::from(ZFS_FUSE_LOCK)
    } else {
        std::env::temp_dir().join("kleene-zfs-fuse.lock")
    }
}

/// This process's turn, given back on drop.
struct Turn;

impl Drop for Turn {
    fn drop(&mut self) {
        *TURN_TAKEN.lock().unwrap_or_else(PoisonError::into_inner) = false;
        TURN_FREED.notify_one();
    }
}

/// zfs-fuse deadlocks when several commands that mount or unmount run at once: seen with
/// eight concurrent clones from one process, and with two processes each creating
/// datasets; every later command hung in the kernel until the daemon was killed. So its
/// changes run one at a time on the host: a turn among this process's threads, then an
/// flock(2) among processes (released by the kernel if a holder dies). OpenZFS runs them
/// concurrently.
///
/// Waiting for the turn is bounded: a command that hangs in a wedged daemon must not make
/// every other one wait forever (it is killed at its own deadline, and then gives the
/// turn back).
struct ChangeLock {
    // Dropped in this order: the flock first, then this process's turn.
    _file: Option<File>,
    _turn: Turn,
}

impl ChangeLock {
    /// Takes the turn, or `None` when it did not come by `deadline`.
    fn acquire(path: &Path, deadline: Instant) -> Option<Self> {
        let mut taken = TURN_TAKEN.lock().unwrap_or_else(PoisonError::into_inner);
        while *taken {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            taken = TURN_FREED
                .wait_timeout(taken, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *taken = true;
        drop(taken);
        let turn = Turn;
        let file = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
        {
            Ok(f) => match f.try_lock() {
                Ok(()) => Some(f),
                Err(TryLockError::WouldBlock) => Some(Self::wait_for_flock(f, deadline)?),
                Err(TryLockError::Error(e)) => {
                    log::warn!(
                        "cannot lock {}: {e}; serializing within this process only",
                        path.display()
                    );
                    None
                }
            },
            Err(e) => {
                // Without the file, threads of this process still take turns.
                log::warn!(
                    "cannot open {}: {e}; serializing within this process only",
                    path.display()
                );
                None
            }
        };
        Some(Self {
            _file: file,
            _turn: turn,
        })
    }

    /// Another process holds the flock: wait for it on a thread, up to `deadline`. A
    /// thread that gets the lock after its caller gave up drops it at once.
    fn wait_for_flock(file: File, deadline: Instant) -> Option<File> {
        let (tx, rx) = mpsc::channel();
        let spawned = thread::Builder::new()
            .name("zfs-fuse-turn".to_string())
            .spawn(move || {
                let locked = file.lock().map(|()| file);
                // If the caller gave up, the file (and its lock) is dropped here.
                let _ = tx.send(locked);
            });
        if let Err(e) = spawned {
            log::warn!("cannot wait for the zfs-fuse turn: {e}");
            return None;
        }
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(f)) => Some(f),
            Ok(Err(e)) => {
                log::warn!("cannot lock the zfs-fuse turn: {e}");
                None
            }
            Err(_) => None,
        }
    }
}

/// Whether a zfs(8) command changes datasets (rather than reading them): these take turns
/// on zfs-fuse.
fn is_change(args: &[String]) -> bool {
    matches!(
        args.first().map(String::as_str),
        Some(
            "create"
                | "clone"
                | "destroy"
                | "snapshot"
                | "rename"
                | "rollback"
                | "promote"
                | "mount"
                | "unmount"
                | "umount"
                | "set"
                | "inherit"
        )
    )
}

impl Default for Cli {
    fn default() -> Self {
        Self::new()
    }
}

impl Cli {
    /// Uses `zfs` from `PATH`.
    pub fn new() -> Self {
        Self::with_program("zfs")
    }

    /// Uses the given zfs(8) binary.
    pub fn with_program(zfs: impl Into<PathBuf>) -> Self {
        Self {
            zfs: zfs.into(),
            dialect: OnceLock::new(),
            deadlines: Deadlines::default(),
            turn_file: default_turn_file(),
        }
    }

    /// Sets how long each zfs(8) process may take before it is killed and
    /// [`ZfsError::Timeout`] returned (default: [`Deadlines::default`]).
    pub fn with_deadlines(mut self, deadlines: Deadlines) -> Self {
        self.deadlines = deadlines;
        self
    }

    /// How long each zfs(8) process may take.
    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// Talks to zfs(8) as `dialect` without finding out (see [`Cli::dialect`]).
    pub fn with_dialect(self, dialect: Dialect) -> Self {
        Self {
            dialect: OnceLock::from(dialect),
            ..self
        }
    }

    /// Takes the zfs-fuse turn with the flock of `path` instead of
    /// `/run/kleene-zfs-fuse.lock`: for tests that must not wait for other processes.
    #[cfg(test)]
    pub(crate) fn with_turn_file(self, path: impl Into<PathBuf>) -> Self {
        Self {
            turn_file: path.into(),
            ..self
        }
    }

    /// The deadline of a command: changes (and receive) get [`Deadlines::change`].
    fn deadline_of(&self, args: &[String]) -> Duration {
        if is_change(args) || args.first().map(String::as_str) == Some("receive") {
            self.deadlines.change
        } else {
            self.deadlines.read
        }
    }

    /// The zfs(8) this backend runs.
    pub fn program(&self) -> &Path {
        &self.zfs
    }

    /// Which zfs(8) this is, asked once: zfs-fuse's `zfs list` has no `-p`.
    pub fn dialect(&self) -> Dialect {
        *self.dialect.get_or_init(|| {
            // Without running anything when the host tells: OpenZFS (Linux and FreeBSD)
            // has /dev/zfs, which zfs-fuse lacks; zfs-fuse's daemon listens on its socket.
            if Path::new("/dev/zfs").exists() {
                return Dialect::OpenZfs;
            }
            if Path::new(ZFS_FUSE_SOCKET).exists() {
                log::info!("{ZFS_FUSE_SOCKET} exists: using the zfs-fuse dialect");
                return Dialect::ZfsFuse;
            }
            let args: Vec<String> = ["list", "-H", "-p", "-o", "name", "-d", "0"]
                .map(String::from)
                .to_vec();
            let probe = self
                .spawn(&args, Stdio::null(), Stdio::null())
                .and_then(|(child, argv)| process::output(child, &argv, self.deadlines.read));
            match probe {
                Ok((_, out)) if !out.status.success() && is_usage_error(out.stderr.as_bytes()) => {
                    log::info!(
                        "zfs(8) at {} is zfs-fuse: using its dialect",
                        self.zfs.display()
                    );
                    Dialect::ZfsFuse
                }
                _ => Dialect::OpenZfs,
            }
        })
    }

    fn argv_of(&self, args: &[String]) -> Argv {
        let mut argv = vec![self.zfs.display().to_string()];
        argv.extend(args.iter().cloned());
        Argv(argv)
    }

    fn command(&self, args: &[String]) -> (Command, Argv) {
        let argv = self.argv_of(args);
        let mut cmd = Command::new(&self.zfs);
        cmd.args(args).stdin(Stdio::null()).env("LC_ALL", "C");
        (cmd, argv)
    }

    /// Runs zfs(8) with `args`; its stdout on success, a typed error naming `subject`
    /// otherwise.
    ///
    /// It may take [`Cli::deadlines`]: then it is killed and the answer is
    /// [`ZfsError::Timeout`]. On zfs-fuse a change first waits, as long, for its turn.
    pub(crate) fn run(&self, args: &[String], subject: &str) -> Result<String> {
        let limit = self.deadline_of(args);
        let _serial = if is_change(args) && self.dialect() == Dialect::ZfsFuse {
            let turn = ChangeLock::acquire(&self.turn_file, Instant::now() + limit);
            match turn {
                Some(t) => Some(t),
                None => {
                    let argv = self.argv_of(args);
                    log::warn!(
                        "{argv}: waited {} for the zfs-fuse turn (another zfs(8) command holds it)",
                        process::human(limit)
                    );
                    return Err(ZfsError::Timeout { argv, after: limit });
                }
            }
        } else {
            None
        };
        let (child, argv) = self.spawn(args, Stdio::null(), Stdio::piped())?;
        let (stdout, out) = process::output(child, &argv, limit)?;
        if out.status.success() {
            return String::from_utf8(stdout).map_err(|_| ZfsError::UnexpectedOutput {
                argv,
                detail: "output is not UTF-8".into(),
            });
        }
        Err(classify(
            &argv,
            describe_status(out.status),
            &out.stderr,
            subject,
        ))
    }

    fn spawn(&self, args: &[String], stdin: Stdio, stdout: Stdio) -> Result<(Child, Argv)> {
        let (mut cmd, argv) = self.command(args);
        log::debug!("spawning {argv}");
        let child = cmd
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ZfsError::io(format!("could not run {}", self.zfs.display()), e))?;
        Ok((child, argv))
    }

    /// Mounts `name` when this zfs(8) does not mount new filesystems by itself.
    pub(crate) fn mount_if_needed(&self, name: &DatasetName) -> Result<()> {
        if self.dialect() == Dialect::OpenZfs {
            return Ok(());
        }
        self.mount_if_unmounted(name)
    }

    /// After a receive: zfs-fuse neither mounts a received filesystem nor drops the kernel's
    /// cache of one it received into while mounted (reads show the old content until a
    /// remount), so there it is mounted afresh.
    fn refresh_after_receive(&self, target: &DatasetName) -> Result<()> {
        if self.dialect() == Dialect::OpenZfs {
            return Ok(());
        }
        if self.get(target.as_str(), &["mounted"])?.get("mounted") == Some("yes") {
            self.unmount(target, false)?;
        }
        self.mount_if_unmounted(target)
    }

    /// Mounts `name` if it is not mounted and ZFS would mount it by itself.
    pub(crate) fn mount_if_unmounted(&self, name: &DatasetName) -> Result<()> {
        // Mounted by the call that made it, as a rule: the mount table says so without a
        // zfs(8) process.
        if crate::mounts::mounted_at(name.as_str()).is_some() {
            return Ok(());
        }
        let props = self.get(
            name.as_str(),
            &["mounted", "canmount", "mountpoint", "type"],
        )?;
        let wants_mount = props.get("type") == Some("filesystem")
            && props.get("mounted") == Some("no")
            && props.get("canmount") == Some("on")
            && !matches!(props.get("mountpoint"), Some("none" | "legacy") | None);
        if wants_mount {
            self.mount(name)?;
        }
        Ok(())
    }
}

fn is_usage_error(stderr: &[u8]) -> bool {
    let s = String::from_utf8_lossy(stderr);
    s.contains("invalid option") || s.contains("too many arguments") || s.contains("usage:")
}

/// The argv of each zfs(8) call, apart so it can be tested without ZFS.
pub(crate) mod argv {
    use super::*;

    fn s(x: &str) -> String {
        x.to_string()
    }

    pub fn create(name: &DatasetName, props: &Properties) -> Vec<String> {
        let mut a = vec![s("create")];
        a.extend(props.to_option_args());
        a.push(name.to_string());
        a
    }

    pub fn snapshot(snaps: &[&str], props: &Properties, recursive: bool) -> Vec<String> {
        let mut a = vec![s("snapshot")];
        if recursive {
            a.push(s("-r"));
        }
        a.extend(props.to_option_args());
        a.extend(snaps.iter().map(|x| x.to_string()));
        a
    }

    pub fn clone(origin: &SnapshotName, target: &DatasetName, props: &Properties) -> Vec<String> {
        let mut a = vec![s("clone")];
        a.extend(props.to_option_args());
        a.push(origin.to_string());
        a.push(target.to_string());
        a
    }

    pub fn destroy(name: &str, recursive: bool) -> Vec<String> {
        let mut a = vec![s("destroy")];
        if recursive {
            a.push(s("-r"));
        }
        a.push(s(name));
        a
    }

    pub fn rename(from: &str, to: &str) -> Vec<String> {
        vec![s("rename"), s(from), s(to)]
    }

    pub fn rollback(snap: &SnapshotName, destroy_newer: bool) -> Vec<String> {
        let mut a = vec![s("rollback")];
        if destroy_newer {
            a.push(s("-r"));
        }
        a.push(snap.to_string());
        a
    }

    pub fn promote(name: &DatasetName) -> Vec<String> {
        vec![s("promote"), name.to_string()]
    }

    pub fn send(snap: &SnapshotName, from: Option<&SnapshotName>) -> Vec<String> {
        let mut a = vec![s("send")];
        if let Some(from) = from {
            a.push(s("-i"));
            a.push(from.to_string());
        }
        a.push(snap.to_string());
        a
    }

    pub fn receive(target: &DatasetName, force: bool) -> Vec<String> {
        let mut a = vec![s("receive")];
        if force {
            a.push(s("-F"));
        }
        a.push(target.to_string());
        a
    }

    /// `zfs get -Hp` of `type`, `createtxg` and `props`: works on zfs-fuse and OpenZFS.
    pub fn get(names: &[&str], props: &[&str], depth: Option<Depth>) -> Vec<String> {
        let mut a = vec![s("get"), s("-H"), s("-p")];
        match depth {
            None | Some(Depth::This) => {}
            Some(Depth::Children) => a.extend([s("-r"), s("-d"), s("1")]),
            Some(Depth::All) => a.push(s("-r")),
        }
        a.extend([s("-o"), s("name,property,value")]);
        a.push(props.join(","));
        a.extend(names.iter().map(|n| n.to_string()));
        a
    }

    pub fn set(name: &str, props: &Properties) -> Vec<String> {
        let mut a = vec![s("set")];
        a.extend(props.iter().map(|(k, v)| format!("{k}={v}")));
        a.push(s(name));
        a
    }

    pub fn inherit(name: &str, prop: &str) -> Vec<String> {
        vec![s("inherit"), s(prop), s(name)]
    }

    pub fn mount(name: &DatasetName) -> Vec<String> {
        vec![s("mount"), name.to_string()]
    }

    pub fn unmount(name: &DatasetName, force: bool) -> Vec<String> {
        let mut a = vec![s("unmount")];
        if force {
            a.push(s("-f"));
        }
        a.push(name.to_string());
        a
    }
}

/// Reads `zfs get -H -p -o name,property,value` output into rows, one per object, in the
/// order zfs(8) printed them. A value of `-` is "no value" (unset user property, no
/// origin): such properties are left out.
pub(crate) fn parse_get(argv: &Argv, out: &str) -> Result<Vec<(String, Properties)>> {
    let mut rows: Vec<(String, Properties)> = Vec::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let mut fields = line.splitn(3, '\t');
        let (Some(name), Some(prop), Some(value)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(ZfsError::UnexpectedOutput {
                argv: argv.clone(),
                detail: format!("expected name, property and value in {line:?}"),
            });
        };
        if rows.last().map(|(n, _)| n.as_str()) != Some(name) {
            rows.push((name.to_string(), Properties::new()));
        }
        if value != "-" {
            if let Some((_, props)) = rows.last_mut() {
                props.insert_unchecked(prop.to_string(), value.to_string());
            }
        }
    }
    Ok(rows)
}

/// A typed error for a process that ended badly.
fn check(finished: &process::Finished, argv: &Argv, subject: &str) -> Result<()> {
    if finished.status.success() {
        Ok(())
    } else {
        Err(classify(
            argv,
            describe_status(finished.status),
            &finished.stderr,
            subject,
        ))
    }
}

impl Backend for Cli {
    fn name(&self) -> &'static str {
        "cli"
    }

    fn create(&self, name: &DatasetName, properties: &Properties) -> Result<()> {
        self.run(&argv::create(name, properties), name.as_str())?;
        self.mount_if_needed(name)
    }

    fn snapshot(&self, snapshots: &[SnapshotName], properties: &Properties) -> Result<()> {
        let Some(first) = snapshots.first() else {
            return Ok(());
        };
        let names: Vec<&str> = snapshots.iter().map(SnapshotName::as_str).collect();
        if snapshots.len() == 1 || self.dialect() == Dialect::OpenZfs {
            return self
                .run(&argv::snapshot(&names, properties, false), first.as_str())
                .map(drop);
        }
        // zfs-fuse takes one snapshot name per call. `-r` is atomic too, and serves when the
        // set is one dataset and every filesystem below it, under one snapshot name.
        let root = snapshots
            .iter()
            .map(SnapshotName::dataset)
            .min_by_key(|d| d.as_str().len())
            .unwrap_or_else(|| first.dataset());
        let below = self.list(&root, Depth::All, &[Kind::Filesystem, Kind::Volume], &[])?;
        let mut wanted: Vec<String> = below.into_iter().map(|e| e.name).collect();
        let mut asked: Vec<String> = snapshots.iter().map(|s| s.dataset().to_string()).collect();
        wanted.sort();
        asked.sort();
        asked.dedup();
        let same_name = snapshots.iter().all(|s| s.snapshot() == first.snapshot());
        if same_name && wanted == asked && asked.len() == snapshots.len() {
            let snap = root.snapshot(first.snapshot())?;
            return self
                .run(
                    &argv::snapshot(&[snap.as_str()], properties, true),
                    snap.as_str(),
                )
                .map(drop);
        }
        Err(ZfsError::Unsupported {
            operation: "an atomic snapshot of several unrelated datasets".into(),
            backend: "cli (zfs-fuse)",
        })
    }

    fn clone_snapshot(
        &self,
        origin: &SnapshotName,
        target: &DatasetName,
        properties: &Properties,
    ) -> Result<()> {
        match self.run(&argv::clone(origin, target, properties), target.as_str()) {
            // zfs names the origin in its "does not exist" message only sometimes; when it
            // names the target, the target's parent is what is missing ("parent does not
            // exist") if the origin is there.
            Err(ZfsError::NotFound { name }) if name == target.as_str() => {
                let missing = if self.exists(origin.as_str())? {
                    name
                } else {
                    origin.to_string()
                };
                Err(ZfsError::NotFound { name: missing })
            }
            other => other,
        }?;
        self.mount_if_needed(target)
    }

    fn destroy(&self, name: &DatasetName, recursive: bool) -> Result<()> {
        self.run(&argv::destroy(name.as_str(), recursive), name.as_str())
            .map(drop)
    }

    fn destroy_snapshot(&self, name: &SnapshotName) -> Result<()> {
        self.run(&argv::destroy(name.as_str(), false), name.as_str())
            .map(drop)
    }

    fn rename(&self, from: &DatasetName, to: &DatasetName) -> Result<()> {
        if self.dialect() == Dialect::OpenZfs {
            return self
                .run(&argv::rename(from.as_str(), to.as_str()), from.as_str())
                .map(drop);
        }
        // zfs-fuse's rename unmounts by itself and then often answers "busy" for as long
        // as one retries, where an explicit unmount first succeeds; and it leaves the
        // result unmounted. So: unmount (deepest first), rename, mount what should be.
        // Each step is safe to repeat, as the caller's busy retry may.
        let below = self.list(from, Depth::All, &[Kind::Filesystem], &["mounted"])?;
        for e in below.iter().rev() {
            if e.properties.get("mounted") == Some("yes") {
                self.unmount(&DatasetName::new(e.name.as_str())?, false)?;
            }
        }
        self.run(&argv::rename(from.as_str(), to.as_str()), from.as_str())?;
        for e in self.list(to, Depth::All, &[Kind::Filesystem], &[])? {
            self.mount_if_unmounted(&DatasetName::new(e.name.as_str())?)?;
        }
        Ok(())
    }

    fn rename_snapshot(&self, from: &SnapshotName, to: &SnapshotName) -> Result<()> {
        if from.dataset() != to.dataset() {
            return Err(ZfsError::InvalidName {
                name: to.to_string(),
                reason: format!("a snapshot can only be renamed within {}", from.dataset()),
            });
        }
        self.run(&argv::rename(from.as_str(), to.as_str()), from.as_str())
            .map(drop)
    }

    fn rollback(&self, snapshot: &SnapshotName, destroy_newer: bool) -> Result<()> {
        self.run(&argv::rollback(snapshot, destroy_newer), snapshot.as_str())
            .map(drop)
    }

    fn promote(&self, clone: &DatasetName) -> Result<()> {
        self.run(&argv::promote(clone), clone.as_str()).map(drop)
    }

    fn send(
        &self,
        snapshot: &SnapshotName,
        from: Option<&SnapshotName>,
        out: &mut dyn Write,
    ) -> Result<()> {
        let (child, argv) =
            self.spawn(&argv::send(snapshot, from), Stdio::null(), Stdio::piped())?;
        let finished = process::stream_out(child, &argv, self.deadlines.read, out)?;
        check(&finished, &argv, snapshot.as_str())
    }

    fn receive(&self, target: &DatasetName, input: &mut dyn Read, force: bool) -> Result<()> {
        let (child, argv) =
            self.spawn(&argv::receive(target, force), Stdio::piped(), Stdio::null())?;
        let (finished, fed) = process::stream_in(child, &argv, self.deadlines.change, input)?;
        // A receive that stops reading (bad stream) breaks the pipe: its own error says more.
        check(&finished, &argv, target.as_str())?;
        if let Some(e) = fed {
            return Err(ZfsError::io(format!("feeding the stream to {argv}"), e));
        }
        self.refresh_after_receive(target)
    }

    fn send_receive(
        &self,
        snapshot: &SnapshotName,
        from: Option<&SnapshotName>,
        target: &DatasetName,
        force: bool,
    ) -> Result<()> {
        let (sender, send_argv) =
            self.spawn(&argv::send(snapshot, from), Stdio::null(), Stdio::piped())?;
        let (receiver, recv_argv) =
            match self.spawn(&argv::receive(target, force), Stdio::piped(), Stdio::null()) {
                Ok(r) => r,
                Err(e) => {
                    let mut sender = sender;
                    let _ = sender.kill();
                    // Killed: it exits at once unless wedged, so reap it off this thread.
                    let _ = thread::Builder::new().spawn(move || sender.wait());
                    return Err(e);
                }
            };
        let ends = process::pipe(
            sender,
            &send_argv,
            receiver,
            &recv_argv,
            self.deadlines.change,
        )?;
        // A failed send is the cause of a failed receive ("failed to read from stream").
        check(&ends.sender, &send_argv, snapshot.as_str())?;
        check(&ends.receiver, &recv_argv, target.as_str())?;
        self.refresh_after_receive(target)
    }

    fn list(
        &self,
        root: &DatasetName,
        depth: Depth,
        kinds: &[Kind],
        properties: &[&str],
    ) -> Result<Vec<Entry>> {
        let mut props = vec!["type", "createtxg"];
        props.extend(
            properties
                .iter()
                .filter(|p| !["type", "createtxg"].contains(p)),
        );
        let args = argv::get(&[root.as_str()], &props, Some(depth));
        let out = self.run(&args, root.as_str())?;
        let argv = self.argv_of(&args);
        let mut entries = Vec::new();
        for (name, mut row) in parse_get(&argv, &out)? {
            let kind = row.get("type").and_then(Kind::parse);
            let Some(kind) = kind.filter(|k| kinds.contains(k)) else {
                continue;
            };
            if !properties.contains(&"type") {
                row.remove("type");
            }
            entries.push(Entry {
                name,
                kind,
                properties: row,
            });
        }
        Ok(entries)
    }

    fn get(&self, name: &str, properties: &[&str]) -> Result<Properties> {
        if properties.is_empty() {
            return Ok(Properties::new());
        }
        let args = argv::get(&[name], properties, None);
        let out = self.run(&args, name)?;
        let argv = self.argv_of(&args);
        Ok(parse_get(&argv, &out)?
            .into_iter()
            .next()
            .map(|(_, p)| p)
            .unwrap_or_default())
    }

    fn set(&self, name: &str, properties: &Properties) -> Result<()> {
        if properties.is_empty() {
            return Ok(());
        }
        if self.dialect() == Dialect::ZfsFuse && properties.len() > 1 {
            // zfs-fuse's `zfs set` takes one property per call.
            for (k, v) in properties.iter() {
                let one = Properties::new().with(k, v)?;
                self.run(&argv::set(name, &one), name)?;
            }
            return Ok(());
        }
        self.run(&argv::set(name, properties), name).map(drop)
    }

    fn inherit(&self, name: &str, property: &str) -> Result<()> {
        self.run(&argv::inherit(name, property), name).map(drop)
    }

    fn exists(&self, name: &str) -> Result<bool> {
        match self.run(&argv::get(&[name], &["type"], None), name) {
            Ok(_) => Ok(true),
            Err(ZfsError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn mount(&self, name: &DatasetName) -> Result<()> {
        self.run(&argv::mount(name), name.as_str()).map(drop)
    }

    fn unmount(&self, name: &DatasetName, force: bool) -> Result<()> {
        self.run(&argv::unmount(name, force), name.as_str())
            .map(drop)
    }

    fn mount_table(&self) -> bool {
        true
    }

    fn clones(&self, snapshot: &SnapshotName) -> Result<Vec<DatasetName>> {
        if self.dialect() == Dialect::OpenZfs {
            let props = self.get(snapshot.as_str(), &["clones"])?;
            return props
                .get("clones")
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(DatasetName::new)
                .collect();
        }
        // zfs-fuse has no `clones` property: every clone names its origin.
        if !self.exists(snapshot.as_str())? {
            return Err(ZfsError::NotFound {
                name: snapshot.to_string(),
            });
        }
        let pool = DatasetName::new(snapshot.dataset().pool())?;
        let all = self.list(
            &pool,
            Depth::All,
            &[Kind::Filesystem, Kind::Volume],
            &["origin"],
        )?;
        all.into_iter()
            .filter(|e| e.properties.get("origin") == Some(snapshot.as_str()))
            .map(|e| DatasetName::new(e.name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn a() -> Argv {
        Argv(vec!["zfs".into(), "get".into()])
    }

    // Recorded from zfs-fuse 0.7.0 (pool v23): `zfs get -H -p -r -d 1 -o name,property,value
    // type,createtxg,origin,kleene:id,used kdev`.
    const ZFS_FUSE_GET: &str = "kdev\ttype\tfilesystem\n\
        kdev\tcreatetxg\t1\n\
        kdev\torigin\t-\n\
        kdev\tkleene:id\t-\n\
        kdev\tused\t618496\n\
        kdev/c\ttype\tfilesystem\n\
        kdev/c\tcreatetxg\t14\n\
        kdev/c\torigin\tkdev/x@s1\n\
        kdev/c\tkleene:id\tc1\n\
        kdev/c\tused\t0\n\
        kdev@s0\ttype\tsnapshot\n\
        kdev@s0\tcreatetxg\t9\n\
        kdev@s0\torigin\t-\n\
        kdev@s0\tkleene:id\t-\n\
        kdev@s0\tused\t0\n";

    // The layout of OpenZFS 2.x's `zfs get -Hp` (zfs-get(8)) for the same command, with what
    // zfs-fuse never prints: a bookmark row, and a value with spaces.
    const OPENZFS_GET: &str = "zroot/kleene\ttype\tfilesystem\n\
        zroot/kleene\tcreatetxg\t4021\n\
        zroot/kleene\tkleene:name\tweb app\n\
        zroot/kleene\tused\t1264238592\n\
        zroot/kleene@base\ttype\tsnapshot\n\
        zroot/kleene@base\tcreatetxg\t4100\n\
        zroot/kleene@base\tkleene:name\tweb app\n\
        zroot/kleene@base\tused\t0\n\
        zroot/kleene#bm\ttype\tbookmark\n\
        zroot/kleene#bm\tcreatetxg\t4100\n\
        zroot/kleene#bm\tkleene:name\t-\n\
        zroot/kleene#bm\tused\t-\n";

    #[test]
    fn parses_zfs_fuse_get_output() {
        let rows = parse_get(&a(), ZFS_FUSE_GET).unwrap();
        let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["kdev", "kdev/c", "kdev@s0"]);
        let (_, c) = &rows[1];
        assert_eq!(c.get("origin"), Some("kdev/x@s1"));
        assert_eq!(c.get("kleene:id"), Some("c1"));
        assert_eq!(c.get("createtxg"), Some("14"));
        let (_, root) = &rows[0];
        assert_eq!(root.get("origin"), None, "'-' is no value");
        assert_eq!(root.get("kleene:id"), None);
        assert_eq!(root.get("used"), Some("618496"));
    }

    #[test]
    fn parses_openzfs_get_output() {
        let rows = parse_get(&a(), OPENZFS_GET).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].1.get("kleene:name"), Some("web app"));
        assert_eq!(rows[1].1.get("type"), Some("snapshot"));
        assert_eq!(rows[2].1.get("type"), Some("bookmark"));
        assert_eq!(Kind::parse("bookmark"), None, "bookmarks are never listed");
    }

    #[test]
    fn refuses_malformed_output() {
        let err = parse_get(&a(), "kdev\ttype\n").unwrap_err();
        assert!(matches!(err, ZfsError::UnexpectedOutput { .. }), "{err}");
        assert!(parse_get(&a(), "").unwrap().is_empty());
    }

    #[test]
    fn argv_is_built_from_types() {
        let d = DatasetName::new("zroot/kleene/container/abc").unwrap();
        let s = SnapshotName::new("zroot/kleene/image/x@image").unwrap();
        let p = Properties::new().with("kleene:id", "abc").unwrap();
        assert_eq!(
            argv::clone(&s, &d, &p),
            [
                "clone",
                "-o",
                "kleene:id=abc",
                "zroot/kleene/image/x@image",
                "zroot/kleene/container/abc"
            ]
        );
        assert_eq!(
            argv::create(&d, &Properties::new()),
            ["create", "zroot/kleene/container/abc"]
        );
        assert_eq!(
            argv::snapshot(&[s.as_str()], &p, true),
            [
                "snapshot",
                "-r",
                "-o",
                "kleene:id=abc",
                "zroot/kleene/image/x@image"
            ]
        );
        assert_eq!(
            argv::destroy(d.as_str(), true),
            ["destroy", "-r", d.as_str()]
        );
        let from = SnapshotName::new("zroot/kleene/image/x@a").unwrap();
        assert_eq!(
            argv::send(&s, Some(&from)),
            [
                "send",
                "-i",
                "zroot/kleene/image/x@a",
                "zroot/kleene/image/x@image"
            ]
        );
        assert_eq!(argv::receive(&d, true), ["receive", "-F", d.as_str()]);
        assert_eq!(argv::rollback(&s, true), ["rollback", "-r", s.as_str()]);
        assert_eq!(argv::promote(&d), ["promote", d.as_str()]);
        assert_eq!(argv::unmount(&d, true), ["unmount", "-f", d.as_str()]);
        assert_eq!(argv::mount(&d), ["mount", d.as_str()]);
        assert_eq!(
            argv::inherit(d.as_str(), "kleene:x"),
            ["inherit", "kleene:x", d.as_str()]
        );
        assert_eq!(
            argv::set(d.as_str(), &p),
            ["set", "kleene:id=abc", d.as_str()]
        );
        assert_eq!(
            argv::get(&[d.as_str()], &["type", "origin"], Some(Depth::Children)),
            [
                "get",
                "-H",
                "-p",
                "-r",
                "-d",
                "1",
                "-o",
                "name,property,value",
                "type,origin",
                d.as_str()
            ]
        );
        assert_eq!(
            argv::get(&[d.as_str()], &["type"], Some(Depth::All)),
            [
                "get",
                "-H",
                "-p",
                "-r",
                "-o",
                "name,property,value",
                "type",
                d.as_str()
            ]
        );
    }

    #[test]
    fn usage_errors_mark_zfs_fuse() {
        assert!(is_usage_error(b"invalid option 'p'\nusage:\n"));
        assert!(!is_usage_error(
            b"cannot open 'x': dataset does not exist\n"
        ));
    }

    #[test]
    fn a_missing_zfs_binary_is_a_clear_error() {
        let cli = Cli::with_program("/nonexistent/zfs");
        let err = cli.exists("pool/x").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("could not run /nonexistent/zfs"),
            "{err}"
        );
    }

    /// A fake zfs(8): a shell script running `body`, ready to run. A file just written can
    /// be "text file busy" while another test thread's fork still holds it open: it is
    /// probed until it runs.
    fn fake_zfs(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("zfs");
        std::fs::write(
            &path,
            format!("#!/bin/sh\n[ \"$1\" = probe ] && exit 0\n{body}\n"),
        )
        .expect("write the fake zfs");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("make the fake zfs executable");
        for _ in 0..200 {
            match Command::new(&path).arg("probe").status() {
                Ok(_) => return path,
                // ETXTBSY, 26 on Linux and FreeBSD.
                Err(e) if e.raw_os_error() == Some(26) => thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("cannot run {}: {e}", path.display()),
            }
        }
        panic!("{} stays busy", path.display());
    }

    fn short() -> Deadlines {
        Deadlines {
            change: Duration::from_millis(300),
            read: Duration::from_millis(200),
        }
    }

    fn assert_timeout(err: ZfsError, verb: &str, after: Duration) {
        match &err {
            ZfsError::Timeout { argv, after: a } => {
                assert_eq!(argv.0.get(1).map(String::as_str), Some(verb), "{err}");
                assert_eq!(*a, after, "{err}");
            }
            other => panic!("expected a timeout of zfs {verb}, got {other:?}"),
        }
    }

    #[test]
    fn a_hung_zfs_is_killed_at_its_deadline() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pids = dir.path().join("pids");
        let fake = fake_zfs(
            dir.path(),
            &format!("echo $$ >> {}\nexec sleep 30", pids.display()),
        );
        let cli = Cli::with_program(&fake)
            .with_dialect(Dialect::OpenZfs)
            .with_deadlines(short());
        let name = DatasetName::new("pool/x").unwrap();

        let t = Instant::now();
        let err = cli.create(&name, &Properties::new()).unwrap_err();
        let took = t.elapsed();
        assert!(
            err.to_string()
                .ends_with("zfs create pool/x: no answer after 300 ms (is the ZFS daemon wedged?)"),
            "{err}"
        );
        assert_timeout(err, "create", Duration::from_millis(300));
        assert!(took < Duration::from_millis(1500), "took {took:?}");

        let t = Instant::now();
        assert_timeout(
            cli.exists("pool/x").unwrap_err(),
            "get",
            Duration::from_millis(200),
        );
        assert!(t.elapsed() < Duration::from_millis(1500));

        // Both were killed and reaped: their pids are gone.
        #[cfg(target_os = "linux")]
        {
            let text = std::fs::read_to_string(&pids).unwrap();
            for pid in text.split_whitespace() {
                let proc = Path::new("/proc").join(pid);
                let t = Instant::now();
                while proc.exists() && t.elapsed() < Duration::from_secs(3) {
                    thread::sleep(Duration::from_millis(10));
                }
                assert!(!proc.exists(), "process {pid} is still there");
            }
        }
    }

    #[test]
    fn a_child_that_keeps_the_pipes_does_not_hold_the_caller() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // sh waits for sleep, which keeps stdout and stderr open after sh is killed.
        let fake = fake_zfs(dir.path(), "sleep 3");
        let cli = Cli::with_program(&fake)
            .with_dialect(Dialect::OpenZfs)
            .with_deadlines(short());
        let t = Instant::now();
        let err = cli
            .list(
                &DatasetName::new("pool").unwrap(),
                Depth::All,
                &[Kind::Filesystem],
                &[],
            )
            .unwrap_err();
        assert_timeout(err, "get", Duration::from_millis(200));
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn streams_that_stop_moving_are_killed() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let fake = fake_zfs(dir.path(), "exec sleep 30");
        let cli = Cli::with_program(&fake)
            .with_dialect(Dialect::OpenZfs)
            .with_deadlines(short());
        let snap = SnapshotName::new("pool/a@s").unwrap();
        let target = DatasetName::new("pool/b").unwrap();

        let t = Instant::now();
        let mut sink = Vec::new();
        let err = cli.send(&snap, None, &mut sink).unwrap_err();
        assert_timeout(err, "send", Duration::from_millis(200));
        assert!(t.elapsed() < Duration::from_millis(1500));

        // A receive that never reads: more than a pipe holds.
        let t = Instant::now();
        let stream = vec![7u8; 4 << 20];
        let err = cli
            .receive(&target, &mut stream.as_slice(), false)
            .unwrap_err();
        assert_timeout(err, "receive", Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_millis(1500));

        // send | receive: both hang; the receiver is named.
        let t = Instant::now();
        let err = cli.send_receive(&snap, None, &target, false).unwrap_err();
        assert_timeout(err, "receive", Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_millis(1500));
    }

    #[test]
    fn a_stream_that_keeps_moving_is_not_cut() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // Eight chunks 120 ms apart: about 1 s in all, never 700 ms without data.
        let fake = fake_zfs(
            dir.path(),
            "case \"$1\" in\n\
             send) for i in 1 2 3 4 5 6 7 8; do echo chunk$i; sleep 0.12; done ;;\n\
             receive) exec cat >/dev/null ;;\n\
             *) exit 1 ;;\n\
             esac",
        );
        let cli = Cli::with_program(&fake)
            .with_dialect(Dialect::OpenZfs)
            .with_deadlines(Deadlines::uniform(Duration::from_millis(700)));
        let snap = SnapshotName::new("pool/a@s").unwrap();
        let mut out = Vec::new();
        cli.send(&snap, None, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 8);
        let target = DatasetName::new("pool/b").unwrap();
        let stream = vec![1u8; 1 << 20];
        cli.receive(&target, &mut stream.as_slice(), false).unwrap();
        cli.send_receive(&snap, None, &target, false).unwrap();
    }

    #[test]
    fn waiting_for_the_zfs_fuse_turn_is_bounded() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let turn_file = dir.path().join("turn.lock");
        let hung_dir = dir.path().join("hung");
        let quick_dir = dir.path().join("quick");
        std::fs::create_dir_all(&hung_dir).unwrap();
        std::fs::create_dir_all(&quick_dir).unwrap();
        let hung = fake_zfs(&hung_dir, "exec sleep 30");
        let quick = fake_zfs(&quick_dir, "exit 0");
        let name = DatasetName::new("pool/x").unwrap();

        // One thread's create hangs in the daemon, holding the turn for 1.5 s.
        let holder = Cli::with_program(&hung)
            .with_dialect(Dialect::ZfsFuse)
            .with_turn_file(&turn_file)
            .with_deadlines(Deadlines::uniform(Duration::from_millis(1500)));
        let n = name.clone();
        let hung_thread = thread::spawn(move || holder.create(&n, &Properties::new()));
        thread::sleep(Duration::from_millis(200));

        // Another waits for its turn no longer than its own deadline.
        let waiter = Cli::with_program(&quick)
            .with_dialect(Dialect::ZfsFuse)
            .with_turn_file(&turn_file)
            .with_deadlines(short());
        let t = Instant::now();
        let err = waiter.create(&name, &Properties::new()).unwrap_err();
        assert_timeout(err, "create", Duration::from_millis(300));
        assert!(
            t.elapsed() < Duration::from_millis(1000),
            "{:?}",
            t.elapsed()
        );

        // The hung one is killed at its deadline and gives the turn back.
        assert_timeout(
            hung_thread.join().unwrap().unwrap_err(),
            "create",
            Duration::from_millis(1500),
        );
        waiter.create(&name, &Properties::new()).unwrap();

        // Another process holding the flock: waited for as long, no longer.
        let other = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&turn_file)
            .unwrap();
        other.lock().unwrap();
        let t = Instant::now();
        assert_timeout(
            waiter.create(&name, &Properties::new()).unwrap_err(),
            "create",
            Duration::from_millis(300),
        );
        assert!(
            t.elapsed() < Duration::from_millis(1000),
            "{:?}",
            t.elapsed()
        );
        drop(other);
        waiter.create(&name, &Properties::new()).unwrap();
    }
}
