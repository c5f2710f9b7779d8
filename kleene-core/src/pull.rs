//! Pulling images from registries (`klee pull`, `FROM registry/name:tag`): the reference
//! resolved for the platform, the layers that are not here downloaded (a few at once,
//! into `<root>/blobs`, resumed after an interruption, verified as they stream) and made
//! in order as shared layer datasets, then the image cloned from the top layer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kleene_oci::registry::{Client, Reference, RegistryConfig, RemoteImage};
use kleene_oci::{Digest, Layer, Platform, ResolvedImage};

use crate::engine::Engine;
use crate::error::{CoreError, Result};
use crate::event::{Event, Events};
use crate::image::{parse_nametag, BaseSource, CreateImage};
use crate::interrupt::{CancelFlag, Interrupt};
use crate::model::{Image, ImageOrigin};
use crate::oci::{oci_error, short, OciImage};

/// How many layer blobs download at once.
const PARALLEL_DOWNLOADS: usize = 3;

/// A request to pull an image; build it with [`PullImage::new`] and its setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PullImage {
    /// `[registry/]repository[:tag][@digest]`, as Docker reads it.
    pub reference: String,
    /// `os/arch[/variant]`; the host's when `None`.
    pub platform: Option<String>,
    /// The local `name[:tag]`; the reference's name and tag when `None` (Docker Hub's
    /// `docker.io/library/` left out), untagged for a reference by digest only.
    pub tag: Option<String>,
    /// Copy the host's resolv.conf into the image (as base images get it).
    pub dns: bool,
    /// Copy the host's localtime into the image.
    pub localtime: bool,
    /// Stops the pull from outside: what is half-made is removed, finished layers stay.
    pub interrupt: Option<Interrupt>,
    /// Public keys (files) one of the image's signatures must verify with (`--verify-key`),
    /// whatever the config's policy says: PEM keys for cosign signatures in the
    /// registry, OpenPGP keys for simple signatures in the lookaside store.
    pub verify_keys: Vec<PathBuf>,
    /// The lookaside store (a directory) of simple signatures, instead of the policy's.
    pub lookaside: Option<String>,
}

impl PullImage {
    /// A pull of `reference` with Kleene's defaults (dns and localtime copied).
    pub fn new(reference: impl Into<String>) -> Self {
        Self {
            reference: reference.into(),
            platform: None,
            tag: None,
            dns: true,
            localtime: true,
            interrupt: None,
            verify_keys: Vec::new(),
            lookaside: None,
        }
    }

    /// Requires a signature that verifies with `key` (repeatable: any of them).
    pub fn verify_key(mut self, key: impl Into<PathBuf>) -> Self {
        self.verify_keys.push(key.into());
        self
    }

    /// Reads simple signatures from the lookaside directory `store`.
    pub fn lookaside(mut self, store: impl Into<String>) -> Self {
        self.lookaside = Some(store.into());
        self
    }

    /// For another platform than the host's (`freebsd/amd64`, `linux/arm64/v8`).
    pub fn platform(mut self, platform: impl Into<String>) -> Self {
        self.platform = Some(platform.into());
        self
    }

    /// With a local `name[:tag]`.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
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

    /// Stops the pull when `interrupt` fires.
    pub fn interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = Some(interrupt);
        self
    }
}

/// The local name of a pulled image: `registry/repository` (`repository` on Docker Hub,
/// without `library/`), with the reference's tag; `None` for a reference by digest only.
pub fn local_name(r: &Reference) -> Option<(String, String)> {
    let tag = r.tag.clone()?;
    let name = if r.registry == kleene_oci::registry::DEFAULT_REGISTRY {
        r.repository
            .strip_prefix("library/")
            .unwrap_or(&r.repository)
            .to_string()
    } else {
        format!("{}/{}", r.registry, r.repository)
    };
    Some((name, tag))
}

