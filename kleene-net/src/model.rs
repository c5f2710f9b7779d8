//! The network model: what a user asks for ([`NetworkSpec`]) and the resolved,
//! plain-data form the firewall renderers take ([`FirewallInput`]).
//!
//! Everything here is pure: no I/O, no lookups of the host. Serialized forms use
//! Kleene's words (`"loopback"`, `"<auto>"`, `"<host-gateway>"`, ...), so the JSON
//! looks like kleened's.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ports::PublishedPort;

/// Longest network name accepted.
pub const MAX_NETWORK_NAME_LEN: usize = 64;

/// Longest interface name accepted: Linux's IFNAMSIZ (16) less the NUL; FreeBSD's is the same.
pub const MAX_INTERFACE_NAME_LEN: usize = 15;

/// The kind of host interface that represents a network.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum NetworkType {
    /// Kleene creates a loopback interface (on Linux: a bridge with no uplink). Klee's default.
    #[default]
    Loopback,
    /// Kleene creates a bridge interface; vnet containers attach to it.
    Bridge,
    /// The user names an existing interface; Kleene neither creates nor destroys it.
    Custom,
}

impl NetworkType {
    /// Kleene's word for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkType::Loopback => "loopback",
            NetworkType::Bridge => "bridge",
            NetworkType::Custom => "custom",
        }
    }
}

impl fmt::Display for NetworkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NetworkType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "loopback" => Ok(NetworkType::Loopback),
            "bridge" => Ok(NetworkType::Bridge),
            "custom" => Ok(NetworkType::Custom),
            other => Err(Error::Invalid(format!(
                "invalid network type '{other}': expected loopback, bridge or custom"
            ))),
        }
    }
}

/// A container's network driver: how it sees the network.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// Addresses from its networks only (FreeBSD: ip4.addr on the host stack;
    /// Linux: its own network namespace with an address from the network).
    Ipnet,
    /// Its own network stack attached to a bridge network.
    Vnet,
    /// The host's network stack. Kleene's default driver.
    #[default]
    Host,
    /// No networking.
    Disabled,
}

impl Driver {
    /// Kleene's word for the driver.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Ipnet => "ipnet",
            Driver::Vnet => "vnet",
            Driver::Host => "host",
            Driver::Disabled => "disabled",
        }
    }

    /// Whether a container with this driver may connect to a network of `kind`
    /// (Kleene's rules: ipnet to all, vnet to bridges only, host and disabled to none).
    pub fn can_connect(self, kind: NetworkType) -> bool {
        match self {
            Driver::Ipnet => true,
            Driver::Vnet => kind == NetworkType::Bridge,
            Driver::Host | Driver::Disabled => false,
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Driver {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ipnet" => Ok(Driver::Ipnet),
            "vnet" => Ok(Driver::Vnet),
            "host" => Ok(Driver::Host),
            "disabled" => Ok(Driver::Disabled),
            other => Err(Error::Invalid(format!(
                "invalid network driver '{other}': expected ipnet, vnet, host or disabled"
            ))),
        }
    }
}

/// A bridge network's default router for vnet containers.
///
/// Written as Kleene writes it: `"<auto>"`, `""` (none) or an address.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum Gateway {
    /// No gateway (`--gw ""`).
    None,
    /// The subnet's first address, added to the bridge (Kleene's default).
    #[default]
    Auto,
    /// This address.
    Addr(IpAddr),
}

/// Kleene's spelling of [`Gateway::Auto`].
pub const AUTO: &str = "<auto>";

/// Kleene's spelling of [`Nat::HostGateway`].
pub const HOST_GATEWAY: &str = "<host-gateway>";

impl fmt::Display for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gateway::None => Ok(()),
            Gateway::Auto => f.write_str(AUTO),
            Gateway::Addr(a) => write!(f, "{a}"),
        }
    }
}

impl FromStr for Gateway {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "" => Ok(Gateway::None),
            AUTO => Ok(Gateway::Auto),
            other => other.parse::<IpAddr>().map(Gateway::Addr).map_err(|_| {
                Error::Invalid(format!(
                    "invalid gateway '{other}': expected {AUTO}, an empty string or an IP address"
                ))
            }),
        }
    }
}

