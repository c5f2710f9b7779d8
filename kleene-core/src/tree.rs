//! Copying files and directory trees into a directory with `*at` calls from directory fds,
//! never following a symlink where they are written: COPY and ADD in builds, and a
//! volume's first fill from its image. Symlinks are copied as symlinks, modes (setuid
//! bits included), owners and modification times are kept unless told otherwise; sockets,
//! fifos and devices are left out.

use std::fs::Metadata;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Timespec, Timestamps};

use crate::error::{CoreError, Result};

/// Paths left out of a copy (`.dockerignore` in builds).
pub(crate) trait Exclude {
    /// Whether `rel` (relative to the top of the copy) is left out.
    fn excluded(&self, rel: &str) -> bool;
}

/// How a tree is copied.
#[derive(Clone, Copy)]
pub(crate) struct TreeCopy<'a> {
    /// The owner of every copy; each source's own when `None`.
    pub owner: Option<(u32, u32)>,
    /// The mode of every copy; each source's own when `None`.
    pub chmod: Option<u32>,
    /// What is left out.
    pub exclude: Option<&'a dyn Exclude>,
}

impl std::fmt::Debug for TreeCopy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeCopy")
            .field("owner", &self.owner)
            .field("chmod", &self.chmod)
            .finish_non_exhaustive()
    }
}

fn io_err(what: &str, p: &Path, e: impl Into<std::io::Error>) -> CoreError {
    CoreError::io(format!("{what} {}", p.display()), e.into())
}

/// How many threads write file contents while the walk makes the tree: on a FUSE mount
/// (zfs-fuse) each write, chown, chmod and utimens is a round trip to the daemon, which
/// serves several at once.
const WRITERS: usize = 4;

/// At most this many files are made and waiting for their contents (each holds its two
/// descriptors until written).
const QUEUED: usize = 32;

/// A regular file made by the walk, whose contents, owner, mode and times a writer gives
/// it.
struct FileJob {
    src: std::path::PathBuf,
    out: OwnedFd,
    owner: (u32, u32),
    mode: u32,
    times: Timestamps,
    rel: String,
}

impl FileJob {
    fn run(self) -> Result<()> {
        let mut out = std::fs::File::from(self.out);
        let mut input =
            std::fs::File::open(&self.src).map_err(|e| io_err("reading", &self.src, e))?;
        std::io::copy(&mut input, &mut out).map_err(|e| io_err("copying", &self.src, e))?;
        finish_fd(&out, self.owner, self.mode, &self.rel)?;
        let _ = rfs::futimens(&out, &self.times);
        Ok(())
    }
}

/// Where the walk sends the files it made.
type Jobs = std::sync::mpsc::SyncSender<FileJob>;

