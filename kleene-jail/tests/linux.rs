//! Jails on real Linux namespaces. These need root: they fail when KLEENE_REQUIRE_ZFS=1 (as
//! CI sets it) and skip with a message otherwise. Every test makes its own root in its own
//! temporary directory, so they run in parallel threads safely; none changes the host's
//! mount table (each jail's mounts live in its own mount namespace).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kleene_jail::{
    processes_under, stop_processes_under, Error, ExecConfig, ExitStatus, JailConfig, JailHandle,
    JailParam, Lifetime, Mount, NetworkMode, Signal, Stdio, WinSize,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

const APPLETS: &[&str] = &[
    "sh", "true", "false", "cat", "id", "hostname", "ls", "ps", "sleep", "env", "ip", "pwd",
    "touch", "echo", "kill", "stty", "tty", "mount", "readlink", "stat", "grep", "wc", "head",
];

/// Whether the test can run; panics (fails the test) when root is required but missing.
fn can_run() -> bool {
    common::can_run("jail", || None)
}

/// A container root built from busybox-static, with users that do not exist on the host.
struct TestRoot {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl TestRoot {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kleene-jail-test")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        for d in [
            "bin",
            "etc",
            "proc",
            "dev",
            "tmp",
            "home/kleenetest",
            "root",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        // A hard link where possible: a copy is open for writing for a moment, and a jail
        // cloned by another test thread at that moment would make exec fail with ETXTBSY
        // (the library retries that, but the tests need not rely on it).
        if std::fs::hard_link("/bin/busybox", root.join("bin/busybox")).is_err() {
            std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        }
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
        }
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n\
             kleenetest:x:4321:4322:Kleene Test:/home/kleenetest:/bin/sh\n\
             daemon:x:4500:4500:daemon with another uid than the host's:/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            root.join("etc/group"),
            "root:x:0:\nktgroup:x:4322:\nktextra:x:4400:kleenetest\ndaemon:x:4500:\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        TestRoot { dir, root }
    }

    fn config(&self) -> JailConfig {
        JailConfig::new(&self.root).name("t").hostname("jailhost")
    }

    /// Lines of the host's mount table that mention this test's directory.
    fn host_mounts(&self) -> Vec<String> {
        let dir = self.dir.path().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&dir))
            .map(str::to_owned)
            .collect()
    }
}

async fn run(cfg: JailConfig) -> (ExitStatus, String, String) {
    let mut jail = cfg
        .stdout(Stdio::Piped)
        .stderr(Stdio::Piped)
        .stdin(Stdio::Null)
        .start()
        .await
        .unwrap();
    let o = jail.output().await.unwrap();
    (
        o.status,
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn sh(t: &TestRoot, script: &str) -> JailConfig {
    t.config().command(["/bin/sh", "-c", script])
}

fn param(s: &str) -> JailParam {
    s.parse().unwrap()
}

/// Runs `f` on a fresh root and checks afterwards that the host's mount table has nothing
/// of the test's directory.
async fn with_root<F, Fut>(f: F)
where
    F: FnOnce(TestRoot) -> Fut,
    Fut: std::future::Future<Output = TestRoot>,
{
    let t = TestRoot::new();
    let before = t.host_mounts();
    assert!(before.is_empty(), "{before:?}");
    let t = f(t).await;
    assert_eq!(t.host_mounts(), before, "the host mount table changed");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostname_is_set() {
    if !can_run() {
        return;
    }
    let t = TestRoot::new();
    let (st, out, _) = run(t.config().command(["hostname"])).await;
    assert_eq!(st, ExitStatus::Exited(0));
    assert_eq!(out.trim(), "jailhost");
    let (_, out, _) = run(t
        .config()
        .command(["hostname"])
        .param("host.hostname=fromparam".parse().unwrap()))
    .await;
    assert_eq!(out.trim(), "fromparam");
}

#[tokio::test(flavor = "multi_thread")]
async fn command_is_pid_1_and_sees_no_host_process() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let (st, out, err) = run(sh(&t, "echo $$; ls /proc")).await;
        assert!(st.success(), "{err}");
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("1"));
        let pids: Vec<u32> = out
            .split_whitespace()
            .skip(1)
            .filter_map(|w| w.parse().ok())
            .collect();
        // The shell (1) and, unless busybox runs it in-process, ls (2): nothing of the host.
        assert!(pids == [1] || pids == [1, 2], "{out}");
        let (_, out, _) = run(t.config().command(["ps"])).await;
        assert_eq!(out.lines().count(), 2, "{out}");
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn files_outside_the_root_are_unreachable() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let secret = t.dir.path().join("secret");
        std::fs::write(&secret, "host secret\n").unwrap();
        // Absolute and relative symlinks out of the root.
        std::os::unix::fs::symlink(&secret, t.root.join("abs-link")).unwrap();
        std::os::unix::fs::symlink("../../secret", t.root.join("tmp/rel-link")).unwrap();
        let script = format!(
            "cat ../secret /../secret /abs-link /tmp/rel-link /proc/self/root/../secret \
             /proc/1/root/../secret {secret} 2>/dev/null; \
             ls -a /proc/self/root/.. | wc -l; ls -a / | wc -l; echo done",
            secret = secret.display()
        );
        let (_, out, _) = run(sh(&t, &script)).await;
        assert!(!out.contains("host secret"), "{out}");
        let mut nums = out.lines().take(2);
        // `..` of the root is the root.
        assert_eq!(nums.next(), nums.next(), "{out}");
        assert!(out.ends_with("done\n"), "{out}");
        // Only the jail's own mounts are visible: root, /proc, /dev, /dev/pts, /dev/shm.
        let (_, out, _) = run(t.config().command(["cat", "/proc/self/mountinfo"])).await;
        let points: Vec<&str> = out.lines().map(|l| l.split(' ').nth(4).unwrap()).collect();
        assert_eq!(
            points,
            vec!["/", "/proc", "/dev", "/dev/pts", "/dev/shm"],
            "{out}"
        );
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_and_signals_propagate() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let (st, _, _) = run(sh(&t, "exit 7")).await;
        assert_eq!(st, ExitStatus::Exited(7));
        let mut jail = t.config().command(["sleep", "100"]).start().await.unwrap();
        jail.signal(Signal::SIGKILL).unwrap();
        assert_eq!(jail.wait().await.unwrap(), ExitStatus::Signaled(9));
        // With the init, the command is pid 2 and can die of its own signal.
        let (st, _, _) = run(sh(&t, "kill -TERM $$").init(true)).await;
        assert_eq!(st, ExitStatus::Signaled(15));
        let (st, out, _) = run(sh(&t, "echo $$; exit 3").init(true)).await;
        assert_eq!((st, out.as_str()), (ExitStatus::Exited(3), "2\n"));
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn init_reaps_orphans_and_forwards_signals() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        // The subshell's sleep is orphaned; init (pid 1) must reap it.
        let (st, out, _) = run(sh(
            &t,
            "(sleep 0.1 &); sleep 0.5; cat /proc/[0-9]*/stat | while read pid comm state rest; do echo $pid $state; done",
        )
        .init(true))
        .await;
        assert!(st.success());
        assert!(!out.contains(" Z"), "a zombie remained: {out}");
        assert!(out.lines().any(|l| l == "1 S"), "{out}");
        // stop: SIGTERM reaches the command through the init at once.
        let mut jail = t.config().command(["sleep", "100"]).init(true).start().await.unwrap();
        let st = tokio::time::timeout(Duration::from_secs(5), jail.stop(Duration::from_secs(30)))
            .await
            .expect("SIGTERM was forwarded")
            .unwrap();
        assert_eq!(st, ExitStatus::Signaled(15));
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn users_come_from_the_containers_passwd() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let script =
            "id -u; id -g; id -G; echo $HOME $USER; grep -E 'CapBnd|NoNewPrivs' /proc/self/status";
        let (st, out, err) = run(sh(&t, script).user("kleenetest")).await;
        assert!(st.success(), "{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            &lines[..4],
            &["4321", "4322", "4322 4400", "/home/kleenetest kleenetest"]
        );
        assert!(lines[4].ends_with("00000000a80425fb"), "{out}");
        assert!(lines[5].ends_with('1'), "{out}");
        // daemon is uid 1 on the host, 4500 in this container.
        let (_, out, _) = run(t.config().command(["id", "-u"]).user("daemon")).await;
        assert_eq!(out.trim(), "4500");
        // uid:gid, and exec.jail_user wins over the typed user.
        let (_, out, _) = run(sh(&t, "id -u; id -G").user("1234:5678")).await;
        assert_eq!(out, "1234\n5678\n");
        let (_, out, _) = run(t
            .config()
            .command(["id", "-u"])
            .user("daemon")
            .param(param("exec.jail_user=kleenetest")))
        .await;
        assert_eq!(out.trim(), "4321");
        // root keeps Docker's capability set, without no_new_privs.
        let (_, out, _) = run(t.config().command([
            "grep",
            "-E",
            "CapBnd|CapEff|NoNewPrivs",
            "/proc/self/status",
        ]))
        .await;
        assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
        assert!(out.contains("NoNewPrivs:\t0"), "{out}");
        t
    })
    .await;
}