/// Whether an image name names a registry explicitly (`host.domain/...`,
/// `host:port/...`, `localhost/...`): `FROM` pulls those when they are not here.
pub fn names_a_registry(name: &str) -> bool {
    match name.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

/// The registry client of an engine's config.
pub(crate) fn client_of(config: &crate::Config) -> Result<Client> {
    let r = &config.registries;
    Client::new(RegistryConfig {
        insecure: r.insecure.clone(),
        credentials: r
            .credentials
            .iter()
            .map(|(k, c)| {
                (
                    k.clone(),
                    kleene_oci::registry::Credentials {
                        username: c.username.clone(),
                        password: c.password.clone(),
                    },
                )
            })
            .collect(),
        ..RegistryConfig::default()
    })
    .map_err(oci_error)
}

/// Removes from `<root>/blobs` what interrupted pulls and pushes left there longer
/// than `age` ago (partial downloads kept for a resume, export directories of pushes
/// that died); returns how many entries went.
pub(crate) fn sweep_blobs(root_mount: &std::path::Path, age: std::time::Duration) -> usize {
    let dir = root_mount.join("blobs");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|elapsed| elapsed > age);
        if !old {
            continue;
        }
        let path = e.path();
        let gone = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if gone.is_ok() {
            removed += 1;
        }
    }
    removed
}

/// A download of one layer blob running on its own task.
type Fetch = tokio::task::JoinHandle<Result<PathBuf>>;

/// Ends the download tasks when dropped (the pull failed or was dropped).
struct AbortAll(Vec<tokio::task::AbortHandle>);

impl Drop for AbortAll {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

impl Engine {
    /// Pulls an image from a registry (`klee pull`). Layers already here (by chain id,
    /// whichever image brought them) are not downloaded again; an image whose layers are
    /// all here costs one clone, and one pulled before from the same reference is up to
    /// date. Signatures are checked first when a policy applies. Dropping the future or
    /// an interrupt stops it: finished layers stay (a second pull goes on from them),
    /// partial downloads stay in `<root>/blobs` and are resumed.
    pub async fn pull_image(&self, req: PullImage, events: Events) -> Result<Image> {
        let reference = Reference::parse(&req.reference).map_err(oci_error)?;
        let nametag = match &req.tag {
            Some(t) => Some(parse_nametag(t)?),
            None => local_name(&reference),
        };
        let client = client_of(&self.inner.config)?;
        let remote = resolve_for(&client, &reference, req.platform.as_deref(), &events).await?;
        // The digests a signature may name: what the tag names, and the platform's image.
        let mut digests = vec![remote.top_digest.clone()];
        if remote.image.manifest_digest != remote.top_digest {
            digests.push(remote.image.manifest_digest.clone());
        }
        // Signatures before anything is downloaded or used.
        if let Some(policy) = crate::sign::policy_for(
            &self.inner.config.registries,
            &reference,
            &req.verify_keys,
            req.lookaside.as_deref(),
        ) {
            let said = crate::sign::verify(&client, &reference, &digests, &policy).await?;
            events.status(said);
        }
        let origin = ImageOrigin {
            reference: reference.to_string(),
            digest: remote.image.manifest_digest.to_string(),
            index_digest: digests
                .get(1)
                .map(|_| remote.top_digest.to_string())
                .unwrap_or_default(),
            platform: remote
                .image
                .settings
                .platform
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default(),
        };
        if let Some(here) = self
            .pulled_before(&origin, nametag.clone(), &events)
            .await?
        {
            return Ok(here);
        }
        let guard = CancelFlag::new(req.interrupt.as_ref());
        let cancel = guard.flag();
        let image = Arc::new(remote.image);
        let job = LayerJob {
            client,
            reference: reference.clone(),
            events: events.clone(),
            cancel: Arc::clone(&cancel),
        };
        self.pull_layers(&job, &image).await?;
        crate::failpoint("pull-before-image");
        let create = CreateImage::new(BaseSource::FetchAuto)
            .dns(req.dns)
            .localtime(req.localtime);
        let desc = reference.to_string();
        self.blocking(move |inner| {
            inner.image_on_layers(OciImage {
                req: &create,
                image: &image,
                desc,
                nametag,
                origin,
                events: &events,
                cancel: &cancel,
            })
        })
        .await
    }

    /// The image pulled before from the same reference with the same digest, if any: up
    /// to date (as Docker says), named `nametag` again if another image took the name.
    async fn pulled_before(
        &self,
        origin: &ImageOrigin,
        nametag: Option<(String, String)>,
        events: &Events,
    ) -> Result<Option<Image>> {
        let (digest, from) = (origin.digest.clone(), origin.reference.clone());
        let here = self
            .blocking(move |inner| {
                Ok(inner.store().images()?.into_iter().find(|i| {
                    i.config
                        .origin
                        .as_ref()
                        .is_some_and(|o| o.digest == digest && o.reference == from)
                }))
            })
            .await?;
        let Some(here) = here else {
            return Ok(None);
        };
        events.status(format!("image is up to date: {}", here.id));
        Ok(Some(match nametag {
            Some((name, tag)) if here.name != name || here.tag != tag => {
                self.tag_image(here.id.as_str(), &format!("{name}:{tag}"))
                    .await?
            }
            _ => here,
        }))
    }

