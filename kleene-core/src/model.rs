//! What the engine keeps: images, volumes (and containers), as the API returns them.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use kleene_jail::{JailParam, Signal};
use kleene_zfs::{DatasetName, SnapshotName};
use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::id::Id;

/// Serde as the type's text form: `Display` out, `FromStr` in (the error's text on failure).
macro_rules! serde_as_text {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A snapshot of an image, `<image id>@<snapshot>`: what an image was built on, what a
/// build resumes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageSnapshot {
    /// The image (or failed build) whose dataset has the snapshot.
    pub image: Id,
    /// The snapshot's name in that dataset: `image`, or a build step's 12-hex id.
    pub snapshot: String,
}

impl fmt::Display for ImageSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.image, self.snapshot)
    }
}

impl FromStr for ImageSnapshot {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        let (image, snapshot) = s.split_once('@').ok_or_else(|| {
            CoreError::InvalidInput(format!(
                "invalid image snapshot {s:?}: expected <image id>@<snapshot>"
            ))
        })?;
        if snapshot.is_empty() {
            return Err(CoreError::InvalidInput(format!(
                "invalid image snapshot {s:?}: the snapshot name is empty"
            )));
        }
        Ok(Self {
            image: image.parse()?,
            snapshot: snapshot.to_string(),
        })
    }
}

serde_as_text!(ImageSnapshot);

/// The signal that stops a container (`STOPSIGNAL`, `SIGTERM` unless the image says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StopSignal(pub Signal);

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal(Signal::SIGTERM)
    }
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl FromStr for StopSignal {
    type Err = CoreError;
    /// `SIGTERM`, `TERM`, `sigterm` or a number (`15`).
    fn from_str(s: &str) -> Result<Self, CoreError> {
        let bad = || {
            CoreError::InvalidInput(format!(
                "invalid stop signal {s:?}: expected a signal name like SIGTERM or a number"
            ))
        };
        if let Ok(n) = s.parse::<i32>() {
            return Signal::try_from(n).map(StopSignal).map_err(|_| bad());
        }
        let upper = s.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        name.parse::<Signal>().map(StopSignal).map_err(|_| bad())
    }
}

serde_as_text!(StopSignal);

/// A jail parameter (`klee -J`), checked when parsed; kept as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailParamText(JailParam);

impl JailParamText {
    /// The parameter.
    pub fn param(&self) -> &JailParam {
        &self.0
    }
}

impl fmt::Display for JailParamText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JailParamText {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        JailParam::parse(s)
            .map(JailParamText)
            .map_err(|source| CoreError::JailParam {
                text: s.to_string(),
                source,
            })
    }
}

impl From<JailParam> for JailParamText {
    fn from(p: JailParam) -> Self {
        JailParamText(p)
    }
}

serde_as_text!(JailParamText);

/// One instruction of an image's history and the snapshot taken after it, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instruction {
    /// The instruction as written (`RUN make install`), or how the image was made
    /// (`FROM file:///base.txz`).
    pub text: String,
    /// The snapshot after it, `@<12 hex>`, for RUN and COPY.
    pub snapshot: Option<String>,
}

/// What an image gives the containers made from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// The default command.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// The entrypoint, prepended to the command.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// `KEY=value` pairs.
    #[serde(default)]
    pub env: Vec<String>,
    /// The user processes run as; empty is root.
    #[serde(default)]
    pub user: String,
    /// The working directory; empty is `/`.
    #[serde(default)]
    pub workdir: String,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<(String, String)>,
    /// Exposed ports, as written.
    #[serde(default)]
    pub expose: Vec<String>,
    /// Volume mount points declared by the image.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// The signal that stops containers.
    #[serde(default)]
    pub stop_signal: Option<StopSignal>,
    /// How the image came to be, step by step.
    #[serde(default)]
    pub instructions: Vec<Instruction>,
    /// The OCI layers (chain ids, bottom first) the image's root sits on, for an image
    /// pulled or loaded from an OCI image, and for images built on one (they inherit it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    /// Where an image pulled or loaded from an OCI image came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<ImageOrigin>,
}

/// Where an OCI image came from: a registry reference or a layout, and its digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageOrigin {
    /// `registry/repository:tag`, or the layout's path (and name).
    pub reference: String,
    /// The digest of the manifest (of the platform's image).
    pub digest: String,
    /// The digest the reference named (an index's, for a multi-platform image).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub index_digest: String,
    /// `os/arch[/variant]`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub platform: String,
}

