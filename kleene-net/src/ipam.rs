//! Address allocation inside a network's subnets.
//!
//! Pure: the caller says which addresses are in use (any [`AddressSet`]: a
//! `BTreeSet`, a `HashSet`, a slice or a closure) and gets the address to use.
//!
//! Rules:
//! - IPv4: never the network address, the broadcast address or the gateway; so a
//!   /31 or /32 has no address to give.
//! - IPv6: never the subnet-router anycast address (the subnet's first address) or
//!   the gateway; there is no broadcast. Huge subnets are scanned lazily, and the
//!   scan gives up after [`MAX_SCAN_V6`] candidates.
//! - A requested address must be inside the subnet, not reserved and not in use.
//! - Without a request, the first free address counting up from the network's
//!   first address is taken.

use std::collections::{BTreeSet, HashSet};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::error::{Error, Result};

/// How many IPv6 candidates an automatic allocation looks at before giving up.
pub const MAX_SCAN_V6: u128 = 1 << 24;

/// A set of addresses in use.
pub trait AddressSet<A> {
    /// Whether `addr` is in use.
    fn is_used(&self, addr: &A) -> bool;
}

impl<A: Ord> AddressSet<A> for BTreeSet<A> {
    fn is_used(&self, addr: &A) -> bool {
        self.contains(addr)
    }
}

impl<A: Eq + Hash, S: std::hash::BuildHasher> AddressSet<A> for HashSet<A, S> {
    fn is_used(&self, addr: &A) -> bool {
        self.contains(addr)
    }
}

impl<A: PartialEq> AddressSet<A> for [A] {
    fn is_used(&self, addr: &A) -> bool {
        self.contains(addr)
    }
}

impl<A: PartialEq> AddressSet<A> for Vec<A> {
    fn is_used(&self, addr: &A) -> bool {
        self.contains(addr)
    }
}

impl<A, F: Fn(&A) -> bool> AddressSet<A> for F {
    fn is_used(&self, addr: &A) -> bool {
        self(addr)
    }
}

/// The gateway `<auto>` stands for: the subnet's first address after the network
/// address, or `None` when the subnet has no usable address (/31, /32).
pub fn auto_gateway_v4(subnet: Ipv4Net) -> Option<Ipv4Addr> {
    let net = subnet.trunc();
    if net.prefix_len() > 30 {
        return None;
    }
    Some(Ipv4Addr::from(u32::from(net.network()) + 1))
}

/// The gateway `<auto>` stands for in IPv6: the subnet's first address after the
/// subnet-router anycast address, or `None` for a /128.
pub fn auto_gateway_v6(subnet: Ipv6Net) -> Option<Ipv6Addr> {
    let net = subnet.trunc();
    if net.prefix_len() > 127 {
        return None;
    }
    Some(Ipv6Addr::from(u128::from(net.network()) + 1))
}

/// Why `addr` may not be handed out in `subnet` (v4), if it may not.
fn reserved_v4(subnet: Ipv4Net, gateway: Option<Ipv4Addr>, addr: Ipv4Addr) -> Option<&'static str> {
    if addr == subnet.network() {
        Some("network address")
    } else if addr == subnet.broadcast() {
        Some("broadcast address")
    } else if Some(addr) == gateway {
        Some("gateway")
    } else {
        None
    }
}

/// Why `addr` may not be handed out in `subnet` (v6), if it may not.
fn reserved_v6(subnet: Ipv6Net, gateway: Option<Ipv6Addr>, addr: Ipv6Addr) -> Option<&'static str> {
    if addr == subnet.network() {
        Some("subnet-router anycast address")
    } else if Some(addr) == gateway {
        Some("gateway")
    } else {
        None
    }
}

/// Check a requested address: inside, not reserved, not in use.
fn check_requested<A: Copy + Into<IpAddr>>(
    subnet: IpNet,
    addr: A,
    inside: bool,
    reserved: Option<&'static str>,
    used: bool,
) -> Result<A> {
    let address: IpAddr = addr.into();
    if !inside {
        return Err(Error::AddressOutsideSubnet { address, subnet });
    }
    if let Some(role) = reserved {
        return Err(Error::AddressReserved {
            address,
            subnet,
            role,
        });
    }
    if used {
        return Err(Error::AddressInUse { address, subnet });
    }
    Ok(addr)
}

/// An IPv4 address for a new endpoint in `subnet`.
///
/// `gateway` is the network's gateway (reserved), `used` the addresses taken,
/// `requested` the address the user asked for (`--ip`), if any.
pub fn allocate_v4<U: AddressSet<Ipv4Addr> + ?Sized>(
    subnet: Ipv4Net,
    gateway: Option<Ipv4Addr>,
    used: &U,
    requested: Option<Ipv4Addr>,
) -> Result<Ipv4Addr> {
    let net = subnet.trunc();
    if let Some(addr) = requested {
        return check_requested(
            net.into(),
            addr,
            net.contains(&addr),
            reserved_v4(net, gateway, addr),
            used.is_used(&addr),
        );
    }
    let first = u32::from(net.network());
    let last = u32::from(net.broadcast());
    (first..=last)
        .map(Ipv4Addr::from)
        .find(|a| reserved_v4(net, gateway, *a).is_none() && !used.is_used(a))
        .ok_or(Error::SubnetFull { subnet: net.into() })
}