impl TryFrom<String> for Gateway {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Gateway> for String {
    fn from(g: Gateway) -> String {
        g.to_string()
    }
}

/// Where a network's outgoing traffic is NAT'ed to.
///
/// Written as Kleene writes it: `""` (no NAT), `"<host-gateway>"` or an interface name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Nat {
    /// No NAT (`--no-nat`).
    None,
    /// The interface of the host's default route, found when the network is set up.
    #[default]
    HostGateway,
    /// This interface.
    Interface(String),
}

impl fmt::Display for Nat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Nat::None => Ok(()),
            Nat::HostGateway => f.write_str(HOST_GATEWAY),
            Nat::Interface(i) => f.write_str(i),
        }
    }
}

impl FromStr for Nat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "" => Ok(Nat::None),
            HOST_GATEWAY => Ok(Nat::HostGateway),
            other => {
                validate_interface_name(other)?;
                Ok(Nat::Interface(other.to_string()))
            }
        }
    }
}

impl TryFrom<String> for Nat {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Nat> for String {
    fn from(n: Nat) -> String {
        n.to_string()
    }
}

impl Nat {
    /// The NAT interface once `<host-gateway>` is resolved to `host_gateway`
    /// (`None` when there is no NAT, or no host gateway is known).
    pub fn resolve(&self, host_gateway: Option<&str>) -> Option<String> {
        match self {
            Nat::None => None,
            Nat::HostGateway => host_gateway.map(str::to_string),
            Nat::Interface(i) => Some(i.clone()),
        }
    }
}

/// Check a network name: 1 to [`MAX_NETWORK_NAME_LEN`] characters, an ASCII letter
/// or digit first, then ASCII letters, digits, `_`, `.` or `-`.
pub fn validate_network_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            what: "network name",
            value: name.to_string(),
            reason,
        })
    };
    let Some(first) = name.chars().next() else {
        return bad("it is empty");
    };
    if name.len() > MAX_NETWORK_NAME_LEN {
        return bad("it is longer than 64 characters");
    }
    if !first.is_ascii_alphanumeric() {
        return bad("it must start with an ASCII letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return bad("only ASCII letters, digits, '_', '.' and '-' are allowed");
    }
    Ok(())
}

/// Check a host interface name: 1 to [`MAX_INTERFACE_NAME_LEN`] characters (Linux's
/// IFNAMSIZ), an ASCII letter first, then ASCII letters, digits, `_`, `.` or `-`.
///
/// These are the characters that are safe unquoted in pf.conf and inside quotes
/// in an nftables script, and valid interface names on both Linux and FreeBSD.
pub fn validate_interface_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            what: "interface name",
            value: name.to_string(),
            reason,
        })
    };
    let Some(first) = name.chars().next() else {
        return bad("it is empty");
    };
    if name.len() > MAX_INTERFACE_NAME_LEN {
        return bad("it is longer than 15 characters");
    }
    if !first.is_ascii_alphabetic() {
        return bad("it must start with an ASCII letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return bad("only ASCII letters, digits, '_', '.' and '-' are allowed");
    }
    Ok(())
}

/// A network as a user asks for it (`klee network create`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// The network's name.
    pub name: String,
    /// Its type (`--type`).
    #[serde(rename = "type")]
    pub kind: NetworkType,
    /// The host interface (`--interface`); generated when `None`, except for custom networks.
    pub interface: Option<String>,
    /// The IPv4 subnet (`--subnet`).
    pub subnet: Option<Ipv4Net>,
    /// The IPv6 subnet (`--subnet6`).
    pub subnet6: Option<Ipv6Net>,
    /// The IPv4 default router for vnet containers (`--gw`); bridge networks only.
    pub gateway: Gateway,
    /// The IPv6 default router for vnet containers (`--gw6`); bridge networks only.
    pub gateway6: Gateway,
    /// Where outgoing traffic is NAT'ed (`--nat`/`--no-nat`/`--nat-if`).
    pub nat: Nat,
    /// Whether containers on the network may talk to each other (`--icc`).
    pub icc: bool,
    /// Whether traffic may not leave the network (`--internal`).
    pub internal: bool,
}

