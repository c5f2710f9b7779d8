//! Side-by-side timings of kleene and its peers on one machine, one rootfs, in one run,
//! alternating the tools so that drift hits both alike. Medians over `--runs`.
//!
//! ```text
//! compare --pool POOL --tarball minbase.txz [--runs N] [--klee PATH] [--out FILE.md]
//!         [--chart FILE.png] [base-image] [run] [build] [rebuild]
//! ```
//!
//! Every kleene figure is the `klee` command a user would type, with the engine under
//! `<pool>/kleene-bench`; every peer figure is the peer's command. Nothing runs in a shell.
//!
//! - `base-image`: `klee image create fetch file://TARBALL` against the floor,
//!   `xz -dc | tar -x` into a fresh dataset of the same pool, and `podman import` into a
//!   fresh storage each run (a second import of the same tarball into one storage is
//!   deduplicated by podman).
//! - `run`: `klee run --rm IMAGE /bin/true` against `podman run --rm IMAGE /bin/true`.
//! - `run-net`: `klee run --rm -n NET IMAGE /bin/true` (a bridge network) against
//!   `podman run --rm --network bridge IMAGE /bin/true`, and the set-up cost of a
//!   container's network (its median less `run`'s). benches/compare runs the whole
//!   comparison inside a network namespace of its own, so neither tool touches the host's
//!   interfaces or firewall.
//! - `build`: `klee build --no-cache` of a ten-instruction Dockerfile that copies 200 files
//!   against `buildah bud --layers=false` of the same Dockerfile and context.
//! - `rebuild`: an unchanged rebuild, `klee build` with its snapshot cache against
//!   `buildah bud --layers` with its layer cache, both warmed by one build first.
//! - `parse`: Dockerfile parse time of `kleene_dockerfile::parse` (syntax tree, typed
//!   instructions, validation) against the `parse-dockerfile` crate, in this process, over
//!   BuildKit's corpus (the 25 vendored `testfiles/*/Dockerfile`), each run a median of
//!   passes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kleene_benches::{chart, median, run_ok, settle, timed};
use kleene_core::kleene_zfs::{DatasetName, Properties, Zfs};

const WHAT: [&str; 6] = ["base-image", "run", "run-net", "build", "rebuild", "parse"];
/// The image tag both tools give the base image; the bench Dockerfile builds FROM it.
const BASE: &str = "bench-base";
const APP: &str = "bench-app";

struct Args {
    pool: String,
    tarball: PathBuf,
    runs: usize,
    klee: PathBuf,
    out: Option<PathBuf>,
    chart: Option<PathBuf>,
    what: Vec<String>,
}

fn args() -> Result<Args> {
    let exe_dir = std::env::current_exe()?
        .parent()
        .context("the program has no directory")?
        .to_path_buf();
    let mut a = Args {
        pool: String::new(),
        tarball: PathBuf::new(),
        runs: 9,
        klee: exe_dir.join("klee"),
        out: None,
        chart: None,
        what: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--pool" => a.pool = it.next().context("--pool needs a value")?,
            "--tarball" => a.tarball = it.next().context("--tarball needs a value")?.into(),
            "--runs" => a.runs = it.next().context("--runs needs a value")?.parse()?,
            "--klee" => a.klee = it.next().context("--klee needs a value")?.into(),
            "--out" => a.out = Some(it.next().context("--out needs a value")?.into()),
            "--chart" => a.chart = Some(it.next().context("--chart needs a value")?.into()),
            w if WHAT.contains(&w) => a.what.push(arg),
            other => bail!("unknown argument {other:?}"),
        }
    }
    if a.pool.is_empty() || a.tarball.as_os_str().is_empty() || a.runs == 0 {
        bail!(
            "usage: compare --pool POOL --tarball FILE [--runs N] [--klee PATH] [--out FILE.md] [--chart FILE.png] [{}]",
            WHAT.join("] [")
        );
    }
    if !a.klee.is_file() {
        bail!(
            "no klee at {}: build it (cargo build --release -p kleene-cli) or pass --klee",
            a.klee.display()
        );
    }
    if a.what.is_empty() {
        a.what = WHAT.iter().map(|s| s.to_string()).collect();
    }
    Ok(a)
}

