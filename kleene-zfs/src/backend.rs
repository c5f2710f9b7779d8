//! The operations every backend provides, and the types they speak.

use std::fmt;
use std::io::{Read, Write};

use crate::error::ZfsError;
use crate::name::{DatasetName, SnapshotName};
use crate::property::Properties;

/// Result of every operation of this crate.
pub type Result<T, E = ZfsError> = std::result::Result<T, E>;

/// How far below a dataset a listing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// The dataset itself.
    This,
    /// The dataset and its direct children.
    Children,
    /// The dataset and everything below it.
    All,
}

/// What kind of object a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A filesystem.
    Filesystem,
    /// A volume (zvol).
    Volume,
    /// A snapshot.
    Snapshot,
}

impl Kind {
    pub(crate) fn parse(s: &str) -> Option<Kind> {
        match s {
            "filesystem" => Some(Kind::Filesystem),
            "volume" => Some(Kind::Volume),
            "snapshot" => Some(Kind::Snapshot),
            _ => None,
        }
    }
}

/// A filesystem or volume with the properties that were asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// Its name.
    pub name: DatasetName,
    /// Filesystem or volume.
    pub kind: Kind,
    /// The properties asked for that have a value; unset user properties are absent.
    pub properties: Properties,
}

/// A snapshot with the properties that were asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Its name.
    pub name: SnapshotName,
    /// The transaction group it was taken in: orders snapshots, unlike `creation` (seconds).
    pub createtxg: u64,
    /// The properties asked for that have a value; unset user properties are absent.
    pub properties: Properties,
}

/// One raw row of a listing: the name as zfs(8) printed it, its kind, its properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The full name, `pool/a` or `pool/a@s`.
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// The properties asked for that have a value.
    pub properties: Properties,
}

/// A ZFS implementation: zfs(8), or libzfs_core with zfs(8) for the rest.
///
/// Names handed to a backend are already validated; string names (`&str`) are the full
/// name of a dataset or snapshot. Backends do not retry: [`crate::Zfs`] retries "busy".
pub trait Backend: Send + Sync + fmt::Debug {
    /// A short name for logs and errors: `cli` or `lzc`.
    fn name(&self) -> &'static str;

    /// Creates a filesystem (parents must exist) with properties, mounted where ZFS mounts it.
    fn create(&self, name: &DatasetName, properties: &Properties) -> Result<()>;

    /// Takes the snapshots atomically, all or none, with user properties on each.
    fn snapshot(&self, snapshots: &[SnapshotName], properties: &Properties) -> Result<()>;

    /// Clones `origin` into `target` with properties, mounted where ZFS mounts it.
    fn clone_snapshot(
        &self,
        origin: &SnapshotName,
        target: &DatasetName,
        properties: &Properties,
    ) -> Result<()>;

    /// Destroys a filesystem; `recursive` takes its children and snapshots too (not clones
    /// of them elsewhere).
    fn destroy(&self, name: &DatasetName, recursive: bool) -> Result<()>;

    /// Destroys a snapshot that has no clones.
    fn destroy_snapshot(&self, name: &SnapshotName) -> Result<()>;

    /// Renames a filesystem within its pool.
    fn rename(&self, from: &DatasetName, to: &DatasetName) -> Result<()>;

    /// Renames a snapshot; the dataset part must stay the same.
    fn rename_snapshot(&self, from: &SnapshotName, to: &SnapshotName) -> Result<()>;

    /// Rolls a filesystem back to `snapshot`; `destroy_newer` allows destroying later
    /// snapshots (`-r`), otherwise the snapshot must be the latest.
    fn rollback(&self, snapshot: &SnapshotName, destroy_newer: bool) -> Result<()>;

    /// Promotes a clone so that its origin becomes its own.
    fn promote(&self, clone: &DatasetName) -> Result<()>;

    /// Writes a send stream of `snapshot` to `out`, incremental from `from` when given.
    fn send(
        &self,
        snapshot: &SnapshotName,
        from: Option<&SnapshotName>,
        out: &mut dyn Write,
    ) -> Result<()>;

    /// Receives a send stream from `input` into `target`; `force` rolls the target back
    /// first (`-F`).
    fn receive(&self, target: &DatasetName, input: &mut dyn Read, force: bool) -> Result<()>;

    /// Sends `snapshot` (incrementally from `from`) straight into `target`.
    fn send_receive(
        &self,
        snapshot: &SnapshotName,
        from: Option<&SnapshotName>,
        target: &DatasetName,
        force: bool,
    ) -> Result<()>;

    /// Lists `root` and what lies below it to `depth`, of the given kinds, with the
    /// given properties (plus `type` and `createtxg`), in zfs(8)'s order.
    fn list(
        &self,
        root: &DatasetName,
        depth: Depth,
        kinds: &[Kind],
        properties: &[&str],
    ) -> Result<Vec<Entry>>;

    /// Reads properties of a dataset or snapshot; unset ones are absent.
    fn get(&self, name: &str, properties: &[&str]) -> Result<Properties>;

    /// Sets properties on a dataset or snapshot.
    fn set(&self, name: &str, properties: &Properties) -> Result<()>;

    /// Clears a locally set property so that it is inherited again.
    fn inherit(&self, name: &str, property: &str) -> Result<()>;

    /// Whether a dataset or snapshot exists.
    fn exists(&self, name: &str) -> Result<bool>;

    /// Mounts a filesystem at its mountpoint.
    fn mount(&self, name: &DatasetName) -> Result<()>;

    /// Unmounts a filesystem; `force` unmounts even while files are open.
    fn unmount(&self, name: &DatasetName, force: bool) -> Result<()>;

    /// The clones of a snapshot.
    fn clones(&self, snapshot: &SnapshotName) -> Result<Vec<DatasetName>>;

    /// Whether the host's mount table shows this backend's mounts (the real backends do;
    /// an in-memory one does not): then a dataset it shows mounted is mounted there.
    fn mount_table(&self) -> bool {
        false
    }
}
