//! Which root dataset klee works on: `--root`, then `$KLEENE_ROOT`, then the config file's
//! `root`, then `zroot/kleene`.

use std::path::{Path, PathBuf};

use crate::failure::Failure;

/// The root when nothing says otherwise, as kleened has it.
pub const DEFAULT_ROOT: &str = "zroot/kleene";

/// Where the config file is when `--config` does not say.
pub fn default_config_path() -> PathBuf {
    if cfg!(target_os = "freebsd") {
        "/usr/local/etc/kleene/kleene.toml".into()
    } else {
        "/etc/kleene/kleene.toml".into()
    }
}

/// The config file's keys klee reads.
#[derive(Debug, Default, serde::Deserialize)]
struct FileConfig {
    root: Option<String>,
    /// `[registries]`: `insecure = ["host:port"]`, `[registries.credentials."host"]`
    /// with `username` and `password`.
    #[serde(default)]
    registries: kleene_core::Registries,
    /// `userns = "HOST_ID[:SIZE]"`: the user namespace containers get by default.
    userns: Option<String>,
}

/// What klee takes from the flags, the environment and the config file.
#[derive(Debug, Default)]
pub struct Settings {
    /// The root dataset.
    pub root: String,
    /// How registries are spoken to.
    pub registries: kleene_core::Registries,
    /// The user namespace containers get by default.
    pub userns: Option<kleene_core::UserNs>,
}

/// Picks the root dataset. `config` is `--config` (which must exist) or `None` for the
/// default path (which may be missing).
#[cfg(test)]
pub fn root_dataset(
    flag: Option<&str>,
    env: Option<&str>,
    config: Option<&Path>,
) -> Result<String, Failure> {
    load(flag, env, config).map(|s| s.root)
}

/// Reads the settings: the root from `--root`, then `$KLEENE_ROOT`, then the config
/// file; the registries from the config file.
pub fn load(
    flag: Option<&str>,
    env: Option<&str>,
    config: Option<&Path>,
) -> Result<Settings, Failure> {
    let (path, required) = match config {
        Some(p) => (p.to_path_buf(), true),
        None => (default_config_path(), false),
    };
    let file = match std::fs::read_to_string(&path) {
        Ok(text) => parse_config(&text)
            .map_err(|e| Failure::failed(format!("config file {}: {e}", path.display())))?,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => FileConfig::default(),
        Err(e) => {
            return Err(Failure::failed(format!(
                "cannot read the config file {}: {e}",
                path.display()
            )))
        }
    };
    let root = [flag, env, file.root.as_deref()]
        .into_iter()
        .flatten()
        .find(|r| !r.is_empty())
        .unwrap_or(DEFAULT_ROOT)
        .to_string();
    let userns = file
        .userns
        .as_deref()
        .filter(|u| *u != "host")
        .map(kleene_core::UserNs::parse)
        .transpose()
        .map_err(|e| Failure::failed(format!("config file {}: {e}", path.display())))?;
    Ok(Settings {
        root,
        registries: file.registries,
        userns,
    })
}

fn parse_config(text: &str) -> Result<FileConfig, String> {
    toml::from_str(text).map_err(|e| e.message().to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_flag_wins_then_the_environment() {
        assert_eq!(root_dataset(Some("a/b"), Some("c/d"), None).unwrap(), "a/b");
        assert_eq!(root_dataset(None, Some("c/d"), None).unwrap(), "c/d");
        assert_eq!(root_dataset(Some(""), Some("c/d"), None).unwrap(), "c/d");
    }

    #[test]
    fn then_the_config_file_then_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kleene.toml");
        std::fs::write(&file, "# mine\nroot = \"tank/k\"\nother = 1\n").unwrap();
        assert_eq!(root_dataset(None, None, Some(&file)).unwrap(), "tank/k");
        std::fs::write(&file, "other = 1\n").unwrap();
        assert_eq!(root_dataset(None, None, Some(&file)).unwrap(), DEFAULT_ROOT);
    }

    #[test]
    fn registries_come_from_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kleene.toml");
        std::fs::write(
            &file,
            "[registries]\ninsecure = [\"registry.lan:5000\"]\n\
             [registries.credentials.\"registry.lan:5000\"]\nusername = \"u\"\npassword = \"p\"\n",
        )
        .unwrap();
        let s = load(None, None, Some(&file)).unwrap();
        assert_eq!(s.root, DEFAULT_ROOT);
        assert_eq!(s.registries.insecure, ["registry.lan:5000"]);
        assert_eq!(s.registries.credentials["registry.lan:5000"].username, "u");
        // Secrets stay out of debug output.
        assert!(!format!("{:?}", s.registries).contains("\"p\""));
    }

    #[test]
    fn a_named_config_file_must_exist_and_parse() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let e = root_dataset(None, None, Some(&missing)).unwrap_err();
        assert!(e.message.contains("nope.toml"), "{}", e.message);
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "root = [").unwrap();
        let e = root_dataset(None, None, Some(&bad)).unwrap_err();
        assert!(e.message.contains("bad.toml"), "{}", e.message);
        std::fs::write(&bad, "root = 3").unwrap();
        assert!(root_dataset(None, None, Some(&bad)).is_err());
    }
}
