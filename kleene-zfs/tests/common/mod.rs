//! A scratch dataset per test on the pool named by `KLEENE_TEST_POOL`.
//!
//! Without a pool a test skips with a printed reason, unless `KLEENE_REQUIRE_ZFS=1`, where
//! it fails: CI sets that, so a missing pool can never pass as green.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};

use kleene_zfs::{DatasetName, Properties, Zfs};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Scratch {
    pub zfs: Zfs,
    pub root: DatasetName,
}

/// A fresh dataset `<pool>/kzt-<pid>-<n>-<tag>`, destroyed with all below it on drop.
pub fn scratch(tag: &str) -> Option<Scratch> {
    let required = std::env::var("KLEENE_REQUIRE_ZFS").as_deref() == Ok("1");
    let pool = match std::env::var("KLEENE_TEST_POOL") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            assert!(
                !required,
                "KLEENE_REQUIRE_ZFS=1 but KLEENE_TEST_POOL is not set: run scripts/testpool.sh up"
            );
            eprintln!("skipped: KLEENE_TEST_POOL is not set (scripts/testpool.sh up makes one)");
            return None;
        }
    };
    let zfs = Zfs::open();
    let pool = DatasetName::new(pool).unwrap();
    match zfs.exists(&pool) {
        Ok(true) => {}
        other => {
            assert!(!required, "test pool {pool} is not usable: {other:?}");
            eprintln!("skipped: test pool {pool} is not usable: {other:?}");
            return None;
        }
    }
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let root = pool
        .child(&format!("kzt-{}-{n}-{tag}", std::process::id()))
        .unwrap();
    zfs.create(&root, &Properties::new()).unwrap();
    Some(Scratch { zfs, root })
}

impl Scratch {
    pub fn ds(&self, name: &str) -> DatasetName {
        self.root.child(name).unwrap()
    }

    pub fn mountpoint(&self, ds: &DatasetName) -> std::path::PathBuf {
        self.zfs
            .mountpoint(ds)
            .unwrap()
            .unwrap_or_else(|| panic!("{ds} is not mounted"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Clones inside the scratch tree may keep snapshots alive: destroy clones first.
        for _ in 0..3 {
            if let Ok(all) = self
                .zfs
                .list_datasets(&self.root, kleene_zfs::Depth::All, &["origin"])
            {
                for d in all.iter().rev() {
                    if d.properties.get("origin").is_some() {
                        let _ = self.zfs.destroy(&d.name, true);
                    }
                }
            }
            if self.zfs.destroy(&self.root, true).is_ok() {
                return;
            }
        }
        eprintln!("warning: could not destroy {}", self.root);
    }
}

#[macro_export]
macro_rules! scratch_or_skip {
    ($tag:expr) => {
        match common::scratch($tag) {
            Some(s) => s,
            None => return,
        }
    };
}
