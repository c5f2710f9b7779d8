//! Images of OCI images: layouts (directories and archives) and registries. Their layers
//! become shared layer datasets (see `layer.rs`); the image is a clone of the top layer
//! with the host's resolv.conf and localtime when asked, and the config's settings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kleene_oci::{Digest, ResolvedImage};
use kleene_zfs::Properties;

use crate::archive;
use crate::engine::{Inner, OpLock, PROP_ID};
use crate::error::{CoreError, Object, Result};
use crate::event::{Event, Events};
use crate::id::Id;
use crate::image::{BaseSource, CreateImage, IMAGE_SNAPSHOT};
use crate::meta::Table;
use crate::model::{Image, ImageConfig, ImageOrigin, Instruction};

/// kleene-oci's errors as the engine's: what is not there is `NotFound` (an image a
/// layout or index lacks, a manifest a registry answers 404 for), the rest
/// [`CoreError::Oci`] as it is.
pub(crate) fn oci_error(e: kleene_oci::Error) -> CoreError {
    match e {
        kleene_oci::Error::NotFound(m) => CoreError::NotFound {
            kind: Object::Image,
            reference: m,
        },
        kleene_oci::Error::Http { status: 404, .. } => CoreError::NotFound {
            kind: Object::Image,
            reference: e.to_string(),
        },
        other => CoreError::Oci(other),
    }
}

/// The image config of an OCI image's.
pub(crate) fn image_config_of(image: &ResolvedImage) -> ImageConfig {
    let s = &image.settings;
    let c = image.config.config().as_ref();
    ImageConfig {
        cmd: s.cmd.clone(),
        entrypoint: s.entrypoint.clone(),
        env: s.env.clone(),
        user: s.user.clone(),
        workdir: s.workdir.clone(),
        labels: s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        expose: c
            .and_then(|c| c.exposed_ports().clone())
            .unwrap_or_default(),
        volumes: c.and_then(|c| c.volumes().clone()).unwrap_or_default(),
        stop_signal: c
            .and_then(|c| c.stop_signal().as_deref())
            .and_then(|s| s.parse().ok()),
        layers: image
            .layers
            .iter()
            .map(|l| l.chain_id.to_string())
            .collect(),
        ..ImageConfig::default()
    }
}

/// What a new image of an OCI image is made of.
pub(crate) struct OciImage<'a> {
    pub req: &'a CreateImage,
    pub image: &'a ResolvedImage,
    /// The `FROM ...` text of its first instruction.
    pub desc: String,
    pub nametag: Option<(String, String)>,
    pub origin: ImageOrigin,
    pub events: &'a Events,
    pub cancel: &'a Arc<AtomicBool>,
}

impl Inner {
    /// An image of an OCI image layout (a directory, or an archive of one): its layers
    /// made (or found) as layer datasets, each blob verified against its digest and size
    /// and each uncompressed layer against its diff id, then the image cloned from the
    /// top layer.
    pub(crate) fn create_from_layout(
        &self,
        req: &CreateImage,
        desc: String,
        nametag: Option<(String, String)>,
        events: &Events,
        cancel: &Arc<AtomicBool>,
    ) -> Result<Image> {
        let BaseSource::OciLayout {
            dir,
            name,
            platform,
        } = &req.source
        else {
            return Err(CoreError::Internal("not an OCI layout source".into()));
        };
        let (dir, name, platform) = (dir.as_path(), name.as_deref(), platform.as_deref());
        let (source, image) = Source::open(dir, name, platform, events)?;
        let mut below: Option<Digest> = None;
        for (i, layer) in image.layers.iter().enumerate() {
            if cancel.load(Ordering::SeqCst) {
                return Err(CoreError::Cancelled);
            }
            let mut open = || source.blob(layer);
            let made = self.make_layer(layer, below.as_ref(), &mut open, events, cancel)?;
            events.status(format!(
                "layer {}/{} {}: {}",
                i + 1,
                image.layers.len(),
                short(&layer.diff_id),
                if made { "applied" } else { "already present" }
            ));
            below = Some(layer.chain_id.clone());
        }
        let origin = ImageOrigin {
            reference: match name {
                Some(n) => format!("{}:{n}", dir.display()),
                None => dir.display().to_string(),
            },
            digest: image.manifest_digest.to_string(),
            index_digest: String::new(),
            platform: image
                .settings
                .platform
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default(),
        };
        self.image_on_layers(OciImage {
            req,
            image: &image,
            desc,
            nametag,
            origin,
            events,
            cancel,
        })
    }

