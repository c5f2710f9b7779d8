//! Directory trees for the memory backend: copy, clear, compare, measure, and a simple
//! stream format for send and receive.
//!
//! Every function takes `skip`: directories below the tree's root that are mountpoints of
//! other filesystems. Like ZFS, a filesystem's content stops there: a skipped directory is
//! an empty directory in a copy, is kept (with what is in it) when the tree is cleared,
//! and counts as empty when trees are compared or measured.

use std::ffi::OsString;
use std::fs::{self, File, FileTimes, Metadata, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first bytes of every stream: what `zfs receive` checks as its magic number.
pub(crate) const MAGIC: &[u8] = b"KLEENE-ZFS-MEMORY-STREAM-1\n";

fn is_skipped(path: &Path, skip: &[PathBuf]) -> bool {
    skip.iter().any(|s| s == path)
}

/// Whether `dir` is a directory that leads to a skipped one (so it must be kept).
fn leads_to_skipped(path: &Path, skip: &[PathBuf]) -> bool {
    skip.iter().any(|s| s != path && s.starts_with(path))
}

/// Sets the mode, owner (where permitted) and modification time of `path` after `meta`.
fn apply_metadata(path: &Path, meta: &Metadata) -> io::Result<()> {
    apply(
        path,
        meta.mode(),
        meta.uid(),
        meta.gid(),
        meta.modified().ok(),
        meta.is_symlink(),
    )
}

fn apply(
    path: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Option<SystemTime>,
    symlink: bool,
) -> io::Result<()> {
    let current = fs::symlink_metadata(path)?;
    if current.uid() != uid || current.gid() != gid {
        // Only root may give files away; without it the copy stays the caller's own.
        if let Err(e) = std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
            if e.kind() != io::ErrorKind::PermissionDenied {
                return Err(e);
            }
        }
    }
    if symlink {
        return Ok(());
    }
    fs::set_permissions(path, Permissions::from_mode(mode & 0o7777))?;
    if let Some(mtime) = mtime {
        // Opening for reading works on directories too; futimens needs no write access.
        if let Ok(f) = File::open(path) {
            let _ = f.set_times(FileTimes::new().set_modified(mtime));
        }
    }
    Ok(())
}

/// Removes a file, symlink or directory tree, making directories writable where that is
/// what stops it (a tree with a `0555` directory, as a non-root caller).
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    if fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    make_writable(path)?;
    fs::remove_dir_all(path)
}

fn make_writable(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    fs::set_permissions(dir, Permissions::from_mode(0o700))?;
    for entry in fs::read_dir(dir)? {
        make_writable(&entry?.path())?;
    }
    Ok(())
}

/// Copies the content of `src` into the directory `dst` (made if missing; what is in it
/// stays unless replaced), with modes, owners (as root) and modification times. Devices,
/// fifos and sockets are left out; hard links become separate files.
pub(crate) fn copy(src: &Path, dst: &Path, skip: &[PathBuf]) -> io::Result<()> {
    if !dst.exists() {
        fs::create_dir_all(dst)?;
    }
    copy_dir(src, dst, skip)?;
    apply_metadata(dst, &fs::symlink_metadata(src)?)
}

fn copy_dir(src: &Path, dst: &Path, skip: &[PathBuf]) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            if !to.is_dir() {
                fs::create_dir(&to)?;
            }
            if !is_skipped(&from, skip) {
                copy_dir(&from, &to, skip)?;
            }
            apply_metadata(&to, &meta)?;
        } else if kind.is_file() {
            fs::copy(&from, &to)?;
            apply_metadata(&to, &meta)?;
        } else if kind.is_symlink() {
            if fs::symlink_metadata(&to).is_ok() {
                remove(&to)?;
            }
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
            apply_metadata(&to, &meta)?;
        } else {
            log::warn!(
                "memory zfs: {} is a device, fifo or socket: not copied",
                from.display()
            );
        }
    }
    Ok(())
}

