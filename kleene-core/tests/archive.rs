//! Base image archives: compression detection and decoding, and safe extraction.
//!
//! Hostile archives are built here with raw tar headers (paths the `tar` crate's builder
//! would refuse) and must be refused with an error naming the entry, leaving a directory
//! beside the new root untouched. The round trip of metadata (owners, devices) needs
//! root: without it that test skips, or fails when `KLEENE_REQUIRE_ZFS=1`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

use kleene_core::archive::{
    apply_layer, decompress, extract, ArchiveError, Compression, ExtractStats,
};
use tar::{EntryType, Header};

const MTIME: u64 = 1_600_000_000;

// ---------------------------------------------------------------------------------------
// helpers

/// A tar archive built entry by entry with raw headers: the path and link bytes are
/// copied as given, unchecked.
struct Tar {
    b: tar::Builder<Vec<u8>>,
}

#[derive(Clone, Copy)]
struct Opts {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

const DEFAULT: Opts = Opts {
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime: MTIME,
};

impl Tar {
    fn new() -> Self {
        Tar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn raw(
        &mut self,
        path: &[u8],
        kind: EntryType,
        link: &[u8],
        o: Opts,
        data: &[u8],
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(o.mode);
        h.set_uid(o.uid);
        h.set_gid(o.gid);
        h.set_mtime(o.mtime);
        h.set_size(data.len() as u64);
        assert!(
            path.len() < 100 && link.len() < 100,
            "use pax records for long names"
        );
        h.as_old_mut().name[..path.len()].copy_from_slice(path);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.raw(path.as_bytes(), EntryType::Regular, b"", DEFAULT, data)
    }

    fn file_with(&mut self, path: &str, o: Opts, data: &[u8]) -> &mut Self {
        self.raw(path.as_bytes(), EntryType::Regular, b"", o, data)
    }

    fn dir(&mut self, path: &str) -> &mut Self {
        self.raw(
            path.as_bytes(),
            EntryType::Directory,
            b"",
            Opts {
                mode: 0o755,
                ..DEFAULT
            },
            b"",
        )
    }

    fn dir_with(&mut self, path: &str, o: Opts) -> &mut Self {
        self.raw(path.as_bytes(), EntryType::Directory, b"", o, b"")
    }

    fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(
            path.as_bytes(),
            EntryType::Symlink,
            target.as_bytes(),
            Opts {
                mode: 0o777,
                ..DEFAULT
            },
            b"",
        )
    }

    fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(
            path.as_bytes(),
            EntryType::Link,
            target.as_bytes(),
            DEFAULT,
            b"",
        )
    }

    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.b
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    fn node(
        &mut self,
        path: &str,
        kind: EntryType,
        major: u32,
        minor: u32,
        mode: u32,
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        self.b.append(&h, &b""[..]).unwrap();
        self
    }

    fn bytes(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

/// A new root and, beside it, a directory that must never change.
struct Sandbox {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    outside: PathBuf,
}

fn sandbox() -> Sandbox {
    let tmp = tempfile::Builder::new()
        .prefix("kleene-archive-")
        .tempdir()
        .unwrap();
    let base = tmp.path().to_path_buf();
    let root = base.join("root");
    let outside = base.join("outside");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("canary"), b"precious").unwrap();
    std::fs::write(outside.join("sub/deep"), b"also precious").unwrap();
    Sandbox {
        _tmp: tmp,
        base,
        root,
        outside,
    }
}

/// Everything about a tree that extraction could change: type, mode, owner, times,
/// link count, content or link target.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let what = if m.file_type().is_symlink() {
            format!("link {:?}", std::fs::read_link(&p).unwrap())
        } else if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            "dir".to_string()
        } else {
            format!("file {:?}", std::fs::read(&p).unwrap())
        };
        out.insert(
            p.clone(),
            format!(
                "{what} mode={:o} {}:{} mtime={} nlink={}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.mtime(),
                m.nlink()
            ),
        );
    }
    out
}

fn run(bytes: &[u8], root: &Path) -> Result<ExtractStats, ArchiveError> {
    extract(bytes, root, &mut |_| {})
}

/// Extracts a hostile archive: it must be refused, naming `entry`, and nothing beside
/// the root may change.
fn refused(bytes: &[u8], entry: &str) -> (Sandbox, String) {
    let s = sandbox();
    let before = snapshot(&s.outside);
    let err = run(bytes, &s.root).expect_err("a hostile archive must be refused");
    let msg = err.to_string();
    match &err {
        ArchiveError::UnsafeEntry { entry: e, .. } => assert_eq!(e, entry, "{msg}"),
        other => panic!("expected UnsafeEntry for {entry:?}, got {other:?}"),
    }
    assert!(
        msg.starts_with(&format!("refusing archive entry {entry:?}: ")),
        "{msg}"
    );
    assert_eq!(snapshot(&s.outside), before, "the outside changed");
    let names: Vec<_> = std::fs::read_dir(&s.base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "something appeared beside the root: {names:?}"
    );
    (s, msg)
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether a test needing root can run; with `KLEENE_REQUIRE_ZFS=1` it must.
fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var_os("KLEENE_REQUIRE_ZFS").is_some_and(|v| v == "1") {
        panic!("{test} needs root (KLEENE_REQUIRE_ZFS=1)");
    }
    eprintln!("skipping {test}: needs root");
    false
}

