//! Execution instances, as kleened has them: `POST /exec/create` makes one for a
//! container (a command, environment and user over the container's, and a tty or not),
//! the `/exec/start` WebSocket starts it — a process in the running container, or the
//! container itself when it is stopped and `start_container` is set — attached or
//! detached, and `POST /exec/{exec_id}/stop` stops it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use kleene_core::kleene_jail::{Signal, Stdio, WinSize};
use kleene_core::{Attach, ExecSpec, Id, RunState, StartOverrides};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::api::{bool_param, core_error, id, ApiError, AppState, IdResponse, JsonBody, Params};
use crate::api::{NOT_FOUND_FOR_ALL, STOP_TIMEOUT};
use crate::ws::{self, LooseBool, Utf8Chunker};

/// The size of an exec instance's terminal (the API gives none).
const TTY_SIZE: WinSize = WinSize { rows: 24, cols: 80 };

/// How long output still arriving after a process ended is waited for: processes it
/// left behind may hold its pipes open.
const OUTPUT_GRACE: Duration = Duration::from_millis(300);

/// The execution instances made by `POST /exec/create`, by id. An instance is forgotten
/// when its process ends.
#[derive(Debug, Clone, Default)]
pub struct Execs {
    instances: Arc<Mutex<HashMap<String, Arc<Instance>>>>,
}

impl Execs {
    fn get(&self, exec_id: &str) -> Option<Arc<Instance>> {
        self.lock().get(exec_id).cloned()
    }

    fn insert(&self, instance: Arc<Instance>) {
        self.lock().insert(instance.id.clone(), instance);
    }

    fn remove(&self, exec_id: &str) {
        self.lock().remove(exec_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Instance>>> {
        self.instances.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many instances exist (made and not ended).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `ExecConfig`.
#[derive(Debug, Deserialize)]
pub struct ExecConfigBody {
    container_id: String,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    tty: Option<bool>,
}

/// `ExecStartConfig`, the first frame of `/exec/start`.
#[derive(Debug, Deserialize)]
pub struct ExecStartConfig {
    exec_id: String,
    attach: LooseBool,
    start_container: LooseBool,
}

/// One execution instance.
#[derive(Debug)]
struct Instance {
    id: String,
    container: Id,
    cmd: Vec<String>,
    env: Vec<String>,
    user: String,
    tty: bool,
    state: Mutex<InstanceState>,
}

#[derive(Debug)]
enum InstanceState {
    Created,
    /// Started: how to stop it.
    Running(Running),
}

#[derive(Debug, Clone)]
enum Running {
    /// A process in the running container; orders go to the task that owns it.
    Process(mpsc::UnboundedSender<Signal>),
    /// The container itself.
    Container,
}

/// A started instance: how to stop it, its output and end, and where the client's input
/// goes (attached only).
#[derive(Debug)]
struct Launched {
    running: Running,
    out: mpsc::UnboundedReceiver<Out>,
    input: Option<mpsc::UnboundedSender<Vec<u8>>>,
}

/// What the task that owns a started instance sends to the WebSocket.
#[derive(Debug)]
enum Out {
    Text(String),
    End { code: i32, container_ended: bool },
    Failed(String),
}

/// The exec routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/exec/create", post(exec_create))
        .route("/exec/start", get(exec_start))
        .route("/exec/{exec_id}/stop", post(exec_stop))
}

async fn exec_create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ExecConfigBody>,
) -> Result<(StatusCode, Json<IdResponse>), ApiError> {
    let c = state
        .engine
        .container(&body.container_id)
        .await
        .map_err(|e| core_error(e, NOT_FOUND_FOR_ALL))?;
    if let Some(kv) = body.env.iter().flatten().find(|kv| !kv.contains('=')) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("invalid environment variable {kv:?}: VAR=VALUE"),
        ));
    }
    let exec_id = Id::generate()
        .map_err(|e| core_error(e, NOT_FOUND_FOR_ALL))?
        .to_string();
    state.execs.insert(Arc::new(Instance {
        id: exec_id.clone(),
        container: c.id,
        cmd: body.cmd.unwrap_or_default(),
        env: body.env.unwrap_or_default(),
        user: body.user.unwrap_or_default(),
        tty: body.tty.unwrap_or(false),
        state: Mutex::new(InstanceState::Created),
    }));
    log::debug!("created execution instance {exec_id}");
    Ok((StatusCode::CREATED, id(exec_id)))
}

