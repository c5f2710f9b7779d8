//! The runtime driven as containerd's shim and conmon drive runc: the binary, a state
//! root of the test's own, bundles made by `kleene-runtime spec`, and this test process
//! as the child subreaper that inherits (and reaps) the containers' processes once the
//! runtime has exited. Where runc is installed (CI installs it), the same bundle is run
//! by both and what the container sees must be equal.
//!
//! These need root and /bin/busybox: they fail when KLEENE_REQUIRE_ZFS=1 (as CI sets),
//! and skip otherwise.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const APPLETS: &[&str] = &[
    "sh", "true", "false", "cat", "id", "hostname", "ls", "sleep", "env", "pwd", "touch", "echo",
    "grep", "head", "mkdir",
];

fn can_run() -> bool {
    let required = std::env::var("KLEENE_REQUIRE_ZFS").is_ok_and(|v| v == "1");
    let why = if !nix::unistd::geteuid().is_root() {
        Some("runtime tests need root")
    } else if !Path::new("/bin/busybox").exists() {
        Some("runtime tests need /bin/busybox (Debian package busybox-static)")
    } else {
        None
    };
    match why {
        None => {
            // Like conmon and the shim: orphaned container processes come to us.
            nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
            true
        }
        Some(why) if required => panic!("{why} (KLEENE_REQUIRE_ZFS=1)"),
        Some(why) => {
            eprintln!("skipping: {why}");
            false
        }
    }
}

/// A state root, and bundles below it.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("kleene-runtime-test")
                .tempdir()
                .unwrap(),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A bundle with a busybox root file system and `kleene-runtime spec`'s config.json,
    /// changed by `edit`.
    fn bundle(&self, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let b = self.dir.path().join(name);
        let rootfs = b.join("rootfs");
        for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "out"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
        let out = self.rt(&["spec", "--bundle", b.to_str().unwrap()]);
        assert!(out.status.success(), "spec: {}", text(&out.stderr));
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
        edit(&mut config);
        std::fs::write(b.join("config.json"), config.to_string()).unwrap();
        b
    }

    fn rt(&self, args: &[&str]) -> Output {
        runtime(env!("CARGO_BIN_EXE_kleene-runtime"), &self.root(), args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.rt(args);
        assert!(
            out.status.success(),
            "kleene-runtime {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }
}

/// Runs a runtime command. Its output goes to files, not pipes: a created container's
/// process inherits the runtime's stdio (as under conmon), and a pipe would stay open.
fn runtime(program: &str, root: &Path, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let status = Command::new(program)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn set_args(config: &mut Value, args: &[&str]) {
    config["process"]["args"] = json!(args);
}

/// Binds the host directory `host` at /out in the container.
fn bind_out(config: &mut Value, host: &Path) {
    config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/out", "type": "bind", "source": host, "options": ["rbind", "rw"]
    }));
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reaps `pid`, which became our child when the runtime exited; its exit status.
fn reap(pid: i32) -> nix::sys::wait::WaitStatus {
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).expect("our orphan")
}

