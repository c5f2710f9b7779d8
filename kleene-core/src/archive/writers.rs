//! The writer threads of an extraction.
//!
//! The reader (the thread that calls [`super::extract_with`]) walks the tar stream in
//! order and does all the work on names itself: it resolves parents, refuses what is
//! unsafe, makes directories, symlinks, hard links and nodes, removes what a later entry
//! replaces, and creates each regular file (`O_CREAT | O_EXCL | O_NOFOLLOW`). What is left
//! of a file is work on its open descriptor only: its contents, owner, mode, extended
//! attributes and times. That is a [`FileJob`], handed to a pool of writer threads.
//!
//! A writer never resolves a name, so nothing it does can race with the reader's work
//! on names: a later entry that replaces the file's path unlinks the name, and the writer
//! finishes an inode nobody sees; a hard link made to the file before its contents are
//! written is a second name for the same inode, which gets them. The final tree is the
//! one the serial extraction would make.
//!
//! One name operation is left to the writers: creating a file whose name is known to be
//! free, in a directory this extraction made and where no entry used that name yet (the
//! reader keeps the names it used in each such directory). The reader then waits for that
//! create before anything else touches the name (`Shared::wait_created`), and for all
//! pending creates (`Shared::wait_all_created`) before a walk that found something
//! missing, a removal or a whiteout, whose outcome a pending file could change.
//!
//! Memory is bounded: file data in flight (read by the reader, not yet written) is at
//! most [`BUDGET`] bytes (plus one piece), and at most [`QUEUE`] files wait for a writer.
//! A large file is sent as its first [`HEAD`] bytes, then in [`super::CHUNK`] pieces
//! through a channel of its own while a writer writes it.
//!
//! A writer's error stops the extraction: the reader sees it before its next entry and
//! returns it (of several errors, the one of the earliest entry, as the serial extraction
//! would have stopped there); the entries after it are not extracted.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{Scope, ScopedJoinHandle};

use rustix::fs::{self as rfs, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;

use super::{entry_err, lossy, mode_of, ArchiveError, Meta, CHUNK};

/// File data in flight between the reader and the writers, at most.
pub(super) const BUDGET: usize = 64 << 20;
/// A file up to this size is read whole and sent in one piece; the rest of a larger one
/// follows in [`CHUNK`] pieces.
pub(super) const HEAD: usize = 1 << 20;
/// Files waiting for a writer, at most (each holds a descriptor).
const QUEUE: usize = 128;
/// Pieces of one large file waiting for its writer, at most (the budget bounds them too).
pub(super) const PIECES: usize = 64;

/// How many writer threads an extraction uses by default: the work is mostly waiting for
/// the file system, so more than the cores, but not many more.
pub(super) fn default_writers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_mul(2)
        .clamp(2, 8)
}

/// What the reader and the writers share.
#[derive(Debug)]
pub(super) struct Shared {
    /// Ownership can only be given by root; otherwise a refused chown is skipped.
    pub privileged: bool,
    pub xattrs_skipped: AtomicU64,
    budget: Budget,
    /// The first error, by entry index.
    failure: Mutex<Option<(u64, ArchiveError)>>,
    failed: AtomicBool,
    /// The entries whose file a writer is to create and has not yet.
    creating: Mutex<HashSet<u64>>,
    created: Condvar,
}

impl Shared {
    pub fn new() -> Self {
        Shared {
            privileged: rustix::process::geteuid().is_root(),
            xattrs_skipped: AtomicU64::new(0),
            budget: Budget {
                used: Mutex::new(0),
                freed: Condvar::new(),
                max: BUDGET,
            },
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            creating: Mutex::new(HashSet::new()),
            created: Condvar::new(),
        }
    }

