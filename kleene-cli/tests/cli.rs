//! `klee` end to end on a real pool: every command, klee's output lines, exit codes and
//! refusals. Each test has its own root dataset (`<pool>/kcl-<pid>-<n>`), destroyed after.

#![allow(clippy::unwrap_used)]

mod common;

use predicates::prelude::*;

use common::{klee, texts};

fn is_id(s: &str) -> bool {
    s.len() == 12
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

// ---- no ZFS needed ----

#[test]
fn usage_errors_exit_2() {
    klee().assert().code(2);
    klee().arg("bogus").assert().code(2);
    klee().arg("run").assert().code(2);
    klee()
        .args(["image", "create", "fetch-nothing"])
        .assert()
        .code(2);
    klee().args(["rmc"]).assert().code(2);
    klee()
        .args(["--theme", "ugly", "lsi"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("ugly"));
}

#[test]
fn bad_network_options_are_refused_exit_2() {
    for (args, what) in [
        (
            &["network", "create", "--type", "wide", "n"][..],
            "invalid network type",
        ),
        (
            &["network", "create", "--subnet", "10.0.0.0/33", "n"],
            "--subnet",
        ),
        (&["run", "--ip", "10.0.0.2", "bb"], "--network"),
        (&["run", "-n", "net", "--ip", "10.0.0.300", "bb"], "--ip"),
        (&["run", "-n", "net", "-p", "0:80", "bb"], "port 0"),
        (&["run", "-n", "net", "-p", "80/sctp", "bb"], "sctp"),
        (&["run", "-l", "bridge", "bb"], "invalid network driver"),
        (&["build", "-l", "vnet", "."], "needs a network"),
        (&["network", "connect", "net"], "CONTAINER"),
    ] {
        klee()
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(what));
    }
}

#[test]
fn unsupported_options_are_refused_exit_2() {
    for (args, what) in [
        (
            &["run", "-d", "--rm", "bb"][..],
            "--rm cannot be used with --detach",
        ),
        (
            &["run", "--restart", "always", "bb"],
            "invalid restart policy",
        ),
        (
            &["container", "update", "--restart", "sometimes", "c"],
            "invalid restart policy",
        ),
        (&["image", "create", "--update", "fetch-auto"], "--update"),
        (&["image", "create", "fetch"], "exactly one SOURCE"),
        (&["image", "create", "fetch-auto", "x"], "takes no SOURCE"),
    ] {
        klee()
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(what));
    }
}

// ---- on a pool ----

