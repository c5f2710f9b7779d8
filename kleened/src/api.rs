//! The REST endpoints of kleened's OpenAPI file that this version serves, over an
//! [`Engine`]. Everything else is answered as kleened answers a request it has no route
//! for: `404` with the plain text `not found`.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use kleene_api::ResourceLimits;
use kleene_core::{
    check_volume_name, ContainerUpdate, CoreError, CreateContainer, Driver, Engine, JailParamText,
    Limits, MountSource, MountSpec, PublishedPort, RestartPolicy,
};
use serde::{Deserialize, Serialize};

use crate::views;

/// How long `POST /containers/{id}/stop` gives a container's processes after its
/// `exec.stop` and stop signal before they are killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// An error answer: a status and kleened's `{"message": ...}` body.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The text of the `message` field.
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

#[derive(Serialize)]
struct ErrorResponse<'a> {
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            log::error!("answering {}: {}", self.status, self.message);
        } else {
            log::debug!("answering {}: {}", self.status, self.message);
        }
        (
            self.status,
            Json(ErrorResponse {
                message: &self.message,
            }),
        )
            .into_response()
    }
}

/// What an endpoint answers for kleene-core's errors besides "not found" (always `404`)
/// and failures of the engine or host (always `500`): each endpoint uses the codes its
/// OpenAPI operation lists, as kleened does (where the operation lists no `409`, kleened
/// answers refusals with `404`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Codes {
    /// The object is in use, running, not running, or the name is taken.
    pub(crate) conflict: StatusCode,
    /// The request is invalid or not supported.
    pub(crate) invalid: StatusCode,
}

pub(crate) const NOT_FOUND_FOR_ALL: Codes = Codes {
    conflict: StatusCode::NOT_FOUND,
    invalid: StatusCode::NOT_FOUND,
};

pub(crate) fn core_error(e: CoreError, codes: Codes) -> ApiError {
    let status = match &e {
        CoreError::NotFound { .. } | CoreError::Ambiguous { .. } => StatusCode::NOT_FOUND,
        CoreError::AlreadyExists { .. }
        | CoreError::InUse { .. }
        | CoreError::Running { .. }
        | CoreError::NotRunning { .. } => codes.conflict,
        CoreError::InvalidInput(_)
        | CoreError::Unsupported(_)
        | CoreError::Oci(_)
        | CoreError::Layer { .. }
        | CoreError::NetworkSpec(_)
        | CoreError::Path(_)
        | CoreError::JailParam { .. }
        | CoreError::Signature { .. } => codes.invalid,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}

/// `text` with its first letter in lower case (axum's rejection texts begin with a
/// capital).
fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A JSON request body; a body that is not JSON is `400`, JSON of the wrong shape `422`
/// (as kleened's OpenApiSpex validation answers), a missing JSON content type `415`, a
/// body over [`MAX_BODY`] `413`, each with a `{"message": ...}` body.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(rejection) => {
                let status = match &rejection {
                    JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    JsonRejection::JsonSyntaxError(_) => StatusCode::BAD_REQUEST,
                    JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    // A body over the limit is 413, one that could not be read 400.
                    other => other.status(),
                };
                Err(ApiError::new(
                    status,
                    format!(
                        "invalid request body: {}",
                        lower_first(&rejection.body_text())
                    ),
                ))
            }
        }
    }
}

/// The largest request body taken (axum's default limit, said here): the API's bodies
/// are small configurations.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

pub(crate) type Params = Query<HashMap<String, String>>;

/// A boolean query parameter: `true` or `false`, `false` when absent.
pub(crate) fn bool_param(q: &HashMap<String, String>, name: &str) -> Result<bool, ApiError> {
    match q.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invalid query parameter {name}={other:?}: expected true or false"),
        )),
    }
}

/// `IdResponse`.
#[derive(Debug, Serialize)]
pub(crate) struct IdResponse {
    pub(crate) id: String,
}

pub(crate) fn id(id: impl ToString) -> Json<IdResponse> {
    Json(IdResponse { id: id.to_string() })
}

