//! Base image archives: detect the compression, decompress as a stream, and extract the
//! tar stream into a new root without ever writing outside it.
//!
//! # Safety rules of [`extract`]
//!
//! No path from the archive is ever handed to the kernel as a whole. Each entry's parent
//! directory is resolved by [`kleene_rootfs`] from a descriptor of the destination, one
//! `openat(O_DIRECTORY | O_NOFOLLOW)` at a time, so the kernel never resolves more than
//! one name and never follows a symbolic link on our behalf. The entry itself is then
//! created with the `*at` calls relative to that parent (`O_CREAT | O_EXCL | O_NOFOLLOW`,
//! `mkdirat`, `symlinkat`, `linkat` without `AT_SYMLINK_FOLLOW`, `mknodat`) and its
//! metadata set through its own descriptor or with `AT_SYMLINK_NOFOLLOW`.
//!
//! * An entry whose path is absolute or has a `..` component is refused.
//! * A symbolic link met *inside* a path (not as its last component) is resolved inside
//!   the root with [`Symlinks::FollowBeneath`]: a relative target that stays inside the
//!   root is followed (`lib -> usr/lib`, then `lib/x` lands in `usr/lib/x`, as `tar -x`
//!   would do it), while an absolute target or a relative one that climbs above the root
//!   refuses the entry. `..` in a link target pops a directory held open, never asks the
//!   kernel.
//! * A symbolic link as the *last* component is never followed: a later entry of the same
//!   name replaces it (tar semantics: later entries win), and symlinks themselves are
//!   stored with their target text as is, whatever it points at.
//! * A hard link's source is resolved the same way and must exist inside the root.
//! * `.zfs` at the top of the root (ZFS's control directory, where `mkdir` makes a
//!   snapshot) is refused, directly or through a symlink.
//! * Device nodes and FIFOs are created with `mknodat`; where the system refuses device
//!   nodes (no privilege, or a FreeBSD file system), they are skipped with a warning.
//!
//! Owners (numeric uid/gid of the header; without root a refused chown is skipped), modes
//! with setuid/setgid/sticky (set after the owner, which clears them), `SCHILY.xattr.*`
//! extended attributes and modification times (with PAX sub-second precision) are kept.
//! Extended attributes are restored on Linux, on files and directories; one the file
//! system refuses (`ENOTSUP`, `EPERM`...) is logged and skipped. FreeBSD's `extattr(2)`
//! is not wrapped by rustix, and this crate has no unsafe code: there they are logged
//! and skipped. Directory modes and times are applied at the end, deepest first, so
//! that writing their contents does not change them. File data is streamed in 256 KiB
//! chunks; a chunk of zeros becomes a hole.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use kleene_rootfs::{Mkdir, RootDir, Symlinks};
use liblzma::stream::{Action, MtStreamBuilder, Status, Stream};
use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;

/// How many leading bytes [`decompress`] looks at: one tar header.
const SNIFF_LEN: usize = 512;
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// Size of the buffers between the decoders and the file system.
const CHUNK: usize = 256 * 1024;
/// The xz decoder may use up to this much memory for its worker threads; beyond it,
/// liblzma uses fewer threads (down to one), it never fails for it.
const XZ_MEMLIMIT_THREADING: u64 = 512 << 20;
/// The progress callback runs at least every this many bytes of file data...
const PROGRESS_BYTES: u64 = 1 << 20;
/// ... or this many entries.
const PROGRESS_ENTRIES: u64 = 256;

/// The compression of an archive, as recognised by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// A plain tar archive.
    None,
    /// gzip (one or more members).
    Gzip,
    /// xz (one or more streams), decoded with liblzma's multithreaded decoder.
    Xz,
    /// zstd (one or more frames).
    Zstd,
}

impl Compression {
    /// Recognises the compression from the first bytes of a file (up to 512 of them;
    /// a plain tar archive needs 262 to show its `ustar` magic at offset 257, and 512
    /// for an old header without magic, recognised by its checksum).
    /// Returns `None` when the bytes are none of these.
    pub fn detect(magic: &[u8]) -> Option<Compression> {
        if magic.starts_with(XZ_MAGIC) {
            Some(Compression::Xz)
        } else if magic.starts_with(GZIP_MAGIC) {
            Some(Compression::Gzip)
        } else if magic.starts_with(ZSTD_MAGIC) || is_zstd_skippable_frame(magic) {
            Some(Compression::Zstd)
        } else if looks_like_tar(magic) {
            Some(Compression::None)
        } else {
            None
        }
    }

    /// A short name: `none`, `gzip`, `xz` or `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A zstd skippable frame (magic 0x184D2A50 to 0x184D2A5F, little endian) may lead a
/// zstd file; the decoder skips it.
fn is_zstd_skippable_frame(b: &[u8]) -> bool {
    b.len() >= 4 && b[0] & 0xf0 == 0x50 && b[1..4] == [0x2a, 0x4d, 0x18]
}

/// A tar header: `ustar` magic at offset 257 (POSIX and GNU), or an old (v7) header whose
/// checksum is right, or an all-zero block (an empty archive).
fn looks_like_tar(b: &[u8]) -> bool {
    if b.len() >= 262 && &b[257..262] == b"ustar" {
        return true;
    }
    if b.len() < 512 {
        return false;
    }
    let block = &b[..512];
    if block.iter().all(|&x| x == 0) {
        return true;
    }
    let field = &block[148..156];
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&c| c == b' ')
        .take_while(|c| (b'0'..=b'7').contains(c))
        .collect();
    if digits.is_empty() {
        return false;
    }
    let Some(stored) = digits.iter().try_fold(0u32, |acc, &d| {
        acc.checked_mul(8)?.checked_add(u32::from(d - b'0'))
    }) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(x)
            }
        })
        .sum();
    // Some old tars summed signed chars.
    let signed: i64 = block
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            if (148..156).contains(&i) {
                i64::from(b' ')
            } else {
                i64::from(x as i8)
            }
        })
        .sum();
    stored == sum || i64::from(stored) == signed
}

