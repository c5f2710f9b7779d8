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
//! and skipped. Directory modes and times are applied at the end, each directory after
//! all it holds, so that writing their contents does not change them. File data is
//! streamed in 256 KiB chunks; a chunk of zeros becomes a hole.
//!
//! # Threads
//!
//! Decompression runs beside extraction (xz with liblzma's threads, the others on the
//! reader's). The reader walks the entries in order and does all the work on names, and
//! all the checks above, itself; the contents of regular files, then their owners, modes,
//! extended attributes and times, are written through their open descriptors by a few
//! writer threads, with at most 64 MiB of data in flight (see `writers`). The result is
//! the serial extraction's.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

use kleene_rootfs::{Mkdir, RootDir, Symlinks};
use liblzma::stream::{Action, MtStreamBuilder, Status, Stream};
use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;

mod writers;

#[cfg(test)]
mod parallel_tests;

use writers::{Bytes, FileJob, Pool, Shared, Target, Writing};

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
/// Directories kept open by the reader (by their path in the archive), at most.
const OPEN_DIRS: usize = 128;

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
    /// Writer threads for the files' contents; `None`: a default from the number of
    /// cores; 0: the reader writes every file itself.
    writers: Option<usize>,
}

impl ExtractOptions {
    /// An OCI layer's rules (see [`ExtractOptions::layer`]).
    pub fn layer() -> Self {
        Self {
            layer: true,
            writers: None,
        }
    }

    /// With `n` writer threads for the files' contents (0: none, the thread that reads
    /// the archive writes them); the default depends on the number of cores.
    pub fn with_writers(self, n: usize) -> Self {
        Self {
            writers: Some(n),
            ..self
        }
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
    let shared = Shared::new();
    let writers = options.writers.unwrap_or_else(writers::default_writers);
    std::thread::scope(|scope| {
        let mut x = Extractor::new(root, &shared, Pool::new(scope, &shared, writers))?;
        x.layer = options.layer;
        let read = x.entries(reader, progress);
        // Once every file is there, the directories are complete: their modes and times
        // are set while the writers are still writing contents (which change neither).
        let dirs = (read.is_ok() && !shared.failed()).then(|| {
            x.barrier();
            x.finish_dirs()
        });
        // The writers finish what they were given, whatever happened.
        let joined = x.pool.finish();
        // Of the reader's error and the writers', the earliest entry's.
        match (read, shared.take_failure()) {
            (Err((i, _)), Some((j, e))) if j <= i => return Err(e),
            (Err((_, e)), _) => return Err(e),
            (Ok(()), Some((_, e))) => return Err(e),
            (Ok(()), None) => joined?,
        }
        dirs.unwrap_or(Ok(()))?;
        x.log_skipped();
        progress(&x.stats);
        Ok(x.stats)
    })
}

/// Metadata of an entry, from its header and PAX records.
#[derive(Debug)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    times: Times,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, Clone, Copy)]
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
    fd: Arc<OwnedFd>,
    /// Its real path from the root (symlinks resolved).
    real: PathBuf,
}

