//! The REST API over the Unix socket, with raw HTTP: status codes, error shapes,
//! malformed requests, and the JSON shapes of kleened's OpenAPI file.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use kleene_core::{Attach, CreateContainer};
use serde_json::Value;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn message(v: &Value) -> &str {
    v.as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get("message"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("not an ErrorResponse: {v}"))
}

#[test]
fn errors_unsupported_routes_and_malformed_requests() {
    let Some(d) = common::daemon("errors") else {
        return;
    };
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    // Unknown objects: 404 with {"message": ...}.
    for (method, path) in [
        ("GET", "/images/nope/inspect"),
        ("DELETE", "/images/nope"),
        ("POST", "/images/nope/tag?nametag=x:y"),
        ("GET", "/containers/nope/inspect"),
        ("DELETE", "/containers/nope"),
        ("POST", "/containers/nope/stop"),
        ("GET", "/volumes/nope/inspect"),
        ("DELETE", "/volumes/nope"),
    ] {
        let (status, v) = d.json(method, path, None);
        assert_eq!(status, 404, "{method} {path}: {v}");
        assert!(message(&v).contains("nope"), "{method} {path}: {v}");
    }
    let (status, v) = d.json("POST", "/containers/nope/update", Some(r#"{"name":"x"}"#));
    assert_eq!(status, 404, "{v}");
    message(&v);

    // The WebSocket endpoints asked without an upgrade: a 4xx with a message.
    for path in ["/exec/start", "/images/build", "/images/create"] {
        let (status, v) = d.json("GET", path, None);
        assert!((400..500).contains(&status), "GET {path}: {status} {v}");
        assert!(message(&v).contains("websocket"), "GET {path}: {v}");
    }

    // What kleened has no route for: its router's `match _`, 404 "not found" (never a
    // 500).
    for (method, path) in [
        ("GET", "/nothing/here"),
        ("POST", "/images/list"),
        ("GET", "/containers/abc"),
        ("PUT", "/volumes/create"),
    ] {
        let (status, body) = d.http(method, path, None);
        assert_eq!(
            (status, body.as_str()),
            (404, "not found"),
            "{method} {path}"
        );
    }

    // Malformed bodies: 400 (not JSON), 422 (JSON of the wrong shape), 415 (no JSON
    // content type), each with {"message": ...}.
    let (status, v) = d.json("POST", "/volumes/create", Some("{\"name\": "));
    assert_eq!(status, 400, "{v}");
    assert!(message(&v).starts_with("invalid request body"), "{v}");
    let (status, v) = d.json("POST", "/volumes/create", Some(r#"{"name": 5}"#));
    assert_eq!(status, 422, "{v}");
    message(&v);
    let (status, v) = d.json("POST", "/volumes/create", Some(r#"{}"#));
    assert_eq!(status, 422, "{v}");
    assert!(message(&v).contains("name"), "{v}");
    let (status, v) = d.json(
        "POST",
        "/containers/create",
        Some(r#"{"image":"x","network_driver":"warp"}"#),
    );
    assert_eq!(status, 422, "{v}");
    message(&v);
    let (status, text) = d.http_with(
        "POST",
        "/volumes/create",
        Some(r#"{"name":"a"}"#),
        Some("text/plain"),
    );
    assert_eq!(status, 415, "{text}");
    message(&serde_json::from_str(&text).unwrap());
    let (status, v) = d.json("POST", "/images/prune?all=maybe", None);
    assert_eq!(status, 422, "{v}");
    message(&v);
    let (status, v) = d.json("POST", "/images/nope/tag", None);
    assert_eq!(status, 422, "{v}");
    message(&v);
    let (status, v) = d.json(
        "POST",
        "/containers/create",
        Some(r#"{"image":"nope","name":"c"}"#),
    );
    assert_eq!(status, 404, "{v}");
    assert!(message(&v).contains("no such image"), "{v}");

    // Volumes.
    let (status, v) = d.json("POST", "/volumes/create", Some(r#"{"name":"vol1"}"#));
    assert_eq!(
        (status, v.clone()),
        (201, serde_json::json!({"id": "vol1"}))
    );
    let (status, v) = d.json("POST", "/volumes/create", Some(r#"{"name":"vol1"}"#));
    assert_eq!(
        (status, v),
        (201, serde_json::json!({"id": "vol1"})),
        "existing volume"
    );
    let (status, v) = d.json("POST", "/volumes/create", Some(r#"{"name":"../bad"}"#));
    assert_eq!(status, 500, "{v}");
    assert!(message(&v).contains("invalid volume name"), "{v}");
    let (status, v) = d.json("GET", "/volumes/list", None);
    assert_eq!(status, 200);
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 1);
    let keys: Vec<&str> = list[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["created", "dataset", "mountpoint", "name"]);
    assert!(list[0]["created"].as_str().unwrap().ends_with(".000000Z"));
    let (status, v) = d.json("GET", "/volumes/vol1/inspect", None);
    assert_eq!(status, 200);
    assert_eq!(v["mountpoints"], serde_json::json!([]));
    assert_eq!(v["volume"]["name"], "vol1");
    assert_eq!(v["volume"]["dataset"], format!("{}/volumes/vol1", d.root));
    let (status, v) = d.json("DELETE", "/volumes/vol1", None);
    assert_eq!((status, v), (200, serde_json::json!({"id": "vol1"})));
    d.json("POST", "/volumes/create", Some(r#"{"name":"vol2"}"#));
    let (status, v) = d.json("POST", "/volumes/prune", None);
    assert_eq!((status, v), (200, serde_json::json!(["vol2"])));
    let (status, v) = d.json("POST", "/volumes/prune", None);
    assert_eq!((status, v), (200, serde_json::json!([])));
}

#[test]
fn images_and_containers() {
    let Some(d) = common::daemon("objects") else {
        return;
    };
    let rt = runtime();
    let engine = rt.block_on(d.engine());
    let image = rt.block_on(d.busybox_image(&engine, "busybox:1"));
    let iid = image.id.to_string();

    // Images: list, inspect by name, id and prefix, tag.
    let (status, v) = d.json("GET", "/images/list", None);
    assert_eq!(status, 200);
    assert_eq!(v.as_array().unwrap().len(), 1);
    let keys: Vec<&str> = v[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "cmd",
            "created",
            "dataset",
            "env",
            "id",
            "instructions",
            "name",
            "tag",
            "user"
        ]
    );
    assert_eq!(v[0]["user"], "root");
    for reference in ["busybox:1", iid.as_str(), &iid[..5]] {
        let (status, v) = d.json("GET", &format!("/images/{reference}/inspect"), None);
        assert_eq!(status, 200, "{reference}: {v}");
        assert_eq!(v["id"], iid.as_str());
        assert_eq!(
            (v["name"].as_str(), v["tag"].as_str()),
            (Some("busybox"), Some("1"))
        );
    }
    let (status, v) = d.json("POST", "/images/busybox:1/tag?nametag=bb", None);
    assert_eq!((status, v), (200, serde_json::json!({"id": iid})));
    let (status, v) = d.json("GET", "/images/bb:latest/inspect", None);
    assert_eq!(status, 200, "{v}");

    // Containers: create (201), list, inspect, update, rename.
    let body = r#"{"name":"c1","image":"bb","cmd":["/bin/sleep","600"],"env":["A=1"],
        "user":"","mounts":[{"type":"volume","source":"data","destination":"/data","read_only":false}],
        "jail_param":[],"persist":false,"restart_policy":"no","network_driver":"host","public_ports":[]}"#;
    let (status, v) = d.json("POST", "/containers/create", Some(body));
    assert_eq!(status, 201, "{v}");
    let cid = v["id"].as_str().unwrap().to_string();
    assert_eq!(cid.len(), 12);
    let (status, v) = d.json("POST", "/containers/create", Some(body));
    assert_eq!(status, 404, "a taken name: {v}");
    message(&v);
    let (status, v) = d.json("GET", "/containers/list", None);
    assert_eq!(
        (status, v),
        (200, serde_json::json!([])),
        "only running ones by default"
    );
    let (status, v) = d.json("GET", "/containers/list?all=true", None);
    assert_eq!(status, 200);
    let c = &v[0];
    let mut keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "cmd",
            "created",
            "dataset",
            "env",
            "id",
            "image_id",
            "image_name",
            "image_tag",
            "jail_param",
            "jid",
            "name",
            "network_driver",
            "persist",
            "public_ports",
            "restart_policy",
            "running",
            "user"
        ]
    );
    assert_eq!(c["image_name"], "bb");
    assert_eq!(c["image_tag"], "latest");
    assert_eq!(c["jid"], Value::Null);
    assert_eq!(c["running"], false);
    assert_eq!(c["cmd"], serde_json::json!(["/bin/sleep", "600"]));
    let (status, v) = d.json("GET", &format!("/containers/{}/inspect", &cid[..6]), None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["container"]["id"], cid.as_str());
    assert_eq!(v["container"]["network_driver"], "host");
    assert_eq!(v["container_endpoints"], serde_json::json!([]));
    assert_eq!(
        v["container_mountpoints"],
        serde_json::json!([{"container_id": cid, "destination": "/data", "read_only": false,
                            "source": "data", "type": "volume"}])
    );
    let (status, v) = d.json("GET", "/volumes/data/inspect", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["mountpoints"][0]["container_id"], cid.as_str());
    let (status, v) = d.json(
        "POST",
        "/containers/c1/update",
        Some(r#"{"name":"c2","user":null,"env":["B=2"],"persist":true,"restart_policy":"on-startup","jail_param":["exec.stop=\"/bin/true\""]}"#),
    );
    assert_eq!((status, v), (201, serde_json::json!({"id": cid})));
    let (_, v) = d.json("GET", "/containers/c2/inspect", None);
    assert_eq!(v["container"]["name"], "c2");
    assert_eq!(v["container"]["persist"], true);
    assert_eq!(v["container"]["restart_policy"], "on-startup");
    assert_eq!(v["container"]["env"], serde_json::json!(["B=2"]));
    let (status, v) = d.json(
        "POST",
        "/containers/c2/update",
        Some(r#"{"name":"bad name!"}"#),
    );
    assert_eq!(status, 409, "{v}");
    message(&v);

    // A persistent container survives prune; stop on a stopped one is 404.
    let (status, v) = d.json("POST", "/containers/prune", None);
    assert_eq!((status, v), (200, serde_json::json!([])));
    let (status, v) = d.json("POST", "/containers/c2/stop", None);
    assert_eq!(status, 404, "{v}");
    assert!(message(&v).contains("not running"), "{v}");

    // Running: listed by default, 409 on remove, stopped by the API.
    rt.block_on(engine.start_container(&cid, Attach::Detached))
        .unwrap();
    let (_, v) = d.json("GET", "/containers/list", None);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["running"], true);
    assert!(v[0]["jid"].is_i64(), "{v}");
    let (status, v) = d.json("DELETE", "/containers/c2", None);
    assert_eq!(status, 409, "{v}");
    assert!(message(&v).contains("running"), "{v}");
    let (status, v) = d.json("POST", "/containers/c2/stop", None);
    assert_eq!((status, v), (200, serde_json::json!({"id": cid})));
    let (_, v) = d.json("GET", "/containers/list", None);
    assert_eq!(v, serde_json::json!([]));

    // An image in use is refused (404 with the reason, as kleened answers a remove).
    let (status, v) = d.json("DELETE", "/images/bb", None);
    assert_eq!(status, 404, "{v}");
    assert!(message(&v).contains("in use"), "{v}");
    let (status, v) = d.json("DELETE", "/containers/c2", None);
    assert_eq!((status, v), (200, serde_json::json!({"id": cid})));

    // Prunes: an unpersisted container, untagged and then all images.
    let c3 = rt
        .block_on(engine.create_container(CreateContainer::new("bb").name("c3").cmd(["/bin/true"])))
        .unwrap();
    let (status, v) = d.json("POST", "/containers/prune", None);
    assert_eq!((status, v), (200, serde_json::json!([c3.id.to_string()])));
    let (status, v) = d.json("POST", "/images/prune?all=false", None);
    assert_eq!((status, v), (200, serde_json::json!([])));
    let (status, v) = d.json("POST", "/images/prune?all=true", None);
    assert_eq!((status, v), (200, serde_json::json!([iid])));
    let (_, v) = d.json("GET", "/images/list", None);
    assert_eq!(v, serde_json::json!([]));
}
