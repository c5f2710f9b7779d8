//! The JSON shapes of kleened's OpenAPI schemas, for both ends: kleened writes them,
//! clients read them. Field order is the order kleened writes fields in (sorted, as
//! Elixir's Jason encodes maps). Reading is lenient: an absent field, and a `null` where
//! the schema allows one, read as the field's default.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Reads `null` as the type's default (for the fields the schema marks `nullable`).
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `PublishedPort`: a port of a container published on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishedPort {
    pub container_port: String,
    pub host_port: String,
    pub interfaces: Vec<String>,
    pub ip_address: String,
    pub ip_address6: String,
    pub protocol: String,
}

/// `Container`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Container {
    #[serde(deserialize_with = "null_default")]
    pub cmd: Vec<String>,
    pub created: String,
    pub dataset: String,
    #[serde(deserialize_with = "null_default")]
    pub env: Vec<String>,
    pub id: String,
    pub image_id: String,
    #[serde(deserialize_with = "null_default")]
    pub jail_param: Vec<String>,
    pub name: String,
    pub network_driver: String,
    #[serde(deserialize_with = "null_default")]
    pub persist: bool,
    #[serde(deserialize_with = "null_default")]
    pub public_ports: Vec<PublishedPort>,
    #[serde(deserialize_with = "null_default")]
    pub restart_policy: String,
    pub running: bool,
    #[serde(deserialize_with = "null_default")]
    pub user: String,
    /// Extension: its resource limits (absent when it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceLimits>,
    /// Extension: whether a process of it was killed for want of memory in its last run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
    /// Extension: its command's exit code, once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// Extension: a container's resource limits, as Docker names them (`None`: unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceLimits {
    /// Hard memory limit in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Memory plus swap in bytes; -1 unlimited swap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<i64>,
    /// CPUs in billionths (0.5 CPU is 500000000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<u64>,
    /// Relative CPU weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u64>,
    /// CPUs it may run on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes it may use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset_mems: Option<String>,
    /// Most processes at once; -1 unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
}

/// Extension: `GET /containers/{id}/stats`, a running container's use of resources, read
/// from its resource group (a cgroup on Linux, RCTL on FreeBSD).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerStats {
    /// The container's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When the figures were read (Unix time in milliseconds).
    pub read_ms: i64,
    /// CPU time used since it started, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, in bytes.
    pub memory_bytes: u64,
    /// Its memory limit in bytes (`null`: unlimited).
    pub memory_limit: Option<u64>,
    /// Processes (and threads).
    pub pids: u64,
    /// Its process limit (`null`: unlimited).
    pub pids_limit: Option<u64>,
    /// Processes killed for want of memory.
    pub oom_kills: u64,
    /// Forks refused at the process limit.
    pub pids_limit_hits: u64,
    /// Periods in which it ran out of CPU quota.
    pub cpu_throttled_periods: u64,
}

/// `ContainerSummary`: a `Container` with its image's name and tag and its jail id (an
/// item of `GET /containers/list`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSummary {
    #[serde(flatten)]
    pub container: Container,
    #[serde(default, deserialize_with = "null_default")]
    pub image_name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub image_tag: String,
    #[serde(default)]
    pub jid: Option<i64>,
}

/// `EndPoint`: a container's connection to a network; `network_id` is the network's
/// name, as kleened has it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndPoint {
    pub container_id: String,
    pub epair: Option<String>,
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub ip_address: String,
    #[serde(deserialize_with = "null_default")]
    pub ip_address6: String,
    pub network_id: String,
}

/// `MountPoint`: `type` is `volume`, or `nullfs` for a directory of the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MountPoint {
    pub container_id: String,
    pub destination: String,
    pub read_only: bool,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// `ContainerInspect`: `GET /containers/{id}/inspect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerInspect {
    pub container: Container,
    pub container_endpoints: Vec<EndPoint>,
    pub container_mountpoints: Vec<MountPoint>,
}

/// `Image`; `instructions` are the build's steps, each with its snapshot (`""` for a
/// step without one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Image {
    #[serde(deserialize_with = "null_default")]
    pub cmd: Vec<String>,
    pub created: String,
    pub dataset: String,
    #[serde(deserialize_with = "null_default")]
    pub env: Vec<String>,
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub instructions: Vec<[String; 2]>,
    pub name: String,
    pub tag: String,
    #[serde(deserialize_with = "null_default")]
    pub user: String,
}

