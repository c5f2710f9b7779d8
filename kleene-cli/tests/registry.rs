//! klee and a registry (Debian's docker-registry on 127.0.0.1): a busybox image made by
//! umoci and put there by skopeo is pulled, run, and built on (`FROM registry/name`);
//! the built image is pushed and read back by skopeo; saved as an archive and loaded.
//! Skipped without a pool, umoci, skopeo or docker-registry, failing with
//! `KLEENE_REQUIRE_ZFS=1`.

#![allow(clippy::unwrap_used)]

mod common;

use kleene_oci::testing::{have_tool, have_umoci, skopeo, umoci, Registry};

#[test]
fn pull_run_build_push_and_save() {
    let Some(s) = common::scratch_for_containers() else {
        return;
    };
    if !have_umoci() || !have_tool("skopeo") {
        return;
    }
    let Some(reg) = Registry::start() else {
        return;
    };
    let d = s.dir.path();
    umoci(d, &["init", "--layout", "img"]);
    umoci(d, &["new", "--image", "img:bb"]);
    umoci(d, &["unpack", "--rootless", "--image", "img:bb", "bundle"]);
    let rootfs = d.join("bundle/rootfs");
    tar::Archive::new(std::fs::File::open(s.busybox_rootfs()).unwrap())
        .unpack(&rootfs)
        .unwrap();
    umoci(
        d,
        &["repack", "--refresh-bundle", "--image", "img:bb", "bundle"],
    );
    std::fs::write(rootfs.join("etc/greeting"), "hello from the registry\n").unwrap();
    umoci(d, &["repack", "--image", "img:bb", "bundle"]);
    umoci(
        d,
        &[
            "config",
            "--image",
            "img:bb",
            "--config.cmd",
            "/bin/cat",
            "--config.cmd",
            "/etc/greeting",
        ],
    );
    let bb = format!("{}/test/bb:1", reg.addr());
    skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &format!("oci:{}:bb", d.join("img").display()),
        &format!("docker://{bb}"),
    ]);

    // Pull and run.
    let out = s.ok(&["pull", &bb]);
    assert!(out.contains("layer 2/2"), "{out}");
    assert!(out.contains("image created"), "{out}");
    assert!(s
        .ok(&["image", "ls"])
        .contains(&format!("{}/test/bb", reg.addr())));
    let out = s.ok(&["run", "--rm", &bb]);
    assert!(out.contains("hello from the registry"), "{out}");

    // A build FROM another image of the registry, not here yet: pulled first.
    let other = format!("{}/test/other:2", reg.addr());
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{bb}"),
        &format!("docker://{other}"),
    ]);
    let ctx = d.join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {other}\nRUN echo built >> /etc/greeting\n"),
    )
    .unwrap();
    let out = s.ok(&["build", "-t", "built:1", ctx.to_str().unwrap()]);
    assert!(out.contains("already present"), "{out}");
    let out = s.ok(&["run", "--rm", "built:1"]);
    assert!(out.contains("hello from the registry\nbuilt"), "{out}");

    // Push: skopeo reads it back; the config and layers say what the image says.
    let pushed_ref = format!("{}/test/built:1", reg.addr());
    let out = s.ok(&["push", "built:1", &pushed_ref]);
    let digest = out.lines().last().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{out}");
    let inspected = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{pushed_ref}"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&inspected).unwrap();
    assert_eq!(v["Digest"], digest.as_str());
    let raw = skopeo(&[
        "inspect",
        "--config",
        "--tls-verify=false",
        &format!("docker://{pushed_ref}"),
    ]);
    let config: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["/bin/cat", "/etc/greeting"])
    );

    // Save as an archive; load it back under another name and run it.
    let txz = d.join("built.txz");
    s.ok(&["image", "save", "built:1", "-o", txz.to_str().unwrap()]);
    let out = s.ok(&[
        "image",
        "load",
        "-t",
        "loaded:1",
        &format!("{}:1", txz.display()),
    ]);
    assert!(out.contains("image created"), "{out}");
    let out = s.ok(&["run", "--rm", "loaded:1"]);
    assert!(out.contains("hello from the registry\nbuilt"), "{out}");

    // Errors name the thing.
    let bad = s
        .klee(["pull", &format!("{}/test/nope:1", reg.addr())])
        .output()
        .unwrap();
    let (o, e) = common::texts(&bad);
    assert!(!bad.status.success());
    assert!(format!("{o}{e}").contains("test/nope"), "{o}{e}");
}
