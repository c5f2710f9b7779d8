//! Images: base images from archives or datasets, and their listing, lookup, tagging and
//! removal.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kleene_zfs::{DatasetName, Properties, SnapshotName};

use crate::archive;
use crate::engine::{Engine, Inner, OpLock, PROP_ID};
use crate::error::{CoreError, Object, Result};
use crate::event::{Event, Events};
use crate::fetch::{self, Download};
use crate::id::Id;
use crate::interrupt::{CancelFlag, Interrupt};
use crate::meta::Table;
use crate::model::{Image, ImageConfig, Instruction};
use crate::rootfs;

/// The snapshot every image has: containers are cloned from `<image>@image`.
pub const IMAGE_SNAPSHOT: &str = "image";

/// Where a base image comes from (`klee image create METHOD SOURCE`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BaseSource {
    /// A tar archive (xz, gzip, zstd or plain) at an http(s) or `file://` URL, or a path;
    /// verified against `sha256` when given.
    Fetch { url: String, sha256: Option<String> },
    /// The host's FreeBSD release from the mirror template of the config.
    FetchAuto,
    /// A clone of a snapshot of an existing dataset (the image depends on it).
    ZfsClone(DatasetName),
    /// A copy of an existing dataset by send | receive (independent of it).
    ZfsCopy(DatasetName),
    /// An image of an OCI image layout directory, or an archive of one (a tar, plain or
    /// compressed, like FreeBSD's release OCI images): the one its index names `name` (any
    /// single one without), for `platform` (`os/arch[/variant]`; the host's without).
    /// Its layers are applied in order, whiteouts honoured, each blob and each
    /// uncompressed layer verified against its digest and diff id; its config gives the
    /// image's command, entrypoint, environment, user, working directory and labels.
    OciLayout {
        dir: PathBuf,
        name: Option<String>,
        platform: Option<String>,
    },
}

/// A request for a base image; build it with [`CreateImage::new`] and its setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CreateImage {
    /// Where it comes from.
    pub source: BaseSource,
    /// `name[:tag]`; untagged when `None` (fetch-auto with `autotag` makes one).
    pub tag: Option<String>,
    /// Copy the host's resolv.conf into the image.
    pub dns: bool,
    /// Copy the host's localtime into the image, if the host has one.
    pub localtime: bool,
    /// For fetch-auto without a tag: name it `FreeBSD-<version>:latest`.
    pub autotag: bool,
    /// Stops the creation from outside (Ctrl-C): the partial image is removed and the
    /// result is [`CoreError::Cancelled`].
    pub interrupt: Option<Interrupt>,
    /// Runs freebsd-update(8) on the new image's root (`klee image create --update`):
    /// FreeBSD only; elsewhere [`CoreError::Unsupported`] before any work.
    pub update: bool,
}

impl CreateImage {
    /// Kleene's defaults: dns and localtime copied, autotag on.
    pub fn new(source: BaseSource) -> Self {
        Self {
            source,
            tag: None,
            dns: true,
            localtime: true,
            autotag: true,
            interrupt: None,
            update: false,
        }
    }

    /// Whether freebsd-update(8) brings the new image up to its release's latest patch
    /// level (FreeBSD only).
    pub fn update(mut self, on: bool) -> Self {
        self.update = on;
        self
    }

    /// Whether the host's resolv.conf is copied into the image.
    pub fn dns(mut self, on: bool) -> Self {
        self.dns = on;
        self
    }

    /// Whether the host's localtime is copied into the image.
    pub fn localtime(mut self, on: bool) -> Self {
        self.localtime = on;
        self
    }

    /// Whether fetch-auto without a tag names the image `FreeBSD-<version>:latest`.
    pub fn autotag(mut self, on: bool) -> Self {
        self.autotag = on;
        self
    }

    /// Stops the creation when `interrupt` fires (see [`Interrupt`]).
    pub fn interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = Some(interrupt);
        self
    }

    /// With a `name[:tag]`.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }
}

