//! kleened's start: configuration errors and sockets it cannot serve yet. No pool needed.

#![allow(clippy::unwrap_used)]

use std::process::Command;

const KLEENED: &str = env!("CARGO_BIN_EXE_kleened");

fn start_with(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(KLEENED)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_key_is_named() {
    let (code, err) =
        start_with("kleene_root: zroot/kleene\nlisten_on: x\nenable_logging: false\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown field `listen_on`"), "{err}");
}

#[test]
fn tcp_and_tls_sockets_are_not_supported_yet() {
    let (code, err) = start_with(
        "api_listening_sockets:\n  - address: \"http://127.0.0.1:8085\"\nenable_logging: false\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("TCP sockets are not supported yet"), "{err}");
    let (code, err) = start_with(
        "api_listening_sockets:\n  - address: \"https:///tmp/x.sock\"\n    tlscert: /c.pem\n    tlskey: /k.pem\nenable_logging: false\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("TLS) sockets are not supported yet"), "{err}");
}

#[test]
fn a_missing_config_file_is_an_error() {
    let out = Command::new(KLEENED)
        .args(["--config", "/nonexistent/kleened.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reading /nonexistent/kleened.yaml"), "{err}");
}
