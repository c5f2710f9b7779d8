//! The commands that run something through kleened (`--host`): containers are created
//! with `POST /containers/create` (and connected with `POST /networks/connect`), run
//! through execution instances (`POST /exec/create`, then the `/exec/start` WebSocket),
//! and images are built and created on the `/images/build` and `/images/create`
//! WebSockets — as Kleene's klee does it. What they print is what the embedded klee
//! prints.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use kleene_api::client::{encode, Client, Frame, WebSocket};
use kleene_api::{
    ContainerConfig, EndPointConfig, ExecConfig, ExecStartConfig, IdResponse, ImageBuildConfig,
    ImageCreateConfig, MountPointConfig, PublishedPortConfig, WebSocketMessage,
};
use kleene_core::{BaseSource, CreateImage, Driver, Exit, MountSource, MountSpec};

use crate::cli::{BuildArgs, CreateOpts};
use crate::container::Mode;
use crate::failure::{Failure, Outcome, FAILED};

/// A mount as kleened's `MountPointConfig`.
fn mount_config(text: &str) -> Result<MountPointConfig, Failure> {
    let m = MountSpec::parse(text).map_err(|e| Failure::usage(e.to_string()))?;
    let (kind, source) = match m.source {
        MountSource::Volume(name) => ("volume", name),
        MountSource::HostPath(path) => ("nullfs", path),
        _ => return Err(Failure::usage(format!("invalid mount {text:?}"))),
    };
    Ok(MountPointConfig {
        destination: m.destination,
        read_only: m.read_only,
        source,
        kind: kind.into(),
    })
}

/// The body of `POST /containers/create` for `create` and `run`.
pub fn container_config(
    opts: &CreateOpts,
    image: &str,
    command: &[String],
) -> Result<ContainerConfig, Failure> {
    if opts.workdir.is_some() {
        return Err(Failure::usage(
            "--workdir is not in kleened's API: it works on the engine itself (drop --host)",
        ));
    }
    let c = &opts.container;
    // As klee: `ipnet` with a network, else `host`.
    let driver = c.driver.unwrap_or(if c.network.is_some() {
        Driver::Ipnet
    } else {
        Driver::Host
    });
    Ok(ContainerConfig {
        cmd: Some(command.to_vec()),
        env: Some(c.env.clone()),
        image: Some(image.into()),
        jail_param: Some(c.jailparam.iter().map(ToString::to_string).collect()),
        mounts: Some(
            c.mount
                .iter()
                .map(|m| mount_config(m))
                .collect::<Result<_, _>>()?,
        ),
        name: opts.name.clone(),
        network_driver: Some(driver.to_string()),
        persist: Some(opts.persist),
        public_ports: Some(
            opts.publish
                .iter()
                .map(|p| PublishedPortConfig {
                    container_port: p.container.to_string(),
                    host_port: p.host.to_string(),
                    interfaces: p.interface.iter().cloned().collect(),
                    protocol: p.protocol.to_string(),
                })
                .collect(),
        ),
        restart_policy: Some(opts.restart.clone()),
        user: c.user.clone(),
        limits: crate::stats::limits(&opts.limits)?.map(|l| kleene_api::views::limits_view(&l)),
    })
}

/// What kleened answered, as a failure.
fn refused(r: &kleene_api::client::Response) -> Failure {
    let message = r.message();
    Failure::failed(if message.is_empty() {
        format!("kleened answered {}", r.status)
    } else {
        message
    })
}