/// Why a stream is not an archive this module reads, said plainly.
fn unrecognised(head: &[u8]) -> String {
    if head.is_empty() {
        return "the archive is empty".to_string();
    }
    let what = if head.starts_with(b"BZh") {
        Some("bzip2-compressed")
    } else if head.starts_with(b"LZIP") {
        Some("lzip-compressed")
    } else if head.starts_with(&[0x5d, 0x00, 0x00]) {
        Some("lzma (legacy format)")
    } else if head.starts_with(b"PK\x03\x04") {
        Some("a zip archive,")
    } else if head.starts_with(b"7z\xbc\xaf\x27\x1c") {
        Some("a 7-zip archive,")
    } else if head.starts_with(b"<") {
        Some("text (an html page?),")
    } else {
        None
    };
    match what {
        Some(what) => format!(
            "the archive is {what} which is not supported: use a tar archive, plain or compressed with xz, gzip or zstd"
        ),
        None => {
            let hex: String = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!(
                "not a tar archive, nor one compressed with xz, gzip or zstd (it starts with bytes {hex})"
            )
        }
    }
}

/// What went wrong reading or extracting an archive. Messages name the archive entry
/// concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// An entry that would write outside the new root, or could be made to.
    #[error("refusing archive entry {entry:?}: {reason}")]
    UnsafeEntry { entry: String, reason: String },

    /// An entry of a type this module does not extract.
    #[error("archive entry {entry:?}: unsupported entry type {kind}")]
    Unsupported { entry: String, kind: String },

    /// Extracting one entry failed: creating it, writing it, setting its metadata, or
    /// reading its header or data.
    #[error("archive entry {entry:?}: {action}: {source}")]
    Entry {
        entry: String,
        action: String,
        #[source]
        source: io::Error,
    },

    /// Reading the archive stream failed (corrupt compression, bad tar header,
    /// truncation, or the underlying reader's own error).
    #[error("reading the archive: {source}")]
    Read {
        #[source]
        source: io::Error,
    },

    /// The data is not an archive this module reads.
    #[error("{0}")]
    Format(String),

    /// Any other file operation, e.g. opening the destination.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn entry_err(entry: &str, action: impl Into<String>, source: impl Into<io::Error>) -> ArchiveError {
    ArchiveError::Entry {
        entry: entry.to_string(),
        action: action.into(),
        source: source.into(),
    }
}

fn refuse(entry: &str, reason: impl Into<String>) -> ArchiveError {
    ArchiveError::UnsafeEntry {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

fn read_err(source: io::Error) -> ArchiveError {
    ArchiveError::Read { source }
}

/// Reads up to `SNIFF_LEN` bytes (fewer only at end of input).
fn read_head<R: Read>(reader: &mut R) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(SNIFF_LEN);
    reader.take(SNIFF_LEN as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// Wraps a reader in the right decompressor after sniffing its first bytes (kept and
/// replayed, so no seeking is needed). Concatenated xz streams, gzip members and zstd
/// frames are all decoded, as `xz -dc`, `gzip -dc` and `zstd -dc` do.
pub fn decompress<R: Read + Send + 'static>(
    mut reader: R,
) -> Result<(Compression, Box<dyn Read + Send>), ArchiveError> {
    let head = read_head(&mut reader).map_err(read_err)?;
    let kind =
        Compression::detect(&head).ok_or_else(|| ArchiveError::Format(unrecognised(&head)))?;
    let joined = io::Cursor::new(head).chain(reader);
    let decoded: Box<dyn Read + Send> = match kind {
        Compression::None => Box::new(joined),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(joined)),
        Compression::Xz => Box::new(XzReader::new(BufReader::with_capacity(CHUNK, joined))?),
        Compression::Zstd => {
            Box::new(
                zstd::stream::read::Decoder::new(joined).map_err(|e| ArchiveError::Io {
                    context: "starting the zstd decoder".to_string(),
                    source: e,
                })?,
            )
        }
    };
    Ok((kind, decoded))
}

/// A multithreaded xz decoder over concatenated streams.
///
/// liblzma's threaded decoder takes no `LZMA_CONCATENATED` flag, so this reader does what
/// that flag does: at the end of a stream it skips the stream padding (NUL bytes, a
/// multiple of four) and starts a new decoder on what follows; anything else than another
/// xz stream there is an error, as with `xz -dc`.
struct XzReader<R> {
    input: R,
    /// `None` between two streams.
    stream: Option<Stream>,
    /// Calls in a row that neither read nor wrote anything.
    stalls: u32,
}

fn xz_stream() -> Result<Stream, liblzma::stream::Error> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(64);
    MtStreamBuilder::new()
        .threads(u32::try_from(threads).unwrap_or(1))
        .memlimit_threading(XZ_MEMLIMIT_THREADING)
        .memlimit_stop(u64::MAX)
        .timeout_ms(0)
        .decoder()
}

impl<R: BufRead> XzReader<R> {
    fn new(input: R) -> Result<Self, ArchiveError> {
        let stream = xz_stream().map_err(|e| ArchiveError::Io {
            context: "starting the xz decoder".to_string(),
            source: io::Error::other(e),
        })?;
        Ok(XzReader {
            input,
            stream: Some(stream),
            stalls: 0,
        })
    }

    /// Between streams: skips the padding; returns false at the end of the input, or
    /// starts the next stream's decoder.
    fn next_stream(&mut self) -> io::Result<bool> {
        let mut padding: u64 = 0;
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                if !padding.is_multiple_of(4) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "xz: stream padding is not a multiple of four bytes",
                    ));
                }
                return Ok(false);
            }
            let zeros = buf.iter().take_while(|&&b| b == 0).count();
            let all = zeros == buf.len();
            self.input.consume(zeros);
            padding += zeros as u64;
            if !all {
                break;
            }
        }
        if !padding.is_multiple_of(4) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "xz: stream padding is not a multiple of four bytes",
            ));
        }
        let head = self.input.fill_buf()?;
        if !XZ_MAGIC.starts_with(&head[..head.len().min(XZ_MAGIC.len())]) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "xz: trailing data after the last stream is not xz",
            ));
        }
        let stream =
            xz_stream().map_err(|e| io::Error::other(format!("xz: starting the decoder: {e}")))?;
        self.stream = Some(stream);
        Ok(true)
    }
}

