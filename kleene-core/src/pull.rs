//! Pulling images from registries (`klee pull`, `FROM registry/name:tag`): the reference
//! resolved for the platform, the layers that are not here downloaded (a few at once,
//! into `<root>/blobs`, resumed after an interruption, verified as they stream) and made
//! in order as shared layer datasets, then the image cloned from the top layer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kleene_oci::registry::{Client, Reference, RegistryConfig};
use kleene_oci::{Digest, Layer, Platform};

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
    /// all here costs one clone. Dropping the future or an interrupt stops it: finished
    /// layers stay (a second pull goes on from them), partial downloads stay in
    /// `<root>/blobs` and are resumed.
    pub async fn pull_image(&self, req: PullImage, events: Events) -> Result<Image> {
        let reference = Reference::parse(&req.reference).map_err(oci_error)?;
        let platform = match &req.platform {
            Some(p) => Platform::parse(p).map_err(oci_error)?,
            None => Platform::host(),
        };
        let nametag = match &req.tag {
            Some(t) => Some(parse_nametag(t)?),
            None => local_name(&reference),
        };
        let client = client_of(&self.inner.config)?;
        events.status(format!("pulling {reference} for {platform}"));
        let remote = client
            .resolve(&reference, &platform)
            .await
            .map_err(oci_error)?;
        // A platform asked for must be the image's (a single image, not an index, is
        // taken whatever its platform when none is asked for).
        if let (Some(_), Some(got)) = (&req.platform, &remote.image.settings.platform) {
            if !platform.matches(&got.os, &got.arch, got.variant.as_deref()) {
                return Err(CoreError::NotFound {
                    kind: crate::error::Object::Image,
                    reference: format!(
                        "{reference} has no image for {platform} (its image is for {got})"
                    ),
                });
            }
        }
        let top_digest = remote.top_digest.clone();
        let image = Arc::new(remote.image);
        events.status(format!("digest: {}", image.manifest_digest));
        // Signatures before anything is downloaded or used.
        if let Some(policy) = crate::sign::policy_for(
            &self.inner.config.registries,
            &reference,
            &req.verify_keys,
            req.lookaside.as_deref(),
        ) {
            let mut digests = vec![top_digest.clone()];
            if image.manifest_digest != top_digest {
                digests.push(image.manifest_digest.clone());
            }
            let said = crate::sign::verify(&client, &reference, &digests, &policy).await?;
            events.status(said);
        }

        // The same image pulled from the same reference before: it is up to date (as
        // Docker says); it takes the name again if another image took it.
        let (digest, from) = (image.manifest_digest.to_string(), reference.to_string());
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
        if let Some(here) = here {
            events.status(format!("image is up to date: {}", here.id));
            return match nametag {
                Some((name, tag)) if here.name != name || here.tag != tag => {
                    self.tag_image(here.id.as_str(), &format!("{name}:{tag}"))
                        .await
                }
                _ => Ok(here),
            };
        }

        let guard = CancelFlag::new(req.interrupt.as_ref());
        let cancel = guard.flag();

        // Which layers are here already.
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

        // Downloads start in layer order, a few at once; layers are made in order as
        // their blobs arrive.
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
                client.clone(),
                reference.clone(),
                layer.clone(),
                dest,
                Arc::clone(&limit),
                events.clone(),
                Arc::clone(&cancel),
            ))));
        }
        let abort = AbortAll(fetches.iter().flatten().map(|t| t.abort_handle()).collect());
        let total = image.layers.len();
        let mut below: Option<Digest> = None;
        for (i, (layer, fetch)) in image.layers.iter().zip(fetches.iter_mut()).enumerate() {
            let made = match fetch.take() {
                None => false,
                Some(task) => {
                    let path = match task.await {
                        Ok(r) => r?,
                        Err(e) => return Err(CoreError::Internal(format!("a download task: {e}"))),
                    };
                    if cancel.load(Ordering::SeqCst) {
                        return Err(CoreError::Cancelled);
                    }
                    crate::failpoint("pull-after-download");
                    let (layer2, below2, events2, cancel2, path2) = (
                        layer.clone(),
                        below.clone(),
                        events.clone(),
                        Arc::clone(&cancel),
                        path.clone(),
                    );
                    let made = self
                        .blocking(move |inner| {
                            let mut open = || -> Result<Box<dyn std::io::Read + Send>> {
                                let f = std::fs::File::open(&path2).map_err(|e| {
                                    CoreError::io(format!("opening {}", path2.display()), e)
                                })?;
                                // Verified again as it is read: the file could have
                                // changed since it was downloaded.
                                Ok(Box::new(kleene_oci::VerifyingReader::new(
                                    f,
                                    layer2.digest.clone(),
                                    layer2.size,
                                )))
                            };
                            inner.make_layer(
                                &layer2,
                                below2.as_ref(),
                                &mut open,
                                &events2,
                                &cancel2,
                            )
                        })
                        .await;
                    let made = match made {
                        Ok(m) => m,
                        // A layer refused (not one stopped): the image is bad, and what
                        // was downloaded for it is of no use. (Downloads stopped by a
                        // cancel or a kill stay, to be resumed.)
                        Err(e) if !matches!(e, CoreError::Cancelled) => {
                            drop(abort);
                            for d in &dests {
                                let _ = std::fs::remove_file(d);
                            }
                            return Err(e);
                        }
                        Err(e) => return Err(e),
                    };
                    let _ = std::fs::remove_file(&path);
                    made
                }
            };
            events.status(format!(
                "layer {}/{total} {}: {}",
                i + 1,
                short(&layer.diff_id),
                if made { "pulled" } else { "already present" }
            ));
            below = Some(layer.chain_id.clone());
        }
        crate::failpoint("pull-before-image");
        let origin = ImageOrigin {
            reference: reference.to_string(),
            digest: image.manifest_digest.to_string(),
            index_digest: if top_digest != image.manifest_digest {
                top_digest.to_string()
            } else {
                String::new()
            },
            platform: image
                .settings
                .platform
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default(),
        };
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
}

/// Downloads one layer's blob to `dest` (resuming what is there), with progress events.
async fn download(
    client: Client,
    reference: Reference,
    layer: Layer,
    dest: PathBuf,
    limit: Arc<tokio::sync::Semaphore>,
    events: Events,
    cancel: Arc<AtomicBool>,
) -> Result<PathBuf> {
    let _permit = limit
        .acquire_owned()
        .await
        .map_err(|_| CoreError::Cancelled)?;
    if cancel.load(Ordering::SeqCst) {
        return Err(CoreError::Cancelled);
    }
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
    client
        .fetch_blob(&reference, &layer.digest, layer.size, &dest, &mut progress)
        .await
        .map_err(|e| CoreError::InvalidInput(format!("layer {}: {e}", layer.digest)))?;
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
