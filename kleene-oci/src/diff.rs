//! A layer as the difference between two directory trees: what `upper` has that `lower`
//! has not, as a reproducible tar with OCI whiteouts.
//!
//! The engine calls it with the mounted snapshots of a parent image and of a child image
//! (a clone of the parent), so the trees are walked rather than asked of `zfs diff`.
//! Neither tree is followed through a symlink: entries are read with `symlink_metadata`
//! and `read_link`, files are opened with `O_NOFOLLOW` and checked to be the inode that
//! was read. The trees must not change while they are walked (snapshots do not).
//!
//! Not written: extended attributes (ACLs, file flags and xattrs are out of scope),
//! sockets (they cannot be in a tar), atime and ctime, user and group names.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, Metadata};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// How a layer is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// Like `SOURCE_DATE_EPOCH`: mtimes later than this (seconds since the epoch) are
    /// written as this.
    pub clamp_mtime: Option<i64>,
}

/// What a layer holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Entries other than whiteouts (files, directories, links, nodes).
    pub entries: u64,
    /// Whiteouts (`.wh.NAME` and opaque `.wh..wh..opq`).
    pub whiteouts: u64,
    /// The bytes of the tar written (the uncompressed layer).
    pub bytes: u64,
}

/// The prefix of a whiteout's name.
const WHITEOUT: &[u8] = b".wh.";
/// The name of an opaque whiteout.
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Writes to `out` a layer of what `upper` has that `lower` has not (`None`: an empty
/// tree): new and changed files, directories, symlinks, hard links, device nodes and
/// fifos, and a whiteout `.wh.NAME` for each path gone from `upper` (a directory with all
/// it held). A path whose type changed between a directory and a non-directory is a
/// whiteout and the new entry; when both trees are of the same file system history (a
/// ZFS clone and its origin: their roots are the same inode) a directory that is another
/// inode in `upper` was replaced, and becomes the directory, an opaque whiteout
/// `.wh..wh..opq` and all it holds.
///
/// "Changed": another type, mode, owner, size, mtime (in nanoseconds), symlink target,
/// device number or content. Contents are compared only when everything else is equal
/// and the files are not the same inode with the same ctime (a clone keeps inode
/// numbers, so such a file is unchanged without reading it). Directories compare by type,
/// mode, owner and mtime. A regular file with several names in `upper` is written once
/// and its other names as hard links to it, whenever one of its names is in the layer.
///
/// The tar is reproducible: entries in directory order (a directory before what it
/// holds; in each directory its whiteouts first, then the rest bytewise by name), ustar
/// headers with numeric owners and no user or group names, mtimes in whole seconds
/// (clamped as `opts` says), no atime or ctime, PAX records only for what ustar cannot
/// hold (long names and link targets, sizes over 8 GiB, large ids). `.zfs` at the root of
/// either tree is skipped. The root directory itself is not written (its mode and owner
/// are the base image's); a name in `upper` starting with `.wh.` is refused, as it would
/// be read as a whiteout.
pub fn write_layer(
    lower: Option<&Path>,
    upper: &Path,
    out: impl Write,
    opts: &DiffOptions,
) -> Result<LayerStats> {
    let same_history = match lower {
        Some(l) => {
            let lm = lstat(l)?;
            let um = lstat(upper)?;
            lm.ino() == um.ino()
        }
        None => false,
    };
    write_layer_with(lower, upper, out, opts, same_history)
}

/// [`write_layer`], told whether inode numbers identify files across the trees.
pub(crate) fn write_layer_with(
    lower: Option<&Path>,
    upper: &Path,
    out: impl Write,
    opts: &DiffOptions,
    same_history: bool,
) -> Result<LayerStats> {
    for (what, dir) in [("lower", lower), ("upper", Some(upper))] {
        if let Some(dir) = dir {
            if !lstat(dir)?.is_dir() {
                return Err(Error::Tree {
                    path: dir.to_path_buf(),
                    reason: format!("the {what} tree is not a directory"),
                });
            }
        }
    }
    let mut walk = Walk {
        same_history,
        items: Vec::new(),
        links: BTreeMap::new(),
    };
    walk.dir(&[], lower, upper)?;
    walk.add_link_groups();
    let Walk { mut items, .. } = walk;
    items.sort_by(|a, b| a.key.cmp(&b.key));

    let mut tar = TarWriter::new(out);
    let mut stats = LayerStats::default();
    // The first name written of each inode with several names.
    let mut written: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    for item in &items {
        match &item.what {
            What::Whiteout => {
                let mut h = Head::new(item.path.clone(), tar::EntryType::Regular);
                h.mode = 0o644;
                h.mtime = clamp(0, opts);
                tar.entry(&h, None)?;
                stats.whiteouts += 1;
            }
            What::Node { src, meta } => {
                let key = (meta.dev(), meta.ino());
                if meta.is_file() && meta.nlink() > 1 {
                    if let Some(first) = written.get(&key) {
                        let mut h = Head::of(item.path.clone(), meta, opts, tar::EntryType::Link);
                        h.size = 0;
                        h.link = Some(first.clone());
                        tar.entry(&h, None)?;
                        stats.entries += 1;
                        continue;
                    }
                    written.insert(key, item.path.clone());
                }
                node(&mut tar, &item.path, src, meta, opts)?;
                stats.entries += 1;
            }
        }
    }
    stats.bytes = tar.finish()?;
    Ok(stats)
}

/// Writes one entry of the upper tree.
fn node<W: Write>(
    tar: &mut TarWriter<W>,
    path: &[u8],
    src: &Path,
    meta: &Metadata,
    opts: &DiffOptions,
) -> Result<()> {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        tar::EntryType::Directory
    } else if ft.is_file() {
        tar::EntryType::Regular
    } else if ft.is_symlink() {
        tar::EntryType::Symlink
    } else if ft.is_char_device() {
        tar::EntryType::Char
    } else if ft.is_block_device() {
        tar::EntryType::Block
    } else {
        tar::EntryType::Fifo
    };
    let mut h = Head::of(path.to_vec(), meta, opts, kind);
    match kind {
        tar::EntryType::Directory => {
            h.path.push(b'/');
            tar.entry(&h, None)
        }
        tar::EntryType::Symlink => {
            let target = std::fs::read_link(src)
                .map_err(|e| Error::io(format!("reading the symlink {}", src.display()), e))?;
            h.link = Some(target.as_os_str().as_bytes().to_vec());
            tar.entry(&h, None)
        }
        tar::EntryType::Char | tar::EntryType::Block => {
            let rdev = meta.rdev();
            // major/minor are u32 on Linux and i32 on FreeBSD.
            #[allow(clippy::unnecessary_cast)]
            let (major, minor) = (libc::major(rdev) as u32, libc::minor(rdev) as u32);
            h.device = Some((major, minor));
            tar.entry(&h, None)
        }
        tar::EntryType::Fifo => tar.entry(&h, None),
        _ => {
            h.size = meta.len();
            let file = open_same(src, meta)?;
            tar.entry(&h, Some((file, src)))
        }
    }
}