impl<R: BufRead> Read for XzReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.stream.is_none() && !self.next_stream()? {
                return Ok(0);
            }
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            let input = self.input.fill_buf()?;
            let eof = input.is_empty();
            let (in_before, out_before) = (stream.total_in(), stream.total_out());
            let result = stream.process(input, buf, if eof { Action::Finish } else { Action::Run });
            let consumed = usize::try_from(stream.total_in() - in_before)
                .map_err(|_| io::Error::other("xz: impossible input count"))?;
            let produced = usize::try_from(stream.total_out() - out_before)
                .map_err(|_| io::Error::other("xz: impossible output count"))?;
            self.input.consume(consumed);
            let status = result
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("xz: {e}")))?;
            if status == Status::StreamEnd {
                self.stream = None;
            }
            if produced > 0 {
                self.stalls = 0;
                return Ok(produced);
            }
            if self.stream.is_none() {
                continue;
            }
            if eof {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "xz: the stream is truncated",
                ));
            }
            if consumed == 0 {
                self.stalls += 1;
                if self.stalls > 2 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "xz: the decoder makes no progress",
                    ));
                }
            } else {
                self.stalls = 0;
            }
        }
    }
}

/// Running totals of an extraction.
#[derive(Debug, Default, Clone)]
pub struct ExtractStats {
    /// Entries extracted (files, directories, links, nodes).
    pub entries: u64,
    /// Bytes of file data written.
    pub bytes: u64,
}

/// Extracts a tar stream into `dest`, an existing directory: the new root. See the
/// module's documentation for the safety rules. `progress` is called every 1 MiB of file
/// data or 256 entries, and once at the end, with the running totals.
///
/// On error, what was extracted so far stays in `dest` (the caller throws the new
/// dataset away); nothing outside `dest` has been touched.
pub fn extract(
    reader: impl Read,
    dest: &Path,
    progress: &mut dyn FnMut(&ExtractStats),
) -> Result<ExtractStats, ArchiveError> {
    extract_with(
        reader,
        &open_dest(dest)?,
        ExtractOptions::default(),
        progress,
    )
}

/// The destination directory of an extraction, as a root.
fn open_dest(dest: &Path) -> Result<RootDir, ArchiveError> {
    RootDir::open(dest).map_err(|e| ArchiveError::Io {
        context: format!("opening the destination {}", dest.display()),
        source: e.into(),
    })
}

/// [`extract`] into a directory already open (e.g. found inside a container's root).
pub fn extract_into(
    reader: impl Read,
    dest: &RootDir,
    progress: &mut dyn FnMut(&ExtractStats),
) -> Result<ExtractStats, ArchiveError> {
    extract_with(reader, dest, ExtractOptions::default(), progress)
}

/// How an archive is applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtractOptions {
    /// Apply it as an OCI image layer over what is there: an entry `.wh.NAME` removes
    /// `NAME` (a directory with all it holds) and is not itself created; `.wh..wh..opq`
    /// removes from its directory everything lower layers put there (what this layer
    /// made stays); an entry replaces a directory in its way, with its contents. A
    /// whiteout naming `.`, `..`, nothing or `.zfs` is refused; one through a symlink that
    /// leaves the root is refused as any entry is; one of a missing path removes nothing.
    pub layer: bool,
}

impl ExtractOptions {
    /// An OCI layer's rules (see [`ExtractOptions::layer`]).
    pub fn layer() -> Self {
        Self { layer: true }
    }
}

/// Applies an OCI image layer (a tar stream) onto `dest`, the unpacked layers below it:
/// [`extract`] with [`ExtractOptions::layer`].
pub fn apply_layer(
    reader: impl Read,
    dest: &Path,
    progress: &mut dyn FnMut(&ExtractStats),
) -> Result<ExtractStats, ArchiveError> {
    extract_with(reader, &open_dest(dest)?, ExtractOptions::layer(), progress)
}

/// [`extract_into`] with `options`.
pub fn extract_with(
    reader: impl Read,
    dest: &RootDir,
    options: ExtractOptions,
    progress: &mut dyn FnMut(&ExtractStats),
) -> Result<ExtractStats, ArchiveError> {
    let root = dest.try_clone().map_err(|e| ArchiveError::Io {
        context: format!("opening the destination {}", dest.path().display()),
        source: e.into(),
    })?;
    let mut x = Extractor::new(root)?;
    x.layer = options.layer;
    let mut archive = tar::Archive::new(BufReader::with_capacity(64 * 1024, reader));
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        x.entry(&mut entry, progress)?;
    }
    x.finish()?;
    progress(&x.stats);
    Ok(x.stats)
}

/// Metadata of an entry, from its header and PAX records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    times: Times,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Clone, Copy)]
struct Times {
    atime: Timespec,
    mtime: Timespec,
}

impl Times {
    fn stamps(self) -> Timestamps {
        Timestamps {
            last_access: self.atime,
            last_modification: self.mtime,
        }
    }
}

/// A directory whose mode and times are set at the end.
struct DirMeta {
    /// Its real path from the root (symlinks resolved).
    real: PathBuf,
    mode: u32,
    times: Times,
}

/// A directory opened inside the root.
#[derive(Clone)]
struct Dir {
    fd: Rc<OwnedFd>,
    /// Its real path from the root (symlinks resolved).
    real: PathBuf,
}

/// The last parent directory resolved, by its path in the archive.
struct ParentCache {
    key: Vec<u8>,
    dir: Dir,
}

