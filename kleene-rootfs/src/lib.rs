#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod error;
mod walk;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode};
use rustix::io::Errno;

pub use error::{Error, Link, Result};
/// The open flags of [`RootDir::open_file`] (rustix's).
pub use rustix::fs::OFlags;

use walk::{Last, Walk};

/// The most symlinks followed while resolving one path, as Linux's limit (`MAXSYMLINKS`):
/// one more is [`Error::TooManySymlinks`].
pub const MAX_SYMLINKS: u32 = 40;

/// The name refused at the top of every root: on a ZFS dataset `.zfs` is the control
/// directory (even when hidden), where `mkdir` and `rmdir` in `.zfs/snapshot` make and
/// destroy snapshots.
pub const ZFS_CONTROL_DIR: &str = ".zfs";

/// What a walk does with the symlinks on the way. The crate's documentation has the
/// table of who uses which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Symlinks {
    /// Any symlink on the way, the last component included, is an error
    /// ([`Error::Symlink`]).
    Refuse,
    /// As Linux's `RESOLVE_BENEATH`: a relative symlink is followed; an absolute one is
    /// an error ([`Error::AbsoluteSymlink`]), as is `..` climbing above the root
    /// ([`Error::Escape`]).
    FollowBeneath,
    /// As a process chrooted to the root sees it (Linux's `RESOLVE_IN_ROOT`): every
    /// symlink is followed, an absolute target starts again at the root. Unlike
    /// `RESOLVE_IN_ROOT`, `..` climbing above the root is an error ([`Error::Escape`]),
    /// not a stay at the root.
    FollowInRoot,
}

/// How missing directories are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mkdir {
    /// Their mode (the process' umask applies), 0755 by default.
    pub mode: u32,
    /// Their owner (uid, gid); the caller's by default. Directories that were already
    /// there keep theirs.
    pub owner: Option<(u32, u32)>,
}

impl Default for Mkdir {
    fn default() -> Self {
        Mkdir {
            mode: 0o755,
            owner: None,
        }
    }
}

impl Mkdir {
    /// Mode 0755, owned by `uid:gid`.
    pub fn owned(uid: u32, gid: u32) -> Self {
        Mkdir {
            mode: 0o755,
            owner: Some((uid, gid)),
        }
    }
}

/// A directory found inside the root.
#[derive(Debug)]
pub struct Resolved {
    /// The open directory.
    pub fd: OwnedFd,
    /// Its real path below the root: relative, with no symlink, `.` or `..` in it (empty
    /// for the root itself).
    pub path: PathBuf,
}

/// An untrusted root directory, held open: every path is resolved inside it from this
/// descriptor, one component at a time, never from a path string the host's `/` would
/// resolve again.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    /// For messages, and to name what [`RootDir::open_subdir`] returns.
    path: PathBuf,
}

