//! Writing OCI images: layer blobs hashed while they are written, image layouts
//! (`oci-layout`, `blobs/sha256/`, `index.json`) and layouts as tar archives.
//!
//! Everything written is reproducible: the same inputs give the same bytes (gzip
//! without a name or time, JSON with its keys sorted and no spaces).
//!
//! ```
//! use kleene_oci::diff::{write_layer, DiffOptions};
//! use kleene_oci::spec::{ImageConfigurationBuilder, RootFsBuilder};
//! use kleene_oci::write::{LayerWriter, LayoutWriter};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let t = tempfile::tempdir()?;
//! let rootfs = t.path().join("rootfs");
//! std::fs::create_dir_all(rootfs.join("etc"))?;
//! std::fs::write(rootfs.join("etc/motd"), "hi\n")?;
//!
//! let mut layout = LayoutWriter::create(&t.path().join("img"))?;
//! let tmp = layout.temp_file()?;
//! let mut blob = LayerWriter::gzip(tmp.as_file());
//! write_layer(None, &rootfs, &mut blob, &DiffOptions::default())?;
//! let (_, layer) = blob.finish()?;
//! layout.add_blob_file(tmp.path(), &layer.digest)?;
//!
//! let config = ImageConfigurationBuilder::default()
//!     .os("freebsd")
//!     .architecture("amd64")
//!     .rootfs(
//!         RootFsBuilder::default()
//!             .typ("layers")
//!             .diff_ids(vec![layer.diff_id.to_string()])
//!             .build()?,
//!     )
//!     .build()?;
//! let manifest = layout.add_image(&config, &[layer.descriptor()?], Some("14.2"))?;
//! layout.finish()?;
//! # assert_eq!(manifest.size() as usize, std::fs::read(t.path().join("img/blobs/sha256").join(manifest.digest().digest()))?.len());
//! # Ok(())
//! # }
//! ```

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifestBuilder, MediaType,
    PlatformBuilder,
};
use sha2::{Digest as _, Sha256};

use crate::diff::{Head, TarWriter};
use crate::{Digest, Error, LayerCompression, Layout, Result, REF_NAME_ANNOTATION};

/// The digest a hasher holds.
pub(crate) fn digest_of_hasher(h: Sha256) -> Digest {
    let mut hex = String::with_capacity(71);
    hex.push_str("sha256:");
    for b in h.finalize() {
        hex.push_str(&format!("{b:02x}"));
    }
    Digest::parse(&hex).expect("a sha256 sum in hex is a digest")
}

/// Our digest as `oci-spec`'s.
pub(crate) fn spec_digest(d: &Digest) -> Result<oci_spec::image::Digest> {
    d.to_string().parse().map_err(|e| Error::Digest {
        digest: d.to_string(),
        reason: format!("{e}"),
    })
}

/// JSON with every object's keys sorted and no whitespace: the same document gives the
/// same bytes (oci-spec keeps labels and annotations in hash maps).
pub(crate) fn canonical_json(value: serde_json::Value) -> Vec<u8> {
    fn sort(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sort(v))).collect())
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sort).collect())
            }
            other => other,
        }
    }
    serde_json::to_vec(&sort(value)).expect("a JSON value serializes")
}

fn json_of(what: &str, v: serde_json::Result<serde_json::Value>) -> Result<Vec<u8>> {
    v.map(canonical_json).map_err(|e| Error::Invalid {
        what: "document",
        digest: what.to_string(),
        reason: format!("it does not serialize: {e}"),
    })
}

/// The digests and size of a layer blob written by [`LayerWriter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// The digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// The digest of the blob as written.
    pub digest: Digest,
    /// The size of the blob as written.
    pub size: u64,
    /// How the blob is compressed.
    pub compression: LayerCompression,
}

impl LayerDigests {
    /// The blob's descriptor in a manifest (OCI layer media types).
    pub fn descriptor(&self) -> Result<Descriptor> {
        let media_type = match self.compression {
            LayerCompression::None => MediaType::ImageLayer,
            LayerCompression::Gzip => MediaType::ImageLayerGzip,
            LayerCompression::Zstd => MediaType::ImageLayerZstd,
        };
        Ok(Descriptor::new(
            media_type,
            self.size,
            spec_digest(&self.digest)?,
        ))
    }
}

/// Counts and hashes what passes to `inner`.
#[derive(Debug)]
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

enum Sink<W: Write> {
    Gzip(Box<flate2::write::GzEncoder<Hashing<W>>>),
    Plain(Hashing<W>),
}

/// A layer blob written while hashing: the tar written to it is hashed (the diff id),
/// compressed, and hashed and counted again as it goes to the inner writer.
pub struct LayerWriter<W: Write> {
    sink: Sink<W>,
    diff: Sha256,
}

impl<W: Write> std::fmt::Debug for LayerWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.sink {
            Sink::Gzip(_) => "gzip",
            Sink::Plain(_) => "plain",
        };
        f.debug_struct("LayerWriter")
            .field("compression", &kind)
            .finish_non_exhaustive()
    }
}

