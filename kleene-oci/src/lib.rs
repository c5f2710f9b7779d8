#![doc = include_str!("../README.md")]

pub mod diff;
mod digest;
pub mod docker_archive;
mod error;
mod image;
mod layout;
mod platform;
pub mod registry;
pub mod sign;
#[cfg(feature = "testing")]
pub mod testing;
pub mod write;

pub use digest::{chain_ids, Digest, VerifyingReader};
pub use error::{Error, Result};
pub use image::{ImageSettings, Layer, LayerCompression, ResolvedImage};
pub use layout::{Layout, REF_NAME_ANNOTATION};
pub use platform::Platform;

/// The OCI image-spec types this crate reads (from the `oci-spec` crate).
pub use oci_spec::image as spec;
