//! The memory backend on the scenarios `tests/zfs_ops.rs` runs on a real pool, and on what
//! only a directory backend can get wrong (copies, mounts inside mounts).

use std::fs;
use std::sync::Arc;

use super::*;
use crate::Zfs;

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

struct Scratch {
    zfs: Zfs,
    root: DatasetName,
    _dir: tempfile::TempDir,
}

fn scratch() -> std::result::Result<Scratch, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let zfs = Zfs::memory(dir.path(), "tank")?;
    let root = DatasetName::new("tank/t")?;
    zfs.create(&root, &Properties::new())?;
    Ok(Scratch {
        zfs,
        root,
        _dir: dir,
    })
}

impl Scratch {
    fn ds(&self, name: &str) -> DatasetName {
        self.root.child(name).expect("a valid test name")
    }

    fn mp(&self, d: &DatasetName) -> PathBuf {
        self.zfs
            .mountpoint(d)
            .expect("mountpoint answers")
            .expect("mounted")
    }

    fn make(&self, name: &str) -> DatasetName {
        let d = self.ds(name);
        self.zfs
            .create(&d, &Properties::new())
            .expect("create works");
        d
    }
}

fn props(pairs: &[(&str, &str)]) -> Properties {
    let mut p = Properties::new();
    for (k, v) in pairs {
        p.set(k, *v).expect("a valid property");
    }
    p
}

#[test]
fn a_pool_is_mounted_below_the_base_directory() -> TestResult {
    let dir = tempfile::tempdir()?;
    let backend = MemoryBackend::new(dir.path()).with_pool("tank")?;
    assert!(matches!(
        backend.add_pool("tank"),
        Err(ZfsError::AlreadyExists { .. })
    ));
    assert!(backend.add_pool("tank/x").is_err());
    let zfs = Zfs::with_backend(Box::new(backend), "memory");
    assert_eq!(zfs.backend_name(), "memory");
    let tank = DatasetName::new("tank")?;
    assert_eq!(zfs.mountpoint(&tank)?, Some(dir.path().join("tank")));
    assert!(dir.path().join("tank").is_dir());
    // No pool "other": creating in it is "not found", as zfs(8) says "no such pool".
    let err = zfs
        .create(&DatasetName::new("other/x")?, &Properties::new())
        .expect_err("no such pool");
    assert!(err.is_not_found(), "{err}");
    assert!(matches!(
        zfs.create(&tank, &Properties::new()),
        Err(ZfsError::AlreadyExists { .. })
    ));
    assert!(matches!(
        zfs.destroy(&tank, true),
        Err(ZfsError::CommandFailed { .. })
    ));
    // A second backend on the same directory finds the first one's files in its way.
    let again = MemoryBackend::new(dir.path());
    fs::write(dir.path().join("tank").join("left"), "behind")?;
    let err = again.add_pool("tank").expect_err("not empty");
    assert!(err.to_string().contains("not empty"), "{err}");
    assert!(!Backend::exists(&again, "tank")?, "no half-made pool");
    Ok(())
}