/// Opens a regular file without following a symlink, and checks it is the inode that
/// was read.
fn open_same(path: &Path, meta: &Metadata) -> Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let now = file
        .metadata()
        .map_err(|e| Error::io(format!("reading the metadata of {}", path.display()), e))?;
    if now.dev() != meta.dev() || now.ino() != meta.ino() || !now.is_file() {
        return Err(Error::Tree {
            path: path.to_path_buf(),
            reason: "it changed while the tree was walked".into(),
        });
    }
    Ok(file)
}

fn lstat(path: &Path) -> Result<Metadata> {
    std::fs::symlink_metadata(path)
        .map_err(|e| Error::io(format!("reading the metadata of {}", path.display()), e))
}

fn clamp(mtime: i64, opts: &DiffOptions) -> u64 {
    let t = match opts.clamp_mtime {
        Some(c) if mtime > c => c,
        _ => mtime,
    };
    u64::try_from(t).unwrap_or(0)
}

/// An entry of the layer, before sorting.
struct Item {
    /// (directory, rank: 0 opaque, 1 whiteout, 2 the rest, name).
    key: (Vec<u8>, u8, Vec<u8>),
    /// The path in the layer, without a trailing slash.
    path: Vec<u8>,
    what: What,
}

enum What {
    Whiteout,
    Node { src: PathBuf, meta: Metadata },
}

