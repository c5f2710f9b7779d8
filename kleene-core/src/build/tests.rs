//! Builds without root or a pool: planning, ARG and ENV, the cache, failed builds, on the
//! in-memory ZFS with fake jails (see [`crate::testkit`]).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use kleene_dockerfile::Dockerfile;

use super::plan::{needed_stages, stage_ref, BuildArgs, Plan};
use super::BuildRequest;
use crate::testkit::{FakeJails, TestEngine};
use crate::{CoreError, Event};

/// `--chown` of the user running the tests: COPY chowns, and only root may give files away.
fn me() -> String {
    format!(
        "{}:{}",
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw()
    )
}

const STAGES: &str = "\
ARG BASE=base
FROM $BASE AS deps
RUN echo deps
FROM base AS unused
RUN echo unused
FROM deps AS Build
COPY --from=0 /x /x
FROM base
COPY --from=build /y /y
RUN echo final
";

fn plan(text: &str, req: &BuildRequest) -> Result<Plan, CoreError> {
    let df = Dockerfile::parse(text).unwrap();
    let mut args = BuildArgs::new(req.build_args.clone());
    Plan::new(req, text.into(), df, PathBuf::from("/ctx"), None, &mut args)
}

#[test]
fn the_target_and_the_stages_it_needs() {
    let req = BuildRequest::new("/ctx");
    let p = plan(STAGES, &req).unwrap();
    assert_eq!(p.target, 3);
    // The last stage needs "build" (COPY --from), which needs "deps" (FROM, COPY --from=0).
    assert_eq!(p.stages, [0, 2, 3]);
    assert_eq!(p.total, 2 + 2 + 3);
    for (target, stages) in [
        ("unused", vec![1]),
        ("1", vec![1]),
        ("BUILD", vec![0, 2]),
        ("0", vec![0]),
    ] {
        let p = plan(STAGES, &BuildRequest::new("/ctx").target(target)).unwrap();
        assert_eq!(p.stages, stages, "target {target}");
    }
    let e = plan(STAGES, &BuildRequest::new("/ctx").target("nope")).unwrap_err();
    assert_eq!(e.to_string(), "target stage \"nope\" could not be found");
    let e = plan(STAGES, &BuildRequest::new("/ctx").target("4")).unwrap_err();
    assert!(matches!(e, CoreError::InvalidInput(_)), "{e}");
}

#[test]
fn stage_references_by_name_and_index_look_back_only() {
    let df = Dockerfile::parse(STAGES).unwrap();
    assert_eq!(stage_ref(&df, 3, "deps"), Some(0));
    assert_eq!(stage_ref(&df, 3, "DEPS"), Some(0));
    assert_eq!(stage_ref(&df, 3, "2"), Some(2));
    assert_eq!(stage_ref(&df, 2, "2"), None, "not a stage before");
    assert_eq!(stage_ref(&df, 2, "build"), None, "not a stage before");
    assert_eq!(stage_ref(&df, 4, "base"), None, "an image");
    assert_eq!(needed_stages(&df, 1), [1]);
}

#[test]
fn from_and_tag_apply_to_the_target_only() {
    let req = BuildRequest::new("/ctx").from_image("other:1").tag("app:2");
    let p = plan(STAGES, &req).unwrap();
    assert_eq!(p.base_override(3).as_deref(), Some("other:1"));
    assert_eq!(p.base_override(0), None);
    assert_eq!(p.nametag_of(3), Some(("app".into(), "2".into())));
    assert_eq!(p.nametag_of(2), None);
    let e = plan(STAGES, &BuildRequest::new("/ctx").tag("Bad Name")).unwrap_err();
    assert!(matches!(e, CoreError::InvalidInput(_)), "{e}");
}

