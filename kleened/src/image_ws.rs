//! The image WebSockets: `/images/build` (a Dockerfile build, its transcript streamed)
//! and `/images/create` (a base image).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use kleene_core::kleene_zfs::DatasetName;
use kleene_core::{
    Addresses, BaseSource, BuildRequest, CoreError, CreateImage, Driver, Engine, Event, Events,
    Interrupt,
};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::api::{jail_params, mount_spec, AppState, ContainerConfigBody, NetworkDriver};
use crate::ws::{self, LooseBool, Sessions};
use kleene_api::transcript::{build_frame, create_intro, CreateLines};

/// The image WebSocket routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/images/build", get(image_build))
        .route("/images/create", get(image_create))
}

// ---- build ----

/// `EndPointConfig`.
#[derive(Debug, Deserialize)]
pub struct EndPointConfig {
    #[serde(default)]
    #[allow(dead_code)]
    container: Option<String>,
    network: String,
    #[serde(default)]
    ip_address: Option<String>,
    #[serde(default)]
    ip_address6: Option<String>,
}

/// `ImageBuildConfig`, the first frame of `/images/build`.
#[derive(Debug, Deserialize)]
pub struct ImageBuildConfig {
    context: String,
    #[serde(default)]
    dockerfile: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    quiet: Option<LooseBool>,
    #[serde(default)]
    cleanup: Option<LooseBool>,
    #[serde(default)]
    buildargs: Option<BTreeMap<String, String>>,
    container_config: ContainerConfigBody,
    #[serde(default)]
    networks: Option<Vec<EndPointConfig>>,
    /// An extension: the stage to build (`klee build --target`).
    #[serde(default)]
    target: Option<String>,
    /// An extension: every step run, the snapshot cache unused (`klee build --no-cache`).
    #[serde(default)]
    no_cache: Option<LooseBool>,
}

/// An address of an endpoint configuration: `<auto>` or empty is the first free one.
fn address<T: std::str::FromStr>(text: Option<&str>, what: &str) -> Result<Option<T>, String> {
    match text.map(str::trim) {
        None | Some("") | Some("<auto>") => Ok(None),
        Some(a) => a
            .parse()
            .map(Some)
            .map_err(|_| format!("invalid {what} {a:?}")),
    }
}

fn build_request(config: ImageBuildConfig) -> Result<BuildRequest, String> {
    let context = PathBuf::from(&config.context);
    if !context.is_absolute() {
        return Err(format!(
            "invalid build context {:?}: it must be an absolute path",
            config.context
        ));
    }
    let dockerfile = config.dockerfile.unwrap_or_else(|| "Dockerfile".into());
    let quiet = config.quiet.unwrap_or_default().0;
    let mut req = BuildRequest::new(&context)
        .dockerfile(context.join(dockerfile))
        .rm(config.cleanup.unwrap_or(LooseBool(true)).0)
        .quiet(quiet);
    if let Some(tag) = config.tag.filter(|t| !t.is_empty()) {
        req = req.tag(tag);
    }
    if let Some(target) = config.target.filter(|t| !t.is_empty()) {
        req = req.target(target);
    }
    req = req.no_cache(config.no_cache.unwrap_or_default().0);
    for (k, v) in config.buildargs.unwrap_or_default() {
        req = req.build_arg(k, v);
    }
    let cc = config.container_config;
    if let Some(image) = cc.image.filter(|i| !i.is_empty()) {
        req = req.from_image(image);
    }
    if let Some(user) = cc.user.filter(|u| !u.is_empty()) {
        req = req.user(user);
    }
    for kv in cc.env.unwrap_or_default() {
        if !kv.contains('=') {
            return Err(format!("invalid environment variable {kv:?}: VAR=VALUE"));
        }
        req = req.env(kv);
    }
    for m in cc.mounts.unwrap_or_default() {
        req = req.mount(mount_spec(m).map_err(|e| e.to_string())?);
    }
    for p in jail_params(cc.jail_param.unwrap_or_default()).map_err(|e| e.to_string())? {
        req = req.jail_param(p);
    }
    let networks = config.networks.unwrap_or_default();
    let driver = cc.network_driver.unwrap_or(NetworkDriver::Host);
    req = req.driver(match driver {
        NetworkDriver::Disabled => Driver::Disabled,
        _ => Driver::Host,
    });
    if networks.is_empty() && matches!(driver, NetworkDriver::Ipnet | NetworkDriver::Vnet) {
        return Err("the network drivers ipnet and vnet need a network to connect to".into());
    }
    for n in networks {
        let v4: Option<Ipv4Addr> = address(n.ip_address.as_deref(), "ip address")?;
        let v6: Option<Ipv6Addr> = address(n.ip_address6.as_deref(), "ipv6 address")?;
        req = req.network(n.network, Addresses::new(v4, v6));
    }
    Ok(req)
}

