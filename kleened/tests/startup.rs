//! kleened's start: configuration errors and sockets it cannot serve yet (no pool needed),
//! and the containers it starts (`--restart on-startup`, on a pool).

#![allow(clippy::unwrap_used)]

mod common;

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
fn a_tls_socket_without_its_files_is_a_startup_error_naming_the_file() {
    let (code, err) = start_with(
        "api_listening_sockets:\n  - address: \"https:///tmp/x.sock\"\n    tlscert: /nonexistent/c.pem\n    tlskey: /nonexistent/k.pem\nenable_logging: false\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("reading tlscert /nonexistent/c.pem"), "{err}");
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

#[test]
fn containers_with_restart_on_startup_start_with_the_daemon() {
    let Some(mut d) = common::daemon("onstartup") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = rt.block_on(d.engine());
    let image = rt.block_on(d.busybox_image(&engine, "bb"));
    let create = |name: &str, policy: kleene_core::RestartPolicy| {
        rt.block_on(
            engine.create_container(
                kleene_core::CreateContainer::new(image.id.as_str())
                    .name(name)
                    .cmd(["/bin/sleep", "300"])
                    .restart(policy),
            ),
        )
        .unwrap()
    };
    create("auto", kleene_core::RestartPolicy::OnStartup);
    create("manual", kleene_core::RestartPolicy::No);
    d.restart();
    let state = |name: &str| rt.block_on(engine.container(name)).unwrap().runtime.state;
    assert_eq!(state("auto"), kleene_core::RunState::Running, "{}", d.log());
    assert_eq!(state("manual"), kleene_core::RunState::Created);
    // Already running: a second start of the daemon leaves it as it is.
    let pid = rt.block_on(engine.container("auto")).unwrap().runtime.pid;
    d.restart();
    assert_eq!(
        rt.block_on(engine.container("auto")).unwrap().runtime.pid,
        pid
    );
    rt.block_on(engine.remove_container("auto", true)).unwrap();
}
