//! COPY and ADD of symlinks in the build context, as BuildKit does them (fsutil's
//! `copy.Copy`: a source is followed inside the context, `fs.RootPath`, and written under
//! the name it was given, `filepath.Base(src)`; what is inside a copied directory is
//! copied with `lstat`, symlinks as symlinks): a link named as a source (or matched by a
//! wildcard) gives a regular file or a directory's contents under the link's name; links
//! in a copied directory stay links; a link out of the context is refused and the host
//! file behind it never read. Buildah, when installed, builds the same context for
//! comparison.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use kleene_core::kleene_zfs::{DatasetName, Zfs};
use kleene_core::{BuildOutcome, BuildRequest, CoreError, Engine, Events};

use common::busybox_engine as setup;

/// The COPY lines both builders run (into `/out`, which only the copies write).
const COPIES: &str = "\
COPY greet.txt link /out/top/
COPY link /out/named
COPY dlink /out/fromdlink/
COPY dlink /out/dlinkdir
COPY dlink/sub /out/viasub/
COPY link dlink /out/both/
COPY l* /out/glob/
COPY tree /out/tree/
COPY dir /out/dir/
ADD link /out/added/
";

/// A context with symlinks: to a file, to a directory, inside directories, and a
/// `.dockerignore`.
fn context(dir: &Path) -> PathBuf {
    let ctx = dir.join("ctx");
    for (p, c) in [
        ("greet.txt", "hello\n"),
        ("dir/d.txt", "D\n"),
        ("dir/sub/s.txt", "S\n"),
        ("dir/hidden.log", "ignored\n"),
        ("tree/t", "T\n"),
        ("secret.txt", "not to be sent\n"),
        // Excluded by its real path: not copied through `dlink` either, as neither
        // BuildKit (the context it is sent lacks it) nor buildah copies it.
        (".dockerignore", "dir/hidden.log\nsecret.txt\nDockerfile*\n"),
    ] {
        let p = ctx.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
    symlink("greet.txt", ctx.join("link")).unwrap();
    symlink("greet.txt", ctx.join("lk2")).unwrap();
    symlink("dir", ctx.join("dlink")).unwrap();
    symlink("../greet.txt", ctx.join("dir/inlink")).unwrap();
    symlink("t", ctx.join("tree/tl")).unwrap();
    ctx
}

/// Everything below `root`, sorted: `path f contents`, `path d`, `path l target`.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
        let mut names: Vec<_> = std::fs::read_dir(root.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            let child = if rel.is_empty() {
                n
            } else {
                format!("{rel}/{n}")
            };
            let p = root.join(&child);
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.push(format!("{child} l {}", target.display()));
            } else if meta.is_dir() {
                out.push(format!("{child} d"));
                walk(root, &child, out);
            } else {
                let data = std::fs::read_to_string(&p).unwrap();
                out.push(format!("{child} f {}", data.trim_end()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out
}

/// Builds `ctx` with Dockerfile `df` (written as `Dockerfile`).
async fn build(
    engine: &Engine,
    ctx: &Path,
    df: &str,
    tag: &str,
) -> Result<BuildOutcome, CoreError> {
    std::fs::write(ctx.join("Dockerfile"), df).unwrap();
    engine
        .build(BuildRequest::new(ctx).tag(tag), Events::none())
        .await
}

/// Where an image's root is on the host.
fn image_root(out: &BuildOutcome) -> PathBuf {
    let ds = DatasetName::new(out.image.dataset.as_str()).unwrap();
    Zfs::open().mountpoint(&ds).unwrap().unwrap()
}

/// What BuildKit (and buildah) make of [`COPIES`] on [`context`].
fn expected() -> Vec<&'static str> {
    vec![
        "added d",
        "added/link f hello",
        "both d",
        "both/d.txt f D",
        "both/inlink l ../greet.txt",
        "both/link f hello",
        "both/sub d",
        "both/sub/s.txt f S",
        "dir d",
        "dir/d.txt f D",
        "dir/inlink l ../greet.txt",
        "dir/sub d",
        "dir/sub/s.txt f S",
        "dlinkdir d",
        "dlinkdir/d.txt f D",
        "dlinkdir/inlink l ../greet.txt",
        "dlinkdir/sub d",
        "dlinkdir/sub/s.txt f S",
        "fromdlink d",
        "fromdlink/d.txt f D",
        "fromdlink/inlink l ../greet.txt",
        "fromdlink/sub d",
        "fromdlink/sub/s.txt f S",
        "glob d",
        "glob/link f hello",
        "glob/lk2 f hello",
        "named f hello",
        "top d",
        "top/greet.txt f hello",
        "top/link f hello",
        "tree d",
        "tree/t f T",
        "tree/tl l t",
        "viasub d",
        "viasub/s.txt f S",
    ]
}

/// A link named as a source, explicitly or by a wildcard, is followed and written under
/// its own name (a file, or a directory's contents); links inside a copied directory stay
/// links; `.dockerignore` applies to what a link leads to.
#[tokio::test]
async fn named_links_are_followed_and_inner_links_kept() {
    let Some((s, engine)) = setup("cpsl").await else {
        return;
    };
    let ctx = context(s.dir.path());
    let out = build(&engine, &ctx, &format!("FROM bb\n{COPIES}"), "links")
        .await
        .unwrap();
    let root = image_root(&out);
    assert_eq!(tree(&root.join("out")), expected());
    let link = std::fs::symlink_metadata(root.join("out/top/link")).unwrap();
    assert!(link.file_type().is_file(), "a regular file, not a link");

    // A link to what .dockerignore excludes is refused, as the context BuildKit is sent
    // holds the link but not its target.
    symlink("secret.txt", ctx.join("slink")).unwrap();
    for df in ["COPY slink /x", "COPY sl* /x/"] {
        let err = build(&engine, &ctx, &format!("FROM bb\n{df}\n"), "ignored")
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("excluded by .dockerignore"),
            "{df}: {err}"
        );
    }
}

/// A link leading out of the context, by an absolute target or by `..`, named or matched,
/// to a file or a directory, is refused: the host file behind it is neither copied nor
/// changed.
#[tokio::test]
async fn links_out_of_the_context_are_refused() {
    let Some((s, engine)) = setup("cpslout").await else {
        return;
    };
    let ctx = context(s.dir.path());
    let host = s.dir.path().join("host-secret");
    std::fs::write(&host, "host only\n").unwrap();
    let host_dir = s.dir.path().join("host-dir");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("f"), "host only\n").unwrap();
    symlink(&host, ctx.join("abs")).unwrap();
    symlink("../host-secret", ctx.join("up")).unwrap();
    symlink("dir/../../host-dir", ctx.join("updir")).unwrap();
    symlink("..", ctx.join("parent")).unwrap();
    for df in [
        "COPY abs /x",
        "COPY up /x",
        "COPY up* /x/",
        "COPY updir /x/",
        "COPY parent/host-secret /x",
        "ADD up /x",
    ] {
        let err = build(&engine, &ctx, &format!("FROM bb\n{df}\n"), "out")
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("outside the build context"),
            "{df}: {err}"
        );
    }
    assert_eq!(std::fs::read_to_string(&host).unwrap(), "host only\n");
    assert_eq!(
        std::fs::read_to_string(host_dir.join("f")).unwrap(),
        "host only\n"
    );
    assert_eq!(std::fs::read_dir(&host_dir).unwrap().count(), 1);
}

