//! A ZFS made of directories, for tests without root or a pool (cargo feature `testing`).
//!
//! [`MemoryBackend`] implements [`Backend`] with the datasets in memory and their files in
//! real directories below a base directory, so that an engine built on [`crate::Zfs`] can
//! be unit-tested anywhere:
//!
//! ```
//! use kleene_zfs::{DatasetName, Properties, Zfs};
//!
//! let base = std::env::temp_dir().join(format!("kleene-zfs-doc-{}", std::process::id()));
//! let zfs = Zfs::memory(&base, "tank")?;
//! let image = DatasetName::new("tank/image")?;
//! zfs.create(&image, &Properties::new().with("kleene:id", "0123456789ab")?)?;
//! let dir = zfs.mountpoint(&image)?.expect("mounted");
//! std::fs::write(dir.join("hello"), "world").expect("a real directory");
//! let snap = image.snapshot("image")?;
//! zfs.snapshot(&snap, &Properties::new())?;
//! let container = DatasetName::new("tank/container")?;
//! zfs.clone_snapshot(&snap, &container, &Properties::new())?;
//! let copy = zfs.mountpoint(&container)?.expect("mounted");
//! assert_eq!(std::fs::read_to_string(copy.join("hello")).expect("cloned"), "world");
//! assert!(zfs.destroy_snapshot(&snap).is_err(), "a snapshot with clones stays");
//! # std::fs::remove_dir_all(&base).expect("clean up");
//! # Ok::<(), kleene_zfs::ZfsError>(())
//! ```
//!
//! Each filesystem is mounted at a real directory: `<base>/<pool>/<path>` by default,
//! inherited like ZFS's `mountpoint`. Unmounting moves its files away to
//! `<base>/.kleene-memory-zfs/`, mounting moves them back. A snapshot is a copy of the
//! files at that moment; a clone starts as a copy of its snapshot.

mod tree;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::backend::{Backend, Depth, Entry, Kind, Result};
use crate::error::{Argv, ZfsError};
use crate::name::{DatasetName, SnapshotName};
use crate::property::{check_property_name, is_user_property, Properties};

/// Where the memory backend keeps what is not mounted, below its base directory (no pool
/// name can begin with a dot).
const META_DIR: &str = ".kleene-memory-zfs";

/// What `available` says: one TiB, whatever is used.
const AVAILABLE: u64 = 1 << 40;

/// Native properties that can be set: name, default, inherited by children.
const SETTABLE: &[(&str, &str, bool)] = &[
    ("aclinherit", "restricted", true),
    ("aclmode", "discard", true),
    ("acltype", "off", true),
    ("atime", "on", true),
    ("canmount", "on", false),
    ("checksum", "on", true),
    ("compression", "off", true),
    ("copies", "1", true),
    ("dedup", "off", true),
    ("devices", "on", true),
    ("dnodesize", "legacy", true),
    ("exec", "on", true),
    ("jailed", "off", true),
    ("logbias", "latency", true),
    ("mlslabel", "none", true),
    ("mountpoint", "", true),
    ("nbmand", "off", true),
    ("overlay", "on", true),
    ("primarycache", "all", true),
    ("quota", "0", false),
    ("readonly", "off", true),
    ("recordsize", "131072", true),
    ("redundant_metadata", "all", true),
    ("refquota", "0", false),
    ("refreservation", "0", false),
    ("relatime", "off", true),
    ("reservation", "0", false),
    ("secondarycache", "all", true),
    ("setuid", "on", true),
    ("sharenfs", "off", true),
    ("sharesmb", "off", true),
    ("snapdir", "hidden", true),
    ("sync", "standard", true),
    ("vscan", "off", true),
    ("xattr", "on", true),
    ("zoned", "off", true),
];

/// Native properties that are only read.
const READ_ONLY: &[&str] = &[
    "available",
    "casesensitivity",
    "clones",
    "compressratio",
    "createtxg",
    "creation",
    "defer_destroy",
    "guid",
    "logicalreferenced",
    "logicalused",
    "mounted",
    "name",
    "normalization",
    "origin",
    "refcompressratio",
    "referenced",
    "type",
    "used",
    "usedbychildren",
    "usedbydataset",
    "usedbyrefreservation",
    "usedbysnapshots",
    "userrefs",
    "utf8only",
    "version",
    "volsize",
    "written",
];

fn settable(property: &str) -> Option<(&'static str, bool)> {
    SETTABLE
        .iter()
        .find(|(n, _, _)| *n == property)
        .map(|(_, d, i)| (*d, *i))
}

/// `userquota@alice` and its kind: set and read as they are, never inherited.
fn is_quota_property(property: &str) -> bool {
    !is_user_property(property) && property.contains('@')
}

fn is_known(property: &str) -> bool {
    is_user_property(property)
        || is_quota_property(property)
        || settable(property).is_some()
        || READ_ONLY.contains(&property)
}

/// An error as zfs(8) would report it, for the cases it reports as "command failed".
fn failed(args: &[&str], message: impl Into<String>) -> ZfsError {
    ZfsError::CommandFailed {
        argv: Argv(
            std::iter::once("zfs")
                .chain(args.iter().copied())
                .map(str::to_string)
                .collect(),
        ),
        status: "memory backend".to_string(),
        stderr: message.into(),
    }
}

fn not_found(name: impl Into<String>) -> ZfsError {
    ZfsError::NotFound { name: name.into() }
}

fn io_error(context: impl Into<String>, e: std::io::Error) -> ZfsError {
    ZfsError::io(context, e)
}

/// Whether `name` lies strictly below `parent`.
fn is_below(name: &str, parent: &str) -> bool {
    name.len() > parent.len()
        && name.starts_with(parent)
        && name.as_bytes().get(parent.len()) == Some(&b'/')
}

fn parent_of(name: &str) -> Option<&str> {
    name.rsplit_once('/').map(|(p, _)| p)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// zfs(8)'s order: by dataset name, a dataset before its snapshots, snapshots by `createtxg`.
fn zfs_order(a: &(String, u64), b: &(String, u64)) -> std::cmp::Ordering {
    let (da, sa) =
        a.0.split_once('@')
            .map_or((a.0.as_str(), None), |(d, s)| (d, Some(s)));
    let (db, sb) =
        b.0.split_once('@')
            .map_or((b.0.as_str(), None), |(d, s)| (d, Some(s)));
    da.as_bytes()
        .cmp(db.as_bytes())
        .then_with(|| match (sa, sb) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(_), Some(_)) => a.1.cmp(&b.1),
        })
}

