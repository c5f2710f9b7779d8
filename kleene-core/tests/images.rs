//! Engine::open, base images and their management, volumes: on a real pool.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use kleene_core::kleene_zfs::{DatasetName, Depth, Properties, Zfs};
use kleene_core::{BaseSource, CoreError, CreateImage, Engine, Event, Events};

fn fetch(path: &std::path::Path) -> CreateImage {
    CreateImage::new(BaseSource::Fetch {
        url: format!("file://{}", path.display()),
        sha256: None,
    })
}

fn sha256_hex(path: &std::path::Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Datasets below `<root>/image`.
fn image_datasets(s: &common::Scratch) -> Vec<String> {
    let zfs = Zfs::open();
    let image_root = s.config.root.child("image").unwrap();
    zfs.list_datasets(&image_root, Depth::Children, &[])
        .unwrap()
        .into_iter()
        .map(|d| d.name.to_string())
        .filter(|d| d != image_root.as_str())
        .collect()
}

#[tokio::test]
async fn open_makes_the_root_and_is_idempotent() {
    let s = scratch_or_skip!("open");
    let engine = Engine::open(s.config.clone()).await.unwrap();
    let zfs = Zfs::open();
    for child in ["image", "container", "volumes", "layer"] {
        assert!(
            zfs.exists(&s.config.root.child(child).unwrap()).unwrap(),
            "{child}"
        );
    }
    assert!(engine.root_mountpoint().join("metadata.sqlite").exists());
    // The schema version is the number of migrations that ran: `MIGRATIONS` in
    // kleene-core/src/meta.rs has four (1: images, volumes, containers and their mounts;
    // 2: the build cache; 3: networks and endpoints; 4: OCI layers). Bump this with
    // every migration added there.
    assert_eq!(engine.schema_version().await.unwrap(), 4);
    drop(engine);
    let (_, repairs) = Engine::open_with(s.config.clone(), Events::none())
        .await
        .unwrap();
    assert!(repairs.is_empty(), "{repairs:?}");
}

#[tokio::test]
async fn base_images_from_every_compression() {
    let s = scratch_or_skip!("compressions");
    let engine = Engine::open(s.config.clone()).await.unwrap();
    for (i, c) in ["none", "gz", "xz", "zst"].iter().enumerate() {
        let tarball = s.rootfs(c);
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        let image = engine
            .create_base_image(
                fetch(&tarball).tag(format!("base{i}:{c}")),
                Events::new(move |e| sink.lock().unwrap().push(e)),
            )
            .await
            .unwrap();
        assert_eq!(
            (image.name.as_str(), image.tag.as_str()),
            (format!("base{i}").as_str(), *c)
        );
        let zfs = Zfs::open();
        let ds = DatasetName::new(image.dataset.as_str()).unwrap();
        let root = zfs.mountpoint(&ds).unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("bin/hello")).unwrap(),
            "#!/bin/sh\necho hello\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("usr/share/doc/readme")).unwrap(),
            "docs"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap(),
            "nameserver 192.0.2.53\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("etc/localtime")).unwrap(),
            "TZif-test"
        );
        assert!(zfs.exists(&ds.snapshot("image").unwrap()).unwrap());
        assert_eq!(
            zfs.property(&ds, "kleene:id").unwrap().as_deref(),
            Some(image.id.as_str())
        );
        let events = events.lock().unwrap();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Download { total: Some(_), .. })),
            "{events:?}"
        );
        assert!(events
            .iter()
            .any(|e| matches!(e, Event::Extract { entries, .. } if *entries >= 5)));
        assert!(events.contains(&Event::ImageCreated {
            id: image.id.clone()
        }));
    }
    let images = engine.images().await.unwrap();
    assert_eq!(images.len(), 4);
    assert!(
        images.windows(2).all(|w| w[0].created >= w[1].created),
        "newest first"
    );
}