#[test]
fn create_holds_the_process_until_start_then_kill_and_delete() {
    if !can_run() {
        return;
    }
    let s = Scratch::new();
    let out = s.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let b = s.bundle("b1", |c| {
        set_args(c, &["sh", "-c", "echo ran > /out/marker; exec sleep 600"]);
        bind_out(c, &out);
    });
    let pid_file = s.dir.path().join("pid");
    s.ok(&[
        "create",
        "--bundle",
        b.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "c1",
    ]);
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let st = s.state("c1");
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], pid);
    assert_eq!(st["bundle"], b.to_str().unwrap());
    // Held: the program has not run.
    std::thread::sleep(Duration::from_millis(200));
    assert!(!out.join("marker").exists());
    // A second create of the id is refused, and leaves the first alone.
    let again = s.rt(&["create", "--bundle", b.to_str().unwrap(), "c1"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    s.ok(&["start", "c1"]);
    wait_for("the program", || out.join("marker").exists());
    assert_eq!(s.state("c1")["status"], "running");
    // Start is for created containers only.
    assert!(!s.rt(&["start", "c1"]).status.success());
    // A running container is not deleted without --force.
    let del = s.rt(&["delete", "c1"]);
    assert!(!del.status.success());
    assert!(
        text(&del.stderr).contains("running"),
        "{}",
        text(&del.stderr)
    );
    let list: Value = serde_json::from_str(&s.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list[0]["id"], "c1");
    assert_eq!(list[0]["status"], "running");
    let ps: Vec<i32> = serde_json::from_str(&s.ok(&["ps", "--format", "json", "c1"])).unwrap();
    assert_eq!(ps, [pid]);
    s.ok(&["kill", "c1", "KILL"]);
    assert_eq!(
        reap(pid),
        nix::sys::wait::WaitStatus::Signaled(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
            false
        )
    );
    assert_eq!(s.state("c1")["status"], "stopped");
    assert!(s.state("c1").get("pid").is_none());
    s.ok(&["delete", "c1"]);
    let gone = s.rt(&["state", "c1"]);
    assert!(!gone.status.success());
    assert!(text(&gone.stderr).contains("does not exist"));
    assert!(std::fs::read_dir(s.root()).unwrap().next().is_none());
}

#[test]
fn run_returns_the_exit_code_and_removes_the_container() {
    if !can_run() {
        return;
    }
    let s = Scratch::new();
    let b = s.bundle("b", |c| set_args(c, &["sh", "-c", "exit 7"]));
    let out = s.rt(&["run", "--bundle", b.to_str().unwrap(), "r1"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(std::fs::read_dir(s.root()).unwrap().next().is_none());
}

#[test]
fn delete_force_kills_a_running_container_and_hooks_see_the_state() {
    if !can_run() {
        return;
    }
    let s = Scratch::new();
    let log = s.dir.path().join("hooks.log");
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat >> {}; echo ' {name}' >> {}", log.display(), log.display())]});
    let b = s.bundle("b", |c| {
        set_args(c, &["sleep", "600"]);
        c["hooks"] = json!({
            "prestart": [hook("prestart")],
            "createRuntime": [hook("createRuntime")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        });
    });
    s.ok(&["create", "--bundle", b.to_str().unwrap(), "h1"]);
    let pid = s.state("h1")["pid"].as_i64().unwrap() as i32;
    s.ok(&["start", "h1"]);
    s.ok(&["delete", "--force", "h1"]);
    reap(pid);
    let got = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 4, "{got}");
    for (line, (name, status)) in lines.iter().zip([
        ("prestart", "created"),
        ("createRuntime", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ]) {
        let (state, hook) = line.rsplit_once(' ').unwrap();
        assert_eq!(hook, name);
        let state: Value = serde_json::from_str(state).unwrap();
        assert_eq!(state["id"], "h1");
        assert_eq!(state["status"], status, "{name}");
    }
}

#[test]
fn exec_runs_in_the_container() {
    if !can_run() {
        return;
    }
    let s = Scratch::new();
    let b = s.bundle("b", |c| {
        set_args(c, &["sleep", "600"]);
        c["hostname"] = json!("inside");
    });
    s.ok(&["create", "--bundle", b.to_str().unwrap(), "e1"]);
    let pid = s.state("e1")["pid"].as_i64().unwrap() as i32;
    // Exec needs a running container.
    assert!(!s.rt(&["exec", "e1", "true"]).status.success());
    s.ok(&["start", "e1"]);
    assert_eq!(s.ok(&["exec", "e1", "hostname"]).trim(), "inside");
    assert_eq!(s.ok(&["exec", "--cwd", "/tmp", "e1", "pwd"]).trim(), "/tmp");
    let env = s.ok(&["exec", "--env", "X=1", "e1", "env"]);
    assert!(env.lines().any(|l| l == "X=1"), "{env}");
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    let code = s.rt(&["exec", "e1", "sh", "-c", "exit 3"]).status.code();
    assert_eq!(code, Some(3));
    // Detached, with a pid file: the process outlives the runtime.
    let pid_file = s.dir.path().join("exec.pid");
    s.ok(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "e1",
        "sleep",
        "600",
    ]);
    let exec_pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let ps: Vec<i32> = serde_json::from_str(&s.ok(&["ps", "--format", "json", "e1"])).unwrap();
    assert!(ps.contains(&exec_pid) && ps.contains(&pid), "{ps:?}");
    s.ok(&["kill", "--all", "e1", "KILL"]);
    // The exec'd process first: a pid namespace's init finishes dying only once the
    // namespace's other processes are reaped.
    reap(exec_pid);
    reap(pid);
    s.ok(&["delete", "e1"]);
}

#[test]
fn a_terminal_goes_to_the_console_socket() {
    if !can_run() {
        return;
    }
    use std::os::unix::net::UnixListener;
    let s = Scratch::new();
    let b = s.bundle("b", |c| {
        set_args(c, &["sh", "-c", "tty; echo hello"]);
        c["process"]["terminal"] = json!(true);
    });
    let sock = s.dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let receiver = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        rustix::net::recvmsg(
            &conn,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut control,
            rustix::net::RecvFlags::empty(),
        )
        .unwrap();
        control
            .drain()
            .find_map(|m| match m {
                rustix::net::RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
                _ => None,
            })
            .expect("the master")
    });
    s.ok(&[
        "create",
        "--bundle",
        b.to_str().unwrap(),
        "--console-socket",
        sock.to_str().unwrap(),
        "t1",
    ]);
    let master = receiver.join().unwrap();
    let pid = s.state("t1")["pid"].as_i64().unwrap() as i32;
    s.ok(&["start", "t1"]);
    let mut f = std::fs::File::from(master);
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    // The slave's last close ends the reads with EIO.
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let got = text(&got);
    // A terminal of the container's own devpts, as runc makes it.
    assert!(got.contains("/dev/pts/0"), "{got:?}");
    assert!(!got.contains("not a tty"), "{got:?}");
    assert!(got.contains("hello\r\n"), "{got:?}");
    reap(pid);
    s.ok(&["delete", "t1"]);
    // Without a socket, a terminal is refused before anything is made.
    let out = s.rt(&["create", "--bundle", b.to_str().unwrap(), "t2"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("process.terminal"));
    assert!(std::fs::read_dir(s.root()).unwrap().next().is_none());
}

#[test]
fn bad_bundles_are_refused_by_field_and_leave_nothing() {
    if !can_run() {
        return;
    }
    let s = Scratch::new();
    let check = |b: &Path, id: &str, want: &str| {
        let out = s.rt(&["create", "--bundle", b.to_str().unwrap(), id]);
        assert!(!out.status.success(), "{id} was accepted");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{id}: {err:?} lacks {want:?}");
        assert!(!s.root().join(id).exists(), "{id} left its state");
    };
    let good = s.bundle("good", |c| set_args(c, &["true"]));
    check(&good, "../x", "invalid container id");
    check(&good, "a/b", "invalid container id");
    let broken = s.bundle("broken", |_| {});
    std::fs::write(broken.join("config.json"), "{\"ociVersion\": ").unwrap();
    check(&broken, "j1", "config.json");
    let ns = s.bundle("ns", |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "nosuch"}));
    });
    check(&ns, "n1", "config.json");
    let no_root = s.bundle("noroot", |c| c["root"]["path"] = json!("missing"));
    check(&no_root, "r1", "root.path");
    let seccomp = s.bundle("seccomp", |c| {
        c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO"}]})
    });
    check(&seccomp, "s1", "linux.seccomp");
    let blkio = s.bundle("blkio", |c| {
        c["linux"]["resources"]["blockIO"] = json!({"weight": 100});
    });
    check(&blkio, "b1", "linux.resources.blockIO");
    let tiny = s.bundle("tiny", |c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 1024});
        c["linux"]["cgroupsPath"] = json!("/kleene-rt-test/tiny");
    });
    check(&tiny, "t1", "memory limit");
    assert!(!Path::new("/sys/fs/cgroup/memory/kleene-rt-test/tiny").exists());
    let cwd = s.bundle("cwd", |c| c["process"]["cwd"] = json!("relative"));
    check(&cwd, "w1", "process.cwd");
    // A mount destination through a symlink that leaves the root: refused, and the host's
    // directory it points at gets nothing.
    let host_dir = s.dir.path().join("host-target");
    std::fs::create_dir(&host_dir).unwrap();
    let escape = s.bundle("escape", |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/link/x", "type": "tmpfs", "source": "tmpfs"
        }));
    });
    std::os::unix::fs::symlink("../../host-target", escape.join("rootfs/link")).unwrap();
    check(&escape, "m1", "/link");
    assert!(std::fs::read_dir(&host_dir).unwrap().next().is_none());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(host_dir.to_str().unwrap()), "{mounts}");
}