#[test]
fn the_root_comes_from_the_flag_the_environment_or_the_config_file() {
    let s = scratch_or_skip!();
    // KLEENE_ROOT
    let env_root = format!("{}-env", s.root);
    klee()
        .env("KLEENE_ROOT", &env_root)
        .arg("lsi")
        .assert()
        .success();
    assert!(s.exists(&format!("{env_root}/image")));
    // the config file
    let cfg_root = format!("{}-cfg", s.root);
    let cfg = s.dir.path().join("kleene.toml");
    std::fs::write(&cfg, format!("root = \"{cfg_root}\"\n")).unwrap();
    klee()
        .arg("--config")
        .arg(&cfg)
        .arg("lsv")
        .assert()
        .success();
    assert!(s.exists(&format!("{cfg_root}/volumes")));
    // --root wins over both
    klee()
        .env("KLEENE_ROOT", &env_root)
        .arg("--config")
        .arg(&cfg)
        .args(["--root", &s.root, "lsc"])
        .assert()
        .success();
    assert!(s.exists(&format!("{}/container", s.root)));
    // a named config file that is missing is an error
    klee()
        .args(["--config", "/nonexistent/kleene.toml", "lsi"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("/nonexistent/kleene.toml"));
    for extra in [env_root, cfg_root] {
        let _ = kleene_core::kleene_zfs::Zfs::open().destroy(
            &kleene_core::kleene_zfs::DatasetName::new(extra.as_str()).unwrap(),
            true,
        );
    }
}

#[test]
fn image_create_ls_inspect_tag_rm() {
    let s = scratch_or_skip!();
    let tar = s.busybox_rootfs();
    let url = format!("file://{}", tar.display());
    let out = s
        .klee(["image", "create", "-t", "bb", "fetch", &url])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    // As klee: the transcript on stdout, the id last.
    let lines: Vec<&str> = stdout.lines().collect();
    let id = *lines.last().unwrap();
    assert!(is_id(id), "{stdout:?}");
    assert_eq!(
        lines[lines.len() - 3..lines.len() - 1],
        ["", "image created"],
        "{stdout}"
    );
    assert!(stdout.contains("extracted "), "{stdout}");

    let table = s.ok(&["lsi"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["ID", "NAME", "TAG", "CREATED"]
    );
    assert!(lines[1].starts_with('─'));
    let row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(row[..3], [id, "bb", "latest"], "{table}");
    assert!(
        lines[2].starts_with(&format!(" {id}   bb     latest   ")),
        "{table}"
    );
    assert!(lines[2].ends_with(" ago "), "{table}");
    let simple = s.ok(&["lsi", "--theme", "simple"]);
    assert!(simple.lines().nth(1).unwrap().starts_with("---"));

    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["image", "ls", "--format", "json"])).unwrap();
    assert_eq!(json[0]["id"], id);
    assert_eq!(json[0]["name"], "bb");
    let inspect: serde_json::Value = serde_json::from_str(&s.ok(&["isi", "bb"])).unwrap();
    assert_eq!(inspect["id"], id);
    let inspect2: serde_json::Value =
        serde_json::from_str(&s.ok(&["image", "inspect", "--format", "json", &id[..6]])).unwrap();
    assert_eq!(inspect, inspect2);

    assert_eq!(s.ok(&["image", "tag", "bb", "other:1"]).trim(), id);
    assert!(s.ok(&["lsi"]).contains(" other   1 "));
    s.klee(["isi", "bb"])
        .assert()
        .code(1)
        .stderr("klee: no such image: bb\n");
    s.klee(["rmi", "nope", "other:1"])
        .assert()
        .code(1)
        .stdout(format!("{id}\n"))
        .stderr("klee: no such image: nope\n");
    assert_eq!(s.ok(&["lsi", "--format", "json"]).trim(), "[]");
}

#[test]
fn image_prune_asks_unless_forced() {
    let s = scratch_or_skip!();
    let tar = s.busybox_rootfs();
    let url = format!("file://{}", tar.display());
    let created = s.ok(&["image", "create", "fetch", &url]);
    let untagged = created.lines().last().unwrap().to_string();
    let tagged = s.busybox_image();
    // As klee (click): the prompt on stdout, "Aborted!" on stderr, exit code 1.
    s.klee(["image", "prune"])
        .write_stdin("n\n")
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "Are you sure you want to continue? [y/N]",
        ))
        .stderr("Aborted!\n");
    assert!(s.ok(&["lsi"]).contains(&untagged));
    s.klee(["image", "prune"])
        .write_stdin("y\n")
        .assert()
        .success()
        .stdout(predicate::str::ends_with(format!("[y/N]: {untagged}\n")));
    assert!(s.ok(&["lsi"]).contains(&tagged));
    s.klee(["image", "prune", "-a", "-f"])
        .assert()
        .success()
        .stdout(format!("{tagged}\n"));
}

#[test]
fn run_prints_klee_lines_and_exits_with_the_containers_code() {
    let s = scratch_or_skip!(containers);
    s.busybox_image();
    let out = s
        .klee(["run", "bb", "sh", "-c", "echo out; echo err >&2; exit 7"])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    // As klee: everything on stdout, a blank line before the exit line.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    let cid = lines[0];
    assert!(is_id(cid), "{stdout}");
    let instance = lines[1]
        .strip_prefix("created execution instance ")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(is_id(instance));
    assert_eq!(lines[2..4], ["out", ""]);
    assert_eq!(
        lines[4],
        format!("executable {instance} and its container exited with exit-code 7")
    );
    assert_eq!(stderr, "err\n");
    // the container stays, stopped
    let all = s.ok(&["lsc", "-a"]);
    assert!(all.contains(cid) && all.contains("stopped"), "{all}");
    assert!(!s.ok(&["lsc"]).contains(cid));
}

