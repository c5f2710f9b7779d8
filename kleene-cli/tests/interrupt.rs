//! Ctrl-C (SIGINT) on klee, as a user presses it: the first stops the operation cleanly
//! (a build is kept as `<name>:failed`, an attached container is stopped and its exit
//! recorded, an exec'd command gets SIGINT, an image create in the middle of its
//! download removes its partial image), a second exits at once; nothing is left running
//! either way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// What klee writes, stdout and stderr in one pipe (as on a terminal).
type Output = BufReader<std::io::PipeReader>;

/// klee with `args` on the scratch root, its output piped, in a process group of its own
/// (as the terminal's foreground group would be).
fn spawn(s: &common::Scratch, args: &[&str]) -> (Child, Output) {
    use std::os::unix::process::CommandExt;
    let (r, w) = std::io::pipe().unwrap();
    let child = common::klee_process()
        .arg("--root")
        .arg(&s.root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(w.try_clone().unwrap())
        .stderr(w)
        .process_group(0)
        .spawn()
        .unwrap();
    (child, BufReader::new(r))
}

/// Reads klee's output until a line contains `needle` (within 60 s); the lines read.
fn wait_for_line(mut err: Output, needle: &str) -> (Vec<String>, Output) {
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "no line with {needle:?} in {lines:?}"
        );
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("klee ended before {needle:?}: {lines:?}");
        }
        let found = line.contains(needle);
        lines.push(line);
        if found {
            return (lines, err);
        }
    }
}

/// Waits (at most 60 s) for `child` to end; its exit code and the rest of its output.
fn finish(mut child: Child, mut err: Output) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut rest = String::new();
            std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
            use std::os::unix::process::ExitStatusExt;
            return (
                status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
                rest,
            );
        }
        assert!(Instant::now() < deadline, "klee did not end within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Host processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if String::from_utf8_lossy(&cmd)
                .replace('\0', " ")
                .contains(marker)
            {
                out.push(pid);
            }
        }
    }
    out
}

fn interrupt(child: &Child) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
}

