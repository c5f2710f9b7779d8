//! Image builds on real ZFS and real namespaces: every instruction, COPY's rules and
//! refusals, the failed-build flow of Kleene's snapshots guide, the build cache, no host
//! shell, cancellation, crashes and two builds at once.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kleene_core::kleene_zfs::DatasetName;
use kleene_core::{
    Attach, BuildOutcome, BuildRequest, CoreError, CreateContainer, Engine, Event, Events,
    OutputStream,
};
use tokio::io::AsyncReadExt;

use common::busybox_engine as setup;

/// Writes a context directory: `files` are (path, contents); the Dockerfile is `df`.
fn context(
    s: &common::Scratch,
    name: &str,
    df: &str,
    files: &[(&str, &str)],
) -> std::path::PathBuf {
    let dir = s.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), df).unwrap();
    for (p, c) in files {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
    dir
}

/// Collects events.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Event>>>);

impl Log {
    fn events(&self) -> Events {
        let l = self.0.clone();
        Events::new(move |e| l.lock().unwrap().push(e))
    }
    fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
    fn output(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Event::Output { data, .. } => Some(data),
                _ => None,
            })
            .collect()
    }
    fn steps(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Event::BuildStep { n, total, text } => Some(format!("Step {n}/{total} : {text}")),
                _ => None,
            })
            .collect()
    }
    fn count(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.all().iter().filter(|e| f(e)).count()
    }
}

async fn build(engine: &Engine, ctx: &Path, tag: &str) -> (Result<BuildOutcome, CoreError>, Log) {
    let log = Log::default();
    let req = BuildRequest::new(ctx).tag(tag);
    (engine.build(req, log.events()).await, log)
}

/// Runs `cmd` in a new container from `image`; its stdout.
async fn run_in(engine: &Engine, image: &str, cmd: &[&str]) -> String {
    let c = engine
        .create_container(CreateContainer::new(image).cmd(cmd.iter().copied()))
        .await
        .unwrap();
    let mut started = engine
        .start_container(c.id.as_str(), Attach::Piped)
        .await
        .unwrap();
    let mut out = String::new();
    let mut so = started.stdout.take().unwrap();
    let mut se = started.stderr.take().unwrap();
    let mut err = String::new();
    let (a, b) = tokio::join!(so.read_to_string(&mut out), se.read_to_string(&mut err));
    a.unwrap();
    b.unwrap();
    let code = started
        .wait()
        .await
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}; its stdout {out:?}, its stderr {err:?}"))
        .code;
    assert_eq!(code, 0, "{cmd:?}: {out} {err}");
    out
}

