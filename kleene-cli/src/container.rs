//! `klee container ...`: create, run, start, stop, exec, list, remove.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use kleene_core::kleene_jail::{ExitStatus, Process, Stdio, WinSize};
use kleene_core::{
    Addresses, Attach, ContainerUpdate, CreateContainer, Engine, ExecSpec, Exit, Id, MountSpec,
    RestartPolicy, StartOverrides,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backend::Backend;
use crate::cli::{AttachArgs, ContainerLsArgs, ContainerRmArgs, CreateArgs, CreateOpts, ExecArgs};
use crate::cli::{InspectArgs, ListFormat, LogsArgs, PruneArgs, RenameArgs, RunArgs, StartArgs};
use crate::cli::{StopArgs, UpdateArgs};
use crate::failure::{Failure, Outcome};
use crate::output::{container_row, now, table, CONTAINER_COLUMNS};
use crate::{confirm_prune, each, print_json, print_pruned, Ctx};

/// How long a stop on Ctrl-C waits before killing.
const INTERRUPT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The engine's request from `create`/`run` options; refuses what is not supported yet.
fn request(
    opts: CreateOpts,
    image: String,
    command: Vec<String>,
) -> Result<CreateContainer, Failure> {
    let c = opts.container;
    let restart: RestartPolicy = opts
        .restart
        .parse()
        .map_err(|e: kleene_core::CoreError| Failure::usage(e.to_string()))?;
    let mounts = c
        .mount
        .iter()
        .map(|m| MountSpec::parse(m))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::usage(e.to_string()))?;
    let mut req = CreateContainer::new(image)
        .cmd(command)
        .persist(opts.persist)
        .restart(restart);
    if let Some(l) = crate::stats::limits(&opts.limits)? {
        req = req.limits(l);
    }
    if let Some(s) = crate::stats::seccomp(&opts.security_opt)? {
        req = req.seccomp(s);
    }
    match opts.userns.as_deref() {
        None => {}
        Some("host") => req = req.userns(None),
        Some(range) => {
            let u = kleene_core::UserNs::parse(range).map_err(|e| Failure::usage(e.to_string()))?;
            req = req.userns(Some(u));
        }
    }
    if let Some(d) = c.driver {
        req = req.driver(d);
    }
    if let Some(n) = c.network {
        req = req.network(n, Addresses::new(c.ip, c.ip6));
    }
    for p in opts.publish {
        req = req.publish(p);
    }
    if let Some(name) = opts.name {
        req = req.name(name);
    }
    if let Some(user) = c.user {
        req = req.user(user);
    }
    if let Some(dir) = opts.workdir {
        req = req.workdir(dir);
    }
    for kv in c.env {
        req = req.env(kv);
    }
    for m in mounts {
        req = req.mount(m);
    }
    for p in c.jailparam {
        req = req.jail_param(p);
    }
    Ok(req)
}

/// `klee container create IMAGE [COMMAND]...`.
pub async fn create(ctx: &Ctx, a: CreateArgs) -> Outcome {
    if let Some(client) = ctx.client()? {
        println!(
            "{}",
            crate::remote::create(&client, &a.opts, &a.image, &a.command).await?
        );
        return Ok(0);
    }
    let req = request(a.opts, a.image, a.command)?;
    let engine = ctx.engine().await?;
    let c = engine.create_container(req).await?;
    println!("{}", c.id);
    Ok(0)
}

/// How klee attaches to a started container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Not at all: it runs in the background.
    Detached,
    /// Its output is copied to ours; its stdin is closed.
    Output,
    /// It has our stdin, stdout and stderr (and so our terminal).
    Terminal,
}

impl Mode {
    pub fn of(a: AttachArgs) -> Self {
        if a.interactive || a.tty {
            Mode::Terminal
        } else if a.detach {
            Mode::Detached
        } else {
            Mode::Output
        }
    }
}

