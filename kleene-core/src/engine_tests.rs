//! `Engine::open`'s repair and reference lookups, without root or a pool: the states a
//! crash leaves are made directly through the in-memory ZFS and the metadata store.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use kleene_zfs::{DatasetName, Depth, Properties, Zfs};

use crate::engine::OpLock;
use crate::id::Id;
use crate::jails::Jails;
use crate::meta::Store;
use crate::model::ImageConfig;
use crate::testkit::{config, root, FakeJails, Log, TestEngine, POOL};
use crate::{CoreError, Engine, Event, Object, Repairs};

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

/// Adds a finished image row (no dataset) with this id and `name:tag`.
fn add_row(t: &TestEngine, image: &str, name: &str, tag: &str) {
    let ds = root().child("image").unwrap().child(image).unwrap();
    let mut store = t.engine.inner.store();
    store.insert_pending_image(&id(image), &ds, "").unwrap();
    store
        .finish_image(&id(image), name, tag, None, &ImageConfig::default())
        .unwrap();
}

#[tokio::test]
async fn images_by_id_prefix_and_name() {
    let t = TestEngine::new().await;
    add_row(&t, "abcd00000001", "one", "1.0");
    add_row(&t, "abcd00000002", "two", "latest");
    add_row(&t, "abce00000003", "", "");
    add_row(&t, "f00000000001", "abce", "latest");
    let found = |r: &str| {
        let t = &t;
        let r = r.to_string();
        async move { t.engine.image(&r).await.map(|i| i.id.to_string()) }
    };
    // Full ids, then name[:tag], then a unique prefix.
    assert_eq!(found("abcd00000001").await.unwrap(), "abcd00000001");
    assert_eq!(found("one:1.0").await.unwrap(), "abcd00000001");
    assert_eq!(found("two").await.unwrap(), "abcd00000002");
    assert_eq!(found("two:latest@whatever").await.unwrap(), "abcd00000002");
    assert_eq!(found("abcd00000002").await.unwrap(), "abcd00000002");
    assert_eq!(found("abce0").await.unwrap(), "abce00000003");
    // A name wins over an id prefix.
    assert_eq!(found("abce").await.unwrap(), "f00000000001");
    match found("abcd").await {
        Err(CoreError::Ambiguous {
            kind: Object::Image,
            reference,
            candidates,
        }) => {
            assert_eq!(reference, "abcd");
            assert_eq!(candidates, ["abcd00000001", "abcd00000002"]);
        }
        other => panic!("{other:?}"),
    }
    let e = found("abcd0").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "image reference \"abcd0\" is ambiguous: it matches abcd00000001, abcd00000002"
    );
    for missing in ["one", "one:2.0", "abcf", "", "@x", "ABCD00000001"] {
        assert!(
            matches!(
                found(missing).await,
                Err(CoreError::NotFound {
                    kind: Object::Image,
                    ..
                })
            ),
            "{missing:?}"
        );
    }
    // resolve_image also checks the snapshot.
    let (image, snap) = t.engine.resolve_image("base").await.unwrap();
    assert_eq!(snap, image.dataset.snapshot("image").unwrap());
    let e = t.engine.resolve_image("base@nope").await.unwrap_err();
    assert_eq!(e.to_string(), "no such snapshot: base:latest@nope");
}

