//! TCP and TLS sockets: a CA, a server and client certificates made at test time with
//! the `openssl` tool; the library's TLS listener (HTTPS, WebSockets over TLS, failed
//! handshakes, client certificates) with no engine; startup errors of the binary; and
//! the kleened binary on a pool over plain TCP and https, driven by a rustls client,
//! curl and the PyPI klee.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::routing::get;
use axum::Router;
use kleened::config::TlsConfig;
use kleened::server::{serve_router, tls_server_config, Socket};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

// ---- certificates ----

/// A CA, a server certificate for 127.0.0.1 and localhost, a client certificate signed
/// by the CA, and a client certificate signed by another CA; made with openssl as
/// Kleene's "Protect the Kleened socket" page makes them (EC keys, for speed).
struct Pki {
    dir: tempfile::TempDir,
}

fn has_openssl() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            !common::required(),
            "KLEENE_REQUIRE_ZFS=1 but the openssl tool is not installed (apt-get install openssl)"
        );
        eprintln!("skipped: the openssl tool is not installed");
    }
    found
}

impl Pki {
    fn new() -> Option<Pki> {
        if !has_openssl() {
            return None;
        }
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        for ca in ["ca", "rogue-ca"] {
            pki.openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{ca}-key.pem"),
                "-out",
                &format!("{ca}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN=kleened test {ca}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
        }
        std::fs::write(
            pki.path("server.cnf"),
            "subjectAltName = DNS:localhost,IP:127.0.0.1\nextendedKeyUsage = serverAuth\nbasicConstraints = CA:FALSE\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
        )
        .unwrap();
        std::fs::write(
            pki.path("client.cnf"),
            "extendedKeyUsage = clientAuth\nbasicConstraints = CA:FALSE\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
        )
        .unwrap();
        for (name, ca, ext) in [
            ("server", "ca", "server.cnf"),
            ("client", "ca", "client.cnf"),
            ("rogue", "rogue-ca", "client.cnf"),
        ] {
            pki.openssl(&[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}-key.pem"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ]);
            pki.openssl(&[
                "x509",
                "-req",
                "-days",
                "2",
                "-sha256",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}-key.pem"),
                "-CAcreateserial",
                "-out",
                &format!("{name}-cert.pem"),
                "-extfile",
                ext,
            ]);
        }
        // A certificate file that holds the key as well (tlscert without tlskey).
        let mut both = std::fs::read(pki.path("server-cert.pem")).unwrap();
        both.extend(std::fs::read(pki.path("server-key.pem")).unwrap());
        std::fs::write(pki.path("server-both.pem"), both).unwrap();
        Some(pki)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server(&self, verify: bool) -> TlsConfig {
        TlsConfig {
            cert: self.path("server-cert.pem"),
            key: Some(self.path("server-key.pem")),
            verify,
            ca: Some(self.path("ca.pem")),
            dh: None,
        }
    }

    /// A client trusting the CA, with the client certificate `cert` (`client` or
    /// `rogue`) or none.
    fn client(&self, cert: Option<&str>) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(self.path("ca.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match cert {
            None => builder.with_no_client_auth(),
            Some(name) => {
                let certs = CertificateDer::pem_file_iter(self.path(&format!("{name}-cert.pem")))
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key =
                    PrivateKeyDer::from_pem_file(self.path(&format!("{name}-key.pem"))).unwrap();
                builder.with_client_auth_cert(certs, key).unwrap()
            }
        };
        Arc::new(config)
    }
}

// ---- clients ----

/// One HTTP/1.1 request with `Connection: close` on `stream`: the status and body, or
/// what went wrong (a refused handshake shows here).
fn exchange(
    mut stream: impl Read + Write,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream
        .write_all(req.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(|e| format!("writing: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A peer that closes without close_notify, after a whole response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(format!("reading: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP response: {text:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, rest.to_string()))
}

fn tcp(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

fn tls(
    port: u16,
    config: Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from("127.0.0.1").unwrap()).unwrap();
    rustls::StreamOwned::new(conn, tcp(port))
}

fn https(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    exchange(tls(port, config), method, path, body)
}

/// Bytes that are no TLS ClientHello; the server must drop the connection and live on.
fn bad_handshake(port: u16) {
    let mut s = tcp(port);
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
}

// ---- the library's TLS listener, no engine ----

struct Server {
    rt: tokio::runtime::Runtime,
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<Result<(), kleened::ServeError>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            self.rt.block_on(done).unwrap().unwrap();
        }
    }
}

/// `GET /ping` answers `pong`; `/ws` echoes WebSocket messages.
fn test_router() -> Router {
    Router::new()
        .route("/ping", get(|| async { "pong" }))
        .route(
            "/ws",
            get(|ws: WebSocketUpgrade| async {
                ws.on_upgrade(|mut socket| async move {
                    while let Some(Ok(msg)) = socket.recv().await {
                        if socket.send(msg).await.is_err() {
                            break;
                        }
                    }
                })
            }),
        )
}

fn tls_server(config: &TlsConfig) -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server_config = tls_server_config(config).unwrap();
    let socket = rt.block_on(async {
        Socket::bind_tcp("127.0.0.1:0".parse().unwrap())
            .unwrap()
            .with_tls(server_config)
    });
    let port = socket.local_addr().unwrap().port();
    assert_eq!(socket.address(), format!("https://127.0.0.1:{port}"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = rt.spawn(serve_router(test_router(), vec![socket], async move {
        let _ = stopped.await;
    }));
    Server {
        rt,
        port,
        stop: Some(stop),
        done: Some(done),
    }
}

#[test]
fn the_tls_listener_serves_https_and_websockets_and_outlives_bad_clients() {
    let Some(pki) = Pki::new() else {
        return;
    };
    let server = tls_server(&pki.server(false));
    let client = pki.client(None);
    assert_eq!(
        https(server.port, client.clone(), "GET", "/ping", None).unwrap(),
        (200, "pong".into())
    );

    // A client that connects and says nothing holds up no one; nor do clients that speak
    // plain HTTP to the TLS port, or a client that does not trust the server.
    let silent = tcp(server.port);
    for _ in 0..3 {
        bad_handshake(server.port);
    }
    let stranger = {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(pki.path("rogue-ca.pem")).unwrap())
            .unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    };
    let e = https(server.port, stranger, "GET", "/ping", None).unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    assert_eq!(
        https(server.port, client.clone(), "GET", "/ping", None).unwrap(),
        (200, "pong".into())
    );
    drop(silent);

    // A WebSocket over TLS: the upgrade, then a masked text frame echoed back.
    let mut ws = tls(server.port, client);
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        ws.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let payload = b"hello over tls";
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    ws.write_all(&frame).unwrap();
    let mut echo = [0u8; 2];
    ws.read_exact(&mut echo).unwrap();
    assert_eq!(echo, [0x81, payload.len() as u8]);
    let mut text = vec![0u8; payload.len()];
    ws.read_exact(&mut text).unwrap();
    assert_eq!(text, payload);
}

#[test]
fn tlsverify_serves_only_clients_with_a_certificate_of_the_ca() {
    let Some(pki) = Pki::new() else {
        return;
    };
    let server = tls_server(&pki.server(true));
    let e = https(server.port, pki.client(None), "GET", "/ping", None).unwrap_err();
    assert!(e.contains("CertificateRequired"), "{e}");
    let e = https(server.port, pki.client(Some("rogue")), "GET", "/ping", None).unwrap_err();
    assert!(e.contains("UnknownCA"), "{e}");
    assert_eq!(
        https(
            server.port,
            pki.client(Some("client")),
            "GET",
            "/ping",
            None
        )
        .unwrap(),
        (200, "pong".into())
    );
}

#[test]
fn the_key_may_be_in_the_certificate_file() {
    let Some(pki) = Pki::new() else {
        return;
    };
    let mut config = pki.server(false);
    config.cert = pki.path("server-both.pem");
    config.key = None;
    let server = tls_server(&config);
    assert_eq!(
        https(server.port, pki.client(None), "GET", "/ping", None).unwrap(),
        (200, "pong".into())
    );
}

/// `https:///path`: TLS on a Unix socket, as the configuration page's second example.
#[test]
fn https_on_a_unix_socket() {
    let Some(pki) = Pki::new() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kleened.tlssock");
    let socket = rt.block_on(async {
        Socket::bind(&path)
            .unwrap()
            .with_tls(tls_server_config(&pki.server(false)).unwrap())
    });
    assert_eq!(socket.address(), format!("https://{}", path.display()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        rt.block_on(serve_router(test_router(), vec![socket], async move {
            let _ = stopped.await;
        }))
    });
    let unix = std::os::unix::net::UnixStream::connect(&path).unwrap();
    unix.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let conn =
        rustls::ClientConnection::new(pki.client(None), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let got = exchange(rustls::StreamOwned::new(conn, unix), "GET", "/ping", None);
    assert_eq!(got.unwrap(), (200, "pong".into()));
    stop.send(()).unwrap();
    server.join().unwrap().unwrap();
    assert!(!path.exists(), "the socket file is removed on shutdown");
}

#[test]
fn unusable_tls_files_are_named() {
    let Some(pki) = Pki::new() else {
        return;
    };
    let err = |config: TlsConfig| tls_server_config(&config).unwrap_err().to_string();
    let missing = pki.path("nope.pem");
    let mut c = pki.server(false);
    c.cert = missing.clone();
    let e = err(c);
    assert!(
        e.contains(&format!("reading tlscert {}", missing.display())),
        "{e}"
    );
    let mut c = pki.server(false);
    c.key = Some(missing.clone());
    let e = err(c);
    assert!(
        e.contains(&format!("reading tlskey {}", missing.display())),
        "{e}"
    );
    let mut c = pki.server(true);
    c.ca = Some(missing.clone());
    let e = err(c);
    assert!(
        e.contains(&format!("reading tlscacert {}", missing.display())),
        "{e}"
    );
    let mut c = pki.server(false);
    c.dh = Some(missing.clone());
    let e = err(c);
    assert!(
        e.contains(&format!("reading tlsdh {}", missing.display())),
        "{e}"
    );
    // A key where the certificate belongs, and no key where the key belongs.
    let mut c = pki.server(false);
    c.cert = pki.path("server-key.pem");
    let e = err(c);
    assert!(
        e.contains("tlscert") && e.contains("no PEM certificate"),
        "{e}"
    );
    let mut c = pki.server(false);
    c.key = Some(pki.path("server-cert.pem"));
    let e = err(c);
    assert!(
        e.contains("tlskey") && e.contains("no PEM private key"),
        "{e}"
    );
    let mut c = pki.server(false);
    c.key = None;
    let e = err(c);
    assert!(e.contains("no tlskey is given"), "{e}");
    // The key of another certificate.
    let mut c = pki.server(false);
    c.key = Some(pki.path("client-key.pem"));
    let e = err(c);
    assert!(e.contains("tlscert and tlskey"), "{e}");
}

// ---- the kleened binary ----

fn run_kleened(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(common::KLEENED)
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Bad TLS settings stop kleened before it opens its engine (no pool needed): each
/// error names the key and the file.
#[test]
fn bad_tls_settings_are_startup_errors_naming_the_file() {
    let Some(pki) = Pki::new() else {
        return;
    };
    let base = "kleene_root: \"nopool/kleene\"\nenable_logging: false\napi_listening_sockets:\n";
    let missing = pki.path("missing-cert.pem");
    let (code, e) = run_kleened(&format!(
        "{base}  - address: \"https://127.0.0.1:0\"\n    tlscert: \"{}\"\n    tlskey: \"{}\"\n",
        missing.display(),
        pki.path("server-key.pem").display()
    ));
    assert_eq!(code, Some(1), "{e}");
    assert!(
        e.contains("https://127.0.0.1:0")
            && e.contains(&format!("reading tlscert {}", missing.display())),
        "{e}"
    );
    let cert = pki.path("server-cert.pem");
    let (code, e) = run_kleened(&format!(
        "{base}  - address: \"https://127.0.0.1:0\"\n    tlscert: \"{}\"\n",
        cert.display()
    ));
    assert_eq!(code, Some(1), "{e}");
    assert!(
        e.contains(&format!("tlscert {}", cert.display())) && e.contains("no tlskey"),
        "{e}"
    );
    let (code, e) = run_kleened(&format!("{base}  - address: \"https://127.0.0.1:0\"\n"));
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("no tlscert"), "{e}");
    let (code, e) = run_kleened(&format!(
        "{base}  - address: \"https://127.0.0.1:0\"\n    tlscert: \"{}\"\n    tlskey: \"{}\"\n    tlsverify: true\n",
        cert.display(),
        pki.path("server-key.pem").display()
    ));
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("no tlscacert"), "{e}");
    let unreadable = pki.dir.path().to_path_buf();
    let (code, e) = run_kleened(&format!(
        "{base}  - address: \"https:///tmp/x.sock\"\n    tlscert: \"{}\"\n    tlskey: \"{}\"\n    tlsverify: true\n    tlscacert: \"{}\"\n",
        cert.display(),
        pki.path("server-key.pem").display(),
        unreadable.display()
    ));
    assert_eq!(code, Some(1), "{e}");
    assert!(
        e.contains(&format!("reading tlscacert {}", unreadable.display())),
        "{e}"
    );
}

/// The port of the `index`th "listening on" address, which must have `scheme`.
fn port_of(listening: &[String], index: usize, scheme: &str) -> u16 {
    let a = &listening[index];
    let rest = a
        .strip_prefix(&format!("{scheme}://127.0.0.1:"))
        .unwrap_or_else(|| panic!("{a} is not {scheme}://127.0.0.1:PORT ({listening:?})"));
    rest.parse().unwrap()
}

#[test]
fn kleened_serves_tcp_and_https_sockets() {
    let Some(pki) = Pki::new() else {
        return;
    };
    let sockets = format!(
        "  - address: \"http://127.0.0.1:0\"\n\
         \x20 - address: \"https://127.0.0.1:0\"\n    tlscert: \"{cert}\"\n    tlskey: \"{key}\"\n\
         \x20 - address: \"https://127.0.0.1:0/\"\n    tlscert: \"{cert}\"\n    tlskey: \"{key}\"\n    tlsverify: true\n    tlscacert: \"{ca}\"\n",
        cert = pki.path("server-cert.pem").display(),
        key = pki.path("server-key.pem").display(),
        ca = pki.path("ca.pem").display(),
    );
    let Some(mut d) = common::daemon_with_sockets("tls", &sockets) else {
        return;
    };
    let listening = d.listening();
    assert_eq!(listening.len(), 4, "{}", d.log());
    let plain = port_of(&listening, 0, "http");
    let secure = port_of(&listening, 1, "https");
    let verified = port_of(&listening, 2, "https");
    assert_eq!(listening[3], format!("http://{}", d.socket.display()));

    // Plain HTTP on TCP.
    assert_eq!(
        exchange(tcp(plain), "GET", "/volumes/list", None).unwrap(),
        (200, "[]".into())
    );
    let (status, body) = exchange(
        tcp(plain),
        "POST",
        "/volumes/create",
        Some(r#"{"name":"v1"}"#),
    )
    .unwrap();
    assert_eq!((status, body.as_str()), (201, r#"{"id":"v1"}"#));

    // HTTPS, and the same engine behind it.
    let (status, body) = https(secure, pki.client(None), "GET", "/volumes/list", None).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"v1\""), "{body}");
    // Plain HTTP to the https port is a failed handshake: logged, and the daemon goes on.
    bad_handshake(secure);
    bad_handshake(verified);
    assert!(d.alive());
    assert_eq!(
        https(secure, pki.client(None), "GET", "/volumes/v1/inspect", None)
            .unwrap()
            .0,
        200
    );
    assert!(d.log().contains("TLS handshake with"), "{}", d.log());

    // tlsverify: no client certificate, or one of another CA, is refused.
    let e = https(verified, pki.client(None), "GET", "/volumes/list", None).unwrap_err();
    assert!(e.contains("CertificateRequired"), "{e}");
    let e = https(
        verified,
        pki.client(Some("rogue")),
        "GET",
        "/volumes/list",
        None,
    )
    .unwrap_err();
    assert!(e.contains("UnknownCA"), "{e}");
    let (status, body) = https(
        verified,
        pki.client(Some("client")),
        "GET",
        "/volumes/list",
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"v1\""), "{body}");
    assert!(d.alive());

    // curl, as the "Protect the Kleened socket" page uses it.
    if Command::new("curl").arg("--version").output().is_ok() {
        let curl = |port: u16, with_cert: bool| {
            let mut cmd = Command::new("curl");
            cmd.args(["-sS", "--max-time", "30", "--cacert"])
                .arg(pki.path("ca.pem"));
            if with_cert {
                cmd.arg("--cert")
                    .arg(pki.path("client-cert.pem"))
                    .arg("--key")
                    .arg(pki.path("client-key.pem"));
            }
            cmd.arg(format!("https://127.0.0.1:{port}/volumes/list"))
                .output()
                .unwrap()
        };
        let out = curl(secure, false);
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"v1\""));
        let out = curl(verified, true);
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"v1\""));
        let out = curl(verified, false);
        assert!(!out.status.success(), "{out:?}");
    } else {
        eprintln!("curl is not installed: its part is skipped");
    }

    // The PyPI klee, with its TLS options.
    let Some(klee) = common::klee_program() else {
        return;
    };
    let home = d.dir.path().to_path_buf();
    let klee_run = |port: u16, tls_args: &[&Path], args: &[&str]| {
        let mut cmd = Command::new(&klee);
        cmd.arg("--host").arg(format!("https://127.0.0.1:{port}"));
        for (flag, path) in ["--tlscacert", "--tlscert", "--tlskey"]
            .iter()
            .zip(tls_args)
        {
            cmd.arg(format!("{flag}={}", path.display()));
        }
        cmd.arg("--tlsverify")
            .arg("--theme")
            .arg("simple")
            .args(args)
            .env("COLUMNS", "200")
            .env("HOME", &home)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let ca = pki.path("ca.pem");
    let (cert, key) = (pki.path("client-cert.pem"), pki.path("client-key.pem"));
    let out = klee_run(secure, &[&ca], &["lsv"]);
    let (o, e) = common::texts(&out);
    assert!(out.status.success() && o.contains("v1"), "{o}{e}");
    let out = klee_run(verified, &[&ca, &cert, &key], &["volume", "create", "v2"]);
    let (o, e) = common::texts(&out);
    assert!(out.status.success() && o.trim() == "v2", "{o}{e}");
    let out = klee_run(verified, &[&ca, &cert, &key], &["lsv"]);
    let (o, e) = common::texts(&out);
    assert!(out.status.success() && o.contains("v2"), "{o}{e}");
    // Without its certificate, klee cannot get in.
    let out = klee_run(verified, &[&ca], &["lsv"]);
    let (o, e) = common::texts(&out);
    assert!(!o.contains("v2"), "{o}{e}");
    assert!(d.alive());

    // `klee run` attaches to /exec/start, a WebSocket: wss with a client certificate.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let engine = d.engine().await;
        d.busybox_image(&engine, "bb").await;
    });
    let out = klee_run(
        verified,
        &[&ca, &cert, &key],
        &["run", "bb", "/bin/echo", "hello", "over", "wss"],
    );
    let (o, e) = common::texts(&out);
    assert!(
        out.status.success() && o.contains("hello over wss") && o.contains("exit-code 0"),
        "{o}{e}"
    );
}
