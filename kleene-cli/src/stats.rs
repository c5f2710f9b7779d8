//! Resource limits from the command line (`--memory`, `--cpus`, ...) and `klee container
//! stats`.

use std::io::Write;
use std::time::Duration;

use kleene_core::kleene_jail::parse_bytes;
use kleene_core::{ContainerStats, Limits};

use crate::backend::Backend;
use crate::cli::{LimitOpts, StatsArgs};
use crate::failure::{Failure, Outcome};
use crate::Ctx;

/// The engine's limits from the options; `None` when none is given.
pub fn limits(o: &LimitOpts) -> Result<Option<Limits>, Failure> {
    let bytes = |what: &str, text: &str| {
        parse_bytes(text).map_err(|e| Failure::usage(format!("--{what}: {e}")))
    };
    let mut l = Limits::new();
    if let Some(m) = &o.memory {
        l = l.memory(bytes("memory", m)?);
    }
    if let Some(s) = &o.memory_swap {
        let total = if s.trim() == "-1" {
            -1
        } else {
            i64::try_from(bytes("memory-swap", s)?)
                .map_err(|_| Failure::usage(format!("--memory-swap: {s} is too large")))?
        };
        l = l.memory_swap(total);
    }
    if let Some(c) = o.cpus {
        if !c.is_finite() || c <= 0.0 {
            return Err(Failure::usage(format!("--cpus: {c} must be more than 0")));
        }
        l = l.cpus(c);
    }
    if let Some(s) = o.cpu_shares {
        l = l.cpu_shares(s);
    }
    if let Some(c) = &o.cpuset_cpus {
        l = l.cpuset_cpus(c.clone());
    }
    if let Some(m) = &o.cpuset_mems {
        l = l.cpuset_mems(m.clone());
    }
    if let Some(p) = o.pids_limit {
        // Docker takes 0 for unlimited too.
        l = l.pids(if p == 0 { -1 } else { p });
    }
    if l.is_empty() {
        return Ok(None);
    }
    l.validate().map_err(|e| Failure::usage(e.to_string()))?;
    Ok(Some(l))
}

/// The seccomp filter `--security-opt` asks for; `None`: the default. Other security
/// options are refused by name.
pub fn seccomp(opts: &[String]) -> Result<Option<kleene_core::Seccomp>, Failure> {
    let mut out = None;
    for o in opts {
        match o.split_once(['=', ':']) {
            Some(("seccomp", value)) => {
                let s = kleene_core::Seccomp::parse_option(value, |path| {
                    std::fs::read_to_string(path)
                })
                .map_err(|e| Failure::usage(e.to_string()))?;
                out = Some(s);
            }
            _ => {
                return Err(Failure::usage(format!(
                    "unsupported security option {o:?}: only seccomp=unconfined and seccomp=PROFILE are"
                )))
            }
        }
    }
    Ok(out)
}

/// `klee container stats [--stream] [CONTAINER...]`: CPU, memory and processes of running
/// containers, read from their groups (through kleened with `--host`). CPU % is over the
/// last interval (half a second for one shot).
pub async fn stats(ctx: &Ctx, a: StatsArgs) -> Outcome {
    let backend = ctx.backend().await?;
    let targets: Vec<String> = if a.containers.is_empty() {
        backend
            .containers(false)
            .await?
            .into_iter()
            .filter(|c| c.container.running)
            .map(|c| c.container.id)
            .collect()
    } else {
        a.containers.clone()
    };
    let read = |backend: &Backend, targets: &[String]| {
        let backend = backend.clone();
        let targets = targets.to_vec();
        async move {
            let mut out = Vec::new();
            for t in &targets {
                out.push(backend.container_stats(t).await?);
            }
            Ok::<_, Failure>(out)
        }
    };
    // Installed once, before anything is read: a Ctrl-C at any moment ends the stream.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Failure::failed(format!("cannot catch Ctrl-C: {e}")))?;
    let mut before = read(&backend, &targets).await?;
    let interval = if a.stream {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(500)
    };
    let mut first = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = interrupt.recv() => return Ok(0),
        }
        let now = read(&backend, &targets).await?;
        let mut out = std::io::stdout().lock();
        if a.json {
            for s in &now {
                let line = serde_json::to_string(s)
                    .map_err(|e| Failure::failed(format!("cannot write JSON: {e}")))?;
                writeln!(out, "{line}")?;
            }
        } else {
            if a.stream && !first {
                writeln!(out)?;
            }
            write!(out, "{}", table(&before, &now))?;
        }
        out.flush()?;
        first = false;
        if !a.stream {
            return Ok(0);
        }
        before = now;
    }
}

/// The table `docker stats` prints: CPU % over the interval between the two readings.
pub fn table(before: &[ContainerStats], now: &[ContainerStats]) -> String {
    let mut rows = vec![[
        "CONTAINER ID".to_string(),
        "NAME".into(),
        "CPU %".into(),
        "MEM USAGE / LIMIT".into(),
        "MEM %".into(),
        "PIDS".into(),
    ]];
    for s in now {
        let cpu = before
            .iter()
            .find(|b| b.id == s.id)
            .map(|b| {
                let wall_ns = (s.read_ms - b.read_ms).max(1) as f64 * 1e6;
                s.cpu_ns.saturating_sub(b.cpu_ns) as f64 / wall_ns * 100.0
            })
            .unwrap_or(0.0);
        let limit = s.memory_limit.map_or("unlimited".to_string(), human);
        let mem_pct = s.memory_limit.map_or("--".to_string(), |l| {
            format!("{:.2}%", s.memory_bytes as f64 / l.max(1) as f64 * 100.0)
        });
        let pids = match s.pids_limit {
            Some(l) => format!("{} / {l}", s.pids),
            None => s.pids.to_string(),
        };
        rows.push([
            s.id.to_string(),
            s.name.clone(),
            format!("{cpu:.2}%"),
            format!("{} / {limit}", human(s.memory_bytes)),
            mem_pct,
            pids,
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        text.push_str(line.join("   ").trim_end());
        text.push('\n');
    }
    text
}

/// Bytes as docker prints them: `12.5MiB`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.2}{}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_options_become_limits() {
        let o = LimitOpts {
            memory: Some("64m".into()),
            memory_swap: Some("-1".into()),
            cpus: Some(0.5),
            pids_limit: Some(20),
            ..LimitOpts::default()
        };
        let l = limits(&o).expect("limits").expect("some");
        assert_eq!(
            l,
            Limits::new()
                .memory(64 << 20)
                .memory_swap(-1)
                .cpus(0.5)
                .pids(20)
        );
        assert!(limits(&LimitOpts::default()).expect("none").is_none());
        let bad = LimitOpts {
            memory: Some("1k".into()),
            ..LimitOpts::default()
        };
        let e = limits(&bad).expect_err("too small");
        assert!(e.message.contains("memory limit"), "{}", e.message);
        let bad = LimitOpts {
            cpus: Some(-1.0),
            ..LimitOpts::default()
        };
        assert!(limits(&bad).is_err());
    }

    #[test]
    fn sizes_print_as_docker_does() {
        assert_eq!(human(512), "512B");
        assert_eq!(human(64 << 20), "64.00MiB");
        assert_eq!(human(1536), "1.50KiB");
    }
}