/// What every handler can reach: the engine, shared by all connections, and the
/// execution instances made by `POST /exec/create`.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Engine,
    /// The execution instances.
    pub execs: crate::exec::Execs,
    /// The WebSocket sessions in progress.
    pub sessions: crate::ws::Sessions,
}

impl axum::extract::FromRef<AppState> for Engine {
    fn from_ref(state: &AppState) -> Engine {
        state.engine.clone()
    }
}

/// The router of every endpoint this version serves, on `engine`.
pub fn router(engine: Engine) -> Router {
    app(engine).0
}

/// The router, and its WebSocket sessions, which [`crate::ws::Sessions::shutdown`] ends.
pub fn app(engine: Engine) -> (Router, crate::ws::Sessions) {
    let sessions = crate::ws::Sessions::default();
    let state = AppState {
        engine,
        execs: crate::exec::Execs::default(),
        sessions: sessions.clone(),
    };
    let router = Router::new()
        .merge(crate::networks::routes())
        .merge(crate::exec::routes())
        .merge(crate::image_ws::routes())
        // containers
        .route("/containers/list", get(container_list))
        .route("/containers/create", post(container_create))
        .route("/containers/prune", post(container_prune))
        .route("/containers/{container_id}", delete(container_remove))
        .route("/containers/{container_id}/inspect", get(container_inspect))
        .route("/containers/{container_id}/stop", post(container_stop))
        .route("/containers/{container_id}/update", post(container_update))
        // An extension of this kleened: a running container's use of resources.
        .route("/containers/{container_id}/stats", get(container_stats))
        // images
        .route("/images/list", get(image_list))
        .route("/images/prune", post(image_prune))
        .route("/images/{image_id}", delete(image_remove))
        .route("/images/{image_id}/inspect", get(image_inspect))
        .route("/images/{image_id}/tag", post(image_tag))
        // volumes
        .route("/volumes/list", get(volume_list))
        .route("/volumes/create", post(volume_create))
        .route("/volumes/prune", post(volume_prune))
        .route("/volumes/{volume_name}", delete(volume_remove))
        .route("/volumes/{volume_name}/inspect", get(volume_inspect))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state);
    (router, sessions)
}

/// What kleened answers a request it has no route for (its router's `match _`).
async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "not found")
}

async fn log_request(req: Request, next: axum::middleware::Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let response = next.run(req).await;
    log::debug!("{method} {path} -> {}", response.status());
    response
}

// ---- images ----

async fn image_list(State(engine): State<Engine>) -> Result<Json<Vec<views::ImageView>>, ApiError> {
    let images = engine
        .images()
        .await
        .map_err(|e| core_error(e, NOT_FOUND_FOR_ALL))?;
    Ok(Json(images.iter().map(views::image_view).collect()))
}

async fn image_inspect(
    State(engine): State<Engine>,
    Path(image_id): Path<String>,
) -> Result<Json<views::ImageView>, ApiError> {
    let image = engine
        .image(&image_id)
        .await
        .map_err(|e| core_error(e, NOT_FOUND_FOR_ALL))?;
    Ok(Json(views::image_view(&image)))
}

async fn image_remove(
    State(engine): State<Engine>,
    Path(image_id): Path<String>,
) -> Result<Json<IdResponse>, ApiError> {
    let removed = engine
        .remove_image(&image_id)
        .await
        .map_err(|e| core_error(e, NOT_FOUND_FOR_ALL))?;
    Ok(id(removed))
}

async fn image_prune(
    State(engine): State<Engine>,
    Query(q): Params,
) -> Result<Json<Vec<String>>, ApiError> {
    let all = bool_param(&q, "all")?;
    let removed = engine
        .prune_images(all)
        .await
        .map_err(|e| core_error(e, NOT_FOUND_FOR_ALL))?;
    Ok(Json(removed.iter().map(ToString::to_string).collect()))
}