struct Walk {
    same_history: bool,
    items: Vec<Item>,
    /// Every regular file of `upper` with several names: (dev, ino) → its names, and
    /// whether one of them is in the layer.
    links: BTreeMap<(u64, u64), LinkGroup>,
}

#[derive(Default)]
struct LinkGroup {
    names: Vec<(Vec<u8>, Vec<u8>, PathBuf, Metadata)>,
    in_layer: BTreeSet<Vec<u8>>,
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn list(dir: &Path, root: bool) -> Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    let rd =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name().as_bytes().to_vec();
        if root && name == b".zfs" {
            continue;
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}

fn os(name: &[u8]) -> &std::ffi::OsStr {
    std::ffi::OsStr::from_bytes(name)
}

impl Walk {
    fn push(&mut self, dir: &[u8], name: &[u8], src: PathBuf, meta: Metadata) {
        let path = join(dir, name);
        if meta.is_file() && meta.nlink() > 1 {
            self.links
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .in_layer
                .insert(path.clone());
        }
        self.items.push(Item {
            key: (dir.to_vec(), 2, name.to_vec()),
            path,
            what: What::Node { src, meta },
        });
    }

    fn whiteout(&mut self, dir: &[u8], name: &[u8]) {
        let (rank, wh) = if name == OPAQUE {
            (0, OPAQUE.to_vec())
        } else {
            (1, [WHITEOUT, name].concat())
        };
        self.items.push(Item {
            key: (dir.to_vec(), rank, wh.clone()),
            path: join(dir, &wh),
            what: What::Whiteout,
        });
    }

    /// The directory `rel` of the layer: `upper` against `lower` (`None`: all of it is
    /// new).
    fn dir(&mut self, rel: &[u8], lower: Option<&Path>, upper: &Path) -> Result<()> {
        let root = rel.is_empty();
        let unames = list(upper, root)?;
        let lnames: BTreeSet<Vec<u8>> = match lower {
            Some(l) => list(l, root)?.into_iter().collect(),
            None => BTreeSet::new(),
        };
        let uset: BTreeSet<&Vec<u8>> = unames.iter().collect();
        for gone in lnames.iter().filter(|n| !uset.contains(n)) {
            self.whiteout(rel, gone);
        }
        for name in &unames {
            let usrc = upper.join(os(name));
            if name.starts_with(WHITEOUT) {
                // It would be read as a whiteout.
                return Err(Error::Tree {
                    path: usrc,
                    reason: "a name starting with .wh. cannot be in a layer".into(),
                });
            }
            let umeta = lstat(&usrc)?;
            if umeta.file_type().is_socket() {
                // A tar cannot hold it: as if it were not there (what was there
                // below goes, unless it was a socket too).
                if let Some(l) = lower.filter(|_| lnames.contains(name)) {
                    if !lstat(&l.join(os(name)))?.file_type().is_socket() {
                        self.whiteout(rel, name);
                    }
                }
                continue;
            }
            if umeta.is_file() && umeta.nlink() > 1 {
                self.links
                    .entry((umeta.dev(), umeta.ino()))
                    .or_default()
                    .names
                    .push((rel.to_vec(), name.clone(), usrc.clone(), umeta.clone()));
            }
            let lower_child = match lower {
                Some(l) if lnames.contains(name) => {
                    let lsrc = l.join(os(name));
                    let lmeta = lstat(&lsrc)?;
                    Some((lsrc, lmeta))
                }
                _ => None,
            };
            self.child(rel, name, usrc, umeta, lower_child)?;
        }
        Ok(())
    }

