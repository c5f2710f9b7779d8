//! Published ports: klee's `-p`/`--publish` syntax.
//!
//! Klee accepts `HOST_PORT[:CONTAINER_PORT][/PROTOCOL]` and
//! `INTERFACE:HOST_PORT:CONTAINER_PORT[/PROTOCOL]`; the container port defaults to
//! the host port and the protocol to `tcp`. Kleened's API also knows port ranges
//! (`host_port` `"START:END"`, `container_port` `"START:*"`); since `:` already
//! separates the parts of `-p`, a range is written `START-END` here:
//!
//! | `-p`                   | host          | container   | protocol |
//! |------------------------|---------------|-------------|----------|
//! | `8080`                 | 8080          | 8080        | tcp      |
//! | `8080:80/udp`          | 8080          | 80          | udp      |
//! | `em1:8080:80`          | 8080 on `em1` | 80          | tcp      |
//! | `8000-8010`            | 8000-8010     | 8000-8010   | tcp      |
//! | `8000-8010:9000`       | 8000-8010     | 9000-9010   | tcp      |
//! | `8000-8010:9000-9010`  | 8000-8010     | 9000-9010   | tcp      |
//!
//! A range maps offset for offset: host port `START+k` goes to container port
//! `CSTART+k`. A container side that is a single port with a host range is the
//! start of an equally long range (kleened's `"START:*"`); a container range of
//! another length is an error.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::validate_interface_name;

/// A transport protocol.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The protocol's name as pf and nftables write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            other => Err(Error::Invalid(format!(
                "invalid protocol '{other}': expected tcp or udp"
            ))),
        }
    }
}

/// An inclusive range of ports, `start <= end`, neither 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawRange")]
pub struct PortRange {
    start: u16,
    end: u16,
}

/// The unchecked serialized form of a [`PortRange`].
#[derive(Deserialize)]
struct RawRange {
    start: u16,
    end: u16,
}

impl TryFrom<RawRange> for PortRange {
    type Error = Error;
    fn try_from(r: RawRange) -> Result<Self> {
        PortRange::new(r.start, r.end)
    }
}

impl PortRange {
    /// The range `start..=end`; errors for port 0 or `start > end`.
    pub fn new(start: u16, end: u16) -> Result<PortRange> {
        if start == 0 || end == 0 {
            return Err(Error::Invalid(format!(
                "invalid port range {start}-{end}: port 0 cannot be published"
            )));
        }
        if start > end {
            return Err(Error::Invalid(format!(
                "invalid port range {start}-{end}: the start is above the end"
            )));
        }
        Ok(PortRange { start, end })
    }

    /// The single port `port`; errors for 0.
    pub fn single(port: u16) -> Result<PortRange> {
        PortRange::new(port, port)
    }

    /// The first port.
    pub fn start(self) -> u16 {
        self.start
    }

    /// The last port (equal to the first for a single port).
    pub fn end(self) -> u16 {
        self.end
    }

    /// How many ports (at least 1).
    pub fn len(self) -> u32 {
        u32::from(self.end - self.start) + 1
    }

    /// Always false: a range holds at least one port. (For clippy's `len` rule.)
    pub fn is_empty(self) -> bool {
        false
    }

    /// Whether this is one port.
    pub fn is_single(self) -> bool {
        self.start == self.end
    }

    /// The ports in order.
    pub fn iter(self) -> impl Iterator<Item = u16> {
        self.start..=self.end
    }
}

impl fmt::Display for PortRange {
    /// `N` or `N-M`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// One `-p` specification.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawPublished")]
pub struct PublishedPort {
    /// The host interface it is published on; `None` means the host gateway's.
    pub interface: Option<String>,
    /// The port(s) on the host.
    pub host: PortRange,
    /// The port(s) in the container; as long as `host`.
    pub container: PortRange,
    /// The protocol.
    pub protocol: Protocol,
}

/// The unchecked serialized form of a [`PublishedPort`].
#[derive(Deserialize)]
struct RawPublished {
    interface: Option<String>,
    host: PortRange,
    container: PortRange,
    protocol: Protocol,
}

impl TryFrom<RawPublished> for PublishedPort {
    type Error = Error;
    fn try_from(r: RawPublished) -> Result<Self> {
        PublishedPort::new(r.interface, r.host, r.container, r.protocol)
    }
}

/// Parse a port number, with errors phrased for `spec`.
fn parse_port(spec: &str, what: &str, s: &str) -> Result<u16> {
    let bad = |reason: String| Error::InvalidPort {
        value: spec.to_string(),
        reason,
    };
    if s.is_empty() {
        return Err(bad(format!("the {what} is empty")));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!("{what} '{s}' is not a number")));
    }
    match s.parse::<u32>() {
        Ok(0) => Err(bad(format!("{what} 0 cannot be published"))),
        Ok(n) if n <= u32::from(u16::MAX) => Ok(n as u16),
        _ => Err(bad(format!("{what} {s} is above 65535"))),
    }
}

