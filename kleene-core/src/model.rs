//! What the engine keeps: images, volumes (and containers), as the API returns them.

use serde::{Deserialize, Serialize};

use crate::id::Id;

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
    pub stop_signal: Option<String>,
    /// How the image came to be, step by step.
    #[serde(default)]
    pub instructions: Vec<Instruction>,
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
    /// The image (and snapshot) it was built on, `<id>@<snapshot>`.
    pub parent: Option<String>,
    /// Its dataset.
    pub dataset: String,
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
    pub dataset: String,
    /// Where it is mounted on the host.
    pub mountpoint: String,
    /// Unix time of creation, seconds.
    pub created: i64,
}

/// Where a mount comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

impl MountSpec {
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

/// How a container reaches the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// The host's stack.
    #[default]
    Host,
    /// Loopback only.
    Disabled,
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
    /// The network.
    pub network: Network,
    /// Jail parameters as `klee -J` takes them.
    pub jail_params: Vec<String>,
    /// The signal that stops it (`SIGTERM` by default).
    pub stop_signal: Option<String>,
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Unix time it last started.
    pub started: Option<i64>,
    /// Unix time it last ended.
    pub finished: Option<i64>,
    /// Its exit code (128 + signal when killed), once ended.
    pub exit_code: Option<i32>,
    /// Why it could not start, if it could not.
    pub error: Option<String>,
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
    pub snapshot: String,
    /// Its dataset.
    pub dataset: String,
    /// What it runs.
    pub config: ContainerConfig,
    /// Unix time of creation.
    pub created: i64,
    /// Where it is in its life.
    pub runtime: Runtime,
}