#[tokio::test]
async fn every_core_instruction() {
    let Some((s, engine)) = setup("core").await else {
        return;
    };
    let df = r#"ARG BASE=bb
FROM $BASE
ARG GREETING=hello
ARG UNSET
ENV WHO=world PATH=/bin
ENV MSG="${GREETING} ${WHO}"
WORKDIR /app
WORKDIR sub
RUN echo "$MSG from $(pwd) as $(id -u)"; echo to-stderr >&2; echo "$GREETING" > greeting; busybox chown app /home/app
COPY hello.txt ./
USER app
RUN id -u > /home/app/uid; touch /home/app/mine
CMD ["/bin/cat", "/app/sub/hello.txt"]
LABEL version="1.0" kind=test
EXPOSE 80 53/udp
VOLUME /data
STOPSIGNAL SIGINT
ENTRYPOINT ["/bin/env"]
"#;
    let ctx = context(&s, "core", df, &[("hello.txt", "hi from the context\n")]);
    let (r, log) = build(&engine, &ctx, "core:1").await;
    let out = r.unwrap();
    let image = &out.image;
    assert_eq!(image.nametag(), "core:1");
    assert_eq!(out.steps, 17);
    assert_eq!(out.runs, 2);
    assert_eq!(out.cached, 0);
    let steps = log.steps();
    assert_eq!(steps[0], "Step 1/17 : FROM $BASE");
    assert_eq!(steps[8], "Step 9/17 : COPY hello.txt ./");
    assert!(matches!(log.all()[0], Event::BuildStarted { ref id } if *id == image.id));
    // Output streams live, both streams.
    let mut output = log.output();
    output.sort();
    assert_eq!(output, ["hello world from /app/sub as 0", "to-stderr"]);
    assert!(log.all().contains(&Event::Output {
        stream: OutputStream::Stderr,
        data: "to-stderr".into()
    }));
    // One snapshot per RUN and COPY, in the image's history.
    let snaps: Vec<_> = log
        .all()
        .into_iter()
        .filter_map(|e| match e {
            Event::SnapshotCreated { snapshot } => Some(snapshot),
            _ => None,
        })
        .collect();
    assert_eq!(snaps.len(), 3);
    let hist: Vec<_> = image
        .config
        .instructions
        .iter()
        .filter_map(|i| i.snapshot.clone())
        .collect();
    assert_eq!(hist, snaps);
    assert_eq!(image.config.instructions.len(), 17);
    assert_eq!(out.snapshot.as_deref(), Some(snaps[2].as_str()));
    // Metadata: ENV (no ARG), USER, WORKDIR, CMD, ENTRYPOINT, LABEL, EXPOSE, VOLUME.
    assert_eq!(
        image.config.env,
        ["WHO=world", "PATH=/bin", "MSG=hello world"]
    );
    assert_eq!(image.config.user, "app");
    assert_eq!(image.config.workdir, "/app/sub");
    assert_eq!(image.config.cmd, ["/bin/cat", "/app/sub/hello.txt"]);
    assert_eq!(image.config.entrypoint, ["/bin/env"]);
    assert_eq!(
        image.config.labels,
        [
            ("version".to_string(), "1.0".to_string()),
            ("kind".into(), "test".into())
        ]
    );
    assert_eq!(image.config.expose, ["80/tcp", "53/udp"]);
    assert_eq!(image.config.volumes, ["/data"]);
    assert_eq!(
        image.config.stop_signal.map(|s| s.to_string()).as_deref(),
        Some("SIGINT")
    );
    let bb = engine.image("bb").await.unwrap();
    assert_eq!(
        image.parent.as_ref().map(|p| p.to_string()),
        Some(format!("{}@image", bb.id))
    );
    // The parent cannot go while the child exists.
    assert!(matches!(
        engine.remove_image("bb").await,
        Err(CoreError::InUse { .. })
    ));
    // The files: a container of the image sees them; every snapshot can start a container.
    let got = run_in(
        &engine,
        "core:1",
        &[
            "/bin/sh",
            "-c",
            "cat hello.txt greeting /home/app/uid; busybox stat -c %u /home/app/mine; echo $MSG",
        ],
    )
    .await;
    assert_eq!(got, "hi from the context\nhello\n4321\n4321\nhello world\n");
    let first = run_in(
        &engine,
        &format!("core:1{}", snaps[0]),
        &["/bin/sh", "-c", "ls /app/sub"],
    )
    .await;
    assert_eq!(first, "greeting\n");
}

