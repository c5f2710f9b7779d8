//! The crate's error type: every message names the path as given and the root.

use std::io;
use std::path::{Path, PathBuf};

/// A symlink met on the way: where it is and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The symlink's own path below the root, with every symlink before it resolved.
    pub path: PathBuf,
    /// Its target, as stored in the link.
    pub target: PathBuf,
}

/// What went wrong resolving or opening a path inside a root.
///
/// `root` is the root's path (for messages only: it is never used to reach the root
/// again), `path` the path as the caller gave it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The root directory itself could not be opened.
    #[error("opening root directory {}: {source}", root.display())]
    OpenRoot {
        /// The root's path.
        root: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// `..`, in the path or in a symlink's target, would climb above the root.
    #[error("{} in {}: {}", shown(path), root.display(), escape(via.as_ref()))]
    Escape {
        /// The root's path.
        root: PathBuf,
        /// The path as given.
        path: PathBuf,
        /// The symlink whose target holds the `..`, when it is not in the path itself.
        via: Option<Link>,
    },

    /// A symlink where the policy follows none ([`crate::Symlinks::Refuse`]).
    #[error(
        "{} in {}: {} is a symlink (to {}), which is not followed here",
        shown(path),
        root.display(),
        shown(&link.path),
        link.target.display()
    )]
    Symlink {
        /// The root's path.
        root: PathBuf,
        /// The path as given.
        path: PathBuf,
        /// The symlink.
        link: Link,
    },

    /// A symlink with an absolute target where the policy only follows relative ones
    /// ([`crate::Symlinks::FollowBeneath`]).
    #[error(
        "{} in {}: symlink {} -> {} points outside the root",
        shown(path),
        root.display(),
        shown(&link.path),
        link.target.display()
    )]
    AbsoluteSymlink {
        /// The root's path.
        root: PathBuf,
        /// The path as given.
        path: PathBuf,
        /// The symlink.
        link: Link,
    },

    /// More than [`crate::MAX_SYMLINKS`] symlinks on the way (a loop, most likely).
    #[error("{} in {}: too many symlinks (at {})", shown(path), root.display(), shown(at))]
    TooManySymlinks {
        /// The root's path.
        root: PathBuf,
        /// The path as given.
        path: PathBuf,
        /// The symlink that was one too many.
        at: PathBuf,
    },

    /// A component that must be a directory is something else.
    #[error("{} in {}: {} is not a directory", shown(path), root.display(), shown(at))]
    NotADirectory {
        /// The root's path.
        root: PathBuf,
        /// The path as given.
        path: PathBuf,
        /// The component, with every symlink before it resolved.
        at: PathBuf,
    },

    /// The path enters `.zfs` at the top of the root: on a ZFS dataset that is the
    /// control directory, where `mkdir` makes a snapshot.
    #[error(
        "{} in {}: it enters .zfs, the control directory of ZFS datasets",
        shown(path),
        root.display()
    )]
    ZfsControlDir {
        /// The root's path.
        root: PathBuf,
        /// The path as given.
        path: PathBuf,
    },

    /// The path cannot name what the operation needs (e.g. it names the root where a
    /// file is to be created).
    #[error("{} in {}: {reason}", shown(path), root.display())]
    InvalidPath {
        /// The root's path.
        root: PathBuf,
        /// The path as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A directory is where a file is to be created.
    #[error("{} in {}: a directory is in the way", shown(path), root.display())]
    DirectoryInTheWay {
        /// The root's path.
        root: PathBuf,
        /// The path as given.
        path: PathBuf,
    },

    /// A file to be read is not a regular file.
    #[error("{} in {}: not a regular file", shown(path), root.display())]
    NotAFile {
        /// The root's path.
        root: PathBuf,
        /// The path as given.
        path: PathBuf,
    },

    /// A file to be read is larger than the caller allows.
    #[error("{} in {}: larger than {max} bytes", shown(path), root.display())]
    TooLarge {
        /// The root's path.
        root: PathBuf,
        /// The path as given.
        path: PathBuf,
        /// The limit.
        max: u64,
    },

    /// A system call failed.
    #[error("{} in {}: {op} {}: {source}", shown(path), root.display(), shown(at))]
    Io {
        /// The root's path.
        root: PathBuf,
        /// The path as given.
        path: PathBuf,
        /// What was being done, e.g. `opening`.
        op: &'static str,
        /// The component concerned, with every symlink before it resolved.
        at: PathBuf,
        /// The error of the system call.
        #[source]
        source: io::Error,
    },
}

fn escape(via: Option<&Link>) -> String {
    match via {
        Some(l) => format!(
            "a symlink on the way leads out of the root ({} -> {})",
            shown(&l.path),
            l.target.display()
        ),
        None => "the path leads out of the root".to_string(),
    }
}

/// A path below the root for messages: `.` for the root itself (an empty path).
fn shown(p: &Path) -> std::path::Display<'_> {
    if p.as_os_str().is_empty() {
        Path::new(".").display()
    } else {
        p.display()
    }
}

impl Error {
    /// Whether the path (or a symlink's target on the way) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// Whether the path was refused for the root's safety: it leads out of the root, goes
    /// through a symlink the policy does not follow, through too many symlinks, or into
    /// `.zfs`. Such a path is hostile or broken, never merely missing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::Escape { .. }
                | Error::Symlink { .. }
                | Error::AbsoluteSymlink { .. }
                | Error::TooManySymlinks { .. }
                | Error::ZfsControlDir { .. }
        )
    }
}

impl From<Error> for io::Error {
    /// Keeps the kind of a system call's error; refusals are `PermissionDenied`.
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::OpenRoot { source, .. } | Error::Io { source, .. } => source.kind(),
            Error::NotADirectory { .. } => io::ErrorKind::NotADirectory,
            Error::DirectoryInTheWay { .. } => io::ErrorKind::IsADirectory,
            Error::InvalidPath { .. } | Error::NotAFile { .. } => io::ErrorKind::InvalidInput,
            Error::TooLarge { .. } => io::ErrorKind::FileTooLarge,
            _ => io::ErrorKind::PermissionDenied,
        };
        io::Error::new(kind, e)
    }
}

/// Result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