    /// The entry `name` of the layer's directory `rel`: upper's `usrc` against what
    /// the lower layer has there (`None`: it is new), its directories walked.
    fn child(
        &mut self,
        rel: &[u8],
        name: &[u8],
        usrc: PathBuf,
        umeta: Metadata,
        lower: Option<(PathBuf, Metadata)>,
    ) -> Result<()> {
        let path = join(rel, name);
        match lower {
            None => {
                let is_dir = umeta.is_dir();
                self.push(rel, name, usrc.clone(), umeta);
                if is_dir {
                    self.dir(&path, None, &usrc)?;
                }
            }
            Some((lsrc, lmeta)) => {
                let (ud, ld) = (umeta.is_dir(), lmeta.is_dir());
                if ud && ld {
                    if self.same_history && umeta.ino() != lmeta.ino() {
                        // Replaced by a new directory of the same name.
                        self.push(rel, name, usrc.clone(), umeta);
                        self.whiteout(&path, OPAQUE);
                        self.dir(&path, None, &usrc)?;
                    } else {
                        if meta_changed(&lmeta, &umeta) {
                            self.push(rel, name, usrc.clone(), umeta);
                        }
                        self.dir(&path, Some(&lsrc), &usrc)?;
                    }
                } else if ud || ld {
                    // A directory for a non-directory or the other way round.
                    self.whiteout(rel, name);
                    self.push(rel, name, usrc.clone(), umeta);
                    if ud {
                        self.dir(&path, None, &usrc)?;
                    }
                } else if self.changed(&lsrc, &lmeta, &usrc, &umeta)? {
                    self.push(rel, name, usrc, umeta);
                }
            }
        }
        Ok(())
    }

    /// Whether a non-directory changed.
    fn changed(&self, lsrc: &Path, l: &Metadata, usrc: &Path, u: &Metadata) -> Result<bool> {
        if meta_changed(l, u) || l.len() != u.len() {
            return Ok(true);
        }
        let (lt, ut) = (l.file_type(), u.file_type());
        if ut.is_symlink() {
            let a = std::fs::read_link(lsrc)
                .map_err(|e| Error::io(format!("reading the symlink {}", lsrc.display()), e))?;
            let b = std::fs::read_link(usrc)
                .map_err(|e| Error::io(format!("reading the symlink {}", usrc.display()), e))?;
            return Ok(a != b);
        }
        if ut.is_char_device() || ut.is_block_device() {
            return Ok(l.rdev() != u.rdev());
        }
        if !ut.is_file() || !lt.is_file() {
            return Ok(false);
        }
        if self.same_history
            && l.ino() == u.ino()
            && l.ctime() == u.ctime()
            && l.ctime_nsec() == u.ctime_nsec()
        {
            return Ok(false);
        }
        Ok(!same_content(lsrc, l, usrc, u)?)
    }

    /// Every name of an inode with several names goes in the layer when one does, so
    /// that they stay one file.
    fn add_link_groups(&mut self) {
        let links = std::mem::take(&mut self.links);
        for group in links.into_values() {
            if group.in_layer.is_empty() {
                continue;
            }
            for (dir, name, src, meta) in group.names {
                if !group.in_layer.contains(&join(&dir, &name)) {
                    self.push(&dir, &name, src, meta);
                }
            }
        }
    }
}

/// Type, permissions, owner or mtime differ.
fn meta_changed(l: &Metadata, u: &Metadata) -> bool {
    l.mode() != u.mode()
        || l.uid() != u.uid()
        || l.gid() != u.gid()
        || l.mtime() != u.mtime()
        || l.mtime_nsec() != u.mtime_nsec()
}

fn same_content(lsrc: &Path, l: &Metadata, usrc: &Path, u: &Metadata) -> Result<bool> {
    let mut a = open_same(lsrc, l)?;
    let mut b = open_same(usrc, u)?;
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(&mut a, &mut ba, lsrc)?;
        let m = read_full(&mut b, &mut bb, usrc)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(f: &mut File, buf: &mut [u8], path: &Path) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }
    Ok(n)
}

/// A tar header to write.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) path: Vec<u8>,
    pub(crate) kind: tar::EntryType,
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) size: u64,
    pub(crate) mtime: u64,
    pub(crate) link: Option<Vec<u8>>,
    pub(crate) device: Option<(u32, u32)>,
}

impl Head {
    pub(crate) fn new(path: Vec<u8>, kind: tar::EntryType) -> Self {
        Self {
            path,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            link: None,
            device: None,
        }
    }

    fn of(path: Vec<u8>, meta: &Metadata, opts: &DiffOptions, kind: tar::EntryType) -> Self {
        let mut h = Self::new(path, kind);
        h.mode = meta.mode() & 0o7777;
        h.uid = u64::from(meta.uid());
        h.gid = u64::from(meta.gid());
        h.mtime = clamp(meta.mtime(), opts);
        h
    }
}

/// The largest number an ustar numeric field of `digits` octal digits holds.
const fn octal_max(digits: u32) -> u64 {
    (1u64 << (3 * digits)) - 1
}

