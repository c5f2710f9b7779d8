//! The `/networks/*` endpoints over the Unix socket, with raw HTTP. kleened runs inside
//! a network namespace each test makes (`ip netns add`, entered with nsenter), so its
//! bridges and nftables tables are made there and nothing touches the real host's
//! interfaces or firewall; the namespace goes when the test ends. The busybox image is
//! made through kleene-core before any network exists (an engine opened outside the
//! namespace then has no firewall to load).

#![allow(clippy::unwrap_used)]

mod common;

use common::{Daemon, Netns};
use serde_json::{json, Value};

fn message(v: &Value) -> &str {
    v.as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get("message"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("not an ErrorResponse: {v}"))
}

/// kleened in a namespace of its own, and the `bb` image when `image`.
fn setup(tag: &str, image: bool) -> Option<(Netns, Daemon)> {
    common::pool()?;
    let ns = Netns::new(tag)?;
    let d = common::daemon_in_netns(tag, &ns)?;
    if image {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let engine = d.engine().await;
            d.busybox_image(&engine, "bb").await;
        });
    }
    Some((ns, d))
}

/// The host's own interfaces named kleene*: the tests must add none.
fn host_kleene_links() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with("kleene"))
        .collect()
}

fn create(d: &Daemon, body: Value) -> (u16, Value) {
    d.json("POST", "/networks/create", Some(&body.to_string()))
}

