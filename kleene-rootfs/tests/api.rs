//! The operations one by one, with the tests of the resolvers this crate replaced
//! (kleene-core's `rootfs`, kleene-jail's `passwd` walk) kept as they were.

use std::os::unix::fs::symlink;
use std::path::Path;

use kleene_rootfs::{clean, Error, Mkdir, OFlags, RootDir, Symlinks};

fn dirs() -> (tempfile::TempDir, tempfile::TempDir, RootDir) {
    let root = tempfile::tempdir().expect("a root");
    let outside = tempfile::tempdir().expect("an outside");
    let dir = RootDir::open(root.path()).expect("opening the root");
    (root, outside, dir)
}

/// kleene-core's `open_dir_in_root` test, now `FollowInRoot`.
#[test]
fn follows_symlinks_inside_and_refuses_escapes() -> Result<(), Error> {
    let (root, outside, dir) = dirs();
    let r = root.path();
    std::fs::create_dir_all(r.join("usr/home")).expect("mkdir");
    symlink("usr/home", r.join("home")).expect("symlink");
    symlink("/usr", r.join("abs")).expect("symlink");
    symlink("../../../../../..", r.join("up")).expect("symlink");
    symlink(outside.path(), r.join("host")).expect("symlink");
    let made = dir.resolve_dir("/home/app", Symlinks::FollowInRoot, Some(Mkdir::default()))?;
    assert_eq!(made.path, Path::new("usr/home/app"));
    assert!(r.join("usr/home/app").is_dir());
    // An absolute target is read inside the root, not on the host.
    drop(dir.open_dir("abs/x", Symlinks::FollowInRoot, true)?);
    assert!(r.join("usr/x").is_dir());
    drop(dir.open_dir("host/y", Symlinks::FollowInRoot, true)?);
    assert!(!outside.path().join("y").exists());
    let rel = outside.path().strip_prefix("/").expect("an absolute path");
    assert!(r.join(rel).join("y").is_dir());
    let err = dir
        .open_dir("up/z", Symlinks::FollowInRoot, true)
        .expect_err("climbing out");
    assert!(err.to_string().contains("leads out of the root"), "{err}");
    assert!(err.to_string().contains("up -> ../../../../../.."), "{err}");
    // Lexical `..` stops at the root.
    assert_eq!(clean("/a/../../b/./c/"), ["b", "c"]);
    std::fs::write(r.join("file"), "x").expect("write");
    let err = dir
        .open_dir("file/z", Symlinks::FollowInRoot, false)
        .expect_err("a file on the way");
    assert!(err.to_string().contains("not a directory"), "{err}");
    Ok(())
}

/// kleene-core's `write_file` test, now `Refuse` (how image creation writes
/// /etc/resolv.conf).
#[test]
fn writes_inside_and_refuses_symlinks_out() -> Result<(), Error> {
    // The root's parent is the test's own, so that nothing else can put an `x` there.
    let base = tempfile::tempdir().expect("a base");
    let outside = tempfile::tempdir().expect("an outside");
    let r = &base.path().join("root");
    std::fs::create_dir(r).expect("mkdir");
    let dir = RootDir::open(r)?;
    dir.write_file(
        "/etc/resolv.conf",
        Symlinks::Refuse,
        b"nameserver 1.1.1.1\n",
        0o644,
    )?;
    assert_eq!(
        std::fs::read_to_string(r.join("etc/resolv.conf")).expect("read"),
        "nameserver 1.1.1.1\n"
    );
    // A symlinked file is replaced, not written through.
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "host").expect("write");
    symlink(&victim, r.join("etc/localtime")).expect("symlink");
    dir.write_file("etc/localtime", Symlinks::Refuse, b"tz", 0o644)?;
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "host");
    assert_eq!(std::fs::read(r.join("etc/localtime")).expect("read"), b"tz");
    // A symlinked directory is refused.
    symlink(outside.path(), r.join("evil")).expect("symlink");
    let err = dir
        .write_file("evil/x", Symlinks::Refuse, b"x", 0o644)
        .expect_err("a symlink on the way");
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(!outside.path().join("x").exists());
    assert!(dir
        .write_file("../x", Symlinks::Refuse, b"x", 0o644)
        .is_err());
    assert!(!base.path().join("x").exists());
    Ok(())
}

