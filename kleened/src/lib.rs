#![doc = include_str!("../README.md")]

pub mod api;
pub mod config;
pub mod exec;
mod image_ws;
pub mod logging;
mod networks;
pub mod server;
pub mod views;
pub mod ws;

pub use api::{router, ApiError};
pub use config::{Config, ConfigError};
pub use server::{serve, ServeError, Socket};

/// The kleene-core configuration for kleened's: the root dataset, the rest as
/// kleene-core's defaults.
pub fn engine_config(config: &Config) -> kleene_core::Config {
    let mut c = kleene_core::Config::new(config.kleene_root.clone());
    c.userns = config.userns;
    c
}

/// Starts, detached, every container whose restart policy is `on-startup` and that is not
/// running (Kleene's `--restart on-startup`, honoured when kleened starts): each one's
/// name and how its start went.
pub async fn start_on_startup(
    engine: &kleene_core::Engine,
) -> kleene_core::Result<Vec<(String, kleene_core::Result<()>)>> {
    let mut started = Vec::new();
    for c in engine.containers().await? {
        let wanted = c.config.restart == kleene_core::RestartPolicy::OnStartup;
        let idle = !matches!(
            c.runtime.state,
            kleene_core::RunState::Running | kleene_core::RunState::Starting
        );
        if wanted && idle {
            let result = engine
                .start_container(c.id.as_str(), kleene_core::Attach::Detached)
                .await
                .map(drop);
            started.push((c.name, result));
        }
    }
    Ok(started)
}
