//! COPY and ADD: a [`CopyRequest`] (the instruction, its words expanded), its sources found
//! in the build context (never outside it) or a `--from` stage or image, written into the
//! stage's root with `*at` calls from directory fds (never through a symlink out of the
//! root). Paths in either are resolved by [`kleene_rootfs`]: see its policy table. The
//! build step itself (expansion, cache, snapshot) is in [`step`].

mod step;

use std::io::Read;
use std::path::{Path, PathBuf};

use super::glob::{has_meta, match_component, Ignore};
use crate::error::{CoreError, Result};
use crate::rootfs::{self, Mkdir, RootDir, Symlinks};
use crate::tree::{self, Exclude, TreeCopy};

/// One source of a COPY: its path relative to the context (or stage root) as named (by
/// the instruction or a wildcard's match), and where it is, with every symlink on the way,
/// the last component's included, resolved inside its base.
///
/// As BuildKit does (fsutil's `copy.Copy`: the source is followed with `fs.RootPath`, the
/// destination named after `filepath.Base` of the source as given), a symlink named as a
/// source is followed but what it leads to is written under the link's name; symlinks in a
/// copied directory stay symlinks.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// The path as named: what the destination's name comes from.
    pub rel: String,
    /// Where it is on the host: `base` joined with `real`.
    pub host: PathBuf,
    /// Its real path in the base (no symlink in it): what `.dockerignore` is checked
    /// against inside it, as BuildKit's context holds only what is not excluded.
    pub real: String,
}

impl Source {
    /// The name it is written under in a destination directory: the last component of
    /// the path as named, never its symlink's target's.
    fn name(&self) -> Result<String> {
        self.rel
            .rsplit('/')
            .find(|c| !c.is_empty())
            .map(str::to_string)
            .or_else(|| {
                self.host
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .ok_or_else(|| invalid(format!("source {} has no name", self.rel)))
    }
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
        check_inside(pat, what)?;
        let rels: Vec<String> = if has_meta(pat) {
            let found: Vec<String> = expand_wildcards(base, &base_dir, policy, pat, what)?
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
            let real = match base_dir.resolve(&rel, policy) {
                Ok(resolved) => resolved,
                Err(e) if e.is_refusal() => return Err(outside(what, &rel, &e)),
                Err(_) => {
                    return Err(invalid(format!(
                        "{} not found in the {what}",
                        if rel.is_empty() { "." } else { rel.as_str() }
                    )))
                }
            };
            let host = base.join(&real);
            let real = real.to_string_lossy().into_owned();
            if real != rel && excluded(&real) {
                return Err(invalid(format!(
                    "{rel} leads to {real}, which is excluded by .dockerignore"
                )));
            }
            out.push(Source { rel, host, real });
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
/// each level's names in order; the directories on the way are resolved in `base_dir`
/// with `policy`.
fn expand_wildcards(
    base: &Path,
    base_dir: &RootDir,
    policy: Symlinks,
    pat: &str,
    what: &str,
) -> Result<Vec<String>> {
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
/// file to `dest` itself (`dest_is_dir`: into it, under the name the source was given,
/// a symlink's and not its target's). A source is always what its symlink leads to;
/// symlinks inside a directory are copied as symlinks.
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
        return perms.tree(ignore).contents(&src.host, &src.real, &fd);
    }
    let (fd, name) = if dest_is_dir {
        let name = src.name()?;
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
    let clean = lexical(dest);
    if clean.is_empty() {
        return Err(invalid("cannot write a file onto /".to_string()));
    }
    let mkdir = Some(Mkdir::owned(perms.owner.0, perms.owner.1));
    let root = RootDir::open(root)?;
    let (dir, name) = root.parent_and_name(&clean, Symlinks::FollowInRoot, mkdir)?;
    let f = tree::create_file(&dir.fd, &name.to_string_lossy(), dest)?;
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
                unpack(root, &dest, owner, s)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::symlink;

    use super::*;

    /// A context with links to a file and a directory, and a root to copy into.
    fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let ctx = t.path().join("ctx");
        std::fs::create_dir_all(ctx.join("dir")).unwrap();
        std::fs::write(ctx.join("greet.txt"), "hello\n").unwrap();
        std::fs::write(ctx.join("dir/d.txt"), "D\n").unwrap();
        symlink("greet.txt", ctx.join("link")).unwrap();
        symlink("dir", ctx.join("dlink")).unwrap();
        symlink("../greet.txt", ctx.join("dir/inlink")).unwrap();
        symlink("/etc/passwd", ctx.join("abs")).unwrap();
        symlink("../outside", ctx.join("up")).unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        (t, ctx, root)
    }

    fn perms() -> Perms {
        let me = (rustix::process::getuid(), rustix::process::getgid());
        Perms {
            owner: (me.0.as_raw(), me.1.as_raw()),
            chmod: None,
        }
    }

    #[test]
    fn a_named_link_keeps_its_name_and_is_followed() {
        let (_t, ctx, root) = dirs();
        let pats = ["link".to_string(), "dl*".to_string()];
        let found = find_sources(&ctx, &pats, None, "build context").unwrap();
        let named: Vec<_> = found.iter().map(|s| (&*s.rel, &*s.real)).collect();
        assert_eq!(named, [("link", "greet.txt"), ("dlink", "dir")]);
        for s in &found {
            place(&root, s, "/out/", true, perms(), None).unwrap();
        }
        let file = std::fs::symlink_metadata(root.join("out/link")).unwrap();
        assert!(file.is_file());
        assert_eq!(
            std::fs::read_to_string(root.join("out/link")).unwrap(),
            "hello\n"
        );
        assert!(!root.join("out/greet.txt").exists());
        // A directory's contents, its own links kept.
        assert_eq!(
            std::fs::read_to_string(root.join("out/d.txt")).unwrap(),
            "D\n"
        );
        assert_eq!(
            std::fs::read_link(root.join("out/inlink")).unwrap(),
            Path::new("../greet.txt")
        );
    }

    #[test]
    fn a_link_out_of_the_context_is_refused() {
        let (_t, ctx, _root) = dirs();
        for p in ["abs", "up", "u*"] {
            let err = find_sources(&ctx, &[p.to_string()], None, "build context").unwrap_err();
            assert!(
                err.to_string().contains("outside the build context"),
                "{p}: {err}"
            );
        }
    }

    #[test]
    fn ignore_applies_to_what_a_link_leads_to() {
        let (_t, ctx, _root) = dirs();
        let ignore = Ignore::parse("greet.txt\n");
        let err =
            find_sources(&ctx, &["link".to_string()], Some(&ignore), "build context").unwrap_err();
        assert_eq!(
            err.to_string(),
            "link leads to greet.txt, which is excluded by .dockerignore"
        );
    }
}