/// A captured log, to check what extraction says about what it skips.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}", record.level(), record.args()));
    }
    fn flush(&self) {}
}

static LOG: Capture = Capture(Mutex::new(Vec::new()));

fn logs() -> &'static Capture {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_logger(&LOG).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
    });
    &LOG
}

fn logged(needle: &str) -> bool {
    logs().0.lock().unwrap().iter().any(|l| l.contains(needle))
}

/// A small deterministic generator (xorshift64*), for reproducible "random" data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

// ---------------------------------------------------------------------------------------
// hostile archives

#[test]
fn refuses_parent_dir_entry() {
    let bytes = Tar::new()
        .file("ok", b"fine")
        .file("../evil", b"pwned")
        .bytes();
    let (s, msg) = refused(&bytes, "../evil");
    assert!(msg.contains("\"..\""), "{msg}");
    // Entries before the bad one were extracted; nothing was written for it.
    assert_eq!(std::fs::read(s.root.join("ok")).unwrap(), b"fine");
    assert!(!s.base.join("evil").exists());
}

#[test]
fn refuses_dotdot_inside_a_path() {
    let bytes = Tar::new().dir("a/").file("a/../../evil", b"pwned").bytes();
    let (s, _) = refused(&bytes, "a/../../evil");
    assert!(!s.base.join("evil").exists());
    // Even a `..` that would stay inside is refused: the archive is not well formed.
    let bytes = Tar::new().dir("a/").file("a/../b", b"x").bytes();
    let (s, _) = refused(&bytes, "a/../b");
    assert!(!s.root.join("b").exists());
}

#[test]
fn refuses_absolute_paths() {
    let s0 = sandbox();
    let target = s0.outside.join("evil");
    let path = target.to_str().unwrap().to_string();
    let bytes = Tar::new().file(&path, b"pwned").bytes();
    let (_, msg) = refused(&bytes, &path);
    assert!(msg.contains("absolute"), "{msg}");
    assert!(!target.exists());
    let bytes = Tar::new().dir("/abs/").bytes();
    refused(&bytes, "/abs/");
    assert!(!Path::new("/abs").exists());
}

#[test]
fn refuses_writing_through_an_absolute_symlink() {
    // The symlink is stored; writing through it is refused.
    let probe = sandbox();
    let outside = probe.outside.to_str().unwrap().to_string();
    let bytes = Tar::new()
        .symlink("link", &outside)
        .file("link/owned", b"pwned")
        .bytes();
    let s = sandbox();
    let before = snapshot(&probe.outside);
    let err = run(&bytes, &s.root).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::UnsafeEntry { entry, reason } if entry == "link/owned" && reason.contains("\"link\"")),
        "{err}"
    );
    assert_eq!(snapshot(&probe.outside), before);
    assert!(!probe.outside.join("owned").exists());
    assert_eq!(
        std::fs::read_link(s.root.join("link")).unwrap(),
        probe.outside
    );
}

#[test]
fn refuses_writing_through_a_relative_symlink_that_leaves_the_root() {
    // root/../outside is the sandbox's real outside directory.
    let bytes = Tar::new()
        .symlink("link", "../outside")
        .file("link/owned", b"pwned")
        .bytes();
    let (s, msg) = refused(&bytes, "link/owned");
    assert!(msg.contains("leads outside the root"), "{msg}");
    assert!(!s.outside.join("owned").exists());
    // Deeper: a directory entry through it.
    let bytes = Tar::new()
        .dir("d/")
        .symlink("d/up", "../../outside/sub")
        .dir("d/up/x/")
        .bytes();
    let (s, _) = refused(&bytes, "d/up/x/");
    assert!(!s.outside.join("sub/x").exists());
}

#[test]
fn refuses_chains_of_symlinks_to_parent_dirs() {
    // Each link alone stays inside; together they climb out.
    let bytes = Tar::new()
        .dir("a/")
        .symlink("a/l", "..")
        .symlink("a/m", "l/..")
        .file("a/m/outside/canary", b"pwned")
        .bytes();
    let (s, msg) = refused(&bytes, "a/m/outside/canary");
    assert!(msg.contains("outside the root"), "{msg}");
    assert_eq!(
        std::fs::read(s.outside.join("canary")).unwrap(),
        b"precious"
    );

    let bytes = Tar::new()
        .symlink("up", ".")
        .symlink("up2", "up/up/..")
        .file("up2/outside/canary", b"pwned")
        .bytes();
    refused(&bytes, "up2/outside/canary");

    // A loop is refused too, rather than followed forever.
    let bytes = Tar::new()
        .symlink("a", "b")
        .symlink("b", "a")
        .file("a/x", b"x")
        .bytes();
    let (_, msg) = refused(&bytes, "a/x");
    assert!(msg.contains("too many symlinks"), "{msg}");
}

