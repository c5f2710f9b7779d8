//! Every operation of kleene-zfs and its error paths, on a real pool (`KLEENE_TEST_POOL`).

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::sync::Arc;

use kleene_zfs::{DatasetName, Depth, Properties, SnapshotName, Zfs, ZfsError};

fn props(pairs: &[(&str, &str)]) -> Properties {
    let mut p = Properties::new();
    for (k, v) in pairs {
        p.set(k, *v).unwrap();
    }
    p
}

#[test]
fn create_mounts_and_properties_round_trip() {
    let s = scratch_or_skip!("props");
    let d = s.ds("a");
    s.zfs
        .create(
            &d,
            &props(&[("kleene:id", "0123456789ab"), ("kleene:name", "web app")]),
        )
        .unwrap();
    assert!(s.zfs.exists(&d).unwrap());
    let mp = s.mountpoint(&d);
    fs::write(mp.join("hello"), "world").unwrap();
    assert_eq!(fs::read_to_string(mp.join("hello")).unwrap(), "world");

    let got = s
        .zfs
        .get(&d, &["kleene:id", "kleene:name", "kleene:unset"])
        .unwrap();
    assert_eq!(got.get("kleene:id"), Some("0123456789ab"));
    assert_eq!(got.get("kleene:name"), Some("web app"));
    assert_eq!(got.get("kleene:unset"), None);

    s.zfs
        .set(
            &d,
            &props(&[("kleene:name", "db"), ("kleene:tag", "v1=a,b")]),
        )
        .unwrap();
    assert_eq!(
        s.zfs.property(&d, "kleene:name").unwrap().as_deref(),
        Some("db")
    );
    assert_eq!(
        s.zfs.property(&d, "kleene:tag").unwrap().as_deref(),
        Some("v1=a,b")
    );
    s.zfs.inherit(&d, "kleene:tag").unwrap();
    assert_eq!(s.zfs.property(&d, "kleene:tag").unwrap(), None);

    // Numbers come back exact (parseable), not "112K".
    let used = s.zfs.property(&d, "used").unwrap().unwrap();
    assert!(used.parse::<u64>().is_ok(), "used = {used}");

    // Snapshots carry user properties too.
    let snap = d.snapshot("s").unwrap();
    s.zfs
        .snapshot(&snap, &props(&[("kleene:step", "3")]))
        .unwrap();
    assert_eq!(
        s.zfs.property(&snap, "kleene:step").unwrap().as_deref(),
        Some("3")
    );
}

#[test]
fn create_errors_name_the_dataset() {
    let s = scratch_or_skip!("create-err");
    let d = s.ds("a");
    s.zfs.create(&d, &Properties::new()).unwrap();
    match s.zfs.create(&d, &Properties::new()) {
        Err(ZfsError::AlreadyExists { name }) => assert_eq!(name, d.as_str()),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let orphan = s.ds("missing").child("x").unwrap();
    let err = s.zfs.create(&orphan, &Properties::new()).unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains(s.root.as_str()), "{err}");
    // create_all makes the parents, and is content with what exists.
    s.zfs.create_all(&orphan, &Properties::new()).unwrap();
    assert!(s.zfs.exists(&orphan).unwrap());
    s.zfs.create_all(&orphan, &Properties::new()).unwrap();
}

#[test]
fn hostile_names_never_reach_zfs() {
    for bad in [
        "pool/x; rm -rf /",
        "-o foo",
        "pool/-o",
        "pool/$(touch /tmp/owned)",
    ] {
        assert!(matches!(
            DatasetName::new(bad),
            Err(ZfsError::InvalidName { .. })
        ));
    }
    assert!(Properties::new().with("-o", "x").is_err());
    assert!(Properties::new().with("kleene:x", "a\nb").is_err());
}