struct Extractor {
    root: RootDir,
    /// The root's own descriptor, for entries naming it (`./`).
    root_fd: Rc<OwnedFd>,
    /// Ownership can only be given by root; otherwise a refused chown is skipped.
    privileged: bool,
    stats: ExtractStats,
    reported: ExtractStats,
    buf: Vec<u8>,
    cache: Option<ParentCache>,
    dirs: Vec<DirMeta>,
    xattrs_skipped: u64,
    devices_skipped: u64,
    /// OCI layer rules (whiteouts, directories replaced whole).
    layer: bool,
    /// The archive paths this layer made (joined components), for opaque whiteouts.
    made: std::collections::HashSet<Vec<u8>>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The path of normal components, for [`kleene_rootfs`].
fn path_of(comps: &[&[u8]]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&comps.join(&b'/')))
}

/// The normal components of an archive path, or why it is refused. An empty list is
/// the root itself (`.`, `./`).
fn split_path(path: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if path.is_empty() {
        return Err("its path is empty");
    }
    if path.starts_with(b"/") {
        return Err("its path is absolute");
    }
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("its path contains \"..\""),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// A PAX time: `seconds[.fraction]`, maybe negative.
fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(d - b'0') * 10i64.pow(8 - u32::try_from(i).ok()?);
    }
    let (tv_sec, tv_nsec) = match (neg, nanos) {
        (false, n) => (secs, n),
        (true, 0) => (-secs, 0),
        (true, n) => (-secs - 1, 1_000_000_000 - n),
    };
    // `Nsecs` is `i64` here but `c_long` on some targets.
    #[allow(clippy::useless_conversion)]
    let tv_nsec = tv_nsec.try_into().ok()?;
    Some(Timespec { tv_sec, tv_nsec })
}

