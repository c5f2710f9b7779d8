//! The `jail(8)` parameters that put a container on its networks.
//!
//! Each function returns `(name, value)` pairs, to be passed to `jail -c` as separate
//! `name=value` arguments in order. A name may repeat: `jail(8)` appends command-line values
//! of list parameters (`ip4.addr`, `ip6.addr`, `vnet.interface`) to the list instead of
//! replacing it. Addresses carrying an interface (`IFACE|ADDR/LEN`) must be given one per
//! argument — `jail(8)` splits the interface and prefix off each value, not off each element
//! of a comma-separated list — so [`ipnet`] returns one pair per address.

use ipnet::IpNet;

use super::{Epair, IfName};

/// A jail parameter: its name and value.
pub type JailParam = (String, String);

fn param(name: &str, value: impl Into<String>) -> JailParam {
    (name.to_owned(), value.into())
}

/// An `ipnet` container's address on the interface of a network (a cloned loopback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpnetAddress {
    /// The network's interface, e.g. `kleene0`.
    pub interface: IfName,
    /// The container's address with the prefix length of the alias, usually `/32` or `/128`.
    pub address: IpNet,
}

impl IpnetAddress {
    /// The `IFACE|ADDR/LEN` form of `ip4.addr` and `ip6.addr`: `jail(8)` adds the address as
    /// an alias on the interface when the jail is created and removes it when it is removed.
    pub fn jail_value(&self) -> String {
        format!(
            "{}|{}/{}",
            self.interface,
            self.address.addr(),
            self.address.prefix_len()
        )
    }
}

/// The `disabled` driver: `ip4=disable`, `ip6=disable`.
pub fn disabled() -> Vec<JailParam> {
    vec![param("ip4", "disable"), param("ip6", "disable")]
}

/// The `host` driver: `ip4=inherit`, `ip6=inherit` (the host's network stack).
pub fn host() -> Vec<JailParam> {
    vec![param("ip4", "inherit"), param("ip6", "inherit")]
}

/// The `ipnet` driver: one `ip4.addr=IFACE|ADDR/LEN` per IPv4 address, then one
/// `ip6.addr=IFACE|ADDR/LEN` per IPv6 address. A family without addresses is disabled
/// explicitly (`ip4=disable` / `ip6=disable`) so the jail never inherits the host's.
pub fn ipnet(addresses: &[IpnetAddress]) -> Vec<JailParam> {
    let v4: Vec<JailParam> = addresses
        .iter()
        .filter(|a| matches!(a.address, IpNet::V4(_)))
        .map(|a| param("ip4.addr", a.jail_value()))
        .collect();
    let v6: Vec<JailParam> = addresses
        .iter()
        .filter(|a| matches!(a.address, IpNet::V6(_)))
        .map(|a| param("ip6.addr", a.jail_value()))
        .collect();
    let mut params = Vec::with_capacity(v4.len() + v6.len() + 2);
    if v4.is_empty() {
        params.push(param("ip4", "disable"));
    }
    params.extend(v4);
    if v6.is_empty() {
        params.push(param("ip6", "disable"));
    }
    params.extend(v6);
    params
}

/// The `vnet` driver: `vnet=new` (a network stack of its own) and one
/// `vnet.interface=EPAIRb` per epair, handing its jail side to the jail. Adding the a-sides
/// to their bridges, and addresses and default routes inside the jail, are separate commands
/// (see [`super::argv::bridge_add_member`], [`super::argv::set_address`] and
/// [`super::argv::route_add_default`]).
pub fn vnet(epairs: &[Epair]) -> Vec<JailParam> {
    std::iter::once(param("vnet", "new"))
        .chain(
            epairs
                .iter()
                .map(|e| param("vnet.interface", e.b().as_str())),
        )
        .collect()
}

/// Joins parameters into `name=value` arguments for `jail -c`.
pub fn to_args(params: &[JailParam]) -> Vec<String> {
    params
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(iface: &str, net: &str) -> IpnetAddress {
        IpnetAddress {
            interface: IfName::new(iface).expect("valid name"),
            address: net.parse().expect("valid network"),
        }
    }

    fn pairs(params: &[JailParam]) -> Vec<(&str, &str)> {
        params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn disabled_and_host() {
        assert_eq!(pairs(&disabled()), [("ip4", "disable"), ("ip6", "disable")]);
        assert_eq!(pairs(&host()), [("ip4", "inherit"), ("ip6", "inherit")]);
    }

    #[test]
    fn ipnet_both_families() {
        let params = ipnet(&[
            addr("kleene0", "10.2.3.2/32"),
            addr("kleene0", "fd00:2::2/128"),
            addr("kleene3", "10.9.0.5/32"),
        ]);
        assert_eq!(
            pairs(&params),
            [
                ("ip4.addr", "kleene0|10.2.3.2/32"),
                ("ip4.addr", "kleene3|10.9.0.5/32"),
                ("ip6.addr", "kleene0|fd00:2::2/128"),
            ]
        );
        assert_eq!(
            to_args(&params),
            [
                "ip4.addr=kleene0|10.2.3.2/32",
                "ip4.addr=kleene3|10.9.0.5/32",
                "ip6.addr=kleene0|fd00:2::2/128",
            ]
        );
    }

    #[test]
    fn ipnet_single_family_disables_the_other() {
        assert_eq!(
            pairs(&ipnet(&[addr("kleene0", "10.2.3.2/32")])),
            [("ip4.addr", "kleene0|10.2.3.2/32"), ("ip6", "disable")]
        );
        assert_eq!(
            pairs(&ipnet(&[addr("kleene0", "fd00::2/128")])),
            [("ip4", "disable"), ("ip6.addr", "kleene0|fd00::2/128")]
        );
        assert_eq!(pairs(&ipnet(&[])), pairs(&disabled()));
    }

    #[test]
    fn vnet_params() {
        let e0 = Epair::from_a_side("epair0a").expect("valid");
        let e1 = Epair::from_a_side("epair7a").expect("valid");
        assert_eq!(
            pairs(&vnet(&[e0, e1])),
            [
                ("vnet", "new"),
                ("vnet.interface", "epair0b"),
                ("vnet.interface", "epair7b"),
            ]
        );
        assert_eq!(pairs(&vnet(&[])), [("vnet", "new")]);
    }
}