impl AsFd for RootDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl RootDir {
    /// Opens the root directory `path` (a trusted, host-side path: symlinks in it are
    /// followed).
    pub fn open(path: impl AsRef<Path>) -> Result<RootDir> {
        let path = path.as_ref();
        let fd = rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::OpenRoot {
            root: path.to_path_buf(),
            source: e.into(),
        })?;
        Ok(RootDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// A root from a directory already open; `path` names it in messages.
    pub fn from_fd(fd: OwnedFd, path: impl Into<PathBuf>) -> RootDir {
        RootDir {
            fd,
            path: path.into(),
        }
    }

    /// The root's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Another handle on the same root (a duplicated descriptor).
    pub fn try_clone(&self) -> Result<RootDir> {
        let fd = self.fd.try_clone().map_err(|e| Error::OpenRoot {
            root: self.path.clone(),
            source: e,
        })?;
        Ok(RootDir::from_fd(fd, self.path.clone()))
    }

    fn io(&self, rel: &Path, op: &'static str, at: PathBuf, e: impl Into<io::Error>) -> Error {
        Error::Io {
            root: self.path.clone(),
            path: rel.to_path_buf(),
            op,
            at,
            source: e.into(),
        }
    }

    /// Opens directory `rel` (the root for an empty path or `/`), every component a
    /// directory, symlinks treated by `policy`; with `mkdir`, missing directories are
    /// made (`mkdir -p`). Gives the directory and its real path.
    pub fn resolve_dir(
        &self,
        rel: impl AsRef<Path>,
        policy: Symlinks,
        mkdir: Option<Mkdir>,
    ) -> Result<Resolved> {
        let rel = rel.as_ref();
        let out = Walk::new(self, rel, policy).run(Last::Dir(mkdir))?;
        match out.fd {
            Some(fd) => Ok(Resolved { fd, path: out.path }),
            None => Err(self.io(rel, "opening", out.path, Errno::NOTDIR)),
        }
    }

    /// Opens directory `rel`, making missing directories (mode 0755) when `create` is set.
    pub fn open_dir(
        &self,
        rel: impl AsRef<Path>,
        policy: Symlinks,
        create: bool,
    ) -> Result<OwnedFd> {
        self.resolve_dir(rel, policy, create.then(Mkdir::default))
            .map(|r| r.fd)
    }

    /// Opens directory `rel` as a root of its own (e.g. to extract an archive into it).
    pub fn open_subdir(
        &self,
        rel: impl AsRef<Path>,
        policy: Symlinks,
        mkdir: Option<Mkdir>,
    ) -> Result<RootDir> {
        let r = self.resolve_dir(rel, policy, mkdir)?;
        Ok(RootDir::from_fd(r.fd, self.path.join(r.path)))
    }

    /// The real path of `rel` below the root (relative; empty for the root): every
    /// symlink on the way resolved by `policy`, the last component's too. What it names
    /// must exist, of any type. For callers that must hand a path to the kernel
    /// (`mount(2)`): the path is only as good as the tree is still, prefer the
    /// descriptors of the other calls.
    pub fn resolve(&self, rel: impl AsRef<Path>, policy: Symlinks) -> Result<PathBuf> {
        let rel = rel.as_ref();
        Walk::new(self, rel, policy)
            .run(Last::Lookup)
            .map(|o| o.path)
    }

    /// Opens `rel` with `flags` (`O_NOFOLLOW` and `O_CLOEXEC` are added; `mode` is for
    /// `O_CREAT`). A symlink as the last component is treated by `policy` as the others
    /// (followed unless `Refuse`): with `O_CREAT` a dangling one makes its target, as
    /// open(2) does, and with `O_CREAT | O_EXCL` it is `EEXIST`. Parents are not made.
    pub fn open_file(
        &self,
        rel: impl AsRef<Path>,
        policy: Symlinks,
        flags: OFlags,
        mode: u32,
    ) -> Result<OwnedFd> {
        let rel = rel.as_ref();
        let out = Walk::new(self, rel, policy).run(Last::Open(flags, walk::mode(mode)))?;
        match out.fd {
            Some(fd) => Ok(fd),
            None => Err(self.io(rel, "opening", out.path, Errno::INVAL)),
        }
    }

    /// Reads regular file `rel` (symlinks by `policy`), at most `max_len` bytes: a larger
    /// file is [`Error::TooLarge`], anything but a regular file [`Error::NotAFile`]. It
    /// is opened with `O_NONBLOCK`, so a FIFO in its place does not hang the caller.
    pub fn read_file(
        &self,
        rel: impl AsRef<Path>,
        policy: Symlinks,
        max_len: u64,
    ) -> Result<Vec<u8>> {
        let rel = rel.as_ref();
        let fd = self.open_file(
            rel,
            policy,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
            0,
        )?;
        let st = rfs::fstat(&fd).map_err(|e| self.io(rel, "reading", PathBuf::new(), e))?;
        let too_large = || Error::TooLarge {
            root: self.path.clone(),
            path: rel.to_path_buf(),
            max: max_len,
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(Error::NotAFile {
                root: self.path.clone(),
                path: rel.to_path_buf(),
            });
        }
        if u64::try_from(st.st_size).unwrap_or(u64::MAX) > max_len {
            return Err(too_large());
        }
        let mut data = Vec::new();
        File::from(fd)
            .take(max_len.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| self.io(rel, "reading", PathBuf::new(), e))?;
        if data.len() as u64 > max_len {
            return Err(too_large());
        }
        Ok(data)
    }

    /// The parent directory of `rel` (symlinks by `policy`, missing directories made
    /// with `mkdir`) and its last name, for callers that make or replace the last
    /// component themselves with the `*at` calls. The name is the last of `rel` as
    /// written: a symlink there is not followed. `rel` must end in a name (not `..`, not
    /// the root), and not `.zfs` at the top.
    pub fn parent_and_name(
        &self,
        rel: impl AsRef<Path>,
        policy: Symlinks,
        mkdir: Option<Mkdir>,
    ) -> Result<(Resolved, OsString)> {
        let rel = rel.as_ref();
        let comps: Vec<&OsStr> = walk::components(rel).collect();
        let invalid = |reason| Error::InvalidPath {
            root: self.path.clone(),
            path: rel.to_path_buf(),
            reason,
        };
        let Some((name, parent)) = comps.split_last() else {
            return Err(invalid("it names the root directory"));
        };
        if *name == ".." {
            return Err(invalid("it ends in .."));
        }
        let out = Walk::of(self, rel, policy, parent.iter().copied()).run(Last::Dir(mkdir))?;
        if out.path.as_os_str().is_empty() && *name == ZFS_CONTROL_DIR {
            return Err(Error::ZfsControlDir {
                root: self.path.clone(),
                path: rel.to_path_buf(),
            });
        }
        let fd = match out.fd {
            Some(fd) => fd,
            None => return Err(self.io(rel, "opening", out.path, Errno::NOTDIR)),
        };
        Ok((Resolved { fd, path: out.path }, name.to_os_string()))
    }

    /// Makes `rel` a new, empty file (mode 0600, for the caller to write and set),
    /// replacing a file or symlink that is there (a symlink is never written through);
    /// a directory in the way is [`Error::DirectoryInTheWay`]. Parents are resolved by
    /// `policy` and made with `mkdir`.
    pub fn create_file(
        &self,
        rel: impl AsRef<Path>,
        policy: Symlinks,
        mkdir: Option<Mkdir>,
    ) -> Result<OwnedFd> {
        let rel = rel.as_ref();
        let (dir, name) = self.parent_and_name(rel, policy, mkdir)?;
        replace_file_at(&dir.fd, &name).map_err(|e| {
            if e.kind() == io::ErrorKind::IsADirectory {
                Error::DirectoryInTheWay {
                    root: self.path.clone(),
                    path: rel.to_path_buf(),
                }
            } else {
                self.io(rel, "creating", dir.path.join(&name), e)
            }
        })
    }

    /// Writes `contents` as file `rel` with `mode`, as [`RootDir::create_file`] makes it
    /// (missing parents made with mode 0755).
    pub fn write_file(
        &self,
        rel: impl AsRef<Path>,
        policy: Symlinks,
        contents: &[u8],
        mode: u32,
    ) -> Result<()> {
        let rel = rel.as_ref();
        let mut file = File::from(self.create_file(rel, policy, Some(Mkdir::default()))?);
        file.write_all(contents)
            .map_err(|e| self.io(rel, "writing", PathBuf::new(), e))?;
        rfs::fchmod(&file, walk::mode(mode))
            .map_err(|e| self.io(rel, "setting the mode of", PathBuf::new(), e))
    }
}

/// Removes `name` from directory `dir` unless it is a directory: a file, a symlink (not
/// what it points to), a node. A missing one is fine; a directory is an error of kind
/// `IsADirectory`.
pub fn remove_at(dir: impl AsFd, name: impl AsRef<OsStr>) -> io::Result<()> {
    let name = name.as_ref();
    match rfs::unlinkat(&dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        // Linux says EISDIR, POSIX (FreeBSD) EPERM.
        Err(e @ (Errno::ISDIR | Errno::PERM)) => {
            match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => Err(
                    io::Error::new(io::ErrorKind::IsADirectory, "a directory is in the way"),
                ),
                _ => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Makes `name` in directory `dir` a new, empty file (mode 0600), replacing what is there
/// as [`remove_at`] does: `O_CREAT | O_EXCL | O_NOFOLLOW`, so a symlink put there meanwhile
/// is `EEXIST`, never written through.
pub fn replace_file_at(dir: impl AsFd, name: impl AsRef<OsStr>) -> io::Result<OwnedFd> {
    let name = name.as_ref();
    remove_at(&dir, name)?;
    Ok(rfs::openat(
        &dir,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        walk::mode(0o600),
    )?)
}

/// Cleans a path lexically, as Go's `path.Clean` does for a path inside a root: empty
/// components and `.` go, `..` removes the component before it and stops at the root.
/// Gives the components (none for the root). Nothing is looked at: a symlink before a
/// `..` is not taken into account, use it on paths meant lexically (Dockerfile paths).
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