#[derive(Debug)]
struct Snap {
    id: u64,
    name: String,
    guid: u64,
    createtxg: u64,
    creation: u64,
    local: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Fs {
    id: u64,
    guid: u64,
    createtxg: u64,
    creation: u64,
    local: BTreeMap<String, String>,
    /// Where its files are while it is mounted.
    mounted: Option<PathBuf>,
    /// The id of the snapshot it was cloned from.
    origin: Option<u64>,
    /// Oldest first.
    snapshots: Vec<Snap>,
}

/// Everything, behind the backend's mutex.
#[derive(Debug)]
struct Inner {
    base: PathBuf,
    meta: PathBuf,
    next_id: u64,
    txg: u64,
    seed: u64,
    datasets: BTreeMap<String, Fs>,
}

/// A ZFS of directories: every [`Backend`] operation, errors included, as zfs(8) on
/// OpenZFS does it, for tests without root or a pool (cargo feature `testing`).
///
/// Datasets live in memory; files live in real directories below `base_dir`. Thread-safe:
/// one mutex serializes every operation. See the [module documentation](self) for what it
/// does and the crate's README for what it does not model.
#[derive(Debug)]
pub struct MemoryBackend {
    base: PathBuf,
    inner: Mutex<Inner>,
}

impl MemoryBackend {
    /// A backend with no pools yet, keeping its files below `base_dir` (made when needed).
    /// A relative `base_dir` is made absolute: mountpoints are absolute paths.
    ///
    /// Datasets live in this value only: give each backend a fresh directory (a temporary
    /// one). A pool cannot be added where files of an earlier backend are left, as its
    /// mountpoint is not empty.
    pub fn new(base_dir: impl Into<PathBuf>) -> Self {
        let base = base_dir.into();
        let base = std::path::absolute(&base).unwrap_or(base);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(32);
        Self {
            inner: Mutex::new(Inner {
                meta: base.join(META_DIR),
                base: base.clone(),
                next_id: 1,
                txg: 1,
                seed,
                datasets: BTreeMap::new(),
            }),
            base,
        }
    }

    /// Builder form of [`MemoryBackend::add_pool`].
    pub fn with_pool(self, pool: &str) -> Result<Self> {
        self.add_pool(pool)?;
        Ok(self)
    }

    /// Makes a pool, as `zpool create` would: its root filesystem, mounted at
    /// `<base_dir>/<pool>`. A pool that is there already is [`ZfsError::AlreadyExists`].
    pub fn add_pool(&self, pool: &str) -> Result<DatasetName> {
        let name = DatasetName::new(pool)?;
        if name.parent().is_some() {
            return Err(ZfsError::InvalidName {
                name: pool.to_string(),
                reason: "a pool name may not contain '/'".to_string(),
            });
        }
        let mut inner = self.lock();
        if inner.datasets.contains_key(pool) {
            return Err(ZfsError::AlreadyExists {
                name: pool.to_string(),
            });
        }
        inner.new_fs(pool, BTreeMap::new(), None, None)?;
        if let Err(e) = inner.mount_if_wanted(pool) {
            if let Some(fs) = inner.datasets.remove(pool) {
                let _ = tree::remove(&inner.store_dir(fs.id));
            }
            return Err(e);
        }
        Ok(name)
    }

    /// The directory everything lives below.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every operation leaves the maps consistent before it can fail or panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn guid(&self, id: u64) -> u64 {
        (id ^ self.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
    }

    fn next_txg(&mut self) -> u64 {
        self.txg += 1;
        self.txg
    }

    fn store_dir(&self, id: u64) -> PathBuf {
        self.meta.join("fs").join(id.to_string())
    }

    fn snap_dir(&self, id: u64) -> PathBuf {
        self.meta.join("snap").join(id.to_string())
    }

    fn fs(&self, name: &str) -> Result<&Fs> {
        self.datasets.get(name).ok_or_else(|| not_found(name))
    }

    fn fs_mut(&mut self, name: &str) -> Result<&mut Fs> {
        self.datasets.get_mut(name).ok_or_else(|| not_found(name))
    }

    fn snap(&self, snapshot: &SnapshotName) -> Result<&Snap> {
        self.datasets
            .get(snapshot.dataset().as_str())
            .and_then(|fs| fs.snapshots.iter().find(|s| s.name == snapshot.snapshot()))
            .ok_or_else(|| not_found(snapshot.as_str()))
    }

    fn snap_name(&self, id: u64) -> Option<String> {
        self.datasets.iter().find_map(|(name, fs)| {
            fs.snapshots
                .iter()
                .find(|s| s.id == id)
                .map(|s| format!("{name}@{}", s.name))
        })
    }

