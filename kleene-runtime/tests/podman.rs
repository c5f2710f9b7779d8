//! podman drives kleene-runtime as it drives runc (`podman --runtime PATH`, through
//! conmon): the same commands run with runc and with ours, and what the containers see
//! must be equal. Each test has podman storage of its own in a temporary directory. These
//! need root, podman and runc: they fail when KLEENE_REQUIRE_ZFS=1 (as CI sets it) and
//! skip otherwise.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Output, Stdio};

use common::{ours, runc, text};

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "id", "sleep", "true", "grep", "touch", "tty", "mkdir", "sort",
    "stat", "head", "readlink", "cut",
];

fn can_run() -> bool {
    common::can_run("podman", &[("podman", "podman")])
}

/// podman with storage of its own and a busybox image `localhost/bb`.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kleene-podman-test")
            .tempdir()
            .unwrap();
        let tar = common::busybox_tar(dir.path(), APPLETS);
        let p = Podman { dir };
        let out = p.podman(None, &["import", tar.to_str().unwrap(), "localhost/bb"]);
        assert!(out.status.success(), "import: {}", text(&out.stderr));
        p
    }

    /// `podman` on this storage; `runtime` is `--runtime` (podman's default, runc, when
    /// `None`).
    fn podman(&self, runtime: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .arg("--cgroup-manager")
            .arg("cgroupfs")
            .arg("--events-backend")
            .arg("file")
            .arg("--tmpdir")
            .arg(self.dir.path().join("tmp"));
        if let Some(r) = runtime {
            cmd.arg("--runtime").arg(r);
        }
        cmd.args(args).stdin(Stdio::null()).output().unwrap()
    }

    fn ok(&self, runtime: Option<&str>, args: &[&str]) -> String {
        let out = self.podman(runtime, args);
        assert!(
            out.status.success(),
            "podman {args:?} ({runtime:?}): {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(None, &["rm", "-a", "-f", "-t", "0"]);
        // podman's overlay storage leaves mounts below its root.
        common::umount_below(self.dir.path());
    }
}

/// What a container sees of itself and its limits.
const PROBE: &str = "id; pwd; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status; \
cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max 2>/dev/null; \
cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max 2>/dev/null; \
ls /dev | sort; mkdir /tmp/d && echo mkdir-ok; \
stat -c '%A %u %g %t %T' /dev/fuse; cat /dev/fuse 2>&1 | head -1; \
cat /proc/self/mountinfo | while read -r id parent dev root mp opts rest; do echo \"$mp $opts\"; done | sort; \
exit 3";

#[test]
fn podman_run_sees_the_same_under_runc_and_ours() {
    if !can_run() {
        return;
    }
    let p = Podman::new();
    let run = |runtime: Option<&str>| {
        let out = p.podman(
            runtime,
            &[
                "run",
                "--rm",
                "--memory",
                "64m",
                "--pids-limit",
                "30",
                "--cap-drop",
                "all",
                "--cap-add",
                "CHOWN",
                "--device",
                "/dev/fuse",
                "-e",
                "PROBE=1",
                "localhost/bb",
                "sh",
                "-c",
                PROBE,
            ],
        );
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code_runc, runc_saw, runc_err) = run(runc());
    let (code_ours, ours_saw, ours_err) = run(Some(ours()));
    println!("under both:\n{ours_saw}");
    assert_eq!(code_runc, Some(3), "runc: {runc_err}");
    assert_eq!(code_ours, Some(3), "ours: {ours_err}");
    assert_eq!(ours_saw, runc_saw, "\nours:\n{ours_saw}\nrunc:\n{runc_saw}");
    assert!(
        ours_saw.contains("67108864") || ours_saw.contains("max"),
        "{ours_saw}"
    );
    assert!(
        ours_saw.contains("Seccomp:\t2"),
        "podman's seccomp profile: {ours_saw}"
    );
    assert!(ours_saw.contains("mkdir-ok"), "{ours_saw}");
    // Nothing of it is left.
    assert_eq!(p.ok(None, &["ps", "-a", "-q"]).trim(), "");
}