#[tokio::test]
async fn options_dns_localtime_off_and_sha256() {
    let s = scratch_or_skip!("options");
    let engine = Engine::open(s.config.clone()).await.unwrap();
    let tarball = s.rootfs("gz");
    let mut req = CreateImage::new(BaseSource::Fetch {
        url: tarball.display().to_string(),
        sha256: Some(sha256_hex(&tarball)),
    });
    req.dns = false;
    req.localtime = false;
    let image = engine.create_base_image(req, Events::none()).await.unwrap();
    assert_eq!(image.name, "", "untagged by default");
    let root = Zfs::open()
        .mountpoint(&DatasetName::new(image.dataset.as_str()).unwrap())
        .unwrap()
        .unwrap();
    assert!(!root.join("etc/resolv.conf").exists());
    assert!(!root.join("etc/localtime").exists());

    // A wrong checksum: refused, and nothing is left.
    let before = image_datasets(&s);
    let bad = CreateImage::new(BaseSource::Fetch {
        url: format!("file://{}", tarball.display()),
        sha256: Some("00".repeat(32)),
    });
    let err = engine
        .create_base_image(bad, Events::none())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sha256"), "{err}");
    assert_eq!(image_datasets(&s), before);
    assert_eq!(engine.images().await.unwrap().len(), 1);
}

