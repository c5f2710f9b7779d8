//! kleene-core's model in the JSON shapes of kleened's OpenAPI schemas (`Container`,
//! `ContainerSummary`, `ContainerInspect`, `Image`, `Volume`, `VolumeInspect`, ...).
//! The mapping follows kleene-cli's kleened-shaped views.

use kleene_core::{Container, Endpoint, Image, MountSource, RunState, Volume};
use serde::Serialize;

/// Unix seconds as kleened writes times (Elixir's `DateTime.to_iso8601` of a UTC time):
/// `2024-02-26T08:52:13.000000Z`.
pub fn iso8601(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000000Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `PublishedPort`.
#[derive(Debug, Serialize)]
pub struct PublishedPortView {
    container_port: String,
    host_port: String,
    interfaces: Vec<String>,
    ip_address: String,
    ip_address6: String,
    protocol: String,
}

/// `Container`.
#[derive(Debug, Serialize)]
pub struct ContainerView {
    cmd: Vec<String>,
    created: String,
    dataset: String,
    env: Vec<String>,
    id: String,
    image_id: String,
    jail_param: Vec<String>,
    name: String,
    network_driver: String,
    persist: bool,
    public_ports: Vec<PublishedPortView>,
    restart_policy: String,
    running: bool,
    user: String,
}

/// `ContainerSummary`: a `Container` with its image's name and tag and its jail id.
#[derive(Debug, Serialize)]
pub struct ContainerSummary {
    #[serde(flatten)]
    container: ContainerView,
    image_name: String,
    image_tag: String,
    jid: Option<i32>,
}

/// `EndPoint`; `network_id` is the network's name, as kleened has it.
#[derive(Debug, Serialize)]
pub struct EndpointView {
    container_id: String,
    epair: Option<String>,
    id: String,
    ip_address: String,
    ip_address6: String,
    network_id: String,
}

/// `MountPoint`: `type` is `volume`, or `nullfs` for a directory of the host.
#[derive(Debug, Serialize)]
pub struct MountpointView {
    container_id: String,
    destination: String,
    read_only: bool,
    source: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// `ContainerInspect`.
#[derive(Debug, Serialize)]
pub struct ContainerInspect {
    container: ContainerView,
    container_endpoints: Vec<EndpointView>,
    container_mountpoints: Vec<MountpointView>,
}

/// `Image`.
#[derive(Debug, Serialize)]
pub struct ImageView {
    cmd: Vec<String>,
    created: String,
    dataset: String,
    env: Vec<String>,
    id: String,
    instructions: Vec<[String; 2]>,
    name: String,
    tag: String,
    user: String,
}

/// `Volume`.
#[derive(Debug, Serialize)]
pub struct VolumeView {
    created: String,
    dataset: String,
    mountpoint: String,
    name: String,
}

/// `VolumeInspect`.
#[derive(Debug, Serialize)]
pub struct VolumeInspect {
    mountpoints: Vec<MountpointView>,
    volume: VolumeView,
}

/// Kleened's user: root when none is set.
fn user_or_root(user: &str) -> String {
    if user.is_empty() {
        "root".into()
    } else {
        user.into()
    }
}

/// An endpoint. kleene-core has no endpoint ids, so `id` is empty; `epair` is kleened's
/// FreeBSD vnet pair, which kleene-core does not record.
pub fn endpoint_view(e: &Endpoint) -> EndpointView {
    EndpointView {
        container_id: e.container.to_string(),
        epair: None,
        id: String::new(),
        ip_address: e.ipv4.map(|a| a.to_string()).unwrap_or_default(),
        ip_address6: e.ipv6.map(|a| a.to_string()).unwrap_or_default(),
        network_id: e.network_name.clone(),
    }
}

/// The mounts of `c`.
pub fn mountpoint_views(c: &Container) -> Vec<MountpointView> {
    c.config
        .mounts
        .iter()
        .map(|m| {
            let (source, kind) = match &m.source {
                MountSource::Volume(name) => (name.clone(), "volume"),
                MountSource::HostPath(path) => (path.clone(), "nullfs"),
                _ => (String::new(), ""),
            };
            MountpointView {
                container_id: c.id.to_string(),
                destination: m.destination.clone(),
                read_only: m.read_only,
                source,
                kind,
            }
        })
        .collect()
}

/// Whether kleened counts `c` as running (a container starting is, as klee shows it).
pub fn is_running(c: &Container) -> bool {
    matches!(c.runtime.state, RunState::Running | RunState::Starting)
}

/// A container; its published ports name the address of its first endpoint that has
/// one, as kleened fills them in.
pub fn container_view(c: &Container, endpoints: &[Endpoint]) -> ContainerView {
    let ip4 = endpoints
        .iter()
        .find_map(|e| e.ipv4)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let ip6 = endpoints
        .iter()
        .find_map(|e| e.ipv6)
        .map(|a| a.to_string())
        .unwrap_or_default();
    ContainerView {
        cmd: c.config.cmd.clone(),
        created: iso8601(c.created),
        dataset: c.dataset.to_string(),
        env: c.config.env.clone(),
        id: c.id.to_string(),
        image_id: c.image_id.to_string(),
        jail_param: c.config.jail_params.iter().map(|p| p.to_string()).collect(),
        name: c.name.clone(),
        network_driver: c.config.network.to_string(),
        persist: c.config.persist,
        public_ports: c
            .config
            .publish
            .iter()
            .map(|p| PublishedPortView {
                container_port: p.container.to_string(),
                host_port: p.host.to_string(),
                interfaces: p.interface.iter().cloned().collect(),
                ip_address: ip4.clone(),
                ip_address6: ip6.clone(),
                protocol: p.protocol.to_string(),
            })
            .collect(),
        restart_policy: c.config.restart.to_string(),
        running: c.runtime.state == RunState::Running,
        user: user_or_root(&c.config.user),
    }
}

/// A container as `/containers/list` shows it; `image` is its image when it still
/// exists.
pub fn container_summary(c: &Container, image: Option<&Image>) -> ContainerSummary {
    ContainerSummary {
        container: container_view(c, &[]),
        image_name: image.map(|i| i.name.clone()).unwrap_or_default(),
        image_tag: image.map(|i| i.tag.clone()).unwrap_or_default(),
        jid: c
            .runtime
            .jid
            .filter(|_| c.runtime.state == RunState::Running),
    }
}

/// The container, its endpoints and its mounts.
pub fn container_inspect(c: &Container, endpoints: &[Endpoint]) -> ContainerInspect {
    ContainerInspect {
        container: container_view(c, endpoints),
        container_endpoints: endpoints.iter().map(endpoint_view).collect(),
        container_mountpoints: mountpoint_views(c),
    }
}

/// An image; `cmd` is what containers run (the entrypoint first), `instructions` each
/// step with its snapshot (empty for steps without one).
pub fn image_view(i: &Image) -> ImageView {
    let cfg = &i.config;
    ImageView {
        cmd: cfg.entrypoint.iter().chain(&cfg.cmd).cloned().collect(),
        created: iso8601(i.created),
        dataset: i.dataset.to_string(),
        env: cfg.env.clone(),
        id: i.id.to_string(),
        instructions: cfg
            .instructions
            .iter()
            .map(|s| [s.text.clone(), s.snapshot.clone().unwrap_or_default()])
            .collect(),
        name: i.name.clone(),
        tag: i.tag.clone(),
        user: user_or_root(&cfg.user),
    }
}

/// A volume.
pub fn volume_view(v: &Volume) -> VolumeView {
    VolumeView {
        created: iso8601(v.created),
        dataset: v.dataset.to_string(),
        mountpoint: v.mountpoint.display().to_string(),
        name: v.name.clone(),
    }
}

/// The volume and the mounts of it in `containers`.
pub fn volume_inspect(v: &Volume, containers: &[Container]) -> VolumeInspect {
    let mountpoints = containers
        .iter()
        .flat_map(mountpoint_views)
        .filter(|m| m.kind == "volume" && m.source == v.name)
        .collect();
    VolumeInspect {
        mountpoints,
        volume: volume_view(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_like_kleened() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(iso8601(1_708_937_533), "2024-02-26T08:52:13.000000Z");
    }
}
