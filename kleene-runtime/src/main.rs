//! `kleene-runtime`: runc's command line over kleene-jail, as conmon and containerd's shim
//! call it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use kleene_runtime::ops::{CreateOptions, ExecOptions, Runtime};
use kleene_runtime::state::DEFAULT_ROOT;

#[derive(Parser, Debug)]
#[command(
    name = "kleene-runtime",
    version,
    about = "an OCI runtime over kleene-jail, with runc's command line"
)]
struct Cli {
    /// Where container state is kept.
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    root: PathBuf,
    /// A file errors (and, with --debug, progress) are appended to.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// The log's format: text, or json lines (what the shims read).
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// More in the log.
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd for cgroups (not supported: refused).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc's callers; true or false as runc takes it.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    rootless: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Set a container up from a bundle, its process held before the program.
    Create {
        #[command(flatten)]
        create: CreateArgs,
        id: String,
    },
    /// Let a created container's program run.
    Start { id: String },
    /// Create, start, wait for the end and delete (or return at once with --detach).
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(short, long)]
        detach: bool,
        id: String,
    },
    /// The spec's state of a container, as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's first process.
    Kill {
        /// Every process of the container.
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Remove a container (a running one with --force).
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Run a process in a running container.
    Exec {
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// The containers of the root.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// The processes of a container.
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
    },
    /// Freeze a container's processes (needs the freezer cgroup: not supported yet).
    Pause { id: String },
    /// Thaw them.
    Resume { id: String },
    /// What this runtime supports, as the spec's features JSON.
    Features,
    /// Write a config.json to start from.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    /// The bundle directory (config.json and the root file system).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Accepted for runc's callers: the root is always pivoted into.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for runc's callers: no session keyring is made.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Extra descriptors to pass (not supported yet beyond 0).
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
}

#[derive(clap::Args, Debug)]
struct ExecArgs {
    /// The process as the spec's JSON (config.json's `process`).
    #[arg(short, long)]
    process: Option<PathBuf>,
    #[arg(short, long)]
    detach: bool,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(short, long)]
    tty: bool,
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    #[arg(long)]
    cwd: Option<PathBuf>,
    #[arg(short, long)]
    env: Vec<String>,
    /// uid[:gid]
    #[arg(short, long)]
    user: Option<String>,
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl CreateArgs {
    fn options(&self) -> anyhow::Result<CreateOptions> {
        if self.preserve_fds > 0 {
            bail!("--preserve-fds is not supported yet");
        }
        Ok(CreateOptions {
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&cli, &anyhow::anyhow!("starting the async runtime: {e}")),
    };
    match rt.block_on(run(&cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&cli, &e),
    }
}

/// Reports an error as runc does: on stderr, and as a line of the log (JSON lines with
/// `--log-format json`, which containerd's shim and conmon read back).
fn fail(cli: &Cli, e: &anyhow::Error) -> ExitCode {
    let msg = format!("{e:#}");
    eprintln!("kleene-runtime: {msg}");
    if let Some(path) = &cli.log {
        log_line(path, cli.log_format, "error", &msg);
    }
    ExitCode::from(1)
}

fn log_line(path: &Path, format: LogFormat, level: &str, msg: &str) {
    let time = kleene_runtime::state::now_rfc3339();
    let line = match format {
        LogFormat::Json => {
            serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
        }
        LogFormat::Text => format!("time=\"{time}\" level={level} msg={msg:?}"),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

async fn run(cli: &Cli) -> anyhow::Result<u8> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: cgroups are managed by path (cgroupfs)");
    }
    if cli.debug {
        if let Some(log) = &cli.log {
            log_line(log, cli.log_format, "debug", &format!("{:?}", cli.command));
        }
    }
    // `spec` and `features` need no state root.
    match &cli.command {
        Command::Spec { bundle } => {
            let rootless = cli.rootless.as_deref().is_some_and(|v| v != "false");
            return spec(bundle, rootless).map(|()| 0);
        }
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&kleene_runtime::features())?
            );
            return Ok(0);
        }
        _ => {}
    }
    let rt = Runtime::new(&cli.root)?;
    match &cli.command {
        Command::Create { create, id } => {
            rt.create(id, &create.bundle, &create.options()?).await?;
        }
        Command::Start { id } => rt.start(id)?,
        Command::Run { create, detach, id } => {
            let code = rt
                .run(id, &create.bundle, &create.options()?, *detach)
                .await?;
            return Ok(u8::try_from(code).unwrap_or(255));
        }
        Command::State { id } => {
            println!("{}", serde_json::to_string_pretty(&rt.state(id)?)?);
        }
        Command::Kill { all, id, signal } => {
            let signal = kleene_runtime::ops::parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            rt.kill(id, signal, *all)?;
        }
        Command::Delete { force, id } => rt.delete(id, *force)?,
        Command::Exec { exec: e } => {
            let code = exec(&rt, e).await?;
            if !e.detach {
                return Ok(u8::try_from(code).unwrap_or(255));
            }
        }
        Command::List { format, quiet } => list(&rt, format, *quiet)?,
        Command::Ps { format, id } => ps(&rt, id, format)?,
        Command::Pause { id } => rt.pause(id, true)?,
        Command::Resume { id } => rt.pause(id, false)?,
        Command::Spec { .. } | Command::Features => unreachable!("handled above"),
    }
    Ok(0)
}

