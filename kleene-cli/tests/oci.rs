//! `klee image load`: an image of an OCI image layout made by umoci (an independent
//! implementation, Debian's package) from a busybox rootfs, in two layers with a
//! whiteout, and a config with an entrypoint, a command, an environment and a working
//! directory; then run. Skipped without umoci or a pool, failing with `KLEENE_REQUIRE_ZFS=1`.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use kleene_oci::testing::{have_umoci, umoci};

#[test]
fn an_oci_layout_made_by_umoci_loads_and_runs() {
    let Some(s) = common::scratch_for_containers() else {
        return;
    };
    if !have_umoci() {
        return;
    }
    let d = s.dir.path();
    umoci(d, &["init", "--layout", "img"]);
    umoci(d, &["new", "--image", "img:bb"]);
    umoci(d, &["unpack", "--rootless", "--image", "img:bb", "bundle"]);
    // Layer 1: busybox and a file; layer 2: that file deleted (a whiteout), another added.
    let rootfs = d.join("bundle/rootfs");
    let tar = s.busybox_rootfs();
    tar::Archive::new(std::fs::File::open(&tar).unwrap())
        .unpack(&rootfs)
        .unwrap();
    std::fs::write(rootfs.join("etc/gone"), "x\n").unwrap();
    std::fs::create_dir_all(rootfs.join("srv")).unwrap();
    umoci(
        d,
        &["repack", "--refresh-bundle", "--image", "img:bb", "bundle"],
    );
    std::fs::remove_file(rootfs.join("etc/gone")).unwrap();
    std::fs::write(rootfs.join("etc/greeting"), "hello from umoci\n").unwrap();
    umoci(d, &["repack", "--image", "img:bb", "bundle"]);
    umoci(
        d,
        &[
            "config",
            "--image",
            "img:bb",
            "--config.entrypoint",
            "/bin/sh",
            "--config.entrypoint",
            "-c",
            "--config.cmd",
            "cat /etc/greeting; echo \"$GREETING in $(pwd)\"; test -e /etc/gone || echo gone",
            "--config.env",
            "GREETING=hi",
            "--config.workingdir",
            "/srv",
        ],
    );

    let layout = d.join("img");
    let out = s.ok(&[
        "image",
        "load",
        "-t",
        "fromoci:1",
        &format!("{}:bb", layout.display()),
    ]);
    assert!(out.contains("image created"), "{out}");
    let id = out.lines().last().unwrap().to_string();
    let out = s.ok(&["image", "inspect", "fromoci:1"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["id"], id.as_str());
    assert!(
        v["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hi"),
        "{v}"
    );
    let out = s.ok(&["run", "--rm", "fromoci:1"]);
    assert!(out.contains("hello from umoci"), "{out}");
    assert!(out.contains("hi in /srv"), "{out}");
    assert!(out.contains("gone"), "{out}");
    assert!(out.contains("exited with exit-code 0"), "{out}");

    // The same layout as an archive (tar + xz, as FreeBSD's release OCI images come).
    let txz = d.join("img.txz");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cJf")
        .arg(&txz)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let out = s.ok(&[
        "image",
        "load",
        "-t",
        "fromtxz:1",
        &format!("{}:bb", txz.display()),
    ]);
    assert!(out.contains("image created"), "{out}");
    let out = s.ok(&["run", "--rm", "fromtxz:1"]);
    assert!(out.contains("hello from umoci"), "{out}");

    // Errors name the thing.
    let bad = s.klee(["image", "load", "/nonexistent"]).output().unwrap();
    assert!(!bad.status.success());
    let (o, e) = common::texts(&bad);
    assert!(format!("{o}{e}").contains("no oci-layout file"), "{o}{e}");
    let bad = s
        .klee(["image", "load", &format!("{}:nope", layout.display())])
        .output()
        .unwrap();
    let (o, e) = common::texts(&bad);
    assert!(!bad.status.success());
    assert!(
        format!("{o}{e}").contains("no image named \"nope\""),
        "{o}{e}"
    );
    let bad = s
        .klee([
            "image",
            "load",
            "--platform",
            "freebsd/riscv64",
            &format!("{}:bb", layout.display()),
        ])
        .output()
        .unwrap();
    let (o, e) = common::texts(&bad);
    assert!(!bad.status.success());
    assert!(
        format!("{o}{e}").contains("no image for freebsd/riscv64"),
        "{o}{e}"
    );
    // A layer blob changed after the manifest was written: refused, nothing kept. (A
    // layer that is here already is not read again: the images go first, and their
    // layers with them.)
    s.ok(&["image", "rm", "fromoci:1", "fromtxz:1"]);
    let manifest = {
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(layout.join("index.json")).unwrap())
                .unwrap();
        let digest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let hex = digest.trim_start_matches("sha256:").to_string();
        let m: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(layout.join("blobs/sha256").join(hex)).unwrap(),
        )
        .unwrap();
        m
    };
    let last = manifest["layers"][1]["digest"].as_str().unwrap();
    let blob = layout
        .join("blobs/sha256")
        .join(last.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes.extend_from_slice(b"trailing");
    std::fs::write(&blob, &bytes).unwrap();
    let bad = s
        .klee([
            "image",
            "load",
            "-t",
            "tampered",
            &format!("{}:bb", layout.display()),
        ])
        .output()
        .unwrap();
    let (o, e) = common::texts(&bad);
    assert!(!bad.status.success(), "{o}{e}");
    assert!(
        format!("{o}{e}").contains(last),
        "the error names the blob: {o}{e}"
    );
    assert!(!s.ok(&["image", "ls"]).contains("tampered"));
    // Nothing half-made was left: no image; the verified lower layer stays until a
    // prune.
    let out = s.ok(&["image", "ls"]);
    assert!(!out.contains("tampered"), "{out}");
    let layers = || {
        let out = Command::new("zfs")
            .args(["list", "-H", "-o", "name", "-r", "-d", "1"])
            .arg(format!("{}/layer", s.root))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count() - 1
    };
    assert_eq!(layers(), 1);
    s.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(layers(), 0);
}
