//! The unmodified PyPI klee client (kleene-cli 0.1.0rc4) against kleened, over the Unix
//! socket: the commands of this slice, as a Kleene user types them.

#![allow(clippy::unwrap_used)]

mod common;

use common::texts;

#[test]
fn klee_from_pypi_drives_kleened() {
    let Some(d) = common::daemon("klee") else {
        return;
    };
    let Some(klee) = common::klee_program() else {
        return;
    };
    let run = |args: &[&str]| {
        let out = common::klee(&klee, &d, args);
        let (o, e) = texts(&out);
        assert!(!e.contains("Traceback"), "klee {args:?} crashed: {e}");
        (out.status.code(), o, e)
    };
    let ok = |args: &[&str]| {
        let (code, o, e) = run(args);
        assert_eq!(code, Some(0), "klee {args:?}: {o}{e}");
        o
    };

    // Empty lists.
    let o = ok(&["lsi"]);
    assert!(
        o.contains("ID") && o.contains("NAME") && o.contains("TAG"),
        "{o}"
    );
    let o = ok(&["lsv"]);
    assert!(o.contains("VOLUME NAME"), "{o}");
    let o = ok(&["lsc", "-a"]);
    assert!(o.contains("CONTAINER ID"), "{o}");

    // Volumes.
    assert_eq!(ok(&["volume", "create", "vol1"]).trim(), "vol1");
    assert!(ok(&["lsv"]).contains("vol1"));
    let o = ok(&["isv", "vol1"]);
    let v: serde_json::Value = serde_json::from_str(&o).unwrap();
    assert_eq!(v["volume"]["name"], "vol1");
    assert_eq!(ok(&["rmv", "vol1"]).trim(), "vol1");
    // klee's rmv prints the message and exits 0 (klee's own behaviour).
    let (_, o, _) = run(&["rmv", "vol1"]);
    assert!(o.contains("no such volume"), "{o}");
    ok(&["volume", "create", "vol2"]);
    assert_eq!(ok(&["volume", "prune", "-f"]).trim(), "vol2");

    // Images, made through kleene-core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = rt.block_on(d.engine());
    let image = rt.block_on(d.busybox_image(&engine, "busybox"));
    let iid = image.id.to_string();
    let o = ok(&["lsi"]);
    assert!(
        o.contains(&iid) && o.contains("busybox") && o.contains("latest"),
        "{o}"
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&["isi", "busybox"])).unwrap();
    assert_eq!(v["id"], iid.as_str());
    let (_, o, _) = run(&["isi", "nope"]);
    assert!(o.contains("no such image: nope"), "{o}");
    // A tag renames the image, as in Kleene.
    assert_eq!(ok(&["image", "tag", &iid[..6], "bb:2"]).trim(), iid);
    let o = ok(&["lsi"]);
    assert!(
        o.contains("bb") && o.contains('2') && !o.contains("busybox"),
        "{o}"
    );

    // Containers: create, list, inspect, rename, update, remove.
    let cid = ok(&[
        "container",
        "create",
        "--name",
        "web",
        "-m",
        "data:/data",
        "bb:2",
        "/bin/sleep",
        "60",
    ])
    .trim()
    .to_string();
    assert_eq!(cid.len(), 12, "{cid}");
    let o = ok(&["lsc", "-a"]);
    assert!(
        o.contains(&cid) && o.contains("web") && o.contains("/bin/sleep 60"),
        "{o}"
    );
    assert!(o.contains("stopped"), "{o}");
    assert!(!ok(&["lsc"]).contains(&cid));
    let v: serde_json::Value = serde_json::from_str(&ok(&["isc", "web"])).unwrap();
    assert_eq!(v["container"]["id"], cid.as_str());
    assert_eq!(v["container_mountpoints"][0]["source"], "data");
    let v: serde_json::Value = serde_json::from_str(&ok(&["isv", "data"])).unwrap();
    assert_eq!(v["mountpoints"][0]["container_id"], cid.as_str());
    assert_eq!(ok(&["container", "rename", "web", "web2"]).trim(), cid);
    assert_eq!(
        ok(&["container", "update", "-e", "X=1", "web2"]).trim(),
        cid
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&["isc", &cid[..4]])).unwrap();
    assert_eq!(v["container"]["name"], "web2");
    assert_eq!(v["container"]["env"], serde_json::json!(["X=1"]));
    let (code, o, _) = run(&["create", "nope"]);
    assert_eq!(code, Some(1));
    assert!(o.contains("no such image"), "{o}");

    // In use: the image cannot go.
    let (code, o, _) = run(&["rmi", "bb:2"]);
    assert_eq!(code, Some(1));
    assert!(o.contains("in use"), "{o}");
    assert_eq!(ok(&["rmc", "web2"]).trim(), cid);
    let (code, o, _) = run(&["rmc", "web2"]);
    assert_eq!(code, Some(1));
    assert!(o.contains("no such container"), "{o}");

    // Prunes.
    let c2 = ok(&["create", "bb:2", "/bin/true"]).trim().to_string();
    assert_eq!(ok(&["container", "prune", "-f"]).trim(), c2);
    assert_eq!(ok(&["volume", "prune", "-f"]).trim(), "data");
    assert_eq!(ok(&["image", "prune", "-f"]).trim(), "");
    assert_eq!(ok(&["image", "prune", "-a", "-f"]).trim(), iid);
    assert!(!ok(&["lsi"]).contains(&iid));
    let (code, o, _) = run(&["create", "--name", "gone", "bb:2", "true"]);
    assert_eq!(code, Some(1));
    assert!(o.contains("no such image"), "{o}");
}