/// A pool with the engine's datasets and metadata, as an earlier process left them.
struct Left {
    zfs: Zfs,
    store: Store,
    ops: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn left_behind() -> Left {
    let dir = tempfile::tempdir().unwrap();
    let zfs = Zfs::memory(dir.path().join("zfs"), POOL).unwrap();
    for ds in ["", "/image", "/container", "/volumes"] {
        let name = DatasetName::new(format!("{}{ds}", root())).unwrap();
        zfs.create(&name, &Properties::new()).unwrap();
    }
    let mount = zfs.mountpoint(&root()).unwrap().unwrap();
    let ops = mount.join("ops");
    std::fs::create_dir_all(&ops).unwrap();
    let store = Store::open(&mount.join("metadata.sqlite")).unwrap();
    Left {
        zfs,
        store,
        ops,
        _dir: dir,
    }
}

fn image_ds(image: &str) -> DatasetName {
    root().child("image").unwrap().child(image).unwrap()
}

#[tokio::test]
async fn open_repairs_what_dead_operations_left() {
    let mut left = left_behind();
    let props = Properties::new();
    // A: half-made by a process that died (its operation's lock is free).
    left.store
        .insert_pending_image(
            &id("a00000000001"),
            &image_ds("a00000000001"),
            "dead00000001",
        )
        .unwrap();
    left.zfs.create(&image_ds("a00000000001"), &props).unwrap();
    // B: half-made by a live operation: left alone.
    let live = OpLock::begin(&left.ops).unwrap();
    left.store
        .insert_pending_image(&id("b00000000001"), &image_ds("b00000000001"), &live.token)
        .unwrap();
    left.zfs.create(&image_ds("b00000000001"), &props).unwrap();
    // C: a dataset no row knows.
    left.zfs.create(&image_ds("c00000000001"), &props).unwrap();
    // D: a finished row whose dataset vanished.
    left.store
        .insert_pending_image(&id("d00000000001"), &image_ds("d00000000001"), "")
        .unwrap();
    left.store
        .finish_image(
            &id("d00000000001"),
            "d",
            "latest",
            None,
            &ImageConfig::default(),
        )
        .unwrap();
    // E: a finished image with its dataset.
    left.store
        .insert_pending_image(&id("e00000000001"), &image_ds("e00000000001"), "")
        .unwrap();
    left.zfs.create(&image_ds("e00000000001"), &props).unwrap();
    left.store
        .finish_image(
            &id("e00000000001"),
            "e",
            "latest",
            None,
            &ImageConfig::default(),
        )
        .unwrap();
    let Left {
        zfs, store, _dir, ..
    } = left;
    drop(store);

    let log = Log::default();
    let jails: Arc<dyn Jails> = Arc::new(FakeJails::default());
    let (engine, repairs) = Engine::builder(config())
        .zfs(zfs)
        .jails(jails)
        .open_with(log.events())
        .await
        .unwrap();
    let expected = Repairs {
        removed_unfinished: vec![image_ds("a00000000001")],
        removed_orphans: vec![image_ds("c00000000001")],
        dropped_rows: vec![image_ds("d00000000001")],
        ..Repairs::default()
    };
    assert_eq!(repairs, expected);
    assert_eq!(log.count(|e| matches!(e, Event::Repaired(_))), 3);
    let zfs = engine.zfs();
    assert!(!zfs.exists(&image_ds("a00000000001")).unwrap());
    assert!(zfs.exists(&image_ds("b00000000001")).unwrap());
    assert!(!zfs.exists(&image_ds("c00000000001")).unwrap());
    assert!(zfs.exists(&image_ds("e00000000001")).unwrap());
    {
        let store = engine.inner.store();
        assert!(store.image(&id("d00000000001")).unwrap().is_none());
        assert!(store.image(&id("e00000000001")).unwrap().is_some());
        let pending: Vec<String> = store
            .pending()
            .unwrap()
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(pending, ["b00000000001"]);
    }
    drop(live);
    assert_eq!(engine.image("e").await.unwrap().id, id("e00000000001"));
}

#[tokio::test]
async fn a_repair_keeps_what_another_process_made_after_its_listing() {
    let t = TestEngine::new().await;
    let inner = &t.engine.inner;
    // The repair's listing, taken before another process makes an image (50 `klee run
    // -d` at once: one repairs while the others create).
    let listed = inner
        .zfs
        .list_datasets(&root(), Depth::All, &["mounted", "mountpoint"])
        .unwrap();
    let made = id("f10000000001");
    {
        let op = OpLock::begin(&inner.ops_dir).unwrap();
        let mut store = inner.store();
        store
            .insert_pending_image(&made, &image_ds("f10000000001"), &op.token)
            .unwrap();
        inner
            .zfs
            .create(&image_ds("f10000000001"), &Properties::new())
            .unwrap();
        store
            .finish_image(&made, "fresh", "latest", None, &ImageConfig::default())
            .unwrap();
    }
    let repairs = inner.reconcile(Some(listed)).unwrap();
    assert!(repairs.dropped_rows.is_empty(), "{repairs:?}");
    assert!(inner.store().image(&made).unwrap().is_some());
    assert!(inner.zfs.exists(&image_ds("f10000000001")).unwrap());
}

#[tokio::test]
async fn open_on_an_empty_pool_makes_the_root_and_needs_no_repair() {
    let dir = tempfile::tempdir().unwrap();
    let zfs = Zfs::memory(dir.path().join("zfs"), POOL).unwrap();
    let jails: Arc<dyn Jails> = Arc::new(FakeJails::default());
    let (engine, repairs) = Engine::builder(config())
        .zfs(zfs)
        .jails(jails)
        .open_with(crate::Events::none())
        .await
        .unwrap();
    assert!(repairs.is_empty());
    for child in ["image", "container", "volumes"] {
        assert!(engine.zfs().exists(&root().child(child).unwrap()).unwrap());
    }
    assert!(engine.root_mountpoint().join("metadata.sqlite").is_file());
    assert!(engine.images().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_endpoints_of_dead_builds_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let zfs = Zfs::memory(dir.path().join("zfs"), POOL).unwrap();
    let jails: Arc<dyn Jails> = Arc::new(FakeJails::default());
    let (engine, _) = Engine::builder(config())
        .zfs(zfs)
        .jails(jails)
        .open_with(crate::Events::none())
        .await
        .unwrap();
    let mut spec = crate::model::NetworkSpec::new("n", crate::model::NetworkType::Bridge);
    spec.subnet = Some("10.9.0.0/24".parse().unwrap());
    let network = crate::model::Network {
        id: id("e0e000000001"),
        name: "n".into(),
        spec,
        created: 0,
    };
    let endpoint = |container: &str, last: u8| crate::model::Endpoint {
        container: id(container),
        network: network.id.clone(),
        network_name: "n".into(),
        ipv4: Some(std::net::Ipv4Addr::new(10, 9, 0, last)),
        ipv6: None,
        slot: 0,
    };
    let live = OpLock::begin(&engine.inner.ops_dir).unwrap();
    {
        let store = engine.inner.store();
        store.insert_network(&network).unwrap();
        // Two builds whose process died, one running.
        assert!(store
            .insert_endpoint(&endpoint("b00000000001", 2), Some("dead00000001"))
            .unwrap());
        assert!(store
            .insert_endpoint(&endpoint("b00000000002", 3), Some("dead00000002"))
            .unwrap());
        assert!(store
            .insert_endpoint(&endpoint("b00000000003", 4), Some(&live.token))
            .unwrap());
    }
    // Runs to its end (it once held the store's lock through its loop and deadlocked).
    engine.inner.drop_dead_build_endpoints().unwrap();
    let left: Vec<Id> = engine
        .inner
        .store()
        .endpoints(None, None)
        .unwrap()
        .into_iter()
        .map(|e| e.container)
        .collect();
    assert_eq!(left, [id("b00000000003")]);
}

/// A tar archive of many files trickled by a loopback HTTP server (4 KiB every 20 ms), like
/// a slow download; its URL.
fn trickle_tar() -> String {
    let mut tar = tar::Builder::new(Vec::new());
    for n in 0..400 {
        let data = vec![b'x'; 2048];
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, format!("f{n}"), data.as_slice())
            .unwrap();
    }
    let body = tar.into_inner().unwrap();
    crate::testkit::serve_paced(body, 4096, std::time::Duration::from_millis(20))
}

#[tokio::test]
async fn an_interrupted_image_create_removes_its_partial_image() {
    let t = TestEngine::new().await;
    let before = t.engine.images().await.unwrap();
    let interrupt = crate::Interrupt::new();
    let log = Log::default();
    let req = crate::CreateImage::new(crate::BaseSource::Fetch {
        url: trickle_tar(),
        sha256: None,
    })
    .tag("partial")
    .interrupt(interrupt.clone());
    let engine = t.engine.clone();
    let events = log.events();
    let create = tokio::spawn(async move { engine.create_base_image(req, events).await });
    // Once some of it arrived, Ctrl-C.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.count(|e| matches!(e, Event::Download { bytes, .. } if *bytes > 0)) == 0 {
        assert!(
            !create.is_finished(),
            "the create ended early: {:?}",
            create.await
        );
        assert!(
            std::time::Instant::now() < deadline,
            "nothing downloaded: {:?}",
            log.all()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    interrupt.interrupt();
    let result = tokio::time::timeout(std::time::Duration::from_secs(10), create)
        .await
        .expect("the create stops within 10 s of the interrupt")
        .unwrap();
    assert!(matches!(result, Err(CoreError::Cancelled)), "{result:?}");
    // Nothing of it is left: no image, no row, no dataset.
    assert_eq!(t.engine.images().await.unwrap(), before);
    assert!(t.engine.inner.store().pending().unwrap().is_empty());
    let images = t
        .engine
        .zfs()
        .list_datasets(
            &root().child("image").unwrap(),
            kleene_zfs::Depth::Children,
            &[],
        )
        .unwrap();
    assert_eq!(images.len(), before.len() + 1, "{images:?}"); // + the image root itself
}

#[tokio::test]
async fn open_removes_the_lock_files_of_dead_operations_only() {
    let left = left_behind();
    // A dead operation's lock (killed after its row was removed, or before it was
    // written): nobody holds it.
    std::fs::write(left.ops.join("dead00000002.lock"), "").unwrap();
    // A live operation's, held.
    let live = OpLock::begin(&left.ops).unwrap();
    // One being made right now, locked and not yet renamed: kept.
    let making = std::fs::File::create(left.ops.join(".beef00000003.new")).unwrap();
    making.lock().unwrap();
    // One whose maker died before locking it: removed.
    std::fs::write(left.ops.join(".dead00000004.new"), "").unwrap();
    let Left { zfs, ops, _dir, .. } = left;
    let (_engine, _) = Engine::builder(config())
        .zfs(zfs)
        .jails(Arc::new(FakeJails::default()) as Arc<dyn Jails>)
        .open_with(crate::Events::none())
        .await
        .unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&ops)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".beef00000003.new".to_string(),
            format!("{}.lock", live.token)
        ]
    );
    drop(making);
}

