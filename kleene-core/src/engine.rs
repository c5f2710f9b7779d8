//! `Engine::open`: the root datasets, the metadata store, and the repair of what a crash
//! left behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use kleene_zfs::{Dataset, DatasetName, Depth, Properties, Zfs, ZfsError};

use crate::config::Config;
use crate::error::{CoreError, Result};
use crate::event::{Event, Events};
use crate::id::Id;
use crate::jails::{HostJails, Jails};
use crate::meta::Store;
use crate::watch::{answers, ProbeAt};

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
    pub jails: Arc<dyn Jails>,
    pub store: Mutex<Store>,
    pub root_mount: PathBuf,
    pub image_root: DatasetName,
    pub container_root: DatasetName,
    pub volume_root: DatasetName,
    /// Where OCI layers live, one dataset per chain id.
    pub layer_root: DatasetName,
    pub ops_dir: PathBuf,
    /// Where blocking work checks that the filesystem still answers (the root's mount).
    pub probe: ProbeAt,
}

/// What `Engine::open` found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Repairs {
    /// Datasets of operations that died half-way, removed with their rows.
    pub removed_unfinished: Vec<DatasetName>,
    /// Datasets no metadata knows of, removed.
    pub removed_orphans: Vec<DatasetName>,
    /// Rows whose dataset had vanished, dropped.
    pub dropped_rows: Vec<DatasetName>,
    /// What could not be repaired, and why (a dataset still used by processes that will
    /// not end, a destroy ZFS refused): left as it is for a later `open`.
    pub held_back: Vec<String>,
}

