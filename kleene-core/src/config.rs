//! How an [`crate::Engine`] is set up.

use kleene_zfs::DatasetName;

/// FreeBSD's release layout: `{arch}` and `{version}` are filled from uname(1) (or the
/// overrides below).
pub const FREEBSD_RELEASE_TEMPLATE: &str =
    "https://download.freebsd.org/ftp/releases/{arch}/{version}/base.txz";

/// The engine's settings.
#[derive(Debug, Clone)]
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
    /// The container monitor binary (`kleene-monitor`); see [`Config::monitor_path`].
    pub monitor: Option<std::path::PathBuf>,
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
        }
    }

    /// Where `kleene-monitor` is: the config's, else `$KLEENE_MONITOR`, else beside the
    /// running program (or one directory up, for test binaries in `target/*/deps`), else
    /// on `PATH`.
    pub fn monitor_path(&self) -> crate::Result<std::path::PathBuf> {
        if let Some(p) = &self.monitor {
            return Ok(p.clone());
        }
        if let Some(p) = std::env::var_os("KLEENE_MONITOR") {
            return Ok(p.into());
        }
        const NAME: &str = "kleene-monitor";
        if let Ok(exe) = std::env::current_exe() {
            for dir in exe.ancestors().skip(1).take(2) {
                let candidate = dir.join(NAME);
                if candidate.is_file() {
                    return Ok(candidate);
                }
            }
        }
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let candidate = dir.join(NAME);
                if candidate.is_file() {
                    return Ok(candidate);
                }
            }
        }
        Err(crate::CoreError::Unsupported(format!(
            "{NAME} is not installed: it runs containers; install it beside this program or set KLEENE_MONITOR"
        )))
    }
}

impl Default for Config {
    /// `zroot/kleene`, as kleened has it.
    fn default() -> Self {
        Self::new(DatasetName::new("zroot/kleene").expect("zroot/kleene is a valid dataset name"))
    }
}