#[test]
fn refuses_the_zfs_control_directory() {
    // `mkdir .zfs/snapshot/x` would snapshot the new dataset; never go there.
    let (_, msg) = refused(
        &Tar::new().dir(".zfs/snapshot/x/").bytes(),
        ".zfs/snapshot/x/",
    );
    assert!(msg.contains(".zfs"), "{msg}");
    refused(&Tar::new().file("./.zfs", b"x").bytes(), "./.zfs");
    refused(
        &Tar::new().symlink("z", ".zfs").dir("z/snapshot/x/").bytes(),
        "z/snapshot/x/",
    );
    refused(&Tar::new().hardlink("h", ".zfs").bytes(), "h");
    // After other entries at the top (whose parent, the root, is not taken from a cache).
    refused(
        &Tar::new().file("a", b"x").file(".zfs", b"y").bytes(),
        ".zfs",
    );
    refused(
        &Tar::new()
            .dir("up/")
            .symlink("up/l", "..")
            .file("up/l/.zfs", b"y")
            .bytes(),
        "up/l/.zfs",
    );
    // Deeper down it is an ordinary name.
    let s = sandbox();
    run(&Tar::new().file("home/.zfs", b"x").bytes(), &s.root).unwrap();
    assert_eq!(std::fs::read(s.root.join("home/.zfs")).unwrap(), b"x");
}

#[test]
fn refuses_hardlinks_to_outside() {
    let passwd_links = std::fs::metadata("/etc/passwd").unwrap().nlink();
    let bytes = Tar::new().hardlink("h", "/etc/passwd").bytes();
    let (s, msg) = refused(&bytes, "h");
    assert!(msg.contains("hardlink target \"/etc/passwd\""), "{msg}");
    assert!(std::fs::symlink_metadata(s.root.join("h")).is_err());
    assert_eq!(
        std::fs::metadata("/etc/passwd").unwrap().nlink(),
        passwd_links
    );

    let bytes = Tar::new().hardlink("h", "../outside/canary").bytes();
    let (s, _) = refused(&bytes, "h");
    assert_eq!(
        std::fs::metadata(s.outside.join("canary")).unwrap().nlink(),
        1
    );

    let bytes = Tar::new()
        .dir("a/")
        .hardlink("h", "a/../../outside/canary")
        .bytes();
    refused(&bytes, "h");

    // Through a symlink that leaves the root.
    let bytes = Tar::new()
        .symlink("out", "../outside")
        .hardlink("h", "out/canary")
        .bytes();
    let (s, msg) = refused(&bytes, "h");
    assert!(msg.contains("hardlink target"), "{msg}");
    assert_eq!(
        std::fs::metadata(s.outside.join("canary")).unwrap().nlink(),
        1
    );
}

#[test]
fn later_entries_replace_symlinks_instead_of_following_them() {
    let s = sandbox();
    let canary = s.outside.join("canary");
    let before = snapshot(&s.outside);
    let bytes = Tar::new()
        // A file over a symlink to an outside file.
        .symlink("s", canary.to_str().unwrap())
        .file_with(
            "s",
            Opts {
                mode: 0o600,
                uid: 0,
                gid: 0,
                mtime: 1,
            },
            b"mine",
        )
        // A directory over a symlink to an outside directory, then a file in it.
        .symlink("d", s.outside.to_str().unwrap())
        .dir("d/")
        .file("d/canary", b"mine too")
        // A symlink's own metadata is set on the link, not on its target.
        .raw(
            b"m",
            EntryType::Symlink,
            canary.to_str().unwrap().as_bytes(),
            Opts {
                mode: 0o777,
                uid: 4321,
                gid: 4321,
                mtime: 7,
            },
            b"",
        )
        // A hardlink to a symlink links the symlink, not what it points to.
        .symlink("p", "/etc/passwd")
        .hardlink("hp", "p")
        .bytes();
    let passwd_links = std::fs::metadata("/etc/passwd").unwrap().nlink();
    run(&bytes, &s.root).unwrap();
    assert_eq!(snapshot(&s.outside), before);
    assert_eq!(std::fs::read(s.root.join("s")).unwrap(), b"mine");
    assert!(std::fs::symlink_metadata(s.root.join("d"))
        .unwrap()
        .is_dir());
    assert_eq!(std::fs::read(s.root.join("d/canary")).unwrap(), b"mine too");
    let m = std::fs::symlink_metadata(s.root.join("m")).unwrap();
    assert!(m.file_type().is_symlink());
    assert_eq!(m.mtime(), 7);
    if is_root() {
        assert_eq!((m.uid(), m.gid()), (4321, 4321));
    }
    let hp = std::fs::symlink_metadata(s.root.join("hp")).unwrap();
    assert!(hp.file_type().is_symlink());
    assert_eq!(
        hp.ino(),
        std::fs::symlink_metadata(s.root.join("p")).unwrap().ino()
    );
    assert_eq!(
        std::fs::metadata("/etc/passwd").unwrap().nlink(),
        passwd_links
    );
}

// ---------------------------------------------------------------------------------------
// well-formed archives