    /// Makes the image's layers that are not here: their blobs downloaded a few at once,
    /// in layer order, each layer made as soon as its blob (and the layer below) is
    /// there. A layer refused removes this pull's downloads (the image is bad); a cancel
    /// or a kill leaves them to be resumed.
    async fn pull_layers(&self, job: &LayerJob, image: &ResolvedImage) -> Result<()> {
        let chains: Vec<String> = image
            .layers
            .iter()
            .map(|l| l.chain_id.to_string())
            .collect();
        let present: Vec<bool> = self
            .blocking(move |inner| {
                let store = inner.store();
                chains
                    .iter()
                    .map(|c| Ok(store.layer(c)?.is_some_and(|r| r.ready)))
                    .collect()
            })
            .await?;
        let blobs = self.inner.root_mount.join("blobs");
        std::fs::create_dir_all(&blobs)
            .map_err(|e| CoreError::io(format!("creating {}", blobs.display()), e))?;
        let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL_DOWNLOADS));
        let mut fetches: Vec<Option<Fetch>> = Vec::with_capacity(image.layers.len());
        let mut dests: Vec<PathBuf> = Vec::new();
        for (layer, here) in image.layers.iter().zip(&present) {
            if *here {
                fetches.push(None);
                continue;
            }
            let dest = blobs.join(format!("sha256-{}", layer.digest.hex()));
            dests.push(dest.clone());
            fetches.push(Some(tokio::spawn(download(
                job.clone(),
                layer.clone(),
                dest,
                Arc::clone(&limit),
            ))));
        }
        let abort = AbortAll(fetches.iter().flatten().map(|t| t.abort_handle()).collect());
        let total = image.layers.len();
        let mut below: Option<Digest> = None;
        for (i, (layer, fetch)) in image.layers.iter().zip(fetches.iter_mut()).enumerate() {
            let made = match fetch.take() {
                None => false,
                Some(task) => {
                    let path = task
                        .await
                        .map_err(|e| CoreError::Internal(format!("a download task: {e}")))??;
                    match self
                        .apply_downloaded(job, layer, below.clone(), &path)
                        .await
                    {
                        Ok(made) => {
                            let _ = std::fs::remove_file(&path);
                            made
                        }
                        Err(e) => {
                            if !matches!(e, CoreError::Cancelled) {
                                drop(abort);
                                for d in &dests {
                                    let _ = std::fs::remove_file(d);
                                }
                            }
                            return Err(e);
                        }
                    }
                }
            };
            job.events.status(format!(
                "layer {}/{total} {}: {}",
                i + 1,
                short(&layer.diff_id),
                if made { "pulled" } else { "already present" }
            ));
            below = Some(layer.chain_id.clone());
        }
        Ok(())
    }

    /// Makes `layer` on `below` from its downloaded blob at `path` (verified again as
    /// it is read: the file could have changed since it was downloaded).
    async fn apply_downloaded(
        &self,
        job: &LayerJob,
        layer: &Layer,
        below: Option<Digest>,
        path: &std::path::Path,
    ) -> Result<bool> {
        if job.cancel.load(Ordering::SeqCst) {
            return Err(CoreError::Cancelled);
        }
        crate::failpoint("pull-after-download");
        let (layer, events, cancel, path) = (
            layer.clone(),
            job.events.clone(),
            Arc::clone(&job.cancel),
            path.to_path_buf(),
        );
        self.blocking(move |inner| {
            let mut open = || -> Result<Box<dyn std::io::Read + Send>> {
                let f = std::fs::File::open(&path)
                    .map_err(|e| CoreError::io(format!("opening {}", path.display()), e))?;
                Ok(Box::new(kleene_oci::VerifyingReader::new(
                    f,
                    layer.digest.clone(),
                    layer.size,
                )))
            };
            inner.make_layer(&layer, below.as_ref(), &mut open, &events, &cancel)
        })
        .await
    }
}

/// What the downloads and layers of one pull share.
#[derive(Debug, Clone)]
struct LayerJob {
    client: Client,
    reference: Reference,
    events: Events,
    cancel: Arc<AtomicBool>,
}

