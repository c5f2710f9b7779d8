//! COPY and ADD: sources found in the build context (never outside it), written into the
//! build container's root with `*at` calls from directory fds (never through a symlink out
//! of the root). Paths in either are resolved by [`kleene_rootfs`]: see its policy table.

use std::fs::Metadata;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Timespec, Timestamps};
use sha2::{Digest, Sha256};

use super::glob::{has_meta, match_component, Ignore};
use crate::error::{CoreError, Result};
use crate::rootfs::{self, Mkdir, RootDir, Symlinks};

/// One source of a COPY: its path relative to the context (or stage root), and where it
/// is on the host, with every symlink on the way resolved inside its base.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub rel: String,
    pub host: PathBuf,
}

fn invalid(msg: impl Into<String>) -> CoreError {
    CoreError::InvalidInput(msg.into())
}

fn io_err(what: &str, p: &Path, e: impl Into<std::io::Error>) -> CoreError {
    CoreError::io(format!("{what} {}", p.display()), e.into())
}

/// How sources are found in `base`: the build context is a host directory, where an
/// absolute symlink points at the host, so only relative ones are followed; a stage's
/// root is a container root, where it points into that root.
fn source_policy(what: &str) -> Symlinks {
    if what == "build context" {
        Symlinks::FollowBeneath
    } else {
        Symlinks::FollowInRoot
    }
}

/// A source path refused for leading out of `base` (or into `.zfs`), said as Docker does.
fn outside(what: &str, rel: &str, e: &rootfs::Error) -> CoreError {
    invalid(format!("forbidden path outside the {what}: {rel} ({e})"))
}

/// Expands COPY sources (wildcards included) against `base` (the context, or a stage's
/// root for `--from`), dropping what `.dockerignore` excludes. Each literal source must
/// exist; each pattern must match something.
pub(crate) fn find_sources(
    base: &Path,
    patterns: &[String],
    ignore: Option<&Ignore>,
    what: &str,
) -> Result<Vec<Source>> {
    let excluded = |rel: &str| ignore.is_some_and(|i| i.excluded(rel));
    let base_dir = RootDir::open(base)?;
    let policy = source_policy(what);
    let mut out = Vec::new();
    for pat in patterns {
        // Lexically outside the base: refused before anything is looked at.
        let mut depth: i64 = 0;
        for c in pat.split('/') {
            match c {
                "" | "." => {}
                ".." => depth -= 1,
                _ => depth += 1,
            }
            if depth < 0 {
                return Err(invalid(format!("forbidden path outside the {what}: {pat}")));
            }
        }
        let rels: Vec<String> = if has_meta(pat) {
            let mut matches = vec![Vec::<String>::new()];
            for comp in pat.split('/').filter(|c| !c.is_empty() && *c != ".") {
                let mut next = Vec::new();
                for m in matches {
                    if comp == ".." {
                        let mut m = m;
                        m.pop();
                        next.push(m);
                        continue;
                    }
                    if !has_meta(comp) {
                        let mut m = m;
                        m.push(comp.to_string());
                        next.push(m);
                        continue;
                    }
                    let rel = m.join("/");
                    let dir = match base_dir.resolve(&rel, policy) {
                        Ok(dir) => dir,
                        Err(e) if e.is_refusal() => return Err(outside(what, &rel, &e)),
                        Err(_) => continue,
                    };
                    let Ok(entries) = std::fs::read_dir(base.join(dir)) else {
                        continue;
                    };
                    let mut names: Vec<String> = entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| match_component(comp, n))
                        .collect();
                    names.sort();
                    for n in names {
                        let mut m = m.clone();
                        m.push(n);
                        next.push(m);
                    }
                }
                matches = next;
            }
            let found: Vec<String> = matches
                .into_iter()
                .map(|m| m.join("/"))
                .filter(|r| !excluded(r))
                .collect();
            if found.is_empty() {
                return Err(invalid(format!(
                    "no source files were specified: {pat} matches nothing in the {what}"
                )));
            }
            found
        } else {
            let rel = rootfs::clean(pat).join("/");
            if !rel.is_empty() && excluded(&rel) {
                return Err(invalid(format!("{pat} is excluded by .dockerignore")));
            }
            vec![rel]
        };
        for rel in rels {
            let host = match base_dir.resolve(&rel, policy) {
                Ok(resolved) => base.join(resolved),
                Err(e) if e.is_refusal() => return Err(outside(what, &rel, &e)),
                Err(_) => {
                    return Err(invalid(format!(
                        "{} not found in the {what}",
                        if rel.is_empty() { "." } else { rel.as_str() }
                    )))
                }
            };
            out.push(Source { rel, host });
        }
    }
    Ok(out)
}