impl TreeCopy<'_> {
    /// Copies what is in directory `src` (at `rel` relative to the top) into `dir`.
    ///
    /// The walk makes directories, files and symlinks in order, one thread; writer threads
    /// fill the files it made and give them their owners, modes and times. The first error
    /// is returned (a writer's before the walk's), after every thread has ended.
    pub fn contents(&self, src: &Path, rel: &str, dir: &OwnedFd) -> Result<()> {
        self.with_writers(|jobs| self.walk_contents(src, rel, dir, jobs))
    }

    /// Copies `src` (its metadata `meta`, shown as `rel`) to `name` in `dir`, replacing what
    /// is there unless it is a directory (see [`TreeCopy::contents`]).
    pub fn entry(
        &self,
        src: &Path,
        meta: &Metadata,
        dir: &OwnedFd,
        name: &str,
        rel: &str,
    ) -> Result<()> {
        if !meta.is_dir() {
            // One file: no threads.
            return self.walk_entry(src, meta, dir, name, rel, None);
        }
        self.with_writers(|jobs| self.walk_entry(src, meta, dir, name, rel, Some(jobs)))
    }

    /// Runs `walk` with writer threads taking the files it sends.
    fn with_writers(&self, walk: impl FnOnce(&Jobs) -> Result<()>) -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<FileJob>(QUEUED);
        let rx = std::sync::Mutex::new(rx);
        std::thread::scope(|scope| {
            let writers: Vec<_> = (0..WRITERS)
                .map(|_| {
                    scope.spawn(|| loop {
                        // The lock is held only while one job is taken.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        match job {
                            Ok(job) => job.run()?,
                            Err(_) => return Ok(()),
                        }
                    })
                })
                .collect();
            let walked = walk(&tx);
            drop(tx);
            let mut first: Option<CoreError> = None;
            for w in writers {
                let done = w
                    .join()
                    .unwrap_or_else(|_| Err(CoreError::Internal("a copy thread panicked".into())));
                if let Err(e) = done {
                    first.get_or_insert(e);
                }
            }
            match (first, walked) {
                (Some(e), _) | (None, Err(e)) => Err(e),
                (None, Ok(())) => Ok(()),
            }
        })
    }

    fn walk_contents(&self, src: &Path, rel: &str, dir: &OwnedFd, jobs: &Jobs) -> Result<()> {
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
            if self.exclude.is_some_and(|x| x.excluded(&child_rel)) {
                continue;
            }
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).map_err(|e| io_err("reading", &p, e))?;
            self.walk_entry(&p, &meta, dir, &name, &child_rel, Some(jobs))?;
        }
        Ok(())
    }

    /// Makes `src` at `name` in `dir`: a regular file's contents are sent to `jobs`, or
    /// written here without.
    fn walk_entry(
        &self,
        src: &Path,
        meta: &Metadata,
        dir: &OwnedFd,
        name: &str,
        rel: &str,
        jobs: Option<&Jobs>,
    ) -> Result<()> {
        let ft = meta.file_type();
        let owner = self.owner.unwrap_or((meta.uid(), meta.gid()));
        let mode = self.chmod.unwrap_or(meta.permissions().mode() & 0o7777);
        if ft.is_symlink() {
            let target = std::fs::read_link(src).map_err(|e| io_err("reading", src, e))?;
            clear(dir, name, rel)?;
            rfs::symlinkat(target.as_path(), dir, name)
                .map_err(|e| CoreError::io(format!("creating symlink {rel}"), e.into()))?;
            rfs::chownat(
                dir,
                name,
                Some(rfs::Uid::from_raw(owner.0)),
                Some(rfs::Gid::from_raw(owner.1)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| CoreError::io(format!("chown {rel}"), e.into()))?;
            let _ = rfs::utimensat(dir, name, &times(meta), AtFlags::SYMLINK_NOFOLLOW);
        } else if ft.is_dir() {
            let sub = make_dir(dir, name, rel)?;
            match jobs {
                Some(jobs) => self.walk_contents(src, rel, &sub, jobs)?,
                None => self.contents(src, rel, &sub)?,
            }
            // Its times hold: writing the contents of its files does not change them.
            finish_fd(&sub, owner, mode, rel)?;
            let _ = rfs::futimens(&sub, &times(meta));
        } else if ft.is_file() {
            let job = FileJob {
                src: src.to_path_buf(),
                out: create_file(dir, name, rel)?,
                owner,
                mode,
                times: times(meta),
                rel: rel.to_string(),
            };
            match jobs {
                // Every writer gone means one failed: its error is what is returned.
                Some(jobs) => {
                    if jobs.send(job).is_err() {
                        return Err(CoreError::Internal("the copy's writers ended".into()));
                    }
                }
                None => job.run()?,
            }
        }
        // Sockets, fifos and devices are not content.
        Ok(())
    }
}

/// Opens directory `name` in `dir`, made (mode 0700 until finished) if missing; a file or
/// symlink in its place is replaced.
fn make_dir(dir: &OwnedFd, name: &str, rel: &str) -> Result<OwnedFd> {
    let open = || {
        rfs::openat(
            dir,
            name,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    match rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(CoreError::io(format!("creating {rel}"), e.into())),
    }
    match open() {
        Ok(fd) => Ok(fd),
        Err(_) => {
            clear(dir, name, rel)?;
            rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700))
                .map_err(|e| CoreError::io(format!("creating {rel}"), e.into()))?;
            open().map_err(|e| CoreError::io(format!("opening {rel}"), e.into()))
        }
    }
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