#[test]
fn create_mounts_and_properties_round_trip() -> TestResult {
    let s = scratch()?;
    let d = s.ds("a");
    s.zfs.create(
        &d,
        &props(&[("kleene:id", "0123456789ab"), ("kleene:name", "web app")]),
    )?;
    assert!(s.zfs.exists(&d)?);
    let mp = s.mp(&d);
    assert_eq!(mp, s.mp(&s.root).join("a"));
    fs::write(mp.join("hello"), "world")?;

    let got = s
        .zfs
        .get(&d, &["kleene:id", "kleene:name", "kleene:unset"])?;
    assert_eq!(got.get("kleene:id"), Some("0123456789ab"));
    assert_eq!(got.get("kleene:name"), Some("web app"));
    assert_eq!(got.get("kleene:unset"), None);

    s.zfs.set(
        &d,
        &props(&[("kleene:name", "db"), ("kleene:tag", "v1=a,b")]),
    )?;
    assert_eq!(s.zfs.property(&d, "kleene:name")?.as_deref(), Some("db"));
    s.zfs.inherit(&d, "kleene:tag")?;
    assert_eq!(s.zfs.property(&d, "kleene:tag")?, None);

    let used = s.zfs.property(&d, "used")?.expect("used has a value");
    assert!(used.parse::<u64>()? >= 5, "used = {used}");
    assert_eq!(s.zfs.property(&d, "type")?.as_deref(), Some("filesystem"));
    assert_eq!(s.zfs.property(&d, "canmount")?.as_deref(), Some("on"));
    assert_eq!(s.zfs.property(&d, "compression")?.as_deref(), Some("off"));

    // User properties are inherited, by children and by snapshots, as in ZFS.
    let child = d.child("c")?;
    s.zfs.create(&child, &Properties::new())?;
    assert_eq!(
        s.zfs.property(&child, "kleene:id")?.as_deref(),
        Some("0123456789ab")
    );
    let snap = d.snapshot("s")?;
    s.zfs.snapshot(&snap, &props(&[("kleene:step", "3")]))?;
    assert_eq!(s.zfs.property(&snap, "kleene:step")?.as_deref(), Some("3"));
    assert_eq!(s.zfs.property(&snap, "kleene:name")?.as_deref(), Some("db"));
    assert_eq!(s.zfs.property(&snap, "mountpoint")?, None);
    assert_eq!(s.zfs.property(&snap, "type")?.as_deref(), Some("snapshot"));
    s.zfs.set(&snap, &props(&[("kleene:x", "1")]))?;
    assert_eq!(s.zfs.property(&snap, "kleene:x")?.as_deref(), Some("1"));

    // What zfs(8) refuses.
    for (bad, what) in [
        (props(&[("used", "5")]), "is readonly"),
        (props(&[("frobnicate", "on")]), "invalid property"),
    ] {
        let err = s.zfs.set(&d, &bad).expect_err("refused");
        assert!(matches!(err, ZfsError::CommandFailed { .. }), "{err:?}");
        assert!(err.to_string().contains(what), "{err}");
    }
    let err = s
        .zfs
        .set(&snap, &props(&[("canmount", "off")]))
        .expect_err("not on snapshots");
    assert!(err.to_string().contains("snapshots"), "{err}");
    let err = s.zfs.get(&d, &["frobnicate"]).expect_err("unknown");
    assert!(err.to_string().contains("invalid property"), "{err}");
    let err = s.zfs.get(&s.ds("nope"), &["used"]).expect_err("not there");
    assert!(err.is_not_found(), "{err}");
    Ok(())
}

#[test]
fn create_errors_name_the_dataset() -> TestResult {
    let s = scratch()?;
    let d = s.make("a");
    match s.zfs.create(&d, &Properties::new()) {
        Err(ZfsError::AlreadyExists { name }) => assert_eq!(name, d.as_str()),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let orphan = s.ds("missing").child("x")?;
    let err = s
        .zfs
        .create(&orphan, &Properties::new())
        .expect_err("no parent");
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains(s.root.as_str()), "{err}");
    s.zfs.create_all(&orphan, &Properties::new())?;
    assert!(s.zfs.exists(&orphan)?);
    s.zfs.create_all(&orphan, &Properties::new())?;
    let vol = s
        .zfs
        .create(&s.ds("v"), &props(&[("volsize", "1048576")]))
        .expect_err("no volumes");
    assert!(matches!(vol, ZfsError::Unsupported { .. }), "{vol:?}");
    // Mountpoints stay below the base directory.
    let err = s
        .zfs
        .create(&s.ds("m"), &props(&[("mountpoint", "/etc")]))
        .expect_err("outside");
    assert!(matches!(err, ZfsError::InvalidProperty { .. }), "{err:?}");
    assert!(!s.zfs.exists(&s.ds("m"))?);
    Ok(())
}

