//! How kleene's figures grow with the number of containers and images; see `benches/scale`.
//!
//! ```text
//! scale --pool POOL [--tarball ROOTFS.txz] [--runs N] [--counts 10,100,300]
//!       [--image-counts 10,100,300] [--parallel 50] [--klee PATH] [--out FILE.md]
//!       [--chart FILE.png]
//! ```
//!
//! For each count N a fresh root `POOL/scale-N` gets a busybox base image, N - 1 more
//! images built from it (`klee build` of a two-line Dockerfile, a distinct LABEL each) and
//! N containers (`klee create`, not started); then `klee lsc -a`, `klee lsi` and
//! `Engine::open` are timed, alternating, medians over `--runs`. The root is destroyed
//! after. Then, on a root of its own, `--parallel` `klee run -d` started at once (wall
//! time, failures, the monitors' memory), and the peak RSS (GNU time) of `klee image
//! create` from the busybox tarball and from `--tarball`.
//!
//! zfs-fuse serves at most about a thousand mounted file systems at once, all pools
//! together: beyond that, creating a dataset answers "busy", leaves it made and
//! unmountable, and it stays busy (undestroyable) until the daemon restarts. A root of N
//! containers and N images mounts 2N + 6, so the default counts stop at 300.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kleene_benches::{median, run_ok, timed};
use kleene_core::kleene_zfs::DatasetName;
use kleene_core::{Config, Engine};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

struct Args {
    pool: String,
    tarball: Option<PathBuf>,
    runs: usize,
    counts: Vec<usize>,
    image_counts: Vec<usize>,
    parallel: usize,
    klee: PathBuf,
    out: Option<PathBuf>,
    chart: Option<PathBuf>,
}

fn counts(s: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|c| c.trim().parse::<usize>().context("a count"))
        .collect()
}

fn args() -> Result<Args> {
    let exe_dir = std::env::current_exe()?
        .parent()
        .context("the program has no directory")?
        .to_path_buf();
    let mut a = Args {
        pool: String::new(),
        tarball: None,
        runs: 3,
        counts: vec![10, 100, 300],
        image_counts: vec![10, 100, 300],
        parallel: 50,
        klee: exe_dir.join("klee"),
        out: None,
        chart: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--pool" => a.pool = value,
            "--tarball" => a.tarball = Some(value.into()),
            "--runs" => a.runs = value.parse().context("--runs")?,
            "--counts" => a.counts = counts(&value)?,
            "--image-counts" => a.image_counts = counts(&value)?,
            "--parallel" => a.parallel = value.parse().context("--parallel")?,
            "--klee" => a.klee = value.into(),
            "--out" => a.out = Some(value.into()),
            "--chart" => a.chart = Some(value.into()),
            other => bail!(
                "unknown flag {other}; usage: scale --pool POOL [--tarball FILE] [--runs N] [--counts A,B,C] [--image-counts A,B,C] [--parallel N] [--klee PATH] [--out FILE.md] [--chart FILE.png]"
            ),
        }
    }
    if a.pool.is_empty() {
        bail!("--pool is needed");
    }
    if a.runs == 0 || a.counts.is_empty() || a.counts.contains(&0) {
        bail!("--runs and every count must be at least 1");
    }
    if !a.klee.is_file() {
        bail!(
            "no {} (cargo build --release -p kleene-cli)",
            a.klee.display()
        );
    }
    Ok(a)
}

fn progress(msg: &str) {
    eprintln!("==> {msg}");
}

/// `klee --root ROOT ARGS...`.
fn klee(bin: &Path, root: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.arg("--root").arg(root).args(args);
    c
}

/// How many datasets `root` holds (itself included); 0 when it is gone.
fn datasets(root: &str) -> Result<usize> {
    let out = Command::new("zfs")
        .args(["list", "-H", "-r", "-o", "name", root])
        .stderr(Stdio::null())
        .output()?;
    Ok(if out.status.success() {
        out.stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
    } else {
        0
    })
}

