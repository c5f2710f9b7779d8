//! The Linux backend's errors.

use std::time::Duration;

/// What went wrong in the Linux backend. Messages are lower-case and name the operation
/// and the interface, address or namespace concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A netlink request was refused or failed.
    #[error("netlink: cannot {op} in {ns}: {source}")]
    Netlink {
        /// What was attempted, naming the interface/address (e.g. `add address 10.0.0.1/24 to kbr0`).
        op: String,
        /// The network namespace the connection is bound to (e.g. `net:[4026531840]`).
        ns: String,
        /// rtnetlink's error (a kernel errno for refused requests).
        #[source]
        source: rtnetlink::Error,
    },
    /// An interface that must exist does not.
    #[error("interface {name} not found in {ns}")]
    LinkNotFound {
        /// The interface's name.
        name: String,
        /// The namespace searched.
        ns: String,
    },
    /// A name exists but is not the kind of link expected.
    #[error("interface {name} in {ns} exists but is not a bridge")]
    NotABridge {
        /// The interface's name.
        name: String,
        /// The namespace searched.
        ns: String,
    },
    /// An interface name that the kernel would refuse.
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A system call on a namespace failed (unshare, setns).
    #[error("cannot {op} network namespace {ns}: {source}")]
    Namespace {
        /// The call (`unshare`, `setns into`).
        op: &'static str,
        /// The namespace (`net:[inode]`, or `new` for unshare).
        ns: String,
        /// The errno.
        #[source]
        source: nix::errno::Errno,
    },
    /// A file or process operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was attempted (`open`, `write`, `spawn`).
        op: &'static str,
        /// The file or program.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A helper thread (one that entered a namespace) panicked or could not start.
    #[error("namespace helper thread for {ns} failed: {reason}")]
    Thread {
        /// The namespace it was working in.
        ns: String,
        /// What happened.
        reason: String,
    },
    /// No tokio runtime to drive a netlink connection on.
    #[error("no tokio runtime to drive the netlink connection for {ns}: {reason}")]
    NoRuntime {
        /// The namespace of the connection.
        ns: String,
        /// tokio's explanation.
        reason: String,
    },
    /// `nft` exited with an error.
    #[error("nft {args} failed ({status}): {stderr}")]
    Nft {
        /// nft's arguments, space-separated.
        args: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it wrote on stderr, trimmed.
        stderr: String,
    },
    /// `nft` did not finish in time and was killed.
    #[error("nft {args} did not finish within {timeout:?} and was killed")]
    NftTimeout {
        /// nft's arguments, space-separated.
        args: String,
        /// The bound.
        timeout: Duration,
    },
}

/// The Linux backend's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
