//! The FreeBSD network platform's decisions, platform-neutral so that they are unit tested
//! everywhere: which addresses a network's interface carries, which aliases an `ipnet`
//! container needs on which interface, the jail parameters of a starting container, a
//! `vnet` container's epairs and the commands that put them in its jail, what a running
//! container's connect and disconnect change, what the reconciliation removes of
//! containers that no longer run, and which pf template is used. `freebsd.rs` only runs
//! what this plan asks for.
#![cfg_attr(not(target_os = "freebsd"), allow(dead_code))]

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use kleene_net::freebsd::jail::{self, IpnetAddress, JailParam};
use kleene_net::freebsd::vnet::{self, VnetLink};
use kleene_net::freebsd::{Command, Epair, IfName, JailName};

#[cfg(test)]
use super::interface_addresses;
use super::{host_addresses, host_err, with_prefixes};
use crate::error::{CoreError, Result};
use crate::id::Id;
use crate::model::{Driver, Endpoint, Network, NetworkType};

/// The pf template used in place of kleene-net's default when this file exists, as
/// kleened's (`pf.conf.kleene`): the user's rules around Kleene's tags.
pub(crate) const PF_TEMPLATE_PATH: &str = "/usr/local/etc/kleened/pf.conf.kleene";

/// A network's interface name, validated for FreeBSD.
pub(crate) fn interface_name(n: &Network) -> Result<IfName> {
    IfName::new(n.interface()).map_err(|e| {
        host_err(
            format!(
                "network {}: interface {:?} cannot be used",
                n.name,
                n.interface()
            ),
            e,
        )
    })
}

/// A jail's name or jid, validated for the commands that take it.
pub(crate) fn jail_name(jail: &str) -> Result<JailName> {
    JailName::new(jail).map_err(|e| host_err(format!("jail {jail:?}"), e))
}

/// The aliases an `ipnet` container's endpoint puts on its network's interface: a host
/// route (`/32`, `/128`) on a loopback or custom network (as kleened; a custom interface's
/// own routes are the user's), the subnet's prefix on a bridge (so that the bridge's
/// members are reachable from it even when the bridge has no gateway address; FreeBSD
/// accepts several addresses with one prefix on an interface).
pub(crate) fn ipnet_aliases(n: &Network, e: &Endpoint) -> Result<Vec<IpnetAddress>> {
    let interface = interface_name(n)?;
    let bridge = n.spec.kind == NetworkType::Bridge;
    let bad = |a: &dyn std::fmt::Display, prefix: u8| {
        CoreError::Internal(format!(
            "address {a}/{prefix} on {interface}: the prefix does not fit the address"
        ))
    };
    let mut out = Vec::new();
    if let Some(a) = e.ipv4 {
        let prefix = match n.spec.subnet {
            Some(s) if bridge => s.prefix_len(),
            _ => 32,
        };
        let net = Ipv4Net::new(a, prefix).map_err(|_| bad(&a, prefix))?;
        out.push(IpnetAddress {
            interface: interface.clone(),
            address: IpNet::V4(net),
        });
    }
    if let Some(a) = e.ipv6 {
        let prefix = match n.spec.subnet6 {
            Some(s) if bridge => s.prefix_len(),
            _ => 128,
        };
        let net = Ipv6Net::new(a, prefix).map_err(|_| bad(&a, prefix))?;
        out.push(IpnetAddress {
            interface: interface.clone(),
            address: IpNet::V6(net),
        });
    }
    Ok(out)
}

/// The aliases of every link, in link order.
pub(crate) fn all_aliases(links: &[(Network, Endpoint)]) -> Result<Vec<IpnetAddress>> {
    let mut out = Vec::new();
    for (n, e) in links {
        out.extend(ipnet_aliases(n, e)?);
    }
    Ok(out)
}