struct Extractor<'scope, 'env> {
    root: RootDir,
    /// The root's own descriptor, for entries naming it (`./`).
    root_fd: Arc<OwnedFd>,
    shared: &'env Shared,
    /// The writer threads.
    pool: Pool<'scope, 'env>,
    /// The index of the entry being extracted, in the archive.
    index: u64,
    stats: ExtractStats,
    reported: ExtractStats,
    buf: Vec<u8>,
    /// Directories resolved (or made) inside the root, by their path in the archive
    /// (joined normal components; never the root). Emptied whenever something is
    /// removed, which may change what a path resolves to.
    open_dirs: HashMap<Vec<u8>, Dir>,
    /// The directories this extraction made (empty then), by real path, with the names
    /// used in each since (a superset of what is there): a file with a new name there is
    /// created by a writer, its entry's index kept with its name until the reader has
    /// waited for it.
    fresh: HashMap<PathBuf, HashMap<Vec<u8>, Option<u64>>>,
    dirs: Vec<DirMeta>,
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

/// Reads some of an entry's data into `buf`: 0 at its end.
fn read_some(entry: &mut impl Read, buf: &mut [u8], name: &str) -> Result<usize, ArchiveError> {
    loop {
        match entry.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(entry_err(name, "reading its data", e)),
        }
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

impl<'scope, 'env> Extractor<'scope, 'env> {
    fn new(
        root: RootDir,
        shared: &'env Shared,
        pool: Pool<'scope, 'env>,
    ) -> Result<Self, ArchiveError> {
        let root_fd = root
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| ArchiveError::Io {
                context: format!("opening the destination {}", root.path().display()),
                source: e,
            })?;
        Ok(Extractor {
            root,
            root_fd: Arc::new(root_fd),
            shared,
            pool,
            index: 0,
            stats: ExtractStats::default(),
            reported: ExtractStats::default(),
            buf: vec![0; CHUNK],
            open_dirs: HashMap::new(),
            fresh: HashMap::new(),
            dirs: Vec::new(),
            devices_skipped: 0,
            layer: false,
            made: std::collections::HashSet::new(),
        })
    }

    /// Extracts the entries of the tar stream, in order, until its end, an error, or a
    /// writer's error; an error comes with the index of its entry.
    fn entries(
        &mut self,
        reader: impl Read,
        progress: &mut dyn FnMut(&ExtractStats),
    ) -> Result<(), (u64, ArchiveError)> {
        let mut archive = tar::Archive::new(BufReader::with_capacity(64 * 1024, reader));
        let entries = archive.entries().map_err(|e| (0, read_err(e)))?;
        if self.pool.parallel() && self.root_is_empty() {
            self.fresh.insert(PathBuf::new(), HashMap::new());
        }
        for (index, entry) in (0u64..).zip(entries) {
            if self.shared.failed() {
                // The writer's error is reported.
                return Ok(());
            }
            self.index = index;
            let mut entry = entry.map_err(|e| (index, read_err(e)))?;
            self.entry(&mut entry, progress).map_err(|e| (index, e))?;
        }
        Ok(())
    }

    /// Whether the root is empty (a new dataset's is).
    fn root_is_empty(&self) -> bool {
        let Ok(listing) = rfs::Dir::read_from(&*self.root_fd) else {
            return false;
        };
        for child in listing {
            match child {
                Ok(c) if matches!(c.file_name().to_bytes(), b"." | b"..") => {}
                _ => return false,
            }
        }
        true
    }

    /// Before `name` in directory `real` is made, replaced or linked to: waits for a
    /// writer's pending create of it; notes the name as used.
    fn settle(&mut self, real: &Path, name: &[u8]) {
        if let Some(names) = self.fresh.get_mut(real) {
            if let Some(Some(index)) = names.insert(name.to_vec(), None) {
                self.shared.wait_created(index);
            }
        }
    }

    /// Waits for all of the writers' pending creates: before a removal, or a walk that
    /// did not find its way, whose outcome a file not yet created could change.
    fn barrier(&self) {
        self.shared.wait_all_created();
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
                self.file(entry, &comps, &name, meta, progress)?
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
        // What we resolved may change; what is to be removed must be there.
        self.open_dirs.clear();
        self.barrier();
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
        if let Some(d) = self.open_dirs.get(&key) {
            return Ok((d.clone(), last));
        }
        // The parent's own parent is open: one `openat(O_NOFOLLOW)` finds a directory
        // there. Anything else (missing, a symlink) takes the whole walk below. Never at
        // the root, where the walk checks for `.zfs`.
        if let Some((dlast, up)) = dir.split_last() {
            if let Some(up) = self.open_dirs.get(&up.join(&b'/')) {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                if let Ok(fd) = rfs::openat(up.fd.as_fd(), *dlast, flags, Mode::empty()) {
                    let d = Dir {
                        fd: Arc::new(fd),
                        real: up.real.join(OsStr::from_bytes(dlast)),
                    };
                    self.keep_dir(key, d.clone());
                    return Ok((d, last));
                }
            }
        }
        let walk = |mkdir| {
            self.root
                .parent_and_name(path_of(comps), Symlinks::FollowBeneath, mkdir)
        };
        let (parent, _) = match walk(None) {
            Ok(found) => found,
            Err(_) => {
                // Something missing (maybe a file a writer is still to create, which the
                // serial extraction would meet), or directories to make: the walk again,
                // as the serial extraction does it, once all files are there.
                self.barrier();
                let made = walk(Some(Mkdir::default())).map_err(|e| walk_error(name, what, e))?;
                // It may have made directories with names not kept in `fresh`.
                self.fresh.clear();
                made
            }
        };
        let dir = Dir {
            fd: Arc::new(parent.fd),
            real: parent.path,
        };
        self.keep_dir(key, dir.clone());
        Ok((dir, last))
    }

    /// Keeps directory `dir`, resolved from archive path `key`, open for the next
    /// entries. The root is never kept: `parent_and_name` checks each of its children
    /// for `.zfs`.
    fn keep_dir(&mut self, key: Vec<u8>, dir: Dir) {
        if key.is_empty() || dir.real.as_os_str().is_empty() {
            return;
        }
        if self.open_dirs.len() >= OPEN_DIRS {
            self.open_dirs.clear();
        }
        self.open_dirs.insert(key, dir);
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
        self.open_dirs.clear();
        let st = match rfs::statat(parent, last, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(entry_err(name, "looking at what is in its place", e)),
        };
        if is_dir(&st) {
            // Its contents must all be there.
            self.barrier();
        }
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

    fn owner(meta: &Meta) -> (Option<Uid>, Option<Gid>) {
        (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)))
    }

