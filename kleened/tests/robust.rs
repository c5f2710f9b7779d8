//! Robustness: malformed requests and frames, huge bodies, clients that go away in the
//! middle of a build or an exec, 50 concurrent requests — each answered with the right
//! status, nothing left behind, and the daemon serving on.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::UnixStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<UnixStream>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(d: &common::Daemon, path: &str) -> Ws {
    let stream = UnixStream::connect(&d.socket).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://localhost{path}"), stream)
        .await
        .unwrap();
    ws
}

/// What a WebSocket session brought: its text frames and its close code and reason.
#[derive(Debug)]
struct Session {
    texts: Vec<String>,
    code: Option<u16>,
    reason: Value,
}

/// Reads frames until the server closes (at most 120 s).
async fn until_closed(ws: &mut Ws) -> Session {
    let mut texts = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the server closes within 120 s");
        match frame {
            Some(Ok(Message::Text(t))) => texts.push(t.to_string()),
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = match frame {
                    Some(f) => (
                        Some(u16::from(f.code)),
                        serde_json::from_str(f.reason.as_str()).unwrap_or(Value::Null),
                    ),
                    None => (None, Value::Null),
                };
                return Session {
                    texts,
                    code,
                    reason,
                };
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("websocket error: {e}; frames so far: {texts:?}"),
            None => {
                return Session {
                    texts,
                    code: None,
                    reason: Value::Null,
                }
            }
        }
    }
}

/// Sends `config` as the first frame and reads the whole session.
async fn session(d: &common::Daemon, path: &str, config: &str) -> Session {
    let mut ws = connect(d, path).await;
    ws.send(Message::Text(config.into())).await.unwrap();
    until_closed(&mut ws).await
}

/// Reads text frames until one contains `needle` (at most 60 s).
async fn read_until(ws: &mut Ws, needle: &str) -> Vec<String> {
    let mut texts = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let found = t.contains(needle);
                texts.push(t.to_string());
                if found {
                    return texts;
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no frame with {needle:?}: {other:?} after {texts:?}"),
        }
    }
}

/// Processes whose argv is `<...>sleep SECONDS` (the test's markers).
fn sleepers(seconds: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if argv.len() >= 2 && argv[0].ends_with(b"sleep") && argv[1] == seconds.as_bytes() {
            found.push(pid);
        }
    }
    found
}

fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The datasets below `<root>/container`.
fn container_datasets(d: &common::Daemon) -> Vec<String> {
    let out = std::process::Command::new("zfs")
        .args(["list", "-H", "-o", "name", "-r"])
        .arg(format!("{}/container", d.root))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

fn message(v: &Value) -> &str {
    v.get("message")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("not an ErrorResponse: {v}"))
}