async fn image_tag(
    State(engine): State<Engine>,
    Path(image_id): Path<String>,
    Query(q): Params,
) -> Result<Json<IdResponse>, ApiError> {
    let nametag = q.get("nametag").ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing query parameter nametag",
        )
    })?;
    let image = engine
        .tag_image(&image_id, nametag)
        .await
        .map_err(|e| core_error(e, NOT_FOUND_FOR_ALL))?;
    Ok(id(image.id))
}

// ---- containers ----

/// `network_driver`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum NetworkDriver {
    Ipnet,
    Host,
    Vnet,
    Disabled,
}

impl From<NetworkDriver> for Driver {
    fn from(d: NetworkDriver) -> Driver {
        match d {
            NetworkDriver::Ipnet => Driver::Ipnet,
            NetworkDriver::Host => Driver::Host,
            NetworkDriver::Vnet => Driver::Vnet,
            NetworkDriver::Disabled => Driver::Disabled,
        }
    }
}

/// `MountPointConfig.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum MountType {
    Volume,
    Nullfs,
}

/// `MountPointConfig`.
#[derive(Debug, Deserialize)]
pub(crate) struct MountPointConfig {
    #[serde(rename = "type", default)]
    kind: Option<MountType>,
    source: String,
    destination: String,
    #[serde(default)]
    read_only: bool,
}

/// `PublishedPortConfig`.
#[derive(Debug, Deserialize)]
pub(crate) struct PublishedPortConfig {
    #[serde(default)]
    interfaces: Vec<String>,
    host_port: String,
    container_port: String,
    #[serde(default)]
    protocol: Option<String>,
}

/// `ContainerConfig`: the body of create and update. Absent and `null` fields are
/// `None` (on update: left as they are).
#[derive(Debug, Deserialize)]
pub struct ContainerConfigBody {
    #[serde(default)]
    pub(crate) cmd: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) env: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) image: Option<String>,
    #[serde(default)]
    pub(crate) jail_param: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) mounts: Option<Vec<MountPointConfig>>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) network_driver: Option<NetworkDriver>,
    #[serde(default)]
    pub(crate) persist: Option<bool>,
    #[serde(default)]
    pub(crate) public_ports: Option<Vec<PublishedPortConfig>>,
    #[serde(default)]
    pub(crate) restart_policy: Option<RestartPolicy>,
    #[serde(default)]
    pub(crate) user: Option<String>,
    /// An extension of this kleened: resource limits (ignored by builds).
    #[serde(default)]
    pub(crate) limits: Option<ResourceLimits>,
}

pub(crate) fn invalid(message: String) -> CoreError {
    CoreError::InvalidInput(message)
}

pub(crate) fn mount_spec(m: MountPointConfig) -> Result<MountSpec, CoreError> {
    let kind = m.kind.unwrap_or(if m.source.starts_with('/') {
        MountType::Nullfs
    } else {
        MountType::Volume
    });
    if !m.destination.starts_with('/') {
        return Err(invalid(format!(
            "invalid mount destination {:?}: it must be an absolute path",
            m.destination
        )));
    }
    if m.destination.split('/').any(|c| c == "..") {
        return Err(invalid(format!(
            "invalid mount destination {:?}: it may not contain '..'",
            m.destination
        )));
    }
    let source = match kind {
        MountType::Volume => {
            check_volume_name(&m.source)?;
            MountSource::Volume(m.source)
        }
        MountType::Nullfs => {
            if !m.source.starts_with('/') {
                return Err(invalid(format!(
                    "invalid nullfs mount source {:?}: it must be an absolute path",
                    m.source
                )));
            }
            MountSource::HostPath(m.source)
        }
    };
    Ok(MountSpec {
        source,
        destination: m.destination,
        read_only: m.read_only,
    })
}