/// Empties `dir` except for the skipped directories (and the directories leading to them).
pub(crate) fn clear(dir: &Path, skip: &[PathBuf]) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if is_skipped(&path, skip) {
            continue;
        }
        if leads_to_skipped(&path, skip) {
            clear(&path, skip)?;
        } else {
            remove(&path)?;
        }
    }
    Ok(())
}

/// The bytes of the regular files in the tree.
pub(crate) fn size(dir: &Path, skip: &[PathBuf]) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if !is_skipped(&path, skip) {
                total += size(&path, skip);
            }
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    total
}

/// Whether two trees hold the same names, kinds, modes, file contents and link targets
/// (`skip` applies below `a`).
pub(crate) fn same(a: &Path, b: &Path, skip: &[PathBuf]) -> io::Result<bool> {
    let names = |dir: &Path| -> io::Result<Vec<OsString>> {
        let mut v = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<Vec<_>>>()?;
        v.sort();
        Ok(v)
    };
    let (na, nb) = (names(a)?, names(b)?);
    if na != nb {
        return Ok(false);
    }
    for name in na {
        let (pa, pb) = (a.join(&name), b.join(&name));
        let (ma, mb) = (fs::symlink_metadata(&pa)?, fs::symlink_metadata(&pb)?);
        if ma.file_type() != mb.file_type() {
            return Ok(false);
        }
        if !ma.is_symlink() && ma.mode() != mb.mode() {
            return Ok(false);
        }
        if ma.is_dir() {
            if is_skipped(&pa, skip) {
                if fs::read_dir(&pb)?.next().is_some() {
                    return Ok(false);
                }
            } else if !same(&pa, &pb, skip)? {
                return Ok(false);
            }
        } else if ma.is_symlink() {
            if fs::read_link(&pa)? != fs::read_link(&pb)? {
                return Ok(false);
            }
        } else if ma.is_file() && (ma.len() != mb.len() || fs::read(&pa)? != fs::read(&pb)?) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What a stream says about the snapshot it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamHeader {
    /// The snapshot's name after `@`.
    pub snapshot: String,
    /// Its guid, kept by the received snapshot.
    pub guid: u64,
    /// For an incremental stream: the guid of the snapshot it starts from.
    pub from: Option<u64>,
}

const END: u8 = 0;
const DIR: u8 = 1;
const FILE: u8 = 2;
const SYMLINK: u8 = 3;

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_meta(out: &mut Vec<u8>, meta: &Metadata) {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    out.extend_from_slice(&meta.mode().to_le_bytes());
    out.extend_from_slice(&meta.uid().to_le_bytes());
    out.extend_from_slice(&meta.gid().to_le_bytes());
    out.extend_from_slice(&mtime.as_secs().to_le_bytes());
    out.extend_from_slice(&mtime.subsec_nanos().to_le_bytes());
}

/// Writes a stream: the header, then every entry of the tree at `dir`, whole (an
/// incremental stream carries the whole tree too; only its header differs).
pub(crate) fn write_stream(
    header: &StreamHeader,
    dir: &Path,
    skip: &[PathBuf],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    out.extend_from_slice(MAGIC);
    put_bytes(out, header.snapshot.as_bytes());
    out.extend_from_slice(&header.guid.to_le_bytes());
    match header.from {
        Some(g) => {
            out.push(1);
            out.extend_from_slice(&g.to_le_bytes());
        }
        None => out.push(0),
    }
    put_meta(out, &fs::symlink_metadata(dir)?);
    write_entries(dir, Path::new(""), skip, out)?;
    out.push(END);
    Ok(())
}

fn write_entries(dir: &Path, rel: &Path, skip: &[PathBuf], out: &mut Vec<u8>) -> io::Result<()> {
    let mut entries = fs::read_dir(dir)?.collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = rel.join(entry.file_name());
        let meta = fs::symlink_metadata(&path)?;
        let kind = meta.file_type();
        let tag = if kind.is_dir() {
            DIR
        } else if kind.is_file() {
            FILE
        } else if kind.is_symlink() {
            SYMLINK
        } else {
            continue;
        };
        out.push(tag);
        put_bytes(out, rel.as_os_str().as_bytes());
        put_meta(out, &meta);
        match tag {
            FILE => put_bytes(out, &fs::read(&path)?),
            SYMLINK => put_bytes(out, fs::read_link(&path)?.as_os_str().as_bytes()),
            _ => {
                if !is_skipped(&path, skip) {
                    write_entries(&path, &rel, skip, out)?;
                }
            }
        }
    }
    Ok(())
}

/// A reader of stream bytes; every failure is "invalid stream".
struct Cursor<'a>(&'a [u8]);

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("invalid stream ({what})"),
    )
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(invalid("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> io::Result<u64> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn bytes(&mut self) -> io::Result<&[u8]> {
        let n = usize::try_from(self.u64()?).map_err(|_| invalid("length"))?;
        self.take(n)
    }
}

struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
}

fn get_meta(c: &mut Cursor<'_>) -> io::Result<Meta> {
    let mode = c.u32()?;
    let uid = c.u32()?;
    let gid = c.u32()?;
    let secs = c.u64()?;
    let nanos = c.u32()?;
    let mtime = UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos.min(999_999_999)))
        .unwrap_or(UNIX_EPOCH);
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime,
    })
}

/// Reads a stream's header; the bytes after it are the tree.
pub(crate) fn read_header(stream: &[u8]) -> io::Result<(StreamHeader, &[u8])> {
    let Some(rest) = stream.strip_prefix(MAGIC) else {
        return Err(invalid("bad magic number"));
    };
    let mut c = Cursor(rest);
    let snapshot = String::from_utf8(c.bytes()?.to_vec()).map_err(|_| invalid("name"))?;
    let guid = c.u64()?;
    let from = match c.u8()? {
        0 => None,
        1 => Some(c.u64()?),
        _ => return Err(invalid("header")),
    };
    Ok((
        StreamHeader {
            snapshot,
            guid,
            from,
        },
        c.0,
    ))
}

/// Checks that the tree part of a stream is complete and well formed, writing nothing.
pub(crate) fn check_tree(tree: &[u8]) -> io::Result<()> {
    walk_tree(tree, None, &[])
}

/// Writes the tree part of a stream into `dst` (which exists; see [`clear`]).
pub(crate) fn extract_tree(tree: &[u8], dst: &Path, skip: &[PathBuf]) -> io::Result<()> {
    walk_tree(tree, Some(dst), skip)
}

fn walk_tree(tree: &[u8], dst: Option<&Path>, skip: &[PathBuf]) -> io::Result<()> {
    let mut c = Cursor(tree);
    let root = get_meta(&mut c)?;
    // Directories get their mode and time last: their children change the time, and a
    // read-only mode would stop the children from being written.
    let mut dirs: Vec<(PathBuf, Meta)> = Vec::new();
    loop {
        let tag = c.u8()?;
        if tag == END {
            break;
        }
        let rel = PathBuf::from(OsString::from_vec(c.bytes()?.to_vec()));
        if rel.as_os_str().is_empty()
            || rel.components().any(|p| !matches!(p, Component::Normal(_)))
        {
            return Err(invalid("path"));
        }
        let meta = get_meta(&mut c)?;
        let payload = match tag {
            FILE | SYMLINK => Some(c.bytes()?),
            DIR => None,
            _ => return Err(invalid("entry")),
        };
        let Some(dst) = dst else {
            continue;
        };
        let path = dst.join(&rel);
        if skip.iter().any(|s| path.starts_with(s) && &path != s) {
            continue;
        }
        match (tag, payload) {
            (FILE, Some(data)) => {
                if fs::symlink_metadata(&path).is_ok() {
                    remove(&path)?;
                }
                File::create(&path)?.write_all(data)?;
                apply(
                    &path,
                    meta.mode,
                    meta.uid,
                    meta.gid,
                    Some(meta.mtime),
                    false,
                )?;
            }
            (SYMLINK, Some(target)) => {
                if fs::symlink_metadata(&path).is_ok() {
                    remove(&path)?;
                }
                let target = PathBuf::from(OsString::from_vec(target.to_vec()));
                std::os::unix::fs::symlink(target, &path)?;
                apply(&path, meta.mode, meta.uid, meta.gid, None, true)?;
            }
            _ => {
                if !path.is_dir() {
                    fs::create_dir(&path)?;
                }
                dirs.push((path, meta));
            }
        }
    }
    if !c.0.is_empty() {
        return Err(invalid("trailing bytes"));
    }
    if let Some(dst) = dst {
        dirs.push((dst.to_path_buf(), root));
        for (path, m) in dirs.iter().rev() {
            apply(path, m.mode, m.uid, m.gid, Some(m.mtime), false)?;
        }
    }
    Ok(())
}

