//! `docker save`, `podman save` and `skopeo copy ... docker-archive:` tarballs, unpacked
//! into a directory: a `manifest.json` (`[{"Config": FILE, "RepoTags": [..], "Layers":
//! [FILE, ..]}]`), the config JSON file and the layer files (plain tars or gzip).
//!
//! Every file `manifest.json` names must stay inside the directory: no absolute path, no
//! `..`, no symlink that leads out (docker's symlinks between its layer directories are
//! followed when they stay inside). All layers are hashed when the archive is opened: a
//! layer's digest is of its file as stored, its diff id of its uncompressed tar, and the
//! diff ids must be the config's.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageManifest, ImageManifestBuilder, MediaType,
};
use sha2::{Digest as _, Sha256};

use crate::image::settings_of;
use crate::layout::MAX_JSON_BLOB;
use crate::write::{canonical_json, digest_of_hasher, spec_digest};
use crate::{chain_ids, Digest, Error, Layer, LayerCompression, ResolvedImage, Result};

/// An unpacked docker archive.
#[derive(Debug)]
pub struct DockerArchive {
    dir: PathBuf,
    images: Vec<Image>,
    /// Layer blobs by digest → their file.
    files: BTreeMap<Digest, PathBuf>,
}

#[derive(Debug)]
struct Image {
    tags: Vec<String>,
    config_digest: Digest,
    config_size: u64,
    config: ImageConfiguration,
    layers: Vec<LayerFile>,
}

#[derive(Debug, Clone)]
struct LayerFile {
    digest: Digest,
    size: u64,
    compression: LayerCompression,
    diff_id: Digest,
}

impl DockerArchive {
    /// Opens the archive unpacked into `dir`: reads `manifest.json`, checks the paths it
    /// names, reads the configs (verifying a config named after its digest,
    /// `<hex>.json`) and hashes every layer.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let manifest_path = dir.join("manifest.json");
        let root = std::fs::canonicalize(dir)
            .map_err(|e| Error::io(format!("opening the docker archive {}", dir.display()), e))?;
        let mut opening = Opening {
            root,
            manifest_path,
            files: BTreeMap::new(),
            hashed: BTreeMap::new(),
        };
        let text = read_small(&opening.manifest_path)?;
        let doc: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| opening.bad(format!("not JSON: {e}")))?;
        let entries = doc
            .as_array()
            .ok_or_else(|| opening.bad("not a list of images".into()))?;
        let mut images = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            images.push(opening.image(i, entry)?);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            images,
            files: opening.files,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// All the archive's tags (`RepoTags`), in its order.
    pub fn tags(&self) -> Vec<String> {
        self.images.iter().flat_map(|i| i.tags.clone()).collect()
    }

    /// The image tagged `name` (`repo:tag`; `docker.io/library/` and `:latest` may be
    /// left out on either side), or with no name the archive's only image. Its manifest
    /// is an OCI manifest made of the archive's parts (media types by the layers'
    /// compression); its digest is of that manifest's canonical JSON, not of any
    /// registry's manifest.
    pub fn resolve(&self, name: Option<&str>) -> Result<ResolvedImage> {
        let image = self.find(name)?;
        let (manifest, manifest_digest) = manifest_of(image)?;
        let diff_ids: Vec<Digest> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
        let layers = image
            .layers
            .iter()
            .zip(chain_ids(&diff_ids))
            .map(|(l, chain_id)| Layer {
                digest: l.digest.clone(),
                size: l.size,
                compression: l.compression,
                diff_id: l.diff_id.clone(),
                chain_id,
            })
            .collect();
        Ok(ResolvedImage {
            manifest_digest,
            manifest,
            config_digest: image.config_digest.clone(),
            config: image.config.clone(),
            layers,
            settings: settings_of(&image.config),
        })
    }

    /// The image tagged `name` (in docker's short form or not), or with no name the
    /// archive's only image.
    fn find(&self, name: Option<&str>) -> Result<&Image> {
        match name {
            Some(n) => {
                let want = familiar(n);
                self.images
                    .iter()
                    .find(|i| i.tags.iter().any(|t| familiar(t) == want))
                    .ok_or_else(|| {
                        Error::NotFound(format!(
                            "{}: no image tagged {n:?} (it has {})",
                            self.dir.display(),
                            tags_or_none(&self.tags())
                        ))
                    })
            }
            None => match self.images.as_slice() {
                [one] => Ok(one),
                [] => Err(Error::NotFound(format!(
                    "{}: its manifest.json lists no image",
                    self.dir.display()
                ))),
                more => Err(Error::NotFound(format!(
                    "{}: {} images, name one of them ({})",
                    self.dir.display(),
                    more.len(),
                    tags_or_none(&self.tags())
                ))),
            },
        }
    }

    /// Where a layer's file is. A layer of no image of this archive gives the path its
    /// blob would have in an OCI layout there (`blobs/sha256/<hex>`), which need not
    /// exist.
    pub fn layer_path(&self, layer: &Layer) -> PathBuf {
        match self.files.get(&layer.digest) {
            Some(p) => p.clone(),
            None => self
                .dir
                .join("blobs")
                .join("sha256")
                .join(layer.digest.hex()),
        }
    }
}