#[tokio::test]
async fn a_lock_still_being_made_is_no_interrupted_operation() {
    let left = left_behind();
    let Left { zfs, ops, _dir, .. } = left;
    let (engine, _) = Engine::builder(config())
        .zfs(zfs)
        .jails(Arc::new(FakeJails::default()) as Arc<dyn Jails>)
        .open_with(crate::Events::none())
        .await
        .unwrap();
    assert!(!engine.inner.interrupted().unwrap());
    // Made and not locked yet (its maker may be about to): nothing is written under its
    // token before the rename, so the next open need not look for what it left.
    std::fs::write(ops.join(".cafe00000005.new"), "").unwrap();
    assert!(!engine.inner.interrupted().unwrap());
    // A dead operation's lock is one.
    std::fs::write(ops.join("dead00000006.lock"), "").unwrap();
    assert!(engine.inner.interrupted().unwrap());
}

#[test]
fn operation_locks_survive_a_sweeper_racing_their_making() {
    let dir = tempfile::tempdir().unwrap();
    let ops = dir.path().to_path_buf();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sweeper = {
        let (ops, stop) = (ops.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut sweeps = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && sweeps < 1_000_000 {
                crate::engine::sweep_locks(&ops);
                sweeps += 1;
            }
        })
    };
    for _ in 0..300 {
        let lock = OpLock::begin(&ops).unwrap();
        assert!(ops.join(format!("{}.lock", lock.token)).exists());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sweeper.join().unwrap();
}