fn published_port(p: PublishedPortConfig) -> Result<PublishedPort, CoreError> {
    let interface = match p.interfaces.as_slice() {
        [] => String::new(),
        [one] => format!("{one}:"),
        more => {
            return Err(invalid(format!(
                "publishing a port on more than one interface ({}) is not supported: publish it once per interface",
                more.join(", ")
            )))
        }
    };
    let protocol = p.protocol.unwrap_or_else(|| "tcp".into());
    let text = format!("{interface}{}:{}/{protocol}", p.host_port, p.container_port);
    text.parse()
        .map_err(|e: kleene_core::kleene_net::Error| invalid(e.to_string()))
}

pub(crate) fn jail_params(params: Vec<String>) -> Result<Vec<JailParamText>, CoreError> {
    params.iter().map(|p| p.parse()).collect()
}

/// The limits of a create or update body: `None` for none (or an empty object); limits
/// no host takes are `400` with the reason, naming the limit (the limits are an extension
/// of this kleened, so not held to the codes of Kleene's operations).
pub(crate) fn body_limits(limits: Option<&ResourceLimits>) -> Result<Option<Limits>, ApiError> {
    let Some(limits) = limits.map(kleene_api::views::limits_of) else {
        return Ok(None);
    };
    if limits.is_empty() {
        return Ok(None);
    }
    limits.validate().map_err(invalid_limits)?;
    Ok(Some(limits))
}

fn invalid_limits(e: CoreError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
}

pub(crate) fn create_request(body: ContainerConfigBody) -> Result<CreateContainer, CoreError> {
    let image = body
        .image
        .filter(|i| !i.is_empty())
        .ok_or_else(|| invalid("no image given: the container configuration needs one".into()))?;
    let mut req = CreateContainer::new(image);
    if let Some(name) = body.name.filter(|n| !n.is_empty()) {
        req = req.name(name);
    }
    if let Some(cmd) = body.cmd {
        req = req.cmd(cmd);
    }
    for kv in body.env.unwrap_or_default() {
        req = req.env(kv);
    }
    if let Some(user) = body.user.filter(|u| !u.is_empty()) {
        req = req.user(user);
    }
    for m in body.mounts.unwrap_or_default() {
        req = req.mount(mount_spec(m)?);
    }
    if let Some(d) = body.network_driver {
        req = req.driver(d.into());
    }
    for p in body.public_ports.unwrap_or_default() {
        req = req.publish(published_port(p)?);
    }
    for p in jail_params(body.jail_param.unwrap_or_default())? {
        req = req.jail_param(p);
    }
    if let Some(persist) = body.persist {
        req = req.persist(persist);
    }
    if let Some(restart) = body.restart_policy {
        req = req.restart(restart);
    }
    // Checked by the handler first (`400`); here they are only carried.
    if let Some(limits) = body.limits.as_ref().map(kleene_api::views::limits_of) {
        if !limits.is_empty() {
            req = req.limits(limits);
        }
    }
    Ok(req)
}

async fn container_list(
    State(engine): State<Engine>,
    Query(q): Params,
) -> Result<Json<Vec<views::ContainerSummary>>, ApiError> {
    let all = bool_param(&q, "all")?;
    let err = |e| core_error(e, NOT_FOUND_FOR_ALL);
    let containers = engine.containers().await.map_err(err)?;
    let images = engine.images().await.map_err(err)?;
    Ok(Json(
        containers
            .iter()
            .filter(|c| all || views::is_running(c))
            .map(|c| views::container_summary(c, images.iter().find(|i| i.id == c.image_id)))
            .collect(),
    ))
}

async fn container_create(
    State(engine): State<Engine>,
    JsonBody(body): JsonBody<ContainerConfigBody>,
) -> Result<(StatusCode, Json<IdResponse>), ApiError> {
    // Invalid limits are 400; kleened answers every other refusal of a create with 404.
    body_limits(body.limits.as_ref())?;
    let req = create_request(body).map_err(|e| core_error(e, NOT_FOUND_FOR_ALL))?;
    let c = engine
        .create_container(req)
        .await
        .map_err(|e| core_error(e, NOT_FOUND_FOR_ALL))?;
    Ok((StatusCode::CREATED, id(c.id)))
}

