//! The engine's errors: each names the object it is about, and the platform crates' errors
//! are kept whole (a Dockerfile error keeps its file, line and column).

use std::fmt;

use kleene_zfs::ZfsError;

/// The kinds of object the engine keeps, as errors name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Object {
    /// An image.
    Image,
    /// A container.
    Container,
    /// A volume.
    Volume,
    /// A dataset.
    Dataset,
    /// A snapshot of an image or build.
    Snapshot,
    /// A network.
    Network,
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Object::Image => "image",
            Object::Container => "container",
            Object::Volume => "volume",
            Object::Dataset => "dataset",
            Object::Snapshot => "snapshot",
            Object::Network => "network",
        })
    }
}

/// What went wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// No object answers to the reference.
    #[error("no such {kind}: {reference}")]
    NotFound { kind: Object, reference: String },

    /// An id prefix matches more than one object.
    #[error("{kind} reference {reference:?} is ambiguous: it matches {}", candidates.join(", "))]
    Ambiguous {
        kind: Object,
        reference: String,
        candidates: Vec<String>,
    },

    /// The name is taken.
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: Object, name: String },

    /// The object is used by others and cannot go.
    #[error("{kind} {name} is in use by {}", users.join(", "))]
    InUse {
        kind: Object,
        name: String,
        users: Vec<String>,
    },

    /// Bad input from the caller, said plainly.
    #[error("{0}")]
    InvalidInput(String),

    /// A request this engine or platform does not support (yet).
    #[error("{0}")]
    Unsupported(String),

    /// The container is running, and the request needs it stopped.
    #[error("container {name} is running: stop it first{}", if *.force_helps { ", or force the removal" } else { "" })]
    Running { name: String, force_helps: bool },

    /// The container is not running, and the request needs it running.
    #[error("container {name} is not running")]
    NotRunning { name: String },

    /// A dataset the engine needs mounted is not.
    #[error("dataset {dataset} is not mounted")]
    NotMounted { dataset: String },

    /// A file system below the pool does not answer: the ZFS daemon may be wedged or
    /// stopped. From `Engine::open`, nothing was changed; from an operation, what it left
    /// half-done is repaired by the next open once the file system answers again (the
    /// thread stuck in it is left behind; it does not keep the program from exiting).
    #[error("{} does not answer after {} s: is the ZFS daemon wedged?", path.display(), after.as_secs())]
    NotAnswering {
        path: std::path::PathBuf,
        after: std::time::Duration,
    },

    /// Changing the host's network failed (an interface, an address, a link, the
    /// firewall): what the engine was doing, naming the network, container or interface,
    /// and kleene-net's error for the platform, kept whole.
    #[error("{context}: {source}")]
    Network {
        context: String,
        #[source]
        source: kleene_net::HostError,
    },

    /// A network's specification, an address asked for or a published port breaks
    /// Kleene's rules, or a network has no free address left (kleene-net's error names
    /// the value): the caller's to fix, as [`CoreError::InvalidInput`].
    #[error(transparent)]
    NetworkSpec(#[from] kleene_net::Error),

    /// A Dockerfile was rejected; the error keeps its file, line and column.
    #[error(transparent)]
    Dockerfile(#[from] kleene_dockerfile::ParseError),

    /// A Dockerfile word could not be expanded (`${VAR:?message}`, a bad pattern).
    #[error("{text}: {source}")]
    Expand {
        /// The instruction, as written.
        text: String,
        #[source]
        source: kleene_dockerfile::ExpandError,
    },

    /// Isolation failed: a jail could not be made, started, entered or torn down.
    #[error("{context}: {source}")]
    Jail {
        /// What the engine was doing, naming the container or build step.
        context: String,
        #[source]
        source: kleene_jail::Error,
    },

    /// A build step's command could not run, or failed.
    #[error("the command '{command}' {outcome}")]
    CommandFailed {
        /// The command, as the Dockerfile wrote it.
        command: String,
        /// How it ended: `returned a non-zero code: 1`, `could not start: ...`.
        outcome: String,
    },

    /// Fetching a base image or an ADD source failed.
    #[error("fetching {url}: {reason}")]
    Fetch { url: String, reason: String },

    /// A base image archive is bad or unsafe.
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),

    /// An OCI image's layer is bad or unsafe: its tar, its compression, or its content
    /// against its diff id. Nothing of it was kept.
    #[error("layer {digest}: {source}")]
    Layer {
        /// The layer's blob digest.
        digest: String,
        #[source]
        source: crate::archive::ArchiveError,
    },

    /// A path inside an image or container root cannot be used: it leads out of the root
    /// through a symlink, loops, or names something of the wrong kind.
    #[error(transparent)]
    Path(kleene_rootfs::Error),

    /// A jail parameter (`-J`) is malformed, or unknown to this platform.
    #[error("jail parameter {text:?}: {source}")]
    JailParam {
        /// The parameter as given.
        text: String,
        #[source]
        source: kleene_jail::Error,
    },

    /// ZFS refused.
    #[error(transparent)]
    Zfs(#[from] ZfsError),

    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),

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

    /// An OCI image, layout, archive, registry or signature is at fault (kleene-oci's
    /// error names the blob, file, URL or key).
    #[error(transparent)]
    Oci(kleene_oci::Error),

    /// An image's signatures do not satisfy the policy that applies to it (no signature,
    /// or none that verifies with its keys): it was not used.
    #[error("{image}: {reason}")]
    Signature { image: String, reason: String },

    /// The operation was cancelled; nothing of it was left behind.
    #[error("cancelled")]
    Cancelled,

    /// The operation was stopped by its [`crate::Interrupt`]; a build reports it as the
    /// reason of its [`CoreError::BuildFailed`].
    #[error("interrupted")]
    Interrupted,

    /// A bug or an impossible state.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The metadata store failed: the database's own error, kept out of the public API (the
/// store's engine is an implementation detail), with what the engine was doing.
#[derive(Debug, thiserror::Error)]
#[error("metadata: {message}")]
pub struct MetadataError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl MetadataError {
    /// A failure described in words, with no underlying error.
    pub(crate) fn msg(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// The database's own error (only the store sees rusqlite: these are not `From`
    /// impls, which would put rusqlite in the public API).
    pub(crate) fn sql(e: rusqlite::Error) -> Self {
        Self {
            message: e.to_string(),
            source: Some(Box::new(e)),
        }
    }
}

impl CoreError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CoreError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn jail(context: impl Into<String>, source: kleene_jail::Error) -> Self {
        CoreError::Jail {
            context: context.into(),
            source,
        }
    }
}

/// Result of every engine operation.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