    /// Entry `index`'s file is to be created by a writer: until the guard is dropped.
    pub fn creating(&self, index: u64) -> Creating<'_> {
        self.creating
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(index);
        Creating {
            shared: self,
            index,
        }
    }

    /// Waits until entry `index`'s file is created (or its writer gave up).
    pub fn wait_created(&self, index: u64) {
        let mut creating = self.creating.lock().unwrap_or_else(PoisonError::into_inner);
        while creating.contains(&index) {
            creating = self
                .created
                .wait(creating)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Waits until every file handed to a writer to create is created (or given up).
    pub fn wait_all_created(&self) {
        let mut creating = self.creating.lock().unwrap_or_else(PoisonError::into_inner);
        while !creating.is_empty() {
            creating = self
                .created
                .wait(creating)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Whether a writer has failed.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Records the error of entry `index`; of several, the earliest entry's is kept.
    pub fn fail(&self, index: u64, e: ArchiveError) {
        let mut first = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if first.as_ref().is_none_or(|(i, _)| index < *i) {
            *first = Some((index, e));
        }
        self.failed.store(true, Ordering::Release);
    }

    /// The recorded error, if any.
    pub fn take_failure(&self) -> Option<(u64, ArchiveError)> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// A buffer for `len` bytes of file data, counted against the budget: waits while
    /// the writers have too much in flight.
    pub fn bytes(&self, len: usize) -> Bytes<'_> {
        self.budget.take(len);
        Bytes {
            data: Vec::with_capacity(len),
            reserved: len,
            budget: &self.budget,
        }
    }

    /// Sets the owner of entry `name` (through `r`, the chown's result): without root, a
    /// refused chown is skipped.
    pub fn chown(
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

    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn set_xattrs(
        &self,
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
    pub fn set_xattrs(
        &self,
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

    fn skip_xattr(&self, name: &str, key: &[u8], e: Errno) {
        let before = self.xattrs_skipped.fetch_add(1, Ordering::Relaxed);
        let key = lossy(key);
        if before == 0 {
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
}

/// The bytes in flight, at most [`Budget::max`] (a single larger piece is let through
/// when nothing else is in flight).
#[derive(Debug)]
struct Budget {
    used: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

impl Budget {
    fn take(&self, n: usize) {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        while *used > 0 && used.saturating_add(n) > self.max {
            used = self
                .freed
                .wait(used)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *used += n;
    }

    fn give(&self, n: usize) {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        *used = used.saturating_sub(n);
        self.freed.notify_all();
    }
}

/// File data counted against the budget until dropped.
#[derive(Debug)]
pub(super) struct Bytes<'s> {
    pub data: Vec<u8>,
    reserved: usize,
    budget: &'s Budget,
}

impl Drop for Bytes<'_> {
    fn drop(&mut self) {
        self.budget.give(self.reserved);
    }
}

/// Marks a file to create as pending until dropped, whatever becomes of its job.
#[derive(Debug)]
pub(super) struct Creating<'s> {
    shared: &'s Shared,
    index: u64,
}

impl Drop for Creating<'_> {
    fn drop(&mut self) {
        self.shared
            .creating
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.index);
        self.shared.created.notify_all();
    }
}

/// A regular file for a writer: created by the reader, or to create.
#[derive(Debug)]
pub(super) enum Target<'s> {
    Open(File),
    /// A name known to be free in directory `dir` (see the module's documentation).
    Create {
        dir: Arc<OwnedFd>,
        name: Vec<u8>,
        mode: Mode,
        pending: Creating<'s>,
    },
}

/// A regular file for a writer to fill and finish.
#[derive(Debug)]
pub(super) struct FileJob<'s> {
    /// The entry's index in the archive, to report the earliest error.
    pub index: u64,
    pub name: String,
    pub target: Target<'s>,
    pub meta: Meta,
    /// Its data, or the first part of it.
    pub head: Bytes<'s>,
    /// The rest of a large file, piece by piece, then `None`; the channel closing before
    /// `None` means the reader stopped (it reports why).
    pub rest: Option<Receiver<Option<Bytes<'s>>>>,
}

/// The writer threads, started with the first file.
pub(super) struct Pool<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    shared: &'env Shared,
    /// How many threads to start; 0: the reader writes each file itself, at once.
    writers: usize,
    jobs: Option<SyncSender<FileJob<'env>>>,
    handles: Vec<ScopedJoinHandle<'scope, ()>>,
}

impl std::fmt::Debug for Pool<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("writers", &self.writers)
            .field("started", &self.handles.len())
            .finish()
    }
}

