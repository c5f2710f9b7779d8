//! Runs a command isolated in a root directory, passing its output through, and exits with
//! its exit code (128 + the signal when a signal killed it; 125 when the jail could not be
//! started).
//!
//! ```text
//! cargo run -p kleene-jail --example jexec -- --root DIR [--hostname H] [--user U]
//!     [--env K=V]... [--net inherit|disabled] [--workdir D] [--init] [-J param]... -- CMD ARGS...
//! ```

use anyhow::{bail, Context, Result};
use kleene_jail::{JailConfig, JailParam, NetworkMode, Stdio};

const USAGE: &str = "usage: jexec --root DIR [--hostname H] [--user U] [--env K=V]... \
[--net inherit|disabled] [--workdir D] [--init] [-J param]... -- CMD ARGS...";

fn parse(args: Vec<String>) -> Result<JailConfig> {
    let mut args = args.into_iter();
    let mut root = None;
    let mut options = Vec::new();
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--root" => root = Some(value("--root")?),
            "--hostname" | "--user" | "--env" | "--net" | "--workdir" | "-J" => {
                let v = value(&arg)?;
                options.push((arg, v));
            }
            "--init" => options.push((arg, String::new())),
            "--" => {
                command.extend(args.by_ref());
            }
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    let root = root.with_context(|| format!("--root is required\n{USAGE}"))?;
    if command.is_empty() {
        bail!("no command given\n{USAGE}");
    }
    let mut cfg = JailConfig::new(std::path::absolute(&root)?)
        .command(command)
        .stdin(Stdio::Inherit)
        .stdout(Stdio::Inherit)
        .stderr(Stdio::Inherit);
    for (name, v) in options {
        cfg = match name.as_str() {
            "--hostname" => cfg.hostname(v),
            "--user" => cfg.user(v),
            "--workdir" => cfg.workdir(v),
            "--init" => cfg.init(true),
            "--env" => {
                let (k, val) = v.split_once('=').context("--env takes K=V")?;
                cfg.env(k, val)
            }
            "--net" => cfg.network(match v.as_str() {
                "inherit" => NetworkMode::Inherit,
                "disabled" => NetworkMode::Disabled,
                other => bail!("--net is inherit or disabled, not {other}"),
            }),
            _ => cfg.param(JailParam::parse(&v)?),
        };
    }
    Ok(cfg)
}

async fn run() -> Result<i32> {
    let cfg = parse(std::env::args().skip(1).collect())?;
    let mut jail = cfg.start().await.context("start the jail")?;
    let status = jail.wait().await?;
    jail.teardown().await?;
    Ok(status.shell_code())
}

/// Exits with the command's code, or 125 when the jail could not be run (as podman does).
#[tokio::main]
async fn main() {
    match run().await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("jexec: {e:#}");
            std::process::exit(125);
        }
    }
}