fn host_only_variable() -> (String, String) {
    std::env::vars()
        .find(|(k, _)| !["PATH", "HOME", "SHELL", "USER", "LOGNAME", "TERM"].contains(&k.as_str()))
        .expect("cargo sets CARGO_* variables for tests")
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_clean_clears_the_environment() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let (k, v) = host_only_variable();
        let (_, out, _) = run(t.config().command(["env"]).env("GIVEN", "yes")).await;
        assert!(!out.contains(&format!("{k}=")), "{out}");
        assert!(out.contains("GIVEN=yes"));
        assert!(out.contains("HOME=/root"));
        let (_, out, _) = run(t.config().command(["env"]).param(param("exec.noclean"))).await;
        assert!(out.contains(&format!("{k}={v}")), "{out}");
        let (_, out, _) = run(t.config().command(["env"]).clean_env(false)).await;
        assert!(out.contains(&format!("{k}={v}")), "{out}");
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn workdir() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let (_, out, _) = run(t.config().command(["pwd"]).workdir("/home/kleenetest")).await;
        assert_eq!(out.trim(), "/home/kleenetest");
        let (_, out, _) = run(t.config().command(["pwd"])).await;
        assert_eq!(out.trim(), "/");
        let err = t
            .config()
            .command(["pwd"])
            .workdir("/nowhere")
            .start()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::WorkdirNotFound { .. }), "{err}");
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_mounts() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let src = t.dir.path().join("data");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("file"), "from the host\n").unwrap();
        let cfg = t.config().mount(Mount::bind(&src, "/mnt/ro").read_only());
        let (st, out, err) = run(cfg.command([
            "sh",
            "-c",
            "cat /mnt/ro/file; touch /mnt/ro/new && echo wrote; echo $?",
        ]))
        .await;
        assert!(st.success());
        assert_eq!(out, "from the host\n1\n", "{err}");
        assert!(err.contains("Read-only file system"), "{err}");
        assert!(!src.join("new").exists());
        // Read-write, and a target whose parent is an absolute symlink in the image: the
        // mount lands inside the root.
        std::os::unix::fs::symlink("/tmp", t.root.join("linked")).unwrap();
        let cfg = t.config().mount(Mount::bind(&src, "/linked/rw"));
        let (st, _, err) = run(cfg.command(["touch", "/tmp/rw/new"])).await;
        assert!(st.success(), "{err}");
        assert!(src.join("new").exists());
        assert!(t.root.join("tmp/rw").is_dir());
        // A file target that is a dangling symlink in the image: its target is made
        // inside the root and mounted on, as a chrooted open(O_CREAT) would find it.
        let conf = t.dir.path().join("resolv.conf");
        std::fs::write(&conf, "nameserver 192.0.2.1\n").unwrap();
        std::fs::create_dir_all(t.root.join("run")).unwrap();
        std::os::unix::fs::symlink("/run/resolv.conf", t.root.join("etc/resolv.conf")).unwrap();
        let cfg = t
            .config()
            .mount(Mount::bind(&conf, "/etc/resolv.conf").read_only());
        let (st, out, err) = run(cfg.command(["cat", "/run/resolv.conf"])).await;
        assert!(st.success(), "{err}");
        assert_eq!(out, "nameserver 192.0.2.1\n");
        assert!(t.root.join("run/resolv.conf").is_file());
        // A target through a symlink climbing above the root is refused before the jail
        // starts, and nothing is made outside.
        std::os::unix::fs::symlink("../../../../../../../../..", t.root.join("up")).unwrap();
        let err = t
            .config()
            .mount(Mount::bind(&src, "/up/kleene-escape"))
            .command(["true"])
            .start()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("leads out of the root"), "{err}");
        assert!(!Path::new("/kleene-escape").exists());
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_network_has_only_lo() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let ifaces = |text: &str| -> Vec<String> {
            text.lines()
                .skip(2)
                .filter_map(|l| l.split(':').next())
                .map(|n| n.trim().to_owned())
                .collect()
        };
        let cfg = t.config().network(NetworkMode::Disabled);
        let (_, out, _) = run(cfg.command(["cat", "/proc/net/dev"])).await;
        assert_eq!(ifaces(&out), vec!["lo"]);
        let cfg = t.config().network(NetworkMode::Disabled);
        let (_, out, _) = run(cfg.command(["ip", "link", "show", "lo"])).await;
        assert!(out.contains("UP"), "{out}");
        let host = ifaces(&std::fs::read_to_string("/proc/net/dev").unwrap());
        let (_, out, _) = run(t.config().command(["cat", "/proc/net/dev"])).await;
        assert_eq!(ifaces(&out), host);
        t
    })
    .await;
}