async fn exec_stop(
    State(state): State<AppState>,
    Path(exec_id): Path<String>,
    axum::extract::Query(q): Params,
) -> Result<Json<IdResponse>, ApiError> {
    let force = bool_param(&q, "force_stop")?;
    let stop_container = bool_param(&q, "stop_container")?;
    let not_found = |message: String| ApiError::new(StatusCode::NOT_FOUND, message);
    let instance = state.execs.get(&exec_id).ok_or_else(|| {
        not_found(format!(
            "could not find execution instance matching '{exec_id}'"
        ))
    })?;
    let Some(running) = running_of(&instance) else {
        return Err(not_found("execution instance have not been started".into()));
    };
    let timeout = if force { Duration::ZERO } else { STOP_TIMEOUT };
    match running {
        Running::Process(orders) if !stop_container => {
            let signal = if force {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            };
            orders
                .send(signal)
                .map_err(|_| not_found("the process has already exited".into()))?;
        }
        _ => {
            state
                .engine
                .stop_container(instance.container.as_str(), timeout)
                .await
                .map_err(|e| core_error(e, NOT_FOUND_FOR_ALL))?;
        }
    }
    Ok(id(exec_id))
}

async fn exec_start(
    State(state): State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    ws::upgrade("/exec/start", upgrade, move |socket| {
        start_session(state, socket)
    })
}

async fn start_session(state: AppState, mut socket: WebSocket) {
    let mut guard = state.sessions.enter();
    let config: ExecStartConfig = match ws::read_config(&mut socket).await {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(close) => return ws::finish(socket, close).await,
    };
    let attach = config.attach.0;
    let started = start(&state, &config.exec_id, attach, config.start_container.0).await;
    let (instance, Launched { mut out, input, .. }) = match started {
        Ok(s) => s,
        Err(reason) => {
            log::debug!(
                "could not start execution instance {}: {reason}",
                config.exec_id
            );
            let _ = socket
                .send(Message::Text(format!("error: {reason}").into()))
                .await;
            let close = ws::close(
                ws::INTERNAL_ERROR,
                "error",
                "error starting exec instance",
                "",
            );
            return ws::finish(socket, close).await;
        }
    };
    if !attach {
        let close = ws::close(
            ws::GOING_AWAY,
            "closing",
            "succesfully started execution instance in detached mode",
            "",
        );
        return ws::finish(socket, close).await;
    }
    if socket.send(ws::starting("")).await.is_err() {
        return stop_abandoned(&state, &instance).await;
    }
    loop {
        tokio::select! {
            // The daemon stops: a process exec'd for this client is stopped, a container
            // runs on under its monitor.
            () = guard.stopping() => {
                if let Some(Running::Process(orders)) = running_of(&instance) {
                    let _ = orders.send(Signal::SIGTERM);
                }
                return ws::finish(socket, ws::shutting_down()).await;
            }
            frame = socket.recv() => match frame {
                Some(Ok(Message::Text(t))) => send_input(&input, t.as_bytes().to_vec()),
                Some(Ok(Message::Binary(b))) => send_input(&input, b.to_vec()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                // The client went away (or closed): kleened stops the instance.
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    log::debug!("the client of execution instance {} disconnected", instance.id);
                    return stop_abandoned(&state, &instance).await;
                }
            },
            item = out.recv() => match item {
                Some(Out::Text(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return stop_abandoned(&state, &instance).await;
                    }
                }
                Some(Out::End { code, container_ended }) => {
                    let message = if container_ended {
                        format!("executable {} and its container exited with exit-code {code}", instance.id)
                    } else {
                        format!("{} has exited with exit-code {code}", instance.id)
                    };
                    return ws::finish(socket, ws::close(ws::NORMAL, "closing", &message, "")).await;
                }
                Some(Out::Failed(reason)) => {
                    let _ = socket.send(Message::Text(format!("error: {reason}").into())).await;
                    let close = ws::close(ws::INTERNAL_ERROR, "error", &reason, "");
                    return ws::finish(socket, close).await;
                }
                None => {
                    let close = ws::close(ws::INTERNAL_ERROR, "error", "the execution instance ended without an exit code", "");
                    return ws::finish(socket, close).await;
                }
            },
        }
    }
}

