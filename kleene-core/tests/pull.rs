//! Pulls from a real registry (Debian's docker-registry on 127.0.0.1, over http as a
//! loopback registry is spoken to), images put there by skopeo from layouts umoci made:
//! layers shared with what is here, a second pull a clone, `FROM registry/name` in a
//! Dockerfile, a platform that is not there refused, a tampered layer refused with
//! nothing left, and a pull killed half-way repaired by `Engine::open` and finished by
//! the next pull.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use kleene_core::kleene_zfs::DatasetName;
use kleene_core::{BuildRequest, Engine, Event, Events, PullImage};
use kleene_oci::testing::{have_tool, have_umoci, skopeo, Registry};

/// A registry holding `oci/img:a` and `oci/img:b` (b = a's two layers and a third).
fn registry_with_images(dir: &Path) -> Option<Registry> {
    if !have_umoci() || !have_tool("skopeo") {
        return None;
    }
    let reg = Registry::start()?;
    let img = common::two_images(dir);
    for tag in ["a", "b"] {
        skopeo(&[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", img.display()),
            &format!("docker://{}/oci/img:{tag}", reg.addr()),
        ]);
    }
    Some(reg)
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

fn count(seen: &Arc<Mutex<Vec<String>>>, end: &str) -> usize {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|l| l.ends_with(end))
        .count()
}

fn layers(root: &DatasetName) -> Vec<String> {
    common::datasets_below(root, "layer")
}

