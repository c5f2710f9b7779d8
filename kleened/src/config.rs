//! kleened's configuration file (`/usr/local/etc/kleened/config.yaml`), with the keys
//! Kleene's "Kleened configuration" page lists. An unknown key is an error naming it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use kleene_core::kleene_zfs::DatasetName;
use serde::Deserialize;

/// Where kleened reads its configuration unless `--config` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/usr/local/etc/kleened/config.yaml";

/// The socket kleened listens on unless the configuration says otherwise.
pub const DEFAULT_SOCKET: &str = "http:///var/run/kleened.sock";

/// Where kleened logs when `enable_logging` is on.
pub const LOG_FILE: &str = "/var/log/kleened.log";

/// What can be wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The YAML is invalid, has an unknown key or a value of the wrong kind.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },

    /// A value is of the right kind but not usable.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The logging verbosity, Kleene's words, most verbose first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything.
    Debug,
    /// The default.
    #[default]
    Info,
    /// As `info` (the log crate has no `notice`).
    Notice,
    /// Warnings and errors.
    Warning,
    /// Errors.
    Error,
    /// As `error`.
    Critical,
}

impl LogLevel {
    /// The `log` crate's filter for it.
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Info | LogLevel::Notice => log::LevelFilter::Info,
            LogLevel::Warning => log::LevelFilter::Warn,
            LogLevel::Error | LogLevel::Critical => log::LevelFilter::Error,
        }
    }
}

/// One entry of `api_listening_sockets`, as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketConfig {
    /// `http[s]:///path/to/socket` or `http[s]://ip[:port]`.
    pub address: String,
    /// PEM certificate (https).
    #[serde(default)]
    pub tlscert: Option<PathBuf>,
    /// PEM private key (https).
    #[serde(default)]
    pub tlskey: Option<PathBuf>,
    /// Ask clients for a certificate (https).
    #[serde(default)]
    pub tlsverify: bool,
    /// CA certificates for client certificates (https).
    #[serde(default)]
    pub tlscacert: Option<PathBuf>,
    /// Diffie-Hellman parameters (https).
    #[serde(default)]
    pub tlsdh: Option<PathBuf>,
}

/// Where a socket listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A Unix socket at this path.
    Unix(PathBuf),
    /// A TCP address: an IP address (kleened listens on addresses, not host names) and a
    /// port, 80 for `http` and 443 for `https` when none is written (as kleened's URI
    /// parsing gives); port 0 picks a free one.
    Tcp(SocketAddr),
}

/// The TLS settings of an `https` socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// `tlscert`: the PEM certificate chain, server certificate first.
    pub cert: PathBuf,
    /// `tlskey`: the PEM private key; `None` when it is in the `tlscert` file.
    pub key: Option<PathBuf>,
    /// `tlsverify`: clients must present a certificate signed by a `tlscacert` CA.
    pub verify: bool,
    /// `tlscacert`: the PEM CA certificates client certificates are checked against.
    pub ca: Option<PathBuf>,
    /// `tlsdh`: Diffie-Hellman parameters; checked to exist, not used (rustls offers
    /// ECDHE key exchange only).
    pub dh: Option<PathBuf>,
}

/// A parsed `api_listening_sockets` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSocket {
    /// Where.
    pub listen: Listen,
    /// The TLS settings for `https`; `None` for `http`, whose TLS keys are ignored (as
    /// the configuration page says).
    pub tls: Option<TlsConfig>,
    /// The entry as written.
    pub raw: SocketConfig,
}

impl ListenSocket {
    /// Parses `http[s]:///path` and `http[s]://ip[:port][/]` (IPv6 in brackets), and
    /// checks that an `https` socket has a `tlscert`, and a `tlscacert` when it has
    /// `tlsverify`. The files are read when kleened starts.
    pub fn parse(raw: SocketConfig) -> Result<Self, String> {
        let address = raw.address.as_str();
        let (tls, rest) = if let Some(rest) = address.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = address.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!(
                "invalid socket address {address:?}: expected http[s]:///path/to/socket or http[s]://ip[:port]"
            ));
        };
        let listen = if rest.starts_with('/') {
            if rest.len() < 2 {
                return Err(format!(
                    "invalid socket address {address:?}: the socket path is empty"
                ));
            }
            Listen::Unix(PathBuf::from(rest))
        } else {
            let host = rest.strip_suffix('/').unwrap_or(rest);
            if host.is_empty() {
                return Err(format!(
                    "invalid socket address {address:?}: neither a socket path nor an address"
                ));
            }
            let default_port = if tls { 443 } else { 80 };
            Listen::Tcp(
                tcp_address(host, default_port)
                    .map_err(|m| format!("invalid socket address {address:?}: {m}"))?,
            )
        };
        let tls = if tls {
            let cert = raw
                .tlscert
                .clone()
                .ok_or_else(|| format!("socket {address:?} uses https but has no tlscert"))?;
            if raw.tlsverify && raw.tlscacert.is_none() {
                return Err(format!(
                    "socket {address:?} has tlsverify but no tlscacert to verify client certificates with"
                ));
            }
            Some(TlsConfig {
                cert,
                key: raw.tlskey.clone(),
                verify: raw.tlsverify,
                ca: raw.tlscacert.clone(),
                dh: raw.tlsdh.clone(),
            })
        } else {
            None
        };
        Ok(Self { listen, tls, raw })
    }

    /// The address as kleened logs it: the scheme and the path, or the IP address and
    /// port.
    pub fn display(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        match &self.listen {
            Listen::Unix(p) => format!("{scheme}://{}", p.display()),
            Listen::Tcp(a) => format!("{scheme}://{a}"),
        }
    }
}