async fn container_prune(State(engine): State<Engine>) -> Result<Json<Vec<String>>, ApiError> {
    let removed = engine
        .prune_containers()
        .await
        .map_err(|e| core_error(e, NOT_FOUND_FOR_ALL))?;
    Ok(Json(removed.iter().map(ToString::to_string).collect()))
}

async fn container_remove(
    State(engine): State<Engine>,
    Path(container_id): Path<String>,
) -> Result<Json<IdResponse>, ApiError> {
    let removed = engine
        .remove_container(&container_id, false)
        .await
        .map_err(|e| {
            core_error(
                e,
                Codes {
                    conflict: StatusCode::CONFLICT,
                    invalid: StatusCode::NOT_FOUND,
                },
            )
        })?;
    Ok(id(removed))
}

async fn container_inspect(
    State(engine): State<Engine>,
    Path(container_id): Path<String>,
) -> Result<Json<views::ContainerInspect>, ApiError> {
    let err = |e| core_error(e, NOT_FOUND_FOR_ALL);
    let c = engine.container(&container_id).await.map_err(err)?;
    let endpoints = engine.endpoints(None, Some(&c.id)).await.map_err(err)?;
    Ok(Json(views::container_inspect(&c, &endpoints)))
}

async fn container_stop(
    State(engine): State<Engine>,
    Path(container_id): Path<String>,
) -> Result<Json<IdResponse>, ApiError> {
    // kleened answers a container that is not running with 404.
    let c = engine
        .stop_container(&container_id, STOP_TIMEOUT)
        .await
        .map_err(|e| core_error(e, NOT_FOUND_FOR_ALL))?;
    Ok(id(c.id))
}

fn update_request(body: ContainerConfigBody) -> Result<ContainerUpdate, CoreError> {
    // As kleened: `image`, `mounts`, `network_driver` and `public_ports` are ignored.
    let mut update = ContainerUpdate::new();
    if let Some(name) = body.name {
        update = update.name(name);
    }
    if let Some(user) = body.user {
        update = update.user(user);
    }
    if let Some(env) = body.env {
        update = update.env(env);
    }
    if let Some(params) = body.jail_param {
        update = update.jail_params(jail_params(params)?);
    }
    if let Some(persist) = body.persist {
        update = update.persist(persist);
    }
    if let Some(restart) = body.restart_policy {
        update = update.restart(restart);
    }
    if let Some(cmd) = body.cmd.filter(|c| !c.is_empty()) {
        update = update.cmd(cmd);
    }
    // Checked by the handler first (`400`); here they are only carried.
    if let Some(limits) = body.limits.as_ref().map(kleene_api::views::limits_of) {
        if !limits.is_empty() {
            update = update.limits(limits);
        }
    }
    Ok(update)
}

async fn container_update(
    State(engine): State<Engine>,
    Path(container_id): Path<String>,
    JsonBody(body): JsonBody<ContainerConfigBody>,
) -> Result<(StatusCode, Json<IdResponse>), ApiError> {
    let codes = Codes {
        conflict: StatusCode::CONFLICT,
        invalid: StatusCode::CONFLICT,
    };
    // Invalid limits are 400: those given, then the container's with them (a swap limit
    // below the memory limit it keeps, say).
    if let Some(limits) = body_limits(body.limits.as_ref())? {
        let c = engine
            .container(&container_id)
            .await
            .map_err(|e| core_error(e, codes))?;
        c.config
            .limits
            .merged(&limits)
            .validate()
            .map_err(invalid_limits)?;
    }
    let update = update_request(body).map_err(|e| core_error(e, codes))?;
    let c = engine
        .update_container(&container_id, update)
        .await
        .map_err(|e| core_error(e, codes))?;
    Ok((StatusCode::CREATED, id(c.id)))
}

