#![doc = include_str!("../README.md")]

pub mod api;
pub mod config;
pub mod logging;
pub mod server;
pub mod views;

pub use api::{router, ApiError};
pub use config::{Config, ConfigError};
pub use server::{serve, ServeError, Socket};

/// The kleene-core configuration for kleened's: the root dataset, the rest as
/// kleene-core's defaults.
pub fn engine_config(config: &Config) -> kleene_core::Config {
    kleene_core::Config::new(config.kleene_root.clone())
}