/// The WebSocket commands: image create, build (build-args, transcript, snapshots, a
/// failed build kept as `name:failed`), run and exec with their exit codes, start/stop.
#[test]
fn klee_from_pypi_creates_builds_runs_and_execs() {
    let Some(d) = common::daemon("kleews") else {
        return;
    };
    let Some(klee) = common::klee_program() else {
        return;
    };
    let run = |args: &[&str]| {
        let out = common::klee(&klee, &d, args);
        let (o, e) = texts(&out);
        assert!(!e.contains("Traceback"), "klee {args:?} crashed: {e}");
        assert!(
            !o.contains("unexpected") && !e.contains("unexpected"),
            "klee {args:?}: {o}{e}\n{}",
            d.log()
        );
        (out.status.code(), o, e)
    };
    let ok = |args: &[&str]| {
        let (code, o, e) = run(args);
        assert_eq!(code, Some(0), "klee {args:?}: {o}{e}\n{}", d.log());
        o
    };

    // A base image from a file:// URL.
    let tar = d.dir.path().join("busybox.tar");
    common::write_busybox_rootfs(&tar);
    let url = format!("file://{}", tar.display());
    let o = ok(&["image", "create", "-t", "bb:1", "fetch", &url]);
    assert!(o.contains("image created"), "{o}");
    let iid = o.trim().lines().last().unwrap().trim().to_string();
    assert_eq!(iid.len(), 12, "{o}");
    assert!(ok(&["lsi"]).contains(&iid));
    let (code, o, _) = run(&["image", "create", "fetch", "file:///nonexistent.tar"]);
    assert_eq!(
        code,
        Some(0),
        "klee prints kleened's error and exits 0: {o}"
    );
    assert!(o.contains("nonexistent.tar"), "{o}");

    // run: the command's output, then kleened's closing line with the exit code.
    let o = ok(&["run", "bb:1", "/bin/echo", "hello", "from", "kleened"]);
    assert!(o.contains("created execution instance"), "{o}");
    assert!(o.contains("hello from kleened"), "{o}");
    assert!(
        o.contains("and its container exited with exit-code 0"),
        "{o}"
    );
    let o = ok(&["run", "bb:1", "/bin/sh", "-c", "echo err >&2; exit 3"]);
    assert!(o.contains("err"), "{o}");
    assert!(o.contains("exited with exit-code 3"), "{o}");

    // A detached container, exec into it, stop it.
    let o = ok(&["run", "-d", "--name", "sleeper", "bb:1", "/bin/sleep", "60"]);
    let cid = o.lines().next().unwrap().trim().to_string();
    let o = ok(&["lsc"]);
    assert!(o.contains(&cid) && o.contains("running"), "{o}");
    let o = ok(&["exec", "sleeper", "/bin/sh", "-c", "echo inside; exit 4"]);
    assert!(o.contains("inside"), "{o}");
    assert!(o.contains("has exited with exit-code 4"), "{o}");
    let o = ok(&[
        "exec",
        "-e",
        "GREETING=hi",
        "sleeper",
        "/bin/sh",
        "-c",
        "echo $GREETING",
    ]);
    assert!(o.contains("hi\n"), "{o}");
    let o = ok(&["exec", "-d", "sleeper", "/bin/sleep", "1"]);
    assert!(o.contains("created execution instance"), "{o}");
    assert!(!o.contains("error"), "{o}");
    assert_eq!(ok(&["stop", "sleeper"]).trim(), cid);
    let o = ok(&["lsc", "-a"]);
    assert!(o.contains(&cid) && o.contains("stopped"), "{o}");
    // exec starts a stopped container with the exec's command, for that run only.
    let o = ok(&["exec", "sleeper", "/bin/echo", "via-exec"]);
    assert!(o.contains("via-exec"), "{o}");
    assert!(
        o.contains("and its container exited with exit-code 0"),
        "{o}"
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&["isc", "sleeper"])).unwrap();
    assert_eq!(
        v["container"]["cmd"],
        serde_json::json!(["/bin/sleep", "60"])
    );
    // start attaches to the container's own command again.
    let o = ok(&["container", "update", "sleeper", "/bin/echo", "again"]);
    assert_eq!(o.trim(), cid);
    let o = ok(&["start", "sleeper"]);
    assert!(o.contains("again"), "{o}");
    ok(&["rmc", "sleeper"]);

    // Unknown names.
    let (_, o, _) = run(&["run", "nope:1"]);
    assert!(o.contains("no such image"), "{o}");
    let (_, o, _) = run(&["exec", "nope", "/bin/true"]);
    assert!(o.contains("no such container"), "{o}");
    let (_, o, _) = run(&["stop", "nope"]);
    assert!(o.contains("no such container"), "{o}");

    // A build with build-args: the transcript as klee prints it.
    let ctx = d.dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb:1\nARG WHO=nobody\nRUN echo \"hello $WHO\"\nCOPY file /file\nCMD [\"/bin/cat\", \"/file\"]\n",
    )
    .unwrap();
    std::fs::write(ctx.join("file"), "copied\n").unwrap();
    let ctx_s = ctx.to_str().unwrap();
    let o = ok(&["build", "-t", "app:1", "--build-arg", "WHO=klee", ctx_s]);
    assert!(o.contains("Started to build image with ID"), "{o}");
    assert!(o.contains("Step 1/5 : FROM bb:1"), "{o}");
    assert!(o.contains("Step 3/5 : RUN echo \"hello $WHO\""), "{o}");
    assert!(o.contains("hello klee"), "{o}");
    assert!(o.contains("--> Snapshot created: @"), "{o}");
    assert!(o.contains("image created"), "{o}");
    let app = o.trim().lines().last().unwrap().trim().to_string();
    let o = ok(&["lsi"]);
    assert!(o.contains(&app) && o.contains("app"), "{o}");
    let o = ok(&["run", "app:1"]);
    assert!(o.contains("copied"), "{o}");

    // A failed build: klee's last line names the snapshot; the image is kept as
    // app:failed.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb:1\nRUN echo one > /one\nRUN false\n",
    )
    .unwrap();
    let (code, o, _) = run(&["build", "-t", "app:2", ctx_s]);
    assert_eq!(code, Some(1), "{o}");
    assert!(
        o.contains("command '/bin/sh -c false' returned a non-zero code: 1"),
        "{o}"
    );
    assert!(o.contains("Most recent snapshot is @"), "{o}");
    let o = ok(&["lsi"]);
    assert!(o.contains("failed"), "{o}");
    // A Dockerfile error: the error with its place.
    std::fs::write(ctx.join("Dockerfile"), "FROM bb:1\nFROBNICATE x\n").unwrap();
    let (code, o, _) = run(&["build", ctx_s]);
    assert_eq!(code, Some(1), "{o}");
    assert!(o.contains("Dockerfile:2"), "{o}");

    // Nothing is left running or half-made.
    let o = ok(&["lsc", "-a"]);
    assert!(!o.contains("running"), "{o}");
}
