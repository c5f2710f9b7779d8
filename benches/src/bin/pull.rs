//! `klee pull` against `podman pull`, from the same local registry.
//!
//! ```text
//! pull --pool POOL [--runs N] [--klee PATH] [--out FILE.md]
//! ```
//!
//! Makes two images with umoci from generated content (deterministic, part random, part
//! text): A with four layers (60, 30, 20 and 5 MB), B with A's first three layers and a
//! 5 MB fourth of its own. Pushes both with skopeo to a docker-registry it starts on
//! 127.0.0.1 (a free port, storage in a temporary directory). Then, alternating the tools
//! run by run, each tool does, from nothing local: a cold pull of A, a pull of B (three
//! of its four layers present), a pull of A again (all present); every pull is timed
//! and its maximum RSS taken (GNU time's `%M`). klee runs on `<pool>/kleene-pullbench`;
//! podman on a store of its own in the temporary directory (`--root`, `--runroot`,
//! overlay), so the host's podman images are never touched. Between runs both go back
//! to nothing: `klee image prune -a -f` (the layers go with the last image) and
//! `podman rmi -a -f`; that nothing is left is checked.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kleene_benches::{median, run_ok};

struct Args {
    pool: String,
    runs: usize,
    klee: PathBuf,
    out: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let exe_dir = std::env::current_exe()?
        .parent()
        .context("the program has no directory")?
        .to_path_buf();
    let mut a = Args {
        pool: String::new(),
        runs: 5,
        klee: exe_dir.join("klee"),
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--pool" => a.pool = value()?,
            "--runs" => a.runs = value()?.parse().context("--runs")?,
            "--klee" => a.klee = value()?.into(),
            "--out" => a.out = Some(value()?.into()),
            other => bail!(
                "unknown argument {other:?}; usage: pull --pool POOL [--runs N] [--klee PATH] [--out FILE.md]"
            ),
        }
    }
    if a.pool.is_empty() {
        bail!("--pool is needed");
    }
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !a.klee.is_file() {
        bail!(
            "no {} (cargo build --release -p kleene-cli)",
            a.klee.display()
        );
    }
    for tool in [
        "umoci",
        "skopeo",
        "podman",
        "docker-registry",
        "/usr/bin/time",
    ] {
        if Command::new(tool).arg("--version").output().is_err() {
            bail!("{tool} is missing (apt-get install umoci skopeo podman docker-registry time)");
        }
    }
    Ok(a)
}

/// A small, fixed pseudo-random generator (xorshift64*): the same content every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "layer",
    "image",
    "registry",
    "manifest",
    "digest",
    "dataset",
    "snapshot",
    "clone",
    "kleene",
    "jail",
    "container",
    "config",
    "the",
    "of",
    "and",
    "a",
    "to",
    "in",
    "blob",
    "sha256",
    "tar",
    "gzip",
    "zfs",
    "pool",
    "mount",
    "root",
    "etc",
    "usr",
    "lib",
    "bin",
];

/// `len` bytes: 4 KiB blocks, each either random (incompressible) or words (compressible).
fn content(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 4096);
    while v.len() < len {
        if rng.below(2) == 0 {
            for _ in 0..512 {
                v.extend_from_slice(&rng.next().to_le_bytes());
            }
        } else {
            let end = v.len() + 4096;
            while v.len() < end {
                v.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
                v.push(if rng.below(12) == 0 { b'\n' } else { b' ' });
            }
        }
    }
    v.truncate(len);
    v
}

/// One layer's generated files.
struct LayerSpec {
    name: &'static str,
    /// Total bytes of the files.
    bytes: usize,
    /// How many small files (1 to 16 KiB, in 16 directories); the rest of the bytes go
    /// to `large` large files.
    small: usize,
    large: usize,
    seed: u64,
}