#[test]
fn create_list_inspect_remove_and_prune() {
    let host_before = host_kleene_links();
    let Some((ns, d)) = setup("lifecycle", false) else {
        return;
    };
    let (status, v) = d.json("GET", "/networks/list", None);
    assert_eq!((status, v), (200, json!([])));

    // What `klee network create --type bridge --subnet 10.20.0.0/24 net1` sends.
    let (status, v) = create(
        &d,
        json!({"name": "net1", "type": "bridge", "interface": "", "subnet": "10.20.0.0/24",
               "subnet6": "", "gateway": "<auto>", "gateway6": "<auto>",
               "nat": "<host-gateway>", "icc": true, "internal": false}),
    );
    assert_eq!(status, 201, "{v}");
    let id1 = v["id"].as_str().unwrap().to_string();
    assert_eq!(id1.len(), 12, "{v}");
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    // The schema's defaults for the rest.
    let (status, v) = create(
        &d,
        json!({"name": "net2", "type": "loopback", "subnet": "10.21.0.0/24"}),
    );
    assert_eq!(status, 201, "{v}");
    let id2 = v["id"].as_str().unwrap().to_string();

    // The bridges are in the test's namespace, not on the host.
    let links = ns.ip(&["-o", "link", "show"]).unwrap();
    assert!(
        links.contains("kleene0") && links.contains("kleene1"),
        "{links}"
    );
    assert_eq!(host_kleene_links(), host_before);

    let (status, v) = d.json("GET", "/networks/list", None);
    assert_eq!(status, 200);
    assert_eq!(
        v[0],
        json!({"id": id1, "name": "net1", "type": "bridge", "interface": "kleene0",
               "subnet": "10.20.0.0/24", "subnet6": "", "gateway": "<auto>",
               "gateway6": "<auto>", "nat": "<host-gateway>", "icc": true,
               "internal": false}),
        "{v}"
    );
    assert_eq!(v[1]["name"], "net2");
    assert_eq!(v[1]["type"], "loopback");
    assert_eq!(v[1]["gateway"], "");
    assert_eq!(v.as_array().unwrap().len(), 2);

    // Inspect by name, id and id prefix.
    for r in ["net1", id1.as_str(), &id1[..5]] {
        let (status, v) = d.json("GET", &format!("/networks/{r}/inspect"), None);
        assert_eq!(status, 200, "{r}: {v}");
        assert_eq!(v["network"]["id"], id1.as_str());
        assert_eq!(v["network_endpoints"], json!([]));
    }

    // Refusals: 409 for create (as kleened), 404 for unknown networks, 422/400 for
    // bodies kleened's schema validation refuses.
    let (status, v) = create(
        &d,
        json!({"name": "net1", "type": "loopback", "subnet": "10.22.0.0/24"}),
    );
    assert_eq!(status, 409, "{v}");
    assert!(message(&v).contains("net1"), "{v}");
    for bad in ["10.23.0.0/33", "10.23.0", "fd00::/64", "banana"] {
        let (status, v) = create(&d, json!({"name": "net3", "type": "bridge", "subnet": bad}));
        assert_eq!(status, 409, "{bad}: {v}");
        assert!(message(&v).contains("subnet"), "{bad}: {v}");
    }
    let (status, v) = create(
        &d,
        json!({"name": "net3", "type": "bridge", "subnet": "10.20.0.128/25"}),
    );
    assert_eq!(status, 409, "an overlapping subnet: {v}");
    message(&v);
    let (status, v) = create(
        &d,
        json!({"name": "bad name!", "type": "bridge", "subnet": "10.24.0.0/24"}),
    );
    assert_eq!(status, 409, "{v}");
    message(&v);
    let (status, v) = create(
        &d,
        json!({"name": "net3", "type": "bridge", "subnet": "10.24.0.0/24", "gateway": "nope"}),
    );
    assert_eq!(status, 409, "{v}");
    assert!(message(&v).contains("gateway"), "{v}");
    for body in [
        json!({"type": "bridge"}),
        json!({"name": "net3"}),
        json!({"name": "net3", "type": "vlan"}),
    ] {
        let (status, v) = create(&d, body.clone());
        assert_eq!(status, 422, "{body}: {v}");
        message(&v);
    }
    let (status, v) = d.json("POST", "/networks/create", Some("{\"name\":"));
    assert_eq!(status, 400, "{v}");
    message(&v);
    for (method, path) in [
        ("GET", "/networks/nope/inspect"),
        ("DELETE", "/networks/nope"),
    ] {
        let (status, v) = d.json(method, path, None);
        assert_eq!(status, 404, "{method} {path}: {v}");
        assert!(message(&v).contains("nope"), "{v}");
    }
    // Nothing half-made by the refusals.
    let (_, v) = d.json("GET", "/networks/list", None);
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");

    // Remove by id prefix; prune takes the rest (no containers).
    let (status, v) = d.json("DELETE", &format!("/networks/{}", &id1[..6]), None);
    assert_eq!((status, v), (200, json!({"id": id1})));
    let (status, v) = d.json("DELETE", "/networks/net1", None);
    assert_eq!(status, 404, "{v}");
    let (status, v) = d.json("POST", "/networks/prune", None);
    assert_eq!((status, v), (200, json!([id2])));
    let (status, v) = d.json("GET", "/networks/list", None);
    assert_eq!((status, v), (200, json!([])));
    let links = ns.ip(&["-o", "link", "show"]).unwrap();
    assert!(!links.contains("kleene"), "bridges left: {links}");
    assert_eq!(host_kleene_links(), host_before);
}