/// An error of replacing `shown`: a directory in the way is said plainly.
fn in_the_way(shown: &str, e: std::io::Error, what: &str) -> CoreError {
    if e.kind() == std::io::ErrorKind::IsADirectory {
        CoreError::InvalidInput(format!("cannot copy to {shown}: a directory is in the way"))
    } else {
        CoreError::io(format!("{what} {shown}"), e)
    }
}

/// Removes what is at `name` unless it is a directory (refused: a directory is in the way).
fn clear(dir: &OwnedFd, name: &str, shown: &str) -> Result<()> {
    crate::rootfs::remove_at(dir, name).map_err(|e| in_the_way(shown, e, "replacing"))
}

/// Creates file `name` in `dir` (mode 0600 until [`finish_fd`]), replacing a file or
/// symlink there (never written through).
pub(crate) fn create_file(dir: &OwnedFd, name: &str, shown: &str) -> Result<OwnedFd> {
    crate::rootfs::replace_file_at(dir, name).map_err(|e| in_the_way(shown, e, "creating"))
}

/// Gives a copied file or directory its owner, then its mode (after chown, which clears
/// setuid bits).
pub(crate) fn finish_fd(fd: &impl AsFd, owner: (u32, u32), mode: u32, shown: &str) -> Result<()> {
    rfs::fchown(
        fd,
        Some(rfs::Uid::from_raw(owner.0)),
        Some(rfs::Gid::from_raw(owner.1)),
    )
    .map_err(|e| CoreError::io(format!("chown {shown}"), e.into()))?;
    rfs::fchmod(fd, raw_mode(mode))
        .map_err(|e| CoreError::io(format!("chmod {shown}"), e.into()))?;
    Ok(())
}

/// A permission mode for rustix, whose raw mode is `u32` on Linux and `u16` on FreeBSD.
#[allow(clippy::unnecessary_cast)]
fn raw_mode(mode: u32) -> Mode {
    Mode::from_raw_mode((mode & 0o7777) as rustix::fs::RawMode)
}

/// Opens a host directory for [`TreeCopy::contents`].
pub(crate) fn open_dir(path: &Path) -> Result<OwnedFd> {
    rfs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("opening", path, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    struct Named(&'static str);

    impl Exclude for Named {
        fn excluded(&self, rel: &str) -> bool {
            rel == self.0
        }
    }

    #[test]
    fn a_tree_is_copied_with_links_modes_and_times() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let s = src.path();
        std::fs::create_dir_all(s.join("d/e")).unwrap();
        std::fs::write(s.join("d/e/f"), "deep").unwrap();
        std::fs::write(s.join("x"), "top").unwrap();
        std::fs::set_permissions(s.join("x"), std::fs::Permissions::from_mode(0o751)).unwrap();
        std::os::unix::fs::symlink("d/e/f", s.join("link")).unwrap();
        std::fs::write(s.join("skipped"), "no").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(s.join("x"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let me = (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        );
        let copy = TreeCopy {
            owner: None,
            chmod: None,
            exclude: Some(&Named("skipped")),
        };
        copy.contents(s, "", &open_dir(dst.path()).unwrap())
            .unwrap();
        let d = dst.path();
        assert_eq!(std::fs::read_to_string(d.join("d/e/f")).unwrap(), "deep");
        assert_eq!(
            std::fs::read_link(d.join("link")).unwrap(),
            Path::new("d/e/f")
        );
        assert!(!d.join("skipped").exists());
        let m = std::fs::metadata(d.join("x")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o751);
        assert_eq!((m.uid(), m.gid()), me);
        assert_eq!(m.modified().unwrap(), old);
        // A mode for everything; a directory in the way of a file is refused.
        std::fs::create_dir(s.join("d2")).unwrap();
        std::fs::write(s.join("d2/d"), "file where a dir is").unwrap();
        let forced = TreeCopy {
            owner: Some(me),
            chmod: Some(0o750),
            exclude: None,
        };
        forced
            .contents(&s.join("d"), "d", &open_dir(&d.join("d")).unwrap())
            .unwrap();
        let m = std::fs::metadata(d.join("d/e/f")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o750);
        let e = forced
            .contents(&s.join("d2"), "d2", &open_dir(d).unwrap())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot copy to d2/d: a directory is in the way"
        );
    }
}
