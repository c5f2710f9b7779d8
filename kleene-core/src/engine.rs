//! `Engine::open`: the root datasets, the metadata store, and the repair of what a crash
//! left behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use kleene_zfs::{DatasetName, Depth, Properties, Zfs, ZfsError};

use crate::config::Config;
use crate::error::{CoreError, Result};
use crate::event::{Event, Events};
use crate::id::Id;
use crate::meta::Store;

/// The user property that marks a dataset as the engine's.
pub(crate) const PROP_ID: &str = "kleene:id";

/// The engine: one root dataset, its metadata, and every operation on them.
///
/// Cheap to clone; every clone is the same engine. Operations are `async` and run their
/// ZFS and metadata work on tokio's blocking pool.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub config: Config,
    pub zfs: Zfs,
    pub store: Mutex<Store>,
    pub root_mount: PathBuf,
    pub image_root: DatasetName,
    pub container_root: DatasetName,
    pub volume_root: DatasetName,
    pub ops_dir: PathBuf,
}

/// What `Engine::open` found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Repairs {
    /// Datasets of operations that died half-way, removed with their rows.
    pub removed_unfinished: Vec<String>,
    /// Datasets no metadata knows of, removed.
    pub removed_orphans: Vec<String>,
    /// Rows whose dataset had vanished, dropped.
    pub dropped_rows: Vec<String>,
}

impl Repairs {
    /// Whether nothing needed repair.
    pub fn is_empty(&self) -> bool {
        self.removed_unfinished.is_empty()
            && self.removed_orphans.is_empty()
            && self.dropped_rows.is_empty()
    }
}

/// An operation in flight: holds an exclusive lock on `<root>/ops/<token>.lock` for as long
/// as it lives, so that another process's `open` can tell it from a dead one.
#[derive(Debug)]
pub(crate) struct OpLock {
    pub token: String,
    path: PathBuf,
    _file: File,
}

impl OpLock {
    pub fn begin(ops_dir: &Path) -> Result<Self> {
        let token = Id::generate()?.to_string();
        let path = ops_dir.join(format!("{token}.lock"));
        let file = File::create(&path)
            .map_err(|e| CoreError::io(format!("creating {}", path.display()), e))?;
        file.lock()
            .map_err(|e| CoreError::io(format!("locking {}", path.display()), e))?;
        Ok(Self {
            token,
            path,
            _file: file,
        })
    }
}

impl Drop for OpLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the operation `token` is still held by a live process.
fn op_alive(ops_dir: &Path, token: &str) -> bool {
    if token.is_empty() || !Id::is_prefix(token) {
        return false;
    }
    let path = ops_dir.join(format!("{token}.lock"));
    let Ok(file) = File::options().read(true).write(true).open(&path) else {
        return false; // no lock file: its owner finished or died before making it
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = std::fs::remove_file(&path);
            false
        }
        Err(_) => true,
    }
}

impl Engine {
    /// Opens the engine on `config.root`: makes the root and its `image`, `container` and
    /// `volumes` children on first use, opens (and migrates) the metadata, and repairs
    /// what an interrupted operation left behind. The program must have called
    /// [`crate::init`] first (see [`Engine::open_with`]).
    pub async fn open(config: Config) -> Result<Engine> {
        Self::open_with(config, Events::none())
            .await
            .map(|(e, _)| e)
    }

    /// [`Engine::open`], also telling what was repaired (as events and as the result).
    ///
    /// Fails with [`CoreError::NoMonitor`] when the program did not call [`crate::init`]
    /// first in `main` and [`Config::monitor`] is not set: it could not run containers.
    pub async fn open_with(config: Config, events: Events) -> Result<(Engine, Repairs)> {
        if config.monitor.is_none() && !crate::monitor::init_called() {
            return Err(CoreError::NoMonitor);
        }
        tokio::task::spawn_blocking(move || Self::open_blocking(config, events))
            .await
            .map_err(|e| CoreError::Internal(format!("open task failed: {e}")))?
    }

    /// Opens an engine that another process opened before, without repairing anything: for
    /// the container monitor, which must not race the processes it serves.
    pub(crate) async fn open_without_repair(config: Config) -> Result<Engine> {
        tokio::task::spawn_blocking(move || Self::open_blocking_with(config, Events::none(), false))
            .await
            .map_err(|e| CoreError::Internal(format!("open task failed: {e}")))?
            .map(|(e, _)| e)
    }

    fn open_blocking(config: Config, events: Events) -> Result<(Engine, Repairs)> {
        Self::open_blocking_with(config, events, true)
    }

