//! The one resolver: a path walked one component at a time from the root's descriptor.
//!
//! The kernel is only ever asked for one name relative to a directory this walk holds
//! open, with `O_NOFOLLOW`: it never resolves `..`, a `/` or a symlink for us. `..` pops a
//! directory the walk holds (the one it came from), a symlink's target is read with
//! `readlinkat` and its components are queued in front of the rest of the path.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Link, Result};
use crate::{Mkdir, RootDir, Symlinks, MAX_SYMLINKS, ZFS_CONTROL_DIR};

/// The flags every intermediate directory is opened with.
pub(crate) const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// A permission mode for rustix, whose raw mode is `u32` on Linux and `u16` on FreeBSD.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn mode(bits: u32) -> Mode {
    Mode::from_raw_mode((bits & 0o7777) as rfs::RawMode)
}

/// What the walk does with the last component.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Last {
    /// Every component is a directory; missing ones are made when set.
    Dir(Option<Mkdir>),
    /// The last component may be of any type; it must exist.
    Lookup,
    /// The last component is opened with these flags (`O_NOFOLLOW` and `O_CLOEXEC` are
    /// added) and this mode for `O_CREAT`.
    Open(OFlags, Mode),
}

/// Where a walk ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The directory (`Last::Dir`) or the opened file (`Last::Open`); none for a lookup.
    pub fd: Option<OwnedFd>,
    /// The real path below the root: no symlink, no `.` or `..` in it.
    pub path: PathBuf,
}

/// One component still to walk, and the symlink whose target it comes from.
struct Item {
    name: OsString,
    via: Option<Rc<Link>>,
}

pub(crate) struct Walk<'a> {
    root: &'a RootDir,
    /// The path as the caller gave it, for messages.
    rel: &'a Path,
    policy: Symlinks,
    /// The directories opened below the root, the deepest last.
    dirs: Vec<OwnedFd>,
    /// Their names: the real path.
    names: Vec<OsString>,
    links: u32,
    queue: VecDeque<Item>,
}

/// The components of a path inside the root, without empty ones and `.`; a leading `/`
/// means the root, as the rest does.
pub(crate) fn components(path: &Path) -> impl Iterator<Item = &OsStr> {
    split(path.as_os_str().as_bytes()).filter(|c| !c.is_empty() && *c != ".")
}

/// A path or a symlink's target cut at each `/`, empty parts and `.` kept: they are
/// skipped when walked, but a name followed by them must be a directory (`x/.`, `x/`), as
/// for the kernel.
fn split(path: &[u8]) -> impl Iterator<Item = &OsStr> {
    path.split(|&b| b == b'/').map(OsStr::from_bytes)
}

impl<'a> Walk<'a> {
    /// A walk of all of `rel`.
    pub(crate) fn new(root: &'a RootDir, rel: &'a Path, policy: Symlinks) -> Self {
        let comps: Vec<&OsStr> = split(rel.as_os_str().as_bytes()).collect();
        Self::of(root, rel, policy, comps)
    }

