//! Networks for Kleene containers. See README.md.
#![doc = include_str!("../README.md")]

pub mod error;
pub mod freebsd;
pub mod ipam;
#[cfg(target_os = "linux")]
pub mod linux;
pub mod model;
pub mod nft;
pub mod pf;
pub mod ports;

pub use error::{Error, HostError, Result};