fn send_input(input: &Option<mpsc::UnboundedSender<Vec<u8>>>, data: Vec<u8>) {
    if let Some(tx) = input {
        let _ = tx.send(data);
    }
}

/// How a started instance is stopped; `None` before it started.
fn running_of(instance: &Instance) -> Option<Running> {
    match &*instance.state.lock().unwrap_or_else(|p| p.into_inner()) {
        InstanceState::Running(r) => Some(r.clone()),
        InstanceState::Created => None,
    }
}

/// Stops an attached instance whose client went away, as kleened does: its process
/// (or its container) is stopped; the task that owns it reports its end to no one.
async fn stop_abandoned(state: &AppState, instance: &Instance) {
    match running_of(instance) {
        Some(Running::Process(orders)) => {
            let _ = orders.send(Signal::SIGTERM);
        }
        Some(Running::Container) => {
            let engine = state.engine.clone();
            let container = instance.container.clone();
            tokio::spawn(async move {
                match engine
                    .stop_container(container.as_str(), STOP_TIMEOUT)
                    .await
                {
                    Ok(_) | Err(kleene_core::CoreError::NotRunning { .. }) => {}
                    Err(e) => log::warn!("stopping container {container}: {e}"),
                }
            });
        }
        None => {}
    }
}

/// Starts an instance: a process in its container when that runs, else the container
/// itself when `start_container` is set. The channel carries its output and its end.
async fn start(
    state: &AppState,
    exec_id: &str,
    attach: bool,
    start_container: bool,
) -> Result<(Arc<Instance>, Launched), String> {
    let instance = state
        .execs
        .get(exec_id)
        .ok_or_else(|| format!("could not find execution instance matching '{exec_id}'"))?;
    {
        let mut s = instance.state.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*s, InstanceState::Running(_)) {
            return Err("executable already started".into());
        }
        // Taken: a second start is refused while this one proceeds.
        *s = InstanceState::Running(Running::Container);
    }
    let result = launch(state, &instance, attach, start_container).await;
    match result {
        Ok(launched) => {
            *instance.state.lock().unwrap_or_else(|p| p.into_inner()) =
                InstanceState::Running(launched.running.clone());
            Ok((instance, launched))
        }
        Err(e) => {
            *instance.state.lock().unwrap_or_else(|p| p.into_inner()) = InstanceState::Created;
            Err(e)
        }
    }
}