/// Creates a container as `create` and `run` do, connecting it to `--network`; its id.
pub async fn create(
    client: &Client,
    opts: &CreateOpts,
    image: &str,
    command: &[String],
) -> Result<String, Failure> {
    // kleened's API has no field for these: refused rather than dropped.
    if !opts.security_opt.is_empty() {
        return Err(Failure::usage(
            "--security-opt is not carried by kleened's API: run klee without --host",
        ));
    }
    if opts.userns.is_some() {
        return Err(Failure::usage(
            "--userns is not carried by kleened's API: set the daemon's default instead",
        ));
    }
    let config = container_config(opts, image, command)?;
    let r = client.post("/containers/create", Some(&config)).await?;
    if !r.is_success() {
        return Err(refused(&r));
    }
    let id = r.json::<IdResponse>()?.id;
    if let Some(network) = &opts.container.network {
        let body = EndPointConfig {
            container: id.clone(),
            network: network.clone(),
            ip_address: opts.container.ip.map(|a| a.to_string()).unwrap_or_default(),
            ip_address6: opts
                .container
                .ip6
                .map(|a| a.to_string())
                .unwrap_or_default(),
        };
        let r = client.post("/networks/connect", Some(&body)).await?;
        if !r.is_success() {
            // As the engine: a container that cannot be connected is not kept.
            let _ = client.delete(&format!("/containers/{}", encode(&id))).await;
            return Err(refused(&r));
        }
    }
    Ok(id)
}

/// Makes an execution instance; its id.
pub async fn exec_create(client: &Client, config: &ExecConfig) -> Result<String, Failure> {
    let r = client.post("/exec/create", Some(config)).await?;
    if !r.is_success() {
        return Err(refused(&r));
    }
    Ok(r.json::<IdResponse>()?.id)
}

/// How a Ctrl-C stops an attached instance: the container with it (`run`, `start`), or
/// only its process (`exec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOnInterrupt {
    Container,
    Process,
}

/// The exit a closing message tells: `executable X and its container exited with
/// exit-code N` (the container ended) or `X has exited with exit-code N`.
fn exit_of(message: &str) -> Exit {
    let code = message
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Exit {
        code,
        container_ended: message.starts_with("executable "),
        removed: false,
    }
}

/// A failure from a close with `code` and `reason`, or from the `error: ...` text kleened
/// sent before it.
fn closed_with_error(code: u16, reason: Option<WebSocketMessage>, said: Option<String>) -> Failure {
    if let Some(text) = said {
        return Failure::failed(text);
    }
    match reason {
        Some(r) if !r.message.is_empty() => Failure::failed(r.message),
        _ => Failure::failed(format!("kleened closed the connection (code {code})")),
    }
}

/// Writes a frame's bytes to stdout at once.
fn write_out(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// Starts execution instance `exec_id`. Detached it returns once kleened started it
/// (`None`); attached it relays the output to ours (and our input to it when
/// `interactive`) and prints the end as klee does: an empty line, then kleened's closing
/// message.
pub async fn exec_start(
    client: &Client,
    exec_id: &str,
    mode: Mode,
    interactive: bool,
    start_container: bool,
    stop: StopOnInterrupt,
) -> Result<Option<Exit>, Failure> {
    let mut ws = client.websocket("/exec/start").await?;
    ws.send_config(&ExecStartConfig {
        attach: mode != Mode::Detached,
        exec_id: exec_id.into(),
        start_container,
    })
    .await?;
    if mode == Mode::Detached {
        let mut said = None;
        loop {
            match ws.next().await? {
                Frame::Text(t) => said = t.strip_prefix("error: ").map(str::to_string),
                Frame::Binary(_) => {}
                // 1001: started, nothing follows.
                Frame::Closed { code: 1001, .. } => return Ok(None),
                Frame::Closed { code, reason, .. } => {
                    return Err(closed_with_error(code, reason, said))
                }
            }
        }
    }
    starting(&mut ws).await?;
    let raw = if interactive && mode == Mode::Terminal && std::io::stdin().is_terminal() {
        crate::signals::RawMode::enable()
    } else {
        None
    };
    let (input_tx, mut input) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    if interactive {
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = stdin.read(&mut buf).await {
                if n == 0 || input_tx.send(buf[..n].to_vec()).await.is_err() {
                    break;
                }
            }
        });
    } else {
        drop(input_tx);
    }
    // With our terminal, Ctrl-C is a byte the command reads; otherwise the first stops
    // the instance (and waits for its end), a second exits at once.
    let interrupt = raw.is_none().then(|| {
        crate::signals::watch(match stop {
            StopOnInterrupt::Container => "container",
            StopOnInterrupt::Process => "command",
        })
    });
    let mut stop_asked = false;
    let mut said = None;
    let (code, reason) = loop {
        tokio::select! {
            frame = ws.next() => match frame? {
                Frame::Text(t) => {
                    said = t.strip_prefix("error: ").map(str::to_string);
                    write_out(t.as_bytes());
                }
                Frame::Binary(b) => write_out(&b),
                Frame::Closed { code, reason, .. } => break (code, reason),
            },
            Some(bytes) = input.recv() => ws.send_binary(bytes).await?,
            _ = async {
                match &interrupt {
                    Some(i) => i.interrupted().await,
                    None => std::future::pending().await,
                }
            }, if !stop_asked => {
                stop_asked = true;
                let client = client.clone();
                let path = format!(
                    "/exec/{}/stop?force_stop=false&stop_container={}",
                    encode(exec_id),
                    stop == StopOnInterrupt::Container
                );
                tokio::spawn(async move {
                    if let Ok(r) = client.post::<()>(&path, None).await {
                        if !r.is_success() {
                            eprintln!("klee: {}", r.message());
                        }
                    }
                });
            }
        }
    };
    drop(raw);
    match reason {
        Some(r) if code == 1000 && r.msg_type == "closing" => {
            println!();
            println!("{}", r.message);
            if !r.data.is_empty() {
                println!("{}", r.data);
            }
            Ok(Some(exit_of(&r.message)))
        }
        reason => Err(closed_with_error(code, reason, said)),
    }
}

