//! The state directory: one directory per container under the runtime's root
//! (`--root`, default [`DEFAULT_ROOT`]), holding its record (`state.json`) and, while the
//! container is created but not started, the FIFO its first process is held on
//! (`exec.fifo`).
//!
//! Every command that changes a container holds an exclusive `flock` on its directory: a
//! second runtime process racing on the same id gets [`Error::Busy`], never a half-done
//! state. `create` makes the directory with `mkdir`, so of two `create`s of one id exactly
//! one succeeds. A directory without `state.json` is a create that died half-way: it
//! counts as a stopped container that `delete` removes.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The runtime's default root (runc's is `/run/runc`).
pub const DEFAULT_ROOT: &str = "/run/kleene-runtime";

/// The name of the record in a container's directory.
const RECORD: &str = "state.json";

/// The FIFO a created container's first process waits on before its program.
pub const GATE: &str = "exec.fifo";

/// Checks a container id as runc does: no path separators, no `.`/`..`, printable.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

/// What the runtime keeps of a container between its commands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// The runtime spec version of its config.json.
    pub oci_version: String,
    pub id: String,
    /// The bundle directory (absolute).
    pub bundle: PathBuf,
    /// Its root filesystem (absolute).
    pub rootfs: PathBuf,
    /// The first process, as the host sees it.
    pub pid: i32,
    /// The first process's start time (field 22 of /proc/PID/stat on Linux, `ki_start` in
    /// microseconds on FreeBSD): a pid the kernel gave to another process since is not
    /// taken for the container's.
    pub pid_start: u64,
    /// RFC 3339, UTC.
    pub created: String,
    pub annotations: std::collections::BTreeMap<String, String>,
    /// The hooks of config.json that run after `create` (poststart, poststop), kept as the
    /// spec's JSON.
    #[serde(default)]
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// The first process of config.json: `exec` without `--process` starts its processes
    /// with its capabilities, rlimits and settings, as runc does.
    #[serde(default)]
    pub process: Option<oci_spec::runtime::Process>,
    /// Its cgroup ([`kleene_jail::ResourceGroup::locator`]), removed by `delete`.
    #[serde(default)]
    pub resource_group: Option<String>,
    /// config.json's `linux.seccomp`: the processes of `exec` get the same filter.
    #[serde(default)]
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// FreeBSD: the container's jail id (`exec` attaches to it); unset on Linux.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jid: Option<i32>,
}

/// The status of a container, as the runtime spec names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Being created (another runtime process holds its lock in `create`).
    Creating,
    /// Set up, its first process held before the user's program.
    Created,
    /// The user's program runs.
    Running,
    /// Its processes are frozen (`pause`).
    Paused,
    /// Its first process has ended (or never was).
    Stopped,
}

impl Status {
    /// The spec's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// The runtime's root directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A container's directory, locked for as long as this lives.
#[derive(Debug)]
pub struct Locked {
    pub id: String,
    pub dir: PathBuf,
    _lock: File,
}

impl Store {
    /// The store at `root`, made (mode 0700) when missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|e| Error::io(format!("making the runtime root {}", root.display()), e))?;
        Ok(Store { root })
    }

    /// The directory of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Makes the directory of a new container and locks it: [`Error::Exists`] when the
    /// id is taken, even by a create running now.
    pub fn create(&self, id: &str) -> Result<Locked> {
        check_id(id)?;
        let dir = self.dir(id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.to_string()))
            }
            Err(e) => return Err(Error::io(format!("making {}", dir.display()), e)),
        }
        lock(id, dir)
    }

    /// Locks the directory of an existing container.
    pub fn lock(&self, id: &str) -> Result<Locked> {
        check_id(id)?;
        let dir = self.dir(id);
        if !dir.is_dir() {
            return Err(Error::NotFound(id.to_string()));
        }
        lock(id, dir)
    }

    /// The record of container `id` (without locking: readers see a whole record, as it
    /// is replaced by rename). `None` for a create that has not finished, or died.
    pub fn record(&self, id: &str) -> Result<Option<Record>> {
        check_id(id)?;
        let dir = self.dir(id);
        if !dir.is_dir() {
            return Err(Error::NotFound(id.to_string()));
        }
        read_record(&dir)
    }

    /// The ids of every container in the store, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = fs::read_dir(&self.root)
            .map_err(|e| Error::io(format!("reading {}", self.root.display()), e))?;
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| check_id(id).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The status of a container from its record, or [`Status::Creating`] when a create
    /// holds it and has no record yet.
    pub fn status(&self, id: &str, record: Option<&Record>) -> Status {
        match record {
            None if is_locked(&self.dir(id)) => Status::Creating,
            None => Status::Stopped,
            Some(r) => status_of(&self.dir(id), r),
        }
    }
}

impl Locked {
    /// Writes the record, atomically (a temporary file renamed over it).
    pub fn write(&self, record: &Record) -> Result<()> {
        let tmp = self.dir.join(".state.json.tmp");
        let text = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::io("serializing the state", std::io::Error::other(e)))?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        fs::rename(&tmp, self.dir.join(RECORD))
            .map_err(|e| Error::io(format!("writing the state of {}", self.id), e))
    }

    /// The record, if the create finished.
    pub fn record(&self) -> Result<Option<Record>> {
        read_record(&self.dir)
    }

    /// Removes the container's directory (the lock goes with it).
    pub fn remove(self) -> Result<()> {
        fs::remove_dir_all(&self.dir)
            .map_err(|e| Error::io(format!("removing {}", self.dir.display()), e))
    }
}

