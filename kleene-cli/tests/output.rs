//! What `klee` prints, line for line as klee does: everything on stdout (errors and
//! click's `Aborted!` on stderr), image creation's and builds' transcripts, rich's
//! tables, kleened's JSON shapes, click's prompts. The tests that need ZFS use a root of
//! their own on `KLEENE_TEST_POOL` (skipped without one, failing with
//! `KLEENE_REQUIRE_ZFS=1`).

#![allow(clippy::unwrap_used)]

mod common;

use common::{klee, texts, Scratch};

const ASK: &str = "Are you sure you want to continue? [y/N]: ";

// ---- no ZFS needed ----

#[test]
fn network_help_is_claps() {
    for args in [
        &["network", "--help"][..],
        &["network", "create", "--help"],
        &["network", "connect", "-h"],
        &["lsn", "--help"],
    ] {
        let out = klee().args(args).output().unwrap();
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(stdout.contains("Usage: klee "), "{args:?}: {stdout}");
    }
}

/// A prune refused asks nothing of the engine: no pool needed.
#[test]
fn prune_refusals_abort_like_click() {
    for (object, warning) in [
        ("image", "WARNING! This will remove all unused images."),
        (
            "container",
            "WARNING! This will remove all stopped containers.",
        ),
        ("volume", "WARNING! This will remove all unused volumes."),
        ("network", "WARNING! This will remove all unused networks."),
    ] {
        for answer in ["n\n", "N\n", "no\n", "\n", ""] {
            klee()
                .args(["--root", "nosuchpool/kleene", object, "prune"])
                .write_stdin(answer)
                .assert()
                .code(1)
                .stdout(format!("{warning}\n{ASK}"))
                .stderr("Aborted!\n");
        }
        klee()
            .args(["--root", "nosuchpool/kleene", object, "prune"])
            .write_stdin("maybe\nn\n")
            .assert()
            .code(1)
            .stdout(format!("{warning}\n{ASK}Error: invalid input\n{ASK}"))
            .stderr("Aborted!\n");
    }
}

// ---- on a pool ----

macro_rules! scratch_or_skip {
    () => {
        match common::scratch() {
            Some(s) => s,
            None => return,
        }
    };
}

fn is_id(s: &str) -> bool {
    s.len() == 12
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// `klee image create -t bb fetch <busybox tarball>`: stdout (checked to end in klee's
/// closing lines) and the id.
fn create_busybox(s: &Scratch) -> (String, String) {
    let tar = s.busybox_rootfs();
    let url = format!("file://{}", tar.display());
    let out = s
        .klee(["image", "create", "-t", "bb", "fetch", &url])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stderr, "", "klee prints its transcript on stdout");
    let id = stdout.lines().last().unwrap_or_default().to_string();
    assert!(is_id(&id), "{stdout}");
    (stdout, id)
}

#[test]
fn image_create_prints_kleeneds_transcript() {
    let s = scratch_or_skip!();
    let (stdout, id) = create_busybox(&s);
    let lines: Vec<&str> = stdout.lines().collect();
    let n = lines.len();
    assert!(n >= 7, "{stdout}");
    assert_eq!(
        lines[n - 4..],
        [
            "succesfully extracted binaries - creating image",
            "",
            "image created",
            id.as_str()
        ],
        "{stdout}"
    );
    let fetched = lines
        .iter()
        .position(|l| *l == "succesfully fetched base system.")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(
        lines[fetched + 1],
        "Unpacking contents and creating image..."
    );
    assert!(
        lines[..fetched]
            .iter()
            .all(|l| l.starts_with("downloaded ")),
        "{stdout}"
    );
    let extracted = &lines[fetched + 2..n - 4];
    assert!(!extracted.is_empty(), "{stdout}");
    for l in extracted {
        assert!(
            l.starts_with("extracted ") && l.ends_with(" files..."),
            "{stdout}"
        );
    }
}

/// A row's last cell (the age), its trailing padding removed.
fn age_of(row: &str, from: usize) -> String {
    row[from..].trim().to_string()
}

