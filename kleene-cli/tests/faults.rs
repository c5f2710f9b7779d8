//! Fault injection on a real pool: `kill -9` of klee, and separately of a container's
//! monitor, at a seeded random moment of every kind of operation (image create, build,
//! run --rm, run -d, exec, rm -f of a running container, volume create). After each kill
//! the next klee must return within a bound (a hang fails the test, it never hangs the
//! suite), repair, and leave no orphan dataset, process, mount or unfinished metadata row
//! (tests/common/clean.rs); then the same operation must succeed.
//!
//! The moment: each operation is first timed uninterrupted; a kill then comes at a
//! uniformly random fraction of its typical duration, so kills land in every phase
//! (extraction, snapshot, clone, COPY, RUN, the monitor's start, ...). The generator is a
//! xorshift seeded from the clock; the seed is printed, and `KLEENE_FAULT_SEED=N` replays
//! a run's choices (its kill moments differ with the machine's timing).
//! `KLEENE_FAULT_KEEP_GOING=1` reports a failed check and goes on, to see every problem of
//! a run (the test still fails at the end).
//!
//! Each test works on its own root `<pool>/kcl-<pid>-<n>`; without a pool or root the
//! tests skip, unless `KLEENE_REQUIRE_ZFS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/clean.rs"]
mod clean;
mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use clean::{Klee, Output, State, BOUND};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// Kills of klee per run, and of container monitors.
const KLEE_KILLS: usize = 42;
const MONITOR_KILLS: usize = 12;

/// How many times one kill is tried (a new moment each time) when the operation ended
/// before the kill came.
const ATTEMPTS: usize = 6;

// ---- the generator ----