/// `exec`: the process from `--process`, or the container's own with the command line's
/// changes; its exit code (or 0 when detached).
async fn exec(rt: &Runtime, e: &ExecArgs) -> anyhow::Result<i32> {
    if e.preserve_fds > 0 {
        bail!("--preserve-fds is not supported yet");
    }
    let p = match &e.process {
        Some(path) => {
            let text =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_slice(&text)
                .with_context(|| format!("{}: not a process of the runtime spec", path.display()))?
        }
        None => exec_process(
            rt.process_of(&e.id)?,
            ExecOverrides {
                args: &e.args,
                tty: e.tty,
                cwd: e.cwd.as_deref(),
                env: &e.env,
                user: e.user.as_deref(),
                additional_gids: &e.additional_gids,
                no_new_privs: e.no_new_privs,
            },
        )?,
    };
    let opts = ExecOptions {
        pid_file: e.pid_file.clone(),
        console_socket: e.console_socket.clone(),
        detach: e.detach,
    };
    Ok(rt.exec(&e.id, &p, &opts).await?)
}

/// `ps`: the container's host pids, as JSON or as a table with their command lines.
fn ps(rt: &Runtime, id: &str, format: &str) -> anyhow::Result<()> {
    let pids = rt.ps(id)?;
    match format {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => {
            println!("PID   CMD");
            for pid in pids {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|b| {
                        String::from_utf8_lossy(&b)
                            .split('\0')
                            .filter(|s| !s.is_empty())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                println!("{pid:<5} {cmd}");
            }
        }
        other => bail!("invalid format {other:?}: use table or json"),
    }
    Ok(())
}

struct ExecOverrides<'a> {
    args: &'a [String],
    tty: bool,
    cwd: Option<&'a Path>,
    env: &'a [String],
    user: Option<&'a str>,
    additional_gids: &'a [u32],
    no_new_privs: bool,
}

/// An exec's process as runc builds it: the container's own process (capabilities,
/// rlimits, environment), with the command line's args, terminal, cwd, env and user.
fn exec_process(
    base: Option<oci_spec::runtime::Process>,
    o: ExecOverrides<'_>,
) -> anyhow::Result<oci_spec::runtime::Process> {
    if o.args.is_empty() {
        bail!("exec needs a command, or --process");
    }
    let mut p = base.unwrap_or_default();
    p.set_args(Some(o.args.to_vec()));
    p.set_terminal(Some(o.tty));
    p.set_console_size(None);
    if let Some(cwd) = o.cwd {
        p.set_cwd(cwd.to_path_buf());
    }
    let mut env = p.env().clone().unwrap_or_default();
    for kv in o.env {
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(u) = o.user {
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u, None),
        };
        let mut user = p.user().clone();
        user.set_uid(
            uid.parse()
                .with_context(|| format!("--user {u:?}: a numeric uid[:gid]"))?,
        );
        if let Some(g) = gid {
            user.set_gid(
                g.parse()
                    .with_context(|| format!("--user {u:?}: a numeric uid[:gid]"))?,
            );
        }
        p.set_user(user);
    }
    if !o.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(o.additional_gids.to_vec()));
        p.set_user(user);
    }
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

fn list(rt: &Runtime, format: &str, quiet: bool) -> anyhow::Result<()> {
    let all = rt.list()?;
    if quiet {
        for c in &all {
            println!("{}", c.id);
        }
        return Ok(());
    }
    match format {
        "json" => {
            let v: Vec<serde_json::Value> = all
                .iter()
                .map(|c| {
                    let mut s =
                        kleene_runtime::state::oci_state(&c.id, c.status, c.record.as_ref());
                    if s.get("pid").is_none() {
                        s["pid"] = 0.into();
                    }
                    s["owner"] = "root".into();
                    s
                })
                .collect();
            println!("{}", serde_json::to_string(&v)?);
        }
        "table" => {
            println!(
                "{:<12} {:<10} {:<10} {:<40} {:<31} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for c in &all {
                let (pid, bundle, created) =
                    c.record
                        .as_ref()
                        .map_or((0, String::new(), String::new()), |r| {
                            (
                                if c.status == kleene_runtime::state::Status::Stopped {
                                    0
                                } else {
                                    r.pid
                                },
                                r.bundle.display().to_string(),
                                r.created.clone(),
                            )
                        });
                println!(
                    "{:<12} {:<10} {:<10} {:<40} {:<31} root",
                    c.id,
                    pid,
                    c.status.as_str(),
                    bundle,
                    created
                );
            }
        }
        other => bail!("invalid format {other:?}: use table or json"),
    }
    Ok(())
}

/// `spec`: a config.json for a bundle whose root file system is `rootfs`.
fn spec(bundle: &Path, rootless: bool) -> anyhow::Result<()> {
    if rootless {
        bail!("--rootless: user namespaces are not supported yet");
    }
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("{} exists: remove it first", path.display());
    }
    let text = serde_json::to_string_pretty(&kleene_runtime::default_spec())?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