    fn clones_of(&self, snap_id: u64) -> Vec<String> {
        self.datasets
            .iter()
            .filter(|(_, fs)| fs.origin == Some(snap_id))
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn descendants(&self, name: &str) -> Vec<String> {
        self.datasets
            .keys()
            .filter(|n| is_below(n, name))
            .cloned()
            .collect()
    }

    /// Where the files of a filesystem are now.
    fn data_dir(&self, fs: &Fs) -> PathBuf {
        fs.mounted.clone().unwrap_or_else(|| self.store_dir(fs.id))
    }

    /// The mountpoints of mounted filesystems strictly inside `dir`.
    fn mounts_inside(&self, dir: &Path) -> Vec<PathBuf> {
        self.datasets
            .values()
            .filter_map(|fs| fs.mounted.clone())
            .filter(|m| m != dir && m.starts_with(dir))
            .collect()
    }

    /// The directories a copy of `fs`'s files leaves empty: other filesystems mounted in it.
    fn skip_for(&self, fs: &Fs) -> Vec<PathBuf> {
        match &fs.mounted {
            Some(m) => self.mounts_inside(m),
            None => Vec::new(),
        }
    }

    fn new_fs(
        &mut self,
        name: &str,
        local: BTreeMap<String, String>,
        origin: Option<u64>,
        content: Option<&Path>,
    ) -> Result<()> {
        let id = self.id();
        let dir = self.store_dir(id);
        match content {
            Some(src) => tree::copy(src, &dir, &[]),
            None => std::fs::create_dir_all(&dir),
        }
        .map_err(|e| {
            io_error(
                format!("making the files of {name} in {}", dir.display()),
                e,
            )
        })?;
        let createtxg = self.next_txg();
        let fs = Fs {
            id,
            guid: self.guid(id),
            createtxg,
            creation: now(),
            local,
            mounted: None,
            origin,
            snapshots: Vec::new(),
        };
        self.datasets.insert(name.to_string(), fs);
        Ok(())
    }

    // ---- properties ----

    fn mountpoint_of(&self, name: &str) -> String {
        if let Some(v) = self
            .datasets
            .get(name)
            .and_then(|f| f.local.get("mountpoint"))
        {
            return v.clone();
        }
        match name.rsplit_once('/') {
            None => self.base.join(name).display().to_string(),
            Some((parent, base)) => {
                let inherited = self.mountpoint_of(parent);
                if inherited.starts_with('/') {
                    format!("{}/{base}", inherited.trim_end_matches('/'))
                } else {
                    inherited
                }
            }
        }
    }

    fn inherited(&self, name: &str, property: &str) -> Option<String> {
        let mut at = Some(name);
        while let Some(n) = at {
            if let Some(v) = self.datasets.get(n).and_then(|f| f.local.get(property)) {
                return Some(v.clone());
            }
            at = parent_of(n);
        }
        None
    }

    fn used(&self, name: &str) -> u64 {
        let Some(fs) = self.datasets.get(name) else {
            return 0;
        };
        let own = tree::size(&self.data_dir(fs), &self.skip_for(fs));
        let snaps: u64 = fs
            .snapshots
            .iter()
            .map(|s| tree::size(&self.snap_dir(s.id), &[]))
            .sum();
        let children: u64 = self
            .datasets
            .keys()
            .filter(|n| parent_of(n) == Some(name))
            .map(|n| self.used(n))
            .sum();
        own + snaps + children
    }

    fn fs_property(&self, name: &str, property: &str) -> Option<String> {
        let fs = self.datasets.get(name)?;
        let n = |v: u64| Some(v.to_string());
        match property {
            "type" => Some("filesystem".into()),
            "name" => Some(name.to_string()),
            "creation" => n(fs.creation),
            "createtxg" => n(fs.createtxg),
            "guid" => n(fs.guid),
            "mounted" => Some(if fs.mounted.is_some() { "yes" } else { "no" }.into()),
            "origin" => fs.origin.and_then(|id| self.snap_name(id)),
            "referenced" | "logicalreferenced" | "usedbydataset" => {
                n(tree::size(&self.data_dir(fs), &self.skip_for(fs)))
            }
            "used" | "logicalused" => n(self.used(name)),
            "usedbysnapshots" => n(fs
                .snapshots
                .iter()
                .map(|s| tree::size(&self.snap_dir(s.id), &[]))
                .sum()),
            "usedbychildren" => n(self
                .datasets
                .keys()
                .filter(|c| parent_of(c) == Some(name))
                .map(|c| self.used(c))
                .sum()),
            "usedbyrefreservation" | "written" => n(0),
            "available" => n(AVAILABLE),
            "compressratio" | "refcompressratio" => Some("1.00x".into()),
            "version" => Some("5".into()),
            "casesensitivity" => Some("sensitive".into()),
            "normalization" => Some("none".into()),
            "utf8only" => Some("off".into()),
            "mountpoint" => Some(self.mountpoint_of(name)),
            p if is_user_property(p) => self.inherited(name, p),
            p if is_quota_property(p) => fs.local.get(p).cloned(),
            p => match settable(p) {
                Some((_, true)) => self
                    .inherited(name, p)
                    .or_else(|| settable(p).map(|(d, _)| d.to_string())),
                Some((default, false)) => {
                    Some(fs.local.get(p).cloned().unwrap_or(default.to_string()))
                }
                None => None,
            },
        }
    }

    fn snap_property(&self, snapshot: &SnapshotName, property: &str) -> Option<String> {
        let snap = self.snap(snapshot).ok()?;
        let n = |v: u64| Some(v.to_string());
        match property {
            "type" => Some("snapshot".into()),
            "name" => Some(snapshot.to_string()),
            "creation" => n(snap.creation),
            "createtxg" => n(snap.createtxg),
            "guid" => n(snap.guid),
            "referenced" | "logicalreferenced" => n(tree::size(&self.snap_dir(snap.id), &[])),
            "used" | "written" | "userrefs" => n(0),
            "compressratio" | "refcompressratio" => Some("1.00x".into()),
            "defer_destroy" => Some("off".into()),
            "clones" => {
                let clones = self.clones_of(snap.id);
                (!clones.is_empty()).then(|| clones.join(","))
            }
            p if is_user_property(p) => snap
                .local
                .get(p)
                .cloned()
                .or_else(|| self.inherited(snapshot.dataset().as_str(), p)),
            _ => None,
        }
    }

    fn check_known(&self, args: &[&str], properties: &[&str]) -> Result<()> {
        for p in properties {
            check_property_name(p)?;
            if !is_known(p) {
                return Err(failed(
                    args,
                    format!("bad property list: invalid property '{p}'"),
                ));
            }
        }
        Ok(())
    }

    fn properties_of(&self, name: &str, properties: &[&str]) -> Result<Properties> {
        let mut out = Properties::new();
        let snapshot = if name.contains('@') {
            Some(SnapshotName::new(name)?)
        } else {
            None
        };
        for p in properties {
            let value = match &snapshot {
                Some(s) => self.snap_property(s, p),
                None => self.fs_property(name, p),
            };
            if let Some(v) = value {
                out.insert_unchecked(p.to_string(), v);
            }
        }
        Ok(out)
    }

    /// Checks properties given to create, clone or set on a filesystem; `args` and `what`
    /// (`cannot create 'x'`) are for the error.
    fn check_settable(&self, args: &[&str], what: &str, properties: &Properties) -> Result<()> {
        let cannot = |m: String| failed(args, format!("{what}: {m}"));
        for (k, v) in properties.iter() {
            if is_user_property(k) || is_quota_property(k) {
                continue;
            }
            if k == "volsize" || k == "volblocksize" {
                return Err(ZfsError::Unsupported {
                    operation: "volumes".to_string(),
                    backend: "memory",
                });
            }
            if READ_ONLY.contains(&k) {
                return Err(cannot(format!("'{k}' is readonly")));
            }
            if settable(k).is_none() {
                return Err(cannot(format!("invalid property '{k}'")));
            }
            match k {
                "canmount" if !["on", "off", "noauto"].contains(&v) => {
                    return Err(cannot(
                        "'canmount' must be one of 'on | off | noauto'".to_string(),
                    ));
                }
                "mountpoint" => self.check_mountpoint(v)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn check_mountpoint(&self, value: &str) -> Result<()> {
        if value == "none" || value == "legacy" {
            return Ok(());
        }
        let path = Path::new(value);
        let inside = path.is_absolute()
            && path.starts_with(&self.base)
            && !path.starts_with(&self.meta)
            && path
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if inside {
            Ok(())
        } else {
            Err(ZfsError::InvalidProperty {
                name: "mountpoint".to_string(),
                reason: format!(
                    "{value:?}: the memory zfs backend mounts only at absolute paths below {}, \
                     or 'none' or 'legacy'",
                    self.base.display()
                ),
            })
        }
    }

    // ---- mounting ----

    /// The directory `name` is mounted at when mounted, `None` when it cannot be mounted.
    fn mount_target(&self, name: &str) -> Option<PathBuf> {
        let mp = self.mountpoint_of(name);
        mp.starts_with('/').then(|| PathBuf::from(mp))
    }

    fn wants_mount(&self, name: &str) -> bool {
        self.fs_property(name, "canmount").as_deref() == Some("on")
            && self.mount_target(name).is_some()
    }

    /// The end of every receive: the stream's snapshot taken on `target`, which is then
    /// mounted as a received filesystem is.
    fn finish_receive(
        &mut self,
        target: &str,
        snap_name: &SnapshotName,
        header: &tree::StreamHeader,
    ) -> Result<()> {
        let txg = self.next_txg();
        self.take_snapshot(
            target,
            snap_name.snapshot(),
            BTreeMap::new(),
            txg,
            Some(header.guid),
        )?;
        self.mount_if_wanted(target)
    }

    fn mount_if_wanted(&mut self, name: &str) -> Result<()> {
        let mounted = self.fs(name)?.mounted.is_some();
        if !mounted && self.wants_mount(name) {
            self.mount(name)?;
        }
        Ok(())
    }

    fn mount(&mut self, name: &str) -> Result<()> {
        let fs = self.fs(name)?;
        let cannot = |m: &str| failed(&["mount", name], format!("cannot mount '{name}': {m}"));
        if fs.mounted.is_some() {
            return Err(cannot("filesystem already mounted"));
        }
        if self.fs_property(name, "canmount").as_deref() == Some("off") {
            return Err(cannot("'canmount' property is set to 'off'"));
        }
        let mp = self.mountpoint_of(name);
        if mp == "none" {
            return Err(cannot("no mountpoint set"));
        }
        if mp == "legacy" {
            return Err(cannot(
                "legacy mountpoint\nuse mount(8) to mount this filesystem",
            ));
        }
        let target = PathBuf::from(&mp);
        match std::fs::read_dir(&target) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(failed(
                        &["mount", name],
                        format!("cannot mount '{mp}': directory is not empty"),
                    ));
                }
                std::fs::remove_dir(&target)
                    .map_err(|e| io_error(format!("mounting {name} at {mp}"), e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(format!("mounting {name} at {mp}"), e)),
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| io_error(format!("mounting {name} at {mp}"), e))?;
        }
        let store = self.store_dir(fs.id);
        std::fs::rename(&store, &target)
            .map_err(|e| io_error(format!("mounting {name} at {mp}"), e))?;
        self.fs_mut(name)?.mounted = Some(target);
        Ok(())
    }

    /// Unmounts `name` and every filesystem mounted inside it, deepest first.
    fn unmount(&mut self, name: &str) -> Result<()> {
        let fs = self.fs(name)?;
        let Some(mp) = fs.mounted.clone() else {
            return Err(failed(
                &["unmount", name],
                format!("cannot unmount '{name}': not currently mounted"),
            ));
        };
        let mut inside: Vec<String> = self
            .datasets
            .iter()
            .filter(|(_, f)| {
                f.mounted
                    .as_ref()
                    .is_some_and(|m| m != &mp && m.starts_with(&mp))
            })
            .map(|(n, _)| n.clone())
            .collect();
        inside.sort_by_key(|n| {
            std::cmp::Reverse(
                self.datasets
                    .get(n)
                    .and_then(|f| f.mounted.as_ref())
                    .map_or(0, |m| m.components().count()),
            )
        });
        for n in inside {
            self.unmount_one(&n)?;
        }
        self.unmount_one(name)
    }

    fn unmount_one(&mut self, name: &str) -> Result<()> {
        let fs = self.fs(name)?;
        let Some(mp) = fs.mounted.clone() else {
            return Ok(());
        };
        let store = self.store_dir(fs.id);
        if let Some(parent) = store.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| io_error(format!("unmounting {name}"), e))?;
        }
        std::fs::rename(&mp, &store).map_err(|e| io_error(format!("unmounting {name}"), e))?;
        self.fs_mut(name)?.mounted = None;
        Ok(())
    }

