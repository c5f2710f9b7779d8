//! The one error type of the crate, and the reading of zfs(8)'s messages into it.

use std::fmt;
use std::process::ExitStatus;

/// What went wrong, with the dataset it went wrong on.
#[derive(Debug, thiserror::Error)]
pub enum ZfsError {
    /// The dataset, snapshot or pool does not exist.
    #[error("dataset {name} does not exist")]
    NotFound { name: String },

    /// Creating, cloning, renaming or receiving onto a name that is taken.
    #[error("dataset {name} already exists")]
    AlreadyExists { name: String },

    /// The dataset is in use (mounted and open, or just cloned); retried with backoff
    /// before this is returned.
    #[error("dataset {name} is busy")]
    Busy { name: String },

    /// The dataset cannot go because others depend on it: the clones of a snapshot, or the
    /// children and snapshots of a filesystem.
    #[error("dataset {name} has dependents: {}", dependents.join(", "))]
    HasDependents {
        name: String,
        dependents: Vec<String>,
    },

    /// A name that breaks ZFS's naming rules; it never reached zfs(8).
    #[error("invalid zfs name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },

    /// A property name or value that ZFS would not take.
    #[error("invalid zfs property {name:?}: {reason}")]
    InvalidProperty { name: String, reason: String },

    /// The caller may not do this to the dataset.
    #[error("permission denied on dataset {name}")]
    PermissionDenied { name: String },

    /// The pool is full.
    #[error("out of space on dataset {name}")]
    OutOfSpace { name: String },

    /// The backend, or the ZFS it talks to, cannot do this.
    #[error("{operation} is not supported by the {backend} zfs backend")]
    Unsupported {
        operation: String,
        backend: &'static str,
    },

    /// zfs(8) failed in a way none of the above describes.
    #[error("{argv} failed ({status}): {stderr}")]
    CommandFailed {
        argv: Argv,
        status: String,
        stderr: String,
    },

    /// zfs(8) could not be started, or a stream could not be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// zfs(8) did not answer within its deadline ([`crate::Deadlines`]) and was killed, or
    /// a change waited as long for its turn on zfs-fuse: the ZFS daemon is probably wedged.
    /// What the command was doing may or may not have happened.
    #[error("{argv}: no answer after {} (is the ZFS daemon wedged?)", crate::process::human(*after))]
    Timeout {
        argv: Argv,
        after: std::time::Duration,
    },

    /// zfs(8) answered with something this crate cannot read.
    #[error("unexpected output from {argv}: {detail}")]
    UnexpectedOutput { argv: Argv, detail: String },

    /// A libzfs_core call failed with an errno none of the above describes.
    #[error("{call} on {name} failed: {source}")]
    Lzc {
        call: &'static str,
        name: String,
        #[source]
        source: std::io::Error,
    },
}

impl ZfsError {
    /// Whether a retry may succeed: zfs-fuse and OpenZFS both answer "busy" for a moment
    /// after a clone, a receive or an unmount.
    pub fn is_busy(&self) -> bool {
        matches!(self, ZfsError::Busy { .. })
    }

    /// Whether this is [`ZfsError::Timeout`]: zfs(8) was killed at its deadline.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ZfsError::Timeout { .. })
    }

    /// Whether this is [`ZfsError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, ZfsError::NotFound { .. })
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ZfsError::Io {
            context: context.into(),
            source,
        }
    }
}

/// An argv as it was run, shown quoted where needed so it can be pasted into a shell.
#[derive(Clone, PartialEq, Eq)]
pub struct Argv(pub Vec<String>);

impl fmt::Display for Argv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, arg) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./@:=,+%".contains(c));
            if plain {
                f.write_str(arg)?;
            } else {
                write!(f, "'{}'", arg.replace('\'', "'\\''"))?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Argv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Describes an exit status the way a user reads it.
pub(crate) fn describe_status(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                if let Some(sig) = status.signal() {
                    return format!("killed by signal {sig}");
                }
            }
            "no exit code".to_string()
        }
    }
}