/// A jail joins the network namespace it is given (held by a descriptor only).
#[tokio::test(flavor = "multi_thread")]
async fn joins_a_given_network_namespace() {
    if !can_run() {
        return;
    }
    use std::os::fd::AsFd;
    // Made on a thread of its own: unshare moves only the calling thread.
    let fd = std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
        std::fs::File::open("/proc/thread-self/ns/net").expect("the new namespace")
    })
    .join()
    .expect("the thread");
    let ino = nix::sys::stat::fstat(fd.as_fd()).expect("fstat").st_ino;
    let ns = kleene_jail::NetNs::new(fd.into());
    with_root(|t| async move {
        let cfg = t.config().network(NetworkMode::Namespace(ns.clone()));
        let (st, out, err) = run(cfg.command(["readlink", "/proc/self/ns/net"])).await;
        assert!(st.success(), "{err}");
        assert_eq!(out.trim(), format!("net:[{ino}]"));
        let host = std::fs::read_link("/proc/self/ns/net").unwrap();
        assert_ne!(out.trim(), host.to_string_lossy());
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn devfs() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let (st, out, err) = run(sh(
            &t,
            "echo x > /dev/null && head -c 4 /dev/zero | wc -c && ls /dev | sort | tr '\\n' ' '",
        )
        .user("kleenetest"))
        .await;
        assert!(st.success(), "{err}");
        assert_eq!(
            out,
            "4\nfd full null ptmx pts random shm stderr stdin stdout tty urandom zero "
        );
        let (_, out, _) = run(t
            .config()
            .command(["ls", "/dev"])
            .param(param("mount.nodevfs")))
        .await;
        assert_eq!(out, "");
        let (_, out, _) = run(t.config().command(["ls", "/dev"]).devfs(false)).await;
        assert_eq!(out, "");
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_into_a_running_jail() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let mut jail = t.config().command(["sleep", "100"]).start().await.unwrap();
        let cfg = ExecConfig::new([
            "sh",
            "-c",
            "hostname; echo $$; cat /proc/1/comm; id -u; pwd",
        ])
        .user("kleenetest")
        .workdir("/tmp")
        .stdout(Stdio::Piped)
        .stderr(Stdio::Piped);
        let mut p = jail.exec(&cfg).await.unwrap();
        let o = p.output().await.unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8(o.stdout).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "jailhost");
        let pid: u32 = lines[1].parse().unwrap();
        assert!(pid > 1 && pid < 100, "{out}");
        assert_eq!(&lines[2..], &["sleep", "4321", "/tmp"]);
        // From a handle rebuilt out of persisted fields, as another process would.
        let h = jail.handle().clone();
        let again = JailHandle::new(h.name.clone(), h.id, h.pid, h.root.clone());
        assert!(again.is_running());
        let mut p = again
            .exec(
                &ExecConfig::new(["cat"])
                    .stdin(Stdio::Piped)
                    .stdout(Stdio::Piped),
            )
            .await
            .unwrap();
        let mut stdin = p.stdin.take().unwrap();
        stdin.write_all(b"through stdin\n").await.unwrap();
        drop(stdin);
        let o = p.output().await.unwrap();
        assert_eq!(o.stdout, b"through stdin\n");
        // Errors from inside are reported.
        let err = jail
            .exec(&ExecConfig::new(["nonexistent"]))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::CommandNotFound { .. }), "{err}");
        let err = jail
            .exec(&ExecConfig::new(["true"]).user("nobody"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnknownUser { .. }), "{err}");
        // stop: sleep as pid 1 ignores SIGTERM, so it is killed after the timeout.
        let st = jail.stop(Duration::from_millis(200)).await.unwrap();
        assert_eq!(st, ExitStatus::Signaled(9));
        assert!(!again.is_running());
        let err = jail.exec(&ExecConfig::new(["true"])).await.unwrap_err();
        assert!(matches!(err, Error::NotRunning), "{err}");
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pseudo_terminal() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let mut jail = sh(&t, "stty size; read line; echo got $line")
            .tty(WinSize {
                rows: 30,
                cols: 100,
            })
            .start()
            .await
            .unwrap();
        let mut pty = jail.process_mut().pty.take().unwrap();
        pty.resize(WinSize {
            rows: 31,
            cols: 101,
        })
        .unwrap();
        pty.write_all(b"hello\n").await.unwrap();
        let mut out = Vec::new();
        pty.read_to_end(&mut out).await.unwrap();
        let out = String::from_utf8_lossy(&out);
        assert!(out.contains("31 101") || out.contains("30 100"), "{out}");
        assert!(out.contains("got hello"), "{out}");
        assert!(jail.wait().await.unwrap().success());
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_jails_at_once() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let mut tasks = Vec::new();
        for i in 0..50 {
            let cfg = t
                .config()
                .hostname(format!("j{i}"))
                .command(["sh", "-c", "sleep 0.2; hostname; echo $$"])
                .stdout(Stdio::Piped);
            tasks.push(tokio::spawn(async move {
                let mut jail = cfg.start().await.unwrap();
                let o = jail.output().await.unwrap();
                jail.stop(Duration::from_secs(1)).await.unwrap();
                (i, o)
            }));
        }
        for task in tasks {
            let (i, o) = task.await.unwrap();
            assert!(o.status.success());
            assert_eq!(String::from_utf8(o.stdout).unwrap(), format!("j{i}\n1\n"));
        }
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn clear_errors_not_hangs() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let limit = Duration::from_secs(10);
        let err = tokio::time::timeout(
            limit,
            JailConfig::new(t.dir.path().join("missing"))
                .command(["true"])
                .start(),
        )
        .await
        .unwrap()
        .unwrap_err();
        assert!(matches!(err, Error::RootNotFound { .. }), "{err}");
        let err = tokio::time::timeout(limit, t.config().command(["no-such-command"]).start())
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "command no-such-command not found in the container"
        );
        let err = tokio::time::timeout(limit, t.config().command(["/bin/nope"]).start())
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, Error::CommandNotFound { .. }), "{err}");
        let err = tokio::time::timeout(
            limit,
            t.config().command(["true"]).user("nosuchuser").start(),
        )
        .await
        .unwrap()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown user nosuchuser in the container's /etc/passwd"
        );
        let err = t
            .config()
            .command(["true"])
            .param(param("allow.raw_sockets"))
            .start()
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "jail parameter allow.raw_sockets is not supported on Linux"
        );
        let err = t
            .config()
            .command(["true"])
            .mount(Mount::bind(t.dir.path().join("absent"), "/x"))
            .start()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sysvipc_shares_the_hosts_ipc_namespace() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let host = std::fs::read_link("/proc/self/ns/ipc").unwrap();
        let host = host.to_string_lossy();
        let (_, out, _) = run(t.config().command(["readlink", "/proc/self/ns/ipc"])).await;
        assert_ne!(out.trim(), host);
        let (_, out, _) = run(t
            .config()
            .command(["readlink", "/proc/self/ns/ipc"])
            .param(param("allow.sysvipc")))
        .await;
        assert_eq!(out.trim(), host);
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_runs_exec_stop_first() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let mut jail = t
            .config()
            .command(["sleep", "100"])
            .param(param(
                "exec.stop=echo stopped by $(hostname) > /tmp/stopped",
            ))
            .start()
            .await
            .unwrap();
        let st = jail.stop(Duration::from_millis(300)).await.unwrap();
        assert_eq!(st, ExitStatus::Signaled(9));
        let text = std::fs::read_to_string(t.root.join("tmp/stopped")).unwrap();
        assert_eq!(text, "stopped by jailhost\n");
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jail_of_its_processes_outlives_its_command() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let quiet = |cfg: JailConfig| {
            cfg.lifetime(Lifetime::Processes)
                .stdin(Stdio::Null)
                .stdout(Stdio::Null)
                .stderr(Stdio::Null)
        };
        // A command alone: the jail ends with it, and says so.
        let mut jail = quiet(sh(&t, "exit 4")).start().await.unwrap();
        let end = jail.wait_command().await.unwrap();
        assert_eq!(end.status, ExitStatus::Exited(4));
        assert!(end.jail_ended);
        assert_eq!(jail.wait().await.unwrap(), ExitStatus::Exited(4));

        // A daemon it leaves behind (an orphan: the init's child) keeps the jail running.
        let started = Instant::now();
        let mut jail = quiet(sh(&t, "sleep 1 & exit 3")).start().await.unwrap();
        let end = jail.wait_command().await.unwrap();
        assert_eq!(end.status, ExitStatus::Exited(3));
        assert!(!end.jail_ended, "the jail ended with its command");
        assert!(jail.handle().is_running());
        let st = jail.wait().await.unwrap();
        assert_eq!(st, ExitStatus::Exited(3), "the command's status");
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        assert!(!jail.handle().is_running());

        // A process exec started (not the init's child) keeps it running too.
        let mut jail = quiet(t.config().command(["sleep", "0.3"]))
            .start()
            .await
            .unwrap();
        let mut execd = jail
            .exec(
                &ExecConfig::new(["sleep", "1.2"])
                    .stdout(Stdio::Null)
                    .stderr(Stdio::Null),
            )
            .await
            .unwrap();
        let started = Instant::now();
        let end = jail.wait_command().await.unwrap();
        assert_eq!(end.status, ExitStatus::Exited(0));
        assert!(!end.jail_ended, "the exec'd process did not count");
        let (st, exec_st) = tokio::join!(jail.wait(), execd.wait());
        assert_eq!(st.unwrap(), ExitStatus::Exited(0));
        assert_eq!(exec_st.unwrap(), ExitStatus::Exited(0));
        assert!(
            started.elapsed() >= Duration::from_millis(700),
            "{:?}",
            started.elapsed()
        );

        // stop: exec.stop, then SIGTERM to every process, and the jail ends at once.
        let mut jail = quiet(sh(&t, "sleep 100 & exit 0"))
            .param(param("exec.stop=touch /tmp/stopped"))
            .start()
            .await
            .unwrap();
        assert!(!jail.wait_command().await.unwrap().jail_ended);
        let started = Instant::now();
        let st = jail.stop(Duration::from_secs(20)).await.unwrap();
        assert_eq!(st, ExitStatus::Exited(0));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(t.root.join("tmp/stopped").exists(), "exec.stop did not run");
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_persistent_jail_runs_with_no_process_until_stopped() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let mut jail = t
            .config()
            .command(["true"])
            .lifetime(Lifetime::Processes)
            .param(param("persist"))
            .stdout(Stdio::Null)
            .start()
            .await
            .unwrap();
        let end = jail.wait_command().await.unwrap();
        assert_eq!(
            end,
            kleene_jail::CommandEnd {
                status: ExitStatus::Exited(0),
                jail_ended: false
            }
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            jail.handle().is_running(),
            "a persistent jail ended with no process"
        );
        // Still a jail: exec works, and its end does not end the jail.
        let o = jail
            .exec(&ExecConfig::new(["hostname"]).stdout(Stdio::Piped))
            .await
            .unwrap()
            .output()
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), "jailhost\n");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(jail.handle().is_running());
        // A signal from another process (a handle) stops it.
        let handle = jail.handle().clone();
        handle.signal_all(Signal::SIGTERM).unwrap();
        let st = tokio::time::timeout(Duration::from_secs(5), jail.wait())
            .await
            .expect("SIGTERM stopped the persistent jail")
            .unwrap();
        assert_eq!(st, ExitStatus::Exited(0));
        // Without `persist` (the last one given wins) it ends with its command.
        let mut jail = t
            .config()
            .command(["true"])
            .lifetime(Lifetime::Processes)
            .param(param("persist"))
            .param(param("nopersist"))
            .start()
            .await
            .unwrap();
        assert!(jail.wait_command().await.unwrap().jail_ended);
        // A command that cannot start is an error at once, not a persistent jail waited
        // for forever.
        let err = tokio::time::timeout(
            Duration::from_secs(10),
            t.config()
                .command(["/bin/nosuch"])
                .lifetime(Lifetime::Processes)
                .param(param("persist"))
                .start(),
        )
        .await
        .expect("the failed start returned")
        .unwrap_err();
        assert!(err.to_string().contains("/bin/nosuch"), "{err}");
        t
    })
    .await;
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `limit`.
async fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The environment variable that makes `owner_process_helper` act as the owner of jails in
/// the root it names (run by `jails_die_with_their_owner_process` as a separate process).
const OWNER_ENV: &str = "KLEENE_JAIL_TEST_OWNER_ROOT";

