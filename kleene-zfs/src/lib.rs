#![doc = include_str!("../README.md")]

mod backend;
mod cli;
mod error;
#[cfg(feature = "lzc")]
mod lzc;
mod mounts;
mod name;
mod process;
mod property;
#[cfg(feature = "testing")]
pub mod testing;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

pub use backend::{Backend, Dataset, Depth, Entry, Kind, Result, Snapshot};
pub use cli::{Cli, Dialect};
pub use error::{Argv, ZfsError};
#[cfg(feature = "lzc")]
pub use lzc::Lzc;
pub use mounts::mounted_at;
pub use name::{DatasetName, SnapshotName, MAX_NAME_LEN};
pub use process::Deadlines;
pub use property::{check_property_name, check_property_value, is_user_property, Properties};

/// Something with a ZFS name: a [`DatasetName`] or a [`SnapshotName`].
pub trait ZfsName: sealed::Sealed {
    /// The full name.
    fn zfs_name(&self) -> &str;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::DatasetName {}
    impl Sealed for super::SnapshotName {}
}

impl ZfsName for DatasetName {
    fn zfs_name(&self) -> &str {
        self.as_str()
    }
}

impl ZfsName for SnapshotName {
    fn zfs_name(&self) -> &str {
        self.as_str()
    }
}

/// How often and how long "dataset is busy" is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The first pause; each next one doubles, up to `max_delay`.
    pub first_delay: Duration,
    /// The longest pause.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Thirty-six attempts over about thirty seconds: zfs-fuse's "busy" after a clone, a
    /// rename or an unmount usually lasts well under a second, but on a loaded machine
    /// (two cores running a test suite beside other pools' work) it has lasted over ten.
    fn default() -> Self {
        Self {
            attempts: 36,
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(1000),
        }
    }
}

/// The ZFS handle: a backend, with "busy" retried and answers typed.
#[derive(Debug)]
pub struct Zfs {
    backend: Box<dyn Backend>,
    why: String,
    retry: RetryPolicy,
}

impl Zfs {
    /// Picks the best backend this host has and logs why: libzfs_core where the `lzc`
    /// feature is built and `/dev/zfs` exists, zfs(8) otherwise. Every zfs(8) process gets [`Deadlines::default`]: 60 s for changes, 30 s for reads.
    pub fn open() -> Self {
        Self::open_with_deadlines(Deadlines::default())
    }

    /// [`Zfs::open`] with other deadlines for the zfs(8) processes it runs (the
    /// libzfs_core calls of the `lzc` backend have none).
    pub fn open_with_deadlines(deadlines: Deadlines) -> Self {
        #[cfg(feature = "lzc")]
        {
            match Lzc::probe() {
                Ok(lzc) => {
                    let why = "libzfs_core on /dev/zfs".to_string();
                    log::info!("zfs backend: lzc ({why})");
                    Self::with_backend(Box::new(lzc.with_deadlines(deadlines)), why)
                }
                Err(reason) => {
                    log::info!("zfs backend: cli ({reason})");
                    let cli = Cli::new().with_deadlines(deadlines);
                    Self::with_backend(Box::new(cli), reason)
                }
            }
        }
        #[cfg(not(feature = "lzc"))]
        {
            let why = "built without the lzc feature".to_string();
            log::info!("zfs backend: cli ({why})");
            let cli = Cli::new().with_deadlines(deadlines);
            Self::with_backend(Box::new(cli), why)
        }
    }

    /// Uses the given backend; `why` says why, for [`Zfs::backend_reason`].
    pub fn with_backend(backend: Box<dyn Backend>, why: impl Into<String>) -> Self {
        Self {
            backend,
            why: why.into(),
            retry: RetryPolicy::default(),
        }
    }

    /// A [`testing::MemoryBackend`] below `base_dir` with one pool, `pool` (cargo feature
    /// `testing`): ZFS of directories, for tests without root or a pool.
    #[cfg(feature = "testing")]
    pub fn memory(base_dir: impl Into<PathBuf>, pool: &str) -> Result<Self> {
        let backend = testing::MemoryBackend::new(base_dir).with_pool(pool)?;
        let why = format!("memory backend below {}", backend.base_dir().display());
        Ok(Self::with_backend(Box::new(backend), why))
    }

    /// Sets how "busy" is retried.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// `cli` or `lzc`.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Why that backend was picked.
    pub fn backend_reason(&self) -> &str {
        &self.why
    }

