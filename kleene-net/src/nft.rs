//! The nftables ruleset (Linux), rendered from a [`FirewallInput`].
//!
//! [`render_nft`] returns one script for `nft -f -` that replaces Kleene's own
//! tables, `table inet kleene` and `table bridge kleene`, in one transaction: it
//! adds each table (a no-op if it exists), deletes it, and defines it anew. Other
//! tables are never touched. Rendering is pure and deterministic (networks sorted
//! by name, published ports by container, network, interface and port).
//!
//! `table inet kleene`:
//! - `forward` (filter, policy accept): established/related traffic is accepted; an
//!   internal network's interface forwards neither out to nor in from any other
//!   interface; traffic to a published port (DNAT'ed) is accepted; traffic between
//!   two different Kleene networks is dropped.
//! - `postrouting` (nat, srcnat): masquerade per NAT'ed, non-internal network and
//!   family (`oifname NATIF ip saddr SUBNET`); hairpin masquerade for DNAT'ed
//!   traffic that goes back out of the interface of the network it came from (a
//!   container reaching a published port of a neighbour through a host address).
//! - `prerouting` (nat, dstnat): per published port and family, traffic to a host
//!   address (`fib daddr type local`) arriving on the port's interface or on any
//!   Kleene network's interface is DNAT'ed to the container, with the port's own
//!   protocol. Equal host and container ranges keep the port; ranges that differ
//!   map offset for offset through a port map, for ranges of at most
//!   [`MAX_MAPPED_RANGE`] ports (larger ones are left out, with a comment and a
//!   warning in the log).
//! - `output` (nat, dstnat): the host itself reaches published ports on its own
//!   addresses (not on 127.0.0.0/8 or ::1).
//!
//! `table bridge kleene`: `forward` drops port-to-port traffic between the
//! containers' links ([`EndpointRules::host_interface`](crate::model::EndpointRules),
//! the host sides of their veth pairs) on networks with icc off. The bridge ports
//! are matched by name rather than with `meta ibrname`/`obrname`, which need the
//! `nft_meta_bridge` kernel module that not every kernel has; so the backend must
//! fill in `host_interface` for icc off to take effect.
//!
//! The base chains have policy accept: a drop policy elsewhere (another table's
//! forward chain) still applies, as nftables evaluates every table's chains.
//!
//! Input that fails [`FirewallInput::validate`] cannot inject text: networks and
//! published ports with invalid names are left out (with a comment);
//! [`try_render_nft`] refuses such input instead.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::error::{Error, Result};
use crate::model::{validate_interface_name, FirewallInput, NetRules, PublishRules};

/// The largest range with different host and container ports that is rendered
/// (as a port map of this many entries).
pub const MAX_MAPPED_RANGE: u32 = 1024;

/// The name of Kleene's tables (`inet kleene`, `bridge kleene`).
pub const TABLE: &str = "kleene";

fn net_ok(n: &NetRules) -> bool {
    validate_interface_name(&n.interface).is_ok()
        && n.nat
            .as_deref()
            .is_none_or(|i| validate_interface_name(i).is_ok())
}

/// A quoted set of interface names: `"a"` or `{ "a", "b" }`.
fn ifset<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let v: Vec<String> = names.into_iter().map(|n| format!("\"{n}\"")).collect();
    if v.len() == 1 {
        v.join("")
    } else {
        format!("{{ {} }}", v.join(", "))
    }
}

/// nft's form of a port range: `N` or `A-B`.
fn ports(r: crate::ports::PortRange) -> String {
    r.to_string()
}