impl NetworkSpec {
    /// A spec with Kleene's defaults: `<auto>` gateways, NAT to the host gateway,
    /// icc on, not internal, no subnets (set at least one before validating).
    pub fn new(name: impl Into<String>, kind: NetworkType) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            kind,
            interface: None,
            subnet: None,
            subnet6: None,
            gateway: Gateway::Auto,
            gateway6: Gateway::Auto,
            nat: Nat::HostGateway,
            icc: true,
            internal: false,
        }
    }

    /// Apply Kleene's rules:
    ///
    /// - the name follows [`validate_network_name`];
    /// - an interface, if given, follows [`validate_interface_name`]; a custom network needs one;
    /// - `subnet` or `subnet6` (or both) is set;
    /// - an explicit gateway address is for bridge networks only (`<auto>` is accepted
    ///   everywhere and means nothing on other types), belongs to the family of its
    ///   subnet, needs that subnet, lies inside it and is neither its network address
    ///   nor (IPv4) its broadcast address;
    /// - a NAT interface follows [`validate_interface_name`].
    pub fn validate(&self) -> Result<()> {
        validate_network_name(&self.name)?;
        let bad = |reason: String| {
            Err(Error::InvalidNetwork {
                network: self.name.clone(),
                reason,
            })
        };
        match &self.interface {
            Some(i) => validate_interface_name(i)?,
            None if self.kind == NetworkType::Custom => {
                return bad("a custom network needs an interface".to_string())
            }
            None => {}
        }
        if self.subnet.is_none() && self.subnet6.is_none() {
            return bad("a subnet or subnet6 is required".to_string());
        }
        if let Nat::Interface(i) = &self.nat {
            validate_interface_name(i)?;
        }
        for (field, gw) in [("gateway", self.gateway), ("gateway6", self.gateway6)] {
            let Gateway::Addr(addr) = gw else { continue };
            if self.kind != NetworkType::Bridge {
                return bad(format!(
                    "{field} {addr} is only for bridge networks, not {} networks",
                    self.kind
                ));
            }
            match (field, addr) {
                ("gateway", IpAddr::V4(a)) => {
                    let Some(net) = self.subnet else {
                        return bad(format!("{field} {addr} needs a subnet"));
                    };
                    if !net.contains(&a) {
                        return bad(format!("{field} {addr} is outside subnet {net}"));
                    }
                    if a == net.network() {
                        return bad(format!(
                            "{field} {addr} is the network address of subnet {net}"
                        ));
                    }
                    if a == net.broadcast() {
                        return bad(format!(
                            "{field} {addr} is the broadcast address of subnet {net}"
                        ));
                    }
                }
                ("gateway6", IpAddr::V6(a)) => {
                    let Some(net) = self.subnet6 else {
                        return bad(format!("{field} {addr} needs a subnet6"));
                    };
                    if !net.contains(&a) {
                        return bad(format!("{field} {addr} is outside subnet6 {net}"));
                    }
                    if a == net.network() {
                        return bad(format!(
                            "{field} {addr} is the subnet-router anycast address of subnet6 {net}"
                        ));
                    }
                }
                _ => {
                    return bad(format!("{field} {addr} is of the wrong IP version"));
                }
            }
        }
        Ok(())
    }

    /// The IPv4 gateway vnet containers get: `None` unless this is a bridge network
    /// with a subnet and a gateway (`<auto>` is the subnet's first address).
    pub fn gateway_v4(&self) -> Option<Ipv4Addr> {
        if self.kind != NetworkType::Bridge {
            return None;
        }
        let net = self.subnet?;
        match self.gateway {
            Gateway::None => None,
            Gateway::Auto => crate::ipam::auto_gateway_v4(net),
            Gateway::Addr(IpAddr::V4(a)) => Some(a),
            Gateway::Addr(IpAddr::V6(_)) => None,
        }
    }

    /// The IPv6 gateway vnet containers get; see [`NetworkSpec::gateway_v4`].
    pub fn gateway_v6(&self) -> Option<Ipv6Addr> {
        if self.kind != NetworkType::Bridge {
            return None;
        }
        let net = self.subnet6?;
        match self.gateway6 {
            Gateway::None => None,
            Gateway::Auto => crate::ipam::auto_gateway_v6(net),
            Gateway::Addr(IpAddr::V6(a)) => Some(a),
            Gateway::Addr(IpAddr::V4(_)) => None,
        }
    }

    /// The resolved form for the renderers: `interface` is the host interface
    /// actually used (the spec's, or a generated one), `host_gateway` the interface
    /// of the host's default route that `<host-gateway>` stands for.
    pub fn to_rules(&self, interface: impl Into<String>, host_gateway: Option<&str>) -> NetRules {
        NetRules {
            name: self.name.clone(),
            interface: interface.into(),
            subnet: self.subnet.map(|n| n.trunc()),
            subnet6: self.subnet6.map(|n| n.trunc()),
            gateway: self.gateway_v4(),
            gateway6: self.gateway_v6(),
            nat: self.nat.resolve(host_gateway),
            icc: self.icc,
            internal: self.internal,
        }
    }
}

