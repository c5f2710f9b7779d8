//! How an [`crate::Engine`] is set up.

use kleene_zfs::DatasetName;

/// FreeBSD's release layout: `{arch}` and `{version}` are filled from uname(1) (or the
/// overrides below).
pub const FREEBSD_RELEASE_TEMPLATE: &str =
    "https://download.freebsd.org/ftp/releases/{arch}/{version}/base.txz";

/// The engine's settings. Serializable: the engine hands the whole of it to each
/// container's monitor process.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Config {
    /// The root dataset; `image`, `container` and `volumes` are made below it.
    pub root: DatasetName,
    /// The URL template of `fetch-auto`.
    pub fetch_template: String,
    /// The release `fetch-auto` fetches, instead of the host's (uname -r without `-pN`).
    pub release: Option<String>,
    /// The architecture `fetch-auto` fetches, instead of the host's (uname -m).
    pub arch: Option<String>,
    /// The host's resolv.conf, copied into new base images with the `dns` option.
    pub resolv_conf: std::path::PathBuf,
    /// The host's localtime, copied into new base images with the `localtime` option.
    pub localtime: std::path::PathBuf,
    /// The program that runs container monitors. `None` (the default): this program
    /// itself, re-executed, which needs [`crate::init`] called first in `main`. A program
    /// given here must call it likewise (kleene-core's `kleene-monitor` does nothing else);
    /// it is started as `PROGRAM kleene-monitor CONTAINER_ID` and must be built from the
    /// same kleene-core version.
    pub monitor: Option<std::path::PathBuf>,
    /// How long the filesystem below the pool gets to answer a probe (engine work that is
    /// still running asks it every 10 s, or this often when shorter): a daemon that stops answering (a
    /// wedged zfs-fuse) ends the work with [`crate::CoreError::NotAnswering`] instead of
    /// a hang. Slow work on a filesystem that answers is never cut short.
    #[serde(default = "fs_deadline")]
    pub fs_deadline: std::time::Duration,
    /// How registries are spoken to (pull, push, `FROM registry/name`).
    #[serde(default)]
    pub registries: Registries,
    /// The user namespace containers get unless they ask otherwise (`--userns`; Linux):
    /// `None`, the host's.
    #[serde(default)]
    pub userns: Option<crate::UserNs>,
}

/// How the engine speaks to OCI registries.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Registries {
    /// Registries (`host[:port]`) spoken to over https without verifying certificates,
    /// or plain http. Loopback registries are spoken to over http without being listed,
    /// as Docker does; all others only over verified https.
    pub insecure: Vec<String>,
    /// Credentials by registry (`host[:port]`; `docker.io` for Docker Hub).
    pub credentials: std::collections::BTreeMap<String, RegistryCredentials>,
    /// Signature policies by scope: `host[:port]` or `host[:port]/repository` (the
    /// longest that matches an image applies; `docker.io` for Docker Hub). An image a
    /// policy applies to is pulled only when one of its signatures verifies with one of
    /// the policy's keys.
    pub policy: std::collections::BTreeMap<String, SignaturePolicy>,
}

/// Which signatures an image must carry to be pulled.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SignaturePolicy {
    /// Public keys (files): PEM `PUBLIC KEY`s verify cosign/sigstore signatures stored in
    /// the registry (`sha256-<hex>.sig`); OpenPGP keys (armored or binary) verify
    /// simple signatures from the lookaside store.
    pub keys: Vec<std::path::PathBuf>,
    /// The lookaside store of simple signatures: a directory (or `file://` URL).
    pub lookaside: Option<String>,
}

/// A user name and password (or token) for a registry.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RegistryCredentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl SignaturePolicy {
    /// Signatures that verify with one of `keys`, cosign's from the registry (and simple
    /// signatures from `lookaside` once [`SignaturePolicy::lookaside`] names it).
    pub fn keys(keys: Vec<std::path::PathBuf>) -> Self {
        Self {
            keys,
            lookaside: None,
        }
    }

    /// The lookaside store of simple signatures (a directory or `file://` URL).
    pub fn lookaside(mut self, store: impl Into<String>) -> Self {
        self.lookaside = Some(store.into());
        self
    }
}

impl RegistryCredentials {
    /// A user name and its password or access token.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

fn fs_deadline() -> std::time::Duration {
    crate::watch::FS_DEADLINE
}

impl Config {
    /// Defaults for a root dataset.
    pub fn new(root: DatasetName) -> Self {
        Self {
            root,
            fetch_template: FREEBSD_RELEASE_TEMPLATE.to_string(),
            release: None,
            arch: None,
            resolv_conf: "/etc/resolv.conf".into(),
            localtime: "/etc/localtime".into(),
            monitor: None,
            fs_deadline: fs_deadline(),
            registries: Registries::default(),
            userns: None,
        }
    }
}

impl Default for Config {
    /// `zroot/kleene`, as kleened has it.
    fn default() -> Self {
        Self::new(DatasetName::new("zroot/kleene").expect("zroot/kleene is a valid dataset name"))
    }
}
