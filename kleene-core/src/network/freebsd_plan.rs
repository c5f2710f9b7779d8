//! The FreeBSD network platform's decisions, platform-neutral so that they are unit tested
//! everywhere: which addresses a network's interface carries, which aliases an `ipnet`
//! container needs on which interface, the jail parameters of a starting container, the
//! names of a container's epairs, and which pf template is used. `freebsd.rs` only runs
//! the commands this plan asks for.
#![cfg_attr(not(target_os = "freebsd"), allow(dead_code))]

use std::borrow::Cow;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use kleene_net::freebsd::jail::{self, IpnetAddress, JailParam};
use kleene_net::freebsd::{Epair, IfName};

#[cfg(test)]
use super::interface_addresses;
use crate::error::{CoreError, Result};
use crate::id::Id;
use crate::model::{Driver, Endpoint, Network, NetworkType};

/// The pf template used in place of kleene-net's default when this file exists, as
/// kleened's (`pf.conf.kleene`): the user's rules around Kleene's tags.
pub(crate) const PF_TEMPLATE_PATH: &str = "/usr/local/etc/kleened/pf.conf.kleene";

/// A network's interface name, validated for FreeBSD.
pub(crate) fn interface_name(n: &Network) -> Result<IfName> {
    IfName::new(n.interface()).map_err(|e| {
        CoreError::Network(format!(
            "network {}: interface {:?} cannot be used: {e}",
            n.name,
            n.interface()
        ))
    })
}

/// The aliases an `ipnet` container's endpoint puts on its network's interface: a host
/// route (`/32`, `/128`) on a loopback or custom network (as kleened; a custom interface's
/// own routes are the user's), the subnet's prefix on a bridge (so that the bridge's
/// members are reachable from it even when the bridge has no gateway address; FreeBSD
/// accepts several addresses with one prefix on an interface).
pub(crate) fn ipnet_aliases(n: &Network, e: &Endpoint) -> Result<Vec<IpnetAddress>> {
    let interface = interface_name(n)?;
    let bridge = n.spec.kind == NetworkType::Bridge;
    let mut out = Vec::new();
    if let Some(a) = e.ipv4 {
        let prefix = match n.spec.subnet {
            Some(s) if bridge => s.prefix_len(),
            _ => 32,
        };
        let net = Ipv4Net::new(a, prefix).map_err(|err| {
            CoreError::Network(format!("address {a}/{prefix} on {interface}: {err}"))
        })?;
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
        let net = Ipv6Net::new(a, prefix).map_err(|err| {
            CoreError::Network(format!("address {a}/{prefix} on {interface}: {err}"))
        })?;
        out.push(IpnetAddress {
            interface,
            address: IpNet::V6(net),
        });
    }
    Ok(out)
}

/// The jail parameters of an `ipnet` container with these aliases, for kleene-jail.
///
/// kleene-net's [`jail::ipnet`] writes them for jail(8): one `IFACE|ADDR/LEN` value per
/// address, jail(8) making the aliases and merging the repeated names. kleene-jail calls
/// jail_set(2) itself, which takes plain addresses and one value per name, and it makes no
/// aliases (this platform does, [`ipnet_aliases`]). So each family is one comma-separated
/// list, in link order (the first address is the jail's source address), without
/// duplicates (jail_set refuses them; two networks with overlapping subnets may give the
/// same address). A family without addresses is disabled, as [`jail::ipnet`] does, so that
/// the jail never inherits the host's addresses.
pub(crate) fn ipnet_jail_params(aliases: &[IpnetAddress]) -> Vec<JailParam> {
    let list = |v6: bool| {
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
    };
    let mut out = Vec::new();
    for (family, v6) in [("ip4", false), ("ip6", true)] {
        let addrs = list(v6);
        if addrs.is_empty() {
            out.push((family.to_string(), "disable".to_string()));
        } else {
            out.push((format!("{family}.addr"), addrs));
        }
    }
    out
}

/// What starting a container takes on FreeBSD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The aliases to add to the networks' interfaces before the jail starts.
    pub aliases: Vec<IpnetAddress>,
    /// The jail's network parameters.
    pub params: Vec<JailParam>,
}

/// Why a `vnet` container with networks cannot start on FreeBSD in this version.
pub(crate) fn vnet_unsupported(container: &str, networks: &[&str]) -> CoreError {
    CoreError::Unsupported(format!(
        "container {container}: the vnet driver cannot connect to networks ({}) on FreeBSD \
         in this version: the jail side of each epair must get its address and default \
         route from inside the jail before the container's command runs, and kleene-jail \
         cannot run commands in a jail before it; use the ipnet driver, or disconnect the \
         container from its networks",
        networks.join(", ")
    ))
}

/// A starting container's plan, from its driver and its links (the network and the
/// endpoint of each, in connection order):
/// - `ipnet`: the aliases of every link, and the jail's addresses;
/// - `vnet` with no network: a network stack of its own (`vnet=new`; its `lo0` is left
///   down, nothing runs in the jail to configure it); with networks: unsupported (see
///   [`vnet_unsupported`]);
/// - `host` and `disabled`: kleene-net's parameters (the engine passes these drivers to
///   kleene-jail without asking the platform).
pub(crate) fn container_plan(
    container: &str,
    driver: Driver,
    links: &[(Network, Endpoint)],
) -> Result<Plan> {
    let plain = |params| Plan {
        aliases: Vec::new(),
        params,
    };
    match driver {
        Driver::Host => Ok(plain(jail::host())),
        Driver::Disabled => Ok(plain(jail::disabled())),
        Driver::Vnet if links.is_empty() => Ok(plain(jail::vnet(&[]))),
        Driver::Vnet => {
            let names: Vec<&str> = links.iter().map(|(n, _)| n.name.as_str()).collect();
            Err(vnet_unsupported(container, &names))
        }
        Driver::Ipnet => {
            let mut aliases = Vec::new();
            for (n, e) in links {
                aliases.extend(ipnet_aliases(n, e)?);
            }
            let params = ipnet_jail_params(&aliases);
            Ok(Plan { aliases, params })
        }
    }
}