/// Resolves at each Ctrl-C caught by `sigint`; never, if it could not be caught.
/// Catching it keeps klee alive while a container on our terminal decides what Ctrl-C
/// means to it.
async fn ctrl_c(sigint: Option<&mut tokio::signal::unix::Signal>) {
    match sigint {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// Starts one container and, unless detached, follows it to its end: klee's
/// `created execution instance` and `executable ... exited` lines around its output.
/// With `remove`, the container's monitor removes it when it ends with its command.
async fn start_one(
    engine: &Engine,
    reference: &str,
    mode: Mode,
    remove: bool,
) -> Result<Exit, Failure> {
    // Daemonless, the start is the execution instance; its id is made here, as kleened
    // makes one for each start, and is not kept.
    let instance = Id::generate()?;
    if mode == Mode::Detached {
        engine.start_container(reference, Attach::Detached).await?;
        println!("created execution instance {instance}");
        return Ok(Exit {
            code: 0,
            container_ended: false,
            removed: false,
        });
    }
    println!("created execution instance {instance}");
    let attach = if mode == Mode::Terminal {
        Attach::Inherit
    } else {
        Attach::Piped
    };
    // Signals are caught from before the start: a Ctrl-C as soon as the container runs
    // (it may have written already) must find klee ready for it, not end klee.
    let mut sigint = if mode == Mode::Terminal {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok()
    } else {
        None
    };
    let interrupt = (mode != Mode::Terminal).then(|| crate::signals::watch("container"));
    let overrides = StartOverrides::new().remove(remove);
    let mut started = engine
        .start_container_with(reference, attach, overrides)
        .await?;
    let id = started.container.id.to_string();
    let copy_out = started.stdout.take().map(|mut s| {
        tokio::spawn(async move {
            let mut out = tokio::io::stdout();
            let _ = tokio::io::copy(&mut s, &mut out).await;
            let _ = out.flush().await;
        })
    });
    let copy_err = started.stderr.take().map(|mut s| {
        tokio::spawn(async move {
            let mut err = tokio::io::stderr();
            let _ = tokio::io::copy(&mut s, &mut err).await;
            let _ = err.flush().await;
        })
    });
    let wait = started.wait();
    tokio::pin!(wait);
    let exit = if mode == Mode::Terminal {
        // With our terminal the container gets every Ctrl-C itself and decides; klee only
        // stays alive to report its exit (which its monitor records in any case).
        loop {
            tokio::select! {
                code = &mut wait => break code?,
                _ = ctrl_c(sigint.as_mut()) => {}
            }
        }
    } else {
        // Otherwise the container is in its own process group: the first Ctrl-C (or
        // SIGTERM) stops it and waits for its exit to be recorded, a second exits at once
        // (its monitor still records the exit).
        let interrupt = interrupt.unwrap_or_default();
        tokio::select! {
            code = &mut wait => code?,
            _ = interrupt.interrupted() => {
                if let Err(e) = engine.stop_container(&id, INTERRUPT_STOP_TIMEOUT).await {
                    eprintln!("klee: {e}");
                }
                wait.await?
            }
        }
    };
    // What the command wrote is in the pipes already; processes it left in a container
    // that runs on keep them open, so the rest is not waited for long.
    let grace = if exit.container_ended {
        Duration::from_secs(2)
    } else {
        Duration::from_millis(200)
    };
    for task in [copy_out, copy_err].into_iter().flatten() {
        let _ = tokio::time::timeout(grace, task).await;
    }
    println!();
    if exit.container_ended {
        println!(
            "executable {instance} and its container exited with exit-code {}",
            exit.code
        );
    } else {
        // As kleened says it: the container runs on (processes remain).
        println!("{instance} has exited with exit-code {}", exit.code);
    }
    Ok(exit)
}

/// `klee container run IMAGE [COMMAND]...`: create, then start.
pub async fn run(ctx: &Ctx, a: RunArgs) -> Outcome {
    let mode = Mode::of(a.attach);
    if a.rm && mode == Mode::Detached {
        return Err(Failure::usage(
            "--rm cannot be used with --detach: no klee stays to remove the container",
        ));
    }
    if let Some(client) = ctx.client()? {
        let id = crate::remote::create(&client, &a.opts, &a.image, &a.command).await?;
        println!("{id}");
        let exit = crate::remote::start(&client, &id, mode).await;
        if a.rm {
            match &exit {
                Ok(e) if !e.container_ended => eprintln!(
                    "klee: container {id} runs on after its command (processes remain): not removed"
                ),
                _ => {
                    let backend = Backend::Remote(client);
                    if let Err(e) = backend.remove_container(&id, true).await {
                        eprintln!("klee: {}", e.message);
                    }
                }
            }
        }
        return exit.map(|e| e.code);
    }
    let req = request(a.opts, a.image, a.command)?;
    let engine = ctx.engine().await?;
    let c = engine.create_container(req).await?;
    println!("{}", c.id);
    let exit = start_one(&engine, c.id.as_str(), mode, a.rm).await;
    if a.rm {
        match &exit {
            // Its monitor removed it (its dataset goes after klee returns).
            Ok(e) if e.removed => {}
            Ok(e) if !e.container_ended => eprintln!(
                "klee: container {} runs on after its command (processes remain): not removed",
                c.name
            ),
            _ => {
                if let Err(e) = engine.remove_container(c.id.as_str(), true).await {
                    eprintln!("klee: {e}");
                }
            }
        }
    }
    exit.map(|e| e.code)
}

/// `klee container start CONTAINERS...`: attached only when one container is started.
pub async fn start(ctx: &Ctx, a: StartArgs) -> Outcome {
    let mode = Mode::of(a.attach);
    if let Some(client) = ctx.client()? {
        return match (a.containers.as_slice(), mode == Mode::Detached) {
            ([one], false) => crate::remote::start(&client, one, mode)
                .await
                .map(|e| e.code),
            (_, false) => Err(Failure::usage(
                "only one container can be started when attaching to container I/O: use --detach",
            )),
            _ => {
                each(&a.containers, |t| {
                    let client = client.clone();
                    async move { crate::remote::start_detached(&client, &t).await }
                })
                .await
            }
        };
    }
    let engine = ctx.engine().await?;
    match (a.containers.as_slice(), mode == Mode::Detached) {
        ([one], false) => return start_one(&engine, one, mode, false).await.map(|e| e.code),
        // As klee: only one container's I/O can be attached to.
        (_, false) => {
            return Err(Failure::usage(
                "only one container can be started when attaching to container I/O: use --detach",
            ))
        }
        _ => {}
    }
    each(&a.containers, |t| {
        let engine = engine.clone();
        async move {
            let started = engine.start_container(&t, Attach::Detached).await?;
            Ok(started.container.id.to_string())
        }
    })
    .await
}

/// `klee container stop CONTAINERS...`.
pub async fn stop(ctx: &Ctx, a: StopArgs) -> Outcome {
    let backend = ctx.backend().await?;
    let timeout = Duration::from_secs(a.timeout);
    each(&a.containers, |t| {
        let backend = backend.clone();
        async move { backend.stop_container(&t, timeout).await }
    })
    .await
}

/// `klee container restart CONTAINERS...`.
pub async fn restart(ctx: &Ctx, a: StopArgs) -> Outcome {
    if let Some(client) = ctx.client()? {
        // As klee: stop, then start in the background.
        let backend = Backend::Remote(client.clone());
        let timeout = Duration::from_secs(a.timeout);
        return each(&a.containers, |t| {
            let (backend, client) = (backend.clone(), client.clone());
            async move {
                backend.stop_container(&t, timeout).await?;
                crate::remote::start_detached(&client, &t).await
            }
        })
        .await;
    }
    let engine = ctx.engine().await?;
    let timeout = Duration::from_secs(a.timeout);
    each(&a.containers, |t| {
        let engine = engine.clone();
        async move { Ok(engine.restart_container(&t, timeout).await?.id.to_string()) }
    })
    .await
}

/// Copies the process' terminal to our stdout (and our stdin to it when interactive)
/// until it ends.
async fn relay_terminal(p: &mut Process, interactive: bool) -> Result<ExitStatus, Failure> {
    let pty = p
        .pty
        .take()
        .ok_or_else(|| Failure::failed("the process has no terminal"))?;
    let (mut from, mut to) = tokio::io::split(pty);
    let raw = if interactive && std::io::stdin().is_terminal() {
        crate::signals::RawMode::enable()
    } else {
        None
    };
    if interactive {
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let _ = tokio::io::copy(&mut stdin, &mut to).await;
        });
    }
    let out = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        let mut buf = vec![0u8; 16 * 1024];
        // The master answers EIO once the process and its terminal are gone.
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 || stdout.write_all(&buf[..n]).await.is_err() {
                break;
            }
            let _ = stdout.flush().await;
        }
    });
    let status = p.wait().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), out).await;
    drop(raw);
    status.map_err(|e| Failure::failed(e.to_string()))
}