    /// Unmounts the mounted filesystems among `names` (deepest mountpoint first) and says
    /// which they were, to mount again with [`Inner::remount`].
    fn unmount_all(&mut self, names: &[String]) -> Result<Vec<String>> {
        let mut mounted: Vec<(String, usize)> = names
            .iter()
            .filter_map(|n| {
                let m = self.datasets.get(n)?.mounted.as_ref()?;
                Some((n.clone(), m.components().count()))
            })
            .collect();
        mounted.sort_by_key(|(_, depth)| std::cmp::Reverse(*depth));
        for (n, _) in &mounted {
            if self.fs(n)?.mounted.is_some() {
                self.unmount(n)?;
            }
        }
        Ok(mounted.into_iter().map(|(n, _)| n).collect())
    }

    /// Mounts again, shallowest first, what [`Inner::unmount_all`] unmounted and can still
    /// be mounted.
    fn remount(&mut self, names: Vec<String>) -> Result<()> {
        for n in names.into_iter().rev() {
            let mountable = self.fs_property(&n, "canmount").as_deref() != Some("off")
                && self.mount_target(&n).is_some();
            if mountable && self.fs(&n)?.mounted.is_none() {
                self.mount(&n)?;
            }
        }
        Ok(())
    }

    // ---- content ----

    /// Replaces the files of `name` with those of the directory `src` (or of a stream's
    /// tree), keeping filesystems mounted inside it.
    fn replace_content(&mut self, name: &str, src: Content<'_>) -> Result<()> {
        let fs = self.fs(name)?;
        let dir = self.data_dir(fs);
        let skip = self.skip_for(fs);
        let context = || format!("replacing the files of {name}");
        tree::clear(&dir, &skip).map_err(|e| io_error(context(), e))?;
        match src {
            Content::Dir(src) => tree::copy(src, &dir, &skip),
            Content::Stream(t) => tree::extract_tree(t, &dir, &skip),
        }
        .map_err(|e| io_error(context(), e))
    }

