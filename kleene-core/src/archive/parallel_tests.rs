//! The writer threads give the serial extraction's result: each archive here is
//! extracted with writers and without (`ExtractOptions::with_writers(0)`), and the two
//! trees must be the same, file by file, with what the test expects of them.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::writers::tests::fail_writing;
use super::*;

const MTIME: u64 = 1_600_000_000;

struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }

    fn entry(&mut self, path: &str, kind: tar::EntryType, mode: u32, link: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(u64::from(rustix::process::geteuid().as_raw()));
        h.set_gid(u64::from(rustix::process::getegid().as_raw()));
        h.set_mtime(MTIME);
        h.set_size(data.len() as u64);
        h.set_path(path).expect("a path the builder takes");
        if !link.is_empty() {
            h.set_link_name(link).expect("a link the builder takes");
        }
        h.set_cksum();
        self.0.append(&h, data).expect("appending to a vector");
    }

    fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.entry(path, tar::EntryType::Regular, 0o644, "", data);
        self
    }

    fn file_mode(&mut self, path: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.entry(path, tar::EntryType::Regular, mode, "", data);
        self
    }

    fn dir(&mut self, path: &str) -> &mut Self {
        self.entry(path, tar::EntryType::Directory, 0o755, "", b"");
        self
    }

    fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.entry(path, tar::EntryType::Symlink, 0o777, target, b"");
        self
    }

    fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.entry(path, tar::EntryType::Link, 0o644, target, b"");
        self
    }

    fn bytes(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()))
            .into_inner()
            .expect("finishing the archive")
    }
}

/// Data of `len` bytes, different for each `seed`.
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn extract_to(bytes: &[u8], dir: &Path, writers: usize) -> Result<ExtractStats, ArchiveError> {
    let root = RootDir::open(dir).expect("opening the test root");
    extract_with(
        bytes,
        &root,
        ExtractOptions::default().with_writers(writers),
        &mut |_| {},
    )
}

/// The contents of file `p`, also when its mode lets not even its owner read it (a
/// test run by a user that is not root): made readable for the read, then put back
/// (a mode change leaves the mtime alone).
fn read_even_unreadable(p: &Path, m: &fs::Metadata) -> Vec<u8> {
    match fs::read(p) {
        Ok(body) => body,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let mode = m.permissions().mode();
            fs::set_permissions(p, fs::Permissions::from_mode(mode | 0o400))
                .expect("making a file readable");
            let body = fs::read(p).expect("reading");
            fs::set_permissions(p, fs::Permissions::from_mode(mode & 0o7777))
                .expect("putting a mode back");
            body
        }
        Err(e) => panic!("reading {}: {e}", p.display()),
    }
}

/// Everything under `dir`: type, mode, owner, mtime, contents or link target, and which
/// files are one inode.
fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut inodes = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).expect("listing") {
            let p = e.expect("an entry").path();
            let m = fs::symlink_metadata(&p).expect("stat");
            let rel = p.strip_prefix(dir).expect("inside").to_path_buf();
            let what = if m.file_type().is_dir() {
                todo.push(p.clone());
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("link {:?}", fs::read_link(&p).expect("readlink"))
            } else {
                let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone());
                let body = read_even_unreadable(&p, &m);
                format!(
                    "file {} bytes {:x} nlink {} inode of {first:?}",
                    body.len(),
                    body.iter()
                        .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
                    m.nlink()
                )
            };
            out.insert(
                rel,
                format!(
                    "{what} mode {:o} owner {}:{} mtime {}",
                    m.permissions().mode() & 0o7777,
                    m.uid(),
                    m.gid(),
                    m.mtime()
                ),
            );
        }
    }
    out
}

/// Extracts `bytes` with writers and without: the same tree, which is returned.
fn both(bytes: &[u8]) -> (tempfile::TempDir, BTreeMap<PathBuf, String>) {
    let serial = tempfile::tempdir().expect("a temporary directory");
    let parallel = tempfile::tempdir().expect("a temporary directory");
    let a = extract_to(bytes, serial.path(), 0).expect("the serial extraction");
    let b = extract_to(bytes, parallel.path(), 4).expect("the parallel extraction");
    assert_eq!(a.entries, b.entries);
    assert_eq!(a.bytes, b.bytes);
    let (ta, tb) = (tree(serial.path()), tree(parallel.path()));
    assert_eq!(ta, tb, "the writers changed the result");
    (parallel, tb)
}

