//! An image resolved from a layout: its manifest, its layers bottom first with their
//! diff ids and chain ids, and the settings of its config.

use std::collections::BTreeMap;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use crate::layout::{is_index, is_manifest, Layout};
use crate::{chain_ids, Digest, Error, Platform, Result};

/// How deep indexes may nest (an index of indexes of manifests is already unusual).
pub(crate) const MAX_DEPTH: usize = 2;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    /// A plain tar.
    None,
    /// tar+gzip (OCI's and Docker's usual layers).
    Gzip,
    /// tar+zstd.
    Zstd,
}

impl LayerCompression {
    /// The compression of a layer media type; `None` for what is not a layer.
    pub fn of(media_type: &MediaType) -> Option<Self> {
        Some(match media_type {
            MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Self::None,
            MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => Self::Gzip,
            MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => Self::Zstd,
            MediaType::Other(t) => match t.as_str() {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
                | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Self::Gzip,
                "application/vnd.docker.image.rootfs.diff.tar" => Self::None,
                _ => return None,
            },
            _ => return None,
        })
    }
}

/// A layer of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The blob's digest (of the compressed bytes).
    pub digest: Digest,
    /// The blob's size.
    pub size: u64,
    /// How the blob is compressed.
    pub compression: LayerCompression,
    /// The digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// The chain id: this layer and all below it.
    pub chain_id: Digest,
}

/// What an image's config says about running it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSettings {
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// The entrypoint (prepended to the command).
    pub entrypoint: Vec<String>,
    /// The command.
    pub cmd: Vec<String>,
    /// The user.
    pub user: String,
    /// The working directory.
    pub workdir: String,
    /// The labels.
    pub labels: BTreeMap<String, String>,
    /// The platform the config names.
    pub platform: Option<Platform>,
}

/// An image of a layout, resolved for a platform.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The manifest's digest (the image's identity).
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The config's digest.
    pub config_digest: Digest,
    /// The config.
    pub config: ImageConfiguration,
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
    /// The config's settings.
    pub settings: ImageSettings,
}

pub(crate) fn digest_of(d: &Descriptor) -> Result<Digest> {
    Digest::parse(d.digest().as_ref())
}

pub(crate) fn resolve(
    layout: &Layout,
    descriptor: Descriptor,
    platform: &Platform,
    depth: usize,
) -> Result<ResolvedImage> {
    let digest = digest_of(&descriptor)?;
    let media_type = descriptor.media_type();
    if is_index(media_type) {
        if depth >= MAX_DEPTH {
            return Err(too_deep(&digest));
        }
        let bytes = layout.json_blob("index", &digest, descriptor.size())?;
        let index = parse_index(&digest, &bytes)?;
        let entry = pick_for(&index, &digest, platform)?;
        return resolve(layout, entry.clone(), platform, depth + 1);
    }
    if !is_manifest(media_type) {
        return Err(not_an_image(&digest, media_type));
    }
    let bytes = layout.json_blob("manifest", &digest, descriptor.size())?;
    let manifest = parse_manifest(&digest, &bytes)?;
    let config_digest = digest_of(manifest.config())?;
    let config = layout.json_blob("config", &config_digest, manifest.config().size())?;
    image_of(digest, manifest, &config)
}

/// The error for an index nested deeper than [`MAX_DEPTH`].
pub(crate) fn too_deep(digest: &Digest) -> Error {
    Error::Invalid {
        what: "index",
        digest: digest.to_string(),
        reason: "indexes nest too deep".into(),
    }
}

/// The error for a descriptor that is neither an index nor an image manifest.
pub(crate) fn not_an_image(digest: &Digest, media_type: &MediaType) -> Error {
    Error::Invalid {
        what: "descriptor",
        digest: digest.to_string(),
        reason: format!("media type {media_type} is neither an index nor an image manifest"),
    }
}

/// Parses an index (OCI's or a Docker manifest list).
pub(crate) fn parse_index(digest: &Digest, bytes: &[u8]) -> Result<ImageIndex> {
    ImageIndex::from_reader(bytes).map_err(|e| Error::Invalid {
        what: "index",
        digest: digest.to_string(),
        reason: e.to_string(),
    })
}

