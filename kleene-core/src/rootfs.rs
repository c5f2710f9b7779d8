//! Writing into a container or image root without ever leaving it.
//!
//! A root is untrusted: `/etc` may be a symlink to the host's `/etc`. Paths inside it are
//! therefore walked one component at a time from a directory fd with `O_NOFOLLOW`, and
//! files are made with the `*at` calls relative to their parent's fd: a symlink anywhere
//! on the way is refused, never followed.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use rustix::fs::{self as rfs, Mode, OFlags};

use crate::error::{CoreError, Result};

/// A permission mode for rustix, whose raw mode is `u32` on Linux and `u16` on FreeBSD.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn raw_mode(mode: u32) -> Mode {
    Mode::from_raw_mode((mode & 0o7777) as rustix::fs::RawMode)
}

fn refuse(root: &Path, rel: &str, why: &str) -> CoreError {
    CoreError::InvalidInput(format!(
        "refusing to write {rel} in {}: {why}",
        root.display()
    ))
}

/// The components of `rel` (absolute or relative, meant inside the root), refusing `..`.
fn components<'a>(root: &Path, rel: &'a str) -> Result<Vec<&'a str>> {
    let mut out = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => {
                out.push(s.to_str().ok_or_else(|| refuse(root, rel, "not UTF-8"))?)
            }
            Component::ParentDir => return Err(refuse(root, rel, "the path contains '..'")),
            Component::Prefix(_) => return Err(refuse(root, rel, "unexpected path prefix")),
        }
    }
    Ok(out)
}

fn open_root(root: &Path) -> Result<OwnedFd> {
    rfs::open(
        root,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| CoreError::io(format!("opening {}", root.display()), e.into()))
}

/// Opens directory `dirs` below `root`, creating missing ones (mode 0755, root-owned),
/// refusing symlinks.
pub fn open_dir(root: &Path, rel: &str, create: bool) -> Result<OwnedFd> {
    let mut fd = open_root(root)?;
    for c in components(root, rel)? {
        if create {
            match rfs::mkdirat(&fd, c, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => {
                    return Err(CoreError::io(
                        format!("creating {rel} in {}", root.display()),
                        e.into(),
                    ))
                }
            }
        }
        fd = rfs::openat(
            &fd,
            c,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
                refuse(root, rel, &format!("{c} is a symlink or not a directory"))
            }
            e => CoreError::io(format!("opening {rel} in {}", root.display()), e.into()),
        })?;
    }
    Ok(fd)
}

/// Writes `contents` to `rel` inside `root` (mode `mode`), replacing a file or symlink that
/// is there; parent directories are created. Nothing outside `root` is ever touched.
pub fn write_file(root: &Path, rel: &str, contents: &[u8], mode: u32) -> Result<()> {
    let parts = components(root, rel)?;
    let Some((name, dirs)) = parts.split_last() else {
        return Err(refuse(root, rel, "empty path"));
    };
    let dir = open_dir(root, &dirs.join("/"), true)?;
    match rfs::unlinkat(&dir, *name, rfs::AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(rustix::io::Errno::ISDIR) | Err(rustix::io::Errno::PERM) => {
            return Err(refuse(root, rel, "a directory is in the way"))
        }
        Err(e) => return Err(CoreError::io(format!("replacing {rel}"), e.into())),
    }
    let fd = rfs::openat(
        &dir,
        *name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        raw_mode(mode),
    )
    .map_err(|e| CoreError::io(format!("creating {rel} in {}", root.display()), e.into()))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(contents)
        .map_err(|e| CoreError::io(format!("writing {rel} in {}", root.display()), e))?;
    rfs::fchmod(&file, raw_mode(mode))
        .map_err(|e| CoreError::io(format!("chmod {rel}"), e.into()))?;
    Ok(())
}

/// The most symlinks followed while resolving one path, as Linux's limit.
const MAX_SYMLINKS: usize = 40;

/// Cleans an absolute or relative path lexically, the way `path.Clean` does for a path
/// inside a root: `.` and empty components go, `..` removes the previous component and
/// stops at the root. Returns the components.
pub fn clean(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    out
}

/// Opens directory `rel` below `root` as a process chrooted to `root` would find it:
/// symlinks on the way are followed, but inside the root (an absolute target starts again
/// at the root), and a symlink whose `..` would climb above the root is refused. Every
/// step is an `openat(O_NOFOLLOW)` from the previous directory's fd, so nothing outside
/// `root` is ever opened. With `create`, missing directories are made (mode 0755, owned by
/// `owner` when given, else by the caller).
pub fn open_dir_in_root(
    root: &Path,
    rel: &str,
    create: bool,
    owner: Option<(u32, u32)>,
) -> Result<OwnedFd> {
    resolve_dir_in_root(root, rel, create, owner).map(|(fd, _)| fd)
}

