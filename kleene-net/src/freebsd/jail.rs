//! The `jail(8)` parameters that put a container on its networks.
//!
//! Each function returns `(name, value)` pairs, to be passed to `jail -c` as separate
//! `name=value` arguments in order. A name may repeat: `jail(8)` appends command-line values
//! of list parameters (`ip4.addr`, `ip6.addr`, `vnet.interface`) to the list instead of
//! replacing it. Addresses carrying an interface (`IFACE|ADDR/LEN`) must be given one per
//! argument — `jail(8)` splits the interface and prefix off each value, not off each element
//! of a comma-separated list — so [`ipnet()`] returns one pair per address.
//!
//! [`vnet_created`] gives a `vnet` jail its links with `exec.created` commands: jail(8)'s
//! parameter for commands run on the host once the jail exists and before anything runs in
//! it. Each value is one command, its words separated by spaces and free of shell
//! metacharacters, which jail(8) runs without a shell; kleene-jail's FreeBSD backend runs
//! the `exec.created` pairs of a container's network parameters the same way, in order,
//! and never through a shell ([`exec_created_argv`] is how both split a value).

use ipnet::IpNet;

use super::vnet::{self, VnetLink};
use super::{invalid, Command, Epair, IfName, JailName, Result};

/// The name of jail(8)'s parameter for commands run on the host after the jail is created
/// and before anything runs in it.
pub const EXEC_CREATED: &str = "exec.created";

/// The characters that would make jail(8) run an `exec.created` command through `sh -c`;
/// no word of a command built here has one.
const SHELL_META: &[char] = &[
    '!', '"', '#', '$', '&', '\'', '(', ')', '*', ';', '<', '>', '?', '[', '\\', ']', '`', '{',
    '|', '}', '~',
];

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

/// The `vnet` driver for `jail -c`: `vnet=new` (a network stack of its own) and one
/// `vnet.interface=EPAIRb` per epair, handing its jail side to the jail. Adding the a-sides
/// to their bridges, and addresses and default routes inside the jail, are separate commands
/// (see [`super::vnet`]). `vnet.interface` is jail(8)'s, not the kernel's: for kleene-jail,
/// which creates jails with jail_set(2), use [`vnet_created`], which also sets the
/// addresses and routes.
pub fn vnet(epairs: &[Epair]) -> Vec<JailParam> {
    std::iter::once(param("vnet", "new"))
        .chain(
            epairs
                .iter()
                .map(|e| param("vnet.interface", e.b().as_str())),
        )
        .collect()
}

/// `cmd` as an `exec.created` parameter: its program and arguments joined by spaces. Refused
/// when it reads stdin, or a word is empty or has white space, a control character or a
/// shell metacharacter (so the words come back unchanged from [`exec_created_argv`], and
/// jail(8) would not hand the command to a shell).
pub fn exec_created(cmd: &Command) -> Result<JailParam> {
    let text = cmd.to_string();
    if cmd.stdin.is_some() {
        return Err(invalid(EXEC_CREATED, &text, "it reads stdin"));
    }
    let words = cmd.argv();
    if let Some(bad) = words.iter().find(|w| {
        w.is_empty()
            || w.chars()
                .any(|c| c.is_whitespace() || c.is_control() || SHELL_META.contains(&c))
    }) {
        return Err(invalid(
            EXEC_CREATED,
            &text,
            format!("the word {bad:?} is empty or has white space or a shell metacharacter"),
        ));
    }
    Ok(param(EXEC_CREATED, words.join(" ")))
}

/// The argument vector of an `exec.created` value: its words, split at white space.
pub fn exec_created_argv(value: &str) -> Vec<String> {
    value.split_whitespace().map(str::to_owned).collect()
}

/// A `vnet` jail on its links: `vnet=new`, then one `exec.created` per command of
/// [`vnet::on_created`] (each `b` side moved into the jail, then its addresses and the
/// default routes set inside it with `jexec`). The jail must be created with the name
/// `jail`, which the commands use (its jid is not known before).
pub fn vnet_created(jail: &JailName, links: &[VnetLink]) -> Result<Vec<JailParam>> {
    std::iter::once(Ok(param("vnet", "new")))
        .chain(vnet::on_created(jail, links).iter().map(exec_created))
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
    fn exec_created_round_trips_and_refuses_what_a_shell_would_read() {
        let cmd = Command::new("/sbin/ifconfig", ["ep0b", "vnet", "kleene-0123456789ab"]);
        let p = exec_created(&cmd).expect("plain words");
        assert_eq!(
            (p.0.as_str(), p.1.as_str()),
            (
                "exec.created",
                "/sbin/ifconfig ep0b vnet kleene-0123456789ab"
            )
        );
        assert_eq!(exec_created_argv(&p.1), cmd.argv());
        for bad in [
            Command::new("/sbin/ifconfig", ["a b"]),
            Command::new("/sbin/ifconfig", [""]),
            Command::new("/sbin/ifconfig", ["x;reboot"]),
            Command::new("/sbin/ifconfig", ["$HOME"]),
            Command::new("/sbin/pfctl", ["-f", "-"]).with_stdin("pass\n"),
        ] {
            assert!(exec_created(&bad).is_err(), "{bad}");
        }
        let e = exec_created(&Command::new("/bin/echo", ["a|b"]))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("invalid exec.created \"/bin/echo a|b\": the word \"a|b\" is empty or has white space or a shell metacharacter")
        );
    }

    #[test]
    fn vnet_created_params() {
        let link = VnetLink {
            epair: Epair::from_base("ep012345678900").expect("valid"),
            bridge: IfName::new("kleene1").expect("valid"),
            addresses: vec!["10.4.6.2/24".parse().expect("net")],
            gateways: vec!["10.4.6.1".parse().expect("ip")],
        };
        let jail = JailName::new("kleene-0123456789ab").expect("valid");
        let params = vnet_created(&jail, std::slice::from_ref(&link)).expect("params");
        assert_eq!(
            pairs(&params),
            [
                ("vnet", "new"),
                ("exec.created", "/sbin/ifconfig ep012345678900b vnet kleene-0123456789ab"),
                ("exec.created", "/usr/sbin/jexec kleene-0123456789ab /sbin/ifconfig ep012345678900b inet 10.4.6.2/24 up"),
                ("exec.created", "/usr/sbin/jexec kleene-0123456789ab /sbin/route add -inet default 10.4.6.1"),
            ]
        );
        assert_eq!(
            pairs(&vnet_created(&jail, &[]).expect("params")),
            [("vnet", "new")]
        );
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