/// Resolves `reference` for `platform` (the host's when `None`); a platform asked for
/// must be the image's (a single image, not an index, is taken whatever its platform
/// when none is asked for).
async fn resolve_for(
    client: &Client,
    reference: &Reference,
    platform: Option<&str>,
    events: &Events,
) -> Result<RemoteImage> {
    let wanted = match platform {
        Some(p) => Platform::parse(p).map_err(oci_error)?,
        None => Platform::host(),
    };
    events.status(format!("pulling {reference} for {wanted}"));
    let remote = client
        .resolve(reference, &wanted)
        .await
        .map_err(oci_error)?;
    if let (Some(_), Some(got)) = (platform, &remote.image.settings.platform) {
        if !wanted.matches(&got.os, &got.arch, got.variant.as_deref()) {
            return Err(CoreError::NotFound {
                kind: crate::error::Object::Image,
                reference: format!(
                    "{reference} has no image for {wanted} (its image is for {got})"
                ),
            });
        }
    }
    events.status(format!("digest: {}", remote.image.manifest_digest));
    Ok(remote)
}

/// Downloads one layer's blob to `dest` (resuming what is there), with progress events.
async fn download(
    job: LayerJob,
    layer: Layer,
    dest: PathBuf,
    limit: Arc<tokio::sync::Semaphore>,
) -> Result<PathBuf> {
    let _permit = limit
        .acquire_owned()
        .await
        .map_err(|_| CoreError::Cancelled)?;
    if job.cancel.load(Ordering::SeqCst) {
        return Err(CoreError::Cancelled);
    }
    let events = job.events.clone();
    let started = Instant::now();
    let mut last = Instant::now();
    let size = layer.size;
    let mut progress = |bytes: u64| {
        if last.elapsed().as_millis() >= 200 {
            last = Instant::now();
            let secs = started.elapsed().as_secs_f64().max(0.001);
            events.emit(Event::Download {
                bytes,
                total: Some(size),
                rate: bytes as f64 / secs,
            });
        }
    };
    job.client
        .fetch_blob(
            &job.reference,
            &layer.digest,
            layer.size,
            &dest,
            &mut progress,
        )
        .await
        .map_err(oci_error)?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn local_names_are_dockers() {
        let name = |s: &str| local_name(&Reference::parse(s).unwrap());
        assert_eq!(name("alpine"), Some(("alpine".into(), "latest".into())));
        assert_eq!(
            name("docker.io/team/app:2"),
            Some(("team/app".into(), "2".into()))
        );
        assert_eq!(
            name("127.0.0.1:5000/team/app:v1"),
            Some(("127.0.0.1:5000/team/app".into(), "v1".into()))
        );
        let digest = format!("127.0.0.1:5000/app@sha256:{}", "a".repeat(64));
        assert_eq!(name(&digest), None);
        // And the engine takes those names.
        assert!(parse_nametag("127.0.0.1:5000/team/app:v1").is_ok());
        assert!(parse_nametag("localhost:5000/app").is_ok());
        assert!(parse_nametag("host:port/app").is_err());
    }

    #[test]
    fn from_pulls_only_names_with_a_registry() {
        assert!(names_a_registry("registry.example/app:1"));
        assert!(names_a_registry("127.0.0.1:5000/app"));
        assert!(names_a_registry("localhost/app"));
        assert!(!names_a_registry("FreeBSD-14.1:latest"));
        assert!(!names_a_registry("team/app"));
    }

    #[test]
    fn old_leftovers_of_pulls_are_swept() {
        let d = tempfile::tempdir().unwrap();
        let blobs = d.path().join("blobs");
        std::fs::create_dir_all(blobs.join("push-old")).unwrap();
        std::fs::write(blobs.join("sha256-old"), b"partial").unwrap();
        std::fs::write(blobs.join("sha256-new"), b"partial").unwrap();
        let long_ago = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 1_000_000,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 1_000_000,
                tv_nsec: 0,
            },
        };
        for old in ["push-old", "sha256-old"] {
            rustix::fs::utimensat(
                rustix::fs::CWD,
                blobs.join(old),
                &long_ago,
                rustix::fs::AtFlags::empty(),
            )
            .unwrap();
        }
        assert_eq!(
            sweep_blobs(d.path(), std::time::Duration::from_secs(3600)),
            2
        );
        assert!(blobs.join("sha256-new").exists());
        assert!(!blobs.join("sha256-old").exists());
    }
}
