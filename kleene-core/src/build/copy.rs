//! COPY and ADD: a [`CopyRequest`] (the instruction, its words expanded), its sources found
//! in the build context (never outside it) or a `--from` stage or image, written into the
//! stage's root with `*at` calls from directory fds (never through a symlink out of the
//! root). The build step itself (expansion, cache, snapshot) is in [`step`].

mod step;

use std::io::Read;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags};

use super::glob::{has_meta, match_component, Ignore};
use crate::error::{CoreError, Result};
use crate::rootfs;
use crate::tree::{self, Exclude, TreeCopy};

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

/// Resolves `rel` below `base` as a process chrooted to `base` would: symlinks are
/// followed inside it; a path or symlink leading out of it is refused. Returns the
/// resolved components (the last may not exist).
fn resolve_in_base(base: &Path, rel: &str, what: &str) -> Result<Vec<String>> {
    let mut queue: std::collections::VecDeque<String> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = queue.pop_front() {
        if c == "." || c.is_empty() {
            continue;
        }
        if c == ".." {
            if out.pop().is_none() {
                return Err(invalid(format!("forbidden path outside the {what}: {rel}")));
            }
            continue;
        }
        let mut p = base.to_path_buf();
        p.extend(&out);
        p.push(&c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(invalid(format!("too many symlinks in {rel}")));
                }
                let target = std::fs::read_link(&p).map_err(|e| io_err("reading", &p, e))?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    // An absolute link in the context points at the host: not the context.
                    if what == "build context" {
                        return Err(invalid(format!(
                            "forbidden path outside the {what}: {rel} (links to {target})"
                        )));
                    }
                    out.clear();
                }
                for part in target.split('/').rev() {
                    queue.push_front(part.to_string());
                }
            }
            _ => out.push(c),
        }
    }
    Ok(out)
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
    let mut out = Vec::new();
    for pat in patterns {
        check_inside(pat, what)?;
        let rels: Vec<String> = if has_meta(pat) {
            let found: Vec<String> = expand_wildcards(base, pat, what)?
                .into_iter()
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
            let resolved = resolve_in_base(base, &rel, what)?;
            let mut host = base.to_path_buf();
            host.extend(&resolved);
            if std::fs::symlink_metadata(&host).is_err() {
                return Err(invalid(format!(
                    "{} not found in the {what}",
                    if rel.is_empty() { "." } else { rel.as_str() }
                )));
            }
            out.push(Source { rel, host });
        }
    }
    Ok(out)
}

/// Refuses a pattern that leads out of the base lexically, before anything is looked at.
fn check_inside(pat: &str, what: &str) -> Result<()> {
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
    Ok(())
}

/// The paths (relative to `base`) a wildcard pattern matches, component by component,
/// each level's names in order.
fn expand_wildcards(base: &Path, pat: &str, what: &str) -> Result<Vec<String>> {
    let mut matches = vec![Vec::<String>::new()];
    for comp in pat.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let mut next = Vec::new();
        for mut m in matches {
            if comp == ".." {
                m.pop();
                next.push(m);
                continue;
            }
            if !has_meta(comp) {
                m.push(comp.to_string());
                next.push(m);
                continue;
            }
            let dir = resolve_in_base(base, &m.join("/"), what)?;
            let mut host = base.to_path_buf();
            host.extend(&dir);
            let Ok(entries) = std::fs::read_dir(&host) else {
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
    Ok(matches.into_iter().map(|m| m.join("/")).collect())
}

/// How copied files are owned and their modes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Perms {
    pub owner: (u32, u32),
    pub chmod: Option<u32>,
}

impl Perms {
    /// How a tree is copied with these permissions, leaving out what `ignore` excludes.
    fn tree(self, ignore: Option<&Ignore>) -> TreeCopy<'_> {
        TreeCopy {
            owner: Some(self.owner),
            chmod: self.chmod,
            exclude: ignore.map(|i| i as &dyn Exclude),
        }
    }
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
    let passwd = kleene_jail::parse_passwd(&read_in_root(root, "etc", "passwd")?);
    let groups = kleene_jail::parse_group(&read_in_root(root, "etc", "group")?);
    let bad = |e: kleene_jail::Error| invalid(format!("invalid --chown {spec:?}: {e}"));
    let u = kleene_jail::resolve_user(spec, &passwd, &groups).map_err(bad)?;
    if spec.contains(':') {
        Ok((u.uid, u.gid))
    } else {
        Ok((u.uid, u.uid))
    }
}

