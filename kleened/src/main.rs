//! `kleened`: the Kleene API daemon over kleene-core.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// The Kleene API daemon: kleened's HTTP API on Unix and TCP sockets, plain or with
/// TLS, over kleene-core.
#[derive(Debug, Parser)]
#[command(name = "kleened", version)]
struct Args {
    /// The configuration file (YAML).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() {
    // In a container's monitor this runs the monitor and exits; otherwise it returns.
    kleene_core::init();
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("kleened: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => kleened::Config::load(path)?,
        None => {
            let path = std::path::Path::new(kleened::config::DEFAULT_CONFIG_PATH);
            if path.exists() {
                kleened::Config::load(path)?
            } else {
                kleened::Config::default()
            }
        }
    };
    let log_file = config
        .enable_logging
        .then(|| std::path::Path::new(kleened::config::LOG_FILE));
    kleened::logging::init(config.log_level.filter(), log_file)
        .context("opening the log file (set enable_logging: false to log to stderr only)")?;
    // The TLS files are read before the engine opens: a bad socket is a startup error
    // that touches nothing.
    let prepared = config
        .api_listening_sockets
        .iter()
        .map(kleened::server::PreparedSocket::prepare)
        .collect::<Result<Vec<_>, _>>()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let engine = kleene_core::Engine::open(kleened::engine_config(&config))
            .await
            .with_context(|| format!("opening the engine on {}", config.kleene_root))?;
        // Containers with `--restart on-startup` start with the daemon.
        match kleened::start_on_startup(&engine).await {
            Ok(started) => {
                for (name, result) in started {
                    match result {
                        Ok(()) => {
                            log::info!("started container {name} (restart policy on-startup)")
                        }
                        Err(e) => log::error!("container {name} (restart policy on-startup): {e}"),
                    }
                }
            }
            Err(e) => log::error!("listing the containers to start on startup: {e}"),
        }
        let sockets = prepared
            .into_iter()
            .map(kleened::server::PreparedSocket::bind)
            .collect::<Result<Vec<_>, _>>()?;
        log::info!(
            "kleened {} on {}",
            env!("CARGO_PKG_VERSION"),
            config.kleene_root
        );
        kleened::serve(engine, sockets, shutdown_signal()).await?;
        log::info!("kleened stopped");
        Ok(())
    })
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        log::error!("cannot watch SIGINT and SIGTERM: stop kleened with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => log::info!("SIGINT: stopping"),
        _ = term.recv() => log::info!("SIGTERM: stopping"),
    }
}
