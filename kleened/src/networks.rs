//! The network endpoints of kleened's OpenAPI file, over kleene-core's networks, with
//! the status codes kleened's `lib/api/network.ex` answers.

use std::net::{Ipv4Addr, Ipv6Addr};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use kleene_core::{Addresses, CoreError, Engine, Gateway, Nat, NetworkSpec, NetworkType};
use serde::Deserialize;

use crate::api::{core_error, id, invalid, AppState, Codes, IdResponse, JsonBody};
use crate::views;
use crate::ApiError;

/// The network routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/networks/create", post(network_create))
        .route("/networks/list", get(network_list))
        .route("/networks/prune", post(network_prune))
        .route("/networks/connect", post(network_connect))
        .route("/networks/{network_id}", delete(network_remove))
        .route("/networks/{network_id}/inspect", get(network_inspect))
        .route(
            "/networks/{network_id}/disconnect/{container_id}",
            post(network_disconnect),
        )
}

/// Every refusal is this code; failures of the engine or host stay `500`.
const fn all(code: StatusCode) -> Codes {
    Codes {
        conflict: code,
        invalid: code,
    }
}

fn host_gateway() -> String {
    "<host-gateway>".into()
}

fn yes() -> bool {
    true
}

/// `NetworkConfig`, the body of `POST /networks/create`: `name` and `type` are required
/// (missing, or an unknown type, is `422` as kleened's schema validation answers); the
/// rest has the schema's defaults.
#[derive(Debug, Deserialize)]
struct NetworkConfig {
    name: String,
    #[serde(rename = "type")]
    kind: NetworkType,
    #[serde(default)]
    interface: String,
    #[serde(default)]
    subnet: String,
    #[serde(default)]
    subnet6: String,
    #[serde(default)]
    gateway: String,
    #[serde(default)]
    gateway6: String,
    #[serde(default = "host_gateway")]
    nat: String,
    #[serde(default = "yes")]
    icc: bool,
    #[serde(default)]
    internal: bool,
}

fn parse_field<T: std::str::FromStr>(field: &str, text: &str) -> Result<T, CoreError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| invalid(format!("invalid {field} {text:?}: {e}")))
}

/// `""` is none.
fn optional<T: std::str::FromStr>(field: &str, text: &str) -> Result<Option<T>, CoreError>
where
    T::Err: std::fmt::Display,
{
    match text {
        "" => Ok(None),
        t => parse_field(field, t).map(Some),
    }
}

/// The engine's spec: `""` is "none" for the interface (a generated name), the subnets,
/// the gateways and NAT; `<auto>` and `<host-gateway>` are Kleene's words.
fn network_spec(c: NetworkConfig) -> Result<NetworkSpec, CoreError> {
    let mut s = NetworkSpec::new(c.name, c.kind);
    s.interface = Some(c.interface).filter(|i| !i.is_empty());
    s.subnet = optional::<ipnet::Ipv4Net>("subnet", &c.subnet)?;
    s.subnet6 = optional::<ipnet::Ipv6Net>("subnet6", &c.subnet6)?;
    s.gateway = parse_field::<Gateway>("gateway", &c.gateway)?;
    s.gateway6 = parse_field::<Gateway>("gateway6", &c.gateway6)?;
    s.nat = parse_field::<Nat>("nat", &c.nat)?;
    s.icc = c.icc;
    s.internal = c.internal;
    Ok(s)
}

/// `201 {"id"}`; every refusal (a taken name, an invalid or overlapping subnet, ...) is
/// `409`, as kleened answers.
async fn network_create(
    State(engine): State<Engine>,
    JsonBody(body): JsonBody<NetworkConfig>,
) -> Result<(StatusCode, Json<IdResponse>), ApiError> {
    let codes = all(StatusCode::CONFLICT);
    let spec = network_spec(body).map_err(|e| core_error(e, codes))?;
    let n = engine
        .create_network(spec)
        .await
        .map_err(|e| core_error(e, codes))?;
    Ok((StatusCode::CREATED, id(n.id)))
}

async fn network_list(
    State(engine): State<Engine>,
) -> Result<Json<Vec<views::NetworkView>>, ApiError> {
    let networks = engine
        .networks()
        .await
        .map_err(|e| core_error(e, all(StatusCode::INTERNAL_SERVER_ERROR)))?;
    Ok(Json(networks.iter().map(views::network_view).collect()))
}

