//! The API daemon's figures: requests per second of `GET /containers/list` over kleened's
//! Unix socket, and `klee --host … run --rm` against the embedded `klee run --rm`.
//!
//! ```text
//! api --pool POOL --tarball ROOTFS.txz [--runs N] [--seconds S] [--klee PATH]
//!     [--kleened PATH] [--out FILE.md]
//! ```
//!
//! kleened runs on `<pool>/kleene-apibench` with a socket in a temporary directory, ten
//! stopped containers in its list. The throughput is measured with keep-alive HTTP/1.1
//! connections (one per client thread; 1 and 8 clients) for `--seconds` each, every
//! answer read whole and checked to be `200`. The run figures alternate the two `klee`
//! forms, medians over `--runs`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kleene_benches::{median, run_ok, timed};

struct Args {
    pool: String,
    tarball: PathBuf,
    runs: usize,
    seconds: u64,
    klee: PathBuf,
    kleened: PathBuf,
    out: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let exe_dir = std::env::current_exe()?
        .parent()
        .context("the program has no directory")?
        .to_path_buf();
    let mut a = Args {
        pool: String::new(),
        tarball: PathBuf::new(),
        runs: 10,
        seconds: 5,
        klee: exe_dir.join("klee"),
        kleened: exe_dir.join("kleened"),
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--pool" => a.pool = value()?,
            "--tarball" => a.tarball = value()?.into(),
            "--runs" => a.runs = value()?.parse().context("--runs")?,
            "--seconds" => a.seconds = value()?.parse().context("--seconds")?,
            "--klee" => a.klee = value()?.into(),
            "--kleened" => a.kleened = value()?.into(),
            "--out" => a.out = Some(value()?.into()),
            other => bail!(
                "unknown argument {other:?}; usage: api --pool POOL --tarball FILE [--runs N] [--seconds S] [--klee PATH] [--kleened PATH] [--out FILE.md]"
            ),
        }
    }
    if a.pool.is_empty() || a.tarball.as_os_str().is_empty() {
        bail!("--pool and --tarball are needed");
    }
    for p in [&a.klee, &a.kleened] {
        if !p.is_file() {
            bail!(
                "no {} (cargo build --release -p kleene-cli -p kleened)",
                p.display()
            );
        }
    }
    Ok(a)
}

/// kleened on the bench root, stopped (SIGTERM) when dropped.
struct Daemon {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(kleened: &Path, root: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("kleened.sock");
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "kleene_root: \"{root}\"\napi_listening_sockets:\n  - address: \"http://{}\"\nenable_logging: false\nlog_level: \"warning\"\n",
                socket.display()
            ),
        )?;
        let child = Command::new(kleened)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting kleened")?;
        let start = Instant::now();
        while UnixStream::connect(&socket).is_err() {
            if start.elapsed() > Duration::from_secs(60) {
                bail!("kleened did not listen on {} within 60 s", socket.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            child,
            socket,
            _dir: dir,
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// One keep-alive client: sends `GET path` and reads each answer whole.
struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    request: Vec<u8>,
    body: Vec<u8>,
}

impl Client {
    fn connect(socket: &Path, path: &str) -> Result<Self> {
        let writer = UnixStream::connect(socket)?;
        let reader = BufReader::new(writer.try_clone()?);
        Ok(Self {
            reader,
            writer,
            request: format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes(),
            body: Vec::new(),
        })
    }

    /// One request; the size of the answer's body.
    fn get(&mut self) -> Result<usize> {
        self.writer.write_all(&self.request)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        if !line.starts_with("HTTP/1.1 200") {
            bail!("unexpected answer: {line:?}");
        }
        let mut length = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = Some(v.trim().parse::<usize>()?);
                }
            }
        }
        let n = length.context("an answer without content-length")?;
        self.body.resize(n, 0);
        self.reader.read_exact(&mut self.body)?;
        Ok(n)
    }
}

