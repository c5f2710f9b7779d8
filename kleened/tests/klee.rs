//! The unmodified PyPI klee client (kleene-cli 0.1.0rc4) against kleened, over the Unix
//! socket: the commands of this slice, as a Kleene user types them.

#![allow(clippy::unwrap_used)]

mod common;

use common::texts;

#[test]
fn klee_from_pypi_drives_kleened() {
    let Some(d) = common::daemon("klee") else {
        return;
    };
    let Some(klee) = common::klee_program() else {
        return;
    };
    let run = |args: &[&str]| {
        let out = common::klee(&klee, &d, args);
        let (o, e) = texts(&out);
        assert!(!e.contains("Traceback"), "klee {args:?} crashed: {e}");
        (out.status.code(), o, e)
    };
    let ok = |args: &[&str]| {
        let (code, o, e) = run(args);
        assert_eq!(code, Some(0), "klee {args:?}: {o}{e}");
        o
    };

    // Empty lists.
    let o = ok(&["lsi"]);
    assert!(
        o.contains("ID") && o.contains("NAME") && o.contains("TAG"),
        "{o}"
    );
    let o = ok(&["lsv"]);
    assert!(o.contains("VOLUME NAME"), "{o}");
    let o = ok(&["lsc", "-a"]);
    assert!(o.contains("CONTAINER ID"), "{o}");

    // Volumes.
    assert_eq!(ok(&["volume", "create", "vol1"]).trim(), "vol1");
    assert!(ok(&["lsv"]).contains("vol1"));
    let o = ok(&["isv", "vol1"]);
    let v: serde_json::Value = serde_json::from_str(&o).unwrap();
    assert_eq!(v["volume"]["name"], "vol1");
    assert_eq!(ok(&["rmv", "vol1"]).trim(), "vol1");
    // klee's rmv prints the message and exits 0 (klee's own behaviour).
    let (_, o, _) = run(&["rmv", "vol1"]);
    assert!(o.contains("no such volume"), "{o}");
    ok(&["volume", "create", "vol2"]);
    assert_eq!(ok(&["volume", "prune", "-f"]).trim(), "vol2");

    // Images, made through kleene-core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = rt.block_on(d.engine());
    let image = rt.block_on(d.busybox_image(&engine, "busybox"));
    let iid = image.id.to_string();
    let o = ok(&["lsi"]);
    assert!(
        o.contains(&iid) && o.contains("busybox") && o.contains("latest"),
        "{o}"
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&["isi", "busybox"])).unwrap();
    assert_eq!(v["id"], iid.as_str());
    let (_, o, _) = run(&["isi", "nope"]);
    assert!(o.contains("no such image: nope"), "{o}");
    // A tag renames the image, as in Kleene.
    assert_eq!(ok(&["image", "tag", &iid[..6], "bb:2"]).trim(), iid);
    let o = ok(&["lsi"]);
    assert!(
        o.contains("bb") && o.contains('2') && !o.contains("busybox"),
        "{o}"
    );

    // Containers: create, list, inspect, rename, update, remove.
    let cid = ok(&[
        "container",
        "create",
        "--name",
        "web",
        "-m",
        "data:/data",
        "bb:2",
        "/bin/sleep",
        "60",
    ])
    .trim()
    .to_string();
    assert_eq!(cid.len(), 12, "{cid}");
    let o = ok(&["lsc", "-a"]);
    assert!(
        o.contains(&cid) && o.contains("web") && o.contains("/bin/sleep 60"),
        "{o}"
    );
    assert!(o.contains("stopped"), "{o}");
    assert!(!ok(&["lsc"]).contains(&cid));
    let v: serde_json::Value = serde_json::from_str(&ok(&["isc", "web"])).unwrap();
    assert_eq!(v["container"]["id"], cid.as_str());
    assert_eq!(v["container_mountpoints"][0]["source"], "data");
    let v: serde_json::Value = serde_json::from_str(&ok(&["isv", "data"])).unwrap();
    assert_eq!(v["mountpoints"][0]["container_id"], cid.as_str());
    assert_eq!(ok(&["container", "rename", "web", "web2"]).trim(), cid);
    assert_eq!(
        ok(&["container", "update", "-e", "X=1", "web2"]).trim(),
        cid
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&["isc", &cid[..4]])).unwrap();
    assert_eq!(v["container"]["name"], "web2");
    assert_eq!(v["container"]["env"], serde_json::json!(["X=1"]));
    let (code, o, _) = run(&["create", "nope"]);
    assert_eq!(code, Some(1));
    assert!(o.contains("no such image"), "{o}");

    // In use: the image cannot go.
    let (code, o, _) = run(&["rmi", "bb:2"]);
    assert_eq!(code, Some(1));
    assert!(o.contains("in use"), "{o}");
    assert_eq!(ok(&["rmc", "web2"]).trim(), cid);
    let (code, o, _) = run(&["rmc", "web2"]);
    assert_eq!(code, Some(1));
    assert!(o.contains("no such container"), "{o}");

    // Prunes.
    let c2 = ok(&["create", "bb:2", "/bin/true"]).trim().to_string();
    assert_eq!(ok(&["container", "prune", "-f"]).trim(), c2);
    assert_eq!(ok(&["volume", "prune", "-f"]).trim(), "data");
    assert_eq!(ok(&["image", "prune", "-f"]).trim(), "");
    assert_eq!(ok(&["image", "prune", "-a", "-f"]).trim(), iid);
    assert!(!ok(&["lsi"]).contains(&iid));
    let (code, o, _) = run(&["create", "--name", "gone", "bb:2", "true"]);
    assert_eq!(code, Some(1));
    assert!(o.contains("no such image"), "{o}");
}