/// Not a test of its own: with OWNER_ENV set, starts jails in that root, prints their pids
/// (`KLEENE-OWNER name pid`) and waits to be killed; without it, does nothing.
#[test]
fn owner_process_helper() {
    let Some(root) = std::env::var_os(OWNER_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let cfg = JailConfig::new(PathBuf::from(root))
            .hostname("owned")
            .stdin(Stdio::Null)
            .stdout(Stdio::Null)
            .stderr(Stdio::Null);
        let two_sleeps = ["sh", "-c", "sleep 60 & exec sleep 60"];
        // Pid 1 as root; as a user (the signal is armed again after setuid); an init.
        let root_jail = cfg.clone().command(two_sleeps).start().await.unwrap();
        let user_jail = cfg
            .clone()
            .command(two_sleeps)
            .user("kleenetest")
            .start()
            .await
            .unwrap();
        let init_jail = cfg
            .clone()
            .command(two_sleeps)
            .init(true)
            .start()
            .await
            .unwrap();
        // One that outlives its owner, and a process exec'd into it that does not.
        let kept = cfg
            .clone()
            .command(["sleep", "60"])
            .kill_with_owner(false)
            .start()
            .await
            .unwrap();
        let exec = kept
            .exec(&ExecConfig::new(["sleep", "60"]).stdin(Stdio::Null))
            .await
            .unwrap();
        for (name, pid) in [
            ("root", root_jail.pid()),
            ("user", user_jail.pid()),
            ("init", init_jail.pid()),
            ("kept", kept.pid()),
            ("exec", exec.pid()),
        ] {
            println!("KLEENE-OWNER {name} {pid}");
        }
        // Killed long before.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn jails_die_with_their_owner_process() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let mut owner = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(["owner_process_helper", "--exact", "--nocapture"])
            .env(OWNER_ENV, &t.root)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(owner.stdout.take().unwrap()).lines();
        let mut pids = HashMap::new();
        tokio::time::timeout(Duration::from_secs(30), async {
            while pids.len() < 5 {
                let line = lines
                    .next_line()
                    .await
                    .unwrap()
                    .expect("the owner ended early");
                if let Some(rest) = line.strip_prefix("KLEENE-OWNER ") {
                    let (name, pid) = rest.split_once(' ').unwrap();
                    pids.insert(name.to_owned(), pid.parse::<i32>().unwrap());
                }
            }
        })
        .await
        .expect("the owner started its jails");
        let running = processes_under(&t.root).unwrap();
        for (name, pid) in &pids {
            assert!(running.contains(pid), "{name} {pid} not in {running:?}");
        }
        // Three jails with two sleeps each (and one init), the kept jail, the exec'd process.
        assert_eq!(running.len(), 9, "{running:?}");

        owner.start_kill().unwrap();
        owner.wait().await.unwrap();
        let kept = pids["kept"];
        let left = eventually(Duration::from_secs(5), || {
            let now = processes_under(&t.root).unwrap();
            (now == [kept]).then_some(now)
        })
        .await;
        assert_eq!(
            left,
            Some(vec![kept]),
            "only the jail started with kill_with_owner(false) outlives its owner: {:?}",
            processes_under(&t.root)
        );

        // The repair finds it by its root.
        let root = t.root.clone();
        let stopped = tokio::task::spawn_blocking(move || {
            stop_processes_under(&root, Duration::from_millis(100))
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(stopped, vec![kept]);
        assert_eq!(processes_under(&t.root).unwrap(), Vec::<i32>::new());
        t
    })
    .await;
}

#[test]
fn a_jail_outlives_the_thread_that_started_it() {
    if !can_run() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_keep_alive(Duration::from_millis(100))
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(with_root(|t| async move {
        let cfg = t
            .config()
            .command(["sleep", "60"])
            .stdin(Stdio::Null)
            .init(false);
        // Started from a blocking-pool thread, which ends 100 ms after its last task; so
        // is a process exec'd into it.
        let (jail, mut exec, tid) = tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Handle::current();
            let jail = rt.block_on(cfg.start()).unwrap();
            let exec = rt
                .block_on(jail.exec(&ExecConfig::new(["sleep", "60"]).stdin(Stdio::Null)))
                .unwrap();
            (jail, exec, nix::unistd::gettid().as_raw())
        })
        .await
        .unwrap();
        let mut jail = jail;
        let task = format!("/proc/self/task/{tid}");
        let ended = eventually(Duration::from_secs(5), || {
            (!Path::new(&task).exists()).then_some(())
        })
        .await;
        assert!(ended.is_some(), "the blocking thread {tid} did not end");
        // Time for a parent-death signal of that thread to arrive, if there were one.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            jail.process_mut().try_wait().unwrap(),
            None,
            "the jail died with the thread that started it"
        );
        assert_eq!(exec.try_wait().unwrap(), None, "the exec'd process died");
        assert!(jail.handle().is_running());
        // The exec'd process is this process' child: it must be reaped for the jail's pid 1
        // to finish dying (the kernel's namespace init waits for every process in it).
        let (st, exec_st) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(jail.stop(Duration::from_millis(100)), exec.wait())
        })
        .await
        .expect("the jail stopped");
        assert_eq!(st.unwrap(), ExitStatus::Signaled(9));
        assert_eq!(exec_st.unwrap(), ExitStatus::Signaled(9));
        t
    }));
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_processes_under_stops_what_was_left() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        // A jail and an exec'd process that nobody owns once their handles are dropped.
        let jail = t
            .config()
            .command(["sh", "-c", "sleep 60 & exec sleep 60"])
            .stdin(Stdio::Null)
            .kill_with_owner(false)
            .start()
            .await
            .unwrap();
        let exec = jail
            .exec(
                &ExecConfig::new(["sleep", "60"])
                    .stdin(Stdio::Null)
                    .kill_with_owner(false),
            )
            .await
            .unwrap();
        let (pid1, exec_pid) = (jail.pid(), exec.pid());
        drop((jail, exec));
        // And a host process whose working directory is below the root.
        let mut host = std::process::Command::new("/bin/busybox")
            .args(["sleep", "60"])
            .current_dir(t.root.join("tmp"))
            .spawn()
            .unwrap();
        let host_pid = host.id() as i32;
        // pid 1, its background sleep, the exec'd process and the host process.
        let found = eventually(Duration::from_secs(5), || {
            let now = processes_under(&t.root).unwrap();
            (now.len() == 4).then_some(now)
        })
        .await
        .unwrap_or_else(|| panic!("{:?}", processes_under(&t.root)));
        for pid in [pid1, exec_pid, host_pid] {
            assert!(found.contains(&pid), "{pid} not in {found:?}");
        }
        let root = t.root.clone();
        let started = Instant::now();
        let stopped = tokio::task::spawn_blocking(move || {
            stop_processes_under(&root, Duration::from_millis(200))
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(stopped, found);
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(processes_under(&t.root).unwrap(), Vec::<i32>::new());
        // The host process had no reason to ignore SIGTERM.
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(host.wait().unwrap().signal(), Some(15));
        // Nothing left: a second call stops nothing.
        let root = t.root.clone();
        let again =
            tokio::task::spawn_blocking(move || stop_processes_under(&root, Duration::ZERO))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(again, Vec::<i32>::new());
        t
    })
    .await;
}