/// An extension of this kleened: a running container's use of resources from its
/// resource group; `404` for an unknown container, `409` for one not running (or
/// without a group, on a host without cgroups).
async fn container_stats(
    State(engine): State<Engine>,
    Path(container_id): Path<String>,
) -> Result<Json<views::ContainerStatsView>, ApiError> {
    let codes = Codes {
        conflict: StatusCode::CONFLICT,
        invalid: StatusCode::CONFLICT,
    };
    let stats = engine
        .container_stats(&container_id)
        .await
        .map_err(|e| core_error(e, codes))?;
    Ok(Json(views::stats_view(&stats)))
}

// ---- volumes ----

/// `VolumeConfig`.
#[derive(Debug, Deserialize)]
pub struct VolumeConfig {
    name: String,
}

async fn volume_list(
    State(engine): State<Engine>,
) -> Result<Json<Vec<views::VolumeView>>, ApiError> {
    let volumes = engine
        .volumes()
        .await
        .map_err(|e| core_error(e, NOT_FOUND_FOR_ALL))?;
    Ok(Json(volumes.iter().map(views::volume_view).collect()))
}

async fn volume_create(
    State(engine): State<Engine>,
    JsonBody(body): JsonBody<VolumeConfig>,
) -> Result<(StatusCode, Json<IdResponse>), ApiError> {
    // The operation lists 201 and 500 only: an invalid name is a 500 with its message.
    // A volume that exists is answered as created, as kleened does.
    let codes = Codes {
        conflict: StatusCode::INTERNAL_SERVER_ERROR,
        invalid: StatusCode::INTERNAL_SERVER_ERROR,
    };
    match engine.create_volume(&body.name).await {
        Ok(v) => Ok((StatusCode::CREATED, id(v.name))),
        Err(CoreError::AlreadyExists { .. }) => Ok((StatusCode::CREATED, id(body.name))),
        Err(e) => Err(core_error(e, codes)),
    }
}

async fn volume_prune(State(engine): State<Engine>) -> Result<Json<Vec<String>>, ApiError> {
    let removed = engine
        .prune_volumes()
        .await
        .map_err(|e| core_error(e, NOT_FOUND_FOR_ALL))?;
    Ok(Json(removed))
}

async fn volume_remove(
    State(engine): State<Engine>,
    Path(volume_name): Path<String>,
) -> Result<Json<IdResponse>, ApiError> {
    engine
        .remove_volume(&volume_name)
        .await
        .map_err(|e| core_error(e, NOT_FOUND_FOR_ALL))?;
    Ok(id(volume_name))
}