impl<'scope, 'env> Pool<'scope, 'env> {
    pub fn new(scope: &'scope Scope<'scope, 'env>, shared: &'env Shared, writers: usize) -> Self {
        Pool {
            scope,
            shared,
            writers,
            jobs: None,
            handles: Vec::new(),
        }
    }

    /// Whether files are written by writer threads (so a large one is streamed to them).
    pub fn parallel(&self) -> bool {
        self.writers > 0
    }

    /// Hands `job` to a writer, or (without writers) does it now. A large file's job comes
    /// with its `rest` channel; the caller then sends the pieces.
    pub fn submit(&mut self, job: FileJob<'env>) -> Result<(), ArchiveError> {
        if self.writers == 0 {
            return write_file(self.shared, job);
        }
        if self.jobs.is_none() {
            self.start()?;
        }
        let Some(jobs) = &self.jobs else {
            return Err(stopped());
        };
        jobs.send(job).map_err(|_| stopped())
    }

    fn start(&mut self) -> Result<(), ArchiveError> {
        let (tx, rx) = mpsc::sync_channel::<FileJob<'env>>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..self.writers {
            let rx = Arc::clone(&rx);
            let shared = self.shared;
            let handle = std::thread::Builder::new()
                .name(format!("kleene-extract-{i}"))
                .spawn_scoped(self.scope, move || worker(shared, &rx))
                .map_err(|e| ArchiveError::Io {
                    context: "starting a writer thread".to_string(),
                    source: e,
                })?;
            self.handles.push(handle);
        }
        self.jobs = Some(tx);
        Ok(())
    }

    /// Waits for the writers to finish what they were given.
    pub fn finish(&mut self) -> Result<(), ArchiveError> {
        self.jobs = None;
        let mut panicked = false;
        for h in self.handles.drain(..) {
            panicked |= h.join().is_err();
        }
        if panicked {
            return Err(ArchiveError::Io {
                context: "writing the archive's files".to_string(),
                source: io::Error::other("a writer thread panicked"),
            });
        }
        Ok(())
    }
}

pub(super) fn stopped() -> ArchiveError {
    ArchiveError::Io {
        context: "writing the archive's files".to_string(),
        source: io::Error::other("the writer threads stopped"),
    }
}

fn worker(shared: &Shared, jobs: &Mutex<Receiver<FileJob<'_>>>) {
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(PoisonError::into_inner);
            rx.recv()
        };
        let Ok(job) = job else {
            return;
        };
        if shared.failed() {
            // The extraction stops: the rest is dropped (and its budget given back).
            continue;
        }
        let index = job.index;
        if let Err(e) = write_file(shared, job) {
            shared.fail(index, e);
        }
    }
}

/// A file being written: its data, then its metadata.
#[derive(Debug)]
pub(super) struct Writing {
    name: String,
    file: File,
    meta: Meta,
    /// What the new file was made as: its owner and mode are set only where they differ.
    st: rfs::Stat,
    written: u64,
    holes: bool,
}

impl Writing {
    pub fn new(name: String, file: File, meta: Meta) -> Result<Self, ArchiveError> {
        #[cfg(test)]
        tests::injected(&name)?;
        let st = rfs::fstat(&file).map_err(|e| entry_err(&name, "looking at the new file", e))?;
        Ok(Writing {
            name,
            file,
            meta,
            st,
            written: 0,
            holes: false,
        })
    }