/// Writes a layer's files under `rootfs/<name>/`; the number of files.
fn write_layer(rootfs: &Path, spec: &LayerSpec) -> Result<usize> {
    let mut rng = Rng(spec.seed);
    let top = rootfs.join(spec.name);
    let mut written = 0;
    for i in 0..spec.small {
        let dir = top.join(format!("d{:02}", i % 16));
        std::fs::create_dir_all(&dir)?;
        let len = 1024 + rng.below(15 * 1024) as usize;
        std::fs::write(dir.join(format!("f{i:05}.txt")), content(&mut rng, len))?;
        written += len;
    }
    let rest = spec.bytes.saturating_sub(written);
    let big = top.join("big");
    std::fs::create_dir_all(&big)?;
    for i in 0..spec.large {
        let len = rest / spec.large;
        std::fs::write(big.join(format!("blob{i}.bin")), content(&mut rng, len))?;
    }
    Ok(spec.small + spec.large)
}

/// A layer as made: its files' bytes and count, its compressed blob's size.
struct Made {
    name: &'static str,
    bytes: usize,
    files: usize,
    blob: u64,
}

fn blobs_in(layout: &Path) -> Result<std::collections::BTreeMap<String, u64>> {
    let mut m = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(layout.join("blobs/sha256"))? {
        let e = e?;
        m.insert(
            e.file_name().to_string_lossy().into_owned(),
            e.metadata()?.len(),
        );
    }
    Ok(m)
}

/// `umoci repack` of the bundle as `tag`, the size of the new layer blob (the one new
/// gzip file).
fn repack(layout: &Path, tag: &str, bundle: &Path) -> Result<u64> {
    let before = blobs_in(layout)?;
    run_ok(
        Command::new("umoci")
            .args(["repack", "--refresh-bundle", "--no-history", "--image"])
            .arg(format!("{}:{tag}", layout.display()))
            .arg(bundle),
    )?;
    let after = blobs_in(layout)?;
    for (name, size) in &after {
        if before.contains_key(name) {
            continue;
        }
        let mut magic = [0u8; 2];
        std::fs::File::open(layout.join("blobs/sha256").join(name))
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))?;
        if magic == [0x1f, 0x8b] {
            return Ok(*size);
        }
    }
    bail!("umoci repack made no layer blob")
}

/// Makes images `a` (four layers) and `b` (a's first three and one of its own) in an
/// OCI layout.
fn make_images(dir: &Path) -> Result<(PathBuf, Vec<Made>, Made)> {
    let layout = dir.join("layout");
    let specs = [
        LayerSpec {
            name: "l1",
            bytes: 60 << 20,
            small: 1500,
            large: 4,
            seed: 1,
        },
        LayerSpec {
            name: "l2",
            bytes: 30 << 20,
            small: 800,
            large: 2,
            seed: 2,
        },
        LayerSpec {
            name: "l3",
            bytes: 20 << 20,
            small: 500,
            large: 2,
            seed: 3,
        },
        LayerSpec {
            name: "l4a",
            bytes: 5 << 20,
            small: 200,
            large: 1,
            seed: 4,
        },
    ];
    let spec_b = LayerSpec {
        name: "l4b",
        bytes: 5 << 20,
        small: 200,
        large: 1,
        seed: 5,
    };
    let img = |tag: &str| format!("{}:{tag}", layout.display());
    run_ok(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
    )?;
    run_ok(Command::new("umoci").args(["new", "--image", &img("a")]))?;
    let bundle = dir.join("bundle-a");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image", &img("a")])
            .arg(&bundle),
    )?;
    let rootfs = bundle.join("rootfs");
    let mut made = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let files = write_layer(&rootfs, spec)?;
        if i == 3 {
            // b: the first three layers, before a gets its fourth.
            run_ok(Command::new("umoci").args(["tag", "--image", &img("a"), "b"]))?;
        }
        let blob = repack(&layout, "a", &bundle)?;
        made.push(Made {
            name: spec.name,
            bytes: spec.bytes,
            files,
            blob,
        });
    }
    let bundle_b = dir.join("bundle-b");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image", &img("b")])
            .arg(&bundle_b),
    )?;
    let files = write_layer(&bundle_b.join("rootfs"), &spec_b)?;
    let blob = repack(&layout, "b", &bundle_b)?;
    let b4 = Made {
        name: spec_b.name,
        bytes: spec_b.bytes,
        files,
        blob,
    };
    std::fs::remove_dir_all(&bundle)?;
    std::fs::remove_dir_all(&bundle_b)?;
    Ok((layout, made, b4))
}

