//! A `vnet` jail's links, planned without running anything.
//!
//! Each link is an epair: the host keeps the `a` side, a member of the network's bridge, and
//! the jail gets the `b` side, moved into its network stack once the jail exists
//! ([`super::argv::move_to_vnet`], what jail(8)'s `vnet.interface` does). An interface that
//! moves between network stacks loses its addresses, so the addresses and the default routes
//! are set *inside* the jail, by the jail's own `/sbin/ifconfig` and `/sbin/route` run with
//! `jexec` ([`super::argv::in_jail`]): the jail's root must have them, as a FreeBSD base
//! system has (Kleene's vnet containers need them too).
//!
//! Tearing a link down is destroying the `a` side ([`detach`]): that destroys both ends,
//! wherever the `b` side is. When a vnet jail is removed the kernel gives its interfaces back
//! to the host, so a stopped container's epairs are whole on the host until destroyed.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{argv, Command, Epair, IfName, JailName};

/// One link of a `vnet` jail: its epair, the bridge the host side joins, and what the jail
/// side gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VnetLink {
    /// The epair, by the names it has once renamed (`a` for the host, `b` for the jail).
    pub epair: Epair,
    /// The network's bridge, which the `a` side joins.
    pub bridge: IfName,
    /// The jail side's addresses, each with its subnet's prefix length (IPv4 first).
    pub addresses: Vec<IpNet>,
    /// The network's gateways (at most one per family): the jail's default routes when this
    /// link gives them (see [`on_created`]).
    pub gateways: Vec<IpAddr>,
}

/// The host side of a link, once `ifconfig epair create` made `created`: its ends renamed to
/// the link's (unless they have those names), the `a` side added to the bridge and brought
/// up.
pub fn host_side(created: &Epair, link: &VnetLink) -> Vec<Command> {
    let mut out = Vec::with_capacity(4);
    if created != &link.epair {
        out.push(argv::rename_interface(created.a(), link.epair.a()));
        out.push(argv::rename_interface(created.b(), link.epair.b()));
    }
    out.push(argv::bridge_add_member(&link.bridge, link.epair.a()));
    out.push(argv::interface_up(link.epair.a()));
    out
}

/// The jail side of a link, once it is in the jail: run on the host, each through `jexec`.
///
/// The first IPv4 address is set with the interface brought up
/// (`ifconfig B inet ADDR/LEN up`), further ones are aliases; IPv6 is enabled on the
/// interface (`inet6 -ifdisabled`) and each IPv6 address added as an alias; a link without
/// IPv4 is brought up on its own. With `default_route`, one `route add -inet default GW` (or
/// `-inet6`) per gateway of the link follows.
pub fn jail_side(jail: &JailName, link: &VnetLink, default_route: bool) -> Vec<Command> {
    let b = link.epair.b();
    let mut inside = Vec::new();
    let mut v4 = link.addresses.iter().filter(|a| matches!(a, IpNet::V4(_)));
    match v4.next() {
        Some(first) => {
            inside.push(argv::set_address_up(b, first));
            inside.extend(v4.map(|a| argv::add_alias(b, a)));
        }
        None => inside.push(argv::interface_up(b)),
    }
    let mut v6 = link
        .addresses
        .iter()
        .filter(|a| matches!(a, IpNet::V6(_)))
        .peekable();
    if v6.peek().is_some() {
        inside.push(argv::enable_inet6(b));
        inside.extend(v6.map(|a| argv::add_alias(b, a)));
    }
    if default_route {
        inside.extend(link.gateways.iter().map(argv::route_add_default));
    }
    inside.iter().map(|c| argv::in_jail(jail, c)).collect()
}

/// What puts a newly created jail on its links, in order: every `b` side moved into the
/// jail, then each configured ([`jail_side`]). The first link that has a gateway gives the
/// jail its default routes (one per family it has a gateway for), as on Linux; the others
/// give none.
pub fn on_created(jail: &JailName, links: &[VnetLink]) -> Vec<Command> {
    let mut out: Vec<Command> = links
        .iter()
        .map(|l| argv::move_to_vnet(l.epair.b(), jail))
        .collect();
    let router = links.iter().position(|l| !l.gateways.is_empty());
    for (i, link) in links.iter().enumerate() {
        out.extend(jail_side(jail, link, router == Some(i)));
    }
    out
}

/// What adds a link to a running jail: its `b` side moved in and configured, without a
/// default route (the jail keeps the routes it has).
pub fn attach(jail: &JailName, link: &VnetLink) -> Vec<Command> {
    std::iter::once(argv::move_to_vnet(link.epair.b(), jail))
        .chain(jail_side(jail, link, false))
        .collect()
}

