//! The engine's errors: each names the object it is about.

use kleene_zfs::ZfsError;

/// What went wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// No object answers to the reference.
    #[error("no such {kind}: {reference}")]
    NotFound {
        kind: &'static str,
        reference: String,
    },

    /// An id prefix matches more than one object.
    #[error("{kind} reference {reference:?} is ambiguous: it matches {}", candidates.join(", "))]
    Ambiguous {
        kind: &'static str,
        reference: String,
        candidates: Vec<String>,
    },

    /// The name is taken.
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: &'static str, name: String },

    /// The object is used by others and cannot go.
    #[error("{kind} {name} is in use by {}", users.join(", "))]
    InUse {
        kind: &'static str,
        name: String,
        users: Vec<String>,
    },

    /// Bad input from the caller, said plainly.
    #[error("{0}")]
    InvalidInput(String),

    /// A request this engine or platform does not support (yet).
    #[error("{0}")]
    Unsupported(String),

    /// The object is in the wrong state for the request.
    #[error("{0}")]
    Conflict(String),

    /// Fetching a base image failed.
    #[error("fetching {url}: {reason}")]
    Fetch { url: String, reason: String },

    /// A base image archive is bad or unsafe.
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),

    /// ZFS refused.
    #[error(transparent)]
    Zfs(#[from] ZfsError),

    /// The metadata store failed.
    #[error("metadata: {0}")]
    Metadata(#[from] rusqlite::Error),

    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A build failed after its build container was made. Unless the build was asked to
    /// clean up, the state is kept as image `image_id` (tagged `<name>:failed`); `snapshot`
    /// is its most recent snapshot, the one to resume from: `@<id>` in the failed image, or
    /// `<image id>@<id>` when the last good step was taken from the build cache.
    #[error("failed to build image {image_id}: {reason}")]
    BuildFailed {
        image_id: crate::id::Id,
        snapshot: Option<String>,
        reason: String,
    },

    /// The program cannot run container monitors: its `main` did not call
    /// [`crate::init`] first, and [`crate::Config::monitor`] names no other program.
    #[error("the program did not call kleene_core::init() first in main: containers cannot be started; see the documentation of kleene_core::init, or set Config::monitor")]
    NoMonitor,

    /// The container could not start: the jail refused, or what it needs (its command, a
    /// mount, its working directory) could not be set up. `reason` is the jail's text.
    #[error("container {container} could not start: {reason}")]
    StartFailed { container: String, reason: String },

    /// A container's monitor process failed before it reported the container started
    /// (it died, or could not read its request or the metadata).
    #[error("the monitor of container {container} failed: {reason}")]
    MonitorFailed { container: String, reason: String },

    /// The monitor program is built from another kleene-core version than the engine
    /// (an explicit [`crate::Config::monitor`], or a program replaced while it ran).
    #[error("the container monitor is kleene-core {monitor}, the engine {engine}: they must be the same version")]
    MonitorVersion { engine: String, monitor: String },

    /// The operation was cancelled; nothing of it was left behind.
    #[error("cancelled")]
    Cancelled,

    /// A bug or an impossible state.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CoreError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result of every engine operation.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