#[tokio::test]
async fn copy_rules_and_refusals() {
    let Some((s, engine)) = setup("copy").await else {
        return;
    };
    let df = "FROM bb
COPY a.txt /one
COPY a.txt /dir/
COPY *.txt /many/
COPY src /tree
COPY --chown=app:extra --chmod=640 a.txt /owned
COPY --chown=4321 src/x /numeric
RUN mkdir -p /real /a/b && busybox ln -s real /inroot && busybox ln -s ../../real /a/b/up
COPY a.txt /inroot/
COPY b.txt /a/b/up/
COPY <<EOF /inline.txt
generated $HOSTNAME_FREE
EOF
RUN cat /one /dir/a.txt /many/a.txt /many/b.txt /tree/x /tree/sub/y /real/a.txt /real/b.txt /inline.txt; \\
    busybox readlink /tree/link; ls /tree/sub; busybox stat -c '%u:%g %a' /owned /numeric
";
    let ctx = context(
        &s,
        "copy",
        df,
        &[
            ("a.txt", "A\n"),
            ("b.txt", "B\n"),
            ("src/x", "X\n"),
            ("src/sub/y", "Y\n"),
            ("src/sub/ignored.log", "no\n"),
            (".dockerignore", "src/sub/*.log\n"),
        ],
    );
    std::os::unix::fs::symlink("x", ctx.join("src/link")).unwrap();
    let (r, log) = build(&engine, &ctx, "copy").await;
    r.unwrap();
    assert_eq!(
        log.output(),
        [
            "A",
            "A",
            "A",
            "B",
            "X",
            "Y",
            "A",
            "B",
            "generated ",
            "x",
            "y",
            "4321:4400 640",
            "4321:4321 644"
        ]
    );

    // Refused: a source outside the context, by path or by symlink; a destination that
    // leads out of the root through a symlink; several sources to a non-directory.
    std::os::unix::fs::symlink("/etc/passwd", ctx.join("hostlink")).unwrap();
    for (bad, why) in [
        ("COPY ../outside /x", "outside the build context"),
        ("COPY hostlink /x", "outside the build context"),
        ("COPY missing.txt /x", "not found"),
        ("COPY nomatch*.txt /x/", "matches nothing"),
        ("COPY a.txt b.txt /x", "must be a directory"),
        (
            "RUN busybox ln -s ../../../../../../../../tmp /escape\nCOPY a.txt /escape/",
            "leads out of the root",
        ),
    ] {
        std::fs::write(ctx.join("Dockerfile"), format!("FROM bb\n{bad}\n")).unwrap();
        let (r, _) = build(&engine, &ctx, "bad").await;
        let err = r.unwrap_err();
        assert!(err.to_string().contains(why), "{bad}: {err}");
    }
    assert!(!Path::new("/tmp/a.txt").exists());
}

#[tokio::test]
async fn failed_build_is_kept_and_resumed() {
    let Some((s, engine)) = setup("failed").await else {
        return;
    };
    // As in Kleene's snapshots guide, with busybox: the third RUN fails.
    let df = "FROM bb
RUN echo installed > /srv/pkg
RUN echo enabled >> /srv/rc.conf
RUN test -e /srv/needed || (echo 'needed is missing' && exit 3)
RUN echo started > /srv/state
";
    let ctx = context(&s, "failed", df, &[]);
    let (r, log) = build(&engine, &ctx, "PostgreSQL").await;
    let CoreError::BuildFailed {
        image_id,
        snapshot,
        reason,
    } = r.unwrap_err()
    else {
        panic!("expected BuildFailed")
    };
    assert!(
        reason.contains("the command '/bin/sh -c test -e /srv/needed || (echo 'needed is missing' && exit 3)' returned a non-zero code: 3"),
        "{reason}"
    );
    assert!(log.output().contains(&"needed is missing".to_string()));
    let snaps: Vec<_> = log
        .all()
        .into_iter()
        .filter_map(|e| match e {
            Event::SnapshotCreated { snapshot } => Some(snapshot),
            _ => None,
        })
        .collect();
    assert_eq!(snaps.len(), 2);
    assert_eq!(snapshot.as_deref(), Some(snaps[1].as_str()));
    assert!(log.all().contains(&Event::BuildFailed {
        image: image_id.clone(),
        snapshot: snapshot.clone(),
        reason: reason.clone(),
    }));
    let failed = engine.image("PostgreSQL:failed").await.unwrap();
    assert_eq!(failed.id, image_id);
    // A container from its last good snapshot.
    let snap = snapshot.unwrap();
    let got = run_in(
        &engine,
        &format!("PostgreSQL:failed{snap}"),
        &["/bin/cat", "/srv/pkg", "/srv/rc.conf"],
    )
    .await;
    assert_eq!(got, "installed\nenabled\n");
    // A new build resumes from it, with the fix.
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM PostgreSQL:failed{snap}\nRUN touch /srv/needed\nRUN test -e /srv/needed\nRUN echo started > /srv/state\n"
        ),
    )
    .unwrap();
    let (r, _) = build(&engine, &ctx, "PostgreSQL").await;
    let done = r.unwrap();
    assert_eq!(
        done.image.parent.as_ref().map(|p| p.to_string()),
        Some(format!("{image_id}@{}", &snap[1..]))
    );
    let got = run_in(
        &engine,
        "PostgreSQL",
        &["/bin/cat", "/srv/pkg", "/srv/state"],
    )
    .await;
    assert_eq!(got, "installed\nstarted\n");
    // The failed image cannot go while the new one depends on it.
    assert!(matches!(
        engine.remove_image("PostgreSQL:failed").await,
        Err(CoreError::InUse { .. })
    ));
    // A second failure takes the tag; the first failed image becomes untagged.
    std::fs::write(ctx.join("Dockerfile"), "FROM bb\nRUN exit 1\n").unwrap();
    let (r, _) = build(&engine, &ctx, "PostgreSQL").await;
    let CoreError::BuildFailed {
        image_id: second,
        snapshot,
        ..
    } = r.unwrap_err()
    else {
        panic!()
    };
    assert_eq!(snapshot, None);
    assert_eq!(engine.image("PostgreSQL:failed").await.unwrap().id, second);
    assert_eq!(engine.image(image_id.as_str()).await.unwrap().name, "");

    // With rm, nothing is left.
    let before = common::datasets_below(&s.config.root, "image").len();
    let req = BuildRequest::new(&ctx).tag("gone").rm(true);
    let err = engine.build(req, Events::none()).await.unwrap_err();
    assert!(
        matches!(err, CoreError::BuildFailed { snapshot: None, .. }),
        "{err}"
    );
    assert!(engine.image("gone:failed").await.is_err());
    assert_eq!(
        common::datasets_below(&s.config.root, "image").len(),
        before
    );
}

