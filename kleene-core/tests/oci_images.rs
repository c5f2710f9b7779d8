//! Images of OCI images on ZFS: each layer a dataset cloned from the one below, keyed by
//! chain id and shared between images; layers nothing uses go with the last image on
//! them; a load killed half-way is repaired by `Engine::open` and can be done again; a
//! layer that lies about its digest is refused with nothing left behind. Layouts are made
//! by umoci (Debian's), the independent implementation.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use kleene_core::kleene_zfs::DatasetName;
use kleene_core::{BaseSource, CreateImage, Engine, Event, Events};
use kleene_oci::testing::have_umoci;

fn layout(dir: &Path, name: &str) -> CreateImage {
    CreateImage::new(BaseSource::OciLayout {
        dir: dir.to_path_buf(),
        name: Some(name.into()),
        platform: None,
    })
    .tag(format!("oci:{name}"))
}

fn statuses() -> (Events, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let events = Events::new(move |e| {
        if let Event::Status(t) = e {
            s.lock().unwrap().push(t);
        }
    });
    (events, seen)
}

fn layers(root: &DatasetName) -> Vec<String> {
    common::datasets_below(root, "layer")
}

#[tokio::test]
async fn images_share_their_layers_and_the_last_user_takes_them() {
    if !have_umoci() {
        return;
    }
    let s = scratch_or_skip!("ocishare");
    let t = tempfile::tempdir().unwrap();
    let img = common::two_images(t.path());
    let engine = Engine::open(s.config.clone()).await.unwrap();

    let a = engine
        .create_base_image(layout(&img, "a"), Events::none())
        .await
        .unwrap();
    assert_eq!(layers(&s.config.root).len(), 2);
    let (events, seen) = statuses();
    let b = engine
        .create_base_image(layout(&img, "b"), events)
        .await
        .unwrap();
    // b's two lower layers are a's: only its third is made.
    assert_eq!(layers(&s.config.root).len(), 3);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter()
            .filter(|l| l.ends_with("already present"))
            .count(),
        2,
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|l| l.ends_with("applied")).count(),
        1,
        "{seen:?}"
    );
    assert_eq!(b.config.cmd, ["/bin/b"]);
    assert_eq!(b.config.layers.len(), 3);
    assert_eq!(b.config.layers[..2], a.config.layers[..]);
    let origin = b.config.origin.clone().unwrap();
    assert!(origin.digest.starts_with("sha256:"), "{origin:?}");

    // Each image's root is its layers applied, whiteouts honoured, and the host's
    // resolv.conf added to the image (not to the shared layer).
    let root_of = |d: &DatasetName| engine.zfs().mountpoint(d).unwrap().unwrap();
    let (ra, rb) = (root_of(&a.dataset), root_of(&b.dataset));
    assert_eq!(
        std::fs::read_to_string(ra.join("etc/second")).unwrap(),
        "second\n"
    );
    assert!(!ra.join("etc/gone").exists());
    assert!(!ra.join("etc/third").exists());
    assert_eq!(
        std::fs::read_to_string(rb.join("etc/third")).unwrap(),
        "third\n"
    );
    assert!(ra.join("etc/resolv.conf").exists());
    let top_a = DatasetName::new(format!(
        "{}/layer/{}",
        s.config.root,
        a.config.layers[1].trim_start_matches("sha256:")
    ))
    .unwrap();
    assert!(!root_of(&top_a).join("etc/resolv.conf").exists());
    // a is a clone of its top layer's snapshot.
    assert_eq!(
        engine
            .zfs()
            .origin(&a.dataset)
            .unwrap()
            .unwrap()
            .to_string(),
        format!("{top_a}@layer")
    );

    // A second load of a is one clone: no layer made.
    let (events, seen) = statuses();
    engine
        .create_base_image(layout(&img, "a").tag("again:a"), events)
        .await
        .unwrap();
    assert!(seen.lock().unwrap().iter().all(|l| !l.ends_with("applied")));
    engine.remove_image("again:a").await.unwrap();

    // Removing a keeps the layers b uses; removing b takes them all.
    engine.remove_image("oci:a").await.unwrap();
    assert_eq!(layers(&s.config.root).len(), 3);
    engine.remove_image("oci:b").await.unwrap();
    assert!(layers(&s.config.root).is_empty());
    let (_, repairs) = Engine::open_with(s.config.clone(), Events::none())
        .await
        .unwrap();
    assert!(repairs.is_empty(), "{repairs:?}");
}