#[test]
fn follows_symlinks_that_stay_inside_the_root() {
    let s = sandbox();
    let bytes = Tar::new()
        .dir("usr/")
        .dir("usr/lib/")
        .symlink("lib", "usr/lib")
        .file("lib/libfoo.so", b"elf")
        .dir("usr/bin/")
        .symlink("usr/bin/top", "../..")
        .file("usr/bin/top/etc/conf", b"conf")
        .bytes();
    run(&bytes, &s.root).unwrap();
    assert_eq!(
        std::fs::read(s.root.join("usr/lib/libfoo.so")).unwrap(),
        b"elf"
    );
    assert!(std::fs::symlink_metadata(s.root.join("lib"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(s.root.join("etc/conf")).unwrap(), b"conf");
}

#[test]
fn later_entries_win_and_parents_are_created() {
    let s = sandbox();
    let bytes = Tar::new()
        .file("x/y/z", b"deep")
        .file("a", b"one")
        .hardlink("b", "a")
        .file("a", b"two")
        .dir("e/")
        .file("e", b"file over an empty dir")
        .hardlink("self", "x/y/z")
        .hardlink("self", "x/y/z")
        .bytes();
    let stats = run(&bytes, &s.root).unwrap();
    assert_eq!(stats.entries, 8);
    assert_eq!(std::fs::read(s.root.join("x/y/z")).unwrap(), b"deep");
    assert_eq!(std::fs::read(s.root.join("a")).unwrap(), b"two");
    assert_eq!(std::fs::read(s.root.join("b")).unwrap(), b"one");
    assert_eq!(
        std::fs::read(s.root.join("e")).unwrap(),
        b"file over an empty dir"
    );
    assert_eq!(std::fs::metadata(s.root.join("x/y/z")).unwrap().nlink(), 2);
}

#[test]
fn errors_name_the_entry() {
    let s = sandbox();
    let bytes = Tar::new().file("f", b"x").file("f/inside", b"y").bytes();
    let err = run(&bytes, &s.root).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Entry { entry, .. } if entry == "f/inside"),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("archive entry \"f/inside\": "),
        "{err}"
    );

    let s = sandbox();
    let bytes = Tar::new()
        .raw(b"weird", EntryType::new(b'D'), b"", DEFAULT, b"")
        .bytes();
    let err = run(&bytes, &s.root).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Unsupported { entry, .. } if entry == "weird"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "archive entry \"weird\": unsupported entry type 'D'"
    );

    let s = sandbox();
    let bytes = Tar::new().hardlink("h", "missing").bytes();
    let err = run(&bytes, &s.root).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("archive entry \"h\": linking to \"missing\""),
        "{err}"
    );

    let s = sandbox();
    let err = run(b"", &s.root.join("nonexistent")).unwrap_err();
    assert!(
        err.to_string().starts_with("opening the destination"),
        "{err}"
    );
}

/// The archive of the round-trip test, with every kind of entry.
fn rich_archive(big: &[u8]) -> Vec<u8> {
    let long_dir = format!("deep/{}", "d".repeat(120));
    let long_file = format!("{long_dir}/{}", "f".repeat(120));
    let pax_name = format!("pax/{}", "p".repeat(150));
    let o = |mode, uid, gid, mtime| Opts {
        mode,
        uid,
        gid,
        mtime,
    };
    let mut t = Tar::new();
    t.dir_with("./", o(0o755, 0, 0, 1_500_000_003))
        .dir_with("bin/", o(0o755, 0, 0, 1_500_000_001))
        .file_with(
            "bin/tool",
            o(0o755, 0, 0, 1_500_000_100),
            b"#!/bin/sh\necho tool\n",
        )
        .file_with("bin/su", o(0o4755, 1234, 5678, MTIME), b"setuid")
        .file_with("bin/sg", o(0o2711, 1234, 5678, MTIME), b"setgid")
        .hardlink("bin/tool2", "bin/tool")
        .symlink("bin/abs", "/usr/bin/x")
        .symlink("rel", "bin/tool")
        .symlink("dangling", "/nonexistent/thing")
        .dir_with("etc/", o(0o755, 0, 0, 1_500_000_002))
        .pax(&[
            ("SCHILY.xattr.user.kleene", b"1"),
            ("SCHILY.xattr.bogus.kleene", b"2"),
        ])
        .file_with("etc/secret", o(0o640, 1234, 5678, MTIME), b"secret")
        .pax(&[("mtime", b"1600000000.25")])
        .file_with("etc/precise", o(0o644, 0, 0, MTIME), b"t")
        .dir_with("tmp/", o(0o1777, 0, 0, MTIME))
        .dir_with("empty/", o(0o700, 42, 43, 1_234_567_890))
        .node("run/fifo", EntryType::Fifo, 0, 0, 0o600)
        .file_with("big", o(0o644, 0, 0, MTIME), big)
        .pax(&[("path", pax_name.as_bytes())])
        .file("ignored-name", b"pax path");
    if is_root() {
        t.node("dev/null", EntryType::Char, 1, 3, 0o666);
    }
    // A GNU long name, as the builder writes it.
    let mut h = Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    t.b.append_data(&mut h, &long_file, &b"long"[..]).unwrap();
    t.bytes()
}

fn big_file() -> Vec<u8> {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut big = rng.bytes(1 << 20);
    big.extend(std::iter::repeat_n(0u8, 1 << 20));
    big.extend(rng.bytes((1 << 20) + 123));
    big
}