#[test]
fn tables_and_inspections_are_klees() {
    let s = scratch_or_skip!();
    let (_, image) = create_busybox(&s);

    // lsi: rich's layout, trailing padding included.
    let lsi = s.ok(&["lsi"]);
    let lines: Vec<&str> = lsi.lines().collect();
    assert_eq!(lines.len(), 3, "{lsi}");
    let age = age_of(lines[2], 30);
    let w = age.chars().count().max(7);
    assert_eq!(
        lines[0],
        format!(" ID             NAME   TAG      {:<w$} ", "CREATED")
    );
    assert_eq!(lines[1], "─".repeat(14 + 1 + 6 + 1 + 8 + 1 + w + 2));
    assert_eq!(lines[2], format!(" {image}   bb     latest   {age:<w$} "));
    let simple = s.ok(&["--theme", "simple", "lsi"]);
    assert_eq!(
        simple.lines().nth(1).unwrap(),
        format!("--------------+------+--------+{}", "-".repeat(w + 2))
    );

    // lsc: CONTAINER ID at least 13 wide, AUTORUN centred.
    s.ok(&["volume", "create", "v1"]);
    let cid = s
        .ok(&[
            "create", "--name", "web", "-m", "v1:/app", "bb", "echo", "hi",
        ])
        .trim()
        .to_string();
    assert!(is_id(&cid), "{cid}");
    let lsc = s.ok(&["lsc", "-a"]);
    let lines: Vec<&str> = lsc.lines().collect();
    assert_eq!(lines.len(), 3, "{lsc}");
    let rest = &lines[2][46..];
    let age = rest[..rest.find("   ").unwrap()].to_string();
    let w = age.chars().count().max(7);
    assert_eq!(
        lines[0],
        format!(
            " CONTAINER ID    NAME   IMAGE       COMMAND   {:<w$}   AUTORUN   STATUS    JID ",
            "CREATED"
        ),
        "{lsc}"
    );
    assert_eq!(
        lines[2],
        format!(" {cid}    web    bb:latest   echo hi   {age:<w$}     no      stopped       "),
        "{lsc}"
    );
    // Running ones only without -a: just the header and the rule.
    assert_eq!(s.ok(&["lsc"]).lines().count(), 2);

    // lsv
    let lsv = s.ok(&["lsv"]);
    let lines: Vec<&str> = lsv.lines().collect();
    let age = age_of(lines[2], 15);
    let w = age.chars().count().max(7);
    assert_eq!(lines[0], format!(" VOLUME NAME   {:<w$} ", "CREATED"));
    assert_eq!(lines[2], format!(" v1            {age:<w$} "));

    // container inspect: kleened's ContainerInspect, keys sorted, two-space indents.
    let text = s.ok(&["isc", "web"]);
    assert!(
        text.starts_with("{\n  \"container\": {\n    \"cmd\": [\n      \"echo\",\n      \"hi\"\n    ],\n    \"created\": \""),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(
        keys(&json),
        ["container", "container_endpoints", "container_mountpoints"]
    );
    assert_eq!(
        keys(&json["container"]),
        [
            "cmd",
            "created",
            "dataset",
            "env",
            "id",
            "image_id",
            "jail_param",
            "name",
            "network_driver",
            "persist",
            "public_ports",
            "restart_policy",
            "running",
            "user"
        ]
    );
    let c = &json["container"];
    assert_eq!(c["id"], cid.as_str());
    assert_eq!(c["image_id"], image.as_str());
    assert_eq!(c["name"], "web");
    assert_eq!(c["running"], false);
    assert_eq!(c["network_driver"], "host");
    assert_eq!(c["dataset"], format!("{}/container/{cid}", s.root).as_str());
    let created = c["created"].as_str().unwrap();
    assert!(
        created.len() == 27 && &created[10..11] == "T" && created.ends_with(".000000Z"),
        "{created}"
    );
    let mount = serde_json::json!({
        "container_id": cid,
        "destination": "/app",
        "read_only": false,
        "source": "v1",
        "type": "volume"
    });
    assert_eq!(json["container_mountpoints"], serde_json::json!([mount]));
    assert_eq!(json["container_endpoints"], serde_json::json!([]));

    // volume inspect
    let json: serde_json::Value = serde_json::from_str(&s.ok(&["isv", "v1"])).unwrap();
    assert_eq!(keys(&json), ["mountpoints", "volume"]);
    assert_eq!(json["mountpoints"], serde_json::json!([mount]));
    assert_eq!(
        keys(&json["volume"]),
        ["created", "dataset", "mountpoint", "name"]
    );

    // image inspect: kleened's Image, with its instructions.
    let json: serde_json::Value = serde_json::from_str(&s.ok(&["isi", "bb"])).unwrap();
    assert_eq!(
        keys(&json),
        [
            "cmd",
            "created",
            "dataset",
            "env",
            "id",
            "instructions",
            "name",
            "tag",
            "user"
        ]
    );
    assert_eq!(json["id"], image.as_str());
    assert_eq!(json["user"], "root");
    let first = &json["instructions"][0];
    assert!(
        first[0].as_str().unwrap().starts_with("FROM fetch file://"),
        "{first}"
    );
    assert_eq!(first[1], "");

    // Prunes: the prompt, then the ids right after it (the answer is not echoed when
    // stdin is no terminal), or an empty line when nothing was removed.
    s.klee(["container", "prune"])
        .write_stdin("y\n")
        .assert()
        .success()
        .stdout(format!(
            "WARNING! This will remove all stopped containers.\n{ASK}{cid}\n"
        ))
        .stderr("");
    s.klee(["volume", "prune", "-f"])
        .assert()
        .success()
        .stdout("v1\n");
    s.klee(["volume", "prune", "-f"])
        .assert()
        .success()
        .stdout("\n");
}

#[test]
fn builds_print_their_transcript_on_stdout() {
    let s = scratch_or_skip!();
    create_busybox(&s);
    let ctx = s.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM bb\nCMD [\"/bin/true\"]\n").unwrap();
    let out = s.klee(["build", "-t", "b"]).arg(&ctx).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stderr, "");
    let lines: Vec<&str> = stdout.lines().collect();
    let id = lines.last().copied().unwrap_or_default();
    assert!(is_id(id), "{stdout}");
    assert_eq!(
        lines,
        [
            format!("Started to build image with ID {id}").as_str(),
            "Step 1/2 : FROM bb",
            "Step 2/2 : CMD [\"/bin/true\"]",
            "",
            "image created",
            id
        ],
        "{stdout}"
    );
}