/// Makes a FIFO at `path` (the gate of a held jail), writable by everyone (as runc's).
fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o622)).unwrap();
    // The umask may have removed bits.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o622)).unwrap();
}

/// The state letter of `/proc/<pid>/stat` (`S`, `R`, `Z`), `None` when the process is gone.
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// Releases `gate` from a blocking thread.
async fn release(gate: &Path) -> kleene_jail::Result<()> {
    let gate = gate.to_owned();
    tokio::task::spawn_blocking(move || kleene_jail::release(&gate))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_process_runs_its_command_once_released() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let gate = t.dir.path().join("gate");
        mkfifo(&gate);
        let started = Instant::now();
        let mut jail = sh(&t, "echo ran > /tmp/ran; echo $$")
            .hold(&gate)
            .stdout(Stdio::Piped)
            .start()
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        // Held: set up, alive (asleep in the open of the gate), the command not run.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(proc_state(jail.pid()), Some('S'));
        assert!(jail.handle().is_running());
        assert!(!t.root.join("tmp/ran").exists());
        assert_eq!(jail.process_mut().try_wait().unwrap(), None);
        release(&gate).await.unwrap();
        let o = jail.output().await.unwrap();
        assert!(o.status.success());
        assert_eq!(String::from_utf8_lossy(&o.stdout), "1\n");
        assert!(t.root.join("tmp/ran").exists());

        // With the init the command is held (pid 2), the init runs.
        let mut jail = sh(&t, "echo $$")
            .init(true)
            .hold(&gate)
            .stdout(Stdio::Piped)
            .start()
            .await
            .unwrap();
        release(&gate).await.unwrap();
        let o = jail.output().await.unwrap();
        assert!(o.status.success());
        assert_eq!(String::from_utf8_lossy(&o.stdout), "2\n");

        // What fails before the hold is still start's error: the command is looked for.
        let err = t
            .config()
            .command(["/bin/nosuch"])
            .hold(&gate)
            .start()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::CommandNotFound { .. }), "{err}");
        let err = t
            .config()
            .command(["true"])
            .user("nosuchuser")
            .hold(&gate)
            .start()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnknownUser { .. }), "{err}");
        // A gate the user cannot open is reported at start.
        let closed = t.dir.path().join("closed");
        nix::unistd::mkfifo(&closed, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = t
            .config()
            .command(["true"])
            .user("kleenetest")
            .hold(&closed)
            .start()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("holding the process"), "{err}");
        // Not a FIFO.
        let err = t
            .config()
            .command(["true"])
            .hold(t.root.join("etc/passwd"))
            .start()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
        // A killed held process: the release says so (the FIFO closes without its byte, or
        // nobody answers in time).
        let mut jail = t
            .config()
            .command(["true"])
            .hold(&gate)
            .start()
            .await
            .unwrap();
        jail.signal(Signal::SIGKILL).unwrap();
        assert_eq!(jail.wait().await.unwrap(), ExitStatus::Signaled(9));
        t
    })
    .await;
}

/// The environment variables that make `held_starter_helper` start a held jail in a root
/// on a gate, print its pid and exit.
const HELD_ROOT_ENV: &str = "KLEENE_JAIL_TEST_HELD_ROOT";
const HELD_GATE_ENV: &str = "KLEENE_JAIL_TEST_HELD_GATE";