/// Waits for the `starting` message; a refusal before it is a failure with kleened's
/// reason.
async fn starting(ws: &mut WebSocket) -> Result<WebSocketMessage, Failure> {
    let mut said: Option<String> = None;
    loop {
        match ws.next().await? {
            Frame::Text(t) => match serde_json::from_str::<WebSocketMessage>(&t) {
                Ok(m) if m.msg_type == "starting" => return Ok(m),
                _ => said = Some(t.strip_prefix("error: ").unwrap_or(&t).trim_end().into()),
            },
            Frame::Binary(_) => {}
            Frame::Closed { code, reason, .. } => {
                return Err(closed_with_error(code, reason, said))
            }
        }
    }
}

/// `exec`: an instance of `config`, started attached (or not) on a running container.
pub async fn exec(client: &Client, config: &ExecConfig, mode: Mode, interactive: bool) -> Outcome {
    let id = exec_create(client, config).await?;
    println!("created execution instance {id}");
    let exit = exec_start(
        client,
        &id,
        mode,
        interactive,
        false,
        StopOnInterrupt::Process,
    )
    .await?;
    Ok(exit.map_or(0, |e| e.code))
}

/// Starts container `container` with its own command, as `start` and `run` do: an
/// instance with an empty command, with `start_container`.
pub async fn start(client: &Client, container: &str, mode: Mode) -> Result<Exit, Failure> {
    let config = ExecConfig {
        container_id: container.into(),
        tty: mode == Mode::Terminal,
        ..ExecConfig::default()
    };
    let id = exec_create(client, &config).await?;
    // As the embedded klee: a detached start is told once it is done.
    if mode != Mode::Detached {
        println!("created execution instance {id}");
    }
    let exit = exec_start(
        client,
        &id,
        mode,
        mode == Mode::Terminal,
        true,
        StopOnInterrupt::Container,
    )
    .await?;
    if mode == Mode::Detached {
        println!("created execution instance {id}");
    }
    Ok(exit.unwrap_or(Exit {
        code: 0,
        container_ended: false,
        removed: false,
    }))
}

/// Starts a stopped container in the background, as `start -d` does with several: its id.
pub async fn start_detached(client: &Client, container: &str) -> Result<String, Failure> {
    let config = ExecConfig {
        container_id: container.into(),
        ..ExecConfig::default()
    };
    let id = exec_create(client, &config).await?;
    exec_start(
        client,
        &id,
        Mode::Detached,
        false,
        true,
        StopOnInterrupt::Container,
    )
    .await?;
    // kleened answers instances, not containers: the container's id is its inspection's.
    let r = client
        .get(&format!("/containers/{}/inspect", encode(container)))
        .await?;
    if !r.is_success() {
        return Err(refused(&r));
    }
    Ok(r.json::<kleene_api::ContainerInspect>()?.container.id)
}