/// Render the nftables script (see the module docs).
pub fn render_nft(input: &FirewallInput) -> String {
    let mut nets: Vec<&NetRules> = input.networks.iter().collect();
    nets.sort_by(|a, b| a.name.cmp(&b.name));
    let skipped_nets = nets.iter().filter(|n| !net_ok(n)).count();
    nets.retain(|n| net_ok(n));

    let mut published: Vec<&PublishRules> = input.published.iter().collect();
    published.sort_by(|a, b| {
        (&a.container, &a.network, &a.interface, &a.port).cmp(&(
            &b.container,
            &b.network,
            &b.interface,
            &b.port,
        ))
    });
    let before = published.len();
    published.retain(|p| {
        validate_interface_name(&p.interface).is_ok() && nets.iter().any(|n| n.name == p.network)
    });
    let skipped_ports = before - published.len();

    let net_ifs: BTreeSet<&str> = nets.iter().map(|n| n.interface.as_str()).collect();

    let mut fwd: Vec<String> = vec!["ct state established,related accept".to_string()];
    let mut post: Vec<String> = Vec::new();
    let mut pre: Vec<String> = Vec::new();
    let mut out: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    if skipped_nets > 0 {
        notes.push(format!(
            "# left out {skipped_nets} network(s) with an invalid interface name"
        ));
    }
    if skipped_ports > 0 {
        notes.push(format!(
            "# left out {skipped_ports} published port(s) with an invalid interface or an unknown network"
        ));
    }

    // forward: internal networks
    let internal: BTreeSet<&str> = nets
        .iter()
        .filter(|n| n.internal)
        .map(|n| n.interface.as_str())
        .collect();
    for i in &internal {
        fwd.push(format!("iifname \"{i}\" oifname != \"{i}\" drop"));
        fwd.push(format!("oifname \"{i}\" iifname != \"{i}\" drop"));
    }

    // published ports: forward, prerouting, output
    for p in &published {
        let Some(net) = nets.iter().find(|n| n.name == p.network) else {
            continue;
        };
        let proto = p.port.protocol;
        let hp = ports(p.port.host);
        let cp = ports(p.port.container);
        let mapped = !p.port.same_ports();
        if mapped && p.port.host.len() > MAX_MAPPED_RANGE {
            log::warn!(
                "published port {} of container {} maps {} ports, more than {MAX_MAPPED_RANGE}: left out of the nftables ruleset",
                p.port,
                p.container,
                p.port.host.len()
            );
            notes.push(format!(
                "# left out published port {} of container {}: ranges that differ are limited to {MAX_MAPPED_RANGE} ports",
                p.port, p.container
            ));
            continue;
        }
        let mut ins: BTreeSet<&str> = net_ifs.clone();
        ins.insert(p.interface.as_str());
        let ins = ifset(ins);
        let target = |fam: &str, addr: &str| -> String {
            if p.port.host.is_single() {
                format!("dnat {fam} to {addr}:{cp}")
            } else if !mapped {
                format!("dnat {fam} to {addr}")
            } else {
                let map: Vec<String> = p.port.pairs().map(|(h, c)| format!("{h} : {c}")).collect();
                format!(
                    "dnat {fam} to {addr} : {proto} dport map {{ {} }}",
                    map.join(", ")
                )
            }
        };
        let addrs = [
            (
                "ip",
                "ipv4",
                p.ipv4.map(|a| a.to_string()),
                p.ipv4.map(|a| a.to_string()),
                "127.0.0.0/8",
            ),
            (
                "ip6",
                "ipv6",
                p.ipv6.map(|a| format!("[{a}]")),
                p.ipv6.map(|a| a.to_string()),
                "::1",
            ),
        ];
        for (fam, nfproto, target_addr, addr, lo) in addrs {
            let (Some(target_addr), Some(addr)) = (target_addr, addr) else {
                continue;
            };
            let dnat = target(fam, &target_addr);
            fwd.push(format!(
                "oifname \"{}\" {fam} daddr {addr} {proto} dport {cp} ct status dnat accept",
                net.interface
            ));
            pre.push(format!(
                "iifname {ins} meta nfproto {nfproto} fib daddr type local {proto} dport {hp} {dnat}"
            ));
            out.push(format!(
                "meta nfproto {nfproto} fib daddr type local {fam} daddr != {lo} {proto} dport {hp} {dnat}"
            ));
        }
    }

    // forward: networks are isolated from each other
    for i in &net_ifs {
        let others: Vec<&str> = net_ifs.iter().copied().filter(|o| o != i).collect();
        if !others.is_empty() {
            fwd.push(format!("iifname \"{i}\" oifname {} drop", ifset(others)));
        }
    }

    // postrouting: NAT and hairpin
    for n in &nets {
        if let (Some(nat), false) = (&n.nat, n.internal) {
            if let Some(s) = n.subnet {
                post.push(format!("oifname \"{nat}\" ip saddr {s} masquerade"));
            }
            if let Some(s) = n.subnet6 {
                post.push(format!("oifname \"{nat}\" ip6 saddr {s} masquerade"));
            }
        }
    }
    for n in &nets {
        let has_published = published.iter().any(|p| p.network == n.name);
        if !has_published {
            continue;
        }
        let i = &n.interface;
        if let Some(s) = n.subnet {
            post.push(format!(
                "oifname \"{i}\" ip saddr {s} ct status dnat masquerade"
            ));
        }
        if let Some(s) = n.subnet6 {
            post.push(format!(
                "oifname \"{i}\" ip6 saddr {s} ct status dnat masquerade"
            ));
        }
    }

    // bridge: icc off
    let mut bridge: Vec<String> = Vec::new();
    for n in nets.iter().filter(|n| !n.icc) {
        let links: BTreeSet<&str> = input
            .endpoints
            .iter()
            .filter(|e| e.network == n.name)
            .filter_map(|e| e.host_interface.as_deref())
            .filter(|i| validate_interface_name(i).is_ok())
            .collect();
        if links.len() < 2 {
            continue;
        }
        let set = ifset(links);
        bridge.push(format!("iifname {set} oifname {set} drop"));
    }

    let mut s = String::new();
    s.push_str("# Kleene's nftables ruleset (generated by kleene-net; load with nft -f).\n");
    s.push_str("# It replaces the tables inet kleene and bridge kleene in one transaction.\n");
    for n in &notes {
        s.push_str(n);
        s.push('\n');
    }
    let _ = writeln!(s, "add table inet {TABLE}");
    let _ = writeln!(s, "delete table inet {TABLE}");
    let _ = writeln!(s, "add table bridge {TABLE}");
    let _ = writeln!(s, "delete table bridge {TABLE}");
    s.push('\n');
    let _ = writeln!(s, "table inet {TABLE} {{");
    chain(
        &mut s,
        "forward",
        "type filter hook forward priority filter; policy accept;",
        &fwd,
    );
    s.push('\n');
    chain(
        &mut s,
        "postrouting",
        "type nat hook postrouting priority srcnat; policy accept;",
        &post,
    );
    s.push('\n');
    chain(
        &mut s,
        "prerouting",
        "type nat hook prerouting priority dstnat; policy accept;",
        &pre,
    );
    s.push('\n');
    chain(
        &mut s,
        "output",
        // -100 is dstnat: nft 1.0.6 rejects the keyword in an output hook
        "type nat hook output priority -100; policy accept;",
        &out,
    );
    s.push_str("}\n\n");
    let _ = writeln!(s, "table bridge {TABLE} {{");
    chain(
        &mut s,
        "forward",
        "type filter hook forward priority filter; policy accept;",
        &bridge,
    );
    s.push_str("}\n");
    s
}