async fn volume_inspect(
    State(engine): State<Engine>,
    Path(volume_name): Path<String>,
) -> Result<Json<views::VolumeInspect>, ApiError> {
    let err = |e| core_error(e, NOT_FOUND_FOR_ALL);
    let v = engine.volume(&volume_name).await.map_err(err)?;
    let containers = engine.containers().await.map_err(err)?;
    Ok(Json(views::volume_inspect(&v, &containers)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn body(json: &str) -> ContainerConfigBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn klees_create_body_maps_to_a_request() {
        let req = create_request(body(
            r#"{"name":"web","image":"bb:latest@abc","cmd":["/bin/sh"],"user":"",
               "env":["A=1"],"mounts":[{"type":"volume","source":"data","destination":"/data","read_only":true},
                                       {"type":"nullfs","source":"/srv","destination":"/srv"}],
               "jail_param":["allow.raw_sockets"],"persist":true,"restart_policy":"on-startup",
               "network_driver":"host","public_ports":[]}"#,
        ))
        .unwrap();
        assert_eq!(req.image, "bb:latest@abc");
        assert_eq!(req.name.as_deref(), Some("web"));
        assert_eq!(req.user, None);
        assert_eq!(req.mounts.len(), 2);
        assert_eq!(req.mounts[0].source, MountSource::Volume("data".into()));
        assert!(req.mounts[0].read_only);
        assert_eq!(req.mounts[1].source, MountSource::HostPath("/srv".into()));
        assert_eq!(req.driver, Some(Driver::Host));
        assert!(req.persist);
        assert_eq!(req.restart, RestartPolicy::OnStartup);
        assert_eq!(req.jail_params.len(), 1);
    }

    #[test]
    fn ports_and_bad_input() {
        let req = create_request(body(
            r#"{"image":"bb","network_driver":"ipnet","public_ports":[
                {"interfaces":["em0"],"host_port":"8080","container_port":"80","protocol":"udp"},
                {"interfaces":[],"host_port":"1000-1001","container_port":"2000-2001"}]}"#,
        ))
        .unwrap();
        assert_eq!(req.publish[0].to_string(), "em0:8080:80/udp");
        assert_eq!(req.publish[1].to_string(), "1000-1001:2000-2001/tcp");
        assert!(create_request(body(r#"{"cmd":["x"]}"#)).is_err());
        assert!(create_request(body(
            r#"{"image":"bb","mounts":[{"source":"data","destination":"rel"}]}"#
        ))
        .is_err());
        assert!(create_request(body(
            r#"{"image":"bb","mounts":[{"type":"nullfs","source":"rel","destination":"/x"}]}"#
        ))
        .is_err());
        assert!(create_request(body(
            r#"{"image":"bb","public_ports":[{"interfaces":["a","b"],"host_port":"1","container_port":"1"}]}"#
        ))
        .is_err());
        assert!(serde_json::from_str::<ContainerConfigBody>(r#"{"network_driver":"x"}"#).is_err());
    }

    #[test]
    fn update_keeps_what_is_null() {
        let u = update_request(body(r#"{"name":"new","user":null,"env":[],"cmd":null}"#)).unwrap();
        assert_eq!(u.name.as_deref(), Some("new"));
        assert_eq!(u.user, None);
        assert_eq!(u.env, Some(vec![]));
        assert_eq!(u.cmd, None);
        assert_eq!(u.persist, None);
    }

    #[test]
    fn limits_are_carried_and_bad_ones_are_400() {
        let b = body(r#"{"image":"bb","limits":{"memory":67108864,"pids":10}}"#);
        assert_eq!(
            body_limits(b.limits.as_ref()).unwrap(),
            Some(Limits::new().memory(64 << 20).pids(10))
        );
        let req = create_request(b).unwrap();
        assert_eq!(req.limits, Limits::new().memory(64 << 20).pids(10));
        let u = update_request(body(r#"{"limits":{"pids":20}}"#)).unwrap();
        assert_eq!(u.limits, Some(Limits::new().pids(20)));
        // Absent, null and empty limits change nothing.
        for json in [r#"{}"#, r#"{"limits":null}"#, r#"{"limits":{}}"#] {
            let b = body(json);
            assert_eq!(body_limits(b.limits.as_ref()).unwrap(), None, "{json}");
            assert_eq!(update_request(b).unwrap().limits, None, "{json}");
        }
        let e = body_limits(body(r#"{"limits":{"memory":1024}}"#).limits.as_ref())
            .expect_err("too little memory");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("memory limit"), "{}", e.message);
        let e =
            body_limits(body(r#"{"limits":{"nano_cpus":0}}"#).limits.as_ref()).expect_err("no cpu");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        // The wrong shape is 422, as every body of the wrong shape.
        assert!(
            serde_json::from_str::<ContainerConfigBody>(r#"{"limits":{"memory":"1g"}}"#).is_err()
        );
    }

    #[test]
    fn errors_get_the_operations_codes() {
        let nf = CoreError::NotFound {
            kind: kleene_core::Object::Image,
            reference: "x".into(),
        };
        assert_eq!(
            core_error(nf, NOT_FOUND_FOR_ALL).status,
            StatusCode::NOT_FOUND
        );
        let running = CoreError::Running {
            name: "c".into(),
            force_helps: false,
        };
        let e = core_error(
            running,
            Codes {
                conflict: StatusCode::CONFLICT,
                invalid: StatusCode::NOT_FOUND,
            },
        );
        assert_eq!(e.status, StatusCode::CONFLICT);
        let e = core_error(CoreError::Internal("x".into()), NOT_FOUND_FOR_ALL);
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(lower_first("Failed to parse"), "failed to parse");
    }
}