impl<W: Write> LayerWriter<W> {
    /// A gzip-compressed layer (default level; the gzip header has no name and no time,
    /// so the same tar gives the same blob).
    pub fn gzip(out: W) -> Self {
        let hashing = Hashing {
            inner: out,
            hasher: Sha256::new(),
            count: 0,
        };
        let gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(hashing, flate2::Compression::default());
        Self {
            sink: Sink::Gzip(Box::new(gz)),
            diff: Sha256::new(),
        }
    }

    /// An uncompressed layer (its digest is its diff id).
    pub fn plain(out: W) -> Self {
        Self {
            sink: Sink::Plain(Hashing {
                inner: out,
                hasher: Sha256::new(),
                count: 0,
            }),
            diff: Sha256::new(),
        }
    }

    /// Ends the blob: the inner writer (flushed) and the digests.
    pub fn finish(self) -> Result<(W, LayerDigests)> {
        let (mut hashing, compression) = match self.sink {
            Sink::Gzip(gz) => (
                (*gz)
                    .finish()
                    .map_err(|e| Error::io("ending the gzip stream of a layer", e))?,
                LayerCompression::Gzip,
            ),
            Sink::Plain(h) => (h, LayerCompression::None),
        };
        hashing
            .flush()
            .map_err(|e| Error::io("flushing a layer", e))?;
        let digests = LayerDigests {
            diff_id: digest_of_hasher(self.diff),
            digest: digest_of_hasher(hashing.hasher),
            size: hashing.count,
            compression,
        };
        Ok((hashing.inner, digests))
    }
}

impl<W: Write> Write for LayerWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match &mut self.sink {
            Sink::Gzip(gz) => gz.write(buf)?,
            Sink::Plain(h) => h.write(buf)?,
        };
        self.diff.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::Gzip(gz) => gz.flush(),
            Sink::Plain(h) => h.flush(),
        }
    }
}

/// An OCI image layout being written: blobs go in as they are finished, `index.json` is
/// written (atomically) by [`LayoutWriter::finish`].
#[derive(Debug)]
pub struct LayoutWriter {
    dir: PathBuf,
    index: ImageIndex,
}

impl LayoutWriter {
    /// Creates the layout `dir` (`oci-layout`, `blobs/sha256/`, an empty index), or
    /// opens the layout there to add to it.
    pub fn create(dir: &Path) -> Result<Self> {
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs)
            .map_err(|e| Error::io(format!("creating {}", blobs.display()), e))?;
        let marker = dir.join("oci-layout");
        if marker.exists() {
            let layout = Layout::open(dir)?;
            return Ok(Self {
                dir: dir.to_path_buf(),
                index: layout.index().clone(),
            });
        }
        write_atomic(dir, &marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(Vec::<Descriptor>::new())
            .build()
            .map_err(|e| Error::Layout {
                path: dir.join("index.json"),
                reason: format!("building an empty index: {e}"),
            })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            index,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob `d` is (or goes).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(d.hex())
    }