/// `klee container exec CONTAINER COMMAND...`.
pub async fn exec(ctx: &Ctx, a: ExecArgs) -> Outcome {
    let interactive = a.attach.interactive;
    let detach = a.attach.detach && !interactive;
    let tty = a.attach.tty && !detach;
    if let Some(client) = ctx.client()? {
        if a.workdir.is_some() {
            return Err(Failure::usage(
                "--workdir is not in kleened's API: it works on the engine itself (drop --host)",
            ));
        }
        let config = kleene_api::ExecConfig {
            cmd: a.command,
            container_id: a.container,
            env: a.env,
            tty,
            user: a.user.unwrap_or_default(),
        };
        let mode = if detach {
            Mode::Detached
        } else if tty {
            Mode::Terminal
        } else {
            Mode::Output
        };
        return crate::remote::exec(&client, &config, mode, interactive).await;
    }
    let mut spec = ExecSpec::new(a.command);
    for kv in a.env {
        spec = spec.env(kv);
    }
    if let Some(user) = a.user {
        spec = spec.user(user);
    }
    if let Some(dir) = a.workdir {
        spec = spec.workdir(dir);
    }
    if detach {
        spec.stdin = Stdio::Null;
        spec.stdout = Stdio::Null;
        spec.stderr = Stdio::Null;
    } else if tty {
        let (rows, cols) = console::Term::stdout().size();
        spec.tty = Some(WinSize { rows, cols });
    } else {
        spec.stdin = if interactive {
            Stdio::Inherit
        } else {
            Stdio::Null
        };
    }
    let engine = ctx.engine().await?;
    let instance = Id::generate()?;
    // As kleened: the instance is made (and told) before it starts, so it comes before
    // anything the command writes.
    println!("created execution instance {instance}");
    // Caught from before the command starts (see start_one).
    let interrupt = (!detach && !tty).then(|| crate::signals::watch("command"));
    let mut p = engine.exec_container(&a.container, spec).await?;
    if detach {
        return Ok(0);
    }
    let status = if tty {
        // Ctrl-C is a byte on the raw terminal, which the command reads.
        relay_terminal(&mut p, interactive).await?
    } else {
        // The first Ctrl-C (or SIGTERM) is passed on to the command as SIGINT, and its end
        // awaited; a second exits at once (the command dies with klee).
        let interrupt = interrupt.unwrap_or_default();
        let pid = nix::unistd::Pid::from_raw(p.pid());
        let wait = p.wait();
        tokio::pin!(wait);
        tokio::select! {
            status = &mut wait => status,
            _ = interrupt.interrupted() => {
                // Our own child, not yet reaped (the wait is pending), so the pid is its.
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
                wait.await
            }
        }
        .map_err(|e| Failure::failed(e.to_string()))?
    };
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    println!();
    println!("{instance} has exited with exit-code {code}");
    Ok(code)
}

