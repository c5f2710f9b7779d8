//! containerd drives kleene-runtime through its runc v2 shim — the shim its CRI plugin
//! uses for Kubernetes pods, with `BinaryName` — as `ctr run --runc-binary` does: the
//! test starts a containerd of its own (root, state and sockets in a temporary
//! directory, the CRI plugin on with a `kleene` runtime handler as the README shows it),
//! imports an OCI archive and runs the same containers with runc and with ours. These
//! need root, containerd, podman (to make the archive) and runc: they fail when
//! KLEENE_REQUIRE_ZFS=1 (as CI sets it) and skip otherwise.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{ours, runc, text};
use std::time::{Duration, Instant};

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "id", "sleep", "true", "grep", "touch", "sort", "mkdir",
];

fn can_run() -> bool {
    common::can_run(
        "containerd",
        &[
            ("containerd", "containerd"),
            ("ctr", "containerd"),
            ("podman", "podman"),
        ],
    )
}

/// A containerd of the test's own, with the image `localhost/bb:latest`.
struct Containerd {
    dir: tempfile::TempDir,
    daemon: Child,
}

impl Containerd {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kleene-containerd-test")
            .tempdir()
            .unwrap();
        let d = dir.path();
        // The CRI configuration of the README: a `kleene` handler over the runc v2 shim.
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "kleene"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kleene]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kleene.options]
  BinaryName = "{ours}"
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("sock").display(),
            ours = ours(),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let c = Containerd { dir, daemon };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not answer: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c.import_busybox();
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.dir.path().join("sock"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// An OCI archive of a busybox root (made with podman, in storage of its own),
    /// imported.
    fn import_busybox(&self) {
        let d = self.dir.path();
        let tar = common::busybox_tar(d, APPLETS);
        let podman = |args: &[&str]| {
            let mut cmd = Command::new("podman");
            cmd.arg("--root")
                .arg(d.join("podman-root"))
                .arg("--runroot")
                .arg(d.join("podman-run"))
                .arg("--tmpdir")
                .arg(d.join("podman-tmp"))
                .args(args);
            run(&mut cmd);
        };
        podman(&["import", tar.to_str().unwrap(), "localhost/bb:latest"]);
        let archive = d.join("bb.oci.tar");
        podman(&[
            "save",
            "--format",
            "oci-archive",
            "-o",
            archive.to_str().unwrap(),
            "localhost/bb:latest",
        ]);
        podman(&["rmi", "-a", "-f"]);
        self.ok(&[
            "image",
            "import",
            "--base-name",
            "localhost/bb",
            archive.to_str().unwrap(),
        ]);
    }

    /// `ctr run` of the image with `runtime` as the shim's runc binary.
    fn run(&self, runtime: &str, extra: &[&str], id: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["run", "--runc-binary", runtime];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["localhost/bb:latest", id]);
        args.extend_from_slice(cmd);
        self.ctr(&args)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for id in text(&self.ctr(&["task", "ls", "-q"]).stdout).lines() {
            let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
            let _ = self.ctr(&["task", "delete", "-f", id]);
        }
        for id in text(&self.ctr(&["container", "ls", "-q"]).stdout).lines() {
            let _ = self.ctr(&["container", "rm", id]);
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.daemon.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.daemon.wait();
        // The snapshotter's and shims' mounts below the test's directory.
        common::umount_below(self.dir.path());
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// What a container sees of itself.
const PROBE: &str = "id; pwd; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status; \
cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null; cat /sys/fs/cgroup/memory.max 2>/dev/null; \
ls /dev | sort; \
cat /proc/self/mountinfo | while read -r id parent dev root mp opts rest; do echo \"$mp $opts\"; done | sort; \
exit 6";

#[test]
fn ctr_runs_the_same_under_runc_and_ours() {
    if !can_run() {
        return;
    }
    let c = Containerd::start();
    // The CRI plugin took the `kleene` handler of the README's configuration.
    let plugins = c.ok(&["plugins", "ls"]);
    assert!(
        plugins
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .any(|f| f.len() >= 3
                && f[0] == "io.containerd.grpc.v1"
                && f[1] == "cri"
                && f[f.len() - 1] == "ok"),
        "{plugins}\n{}",
        c.log()
            .lines()
            .filter(|l| l.contains("cri"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let runc = runc().unwrap();
    let extra = ["--rm", "--memory-limit", "67108864"];
    let theirs = c.run(runc, &extra, "cmp-runc", &["sh", "-c", PROBE]);
    let ours_out = c.run(ours(), &extra, "cmp-ours", &["sh", "-c", PROBE]);
    assert_eq!(
        theirs.status.code(),
        Some(6),
        "runc: {}",
        text(&theirs.stderr)
    );
    assert_eq!(
        ours_out.status.code(),
        Some(6),
        "ours: {}",
        text(&ours_out.stderr)
    );
    let (a, b) = (text(&ours_out.stdout), text(&theirs.stdout));
    println!("under both:\n{a}");
    assert_eq!(a, b, "\nours:\n{a}\nrunc:\n{b}");
    assert!(c.ok(&["container", "ls", "-q"]).trim().is_empty());
}

#[test]
fn ctr_tasks_exec_ps_pause_resume_and_kill() {
    if !can_run() {
        return;
    }
    let c = Containerd::start();
    let script = "trap 'exit 7' TERM; i=0; \
                  while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done";
    let out = c.run(
        ours(),
        &["-d", "--memory-limit", "67108864"],
        "t1",
        &["sh", "-c", script],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The limit, as the host reads it in the task's cgroup.
    let pid = task_pid(&c, "t1");
    let groups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let limit = groups.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let (_, ctls, path) = (p.next()?, p.next()?, p.next()?);
        let file = if ctls.is_empty() {
            Path::new("/sys/fs/cgroup")
                .join(path.trim_start_matches('/'))
                .join("memory.max")
        } else if ctls.split(',').any(|c| c == "memory") {
            Path::new("/sys/fs/cgroup/memory")
                .join(path.trim_start_matches('/'))
                .join("memory.limit_in_bytes")
        } else {
            return None;
        };
        std::fs::read_to_string(file).ok()
    });
    assert_eq!(
        limit.as_deref().map(str::trim),
        Some("67108864"),
        "{groups}"
    );
    let tasks = c.ok(&["task", "ls"]);
    assert!(tasks.contains("t1") && tasks.contains("RUNNING"), "{tasks}");
    let exec = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "t1",
        "sh",
        "-c",
        "echo in exec; exit 5",
    ]);
    assert_eq!(exec.status.code(), Some(5), "{}", text(&exec.stderr));
    assert_eq!(text(&exec.stdout), "in exec\n");
    let ps = c.ok(&["task", "ps", "t1"]);
    assert!(ps.lines().count() >= 2, "{ps}");
    // Paused: the counter stands still.
    c.ok(&["task", "pause", "t1"]);
    assert!(c.ok(&["task", "ls"]).contains("PAUSED"));
    let root = PathBuf::from(format!("/proc/{}/root/tmp/n", task_pid(&c, "t1")));
    let first = std::fs::read_to_string(&root).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read_to_string(&root).unwrap(),
        first,
        "it ran while paused"
    );
    c.ok(&["task", "resume", "t1"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_ne!(
        std::fs::read_to_string(&root).unwrap(),
        first,
        "it did not resume"
    );
    // SIGTERM reaches the handler; its exit status is recorded.
    c.ok(&["task", "kill", "-s", "TERM", "t1"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tasks = c.ok(&["task", "ls"]);
        if tasks.contains("STOPPED") {
            break;
        }
        assert!(Instant::now() < deadline, "{tasks}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // ctr reports the exit status the shim recorded.
    let deleted = c.ctr(&["task", "delete", "t1"]);
    assert!(
        text(&deleted.stderr).contains("exit code 7"),
        "the exit status 7 is recorded: {}{}",
        text(&deleted.stdout),
        text(&deleted.stderr)
    );
    c.ok(&["container", "rm", "t1"]);
}

/// The host pid of task `id`.
fn task_pid(c: &Containerd, id: &str) -> i32 {
    c.ok(&["task", "ls"])
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .expect("the task's pid")
}
