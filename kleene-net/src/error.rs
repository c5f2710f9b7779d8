//! The crate's errors.

/// What went wrong in kleene-net.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input from a user or a caller: the message names the thing and the value.
    #[error("{0}")]
    Invalid(String),
}

/// kleene-net's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