#[test]
fn run_rm_removes_the_container_and_run_i_passes_stdin() {
    let s = scratch_or_skip!(containers);
    s.busybox_image();
    s.klee(["run", "--rm", "bb", "true"]).assert().success();
    assert_eq!(s.ok(&["lsc", "-a", "--format", "json"]).trim(), "[]");
    // without -i the container reads nothing
    s.klee(["run", "--rm", "bb", "cat"])
        .write_stdin("ignored\n")
        .assert()
        .success()
        .stdout(predicate::str::contains("ignored").not());
    let out = s
        .klee(["run", "--rm", "-i", "bb", "wc", "-c"])
        .write_stdin("twelve bytes")
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    // The id, klee's instance line, then the container's output.
    assert_eq!(stdout.lines().nth(2).map(str::trim), Some("12"), "{stdout}");
    // env, user and workdir reach the command
    let out = s.ok(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi",
        "-w",
        "/srv",
        "-u",
        "root",
        "bb",
        "sh",
        "-c",
        "echo $GREETING $(pwd) $(id -u)",
    ]);
    assert_eq!(out.lines().nth(2), Some("hi /srv 0"), "{out}");
}

#[test]
fn klee_alone_runs_containers_it_is_its_own_monitor() {
    let s = scratch_or_skip!(containers);
    s.busybox_image();
    // klee as `cargo install` leaves it: alone in a directory, no kleene-monitor beside it,
    // above it or on PATH, and no environment pointing anywhere.
    let bin = s.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let klee = bin.join("klee");
    std::fs::copy(common::klee_path(), &klee).unwrap();
    let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    for dir in std::env::split_paths(path).chain([bin.clone(), s.dir.path().to_path_buf()]) {
        assert!(!dir.join("kleene-monitor").exists(), "{}", dir.display());
    }
    let run = |args: &[&str]| {
        assert_cmd::Command::new(&klee)
            .env_clear()
            .env("PATH", path)
            .env("KLEENE_MONITOR", "/bin/false")
            .arg("--root")
            .arg(&s.root)
            .args(args)
            .timeout(common::TIMEOUT)
            .output()
            .unwrap()
    };
    let out = run(&["run", "--rm", "bb", "echo", "hi"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().nth(2), Some("hi"), "{stdout}");
    // A detached container's monitor is klee too, and outlives the klee that started it.
    let out = run(&["run", "-d", "bb", "sleep", "60"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let cid = stdout.lines().next().unwrap_or_default();
    let ls = s.ok(&["lsc"]);
    assert!(ls.contains(cid), "{ls}");
    s.klee(["rmc", "-f", cid]).assert().success();
    // Started by hand, the monitor says what it is.
    let out = assert_cmd::Command::new(&klee)
        .arg("kleene-monitor")
        .output()
        .unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("it is not a command"), "{stderr}");
    // Its stderr a pipe nobody reads any more (an attached klee that was killed): it
    // says nothing and ends as it would, no panic (101).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = std::process::Command::new(&klee)
        .arg("kleene-monitor")
        .stdin(std::process::Stdio::null())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}

#[test]
fn detached_containers_stop_restart_exec_logs_rm() {
    let s = scratch_or_skip!(containers);
    s.busybox_image();
    let out = s
        .klee([
            "run",
            "-d",
            "--name",
            "web",
            "bb",
            "sh",
            "-c",
            "echo started; exec sleep 300",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let (cid, rest) = stdout.split_once('\n').unwrap();
    let cid = cid.to_string();
    assert!(is_id(&cid), "{stdout}");
    assert!(rest.starts_with("created execution instance "), "{stdout}");
    assert!(!stdout.contains("exited"), "{stdout}");

    let table = s.ok(&["lsc"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "CONTAINER ID",
            "NAME",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "AUTORUN",
            "STATUS",
            "JID"
        ]
    );
    let row = table.lines().nth(2).unwrap();
    assert!(
        row.contains(&cid) && row.contains(" web ") && row.contains(" bb:latest "),
        "{table}"
    );
    assert!(row.contains(" running "), "{table}");
    assert!(
        row.trim_end()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<i32>()
            .is_ok(),
        "a JID: {table}"
    );

    // exec: its exit code, klee's lines, env
    let out = s
        .klee(["exec", "web", "sh", "-c", "exit 5"])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    let instance = stdout
        .lines()
        .find_map(|l| l.strip_prefix("created execution instance "))
        .unwrap();
    assert!(stdout.ends_with(&format!("\n\n{instance} has exited with exit-code 5\n")));
    s.klee([
        "container",
        "exec",
        "-e",
        "A=1",
        "web",
        "sh",
        "-c",
        "echo $A",
    ])
    .assert()
    .success()
    .stdout(predicate::str::contains("\n1\n\n"));
    s.klee(["exec", "-d", "web", "touch", "/tmp/detached"])
        .assert()
        .success();

    // logs of a detached container
    let mut logs = String::new();
    for _ in 0..50 {
        logs = s.ok(&["logs", "web"]);
        if logs.contains("started") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(logs, "started\n");

    // rm refuses a running container; stop, restart, start
    s.klee(["rmc", "web"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("container web is running"));
    s.klee(["stop", "--timeout", "1", "web"])
        .assert()
        .success()
        .stdout(format!("{cid}\n"));
    assert!(!s.ok(&["lsc"]).contains(&cid));
    assert!(s.ok(&["lsc", "-a"]).contains(" stopped"));
    s.klee(["stop", "web"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("container web is not running"));
    s.klee(["restart", "web"])
        .assert()
        .success()
        .stdout(format!("{cid}\n"));
    assert!(s.ok(&["lsc"]).contains(" running "));
    s.klee(["container", "restart", "--timeout", "1", "web"])
        .assert()
        .success();
    s.klee(["container", "stop", "--timeout", "1", "web"])
        .assert()
        .success();
    s.klee(["start", "-d", "web"])
        .assert()
        .success()
        .stdout(format!("{cid}\n"));
    s.klee(["rmc", "-f", "web"])
        .assert()
        .success()
        .stdout(format!("{cid}\n"));
    assert_eq!(s.ok(&["lsc", "-a", "--format", "json"]).trim(), "[]");
}

#[test]
fn create_then_start_attached_or_several_detached() {
    let s = scratch_or_skip!(containers);
    s.busybox_image();
    let c1 = s.ok(&["create", "--name", "c1", "bb", "echo", "hi"]);
    assert!(is_id(c1.trim()));
    let out = s.klee(["container", "start", "c1"]).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let instance = stdout
        .lines()
        .find_map(|l| l.strip_prefix("created execution instance "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(
        stdout,
        format!(
            "created execution instance {instance}\nhi\n\nexecutable {instance} and its container exited with exit-code 0\n"
        )
    );
    let c2 = s.ok(&["container", "create", "--name", "c2", "bb", "sleep", "30"]);
    let c3 = s.ok(&["create", "--name", "c3", "bb", "sleep", "30"]);
    // As klee: several containers cannot all be attached to.
    s.klee(["start", "c2", "c3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "only one container can be started when attaching to container I/O",
        ));
    s.klee(["start", "-d", "c2", "c3", "nope"])
        .assert()
        .code(1)
        .stdout(format!("{}{}", c2, c3))
        .stderr("klee: no such container: nope\n");
    let running = s.ok(&["lsc", "--format", "json"]);
    let running: Vec<serde_json::Value> = serde_json::from_str(&running).unwrap();
    assert_eq!(running.len(), 2);
    s.klee(["stop", "--timeout", "0", "c2", "c3"])
        .assert()
        .success();
}

#[test]
fn rename_update_inspect_and_prune_containers() {
    let s = scratch_or_skip!(containers);
    s.busybox_image();
    let cid = s
        .ok(&["create", "--name", "old", "bb", "true"])
        .trim()
        .to_string();
    assert_eq!(s.ok(&["container", "rename", "old", "mid"]).trim(), cid);
    assert_eq!(
        s.ok(&["container", "update", "--name", "new", "mid"])
            .trim(),
        cid
    );
    // As klee: -P and --restart are set by every update; AUTORUN shows on-startup.
    assert_eq!(
        s.ok(&[
            "container",
            "update",
            "-P",
            "--restart",
            "on-startup",
            "new"
        ])
        .trim(),
        cid
    );
    let ls = s.ok(&["lsc", "-a"]);
    let row = ls.lines().find(|l| l.contains(" new ")).unwrap();
    assert!(row.contains(" yes "), "{ls}");
    s.klee(["container", "prune", "-f"]).assert().success();
    assert!(
        s.ok(&["lsc", "-a"]).contains(" new "),
        "prune removed a persistent container"
    );
    s.ok(&["container", "update", "new"]);
    // kleened's shape: the container, its endpoints and mount points.
    let inspect: serde_json::Value = serde_json::from_str(&s.ok(&["isc", "new"])).unwrap();
    assert_eq!(inspect["container"]["id"], cid.as_str());
    assert_eq!(inspect["container"]["name"], "new");
    assert_eq!(inspect["container"]["cmd"][0], "true");
    let again: serde_json::Value =
        serde_json::from_str(&s.ok(&["container", "inspect", &cid[..5]])).unwrap();
    assert_eq!(inspect, again);
    s.klee(["isc", "old"])
        .assert()
        .code(1)
        .stderr("klee: no such container: old\n");
    s.klee(["container", "rename", "new", "bad name"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("bad name"));

    s.klee(["container", "prune"])
        .write_stdin("\n")
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "WARNING! This will remove all stopped containers.",
        ))
        .stderr("Aborted!\n");
    assert!(s.ok(&["lsc", "-a"]).contains(&cid));
    s.klee(["container", "prune", "-f"])
        .assert()
        .success()
        .stdout(format!("{cid}\n"));
    // the image is free again
    s.klee(["image", "rm", "bb"]).assert().success();
}

#[test]
fn volumes_create_ls_inspect_rm_prune() {
    let s = scratch_or_skip!(containers);
    s.busybox_image();
    s.klee(["volume", "create", "v1"])
        .assert()
        .success()
        .stdout("v1\n");
    s.klee(["volume", "create", "v2"])
        .assert()
        .success()
        .stdout("v2\n");
    s.klee(["volume", "create", "v1"])
        .assert()
        .code(1)
        .stderr("klee: volume v1 already exists\n");
    let table = s.ok(&["lsv"]);
    assert_eq!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["VOLUME", "NAME", "CREATED"]
    );
    assert!(table.contains(" v1 ") && table.contains(" v2 "), "{table}");

    let cid = s.ok(&[
        "run",
        "-m",
        "v1:/data",
        "bb",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    let cid = cid.lines().next().unwrap().to_string();
    s.klee(["run", "--rm", "-m", "v1:/v:ro", "bb", "cat", "/v/f"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\nkept\n"));
    let inspect: serde_json::Value = serde_json::from_str(&s.ok(&["isv", "v1"])).unwrap();
    assert_eq!(inspect["volume"]["name"], "v1");
    assert_eq!(inspect["mountpoints"][0]["container_id"], cid.as_str());
    assert_eq!(inspect["mountpoints"][0]["destination"], "/data");
    assert_eq!(inspect["mountpoints"][0]["type"], "volume");
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["volume", "ls", "--format", "json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);

    s.klee(["rmv", "v1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("volume v1 is in use by"));
    s.klee(["volume", "prune"])
        .write_stdin("y\n")
        .assert()
        .success()
        .stdout(predicate::str::ends_with("[y/N]: v2\n"));
    s.ok(&["rmc", &cid]);
    s.klee(["volume", "rm", "v1", "nope"])
        .assert()
        .code(1)
        .stdout("v1\n")
        .stderr("klee: no such volume: nope\n");
    s.klee(["isv", "v1"])
        .assert()
        .code(1)
        .stderr("klee: no such volume: v1\n");
}

fn context(s: &common::Scratch, name: &str, dockerfile: &str) -> std::path::PathBuf {
    let dir = s.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello\n").unwrap();
    dir
}

#[test]
fn build_prints_klees_transcript_and_the_image_runs() {
    let s = scratch_or_skip!(containers);
    s.busybox_image();
    let ctx = context(
        &s,
        "ctx",
        "FROM bb\nCOPY hello.txt /srv/hello.txt\nRUN echo built >> /srv/hello.txt\nCMD [\"/bin/cat\", \"/srv/hello.txt\"]\n",
    );
    let out = s.klee(["build", "-t", "hello"]).arg(&ctx).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    // As klee: the whole transcript on stdout, the id last after "image created".
    let lines: Vec<&str> = stdout.lines().collect();
    let id = *lines.last().unwrap();
    assert!(is_id(id), "{stdout}");
    assert_eq!(
        lines[0],
        format!("Started to build image with ID {id}"),
        "{stdout}"
    );
    assert_eq!(lines[1], "Step 1/4 : FROM bb", "{stdout}");
    assert!(
        lines.contains(&"Step 3/4 : RUN echo built >> /srv/hello.txt"),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with("--> Snapshot created: @"))
            .count()
            >= 2,
        "{stdout}"
    );
    assert_eq!(
        lines[lines.len() - 3..lines.len() - 1],
        ["", "image created"],
        "{stdout}"
    );
    let run = s.ok(&["run", "--rm", "hello"]);
    assert_eq!(
        run.lines().skip(2).take(2).collect::<Vec<_>>(),
        ["hello", "built"],
        "{run}"
    );

    // quiet: the id alone; -f names the Dockerfile relative to PATH
    std::fs::rename(ctx.join("Dockerfile"), ctx.join("Dockerfile.alt")).unwrap();
    let out = s
        .klee([
            "image",
            "build",
            "-q",
            "--no-cache",
            "-t",
            "hello:2",
            "-f",
            "Dockerfile.alt",
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(is_id(stdout.trim()), "{stdout}");
    assert_eq!(stderr, "");
    assert!(s.ok(&["lsi"]).contains(" hello "));
}

#[test]
fn a_failed_build_is_kept_and_its_last_snapshot_runs() {
    let s = scratch_or_skip!(containers);
    s.busybox_image();
    let ctx = context(&s, "bad", "FROM bb\nRUN echo one > /srv/one\nRUN exit 3\n");
    let out = s
        .klee(["build", "-t", "broken"])
        .arg(&ctx)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // As klee: the transcript and the failure on stdout.
    let last = stdout.lines().last().unwrap();
    let rest = last
        .strip_prefix("Failed to build image ")
        .unwrap_or_else(|| panic!("{stdout}"));
    let (id, snapshot) = rest.split_once(". Most recent snapshot is ").unwrap();
    assert!(is_id(id) && snapshot.starts_with('@'), "{last}");
    assert!(!stderr.contains("klee: "), "one report, not two: {stderr}");
    let table = s.ok(&["lsi"]);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().take(3).eq([id, "broken", "failed"])),
        "{table}"
    );
    // a container from the most recent snapshot sees the first RUN's work
    let run = s.ok(&["run", "--rm", &format!("{id}{snapshot}"), "cat", "/srv/one"]);
    assert_eq!(run.lines().nth(2), Some("one"), "{run}");

    // --rm: nothing is kept
    s.klee(["build", "--rm", "-t", "gone"])
        .arg(&ctx)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("Failed to build image "));
    assert!(!s.ok(&["lsi"]).contains("gone"));
    // errors before the build are one klee line
    s.klee(["build", "-f", "Nope"])
        .arg(&ctx)
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("klee: "));
}

#[test]
fn a_container_runs_on_after_its_command_while_its_processes_do() {
    let s = scratch_or_skip!(containers);
    s.busybox_image();
    // As `klee run FreeBSD` (/etc/rc starts daemons and exits) in Kleene's docs.
    let out = s
        .klee([
            "run",
            "--name",
            "rc",
            "bb",
            "sh",
            "-c",
            "sleep 300 & echo rc done",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    let instance = lines[1]
        .strip_prefix("created execution instance ")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(lines[2..4], ["rc done", ""], "{stdout}");
    // Only the execution instance exited: the container runs on.
    assert_eq!(lines[4], format!("{instance} has exited with exit-code 0"));
    let ls = s.ok(&["lsc"]);
    assert!(
        ls.lines()
            .any(|l| l.contains(" rc ") && l.contains("running")),
        "{ls}"
    );
    // stop: SIGTERM to every process of it, so the daemon ends and the container with it.
    let t = std::time::Instant::now();
    s.klee(["stop", "rc"]).assert().success();
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
    let ls = s.ok(&["lsc", "-a"]);
    assert!(
        ls.lines()
            .any(|l| l.contains(" rc ") && l.contains("stopped")),
        "{ls}"
    );
}
