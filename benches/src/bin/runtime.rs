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

/// A tar of `rootfs`, imported into podman storage under `dir` as `localhost/bb`; the
/// podman command line for that storage.
fn podman_storage(dir: &Path, rootfs: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let tar = dir.join("bb.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    )?;
    let base: Vec<String> = vec![
        "--root".into(),
        dir.join("root").display().to_string(),
        "--runroot".into(),
        dir.join("run").display().to_string(),
        "--cgroup-manager".into(),
        "cgroupfs".into(),
        "--events-backend".into(),
        "file".into(),
        "--tmpdir".into(),
        dir.join("tmp").display().to_string(),
    ];
    run_ok(Command::new("podman").args(&base).args([
        "import",
        &tar.display().to_string(),
        "localhost/bb",
    ]))?;
    Ok(base)
}

/// `podman run --rm localhost/bb /bin/true` with each runtime, alternating: the medians.
fn podman_e2e(a: &Args, dir: &Path, rootfs: &Path) -> Result<(Duration, Duration)> {
    let base = podman_storage(dir, rootfs)?;
    let once = |runtime: &Path| {
        timed(
            Command::new("podman")
                .args(&base)
                .arg("--runtime")
                .arg(runtime)
                .args(["run", "--rm", "localhost/bb", "/bin/true"]),
        )
    };
    once(&a.ours)?;
    once(&a.runc)?;
    let (mut ours, mut runc) = (Vec::new(), Vec::new());
    for _ in 0..a.runs {
        ours.push(once(&a.ours)?);
        runc.push(once(&a.runc)?);
    }
    let _ = Command::new("podman")
        .args(&base)
        .args(["rmi", "-a", "-f"])
        .output();
    Ok((median(ours), median(runc)))
}

/// `ctr run --rm` of the same image through a containerd of the bench's own (runc v2
/// shim, `--runc-binary`), alternating: the medians.
fn ctr_e2e(a: &Args, dir: &Path, rootfs: &Path) -> Result<(Duration, Duration)> {
    let base = podman_storage(&dir.join("podman"), rootfs)?;
    let archive = dir.join("bb.oci.tar");
    run_ok(Command::new("podman").args(&base).args([
        "save",
        "--format",
        "oci-archive",
        "-o",
        &archive.display().to_string(),
        "localhost/bb",
    ]))?;
    std::fs::create_dir_all(dir)?;
    let sock = dir.join("sock");
    let config = format!(
        "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}.ttrpc\"\n",
        dir.join("root").display(),
        dir.join("state").display(),
        sock.display(),
        sock.display()
    );
    std::fs::write(dir.join("config.toml"), config)?;
    let mut daemon = Command::new("containerd")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("containerd (Debian package containerd)")?;
    let ctr = |args: &[&str]| -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&sock).args(args);
        c
    };
    let result = (|| -> Result<(Duration, Duration)> {
        let mut tries = 0;
        while run_ok(&mut ctr(&["version"])).is_err() {
            tries += 1;
            if tries > 300 {
                bail!("containerd did not answer");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        run_ok(&mut ctr(&[
            "image",
            "import",
            "--base-name",
            "localhost/bb",
            &archive.display().to_string(),
        ]))?;
        let image = "localhost/bb:latest";
        let mut n = 0;
        let mut once = |runtime: &Path| {
            n += 1;
            let id = format!("b{n}");
            timed(&mut ctr(&[
                "run",
                "--rm",
                "--runc-binary",
                &runtime.display().to_string(),
                image,
                &id,
                "/bin/true",
            ]))
        };
        once(&a.ours)?;
        once(&a.runc)?;
        let (mut ours, mut runc) = (Vec::new(), Vec::new());
        for _ in 0..a.runs {
            ours.push(once(&a.ours)?);
            runc.push(once(&a.runc)?);
        }
        Ok((median(ours), median(runc)))
    })();
    let _ = terminate(daemon.id());
    let _ = daemon.wait();
    let _ = Command::new("podman")
        .args(&base)
        .args(["rmi", "-a", "-f"])
        .output();
    result
}

/// SIGTERM to the bench's containerd, so it stops its shims.
fn terminate(pid: u32) -> std::io::Result<()> {
    let status = Command::new("kill").arg(pid.to_string()).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other("kill failed"))
    }
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
    let rootfs = b.join("rootfs");
    let (pm_ours, pm_runc) = podman_e2e(&a, &tmp.path().join("podman"), &rootfs)?;
    let (ctr_ours, ctr_runc) = ctr_e2e(&a, &tmp.path().join("containerd"), &rootfs)?;
    let mut text = format!(
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
    text.push_str(&format!(
        "\nEnd to end, the same runs alternating:\n\n| | with kleene-runtime | with runc | ratio |\n| --- | ---: | ---: | ---: |\n| `podman run --rm IMAGE /bin/true`, median | {:.1} ms | {:.1} ms | {:.2} |\n| `ctr run --rm IMAGE ID /bin/true`, median | {:.1} ms | {:.1} ms | {:.2} |\n",
        ms(pm_ours),
        ms(pm_runc),
        ms(pm_ours) / ms(pm_runc),
        ms(ctr_ours),
        ms(ctr_runc),
        ms(ctr_ours) / ms(ctr_runc),
    ));
    print!("{text}");
    std::fs::write(&a.out, text)?;
    Ok(())
}