/// kleene-jail's passwd test: a container's /etc/passwd read without leaving its root.
#[test]
fn reads_files_without_escaping_the_root() -> Result<(), Error> {
    let base = tempfile::tempdir().expect("a base");
    let root = base.path().join("root");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::write(base.path().join("outside"), "evil:x:0:0::/:/bin/sh\n").expect("write");
    std::fs::write(root.join("etc/group"), "root:x:0:\n").expect("write");
    symlink(base.path().join("outside"), root.join("etc/passwd")).expect("symlink");
    let dir = RootDir::open(&root)?;
    let follow = Symlinks::FollowInRoot;
    // The absolute link is resolved inside the root, where it leads nowhere.
    let err = dir
        .read_file("etc/passwd", follow, 1 << 20)
        .expect_err("dangling");
    assert!(err.is_not_found(), "{err}");
    // Refused outright without following.
    let err = dir
        .open_file("etc/passwd", Symlinks::Refuse, OFlags::RDONLY, 0)
        .expect_err("a symlink");
    assert!(matches!(err, Error::Symlink { .. }), "{err}");
    for policy in [Symlinks::Refuse, Symlinks::FollowBeneath, follow] {
        let err = dir
            .open_file("../outside", policy, OFlags::RDONLY, 0)
            .expect_err("climbing out");
        assert!(matches!(err, Error::Escape { via: None, .. }), "{err}");
    }
    assert_eq!(dir.read_file("etc/group", follow, 100)?, b"root:x:0:\n");
    // A relative link climbing out is refused.
    std::fs::remove_file(root.join("etc/passwd")).expect("rm");
    symlink("../../outside", root.join("etc/passwd")).expect("symlink");
    let err = dir
        .read_file("etc/passwd", follow, 1 << 20)
        .expect_err("climbing");
    assert!(err.is_refusal(), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "etc/passwd in {}: a symlink on the way leads out of the root (etc/passwd -> ../../outside)",
            root.display()
        )
    );
    // One staying inside is followed, the last component's too.
    std::fs::remove_file(root.join("etc/passwd")).expect("rm");
    std::fs::create_dir(root.join("lib")).expect("mkdir");
    std::fs::write(root.join("lib/passwd"), "alice:x:1:1::/:/bin/sh\n").expect("write");
    symlink("../lib/passwd", root.join("etc/passwd")).expect("symlink");
    assert_eq!(
        dir.read_file("etc/passwd", follow, 100)?,
        b"alice:x:1:1::/:/bin/sh\n"
    );
    assert_eq!(dir.resolve("/etc/passwd", follow)?, Path::new("lib/passwd"));
    Ok(())
}

#[test]
fn policies_differ_on_relative_and_absolute_links() -> Result<(), Error> {
    let (root, _outside, dir) = dirs();
    let r = root.path();
    std::fs::create_dir_all(r.join("usr/lib")).expect("mkdir");
    symlink("usr/lib", r.join("lib")).expect("symlink");
    symlink("/usr/lib", r.join("alib")).expect("symlink");
    let err = dir.resolve("lib", Symlinks::Refuse).expect_err("refused");
    assert!(matches!(&err, Error::Symlink { link, .. } if link.path == Path::new("lib")));
    assert_eq!(
        dir.resolve("lib", Symlinks::FollowBeneath)?,
        Path::new("usr/lib")
    );
    assert_eq!(
        dir.resolve("lib/", Symlinks::FollowInRoot)?,
        Path::new("usr/lib")
    );
    let err = dir
        .resolve("alib/x", Symlinks::FollowBeneath)
        .expect_err("absolute");
    assert!(
        err.to_string()
            .ends_with("symlink alib -> /usr/lib points outside the root"),
        "{err}"
    );
    assert_eq!(
        dir.resolve("alib", Symlinks::FollowInRoot)?,
        Path::new("usr/lib")
    );
    // `..` pops what the walk came through: the link's target, not the link's parent.
    assert_eq!(
        dir.resolve("alib/..", Symlinks::FollowInRoot)?,
        Path::new("usr")
    );
    Ok(())
}

#[test]
fn loops_and_the_zfs_control_directory_are_refused() {
    let (root, _outside, dir) = dirs();
    let r = root.path();
    symlink("b", r.join("a")).expect("symlink");
    symlink("a", r.join("b")).expect("symlink");
    std::fs::create_dir(r.join(".zfs")).expect("mkdir");
    symlink(".zfs", r.join("z")).expect("symlink");
    let err = dir
        .open_dir("a/x", Symlinks::FollowInRoot, true)
        .expect_err("a loop");
    assert!(matches!(err, Error::TooManySymlinks { .. }), "{err}");
    for p in [".zfs/snapshot/x", "z/snapshot", "/./.zfs"] {
        let err = dir
            .open_dir(p, Symlinks::FollowInRoot, true)
            .expect_err(".zfs");
        assert!(matches!(err, Error::ZfsControlDir { .. }), "{p}: {err}");
    }
    let err = dir
        .write_file(".zfs", Symlinks::Refuse, b"", 0o644)
        .expect_err(".zfs");
    assert!(
        err.to_string().contains("control directory of ZFS"),
        "{err}"
    );
    assert!(!r.join(".zfs/snapshot").exists());
    // Deeper down it is an ordinary name.
    dir.write_file("home/.zfs", Symlinks::Refuse, b"x", 0o644)
        .expect("an ordinary name");
}