#[tokio::test]
async fn cache_hits_and_misses() {
    let Some((s, engine)) = setup("cache").await else {
        return;
    };
    let df = "FROM bb
RUN echo first-run >> /srv/runs
COPY app.txt /srv/
RUN echo second-run >> /srv/runs
ENV X=1
RUN cat /srv/runs /srv/app.txt
";
    let ctx = context(&s, "cache", df, &[("app.txt", "v1\n")]);
    let (r, log) = build(&engine, &ctx, "c").await;
    let first = r.unwrap();
    assert_eq!((first.runs, first.cached), (3, 0));
    assert_eq!(log.output(), ["first-run", "second-run", "v1"]);
    // Unchanged: no RUN runs, no output, every step cached.
    let (r, log) = build(&engine, &ctx, "c").await;
    let again = r.unwrap();
    assert_eq!((again.runs, again.cached), (0, 4));
    assert!(log.output().is_empty());
    assert_eq!(log.count(|e| matches!(e, Event::StepCached { .. })), 4);
    assert_eq!(log.count(|e| matches!(e, Event::SnapshotCreated { .. })), 0);
    assert_ne!(again.image.id, first.image.id);
    // The most recent snapshot is the first build's, reused.
    let last = again.snapshot.clone().unwrap();
    assert!(last.starts_with(&format!("{}@", first.image.id)), "{last}");
    assert_eq!(
        run_in(&engine, "c", &["/bin/cat", "/srv/runs"]).await,
        "first-run\nsecond-run\n"
    );
    // A changed context file: the first RUN is cached, the COPY and what follows run.
    std::fs::write(ctx.join("app.txt"), "v2\n").unwrap();
    let (r, log) = build(&engine, &ctx, "c").await;
    let changed = r.unwrap();
    assert_eq!((changed.runs, changed.cached), (2, 1));
    assert_eq!(log.output(), ["first-run", "second-run", "v2"]);
    // A changed ENV before a RUN invalidates that RUN only.
    std::fs::write(ctx.join("Dockerfile"), df.replace("X=1", "X=2")).unwrap();
    let (r, _) = build(&engine, &ctx, "c").await;
    assert_eq!(
        {
            let o = r.unwrap();
            (o.runs, o.cached)
        },
        (1, 3)
    );
    // no_cache runs everything.
    let req = BuildRequest::new(&ctx).tag("c").no_cache(true);
    let o = engine.build(req, Events::none()).await.unwrap();
    assert_eq!((o.runs, o.cached), (3, 0));
    // A cache entry whose image was removed is stale: the step runs again.
    let all = engine.images().await.unwrap();
    for i in all.iter().filter(|i| i.name.is_empty()) {
        let _ = engine.remove_image(i.id.as_str()).await;
    }
    let _ = engine.remove_image("c").await;
    let _ = engine.prune_images(false).await;
    let (r, _) = build(&engine, &ctx, "c").await;
    let o = r.unwrap();
    assert!(o.runs >= 1, "{o:?}");
}