/// Writes ustar entries (with PAX records where ustar falls short), counting bytes.
pub(crate) struct TarWriter<W: Write> {
    out: tar::Builder<Counting<W>>,
}

pub(crate) struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn tar_err(path: &[u8], e: std::io::Error) -> Error {
    Error::io(
        format!(
            "writing the tar entry {:?}",
            String::from_utf8_lossy(path).into_owned()
        ),
        e,
    )
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        Self {
            out: tar::Builder::new(Counting {
                inner: out,
                count: 0,
            }),
        }
    }

    /// Writes an entry; a regular file's content comes from `data`, exactly `h.size`
    /// bytes of it.
    pub(crate) fn entry(&mut self, h: &Head, data: Option<(File, &Path)>) -> Result<()> {
        let err = |e| tar_err(&h.path, e);
        let mut header = tar::Header::new_ustar();
        let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
        set_name(&mut header, &h.path, &mut pax);
        header.set_entry_type(h.kind);
        header.set_mode(h.mode);
        for (key, value, field) in [("uid", h.uid, 0), ("gid", h.gid, 1)] {
            let v = if value > octal_max(7) {
                pax.push((key, value.to_string().into_bytes()));
                0
            } else {
                value
            };
            if field == 0 {
                header.set_uid(v);
            } else {
                header.set_gid(v);
            }
        }
        if h.size > octal_max(11) {
            pax.push(("size", h.size.to_string().into_bytes()));
            header.set_size(0);
        } else {
            header.set_size(h.size);
        }
        header.set_mtime(h.mtime.min(octal_max(11)));
        if let Some(link) = &h.link {
            let field = &mut header.as_old_mut().linkname;
            if link.len() <= field.len() && !link.contains(&0) {
                field[..link.len()].copy_from_slice(link);
            } else {
                pax.push(("linkpath", link.clone()));
                let n = field.len().min(link.len());
                field[..n].copy_from_slice(&link[..n]);
            }
        }
        if let Some((major, minor)) = h.device {
            header.set_device_major(major).map_err(err)?;
            header.set_device_minor(minor).map_err(err)?;
        }
        header.set_cksum();
        if !pax.is_empty() {
            self.pax(&h.path, &pax)?;
        }
        match data {
            None => self.out.append(&header, std::io::empty()).map_err(err),
            Some((file, src)) => {
                let mut take = file.take(h.size);
                let mut counted = CountingRead {
                    inner: &mut take,
                    count: 0,
                };
                self.out
                    .append(&header, &mut counted)
                    .map_err(|e| Error::io(format!("writing {} into a tar", src.display()), e))?;
                if counted.count != h.size {
                    return Err(Error::Tree {
                        path: src.to_path_buf(),
                        reason: format!(
                            "it ended after {} of its {} bytes while it was read",
                            counted.count, h.size
                        ),
                    });
                }
                Ok(())
            }
        }
    }

    /// A PAX extended header for the next entry.
    fn pax(&mut self, path: &[u8], records: &[(&str, Vec<u8>)]) -> Result<()> {
        let mut data = Vec::new();
        for (key, value) in records {
            // "LEN KEY=VALUE\n", LEN counting itself.
            let rest = key.len() + value.len() + 3;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        let mut header = tar::Header::new_ustar();
        let mut name = b"PaxHeaders/".to_vec();
        let base = path
            .rsplit(|b| *b == b'/')
            .find(|s| !s.is_empty())
            .unwrap_or(b"x");
        name.extend_from_slice(&base[..base.len().min(80)]);
        let mut ignored = Vec::new();
        set_name(&mut header, &name, &mut ignored);
        header.set_entry_type(tar::EntryType::XHeader);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_cksum();
        self.out
            .append(&header, &data[..])
            .map_err(|e| tar_err(path, e))
    }

    /// Ends the archive; the bytes written.
    pub(crate) fn finish(self) -> Result<u64> {
        let c = self
            .out
            .into_inner()
            .map_err(|e| Error::io("ending the tar archive", e))?;
        Ok(c.count)
    }

    /// Ends the archive; the writer and the bytes written.
    pub(crate) fn into_inner(self) -> Result<(W, u64)> {
        let c = self
            .out
            .into_inner()
            .map_err(|e| Error::io("ending the tar archive", e))?;
        Ok((c.inner, c.count))
    }
}

