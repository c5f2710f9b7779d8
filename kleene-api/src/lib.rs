#![doc = include_str!("../README.md")]

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "core")]
pub mod transcript;
pub mod types;
#[cfg(feature = "core")]
pub mod views;

pub use types::*;