    /// The backend itself.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    fn retry<T>(&self, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        let mut delay = self.retry.first_delay;
        let mut attempt = 1;
        loop {
            match op() {
                Err(e) if e.is_busy() && attempt < self.retry.attempts => {
                    log::debug!("{e}; retrying in {delay:?}");
                    thread::sleep(delay);
                    delay = (delay * 2).min(self.retry.max_delay);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Creates a filesystem; its parent must exist.
    pub fn create(&self, name: &DatasetName, properties: &Properties) -> Result<()> {
        self.retry(|| self.backend.create(name, properties))
    }

    /// Creates a filesystem and any missing parents (parents without properties); a
    /// filesystem that is already there is left as it is.
    pub fn create_all(&self, name: &DatasetName, properties: &Properties) -> Result<()> {
        if self.exists(name)? {
            return Ok(());
        }
        if let Some(parent) = name.parent() {
            self.create_all(&parent, &Properties::new())?;
        }
        match self.create(name, properties) {
            Err(ZfsError::AlreadyExists { .. }) => Ok(()),
            other => other,
        }
    }

    /// Takes one snapshot.
    pub fn snapshot(&self, snapshot: &SnapshotName, properties: &Properties) -> Result<()> {
        self.snapshot_many(std::slice::from_ref(snapshot), properties)
    }

    /// Takes several snapshots atomically: all or none.
    pub fn snapshot_many(&self, snapshots: &[SnapshotName], properties: &Properties) -> Result<()> {
        self.retry(|| self.backend.snapshot(snapshots, properties))
    }

    /// Clones `origin` into `target` with properties.
    pub fn clone_snapshot(
        &self,
        origin: &SnapshotName,
        target: &DatasetName,
        properties: &Properties,
    ) -> Result<()> {
        self.retry(|| self.backend.clone_snapshot(origin, target, properties))
    }

    /// Destroys a filesystem. Without `recursive` it must have no children or snapshots;
    /// with it they go too. Clones elsewhere of its snapshots always stop it.
    pub fn destroy(&self, name: &DatasetName, recursive: bool) -> Result<()> {
        self.retry(|| self.backend.destroy(name, recursive))
    }

    /// Destroys a snapshot; one with clones is refused naming them.
    pub fn destroy_snapshot(&self, snapshot: &SnapshotName) -> Result<()> {
        self.retry(|| self.backend.destroy_snapshot(snapshot))
    }

    /// Renames a filesystem within its pool.
    pub fn rename(&self, from: &DatasetName, to: &DatasetName) -> Result<()> {
        self.retry(|| self.backend.rename(from, to))
    }

    /// Renames a snapshot of a dataset.
    pub fn rename_snapshot(&self, from: &SnapshotName, to: &SnapshotName) -> Result<()> {
        self.retry(|| self.backend.rename_snapshot(from, to))
    }

    /// Rolls back to `snapshot`; `destroy_newer` destroys later snapshots, otherwise it
    /// must be the latest.
    pub fn rollback(&self, snapshot: &SnapshotName, destroy_newer: bool) -> Result<()> {
        self.retry(|| self.backend.rollback(snapshot, destroy_newer))
    }

    /// Promotes a clone.
    pub fn promote(&self, clone: &DatasetName) -> Result<()> {
        self.retry(|| self.backend.promote(clone))
    }

    /// Writes a send stream of `snapshot` (incremental from `from`) to `out`.
    pub fn send(
        &self,
        snapshot: &SnapshotName,
        from: Option<&SnapshotName>,
        out: &mut dyn Write,
    ) -> Result<()> {
        self.backend.send(snapshot, from, out)
    }

    /// Receives a send stream into `target`.
    pub fn receive(&self, target: &DatasetName, input: &mut dyn Read, force: bool) -> Result<()> {
        self.backend.receive(target, input, force)
    }

    /// Copies `snapshot` into a new dataset `target` by send | receive: `target` gets the
    /// content and the snapshot, independent of the source (no clone relation).
    pub fn copy(&self, snapshot: &SnapshotName, target: &DatasetName) -> Result<()> {
        self.backend.send_receive(snapshot, None, target, false)
    }

    /// Brings `target`, a copy holding `from`, up to `snapshot` by an incremental
    /// send | receive; `force` rolls back changes made to `target` since `from`.
    pub fn copy_incremental(
        &self,
        from: &SnapshotName,
        snapshot: &SnapshotName,
        target: &DatasetName,
        force: bool,
    ) -> Result<()> {
        self.backend
            .send_receive(snapshot, Some(from), target, force)
    }

    /// The filesystems and volumes at and below `root`, to `depth`, with `properties`.
    pub fn list_datasets(
        &self,
        root: &DatasetName,
        depth: Depth,
        properties: &[&str],
    ) -> Result<Vec<Dataset>> {
        let entries =
            self.backend
                .list(root, depth, &[Kind::Filesystem, Kind::Volume], properties)?;
        entries
            .into_iter()
            .map(|e| {
                Ok(Dataset {
                    name: DatasetName::new(e.name)?,
                    kind: e.kind,
                    properties: e.properties,
                })
            })
            .collect()
    }

    /// The snapshots of `dataset`, oldest first (by `createtxg`), with `properties`.
    pub fn list_snapshots(
        &self,
        dataset: &DatasetName,
        properties: &[&str],
    ) -> Result<Vec<Snapshot>> {
        let entries = self
            .backend
            .list(dataset, Depth::Children, &[Kind::Snapshot], properties)?;
        let mut snaps = entries
            .into_iter()
            .filter(|e| e.name.split_once('@').map(|(d, _)| d) == Some(dataset.as_str()))
            .map(|mut e| {
                let createtxg = if properties.contains(&"createtxg") {
                    e.properties.get("createtxg").map(str::to_string)
                } else {
                    e.properties.remove("createtxg")
                };
                Ok(Snapshot {
                    name: SnapshotName::new(e.name)?,
                    createtxg: createtxg.and_then(|t| t.parse().ok()).unwrap_or(0),
                    properties: e.properties,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        snaps.sort_by_key(|s| s.createtxg);
        Ok(snaps)
    }

    /// Reads properties; unset ones are absent.
    pub fn get(&self, name: &impl ZfsName, properties: &[&str]) -> Result<Properties> {
        self.backend.get(name.zfs_name(), properties)
    }

    /// Reads one property.
    pub fn property(&self, name: &impl ZfsName, property: &str) -> Result<Option<String>> {
        Ok(self
            .backend
            .get(name.zfs_name(), &[property])?
            .remove(property))
    }

    /// Sets properties.
    pub fn set(&self, name: &impl ZfsName, properties: &Properties) -> Result<()> {
        self.retry(|| self.backend.set(name.zfs_name(), properties))
    }

    /// Clears a local property so it is inherited again.
    pub fn inherit(&self, name: &impl ZfsName, property: &str) -> Result<()> {
        check_property_name(property)?;
        self.retry(|| self.backend.inherit(name.zfs_name(), property))
    }

    /// Whether the dataset or snapshot exists.
    pub fn exists(&self, name: &impl ZfsName) -> Result<bool> {
        self.backend.exists(name.zfs_name())
    }

    /// Mounts a filesystem.
    pub fn mount(&self, name: &DatasetName) -> Result<()> {
        self.retry(|| self.backend.mount(name))
    }

    /// Unmounts a filesystem; `force` even while files are open in it.
    pub fn unmount(&self, name: &DatasetName, force: bool) -> Result<()> {
        self.retry(|| self.backend.unmount(name, force))
    }

    /// Where the filesystem is mounted, `None` when it is not mounted. The host's mount
    /// table answers first where the backend trusts it ([`Backend::mount_table`]); ZFS is
    /// asked otherwise.
    pub fn mountpoint(&self, name: &DatasetName) -> Result<Option<PathBuf>> {
        if let Some(mp) = self.mounted_by_table(name) {
            return Ok(Some(mp));
        }
        let props = self
            .backend
            .get(name.as_str(), &["mounted", "mountpoint"])?;
        if props.get("mounted") != Some("yes") {
            return Ok(None);
        }
        Ok(props
            .get("mountpoint")
            .filter(|m| m.starts_with('/'))
            .map(PathBuf::from))
    }

    /// Where the filesystem is mounted according to the host's mount table, read without
    /// running anything: `None` when the table does not show it (it may still be mounted
    /// where this process cannot see) or when the backend does not trust the table (the
    /// in-memory one).
    pub fn mounted_by_table(&self, name: &DatasetName) -> Option<PathBuf> {
        if !self.backend.mount_table() {
            return None;
        }
        mounts::mounted_at(name.as_str())
    }

    /// The snapshot a clone was made from, `None` for a filesystem that is no clone.
    pub fn origin(&self, name: &DatasetName) -> Result<Option<SnapshotName>> {
        self.property(name, "origin")?
            .map(SnapshotName::new)
            .transpose()
    }

    /// The clones of a snapshot.
    pub fn clones(&self, snapshot: &SnapshotName) -> Result<Vec<DatasetName>> {
        self.backend.clones(snapshot)
    }
}