struct CountingRead<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Puts `path` in the ustar name (and prefix) fields, or a PAX `path` record when it
/// does not fit.
fn set_name(header: &mut tar::Header, path: &[u8], pax: &mut Vec<(&str, Vec<u8>)>) {
    let Some(ustar) = header.as_ustar_mut() else {
        return;
    };
    let (nmax, pmax) = (ustar.name.len(), ustar.prefix.len());
    if path.len() <= nmax && !path.contains(&0) {
        ustar.name[..path.len()].copy_from_slice(path);
        return;
    }
    if !path.contains(&0) {
        // Split at a slash: prefix / name, the name not empty (a directory's trailing
        // slash stays with it).
        let body = path.strip_suffix(b"/").unwrap_or(path);
        let split = body
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, b)| **b == b'/')
            .map(|(i, _)| i)
            .find(|&i| i <= pmax && path.len() - i - 1 <= nmax && i > 0);
        if let Some(i) = split {
            ustar.prefix[..i].copy_from_slice(&path[..i]);
            let name = &path[i + 1..];
            ustar.name[..name.len()].copy_from_slice(name);
            return;
        }
    }
    pax.push(("path", path.to_vec()));
    let n = nmax.min(path.len());
    ustar.name[..n].copy_from_slice(&path[..n]);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn names(tar: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                String::from_utf8_lossy(&e.path_bytes()).into_owned()
            })
            .collect()
    }

    #[test]
    fn a_replaced_directory_of_a_clone_is_opaque() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        std::fs::create_dir_all(lower.join("d/sub")).unwrap();
        std::fs::write(lower.join("d/old"), "old").unwrap();
        std::fs::write(lower.join("d/sub/f"), "f").unwrap();
        std::fs::create_dir_all(upper.join("d")).unwrap();
        std::fs::write(upper.join("d/new"), "new").unwrap();
        // As if upper were a clone of lower: every inode differs, so `d` was replaced.
        let mut out = Vec::new();
        let stats = write_layer_with(
            Some(&lower),
            &upper,
            &mut out,
            &DiffOptions::default(),
            true,
        )
        .unwrap();
        assert_eq!(names(&out), ["d/", "d/.wh..wh..opq", "d/new"]);
        assert_eq!((stats.entries, stats.whiteouts), (2, 1));
        assert_eq!(stats.bytes, out.len() as u64);
        // Not of one history: d is walked.
        let mut out = Vec::new();
        write_layer_with(
            Some(&lower),
            &upper,
            &mut out,
            &DiffOptions::default(),
            false,
        )
        .unwrap();
        let n = names(&out);
        assert!(n.contains(&"d/.wh.old".to_string()), "{n:?}");
        assert!(n.contains(&"d/.wh.sub".to_string()), "{n:?}");
        assert!(n.contains(&"d/new".to_string()), "{n:?}");
    }

    #[test]
    fn long_names_and_link_targets_take_pax_records() {
        let t = tempfile::tempdir().unwrap();
        let long = "n".repeat(120);
        let deep = format!("{}/{}", "p".repeat(150), "q".repeat(90));
        std::fs::create_dir_all(t.path().join(&deep)).unwrap();
        std::fs::write(t.path().join(&long), "x").unwrap();
        std::os::unix::fs::symlink("t".repeat(130), t.path().join("sym")).unwrap();
        let mut out = Vec::new();
        write_layer(None, t.path(), &mut out, &DiffOptions::default()).unwrap();
        let mut a = tar::Archive::new(&out[..]);
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            let p = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            if p == "sym" {
                assert_eq!(
                    e.link_name().unwrap().unwrap().to_str(),
                    Some(&*"t".repeat(130))
                );
            }
            seen.push(p);
        }
        assert!(seen.contains(&long), "{seen:?}");
        assert!(seen.contains(&format!("{deep}/")), "{seen:?}");
        assert!(seen.contains(&format!("{}/", "p".repeat(150))), "{seen:?}");
        // The 150+90 path fits ustar's prefix and name; the long name, the 150-byte
        // directory (no slash to split at) and the link target need PAX.
        let pax = out
            .chunks(512)
            .filter(|b| b.len() == 512 && b[156] == b'x' && &b[257..262] == b"ustar")
            .count();
        assert_eq!(pax, 3);
    }
}