/// xorshift64*: small, seeded, good enough to pick operations and moments.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // The state must not be zero; mix the seed so that nearby seeds differ at once.
        Rng((seed ^ 0x9e37_79b9_7f4a_7c15).max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn frac(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// The run's seed: `KLEENE_FAULT_SEED` (decimal or 0x-hex), else from the clock.
fn seed() -> u64 {
    if let Ok(s) = std::env::var("KLEENE_FAULT_SEED") {
        let s = s.trim();
        let parsed = match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        };
        return parsed.unwrap_or_else(|e| panic!("KLEENE_FAULT_SEED={s:?}: {e}"));
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32
}

// ---- the operations ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Op {
    ImageCreate,
    Build,
    RunRm,
    RunDetached,
    Exec,
    RmRunning,
    VolumeCreate,
}

impl Op {
    const ALL: [Op; 7] = [
        Op::ImageCreate,
        Op::Build,
        Op::RunRm,
        Op::RunDetached,
        Op::Exec,
        Op::RmRunning,
        Op::VolumeCreate,
    ];
    /// The operations during which a container monitor lives.
    const WITH_MONITOR: [Op; 4] = [Op::RunRm, Op::RunDetached, Op::Exec, Op::RmRunning];

    fn name(self) -> &'static str {
        match self {
            Op::ImageCreate => "image create",
            Op::Build => "build",
            Op::RunRm => "run --rm",
            Op::RunDetached => "run -d",
            Op::Exec => "exec",
            Op::RmRunning => "rm -f (running)",
            Op::VolumeCreate => "volume create",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Klee,
    Monitor,
}

/// One run of an operation, ready to start.
struct Prepared {
    args: Vec<String>,
    /// The container it works on, made beforehand (exec, rm -f).
    container: Option<String>,
    /// That container's monitor.
    monitor: Option<i32>,
}

impl Prepared {
    fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }
}

/// A test root with a base image, a build context, and the operations' typical durations.
struct Bench {
    k: Klee,
    url: String,
    ctx: String,
    base: String,
    /// The long-running container `exec` runs in.
    exec_box: Option<String>,
    n: u32,
    typical: HashMap<Op, Duration>,
    /// `KLEENE_FAULT_KEEP_GOING=1`: a check that fails is reported and the run goes on (to
    /// see every problem of a seed); the test still fails at the end.
    keep_going: bool,
    findings: Vec<String>,
    seen: std::collections::BTreeSet<String>,
    // Last: dropped after everything above, it destroys the root.
    _scratch: common::Scratch,
}

fn list(v: Value) -> Vec<Value> {
    v.as_array().cloned().expect("a JSON list")
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

impl Bench {
    fn new(s: common::Scratch) -> Self {
        let logs = s.dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let tar = s.busybox_rootfs();
        let ctx = s.dir.path().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        for (name, size) in [("a", 4096), ("b", 65536), ("c", 300_000)] {
            std::fs::write(ctx.join(name), vec![b'x'; size]).unwrap();
        }
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM base\nCOPY a b c /srv/\nRUN sleep 1\nRUN echo done > /srv/done\n",
        )
        .unwrap();
        let k = Klee {
            root: s.root.clone(),
            logs,
        };
        let url = format!("file://{}", tar.display());
        // The id is the last line (klee prints its progress before it).
        let created = k.ok(&["image", "create", "-t", "base", "fetch", &url]);
        let base = created.lines().last().unwrap_or("").trim().to_string();
        Bench {
            k,
            url,
            ctx: ctx.display().to_string(),
            base,
            exec_box: None,
            n: 0,
            typical: HashMap::new(),
            keep_going: std::env::var("KLEENE_FAULT_KEEP_GOING").as_deref() == Ok("1"),
            findings: Vec::new(),
            seen: Default::default(),
            _scratch: s,
        }
    }

    /// The engine's whole record of a container (`lsc -a --format json`; `isc` prints
    /// kleened's shape, without the monitor).
    fn inspect(&self, container: &str) -> Option<Value> {
        let out = self.k.run(&["container", "ls", "-a", "--format", "json"]);
        if !out.success() {
            return None;
        }
        let all: Value = serde_json::from_str(&out.stdout).expect("lsc prints JSON");
        list(all)
            .into_iter()
            .find(|c| c["id"] == container || c["name"] == container)
    }

    /// A detached container running `sleep`; its id.
    fn detached(&self, seconds: &str) -> String {
        first_line(&self.k.ok(&["run", "-d", "base", "/bin/sleep", seconds]))
    }

    /// The container exec runs in, started again if it is not running.
    fn exec_box(&mut self) -> String {
        if let Some(b) = &self.exec_box {
            // Running, and so it is: its monitor lives (after a kill of the monitor klee
            // may show it running for a while; the checks report that).
            let running = self.inspect(b).is_some_and(|c| {
                c["runtime"]["state"] == "Running"
                    && c["runtime"]["monitor_pid"]
                        .as_i64()
                        .is_some_and(|m| clean::alive(m as i32))
            });
            if running {
                return b.clone();
            }
        }
        let b = self.detached("3600");
        self.exec_box = Some(b.clone());
        b
    }

    fn monitor_of(&self, container: &str) -> Option<i32> {
        self.inspect(container)
            .and_then(|c| c["runtime"]["monitor_pid"].as_i64())
            .map(|p| p as i32)
    }

    fn prepare(&mut self, op: Op) -> Prepared {
        self.n += 1;
        let strings = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (args, container) = match op {
            Op::ImageCreate => (
                strings(&["image", "create", "-t", "img", "fetch", &self.url]),
                None,
            ),
            Op::Build => (
                strings(&["build", "--no-cache", "-t", "built", &self.ctx]),
                None,
            ),
            Op::RunRm => (strings(&["run", "--rm", "base", "/bin/sleep", "1"]), None),
            Op::RunDetached => (strings(&["run", "-d", "base", "/bin/sleep", "600"]), None),
            Op::Exec => {
                let b = self.exec_box();
                (strings(&["exec", &b, "/bin/sleep", "1"]), Some(b))
            }
            Op::RmRunning => {
                let c = self.detached("600");
                (strings(&["container", "rm", "-f", &c]), Some(c))
            }
            Op::VolumeCreate => (
                strings(&["volume", "create", &format!("vol{}", self.n)]),
                None,
            ),
        };
        let monitor = container.as_deref().and_then(|c| self.monitor_of(c));
        Prepared {
            args,
            container,
            monitor,
        }
    }

    /// Runs an operation to its end; it must succeed. Updates its typical duration.
    fn run_whole(&mut self, op: Op) -> Output {
        let p = self.prepare(op);
        let out = self.k.spawn(&p.args()).wait(BOUND);
        assert!(out.success(), "{} failed: {out}", op.name());
        let t = self.typical.entry(op).or_insert(out.took);
        *t = t.mul_f64(0.7) + out.took.mul_f64(0.3);
        out
    }

    /// Removes what the operations made: every container but the exec box, every image
    /// but the base, every volume. Keeps listings (and so repairs) short.
    fn tidy(&mut self) {
        let containers: Vec<Value> = list(self.k.json(&["lsc", "-a", "--format", "json"]));
        let images: Vec<Value> = list(self.k.json(&["lsi", "--format", "json"]));
        let volumes: Vec<Value> = list(self.k.json(&["lsv", "--format", "json"]));
        let ids = |list: &[Value], key: &str, keep: Option<&str>| -> Vec<String> {
            list.iter()
                .filter_map(|v| v[key].as_str())
                .filter(|id| Some(*id) != keep)
                .map(str::to_string)
                .collect()
        };
        let box_running = self.exec_box.as_deref().filter(|b| {
            containers
                .iter()
                .any(|c| c["id"] == *b && c["runtime"]["state"] == "Running")
        });
        for (mut args, rest) in [
            (
                vec!["container", "rm", "-f"],
                ids(&containers, "id", box_running),
            ),
            (vec!["image", "rm"], ids(&images, "id", Some(&self.base))),
            (vec!["volume", "rm"], ids(&volumes, "name", None)),
        ] {
            if !rest.is_empty() {
                args.extend(rest.iter().map(String::as_str));
                self.k.ok(&args);
            }
        }
        if box_running.is_none() {
            self.exec_box = None;
        }
    }
}

/// The monitor klee (pid `klee`) started: its child that is klee run again as a monitor
/// (or the former kleene-monitor binary); not a fork that has yet to exec.
fn monitor_child(klee: i32) -> Option<i32> {
    clean::processes()
        .into_iter()
        .filter(|p| p.ppid == klee)
        .map(|p| p.pid)
        .find(|&p| clean::is_monitor(p))
}

/// What one kill did, for the log.
struct Landed {
    at: Duration,
    typical: Duration,
    phase: String,
    repairs: Vec<String>,
}

/// One kill: prepares `op`, starts it, kills `target` at a random moment (within `span`
/// times its typical duration), then checks the repair and runs the operation again.
/// `None` when the operation (or the monitor) ended before the kill came.
fn kill_once(
    b: &mut Bench,
    op: Op,
    target: Target,
    rng: &mut Rng,
    span: f64,
    what: &str,
) -> Option<Landed> {
    let p = b.prepare(op);
    let typical = b.typical[&op];
    let delay = typical.mul_f64(span * rng.frac());
    let mut klee = b.k.spawn(&p.args());
    while klee.elapsed() < delay && !klee.exited() {
        std::thread::sleep(Duration::from_millis(1));
    }
    // A `run --rm` container runs on after its klee is killed, until its command ends and
    // its monitor removes it. That end is waited for (below), so that the repair and the
    // check see it done rather than a removal under way between their readings.
    let mut runs_on = Vec::new();
    let landed = match target {
        Target::Klee => {
            if op == Op::RunRm {
                runs_on = clean::processes()
                    .into_iter()
                    .filter(|p| p.ppid == klee.pid())
                    .map(|p| p.pid)
                    .collect();
            }
            klee.kill()
        }
        Target::Monitor => {
            // From the moment on, the first monitor there is: the container's recorded
            // one, or the one klee starts.
            let mut killed = false;
            loop {
                let m = match p.monitor {
                    Some(m) => Some(m).filter(|&m| clean::alive(m)),
                    None => monitor_child(klee.pid()),
                };
                if let Some(m) = m {
                    killed = kill(Pid::from_raw(m), Signal::SIGKILL).is_ok();
                    break;
                }
                if klee.exited() || klee.elapsed() > BOUND {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            killed
        }
    };
    let at = klee.elapsed();
    // After klee's kill this returns at once; after its monitor's, klee must still end.
    let out = klee.wait(BOUND);
    let until = Instant::now() + BOUND;
    while runs_on.iter().any(|&p| clean::alive(p)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let context = || {
        format!(
            "{what}: {} with {target:?} killed at {:.3} s of a typical {:.3} s\nthe killed operation: {out}",
            op.name(),
            at.as_secs_f64(),
            typical.as_secs_f64()
        )
    };
    let repairs = clean::repair(&b.k).unwrap_or_else(|e| panic!("{e}\nafter {}", context()));
    let (state, mut problems) = clean::check(&b.k);
    // Going on after a finding, what is left of it is not told again.
    problems.retain(|p| b.seen.insert(p.clone()));
    if !problems.is_empty() {
        let finding = format!(
            "NOT CLEAN after the fault:\n  - {}\nrepairs told: {repairs:?}\nafter {}",
            problems.join("\n  - "),
            context()
        );
        assert!(b.keep_going, "{finding}");
        println!("FINDING: {finding}");
        b.findings.push(finding);
    }
    if landed {
        again(b, op, &p, &state, &context);
    }
    b.tidy();
    landed.then(|| Landed {
        at,
        typical,
        phase: out.last_line().to_string(),
        repairs,
    })
}

/// The same operation once more, uninterrupted: it must succeed. A removal whose
/// container is still there removes that one.
fn again(b: &mut Bench, op: Op, p: &Prepared, state: &State, context: &dyn Fn() -> String) {
    let (what, out) = match p.container.as_deref() {
        Some(c) if op == Op::RmRunning && state.containers.iter().any(|v| v["id"] == c) => (
            "rm -f of the same container",
            b.k.run(&["container", "rm", "-f", c]),
        ),
        _ => {
            let prep = b.prepare(op);
            let out = b.k.spawn(&prep.args()).wait(BOUND);
            if out.success() {
                let t = b.typical.entry(op).or_insert(out.took);
                *t = t.mul_f64(0.7) + out.took.mul_f64(0.3);
            }
            (op.name(), out)
        }
    };
    if !out.success() {
        let finding = format!("{what} after the fault failed: {out}\nafter {}", context());
        assert!(b.keep_going, "{finding}");
        println!("FINDING: {finding}");
        b.findings.push(finding);
    }
}

/// `kills` kills of `target` over `ops` (each op about as often, in a seeded random
/// order), each followed by the checks.
fn suite(target: Target, kills: usize, ops: &[Op], salt: u64) {
    let Some(s) = common::scratch_for_containers() else {
        return;
    };
    let seed = seed();
    let label = format!("{target:?}").to_lowercase();
    println!("{label} kills: seed {seed} (replay: KLEENE_FAULT_SEED={seed})");
    let mut rng = Rng::new(seed ^ salt);
    let started = Instant::now();
    let mut b = Bench::new(s);
    for &op in ops {
        let out = b.run_whole(op);
        println!(
            "  {} takes {:.3} s uninterrupted",
            op.name(),
            out.took.as_secs_f64()
        );
    }
    b.tidy();
    let mut plan: Vec<Op> = ops.iter().copied().cycle().take(kills).collect();
    rng.shuffle(&mut plan);
    let mut per_op: BTreeMap<Op, usize> = BTreeMap::new();
    let mut missed = 0;
    for (i, &op) in plan.iter().enumerate() {
        let what = format!("seed {seed}, {label} kill {}/{kills}", i + 1);
        let mut landed = None;
        let round = Instant::now();
        // A kill that came too late is tried again earlier: a monitor may live only in
        // the first part of an operation (rm -f ends it).
        for attempt in 0..ATTEMPTS {
            let span = 0.5f64.powi(attempt as i32);
            landed = kill_once(&mut b, op, target, &mut rng, span, &what);
            if landed.is_some() {
                break;
            }
            missed += 1;
        }
        let l = landed.unwrap_or_else(|| {
            panic!(
                "{what}: {} ended before the kill {ATTEMPTS} times in a row",
                op.name()
            )
        });
        *per_op.entry(op).or_default() += 1;
        println!(
            "  [{:>2}/{kills}] {:<16} {label} killed at {:.3}/{:.3} s, at {:?}; repaired: {:?} ({:.1} s)",
            i + 1,
            op.name(),
            l.at.as_secs_f64(),
            l.typical.as_secs_f64(),
            l.phase,
            l.repairs,
            round.elapsed().as_secs_f64()
        );
    }
    let total: usize = per_op.values().sum();
    println!(
        "{label} kills: {total} landed ({missed} came too late and were tried again) in {:.1} s: {:?}",
        started.elapsed().as_secs_f64(),
        per_op
            .iter()
            .map(|(op, n)| format!("{} x{n}", op.name()))
            .collect::<Vec<_>>()
    );
    assert!(
        b.findings.is_empty(),
        "{} kills left the root unclean:\n\n{}",
        b.findings.len(),
        b.findings.join("\n\n")
    );
    assert!(total >= kills, "only {total} of {kills} kills landed");
}

#[test]
fn klee_killed_anywhere_leaves_nothing_behind() {
    suite(Target::Klee, KLEE_KILLS, &Op::ALL, 0x6b6c6565);
}

#[test]
fn a_monitor_killed_anywhere_leaves_nothing_behind() {
    suite(
        Target::Monitor,
        MONITOR_KILLS,
        &Op::WITH_MONITOR,
        0x6d6f6e69,
    );
}

/// The report that started it: a build killed in a RUN step wedged zfs-fuse for good, and
/// `klee lsi` and `ls` of the root never returned.
#[test]
fn a_build_killed_in_a_run_step_wedges_nothing() {
    let Some(s) = common::scratch_for_containers() else {
        return;
    };
    let logs = s.dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let k = Klee {
        root: s.root.clone(),
        logs: logs.clone(),
    };
    let tar = s.busybox_rootfs();
    k.ok(&[
        "image",
        "create",
        "-t",
        "base",
        "fetch",
        &format!("file://{}", tar.display()),
    ]);
    let ctx = s.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM base\nRUN sleep 5\nRUN echo done\n",
    )
    .unwrap();
    let ctx = ctx.display().to_string();
    let mut build = k.spawn(&["build", "-t", "cb", &ctx]);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(build.kill(), "the build ended within 2.5 s");
    let out = build.wait(BOUND);
    // klee's transcript is on stdout.
    assert!(
        out.stdout.contains("RUN sleep 5"),
        "the kill was to land in RUN sleep 5: {out}"
    );
    let repairs = clean::repair(&k).unwrap_or_else(|e| panic!("{e}"));
    let mnt = clean::zfs(&["get", "-H", "-o", "value", "mountpoint", &s.root], &logs);
    let mut ls = std::process::Command::new("ls");
    ls.arg(mnt.trim());
    let listed = clean::run(ls, format!("ls {}", mnt.trim()), &logs, BOUND);
    assert!(listed.success(), "{listed}");
    let (_, problems) = clean::check(&k);
    assert!(
        problems.is_empty(),
        "NOT CLEAN after the build was killed:\n  - {}\nrepairs told: {repairs:?}",
        problems.join("\n  - ")
    );
    let out = k.run(&["build", "-t", "cb", &ctx]);
    assert!(out.success(), "the build again: {out}");
}

/// The checks themselves: each kind of leftover, planted on a clean root, is reported.
#[test]
fn the_checks_find_what_they_look_for() {
    let Some(s) = common::scratch_for_containers() else {
        return;
    };
    let b = Bench::new(s);
    let k = &b.k;
    let root = k.root.as_str();
    let container = b.detached("600");
    let (state, problems) = clean::check(k);
    assert!(problems.is_empty(), "{problems:?}");
    let mnt = clean::zfs(&["get", "-H", "-o", "value", "mountpoint", root], &k.logs)
        .trim()
        .to_string();
    let reported = |what: &str, needle: &str| {
        let (_, problems) = clean::check(k);
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{what} was not reported ({needle:?}): {problems:?}"
        );
    };

    // (a) a dataset no metadata knows (beside image/, container/ and volumes/: klee's
    // repair, which the check's listings run, removes unknown ones inside those).
    let planted = format!("{root}/planted");
    clean::zfs(&["create", &planted], &k.logs);
    reported("a dataset", &format!("orphan dataset {planted}"));
    // zfs-fuse answers "busy" for a moment after a create.
    let destroyed = (0..40).any(|_| {
        let mut cmd = std::process::Command::new("zfs");
        cmd.args(["destroy", &planted]);
        let out = clean::run(cmd, "zfs destroy", &k.logs, BOUND);
        out.success() || {
            std::thread::sleep(Duration::from_millis(250));
            false
        }
    });
    assert!(destroyed, "could not destroy {planted}");

    // (b) a host process working below the root, and the container's own processes when
    // the container is not counted as running.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .current_dir(format!("{mnt}/image"))
        .spawn()
        .unwrap();
    reported("a process", &format!("pid {}", sleeper.id()));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let mut holder = std::process::Command::new("sleep")
        .arg("60")
        .current_dir("/")
        .stdin(std::fs::File::open(format!("{mnt}/metadata.sqlite")).unwrap())
        .spawn()
        .unwrap();
    reported(
        "a process with a file open",
        &format!("pid {} (sleep, state S, parent {}, [\"sleep\", \"60\"]): it has {mnt}/metadata.sqlite open", holder.id(), std::process::id()),
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    let jailed = state
        .running()
        .find(|c| c["id"] == container.as_str())
        .and_then(|c| c["runtime"]["pid"].as_i64())
        .expect("the container's pid");
    let stray = clean::stray_processes(root, &mnt, &State::default());
    assert!(
        stray
            .iter()
            .any(|p| p.starts_with(&format!("pid {jailed} ")) && p.contains("its root is dataset")),
        "the container's process {jailed} was not found in its jail: {stray:?}"
    );

    // (c) a mount below the root that is no dataset.
    k.ok(&["volume", "create", "v"]);
    let point = format!("{mnt}/volumes/v/m");
    std::fs::create_dir(&point).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        point.as_str(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    reported("a mount", &format!("mount {point} (tmpfs"));
    nix::mount::umount(point.as_str()).unwrap();

    // (d) a row of an operation in flight (its lock held here, so klee leaves it alone).
    let token = "0123456789ab";
    let lock = std::fs::File::create(format!("{mnt}/ops/{token}.lock")).unwrap();
    lock.lock().unwrap();
    let conn = rusqlite::Connection::open(format!("{mnt}/metadata.sqlite")).unwrap();
    conn.execute(
        "UPDATE volumes SET state = 'pending', op = ?1 WHERE name = 'v'",
        [token],
    )
    .unwrap();
    reported("an unfinished row", "volumes row v is \"pending\"");
    conn.execute(
        "UPDATE volumes SET state = 'ready', op = NULL WHERE name = 'v'",
        [],
    )
    .unwrap();
    drop(conn);
    // ... and the lock file of an operation that ended without removing it: the check
    // sees it, and the repair that the check's listings run removes it.
    drop(lock);
    let lock_path = format!("{mnt}/ops/{token}.lock");
    let stale = clean::stale_locks(std::path::PathBuf::from(format!("{mnt}/ops"))).unwrap();
    assert!(
        stale
            .iter()
            .any(|p| p.contains(&format!("stale operation lock {lock_path}"))),
        "a stale lock was not reported: {stale:?}"
    );
    let (_, problems) = clean::check(k);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(
        !std::path::Path::new(&lock_path).exists(),
        "the repair left the stale lock"
    );
}