fn chain(s: &mut String, name: &str, header: &str, rules: &[String]) {
    let _ = writeln!(s, "\tchain {name} {{");
    let _ = writeln!(s, "\t\t{header}");
    for r in rules {
        let _ = writeln!(s, "\t\t{r}");
    }
    s.push_str("\t}\n");
}

/// Like [`render_nft`], but refuses input that fails [`FirewallInput::validate`].
pub fn try_render_nft(input: &FirewallInput) -> Result<String> {
    input.validate().map_err(|e| Error::Render {
        what: "nftables",
        reason: e.to_string(),
    })?;
    Ok(render_nft(input))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{NetRules, PublishRules};

    fn net(name: &str, interface: &str) -> NetRules {
        NetRules {
            name: name.into(),
            interface: interface.into(),
            subnet: Some("10.13.37.0/24".parse().unwrap()),
            subnet6: None,
            gateway: None,
            gateway6: None,
            nat: Some("eth0".into()),
            icc: true,
            internal: false,
        }
    }

    fn publish(spec: &str) -> PublishRules {
        PublishRules {
            container: "c1".into(),
            network: "testnet".into(),
            ipv4: Some("10.13.37.2".parse().unwrap()),
            ipv6: None,
            port: spec.parse().unwrap(),
            interface: "eth0".into(),
        }
    }

    #[test]
    fn starts_by_replacing_its_tables() {
        let s = render_nft(&FirewallInput::default());
        let lines: Vec<&str> = s.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            &lines[..4],
            &[
                "add table inet kleene",
                "delete table inet kleene",
                "add table bridge kleene",
                "delete table bridge kleene"
            ]
        );
        assert!(s.contains("table bridge kleene {"));
    }

    #[test]
    fn udp_and_ranges() {
        let input = FirewallInput {
            networks: vec![net("testnet", "kleene0")],
            published: vec![
                publish("53/udp"),
                publish("8000-8002:9000"),
                publish("7000-7010"),
            ],
            ..Default::default()
        };
        let s = render_nft(&input);
        assert!(s.contains("udp dport 53 dnat ip to 10.13.37.2:53"), "{s}");
        assert!(s.contains(
            "tcp dport 8000-8002 dnat ip to 10.13.37.2 : tcp dport map { 8000 : 9000, 8001 : 9001, 8002 : 9002 }"
        ));
        assert!(s.contains("tcp dport 7000-7010 dnat ip to 10.13.37.2\n"));
        assert!(s.contains("ip daddr 10.13.37.2 udp dport 53 ct status dnat accept"));
        assert!(!s.contains("tcp dport 53"));
    }

    #[test]
    fn huge_remapped_range_is_left_out() {
        let input = FirewallInput {
            networks: vec![net("testnet", "kleene0")],
            published: vec![publish("10000-20000:30000")],
            ..Default::default()
        };
        let s = render_nft(&input);
        assert!(s.contains("# left out published port 10000-20000:30000-40000/tcp"));
        assert!(!s.contains("dport map"));
    }

    #[test]
    fn invalid_names_never_reach_the_script() {
        let input = FirewallInput {
            networks: vec![net("testnet", "x\" accept; #")],
            published: vec![publish("80")],
            ..Default::default()
        };
        let s = render_nft(&input);
        assert!(!s.contains("accept; #"));
        assert!(s.contains("# left out 1 network(s)"));
        assert!(s.contains("# left out 1 published port(s)"));
        assert!(try_render_nft(&input).is_err());
    }

    #[test]
    fn isolation_between_networks() {
        let input = FirewallInput {
            networks: vec![
                net("a", "kleene0"),
                net("b", "kleene1"),
                net("c", "kleene2"),
            ],
            ..Default::default()
        };
        let s = render_nft(&input);
        assert!(s.contains("iifname \"kleene0\" oifname { \"kleene1\", \"kleene2\" } drop"));
        assert!(s.contains("iifname \"kleene2\" oifname { \"kleene0\", \"kleene1\" } drop"));
    }
}