/// A digest of the sources' names, types, modes, contents and link targets (not their
/// times), for the build cache.
pub(crate) fn hash_sources(sources: &[Source], ignore: Option<&Ignore>) -> Result<String> {
    let mut h = Sha256::new();
    for s in sources {
        hash_tree(&mut h, &s.host, &s.rel, ignore, true)?;
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn hash_tree(
    h: &mut Sha256,
    p: &Path,
    rel: &str,
    ignore: Option<&Ignore>,
    top: bool,
) -> Result<()> {
    let meta = std::fs::symlink_metadata(p).map_err(|e| io_err("reading", p, e))?;
    let ft = meta.file_type();
    h.update(rel.as_bytes());
    h.update([0]);
    h.update((meta.mode() & 0o7777).to_le_bytes());
    if ft.is_symlink() {
        h.update(b"l");
        h.update(
            std::fs::read_link(p)
                .map_err(|e| io_err("reading", p, e))?
                .as_os_str()
                .as_encoded_bytes(),
        );
    } else if ft.is_dir() {
        h.update(b"d");
        let mut names: Vec<_> = std::fs::read_dir(p)
            .map_err(|e| io_err("reading", p, e))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            let child = if rel.is_empty() {
                n.clone()
            } else {
                format!("{rel}/{n}")
            };
            if ignore.is_some_and(|i| i.excluded(&child)) {
                continue;
            }
            hash_tree(h, &p.join(&n), &child, ignore, false)?;
        }
    } else if ft.is_file() {
        h.update(b"f");
        h.update(meta.len().to_le_bytes());
        let mut f = std::fs::File::open(p).map_err(|e| io_err("reading", p, e))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).map_err(|e| io_err("reading", p, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    let _ = top;
    h.update([0xff]);
    Ok(())
}

/// How copied files are owned and their modes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Perms {
    pub owner: (u32, u32),
    pub chmod: Option<u32>,
}

/// Parses `--chmod`: octal only.
pub(crate) fn parse_chmod(s: &str) -> Result<u32> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777 && !s.is_empty())
        .ok_or_else(|| {
            invalid(format!(
                "invalid --chmod {s:?}: expected an octal mode such as 755"
            ))
        })
}

/// Resolves `--chown=user[:group]` against the root's `/etc/passwd` and `/etc/group`
/// (read without leaving the root). Without a group the gid is the uid, as Docker does.
pub(crate) fn parse_chown(root: &Path, spec: &str) -> Result<(u32, u32)> {
    let passwd = kleene_jail::parse_passwd(&read_in_root(root, "passwd")?);
    let groups = kleene_jail::parse_group(&read_in_root(root, "group")?);
    let bad = |e: kleene_jail::Error| invalid(format!("invalid --chown {spec:?}: {e}"));
    let u = kleene_jail::resolve_user(spec, &passwd, &groups).map_err(bad)?;
    if spec.contains(':') {
        Ok((u.uid, u.gid))
    } else {
        Ok((u.uid, u.uid))
    }
}

/// The largest passwd/group file read (a guard against a hostile image).
const MAX_USER_FILE: u64 = 16 << 20;

/// Reads `/etc/<name>` of the root as the container would; a missing file reads as empty.
fn read_in_root(root: &Path, name: &str) -> Result<String> {
    let path = format!("etc/{name}");
    match RootDir::open(root)?.read_file(&path, Symlinks::FollowInRoot, MAX_USER_FILE) {
        Ok(data) => String::from_utf8(data).map_err(|e| {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidData, e);
            CoreError::io(format!("reading /{path}"), e)
        }),
        Err(e) if e.is_not_found() => Ok(String::new()),
        Err(e) => Err(e.into()),
    }
}

/// A destination cleaned lexically first, as Docker does (`/a/../b` is `/b` whatever `a`
/// is), then resolved in the root.
fn lexical(dest: &str) -> String {
    rootfs::clean(dest).join("/")
}