/// runc, to compare with; `None` (skip) when it is missing, which fails the test when
/// KLEENE_REQUIRE_ZFS=1 (as CI sets it).
fn runc_to_compare() -> Option<&'static str> {
    let found = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if found.is_none() {
        assert!(
            std::env::var("KLEENE_REQUIRE_ZFS").as_deref() != Ok("1"),
            "runc is needed to compare with (Debian package runc)"
        );
        eprintln!("skipping: no runc");
    }
    found
}

/// What a container sees of itself, as text to compare between runtimes.
const PROBE: &str = "id; pwd; hostname; env | grep -v '^HOSTNAME=' | sort; \
grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status; \
grep -E 'Max open files|Max processes' /proc/self/limits; \
cat /proc/self/uid_map; \
cat /proc/self/mountinfo | while read -r id parent dev root mp opts rest; do echo \"$mp $opts\"; done | sort; \
ls /dev | sort; head -c 1 /proc/kcore | wc -c; touch /proc/sys/x 2>&1 | head -1; exit 5";

#[test]
fn a_container_sees_what_it_sees_under_runc() {
    if !can_run() {
        return;
    }
    let Some(runc) = runc_to_compare() else {
        return;
    };
    let s = Scratch::new();
    let b = s.bundle("b", |c| {
        set_args(c, &["sh", "-c", PROBE]);
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!("PROBE=1"));
        c["process"]["cwd"] = json!("/tmp");
    });
    let ours = s.rt(&["run", "--bundle", b.to_str().unwrap(), "cmp-ours"]);
    let theirs = runtime(
        runc,
        &s.dir.path().join("runc-state"),
        &["run", "--bundle", b.to_str().unwrap(), "cmp-runc"],
    );
    assert_eq!(
        theirs.status.code(),
        Some(5),
        "runc: {}",
        text(&theirs.stderr)
    );
    assert_eq!(ours.status.code(), Some(5), "ours: {}", text(&ours.stderr));
    let (ours, theirs) = (text(&ours.stdout), text(&theirs.stdout));
    println!("what the container saw, under both:\n{ours}");
    for (a, b) in ours.lines().zip(theirs.lines()) {
        assert_eq!(a, b, "\nours:\n{ours}\nrunc:\n{theirs}");
    }
    assert_eq!(
        ours.lines().count(),
        theirs.lines().count(),
        "\nours:\n{ours}\nrunc:\n{theirs}"
    );
}