#[test]
fn ctrl_c_on_build_keeps_it_as_failed_and_stops_the_step() {
    let Some(s) = common::scratch_for_containers() else {
        return;
    };
    s.busybox_image();
    let ctx = s.dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb\nRUN echo first > /first\nRUN sleep 417\nRUN echo never\n",
    )
    .unwrap();
    let (child, out) = spawn(&s, &["build", "-t", "cc", ctx.to_str().unwrap()]);
    let (_, err) = wait_for_line(out, "Step 3/4 : RUN sleep 417");
    // The step's process runs: wait until it is there, then press Ctrl-C.
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes_with("sleep 417").is_empty() {
        assert!(Instant::now() < deadline, "the RUN step never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    interrupt(&child);
    let (code, rest) = finish(child, err);
    assert_eq!(code, 130, "{rest}");
    assert!(rest.contains("Failed to build image"), "{rest}");
    assert!(
        processes_with("sleep 417").is_empty(),
        "the step's process outlived the build"
    );
    // Kept as cc:failed, resumable from its last snapshot (after the first RUN).
    let images = s.ok(&["image", "ls"]);
    assert!(
        images
            .lines()
            .any(|l| l.contains(" cc ") && l.contains(" failed ")),
        "{images}"
    );
    let out = s.ok(&["run", "--rm", "cc:failed", "cat", "/first"]);
    assert!(out.lines().count() >= 1, "{out}");
}

#[test]
fn a_second_ctrl_c_aborts_and_the_next_command_repairs() {
    let Some(s) = common::scratch_for_containers() else {
        return;
    };
    s.busybox_image();
    let ctx = s.dir.path().join("ctx2");
    std::fs::create_dir(&ctx).unwrap();
    // A step that ignores SIGTERM, so the first Ctrl-C's stop is still under way.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb\nRUN trap '' TERM INT; sleep 418\n",
    )
    .unwrap();
    let (child, out) = spawn(&s, &["build", "-t", "cd", ctx.to_str().unwrap()]);
    let (_, err) = wait_for_line(out, "Step 2/2");
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes_with("sleep 418").is_empty() {
        assert!(Instant::now() < deadline, "the RUN step never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(50));
    interrupt(&child);
    let (code, _) = finish(child, err);
    assert_eq!(code, 130);
    // Whatever the abort left, the next command repairs: no step process, no build
    // dataset that klee does not list, every image listed is whole.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with("sleep 418").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the step's process outlived klee"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    s.ok(&["image", "ls"]);
    let listed = s.ok(&["image", "ls", "--format", "json"]);
    let images: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    for img in &images {
        let ds = img["dataset"].as_str().unwrap();
        assert!(s.exists(ds), "{ds} is listed but gone");
    }
    let datasets = std::process::Command::new("zfs")
        .args([
            "list",
            "-H",
            "-o",
            "name",
            "-r",
            &format!("{}/image", s.root),
        ])
        .output()
        .unwrap();
    let datasets = String::from_utf8(datasets.stdout).unwrap();
    for ds in datasets.lines().skip(1) {
        assert!(
            images.iter().any(|i| i["dataset"] == ds),
            "{ds} is left and not listed: {listed}"
        );
    }
}

#[test]
fn ctrl_c_on_an_attached_run_stops_the_container_and_records_its_exit() {
    let Some(s) = common::scratch_for_containers() else {
        return;
    };
    s.busybox_image();
    let (child, out) = spawn(
        &s,
        &[
            "run",
            "--name",
            "att",
            "bb",
            "/bin/sh",
            "-c",
            // pid 1 of its namespace: only a trapped signal ends it.
            "trap 'exit 143' TERM; echo ready >&2; sleep 419 & wait",
        ],
    );
    let (_, err) = wait_for_line(out, "ready");
    interrupt(&child);
    let (code, rest) = finish(child, err);
    // SIGTERM ended the container: 128 + 15, reported and recorded.
    assert_eq!(code, 143, "{rest}");
    assert!(rest.contains("exited with exit-code 143"), "{rest}");
    assert!(processes_with("sleep 419").is_empty());
    let out = s.ok(&["container", "ls", "-a", "--format", "json"]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let att = list
        .iter()
        .find(|c| c["name"] == "att")
        .expect("container att");
    assert_eq!(att["runtime"]["state"], "Exited", "{att}");
    assert_eq!(att["runtime"]["exit_code"], 143, "{att}");
}

#[test]
fn ctrl_c_on_exec_reaches_the_command() {
    let Some(s) = common::scratch_for_containers() else {
        return;
    };
    s.busybox_image();
    s.ok(&["run", "-d", "--name", "svc", "bb", "sleep", "60"]);
    let (child, out) = spawn(
        &s,
        &[
            "exec",
            "svc",
            "/bin/sh",
            "-c",
            "trap 'kill $!; echo got-int >&2; exit 7' INT; echo ready >&2; sleep 420 & wait",
        ],
    );
    let (_, err) = wait_for_line(out, "ready");
    interrupt(&child);
    let (code, rest) = finish(child, err);
    assert!(rest.contains("got-int"), "{rest}");
    assert_eq!(code, 7, "{rest}");
    s.ok(&["container", "rm", "-f", "svc"]);
}

/// An http server on 127.0.0.1 that sends a tar archive's start, then a little more every
/// 50 ms for a minute (a slow download); tells `started` once it has begun.
fn trickling_server(started: std::sync::mpsc::Sender<()>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let mut req = [0u8; 4096];
        let _ = conn.read(&mut req);
        let size: u64 = 64 << 20;
        let mut header = tar::Header::new_gnu();
        header.set_path("big").unwrap();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", size + 1024);
        if conn.write_all(head.as_bytes()).is_err() || conn.write_all(header.as_bytes()).is_err() {
            return;
        }
        let _ = started.send(());
        let chunk = [0u8; 4096];
        for _ in 0..1200 {
            if conn.write_all(&chunk).is_err() {
                return; // klee went away
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    format!("http://{addr}/base.tar")
}

#[test]
fn ctrl_c_on_image_create_removes_the_partial_image() {
    let Some(s) = common::scratch_for_containers() else {
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let url = trickling_server(tx);
    let (child, out) = spawn(&s, &["image", "create", "-t", "partial", "fetch", &url]);
    rx.recv_timeout(Duration::from_secs(30))
        .expect("klee started the download");
    // Some of the archive is extracted into the new image's dataset by now.
    std::thread::sleep(Duration::from_millis(500));
    interrupt(&child);
    let (code, rest) = finish(child, out);
    assert_eq!(code, 130, "{rest}");
    assert!(rest.contains("the partial image was removed"), "{rest}");
    assert!(!s.ok(&["image", "ls"]).contains("partial"));
    let datasets = std::process::Command::new("zfs")
        .args([
            "list",
            "-H",
            "-o",
            "name",
            "-r",
            &format!("{}/image", s.root),
        ])
        .output()
        .unwrap();
    let datasets = String::from_utf8(datasets.stdout).unwrap();
    assert_eq!(datasets.lines().count(), 1, "left: {datasets}");
}