/// Removes `name` in `parent` and, for a directory, everything in it, never following a
/// symbolic link (a link is removed, not what it points at). Missing is done.
fn remove_tree(parent: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<()> {
    let st = match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if !is_dir(&st) {
        return rfs::unlinkat(parent, name, AtFlags::empty());
    }
    let fd = rfs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut children = Vec::new();
    for child in rfs::Dir::read_from(&fd)? {
        let child = child?;
        let n = child.file_name().to_bytes();
        if n != b"." && n != b".." {
            children.push(n.to_vec());
        }
    }
    for child in children {
        remove_tree(fd.as_fd(), &child)?;
    }
    rfs::unlinkat(parent, name, AtFlags::REMOVEDIR)
}

fn is_dir(st: &rfs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

fn mode_of(bits: u32) -> Mode {
    Mode::from_bits_truncate((bits & 0o7777) as rfs::RawMode)
}

/// An entry refused or failed because of the way to its parent (or its hardlink's
/// source); `what` is "its path" or "its hardlink target ...".
fn walk_error(name: &str, what: &str, e: kleene_rootfs::Error) -> ArchiveError {
    use kleene_rootfs::Error as E;
    match e {
        E::Escape { via: Some(l), .. } => refuse(
            name,
            format!(
                "{what} goes through symlink {:?} -> {:?}, which leads outside the root",
                l.path, l.target
            ),
        ),
        E::AbsoluteSymlink { link: l, .. } | E::Symlink { link: l, .. } => refuse(
            name,
            format!(
                "{what} goes through symlink {:?} -> {:?}, which points outside the root",
                l.path, l.target
            ),
        ),
        E::Escape { via: None, .. } => refuse(name, format!("{what} leads outside the root")),
        E::TooManySymlinks { at, .. } => refuse(
            name,
            format!("{what} goes through too many symlinks (at {at:?})"),
        ),
        E::ZfsControlDir { .. } => refuse(
            name,
            format!("{what} enters .zfs, the control directory of ZFS datasets"),
        ),
        E::NotADirectory { at, .. } => {
            entry_err(name, format!("opening directory {at:?}"), Errno::NOTDIR)
        }
        E::Io { at, source, .. } => entry_err(name, format!("opening directory {at:?}"), source),
        other => entry_err(name, "opening its directory", other),
    }
}

/// A link entry's target (empty when it has none).
fn link_target<R: Read>(entry: &tar::Entry<'_, R>) -> Vec<u8> {
    entry
        .link_name_bytes()
        .map(|t| t.into_owned())
        .unwrap_or_default()
}

/// The error for entry `name` of a kind that is not extracted, the kind shown as its
/// header byte.
fn unsupported(name: String, kind: tar::EntryType) -> ArchiveError {
    let b = kind.as_byte();
    let kind = if b.is_ascii_graphic() {
        format!("'{}'", char::from(b))
    } else {
        format!("0x{b:02x}")
    };
    ArchiveError::Unsupported { entry: name, kind }
}

impl Extractor {
    fn new(root: RootDir) -> Result<Self, ArchiveError> {
        let root_fd = root
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| ArchiveError::Io {
                context: format!("opening the destination {}", root.path().display()),
                source: e,
            })?;
        Ok(Extractor {
            root,
            root_fd: Rc::new(root_fd),
            privileged: rustix::process::geteuid().is_root(),
            stats: ExtractStats::default(),
            reported: ExtractStats::default(),
            buf: vec![0; CHUNK],
            cache: None,
            dirs: Vec::new(),
            xattrs_skipped: 0,
            devices_skipped: 0,
            layer: false,
            made: std::collections::HashSet::new(),
        })
    }

    fn tick(&mut self, progress: &mut dyn FnMut(&ExtractStats)) {
        if self.stats.entries - self.reported.entries >= PROGRESS_ENTRIES
            || self.stats.bytes - self.reported.bytes >= PROGRESS_BYTES
        {
            self.reported = self.stats.clone();
            progress(&self.stats);
        }
    }

    fn meta<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, ArchiveError> {
        let header = entry.header();
        let bad = |e: io::Error| entry_err(name, "reading its header", e);
        let mode = header.mode().map_err(bad)? & 0o7777;
        let id = |v: u64, what: &str| {
            u32::try_from(v).map_err(|_| {
                entry_err(
                    name,
                    "reading its header",
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{what} {v} is out of range"),
                    ),
                )
            })
        };
        let uid = id(header.uid().map_err(bad)?, "uid")?;
        let gid = id(header.gid().map_err(bad)?, "gid")?;
        let mtime = header.mtime().map_err(bad)?;
        let mut mtime = Timespec {
            tv_sec: i64::try_from(mtime).map_err(|_| {
                entry_err(
                    name,
                    "reading its header",
                    io::Error::new(io::ErrorKind::InvalidData, "mtime is out of range"),
                )
            })?,
            tv_nsec: 0,
        };
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry
            .pax_extensions()
            .map_err(|e| entry_err(name, "reading its pax records", e))?
        {
            for ext in pax {
                let ext = ext.map_err(|e| entry_err(name, "reading its pax records", e))?;
                let key = ext.key_bytes();
                if let Some(attr) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((attr.to_vec(), ext.value_bytes().to_vec()));
                } else if key == b"mtime" {
                    if let Some(t) = parse_pax_time(ext.value_bytes()) {
                        mtime = t;
                    }
                } else if key == b"atime" {
                    atime = parse_pax_time(ext.value_bytes());
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            times: Times {
                atime: atime.unwrap_or(mtime),
                mtime,
            },
            xattrs,
        })
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        progress: &mut dyn FnMut(&ExtractStats),
    ) -> Result<(), ArchiveError> {
        let path = entry.path_bytes().into_owned();
        let name = lossy(&path);
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.as_byte() == b'V' {
            log::debug!("archive: skipping {kind:?} header {name:?}");
            return Ok(());
        }
        let comps = split_path(&path).map_err(|reason| refuse(&name, reason))?;
        if self.layer {
            if let Some((last, dir)) = comps.split_last() {
                if let Some(target) = last.strip_prefix(b".wh.") {
                    self.whiteout(dir, target, &name)?;
                    self.stats.entries += 1;
                    self.tick(progress);
                    return Ok(());
                }
            }
        }
        let meta = Self::meta(entry, &name)?;
        let dir_by_name = path.ends_with(b"/");
        use tar::EntryType as T;
        match kind {
            T::Directory => self.directory(&comps, &name, &meta)?,
            T::Regular | T::Continuous | T::GNUSparse if dir_by_name => {
                self.directory(&comps, &name, &meta)?
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                self.file(entry, &comps, &name, &meta, progress)?
            }
            T::Symlink => self.symlink(&comps, &name, &link_target(entry), &meta)?,
            T::Link => self.hardlink(&comps, &name, &link_target(entry))?,
            T::Char | T::Block | T::Fifo => self.device(entry, kind, &comps, &name, &meta)?,
            other => return Err(unsupported(name, other)),
        }
        if self.layer {
            self.made.insert(comps.join(&b'/'));
        }
        self.stats.entries += 1;
        self.tick(progress);
        Ok(())
    }

    /// A device or fifo entry of `kind`, its device numbers read from its header.
    fn device<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        kind: tar::EntryType,
        comps: &[&[u8]],
        name: &str,
        meta: &Meta,
    ) -> Result<(), ArchiveError> {
        use tar::EntryType as T;
        let header = entry.header();
        let major = header
            .device_major()
            .map_err(|e| entry_err(name, "reading its header", e))?;
        let minor = header
            .device_minor()
            .map_err(|e| entry_err(name, "reading its header", e))?;
        let ft = match kind {
            T::Char => FileType::CharacterDevice,
            T::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        let dev = rfs::makedev(major.unwrap_or(0), minor.unwrap_or(0));
        self.node(comps, name, ft, dev, meta)
    }

    /// An OCI whiteout in the directory `dir` (archive components): `target` is the name
    /// after `.wh.`; `.wh..opq` makes the directory opaque.
    fn whiteout(&mut self, dir: &[&[u8]], target: &[u8], name: &str) -> Result<(), ArchiveError> {
        // What we resolved may change.
        self.cache = None;
        if target == b".wh..opq" {
            return self.opaque(dir, name);
        }
        if target.is_empty() || target == b"." || target == b".." || target == b".zfs" {
            return Err(refuse(
                name,
                format!("it is a whiteout of {:?}", lossy(target)),
            ));
        }
        let Some(parent) = self.existing_dir(dir, name)? else {
            return Ok(());
        };
        remove_tree(parent.as_fd(), target)
            .map_err(|e| entry_err(name, format!("removing {:?}", lossy(target)), e))
    }

    /// An opaque whiteout: `dir` loses what lower layers put in it.
    fn opaque(&mut self, dir: &[&[u8]], name: &str) -> Result<(), ArchiveError> {
        let Some(fd) = self.existing_dir(dir, name)? else {
            return Ok(());
        };
        let mut children = Vec::new();
        let listing =
            rfs::Dir::read_from(&fd).map_err(|e| entry_err(name, "listing its directory", e))?;
        for child in listing {
            let child = child.map_err(|e| entry_err(name, "listing its directory", e))?;
            let n = child.file_name().to_bytes();
            if n != b"." && n != b".." {
                children.push(n.to_vec());
            }
        }
        for child in children {
            let mut key = dir.join(&b'/');
            if !key.is_empty() {
                key.push(b'/');
            }
            key.extend_from_slice(&child);
            if !self.made.contains(&key) {
                remove_tree(fd.as_fd(), &child)
                    .map_err(|e| entry_err(name, format!("removing {:?}", lossy(&child)), e))?;
            }
        }
        Ok(())
    }

    /// The directory `dir` inside the root, every symlink on the way (its own name
    /// included) followed beneath the root; `None` when it does not exist.
    fn existing_dir(&mut self, dir: &[&[u8]], name: &str) -> Result<Option<OwnedFd>, ArchiveError> {
        if dir.is_empty() {
            return self
                .root_fd
                .try_clone()
                .map(Some)
                .map_err(|e| entry_err(name, "opening the root", e));
        }
        // The parent of a name inside `dir` is `dir` itself, resolved.
        let mut inside = dir.to_vec();
        inside.push(b"x");
        match self
            .root
            .parent_and_name(path_of(&inside), Symlinks::FollowBeneath, None)
        {
            Ok((parent, _)) => Ok(Some(parent.fd)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(kleene_rootfs::Error::NotADirectory { .. }) => Ok(None),
            Err(e) => Err(walk_error(name, "its path", e)),
        }
    }

    /// The parent directory of an entry (created as needed) and the entry's last name.
    /// `comps` must not be empty.
    fn parent<'c>(
        &mut self,
        comps: &[&'c [u8]],
        name: &str,
        what: &str,
    ) -> Result<(Dir, &'c [u8]), ArchiveError> {
        let Some((last, dir)) = comps.split_last() else {
            return Err(refuse(name, format!("{what} names the root itself")));
        };
        let key = dir.join(&b'/');
        if let Some(cache) = &self.cache {
            if cache.key == key {
                return Ok((cache.dir.clone(), last));
            }
        }
        let (parent, _) = self
            .root
            .parent_and_name(
                path_of(comps),
                Symlinks::FollowBeneath,
                Some(Mkdir::default()),
            )
            .map_err(|e| walk_error(name, what, e))?;
        let dir = Dir {
            fd: Rc::new(parent.fd),
            real: parent.path,
        };
        // The root is never cached: `parent_and_name` checks each of its children for
        // `.zfs`.
        if !dir.real.as_os_str().is_empty() {
            self.cache = Some(ParentCache {
                key,
                dir: dir.clone(),
            });
        }
        Ok((dir, last))
    }

    /// Removes what is in the way of a new entry (tar semantics: later entries win).
    /// A directory goes only if empty.
    fn remove_existing(
        &mut self,
        parent: BorrowedFd<'_>,
        last: &[u8],
        name: &str,
    ) -> Result<(), ArchiveError> {
        // What we resolved may have changed.
        self.cache = None;
        let st = match rfs::statat(parent, last, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(entry_err(name, "looking at what is in its place", e)),
        };
        if self.layer && is_dir(&st) {
            return remove_tree(parent, last)
                .map_err(|e| entry_err(name, "removing the directory in its place", e));
        }
        let (flags, what) = if is_dir(&st) {
            (AtFlags::REMOVEDIR, "removing the directory in its place")
        } else {
            (AtFlags::empty(), "removing the file in its place")
        };
        rfs::unlinkat(parent, last, flags).map_err(|e| entry_err(name, what, e))
    }

    fn chown(
        &self,
        r: rustix::io::Result<()>,
        name: &str,
        meta: &Meta,
    ) -> Result<(), ArchiveError> {
        match r {
            Ok(()) => Ok(()),
            Err(Errno::PERM) if !self.privileged => {
                log::debug!(
                    "archive: not root, leaving {name:?} owned by us instead of {}:{}",
                    meta.uid,
                    meta.gid
                );
                Ok(())
            }
            Err(e) => Err(entry_err(
                name,
                format!("setting its owner to {}:{}", meta.uid, meta.gid),
                e,
            )),
        }
    }

    fn owner(meta: &Meta) -> (Option<Uid>, Option<Gid>) {
        (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)))
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn set_xattrs(
        &mut self,
        fd: BorrowedFd<'_>,
        name: &str,
        meta: &Meta,
    ) -> Result<(), ArchiveError> {
        for (key, value) in &meta.xattrs {
            match rfs::fsetxattr(fd, key.as_slice(), value, rfs::XattrFlags::empty()) {
                Ok(()) => {}
                Err(
                    e @ (Errno::NOTSUP
                    | Errno::PERM
                    | Errno::ACCESS
                    | Errno::INVAL
                    | Errno::RANGE
                    | Errno::TOOBIG),
                ) => self.skip_xattr(name, key, e),
                Err(e) => {
                    return Err(entry_err(
                        name,
                        format!("setting extended attribute {:?}", lossy(key)),
                        e,
                    ))
                }
            }
        }
        Ok(())
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn set_xattrs(
        &mut self,
        _fd: BorrowedFd<'_>,
        name: &str,
        meta: &Meta,
    ) -> Result<(), ArchiveError> {
        // FreeBSD has extattr(2), which rustix does not wrap; kleene-core has no unsafe code.
        for (key, _) in &meta.xattrs {
            self.skip_xattr(name, key, Errno::NOTSUP);
        }
        Ok(())
    }

    fn skip_xattr(&mut self, name: &str, key: &[u8], e: Errno) {
        self.xattrs_skipped += 1;
        let key = lossy(key);
        if self.xattrs_skipped == 1 {
            log::warn!(
                "archive entry {name:?}: skipping extended attribute {key:?}: {} (further skips are logged at debug level)",
                io::Error::from(e)
            );
        } else {
            log::debug!(
                "archive entry {name:?}: skipping extended attribute {key:?}: {}",
                io::Error::from(e)
            );
        }
    }

    fn skip_link_xattrs(name: &str, meta: &Meta) {
        if !meta.xattrs.is_empty() {
            log::debug!("archive entry {name:?}: extended attributes of symlinks and device nodes are not restored");
        }
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        comps: &[&[u8]],
        name: &str,
        meta: &Meta,
        progress: &mut dyn FnMut(&ExtractStats),
    ) -> Result<(), ArchiveError> {
        let (Dir { fd: parent, .. }, last) = self.parent(comps, name, "its path")?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let create = || rfs::openat(parent.as_fd(), last, flags, Mode::from_bits_truncate(0o600));
        let fd = match create() {
            Err(Errno::EXIST) => {
                self.remove_existing(parent.as_fd(), last, name)?;
                create()
            }
            other => other,
        }
        .map_err(|e| entry_err(name, "creating the file", e))?;
        let mut file = File::from(fd);
        let mut written: u64 = 0;
        let mut holes = false;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(entry_err(name, "reading its data", e)),
            };
            let chunk = &self.buf[..n];
            // Runs of zeros become holes, as they were in a sparse original.
            if n >= 4096 && chunk.iter().all(|&b| b == 0) {
                let skip = i64::try_from(n)
                    .map_err(|_| entry_err(name, "writing its data", Errno::FBIG))?;
                file.seek(SeekFrom::Current(skip))
                    .map_err(|e| entry_err(name, "writing its data", e))?;
                holes = true;
            } else {
                file.write_all(chunk)
                    .map_err(|e| entry_err(name, "writing its data", e))?;
            }
            written += n as u64;
            self.stats.bytes += n as u64;
            self.tick(progress);
        }
        if holes {
            file.set_len(written)
                .map_err(|e| entry_err(name, "writing its data", e))?;
        }
        let (uid, gid) = Self::owner(meta);
        self.chown(rfs::fchown(&file, uid, gid), name, meta)?;
        // After chown, which clears setuid and setgid.
        rfs::fchmod(&file, mode_of(meta.mode))
            .map_err(|e| entry_err(name, "setting its mode", e))?;
        // After chown too, which clears security.capability.
        self.set_xattrs(file.as_fd(), name, meta)?;
        rfs::futimens(&file, &meta.times.stamps())
            .map_err(|e| entry_err(name, "setting its times", e))?;
        Ok(())
    }

    fn directory(&mut self, comps: &[&[u8]], name: &str, meta: &Meta) -> Result<(), ArchiveError> {
        let (fd, real) = if comps.is_empty() {
            (Rc::clone(&self.root_fd), PathBuf::new())
        } else {
            let (Dir { fd: parent, real }, last) = self.parent(comps, name, "its path")?;
            match rfs::mkdirat(parent.as_fd(), last, Mode::from_bits_truncate(0o700)) {
                Ok(()) => {}
                Err(Errno::EXIST) => {
                    let st = rfs::statat(parent.as_fd(), last, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| entry_err(name, "looking at what is in its place", e))?;
                    if !is_dir(&st) {
                        self.remove_existing(parent.as_fd(), last, name)?;
                        rfs::mkdirat(parent.as_fd(), last, Mode::from_bits_truncate(0o700))
                            .map_err(|e| entry_err(name, "creating the directory", e))?;
                    }
                }
                Err(e) => return Err(entry_err(name, "creating the directory", e)),
            }
            let fd = rfs::openat(
                parent.as_fd(),
                last,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| entry_err(name, "opening the directory", e))?;
            (Rc::new(fd), real.join(OsStr::from_bytes(last)))
        };
        let (uid, gid) = Self::owner(meta);
        self.chown(rfs::fchown(&*fd, uid, gid), name, meta)?;
        self.set_xattrs(fd.as_fd(), name, meta)?;
        self.dirs.push(DirMeta {
            real,
            mode: meta.mode,
            times: meta.times,
        });
        Ok(())
    }

    fn symlink(
        &mut self,
        comps: &[&[u8]],
        name: &str,
        target: &[u8],
        meta: &Meta,
    ) -> Result<(), ArchiveError> {
        if target.is_empty() {
            return Err(entry_err(
                name,
                "creating the symlink",
                io::Error::new(io::ErrorKind::InvalidData, "its target is empty"),
            ));
        }
        let (Dir { fd: parent, .. }, last) = self.parent(comps, name, "its path")?;
        let create = || rfs::symlinkat(target, parent.as_fd(), last);
        match create() {
            Err(Errno::EXIST) => {
                self.remove_existing(parent.as_fd(), last, name)?;
                create()
            }
            other => other,
        }
        .map_err(|e| entry_err(name, "creating the symlink", e))?;
        let (uid, gid) = Self::owner(meta);
        self.chown(
            rfs::chownat(parent.as_fd(), last, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
            name,
            meta,
        )?;
        Self::skip_link_xattrs(name, meta);
        rfs::utimensat(
            parent.as_fd(),
            last,
            &meta.times.stamps(),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| entry_err(name, "setting its times", e))?;
        Ok(())
    }

    fn hardlink(&mut self, comps: &[&[u8]], name: &str, target: &[u8]) -> Result<(), ArchiveError> {
        let shown = lossy(target);
        let tcomps = split_path(target).map_err(|reason| {
            refuse(
                name,
                format!(
                    "its hardlink target {shown:?}: {}",
                    reason.trim_start_matches("its path ")
                ),
            )
        })?;
        let Some((tlast, _)) = tcomps.split_last() else {
            return Err(refuse(name, "its hardlink target is the root itself"));
        };
        let what = format!("its hardlink target {shown:?}");
        let (src, _) = self
            .root
            .parent_and_name(path_of(&tcomps), Symlinks::FollowBeneath, None)
            .map_err(|e| walk_error(name, &what, e))?;
        let src = src.fd;
        let (Dir { fd: parent, .. }, last) = self.parent(comps, name, "its path")?;
        let link = || rfs::linkat(src.as_fd(), *tlast, parent.as_fd(), last, AtFlags::empty());
        match link() {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                let a = rfs::statat(src.as_fd(), *tlast, AtFlags::SYMLINK_NOFOLLOW);
                let b = rfs::statat(parent.as_fd(), last, AtFlags::SYMLINK_NOFOLLOW);
                if let (Ok(a), Ok(b)) = (a, b) {
                    if a.st_dev == b.st_dev && a.st_ino == b.st_ino {
                        return Ok(());
                    }
                }
                self.remove_existing(parent.as_fd(), last, name)?;
                link().map_err(|e| entry_err(name, format!("linking to {shown:?}"), e))
            }
            Err(e) => Err(entry_err(name, format!("linking to {shown:?}"), e)),
        }
    }

    fn node(
        &mut self,
        comps: &[&[u8]],
        name: &str,
        ft: FileType,
        dev: rfs::Dev,
        meta: &Meta,
    ) -> Result<(), ArchiveError> {
        let (Dir { fd: parent, .. }, last) = self.parent(comps, name, "its path")?;
        let create = || {
            rfs::mknodat(
                parent.as_fd(),
                last,
                ft,
                Mode::from_bits_truncate(0o600),
                dev,
            )
        };
        let made = match create() {
            Err(Errno::EXIST) => {
                self.remove_existing(parent.as_fd(), last, name)?;
                create()
            }
            other => other,
        };
        match made {
            Ok(()) => {}
            Err(e @ (Errno::PERM | Errno::INVAL | Errno::NOTSUP | Errno::ACCESS))
                if ft != FileType::Fifo =>
            {
                self.devices_skipped += 1;
                log::warn!(
                    "archive entry {name:?}: skipping device node: {}",
                    io::Error::from(e)
                );
                return Ok(());
            }
            Err(e) => return Err(entry_err(name, "creating the node", e)),
        }
        let (uid, gid) = Self::owner(meta);
        self.chown(
            rfs::chownat(parent.as_fd(), last, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
            name,
            meta,
        )?;
        // A node cannot be opened without side effects, so its mode is set by name: we
        // have just created it there, in a dataset no one else writes to.
        rfs::chmodat(parent.as_fd(), last, mode_of(meta.mode), AtFlags::empty())
            .map_err(|e| entry_err(name, "setting its mode", e))?;
        Self::skip_link_xattrs(name, meta);
        rfs::utimensat(
            parent.as_fd(),
            last,
            &meta.times.stamps(),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| entry_err(name, "setting its times", e))?;
        Ok(())
    }

    /// Sets the directories' modes and times, deepest first, now that their contents are
    /// written. A directory replaced since (by a later entry) is skipped.
    fn finish(&mut self) -> Result<(), ArchiveError> {
        self.cache = None;
        let mut dirs = std::mem::take(&mut self.dirs);
        // Stable: of two records of one directory, the later (the archive's last word)
        // is applied last.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.real.components().count()));
        for d in &dirs {
            let name = lossy(d.real.as_os_str().as_bytes());
            let fd = if d.real.as_os_str().is_empty() {
                Rc::clone(&self.root_fd)
            } else {
                // A real path: a symlink on it now means a later entry replaced it.
                match self.root.open_dir(&d.real, Symlinks::Refuse, false) {
                    Ok(fd) => Rc::new(fd),
                    Err(e) => {
                        log::debug!("archive: directory {name:?} was replaced, not setting its mode and times: {e}");
                        continue;
                    }
                }
            };
            rfs::fchmod(&*fd, mode_of(d.mode))
                .map_err(|e| entry_err(&name, "setting its mode", e))?;
            rfs::futimens(&*fd, &d.times.stamps())
                .map_err(|e| entry_err(&name, "setting its times", e))?;
        }
        if self.xattrs_skipped > 0 {
            log::warn!(
                "archive: skipped {} extended attributes that could not be set",
                self.xattrs_skipped
            );
        }
        if self.devices_skipped > 0 {
            log::warn!(
                "archive: skipped {} device nodes that could not be created",
                self.devices_skipped
            );
        }
        Ok(())
    }
}

