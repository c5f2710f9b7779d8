//! Random trees and paths for the property tests, the fuzz target and its fixed corpus:
//! a root with a sibling `outside` directory holding a sentinel, a pure model of path
//! resolution, and the checks run on each case.
//!
//! Shared by `tests/*.rs` (`mod harness;`) and `fuzz/fuzz_targets/resolve.rs`
//! (`#[path]`), so that the fuzz target's code is type-checked by every `cargo test`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kleene_rootfs::{Error, Mkdir, OFlags, RootDir, Symlinks, MAX_SYMLINKS};

/// Names of the entries of a tree.
pub const NAMES: &[&str] = &["a", "b", "c", ".zfs"];
/// Components of symlink targets and of the paths resolved.
pub const PARTS: &[&str] = &[
    "a", "b", "c", ".zfs", "..", "..", ".", "", "outside", "sentinel", "root",
];
pub const POLICIES: [Symlinks; 3] = [
    Symlinks::Refuse,
    Symlinks::FollowBeneath,
    Symlinks::FollowInRoot,
];

/// What a symlink points at.
#[derive(Debug, Clone)]
pub enum Target {
    /// A target made of [`PARTS`], relative or absolute.
    Text(String),
    /// The real outside directory by its absolute host path, with this suffix.
    Outside(String),
}

/// What an entry of the tree is.
#[derive(Debug, Clone)]
pub enum Kind {
    Dir,
    File,
    Link(Target),
}

/// An entry, made in order: one whose parent is not a directory by then, or whose name
/// is taken, is skipped.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: Vec<String>,
    pub kind: Kind,
}

/// A tree and the paths to resolve in it.
#[derive(Debug, Clone)]
pub struct Case {
    pub entries: Vec<Entry>,
    pub paths: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// decoding fuzz input

struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
        from[usize::from(self.next()) % from.len()]
    }

    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
}

impl Case {
    /// A case from arbitrary bytes (the fuzz target's input): every input is one.
    pub fn from_bytes(data: &[u8]) -> Case {
        let mut b = Bytes { data, pos: 0 };
        let n = usize::from(b.next() % 24);
        let mut entries = Vec::new();
        for _ in 0..n {
            let depth = 1 + usize::from(b.next() % 3);
            let path = (0..depth).map(|_| b.pick(NAMES).to_string()).collect();
            let kind = match b.next() % 5 {
                0 | 1 => Kind::Dir,
                2 => Kind::File,
                3 => Kind::Link(Target::Text(Self::text(&mut b))),
                _ => {
                    if b.next().is_multiple_of(3) {
                        let suffix = ["", "/a", "/sentinel", "/.."][usize::from(b.next() % 4)];
                        Kind::Link(Target::Outside(suffix.to_string()))
                    } else {
                        Kind::Link(Target::Text(Self::text(&mut b)))
                    }
                }
            };
            entries.push(Entry { path, kind });
        }
        let mut paths = Vec::new();
        while paths.len() < 8 && (paths.is_empty() || !b.done()) {
            paths.push(Self::text(&mut b));
        }
        Case { entries, paths }
    }

    fn text(b: &mut Bytes<'_>) -> String {
        let abs = b.next().is_multiple_of(3);
        let n = 1 + usize::from(b.next() % 5);
        let parts: Vec<&str> = (0..n).map(|_| b.pick(PARTS)).collect();
        let mut t = parts.join("/");
        if abs {
            t.insert(0, '/');
        }
        if t.is_empty() {
            t.push('.');
        }
        t
    }
}

// ---------------------------------------------------------------------------------------
// the model

/// A node of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File(Vec<u8>),
    Link(String),
}

/// The tree as a map from real paths (components below the root) to nodes.
pub type Model = BTreeMap<Vec<String>, Node>;

/// How a resolution fails, in the model's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    NotFound,
    NotDir,
    Escape,
    Symlink,
    Absolute,
    Loop,
    Zfs,
    Invalid,
    DirInTheWay,
}