async fn image_build(
    State(state): State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    ws::upgrade("/images/build", upgrade, move |socket| {
        build_session(state.engine, state.sessions, socket)
    })
}

async fn build_session(engine: Engine, sessions: Sessions, mut socket: WebSocket) {
    let mut guard = sessions.enter();
    let req = match ws::read_request(&mut socket, |c: ImageBuildConfig| build_request(c)).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(close) => return ws::finish(socket, close).await,
    };
    let interrupt = Interrupt::new();
    let req = req.interrupt(interrupt.clone());
    let (tx, mut events) = mpsc::unbounded_channel();
    let build = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.build(req, Events::channel(tx)).await })
    };
    // The transcript: the starting message (with the image id, once the build has one)
    // first, then the steps and their output.
    let mut started = false;
    let mut early: Vec<String> = Vec::new();
    let relayed = relay(
        &mut socket,
        &mut events,
        &interrupt,
        &mut guard,
        "a build",
        |event| {
            if let Event::BuildStarted { id } = &event {
                started = true;
                let mut frames = vec![ws::starting(id.as_str())];
                frames.extend(early.drain(..).map(|t| Message::Text(t.into())));
                return frames;
            }
            match build_frame(&event) {
                Some(text) if started => vec![Message::Text(text.into())],
                Some(text) => {
                    early.push(text);
                    Vec::new()
                }
                None => Vec::new(),
            }
        },
    )
    .await;
    let outcome = match build.await {
        Ok(o) => o,
        Err(e) => Err(CoreError::Internal(format!("the build task failed: {e}"))),
    };
    match relayed {
        Relayed::ClientGone => return,
        Relayed::Stopping => return ws::finish(socket, ws::shutting_down()).await,
        Relayed::Done => {}
    }
    let mut frames = Vec::new();
    if !started {
        frames.push(ws::starting(""));
        frames.extend(early.drain(..).map(|t| Message::Text(t.into())));
    }
    let close = match outcome {
        Ok(o) => ws::close(ws::NORMAL, "closing", "image created", o.image.id.as_str()),
        Err(CoreError::BuildFailed { snapshot, .. }) if started => ws::close(
            ws::INTERNAL_ERROR,
            "error",
            "image build failed",
            snapshot.as_deref().unwrap_or(""),
        ),
        Err(e) => {
            // Refused before it began (a Dockerfile error, an unknown image): the reason
            // as text, as kleened sends its parse errors.
            frames.push(Message::Text(e.to_string().into()));
            ws::close(
                ws::INTERNAL_ERROR,
                "error",
                "failed to process Dockerfile",
                "",
            )
        }
    };
    for f in frames {
        if socket.send(f).await.is_err() {
            return;
        }
    }
    ws::finish(socket, close).await;
}

/// How the relay of an operation's events ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relayed {
    /// The operation ended with the client there.
    Done,
    /// The client went away: the operation was interrupted (as Ctrl-C does in klee).
    ClientGone,
    /// The daemon is stopping: the operation was interrupted.
    Stopping,
}

