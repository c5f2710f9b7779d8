//! `kleene-runtime run` against `runc run` on one bundle, alternating; see `benches/runtime`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kleene_benches::{median, run_ok, timed};

struct Args {
    runs: usize,
    ours: PathBuf,
    runc: PathBuf,
    out: PathBuf,
}

fn args() -> Result<Args> {
    let mut a = Args {
        runs: 20,
        ours: PathBuf::from("kleene-runtime"),
        runc: ["/usr/sbin/runc", "/usr/bin/runc"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("runc")),
        out: PathBuf::from("runtime.md"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--runs" => a.runs = value.parse().context("--runs")?,
            "--ours" => a.ours = value.into(),
            "--runc" => a.runc = value.into(),
            "--out" => a.out = value.into(),
            other => bail!("unknown flag {other}"),
        }
    }
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(a)
}

/// A bundle of busybox running /bin/true, with `kleene-runtime spec`'s config.json.
fn bundle(dir: &Path, ours: &Path) -> Result<PathBuf> {
    let b = dir.join("bundle");
    let rootfs = b.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .context("/bin/busybox (Debian package busybox-static)")?;
    for a in ["sh", "true"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a))?;
    }
    run_ok(Command::new(ours).arg("spec").arg("--bundle").arg(&b))?;
    let path = b.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    config["process"]["args"] = serde_json::json!(["/bin/true"]);
    std::fs::write(&path, config.to_string())?;
    Ok(b)
}

fn run_once(runtime: &Path, root: &Path, bundle: &Path, id: &str) -> Result<Duration> {
    Ok(timed(
        Command::new(runtime)
            .arg("--root")
            .arg(root)
            .arg("run")
            .arg("--bundle")
            .arg(bundle)
            .arg(id),
    )?)
}

/// Peak RSS (KiB) of one `create`, as GNU time reports it; the container is deleted
/// after.
fn create_rss(runtime: &Path, root: &Path, bundle: &Path, id: &str) -> Result<u64> {
    // Files, not pipes: the held process inherits the runtime's stdio and would keep a
    // pipe open.
    let report = root.with_extension("rss");
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&report)
        .arg(runtime)
        .arg("--root")
        .arg(root)
        .arg("create")
        .arg("--bundle")
        .arg(bundle)
        .arg(id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("/usr/bin/time (Debian package time)")?;
    if !status.success() {
        bail!("{} create failed ({status})", runtime.display());
    }
    let rss = std::fs::read_to_string(&report)?
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .context("GNU time's figure")?;
    run_ok(
        Command::new(runtime)
            .arg("--root")
            .arg(root)
            .arg("delete")
            .arg("--force")
            .arg(id),
    )?;
    Ok(rss)
}

fn main() -> Result<()> {
    let a = args()?;
    let tmp = tempfile::tempdir()?;
    let b = bundle(tmp.path(), &a.ours)?;
    let (our_root, runc_root) = (tmp.path().join("ours"), tmp.path().join("runc"));
    // One warm-up each (page cache, runc's cgroup set-up).
    run_once(&a.ours, &our_root, &b, "warm-ours")?;
    run_once(&a.runc, &runc_root, &b, "warm-runc")?;
    let (mut ours, mut runc) = (Vec::new(), Vec::new());
    for i in 0..a.runs {
        ours.push(run_once(&a.ours, &our_root, &b, &format!("o{i}"))?);
        runc.push(run_once(&a.runc, &runc_root, &b, &format!("r{i}"))?);
    }
    let (our_rss, runc_rss) = (
        create_rss(&a.ours, &our_root, &b, "rss-ours")?,
        create_rss(&a.runc, &runc_root, &b, "rss-runc")?,
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (om, rm) = (median(ours.clone()), median(runc.clone()));
    let text = format!(
        "| | kleene-runtime | runc | ratio |\n| --- | ---: | ---: | ---: |\n\
         | `run` of /bin/true, median | {:.1} ms | {:.1} ms | {:.2} |\n\
         | minimum | {:.1} ms | {:.1} ms | |\n\
         | peak RSS of `create` | {} KiB | {} KiB | {:.2} |\n\n\
         {} alternating runs each; runc: `{}` ({}).\n",
        ms(om),
        ms(rm),
        ms(om) / ms(rm),
        ms(*ours.iter().min().expect("runs")),
        ms(*runc.iter().min().expect("runs")),
        our_rss,
        runc_rss,
        our_rss as f64 / runc_rss as f64,
        a.runs,
        a.runc.display(),
        run_ok(Command::new(&a.runc).arg("--version"))?
            .lines()
            .next()
            .unwrap_or("")
            .trim(),
    );
    print!("{text}");
    std::fs::write(&a.out, text)?;
    Ok(())
}