    fn take_snapshot(
        &mut self,
        fs_name: &str,
        snap: &str,
        local: BTreeMap<String, String>,
        txg: u64,
        guid: Option<u64>,
    ) -> Result<()> {
        let id = self.id();
        let fs = self.fs(fs_name)?;
        let src = self.data_dir(fs);
        let skip = self.skip_for(fs);
        let dst = self.snap_dir(id);
        tree::copy(&src, &dst, &skip)
            .map_err(|e| io_error(format!("copying {fs_name} for @{snap}"), e))?;
        let guid = guid.unwrap_or_else(|| self.guid(id));
        self.fs_mut(fs_name)?.snapshots.push(Snap {
            id,
            name: snap.to_string(),
            guid,
            createtxg: txg,
            creation: now(),
            local,
        });
        Ok(())
    }

    fn remove_snapshot_files(&self, id: u64) -> Result<()> {
        tree::remove(&self.snap_dir(id)).map_err(|e| io_error("removing a snapshot's files", e))
    }

    // ---- operations ----

    fn create(&mut self, name: &DatasetName, properties: &Properties) -> Result<()> {
        let n = name.as_str();
        if self.datasets.contains_key(n) {
            return Err(ZfsError::AlreadyExists {
                name: n.to_string(),
            });
        }
        match name.parent() {
            None => {
                return Err(failed(
                    &["create", n],
                    format!("cannot create '{n}': missing dataset name"),
                ))
            }
            Some(p) if !self.datasets.contains_key(p.as_str()) => return Err(not_found(n)),
            Some(_) => {}
        }
        self.check_settable(&["create", n], &format!("cannot create '{n}'"), properties)?;
        let local = properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.new_fs(n, local, None, None)?;
        self.mount_if_wanted(n)
    }

    fn snapshot(&mut self, snapshots: &[SnapshotName], properties: &Properties) -> Result<()> {
        if let Some((k, _)) = properties.iter().find(|(k, _)| !is_user_property(k)) {
            let first = snapshots.first().map(SnapshotName::as_str).unwrap_or("-");
            return Err(failed(
                &["snapshot", first],
                format!(
                    "cannot create snapshot '{first}': property '{k}' can not be set on snapshots"
                ),
            ));
        }
        for (i, s) in snapshots.iter().enumerate() {
            self.fs(s.dataset().as_str())?;
            if self.snap(s).is_ok() || snapshots[..i].contains(s) {
                return Err(ZfsError::AlreadyExists {
                    name: s.to_string(),
                });
            }
        }
        if snapshots.is_empty() {
            return Ok(());
        }
        let txg = self.next_txg();
        let local: BTreeMap<String, String> = properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for s in snapshots {
            self.take_snapshot(s.dataset().as_str(), s.snapshot(), local.clone(), txg, None)?;
        }
        Ok(())
    }

    fn clone_snapshot(
        &mut self,
        origin: &SnapshotName,
        target: &DatasetName,
        properties: &Properties,
    ) -> Result<()> {
        let snap_id = self.snap(origin)?.id;
        let t = target.as_str();
        if self.datasets.contains_key(t) {
            return Err(ZfsError::AlreadyExists {
                name: t.to_string(),
            });
        }
        match target.parent() {
            Some(p) if self.datasets.contains_key(p.as_str()) => {}
            _ => return Err(not_found(t)),
        }
        if target.pool() != origin.dataset().pool() {
            return Err(failed(
                &["clone", origin.as_str(), t],
                format!("cannot create '{t}': source and target pools differ"),
            ));
        }
        self.check_settable(
            &["clone", origin.as_str(), t],
            &format!("cannot create '{t}'"),
            properties,
        )?;
        let local = properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let src = self.snap_dir(snap_id);
        self.new_fs(t, local, Some(snap_id), Some(&src))?;
        self.mount_if_wanted(t)
    }

    fn destroy(&mut self, name: &DatasetName, recursive: bool) -> Result<()> {
        let n = name.as_str();
        let fs = self.fs(n)?;
        if name.parent().is_none() {
            return Err(failed(
                &["destroy", n],
                format!(
                    "cannot destroy '{n}': operation does not apply to pools\n\
                     use 'zfs destroy -r {n}' to destroy all datasets in the pool\n\
                     use 'zpool destroy {n}' to destroy the pool itself"
                ),
            ));
        }
        let below = self.descendants(n);
        if !recursive {
            let mut dependents: Vec<String> = fs
                .snapshots
                .iter()
                .map(|s| format!("{n}@{}", s.name))
                .collect();
            dependents.extend(below.iter().cloned());
            if !dependents.is_empty() {
                return Err(ZfsError::HasDependents {
                    name: n.to_string(),
                    dependents,
                });
            }
        }
        let mut doomed = vec![n.to_string()];
        doomed.extend(below);
        let outside: Vec<String> = doomed
            .iter()
            .filter_map(|d| self.datasets.get(d))
            .flat_map(|fs| fs.snapshots.iter().map(|s| s.id))
            .flat_map(|id| self.clones_of(id))
            .filter(|c| c != n && !is_below(c, n))
            .collect();
        if !outside.is_empty() {
            return Err(ZfsError::HasDependents {
                name: n.to_string(),
                dependents: outside,
            });
        }
        self.unmount_all(&doomed)?;
        for d in doomed.iter().rev() {
            if let Some(fs) = self.datasets.remove(d) {
                for s in &fs.snapshots {
                    self.remove_snapshot_files(s.id)?;
                }
                tree::remove(&self.store_dir(fs.id))
                    .map_err(|e| io_error(format!("removing the files of {d}"), e))?;
            }
        }
        Ok(())
    }

    fn destroy_snapshot(&mut self, snapshot: &SnapshotName) -> Result<()> {
        let id = self.snap(snapshot)?.id;
        let clones = self.clones_of(id);
        if !clones.is_empty() {
            return Err(ZfsError::HasDependents {
                name: snapshot.to_string(),
                dependents: clones,
            });
        }
        self.fs_mut(snapshot.dataset().as_str())?
            .snapshots
            .retain(|s| s.id != id);
        self.remove_snapshot_files(id)
    }

    fn rename(&mut self, from: &DatasetName, to: &DatasetName) -> Result<()> {
        let (f, t) = (from.as_str(), to.as_str());
        self.fs(f)?;
        let cannot_to = |m: &str| failed(&["rename", f, t], format!("cannot rename to '{t}': {m}"));
        if from.parent().is_none() {
            return Err(cannot_to("a pool cannot be renamed by zfs rename"));
        }
        if self.datasets.contains_key(t) {
            return Err(ZfsError::AlreadyExists {
                name: f.to_string(),
            });
        }
        if is_below(t, f) {
            return Err(cannot_to(
                "New dataset name cannot be a descendant of current dataset name",
            ));
        }
        if !self.datasets.contains_key(to.pool()) {
            return Err(not_found(t));
        }
        if to.pool() != from.pool() {
            return Err(cannot_to("datasets must be within same pool"));
        }
        match to.parent() {
            Some(p) if self.datasets.contains_key(p.as_str()) => {}
            _ => return Err(not_found(t)),
        }
        let mut moving = vec![f.to_string()];
        moving.extend(self.descendants(f));
        let was_mounted = self.unmount_all(&moving)?;
        for old in &moving {
            if let Some(fs) = self.datasets.remove(old) {
                let new = format!("{t}{}", &old[f.len()..]);
                self.datasets.insert(new, fs);
            }
        }
        let renamed = was_mounted
            .into_iter()
            .map(|old| format!("{t}{}", &old[f.len()..]))
            .collect();
        self.remount(renamed)
    }