#[tokio::test]
async fn build_args_and_no_host_shell() {
    let Some((s, engine)) = setup("shell").await else {
        return;
    };
    let marker = format!("/tmp/owned-{}-{}", std::process::id(), rand_suffix());
    let df = format!(
        "ARG V=global
FROM bb
ARG V
ARG W=default
ARG NOTSET
ENV W=from-env
ENV E=\"$(touch {marker})\" F=\"`touch {marker}`\"
WORKDIR /w$(touch {marker})
RUN echo \"$V $W\"
LABEL l=\"$(touch {marker})\"
USER $(touch {marker})
RUN true
"
    );
    let ctx = context(&s, "shell", &df, &[]);
    let log = Log::default();
    let req = BuildRequest::new(&ctx)
        .tag("shell")
        .build_arg("V", "cli")
        .build_arg("UNDECLARED", "x");
    let err = engine.build(req, log.events()).await.unwrap_err();
    // ENV wins over ARG; the build arg reached the declared ARG.
    assert_eq!(log.output()[0], "cli from-env");
    // The USER is the literal text, so the RUN fails: nothing ran on the host.
    assert!(err.to_string().contains("$(touch"), "{err}");
    assert!(!Path::new(&marker).exists(), "a host shell ran");
    let failed = engine.image("shell:failed").await.unwrap();
    assert_eq!(failed.config.user, format!("$(touch {marker})"));
    assert!(failed.config.env.contains(&format!("E=$(touch {marker})")));
    assert_eq!(failed.config.workdir, format!("/w$(touch {marker})"));
    // ARGs are not in the image.
    assert!(!failed.config.env.iter().any(|e| e.starts_with("V=")));
    // The undeclared build arg is only warned about.
    let (r, log) = {
        std::fs::write(ctx.join("Dockerfile"), "FROM bb\nRUN true\n").unwrap();
        let log = Log::default();
        let req = BuildRequest::new(&ctx).build_arg("UNDECLARED", "x");
        (engine.build(req, log.events()).await, log)
    };
    r.unwrap();
    assert!(log
        .all()
        .iter()
        .any(|e| matches!(e, Event::Status(s) if s.contains("[UNDECLARED] were not consumed"))));
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

#[tokio::test]
async fn errors_before_and_during_builds() {
    let Some((s, engine)) = setup("errors").await else {
        return;
    };
    let images = engine.images().await.unwrap().len();
    for (df, why) in [
        (
            "FROM bb\nCOPY --bogus=1 a /b\n",
            "Dockerfile:2:6: unknown flag",
        ),
        ("FROM nosuchimage\n", "no such image: nosuchimage"),
        ("FROM scratch\n", "FROM scratch is not supported"),
        (
            "FROM bb\nHEALTHCHECK CMD true\n",
            "HEALTHCHECK is not supported",
        ),
        (
            "FROM bb\nRUN --mount=type=cache,target=/x true\n",
            "not supported",
        ),
        (
            "FROM bb\nRUN /bin/nonexistent\n",
            "returned a non-zero code: 127",
        ),
        ("FROM bb\nRUN [\"/bin/nonexistent\"]\n", "could not start"),
        ("FROM bb\nUSER nobody-here\nRUN true\n", "nobody-here"),
        ("FROM bb\nENV A=\"${B:?B is required}\"\n", "B is required"),
        (
            "FROM bb\nCOPY --chmod=rwx Dockerfile /x\n",
            "invalid --chmod",
        ),
    ] {
        let ctx = context(&s, "err", df, &[]);
        let req = BuildRequest::new(&ctx).rm(true);
        let err = engine.build(req, Events::none()).await.unwrap_err();
        assert!(err.to_string().contains(why), "{df}: {err}");
    }
    let ctx = context(&s, "err", "FROM bb\n", &[]);
    let req = BuildRequest::new(&ctx).target("nope");
    assert!(engine
        .build(req, Events::none())
        .await
        .unwrap_err()
        .to_string()
        .contains("target stage"));
    let req = BuildRequest::new(&ctx).tag("Bad Name");
    assert!(matches!(
        engine.build(req, Events::none()).await,
        Err(CoreError::InvalidInput(_))
    ));
    let missing = BuildRequest::new(s.dir.path().join("nope"));
    assert!(engine.build(missing, Events::none()).await.is_err());
    // rm left nothing.
    assert_eq!(engine.images().await.unwrap().len(), images);
    assert_eq!(
        common::datasets_below(&s.config.root, "image").len(),
        images
    );
}

#[tokio::test]
async fn multi_stage_shell_add_and_from_override() {
    let Some((s, engine)) = setup("stages").await else {
        return;
    };
    let tar = s.tarball(
        "payload.tar.gz",
        "gz",
        &[("pkg/", b"", 0o755), ("pkg/file", b"packed\n", 0o644)],
    );
    let df = "FROM bb AS builder
RUN echo built > /artifact
FROM bb AS unused
RUN exit 1
FROM builder AS second
RUN echo more >> /artifact
FROM bb
SHELL [\"/bin/sh\", \"-ec\"]
COPY --from=second /artifact /from-stage
COPY --from=bb /srv/seed.txt /from-image
ADD payload.tar.gz /unpacked/
ADD plain.txt /plain
RUN <<EOF
echo heredoc-run
cat /from-stage /from-image /unpacked/pkg/file /plain
EOF
";
    let ctx = context(&s, "stages", df, &[("plain.txt", "plain\n")]);
    std::fs::copy(&tar, ctx.join("payload.tar.gz")).unwrap();
    let (r, log) = build(&engine, &ctx, "multi").await;
    let o = r.unwrap();
    assert_eq!(
        log.output(),
        [
            "heredoc-run",
            "built",
            "more",
            "seeded from the imagepacked",
            "plain"
        ]
    );
    // The unused stage was not built; intermediate stages were removed unless a later
    // stage was cloned from them.
    assert_eq!(o.steps, 2 + 2 + 7);
    let untagged = engine
        .images()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.name.is_empty())
        .count();
    assert_eq!(untagged, 0, "intermediate stages are removed");
    // A target stage, and --from overriding its FROM.
    let req = BuildRequest::new(&ctx)
        .tag("t")
        .target("builder")
        .from_image("multi");
    engine.build(req, Events::none()).await.unwrap();
    let got = run_in(&engine, "t", &["/bin/cat", "/from-stage", "/artifact"]).await;
    assert_eq!(got, "built\nmore\nbuilt\n");
}

#[tokio::test]
async fn quiet_and_cancelled_builds() {
    let Some((s, engine)) = setup("cancel").await else {
        return;
    };
    let ctx = context(&s, "q", "FROM bb\nRUN echo loud\n", &[]);
    let log = Log::default();
    let req = BuildRequest::new(&ctx).quiet(true);
    engine.build(req, log.events()).await.unwrap();
    assert!(log.output().is_empty());
    assert_eq!(log.count(|e| matches!(e, Event::SnapshotCreated { .. })), 1);

    let images = common::datasets_below(&s.config.root, "image");
    let ctx = context(
        &s,
        "cancel",
        "FROM bb\nRUN echo begun; sleep 60\nRUN true\n",
        &[],
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let req = BuildRequest::new(&ctx).tag("cancelled");
    let fut = engine.build(req, Events::channel(tx));
    let waiter = async {
        while let Some(e) = rx.recv().await {
            if matches!(&e, Event::Output { data, .. } if data == "begun") {
                break;
            }
        }
    };
    tokio::select! {
        _ = fut => panic!("the build ended"),
        _ = waiter => {}
    }
    // The build future is dropped: its jail is killed and its dataset removed.
    let mut left = Vec::new();
    for _ in 0..300 {
        left = common::datasets_below(&s.config.root, "image");
        if left == images {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, images);
    assert!(engine.image("cancelled:failed").await.is_err());
    let (_, repairs) = Engine::open_with(s.config.clone(), Events::none())
        .await
        .unwrap();
    assert!(repairs.is_empty(), "{repairs:?}");
}

/// The other process of the tests below: builds the context named by KLEENE_TEST_CHILD.
#[tokio::test]
async fn child_entry() {
    let Ok(what) = std::env::var("KLEENE_TEST_CHILD") else {
        return;
    };
    let (root, ctx) = what.split_once(':').unwrap();
    let s = common::scratch_at(DatasetName::new(root).unwrap(), false);
    let engine = Engine::open(s.config.clone()).await.unwrap();
    let req = BuildRequest::new(ctx).tag("twice");
    engine.build(req, Events::none()).await.unwrap();
}

fn child(s: &common::Scratch, ctx: &Path, failpoint: Option<&str>) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(
            "KLEENE_TEST_CHILD",
            format!("{}:{}", s.config.root, ctx.display()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(p) = failpoint {
        cmd.env("KLEENE_FAILPOINT", p);
    }
    cmd.spawn().unwrap()
}

#[tokio::test]
async fn two_builds_at_once_and_crashes() {
    let Some((s, engine)) = setup("procs").await else {
        return;
    };
    let ctx = context(
        &s,
        "twice",
        "FROM bb\nRUN echo one > /one\nCOPY Dockerfile /\nRUN cat /one\n",
        &[],
    );
    let children: Vec<_> = (0..2).map(|_| child(&s, &ctx, None)).collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let images = engine.images().await.unwrap();
    assert_eq!(images.len(), 3, "bb and two builds");
    assert_eq!(
        images
            .iter()
            .filter(|i| i.nametag() == "twice:latest")
            .count(),
        1
    );
    let before = common::datasets_below(&s.config.root, "image");
    // A build killed midway leaves nothing after open.
    for point in [
        "build-after-row",
        "build-after-clone",
        "build-after-snapshot",
        "build-before-finish",
    ] {
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM bb\nRUN echo {point} > /x\nRUN true\n"),
        )
        .unwrap();
        let status = child(&s, &ctx, Some(point)).wait().unwrap();
        assert!(!status.success(), "{point}: the child should have died");
        let (engine, repairs) = Engine::open_with(s.config.clone(), Events::none())
            .await
            .unwrap();
        assert!(!repairs.is_empty(), "{point}: nothing repaired");
        assert_eq!(
            common::datasets_below(&s.config.root, "image"),
            before,
            "{point}"
        );
        assert_eq!(engine.images().await.unwrap().len(), 3, "{point}");
    }
}

/// A one-file HTTP server on loopback: `GET /files/payload.txt` answers `body`, anything
/// else 404. Serves until the test process ends.
fn http_server(body: &'static str) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // The rest of the head, up to the blank line.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let (status, content) = if request.starts_with("GET /files/payload.txt ") {
                ("200 OK", body)
            } else {
                ("404 Not Found", "not found\n")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{content}",
                content.len()
            );
        }
    });
    port
}