/// Reads all of `input`.
pub(crate) fn read_all(input: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    input.read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> io::Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!(
            "kleene-zfs-tree-{}-{tag}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    #[test]
    fn copy_compare_clear_and_stream() -> io::Result<()> {
        let base = scratch("ops")?;
        let src = base.join("src");
        fs::create_dir_all(src.join("d/e"))?;
        fs::create_dir_all(src.join("mnt/inner"))?;
        fs::write(src.join("mnt/inner/x"), "another filesystem")?;
        fs::write(src.join("d/e/f"), "deep")?;
        fs::write(src.join("top"), "top")?;
        fs::set_permissions(src.join("top"), Permissions::from_mode(0o640))?;
        std::os::unix::fs::symlink("d/e/f", src.join("link"))?;
        let skip = vec![src.join("mnt")];

        let dst = base.join("dst");
        copy(&src, &dst, &skip)?;
        assert_eq!(fs::read_to_string(dst.join("d/e/f"))?, "deep");
        assert_eq!(fs::read_link(dst.join("link"))?, PathBuf::from("d/e/f"));
        assert_eq!(
            fs::metadata(dst.join("top"))?.mode() & 0o777,
            0o640,
            "mode kept"
        );
        assert!(dst.join("mnt").is_dir() && !dst.join("mnt/inner").exists());
        assert!(same(&src, &dst, &skip)?);
        assert_eq!(size(&src, &skip), 7);
        fs::write(dst.join("top"), "changed")?;
        assert!(!same(&src, &dst, &skip)?);

        let mut stream = Vec::new();
        let header = StreamHeader {
            snapshot: "s".into(),
            guid: 7,
            from: Some(3),
        };
        write_stream(&header, &src, &skip, &mut stream)?;
        let (back, tree) = read_header(&stream)?;
        assert_eq!(back, header);
        check_tree(tree)?;
        let out = base.join("out");
        fs::create_dir(&out)?;
        extract_tree(tree, &out, &[])?;
        assert!(same(&src, &out, &skip)?);
        assert!(read_header(b"not a stream").is_err());
        assert!(check_tree(&tree[..tree.len() - 1]).is_err(), "truncated");

        clear(&src, &skip)?;
        let left: Vec<_> = fs::read_dir(&src)?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![OsString::from("mnt")]);
        assert!(
            src.join("mnt/inner/x").exists(),
            "other filesystems are kept"
        );
        remove(&base)
    }

    #[test]
    fn streams_refuse_paths_that_leave_the_tree() -> io::Result<()> {
        let mut s = MAGIC.to_vec();
        put_bytes(&mut s, b"s");
        s.extend_from_slice(&1u64.to_le_bytes());
        s.push(0);
        let meta = fs::symlink_metadata(std::env::temp_dir())?;
        put_meta(&mut s, &meta);
        s.push(FILE);
        put_bytes(&mut s, b"../escape");
        put_meta(&mut s, &meta);
        put_bytes(&mut s, b"x");
        s.push(END);
        let (_, tree) = read_header(&s)?;
        let err = check_tree(tree).expect_err("a path with .. is refused");
        assert!(err.to_string().contains("path"), "{err}");
        Ok(())
    }
}
