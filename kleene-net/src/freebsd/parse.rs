//! Pure parsers of the output of FreeBSD's network tools.

use std::net::IpAddr;

use super::{Epair, Family, IfName, Result, IFCONFIG};

/// The interface names printed by `ifconfig -l` (one line, separated by spaces).
pub fn interface_list(output: &str) -> Vec<String> {
    output.split_whitespace().map(str::to_owned).collect()
}

/// Whether `name` is among the interfaces printed by `ifconfig -l`.
pub fn interface_listed(output: &str, name: &IfName) -> bool {
    output.split_whitespace().any(|n| n == name.as_str())
}

/// The interface printed by `ifconfig TYPE create [name NAME]`: its only line.
pub fn created_interface(output: &str) -> Result<IfName> {
    let mut words = output.split_whitespace();
    match (words.next(), words.next()) {
        (Some(name), None) => IfName::new(name),
        _ => Err(super::Error::UnexpectedOutput {
            program: IFCONFIG.to_owned(),
            output: output.to_owned(),
        }),
    }
}

/// The epair created by `ifconfig epair create`, which prints its a-side (`epair0a`).
pub fn epair_create(output: &str) -> Result<Epair> {
    let a_side = created_interface(output)?;
    Epair::from_a_side(a_side.as_str())
}

/// The members of a bridge, from the `member: NAME flags=…` lines of `ifconfig BRIDGE`.
pub fn bridge_members(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("member:"), Some(member)) => Some(member.to_owned()),
                _ => None,
            }
        })
        .collect()
}

/// The addresses of an interface, from the `inet ADDR netmask …` and
/// `inet6 ADDR[%SCOPE] prefixlen …` lines of `ifconfig IFACE` (the scope of a link-local
/// address is dropped), in the order printed.
pub fn interface_addresses(output: &str) -> Vec<IpAddr> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("inet" | "inet6"), Some(addr)) => {
                    addr.split('%').next().and_then(|a| a.parse().ok())
                }
                _ => None,
            }
        })
        .collect()
}

fn is_default_destination(destination: &str) -> bool {
    matches!(destination, "default" | "0.0.0.0/0" | "::/0")
}

/// The interface of the default route of `family` in `netstat -rn` output.
///
/// The output has one section per family, headed `Internet:` and `Internet6:`, each with a
/// column header line (`Destination Gateway Flags Netif Expire`, or with `Refs Use` on older
/// releases); the interface is the `Netif` column of the row whose destination is `default`.
pub fn netstat_default_interface(output: &str, family: Family) -> Option<String> {
    let wanted = match family {
        Family::Inet => "Internet:",
        Family::Inet6 => "Internet6:",
    };
    let mut in_section = false;
    let mut netif_column = None;
    for line in output.lines() {
        let trimmed = line.trim();
        if trimmed.ends_with(':') && !trimmed.contains(char::is_whitespace) {
            in_section = trimmed == wanted;
            netif_column = None;
            continue;
        }
        if !in_section {
            continue;
        }
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        match words.first() {
            Some(&"Destination") => {
                netif_column = words.iter().position(|w| *w == "Netif");
            }
            Some(destination) if is_default_destination(destination) => {
                if let Some(netif) = netif_column.and_then(|i| words.get(i)) {
                    return Some((*netif).to_owned());
                }
            }
            _ => {}
        }
    }
    None
}

/// The `interface:` line of `route -n get default` output.
pub fn route_get_interface(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if key.trim() == "interface" {
            let value = value.trim();
            (!value.is_empty()).then(|| value.to_owned())
        } else {
            None
        }
    })
}

/// Whether `pfctl -e` failed only because pf was already enabled.
pub fn pf_already_enabled(stderr: &str) -> bool {
    stderr.contains("pf already enabled")
}

/// Whether an `ifconfig` failure says the interface does not exist
/// (`ifconfig: interface kleene9 does not exist`).
pub fn interface_does_not_exist(stderr: &str) -> bool {
    stderr.contains("does not exist")
}

