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
}

/// Picks the root dataset. `config` is `--config` (which must exist) or `None` for the
/// default path (which may be missing).
pub fn root_dataset(
    flag: Option<&str>,
    env: Option<&str>,
    config: Option<&Path>,
) -> Result<String, Failure> {
    if let Some(r) = flag.filter(|r| !r.is_empty()) {
        return Ok(r.to_string());
    }
    if let Some(r) = env.filter(|r| !r.is_empty()) {
        return Ok(r.to_string());
    }
    let (path, required) = match config {
        Some(p) => (p.to_path_buf(), true),
        None => (default_config_path(), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(DEFAULT_ROOT.to_string())
        }
        Err(e) => {
            return Err(Failure::failed(format!(
                "cannot read the config file {}: {e}",
                path.display()
            )))
        }
    };
    let file = parse_config(&text)
        .map_err(|e| Failure::failed(format!("config file {}: {e}", path.display())))?;
    Ok(file
        .root
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| DEFAULT_ROOT.to_string()))
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