/// `200` with the network and the endpoints of its containers, `404`.
async fn network_inspect(
    State(engine): State<Engine>,
    Path(network_id): Path<String>,
) -> Result<Json<views::NetworkInspect>, ApiError> {
    let err = |e| core_error(e, all(StatusCode::NOT_FOUND));
    let n = engine.network(&network_id).await.map_err(err)?;
    let mut endpoints = Vec::new();
    for e in engine.endpoints(Some(&n.id), None).await.map_err(err)? {
        // A container being made (or a build) has an endpoint but no ready row yet.
        match engine.container(e.container.as_str()).await {
            Ok(_) => endpoints.push(e),
            Err(CoreError::NotFound { .. }) => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(Json(views::network_inspect(&n, &endpoints)))
}

/// `200 {"id"}`; containers are disconnected first. Every refusal is `404`, as kleened
/// answers.
async fn network_remove(
    State(engine): State<Engine>,
    Path(network_id): Path<String>,
) -> Result<Json<IdResponse>, ApiError> {
    let removed = engine
        .remove_network(&network_id)
        .await
        .map_err(|e| core_error(e, all(StatusCode::NOT_FOUND)))?;
    Ok(id(removed))
}

/// `200 [ids]`: the networks no container is connected to.
async fn network_prune(State(engine): State<Engine>) -> Result<Json<Vec<String>>, ApiError> {
    let removed = engine
        .prune_networks()
        .await
        .map_err(|e| core_error(e, all(StatusCode::INTERNAL_SERVER_ERROR)))?;
    Ok(Json(removed.iter().map(ToString::to_string).collect()))
}

/// `EndPointConfig`, the body of `POST /networks/connect`.
#[derive(Debug, Deserialize)]
struct EndPointConfig {
    container: String,
    network: String,
    #[serde(default)]
    ip_address: String,
    #[serde(default)]
    ip_address6: String,
}

/// An address as klee sends it: `<auto>` (or `""`) is a free one of the subnet.
fn address<T: std::str::FromStr>(field: &str, text: &str) -> Result<Option<T>, CoreError>
where
    T::Err: std::fmt::Display,
{
    match text {
        "" | "<auto>" => Ok(None),
        t => parse_field(field, t).map(Some),
    }
}

/// `204`; an unknown network or container is `404`, every other refusal `409`, as
/// kleened answers.
async fn network_connect(
    State(engine): State<Engine>,
    JsonBody(body): JsonBody<EndPointConfig>,
) -> Result<StatusCode, ApiError> {
    let codes = all(StatusCode::CONFLICT);
    let want = address::<Ipv4Addr>("ip_address", &body.ip_address)
        .and_then(|v4| {
            Ok(Addresses::new(
                v4,
                address::<Ipv6Addr>("ip_address6", &body.ip_address6)?,
            ))
        })
        .map_err(|e| core_error(e, codes))?;
    engine
        .connect(&body.container, &body.network, want)
        .await
        .map_err(|e| core_error(e, codes))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `204`; an unknown network or container, or one not connected to the other, is `404`
/// (the code the operation lists and klee reads; kleened itself answers these `409`).
async fn network_disconnect(
    State(engine): State<Engine>,
    Path((network_id, container_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    engine
        .disconnect(&container_id, &network_id)
        .await
        .map_err(|e| core_error(e, all(StatusCode::NOT_FOUND)))?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(json: &str) -> NetworkConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn klees_create_body_maps_to_a_spec() {
        // What `klee network create --type bridge --subnet 10.13.37.0/24 net` sends.
        let s = network_spec(config(
            r#"{"name":"net","type":"bridge","interface":"","subnet":"10.13.37.0/24",
                "subnet6":"","gateway":"<auto>","gateway6":"<auto>","nat":"<host-gateway>",
                "icc":true,"internal":false}"#,
        ))
        .unwrap();
        assert_eq!(s.name, "net");
        assert_eq!(s.kind, NetworkType::Bridge);
        assert_eq!(s.interface, None);
        assert_eq!(s.subnet.unwrap().to_string(), "10.13.37.0/24");
        assert_eq!(s.subnet6, None);
        assert_eq!(s.gateway, Gateway::Auto);
        assert_eq!(s.nat, Nat::HostGateway);
        assert!(s.icc && !s.internal);
        // The schema's defaults; --no-nat, a named interface, an IPv6 subnet.
        let s = network_spec(config(
            r#"{"name":"n2","type":"loopback","interface":"lo7","subnet6":"fd00::/64","nat":"","icc":false}"#,
        ))
        .unwrap();
        assert_eq!(s.interface.as_deref(), Some("lo7"));
        assert_eq!(s.subnet6.unwrap().to_string(), "fd00::/64");
        assert_eq!((s.gateway, s.gateway6), (Gateway::None, Gateway::None));
        assert_eq!(s.nat, Nat::None);
        assert!(!s.icc);
        let s = network_spec(config(r#"{"name":"n3","type":"custom"}"#)).unwrap();
        assert_eq!(s.nat, Nat::HostGateway);
        assert!(s.icc);
    }

    #[test]
    fn bad_create_bodies() {
        let e = network_spec(config(
            r#"{"name":"n","type":"bridge","subnet":"10.1.2.0/33"}"#,
        ))
        .unwrap_err();
        assert!(e.to_string().contains("invalid subnet"), "{e}");
        let e = network_spec(config(
            r#"{"name":"n","type":"bridge","subnet":"fd00::/64"}"#,
        ))
        .unwrap_err();
        assert!(e.to_string().contains("invalid subnet"), "{e}");
        let e = network_spec(config(r#"{"name":"n","type":"bridge","gateway":"x"}"#)).unwrap_err();
        assert!(e.to_string().contains("invalid gateway"), "{e}");
        for bad in [
            r#"{"type":"bridge"}"#,
            r#"{"name":"n"}"#,
            r#"{"name":"n","type":"vlan"}"#,
            r#"{"name":"n","type":"bridge","icc":"yes"}"#,
        ] {
            assert!(serde_json::from_str::<NetworkConfig>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connect_addresses() {
        assert_eq!(address::<Ipv4Addr>("ip_address", "<auto>").unwrap(), None);
        assert_eq!(address::<Ipv4Addr>("ip_address", "").unwrap(), None);
        assert_eq!(
            address::<Ipv4Addr>("ip_address", "10.0.0.5").unwrap(),
            Some(Ipv4Addr::new(10, 0, 0, 5))
        );
        assert!(address::<Ipv4Addr>("ip_address", "10.0.0").is_err());
        assert!(serde_json::from_str::<EndPointConfig>(r#"{"network":"n"}"#).is_err());
    }
}