    /// Whether `st`, what is there, is already owned as `meta` says (a chown would then
    /// change nothing: no mode bit it would clear was set yet).
    fn owned(st: &rfs::Stat, meta: &Meta) -> bool {
        st.st_uid == meta.uid && st.st_gid == meta.gid
    }

    fn skip_link_xattrs(name: &str, meta: &Meta) {
        if !meta.xattrs.is_empty() {
            log::debug!("archive entry {name:?}: extended attributes of symlinks and device nodes are not restored");
        }
    }

    /// A regular file: created here, in order; its data read here and written (with its
    /// metadata) by a writer thread, or here without writers.
    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        comps: &[&[u8]],
        name: &str,
        meta: Meta,
        progress: &mut dyn FnMut(&ExtractStats),
    ) -> Result<(), ArchiveError> {
        let (Dir { fd: parent, real }, last) = self.parent(comps, name, "its path")?;
        // Made with its permission bits (the umask applies): the writer sets the mode
        // only where it differs, e.g. for setuid bits, which a chown would clear.
        let mode = Mode::from_bits_truncate((meta.mode & 0o777) as rfs::RawMode);
        let index = self.index;
        let free = match self.fresh.get_mut(&real) {
            Some(names) if !names.contains_key(last) => {
                names.insert(last.to_vec(), Some(index));
                true
            }
            _ => false,
        };
        let target = if free {
            // A new name in a directory made here: a writer creates it.
            Target::Create {
                dir: parent,
                name: last.to_vec(),
                mode,
                pending: self.shared.creating(index),
            }
        } else {
            self.settle(&real, last);
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let create = || rfs::openat(parent.as_fd(), last, flags, mode);
            let fd = match create() {
                Err(Errno::EXIST) => {
                    self.remove_existing(parent.as_fd(), last, name)?;
                    create()
                }
                other => other,
            }
            .map_err(|e| entry_err(name, "creating the file", e))?;
            Target::Open(File::from(fd))
        };
        if !self.pool.parallel() {
            let Target::Open(file) = target else {
                return Err(writers::stopped());
            };
            let mut w = Writing::new(name.to_string(), file, meta)?;
            loop {
                let n = read_some(entry, &mut self.buf, name)?;
                if n == 0 {
                    break;
                }
                w.put(&self.buf[..n])?;
                self.stats.bytes += n as u64;
                self.tick(progress);
            }
            return w.finish(self.shared);
        }
        let shared = self.shared;
        let first = usize::try_from(entry.size())
            .unwrap_or(usize::MAX)
            .min(writers::HEAD);
        let mut head = shared.bytes(first);
        self.fill(entry, &mut head, first, name, progress)?;
        // Is there more than the header said (or than the head holds)?
        let mut more = None;
        if head.data.len() == first {
            let n = read_some(entry, &mut self.buf, name)?;
            if n > 0 {
                let mut piece = shared.bytes(n);
                piece.data.extend_from_slice(&self.buf[..n]);
                self.stats.bytes += n as u64;
                more = Some(piece);
            }
        }
        let job = |rest| FileJob {
            index,
            name: name.to_string(),
            target,
            meta,
            head,
            rest,
        };
        let Some(piece) = more else {
            return self.pool.submit(job(None));
        };
        // A large file: the rest follows, piece by piece, while a writer writes.
        let (tx, rx) = mpsc::sync_channel(writers::PIECES);
        self.pool.submit(job(Some(rx)))?;
        let gone = || writers::stopped();
        tx.send(Some(piece)).map_err(|_| gone())?;
        loop {
            let mut piece = shared.bytes(CHUNK);
            self.fill(entry, &mut piece, CHUNK, name, progress)?;
            if piece.data.is_empty() {
                break;
            }
            tx.send(Some(piece)).map_err(|_| gone())?;
        }
        tx.send(None).map_err(|_| gone())
    }

    /// Reads up to `want` bytes of the entry's data into `buf` (fewer only at its end).
    fn fill<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        buf: &mut Bytes<'_>,
        want: usize,
        name: &str,
        progress: &mut dyn FnMut(&ExtractStats),
    ) -> Result<(), ArchiveError> {
        let before = buf.data.len();
        let limit = u64::try_from(want.saturating_sub(before)).unwrap_or(u64::MAX);
        (&mut *entry)
            .take(limit)
            .read_to_end(&mut buf.data)
            .map_err(|e| entry_err(name, "reading its data", e))?;
        self.stats.bytes += (buf.data.len() - before) as u64;
        self.tick(progress);
        Ok(())
    }

    fn directory(&mut self, comps: &[&[u8]], name: &str, meta: &Meta) -> Result<(), ArchiveError> {
        let (fd, real) = if comps.is_empty() {
            (Arc::clone(&self.root_fd), PathBuf::new())
        } else {
            let (Dir { fd: parent, real }, last) = self.parent(comps, name, "its path")?;
            self.settle(&real, last);
            let made = match rfs::mkdirat(parent.as_fd(), last, Mode::from_bits_truncate(0o700)) {
                Ok(()) => true,
                Err(Errno::EXIST) => {
                    let st = rfs::statat(parent.as_fd(), last, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| entry_err(name, "looking at what is in its place", e))?;
                    if !is_dir(&st) {
                        self.remove_existing(parent.as_fd(), last, name)?;
                        rfs::mkdirat(parent.as_fd(), last, Mode::from_bits_truncate(0o700))
                            .map_err(|e| entry_err(name, "creating the directory", e))?;
                    }
                    !is_dir(&st)
                }
                Err(e) => return Err(entry_err(name, "creating the directory", e)),
            };
            if made && self.pool.parallel() {
                // Empty: its files may be created by the writers.
                self.fresh
                    .insert(real.join(OsStr::from_bytes(last)), HashMap::new());
            }
            let fd = rfs::openat(
                parent.as_fd(),
                last,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| entry_err(name, "opening the directory", e))?;
            let d = Dir {
                fd: Arc::new(fd),
                real: real.join(OsStr::from_bytes(last)),
            };
            // Its entries will find it open.
            self.keep_dir(comps.join(&b'/'), d.clone());
            (d.fd, d.real)
        };
        let st = rfs::fstat(&*fd).map_err(|e| entry_err(name, "looking at the directory", e))?;
        if !Self::owned(&st, meta) {
            let (uid, gid) = Self::owner(meta);
            self.shared.chown(rfs::fchown(&*fd, uid, gid), name, meta)?;
        }
        self.shared.set_xattrs(fd.as_fd(), name, meta)?;
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
        let (Dir { fd: parent, real }, last) = self.parent(comps, name, "its path")?;
        self.settle(&real, last);
        let create = || rfs::symlinkat(target, parent.as_fd(), last);
        match create() {
            Err(Errno::EXIST) => {
                self.remove_existing(parent.as_fd(), last, name)?;
                create()
            }
            other => other,
        }
        .map_err(|e| entry_err(name, "creating the symlink", e))?;
        let owned = rfs::statat(parent.as_fd(), last, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| Self::owned(&st, meta));
        if !owned {
            let (uid, gid) = Self::owner(meta);
            self.shared.chown(
                rfs::chownat(parent.as_fd(), last, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
                name,
                meta,
            )?;
        }
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
        let walk = || {
            self.root
                .parent_and_name(path_of(&tcomps), Symlinks::FollowBeneath, None)
        };
        let src = match walk() {
            Ok((src, _)) => src,
            Err(_) => {
                // Maybe through a file a writer is still to create: as the serial
                // extraction, once all files are there.
                self.barrier();
                walk().map_err(|e| walk_error(name, &what, e))?.0
            }
        };
        // The target may be a file a writer is still to create.
        self.settle(&src.path, tlast);
        let src = src.fd;
        let (Dir { fd: parent, real }, last) = self.parent(comps, name, "its path")?;
        self.settle(&real, last);
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
        let (Dir { fd: parent, real }, last) = self.parent(comps, name, "its path")?;
        self.settle(&real, last);
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
        self.shared.chown(
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

    /// Sets the directories' modes and times, now that their contents are written: each
    /// after all the directories it holds, a directory found by its real path, one
    /// `openat(O_NOFOLLOW)` per component from its parent, held open while its
    /// subdirectories are done. Of two records of one directory, the later (the
    /// archive's last word) is applied. A directory replaced since (by a later entry, so
    /// its real path now meets a symlink or another file) is skipped.
    fn finish_dirs(&mut self) -> Result<(), ArchiveError> {
        self.open_dirs.clear();
        let mut last: BTreeMap<Vec<Vec<u8>>, (u32, Times)> = BTreeMap::new();
        for d in std::mem::take(&mut self.dirs) {
            let comps = d
                .real
                .components()
                .map(|c| c.as_os_str().as_bytes().to_vec())
                .collect();
            last.insert(comps, (d.mode, d.times));
        }
        // Backwards: a directory comes after everything below it (a prefix sorts first).
        let mut open: Vec<(Vec<u8>, OwnedFd)> = Vec::new();
        'dirs: for (comps, (mode, times)) in last.iter().rev() {
            let shared = open
                .iter()
                .zip(comps)
                .take_while(|((name, _), c)| name == *c)
                .count();
            open.truncate(shared);
            for c in &comps[shared..] {
                let at = open
                    .last()
                    .map_or(self.root_fd.as_fd(), |(_, fd)| fd.as_fd());
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                match rfs::openat(at, c.as_slice(), flags, Mode::empty()) {
                    Ok(fd) => open.push((c.clone(), fd)),
                    Err(e) => {
                        log::debug!(
                            "archive: directory {:?} was replaced, not setting its mode and times: {}",
                            lossy(&comps.join(&b'/')),
                            io::Error::from(e)
                        );
                        continue 'dirs;
                    }
                }
            }
            let name = lossy(&comps.join(&b'/'));
            let fd = open
                .last()
                .map_or(self.root_fd.as_fd(), |(_, fd)| fd.as_fd());
            rfs::fchmod(fd, mode_of(*mode)).map_err(|e| entry_err(&name, "setting its mode", e))?;
            rfs::futimens(fd, &times.stamps())
                .map_err(|e| entry_err(&name, "setting its times", e))?;
        }
        Ok(())
    }

    /// Says how many extended attributes and device nodes were skipped.
    fn log_skipped(&self) {
        let xattrs_skipped = self
            .shared
            .xattrs_skipped
            .load(std::sync::atomic::Ordering::Relaxed);
        if xattrs_skipped > 0 {
            log::warn!(
                "archive: skipped {xattrs_skipped} extended attributes that could not be set"
            );
        }
        if self.devices_skipped > 0 {
            log::warn!(
                "archive: skipped {} device nodes that could not be created",
                self.devices_skipped
            );
        }
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
