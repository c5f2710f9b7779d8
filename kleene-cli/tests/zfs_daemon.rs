//! The ZFS daemon (zfs-fuse) killed with SIGKILL in the middle of an operation, then
//! started again: klee must fail with a clear error within a bound (not hang), also while
//! the daemon is away, and work again once it is back: the next klee repairs and leaves no
//! orphan dataset, process, mount or unfinished metadata row (tests/common/clean.rs), and
//! the operation succeeds.
//!
//! This kills the daemon every test on the host uses, so it is a test target of its own
//! behind the `zfs-daemon-tests` feature: `cargo test --workspace` never builds it, and
//! scripts/test.sh runs it alone, after the other tests:
//! `cargo test -p kleene-cli --features zfs-daemon-tests --test zfs_daemon -- --test-threads=1`
//! (one test at a time: they share the daemon).
//!
//! The daemon is started again as it was (its own program and arguments), the way
//! scripts/lib.sh's `start_zfs` and Debian's init script do: its dead FUSE mounts are
//! detached (`umount -l`), the stale pid file removed, and once `zpool list` answers, a
//! pool it did not import again is imported from the directory its file was in, and the
//! file systems are mounted (`zfs mount -a`). A guard does the same if the test fails
//! half-way, so the host is never left without its daemon.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/clean.rs"]
mod clean;
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clean::{Klee, Output, BOUND};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long zfs-fuse gets to answer after it is started again.
const START_BOUND: Duration = Duration::from_secs(60);

/// zfs-fuse's pid file, as scripts/lib.sh and Debian's init script start it.
const PIDFILE: &str = "/run/zfs-fuse.pid";

fn pid_of_comm(name: &str) -> Vec<i32> {
    clean::processes()
        .into_iter()
        .filter(|p| p.comm == name)
        .map(|p| p.pid)
        .collect()
}

/// The zfs-fuse daemon: the one its pid file names, else the only one there is.
fn daemon_pid() -> Option<i32> {
    let running = pid_of_comm("zfs-fuse");
    let from_file = std::fs::read_to_string(PIDFILE)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| running.contains(p));
    match (from_file, running.as_slice()) {
        (Some(p), _) => Some(p),
        (None, [one]) => Some(*one),
        (None, []) => None,
        (None, many) => panic!("several zfs-fuse daemons ({many:?}) and no pid file naming one"),
    }
}

/// A short zpool(8)/zfs(8) run with a deadline; its output, whatever the exit.
fn tool(prog: &str, args: &[&str], logs: &Path) -> Output {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    clean::run(cmd, format!("{prog} {}", args.join(" ")), logs, BOUND)
}

/// How the running daemon was started and what it serves, to start it again as it was.
#[derive(Debug, Clone)]
struct Daemon {
    pid: i32,
    argv: Vec<String>,
    exe: PathBuf,
    /// Its pools, with the directory of each pool's file (for `zpool import -d`).
    pools: BTreeMap<String, Option<PathBuf>>,
}

impl Daemon {
    fn find(logs: &Path) -> Option<Daemon> {
        let pid = daemon_pid()?;
        let argv = clean::cmdline(pid);
        let exe = clean::exe(pid).expect("zfs-fuse's program");
        let list = tool("zpool", &["list", "-H", "-o", "name"], logs);
        assert!(list.success(), "zpool list: {list}");
        let pools = list
            .stdout
            .lines()
            .map(|pool| {
                let status = tool("zpool", &["status", pool], logs);
                // A file vdev is shown by its absolute path.
                let dir = status
                    .stdout
                    .lines()
                    .filter_map(|l| l.split_whitespace().next())
                    .find(|w| w.starts_with('/'))
                    .and_then(|f| Path::new(f).parent().map(Path::to_path_buf));
                (pool.to_string(), dir)
            })
            .collect();
        Some(Daemon {
            pid,
            argv,
            exe,
            pools,
        })
    }

    /// The pid file the daemon writes: its `--pidfile`, else the default.
    fn pidfile(&self) -> PathBuf {
        self.argv
            .iter()
            .position(|a| a == "--pidfile" || a == "-p")
            .and_then(|i| self.argv.get(i + 1))
            .map_or_else(|| PathBuf::from(PIDFILE), PathBuf::from)
    }