    /// Writes the next `data`.
    pub fn put(&mut self, data: &[u8]) -> Result<(), ArchiveError> {
        let name = &self.name;
        for piece in data.chunks(CHUNK) {
            // Runs of zeros become holes, as they were in a sparse original.
            if piece.len() >= 4096 && piece.iter().all(|&b| b == 0) {
                let skip = i64::try_from(piece.len())
                    .map_err(|_| entry_err(name, "writing its data", Errno::FBIG))?;
                self.file
                    .seek(SeekFrom::Current(skip))
                    .map_err(|e| entry_err(name, "writing its data", e))?;
                self.holes = true;
            } else {
                self.file
                    .write_all(piece)
                    .map_err(|e| entry_err(name, "writing its data", e))?;
            }
            self.written += piece.len() as u64;
        }
        Ok(())
    }

    /// Sets the file's length (after a hole), owner, mode, extended attributes and times,
    /// in that order: chown clears setuid, setgid and `security.capability`.
    pub fn finish(self, shared: &Shared) -> Result<(), ArchiveError> {
        let Writing {
            name,
            file,
            meta,
            st,
            written,
            holes,
        } = self;
        if holes {
            file.set_len(written)
                .map_err(|e| entry_err(&name, "writing its data", e))?;
        }
        let (uid, gid) = (meta.uid, meta.gid);
        if st.st_uid != uid || st.st_gid != gid {
            shared.chown(
                rfs::fchown(&file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))),
                &name,
                &meta,
            )?;
        }
        // After chown, which clears setuid and setgid (the file was made without them).
        // `st_mode` is a u16 on FreeBSD, a u32 on Linux.
        #[allow(clippy::useless_conversion)]
        let mode = u32::from(st.st_mode) & 0o7777;
        if mode != meta.mode {
            rfs::fchmod(&file, mode_of(meta.mode))
                .map_err(|e| entry_err(&name, "setting its mode", e))?;
        }
        // After chown too, which clears security.capability.
        shared.set_xattrs(file.as_fd(), &name, &meta)?;
        rfs::futimens(&file, &meta.times.stamps())
            .map_err(|e| entry_err(&name, "setting its times", e))?;
        Ok(())
    }
}

/// A writer's work: a file's data, then its metadata.
fn write_file(shared: &Shared, job: FileJob<'_>) -> Result<(), ArchiveError> {
    let FileJob {
        name,
        target,
        meta,
        head,
        rest,
        ..
    } = job;
    let file = match target {
        Target::Open(file) => file,
        Target::Create {
            dir,
            name: last,
            mode,
            pending,
        } => {
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let made = rfs::openat(dir.as_fd(), last.as_slice(), flags, mode);
            drop(pending);
            File::from(made.map_err(|e| entry_err(&name, "creating the file", e))?)
        }
    };
    let mut w = Writing::new(name, file, meta)?;
    w.put(&head.data)?;
    drop(head);
    if let Some(rest) = rest {
        loop {
            match rest.recv() {
                Ok(Some(piece)) => w.put(&piece.data)?,
                Ok(None) => break,
                // The reader stopped; it reports why.
                Err(_) => return Ok(()),
            }
        }
    }
    w.finish(shared)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Entry names whose writer fails, for the tests of error reporting.
    static FAIL: Mutex<Vec<String>> = Mutex::new(Vec::new());

    pub fn fail_writing(name: &str) {
        FAIL.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(name.to_string());
    }

    pub(super) fn injected(name: &str) -> Result<(), ArchiveError> {
        let fail = FAIL.lock().unwrap_or_else(PoisonError::into_inner);
        if fail.iter().any(|n| n == name) {
            return Err(entry_err(name, "writing its data", Errno::NOSPC));
        }
        Ok(())
    }

    #[test]
    fn budget_blocks_until_given_back() {
        let shared = Shared::new();
        let a = shared.bytes(BUDGET - 10);
        std::thread::scope(|s| {
            let t = s.spawn(|| {
                let b = shared.bytes(100);
                b.reserved
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!t.is_finished(), "the budget let too much through");
            drop(a);
            assert_eq!(t.join().expect("the thread ends"), 100);
        });
        // A piece larger than the budget goes through alone.
        let big = shared.bytes(BUDGET * 2);
        assert_eq!(big.reserved, BUDGET * 2);
    }
}
