//! OCI image layouts on disk: `oci-layout`, `index.json` and `blobs/sha256/<hex>`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageIndex, MediaType};

use crate::image::{self, ResolvedImage};
use crate::{Digest, Error, Platform, Result, VerifyingReader};

/// The annotation that names an image of a layout's index (`tag` in `dir:tag`).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// The largest manifest, index or config read (they are small JSON documents; a larger
/// one is refused rather than read into memory).
pub const MAX_JSON_BLOB: u64 = 4 * 1024 * 1024;

/// An OCI image layout directory.
#[derive(Debug)]
pub struct Layout {
    dir: PathBuf,
    index: ImageIndex,
}

impl Layout {
    /// Opens the layout at `dir`: its `oci-layout` marker must say version 1.x and its
    /// `index.json` must parse.
    pub fn open(dir: &Path) -> Result<Self> {
        let bad = |path: PathBuf, reason: String| Error::Layout { path, reason };
        let marker = dir.join("oci-layout");
        let text = std::fs::read_to_string(&marker).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                bad(
                    dir.to_path_buf(),
                    "not an OCI image layout: it has no oci-layout file".into(),
                )
            } else {
                Error::io(format!("reading {}", marker.display()), e)
            }
        })?;
        let header: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| bad(marker.clone(), format!("not JSON: {e}")))?;
        let version = header
            .get("imageLayoutVersion")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| bad(marker.clone(), "no imageLayoutVersion".into()))?;
        if !version.starts_with("1.") {
            return Err(bad(
                marker,
                format!("image layout version {version} is not supported (1.x is)"),
            ));
        }
        let index_path = dir.join("index.json");
        let file = File::open(&index_path)
            .map_err(|e| Error::io(format!("reading {}", index_path.display()), e))?;
        let index = ImageIndex::from_reader(file.take(MAX_JSON_BLOB))
            .map_err(|e| bad(index_path, format!("not an image index: {e}")))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            index,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The layout's `index.json`.
    pub fn index(&self) -> &ImageIndex {
        &self.index
    }

    /// The names its index gives its images (their ref.name annotations).
    pub fn names(&self) -> Vec<String> {
        self.index
            .manifests()
            .iter()
            .filter_map(|d| d.annotations().as_ref()?.get(REF_NAME_ANNOTATION).cloned())
            .collect()
    }

    /// A blob, verified as it is read against `digest` and `size`.
    pub fn blob(&self, digest: &Digest, size: u64) -> Result<VerifyingReader<File>> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|e| Error::io(format!("opening blob {digest}"), e))?;
        Ok(VerifyingReader::new(file, digest.clone(), size))
    }

    /// The path of a blob (its digest's hex digits are checked, so it stays inside).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(digest.hex())
    }

    /// A small JSON blob (a manifest, index or config), verified, at most
    /// `MAX_JSON_BLOB` (4 MiB) bytes.
    pub fn json_blob(&self, what: &'static str, digest: &Digest, size: u64) -> Result<Vec<u8>> {
        if size > MAX_JSON_BLOB {
            return Err(Error::Invalid {
                what,
                digest: digest.to_string(),
                reason: format!("its {size} bytes are over the {MAX_JSON_BLOB} bytes taken"),
            });
        }
        let mut r = self.blob(digest, size)?;
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        r.read_to_end(&mut bytes)
            .map_err(|e| match e.into_inner() {
                Some(inner) => match inner.downcast::<Error>() {
                    Ok(mismatch) => *mismatch,
                    Err(other) => Error::Io {
                        context: format!("reading {what} {digest}"),
                        source: std::io::Error::other(other),
                    },
                },
                None => Error::Io {
                    context: format!("reading {what} {digest}"),
                    source: std::io::Error::other("read failed"),
                },
            })?;
        Ok(bytes)
    }

    /// The image named `name` (its ref.name annotation; any image when the index holds
    /// one and no name is given) for `platform`: an index entry that is itself an index
    /// (or a Docker manifest list) is searched for the platform's manifest.
    pub fn resolve(&self, name: Option<&str>, platform: &Platform) -> Result<ResolvedImage> {
        let entries = self.index.manifests();
        let chosen: Vec<_> = match name {
            Some(n) => entries
                .iter()
                .filter(|d| {
                    d.annotations()
                        .as_ref()
                        .and_then(|a| a.get(REF_NAME_ANNOTATION))
                        .is_some_and(|v| v == n)
                })
                .collect(),
            None => entries.iter().collect(),
        };
        let descriptor = match chosen.as_slice() {
            [] => {
                return Err(Error::NotFound(match name {
                    Some(n) => format!(
                        "{}: no image named {n:?} (it has {})",
                        self.dir.display(),
                        names_or_none(&self.names())
                    ),
                    None => format!("{}: its index lists no image", self.dir.display()),
                }))
            }
            [one] => (*one).clone(),
            more => {
                // Several entries: those of other platforms are set aside.
                let fitting: Vec<_> = more
                    .iter()
                    .filter(|d| {
                        d.platform().as_ref().is_none_or(|p| {
                            platform.matches(
                                &p.os().to_string(),
                                &p.architecture().to_string(),
                                p.variant().as_deref(),
                            )
                        })
                    })
                    .collect();
                match fitting.as_slice() {
                    [one] => (**one).clone(),
                    _ => {
                        return Err(Error::NotFound(format!(
                            "{}: {} images, name one of them ({})",
                            self.dir.display(),
                            more.len(),
                            names_or_none(&self.names())
                        )))
                    }
                }
            }
        };
        image::resolve(self, descriptor, platform, 0)
    }
}

fn names_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "no names".into()
    } else {
        names.join(", ")
    }
}

/// Whether a media type is an index: OCI's or Docker's manifest list.
pub(crate) fn is_index(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageIndex => true,
        MediaType::Other(t) => t == "application/vnd.docker.distribution.manifest.list.v2+json",
        _ => false,
    }
}

/// Whether a media type is an image manifest: OCI's or Docker's schema 2.
pub(crate) fn is_manifest(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageManifest => true,
        MediaType::Other(t) => t == "application/vnd.docker.distribution.manifest.v2+json",
        _ => false,
    }
}