/// Whether `dest` (a path in the root) is an existing directory, symlinks followed
/// inside the root.
pub(crate) fn is_dir_in_root(root: &Path, dest: &str) -> bool {
    RootDir::open(root).is_ok_and(|r| {
        r.open_dir(lexical(dest), Symlinks::FollowInRoot, false)
            .is_ok()
    })
}

/// Makes directory `dir` (a path in the root) as `mkdir -p` in the container would
/// (WORKDIR).
pub(crate) fn make_dir(root: &Path, dir: &str) -> Result<()> {
    drop(RootDir::open(root)?.open_dir(lexical(dir), Symlinks::FollowInRoot, true)?);
    Ok(())
}

/// ADD of a local archive: extracts `archive` into directory `dest` (a path in the root,
/// made owned by `owner` when missing).
pub(crate) fn unpack(root: &Path, dest: &str, owner: (u32, u32), archive: &Source) -> Result<()> {
    let mkdir = Mkdir::owned(owner.0, owner.1);
    let dest =
        RootDir::open(root)?.open_subdir(lexical(dest), Symlinks::FollowInRoot, Some(mkdir))?;
    let file = std::fs::File::open(&archive.host)
        .map_err(|e| CoreError::io(format!("reading {}", archive.rel), e))?;
    let (_, decoded) = crate::archive::decompress(file)?;
    crate::archive::extract_into(decoded, &dest, &mut |_| {})?;
    Ok(())
}

/// Copies one source into the root: a directory's contents into directory `dest`, a
/// file or symlink to `dest` itself (`dest_is_dir`: into it, keeping its name).
pub(crate) fn place(
    root: &Path,
    src: &Source,
    dest: &str,
    dest_is_dir: bool,
    perms: Perms,
    ignore: Option<&Ignore>,
) -> Result<()> {
    let meta = std::fs::symlink_metadata(&src.host).map_err(|e| io_err("reading", &src.host, e))?;
    let root = RootDir::open(root)?;
    let mkdir = Some(Mkdir::owned(perms.owner.0, perms.owner.1));
    let dest = lexical(dest);
    if meta.is_dir() {
        let fd = root.resolve_dir(&dest, Symlinks::FollowInRoot, mkdir)?.fd;
        return copy_dir_contents(&src.host, &src.rel, &fd, perms, ignore);
    }
    let (fd, name) = if dest_is_dir {
        let name = src
            .host
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| invalid(format!("source {} has no name", src.rel)))?;
        (
            root.resolve_dir(&dest, Symlinks::FollowInRoot, mkdir)?.fd,
            name,
        )
    } else {
        if dest.is_empty() {
            return Err(invalid("cannot copy a file onto /".to_string()));
        }
        let (parent, name) = root.parent_and_name(&dest, Symlinks::FollowInRoot, mkdir)?;
        (parent.fd, name.to_string_lossy().into_owned())
    };
    copy_entry(&src.host, &meta, &fd, &name, &src.rel, perms, ignore)
}

/// Writes `data` as file `dest` in the root (COPY heredocs, ADD downloads).
pub(crate) fn write_data(
    root: &Path,
    dest: &str,
    data: &[u8],
    mode: u32,
    perms: Perms,
) -> Result<()> {
    let clean = lexical(dest);
    if clean.is_empty() {
        return Err(invalid("cannot write a file onto /".to_string()));
    }
    let mkdir = Some(Mkdir::owned(perms.owner.0, perms.owner.1));
    let root = RootDir::open(root)?;
    let (dir, name) = root.parent_and_name(&clean, Symlinks::FollowInRoot, mkdir)?;
    let f = create_file(&dir.fd, &name.to_string_lossy(), dest)?;
    let mut file = std::fs::File::from(f);
    std::io::Write::write_all(&mut file, data)
        .map_err(|e| CoreError::io(format!("writing {dest}"), e))?;
    finish_fd(&file, perms, mode, dest)
}

fn copy_dir_contents(
    src: &Path,
    rel: &str,
    dir: &OwnedFd,
    perms: Perms,
    ignore: Option<&Ignore>,
) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .map_err(|e| io_err("reading", src, e))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let child_rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if ignore.is_some_and(|i| i.excluded(&child_rel)) {
            continue;
        }
        let p = e.path();
        let meta = std::fs::symlink_metadata(&p).map_err(|e| io_err("reading", &p, e))?;
        copy_entry(&p, &meta, dir, &name, &child_rel, perms, ignore)?;
    }
    Ok(())
}