    fn kill(&self) {
        kill(Pid::from_raw(self.pid), Signal::SIGKILL).expect("SIGKILL of zfs-fuse");
    }

    /// Wedges it: alive, its FUSE mounts and its socket there, nothing answered.
    fn stop(&self) {
        kill(Pid::from_raw(self.pid), Signal::SIGSTOP).expect("SIGSTOP of zfs-fuse");
    }

    /// Lets a stopped daemon go on (harmless when it runs).
    fn go_on(&self) {
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGCONT);
    }

    /// Starts the daemon again after it died, and brings its pools back.
    fn restart(&self, logs: &Path) {
        let gone = Instant::now() + Duration::from_secs(30);
        while clean::alive(self.pid) {
            assert!(Instant::now() < gone, "zfs-fuse {} does not end", self.pid);
            std::thread::sleep(Duration::from_millis(20));
        }
        // Its FUSE mounts are dead ("transport endpoint is not connected"): detached,
        // deepest first, so that the new daemon can mount there again.
        let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let mut dead: Vec<String> = clean::mounts(&info)
            .into_iter()
            .filter(|(_, fstype, source)| {
                fstype.starts_with("fuse.zfs")
                    && self
                        .pools
                        .keys()
                        .any(|p| source == p || source.starts_with(&format!("{p}/")))
            })
            .map(|(point, _, _)| point)
            .collect();
        dead.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
        for point in &dead {
            if let Err(e) = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH) {
                eprintln!("umount -l {point}: {e}");
            }
        }
        // zfs-fuse refuses to start, silently, while its pid file exists.
        let _ = std::fs::remove_file(self.pidfile());
        for d in ["/var/lock/zfs", "/run/zfs"] {
            let _ = std::fs::create_dir_all(d);
        }
        let mut cmd = Command::new(&self.exe);
        cmd.args(self.argv.iter().skip(1))
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Not in the test's process group: a Ctrl-C of the tests must not reach it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().expect("starting zfs-fuse again");
        let deadline = Instant::now() + START_BOUND;
        loop {
            let _ = child.try_wait(); // it forks into the background; reap the parent
            if tool("zpool", &["list", "-H", "-o", "name"], logs).success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "zfs-fuse started again does not answer within {} s",
                START_BOUND.as_secs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let imported = tool("zpool", &["list", "-H", "-o", "name"], logs).stdout;
        for (pool, dir) in &self.pools {
            if imported.lines().any(|l| l == pool) {
                continue;
            }
            let mut args = vec!["import"];
            let dir_s;
            if let Some(d) = dir {
                dir_s = d.display().to_string();
                args.extend(["-d", &dir_s]);
            }
            args.push(pool);
            let out = tool("zpool", &args, logs);
            assert!(
                out.success(),
                "zpool import {pool} after the restart: {out}"
            );
            println!("  imported {pool} again (zfs-fuse did not)");
        }
        let out = tool("zfs", &["mount", "-a"], logs);
        if !out.success() {
            eprintln!("zfs mount -a after the restart: {out}");
        }
        let _ = child.try_wait();
    }
}

/// Starts the daemon again (or lets a stopped one go on) if the test ends (fails) while
/// it is away.
struct Restore<'a> {
    daemon: &'a Daemon,
    logs: &'a Path,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        self.daemon.go_on();
        if !tool("zpool", &["list", "-H", "-o", "name"], self.logs).success() {
            eprintln!("the test ended with zfs-fuse away: starting it again");
            let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.daemon.restart(self.logs)
            }));
            if again.is_err() {
                eprintln!("zfs-fuse could not be started again: start it by hand (scripts/lib.sh start_zfs)");
            }
        }
    }
}

/// klee failed as it should without its ZFS: exit code 1 and one `klee: ...` line saying
/// why, no panic.
fn assert_clear_failure(out: &Output, what: &str) {
    let last = out.last_line();
    assert!(
        out.status.code() == Some(1)
            && last.starts_with("klee: ")
            && !out.stderr.contains("panicked")
            && last.len() < 1000,
        "{what}: klee was to fail with a clear error: {out}"
    );
}