/// Parse `N` or `N-M`.
fn parse_range(spec: &str, what: &str, s: &str) -> Result<PortRange> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (parse_port(spec, what, a)?, parse_port(spec, what, b)?),
        None => {
            let p = parse_port(spec, what, s)?;
            (p, p)
        }
    };
    if a > b {
        return Err(Error::InvalidPort {
            value: spec.to_string(),
            reason: format!("{what} range {s} starts above its end"),
        });
    }
    Ok(PortRange { start: a, end: b })
}

impl PublishedPort {
    /// Build one from parts, checking that the container side fits the host side.
    pub fn new(
        interface: Option<String>,
        host: PortRange,
        container: PortRange,
        protocol: Protocol,
    ) -> Result<PublishedPort> {
        let p = PublishedPort {
            interface,
            host,
            container,
            protocol,
        };
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<()> {
        if let Some(i) = &self.interface {
            validate_interface_name(i)?;
        }
        if self.host.len() != self.container.len() {
            return Err(Error::InvalidPort {
                value: self.to_string(),
                reason: format!(
                    "host ports {} ({} ports) and container ports {} ({} ports) differ in size",
                    self.host,
                    self.host.len(),
                    self.container,
                    self.container.len()
                ),
            });
        }
        Ok(())
    }

    /// Whether host and container ports are the same.
    pub fn same_ports(&self) -> bool {
        self.host == self.container
    }

    /// The (host port, container port) pairs, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (u16, u16)> {
        self.host.iter().zip(self.container.iter())
    }

    /// Kleened's API form: `(host_port, container_port)`, e.g. `("8080", "80")` or
    /// `("8000:8010", "9000:*")`.
    pub fn to_api(&self) -> (String, String) {
        if self.host.is_single() {
            (
                self.host.start.to_string(),
                self.container.start.to_string(),
            )
        } else {
            (
                format!("{}:{}", self.host.start, self.host.end),
                format!("{}:*", self.container.start),
            )
        }
    }

    /// From kleened's API form (`host_port` `"N"` or `"N:M"`, `container_port` `"N"`
    /// or `"N:*"`); `interface` is the first of the API's `interfaces`, if any.
    pub fn from_api(
        interface: Option<String>,
        host_port: &str,
        container_port: &str,
        protocol: Protocol,
    ) -> Result<PublishedPort> {
        let spec = format!("{host_port} -> {container_port}");
        let host = match host_port.split_once(':') {
            Some((a, b)) => parse_range(&spec, "host port", &format!("{a}-{b}"))?,
            None => parse_range(&spec, "host port", host_port)?,
        };
        let cstart = match container_port.split_once(':') {
            Some((a, "*")) => parse_port(&spec, "container port", a)?,
            Some(_) => {
                return Err(Error::InvalidPort {
                    value: spec,
                    reason: "a container port range is written 'START:*'".to_string(),
                })
            }
            None => parse_port(&spec, "container port", container_port)?,
        };
        let container = container_range(&spec, host, cstart)?;
        PublishedPort::new(interface, host, container, protocol)
    }
}

/// The container range that starts at `cstart` and is as long as `host`.
fn container_range(spec: &str, host: PortRange, cstart: u16) -> Result<PortRange> {
    let end = u32::from(cstart) + u32::from(host.end - host.start);
    let end = u16::try_from(end).map_err(|_| Error::InvalidPort {
        value: spec.to_string(),
        reason: format!(
            "container ports from {cstart} for {} ports run above 65535",
            host.len()
        ),
    })?;
    Ok(PortRange { start: cstart, end })
}