/// [`open_dir_in_root`], also giving the directory's path below the root with every
/// symlink resolved (`usr/home/app` for `home/app` when `home` links to `usr/home`).
pub fn resolve_dir_in_root(
    root: &Path,
    rel: &str,
    create: bool,
    owner: Option<(u32, u32)>,
) -> Result<(OwnedFd, String)> {
    let mut stack: Vec<OwnedFd> = vec![open_root(root)?];
    let mut names: Vec<String> = Vec::new();
    let mut queue: std::collections::VecDeque<String> = clean(rel).into();
    let mut links = 0;
    while let Some(c) = queue.pop_front() {
        if c == "." || c.is_empty() {
            continue;
        }
        if c == ".." {
            if stack.len() > 1 {
                stack.pop();
                names.pop();
                continue;
            }
            return Err(refuse(
                root,
                rel,
                "a symlink on the way leads out of the root",
            ));
        }
        let cur = stack.last().expect("the root stays on the stack");
        if create {
            match rfs::mkdirat(cur, c.as_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) => {
                    if let Some((uid, gid)) = owner {
                        rfs::chownat(
                            cur,
                            c.as_str(),
                            Some(rustix::fs::Uid::from_raw(uid)),
                            Some(rustix::fs::Gid::from_raw(gid)),
                            rfs::AtFlags::SYMLINK_NOFOLLOW,
                        )
                        .map_err(|e| CoreError::io(format!("chown {rel}"), e.into()))?;
                    }
                }
                Err(rustix::io::Errno::EXIST) => {}
                Err(e) => {
                    return Err(CoreError::io(
                        format!("creating {rel} in {}", root.display()),
                        e.into(),
                    ))
                }
            }
        }
        match rfs::openat(
            cur,
            c.as_str(),
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                stack.push(fd);
                names.push(c);
            }
            Err(open_err) => match rfs::readlinkat(cur, c.as_str(), Vec::new()) {
                Ok(target) => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(refuse(root, rel, "too many symlinks"));
                    }
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        stack.truncate(1);
                        names.clear();
                    }
                    for part in target.split('/').rev() {
                        queue.push_front(part.to_string());
                    }
                }
                Err(_) => {
                    return Err(match open_err {
                        rustix::io::Errno::NOTDIR => {
                            refuse(root, rel, &format!("{c} is not a directory"))
                        }
                        e => {
                            CoreError::io(format!("opening {rel} in {}", root.display()), e.into())
                        }
                    })
                }
            },
        }
    }
    let fd = stack.pop().expect("the root stays on the stack");
    Ok((fd, names.join("/")))
}

#[cfg(test)]
mod in_root_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn follows_symlinks_inside_and_refuses_escapes() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/home")).unwrap();
        symlink("usr/home", root.path().join("home")).unwrap();
        symlink("/usr", root.path().join("abs")).unwrap();
        symlink("../../../../../..", root.path().join("up")).unwrap();
        symlink(outside.path(), root.path().join("host")).unwrap();
        drop(open_dir_in_root(root.path(), "/home/app", true, None).unwrap());
        assert!(root.path().join("usr/home/app").is_dir());
        // An absolute target is read inside the root, not on the host.
        drop(open_dir_in_root(root.path(), "abs/x", true, None).unwrap());
        assert!(root.path().join("usr/x").is_dir());
        drop(open_dir_in_root(root.path(), "host/y", true, None).unwrap());
        assert!(!outside.path().join("y").exists());
        assert!(root
            .path()
            .join(outside.path().strip_prefix("/").unwrap())
            .join("y")
            .is_dir());
        let err = open_dir_in_root(root.path(), "up/z", true, None).unwrap_err();
        assert!(err.to_string().contains("leads out of the root"), "{err}");
        // Lexical `..` stops at the root.
        assert_eq!(clean("/a/../../b/./c/"), ["b", "c"]);
        std::fs::write(root.path().join("file"), "x").unwrap();
        let err = open_dir_in_root(root.path(), "file/z", false, None).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn writes_inside_and_refuses_symlinks_out() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write_file(
            root.path(),
            "/etc/resolv.conf",
            b"nameserver 1.1.1.1\n",
            0o644,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(root.path().join("etc/resolv.conf")).unwrap(),
            "nameserver 1.1.1.1\n"
        );
        // A symlinked file is replaced, not written through.
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "host").unwrap();
        symlink(&victim, root.path().join("etc/localtime")).unwrap();
        write_file(root.path(), "etc/localtime", b"tz", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host");
        // A symlinked directory is refused.
        symlink(outside.path(), root.path().join("evil")).unwrap();
        let err = write_file(root.path(), "evil/x", b"x", 0o644).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(!outside.path().join("x").exists());
        assert!(write_file(root.path(), "../x", b"x", 0o644).is_err());
    }
}