/// Extracts `bytes` with writers and without: the same error, which is returned.
fn both_fail(bytes: &[u8]) -> String {
    let serial = tempfile::tempdir().expect("a temporary directory");
    let parallel = tempfile::tempdir().expect("a temporary directory");
    let a = extract_to(bytes, serial.path(), 0).expect_err("the serial extraction fails");
    let b = extract_to(bytes, parallel.path(), 4).expect_err("the parallel extraction fails");
    assert_eq!(a.to_string(), b.to_string());
    b.to_string()
}

#[test]
fn many_files_of_all_sizes() {
    let mut t = Tar::new();
    let mut expect = Vec::new();
    for d in 0..20 {
        t.dir(&format!("d{d}/"));
        for f in 0..100u64 {
            let len = match f % 10 {
                0 => 0,
                1 => writers::HEAD,
                2 => writers::HEAD + 1,
                3 if d % 5 == 0 => 3 * writers::HEAD + 777,
                _ => usize::try_from(f * 97 + d).expect("small"),
            };
            let path = format!("d{d}/f{f}");
            t.file(&path, &data(d * 1000 + f, len));
            expect.push((path, len));
        }
    }
    // Zeros become holes, in a file streamed to its writer.
    let mut sparse = vec![0u8; 4 * CHUNK];
    sparse[CHUNK + 5] = 1;
    t.file("d0/sparse", &sparse);
    let bytes = t.bytes();
    let (dir, tree) = both(&bytes);
    assert_eq!(tree.len(), 20 + 20 * 100 + 1);
    for (path, len) in expect {
        let got = fs::metadata(dir.path().join(&path)).expect("extracted");
        assert_eq!(got.len(), len as u64, "{path}");
    }
    assert_eq!(
        fs::read(dir.path().join("d0/sparse")).expect("extracted"),
        sparse
    );
}

#[test]
fn hard_links_to_files_being_written() {
    let big = data(7, 3 * writers::HEAD);
    let mut t = Tar::new();
    t.dir("a/")
        .file("a/big", &big)
        .hardlink("a/link", "a/big")
        .file("a/small", b"small")
        .hardlink("b/link-to-small", "a/small");
    for i in 0..50 {
        t.file(&format!("a/f{i}"), &data(i, 5000));
        t.hardlink(&format!("a/l{i}"), &format!("a/f{i}"));
    }
    let (dir, _) = both(&t.bytes());
    let a = fs::metadata(dir.path().join("a/big")).expect("big");
    let l = fs::metadata(dir.path().join("a/link")).expect("link");
    assert_eq!(a.ino(), l.ino());
    assert_eq!(l.nlink(), 2);
    assert_eq!(fs::read(dir.path().join("a/link")).expect("link"), big);
    assert_eq!(
        fs::read(dir.path().join("b/link-to-small")).expect("link"),
        b"small"
    );
}

#[test]
fn paths_replaced_later_in_the_archive() {
    let first = data(1, 2 * writers::HEAD + 3);
    let mut t = Tar::new();
    t.dir("d/")
        .file("d/f", &first)
        .file("d/g", b"a file first")
        .file("d/h", b"a file first")
        .file("d/i", &data(2, writers::HEAD * 2))
        .hardlink("d/keep", "d/f")
        .file("d/f", b"the last word")
        .symlink("d/g", "f")
        .dir("d/h/")
        .file("d/h/x", b"in the directory")
        .file_mode("d/i", 0o600, b"short now")
        .dir("e/")
        .symlink("e", "d");
    let (dir, tree) = both(&t.bytes());
    let d = dir.path().join("d");
    assert_eq!(fs::read(d.join("f")).expect("f"), b"the last word");
    assert_eq!(fs::read(d.join("keep")).expect("keep"), first);
    assert_eq!(fs::read_link(d.join("g")).expect("g"), Path::new("f"));
    assert_eq!(fs::read(d.join("h/x")).expect("h/x"), b"in the directory");
    assert_eq!(fs::read(d.join("i")).expect("i"), b"short now");
    assert!(tree.contains_key(Path::new("e")));
}

