//! One scenario, run on the memory backend and on a real pool (`KLEENE_TEST_POOL`): what
//! each answers must be the same. Needs the `testing` feature.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use kleene_zfs::{DatasetName, Depth, Properties, Zfs, ZfsError};

fn props(pairs: &[(&str, &str)]) -> Properties {
    let mut p = Properties::new();
    for (k, v) in pairs {
        p.set(k, *v).unwrap();
    }
    p
}

/// An error as the scenario records it: its kind and the names it carries.
fn err(e: ZfsError) -> String {
    match e {
        ZfsError::NotFound { name } => format!("NotFound({name})"),
        ZfsError::AlreadyExists { name } => format!("AlreadyExists({name})"),
        ZfsError::HasDependents {
            name,
            mut dependents,
        } => {
            dependents.sort();
            format!("HasDependents({name}: {})", dependents.join(" "))
        }
        ZfsError::CommandFailed { .. } => "CommandFailed".to_string(),
        other => format!("other: {other}"),
    }
}

fn res<T: std::fmt::Debug>(r: Result<T, ZfsError>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => err(e),
    }
}

fn name(n: Option<impl std::fmt::Display>) -> String {
    n.map_or("none".to_string(), |n| n.to_string())
}

fn names(v: Vec<impl std::fmt::Display>) -> String {
    v.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the scenario below `root` and says what it saw, with `root` written `R`.
fn transcript(zfs: &Zfs, root: &DatasetName) -> Vec<String> {
    let mut t: Vec<String> = Vec::new();
    let ds = |n: &str| root.child(n).unwrap();
    let mp = |d: &DatasetName| zfs.mountpoint(d).unwrap();
    let rel = |p: Option<&Path>| {
        let base = zfs.mountpoint(root).unwrap().unwrap();
        p.map(|p| p.strip_prefix(&base).unwrap().display().to_string())
    };
    let read = |d: &DatasetName, f: &str| {
        fs::read_to_string(mp(d).unwrap().join(f)).unwrap_or_else(|e| format!("{:?}", e.kind()))
    };

    let a = ds("a");
    zfs.create(&a, &props(&[("kleene:id", "aaa")])).unwrap();
    t.push(format!(
        "a props {:?}",
        zfs.get(&a, &["kleene:id", "kleene:unset", "type", "mounted"])
            .unwrap()
    ));
    t.push(format!("a at {:?}", rel(mp(&a).as_deref())));
    fs::write(mp(&a).unwrap().join("f"), "one").unwrap();
    let s1 = a.snapshot("s1").unwrap();
    zfs.snapshot(&s1, &props(&[("kleene:step", "1")])).unwrap();
    fs::write(mp(&a).unwrap().join("f"), "two").unwrap();
    let b = a.child("b").unwrap();
    zfs.create(&b, &Properties::new()).unwrap();
    fs::write(mp(&b).unwrap().join("g"), "gee").unwrap();
    t.push(format!("b at {:?}", rel(mp(&b).as_deref())));
    t.push(format!("b inherits {:?}", zfs.property(&b, "kleene:id")));
    t.push(format!(
        "s1 props {:?}",
        zfs.get(&s1, &["kleene:step", "kleene:id", "type", "mountpoint"])
    ));

    let c = ds("c");
    zfs.clone_snapshot(&s1, &c, &props(&[("kleene:id", "ccc")]))
        .unwrap();
    t.push(format!("c/f {}", read(&c, "f")));
    t.push(format!("c origin {}", name(zfs.origin(&c).unwrap())));
    t.push(format!("s1 clones {}", names(zfs.clones(&s1).unwrap())));
    t.push(format!("destroy s1: {}", res(zfs.destroy_snapshot(&s1))));
    t.push(format!("destroy a: {}", res(zfs.destroy(&a, false))));
    t.push(format!("destroy -r a: {}", res(zfs.destroy(&a, true))));
    t.push(format!(
        "create a again: {}",
        res(zfs.create(&a, &Properties::new()))
    ));
    t.push(format!(
        "create orphan: {}",
        res(zfs.create(&ds("x").child("y").unwrap(), &Properties::new()))
    ));
    t.push(format!(
        "clone missing: {}",
        res(zfs.clone_snapshot(&a.snapshot("nope").unwrap(), &ds("z"), &Properties::new()))
    ));
    t.push(format!(
        "clone into missing parent: {}",
        res(zfs.clone_snapshot(&s1, &ds("x").child("y").unwrap(), &Properties::new()))
    ));

    let listed: Vec<String> = zfs
        .list_datasets(root, Depth::All, &["kleene:id", "origin"])
        .unwrap()
        .into_iter()
        .map(|mut d| {
            d.properties.remove("createtxg");
            format!("{} {:?}", d.name, d.properties)
        })
        .collect();
    t.push(format!("all: {listed:?}"));
    let children: Vec<String> = zfs
        .list_datasets(root, Depth::Children, &[])
        .unwrap()
        .into_iter()
        .map(|d| d.name.to_string())
        .collect();
    t.push(format!("children: {children:?}"));
    let snaps: Vec<String> = zfs
        .list_snapshots(&a, &["kleene:step"])
        .unwrap()
        .into_iter()
        .map(|s| format!("{} {:?}", s.name, s.properties))
        .collect();
    t.push(format!("snapshots of a: {snaps:?}"));

    let d = ds("d");
    zfs.rename(&c, &d).unwrap();
    t.push(format!(
        "renamed: c {:?}, d {:?}, d/f {}, d at {:?}",
        zfs.exists(&c),
        zfs.exists(&d),
        read(&d, "f"),
        rel(mp(&d).as_deref())
    ));
    t.push(format!("rename onto a: {}", res(zfs.rename(&d, &a))));
    zfs.rollback(&s1, false).unwrap();
    t.push(format!("rolled back: a/f {}", read(&a, "f")));

    let e = ds("e");
    zfs.copy(&s1, &e).unwrap();
    t.push(format!(
        "copy: e/f {}, e@s1 {:?}, origin {}",
        read(&e, "f"),
        zfs.exists(&e.snapshot("s1").unwrap()),
        name(zfs.origin(&e).unwrap())
    ));
    t.push(format!("copy again: {}", res(zfs.copy(&s1, &e).map(drop))));

    let s2 = a.snapshot("s2").unwrap();
    zfs.snapshot(&s2, &Properties::new()).unwrap();
    t.push(format!(
        "rollback past s2: {}",
        res(zfs.rollback(&s1, false))
    ));
    fs::write(mp(&e).unwrap().join("local"), "change").unwrap();
    t.push(format!(
        "incremental onto a changed copy: {}",
        res(zfs.copy_incremental(&s1, &s2, &e, false))
    ));
    zfs.promote(&d).unwrap();
    t.push(format!(
        "promoted: d origin {}, a origin {}",
        name(zfs.origin(&d).unwrap()),
        name(zfs.origin(&a).unwrap())
    ));
    t.push(format!("promote a plain one: {}", res(zfs.promote(&e))));

    zfs.unmount(&e, false).unwrap();
    t.push(format!("e unmounted: {:?}", mp(&e)));
    t.push(format!("unmount again: {}", res(zfs.unmount(&e, false))));
    zfs.mount(&e).unwrap();
    t.push(format!("e mounted again: e/f {}", read(&e, "f")));

    zfs.unmount(&a, false).unwrap();
    t.push(format!(
        "a unmounted: a {:?}, b {:?}",
        rel(mp(&a).as_deref()),
        rel(mp(&b).as_deref())
    ));

    t.into_iter()
        .map(|line| line.replace(root.as_str(), "R"))
        .collect()
}

#[test]
fn memory_and_real_zfs_agree() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Zfs::memory(dir.path(), "tank").unwrap();
    let root = DatasetName::new("tank/agree").unwrap();
    memory.create(&root, &Properties::new()).unwrap();
    let fake = transcript(&memory, &root);
    for line in &fake {
        eprintln!("memory: {line}");
    }
    let Some(s) = common::scratch("agree") else {
        return;
    };
    let real = transcript(&s.zfs, &s.root);
    for (i, (m, r)) in fake.iter().zip(&real).enumerate() {
        assert_eq!(m, r, "line {i}: memory backend vs {}", s.zfs.backend_name());
    }
    assert_eq!(fake.len(), real.len());
}
