//! Pure builders of the commands the FreeBSD backend runs.
//!
//! Each returns a [`Command`]; none runs anything, so they are tested on every platform.
//! Interface names arrive as [`IfName`] (already validated) and addresses as typed values, so
//! the builders cannot fail and no argument can be mistaken for an option.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{
    Command, Epair, Family, IfName, JailName, IFCONFIG, JEXEC, NETSTAT, PFCTL, ROUTE, SYSCTL,
};

fn ifconfig<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Command::new(IFCONFIG, args)
}

/// `ifconfig -l`: the names of all interfaces on one line (see [`super::parse::interface_list`]).
pub fn list_interfaces() -> Command {
    ifconfig(["-l"])
}

/// `ifconfig NAME`: an interface's configuration (bridge members among it).
pub fn show_interface(name: &IfName) -> Command {
    ifconfig([name.as_str()])
}

/// `ifconfig bridge create name NAME`: clones an `if_bridge` and renames it in one step.
pub fn create_bridge(name: &IfName) -> Command {
    ifconfig(["bridge", "create", "name", name.as_str()])
}

/// `ifconfig lo create name NAME`: clones a loopback interface, the carrier of a Kleene
/// `loopback` network used by `ipnet` containers.
pub fn create_loopback(name: &IfName) -> Command {
    ifconfig(["lo", "create", "name", name.as_str()])
}

/// `ifconfig epair create`: prints the new a-side, e.g. `epair0a` (see
/// [`super::parse::epair_create`]).
pub fn create_epair() -> Command {
    ifconfig(["epair", "create"])
}

/// `ifconfig FROM name TO`: renames an interface.
pub fn rename_interface(from: &IfName, to: &IfName) -> Command {
    ifconfig([from.as_str(), "name", to.as_str()])
}

/// The two renames that turn `epair`'s ends into `{base}a` and `{base}b`, and that epair.
pub fn rename_epair(epair: &Epair, base: &str) -> super::Result<([Command; 2], Epair)> {
    let renamed = Epair::from_base(base)?;
    let cmds = [
        rename_interface(epair.a(), renamed.a()),
        rename_interface(epair.b(), renamed.b()),
    ];
    Ok((cmds, renamed))
}

/// `ifconfig NAME destroy`: destroys a cloned interface (for an epair, destroying one end
/// destroys both).
pub fn destroy_interface(name: &IfName) -> Command {
    ifconfig([name.as_str(), "destroy"])
}

/// `ifconfig NAME up`.
pub fn interface_up(name: &IfName) -> Command {
    ifconfig([name.as_str(), "up"])
}

/// `ifconfig BRIDGE addm MEMBER`: adds a member (an epair's a-side) to a bridge.
pub fn bridge_add_member(bridge: &IfName, member: &IfName) -> Command {
    ifconfig([bridge.as_str(), "addm", member.as_str()])
}

/// `ifconfig BRIDGE deletem MEMBER`: removes a member from a bridge.
pub fn bridge_delete_member(bridge: &IfName, member: &IfName) -> Command {
    ifconfig([bridge.as_str(), "deletem", member.as_str()])
}

fn address_args(addr: &IpNet) -> Vec<String> {
    match addr {
        IpNet::V4(net) => vec![
            "inet".to_owned(),
            format!("{}/{}", net.addr(), net.prefix_len()),
        ],
        IpNet::V6(net) => vec![
            "inet6".to_owned(),
            net.addr().to_string(),
            "prefixlen".to_owned(),
            net.prefix_len().to_string(),
        ],
    }
}

/// `ifconfig IFACE inet ADDR/LEN alias` or `ifconfig IFACE inet6 ADDR prefixlen LEN alias`:
/// adds an address to an interface, keeping the ones it has. `addr` is the host address with
/// the prefix length of its subnet (`10.2.3.1/24` for a bridge gateway, `/32` or `/128` for an
/// `ipnet` container's address on a loopback interface).
pub fn add_alias(iface: &IfName, addr: &IpNet) -> Command {
    let mut args = vec![iface.to_string()];
    args.extend(address_args(addr));
    args.push("alias".to_owned());
    ifconfig(args)
}