#[tokio::test]
async fn failures_leave_nothing() {
    let s = scratch_or_skip!("failures");
    let engine = Engine::open(s.config.clone()).await.unwrap();
    let garbage = s.dir.path().join("garbage.txz");
    std::fs::write(&garbage, vec![0x42u8; 5000]).unwrap();
    let err = engine
        .create_base_image(fetch(&garbage), Events::none())
        .await
        .unwrap_err();
    eprintln!("garbage: {err}");
    let err = engine
        .create_base_image(fetch(&s.dir.path().join("missing.txz")), Events::none())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing.txz"), "{err}");
    // An archive that leaves its root is refused naming the entry.
    let evil = s.tarball(
        "evil.tar",
        "none",
        &[("etc/", b"", 0o755), ("../evil", b"x", 0o644)],
    );
    let err = engine.create_base_image(fetch(&evil), Events::none()).await;
    match err {
        Err(e) => assert!(e.to_string().contains("evil"), "{e}"),
        Ok(i) => panic!("hostile archive accepted as {}", i.id),
    }
    let err = engine
        .create_base_image(fetch(&s.rootfs("none")).tag("bad name!"), Events::none())
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::InvalidInput(_)), "{err}");
    let err = engine
        .create_base_image(
            CreateImage::new(BaseSource::Fetch {
                url: "ftp://x/y".into(),
                sha256: None,
            }),
            Events::none(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ftp://x/y"), "{err}");
    assert!(image_datasets(&s).is_empty());
    assert!(engine.images().await.unwrap().is_empty());
}

#[tokio::test]
async fn zfs_clone_and_zfs_copy() {
    let s = scratch_or_skip!("zfssrc");
    let engine = Engine::open(s.config.clone()).await.unwrap();
    let zfs = Zfs::open();
    let src = s.config.root.child("src").unwrap();
    zfs.create(&src, &Properties::new()).unwrap();
    let src_mp = zfs.mountpoint(&src).unwrap().unwrap();
    std::fs::create_dir_all(src_mp.join("etc")).unwrap();
    std::fs::write(src_mp.join("etc/motd"), "from the dataset").unwrap();

    let cloned = engine
        .create_base_image(
            CreateImage::new(BaseSource::ZfsClone(src.clone())).tag("cloned"),
            Events::none(),
        )
        .await
        .unwrap();
    let copied = engine
        .create_base_image(
            CreateImage::new(BaseSource::ZfsCopy(src.clone())).tag("copied"),
            Events::none(),
        )
        .await
        .unwrap();
    for image in [&cloned, &copied] {
        let ds = DatasetName::new(image.dataset.as_str()).unwrap();
        let mp = zfs.mountpoint(&ds).unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(mp.join("etc/motd")).unwrap(),
            "from the dataset"
        );
        assert!(mp.join("etc/resolv.conf").exists());
    }
    let cloned_ds = DatasetName::new(cloned.dataset.as_str()).unwrap();
    let copied_ds = DatasetName::new(copied.dataset.as_str()).unwrap();
    assert!(
        zfs.origin(&cloned_ds).unwrap().is_some(),
        "zfs-clone is a clone"
    );
    assert_eq!(
        zfs.origin(&copied_ds).unwrap(),
        None,
        "zfs-copy is independent"
    );
    // The copy's temporary snapshot is gone from the source; the clone's stays while the
    // image lives, and goes with it.
    let snaps = |d: &DatasetName| zfs.list_snapshots(d, &[]).unwrap().len();
    assert_eq!(snaps(&src), 1);
    engine.remove_image("cloned").await.unwrap();
    assert_eq!(snaps(&src), 0);

    let err = engine
        .create_base_image(
            CreateImage::new(BaseSource::ZfsCopy(s.config.root.child("nope").unwrap())),
            Events::none(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn lookups_tags_removal_and_prune() {
    let s = scratch_or_skip!("lookups");
    let engine = Engine::open(s.config.clone()).await.unwrap();
    let tarball = s.rootfs("none");
    let mut ids = Vec::new();
    // 17 images: two of them share a first hex digit, so a 1-character prefix is ambiguous.
    for _ in 0..17 {
        ids.push(
            engine
                .create_base_image(fetch(&tarball), Events::none())
                .await
                .unwrap()
                .id,
        );
    }
    let first = |c: char| ids.iter().filter(|i| i.as_str().starts_with(c)).count();
    let shared = "0123456789abcdef".chars().find(|c| first(*c) > 1).unwrap();
    match engine.image(&shared.to_string()).await {
        Err(CoreError::Ambiguous { candidates, .. }) => assert!(candidates.len() > 1),
        other => panic!("expected ambiguity, got {other:?}"),
    }
    let id = &ids[0];
    assert_eq!(&engine.image(id.as_str()).await.unwrap().id, id);
    let unique = (1..=12)
        .map(|n| &id.as_str()[..n])
        .find(|p| ids.iter().filter(|i| i.as_str().starts_with(p)).count() == 1)
        .unwrap();
    assert_eq!(&engine.image(unique).await.unwrap().id, id);

    engine.tag_image(id.as_str(), "web").await.unwrap();
    assert_eq!(&engine.image("web").await.unwrap().id, id);
    assert_eq!(&engine.image("web:latest").await.unwrap().id, id);
    let (img, snap) = engine.resolve_image("web@image").await.unwrap();
    assert_eq!(&img.id, id);
    assert_eq!(snap.snapshot(), "image");
    assert!(matches!(
        engine.resolve_image("web@nosuch").await,
        Err(CoreError::NotFound { .. })
    ));
    // The tag moves; the previous holder becomes untagged.
    engine
        .tag_image(ids[1].as_str(), "web:latest")
        .await
        .unwrap();
    assert_eq!(engine.image("web").await.unwrap().id, ids[1]);
    assert_eq!(engine.image(id.as_str()).await.unwrap().name, "");
    assert!(matches!(
        engine.image("nosuch:tag").await,
        Err(CoreError::NotFound { .. })
    ));

    // Removal and prune: untagged ones go, tagged ones stay until `all`.
    engine.remove_image(ids[2].as_str()).await.unwrap();
    assert!(matches!(
        engine.image(ids[2].as_str()).await,
        Err(CoreError::NotFound { .. })
    ));
    let pruned = engine.prune_images(false).await.unwrap();
    assert_eq!(pruned.len(), 15);
    assert_eq!(engine.images().await.unwrap().len(), 1);
    assert_eq!(
        engine.prune_images(true).await.unwrap(),
        vec![ids[1].clone()]
    );
    assert!(image_datasets(&s).is_empty());
}

#[tokio::test]
async fn fetch_auto_and_http() {
    let s = scratch_or_skip!("fetch");
    let tarball = s.rootfs("xz");
    // fetch-auto needs a FreeBSD release: on Linux it says so.
    if cfg!(not(target_os = "freebsd")) {
        let engine = Engine::open(s.config.clone()).await.unwrap();
        let err = engine
            .create_base_image(CreateImage::new(BaseSource::FetchAuto), Events::none())
            .await
            .unwrap_err();
        assert!(matches!(err, CoreError::Unsupported(_)), "{err}");
        assert!(err.to_string().contains("FreeBSD"), "{err}");
    }
    // With a release and a template it fetches and autotags.
    let mut config = s.config.clone();
    config.release = Some("14.1-RELEASE".into());
    config.arch = Some("amd64".into());
    config.fetch_template = format!("file://{}/{{version}}-{{arch}}.txz", s.dir.path().display());
    std::fs::copy(&tarball, s.dir.path().join("14.1-RELEASE-amd64.txz")).unwrap();
    let engine = Engine::open(config).await.unwrap();
    let image = engine
        .create_base_image(CreateImage::new(BaseSource::FetchAuto), Events::none())
        .await
        .unwrap();
    assert_eq!(
        (image.name.as_str(), image.tag.as_str()),
        ("FreeBSD-14.1-RELEASE", "latest")
    );

    // http: a one-shot server on loopback.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = std::fs::read(&tarball).unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut conn, _) = listener.accept().unwrap();
            let mut req = [0u8; 4096];
            let n = conn.read(&mut req).unwrap();
            let req = String::from_utf8_lossy(&req[..n]).to_string();
            if req.starts_with("GET /base.txz") {
                write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .unwrap();
                conn.write_all(&body).unwrap();
            } else {
                write!(
                    conn,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
            }
        }
    });
    let url = format!("http://127.0.0.1:{port}/base.txz");
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let image = engine
        .create_base_image(
            CreateImage::new(BaseSource::Fetch {
                url,
                sha256: Some(sha256_hex(&tarball)),
            })
            .tag("http"),
            Events::new(move |e| sink.lock().unwrap().push(e)),
        )
        .await
        .unwrap();
    assert_eq!(image.name, "http");
    let total = body_len(&events.lock().unwrap());
    assert_eq!(total, Some(std::fs::metadata(&tarball).unwrap().len()));
    let err = engine
        .create_base_image(
            CreateImage::new(BaseSource::Fetch {
                url: format!("http://127.0.0.1:{port}/nope.txz"),
                sha256: None,
            }),
            Events::none(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    server.join().unwrap();
}

fn body_len(events: &[Event]) -> Option<u64> {
    events.iter().rev().find_map(|e| match e {
        Event::Download { bytes, total, .. } if total == &Some(*bytes) => Some(*bytes),
        _ => None,
    })
}

#[tokio::test]
async fn volumes() {
    let s = scratch_or_skip!("volumes");
    let engine = Engine::open(s.config.clone()).await.unwrap();
    let v = engine.create_volume("data").await.unwrap();
    assert!(std::path::Path::new(&v.mountpoint).is_dir());
    assert!(matches!(
        engine.create_volume("data").await,
        Err(CoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        engine.create_volume("-bad").await,
        Err(CoreError::InvalidInput(_))
    ));
    assert!(matches!(
        engine.create_volume("a/b").await,
        Err(CoreError::InvalidInput(_))
    ));
    engine.create_volume("logs").await.unwrap();
    let names: Vec<String> = engine
        .volumes()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["data", "logs"]);
    assert_eq!(engine.volume("data").await.unwrap(), v);
    engine.remove_volume("data").await.unwrap();
    assert!(matches!(
        engine.volume("data").await,
        Err(CoreError::NotFound { .. })
    ));
    assert!(matches!(
        engine.remove_volume("data").await,
        Err(CoreError::NotFound { .. })
    ));
    assert_eq!(engine.prune_volumes().await.unwrap(), ["logs"]);
    assert!(engine.volumes().await.unwrap().is_empty());
}
