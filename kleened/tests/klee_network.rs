//! The unmodified PyPI klee client (kleene-cli 0.1.0rc4) and the `/networks/*`
//! endpoints: `klee network create/ls/inspect/connect/disconnect/rm/prune` and
//! `klee container create --network`, as a Kleene user types them. kleened runs inside a
//! network namespace of the test's own (see tests/networks.rs); klee talks to it over the
//! Unix socket.

#![allow(clippy::unwrap_used)]

mod common;

use common::texts;
use serde_json::Value;

#[test]
fn klee_from_pypi_manages_networks() {
    if common::pool().is_none() {
        return;
    }
    let Some(ns) = common::Netns::new("klee") else {
        return;
    };
    let Some(d) = common::daemon_in_netns("kleenet", &ns) else {
        return;
    };
    let Some(klee) = common::klee_program() else {
        return;
    };
    // The image, through kleene-core, before any network exists.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let engine = d.engine().await;
        d.busybox_image(&engine, "bb").await;
    });

    let run = |args: &[&str]| {
        let out = common::klee(&klee, &d, args);
        let (o, e) = texts(&out);
        assert!(!e.contains("Traceback"), "klee {args:?} crashed: {e}");
        assert!(
            !o.contains("Unexpected response") && !e.contains("Unexpected response"),
            "klee {args:?}: {o}{e}"
        );
        (out.status.code(), o, e)
    };
    let ok = |args: &[&str]| {
        let (code, o, e) = run(args);
        assert_eq!(code, Some(0), "klee {args:?}: {o}{e}");
        o
    };

    let o = ok(&["network", "ls"]);
    assert!(o.contains("NAME") && o.contains("SUBNET"), "{o}");

    // create, ls, inspect.
    let id = ok(&["network", "create", "--subnet", "10.40.0.0/24", "net"])
        .trim()
        .to_string();
    assert_eq!(id.len(), 12, "{id}");
    let bridge = ok(&[
        "network",
        "create",
        "--type",
        "bridge",
        "--subnet",
        "10.41.0.0/24",
        "--nat",
        "false",
        "brnet",
    ])
    .trim()
    .to_string();
    let o = ok(&["network", "ls"]);
    assert!(
        o.contains(&id)
            && o.contains("net")
            && o.contains("loopback")
            && o.contains("10.40.0.0/24"),
        "{o}"
    );
    assert!(o.contains(&bridge) && o.contains("bridge"), "{o}");
    let v: Value = serde_json::from_str(&ok(&["network", "inspect", "net"])).unwrap();
    assert_eq!(v["network"]["id"], id.as_str());
    assert_eq!(v["network"]["subnet"], "10.40.0.0/24");
    assert_eq!(v["network_endpoints"], serde_json::json!([]));
    let v: Value = serde_json::from_str(&ok(&["network", "inspect", "brnet"])).unwrap();
    assert_eq!(v["network"]["nat"], "");
    assert_eq!(v["network"]["gateway"], "<auto>");

    // Refusals, as klee prints kleened's messages.
    let (_, o, _) = run(&["network", "create", "--subnet", "10.42.0.0/24", "net"]);
    assert!(o.contains("network net already exists"), "{o}");
    let (_, o, _) = run(&["network", "create", "--subnet", "10.42.0.0/40", "net2"]);
    assert!(o.contains("subnet"), "{o}");
    let (_, o, _) = run(&["network", "inspect", "nope"]);
    assert!(o.contains("no such network: nope"), "{o}");
    let (_, o, _) = run(&["network", "rm", "nope"]);
    assert!(o.contains("no such network: nope"), "{o}");

    // Containers: created on a network, connected, disconnected.
    let c1 = ok(&[
        "container",
        "create",
        "--name",
        "c1",
        "--network",
        "net",
        "bb",
        "/bin/true",
    ])
    .trim()
    .to_string();
    assert_eq!(c1.len(), 12, "{c1}");
    let c2 = ok(&[
        "container",
        "create",
        "--name",
        "c2",
        "--driver",
        "ipnet",
        "bb",
        "/bin/true",
    ])
    .trim()
    .to_string();
    ok(&["network", "connect", "--ip", "10.40.0.77", "net", "c2"]);
    let v: Value = serde_json::from_str(&ok(&["network", "inspect", "net"])).unwrap();
    let eps = v["network_endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 2, "{v}");
    assert!(eps.iter().any(|e| e["container_id"] == c1.as_str()), "{v}");
    assert!(
        eps.iter()
            .any(|e| e["container_id"] == c2.as_str() && e["ip_address"] == "10.40.0.77"),
        "{v}"
    );
    let v: Value = serde_json::from_str(&ok(&["container", "inspect", "c1"])).unwrap();
    assert_eq!(v["container_endpoints"][0]["network_id"], "net", "{v}");
    // A container on the host's network cannot connect; klee prints why.
    ok(&["container", "create", "--name", "hosted", "bb", "/bin/true"]);
    let (_, o, _) = run(&["network", "connect", "net", "hosted"]);
    assert!(o.contains("host"), "{o}");

    ok(&["network", "disconnect", "net", "c1"]);
    let (_, o, _) = run(&["network", "disconnect", "net", "c1"]);
    assert!(o.contains("not connected"), "{o}");
    let v: Value = serde_json::from_str(&ok(&["network", "inspect", "net"])).unwrap();
    assert_eq!(v["network_endpoints"].as_array().unwrap().len(), 1, "{v}");

    // prune leaves the network a container is on; rm disconnects it.
    let o = ok(&["network", "prune", "-f"]);
    assert!(o.contains(&bridge) && !o.contains(&id), "{o}");
    assert_eq!(ok(&["network", "rm", "net"]).trim(), id);
    let o = ok(&["network", "ls"]);
    assert!(!o.contains(&id) && !o.contains(&bridge), "{o}");
    let v: Value = serde_json::from_str(&ok(&["container", "inspect", "c2"])).unwrap();
    assert_eq!(v["container_endpoints"], serde_json::json!([]), "{v}");
}