/// Not a test of its own: with HELD_ROOT_ENV set, starts a held jail that outlives this
/// process, prints `KLEENE-HELD pid` and returns (the process exits).
#[test]
fn held_starter_helper() {
    let (Some(root), Some(gate)) = (
        std::env::var_os(HELD_ROOT_ENV),
        std::env::var_os(HELD_GATE_ENV),
    ) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pid = rt.block_on(async move {
        JailConfig::new(PathBuf::from(root))
            .command(["sh", "-c", "echo released > /tmp/released"])
            .hold(PathBuf::from(gate))
            .kill_with_owner(false)
            .stdin(Stdio::Null)
            .stdout(Stdio::Null)
            .stderr(Stdio::Null)
            .start()
            .await
            .unwrap()
            .pid()
    });
    println!("KLEENE-HELD {pid}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_process_outlives_its_starter_and_is_released_later() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let gate = t.dir.path().join("gate");
        mkfifo(&gate);
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::process::Command::new(std::env::current_exe().unwrap())
                .args(["held_starter_helper", "--exact", "--nocapture"])
                .env(HELD_ROOT_ENV, &t.root)
                .env(HELD_GATE_ENV, &gate)
                .stdin(std::process::Stdio::null())
                .output(),
        )
        .await
        .expect("the starter exits")
        .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let pid: i32 = text
            .lines()
            .find_map(|l| l.strip_prefix("KLEENE-HELD "))
            .unwrap_or_else(|| panic!("{text}"))
            .trim()
            .parse()
            .unwrap();
        // The starter is gone; the held process is not, and has not run its command.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(proc_state(pid), Some('S'));
        assert!(!t.root.join("tmp/released").exists());
        release(&gate).await.unwrap();
        let ran = eventually(Duration::from_secs(5), || {
            t.root.join("tmp/released").exists().then_some(())
        })
        .await;
        assert!(
            ran.is_some(),
            "the released process did not run its command"
        );
        // It ends (reaped by whoever adopted it).
        let ended = eventually(Duration::from_secs(5), || {
            matches!(proc_state(pid), None | Some('Z')).then_some(())
        })
        .await;
        assert!(ended.is_some());
        t
    })
    .await;
}

/// The hexadecimal mask of a `Cap...:` line of /proc/self/status output.
fn cap_line(status: &str, name: &str) -> u64 {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {status}"));
    u64::from_str_radix(line.trim(), 16).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn capabilities_limits_and_process_settings() {
    if !can_run() {
        return;
    }
    use kleene_jail::{capability_number, Capabilities, Rlimit};
    let cap = |name: &str| 1u64 << capability_number(name).unwrap();
    with_root(|t| async move {
        // A user: execve keeps its ambient capabilities as effective and permitted.
        let kept = cap("CAP_KILL") | cap("CAP_NET_BIND_SERVICE");
        let caps = Capabilities {
            bounding: kept | cap("CAP_CHOWN") | cap("CAP_NET_RAW"),
            effective: kept,
            permitted: kept,
            inheritable: kept,
            ambient: kept,
        };
        let (st, out, err) = run(t
            .config()
            .command(["cat", "/proc/self/status"])
            .user("kleenetest")
            .capabilities(caps))
        .await;
        assert!(st.success(), "{err}");
        assert_eq!(cap_line(&out, "CapBnd"), caps.bounding, "{out}");
        assert_eq!(cap_line(&out, "CapEff"), caps.effective, "{out}");
        assert_eq!(cap_line(&out, "CapPrm"), caps.permitted, "{out}");
        assert_eq!(cap_line(&out, "CapInh"), caps.inheritable, "{out}");
        assert_eq!(cap_line(&out, "CapAmb"), caps.ambient, "{out}");
        assert!(out.contains("NoNewPrivs:\t1"), "{out}");
        // Root: its sets after execve are its bounding set.
        let caps = Capabilities {
            bounding: cap("CAP_CHOWN") | cap("CAP_SETUID") | cap("CAP_KILL"),
            effective: cap("CAP_CHOWN") | cap("CAP_SETUID") | cap("CAP_KILL"),
            permitted: cap("CAP_CHOWN") | cap("CAP_SETUID") | cap("CAP_KILL"),
            inheritable: 0,
            ambient: 0,
        };
        let (st, out, err) = run(t
            .config()
            .command(["cat", "/proc/self/status"])
            .capabilities(caps)
            .no_new_privileges(true))
        .await;
        assert!(st.success(), "{err}");
        for (line, mask) in [
            ("CapBnd", caps.bounding),
            ("CapEff", caps.effective),
            ("CapPrm", caps.permitted),
            ("CapInh", 0),
            ("CapAmb", 0),
        ] {
            assert_eq!(cap_line(&out, line), mask, "{line}: {out}");
        }
        assert!(out.contains("NoNewPrivs:\t1"), "{out}");
        // An ambient capability that is not inheritable is refused by name.
        let err = t
            .config()
            .command(["true"])
            .user("kleenetest")
            .capabilities(Capabilities {
                ambient: cap("CAP_KILL"),
                ..caps
            })
            .start()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("CAP_KILL"), "{err}");

        // no_new_privs off for a user, limits, oom_score_adj, groups, umask.
        let script = "grep -E 'NoNewPrivs|Groups' /proc/self/status; \
                      grep -E 'Max open files|Max core file size|Max processes' /proc/self/limits; \
                      cat /proc/self/oom_score_adj; umask; id -u; id -g";
        let (st, out, err) = run(sh(&t, script)
            .user("4321:4322")
            .no_new_privileges(false)
            .rlimit(Rlimit::Nofile, 123, 456)
            .rlimit(Rlimit::Core, 0, 0)
            .rlimit(Rlimit::Nproc, 1000, 2000)
            .oom_score_adj(500)
            .additional_gids(vec![10, 4400, 20])
            .umask(0o027))
        .await;
        assert!(st.success(), "{err}");
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(lines.contains(&vec!["NoNewPrivs:", "0"]), "{out}");
        // The kernel sorts the groups.
        // A numeric user's supplementary groups are exactly those given (sorted).
        assert!(
            lines.contains(&vec!["Groups:", "10", "20", "4400"]),
            "{out}"
        );
        assert!(
            out.contains("Max core file size        0                    0"),
            "{out}"
        );
        assert!(
            out.contains("Max processes             1000                 2000"),
            "{out}"
        );
        assert!(
            out.contains("Max open files            123                  456"),
            "{out}"
        );
        assert_eq!(
            &lines[5..],
            [["500"], ["0027"], ["4321"], ["4322"]],
            "{out}"
        );
        // The same settings for an exec'd process.
        let mut jail = t.config().command(["sleep", "100"]).start().await.unwrap();
        let o = jail
            .exec(
                &ExecConfig::new(["sh", "-c", script])
                    .user("4321:4322")
                    .rlimit(Rlimit::Nofile, 77, 88)
                    .oom_score_adj(300)
                    .additional_gids(vec![30])
                    .umask(0o077)
                    .capabilities(Capabilities {
                        bounding: cap("CAP_KILL"),
                        ..Capabilities::default()
                    })
                    .stdout(Stdio::Piped),
            )
            .await
            .unwrap()
            .output()
            .await
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{out}");
        assert!(out.contains("NoNewPrivs:\t1"), "{out}");
        assert!(out.contains("Groups:\t30 \n"), "{out}");
        assert!(
            out.contains("Max open files            77                   88"),
            "{out}"
        );
        assert!(out.ends_with("300\n0077\n4321\n4322\n"), "{out}");
        jail.stop(Duration::from_millis(100)).await.unwrap();
        // A user by name keeps its groups of /etc/group and gets those given too.
        let (_, out, _) = run(t
            .config()
            .command(["grep", "Groups", "/proc/self/status"])
            .user("kleenetest")
            .additional_gids(vec![10]))
        .await;
        assert_eq!(out.trim_end(), "Groups:\t10 4322 4400");
        // A limit the kernel refuses is named.
        let err = t
            .config()
            .command(["true"])
            .rlimit(Rlimit::Nofile, 1 << 40, 1 << 40)
            .start()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("RLIMIT_NOFILE"), "{err}");
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn masked_and_readonly_paths_and_sysctls() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        std::fs::create_dir_all(t.root.join("secret")).unwrap();
        std::fs::write(t.root.join("secret/file"), "hidden\n").unwrap();
        let host_shmmax = std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
        // (/proc/kcore is missing on some kernels, /proc/timer_list is not.)
        let (_, out, _) = run(t.config().command(["head", "-c", "1", "/proc/timer_list"])).await;
        assert_eq!(out.len(), 1, "unmasked, /proc/timer_list has content");
        let script = "wc -c < /proc/timer_list; stat -c %t:%T /proc/timer_list; \
                      ls -A /secret | wc -l; \
                      cat /proc/sys/kernel/shmmax; \
                      echo 1 > /proc/sys/kernel/shmmax || echo refused; \
                      touch /tmp/x && echo wrote; touch /etc/x || echo ro";
        let (st, out, err) = run(sh(&t, script)
            .masked_path("/proc/kcore")
            .masked_path("/proc/timer_list")
            .masked_path("/secret")
            .masked_path("/no/such/path")
            .readonly_path("/proc/sys")
            .readonly_path("/etc")
            .readonly_path("/nothing/here")
            .sysctl("kernel.shmmax", "123456789"))
        .await;
        assert!(st.success(), "{err}");
        assert_eq!(out, "0\n1:3\n0\n123456789\nrefused\nwrote\nro\n", "{err}");
        assert!(err.contains("Read-only file system"), "{err}");
        // The host's value is untouched (the jail has its own ipc namespace).
        assert_eq!(
            std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap(),
            host_shmmax
        );
        // A sysctl that cannot be written is named.
        let err = t
            .config()
            .command(["true"])
            .sysctl("kernel.nosuchsysctl", "1")
            .start()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("kernel.nosuchsysctl"), "{err}");
        assert!(matches!(
            t.config()
                .command(["true"])
                .sysctl("kernel..x", "1")
                .start()
                .await,
            Err(Error::InvalidConfig(_))
        ));
        // A read-only root.
        let (_, out, err) =
            run(sh(&t, "touch /tmp/y || echo ro; touch /dev/null && echo dev").readonly_root(true))
                .await;
        assert_eq!(out, "ro\ndev\n", "{err}");
        t
    })
    .await;
}