/// The OCI manifest made of an archive image's parts (media types by the layers'
/// compression), and the digest of its canonical JSON.
fn manifest_of(image: &Image) -> Result<(ImageManifest, Digest)> {
    let layer_descs = image
        .layers
        .iter()
        .map(|l| {
            let media_type = match l.compression {
                LayerCompression::None => MediaType::ImageLayer,
                LayerCompression::Gzip => MediaType::ImageLayerGzip,
                LayerCompression::Zstd => MediaType::ImageLayerZstd,
            };
            Ok(Descriptor::new(media_type, l.size, spec_digest(&l.digest)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let config_desc = Descriptor::new(
        MediaType::ImageConfig,
        image.config_size,
        spec_digest(&image.config_digest)?,
    );
    let invalid = |reason: String| Error::Invalid {
        what: "config",
        digest: image.config_digest.to_string(),
        reason,
    };
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(layer_descs)
        .build()
        .map_err(|e| invalid(format!("making its manifest: {e}")))?;
    let value = serde_json::to_value(&manifest)
        .map_err(|e| invalid(format!("making its manifest: {e}")))?;
    let manifest_digest = Digest::of(&canonical_json(value));
    Ok((manifest, manifest_digest))
}

/// What [`DockerArchive::open_dir`] keeps across the images of `manifest.json`.
#[derive(Debug)]
struct Opening {
    /// The archive's directory, canonical: every file named must be inside.
    root: PathBuf,
    /// Its `manifest.json`.
    manifest_path: PathBuf,
    /// Layer blobs by digest → their file.
    files: BTreeMap<Digest, PathBuf>,
    /// Each layer file is hashed once, however many images list it.
    hashed: BTreeMap<PathBuf, LayerFile>,
}

/// The files one image of `manifest.json` names, and its tags.
#[derive(Debug)]
struct EntryNames<'a> {
    config: &'a str,
    tags: Vec<String>,
    layers: Vec<&'a str>,
}

impl Opening {
    /// An error of `manifest.json`.
    fn bad(&self, reason: String) -> Error {
        Error::Layout {
            path: self.manifest_path.clone(),
            reason,
        }
    }

    /// Image `i` of `manifest.json`, `entry`: its paths checked, its config read
    /// (verified when named after its digest) and its layers hashed.
    fn image(&mut self, i: usize, entry: &serde_json::Value) -> Result<Image> {
        let names = self.names(i, entry)?;
        let config_name = names.config;
        // Every path is checked before anything is read.
        let config_path = inside(&self.root, config_name, &self.manifest_path)?;
        let layer_paths = names
            .layers
            .iter()
            .map(|name| inside(&self.root, name, &self.manifest_path))
            .collect::<Result<Vec<_>>>()?;
        let (bytes, config_digest, config) = read_config(&config_path)?;
        let diff_ids = config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| Digest::parse(d))
            .collect::<Result<Vec<_>>>()?;
        if diff_ids.len() != names.layers.len() {
            return Err(self.bad(format!(
                "image {i} lists {} layers where its config {config_name} has {} diff ids",
                names.layers.len(),
                diff_ids.len()
            )));
        }
        let layers = self.layers(layer_paths, &diff_ids, config_name)?;
        Ok(Image {
            tags: names.tags,
            config_digest,
            config_size: bytes.len() as u64,
            config,
            layers,
        })
    }

    /// The config file, tags and layer files that image `i` of `manifest.json` names.
    fn names<'a>(&self, i: usize, entry: &'a serde_json::Value) -> Result<EntryNames<'a>> {
        let field = |key: &str| entry.get(key).filter(|v| !v.is_null());
        let config = field("Config")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| self.bad(format!("image {i} has no Config file")))?;
        let tags = match field("RepoTags") {
            None => Vec::new(),
            Some(v) => v
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|t| t.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| self.bad(format!("image {i}: RepoTags is not a list of strings")))?,
        };
        let layers = field("Layers")
            .and_then(serde_json::Value::as_array)
            .and_then(|a| {
                a.iter()
                    .map(serde_json::Value::as_str)
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| self.bad(format!("image {i}: Layers is not a list of files")))?;
        Ok(EntryNames {
            config,
            tags,
            layers,
        })
    }

    /// The layers at `paths`, hashed (once per file), each checked against its diff id
    /// in `diff_ids` (of the config `config_name`) and recorded as its digest's file.
    fn layers(
        &mut self,
        paths: Vec<PathBuf>,
        diff_ids: &[Digest],
        config_name: &str,
    ) -> Result<Vec<LayerFile>> {
        let mut layers = Vec::new();
        for (path, want) in paths.into_iter().zip(diff_ids) {
            let layer = match self.hashed.get(&path) {
                Some(l) => l.clone(),
                None => {
                    let l = hash_layer(&path)?;
                    self.hashed.insert(path.clone(), l.clone());
                    l
                }
            };
            if &layer.diff_id != want {
                return Err(Error::Mismatch {
                    digest: want.to_string(),
                    reason: format!(
                        "the layer {} is of the uncompressed digest {} where the config {config_name} says {want}",
                        path.display(),
                        layer.diff_id
                    ),
                });
            }
            self.files.entry(layer.digest.clone()).or_insert(path);
            layers.push(layer);
        }
        Ok(layers)
    }
}