/// The addresses of one family of `aliases` as jail_set(2) takes them: a comma-separated
/// list in link order (the first is the jail's source address), without duplicates
/// (jail_set refuses them; two networks may give the same address).
fn address_list(aliases: &[IpnetAddress], v6: bool) -> String {
    let mut seen: Vec<IpAddr> = Vec::new();
    for a in aliases {
        let addr = a.address.addr();
        if addr.is_ipv6() == v6 && !seen.contains(&addr) {
            seen.push(addr);
        }
    }
    seen.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The jail parameters of an `ipnet` container with these aliases, for kleene-jail.
///
/// kleene-net's [`jail::ipnet`] writes them for jail(8): one `IFACE|ADDR/LEN` value per
/// address, jail(8) making the aliases and merging the repeated names. kleene-jail calls
/// jail_set(2) itself, which takes plain addresses and one value per name, and it makes no
/// aliases (this platform does, [`ipnet_aliases`]). So each family is one list
/// ([`address_list`]). A family without addresses is disabled, as [`jail::ipnet`] does, so
/// that the jail never inherits the host's addresses.
pub(crate) fn ipnet_jail_params(aliases: &[IpnetAddress]) -> Vec<JailParam> {
    let mut out = Vec::new();
    for (family, v6) in [("ip4", false), ("ip6", true)] {
        let addrs = address_list(aliases, v6);
        if addrs.is_empty() {
            out.push((family.to_string(), "disable".to_string()));
        } else {
            out.push((format!("{family}.addr"), addrs));
        }
    }
    out
}

/// A running `ipnet` jail's addresses after a connect or a disconnect, for jail_set(2)
/// with `JAIL_UPDATE`: `ip4.addr` and `ip6.addr` with the addresses of `aliases` (the
/// container's links after the change), each list whole, an empty one for a family left
/// without addresses (the jail then has none of that family, as `disable` would give).
pub(crate) fn ipnet_update_params(aliases: &[IpnetAddress]) -> Vec<JailParam> {
    [("ip4.addr", false), ("ip6.addr", true)]
        .into_iter()
        .map(|(name, v6)| (name.to_string(), address_list(aliases, v6)))
        .collect()
}

/// What starting a container takes on FreeBSD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The aliases to add to the networks' interfaces before the jail starts (`ipnet`).
    pub aliases: Vec<IpnetAddress>,
    /// The epairs to make on the host before the jail starts, each the link of a `vnet`
    /// container to a bridge network.
    pub vnet: Vec<VnetLink>,
    /// The jail's network parameters (for `vnet`, with the `exec.created` commands that
    /// move the epairs' jail sides in and configure them, see kleene-net's
    /// `jail::vnet_created`).
    pub params: Vec<JailParam>,
}

/// The link of a `vnet` container `owner` to a bridge network: the epair of the endpoint's
/// slot, the network's bridge, the endpoint's addresses with the subnets' prefixes, and
/// the network's gateways (the jail's default routes if the link gives them).
pub(crate) fn vnet_link(owner: &Id, n: &Network, e: &Endpoint) -> Result<VnetLink> {
    let (g4, g6) = host_addresses(&n.spec);
    Ok(VnetLink {
        epair: epair(owner, e.slot)?,
        bridge: interface_name(n)?,
        addresses: with_prefixes(&n.spec, e.ipv4, e.ipv6),
        gateways: g4
            .map(IpAddr::V4)
            .into_iter()
            .chain(g6.map(IpAddr::V6))
            .collect(),
    })
}

/// Why a `vnet` container cannot use network `n` (the engine refuses this before; the
/// plan does not rely on it).
fn vnet_needs_a_bridge(container: &str, n: &Network) -> CoreError {
    CoreError::InvalidInput(format!(
        "container {container} uses the vnet driver, which connects to bridge networks only, \
         not to {} network {}",
        n.spec.kind, n.name
    ))
}

/// A starting container's plan, from its driver and its links (the network and the
/// endpoint of each, in connection order); `owner` is the container's (or build's) id,
/// `jail` the name its jail is created with:
/// - `ipnet`: the aliases of every link, and the jail's addresses;
/// - `vnet`: a network stack of its own (`vnet=new`); on networks, an epair per link
///   (bridge networks only) and the commands that give the jail its side of each, its
///   addresses and its default routes once it exists. Without networks its `lo0` is left
///   down, as Kleene's;
/// - `host` and `disabled`: kleene-net's parameters (the engine passes these drivers to
///   kleene-jail without asking the platform).
pub(crate) fn container_plan(
    container: &str,
    owner: &Id,
    jail: &JailName,
    driver: Driver,
    links: &[(Network, Endpoint)],
) -> Result<Plan> {
    let plain = |params| Plan {
        aliases: Vec::new(),
        vnet: Vec::new(),
        params,
    };
    match driver {
        Driver::Host => Ok(plain(jail::host())),
        Driver::Disabled => Ok(plain(jail::disabled())),
        Driver::Vnet => {
            let mut vnet = Vec::new();
            for (n, e) in links {
                if n.spec.kind != NetworkType::Bridge {
                    return Err(vnet_needs_a_bridge(container, n));
                }
                vnet.push(vnet_link(owner, n, e)?);
            }
            let params = jail::vnet_created(jail, &vnet)
                .map_err(|e| host_err(format!("container {container}"), e))?;
            Ok(Plan {
                aliases: Vec::new(),
                vnet,
                params,
            })
        }
        Driver::Ipnet => {
            let aliases = all_aliases(links)?;
            let params = ipnet_jail_params(&aliases);
            Ok(Plan {
                aliases,
                vnet: Vec::new(),
                params,
            })
        }
    }
}

/// What a running container's connect or disconnect changes on the host and in its jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// An `ipnet` jail: the aliases to add (connect) or remove (disconnect) on the
    /// network's interface, and the jail's address lists after the change (for
    /// jail_set(2) with `JAIL_UPDATE`). A connect adds the aliases, then updates the jail;
    /// a disconnect updates the jail first, so that it stops using the address before the
    /// alias goes.
    Ipnet {
        aliases: Vec<IpnetAddress>,
        params: Vec<JailParam>,
    },
    /// A `vnet` jail's new link: the epair to make on the host (as at start), then
    /// `commands` (its jail side moved in and configured, no default route).
    VnetAttach {
        link: VnetLink,
        commands: Vec<Command>,
    },
    /// A `vnet` jail's link to remove: its epair, destroyed from the host side.
    VnetDetach { epair: Epair },
}