/// Splits `name[:tag]` (tag `latest` by default) and checks both.
pub fn parse_nametag(s: &str) -> Result<(String, String)> {
    let (name, tag) = match s.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (s, "latest"),
    };
    let bad = |what: &str| CoreError::InvalidInput(format!("invalid image name {s:?}: {what}"));
    if name.is_empty() {
        return Err(bad("the name is empty"));
    }
    if name.len() > 255 || tag.len() > 128 {
        return Err(bad("too long"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(bad("a name begins with a letter or digit"));
    }
    // A registry's port may follow its host in the first component
    // (`127.0.0.1:5000/app`), as pulled images are named.
    let (host, rest) = match name.split_once('/') {
        Some((h, r)) if h.contains(':') => (h, r),
        _ => ("", name),
    };
    if let Some((h, port)) = host.split_once(':') {
        if h.is_empty() || port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad("a ':' in a name is a registry's port (host:port/name)"));
        }
    }
    if let Some(c) = host
        .split(':')
        .next()
        .unwrap_or_default()
        .chars()
        .chain(rest.chars())
        .find(|c| !(c.is_ascii_alphanumeric() || "._-/".contains(*c)))
    {
        return Err(bad(&format!("{c:?} is not allowed in a name")));
    }
    if tag.is_empty() {
        return Err(bad("the tag is empty"));
    }
    if let Some(c) = tag
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
    {
        return Err(bad(&format!("{c:?} is not allowed in a tag")));
    }
    Ok((name.to_string(), tag.to_string()))
}

/// A base image being made: what the steps of `Inner::create_base_image` share.
struct NewBase<'a> {
    req: &'a CreateImage,
    id: &'a Id,
    dataset: &'a DatasetName,
    events: &'a Events,
    cancel: &'a Arc<AtomicBool>,
}

/// The URL and version fetch-auto uses on this host.
pub fn fetch_auto_url(config: &crate::Config) -> Result<(String, String)> {
    let uname = rustix::system::uname();
    let sysname = uname.sysname().to_string_lossy().into_owned();
    let version = match &config.release {
        Some(r) => r.clone(),
        None if sysname == "FreeBSD" => {
            let release = uname.release().to_string_lossy().into_owned();
            // 14.1-RELEASE-p3 -> 14.1-RELEASE: patch levels are not published separately.
            match release.rsplit_once("-p") {
                Some((base, p)) if p.chars().all(|c| c.is_ascii_digit()) => base.to_string(),
                _ => release,
            }
        }
        None => {
            return Err(CoreError::Unsupported(format!(
                "fetch-auto fetches the host's FreeBSD release, and this host runs {sysname}: \
                 set the release (and a mirror template) in the config, or use fetch with a URL"
            )))
        }
    };
    let arch = match &config.arch {
        Some(a) => a.clone(),
        None => match uname.machine().to_string_lossy().as_ref() {
            "x86_64" => "amd64".to_string(),
            "aarch64" => "arm64".to_string(),
            other => other.to_string(),
        },
    };
    let url = config
        .fetch_template
        .replace("{arch}", &arch)
        .replace("{version}", &version);
    Ok((url, version))
}

/// The userland release of a FreeBSD root, from its `/bin/freebsd-version` (a sh script
/// with a `USERLAND_VERSION="14.1-RELEASE-p3"` line), read, never run.
pub(crate) fn userland_version(script: &str) -> Option<String> {
    script.lines().find_map(|l| {
        let v = l.trim().strip_prefix("USERLAND_VERSION=")?;
        let v = v.trim().trim_matches('"').trim_matches('\'');
        (!v.is_empty() && !v.contains('$')).then(|| v.to_string())
    })
}

/// freebsd-update(8)'s command line for the root of a new image of `release`: its own
/// database inside the root, the image's release rather than the host's, fetch and install.
pub(crate) fn freebsd_update_argv(root: &Path, release: &str) -> Vec<std::ffi::OsString> {
    let mut db = root.as_os_str().to_os_string();
    db.push("/var/db/freebsd-update");
    vec![
        "freebsd-update".into(),
        "--not-running-from-cron".into(),
        "-b".into(),
        root.as_os_str().to_os_string(),
        "-d".into(),
        db,
        "--currently-running".into(),
        release.into(),
        "fetch".into(),
        "install".into(),
    ]
}