/// Holds back a text frame that does not end a line: the reason kleened sends last
/// before an error close is told as the failure, not printed.
#[derive(Debug, Default)]
struct Held(Option<String>);

impl Held {
    /// Prints what was held, and holds `text` if it does not end a line.
    fn text(&mut self, text: String) {
        self.release();
        if text.ends_with('\n') {
            write_out(text.as_bytes());
        } else {
            self.0 = Some(text);
        }
    }

    fn release(&mut self) {
        if let Some(t) = self.0.take() {
            write_out(t.as_bytes());
        }
    }
}

/// `image create` through kleened: its lines as they come, then `image created` and the
/// id.
pub async fn image_create(client: &Client, req: &CreateImage) -> Outcome {
    let mut config = ImageCreateConfig {
        autotag: req.autotag,
        dns: req.dns,
        localtime: req.localtime,
        update: req.update,
        tag: req.tag.clone().unwrap_or_default(),
        ..ImageCreateConfig::default()
    };
    match &req.source {
        BaseSource::FetchAuto => config.method = "fetch-auto".into(),
        BaseSource::Fetch { url, sha256 } => {
            config.method = "fetch".into();
            config.url = url.clone();
            config.sha256 = sha256.clone();
        }
        BaseSource::ZfsCopy(d) => {
            config.method = "zfs-copy".into();
            config.zfs_dataset = d.to_string();
        }
        BaseSource::ZfsClone(d) => {
            config.method = "zfs-clone".into();
            config.zfs_dataset = d.to_string();
        }
        BaseSource::OciLayout { .. } => {
            return Err(Failure::usage(
                "loading an OCI image is not in kleened's API: it works on the engine itself (drop --host)",
            ))
        }
        other => {
            return Err(Failure::usage(format!(
                "{other:?} is not in kleened's API: it works on the engine itself (drop --host)"
            )))
        }
    }
    let mut ws = client.websocket("/images/create").await?;
    ws.send_config(&config).await?;
    starting(&mut ws).await?;
    // Ctrl-C: closing the connection makes kleened stop and remove the partial image.
    let interrupt = crate::signals::watch("image creation");
    let mut held = Held::default();
    loop {
        let frame = tokio::select! {
            f = ws.next() => f?,
            _ = interrupt.interrupted() => {
                let _ = ws.close().await;
                eprintln!("klee: image creation stopped; the partial image was removed");
                return Ok(crate::signals::ABORTED);
            }
        };
        match frame {
            Frame::Text(t) => held.text(t),
            Frame::Binary(b) => write_out(&b),
            Frame::Closed { code, reason, .. } => {
                return match reason {
                    Some(r) if code == 1000 && r.msg_type == "closing" => {
                        held.release();
                        println!();
                        println!("{}", r.message);
                        println!("{}", r.data);
                        Ok(0)
                    }
                    reason => Err(closed_with_error(code, reason, held.0.take())),
                };
            }
        }
    }
}