/// The cache key follows a link named as a source: a change of its target's contents,
/// or of where it points, runs the COPY again.
#[tokio::test]
async fn cache_key_follows_the_link() {
    let Some((s, engine)) = setup("cpslcache").await else {
        return;
    };
    let ctx = context(s.dir.path());
    let df = "FROM bb\nCOPY link /out/\nCOPY dlink /d/\n";
    let first = build(&engine, &ctx, df, "cache").await.unwrap();
    assert_eq!(first.cached, 0);
    let again = build(&engine, &ctx, df, "cache").await.unwrap();
    assert_eq!(again.cached, 2);

    // The file behind the link changes: its COPY runs again, the next is cached.
    std::fs::write(ctx.join("greet.txt"), "changed\n").unwrap();
    let changed = build(&engine, &ctx, df, "cache").await.unwrap();
    assert_eq!(changed.cached, 0, "the first COPY ran, so the second too");
    assert_eq!(
        std::fs::read_to_string(image_root(&changed).join("out/link")).unwrap(),
        "changed\n"
    );
    let same = build(&engine, &ctx, df, "cache").await.unwrap();
    assert_eq!(same.cached, 2);

    // The link points elsewhere.
    std::fs::write(ctx.join("other.txt"), "other\n").unwrap();
    std::fs::remove_file(ctx.join("link")).unwrap();
    symlink("other.txt", ctx.join("link")).unwrap();
    let retargeted = build(&engine, &ctx, df, "cache").await.unwrap();
    assert_eq!(retargeted.cached, 0);
    assert_eq!(
        std::fs::read_to_string(image_root(&retargeted).join("out/link")).unwrap(),
        "other\n"
    );

    // A file in the directory behind a directory link changes.
    std::fs::write(ctx.join("dir/d.txt"), "D2\n").unwrap();
    let inner = build(&engine, &ctx, df, "cache").await.unwrap();
    assert_eq!(inner.cached, 1);
    assert_eq!(
        std::fs::read_to_string(image_root(&inner).join("d/d.txt")).unwrap(),
        "D2\n"
    );
}

/// Runs buildah (`args`), its stdout trimmed; panics with its stderr on failure.
fn buildah(args: &[&str]) -> String {
    let out = Command::new("buildah").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "buildah {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether buildah runs here.
fn have_buildah() -> bool {
    Command::new("buildah")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Buildah builds the same context with the same COPY lines (`FROM scratch`): the trees
/// under `/out` are the same, names, types, link targets and contents.
#[tokio::test]
async fn same_tree_as_buildah() {
    if !have_buildah() {
        assert!(
            std::env::var("KLEENE_REQUIRE_ZFS").as_deref() != Ok("1"),
            "KLEENE_REQUIRE_ZFS=1 but buildah is not installed (benches/scripts/podman-setup.sh)"
        );
        eprintln!("skipped: buildah is not installed");
        return;
    }
    let Some((s, engine)) = setup("cpslbuildah").await else {
        return;
    };
    let ctx = context(s.dir.path());
    let out = build(&engine, &ctx, &format!("FROM bb\n{COPIES}"), "links")
        .await
        .unwrap();
    let ours = tree(&image_root(&out).join("out"));

    let tag = format!("kleene-copy-symlinks-{}", std::process::id());
    let df = s.dir.path().join("Dockerfile.buildah");
    std::fs::write(&df, format!("FROM scratch\n{COPIES}")).unwrap();
    buildah(&[
        "bud",
        "-q",
        "-t",
        &tag,
        "-f",
        df.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    let container = buildah(&["from", &tag]);
    let mount = buildah(&["mount", &container]);
    let theirs = tree(&Path::new(&mount).join("out"));
    buildah(&["umount", &container]);
    buildah(&["rm", &container]);
    buildah(&["rmi", &tag]);
    assert_eq!(ours, theirs);
    assert_eq!(ours, expected());
}