/// An image: a dataset and its `@image` snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Its id.
    pub id: Id,
    /// Its name; empty when untagged.
    pub name: String,
    /// Its tag; empty when untagged.
    pub tag: String,
    /// Unix time of creation, seconds.
    pub created: i64,
    /// The image (and snapshot) it was built on.
    pub parent: Option<ImageSnapshot>,
    /// Its dataset.
    pub dataset: DatasetName,
    /// What containers inherit.
    pub config: ImageConfig,
}

impl Image {
    /// `name:tag`, or the id when untagged.
    pub fn nametag(&self) -> String {
        if self.name.is_empty() {
            self.id.to_string()
        } else {
            format!("{}:{}", self.name, self.tag)
        }
    }
}

/// A volume: a dataset mounted into containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Its name.
    pub name: String,
    /// Its dataset.
    pub dataset: DatasetName,
    /// Where it is mounted on the host.
    pub mountpoint: PathBuf,
    /// Unix time of creation, seconds.
    pub created: i64,
}

/// Where a mount comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MountSource {
    /// A volume by name (made on first use).
    Volume(String),
    /// A directory of the host.
    HostPath(String),
}

/// A mount into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// A volume or a host directory.
    pub source: MountSource,
    /// The absolute path inside the container.
    pub destination: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// The reason of a configuration error, without kleene-jail's prefix.
fn jail_reason(e: kleene_jail::Error) -> String {
    match e {
        kleene_jail::Error::InvalidConfig(text) => text,
        other => other.to_string(),
    }
}

impl MountSpec {
    /// Refuses a destination nothing may be mounted at (`/proc`, `/sys` and below, as
    /// runc refuses them), however the mount was made.
    pub fn check(&self) -> crate::Result<()> {
        kleene_jail::check_bind_target(std::path::Path::new(&self.destination)).map_err(|e| {
            crate::CoreError::InvalidInput(format!(
                "invalid mount {}: {}",
                self.destination,
                jail_reason(e)
            ))
        })
    }

    /// Parses docker's `-v` form: `SOURCE:DEST[:ro|rw]`; a SOURCE beginning with `/` is a
    /// host path, anything else a volume name.
    pub fn parse(spec: &str) -> crate::Result<Self> {
        let bad =
            |why: &str| crate::CoreError::InvalidInput(format!("invalid mount {spec:?}: {why}"));
        let parts: Vec<&str> = spec.split(':').collect();
        let (source, destination, mode) = match parts.as_slice() {
            [s, d] => (*s, *d, "rw"),
            [s, d, m] => (*s, *d, *m),
            _ => return Err(bad("expected SOURCE:DESTINATION[:ro|rw]")),
        };
        let read_only = match mode {
            "ro" => true,
            "rw" => false,
            _ => return Err(bad("the mode is ro or rw")),
        };
        if !destination.starts_with('/') {
            return Err(bad("the destination must be an absolute path"));
        }
        if destination.split('/').any(|c| c == "..") {
            return Err(bad("the destination may not contain '..'"));
        }
        if let Err(e) = kleene_jail::check_bind_target(std::path::Path::new(destination)) {
            return Err(bad(&jail_reason(e)));
        }
        let source = if source.starts_with('/') {
            MountSource::HostPath(source.to_string())
        } else {
            crate::check_volume_name(source)?;
            MountSource::Volume(source.to_string())
        };
        Ok(Self {
            source,
            destination: destination.to_string(),
            read_only,
        })
    }
}

pub use kleene_net::model::{Driver, Gateway, Nat, NetworkSpec, NetworkType};
pub use kleene_net::ports::{PortRange, Protocol, PublishedPort};

/// A network (`klee network create`): a host interface (a bridge, a loopback or an
/// existing one) with subnets that containers get addresses from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Its id.
    pub id: Id,
    /// Its name (unique).
    pub name: String,
    /// What it was made with; `interface` is always set (the generated `kleene<N>` when
    /// none was asked for).
    pub spec: NetworkSpec,
    /// Unix time of creation.
    pub created: i64,
}

impl Network {
    /// Its host interface.
    pub fn interface(&self) -> &str {
        self.spec.interface.as_deref().unwrap_or_default()
    }
}