/// The busybox rootfs with 4000 small files more, so that its extraction takes a while.
fn padded_rootfs(s: &common::Scratch) -> std::path::PathBuf {
    let plain = s.busybox_rootfs();
    let padded = s.dir.path().join("padded.tar");
    let mut out = tar::Builder::new(std::fs::File::create(&padded).unwrap());
    let mut archive = tar::Archive::new(std::fs::File::open(&plain).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let path = entry.path().unwrap().into_owned();
        out.append_data(&mut header, path, &mut entry).unwrap();
    }
    let data = vec![b'k'; 1024];
    for n in 0..4000 {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        out.append_data(&mut h, format!("padding/f{n}"), data.as_slice())
            .unwrap();
    }
    out.finish().unwrap();
    padded
}

/// When to kill the daemon: a time into the operation, or a time after a line of its
/// stderr appeared.
enum When<'a> {
    After(Duration),
    AfterLine(&'a str, Duration),
}

/// What happens to the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL: its mounts answer "not connected" at once; it is started again.
    Kill,
    /// SIGSTOP: it stays, answering nothing (a wedge); SIGCONT lets it go on.
    Stop,
}

/// Runs `args`, kills (or stops) the daemon in the middle of it, checks that klee fails
/// clearly (also a klee started while the daemon is away), starts the daemon again (or
/// lets it go on), and checks the repair and that `args` then succeeds.
fn fault_during(k: &Klee, daemon: &mut Daemon, fault: Fault, args: &[&str], when: When) {
    let what = args[..2].join(" ");
    let restore = Restore {
        daemon: &*daemon,
        logs: &k.logs,
    };
    let mut op = k.spawn(args);
    match when {
        When::After(d) => std::thread::sleep(d),
        When::AfterLine(line, d) => {
            while !op.output_so_far().contains(line) {
                assert!(!op.exited(), "{what} ended before {line:?}");
                assert!(op.elapsed() < BOUND, "{what} did not reach {line:?}");
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(d);
        }
    }
    assert!(!op.exited(), "{what} ended before the daemon was killed");
    let doing = op.output_so_far();
    match fault {
        Fault::Kill => daemon.kill(),
        Fault::Stop => daemon.stop(),
    }
    let killed_at = op.elapsed();
    if fault == Fault::Stop {
        // A thread of klee may wait on a FUSE request the stopped daemon had already
        // taken: then klee prints its error but cannot finish exiting until the daemon
        // goes on (README, "Crashes, kills and Ctrl-C"). Its error line must come within
        // the bound; its exit is checked once the daemon goes on.
        let limit = killed_at + BOUND;
        while !op.exited() && !op.stderr_so_far().lines().any(|l| l.starts_with("klee: ")) {
            assert!(
                op.elapsed() < limit,
                "{what} with its ZFS daemon stopped printed no error within {} s: {}",
                BOUND.as_secs(),
                op.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "zfs-fuse stopped {:.3} s into {what} (at {:?}); klee's error came {:.3} s later",
            killed_at.as_secs_f64(),
            doing.lines().last().unwrap_or(""),
            (op.elapsed() - killed_at).as_secs_f64(),
        );
    }
    let op = match fault {
        Fault::Kill => {
            let out = op.wait(BOUND);
            println!(
                "zfs-fuse killed {:.3} s into {what} (at {:?}); klee ended {:.3} s later: {:?}",
                killed_at.as_secs_f64(),
                doing.lines().last().unwrap_or(""),
                (out.took - killed_at).as_secs_f64(),
                out.last_line()
            );
            assert_clear_failure(&out, &format!("{what} with its ZFS daemon killed"));
            None
        }
        Fault::Stop => Some(op),
    };
    // While the daemon is away, klee says so within the bound.
    for a in [&["lsi"][..], args] {
        let out = k.run(a);
        println!(
            "  with zfs-fuse away, klee {} took {:.3} s: {:?}",
            a[0],
            out.took.as_secs_f64(),
            out.last_line()
        );
        assert_clear_failure(&out, &format!("klee {a:?} with no ZFS daemon"));
    }
    let started = Instant::now();
    match fault {
        Fault::Kill => daemon.restart(&k.logs),
        Fault::Stop => daemon.go_on(),
    }
    if let Some(op) = op {
        // Free to finish exiting now; it failed as it said.
        let out = op.wait_more(BOUND);
        assert_clear_failure(&out, &format!("{what} with its ZFS daemon stopped"));
    }
    drop(restore);
    daemon.pid = daemon_pid().expect("zfs-fuse runs again");
    println!(
        "  zfs-fuse started again in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let repairs = clean::repair(k).unwrap_or_else(|e| panic!("{e}"));
    println!("  the next klee: {repairs:?}");
    let (_, problems) = clean::check(k);
    assert!(
        problems.is_empty(),
        "NOT CLEAN after zfs-fuse came back ({what}):\n  - {}\nrepairs told: {repairs:?}",
        problems.join("\n  - ")
    );
    let again = k.run(args);
    assert!(again.success(), "{what} after the restart: {again}");
    let (_, problems) = clean::check(k);
    assert!(
        problems.is_empty(),
        "NOT CLEAN after {what} once zfs-fuse was back:\n  - {}",
        problems.join("\n  - ")
    );
}

/// A scratch root for containers, the daemon as it runs, and klee on the root; `None`
/// (skip) without either.
fn lab() -> Option<(common::Scratch, Daemon, Klee)> {
    let s = common::scratch_for_containers()?;
    let logs = s.dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let Some(daemon) = Daemon::find(&logs) else {
        eprintln!("skipped: no zfs-fuse daemon here (ZFS in the kernel has none to kill or stop)");
        return None;
    };
    println!(
        "zfs-fuse: pid {}, {:?}, pools {:?}",
        daemon.pid, daemon.argv, daemon.pools
    );
    let k = Klee {
        root: s.root.clone(),
        logs,
    };
    Some((s, daemon, k))
}

/// `image create` of the padded rootfs, timed once: its arguments and how long it took
/// (a fault comes a third of the way in: extraction, which the padding makes long enough
/// that a warm second run cannot finish first).
fn timed_create(s: &common::Scratch, k: &Klee) -> (Vec<String>, Duration) {
    let url = format!("file://{}", padded_rootfs(s).display());
    let create: Vec<String> = ["image", "create", "-t", "base", "fetch", url.as_str()]
        .map(String::from)
        .into();
    let args: Vec<&str> = create.iter().map(String::as_str).collect();
    let first = k.run(&args);
    assert!(first.success(), "{first}");
    (create, first.took)
}

#[test]
fn klee_survives_the_zfs_daemon_killed_mid_operation() {
    let Some((s, mut daemon, k)) = lab() else {
        return;
    };
    let (create, took) = timed_create(&s, &k);
    let create: Vec<&str> = create.iter().map(String::as_str).collect();
    fault_during(&k, &mut daemon, Fault::Kill, &create, When::After(took / 3));

    // A build step running in a jail on the file system the daemon served.
    let ctx = s.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM base\nRUN sleep 2\nRUN echo done\n",
    )
    .unwrap();
    let ctx = ctx.display().to_string();
    fault_during(
        &k,
        &mut daemon,
        Fault::Kill,
        &["build", "-t", "cb", &ctx],
        When::AfterLine("RUN sleep 2", Duration::from_millis(500)),
    );
}

/// The daemon wedged (stopped, not dead) half-way through a base image's extraction: the
/// walk below the pool does not answer, and the engine's watch ends klee's wait with a
/// clear error instead of a hang; once the daemon goes on, the next klee repairs.
#[test]
fn klee_survives_the_zfs_daemon_wedged_mid_operation() {
    let Some((s, mut daemon, k)) = lab() else {
        return;
    };
    let (create, took) = timed_create(&s, &k);
    let create: Vec<&str> = create.iter().map(String::as_str).collect();
    fault_during(&k, &mut daemon, Fault::Stop, &create, When::After(took / 3));
}