fn read_in_root(root: &Path, dir: &str, name: &str) -> Result<String> {
    let Ok(d) = rootfs::open_dir_in_root(root, dir, false, None) else {
        return Ok(String::new());
    };
    match rfs::openat(
        &d,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => {
            let mut s = String::new();
            std::fs::File::from(fd)
                .read_to_string(&mut s)
                .map_err(|e| CoreError::io(format!("reading /{dir}/{name}"), e))?;
            Ok(s)
        }
        Err(_) => Ok(String::new()),
    }
}

/// Whether `dest` (a path in the root) is an existing directory, symlinks followed
/// inside the root.
pub(crate) fn is_dir_in_root(root: &Path, dest: &str) -> bool {
    rootfs::open_dir_in_root(root, dest, false, None).is_ok()
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
    if meta.is_dir() {
        let fd = rootfs::open_dir_in_root(root, dest, true, Some(perms.owner))?;
        return perms.tree(ignore).contents(&src.host, &src.rel, &fd);
    }
    let comps = rootfs::clean(dest);
    let (parent, name) = if dest_is_dir {
        let name = src
            .host
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| invalid(format!("source {} has no name", src.rel)))?;
        (comps.join("/"), name)
    } else {
        match comps.split_last() {
            Some((n, p)) => (p.join("/"), n.clone()),
            None => return Err(invalid("cannot copy a file onto /".to_string())),
        }
    };
    let fd = rootfs::open_dir_in_root(root, &parent, true, Some(perms.owner))?;
    perms
        .tree(ignore)
        .entry(&src.host, &meta, &fd, &name, &src.rel)
}

/// Writes what `data` reads as file `dest` in the root (COPY heredocs, ADD downloads).
pub(crate) fn write_data(
    root: &Path,
    dest: &str,
    data: &mut dyn Read,
    mode: u32,
    perms: Perms,
) -> Result<()> {
    let comps = rootfs::clean(dest);
    let Some((name, parent)) = comps.split_last() else {
        return Err(invalid("cannot write a file onto /".to_string()));
    };
    let dir = rootfs::open_dir_in_root(root, &parent.join("/"), true, Some(perms.owner))?;
    let f = tree::create_file(&dir, name, dest)?;
    let mut file = std::fs::File::from(f);
    std::io::copy(data, &mut file).map_err(|e| CoreError::io(format!("writing {dest}"), e))?;
    tree::finish_fd(&file, perms.owner, perms.chmod.unwrap_or(mode), dest)
}

/// Where the sources of a COPY or ADD are read.
#[derive(Debug)]
pub(crate) struct SourceBase {
    /// The directory: the context, or a stage's or an image's root (`COPY --from`).
    pub dir: PathBuf,
    /// `.dockerignore`, for the context.
    pub ignore: Option<Ignore>,
    /// What it is, in errors and cache keys: `build context` or `source image`.
    pub what: &'static str,
}

/// A file a COPY or ADD writes that is not read from its base: a heredoc, a download.
#[derive(Debug)]
pub(crate) struct InlineFile {
    /// Its name (in the destination directory).
    pub name: String,
    pub data: InlineData,
}

/// The contents of an [`InlineFile`].
#[derive(Debug)]
pub(crate) enum InlineData {
    Bytes(Vec<u8>),
    /// Downloaded (ADD <url>), on disk.
    Download(crate::fetch::Saved),
}

impl InlineFile {
    /// The sha256 of its contents.
    pub fn sha256(&self) -> [u8; 32] {
        use sha2::Digest;
        match &self.data {
            InlineData::Bytes(b) => sha2::Sha256::digest(b).into(),
            InlineData::Download(saved) => saved.sha256,
        }
    }
}