/// What connecting running container `owner` (named `container`, its jail `jail`) with
/// `driver` to `n` by endpoint `e` changes; `after` is every link it has once connected,
/// the new one among them.
pub(crate) fn connect_plan(
    container: &str,
    owner: &Id,
    jail: &JailName,
    driver: Driver,
    (n, e): (&Network, &Endpoint),
    after: &[(Network, Endpoint)],
) -> Result<Change> {
    match driver {
        Driver::Ipnet => Ok(Change::Ipnet {
            aliases: ipnet_aliases(n, e)?,
            params: ipnet_update_params(&all_aliases(after)?),
        }),
        Driver::Vnet if n.spec.kind != NetworkType::Bridge => {
            Err(vnet_needs_a_bridge(container, n))
        }
        Driver::Vnet => {
            let link = vnet_link(owner, n, e)?;
            let commands = vnet::attach(jail, &link);
            Ok(Change::VnetAttach { link, commands })
        }
        Driver::Host | Driver::Disabled => Err(no_networks(container, driver)),
    }
}

/// What disconnecting running container `owner` with `driver` from `n` (endpoint `e`)
/// changes; `after` is every link it keeps.
pub(crate) fn disconnect_plan(
    container: &str,
    owner: &Id,
    driver: Driver,
    (n, e): (&Network, &Endpoint),
    after: &[(Network, Endpoint)],
) -> Result<Change> {
    match driver {
        Driver::Ipnet => Ok(Change::Ipnet {
            aliases: ipnet_aliases(n, e)?,
            params: ipnet_update_params(&all_aliases(after)?),
        }),
        Driver::Vnet => Ok(Change::VnetDetach {
            epair: epair(owner, e.slot)?,
        }),
        Driver::Host | Driver::Disabled => Err(no_networks(container, driver)),
    }
}

fn no_networks(container: &str, driver: Driver) -> CoreError {
    CoreError::InvalidInput(format!(
        "container {container} uses the {driver} network driver: it cannot connect to networks"
    ))
}

/// The base name of a container's epair for link `slot`: `ep`, the first 10 characters
/// of its id and the slot in two hex digits (14 characters, leaving one for the `a`/`b`
/// of each end within FreeBSD's 15).
pub(crate) fn epair_base(container: &Id, slot: u8) -> String {
    let id: String = container.as_str().chars().take(10).collect();
    format!("ep{id}{slot:02x}")
}

/// The host end (`a` side) of a container's epair for link `slot`: a bridge member, and
/// the name the firewall knows the link by.
pub(crate) fn host_link(container: &Id, slot: u8) -> String {
    format!("{}a", epair_base(container, slot))
}

/// Whether `name` is the host end of a container's epair ([`host_link`]'s form: `ep`,
/// twelve lower-case hex digits, `a`).
pub(crate) fn is_host_link(name: &str) -> bool {
    name.len() == 15
        && name.starts_with("ep")
        && name.ends_with('a')
        && name[2..14]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A container's epair for link `slot` (see [`epair_base`]).
pub(crate) fn epair(container: &Id, slot: u8) -> Result<Epair> {
    let base = epair_base(container, slot);
    Epair::from_base(&base)
        .map_err(|e| host_err(format!("epair {base} of container {container}"), e))
}

/// The host as the reconciliation found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostView {
    /// Every interface of the host (`ifconfig -l`).
    pub interfaces: Vec<String>,
    /// The addresses on each network interface that exists, by its name.
    pub addresses: BTreeMap<String, Vec<IpAddr>>,
}

/// What is left on the host of containers (and builds) that no longer run, to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Cleanup {
    /// Addresses to remove from interfaces (`ifconfig IF inet ADDR -alias`).
    pub aliases: Vec<(IfName, IpAddr)>,
    /// Epairs to destroy (from their host side).
    pub epairs: Vec<Epair>,
}

impl Cleanup {
    /// Whether there is nothing to remove.
    pub fn is_empty(&self) -> bool {
        self.aliases.is_empty() && self.epairs.is_empty()
    }
}

fn in_subnets(n: &Network, a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => n.spec.subnet.is_some_and(|s| s.contains(a)),
        IpAddr::V6(a) => n.spec.subnet6.is_some_and(|s| s.contains(a)),
    }
}