#[test]
fn snapshots_list_oldest_first() {
    let s = scratch_or_skip!("snaps");
    let d = s.ds("a");
    s.zfs.create(&d, &Properties::new()).unwrap();
    let names = ["zz", "aa", "mm", "bb"];
    for n in names {
        s.zfs
            .snapshot(&d.snapshot(n).unwrap(), &Properties::new())
            .unwrap();
    }
    let child = d.child("c").unwrap();
    s.zfs.create(&child, &Properties::new()).unwrap();
    s.zfs
        .snapshot(&child.snapshot("cc").unwrap(), &Properties::new())
        .unwrap();

    let listed = s.zfs.list_snapshots(&d, &["creation"]).unwrap();
    let got: Vec<&str> = listed.iter().map(|x| x.name.snapshot()).collect();
    assert_eq!(got, names);
    assert!(listed.windows(2).all(|w| w[0].createtxg < w[1].createtxg));
    assert!(listed[0].properties.get("creation").is_some());

    let missing = s.ds("nope").snapshot("s").unwrap();
    assert!(s
        .zfs
        .snapshot(&missing, &Properties::new())
        .unwrap_err()
        .is_not_found());
    let err = s
        .zfs
        .snapshot(&d.snapshot("zz").unwrap(), &Properties::new())
        .unwrap_err();
    assert!(matches!(err, ZfsError::AlreadyExists { .. }), "{err:?}");
}

#[test]
fn several_snapshots_are_atomic() {
    let s = scratch_or_skip!("atomic");
    let a = s.ds("a");
    let b = a.child("b").unwrap();
    s.zfs.create(&a, &Properties::new()).unwrap();
    s.zfs.create(&b, &Properties::new()).unwrap();
    let family = [a.snapshot("s").unwrap(), b.snapshot("s").unwrap()];
    s.zfs.snapshot_many(&family, &Properties::new()).unwrap();
    for snap in &family {
        assert!(s.zfs.exists(snap).unwrap(), "{snap}");
    }

    // Unrelated datasets: OpenZFS takes them in one transaction; zfs-fuse cannot, and
    // then takes none. Either way: all or none.
    let c = s.ds("c");
    s.zfs.create(&c, &Properties::new()).unwrap();
    let unrelated = [a.snapshot("t").unwrap(), c.snapshot("t").unwrap()];
    let result = s.zfs.snapshot_many(&unrelated, &Properties::new());
    let taken: Vec<bool> = unrelated.iter().map(|x| s.zfs.exists(x).unwrap()).collect();
    match result {
        Ok(()) => assert_eq!(taken, [true, true]),
        Err(ZfsError::Unsupported { .. }) => assert_eq!(taken, [false, false]),
        Err(e) => panic!("{e}"),
    }

    // One that fails takes none.
    let partly_missing = [
        a.snapshot("u").unwrap(),
        s.ds("nope").snapshot("u").unwrap(),
    ];
    assert!(s
        .zfs
        .snapshot_many(&partly_missing, &Properties::new())
        .is_err());
    assert!(!s.zfs.exists(&a.snapshot("u").unwrap()).unwrap());
}