/// A container's connection to a network, with the addresses it keeps across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The container.
    pub container: Id,
    /// The network.
    pub network: Id,
    /// The network's name.
    pub network_name: String,
    /// Its IPv4 address there.
    pub ipv4: Option<std::net::Ipv4Addr>,
    /// Its IPv6 address there.
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// Which of the container's links it is: `eth<slot>` inside (Linux), and the host
    /// end's name is made from the container's id and it.
    pub slot: u8,
}

/// Reads a driver as written now (`"host"`) or by earlier versions (`"Host"`).
fn driver_compat<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Driver, D::Error> {
    let text = String::deserialize(d)?;
    text.to_ascii_lowercase()
        .parse()
        .map_err(serde::de::Error::custom)
}

/// What a container runs and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// The command (the entrypoint first, if the image has one).
    pub cmd: Vec<String>,
    /// `KEY=value` pairs: the image's, overridden by the container's.
    pub env: Vec<String>,
    /// The user; empty is root.
    pub user: String,
    /// The working directory; empty is `/`.
    pub workdir: String,
    /// Mounts.
    pub mounts: Vec<MountSpec>,
    /// How it reaches the network (`host`, `disabled`, `ipnet`, `vnet`).
    #[serde(deserialize_with = "driver_compat")]
    pub network: Driver,
    /// Ports published on the host (`-p`).
    #[serde(default)]
    pub publish: Vec<PublishedPort>,
    /// Jail parameters as `klee -J` takes them.
    pub jail_params: Vec<JailParamText>,
    /// The signal that stops it (`SIGTERM` when `None`).
    pub stop_signal: Option<StopSignal>,
    /// Kept by `prune` (`--persist`).
    #[serde(default)]
    pub persist: bool,
    /// When it is started without being asked (`--restart`).
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Resource limits (`--memory`, `--cpus`, `--pids-limit`, ...).
    #[serde(default, skip_serializing_if = "crate::Limits::is_empty")]
    pub limits: crate::Limits,
    /// Its system-call filter (`--security-opt seccomp=…`; Linux).
    #[serde(default, skip_serializing_if = "Seccomp::is_default")]
    pub seccomp: Seccomp,
    /// Its user namespace (`--userns`; Linux): container root is a host id of this range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<UserNs>,
}

/// A container's user namespace: container ids `0..size` are host ids
/// `host_id..host_id + size` (uids and gids alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNs {
    /// The host id container root (0) maps to.
    pub host_id: u32,
    /// How many ids are mapped.
    pub size: u32,
}

impl UserNs {
    /// The default size of a range, as podman's and Docker's `--userns-remap`.
    pub const DEFAULT_SIZE: u32 = 65536;

    /// `HOST_ID[:SIZE]`, as `--userns` and the config file take it.
    pub fn parse(text: &str) -> crate::Result<Self> {
        let bad = |why: &str| {
            crate::CoreError::InvalidInput(format!("invalid user namespace {text:?}: {why}"))
        };
        let (host, size) = match text.split_once(':') {
            Some((h, s)) => (h, s.parse().map_err(|_| bad("the size is a number"))?),
            None => (text, Self::DEFAULT_SIZE),
        };
        let host_id: u32 = host.parse().map_err(|_| bad("use HOST_ID[:SIZE]"))?;
        if host_id == 0 {
            return Err(bad("host id 0 would make container root the host's root"));
        }
        if size == 0 || host_id.checked_add(size).is_none() {
            return Err(bad("the range is empty or runs past the last id"));
        }
        Ok(UserNs { host_id, size })
    }

    /// The jail's maps: one range, uids and gids alike.
    pub fn mapping(&self) -> kleene_jail::IdMapping {
        kleene_jail::IdMapping::new(0, self.host_id, self.size)
    }
}

impl fmt::Display for UserNs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host_id, self.size)
    }
}

/// A container's seccomp filter, as Docker's `--security-opt seccomp=`: Docker's default
/// profile unless told otherwise. Linux only: on FreeBSD (jails have no seccomp) the
/// default and `unconfined` filter nothing and a profile is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Seccomp {
    /// Docker's default profile.
    #[default]
    Default,
    /// No filter (`seccomp=unconfined`).
    Unconfined,
    /// A profile in Docker's JSON format, as read when the container was made.
    Profile(String),
}

