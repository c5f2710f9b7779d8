//! The runtime's errors: each names the container, the file or the config.json field.

use std::path::PathBuf;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A container id the runtime does not accept (empty, `.`/`..`, a `/`, control
    /// characters).
    #[error("invalid container id {0:?}: use letters, digits, '_', '+', '-' and '.' (not '.' or '..' alone)")]
    InvalidId(String),

    /// No container has the id.
    #[error("container {0} does not exist")]
    NotFound(String),

    /// A container with the id exists already.
    #[error("container with id {0} already exists")]
    Exists(String),

    /// The bundle's config.json is not there or not JSON of the runtime spec.
    #[error("{}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },

    /// A field of config.json has a value the runtime refuses (named as the spec's JSON
    /// path, e.g. `process.cwd`).
    #[error("config.json: {field}: {reason}")]
    Invalid { field: String, reason: String },

    /// A field of config.json the runtime cannot honour here: refused, never ignored.
    #[error("config.json: {field} is not supported{}: {reason}", if .platform.is_empty() { String::new() } else { format!(" on {}", .platform) })]
    Unsupported {
        field: String,
        platform: &'static str,
        reason: String,
    },

    /// The container is in a state the command cannot act on.
    #[error("container {id} is {status}: {reason}")]
    State {
        id: String,
        status: &'static str,
        reason: String,
    },

    /// Another runtime process holds the container's lock.
    #[error("container {0} is being changed by another runtime process")]
    Busy(String),

    /// A hook failed (its program, exit status or timeout).
    #[error("{kind} hook {path}: {reason}")]
    Hook {
        kind: &'static str,
        path: String,
        reason: String,
    },

    /// Isolation failed: the container's process could not be set up or started.
    #[error(transparent)]
    Jail(#[from] kleene_jail::Error),

    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Unsupported {
            field: field.into(),
            platform: "",
            reason: reason.into(),
        }
    }
}

/// The runtime's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