#[test]
fn a_file_in_the_way_of_a_directory_fails_alike() {
    let mut t = Tar::new();
    t.dir("d/")
        .file("d/a", b"a file")
        .file("d/a/b", b"under a file");
    let err = both_fail(&t.bytes());
    assert!(err.contains("d/a/b"), "{err}");
    // The same through a fresh directory's new file, hard linked from below it.
    let mut t = Tar::new();
    t.dir("d/").file("d/a", b"a file").hardlink("d/l", "d/a/x");
    let err = both_fail(&t.bytes());
    assert!(err.contains("d/l"), "{err}");
    // A directory replaced must be empty, its files not yet written included.
    let mut t = Tar::new();
    t.dir("e/");
    for i in 0..20 {
        t.file(&format!("e/f{i}"), &data(i, 10_000));
    }
    t.symlink("e", "d");
    let err = both_fail(&t.bytes());
    assert!(err.contains("removing the directory in its place"), "{err}");
}

#[test]
fn a_writers_error_names_its_entry() {
    fail_writing("w/fail-here");
    let mut t = Tar::new();
    t.dir("w/");
    for i in 0..30 {
        t.file(&format!("w/before{i}"), &data(i, 3000));
    }
    t.file("w/fail-here", &data(99, writers::HEAD * 2));
    for i in 0..300 {
        t.file(&format!("w/after{i}"), &data(i, 3000));
    }
    let bytes = t.bytes();
    for writers in [0, 4] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let err = extract_to(&bytes, dir.path(), writers).expect_err("the writer fails");
        match &err {
            ArchiveError::Entry { entry, action, .. } => {
                assert_eq!(entry, "w/fail-here");
                assert_eq!(action, "writing its data");
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(
            err.to_string()
                .starts_with("archive entry \"w/fail-here\": "),
            "{err}"
        );
        // It stopped there (a few entries after it may have been made).
        assert!(!dir.path().join("w/after299").exists());
    }
}

#[test]
fn setuid_bits_and_times_are_kept() {
    let mut t = Tar::new();
    t.dir("bin/")
        .file_mode("bin/su", 0o4755, &data(3, 10_000))
        .file_mode("bin/wall", 0o2755, &data(4, 2 * writers::HEAD))
        .file_mode("bin/plain", 0o640, b"plain")
        .file_mode("bin/none", 0o000, b"no permissions");
    t.entry("tmp/", tar::EntryType::Directory, 0o1777, "", b"");
    t.file("tmp/x", b"x");
    let (dir, tree) = both(&t.bytes());
    let mode = |p: &str| {
        fs::symlink_metadata(dir.path().join(p))
            .expect("extracted")
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("bin/su"), 0o4755);
    assert_eq!(mode("bin/wall"), 0o2755);
    assert_eq!(mode("bin/plain"), 0o640);
    assert_eq!(mode("bin/none"), 0o000);
    assert_eq!(mode("tmp"), 0o1777);
    for (path, what) in &tree {
        assert!(
            what.ends_with(&format!("mtime {MTIME}")),
            "{path:?}: {what}"
        );
    }
}

#[test]
fn a_directory_made_by_the_walk_still_takes_files() {
    // No directory entries: the walk makes them, and the files are created by the
    // reader; then a directory entry makes one the writers may fill.
    let mut t = Tar::new();
    for i in 0..20 {
        t.file(&format!("x/y/f{i}"), &data(i, 100));
    }
    t.dir("x/y/z/");
    for i in 0..20 {
        t.file(&format!("x/y/z/f{i}"), &data(i, 100));
    }
    t.symlink("x/s", "y/z")
        .file("x/s/through", b"through a symlink");
    let (dir, _) = both(&t.bytes());
    assert_eq!(
        fs::read(dir.path().join("x/y/z/through")).expect("through"),
        b"through a symlink"
    );
}
