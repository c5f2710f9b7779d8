//! A client of kleened: REST requests and WebSockets over a Unix socket, TCP, or TLS
//! over either, one connection per request.
//!
//! Hosts are written as Kleene's `klee` takes them: `http:///var/run/kleened.sock` (a
//! Unix socket; `https:///path` is TLS on it, with the server named `localhost`),
//! `http://host[:port]` and `https://host[:port]`. TLS follows klee's options: the
//! server's certificate is verified with `verify` or when a CA file is given (against
//! that CA only, else the Mozilla roots Certifi also ships), and `cert` + `key` present
//! a client certificate.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub use hyper::Method;

use crate::types::{ErrorResponse, WebSocketMessage};

/// Kleene's default host.
pub const DEFAULT_HOST: &str = "http:///var/run/kleened.sock";

/// What can go wrong talking to kleened.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not parse the '--host' parameter {0:?}")]
    Host(String),
    #[error("when '--tlscert' is set you must also provide the '--tlskey'")]
    KeyMissing,
    #[error("cannot read {path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("invalid tls configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("unable to connect to kleened at {host}: {source}")]
    Connect {
        host: String,
        source: std::io::Error,
    },
    #[error("connection to kleened failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("invalid request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("unexpected response from kleened: {0}")]
    Json(#[from] serde_json::Error),
    #[error("kleened closed the websocket before it started (code {code}): {reason}")]
    ClosedEarly { code: u16, reason: String },
}

/// TLS options, as klee's `--tlsverify`, `--tlscacert`, `--tlscert` and `--tlskey`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Verify the server's certificate (implied by `ca`).
    pub verify: bool,
    /// Trust certificates signed only by this CA (PEM).
    pub ca: Option<PathBuf>,
    /// The client's certificate (PEM); needs `key`.
    pub cert: Option<PathBuf>,
    /// The key of `cert` (PEM).
    pub key: Option<PathBuf>,
}

/// Where kleened listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A Unix socket.
    Unix(PathBuf),
    /// A host name or address (IPv6 without brackets) and a port.
    Tcp { host: String, port: u16 },
}

/// A host as klee takes it: an address and whether TLS is spoken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub address: Address,
    pub tls: bool,
}

impl Host {
    /// Reads `http:///path`, `https:///path`, `http://host[:port]`, `https://host[:port]`
    /// (ports 80 and 443 by default), or an absolute path (a Unix socket).
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let bad = || ClientError::Host(text.to_string());
        if text.starts_with('/') {
            return Ok(Self {
                address: Address::Unix(PathBuf::from(text)),
                tls: false,
            });
        }
        let (tls, rest) = if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(bad());
        };
        if rest.contains(['?', '#', ';']) {
            return Err(bad());
        }
        if rest.starts_with('/') {
            return Ok(Self {
                address: Address::Unix(PathBuf::from(rest)),
                tls,
            });
        }
        // host[:port], with an optional trailing slash.
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains('/') || authority.contains('@') {
            return Err(bad());
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => default_port,
                p => p
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(bad)?,
            };
            (addr.to_string(), port)
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            address: Address::Tcp { host, port },
            tls,
        })
    }

    /// The `Host` header and the name TLS checks: `localhost` for a Unix socket.
    fn name(&self) -> String {
        match &self.address {
            Address::Unix(_) => "localhost".into(),
            Address::Tcp { host, .. } => host.clone(),
        }
    }

    fn authority(&self) -> String {
        match &self.address {
            Address::Unix(_) => "localhost".into(),
            Address::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Address::Tcp { host, port } => format!("{host}:{port}"),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        match &self.address {
            Address::Unix(p) => write!(f, "{scheme}://{}", p.display()),
            Address::Tcp { .. } => write!(f, "{scheme}://{}", self.authority()),
        }
    }
}

/// A byte stream to kleened.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection to kleened, whichever way it goes.
pub struct Stream(Box<dyn Io>);

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Stream")
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A client of one kleened.
#[derive(Clone)]
pub struct Client {
    host: Host,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.host)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// An answer to a REST request: its status and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// The `message` of an `ErrorResponse` body, else the body as text.
    pub fn message(&self) -> String {
        match serde_json::from_slice::<ErrorResponse>(&self.body) {
            Ok(e) => e.message,
            Err(_) => String::from_utf8_lossy(&self.body).trim().to_string(),
        }
    }
}