/// `klee container ls [-a]`.
pub async fn ls(ctx: &Ctx, a: ContainerLsArgs) -> Outcome {
    let backend = ctx.backend().await?;
    if a.list.format == ListFormat::Json {
        // The engine's whole records, embedded; kleened's `ContainerSummary`s through it.
        if let Backend::Local(engine) = &backend {
            let containers: Vec<_> = engine
                .containers()
                .await?
                .into_iter()
                .filter(|c| a.all || kleene_api::views::is_running(c))
                .collect();
            return print_json(ctx.theme, &containers);
        }
        return print_json(ctx.theme, &backend.containers(a.all).await?);
    }
    let now = now();
    let rows: Vec<Vec<String>> = backend
        .containers(a.all)
        .await?
        .iter()
        .map(|c| container_row(c, now))
        .collect();
    print!("{}", table(ctx.theme, &CONTAINER_COLUMNS, &rows));
    Ok(0)
}

/// `klee container inspect CONTAINER`: the container, its endpoints and its mounts, in
/// kleened's shape.
pub async fn inspect(ctx: &Ctx, a: InspectArgs) -> Outcome {
    let backend = ctx.backend().await?;
    print_json(ctx.theme, &backend.container(&a.target).await?)
}

/// `klee container rm [-f] CONTAINERS...`.
pub async fn rm(ctx: &Ctx, a: ContainerRmArgs) -> Outcome {
    let backend = ctx.backend().await?;
    let force = a.force;
    each(&a.targets, |t| {
        let backend = backend.clone();
        async move { backend.remove_container(&t, force).await }
    })
    .await
}