#[test]
fn clone_origin_clones_and_dependents() {
    let s = scratch_or_skip!("clone");
    let img = s.ds("image");
    s.zfs.create(&img, &Properties::new()).unwrap();
    fs::write(s.mountpoint(&img).join("f"), "from image").unwrap();
    let snap = img.snapshot("image").unwrap();
    s.zfs.snapshot(&snap, &Properties::new()).unwrap();

    let c1 = s.ds("c1");
    let c2 = s.ds("c2");
    s.zfs
        .clone_snapshot(&snap, &c1, &props(&[("kleene:id", "c1")]))
        .unwrap();
    s.zfs
        .clone_snapshot(&snap, &c2, &Properties::new())
        .unwrap();
    assert_eq!(
        fs::read_to_string(s.mountpoint(&c1).join("f")).unwrap(),
        "from image"
    );
    assert_eq!(
        s.zfs.property(&c1, "kleene:id").unwrap().as_deref(),
        Some("c1")
    );
    assert_eq!(s.zfs.origin(&c1).unwrap().as_ref(), Some(&snap));
    assert_eq!(s.zfs.origin(&img).unwrap(), None);
    let mut clones = s.zfs.clones(&snap).unwrap();
    clones.sort();
    assert_eq!(clones, vec![c1.clone(), c2.clone()]);

    // Destroying the snapshot is refused, naming the clones.
    match s.zfs.destroy_snapshot(&snap) {
        Err(ZfsError::HasDependents {
            name,
            mut dependents,
        }) => {
            assert_eq!(name, snap.as_str());
            dependents.sort();
            assert_eq!(dependents, vec![c1.to_string(), c2.to_string()]);
        }
        other => panic!("expected HasDependents, got {other:?}"),
    }

    // Cloning a missing snapshot is "not found", naming the snapshot.
    let missing = img.snapshot("nope").unwrap();
    match s
        .zfs
        .clone_snapshot(&missing, &s.ds("c3"), &Properties::new())
    {
        Err(ZfsError::NotFound { name }) => assert_eq!(name, missing.as_str()),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Into a missing parent: "not found", naming the target.
    let orphan = s.ds("nope").child("c").unwrap();
    match s.zfs.clone_snapshot(&snap, &orphan, &Properties::new()) {
        Err(ZfsError::NotFound { name }) => assert_eq!(name, orphan.as_str()),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Onto a taken name: "already exists".
    let err = s
        .zfs
        .clone_snapshot(&snap, &c1, &Properties::new())
        .unwrap_err();
    assert!(matches!(err, ZfsError::AlreadyExists { .. }), "{err:?}");

    // Once the clones go (right after cloning: zfs-fuse answers "busy" for a moment, which
    // is retried), the snapshot can go.
    s.zfs.destroy(&c1, false).unwrap();
    s.zfs.destroy(&c2, false).unwrap();
    assert!(s.zfs.clones(&snap).unwrap().is_empty());
    s.zfs.destroy_snapshot(&snap).unwrap();
    assert!(!s.zfs.exists(&snap).unwrap());
    assert!(s.zfs.clones(&snap).unwrap_err().is_not_found());
}

#[test]
fn destroy_rules() {
    let s = scratch_or_skip!("destroy");
    let a = s.ds("a");
    let b = a.child("b").unwrap();
    s.zfs.create(&a, &Properties::new()).unwrap();
    s.zfs.create(&b, &Properties::new()).unwrap();
    s.zfs
        .snapshot(&a.snapshot("s").unwrap(), &Properties::new())
        .unwrap();
    match s.zfs.destroy(&a, false) {
        Err(ZfsError::HasDependents { name, dependents }) => {
            assert_eq!(name, a.as_str());
            assert!(!dependents.is_empty());
        }
        other => panic!("expected HasDependents, got {other:?}"),
    }
    s.zfs.destroy(&a, true).unwrap();
    assert!(!s.zfs.exists(&a).unwrap());
    assert!(!s.zfs.exists(&b).unwrap());
    match s.zfs.destroy(&a, false) {
        Err(ZfsError::NotFound { name }) => assert_eq!(name, a.as_str()),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(s
        .zfs
        .destroy_snapshot(&a.snapshot("s").unwrap())
        .unwrap_err()
        .is_not_found());
}

#[test]
fn rename_dataset_and_snapshot() {
    let s = scratch_or_skip!("rename");
    let a = s.ds("a");
    s.zfs.create(&a, &Properties::new()).unwrap();
    fs::write(s.mountpoint(&a).join("f"), "x").unwrap();
    s.zfs
        .snapshot(&a.snapshot("s1").unwrap(), &Properties::new())
        .unwrap();
    let b = s.ds("b");
    s.zfs.rename(&a, &b).unwrap();
    assert!(!s.zfs.exists(&a).unwrap());
    assert!(s.zfs.exists(&b.snapshot("s1").unwrap()).unwrap());
    // Mounted at its new place, as OpenZFS leaves it, with its files.
    assert_eq!(fs::read_to_string(s.mountpoint(&b).join("f")).unwrap(), "x");
    s.zfs
        .rename_snapshot(&b.snapshot("s1").unwrap(), &b.snapshot("s2").unwrap())
        .unwrap();
    assert!(s.zfs.exists(&b.snapshot("s2").unwrap()).unwrap());
    let elsewhere = s.ds("c").snapshot("s2").unwrap();
    assert!(s
        .zfs
        .rename_snapshot(&b.snapshot("s2").unwrap(), &elsewhere)
        .is_err());
    assert!(s.zfs.rename(&a, &s.ds("d")).unwrap_err().is_not_found());
    s.zfs.create(&a, &Properties::new()).unwrap();
    let err = s.zfs.rename(&a, &b).unwrap_err();
    assert!(matches!(err, ZfsError::AlreadyExists { .. }), "{err:?}");
}

#[test]
fn rollback_restores_content() {
    let s = scratch_or_skip!("rollback");
    let a = s.ds("a");
    s.zfs.create(&a, &Properties::new()).unwrap();
    let mp = s.mountpoint(&a);
    fs::write(mp.join("f"), "one").unwrap();
    s.zfs
        .snapshot(&a.snapshot("one").unwrap(), &Properties::new())
        .unwrap();
    fs::write(mp.join("f"), "two").unwrap();
    s.zfs
        .snapshot(&a.snapshot("two").unwrap(), &Properties::new())
        .unwrap();
    fs::write(mp.join("f"), "three").unwrap();

    s.zfs.rollback(&a.snapshot("two").unwrap(), false).unwrap();
    assert_eq!(
        fs::read_to_string(s.mountpoint(&a).join("f")).unwrap(),
        "two"
    );
    // Not the latest snapshot: refused unless later ones may go.
    assert!(s.zfs.rollback(&a.snapshot("one").unwrap(), false).is_err());
    s.zfs.rollback(&a.snapshot("one").unwrap(), true).unwrap();
    assert_eq!(
        fs::read_to_string(s.mountpoint(&a).join("f")).unwrap(),
        "one"
    );
    assert!(!s.zfs.exists(&a.snapshot("two").unwrap()).unwrap());
}

#[test]
fn promote_swaps_origin() {
    let s = scratch_or_skip!("promote");
    let a = s.ds("a");
    s.zfs.create(&a, &Properties::new()).unwrap();
    let snap = a.snapshot("s").unwrap();
    s.zfs.snapshot(&snap, &Properties::new()).unwrap();
    let c = s.ds("c");
    s.zfs.clone_snapshot(&snap, &c, &Properties::new()).unwrap();
    s.zfs.promote(&c).unwrap();
    assert_eq!(s.zfs.origin(&c).unwrap(), None);
    assert_eq!(s.zfs.origin(&a).unwrap(), Some(c.snapshot("s").unwrap()));
    assert!(s.zfs.promote(&s.ds("nope")).unwrap_err().is_not_found());
}

#[test]
fn send_receive_full_and_incremental() {
    let s = scratch_or_skip!("sendrecv");
    let a = s.ds("a");
    s.zfs.create(&a, &Properties::new()).unwrap();
    fs::write(s.mountpoint(&a).join("f"), "v1").unwrap();
    let s1 = a.snapshot("s1").unwrap();
    s.zfs.snapshot(&s1, &Properties::new()).unwrap();

    let mut stream = Vec::new();
    s.zfs.send(&s1, None, &mut stream).unwrap();
    assert!(stream.len() > 100);
    let b = s.ds("b");
    s.zfs.receive(&b, &mut stream.as_slice(), false).unwrap();
    assert_eq!(
        fs::read_to_string(s.mountpoint(&b).join("f")).unwrap(),
        "v1"
    );
    assert!(s.zfs.exists(&b.snapshot("s1").unwrap()).unwrap());
    assert_eq!(s.zfs.origin(&b).unwrap(), None, "a copy is no clone");

    fs::write(s.mountpoint(&a).join("f"), "v2").unwrap();
    let s2 = a.snapshot("s2").unwrap();
    s.zfs.snapshot(&s2, &Properties::new()).unwrap();
    let mut inc = Vec::new();
    s.zfs.send(&s2, Some(&s1), &mut inc).unwrap();
    s.zfs.receive(&b, &mut inc.as_slice(), true).unwrap();
    assert_eq!(
        fs::read_to_string(s.mountpoint(&b).join("f")).unwrap(),
        "v2"
    );

    // Garbage is refused, and a missing snapshot is "not found".
    let err = s
        .zfs
        .receive(&s.ds("g"), &mut &b"not a stream"[..], false)
        .unwrap_err();
    assert!(!s.zfs.exists(&s.ds("g")).unwrap(), "{err}");
    let mut sink = Vec::new();
    let err = s
        .zfs
        .send(&a.snapshot("nope").unwrap(), None, &mut sink)
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[test]
fn copy_streams_one_dataset_into_another() {
    let s = scratch_or_skip!("copy");
    let a = s.ds("a");
    s.zfs.create(&a, &Properties::new()).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(s.mountpoint(&a).join("big"), &data).unwrap();
    let s1 = a.snapshot("s1").unwrap();
    s.zfs.snapshot(&s1, &Properties::new()).unwrap();

    let b = s.ds("b");
    s.zfs.copy(&s1, &b).unwrap();
    assert_eq!(fs::read(s.mountpoint(&b).join("big")).unwrap(), data);

    fs::write(s.mountpoint(&a).join("more"), "m").unwrap();
    let s2 = a.snapshot("s2").unwrap();
    s.zfs.snapshot(&s2, &Properties::new()).unwrap();
    s.zfs.copy_incremental(&s1, &s2, &b, true).unwrap();
    assert_eq!(
        fs::read_to_string(s.mountpoint(&b).join("more")).unwrap(),
        "m"
    );

    let err = s
        .zfs
        .copy(&a.snapshot("nope").unwrap(), &s.ds("c"))
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(!s.zfs.exists(&s.ds("c")).unwrap());
    let err = s.zfs.copy(&s1, &b).unwrap_err();
    assert!(
        matches!(
            err,
            ZfsError::AlreadyExists { .. } | ZfsError::CommandFailed { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn list_datasets_by_depth() {
    let s = scratch_or_skip!("list");
    let a = s.ds("a");
    let b = a.child("b").unwrap();
    s.zfs.create(&a, &props(&[("kleene:k", "a")])).unwrap();
    s.zfs.create(&b, &Properties::new()).unwrap();
    s.zfs
        .snapshot(&a.snapshot("s").unwrap(), &Properties::new())
        .unwrap();

    let names = |depth| -> Vec<String> {
        s.zfs
            .list_datasets(&s.root, depth, &[])
            .unwrap()
            .into_iter()
            .map(|d| d.name.to_string())
            .collect()
    };
    assert_eq!(names(Depth::This), vec![s.root.to_string()]);
    assert_eq!(
        names(Depth::Children),
        vec![s.root.to_string(), a.to_string()]
    );
    assert_eq!(
        names(Depth::All),
        vec![s.root.to_string(), a.to_string(), b.to_string()]
    );
    let with = s
        .zfs
        .list_datasets(&a, Depth::This, &["kleene:k", "used"])
        .unwrap();
    assert_eq!(with[0].properties.get("kleene:k"), Some("a"));
    assert!(with[0].properties.get("used").is_some());
    assert!(s
        .zfs
        .list_datasets(&s.ds("nope"), Depth::All, &[])
        .unwrap_err()
        .is_not_found());
}

#[test]
fn mount_unmount_and_mountpoint() {
    let s = scratch_or_skip!("mount");
    let a = s.ds("a");
    s.zfs.create(&a, &Properties::new()).unwrap();
    let mp = s.mountpoint(&a);
    assert!(mp.is_absolute());
    fs::write(mp.join("f"), "x").unwrap();
    s.zfs.unmount(&a, false).unwrap();
    assert_eq!(s.zfs.mountpoint(&a).unwrap(), None);
    assert!(!mp.join("f").exists());
    s.zfs.mount(&a).unwrap();
    assert_eq!(fs::read_to_string(s.mountpoint(&a).join("f")).unwrap(), "x");
    assert!(s.zfs.mount(&s.ds("nope")).unwrap_err().is_not_found());
}

#[test]
fn eight_threads_clone_one_snapshot_at_once() {
    let s = scratch_or_skip!("parallel");
    let img = s.ds("image");
    s.zfs.create(&img, &Properties::new()).unwrap();
    fs::write(s.mountpoint(&img).join("f"), "shared").unwrap();
    let snap = img.snapshot("image").unwrap();
    s.zfs.snapshot(&snap, &Properties::new()).unwrap();

    let zfs = Arc::new(Zfs::open());
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let zfs = Arc::clone(&zfs);
            let snap: SnapshotName = snap.clone();
            let target = s.ds(&format!("c{i}"));
            std::thread::spawn(move || {
                zfs.clone_snapshot(&snap, &target, &Properties::new())
                    .map(|()| target)
            })
        })
        .collect();
    let mut made = Vec::new();
    for h in handles {
        made.push(h.join().unwrap().unwrap());
    }
    for target in &made {
        assert_eq!(
            fs::read_to_string(s.mountpoint(target).join("f")).unwrap(),
            "shared"
        );
    }
    assert_eq!(s.zfs.clones(&snap).unwrap().len(), 8);
    for target in &made {
        s.zfs.destroy(target, false).unwrap();
    }
}
