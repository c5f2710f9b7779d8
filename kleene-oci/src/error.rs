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

    /// A tree cannot be written as a layer (`diff`): not a directory, a name a layer
    /// cannot hold, a file that changed while it was read.
    #[error("{path}: {reason}")]
    Tree { path: PathBuf, reason: String },

    /// An image reference (`[registry/]repository[:tag][@digest]`) is malformed.
    #[error("invalid image reference {reference:?}: {reason}")]
    Reference { reference: String, reason: String },

    /// A registry could not be reached, or answered what this crate does not take.
    #[error("registry {registry}: {reason}")]
    Registry { registry: String, reason: String },

    /// A registry answered a request with an error status.
    #[error("{url}: HTTP {status}: {reason}")]
    Http {
        url: String,
        status: u16,
        reason: String,
    },

    /// A registry refused the credentials, or its token service failed.
    #[error("registry {registry}: authentication failed: {reason}")]
    Auth { registry: String, reason: String },

    /// An image signature or a signing key is malformed, or a signature does not verify
    /// (`what` names the key, file or image: "cosign private key", "signature of
    /// registry.example/app@sha256:…").
    #[error("{what}: {reason}")]
    Signature { what: String, reason: String },
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