/// Reads an image's config file: its bytes, their digest (checked against the file's
/// name when it is `<hex>.json`) and the config.
fn read_config(config_path: &Path) -> Result<(Vec<u8>, Digest, ImageConfiguration)> {
    let bytes = read_small(config_path)?;
    let config_digest = Digest::of(&bytes);
    if let Some(named) = hex_name(config_path) {
        if named != config_digest.hex() {
            return Err(Error::Mismatch {
                digest: format!("sha256:{named}"),
                reason: format!(
                    "the config {} has the digest {config_digest}",
                    config_path.display()
                ),
            });
        }
    }
    let config = ImageConfiguration::from_reader(&bytes[..]).map_err(|e| Error::Invalid {
        what: "config",
        digest: config_digest.to_string(),
        reason: format!("{}: {e}", config_path.display()),
    })?;
    Ok((bytes, config_digest, config))
}

fn tags_or_none(tags: &[String]) -> String {
    if tags.is_empty() {
        "no tags".into()
    } else {
        tags.join(", ")
    }
}

/// A reference in docker's short form: `docker.io/library/` left out, `:latest` added.
fn familiar(reference: &str) -> String {
    let r = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference);
    let last = r.rsplit('/').next().unwrap_or(r);
    if last.contains(':') || last.contains('@') {
        r.to_string()
    } else {
        format!("{r}:latest")
    }
}