impl FromStr for PublishedPort {
    type Err = Error;

    /// Parse klee's `-p` syntax; see the module docs.
    fn from_str(spec: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidPort {
            value: spec.to_string(),
            reason: reason.to_string(),
        };
        if spec.is_empty() {
            return Err(bad("it is empty"));
        }
        let (ports, protocol) = match spec.split_once('/') {
            Some((_, p)) if p.contains('/') => return Err(bad("more than one '/'")),
            Some((ports, p)) => (
                ports,
                p.parse::<Protocol>()
                    .map_err(|_| bad(&format!("protocol '{p}' is not tcp or udp")))?,
            ),
            None => (spec, Protocol::Tcp),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (interface, host, container) = match parts.as_slice() {
            [h] => (None, *h, None),
            [h, c] => (None, *h, Some(*c)),
            [i, h, c] => {
                if i.is_empty() {
                    return Err(bad("the interface is empty"));
                }
                validate_interface_name(i).map_err(|e| bad(&e.to_string()))?;
                (Some(i.to_string()), *h, Some(*c))
            }
            _ => {
                return Err(bad(
                    "expected [INTERFACE:]HOST_PORT[:CONTAINER_PORT][/PROTOCOL]",
                ))
            }
        };
        let host = parse_range(spec, "host port", host)?;
        let container = match container {
            None => host,
            Some(c) if c.contains('-') => parse_range(spec, "container port", c)?,
            Some(c) => container_range(spec, host, parse_port(spec, "container port", c)?)?,
        };
        PublishedPort::new(interface, host, container, protocol).map_err(|e| match e {
            Error::InvalidPort { reason, .. } => Error::InvalidPort {
                value: spec.to_string(),
                reason,
            },
            other => other,
        })
    }
}

impl fmt::Display for PublishedPort {
    /// The canonical `-p` form, which parses back to the same value:
    /// `[INTERFACE:]HOST[:CONTAINER]/PROTOCOL` (the container side is left out when
    /// it equals the host side and there is no interface).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.interface {
            Some(i) => write!(f, "{i}:{}:{}", self.host, self.container)?,
            None if self.host == self.container => write!(f, "{}", self.host)?,
            None => write!(f, "{}:{}", self.host, self.container)?,
        }
        write!(f, "/{}", self.protocol)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn p(s: &str) -> PublishedPort {
        s.parse().unwrap()
    }
    fn err(s: &str) -> String {
        s.parse::<PublishedPort>().unwrap_err().to_string()
    }
    fn r(a: u16, b: u16) -> PortRange {
        PortRange::new(a, b).unwrap()
    }

    #[test]
    fn klee_forms() {
        let x = p("8080");
        assert_eq!(x.interface, None);
        assert_eq!(
            (x.host, x.container, x.protocol),
            (r(8080, 8080), r(8080, 8080), Protocol::Tcp)
        );
        let x = p("8080:80");
        assert_eq!((x.host, x.container), (r(8080, 8080), r(80, 80)));
        let x = p("em1:8080:80");
        assert_eq!(x.interface.as_deref(), Some("em1"));
        assert_eq!((x.host, x.container), (r(8080, 8080), r(80, 80)));
        assert_eq!(p("8080:80/udp").protocol, Protocol::Udp);
        assert_eq!(p("8080/udp").container, r(8080, 8080));
        assert_eq!(p("em0:53:53/udp").protocol, Protocol::Udp);
    }

    #[test]
    fn ranges() {
        let x = p("8000-8010");
        assert_eq!((x.host, x.container), (r(8000, 8010), r(8000, 8010)));
        assert!(x.same_ports());
        let x = p("8000-8010:9000");
        assert_eq!(x.container, r(9000, 9010));
        assert!(!x.same_ports());
        let x = p("8000-8010:9000-9010/udp");
        assert_eq!(x.container, r(9000, 9010));
        assert_eq!(x.pairs().nth(3), Some((8003, 9003)));
        assert_eq!(x.host.len(), 11);
        let x = p("em0:1-3:7");
        assert_eq!(x.pairs().collect::<Vec<_>>(), vec![(1, 7), (2, 8), (3, 9)]);
    }

