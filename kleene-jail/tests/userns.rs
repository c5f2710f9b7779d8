//! Jails with a user namespace of their own, on real namespaces. These need root: they
//! fail when KLEENE_REQUIRE_ZFS=1 (as CI sets it) and skip with a message otherwise. Every
//! test makes its own root in its own temporary directory, and leaves the host's mount
//! table as it found it.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kleene_jail::{Error, ExecConfig, ExitStatus, IdMapping, JailConfig, Mount, Stdio};

const APPLETS: &[&str] = &[
    "sh", "cat", "id", "ls", "stat", "echo", "touch", "sleep", "mount", "grep", "rm", "readlink",
];

/// Whether the test can run; panics (fails the test) when root is required but missing.
fn can_run() -> bool {
    common::can_run("user namespace", || None)
}

/// A container root built from busybox-static (a copy of tests/linux.rs's), in a directory
/// the jail's root (an unprivileged host id) can reach; optionally on a tmpfs of its own.
struct TestRoot {
    dir: tempfile::TempDir,
    root: PathBuf,
    tmpfs: bool,
}

impl TestRoot {
    fn new() -> Self {
        Self::make(false)
    }

    /// The root on a tmpfs mounted for the test (unmounted when dropped).
    fn on_tmpfs() -> Self {
        Self::make(true)
    }