#[tokio::test]
async fn a_layer_that_lies_is_refused_and_nothing_stays() {
    if !have_umoci() {
        return;
    }
    let s = scratch_or_skip!("ocilie");
    let t = tempfile::tempdir().unwrap();
    let img = common::two_images(t.path());
    let engine = Engine::open(s.config.clone()).await.unwrap();
    // Tamper with b's third layer: same size, other bytes.
    let resolved = kleene_oci::Layout::open(&img)
        .unwrap()
        .resolve(Some("b"), &kleene_oci::Platform::host())
        .unwrap();
    let third = img
        .join("blobs/sha256")
        .join(resolved.layers[2].digest.hex());
    let mut bytes = std::fs::read(&third).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&third, bytes).unwrap();
    let err = engine
        .create_base_image(layout(&img, "b"), Events::none())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(resolved.layers[2].digest.hex()), "{err}");
    // The two good layers stay (they are verified and reusable); the bad one and the
    // image do not.
    assert_eq!(layers(&s.config.root).len(), 2);
    assert!(engine.images().await.unwrap().is_empty());
    assert!(common::datasets_below(&s.config.root, "image").is_empty());
    // Unused layers go with a prune.
    engine.prune_images(true).await.unwrap();
    assert!(layers(&s.config.root).is_empty());
}

#[tokio::test]
async fn a_load_killed_half_way_is_repaired_and_done_again() {
    if !have_umoci() {
        return;
    }
    let s = scratch_or_skip!("ocikill");
    let t = tempfile::tempdir().unwrap();
    let img = common::two_images(t.path());
    for point in [
        "layer-after-row",
        "layer-before-snapshot",
        "image-before-finish",
    ] {
        let status = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
            .env(
                "KLEENE_TEST_CHILD",
                format!("{}:{}", s.config.root, img.display()),
            )
            .env("KLEENE_FAILPOINT", point)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "{point}: the child should have died");
        let (engine, repairs) = Engine::open_with(s.config.clone(), Events::none())
            .await
            .unwrap();
        assert!(!repairs.is_empty(), "{point}: nothing was repaired");
        let (_, again) = Engine::open_with(s.config.clone(), Events::none())
            .await
            .unwrap();
        assert!(again.is_empty(), "{point}: {again:?}");
        // What was made before the kill stays and is used; the rest is made now.
        let b = engine
            .create_base_image(layout(&img, "b"), Events::none())
            .await
            .unwrap();
        let root = engine.zfs().mountpoint(&b.dataset).unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("etc/third")).unwrap(),
            "third\n"
        );
        engine.remove_image("oci:b").await.unwrap();
        assert!(layers(&s.config.root).is_empty(), "{point}");
    }
}

#[tokio::test]
async fn child_entry() {
    let Ok(what) = std::env::var("KLEENE_TEST_CHILD") else {
        return;
    };
    let (root, dir) = what.split_once(':').unwrap();
    let s = common::scratch_at(DatasetName::new(root).unwrap(), false);
    let engine = Engine::open(s.config.clone()).await.unwrap();
    engine
        .create_base_image(layout(Path::new(dir), "b"), Events::none())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_docker_archive_loads_and_shares_layers_with_the_same_oci_image() {
    if !have_umoci() || !kleene_oci::testing::have_tool("skopeo") {
        return;
    }
    let s = scratch_or_skip!("ocidocker");
    let t = tempfile::tempdir().unwrap();
    let img = common::two_images(t.path());
    let tarball = t.path().join("b.tar");
    kleene_oci::testing::skopeo(&[
        "copy",
        "--quiet",
        &format!("oci:{}:b", img.display()),
        &format!("docker-archive:{}:kleene/b:1", tarball.display()),
    ]);
    let engine = Engine::open(s.config.clone()).await.unwrap();
    let (events, seen) = statuses();
    let from_docker = engine
        .create_base_image(
            CreateImage::new(BaseSource::OciLayout {
                dir: tarball.clone(),
                name: Some("kleene/b:1".into()),
                platform: None,
            })
            .tag("docker:b"),
            events,
        )
        .await
        .unwrap();
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|l| l.ends_with("applied"))
            .count(),
        3
    );
    assert_eq!(from_docker.config.cmd, ["/bin/b"]);
    // The same layers (same diff ids) as the OCI layout's b: nothing is applied again.
    let (events, seen) = statuses();
    let from_oci = engine
        .create_base_image(layout(&img, "b"), events)
        .await
        .unwrap();
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|l| l.ends_with("already present"))
            .count(),
        3
    );
    assert_eq!(from_oci.config.layers, from_docker.config.layers);
    let root = engine
        .zfs()
        .mountpoint(&from_docker.dataset)
        .unwrap()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("etc/third")).unwrap(),
        "third\n"
    );
    // A name the archive does not have is refused by name.
    let err = engine
        .create_base_image(
            CreateImage::new(BaseSource::OciLayout {
                dir: tarball,
                name: Some("nope:1".into()),
                platform: None,
            }),
            Events::none(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope:1"), "{err}");
}