fn lock(id: &str, dir: PathBuf) -> Result<Locked> {
    let f = File::open(&dir).map_err(|e| Error::io(format!("opening {}", dir.display()), e))?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Locked {
            id: id.to_string(),
            dir,
            _lock: f,
        }),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Busy(id.to_string())),
        Err(e) => Err(Error::io(format!("locking {}", dir.display()), e.into())),
    }
}

fn is_locked(dir: &Path) -> bool {
    let Ok(f) = File::open(dir) else {
        return false;
    };
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) => false,
        Err(e) => e == rustix::io::Errno::WOULDBLOCK,
    }
}

fn read_record(dir: &Path) -> Result<Option<Record>> {
    let path = dir.join(RECORD);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Config {
                path,
                reason: format!("a damaged state record: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// A process's start time and state letter: from `/proc/PID/stat` (on FreeBSD from
/// `kern.proc.pid`, [`crate::freebsd::start_time`] and [`crate::freebsd::state_letter`]).
pub fn proc_stat(pid: i32) -> Option<(u64, u8)> {
    #[cfg(target_os = "freebsd")]
    {
        crate::freebsd_sys::proc_stat(pid)
    }
    #[cfg(not(target_os = "freebsd"))]
    {
        let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&stat)
    }
}

/// Field 3 (state) and field 22 (starttime) of a `/proc/PID/stat` line; the command
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat(stat: &[u8]) -> Option<(u64, u8)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.bytes().next()?;
    // After the state (field 3), starttime is field 22: 18 fields further.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state))
}

/// Whether the record's process is the one alive now (not a zombie, not a reused pid).
pub fn alive(record: &Record) -> bool {
    matches!(proc_stat(record.pid), Some((start, state)) if start == record.pid_start && state != b'Z' && state != b'X')
}

fn status_of(dir: &Path, record: &Record) -> Status {
    if !alive(record) {
        Status::Stopped
    } else if dir.join(GATE).exists() {
        Status::Created
    } else if record
        .resource_group
        .as_deref()
        .and_then(|l| kleene_jail::ResourceGroup::from_locator(l).ok())
        .is_some_and(|g| g.is_frozen())
    {
        Status::Paused
    } else {
        Status::Running
    }
}

/// The spec's state of a container, as `state` prints it and hooks read it on stdin.
pub fn oci_state(id: &str, status: Status, record: Option<&Record>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "ociVersion": record.map_or("1.0.2", |r| r.oci_version.as_str()),
        "id": id,
        "status": status.as_str(),
    });
    if let Some(r) = record {
        if status != Status::Stopped {
            v["pid"] = r.pid.into();
        }
        v["bundle"] = r.bundle.display().to_string().into();
        v["rootfs"] = r.rootfs.display().to_string().into();
        v["created"] = r.created.clone().into();
        if !r.annotations.is_empty() {
            v["annotations"] = serde_json::to_value(&r.annotations).unwrap_or_default();
        }
    }
    v
}

/// Now, as RFC 3339 in UTC with nanoseconds (as runc prints `created`).
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

/// Seconds since the epoch as RFC 3339 UTC (civil-from-days, Howard Hinnant's method).
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_as_runc_checks_them() {
        for ok in ["a", "web-1", "pod_x.y+z", "0123456789abcdef"] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "tab\t", "é"] {
            assert!(matches!(check_id(bad), Err(Error::InvalidId(_))), "{bad:?}");
        }
    }

    #[test]
    fn stat_fields_after_a_command_with_parentheses() {
        let line = b"1234 (a (weird) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(parse_stat(line), Some((987_654, b'S')));
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_796_256_000, 0), "2026-12-03T00:00:00.000000000Z");
    }

    fn record(id: &str, pid: i32, pid_start: u64) -> Record {
        Record {
            oci_version: "1.0.2".into(),
            id: id.into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            pid,
            pid_start,
            created: now_rfc3339(),
            annotations: Default::default(),
            hooks: None,
            process: None,
            resource_group: None,
            seccomp: None,
            jid: None,
        }
    }

    #[test]
    fn create_is_exclusive_and_locks() {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(tmp.path().join("root")).expect("the store");
        let locked = store.create("c1").expect("the first create");
        assert!(matches!(store.create("c1"), Err(Error::Exists(_))));
        assert!(matches!(store.lock("c1"), Err(Error::Busy(_))));
        assert_eq!(store.status("c1", None), Status::Creating);
        assert!(matches!(store.lock("nosuch"), Err(Error::NotFound(_))));

        // Our own process stands in for a container's: alive, with its start time.
        let me = std::process::id() as i32;
        let (start, _) = proc_stat(me).expect("our own stat");
        locked.write(&record("c1", me, start)).expect("the record");
        let r = store.record("c1").expect("read").expect("a record");
        assert_eq!(store.status("c1", Some(&r)), Status::Running);
        fs::write(locked.dir.join(GATE), b"").expect("a gate");
        assert_eq!(store.status("c1", Some(&r)), Status::Created);
        // A pid reused by another process (another start time) is not the container.
        assert_eq!(
            store.status("c1", Some(&record("c1", me, start + 1))),
            Status::Stopped
        );
        drop(locked);
        assert_eq!(store.ids().expect("ids"), ["c1"]);
        store
            .lock("c1")
            .expect("the lock again")
            .remove()
            .expect("removed");
        assert!(store.ids().expect("ids").is_empty());
    }

    #[test]
    fn the_spec_state() {
        let r = record("c", 42, 1);
        let v = oci_state("c", Status::Created, Some(&r));
        assert_eq!(v["status"], "created");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["bundle"], "/b");
        let v = oci_state("c", Status::Stopped, Some(&r));
        assert!(v.get("pid").is_none());
    }
}
