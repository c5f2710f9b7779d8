//! `klee --host`: the same commands through a kleened started on the test's scratch root
//! (a socket in its temp dir), compared with the embedded klee's output on the same root.
//!
//! The kleened binary is the one built beside klee (`cargo test --workspace` builds both),
//! or `$KLEENED` when set; without either it is built once into a target dir of its own.
//! Without a test pool the tests skip, unless `KLEENE_REQUIRE_ZFS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::Scratch;

/// The kleened binary to run.
fn kleened() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("KLEENED") {
            return PathBuf::from(p);
        }
        let klee = common::klee_path();
        let profile_dir = klee.parent().expect("klee is in a directory");
        let beside = profile_dir.join("kleened");
        if beside.exists() {
            return beside;
        }
        // Built into a target dir of its own: the one of this `cargo test` is locked
        // while it runs.
        let target = profile_dir
            .parent()
            .expect("a target dir")
            .join("kleened-for-klee-tests");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cmd.args([
            "build",
            "-p",
            "kleened",
            "--bin",
            "kleened",
            "--manifest-path",
        ])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "cargo build -p kleened failed");
        target
            .join(if release { "release" } else { "debug" })
            .join("kleened")
    })
    .clone()
}

/// A kleened on a scratch root, and that root for the embedded klee; both run in a
/// network namespace of the lab's own, so that networks touch nothing of the host.
struct Lab {
    child: Option<Child>,
    host: String,
    netns: String,
    s: Scratch,
}

static NETNS_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// `program` in the network namespace `netns`.
fn in_netns(netns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{netns}")).arg(program);
    cmd
}

