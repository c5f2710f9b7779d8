//! Images saved and pushed as OCI images, read back by the independent tools: umoci
//! unpacks a saved layout (and what skopeo copied back from a registry we pushed to)
//! into the same tree as the image's; a second save is byte-identical; a second push
//! sends nothing; several images make a multi-platform index that skopeo reads and our
//! pull picks from.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use kleene_core::{BaseSource, BuildRequest, CreateImage, Engine, Events, PullImage, SaveOptions};
use kleene_oci::testing::{have_tool, have_umoci, skopeo, umoci, Registry};

/// Path → type, mode, owner, and content or target, below `root`.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let what = if m.file_type().is_symlink() {
            format!("link {:?}", std::fs::read_link(&p).unwrap())
        } else if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            format!("dir {:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid())
        } else {
            format!(
                "file {:o} {}:{} {:?}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                String::from_utf8_lossy(&std::fs::read(&p).unwrap())
            )
        };
        out.insert(rel, what);
    }
    out.remove("");
    out
}

/// An engine with `oci:b` loaded from umoci's layout and `built:1` built on it.
async fn engine_with_images(s: &common::Scratch, dir: &Path) -> Engine {
    let img = common::two_images(dir);
    let engine = Engine::open(s.config.clone()).await.unwrap();
    engine
        .create_base_image(
            CreateImage::new(BaseSource::OciLayout {
                dir: img,
                name: Some("b".into()),
                platform: None,
            })
            .tag("oci:b"),
            Events::none(),
        )
        .await
        .unwrap();
    let ctx = dir.join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM oci:b\nCOPY hello /etc/hello\nENV GREETING=hi\nCMD [\"/bin/hello\"]\n",
    )
    .unwrap();
    std::fs::write(ctx.join("hello"), "hello\n").unwrap();
    engine
        .build(BuildRequest::new(&ctx).tag("built:1"), Events::none())
        .await
        .unwrap();
    engine
}

fn image_tree(engine: &Engine, image: &kleene_core::Image) -> BTreeMap<String, String> {
    tree(&engine.zfs().mountpoint(&image.dataset).unwrap().unwrap())
}