#[test]
fn snapshots_list_oldest_first() -> TestResult {
    let s = scratch()?;
    let d = s.make("a");
    let names = ["zz", "aa", "mm", "bb"];
    for n in names {
        s.zfs.snapshot(&d.snapshot(n)?, &Properties::new())?;
    }
    let child = d.child("c")?;
    s.zfs.create(&child, &Properties::new())?;
    s.zfs.snapshot(&child.snapshot("cc")?, &Properties::new())?;

    let listed = s.zfs.list_snapshots(&d, &["creation"])?;
    let got: Vec<&str> = listed.iter().map(|x| x.name.snapshot()).collect();
    assert_eq!(got, names);
    assert!(listed.windows(2).all(|w| w[0].createtxg < w[1].createtxg));
    assert!(listed[0].properties.get("creation").is_some());

    let missing = s.ds("nope").snapshot("s")?;
    match s.zfs.snapshot(&missing, &Properties::new()) {
        Err(ZfsError::NotFound { name }) => assert_eq!(name, s.ds("nope").as_str()),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let err = s
        .zfs
        .snapshot(&d.snapshot("zz")?, &Properties::new())
        .expect_err("taken");
    assert!(matches!(err, ZfsError::AlreadyExists { .. }), "{err:?}");
    Ok(())
}

#[test]
fn several_snapshots_are_atomic() -> TestResult {
    let s = scratch()?;
    let a = s.make("a");
    let c = s.make("c");
    let unrelated = [a.snapshot("t")?, c.snapshot("t")?];
    s.zfs.snapshot_many(&unrelated, &Properties::new())?;
    let txgs: Vec<String> = unrelated
        .iter()
        .map(|x| s.zfs.property(x, "createtxg"))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(txgs.len(), 2);
    assert_eq!(txgs[0], txgs[1], "one transaction");

    let partly_missing = [a.snapshot("u")?, s.ds("nope").snapshot("u")?];
    assert!(s
        .zfs
        .snapshot_many(&partly_missing, &Properties::new())
        .is_err());
    assert!(!s.zfs.exists(&a.snapshot("u")?)?);
    let twice = [a.snapshot("v")?, a.snapshot("v")?];
    assert!(s.zfs.snapshot_many(&twice, &Properties::new()).is_err());
    assert!(!s.zfs.exists(&a.snapshot("v")?)?);
    Ok(())
}

#[test]
fn a_snapshot_is_a_copy_of_that_moment() -> TestResult {
    let s = scratch()?;
    let a = s.make("a");
    let mp = s.mp(&a);
    fs::create_dir_all(mp.join("etc"))?;
    fs::write(mp.join("etc/conf"), "one")?;
    std::os::unix::fs::symlink("etc/conf", mp.join("link"))?;
    let snap = a.snapshot("one")?;
    s.zfs.snapshot(&snap, &Properties::new())?;
    fs::write(mp.join("etc/conf"), "two")?;
    fs::write(mp.join("new"), "new")?;

    let c = s.ds("c");
    s.zfs.clone_snapshot(&snap, &c, &Properties::new())?;
    let cm = s.mp(&c);
    assert_eq!(fs::read_to_string(cm.join("etc/conf"))?, "one");
    assert_eq!(fs::read_to_string(cm.join("link"))?, "one");
    assert!(!cm.join("new").exists());
    // The clone is its own copy.
    fs::write(cm.join("etc/conf"), "clone")?;
    assert_eq!(fs::read_to_string(mp.join("etc/conf"))?, "two");
    let c2 = s.ds("c2");
    s.zfs.clone_snapshot(&snap, &c2, &Properties::new())?;
    assert_eq!(fs::read_to_string(s.mp(&c2).join("etc/conf"))?, "one");
    Ok(())
}

#[test]
fn clone_origin_clones_and_dependents() -> TestResult {
    let s = scratch()?;
    let img = s.make("image");
    fs::write(s.mp(&img).join("f"), "from image")?;
    let snap = img.snapshot("image")?;
    s.zfs.snapshot(&snap, &Properties::new())?;

    let c1 = s.ds("c1");
    let c2 = s.ds("c2");
    s.zfs
        .clone_snapshot(&snap, &c1, &props(&[("kleene:id", "c1")]))?;
    s.zfs.clone_snapshot(&snap, &c2, &Properties::new())?;
    assert_eq!(fs::read_to_string(s.mp(&c1).join("f"))?, "from image");
    assert_eq!(s.zfs.property(&c1, "kleene:id")?.as_deref(), Some("c1"));
    assert_eq!(s.zfs.origin(&c1)?.as_ref(), Some(&snap));
    assert_eq!(s.zfs.origin(&img)?, None);
    assert_eq!(s.zfs.clones(&snap)?, vec![c1.clone(), c2.clone()]);
    assert_eq!(
        s.zfs.property(&snap, "clones")?.as_deref(),
        Some(format!("{c1},{c2}").as_str())
    );

    match s.zfs.destroy_snapshot(&snap) {
        Err(e @ ZfsError::HasDependents { .. }) => {
            assert_eq!(
                e.to_string(),
                format!("dataset {snap} has dependents: {c1}, {c2}")
            );
        }
        other => panic!("expected HasDependents, got {other:?}"),
    }
    let missing = img.snapshot("nope")?;
    match s
        .zfs
        .clone_snapshot(&missing, &s.ds("c3"), &Properties::new())
    {
        Err(ZfsError::NotFound { name }) => assert_eq!(name, missing.as_str()),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let err = s
        .zfs
        .clone_snapshot(&snap, &c1, &Properties::new())
        .expect_err("taken");
    assert!(matches!(err, ZfsError::AlreadyExists { .. }), "{err:?}");
    let err = s
        .zfs
        .clone_snapshot(&snap, &s.ds("nope").child("c")?, &Properties::new())
        .expect_err("no parent");
    assert!(err.is_not_found(), "{err:?}");

    s.zfs.destroy(&c1, false)?;
    s.zfs.destroy(&c2, false)?;
    assert!(s.zfs.clones(&snap)?.is_empty());
    s.zfs.destroy_snapshot(&snap)?;
    assert!(!s.zfs.exists(&snap)?);
    assert!(s.zfs.clones(&snap).expect_err("gone").is_not_found());
    Ok(())
}

#[test]
fn destroy_rules() -> TestResult {
    let s = scratch()?;
    let a = s.make("a");
    let b = a.child("b")?;
    s.zfs.create(&b, &Properties::new())?;
    s.zfs.snapshot(&a.snapshot("s")?, &Properties::new())?;
    let a_mp = s.mp(&a);
    match s.zfs.destroy(&a, false) {
        Err(ZfsError::HasDependents { name, dependents }) => {
            assert_eq!(name, a.as_str());
            assert_eq!(dependents, vec![format!("{a}@s"), b.to_string()]);
        }
        other => panic!("expected HasDependents, got {other:?}"),
    }
    // A clone elsewhere of a snapshot below stops even a recursive destroy; a clone
    // inside the tree does not.
    let inside = b.child("inner")?;
    s.zfs
        .clone_snapshot(&a.snapshot("s")?, &inside, &Properties::new())?;
    let outside = s.ds("outside");
    s.zfs
        .clone_snapshot(&a.snapshot("s")?, &outside, &Properties::new())?;
    match s.zfs.destroy(&a, true) {
        Err(ZfsError::HasDependents { name, dependents }) => {
            assert_eq!(name, a.as_str());
            assert_eq!(dependents, vec![outside.to_string()]);
        }
        other => panic!("expected HasDependents, got {other:?}"),
    }
    s.zfs.destroy(&outside, false)?;
    s.zfs.destroy(&a, true)?;
    assert!(!s.zfs.exists(&a)?);
    assert!(!s.zfs.exists(&b)?);
    assert!(!a_mp.exists(), "unmounted and gone");
    match s.zfs.destroy(&a, false) {
        Err(ZfsError::NotFound { name }) => assert_eq!(name, a.as_str()),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(s
        .zfs
        .destroy_snapshot(&a.snapshot("s")?)
        .expect_err("gone")
        .is_not_found());
    // Nothing is left behind in the backend's store either.
    let store = s._dir.path().join(META_DIR);
    let left: usize = ["fs", "snap"]
        .iter()
        .map(|d| fs::read_dir(store.join(d)).map_or(0, |r| r.count()))
        .sum();
    assert_eq!(left, 0, "files of destroyed datasets");
    Ok(())
}

#[test]
fn rename_dataset_and_snapshot() -> TestResult {
    let s = scratch()?;
    let a = s.make("a");
    let child = a.child("c")?;
    s.zfs.create(&child, &Properties::new())?;
    fs::write(s.mp(&a).join("f"), "x")?;
    fs::write(s.mp(&child).join("g"), "y")?;
    let s1 = a.snapshot("s1")?;
    s.zfs.snapshot(&s1, &Properties::new())?;
    let clone = s.ds("k");
    s.zfs.clone_snapshot(&s1, &clone, &Properties::new())?;

    let b = s.ds("b");
    s.zfs.rename(&a, &b)?;
    assert!(!s.zfs.exists(&a)?);
    assert!(s.zfs.exists(&b.snapshot("s1")?)?);
    assert_eq!(fs::read_to_string(s.mp(&b).join("f"))?, "x");
    assert_eq!(s.mp(&b), s.mp(&s.root).join("b"));
    let moved_child = b.child("c")?;
    assert_eq!(fs::read_to_string(s.mp(&moved_child).join("g"))?, "y");
    assert!(!s.mp(&s.root).join("a").exists());
    assert_eq!(s.zfs.origin(&clone)?, Some(b.snapshot("s1")?));

    s.zfs
        .rename_snapshot(&b.snapshot("s1")?, &b.snapshot("s2")?)?;
    assert!(s.zfs.exists(&b.snapshot("s2")?)?);
    assert_eq!(s.zfs.origin(&clone)?, Some(b.snapshot("s2")?));
    let elsewhere = s.ds("c").snapshot("s2")?;
    assert!(s
        .zfs
        .rename_snapshot(&b.snapshot("s2")?, &elsewhere)
        .is_err());
    assert!(s
        .zfs
        .rename(&a, &s.ds("d"))
        .expect_err("gone")
        .is_not_found());
    s.zfs.create(&a, &Properties::new())?;
    match s.zfs.rename(&a, &b) {
        Err(ZfsError::AlreadyExists { name }) => assert_eq!(name, a.as_str()),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let err = s
        .zfs
        .rename(&b, &b.child("x")?.child("y")?)
        .expect_err("into itself");
    assert!(matches!(err, ZfsError::CommandFailed { .. }), "{err:?}");
    Ok(())
}

#[test]
fn rollback_restores_content() -> TestResult {
    let s = scratch()?;
    let a = s.make("a");
    let mp = s.mp(&a);
    fs::write(mp.join("f"), "one")?;
    s.zfs.snapshot(&a.snapshot("one")?, &Properties::new())?;
    fs::write(mp.join("f"), "two")?;
    s.zfs.snapshot(&a.snapshot("two")?, &Properties::new())?;
    fs::write(mp.join("f"), "three")?;
    fs::write(mp.join("g"), "extra")?;

    s.zfs.rollback(&a.snapshot("two")?, false)?;
    assert_eq!(fs::read_to_string(mp.join("f"))?, "two");
    assert!(!mp.join("g").exists());
    let err = s
        .zfs
        .rollback(&a.snapshot("one")?, false)
        .expect_err("not the latest");
    assert!(err.to_string().contains("more recent snapshots"), "{err}");
    s.zfs.rollback(&a.snapshot("one")?, true)?;
    assert_eq!(fs::read_to_string(mp.join("f"))?, "one");
    assert!(!s.zfs.exists(&a.snapshot("two")?)?);
    assert!(s
        .zfs
        .rollback(&a.snapshot("nope")?, false)
        .expect_err("missing")
        .is_not_found());
    Ok(())
}

#[test]
fn promote_swaps_origin() -> TestResult {
    let s = scratch()?;
    let a = s.make("a");
    fs::write(s.mp(&a).join("f"), "a")?;
    let early = a.snapshot("early")?;
    s.zfs.snapshot(&early, &Properties::new())?;
    let snap = a.snapshot("s")?;
    s.zfs.snapshot(&snap, &Properties::new())?;
    let late = a.snapshot("late")?;
    s.zfs.snapshot(&late, &Properties::new())?;
    let c = s.ds("c");
    s.zfs.clone_snapshot(&snap, &c, &Properties::new())?;
    let other = s.ds("other");
    s.zfs.clone_snapshot(&early, &other, &Properties::new())?;

    s.zfs.promote(&c)?;
    assert_eq!(s.zfs.origin(&c)?, None);
    assert_eq!(s.zfs.origin(&a)?, Some(c.snapshot("s")?));
    let names = |d: &DatasetName| -> Result<Vec<String>> {
        Ok(s.zfs
            .list_snapshots(d, &[])?
            .into_iter()
            .map(|x| x.name.snapshot().to_string())
            .collect())
    };
    assert_eq!(names(&c)?, ["early", "s"]);
    assert_eq!(names(&a)?, ["late"]);
    assert_eq!(s.zfs.origin(&other)?, Some(c.snapshot("early")?));
    assert_eq!(fs::read_to_string(s.mp(&a).join("f"))?, "a");
    assert!(matches!(
        s.zfs.promote(&a.parent().expect("a parent")),
        Err(ZfsError::CommandFailed { .. })
    ));
    assert!(s
        .zfs
        .promote(&s.ds("nope"))
        .expect_err("gone")
        .is_not_found());
    Ok(())
}

#[test]
fn send_receive_full_and_incremental() -> TestResult {
    let s = scratch()?;
    let a = s.make("a");
    fs::write(s.mp(&a).join("f"), "v1")?;
    let s1 = a.snapshot("s1")?;
    s.zfs.snapshot(&s1, &Properties::new())?;

    let mut stream = Vec::new();
    s.zfs.send(&s1, None, &mut stream)?;
    let b = s.ds("b");
    s.zfs.receive(&b, &mut stream.as_slice(), false)?;
    assert_eq!(fs::read_to_string(s.mp(&b).join("f"))?, "v1");
    assert!(s.zfs.exists(&b.snapshot("s1")?)?);
    assert_eq!(s.zfs.origin(&b)?, None, "a copy is no clone");
    assert_eq!(
        s.zfs.property(&b.snapshot("s1")?, "guid")?,
        s.zfs.property(&s1, "guid")?
    );
    let err = s
        .zfs
        .receive(&b, &mut stream.as_slice(), false)
        .expect_err("exists");
    assert!(err.to_string().contains("must specify -F"), "{err}");

    fs::write(s.mp(&a).join("f"), "v2")?;
    let s2 = a.snapshot("s2")?;
    s.zfs.snapshot(&s2, &Properties::new())?;
    let mut inc = Vec::new();
    s.zfs.send(&s2, Some(&s1), &mut inc)?;
    // The target changed since s1: refused without force, as zfs(8) does.
    fs::write(s.mp(&b).join("local"), "change")?;
    let err = s
        .zfs
        .receive(&b, &mut inc.as_slice(), false)
        .expect_err("modified");
    assert!(err.to_string().contains("has been modified"), "{err}");
    s.zfs.receive(&b, &mut inc.as_slice(), true)?;
    assert_eq!(fs::read_to_string(s.mp(&b).join("f"))?, "v2");
    assert!(!s.mp(&b).join("local").exists());
    // Again: that snapshot is there now.
    assert!(s.zfs.receive(&b, &mut inc.as_slice(), true).is_err());
    // Into a dataset without the base snapshot.
    let err = s
        .zfs
        .receive(&s.make("z"), &mut inc.as_slice(), true)
        .expect_err("no base");
    assert!(err.to_string().contains("does not"), "{err}");

    let err = s
        .zfs
        .receive(&s.ds("g"), &mut &b"not a stream"[..], false)
        .expect_err("garbage");
    assert!(matches!(err, ZfsError::CommandFailed { .. }), "{err:?}");
    assert!(!s.zfs.exists(&s.ds("g"))?);
    let mut sink = Vec::new();
    let err = s
        .zfs
        .send(&a.snapshot("nope")?, None, &mut sink)
        .expect_err("missing");
    assert!(err.is_not_found(), "{err:?}");
    assert!(s.zfs.send(&s1, Some(&s2), &mut sink).is_err(), "backwards");
    Ok(())
}

#[test]
fn copy_streams_one_dataset_into_another() -> TestResult {
    let s = scratch()?;
    let a = s.make("a");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(s.mp(&a).join("big"), &data)?;
    let s1 = a.snapshot("s1")?;
    s.zfs.snapshot(&s1, &Properties::new())?;

    let b = s.ds("b");
    s.zfs.copy(&s1, &b)?;
    assert_eq!(fs::read(s.mp(&b).join("big"))?, data);

    fs::write(s.mp(&a).join("more"), "m")?;
    let s2 = a.snapshot("s2")?;
    s.zfs.snapshot(&s2, &Properties::new())?;
    s.zfs.copy_incremental(&s1, &s2, &b, true)?;
    assert_eq!(fs::read_to_string(s.mp(&b).join("more"))?, "m");

    let err = s
        .zfs
        .copy(&a.snapshot("nope")?, &s.ds("c"))
        .expect_err("missing");
    assert!(err.is_not_found(), "{err:?}");
    assert!(!s.zfs.exists(&s.ds("c"))?);
    let err = s.zfs.copy(&s1, &b).expect_err("exists");
    assert!(
        matches!(
            err,
            ZfsError::AlreadyExists { .. } | ZfsError::CommandFailed { .. }
        ),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn list_datasets_by_depth_in_zfs_order() -> TestResult {
    let s = scratch()?;
    let a = s.ds("a");
    let b = a.child("b")?;
    s.zfs.create(&a, &props(&[("kleene:k", "a")]))?;
    s.zfs.create(&b, &Properties::new())?;
    // zfs(8) sorts by name byte-wise, a dataset's snapshots right after it: "a", "a@s",
    // "a-z", "a/b" (recorded from zfs-fuse).
    let dash = s.make("a-z");
    s.zfs.snapshot(&a.snapshot("s")?, &Properties::new())?;

    let names = |depth| -> Result<Vec<String>> {
        Ok(s.zfs
            .list_datasets(&s.root, depth, &[])?
            .into_iter()
            .map(|d| d.name.to_string())
            .collect())
    };
    assert_eq!(names(Depth::This)?, vec![s.root.to_string()]);
    assert_eq!(
        names(Depth::Children)?,
        vec![s.root.to_string(), a.to_string(), dash.to_string()]
    );
    assert_eq!(
        names(Depth::All)?,
        vec![
            s.root.to_string(),
            a.to_string(),
            dash.to_string(),
            b.to_string()
        ]
    );
    let with = s
        .zfs
        .list_datasets(&a, Depth::This, &["kleene:k", "used"])?;
    assert_eq!(with[0].properties.get("kleene:k"), Some("a"));
    assert!(with[0].properties.get("used").is_some());
    assert!(with[0].properties.get("type").is_none(), "not asked for");

    let raw = s.zfs.backend().list(
        &s.root,
        Depth::All,
        &[Kind::Filesystem, Kind::Snapshot],
        &["type"],
    )?;
    let order: Vec<&str> = raw.iter().map(|e| e.name.as_str()).collect();
    let (r, a_s) = (s.root.to_string(), format!("{a}@s"));
    assert_eq!(
        order,
        vec![
            r.as_str(),
            a.as_str(),
            a_s.as_str(),
            dash.as_str(),
            b.as_str()
        ]
    );
    assert_eq!(raw[2].properties.get("type"), Some("snapshot"));
    assert!(raw[2].properties.get("createtxg").is_some());

    assert!(s
        .zfs
        .list_datasets(&s.ds("nope"), Depth::All, &[])
        .expect_err("missing")
        .is_not_found());
    Ok(())
}

#[test]
fn mount_unmount_and_mountpoint() -> TestResult {
    let s = scratch()?;
    let a = s.make("a");
    let b = a.child("b")?;
    s.zfs.create(&b, &Properties::new())?;
    let mp = s.mp(&a);
    assert!(mp.is_absolute());
    fs::write(mp.join("f"), "x")?;
    fs::write(s.mp(&b).join("g"), "y")?;

    // Unmounting a filesystem unmounts what is mounted inside it, as zfs(8) does.
    s.zfs.unmount(&a, false)?;
    assert_eq!(s.zfs.mountpoint(&a)?, None);
    assert_eq!(s.zfs.mountpoint(&b)?, None);
    assert!(!mp.join("f").exists());
    let err = s.zfs.unmount(&a, false).expect_err("not mounted");
    assert!(err.to_string().contains("not currently mounted"), "{err}");
    s.zfs.mount(&a)?;
    assert_eq!(fs::read_to_string(s.mp(&a).join("f"))?, "x");
    s.zfs.mount(&b)?;
    assert_eq!(fs::read_to_string(s.mp(&b).join("g"))?, "y");
    let err = s.zfs.mount(&a).expect_err("mounted");
    assert!(err.to_string().contains("already mounted"), "{err}");
    assert!(s
        .zfs
        .mount(&s.ds("nope"))
        .expect_err("missing")
        .is_not_found());

    // A new mountpoint moves the files, children's too; "none" unmounts.
    let elsewhere = s.mp(&s.root).join("elsewhere");
    s.zfs.set(
        &a,
        &props(&[("mountpoint", elsewhere.to_str().expect("utf-8"))]),
    )?;
    assert_eq!(s.mp(&a), elsewhere);
    assert_eq!(fs::read_to_string(elsewhere.join("f"))?, "x");
    assert_eq!(s.mp(&b), elsewhere.join("b"));
    s.zfs.inherit(&a, "mountpoint")?;
    assert_eq!(s.mp(&a), mp);
    s.zfs.set(&b, &props(&[("mountpoint", "none")]))?;
    assert_eq!(s.zfs.mountpoint(&b)?, None);
    let err = s.zfs.mount(&b).expect_err("no mountpoint");
    assert!(err.to_string().contains("no mountpoint set"), "{err}");

    // canmount=noauto: made, not mounted; a mount then works.
    let n = s.ds("n");
    s.zfs.create(&n, &props(&[("canmount", "noauto")]))?;
    assert_eq!(s.zfs.mountpoint(&n)?, None);
    s.zfs.mount(&n)?;
    assert!(s.mp(&n).is_dir());
    // Mounting over a directory with files in it is refused, as zfs-fuse does.
    s.zfs.unmount(&n, false)?;
    fs::create_dir_all(mp.join("..").join("n"))?;
    fs::write(s.mp(&s.root).join("n").join("stray"), "")?;
    let err = s.zfs.mount(&n).expect_err("not empty");
    assert!(err.to_string().contains("not empty"), "{err}");
    Ok(())
}

#[test]
fn a_parent_snapshot_leaves_mounted_children_out() -> TestResult {
    let s = scratch()?;
    let a = s.make("a");
    let b = a.child("b")?;
    s.zfs.create(&b, &Properties::new())?;
    fs::write(s.mp(&a).join("mine"), "a")?;
    fs::write(s.mp(&b).join("theirs"), "b")?;
    let family = [a.snapshot("s")?, b.snapshot("s")?];
    s.zfs.snapshot_many(&family, &Properties::new())?;
    fs::write(s.mp(&b).join("theirs"), "b2")?;

    let ca = s.ds("ca");
    s.zfs.clone_snapshot(&family[0], &ca, &Properties::new())?;
    assert_eq!(fs::read_to_string(s.mp(&ca).join("mine"))?, "a");
    assert!(s.mp(&ca).join("b").is_dir(), "the mountpoint directory");
    assert!(!s.mp(&ca).join("b/theirs").exists());

    // Rolling the parent back leaves the child's files alone.
    fs::write(s.mp(&a).join("mine"), "changed")?;
    s.zfs.rollback(&family[0], false)?;
    assert_eq!(fs::read_to_string(s.mp(&a).join("mine"))?, "a");
    assert_eq!(fs::read_to_string(s.mp(&b).join("theirs"))?, "b2");
    s.zfs.rollback(&family[1], false)?;
    assert_eq!(fs::read_to_string(s.mp(&b).join("theirs"))?, "b");
    let used: u64 = s
        .zfs
        .property(&a, "referenced")?
        .unwrap_or_default()
        .parse()?;
    assert_eq!(used, 1, "only a's own file");
    Ok(())
}

#[test]
fn eight_threads_clone_one_snapshot_at_once() -> TestResult {
    let s = scratch()?;
    let img = s.make("image");
    fs::write(s.mp(&img).join("f"), "shared")?;
    let snap = img.snapshot("image")?;
    s.zfs.snapshot(&snap, &Properties::new())?;
    let s = Arc::new(s);
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let s = Arc::clone(&s);
            let snap = snap.clone();
            std::thread::spawn(move || {
                let target = s.ds(&format!("c{i}"));
                s.zfs
                    .clone_snapshot(&snap, &target, &Properties::new())
                    .map(|()| target)
            })
        })
        .collect();
    let mut made = Vec::new();
    for h in handles {
        made.push(h.join().map_err(|_| "a thread panicked")??);
    }
    for target in &made {
        assert_eq!(fs::read_to_string(s.mp(target).join("f"))?, "shared");
    }
    assert_eq!(s.zfs.clones(&snap)?.len(), 8);
    for target in &made {
        s.zfs.destroy(target, false)?;
    }
    Ok(())
}