/// What the host reads of a process's cgroup: `controller file` → value.
fn cgroup_values(pid: i32) -> Vec<String> {
    let groups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mut out = Vec::new();
    for (controller, file) in [
        ("memory", "memory.limit_in_bytes"),
        ("memory", "memory.memsw.limit_in_bytes"),
        ("pids", "pids.max"),
        ("cpu", "cpu.cfs_quota_us"),
        ("cpu", "cpu.cfs_period_us"),
        ("devices", "devices.list"),
    ] {
        let Some(path) = groups.lines().find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctls, path) = (p.next()?, p.next()?, p.next()?);
            ctls.split(',')
                .any(|c| c == controller)
                .then(|| path.to_string())
        }) else {
            continue;
        };
        let f = Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(path.trim_start_matches('/'))
            .join(file);
        if let Ok(v) = std::fs::read_to_string(&f) {
            // The same rules, in whatever order the runtime wrote them.
            let mut lines: Vec<&str> = v.lines().collect();
            lines.sort_unstable();
            out.push(format!("{file}: {}", lines.join(" | ")));
        }
    }
    out
}

#[test]
fn limits_devices_and_seccomp_match_runc() {
    if !can_run() {
        return;
    }
    let Some(runc) = runc_to_compare() else {
        return;
    };
    if !Path::new("/sys/fs/cgroup/devices/devices.list").exists() {
        eprintln!("skipping: this comparison reads cgroup v1's files");
        return;
    }
    let s = Scratch::new();
    let script = "{ grep Seccomp: /proc/self/status; mkdir /tmp/x 2>&1; echo mkdir=$?; \
                  echo x > /dev/null && echo null-ok; \
                  i=0; while [ $i -lt 30 ]; do sleep 2 & i=$((i+1)); done 2>/dev/null; \
                  echo forked; } > /out/r 2>&1; exit 3";
    let bundle = |id: &str, out: &Path| {
        s.bundle(&format!("b-{id}"), |c| {
            set_args(c, &["sh", "-c", script]);
            bind_out(c, out);
            c["linux"]["cgroupsPath"] = json!(format!("/kleene-rt-test/{id}"));
            c["linux"]["resources"] = json!({
                "devices": [{"allow": false, "access": "rwm"},
                            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}],
                "memory": {"limit": 67108864, "swap": 67108864},
                "cpu": {"quota": 50000, "period": 100000},
                "pids": {"limit": 20}
            });
            c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                              "errnoRet": 13}]});
        })
    };
    // Each runtime: create (held), read the task's cgroup from the host, start, reap.
    let mut seen = Vec::new();
    for (name, program, root) in [
        (
            "ours",
            env!("CARGO_BIN_EXE_kleene-runtime").to_string(),
            s.root(),
        ),
        ("runc", runc.to_string(), s.dir.path().join("runc-state")),
    ] {
        let id = format!("lim-{name}");
        let out_dir = s.dir.path().join(format!("out-{id}"));
        std::fs::create_dir(&out_dir).unwrap();
        let b = bundle(&id, &out_dir);
        let pid_file = s.dir.path().join(format!("{id}.pid"));
        let out = runtime(
            &program,
            &root,
            &[
                "create",
                "--bundle",
                b.to_str().unwrap(),
                "--pid-file",
                pid_file.to_str().unwrap(),
                &id,
            ],
        );
        assert!(out.status.success(), "{name} create: {}", text(&out.stderr));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let values = cgroup_values(pid);
        let out = runtime(&program, &root, &["start", &id]);
        assert!(out.status.success(), "{name} start: {}", text(&out.stderr));
        // The fork loop runs into the pids limit (busybox's sh gives up there): the
        // same end under both.
        let status = match reap(pid) {
            nix::sys::wait::WaitStatus::Exited(_, code) => code,
            other => panic!("{name}: {other:?}"),
        };
        let out = runtime(&program, &root, &["delete", &id]);
        assert!(out.status.success(), "{name} delete: {}", text(&out.stderr));
        assert!(
            !Path::new(&format!("/sys/fs/cgroup/pids/kleene-rt-test/{id}")).exists(),
            "{name} left its cgroup"
        );
        let said = std::fs::read_to_string(out_dir.join("r")).unwrap();
        seen.push((values, said, status));
    }
    println!("the cgroups, as the host reads them, and what the container said: {seen:#?}");
    assert_eq!(seen[0], seen[1], "ours, then runc's");
    let (seen, said, _) = &seen[0];
    assert!(said.contains("Seccomp:\t2"), "{said}");
    assert!(
        said.contains("Permission denied") && said.contains("null-ok"),
        "{said}"
    );
    assert!(seen.contains(&"pids.max: 20".to_string()), "{seen:?}");
    assert!(seen.contains(&"memory.limit_in_bytes: 67108864".to_string()));
    assert!(
        seen.iter()
            .any(|l| l.starts_with("devices.list:") && l.contains("c 1:3 rwm") && !l.contains('a')),
        "{seen:?}"
    );
}