/// A writer that compresses what it is given (`klee image save` to an archive).
#[allow(missing_debug_implementations)]
#[non_exhaustive]
pub enum Compressor<W: Write> {
    /// Written as is.
    None(W),
    /// gzip, default level.
    Gzip(flate2::write::GzEncoder<W>),
    /// xz, level 6.
    Xz(liblzma::write::XzEncoder<W>),
    /// zstd, level 3.
    Zstd(zstd::Encoder<'static, W>),
}

/// A compressor of `kind` writing to `out`.
pub fn compressor<W: Write>(kind: Compression, out: W) -> Result<Compressor<W>, ArchiveError> {
    Ok(match kind {
        Compression::None => Compressor::None(out),
        Compression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
            out,
            flate2::Compression::default(),
        )),
        Compression::Xz => Compressor::Xz(liblzma::write::XzEncoder::new(out, 6)),
        Compression::Zstd => Compressor::Zstd(
            zstd::Encoder::new(out, 3).map_err(|source| ArchiveError::Read { source })?,
        ),
    })
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(buf),
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Xz(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(w) => w.flush(),
            Compressor::Xz(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

impl<W: Write> Compressor<W> {
    /// Ends the stream, returning the writer.
    pub fn finish(self) -> io::Result<W> {
        let mut w = match self {
            Compressor::None(w) => w,
            Compressor::Gzip(w) => w.finish()?,
            Compressor::Xz(w) => w.finish()?,
            Compressor::Zstd(w) => w.finish()?,
        };
        w.flush()?;
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_path_refuses_escapes() {
        assert_eq!(
            split_path(b"./a//b/./c/").ok(),
            Some(vec![&b"a"[..], b"b", b"c"])
        );
        assert_eq!(split_path(b"./").ok(), Some(vec![]));
        assert!(split_path(b"/etc/passwd").is_err());
        assert!(split_path(b"../x").is_err());
        assert!(split_path(b"a/../../x").is_err());
        assert!(split_path(b"a/..").is_err());
        assert!(split_path(b"").is_err());
    }

    #[test]
    fn pax_times() {
        let t = |s: &str| parse_pax_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(
            t("1700000000.123456789123"),
            Some((1_700_000_000, 123_456_789))
        );
        assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(t("-3"), Some((-3, 0)));
        assert_eq!(t("x"), None);
        assert_eq!(t(""), None);
        assert_eq!(t("1.2.3"), None);
    }

    #[test]
    fn tar_by_checksum() {
        let mut h = tar::Header::new_old();
        h.set_path("file").expect("a short path");
        h.set_size(0);
        h.set_cksum();
        assert!(looks_like_tar(h.as_bytes()));
        let mut bad = *h.as_bytes();
        bad[0] ^= 1;
        assert!(!looks_like_tar(&bad));
        assert!(looks_like_tar(&[0u8; 512]));
        assert!(!looks_like_tar(&[0u8; 100]));
    }
}