/// Runs freebsd-update(8) on a new image's root, its output as status lines.
fn freebsd_update(root: &Path, events: &Events) -> Result<()> {
    let script = rootfs::RootDir::open(root)?
        .read_file(
            "bin/freebsd-version",
            rootfs::Symlinks::FollowInRoot,
            1 << 16,
        )
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let release = script
        .as_deref()
        .and_then(userland_version)
        .ok_or_else(|| {
            CoreError::InvalidInput(
                "--update: the image has no readable /bin/freebsd-version to tell its release"
                    .into(),
            )
        })?;
    let db = root.join("var/db/freebsd-update");
    std::fs::create_dir_all(&db)
        .map_err(|e| CoreError::io(format!("creating {}", db.display()), e))?;
    let argv = freebsd_update_argv(root, &release);
    events.status(format!("running freebsd-update for {release}"));
    let out = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        // It pages its report otherwise.
        .env("PAGER", "cat")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| CoreError::io("running freebsd-update", e))?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        events.status(line.to_string());
    }
    // "No updates needed" exits 0; "fetch" before "install" with nothing to install
    // makes install exit 1 with "No updates are available to install".
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() && !text.contains("No updates are available to install") {
        return Err(CoreError::CommandFailed {
            command: argv
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            outcome: format!(
                "returned {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// The command of a base image, as Kleene's: `/bin/sh /etc/rc`.
pub const BASE_IMAGE_CMD: [&str; 2] = ["/bin/sh", "/etc/rc"];

impl Engine {
    /// Creates a base image (`klee image create`). A failure at any step, or dropping the
    /// future, removes the new dataset and writes no metadata.
    pub async fn create_base_image(&self, req: CreateImage, events: Events) -> Result<Image> {
        if req.update && !cfg!(target_os = "freebsd") {
            return Err(CoreError::Unsupported(format!(
                "--update runs freebsd-update(8) on the new image, which only a FreeBSD host has (this one runs {})",
                std::env::consts::OS
            )));
        }
        let mut autotag = None;
        let (source, desc): (Option<Download>, String) = match &req.source {
            BaseSource::Fetch { url, .. } => {
                (Some(Download::open(url).await?), format!("fetch {url}"))
            }
            BaseSource::FetchAuto => {
                let (url, version) = fetch_auto_url(&self.inner.config)?;
                autotag = Some(format!("FreeBSD-{version}:latest"));
                events.status(format!("fetching {url}"));
                (
                    Some(Download::open(&url).await?),
                    format!("fetch-auto {url}"),
                )
            }
            BaseSource::ZfsClone(d) => (None, format!("zfs-clone {d}")),
            BaseSource::ZfsCopy(d) => (None, format!("zfs-copy {d}")),
            BaseSource::OciLayout { dir, name, .. } => (
                None,
                match name {
                    Some(n) => format!("oci-layout {}:{n}", dir.display()),
                    None => format!("oci-layout {}", dir.display()),
                },
            ),
        };
        let nametag = match (&req.tag, autotag) {
            (Some(t), _) => Some(parse_nametag(t)?),
            (None, Some(t)) if req.autotag => Some(parse_nametag(&t)?),
            _ => None,
        };
        // Dropping the future or an interrupt stops the blocking work; an interrupted
        // caller still waits for the partial image to be removed.
        let guard = CancelFlag::new(req.interrupt.as_ref());
        let cancel = guard.flag();
        let image = self
            .blocking(move |inner| match &req.source {
                BaseSource::OciLayout { .. } => {
                    inner.create_from_layout(&req, desc, nametag, &events, &cancel)
                }
                _ => inner.create_base_image(req, source, desc, nametag, events, cancel),
            })
            .await?;
        Ok(image)
    }

    /// Every image, newest first.
    pub async fn images(&self) -> Result<Vec<Image>> {
        self.blocking(|inner| inner.store().images()).await
    }

    /// The image a reference names: full id, unique id prefix, `name`, `name:tag`; an
    /// `@snapshot` suffix is ignored here (see [`Engine::resolve_image`]).
    pub async fn image(&self, reference: &str) -> Result<Image> {
        let reference = reference.to_string();
        self.blocking(move |inner| inner.resolve_image(&reference).map(|(i, _)| i))
            .await
    }

    /// The image and snapshot a reference names: `<ref>@<snapshot>` or `<ref>` (then the
    /// snapshot is `image`). The snapshot must exist.
    pub async fn resolve_image(&self, reference: &str) -> Result<(Image, SnapshotName)> {
        let reference = reference.to_string();
        self.blocking(move |inner| {
            let (image, snap) = inner.resolve_image(&reference)?;
            let snapshot = image
                .dataset
                .snapshot(snap.as_deref().unwrap_or(IMAGE_SNAPSHOT))
                .map_err(|_| {
                    CoreError::InvalidInput(format!("invalid snapshot in {reference:?}"))
                })?;
            // A ready image has its image snapshot (taken before its row was finished);
            // a build step's is asked for.
            if snap.is_some() && !inner.zfs.exists(&snapshot)? {
                return Err(CoreError::NotFound {
                    kind: Object::Snapshot,
                    reference: format!("{}@{}", image.nametag(), snapshot.snapshot()),
                });
            }
            Ok((image, snapshot))
        })
        .await
    }

    /// Gives an image `name[:tag]`; the previous holder becomes untagged.
    pub async fn tag_image(&self, reference: &str, nametag: &str) -> Result<Image> {
        let (name, tag) = parse_nametag(nametag)?;
        let reference = reference.to_string();
        self.blocking(move |inner| {
            let (image, _) = inner.resolve_image(&reference)?;
            let mut store = inner.store();
            store.tag_image(&image.id, &name, &tag)?;
            store.image(&image.id)?.ok_or_else(|| CoreError::NotFound {
                kind: Object::Image,
                reference,
            })
        })
        .await
    }

    /// Removes an image; refused while containers or images depend on it, naming them.
    pub async fn remove_image(&self, reference: &str) -> Result<Id> {
        let reference = reference.to_string();
        self.blocking(move |inner| {
            let (image, _) = inner.resolve_image(&reference)?;
            inner.remove_image(&image)?;
            Ok(image.id)
        })
        .await
    }

    /// Removes untagged images, or with `all` every image, that nothing depends on;
    /// returns the ids removed.
    pub async fn prune_images(&self, all: bool) -> Result<Vec<Id>> {
        self.blocking(move |inner| {
            let mut removed = Vec::new();
            loop {
                let mut progress = false;
                let images = inner.store().images()?;
                for image in images {
                    if !all && !image.name.is_empty() {
                        continue;
                    }
                    match inner.remove_image(&image) {
                        Ok(()) => {
                            removed.push(image.id);
                            progress = true;
                        }
                        Err(CoreError::InUse { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                if !progress {
                    inner.remove_unused_layers()?;
                    // Downloads of pulls given up on an hour ago and more.
                    crate::pull::sweep_blobs(
                        &inner.root_mount,
                        std::time::Duration::from_secs(3600),
                    );
                    return Ok(removed);
                }
            }
        })
        .await
    }
}

impl Inner {
    fn create_base_image(
        &self,
        req: CreateImage,
        source: Option<Download>,
        desc: String,
        nametag: Option<(String, String)>,
        events: Events,
        cancel: Arc<AtomicBool>,
    ) -> Result<Image> {
        let op = OpLock::begin(&self.ops_dir)?;
        let id = Id::generate()?;
        let dataset = self.image_root.child(id.as_str())?;
        self.store()
            .insert_pending_image(&id, &dataset, &op.token)?;
        crate::failpoint("image-after-row");
        let mut temp_snapshot = None;
        let job = NewBase {
            req: &req,
            id: &id,
            dataset: &dataset,
            events: &events,
            cancel: &cancel,
        };
        let made = self.fill_base_image(&job, source, &mut temp_snapshot);
        let result = made.and_then(|oci_config| {
            crate::failpoint("image-before-snapshot");
            self.zfs
                .snapshot(&dataset.snapshot(IMAGE_SNAPSHOT)?, &Properties::new())?;
            crate::failpoint("image-before-finish");
            let config = base_image_config(&desc, oci_config);
            let (name, tag) = nametag.unwrap_or_default();
            self.store().finish_image(&id, &name, &tag, None, &config)
        });
        match result {
            Ok(image) => {
                // zfs-copy's temporary snapshot of the source is no longer needed.
                if let (BaseSource::ZfsCopy(_), Some(s)) = (&req.source, &temp_snapshot) {
                    let _ = self.zfs.destroy_snapshot(s);
                    if let Ok(copied) = dataset.snapshot(s.snapshot()) {
                        let _ = self.zfs.destroy_snapshot(&copied);
                    }
                }
                events.emit(Event::ImageCreated {
                    id: image.id.clone(),
                });
                drop(op);
                Ok(image)
            }
            Err(e) => {
                self.discard_base_image(&id, &dataset, temp_snapshot.as_ref())?;
                drop(op);
                Err(if cancel.load(Ordering::SeqCst) {
                    CoreError::Cancelled
                } else {
                    e
                })
            }
        }
    }

    /// Removes what a failed base image left (its dataset, the temporary snapshot and,
    /// once the dataset is gone, its row); a dataset that stays is left pending for the
    /// next open.
    fn discard_base_image(
        &self,
        id: &Id,
        dataset: &DatasetName,
        temp_snapshot: Option<&SnapshotName>,
    ) -> Result<()> {
        let cleanup = self.destroy_dataset(dataset);
        if let Some(s) = temp_snapshot {
            let _ = self.zfs.destroy_snapshot(s);
        }
        if cleanup.is_ok() {
            self.store().delete_row(Table::Images, id.as_str())?;
        } else {
            // Left pending: the next open finishes the cleanup.
            log::warn!("could not remove {dataset} after a failure: {cleanup:?}");
        }
        Ok(())
    }

    /// Fills the new dataset (made here) from the source; an OCI image's config.
    fn fill_base_image(
        &self,
        job: &NewBase,
        source: Option<Download>,
        temp_snapshot: &mut Option<SnapshotName>,
    ) -> Result<Option<ImageConfig>> {
        match (&job.req.source, source) {
            (BaseSource::Fetch { .. } | BaseSource::FetchAuto, Some(download)) => {
                self.fill_from_archive(job, download).map(|()| None)
            }
            (BaseSource::ZfsClone(src) | BaseSource::ZfsCopy(src), None) => self
                .fill_from_dataset(job, src, temp_snapshot)
                .map(|()| None),
            _ => Err(CoreError::Internal(
                "base image source without its stream".into(),
            )),
        }
    }

    /// fetch, fetch-auto: the archive streamed into a new dataset, its sha256 checked
    /// against the request's (when given) once all of it was read.
    fn fill_from_archive(&self, job: &NewBase, download: Download) -> Result<()> {
        let props = Properties::new().with(PROP_ID, job.id.as_str())?;
        self.zfs.create(job.dataset, &props)?;
        let root = self.mountpoint(job.dataset)?;
        let flag = Arc::clone(job.cancel);
        let cancelled = Box::new(move || flag.load(Ordering::SeqCst));
        let reader = download.metered(job.events.clone(), cancelled);
        let sha256 = reader.sha256();
        let (_, mut decoded) = archive::decompress(reader)?;
        let mut last = Instant::now();
        let stats = archive::extract(&mut decoded, &root, &mut |s: &archive::ExtractStats| {
            if last.elapsed().as_millis() >= 200 {
                last = Instant::now();
                job.events.emit(Event::Extract {
                    entries: s.entries,
                    bytes: s.bytes,
                });
            }
        })?;
        // Read what the tar reader did not need (end padding) so the hash covers the
        // whole file.
        std::io::copy(&mut decoded, &mut std::io::sink())
            .map_err(|e| CoreError::io("reading the archive", e))?;
        drop(decoded);
        job.events.emit(Event::Extract {
            entries: stats.entries,
            bytes: stats.bytes,
        });
        if job.cancel.load(Ordering::SeqCst) {
            return Err(CoreError::Cancelled);
        }
        crate::failpoint("image-after-extract");
        if let BaseSource::Fetch {
            url,
            sha256: Some(want),
        } = &job.req.source
        {
            fetch::verify(url, &sha256.finish(), want)?;
        }
        self.finish_rootfs(job.req, &root, job.events)
    }

    /// zfs-clone, zfs-copy: a snapshot of the source dataset (`temp_snapshot`), cloned or
    /// copied.
    fn fill_from_dataset(
        &self,
        job: &NewBase,
        src: &DatasetName,
        temp_snapshot: &mut Option<SnapshotName>,
    ) -> Result<()> {
        let props = Properties::new().with(PROP_ID, job.id.as_str())?;
        if !self.zfs.exists(src)? {
            return Err(CoreError::NotFound {
                kind: Object::Dataset,
                reference: src.to_string(),
            });
        }
        let snap = src.snapshot(&format!("kleene-{}", job.id))?;
        self.zfs.snapshot(&snap, &Properties::new())?;
        *temp_snapshot = Some(snap.clone());
        if matches!(job.req.source, BaseSource::ZfsClone(_)) {
            self.zfs.clone_snapshot(&snap, job.dataset, &props)?;
        } else {
            self.zfs.copy(&snap, job.dataset)?;
            self.zfs.set(job.dataset, &props)?;
        }
        let root = self.mountpoint(job.dataset)?;
        self.finish_rootfs(job.req, &root, job.events)
    }

    /// dns and localtime: copied from the host, written without following the image's
    /// symlinks.
    pub(crate) fn finish_rootfs(
        &self,
        req: &CreateImage,
        root: &Path,
        events: &Events,
    ) -> Result<()> {
        if req.dns {
            let conf = std::fs::read(&self.config.resolv_conf).map_err(|e| {
                CoreError::io(format!("reading {}", self.config.resolv_conf.display()), e)
            })?;
            let dir = rootfs::RootDir::open(root)?;
            dir.write_file("etc/resolv.conf", rootfs::Symlinks::Refuse, &conf, 0o644)?;
        }
        if req.localtime {
            if let Ok(tz) = std::fs::read(&self.config.localtime) {
                let dir = rootfs::RootDir::open(root)?;
                dir.write_file("etc/localtime", rootfs::Symlinks::Refuse, &tz, 0o644)?;
            }
        }
        if req.update {
            freebsd_update(root, events)?;
        }
        Ok(())
    }

    /// Where a dataset is mounted, mounting it first if it is not (after a reboot, or a
    /// zfs-fuse restart, nothing below the pool may be mounted).
    pub fn mountpoint(&self, dataset: &DatasetName) -> Result<PathBuf> {
        // A dataset below the root inherits its mountpoint: when that path is a mount
        // (another device than its parent directory), it is the dataset's, and no zfs(8)
        // run is needed.
        if let Some(rel) = dataset
            .as_str()
            .strip_prefix(self.config.root.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            let path = self.root_mount.join(rel);
            if let (Some(parent), Ok(meta)) = (path.parent(), std::fs::metadata(&path)) {
                use std::os::unix::fs::MetadataExt;
                if std::fs::metadata(parent).is_ok_and(|p| p.dev() != meta.dev()) {
                    return Ok(path);
                }
            }
        }
        if let Some(mp) = self.zfs.mountpoint(dataset)? {
            return Ok(mp);
        }
        self.zfs.mount(dataset)?;
        self.zfs
            .mountpoint(dataset)?
            .ok_or_else(|| CoreError::NotMounted {
                dataset: dataset.to_string(),
            })
    }

    /// Resolves an image reference; the part after `@`, if any, is returned as is.
    pub fn resolve_image(&self, reference: &str) -> Result<(Image, Option<String>)> {
        let (base, snap) = match reference.rsplit_once('@') {
            Some((b, s)) => (b, Some(s.to_string())),
            None => (reference, None),
        };
        let not_found = || CoreError::NotFound {
            kind: Object::Image,
            reference: reference.to_string(),
        };
        if base.is_empty() {
            return Err(not_found());
        }
        let store = self.store();
        if let Ok(id) = Id::parse(base) {
            if let Some(image) = store.image(&id)? {
                return Ok((image, snap));
            }
        }
        if let Ok((name, tag)) = parse_nametag(base) {
            if let Some(image) = store.image_by_nametag(&name, &tag)? {
                return Ok((image, snap));
            }
        }
        if Id::is_prefix(base) {
            let mut found = store.images_by_prefix(base)?;
            match found.len() {
                0 => {}
                1 => return Ok((found.remove(0), snap)),
                _ => {
                    return Err(CoreError::Ambiguous {
                        kind: Object::Image,
                        reference: base.to_string(),
                        candidates: found.iter().map(|i| i.id.to_string()).collect(),
                    })
                }
            }
        }
        Err(not_found())
    }

    fn remove_image(&self, image: &Image) -> Result<()> {
        let op = OpLock::begin(&self.ops_dir)?;
        {
            let store = self.store();
            let mut users = store.image_containers(&image.id)?;
            users.extend(
                store
                    .image_children(&image.id)?
                    .into_iter()
                    .map(|c| format!("image {}", c.nametag())),
            );
            if !users.is_empty() {
                return Err(CoreError::InUse {
                    kind: Object::Image,
                    name: image.nametag(),
                    users,
                });
            }
            if !store.mark_removing(Table::Images, image.id.as_str(), &op.token)? {
                return Err(CoreError::NotFound {
                    kind: Object::Image,
                    reference: image.id.to_string(),
                });
            }
        }
        // A zfs-clone base image was cloned from a snapshot made for it: that goes too.
        let origin = match self.zfs.origin(&image.dataset) {
            Ok(o) => o,
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        self.destroy_dataset(&image.dataset)?;
        if let Some(s) = origin.filter(|s| s.snapshot() == format!("kleene-{}", image.id)) {
            let _ = self.zfs.destroy_snapshot(&s);
        }
        self.store().delete_row(Table::Images, image.id.as_str())?;
        drop(op);
        // The layers it was cloned from go when nothing else uses them.
        if !image.config.layers.is_empty() {
            if let Err(e) = self.remove_unused_layers() {
                log::warn!("removing unused layers: {e}");
            }
        }
        Ok(())
    }
}

/// A new base image's configuration: an OCI image's own, else a booting system's; its
/// history the one `FROM {desc}`.
fn base_image_config(desc: &str, oci_config: Option<ImageConfig>) -> ImageConfig {
    let from = Instruction {
        text: format!("FROM {desc}"),
        snapshot: None,
    };
    match oci_config {
        Some(c) => ImageConfig {
            instructions: vec![from],
            ..c
        },
        None => ImageConfig {
            // As kleened's base images: a container without a command boots the
            // system, which starts its services and exits (the container runs
            // on).
            cmd: BASE_IMAGE_CMD.iter().map(|s| s.to_string()).collect(),
            instructions: vec![from],
            ..ImageConfig::default()
        },
    }
}

#[cfg(test)]
mod update_tests {
    use super::*;

    #[test]
    fn the_release_is_read_from_freebsd_version_and_never_run() {
        let script = "#!/bin/sh\n# comment\nKERNEL_VERSION=\"14.1-RELEASE\"\nUSERLAND_VERSION=\"14.1-RELEASE-p3\"\n";
        assert_eq!(userland_version(script).as_deref(), Some("14.1-RELEASE-p3"));
        assert_eq!(
            userland_version("USERLAND_VERSION=13.2-RELEASE\n").as_deref(),
            Some("13.2-RELEASE")
        );
        assert_eq!(userland_version("USERLAND_VERSION=\"$(uname -r)\"\n"), None);
        assert_eq!(userland_version("echo hi\n"), None);
    }

    #[test]
    fn freebsd_update_works_inside_the_image() {
        let argv = freebsd_update_argv(Path::new("/pool/kleene/image/abc"), "14.1-RELEASE");
        let argv: Vec<String> = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            argv,
            [
                "freebsd-update",
                "--not-running-from-cron",
                "-b",
                "/pool/kleene/image/abc",
                "-d",
                "/pool/kleene/image/abc/var/db/freebsd-update",
                "--currently-running",
                "14.1-RELEASE",
                "fetch",
                "install"
            ]
        );
    }
}