/// The floor: `xz -dc TARBALL | tar -x -C MOUNTPOINT` into a new dataset, then its
/// snapshot, as an image is: no shell, the two processes piped directly.
fn floor_extract(zfs: &Zfs, ds: &DatasetName, tarball: &Path) -> Result<Duration> {
    let t = Instant::now();
    zfs.create(ds, &Properties::new())?;
    let mp = zfs.mountpoint(ds)?.context("floor dataset not mounted")?;
    let mut xz = Command::new("xz")
        .args(["-dc", "-T0"])
        .arg(tarball)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting xz")?;
    let pipe = xz.stdout.take().context("xz stdout")?;
    let status = Command::new("tar")
        .args(["-x", "--numeric-owner", "-C"])
        .arg(&mp)
        .stdin(pipe)
        .status()
        .context("starting tar")?;
    let xz_status = xz.wait()?;
    if !status.success() || !xz_status.success() {
        bail!("xz | tar failed");
    }
    zfs.snapshot(&ds.snapshot("image")?, &Properties::new())?;
    Ok(t.elapsed())
}

/// The build benchmark's context: a ten-instruction Dockerfile that copies 200 files
/// (10 directories of 20, 1-8 KiB each) and a config file, and runs four commands.
fn make_context(dir: &Path) -> Result<()> {
    let files = dir.join("files");
    for d in 0..10 {
        let sub = files.join(format!("d{d:02}"));
        std::fs::create_dir_all(&sub)?;
        for f in 0..20 {
            let n = d * 20 + f;
            let line = format!("file {n} of the kleene build benchmark\n");
            let body = line.repeat(1 + (n * 37) % 200);
            std::fs::write(sub.join(format!("f{f:02}.txt")), body)?;
        }
    }
    std::fs::write(dir.join("app.conf"), "listen = 8080\nworkers = 4\n")?;
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM {BASE}
ARG VERSION=1.0
ENV APP_HOME=/srv/app LANG=C.UTF-8
WORKDIR /srv/app
COPY files/ ./files/
RUN find files -type f | wc -l > count && test \"$(cat count)\" = 200
COPY app.conf /etc/app.conf
RUN sha256sum files/*/* > SHA256SUMS
RUN mkdir -p /var/lib/app && echo \"$VERSION\" > /var/lib/app/version
RUN chmod -R go-w /srv/app
LABEL org.opencontainers.image.title=bench-app
CMD [\"cat\", \"/srv/app/count\"]
"
        ),
    )?;
    Ok(())
}

/// BuildKit's Dockerfiles, as kleene-dockerfile vendors them.
fn parse_corpus() -> Result<Vec<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../kleene-dockerfile/tests/fixtures/buildkit/testfiles");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("the BuildKit corpus at {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("Dockerfile"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .collect()
}

/// The time of one pass over the corpus, ours and the peer's: `runs` alternating samples,
/// each the median of 201 passes, and their medians.
fn parse_times(runs: usize) -> Result<(Duration, Duration)> {
    use std::hint::black_box;
    let files = parse_corpus()?;
    let pass = |f: &dyn Fn(&str)| {
        let mut times = Vec::with_capacity(201);
        for _ in 0..201 {
            let t = Instant::now();
            for d in &files {
                f(black_box(d));
            }
            times.push(t.elapsed());
        }
        median(times)
    };
    let ours = |d: &str| {
        let _ = black_box(kleene_dockerfile::parse(d));
    };
    let peer = |d: &str| {
        let _ = black_box(parse_dockerfile::parse(d));
    };
    // Warmed once each.
    pass(&ours);
    pass(&peer);
    let (mut o, mut p) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        o.push(pass(&ours));
        p.push(pass(&peer));
    }
    Ok((median(o), median(p)))
}

/// A time as the table shows it: milliseconds, or microseconds below one.
/// A ratio with three significant digits at most (0.0308, not 0.03: a row at its target's
/// line must not read as met when it is not).
fn figure(x: f64) -> String {
    let digits = if x >= 1.0 {
        2
    } else if x >= 0.1 {
        3
    } else {
        4
    };
    let s = format!("{x:.digits$}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn shown(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 1.0 {
        format!("{:.1} µs", ms * 1e3)
    } else {
        format!("{ms:.1} ms")
    }
}

/// One comparison: our median against a peer's.
struct Row {
    what: String,
    ours: Duration,
    peer_name: String,
    peer: Duration,
    /// The issue's target for ours / peer.
    target: f64,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.ours.as_secs_f64() / self.peer.as_secs_f64()
    }
}

struct Bench {
    klee: PathBuf,
    root: String,
}

impl Bench {
    /// `klee ARGS`, on the bench's engine root.
    fn klee<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = Command::new(&self.klee);
        c.env("KLEENE_ROOT", &self.root).args(args);
        c
    }
}

/// `program ARGS`, a peer's command.
fn tool<I, S>(program: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut c = Command::new(program);
    c.args(args);
    c
}

fn podman<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(args: I) -> Command {
    tool("podman", args)
}

fn buildah<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(args: I) -> Command {
    tool("buildah", args)
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn version(tool: &str) -> String {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn main() -> Result<()> {
    let a = args()?;
    let zfs = Zfs::open();
    let root = DatasetName::new(format!("{}/kleene-bench", a.pool))?;
    let tarball = std::fs::canonicalize(&a.tarball)
        .with_context(|| format!("tarball {}", a.tarball.display()))?;
    let url = format!("file://{}", tarball.display());
    if !have("podman") || !have("buildah") {
        bail!("podman and buildah are needed: run benches/scripts/podman-setup.sh");
    }
    let bench = Bench {
        klee: a.klee.clone(),
        root: root.to_string(),
    };
    let wants = |w: &str| a.what.iter().any(|x| x == w);
    let mut rows = Vec::new();
    let runs = a.runs;

    // A fresh engine root and a fresh podman image of the same tarball.
    if zfs.exists(&root)? {
        zfs.destroy(&root, true)?;
    }
    let _ = run_ok(&mut podman(["rmi", "-f", BASE, APP]));

    if wants("base-image") {
        let (mut ours, mut floor, mut peer) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs {
            let tag = format!("bench-import:{i}");
            ours.push(timed(
                &mut bench.klee(["image", "create", "-t", &tag, "fetch", &url]),
            )?);
            run_ok(&mut bench.klee(["rmi", &tag]))?;

            let ds = root.child(&format!("floor{i}"))?;
            floor.push(floor_extract(&zfs, &ds, &tarball)?);
            zfs.destroy(&ds, true)?;

            // A fresh storage each time: a second import of the same tarball into one is
            // deduplicated.
            let storage = tempfile::Builder::new()
                .prefix("kleene-bench-podman")
                .tempdir_in("/var/tmp")?;
            let (graph, run) = (storage.path().join("root"), storage.path().join("run"));
            peer.push(timed(
                tool("podman", ["--root"])
                    .arg(&graph)
                    .arg("--runroot")
                    .arg(&run)
                    .args(["import", "-q"])
                    .arg(&tarball)
                    .arg("kleene-bench-import"),
            )?);
            let _ = run_ok(
                tool("podman", ["--root"])
                    .arg(&graph)
                    .arg("--runroot")
                    .arg(&run)
                    .args(["rmi", "-a", "-f"]),
            );
            drop(storage);
            eprintln!("base-image {}/{runs}", i + 1);
        }
        let ours = median(ours);
        rows.push(Row {
            what: "base image from tarball".into(),
            ours,
            peer_name: "xz -dc \\| tar -x (floor)".into(),
            peer: median(floor),
            target: 0.5,
        });
        rows.push(Row {
            what: "base image from tarball".into(),
            ours,
            peer_name: "podman import (fresh storage)".into(),
            peer: median(peer),
            target: 0.5,
        });
    }

    // The base image of the other benchmarks, in both tools.
    run_ok(&mut bench.klee(["image", "create", "-t", BASE, "fetch", &url]))?;
    run_ok(podman(["import", "-q"]).arg(&tarball).arg(BASE))?;

    if wants("run") {
        let (mut ours, mut peer) = (Vec::new(), Vec::new());
        for i in 0..runs {
            settle();
            ours.push(timed(&mut bench.klee(["run", "--rm", BASE, "/bin/true"]))?);
            peer.push(timed(&mut podman([
                "run",
                "--rm",
                "--network=host",
                BASE,
                "/bin/true",
            ]))?);
            eprintln!("run {}/{runs}", i + 1);
        }
        rows.push(Row {
            what: "run --rm IMAGE /bin/true".into(),
            ours: median(ours),
            peer_name: "podman run --rm".into(),
            peer: median(peer),
            target: 0.2,
        });
    }

    if wants("run-net") {
        let net = "kleene-bench-net";
        let _ = run_ok(&mut bench.klee(["network", "rm", net]));
        run_ok(&mut bench.klee([
            "network",
            "create",
            "--type",
            "bridge",
            "--subnet",
            "10.123.0.0/24",
            net,
        ]))?;
        let (mut ours, mut plain, mut peer, mut peer_plain) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs {
            settle();
            ours.push(timed(&mut bench.klee([
                "run",
                "--rm",
                "-n",
                net,
                BASE,
                "/bin/true",
            ]))?);
            settle();
            plain.push(timed(&mut bench.klee(["run", "--rm", BASE, "/bin/true"]))?);
            peer.push(timed(&mut podman([
                "run",
                "--rm",
                "--network=bridge",
                BASE,
                "/bin/true",
            ]))?);
            peer_plain.push(timed(&mut podman([
                "run",
                "--rm",
                "--network=host",
                BASE,
                "/bin/true",
            ]))?);
            eprintln!("run-net {}/{runs}", i + 1);
        }
        run_ok(&mut bench.klee(["network", "rm", net]))?;
        let (ours, plain, peer, peer_plain) = (
            median(ours),
            median(plain),
            median(peer),
            median(peer_plain),
        );
        rows.push(Row {
            what: "run --rm -n NET IMAGE /bin/true".into(),
            ours,
            peer_name: "podman run --rm --network bridge".into(),
            peer,
            target: 0.5,
        });
        rows.push(Row {
            what: "network set-up per container".into(),
            ours: ours.saturating_sub(plain),
            peer_name: "podman bridge less host".into(),
            peer: peer.saturating_sub(peer_plain),
            target: 0.5,
        });
    }

    let context = tempfile::Builder::new()
        .prefix("kleene-bench-ctx")
        .tempdir()?;
    let ctx = context
        .path()
        .to_str()
        .context("context path is not UTF-8")?;
    make_context(context.path())?;

    if wants("build") {
        let (mut ours, mut peer) = (Vec::new(), Vec::new());
        for i in 0..runs {
            ours.push(timed(&mut bench.klee([
                "build",
                "--no-cache",
                "-q",
                "-t",
                APP,
                ctx,
            ]))?);
            run_ok(&mut bench.klee(["rmi", APP]))?;
            peer.push(timed(&mut buildah([
                "bud",
                "--layers=false",
                "--network=host",
                "-q",
                "-t",
                APP,
                ctx,
            ]))?);
            run_ok(&mut buildah(["rmi", "-f", APP]))?;
            eprintln!("build {}/{runs}", i + 1);
        }
        rows.push(Row {
            what: "build (10 instructions, 200 files)".into(),
            ours: median(ours),
            peer_name: "buildah bud --layers=false".into(),
            peer: median(peer),
            target: 0.2,
        });
    }

    if wants("rebuild") {
        // Warm both caches with one full build each.
        run_ok(&mut bench.klee(["build", "-q", "-t", APP, ctx]))?;
        let layers = ["bud", "--layers", "--network=host", "-q", "-t", APP, ctx];
        run_ok(&mut buildah(layers))?;
        let (mut ours, mut peer) = (Vec::new(), Vec::new());
        for i in 0..runs {
            ours.push(timed(&mut bench.klee(["build", "-q", "-t", APP, ctx]))?);
            peer.push(timed(&mut buildah(layers))?);
            eprintln!("rebuild {}/{runs}", i + 1);
        }
        rows.push(Row {
            what: "unchanged rebuild".into(),
            ours: median(ours),
            peer_name: "buildah bud --layers".into(),
            peer: median(peer),
            target: 0.03,
        });
        let _ = run_ok(&mut buildah(["rmi", "-f", APP]));
        let _ = run_ok(&mut buildah(["rmi", "--prune"]));
    }
    let _ = run_ok(&mut podman(["rmi", "-f", BASE]));

    if wants("parse") {
        let (ours, peer) = parse_times(runs)?;
        rows.push(Row {
            what: "Dockerfile parse (BuildKit corpus)".into(),
            ours,
            peer_name: "parse-dockerfile crate".into(),
            peer,
            target: 2.0,
        });
    }

    let report = report(&a, &zfs, &tarball, &rows)?;
    print!("{report}");
    if let Some(out) = &a.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    if let Some(png) = &a.chart {
        let bars: Vec<chart::Bar> = rows
            .iter()
            .map(|r| chart::Bar {
                label: r.what.clone(),
                peer: r.peer_name.replace("\\|", "|"),
                ours_ms: r.ours.as_secs_f64() * 1e3,
                peer_ms: r.peer.as_secs_f64() * 1e3,
                target: r.target,
            })
            .collect();
        chart::draw(png, &bars, &machine())?;
    }
    Ok(())
}

/// What the machine is: host name, cores, memory, kernel.
fn machine() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} ({cores} cores, {mem_gib:.0} GiB, Linux {})",
        host.trim(),
        kernel.trim()
    )
}

fn report(a: &Args, zfs: &Zfs, tarball: &Path, rows: &[Row]) -> Result<String> {
    let size = std::fs::metadata(tarball)?.len();
    let mut s = String::new();
    writeln!(
        s,
        "Medians of {} alternating runs on {}; pool `{}` (zfs backend: {}, {}); base rootfs {} ({:.1} MB); {}, {}.\n",
        a.runs,
        machine(),
        a.pool,
        zfs.backend_name(),
        if Path::new("/dev/zfs").exists() { "OpenZFS" } else { "zfs-fuse" },
        tarball.display(),
        size as f64 / 1e6,
        version("podman"),
        version("buildah"),
    )?;
    writeln!(
        s,
        "| operation | kleene | peer | peer median | ratio | target | met |\n| --- | ---: | --- | ---: | ---: | ---: | --- |"
    )?;
    for r in rows {
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | ≤ {} | {} |",
            r.what,
            shown(r.ours),
            r.peer_name,
            shown(r.peer),
            figure(r.ratio()),
            figure(r.target),
            if r.ratio() <= r.target { "yes" } else { "no" }
        )?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::figure;

    #[test]
    fn ratios_keep_the_digits_that_tell_them_from_their_target() {
        assert_eq!(figure(0.0308), "0.0308");
        assert_eq!(figure(0.03), "0.03");
        assert_eq!(figure(0.347), "0.347");
        assert_eq!(figure(0.2), "0.2");
        assert_eq!(figure(1.904), "1.9");
        assert_eq!(figure(2.0), "2");
    }
}