/// `klee build` through kleened: the context is a path on kleened's host.
pub async fn build(client: &Client, a: BuildArgs) -> Outcome {
    let c = &a.container;
    if c.network.is_none() && matches!(c.driver, Some(Driver::Ipnet | Driver::Vnet)) {
        return Err(Failure::usage(format!(
            "--driver {} needs a network: give one with --network",
            c.driver.unwrap_or_default()
        )));
    }
    if let Some(kv) = c.env.iter().find(|kv| !kv.contains('=')) {
        return Err(Failure::usage(format!("invalid --env {kv:?}: VAR=VALUE")));
    }
    let mut buildargs = BTreeMap::new();
    for kv in &a.build_arg {
        let (k, v) = match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            // docker's form: the value is taken from klee's environment.
            None => match std::env::var(kv) {
                Ok(v) => (kv.clone(), v),
                Err(_) => continue,
            },
        };
        if k.is_empty() {
            return Err(Failure::usage(format!(
                "invalid --build-arg {kv:?}: NAME=value"
            )));
        }
        buildargs.insert(k, v);
    }
    let context = std::path::absolute(&a.path)
        .map_err(|e| Failure::usage(format!("invalid build context {:?}: {e}", a.path)))?;
    let driver = c.driver.unwrap_or(if c.network.is_some() {
        Driver::Ipnet
    } else {
        Driver::Host
    });
    let config = ImageBuildConfig {
        buildargs,
        cleanup: a.rm,
        container_config: ContainerConfig {
            image: a.from.clone(),
            user: c.user.clone(),
            env: Some(c.env.clone()),
            mounts: Some(
                c.mount
                    .iter()
                    .map(|m| mount_config(m))
                    .collect::<Result<_, _>>()?,
            ),
            jail_param: Some(c.jailparam.iter().map(ToString::to_string).collect()),
            network_driver: Some(driver.to_string()),
            ..ContainerConfig::default()
        },
        context: context.display().to_string(),
        dockerfile: a.file.clone(),
        networks: c
            .network
            .iter()
            .map(|n| EndPointConfig {
                container: String::new(),
                network: n.clone(),
                ip_address: c.ip.map_or("<auto>".into(), |a| a.to_string()),
                ip_address6: c.ip6.map_or("<auto>".into(), |a| a.to_string()),
            })
            .collect(),
        quiet: a.quiet,
        tag: a.tag.clone().unwrap_or_default(),
        target: a.target.clone(),
        no_cache: a.no_cache,
    };
    let quiet = a.quiet;
    let mut ws = client.websocket("/images/build").await?;
    ws.send_config(&config).await?;
    let start = starting(&mut ws).await?;
    let image = start.data;
    if !image.is_empty() && !quiet {
        println!("Started to build image with ID {image}");
    }
    // Ctrl-C: closing the connection makes kleened stop the build (kept as
    // <name>:failed unless --rm).
    let interrupt = crate::signals::watch("build");
    // Before the build has an id, what comes may end in the reason of a refusal.
    let mut held = Held::default();
    loop {
        let frame = tokio::select! {
            f = ws.next() => f?,
            _ = interrupt.interrupted() => {
                let _ = ws.close().await;
                return Err(Failure::reported(crate::signals::ABORTED));
            }
        };
        match frame {
            Frame::Text(t) if quiet => held.0 = Some(t),
            // As klee: status lines come without their line end.
            Frame::Text(t)
                if !image.is_empty()
                    && (t.contains("--> Snapshot created: @")
                        || (t.contains("Step ") && t.contains(" : "))
                        || t.contains("Using user-supplied parent image:")) =>
            {
                held.release();
                write_out(format!("{t}\n").as_bytes());
            }
            Frame::Text(t) => held.text(t),
            Frame::Binary(_) => {}
            Frame::Closed { code, reason, .. } => {
                let reason = reason.unwrap_or_default();
                if code == 1000 && reason.msg_type == "closing" {
                    if !quiet {
                        held.release();
                        println!();
                        println!("{}", reason.message);
                    }
                    println!("{}", reason.data);
                    return Ok(0);
                }
                if image.is_empty() || reason.message != "image build failed" {
                    // Refused (a Dockerfile error, an unknown image): the reason is the
                    // last text.
                    return Err(closed_with_error(code, Some(reason), held.0.take()));
                }
                // The build's failure: its reason was the last text; klee adds the line
                // with the most recent snapshot.
                if let Some(t) = held.0.take() {
                    println!("{t}");
                }
                if reason.data.is_empty() {
                    println!("Failed to build image {image}.");
                } else {
                    println!(
                        "Failed to build image {image}. Most recent snapshot is {}",
                        reason.data
                    );
                }
                return Err(Failure::reported(FAILED));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_read_from_closing_messages() {
        let e = exit_of("executable 9e8d7c6b5a41 and its container exited with exit-code 7");
        assert_eq!((e.code, e.container_ended), (7, true));
        let e = exit_of("41d2c08e6f9a has exited with exit-code 0");
        assert_eq!((e.code, e.container_ended), (0, false));
    }

    #[test]
    fn mounts_are_kleeneds() {
        let m = mount_config("/srv:/data:ro").expect("a mount");
        assert_eq!(
            (m.kind.as_str(), m.source.as_str(), m.read_only),
            ("nullfs", "/srv", true)
        );
        let m = mount_config("vol:/app").expect("a mount");
        assert_eq!((m.kind.as_str(), m.source.as_str()), ("volume", "vol"));
    }
}