    fn make(tmpfs: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kleene-userns-test")
            .tempdir()
            .unwrap();
        // Searchable by host uid 100000 (tempdir makes it 0700).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        if tmpfs {
            let st = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "mode=755", "kleene-userns-test"])
                .arg(&root)
                .status()
                .unwrap();
            assert!(st.success(), "mount a tmpfs at {}", root.display());
        }
        for d in ["bin", "etc", "proc", "dev", "tmp", "mnt", "root"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        if tmpfs || std::fs::hard_link("/bin/busybox", root.join("bin/busybox")).is_err() {
            std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        }
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
        }
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n\
             kleenetest:x:4321:4322:Kleene Test:/:/bin/sh\n\
             far:x:70000:70000:outside the maps:/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            root.join("etc/group"),
            "root:x:0:\nktgroup:x:4322:\nfar:x:70000:\n",
        )
        .unwrap();
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        TestRoot { dir, root, tmpfs }
    }

    fn config(&self) -> JailConfig {
        JailConfig::new(&self.root)
            .name("u")
            .hostname("userns")
            .user_namespace(maps(), maps())
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

    /// Checks that the host's mount table has nothing of the test's but its own tmpfs.
    fn check_host_mounts(&self) {
        let mounts = self.host_mounts();
        assert_eq!(mounts.len(), usize::from(self.tmpfs), "{mounts:#?}");
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        if self.tmpfs {
            let _ = nix::mount::umount2(&self.root, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn maps() -> Vec<IdMapping> {
    vec![IdMapping::new(0, 100000, 65536)]
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

fn sh(cfg: JailConfig, script: &str) -> JailConfig {
    cfg.command(["/bin/sh", "-c", script])
}

#[tokio::test(flavor = "multi_thread")]
async fn container_root_is_nobody_on_the_host() {
    if !can_run() {
        return;
    }
    let t = TestRoot::new();
    let data = t.dir.path().join("f");
    std::fs::write(&data, "host\n").unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = sh(
        t.config().mount(Mount::bind(&data, "/mnt/f")),
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; \
         stat -c '%u:%g' /bin/busybox /etc/passwd; \
         if echo x >> /mnt/f; then echo wrote; else echo refused; fi; \
         if touch /newfile; then echo made; else echo cannot make; fi; \
         ls /dev; cat /dev/null; echo ok > /dev/null && echo null ok; \
         grep -c . /proc/self/status >/dev/null && echo proc ok; \
         cat /proc/1/uid_map | head -1",
    );
    let (status, out, err) = run(cfg).await;
    assert_eq!(status, ExitStatus::Exited(0), "{out}{err}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let words = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(words(lines[0]), "0 100000 65536", "{out}");
    assert_eq!(words(lines[1]), "0 100000 65536", "{out}");
    assert_eq!(lines[2], "0", "{out}");
    assert_eq!(lines[3], "0", "{out}");
    // Host root's files, not mapped: nobody's.
    assert_eq!(lines[4], "65534:65534", "{out}");
    assert_eq!(lines[5], "65534:65534", "{out}");
    assert!(out.contains("refused"), "{out}{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(out.contains("cannot make"), "{out}{err}");
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "host\n");
    for node in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx",
    ] {
        assert!(
            out.lines().any(|l| l == node),
            "{node} missing in /dev: {out}"
        );
    }
    assert!(out.contains("null ok"), "{out}{err}");
    assert!(out.contains("proc ok"), "{out}{err}");
    t.check_host_mounts();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_and_a_disabled_network_and_the_init() {
    if !can_run() {
        return;
    }
    let t = TestRoot::new();
    let cfg = sh(
        t.config()
            .user("kleenetest")
            .init(true)
            .network(kleene_jail::NetworkMode::Disabled),
        "id -u; id -g; cat /proc/self/uid_map; echo $$; cat /proc/sys/kernel/hostname",
    );
    let (status, out, err) = run(cfg).await;
    assert_eq!(status, ExitStatus::Exited(0), "{out}{err}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], "4321", "{out}");
    assert_eq!(lines[1], "4322", "{out}");
    assert_eq!(lines[3], "2", "the command is pid 2 under the init: {out}");
    assert!(out.contains("userns"), "{out}");
    t.check_host_mounts();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idmapped_root_is_the_containers() {
    if !can_run() {
        return;
    }
    let t = TestRoot::on_tmpfs();
    let cfg = sh(
        t.config().idmapped_root(true),
        "stat -c '%u:%g' /bin/busybox /etc/passwd; echo mine > /newfile && echo made; \
         stat -c '%u' /newfile; cat /proc/self/uid_map",
    );
    let (status, out, err) = run(cfg).await;
    if status != ExitStatus::Exited(0) {
        panic!("{out}{err}");
    }
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], "0:0", "{out}");
    assert_eq!(lines[1], "0:0", "{out}");
    assert_eq!(lines[2], "made", "{out}{err}");
    assert_eq!(lines[3], "0", "{out}");
    // Stored with its container ids: host root's.
    let meta = std::fs::metadata(t.root.join("newfile")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert_eq!(
        std::fs::read_to_string(t.root.join("newfile")).unwrap(),
        "mine\n"
    );
    t.check_host_mounts();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idmapped_bind_mount() {
    if !can_run() {
        return;
    }
    let t = TestRoot::new();
    let data = t.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), "host\n").unwrap();
    let cfg = sh(
        t.config()
            .mount(Mount::bind(&data, "/data").idmapped(true))
            .mount(Mount::bind(&data, "/plain")),
        "stat -c '%u' /data/f /plain/f; echo more >> /data/f && echo wrote",
    );
    let (status, out, err) = run(cfg).await;
    assert_eq!(status, ExitStatus::Exited(0), "{out}{err}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines, ["0", "65534", "wrote"], "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(data.join("f")).unwrap(),
        "host\nmore\n"
    );
    t.check_host_mounts();
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_joins_the_user_namespace() {
    if !can_run() {
        return;
    }
    let t = TestRoot::new();
    let mut jail = t
        .config()
        .command(["/bin/sleep", "30"])
        .stdin(Stdio::Null)
        .start()
        .await
        .unwrap();
    let mut p = jail
        .exec(
            &ExecConfig::new(["/bin/sh", "-c", "cat /proc/self/uid_map; id -u; id -g"])
                .user("kleenetest")
                .stdout(Stdio::Piped)
                .stderr(Stdio::Piped),
        )
        .await
        .unwrap();
    let o = p.output().await.unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status, ExitStatus::Exited(0), "{out}");
    let lines: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(lines, ["0 100000 65536", "4321", "4322"], "{out}");
    // The host sees the process as host uid 100000 + 4321.
    let err = jail
        .exec(&ExecConfig::new(["/bin/id"]).user("far"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("70000"), "{err}");
    // On the host, the jail's root is uid 100000.
    let status = std::fs::read_to_string(format!("/proc/{}/status", jail.pid())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(uid.split_whitespace().nth(1), Some("100000"), "{uid}");
    jail.stop(std::time::Duration::from_millis(200))
        .await
        .unwrap();
    t.check_host_mounts();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_maps_are_refused_by_id() {
    if !can_run() {
        return;
    }
    let t = TestRoot::new();
    let refused = |cfg: JailConfig| async move {
        match cfg.command(["/bin/true"]).start().await {
            Err(Error::InvalidConfig(msg)) => msg,
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("started"),
        }
    };
    let base = || JailConfig::new(&t.root);
    let msg = refused(base().user_namespace(
        vec![
            IdMapping::new(0, 100000, 1000),
            IdMapping::new(500, 200000, 10),
        ],
        maps(),
    ))
    .await;
    assert!(msg.contains("overlap") && msg.contains("500"), "{msg}");
    let msg = refused(base().user_namespace(
        vec![
            IdMapping::new(0, 100000, 1000),
            IdMapping::new(2000, 100500, 10),
        ],
        maps(),
    ))
    .await;
    assert!(msg.contains("host ids") && msg.contains("overlap"), "{msg}");
    let msg = refused(base().user_namespace(vec![], maps())).await;
    assert!(msg.contains("uid_map is empty"), "{msg}");
    let msg =
        refused(base().user_namespace(maps(), vec![IdMapping::new(0, u32::MAX - 5, 10)])).await;
    assert!(msg.contains("gid_map"), "{msg}");
    let msg = refused(base().user_namespace(maps(), maps()).user("far")).await;
    assert!(msg.contains("uid 70000"), "{msg}");
    let msg = refused(
        base()
            .user_namespace(maps(), vec![IdMapping::new(0, 100000, 1)])
            .user("kleenetest"),
    )
    .await;
    assert!(msg.contains("gid 4322"), "{msg}");
    let msg = refused(base().idmapped_root(true)).await;
    assert!(msg.contains("user_namespace"), "{msg}");
    t.check_host_mounts();
}

#[tokio::test(flavor = "multi_thread")]
async fn oci_mounts_in_a_user_namespace() {
    if !can_run() {
        return;
    }
    let t = TestRoot::new();
    std::fs::create_dir(t.root.join("sys")).unwrap();
    let oci = |net| {
        sh(
            t.config()
                .standard_mounts(false)
                .network(net)
                .mount(Mount::filesystem("proc", "proc", "/proc"))
                .mount(Mount::filesystem("tmpfs", "tmpfs", "/dev").data("mode=755"))
                .mount(Mount::filesystem("devpts", "devpts", "/dev/pts").data("newinstance,ptmxmode=0666"))
                .mount(Mount::filesystem("sysfs", "sysfs", "/sys").read_only()),
            "ls /dev; echo x > /dev/null && echo null ok; ls /sys/kernel >/dev/null && echo sys ok; \
             grep ' /sys ' /proc/self/mountinfo; grep -c ' /sys/fs/cgroup ' /proc/self/mountinfo; true",
        )
    };
    // The host's network namespace: the host's /sys, bound read-only.
    let (status, out, err) = run(oci(kleene_jail::NetworkMode::Inherit)).await;
    assert_eq!(status, ExitStatus::Exited(0), "{out}{err}");
    for l in [
        "null", "zero", "urandom", "tty", "ptmx", "null ok", "sys ok",
    ] {
        assert!(out.lines().any(|x| x == l), "{l}: {out}{err}");
    }
    let sys = out.lines().find(|l| l.contains(" /sys ")).unwrap();
    assert!(sys.contains(" ro,") && sys.contains(" - sysfs "), "{sys}");
    // Recursive: the host's mounts below /sys come along.
    assert_ne!(out.lines().last(), Some("0"), "{out}");
    // A network namespace of its own: a sysfs of its own.
    let (status, out, err) = run(oci(kleene_jail::NetworkMode::Disabled)).await;
    assert_eq!(status, ExitStatus::Exited(0), "{out}{err}");
    assert!(out.contains("sys ok"), "{out}{err}");
    assert_eq!(out.lines().last(), Some("0"), "a sysfs of its own: {out}");
    t.check_host_mounts();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idmapped_mount_of_a_file_system_without_them_is_refused() {
    if !can_run() {
        return;
    }
    let t = TestRoot::new();
    // sysfs does not support idmapped mounts.
    let err = t
        .config()
        .mount(Mount::bind("/sys/kernel", "/k").idmapped(true))
        .command(["/bin/true"])
        .start()
        .await
        .err()
        .unwrap();
    match &err {
        Error::IdmappedMountUnsupported { path } => assert_eq!(path, Path::new("/sys/kernel")),
        e => panic!("another error: {e}"),
    }
    assert!(
        err.to_string()
            .contains("/sys/kernel does not support idmapped mounts"),
        "{err}"
    );
    t.check_host_mounts();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_joined_network_namespace_is_joined_before_the_user_namespace() {
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
    let t = TestRoot::new();
    let cfg = t
        .config()
        .network(kleene_jail::NetworkMode::Namespace(ns))
        .command([
            "/bin/sh",
            "-c",
            "readlink /proc/self/ns/net; cat /proc/self/uid_map; id -u",
        ]);
    let (status, out, err) = run(cfg).await;
    assert_eq!(status, ExitStatus::Exited(0), "{out}{err}");
    let lines: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        [format!("net:[{ino}]"), "0 100000 65536".into(), "0".into()]
    );
    t.check_host_mounts();
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_and_exit_codes_come_back() {
    if !can_run() {
        return;
    }
    let t = TestRoot::new();
    let err = t
        .config()
        .command(["/bin/missing"])
        .start()
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::CommandNotFound { .. }), "{err}");
    let err = t
        .config()
        .workdir("/nowhere")
        .command(["/bin/true"])
        .start()
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::WorkdirNotFound { .. }), "{err}");
    let (status, _, _) = run(sh(t.config(), "exit 7")).await;
    assert_eq!(status, ExitStatus::Exited(7));
    let (status, _, _) = run(sh(t.config().init(true), "kill -9 $$")).await;
    assert_eq!(status, ExitStatus::Signaled(9));
    t.check_host_mounts();
}