#[test]
fn round_trip_keeps_metadata() {
    if !root_or_skip("round_trip_keeps_metadata") {
        return;
    }
    logs();
    let s = sandbox();
    let big = big_file();
    let bytes = rich_archive(&big);
    let mut calls: Vec<ExtractStats> = Vec::new();
    let stats = extract(&bytes[..], &s.root, &mut |st: &ExtractStats| {
        calls.push(st.clone())
    })
    .unwrap();
    let r = &s.root;
    let meta = |p: &str| std::fs::symlink_metadata(r.join(p)).unwrap();

    // Counts and progress.
    assert_eq!(stats.entries, 19);
    let data = 20 + 6 + 6 + 6 + 1 + big.len() + 8 + 4;
    assert_eq!(stats.bytes, data as u64);
    assert!(
        calls.len() >= 3,
        "progress every MiB: {} calls",
        calls.len()
    );
    assert!(calls
        .windows(2)
        .all(|w| w[0].bytes <= w[1].bytes && w[0].entries <= w[1].entries));
    assert_eq!(calls.last().unwrap().bytes, stats.bytes);

    // Regular files, modes, setuid/setgid kept although owned by someone else.
    assert_eq!(
        std::fs::read(r.join("bin/tool")).unwrap(),
        b"#!/bin/sh\necho tool\n"
    );
    assert_eq!(meta("bin/tool").mode() & 0o7777, 0o755);
    assert_eq!(meta("bin/tool").mtime(), 1_500_000_100);
    assert_eq!(meta("bin/su").mode() & 0o7777, 0o4755);
    assert_eq!((meta("bin/su").uid(), meta("bin/su").gid()), (1234, 5678));
    assert_eq!(meta("bin/sg").mode() & 0o7777, 0o2711);
    assert_eq!(meta("etc/secret").mode() & 0o7777, 0o640);
    assert_eq!(
        (meta("etc/secret").uid(), meta("etc/secret").gid()),
        (1234, 5678)
    );
    assert_eq!(
        (
            meta("etc/precise").mtime(),
            meta("etc/precise").mtime_nsec()
        ),
        (1_600_000_000, 250_000_000)
    );

    // Hard links share the inode.
    assert_eq!(meta("bin/tool2").ino(), meta("bin/tool").ino());
    assert_eq!(meta("bin/tool").nlink(), 2);

    // Symlinks are stored, not followed, whatever they point at.
    for (link, target) in [
        ("bin/abs", "/usr/bin/x"),
        ("rel", "bin/tool"),
        ("dangling", "/nonexistent/thing"),
    ] {
        assert!(meta(link).file_type().is_symlink(), "{link}");
        assert_eq!(std::fs::read_link(r.join(link)).unwrap(), Path::new(target));
        assert_eq!(meta(link).mtime(), MTIME as i64);
    }

    // Directories: modes (sticky too), owners, and times set after their contents.
    assert_eq!(meta("tmp").mode() & 0o7777, 0o1777);
    assert!(meta("empty").is_dir());
    assert_eq!(std::fs::read_dir(r.join("empty")).unwrap().count(), 0);
    assert_eq!(meta("empty").mode() & 0o7777, 0o700);
    assert_eq!((meta("empty").uid(), meta("empty").gid()), (42, 43));
    assert_eq!(meta("empty").mtime(), 1_234_567_890);
    assert_eq!(meta("bin").mtime(), 1_500_000_001);
    assert_eq!(meta("etc").mtime(), 1_500_000_002);
    let root_meta = std::fs::metadata(r).unwrap();
    assert_eq!(root_meta.mtime(), 1_500_000_003);
    assert_eq!(root_meta.mode() & 0o7777, 0o755);

    // Special files.
    assert!(meta("run/fifo").file_type().is_fifo());
    assert_eq!(meta("run/fifo").mode() & 0o7777, 0o600);
    let null = meta("dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!(
        (
            rustix::fs::major(null.rdev()),
            rustix::fs::minor(null.rdev())
        ),
        (1, 3)
    );
    assert_eq!(null.mode() & 0o7777, 0o666);

    // Long names, GNU and PAX.
    let long_file = format!("deep/{}/{}", "d".repeat(120), "f".repeat(120));
    assert_eq!(std::fs::read(r.join(long_file)).unwrap(), b"long");
    assert_eq!(
        std::fs::read(r.join(format!("pax/{}", "p".repeat(150)))).unwrap(),
        b"pax path"
    );
    assert!(!r.join("ignored-name").exists());

    // A big file, with a run of zeros left as a hole.
    assert_eq!(std::fs::read(r.join("big")).unwrap(), big);
    assert!(
        meta("big").blocks() * 512 < big.len() as u64,
        "the zero run was written out"
    );

    // Extended attributes: restored where the file system takes them, logged otherwise.
    check_xattrs(&s);
}

#[cfg(target_os = "linux")]
fn check_xattrs(s: &Sandbox) {
    let probe = s.base.join("probe");
    std::fs::write(&probe, b"").unwrap();
    let supported =
        rustix::fs::setxattr(&probe, "user.probe", b"1", rustix::fs::XattrFlags::empty()).is_ok();
    if supported {
        let mut buf = [0u8; 16];
        let n =
            rustix::fs::getxattr(s.root.join("etc/secret"), "user.kleene", &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], b"1");
    } else {
        assert!(
            logged("skipping extended attribute \"user.kleene\""),
            "user xattr skip not logged"
        );
    }
    // A namespace no Linux file system takes: skipped and logged, not fatal.
    assert!(logged(
        "archive entry \"etc/secret\": skipping extended attribute \"bogus.kleene\""
    ));
}