/// A network, resolved, as the firewall renderers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRules {
    /// The network's name.
    pub name: String,
    /// The host interface of the network (bridge, loopback or custom).
    pub interface: String,
    /// The IPv4 subnet.
    pub subnet: Option<Ipv4Net>,
    /// The IPv6 subnet.
    pub subnet6: Option<Ipv6Net>,
    /// The IPv4 gateway address on the network's interface, if any.
    pub gateway: Option<Ipv4Addr>,
    /// The IPv6 gateway address on the network's interface, if any.
    pub gateway6: Option<Ipv6Addr>,
    /// The interface outgoing traffic is NAT'ed to (`<host-gateway>` already resolved).
    pub nat: Option<String>,
    /// Whether containers on the network may talk to each other.
    pub icc: bool,
    /// Whether traffic may not leave the network.
    pub internal: bool,
}

/// A container's connection to a network.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EndpointRules {
    /// The container's id.
    pub container: String,
    /// The network's name.
    pub network: String,
    /// The container's IPv4 address on the network.
    pub ipv4: Option<Ipv4Addr>,
    /// The container's IPv6 address on the network.
    pub ipv6: Option<Ipv6Addr>,
    /// The host side of the container's link (FreeBSD epair, Linux veth), if it has one.
    #[serde(default)]
    pub host_interface: Option<String>,
}

/// A port a container publishes, with everything resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRules {
    /// The container's id.
    pub container: String,
    /// The network whose address receives the traffic.
    pub network: String,
    /// The container's IPv4 address on that network.
    pub ipv4: Option<Ipv4Addr>,
    /// The container's IPv6 address on that network.
    pub ipv6: Option<Ipv6Addr>,
    /// The port(s) as the user gave them.
    pub port: PublishedPort,
    /// The host interface the traffic arrives on (the port's own, or the host gateway).
    pub interface: String,
}

/// Everything a firewall ruleset is rendered from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FirewallInput {
    /// The networks.
    pub networks: Vec<NetRules>,
    /// The containers' connections to them.
    pub endpoints: Vec<EndpointRules>,
    /// The published ports.
    pub published: Vec<PublishRules>,
    /// The interface of the host's default route, if known.
    pub host_gateway: Option<String>,
}

impl FirewallInput {
    /// Check what the renderers rely on: every interface name is valid, network
    /// names are valid and unique, every endpoint and published port names a known
    /// network, and addresses lie inside their network's subnets.
    pub fn validate(&self) -> Result<()> {
        let mut names = BTreeSet::new();
        for n in &self.networks {
            validate_network_name(&n.name)?;
            if !names.insert(n.name.as_str()) {
                return Err(Error::InvalidNetwork {
                    network: n.name.clone(),
                    reason: "the name is used by two networks".to_string(),
                });
            }
            validate_interface_name(&n.interface)?;
            if let Some(nat) = &n.nat {
                validate_interface_name(nat)?;
            }
        }
        if let Some(gw) = &self.host_gateway {
            validate_interface_name(gw)?;
        }
        let check_addrs = |network: &str, v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>| {
            let Some(net) = self.network(network) else {
                return Err(Error::Invalid(format!("unknown network '{network}'")));
            };
            if let Some(a) = v4 {
                match net.subnet {
                    Some(s) if s.contains(&a) => {}
                    Some(s) => {
                        return Err(Error::AddressOutsideSubnet {
                            address: a.into(),
                            subnet: s.into(),
                        })
                    }
                    None => {
                        return Err(Error::InvalidNetwork {
                            network: network.to_string(),
                            reason: format!("address {a} given but the network has no subnet"),
                        })
                    }
                }
            }
            if let Some(a) = v6 {
                match net.subnet6 {
                    Some(s) if s.contains(&a) => {}
                    Some(s) => {
                        return Err(Error::AddressOutsideSubnet {
                            address: a.into(),
                            subnet: s.into(),
                        })
                    }
                    None => {
                        return Err(Error::InvalidNetwork {
                            network: network.to_string(),
                            reason: format!("address {a} given but the network has no subnet6"),
                        })
                    }
                }
            }
            Ok(())
        };
        for e in &self.endpoints {
            check_addrs(&e.network, e.ipv4, e.ipv6)?;
            if let Some(i) = &e.host_interface {
                validate_interface_name(i)?;
            }
        }
        for p in &self.published {
            check_addrs(&p.network, p.ipv4, p.ipv6)?;
            validate_interface_name(&p.interface)?;
        }
        Ok(())
    }