    /// The image of an OCI image whose layers are all here: a clone of the top layer (a
    /// new dataset for an image without layers), the host's resolv.conf and localtime
    /// when asked, its `@image` snapshot, the config's settings.
    pub(crate) fn image_on_layers(&self, job: OciImage<'_>) -> Result<Image> {
        let op = OpLock::begin(&self.ops_dir)?;
        let id = Id::generate()?;
        let dataset = self.image_root.child(id.as_str())?;
        let top = job.image.layers.last().map(|l| l.chain_id.clone());
        match &top {
            Some(chain) => {
                if !self.store().insert_pending_image_on_layer(
                    &id,
                    &dataset,
                    &op.token,
                    &chain.to_string(),
                )? {
                    return Err(CoreError::Internal(format!(
                        "layer {chain} was removed while its image was being made"
                    )));
                }
            }
            None => self
                .store()
                .insert_pending_image(&id, &dataset, &op.token)?,
        }
        crate::failpoint("image-after-row");
        let result = (|| {
            let props = Properties::new().with(PROP_ID, id.as_str())?;
            match &top {
                Some(chain) => {
                    self.zfs
                        .clone_snapshot(&self.layer_snapshot(chain)?, &dataset, &props)?
                }
                None => self.zfs.create(&dataset, &props)?,
            }
            let root = self.mountpoint(&dataset)?;
            self.finish_rootfs(job.req, &root, job.events)?;
            if job.cancel.load(Ordering::SeqCst) {
                return Err(CoreError::Cancelled);
            }
            crate::failpoint("image-before-snapshot");
            self.zfs
                .snapshot(&dataset.snapshot(IMAGE_SNAPSHOT)?, &Properties::new())?;
            crate::failpoint("image-before-finish");
            let config = ImageConfig {
                instructions: vec![Instruction {
                    text: format!("FROM {}", job.desc),
                    snapshot: None,
                }],
                origin: Some(job.origin.clone()),
                ..image_config_of(job.image)
            };
            let (name, tag) = job.nametag.clone().unwrap_or_default();
            self.store().finish_image(&id, &name, &tag, None, &config)
        })();
        match result {
            Ok(image) => {
                job.events.emit(Event::ImageCreated {
                    id: image.id.clone(),
                });
                drop(op);
                Ok(image)
            }
            Err(e) => {
                if self.destroy_dataset(&dataset).is_ok() {
                    self.store().delete_row(Table::Images, id.as_str())?;
                }
                Err(e)
            }
        }
    }
}

/// Where an image's layers are read from.
enum Source {
    Oci(Box<kleene_oci::Layout>),
    Docker(kleene_oci::docker_archive::DockerArchive),
}

/// An opened layout or docker-archive, and the temporary directory an archive was
/// unpacked into (removed when dropped).
struct Opened {
    source: Source,
    _unpacked: Option<tempfile::TempDir>,
}

impl Opened {
    fn blob(&self, layer: &kleene_oci::Layer) -> Result<Box<dyn std::io::Read + Send>> {
        Ok(match &self.source {
            Source::Oci(layout) => {
                Box::new(layout.blob(&layer.digest, layer.size).map_err(oci_error)?)
            }
            Source::Docker(archive) => {
                let path = archive.layer_path(layer);
                let file = std::fs::File::open(&path)
                    .map_err(|e| CoreError::io(format!("opening {}", path.display()), e))?;
                Box::new(kleene_oci::VerifyingReader::new(
                    file,
                    layer.digest.clone(),
                    layer.size,
                ))
            }
        })
    }
}

impl Source {
    /// Opens `dir` (a layout or docker-archive directory, or an archive of one, unpacked
    /// by the safe extractor into a temporary directory) and resolves the image named
    /// `name` (any single one without) for `platform` (the host's without; a platform
    /// asked for must be the image's, a single image is taken whatever its platform
    /// otherwise).
    fn open(
        dir: &std::path::Path,
        name: Option<&str>,
        platform: Option<&str>,
        events: &Events,
    ) -> Result<(Opened, ResolvedImage)> {
        let asked = platform
            .map(kleene_oci::Platform::parse)
            .transpose()
            .map_err(oci_error)?;
        let wanted = asked.clone().unwrap_or_else(kleene_oci::Platform::host);
        let unpacked = if dir.is_file() {
            events.status(format!(
                "unpacking the OCI layout archive {}",
                dir.display()
            ));
            let tmp = tempfile::Builder::new()
                .prefix("kleene-oci-")
                .tempdir()
                .map_err(|e| CoreError::io("making a temporary directory", e))?;
            let file = std::fs::File::open(dir)
                .map_err(|e| CoreError::io(format!("opening {}", dir.display()), e))?;
            let (_, decoded) = archive::decompress(file)?;
            archive::extract(decoded, tmp.path(), &mut |_| {})?;
            Some(tmp)
        } else {
            None
        };
        let root = unpacked.as_ref().map_or(dir, |t| t.path());
        // A docker-archive has a `manifest.json` and no `oci-layout` (Docker's own saves
        // since 25, and ours, have both: they are read as layouts).
        let source = if !root.join("oci-layout").exists() && root.join("manifest.json").is_file() {
            Source::Docker(
                kleene_oci::docker_archive::DockerArchive::open_dir(root).map_err(oci_error)?,
            )
        } else {
            Source::Oci(Box::new(kleene_oci::Layout::open(root).map_err(oci_error)?))
        };
        let image = match &source {
            Source::Oci(layout) => layout.resolve(name, &wanted),
            Source::Docker(archive) => archive.resolve(name),
        }
        .map_err(oci_error)?;
        if let (Some(want), Some(got)) = (&asked, &image.settings.platform) {
            if !want.matches(&got.os, &got.arch, got.variant.as_deref()) {
                return Err(CoreError::NotFound {
                    kind: Object::Image,
                    reference: format!(
                        "{} has no image for {want} (its image is for {got})",
                        dir.display()
                    ),
                });
            }
        }
        Ok((
            Opened {
                source,
                _unpacked: unpacked,
            },
            image,
        ))
    }
}

/// The first 12 hex digits of a digest, as Docker shows layers.
pub(crate) fn short(d: &Digest) -> &str {
    &d.hex()[..12]
}