/// What removes a link, from a running jail or after the jail is gone: destroying the `a`
/// side, which destroys both ends.
pub fn detach(epair: &Epair) -> Command {
    argv::destroy_interface(epair.a())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(base: &str, bridge: &str, addrs: &[&str], gws: &[&str]) -> VnetLink {
        VnetLink {
            epair: Epair::from_base(base).expect("valid base"),
            bridge: IfName::new(bridge).expect("valid bridge"),
            addresses: addrs.iter().map(|a| a.parse().expect("net")).collect(),
            gateways: gws.iter().map(|a| a.parse().expect("ip")).collect(),
        }
    }

    fn jail() -> JailName {
        JailName::new("kleene-0123456789ab").expect("valid")
    }

    fn lines(cmds: &[Command]) -> Vec<String> {
        cmds.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn host_side_renames_joins_and_brings_up() {
        let l = link("ep012345678900", "kleene1", &["10.4.6.2/24"], &[]);
        let created = Epair::from_a_side("epair3a").expect("valid");
        assert_eq!(
            lines(&host_side(&created, &l)),
            [
                "/sbin/ifconfig epair3a name ep012345678900a",
                "/sbin/ifconfig epair3b name ep012345678900b",
                "/sbin/ifconfig kleene1 addm ep012345678900a",
                "/sbin/ifconfig ep012345678900a up",
            ]
        );
        assert_eq!(host_side(&l.epair, &l).len(), 2, "no renames needed");
    }

    #[test]
    fn a_new_jail_gets_its_links_and_one_default_route_per_family() {
        let links = [
            link(
                "ep0a",
                "kleene1",
                &["10.4.6.2/24", "fd00:4::2/64"],
                &["10.4.6.1", "fd00:4::1"],
            ),
            link("ep0b", "kleene2", &["10.5.0.3/24"], &["10.5.0.1"]),
        ];
        assert_eq!(
            lines(&on_created(&jail(), &links)),
            [
                "/sbin/ifconfig ep0ab vnet kleene-0123456789ab",
                "/sbin/ifconfig ep0bb vnet kleene-0123456789ab",
                "/usr/sbin/jexec kleene-0123456789ab /sbin/ifconfig ep0ab inet 10.4.6.2/24 up",
                "/usr/sbin/jexec kleene-0123456789ab /sbin/ifconfig ep0ab inet6 -ifdisabled",
                "/usr/sbin/jexec kleene-0123456789ab /sbin/ifconfig ep0ab inet6 fd00:4::2 prefixlen 64 alias",
                "/usr/sbin/jexec kleene-0123456789ab /sbin/route add -inet default 10.4.6.1",
                "/usr/sbin/jexec kleene-0123456789ab /sbin/route add -inet6 default fd00:4::1",
                "/usr/sbin/jexec kleene-0123456789ab /sbin/ifconfig ep0bb inet 10.5.0.3/24 up",
            ]
        );
    }

    #[test]
    fn the_first_link_with_a_gateway_routes() {
        let links = [
            link("ep0a", "kleene1", &["10.4.6.2/24"], &[]),
            link("ep0b", "kleene2", &["fd00:5::3/64"], &["fd00:5::1"]),
        ];
        assert_eq!(
            lines(&on_created(&jail(), &links))[2..],
            [
                "/usr/sbin/jexec kleene-0123456789ab /sbin/ifconfig ep0ab inet 10.4.6.2/24 up",
                "/usr/sbin/jexec kleene-0123456789ab /sbin/ifconfig ep0bb up",
                "/usr/sbin/jexec kleene-0123456789ab /sbin/ifconfig ep0bb inet6 -ifdisabled",
                "/usr/sbin/jexec kleene-0123456789ab /sbin/ifconfig ep0bb inet6 fd00:5::3 prefixlen 64 alias",
                "/usr/sbin/jexec kleene-0123456789ab /sbin/route add -inet6 default fd00:5::1",
            ]
        );
        assert!(on_created(&jail(), &[]).is_empty());
    }

    #[test]
    fn a_running_jail_gets_a_link_without_routes_and_loses_it_by_the_host_side() {
        let l = link("ep0a", "kleene1", &["10.4.6.9/24"], &["10.4.6.1"]);
        assert_eq!(
            lines(&attach(&jail(), &l)),
            [
                "/sbin/ifconfig ep0ab vnet kleene-0123456789ab",
                "/usr/sbin/jexec kleene-0123456789ab /sbin/ifconfig ep0ab inet 10.4.6.9/24 up",
            ]
        );
        assert_eq!(detach(&l.epair).to_string(), "/sbin/ifconfig ep0aa destroy");
    }
}