/// `ifconfig IFACE inet ADDR -alias` (or `inet6`): removes an address from an interface.
pub fn remove_alias(iface: &IfName, addr: &IpAddr) -> Command {
    ifconfig([
        iface.to_string(),
        Family::of(addr).keyword().to_owned(),
        addr.to_string(),
        "-alias".to_owned(),
    ])
}

/// `ifconfig IFACE inet ADDR/LEN` (or `inet6 ADDR prefixlen LEN`): sets an interface's
/// address, replacing the first one — for the jail side of an epair, run inside the jail.
pub fn set_address(iface: &IfName, addr: &IpNet) -> Command {
    let mut args = vec![iface.to_string()];
    args.extend(address_args(addr));
    ifconfig(args)
}

/// `ifconfig IFACE inet ADDR/LEN up`: the jail side of an epair's IPv4 address, set and the
/// interface brought up in one step (run inside the jail, see [`in_jail`]).
pub fn set_address_up(iface: &IfName, addr: &IpNet) -> Command {
    let mut cmd = set_address(iface, addr);
    cmd.args.push("up".to_owned());
    cmd
}

/// `ifconfig IFACE inet6 -ifdisabled`: lets IPv6 run on an interface that came up with
/// `IFDISABLED` (a new epair end does, unless `ipv6_activate_all_interfaces` is set).
pub fn enable_inet6(iface: &IfName) -> Command {
    ifconfig([iface.as_str(), "inet6", "-ifdisabled"])
}

/// `ifconfig IFACE -vnet JAIL`: takes an interface back from a vnet jail.
pub fn reclaim_vnet_interface(iface: &IfName, jail: &str) -> super::Result<Command> {
    let jail = JailName::new(jail)?;
    Ok(ifconfig([iface.as_str(), "-vnet", jail.as_str()]))
}

/// `ifconfig IFACE vnet JAIL`: moves an interface (an epair's jail side) into a vnet jail's
/// network stack, as jail(8)'s `vnet.interface` does once the jail exists. The interface
/// loses its addresses on the way: they are set inside the jail afterwards. When the jail
/// is removed the kernel gives the interface back to the host.
pub fn move_to_vnet(iface: &IfName, jail: &JailName) -> Command {
    ifconfig([iface.as_str(), "vnet", jail.as_str()])
}

/// `jexec JAIL PROGRAM ARGS…`: runs `cmd` inside the jail — the jail's own program at
/// `cmd.program` (`/sbin/ifconfig`, `/sbin/route`), in the jail's network stack, as root.
/// Its stdin, if any, is kept.
pub fn in_jail(jail: &JailName, cmd: &Command) -> Command {
    let mut args = Vec::with_capacity(cmd.args.len() + 2);
    args.push(jail.to_string());
    args.push(cmd.program.clone());
    args.extend(cmd.args.iter().cloned());
    Command {
        program: JEXEC.to_owned(),
        args,
        stdin: cmd.stdin.clone(),
    }
}

/// `pfctl -f -`: loads `ruleset` (given on stdin) as pf's main ruleset, atomically
/// replacing the loaded one.
pub fn pf_load(ruleset: &str) -> Command {
    Command::new(PFCTL, ["-f", "-"]).with_stdin(ruleset)
}

/// `pfctl -n -f -`: parses `ruleset` (given on stdin) without loading it.
pub fn pf_check(ruleset: &str) -> Command {
    Command::new(PFCTL, ["-n", "-f", "-"]).with_stdin(ruleset)
}

/// `pfctl -e`: enables pf; fails with "pf already enabled" when it is (see
/// [`super::parse::pf_already_enabled`]).
pub fn pf_enable() -> Command {
    Command::new(PFCTL, ["-e"])
}

