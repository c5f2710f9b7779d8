//! The resource-limit extensions of this kleened over the Unix socket: `limits` in the
//! create and update bodies (bad ones are 400), `limits` in inspections, and
//! `GET /containers/{id}/stats` (404 unknown, 409 not running, the figures of a running
//! container with its limits).

#![allow(clippy::unwrap_used)]

mod common;

use kleene_core::Attach;
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
fn limits_on_create_update_inspect_and_stats() {
    let Some(d) = common::daemon("limits") else {
        return;
    };
    let rt = runtime();
    let engine = rt.block_on(d.engine());
    rt.block_on(d.busybox_image(&engine, "bb"));

    // Bad limits: 400 naming the limit, before the image is looked up.
    for (body, what) in [
        (
            r#"{"image":"nope","limits":{"memory":1024}}"#,
            "memory limit",
        ),
        (r#"{"image":"bb","limits":{"nano_cpus":0}}"#, "cpus"),
        (r#"{"image":"bb","limits":{"pids":-5}}"#, "pids limit"),
    ] {
        let (status, v) = d.json("POST", "/containers/create", Some(body));
        assert_eq!(status, 400, "{body}: {v}");
        assert!(message(&v).contains(what), "{body}: {v}");
    }
    // The wrong shape is 422, as for every body.
    let (status, v) = d.json(
        "POST",
        "/containers/create",
        Some(r#"{"image":"bb","limits":{"memory":"64m"}}"#),
    );
    assert_eq!(status, 422, "{v}");

    // A container with limits shows them; one without has no `limits`.
    let (status, v) = d.json(
        "POST",
        "/containers/create",
        Some(
            r#"{"name":"lim","image":"bb","cmd":["/bin/sleep","60"],
                "limits":{"memory":67108864,"pids":10}}"#,
        ),
    );
    assert_eq!(status, 201, "{v}");
    let cid = v["id"].as_str().unwrap().to_string();
    let (_, v) = d.json("GET", "/containers/lim/inspect", None);
    assert_eq!(
        v["container"]["limits"],
        serde_json::json!({"memory": 67108864, "pids": 10}),
        "{v}"
    );
    let (status, v) = d.json(
        "POST",
        "/containers/create",
        Some(r#"{"name":"plain","image":"bb","cmd":["/bin/true"]}"#),
    );
    assert_eq!(status, 201, "{v}");
    let (_, v) = d.json("GET", "/containers/plain/inspect", None);
    assert!(v["container"].get("limits").is_none(), "{v}");

    // Stats: 404 unknown, 409 not running.
    let (status, v) = d.json("GET", "/containers/nope/stats", None);
    assert_eq!(status, 404, "{v}");
    assert!(message(&v).contains("nope"), "{v}");
    let (status, v) = d.json("GET", "/containers/lim/stats", None);
    assert_eq!(status, 409, "{v}");
    assert!(message(&v).contains("not running"), "{v}");

    // Update: bad limits are 400 (alone, or with those the container keeps), and an
    // unknown container is 404 as ever; good ones replace those named.
    let (status, v) = d.json(
        "POST",
        "/containers/lim/update",
        Some(r#"{"limits":{"memory":1024}}"#),
    );
    assert_eq!(status, 400, "{v}");
    assert!(message(&v).contains("memory limit"), "{v}");
    let (status, v) = d.json(
        "POST",
        "/containers/lim/update",
        Some(r#"{"limits":{"memory_swap":33554432}}"#),
    );
    assert_eq!(status, 400, "swap below the memory kept: {v}");
    message(&v);
    let (status, v) = d.json(
        "POST",
        "/containers/nope/update",
        Some(r#"{"limits":{"pids":20}}"#),
    );
    assert_eq!(status, 404, "{v}");
    let (status, v) = d.json(
        "POST",
        "/containers/lim/update",
        Some(r#"{"limits":{"pids":20}}"#),
    );
    assert_eq!((status, &v), (201, &serde_json::json!({"id": cid})));
    let (_, v) = d.json("GET", "/containers/lim/inspect", None);
    assert_eq!(
        v["container"]["limits"],
        serde_json::json!({"memory": 67108864, "pids": 20}),
        "{v}"
    );

    // Running: the figures, with its limits; an update reaches its group at once.
    rt.block_on(engine.start_container(&cid, Attach::Detached))
        .unwrap();
    let (status, v) = d.json("GET", "/containers/lim/stats", None);
    assert_eq!(status, 200, "{v}");
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "cpu_ns",
            "cpu_throttled_periods",
            "id",
            "memory_bytes",
            "memory_limit",
            "name",
            "oom_kills",
            "pids",
            "pids_limit",
            "pids_limit_hits",
            "read_ms"
        ]
    );
    assert_eq!(v["id"], cid.as_str());
    assert_eq!(v["name"], "lim");
    assert_eq!(v["pids_limit"], 20, "{v}");
    assert_eq!(v["memory_limit"], 64 << 20, "{v}");
    assert!(v["pids"].as_u64().unwrap() >= 1, "{v}");
    let (status, v) = d.json(
        "POST",
        "/containers/lim/update",
        Some(r#"{"limits":{"pids":30}}"#),
    );
    assert_eq!(status, 201, "{v}");
    let (_, v) = d.json("GET", &format!("/containers/{}/stats", &cid[..6]), None);
    assert_eq!(v["pids_limit"], 30, "{v}");

    let (status, v) = d.json("POST", "/containers/lim/stop", None);
    assert_eq!(status, 200, "{v}");
    let (status, v) = d.json("GET", "/containers/lim/stats", None);
    assert_eq!(status, 409, "{v}");
}