#[tokio::test]
async fn pulls_share_layers_and_from_pulls_what_is_not_here() {
    let s = scratch_or_skip!("pull");
    let t = tempfile::tempdir().unwrap();
    let Some(reg) = registry_with_images(t.path()) else {
        return;
    };
    let engine = Engine::open(s.config.clone()).await.unwrap();
    let a_ref = format!("{}/oci/img:a", reg.addr());
    let (events, seen) = statuses();
    let a = engine
        .pull_image(PullImage::new(&a_ref), events)
        .await
        .unwrap();
    assert_eq!(count(&seen, "pulled"), 2);
    // Named as Docker names it: registry/repository:tag.
    assert_eq!(a.name, format!("{}/oci/img", reg.addr()));
    assert_eq!(a.tag, "a");
    let origin = a.config.origin.clone().unwrap();
    assert_eq!(origin.reference, a_ref);
    let root = engine.zfs().mountpoint(&a.dataset).unwrap().unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("etc/second")).unwrap(),
        "second\n"
    );
    assert!(!root.join("etc/gone").exists());
    assert_eq!(engine.image(&a_ref).await.unwrap().id, a.id);

    // b shares a's two layers: only its third comes over the wire.
    let (events, seen) = statuses();
    let b = engine
        .pull_image(PullImage::new(format!("{}/oci/img:b", reg.addr())), events)
        .await
        .unwrap();
    assert_eq!(count(&seen, "already present"), 2);
    assert_eq!(count(&seen, "pulled"), 1);
    assert_eq!(b.config.cmd, ["/bin/b"]);
    assert_eq!(layers(&s.config.root).len(), 3);
    // A second pull of the same image is up to date: nothing made.
    let (events, seen) = statuses();
    let again = engine
        .pull_image(PullImage::new(&a_ref), events)
        .await
        .unwrap();
    assert_eq!(again.id, a.id);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("image is up to date")),
        "{:?}",
        seen.lock().unwrap()
    );
    // Under another name: the same image, named so.
    let renamed = engine
        .pull_image(PullImage::new(&a_ref).tag("renamed:a"), Events::none())
        .await
        .unwrap();
    assert_eq!(renamed.id, a.id);
    assert_eq!(renamed.nametag(), "renamed:a");
    engine.tag_image(&a.id.to_string(), &a_ref).await.unwrap();

    // A build FROM an image of a registry that is not here pulls it; the pulled image
    // keeps its name.
    engine.remove_image(&b.id.to_string()).await.unwrap();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {}/oci/img:b\nCOPY hello /etc/hello\n", reg.addr()),
    )
    .unwrap();
    std::fs::write(ctx.path().join("hello"), "hello\n").unwrap();
    let (events, seen) = statuses();
    let built = engine
        .build(BuildRequest::new(ctx.path()).tag("built:1"), events)
        .await
        .unwrap();
    // (b's third layer went with b; a's two are still here.)
    assert_eq!(
        count(&seen, "already present"),
        2,
        "{:?}",
        seen.lock().unwrap()
    );
    assert_eq!(count(&seen, "pulled"), 1, "{:?}", seen.lock().unwrap());
    let root = engine
        .zfs()
        .mountpoint(&built.image.dataset)
        .unwrap()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hello")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/third")).unwrap(),
        "third\n"
    );
    assert!(engine
        .image(&format!("{}/oci/img:b", reg.addr()))
        .await
        .is_ok());

    // Errors name the thing.
    let err = engine
        .pull_image(
            PullImage::new(format!("{}/oci/nope:1", reg.addr())),
            Events::none(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("oci/nope"), "{err}");
    let err = engine
        .pull_image(
            PullImage::new(&a_ref).platform("freebsd/riscv64"),
            Events::none(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no image for freebsd/riscv64"), "{err}");
}

#[tokio::test]
async fn a_tampered_layer_is_refused_and_nothing_stays() {
    let s = scratch_or_skip!("pulltamper");
    let t = tempfile::tempdir().unwrap();
    let Some(reg) = registry_with_images(t.path()) else {
        return;
    };
    let engine = Engine::open(s.config.clone()).await.unwrap();
    // The registry serves b's third layer with other bytes of the same length.
    let layout = kleene_oci::Layout::open(&t.path().join("img")).unwrap();
    let b = layout
        .resolve(Some("b"), &kleene_oci::Platform::host())
        .unwrap();
    let third = &b.layers[2];
    let data = reg.blob_data(&third.digest);
    let mut bytes = std::fs::read(&data).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let err = engine
        .pull_image(
            PullImage::new(format!("{}/oci/img:b", reg.addr())),
            Events::none(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(third.digest.hex()), "{err}");
    assert!(engine.images().await.unwrap().is_empty());
    // The two verified layers below stay for the next pull; the bad one left nothing,
    // not even its download.
    assert_eq!(layers(&s.config.root).len(), 2);
    let blobs: Vec<_> = std::fs::read_dir(engine.root_mountpoint().join("blobs"))
        .unwrap()
        .collect();
    assert!(blobs.is_empty(), "{blobs:?}");
    engine.prune_images(true).await.unwrap();
    assert!(layers(&s.config.root).is_empty());
}

#[tokio::test]
async fn a_pull_killed_half_way_is_repaired_and_the_next_goes_on() {
    let s = scratch_or_skip!("pullkill");
    let t = tempfile::tempdir().unwrap();
    let Some(reg) = registry_with_images(t.path()) else {
        return;
    };
    let reference = format!("{}/oci/img:b", reg.addr());
    for point in [
        "layer-before-snapshot",
        "pull-after-download",
        "pull-before-image",
    ] {
        let status = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
            .env(
                "KLEENE_TEST_CHILD",
                format!("{}|{reference}", s.config.root),
            )
            .env("KLEENE_FAILPOINT", point)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "{point}: the child should have died");
        let (engine, _) = Engine::open_with(s.config.clone(), Events::none())
            .await
            .unwrap();
        let (_, again) = Engine::open_with(s.config.clone(), Events::none())
            .await
            .unwrap();
        assert!(again.is_empty(), "{point}: {again:?}");
        let made_before = layers(&s.config.root).len();
        let (events, seen) = statuses();
        let b = engine
            .pull_image(PullImage::new(&reference), events)
            .await
            .unwrap();
        // What the killed pull finished is used, not pulled again.
        assert_eq!(count(&seen, "already present"), made_before, "{point}");
        let root = engine.zfs().mountpoint(&b.dataset).unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("etc/third")).unwrap(),
            "third\n"
        );
        engine.remove_image(&reference).await.unwrap();
        assert!(layers(&s.config.root).is_empty(), "{point}");
    }
}

#[tokio::test]
async fn child_entry() {
    let Ok(what) = std::env::var("KLEENE_TEST_CHILD") else {
        return;
    };
    let (root, reference) = what.split_once('|').unwrap();
    let s = common::scratch_at(DatasetName::new(root).unwrap(), false);
    let engine = Engine::open(s.config.clone()).await.unwrap();
    engine
        .pull_image(PullImage::new(reference), Events::none())
        .await
        .unwrap();
}