/// Sends the frames `frames` makes of each event of an operation until its events end;
/// a client that goes away, or the daemon's stop, interrupts the operation (whose end is
/// still awaited: the events end when it does).
async fn relay(
    socket: &mut WebSocket,
    events: &mut mpsc::UnboundedReceiver<Event>,
    interrupt: &Interrupt,
    guard: &mut ws::SessionGuard,
    what: &str,
    mut frames: impl FnMut(Event) -> Vec<Message>,
) -> Relayed {
    let mut outcome = Relayed::Done;
    loop {
        tokio::select! {
            // The daemon stops: the operation is interrupted (a build kept as
            // <name>:failed, a partial base image removed) and its end awaited.
            () = guard.stopping(), if outcome == Relayed::Done => {
                outcome = Relayed::Stopping;
                interrupt.interrupt();
            }
            event = events.recv() => {
                let Some(event) = event else { return outcome };
                let batch = frames(event);
                if outcome != Relayed::Done {
                    continue;
                }
                for frame in batch {
                    if socket.send(frame).await.is_err() {
                        outcome = Relayed::ClientGone;
                        interrupt.interrupt();
                        break;
                    }
                }
            }
            frame = socket.recv(), if outcome == Relayed::Done => match frame {
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    // As Ctrl-C in klee: a build is kept as <name>:failed unless cleanup
                    // was asked; a partial base image is removed.
                    log::info!("the client of {what} disconnected; stopping it");
                    outcome = Relayed::ClientGone;
                    interrupt.interrupt();
                }
                // No input is taken.
                Some(Ok(_)) => {}
            },
        }
    }
}

// ---- base images ----

/// `ImageCreateConfig.method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Method {
    Fetch,
    FetchAuto,
    ZfsCopy,
    ZfsClone,
}

/// `ImageCreateConfig`, the first frame of `/images/create`.
#[derive(Debug, Deserialize)]
pub struct ImageCreateConfig {
    method: Method,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    zfs_dataset: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    dns: Option<LooseBool>,
    #[serde(default)]
    localtime: Option<LooseBool>,
    #[serde(default)]
    update: Option<LooseBool>,
    #[serde(default)]
    autotag: Option<LooseBool>,
    /// An extension: the sha256 the fetched archive must have.
    #[serde(default)]
    sha256: Option<String>,
}

fn create_request(config: ImageCreateConfig) -> Result<CreateImage, String> {
    let dataset = |name: Option<String>| {
        let name = name.unwrap_or_default();
        DatasetName::new(name.as_str()).map_err(|e| format!("invalid dataset {name:?}: {e}"))
    };
    let source = match config.method {
        Method::Fetch => BaseSource::Fetch {
            url: config
                .url
                .filter(|u| !u.is_empty())
                .ok_or("the fetch method needs a url")?,
            sha256: config.sha256.filter(|s| !s.is_empty()),
        },
        Method::FetchAuto => BaseSource::FetchAuto,
        Method::ZfsCopy => BaseSource::ZfsCopy(dataset(config.zfs_dataset)?),
        Method::ZfsClone => BaseSource::ZfsClone(dataset(config.zfs_dataset)?),
    };
    // `update` defaults to true in the API, which only a FreeBSD host can honour; here
    // an absent value is false, an explicit true is refused by the engine.
    let update = config.update.map_or(cfg!(target_os = "freebsd"), |u| u.0);
    if update && !cfg!(target_os = "freebsd") {
        return Err(format!(
            "update runs freebsd-update(8) on the new image, which only a FreeBSD host has (this one runs {})",
            std::env::consts::OS
        ));
    }
    let mut req = CreateImage::new(source)
        .dns(config.dns.is_none_or(|b| b.0))
        .localtime(config.localtime.is_none_or(|b| b.0))
        .autotag(config.autotag.is_some_and(|b| b.0))
        .update(update);
    if let Some(tag) = config.tag.filter(|t| !t.is_empty()) {
        req = req.tag(tag);
    }
    Ok(req)
}

async fn image_create(
    State(state): State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    ws::upgrade("/images/create", upgrade, move |socket| {
        create_session(state.engine, state.sessions, socket)
    })
}