/// The model's rules: the crate's policy, plus whether `..` at the root stays there (the
/// kernel's `RESOLVE_IN_ROOT`) and whether `.zfs` at the top is refused (the crate).
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub policy: Symlinks,
    pub clamp: bool,
    pub zfs: bool,
    pub mkdir: bool,
}

impl Rules {
    pub fn crate_rules(policy: Symlinks) -> Rules {
        Rules {
            policy,
            clamp: false,
            zfs: true,
            mkdir: false,
        }
    }
}

/// Chroot path resolution, written recursively and independently of the crate's
/// iterative walk: resolves `path` from directory `cur`; `dir` says whether its last
/// component must be a directory. Gives the real path.
pub fn model_walk(
    m: &mut Model,
    mut cur: Vec<String>,
    path: &str,
    dir: bool,
    r: Rules,
    links: &mut u32,
) -> Result<Vec<String>, Fail> {
    let comps: Vec<&str> = path.split('/').collect();
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        match *c {
            "" | "." => {}
            ".." => {
                if cur.pop().is_none() && !r.clamp {
                    return Err(Fail::Escape);
                }
            }
            name => {
                if cur.is_empty() && name == ".zfs" && r.zfs {
                    return Err(Fail::Zfs);
                }
                let mut p = cur.clone();
                p.push(name.to_string());
                match m.get(&p).cloned() {
                    None if r.mkdir => {
                        m.insert(p.clone(), Node::Dir);
                        cur = p;
                    }
                    None => return Err(Fail::NotFound),
                    Some(Node::Dir) => cur = p,
                    Some(Node::File(_)) if last && !dir => return Ok(p),
                    Some(Node::File(_)) => return Err(Fail::NotDir),
                    Some(Node::Link(t)) => {
                        if r.policy == Symlinks::Refuse {
                            return Err(Fail::Symlink);
                        }
                        *links += 1;
                        if *links > MAX_SYMLINKS {
                            return Err(Fail::Loop);
                        }
                        let start = if t.starts_with('/') {
                            if r.policy == Symlinks::FollowBeneath {
                                return Err(Fail::Absolute);
                            }
                            Vec::new()
                        } else {
                            cur.clone()
                        };
                        let must_dir = !last || dir;
                        let got = model_walk(m, start, &t, must_dir, r, links)?;
                        if !must_dir {
                            return Ok(got);
                        }
                        cur = got;
                    }
                }
            }
        }
    }
    Ok(cur)
}

/// Resolves `path` from the root.
pub fn model_resolve(m: &Model, path: &str, dir: bool, r: Rules) -> Result<Vec<String>, Fail> {
    let mut m = m.clone();
    model_walk(&mut m, Vec::new(), path, dir, r, &mut 0)
}

/// The last name of `path` as written, and the rest (as `parent_and_name` cuts it).
pub fn model_split(path: &str) -> Result<(String, String), Fail> {
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    match comps.split_last() {
        None => Err(Fail::Invalid),
        Some((&"..", _)) => Err(Fail::Invalid),
        Some((name, rest)) => Ok((name.to_string(), rest.join("/"))),
    }
}

/// `write_file(path)` in the model.
pub fn model_write(
    m: &mut Model,
    path: &str,
    policy: Symlinks,
    data: &[u8],
) -> Result<Vec<String>, Fail> {
    let (name, parent) = model_split(path)?;
    let rules = Rules {
        mkdir: true,
        ..Rules::crate_rules(policy)
    };
    let mut dir = model_walk(m, Vec::new(), &parent, true, rules, &mut 0)?;
    if dir.is_empty() && name == ".zfs" {
        return Err(Fail::Zfs);
    }
    dir.push(name);
    if m.get(&dir) == Some(&Node::Dir) {
        return Err(Fail::DirInTheWay);
    }
    m.insert(dir.clone(), Node::File(data.to_vec()));
    Ok(dir)
}

// ---------------------------------------------------------------------------------------
// the tree on disk

/// A case's tree on disk: `base/root` and `base/outside`.
pub struct Sandbox {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub outside: PathBuf,
    pub model: Model,
}