/// `ip[:port]` or `[ip6][:port]`.
fn tcp_address(host: &str, default_port: u16) -> Result<SocketAddr, String> {
    let (ip, port) = if let Some(rest) = host.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address without its closing ']'")?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after the IPv6 address")?),
        };
        (IpAddr::V6(ip), port)
    } else {
        let (ip, port) = match host.split_once(':') {
            Some((ip, port)) => (ip, Some(port)),
            None => (host, None),
        };
        let ip: Ipv4Addr = ip.parse().map_err(|_| {
            format!("{ip:?} is not an IPv4 address (kleened listens on IP addresses, not host names; write IPv6 addresses in brackets)")
        })?;
        (IpAddr::V4(ip), port)
    };
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse()
            .map_err(|_| format!("{p:?} is not a port number"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

fn default_root() -> String {
    "zroot/kleene".into()
}

fn default_pf_template() -> PathBuf {
    "/usr/local/etc/kleened/pf.conf.kleene".into()
}

fn default_pf_config() -> PathBuf {
    "/etc/pf.conf".into()
}

fn default_sockets() -> Vec<SocketConfig> {
    vec![SocketConfig {
        address: DEFAULT_SOCKET.into(),
        tlscert: None,
        tlskey: None,
        tlsverify: false,
        tlscacert: None,
        tlsdh: None,
    }]
}

fn yes() -> bool {
    true
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_root")]
    kleene_root: String,
    #[serde(default = "default_pf_template")]
    pf_config_template_path: PathBuf,
    #[serde(default = "default_pf_config")]
    pf_config_path: PathBuf,
    #[serde(default = "default_sockets")]
    api_listening_sockets: Vec<SocketConfig>,
    #[serde(default = "yes")]
    enable_logging: bool,
    #[serde(default)]
    log_level: LogLevel,
    /// Extension: `userns: "HOST_ID:SIZE"`, the user namespace of containers (Linux).
    #[serde(default)]
    userns: Option<String>,
}

/// kleened's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The engine's root dataset.
    pub kleene_root: DatasetName,
    /// The pf.conf template (FreeBSD; kept for when kleened renders pf itself).
    pub pf_config_template_path: PathBuf,
    /// The pf.conf kleened writes (FreeBSD; kept likewise).
    pub pf_config_path: PathBuf,
    /// Where the API listens.
    pub api_listening_sockets: Vec<ListenSocket>,
    /// Log to [`LOG_FILE`] too.
    pub enable_logging: bool,
    /// Verbosity.
    pub log_level: LogLevel,
    /// The user namespace containers get (an extension; Linux).
    pub userns: Option<kleene_core::UserNs>,
}

impl Default for Config {
    fn default() -> Self {
        // The defaults are valid by construction: parsing the empty document gives them.
        Self::from_yaml("{}", Path::new("<defaults>"))
            .expect("the built-in defaults are a valid configuration")
    }
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses and checks `text`; `path` names it in errors. An empty document gives the
    /// defaults.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let text = if text.trim().is_empty() { "{}" } else { text };
        let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let kleene_root = DatasetName::new(raw.kleene_root.as_str())
            .map_err(|e| invalid(format!("kleene_root {:?}: {e}", raw.kleene_root)))?;
        if raw.api_listening_sockets.is_empty() {
            return Err(invalid(
                "api_listening_sockets is empty: kleened needs a socket to listen on".into(),
            ));
        }
        let api_listening_sockets = raw
            .api_listening_sockets
            .into_iter()
            .map(ListenSocket::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| invalid(format!("api_listening_sockets: {m}")))?;
        Ok(Self {
            kleene_root,
            pf_config_template_path: raw.pf_config_template_path,
            pf_config_path: raw.pf_config_path,
            api_listening_sockets,
            enable_logging: raw.enable_logging,
            log_level: raw.log_level,
            userns: raw
                .userns
                .as_deref()
                .filter(|u| *u != "host")
                .map(kleene_core::UserNs::parse)
                .transpose()
                .map_err(|e| invalid(format!("userns: {e}")))?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(text, Path::new("config.yaml"))
    }

    #[test]
    fn the_documented_defaults_parse() {
        let c = parse(
            r#"
kleene_root: "zroot/kleene"
pf_config_template_path: "/usr/local/etc/kleened/pf.conf.kleene"
pf_config_path: "/etc/pf.conf"
api_listening_sockets:
    - address: "http:///var/run/kleened.sock"
enable_logging: true
log_level: "info"
"#,
        )
        .unwrap();
        assert_eq!(c.kleene_root.to_string(), "zroot/kleene");
        assert_eq!(c.api_listening_sockets.len(), 1);
        assert_eq!(
            c.api_listening_sockets[0].listen,
            Listen::Unix("/var/run/kleened.sock".into())
        );
        assert_eq!(c.api_listening_sockets[0].tls, None);
        assert_eq!(c.log_level, LogLevel::Info);
        let d = Config::default();
        assert_eq!(d.kleene_root, c.kleene_root);
        assert_eq!(d.api_listening_sockets, c.api_listening_sockets);
        assert_eq!(d.pf_config_path, c.pf_config_path);
        assert!(d.enable_logging);
    }

    #[test]
    fn a_user_namespace_default_is_an_extension() {
        let c = parse("userns: \"100000:65536\"\n").unwrap();
        assert_eq!(
            c.userns.map(|u| u.to_string()).as_deref(),
            Some("100000:65536")
        );
        assert_eq!(engine_config_userns(&c), c.userns);
        assert!(parse("userns: host\n").unwrap().userns.is_none());
        let e = parse("userns: \"0\"\n").unwrap_err();
        assert!(e.to_string().contains("userns"), "{e}");
        assert!(Config::default().userns.is_none());
    }

    fn engine_config_userns(c: &Config) -> Option<kleene_core::UserNs> {
        crate::engine_config(c).userns
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse("kleene_root: zroot/k\nlisten: foo\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `listen`"), "{e}");
        let e = parse("api_listening_sockets:\n  - address: http:///x.sock\n    tlsfoo: 1\n")
            .unwrap_err();
        assert!(e.to_string().contains("unknown field `tlsfoo`"), "{e}");
    }

    #[test]
    fn tcp_and_tls_sockets_parse() {
        let c = parse(
            r#"
api_listening_sockets:
    - address: "https://127.0.0.1:8085"
      tlscert: "/c.pem"
      tlskey: "/k.pem"
      tlsverify: true
      tlscacert: "/ca.pem"
      tlsdh: "/dh.pem"
    - address: "https:///var/run/kleened.tlssock"
      tlscert: "/c.pem"
      tlscacert: "/ca.pem"
    - address: "http://[::1]:8080/"
      tlscert: "/ignored.pem"
    - address: "http://0.0.0.0"
    - address: "https://[::]"
      tlscert: "/c.pem"
"#,
        )
        .unwrap();
        let s = &c.api_listening_sockets;
        assert_eq!(s[0].listen, Listen::Tcp("127.0.0.1:8085".parse().unwrap()));
        assert_eq!(
            s[0].tls,
            Some(TlsConfig {
                cert: "/c.pem".into(),
                key: Some("/k.pem".into()),
                verify: true,
                ca: Some("/ca.pem".into()),
                dh: Some("/dh.pem".into()),
            })
        );
        assert_eq!(s[0].display(), "https://127.0.0.1:8085");
        assert_eq!(s[1].listen, Listen::Unix("/var/run/kleened.tlssock".into()));
        let tls = s[1].tls.as_ref().unwrap();
        assert_eq!((tls.key.as_ref(), tls.verify), (None, false));
        assert_eq!(s[2].listen, Listen::Tcp("[::1]:8080".parse().unwrap()));
        assert_eq!(s[2].tls, None);
        assert_eq!(s[3].listen, Listen::Tcp("0.0.0.0:80".parse().unwrap()));
        assert_eq!(s[4].listen, Listen::Tcp("[::]:443".parse().unwrap()));
        assert_eq!(s[4].display(), "https://[::]:443");
    }

    #[test]
    fn bad_sockets_are_refused() {
        let sock = |entry: &str| parse(&format!("api_listening_sockets:\n  - {entry}\n"));
        let e = sock("address: https:///x.sock").unwrap_err();
        assert!(e.to_string().contains("no tlscert"), "{e}");
        let e =
            sock("address: https://127.0.0.1:1\n    tlscert: /c\n    tlsverify: true").unwrap_err();
        assert!(e.to_string().contains("no tlscacert"), "{e}");
        let e = sock("address: http://localhost:8080").unwrap_err();
        assert!(e.to_string().contains("not host names"), "{e}");
        for bad in [
            "http://127.0.0.1:http",
            "http://127.0.0.1:70000",
            "http://[::1:80",
            "http://[::1]80",
            "http://::1",
            "http://127.0.0.1:80/path",
            "http://",
            "http:///",
        ] {
            assert!(sock(&format!("address: \"{bad}\"")).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse("log_level: loud\n").is_err());
        assert!(parse("kleene_root: /abs\n").is_err());
        assert!(parse("api_listening_sockets: []\n").is_err());
        assert!(parse("api_listening_sockets:\n  - address: unix:///x\n").is_err());
        assert!(parse("").is_ok());
    }
}