    /// A walk of `comps`, a part of `rel` (named in messages).
    pub(crate) fn of<'c>(
        root: &'a RootDir,
        rel: &'a Path,
        policy: Symlinks,
        comps: impl IntoIterator<Item = &'c OsStr>,
    ) -> Self {
        Walk {
            root,
            rel,
            policy,
            dirs: Vec::new(),
            names: Vec::new(),
            links: 0,
            queue: comps
                .into_iter()
                .map(|c| Item {
                    name: c.to_os_string(),
                    via: None,
                })
                .collect(),
        }
    }

    fn cur(&self) -> BorrowedFd<'_> {
        self.dirs
            .last()
            .map_or(self.root.fd.as_fd(), |fd| fd.as_fd())
    }

    fn real(&self) -> PathBuf {
        self.names.iter().collect()
    }

    fn here(&self, name: &OsStr) -> PathBuf {
        let mut p = self.real();
        p.push(name);
        p
    }

    fn root_path(&self) -> PathBuf {
        self.root.path.clone()
    }

    fn path(&self) -> PathBuf {
        self.rel.to_path_buf()
    }

    fn io(&self, op: &'static str, at: PathBuf, e: Errno) -> Error {
        Error::Io {
            root: self.root_path(),
            path: self.path(),
            op,
            at,
            source: io::Error::from(e),
        }
    }

    /// Walks the whole queue.
    pub(crate) fn run(mut self, last: Last) -> Result<Outcome> {
        while let Some(Item { name, via }) = self.queue.pop_front() {
            let is_last = self.queue.is_empty();
            if name.is_empty() || name == "." {
                continue;
            }
            if name == ".." {
                if self.dirs.pop().is_some() {
                    self.names.pop();
                    continue;
                }
                // At the root: refused under every policy (see the crate's documentation).
                return Err(Error::Escape {
                    root: self.root_path(),
                    path: self.path(),
                    via: via.map(|l| (*l).clone()),
                });
            }
            if self.dirs.is_empty() && name == ZFS_CONTROL_DIR {
                return Err(Error::ZfsControlDir {
                    root: self.root_path(),
                    path: self.path(),
                });
            }
            match (last, is_last) {
                (Last::Open(flags, m), true) => {
                    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    match rfs::openat(self.cur(), name.as_os_str(), flags, m) {
                        Ok(fd) => {
                            self.names.push(name);
                            return Ok(Outcome {
                                fd: Some(fd),
                                path: self.real(),
                            });
                        }
                        Err(e @ (Errno::LOOP | Errno::MLINK | Errno::NOTDIR)) => {
                            if !self.follow(&name)? {
                                return Err(self.io("opening", self.here(&name), e));
                            }
                        }
                        Err(e) => return Err(self.io("opening", self.here(&name), e)),
                    }
                }
                (Last::Lookup, true) => {
                    match rfs::statat(self.cur(), name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                            self.follow(&name)?;
                        }
                        Ok(_) => {
                            self.names.push(name);
                            return Ok(Outcome {
                                fd: None,
                                path: self.real(),
                            });
                        }
                        Err(e) => return Err(self.io("looking up", self.here(&name), e)),
                    }
                }
                (Last::Dir(mkdir), _) => self.step(name, mkdir)?,
                (_, false) => self.step(name, None)?,
            }
        }
        // The path ended on a directory the walk holds (or on the root).
        let path = self.real();
        match last {
            Last::Dir(_) => {
                let fd = match self.dirs.pop() {
                    Some(fd) => fd,
                    None => self
                        .root
                        .fd
                        .try_clone()
                        .map_err(|e| self.io_err("duplicating", PathBuf::new(), e))?,
                };
                Ok(Outcome { fd: Some(fd), path })
            }
            Last::Lookup => Ok(Outcome { fd: None, path }),
            Last::Open(flags, m) => {
                let fd = rfs::openat(self.cur(), ".", flags | OFlags::CLOEXEC, m)
                    .map_err(|e| self.io("opening", path.clone(), e))?;
                Ok(Outcome { fd: Some(fd), path })
            }
        }
    }

    fn io_err(&self, op: &'static str, at: PathBuf, e: io::Error) -> Error {
        Error::Io {
            root: self.root_path(),
            path: self.path(),
            op,
            at,
            source: e,
        }
    }

    /// Enters directory `name` of the current one, making it first if missing and asked
    /// to; follows it if it is a symlink.
    fn step(&mut self, name: OsString, mkdir: Option<Mkdir>) -> Result<()> {
        let cur = self.cur();
        let mut made = false;
        let opened = match (
            rfs::openat(cur, name.as_os_str(), DIR_FLAGS, Mode::empty()),
            mkdir,
        ) {
            (Err(Errno::NOENT), Some(m)) => {
                match rfs::mkdirat(cur, name.as_os_str(), mode(m.mode)) {
                    Ok(()) => made = true,
                    // Made meanwhile (or a dangling symlink, followed below).
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(self.io("creating", self.here(&name), e)),
                }
                rfs::openat(cur, name.as_os_str(), DIR_FLAGS, Mode::empty())
            }
            (other, _) => other,
        };
        match opened {
            Ok(fd) => {
                if let (true, Some((uid, gid))) = (made, mkdir.and_then(|m| m.owner)) {
                    rfs::fchown(
                        &fd,
                        Some(rfs::Uid::from_raw(uid)),
                        Some(rfs::Gid::from_raw(gid)),
                    )
                    .map_err(|e| self.io("setting the owner of", self.here(&name), e))?;
                }
                self.dirs.push(fd);
                self.names.push(name);
                Ok(())
            }
            Err(e @ (Errno::LOOP | Errno::MLINK | Errno::NOTDIR)) => {
                if self.follow(&name)? {
                    Ok(())
                } else if e == Errno::NOTDIR {
                    Err(Error::NotADirectory {
                        root: self.root_path(),
                        path: self.path(),
                        at: self.here(&name),
                    })
                } else {
                    Err(self.io("opening", self.here(&name), e))
                }
            }
            Err(e) => Err(self.io("opening", self.here(&name), e)),
        }
    }

    /// If `name` in the current directory is a symlink, applies the policy to it and
    /// queues its target; returns false when it is not a symlink.
    fn follow(&mut self, name: &OsStr) -> Result<bool> {
        let target = match rfs::readlinkat(self.cur(), name, Vec::new()) {
            Ok(t) => t.into_bytes(),
            Err(Errno::INVAL) => return Ok(false),
            Err(e) => return Err(self.io("reading the symlink", self.here(name), e)),
        };
        let link = Link {
            path: self.here(name),
            target: PathBuf::from(OsString::from_vec(target.clone())),
        };
        if self.policy == Symlinks::Refuse {
            return Err(Error::Symlink {
                root: self.root_path(),
                path: self.path(),
                link,
            });
        }
        self.links += 1;
        if self.links > MAX_SYMLINKS {
            return Err(Error::TooManySymlinks {
                root: self.root_path(),
                path: self.path(),
                at: link.path,
            });
        }
        if target.is_empty() {
            // As the kernel treats it.
            return Err(self.io("following the symlink", link.path, Errno::NOENT));
        }
        if target.starts_with(b"/") {
            if self.policy == Symlinks::FollowBeneath {
                return Err(Error::AbsoluteSymlink {
                    root: self.root_path(),
                    path: self.path(),
                    link,
                });
            }
            // FollowInRoot: an absolute target starts again at the root.
            self.dirs.clear();
            self.names.clear();
        }
        let via = Rc::new(link);
        for part in split(&target).collect::<Vec<_>>().into_iter().rev() {
            self.queue.push_front(Item {
                name: part.to_os_string(),
                via: Some(Rc::clone(&via)),
            });
        }
        Ok(true)
    }
}