pub const SENTINEL: &[u8] = b"precious";

impl Sandbox {
    pub fn new(case: &Case) -> Sandbox {
        let tmp = tempfile::Builder::new()
            .prefix("kleene-rootfs-")
            .tempdir()
            .expect("a temporary directory");
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        for d in [&root, &outside, &outside.join("a"), &outside.join("b")] {
            std::fs::create_dir(d).expect("making the sandbox");
        }
        std::fs::write(outside.join("sentinel"), SENTINEL).expect("writing the sentinel");
        std::fs::write(outside.join("a/sentinel"), SENTINEL).expect("writing the sentinel");
        let mut model = Model::new();
        for e in &case.entries {
            let (parent, _) = e.path.split_at(e.path.len() - 1);
            let parent_ok = parent.is_empty() || model.get(parent) == Some(&Node::Dir);
            if !parent_ok || model.contains_key(&e.path) {
                continue;
            }
            let host = root.join(e.path.join("/"));
            let node = match &e.kind {
                Kind::Dir => {
                    std::fs::create_dir(&host).expect("making a directory");
                    Node::Dir
                }
                Kind::File => {
                    let data = format!("file {}", e.path.join("/")).into_bytes();
                    std::fs::write(&host, &data).expect("making a file");
                    Node::File(data)
                }
                Kind::Link(t) => {
                    let text = match t {
                        Target::Text(t) => t.clone(),
                        Target::Outside(s) => format!("{}{s}", outside.display()),
                    };
                    std::os::unix::fs::symlink(&text, &host).expect("making a symlink");
                    Node::Link(text)
                }
            };
            model.insert(e.path.clone(), node);
        }
        Sandbox {
            tmp,
            root,
            outside,
            model,
        }
    }

    /// The tree below `dir` as the model says it, read without following anything.
    pub fn read_tree(dir: &Path) -> Model {
        let mut out = Model::new();
        let mut stack = vec![(dir.to_path_buf(), Vec::<String>::new())];
        while let Some((p, comps)) = stack.pop() {
            for e in std::fs::read_dir(&p).expect("listing a directory") {
                let e = e.expect("a directory entry");
                let name = e.file_name().to_string_lossy().into_owned();
                let mut c = comps.clone();
                c.push(name);
                let m = std::fs::symlink_metadata(e.path()).expect("lstat");
                let node = if m.file_type().is_symlink() {
                    let t = std::fs::read_link(e.path()).expect("readlink");
                    Node::Link(t.to_string_lossy().into_owned())
                } else if m.is_dir() {
                    stack.push((e.path(), c.clone()));
                    Node::Dir
                } else {
                    Node::File(std::fs::read(e.path()).expect("reading a file"))
                };
                out.insert(c, node);
            }
        }
        out
    }

    /// Device and inode of everything below `dir` (itself included), by lstat.
    pub fn inodes(dir: &Path) -> BTreeSet<(u64, u64)> {
        let mut out = BTreeSet::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(p) = stack.pop() {
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            out.insert((m.dev(), m.ino()));
            if m.is_dir() {
                for e in std::fs::read_dir(&p).expect("listing a directory") {
                    stack.push(e.expect("a directory entry").path());
                }
            }
        }
        out
    }

    /// Everything about the outside that a stray write could change.
    pub fn outside_state(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.tmp.path().to_path_buf()];
        while let Some(p) = stack.pop() {
            if p == self.root {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let what = if m.is_dir() {
                for e in std::fs::read_dir(&p).expect("listing a directory") {
                    stack.push(e.expect("a directory entry").path());
                }
                "dir".to_string()
            } else {
                format!("{:?}", std::fs::read(&p).expect("reading a file"))
            };
            out.insert(
                p,
                format!(
                    "{what} {:o} {} {} {}",
                    m.mode(),
                    m.nlink(),
                    m.mtime(),
                    m.ino()
                ),
            );
        }
        out
    }
}