#[test]
fn bad_requests_bad_frames_and_huge_bodies_leave_the_daemon_serving() {
    let Some(d) = common::daemon("bad") else {
        return;
    };
    // A body over the limit: 413 with a message.
    // The server may answer before the body is all sent, and close: the rest of the
    // write fails, the answer is there to read.
    let huge = format!(r#"{{"image":"{}"}}"#, "x".repeat(3 * 1024 * 1024));
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /containers/create HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        huge.len()
    );
    let _ = s
        .write_all(head.as_bytes())
        .and_then(|()| s.write_all(huge.as_bytes()));
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    message(&serde_json::from_str(body).unwrap());
    // Wrong types and broken JSON.
    let (status, v) = d.json("POST", "/containers/create", Some(r#"{"image": 5}"#));
    assert_eq!(status, 422, "{v}");
    let (status, v) = d.json("POST", "/exec/create", Some(r#"{"container_id": ["x"]}"#));
    assert_eq!(status, 422, "{v}");
    let (status, v) = d.json("POST", "/exec/create", Some(r#"{"container_id": "nope"}"#));
    assert_eq!(status, 404, "{v}");
    assert!(message(&v).contains("nope"), "{v}");
    let (status, v) = d.json(
        "POST",
        "/exec/nope/stop?force_stop=false&stop_container=false",
        None,
    );
    assert_eq!(status, 404, "{v}");
    let (status, v) = d.json("POST", "/networks/create", Some("{\"name\":"));
    assert_eq!(status, 400, "{v}");

    // Garbage instead of HTTP, and a connection that says nothing.
    {
        let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"\x00\x01GARBAGE NOT HTTP\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 400"),
            "{text}"
        );
    }
    drop(std::os::unix::net::UnixStream::connect(&d.socket).unwrap());

    let rt = runtime();
    rt.block_on(async {
        // Frames that are not configurations: 1002 with an error message.
        for (path, config) in [
            ("/exec/start", "not json"),
            (
                "/exec/start",
                r#"{"exec_id": 5, "attach": true, "start_container": true}"#,
            ),
            (
                "/exec/start",
                r#"{"exec_id": "x", "attach": "perhaps", "start_container": true}"#,
            ),
            ("/images/build", r#"{"context": "/tmp"}"#),
            (
                "/images/build",
                r#"{"context": "relative", "container_config": {}}"#,
            ),
            ("/images/create", r#"{"method": "scp"}"#),
            (
                "/images/create",
                r#"{"method": "zfs-clone", "zfs_dataset": "no such/../x"}"#,
            ),
        ] {
            let s = session(&d, path, config).await;
            assert_eq!(s.code, Some(1002), "{path} {config}: {s:?}");
            assert_eq!(s.reason["msg_type"], "error", "{path} {config}: {s:?}");
        }
        // An unknown exec instance: kleened's error text, then 1011.
        let s = session(
            &d,
            "/exec/start",
            r#"{"exec_id": "abcdef", "attach": true, "start_container": true}"#,
        )
        .await;
        assert_eq!(s.code, Some(1011), "{s:?}");
        assert!(
            s.texts
                .iter()
                .any(|t| t.contains("could not find execution instance")),
            "{s:?}"
        );
        // A client that upgrades and goes away without a word.
        drop(connect(&d, "/images/build").await);
        // A failed base image: its reason, then 1011.
        let s = session(
            &d,
            "/images/create",
            r#"{"method": "fetch", "url": "file:///nonexistent.tar"}"#,
        )
        .await;
        assert_eq!(s.code, Some(1011), "{s:?}");
        assert_eq!(s.reason["msg_type"], "error", "{s:?}");
    });

    let (status, v) = d.json("GET", "/containers/list?all=true", None);
    assert_eq!((status, v), (200, json!([])));
    let (status, v) = d.json("GET", "/images/list", None);
    assert_eq!((status, v), (200, json!([])));
}

#[test]
fn fifty_concurrent_requests_are_each_answered() {
    let Some(d) = common::daemon("fifty") else {
        return;
    };
    let rt = runtime();
    let engine = rt.block_on(d.engine());
    rt.block_on(d.busybox_image(&engine, "bb"));
    drop(engine);
    let answers: Vec<(usize, u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let d = &d;
                s.spawn(move || {
                    let (status, v) = match i % 5 {
                        0 | 1 => d.json(
                            "POST",
                            "/containers/create",
                            Some(&format!(
                                r#"{{"name":"c{i}","image":"bb","cmd":["/bin/true"]}}"#
                            )),
                        ),
                        2 => d.json(
                            "POST",
                            "/volumes/create",
                            Some(&format!(r#"{{"name":"v{i}"}}"#)),
                        ),
                        3 => d.json("GET", "/containers/list?all=true", None),
                        _ => d.json("GET", "/images/nope/inspect", None),
                    };
                    (i, status, v)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ids = std::collections::HashSet::new();
    for (i, status, v) in &answers {
        match i % 5 {
            0 | 1 => {
                assert_eq!(*status, 201, "create c{i}: {v}");
                assert!(ids.insert(v["id"].as_str().unwrap().to_string()));
            }
            2 => assert_eq!(*status, 201, "volume v{i}: {v}"),
            3 => assert_eq!(*status, 200, "list: {v}"),
            _ => assert_eq!(*status, 404, "inspect: {v}"),
        }
    }
    let (_, v) = d.json("GET", "/containers/list?all=true", None);
    assert_eq!(v.as_array().unwrap().len(), 20, "{v}");
    let (_, v) = d.json("GET", "/volumes/list", None);
    assert_eq!(v.as_array().unwrap().len(), 10, "{v}");
    assert_eq!(container_datasets(&d).len(), 20);
    let (status, v) = d.json("POST", "/containers/prune", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 20, "{v}");
    assert!(container_datasets(&d).is_empty());
}

#[test]
fn clients_that_go_away_mid_build_or_mid_exec_leave_nothing_behind() {
    let Some(d) = common::daemon("gone") else {
        return;
    };
    let rt = runtime();
    let engine = rt.block_on(d.engine());
    rt.block_on(d.busybox_image(&engine, "bb"));
    drop(engine);

    // A build whose client disconnects in its RUN step: the step is killed, the build
    // kept as slow:failed (as on Ctrl-C), no build container or process remains.
    let ctx = d.dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb\nRUN echo started && sleep 31\n",
    )
    .unwrap();
    rt.block_on(async {
        let mut ws = connect(&d, "/images/build").await;
        let config = json!({
            "context": ctx, "dockerfile": "Dockerfile", "tag": "slow:1", "quiet": "false",
            "cleanup": false, "buildargs": {}, "container_config": {"network_driver": "host"},
            "networks": []
        });
        ws.send(Message::Text(config.to_string().into()))
            .await
            .unwrap();
        let texts = read_until(&mut ws, "started").await;
        assert!(texts[0].contains("\"msg_type\":\"starting\""), "{texts:?}");
        drop(ws);
    });
    wait_for("the build step is killed", 30, || sleepers("31").is_empty());
    wait_for("the build is kept as slow:failed", 30, || {
        let (_, v) = d.json("GET", "/images/list", None);
        v.as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "slow" && i["tag"] == "failed")
    });
    assert!(
        container_datasets(&d).is_empty(),
        "{:?}",
        container_datasets(&d)
    );

    // A container started detached through an exec instance.
    let (status, v) = d.json(
        "POST",
        "/containers/create",
        Some(r#"{"name":"box","image":"bb","cmd":["/bin/sleep","33"]}"#),
    );
    assert_eq!(status, 201, "{v}");
    let cid = v["id"].as_str().unwrap().to_string();
    let exec = |cmd: Value| {
        let (status, v) = d.json(
            "POST",
            "/exec/create",
            Some(
                &json!({"container_id": "box", "cmd": cmd, "env": [], "user": "", "tty": false})
                    .to_string(),
            ),
        );
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    };
    rt.block_on(async {
        let id = exec(json!([]));
        let s = session(
            &d,
            "/exec/start",
            &json!({"exec_id": id, "attach": false, "start_container": true}).to_string(),
        )
        .await;
        assert_eq!(s.code, Some(1001), "{s:?}");
        assert_eq!(s.reason["msg_type"], "closing");
        // Started once only.
        let s = session(
            &d,
            "/exec/start",
            &json!({"exec_id": id, "attach": false, "start_container": true}).to_string(),
        )
        .await;
        assert_eq!(s.code, Some(1011), "{s:?}");
    });
    wait_for("box runs", 30, || !sleepers("33").is_empty());

    rt.block_on(async {
        // An attached exec whose client goes away: its process is stopped.
        let id = exec(json!(["/bin/sh", "-c", "echo ready; exec sleep 32"]));
        let mut ws = connect(&d, "/exec/start").await;
        let config = json!({"exec_id": id, "attach": true, "start_container": false});
        ws.send(Message::Text(config.to_string().into()))
            .await
            .unwrap();
        read_until(&mut ws, "ready").await;
        // The shell has told; its exec of sleep follows.
        let deadline = Instant::now() + Duration::from_secs(10);
        while sleepers("32").is_empty() {
            assert!(Instant::now() < deadline, "sleep 32 never ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(ws);
    });
    wait_for("the abandoned exec's process ends", 30, || {
        sleepers("32").is_empty()
    });
    assert!(!sleepers("33").is_empty(), "the container runs on");

    rt.block_on(async {
        // An exec stopped through the API: SIGTERM, exit code 143, told on the socket.
        let id = exec(json!(["/bin/sleep", "34"]));
        let mut ws = connect(&d, "/exec/start").await;
        let config = json!({"exec_id": id, "attach": true, "start_container": false});
        ws.send(Message::Text(config.to_string().into()))
            .await
            .unwrap();
        let first = ws.next().await.unwrap().unwrap();
        assert!(first.to_text().unwrap().contains("starting"), "{first:?}");
        let (status, v) = d.json(
            "POST",
            &format!("/exec/{id}/stop?force_stop=false&stop_container=false"),
            None,
        );
        assert_eq!((status, v), (200, json!({"id": id})));
        let s = until_closed(&mut ws).await;
        assert_eq!(s.code, Some(u16::from(CloseCode::Normal)), "{s:?}");
        assert_eq!(
            s.reason["message"],
            format!("{id} has exited with exit-code 143"),
            "{s:?}"
        );
        // Gone once ended.
        let (status, _) = d.json(
            "POST",
            &format!("/exec/{id}/stop?force_stop=true&stop_container=false"),
            None,
        );
        assert_eq!(status, 404);

        // And the daemon still runs commands: output, then the exit code.
        let id = exec(json!(["/bin/sh", "-c", "echo out; echo err >&2; exit 5"]));
        let s = session(
            &d,
            "/exec/start",
            &json!({"exec_id": id, "attach": true, "start_container": false}).to_string(),
        )
        .await;
        assert_eq!(s.code, Some(1000), "{s:?}");
        let all = s.texts.concat();
        assert!(all.contains("out\n") && all.contains("err\n"), "{s:?}");
        assert_eq!(
            s.reason["message"],
            format!("{id} has exited with exit-code 5")
        );

        // stop_container: the whole container stops.
        let id = exec(json!(["/bin/sleep", "35"]));
        let mut ws = connect(&d, "/exec/start").await;
        let config = json!({"exec_id": id, "attach": true, "start_container": false});
        ws.send(Message::Text(config.to_string().into()))
            .await
            .unwrap();
        let _starting = ws.next().await.unwrap().unwrap();
        let (status, _) = d.json(
            "POST",
            &format!("/exec/{id}/stop?force_stop=true&stop_container=true"),
            None,
        );
        assert_eq!(status, 200);
        let s = until_closed(&mut ws).await;
        assert_eq!(s.code, Some(1000), "{s:?}");
    });
    wait_for("the container stops", 30, || {
        let (_, v) = d.json("GET", "/containers/box/inspect", None);
        v["container"]["running"] == false
    });
    assert!(sleepers("33").is_empty() && sleepers("35").is_empty());
    let (status, v) = d.json("DELETE", &format!("/containers/{cid}"), None);
    assert_eq!(status, 200, "{v}");
    assert!(container_datasets(&d).is_empty());
}

#[test]
fn interactive_exec_with_a_tty_and_with_stdin() {
    let Some(d) = common::daemon("tty") else {
        return;
    };
    let rt = runtime();
    let engine = rt.block_on(d.engine());
    rt.block_on(d.busybox_image(&engine, "bb"));
    drop(engine);
    let (status, v) = d.json(
        "POST",
        "/containers/create",
        Some(
            r#"{"name":"box","image":"bb","cmd":["/bin/sh","-c","read line; echo \"got $line\""]}"#,
        ),
    );
    assert_eq!(status, 201, "{v}");
    let exec = |cmd: Value, tty: bool| {
        let body =
            json!({"container_id": "box", "cmd": cmd, "env": ["X=1"], "user": "", "tty": tty});
        let (status, v) = d.json("POST", "/exec/create", Some(&body.to_string()));
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    };
    rt.block_on(async {
        // The container started attached: its command reads what the client sends.
        let id = exec(json!([]), false);
        let mut ws = connect(&d, "/exec/start").await;
        let config = json!({"exec_id": id, "attach": true, "start_container": true});
        ws.send(Message::Text(config.to_string().into()))
            .await
            .unwrap();
        let first = ws.next().await.unwrap().unwrap();
        assert!(first.to_text().unwrap().contains("starting"), "{first:?}");
        ws.send(Message::Binary(b"hello\n".to_vec().into()))
            .await
            .unwrap();
        let s = until_closed(&mut ws).await;
        assert!(s.texts.concat().contains("got hello"), "{s:?}");
        assert_eq!(
            s.reason["message"],
            format!("executable {id} and its container exited with exit-code 0")
        );
    });
    // Running on, for the execs.
    let update = r#"{"cmd":["/bin/sleep","36"]}"#;
    let (status, v) = d.json("POST", "/containers/box/update", Some(update));
    assert_eq!(status, 201, "{v}");
    rt.block_on(async {
        let id = exec(json!([]), false);
        let s = session(
            &d,
            "/exec/start",
            &json!({"exec_id": id, "attach": false, "start_container": true}).to_string(),
        )
        .await;
        assert_eq!(s.code, Some(1001), "{s:?}");

        // A shell on a terminal, typed into.
        let id = exec(json!(["/bin/sh"]), true);
        let mut ws = connect(&d, "/exec/start").await;
        let config = json!({"exec_id": id, "attach": true, "start_container": false});
        ws.send(Message::Text(config.to_string().into()))
            .await
            .unwrap();
        let first = ws.next().await.unwrap().unwrap();
        assert!(first.to_text().unwrap().contains("starting"), "{first:?}");
        for key in [
            "echo typed-$((1+X))",
            "\r",
            "[ -t 0 ] && echo on-a-tty\r",
            "exit 7\r",
        ] {
            ws.send(Message::Text(key.into())).await.unwrap();
        }
        let s = until_closed(&mut ws).await;
        let all = s.texts.concat();
        assert!(all.contains("typed-2"), "{s:?}");
        assert!(all.contains("on-a-tty"), "{s:?}");
        assert_eq!(
            s.reason["message"],
            format!("{id} has exited with exit-code 7")
        );
    });
    let (status, _) = d.json("POST", "/containers/box/stop", None);
    assert_eq!(status, 200);
    assert!(sleepers("36").is_empty());
}

#[test]
fn sigterm_ends_the_daemon_with_sessions_attached_and_leaves_containers_running() {
    let Some(mut d) = common::daemon("term") else {
        return;
    };
    let rt = runtime();
    let engine = rt.block_on(d.engine());
    rt.block_on(d.busybox_image(&engine, "bb"));
    drop(engine);
    let (status, v) = d.json(
        "POST",
        "/containers/create",
        Some(r#"{"name":"box","image":"bb","cmd":["/bin/sleep","38"]}"#),
    );
    assert_eq!(status, 201, "{v}");
    let exec = |cmd: Value| {
        let body = json!({"container_id": "box", "cmd": cmd, "env": [], "user": "", "tty": false});
        let (status, v) = d.json("POST", "/exec/create", Some(&body.to_string()));
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    };
    let start = |id: String, attach: bool| {
        json!({"exec_id": id, "attach": attach, "start_container": true}).to_string()
    };
    let mut attached = rt.block_on(async {
        let s = session(&d, "/exec/start", &start(exec(json!([])), false)).await;
        assert_eq!(s.code, Some(1001), "{s:?}");
        let mut ws = connect(&d, "/exec/start").await;
        let config = start(exec(json!(["/bin/sh", "-c", "echo ready; sleep 39"])), true);
        ws.send(Message::Text(config.into())).await.unwrap();
        read_until(&mut ws, "ready").await;
        ws
    });
    // And a build in its RUN step.
    let ctx = d.dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb\nRUN echo started && sleep 40\n",
    )
    .unwrap();
    let mut building = rt.block_on(async {
        let mut ws = connect(&d, "/images/build").await;
        let config = json!({"context": ctx, "tag": "slow:1", "cleanup": false,
                            "container_config": {}});
        ws.send(Message::Text(config.to_string().into()))
            .await
            .unwrap();
        read_until(&mut ws, "started").await;
        ws
    });
    // The daemon ends promptly although clients are attached; the container, which has
    // its own monitor, runs on; the build is stopped and kept as slow:failed.
    let begun = Instant::now();
    d.restart();
    assert!(
        begun.elapsed() < Duration::from_secs(30),
        "{:?}",
        begun.elapsed()
    );
    rt.block_on(async {
        let end = tokio::time::timeout(Duration::from_secs(10), until_closed(&mut attached))
            .await
            .expect("the attached session ends with the daemon");
        assert_eq!(end.code, Some(1001), "{end:?}");
        assert_eq!(end.reason["message"], "kleened is shutting down", "{end:?}");
    });
    rt.block_on(async {
        let end = tokio::time::timeout(Duration::from_secs(10), until_closed(&mut building))
            .await
            .expect("the build session ends with the daemon");
        assert_eq!(end.code, Some(1001), "{end:?}");
    });
    assert!(sleepers("40").is_empty());
    let (_, v) = d.json("GET", "/images/list", None);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "slow" && i["tag"] == "failed"),
        "{v}"
    );
    // The exec'd process was stopped with it.
    wait_for("the exec'd process ends", 15, || sleepers("39").is_empty());
    let (status, v) = d.json("GET", "/containers/box/inspect", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["container"]["running"], true, "{v}");
    let (status, v) = d.json("POST", "/containers/box/stop", None);
    assert_eq!(status, 200, "{v}");
    assert!(sleepers("38").is_empty() && sleepers("39").is_empty());
}