#[test]
fn connect_and_disconnect_containers() {
    let host_before = host_kleene_links();
    let Some((_ns, d)) = setup("connect", true) else {
        return;
    };
    let container = |name: &str, extra: Value| {
        let mut body =
            json!({"name": name, "image": "bb", "cmd": ["/bin/sh"], "network_driver": "ipnet"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, v) = d.json("POST", "/containers/create", Some(&body.to_string()));
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    };
    let c1 = container("c1", json!({}));
    let c2 = container("c2", json!({}));
    container("hosted", json!({"network_driver": "host"}));
    let (status, v) = create(
        &d,
        json!({"name": "net", "type": "loopback", "subnet": "10.30.0.0/24"}),
    );
    assert_eq!(status, 201, "{v}");
    let (status, v) = create(
        &d,
        json!({"name": "other", "type": "loopback", "subnet": "10.31.0.0/24"}),
    );
    assert_eq!(status, 201, "{v}");
    let other = v["id"].as_str().unwrap().to_string();

    let connect = |body: Value| d.http("POST", "/networks/connect", Some(&body.to_string()));
    // What klee sends: <auto> addresses; and an address asked for.
    let (status, body) = connect(json!({"container": "c1", "network": "net",
                                        "ip_address": "<auto>", "ip_address6": "<auto>"}));
    assert_eq!((status, body.as_str()), (204, ""));
    let (status, body) = connect(json!({"container": &c2[..6], "network": "net",
                                        "ip_address": "10.30.0.50"}));
    assert_eq!((status, body.as_str()), (204, ""));

    let (status, v) = d.json("GET", "/networks/net/inspect", None);
    assert_eq!(status, 200, "{v}");
    let eps = v["network_endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 2, "{v}");
    let ep1 = eps
        .iter()
        .find(|e| e["container_id"] == c1.as_str())
        .unwrap();
    let ep2 = eps
        .iter()
        .find(|e| e["container_id"] == c2.as_str())
        .unwrap();
    assert_eq!(ep1["network_id"], "net");
    let ip1 = ep1["ip_address"].as_str().unwrap();
    assert!(ip1.starts_with("10.30.0.") && ip1 != "10.30.0.50", "{v}");
    assert_eq!(ep2["ip_address"], "10.30.0.50");
    let (_, v) = d.json("GET", "/containers/c1/inspect", None);
    assert_eq!(v["container_endpoints"][0]["network_id"], "net", "{v}");

    // Refusals: unknown container or network 404, the rest 409 (as kleened).
    let (status, v) = d.json(
        "POST",
        "/networks/connect",
        Some(&json!({"container": "nope", "network": "net"}).to_string()),
    );
    assert_eq!(status, 404, "{v}");
    assert!(message(&v).contains("nope"), "{v}");
    let (status, v) = d.json(
        "POST",
        "/networks/connect",
        Some(&json!({"container": "c1", "network": "nope"}).to_string()),
    );
    assert_eq!(status, 404, "{v}");
    let (status, v) = d.json(
        "POST",
        "/networks/connect",
        Some(&json!({"container": "c1", "network": "net"}).to_string()),
    );
    assert_eq!(status, 409, "connected twice: {v}");
    message(&v);
    let (status, v) = d.json(
        "POST",
        "/networks/connect",
        Some(&json!({"container": "hosted", "network": "net"}).to_string()),
    );
    assert_eq!(status, 409, "a host-network container: {v}");
    assert!(message(&v).contains("host"), "{v}");
    let (status, v) = d.json(
        "POST",
        "/networks/connect",
        Some(
            &json!({"container": "c1", "network": "other", "ip_address": "10.30.0.7"}).to_string(),
        ),
    );
    assert_eq!(status, 409, "an address outside the subnet: {v}");
    let (status, v) = d.json(
        "POST",
        "/networks/connect",
        Some(&json!({"container": "c1", "network": "other", "ip_address": "ten"}).to_string()),
    );
    assert_eq!(status, 409, "{v}");
    assert!(message(&v).contains("ip_address"), "{v}");
    let (status, v) = d.json(
        "POST",
        "/networks/connect",
        Some(&json!({"network": "net"}).to_string()),
    );
    assert_eq!(status, 422, "{v}");

    // Disconnect: 204; not connected, unknown network or container 404.
    let (status, body) = d.http("POST", "/networks/net/disconnect/c1", None);
    assert_eq!((status, body.as_str()), (204, ""));
    for path in [
        "/networks/net/disconnect/c1",
        "/networks/nope/disconnect/c2",
        "/networks/net/disconnect/nope",
    ] {
        let (status, v) = d.json("POST", path, None);
        assert_eq!(status, 404, "{path}: {v}");
        message(&v);
    }
    let (_, v) = d.json("GET", "/networks/net/inspect", None);
    assert_eq!(v["network_endpoints"].as_array().unwrap().len(), 1, "{v}");

    // Prune leaves a network with a container; remove disconnects it.
    let (status, v) = d.json("POST", "/networks/prune", None);
    assert_eq!((status, v), (200, json!([other])));
    let (status, v) = d.json("DELETE", "/networks/net", None);
    assert_eq!(status, 200, "{v}");
    let (_, v) = d.json("GET", "/containers/c2/inspect", None);
    assert_eq!(v["container_endpoints"], json!([]), "{v}");
    let (status, v) = d.json("GET", "/networks/list", None);
    assert_eq!((status, v), (200, json!([])));
    assert_eq!(host_kleene_links(), host_before);
}