async fn launch(
    state: &AppState,
    instance: &Arc<Instance>,
    attach: bool,
    start_container: bool,
) -> Result<Launched, String> {
    let engine = &state.engine;
    let c = engine
        .container(instance.container.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::unbounded_channel();
    let running = matches!(c.runtime.state, RunState::Running | RunState::Starting);
    if running {
        let cmd = if instance.cmd.is_empty() {
            c.config.cmd.clone()
        } else {
            instance.cmd.clone()
        };
        let mut spec = ExecSpec::new(cmd);
        for kv in &instance.env {
            spec = spec.env(kv.clone());
        }
        if !instance.user.is_empty() {
            spec = spec.user(instance.user.clone());
        }
        if !attach {
            spec = spec.stdio(Stdio::Null, Stdio::Null, Stdio::Null);
        } else if instance.tty {
            spec = spec.tty(TTY_SIZE);
        } else {
            spec = spec.stdio(Stdio::Piped, Stdio::Piped, Stdio::Piped);
        }
        let process = engine
            .exec_container(c.id.as_str(), spec)
            .await
            .map_err(|e| e.to_string())?;
        let (orders_tx, orders_rx) = mpsc::unbounded_channel();
        let (input_tx, input_rx) = mpsc::unbounded_channel();
        tokio::spawn(drive_process(
            state.execs.clone(),
            Arc::clone(instance),
            process,
            orders_rx,
            input_rx,
            tx,
        ));
        return Ok(Launched {
            running: Running::Process(orders_tx),
            out: rx,
            input: attach.then_some(input_tx),
        });
    }
    if !start_container {
        return Err("cannot start container when 'start_container' is false.".into());
    }
    // As kleened: the instance's command, environment and user, over the container's,
    // for this run.
    let how = if attach {
        Attach::Piped
    } else {
        Attach::Detached
    };
    let mut overrides = StartOverrides::new()
        .cmd(instance.cmd.clone())
        .user(instance.user.clone());
    for kv in &instance.env {
        overrides = overrides.env(kv.clone());
    }
    let mut started = engine
        .start_container_with(c.id.as_str(), how, overrides)
        .await
        .map_err(|e| e.to_string())?;
    if !attach {
        state.execs.remove(&instance.id);
        return Ok(Launched {
            running: Running::Container,
            out: rx,
            input: None,
        });
    }
    let (input_tx, mut input_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    if let Some(mut stdin) = started.stdin.take() {
        tokio::spawn(async move {
            while let Some(data) = input_rx.recv().await {
                if stdin.write_all(&data).await.is_err() {
                    break;
                }
            }
        });
    }
    let readers = [
        started.stdout.take().map(|s| relay(s, tx.clone())),
        started.stderr.take().map(|s| relay(s, tx.clone())),
    ];
    let execs = state.execs.clone();
    let instance = Arc::clone(instance);
    tokio::spawn(async move {
        let end = started.wait().await;
        let grace = match &end {
            Ok(e) if e.container_ended => Duration::from_secs(2),
            _ => OUTPUT_GRACE,
        };
        for r in readers.into_iter().flatten() {
            let _ = tokio::time::timeout(grace, r).await;
        }
        execs.remove(&instance.id);
        let _ = tx.send(match end {
            Ok(e) => Out::End {
                code: e.code,
                container_ended: e.container_ended,
            },
            Err(e) => Out::Failed(e.to_string()),
        });
    });
    Ok(Launched {
        running: Running::Container,
        out: rx,
        input: Some(input_tx),
    })
}

/// Copies a stream's bytes, as text frames, to `tx` until it ends.
fn relay(
    mut from: impl AsyncRead + Unpin + Send + 'static,
    tx: mpsc::UnboundedSender<Out>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut chunker = Utf8Chunker::default();
        let mut buf = vec![0u8; 16 * 1024];
        // A terminal's master answers EIO once the process and its terminal are gone.
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let text = chunker.push(&buf[..n]);
            if !text.is_empty() && tx.send(Out::Text(text)).is_err() {
                return;
            }
        }
        let rest = chunker.finish();
        if !rest.is_empty() {
            let _ = tx.send(Out::Text(rest));
        }
    })
}

/// Owns a process started in a running container: feeds it input, passes on stop
/// orders, relays its output and reports its end.
async fn drive_process(
    execs: Execs,
    instance: Arc<Instance>,
    mut process: kleene_core::kleene_jail::Process,
    mut orders: mpsc::UnboundedReceiver<Signal>,
    mut input: mpsc::UnboundedReceiver<Vec<u8>>,
    tx: mpsc::UnboundedSender<Out>,
) {
    let mut readers = Vec::new();
    let mut writer: Option<Box<dyn tokio::io::AsyncWrite + Unpin + Send>> = None;
    if let Some(pty) = process.pty.take() {
        let (r, w) = tokio::io::split(pty);
        readers.push(relay(r, tx.clone()));
        writer = Some(Box::new(w));
    }
    if let Some(s) = process.stdout.take() {
        readers.push(relay(s, tx.clone()));
    }
    if let Some(s) = process.stderr.take() {
        readers.push(relay(s, tx.clone()));
    }
    if let Some(s) = process.stdin.take() {
        writer = Some(Box::new(s));
    }
    let mut kill_at: Option<tokio::time::Instant> = None;
    let status = loop {
        let kill_timer = async {
            match kill_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = process.wait() => break status,
            Some(sig) = orders.recv() => {
                let _ = process.signal(sig);
                if sig != Signal::SIGKILL && kill_at.is_none() {
                    kill_at = Some(tokio::time::Instant::now() + STOP_TIMEOUT);
                }
            }
            data = input.recv(), if writer.is_some() => match data {
                Some(data) => {
                    let failed = match writer.as_mut() {
                        Some(w) => w.write_all(&data).await.is_err(),
                        None => true,
                    };
                    if failed {
                        writer = None;
                    }
                }
                None => writer = None,
            },
            () = kill_timer => {
                let _ = process.signal(Signal::SIGKILL);
                kill_at = None;
            }
        }
    };
    drop(writer);
    for r in readers {
        let _ = tokio::time::timeout(OUTPUT_GRACE, r).await;
    }
    execs.remove(&instance.id);
    let _ = tx.send(match status {
        Ok(s) => Out::End {
            code: s.shell_code(),
            container_ended: false,
        },
        Err(e) => Out::Failed(e.to_string()),
    });
}
