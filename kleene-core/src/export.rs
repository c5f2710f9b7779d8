//! Images as OCI images (`klee image save`, `klee push`): an image's layers are the tar
//! differences between the trees it sits on, bottom first: the layers it was pulled
//! with (for an image of an OCI image), then each image of its build chain. The trees
//! are walked (old ZFS has no `zfs diff`); the tar is reproducible (sorted entries,
//! numeric owners, no times but mtimes), so saving an image twice gives the same digests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use kleene_oci::spec::{
    ConfigBuilder, Descriptor, ImageConfiguration, ImageConfigurationBuilder, RootFsBuilder,
};
use kleene_oci::write::{LayerWriter, LayoutWriter};
use kleene_oci::{diff, Platform};

use crate::archive::Compression;
use crate::engine::{Engine, Inner};
use crate::error::{CoreError, Result};
use crate::event::Events;
use crate::interrupt::CancelFlag;
use crate::model::Image;
use crate::oci::oci_error;

/// How an image is saved ([`Engine::save_image`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SaveOptions {
    /// The name the layout's index gives the image (`org.opencontainers.image.ref.name`).
    pub name: Option<String>,
    /// Later modification times become this Unix time (`SOURCE_DATE_EPOCH`), so that
    /// images built from the same sources at other times save the same.
    pub clamp_mtime: Option<i64>,
}

impl SaveOptions {
    /// With the index's name for the image.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// With modification times clamped to `epoch`.
    pub fn clamp_mtime(mut self, epoch: i64) -> Self {
        self.clamp_mtime = Some(epoch);
        self
    }
}

/// What saving or pushing an image made.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Exported {
    /// The manifest's descriptor (its digest is the image's identity in a registry).
    pub manifest: Descriptor,
    /// The layers' descriptors, bottom first.
    pub layers: Vec<Descriptor>,
    /// The platform of the config.
    pub platform: Platform,
}

/// The platform of an image: the one it was pulled for, else the host's.
pub(crate) fn platform_of(image: &Image) -> Platform {
    image
        .config
        .origin
        .as_ref()
        .and_then(|o| Platform::parse(&o.platform).ok())
        .unwrap_or_else(Platform::host)
}

/// How an archive path asks to be compressed: by its extension.
fn archive_kind(path: &Path) -> Option<Compression> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".tar") {
        Some(Compression::None)
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Some(Compression::Gzip)
    } else if name.ends_with(".tar.xz") || name.ends_with(".txz") {
        Some(Compression::Xz)
    } else if name.ends_with(".tar.zst") || name.ends_with(".tzst") {
        Some(Compression::Zstd)
    } else {
        None
    }
}

impl Inner {
    /// The trees an image sits on, bottom first, each a mounted dataset in its final
    /// state (a layer's is its `@layer` snapshot's, an image's its `@image`
    /// snapshot's): the layers it was pulled with, then the images of its build chain.
    /// A diff between two of them is a layer whatever snapshot of the lower the upper
    /// was cloned from.
    fn trees_of(&self, image: &Image) -> Result<Vec<PathBuf>> {
        let mut chain = vec![image.clone()];
        while let Some(parent) = chain.last().and_then(|i| i.parent.clone()) {
            if chain.len() > 256 {
                return Err(CoreError::Internal(format!(
                    "image {} has a build chain longer than 256 images",
                    image.id
                )));
            }
            let p = self.store().image(&parent.image)?.ok_or_else(|| {
                CoreError::Internal(format!(
                    "image {} is built on {}, which is gone",
                    chain.last().map(|i| i.id.to_string()).unwrap_or_default(),
                    parent.image
                ))
            })?;
            chain.push(p);
        }
        chain.reverse();
        let mut trees = Vec::new();
        if let Some(bottom) = chain.first() {
            for c in &bottom.config.layers {
                let row = self.store().layer(c)?.filter(|r| r.ready).ok_or_else(|| {
                    CoreError::Internal(format!("layer {c} of image {} is gone", bottom.id))
                })?;
                trees.push(self.mountpoint(&row.dataset)?);
            }
        }
        for i in &chain {
            trees.push(self.mountpoint(&i.dataset)?);
        }
        Ok(trees)
    }