    fn open_blocking_with(
        config: Config,
        events: Events,
        repair: bool,
    ) -> Result<(Engine, Repairs)> {
        let zfs = Zfs::open();
        let root = config.root.clone();
        let image_root = root.child("image")?;
        let container_root = root.child("container")?;
        let volume_root = root.child("volumes")?;
        // One listing answers the usual case (everything made, the root mounted) and is
        // what the repair compares the metadata with; each zfs(8) run costs ~10 ms.
        let listing = if repair { Depth::All } else { Depth::Children };
        let listed = match zfs.list_datasets(&root, listing, &["mounted", "mountpoint"]) {
            Ok(list) => Some(list),
            Err(ZfsError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let ready = listed.as_ref().and_then(|list| {
            let has = |d: &DatasetName| list.iter().any(|e| &e.name == d);
            let top = list.iter().find(|e| e.name == root)?;
            let mounted = top.properties.get("mounted") == Some("yes");
            let mp = top
                .properties
                .get("mountpoint")
                .filter(|m| m.starts_with('/'))?;
            (mounted && has(&image_root) && has(&container_root) && has(&volume_root))
                .then(|| PathBuf::from(mp))
        });
        let (root_mount, listed) = match ready {
            Some(mp) => (mp, listed),
            None => {
                zfs.create_all(&root, &Properties::new())?;
                if zfs.mountpoint(&root)?.is_none() {
                    zfs.mount(&root)?;
                }
                let mp = zfs.mountpoint(&root)?.ok_or_else(|| {
                    CoreError::Conflict(format!("root dataset {root} is not mounted"))
                })?;
                for d in [&image_root, &container_root, &volume_root] {
                    zfs.create_all(d, &Properties::new())?;
                }
                (mp, None)
            }
        };
        let ops_dir = root_mount.join("ops");
        std::fs::create_dir_all(&ops_dir)
            .map_err(|e| CoreError::io(format!("creating {}", ops_dir.display()), e))?;
        let store = Store::open(&root_mount.join("metadata.sqlite"))?;
        let inner = Inner {
            config,
            zfs,
            store: Mutex::new(store),
            root_mount,
            image_root,
            container_root,
            volume_root,
            ops_dir,
        };
        let repairs = if repair {
            inner.reconcile(listed.map(|l| l.into_iter().map(|d| d.name).collect()))?
        } else {
            Repairs::default()
        };
        for r in repairs
            .removed_unfinished
            .iter()
            .map(|d| format!("removed {d}, left by an interrupted operation"))
            .chain(
                repairs
                    .removed_orphans
                    .iter()
                    .map(|d| format!("removed {d}, which no metadata knows")),
            )
            .chain(
                repairs
                    .dropped_rows
                    .iter()
                    .map(|d| format!("dropped the metadata of {d}: its dataset is gone")),
            )
        {
            log::warn!("{r}");
            events.emit(Event::Repaired(r));
        }
        Ok((
            Engine {
                inner: Arc::new(inner),
            },
            repairs,
        ))
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Where the root dataset is mounted (the metadata lives there).
    pub fn root_mountpoint(&self) -> &Path {
        &self.inner.root_mount
    }

    /// The metadata schema version.
    pub async fn schema_version(&self) -> Result<i64> {
        self.blocking(|inner| inner.store().schema_version()).await
    }

    /// The ZFS handle, for callers that inspect datasets themselves.
    pub fn zfs(&self) -> &Zfs {
        &self.inner.zfs
    }

    /// Runs `f` on the blocking pool.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| CoreError::Internal(format!("engine task failed: {e}")))?
    }
}

impl Inner {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the store leaves SQLite consistent (transactions roll back),
        // so a poisoned lock is safe to take over.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Destroys a dataset and everything below it; clones of its snapshots that the
    /// engine does not know of are left (and stop the destroy).
    pub fn destroy_dataset(&self, name: &str) -> Result<()> {
        let d = DatasetName::new(name)?;
        match self.zfs.destroy(&d, true) {
            Ok(()) | Err(ZfsError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Brings metadata and ZFS back in line. `listed`: every dataset below the root,
    /// listed before the metadata was opened (it is listed here when `None`).
    fn reconcile(&self, listed: Option<Vec<DatasetName>>) -> Result<Repairs> {
        let mut repairs = Repairs::default();
        // 1. Unfinished operations of dead processes: undo (for a removal: finish it).
        let pending = self.store().pending()?;
        for p in pending {
            if op_alive(&self.ops_dir, &p.op) {
                continue;
            }
            self.destroy_dataset(&p.dataset)?;
            self.store().delete_row(p.table, &p.key)?;
            repairs.removed_unfinished.push(p.dataset);
        }
        // 2. Datasets listed before rows are read: a row is always written before its
        // dataset and removed after it, so a dataset without a row here is an orphan.
        let listed = match listed {
            Some(l) => l,
            None => self
                .zfs
                .list_datasets(&self.config.root, Depth::All, &[])?
                .into_iter()
                .map(|d| d.name)
                .collect(),
        };
        let parents = [&self.container_root, &self.image_root, &self.volume_root];
        let on_disk: Vec<String> = listed
            .into_iter()
            .filter(|d| {
                d.as_str()
                    .rsplit_once('/')
                    .is_some_and(|(parent, _)| parents.iter().any(|p| p.as_str() == parent))
            })
            .map(|d| d.to_string())
            .filter(|d| !repairs.removed_unfinished.contains(d))
            .collect();
        let rows = self.store().datasets()?;
        let mut pending_now: Vec<String> = self
            .store()
            .pending()?
            .into_iter()
            .map(|p| p.dataset)
            .collect();
        pending_now.sort();
        for d in &on_disk {
            let known =
                rows.iter().any(|(_, _, ds)| ds == d) || pending_now.binary_search(d).is_ok();
            if !known {
                match self.destroy_dataset(d) {
                    Ok(()) => repairs.removed_orphans.push(d.clone()),
                    Err(e) => log::warn!("could not remove {d}, which no metadata knows: {e}"),
                }
            }
        }
        // 3. Rows whose dataset vanished.
        for (table, key, ds) in rows {
            if !on_disk.contains(&ds) {
                self.store().delete_row(table, &key)?;
                repairs.dropped_rows.push(ds);
            }
        }
        Ok(repairs)
    }
}