impl Seccomp {
    /// Whether it is the default.
    pub fn is_default(&self) -> bool {
        *self == Seccomp::Default
    }

    /// `unconfined`, or a profile file's text, checked (it must parse and compile).
    pub fn parse_option(
        value: &str,
        read: impl FnOnce(&str) -> std::io::Result<String>,
    ) -> crate::Result<Self> {
        if value == "unconfined" {
            return Ok(Seccomp::Unconfined);
        }
        let text = read(value).map_err(|e| {
            crate::CoreError::InvalidInput(format!("cannot read seccomp profile {value}: {e}"))
        })?;
        let s = Seccomp::Profile(text);
        s.profile().map_err(|e| match e {
            crate::CoreError::InvalidInput(why) => {
                crate::CoreError::InvalidInput(format!("seccomp profile {value}: {why}"))
            }
            other => other,
        })?;
        Ok(s)
    }

    /// The profile to install: `None` for none (unconfined, or any but a profile on
    /// FreeBSD).
    pub fn profile(&self) -> crate::Result<Option<kleene_jail::SeccompProfile>> {
        let linux = cfg!(target_os = "linux");
        match self {
            Seccomp::Default if linux => Ok(Some(kleene_jail::SeccompProfile::docker_default(
                kleene_jail::default_capability_mask(),
            ))),
            Seccomp::Default | Seccomp::Unconfined => Ok(None),
            Seccomp::Profile(_) if !linux => Err(crate::CoreError::Unsupported(
                "seccomp profiles are Linux's: FreeBSD jails have no system-call filter".into(),
            )),
            Seccomp::Profile(text) => {
                let p = kleene_jail::SeccompProfile::from_json(text)
                    .map_err(|e| crate::CoreError::InvalidInput(e.to_string()))?;
                p.compile()
                    .map_err(|e| crate::CoreError::InvalidInput(e.to_string()))?;
                Ok(Some(p))
            }
        }
    }
}

/// When a container is started without being asked, as Kleene's `--restart`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RestartPolicy {
    /// Never (`no`).
    #[default]
    No,
    /// Each time the engine's daemon starts (`on-startup`).
    OnStartup,
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnStartup => "on-startup",
        })
    }
}

impl FromStr for RestartPolicy {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s {
            "no" => Ok(RestartPolicy::No),
            "on-startup" => Ok(RestartPolicy::OnStartup),
            other => Err(CoreError::InvalidInput(format!(
                "invalid restart policy {other:?}: use 'no' or 'on-startup'"
            ))),
        }
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RunState {
    /// Made, never started.
    #[default]
    Created,
    /// Its monitor is starting it.
    Starting,
    /// Running.
    Running,
    /// It ran and ended.
    Exited,
}

/// The runtime state the container's monitor keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// The state.
    pub state: RunState,
    /// The host pid of its first process, while running.
    pub pid: Option<i32>,
    /// The jail id, while running.
    pub jid: Option<i32>,
    /// The monitor's pid, while it lives.
    pub monitor_pid: Option<i32>,
    /// The pid of the process starting it, until its monitor records itself: a start
    /// whose starter died before (killed between the two) is told from one under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starter_pid: Option<i32>,
    /// Unix time it last started.
    pub started: Option<i64>,
    /// Unix time it last ended.
    pub finished: Option<i64>,
    /// Its command's (the first process's) exit code (128 + signal when killed), once the
    /// command ended. The container runs on after it while processes the command left
    /// (daemons) or `exec` started remain, or with the jail parameter `persist`.
    pub exit_code: Option<i32>,
    /// Unix time its command ended, while the container runs on without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_finished: Option<i64>,
    /// Why it could not start, if it could not.
    pub error: Option<String>,
    /// Its resource group while it runs ([`kleene_jail::ResourceGroup::locator`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group: Option<String>,
    /// Whether a process of it was killed for want of memory (its limit) in its last run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
}

/// A container: a clone of an image snapshot, and what runs in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Its id.
    pub id: Id,
    /// Its name.
    pub name: String,
    /// The image it was made from.
    pub image_id: Id,
    /// The snapshot it was cloned from.
    pub snapshot: SnapshotName,
    /// Its dataset.
    pub dataset: DatasetName,
    /// What it runs.
    pub config: ContainerConfig,
    /// Unix time of creation.
    pub created: i64,
    /// Where it is in its life.
    pub runtime: Runtime,
}