    /// The network named `name`.
    pub fn network(&self, name: &str) -> Option<&NetRules> {
        self.networks.iter().find(|n| n.name == name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bridge() -> NetworkSpec {
        let mut s = NetworkSpec::new("testnet", NetworkType::Bridge);
        s.subnet = Some("10.2.3.0/24".parse().unwrap());
        s
    }

    #[test]
    fn words_round_trip() {
        for t in [
            NetworkType::Loopback,
            NetworkType::Bridge,
            NetworkType::Custom,
        ] {
            assert_eq!(t.to_string().parse::<NetworkType>().unwrap(), t);
        }
        for d in [Driver::Ipnet, Driver::Vnet, Driver::Host, Driver::Disabled] {
            assert_eq!(d.to_string().parse::<Driver>().unwrap(), d);
        }
        assert!("Bridge".parse::<NetworkType>().is_err());
        let e = "jail".parse::<Driver>().unwrap_err().to_string();
        assert!(e.contains("'jail'"), "{e}");
    }

    #[test]
    fn gateway_and_nat_words() {
        assert_eq!("".parse::<Gateway>().unwrap(), Gateway::None);
        assert_eq!("<auto>".parse::<Gateway>().unwrap(), Gateway::Auto);
        assert_eq!(
            "10.0.0.1".parse::<Gateway>().unwrap(),
            Gateway::Addr("10.0.0.1".parse().unwrap())
        );
        assert!("auto".parse::<Gateway>().is_err());
        for g in ["", "<auto>", "fd00::1", "10.0.0.1"] {
            assert_eq!(g.parse::<Gateway>().unwrap().to_string(), g);
        }
        assert_eq!("".parse::<Nat>().unwrap(), Nat::None);
        assert_eq!("<host-gateway>".parse::<Nat>().unwrap(), Nat::HostGateway);
        assert_eq!("em0".parse::<Nat>().unwrap(), Nat::Interface("em0".into()));
        assert!("em 0".parse::<Nat>().is_err());
        assert_eq!(Nat::HostGateway.resolve(Some("em0")), Some("em0".into()));
        assert_eq!(Nat::HostGateway.resolve(None), None);
        assert_eq!(Nat::None.resolve(Some("em0")), None);
    }

    #[test]
    fn serde_uses_kleene_words() {
        let s = bridge();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["type"], "bridge");
        assert_eq!(json["gateway"], "<auto>");
        assert_eq!(json["nat"], "<host-gateway>");
        let back: NetworkSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
        assert!(serde_json::from_str::<Gateway>("\"nope\"").is_err());
    }

    #[test]
    fn names() {
        assert!(validate_network_name("testnet").is_ok());
        assert!(validate_network_name("a.b-c_d9").is_ok());
        assert!(validate_network_name("").is_err());
        assert!(validate_network_name("-x").is_err());
        assert!(validate_network_name("a b").is_err());
        assert!(validate_network_name(&"a".repeat(65)).is_err());
        assert!(validate_interface_name("kleene0").is_ok());
        assert!(validate_interface_name("br-0123456789a").is_ok());
        assert!(validate_interface_name("br-0123456789ab").is_ok());
        let e = validate_interface_name("br-0123456789abc").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid interface name 'br-0123456789abc': it is longer than 15 characters"
        );
        for bad in ["", "0eth", "a\"b", "a/b", "a b", "a;b", "a:b", "a{b"] {
            assert!(validate_interface_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validate_rules() {
        assert!(bridge().validate().is_ok());

        let mut s = bridge();
        s.subnet = None;
        let e = s.validate().unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid network 'testnet': a subnet or subnet6 is required"
        );
        s.subnet6 = Some("fd00::/64".parse().unwrap());
        assert!(s.validate().is_ok());

        let mut s = bridge();
        s.kind = NetworkType::Custom;
        assert!(s.validate().unwrap_err().to_string().contains("interface"));
        s.interface = Some("em0".into());
        assert!(s.validate().is_ok());

        // gateways: bridge only (auto is fine anywhere)
        let mut s = bridge();
        s.kind = NetworkType::Loopback;
        assert!(s.validate().is_ok());
        s.gateway = Gateway::Addr("10.2.3.1".parse().unwrap());
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("only for bridge networks"), "{e}");

        let check = |gw: &str, want: &str| {
            let mut s = bridge();
            s.subnet6 = Some("fd00:1::/64".parse().unwrap());
            if gw.contains(':') {
                s.gateway6 = gw.parse().unwrap();
            } else {
                s.gateway = gw.parse().unwrap();
            }
            let got = s
                .validate()
                .map(|_| String::new())
                .unwrap_or_else(|e| e.to_string());
            assert!(got.contains(want), "{gw}: {got}");
        };
        check("10.2.3.1", "");
        check("10.2.3.254", "");
        check("10.2.4.1", "outside subnet 10.2.3.0/24");
        check("10.2.3.0", "network address");
        check("10.2.3.255", "broadcast address");
        check("fd00:1::1", "");
        check("fd00:1::", "anycast");
        check("fd00:2::1", "outside subnet6");

        let mut s = bridge();
        s.gateway6 = Gateway::Addr("fd00::1".parse().unwrap());
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("needs a subnet6"));
        let mut s = bridge();
        s.gateway = Gateway::Addr("fd00::1".parse().unwrap());
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("wrong IP version"));