#[test]
fn a_user_namespace_from_uid_mappings_matches_runc() {
    if !can_run() {
        return;
    }
    let Some(runc) = runc_to_compare() else {
        return;
    };
    let s = Scratch::new();
    // Container root is host uid 100000: the bundle must be searchable by it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let b = s.bundle("u", |c| {
        set_args(
            c,
            &["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id; ls -ln /bin/busybox | cut -c1-30; exit 4"],
        );
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        // runc's rootless-style /sys under a user namespace on the host's network.
        c["root"]["readonly"] = json!(false);
    });
    let ours = s.rt(&["run", "--bundle", b.to_str().unwrap(), "u-ours"]);
    let theirs = runtime(
        runc,
        &s.dir.path().join("runc-state"),
        &["run", "--bundle", b.to_str().unwrap(), "u-runc"],
    );
    assert_eq!(
        theirs.status.code(),
        Some(4),
        "runc: {}",
        text(&theirs.stderr)
    );
    assert_eq!(ours.status.code(), Some(4), "ours: {}", text(&ours.stderr));
    let (ours, theirs) = (text(&ours.stdout), text(&theirs.stdout));
    println!("under both:\n{ours}");
    assert_eq!(ours, theirs);
    assert!(ours.contains("100000"), "{ours}");
    assert!(ours.contains("uid=0(root)"), "{ours}");
    // Mappings without the namespace are refused by field.
    let bad = s.bundle("ubad", |c| {
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 1}]);
    });
    let out = s.rt(&["create", "--bundle", bad.to_str().unwrap(), "ubad"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("linux.uidMappings"));
}
