//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong configuring, starting, running or stopping a jail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The jail's root directory does not exist or is not a directory.
    #[error("jail root {path} does not exist or is not a directory")]
    RootNotFound {
        /// The root given to [`crate::JailConfig::new`].
        path: PathBuf,
    },
    /// A `-J` parameter could not be parsed or has a value of the wrong kind.
    #[error("invalid jail parameter {param}: {reason}")]
    InvalidParameter {
        /// The parameter as given.
        param: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A jail parameter that has no meaning on this platform.
    #[error("jail parameter {name} is not supported on {platform}")]
    UnsupportedParameter {
        /// The parameter's name.
        name: String,
        /// The platform that refuses it.
        platform: &'static str,
    },
    /// The configuration is inconsistent (empty command, relative mount target, ...).
    #[error("invalid jail configuration: {0}")]
    InvalidConfig(String),
    /// The user is not in the container's `/etc/passwd`.
    #[error("unknown user {user} in the container's /etc/passwd")]
    UnknownUser {
        /// The user as given (`name` or `uid[:gid]`).
        user: String,
    },
    /// The group is not in the container's `/etc/group`.
    #[error("unknown group {group} in the container's /etc/group")]
    UnknownGroup {
        /// The group as given.
        group: String,
    },
    /// The container's passwd or group file could not be read safely.
    #[error("cannot read {file} in the container: {source}")]
    ContainerFile {
        /// The file inside the container, e.g. `/etc/passwd`.
        file: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The command does not exist in the container (or is not executable).
    #[error("command {command} not found in the container")]
    CommandNotFound {
        /// `argv[0]`.
        command: String,
    },
    /// The command exists but could not be executed.
    #[error("cannot execute {command} in the container: {source}")]
    Exec {
        /// `argv[0]`.
        command: String,
        /// The error execve(2) gave.
        source: io::Error,
    },
    /// The working directory does not exist in the container.
    #[error("working directory {path} does not exist in the container")]
    WorkdirNotFound {
        /// The working directory.
        path: PathBuf,
    },
    /// A set-up step in the child (a mount, pivot_root, setuid, ...) failed.
    #[error("jail set-up failed at {step}: {source}")]
    Setup {
        /// What the child was doing.
        step: String,
        /// The error of the system call.
        source: io::Error,
    },
    /// A system call in the calling process failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Processes under a jail root did not end after SIGKILL (for instance stuck in
    /// uninterruptible sleep on a hung file system): see [`crate::stop_processes_under`].
    #[error("processes under {} did not end after SIGKILL: {}", root.display(), pid_list(pids))]
    ProcessesSurvived {
        /// The root they live in.
        root: PathBuf,
        /// Their host pids.
        pids: Vec<i32>,
    },
    /// The jail (or process) is gone.
    #[error("the jail is not running")]
    NotRunning,
    /// [`crate::release`] found no held process answering on the gate.
    #[error("the process held on {} {reason}", gate.display())]
    Release {
        /// The gate FIFO.
        gate: PathBuf,
        /// What happened.
        reason: String,
    },
    /// A setting this platform does not have (Linux's namespaces, capabilities, ... on
    /// FreeBSD).
    #[error("{setting} is not supported on {platform}")]
    UnsupportedSetting {
        /// The setting, as the API names it.
        setting: String,
        /// The platform that refuses it.
        platform: &'static str,
    },
    /// A resource limit the host cannot enforce (its cgroup controller, or RACCT, is
    /// missing).
    #[error("{limit} cannot be enforced: {reason}")]
    LimitUnavailable {
        /// The limit, as the API names it.
        limit: String,
        /// Why.
        reason: String,
    },
    /// An idmapped mount ([`crate::JailConfig::idmapped_root`], [`crate::Mount::idmapped`])
    /// of a path whose file system does not support them (`mount_setattr(2)` answered
    /// `EINVAL`).
    #[error("the file system of {} does not support idmapped mounts", path.display())]
    IdmappedMountUnsupported {
        /// The root or the mount's source.
        path: PathBuf,
    },
    /// This platform has no jail backend.
    #[error("jails are not supported on this platform")]
    UnsupportedPlatform,
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn invalid_param(param: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            param: param.into(),
            reason: reason.into(),
        }
    }
}

fn pid_list(pids: &[i32]) -> String {
    pids.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