    /// A temporary file in the layout's directory, for a blob being written (then
    /// [`LayoutWriter::add_blob_file`]); it is removed when dropped unless added.
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix(".tmp-blob-")
            .tempfile_in(&self.dir)
            .map_err(|e| {
                Error::io(
                    format!("creating a temporary file in {}", self.dir.display()),
                    e,
                )
            })
    }

    /// Moves a finished file (in the layout's directory: a [`LayoutWriter::temp_file`])
    /// into place as the blob `digest`, readable by all. Its content is not hashed again:
    /// `digest` is what [`LayerWriter`] computed.
    pub fn add_blob_file(&mut self, tmp: &Path, digest: &Digest) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dest = self.blob_path(digest);
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(format!("making {} readable", tmp.display()), e))?;
        std::fs::rename(tmp, &dest).map_err(|e| {
            Error::io(
                format!(
                    "moving {} to blob {digest} ({})",
                    tmp.display(),
                    dest.display()
                ),
                e,
            )
        })
    }

    /// Writes `bytes` as a blob; its descriptor (of `media_type`).
    pub fn add_json(&mut self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let digest = Digest::of(bytes);
        let dest = self.blob_path(&digest);
        // Written again unless the same bytes are there.
        let present = std::fs::metadata(&dest).is_ok_and(|m| m.len() == bytes.len() as u64)
            && std::fs::read(&dest).is_ok_and(|b| b == bytes);
        if !present {
            write_atomic(&self.dir, &dest, bytes)?;
        }
        Ok(Descriptor::new(
            MediaType::from(media_type),
            bytes.len() as u64,
            spec_digest(&digest)?,
        ))
    }

    /// Writes an image: its config (as canonical JSON) and a manifest of the config and
    /// `layers` (blobs already added), listed in the index with the platform of the
    /// config and, when `name` is given, the annotation `org.opencontainers.image.ref.name`
    /// (an entry of that name already there is replaced). The manifest's descriptor.
    pub fn add_image(
        &mut self,
        config: &ImageConfiguration,
        layers: &[Descriptor],
        name: Option<&str>,
    ) -> Result<Descriptor> {
        let diff_ids = config.rootfs().diff_ids().len();
        if diff_ids != layers.len() {
            return Err(Error::Invalid {
                what: "image",
                digest: name.unwrap_or("(unnamed)").to_string(),
                reason: format!(
                    "{} layers were given where its config has {diff_ids} diff ids",
                    layers.len()
                ),
            });
        }
        for l in layers {
            let d = Digest::parse(l.digest().as_ref())?;
            if !self.blob_path(&d).is_file() {
                return Err(Error::NotFound(format!(
                    "{}: layer blob {d} was not added",
                    self.dir.display()
                )));
            }
        }
        let config_bytes = json_of("config", serde_json::to_value(config))?;
        let config_desc =
            self.add_json(MediaType::ImageConfig.to_string().as_str(), &config_bytes)?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_desc)
            .layers(layers.to_vec())
            .build()
            .map_err(|e| Error::Invalid {
                what: "manifest",
                digest: name.unwrap_or("(unnamed)").to_string(),
                reason: e.to_string(),
            })?;
        let manifest_bytes = json_of("manifest", serde_json::to_value(&manifest))?;
        let desc = self.add_json(
            MediaType::ImageManifest.to_string().as_str(),
            &manifest_bytes,
        )?;

        let mut entry = desc.clone();
        let mut platform = PlatformBuilder::default()
            .os(config.os().clone())
            .architecture(config.architecture().clone());
        if let Some(v) = config.variant() {
            platform = platform.variant(v.clone());
        }
        let platform = platform.build().map_err(|e| Error::Invalid {
            what: "config",
            digest: name.unwrap_or("(unnamed)").to_string(),
            reason: format!("its platform: {e}"),
        })?;
        entry.set_platform(Some(platform));
        let mut manifests = self.index.manifests().clone();
        if let Some(n) = name {
            entry.set_annotations(Some(
                [(REF_NAME_ANNOTATION.to_string(), n.to_string())]
                    .into_iter()
                    .collect(),
            ));
            manifests.retain(|d| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME_ANNOTATION))
                    .is_none_or(|v| v != n)
            });
        }
        manifests.push(entry);
        self.index.set_manifests(manifests);
        Ok(desc)
    }

    /// Writes `index.json` (atomically: a reader sees the old or the new one).
    pub fn finish(self) -> Result<()> {
        let bytes = json_of("index", serde_json::to_value(&self.index))?;
        write_atomic(&self.dir, &self.dir.join("index.json"), &bytes)
    }
}

/// Writes `path` through a temporary file in `dir`, renamed into place.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |e| Error::io(format!("writing {}", path.display()), e);
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644)).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// Writes the layout directory `dir` as a tar archive to `out` (compress it as you
/// like): its directories and regular files in sorted order, with owner 0, mode 0644 or
/// 0755 and time 0, so the same layout gives the same bytes. Temporary files left by a
/// [`LayoutWriter`] (`.tmp-*` at the top) are left out; other kinds of files are refused.
pub fn archive_layout(dir: &Path, out: impl Write) -> Result<()> {
    let mut paths = Vec::new();
    collect(dir, Path::new(""), &mut paths)?;
    paths.sort();
    let mut tar = TarWriter::new(out);
    for (rel, is_dir) in paths {
        let mut name = rel.as_os_str().as_encoded_bytes().to_vec();
        if is_dir {
            name.push(b'/');
            let mut h = Head::new(name, tar::EntryType::Directory);
            h.mode = 0o755;
            tar.entry(&h, None)?;
        } else {
            let src = dir.join(&rel);
            let file =
                File::open(&src).map_err(|e| Error::io(format!("opening {}", src.display()), e))?;
            let len = file
                .metadata()
                .map_err(|e| Error::io(format!("reading the metadata of {}", src.display()), e))?
                .len();
            let mut h = Head::new(name, tar::EntryType::Regular);
            h.mode = 0o644;
            h.size = len;
            tar.entry(&h, Some((file, &src)))?;
        }
    }
    let (mut out, _) = tar.into_inner()?;
    out.flush()
        .map_err(|e| Error::io(format!("writing the archive of {}", dir.display()), e))
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, bool)>) -> Result<()> {
    let dir = root.join(rel);
    let rd =
        std::fs::read_dir(&dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        if rel.as_os_str().is_empty() && name.as_encoded_bytes().starts_with(b".tmp-") {
            continue;
        }
        let child = rel.join(&name);
        let ft = entry.file_type().map_err(|e| {
            Error::io(
                format!("reading the type of {}", root.join(&child).display()),
                e,
            )
        })?;
        if ft.is_dir() {
            out.push((child.clone(), true));
            collect(root, &child, out)?;
        } else if ft.is_file() {
            out.push((child, false));
        } else {
            return Err(Error::Layout {
                path: root.join(&child),
                reason: "a layout holds only directories and regular files".into(),
            });
        }
    }
    Ok(())
}