/// `sysctl net.inet.ip.forwarding=1`: IPv4 forwarding, needed for NAT and bridges.
pub fn enable_ipv4_forwarding() -> Command {
    Command::new(SYSCTL, ["net.inet.ip.forwarding=1"])
}

/// `sysctl net.inet6.ip6.forwarding=1`: IPv6 forwarding.
pub fn enable_ipv6_forwarding() -> Command {
    Command::new(SYSCTL, ["net.inet6.ip6.forwarding=1"])
}

/// `netstat -rn`: the routing tables (see [`super::parse::netstat_default_interface`]).
pub fn routing_table() -> Command {
    Command::new(NETSTAT, ["-rn"])
}

/// `route -n get -inet default` (or `-inet6`): the default route (see
/// [`super::parse::route_get_interface`]).
pub fn route_get_default(family: Family) -> Command {
    let flag = match family {
        Family::Inet => "-inet",
        Family::Inet6 => "-inet6",
    };
    Command::new(ROUTE, ["-n", "get", flag, "default"])
}

/// `route add -inet default GATEWAY` (or `-inet6`): a vnet jail's default route, run inside it.
pub fn route_add_default(gateway: &IpAddr) -> Command {
    let flag = match Family::of(gateway) {
        Family::Inet => "-inet",
        Family::Inet6 => "-inet6",
    };
    Command::new(
        ROUTE,
        [
            "add".to_owned(),
            flag.to_owned(),
            "default".to_owned(),
            gateway.to_string(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> IfName {
        IfName::new(s).expect("valid test name")
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("valid test network")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("valid test address")
    }

    #[test]
    fn interface_commands() {
        assert_eq!(list_interfaces().argv(), ["/sbin/ifconfig", "-l"]);
        assert_eq!(show_interface(&name("kleene1")).args, ["kleene1"]);
        assert_eq!(
            create_bridge(&name("kleene1")).argv(),
            ["/sbin/ifconfig", "bridge", "create", "name", "kleene1"]
        );
        assert_eq!(
            create_loopback(&name("kleene0")).args,
            ["lo", "create", "name", "kleene0"]
        );
        assert_eq!(create_epair().args, ["epair", "create"]);
        assert_eq!(
            rename_interface(&name("epair0a"), &name("k0a")).args,
            ["epair0a", "name", "k0a"]
        );
        assert_eq!(
            destroy_interface(&name("kleene0")).args,
            ["kleene0", "destroy"]
        );
        assert_eq!(interface_up(&name("kleene1")).args, ["kleene1", "up"]);
        assert_eq!(
            bridge_add_member(&name("kleene1"), &name("epair0a")).args,
            ["kleene1", "addm", "epair0a"]
        );
        assert_eq!(
            bridge_delete_member(&name("kleene1"), &name("epair0a")).args,
            ["kleene1", "deletem", "epair0a"]
        );
        assert!(list_interfaces().stdin.is_none());
    }

    #[test]
    fn epair_rename() {
        let e = Epair::from_a_side("epair3a").expect("valid");
        let (cmds, renamed) = rename_epair(&e, "kl3").expect("valid base");
        assert_eq!(cmds[0].args, ["epair3a", "name", "kl3a"]);
        assert_eq!(cmds[1].args, ["epair3b", "name", "kl3b"]);
        assert_eq!(renamed.b().as_str(), "kl3b");
        assert!(rename_epair(&e, "bad name").is_err());
    }

    #[test]
    fn aliases() {
        assert_eq!(
            add_alias(&name("kleene1"), &net("10.4.6.1/24")).args,
            ["kleene1", "inet", "10.4.6.1/24", "alias"]
        );
        assert_eq!(
            add_alias(&name("kleene0"), &net("fd00:1::2/128")).args,
            ["kleene0", "inet6", "fd00:1::2", "prefixlen", "128", "alias"]
        );
        assert_eq!(
            remove_alias(&name("kleene0"), &ip("10.2.3.2")).args,
            ["kleene0", "inet", "10.2.3.2", "-alias"]
        );
        assert_eq!(
            remove_alias(&name("kleene0"), &ip("fd00:1::2")).args,
            ["kleene0", "inet6", "fd00:1::2", "-alias"]
        );
        assert_eq!(
            set_address(&name("epair0b"), &net("10.4.6.2/24")).args,
            ["epair0b", "inet", "10.4.6.2/24"]
        );
        assert_eq!(
            set_address(&name("epair0b"), &net("fd00::2/64")).args,
            ["epair0b", "inet6", "fd00::2", "prefixlen", "64"]
        );
    }

    #[test]
    fn vnet_moves_and_jexec() {
        let jail = JailName::new("kleene-0123456789ab").expect("valid");
        assert_eq!(
            move_to_vnet(&name("ep012345678900b"), &jail).argv(),
            [
                "/sbin/ifconfig",
                "ep012345678900b",
                "vnet",
                "kleene-0123456789ab"
            ]
        );
        let inside = in_jail(&jail, &set_address_up(&name("ep0b"), &net("10.4.6.2/24")));
        assert_eq!(
            inside.argv(),
            [
                "/usr/sbin/jexec",
                "kleene-0123456789ab",
                "/sbin/ifconfig",
                "ep0b",
                "inet",
                "10.4.6.2/24",
                "up"
            ]
        );
        assert!(inside.stdin.is_none());
        assert_eq!(
            in_jail(&jail, &route_add_default(&ip("10.4.6.1"))).args,
            [
                "kleene-0123456789ab",
                "/sbin/route",
                "add",
                "-inet",
                "default",
                "10.4.6.1"
            ]
        );
        assert_eq!(
            enable_inet6(&name("ep0b")).args,
            ["ep0b", "inet6", "-ifdisabled"]
        );
    }

    #[test]
    fn vnet_reclaim() {
        assert_eq!(
            reclaim_vnet_interface(&name("epair0b"), "d763328950a2")
                .expect("valid")
                .args,
            ["epair0b", "-vnet", "d763328950a2"]
        );
        assert!(reclaim_vnet_interface(&name("epair0b"), "").is_err());
        assert!(reclaim_vnet_interface(&name("epair0b"), "-x").is_err());
        assert!(reclaim_vnet_interface(&name("epair0b"), "a b").is_err());
    }

    #[test]
    fn pf_commands() {
        let load = pf_load("pass all\n");
        assert_eq!(load.argv(), ["/sbin/pfctl", "-f", "-"]);
        assert_eq!(load.stdin.as_deref(), Some("pass all\n"));
        let check = pf_check("block all\n");
        assert_eq!(check.args, ["-n", "-f", "-"]);
        assert_eq!(check.stdin.as_deref(), Some("block all\n"));
        assert_eq!(pf_enable().argv(), ["/sbin/pfctl", "-e"]);
        assert!(pf_enable().stdin.is_none());
    }

    #[test]
    fn sysctl_and_route_commands() {
        assert_eq!(
            enable_ipv4_forwarding().argv(),
            ["/sbin/sysctl", "net.inet.ip.forwarding=1"]
        );
        assert_eq!(
            enable_ipv6_forwarding().argv(),
            ["/sbin/sysctl", "net.inet6.ip6.forwarding=1"]
        );
        assert_eq!(routing_table().argv(), ["/usr/bin/netstat", "-rn"]);
        assert_eq!(
            route_get_default(Family::Inet).argv(),
            ["/sbin/route", "-n", "get", "-inet", "default"]
        );
        assert_eq!(
            route_get_default(Family::Inet6).args,
            ["-n", "get", "-inet6", "default"]
        );
        assert_eq!(
            route_add_default(&ip("10.4.6.1")).args,
            ["add", "-inet", "default", "10.4.6.1"]
        );
        assert_eq!(
            route_add_default(&ip("fd00::1")).args,
            ["add", "-inet6", "default", "fd00::1"]
        );
    }
}
