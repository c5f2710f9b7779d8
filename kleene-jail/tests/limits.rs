//! Resource limits on real cgroups (v1 here, v2 where the host mounts it). These need root
//! and a cgroup hierarchy: they fail when KLEENE_REQUIRE_ZFS=1 (as CI sets it) and skip
//! with a message otherwise. Each test has its own group under `kleene-test/`.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kleene_jail::{
    default_capability_mask, ExecConfig, ExitStatus, JailConfig, Lifetime, ResourceGroup,
    Resources, SeccompProfile, Signal, Stdio,
};

const APPLETS: &[&str] = &[
    "sh", "true", "cat", "sleep", "dd", "echo", "ls", "unshare", "id", "ps", "mkdir", "rm", "date",
];

fn can_run() -> bool {
    common::can_run("limit", || {
        kleene_jail::Hierarchy::detect()
            .ok()
            .flatten()
            .is_none()
            .then(|| "limit tests need a cgroup hierarchy under /sys/fs/cgroup".to_string())
    })
}

struct TestRoot {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn test_root() -> TestRoot {
    let dir = tempfile::Builder::new()
        .prefix("kleene-limits-test")
        .tempdir()
        .unwrap();
    let root = dir.path().join("root");
    for d in ["bin", "etc", "proc", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    if std::fs::hard_link("/bin/busybox", root.join("bin/busybox")).is_err() {
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    }
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    TestRoot { _dir: dir, root }
}

/// A group of its own for each test.
fn group() -> ResourceGroup {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "t{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    ResourceGroup::plan("kleene-test", &name)
        .unwrap()
        .expect("a cgroup hierarchy")
}

fn sh(t: &TestRoot, script: &str) -> JailConfig {
    JailConfig::new(&t.root)
        .command(["/bin/sh", "-c", script])
        .stdin(Stdio::Null)
        .stdout(Stdio::Null)
        .stderr(Stdio::Piped)
}

/// Warming the joins writes this process back into the group it is in: the write goes
/// through, and the process stays where it was.
#[test]
fn warming_the_joins_moves_nothing() {
    if !can_run() {
        return;
    }
    let before = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let thread = group().warm_joins().expect("a thread on a cgroup host");
    thread
        .join()
        .unwrap()
        .expect("this process written into its own group");
    assert_eq!(
        std::fs::read_to_string("/proc/self/cgroup").unwrap(),
        before
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn over_its_memory_limit_a_jail_is_oom_killed_and_the_kill_counted() {
    if !can_run() {
        return;
    }
    let t = test_root();
    let g = group();
    // dd's 64 MiB buffer, filled from /dev/zero, cannot fit in 16 MiB.
    let mut jail = sh(&t, "dd if=/dev/zero of=/dev/null bs=64M count=1")
        .resources(Resources::new().memory(16 << 20).memory_swap(16 << 20))
        .resource_group(g.clone())
        .start()
        .await
        .unwrap();
    assert!(g.exists(), "the group is made at start");
    let status = jail.wait().await.unwrap();
    assert_eq!(status, ExitStatus::Signaled(libc::SIGKILL), "{status:?}");
    let usage = jail.resource_group().unwrap().usage().unwrap();
    assert!(usage.oom_kills >= 1, "{usage:?}");
    assert_eq!(usage.memory_limit, Some(16 << 20));
    jail.teardown().await.unwrap();
    assert!(!g.exists(), "teardown removes the group");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_loop_stops_at_the_pids_limit_and_the_host_is_unaffected() {
    if !can_run() {
        return;
    }
    let t = test_root();
    let g = group();
    let script = "i=0; while [ $i -lt 40 ]; do sleep 3 & i=$((i+1)); done; echo done; wait";
    let mut jail = sh(&t, script)
        .lifetime(Lifetime::Processes)
        .resources(Resources::new().pids(10))
        .resource_group(g.clone())
        .start()
        .await
        .unwrap();
    // Give the loop time to run into the limit.
    let deadline = Instant::now() + Duration::from_secs(10);
    let usage = loop {
        let u = g.usage().unwrap();
        if u.pids_limit_hits > 0 || Instant::now() > deadline {
            break u;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(usage.pids_limit_hits > 0, "no fork was refused: {usage:?}");
    assert!(usage.pids <= 10, "{usage:?}");
    assert_eq!(usage.pids_limit, Some(10));
    // The host forks as ever.
    let host = std::process::Command::new("/bin/true").status().unwrap();
    assert!(host.success());
    let _ = jail.handle().kill_all();
    let _ = jail.wait().await;
    jail.teardown().await.unwrap();
    assert!(!g.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn half_a_cpu_holds_a_busy_loop_to_half_of_each_period() {
    if !can_run() {
        return;
    }
    let t = test_root();
    let g = group();
    let mut jail = sh(&t, "while :; do :; done")
        .resources(Resources::new().cpus(0.5))
        .resource_group(g.clone())
        .start()
        .await
        .unwrap();
    let before = g.usage().unwrap();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = g.usage().unwrap();
    let wall = started.elapsed();
    let _ = jail.signal(Signal::SIGKILL);
    let _ = jail.wait().await;
    jail.teardown().await.unwrap();
    // The group's own accounting: CPU time used per period it ran in.
    let used = after.cpu_ns - before.cpu_ns;
    let periods = after.cpu_periods - before.cpu_periods;
    let throttled = after.cpu_throttled_periods - before.cpu_throttled_periods;
    assert!(periods > 0, "{after:?}");
    let per_period = used as f64 / (periods as f64 * 100e6);
    assert!(
        per_period <= 0.55,
        "{per_period:.2} of each period used (quota 0.5): {after:?}"
    );
    assert!(
        throttled * 2 >= periods,
        "a busy loop is throttled in most periods: {throttled} of {periods}"
    );
    // Load elsewhere can only lower what it got; the quota caps it.
    assert!(
        (used as f64) <= wall.as_nanos() as f64 * 0.55,
        "{used} ns in {wall:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exec_joins_the_jails_group_and_updates_apply_live() {
    if !can_run() {
        return;
    }
    let t = test_root();
    let g = group();
    let mut jail = sh(&t, "sleep 30")
        .resources(Resources::new().pids(5))
        .resource_group(g.clone())
        .start()
        .await
        .unwrap();
    let mut p = jail
        .exec(
            &ExecConfig::new(["/bin/sleep", "30"])
                .stdin(Stdio::Null)
                .stdout(Stdio::Null)
                .stderr(Stdio::Null),
        )
        .await
        .unwrap();
    let pids = g.cgroup().unwrap().pids();
    assert!(pids.contains(&p.pid()), "{} not in {pids:?}", p.pid());
    assert!(pids.contains(&jail.pid()), "{} not in {pids:?}", jail.pid());
    g.update(&Resources::new().pids(50)).unwrap();
    assert_eq!(g.usage().unwrap().pids_limit, Some(50));
    let e = g
        .update(&Resources::new().memory(1))
        .expect_err("a bad update is refused");
    assert!(e.to_string().contains("memory limit"), "{e}");
    let _ = p.signal(Signal::SIGKILL);
    let _ = p.wait().await;
    let _ = jail.signal(Signal::SIGKILL);
    let _ = jail.wait().await;
    jail.teardown().await.unwrap();
    assert!(!g.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_start_leaves_no_group_and_remove_kills_what_is_left() {
    if !can_run() {
        return;
    }
    let t = test_root();
    let g = group();
    let e = JailConfig::new(&t.root)
        .command(["/bin/no-such-command"])
        .resources(Resources::new().pids(5))
        .resource_group(g.clone())
        .start()
        .await
        .expect_err("no such command");
    assert!(e.to_string().contains("no-such-command"), "{e}");
    assert!(!g.exists(), "a failed start removes the group");

    // A group whose owner vanished (the jail not torn down): remove kills and removes.
    let g = group();
    let jail = sh(&t, "sleep 60")
        .kill_with_owner(false)
        .resource_group(g.clone())
        .start()
        .await
        .unwrap();
    let pid = jail.pid();
    std::mem::forget(jail);
    let found = ResourceGroup::from_locator(&g.locator()).unwrap();
    assert_eq!(found, g);
    found.remove().unwrap();
    assert!(!g.exists());
    let dead = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}/cmdline")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z"))
            .unwrap_or(false)
    {
        assert!(Instant::now() < dead, "{pid} survived the group's removal");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_seccomp_blocks_new_user_namespaces_and_keeps_ordinary_commands() {
    if !can_run() {
        return;
    }
    let t = test_root();
    let run = |cfg: JailConfig| async move {
        let mut jail = cfg.start().await.unwrap();
        let out = jail.output().await.unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Unconfined, root in the jail may make a user namespace (no capability needed).
    let (status, err) = run(sh(&t, "unshare -U true")).await;
    assert_eq!(status, ExitStatus::Exited(0), "{err}");
    let profile = SeccompProfile::docker_default(default_capability_mask());
    let (status, err) = run(sh(&t, "unshare -U true").seccomp(profile.clone())).await;
    assert_ne!(status, ExitStatus::Exited(0));
    assert!(err.contains("Operation not permitted"), "{err}");
    // Ordinary commands, and a second process through exec, under the same filter.
    let script = "mkdir /tmp/d && ls / >/dev/null && id -u && date >/dev/null && ps >/dev/null \
                  && rm -r /tmp/d && sleep 0.1 && echo ok";
    let (status, err) = run(sh(&t, script).seccomp(profile.clone())).await;
    assert_eq!(status, ExitStatus::Exited(0), "{err}");
    let mut jail = sh(&t, "sleep 30")
        .seccomp(profile.clone())
        .start()
        .await
        .unwrap();
    let mut p = jail
        .exec(
            &ExecConfig::new(["/bin/unshare", "-U", "true"])
                .seccomp(profile)
                .stdin(Stdio::Null)
                .stdout(Stdio::Null)
                .stderr(Stdio::Null),
        )
        .await
        .unwrap();
    assert_ne!(p.wait().await.unwrap(), ExitStatus::Exited(0));
    let _ = jail.signal(Signal::SIGKILL);
    let _ = jail.wait().await;
}

#[test]
fn limits_without_a_group_are_refused() {
    let e = futures_lite_block(
        JailConfig::new("/")
            .command(["/bin/true"])
            .resources(Resources::new().pids(5))
            .start(),
    )
    .expect_err("refused");
    assert!(e.to_string().contains("no resource group"), "{e}");
}

fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The cgroup v2 mount point, if any (on this kind of machine, the hybrid layout's
/// `/sys/fs/cgroup/unified`, which takes device programs though it has no controllers).
fn cgroup2_mount() -> Option<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .ok()?
        .lines()
        .find(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|r| r.starts_with("cgroup2 "))
        })
        .and_then(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
}

#[test]
fn cgroup_v2_device_rules_are_an_ebpf_program_that_the_kernel_enforces() {
    if !can_run() {
        return;
    }
    let Some(unified) = cgroup2_mount() else {
        assert!(
            std::env::var("KLEENE_REQUIRE_ZFS").as_deref() != Ok("1"),
            "this kind of machine mounts cgroup v2"
        );
        return;
    };
    let name = format!("dev{}", std::process::id());
    let g = kleene_jail::Cgroup::new(
        kleene_jail::Hierarchy::V2(unified.clone()),
        "kleene-test",
        &name,
    )
    .unwrap();
    let mut r = Resources::new();
    r.devices = vec![
        kleene_jail::DeviceRule::deny_all(),
        kleene_jail::DeviceRule::allow('c', Some(1), Some(3), "rwm"),
    ];
    g.create(&r).unwrap();
    let procs = unified.join("kleene-test").join(&name).join("cgroup.procs");
    // The shell moves itself into the group, then tries /dev/null (allowed) and /dev/zero
    // (denied by the program).
    let script = format!(
        "echo $$ > {}; exec sh -c 'echo x > /dev/null && echo null-ok; head -c 1 /dev/zero >/dev/null 2>&1 || echo zero-denied'",
        procs.display()
    );
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    g.remove().unwrap();
    assert_eq!(
        said,
        "null-ok\nzero-denied\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
