//! What reading OCI images can fail with.

use std::path::PathBuf;

/// An error of this crate: each names the file, blob or field at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file of a layout could not be read.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A directory is not an OCI image layout, or a file of it is malformed.
    #[error("{path}: {reason}")]
    Layout { path: PathBuf, reason: String },

    /// A digest is malformed or of an algorithm this crate does not verify.
    #[error("invalid digest {digest:?}: {reason}")]
    Digest { digest: String, reason: String },

    /// A blob's content is not what its descriptor says (digest or size).
    #[error("blob {digest}: {reason}")]
    Mismatch { digest: String, reason: String },

    /// A manifest, index or config is malformed or unsupported.
    #[error("{what} {digest}: {reason}")]
    Invalid {
        what: &'static str,
        digest: String,
        reason: String,
    },

    /// No image of the layout matches the reference or the platform.
    #[error("{0}")]
    NotFound(String),

    /// A platform string is malformed (`os/arch[/variant]`).
    #[error("invalid platform {text:?}: {reason}")]
    Platform { text: String, reason: String },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// This crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
