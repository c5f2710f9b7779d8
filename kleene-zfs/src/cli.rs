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

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;

use crate::backend::{Backend, Depth, Entry, Kind, Result};
use crate::error::{classify, describe_status, Argv, ZfsError};
use crate::name::{DatasetName, SnapshotName};
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
}

/// The zfs-fuse daemon's control socket.
const ZFS_FUSE_SOCKET: &str = "/var/run/zfs/zfs_socket";

/// Held while a zfs-fuse command that changes datasets runs, by one thread of a process.
static ZFS_FUSE_CHANGES: Mutex<()> = Mutex::new(());

/// Where processes take turns changing zfs-fuse datasets.
const ZFS_FUSE_LOCK: &str = "/run/kleene-zfs-fuse.lock";

/// zfs-fuse deadlocks when several commands that mount or unmount run at once: seen with
/// eight concurrent clones from one process, and with two processes each creating
/// datasets; every later command hung in the kernel until the daemon was killed. So its
/// changes run one at a time on the host: a mutex among this process's threads, then an
/// flock(2) among processes (released by the kernel if a holder dies). OpenZFS runs them
/// concurrently.
struct ChangeLock {
    _file: Option<std::fs::File>,
    _thread: std::sync::MutexGuard<'static, ()>,
}

impl ChangeLock {
    fn acquire() -> Self {
        let thread = ZFS_FUSE_CHANGES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let path = if Path::new("/run").is_dir() {
            PathBuf::from(ZFS_FUSE_LOCK)
        } else {
            std::env::temp_dir().join("kleene-zfs-fuse.lock")
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .and_then(|f| f.lock().map(|()| f));
        let file = match file {
            Ok(f) => Some(f),
            Err(e) => {
                // Without the file, threads of this process still take turns.
                log::warn!(
                    "cannot lock {}: {e}; serializing within this process only",
                    path.display()
                );
                None
            }
        };
        Self {
            _file: file,
            _thread: thread,
        }
    }
}

/// Whether a zfs(8) command changes datasets (rather than reading them).
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
            let probe = Command::new(&self.zfs)
                .args(["list", "-H", "-p", "-o", "name", "-d", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output();
            match probe {
                Ok(out) if !out.status.success() && is_usage_error(&out.stderr) => {
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
    pub(crate) fn run(&self, args: &[String], subject: &str) -> Result<String> {
        let (mut cmd, argv) = self.command(args);
        log::debug!("running {argv}");
        let _serial =
            (is_change(args) && self.dialect() == Dialect::ZfsFuse).then(ChangeLock::acquire);
        let out = cmd
            .output()
            .map_err(|e| ZfsError::io(format!("could not run {}", self.zfs.display()), e))?;
        if out.status.success() {
            return String::from_utf8(out.stdout).map_err(|_| ZfsError::UnexpectedOutput {
                argv,
                detail: "output is not UTF-8".into(),
            });
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(classify(
            &argv,
            describe_status(out.status),
            &stderr,
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

/// Drains a child's stderr on a thread so that a chatty child never blocks on a full pipe.
fn drain_stderr(child: &mut Child) -> thread::JoinHandle<String> {
    let stderr = child.stderr.take();
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut text);
        }
        text
    })
}

fn finish(
    mut child: Child,
    argv: &Argv,
    stderr: thread::JoinHandle<String>,
    subject: &str,
) -> Result<()> {
    let status = child
        .wait()
        .map_err(|e| ZfsError::io(format!("waiting for {argv}"), e))?;
    let text = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(classify(argv, describe_status(status), &text, subject))
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
        let (mut child, argv) =
            self.spawn(&argv::send(snapshot, from), Stdio::null(), Stdio::piped())?;
        let stderr = drain_stderr(&mut child);
        let copied = match child.stdout.take() {
            Some(mut stdout) => std::io::copy(&mut stdout, out).map(drop),
            None => Ok(()),
        };
        if let Err(e) = copied {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ZfsError::io(format!("writing the stream of {argv}"), e));
        }
        finish(child, &argv, stderr, snapshot.as_str())
    }

    fn receive(&self, target: &DatasetName, input: &mut dyn Read, force: bool) -> Result<()> {
        let (mut child, argv) =
            self.spawn(&argv::receive(target, force), Stdio::piped(), Stdio::null())?;
        let stderr = drain_stderr(&mut child);
        let copied = match child.stdin.take() {
            Some(mut stdin) => std::io::copy(input, &mut stdin).map(drop),
            None => Ok(()),
        };
        // A receive that stops reading (bad stream) breaks the pipe: its own error says more.
        let result = finish(child, &argv, stderr, target.as_str());
        match (result, copied) {
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => Err(ZfsError::io(format!("feeding the stream to {argv}"), e)),
            (Ok(()), Ok(())) => self.refresh_after_receive(target),
        }
    }

    fn send_receive(
        &self,
        snapshot: &SnapshotName,
        from: Option<&SnapshotName>,
        target: &DatasetName,
        force: bool,
    ) -> Result<()> {
        let (mut sender, send_argv) =
            self.spawn(&argv::send(snapshot, from), Stdio::null(), Stdio::piped())?;
        let send_err = drain_stderr(&mut sender);
        let pipe = match sender.stdout.take() {
            Some(p) => Stdio::from(p),
            None => Stdio::null(),
        };
        let (mut receiver, recv_argv) =
            match self.spawn(&argv::receive(target, force), pipe, Stdio::null()) {
                Ok(r) => r,
                Err(e) => {
                    let _ = sender.kill();
                    let _ = sender.wait();
                    return Err(e);
                }
            };
        let recv_err = drain_stderr(&mut receiver);
        let received = finish(receiver, &recv_argv, recv_err, target.as_str());
        if received.is_err() {
            let _ = sender.kill();
        }
        let sent = finish(sender, &send_argv, send_err, snapshot.as_str());
        // A failed send is the cause of a failed receive ("failed to read from stream").
        sent?;
        received?;
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
}