#[cfg(not(target_os = "linux"))]
fn check_xattrs(_: &Sandbox) {
    assert!(logged("skipping extended attribute \"user.kleene\""));
}

#[test]
fn ownership_is_skipped_without_root_and_modes_kept() {
    // As root this checks the same files come out right; as a user, that chown
    // refusals are not fatal.
    let s = sandbox();
    let bytes = Tar::new()
        .file_with(
            "f",
            Opts {
                mode: 0o751,
                uid: 1234,
                gid: 5678,
                mtime: 5,
            },
            b"x",
        )
        .bytes();
    run(&bytes, &s.root).unwrap();
    let m = std::fs::metadata(s.root.join("f")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o751);
    assert_eq!(m.mtime(), 5);
    if is_root() {
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
    }
}

// ---------------------------------------------------------------------------------------
// compression

fn simple_tar(size: usize) -> Vec<u8> {
    let mut rng = Rng(42);
    Tar::new()
        .dir("d/")
        .file("d/data", &rng.bytes(size))
        .file("d/text", b"hello")
        .symlink("l", "d/text")
        .bytes()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// xz in several blocks, so that the threaded decoder has blocks to share out.
fn xz_blocks(data: &[u8]) -> Vec<u8> {
    let stream = liblzma::stream::MtStreamBuilder::new()
        .threads(2)
        .block_size(64 * 1024)
        .preset(1)
        .encoder()
        .unwrap();
    let mut e = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

fn decode(bytes: Vec<u8>) -> (Compression, Vec<u8>) {
    let (kind, mut r) = decompress(std::io::Cursor::new(bytes)).unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    (kind, out)
}

fn decode_err(bytes: Vec<u8>) -> String {
    match decompress(std::io::Cursor::new(bytes)) {
        Err(e) => e.to_string(),
        Ok((_, mut r)) => r.read_to_end(&mut Vec::new()).unwrap_err().to_string(),
    }
}

#[test]
fn detects_by_magic() {
    let t = simple_tar(10);
    assert_eq!(Compression::detect(&t), Some(Compression::None));
    assert_eq!(Compression::detect(&xz(&t)), Some(Compression::Xz));
    assert_eq!(Compression::detect(&gzip(&t)), Some(Compression::Gzip));
    assert_eq!(Compression::detect(&zstd(&t)), Some(Compression::Zstd));
    assert_eq!(
        Compression::detect(&[0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]),
        Some(Compression::Zstd)
    );
    assert_eq!(Compression::detect(b""), None);
    assert_eq!(Compression::detect(b"BZh91AY&SY"), None);
    assert_eq!(Compression::detect(&[b'x'; 600]), None);
    // An empty tar (only the end blocks).
    assert_eq!(Compression::detect(&[0u8; 1024]), Some(Compression::None));
    assert_eq!(Compression::Xz.to_string(), "xz");
}

#[test]
fn decodes_all_four_compressions() {
    let t = simple_tar(3 << 20);
    for (want, bytes) in [
        (Compression::None, t.clone()),
        (Compression::Xz, xz(&t)),
        (Compression::Xz, xz_blocks(&t)),
        (Compression::Gzip, gzip(&t)),
        (Compression::Zstd, zstd(&t)),
    ] {
        let (kind, out) = decode(bytes.clone());
        assert_eq!(kind, want);
        assert!(out == t, "{want} decodes to something else");

        // And straight into an extraction, reading the rest afterwards as the engine
        // does to hash the whole file.
        let s = sandbox();
        let (_, mut r) = decompress(std::io::Cursor::new(bytes)).unwrap();
        let stats = extract(&mut r, &s.root, &mut |_| {}).unwrap();
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert_eq!(stats.entries, 4);
        assert_eq!(std::fs::read(s.root.join("d/text")).unwrap(), b"hello");
        assert_eq!(
            std::fs::metadata(s.root.join("d/data")).unwrap().len(),
            3 << 20
        );
    }
}

#[test]
fn decodes_concatenated_streams() {
    let t = simple_tar(200_000);
    let (a, b) = t.split_at(70_001);

    // xz: two streams, with and without stream padding between them.
    let mut two = xz(a);
    two.extend(xz_blocks(b));
    assert_eq!(decode(two.clone()), (Compression::Xz, t.clone()));
    let mut padded = xz(a);
    padded.extend([0u8; 8]);
    padded.extend(xz(b));
    padded.extend([0u8; 4]);
    assert_eq!(decode(padded), (Compression::Xz, t.clone()));

    // gzip members and zstd frames.
    let mut g = gzip(a);
    g.extend(gzip(b));
    assert_eq!(decode(g), (Compression::Gzip, t.clone()));
    let mut z = zstd(a);
    z.extend(zstd(b));
    assert_eq!(decode(z), (Compression::Zstd, t.clone()));
    // A zstd file led by a skippable frame.
    let mut skip = vec![0x5a, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3];
    skip.extend(zstd(&t));
    assert_eq!(decode(skip), (Compression::Zstd, t));
}

#[test]
fn garbage_gives_clear_errors() {
    let msg = decode_err(b"<html><body>not found</body></html>".to_vec());
    assert!(msg.contains("not supported"), "{msg}");
    let msg = decode_err(b"this is certainly not an archive, just some text, long enough".to_vec());
    assert!(
        msg.starts_with("not a tar archive, nor one compressed with xz, gzip or zstd"),
        "{msg}"
    );
    assert_eq!(decode_err(Vec::new()), "the archive is empty");
    assert!(decode_err(b"BZh91AY&SY....".to_vec()).contains("bzip2"));
    match decompress(std::io::Cursor::new(b"nope".to_vec())) {
        Err(ArchiveError::Format(_)) => {}
        other => panic!("expected a format error, got {:?}", other.map(|(k, _)| k)),
    }

    let t = simple_tar(100_000);
    // Magic, then garbage.
    let mut bad = b"\xfd7zXZ\x00".to_vec();
    bad.extend(Rng(7).bytes(1000));
    assert!(decode_err(bad).starts_with("xz: "));
    // Truncated streams.
    let x = xz(&t);
    assert!(decode_err(x[..x.len() / 2].to_vec()).contains("truncated"));
    let g = gzip(&t);
    assert!(!decode_err(g[..g.len() / 2].to_vec()).is_empty());
    let z = zstd(&t);
    assert!(!decode_err(z[..z.len() / 2].to_vec()).is_empty());
    // After an xz stream: padding that is not a multiple of four, or trailing garbage.
    let mut p = x.clone();
    p.extend([0u8; 3]);
    assert!(decode_err(p).contains("padding"));
    let mut g2 = x.clone();
    g2.extend(b"garbage");
    assert!(decode_err(g2).contains("trailing data"));

    // A corrupt tar inside good compression: a read error, not a panic.
    let mut broken = t.clone();
    broken[600..700].fill(0xff);
    broken[148] ^= 0x01;
    let s = sandbox();
    let (_, r) = decompress(std::io::Cursor::new(xz(&broken))).unwrap();
    let err = extract(r, &s.root, &mut |_| {}).unwrap_err();
    assert!(
        err.to_string().starts_with("reading the archive: "),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// fuzz-ish

#[test]
fn random_bytes_never_panic() {
    let s = sandbox();
    let before = snapshot(&s.outside);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let prefixes: [&[u8]; 5] = [b"", b"\xfd7zXZ\x00", b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b""];
    for i in 0..400 {
        let len = rng.below(3000) as usize;
        let mut bytes = prefixes[i % prefixes.len()].to_vec();
        bytes.extend(rng.bytes(len));
        if i % 5 == 4 && bytes.len() > 262 {
            bytes[257..262].copy_from_slice(b"ustar");
        }
        let dest = s.root.join(format!("r{i}"));
        std::fs::create_dir(&dest).unwrap();
        if let Ok((_, mut r)) = decompress(std::io::Cursor::new(bytes.clone())) {
            let _ = extract(&mut r, &dest, &mut |_| {});
        }
        let _ = extract(&bytes[..], &dest, &mut |_| {});
    }
    assert_eq!(snapshot(&s.outside), before);
}

/// Positions of the headers in a tar archive, to re-checksum them after mutation.
fn header_positions(t: &[u8]) -> Vec<usize> {
    let mut a = tar::Archive::new(t);
    a.entries()
        .unwrap()
        .raw(true)
        .map(|e| e.unwrap().raw_header_position() as usize)
        .collect()
}

#[test]
fn mutated_archives_never_escape() {
    let s = sandbox();
    let before = snapshot(&s.outside);
    let outside = s.outside.to_str().unwrap().to_string();
    let base = Tar::new()
        .dir("a/")
        .file("a/f", b"data data data")
        .symlink("a/up", "..")
        .symlink("a/out", "../../outside")
        .symlink("abs", &outside)
        .hardlink("a/h", "a/f")
        .file("a/g", b"more")
        .node("a/fifo", EntryType::Fifo, 0, 0, 0o644)
        .pax(&[("path", b"a/long/pax/name"), ("SCHILY.xattr.user.x", b"y")])
        .file("short", b"pax")
        .bytes();
    let headers = header_positions(&base);
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for i in 0..400 {
        let mut t = base.clone();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(t.len() as u64) as usize;
            t[at] = match rng.below(4) {
                0 => b'/',
                1 => b'.',
                2 => 0,
                _ => rng.next_u64() as u8,
            };
        }
        if i % 2 == 0 {
            for &h in &headers {
                let mut header = Header::new_old();
                header.as_mut_bytes().copy_from_slice(&t[h..h + 512]);
                header.set_cksum();
                t[h..h + 512].copy_from_slice(header.as_bytes());
            }
        }
        let dest = s.root.join(format!("m{}", i % 20));
        std::fs::create_dir_all(&dest).unwrap();
        let _ = extract(&t[..], &dest, &mut |_| {});
    }
    assert_eq!(snapshot(&s.outside), before);
    let names: Vec<_> = std::fs::read_dir(&s.base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

// ---------------------------------------------------------------------------------------
// OCI layers: whiteouts, opaque directories, directories replaced whole

/// The lower layers of the layer tests: files, a full directory, a symlink out.
fn lower(s: &Sandbox) {
    let r = &s.root;
    std::fs::create_dir_all(r.join("a")).unwrap();
    std::fs::write(r.join("a/x"), b"x").unwrap();
    std::fs::write(r.join("a/y"), b"y").unwrap();
    std::fs::create_dir_all(r.join("b/deep/er")).unwrap();
    std::fs::write(r.join("b/deep/er/f"), b"f").unwrap();
    std::fs::create_dir_all(r.join("d/old")).unwrap();
    std::fs::write(r.join("d/old/f"), b"old").unwrap();
    std::fs::write(r.join("d/old-file"), b"old").unwrap();
    std::fs::create_dir_all(r.join("e/full")).unwrap();
    std::fs::write(r.join("e/full/f"), b"f").unwrap();
    std::fs::write(r.join("c"), b"c").unwrap();
    std::os::unix::fs::symlink(&s.outside, r.join("out")).unwrap();
    std::os::unix::fs::symlink("a", r.join("rel")).unwrap();
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

#[test]
fn layers_apply_whiteouts_and_opaque_directories() {
    let s = sandbox();
    lower(&s);
    let before_outside = snapshot(&s.outside);
    let layer = Tar::new()
        // A file whited out, and a directory with everything in it.
        .file("a/.wh.x", b"")
        .file(".wh.b", b"")
        // An opaque directory: what this layer put there before and after the marker
        // stays, the lower layers' contents go.
        .dir("d")
        .file("d/early", b"early")
        .file("d/.wh..wh..opq", b"")
        .file("d/late", b"late")
        // A directory replacing a file, a file replacing a full directory.
        .dir("c")
        .file("c/inside", b"i")
        .file("e", b"now a file")
        // A whiteout through a symlink that stays inside: removes a/y.
        .file("rel/.wh.y", b"")
        // A whiteout of what is not there: nothing happens.
        .file(".wh.nothing", b"")
        .file("nowhere/.wh.x", b"")
        // The symlink itself whited out (not what it points at).
        .file(".wh.out", b"")
        .bytes();
    apply_layer(&layer[..], &s.root, &mut |_| {}).unwrap();
    let r = &s.root;
    assert!(!exists(&r.join("a/x")) && !exists(&r.join("a/y")));
    assert!(exists(&r.join("a")));
    assert!(!exists(&r.join("b")));
    assert!(!exists(&r.join("d/old")) && !exists(&r.join("d/old-file")));
    assert_eq!(std::fs::read(r.join("d/early")).unwrap(), b"early");
    assert_eq!(std::fs::read(r.join("d/late")).unwrap(), b"late");
    assert!(!exists(&r.join("d/.wh..wh..opq")));
    assert_eq!(std::fs::read(r.join("c/inside")).unwrap(), b"i");
    assert_eq!(std::fs::read(r.join("e")).unwrap(), b"now a file");
    assert!(!exists(&r.join(".wh.nothing")) && !exists(&r.join("nowhere")));
    assert!(!exists(&r.join("out")));
    assert_eq!(snapshot(&s.outside), before_outside, "the outside changed");
    // Without the layer rules, a whiteout is a plain file and nothing is removed.
    let s2 = sandbox();
    lower(&s2);
    run(&Tar::new().file("a/.wh.x", b"").bytes(), &s2.root).unwrap();
    assert!(exists(&s2.root.join("a/x")) && exists(&s2.root.join("a/.wh.x")));
}

#[test]
fn hostile_whiteouts_are_refused_and_touch_nothing_outside() {
    for (entry, why) in [
        (".wh..", "whiteout of \".\""),
        ("a/.wh...", "whiteout of \"..\""),
        (".wh.", "whiteout of \"\""),
        (".wh..zfs", "whiteout of \".zfs\""),
        // Through a symlink that leaves the root.
        ("out/.wh.canary", "out"),
        ("out/sub/.wh..wh..opq", "out"),
    ] {
        let s = sandbox();
        lower(&s);
        let before = snapshot(&s.outside);
        let inside = snapshot(&s.root);
        let layer = Tar::new().file(entry, b"").bytes();
        let err = apply_layer(&layer[..], &s.root, &mut |_| {})
            .expect_err("a hostile whiteout is refused");
        let msg = err.to_string();
        assert!(
            matches!(err, ArchiveError::UnsafeEntry { .. }),
            "{entry}: {msg}"
        );
        assert!(msg.contains(why), "{entry}: {msg}");
        assert_eq!(snapshot(&s.outside), before, "{entry}: the outside changed");
        assert_eq!(snapshot(&s.root), inside, "{entry}: the root changed");
    }
    // `..` in the path is refused before any whiteout rule.
    let s = sandbox();
    lower(&s);
    let layer = Tar::new().file("a/../../.wh.outside", b"").bytes();
    assert!(apply_layer(&layer[..], &s.root, &mut |_| {}).is_err());
    assert!(exists(&s.outside.join("canary")));
}