#[tokio::test]
async fn add_from_http_with_checksum() {
    use sha2::{Digest, Sha256};
    let Some((s, engine)) = setup("addhttp").await else {
        return;
    };
    let body = "fetched over http\n";
    let port = http_server(body);
    let sum: String = Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let url = format!("http://127.0.0.1:{port}/files/payload.txt");
    let df = format!(
        "FROM bb\nADD --checksum=sha256:{sum} {url} /srv/\nADD {url} /srv/renamed.txt\nRUN cat /srv/payload.txt /srv/renamed.txt\n"
    );
    let ctx = context(&s, "addhttp", &df, &[]);
    let (r, log) = build(&engine, &ctx, "fetched").await;
    r.unwrap();
    assert_eq!(log.output(), ["fetched over http", "fetched over http"]);

    // A checksum that does not match refuses the file, naming the URL and both sums.
    let wrong = "0".repeat(64);
    let df = format!("FROM bb\nADD --checksum=sha256:{wrong} {url} /srv/\n");
    let ctx = context(&s, "addhttp-bad", &df, &[]);
    let (r, _) = build(&engine, &ctx, "badsum").await;
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains(&url) && e.contains(&sum) && e.contains(&wrong),
        "{e}"
    );

    // A missing file: the server's answer is the error.
    let df = format!("FROM bb\nADD http://127.0.0.1:{port}/files/missing.txt /srv/\n");
    let ctx = context(&s, "addhttp-404", &df, &[]);
    let (r, _) = build(&engine, &ctx, "missing").await;
    let e = r.unwrap_err().to_string();
    assert!(e.contains("404"), "{e}");
}