fn link_local(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// What the reconciliation removes, from the networks, every endpoint, the owners that
/// run (running and starting containers with their drivers, builds in progress as
/// `ipnet`) and the host as found:
/// - on each network's interface, an address that is neither the host's own (a bridge's
///   gateways) nor a running `ipnet` owner's endpoint, when it is the endpoint address
///   of an owner that does not run or, on a network Kleene made (loopback, bridge), any
///   address of the network's subnets (a crashed build's, or a disconnected container's
///   whose endpoint is gone); link-local addresses are kept, and so are the addresses a
///   custom network's interface has of its own;
/// - every epair whose host side has [`host_link`]'s form and is not the link of a
///   running `vnet` container's endpoint (a stopped container's, a disconnected link's,
///   one left by a failed start).
pub(crate) fn cleanup_plan(
    networks: &[Network],
    endpoints: &[Endpoint],
    live: &BTreeMap<Id, Driver>,
    host: &HostView,
) -> Cleanup {
    let mut out = Cleanup::default();
    for n in networks {
        let Ok(interface) = IfName::new(n.interface()) else {
            continue;
        };
        let Some(present) = host.addresses.get(n.interface()) else {
            continue;
        };
        let (h4, h6) = host_addresses(&n.spec);
        let mut keep: BTreeSet<IpAddr> = h4
            .map(IpAddr::V4)
            .into_iter()
            .chain(h6.map(IpAddr::V6))
            .collect();
        let mut dead = BTreeSet::new();
        for e in endpoints.iter().filter(|e| e.network == n.id) {
            let addrs = e
                .ipv4
                .map(IpAddr::V4)
                .into_iter()
                .chain(e.ipv6.map(IpAddr::V6));
            if live.get(&e.container) == Some(&Driver::Ipnet) {
                keep.extend(addrs);
            } else {
                dead.extend(addrs);
            }
        }
        let ours = n.spec.kind != NetworkType::Custom;
        let mut seen = BTreeSet::new();
        for a in present {
            let stale = !keep.contains(a)
                && !link_local(a)
                && (dead.contains(a) || (ours && in_subnets(n, a)));
            if stale && seen.insert(*a) {
                out.aliases.push((interface.clone(), *a));
            }
        }
    }
    let running_links: BTreeSet<String> = endpoints
        .iter()
        .filter(|e| live.get(&e.container) == Some(&Driver::Vnet))
        .map(|e| host_link(&e.container, e.slot))
        .collect();
    for name in &host.interfaces {
        if is_host_link(name) && !running_links.contains(name) {
            if let Ok(epair) = Epair::from_a_side(name) {
                out.epairs.push(epair);
            }
        }
    }
    out
}

/// Whether ifconfig's stderr says the address being added is there already (a start
/// after a crash, or two containers' networks racing): adding it is then done.
pub(crate) fn alias_exists(stderr: &str) -> bool {
    stderr.contains("File exists")
}

/// The pf template: the file at [`PF_TEMPLATE_PATH`] when it could be read, kleene-net's
/// default when it does not exist; another error reading it is reported, not passed over.
pub(crate) fn pf_template(read: std::io::Result<String>) -> Result<Cow<'static, str>> {
    match read {
        Ok(text) => Ok(Cow::Owned(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(Cow::Borrowed(kleene_net::pf::DEFAULT_PF_TEMPLATE))
        }
        Err(e) => Err(CoreError::io(
            format!("reading the pf template {PF_TEMPLATE_PATH}"),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Gateway, NetworkSpec};

    fn id(s: &str) -> Id {
        Id::parse(s).expect("a valid test id")
    }

    fn network(name: &str, kind: NetworkType, interface: &str) -> Network {
        let mut spec = NetworkSpec::new(name, kind);
        spec.interface = Some(interface.to_string());
        spec.subnet = Some("10.2.3.0/24".parse().expect("a valid subnet"));
        spec.subnet6 = Some("fd00:2::/64".parse().expect("a valid subnet6"));
        Network {
            id: id("aaaaaaaaaaaa"),
            name: name.to_string(),
            spec,
            created: 0,
        }
    }

    /// `network` with its own id and subnets 10.N.0.0/24 and fd00:N::/64.
    fn network_n(name: &str, kind: NetworkType, interface: &str, n: u8) -> Network {
        let mut net = network(name, kind, interface);
        net.id = id(&format!("bbbbbbbbbb{n:02x}"));
        net.spec.subnet = Some(format!("10.{n}.0.0/24").parse().expect("subnet"));
        net.spec.subnet6 = Some(format!("fd00:{n}::/64").parse().expect("subnet6"));
        net
    }

    const C: &str = "0123456789ab";

    fn endpoint(n: &Network, v4: Option<&str>, v6: Option<&str>, slot: u8) -> Endpoint {
        endpoint_of(C, n, v4, v6, slot)
    }

    fn endpoint_of(
        owner: &str,
        n: &Network,
        v4: Option<&str>,
        v6: Option<&str>,
        slot: u8,
    ) -> Endpoint {
        Endpoint {
            container: id(owner),
            network: n.id.clone(),
            network_name: n.name.clone(),
            ipv4: v4.map(|a| a.parse().expect("a valid address")),
            ipv6: v6.map(|a| a.parse().expect("a valid address")),
            slot,
        }
    }

    fn jail() -> JailName {
        jail_name("kleene-0123456789ab").expect("a valid jail name")
    }

    fn plan(driver: Driver, links: &[(Network, Endpoint)]) -> Result<Plan> {
        container_plan("web", &id(C), &jail(), driver, links)
    }

    fn values(aliases: &[IpnetAddress]) -> Vec<String> {
        aliases.iter().map(IpnetAddress::jail_value).collect()
    }

    fn pairs(params: &[JailParam]) -> Vec<(&str, &str)> {
        params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    fn lines(cmds: &[Command]) -> Vec<String> {
        cmds.iter().map(ToString::to_string).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("a valid address")
    }

    #[test]
    fn loopback_and_custom_aliases_are_host_routes() {
        for kind in [NetworkType::Loopback, NetworkType::Custom] {
            let n = network("net", kind, "kleene0");
            let e = endpoint(&n, Some("10.2.3.2"), Some("fd00:2::2"), 0);
            let a = ipnet_aliases(&n, &e).expect("aliases");
            assert_eq!(
                values(&a),
                ["kleene0|10.2.3.2/32", "kleene0|fd00:2::2/128"],
                "{kind}"
            );
        }
    }

    #[test]
    fn bridge_aliases_take_the_subnet_prefix() {
        let n = network("br", NetworkType::Bridge, "kleene1");
        let e = endpoint(&n, Some("10.2.3.7"), Some("fd00:2::7"), 0);
        let a = ipnet_aliases(&n, &e).expect("aliases");
        assert_eq!(values(&a), ["kleene1|10.2.3.7/24", "kleene1|fd00:2::7/64"]);
        let only4 = endpoint(&n, Some("10.2.3.8"), None, 0);
        assert_eq!(
            values(&ipnet_aliases(&n, &only4).expect("aliases")),
            ["kleene1|10.2.3.8/24"]
        );
    }

    #[test]
    fn a_bad_interface_name_is_a_typed_network_error() {
        let n = network("bad", NetworkType::Custom, "em 0");
        let e = endpoint(&n, Some("10.2.3.2"), None, 0);
        let err = ipnet_aliases(&n, &e).expect_err("an error");
        assert!(
            err.to_string().starts_with(
                "network bad: interface \"em 0\" cannot be used: invalid interface name"
            ),
            "{err}"
        );
        assert!(
            matches!(
                err,
                CoreError::Network {
                    source: kleene_net::HostError::FreeBsd(
                        kleene_net::freebsd::Error::Invalid { .. }
                    ),
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn interface_addresses_are_the_bridge_gateways() {
        let br = network("br", NetworkType::Bridge, "kleene1");
        assert_eq!(
            interface_addresses(&br),
            [
                "10.2.3.1/24".parse::<IpNet>().expect("net"),
                "fd00:2::1/64".parse::<IpNet>().expect("net"),
            ]
        );
        let mut none = br.clone();
        none.spec.gateway = Gateway::None;
        none.spec.gateway6 = Gateway::None;
        assert!(interface_addresses(&none).is_empty());
        // On FreeBSD a loopback network's interface carries only the containers' aliases.
        if !cfg!(target_os = "linux") {
            let lo = network("lo", NetworkType::Loopback, "kleene0");
            assert!(interface_addresses(&lo).is_empty());
        }
        let custom = network("c", NetworkType::Custom, "em0");
        assert!(interface_addresses(&custom).is_empty());
    }

    #[test]
    fn ipnet_params_are_plain_lists_in_link_order() {
        let a = network("a", NetworkType::Loopback, "kleene0");
        let b = network("b", NetworkType::Bridge, "kleene1");
        let links = vec![
            (
                a.clone(),
                endpoint(&a, Some("10.2.3.2"), Some("fd00:2::2"), 0),
            ),
            (b.clone(), endpoint(&b, Some("10.2.3.9"), None, 1)),
        ];
        let plan = plan(Driver::Ipnet, &links).expect("a plan");
        assert_eq!(
            values(&plan.aliases),
            [
                "kleene0|10.2.3.2/32",
                "kleene0|fd00:2::2/128",
                "kleene1|10.2.3.9/24"
            ]
        );
        assert!(plan.vnet.is_empty());
        assert_eq!(
            pairs(&plan.params),
            [("ip4.addr", "10.2.3.2,10.2.3.9"), ("ip6.addr", "fd00:2::2")]
        );
    }

    #[test]
    fn ipnet_params_disable_a_family_without_addresses_and_drop_duplicates() {
        let a = network("a", NetworkType::Loopback, "kleene0");
        let b = network("b", NetworkType::Loopback, "kleene2");
        let links = vec![
            (a.clone(), endpoint(&a, Some("10.2.3.2"), None, 0)),
            (b.clone(), endpoint(&b, Some("10.2.3.2"), None, 1)),
        ];
        let plan = plan(Driver::Ipnet, &links).expect("a plan");
        assert_eq!(plan.aliases.len(), 2, "one alias on each interface");
        assert_eq!(
            pairs(&plan.params),
            [("ip4.addr", "10.2.3.2"), ("ip6", "disable")]
        );
        let only6 = ipnet_jail_params(
            &ipnet_aliases(&a, &endpoint(&a, None, Some("fd00:2::5"), 0)).expect("aliases"),
        );
        assert_eq!(
            pairs(&only6),
            [("ip4", "disable"), ("ip6.addr", "fd00:2::5")]
        );
    }

    #[test]
    fn a_container_without_networks_gets_no_addresses() {
        let p = plan(Driver::Ipnet, &[]).expect("a plan");
        assert!(p.aliases.is_empty());
        assert_eq!(p.params, jail::disabled());
        let p = plan(Driver::Vnet, &[]).expect("a plan");
        assert_eq!(pairs(&p.params), [("vnet", "new")]);
        assert!(p.vnet.is_empty());
        assert_eq!(
            plan(Driver::Host, &[]).expect("a plan").params,
            jail::host()
        );
        assert_eq!(
            plan(Driver::Disabled, &[]).expect("a plan").params,
            jail::disabled()
        );
    }

    /// What a vnet container gets at start: an epair per bridge network, made on the
    /// host, and the commands that move each jail side in and configure it; the first
    /// network with a gateway gives the default routes.
    #[test]
    fn a_vnet_container_gets_an_epair_per_network_and_its_routes() {
        let a = network_n("a", NetworkType::Bridge, "kleene1", 4);
        let mut b = network_n("b", NetworkType::Bridge, "kleene2", 5);
        b.spec.gateway6 = Gateway::None;
        let links = vec![
            (
                a.clone(),
                endpoint(&a, Some("10.4.0.2"), Some("fd00:4::2"), 0),
            ),
            (
                b.clone(),
                endpoint(&b, Some("10.5.0.2"), Some("fd00:5::2"), 1),
            ),
        ];
        let p = plan(Driver::Vnet, &links).expect("a plan");
        assert!(p.aliases.is_empty(), "no alias on the host");
        assert_eq!(p.vnet.len(), 2);
        assert_eq!(p.vnet[0].epair.a().as_str(), "ep012345678900a");
        assert_eq!(p.vnet[0].bridge.as_str(), "kleene1");
        assert_eq!(p.vnet[1].epair.b().as_str(), "ep012345678901b");
        assert_eq!(
            p.vnet[1].addresses,
            [
                "10.5.0.2/24".parse::<IpNet>().expect("net"),
                "fd00:5::2/64".parse().expect("net")
            ]
        );
        assert_eq!(p.vnet[1].gateways, [ip("10.5.0.1")], "no IPv6 gateway");
        let jexec = "/usr/sbin/jexec kleene-0123456789ab";
        assert_eq!(
            pairs(&p.params),
            [
                ("vnet", "new"),
                (
                    "exec.created",
                    "/sbin/ifconfig ep012345678900b vnet kleene-0123456789ab"
                ),
                (
                    "exec.created",
                    "/sbin/ifconfig ep012345678901b vnet kleene-0123456789ab"
                ),
                (
                    "exec.created",
                    &*format!("{jexec} /sbin/ifconfig ep012345678900b inet 10.4.0.2/24 up")
                ),
                (
                    "exec.created",
                    &*format!("{jexec} /sbin/ifconfig ep012345678900b inet6 -ifdisabled")
                ),
                (
                    "exec.created",
                    &*format!(
                        "{jexec} /sbin/ifconfig ep012345678900b inet6 fd00:4::2 prefixlen 64 alias"
                    )
                ),
                (
                    "exec.created",
                    &*format!("{jexec} /sbin/route add -inet default 10.4.0.1")
                ),
                (
                    "exec.created",
                    &*format!("{jexec} /sbin/route add -inet6 default fd00:4::1")
                ),
                (
                    "exec.created",
                    &*format!("{jexec} /sbin/ifconfig ep012345678901b inet 10.5.0.2/24 up")
                ),
                (
                    "exec.created",
                    &*format!("{jexec} /sbin/ifconfig ep012345678901b inet6 -ifdisabled")
                ),
                (
                    "exec.created",
                    &*format!(
                        "{jexec} /sbin/ifconfig ep012345678901b inet6 fd00:5::2 prefixlen 64 alias"
                    )
                ),
            ]
        );
    }

    #[test]
    fn a_vnet_container_connects_to_bridges_only() {
        let lo = network("lo", NetworkType::Loopback, "kleene0");
        let links = vec![(lo.clone(), endpoint(&lo, Some("10.2.3.2"), None, 0))];
        match plan(Driver::Vnet, &links) {
            Err(CoreError::InvalidInput(m)) => {
                assert!(m.contains("bridge networks only"), "{m}");
                assert!(m.contains("loopback network lo"), "{m}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// A running ipnet container: connect adds the alias and gives the jail every
    /// address; disconnect takes the address out of the jail's lists and the alias away.
    #[test]
    fn live_ipnet_changes_update_the_aliases_and_the_jails_addresses() {
        let a = network_n("a", NetworkType::Loopback, "kleene0", 2);
        let b = network_n("b", NetworkType::Bridge, "kleene1", 3);
        let ea = endpoint(&a, Some("10.2.0.2"), None, 0);
        let eb = endpoint(&b, Some("10.3.0.5"), Some("fd00:3::5"), 1);
        let both = vec![(a.clone(), ea.clone()), (b.clone(), eb.clone())];
        let c = connect_plan("web", &id(C), &jail(), Driver::Ipnet, (&b, &eb), &both)
            .expect("a change");
        let Change::Ipnet { aliases, params } = c else {
            panic!("expected an ipnet change, got {c:?}");
        };
        assert_eq!(
            values(&aliases),
            ["kleene1|10.3.0.5/24", "kleene1|fd00:3::5/64"]
        );
        assert_eq!(
            pairs(&params),
            [("ip4.addr", "10.2.0.2,10.3.0.5"), ("ip6.addr", "fd00:3::5")]
        );
        let d =
            disconnect_plan("web", &id(C), Driver::Ipnet, (&b, &eb), &both[..1]).expect("a change");
        let Change::Ipnet { aliases, params } = d else {
            panic!("expected an ipnet change, got {d:?}");
        };
        assert_eq!(
            values(&aliases),
            ["kleene1|10.3.0.5/24", "kleene1|fd00:3::5/64"]
        );
        assert_eq!(pairs(&params), [("ip4.addr", "10.2.0.2"), ("ip6.addr", "")]);
        let last = disconnect_plan("web", &id(C), Driver::Ipnet, (&a, &ea), &[]).expect("a change");
        assert!(
            matches!(&last, Change::Ipnet { params, .. } if pairs(params) == [("ip4.addr", ""), ("ip6.addr", "")]),
            "{last:?}"
        );
    }

    /// A running vnet container: connect makes the link's epair and moves its jail side
    /// in (no default route); disconnect destroys the epair.
    #[test]
    fn live_vnet_changes_make_and_destroy_the_epair() {
        let b = network_n("b", NetworkType::Bridge, "kleene1", 3);
        let e = endpoint(&b, Some("10.3.0.5"), None, 2);
        let jid = jail_name("17").expect("a jid");
        let links = vec![(b.clone(), e.clone())];
        let c =
            connect_plan("web", &id(C), &jid, Driver::Vnet, (&b, &e), &links).expect("a change");
        let Change::VnetAttach { link, commands } = c else {
            panic!("expected a vnet attach, got {c:?}");
        };
        assert_eq!(link.epair.a().as_str(), "ep012345678902a");
        assert_eq!(link.bridge.as_str(), "kleene1");
        assert_eq!(
            lines(&commands),
            [
                "/sbin/ifconfig ep012345678902b vnet 17",
                "/usr/sbin/jexec 17 /sbin/ifconfig ep012345678902b inet 10.3.0.5/24 up",
            ]
        );
        let d = disconnect_plan("web", &id(C), Driver::Vnet, (&b, &e), &[]).expect("a change");
        assert_eq!(
            d,
            Change::VnetDetach {
                epair: epair(&id(C), 2).expect("an epair")
            }
        );
        let lo = network("lo", NetworkType::Loopback, "kleene0");
        let le = endpoint(&lo, Some("10.2.3.2"), None, 0);
        assert!(connect_plan("web", &id(C), &jid, Driver::Vnet, (&lo, &le), &[]).is_err());
        assert!(connect_plan("web", &id(C), &jid, Driver::Host, (&b, &e), &[]).is_err());
    }

    #[test]
    fn epair_names_fit_freebsd() {
        let c = id(C);
        assert_eq!(epair_base(&c, 0), "ep012345678900");
        assert_eq!(host_link(&c, 255), "ep0123456789ffa");
        let e = epair(&c, 7).expect("an epair");
        assert_eq!(e.a().as_str(), "ep012345678907a");
        assert_eq!(e.b().as_str(), "ep012345678907b");
        assert_eq!(e.a().as_str(), host_link(&c, 7));
        for slot in [0, 9, 10, 255] {
            let link = host_link(&c, slot);
            assert!(IfName::new(link.as_str()).is_ok(), "{link}");
            assert!(is_host_link(&link), "{link}");
            assert!(
                kleene_net::model::validate_interface_name(&link).is_ok(),
                "{link}"
            );
        }
        for other in [
            "ep012345678907b",
            "epair0a",
            "ep0123456789zza",
            "kleene0",
            "ep012345678907aa",
        ] {
            assert!(!is_host_link(other), "{other}");
        }
        // Ten of the id's twelve characters name the link: two containers collide only when
        // those agree (one chance in 2^40).
        assert_ne!(host_link(&c, 1), host_link(&id("0123456788ab"), 1));
        assert_eq!(host_link(&c, 1), host_link(&id("0123456789ff"), 1));
    }

    /// What the reconciliation (at every stop, and in `Engine::open`'s repair) removes.
    #[test]
    fn the_cleanup_removes_what_stopped_containers_left() {
        let lo = network_n("lo", NetworkType::Loopback, "kleene0", 2);
        let br = network_n("br", NetworkType::Bridge, "kleene1", 3);
        let custom = network_n("c", NetworkType::Custom, "em0", 4);
        let running = "a11111111111";
        let stopped = "b22222222222";
        let vnet_running = "c33333333333";
        let build = "d44444444444";
        let endpoints = vec![
            endpoint_of(running, &lo, Some("10.2.0.2"), Some("fd00:2::2"), 0),
            endpoint_of(stopped, &lo, Some("10.2.0.3"), None, 0),
            endpoint_of(stopped, &custom, Some("10.4.0.3"), None, 1),
            endpoint_of(running, &custom, Some("10.4.0.2"), None, 1),
            endpoint_of(vnet_running, &br, Some("10.3.0.2"), None, 0),
            endpoint_of(stopped, &br, Some("10.3.0.3"), None, 2),
            endpoint_of(build, &lo, Some("10.2.0.9"), None, 0),
        ];
        let live: BTreeMap<Id, Driver> = [
            (id(running), Driver::Ipnet),
            (id(vnet_running), Driver::Vnet),
            (id(build), Driver::Ipnet),
        ]
        .into_iter()
        .collect();
        let addrs = |list: &[&str]| list.iter().map(|a| ip(a)).collect::<Vec<_>>();
        let stopped_b = epair(&id(stopped), 2).expect("an epair").b().to_string();
        let host = HostView {
            interfaces: [
                "em0",
                "lo0",
                "kleene0",
                "kleene1",
                &host_link(&id(vnet_running), 0),
                &host_link(&id(vnet_running), 1),
                &host_link(&id(stopped), 2),
                stopped_b.as_str(),
                "epair0a",
            ]
            .iter()
            .map(ToString::to_string)
            .collect(),
            addresses: [
                (
                    "kleene0",
                    addrs(&[
                        "10.2.0.2",
                        "fd00:2::2",
                        "10.2.0.3",
                        "10.2.0.7",
                        "10.2.0.9",
                        "fe80::1",
                    ]),
                ),
                (
                    "kleene1",
                    addrs(&["10.3.0.1", "fd00:3::1", "10.3.0.3", "10.3.0.2"]),
                ),
                // em0's own address is in the custom network's subnet: it stays.
                ("em0", addrs(&["10.4.0.1", "10.4.0.2", "10.4.0.3"])),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        };
        let networks = [lo.clone(), br.clone(), custom.clone()];
        let plan = cleanup_plan(&networks, &endpoints, &live, &host);
        let removed: Vec<(String, String)> = plan
            .aliases
            .iter()
            .map(|(i, a)| (i.to_string(), a.to_string()))
            .collect();
        let want: Vec<(String, String)> = [
            // the stopped container's, and one nobody owns any more, on Kleene's loopback
            ("kleene0", "10.2.0.3"),
            ("kleene0", "10.2.0.7"),
            // a stopped container's on a bridge (a vnet container's is not on the bridge)
            ("kleene1", "10.3.0.3"),
            ("kleene1", "10.3.0.2"),
            // on a custom interface, only a stopped container's
            ("em0", "10.4.0.3"),
        ]
        .iter()
        .map(|(i, a)| (i.to_string(), a.to_string()))
        .collect();
        assert_eq!(removed, want);
        let epairs: Vec<&str> = plan.epairs.iter().map(|e| e.a().as_str()).collect();
        assert_eq!(
            epairs,
            [host_link(&id(vnet_running), 1), host_link(&id(stopped), 2)],
            "a slot the running container no longer has, and the stopped one's"
        );
        // Nothing runs, nothing is known: everything of Kleene's in the subnets goes.
        let none = cleanup_plan(&networks, &[], &BTreeMap::new(), &host);
        assert_eq!(none.epairs.len(), 3);
        assert!(!none.aliases.iter().any(|(i, _)| i.as_str() == "em0"));
        assert!(cleanup_plan(&networks, &endpoints, &live, &HostView::default()).is_empty());
    }

    #[test]
    fn existing_aliases_are_recognised() {
        assert!(alias_exists("ifconfig: ioctl (SIOCAIFADDR): File exists\n"));
        assert!(!alias_exists(
            "ifconfig: interface kleene0 does not exist\n"
        ));
    }

    #[test]
    fn the_pf_template_file_wins_when_present() {
        let t = pf_template(Ok("custom\n".into())).expect("a template");
        assert_eq!(t, "custom\n");
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        let t = pf_template(Err(missing)).expect("the default");
        assert_eq!(t, kleene_net::pf::DEFAULT_PF_TEMPLATE);
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let err = pf_template(Err(denied)).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|m| m.contains(PF_TEMPLATE_PATH)),
            "{err:?}"
        );
    }
}
