//! Golden tests from Kleene's own documentation (https://kleene.dev; the pages used are
//! vendored in `tests/fixtures/kleene-docs`, or `$KLEENE_DOCS` names a whole copy):
//! each test reads one documented console session from the doc file at test time, runs its
//! `$ klee ...` commands in order with our klee on a scratch root, and compares our stdout
//! with the docs line by line (see tests/common/docs.rs for what may differ: ids, ages and
//! times, sizes, table widths, the root's path, and the container's own FreeBSD output).
//! The base image is busybox (tests/common), tagged with the names the docs use, so the
//! documented commands run unchanged.
//!
//! Covered (file, console block counted from 1):
//! - run/introduction.md 1 (`container create` + `container start 433b`), 2 (`run
//!   FreeBSD:testing echo Hello!`), 3 (`run FreeBSD:test echo Hello!`), 4 (`run --detach`)
//! - building/dockerfile_best-practices.md 3 and 4 (the ADMIN_USER Dockerfiles, dockerfile
//!   blocks 14 and 15, built with `klee build -t test .` as the prose says)
//! - run/storage/volumes.md 1-5 (create, lsv, inspect, rm, prune) and 6-7 (`run -d --mount
//!   myvol2:/app FreBSD:latest`, stop, rm, volume rm)
//! - _data/klee-reference: klee_build.yaml 1 (the Dockerfile as its Step lines give it; the
//!   `ls -lh /` listing is FreeBSD's), klee_container_create.yaml and klee_create.yaml 1-2
//!   (`hello-world`: an image whose CMD prints "Hello World"),
//!   klee_volume_create.yaml 1, klee_volume_rm.yaml and klee_rmv.yaml 1,
//!   klee_volume_prune.yaml 1, klee_image_rm.yaml and klee_rmi.yaml 1, klee_container_stop.yaml
//!   and klee_stop.yaml 1
//!
//! Skipped, and why:
//! - run/introduction.md "Running containers in the foreground" (a plain ``` block, and
//!   FreeBSD's /etc/rc output and daemons)
//! - building/dockerfile_best-practices.md 1-2 (sshd, FreeBSD's /etc/rc), building/snapshots.md
//!   (pkg, postgresql), building/introduction.md (pkg, flask, networks),
//!   building/base-images.md (fetch-auto / FreeBSD release downloads, make world, mkjail)
//! - get-started/* (pkg, node apps, networks, interactive shells), run/network/*,
//!   run/jail-parameters.md (ping, raw sockets; block 2 is jail(8)), operation/* (kleened
//!   set-up, TLS), reference/kleened/*, reference/klee/cli.md (the Python click help
//!   screens), reference/dockerfile.md (commands without output)
//! - run/storage/volumes.md 8-13 (nginx from pkg, `ls` on the host),
//!   run/storage/nullfs-mounts.md (nginx image, `$(pwd)`, FreeBSD's jail(8) messages)
//! - _data/klee-reference: exec/container_exec (FreeBSD /etc/rc, csh environment),
//!   container_run/run (-it shells, FreeBSD error text, networks, `| grep`), network_*,
//!   isn, lsn, rmn (networks), isv/volume_inspect (FreeBSD's /etc/rc as the image's command),
//!   container_ls/lsc/lsi/image_ls/lsv/volume_ls (lists of state the docs never create),
//!   container_create/create 3 (`-v`, not an option of `container create` in the
//!   reference's own option list: a stale example),
//!   container_rm/rmc (an older table with a TAG column, and `testting` removing `test`),
//!   image_tag, container_update (no output shown; FreeBSD jail errors), image_prune,
//!   container_prune, network_prune (state not shown)

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/docs.rs"]
mod docs;

use std::path::{Path, PathBuf};

use common::Scratch;
use docs::Session;

/// The docs, or return (skip).
macro_rules! docs_or_skip {
    () => {
        match docs::dir() {
            Some(d) => d,
            None => return,
        }
    };
}

/// The busybox base image, created with the first name the docs use and tagged with the
/// others; its id.
fn base_image(s: &Scratch, names: &[&str]) -> String {
    let tar = s.busybox_rootfs();
    let url = format!("file://{}", tar.display());
    let out = s.ok(&["image", "create", "-t", names[0], "fetch", &url]);
    let id = out.lines().last().unwrap().to_string();
    for name in &names[1..] {
        s.ok(&["image", "tag", names[0], name]);
    }
    id
}