#[tokio::test]
async fn a_service_started_by_one_run_is_there_for_the_next() {
    let Some((s, engine)) = setup("service").await else {
        return;
    };
    // As in Kleene's snapshots guide (`RUN service postgresql start`, then `RUN psql`):
    // every RUN of a stage runs in one build container, so what a RUN leaves running in
    // the background serves the next. Docker would fail the second RUN.
    let df = "FROM bb\n\
RUN mkdir -p /srv && (sleep 317 & echo $! > /srv/daemon.pid) && echo service started\n\
RUN kill -0 $(cat /srv/daemon.pid) && echo still running > /srv/seen\n\
RUN echo last\n";
    let ctx = context(&s, "service", df, &[]);
    let started = std::time::Instant::now();
    let (r, log) = build(&engine, &ctx, "service").await;
    let out = r.unwrap_or_else(|e| panic!("{e}: {:?}", log.output()));
    // The background process held the first RUN's output open: the step did not wait
    // for it, and the build ended it with the stage (well before its 300 s).
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let output = log.output();
    assert!(
        output.contains(&"service started".to_string()),
        "{output:?}"
    );
    assert!(output.contains(&"last".to_string()), "{output:?}");
    let seen = run_in(&engine, out.image.id.as_str(), &["/bin/cat", "/srv/seen"]).await;
    assert_eq!(seen, "still running\n");
    // Nothing of the build container runs on (its own duration: other tests run
    // `sleep 300` in containers of theirs). A killed process may take a moment to be
    // reaped on a loaded machine; one that outlives the build runs for minutes.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ps = Command::new("pgrep")
            .args(["-f", "^sleep 317$"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&ps.stdout).trim().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the build's background process outlived the build"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn build_mounts_are_seen_by_runs_and_kept_out_of_the_image() {
    let Some((s, engine)) = setup("mounts").await else {
        return;
    };
    let host = s.dir.path().join("host-src");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("input"), "from the host\n").unwrap();
    let vol = engine.create_volume("buildvol").await.unwrap();
    let df = "FROM bb\n\
RUN cat /src/input > /out && echo written > /vol/by-build\n\
RUN touch /src/refused 2>/dev/null && echo writable > /out2 || echo read-only > /out2\n";
    let ctx = context(&s, "mounts", df, &[]);
    let req = BuildRequest::new(&ctx)
        .tag("mounted")
        .mount(kleene_core::MountSpec::parse(&format!("{}:/src:ro", host.display())).unwrap())
        .mount(kleene_core::MountSpec::parse("buildvol:/vol").unwrap());
    let log = Log::default();
    let out = engine
        .build(req, log.events())
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", log.output()));
    let id = out.image.id.to_string();
    assert_eq!(
        run_in(&engine, &id, &["/bin/cat", "/out"]).await,
        "from the host\n"
    );
    assert_eq!(
        run_in(&engine, &id, &["/bin/cat", "/out2"]).await,
        "read-only\n"
    );
    // What the build wrote into the volume is in the volume, not in the image.
    assert_eq!(
        std::fs::read_to_string(vol.mountpoint.join("by-build")).unwrap(),
        "written\n"
    );
    assert_eq!(
        run_in(&engine, &id, &["/bin/sh", "-c", "ls -A /vol; ls -A /src"]).await,
        ""
    );
    assert!(!host.join("refused").exists());
    // A missing host path is refused before any work.
    let req = BuildRequest::new(&ctx)
        .tag("nope")
        .mount(kleene_core::MountSpec::parse("/no/such/dir:/x").unwrap());
    let err = engine.build(req, Events::none()).await.unwrap_err();
    assert!(err.to_string().contains("/no/such/dir"), "{err}");
}