/// The path `rel` (from `manifest.json`) under `root` (canonical), refused when it is
/// absolute, has `..`, leads out through a symlink or is not a regular file.
fn inside(root: &Path, rel: &str, manifest: &Path) -> Result<PathBuf> {
    let refuse = |reason: &str| Error::Layout {
        path: manifest.to_path_buf(),
        reason: format!("the path {rel:?} {reason}"),
    };
    let p = Path::new(rel);
    if rel.is_empty() {
        return Err(refuse("is empty"));
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(refuse("has `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(refuse("is absolute")),
        }
    }
    let real = std::fs::canonicalize(root.join(p))
        .map_err(|e| Error::io(format!("{}: the path {rel:?}", manifest.display()), e))?;
    if !real.starts_with(root) {
        return Err(refuse("leads out of the archive through a symlink"));
    }
    let meta = std::fs::metadata(&real)
        .map_err(|e| Error::io(format!("{}: the path {rel:?}", manifest.display()), e))?;
    if !meta.is_file() {
        return Err(refuse("is not a regular file"));
    }
    Ok(real)
}

/// A file read whole, at most [`MAX_JSON_BLOB`] bytes.
fn read_small(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut bytes = Vec::new();
    file.take(MAX_JSON_BLOB + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if bytes.len() as u64 > MAX_JSON_BLOB {
        return Err(Error::Layout {
            path: path.to_path_buf(),
            reason: format!("it is over the {MAX_JSON_BLOB} bytes taken"),
        });
    }
    Ok(bytes)
}

/// The hex digits a file is named by (`<hex>.json`, `<hex>`), if it is.
fn hex_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".json").unwrap_or(name);
    (stem.len() == 64 && stem.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| stem.to_string())
}

/// Reads and hashes what passes.
struct HashRead<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

struct HashWrite(Sha256);

impl Write for HashWrite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A layer file's digest, size, compression (by its first bytes) and diff id.
fn hash_layer(path: &Path) -> Result<LayerFile> {
    let err = |e| Error::io(format!("reading the layer {}", path.display()), e);
    let mut file = File::open(path).map_err(err)?;
    let mut magic = [0u8; 4];
    let mut n = 0;
    while n < magic.len() {
        match file.read(&mut magic[n..]).map_err(err)? {
            0 => break,
            k => n += k,
        }
    }
    let compression = match &magic[..n] {
        [0x1f, 0x8b, ..] => LayerCompression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => LayerCompression::Zstd,
        _ => LayerCompression::None,
    };
    let mut raw = HashRead {
        inner: std::io::Cursor::new(magic[..n].to_vec()).chain(file),
        hasher: Sha256::new(),
        count: 0,
    };
    let diff_id = match compression {
        LayerCompression::None => None,
        LayerCompression::Gzip => {
            let mut out = HashWrite(Sha256::new());
            let mut gz = flate2::read::MultiGzDecoder::new(&mut raw);
            std::io::copy(&mut gz, &mut out).map_err(err)?;
            Some(digest_of_hasher(out.0))
        }
        LayerCompression::Zstd => {
            return Err(Error::Invalid {
                what: "layer",
                digest: path.display().to_string(),
                reason: "zstd layers of docker archives are not supported".into(),
            })
        }
    };
    std::io::copy(&mut raw, &mut std::io::sink()).map_err(err)?;
    let digest = digest_of_hasher(raw.hasher);
    Ok(LayerFile {
        diff_id: diff_id.unwrap_or_else(|| digest.clone()),
        digest,
        size: raw.count,
        compression,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn references_compare_in_short_form() {
        assert_eq!(familiar("repo"), "repo:latest");
        assert_eq!(familiar("docker.io/library/repo:1"), "repo:1");
        assert_eq!(familiar("docker.io/me/repo"), "me/repo:latest");
        assert_eq!(
            familiar("localhost:5000/repo"),
            "localhost:5000/repo:latest"
        );
        assert_eq!(familiar("repo@sha256:00"), "repo@sha256:00");
    }
}