    fn rename_snapshot(&mut self, from: &SnapshotName, to: &SnapshotName) -> Result<()> {
        if from.dataset() != to.dataset() {
            return Err(ZfsError::InvalidName {
                name: to.to_string(),
                reason: format!("a snapshot can only be renamed within {}", from.dataset()),
            });
        }
        let id = self.snap(from)?.id;
        if self.snap(to).is_ok() {
            return Err(ZfsError::AlreadyExists {
                name: from.to_string(),
            });
        }
        let fs = self.fs_mut(from.dataset().as_str())?;
        if let Some(s) = fs.snapshots.iter_mut().find(|s| s.id == id) {
            s.name = to.snapshot().to_string();
        }
        Ok(())
    }

    fn rollback(&mut self, snapshot: &SnapshotName, destroy_newer: bool) -> Result<()> {
        let snap = self.snap(snapshot)?;
        let (id, txg) = (snap.id, snap.createtxg);
        let ds = snapshot.dataset();
        let d = ds.as_str();
        let newer: Vec<(u64, String)> = self
            .fs(d)?
            .snapshots
            .iter()
            .filter(|s| s.createtxg > txg)
            .map(|s| (s.id, format!("{d}@{}", s.name)))
            .collect();
        if !newer.is_empty() {
            let names: Vec<&str> = newer.iter().map(|(_, n)| n.as_str()).collect();
            if !destroy_newer {
                return Err(failed(
                    &["rollback", snapshot.as_str()],
                    format!(
                        "cannot rollback to '{snapshot}': more recent snapshots exist\n\
                         use '-r' to force deletion of the following snapshots:\n{}",
                        names.join("\n")
                    ),
                ));
            }
            let clones: Vec<String> = newer.iter().flat_map(|(i, _)| self.clones_of(*i)).collect();
            if !clones.is_empty() {
                return Err(failed(
                    &["rollback", "-r", snapshot.as_str()],
                    format!(
                        "cannot rollback to '{snapshot}': clones of previous snapshots exist\n\
                         use '-R' to force deletion of the following clones and dependents:\n{}",
                        clones.join("\n")
                    ),
                ));
            }
            for (i, _) in &newer {
                self.fs_mut(d)?.snapshots.retain(|s| s.id != *i);
                self.remove_snapshot_files(*i)?;
            }
        }
        let src = self.snap_dir(id);
        self.replace_content(d, Content::Dir(&src))
    }

    fn promote(&mut self, clone: &DatasetName) -> Result<()> {
        let c = clone.as_str();
        let Some(origin_id) = self.fs(c)?.origin else {
            return Err(failed(
                &["promote", c],
                format!("cannot promote '{c}': not a cloned filesystem"),
            ));
        };
        let Some(origin_fs) = self
            .datasets
            .iter()
            .find(|(_, fs)| fs.snapshots.iter().any(|s| s.id == origin_id))
            .map(|(n, _)| n.clone())
        else {
            return Err(failed(
                &["promote", c],
                format!("cannot promote '{c}': its origin is gone"),
            ));
        };
        let o = self.fs(&origin_fs)?;
        let cut = o
            .snapshots
            .iter()
            .find(|s| s.id == origin_id)
            .map_or(0, |s| s.createtxg);
        let moving: Vec<String> = o
            .snapshots
            .iter()
            .filter(|s| s.createtxg <= cut)
            .map(|s| s.name.clone())
            .collect();
        if let Some(conflict) = self
            .fs(c)?
            .snapshots
            .iter()
            .find(|s| moving.contains(&s.name))
        {
            return Err(failed(
                &["promote", c],
                format!(
                    "cannot promote '{c}': snapshot name '{}' from origin conflicts with '{}' \
                     from target",
                    conflict.name, conflict.name
                ),
            ));
        }
        let grandparent = o.origin;
        let o = self.fs_mut(&origin_fs)?;
        let (moved, kept): (Vec<Snap>, Vec<Snap>) = std::mem::take(&mut o.snapshots)
            .into_iter()
            .partition(|s| s.createtxg <= cut);
        o.snapshots = kept;
        o.origin = Some(origin_id);
        let target = self.fs_mut(c)?;
        let own = std::mem::take(&mut target.snapshots);
        target.snapshots = moved.into_iter().chain(own).collect();
        target.origin = grandparent;
        Ok(())
    }

    fn send(&self, snapshot: &SnapshotName, from: Option<&SnapshotName>) -> Result<Vec<u8>> {
        let snap = self.snap(snapshot)?;
        let from_guid = match from {
            None => None,
            Some(f) => {
                let base = self.snap(f)?;
                if f.dataset() != snapshot.dataset() || base.createtxg >= snap.createtxg {
                    return Err(failed(
                        &["send", "-i", f.as_str(), snapshot.as_str()],
                        format!(
                            "warning: cannot send '{snapshot}': not an earlier snapshot from \
                             the same fs"
                        ),
                    ));
                }
                Some(base.guid)
            }
        };
        let header = tree::StreamHeader {
            snapshot: snap.name.clone(),
            guid: snap.guid,
            from: from_guid,
        };
        let mut out = Vec::new();
        tree::write_stream(&header, &self.snap_dir(snap.id), &[], &mut out)
            .map_err(|e| io_error(format!("writing the stream of {snapshot}"), e))?;
        Ok(out)
    }

    fn receive(&mut self, target: &DatasetName, stream: &[u8], force: bool) -> Result<()> {
        let t = target.as_str();
        let args = if force {
            vec!["receive", "-F", t]
        } else {
            vec!["receive", t]
        };
        let (header, tree_bytes) = tree::read_header(stream)
            .and_then(|(h, rest)| tree::check_tree(rest).map(|()| (h, rest)))
            .map_err(|e| failed(&args, format!("cannot receive: {e}")))?;
        let snap_name = target.snapshot(&header.snapshot)?;
        match header.from {
            None => self.receive_full(target, &snap_name, &header, tree_bytes, force, &args),
            Some(from) => self
                .receive_incremental(target, &snap_name, &header, from, tree_bytes, force, &args),
        }
    }