/// Requests per second with `clients` threads for `seconds`, and the median latency.
fn throughput(socket: &Path, clients: usize, seconds: u64) -> Result<(f64, Duration, usize)> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let begun = Instant::now();
    let results: Vec<Result<(usize, Vec<Duration>, usize)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(move || -> Result<(usize, Vec<Duration>, usize)> {
                    let mut c = Client::connect(socket, "/containers/list?all=true")?;
                    let mut latencies = Vec::new();
                    let mut size = 0;
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        size = c.get()?;
                        latencies.push(t.elapsed());
                    }
                    Ok((latencies.len(), latencies, size))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a client thread panicked")))
            })
            .collect()
    });
    let elapsed = begun.elapsed().as_secs_f64();
    let mut total = 0;
    let mut all = Vec::new();
    let mut size = 0;
    for r in results {
        let (n, lat, s) = r?;
        total += n;
        all.extend(lat);
        size = s;
    }
    if all.is_empty() {
        bail!("no request was answered");
    }
    Ok((total as f64 / elapsed, median(all), size))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let a = args()?;
    let root = format!("{}/kleene-apibench", a.pool);
    // A fresh root each time.
    let _ = Command::new("zfs").args(["destroy", "-r", &root]).output();
    let tarball = std::fs::canonicalize(&a.tarball)
        .with_context(|| format!("tarball {}", a.tarball.display()))?;
    let embedded = |args: &[&str]| {
        let mut c = Command::new(&a.klee);
        c.env("KLEENE_ROOT", &root).args(args);
        c
    };
    run_ok(&mut embedded(&[
        "image",
        "create",
        "-t",
        "bench-base",
        "fetch",
        &format!("file://{}", tarball.display()),
    ]))?;
    for i in 0..10 {
        run_ok(&mut embedded(&[
            "create",
            "--name",
            &format!("listed{i}"),
            "bench-base",
            "/bin/true",
        ]))?;
    }
    let daemon = Daemon::start(&a.kleened, &root)?;
    let host = format!("http://{}", daemon.socket.display());

    let mut report = String::new();
    writeln!(report, "| measure | figure |")?;
    writeln!(report, "| --- | --- |")?;
    for clients in [1, 8] {
        let (rps, latency, size) = throughput(&daemon.socket, clients, a.seconds)?;
        println!(
            "GET /containers/list, {clients} client(s): {rps:.0} req/s, median {} ({size} bytes)",
            ms(latency)
        );
        writeln!(
            report,
            "| `GET /containers/list` (10 containers, {size} B), {clients} keep-alive client(s), {} s | {rps:.0} req/s, median latency {} |",
            a.seconds,
            ms(latency)
        )?;
    }

    let remote = |args: &[&str]| {
        let mut c = Command::new(&a.klee);
        c.arg("--host").arg(&host).args(args);
        c
    };
    let run_args = ["run", "--rm", "bench-base", "/bin/true"];
    // One of each first, unmeasured (caches, the image's first clone).
    run_ok(&mut embedded(&run_args))?;
    run_ok(&mut remote(&run_args))?;
    let (mut ours, mut via) = (Vec::new(), Vec::new());
    for _ in 0..a.runs {
        ours.push(timed(&mut embedded(&run_args))?);
        via.push(timed(&mut remote(&run_args))?);
    }
    let (ours, via) = (median(ours), median(via));
    println!(
        "klee run --rm: embedded {}, --host {} ({:.2}x)",
        ms(ours),
        ms(via),
        via.as_secs_f64() / ours.as_secs_f64()
    );
    writeln!(
        report,
        "| `klee run --rm IMAGE /bin/true`, embedded, median of {} | {} |",
        a.runs,
        ms(ours)
    )?;
    writeln!(
        report,
        "| `klee --host http://SOCKET run --rm IMAGE /bin/true`, median of {} | {} ({:.2} × embedded) |",
        a.runs,
        ms(via),
        via.as_secs_f64() / ours.as_secs_f64()
    )?;
    drop(daemon);
    let _ = Command::new("zfs").args(["destroy", "-r", &root]).output();
    if let Some(out) = a.out {
        std::fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    print!("{report}");
    Ok(())
}