#[test]
fn parent_and_name_and_created_files() -> Result<(), Error> {
    let (root, outside, dir) = dirs();
    let r = root.path();
    std::fs::create_dir(r.join("real")).expect("mkdir");
    symlink("real", r.join("d")).expect("symlink");
    let (parent, name) =
        dir.parent_and_name("d/x/y", Symlinks::FollowInRoot, Some(Mkdir::default()))?;
    assert_eq!(
        (parent.path.as_path(), name.to_str()),
        (Path::new("real/x"), Some("y"))
    );
    for bad in ["", "/", "a/..", "."] {
        let err = dir
            .parent_and_name(bad, Symlinks::FollowInRoot, None)
            .expect_err("no name");
        assert!(matches!(err, Error::InvalidPath { .. }), "{bad:?}: {err}");
    }
    // create_file replaces a symlink to the outside instead of writing through it.
    symlink(outside.path().join("victim"), r.join("real/x/y")).expect("symlink");
    drop(dir.create_file("d/x/y", Symlinks::FollowInRoot, None)?);
    assert!(!outside.path().join("victim").exists());
    assert!(r
        .join("real/x/y")
        .symlink_metadata()
        .expect("lstat")
        .is_file());
    let err = dir
        .create_file("d/x", Symlinks::FollowInRoot, None)
        .expect_err("a directory");
    assert!(matches!(err, Error::DirectoryInTheWay { .. }), "{err}");
    // open_file with O_CREAT follows a dangling final symlink inside the root.
    symlink("/real/made", r.join("dangling")).expect("symlink");
    drop(dir.open_file(
        "dangling",
        Symlinks::FollowInRoot,
        OFlags::CREATE | OFlags::WRONLY,
        0o644,
    )?);
    assert!(r.join("real/made").is_file());
    let err = dir
        .open_file(
            "dangling",
            Symlinks::FollowInRoot,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY,
            0o644,
        )
        .expect_err("O_EXCL on a symlink");
    assert!(
        matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{err}"
    );
    // Owners of made directories (only root may give them away).
    if rustix::process::geteuid().is_root() {
        let made = dir.resolve_dir(
            "owned/sub",
            Symlinks::FollowInRoot,
            Some(Mkdir::owned(4321, 4400)),
        )?;
        let st = rustix::fs::fstat(&made.fd).expect("fstat");
        assert_eq!((st.st_uid, st.st_gid), (4321, 4400));
    }
    Ok(())
}

#[test]
fn read_file_limits() -> Result<(), Error> {
    let (root, _outside, dir) = dirs();
    let r = root.path();
    std::fs::write(r.join("big"), vec![b'x'; 100]).expect("write");
    assert_eq!(dir.read_file("big", Symlinks::Refuse, 100)?.len(), 100);
    let err = dir
        .read_file("big", Symlinks::Refuse, 99)
        .expect_err("too large");
    assert!(matches!(err, Error::TooLarge { max: 99, .. }), "{err}");
    let err = dir
        .read_file("/", Symlinks::Refuse, 99)
        .expect_err("a directory");
    assert!(matches!(err, Error::NotAFile { .. }), "{err}");
    // A FIFO does not block the reader.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        r.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    let err = dir
        .read_file("fifo", Symlinks::Refuse, 99)
        .expect_err("a fifo");
    assert!(matches!(err, Error::NotAFile { .. }), "{err}");
    Ok(())
}

#[test]
fn subdirectories_are_roots_of_their_own() -> Result<(), Error> {
    let (root, _outside, dir) = dirs();
    let sub = dir.open_subdir("srv/data", Symlinks::FollowInRoot, Some(Mkdir::default()))?;
    assert_eq!(sub.path(), root.path().join("srv/data"));
    sub.write_file("x", Symlinks::Refuse, b"1", 0o600)?;
    assert!(root.path().join("srv/data/x").is_file());
    let err = sub
        .resolve("../../x", Symlinks::FollowInRoot)
        .expect_err("above the subdir");
    assert!(err.is_refusal(), "{err}");
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
    Ok(())
}