/// Reads zfs(8)'s stderr into a typed error. `subject` is the dataset the command was
/// about, used when the message names none.
///
/// The messages are the same in OpenZFS (FreeBSD and Linux) and zfs-fuse: `cannot <verb>
/// '<name>': <reason>`.
pub(crate) fn classify(argv: &Argv, status: String, stderr: &str, subject: &str) -> ZfsError {
    let first = stderr.lines().next().unwrap_or_default();
    let name = quoted_name(first).unwrap_or(subject).to_string();
    let lower = stderr.to_ascii_lowercase();

    if lower.contains("has dependent clones")
        || lower.contains("has children")
        || lower.contains("use '-r' to destroy the following datasets")
    {
        let dependents = stderr
            .lines()
            .skip_while(|l| !l.starts_with("use '-"))
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        return ZfsError::HasDependents { name, dependents };
    }
    if lower.contains("does not exist")
        || lower.contains("no such pool")
        || lower.contains("no such file or directory")
        || lower.contains("could not find any snapshots")
    {
        return ZfsError::NotFound { name };
    }
    if lower.contains("already exists") {
        return ZfsError::AlreadyExists { name };
    }
    if lower.contains("is busy") || lower.contains("device busy") || lower.contains("resource busy")
    {
        return ZfsError::Busy { name };
    }
    if lower.contains("permission denied") || lower.contains("operation not permitted") {
        return ZfsError::PermissionDenied { name };
    }
    if lower.contains("out of space") || lower.contains("no space left") {
        return ZfsError::OutOfSpace { name };
    }
    ZfsError::CommandFailed {
        argv: argv.clone(),
        status,
        stderr: stderr.trim().to_string(),
    }
}

/// The name in `cannot open 'pool/x': ...`.
fn quoted_name(line: &str) -> Option<&str> {
    let start = line.find('\'')? + 1;
    let len = line[start..].find('\'')?;
    Some(&line[start..start + len])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn argv() -> Argv {
        Argv(vec!["zfs".into(), "destroy".into(), "p/x".into()])
    }

    fn c(stderr: &str) -> ZfsError {
        classify(&argv(), "exit code 1".into(), stderr, "p/subject")
    }

    // Recorded from zfs-fuse 0.7 here; OpenZFS's libzfs prints the same strings
    // (`cannot <verb> '<name>': <reason>`, zfs_standard_error).
    #[test]
    fn reads_recorded_messages() {
        assert!(
            matches!(c("cannot open 'kdev/nope': dataset does not exist\n"),
            ZfsError::NotFound { name } if name == "kdev/nope")
        );
        assert!(
            matches!(c("cannot create 'kdev/x': dataset already exists\n"),
            ZfsError::AlreadyExists { name } if name == "kdev/x")
        );
        assert!(matches!(c("cannot destroy 'kdev/c': dataset is busy\n"),
            ZfsError::Busy { name } if name == "kdev/c"));
        assert!(matches!(
            c("cannot unmount '/kdev/c': Device busy\n"),
            ZfsError::Busy { .. }
        ));
        assert!(matches!(
            c("cannot open 'nopool': no such pool\n"),
            ZfsError::NotFound { .. }
        ));
        assert!(matches!(
            c("cannot create 'tank/a': permission denied\n"),
            ZfsError::PermissionDenied { .. }
        ));
        assert!(matches!(
            c("cannot receive new filesystem stream: out of space\n"),
            ZfsError::OutOfSpace { name } if name == "p/subject"
        ));
        let e = c(
            "cannot destroy 'kdev/x@s1': snapshot has dependent clones\n\
                   use '-R' to destroy the following datasets:\nkdev/c\nkdev/d\n",
        );
        match e {
            ZfsError::HasDependents { name, dependents } => {
                assert_eq!(name, "kdev/x@s1");
                assert_eq!(dependents, vec!["kdev/c", "kdev/d"]);
            }
            other => panic!("{other:?}"),
        }
        let e = c("cannot destroy 'kdev/x': filesystem has children\n\
                   use '-r' to destroy the following datasets:\nkdev/x@s1\n");
        assert!(
            matches!(e, ZfsError::HasDependents { ref dependents, .. } if dependents == &["kdev/x@s1"])
        );
        let e = c("internal error: something odd\n");
        assert!(matches!(e, ZfsError::CommandFailed { .. }));
        assert_eq!(
            e.to_string(),
            "zfs destroy p/x failed (exit code 1): internal error: something odd"
        );
    }

    #[test]
    fn a_timeout_names_the_command_and_the_wait() {
        let e = ZfsError::Timeout {
            argv: Argv(vec![
                "zfs".into(),
                "create".into(),
                "-p".into(),
                "pool/x".into(),
            ]),
            after: std::time::Duration::from_secs(60),
        };
        assert_eq!(
            e.to_string(),
            "zfs create -p pool/x: no answer after 60 s (is the ZFS daemon wedged?)"
        );
        assert!(e.is_timeout() && !e.is_busy());
    }

    #[test]
    fn argv_display_quotes_what_a_shell_would_split() {
        let a = Argv(vec![
            "zfs".into(),
            "set".into(),
            "kleene:x=a b".into(),
            "it's".into(),
        ]);
        assert_eq!(a.to_string(), "zfs set 'kleene:x=a b' 'it'\\''s'");
    }
}