/// Why a running container cannot be connected to a network on FreeBSD in this version.
pub(crate) fn live_connect_unsupported(container: &str, network: &str) -> CoreError {
    CoreError::Unsupported(format!(
        "container {container} is running: connecting it to network {network} is not \
         supported on FreeBSD in this version (its jail's ip4.addr/ip6.addr would have to \
         be changed with jail -m, which kleene-net does not build): stop the container, \
         connect it and start it again"
    ))
}

/// Why a running container cannot be disconnected from a network on FreeBSD in this
/// version (removing the alias alone would leave the address in the jail's list, free for
/// the next container to take).
pub(crate) fn live_disconnect_unsupported(container: &str, network: &str) -> CoreError {
    CoreError::Unsupported(format!(
        "container {container} is running: disconnecting it from network {network} is not \
         supported on FreeBSD in this version (its jail's ip4.addr/ip6.addr would have to \
         be changed with jail -m, which kleene-net does not build): stop the container \
         first"
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

/// A container's epair for link `slot` (see [`epair_base`]).
// Unused until vnet containers on networks are supported (see `vnet_unsupported`).
#[allow(dead_code)]
pub(crate) fn epair(container: &Id, slot: u8) -> Result<Epair> {
    let base = epair_base(container, slot);
    Epair::from_base(&base)
        .map_err(|e| CoreError::Network(format!("epair {base} of container {container}: {e}")))
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

    fn endpoint(n: &Network, v4: Option<&str>, v6: Option<&str>, slot: u8) -> Endpoint {
        Endpoint {
            container: id("0123456789ab"),
            network: n.id.clone(),
            network_name: n.name.clone(),
            ipv4: v4.map(|a| a.parse().expect("a valid address")),
            ipv6: v6.map(|a| a.parse().expect("a valid address")),
            slot,
        }
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
    fn a_bad_interface_name_is_a_network_error() {
        let n = network("bad", NetworkType::Custom, "em 0");
        let e = endpoint(&n, Some("10.2.3.2"), None, 0);
        let err = ipnet_aliases(&n, &e).err().map(|e| e.to_string());
        let err = err.expect("an error");
        assert!(
            err.starts_with("network: network bad: interface \"em 0\""),
            "{err}"
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
        let plan = container_plan("web", Driver::Ipnet, &links).expect("a plan");
        assert_eq!(
            values(&plan.aliases),
            [
                "kleene0|10.2.3.2/32",
                "kleene0|fd00:2::2/128",
                "kleene1|10.2.3.9/24"
            ]
        );
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
        let plan = container_plan("web", Driver::Ipnet, &links).expect("a plan");
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
        let plan = container_plan("web", Driver::Ipnet, &[]).expect("a plan");
        assert!(plan.aliases.is_empty());
        assert_eq!(plan.params, jail::disabled());
        let plan = container_plan("web", Driver::Vnet, &[]).expect("a plan");
        assert_eq!(pairs(&plan.params), [("vnet", "new")]);
        assert_eq!(
            container_plan("web", Driver::Host, &[])
                .expect("a plan")
                .params,
            jail::host()
        );
        assert_eq!(
            container_plan("web", Driver::Disabled, &[])
                .expect("a plan")
                .params,
            jail::disabled()
        );
    }

    #[test]
    fn vnet_with_networks_is_unsupported_and_says_why() {
        let b = network("br", NetworkType::Bridge, "kleene1");
        let links = vec![(b.clone(), endpoint(&b, Some("10.2.3.2"), None, 0))];
        let err = container_plan("web", Driver::Vnet, &links);
        match err {
            Err(CoreError::Unsupported(m)) => {
                assert!(m.starts_with("container web: the vnet driver"), "{m}");
                assert!(m.contains("(br)"), "{m}");
                assert!(m.contains("kleene-jail cannot run commands"), "{m}");
            }
            other => panic!("expected unsupported, got {other:?}"),
        }
    }

    #[test]
    fn live_changes_are_unsupported_and_say_what_to_do() {
        let m = live_connect_unsupported("web", "net").to_string();
        assert!(
            m.contains("jail -m") && m.ends_with("start it again"),
            "{m}"
        );
        let m = live_disconnect_unsupported("web", "net").to_string();
        assert!(
            m.contains("network net") && m.ends_with("stop the container first"),
            "{m}"
        );
    }

    #[test]
    fn epair_names_fit_freebsd() {
        let c = id("0123456789ab");
        assert_eq!(epair_base(&c, 0), "ep012345678900");
        assert_eq!(host_link(&c, 255), "ep0123456789ffa");
        let e = epair(&c, 7).expect("an epair");
        assert_eq!(e.a().as_str(), "ep012345678907a");
        assert_eq!(e.b().as_str(), "ep012345678907b");
        assert_eq!(e.a().as_str(), host_link(&c, 7));
        for slot in [0, 9, 10, 255] {
            let link = host_link(&c, slot);
            assert!(IfName::new(link.as_str()).is_ok(), "{link}");
            assert!(
                kleene_net::model::validate_interface_name(&link).is_ok(),
                "{link}"
            );
        }
        // Ten of the id's twelve characters name the link: two containers collide only when
        // those agree (one chance in 2^40).
        assert_ne!(host_link(&c, 1), host_link(&id("0123456788ab"), 1));
        assert_eq!(host_link(&c, 1), host_link(&id("0123456789ff"), 1));
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
