//! kleene-core's model in kleened's shapes: what kleened answers and what the embedded
//! `klee` prints are made here, once.

use kleene_core::{MountSource, RunState};

use crate::types::{
    Container, ContainerInspect, ContainerSummary, EndPoint, Image, MountPoint, Network,
    NetworkInspect, PublishedPort, Volume, VolumeInspect,
};

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

/// Unix seconds of a time as [`iso8601`] writes it (and of any RFC 3339 UTC time, with or
/// without fractions or a `Z`); `None` when it does not read as one.
pub fn parse_iso8601(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = text.get(from..from + len)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
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
pub fn endpoint_view(e: &kleene_core::Endpoint) -> EndPoint {
    EndPoint {
        container_id: e.container.to_string(),
        epair: None,
        id: String::new(),
        ip_address: e.ipv4.map(|a| a.to_string()).unwrap_or_default(),
        ip_address6: e.ipv6.map(|a| a.to_string()).unwrap_or_default(),
        network_id: e.network_name.clone(),
    }
}

/// The mounts of `c`.
pub fn mountpoint_views(c: &kleene_core::Container) -> Vec<MountPoint> {
    c.config
        .mounts
        .iter()
        .map(|m| {
            let (source, kind) = match &m.source {
                MountSource::Volume(name) => (name.clone(), "volume"),
                MountSource::HostPath(path) => (path.clone(), "nullfs"),
                _ => (String::new(), ""),
            };
            MountPoint {
                container_id: c.id.to_string(),
                destination: m.destination.clone(),
                read_only: m.read_only,
                source,
                kind: kind.into(),
            }
        })
        .collect()
}

/// Whether kleened counts `c` as running (a container starting is, as klee shows it).
pub fn is_running(c: &kleene_core::Container) -> bool {
    matches!(c.runtime.state, RunState::Running | RunState::Starting)
}

/// A container; its published ports name the address of its first endpoint that has
/// one, as kleened fills them in.
pub fn container_view(
    c: &kleene_core::Container,
    endpoints: &[kleene_core::Endpoint],
) -> Container {
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
    Container {
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
            .map(|p| PublishedPort {
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
        limits: (!c.config.limits.is_empty()).then(|| limits_view(&c.config.limits)),
        oom_killed: c.runtime.oom_killed,
        exit_code: c.runtime.exit_code,
    }
}

/// A container's limits in the API's shape.
pub fn limits_view(l: &kleene_core::Limits) -> crate::types::ResourceLimits {
    crate::types::ResourceLimits {
        memory: l.memory,
        memory_swap: l.memory_swap,
        nano_cpus: l.nano_cpus,
        cpu_shares: l.cpu_shares,
        cpuset_cpus: l.cpuset_cpus.clone(),
        cpuset_mems: l.cpuset_mems.clone(),
        pids: l.pids,
    }
}

/// The API's limits as kleene-core's.
pub fn limits_of(l: &crate::types::ResourceLimits) -> kleene_core::Limits {
    let mut out = kleene_core::Limits::new();
    out.memory = l.memory;
    out.memory_swap = l.memory_swap;
    out.nano_cpus = l.nano_cpus;
    out.cpu_shares = l.cpu_shares;
    out.cpuset_cpus = l.cpuset_cpus.clone();
    out.cpuset_mems = l.cpuset_mems.clone();
    out.pids = l.pids;
    out
}

/// A running container's use of resources in the API's shape
/// (`GET /containers/{id}/stats`).
pub fn stats_view(s: &kleene_core::ContainerStats) -> crate::types::ContainerStats {
    crate::types::ContainerStats {
        id: s.id.to_string(),
        name: s.name.clone(),
        read_ms: s.read_ms,
        cpu_ns: s.cpu_ns,
        memory_bytes: s.memory_bytes,
        memory_limit: s.memory_limit,
        pids: s.pids,
        pids_limit: s.pids_limit,
        oom_kills: s.oom_kills,
        pids_limit_hits: s.pids_limit_hits,
        cpu_throttled_periods: s.cpu_throttled_periods,
    }
}

/// The API's stats as kleene-core's (what a client of kleened got); fails for an `id`
/// that is not one of kleene-core's.
pub fn stats_of(
    s: &crate::types::ContainerStats,
) -> Result<kleene_core::ContainerStats, serde_json::Error> {
    // kleene-core's stats are non-exhaustive: they are made from the same JSON shape.
    serde_json::to_value(s).and_then(serde_json::from_value)
}

/// A container as `/containers/list` shows it; `image` is its image when it still
/// exists. `jid` is there while it runs.
pub fn container_summary(
    c: &kleene_core::Container,
    image: Option<&kleene_core::Image>,
) -> ContainerSummary {
    ContainerSummary {
        container: container_view(c, &[]),
        image_name: image.map(|i| i.name.clone()).unwrap_or_default(),
        image_tag: image.map(|i| i.tag.clone()).unwrap_or_default(),
        jid: c
            .runtime
            .jid
            .filter(|_| c.runtime.state == RunState::Running)
            .map(i64::from),
    }
}

/// The container, its endpoints and its mounts.
pub fn container_inspect(
    c: &kleene_core::Container,
    endpoints: &[kleene_core::Endpoint],
) -> ContainerInspect {
    ContainerInspect {
        container: container_view(c, endpoints),
        container_endpoints: endpoints.iter().map(endpoint_view).collect(),
        container_mountpoints: mountpoint_views(c),
    }
}

/// An image; `cmd` is what containers run (the entrypoint first), `instructions` each
/// step with its snapshot (empty for steps without one).
pub fn image_view(i: &kleene_core::Image) -> Image {
    let cfg = &i.config;
    Image {
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
pub fn volume_view(v: &kleene_core::Volume) -> Volume {
    Volume {
        created: iso8601(v.created),
        dataset: v.dataset.to_string(),
        mountpoint: v.mountpoint.display().to_string(),
        name: v.name.clone(),
    }
}

/// The volume and the mounts of it in `containers`.
pub fn volume_inspect(
    v: &kleene_core::Volume,
    containers: &[kleene_core::Container],
) -> VolumeInspect {
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

/// A network: gateways `<auto>`, `""` or an address, `nat` `<host-gateway>`, `""` or an
/// interface, absent subnets `""`.
pub fn network_view(n: &kleene_core::Network) -> Network {
    let s = &n.spec;
    Network {
        gateway: s.gateway.to_string(),
        gateway6: s.gateway6.to_string(),
        icc: s.icc,
        id: n.id.to_string(),
        interface: n.interface().to_string(),
        internal: s.internal,
        name: n.name.clone(),
        nat: s.nat.to_string(),
        subnet: s.subnet.map(|x| x.to_string()).unwrap_or_default(),
        subnet6: s.subnet6.map(|x| x.to_string()).unwrap_or_default(),
        kind: s.kind.to_string(),
    }
}

/// The network and its endpoints.
pub fn network_inspect(
    n: &kleene_core::Network,
    endpoints: &[kleene_core::Endpoint],
) -> NetworkInspect {
    NetworkInspect {
        network: network_view(n),
        network_endpoints: endpoints.iter().map(endpoint_view).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_like_kleened() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(iso8601(1_708_937_533), "2024-02-26T08:52:13.000000Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00.000000Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.000000Z");
        assert_eq!(iso8601(4_102_444_799), "2099-12-31T23:59:59.000000Z");
    }

    #[test]
    fn stats_go_and_come_back() {
        let api = crate::types::ContainerStats {
            id: "abc123def456".into(),
            name: "c".into(),
            read_ms: 5,
            cpu_ns: 7,
            memory_bytes: 4096,
            memory_limit: Some(64 << 20),
            pids: 2,
            pids_limit: None,
            oom_kills: 1,
            pids_limit_hits: 3,
            cpu_throttled_periods: 4,
        };
        let core = stats_of(&api).expect("a valid id");
        assert_eq!(core.id.as_str(), "abc123def456");
        assert_eq!(stats_view(&core), api);
        let bad = crate::types::ContainerStats {
            id: "not an id".into(),
            ..api
        };
        assert!(stats_of(&bad).is_err());
    }

    #[test]
    fn times_read_back() {
        for t in [0, 1_708_937_533, 951_782_400, -1, 4_102_444_799] {
            assert_eq!(parse_iso8601(&iso8601(t)), Some(t), "{t}");
        }
        assert_eq!(parse_iso8601("2024-02-26T08:52:13Z"), Some(1_708_937_533));
        assert_eq!(parse_iso8601("yesterday"), None);
        assert_eq!(parse_iso8601(""), None);
    }
}