fn times(meta: &Metadata) -> Timestamps {
    let t = Timespec {
        tv_sec: meta.mtime(),
        tv_nsec: meta.mtime_nsec() as _,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn in_the_way(shown: &str, e: std::io::Error, what: &str) -> CoreError {
    if e.kind() == std::io::ErrorKind::IsADirectory {
        invalid(format!("cannot copy to {shown}: a directory is in the way"))
    } else {
        CoreError::io(format!("{what} {shown}"), e)
    }
}

/// Removes what is at `name` unless it is a directory (refused: a directory is in the way).
fn clear(dir: &OwnedFd, name: &str, shown: &str) -> Result<()> {
    rootfs::remove_at(dir, name).map_err(|e| in_the_way(shown, e, "replacing"))
}

/// A new file `name`, replacing what is there (never written through a symlink).
fn create_file(dir: &OwnedFd, name: &str, shown: &str) -> Result<OwnedFd> {
    rootfs::replace_file_at(dir, name).map_err(|e| in_the_way(shown, e, "creating"))
}

/// A permission mode for rustix, whose raw mode is `u32` on Linux and `u16` on FreeBSD.
#[allow(clippy::unnecessary_cast)]
fn raw_mode(mode: u32) -> Mode {
    Mode::from_raw_mode((mode & 0o7777) as rustix::fs::RawMode)
}

fn finish_fd(fd: &impl std::os::fd::AsFd, perms: Perms, mode: u32, shown: &str) -> Result<()> {
    rfs::fchown(
        fd,
        Some(rfs::Uid::from_raw(perms.owner.0)),
        Some(rfs::Gid::from_raw(perms.owner.1)),
    )
    .map_err(|e| CoreError::io(format!("chown {shown}"), e.into()))?;
    // After chown, which clears setuid bits.
    rfs::fchmod(fd, raw_mode(perms.chmod.unwrap_or(mode)))
        .map_err(|e| CoreError::io(format!("chmod {shown}"), e.into()))?;
    Ok(())
}

fn copy_entry(
    src: &Path,
    meta: &Metadata,
    dir: &OwnedFd,
    name: &str,
    rel: &str,
    perms: Perms,
    ignore: Option<&Ignore>,
) -> Result<()> {
    let ft = meta.file_type();
    let mode = meta.permissions().mode() & 0o7777;
    if ft.is_symlink() {
        let target = std::fs::read_link(src).map_err(|e| io_err("reading", src, e))?;
        clear(dir, name, rel)?;
        rfs::symlinkat(target.as_path(), dir, name)
            .map_err(|e| CoreError::io(format!("creating symlink {rel}"), e.into()))?;
        rfs::chownat(
            dir,
            name,
            Some(rfs::Uid::from_raw(perms.owner.0)),
            Some(rfs::Gid::from_raw(perms.owner.1)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| CoreError::io(format!("chown {rel}"), e.into()))?;
        let _ = rfs::utimensat(dir, name, &times(meta), AtFlags::SYMLINK_NOFOLLOW);
    } else if ft.is_dir() {
        match rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(CoreError::io(format!("creating {rel}"), e.into())),
        }
        let sub = match rfs::openat(
            dir,
            name,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(_) => {
                // A file or symlink is where the directory goes: it is replaced.
                clear(dir, name, rel)?;
                rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700))
                    .map_err(|e| CoreError::io(format!("creating {rel}"), e.into()))?;
                rfs::openat(
                    dir,
                    name,
                    OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| CoreError::io(format!("opening {rel}"), e.into()))?
            }
        };
        copy_dir_contents(src, rel, &sub, perms, ignore)?;
        finish_fd(&sub, perms, mode, rel)?;
        let _ = rfs::futimens(&sub, &times(meta));
    } else if ft.is_file() {
        let fd = create_file(dir, name, rel)?;
        let mut out = std::fs::File::from(fd);
        let mut input = std::fs::File::open(src).map_err(|e| io_err("reading", src, e))?;
        std::io::copy(&mut input, &mut out).map_err(|e| io_err("copying", src, e))?;
        finish_fd(&out, perms, mode, rel)?;
        let _ = rfs::futimens(&out, &times(meta));
    }
    // Sockets, fifos and devices are not build content.
    Ok(())
}
