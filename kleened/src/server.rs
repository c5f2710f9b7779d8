//! Serving the API on Unix sockets.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kleene_core::Engine;
use tokio::net::UnixListener;

/// What can go wrong while setting up or serving the API.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A socket could not be made.
    #[error("listening on {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Serving a socket failed.
    #[error("serving {path}: {source}")]
    Serve {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A server task ended abnormally.
    #[error("the server task of {path} failed: {reason}")]
    Task { path: PathBuf, reason: String },
}

/// A Unix socket kleened listens on; the file is removed when it is dropped.
#[derive(Debug)]
pub struct Socket {
    path: PathBuf,
    listener: Option<UnixListener>,
}

impl Socket {
    /// Makes the socket at `path`, mode 0600: an existing file there is replaced (as
    /// kleened does). The socket is bound under a temporary name beside it, restricted,
    /// then renamed into place, so it is never reachable with wider permissions and it
    /// accepts connections as soon as it exists.
    pub fn bind(path: &Path) -> Result<Self, ServeError> {
        let bind_err = |source| ServeError::Bind {
            path: path.to_path_buf(),
            source,
        };
        let file_name = path.file_name().ok_or_else(|| {
            bind_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the socket path names no file",
            ))
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(bind_err(e)),
        }
        let listener = UnixListener::bind(&tmp).map_err(bind_err)?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(bind_err(e));
        }
        Ok(Self {
            path: path.to_path_buf(),
            listener: Some(listener),
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serves the API of `engine` on `sockets` until `shutdown` completes, then lets the
/// requests in flight finish and removes the socket files.
pub async fn serve(
    engine: Engine,
    sockets: Vec<Socket>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let router = crate::api::router(engine);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let mut held = Vec::new();
    for mut socket in sockets {
        let Some(listener) = socket.listener.take() else {
            continue;
        };
        let path = socket.path.clone();
        log::info!("listening on http://{}", path.display());
        let mut rx = stop_rx.clone();
        let router = router.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await
        });
        tasks.push((path, task));
        held.push(socket);
    }
    let stopper = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut result = Ok(());
    for (path, task) in tasks {
        let outcome = match task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(ServeError::Serve { path, source }),
            Err(e) => Err(ServeError::Task {
                path,
                reason: e.to_string(),
            }),
        };
        if result.is_ok() {
            result = outcome;
        }
    }
    stopper.abort();
    drop(held);
    result
}