impl Client {
    /// A client of the kleened at `host`; `tls` is used with `https` hosts only.
    pub fn new(host: &str, tls: &TlsOptions) -> Result<Self, ClientError> {
        let host = Host::parse(host)?;
        if tls.cert.is_some() && tls.key.is_none() {
            return Err(ClientError::KeyMissing);
        }
        let tls = if host.tls {
            Some(Arc::new(tls_config(tls)?))
        } else {
            None
        };
        Ok(Self { host, tls })
    }

    /// Where this client goes.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// A new connection to kleened.
    pub async fn connect(&self) -> Result<Stream, ClientError> {
        let connect_error = |source| ClientError::Connect {
            host: self.host.to_string(),
            source,
        };
        let plain: Box<dyn Io> = match &self.host.address {
            Address::Unix(path) => Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_error)?,
            ),
            Address::Tcp { host, port } => Box::new(
                tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(connect_error)?,
            ),
        };
        let Some(config) = &self.tls else {
            return Ok(Stream(plain));
        };
        let name = ServerName::try_from(self.host.name())
            .map_err(|_| ClientError::Host(self.host.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, plain)
            .await
            .map_err(connect_error)?;
        Ok(Stream(Box::new(tls)))
    }

    /// Sends `method path` with `body` as JSON (none when `None`).
    pub async fn request<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Response, ClientError> {
        let io = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        let driver = tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.authority());
        let payload = match body {
            Some(b) => {
                req = req.header(CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(b)?)
            }
            None => Bytes::new(),
        };
        let answer = sender.send_request(req.body(Full::new(payload))?).await?;
        let status = answer.status().as_u16();
        let body = answer.into_body().collect().await?.to_bytes();
        drop(sender);
        driver.abort();
        Ok(Response { status, body })
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Response, ClientError> {
        self.request::<()>(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body, or none.
    pub async fn post<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<Response, ClientError> {
        self.request(Method::POST, path, body).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<Response, ClientError> {
        self.request::<()>(Method::DELETE, path, None).await
    }

    /// Opens the WebSocket at `path` (`/exec/start`, `/images/build`, ...).
    pub async fn websocket(&self, path: &str) -> Result<WebSocket, ClientError> {
        let io = self.connect().await?;
        let scheme = if self.host.tls { "wss" } else { "ws" };
        let url = format!("{scheme}://{}{path}", self.host.authority());
        let (ws, _) = tokio_tungstenite::client_async(url, io).await?;
        Ok(WebSocket { ws })
    }
}

/// Percent-encodes `text` for a path segment or a query value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What comes from a WebSocket after its `starting` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text frame: output, or the lines of a build.
    Text(String),
    /// A binary frame: output.
    Binary(Vec<u8>),
    /// The end: the close code (1005 when kleened gave none) and its reason, read as a
    /// `WebSocketMessage` when it is one.
    Closed {
        code: u16,
        reason: Option<WebSocketMessage>,
        raw: String,
    },
}

/// A WebSocket to kleened.
#[derive(Debug)]
pub struct WebSocket {
    ws: WebSocketStream<Stream>,
}

impl WebSocket {
    /// Sends `config` as JSON, the first frame of every endpoint.
    pub async fn send_config<T: Serialize + ?Sized>(
        &mut self,
        config: &T,
    ) -> Result<(), ClientError> {
        let text = serde_json::to_string(config)?;
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    /// Sends input, as a binary frame.
    pub async fn send_binary(&mut self, data: Vec<u8>) -> Result<(), ClientError> {
        self.ws.send(Message::binary(data)).await?;
        Ok(())
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) -> Result<(), ClientError> {
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    /// The `starting` message, or [`ClientError::ClosedEarly`] with the close reason's
    /// message when kleened refused (invalid config, unknown exec instance, ...).
    pub async fn starting(&mut self) -> Result<WebSocketMessage, ClientError> {
        match self.next().await? {
            Frame::Text(text) => Ok(serde_json::from_str(&text)?),
            Frame::Binary(data) => Ok(serde_json::from_slice(&data)?),
            Frame::Closed { code, reason, raw } => Err(ClientError::ClosedEarly {
                code,
                reason: reason.map(|r| r.message).unwrap_or(raw),
            }),
        }
    }

    /// The next frame; after [`Frame::Closed`] every call returns it again (code 1006
    /// when the connection ended without a close frame).
    pub async fn next(&mut self) -> Result<Frame, ClientError> {
        loop {
            let message = match self.ws.next().await {
                Some(Ok(m)) => m,
                Some(Err(
                    tokio_tungstenite::tungstenite::Error::ConnectionClosed
                    | tokio_tungstenite::tungstenite::Error::AlreadyClosed,
                ))
                | None => {
                    return Ok(Frame::Closed {
                        code: 1006,
                        reason: None,
                        raw: String::new(),
                    })
                }
                Some(Err(tokio_tungstenite::tungstenite::Error::Protocol(
                    tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                ))) => {
                    // kleened dropped the connection without a close handshake.
                    return Ok(Frame::Closed {
                        code: 1006,
                        reason: None,
                        raw: String::new(),
                    });
                }
                Some(Err(e)) => return Err(e.into()),
            };
            match message {
                Message::Text(t) => return Ok(Frame::Text(t.to_string())),
                Message::Binary(b) => return Ok(Frame::Binary(b.to_vec())),
                Message::Close(frame) => {
                    let (code, raw) = match frame {
                        Some(f) => (u16::from(f.code), f.reason.to_string()),
                        None => (u16::from(CloseCode::Status), String::new()),
                    };
                    let reason = serde_json::from_str(&raw).ok();
                    // Answer the close; the stream ends after it.
                    let _ = self.ws.close(None).await;
                    return Ok(Frame::Closed { code, reason, raw });
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            }
        }
    }

    /// Closes this end.
    pub async fn close(&mut self) -> Result<(), ClientError> {
        match self.ws.close(None).await {
            Ok(())
            | Err(
                tokio_tungstenite::tungstenite::Error::ConnectionClosed
                | tokio_tungstenite::tungstenite::Error::AlreadyClosed,
            ) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn pem_error(path: &Path, e: impl fmt::Display) -> ClientError {
    ClientError::Pem {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// rustls on ring, with klee's TLS options.
fn tls_config(opts: &TlsOptions) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if opts.verify || opts.ca.is_some() {
        let mut roots = rustls::RootCertStore::empty();
        match &opts.ca {
            Some(ca) => {
                for cert in CertificateDer::pem_file_iter(ca).map_err(|e| pem_error(ca, e))? {
                    roots.add(cert.map_err(|e| pem_error(ca, e))?)?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    };
    let config = match (&opts.cert, &opts.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| pem_error(cert, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_error(cert, e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// Accepts any server certificate (klee without `--tlsverify`), still checking that the
/// server holds its key.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hosts_read_like_klees() {
        let unix = |p: &str, tls| Host {
            address: Address::Unix(p.into()),
            tls,
        };
        let tcp = |h: &str, port, tls| Host {
            address: Address::Tcp {
                host: h.into(),
                port,
            },
            tls,
        };
        assert_eq!(
            Host::parse(DEFAULT_HOST).unwrap(),
            unix("/var/run/kleened.sock", false)
        );
        assert_eq!(
            Host::parse("https:///s.sock").unwrap(),
            unix("/s.sock", true)
        );
        assert_eq!(
            Host::parse("/tmp/k.sock").unwrap(),
            unix("/tmp/k.sock", false)
        );
        assert_eq!(
            Host::parse("http://127.0.0.1:8085").unwrap(),
            tcp("127.0.0.1", 8085, false)
        );
        assert_eq!(
            Host::parse("https://kleene.example/").unwrap(),
            tcp("kleene.example", 443, true)
        );
        assert_eq!(
            Host::parse("http://[::1]:8085").unwrap(),
            tcp("::1", 8085, false)
        );
        assert_eq!(Host::parse("http://[::1]").unwrap(), tcp("::1", 80, false));
        for bad in [
            "",
            "kleened.sock",
            "unix:///x",
            "http://",
            "http://h:port",
            "http://h:1/x",
            "http:///x?y=1",
            "http://h#x",
            "http://[::1",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Host::parse("http://[::1]:8085").unwrap().to_string(),
            "http://[::1]:8085"
        );
        assert_eq!(
            Host::parse("http:///a.sock").unwrap().to_string(),
            "http:///a.sock"
        );
    }

    #[test]
    fn a_cert_needs_its_key() {
        let opts = TlsOptions {
            cert: Some("/c.pem".into()),
            ..TlsOptions::default()
        };
        assert!(matches!(
            Client::new("https://h:1", &opts),
            Err(ClientError::KeyMissing)
        ));
        assert!(Client::new("https://h:1", &TlsOptions::default()).is_ok());
        assert!(Client::new(
            "https://h:1",
            &TlsOptions {
                verify: true,
                ..TlsOptions::default()
            }
        )
        .is_ok());
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode("abc-1.2_~"), "abc-1.2_~");
        assert_eq!(encode("a b/c:d"), "a%20b%2Fc%3Ad");
    }
}