    #[test]
    fn errors() {
        assert_eq!(
            err("0"),
            "invalid published port '0': host port 0 cannot be published"
        );
        assert_eq!(
            err("8080:0"),
            "invalid published port '8080:0': container port 0 cannot be published"
        );
        assert_eq!(
            err("65536"),
            "invalid published port '65536': host port 65536 is above 65535"
        );
        assert!(err("99999999999999999999").contains("above 65535"));
        assert_eq!(
            err("8000-8010:9000-9005"),
            "invalid published port '8000-8010:9000-9005': host ports 8000-8010 (11 ports) and container ports 9000-9005 (6 ports) differ in size"
        );
        assert!(err("8080:80-81").contains("differ in size"));
        assert!(err("65000-65535:65500").contains("run above 65535"));
        assert!(err("9000-8000").contains("starts above its end"));
        assert_eq!(err(""), "invalid published port '': it is empty");
        assert!(err(":80").contains("host port is empty"));
        assert!(err("80:").contains("container port is empty"));
        assert!(err(":80:80").contains("interface is empty"));
        assert!(err("8080/").contains("protocol '' is not tcp or udp"));
        assert!(err("8080/sctp").contains("'sctp'"));
        assert!(err("8080/tcp/udp").contains("more than one '/'"));
        assert!(err("a:b:c:d").contains("expected"));
        assert!(err("em0:x:80").contains("'x' is not a number"));
        assert!(err("+80").contains("not a number"));
        assert!(err("bad\"if:80:80").contains("interface name"));
        assert!(err("8000-:80").contains("empty"));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "8080",
            "8080:80",
            "em1:8080:80",
            "8080:80/udp",
            "8000-8010",
            "8000-8010:9000",
            "8000-8010:9000-9010/udp",
            "em0:53:53/udp",
            "em0:1-3:7-9",
        ] {
            let x = p(s);
            let shown = x.to_string();
            assert_eq!(p(&shown), x, "{s} -> {shown}");
        }
        assert_eq!(p("8080").to_string(), "8080/tcp");
        assert_eq!(p("8000-8010:9000").to_string(), "8000-8010:9000-9010/tcp");
        assert_eq!(p("em1:8080:8080/udp").to_string(), "em1:8080:8080/udp");
    }

    #[test]
    fn kleened_api_form() {
        assert_eq!(
            p("8080:80").to_api(),
            ("8080".to_string(), "80".to_string())
        );
        assert_eq!(
            p("8000-8010:9000").to_api(),
            ("8000:8010".to_string(), "9000:*".to_string())
        );
        let x = PublishedPort::from_api(None, "8000:8010", "9000:*", Protocol::Udp).unwrap();
        assert_eq!(x, p("8000-8010:9000/udp"));
        let x = PublishedPort::from_api(Some("em0".into()), "8080", "80", Protocol::Tcp).unwrap();
        assert_eq!(x, p("em0:8080:80"));
        // kleened: '<port>:*' with a single host port is just the port
        let x = PublishedPort::from_api(None, "8080", "80:*", Protocol::Tcp).unwrap();
        assert_eq!(x, p("8080:80"));
        assert!(PublishedPort::from_api(None, "8080", "80:90", Protocol::Tcp).is_err());
        assert!(PublishedPort::from_api(None, "0", "80", Protocol::Tcp).is_err());
    }

    #[test]
    fn serde() {
        let x = p("em0:8000-8010:9000/udp");
        let json = serde_json::to_string(&x).unwrap();
        assert_eq!(serde_json::from_str::<PublishedPort>(&json).unwrap(), x);
        assert!(serde_json::from_str::<PortRange>(r#"{"start":0,"end":1}"#).is_err());
        assert!(serde_json::from_str::<PortRange>(r#"{"start":5,"end":1}"#).is_err());
        assert!(PortRange::new(1, 1).is_ok());
        let bad = r#"{"interface":null,"host":{"start":1,"end":2},"container":{"start":1,"end":1},"protocol":"tcp"}"#;
        assert!(serde_json::from_str::<PublishedPort>(bad).is_err());
        let bad = r#"{"interface":"a b","host":{"start":1,"end":1},"container":{"start":1,"end":1},"protocol":"tcp"}"#;
        assert!(serde_json::from_str::<PublishedPort>(bad).is_err());
        assert!(Protocol::from_str("TCP").is_err());
    }
}