impl Lab {
    /// A kleened on a new scratch root listening at `address` (`None`: a Unix socket in
    /// the temp dir), with the extra YAML `socket_options` on its socket.
    fn with(address: Option<&str>, socket_options: &str) -> Option<Lab> {
        let s = common::scratch_for_containers()?;
        let socket = s.dir.path().join("kleened.sock");
        let address = match address {
            Some(a) => a.to_string(),
            None => format!("http://{}", socket.display()),
        };
        let config = s.dir.path().join("kleened.yaml");
        std::fs::write(
            &config,
            format!(
                "kleene_root: \"{}\"\napi_listening_sockets:\n  - address: \"{address}\"\n{socket_options}enable_logging: false\n",
                s.root
            ),
        )
        .unwrap();
        let netns = format!(
            "kcr-{}-{}",
            std::process::id(),
            NETNS_SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let made = Command::new("ip")
            .args(["netns", "add", &netns])
            .status()
            .expect("ip(8) runs");
        assert!(made.success(), "ip netns add {netns}");
        let lo = in_netns(&netns, "ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(lo.success(), "lo up in {netns}");
        let log = std::fs::File::create(s.dir.path().join("kleened.log")).unwrap();
        let child = in_netns(&netns, kleened())
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("kleened starts");
        let mut lab = Lab {
            child: Some(child),
            host: address,
            netns,
            s,
        };
        lab.wait_ready();
        Some(lab)
    }

    fn new() -> Option<Lab> {
        Self::with(None, "")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.s.dir.path().join("kleened.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        while !self.log().contains("listening on") {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("kleened exited with {status}: {}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "kleened did not listen within 120 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The embedded klee on the lab's root.
    fn local(&self, args: &[&str]) -> Output {
        run(self.klee(&[&["--root", self.s.root.as_str()][..], args].concat()))
    }

    /// klee in the lab's namespace, with no kleened or root from the environment.
    fn klee(&self, args: &[&str]) -> Command {
        let mut cmd = in_netns(&self.netns, common::klee_path());
        for var in [
            "KLEENE_ROOT",
            "KLEE_THEME",
            "KLEE_HOST",
            "KLEE_TLS_VERIFY",
            "KLEE_TLS_CERT",
            "KLEE_TLS_KEY",
            "KLEE_TLS_CACERT",
        ] {
            cmd.env_remove(var);
        }
        cmd.args(args);
        cmd
    }

    /// klee through the lab's kleened.
    fn remote(&self, args: &[&str]) -> Output {
        self.remote_with(&[], args)
    }

    /// klee through the lab's kleened, with `options` (TLS) before the command.
    fn remote_with(&self, options: &[&str], args: &[&str]) -> Output {
        run(self.klee(&[&["--host", self.host.as_str()][..], options, args].concat()))
    }

    fn ok(out: Output, what: &str) -> String {
        let (stdout, stderr) = common::texts(&out);
        assert!(
            out.status.success(),
            "{what} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        stdout
    }

    fn local_ok(&self, args: &[&str]) -> String {
        Self::ok(self.local(args), &format!("klee {args:?}"))
    }

    fn remote_ok(&self, args: &[&str]) -> String {
        Self::ok(self.remote(args), &format!("klee --host {args:?}"))
    }

    /// The busybox image `bb`, made by the embedded klee; its id.
    fn busybox(&self) -> String {
        self.s.busybox_image()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // nsenter execs kleened: the child is kleened itself.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
        // Containers and networks go in the namespace they were made in; the scratch
        // root's own drop destroys the datasets.
        if let Ok(out) = self
            .klee(&["--root", &self.s.root, "lsc", "-a", "--format", "json"])
            .output()
        {
            if let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout) {
                for c in list {
                    if let Some(id) = c["id"].as_str() {
                        let _ = self
                            .klee(&["--root", &self.s.root, "rmc", "-f", id])
                            .output();
                    }
                }
            }
        }
        let _ = self
            .klee(&["--root", &self.s.root, "network", "prune", "-f"])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null());
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.wait_with_output().unwrap()
}

/// What differs between two runs of the same commands: ids (12 hex digits) and times
/// (ages and ISO times), and so the widths of table columns.
fn normalize(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut l = line.to_string();
        for age in ["Less than a second ago", "About a minute ago"] {
            l = l.replace(age, "AGO");
        }
        let l = hide_ids(&l);
        let mut l = l;
        // "N seconds ago" and ISO times.
        let tokens: Vec<&str> = l.split(' ').collect();
        let mut kept = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            if i + 2 < tokens.len()
                && tokens[i].parse::<u32>().is_ok()
                && tokens[i + 1].starts_with("second")
                && tokens[i + 2] == "ago"
            {
                kept.push("AGO".to_string());
                i += 3;
                continue;
            }
            let t = tokens[i];
            if t.len() >= 20 && t.trim_end_matches([',', '"']).ends_with('Z') && t.contains('T') {
                kept.push("\"TIME\",".to_string());
            } else {
                kept.push(t.to_string());
            }
            i += 1;
        }
        l = kept.join(" ");
        // Column widths.
        let mut collapsed = String::new();
        let mut last = '\0';
        for c in l.chars() {
            if (c == ' ' || c == '─' || c == '-') && c == last {
                continue;
            }
            collapsed.push(c);
            last = c;
        }
        out.push_str(collapsed.trim_end());
        out.push('\n');
    }
    out
}

/// `text` with every id (a run of 12 hex digits between other characters) as `ID`.
fn hide_ids(text: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() == 12
            && run
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            out.push_str("ID");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Asserts that two outputs (code, stdout, stderr) are the same, after `norm`.
fn same(local: &Output, remote: &Output, norm: fn(&str) -> String, what: &str) {
    let (lo, le) = common::texts(local);
    let (ro, re) = common::texts(remote);
    assert_eq!(
        (local.status.code(), norm(&lo), norm(&le)),
        (remote.status.code(), norm(&ro), norm(&re)),
        "{what}: embedded (left) and through kleened (right) differ\nembedded stdout:\n{lo}\nremote stdout:\n{ro}"
    );
}

#[test]
fn listings_and_inspections_are_the_same() {
    let Some(lab) = Lab::new() else { return };
    let image = lab.busybox();
    lab.local_ok(&["volume", "create", "vol1"]);
    lab.local_ok(&["network", "create", "--subnet", "10.231.0.0/24", "net1"]);
    lab.local_ok(&[
        "create",
        "--name",
        "c1",
        "-m",
        "vol1:/data",
        "-e",
        "A=1",
        "-J",
        "mount.devfs",
        "-n",
        "net1",
        "bb",
        "/bin/sleep",
        "100",
    ]);
    lab.local_ok(&[
        "create",
        "--name",
        "c2",
        "-P",
        "--restart",
        "on-startup",
        "bb",
    ]);
    lab.local_ok(&["run", "-d", "--name", "c3", "bb", "/bin/sleep", "100"]);
    lab.local_ok(&["build", "-t", "other:1", "--from", "bb", &context(&lab)]);
    for args in [
        &["lsi"][..],
        &["image", "ls", "--theme", "simple"],
        &["isi", "bb"],
        &["isi", &image[..5]],
        &["image", "inspect", "--theme", "simple", "other:1"],
        &["lsv"],
        &["volume", "ls"],
        &["isv", "vol1"],
        &["lsn"],
        &["network", "ls", "--theme", "simple"],
        &["isn", "net1"],
        &["lsc"],
        &["lsc", "-a"],
        &["container", "ls", "-a", "--theme", "simple"],
        &["isc", "c1"],
        &["container", "inspect", "c3"],
        // Failures: the same message and exit code.
        &["isi", "nope"],
        &["isc", "nope"],
        &["isv", "nope"],
        &["isn", "nope"],
        &["rmi", "nope"],
    ] {
        let local = lab.local(args);
        let remote = lab.remote(args);
        // The same objects: only ages may differ, if a second passed between the two.
        same(&local, &remote, normalize_ages, &format!("{args:?}"));
    }
    // Through kleened, `--format json` lists are kleened's records.
    let remote: serde_json::Value =
        serde_json::from_str(&lab.remote_ok(&["lsc", "-a", "--format", "json"])).unwrap();
    let names: Vec<&str> = remote
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{remote:#}");
    assert!(remote[0].get("image_name").is_some(), "{remote:#}");
    let images: serde_json::Value =
        serde_json::from_str(&lab.remote_ok(&["lsi", "--format", "json"])).unwrap();
    assert!(
        images
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == image.as_str()),
        "{images:#}"
    );
    lab.local_ok(&["stop", "c3"]);
}

/// A build context with a Dockerfile of one step.
fn context(lab: &Lab) -> String {
    let dir = lab.s.dir.path().join("one-step");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nENV A=1\n").unwrap();
    dir.display().to_string()
}

/// Ages only: the same objects listed twice.
fn normalize_ages(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut l = line.replace("Less than a second ago", "AGO");
        for n in (1..60).rev() {
            l = l.replace(&format!("{n} seconds ago"), "AGO");
        }
        l = l.replace("1 second ago", "AGO");
        let mut collapsed = String::new();
        let mut last = '\0';
        for c in l.chars() {
            if (c == ' ' || c == '─' || c == '-') && c == last {
                continue;
            }
            collapsed.push(c);
            last = c;
        }
        out.push_str(collapsed.trim_end());
        out.push('\n');
    }
    out
}

#[test]
fn changes_print_the_same() {
    let Some(lab) = Lab::new() else { return };
    lab.busybox();
    // Twin objects: one made embedded, one through kleened.
    let pairs: &[(&[&str], &[&str])] = &[
        (&["volume", "create", "lv"], &["volume", "create", "rv"]),
        (
            &["network", "create", "--subnet", "10.232.0.0/24", "ln"],
            &["network", "create", "--subnet", "10.232.1.0/24", "rn"],
        ),
        (
            &[
                "create",
                "--name",
                "lc",
                "-m",
                "lv:/data",
                "-p",
                "8080:80",
                "bb",
                "/bin/echo",
                "l",
            ],
            &[
                "create",
                "--name",
                "rc",
                "-m",
                "rv:/data",
                "-p",
                "8081:80",
                "bb",
                "/bin/echo",
                "l",
            ],
        ),
        (
            &["create", "--name", "lnet", "-n", "ln", "bb"],
            &["create", "--name", "rnet", "-n", "rn", "bb"],
        ),
        // A tag renames: the same image, renamed twice.
        (
            &["image", "tag", "bb", "l:1"],
            &["image", "tag", "l:1", "r:1"],
        ),
        (
            &["container", "rename", "lc", "lc2"],
            &["container", "rename", "rc", "rc2"],
        ),
        (
            &[
                "container",
                "update",
                "-e",
                "X=1",
                "--restart",
                "on-startup",
                "lc2",
                "/bin/echo",
                "u",
            ],
            &[
                "container",
                "update",
                "-e",
                "X=1",
                "--restart",
                "on-startup",
                "rc2",
                "/bin/echo",
                "u",
            ],
        ),
        (
            &["network", "disconnect", "ln", "lnet"],
            &["network", "disconnect", "rn", "rnet"],
        ),
        (
            &["network", "connect", "--ip", "10.232.0.9", "ln", "lnet"],
            &["network", "connect", "--ip", "10.232.1.9", "rn", "rnet"],
        ),
        (&["isc", "lnet"], &["isc", "rnet"]),
        (&["isn", "ln"], &["isn", "rn"]),
        (&["rmc", "lnet"], &["rmc", "rnet"]),
        (&["network", "rm", "ln"], &["network", "rm", "rn"]),
        (&["rmv", "lv"], &["rmv", "rv"]),
        (&["rmc", "lc2"], &["rmc", "rc2"]),
        (&["rmv", "lv"], &["rmv", "rv"]),
        // Failures.
        (&["rmc", "nope"], &["rmc", "nope"]),
        (&["network", "rm", "nope"], &["network", "rm", "nope"]),
        (
            &["container", "rename", "nope", "x"],
            &["container", "rename", "nope", "x"],
        ),
    ];
    for (local, remote) in pairs {
        let l = lab.local(local);
        let r = lab.remote(remote);
        same(&l, &r, normalize_twins, &format!("{local:?} / {remote:?}"));
    }
    // Prunes: nothing left to prune after the above, but the containers made now.
    lab.local_ok(&["create", "--name", "p1", "r:1"]);
    let out = lab.remote_ok(&["container", "prune", "-f"]);
    assert_eq!(normalize(&out), "ID\n");
    for args in [
        &["volume", "prune", "-f"][..],
        &["network", "prune", "-f"],
        &["image", "prune", "-f"],
        &["container", "prune", "-f"],
    ] {
        same(
            &lab.local(args),
            &lab.remote(args),
            normalize,
            &format!("{args:?}"),
        );
    }
    assert_eq!(lab.remote_ok(&["lsc", "-a"]), lab.local_ok(&["lsc", "-a"]));
}

/// Twins differ in their names (l... and r...), their ids, subnets and ports.
fn normalize_twins(text: &str) -> String {
    normalize(&swap_words(
        text,
        &[
            ("rv", "lv"),
            ("rn", "ln"),
            ("rnet", "lnet"),
            ("rc", "lc"),
            ("rc2", "lc2"),
            ("r:1", "l:1"),
            ("r", "l"),
            ("8081", "8080"),
            ("kleene1", "kleene0"),
            ("10.232.1.0", "10.232.0.0"),
            ("10.232.1.1", "10.232.0.1"),
            ("10.232.1.9", "10.232.0.9"),
        ],
    ))
}

/// `text` with the words (runs of letters, digits and `_.:`) of `pairs` swapped.
fn swap_words(text: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let w = pairs
            .iter()
            .find(|(from, _)| from == word)
            .map_or(word.as_str(), |(_, to)| to);
        out.push_str(w);
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || "_.:".contains(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[test]
fn run_exec_start_and_stop_print_the_same() {
    let Some(lab) = Lab::new() else { return };
    lab.busybox();
    let pairs: &[(&[&str], &[&str])] = &[
        (
            &["run", "--name", "l1", "bb", "sh", "-c", "echo out; exit 3"],
            &["run", "--name", "r1", "bb", "sh", "-c", "echo out; exit 3"],
        ),
        (
            &["run", "--rm", "bb", "echo", "gone"],
            &["run", "--rm", "bb", "echo", "gone"],
        ),
        (
            &["run", "-d", "--name", "l2", "bb", "/bin/sleep", "300"],
            &["run", "-d", "--name", "r2", "bb", "/bin/sleep", "300"],
        ),
        (
            &["exec", "l2", "sh", "-c", "echo in l2; exit 5"],
            &["exec", "r2", "sh", "-c", "echo in l2; exit 5"],
        ),
        (
            &["exec", "-d", "l2", "/bin/sleep", "1"],
            &["exec", "-d", "r2", "/bin/sleep", "1"],
        ),
        (
            &[
                "exec",
                "-e",
                "V=env",
                "-u",
                "root",
                "l2",
                "sh",
                "-c",
                "echo $V; id -u",
            ],
            &[
                "exec",
                "-e",
                "V=env",
                "-u",
                "root",
                "r2",
                "sh",
                "-c",
                "echo $V; id -u",
            ],
        ),
        (&["stop", "l2"], &["stop", "r2"]),
        (&["stop", "l2"], &["stop", "r2"]),
        (&["start", "l1"], &["start", "r1"]),
        (&["start", "-d", "l2"], &["start", "-d", "r2"]),
        (&["restart", "l2"], &["restart", "r2"]),
        (&["rmc", "l2"], &["rmc", "r2"]),
        (&["rmc", "-f", "l2"], &["rmc", "-f", "r2"]),
        (&["start", "l1", "l2"], &["start", "r1", "r2"]),
        (&["run", "nope"], &["run", "nope"]),
    ];
    for (local, remote) in pairs {
        let l = lab.local(local);
        let r = lab.remote(remote);
        same(
            &l,
            &r,
            |t| normalize(&swap_words(t, &[("r1", "l1"), ("r2", "l2")])),
            &format!("{local:?} / {remote:?}"),
        );
    }
    // `run -d` of a base image's command (its rc starts a service and exits): the
    // container runs on, listed the same.
    assert_eq!(
        normalize(&lab.remote_ok(&["lsc"])),
        normalize(&lab.local_ok(&["lsc"]))
    );
    // An exec on no container: the same failure (the embedded klee tells an instance
    // id first, kleened makes none).
    let (l, r) = (
        lab.local(&["exec", "nope", "true"]),
        lab.remote(&["exec", "nope", "true"]),
    );
    assert_eq!(l.status.code(), r.status.code());
    assert_eq!(common::texts(&l).1, common::texts(&r).1);
    // What needs the engine itself is refused with --host.
    let out = lab.remote(&["logs", "l1"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn builds_print_the_same() {
    let Some(lab) = Lab::new() else { return };
    lab.busybox();
    let ctx = lab.s.dir.path().join("context");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("greeting.txt"), "hello from the context\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb\nARG WHO=nobody\nENV GREETING=\"hi $WHO\"\nCOPY greeting.txt /etc/greeting\nRUN cat /etc/greeting && echo $GREETING\nCMD [\"/bin/cat\", \"/etc/greeting\"]\n",
    )
    .unwrap();
    std::fs::write(
        ctx.join("Failing"),
        "FROM bb\nRUN echo first\nRUN echo second; false\n",
    )
    .unwrap();
    std::fs::write(ctx.join("Unknown"), "FROM nope\n").unwrap();
    let path = ctx.to_str().unwrap();
    // Both with --no-cache (an extension of this kleened's API), so that each runs every
    // step.
    for (local, remote) in [
        (
            vec![
                "build",
                "--no-cache",
                "-t",
                "built",
                "--build-arg",
                "WHO=you",
                path,
            ],
            vec![
                "build",
                "--no-cache",
                "-t",
                "built",
                "--build-arg",
                "WHO=you",
                path,
            ],
        ),
        (
            vec!["build", "--no-cache", "-q", "-t", "quiet", path],
            vec!["build", "--no-cache", "-q", "-t", "quiet", path],
        ),
        (
            vec![
                "build",
                "--no-cache",
                "-f",
                "Failing",
                "-t",
                "failing",
                path,
            ],
            vec![
                "build",
                "--no-cache",
                "-f",
                "Failing",
                "-t",
                "failing",
                path,
            ],
        ),
        (
            vec!["build", "--no-cache", "-f", "Unknown", path],
            vec!["build", "-f", "Unknown", path],
        ),
    ] {
        let r = lab.remote(&remote);
        let l = lab.local(&local);
        same(&l, &r, normalize, &format!("{remote:?}"));
    }
    assert_eq!(
        normalize(&lab.remote_ok(&["run", "--rm", "built"])),
        normalize(&lab.local_ok(&["run", "--rm", "built"]))
    );
    // A base image through kleened: its transcript ends as the embedded one's.
    let (l, r) = (lab.local(&["rmi", "quiet"]), lab.remote(&["rmi", "built"]));
    same(&l, &r, normalize, "rmi");
    let tar = lab.s.dir.path().join("bb2.tar");
    common::write_busybox_rootfs(&tar);
    let url = format!("file://{}", tar.display());
    let remote = lab.remote_ok(&["image", "create", "-t", "bb2", "fetch", &url]);
    let local = lab.local_ok(&["image", "create", "-t", "bb3", "fetch", &url]);
    // The same lines both ways (kleene-api's transcript), the progress lines aside
    // (how many are told depends on the time each phase takes).
    let steady = |t: &str| {
        normalize(t)
            .lines()
            .filter(|l| !l.starts_with("downloaded ") && !l.starts_with("extracted "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(steady(&remote), steady(&local), "{remote}\n---\n{local}");
    assert!(steady(&remote).ends_with("\nimage created\nID"), "{remote}");
    // --sha256 (an extension) is checked through kleened too.
    let out = lab.remote(&[
        "image",
        "create",
        "--sha256",
        &"0".repeat(64),
        "fetch",
        &url,
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sha256")
            || String::from_utf8_lossy(&out.stderr).contains("sha256"),
        "{out:?}"
    );
    let out = lab.remote(&["image", "create", "fetch", "file:///nonexistent.tar"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn hosts_and_tls_options() {
    // Refused before any connection: no pool needed.
    let klee = |args: &[&str]| {
        let mut cmd = common::klee_process();
        cmd.args(args);
        run(cmd)
    };
    let out = klee(&["--host", "unix:///x.sock", "lsi"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        common::texts(&out)
            .1
            .contains("could not parse the '--host'"),
        "{out:?}"
    );
    let out = klee(&[
        "--host",
        "https://127.0.0.1:1",
        "--tlscert",
        "/c.pem",
        "lsi",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(common::texts(&out).1.contains("--tlskey"), "{out:?}");
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("http://{}/none.sock", dir.path().display());
    let out = klee(&["--host", &missing, "lsi"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        common::texts(&out)
            .1
            .starts_with("klee: unable to connect to kleened"),
        "{out:?}"
    );
    // KLEE_HOST is --host.
    let mut cmd = common::klee_process();
    cmd.env("KLEE_HOST", &missing).args(["lsv"]);
    let out = run(cmd);
    assert!(common::texts(&out).1.contains("none.sock"), "{out:?}");

    // A kleened on https with client certificates.
    if !has_openssl() {
        return;
    }
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = |name: &str| pki.path().join(name).display().to_string();
    let options = format!(
        "    tlscert: \"{}\"\n    tlskey: \"{}\"\n    tlsverify: true\n    tlscacert: \"{}\"\n",
        p("server-cert.pem"),
        p("server-key.pem"),
        p("ca.pem")
    );
    let Some(lab) = Lab::with(Some(&format!("https://127.0.0.1:{port}")), &options) else {
        return;
    };
    lab.local_ok(&["volume", "create", "tlsvol"]);
    let (ca, cert, key) = (p("ca.pem"), p("client-cert.pem"), p("client-key.pem"));
    let client = ["--tlscert", cert.as_str(), "--tlskey", key.as_str()];
    // Verified against the CA, with the client certificate.
    let verified = [
        &["--tlsverify", "--tlscacert", ca.as_str()][..],
        &client[..],
    ]
    .concat();
    let out = lab.remote_with(&verified, &["lsv"]);
    assert_eq!(common::texts(&out).0, lab.local_ok(&["lsv"]), "{out:?}");
    // As klee: without --tlsverify the server's certificate is not checked.
    let out = lab.remote_with(&client, &["lsv"]);
    assert!(out.status.success(), "{out:?}");
    // --tlsverify without the CA: Mozilla's roots do not know it.
    let out = lab.remote_with(&[&["--tlsverify"][..], &client[..]].concat(), &["lsv"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // Without a client certificate kleened refuses the handshake.
    let out = lab.remote_with(&["--tlscacert", ca.as_str()], &["lsv"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // WebSockets over TLS: a container run.
    lab.s.busybox_image();
    let out = lab.remote_with(&verified, &["run", "--rm", "bb", "echo", "over tls"]);
    let (stdout, stderr) = common::texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("\nover tls\n"), "{stdout}");
}

fn has_openssl() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("KLEENE_REQUIRE_ZFS").as_deref() != Ok("1"),
            "KLEENE_REQUIRE_ZFS=1 but the openssl tool is not installed (apt-get install openssl)"
        );
        eprintln!("skipped: the openssl tool is not installed");
    }
    found
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl.
fn make_pki(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=klee test ca",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.cnf"),
        "subjectAltName = DNS:localhost,IP:127.0.0.1\nextendedKeyUsage = serverAuth\nbasicConstraints = CA:FALSE\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.cnf"),
        "extendedKeyUsage = clientAuth\nbasicConstraints = CA:FALSE\n",
    )
    .unwrap();
    for name in ["server", "client"] {
        let (key, csr, cert, ext) = (
            format!("{name}-key.pem"),
            format!("{name}.csr"),
            format!("{name}-cert.pem"),
            format!("{name}.cnf"),
        );
        openssl(
            &[
                &["req", "-new"][..],
                &ec,
                &[
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                    "-subj",
                    &format!("/CN={name}"),
                ],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-sha256",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            &cert,
            "-extfile",
            &ext,
        ]);
    }
}

/// The first line of `klee --host ... container stats --json TARGET`.
fn remote_stats(lab: &Lab, target: &str) -> serde_json::Value {
    let out = lab.remote_ok(&["container", "stats", "--json", target]);
    serde_json::from_str(out.lines().next().expect("a line of stats")).unwrap()
}

#[test]
fn limits_and_stats_go_through_kleened() {
    let Some(lab) = Lab::new() else { return };
    lab.busybox();
    lab.remote_ok(&[
        "run",
        "-d",
        "--name",
        "rl",
        "--pids-limit",
        "10",
        "--memory",
        "64m",
        "bb",
        "sleep",
        "60",
    ]);
    let st = remote_stats(&lab, "rl");
    assert_eq!(st["name"], "rl", "{st}");
    assert_eq!(st["pids_limit"], 10, "{st}");
    assert_eq!(st["memory_limit"], 67_108_864u64, "{st}");
    assert!(st["pids"].as_u64().unwrap() >= 1, "{st}");
    // The same figures as the embedded klee reads from the same group.
    let local: serde_json::Value = serde_json::from_str(
        lab.local_ok(&["container", "stats", "--json", "rl"])
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(local["id"], st["id"]);
    assert_eq!(local["pids_limit"], st["pids_limit"]);

    // An update through kleened reaches the running container's group.
    lab.remote_ok(&["container", "update", "--pids-limit", "20", "rl"]);
    let st = remote_stats(&lab, "rl");
    assert_eq!(st["pids_limit"], 20, "{st}");
    assert_eq!(st["memory_limit"], 67_108_864u64, "{st}");
    let inspect: serde_json::Value =
        serde_json::from_str(&lab.remote_ok(&["container", "inspect", "rl"])).unwrap();
    assert_eq!(
        inspect["container"]["limits"],
        serde_json::json!({"memory": 67_108_864u64, "pids": 20}),
        "{inspect}"
    );

    // Without a container: the running ones, as a table.
    let table = lab.remote_ok(&["container", "stats"]);
    assert!(table.starts_with("CONTAINER ID"), "{table}");
    assert!(table.contains("rl") && table.contains("/ 20"), "{table}");

    lab.remote_ok(&["stop", "rl"]);
    let out = lab.remote(&["container", "stats", "rl"]);
    let (_, err) = common::texts(&out);
    assert!(
        !out.status.success() && err.contains("not running"),
        "{out:?}"
    );
    let out = lab.remote(&["container", "stats", "nope"]);
    let (_, err) = common::texts(&out);
    assert!(!out.status.success() && err.contains("nope"), "{out:?}");
}

#[test]
fn normalizing() {
    assert_eq!(
        normalize(" 4262ad2aeca1   bb     latest   Less than a second ago \n"),
        " ID bb latest AGO\n"
    );
    assert_eq!(
        normalize("--> Snapshot created: @ab0908a635ec"),
        "-> Snapshot created: @ID\n"
    );
    assert_eq!(normalize("a 12 seconds ago b"), "a AGO b\n");
    assert_eq!(
        normalize("    \"created\": \"2026-12-03T12:20:22.000000Z\","),
        " \"created\": \"TIME\",\n"
    );
}