async fn create_session(engine: Engine, sessions: Sessions, mut socket: WebSocket) {
    let mut guard = sessions.enter();
    let req = match ws::read_request(&mut socket, |c: ImageCreateConfig| create_request(c)).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(close) => return ws::finish(socket, close).await,
    };
    if socket.send(ws::starting("")).await.is_err() {
        return;
    }
    if let Some(line) = create_intro(&req.source) {
        if socket
            .send(Message::Text(format!("{line}\n").into()))
            .await
            .is_err()
        {
            return;
        }
    }
    let interrupt = Interrupt::new();
    let req = req.interrupt(interrupt.clone());
    let (tx, mut events) = mpsc::unbounded_channel();
    let create = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.create_base_image(req, Events::channel(tx)).await })
    };
    let mut transcript = CreateLines::default();
    let relayed = relay(
        &mut socket,
        &mut events,
        &interrupt,
        &mut guard,
        "an image creation",
        |event| {
            transcript
                .event(&event)
                .into_iter()
                .map(|line| Message::Text(format!("{line}\n").into()))
                .collect()
        },
    )
    .await;
    let outcome = match create.await {
        Ok(o) => o,
        Err(e) => Err(CoreError::Internal(format!(
            "the image creation task failed: {e}"
        ))),
    };
    match relayed {
        Relayed::ClientGone => return,
        Relayed::Stopping => return ws::finish(socket, ws::shutting_down()).await,
        Relayed::Done => {}
    }
    for line in transcript.finish() {
        if socket
            .send(Message::Text(format!("{line}\n").into()))
            .await
            .is_err()
        {
            return;
        }
    }
    let close = match outcome {
        Ok(image) => ws::close(ws::NORMAL, "closing", "image created", image.id.as_str()),
        Err(e) => {
            let reason = e.to_string();
            let _ = socket.send(Message::Text(reason.clone().into())).await;
            ws::close(
                ws::INTERNAL_ERROR,
                "error",
                &format!("image creation failed: {reason}"),
                "",
            )
        }
    };
    ws::finish(socket, close).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn build_config(json: &str) -> ImageBuildConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn klees_build_config_maps_to_a_request() {
        // What the PyPI klee sends for `klee build -t web:1 --build-arg A=1 -n net .`.
        let req = build_request(build_config(
            r#"{"context":"/src","dockerfile":"Dockerfile","tag":"web:1","quiet":"false",
                "cleanup":true,"buildargs":{"A":"1"},
                "container_config":{"name":null,"cmd":null,"image":null,"user":"","env":[],
                                    "mounts":[],"jail_param":[],"network_driver":"ipnet"},
                "networks":[{"container":"","network":"net","ip_address":"<auto>","ip_address6":"<auto>"}]}"#,
        ))
        .unwrap();
        assert_eq!(req.tag.as_deref(), Some("web:1"));
        assert_eq!(
            req.dockerfile.as_deref(),
            Some(std::path::Path::new("/src/Dockerfile"))
        );
        assert_eq!(req.build_args, vec![("A".to_string(), "1".to_string())]);
        assert!(!req.quiet);
        assert!(req.rm);
        assert_eq!(req.networks.len(), 1);
        assert_eq!(req.networks[0].1, Addresses::default());

        assert!(build_request(build_config(r#"{"context":"rel","container_config":{}}"#)).is_err());
        assert!(build_request(build_config(
            r#"{"context":"/src","container_config":{"network_driver":"vnet"}}"#
        ))
        .is_err());
        assert!(build_request(build_config(
            r#"{"context":"/src","container_config":{},"networks":[{"network":"n","ip_address":"300.1.1.1"}]}"#
        ))
        .is_err());
    }

    #[test]
    fn create_configs() {
        let c: ImageCreateConfig = serde_json::from_str(
            r#"{"method":"fetch","url":"file:///b.tar","zfs_dataset":"","tag":"bb:1","dns":false,
               "localtime":true,"update":false,"autotag":false}"#,
        )
        .unwrap();
        let req = create_request(c).unwrap();
        assert_eq!(req.tag.as_deref(), Some("bb:1"));
        assert!(!req.dns);
        let c: ImageCreateConfig =
            serde_json::from_str(r#"{"method":"zfs-clone","zfs_dataset":"/bad//name"}"#).unwrap();
        assert!(create_request(c).is_err());
        assert!(serde_json::from_str::<ImageCreateConfig>(r#"{"method":"scp"}"#).is_err());
    }
}