        let mut s = bridge();
        s.name = "bad name".into();
        assert!(s.validate().is_err());
        let mut s = bridge();
        s.interface = Some("waytoolonginterface".into());
        assert!(s.validate().is_err());
    }

    #[test]
    fn resolution() {
        let mut s = bridge();
        s.subnet = Some("10.2.3.7/24".parse().unwrap());
        s.subnet6 = Some("fd00::/64".parse().unwrap());
        let r = s.to_rules("kleene0", Some("em0"));
        assert_eq!(r.subnet, Some("10.2.3.0/24".parse().unwrap()));
        assert_eq!(r.gateway, Some("10.2.3.1".parse().unwrap()));
        assert_eq!(r.gateway6, Some("fd00::1".parse().unwrap()));
        assert_eq!(r.nat.as_deref(), Some("em0"));

        s.gateway = Gateway::None;
        s.kind = NetworkType::Bridge;
        assert_eq!(s.gateway_v4(), None);
        s.kind = NetworkType::Loopback;
        s.gateway6 = Gateway::Auto;
        assert_eq!(s.gateway_v6(), None);
        assert!(Driver::Vnet.can_connect(NetworkType::Bridge));
        assert!(!Driver::Vnet.can_connect(NetworkType::Loopback));
        assert!(Driver::Ipnet.can_connect(NetworkType::Custom));
        assert!(!Driver::Host.can_connect(NetworkType::Bridge));
    }

    #[test]
    fn input_validation() {
        let net = bridge().to_rules("kleene0", Some("em0"));
        let mut input = FirewallInput {
            networks: vec![net.clone()],
            endpoints: vec![EndpointRules {
                container: "c1".into(),
                network: "testnet".into(),
                ipv4: Some("10.2.3.2".parse().unwrap()),
                ipv6: None,
                host_interface: None,
            }],
            published: vec![],
            host_gateway: Some("em0".into()),
        };
        assert!(input.validate().is_ok());
        input.endpoints[0].ipv4 = Some("10.9.9.9".parse().unwrap());
        assert!(input.validate().is_err());
        input.endpoints[0].ipv4 = None;
        input.endpoints[0].ipv6 = Some("fd00::2".parse().unwrap());
        assert!(input
            .validate()
            .unwrap_err()
            .to_string()
            .contains("no subnet6"));
        input.endpoints.clear();
        input.networks.push(net);
        assert!(input
            .validate()
            .unwrap_err()
            .to_string()
            .contains("two networks"));
    }
}