/// Parses an image manifest (OCI's or Docker's schema 2).
pub(crate) fn parse_manifest(digest: &Digest, bytes: &[u8]) -> Result<ImageManifest> {
    ImageManifest::from_reader(bytes).map_err(|e| Error::Invalid {
        what: "manifest",
        digest: digest.to_string(),
        reason: e.to_string(),
    })
}

/// The entry of index `digest` for `platform`, or an error saying which platforms it
/// has.
pub(crate) fn pick_for<'a>(
    index: &'a ImageIndex,
    digest: &Digest,
    platform: &Platform,
) -> Result<&'a Descriptor> {
    pick(index, platform).ok_or_else(|| {
        let offered: Vec<String> = index
            .manifests()
            .iter()
            .filter_map(|d| d.platform().as_ref())
            .map(|p| format!("{}/{}", p.os(), p.architecture()))
            .collect();
        Error::NotFound(format!(
            "index {digest} has no image for {platform} (it has {})",
            if offered.is_empty() {
                "none with a platform".to_string()
            } else {
                offered.join(", ")
            }
        ))
    })
}

/// The image of a manifest (already verified against `digest`) and its config's bytes
/// (already verified against the manifest's config descriptor): its layers with their
/// diff ids and chain ids, and its settings. Shared by layouts and registries.
pub(crate) fn image_of(
    digest: Digest,
    manifest: ImageManifest,
    config_bytes: &[u8],
) -> Result<ResolvedImage> {
    let invalid = |what: &'static str, digest: &Digest, reason: String| Error::Invalid {
        what,
        digest: digest.to_string(),
        reason,
    };
    let config_digest = digest_of(manifest.config())?;
    let config = ImageConfiguration::from_reader(config_bytes)
        .map_err(|e| invalid("config", &config_digest, e.to_string()))?;
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<Result<Vec<_>>>()?;
    if diff_ids.len() != manifest.layers().len() {
        return Err(invalid(
            "manifest",
            &digest,
            format!(
                "it lists {} layers where its config has {} diff ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        ));
    }
    let chains = chain_ids(&diff_ids);
    let mut layers = Vec::new();
    for ((d, diff_id), chain_id) in manifest.layers().iter().zip(diff_ids).zip(chains) {
        let layer_digest = digest_of(d)?;
        let compression = LayerCompression::of(d.media_type()).ok_or_else(|| {
            invalid(
                "layer",
                &layer_digest,
                format!(
                    "media type {} is not a layer this engine applies",
                    d.media_type()
                ),
            )
        })?;
        layers.push(crate::Layer {
            digest: layer_digest,
            size: d.size(),
            compression,
            diff_id,
            chain_id,
        });
    }
    let settings = settings_of(&config);
    Ok(ResolvedImage {
        manifest_digest: digest,
        manifest,
        config_digest,
        config,
        layers,
        settings,
    })
}

/// The entry of an index for `platform`: the one whose platform matches (entries without
/// a platform, like attestations, only when nothing else is there).
fn pick<'a>(index: &'a ImageIndex, platform: &Platform) -> Option<&'a Descriptor> {
    let entries = index.manifests();
    entries
        .iter()
        .find(|d| {
            d.platform().as_ref().is_some_and(|p| {
                platform.matches(
                    &p.os().to_string(),
                    &p.architecture().to_string(),
                    p.variant().as_deref(),
                )
            })
        })
        .or_else(|| match entries.as_slice() {
            [only] if only.platform().is_none() => Some(only),
            _ => None,
        })
}

pub(crate) fn settings_of(config: &ImageConfiguration) -> ImageSettings {
    let mut s = ImageSettings {
        platform: Some(Platform {
            os: config.os().to_string(),
            arch: config.architecture().to_string(),
            variant: config.variant().clone(),
        }),
        ..ImageSettings::default()
    };
    if let Some(c) = config.config() {
        s.env = c.env().clone().unwrap_or_default();
        s.entrypoint = c.entrypoint().clone().unwrap_or_default();
        s.cmd = c.cmd().clone().unwrap_or_default();
        s.user = c.user().clone().unwrap_or_default();
        s.workdir = c.working_dir().clone().unwrap_or_default();
        s.labels = c.labels().clone().unwrap_or_default().into_iter().collect();
    }
    s
}