/// `Volume`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Volume {
    pub created: String,
    pub dataset: String,
    pub mountpoint: String,
    pub name: String,
}

/// `VolumeInspect`: `GET /volumes/{name}/inspect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeInspect {
    pub mountpoints: Vec<MountPoint>,
    pub volume: Volume,
}

/// `Network`: gateways `<auto>`, `""` or an address, `nat` `<host-gateway>`, `""` or an
/// interface, absent subnets `""`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Network {
    #[serde(deserialize_with = "null_default")]
    pub gateway: String,
    #[serde(deserialize_with = "null_default")]
    pub gateway6: String,
    pub icc: bool,
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub interface: String,
    pub internal: bool,
    pub name: String,
    #[serde(deserialize_with = "null_default")]
    pub nat: String,
    #[serde(deserialize_with = "null_default")]
    pub subnet: String,
    #[serde(deserialize_with = "null_default")]
    pub subnet6: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// `NetworkInspect`: `GET /networks/{id}/inspect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkInspect {
    pub network: Network,
    pub network_endpoints: Vec<EndPoint>,
}

/// `IdResponse`: what most operations answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdResponse {
    pub id: String,
}

/// `ErrorResponse`: every error's body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub message: String,
}

/// `WebSocketMessage`: the first frame of a WebSocket endpoint's answer (`msg_type`
/// `starting`) and the reason of its close frame (`closing` or `error`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebSocketMessage {
    pub msg_type: String,
    #[serde(default, deserialize_with = "null_default")]
    pub message: String,
    #[serde(default, deserialize_with = "null_default")]
    pub data: String,
}

// ---- request bodies ----

/// `MountPointConfig`: a mount of `ContainerConfig`; `type` `volume` or `nullfs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MountPointConfig {
    pub destination: String,
    pub read_only: bool,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// `PublishedPortConfig`: a port to publish, as `ContainerConfig` has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishedPortConfig {
    pub container_port: String,
    pub host_port: String,
    pub interfaces: Vec<String>,
    pub protocol: String,
}

/// `ContainerConfig`: the body of `POST /containers/create` and
/// `POST /containers/{id}/update` (where `null` keeps what the container has), and the
/// build container of `ImageBuildConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerConfig {
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub image: Option<String>,
    pub jail_param: Option<Vec<String>>,
    pub mounts: Option<Vec<MountPointConfig>>,
    pub name: Option<String>,
    pub network_driver: Option<String>,
    pub persist: Option<bool>,
    pub public_ports: Option<Vec<PublishedPortConfig>>,
    pub restart_policy: Option<String>,
    pub user: Option<String>,
    /// Extension of this kleened (not in Kleene's schema, sent only when set): resource
    /// limits; on update, those given replace the container's (a running container takes
    /// them at once) and the others stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceLimits>,
}

/// `ExecConfig`: the body of `POST /exec/create`; an empty `cmd` runs the container's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecConfig {
    pub cmd: Vec<String>,
    pub container_id: String,
    pub env: Vec<String>,
    pub tty: bool,
    pub user: String,
}

/// `ExecStartConfig`: the first frame a client sends on `/exec/start`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStartConfig {
    pub attach: bool,
    pub exec_id: String,
    pub start_container: bool,
}

/// `ImageBuildConfig`: the first frame a client sends on `/images/build`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageBuildConfig {
    pub buildargs: BTreeMap<String, String>,
    pub cleanup: bool,
    pub container_config: ContainerConfig,
    pub context: String,
    pub dockerfile: String,
    pub networks: Vec<EndPointConfig>,
    pub quiet: bool,
    pub tag: String,
    /// An extension of this kleened (not in Kleene's schema, sent only when set): build
    /// this stage of a multi-stage Dockerfile (`klee build --target`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// An extension, sent only when set: run every step, the snapshot cache unused
    /// (`klee build --no-cache`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_cache: bool,
}