#[test]
fn global_args_take_build_args_over_defaults() {
    let text = "ARG A=a-default\nARG B=${A}-b\nARG C\nARG D\nFROM base\n";
    let req = BuildRequest::new("/ctx")
        .build_arg("A", "first")
        .build_arg("A", "given")
        .build_arg("D", "d")
        .build_arg("UNUSED", "x");
    let df = Dockerfile::parse(text).unwrap();
    let mut args = BuildArgs::new(req.build_args.clone());
    let p = Plan::new(&req, text.into(), df, "/ctx".into(), None, &mut args).unwrap();
    let pairs = |l: &[(&str, &str)]| -> Vec<(String, String)> {
        l.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    // A later build arg wins; a default expands with the ARGs before it; C has no value.
    assert_eq!(
        p.global_args,
        pairs(&[("A", "given"), ("B", "given-b"), ("D", "d")])
    );
    assert_eq!(args.unused(), ["UNUSED"]);
}

#[tokio::test]
async fn args_and_env_reach_run() {
    let t = TestEngine::new().await;
    let df = "\
ARG BASE=base
ARG GLOBAL=g-default
ARG VERSION=1
FROM $BASE
ARG GLOBAL
ARG VERSION
ARG NAME=arg-name
ENV NAME=env-name FROM_ARG=v$VERSION
USER app
WORKDIR /srv
RUN echo one
ARG LATE=late
RUN --network=none echo two
";
    let ctx = t.context("args", df, &[]);
    let req = BuildRequest::new(&ctx)
        .tag("args")
        .build_arg("VERSION", "2")
        .build_arg("UNUSED", "x");
    let (r, log) = t.build(req).await;
    let out = r.unwrap();
    let runs = t.jails.runs();
    assert_eq!(runs.len(), 2);
    let env = |i: usize| -> Vec<String> {
        runs[i]
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    };
    // Global ARGs reach a stage that declares them; build args beat defaults; ENV beats
    // ARG, each name once, in its first place.
    assert_eq!(
        env(0),
        [
            "GLOBAL=g-default",
            "VERSION=2",
            "NAME=env-name",
            "FROM_ARG=v2"
        ]
    );
    assert_eq!(
        env(1),
        [
            "GLOBAL=g-default",
            "VERSION=2",
            "NAME=env-name",
            "LATE=late",
            "FROM_ARG=v2"
        ]
    );
    assert_eq!(runs[0].argv, ["/bin/sh", "-c", "echo one"]);
    assert_eq!(runs[0].user.as_deref(), Some("app"));
    assert_eq!(runs[0].workdir.as_deref(), Some("/srv"));
    assert_eq!(runs[0].network, kleene_jail::NetworkMode::Inherit);
    assert_eq!(runs[1].network, kleene_jail::NetworkMode::Disabled);
    assert_eq!(runs[0].name, format!("kleene-build-{}", out.image.id));
    assert_eq!(runs[0].hostname, out.image.id.as_str());
    // ARGs are not kept in the image; ENV is.
    assert_eq!(out.image.config.env, ["NAME=env-name", "FROM_ARG=v2"]);
    assert_eq!(out.image.config.user, "app");
    assert_eq!(out.image.config.workdir, "/srv");
    let warning = "[Warning] One or more build-args [UNUSED] were not consumed";
    assert_eq!(
        log.count(|e| matches!(e, Event::Status(s) if s == warning)),
        1
    );
}

/// `build -u` and `-e`: the user of RUN steps until USER, and an environment under ENV
/// and ARG; both are part of a step's cache key.
#[tokio::test]
async fn build_user_and_env_reach_run_steps_under_user_env_and_arg() {
    let t = TestEngine::new().await;
    let ctx = t.context(
        "user-env",
        "FROM base\nRUN echo one\nENV A=from-env\nUSER app\nRUN echo two\n",
        &[],
    );
    let req = BuildRequest::new(&ctx)
        .tag("ue")
        .user("builder")
        .env("A=from-build")
        .env("B=only-build");
    let (r, _) = t.build(req).await;
    r.unwrap();
    let runs = t.jails.runs();
    let env = |i: usize| -> Vec<String> {
        runs[i]
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    };
    assert_eq!(runs[0].user.as_deref(), Some("builder"));
    assert_eq!(env(0), ["A=from-build", "B=only-build"]);
    assert_eq!(runs[1].user.as_deref(), Some("app"));
    assert_eq!(env(1), ["B=only-build", "A=from-env"]);
    // The same again is all cached; another -u misses from the first RUN on.
    let same = || {
        BuildRequest::new(&ctx)
            .tag("ue")
            .env("A=from-build")
            .env("B=only-build")
    };
    let (r, _) = t.build(same().user("builder")).await;
    assert_eq!(r.unwrap().runs, 0);
    let (r, _) = t.build(same().user("other")).await;
    assert_eq!(r.unwrap().runs, 2);
}

#[tokio::test]
async fn multi_stage_builds_only_what_the_target_needs() {
    let t = TestEngine::new().await;
    let df = format!(
        "\
FROM base AS deps
RUN echo deps > /deps.txt
FROM base AS unused
RUN echo unused > /unused.txt
FROM base
COPY --from=deps --chown={} /deps.txt /got/
RUN echo final > /final.txt
",
        me()
    );
    let ctx = t.context("stages", &df, &[]);
    let (out, log) = t.build_ok(&ctx, "stages").await;
    assert_eq!(
        t.jails.scripts(),
        ["echo deps > /deps.txt", "echo final > /final.txt"]
    );
    assert_eq!(out.steps, 2 + 3);
    assert_eq!(log.steps()[0], "Step 1/5 : FROM base AS deps");
    let root = t.image_root("stages").await;
    assert_eq!(
        std::fs::read_to_string(root.join("got/deps.txt")).unwrap(),
        "deps\n"
    );
    // The intermediate stage is gone: base and the new image are left.
    assert_eq!(t.engine.images().await.unwrap().len(), 2);

    // Another target: only its stage.
    t.jails.clear();
    let (r, _) = t
        .build(BuildRequest::new(&ctx).tag("u").target("unused"))
        .await;
    assert_eq!(r.unwrap().steps, 2);
    assert_eq!(t.jails.scripts(), ["echo unused > /unused.txt"]);
}

#[tokio::test]
async fn from_replaces_the_base_of_the_target() {
    let t = TestEngine::new().await;
    let other = t.base_image("other").await;
    let ctx = t.context("from", "FROM base\nRUN echo x > /x\n", &[]);
    let (r, _) = t
        .build(BuildRequest::new(&ctx).tag("f").from_image("other"))
        .await;
    let image = r.unwrap().image;
    assert_eq!(image.parent.unwrap().image, other.id);
}

/// The Dockerfile of the cache tests, with `ENV X={x}` and the first two RUN lines given.
fn cache_df(one: &str, x: &str, two: &str) -> String {
    format!(
        "\
FROM base
RUN {one}
COPY --chown={} a.txt /a.txt
ENV X={x}
RUN {two}
RUN echo three > /three
",
        me()
    )
}

#[tokio::test]
async fn the_cache_reruns_exactly_the_steps_after_a_change() {
    let t = TestEngine::new().await;
    let (one, two) = ("echo one > /one", "echo two > /two");
    let ctx = t.context("c0", &cache_df(one, "1", two), &[("a.txt", "a\n")]);
    let (out, _) = t.build_ok(&ctx, "c").await;
    assert_eq!((out.runs, out.cached), (3, 0));
    let first = out.image.id.clone();

    // Unchanged (another directory, the same contents): nothing runs.
    t.jails.clear();
    let ctx = t.context("c1", &cache_df(one, "1", two), &[("a.txt", "a\n")]);
    let (out, log) = t.build_ok(&ctx, "c").await;
    assert_eq!((out.runs, out.cached), (0, 4));
    // Its parent is the first image's last step, and the first image cannot go.
    let last = out.snapshot.clone().expect("the last cached step");
    assert!(last.starts_with(&format!("{first}@")), "{last}");
    assert_eq!(out.image.parent.as_ref().map(|p| p.to_string()), Some(last));
    assert!(matches!(
        t.engine.remove_image(first.as_str()).await,
        Err(CoreError::InUse { .. })
    ));
    assert!(t.jails.runs().is_empty());
    assert_eq!(log.count(|e| matches!(e, Event::StepCached { .. })), 4);
    assert_eq!(log.count(|e| matches!(e, Event::SnapshotCreated { .. })), 0);
    let root = t.image_root("c").await;
    assert_eq!(
        std::fs::read_to_string(root.join("three")).unwrap(),
        "three\n"
    );
    assert_eq!(std::fs::read_to_string(root.join("a.txt")).unwrap(), "a\n");

    // Each change reruns what follows it, and nothing before it.
    let two_changed = "echo TWO > /two";
    let cases = [
        (
            "run",
            cache_df(one, "1", two_changed),
            "a\n",
            2,
            vec![two_changed],
        ),
        ("env", cache_df(one, "2", two), "a\n", 2, vec![two]),
        ("file", cache_df(one, "1", two), "changed\n", 1, vec![two]),
        (
            "first",
            cache_df("echo ONE > /one", "1", two),
            "a\n",
            0,
            vec!["echo ONE > /one", two],
        ),
    ];
    for (name, df, file, cached, mut ran) in cases {
        t.jails.clear();
        let ctx = t.context(name, &df, &[("a.txt", file)]);
        let (out, _) = t.build_ok(&ctx, name).await;
        ran.push("echo three > /three");
        assert_eq!(out.cached, cached, "{name}");
        assert_eq!(t.jails.scripts(), ran, "{name}");
    }
    // The image of the changed file has it.
    let root = t.image_root("file").await;
    assert_eq!(
        std::fs::read_to_string(root.join("a.txt")).unwrap(),
        "changed\n"
    );

    // no_cache runs everything.
    t.jails.clear();
    let (r, _) = t.build(BuildRequest::new(&ctx).no_cache(true)).await;
    assert_eq!(r.unwrap().cached, 0);
    assert_eq!(t.jails.runs().len(), 3);
}

#[tokio::test]
async fn a_failed_build_is_kept_as_name_failed_and_resumed() {
    let t = TestEngine::new().await;
    let df = "FROM base\nRUN echo good > /good\nRUN exit 1\nRUN echo never > /never\n";
    let ctx = t.context("fail", df, &[]);
    let (r, log) = t.build(BuildRequest::new(&ctx).tag("app")).await;
    let Err(CoreError::BuildFailed {
        image_id,
        snapshot: Some(snapshot),
        reason,
    }) = r
    else {
        panic!("{r:?}");
    };
    assert_eq!(
        reason,
        "the command '/bin/sh -c exit 1' returned a non-zero code: 1"
    );
    assert_eq!(t.jails.runs().len(), 2);
    let failed = t.engine.image("app:failed").await.unwrap();
    assert_eq!(failed.id, image_id);
    let last = log.all().last().cloned();
    assert_eq!(
        last,
        Some(Event::BuildFailed {
            image: image_id.clone(),
            snapshot: Some(snapshot.clone()),
            reason
        })
    );
    // Its state is the failing step's: the good step's file, nothing after.
    let root = t.image_root("app:failed").await;
    assert!(root.join("good").is_file());
    assert!(!root.join("never").exists());

    // Resumed from its last good snapshot.
    let resume = format!("FROM app:failed{snapshot}\nRUN echo fixed > /fixed\n");
    let ctx = t.context("resume", &resume, &[]);
    let (out, _) = t.build_ok(&ctx, "app").await;
    let parent = out.image.parent.unwrap();
    assert_eq!(parent.image, image_id);
    assert_eq!(format!("@{}", parent.snapshot), snapshot);
    let root = t.image_root("app").await;
    assert!(root.join("good").is_file() && root.join("fixed").is_file());

    // A second failure takes the tag; the first failed image stays, untagged.
    let ctx = t.context("fail2", "FROM base\nRUN exit 3\n", &[]);
    let (r, _) = t.build(BuildRequest::new(&ctx).tag("app")).await;
    let Err(CoreError::BuildFailed {
        image_id: second,
        snapshot: None,
        ..
    }) = r
    else {
        panic!("{r:?}");
    };
    assert_eq!(t.engine.image("app:failed").await.unwrap().id, second);
    assert_eq!(t.engine.image(image_id.as_str()).await.unwrap().name, "");

    // With rm nothing is kept.
    let before = t.engine.images().await.unwrap().len();
    let (r, log) = t.build(BuildRequest::new(&ctx).tag("gone").rm(true)).await;
    assert!(
        matches!(r, Err(CoreError::BuildFailed { snapshot: None, .. })),
        "{r:?}"
    );
    assert_eq!(log.count(|e| matches!(e, Event::BuildFailed { .. })), 1);
    assert_eq!(t.engine.images().await.unwrap().len(), before);
    assert!(t.engine.image("gone:failed").await.is_err());
}

#[tokio::test]
async fn errors_before_the_build_dataset_are_returned_as_they_are() {
    let t = TestEngine::new().await;
    for (df, want) in [
        ("FROM nothing-here\n", "no such image: nothing-here"),
        (
            "FROM scratch\n",
            "FROM scratch is not supported: a kleene build starts from an image",
        ),
        (
            "FROM base\nHEALTHCHECK CMD true\n",
            "HEALTHCHECK is not supported: kleene has no health checks",
        ),
        (
            "FROM base\nRUN --mount=type=cache,target=/c true\n",
            "RUN --mount, --device and --security are not supported",
        ),
    ] {
        let ctx = t.context("err", df, &[]);
        let (r, _) = t.build(BuildRequest::new(&ctx).tag("e").rm(true)).await;
        let e = r.unwrap_err();
        let text = match &e {
            CoreError::BuildFailed { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        assert_eq!(text, want, "{df}");
    }
    // Only the base image is left.
    assert_eq!(t.engine.images().await.unwrap().len(), 1);
    assert!(t.jails.runs().is_empty());
}

#[tokio::test]
async fn a_failing_run_status_is_reported() {
    let t = TestEngine::with_jails(FakeJails::new(|_| 7)).await;
    let ctx = t.context("seven", "FROM base\nRUN [\"/bin/false\", \"x\"]\n", &[]);
    let (r, _) = t.build(BuildRequest::new(&ctx).rm(true)).await;
    let Err(CoreError::BuildFailed { reason, .. }) = r else {
        panic!("{r:?}");
    };
    assert_eq!(
        reason,
        "the command '/bin/false x' returned a non-zero code: 7"
    );
}

#[tokio::test]
async fn copy_and_add_sources_and_downloads() {
    let t = TestEngine::new().await;
    let body: &'static [u8] = b"fetched\n";
    let url = crate::testkit::serve(body);
    let sum = crate::fetch::hex(&<sha2::Sha256 as sha2::Digest>::digest(body));
    let df = format!(
        "\
FROM base
WORKDIR /app
COPY --chown={me} *.txt sub/ ./
ADD --chown={me} --checksum=sha256:{sum} {url} /dl/
COPY --chown={me} <<EOF notes
hello $HOSTNAME
EOF
",
        me = me()
    );
    let ctx = t.context(
        "copy",
        &df,
        &[
            ("a.txt", "a"),
            ("b.txt", "b"),
            ("sub/c", "c"),
            ("skip.txt", "s"),
        ],
    );
    std::fs::write(ctx.join(".dockerignore"), "skip.txt\n").unwrap();
    let (out, log) = t.build_ok(&ctx, "copy").await;
    assert_eq!(out.runs, 0);
    let root = t.image_root("copy").await;
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert_eq!(read("app/a.txt"), "a");
    assert_eq!(read("app/c"), "c");
    assert!(!root.join("app/skip.txt").exists());
    assert_eq!(read("dl/payload"), "fetched\n");
    assert_eq!(read("app/notes"), "hello \n");
    // ADD reports the download.
    assert!(log.count(|e| matches!(e, Event::Download { bytes: 8, .. })) >= 1);

    // Several sources into a file are refused; the same again is cached.
    let bad = t.context(
        "bad",
        &format!("FROM base\nCOPY --chown={} a b /x\n", me()),
        &[("a", ""), ("b", "")],
    );
    let (r, _) = t.build(BuildRequest::new(&bad).rm(true)).await;
    let Err(CoreError::BuildFailed { reason, .. }) = r else {
        panic!("{r:?}");
    };
    assert_eq!(
        reason,
        "when copying more than one source, the destination must be a directory and end with a /: /x"
    );
    let (out, _) = t.build_ok(&ctx, "copy").await;
    assert_eq!(out.cached, 3);
}

#[tokio::test]
async fn a_stage_runs_in_one_build_container_ended_with_the_stage() {
    let t = TestEngine::new().await;
    let df = format!(
        "\
FROM base AS first
RUN echo a > /a
RUN echo b > /b
FROM base
COPY --from=first --chown={} /a /a
RUN echo c > /c
",
        me()
    );
    let ctx = t.context("stages", &df, &[]);
    let (r, _) = t.build(BuildRequest::new(&ctx).tag("stages")).await;
    r.unwrap();
    let names: Vec<String> = t.jails.runs().iter().map(|r| r.name.clone()).collect();
    assert_eq!(names.len(), 3);
    // Both RUNs of the first stage in one container, the second stage in another.
    assert_eq!(names[0], names[1]);
    assert_ne!(names[1], names[2]);
    // Each ended once, with its stage, in order.
    assert_eq!(t.jails.ended(), [names[0].clone(), names[2].clone()]);

    // A failed stage's container is ended too.
    t.jails.clear();
    let ctx = t.context("bad", "FROM base\nRUN echo a > /a\nRUN exit 3\n", &[]);
    let (r, _) = t.build(BuildRequest::new(&ctx).tag("bad")).await;
    assert!(r.is_err());
    let runs = t.jails.runs();
    assert_eq!(runs.len(), 2);
    assert_eq!(t.jails.ended(), [runs[0].name.clone()]);
}
