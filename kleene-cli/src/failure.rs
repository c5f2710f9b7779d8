//! How a command fails: one line on stderr and an exit code.

use kleene_core::CoreError;

/// Exit code of a failed operation.
pub const FAILED: i32 = 1;
/// Exit code of a usage error (clap's too) and of what is not supported yet.
pub const USAGE: i32 = 2;

/// A failure: printed as `klee: <message>`, exiting with `code`.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    /// An operation failed (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            code: FAILED,
            message: one_line(message.into()),
        }
    }

    /// A usage error, or a request klee does not support yet (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: USAGE,
            message: one_line(message.into()),
        }
    }

    /// A failure whose lines were printed already (a build's transcript ends with them).
    pub fn reported(code: i32) -> Self {
        Self {
            code,
            message: String::new(),
        }
    }
}

impl From<CoreError> for Failure {
    fn from(e: CoreError) -> Self {
        Self::failed(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self::failed(e.to_string())
    }
}

/// A command's result: the exit code to leave with.
pub type Outcome = Result<i32, Failure>;

/// A message of several lines (zfs(8)'s own stderr inside an error, for instance) as one:
/// its lines joined with "; ".
fn one_line(message: String) -> String {
    if !message.contains('\n') {
        return message;
    }
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_one_line() {
        let f = Failure::failed(
            "zfs get failed (exit code 1): connect: Connection refused\nPlease make sure that the zfs-fuse daemon is running.\n\n",
        );
        assert_eq!(
            f.message,
            "zfs get failed (exit code 1): connect: Connection refused; Please make sure that the zfs-fuse daemon is running."
        );
        assert_eq!(Failure::usage("one line").message, "one line");
    }
}