/// `ImageCreateConfig`: the first frame a client sends on `/images/create`; `method`
/// is `fetch`, `fetch-auto`, `zfs-copy` or `zfs-clone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageCreateConfig {
    pub autotag: bool,
    pub dns: bool,
    pub force: bool,
    pub localtime: bool,
    pub method: String,
    pub tag: String,
    pub update: bool,
    pub url: String,
    pub zfs_dataset: String,
    /// An extension of this kleened (not in Kleene's schema, sent only when set): the
    /// sha256 the fetched archive must have (`klee image create --sha256`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Default for ImageCreateConfig {
    /// The schema's defaults.
    fn default() -> Self {
        Self {
            autotag: false,
            dns: true,
            force: false,
            localtime: true,
            method: String::new(),
            tag: String::new(),
            update: true,
            url: String::new(),
            zfs_dataset: String::new(),
            sha256: None,
        }
    }
}

/// `NetworkConfig`: the body of `POST /networks/create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkConfig {
    pub gateway: String,
    pub gateway6: String,
    pub icc: bool,
    pub interface: String,
    pub internal: bool,
    pub name: String,
    pub nat: String,
    pub subnet: String,
    pub subnet6: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl Default for NetworkConfig {
    /// The schema's defaults.
    fn default() -> Self {
        Self {
            gateway: String::new(),
            gateway6: String::new(),
            icc: true,
            interface: String::new(),
            internal: false,
            name: String::new(),
            nat: "<host-gateway>".into(),
            subnet: String::new(),
            subnet6: String::new(),
            kind: String::new(),
        }
    }
}

/// `EndPointConfig`: the body of `POST /networks/connect`, and a network of
/// `ImageBuildConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndPointConfig {
    pub container: String,
    pub ip_address: String,
    pub ip_address6: String,
    pub network: String,
}

/// `VolumeConfig`: the body of `POST /volumes/create`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeConfig {
    pub name: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nulls_read_as_defaults() {
        let c: ContainerSummary = serde_json::from_str(
            r#"{"cmd":null,"id":"abc","persist":null,"restart_policy":null,
                "image_name":"x","jid":null,"running":true}"#,
        )
        .unwrap();
        assert_eq!(c.container.id, "abc");
        assert!(c.container.running);
        assert_eq!(c.image_name, "x");
        assert_eq!(c.jid, None);
        assert!(c.container.cmd.is_empty());
    }

    #[test]
    fn summaries_are_flat() {
        let s = ContainerSummary {
            jid: Some(3),
            ..ContainerSummary::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["jid"], 3);
        assert_eq!(v["running"], false);
        let back: ContainerSummary = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn limits_are_sent_only_when_set() {
        let plain = serde_json::to_value(ContainerConfig::default()).unwrap();
        assert!(plain.get("limits").is_none(), "{plain}");
        let with = ContainerConfig {
            limits: Some(ResourceLimits {
                pids: Some(10),
                ..ResourceLimits::default()
            }),
            ..ContainerConfig::default()
        };
        let v = serde_json::to_value(&with).unwrap();
        assert_eq!(v["limits"], serde_json::json!({"pids": 10}));
        let back: ContainerConfig = serde_json::from_value(v).unwrap();
        assert_eq!(back, with);
        let old: ContainerConfig = serde_json::from_str(r#"{"name":"x"}"#).unwrap();
        assert_eq!(old.limits, None);
    }

    #[test]
    fn stats_read_with_unlimited_as_null() {
        let s: ContainerStats = serde_json::from_str(
            r#"{"id":"abc123def456","name":"c","read_ms":1,"cpu_ns":2,"memory_bytes":3,
                "memory_limit":null,"pids":1,"pids_limit":10,"oom_kills":0,
                "pids_limit_hits":0,"cpu_throttled_periods":0}"#,
        )
        .unwrap();
        assert_eq!(s.memory_limit, None);
        assert_eq!(s.pids_limit, Some(10));
    }

    #[test]
    fn close_reasons_read() {
        let m: WebSocketMessage =
            serde_json::from_str(r#"{"msg_type":"closing","message":"done","data":"0"}"#).unwrap();
        assert_eq!(m.data, "0");
        let m: WebSocketMessage =
            serde_json::from_str(r#"{"msg_type":"error","message":"x"}"#).unwrap();
        assert_eq!(m.data, "");
    }
}
