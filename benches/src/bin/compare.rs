//! Side-by-side timings of kleene and its peers on one machine, one rootfs, in one run,
//! alternating the tools so that drift hits both alike. Medians over `--runs`.
//!
//! ```text
//! compare --pool POOL --tarball minbase.txz [--runs N] [--out FILE] [base-image] [run]
//! ```
//!
//! - `base-image`: a base image from the tarball (`Engine::create_base_image`, fetch
//!   file://) against the floor, `xz -dc | tar -x` into a fresh dataset of the same pool,
//!   and against `podman import` of the same tarball.
//! - `run`: container create + start + wait + remove of `/bin/true` against
//!   `podman run --rm` of the same rootfs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kleene_core::kleene_zfs::{DatasetName, Properties, Zfs};
use kleene_core::{Attach, BaseSource, Config, CreateContainer, CreateImage, Engine, Events};

struct Args {
    pool: String,
    tarball: PathBuf,
    runs: usize,
    out: Option<PathBuf>,
    what: Vec<String>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        pool: String::new(),
        tarball: PathBuf::new(),
        runs: 9,
        out: None,
        what: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--pool" => a.pool = it.next().context("--pool needs a value")?,
            "--tarball" => a.tarball = it.next().context("--tarball needs a value")?.into(),
            "--runs" => a.runs = it.next().context("--runs needs a value")?.parse()?,
            "--out" => a.out = Some(it.next().context("--out needs a value")?.into()),
            "base-image" | "run" => a.what.push(arg),
            other => bail!("unknown argument {other:?}"),
        }
    }
    if a.pool.is_empty() || a.tarball.as_os_str().is_empty() {
        bail!(
            "usage: compare --pool POOL --tarball FILE [--runs N] [--out FILE] [base-image] [run]"
        );
    }
    if a.what.is_empty() {
        a.what = vec!["base-image".into(), "run".into()];
    }
    Ok(a)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn run_ok(cmd: &mut Command) -> Result<()> {
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The floor: `xz -dc TARBALL | tar -x -C MOUNTPOINT` into a new dataset, no shell.
fn floor_extract(zfs: &Zfs, ds: &DatasetName, tarball: &Path) -> Result<Duration> {
    let t = Instant::now();
    zfs.create(ds, &Properties::new())?;
    let mp = zfs.mountpoint(ds)?.context("floor dataset not mounted")?;
    let mut xz = Command::new("xz")
        .args(["-dc", "-T0"])
        .arg(tarball)
        .stdout(Stdio::piped())
        .spawn()?;
    let pipe = xz.stdout.take().context("xz stdout")?;
    let status = Command::new("tar")
        .args(["-x", "--numeric-owner", "-C"])
        .arg(&mp)
        .stdin(pipe)
        .status()?;
    let xz_status = xz.wait()?;
    if !status.success() || !xz_status.success() {
        bail!("xz | tar failed");
    }
    zfs.snapshot(&ds.snapshot("image")?, &Properties::new())?;
    Ok(t.elapsed())
}

struct Row {
    what: String,
    ours: Duration,
    peer_name: String,
    peer: Duration,
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    let zfs = Zfs::open();
    let root = DatasetName::new(format!("{}/kleene-bench", a.pool))?;
    let mut config = Config::new(root.clone());
    if let Ok(p) = std::env::var("KLEENE_MONITOR") {
        config.monitor = Some(p.into());
    }
    let engine = Engine::open(config).await?;
    let url = format!("file://{}", std::fs::canonicalize(&a.tarball)?.display());
    let have_podman = Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut rows = Vec::new();

    if a.what.iter().any(|w| w == "base-image") {
        let (mut ours, mut floor, mut podman) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..a.runs {
            let t = Instant::now();
            let img = engine
                .create_base_image(
                    CreateImage::new(BaseSource::Fetch {
                        url: url.clone(),
                        sha256: None,
                    }),
                    Events::none(),
                )
                .await?;
            ours.push(t.elapsed());
            engine.remove_image(img.id.as_str()).await?;

            let ds = root.child(&format!("floor{i}"))?;
            floor.push(floor_extract(&zfs, &ds, &a.tarball)?);
            zfs.destroy(&ds, true)?;

            if have_podman {
                let t = Instant::now();
                run_ok(
                    Command::new("podman")
                        .args(["import", "-q"])
                        .arg(&a.tarball)
                        .arg("kleene-bench-import"),
                )?;
                podman.push(t.elapsed());
                run_ok(Command::new("podman").args(["rmi", "-f", "kleene-bench-import"]))?;
            }
            eprintln!("base-image run {}/{}", i + 1, a.runs);
        }
        let ours = median(ours);
        rows.push(Row {
            what: "base image from tarball".into(),
            ours,
            peer_name: "xz -dc \\| tar -x (floor)".into(),
            peer: median(floor),
        });
        if have_podman {
            rows.push(Row {
                what: "base image from tarball".into(),
                ours,
                peer_name: "podman import".into(),
                peer: median(podman),
            });
        }
    }

    if a.what.iter().any(|w| w == "run") {
        let image = engine
            .create_base_image(
                CreateImage::new(BaseSource::Fetch {
                    url: url.clone(),
                    sha256: None,
                })
                .tag("bench-run"),
                Events::none(),
            )
            .await?;
        if have_podman {
            run_ok(
                Command::new("podman")
                    .args(["import", "-q"])
                    .arg(&a.tarball)
                    .arg("kleene-bench-run"),
            )?;
        }
        let (mut ours, mut podman) = (Vec::new(), Vec::new());
        for i in 0..a.runs {
            let t = Instant::now();
            let c = engine
                .create_container(CreateContainer {
                    image: "bench-run".into(),
                    cmd: vec!["/bin/true".into()],
                    ..CreateContainer::default()
                })
                .await?;
            let code = engine
                .start_container(c.id.as_str(), Attach::Piped)
                .await?
                .wait()
                .await?;
            engine.remove_container(c.id.as_str(), false).await?;
            ours.push(t.elapsed());
            if code != 0 {
                bail!("/bin/true exited with {code}");
            }
            if have_podman {
                let t = Instant::now();
                run_ok(Command::new("podman").args([
                    "run",
                    "--rm",
                    "--network=host",
                    "kleene-bench-run",
                    "/bin/true",
                ]))?;
                podman.push(t.elapsed());
            }
            eprintln!("run {}/{}", i + 1, a.runs);
        }
        engine.remove_image(image.id.as_str()).await?;
        if have_podman {
            let _ = run_ok(Command::new("podman").args(["rmi", "-f", "kleene-bench-run"]));
            rows.push(Row {
                what: "create+start+wait+remove /bin/true".into(),
                ours: median(ours),
                peer_name: "podman run --rm".into(),
                peer: median(podman),
            });
        } else {
            rows.push(Row {
                what: "create+start+wait+remove /bin/true".into(),
                ours: median(ours),
                peer_name: "(podman not installed)".into(),
                peer: Duration::ZERO,
            });
        }
    }

    let size = std::fs::metadata(&a.tarball)?.len();
    let mut report = format!(
        "Medians of {} alternating runs on {} ({} cores), pool `{}` (zfs backend: {}), tarball {} ({:.1} MB)\n\n| operation | kleene | peer | peer median | ratio |\n| --- | --- | --- | --- | --- |\n",
        a.runs,
        std::fs::read_to_string("/etc/hostname").unwrap_or_default().trim(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        a.pool,
        zfs.backend_name(),
        a.tarball.display(),
        size as f64 / 1e6
    );
    for r in &rows {
        let ratio = if r.peer.is_zero() {
            "-".to_string()
        } else {
            format!("{:.2}", r.ours.as_secs_f64() / r.peer.as_secs_f64())
        };
        report.push_str(&format!(
            "| {} | {:.1} ms | {} | {:.1} ms | {} |\n",
            r.what,
            r.ours.as_secs_f64() * 1e3,
            r.peer_name,
            r.peer.as_secs_f64() * 1e3,
            ratio
        ));
    }
    print!("{report}");
    if let Some(out) = a.out {
        std::fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