/// Destroys a root and everything below it, clones included. zfs-fuse answers "busy" for
/// a while after an unmount (seconds on a loaded machine), and `zfs destroy -R` stops at
/// the first busy dataset: so it is run again while it makes progress, giving up after
/// 15 s without any.
fn destroy(root: &str) -> Result<()> {
    let mut left = datasets(root)?;
    if left > 0 {
        // Everything unmounted first, in one command: `zfs destroy -R` unmounting and
        // destroying each in turn meets "busy" at nearly every one (55 s for 100
        // containers here, against 2 s this way).
        let _ = Command::new("zfs")
            .args(["unmount", root])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
    }
    let mut last_progress = Instant::now();
    while left > 0 {
        let ok = Command::new("zfs")
            .args(["destroy", "-R", root])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success();
        let now = datasets(root)?;
        if ok || now == 0 {
            return Ok(());
        }
        if now < left {
            last_progress = Instant::now();
        } else if last_progress.elapsed() > Duration::from_secs(15) {
            bail!("could not destroy {root} ({now} datasets left, still busy after 15 s)");
        }
        left = now;
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// A fresh root `POOL/NAME`: the one of that name destroyed first, or, when zfs-fuse
/// keeps a dataset of it busy (one whose creation it answered "busy" stays so until the
/// daemon restarts), `POOL/NAME-2` and so on, the stuck one left.
fn fresh_root(pool: &str, name: &str) -> Result<String> {
    for i in 1..10 {
        let root = if i == 1 {
            format!("{pool}/{name}")
        } else {
            format!("{pool}/{name}-{i}")
        };
        match destroy(&root) {
            Ok(()) => return Ok(root),
            Err(e) => progress(&format!("warning: {e}; left, another root is used")),
        }
    }
    bail!("no root {pool}/{name}… could be destroyed")
}

/// Destroys a root after use; one zfs-fuse keeps busy is left, with a warning.
fn cleanup(root: &str) {
    if let Err(e) = destroy(root) {
        progress(&format!(
            "warning: {e}; left (destroy it once zfs-fuse lets go)"
        ));
    }
}

/// A busybox root file system as a tar archive (Debian's busybox-static): /bin/busybox
/// with applet links, /etc/passwd and /etc/group, a few empty directories.
fn busybox_tarball(dir: &Path) -> Result<PathBuf> {
    let rootfs = dir.join("bb");
    for d in ["bin", "etc", "tmp", "root", "var"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .context("/bin/busybox (Debian package busybox-static)")?;
    for applet in ["sh", "true", "sleep", "echo", "cat"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n")?;
    let tar = dir.join("bb.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("--owner=0")
            .arg("--group=0")
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    )?;
    Ok(tar)
}

/// Peak RSS (KiB) of one command, as GNU time reports it, and its wall time.
fn peak_rss(cmd: &mut Command, report: &Path) -> Result<(u64, Duration)> {
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let t = Instant::now();
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(report)
        .arg(&program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("/usr/bin/time (Debian package time)")?;
    let took = t.elapsed();
    if !status.success() {
        bail!("{program:?} {args:?} failed ({status})");
    }
    let rss = std::fs::read_to_string(report)?
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .context("GNU time's figure")?;
    Ok((rss, took))
}

/// The container id `klee run -d` printed (its first line; an execution instance's
/// follows).
fn first_line(out: &str) -> String {
    out.lines().next().unwrap_or_default().trim().to_string()
}

/// Runs a filling step (`klee build`, `klee create`), again up to twice when it fails
/// (zfs-fuse's "busy" can outlast klee's own retries on a loaded machine); the successful
/// run's time. Failures go to `failed`, and into the report.
fn fill(mut cmd: impl FnMut() -> Command, failed: &mut Vec<String>) -> Result<Duration> {
    for attempt in 0..3 {
        match timed(&mut cmd()) {
            Ok(d) => return Ok(d),
            Err(e) if attempt < 2 => {
                progress(&format!("retrying after: {e}"));
                failed.push(e.to_string());
            }
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the third attempt returns")
}

/// The number of entries `klee … --format json` listed.
fn listed(klee_bin: &Path, root: &str, args: &[&str]) -> Result<usize> {
    let out = run_ok(&mut klee(klee_bin, root, args))?;
    let v: serde_json::Value = serde_json::from_str(&out).context("klee's JSON list")?;
    Ok(v.as_array().map_or(0, Vec::len))
}

/// Times one `Engine::open` of `root` (the engine dropped after).
async fn open_once(root: &str) -> Result<Duration> {
    let config = Config::new(DatasetName::new(root)?);
    let t = Instant::now();
    let engine = Engine::open(config).await?;
    let took = t.elapsed();
    drop(engine);
    Ok(took)
}

/// One count's figures.
#[derive(Debug, Clone)]
struct Point {
    containers: usize,
    images: usize,
    lsc: Duration,
    lsi: Duration,
    open: Duration,
    /// Mean time of one `klee create` while the N were made.
    create_each: Duration,
    /// Mean time of one `klee build` while the images were made.
    build_each: Option<Duration>,
    /// `zfs destroy -R` of the root after.
    teardown: Duration,
    /// The klee failures met while filling (each retried).
    failed: Vec<String>,
}

/// A root with `n` containers and `images` images; the figures.
async fn measure_count(a: &Args, bb: &Path, n: usize, images: usize) -> Result<Point> {
    let root = fresh_root(&a.pool, &format!("scale-{n}"))?;
    progress(&format!("{root}: base image bb"));
    let url = format!("file://{}", bb.display());
    let mut failed = Vec::new();
    fill(
        || {
            klee(
                &a.klee,
                &root,
                &["image", "create", "-t", "bb", "fetch", &url],
            )
        },
        &mut failed,
    )?;

    // Images: bb and images - 1 builds of a two-line Dockerfile, a LABEL apart.
    let context = tempfile::tempdir()?;
    let mut build_times = Vec::new();
    for i in 1..images {
        std::fs::write(
            context.path().join("Dockerfile"),
            format!("FROM bb\nLABEL scale.n=\"{i}\"\n"),
        )?;
        let tag = format!("img{i}");
        let ctx = context.path().display().to_string();
        build_times.push(fill(
            || klee(&a.klee, &root, &["build", "-q", "-t", &tag, &ctx]),
            &mut failed,
        )?);
        if i % 50 == 0 {
            progress(&format!("{root}: {i}/{} images built", images - 1));
        }
    }

    let mut create_times = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("c{i}");
        create_times.push(fill(
            || {
                klee(
                    &a.klee,
                    &root,
                    &["create", "--name", &name, "bb", "/bin/true"],
                )
            },
            &mut failed,
        )?);
        if (i + 1) % 50 == 0 {
            progress(&format!("{root}: {}/{n} containers created", i + 1));
        }
    }
    let got = (
        listed(&a.klee, &root, &["lsc", "-a", "--format", "json"])?,
        listed(&a.klee, &root, &["lsi", "--format", "json"])?,
    );
    if got != (n, images) {
        bail!(
            "{root}: klee lists {} containers and {} images, not {n} and {images}",
            got.0,
            got.1
        );
    }

    progress(&format!(
        "{root}: timing lsc -a, lsi and Engine::open ({} runs)",
        a.runs
    ));
    // One of each first, unmeasured (caches, a first open's repairs).
    run_ok(&mut klee(&a.klee, &root, &["lsc", "-a"]))?;
    run_ok(&mut klee(&a.klee, &root, &["lsi"]))?;
    open_once(&root).await?;
    let (mut lsc, mut lsi, mut open) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.runs {
        lsc.push(timed(&mut klee(&a.klee, &root, &["lsc", "-a"]))?);
        lsi.push(timed(&mut klee(&a.klee, &root, &["lsi"]))?);
        open.push(open_once(&root).await?);
    }
    progress(&format!("{root}: destroying"));
    let t = Instant::now();
    cleanup(&root);
    let teardown = t.elapsed();
    let mean =
        |v: &[Duration]| (!v.is_empty()).then(|| v.iter().sum::<Duration>() / v.len() as u32);
    Ok(Point {
        containers: n,
        images,
        lsc: median(lsc),
        lsi: median(lsi),
        open: median(open),
        create_each: mean(&create_times).unwrap_or_default(),
        build_each: mean(&build_times),
        teardown,
        failed,
    })
}

/// Memory of one process from /proc (KiB): VmHWM, VmRSS and Pss.
#[derive(Debug, Clone, Copy, Default)]
struct Mem {
    hwm: u64,
    rss: u64,
    pss: u64,
}

fn kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn mem_of(pid: i64) -> Result<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("/proc/{pid}/status"))?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    Ok(Mem {
        hwm: kib(&status, "VmHWM:").context("VmHWM")?,
        rss: kib(&status, "VmRSS:").context("VmRSS")?,
        pss: kib(&rollup, "Pss:").unwrap_or(0),
    })
}

/// The monitors' pids of the running containers, by container id, from `klee lsc
/// --format json` (`klee isc` does not show them); each checked to be a `kleene-monitor`.
fn monitor_pids(klee_bin: &Path, root: &str) -> Result<HashMap<String, i64>> {
    let out = run_ok(&mut klee(klee_bin, root, &["lsc", "--format", "json"]))?;
    let v: serde_json::Value = serde_json::from_str(&out).context("klee lsc's JSON")?;
    let mut pids = HashMap::new();
    for c in v.as_array().context("klee lsc's JSON is no list")? {
        let (Some(id), Some(pid)) = (
            c["id"].as_str(),
            c.pointer("/runtime/monitor_pid")
                .and_then(serde_json::Value::as_i64),
        ) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline
            .split(|&b| b == 0)
            .any(|arg| arg == b"kleene-monitor")
        {
            pids.insert(id.to_string(), pid);
        }
    }
    Ok(pids)
}

/// The figures of `parallel` containers started at once.
#[derive(Debug)]
struct Burst {
    walls: Vec<Duration>,
    failures: usize,
    first_error: Option<String>,
    monitors: Vec<Mem>,
    removal: Duration,
}

fn burst(a: &Args, bb: &Path) -> Result<Burst> {
    let root = fresh_root(&a.pool, "scale-start")?;
    let url = format!("file://{}", bb.display());
    fill(
        || {
            klee(
                &a.klee,
                &root,
                &["image", "create", "-t", "bb", "fetch", &url],
            )
        },
        &mut Vec::new(),
    )?;
    // One first, unmeasured (the image's first clone, caches).
    let id = first_line(&run_ok(&mut klee(
        &a.klee,
        &root,
        &["run", "-d", "bb", "/bin/sleep", "1"],
    ))?);
    run_ok(&mut klee(&a.klee, &root, &["rmc", "-f", &id]))?;

    let mut b = Burst {
        walls: Vec::new(),
        failures: 0,
        first_error: None,
        monitors: Vec::new(),
        removal: Duration::ZERO,
    };
    let mut removals = Vec::new();
    for run in 0..a.runs {
        progress(&format!(
            "{root}: {} × klee run -d at once ({}/{})",
            a.parallel,
            run + 1,
            a.runs
        ));
        let t = Instant::now();
        let children: Vec<_> = (0..a.parallel)
            .map(|_| {
                klee(&a.klee, &root, &["run", "-d", "bb", "/bin/sleep", "600"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
            })
            .collect::<std::io::Result<_>>()
            .context("starting klee run -d")?;
        let mut ids = Vec::new();
        for child in children {
            let out = child.wait_with_output()?;
            if out.status.success() {
                ids.push(first_line(&String::from_utf8_lossy(&out.stdout)));
            } else {
                b.failures += 1;
                b.first_error
                    .get_or_insert_with(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
            }
        }
        b.walls.push(t.elapsed());
        // All of them running?
        let running = listed(&a.klee, &root, &["lsc", "--format", "json"])?;
        if running < ids.len() {
            b.failures += ids.len() - running;
            b.first_error.get_or_insert_with(|| {
                format!("{} started but {running} listed as running", ids.len())
            });
        }
        if run == 0 {
            let pids = monitor_pids(&a.klee, &root)?;
            for id in &ids {
                let pid = pids
                    .get(id)
                    .with_context(|| format!("no monitor for container {id}"))?;
                b.monitors.push(mem_of(*pid)?);
            }
        }
        let t = Instant::now();
        let mut rm = vec!["rmc", "-f"];
        rm.extend(ids.iter().map(String::as_str));
        run_ok(&mut klee(&a.klee, &root, &rm))?;
        removals.push(t.elapsed());
        let left = listed(&a.klee, &root, &["lsc", "-a", "--format", "json"])?;
        if left != 0 {
            bail!("{root}: {left} containers left after klee rmc -f");
        }
    }
    b.removal = median(removals);
    cleanup(&root);
    Ok(b)
}

/// Peak RSS of `klee image create` from each tarball: the median over `runs` (KiB), the
/// median wall time.
fn create_rss(a: &Args, tarball: &Path, dir: &Path) -> Result<(u64, Duration)> {
    let mut root = fresh_root(&a.pool, "scale-rss")?;
    let url = format!("file://{}", tarball.display());
    let mut rss = Vec::new();
    let mut walls = Vec::new();
    for _ in 0..a.runs {
        // Again up to twice when klee fails (see `fill`).
        let mut attempt = 0;
        let (r, w) = loop {
            root = fresh_root(&a.pool, "scale-rss")?;
            match peak_rss(
                &mut klee(&a.klee, &root, &["image", "create", "fetch", &url]),
                &dir.join("rss"),
            ) {
                Err(e) if attempt < 2 => progress(&format!("retrying after: {e}")),
                other => break other?,
            }
            attempt += 1;
        };
        rss.push(r);
        walls.push(w);
    }
    cleanup(&root);
    rss.sort_unstable();
    Ok((rss[rss.len() / 2], median(walls)))
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Per item growth between the smallest and the largest count: (µs per item).
fn slope(points: &[(usize, Duration)]) -> Option<f64> {
    let (first, last) = (points.first()?, points.last()?);
    (last.0 > first.0)
        .then(|| (last.1.as_secs_f64() - first.1.as_secs_f64()) * 1e6 / (last.0 - first.0) as f64)
}

/// Time (ms) against count, log–log: one line per command.
fn draw(path: &Path, series: &[(&str, Vec<(usize, Duration)>)], title: &str) -> Result<()> {
    const FONT: &str = kleene_benches::chart::FONT;
    let font = std::fs::read(FONT).with_context(|| format!("{FONT} (fonts-dejavu-core)"))?;
    register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("{FONT}: not a TrueType font"))?;
    let all: Vec<(usize, f64)> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(n, d)| (*n, d.as_secs_f64() * 1000.0)))
        .collect();
    let xmax = all.iter().map(|p| p.0).max().unwrap_or(10) as f64 * 1.5;
    let xmin = all.iter().map(|p| p.0).min().unwrap_or(10) as f64 / 1.5;
    let ymax = all.iter().map(|p| p.1).fold(1.0, f64::max) * 2.0;
    let ymin = all.iter().map(|p| p.1).fold(f64::MAX, f64::min).max(0.01) / 2.0;

    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 17))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((xmin..xmax).log_scale(), (ymin..ymax).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("containers / images in the root")
        .y_desc("median time, ms")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .light_line_style(WHITE)
        .label_style(("sans-serif", 13))
        .draw()?;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
    ];
    for (i, (name, points)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        let data: Vec<(f64, f64)> = points
            .iter()
            .map(|(n, d)| (*n as f64, d.as_secs_f64() * 1000.0))
            .collect();
        chart
            .draw_series(std::iter::once(PathElement::new(
                data.clone(),
                color.stroke_width(2),
            )))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            data.iter()
                .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    // First: this program would also run containers' monitors (see kleene_core::init).
    kleene_core::init();
    let a = args()?;
    let dir = tempfile::tempdir()?;
    let bb = busybox_tarball(dir.path())?;
    let begun = Instant::now();

    let mut points = Vec::new();
    for &n in &a.counts {
        // The image count follows the container count up to the largest one asked for.
        let images = a
            .image_counts
            .iter()
            .copied()
            .filter(|&i| i <= n)
            .max()
            .unwrap_or(1);
        let t = Instant::now();
        let p = measure_count(&a, &bb, n, images).await?;
        progress(&format!(
            "N={n}: lsc -a {}, lsi {} ({images} images), Engine::open {}; {:.0} s",
            ms(p.lsc),
            ms(p.lsi),
            ms(p.open),
            t.elapsed().as_secs_f64()
        ));
        points.push(p);
    }

    let b = burst(&a, &bb)?;
    let (bb_rss, bb_wall) = create_rss(&a, &bb, dir.path())?;
    let base_rss = match &a.tarball {
        Some(t) => {
            progress(&format!("peak RSS of klee image create {}", t.display()));
            Some(create_rss(&a, &std::fs::canonicalize(t)?, dir.path())?)
        }
        None => None,
    };

    let mut r = String::new();
    writeln!(
        r,
        "Times are medians of {} runs; each count is a fresh root holding that many stopped \
         containers (`klee create` of a busybox image) and images (`klee build` of `FROM bb` + a \
         distinct `LABEL`, plus the base image).",
        a.runs
    )?;
    writeln!(r)?;
    writeln!(
        r,
        "| containers | images | `klee lsc -a` | `klee lsi` | `Engine::open` | `klee create` (mean while filling) | `klee build` (mean while filling) | `zfs destroy -R` of the root |"
    )?;
    writeln!(
        r,
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )?;
    for p in &points {
        writeln!(
            r,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} s |",
            p.containers,
            p.images,
            ms(p.lsc),
            ms(p.lsi),
            ms(p.open),
            ms(p.create_each),
            p.build_each.map_or("–".into(), ms),
            p.teardown.as_secs_f64()
        )?;
    }
    writeln!(r)?;
    for p in &points {
        if let Some(first) = p.failed.first() {
            writeln!(
                r,
                "While filling the root of {}, {} `klee build`/`klee create` failed and succeeded when run again; the first: `{}`",
                p.containers,
                p.failed.len(),
                first.replace('`', "'").replace('\n', " ")
            )?;
            writeln!(r)?;
        }
    }
    let lsc: Vec<_> = points.iter().map(|p| (p.containers, p.lsc)).collect();
    let lsi: Vec<_> = points.iter().map(|p| (p.images, p.lsi)).collect();
    let open: Vec<_> = points.iter().map(|p| (p.containers, p.open)).collect();
    let create: Vec<_> = points
        .iter()
        .map(|p| (p.containers, p.create_each))
        .collect();
    for (what, s, per) in [
        ("`klee lsc -a`", &lsc, "container"),
        ("`klee lsi`", &lsi, "image"),
        ("`Engine::open`", &open, "container and image"),
        ("`klee create`", &create, "container already there"),
    ] {
        if let Some(us) = slope(s) {
            writeln!(
                r,
                "- {what}: {} at {} to {} at {}: {us:.0} µs more per {per}.",
                ms(s[0].1),
                s[0].0,
                ms(s[s.len() - 1].1),
                s[s.len() - 1].0
            )?;
        }
    }
    writeln!(r)?;
    writeln!(r, "| measure | figure |")?;
    writeln!(r, "| --- | --- |")?;
    writeln!(
        r,
        "| {} × `klee run -d bb /bin/sleep 600` started at once: wall time until all are running (median of {}; min {}, max {}) | {} |",
        a.parallel,
        a.runs,
        ms(*b.walls.iter().min().context("no burst")?),
        ms(*b.walls.iter().max().context("no burst")?),
        ms(median(b.walls.clone())),
    )?;
    writeln!(
        r,
        "| failures (over {} runs of {}) | {}{} |",
        a.runs,
        a.parallel,
        b.failures,
        b.first_error
            .as_deref()
            .map(|e| format!(" (first: {})", e.replace('|', "\\|").replace('\n', " ")))
            .unwrap_or_default()
    )?;
    writeln!(
        r,
        "| `klee rmc -f` of the {} (one command, median) | {} |",
        a.parallel,
        ms(b.removal)
    )?;
    if !b.monitors.is_empty() {
        let med = |f: fn(&Mem) -> u64| {
            let mut v: Vec<u64> = b.monitors.iter().map(f).collect();
            v.sort_unstable();
            v[v.len() / 2]
        };
        let pss_sum: u64 = b.monitors.iter().map(|m| m.pss).sum();
        writeln!(
            r,
            "| monitor per container (`klee kleene-monitor ID`, median of the {} running): peak RSS (VmHWM) / RSS / PSS | {} / {} / {} |",
            b.monitors.len(),
            mib(med(|m| m.hwm)),
            mib(med(|m| m.rss)),
            mib(med(|m| m.pss))
        )?;
        writeln!(
            r,
            "| all {} monitors together (sum of PSS) | {} |",
            b.monitors.len(),
            mib(pss_sum)
        )?;
    }
    writeln!(
        r,
        "| peak RSS of `klee image create fetch` of the busybox tarball ({:.1} MB, median of {}) | {} ({}) |",
        std::fs::metadata(&bb)?.len() as f64 / 1e6,
        a.runs,
        mib(bb_rss),
        ms(bb_wall)
    )?;
    if let (Some((rss, wall)), Some(t)) = (base_rss, &a.tarball) {
        writeln!(
            r,
            "| peak RSS of `klee image create fetch` of {} ({:.0} MB, median of {}) | {} ({}) |",
            t.file_name().map_or("".into(), |n| n.to_string_lossy()),
            std::fs::metadata(t)?.len() as f64 / 1e6,
            a.runs,
            mib(rss),
            ms(wall)
        )?;
    }
    writeln!(r)?;
    writeln!(
        r,
        "The whole benchmark took {:.0} s.",
        begun.elapsed().as_secs_f64()
    )?;

    if let Some(path) = &a.chart {
        draw(
            path,
            &[
                ("klee lsc -a", lsc),
                ("klee lsi", lsi),
                ("Engine::open", open),
                ("klee create (one, mean)", create),
            ],
            "kleene at scale: median time against the number of containers / images",
        )?;
    }
    if let Some(out) = &a.out {
        std::fs::write(out, &r).with_context(|| format!("writing {}", out.display()))?;
    }
    print!("{r}");
    Ok(())
}
