#![doc = include_str!("../README.md")]

mod digest;
mod error;
mod image;
mod layout;
mod platform;
#[cfg(feature = "testing")]
pub mod testing;

pub use digest::{chain_ids, Digest, VerifyingReader};
pub use error::{Error, Result};
pub use image::{ImageSettings, Layer, LayerCompression, ResolvedImage};
pub use layout::{Layout, REF_NAME_ANNOTATION};
pub use platform::Platform;

/// The OCI image-spec types this crate reads (from the `oci-spec` crate).
pub use oci_spec::image as spec;