/// docker-registry on 127.0.0.1:port, storage in `dir`; killed when dropped.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let storage = dir.join("registry");
        std::fs::create_dir_all(&storage)?;
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )?;
        let log = std::fs::File::create(dir.join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry")?;
        let mut r = Self { child, port };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = r.child.try_wait()? {
                bail!(
                    "docker-registry ended ({status}); see {}",
                    dir.join("registry.log").display()
                );
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("docker-registry did not listen on 127.0.0.1:{port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        r.port = port;
        Ok(r)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One measured command: wall time, and its maximum RSS in KiB (GNU time's `%M`).
fn measured(cmd: &Command, rss_file: &Path) -> Result<(Duration, u64)> {
    let mut c = Command::new("/usr/bin/time");
    c.arg("-f").arg("%M").arg("-o").arg(rss_file);
    c.arg(cmd.get_program()).args(cmd.get_args());
    let t = Instant::now();
    run_ok(&mut c)?;
    let elapsed = t.elapsed();
    let text = std::fs::read_to_string(rss_file)?;
    let kib = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("GNU time wrote {text:?}"))?;
    Ok((elapsed, kib))
}

/// The two tools, as the commands a user types.
struct Tools {
    klee: PathBuf,
    root: String,
    podman_root: PathBuf,
    podman_run: PathBuf,
    registry: String,
}

impl Tools {
    fn klee(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.klee);
        c.arg("--root").arg(&self.root).args(args);
        c
    }

    fn podman(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(&self.podman_root)
            .arg("--runroot")
            .arg(&self.podman_run)
            .arg("--storage-driver")
            .arg("overlay")
            .args(args);
        c
    }

    fn reference(&self, which: &str) -> String {
        format!("{}/bench/{which}:1", self.registry)
    }

    fn pull(&self, tool: Tool, which: &str) -> Command {
        let r = self.reference(which);
        match tool {
            Tool::Klee => self.klee(&["pull", &r]),
            Tool::Podman => self.podman(&["pull", "-q", "--tls-verify=false", &r]),
        }
    }

    /// Back to nothing: no image, no layer; checked.
    fn clean(&self, tool: Tool) -> Result<()> {
        match tool {
            Tool::Klee => {
                run_ok(&mut self.klee(&["image", "prune", "-a", "-f"]))?;
                let images = run_ok(&mut self.klee(&["image", "ls", "--format", "json"]))?;
                if images
                    .trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .trim()
                    != ""
                {
                    bail!("klee images left after prune: {images}");
                }
                let layers = format!("{}/layer/", self.root);
                let datasets = run_ok(
                    Command::new("zfs").args(["list", "-H", "-r", "-o", "name", &self.root]),
                )?;
                if let Some(l) = datasets.lines().find(|l| l.starts_with(&layers)) {
                    bail!("a klee layer dataset is left after prune: {l}");
                }
            }
            Tool::Podman => {
                run_ok(&mut self.podman(&["rmi", "-a", "-f"]))?;
                let images = run_ok(&mut self.podman(&["images", "-a", "-q"]))?;
                if !images.trim().is_empty() {
                    bail!("podman images left after rmi -a: {images}");
                }
                let layers = self.podman_root.join("overlay");
                if let Ok(rd) = std::fs::read_dir(&layers) {
                    let left: Vec<_> = rd
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n != "l" && !n.starts_with('.'))
                        .collect();
                    if !left.is_empty() {
                        bail!("podman layers left after rmi -a: {left:?}");
                    }
                }
            }
        }
        Ok(())
    }
}

/// Empties podman's store and unmounts what podman mounted under the temporary directory
/// (overlay makes its directory a private bind mount), so that it can be removed.
struct Unmount<'a>(&'a Tools, PathBuf);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = self.0.podman(&["system", "reset", "-f"]).output();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let prefix = self.1.to_string_lossy().into_owned();
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = Command::new("umount").arg(m).output();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    Klee,
    Podman,
}