    fn receive_full(
        &mut self,
        target: &DatasetName,
        snap_name: &SnapshotName,
        header: &tree::StreamHeader,
        tree_bytes: &[u8],
        force: bool,
        args: &[&str],
    ) -> Result<()> {
        let t = target.as_str();
        let cannot = |m: String| failed(args, format!("cannot receive new filesystem stream: {m}"));
        if let Some(fs) = self.datasets.get(t) {
            if !force {
                return Err(cannot(format!(
                    "destination '{t}' exists\nmust specify -F to overwrite it"
                )));
            }
            if fs.origin.is_some() {
                return Err(cannot(format!(
                    "destination '{t}' is a clone\nmust destroy it to overwrite it"
                )));
            }
            if let Some(s) = fs.snapshots.first() {
                return Err(cannot(format!(
                    "destination has snapshots (eg. {t}@{})\nmust destroy them to overwrite it",
                    s.name
                )));
            }
            self.replace_content(t, Content::Stream(tree_bytes))?;
        } else {
            match target.parent() {
                Some(p) if self.datasets.contains_key(p.as_str()) => {}
                Some(p) => return Err(not_found(p.as_str())),
                None => return Err(not_found(t)),
            }
            let id = self.id();
            let staging = self.store_dir(id);
            std::fs::create_dir_all(&staging)
                .and_then(|()| tree::extract_tree(tree_bytes, &staging, &[]))
                .map_err(|e| io_error(format!("receiving into {t}"), e))?;
            let result = self.new_fs(t, BTreeMap::new(), None, Some(&staging));
            let _ = tree::remove(&staging);
            result?;
        }
        self.finish_receive(t, snap_name, header)
    }

    #[allow(clippy::too_many_arguments)]
    fn receive_incremental(
        &mut self,
        target: &DatasetName,
        snap_name: &SnapshotName,
        header: &tree::StreamHeader,
        from: u64,
        tree_bytes: &[u8],
        force: bool,
        args: &[&str],
    ) -> Result<()> {
        let t = target.as_str();
        let cannot = |m: String| failed(args, format!("cannot receive incremental stream: {m}"));
        let Some(fs) = self.datasets.get(t) else {
            return Err(not_found(t));
        };
        let Some(base) = fs.snapshots.iter().find(|s| s.guid == from) else {
            return Err(cannot(format!(
                "most recent snapshot of {t} does not\nmatch incremental source"
            )));
        };
        if fs.snapshots.iter().any(|s| s.name == header.snapshot) {
            return Err(ZfsError::AlreadyExists {
                name: snap_name.to_string(),
            });
        }
        let newer: Vec<u64> = fs
            .snapshots
            .iter()
            .filter(|s| s.createtxg > base.createtxg)
            .map(|s| s.id)
            .collect();
        if !force {
            if !newer.is_empty() {
                return Err(cannot(format!(
                    "most recent snapshot of {t} does not\nmatch incremental source"
                )));
            }
            let same = tree::same(
                &self.data_dir(fs),
                &self.snap_dir(base.id),
                &self.skip_for(fs),
            )
            .map_err(|e| io_error(format!("comparing {t} with its last snapshot"), e))?;
            if !same {
                return Err(cannot(format!(
                    "destination {t} has been modified\nsince most recent snapshot"
                )));
            }
        }
        let clones: Vec<String> = newer.iter().flat_map(|i| self.clones_of(*i)).collect();
        if !clones.is_empty() {
            return Err(ZfsError::HasDependents {
                name: t.to_string(),
                dependents: clones,
            });
        }
        for i in newer {
            self.fs_mut(t)?.snapshots.retain(|s| s.id != i);
            self.remove_snapshot_files(i)?;
        }
        self.replace_content(t, Content::Stream(tree_bytes))?;
        self.finish_receive(t, snap_name, header)
    }

    fn list(
        &self,
        root: &DatasetName,
        depth: Depth,
        kinds: &[Kind],
        properties: &[&str],
    ) -> Result<Vec<Entry>> {
        let r = root.as_str();
        let mut props = vec!["type", "createtxg"];
        props.extend(
            properties
                .iter()
                .filter(|p| !["type", "createtxg"].contains(p)),
        );
        let mut args = vec!["get", "-H", "-p", "-o", "name,property,value"];
        let joined = props.join(",");
        args.push(&joined);
        args.push(r);
        self.check_known(&args, &props)?;
        self.fs(r)?;
        let mut rows: Vec<(String, u64)> = Vec::new();
        for (name, fs) in &self.datasets {
            let level = if name == r {
                0
            } else if is_below(name, r) {
                name[r.len()..].matches('/').count()
            } else {
                continue;
            };
            let fs_in = match depth {
                Depth::This => level == 0,
                Depth::Children => level <= 1,
                Depth::All => true,
            };
            let snaps_in = match depth {
                Depth::This => false,
                Depth::Children => level == 0,
                Depth::All => true,
            };
            if fs_in && kinds.contains(&Kind::Filesystem) {
                rows.push((name.clone(), fs.createtxg));
            }
            if snaps_in && kinds.contains(&Kind::Snapshot) {
                for s in &fs.snapshots {
                    rows.push((format!("{name}@{}", s.name), s.createtxg));
                }
            }
        }
        rows.sort_by(zfs_order);
        rows.into_iter()
            .map(|(name, _)| {
                let kind = if name.contains('@') {
                    Kind::Snapshot
                } else {
                    Kind::Filesystem
                };
                let mut row = self.properties_of(&name, &props)?;
                if !properties.contains(&"type") {
                    row.remove("type");
                }
                Ok(Entry {
                    name,
                    kind,
                    properties: row,
                })
            })
            .collect()
    }

    fn set(&mut self, name: &str, properties: &Properties) -> Result<()> {
        if properties.is_empty() {
            return Ok(());
        }
        if name.contains('@') {
            let snapshot = SnapshotName::new(name)?;
            let id = self.snap(&snapshot)?.id;
            if properties.iter().any(|(k, _)| !is_user_property(k)) {
                return Err(failed(
                    &["set", name],
                    format!(
                        "cannot set property for '{name}': this property can not be modified \
                         for snapshots"
                    ),
                ));
            }
            let fs = self.fs_mut(snapshot.dataset().as_str())?;
            if let Some(s) = fs.snapshots.iter_mut().find(|s| s.id == id) {
                for (k, v) in properties.iter() {
                    s.local.insert(k.to_string(), v.to_string());
                }
            }
            return Ok(());
        }
        self.fs(name)?;
        self.check_settable(
            &["set", name],
            &format!("cannot set property for '{name}'"),
            properties,
        )?;
        self.with_remount(name, properties.iter().map(|(k, _)| k), |inner| {
            let fs = inner.fs_mut(name)?;
            for (k, v) in properties.iter() {
                fs.local.insert(k.to_string(), v.to_string());
            }
            Ok(())
        })
    }

