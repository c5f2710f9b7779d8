//! Serving the API on the sockets of `api_listening_sockets`: Unix sockets and TCP, each
//! plain (`http`) or with TLS (`https`, rustls, optionally verifying client certificates).

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use axum::Router;
use kleene_core::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{Listen, ListenSocket, TlsConfig};

/// How long a client has for its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many TLS handshakes a socket runs at once; it accepts no more connections until
/// one ends.
const MAX_HANDSHAKES: usize = 256;

/// What can go wrong while setting up or serving the API. The cause is the error's
/// source (shown by `{:#}` in anyhow, as kleened's `main` prints it), not repeated in its
/// text.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A socket could not be made.
    #[error("listening on {address}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },

    /// The TLS settings of an `https` socket are unusable.
    #[error("{address}")]
    Tls {
        address: String,
        #[source]
        source: TlsError,
    },

    /// Serving a socket failed.
    #[error("serving {address}")]
    Serve {
        address: String,
        #[source]
        source: std::io::Error,
    },

    /// A server task ended abnormally.
    #[error("the server task of {address} failed: {reason}")]
    Task { address: String, reason: String },
}

/// What can be wrong with the files of an `https` socket; each names the key and file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {key} {path}")]
    Read {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file holds no usable PEM data of the kind its key wants.
    #[error("{key} {path}: {message}")]
    Invalid {
        key: &'static str,
        path: PathBuf,
        message: String,
    },

    /// rustls refused the settings (say, a key that does not match the certificate).
    #[error("{0}")]
    Refused(String),
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |message: String| TlsError::Invalid {
        key,
        path: path.to_path_buf(),
        message,
    };
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// The rustls server settings of an `https` socket, read from its files.
pub fn tls_server_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates("tlscert", &tls.cert)?;
    let (key_name, key_path) = match &tls.key {
        Some(p) => ("tlskey", p.as_path()),
        None => ("tlscert", tls.cert.as_path()),
    };
    let key_pem = read(key_name, key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Invalid {
        key: key_name,
        path: key_path.to_path_buf(),
        message: match (e, &tls.key) {
            (rustls::pki_types::pem::Error::NoItemsFound, None) => {
                "no PEM private key in it, and no tlskey is given".into()
            }
            (rustls::pki_types::pem::Error::NoItemsFound, Some(_)) => {
                "no PEM private key in it".into()
            }
            (e, _) => format!("invalid PEM: {e}"),
        },
    })?;
    if let Some(dh) = &tls.dh {
        // As kleened, the file must exist; rustls has no use for it.
        read("tlsdh", dh)?;
        log::warn!(
            "tlsdh {} is not used: TLS here uses ECDHE key exchange only",
            dh.display()
        );
    }
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Refused(e.to_string()))?;
    let builder = match (tls.verify, &tls.ca) {
        (true, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates("tlscacert", ca)? {
                roots.add(cert).map_err(|e| TlsError::Invalid {
                    key: "tlscacert",
                    path: ca.clone(),
                    message: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| TlsError::Invalid {
                        key: "tlscacert",
                        path: ca.clone(),
                        message: e.to_string(),
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
        (true, None) => {
            return Err(TlsError::Refused(
                "tlsverify needs tlscacert to verify client certificates with".into(),
            ))
        }
        (false, _) => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Refused(format!("tlscert and tlskey: {e}")))?;
    // The API is HTTP/1.1 (with WebSocket upgrades).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An `api_listening_sockets` entry with its TLS files read: all that can fail before
/// binding, checked before kleened opens its engine.
#[derive(Clone)]
pub struct PreparedSocket {
    spec: ListenSocket,
    tls: Option<TlsAcceptor>,
}

impl Debug for PreparedSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedSocket")
            .field("spec", &self.spec)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl PreparedSocket {
    /// Reads the TLS files of `spec`, if it is an `https` socket.
    pub fn prepare(spec: &ListenSocket) -> Result<Self, ServeError> {
        let tls = match &spec.tls {
            Some(tls) => Some(TlsAcceptor::from(tls_server_config(tls).map_err(
                |source| ServeError::Tls {
                    address: spec.raw.address.clone(),
                    source,
                },
            )?)),
            None => None,
        };
        Ok(Self {
            spec: spec.clone(),
            tls,
        })
    }

    /// Binds it (inside a tokio runtime).
    pub fn bind(self) -> Result<Socket, ServeError> {
        let bound = match &self.spec.listen {
            Listen::Unix(path) => Socket::bind(path),
            Listen::Tcp(addr) => Socket::bind_tcp(*addr),
        };
        let mut socket = bound.map_err(|e| match e {
            ServeError::Bind { source, .. } => ServeError::Bind {
                address: self.spec.raw.address.clone(),
                source,
            },
            e => e,
        })?;
        if let Some(acceptor) = self.tls {
            socket.tls = Some(acceptor);
        }
        Ok(socket)
    }
}

#[derive(Debug)]
enum Bound {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// A socket kleened listens on; a Unix socket's file is removed when it is dropped.
pub struct Socket {
    bound: Option<Bound>,
    unix_path: Option<PathBuf>,
    local: Option<SocketAddr>,
    tls: Option<TlsAcceptor>,
}

impl Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("address", &self.address())
            .finish()
    }
}

impl Socket {
    /// Makes a plain Unix socket at `path`, mode 0600: an existing file there is replaced
    /// (as kleened does). The socket is bound under a temporary name beside it,
    /// restricted, then renamed into place, so it is never reachable with wider
    /// permissions and it accepts connections as soon as it exists.
    pub fn bind(path: &Path) -> Result<Self, ServeError> {
        let bind_err = |source| ServeError::Bind {
            address: format!("http://{}", path.display()),
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
            bound: Some(Bound::Unix(listener)),
            unix_path: Some(path.to_path_buf()),
            local: None,
            tls: None,
        })
    }

    /// Listens, plain, on TCP address `addr` (port 0: a free port, see
    /// [`Socket::local_addr`]).
    pub fn bind_tcp(addr: SocketAddr) -> Result<Self, ServeError> {
        let bind_err = |source| ServeError::Bind {
            address: format!("http://{addr}"),
            source,
        };
        let std_listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        let local = std_listener.local_addr().map_err(bind_err)?;
        std_listener.set_nonblocking(true).map_err(bind_err)?;
        let listener = TcpListener::from_std(std_listener).map_err(bind_err)?;
        Ok(Self {
            bound: Some(Bound::Tcp(listener)),
            unix_path: None,
            local: Some(local),
            tls: None,
        })
    }

    /// The socket with TLS: clients are served after a handshake with `config`.
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(TlsAcceptor::from(config));
        self
    }

    /// A Unix socket's path.
    pub fn path(&self) -> Option<&Path> {
        self.unix_path.as_deref()
    }

    /// A TCP socket's address (with the port picked for port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// Where it listens, as kleened's addresses are written: `https://127.0.0.1:8085`,
    /// `http:///var/run/kleened.sock`.
    pub fn address(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        match (&self.unix_path, self.local) {
            (Some(p), _) => format!("{scheme}://{}", p.display()),
            (None, Some(a)) => format!("{scheme}://{a}"),
            (None, None) => format!("{scheme}://?"),
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A listener whose connections are served after a TLS handshake. Handshakes run beside
/// the accept loop, each with [`HANDSHAKE_TIMEOUT`], so a slow client holds up no other;
/// a failed one is logged and the listener goes on accepting.
pub struct TlsListener<L: Listener> {
    inner: L,
    acceptor: TlsAcceptor,
    label: String,
    handshakes: JoinSet<Handshake<L>>,
}

/// A finished handshake: the stream or why it failed, and the peer.
type Handshake<L> = (
    Result<TlsStream<<L as Listener>::Io>, String>,
    <L as Listener>::Addr,
);

impl<L: Listener> Debug for TlsListener<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("label", &self.label)
            .field("handshakes", &self.handshakes.len())
            .finish()
    }
}

impl<L: Listener> TlsListener<L> {
    /// Wraps `inner`; `label` names the socket in the log.
    pub fn new(inner: L, acceptor: TlsAcceptor, label: impl Into<String>) -> Self {
        Self {
            inner,
            acceptor,
            label: label.into(),
            handshakes: JoinSet::new(),
        }
    }
}

impl<L> Listener for TlsListener<L>
where
    L: Listener,
    L::Addr: Debug + Sync + 'static,
{
    type Io = TlsStream<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let room = self.handshakes.len() < MAX_HANDSHAKES;
            tokio::select! {
                (io, addr) = self.inner.accept(), if room => {
                    let acceptor = self.acceptor.clone();
                    self.handshakes.spawn(async move {
                        let result =
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                                Ok(Ok(stream)) => Ok(stream),
                                Ok(Err(e)) => Err(e.to_string()),
                                Err(_) => Err(format!(
                                    "no handshake within {} s",
                                    HANDSHAKE_TIMEOUT.as_secs()
                                )),
                            };
                        (result, addr)
                    });
                }
                Some(done) = self.handshakes.join_next() => match done {
                    Ok((Ok(stream), addr)) => return (stream, addr),
                    Ok((Err(e), addr)) => {
                        log::warn!("{}: TLS handshake with {addr:?} failed: {e}", self.label)
                    }
                    Err(e) => log::error!("{}: a TLS handshake task failed: {e}", self.label),
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

type Stop = tokio::sync::watch::Receiver<bool>;

fn spawn_server<L>(
    listener: L,
    router: Router,
    mut stop: Stop,
) -> tokio::task::JoinHandle<std::io::Result<()>>
where
    L: Listener,
    L::Addr: Debug,
{
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            })
            .await
    })
}

/// Serves the API of `engine` on `sockets` until `shutdown` completes, then lets the
/// requests in flight finish and removes the Unix socket files.
pub async fn serve(
    engine: Engine,
    sockets: Vec<Socket>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (router, sessions) = crate::api::app(engine);
    let stopping = sessions.clone();
    let shutdown = async move {
        shutdown.await;
        // WebSocket sessions are not connections the server waits for: they are told to
        // end (builds interrupted, exec'd processes stopped) and awaited below.
        stopping.shutdown();
    };
    let result = serve_router(router, sockets, shutdown).await;
    if !sessions.drained(SESSION_DRAIN).await {
        log::warn!(
            "{} websocket session(s) did not end within {} s",
            sessions.live(),
            SESSION_DRAIN.as_secs()
        );
    }
    result
}

/// How long a stopping daemon waits for its WebSocket sessions to end.
pub const SESSION_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `router` on `sockets` until `shutdown` completes, as [`serve`] does.
pub async fn serve_router(
    router: Router,
    sockets: Vec<Socket>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let mut held = Vec::new();
    for mut socket in sockets {
        let Some(bound) = socket.bound.take() else {
            continue;
        };
        let address = socket.address();
        log::info!("listening on {address}");
        let (rx, router) = (stop_rx.clone(), router.clone());
        let task = match (bound, socket.tls.clone()) {
            (Bound::Unix(l), None) => spawn_server(l, router, rx),
            (Bound::Tcp(l), None) => spawn_server(l, router, rx),
            (Bound::Unix(l), Some(acceptor)) => {
                spawn_server(TlsListener::new(l, acceptor, &address), router, rx)
            }
            (Bound::Tcp(l), Some(acceptor)) => {
                spawn_server(TlsListener::new(l, acceptor, &address), router, rx)
            }
        };
        tasks.push((address, task));
        held.push(socket);
    }
    let stopper = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut result = Ok(());
    for (address, task) in tasks {
        let outcome = match task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(ServeError::Serve { address, source }),
            Err(e) => Err(ServeError::Task {
                address,
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