fn fail_of(e: &Error) -> Fail {
    match e {
        Error::Escape { .. } => Fail::Escape,
        Error::Symlink { .. } => Fail::Symlink,
        Error::AbsoluteSymlink { .. } => Fail::Absolute,
        Error::TooManySymlinks { .. } => Fail::Loop,
        Error::NotADirectory { .. } => Fail::NotDir,
        Error::ZfsControlDir { .. } => Fail::Zfs,
        Error::InvalidPath { .. } => Fail::Invalid,
        Error::DirectoryInTheWay { .. } => Fail::DirInTheWay,
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => Fail::NotFound,
        Error::Io { source, .. }
            if source.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
        {
            Fail::NotDir
        }
        other => panic!("unexpected error: {other}"),
    }
}

fn dev_ino(fd: impl AsFd) -> (u64, u64) {
    let st = rustix::fs::fstat(fd).expect("fstat");
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    (st.st_dev as u64, st.st_ino as u64)
}

fn path_of(comps: &[String]) -> PathBuf {
    comps.iter().collect()
}

// ---------------------------------------------------------------------------------------
// the checks

/// Runs every check on a case; panics on the first violation.
pub fn check(case: &Case) {
    let sb = Sandbox::new(case);
    let before = sb.outside_state();
    let outside_inodes = Sandbox::inodes(sb.tmp.path())
        .difference(&Sandbox::inodes(&sb.root))
        .copied()
        .collect::<BTreeSet<_>>();
    let root = RootDir::open(&sb.root).expect("opening the root");
    let inside = Sandbox::inodes(&sb.root);
    let inode_of = |comps: &[String]| {
        let m = std::fs::symlink_metadata(sb.root.join(path_of(comps))).expect("lstat");
        (m.dev(), m.ino())
    };

    // Read-only: resolve, open_dir, open_file, read_file against the model.
    for path in &case.paths {
        for policy in POLICIES {
            let rules = Rules::crate_rules(policy);
            let ctx = format!("{path:?} with {policy:?} in {:?}", sb.model);

            let want = model_resolve(&sb.model, path, false, rules);
            let got = root.resolve(path, policy);
            match (&want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(&path_of(w), g, "resolve {ctx}"),
                (Err(w), Err(g)) => assert_eq!(*w, fail_of(g), "resolve {ctx}: {g}"),
                _ => panic!("resolve {ctx}: model {want:?}, crate {got:?}"),
            }

            let want_dir = model_resolve(&sb.model, path, true, rules);
            match (&want_dir, root.resolve_dir(path, policy, None)) {
                (Ok(w), Ok(g)) => {
                    assert_eq!(&path_of(w), &g.path, "resolve_dir {ctx}");
                    let id = dev_ino(&g.fd);
                    assert!(inside.contains(&id), "resolve_dir {ctx}: outside the root");
                    assert_eq!(id, inode_of(w), "resolve_dir {ctx}");
                }
                (Err(w), Err(g)) => assert_eq!(*w, fail_of(&g), "resolve_dir {ctx}: {g}"),
                (w, g) => panic!("resolve_dir {ctx}: model {w:?}, crate {g:?}"),
            }

            let flags = OFlags::RDONLY | OFlags::NONBLOCK;
            match (&want, root.open_file(path, policy, flags, 0)) {
                (Ok(w), Ok(fd)) => {
                    let id = dev_ino(&fd);
                    assert!(inside.contains(&id), "open_file {ctx}: outside the root");
                    assert!(!outside_inodes.contains(&id), "open_file {ctx}: outside");
                    assert_eq!(id, inode_of(w), "open_file {ctx}");
                }
                (Err(w), Err(g)) => assert_eq!(*w, fail_of(&g), "open_file {ctx}: {g}"),
                (w, g) => panic!("open_file {ctx}: model {w:?}, crate {g:?}"),
            }

            if let Ok(w) = &want {
                if let Some(Node::File(data)) = sb.model.get(w) {
                    let got = root.read_file(path, policy, 1 << 20).expect("read_file");
                    assert_eq!(&got, data, "read_file {ctx}");
                }
            }
        }
        kernel_oracle(&sb, &root, path);
    }

    // Writes: mkdir -p and write_file, the model changed alongside.
    let mut model = sb.model.clone();
    for (i, path) in case.paths.iter().enumerate() {
        let policy = POLICIES[i % POLICIES.len()];
        let ctx = format!("{path:?} with {policy:?}");
        let rules = Rules {
            mkdir: true,
            ..Rules::crate_rules(policy)
        };
        let mut after = model.clone();
        let want = model_walk(&mut after, Vec::new(), path, true, rules, &mut 0);
        match (
            &want,
            root.resolve_dir(path, policy, Some(Mkdir::default())),
        ) {
            (Ok(w), Ok(g)) => {
                assert_eq!(&path_of(w), &g.path, "mkdir {ctx}");
                model = after;
            }
            (Err(w), Err(g)) => {
                assert_eq!(*w, fail_of(&g), "mkdir {ctx}: {g}");
                // What was made before the failure stays, in both.
                model = after;
            }
            (w, g) => panic!("mkdir {ctx}: model {w:?}, crate {g:?}"),
        }
        let data = format!("written {i}").into_bytes();
        let file = format!("{path}/w{i}");
        for target in [file.as_str(), path.as_str()] {
            let mut after = model.clone();
            let want = model_write(&mut after, target, policy, &data);
            match (&want, root.write_file(target, policy, &data, 0o644)) {
                (Ok(_), Ok(())) => model = after,
                (Err(w), Err(g)) => {
                    assert_eq!(*w, fail_of(&g), "write_file {target:?} {ctx}: {g}");
                    model = after;
                }
                (w, g) => panic!("write_file {target:?} {ctx}: model {w:?}, crate {g:?}"),
            }
        }
        assert_eq!(Sandbox::read_tree(&sb.root), model, "the tree after {ctx}");
    }
    assert_eq!(sb.outside_state(), before, "the outside changed");
    let names: Vec<_> = std::fs::read_dir(sb.tmp.path())
        .expect("listing the base")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "something appeared beside the root: {names:?}"
    );
}