    /// Writes an image into a layout: its layers (tar diffs, gzip), config and manifest,
    /// named `name` in the index when given.
    pub(crate) fn export_image(
        &self,
        image: &Image,
        out: &mut LayoutWriter,
        options: &SaveOptions,
        events: &Events,
        cancel: &AtomicBool,
    ) -> Result<Exported> {
        let trees = self.trees_of(image)?;
        let mut layers: Vec<Descriptor> = Vec::new();
        let mut diff_ids = Vec::new();
        let mut lower: Option<&Path> = None;
        for (n, upper) in trees.iter().enumerate() {
            if cancel.load(Ordering::SeqCst) {
                return Err(CoreError::Cancelled);
            }
            let tmp = out.temp_file().map_err(oci_error)?;
            let mut writer = LayerWriter::gzip(tmp.as_file());
            let diff_options = diff::DiffOptions {
                clamp_mtime: options.clamp_mtime,
            };
            let stats =
                diff::write_layer(lower, upper, &mut writer, &diff_options).map_err(oci_error)?;
            let (_, digests) = writer.finish().map_err(oci_error)?;
            lower = Some(upper);
            // Trees that add nothing (an image without dns or localtime on its layers)
            // make no layer.
            if stats.entries == 0
                && stats.whiteouts == 0
                && !(layers.is_empty() && n + 1 == trees.len())
            {
                continue;
            }
            out.add_blob_file(tmp.path(), &digests.digest)
                .map_err(oci_error)?;
            events.status(format!(
                "layer {} {}: {} entries, {} whiteouts, {} bytes compressed",
                layers.len() + 1,
                &digests.diff_id.hex()[..12],
                stats.entries,
                stats.whiteouts,
                digests.size
            ));
            layers.push(digests.descriptor().map_err(oci_error)?);
            diff_ids.push(digests.diff_id.to_string());
        }
        let platform = platform_of(image);
        let config = image_configuration(image, &platform, diff_ids)?;
        let manifest = out
            .add_image(&config, &layers, options.name.as_deref())
            .map_err(oci_error)?;
        Ok(Exported {
            manifest,
            layers,
            platform,
        })
    }
}