/// The mount points and options of a /proc/self/mountinfo text: (point, options).
fn mount_points(mountinfo: &str) -> Vec<(String, String)> {
    mountinfo
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[4].to_owned(), f[5].to_owned())
        })
        .collect()
}

/// An OCI bundle's mounts (runc's default config), with `data` bound read-only and nosuid.
fn oci_config(t: &TestRoot, data: &Path) -> JailConfig {
    use kleene_jail::MountFlags;
    let flags = |f: &[&str]| MountFlags {
        read_only: f.contains(&"ro"),
        nosuid: f.contains(&"nosuid"),
        nodev: f.contains(&"nodev"),
        noexec: f.contains(&"noexec"),
        strictatime: f.contains(&"strictatime"),
        ..MountFlags::default()
    };
    JailConfig::new(&t.root)
        .hostname("oci")
        .standard_mounts(false)
        .mount(Mount::filesystem("proc", "proc", "/proc"))
        .mount(
            Mount::filesystem("tmpfs", "tmpfs", "/dev")
                .flags(flags(&["nosuid", "strictatime"]))
                .data("mode=755,size=65536k"),
        )
        .mount(
            Mount::filesystem("devpts", "devpts", "/dev/pts")
                .flags(flags(&["nosuid", "noexec"]))
                .data("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        )
        .mount(
            Mount::filesystem("tmpfs", "shm", "/dev/shm")
                .flags(flags(&["nosuid", "noexec", "nodev"]))
                .data("mode=1777,size=65536k"),
        )
        .mount(
            Mount::filesystem("mqueue", "mqueue", "/dev/mqueue")
                .flags(flags(&["nosuid", "noexec", "nodev"])),
        )
        .mount(
            Mount::filesystem("sysfs", "sysfs", "/sys")
                .flags(flags(&["nosuid", "noexec", "nodev", "ro"])),
        )
        .mount(
            Mount::bind(data, "/srv/data")
                .recursive(false)
                .flags(flags(&["ro", "nosuid"])),
        )
}

#[tokio::test(flavor = "multi_thread")]
async fn oci_mounts_without_the_standard_ones() {
    if !can_run() {
        return;
    }
    with_root(|t| async move {
        let data = t.dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("file"), "data\n").unwrap();
        // No /proc, /dev or /sys in the image: all made inside the root (or inside /dev).
        std::fs::remove_dir(t.root.join("proc")).unwrap();
        std::fs::remove_dir(t.root.join("dev")).unwrap();
        let script = "cat /proc/self/mountinfo; echo ---; ls -A /dev | sort | tr '\\n' ' '; echo; \
                      for l in ptmx fd stdin stderr; do readlink /dev/$l; done; \
                      echo x > /dev/null && head -c 3 /dev/zero | wc -c; \
                      cat /srv/data/file; touch /srv/data/new || echo ro; \
                      test -e /dev/console || echo no console";
        let (st, out, err) = run(oci_config(&t, &data).command(["sh", "-c", script])).await;
        assert!(st.success(), "{err}");
        let (mountinfo, rest) = out.split_once("---\n").unwrap();
        let points = mount_points(mountinfo);
        let names: Vec<&str> = points.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "/",
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/srv/data"
            ],
            "{mountinfo}"
        );
        let opts = |p: &str| points.iter().find(|(q, _)| q == p).unwrap().1.clone();
        assert!(
            opts("/sys").starts_with("ro,nosuid,nodev,noexec"),
            "{mountinfo}"
        );
        assert!(opts("/srv/data").starts_with("ro,nosuid"), "{mountinfo}");
        assert!(opts("/dev").starts_with("rw,nosuid"), "{mountinfo}");
        assert!(
            opts("/dev/shm").starts_with("rw,nosuid,nodev,noexec"),
            "{mountinfo}"
        );
        assert!(mountinfo.contains(" - mqueue mqueue "), "{mountinfo}");
        assert!(mountinfo.contains(" - tmpfs shm "), "{mountinfo}");
        let mut lines = rest.lines();
        assert_eq!(
            lines.next(),
            Some("fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero ")
        );
        assert_eq!(
            lines.by_ref().take(4).collect::<Vec<_>>(),
            [
                "pts/ptmx",
                "/proc/self/fd",
                "/proc/self/fd/0",
                "/proc/self/fd/2"
            ]
        );
        assert_eq!(
            lines.collect::<Vec<_>>(),
            ["3", "data", "ro", "no console"],
            "{err}"
        );
        assert!(!data.join("new").exists());
        // Nothing of the crate's own: no /proc mount point was made in the image for it.
        assert!(t.root.join("proc").is_dir());
        assert!(
            !t.root.join("dev/pts").exists(),
            "made in the image, not the tmpfs"
        );

        // With a terminal, /dev/console is it.
        let mut jail = oci_config(&t, &data)
            .command(["sh", "-c", "stat -c %t /dev/console; tty"])
            .tty(WinSize::default())
            .start()
            .await
            .unwrap();
        let mut pty = jail.process_mut().pty.take().unwrap();
        let name = pty.name().unwrap();
        assert!(name.starts_with("/dev/pts/"), "{name}");
        let mut out = Vec::new();
        pty.read_to_end(&mut out).await.unwrap();
        let out = String::from_utf8_lossy(&out);
        // Major 136 (0x88): a Unix98 pty slave.
        assert!(out.starts_with("88\r\n"), "{out}");
        assert!(jail.wait().await.unwrap().success());

        // A bind target through a symlink climbing out of the root is refused, naming the
        // mount, and nothing is made outside.
        std::os::unix::fs::symlink("../../../../../../../../..", t.root.join("up")).unwrap();
        let err = oci_config(&t, &data)
            .mount(Mount::bind(&data, "/up/kleene-oci-escape"))
            .command(["true"])
            .start()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("leads out of the root"), "{text}");
        assert!(text.contains("/up/kleene-oci-escape"), "{text}");
        assert!(text.contains(&data.display().to_string()), "{text}");
        assert!(!Path::new("/kleene-oci-escape").exists());
        // An unknown file system is refused before anything is made.
        let err = oci_config(&t, &data)
            .mount(Mount::filesystem("ext4", "/dev/sda1", "/mnt"))
            .command(["true"])
            .start()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
        // A propagation and a read-only root with the OCI mounts.
        let (st, out, err) = run(oci_config(&t, &data)
            .root_propagation(kleene_jail::Propagation::RShared)
            .readonly_root(true)
            .command([
                "sh",
                "-c",
                "grep -E '^[0-9]+ [0-9]+ [0-9:]+ [^ ]+ / ' /proc/self/mountinfo; \
                 touch /x || echo ro",
            ]))
        .await;
        assert!(st.success(), "{err}");
        assert!(out.contains(" / ro,"), "{out}");
        assert!(out.contains(" shared:"), "an rshared root is shared: {out}");
        assert!(out.ends_with("ro\n"), "{out}");
        // rslave (of the host's mounts, which may all be private: then nothing to show).
        let (st, _, err) = run(oci_config(&t, &data)
            .root_propagation(kleene_jail::Propagation::RSlave)
            .command(["true"]))
        .await;
        assert!(st.success(), "{err}");
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_new_joined_or_the_hosts() {
    if !can_run() {
        return;
    }
    use kleene_jail::{Namespace, NamespaceMode};
    with_root(|t| async move {
        // The host's uts namespace: its host name, untouched.
        let host = nix::unistd::gethostname().unwrap();
        let (st, out, err) = run(JailConfig::new(&t.root)
            .name("not-a-hostname")
            .namespace(Namespace::Uts, NamespaceMode::Host)
            .command(["hostname"]))
        .await;
        assert!(st.success(), "{err}");
        assert_eq!(out.trim(), host.to_string_lossy());
        assert_eq!(nix::unistd::gethostname().unwrap(), host);
        // Setting a host name then is refused.
        let err = t
            .config()
            .namespace(Namespace::Uts, NamespaceMode::Host)
            .command(["true"])
            .start()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("uts namespace"), "{err}");

        // A new cgroup namespace: the jail's cgroups are its roots.
        let (st, out, err) = run(t
            .config()
            .namespace(Namespace::Cgroup, NamespaceMode::New)
            .command(["cat", "/proc/self/cgroup"]))
        .await;
        assert!(st.success(), "{err}");
        assert!(out.lines().any(|l| l == "0::/"), "{out}");
        assert!(out.lines().all(|l| l.ends_with(":/")), "{out}");
        let theirs = run(t.config().command(["readlink", "/proc/self/ns/cgroup"]))
            .await
            .1;
        let ours = std::fs::read_link("/proc/self/ns/cgroup").unwrap();
        assert_eq!(
            theirs.trim(),
            ours.to_string_lossy(),
            "the default is the host's"
        );

        // Joining another jail's ipc and pid namespaces.
        let mut first = t.config().command(["sleep", "100"]).start().await.unwrap();
        let ns = |kind: &str| PathBuf::from(format!("/proc/{}/ns/{kind}", first.pid()));
        let first_ipc = std::fs::read_link(ns("ipc")).unwrap();
        let (st, out, err) = run(t
            .config()
            .namespace(Namespace::Ipc, NamespaceMode::Join(ns("ipc")))
            .namespace(Namespace::Pid, NamespaceMode::Join(ns("pid")))
            .command([
                "sh",
                "-c",
                "readlink /proc/self/ns/ipc; cat /proc/1/comm; echo $$",
            ]))
        .await;
        assert!(st.success(), "{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], first_ipc.to_string_lossy());
        assert_eq!(lines[1], "sleep", "{out}");
        assert_ne!(lines[2], "1", "{out}");
        // ... with the init (a subreaper there), and exec into such a jail.
        let mut second = t
            .config()
            .namespace(Namespace::Pid, NamespaceMode::Join(ns("pid")))
            .command(["sleep", "100"])
            .init(true)
            .start()
            .await
            .unwrap();
        let o = second
            .exec(&ExecConfig::new(["cat", "/proc/1/comm"]).stdout(Stdio::Piped))
            .await
            .unwrap()
            .output()
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), "sleep\n");
        second.signal(Signal::SIGKILL).unwrap();
        second.wait().await.unwrap();
        let err = t
            .config()
            .namespace(
                Namespace::Ipc,
                NamespaceMode::Join(t.root.join("etc/passwd")),
            )
            .command(["true"])
            .start()
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("joining the ipc namespace"),
            "{err}"
        );
        first.stop(Duration::from_millis(100)).await.unwrap();

        // The host's pid namespace: the command is not pid 1 and sees the host.
        let (st, out, err) = run(t
            .config()
            .namespace(Namespace::Pid, NamespaceMode::Host)
            .command(["sh", "-c", "echo $$; test -d /proc/$PPID && echo parent"]))
        .await;
        assert!(st.success(), "{err}");
        assert_ne!(out.lines().next(), Some("1"), "{out}");
        assert!(out.ends_with("parent\n"), "{out}");
        // The init there is a subreaper: it reaps the orphan, and reports the command.
        let (st, out, _) = run(t
            .config()
            .namespace(Namespace::Pid, NamespaceMode::Host)
            .init(true)
            .command(["sh", "-c", "(sleep 0.1 &); exit 4"]))
        .await;
        assert_eq!(st, ExitStatus::Exited(4), "{out}");
        let err = t
            .config()
            .namespace(Namespace::Pid, NamespaceMode::Host)
            .lifetime(Lifetime::Processes)
            .command(["true"])
            .start()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
        t
    })
    .await;
}