impl Repairs {
    /// Whether nothing needed repair.
    pub fn is_empty(&self) -> bool {
        self.removed_unfinished.is_empty()
            && self.removed_orphans.is_empty()
            && self.dropped_rows.is_empty()
            && self.held_back.is_empty()
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
        // A sweeper may take an unrenamed file for a dead operation's and remove it while
        // this one waits for its lock (see `sweep_locks`): the rename then finds nothing,
        // and a fresh token is tried (a sweeper spinning on a loaded machine won this race
        // five times running once).
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Self::try_begin(ops_dir)? {
                Some(lock) => return Ok(lock),
                None if attempts < 100 => continue,
                None => {
                    return Err(CoreError::io(
                        format!("making an operation lock in {}", ops_dir.display()),
                        std::io::Error::from(std::io::ErrorKind::NotFound),
                    ))
                }
            }
        }
    }

    fn try_begin(ops_dir: &Path) -> Result<Option<Self>> {
        let token = Id::generate()?.to_string();
        // Made under a temporary name and renamed once locked, so that a `<token>.lock`
        // is always locked by its owner while it lives: one that can be locked is a dead
        // operation's, whatever it was doing (see `sweep_locks`).
        let new = ops_dir.join(format!(".{token}{NEW_LOCK}"));
        let path = ops_dir.join(format!("{token}.lock"));
        let file = File::create(&new)
            .map_err(|e| CoreError::io(format!("creating {}", new.display()), e))?;
        file.lock()
            .map_err(|e| CoreError::io(format!("locking {}", new.display()), e))?;
        match std::fs::rename(&new, &path) {
            Ok(()) => Ok(Some(Self {
                token,
                path,
                _file: file,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CoreError::io(format!("renaming {}", new.display()), e)),
        }
    }
}

impl Drop for OpLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The suffix of an operation lock file not yet locked and renamed into place.
const NEW_LOCK: &str = ".new";

/// Removes the lock files of operations whose owners died outside a pending row (killed
/// before its row was written or after it was removed): every `<token>.lock` that can be
/// locked, and every unrenamed one that can be. An unrenamed file that can be locked is a
/// dead process's or one that has not locked it yet; the sweeper removes it while holding
/// its lock, so a live owner's rename finds nothing and it starts again
/// ([`OpLock::begin`]). Best effort.
pub(crate) fn sweep_locks(ops_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(ops_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let path = e.path();
        if name.starts_with('.') && name.ends_with(NEW_LOCK) {
            let Ok(file) = File::options().read(true).write(true).open(&path) else {
                continue; // renamed or removed meanwhile
            };
            if file.try_lock().is_ok() {
                let _ = std::fs::remove_file(&path);
            }
        } else if let Some(token) = name.strip_suffix(".lock") {
            // op_alive removes the file when nobody holds it.
            let _ = op_alive(ops_dir, token);
        }
    }
}

/// Whether the operation `token` is held by a live process, its lock file left as it is
/// (an absent one is no live operation's).
fn op_held(ops_dir: &Path, token: &str) -> bool {
    if token.is_empty() || !Id::is_prefix(token) {
        return false;
    }
    let path = ops_dir.join(format!("{token}.lock"));
    File::options()
        .read(true)
        .write(true)
        .open(&path)
        .is_ok_and(|f| f.try_lock().is_err())
}

/// Whether the operation `token` is still held by a live process.
pub(crate) fn op_alive(ops_dir: &Path, token: &str) -> bool {
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

/// Sets up an [`Engine`]: the ZFS handle and the jails it uses, then
/// [`EngineBuilder::open`]. [`Engine::open`] is `Engine::builder(config).open()`.
///
/// ```no_run
/// # async fn f() -> kleene_core::Result<()> {
/// use kleene_core::{Config, Engine};
/// let config = Config::new("zroot/kleene".parse()?);
/// let engine = Engine::builder(config).open().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct EngineBuilder {
    config: Config,
    zfs: Option<Zfs>,
    jails: Option<Arc<dyn Jails>>,
    repair: bool,
}

impl EngineBuilder {
    /// Uses this ZFS handle instead of [`Zfs::open`]'s pick (tests give one on an in-memory
    /// backend: kleene-zfs's `testing` feature).
    pub fn zfs(mut self, zfs: Zfs) -> Self {
        self.zfs = Some(zfs);
        self
    }

    /// Runs build steps with these jails instead of the host's ([`HostJails`]).
    pub fn jails(mut self, jails: Arc<dyn Jails>) -> Self {
        self.jails = Some(jails);
        self
    }

    /// Opens the engine (see [`Engine::open`]).
    pub async fn open(self) -> Result<Engine> {
        self.open_with(Events::none()).await.map(|(e, _)| e)
    }

    /// Opens the engine, also telling what was repaired (as events and as the result).
    ///
    /// Fails with [`CoreError::NoMonitor`] when the program did not call [`crate::init`]
    /// first in `main` and [`Config::monitor`] is not set: it could not run containers.
    pub async fn open_with(self, events: Events) -> Result<(Engine, Repairs)> {
        if self.config.monitor.is_none() && !crate::monitor::init_called() {
            return Err(CoreError::NoMonitor);
        }
        let probe = ProbeAt::default();
        let deadline = self.config.fs_deadline;
        let at = Arc::clone(&probe);
        let repair = self.repair;
        let (engine, repairs) =
            crate::watch::watched(&probe, deadline, move || self.open_blocking(events, at)).await?;
        if repair {
            // Rules of containers that died unrecorded (a killed monitor) go; those of
            // running ones are loaded again (after a reboot, say).
            engine.apply_firewall().await?;
        }
        Ok((engine, repairs))
    }

    /// Opens without repairing anything: for the container monitor, which must not race
    /// the processes it serves.
    pub(crate) fn without_repair(mut self) -> Self {
        self.repair = false;
        self
    }

    fn open_blocking(self, events: Events, probe: ProbeAt) -> Result<(Engine, Repairs)> {
        let EngineBuilder {
            config,
            zfs,
            jails,
            repair,
        } = self;
        let zfs = zfs.unwrap_or_else(Zfs::open);
        let jails = jails.unwrap_or_else(|| Arc::new(HostJails::default()));
        let root = config.root.clone();
        let image_root = root.child("image")?;
        let container_root = root.child("container")?;
        let volume_root = root.child("volumes")?;
        let layer_root = root.child("layer")?;
        let children = [&image_root, &container_root, &volume_root, &layer_root];
        // The usual case, without a zfs(8) process: the host's mount table shows the root
        // and its children mounted. Otherwise ZFS is asked (and what is missing made).
        let (root_mount, listed) = match mounted_root(&zfs, &root, children) {
            Some(mp) => (mp, None),
            None => {
                let listed = list_root(&zfs, &root, repair)?;
                let ready = listed
                    .as_deref()
                    .and_then(|list| ready_mountpoint(list, &root, children));
                match ready {
                    Some(mp) => (mp, listed),
                    None => (make_root(&zfs, &root, children)?, None),
                }
            }
        };
        // A wedged FUSE daemon makes every access below its mounts hang for good: ask
        // the root once, on a thread of its own, before anything else touches it.
        answers(&root_mount, config.fs_deadline)?;
        // From here on, work that takes long asks the root whether it still answers.
        let _ = probe.set(root_mount.clone());
        let ops_dir = root_mount.join("ops");
        std::fs::create_dir_all(&ops_dir)
            .map_err(|e| CoreError::io(format!("creating {}", ops_dir.display()), e))?;
        let store = Store::open(&root_mount.join("metadata.sqlite"))?;
        let inner = Inner {
            config,
            zfs,
            jails,
            store: Mutex::new(store),
            root_mount,
            image_root,
            container_root,
            volume_root,
            layer_root,
            ops_dir,
            probe,
        };
        let repairs = if repair {
            inner.reconcile(listed)?
        } else {
            Repairs::default()
        };
        report_repairs(&repairs, &events);
        Ok((
            Engine {
                inner: Arc::new(inner),
            },
            repairs,
        ))
    }
}

/// The root and the datasets below it (all of them with `repair`, else its children)
/// with their `mounted` and `mountpoint`; `None` when there is no root yet.
fn list_root(zfs: &Zfs, root: &DatasetName, repair: bool) -> Result<Option<Vec<Dataset>>> {
    // One listing answers the usual case (everything made, the root mounted) and is
    // what the repair compares the metadata with; each zfs(8) run costs ~10 ms.
    let listing = if repair { Depth::All } else { Depth::Children };
    match zfs.list_datasets(root, listing, &["mounted", "mountpoint"]) {
        Ok(list) => Ok(Some(list)),
        Err(ZfsError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The root's mountpoint when the host's mount table shows it and its `children` mounted
/// (as mounted children of a mounted root, they exist).
fn mounted_root(zfs: &Zfs, root: &DatasetName, children: [&DatasetName; 4]) -> Option<PathBuf> {
    let mp = zfs.mounted_by_table(root)?;
    children
        .into_iter()
        .all(|c| zfs.mounted_by_table(c).is_some())
        .then_some(mp)
}

/// The root's mountpoint when `list` shows it mounted with all of its `children` made:
/// nothing to create.
fn ready_mountpoint(
    list: &[Dataset],
    root: &DatasetName,
    children: [&DatasetName; 4],
) -> Option<PathBuf> {
    let has = |d: &DatasetName| list.iter().any(|e| &e.name == d);
    let top = list.iter().find(|e| &e.name == root)?;
    let mounted = top.properties.get("mounted") == Some("yes");
    let mp = top
        .properties
        .get("mountpoint")
        .filter(|m| m.starts_with('/'))?;
    (mounted && children.into_iter().all(has)).then(|| PathBuf::from(mp))
}

/// Makes the root dataset (mounted) and its `children`: the root's mountpoint.
fn make_root(zfs: &Zfs, root: &DatasetName, children: [&DatasetName; 4]) -> Result<PathBuf> {
    zfs.create_all(root, &Properties::new())?;
    if zfs.mountpoint(root)?.is_none() {
        zfs.mount(root)?;
    }
    let mp = zfs.mountpoint(root)?.ok_or_else(|| CoreError::NotMounted {
        dataset: root.to_string(),
    })?;
    for d in children {
        zfs.create_all(d, &Properties::new())?;
    }
    Ok(mp)
}

/// Logs what `open` repaired, and what it could not, and tells `events`.
fn report_repairs(repairs: &Repairs, events: &Events) {
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
    for r in &repairs.held_back {
        log::error!("{r}");
        events.emit(Event::NotRepaired(r.clone()));
    }
}

impl Engine {
    /// A builder for an engine on `config.root`, to give it its ZFS handle or jails.
    pub fn builder(config: Config) -> EngineBuilder {
        EngineBuilder {
            config,
            zfs: None,
            jails: None,
            repair: true,
        }
    }

    /// Opens the engine on `config.root`: makes the root and its `image`, `container` and
    /// `volumes` children on first use, opens (and migrates) the metadata, and repairs
    /// what an interrupted operation left behind. The program must have called
    /// [`crate::init`] first (see [`EngineBuilder::open_with`]).
    pub async fn open(config: Config) -> Result<Engine> {
        Self::builder(config).open().await
    }

    /// [`Engine::open`], also telling what was repaired (as events and as the result).
    pub async fn open_with(config: Config, events: Events) -> Result<(Engine, Repairs)> {
        Self::builder(config).open_with(events).await
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
        crate::watch::watched(
            &self.inner.probe,
            self.inner.config.fs_deadline,
            move || f(&inner),
        )
        .await
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
    pub fn destroy_dataset(&self, d: &DatasetName) -> Result<()> {
        match self.zfs.destroy(d, true) {
            Ok(()) | Err(ZfsError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Brings metadata and ZFS back in line. `listed`: every dataset below the root with
    /// its `mounted` and `mountpoint`, listed before the metadata was opened (it is listed
    /// here when `None`).
    pub(crate) fn reconcile(&self, listed: Option<Vec<Dataset>>) -> Result<Repairs> {
        let mut repairs = Repairs::default();
        let listed = match listed {
            Some(l) => l,
            // Nothing was interrupted: ZFS holds what the metadata says (every dataset is
            // made after its row and removed before it, each under an operation's lock),
            // and nothing needs a listing.
            None if !self.interrupted()? => {
                self.drop_dead_build_endpoints()?;
                sweep_locks(&self.ops_dir);
                self.refresh_running()?;
                return Ok(repairs);
            }
            None => {
                self.zfs
                    .list_datasets(&self.config.root, Depth::All, &["mounted", "mountpoint"])?
            }
        };
        let mounts = mounted(&listed);
        // 1. Unfinished operations of dead processes: undo (for a removal: finish it).
        self.undo_unfinished(&mounts, &mut repairs)?;
        // 1b. Addresses of builds whose process died (a build's network endpoints).
        self.drop_dead_build_endpoints()?;
        // 2. Datasets listed before rows are read: a row is always written before its
        // dataset and removed after it, so a dataset without a row here is an orphan.
        let parents = [
            &self.container_root,
            &self.image_root,
            &self.volume_root,
            &self.layer_root,
        ];
        let on_disk: Vec<DatasetName> = listed
            .into_iter()
            .map(|d| d.name)
            .filter(|d| d.parent().is_some_and(|parent| parents.contains(&&parent)))
            .filter(|d| !repairs.removed_unfinished.contains(d))
            .collect();
        // The pending rows before the ready ones: a creation running meanwhile (another
        // process) has its row in one or the other, even when it finishes in between.
        let pending_now: Vec<DatasetName> = self
            .store()
            .pending()?
            .into_iter()
            .map(|p| p.dataset)
            .collect();
        let rows = self.store().datasets()?;
        self.remove_orphans(&on_disk, &pending_now, &rows, &mounts, &mut repairs)?;
        // 3. Rows whose dataset vanished. A row may be younger than the listing (made
        // ready by another process meanwhile, its dataset made after the listing): ZFS
        // is asked again before the row goes.
        let on_disk: std::collections::BTreeSet<&DatasetName> = on_disk.iter().collect();
        for (table, key, ds) in rows {
            if !on_disk.contains(&ds) && !self.zfs.exists(&ds)? {
                self.store().delete_row(table, &key)?;
                repairs.dropped_rows.push(ds);
            }
        }
        // 4. Lock files of operations that died with no pending row.
        sweep_locks(&self.ops_dir);
        // 5. Containers whose monitor died.
        self.refresh_running()?;
        Ok(repairs)
    }

    /// Containers whose monitor died: recorded as ended, their resource groups removed
    /// (what was left in them killed).
    fn refresh_running(&self) -> Result<()> {
        let containers = self.store().containers_said_running()?;
        for c in containers {
            if matches!(
                c.runtime.state,
                crate::model::RunState::Running | crate::model::RunState::Starting
            ) {
                self.refresh(c)?;
            }
        }
        Ok(())
    }

    /// Whether an operation died before it finished: a pending row of a dead operation, or
    /// the lock file of one (looked at, not removed). A lock still being made (an
    /// unrenamed `.new`) is no operation yet: nothing is written under its token before
    /// the rename, so a dead one leaves nothing to repair (the sweep removes it), and a
    /// live one about to lock it is not taken for dead.
    pub(crate) fn interrupted(&self) -> Result<bool> {
        let dead = |token: &str| !op_held(&self.ops_dir, token);
        if self.store().pending()?.iter().any(|p| dead(&p.op)) {
            return Ok(true);
        }
        let Ok(entries) = std::fs::read_dir(&self.ops_dir) else {
            return Ok(false);
        };
        Ok(entries.flatten().any(|e| {
            let name = e.file_name();
            name.to_string_lossy()
                .strip_suffix(".lock")
                .is_some_and(dead)
        }))
    }

    /// Undoes (for a removal: finishes) the pending operations of dead processes.
    fn undo_unfinished(
        &self,
        mounts: &[(DatasetName, PathBuf)],
        repairs: &mut Repairs,
    ) -> Result<()> {
        let pending = self.store().pending()?;
        for p in pending {
            if op_alive(&self.ops_dir, &p.op) {
                continue;
            }
            match self.remove_leftover(&p.dataset, mounts) {
                Ok(()) => {
                    self.store().delete_row(p.table, &p.key)?;
                    repairs.removed_unfinished.push(p.dataset);
                }
                // Left pending: a later open tries again.
                Err(why) => repairs.held_back.push(why),
            }
        }
        Ok(())
    }

    /// Drops the network endpoints of builds whose process died.
    pub(crate) fn drop_dead_build_endpoints(&self) -> Result<()> {
        // The store's guard must not live through the loop, which locks it again.
        let endpoints = self.store().build_endpoints()?;
        for (owner, op) in endpoints {
            if !op_alive(&self.ops_dir, &op) {
                if let Ok(id) = Id::parse(&owner) {
                    self.store().delete_endpoints_of(&id)?;
                }
            }
        }
        Ok(())
    }

    /// Removes the datasets of `on_disk` that neither a row of `rows` nor a pending
    /// operation (`pending`, read before `rows`) knows.
    fn remove_orphans(
        &self,
        on_disk: &[DatasetName],
        pending: &[DatasetName],
        rows: &[(crate::meta::Table, String, DatasetName)],
        mounts: &[(DatasetName, PathBuf)],
        repairs: &mut Repairs,
    ) -> Result<()> {
        let mut pending_now = pending.to_vec();
        pending_now.sort();
        let in_rows: std::collections::BTreeSet<&DatasetName> =
            rows.iter().map(|(_, _, ds)| ds).collect();
        for d in on_disk {
            let known = in_rows.contains(d) || pending_now.binary_search(d).is_ok();
            if !known {
                match self.remove_leftover(d, mounts) {
                    Ok(()) => repairs.removed_orphans.push(d.clone()),
                    Err(why) => repairs.held_back.push(why),
                }
            }
        }
        Ok(())
    }

    /// Removes a dataset that a dead operation left, or that no metadata knows: first
    /// stops whatever still runs on it (a build step's jail whose owner was killed), so
    /// that nothing is unmounted under a live process. A dataset whose processes will not
    /// end, or that ZFS will not destroy, is left alone, with the reason.
    fn remove_leftover(
        &self,
        dataset: &DatasetName,
        mounts: &[(DatasetName, PathBuf)],
    ) -> std::result::Result<(), String> {
        for (d, mp) in mounts {
            if d != dataset && !d.as_str().starts_with(&format!("{dataset}/")) {
                continue;
            }
            match kleene_jail::stop_processes_under(mp, LEFTOVER_GRACE) {
                Ok(pids) if pids.is_empty() => {}
                Ok(pids) => log::warn!(
                    "stopped processes {pids:?} left running on {d} by an interrupted operation"
                ),
                Err(kleene_jail::Error::RootNotFound { .. }) => {}
                Err(e) => return Err(format!("left {dataset} as it is: {e}")),
            }
        }
        self.destroy_dataset(dataset)
            .map_err(|e| format!("could not remove {dataset}: {e}"))
    }
}

/// How long processes a dead operation left running get to end after SIGTERM.
const LEFTOVER_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The mounted datasets of `listed` with their mountpoints.
fn mounted(listed: &[Dataset]) -> Vec<(DatasetName, PathBuf)> {
    listed
        .iter()
        .filter(|d| d.properties.get("mounted") == Some("yes"))
        .filter_map(|d| {
            let mp = d.properties.get("mountpoint")?;
            mp.starts_with('/')
                .then(|| (d.name.clone(), PathBuf::from(mp)))
        })
        .collect()
}