/// `klee container prune [-f]`.
pub async fn prune(ctx: &Ctx, a: PruneArgs) -> Outcome {
    // klee asks before it contacts kleened.
    confirm_prune(a.force, "WARNING! This will remove all stopped containers.")?;
    let backend = ctx.backend().await?;
    print_pruned(&backend.prune_containers().await?);
    Ok(0)
}

/// `klee container rename CONTAINER NEW_NAME`.
pub async fn rename(ctx: &Ctx, a: RenameArgs) -> Outcome {
    let backend = ctx.backend().await?;
    println!(
        "{}",
        backend.rename_container(&a.container, &a.new_name).await?
    );
    Ok(0)
}

/// `klee container update`: as klee, every option given replaces the container's
/// (`--env` and `-J` the whole list), and `--persist`/`--restart` are always set (to off
/// and `no` when not given).
pub async fn update(ctx: &Ctx, a: UpdateArgs) -> Outcome {
    let restart_text = a.restart.as_deref().unwrap_or("no");
    let restart: RestartPolicy = restart_text
        .parse()
        .map_err(|e: kleene_core::CoreError| Failure::usage(e.to_string()))?;
    // kleened's body: what is not given is null, kept as the container has it.
    let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let body = kleene_api::ContainerConfig {
        name: a.name.clone(),
        user: a.user.clone(),
        env: some(&a.env),
        jail_param: some(&a.jailparam.iter().map(ToString::to_string).collect()),
        cmd: some(&a.command),
        persist: Some(a.persist),
        restart_policy: Some(restart_text.to_string()),
        limits: crate::stats::limits(&a.limits)?.map(|l| kleene_api::views::limits_view(&l)),
        ..kleene_api::ContainerConfig::default()
    };
    let mut update = ContainerUpdate::new().persist(a.persist).restart(restart);
    if let Some(name) = a.name {
        update = update.name(name);
    }
    if let Some(user) = a.user {
        update = update.user(user);
    }
    if !a.env.is_empty() {
        update = update.env(a.env);
    }
    if !a.jailparam.is_empty() {
        update = update.jail_params(a.jailparam);
    }
    if !a.command.is_empty() {
        update = update.cmd(a.command);
    }
    if let Some(l) = crate::stats::limits(&a.limits)? {
        update = update.limits(l);
    }
    let backend = ctx.backend().await?;
    println!(
        "{}",
        backend
            .update_container(&a.container, update, &body)
            .await?
    );
    Ok(0)
}

/// `klee logs CONTAINER`: what a detached container wrote.
pub async fn logs(ctx: &Ctx, a: LogsArgs) -> Outcome {
    ctx.local_only("klee logs")?;
    let engine = ctx.engine().await?;
    let bytes = engine.container_logs(&a.container).await?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(0)
}