/// A build context directory with these files.
fn context(s: &Scratch, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = s.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

fn run_blocks(s: &Scratch, cwd: &Path, docs: &Path, path: &str, blocks: &[usize]) -> String {
    let mut session = Session::new(s, cwd);
    for n in blocks {
        session.run_block(&docs::block(docs, path, *n));
    }
    session.transcript
}

// ---- run/introduction.md ----

#[test]
fn run_introduction_create_and_start() {
    let docs = docs_or_skip!();
    let s = scratch_or_skip!(containers);
    base_image(&s, &["FreeBSD"]);
    run_blocks(&s, s.dir.path(), &docs, "run/introduction.md", &[1]);
}

#[test]
fn run_introduction_run() {
    let docs = docs_or_skip!();
    let s = scratch_or_skip!(containers);
    base_image(&s, &["FreeBSD:testing"]);
    run_blocks(&s, s.dir.path(), &docs, "run/introduction.md", &[2]);
}

#[test]
fn run_introduction_foreground() {
    let docs = docs_or_skip!();
    let s = scratch_or_skip!(containers);
    base_image(&s, &["FreeBSD:test"]);
    run_blocks(&s, s.dir.path(), &docs, "run/introduction.md", &[3]);
}

#[test]
fn run_introduction_detach() {
    let docs = docs_or_skip!();
    let s = scratch_or_skip!(containers);
    base_image(&s, &["FreeBSD:test"]);
    // The docs print the container id with 11 digits, a typo (kleened's ids have 12).
    let mut session = Session::new(&s, s.dir.path()).erratum("4a687b420ed\n", "4a687b420ed0\n");
    session.run_block(&docs::block(&docs, "run/introduction.md", 4));
}

// ---- building/dockerfile_best-practices.md ----

fn best_practices_env(dockerfile_block: usize, console_block: usize, shows: &str) {
    let docs = docs_or_skip!();
    let s = scratch_or_skip!(containers);
    base_image(&s, &["FreeBSD"]);
    let path = "building/dockerfile_best-practices.md";
    let dockerfile = docs::fenced(&docs, path, "dockerfile", dockerfile_block);
    assert!(dockerfile.contains(shows), "{dockerfile}");
    let ctx = context(&s, "ctx", &[("Dockerfile", &dockerfile)]);
    // "creating a Dockerfile like the following, and build it": the image is `test`.
    let session = Session::new(&s, &ctx);
    session.setup(&["build", "-t", "test", "."]);
    let mut session = session;
    session.run_block(&docs::block(&docs, path, console_block));
}

#[test]
fn best_practices_env_persists() {
    best_practices_env(14, 3, "RUN unset ADMIN_USER");
}

#[test]
fn best_practices_env_unset_in_one_run() {
    best_practices_env(15, 4, "&& unset ADMIN_USER");
}

// ---- run/storage/volumes.md ----

#[test]
fn volumes_manage() {
    let docs = docs_or_skip!();
    let s = scratch_or_skip!();
    s.ok(&["lsv"]); // makes the root, for its mountpoint
    let mut session = Session::new(&s, s.dir.path()).with_root_paths();
    for n in 1..=5 {
        session.run_block(&docs::block(&docs, "run/storage/volumes.md", n));
    }
}

#[test]
fn volumes_start_a_container_with_a_volume() {
    let docs = docs_or_skip!();
    let s = scratch_or_skip!(containers);
    // The docs' image name, typo and all.
    base_image(&s, &["FreBSD:latest"]);
    let path = "run/storage/volumes.md";
    let block6 = docs::block(&docs, path, 6);
    let steps = docs::steps(&block6.text);
    assert_eq!(steps.len(), 1);
    assert_eq!(
        steps[0].command,
        "klee run -d --name devtest --mount myvol2:/app FreBSD:latest"
    );
    // As kleened's, a base image's command is `/bin/sh /etc/rc`: the test image's rc starts
    // a service and exits, so the container runs on, as the docs' does, until block 7
    // stops it.
    let mut session = Session::new(&s, s.dir.path());
    session.run_block(&block6);
    session.run_block(&docs::block(&docs, path, 7));
}

// ---- _data/klee-reference ----

#[test]
fn reference_build_with_path() {
    let docs = docs_or_skip!();
    let s = scratch_or_skip!(containers);
    base_image(&s, &["FreeBSD13.2-STABLE"]);
    // The Dockerfile is the one its Step lines show.
    let ctx = context(
        &s,
        "ctx",
        &[(
            "Dockerfile",
            "FROM FreeBSD13.2-STABLE:latest\nRUN ls -lh /\nCMD echo \"Hello World\"\n",
        )],
    );
    let mut session = Session::new(&s, &ctx)
        // FreeBSD's root directory, listed by `ls -lh /`.
        .program_output("Step 2/3 : RUN ls -lh /", "--> Snapshot created");
    session.run_block(&docs::block(
        &docs,
        "_data/klee-reference/klee_build.yaml",
        1,
    ));
}

#[test]
fn reference_container_create() {
    let docs = docs_or_skip!();
    for file in ["klee_container_create.yaml", "klee_create.yaml"] {
        let path = format!("_data/klee-reference/{file}");
        // Each block on a root of its own: both make a container `mycontainer`. Block 3
        // (`container create -v /data`) is skipped: `-v` is not an option of `klee container
        // create` in the reference's own option list (a stale example).
        for n in [1, 2] {
            let Some(s) = common::scratch_for_containers() else {
                return;
            };
            base_image(&s, &["FreeBSD"]);
            // hello-world: an image printing "Hello World", as klee_build.yaml's.
            let ctx = context(
                &s,
                "ctx",
                &[("Dockerfile", "FROM FreeBSD\nCMD echo \"Hello World\"\n")],
            );
            let mut session = Session::new(&s, &ctx);
            session.setup(&["build", "-t", "hello-world", "."]);
            session.run_block(&docs::block(&docs, &path, n));
        }
    }
}

#[test]
fn reference_volume_create() {
    let docs = docs_or_skip!();
    let s = scratch_or_skip!(containers);
    base_image(&s, &["FreeBSD"]);
    let mut session = Session::new(&s, s.dir.path()).with_root_paths();
    session.run_block(&docs::block(
        &docs,
        "_data/klee-reference/klee_volume_create.yaml",
        1,
    ));
}

#[test]
fn reference_volume_rm() {
    let docs = docs_or_skip!();
    for file in ["klee_volume_rm.yaml", "klee_rmv.yaml"] {
        let s = scratch_or_skip!();
        let mut session = Session::new(&s, s.dir.path());
        session.setup(&["volume", "create", "testvol"]);
        session.run_block(&docs::block(
            &docs,
            &format!("_data/klee-reference/{file}"),
            1,
        ));
    }
}

#[test]
fn reference_volume_prune() {
    let docs = docs_or_skip!();
    let s = scratch_or_skip!();
    let mut session = Session::new(&s, s.dir.path());
    session.setup(&["volume", "create", "bar"]);
    session.setup(&["volume", "create", "foo"]);
    // The docs' third volume is an anonymous one, named by its id; ours has that name.
    session.setup(&["volume", "create", "de0a894352c2"]);
    session.run_block(&docs::block(
        &docs,
        "_data/klee-reference/klee_volume_prune.yaml",
        1,
    ));
}

#[test]
fn reference_image_rm() {
    let docs = docs_or_skip!();
    for file in ["klee_image_rm.yaml", "klee_rmi.yaml"] {
        let s = scratch_or_skip!(containers);
        base_image(&s, &["FreeBSD"]);
        base_image(&s, &["FreeBSD:testing"]);
        // 4a103f27dad8: an image built on FreeBSD, which goes first.
        let ctx = context(
            &s,
            "ctx",
            &[("Dockerfile", "FROM FreeBSD\nCMD echo child\n")],
        );
        let mut session = Session::new(&s, &ctx);
        let out = session.setup(&["build", "-t", "child", "."]);
        let child = out.lines().last().unwrap().to_string();
        session.bind("4a103f27dad8", &child);
        session.run_block(&docs::block(
            &docs,
            &format!("_data/klee-reference/{file}"),
            1,
        ));
    }
}

#[test]
fn reference_container_stop() {
    let docs = docs_or_skip!();
    for file in ["klee_container_stop.yaml", "klee_stop.yaml"] {
        let s = scratch_or_skip!(containers);
        base_image(&s, &["FreeBSD"]);
        let mut session = Session::new(&s, s.dir.path());
        let run = |name: &str| {
            let out = session.setup(&["run", "-d", "--name", name, "FreeBSD", "sleep", "600"]);
            out.lines().next().unwrap().to_string()
        };
        run("my_container1");
        let second = run("my_container2");
        run("my_container3");
        let fourth = run("my_container4");
        session.bind("6e33265811f4", &second);
        session.bind("2d6d265811f4", &fourth);
        session.run_block(&docs::block(
            &docs,
            &format!("_data/klee-reference/{file}"),
            1,
        ));
    }
}