    fn inherit(&mut self, name: &str, property: &str) -> Result<()> {
        let cannot = |m: &str| failed(&["inherit", property, name], m.to_string());
        if READ_ONLY.contains(&property) {
            return Err(cannot(&format!("'{property}' property is read-only")));
        }
        if !is_known(property) {
            return Err(cannot(&format!("invalid property '{property}'")));
        }
        if name.contains('@') {
            let snapshot = SnapshotName::new(name)?;
            let id = self.snap(&snapshot)?.id;
            if !is_user_property(property) {
                return Err(cannot(&format!(
                    "cannot inherit {property} for '{name}': this property can not be \
                     modified for snapshots"
                )));
            }
            let fs = self.fs_mut(snapshot.dataset().as_str())?;
            if let Some(s) = fs.snapshots.iter_mut().find(|s| s.id == id) {
                s.local.remove(property);
            }
            return Ok(());
        }
        self.fs(name)?;
        if matches!(settable(property), Some((_, false))) || is_quota_property(property) {
            return Err(cannot(&format!(
                "'{property}' property cannot be inherited"
            )));
        }
        self.with_remount(name, std::iter::once(property), |inner| {
            inner.fs_mut(name)?.local.remove(property);
            Ok(())
        })
    }

    /// Runs `change` on `name`'s properties; when they touch mounting, unmounts what it
    /// affects first and mounts again after, as zfs(8) does.
    fn with_remount<'a>(
        &mut self,
        name: &str,
        mut changed: impl Iterator<Item = &'a str>,
        change: impl FnOnce(&mut Self) -> Result<()>,
    ) -> Result<()> {
        if !changed.any(|k| k == "mountpoint" || k == "canmount") {
            return change(self);
        }
        let mut affected = vec![name.to_string()];
        affected.extend(self.descendants(name));
        let was_mounted = self.unmount_all(&affected)?;
        change(self)?;
        self.remount(was_mounted)
    }
}

/// Files to put in place of a filesystem's: a directory's, or a stream's tree.
enum Content<'a> {
    Dir(&'a Path),
    Stream(&'a [u8]),
}

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn create(&self, name: &DatasetName, properties: &Properties) -> Result<()> {
        self.lock().create(name, properties)
    }

    fn snapshot(&self, snapshots: &[SnapshotName], properties: &Properties) -> Result<()> {
        self.lock().snapshot(snapshots, properties)
    }

    fn clone_snapshot(
        &self,
        origin: &SnapshotName,
        target: &DatasetName,
        properties: &Properties,
    ) -> Result<()> {
        self.lock().clone_snapshot(origin, target, properties)
    }

    fn destroy(&self, name: &DatasetName, recursive: bool) -> Result<()> {
        self.lock().destroy(name, recursive)
    }

    fn destroy_snapshot(&self, name: &SnapshotName) -> Result<()> {
        self.lock().destroy_snapshot(name)
    }

    fn rename(&self, from: &DatasetName, to: &DatasetName) -> Result<()> {
        self.lock().rename(from, to)
    }

    fn rename_snapshot(&self, from: &SnapshotName, to: &SnapshotName) -> Result<()> {
        self.lock().rename_snapshot(from, to)
    }

    fn rollback(&self, snapshot: &SnapshotName, destroy_newer: bool) -> Result<()> {
        self.lock().rollback(snapshot, destroy_newer)
    }

    fn promote(&self, clone: &DatasetName) -> Result<()> {
        self.lock().promote(clone)
    }

    fn send(
        &self,
        snapshot: &SnapshotName,
        from: Option<&SnapshotName>,
        out: &mut dyn Write,
    ) -> Result<()> {
        let stream = self.lock().send(snapshot, from)?;
        out.write_all(&stream)
            .and_then(|()| out.flush())
            .map_err(|e| io_error(format!("writing the stream of {snapshot}"), e))
    }

    fn receive(&self, target: &DatasetName, input: &mut dyn Read, force: bool) -> Result<()> {
        let stream = tree::read_all(input)
            .map_err(|e| io_error(format!("reading the stream for {target}"), e))?;
        self.lock().receive(target, &stream, force)
    }

    fn send_receive(
        &self,
        snapshot: &SnapshotName,
        from: Option<&SnapshotName>,
        target: &DatasetName,
        force: bool,
    ) -> Result<()> {
        let mut inner = self.lock();
        let stream = inner.send(snapshot, from)?;
        inner.receive(target, &stream, force)
    }

    fn list(
        &self,
        root: &DatasetName,
        depth: Depth,
        kinds: &[Kind],
        properties: &[&str],
    ) -> Result<Vec<Entry>> {
        self.lock().list(root, depth, kinds, properties)
    }

    fn get(&self, name: &str, properties: &[&str]) -> Result<Properties> {
        let inner = self.lock();
        if properties.is_empty() {
            return Ok(Properties::new());
        }
        let joined = properties.join(",");
        inner.check_known(&["get", "-H", "-p", &joined, name], properties)?;
        if !inner.exists(name) {
            return Err(not_found(name));
        }
        inner.properties_of(name, properties)
    }

    fn set(&self, name: &str, properties: &Properties) -> Result<()> {
        self.lock().set(name, properties)
    }

    fn inherit(&self, name: &str, property: &str) -> Result<()> {
        self.lock().inherit(name, property)
    }

    fn exists(&self, name: &str) -> Result<bool> {
        Ok(self.lock().exists(name))
    }

    fn mount(&self, name: &DatasetName) -> Result<()> {
        self.lock().mount(name.as_str())
    }

    fn unmount(&self, name: &DatasetName, _force: bool) -> Result<()> {
        self.lock().unmount(name.as_str())
    }

    fn clones(&self, snapshot: &SnapshotName) -> Result<Vec<DatasetName>> {
        let inner = self.lock();
        let id = inner.snap(snapshot)?.id;
        inner
            .clones_of(id)
            .into_iter()
            .map(DatasetName::new)
            .collect()
    }
}

impl Inner {
    fn exists(&self, name: &str) -> bool {
        match name.split_once('@') {
            None => self.datasets.contains_key(name),
            Some((d, s)) => self
                .datasets
                .get(d)
                .is_some_and(|fs| fs.snapshots.iter().any(|x| x.name == s)),
        }
    }
}

#[cfg(test)]
mod tests;