/// On Linux, the kernel's `openat2(RESOLVE_IN_ROOT)` checks the model itself: with `..`
/// staying at the root and no `.zfs` rule, both must find the same inode or fail alike.
#[cfg(target_os = "linux")]
fn kernel_oracle(sb: &Sandbox, root: &RootDir, path: &str) {
    use rustix::fs::{openat2, ResolveFlags};
    use rustix::io::Errno;
    let rules = Rules {
        clamp: true,
        zfs: false,
        ..Rules::crate_rules(Symlinks::FollowInRoot)
    };
    let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    for dir in [false, true] {
        let flags = OFlags::PATH
            | OFlags::CLOEXEC
            | if dir {
                OFlags::DIRECTORY
            } else {
                OFlags::empty()
            };
        let p = if path.is_empty() { "." } else { path };
        let got: Result<OwnedFd, Errno> = loop {
            match openat2(root, p, flags, rustix::fs::Mode::empty(), how) {
                Err(Errno::AGAIN) => continue,
                other => break other,
            }
        };
        if matches!(got, Err(Errno::NOSYS)) {
            return;
        }
        let want = model_resolve(&sb.model, path, dir, rules);
        let ctx = format!("kernel {path:?} dir={dir} in {:?}", sb.model);
        match (&want, got) {
            (Ok(w), Ok(fd)) => {
                let m = std::fs::symlink_metadata(sb.root.join(path_of(w))).expect("lstat");
                assert_eq!(dev_ino(&fd), (m.dev(), m.ino()), "{ctx}");
            }
            (Err(Fail::NotFound), Err(Errno::NOENT)) => {}
            (Err(Fail::NotDir), Err(Errno::NOTDIR)) => {}
            (Err(Fail::Loop), Err(Errno::LOOP)) => {}
            (w, g) => panic!("{ctx}: model {w:?}, kernel {g:?}"),
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn kernel_oracle(_: &Sandbox, _: &RootDir, _: &str) {}