/// Whether an `ifconfig … -alias` failure says the address is not on the interface
/// (`ifconfig: ioctl (SIOCDIFADDR): Can't assign requested address`).
pub fn address_not_assigned(stderr: &str) -> bool {
    stderr.contains("Can't assign requested address")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NETSTAT: &str = "Routing tables

Internet:
Destination        Gateway            Flags     Netif Expire
default            10.0.2.2           UGS         em0
10.0.2.0/24        link#1             U           em0
10.0.2.15          link#2             UHS         lo0
127.0.0.1          link#2             UH          lo0

Internet6:
Destination                       Gateway                       Flags     Netif Expire
::/96                             ::1                           URS         lo0
default                           fe80::1%igb1                  UGS        igb1
::1                               link#2                        UHS         lo0
fe80::%lo0/64                     link#2                        U           lo0
";

    #[test]
    fn interface_lists() {
        let out = "em0 lo0 pflog0 kleene0\n";
        assert_eq!(interface_list(out), ["em0", "lo0", "pflog0", "kleene0"]);
        let k = IfName::new("kleene0").expect("valid");
        assert!(interface_listed(out, &k));
        assert!(!interface_listed("em0 kleene01\n", &k));
        assert!(interface_list("").is_empty());
    }

    #[test]
    fn created_interfaces() {
        assert_eq!(
            created_interface("kleene1\n").ok().map(IfName::into_string),
            Some("kleene1".to_owned())
        );
        assert!(created_interface("").is_err());
        assert!(created_interface("a b\n").is_err());
        let e = epair_create("epair4a\n").expect("valid");
        assert_eq!(e.a().as_str(), "epair4a");
        assert_eq!(e.b().as_str(), "epair4b");
        assert!(epair_create("bridge0\n").is_err());
    }

    #[test]
    fn members_of_a_bridge() {
        let out = "kleene1: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500
\tether 58:9c:fc:10:ff:b6
\tinet 10.4.6.1 netmask 0xffffff00 broadcast 10.4.6.255
\tid 00:00:00:00:00:00 priority 32768 hellotime 2 fwddelay 15
\tmember: epair0a flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>
\t        ifmaxaddr 0 port 5 priority 128 path cost 2000
\tmember: epair1a flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>
\t        ifmaxaddr 0 port 6 priority 128 path cost 2000
\tgroups: bridge
";
        assert_eq!(bridge_members(out), ["epair0a", "epair1a"]);
        assert!(bridge_members("kleene1: flags=0<> metric 0\n").is_empty());
    }

    #[test]
    fn addresses_of_an_interface() {
        let out = "kleene0: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> metric 0 mtu 16384
\toptions=680003<RXCSUM,TXCSUM,LINKSTATE,RXCSUM_IPV6,TXCSUM_IPV6>
\tinet 10.2.3.1 netmask 0xffffffff
\tinet 10.2.3.2 netmask 0xffffffff
\tinet6 fe80::1%kleene0 prefixlen 64 scopeid 0x5
\tinet6 fd00:2::2 prefixlen 128
\tgroups: lo
\tnd6 options=21<PERFORMNUD,AUTO_LINKLOCAL>
";
        let want: Vec<IpAddr> = ["10.2.3.1", "10.2.3.2", "fe80::1", "fd00:2::2"]
            .iter()
            .map(|a| a.parse().expect("ip"))
            .collect();
        assert_eq!(interface_addresses(out), want);
        assert!(interface_addresses("kleene1: flags=0<> metric 0\n").is_empty());
    }

    #[test]
    fn default_route_from_netstat() {
        assert_eq!(
            netstat_default_interface(NETSTAT, Family::Inet).as_deref(),
            Some("em0")
        );
        assert_eq!(
            netstat_default_interface(NETSTAT, Family::Inet6).as_deref(),
            Some("igb1")
        );
    }

    #[test]
    fn default_route_from_old_netstat_columns() {
        let out = "Routing tables

Internet:
Destination        Gateway            Flags    Refs      Use  Netif Expire
default            192.168.1.1        UGS         0    51200    re0
127.0.0.1          link#2             UH          0      120    lo0
";
        assert_eq!(
            netstat_default_interface(out, Family::Inet).as_deref(),
            Some("re0")
        );
        assert_eq!(netstat_default_interface(out, Family::Inet6), None);
    }

    #[test]
    fn no_default_route_in_netstat() {
        let out = "Routing tables

Internet:
Destination        Gateway            Flags     Netif Expire
127.0.0.1          link#2             UH          lo0
";
        assert_eq!(netstat_default_interface(out, Family::Inet), None);
        assert_eq!(netstat_default_interface("", Family::Inet), None);
    }

    #[test]
    fn default_route_from_route_get() {
        let out = "   route to: default
destination: default
       mask: default
    gateway: 10.0.2.2
        fib: 0
  interface: em0
      flags: <UP,GATEWAY,DONE,STATIC>
 recvpipe  sendpipe  ssthresh  rtt,msec    mtu        weight    expire
       0         0         0         0      1500         1         0
";
        assert_eq!(route_get_interface(out).as_deref(), Some("em0"));
        assert_eq!(
            route_get_interface("route: route has not been found\n"),
            None
        );
    }

    #[test]
    fn pf_enabled_twice() {
        assert!(pf_already_enabled("pfctl: pf already enabled\n"));
        assert!(!pf_already_enabled("pfctl: /dev/pf: Permission denied\n"));
    }

    #[test]
    fn benign_ifconfig_failures() {
        assert!(interface_does_not_exist(
            "ifconfig: interface kleene9 does not exist\n"
        ));
        assert!(!interface_does_not_exist(
            "ifconfig: SIOCIFDESTROY: Invalid argument\n"
        ));
        assert!(address_not_assigned(
            "ifconfig: ioctl (SIOCDIFADDR): Can't assign requested address\n"
        ));
        assert!(!address_not_assigned(
            "ifconfig: interface kleene9 does not exist\n"
        ));
    }
}