#[tokio::test]
async fn a_saved_image_is_the_tree_umoci_unpacks_and_saves_are_reproducible() {
    if !have_umoci() {
        return;
    }
    let s = scratch_or_skip!("save");
    let t = tempfile::tempdir().unwrap();
    let engine = engine_with_images(&s, t.path()).await;
    let built = engine.image("built:1").await.unwrap();

    let out = t.path().join("saved");
    let saved = engine
        .save_image(
            "built:1",
            &out,
            SaveOptions::default().name("1"),
            Events::none(),
        )
        .await
        .unwrap();
    // The loaded image's three layers, its own (resolv.conf, localtime), the build's.
    assert_eq!(saved.layers.len(), 5, "{:?}", saved.layers);
    umoci(t.path(), &["unpack", "--image", "saved:1", "unpacked"]);
    assert_eq!(
        tree(&t.path().join("unpacked/rootfs")),
        image_tree(&engine, &built)
    );
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(t.path().join("unpacked/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["process"]["args"], serde_json::json!(["/bin/hello"]));
    assert!(config["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "GREETING=hi"));

    // Again, elsewhere: the same bytes.
    let again = engine
        .save_image(
            "built:1",
            &t.path().join("again"),
            SaveOptions::default().name("1"),
            Events::none(),
        )
        .await
        .unwrap();
    assert_eq!(again.manifest.digest(), saved.manifest.digest());
    // With SOURCE_DATE_EPOCH's clamp: no time after it in what umoci unpacks.
    let epoch = 1_000_000_000;
    let clamped = engine
        .save_image(
            "built:1",
            &t.path().join("clamped"),
            SaveOptions::default().name("1").clamp_mtime(epoch),
            Events::none(),
        )
        .await
        .unwrap();
    assert_ne!(clamped.manifest.digest(), saved.manifest.digest());
    umoci(
        t.path(),
        &["unpack", "--image", "clamped:1", "clamped-unpacked"],
    );
    let mut stack = vec![t.path().join("clamped-unpacked/rootfs")];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert!(
                m.mtime() <= epoch,
                "{} has mtime {}",
                p.display(),
                m.mtime()
            );
            seen += 1;
        }
    }
    assert!(seen > 3);

    // As an archive, loaded back: the same tree.
    let txz = t.path().join("built.txz");
    engine
        .save_image(
            "built:1",
            &txz,
            SaveOptions::default().name("1"),
            Events::none(),
        )
        .await
        .unwrap();
    let back = engine
        .create_base_image(
            CreateImage::new(BaseSource::OciLayout {
                dir: txz,
                name: Some("1".into()),
                platform: None,
            })
            .tag("back:1")
            .dns(false)
            .localtime(false),
            Events::none(),
        )
        .await
        .unwrap();
    assert_eq!(image_tree(&engine, &back), image_tree(&engine, &built));
    assert_eq!(back.config.cmd, ["/bin/hello"]);

    // A plain .tar is a docker-archive too: skopeo reads it as one, and what it copies
    // out of it unpacks to the image's tree.
    if have_tool("skopeo") {
        let tar = t.path().join("built.tar");
        engine
            .save_image(
                "built:1",
                &tar,
                SaveOptions::default().name("1"),
                Events::none(),
            )
            .await
            .unwrap();
        let inspected = skopeo(&["inspect", &format!("docker-archive:{}", tar.display())]);
        let v: serde_json::Value = serde_json::from_slice(&inspected).unwrap();
        assert_eq!(v["Layers"].as_array().unwrap().len(), 5, "{v}");
        skopeo(&[
            "copy",
            "--quiet",
            &format!("docker-archive:{}", tar.display()),
            &format!("oci:{}:1", t.path().join("fromdocker").display()),
        ]);
        umoci(
            t.path(),
            &["unpack", "--image", "fromdocker:1", "fromdocker-unpacked"],
        );
        assert_eq!(
            tree(&t.path().join("fromdocker-unpacked/rootfs")),
            image_tree(&engine, &built)
        );
        // Nothing but the layout and manifest.json is in the archive.
        let mut names: Vec<String> = tar::Archive::new(std::fs::File::open(&tar).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .filter(|n| !n.starts_with("blobs"))
            .collect();
        names.sort();
        assert_eq!(names, ["index.json", "manifest.json", "oci-layout"]);
    }
}

#[tokio::test]
async fn pushed_images_are_read_back_by_skopeo_and_umoci() {
    if !have_umoci() || !have_tool("skopeo") {
        return;
    }
    let s = scratch_or_skip!("push");
    let Some(reg) = Registry::start() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let engine = engine_with_images(&s, t.path()).await;
    let built = engine.image("built:1").await.unwrap();
    let target = format!("{}/kleene/app:1", reg.addr());
    let pushed = engine
        .push_images(&["built:1".into()], &target, Events::none())
        .await
        .unwrap();
    assert_eq!(pushed.uploaded, 6); // five layers and the config
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]);
    assert_eq!(kleene_oci::Digest::of(&raw), pushed.digest);
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:1", t.path().join("back").display()),
    ]);
    umoci(t.path(), &["unpack", "--image", "back:1", "unpacked"]);
    assert_eq!(
        tree(&t.path().join("unpacked/rootfs")),
        image_tree(&engine, &built)
    );

    // Again: the registry has every blob.
    let again = engine
        .push_images(&["built:1".into()], &target, Events::none())
        .await
        .unwrap();
    assert_eq!((again.uploaded, again.skipped), (0, 6));
    assert_eq!(again.digest, pushed.digest);

    // Pulled back by us: the same tree (resolv.conf and localtime are the image's).
    let pulled = engine
        .pull_image(PullImage::new(&target).tag("pulled:1"), Events::none())
        .await
        .unwrap();
    assert_eq!(image_tree(&engine, &pulled), image_tree(&engine, &built));
}

#[tokio::test]
async fn several_images_make_a_multi_platform_index() {
    if !have_umoci() || !have_tool("skopeo") {
        return;
    }
    let s = scratch_or_skip!("pushindex");
    let Some(reg) = Registry::start() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let img = common::two_images(t.path());
    // b again, said to be FreeBSD's.
    umoci(
        t.path(),
        &[
            "config", "--image", "img:b", "--tag", "bsd", "--os", "freebsd",
        ],
    );
    let engine = Engine::open(s.config.clone()).await.unwrap();
    for (name, platform) in [("b", None), ("bsd", Some("freebsd/amd64"))] {
        engine
            .create_base_image(
                CreateImage::new(BaseSource::OciLayout {
                    dir: img.clone(),
                    name: Some(name.into()),
                    platform: platform.map(str::to_string),
                })
                .tag(format!("oci:{name}")),
                Events::none(),
            )
            .await
            .unwrap();
    }
    let target = format!("{}/kleene/multi:1", reg.addr());
    let pushed = engine
        .push_images(&["oci:b".into(), "oci:bsd".into()], &target, Events::none())
        .await
        .unwrap();
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]);
    assert_eq!(kleene_oci::Digest::of(&raw), pushed.digest);
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms.len(), 2);
    assert!(
        platforms.contains(&"freebsd/amd64".to_string()),
        "{platforms:?}"
    );
    // skopeo picks FreeBSD's when told to.
    let inspected = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--override-os",
        "freebsd",
        &format!("docker://{target}"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&inspected).unwrap();
    assert_eq!(v["Os"], "freebsd");
    // And so does our pull.
    let bsd = engine
        .pull_image(
            PullImage::new(&target)
                .platform("freebsd/amd64")
                .tag("p:bsd"),
            Events::none(),
        )
        .await
        .unwrap();
    assert_eq!(bsd.config.origin.unwrap().platform, "freebsd/amd64");
}