/// An IPv6 address for a new endpoint in `subnet`; see [`allocate_v4`].
///
/// An automatic allocation scans at most [`MAX_SCAN_V6`] candidates.
pub fn allocate_v6<U: AddressSet<Ipv6Addr> + ?Sized>(
    subnet: Ipv6Net,
    gateway: Option<Ipv6Addr>,
    used: &U,
    requested: Option<Ipv6Addr>,
) -> Result<Ipv6Addr> {
    let net = subnet.trunc();
    if let Some(addr) = requested {
        return check_requested(
            net.into(),
            addr,
            net.contains(&addr),
            reserved_v6(net, gateway, addr),
            used.is_used(&addr),
        );
    }
    let first = u128::from(net.network());
    let last = u128::from(net.broadcast());
    let mut scanned: u128 = 0;
    let mut candidate = first;
    loop {
        let a = Ipv6Addr::from(candidate);
        if reserved_v6(net, gateway, a).is_none() {
            if !used.is_used(&a) {
                return Ok(a);
            }
            scanned += 1;
            if scanned >= MAX_SCAN_V6 {
                return Err(Error::ScanLimit {
                    subnet: net.into(),
                    scanned,
                });
            }
        }
        if candidate == last {
            return Err(Error::SubnetFull { subnet: net.into() });
        }
        candidate += 1;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }
    fn n4(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }
    fn n6(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }
    const NONE4: [Ipv4Addr; 0] = [];
    const NONE6: [Ipv6Addr; 0] = [];

    #[test]
    fn first_free_skips_network_and_gateway() {
        let net = n4("10.0.0.0/24");
        assert_eq!(
            allocate_v4(net, None, &NONE4[..], None).unwrap(),
            v4("10.0.0.1")
        );
        let gw = auto_gateway_v4(net);
        assert_eq!(gw, Some(v4("10.0.0.1")));
        assert_eq!(
            allocate_v4(net, gw, &NONE4[..], None).unwrap(),
            v4("10.0.0.2")
        );
        let used: BTreeSet<_> = [v4("10.0.0.2"), v4("10.0.0.3"), v4("10.0.0.5")].into();
        assert_eq!(allocate_v4(net, gw, &used, None).unwrap(), v4("10.0.0.4"));
        // a subnet written with host bits is its network
        assert_eq!(
            allocate_v4(n4("10.0.0.77/24"), gw, &used, None).unwrap(),
            v4("10.0.0.4")
        );
    }

    #[test]
    fn never_the_broadcast() {
        let net = n4("10.0.0.0/30"); // .0 net, .1 .2 hosts, .3 broadcast
        let gw = auto_gateway_v4(net);
        let used = vec![v4("10.0.0.2")];
        let e = allocate_v4(net, gw, &used, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "network 10.0.0.0/30 has no free address left"
        );
        assert_eq!(
            allocate_v4(net, gw, &NONE4[..], None).unwrap(),
            v4("10.0.0.2")
        );
        assert_eq!(allocate_v4(net, None, &used, None).unwrap(), v4("10.0.0.1"));
    }

    #[test]
    fn tiny_subnets_are_full() {
        for s in ["10.0.0.0/31", "10.0.0.0/32"] {
            let net = n4(s);
            assert_eq!(auto_gateway_v4(net), None);
            assert!(matches!(
                allocate_v4(net, None, &NONE4[..], None),
                Err(Error::SubnetFull { .. })
            ));
        }
        let e = allocate_v4(n4("10.0.0.0/31"), None, &NONE4[..], Some(v4("10.0.0.1")))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "address 10.0.0.1 is the broadcast address of network 10.0.0.0/31"
        );
    }

    #[test]
    fn full_subnet() {
        let net = n4("192.168.1.0/24");
        let gw = auto_gateway_v4(net);
        let used = |a: &Ipv4Addr| a.octets()[3] < 255;
        assert!(matches!(
            allocate_v4(net, gw, &used, None),
            Err(Error::SubnetFull { .. })
        ));
        let used = |a: &Ipv4Addr| a.octets()[3] != 254;
        assert_eq!(
            allocate_v4(net, gw, &used, None).unwrap(),
            v4("192.168.1.254")
        );
        let hs: HashSet<Ipv4Addr> = (2..=254).map(|i| Ipv4Addr::new(192, 168, 1, i)).collect();
        assert!(allocate_v4(net, gw, &hs, None).is_err());
    }

    #[test]
    fn requested_v4() {
        let net = n4("10.0.0.0/24");
        let gw = Some(v4("10.0.0.1"));
        let used = vec![v4("10.0.0.9")];
        let req = |a: &str| {
            allocate_v4(net, gw, &used, Some(v4(a)))
                .map(|a| a.to_string())
                .unwrap_or_else(|e| e.to_string())
        };
        assert_eq!(req("10.0.0.10"), "10.0.0.10");
        assert_eq!(req("10.0.0.254"), "10.0.0.254");
        assert_eq!(
            req("10.0.1.10"),
            "address 10.0.1.10 is outside network 10.0.0.0/24"
        );
        assert_eq!(
            req("10.0.0.0"),
            "address 10.0.0.0 is the network address of network 10.0.0.0/24"
        );
        assert_eq!(
            req("10.0.0.255"),
            "address 10.0.0.255 is the broadcast address of network 10.0.0.0/24"
        );
        assert_eq!(
            req("10.0.0.1"),
            "address 10.0.0.1 is the gateway of network 10.0.0.0/24"
        );
        assert_eq!(
            req("10.0.0.9"),
            "address 10.0.0.9 is already in use in network 10.0.0.0/24"
        );
    }

    #[test]
    fn v6_basics() {
        let net = n6("fd00:1::/64");
        let gw = auto_gateway_v6(net);
        assert_eq!(gw, Some(v6("fd00:1::1")));
        assert_eq!(
            allocate_v6(net, gw, &NONE6[..], None).unwrap(),
            v6("fd00:1::2")
        );
        assert_eq!(
            allocate_v6(net, None, &NONE6[..], None).unwrap(),
            v6("fd00:1::1")
        );
        let used: BTreeSet<_> = [v6("fd00:1::2"), v6("fd00:1::3")].into();
        assert_eq!(allocate_v6(net, gw, &used, None).unwrap(), v6("fd00:1::4"));
        // the last address is fine in v6: there is no broadcast
        let last = v6("fd00:1::ffff:ffff:ffff:ffff");
        assert_eq!(allocate_v6(net, gw, &used, Some(last)).unwrap(), last);
        let e = allocate_v6(net, gw, &used, Some(v6("fd00:1::"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "address fd00:1:: is the subnet-router anycast address of network fd00:1::/64"
        );
        let e = allocate_v6(net, gw, &used, Some(v6("fd00:2::5"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "address fd00:2::5 is outside network fd00:1::/64"
        );
        let e = allocate_v6(net, gw, &used, Some(v6("fd00:1::3"))).unwrap_err();
        assert!(matches!(e, Error::AddressInUse { .. }));
        let e = allocate_v6(net, gw, &used, Some(v6("fd00:1::1"))).unwrap_err();
        assert!(matches!(
            e,
            Error::AddressReserved {
                role: "gateway",
                ..
            }
        ));
    }

    #[test]
    fn v6_small_and_full() {
        let net = n6("fd00::/126"); // ::0 anycast, ::1 gw, ::2, ::3
        let gw = auto_gateway_v6(net);
        let used = vec![v6("fd00::2")];
        assert_eq!(allocate_v6(net, gw, &used, None).unwrap(), v6("fd00::3"));
        let used = vec![v6("fd00::2"), v6("fd00::3")];
        assert!(matches!(
            allocate_v6(net, gw, &used, None),
            Err(Error::SubnetFull { .. })
        ));
        let net = n6("fd00::/127");
        assert_eq!(auto_gateway_v6(net), Some(v6("fd00::1")));
        assert_eq!(
            allocate_v6(net, None, &NONE6[..], None).unwrap(),
            v6("fd00::1")
        );
        let net = n6("fd00::5/128");
        assert_eq!(auto_gateway_v6(net), None);
        assert!(matches!(
            allocate_v6(net, None, &NONE6[..], None),
            Err(Error::SubnetFull { .. })
        ));
        // the top of the address space does not overflow
        let net = n6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126");
        let used = |a: &Ipv6Addr| u128::from(*a) != u128::MAX;
        assert_eq!(
            allocate_v6(net, None, &used, None).unwrap(),
            Ipv6Addr::from(u128::MAX)
        );
        let used = |_: &Ipv6Addr| true;
        assert!(matches!(
            allocate_v6(net, None, &used, None),
            Err(Error::SubnetFull { .. })
        ));
        let net = n4("255.255.255.252/30");
        let used = |_: &Ipv4Addr| true;
        assert!(allocate_v4(net, None, &used, None).is_err());
    }

    #[test]
    fn v6_huge_subnets_are_lazy() {
        // a /8 would take forever if collected; the scan stops at the limit
        let net = n6("fd00::/8");
        let used = |_: &Ipv6Addr| true;
        let e = allocate_v6(net, None, &used, None).unwrap_err();
        assert!(matches!(e, Error::ScanLimit { scanned, .. } if scanned == MAX_SCAN_V6));
        // far into the subnet is fine
        let used = |a: &Ipv6Addr| u128::from(*a) - u128::from(net.network()) < 100_000;
        assert_eq!(
            u128::from(allocate_v6(net, None, &used, None).unwrap()) - u128::from(net.network()),
            100_000
        );
    }
}