#[test]
fn podman_detached_exec_logs_stop_and_rm() {
    if !can_run() {
        return;
    }
    let p = Podman::new();
    let r = Some(ours());
    let id = p
        .ok(
            r,
            &[
                "run",
                "-d",
                "localhost/bb",
                "sh",
                "-c",
                "trap 'echo got TERM; exit 7' TERM; echo started; while :; do sleep 0.1; done",
            ],
        )
        .trim()
        .to_string();
    let exec = p.ok(r, &["exec", &id, "sh", "-c", "echo in exec; id -u"]);
    assert_eq!(exec, "in exec\n0\n");
    // The exec'd process ends with its own exit code.
    let out = p.podman(r, &["exec", &id, "sh", "-c", "exit 9"]);
    assert_eq!(out.status.code(), Some(9));
    let top = p.ok(r, &["top", &id, "args"]);
    assert!(top.contains("while"), "{top}");
    p.ok(r, &["stop", "-t", "10", &id]);
    let code = p.ok(r, &["inspect", "-f", "{{.State.ExitCode}}", &id]);
    assert_eq!(code.trim(), "7", "the TERM handler's exit");
    let logs = p.ok(r, &["logs", &id]);
    assert!(
        logs.contains("started") && logs.contains("got TERM"),
        "{logs}"
    );
    p.ok(r, &["rm", &id]);
    assert_eq!(p.ok(None, &["ps", "-a", "-q"]).trim(), "");
}

#[test]
fn podman_volumes_read_only_and_terminals() {
    if !can_run() {
        return;
    }
    let p = Podman::new();
    let r = Some(ours());
    let vol = p.dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("f"), "from the host\n").unwrap();
    let v = format!("{}:/data", vol.display());
    let out = p.ok(
        r,
        &[
            "run",
            "--rm",
            "-v",
            &v,
            "localhost/bb",
            "sh",
            "-c",
            "cat /data/f; echo back > /data/g",
        ],
    );
    assert_eq!(out, "from the host\n");
    assert_eq!(std::fs::read_to_string(vol.join("g")).unwrap(), "back\n");
    let out = p.ok(
        r,
        &[
            "run",
            "--rm",
            "--read-only",
            "localhost/bb",
            "sh",
            "-c",
            "touch /x 2>/dev/null || echo ro; touch /tmp/y && echo tmp-ok",
        ],
    );
    assert_eq!(out, "ro\ntmp-ok\n");
    // -it through a terminal (script(1) gives podman one): the same under both. The
    // container waits a moment first: what it writes before podman has attached is lost
    // (with runc as with ours).
    let it = |runtime: &str| {
        let cmd = format!(
            "podman --root {root} --runroot {run} --cgroup-manager cgroupfs --events-backend file \
             --tmpdir {tmp} --runtime {runtime} run --rm -it localhost/bb \
             sh -c 'sleep 2; tty; ls /dev | sort; echo tty-ok'",
            root = p.dir.path().join("root").display(),
            run = p.dir.path().join("run").display(),
            tmp = p.dir.path().join("tmp").display(),
        );
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        // script(1) adds carriage returns, and a NUL echoed as "^@" at a moment of its own.
        text(&out.stdout)
            .replace("^@", "")
            .replace(['\r', '\0'], "")
    };
    let (ours_saw, theirs) = (it(ours()), it(runc().unwrap()));
    assert!(ours_saw.contains("tty-ok"), "{ours_saw}");
    assert!(ours_saw.starts_with("/dev/pts/0\n"), "{ours_saw}");
    assert_eq!(ours_saw, theirs);
}

#[test]
fn podman_joins_a_network_namespace_the_test_made() {
    if !can_run() {
        return;
    }
    let p = Podman::new();
    // A namespace of the test's own (`unshare -n`, kept by a bind mount on a file in its
    // directory): never the host's.
    let ns = p.dir.path().join("netns");
    std::fs::write(&ns, "").unwrap();
    let out = Command::new("unshare")
        .arg(format!("--net={}", ns.display()))
        .arg("true")
        .output()
        .unwrap();
    assert!(out.status.success(), "unshare: {}", text(&out.stderr));
    let inode = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&ns).unwrap().ino()
    };
    let network = format!("ns:{}", ns.display());
    let probe = "readlink /proc/self/ns/net; grep : /proc/net/dev | cut -d: -f1 | sort";
    let run = |runtime: Option<&str>| {
        p.ok(
            runtime,
            &[
                "run",
                "--rm",
                "--network",
                &network,
                "localhost/bb",
                "sh",
                "-c",
                probe,
            ],
        )
    };
    let (theirs, ours_saw) = (run(runc()), run(Some(ours())));
    assert_eq!(ours_saw, theirs);
    assert_eq!(
        ours_saw.lines().next(),
        Some(format!("net:[{inode}]").as_str())
    );
    assert!(ours_saw.lines().any(|l| l.trim() == "lo"), "{ours_saw}");
    let _ = nix::mount::umount2(&ns, nix::mount::MntFlags::MNT_DETACH);
}