/// The OCI config of an image: its settings, platform and diff ids, created at the
/// image's creation time (so that a second export is the same).
fn image_configuration(
    image: &Image,
    platform: &Platform,
    diff_ids: Vec<String>,
) -> Result<ImageConfiguration> {
    let c = &image.config;
    let invalid = |e: &dyn std::fmt::Display| {
        CoreError::Internal(format!("the OCI config of image {}: {e}", image.id))
    };
    let mut cfg = ConfigBuilder::default();
    if !c.env.is_empty() {
        cfg = cfg.env(c.env.clone());
    }
    if !c.cmd.is_empty() {
        cfg = cfg.cmd(c.cmd.clone());
    }
    if !c.entrypoint.is_empty() {
        cfg = cfg.entrypoint(c.entrypoint.clone());
    }
    if !c.user.is_empty() {
        cfg = cfg.user(c.user.clone());
    }
    if !c.workdir.is_empty() {
        cfg = cfg.working_dir(c.workdir.clone());
    }
    if !c.labels.is_empty() {
        cfg = cfg.labels(
            c.labels
                .iter()
                .cloned()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    if !c.expose.is_empty() {
        cfg = cfg.exposed_ports(c.expose.clone());
    }
    if !c.volumes.is_empty() {
        cfg = cfg.volumes(c.volumes.clone());
    }
    if let Some(s) = &c.stop_signal {
        cfg = cfg.stop_signal(s.to_string());
    }
    let created = chrono_like(image.created);
    let mut b = ImageConfigurationBuilder::default()
        .created(created)
        .os(platform.os.as_str())
        .architecture(platform.arch.as_str())
        .config(cfg.build().map_err(|e| invalid(&e))?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .map_err(|e| invalid(&e))?,
        );
    if let Some(v) = &platform.variant {
        b = b.variant(v.clone());
    }
    b.build().map_err(|e| invalid(&e))
}

/// RFC 3339 in UTC of a Unix time, as OCI configs write `created`.
fn chrono_like(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

impl Engine {
    /// Saves an image as an OCI image (`klee image save`): into the layout directory
    /// `dest` (made, or added to; the image named `name` in its index), or, when `dest`
    /// ends in `.tar`, `.tar.gz`/`.tgz`, `.tar.xz`/`.txz` or `.tar.zst`, into an archive of
    /// such a layout. Any image can be saved: base images, pulled ones, built ones.
    pub async fn save_image(
        &self,
        reference: &str,
        dest: &Path,
        options: SaveOptions,
        events: Events,
    ) -> Result<Exported> {
        let image = self.image(reference).await?;
        let dest = dest.to_path_buf();
        let guard = CancelFlag::new(None);
        let cancel = guard.flag();
        self.blocking(move |inner| match archive_kind(&dest) {
            None => {
                let mut out = LayoutWriter::create(&dest).map_err(oci_error)?;
                let done = inner.export_image(&image, &mut out, &options, &events, &cancel)?;
                out.finish().map_err(oci_error)?;
                Ok(done)
            }
            Some(kind) => {
                let parent = dest
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let tmp = tempfile::Builder::new()
                    .prefix(".kleene-save-")
                    .tempdir_in(parent)
                    .map_err(|e| {
                        CoreError::io(format!("making a directory in {}", parent.display()), e)
                    })?;
                let mut out = LayoutWriter::create(tmp.path()).map_err(oci_error)?;
                let done = inner.export_image(&image, &mut out, &options, &events, &cancel)?;
                out.finish().map_err(oci_error)?;
                // Also a docker-archive (`docker load`, `podman load`, skopeo's
                // `docker-archive:`), as Docker's own saves are since 25: the same
                // blobs, listed in a manifest.json.
                write_docker_manifest(tmp.path(), &done, &image)?;
                // (`.tmp-` files are left out of the archive.)
                let part = tmp.path().join(".tmp-archive.part");
                let file = std::fs::File::create(&part)
                    .map_err(|e| CoreError::io(format!("creating {}", part.display()), e))?;
                let mut enc = crate::archive::compressor(kind, file)?;
                kleene_oci::write::archive_layout(tmp.path(), &mut enc).map_err(oci_error)?;
                enc.finish()
                    .map_err(|e| CoreError::io(format!("writing {}", part.display()), e))?;
                std::fs::rename(&part, &dest)
                    .map_err(|e| CoreError::io(format!("writing {}", dest.display()), e))?;
                Ok(done)
            }
        })
        .await
    }
}

/// Writes docker-archive's `manifest.json` into a layout holding `done`.
fn write_docker_manifest(dir: &Path, done: &Exported, image: &Image) -> Result<()> {
    let blob = |d: &Descriptor| {
        format!(
            "blobs/sha256/{}",
            d.digest().as_ref().trim_start_matches("sha256:")
        )
    };
    let manifest_path = dir.join(blob(&done.manifest));
    let manifest: kleene_oci::spec::ImageManifest = serde_json::from_slice(
        &std::fs::read(&manifest_path)
            .map_err(|e| CoreError::io(format!("reading {}", manifest_path.display()), e))?,
    )
    .map_err(|e| CoreError::Internal(format!("the manifest just written: {e}")))?;
    let tags: Vec<String> = if image.name.is_empty() {
        Vec::new()
    } else {
        vec![format!("{}:{}", image.name, image.tag)]
    };
    let json = serde_json::json!([{
        "Config": blob(manifest.config()),
        "RepoTags": tags,
        "Layers": done.layers.iter().map(blob).collect::<Vec<_>>(),
    }]);
    let bytes = serde_json::to_vec(&json)
        .map_err(|e| CoreError::Internal(format!("manifest.json: {e}")))?;
    let path = dir.join("manifest.json");
    std::fs::write(&path, bytes)
        .map_err(|e| CoreError::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_times_are_rfc3339() {
        assert_eq!(chrono_like(0), "1970-01-01T00:00:00Z");
        assert_eq!(chrono_like(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(chrono_like(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn archives_are_told_by_their_extension() {
        assert_eq!(archive_kind(Path::new("a/b.tar")), Some(Compression::None));
        assert_eq!(archive_kind(Path::new("b.TXZ")), Some(Compression::Xz));
        assert_eq!(archive_kind(Path::new("b.tgz")), Some(Compression::Gzip));
        assert_eq!(
            archive_kind(Path::new("b.tar.zst")),
            Some(Compression::Zstd)
        );
        assert_eq!(archive_kind(Path::new("layout")), None);
        assert_eq!(archive_kind(Path::new("layout.d")), None);
    }
}
