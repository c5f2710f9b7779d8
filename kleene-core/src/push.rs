//! Pushing images to registries (`klee push`): each image exported as an OCI image (its
//! layers the tar diffs between the trees it sits on), its blobs uploaded unless the
//! registry has them, its manifest put under the tag; several images make a
//! multi-platform index of their manifests.

use std::sync::atomic::AtomicBool;

use kleene_oci::registry::Reference;
use kleene_oci::spec::Descriptor;
use kleene_oci::write::LayoutWriter;
use kleene_oci::Digest;

use crate::engine::Engine;
use crate::error::{CoreError, Result};
use crate::event::Events;
use crate::export::{Exported, SaveOptions};
use crate::oci::oci_error;
use crate::pull::client_of;
use crate::sign::SignWith;

/// What a push put into the registry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Pushed {
    /// Where: `registry/repository:tag`.
    pub reference: String,
    /// The digest the tag names (the manifest's, or the index's).
    pub digest: Digest,
    /// Each image's manifest and layers, in the order given.
    pub images: Vec<Exported>,
    /// Blobs uploaded (the others the registry had).
    pub uploaded: usize,
    /// Blobs the registry had already.
    pub skipped: usize,
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

impl Engine {
    /// Pushes `images` to `target` (`registry/repository[:tag]`). One image: its
    /// manifest goes under the tag. Several (of different platforms): each manifest is
    /// put by digest, then an index of them, with their platforms, under the tag.
    pub async fn push_images(
        &self,
        images: &[String],
        target: &str,
        events: Events,
    ) -> Result<Pushed> {
        self.push_images_signed(images, target, None, events).await
    }

    /// [`Engine::push_images`], then signs what the tag names with `sign`: a cosign
    /// signature into the registry, or a simple signature into a lookaside directory.
    pub async fn push_images_signed(
        &self,
        images: &[String],
        target: &str,
        sign: Option<&SignWith>,
        events: Events,
    ) -> Result<Pushed> {
        if images.is_empty() {
            return Err(CoreError::InvalidInput("no image to push".into()));
        }
        let target = Reference::parse(target).map_err(oci_error)?;
        if target.digest.is_some() {
            return Err(CoreError::InvalidInput(format!(
                "push to {target}: a push names a tag, not a digest"
            )));
        }
        let client = client_of(&self.inner.config)?;
        let blobs = self.inner.root_mount.join("blobs");
        std::fs::create_dir_all(&blobs)
            .map_err(|e| CoreError::io(format!("creating {}", blobs.display()), e))?;
        let mut pushed = Pushed {
            reference: target.to_string(),
            digest: Digest::of(b""),
            images: Vec::new(),
            uploaded: 0,
            skipped: 0,
        };
        let mut manifests: Vec<(Descriptor, Vec<u8>)> = Vec::new();
        for reference in images {
            let (exported, desc, bytes) = self
                .push_one(&client, &target, reference, &blobs, &mut pushed, &events)
                .await?;
            manifests.push((desc, bytes));
            pushed.images.push(exported);
        }
        if let [(_, bytes)] = manifests.as_slice() {
            let digest = client
                .put_manifest(&target, OCI_MANIFEST, bytes)
                .await
                .map_err(oci_error)?;
            pushed.digest = digest;
        } else {
            for (desc, bytes) in &manifests {
                let d = Digest::parse(desc.digest().as_ref()).map_err(oci_error)?;
                client
                    .put_manifest(&target.with_digest(d), OCI_MANIFEST, bytes)
                    .await
                    .map_err(oci_error)?;
            }
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": manifests.iter().map(|(d, _)| d).collect::<Vec<_>>(),
            });
            let bytes = serde_json::to_vec(&index)
                .map_err(|e| CoreError::Internal(format!("an index: {e}")))?;
            pushed.digest = client
                .put_manifest(&target, OCI_INDEX, &bytes)
                .await
                .map_err(oci_error)?;
        }
        events.status(format!("pushed {target}: {}", pushed.digest));
        if let Some(with) = sign {
            let said = crate::sign::sign(&client, &target, &pushed.digest, with).await?;
            events.status(said);
        }
        Ok(pushed)
    }

    /// Exports image `reference` into a directory below `blobs` and uploads its layers
    /// and config to `target` (those the registry lacks); its manifest (not put yet) and
    /// its descriptor with the image's platform.
    async fn push_one(
        &self,
        client: &kleene_oci::registry::Client,
        target: &Reference,
        reference: &str,
        blobs: &std::path::Path,
        pushed: &mut Pushed,
        events: &Events,
    ) -> Result<(Exported, Descriptor, Vec<u8>)> {
        let image = self.image(reference).await?;
        events.status(format!("exporting {}", image.nametag()));
        let dir = tempfile::Builder::new()
            .prefix("push-")
            .tempdir_in(blobs)
            .map_err(|e| CoreError::io(format!("making a directory in {}", blobs.display()), e))?;
        let path = dir.path().to_path_buf();
        let ev = events.clone();
        let exported = self
            .blocking(move |inner| {
                let mut out = LayoutWriter::create(&path).map_err(oci_error)?;
                let cancel = AtomicBool::new(false);
                let done =
                    inner.export_image(&image, &mut out, &SaveOptions::default(), &ev, &cancel)?;
                out.finish().map_err(oci_error)?;
                Ok(done)
            })
            .await?;
        let blob = |d: &Descriptor| -> Result<(Digest, std::path::PathBuf)> {
            let digest = Digest::parse(d.digest().as_ref()).map_err(oci_error)?;
            let p = dir.path().join("blobs/sha256").join(digest.hex());
            Ok((digest, p))
        };
        let manifest_path = blob(&exported.manifest)?.1;
        let manifest_bytes = std::fs::read(&manifest_path)
            .map_err(|e| CoreError::io(format!("reading {}", manifest_path.display()), e))?;
        let manifest: kleene_oci::spec::ImageManifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| CoreError::Internal(format!("the manifest just written: {e}")))?;
        let config = manifest.config();
        for d in exported.layers.iter().chain(std::iter::once(config)) {
            let (digest, path) = blob(d)?;
            let sent = client
                .push_blob(target, &digest, d.size(), &path, None)
                .await
                .map_err(oci_error)?;
            events.status(format!(
                "{} {}: {}",
                if d.digest() == config.digest() {
                    "config"
                } else {
                    "layer"
                },
                &digest.hex()[..12],
                if sent { "pushed" } else { "already there" }
            ));
            if sent {
                pushed.uploaded += 1;
            } else {
                pushed.skipped += 1;
            }
        }
        let mut desc = exported.manifest.clone();
        let mut platform = kleene_oci::spec::PlatformBuilder::default()
            .os(exported.platform.os.as_str())
            .architecture(exported.platform.arch.as_str())
            .build()
            .map_err(|e| CoreError::Internal(format!("a platform: {e}")))?;
        platform.set_variant(exported.platform.variant.clone());
        desc.set_platform(Some(platform));
        desc.set_annotations(None);
        Ok((exported, desc, manifest_bytes))
    }
}