/// The three pulls of one run: cold A, B on A's layers, A again.
const CASES: [(&str, &str); 3] = [
    ("a", "cold: pull A (4 layers), nothing local"),
    ("b", "shared: pull B with A present (1 of 4 layers new)"),
    ("a", "re-pull: pull A again (all present)"),
];

#[derive(Default)]
struct Samples {
    times: Vec<Duration>,
    rss: Vec<u64>,
}

/// One run of a tool: clean, then the three pulls.
fn run(tools: &Tools, tool: Tool, rss_file: &Path, out: &mut [Samples; 3]) -> Result<()> {
    tools.clean(tool)?;
    for (i, (which, _)) in CASES.iter().enumerate() {
        let (t, kib) = measured(&tools.pull(tool, which), rss_file)
            .with_context(|| format!("{tool:?} pull {which}"))?;
        out[i].times.push(t);
        out[i].rss.push(kib);
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn version(mut cmd: Command) -> String {
    cmd.output()
        .map(|o| {
            let s = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&s)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// Host name, cores, memory, kernel.
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

/// The first three figures of /proc/loadavg.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The filesystem type of the filesystem holding `path` (`df --output=fstype`).
fn fstype(path: &Path) -> String {
    Command::new("df")
        .arg("--output=fstype")
        .arg(path)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn main() -> Result<()> {
    let a = args()?;
    let root = format!("{}/kleene-pullbench", a.pool);
    let _ = Command::new("zfs").args(["destroy", "-r", &root]).output();
    let dir = tempfile::Builder::new()
        .prefix("kleene-pullbench")
        .tempdir_in("/var/tmp")?;
    eprintln!("==> making the images in {}", dir.path().display());
    let (layout, made, b4) = make_images(dir.path())?;
    let registry = Registry::start(dir.path())?;
    let addr = format!("127.0.0.1:{}", registry.port);
    eprintln!("==> pushing them to the registry on {addr}");
    for which in ["a", "b"] {
        run_ok(
            Command::new("skopeo")
                .args(["copy", "-q", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:{which}", layout.display()))
                .arg(format!("docker://{addr}/bench/{which}:1")),
        )?;
    }
    let tools = Tools {
        klee: a.klee.clone(),
        root: root.clone(),
        podman_root: dir.path().join("podman/root"),
        podman_run: dir.path().join("podman/run"),
        registry: addr,
    };
    let rss_file = dir.path().join("rss");
    let _unmount = Unmount(&tools, dir.path().to_path_buf());

    // One unmeasured run of each: the registry's blobs in the page cache, the tools'
    // binaries and the stores made.
    let load_before = loadavg();
    let mut discard: [Samples; 3] = Default::default();
    for tool in [Tool::Klee, Tool::Podman] {
        eprintln!("==> warm-up run of {tool:?}");
        run(&tools, tool, &rss_file, &mut discard)?;
    }
    let mut klee: [Samples; 3] = Default::default();
    let mut podman: [Samples; 3] = Default::default();
    for i in 0..a.runs {
        let order = if i % 2 == 0 {
            [Tool::Klee, Tool::Podman]
        } else {
            [Tool::Podman, Tool::Klee]
        };
        for tool in order {
            let out = if tool == Tool::Klee {
                &mut klee
            } else {
                &mut podman
            };
            run(&tools, tool, &rss_file, out)?;
        }
        eprint!("==> run {}/{}:", i + 1, a.runs);
        for c in 0..3 {
            eprint!(
                " {} {} / {}",
                CASES[c].0,
                ms(klee[c].times[i]),
                ms(podman[c].times[i])
            );
        }
        eprintln!();
        std::io::stderr().flush()?;
    }
    for tool in [Tool::Klee, Tool::Podman] {
        let _ = tools.clean(tool);
    }
    let load_after = loadavg();
    // zfs-fuse can answer "busy" for a moment after the last unmount.
    for _ in 0..10 {
        let gone = Command::new("zfs")
            .args(["destroy", "-r", &root])
            .output()
            .is_ok_and(|o| o.status.success());
        if gone {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    let mut s = String::new();
    let a_blob: u64 = made.iter().map(|m| m.blob).sum();
    let a_bytes: usize = made.iter().map(|m| m.bytes).sum();
    writeln!(
        s,
        "{} alternating runs (after one unmeasured run of each) on {}; klee on `{root}` (zfs-fuse), podman with a store of its own on {} (overlay); {}; {}; registry: {} on 127.0.0.1, filesystem storage.\n",
        a.runs,
        machine(),
        fstype(dir.path()),
        version({
            let mut c = Command::new(&a.klee);
            c.arg("--version");
            c
        }),
        version({
            let mut c = Command::new("podman");
            c.arg("--version");
            c
        }),
        version({
            let mut c = Command::new("docker-registry");
            c.arg("--version");
            c
        }),
    )?;
    writeln!(
        s,
        "Load average (1, 5, 15 min) before the runs: {load_before}; after: {load_after} (more than the cores: other work competed for the CPU).\n"
    )?;
    writeln!(
        s,
        "Images (made with umoci, gzip layers, pushed with skopeo):\n"
    )?;
    writeln!(
        s,
        "| layer | in | files | content | blob (gzip) |\n| --- | --- | ---: | ---: | ---: |"
    )?;
    for (i, m) in made.iter().enumerate() {
        writeln!(
            s,
            "| {} `{}` | {} | {} | {} | {} |",
            i + 1,
            m.name,
            if i < 3 { "A, B" } else { "A" },
            m.files,
            mb(m.bytes as u64),
            mb(m.blob)
        )?;
    }
    writeln!(
        s,
        "| 4 `{}` | B | {} | {} | {} |",
        b4.name,
        b4.files,
        mb(b4.bytes as u64),
        mb(b4.blob)
    )?;
    writeln!(
        s,
        "\nA: {} of content, {} to download; B's own layer: {}.\n",
        mb(a_bytes as u64),
        mb(a_blob),
        mb(b4.blob)
    )?;
    writeln!(
        s,
        "| pull | klee median | klee min | podman median | podman min | ratio (medians) | klee max RSS | podman max RSS |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )?;
    for (c, (_, what)) in CASES.iter().enumerate() {
        let (km, kn) = (
            median(klee[c].times.clone()),
            *klee[c].times.iter().min().unwrap_or(&Duration::ZERO),
        );
        let (pm, pn) = (
            median(podman[c].times.clone()),
            *podman[c].times.iter().min().unwrap_or(&Duration::ZERO),
        );
        let krss = klee[c].rss.iter().max().copied().unwrap_or(0);
        let prss = podman[c].rss.iter().max().copied().unwrap_or(0);
        writeln!(
            s,
            "| {what} | {} | {} | {} | {} | {:.2} | {:.0} MiB | {:.0} MiB |",
            ms(km),
            ms(kn),
            ms(pm),
            ms(pn),
            km.as_secs_f64() / pm.as_secs_f64(),
            krss as f64 / 1024.0,
            prss as f64 / 1024.0
        )?;
    }
    writeln!(s, "\nEvery run, in ms (klee / podman):\n")?;
    writeln!(
        s,
        "| run | cold A | shared B | re-pull A |\n| ---: | ---: | ---: | ---: |"
    )?;
    for i in 0..a.runs {
        write!(s, "| {} |", i + 1)?;
        for c in 0..3 {
            write!(
                s,
                " {:.0} / {:.0} |",
                klee[c].times[i].as_secs_f64() * 1e3,
                podman[c].times[i].as_secs_f64() * 1e3
            )?;
        }
        writeln!(s)?;
    }
    drop(registry);
    if let Some(out) = a.out {
        std::fs::write(&out, &s).with_context(|| format!("writing {}", out.display()))?;
    }
    print!("{s}");
    Ok(())
}