/// One COPY or ADD, its words expanded.
#[derive(Debug)]
pub(crate) struct CopyRequest {
    pub from: SourceBase,
    /// Source paths and patterns, relative to the base.
    pub patterns: Vec<String>,
    /// Files written from the instruction itself, after the sources.
    pub inline: Vec<InlineFile>,
    /// The destination as written (expanded); relative to `workdir`.
    pub dest: String,
    /// The stage's WORKDIR.
    pub workdir: String,
    /// `--chown=user[:group]`, resolved in the stage's root; 0:0 when `None`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<u32>,
    /// Unpack local tar archives (ADD).
    pub unpack: bool,
}

impl CopyRequest {
    /// The destination, absolute.
    pub fn dest_abs(&self) -> String {
        if self.dest.starts_with('/') {
            self.dest.clone()
        } else {
            format!("{}/{}", self.workdir, self.dest)
        }
    }

    /// Whether the destination is a directory by its form: `/` at the end, or `.`.
    fn dest_names_dir(&self) -> bool {
        let d = &self.dest;
        d.ends_with('/') || d.ends_with("/.") || d == "."
    }

    /// The sources the patterns name (Docker's rules; see [`find_sources`]).
    pub fn find_sources(&self) -> Result<Vec<Source>> {
        let f = &self.from;
        find_sources(&f.dir, &self.patterns, f.ignore.as_ref(), f.what)
    }

    /// Refuses more than one source (or a wildcard matching several) into a destination
    /// that is not written as a directory.
    pub fn check_dest(&self, sources: usize) -> Result<()> {
        let count = sources + self.inline.len();
        let wildcard = self.patterns.iter().any(|p| has_meta(p));
        if (count > 1 || wildcard) && !self.dest_names_dir() && !(count == 1 && wildcard) {
            return Err(invalid(format!(
                "when copying more than one source, the destination must be a directory and end with a /: {}",
                self.dest
            )));
        }
        Ok(())
    }

    /// Writes `sources` and the inline files into `root`: archives unpacked (with
    /// `unpack`), directories' contents, files and symlinks, owned by `--chown` (0:0).
    pub fn write(mut self, root: &Path, sources: &[Source]) -> Result<()> {
        let owner = match &self.chown {
            Some(spec) => parse_chown(root, spec)?,
            None => (0, 0),
        };
        let perms = Perms {
            owner,
            chmod: self.chmod,
        };
        let dest = self.dest_abs();
        let count = sources.len() + self.inline.len();
        let into_dir = self.dest_names_dir() || count > 1 || is_dir_in_root(root, &dest);
        for s in sources {
            if self.unpack && is_archive(&s.host) {
                unpack(root, s, &dest, owner)?;
                continue;
            }
            place(root, s, &dest, into_dir, perms, self.from.ignore.as_ref())?;
        }
        let several = self.inline.len() > 1;
        for file in &mut self.inline {
            let target = if into_dir || several {
                format!("{dest}/{}", file.name)
            } else {
                dest.clone()
            };
            match &mut file.data {
                InlineData::Bytes(b) => write_data(root, &target, &mut b.as_slice(), 0o644, perms)?,
                InlineData::Download(saved) => {
                    write_data(root, &target, &mut saved.file, 0o644, perms)?
                }
            }
        }
        Ok(())
    }
}

/// Whether a file is a tar archive (plain or compressed) that ADD unpacks.
fn is_archive(p: &Path) -> bool {
    let Ok(f) = std::fs::File::open(p) else {
        return false;
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = Vec::new();
    if f.take(512).read_to_end(&mut head).is_err() {
        return false;
    }
    crate::archive::Compression::detect(&head).is_some()
}

/// Unpacks archive `src` into directory `dest` of the root (made, owned by `owner`, if
/// missing).
fn unpack(root: &Path, src: &Source, dest: &str, owner: (u32, u32)) -> Result<()> {
    let (fd, resolved) = rootfs::resolve_dir_in_root(root, dest, true, Some(owner))?;
    drop(fd);
    let file = std::fs::File::open(&src.host)
        .map_err(|e| CoreError::io(format!("reading {}", src.rel), e))?;
    let (_, decoded) = crate::archive::decompress(file)?;
    crate::archive::extract(decoded, &root.join(resolved), &mut |_| {})?;
    Ok(())
}
